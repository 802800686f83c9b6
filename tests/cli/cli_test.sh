#!/bin/sh
# Tests of the memmamba command-line tool, one case per CTest test:
#   cli_test.sh CASE WORK_DIR
# The environment names the programs (set by tests/cli/CMakeLists.txt):
# MEMMAMBA, MAKE_MODEL, PYTHON, TESTS (this directory), README, BUILD_DIR and,
# where built, LOG_ANOMALY, GENOME_CONTIGS, PASSKEY_CHECK, PASSKEY_SAMPLE.
# Exit 0 = pass, 77 = skipped (a Debian data package is missing).
set -eu
case_name=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cd "$work"

M=$MEMMAMBA
GENOME=/usr/share/htslib-test/test/ce.fa   # Debian's htslib-test: C. elegans, 7 contigs
ACCESS_LOG=/usr/share/logstalgia/example.log  # Debian's logstalgia: an Apache access log

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# expect_contains FILE TEXT...: every TEXT occurs in FILE (fixed strings).
expect_contains() {
  file=$1
  shift
  for text in "$@"; do
    grep -qF -- "$text" "$file" || { cat "$file" >&2; fail "'$text' not in $file"; }
  done
}

# A tiny model (d_model 32, 2 layers, note window 4, 4 notes per layer).
tiny_model() { "$MAKE_MODEL" "$1" "${2:-7}"; }

# A synthetic access log: routine lines, deterministic.
make_log() {
  awk -v n="${2:-200}" 'BEGIN { srand(3);
    split("index.html about.html news.html img/logo.png css/site.css", page, " ");
    for (i = 1; i <= n; i++) {
      printf "10.0.0.%d - - [01/Jan/2024:10:%02d:%02d] \"GET /%s HTTP/1.1\" 200 %d\n",
             1 + int(rand() * 9), int(i / 60) % 60, i % 60, page[1 + int(rand() * 5)], 1000 + int(rand() * 9000)
    } }' > "$1"
}

# A small genome when Debian's is absent: 3 contigs of random bases.
genome_file() {
  if [ -r "$GENOME" ]; then
    echo "$GENOME"
  else
    awk 'BEGIN { srand(7); for (c = 1; c <= 3; c++) { print ">contig" c;
      for (l = 0; l < 30; l++) { s = ""; for (i = 0; i < 60; i++) s = s substr("ACGT", int(rand() * 4) + 1, 1); print s } } }' > genome.fa
    echo "$PWD/genome.fa"
  fi
}

# The value after "surprisal ... bits/byte, " : the total bits of a stream.
total_bits() { sed -n 's/.*bits\/byte, \([0-9.]*\) bits over.*/\1/p' "$1"; }

# run_fails EXPECTED_CODE TEXT -- COMMAND...: the command exits with the code,
# prints TEXT on stderr, and did not crash.
run_fails() {
  want=$1
  text=$2
  shift 3
  set +e
  "$@" > out.txt 2> err.txt
  code=$?
  set -e
  if [ "$code" != "$want" ]; then
    cat err.txt >&2
    fail "'$*' exited with $code, expected $want"
  fi
  grep -qF -- "$text" err.txt || { cat err.txt >&2; fail "'$*': '$text' not in the message"; }
  head -c 300 err.txt | sed 's/^/    /'
}

case $case_name in

