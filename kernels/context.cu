// The context of libmemmamba_cuda (memmamba_cuda.h): device, stream, cuBLASLt
// handle and workspace, the pool of temporaries; memory, events, statuses and
// the op table. No math here except AddPartials, the fixed-order sum that
// ends every cross-block reduction of the other files (target += Σ partials,
// accumulating).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include <memory>

#include "internal.cuh"

namespace memmamba::cuda {

bool IsNoDeviceError(cudaError_t err) {
  switch (err) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorSystemNotReady:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorInitializationError:
    case cudaErrorNoKernelImageForDevice:
      return true;
    default:
      return false;
  }
}

int Fail(mmc_context* ctx, cudaError_t err, const char* what) {
  if (ctx != nullptr) {
    ctx->last_error = std::string(what) + ": " + cudaGetErrorName(err) + " (" +
                      cudaGetErrorString(err) + ")";
  }
  cudaGetLastError();  // clears the error unless it is sticky
  if (err == cudaErrorMemoryAllocation) return MMC_ERR_OUT_OF_MEMORY;
  if (IsNoDeviceError(err)) return MMC_ERR_NO_DEVICE;
  return MMC_ERR_CUDA;
}

int FailWith(mmc_context* ctx, int status, const std::string& message) {
  if (ctx != nullptr) ctx->last_error = message;
  return status;
}

namespace {

__global__ void AddPartialsKernel(float* __restrict__ target, const float* __restrict__ partials,
                                  int64_t stride, int64_t count, const __grid_constant__ SumSources src) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < src.count; ++s) acc += partials[src.source[s] * stride + i];
    target[i] += acc;
  }
}

}  // namespace

int AddPartials(mmc_context* ctx, float* target, const float* partials, int64_t stride,
                int64_t count, const int32_t* sources, int n_sources) {
  if (count == 0) return MMC_OK;
  for (int first = 0; first < n_sources; first += kMaxSumSources) {
    SumSources src;
    src.count = std::min(kMaxSumSources, n_sources - first);
    for (int s = 0; s < src.count; ++s) src.source[s] = sources[first + s];
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>(CeilDiv(count, threads), 65535);
    AddPartialsKernel<<<static_cast<unsigned>(blocks), threads, 0, ctx->stream>>>(
        target, partials, stride, count, src);
    MMC_LAUNCH_CHECK(ctx, "AddPartialsKernel");
  }
  return MMC_OK;
}

}  // namespace memmamba::cuda

using memmamba::cuda::Fail;
using memmamba::cuda::Guarded;

namespace {
constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;

void Destroy(mmc_context* ctx) {
  if (ctx == nullptr) return;
  int previous = 0;
  const bool have_previous = cudaGetDevice(&previous) == cudaSuccess;
  cudaSetDevice(ctx->device);
  if (ctx->stream != nullptr) cudaStreamSynchronize(ctx->stream);
  memmamba::cuda::DestroyGemmCache(ctx->gemm_cache);
  if (ctx->lt != nullptr) cublasLtDestroy(ctx->lt);
  if (ctx->lt_workspace != nullptr) cudaFree(ctx->lt_workspace);
  if (ctx->pool != nullptr) cudaMemPoolDestroy(ctx->pool);
  if (ctx->own_stream && ctx->stream != nullptr) cudaStreamDestroy(ctx->stream);
  cudaGetLastError();
  if (have_previous) cudaSetDevice(previous);
  delete ctx;
}
}  // namespace

