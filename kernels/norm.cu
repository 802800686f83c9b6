// RMSNorm forward and backward (DESIGN 2.3: a = RMSNorm(u); backend.h
// RmsNorm / RmsNormBackward; the CPU twin is in src/backend/cpu/cpu_backend.cc).
//
// Forward, per row m of D:   r = 1/sqrt(mean(x²) + eps);  out = x·r ⊙ w      (overwrites;
//                            mmc_rms_norm_bf16: out rounded to bf16)
// Backward:                  dx = r·(dy⊙w) − x·r³·Σ_d(dy⊙w⊙x)/D             (overwrites,
//                                                                  or accumulates)
//                            dw += Σ_m dy⊙x·r                                 (accumulates)
// Row sums are taken in double, as on the CPU. dw is summed over blocks of
// kRowsPerPartial rows into partials, then the partials in block order
// (deterministic, no atomics).
#include <algorithm>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kRowsPerPartial = 64;

// One warp per row; Out float, or uint16_t (bf16).
template <typename Out>
__global__ void RmsNormKernel(const float* __restrict__ x, int64_t M, int64_t D,
                              const float* __restrict__ w, float eps, Out* __restrict__ out) {
  const int64_t m = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (m >= M) return;
  const float* xr = x + m * D;
  double ss = 0.0;
  for (int64_t d = lane; d < D; d += 32) ss += static_cast<double>(xr[d]) * xr[d];
  ss = WarpSumDouble(ss);
  const float inv = static_cast<float>(1.0 / sqrt(ss / D + eps));
  Out* o = out + m * D;
  for (int64_t d = lane; d < D; d += 32) StoreValue(o + d, xr[d] * inv * w[d]);
}

// Four outputs k4·4 .. k4·4 + 3 of a row.
__device__ __forceinline__ void Store4(float* o, int64_t k4, float4 v) {
  reinterpret_cast<float4*>(o)[k4] = v;
}
__device__ __forceinline__ void Store4(uint16_t* o, int64_t k4, float4 v) {
  const uint32_t lo = RoundBf16(v.x) | static_cast<uint32_t>(RoundBf16(v.y)) << 16;
  const uint32_t hi = RoundBf16(v.z) | static_cast<uint32_t>(RoundBf16(v.w)) << 16;
  reinterpret_cast<uint2*>(o)[k4] = make_uint2(lo, hi);
}

// Rows of at most kVecRowFloats in float4s (D % 4 == 0, 16-byte aligned
// rows): a lane holds its part of the row in registers, so the row is read
// from memory once, in one round of loads instead of one per 32 floats.
constexpr int kVecPerLane = 8;
constexpr int64_t kVecRowFloats = 32 * 4 * kVecPerLane;