help)
  "$M" --help > main.txt
  expect_contains main.txt "info FILE" "import-mamba CHECKPOINT OUT" "stream MODEL FILE" \
    "snapshot inspect SNAPSHOT" "snapshot continue MODEL SNAPSHOT FILE" "train --out MODEL" \
    "eval MODEL FILE" "--version" "MEMMAMBA_THREADS"
  "$M" --version | grep -q "^memmamba [0-9]" || fail "--version"
  # Every option of every command is described in its help.
  check_help() {
    cmd=$1
    shift
    # shellcheck disable=SC2086
    "$M" $cmd --help > help.txt || fail "'$cmd --help' failed"
    expect_contains help.txt "usage: memmamba $cmd" "--help"
    for opt in "$@"; do
      grep -q -- "^  $opt\( \|$\)" help.txt || { cat help.txt >&2; fail "$cmd --help lacks $opt"; }
    done
  }
  check_help info
  check_help import-mamba --window --capacity --policy --fusion --config --seed --dtype --threads
  check_help stream --top --by --chunk --limit --snapshot --resume --device --threads
  check_help generate --prompt --prompt-file --tokens --temperature --seed --device --threads
  check_help "snapshot inspect"
  check_help "snapshot continue" --top --by --chunk --limit --snapshot --device --threads
  check_help train --out --init --config --steps --minutes --batch --seq --lr --warmup --seed \
    --accum --clip --weight-decay --straight-through --fasta --text --trainer-out --save-every \
    --resume --log-every --threads
  check_help eval --contexts --limit --passkey --depths --samples --filler --seed --table \
    --chart --fasta --text --threads
  "$M" train --help > help1.txt
  "$M" help train > help2.txt
  cmp -s help1.txt help2.txt || fail "'help train' differs from 'train --help'"
  "$M" snapshot --help > snap.txt && expect_contains snap.txt "snapshot inspect" "snapshot continue"
  echo "help: complete for every command"
  ;;

info)
  tiny_model m.safetensors
  "$M" info m.safetensors > model.txt
  expect_contains model.txt "model: m.safetensors" "parameters" "fingerprint" "d_model 32" \
    "n_layer 2" "pool_capacity 4" "config          vocab_size=256,d_model=32,n_layer=2"
  make_log log.txt 20
  "$M" stream m.safetensors log.txt --top 0 --snapshot s.mmsnap > /dev/null
  "$M" info s.mmsnap > snap.txt
  size=$(wc -c < log.txt | tr -d ' ')
  expect_contains snap.txt "snapshot: s.mmsnap" "format version  2" "n_layer 2, d_model 32" \
    "pool fill       " "/8 notes" "state           "
  pos=$(sed -n 's/.*position *\([0-9,]*\) tokens.*/\1/p' snap.txt | tr -d ,)
  [ "$pos" = "$size" ] || fail "snapshot position $pos, expected $size"
  # The snapshot names the model's fingerprint.
  fp=$(sed -n 's/.*fingerprint *\([0-9a-f]*\)$/\1/p' model.txt)
  grep -q "fingerprint $fp" snap.txt || fail "fingerprint $fp not in the snapshot's info"
  "$M" snapshot inspect s.mmsnap > inspect.txt
  cmp -s snap.txt inspect.txt || fail "snapshot inspect differs from info"
  cat model.txt snap.txt
  ;;

stream)
  tiny_model m.safetensors
  make_log log.txt 100
  "$M" stream m.safetensors log.txt --top 3 > out.txt
  size=$(wc -c < log.txt | tr -d ' ')
  expect_contains out.txt "stream: log.txt through m.safetensors" "bytes           " \
    "bits/byte" "tokens/s" "state           " "position" "the 3 most surprising lines"
  grep -q "($((size - 1)) scored)" out.txt || grep -q "scored)" out.txt || fail "scored count"
  [ "$(grep -c 'GET /' out.txt)" = 3 ] || fail "expected 3 ranked lines"
  # The chunk size does not change the result (beyond float rounding).
  "$M" stream m.safetensors log.txt --top 0 --chunk 77 > out2.txt
  a=$(total_bits out.txt)
  b=$(total_bits out2.txt)
  awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * a) }' ||
    fail "--chunk changed the total: $a vs $b"
  # --limit streams a prefix.
  "$M" stream m.safetensors log.txt --top 0 --limit 500 > out3.txt
  expect_contains out3.txt "bytes           500 (499 scored)"
  # A file without newlines is ranked in 80-byte windows.
  head -c 2000 /dev/zero | tr '\0' 'x' > flat.txt
  "$M" stream m.safetensors flat.txt --top 2 > flat_out.txt
  expect_contains flat_out.txt "80-byte windows"
  cat out.txt
  ;;

