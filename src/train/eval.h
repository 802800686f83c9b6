// Evaluation (DESIGN 7): next-token loss by context length, and the memory
// measures ETMF and ECLMF. Both stream through the runtime's forward pass
// with bounded memory, whatever the number of tokens.
#ifndef MEMMAMBA_TRAIN_EVAL_H_
#define MEMMAMBA_TRAIN_EVAL_H_

#include <cstdint>

#include "common/status.h"
#include "model/model.h"

namespace memmamba {

struct LossEval {
  double loss_sum = 0.0;  // Σ −log p(target), nats
  int64_t targets = 0;
};

// Tokens cut into pieces of `context` tokens (0 = one piece), each read from
// an empty state; a piece's first token is not a target.
[[nodiscard]] absl::Status EvalLoss(const Model& model, const int32_t* tokens, int64_t n,
                                    int64_t context, LossEval* out);

struct FidelityEval {
  double etmf = 0.0;
  double eclmf[3] = {0.0, 0.0, 0.0};  // G = 2, 5, 10; NaN where G > n_layer
  int64_t tokens = 0;
};

// One stream over all n tokens.
//   ETMF = mean over targets j of cos(E[x_j], Σ_v p_j(v)·E[v]).
//   ECLMF_G = mean over l of 1 − ‖Y − XW‖_F / (‖X‖_F + 1e-6), X = h_l,
//   Y = h_{l+G} over all positions, W = (XᵀX + λI)⁻¹XᵀY, λ = 1e-4; the
//   Gram matrices are accumulated in double as the stream goes, so memory
//   does not grow with n.
[[nodiscard]] absl::Status EvalFidelity(const Model& model, const int32_t* tokens, int64_t n,
                                        FidelityEval* out);

}  // namespace memmamba

#endif  // MEMMAMBA_TRAIN_EVAL_H_
