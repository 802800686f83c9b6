// Multi-tensor optimizer kernels (DESIGN 6: global-norm clipping and AdamW;
// backend.h SumSquares / AdamW; the CPU twin is in src/backend/cpu/cpu_backend.cc).
//
// sum_squares:  *out = Σ_tensors Σ_i x[i]²   in double                  (overwrites *out)
//   Every chunk of kChunk elements of every tensor gives a double partial
//   (a fixed tree inside the block); one block then sums the partials in a
//   fixed order: deterministic.
// adamw, per tensor with its own weight decay wd, step counting from 1:
//   g' = g·gs (·*grad_scale_device);  m = β1·m + (1−β1)·g';  v = β2·v + (1−β2)·g'²
//   w -= lr·( m/(1−β1^step) / (sqrt(v)/sqrt(1−β2^step) + eps) + wd·w )   (overwrites w, m, v)
//   the bias corrections in double on the host, as on the CPU.
// Tensors travel by value in batches (a list of pointers and chunk offsets as
// a kernel parameter); each block walks chunks of the batch.
#include <algorithm>
#include <cmath>
#include <vector>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int64_t kChunk = 1 << 16;
constexpr int kThreads = 256;
constexpr int kMaxTensorsSum = 96;
constexpr int kMaxTensorsAdam = 48;

struct SumList {
  const float* x[kMaxTensorsSum];
  int64_t n[kMaxTensorsSum];
  int32_t chunk_start[kMaxTensorsSum + 1];  // chunks before tensor i (within the batch)
  int32_t count;
  int64_t partial_offset;  // first partial of the batch
};

struct AdamList {
  mmc_adamw_tensor t[kMaxTensorsAdam];
  int32_t chunk_start[kMaxTensorsAdam + 1];
  int32_t count;
};
static_assert(sizeof(SumList) <= 4000 && sizeof(AdamList) <= 4000,
              "kernel parameters stay under 4 KiB");

template <typename List>
__device__ __forceinline__ int FindTensor(const List& l, int32_t chunk) {
  int lo = 0, hi = l.count - 1;  // the last i with chunk_start[i] <= chunk
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (l.chunk_start[mid] <= chunk) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads)
    SumSquaresKernel(const __grid_constant__ SumList l, double* __restrict__ partials) {
  __shared__ double s[kThreads];
  const int32_t chunk = blockIdx.x;
  const int i = FindTensor(l, chunk);
  const int64_t begin = int64_t{chunk - l.chunk_start[i]} * kChunk;
  const int64_t end = min(l.n[i], begin + kChunk);
  const float* x = l.x[i];
  double acc = 0.0;
  for (int64_t k = begin + threadIdx.x; k < end; k += kThreads) {
    const double v = x[k];
    acc += v * v;
  }
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[l.partial_offset + chunk] = s[0];
}

__global__ void __launch_bounds__(1024)
    SumPartialsKernel(const double* __restrict__ partials, int64_t n, double* __restrict__ out) {
  __shared__ double s[1024];
  double acc = 0.0;
  for (int64_t k = threadIdx.x; k < n; k += 1024) acc += partials[k];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int w = 512; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = s[0];
}

struct AdamScalars {
  float lr, beta1, beta2, eps, gs, inv_bc1, inv_sqrt_bc2;
  const float* gs_device;
};

__device__ __forceinline__ void AdamElement(float& w, float g, float& m, float& v, float gs,
                                            const AdamScalars& p, float wd) {
  const float gi = g * gs;
  m = p.beta1 * m + (1.0f - p.beta1) * gi;
  v = p.beta2 * v + (1.0f - p.beta2) * gi * gi;
  const float update = (m * p.inv_bc1) / (sqrtf(v) * p.inv_sqrt_bc2 + p.eps);
  w -= p.lr * (update + wd * w);
}

