// Row gathers and sums, and an elementwise add: the moves between the ops of
// the whole-sequence forward and backward (the embedding lookup and its
// gradient, the loss's target rows; src/train/gradients.cc does them on the
// host with loops and memcpy).
//
// gather_rows, for i < n, with o = out_rows ? out_rows[i] : i and the source
// rows j ∈ [offsets[i], offsets[i+1]) (offsets NULL: j = i only):
//   dst[o, :] = (accumulate ? dst[o, :] : 0) + Σ_j src[src_rows ? src_rows[j] : j, :]
//   summed in ascending j, each column by one thread: the same additions in
//   the same order as a plain loop, so the same bits as the CPU.
//   dst rows o are overwritten (or accumulated); nothing else is touched.
// add:  y[i] += x[i]                                                     (accumulates)
//
// Layout: one warp per output row (rows grid-strided), each lane holding
// kColsPerLane columns 32 apart in registers so that its loads of one source
// row are independent; coalesced along D. add: float4 when both pointers are
// 16-byte aligned.
#include <algorithm>
#include <cstdint>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kColsPerLane = 4;
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// src and dst are not __restrict__: a caller may gather within one buffer
// (distinct rows), which is well defined.
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    GatherRowsKernel(const float* src, int64_t ld_src, const int32_t* __restrict__ src_rows,
                     const int32_t* __restrict__ offsets, const int32_t* __restrict__ out_rows,
                     int64_t n, int64_t D, float* dst, int64_t ld_dst, bool accumulate) {
  const int lane = threadIdx.x % 32;
  for (int64_t i = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32; i < n;
       i += int64_t{gridDim.x} * kWarpsPerBlock) {
    const int64_t j0 = offsets != nullptr ? int64_t{offsets[i]} : i;
    const int64_t j1 = offsets != nullptr ? int64_t{offsets[i + 1]} : i + 1;
    float* o = dst + (out_rows != nullptr ? int64_t{out_rows[i]} : i) * ld_dst;
    for (int64_t d0 = lane; d0 < D; d0 += 32 * kColsPerLane) {
      float acc[kColsPerLane];
#pragma unroll
      for (int u = 0; u < kColsPerLane; ++u) {
        const int64_t d = d0 + 32 * u;
        acc[u] = (accumulate && d < D) ? o[d] : 0.0f;
      }
      for (int64_t j = j0; j < j1; ++j) {
        const float* s = src + (src_rows != nullptr ? int64_t{src_rows[j]} : j) * ld_src;
#pragma unroll
        for (int u = 0; u < kColsPerLane; ++u) {
          const int64_t d = d0 + 32 * u;
          if (d < D) acc[u] += s[d];
        }
      }
#pragma unroll
      for (int u = 0; u < kColsPerLane; ++u) {
        const int64_t d = d0 + 32 * u;
        if (d < D) o[d] = acc[u];
      }
    }
  }
}

// x and y may be the same array (y = 2y).
__global__ void __launch_bounds__(kThreads) AddKernel(const float* x, int64_t n, float* y) {
  const int64_t first = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * kThreads;
  int64_t done = 0;
  if (((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y)) & 15) == 0) {
    const int64_t n4 = n / 4;
    for (int64_t q = first; q < n4; q += stride) {
      const float4 a = reinterpret_cast<const float4*>(x)[q];
      float4 b = reinterpret_cast<float4*>(y)[q];
      b.x += a.x;
      b.y += a.y;
      b.z += a.z;
      b.w += a.w;
      reinterpret_cast<float4*>(y)[q] = b;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + first; i < n; i += stride) y[i] += x[i];
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_gather_rows(mmc_context* ctx, const float* src, int64_t ld_src,
                            const int32_t* src_rows, const int32_t* offsets,
                            const int32_t* out_rows, int64_t n, int64_t D, float* dst,
                            int64_t ld_dst, int accumulate) {
  MMC_ENTER(ctx);
  if (n < 0 || D < 0 || ld_src < D || ld_dst < D) return MMC_ERR_INVALID_ARGUMENT;
  if (n == 0 || D == 0) return MMC_OK;
  if (src == nullptr || dst == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  return Guarded(ctx, [&]() -> int {
    const int64_t blocks = std::min(CeilDiv(n, kWarpsPerBlock), kMaxBlocks);
    GatherRowsKernel<<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, ctx->stream>>>(
        src, ld_src, src_rows, offsets, out_rows, n, D, dst, ld_dst, accumulate != 0);
    MMC_LAUNCH_CHECK(ctx, "GatherRowsKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_add(mmc_context* ctx, const float* x, int64_t n, float* y) {
  MMC_ENTER(ctx);
  if (n < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (n == 0) return MMC_OK;
  if (x == nullptr || y == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  return Guarded(ctx, [&]() -> int {
    const int64_t blocks = std::min(CeilDiv(CeilDiv(n, 4), kThreads), kMaxBlocks);
    AddKernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx->stream>>>(x, n, y);
    MMC_LAUNCH_CHECK(ctx, "AddKernel");
    return MMC_OK;
  });
}

}  // extern "C"
