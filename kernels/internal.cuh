// Internals shared by the kernel files of libmemmamba_cuda: the context,
// error handling (every CUDA call and launch becomes a status, never an
// abort), stream-ordered temporaries, by-value launch batches and the
// elementwise math shared with the CPU backend (src/backend/cpu/vec_math.h).
//
// This library speaks the C ABI of memmamba_cuda.h only and links no abseil:
// a program that loads it needs the CUDA runtime it carries (static) and
// cuBLASLt, nothing of the core library. So statuses here are the ints of
// memmamba_cuda.h, propagated with MMC_RETURN_IF_ERROR, instead of the core's
// absl::Status.
#ifndef MEMMAMBA_KERNELS_INTERNAL_CUH_
#define MEMMAMBA_KERNELS_INTERNAL_CUH_

#include <cuda_runtime.h>
#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "memmamba_cuda.h"

namespace memmamba::cuda {
struct GemmCache;  // gemm.cu
void DestroyGemmCache(GemmCache* cache);
}  // namespace memmamba::cuda

struct mmc_context {
  int device = 0;
  cudaStream_t stream = nullptr;
  bool own_stream = false;
  bool allow_tf32 = false;
  bool bf16_products = false;  // bf16 weights' products on bf16 tensor cores
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  size_t lt_workspace_bytes = 0;
  cudaMemPool_t pool = nullptr;  // temporaries, stream-ordered
  int multiprocessors = 0;
  size_t smem_optin = 0;  // largest dynamic shared memory a block may ask for
  bool dependent_launch = false;  // programmatic dependent launch (sm_90 and later)
  memmamba::cuda::GemmCache* gemm_cache = nullptr;
  std::string last_error;
};

namespace memmamba::cuda {

// Records `what` and the CUDA error in the context (when there is one),
// clears a non-sticky error, and maps it: allocation failure -> OUT_OF_MEMORY,
// no device or driver -> NO_DEVICE, anything else -> CUDA.
int Fail(mmc_context* ctx, cudaError_t err, const char* what);
// Records a message and returns `status`.
int FailWith(mmc_context* ctx, int status, const std::string& message);
bool IsNoDeviceError(cudaError_t err);

#define MMC_RETURN_IF_ERROR(expr)            \
  do {                                       \
    const int mmc_status_ = (expr);          \
    if (mmc_status_ != MMC_OK) return mmc_status_; \
  } while (0)

#define MMC_CUDA_CHECK(ctx, expr)                                    \
  do {                                                               \
    const cudaError_t mmc_err_ = (expr);                             \
    if (mmc_err_ != cudaSuccess) return ::memmamba::cuda::Fail((ctx), mmc_err_, #expr); \
  } while (0)

// After every launch: configuration errors surface here; faults surface at a
// later call on the stream.
#define MMC_LAUNCH_CHECK(ctx, name)                                  \
  do {                                                               \
    const cudaError_t mmc_err_ = cudaGetLastError();                 \
    if (mmc_err_ != cudaSuccess) return ::memmamba::cuda::Fail((ctx), mmc_err_, name); \
  } while (0)

// Makes the context's device current for a call and restores the caller's.
class DeviceGuard {
 public:
  explicit DeviceGuard(mmc_context* ctx) : ctx_(ctx) {}
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  [[nodiscard]] int Enter() {
    MMC_CUDA_CHECK(ctx_, cudaGetDevice(&previous_));
    if (previous_ != ctx_->device) {
      MMC_CUDA_CHECK(ctx_, cudaSetDevice(ctx_->device));
      switched_ = true;
    }
    return MMC_OK;
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }

 private:
  mmc_context* ctx_;
  int previous_ = 0;
  bool switched_ = false;
};

// A temporary from the context's pool, freed in stream order when it goes
// out of scope (kernels queued before the free may still use it).
class Scratch {
 public:
  explicit Scratch(mmc_context* ctx) : ctx_(ctx) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, ctx_->stream);
  }
  [[nodiscard]] int Allocate(size_t bytes) {
    if (bytes == 0) bytes = 16;
    MMC_CUDA_CHECK(ctx_, cudaMallocFromPoolAsync(&ptr_, bytes, ctx_->pool, ctx_->stream));
    return MMC_OK;
  }
  template <typename T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + byte_offset);
  }

 private:
  mmc_context* ctx_;
  void* ptr_ = nullptr;
};

// Runs an exported body: host allocation failures become OUT_OF_MEMORY and
// any other exception INTERNAL, so nothing but a status leaves the library.
template <typename F>
int Guarded(mmc_context* ctx, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    if (ctx != nullptr) ctx->last_error = "host allocation failed";
    return MMC_ERR_OUT_OF_MEMORY;
  } catch (...) {
    if (ctx != nullptr) ctx->last_error = "internal error";
    return MMC_ERR_INTERNAL;
  }
}

