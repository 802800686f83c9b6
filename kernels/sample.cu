// Next-token choice on the device (mm_sessions_step_sample, memmamba.h; the
// host twin is src/runtime/sample.cc, the same integer arithmetic):
//
//   sample_rows, for each row r < rows (logits of one stream, V values):
//     temperature == 0:  out[r] = argmax_v logits[r, v]
//     temperature  > 0:  out[r] = argmax_v (logits[r, v] / temperature + g(v)),
//                        g(v) = -log(-log(u)), u = ((h >> 40) + 0.5) / 2^24,
//                        h = Mix(s ^ Mix(positions[r] ^ Mix(v))),
//                        s = seeds ? seeds[r] : seed
//   with Mix the SplitMix64 step. NaN scores are never chosen; ties go to the
//   lowest id; a row of NaN gives 0. out is overwritten.
//
// Layout: a block per row; each thread keeps the best (score, id) of the ids
// it strides over, then the block reduces with the same tie rule, so the
// result does not depend on the order of the comparisons.
#include <cmath>
#include <cstdint>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// (s, i) beats (best, at): a higher score, or the same score at a lower id;
// NaN never wins, and any number beats "none yet" (at < 0).
__device__ __forceinline__ bool Beats(float s, int64_t i, float best, int64_t at) {
  if (s != s) return false;
  return at < 0 || s > best || (s == best && i < at);
}

__global__ void __launch_bounds__(kThreads)
    SampleRowsKernel(const float* __restrict__ logits, int64_t V, int64_t ld,
                     float temperature, uint64_t seed, const uint64_t* __restrict__ seeds,
                     const int64_t* __restrict__ positions, int32_t* __restrict__ out) {
  __shared__ float best_s[kThreads];
  __shared__ int64_t best_i[kThreads];
  const int64_t r = blockIdx.x;
  const float* row = logits + r * ld;
  const uint64_t p = static_cast<uint64_t>(positions[r]);
  const uint64_t s_r = seeds != nullptr ? seeds[r] : seed;
  float best = 0.0f;
  int64_t at = -1;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) {
    float s = row[v];
    if (temperature > 0.0f) {
      const uint64_t h = Mix(s_r ^ Mix(p ^ Mix(static_cast<uint64_t>(v))));
      const float u = (static_cast<float>(h >> 40) + 0.5f) / 16777216.0f;
      s = s / temperature + -logf(-logf(u));
    }
    if (Beats(s, v, best, at)) {
      best = s;
      at = v;
    }
  }
  best_s[threadIdx.x] = best;
  best_i[threadIdx.x] = at;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float s = best_s[threadIdx.x + half];
      const int64_t i = best_i[threadIdx.x + half];
      if (i >= 0 && Beats(s, i, best_s[threadIdx.x], best_i[threadIdx.x])) {
        best_s[threadIdx.x] = s;
        best_i[threadIdx.x] = i;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[r] = static_cast<int32_t>(best_i[0] < 0 ? 0 : best_i[0]);
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_sample_rows(mmc_context* ctx, const float* logits, int64_t rows, int64_t V,
                            int64_t ld, float temperature, uint64_t seed,
                            const uint64_t* seeds, const int64_t* positions, int32_t* out) {
  MMC_ENTER(ctx);
  if (rows < 0 || V < 1 || V > INT32_MAX || ld < V || !(temperature >= 0.0f) ||
      !std::isfinite(temperature)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (rows == 0) return MMC_OK;
  if (logits == nullptr || positions == nullptr || out == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (rows > 65535) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "sample_rows: rows > 65535");
  return Guarded(ctx, [&]() -> int {
    SampleRowsKernel<<<static_cast<unsigned>(rows), kThreads, 0, ctx->stream>>>(
        logits, V, ld, temperature, seed, seeds, positions, out);
    MMC_LAUNCH_CHECK(ctx, "sample_rows");
    return MMC_OK;
  });
}

}  // extern "C"