generate)
  tiny_model m.safetensors
  # The prompt, then exactly --tokens bytes; the same seed gives the same
  # bytes, greedy runs repeat, another seed changes the draw.
  "$M" generate m.safetensors --prompt 'GET /index' --tokens 64 --seed 3 > a.txt 2> err.txt
  [ "$(wc -c < a.txt | tr -d ' ')" = 74 ] || fail "expected 10 + 64 bytes"
  head -c 10 a.txt | grep -q '^GET /index$' || fail "the prompt is not echoed first"
  expect_contains err.txt "64 bytes generated at" "temperature 0.8, seed 3"
  "$M" generate m.safetensors --prompt 'GET /index' --tokens 64 --seed 3 > b.txt 2> /dev/null
  cmp -s a.txt b.txt || fail "the same seed drew other bytes"
  "$M" generate m.safetensors --prompt 'GET /index' --tokens 64 --seed 4 > c.txt 2> /dev/null
  cmp -s a.txt c.txt && fail "another seed drew the same 64 bytes"
  "$M" generate m.safetensors --prompt-file a.txt --tokens 16 --temperature 0 > g1.txt 2> /dev/null
  "$M" generate m.safetensors --prompt-file a.txt --tokens 16 --temperature 0 > g2.txt 2> /dev/null
  cmp -s g1.txt g2.txt || fail "greedy runs differ"
  if "$M" generate m.safetensors --prompt x --prompt-file a.txt > /dev/null 2> err2.txt; then
    fail "--prompt with --prompt-file was accepted"
  fi
  if "$M" generate m.safetensors --temperature -1 > /dev/null 2> err3.txt; then
    fail "a negative temperature was accepted"
  fi
  cat a.txt; echo
  ;;

top_lines)
  # A model trained briefly on routine lines finds the odd one.
  tiny_model m.safetensors
  make_log train.log 400
  "$M" train --out trained.safetensors --init m.safetensors --steps 60 --batch 8 --seq 64 \
    --lr 0.01 train.log 2> train_progress.txt > /dev/null
  make_log test.log 60
  awk 'NR == 31 { print "!!{{ZZ}}~~ |QQ|^^ %%KERNEL PANIC%% ^^|QQ| ~~{{ZZ}}!!" } { print }' \
    test.log > anomaly.log
  "$M" stream trained.safetensors anomaly.log --top 3 > out.txt
  cat out.txt
  sed -n '/most surprising/,$p' out.txt | sed -n 3p | grep -q "KERNEL PANIC" ||
    fail "the anomalous line is not ranked first"
  # Ranking by total bits puts long lines first.
  "$M" stream trained.safetensors anomaly.log --top 1 --by total > total.txt
  expect_contains total.txt "(by total bits)"
  ;;

snapshot)
  tiny_model m.safetensors
  make_log ab.txt 120
  head -c 3001 ab.txt > a.txt
  tail -c +3002 ab.txt > b.txt
  "$M" stream m.safetensors ab.txt --top 0 > whole.txt
  "$M" stream m.safetensors a.txt --top 0 --snapshot a.mmsnap > part_a.txt
  [ -s a.mmsnap ] && [ -s a.mmsnap.logits ] || fail "snapshot or its logits not written"
  "$M" stream m.safetensors b.txt --top 0 --resume a.mmsnap > part_b.txt
  "$M" snapshot continue m.safetensors a.mmsnap b.txt --top 0 > part_b2.txt
  expect_contains part_b.txt "resumed         from a.mmsnap at position 3,001"
  w=$(total_bits whole.txt)
  a=$(total_bits part_a.txt)
  b=$(total_bits part_b.txt)
  b2=$(total_bits part_b2.txt)
  [ "$b" = "$b2" ] || fail "snapshot continue ($b2) differs from stream --resume ($b)"
  awk -v w="$w" -v a="$a" -v b="$b" 'BEGIN { d = w - a - b; if (d < 0) d = -d;
    printf "whole %s bits = %s + %s (difference %g)\n", w, a, b, d; exit !(d <= 1e-6 * w) }' ||
    fail "stream A then --resume B does not add up to streaming A+B"
  # The resumed stream ends where the whole one does.
  grep -q "position $(sed -n 's/.*position \([0-9,]*\);.*/\1/p' whole.txt);" part_b.txt ||
    fail "positions differ"
  # Chained: resume, snapshot again, resume again.
  head -c 2000 b.txt > b1.txt
  tail -c +2001 b.txt > b2.txt
  "$M" stream m.safetensors b1.txt --top 0 --resume a.mmsnap --snapshot ab1.mmsnap > p1.txt
  "$M" stream m.safetensors b2.txt --top 0 --resume ab1.mmsnap > p2.txt
  awk -v w="$w" -v a="$a" -v x="$(total_bits p1.txt)" -v y="$(total_bits p2.txt)" \
    'BEGIN { d = w - a - x - y; if (d < 0) d = -d; exit !(d <= 1e-6 * w) }' ||
    fail "a chain of three parts does not add up"
  # Without the logits file the first byte is not scored, with a note.
  rm a.mmsnap.logits
  "$M" stream m.safetensors b.txt --top 0 --resume a.mmsnap > nolog.txt 2> note.txt
  expect_contains note.txt "first byte is not scored"
  # Another model's snapshot is refused.
  tiny_model other.safetensors 99
  run_fails 1 MM_ERR_MODEL_MISMATCH -- "$M" stream other.safetensors b.txt --resume a.mmsnap
  ;;

