// dump_grads DIR KEY=VALUE...: the library's training loss and gradients of a
// small random model, for check_grads.py (the independent reference).
//
// Builds a model like dump_logits.c (same keys: policy, window, fusion, cross,
// span, capacity, gate, tie, T, seed), moves every weight away from its init
// (so that every tensor has a non-trivial gradient: fuse.weight starts at 0,
// every note scores alike at init, ...), saves it, reloads it and writes to DIR
//   model.safetensors  the model whose gradients these are
//   tokens.i32         B·T int32 token ids, row-major
//   mask.u8            B·T bytes: non-zero = that token is a target
//   shape.txt          "B T"
//   grads.safetensors  one F32 tensor per parameter, names as ListParams
//   loss.txt           "loss targets"
//   keep.txt           per layer, the fraction of closed windows kept
// Extra keys: B (sequences, 2), density (fraction of targets kept by the
// mask, 0.7; 1 = no mask), perturb (scale of the move away from init, 1;
// 0 = the init itself), threads (1).
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "train/gradients.h"

namespace {

using memmamba::InitKind;
using memmamba::ParamRef;

// A small deterministic generator (splitmix64 + Box-Muller), so a case draws
// the same weights and tokens with any standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (Next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double Normal() {
    const double u = 1.0 - Uniform(), v = Uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }

 private:
  uint64_t state_;
};

float* Data(const ParamRef& p) {
  if (p.matrix) return p.matrix->f32.data();
  if (p.vector) return p.vector->data();
  return p.scalar;
}

// Offset and spread of the move away from init, per kind of parameter. The
// note scorer gets a spread large enough that notes differ clearly (PRIORITY
// decisions far from ties) and its bias stays near 1.5, so most notes are kept
// and some are dropped; α and fuse.weight leave their constant inits.
void Perturb(const ParamRef& p, double scale, Rng* rng) {
  const bool is_matrix = p.matrix != nullptr;
  const int64_t fan_in = p.shape.size() == 2 ? p.shape[1] : 1;
  double offset = 0.0, spread = 0.0;
  switch (p.init) {
    case InitKind::kNormal:
      // matrices: outputs of order one; vectors and scalars (gate.weight,
      // note.score.weight, gate.bias): pre-activations spread over a few units
      spread = is_matrix ? 0.5 / std::sqrt(static_cast<double>(fan_in)) : 0.3;
      break;
    case InitKind::kOnes: spread = 0.1; break;      // norms, mixer.D
    case InitKind::kZeros: spread = 1.0; break;     // fuse.weight
    case InitKind::kAlpha: spread = 0.2; break;     // alpha
    case InitKind::kScoreBias: offset = -0.5; spread = 0.2; break;
    case InitKind::kALog: spread = 0.1; break;
    case InitKind::kDtBias: offset = 1.0; spread = 0.3; break;  // larger Δ: A_log matters
    case InitKind::kDtWeight: spread = 0.2; break;
    case InitKind::kConv: spread = 0.2; break;
  }
  float* d = Data(p);
  for (int64_t i = 0; i < p.numel(); ++i) {
    d[i] += static_cast<float>(scale * (offset + spread * rng->Normal()));
  }
}