extern "C" {

MMC_API const char* mmc_status_string(int status) {
  switch (status) {
    case MMC_OK: return "MMC_OK";
    case MMC_ERR_INVALID_ARGUMENT: return "MMC_ERR_INVALID_ARGUMENT: invalid argument";
    case MMC_ERR_STRUCT_SIZE: return "MMC_ERR_STRUCT_SIZE: unknown struct size";
    case MMC_ERR_OUT_OF_MEMORY: return "MMC_ERR_OUT_OF_MEMORY: out of device memory";
    case MMC_ERR_UNSUPPORTED: return "MMC_ERR_UNSUPPORTED: not supported by this build or machine";
    case MMC_ERR_INTERNAL: return "MMC_ERR_INTERNAL: internal error";
    case MMC_ERR_NO_DEVICE: return "MMC_ERR_NO_DEVICE: no usable CUDA device or driver";
    case MMC_ERR_CUDA: return "MMC_ERR_CUDA: CUDA runtime error";
    case MMC_ERR_CUBLAS: return "MMC_ERR_CUBLAS: cuBLASLt error";
    case MMC_ERR_COMM: return "MMC_ERR_COMM: NCCL error";
    default: return "unknown status";
  }
}

MMC_API uint32_t mmc_api_version(void) { return MMC_API_VERSION; }

MMC_API int mmc_context_options_init(mmc_context_options* options, size_t struct_size) {
  if (options == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  if (struct_size < sizeof(uint32_t) || struct_size > sizeof(mmc_context_options)) {
    return MMC_ERR_STRUCT_SIZE;
  }
  mmc_context_options defaults;
  std::memset(&defaults, 0, sizeof defaults);
  defaults.struct_size = static_cast<uint32_t>(struct_size);
  std::memcpy(options, &defaults, struct_size);
  return MMC_OK;
}

MMC_API int mmc_context_create(mmc_context** out, const mmc_context_options* options) {
  if (out == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  *out = nullptr;
  mmc_context_options opts;
  mmc_context_options_init(&opts, sizeof opts);
  if (options != nullptr) {
    if (options->struct_size < sizeof(uint32_t) ||
        options->struct_size > sizeof(mmc_context_options)) {
      return MMC_ERR_STRUCT_SIZE;
    }
    std::memcpy(&opts, options, options->struct_size);
    opts.struct_size = sizeof opts;
  }
  return Guarded(nullptr, [&]() -> int {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      cudaGetLastError();
      return memmamba::cuda::IsNoDeviceError(err) ? MMC_ERR_NO_DEVICE : MMC_ERR_CUDA;
    }
    if (count == 0 || opts.device < 0 || opts.device >= count) return MMC_ERR_NO_DEVICE;

    mmc_context* ctx = new mmc_context;
    ctx->device = opts.device;
    ctx->allow_tf32 = opts.allow_tf32 != 0;
    ctx->bf16_products = opts.bf16_products != 0;
    int previous = 0;
    cudaGetDevice(&previous);
    auto fail = [&](int status) {
      Destroy(ctx);
      cudaSetDevice(previous);
      return status;
    };
    if ((err = cudaSetDevice(ctx->device)) != cudaSuccess) return fail(Fail(nullptr, err, ""));
    cudaDeviceProp prop;
    if ((err = cudaGetDeviceProperties(&prop, ctx->device)) != cudaSuccess) {
      return fail(Fail(nullptr, err, ""));
    }
    ctx->multiprocessors = prop.multiProcessorCount;
    ctx->smem_optin = prop.sharedMemPerBlockOptin;
    ctx->dependent_launch = prop.major >= 9;
    if (opts.stream != nullptr) {
      ctx->stream = static_cast<cudaStream_t>(opts.stream);
    } else {
      if ((err = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        return fail(Fail(nullptr, err, ""));
      }
      ctx->own_stream = true;
    }
    cudaMemPoolProps props;
    std::memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = ctx->device;
    if ((err = cudaMemPoolCreate(&ctx->pool, &props)) != cudaSuccess) {
      return fail(Fail(nullptr, err, ""));
    }
    // Keep freed temporaries cached: every op takes and returns some.
    uint64_t threshold = UINT64_MAX;
    if ((err = cudaMemPoolSetAttribute(ctx->pool, cudaMemPoolAttrReleaseThreshold, &threshold)) !=
        cudaSuccess) {
      return fail(Fail(nullptr, err, ""));
    }
    if (cublasLtCreate(&ctx->lt) != CUBLAS_STATUS_SUCCESS) {
      ctx->lt = nullptr;
      return fail(MMC_ERR_CUBLAS);
    }
    if ((err = cudaMalloc(&ctx->lt_workspace, kLtWorkspaceBytes)) != cudaSuccess) {
      ctx->lt_workspace = nullptr;
      return fail(Fail(nullptr, err, ""));
    }
    ctx->lt_workspace_bytes = kLtWorkspaceBytes;
    cudaSetDevice(previous);
    *out = ctx;
    return MMC_OK;
  });
}

MMC_API void mmc_context_free(mmc_context* ctx) { Destroy(ctx); }

MMC_API const char* mmc_context_last_error(const mmc_context* ctx) {
  return ctx == nullptr ? "" : ctx->last_error.c_str();
}

MMC_API void* mmc_context_stream(const mmc_context* ctx) {
  return ctx == nullptr ? nullptr : static_cast<void*>(ctx->stream);
}

MMC_API int mmc_device_get_info(mmc_context* ctx, mmc_device_info* info) {
  if (info == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  MMC_ENTER(ctx);
  cudaDeviceProp prop;
  MMC_CUDA_CHECK(ctx, cudaGetDeviceProperties(&prop, ctx->device));
  std::memset(info, 0, sizeof *info);
  std::snprintf(info->name, sizeof info->name, "%s", prop.name);
  info->major = prop.major;
  info->minor = prop.minor;
  info->multiprocessors = prop.multiProcessorCount;
  info->global_memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  info->l2_cache_bytes = prop.l2CacheSize;
  MMC_CUDA_CHECK(ctx, cudaRuntimeGetVersion(&info->runtime_version));
  MMC_CUDA_CHECK(ctx, cudaDriverGetVersion(&info->driver_version));
  return MMC_OK;
}

MMC_API int mmc_malloc(mmc_context* ctx, void** ptr, size_t bytes) {
  if (ptr == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  *ptr = nullptr;
  MMC_ENTER(ctx);
  if (bytes == 0) return MMC_OK;
  MMC_CUDA_CHECK(ctx, cudaMalloc(ptr, bytes));
  return MMC_OK;
}

MMC_API int mmc_free(mmc_context* ctx, void* ptr) {
  if (ptr == nullptr) return MMC_OK;
  MMC_ENTER(ctx);
  MMC_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
  MMC_CUDA_CHECK(ctx, cudaFree(ptr));
  return MMC_OK;
}

MMC_API int mmc_memcpy(mmc_context* ctx, void* dst, const void* src, size_t bytes,
                       mmc_copy_kind kind) {
  MMC_ENTER(ctx);
  if (bytes == 0) return MMC_OK;
  if (dst == nullptr || src == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  cudaMemcpyKind k;
  switch (kind) {
    case MMC_COPY_HOST_TO_DEVICE: k = cudaMemcpyHostToDevice; break;
    case MMC_COPY_DEVICE_TO_HOST: k = cudaMemcpyDeviceToHost; break;
    case MMC_COPY_DEVICE_TO_DEVICE: k = cudaMemcpyDeviceToDevice; break;
    default: return MMC_ERR_INVALID_ARGUMENT;
  }
  MMC_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, k, ctx->stream));
  // The host side of a copy is done when the call returns (see the header);
  // pageable memory makes CUDA do this already, pinned memory does not.
  if (kind == MMC_COPY_DEVICE_TO_HOST) MMC_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
  return MMC_OK;
}

MMC_API int mmc_memset(mmc_context* ctx, void* ptr, int value, size_t bytes) {
  MMC_ENTER(ctx);
  if (bytes == 0) return MMC_OK;
  if (ptr == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  MMC_CUDA_CHECK(ctx, cudaMemsetAsync(ptr, value, bytes, ctx->stream));
  return MMC_OK;
}

MMC_API int mmc_synchronize(mmc_context* ctx) {
  MMC_ENTER(ctx);
  MMC_CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
  MMC_CUDA_CHECK(ctx, cudaGetLastError());
  return MMC_OK;
}

struct mmc_event {
  cudaEvent_t event = nullptr;
  int device = 0;
};

MMC_API int mmc_event_create(mmc_context* ctx, mmc_event** out) {
  if (out == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  *out = nullptr;
  MMC_ENTER(ctx);
  return Guarded(ctx, [&]() -> int {
    mmc_event* ev = new mmc_event;
    ev->device = ctx->device;
    const cudaError_t err = cudaEventCreate(&ev->event);
    if (err != cudaSuccess) {
      delete ev;
      return Fail(ctx, err, "cudaEventCreate");
    }
    *out = ev;
    return MMC_OK;
  });
}

MMC_API int mmc_event_record(mmc_context* ctx, mmc_event* event) {
  if (event == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  MMC_ENTER(ctx);
  MMC_CUDA_CHECK(ctx, cudaEventRecord(event->event, ctx->stream));
  return MMC_OK;
}

MMC_API int mmc_event_elapsed_ms(mmc_context* ctx, mmc_event* start, mmc_event* end, float* ms) {
  if (start == nullptr || end == nullptr || ms == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  MMC_ENTER(ctx);
  MMC_CUDA_CHECK(ctx, cudaEventSynchronize(end->event));
  MMC_CUDA_CHECK(ctx, cudaEventElapsedTime(ms, start->event, end->event));
  return MMC_OK;
}

MMC_API void mmc_event_free(mmc_event* event) {
  if (event == nullptr) return;
  cudaEventDestroy(event->event);
  cudaGetLastError();
  delete event;
}

struct mmc_graph {
  cudaGraphExec_t exec = nullptr;
  int device = 0;
};

MMC_API int mmc_graph_begin(mmc_context* ctx) {
  MMC_ENTER(ctx);
  MMC_CUDA_CHECK(ctx, cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal));
  return MMC_OK;
}

MMC_API int mmc_graph_end(mmc_context* ctx, mmc_graph** out) {
  if (out == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  *out = nullptr;
  MMC_ENTER(ctx);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(ctx->stream, &graph);
  if (ended != cudaSuccess || graph == nullptr) {
    cudaGetLastError();  // an invalidated capture is not sticky: clear it
    if (graph != nullptr) cudaGraphDestroy(graph);
    return memmamba::cuda::FailWith(ctx, MMC_ERR_CUDA,
                    std::string("graph recording failed: ") + cudaGetErrorString(ended));
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (made != cudaSuccess) return memmamba::cuda::Fail(ctx, made, "cudaGraphInstantiate");
  return memmamba::cuda::Guarded(ctx, [&]() -> int {
    std::unique_ptr<mmc_graph> g(new mmc_graph);
    g->exec = exec;
    g->device = ctx->device;
    exec = nullptr;
    *out = g.release();
    return MMC_OK;
  });
}

MMC_API int mmc_graph_launch(mmc_context* ctx, mmc_graph* graph) {
  MMC_ENTER(ctx);
  if (graph == nullptr || graph->device != ctx->device) return MMC_ERR_INVALID_ARGUMENT;
  MMC_CUDA_CHECK(ctx, cudaGraphLaunch(graph->exec, ctx->stream));
  return MMC_OK;
}

MMC_API void mmc_graph_free(mmc_graph* graph) {
  if (graph == nullptr) return;
  int previous = 0;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != graph->device &&
                        cudaSetDevice(graph->device) == cudaSuccess;
  cudaGraphExecDestroy(graph->exec);
  if (switched) cudaSetDevice(previous);
  delete graph;
}

MMC_API int mmc_get_op_table(mmc_op_table* table, size_t struct_size) {
  if (table == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  if (struct_size < 2 * sizeof(uint32_t)) return MMC_ERR_STRUCT_SIZE;
  mmc_op_table t;
  std::memset(&t, 0, sizeof t);
  t.struct_size = static_cast<uint32_t>(std::min(struct_size, sizeof t));
  t.version = MMC_API_VERSION;
  t.status_string = mmc_status_string;
  t.context_options_init = mmc_context_options_init;
  t.context_create = mmc_context_create;
  t.context_free = mmc_context_free;
  t.context_last_error = mmc_context_last_error;
  t.context_stream = mmc_context_stream;
  t.device_get_info = mmc_device_get_info;
  t.malloc_ = mmc_malloc;
  t.free_ = mmc_free;
  t.memcpy_ = mmc_memcpy;
  t.memset_ = mmc_memset;
  t.synchronize = mmc_synchronize;
  t.matmul = mmc_matmul;
  t.matmul_backward_input = mmc_matmul_backward_input;
  t.matmul_backward_weight = mmc_matmul_backward_weight;
  t.rms_norm = mmc_rms_norm;
  t.rms_norm_backward = mmc_rms_norm_backward;
  t.conv_silu = mmc_conv_silu;
  t.conv_silu_backward = mmc_conv_silu_backward;
  t.selective_scan = mmc_selective_scan;
  t.selective_scan_backward = mmc_selective_scan_backward;
  t.pool_attend = mmc_pool_attend;
  t.pool_index_transpose = mmc_pool_index_transpose;
  t.pool_attend_backward = mmc_pool_attend_backward;
  t.softmax_cross_entropy = mmc_softmax_cross_entropy;
  t.sum_squares = mmc_sum_squares;
  t.adamw = mmc_adamw;
  t.gather_rows = mmc_gather_rows;
  t.add = mmc_add;
  t.note_windows = mmc_note_windows;
  t.note_scale = mmc_note_scale;
  t.note_scale_backward = mmc_note_scale_backward;
  t.note_score_backward = mmc_note_score_backward;
  t.note_max_backward = mmc_note_max_backward;
  t.read_gate = mmc_read_gate;
  t.read_fuse = mmc_read_fuse;
  t.read_fuse_backward = mmc_read_fuse_backward;
  t.a_from_log = mmc_a_from_log;
  t.a_log_backward = mmc_a_log_backward;
  t.comm_unique_id = mmc_comm_unique_id;
  t.comm_create = mmc_comm_create;
  t.comm_free = mmc_comm_free;
  t.comm_all_reduce = mmc_comm_all_reduce;
  t.comm_broadcast = mmc_comm_broadcast;
  t.slots_note_window = mmc_slots_note_window;
  t.slots_pool_insert = mmc_slots_pool_insert;
  t.slots_pool_read = mmc_slots_pool_read;
  t.slots_conv_silu = mmc_slots_conv_silu;
  t.slots_selective_scan = mmc_slots_selective_scan;
  t.graph_begin = mmc_graph_begin;
  t.graph_end = mmc_graph_end;
  t.graph_launch = mmc_graph_launch;
  t.graph_free = mmc_graph_free;
  t.chunk_note_windows = mmc_chunk_note_windows;
  t.chunk_pool_versions = mmc_chunk_pool_versions;
  t.chunk_pool_commit = mmc_chunk_pool_commit;
  t.decode_linear = mmc_decode_linear;
  t.decode_read = mmc_decode_read;
  t.decode_scan = mmc_decode_scan;
  t.sample_rows = mmc_sample_rows;
  t.decode_linear_conv = mmc_decode_linear_conv;
  t.decode_linear_bf16 = mmc_decode_linear_bf16;
  t.matmul_bf16 = mmc_matmul_bf16;
  t.rms_norm_bf16 = mmc_rms_norm_bf16;
  t.slots_selective_scan_bf16 = mmc_slots_selective_scan_bf16;
  std::memcpy(table, &t, t.struct_size);
  return MMC_OK;
}

}  // extern "C"
