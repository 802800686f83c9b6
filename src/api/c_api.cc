// The C ABI (include/memmamba/memmamba.h): argument checks, struct_size
// handling, error mapping and the exception guard. Only translation lives
// here; the work is in src/model and src/runtime.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include "absl/functional/function_ref.h"
#include "api/handles.h"
#include "common/status.h"
#include "memmamba/memmamba.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "runtime/sample.h"
#include "runtime/session.h"
#include "runtime/snapshot.h"
#include "train/data_parallel.h"
#include "train/eval.h"
#include "train/trainer.h"

namespace memmamba {
namespace {

static_assert(static_cast<int>(ErrorCode::kOk) == MM_OK, "");
static_assert(static_cast<int>(ErrorCode::kInvalidArgument) == MM_ERR_INVALID_ARGUMENT, "");
static_assert(static_cast<int>(ErrorCode::kStructSize) == MM_ERR_STRUCT_SIZE, "");
static_assert(static_cast<int>(ErrorCode::kTokenOutOfRange) == MM_ERR_TOKEN_OUT_OF_RANGE, "");
static_assert(static_cast<int>(ErrorCode::kOutOfMemory) == MM_ERR_OUT_OF_MEMORY, "");
static_assert(static_cast<int>(ErrorCode::kIo) == MM_ERR_IO, "");
static_assert(static_cast<int>(ErrorCode::kCorruptFile) == MM_ERR_CORRUPT_FILE, "");
static_assert(static_cast<int>(ErrorCode::kTensorMissing) == MM_ERR_TENSOR_MISSING, "");
static_assert(static_cast<int>(ErrorCode::kTensorShape) == MM_ERR_TENSOR_SHAPE, "");
static_assert(static_cast<int>(ErrorCode::kTensorDtype) == MM_ERR_TENSOR_DTYPE, "");
static_assert(static_cast<int>(ErrorCode::kNonFinite) == MM_ERR_NON_FINITE, "");
static_assert(static_cast<int>(ErrorCode::kConfig) == MM_ERR_CONFIG, "");
static_assert(static_cast<int>(ErrorCode::kModelMismatch) == MM_ERR_MODEL_MISMATCH, "");
static_assert(static_cast<int>(ErrorCode::kUnsupported) == MM_ERR_UNSUPPORTED, "");
static_assert(static_cast<int>(ErrorCode::kBufferTooSmall) == MM_ERR_BUFFER_TOO_SMALL, "");
static_assert(static_cast<int>(ErrorCode::kInternal) == MM_ERR_INTERNAL, "");
static_assert(static_cast<int>(ErrorCode::kChecksum) == MM_ERR_CHECKSUM, "");
static_assert(static_cast<int>(ErrorCode::kVersion) == MM_ERR_VERSION, "");
static_assert(static_cast<int>(ErrorCode::kNoDevice) == MM_ERR_NO_DEVICE, "");
static_assert(static_cast<int>(ErrorCode::kComm) == MM_ERR_COMM, "");
static_assert(kLowestErrorCode == ErrorCode::kComm, "CodeOf's range check");

thread_local std::string g_last_error;

// Records a failure for this thread (and optionally a session) and returns
// its public code.
mm_status Fail(const absl::Status& status, mm_session* session = nullptr) {
  g_last_error = std::string(status.message());
  if (session) session->last_error = g_last_error;
  return static_cast<mm_status>(CodeOf(status));
}

mm_status Fail(ErrorCode code, const char* message, mm_session* session = nullptr) {
  return Fail(Error(code, message), session);
}

// Runs `body` (returning mm_status) and turns any escaping exception into a
// status: a library never lets one cross the C boundary.
template <typename Body>
mm_status Guard(mm_session* session, Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(ErrorCode::kOutOfMemory, "out of memory", session);
  } catch (const std::exception& e) {
    return Fail(Error(ErrorCode::kInternal, std::string("internal error: ") + e.what()), session);
  } catch (...) {
    return Fail(ErrorCode::kInternal, "internal error: unknown exception", session);
  }
}

// The versions of each options struct the library has shipped: the
// smallest size it accepts is the first one's.
constexpr size_t kConfigV1Size = sizeof(mm_model_config);
constexpr size_t kModelOptionsV1Size = offsetof(mm_model_options, math);
constexpr size_t kSessionOptionsV1Size = sizeof(mm_session_options);
constexpr size_t kSampleOptionsV1Size = sizeof(mm_sample_options);
// Sizes above this are garbage, not a newer header.
constexpr size_t kMaxStructSize = 1u << 20;

// Reads a caller's options struct of `struct_size` bytes into `out` (which
// holds the defaults): fields the caller does not know keep their defaults;
// fields the library does not know must be zero.
// The smallest size accepted is the struct's first published version.
template <typename T>
absl::Status ReadStruct(const T* in, T* out, const char* what, size_t v1_size) {
  if (in == nullptr) return absl::OkStatus();
  const size_t size = in->struct_size;
  if (size < v1_size) {
    return Errorf(ErrorCode::kStructSize, what, ".struct_size = ", size,
                  " is smaller than any version of the struct (", v1_size, " bytes)");
  }
  if (size > kMaxStructSize) {
    return Errorf(ErrorCode::kStructSize, what, ".struct_size = ", size,
                  " is not a plausible struct size");
  }
  if (size > sizeof(T)) {
    const unsigned char* tail = reinterpret_cast<const unsigned char*>(in) + sizeof(T);
    for (size_t i = 0; i < size - sizeof(T); ++i) {
      if (tail[i] != 0) {
        return Errorf(ErrorCode::kStructSize, what, ".struct_size = ", size,
                      " sets fields this library version (", sizeof(T),
                      " bytes) does not know");
      }
    }
  }
  std::memcpy(out, in, size < sizeof(T) ? size : sizeof(T));
  out->struct_size = sizeof(T);
  return absl::OkStatus();
}

constexpr size_t kSnapshotInfoV1Size = sizeof(mm_snapshot_info);

template <typename T>
mm_status InitStruct(T* s, size_t size, size_t v1_size, const T& defaults) {
  if (s == nullptr) return Fail(ErrorCode::kInvalidArgument, "options pointer is NULL");
  if (size < v1_size || size > kMaxStructSize) {
    return Fail(Errorf(ErrorCode::kStructSize, "size ", size, " is not a known struct size"));
  }
  std::memset(static_cast<void*>(s), 0, size);  // fields of newer versions: zero
  std::memcpy(static_cast<void*>(s), &defaults, size < sizeof(T) ? size : sizeof(T));
  s->struct_size = static_cast<uint32_t>(size);
  return MM_OK;
}

mm_model_config DefaultConfig() {
  ModelConfig d;
  mm_model_config c{};
  c.struct_size = sizeof c;
  c.vocab_size = static_cast<uint32_t>(d.vocab_size);
  c.d_model = static_cast<uint32_t>(d.d_model);
  c.n_layer = static_cast<uint32_t>(d.n_layer);
  c.d_state = static_cast<uint32_t>(d.d_state);
  c.d_conv = static_cast<uint32_t>(d.d_conv);
  c.expand = static_cast<uint32_t>(d.expand);
  c.dt_rank = 0;
  c.note_window = static_cast<uint32_t>(d.note_window);
  c.summary_dim = static_cast<uint32_t>(d.summary_dim);
  c.pool_capacity = static_cast<uint32_t>(d.pool_capacity);
  c.pool_policy = MM_POOL_PRIORITY;
  c.note_threshold = d.note_threshold;
  c.attn_heads = static_cast<uint32_t>(d.attn_heads);
  c.gate_threshold = d.gate_threshold;
  c.cross_layer_period = static_cast<uint32_t>(d.cross_layer_period);
  c.cross_layer_span = static_cast<uint32_t>(d.cross_layer_span);
  c.fusion = MM_FUSION_WEIGHTED;
  c.norm_eps = d.norm_eps;
  c.tie_embeddings = 1;
  return c;
}

absl::StatusOr<ModelConfig> ToConfig(const mm_model_config* in) {
  mm_model_config c = DefaultConfig();
  MM_RETURN_IF_ERROR(ReadStruct(in, &c, "mm_model_config", kConfigV1Size));
  if (c.pool_policy != MM_POOL_PRIORITY && c.pool_policy != MM_POOL_FIFO) {
    return Errorf(ErrorCode::kConfig, "config: unknown pool_policy ", c.pool_policy);
  }
  if (c.fusion != MM_FUSION_WEIGHTED && c.fusion != MM_FUSION_RESIDUAL &&
      c.fusion != MM_FUSION_GATED) {
    return Errorf(ErrorCode::kConfig, "config: unknown fusion ", c.fusion);
  }
  ModelConfig m;
  m.vocab_size = c.vocab_size;
  m.d_model = c.d_model;
  m.n_layer = c.n_layer;
  m.d_state = c.d_state;
  m.d_conv = c.d_conv;
  m.expand = c.expand;
  m.dt_rank = c.dt_rank;
  m.note_window = c.note_window;
  m.summary_dim = c.summary_dim;
  m.pool_capacity = c.pool_capacity;
  m.pool_policy = static_cast<PoolPolicy>(c.pool_policy);
  m.note_threshold = c.note_threshold;
  m.attn_heads = c.attn_heads;
  m.gate_threshold = c.gate_threshold;
  m.cross_layer_period = c.cross_layer_period;
  m.cross_layer_span = c.cross_layer_span;
  m.fusion = static_cast<Fusion>(c.fusion);
  m.norm_eps = c.norm_eps;
  m.tie_embeddings = c.tie_embeddings != 0;
  MM_RETURN_IF_ERROR(m.Resolve());
  return m;
}

absl::StatusOr<ModelOptions> ToModelOptions(const mm_model_options* in) {
  mm_model_options o{};
  o.struct_size = sizeof o;
  MM_RETURN_IF_ERROR(ReadStruct(in, &o, "mm_model_options", kModelOptionsV1Size));
  ModelOptions m;
  if (o.device != MM_DEVICE_CPU && o.device != MM_DEVICE_CUDA) {
    return Errorf(ErrorCode::kInvalidArgument, "unknown device ", o.device);
  }
  if (o.weight_dtype != MM_DTYPE_F32 && o.weight_dtype != MM_DTYPE_BF16) {
    return Errorf(ErrorCode::kInvalidArgument, "unknown weight_dtype ", o.weight_dtype);
  }
  if (o.n_threads < 0 || o.n_threads > 4096) {
    return Errorf(ErrorCode::kInvalidArgument, "n_threads = ", o.n_threads,
                  " is outside [0, 4096]");
  }
  if (o.math != MM_MATH_FP32 && o.math != MM_MATH_TF32 && o.math != MM_MATH_BF16) {
    return Errorf(ErrorCode::kInvalidArgument, "unknown math ", o.math);
  }
  m.cuda = o.device == MM_DEVICE_CUDA;
  m.tf32 = o.math == MM_MATH_TF32 || o.math == MM_MATH_BF16;
  m.bf16_products = o.math == MM_MATH_BF16;
  m.bf16_weights = o.weight_dtype == MM_DTYPE_BF16;
  m.n_threads = o.n_threads;
  return m;
}

// Writes the prefix of mm_model_config the caller knows.
mm_status WriteConfig(const ModelConfig& m, mm_model_config* config) {
  if (config->struct_size < kConfigV1Size) {
    return Fail(Errorf(ErrorCode::kStructSize, "mm_model_config.struct_size = ",
                       config->struct_size, " is too small"));
  }
  mm_model_config c = DefaultConfig();
  c.vocab_size = static_cast<uint32_t>(m.vocab_size);
  c.d_model = static_cast<uint32_t>(m.d_model);
  c.n_layer = static_cast<uint32_t>(m.n_layer);
  c.d_state = static_cast<uint32_t>(m.d_state);
  c.d_conv = static_cast<uint32_t>(m.d_conv);
  c.expand = static_cast<uint32_t>(m.expand);
  c.dt_rank = static_cast<uint32_t>(m.dt_rank);
  c.note_window = static_cast<uint32_t>(m.note_window);
  c.summary_dim = static_cast<uint32_t>(m.summary_dim);
  c.pool_capacity = static_cast<uint32_t>(m.pool_capacity);
  c.pool_policy = static_cast<int32_t>(m.pool_policy);
  c.note_threshold = m.note_threshold;
  c.attn_heads = static_cast<uint32_t>(m.attn_heads);
  c.gate_threshold = m.gate_threshold;
  c.cross_layer_period = static_cast<uint32_t>(m.cross_layer_period);
  c.cross_layer_span = static_cast<uint32_t>(m.cross_layer_span);
  c.fusion = static_cast<int32_t>(m.fusion);
  c.norm_eps = m.norm_eps;
  c.tie_embeddings = m.tie_embeddings ? 1 : 0;
  const uint32_t size = config->struct_size;
  std::memcpy(config, &c, size < sizeof c ? size : sizeof c);
  config->struct_size = size;
  return MM_OK;
}

mm_status Succeed(std::unique_ptr<Model> model, mm_model** out) {
  auto handle = std::make_unique<mm_model>();
  handle->impl = std::move(model);
  *out = handle.release();
  return MM_OK;
}

// Writes the prefix of mm_snapshot_info the caller knows (info->struct_size).
mm_status FillSnapshotInfo(const SnapshotInfo& in, mm_snapshot_info* out) {
  mm_snapshot_info i{};
  i.struct_size = sizeof i;
  i.format_version = in.format_version;
  i.position = static_cast<uint64_t>(in.position);
  i.model_fingerprint = in.model_fingerprint;
  i.n_layer = static_cast<uint32_t>(in.n_layer);
  i.d_model = static_cast<uint32_t>(in.d_model);
  i.d_inner = static_cast<uint32_t>(in.d_inner);
  i.d_state = static_cast<uint32_t>(in.d_state);
  i.d_conv = static_cast<uint32_t>(in.d_conv);
  i.summary_dim = static_cast<uint32_t>(in.summary_dim);
  i.note_window = static_cast<uint32_t>(in.note_window);
  i.pool_capacity = static_cast<uint32_t>(in.pool_capacity);
  i.pool_policy = static_cast<int32_t>(in.pool_policy);
  i.notes_total = static_cast<uint32_t>(in.notes_total);
  i.state_bytes = in.state_bytes;
  const uint32_t size = out->struct_size;
  std::memcpy(out, &i, size < sizeof i ? size : sizeof i);
  out->struct_size = size;
  return MM_OK;
}

mm_status CheckInfoStruct(const mm_snapshot_info* info) {
  if (info == nullptr) return Fail(ErrorCode::kInvalidArgument, "info is NULL");
  if (info->struct_size < kSnapshotInfoV1Size) {
    return Fail(Errorf(ErrorCode::kStructSize, "mm_snapshot_info.struct_size = ",
                       info->struct_size, " is too small"));
  }
  return MM_OK;
}

}  // namespace
}  // namespace memmamba