bool WriteFile(const std::string& dir, const char* name, const void* data, size_t bytes) {
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, bytes, f) != bytes || std::fclose(f) != 0) {
    std::perror(path.c_str());
    return false;
  }
  return true;
}

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "dump_grads: %s: %s\n", what, std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [key=value...]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  memmamba::ModelConfig c;
  c.vocab_size = 48;
  c.d_model = 24;
  c.n_layer = 4;
  c.d_state = 8;
  c.summary_dim = 16;
  c.attn_heads = 4;
  c.note_window = 4;
  c.pool_capacity = 5;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  int64_t B = 2, T = 48;
  unsigned seed = 11;
  double density = 0.7, perturb = 1.0;
  int threads = 1;
  for (int i = 2; i < argc; ++i) {
    const char* eq = std::strchr(argv[i], '=');
    if (!eq) {
      std::fprintf(stderr, "dump_grads: expected key=value, got %s\n", argv[i]);
      return 2;
    }
    const std::string key(argv[i], eq - argv[i]);
    const char* v = eq + 1;
    if (key == "policy") {
      c.pool_policy = !std::strcmp(v, "FIFO") ? memmamba::PoolPolicy::kFifo
                                              : memmamba::PoolPolicy::kPriority;
    } else if (key == "window") {
      c.note_window = std::atoi(v);
    } else if (key == "fusion") {
      c.fusion = !std::strcmp(v, "GATED")      ? memmamba::Fusion::kGated
                 : !std::strcmp(v, "RESIDUAL") ? memmamba::Fusion::kResidual
                                               : memmamba::Fusion::kWeighted;
    } else if (key == "cross") {
      c.cross_layer_period = std::atoi(v);
    } else if (key == "span") {
      c.cross_layer_span = std::atoi(v);
    } else if (key == "capacity") {
      c.pool_capacity = std::atoi(v);
    } else if (key == "gate") {
      c.gate_threshold = static_cast<float>(std::atof(v));
    } else if (key == "tie") {
      c.tie_embeddings = std::atoi(v) != 0;
    } else if (key == "T") {
      T = std::atoi(v);
    } else if (key == "B") {
      B = std::atoi(v);
    } else if (key == "seed") {
      seed = static_cast<unsigned>(std::atoi(v));
    } else if (key == "density") {
      density = std::atof(v);
    } else if (key == "perturb") {
      perturb = std::atof(v);
    } else if (key == "threads") {
      threads = std::atoi(v);
    } else {
      std::fprintf(stderr, "dump_grads: unknown key %s\n", key.c_str());
      return 2;
    }
  }
  if (B < 1 || T < 2) {
    std::fprintf(stderr, "dump_grads: need B >= 1 and T >= 2\n");
    return 2;
  }

  // The model: fresh weights from `seed`, moved away from init, then saved
  // and loaded back, so the library and the reference read the same file.
  memmamba::ModelOptions options;
  options.n_threads = threads;
  auto fresh = memmamba::Model::Create(c, seed, options);
  if (!fresh.ok()) return Fail("Model::Create", fresh.status());
  const memmamba::ModelConfig config = (*fresh)->config();
  memmamba::ModelWeights weights = (*fresh)->weights();
  Rng rng(seed * 0x100000001B3ull + 7);
  std::vector<memmamba::TensorToWrite> tensors;
  for (const ParamRef& p : memmamba::ListParams(config, &weights)) {
    Perturb(p, perturb, &rng);
    memmamba::TensorToWrite t;
    t.name = p.name;
    t.shape = p.shape;
    t.data = Data(p);
    t.nbytes = static_cast<size_t>(p.numel()) * sizeof(float);
    tensors.push_back(std::move(t));
  }
  const std::string model_path = dir + "/model.safetensors";
  absl::Status st = memmamba::WriteSafetensorsFile(model_path, tensors, config.ToMetadata());
  if (!st.ok()) return Fail("writing the model", st);
  auto model = memmamba::Model::Load(model_path, options);
  if (!model.ok()) return Fail("Model::Load", model.status());

  // Tokens and mask.
  std::vector<int32_t> tokens(static_cast<size_t>(B * T));
  std::vector<uint8_t> mask(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int32_t>(rng.Next() % static_cast<uint64_t>(config.vocab_size));
    mask[i] = rng.Uniform() < density ? 1 : 0;
  }
  mask[1] = 1;  // at least one target
  char shape[64];
  std::snprintf(shape, sizeof shape, "%" PRId64 " %" PRId64 "\n", B, T);
  if (!WriteFile(dir, "tokens.i32", tokens.data(), tokens.size() * sizeof(int32_t)) ||
      !WriteFile(dir, "mask.u8", mask.data(), mask.size()) ||
      !WriteFile(dir, "shape.txt", shape, std::strlen(shape))) {
    return 1;
  }

  // The gradients.
  memmamba::Batch batch;
  batch.tokens = tokens.data();
  batch.B = B;
  batch.T = T;
  batch.mask = mask.data();
  memmamba::BatchStats stats;
  memmamba::Gradients grads;
  st = memmamba::ComputeGradients(**model, batch, memmamba::GradientOptions(), &stats, &grads);
  if (!st.ok()) return Fail("ComputeGradients", st);

  memmamba::ModelWeights names_only = (*model)->weights();
  const std::vector<ParamRef> params = memmamba::ListParams(config, &names_only);
  if (grads.size() != params.size()) {
    std::fprintf(stderr, "dump_grads: %zu gradients for %zu parameters\n", grads.size(),
                 params.size());
    return 1;
  }
  tensors.clear();
  for (size_t i = 0; i < params.size(); ++i) {
    if (grads[i].size() != static_cast<size_t>(params[i].numel())) {
      std::fprintf(stderr, "dump_grads: gradient of %s has %zu values, expected %" PRId64 "\n",
                   params[i].name.c_str(), grads[i].size(), params[i].numel());
      return 1;
    }
    memmamba::TensorToWrite t;
    t.name = params[i].name;
    t.shape = params[i].shape;
    t.data = grads[i].data();
    t.nbytes = grads[i].size() * sizeof(float);
    tensors.push_back(std::move(t));
  }
  st = memmamba::WriteSafetensorsFile(dir + "/grads.safetensors", tensors, {});
  if (!st.ok()) return Fail("writing the gradients", st);

  char line[128];
  std::snprintf(line, sizeof line, "%.17g %" PRId64 "\n", stats.loss(), stats.targets);
  std::string keep;
  for (float f : stats.keep_fraction) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.9g", keep.empty() ? "" : " ", f);
    keep += buf;
  }
  keep += "\n";
  if (!WriteFile(dir, "loss.txt", line, std::strlen(line)) ||
      !WriteFile(dir, "keep.txt", keep.data(), keep.size())) {
    return 1;
  }
  std::printf("dump_grads: B=%" PRId64 " T=%" PRId64 " loss %.9g over %" PRId64
              " targets, %zu tensors\n",
              B, T, stats.loss(), stats.targets, params.size());
  return 0;
}
