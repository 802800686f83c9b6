#include "model/weights.h"

#include <cmath>
#include <cstring>

#include "backend/cpu/bf16.h"

namespace memmamba {
namespace {

// A small portable generator: splitmix64 seeded from (seed, tensor name), so
// initial weights are the same on every platform and standard library.
class Rng {
 public:
  Rng(uint64_t seed, const std::string& name) : state_(seed ^ 0x9E3779B97F4A7C15ull) {
    for (unsigned char c : name) state_ = (state_ ^ c) * 0x100000001B3ull;
    Next();
  }
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1).
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  double Normal() {  // Box-Muller
    double u1 = Uniform(), u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

void InitValues(const ModelConfig& c, const ParamRef& p, uint64_t seed, float* out) {
  Rng rng(seed, p.name);
  const int64_t n = p.numel();
  switch (p.init) {
    case InitKind::kNormal:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(0.02 * rng.Normal());
      break;
    case InitKind::kOnes:
      for (int64_t i = 0; i < n; ++i) out[i] = 1.0f;
      break;
    case InitKind::kZeros:
      for (int64_t i = 0; i < n; ++i) out[i] = 0.0f;
      break;
    case InitKind::kAlpha:
      for (int64_t i = 0; i < n; ++i) out[i] = 0.1f;
      break;
    case InitKind::kScoreBias:
      for (int64_t i = 0; i < n; ++i) out[i] = 2.0f;
      break;
    case InitKind::kALog:
      for (int64_t i = 0; i < n; ++i) {
        out[i] = static_cast<float>(std::log(static_cast<double>(i % c.d_state + 1)));
      }
      break;
    case InitKind::kDtBias: {
      const double lo = std::log(1e-3), hi = std::log(0.1);
      for (int64_t i = 0; i < n; ++i) {
        double dt = std::exp(lo + rng.Uniform() * (hi - lo));
        if (dt < 1e-4) dt = 1e-4;
        out[i] = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // softplus^-1
      }
      break;
    }
    case InitKind::kDtWeight: {
      const double bound = 1.0 / std::sqrt(static_cast<double>(c.dt_rank));
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
      break;
    }
    case InitKind::kConv: {
      const double bound = 1.0 / std::sqrt(static_cast<double>(c.d_conv));
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
      break;
    }
  }
}

void AllocRead(const ModelConfig& c, ReadWeights* r) {
  const int64_t D = c.d_model, S = c.summary_dim;
  r->q.Allocate(S, D);
  r->k.Allocate(S, S);
  r->v.Allocate(S, S);
  r->o.Allocate(D, S);
  r->gate.assign(D, 0.0f);
  r->gate_bias = 0.0f;
  r->alpha.assign(c.fusion == Fusion::kWeighted ? D : 0, 0.0f);
  r->fuse.assign(c.fusion == Fusion::kGated ? D : 0, 0.0f);
}

}  // namespace

void AllocateWeights(const ModelConfig& c, ModelWeights* w) {
  const int64_t V = c.vocab_size, D = c.d_model, E = c.d_inner(), N = c.d_state,
                R = c.dt_rank, K = c.d_conv, S = c.summary_dim;
  w->embedding.Allocate(V, D);
  w->norm_f.assign(D, 0.0f);
  if (c.tie_embeddings) {
    w->lm_head = Matrix();
  } else {
    w->lm_head.Allocate(V, D);
  }
  w->layers.assign(c.n_layer, LayerWeights());
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerWeights& L = w->layers[l];
    L.norm.assign(D, 0.0f);
    L.in_proj.Allocate(2 * E, D);
    L.conv_w.assign(E * K, 0.0f);
    L.conv_b.assign(E, 0.0f);
    L.x_proj.Allocate(R + 2 * N, E);
    L.dt_proj.Allocate(E, R);
    L.dt_bias.assign(E, 0.0f);
    L.A_log.assign(E * N, 0.0f);
    L.D.assign(E, 0.0f);
    L.out_proj.Allocate(D, E);
    L.note_norm.assign(D, 0.0f);
    L.note_summary.Allocate(S, D);
    L.note_score.assign(D, 0.0f);
    L.note_score_bias = 0.0f;
    AllocRead(c, &L.tok);
    L.has_lay = c.HasCrossLayerRead(l);
    if (L.has_lay) {
      AllocRead(c, &L.lay);
    } else {
      L.lay = ReadWeights();
    }
    L.A.assign(E * N, 0.0f);
  }
}

double CountParameters(const ModelConfig& c) {
  const double V = static_cast<double>(c.vocab_size), D = static_cast<double>(c.d_model),
               E = static_cast<double>(c.d_inner()), N = static_cast<double>(c.d_state),
               K = static_cast<double>(c.d_conv), R = static_cast<double>(c.dt_rank),
               S = static_cast<double>(c.summary_dim);
  const double fuse = c.fusion == Fusion::kResidual ? 0.0 : D;
  const double read = S * D + 2 * S * S + D * S + D + 1 + fuse;
  const double mixer = D + 2 * E * D + E * K + E + (R + 2 * N) * E + E * R + E + E * N + E + D * E;
  const double notes = D + S * D + D + 1;
  double n = V * D + D + (c.tie_embeddings ? 0.0 : V * D);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    n += mixer + notes + read + (c.HasCrossLayerRead(l) ? read : 0.0);
  }
  return n;
}