using memmamba::ErrorCode;
using memmamba::Fail;
using memmamba::Guard;

extern "C" {

uint32_t mm_version(void) { return MM_VERSION_NUMBER; }
const char* mm_version_string(void) { return "0.1.0"; }
uint32_t mm_abi_version(void) { return MM_ABI_VERSION; }

const char* mm_status_string(mm_status status) {
  switch (status) {
    case MM_OK: return "MM_OK: success";
    case MM_ERR_INVALID_ARGUMENT: return "MM_ERR_INVALID_ARGUMENT: invalid argument";
    case MM_ERR_STRUCT_SIZE: return "MM_ERR_STRUCT_SIZE: unknown options struct size";
    case MM_ERR_TOKEN_OUT_OF_RANGE: return "MM_ERR_TOKEN_OUT_OF_RANGE: token id out of range";
    case MM_ERR_OUT_OF_MEMORY: return "MM_ERR_OUT_OF_MEMORY: out of memory";
    case MM_ERR_IO: return "MM_ERR_IO: input/output error";
    case MM_ERR_CORRUPT_FILE: return "MM_ERR_CORRUPT_FILE: truncated or malformed file";
    case MM_ERR_TENSOR_MISSING: return "MM_ERR_TENSOR_MISSING: required tensor missing";
    case MM_ERR_TENSOR_SHAPE: return "MM_ERR_TENSOR_SHAPE: tensor has the wrong shape";
    case MM_ERR_TENSOR_DTYPE: return "MM_ERR_TENSOR_DTYPE: unsupported tensor dtype";
    case MM_ERR_NON_FINITE: return "MM_ERR_NON_FINITE: NaN or Inf in weights";
    case MM_ERR_CONFIG: return "MM_ERR_CONFIG: invalid model configuration";
    case MM_ERR_MODEL_MISMATCH: return "MM_ERR_MODEL_MISMATCH: handles of different models";
    case MM_ERR_UNSUPPORTED: return "MM_ERR_UNSUPPORTED: not supported by this build or machine";
    case MM_ERR_BUFFER_TOO_SMALL: return "MM_ERR_BUFFER_TOO_SMALL: buffer too small";
    case MM_ERR_INTERNAL: return "MM_ERR_INTERNAL: internal error";
    case MM_ERR_CHECKSUM: return "MM_ERR_CHECKSUM: snapshot checksum mismatch";
    case MM_ERR_VERSION: return "MM_ERR_VERSION: snapshot format version newer than this library";
    case MM_ERR_NO_DEVICE: return "MM_ERR_NO_DEVICE: no usable CUDA device or driver";
    case MM_ERR_COMM: return "MM_ERR_COMM: a collective between data-parallel trainers failed";
    default: return "MM_ERR_UNKNOWN: unknown status code";
  }
}

const char* mm_last_error(void) { return memmamba::g_last_error.c_str(); }

void mm_free(void* ptr) { std::free(ptr); }

mm_status mm_model_config_init(mm_model_config* config, size_t size) {
  return memmamba::InitStruct(config, size, memmamba::kConfigV1Size, memmamba::DefaultConfig());
}

mm_status mm_model_options_init(mm_model_options* options, size_t size) {
  mm_model_options d{};
  d.struct_size = sizeof d;
  d.device = MM_DEVICE_CPU;
  d.weight_dtype = MM_DTYPE_F32;
  d.n_threads = 0;
  return memmamba::InitStruct(options, size, memmamba::kModelOptionsV1Size, d);
}

mm_status mm_session_options_init(mm_session_options* options, size_t size) {
  mm_session_options d{};
  d.struct_size = sizeof d;
  d.max_chunk = 0;
  return memmamba::InitStruct(options, size, memmamba::kSessionOptionsV1Size, d);
}

mm_status mm_model_create(mm_model** out, const mm_model_config* config, uint64_t seed,
                          const mm_model_options* options) {
  return Guard(nullptr, [&]() -> mm_status {
    if (out == nullptr) return Fail(ErrorCode::kInvalidArgument, "out is NULL");
    *out = nullptr;
    auto cfg = memmamba::ToConfig(config);
    if (!cfg.ok()) return Fail(cfg.status());
    auto opts = memmamba::ToModelOptions(options);
    if (!opts.ok()) return Fail(opts.status());
    auto model = memmamba::Model::Create(*cfg, seed, *opts);
    if (!model.ok()) return Fail(model.status());
    return memmamba::Succeed(std::move(*model), out);
  });
}

mm_status mm_model_load(mm_model** out, const char* path, const mm_model_options* options) {
  return Guard(nullptr, [&]() -> mm_status {
    if (out == nullptr) return Fail(ErrorCode::kInvalidArgument, "out is NULL");
    *out = nullptr;
    if (path == nullptr) return Fail(ErrorCode::kInvalidArgument, "path is NULL");
    auto opts = memmamba::ToModelOptions(options);
    if (!opts.ok()) return Fail(opts.status());
    auto model = memmamba::Model::Load(path, *opts);
    if (!model.ok()) return Fail(model.status());
    return memmamba::Succeed(std::move(*model), out);
  });
}

mm_status mm_model_save(const mm_model* model, const char* path) {
  return Guard(nullptr, [&]() -> mm_status {
    if (model == nullptr || path == nullptr) {
      return Fail(ErrorCode::kInvalidArgument, "model or path is NULL");
    }
    absl::Status s = model->impl->Save(path);
    return s.ok() ? MM_OK : Fail(s);
  });
}

mm_status mm_model_import_mamba(mm_model** out, const char* path,
                                const mm_model_config* memory_config, uint64_t seed,
                                const mm_model_options* options) {
  return Guard(nullptr, [&]() -> mm_status {
    if (out == nullptr) return Fail(ErrorCode::kInvalidArgument, "out is NULL");
    *out = nullptr;
    if (path == nullptr) return Fail(ErrorCode::kInvalidArgument, "path is NULL");
    // Memory knobs are validated with the checkpoint's shapes, in ImportMamba.
    mm_model_config c = memmamba::DefaultConfig();
    absl::Status read =
        memmamba::ReadStruct(memory_config, &c, "mm_model_config", memmamba::kConfigV1Size);
    if (!read.ok()) return Fail(read);
    // Shapes come from the checkpoint; placeholders let the knobs validate now.
    c.vocab_size = c.d_model = c.n_layer = c.d_state = c.d_conv = c.expand = 1;
    auto cfg = memmamba::ToConfig(&c);
    if (!cfg.ok()) return Fail(cfg.status());
    auto opts = memmamba::ToModelOptions(options);
    if (!opts.ok()) return Fail(opts.status());
    auto model = memmamba::Model::ImportMamba(path, *cfg, seed, *opts);
    if (!model.ok()) return Fail(model.status());
    return memmamba::Succeed(std::move(*model), out);
  });
}

mm_status mm_model_get_config(const mm_model* model, mm_model_config* config) {
  return Guard(nullptr, [&]() -> mm_status {
    if (model == nullptr || config == nullptr) {
      return Fail(ErrorCode::kInvalidArgument, "model or config is NULL");
    }
    return memmamba::WriteConfig(model->impl->config(), config);
  });
}

uint64_t mm_model_parameter_count(const mm_model* model) {
  return model ? model->impl->ParameterCount() : 0;
}

uint64_t mm_model_fingerprint(const mm_model* model) {
  if (model == nullptr) return 0;
  try {
    return model->impl->Fingerprint();
  } catch (...) {  // nothing in it allocates beyond small strings
    return 0;
  }
}

void mm_model_free(mm_model* model) { delete model; }

mm_status mm_session_create(mm_session** out, const mm_model* model,
                            const mm_session_options* options) {
  return Guard(nullptr, [&]() -> mm_status {
    if (out == nullptr) return Fail(ErrorCode::kInvalidArgument, "out is NULL");
    *out = nullptr;
    if (model == nullptr) return Fail(ErrorCode::kInvalidArgument, "model is NULL");
    mm_session_options o{};
    o.struct_size = sizeof o;
    absl::Status read = memmamba::ReadStruct(options, &o, "mm_session_options",
                                             memmamba::kSessionOptionsV1Size);
    if (!read.ok()) return Fail(read);
    if (o.max_chunk > (1u << 20)) {
      return Fail(ErrorCode::kInvalidArgument, "max_chunk exceeds 1048576");
    }
    auto handle = std::make_unique<mm_session>();
    auto impl = memmamba::Session::Create(model->impl.get(), o.max_chunk);
    if (!impl.ok()) return Fail(impl.status());
    handle->impl = std::move(*impl);
    *out = handle.release();
    return MM_OK;
  });
}

void mm_session_free(mm_session* session) { delete session; }

mm_status mm_session_feed(mm_session* session, const int32_t* tokens, size_t n_tokens,
                          int32_t mode, float* logits, size_t logits_capacity) {
  if (session == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
  return Guard(session, [&]() -> mm_status {
    if (mode != MM_LOGITS_NONE && mode != MM_LOGITS_LAST && mode != MM_LOGITS_ALL) {
      return Fail(memmamba::Errorf(ErrorCode::kInvalidArgument, "unknown logits mode ", mode),
                  session);
    }
    absl::Status s = session->impl->Feed(tokens, n_tokens,
                                         static_cast<memmamba::LogitsMode>(mode), logits,
                                         logits_capacity);
    return s.ok() ? MM_OK : Fail(s, session);
  });
}

namespace {

// mm_sessions_step and mm_sessions_step_sample: checks the handles, runs
// `step` on their sessions and reports any failure on every session passed.
mm_status StepSessions(mm_session* const* sessions, size_t n_sessions, const int32_t* tokens,
                       absl::FunctionRef<absl::Status(memmamba::Session* const*)> step) {
  return Guard(nullptr, [&]() -> mm_status {
    if (n_sessions == 0) return MM_OK;
    if (sessions == nullptr) return Fail(ErrorCode::kInvalidArgument, "sessions is NULL");
    // Every failure is reported on every session passed, as documented.
    auto fail_all = [&](const absl::Status& status) {
      mm_status code = Fail(status);
      for (size_t i = 0; i < n_sessions; ++i) {
        if (sessions[i] != nullptr) sessions[i]->last_error = memmamba::g_last_error;
      }
      return code;
    };
    if (tokens == nullptr) {
      return fail_all(memmamba::Error(ErrorCode::kInvalidArgument, "tokens is NULL"));
    }
    std::vector<memmamba::Session*> impls(n_sessions);
    for (size_t i = 0; i < n_sessions; ++i) {
      if (sessions[i] == nullptr) {
        return fail_all(
            memmamba::Errorf(ErrorCode::kInvalidArgument, "sessions[", i, "] is NULL"));
      }
      impls[i] = sessions[i]->impl.get();
    }
    absl::Status s = step(impls.data());
    return s.ok() ? MM_OK : fail_all(s);
  });
}

}  // namespace

mm_status mm_sessions_step(mm_session* const* sessions, size_t n_sessions,
                           const int32_t* tokens, float* logits, size_t logits_capacity) {
  return StepSessions(sessions, n_sessions, tokens, [&](memmamba::Session* const* impls) {
    return memmamba::Session::StepMany(impls, n_sessions, tokens, logits, logits_capacity);
  });
}

mm_status mm_sample_options_init(mm_sample_options* options, size_t size) {
  const memmamba::SampleOptions defaults;
  mm_sample_options d{};
  d.struct_size = sizeof d;
  d.temperature = defaults.temperature;
  d.seed = defaults.seed;
  return memmamba::InitStruct(options, size, memmamba::kSampleOptionsV1Size, d);
}

mm_status mm_sessions_step_sample(mm_session* const* sessions, size_t n_sessions,
                                  const int32_t* tokens, const mm_sample_options* options,
                                  int32_t* next_tokens) {
  return StepSessions(sessions, n_sessions, tokens, [&](memmamba::Session* const* impls) {
    mm_sample_options o{};
    o.struct_size = sizeof o;
    o.temperature = memmamba::SampleOptions().temperature;
    MM_RETURN_IF_ERROR(
        memmamba::ReadStruct(options, &o, "mm_sample_options", memmamba::kSampleOptionsV1Size));
    memmamba::SampleOptions s;
    s.temperature = o.temperature;
    s.seed = o.seed;
    s.seeds = o.seeds;
    return memmamba::Session::StepManySample(impls, n_sessions, tokens, s, next_tokens);
  });
}

mm_status mm_session_reset(mm_session* session) {
  if (session == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
  return Guard(session, [&]() -> mm_status {
    absl::Status st = session->impl->Reset();
    return st.ok() ? MM_OK : Fail(st, session);
  });
}

mm_status mm_session_reset_recurrent(mm_session* session) {
  if (session == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
  return Guard(session, [&]() -> mm_status {
    absl::Status st = session->impl->ResetRecurrent();
    return st.ok() ? MM_OK : Fail(st, session);
  });
}

uint64_t mm_session_position(const mm_session* session) {
  return session ? static_cast<uint64_t>(session->impl->state().position) : 0;
}

uint64_t mm_session_state_bytes(const mm_session* session) {
  if (session == nullptr) return 0;
  try {
    return session->impl->StateBytes();
  } catch (...) {  // host memory for a device session's pool fill
    return 0;
  }
}

int32_t mm_session_pool_size(const mm_session* session, uint32_t layer) {
  if (session == nullptr) return -1;
  try {
    return session->impl->PoolSize(layer);
  } catch (...) {
    return -1;
  }
}

mm_status mm_session_pool_notes(const mm_session* session, uint32_t layer, int64_t* windows,
                                float* scores, float* summaries, size_t capacity, size_t* count) {
  mm_session* s = const_cast<mm_session*>(session);
  return Guard(s, [&]() -> mm_status {
    if (count == nullptr) return Fail(ErrorCode::kInvalidArgument, "count is NULL", s);
    *count = 0;
    if (s == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
    const memmamba::StreamState& state = s->impl->state();
    if (layer >= state.layers.size()) {
      return Fail(ErrorCode::kInvalidArgument, "layer out of range", s);
    }
    if (absl::Status sync = s->impl->SyncState(); !sync.ok()) return Fail(sync, s);
    const memmamba::Pool& pool = state.layers[layer].pool;
    const size_t S = static_cast<size_t>(state.summary_dim);
    const size_t n = std::min(capacity, pool.size());
    for (size_t i = 0; i < n; ++i) {
      const memmamba::PoolEntry& note = *pool[i];
      if (windows != nullptr) windows[i] = note.window;
      if (scores != nullptr) scores[i] = note.score;
      if (summaries != nullptr) std::copy(note.summary, note.summary + S, summaries + i * S);
    }
    *count = pool.size();
    return MM_OK;
  });
}

const char* mm_session_last_error(const mm_session* session) {
  return session ? session->last_error.c_str() : "";
}

// Snapshots. The calls that take a const session still record a failure's
// message on it (last_error is the handle's diagnostic slot, not its state).

mm_status mm_session_snapshot_size(const mm_session* session, size_t* size) {
  mm_session* s = const_cast<mm_session*>(session);
  return Guard(s, [&]() -> mm_status {
    if (size == nullptr) return Fail(ErrorCode::kInvalidArgument, "size is NULL", s);
    *size = 0;
    if (s == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
    if (absl::Status sync = s->impl->SyncState(); !sync.ok()) return Fail(sync, s);
    auto n = memmamba::SnapshotSize(s->impl->model(), s->impl->state());
    if (!n.ok()) return Fail(n.status(), s);
    *size = *n;
    return MM_OK;
  });
}

mm_status mm_session_snapshot(const mm_session* session, void* buffer, size_t capacity,
                              size_t* written) {
  mm_session* s = const_cast<mm_session*>(session);
  return Guard(s, [&]() -> mm_status {
    if (written == nullptr) return Fail(ErrorCode::kInvalidArgument, "written is NULL", s);
    *written = 0;
    if (s == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
    if (buffer == nullptr && capacity > 0) {
      return Fail(ErrorCode::kInvalidArgument, "buffer is NULL with capacity > 0", s);
    }
    if (absl::Status sync = s->impl->SyncState(); !sync.ok()) return Fail(sync, s);
    size_t needed = 0;
    absl::Status st = memmamba::WriteSnapshotInto(
        s->impl->model(), s->impl->state(), [&](size_t n) -> absl::StatusOr<uint8_t*> {
          needed = n;
          if (n > capacity) {
            return memmamba::Errorf(ErrorCode::kBufferTooSmall, "snapshot buffer holds ",
                                    capacity, " bytes; this snapshot needs ", n);
          }
          return static_cast<uint8_t*>(buffer);
        });
    if (!st.ok()) {
      if (memmamba::CodeOf(st) == ErrorCode::kBufferTooSmall) *written = needed;
      return Fail(st, s);
    }
    *written = needed;
    return MM_OK;
  });
}

mm_status mm_session_snapshot_alloc(const mm_session* session, void** out, size_t* size) {
  mm_session* s = const_cast<mm_session*>(session);
  return Guard(s, [&]() -> mm_status {
    if (out == nullptr || size == nullptr) {
      return Fail(ErrorCode::kInvalidArgument, "out or size is NULL", s);
    }
    *out = nullptr;
    *size = 0;
    if (s == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
    if (absl::Status sync = s->impl->SyncState(); !sync.ok()) return Fail(sync, s);
    void* buffer = nullptr;
    size_t n = 0;
    absl::Status st = memmamba::WriteSnapshotInto(
        s->impl->model(), s->impl->state(), [&](size_t len) -> absl::StatusOr<uint8_t*> {
          buffer = std::malloc(len > 0 ? len : 1);
          if (buffer == nullptr) {
            return memmamba::Errorf(ErrorCode::kOutOfMemory, "cannot allocate ", len,
                                    " bytes for the snapshot");
          }
          n = len;
          return static_cast<uint8_t*>(buffer);
        });
    if (!st.ok()) return Fail(st, s);
    *out = buffer;
    *size = n;
    return MM_OK;
  });
}

mm_status mm_session_snapshot_file(const mm_session* session, const char* path) {
  mm_session* s = const_cast<mm_session*>(session);
  return Guard(s, [&]() -> mm_status {
    if (s == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
    if (path == nullptr) return Fail(ErrorCode::kInvalidArgument, "path is NULL", s);
    if (absl::Status sync = s->impl->SyncState(); !sync.ok()) return Fail(sync, s);
    absl::Status st = memmamba::WriteSnapshot(
        s->impl->model(), s->impl->state(), [&](const uint8_t* data, size_t n) {
          return memmamba::WriteFileAtomically(
              path, std::string_view(reinterpret_cast<const char*>(data), n));
        });
    return st.ok() ? MM_OK : Fail(st, s);
  });
}

mm_status mm_session_restore(mm_session* session, const void* data, size_t size) {
  if (session == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
  return Guard(session, [&]() -> mm_status {
    if (data == nullptr) return Fail(ErrorCode::kInvalidArgument, "data is NULL", session);
    memmamba::Session& impl = *session->impl;
    absl::Status st = impl.Restore([&](memmamba::StreamState* state) {
      return memmamba::ReadSnapshot(impl.model(), data, size, state);
    });
    return st.ok() ? MM_OK : Fail(st, session);
  });
}

mm_status mm_session_restore_file(mm_session* session, const char* path) {
  if (session == nullptr) return Fail(ErrorCode::kInvalidArgument, "session is NULL");
  return Guard(session, [&]() -> mm_status {
    if (path == nullptr) return Fail(ErrorCode::kInvalidArgument, "path is NULL", session);
    auto bytes = memmamba::ReadSnapshotFile(path);
    if (!bytes.ok()) return Fail(bytes.status(), session);
    memmamba::Session& impl = *session->impl;
    absl::Status st = impl.Restore([&](memmamba::StreamState* state) {
      absl::Status r = memmamba::ReadSnapshot(impl.model(), bytes->data(), bytes->size(), state);
      if (r.ok()) return r;
      return memmamba::Error(memmamba::CodeOf(r), absl::StrCat(path, ": ", r.message()));
    });
    return st.ok() ? MM_OK : Fail(st, session);
  });
}

mm_status mm_snapshot_info_init(mm_snapshot_info* info, size_t size) {
  mm_snapshot_info d{};
  d.struct_size = sizeof d;
  return memmamba::InitStruct(info, size, memmamba::kSnapshotInfoV1Size, d);
}

mm_status mm_snapshot_inspect(const void* data, size_t size, mm_snapshot_info* info) {
  return Guard(nullptr, [&]() -> mm_status {
    if (mm_status c = memmamba::CheckInfoStruct(info); c != MM_OK) return c;
    if (data == nullptr) return Fail(ErrorCode::kInvalidArgument, "data is NULL");
    auto parsed = memmamba::InspectSnapshot(data, size);
    if (!parsed.ok()) return Fail(parsed.status());
    return memmamba::FillSnapshotInfo(*parsed, info);
  });
}

mm_status mm_snapshot_inspect_file(const char* path, mm_snapshot_info* info) {
  return Guard(nullptr, [&]() -> mm_status {
    if (mm_status c = memmamba::CheckInfoStruct(info); c != MM_OK) return c;
    if (path == nullptr) return Fail(ErrorCode::kInvalidArgument, "path is NULL");
    auto bytes = memmamba::ReadSnapshotFile(path);
    if (!bytes.ok()) return Fail(bytes.status());
    auto parsed = memmamba::InspectSnapshot(bytes->data(), bytes->size());
    if (!parsed.ok()) {
      const absl::Status& r = parsed.status();
      return Fail(memmamba::Error(memmamba::CodeOf(r), absl::StrCat(path, ": ", r.message())));
    }
    return memmamba::FillSnapshotInfo(*parsed, info);
  });
}

}  // extern "C"

// ---------------------------------------------------------------------------
// Training and evaluation (src/train).

namespace memmamba {
namespace {

constexpr size_t kTrainerOptionsV1Size = offsetof(mm_trainer_options, device);
constexpr size_t kTrainResultV1Size = sizeof(mm_train_result);
constexpr size_t kTrainBatchV1Size = sizeof(mm_train_batch);
constexpr size_t kEvalResultV1Size = sizeof(mm_eval_result);
constexpr size_t kFidelityV1Size = sizeof(mm_fidelity);

mm_trainer_options DefaultTrainerOptions() {
  const TrainerOptions d;
  mm_trainer_options o{};
  o.struct_size = sizeof o;
  o.learning_rate = d.learning_rate;
  o.beta1 = d.beta1;
  o.beta2 = d.beta2;
  o.eps = d.eps;
  o.weight_decay = d.weight_decay;
  o.grad_clip = d.grad_clip;
  o.accum_steps = static_cast<uint32_t>(d.accum_steps);
  o.n_threads = d.n_threads;
  o.note_straight_through = d.straight_through;
  o.device = MM_DEVICE_CPU;
  o.math = MM_MATH_FP32;
  return o;
}

mm_status FailTrainer(const absl::Status& status, const mm_trainer* trainer) {
  mm_status code = Fail(status);
  if (trainer) trainer->last_error = g_last_error;
  return code;
}

// kStructSize unless an output struct's struct_size is one the library
// knows; checked before any work, so a bad struct costs nothing.
absl::Status CheckOutSize(uint32_t size, size_t v1_size, const char* what) {
  if (size < v1_size || size > kMaxStructSize) {
    return Errorf(ErrorCode::kStructSize, what, ".struct_size = ", size,
                  " is not a known struct size (use its _init call)");
  }
  return absl::OkStatus();
}

// Writes the prefix of an output struct the caller knows (its struct_size).
template <typename T>
mm_status WriteOut(const T& value, T* out, size_t v1_size, const char* what) {
  const uint32_t size = out->struct_size;
  if (absl::Status s = CheckOutSize(size, v1_size, what); !s.ok()) return Fail(s);
  std::memcpy(static_cast<void*>(out), &value, size < sizeof(T) ? size : sizeof(T));
  out->struct_size = size;
  return MM_OK;
}

}  // namespace
}  // namespace memmamba

mm_status mm_trainer_options_init(mm_trainer_options* options, size_t size) {
  return memmamba::InitStruct(options, size, memmamba::kTrainerOptionsV1Size,
                              memmamba::DefaultTrainerOptions());
}

mm_status mm_train_result_init(mm_train_result* result, size_t size) {
  mm_train_result d{};
  d.struct_size = sizeof d;
  return memmamba::InitStruct(result, size, memmamba::kTrainResultV1Size, d);
}

mm_status mm_train_batch_init(mm_train_batch* batch, size_t size) {
  mm_train_batch d{};
  d.struct_size = sizeof d;
  return memmamba::InitStruct(batch, size, memmamba::kTrainBatchV1Size, d);
}

mm_status mm_eval_result_init(mm_eval_result* result, size_t size) {
  mm_eval_result d{};
  d.struct_size = sizeof d;
  return memmamba::InitStruct(result, size, memmamba::kEvalResultV1Size, d);
}

mm_status mm_fidelity_init(mm_fidelity* result, size_t size) {
  mm_fidelity d{};
  d.struct_size = sizeof d;
  return memmamba::InitStruct(result, size, memmamba::kFidelityV1Size, d);
}

mm_status mm_trainer_create(mm_trainer** out, const mm_model* model,
                            const mm_trainer_options* options) {
  return Guard(nullptr, [&]() -> mm_status {
    if (out == nullptr) return Fail(ErrorCode::kInvalidArgument, "out is NULL");
    *out = nullptr;
    if (model == nullptr) return Fail(ErrorCode::kInvalidArgument, "model is NULL");
    mm_trainer_options o = memmamba::DefaultTrainerOptions();
    absl::Status read = memmamba::ReadStruct(options, &o, "mm_trainer_options",
                                             memmamba::kTrainerOptionsV1Size);
    if (!read.ok()) return Fail(read);
    memmamba::TrainerOptions t;
    t.learning_rate = o.learning_rate;
    t.beta1 = o.beta1;
    t.beta2 = o.beta2;
    t.eps = o.eps;
    t.weight_decay = o.weight_decay;
    t.grad_clip = o.grad_clip;
    t.accum_steps = o.accum_steps;
    t.n_threads = o.n_threads;
    t.straight_through = o.note_straight_through;
    if (o.device != MM_DEVICE_CPU && o.device != MM_DEVICE_CUDA) {
      return Fail(memmamba::Errorf(ErrorCode::kInvalidArgument, "unknown device ", o.device));
    }
    t.cuda = o.device == MM_DEVICE_CUDA;
    if (o.math == MM_MATH_BF16) {
      return Fail(memmamba::Errorf(ErrorCode::kUnsupported,
                                   "MM_MATH_BF16 is for models' sessions; a trainer's products "
                                   "are fp32 or TF32"));
    }
    if (o.math != MM_MATH_FP32 && o.math != MM_MATH_TF32) {
      return Fail(memmamba::Errorf(ErrorCode::kInvalidArgument, "unknown math ", o.math));
    }
    t.tf32 = o.math == MM_MATH_TF32;
    auto trainer = memmamba::Trainer::Create(*model->impl, t);
    if (!trainer.ok()) return Fail(trainer.status());
    auto handle = std::make_unique<mm_trainer>();
    handle->impl = std::move(*trainer);
    *out = handle.release();
    return MM_OK;
  });
}

void mm_trainer_free(mm_trainer* trainer) { delete trainer; }

namespace memmamba {
namespace {

// mm_train_step, mm_train_step_from and mm_train_step_batch: `sessions` NULL
// or `batch` entries, `resets` NULL or batch * seq_len bytes.
mm_status TrainStep(mm_trainer* trainer, const mm_session* const* sessions, const int32_t* tokens,
                    size_t batch, size_t seq_len, const uint8_t* loss_mask,
                    const uint8_t* resets, mm_train_result* result) {
  if (trainer == nullptr) return Fail(ErrorCode::kInvalidArgument, "trainer is NULL");
  return Guard(nullptr, [&]() -> mm_status {
    if (tokens == nullptr) {
      return FailTrainer(Error(ErrorCode::kInvalidArgument, "tokens is NULL"), trainer);
    }
    if (batch < 1 || seq_len < 1 || batch > (size_t{1} << 30) || seq_len > (size_t{1} << 30)) {
      return FailTrainer(Errorf(ErrorCode::kInvalidArgument, "batch ", batch, " x seq_len ",
                                seq_len, " is not a valid batch shape"),
                         trainer);
    }
    if (result != nullptr) {
      absl::Status size = CheckOutSize(result->struct_size, kTrainResultV1Size, "mm_train_result");
      if (!size.ok()) return FailTrainer(size, trainer);
    }
    std::vector<const StreamState*> initial;
    if (sessions != nullptr) {
      initial.assign(batch, nullptr);
      for (size_t b = 0; b < batch; ++b) {
        if (sessions[b] == nullptr) continue;
        // Brings a GPU session's state to the host: its mirror, not its stream.
        Session& s = *const_cast<mm_session*>(sessions[b])->impl;
        if (!(s.model().config() == trainer->impl->config())) {
          return FailTrainer(Errorf(ErrorCode::kInvalidArgument, "sessions[", b,
                                    "] belongs to a model of another configuration"),
                             trainer);
        }
        absl::Status synced = s.SyncState();
        if (!synced.ok()) return FailTrainer(synced, trainer);
        initial[b] = &s.state();
      }
    }
    Batch b;
    b.tokens = tokens;
    b.B = static_cast<int64_t>(batch);
    b.T = static_cast<int64_t>(seq_len);
    b.mask = loss_mask;
    b.initial = sessions != nullptr ? initial.data() : nullptr;
    b.resets = resets;
    StepResult r;
    absl::Status s = trainer->impl->Step(b, &r);
    if (!s.ok()) return FailTrainer(s, trainer);
    if (result != nullptr) {
      mm_train_result o{};
      o.struct_size = sizeof o;
      o.loss = static_cast<float>(r.loss);
      o.grad_norm = static_cast<float>(r.grad_norm);
      o.tokens = static_cast<uint64_t>(r.tokens);
      o.updated = r.updated;
      o.step = static_cast<uint64_t>(r.step);
      return WriteOut(o, result, kTrainResultV1Size, "mm_train_result");
    }
    return MM_OK;
  });
}

}  // namespace
}  // namespace memmamba

mm_status mm_train_step(mm_trainer* trainer, const int32_t* tokens, size_t batch,
                        size_t seq_len, const uint8_t* loss_mask, mm_train_result* result) {
  return memmamba::TrainStep(trainer, nullptr, tokens, batch, seq_len, loss_mask, nullptr,
                             result);
}

mm_status mm_train_step_from(mm_trainer* trainer, const mm_session* const* sessions,
                             const int32_t* tokens, size_t batch, size_t seq_len,
                             const uint8_t* loss_mask, mm_train_result* result) {
  return memmamba::TrainStep(trainer, sessions, tokens, batch, seq_len, loss_mask, nullptr,
                             result);
}

mm_status mm_train_step_batch(mm_trainer* trainer, const mm_train_batch* batch,
                              mm_train_result* result) {
  if (trainer == nullptr) return Fail(ErrorCode::kInvalidArgument, "trainer is NULL");
  using memmamba::FailTrainer;
  if (batch == nullptr) {
    return FailTrainer(memmamba::Error(ErrorCode::kInvalidArgument, "batch is NULL"), trainer);
  }
  mm_train_batch b{};
  b.struct_size = sizeof b;
  absl::Status read =
      memmamba::ReadStruct(batch, &b, "mm_train_batch", memmamba::kTrainBatchV1Size);
  if (!read.ok()) return FailTrainer(read, trainer);
  return memmamba::TrainStep(trainer, b.sessions, b.tokens, b.batch, b.seq_len, b.loss_mask,
                             b.recurrent_resets, result);
}

mm_status mm_trainer_set_learning_rate(mm_trainer* trainer, float learning_rate) {
  if (trainer == nullptr) return Fail(ErrorCode::kInvalidArgument, "trainer is NULL");
  absl::Status s = trainer->impl->SetLearningRate(learning_rate);
  return s.ok() ? MM_OK : memmamba::FailTrainer(s, trainer);
}

uint64_t mm_trainer_step_count(const mm_trainer* trainer) {
  return trainer ? static_cast<uint64_t>(trainer->impl->step()) : 0;
}

mm_status mm_trainer_keep_fraction(const mm_trainer* trainer, float* fractions,
                                   size_t capacity) {
  if (trainer == nullptr || (fractions == nullptr && capacity > 0)) {
    return Fail(ErrorCode::kInvalidArgument, "trainer or fractions is NULL");
  }
  const std::vector<float>& k = trainer->impl->keep_fraction();
  for (size_t i = 0; i < k.size() && i < capacity; ++i) fractions[i] = k[i];
  return MM_OK;
}

mm_status mm_trainer_export_model(const mm_trainer* trainer, const mm_model_options* options,
                                  mm_model** out) {
  return Guard(nullptr, [&]() -> mm_status {
    if (out == nullptr) return Fail(ErrorCode::kInvalidArgument, "out is NULL");
    *out = nullptr;
    if (trainer == nullptr) return Fail(ErrorCode::kInvalidArgument, "trainer is NULL");
    auto opts = memmamba::ToModelOptions(options);
    if (!opts.ok()) return memmamba::FailTrainer(opts.status(), trainer);
    auto model = trainer->impl->ExportModel(*opts);
    if (!model.ok()) return memmamba::FailTrainer(model.status(), trainer);
    return memmamba::Succeed(std::move(*model), out);
  });
}

mm_status mm_trainer_save(const mm_trainer* trainer, const char* path) {
  if (trainer == nullptr || path == nullptr) {
    return Fail(ErrorCode::kInvalidArgument, "trainer or path is NULL");
  }
  return Guard(nullptr, [&]() -> mm_status {
    absl::Status s = trainer->impl->Save(path);
    return s.ok() ? MM_OK : memmamba::FailTrainer(s, trainer);
  });
}

mm_status mm_trainer_load(mm_trainer** out, const char* path, int32_t n_threads) {
  return mm_trainer_load_on(out, path, n_threads, MM_DEVICE_CPU);
}

mm_status mm_trainer_load_on(mm_trainer** out, const char* path, int32_t n_threads,
                             int32_t device) {
  return Guard(nullptr, [&]() -> mm_status {
    if (out == nullptr) return Fail(ErrorCode::kInvalidArgument, "out is NULL");
    *out = nullptr;
    if (path == nullptr) return Fail(ErrorCode::kInvalidArgument, "path is NULL");
    if (n_threads < 0) return Fail(ErrorCode::kInvalidArgument, "n_threads must be >= 0");
    if (device != MM_DEVICE_CPU && device != MM_DEVICE_CUDA) {
      return Fail(memmamba::Errorf(ErrorCode::kInvalidArgument, "unknown device ", device));
    }
    auto trainer = memmamba::Trainer::Load(path, n_threads, device == MM_DEVICE_CUDA);
    if (!trainer.ok()) return Fail(trainer.status());
    auto handle = std::make_unique<mm_trainer>();
    handle->impl = std::move(*trainer);
    *out = handle.release();
    return MM_OK;
  });
}

mm_status mm_trainer_get_config(const mm_trainer* trainer, mm_model_config* config) {
  return Guard(nullptr, [&]() -> mm_status {
    if (trainer == nullptr || config == nullptr) {
      return Fail(ErrorCode::kInvalidArgument, "trainer or config is NULL");
    }
    return memmamba::WriteConfig(trainer->impl->config(), config);
  });
}

// --- Data-parallel training.

mm_status mm_data_parallel_options_init(mm_data_parallel_options* options, size_t size) {
  mm_data_parallel_options d{};
  d.struct_size = sizeof d;
  d.world_size = 1;
  d.rank = 0;
  d.device = -1;
  return memmamba::InitStruct(options, size, sizeof(mm_data_parallel_options), d);
}

mm_status mm_trainer_join(mm_trainer* trainer, const mm_data_parallel_options* options) {
  if (trainer == nullptr) return Fail(ErrorCode::kInvalidArgument, "trainer is NULL");
  return Guard(nullptr, [&]() -> mm_status {
    if (options == nullptr) {
      return memmamba::FailTrainer(
          memmamba::Error(ErrorCode::kInvalidArgument, "options is NULL"), trainer);
    }
    mm_data_parallel_options o{};
    mm_data_parallel_options_init(&o, sizeof o);
    absl::Status read = memmamba::ReadStruct(options, &o, "mm_data_parallel_options",
                                             sizeof(mm_data_parallel_options));
    if (!read.ok()) return memmamba::FailTrainer(read, trainer);
    if (o.world_size < 1 || o.world_size > (1u << 16) || o.rank >= o.world_size) {
      return memmamba::FailTrainer(
          memmamba::Errorf(ErrorCode::kInvalidArgument, "rank ", o.rank, " of world size ",
                           o.world_size),
          trainer);
    }
    memmamba::DataParallelOptions dp;
    dp.world_size = static_cast<int>(o.world_size);
    dp.rank = static_cast<int>(o.rank);
    dp.device = o.device;
    dp.nccl_id = o.nccl_id;
    absl::Status st = trainer->impl->JoinDataParallel(dp);
    return st.ok() ? MM_OK : memmamba::FailTrainer(st, trainer);
  });
}

uint32_t mm_trainer_world_size(const mm_trainer* trainer) {
  return trainer ? static_cast<uint32_t>(trainer->impl->world_size()) : 1;
}

mm_status mm_nccl_id_create(uint8_t id[MM_NCCL_ID_BYTES]) {
  return Guard(nullptr, [&]() -> mm_status {
    if (id == nullptr) return Fail(ErrorCode::kInvalidArgument, "id is NULL");
    auto made = memmamba::CreateNcclId();
    if (!made.ok()) return Fail(made.status());
    std::memcpy(id, made->data(), MM_NCCL_ID_BYTES);
    return MM_OK;
  });
}

mm_status mm_nccl_id_to_hex(const uint8_t id[MM_NCCL_ID_BYTES], char* hex, size_t capacity) {
  return Guard(nullptr, [&]() -> mm_status {
    if (id == nullptr || hex == nullptr) return Fail(ErrorCode::kInvalidArgument, "id or hex is NULL");
    memmamba::NcclId copy;
    std::memcpy(copy.data(), id, copy.size());
    const std::string text = memmamba::NcclIdToHex(copy);
    if (capacity < text.size() + 1) {
      return Fail(memmamba::Errorf(ErrorCode::kBufferTooSmall, "hex holds ", capacity,
                                   " bytes; an id needs ", text.size() + 1));
    }
    std::memcpy(hex, text.c_str(), text.size() + 1);
    return MM_OK;
  });
}

mm_status mm_nccl_id_from_hex(uint8_t id[MM_NCCL_ID_BYTES], const char* hex) {
  return Guard(nullptr, [&]() -> mm_status {
    if (id == nullptr || hex == nullptr) return Fail(ErrorCode::kInvalidArgument, "id or hex is NULL");
    auto parsed = memmamba::NcclIdFromHex(hex);
    if (!parsed.ok()) return Fail(parsed.status());
    std::memcpy(id, parsed->data(), MM_NCCL_ID_BYTES);
    return MM_OK;
  });
}

mm_status mm_nccl_id_write_file(const char* path, const uint8_t id[MM_NCCL_ID_BYTES]) {
  return Guard(nullptr, [&]() -> mm_status {
    if (path == nullptr || id == nullptr) return Fail(ErrorCode::kInvalidArgument, "path or id is NULL");
    memmamba::NcclId copy;
    std::memcpy(copy.data(), id, copy.size());
    absl::Status st = memmamba::WriteNcclIdFile(path, copy);
    return st.ok() ? MM_OK : Fail(st);
  });
}

mm_status mm_nccl_id_read_file(uint8_t id[MM_NCCL_ID_BYTES], const char* path,
                               uint32_t timeout_ms) {
  return Guard(nullptr, [&]() -> mm_status {
    if (path == nullptr || id == nullptr) return Fail(ErrorCode::kInvalidArgument, "path or id is NULL");
    auto read = memmamba::ReadNcclIdFile(path, timeout_ms);
    if (!read.ok()) return Fail(read.status());
    std::memcpy(id, read->data(), MM_NCCL_ID_BYTES);
    return MM_OK;
  });
}

const char* mm_trainer_last_error(const mm_trainer* trainer) {
  return trainer ? trainer->last_error.c_str() : "";
}

mm_status mm_eval_loss(const mm_model* model, const int32_t* tokens, size_t n_tokens,
                       size_t context, mm_eval_result* result) {
  return Guard(nullptr, [&]() -> mm_status {
    if (model == nullptr || tokens == nullptr || result == nullptr) {
      return Fail(ErrorCode::kInvalidArgument, "model, tokens or result is NULL");
    }
    absl::Status size = memmamba::CheckOutSize(result->struct_size,
                                               memmamba::kEvalResultV1Size, "mm_eval_result");
    if (!size.ok()) return Fail(size);
    memmamba::LossEval e;
    absl::Status s = memmamba::EvalLoss(*model->impl, tokens, static_cast<int64_t>(n_tokens),
                                        static_cast<int64_t>(context), &e);
    if (!s.ok()) return Fail(s);
    mm_eval_result o{};
    o.struct_size = sizeof o;
    o.loss = e.targets ? e.loss_sum / static_cast<double>(e.targets) : 0.0;
    o.perplexity = std::exp(o.loss);
    o.tokens = static_cast<uint64_t>(e.targets);
    return memmamba::WriteOut(o, result, memmamba::kEvalResultV1Size, "mm_eval_result");
  });
}

mm_status mm_eval_fidelity(const mm_model* model, const int32_t* tokens, size_t n_tokens,
                           mm_fidelity* result) {
  return Guard(nullptr, [&]() -> mm_status {
    if (model == nullptr || tokens == nullptr || result == nullptr) {
      return Fail(ErrorCode::kInvalidArgument, "model, tokens or result is NULL");
    }
    absl::Status size =
        memmamba::CheckOutSize(result->struct_size, memmamba::kFidelityV1Size, "mm_fidelity");
    if (!size.ok()) return Fail(size);
    memmamba::FidelityEval e;
    absl::Status s =
        memmamba::EvalFidelity(*model->impl, tokens, static_cast<int64_t>(n_tokens), &e);
    if (!s.ok()) return Fail(s);
    mm_fidelity o{};
    o.struct_size = sizeof o;
    o.etmf = e.etmf;
    for (int g = 0; g < 3; ++g) o.eclmf[g] = e.eclmf[g];
    o.tokens = static_cast<uint64_t>(e.tokens);
    return memmamba::WriteOut(o, result, memmamba::kFidelityV1Size, "mm_fidelity");
  });
}