train)
  tiny_model init.safetensors
  make_log data.txt 300
  cfg=d_model=32,n_layer=2,d_state=4,note_window=4,summary_dim=16,pool_capacity=4,attn_heads=2,cross_layer_period=2,cross_layer_span=1
  # Uninterrupted: 6 steps.
  "$M" train --out full.safetensors --config "$cfg" --steps 6 --batch 2 --seq 48 --seed 3 \
    --warmup 2 data.txt > full.txt 2> full_progress.txt
  expect_contains full.txt "train: step 6 (6 in this run" "model           full.safetensors"
  expect_contains full_progress.txt "step 6/6" "loss" "bits/byte" "tok/s" "ETA" "[####"
  # The same in two runs: 3 steps and a checkpoint, then --resume to 6.
  "$M" train --out half.safetensors --config "$cfg" --steps 3 --batch 2 --seq 48 --seed 3 \
    --warmup 2 --trainer-out run.trainer data.txt > half.txt 2> /dev/null
  [ -s run.trainer ] && [ -s run.trainer.sampler ] || fail "trainer checkpoint not written"
  expect_contains run.trainer.sampler "memmamba-train-sampler 1" "step 3" "batch 2" "seq 48"
  "$M" train --out resumed.safetensors --steps 6 --resume run.trainer data.txt > resumed.txt 2> /dev/null
  expect_contains resumed.txt "train: step 6 (3 in this run"
  cmp full.safetensors resumed.safetensors || fail "resumed run differs from the uninterrupted one"
  echo "resume: identical model files"
  # Checkpoints every 2 steps give the same end result too, and the last
  # checkpoint resumes to the same model again.
  "$M" train --out every.safetensors --config "$cfg" --steps 5 --batch 2 --seq 48 --seed 3 \
    --warmup 2 --save-every 2 --trainer-out every.trainer data.txt > /dev/null 2>&1
  "$M" train --out every6.safetensors --steps 6 --resume every.trainer data.txt > /dev/null 2>&1
  cmp full.safetensors every6.safetensors || fail "--save-every run resumed differs"
  # The written models load: info, and fine-tuning from --init.
  "$M" info run.trainer > trainer_info.txt
  expect_contains trainer_info.txt "trainer checkpoint: run.trainer" "optimizer steps 3"
  "$M" train --out tuned.safetensors --init init.safetensors --steps 2 --batch 2 --seq 32 \
    --fasta "$(genome_file)" > tuned.txt 2> tuned_progress.txt
  expect_contains tuned_progress.txt "read as FASTA"
  "$M" info tuned.safetensors > /dev/null
  # --minutes stops by time.
  "$M" train --out timed.safetensors --init init.safetensors --minutes 0.002 --batch 1 --seq 16 \
    data.txt > timed.txt 2> /dev/null
  expect_contains timed.txt "model           timed.safetensors"
  # A changed setting on resume is reported.
  "$M" train --out x.safetensors --steps 4 --resume run.trainer --batch 3 data.txt \
    > /dev/null 2> warn.txt
  expect_contains warn.txt "--batch 3 differs from the checkpoint's 2"
  ;;

