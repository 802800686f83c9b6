// Training on a CUDA device (DESIGN 3, 6): the master weights, the AdamW
// moments, the gradient accumulator and every activation live on the
// device; the gradient pass mirrors gradients.cc op for op through the
// kernels of libmemmamba_cuda (kernels/), and the host keeps only the pool
// bookkeeping (which notes each window reads: the runtime's own InsertNote on
// the scores the device computed). The Trainer (trainer.h) drives it.
#ifndef MEMMAMBA_TRAIN_CUDA_TRAIN_H_
#define MEMMAMBA_TRAIN_CUDA_TRAIN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/model.h"
#include "model/weights.h"
#include "train/gradients.h"

namespace memmamba {

class CudaTrainState {
 public:
  // A state for `model`'s parameters (`params` = ListParams of its weights,
  // which must stay alive and in place). kUnsupported without the CUDA
  // library, kNoDevice without a GPU.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CudaTrainState>> Create(
      const Model* model, std::vector<ParamRef> params, bool accumulate, int device = 0,
      bool tf32 = false);
  ~CudaTrainState();

  // Host (ListParams order: the model's weights, m, v, accum) <-> device.
  [[nodiscard]] absl::Status Upload(const std::vector<std::vector<float>>& m,
                                    const std::vector<std::vector<float>>& v,
                                    const std::vector<std::vector<float>>& accum);
  [[nodiscard]] absl::Status Download(ModelWeights* weights, std::vector<std::vector<float>>* m,
                                      std::vector<std::vector<float>>* v,
                                      std::vector<std::vector<float>>* accum);

  // The loss and gradient of `batch` into the device gradient (tokens valid).
  [[nodiscard]] absl::Status ComputeGradients(const Batch& batch, const GradientOptions& options,
                                              BatchStats* stats);
  // The last gradient, one vector per tensor in ListParams order (tests).
  [[nodiscard]] absl::Status DownloadGradients(Gradients* out);
  // Σ g² of the gradient (or of the accumulator); `per_tensor`, when not
  // NULL, receives each tensor's sum (to name a non-finite one).
  [[nodiscard]] absl::Status SumSquares(bool of_accum, double* total,
                                        std::vector<double>* per_tensor);
  [[nodiscard]] absl::Status Accumulate();   // accum += gradient
  [[nodiscard]] absl::Status ZeroAccum();
  // AdamW of every parameter from the gradient (or the accumulator), then
  // the derived weights (A) refreshed on the device.
  [[nodiscard]] absl::Status AdamW(bool of_accum, float gs, float lr, float beta1, float beta2,
                                   float eps, float weight_decay, int64_t step);

  const std::string& device_name() const;
  int device() const;  // the CUDA device ordinal

  // --- Data-parallel training (DESIGN 6; kernels/comm.cu, NCCL).
  // Joins a group of `world_size` states, one a GPU, as `rank` (collective:
  // every rank calls it with the same 128-byte NCCL id), then takes rank
  // 0's weights and moments. kComm for an NCCL failure, kUnsupported where
  // NCCL cannot be opened.
  [[nodiscard]] absl::Status JoinGroup(int world_size, int rank, const uint8_t* nccl_id);
  bool in_group() const;
  int world_size() const;  // 1 outside a group
  // The gradient becomes Σ_ranks scale_rank · gradient_rank (collective).
  [[nodiscard]] absl::Status AllReduceGradient(double scale);
  // values[0..n) become their sums over the ranks (collective; n <= 16).
  [[nodiscard]] absl::Status AllReduce(double* values, int n);

 private:
  struct Impl;
  explicit CudaTrainState(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace memmamba

#endif  // MEMMAMBA_TRAIN_CUDA_TRAIN_H_
