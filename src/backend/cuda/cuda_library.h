// The CUDA backend's kernels live in a shared object of their own,
// libmemmamba_cuda (kernels/), opened at run time the first time a CUDA
// model or trainer is asked for: the core library and CPU-only programs
// never load the CUDA runtime, and a machine without it gets a status, not a
// link error.
#ifndef MEMMAMBA_BACKEND_CUDA_CUDA_LIBRARY_H_
#define MEMMAMBA_BACKEND_CUDA_CUDA_LIBRARY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "memmamba_cuda.h"
#include "model/config.h"

namespace memmamba {

// The op table of the loaded library. Where it is looked for, in order:
// the file named by the environment variable MM_CUDA_LIBRARY; beside the
// file that holds libmemmamba (an installed tree); in its kernels/
// subdirectory (a build tree); then the dynamic linker's search path.
// Opened once per process; a failure is remembered (kUnsupported with the
// reasons). The table outlives every caller.
[[nodiscard]] absl::StatusOr<const mmc_op_table*> CudaOps();

// A context on one device with its own stream, and the status mapping every
// caller needs. One thread at a time.
class CudaContext {
 public:
  // A context on CUDA device `device` (an ordinal). kNoDevice where the
  // library loads but no device or driver answers, or the ordinal is not a
  // device of this machine.
  // allow_tf32: fp32 matrix products may use TF32 tensor cores (MM_MATH_TF32).
  // bf16_products: products with bf16 weights run on bf16 tensor cores
  // (MM_MATH_BF16; mmc_context_options.bf16_products).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CudaContext>> Create(
      int device = 0, bool allow_tf32 = false, bool bf16_products = false);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  const mmc_op_table& ops() const { return *ops_; }
  mmc_context* get() const { return ctx_; }
  const std::string& device_name() const { return device_name_; }
  int device() const { return device_; }
  int64_t total_memory() const { return total_memory_; }

  // OK for MMC_OK, else the matching ErrorCode with `what` and the
  // context's last error text.
  [[nodiscard]] absl::Status Check(int status, const char* what) const;

  [[nodiscard]] absl::Status Malloc(void** ptr, size_t bytes);
  void Free(void* ptr);
  [[nodiscard]] absl::Status Upload(void* dst, const void* src, size_t bytes);
  [[nodiscard]] absl::Status Download(void* dst, const void* src, size_t bytes);
  [[nodiscard]] absl::Status Zero(void* ptr, size_t bytes);
  [[nodiscard]] absl::Status Synchronize();

 private:
  CudaContext() = default;
  const mmc_op_table* ops_ = nullptr;
  mmc_context* ctx_ = nullptr;
  std::string device_name_;
  int device_ = 0;
  int64_t total_memory_ = 0;
};

// The kernels' code (MMC_FUSION_*) of a fusion mode.
inline int MmcFusionMode(Fusion f) {
  switch (f) {
    case Fusion::kWeighted: return MMC_FUSION_WEIGHTED;
    case Fusion::kResidual: return MMC_FUSION_RESIDUAL;
    case Fusion::kGated: return MMC_FUSION_GATED;
  }
  return MMC_FUSION_WEIGHTED;
}

// Device memory of `n` elements of T, freed with its context.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(CudaContext* ctx) : ctx_(ctx) {}
  ~DeviceArray() { Release(); }
  DeviceArray(DeviceArray&& o) noexcept : ctx_(o.ctx_), ptr_(o.ptr_), n_(o.n_) {
    o.ptr_ = nullptr;
    o.n_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      Release();
      ctx_ = o.ctx_;
      ptr_ = o.ptr_;
      n_ = o.n_;
      o.ptr_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }

  // Makes room for at least n elements (contents lost when it grows).
  [[nodiscard]] absl::Status Reserve(CudaContext* ctx, int64_t n) {
    ctx_ = ctx;
    if (n <= n_) return absl::OkStatus();
    Release();
    void* p = nullptr;
    MM_RETURN_IF_ERROR(ctx_->Malloc(&p, static_cast<size_t>(n) * sizeof(T)));
    ptr_ = static_cast<T*>(p);
    n_ = n;
    return absl::OkStatus();
  }
  T* get() const { return ptr_; }
  int64_t size() const { return n_; }

 private:
  void Release() {
    if (ptr_ != nullptr && ctx_ != nullptr) ctx_->Free(ptr_);
    ptr_ = nullptr;
    n_ = 0;
  }
  CudaContext* ctx_ = nullptr;
  T* ptr_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace memmamba

#endif  // MEMMAMBA_BACKEND_CUDA_CUDA_LIBRARY_H_