eval)
  tiny_model m.safetensors
  make_log data.txt 80
  "$M" eval m.safetensors data.txt --contexts 16,64,256,0 --passkey 32,64,128 --depths 0,0.5,1 \
    --samples 2 --table eval.md --chart eval.png > out.txt
  expect_contains eval.md "## Perplexity by context length" "| context | targets | loss (nats) | bits/byte | perplexity |" \
    "| 16 |" "| 64 |" "| 256 |" "| whole (" "## Passkey retrieval" \
    "| length | depth 0 | depth 0.5 | depth 1 | all depths | digits |" "| 32 |" "| 128 |"
  expect_contains out.txt "table: eval.md" "chart: eval.png (1280x420)"
  "$PYTHON" "$TESTS/check_png.py" eval.png 1280 420
  # Perplexity alone: one panel.
  "$M" eval m.safetensors data.txt --contexts 32,0 --chart ppl.png > ppl.txt
  "$PYTHON" "$TESTS/check_png.py" ppl.png 640 420
  # The loss of a random model is near log(256).
  awk -F'|' '/^\| 16 \|/ { if ($4 < 4.5 || $4 > 7) exit 1 }' eval.md || fail "implausible loss"
  # The same seed gives the same passkey table.
  "$M" eval m.safetensors data.txt --contexts 0 --passkey 32 --samples 3 --table t1.md > /dev/null
  "$M" eval m.safetensors data.txt --contexts 0 --passkey 32 --samples 3 --table t2.md > /dev/null
  cmp -s t1.md t2.md || fail "passkey results not reproducible"
  cat eval.md
  ;;

import_mamba)
  "$PYTHON" "$TESTS/write_mamba_checkpoint.py" mamba.safetensors --d-model 16 --layers 2
  "$M" import-mamba mamba.safetensors mm.safetensors --window 4 --capacity 3 --policy fifo \
    --fusion gated --config summary_dim=16,attn_heads=2 --seed 5 > out.txt
  expect_contains out.txt "imported model: mm.safetensors" "d_model 16, n_layer 2" \
    "note_window 4, summary_dim 16, pool_capacity 3 (FIFO)" "fusion GATED"
  "$PYTHON" "$TESTS/check_import.py" mamba.safetensors mm.safetensors
  make_log log.txt 20
  "$M" stream mm.safetensors log.txt --top 1 > stream.txt
  # Other spellings: backbone.embeddings.weight, an untied LM head, plain Mamba.
  "$PYTHON" "$TESTS/write_mamba_checkpoint.py" mamba2.safetensors --embeddings --untied --layers 1
  "$M" import-mamba mamba2.safetensors plain.safetensors --capacity 0 > out2.txt
  expect_contains out2.txt "none (pool_capacity 0: plain Mamba)" "untied"
  "$PYTHON" "$TESTS/check_import.py" mamba2.safetensors plain.safetensors
  "$M" import-mamba mamba.safetensors bf16.safetensors --dtype bf16 > /dev/null
  "$M" info bf16.safetensors > /dev/null
  # Errors: a missing tensor; a shape key in --config.
  "$PYTHON" "$TESTS/write_mamba_checkpoint.py" broken.safetensors --drop backbone.layers.1.mixer.D
  run_fails 1 MM_ERR_TENSOR_MISSING -- "$M" import-mamba broken.safetensors x.safetensors
  run_fails 2 "comes from the checkpoint" -- "$M" import-mamba mamba.safetensors x.safetensors --config d_model=8
  [ ! -e x.safetensors ] || fail "a failed import wrote its output"
  ;;

