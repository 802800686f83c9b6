#!/bin/sh
# Runs the CPU benchmarks and prints bench/RESULTS.md-ready tables in which
# every result is a ratio to a probe measured in the same run:
#   decode:  (weight bytes one step reads / probe read bandwidth) / step time
#            = the fraction of the bandwidth floor reached, twice: the mean
#            step against the probe's mean bandwidth, and the fastest step
#            against the probe's fastest 32 MiB slice (the undisturbed
#            figures of a shared machine);
#   prefill: achieved flops / probe sgemm throughput (2048³, same threads).
# Usage: bench/run_cpu.sh [BUILD_DIR] [extra --benchmark_filter regex for bench_model]
set -eu
build=${1:-build}
filter=${2:-.}
out=$(mktemp -d)
"$build/bench/bench_machine" --benchmark_filter='BM_ReadBandwidth|BM_SgemmPeak' \
  --benchmark_out="$out/machine.json" --benchmark_out_format=json >/dev/null
"$build/bench/bench_model" --benchmark_filter="$filter" \
  --benchmark_out="$out/model.json" --benchmark_out_format=json >/dev/null
python3 - "$out/machine.json" "$out/model.json" <<'PY'
import json, sys
machine = json.load(open(sys.argv[1]))["benchmarks"]
model = json.load(open(sys.argv[2]))
bw = {}; bw_mean = {}; gemm = {}
for b in machine:
    t = int(b["name"].split("threads:")[1].split("/")[0])
    if b["name"].startswith("BM_ReadBandwidth"):
        bw[t] = max(bw.get(t, 0), b["best_GB/s"] * 1e9)
        bw_mean[t] = max(bw_mean.get(t, 0), b["GB/s"] * 1e9)
    if b["name"].startswith("BM_SgemmPeak"):
        gemm[t] = max(gemm.get(t, 0), b["GFLOP/s"] * 1e9)
ctx = model["context"]
print(f"machine: {ctx.get('host_name','?')}, {ctx['num_cpus']} CPUs @ {ctx['mhz_per_cpu']} MHz, "
      f"date {ctx['date']}")
print(f"probes: read bandwidth mean / best slice {bw_mean.get(1,0)/1e9:.1f} / {bw.get(1,0)/1e9:.1f} GB/s (1 thread), "
      f"{bw_mean.get(2,0)/1e9:.1f} / {bw.get(2,0)/1e9:.1f} GB/s (2 threads); "
      f"sgemm 2048^3 {gemm.get(1,0)/1e9:.0f} GFLOP/s (1 thread), {gemm.get(2,0)/1e9:.0f} GFLOP/s (2 threads)")
print()
print("| benchmark | model | threads | tokens/s | ms/step | fraction of floor |")
print("| --- | --- | --- | --- | --- | --- |")
for b in model["benchmarks"]:
    name = b["name"]
    t = int(name.split("threads:")[1].split("/")[0])
    secs = b["real_time"] / 1e3 if b["time_unit"] == "ms" else b["real_time"]
    if name.startswith("BM_Decode"):
        sessions = int(name.split("sessions:")[1].split("/")[0])
        mean_frac = b["weight_bytes_per_step"] / bw_mean[t] / secs
        best_frac = b["weight_bytes_per_step"] / bw[t] / (b["best_ms"] / 1e3)
        kind = f"decode, {sessions} session{'s' if sessions > 1 else ''}"
        note = (f"{mean_frac:.0%} mean / {best_frac:.0%} best of bandwidth floor "
                f"({b['weight_bytes_per_step']/1e6:.0f} MB/step)")
    else:
        achieved = b["flops_per_call"] / secs
        frac = achieved / gemm[t]
        kind = "prefill 512, last logits"
        note = f"{frac:.0%} of sgemm ({achieved/1e9:.0f} GFLOP/s)"
    print(f"| {kind} | {b['label']} | {t} | {b['tokens_per_s']:.0f} | {secs*1e3:.2f} | {note} |")
PY
rm -rf "$out"
