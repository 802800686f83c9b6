#include "runtime/state.h"

#include <limits>

namespace memmamba {

void StreamState::Reset(const ModelConfig& c) {
  position = 0;
  summary_dim = c.summary_dim;
  layers.resize(c.n_layer);
  const int64_t E = c.d_inner();
  for (LayerState& L : layers) {
    L.conv.assign((c.d_conv - 1) * E, 0.0f);
    L.ssm.assign(E * c.d_state, 0.0f);
    L.win_max.assign(c.memory_enabled() ? c.d_model : 0,
                     -std::numeric_limits<float>::infinity());
    L.pool.clear();
  }
}

uint64_t StreamState::Bytes() const {
  const uint64_t summary_bytes = static_cast<uint64_t>(summary_dim) * sizeof(float);
  uint64_t bytes = sizeof(position);
  for (const LayerState& L : layers) {
    bytes += (L.conv.size() + L.ssm.size() + L.win_max.size()) * sizeof(float);
    bytes += L.pool.size() * (sizeof(PoolEntry::window) + sizeof(PoolEntry::score) + summary_bytes);
  }
  return bytes;
}

}  // namespace memmamba
