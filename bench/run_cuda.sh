#!/bin/sh
# Everything the CUDA backend reports, in one run on a GPU machine: the op,
# training and session parity tests, the op timings, training throughput of
# the Mamba-130m shape (T = 2048 and 8192) as model-FLOPs utilisation against
# the GPU's measured GEMM peak, the same model in PyTorch on the same GPU,
# and decode / prefill throughput of sessions on the GPU.
# Usage: bench/run_cuda.sh BUILD_DIR [OUT_DIR]
# BUILD_DIR was configured with -DMM_CUDA=ON and built (the targets
# cuda_op_parity cuda_train_parity cuda_session_parity bench_cuda_ops
# bench_train bench_cuda_sessions). Needs a
# python3 with a CUDA PyTorch for the peak and the baseline (set PYTHON).
# MM_LIBRARY_PATH, when set, is searched first for the built programs'
# shared libraries (not for python3's).
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [OUT_DIR]" >&2
  exit 2
fi
build=$1
out=${2:-.}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
status=0
run() {  # name, command...: log to $out/name.log, keep going on failure
  name=$1
  shift
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  rc=$?
  tail -n 40 "$out/$name.log"
  echo "== $name: exit $rc"
  [ $rc -eq 0 ] || status=1
}
export MM_CUDA_LIBRARY="$build/kernels/libmemmamba_cuda.so.0"
ours() { LD_LIBRARY_PATH="${MM_LIBRARY_PATH:+$MM_LIBRARY_PATH:}${LD_LIBRARY_PATH:-}" "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
run op_parity ours "$build/tests/cuda/cuda_op_parity"
run train_parity ours "$build/tests/cuda/cuda_train_parity"
run session_parity ours "$build/tests/cuda/cuda_session_parity"
run gemm_peak "$python" "$here/gemm_peak.py"
run train_130m_T2048 ours "$build/bench/bench_train" --cuda=1 --shape=1 --B=4 --T=2048 --min_time=20
run train_130m_T8192 ours "$build/bench/bench_train" --cuda=1 --shape=1 --B=1 --T=8192 --min_time=20
run torch_130m_T2048 "$python" "$here/torch_train.py" --device cuda --shape 130m --B 4 \
  --T 2048 --warmup 1 --steps 2 --json
run ops ours "$build/bench/bench_cuda_ops" 20
run sessions ours "$build/bench/bench_cuda_sessions"
exit $status
