// The model configuration (DESIGN 2.1) inside the library, with validation
// and the (de)serialisation used by the safetensors metadata.
#ifndef MEMMAMBA_MODEL_CONFIG_H_
#define MEMMAMBA_MODEL_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"

namespace memmamba {

enum class PoolPolicy : int32_t { kPriority = 0, kFifo = 1 };
enum class Fusion : int32_t { kWeighted = 0, kResidual = 1, kGated = 2 };

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 256;
  int64_t n_layer = 8;
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;  // 0 until Resolve(): ceil(d_model / 16)
  int64_t note_window = 32;
  int64_t summary_dim = 64;
  int64_t pool_capacity = 50;
  PoolPolicy pool_policy = PoolPolicy::kPriority;
  float note_threshold = 0.5f;
  int64_t attn_heads = 4;
  float gate_threshold = 0.0f;
  int64_t cross_layer_period = 4;
  int64_t cross_layer_span = 4;
  Fusion fusion = Fusion::kWeighted;
  float norm_eps = 1e-5f;
  bool tie_embeddings = true;

  int64_t d_inner() const { return expand * d_model; }
  bool memory_enabled() const { return pool_capacity > 0; }
  // Whether layer l has a cross-layer read (DESIGN 2.3 step 2), and so its
  // `lay.` weights. With period 1, layer 0 has one over no sources: c_lay = 0.
  bool HasCrossLayerRead(int64_t layer) const {
    return memory_enabled() && cross_layer_period > 0 && (layer + 1) % cross_layer_period == 0;
  }
  // First source layer of layer l's cross-layer read (sources are
  // [CrossLayerBegin(l), l)).
  int64_t CrossLayerBegin(int64_t layer) const {
    return layer - cross_layer_span < 0 ? 0 : layer - cross_layer_span;
  }

  // Fills derived fields (dt_rank) and validates. Returns kConfig errors.
  [[nodiscard]] absl::Status Resolve();

  // safetensors __metadata__ representation (all values strings).
  std::map<std::string, std::string> ToMetadata() const;
  [[nodiscard]] static absl::StatusOr<ModelConfig> FromMetadata(
      const std::map<std::string, std::string>& metadata);

  bool operator==(const ModelConfig& other) const;
};

}  // namespace memmamba

#endif  // MEMMAMBA_MODEL_CONFIG_H_
