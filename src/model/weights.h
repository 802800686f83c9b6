// The model's parameters (DESIGN 2.2): layout in memory, the one list of
// named tensors that init, files and training all walk, and initialisation.
#ifndef MEMMAMBA_MODEL_WEIGHTS_H_
#define MEMMAMBA_MODEL_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/large_pages.h"
#include "common/status.h"
#include "model/config.h"

namespace memmamba {

// A matrix used in products, row-major [rows, cols] (PyTorch Linear layout:
// y = W·x). Exactly one of f32 / bf16 holds the values. Large matrices sit
// on huge pages where the system grants them (common/large_pages.h): decode
// streams all of them once per token.
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  LargeVector<float> f32;
  LargeVector<uint16_t> bf16;

  bool is_bf16() const { return !bf16.empty(); }
  int64_t size() const { return rows * cols; }
  void Allocate(int64_t r, int64_t c) {
    rows = r;
    cols = c;
    f32.assign(static_cast<size_t>(r * c), 0.0f);
    bf16.clear();
  }
};

// The weights of one pool read (the `tok.` or `lay.` set of DESIGN 2.2).
struct ReadWeights {
  Matrix q;                 // [S, D]
  Matrix k;                 // [S, S]
  Matrix v;                 // [S, S]
  Matrix o;                 // [D, S]
  std::vector<float> gate;  // [D]
  float gate_bias = 0.0f;   // [1]
  std::vector<float> alpha; // [D], WEIGHTED only
  std::vector<float> fuse;  // [D], GATED only
  // Derived, not parameters: k and v widened back to f32 when they are
  // stored as bf16 (ConvertMatricesToBf16), for the folded pool read that
  // multiplies by them on every token (Backend::PoolAttendFolded).
  std::vector<float> k_wide, v_wide;

  const float* k_f32() const { return k.is_bf16() ? k_wide.data() : k.f32.data(); }
  const float* v_f32() const { return v.is_bf16() ? v_wide.data() : v.f32.data(); }
};

struct LayerWeights {
  // Mamba v1 mixer.
  std::vector<float> norm;  // [D]
  Matrix in_proj;           // [2E, D]
  std::vector<float> conv_w;// [E, K]
  std::vector<float> conv_b;// [E]
  Matrix x_proj;            // [R+2N, E]
  Matrix dt_proj;           // [E, R]
  std::vector<float> dt_bias;// [E]
  std::vector<float> A_log; // [E, N]
  std::vector<float> D;     // [E]
  Matrix out_proj;          // [D, E]
  // Note block.
  std::vector<float> note_norm;  // [D]
  Matrix note_summary;           // [S, D]
  std::vector<float> note_score; // [D]
  float note_score_bias = 0.0f;  // [1]
  // Pool reads.
  ReadWeights tok;
  bool has_lay = false;
  ReadWeights lay;

  // Derived, not a parameter: A = -exp(A_log) transposed to [N, E] so the
  // scan runs across channels; refreshed by PrepareWeights().
  std::vector<float> A;
};

struct ModelWeights {
  Matrix embedding;             // [V, D]
  std::vector<float> norm_f;    // [D]
  Matrix lm_head;               // [V, D]; empty when tied
  std::vector<LayerWeights> layers;

  const Matrix& head() const { return lm_head.size() ? lm_head : embedding; }
};

// How a parameter is initialised (DESIGN 2.2 "Init").
enum class InitKind {
  kNormal,       // normal(0, 0.02)
  kOnes,         // RMSNorm weights, mixer.D
  kZeros,        // fuse.weight
  kAlpha,        // 0.1
  kScoreBias,    // 2.0
  kALog,         // log(1..N) per row
  kDtBias,       // inv-softplus of log-uniform dt in [1e-3, 0.1]
  kDtWeight,     // uniform(+-dt_rank^-0.5), as the Mamba reference
  kConv,         // uniform(+-1/sqrt(K)), as PyTorch's Conv1d default
};

// One named parameter tensor. Exactly one of matrix / vector / scalar is set.
struct ParamRef {
  std::string name;
  std::vector<int64_t> shape;
  InitKind init = InitKind::kNormal;
  bool weight_decay = true;     // false for norms, biases, A_log, D, alpha (DESIGN 6)
  bool memory = false;          // part of the note memory (not in a Mamba checkpoint)
  Matrix* matrix = nullptr;
  std::vector<float>* vector = nullptr;
  float* scalar = nullptr;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// The number of parameters `config` has, computed without allocating (in
// double: a fuzzed configuration may describe more than memory holds), so
// file readers can refuse a configuration the file cannot back before
// allocating for it. Equals the total of ListParams() (a test checks).
double CountParameters(const ModelConfig& config);

// Sizes every tensor of `weights` for `config` (zero-filled, fp32).
void AllocateWeights(const ModelConfig& config, ModelWeights* weights);

// Every parameter of the model, in a fixed order (the file order).
std::vector<ParamRef> ListParams(const ModelConfig& config, ModelWeights* weights);

// Initialises the parameters for which `select` returns true from `seed`;
// each tensor draws from its own stream (seed, name), so the values of a
// tensor do not depend on which others are initialised.
void InitializeWeights(const ModelConfig& config, uint64_t seed,
                       const std::function<bool(const ParamRef&)>& select,
                       ModelWeights* weights);

// Refreshes derived values (A) after the parameters changed.
void PrepareWeights(const ModelConfig& config, ModelWeights* weights);

// Converts every Matrix to bf16 storage (round to nearest even); the pool
// reads' k and v also keep their widened values (ReadWeights::k_wide).
void ConvertMatricesToBf16(const ModelConfig& config, ModelWeights* weights);

// kNonFinite naming the first tensor holding a NaN or Inf.
[[nodiscard]] absl::Status CheckFinite(const ModelConfig& config, ModelWeights* weights);

}  // namespace memmamba

#endif  // MEMMAMBA_MODEL_WEIGHTS_H_
