#!/bin/sh
# Training throughput of mm_train_step against a straightforward PyTorch
# implementation of the same model (bench/torch_train.py), on the same batch
# shape and thread count, one after the other. Prints both in tokens/s
# (B·T positions per second of wall time) and the ratio ours / PyTorch.
# Usage: bench/run_train.sh BUILD_DIR [B T THREADS]   (defaults: 4 512 2)
# Needs BUILD_DIR/bench/bench_train and a python3 with torch (Debian's
# /usr/bin/python3 is tried first; set PYTHON to choose another).
set -eu
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [B T THREADS]" >&2
  exit 2
fi
build=$1
B=${2:-4}
T=${3:-512}
threads=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "memmamba: bench_train --B=$B --T=$T --threads=$threads ..." >&2
if ! "$build/bench/bench_train" --B="$B" --T="$T" --threads="$threads" \
    --benchmark_out="$out/ours.json" --benchmark_out_format=json >"$out/ours.log" 2>&1; then
  cat "$out/ours.log" >&2
  exit 1
fi
echo "pytorch: torch_train.py --B $B --T $T --threads $threads ..." >&2
"$python" "$here/torch_train.py" --B "$B" --T "$T" --threads "$threads" --json > "$out/torch.json"

"$python" - "$out/ours.json" "$out/torch.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
b = ours["benchmarks"][0]
if b.get("error_occurred"):
    sys.exit(f"bench_train failed: {b.get('error_message')}")
theirs = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
ctx = ours["context"]
ours_tps = b["tokens_per_s"]
secs = b["real_time"] / 1e3 if b["time_unit"] == "ms" else b["real_time"]
print(f"machine: {ctx.get('host_name', '?')}, {ctx['num_cpus']} CPUs @ {ctx['mhz_per_cpu']} MHz, "
      f"load average {' '.join(f'{x:.2f}' for x in ctx.get('load_avg', []))}, date {ctx['date']}")
print(f"batch B={theirs['B']} T={theirs['T']}, {theirs['threads']} threads; "
      f"parameters: ours {int(b['params'])}, pytorch {theirs['params']}")
print()
print("| implementation | s/step | tokens/s |")
print("| --- | ---: | ---: |")
print(f"| memmamba mm_train_step ({b['iterations']} steps) | {secs:.3f} | {ours_tps:.0f} |")
print(f"| PyTorch {theirs['torch']} eager, autograd, AdamW ({theirs['steps']} steps) | "
      f"{theirs['s_per_step']:.3f} | {theirs['tokens_per_s']:.0f} |")
ratio = ours_tps / theirs["tokens_per_s"]
print()
print(f"ratio ours / PyTorch: {ratio:.2f}x (target >= 5x: {'met' if ratio >= 5 else 'not met'})")
PY