std::vector<ParamRef> ListParams(const ModelConfig& c, ModelWeights* w) {
  const int64_t D = c.d_model, E = c.d_inner(), N = c.d_state, K = c.d_conv;
  std::vector<ParamRef> out;
  auto mat = [&](std::string name, Matrix* m, InitKind init, bool memory) {
    ParamRef p;
    p.name = std::move(name);
    p.shape = {m->rows, m->cols};
    p.init = init;
    p.memory = memory;
    p.matrix = m;
    out.push_back(std::move(p));
  };
  auto vec = [&](std::string name, std::vector<float>* v, std::vector<int64_t> shape,
                 InitKind init, bool decay, bool memory) {
    ParamRef p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.init = init;
    p.weight_decay = decay;
    p.memory = memory;
    p.vector = v;
    out.push_back(std::move(p));
  };
  auto scalar = [&](std::string name, float* s, InitKind init, bool memory) {
    ParamRef p;
    p.name = std::move(name);
    p.shape = {1};
    p.init = init;
    p.weight_decay = false;
    p.memory = memory;
    p.scalar = s;
    out.push_back(std::move(p));
  };
  auto read = [&](const std::string& prefix, ReadWeights* r) {
    mat(prefix + "q.weight", &r->q, InitKind::kNormal, true);
    mat(prefix + "k.weight", &r->k, InitKind::kNormal, true);
    mat(prefix + "v.weight", &r->v, InitKind::kNormal, true);
    mat(prefix + "o.weight", &r->o, InitKind::kNormal, true);
    vec(prefix + "gate.weight", &r->gate, {D}, InitKind::kNormal, true, true);
    scalar(prefix + "gate.bias", &r->gate_bias, InitKind::kNormal, true);
    if (c.fusion == Fusion::kWeighted) {
      vec(prefix + "alpha", &r->alpha, {D}, InitKind::kAlpha, false, true);
    } else if (c.fusion == Fusion::kGated) {
      vec(prefix + "fuse.weight", &r->fuse, {D}, InitKind::kZeros, true, true);
    }
  };
  mat("embedding.weight", &w->embedding, InitKind::kNormal, false);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerWeights& L = w->layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    vec(p + "norm.weight", &L.norm, {D}, InitKind::kOnes, false, false);
    mat(p + "mixer.in_proj.weight", &L.in_proj, InitKind::kNormal, false);
    vec(p + "mixer.conv1d.weight", &L.conv_w, {E, K}, InitKind::kConv, true, false);
    vec(p + "mixer.conv1d.bias", &L.conv_b, {E}, InitKind::kConv, false, false);
    mat(p + "mixer.x_proj.weight", &L.x_proj, InitKind::kNormal, false);
    mat(p + "mixer.dt_proj.weight", &L.dt_proj, InitKind::kDtWeight, false);
    vec(p + "mixer.dt_proj.bias", &L.dt_bias, {E}, InitKind::kDtBias, false, false);
    vec(p + "mixer.A_log", &L.A_log, {E, N}, InitKind::kALog, false, false);
    vec(p + "mixer.D", &L.D, {E}, InitKind::kOnes, false, false);
    mat(p + "mixer.out_proj.weight", &L.out_proj, InitKind::kNormal, false);
    vec(p + "note.norm.weight", &L.note_norm, {D}, InitKind::kOnes, false, true);
    mat(p + "note.summary.weight", &L.note_summary, InitKind::kNormal, true);
    vec(p + "note.score.weight", &L.note_score, {D}, InitKind::kNormal, true, true);
    scalar(p + "note.score.bias", &L.note_score_bias, InitKind::kScoreBias, true);
    read(p + "tok.", &L.tok);
    if (L.has_lay) read(p + "lay.", &L.lay);
  }
  vec("norm_f.weight", &w->norm_f, {D}, InitKind::kOnes, false, false);
  if (!c.tie_embeddings) mat("lm_head.weight", &w->lm_head, InitKind::kNormal, false);
  return out;
}

