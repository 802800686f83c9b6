#!/bin/sh
# Data-parallel scaling of training on one machine's GPUs (DESIGN 6): the
# Mamba-130m shape, B sequences of T tokens per GPU (weak scaling), one
# bench_train process per rank, for each world size given. Efficiency at N =
# (rank 0's tokens/s in a group of N) / (tokens/s of one GPU alone): the
# group's throughput is N times rank 0's.
# Usage: bench/run_data_parallel.sh BUILD_DIR OUT_DIR [WORLD_SIZES...]
#   default world sizes: 1 2 4 8 (those above the machine's GPUs are skipped)
# NCCL: MM_NCCL_LIBRARY names libnccl.so.2 where it is not on the linker's
# path. B, T and MIN_TIME may be set in the environment.
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR [WORLD_SIZES...]" >&2
  exit 2
fi
build=$1
out=$2
shift 2
sizes=${*:-1 2 4 8}
B=${B:-4}
T=${T:-2048}
MIN_TIME=${MIN_TIME:-10}
mkdir -p "$out"
gpus=$(nvidia-smi -L | wc -l)
export MM_CUDA_LIBRARY="$build/kernels/libmemmamba_cuda.so.0"
ours() { LD_LIBRARY_PATH="${MM_LIBRARY_PATH:+$MM_LIBRARY_PATH:}${LD_LIBRARY_PATH:-}" "$@"; }
bench() {  # world rank id_file (world 0 = no group)
  ours "$build/bench/bench_train" --cuda=1 --shape=1 --B="$B" --T="$T" --min_time="$MIN_TIME" \
    --world="$1" --rank="$2" --id_file="$3" --benchmark_format=json
}
rate() { sed -n 's/.*"tokens_per_s": \([0-9.e+]*\).*/\1/p' "$1" | head -n 1; }
echo "GPUs: $gpus ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)); B $B, T $T per GPU"
bench 0 0 "$out/none.id" >"$out/alone.json" 2>"$out/alone.err"
alone=$(rate "$out/alone.json")
awk -v a="$alone" 'BEGIN { printf "one GPU, no group: %.0f tokens/s\n", a }'
for n in $sizes; do
  if [ "$n" -gt "$gpus" ]; then
    echo "world $n: skipped ($gpus GPUs)"
    continue
  fi
  rm -f "$out/w$n.id"
  r=$((n - 1))
  while [ "$r" -ge 1 ]; do
    bench "$n" "$r" "$out/w$n.id" >"$out/w$n.rank$r.json" 2>"$out/w$n.rank$r.err" &
    r=$((r - 1))
  done
  bench "$n" 0 "$out/w$n.id" >"$out/w$n.rank0.json" 2>"$out/w$n.rank0.err"
  wait
  per=$(rate "$out/w$n.rank0.json")
  awk -v n="$n" -v per="$per" -v alone="$alone" 'BEGIN {
    if (per == "" || alone == "") { print "world " n ": no result (see the .err files)"; exit }
    printf "world %d: %.0f tokens/s per GPU, %.0f in all, efficiency %.1f %%\n",
           n, per, n * per, 100 * per / alone }'
done
