#include "backend/cuda/cuda_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace memmamba {
namespace {

constexpr const char* kLibraryName = "libmemmamba_cuda.so.0";

struct Loaded {
  mmc_op_table table{};
  absl::Status status;
};

// The directory of the file that holds this code (libmemmamba.so, or the
// program a static libmemmamba was linked into), with a trailing slash.
std::string OwnDirectory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&OwnDirectory), &info) == 0 ||
      info.dli_fname == nullptr) {
    return "";
  }
  std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

Loaded Load() {
  Loaded out;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("MM_CUDA_LIBRARY"); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  } else {
    const std::string dir = OwnDirectory();
    if (!dir.empty()) {
      candidates.push_back(dir + kLibraryName);
      candidates.push_back(dir + "kernels/" + kLibraryName);
    }
    candidates.push_back(kLibraryName);
  }
  std::string tried;
  void* handle = nullptr;
  for (const std::string& c : candidates) {
    handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) break;
    const char* e = dlerror();
    absl::StrAppend(&tried, tried.empty() ? "" : "; ", e ? e : c.c_str());
  }
  if (handle == nullptr) {
    out.status = Errorf(ErrorCode::kUnsupported,
                        "the CUDA backend (", kLibraryName, ") could not be loaded: ", tried);
    return out;
  }
  using GetTable = int (*)(mmc_op_table*, size_t);
  auto get = reinterpret_cast<GetTable>(dlsym(handle, "mmc_get_op_table"));
  if (get == nullptr || get(&out.table, sizeof out.table) != MMC_OK ||
      out.table.struct_size != sizeof out.table || out.table.version < MMC_API_VERSION) {
    out.status = Errorf(ErrorCode::kUnsupported, kLibraryName,
                        " is of another version than this libmemmamba (op table version ",
                        out.table.version, ", this library needs ", MMC_API_VERSION, ")");
    return out;  // the handle stays open: harmless, and dlclose is never safe here
  }
  return out;
}

ErrorCode MapStatus(int status) {
  switch (status) {
    case MMC_ERR_INVALID_ARGUMENT:
      return ErrorCode::kInvalidArgument;
    case MMC_ERR_OUT_OF_MEMORY:
      return ErrorCode::kOutOfMemory;
    case MMC_ERR_UNSUPPORTED:
      return ErrorCode::kUnsupported;
    case MMC_ERR_NO_DEVICE:
      return ErrorCode::kNoDevice;
    case MMC_ERR_COMM:
      return ErrorCode::kComm;
    default:
      return ErrorCode::kInternal;
  }
}

}  // namespace

absl::StatusOr<const mmc_op_table*> CudaOps() {
  static const Loaded* loaded = new Loaded(Load());
  if (!loaded->status.ok()) return loaded->status;
  return &loaded->table;
}

absl::StatusOr<std::unique_ptr<CudaContext>> CudaContext::Create(int device, bool allow_tf32,
                                                                  bool bf16_products) {
  MM_ASSIGN_OR_RETURN(const mmc_op_table* ops, CudaOps());
  std::unique_ptr<CudaContext> c(new CudaContext());
  c->ops_ = ops;
  c->device_ = device;
  mmc_context_options options;
  ops->context_options_init(&options, sizeof options);
  options.device = device;
  options.allow_tf32 = allow_tf32 ? 1 : 0;
  options.bf16_products = bf16_products ? 1 : 0;
  const int st = ops->context_create(&c->ctx_, &options);
  if (st != MMC_OK) {
    c->ctx_ = nullptr;
    return Errorf(st == MMC_ERR_NO_DEVICE ? ErrorCode::kNoDevice : MapStatus(st),
                  "CUDA device ", device, " could not be used: ", ops->status_string(st));
  }
  mmc_device_info info{};
  MM_RETURN_IF_ERROR(c->Check(ops->device_get_info(c->ctx_, &info), "device_get_info"));
  info.name[sizeof info.name - 1] = '\0';
  c->device_name_ = info.name;
  c->total_memory_ = info.global_memory_bytes;
  return c;
}

CudaContext::~CudaContext() {
  if (ctx_ != nullptr) ops_->context_free(ctx_);
}

absl::Status CudaContext::Check(int status, const char* what) const {
  if (status == MMC_OK) return absl::OkStatus();
  const char* text = ctx_ ? ops_->context_last_error(ctx_) : "";
  return Errorf(MapStatus(status), "CUDA backend: ", what, " failed: ",
                ops_->status_string(status), (text && *text) ? ": " : "", text ? text : "");
}

absl::Status CudaContext::Malloc(void** ptr, size_t bytes) {
  return Check(ops_->malloc_(ctx_, ptr, bytes), "malloc");
}

void CudaContext::Free(void* ptr) { (void)ops_->free_(ctx_, ptr); }

absl::Status CudaContext::Upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  return Check(ops_->memcpy_(ctx_, dst, src, bytes, MMC_COPY_HOST_TO_DEVICE), "upload");
}

absl::Status CudaContext::Download(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  return Check(ops_->memcpy_(ctx_, dst, src, bytes, MMC_COPY_DEVICE_TO_HOST), "download");
}

absl::Status CudaContext::Zero(void* ptr, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  return Check(ops_->memset_(ctx_, ptr, 0, bytes), "memset");
}

absl::Status CudaContext::Synchronize() { return Check(ops_->synchronize(ctx_), "synchronize"); }

}  // namespace memmamba