template <typename Out>
__global__ void RmsNormVecKernel(const float* __restrict__ x, int64_t M, int64_t D,
                                 const float* __restrict__ w, float eps,
                                 Out* __restrict__ out) {
  const int64_t m = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (m >= M) return;
  const float4* xr = reinterpret_cast<const float4*>(x + m * D);
  const int64_t n4 = D / 4;
  float4 v[kVecPerLane];
  double ss = 0.0;
#pragma unroll
  for (int i = 0; i < kVecPerLane; ++i) {
    const int64_t k = i * 32 + lane;
    v[i] = k < n4 ? xr[k] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
#pragma unroll
  for (int i = 0; i < kVecPerLane; ++i) {
    ss += static_cast<double>(v[i].x) * v[i].x + static_cast<double>(v[i].y) * v[i].y +
          static_cast<double>(v[i].z) * v[i].z + static_cast<double>(v[i].w) * v[i].w;
  }
  ss = WarpSumDouble(ss);
  const float inv = static_cast<float>(1.0 / sqrt(ss / D + eps));
  const float4* w4 = reinterpret_cast<const float4*>(w);
  Out* o = out + m * D;
#pragma unroll
  for (int i = 0; i < kVecPerLane; ++i) {
    const int64_t k = i * 32 + lane;
    if (k < n4) {
      const float4 g = w4[k];
      Store4(o, k, make_float4(v[i].x * inv * g.x, v[i].y * inv * g.y, v[i].z * inv * g.z,
                               v[i].w * inv * g.w));
    }
  }
}

__global__ void RmsNormBackwardKernel(const float* __restrict__ x, int64_t M, int64_t D,
                                      const float* __restrict__ w, float eps,
                                      const float* __restrict__ dy, float* __restrict__ dx,
                                      bool accumulate, float* __restrict__ inv_out) {
  const int64_t m = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (m >= M) return;
  const float* xr = x + m * D;
  const float* g = dy + m * D;
  double ss = 0.0, dot = 0.0;
  for (int64_t d = lane; d < D; d += 32) {
    ss += static_cast<double>(xr[d]) * xr[d];
    dot += static_cast<double>(g[d]) * w[d] * xr[d];
  }
  ss = WarpSumDouble(ss);
  dot = WarpSumDouble(dot);
  const double r = 1.0 / sqrt(ss / D + eps);
  const float k = static_cast<float>(r * r * r * dot / D);
  const float rf = static_cast<float>(r);
  if (lane == 0) inv_out[m] = rf;
  float* o = dx + m * D;
  for (int64_t d = lane; d < D; d += 32) {
    const float v = rf * g[d] * w[d] - xr[d] * k;
    o[d] = accumulate ? o[d] + v : v;
  }
}

// partial[b, d] = Σ_{m in block b} dy[m, d]·x[m, d]·inv[m]; one thread per d.
__global__ void RmsNormWeightPartialKernel(const float* __restrict__ x, int64_t M, int64_t D,
                                           const float* __restrict__ dy,
                                           const float* __restrict__ inv,
                                           float* __restrict__ partial) {
  const int64_t d = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (d >= D) return;
  const int64_t m0 = b * kRowsPerPartial, m1 = min(M, m0 + kRowsPerPartial);
  float acc = 0.0f;
  for (int64_t m = m0; m < m1; ++m) acc += dy[m * D + d] * x[m * D + d] * inv[m];
  partial[b * D + d] = acc;
}

// dw[d] += Σ_b partial[b, d], b ascending.
__global__ void RmsNormWeightSumKernel(const float* __restrict__ partial, int64_t blocks,
                                       int64_t D, float* __restrict__ dw) {
  const int64_t d = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (d >= D) return;
  float acc = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) acc += partial[b * D + d];
  dw[d] += acc;
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

namespace {

template <typename Out>
int RmsNorm(mmc_context* ctx, const float* x, int64_t M, int64_t D, const float* w, float eps,
            Out* out) {
  MMC_ENTER(ctx);
  if (M < 0 || D < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (M == 0 || D == 0) return MMC_OK;
  if (x == nullptr || w == nullptr || out == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  const int64_t blocks = CeilDiv(M, kWarpsPerBlock);
  if (blocks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
  const bool out_aligned = reinterpret_cast<uintptr_t>(out) % (4 * sizeof(Out)) == 0;
  if (D % 4 == 0 && D <= kVecRowFloats && Aligned16(x) && Aligned16(w) && out_aligned) {
    RmsNormVecKernel<<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, ctx->stream>>>(
        x, M, D, w, eps, out);
  } else {
    RmsNormKernel<<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, ctx->stream>>>(
        x, M, D, w, eps, out);
  }
  MMC_LAUNCH_CHECK(ctx, "RmsNormKernel");
  return MMC_OK;
}

}  // namespace

extern "C" {

MMC_API int mmc_rms_norm(mmc_context* ctx, const float* x, int64_t M, int64_t D, const float* w,
                         float eps, float* out) {
  return RmsNorm(ctx, x, M, D, w, eps, out);
}

MMC_API int mmc_rms_norm_bf16(mmc_context* ctx, const float* x, int64_t M, int64_t D,
                              const float* w, float eps, uint16_t* out) {
  return RmsNorm(ctx, x, M, D, w, eps, out);
}

MMC_API int mmc_rms_norm_backward(mmc_context* ctx, const float* x, int64_t M, int64_t D,
                                  const float* w, float eps, const float* dy, float* dx,
                                  int accumulate, float* dw) {
  MMC_ENTER(ctx);
  if (M < 0 || D < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (M == 0 || D == 0) return MMC_OK;
  if (x == nullptr || w == nullptr || dy == nullptr || dx == nullptr || dw == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  const int64_t blocks = CeilDiv(M, kWarpsPerBlock);
  const int64_t partials = CeilDiv(M, kRowsPerPartial);
  if (blocks > INT32_MAX || partials > 65535) return MMC_ERR_UNSUPPORTED;
  return Guarded(ctx, [&]() -> int {
    Scratch scratch(ctx);
    const size_t inv_bytes = ((M * sizeof(float)) + 255) / 256 * 256;
    MMC_RETURN_IF_ERROR(scratch.Allocate(inv_bytes + partials * D * sizeof(float)));
    float* inv = scratch.as<float>();
    float* partial = scratch.as<float>(inv_bytes);
    RmsNormBackwardKernel<<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0,
                            ctx->stream>>>(x, M, D, w, eps, dy, dx, accumulate != 0, inv);
    MMC_LAUNCH_CHECK(ctx, "RmsNormBackwardKernel");
    const dim3 grid(static_cast<unsigned>(CeilDiv(D, 256)), static_cast<unsigned>(partials));
    RmsNormWeightPartialKernel<<<grid, 256, 0, ctx->stream>>>(x, M, D, dy, inv, partial);
    MMC_LAUNCH_CHECK(ctx, "RmsNormWeightPartialKernel");
    RmsNormWeightSumKernel<<<static_cast<unsigned>(CeilDiv(D, 256)), 256, 0, ctx->stream>>>(
        partial, partials, D, dw);
    MMC_LAUNCH_CHECK(ctx, "RmsNormWeightSumKernel");
    return MMC_OK;
  });
}

}  // extern "C"