bad_input)
  tiny_model m.safetensors
  make_log log.txt 20
  "$M" stream m.safetensors log.txt --top 0 --snapshot s.mmsnap > /dev/null
  echo "usage errors (exit 2):"
  run_fails 2 "unknown command" -- "$M" frobnicate
  run_fails 2 "unknown option '--bogus'" -- "$M" stream m.safetensors log.txt --bogus
  run_fails 2 "unknown option '-x'" -- "$M" stream m.safetensors log.txt -x
  run_fails 2 "--top 'ten'" -- "$M" stream m.safetensors log.txt --top ten
  run_fails 2 "needs a value" -- "$M" stream m.safetensors log.txt --top
  run_fails 2 "expected MODEL FILE" -- "$M" stream m.safetensors
  run_fails 2 "unexpected 'extra'" -- "$M" info m.safetensors extra
  run_fails 2 "--out MODEL is required" -- "$M" train log.txt
  run_fails 2 "unknown key 'd_modle'" -- "$M" train --out x.safetensors --config d_modle=8 log.txt
  run_fails 2 "exclude each other" -- "$M" train --out x.safetensors --init m.safetensors --config d_model=8 log.txt
  run_fails 2 "--save-every needs --trainer-out" -- "$M" train --out x.safetensors --save-every 2 log.txt
  run_fails 2 "--contexts 1" -- "$M" eval m.safetensors log.txt --contexts 1
  run_fails 2 "--depths '2'" -- "$M" eval m.safetensors log.txt --passkey 64 --depths 2
  run_fails 2 "at least 14 tokens" -- "$M" eval m.safetensors log.txt --passkey 8
  run_fails 2 "needs --passkey" -- "$M" eval m.safetensors log.txt --samples 3
  run_fails 2 "--by 'median'" -- "$M" stream m.safetensors log.txt --by median
  run_fails 2 "--device 'gpu': expected cpu or cuda" -- "$M" stream m.safetensors log.txt --device gpu
  echo "failures (exit 1):"
  run_fails 1 "cannot open model 'missing.safetensors'" -- "$M" stream missing.safetensors log.txt
  run_fails 1 "cannot open 'missing.txt'" -- "$M" stream m.safetensors missing.txt
  run_fails 1 "cannot open 'missing.bin'" -- "$M" info missing.bin
  head -c 4000 /dev/urandom > noise.bin
  run_fails 1 "neither a model" -- "$M" info noise.bin
  run_fails 1 "MM_ERR_CORRUPT_FILE" -- "$M" stream noise.bin log.txt
  : > empty.bin
  run_fails 1 "neither a model" -- "$M" info empty.bin
  head -c 5000 m.safetensors > truncated.safetensors
  run_fails 1 "cannot load model 'truncated.safetensors'" -- "$M" stream truncated.safetensors log.txt
  mkdir adir
  run_fails 1 "is a directory" -- "$M" eval m.safetensors adir
  # A snapshot with one byte changed: the checksum catches it.
  "$PYTHON" -c "import sys; b = bytearray(open('s.mmsnap','rb').read()); b[len(b)//2] ^= 1; open('bad.mmsnap','wb').write(b)"
  run_fails 1 "MM_ERR_CHECKSUM" -- "$M" info bad.mmsnap
  run_fails 1 "MM_ERR_CHECKSUM" -- "$M" snapshot inspect bad.mmsnap
  run_fails 1 "MM_ERR_CHECKSUM" -- "$M" stream m.safetensors log.txt --resume bad.mmsnap
  run_fails 1 "MM_ERR_CORRUPT_FILE" -- "$M" snapshot inspect noise.bin
  run_fails 1 "no input file holds a window of --seq 100000" -- "$M" train --out x.safetensors --init m.safetensors --seq 100000 log.txt
  run_fails 1 "cannot open 'missing.txt'" -- "$M" train --out x.safetensors --init m.safetensors missing.txt
  run_fails 1 "cannot open trainer" -- "$M" train --out x.safetensors --resume missing.trainer log.txt
  run_fails 1 "cannot load trainer" -- "$M" train --out x.safetensors --resume noise.bin log.txt
  run_fails 1 "fewer than 2 tokens" -- "$M" eval m.safetensors empty.bin
  run_fails 1 "cannot write snapshot" -- "$M" stream m.safetensors log.txt --top 0 --snapshot adir/no/such/dir.mmsnap
  # On the GPU where there is one; elsewhere a clean failure that names it.
  if ! "$M" stream m.safetensors log.txt --top 0 --device cuda > cuda.txt 2> cuda.err; then
    grep -q "cannot load model 'm.safetensors': MM_ERR_\(NO_DEVICE\|UNSUPPORTED\)" cuda.err ||
      fail "--device cuda without a GPU: $(cat cuda.err)"
  fi
  ;;

