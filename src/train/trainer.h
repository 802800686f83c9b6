// The trainer (DESIGN 6): master weights, AdamW moments, gradient
// accumulation, global-norm clipping, save and load.
#ifndef MEMMAMBA_TRAIN_TRAINER_H_
#define MEMMAMBA_TRAIN_TRAINER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/gradients.h"

namespace memmamba {
class CudaTrainState;
}

namespace memmamba {

struct TrainerOptions {
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
  float grad_clip = 1.0f;  // 0 = off
  int64_t accum_steps = 1;
  int n_threads = 0;       // 0 = all cores
  bool straight_through = false;
  bool cuda = false;       // train on the CUDA device (train/cuda_train.h)
  bool tf32 = false;       // MM_MATH_TF32: the GPU's fp32 products may use TF32

  [[nodiscard]] absl::Status Validate() const;
};

// Data-parallel training over NCCL (DESIGN 6): one trainer a GPU, in one
// process or thread each.
struct DataParallelOptions {
  int world_size = 1;
  int rank = 0;
  int device = -1;            // the CUDA ordinal; -1: the rank
  const uint8_t* nccl_id = nullptr;  // 128 bytes, the same on every rank
};

struct StepResult {
  double loss = 0.0;
  double grad_norm = 0.0;
  int64_t tokens = 0;
  bool updated = false;
  int64_t step = 0;
};

class Trainer {
 public:
  // Starts from `init`'s weights (bf16 matrices are widened to f32).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const Model& init, const TrainerOptions& options);
  // A file written by Save(); `n_threads` 0 = all cores; `cuda`: continue
  // on the CUDA device.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Trainer>> Load(const std::string& path,
                                                                     int n_threads,
                                                                     bool cuda = false);
  // The same from the file's bytes; `what` names it in messages.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Trainer>> FromBytes(
      std::string bytes, const std::string& what, int n_threads, bool cuda = false);
  ~Trainer();

  // One mm_train_step. On any error nothing changes.
  [[nodiscard]] absl::Status Step(const Batch& batch, StepResult* result);
  [[nodiscard]] absl::Status Save(const std::string& path) const;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Model>> ExportModel(
      const ModelOptions& options) const;

  [[nodiscard]] absl::Status SetLearningRate(float lr);
  // Joins a data-parallel group (collective over the group's ranks): the
  // trainer moves to options.device if it is elsewhere, then every rank
  // takes rank 0's weights, moments and step. From then on each Step()
  // computes the gradient of its own batch, the group sums them weighted by
  // each rank's share of the group's targets (so N ranks with b sequences
  // each follow one trainer with the N·b sequences, up to the order of the
  // sums) and every rank applies the same update. A CUDA trainer only
  // (kUnsupported otherwise), between updates (kInvalidArgument in the
  // middle of an accumulation), once.
  [[nodiscard]] absl::Status JoinDataParallel(const DataParallelOptions& options);
  int world_size() const;
  int64_t step() const { return step_; }
  const std::vector<float>& keep_fraction() const { return keep_fraction_; }
  const ModelConfig& config() const { return model_->config(); }
  // The CUDA device's name, or "" for a trainer on the CPU.
  std::string device_name() const;

 private:
  Trainer();
  void Allocate();
  // Moves the state onto the CUDA device (options_.cuda).
  [[nodiscard]] absl::Status AttachDevice();
  // Brings the device's weights and moments back to the host copies.
  [[nodiscard]] absl::Status SyncHost() const;
  [[nodiscard]] absl::Status CheckBatch(const Batch& batch) const;
  [[nodiscard]] absl::Status StepOnHost(const Batch& batch, StepResult* result);
  [[nodiscard]] absl::Status StepOnDevice(const Batch& batch, StepResult* result);
  // This rank's part in a step's collective when it refuses the step before
  // its gradient pass (the others then refuse too).
  [[nodiscard]] absl::Status RefuseInGroup();
  [[nodiscard]] absl::Status ReduceOverGroup(const BatchStats& stats, double* micro_sq,
                                             StepResult* r);
  float GradientScale(double sum_squares, double* norm) const;
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Trainer>> FromFile(
      const SafetensorsReader& file, const std::string& path, int n_threads, bool cuda);

  std::unique_ptr<Model> model_;  // private: its weights change in place
  TrainerOptions options_;
  std::vector<ParamRef> params_;  // into model_'s weights
  // On the CPU the state itself; with a device, host copies that SyncHost()
  // refreshes when stale.
  mutable std::vector<std::vector<float>> m_, v_, accum_;
  std::unique_ptr<CudaTrainState> device_;
  mutable bool host_stale_ = false;
  int64_t accum_count_ = 0;
  int64_t step_ = 0;
  std::vector<float> keep_fraction_;
  // The CPU gradient pass's buffers, kept from one step to the next.
  GradientWorkspacePtr workspace_ = MakeGradientWorkspace();
};

}  // namespace memmamba

#endif  // MEMMAMBA_TRAIN_TRAINER_H_
