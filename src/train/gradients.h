// The loss and gradient of one batch (DESIGN 2.4, 6): the whole-sequence
// forward from empty state, next-token cross-entropy, and the backward of
// every op. The optimizer lives in trainer.h; this is also what gradient
// checks and tools call.
#ifndef MEMMAMBA_TRAIN_GRADIENTS_H_
#define MEMMAMBA_TRAIN_GRADIENTS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "model/model.h"
#include "runtime/state.h"

namespace memmamba {

// B sequences of T tokens, row-major; mask (optional, B·T bytes aligned with
// tokens): a non-zero byte makes that token a target; t = 0 never is.
// initial (optional, B pointers): sequence b continues the stream initial[b]
// (its conv and SSM state and its pools; NULL: empty state) whose position
// must be a multiple of note_window (no pending window). That state is a
// constant of the gradient, as in truncated backpropagation through time.
// resets (optional, B·T bytes aligned with tokens): a non-zero byte at (b, t)
// zeroes sequence b's recurrent state (scan state and conv inputs) before
// position t, as mm_session_reset_recurrent between feeding positions < t
// and >= t would; notes and pools go on. At t = 0 it drops the recurrent
// part of initial[b] (its pools stay).
struct Batch {
  const int32_t* tokens = nullptr;
  int64_t B = 0;
  int64_t T = 0;
  const uint8_t* mask = nullptr;
  const StreamState* const* initial = nullptr;
  const uint8_t* resets = nullptr;
};

// Whether `state` can start a sequence of `config`'s model (Batch::initial):
// its shapes are the config's and its position closes a note window.
[[nodiscard]] absl::Status CheckInitialState(const ModelConfig& config, const StreamState& state);

// Buffers a gradient pass leaves behind for the next one (activations,
// notes, layer inputs), so that steps of the same shape neither allocate nor
// fault in fresh pages. Opaque; MakeGradientWorkspace makes one. Contents
// between calls are unspecified: every pass overwrites what it reads.
struct GradientWorkspace;
struct GradientWorkspaceDeleter {
  void operator()(GradientWorkspace* w) const;
};
using GradientWorkspacePtr = std::unique_ptr<GradientWorkspace, GradientWorkspaceDeleter>;
GradientWorkspacePtr MakeGradientWorkspace();

struct GradientOptions {
  // DESIGN 6: every completed earlier window is a read candidate weighted by
  // keep + score - stopgrad(score).
  bool straight_through = false;
  // Activations of every layer are kept when they fit in this many bytes;
  // otherwise one layer's at a time, recomputed in the backward (one more
  // forward pass of work). The gradients are the same bits either way.
  double keep_activations_bytes = 1024.0 * 1024.0 * 1024.0;
  // The same on a CUDA device (train/cuda_train.h); < 0: 40 % of its memory.
  double device_keep_activations_bytes = -1.0;
  // Where the CPU pass keeps its buffers between calls (one pass at a time
  // per workspace); NULL: its own, freed at the end of the call.
  GradientWorkspace* workspace = nullptr;
  // The CPU pass cuts the batch into groups of whole sequences, floor(group_rows / T)
  // of them a group (at least one), whose gradients are computed apart and
  // added in group order; with several threads the groups run side by side,
  // one per thread, which keeps both cores busy where one pass over all
  // rows leaves the second waiting on serial parts. The cut depends on B, T
  // and this alone: the bits do not depend on the thread count. 0: one group.
  // A GPU pass (train/cuda_train.h) takes the batch whole.
  int64_t group_rows = 2048;
};

struct BatchStats {
  double loss_sum = 0.0;               // Σ over targets of -log p(target)
  int64_t targets = 0;
  std::vector<float> keep_fraction;    // per layer: closed windows kept / closed
  double loss() const { return targets ? loss_sum / targets : 0.0; }
};

// Gradients, one flat float vector per parameter in ListParams() order.
using Gradients = std::vector<std::vector<float>>;

// Computes the mean loss over the batch's targets and its gradient with
// respect to every parameter of `model` (whose matrices must be f32).
// `grads` is resized and overwritten. Tokens must be valid (the caller
// checks); fails with kInvalidArgument when the batch has no target.
[[nodiscard]] absl::Status ComputeGradients(const Model& model, const Batch& batch,
                                            const GradientOptions& options, BatchStats* stats,
                                            Gradients* grads);

}  // namespace memmamba

#endif  // MEMMAMBA_TRAIN_GRADIENTS_H_