readme)
  # Runs the README's command-line examples, as written and in order, from a
  # directory where build/ is the build tree. A block that reads a Debian
  # data package which is not installed is skipped (all of them: exit 77).
  [ -r "$GENOME" ] || { echo "skipped: $GENOME (htslib-test) is missing"; exit 77; }
  ln -s "$BUILD_DIR" build
  # The import example's checkpoint: a small one in the reference naming.
  "$PYTHON" "$TESTS/write_mamba_checkpoint.py" mamba.safetensors --d-model 32 --layers 2
  awk '/^## Command-line tool/ { on = 1; next } on && /^## / { on = 0 }
       on && /^```sh$/ { code = 1; n++; next } on && /^```$/ { code = 0; next }
       on && code { print > ("block" n ".sh"); print > "examples.sh" }' "$README"
  [ "$(grep -c 'build/memmamba' examples.sh)" -ge 8 ] || { cat examples.sh >&2; fail "README examples not found"; }
  for cmd in info import-mamba stream generate "snapshot inspect" "snapshot continue" train eval; do
    grep -q "build/memmamba $cmd " examples.sh || fail "no README example of '$cmd'"
  done
  for block in $(ls block*.sh | sort -t k -k 2 -n); do
    for data in $(grep -o '/usr/share/[A-Za-z0-9_./-]*' "$block" | sort -u); do
      if [ ! -r "$data" ]; then
        echo "skipped $block: $data is missing"
        continue 2
      fi
    done
    sh -ex "$block"
  done
  "$PYTHON" "$TESTS/check_png.py" eval.png
  ;;

log_anomaly)
  tiny_model m.safetensors
  make_log log.txt 80
  "$LOG_ANOMALY" m.safetensors log.txt --top 4 > out.txt
  cat out.txt
  expect_contains out.txt "log.txt: 80 lines" "bits/byte on average" "the 4 most surprising lines"
  [ "$(grep -c 'bits/byte  line' out.txt)" = 4 ] || fail "expected 4 ranked lines"
  expect_contains out.txt "what the memory holds at the end"
  kept=$(grep -c '^  score .* layer .* line ' out.txt || true)
  [ "$kept" -ge 1 ] && [ "$kept" -le 4 ] || fail "expected 1-4 lines the memory kept, got $kept"
  run_fails 1 "missing.txt" -- "$LOG_ANOMALY" m.safetensors missing.txt
  run_fails 2 "usage" -- "$LOG_ANOMALY" m.safetensors
  ;;

genome_contigs)
  tiny_model m.safetensors
  genome=$(genome_file)
  "$GENOME_CONTIGS" m.safetensors "$genome" snaps --limit 700 > out.txt
  cat out.txt
  n=$(grep -c '^>' "$genome")
  [ "$(grep -c '^contig ' out.txt)" = "$n" ] || fail "expected $n contigs"
  [ "$(ls snaps/*.mmsnap | wc -l)" = "$n" ] || fail "expected $n snapshots"
  expect_contains out.txt "identical, bit for bit"
  # Each snapshot holds its own contig only: position 700.
  "$M" info "$(ls snaps/*.mmsnap | head -n 1)" | grep -q "position        700 tokens" ||
    fail "a contig's snapshot is not at its contig's end"
  run_fails 1 "not FASTA" -- "$GENOME_CONTIGS" m.safetensors "$TESTS/cli_test.sh" snaps2
  ;;

passkey_compat)
  # The passkey sample program and the tool build identical samples.
  for spec in "100 0.3 2 9" "14 0 0 1" "257 1 5 42" "64 0.5 1 7"; do
    set -- $spec
    "$PASSKEY_CHECK" write "$1" "$2" "$3" "$4" > ours.bin
    "$PASSKEY_SAMPLE" sample --length "$1" --depth "$2" --index "$3" --seed "$4" --filler random > theirs.bin
    cmp ours.bin theirs.bin || fail "samples differ for length $1 depth $2 index $3 seed $4"
  done
  echo "passkey samples identical"
  ;;

*)
  fail "unknown case $case_name"
  ;;
esac
echo "PASS: $case_name"
