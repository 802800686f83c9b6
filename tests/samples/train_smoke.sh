#!/bin/sh
# The training samples end to end on a tiny model, a few steps each:
# train_file trains and saves a model that stream_file then loads, and
# passkey trains, saves and evaluates (by length and depth, with ETMF/ECLMF).
# Bad inputs exit non-zero with a message.
#   train_smoke.sh SAMPLES_BIN_DIR WORK_DIR
set -eu
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"

# Data: Jane Austen where installed, else a made-up text file.
source=janeausten
filler=austen
if [ ! -r /usr/lib/R/site-library/janeaustenr/data/Rdata.rdx ]; then
  source=$work/text.txt
  filler=random
  awk 'BEGIN { srand(3); for (l = 0; l < 2000; l++) { s = ""; for (i = 0; i < 60; i++)
         s = s substr("the cat sat on a mat ", int(rand() * 21) + 1, 1); print s } }' > "$source"
fi
tiny="--d-model 32 --layers 2 --window 4 --capacity 4"

"$bin/train_file" "$source" --limit 30000 --steps 3 --batch 2 --seq 64 --threads 1 $tiny \
  --out "$work/text.safetensors" > "$work/train_file.txt"
cat "$work/train_file.txt"
grep -q "held-out loss after training: .* bits/byte" "$work/train_file.txt"
# The saved model streams other data with stream_file.
stream=/usr/share/logstalgia/example.log
[ -r "$stream" ] || { stream=$work/text.txt; printf 'some text to stream\n' > "$stream"; }
"$bin/stream_file" "$stream" --model "$work/text.safetensors" --limit 2000 --threads 1 \
  > "$work/stream.txt"
grep -q "mean surprisal" "$work/stream.txt"

"$bin/passkey" train --out "$work/passkey.safetensors" --steps 4 --seq-min 32 --seq 64 \
  --batch-tokens 128 --eval-every 2 --eval-samples 4 --filler $filler --threads 1 $tiny \
  > "$work/passkey_train.txt"
cat "$work/passkey_train.txt"
grep -q "saved $work/passkey.safetensors" "$work/passkey_train.txt"
# One stage is the last from the start: --final-eval-every 4 over 6 steps
# checks at step 4 and at the end, not at every step.
"$bin/passkey" train --out "$work/thin.safetensors" --steps 6 --seq-min 64 --seq 64 \
  --batch-tokens 128 --eval-every 1 --final-eval-every 4 --eval-samples 4 --filler $filler \
  --threads 1 $tiny > "$work/thin.txt"
checks=$(grep -c "check at length 64" "$work/thin.txt")
[ "$checks" -eq 2 ] || { echo "--final-eval-every 4 over 6 steps: $checks checks" >&2; exit 1; }
# Sequences whose recurrent state resets between the key and the query.
"$bin/passkey" train --init "$work/passkey.safetensors" --out "$work/forget.safetensors" \
  --steps 2 --seq-min 64 --seq 64 --batch-tokens 128 --eval-every 0 --filler $filler \
  --threads 1 --forget-share 1 > "$work/forget_train.txt"
grep -q "recurrent resets in a share 1 of the sequences" "$work/forget_train.txt"
grep -q "saved $work/forget.safetensors" "$work/forget_train.txt"
# Sequences that continue streams holding a key (mm_train_step_from), the
# streams read from the start and from a shared base's snapshot, the latter
# with their recurrent state reset (only the pools carry the key).
for base in 0 96; do
  forget=
  [ "$base" = 0 ] || forget=--prefill-forget
  "$bin/passkey" train --init "$work/passkey.safetensors" --out "$work/prefill.safetensors" \
    --steps 3 --seq-min 64 --seq 64 --batch-tokens 128 --eval-every 0 --filler $filler \
    --threads 1 --prefill 200 --prefill-share 1 --prefill-every 2 --prefill-base $base $forget \
    > "$work/prefill_train.txt"
  cat "$work/prefill_train.txt"
  if [ -n "$forget" ]; then
    grep -q "every 2 steps, base $base, recurrent state reset)" "$work/prefill_train.txt"
  else
    grep -q "every 2 steps, base $base)" "$work/prefill_train.txt"
  fi
  grep -q "^prefill at step 2: the key is in a pool in [0-4] of 4 streams" "$work/prefill_train.txt"
  grep -q "saved $work/prefill.safetensors" "$work/prefill_train.txt"
done
# Streams of filler only: the sequences that continue them carry their own
# key, reset between it and the query.
"$bin/passkey" train --init "$work/passkey.safetensors" --out "$work/prefill.safetensors" \
  --steps 3 --seq-min 64 --seq 64 --batch-tokens 128 --eval-every 0 --filler $filler \
  --threads 1 --prefill 200 --prefill-share 1 --prefill-every 2 --prefill-filler \
  --forget-share 1 > "$work/prefill_train.txt"
cat "$work/prefill_train.txt"
grep -q "every 2 steps, base 0, filler only)" "$work/prefill_train.txt"
grep -q "^prefill at step 2: the first stream's pools hold" "$work/prefill_train.txt"
grep -q "saved $work/prefill.safetensors" "$work/prefill_train.txt"
"$bin/passkey" eval "$work/passkey.safetensors" --lengths 64,300 --depths 0,1 --samples 2 \
  --filler $filler --fidelity-tokens 256 --threads 1 --table "$work/table.md" > "$work/eval.txt"
grep -q "key in a pool [0-2]/2" "$work/eval.txt"
cat "$work/table.md"
grep -q "^| 300 |" "$work/table.md"
grep -q "^ETMF" "$work/table.md"
# The recurrent state reset 100 tokens before each query.
"$bin/passkey" eval "$work/passkey.safetensors" --lengths 300 --depths 0 --samples 2 \
  --filler $filler --fidelity-tokens 0 --threads 1 --forget 100 > "$work/eval_forget.txt"
grep -q "key in a pool [0-2]/2" "$work/eval_forget.txt"

# Bad input: non-zero exit with a message, never a crash (exit >= 128).
for args in "/nonexistent/file" "$source --holdout 2" "$source --seq 1" "$source --bogus"; do
  # shellcheck disable=SC2086
  status=0
  "$bin/train_file" $args --steps 1 > "$work/bad.txt" 2>&1 || status=$?
  if [ "$status" -eq 0 ] || [ "$status" -ge 128 ] || [ ! -s "$work/bad.txt" ]; then
    echo "train_file $args: exit $status" >&2
    exit 1
  fi
done
status=0
"$bin/passkey" train --out "$work/bad.safetensors" --steps 1 --prefill-filler > "$work/bad.txt" 2>&1 ||
  status=$?
if [ "$status" -ne 2 ] || ! grep -q "need --prefill" "$work/bad.txt"; then
  echo "passkey train --prefill-filler without --prefill: exit $status" >&2
  exit 1
fi
echo "junk" > "$work/junk.safetensors"
status=0
"$bin/passkey" eval "$work/junk.safetensors" --lengths 64 --samples 1 > "$work/bad.txt" 2>&1 || status=$?
if [ "$status" -eq 0 ] || [ "$status" -ge 128 ]; then
  echo "passkey eval of a junk model: exit $status" >&2
  exit 1
fi
echo "train smoke: all steps passed"
