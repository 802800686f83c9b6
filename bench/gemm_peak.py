#!/usr/bin/python3
"""The dense-GEMM peak of this GPU, measured: the denominator of model-FLOPs
utilisation in bench/RESULTS.md (bench/run_cuda.sh).

    python3 bench/gemm_peak.py [--n 8192] [--reps 20]

Times C = A·B for n×n×n products in bf16 and in fp32 (TF32 off) with CUDA
events after warm-up, rotating among several input sets so that the inputs
are not served from L2; prints the median of each in TFLOP/s, one JSON line.
"""

import argparse
import json
import statistics

import torch


def measure(n, dtype, reps):
    sets = [(torch.randn(n, n, device="cuda", dtype=dtype),
             torch.randn(n, n, device="cuda", dtype=dtype)) for _ in range(3)]
    out = torch.empty(n, n, device="cuda", dtype=dtype)
    for a, b in sets:  # warm-up
        torch.matmul(a, b, out=out)
    torch.cuda.synchronize()
    times = []
    for i in range(reps):
        a, b = sets[i % len(sets)]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(a, b, out=out)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2.0 * n ** 3 / statistics.median(times) / 1e12


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    print(json.dumps({"device": torch.cuda.get_device_name(), "n": args.n,
                      "bf16_tflops": measure(args.n, torch.bfloat16, args.reps),
                      "fp32_tflops": measure(args.n, torch.float32, args.reps),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