void InitializeWeights(const ModelConfig& c, uint64_t seed,
                       const std::function<bool(const ParamRef&)>& select,
                       ModelWeights* w) {
  for (const ParamRef& p : ListParams(c, w)) {
    if (!select(p)) continue;
    if (p.matrix) {
      InitValues(c, p, seed, p.matrix->f32.data());
    } else if (p.vector) {
      InitValues(c, p, seed, p.vector->data());
    } else {
      InitValues(c, p, seed, p.scalar);
    }
  }
  PrepareWeights(c, w);
}

void PrepareWeights(const ModelConfig& c, ModelWeights* w) {
  const int64_t E = c.d_inner(), N = c.d_state;
  for (LayerWeights& L : w->layers) {
    L.A.resize(L.A_log.size());
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t n = 0; n < N; ++n) L.A[n * E + e] = -std::exp(L.A_log[e * N + n]);
    }
  }
}

void ConvertMatricesToBf16(const ModelConfig& c, ModelWeights* w) {
  for (const ParamRef& p : ListParams(c, w)) {
    if (!p.matrix || p.matrix->is_bf16()) continue;
    Matrix& m = *p.matrix;
    m.bf16.resize(m.f32.size());
    cpu::ConvertF32ToBf16(m.f32.data(), m.bf16.data(), m.f32.size());
    LargeVector<float>().swap(m.f32);
  }
  for (LayerWeights& L : w->layers) {
    for (ReadWeights* rw : {&L.tok, &L.lay}) {
      for (auto [m, wide] : {std::pair(&rw->k, &rw->k_wide), std::pair(&rw->v, &rw->v_wide)}) {
        wide->resize(m->bf16.size());
        cpu::ConvertBf16ToF32(m->bf16.data(), wide->data(), static_cast<int64_t>(m->bf16.size()));
      }
    }
  }
}

absl::Status CheckFinite(const ModelConfig& c, ModelWeights* w) {
  for (const ParamRef& p : ListParams(c, w)) {
    const float* data = p.matrix ? p.matrix->f32.data()
                        : p.vector ? p.vector->data()
                                   : p.scalar;
    int64_t n = p.matrix && p.matrix->is_bf16() ? 0 : p.numel();
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(data[i])) {
        return Errorf(ErrorCode::kNonFinite, "tensor ", p.name, " holds a non-finite value (",
                      data[i], ") at flat index ", i);
      }
    }
    if (p.matrix && p.matrix->is_bf16()) {
      for (size_t i = 0; i < p.matrix->bf16.size(); ++i) {
        if ((p.matrix->bf16[i] & 0x7F80u) == 0x7F80u) {
          return Errorf(ErrorCode::kNonFinite, "tensor ", p.name,
                        " holds a non-finite bf16 value at flat index ", i);
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace memmamba
