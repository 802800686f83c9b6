// A model: configuration, weights and the backend that runs them. Immutable
// after creation, so one model serves any number of sessions and threads.
#ifndef MEMMAMBA_MODEL_MODEL_H_
#define MEMMAMBA_MODEL_MODEL_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "common/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace memmamba {

class DeviceSessions;  // runtime/device_sessions.h

struct ModelOptions {
  bool bf16_weights = false;  // store matrices in bf16 (inference)
  int n_threads = 0;          // 0 = all cores
  bool cuda = false;          // MM_DEVICE_CUDA
  bool tf32 = false;          // MM_MATH_TF32: GPU products may use TF32
  bool bf16_products = false; // MM_MATH_BF16: the mixers' and the head's GPU
                              // products in bf16 (set with tf32 for the rest)
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

  // A model of `weights` (sized for `config` by AllocateWeights, f32):
  // checked finite, derived values prepared, converted as `options` asks.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Model>> FromWeights(
      ModelConfig config, ModelWeights weights, const ModelOptions& options);

  ~Model();

  [[nodiscard]] absl::Status Save(const std::string& path) const;

  // Training only: a trainer owns a private model whose weights it updates
  // in place; such a model is never shared with sessions, and its
  // fingerprint is never taken. Call RefreshDerivedWeights() after a change.
  ModelWeights* mutable_weights_for_training() { return &weights_; }
  void RefreshDerivedWeights() { PrepareWeights(config_, &weights_); }

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  Backend& backend() const { return *backend_; }
  int n_threads() const { return n_threads_; }
  const ModelOptions& options() const { return options_; }
  uint64_t ParameterCount() const;

  // A 64-bit fingerprint of the function the model computes, so a snapshot
  // is only restored onto the model it was taken from (DESIGN 5): XXH64
  // (seed 0, common/hash.h) over, in order,
  //   the text "memmamba model fingerprint v1\n";
  //   each "key=value\n" of config().ToMetadata(), in key order;
  //   for each parameter in ListParams() order: its name, a NUL byte, 'f'
  //   (stored as f32) or 'b' (bf16), its rank and dims as little-endian
  //   int64, then its values as stored, little-endian.
  // Equal for a model and the same model saved and loaded; different for
  // another seed, configuration or weight dtype. Computed on first use (one
  // pass over the weights: about 0.1 s for the 130m shape) and cached.
  // Any thread.
  uint64_t Fingerprint() const;

  // Layers whose pool reads see layer `source`'s notes: `source` itself
  // (its tok read) first, then the cross-layer readers in layer order.
  const std::vector<int64_t>& readers(int64_t source) const { return readers_[source]; }

  // MM_DEVICE_CUDA models: the weights on the GPU and the state of every
  // session of the model (sessions run there); NULL for CPU models.
  DeviceSessions* device_sessions() const { return device_.get(); }

 private:
  Model() = default;
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Model>> Finish(
      ModelConfig config, ModelWeights weights, const ModelOptions& options);

  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Backend> backend_;
  int n_threads_ = 1;
  ModelOptions options_;
  std::vector<std::vector<int64_t>> readers_;
  std::unique_ptr<DeviceSessions> device_;
  mutable std::once_flag fingerprint_once_;
  mutable uint64_t fingerprint_ = 0;
};

}  // namespace memmamba

#endif  // MEMMAMBA_MODEL_MODEL_H_
