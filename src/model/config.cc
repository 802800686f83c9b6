#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"

namespace memmamba {
namespace {

// Upper bounds keep every size product far from overflow and catch garbage
// configs from files before anything is allocated.
constexpr int64_t kMaxDim = 1 << 20;

absl::Status CheckRange(const char* name, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return Errorf(ErrorCode::kConfig, "config: ", name, " = ", value,
                  " is outside [", lo, ", ", hi, "]");
  }
  return absl::OkStatus();
}

std::string FloatText(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

}  // namespace

absl::Status ModelConfig::Resolve() {
  MM_RETURN_IF_ERROR(CheckRange("vocab_size", vocab_size, 1, 1 << 24));
  MM_RETURN_IF_ERROR(CheckRange("d_model", d_model, 1, kMaxDim));
  MM_RETURN_IF_ERROR(CheckRange("n_layer", n_layer, 1, 4096));
  MM_RETURN_IF_ERROR(CheckRange("d_state", d_state, 1, 1024));
  MM_RETURN_IF_ERROR(CheckRange("d_conv", d_conv, 1, 64));
  MM_RETURN_IF_ERROR(CheckRange("expand", expand, 1, 64));
  if (dt_rank == 0) dt_rank = (d_model + 15) / 16;
  MM_RETURN_IF_ERROR(CheckRange("dt_rank", dt_rank, 1, kMaxDim));
  MM_RETURN_IF_ERROR(CheckRange("d_inner", d_inner(), 1, kMaxDim));
  MM_RETURN_IF_ERROR(CheckRange("note_window", note_window, 1, 1 << 20));
  MM_RETURN_IF_ERROR(CheckRange("summary_dim", summary_dim, 1, 1 << 16));
  MM_RETURN_IF_ERROR(CheckRange("pool_capacity", pool_capacity, 0, 1 << 16));
  MM_RETURN_IF_ERROR(CheckRange("attn_heads", attn_heads, 1, summary_dim));
  if (summary_dim % attn_heads != 0) {
    return Errorf(ErrorCode::kConfig, "config: summary_dim ", summary_dim,
                  " is not divisible by attn_heads ", attn_heads);
  }
  MM_RETURN_IF_ERROR(CheckRange("cross_layer_period", cross_layer_period, 0, 4096));
  MM_RETURN_IF_ERROR(CheckRange("cross_layer_span", cross_layer_span, 1, 4096));
  if (pool_policy != PoolPolicy::kPriority && pool_policy != PoolPolicy::kFifo) {
    return Errorf(ErrorCode::kConfig, "config: unknown pool_policy ",
                  static_cast<int>(pool_policy));
  }
  if (fusion != Fusion::kWeighted && fusion != Fusion::kResidual &&
      fusion != Fusion::kGated) {
    return Errorf(ErrorCode::kConfig, "config: unknown fusion ", static_cast<int>(fusion));
  }
  if (!std::isfinite(note_threshold) || !std::isfinite(gate_threshold)) {
    return Error(ErrorCode::kConfig, "config: thresholds must be finite");
  }
  if (!(norm_eps > 0.0f) || !std::isfinite(norm_eps)) {
    return Error(ErrorCode::kConfig, "config: norm_eps must be positive and finite");
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> ModelConfig::ToMetadata() const {
  std::map<std::string, std::string> m;
  m["format"] = "memmamba";
  m["format_version"] = "1";
  m["vocab_size"] = std::to_string(vocab_size);
  m["d_model"] = std::to_string(d_model);
  m["n_layer"] = std::to_string(n_layer);
  m["d_state"] = std::to_string(d_state);
  m["d_conv"] = std::to_string(d_conv);
  m["expand"] = std::to_string(expand);
  m["dt_rank"] = std::to_string(dt_rank);
  m["note_window"] = std::to_string(note_window);
  m["summary_dim"] = std::to_string(summary_dim);
  m["pool_capacity"] = std::to_string(pool_capacity);
  m["pool_policy"] = pool_policy == PoolPolicy::kFifo ? "FIFO" : "PRIORITY";
  m["note_threshold"] = FloatText(note_threshold);
  m["attn_heads"] = std::to_string(attn_heads);
  m["gate_threshold"] = FloatText(gate_threshold);
  m["cross_layer_period"] = std::to_string(cross_layer_period);
  m["cross_layer_span"] = std::to_string(cross_layer_span);
  m["fusion"] = fusion == Fusion::kGated      ? "GATED"
                : fusion == Fusion::kResidual ? "RESIDUAL"
                                              : "WEIGHTED";
  m["norm_eps"] = FloatText(norm_eps);
  m["tie_embeddings"] = tie_embeddings ? "true" : "false";
  return m;
}

absl::StatusOr<ModelConfig> ModelConfig::FromMetadata(
    const std::map<std::string, std::string>& metadata) {
  auto get = [&](const char* key) -> absl::StatusOr<std::string> {
    auto it = metadata.find(key);
    if (it == metadata.end()) {
      return Errorf(ErrorCode::kConfig, "model file metadata lacks '", key, "'");
    }
    return it->second;
  };
  auto get_int = [&](const char* key, int64_t* out) -> absl::Status {
    MM_ASSIGN_OR_RETURN(std::string text, get(key));
    if (!absl::SimpleAtoi(text, out)) {
      return Errorf(ErrorCode::kConfig, "model file metadata '", key,
                    "' is not an integer: '", text, "'");
    }
    return absl::OkStatus();
  };
  auto get_float = [&](const char* key, float* out) -> absl::Status {
    MM_ASSIGN_OR_RETURN(std::string text, get(key));
    if (!absl::SimpleAtof(text, out)) {
      return Errorf(ErrorCode::kConfig, "model file metadata '", key,
                    "' is not a number: '", text, "'");
    }
    return absl::OkStatus();
  };
  MM_ASSIGN_OR_RETURN(std::string format, get("format"));
  if (format != "memmamba") {
    return Errorf(ErrorCode::kConfig, "model file metadata 'format' is '", format,
                  "', expected 'memmamba' (use mm_model_import_mamba for Mamba checkpoints)");
  }
  ModelConfig c;
  MM_RETURN_IF_ERROR(get_int("vocab_size", &c.vocab_size));
  MM_RETURN_IF_ERROR(get_int("d_model", &c.d_model));
  MM_RETURN_IF_ERROR(get_int("n_layer", &c.n_layer));
  MM_RETURN_IF_ERROR(get_int("d_state", &c.d_state));
  MM_RETURN_IF_ERROR(get_int("d_conv", &c.d_conv));
  MM_RETURN_IF_ERROR(get_int("expand", &c.expand));
  MM_RETURN_IF_ERROR(get_int("dt_rank", &c.dt_rank));
  MM_RETURN_IF_ERROR(get_int("note_window", &c.note_window));
  MM_RETURN_IF_ERROR(get_int("summary_dim", &c.summary_dim));
  MM_RETURN_IF_ERROR(get_int("pool_capacity", &c.pool_capacity));
  MM_RETURN_IF_ERROR(get_float("note_threshold", &c.note_threshold));
  MM_RETURN_IF_ERROR(get_int("attn_heads", &c.attn_heads));
  MM_RETURN_IF_ERROR(get_float("gate_threshold", &c.gate_threshold));
  MM_RETURN_IF_ERROR(get_int("cross_layer_period", &c.cross_layer_period));
  MM_RETURN_IF_ERROR(get_int("cross_layer_span", &c.cross_layer_span));
  MM_RETURN_IF_ERROR(get_float("norm_eps", &c.norm_eps));
  MM_ASSIGN_OR_RETURN(std::string policy, get("pool_policy"));
  if (policy == "PRIORITY") {
    c.pool_policy = PoolPolicy::kPriority;
  } else if (policy == "FIFO") {
    c.pool_policy = PoolPolicy::kFifo;
  } else {
    return Errorf(ErrorCode::kConfig, "model file metadata: unknown pool_policy '", policy, "'");
  }
  MM_ASSIGN_OR_RETURN(std::string fusion, get("fusion"));
  if (fusion == "WEIGHTED") {
    c.fusion = Fusion::kWeighted;
  } else if (fusion == "RESIDUAL") {
    c.fusion = Fusion::kResidual;
  } else if (fusion == "GATED") {
    c.fusion = Fusion::kGated;
  } else {
    return Errorf(ErrorCode::kConfig, "model file metadata: unknown fusion '", fusion, "'");
  }
  MM_ASSIGN_OR_RETURN(std::string tie, get("tie_embeddings"));
  if (tie != "true" && tie != "false") {
    return Errorf(ErrorCode::kConfig, "model file metadata: tie_embeddings is '", tie, "'");
  }
  c.tie_embeddings = tie == "true";
  MM_RETURN_IF_ERROR(c.Resolve());
  return c;
}

bool ModelConfig::operator==(const ModelConfig& o) const {
  return ToMetadata() == o.ToMetadata();
}

}  // namespace memmamba
