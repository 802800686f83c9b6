// Collective communication between the GPUs of data-parallel training
// (DESIGN 6, "Beyond one GPU"), through NCCL: the existing engine for it.
//
//   mmc_comm_unique_id     NCCL's unique id (made by one rank, shared by the caller)
//   mmc_comm_create        one rank's communicator (collective over all ranks)
//   mmc_comm_all_reduce    y = Σ_r scale_r · x_r over the ranks (fp32 or fp64),
//                          in place; every rank gets the same bits
//   mmc_comm_broadcast     x = x of rank `root`, in place
//
// NCCL is not linked: libnccl.so.2 is opened (dlopen) by the first call that
// needs it, so single-GPU users need no NCCL at all. The file is the one
// named by the environment variable MM_NCCL_LIBRARY, else "libnccl.so.2" on
// the dynamic linker's path. The few declarations below are the subset of
// NCCL's stable C ABI (nccl.h, NCCL 2.11 on) this file calls: no NCCL header
// is needed to build. Collectives are queued on the context's stream, like
// every op; an NCCL error becomes MMC_ERR_COMM with NCCL's text.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "internal.cuh"

namespace {

// --- The subset of nccl.h used here (values fixed by NCCL's ABI).
struct NcclUniqueId {
  char internal[MMC_COMM_ID_BYTES];
};
static_assert(sizeof(NcclUniqueId) == 128, "NCCL_UNIQUE_ID_BYTES is 128");
using NcclComm = struct ncclComm*;
using NcclResult = int;  // 0 = ncclSuccess
constexpr int kNcclFloat32 = 7, kNcclFloat64 = 8;
constexpr int kNcclSum = 0;
constexpr int kNcclScalarHostImmediate = 1;

struct Nccl {
  NcclResult (*get_version)(int*);
  NcclResult (*get_unique_id)(NcclUniqueId*);
  NcclResult (*comm_init_rank)(NcclComm*, int, NcclUniqueId, int);
  NcclResult (*comm_destroy)(NcclComm);
  NcclResult (*comm_abort)(NcclComm);
  const char* (*get_error_string)(NcclResult);
  NcclResult (*all_reduce)(const void*, void*, size_t, int, int, NcclComm, cudaStream_t);
  NcclResult (*broadcast)(const void*, void*, size_t, int, int, NcclComm, cudaStream_t);
  NcclResult (*red_op_create_pre_mul_sum)(int*, void*, int, int, NcclComm);
  NcclResult (*red_op_destroy)(int, NcclComm);
  int version = 0;
  std::string error;  // why it could not be opened
};

// NCCL, opened once per process; nullptr (and the reason in *why) where it
// cannot be.
const Nccl* OpenNccl(std::string* why) {
  static Nccl nccl;
  static const Nccl* loaded = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("MM_NCCL_LIBRARY");
    const char* name = env != nullptr && env[0] != '\0' ? env : "libnccl.so.2";
    void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = dlerror();
      nccl.error = std::string("cannot open ") + name + ": " + (e ? e : "unknown error") +
                   " (set MM_NCCL_LIBRARY to NCCL's libnccl.so.2)";
      return;
    }
    bool ok = true;
    auto sym = [&](auto* fn, const char* symbol) {
      void* p = dlsym(h, symbol);
      if (p == nullptr) {
        ok = false;
        nccl.error = std::string(name) + " has no " + symbol + " (NCCL 2.11 or later is needed)";
      }
      std::memcpy(fn, &p, sizeof p);
    };
    sym(&nccl.get_version, "ncclGetVersion");
    sym(&nccl.get_unique_id, "ncclGetUniqueId");
    sym(&nccl.comm_init_rank, "ncclCommInitRank");
    sym(&nccl.comm_destroy, "ncclCommDestroy");
    sym(&nccl.comm_abort, "ncclCommAbort");
    sym(&nccl.get_error_string, "ncclGetErrorString");
    sym(&nccl.all_reduce, "ncclAllReduce");
    sym(&nccl.broadcast, "ncclBroadcast");
    sym(&nccl.red_op_create_pre_mul_sum, "ncclRedOpCreatePreMulSum");
    sym(&nccl.red_op_destroy, "ncclRedOpDestroy");
    if (!ok) {
      dlclose(h);
      return;
    }
    if (nccl.get_version(&nccl.version) != 0) nccl.version = 0;
    loaded = &nccl;  // kept open for the life of the process
  });
  if (loaded == nullptr && why != nullptr) *why = nccl.error;
  return loaded;
}

int NcclFail(mmc_context* ctx, const Nccl* nccl, NcclResult r, const char* what) {
  return memmamba::cuda::FailWith(ctx, MMC_ERR_COMM,
                                  std::string(what) + ": " + nccl->get_error_string(r));
}

}  // namespace

using memmamba::cuda::Guarded;

struct mmc_comm {
  const Nccl* nccl = nullptr;
  NcclComm comm = nullptr;
  int world_size = 0;
  int rank = 0;
  int device = 0;
};

