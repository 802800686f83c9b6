// A stream's recurrent state (DESIGN 2.3, 5): constant in the stream length.
#ifndef MEMMAMBA_RUNTIME_STATE_H_
#define MEMMAMBA_RUNTIME_STATE_H_

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "runtime/pool.h"

namespace memmamba {

struct LayerState {
  std::vector<float> conv;     // [K-1, E], oldest first
  std::vector<float> ssm;      // [N, E]: channel-contiguous, as the scan runs
  std::vector<float> win_max;  // [D], elementwise max of a over the pending window
  Pool pool;
};

struct StreamState {
  int64_t position = 0;     // tokens consumed
  int64_t summary_dim = 0;  // S: floats per note summary
  std::vector<LayerState> layers;

  // Sizes and zeroes everything for `config` (position 0, empty pools).
  void Reset(const ModelConfig& config);
  // Bytes of state: what a snapshot stores (RawStateBytes in snapshot.h).
  uint64_t Bytes() const;
};

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_STATE_H_