// The usual entry of an op: a context, its device current.
#define MMC_ENTER(ctx)                                    \
  if ((ctx) == nullptr) return MMC_ERR_INVALID_ARGUMENT;  \
  ::memmamba::cuda::DeviceGuard mmc_guard_(ctx);          \
  MMC_RETURN_IF_ERROR(mmc_guard_.Enter())

// Per-stream arguments travel by value as a __grid_constant__ kernel
// parameter (no upload, no host synchronisation), up to kMax per launch;
// every struct stays under the 4 KiB parameter limit of every architecture.
template <typename T, int kMax>
struct Batch {
  static constexpr int kCapacity = kMax;
  T item[kMax];
  int count;
};

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// float -> bf16 (the upper 16 bits of a float), to nearest even; a NaN stays
// a NaN (quiet). cpu::F32ToBf16 (src/backend/cpu/bf16.h) rounds the same way.
__device__ __forceinline__ uint16_t RoundBf16(float v) {
  const uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
// An op's output element in fp32, or rounded to bf16 (its _bf16 variant).
__device__ __forceinline__ void StoreValue(float* p, float v) { *p = v; }
__device__ __forceinline__ void StoreValue(uint16_t* p, float v) { *p = RoundBf16(v); }

// Whether p may be read as float4s.
inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Programmatic dependent launch (sm_90 and later): a kernel queued with
// LaunchDependent may start while the kernel before it on the stream still
// runs. Until it calls WaitForPrevious it may only read what no earlier
// kernel writes (its weights) and write nothing; it calls AllowNext once it
// has waited, so that the kernel after it can start its own loads. Without
// the launch attribute (older devices) both calls do nothing.
__device__ __forceinline__ void WaitForPrevious() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void AllowNext() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 for the lines of [p, p + bytes), a 128-byte line per thread of the
// block at a time, so that loads after WaitForPrevious find them there. A
// hint with no effect on any value: it may run before WaitForPrevious even
// over memory that earlier kernels write.
__device__ __forceinline__ void PrefetchL2(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = threadIdx.x * int64_t{128}; off < bytes; off += blockDim.x * int64_t{128}) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
  }
}

template <typename... KernelArgs, typename... Args>
cudaError_t LaunchDependent(mmc_context* ctx, void (*kernel)(KernelArgs...), dim3 grid,
                            dim3 block, size_t smem, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = ctx->stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = ctx->dependent_launch ? 1 : 0;
  config.attrs = attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// ---------------------------------------------------------------------------
// Device math: the formulas of src/backend/cpu/vec_math.h, in the accurate
// libdevice functions (the CPU's Cephes exp and log are within 2e-7).

__device__ __forceinline__ float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float Silu(float x) { return x / (1.0f + expf(-x)); }
// d SiLU(x)/dx = σ(x)·(1 + x·(1 − σ(x))).
__device__ __forceinline__ float SiluGrad(float x) {
  const float s = Sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}
// PyTorch's softplus (threshold 20).
__device__ __forceinline__ float Softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// The fusion weight f of a pool read at column d (MMC_FUSION_*), a the
// note block's input there.
template <int kMode>
__device__ __forceinline__ float FuseWeight(const float* alpha, const float* fuse, float a,
                                            int64_t d) {
  if constexpr (kMode == MMC_FUSION_WEIGHTED) {
    return alpha[d];
  } else if constexpr (kMode == MMC_FUSION_GATED) {
    return Sigmoid(fuse[d] * a);
  } else {
    return 1.0f;
  }
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double WarpSumDouble(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Adds, for each element i < count, the partials of the listed sources in
// list order to target[i] (the deterministic end of every cross-stream or
// cross-block reduction): target[i] += Σ_s partials[src_s * stride + i].
constexpr int kMaxSumSources = 64;
struct SumSources {
  int32_t source[kMaxSumSources];
  int count;
};
// Queues the sum (in batches of kMaxSumSources, still in list order).
int AddPartials(mmc_context* ctx, float* target, const float* partials, int64_t stride,
                int64_t count, const int32_t* sources, int n_sources);

// Lists, for each distinct target pointer (in order of first appearance),
// the partial sources of the streams that accumulate into it, in stream order.
template <typename Ptr>
std::vector<std::pair<Ptr, std::vector<int32_t>>> GroupSources(
    const std::vector<Ptr>& targets, const std::vector<int64_t>& first,
    const std::vector<int64_t>& count) {
  std::vector<std::pair<Ptr, std::vector<int32_t>>> groups;
  for (size_t s = 0; s < targets.size(); ++s) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& gr) { return gr.first == targets[s]; });
    if (it == groups.end()) {
      groups.emplace_back(targets[s], std::vector<int32_t>{});
      it = groups.end() - 1;
    }
    for (int64_t i = 0; i < count[s]; ++i) it->second.push_back(static_cast<int32_t>(first[s] + i));
  }
  return groups;
}

}  // namespace memmamba::cuda

#endif  // MEMMAMBA_KERNELS_INTERNAL_CUH_