__global__ void __launch_bounds__(kThreads)
    AdamWKernel(const __grid_constant__ AdamList l, AdamScalars p) {
  const int32_t chunk = blockIdx.x;
  const int i = FindTensor(l, chunk);
  const mmc_adamw_tensor& t = l.t[i];
  const int64_t begin = int64_t{chunk - l.chunk_start[i]} * kChunk;
  const int64_t end = min(t.n, begin + kChunk);
  const float gs = p.gs_device != nullptr ? p.gs * *p.gs_device : p.gs;
  const float wd = t.weight_decay;
  const bool vec = ((reinterpret_cast<uintptr_t>(t.w) | reinterpret_cast<uintptr_t>(t.g) |
                     reinterpret_cast<uintptr_t>(t.m) | reinterpret_cast<uintptr_t>(t.v)) &
                    15) == 0;
  int64_t k = begin;
  if (vec) {
    // begin is a multiple of kChunk, so 16-byte aligned with the pointers.
    const int64_t vec_end = begin + (end - begin) / 4 * 4;
    for (int64_t q = begin + 4 * int64_t{threadIdx.x}; q < vec_end; q += 4 * kThreads) {
      float4 w4 = *reinterpret_cast<const float4*>(t.w + q);
      const float4 g4 = *reinterpret_cast<const float4*>(t.g + q);
      float4 m4 = *reinterpret_cast<const float4*>(t.m + q);
      float4 v4 = *reinterpret_cast<const float4*>(t.v + q);
      AdamElement(w4.x, g4.x, m4.x, v4.x, gs, p, wd);
      AdamElement(w4.y, g4.y, m4.y, v4.y, gs, p, wd);
      AdamElement(w4.z, g4.z, m4.z, v4.z, gs, p, wd);
      AdamElement(w4.w, g4.w, m4.w, v4.w, gs, p, wd);
      *reinterpret_cast<float4*>(t.w + q) = w4;
      *reinterpret_cast<float4*>(t.m + q) = m4;
      *reinterpret_cast<float4*>(t.v + q) = v4;
    }
    k = vec_end;
  }
  for (int64_t q = k + threadIdx.x; q < end; q += kThreads) {
    float w = t.w[q], m = t.m[q], v = t.v[q];
    AdamElement(w, t.g[q], m, v, gs, p, wd);
    t.w[q] = w;
    t.m[q] = m;
    t.v[q] = v;
  }
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_sum_squares(mmc_context* ctx, const mmc_tensor_ref* tensors, int64_t n_tensors,
                            double* out) {
  MMC_ENTER(ctx);
  if (n_tensors < 0 || out == nullptr || (n_tensors > 0 && tensors == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  for (int64_t i = 0; i < n_tensors; ++i) {
    if (tensors[i].n < 0 || (tensors[i].n > 0 && tensors[i].x == nullptr)) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
  }
  return Guarded(ctx, [&]() -> int {
    int64_t total_chunks = 0;
    for (int64_t i = 0; i < n_tensors; ++i) total_chunks += CeilDiv(tensors[i].n, kChunk);
    if (total_chunks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
    Scratch partials(ctx);
    MMC_RETURN_IF_ERROR(partials.Allocate(std::max<int64_t>(1, total_chunks) * sizeof(double)));
    int64_t done = 0;
    for (int64_t first = 0; first < n_tensors;) {
      SumList l;
      l.count = 0;
      l.partial_offset = done;
      int32_t chunks = 0;
      while (first < n_tensors && l.count < kMaxTensorsSum) {
        const mmc_tensor_ref& t = tensors[first++];
        if (t.n == 0) continue;
        l.x[l.count] = t.x;
        l.n[l.count] = t.n;
        l.chunk_start[l.count] = chunks;
        chunks += static_cast<int32_t>(CeilDiv(t.n, kChunk));
        ++l.count;
      }
      l.chunk_start[l.count] = chunks;
      if (chunks == 0) continue;
      SumSquaresKernel<<<static_cast<unsigned>(chunks), kThreads, 0, ctx->stream>>>(
          l, partials.as<double>());
      MMC_LAUNCH_CHECK(ctx, "SumSquaresKernel");
      done += chunks;
    }
    SumPartialsKernel<<<1, 1024, 0, ctx->stream>>>(partials.as<double>(), done, out);
    MMC_LAUNCH_CHECK(ctx, "SumPartialsKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_adamw(mmc_context* ctx, const mmc_adamw_tensor* tensors, int64_t n_tensors,
                      const mmc_adamw_params* params) {
  MMC_ENTER(ctx);
  if (n_tensors < 0 || params == nullptr || (n_tensors > 0 && tensors == nullptr) ||
      params->step < 1) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  for (int64_t i = 0; i < n_tensors; ++i) {
    const mmc_adamw_tensor& t = tensors[i];
    if (t.n < 0 || (t.n > 0 && (t.w == nullptr || t.g == nullptr || t.m == nullptr ||
                                t.v == nullptr))) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
  }
  const double bc1 = 1.0 - std::pow(static_cast<double>(params->beta1),
                                    static_cast<double>(params->step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(params->beta2),
                                    static_cast<double>(params->step));
  AdamScalars p{params->lr,
                params->beta1,
                params->beta2,
                params->eps,
                params->grad_scale,
                static_cast<float>(1.0 / bc1),
                static_cast<float>(1.0 / std::sqrt(bc2)),
                params->grad_scale_device};
  return Guarded(ctx, [&]() -> int {
    for (int64_t first = 0; first < n_tensors;) {
      AdamList l;
      l.count = 0;
      int64_t chunks = 0;
      while (first < n_tensors && l.count < kMaxTensorsAdam) {
        const mmc_adamw_tensor& t = tensors[first++];
        if (t.n == 0) continue;
        l.t[l.count] = t;
        l.chunk_start[l.count] = static_cast<int32_t>(chunks);
        chunks += CeilDiv(t.n, kChunk);
        ++l.count;
      }
      if (chunks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
      l.chunk_start[l.count] = static_cast<int32_t>(chunks);
      if (chunks == 0) continue;
      AdamWKernel<<<static_cast<unsigned>(chunks), kThreads, 0, ctx->stream>>>(l, p);
      MMC_LAUNCH_CHECK(ctx, "AdamWKernel");
    }
    return MMC_OK;
  });
}

}  // extern "C"
