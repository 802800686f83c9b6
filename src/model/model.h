// A model: configuration, weights and the backend that runs them. Immutable
// after creation, so one model serves any number of sessions and threads.
#ifndef MEMMAMBA_MODEL_MODEL_H_
#define MEMMAMBA_MODEL_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace memmamba {

struct ModelOptions {
  bool bf16_weights = false;  // store matrices in bf16 (inference)
  int n_threads = 0;          // 0 = all cores
  bool cuda = false;          // MM_DEVICE_CUDA
};

class Model {
 public:
  // Fresh weights from `seed` (DESIGN 2.2).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Model>> Create(
      ModelConfig config, uint64_t seed, const ModelOptions& options);
  // A file written by Save().
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Model>> Load(
      const std::string& path, const ModelOptions& options);
  // A Mamba v1 checkpoint in the reference naming; memory knobs from
  // `memory_config`, memory weights fresh from `seed`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Model>> ImportMamba(
      const std::string& path, const ModelConfig& memory_config, uint64_t seed,
      const ModelOptions& options);

  [[nodiscard]] absl::Status Save(const std::string& path) const;

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  Backend& backend() const { return *backend_; }
  int n_threads() const { return n_threads_; }
  uint64_t ParameterCount() const;

  // Layers whose pool reads see layer `source`'s notes: `source` itself
  // (its tok read) first, then the cross-layer readers in layer order.
  const std::vector<int64_t>& readers(int64_t source) const { return readers_[source]; }
  // Index of `reader` in readers(source).
  int ReaderSlot(int64_t source, int64_t reader) const;

 private:
  Model() = default;
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Model>> Finish(
      ModelConfig config, ModelWeights weights, const ModelOptions& options);

  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Backend> backend_;
  int n_threads_ = 1;
  std::vector<std::vector<int64_t>> readers_;
};

}  // namespace memmamba

#endif  // MEMMAMBA_MODEL_MODEL_H_