extern "C" {

MMC_API int mmc_comm_unique_id(void* id, char* error, size_t error_capacity) {
  if (id == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  std::string why;
  const Nccl* nccl = OpenNccl(&why);
  NcclResult r = 0;
  if (nccl != nullptr) {
    NcclUniqueId u;
    r = nccl->get_unique_id(&u);
    if (r == 0) {
      std::memcpy(id, &u, sizeof u);
      return MMC_OK;
    }
    why = std::string("ncclGetUniqueId: ") + nccl->get_error_string(r);
  }
  if (error != nullptr && error_capacity > 0) {
    std::snprintf(error, error_capacity, "%s", why.c_str());
  }
  return nccl == nullptr ? MMC_ERR_UNSUPPORTED : MMC_ERR_COMM;
}

MMC_API int mmc_comm_create(mmc_context* ctx, int32_t world_size, int32_t rank, const void* id,
                            mmc_comm** out) {
  if (out != nullptr) *out = nullptr;
  MMC_ENTER(ctx);
  if (out == nullptr || id == nullptr || world_size < 1 || rank < 0 || rank >= world_size) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  std::string why;
  const Nccl* nccl = OpenNccl(&why);
  if (nccl == nullptr) return memmamba::cuda::FailWith(ctx, MMC_ERR_UNSUPPORTED, why);
  return Guarded(ctx, [&]() -> int {
    // NCCL's init must not overlap work the context has queued.
    MMC_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
    NcclUniqueId u;
    std::memcpy(&u, id, sizeof u);
    NcclComm comm = nullptr;
    const NcclResult r = nccl->comm_init_rank(&comm, world_size, u, rank);
    if (r != 0) return NcclFail(ctx, nccl, r, "ncclCommInitRank");
    mmc_comm* c = new (std::nothrow) mmc_comm;
    if (c == nullptr) {
      nccl->comm_destroy(comm);
      return MMC_ERR_OUT_OF_MEMORY;
    }
    c->nccl = nccl;
    c->comm = comm;
    c->world_size = world_size;
    c->rank = rank;
    c->device = ctx->device;
    *out = c;
    return MMC_OK;
  });
}

MMC_API void mmc_comm_free(mmc_context* ctx, mmc_comm* comm) {
  if (comm == nullptr) return;
  if (ctx != nullptr) {
    memmamba::cuda::DeviceGuard guard(ctx);
    if (guard.Enter() == MMC_OK) cudaStreamSynchronize(ctx->stream);
    comm->nccl->comm_destroy(comm->comm);
  } else {
    comm->nccl->comm_destroy(comm->comm);
  }
  delete comm;
}

MMC_API int mmc_comm_all_reduce(mmc_context* ctx, mmc_comm* comm, void* data, int64_t n,
                                int dtype, double scale) {
  MMC_ENTER(ctx);
  if (comm == nullptr || n < 0 || (n > 0 && data == nullptr) ||
      (dtype != MMC_DTYPE_F32 && dtype != MMC_DTYPE_F64) || comm->device != ctx->device) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (n == 0) return MMC_OK;
  return Guarded(ctx, [&]() -> int {
    const Nccl* nccl = comm->nccl;
    const int type = dtype == MMC_DTYPE_F32 ? kNcclFloat32 : kNcclFloat64;
    int op = kNcclSum;
    bool custom = false;
    float scale_f = static_cast<float>(scale);
    if (scale != 1.0) {
      void* scalar = dtype == MMC_DTYPE_F32 ? static_cast<void*>(&scale_f)
                                            : static_cast<void*>(&scale);
      const NcclResult r = nccl->red_op_create_pre_mul_sum(&op, scalar, type,
                                                           kNcclScalarHostImmediate, comm->comm);
      if (r != 0) return NcclFail(ctx, nccl, r, "ncclRedOpCreatePreMulSum");
      custom = true;
    }
    const NcclResult r = nccl->all_reduce(data, data, static_cast<size_t>(n), type, op,
                                          comm->comm, ctx->stream);
    if (custom) nccl->red_op_destroy(op, comm->comm);
    if (r != 0) return NcclFail(ctx, nccl, r, "ncclAllReduce");
    return MMC_OK;
  });
}

MMC_API int mmc_comm_broadcast(mmc_context* ctx, mmc_comm* comm, void* data, int64_t bytes,
                               int32_t root) {
  MMC_ENTER(ctx);
  if (comm == nullptr || bytes < 0 || (bytes > 0 && data == nullptr) || root < 0 ||
      root >= comm->world_size || comm->device != ctx->device) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (bytes == 0) return MMC_OK;
  return Guarded(ctx, [&]() -> int {
    // As bytes (ncclInt8 = 0): the broadcast copies, it does not compute.
    const NcclResult r = comm->nccl->broadcast(data, data, static_cast<size_t>(bytes), 0, root,
                                               comm->comm, ctx->stream);
    if (r != 0) return NcclFail(ctx, comm->nccl, r, "ncclBroadcast");
    return MMC_OK;
  });
}

}  // extern "C"
