#include "train/eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/bf16.h"
#include "runtime/forward.h"
#include "runtime/session.h"
#include "runtime/state.h"

namespace memmamba {
namespace {

constexpr int64_t kGaps[3] = {2, 5, 10};
constexpr double kRidge = 1e-4;

absl::Status CheckTokens(const Model& model, const int32_t* tokens, int64_t n) {
  if (tokens == nullptr || n < 2) {
    return Error(ErrorCode::kInvalidArgument, "evaluation needs at least 2 tokens");
  }
  const int64_t V = model.config().vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) {
      return Errorf(ErrorCode::kTokenOutOfRange, "token ", tokens[i], " at index ", i,
                    " is outside [0, ", V, ")");
    }
  }
  return absl::OkStatus();
}

// Rows per forward call: about 4M floats of logits at most.
int64_t ChunkRows(int64_t V) {
  return std::clamp<int64_t>((int64_t{1} << 22) / V, 1, Session::kDefaultMaxChunk);
}

// log Σ exp(row) (double).
double LogSumExp(const float* row, int64_t V) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t v = 0; v < V; ++v) mx = std::max(mx, row[v]);
  double s = 0.0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v]) - mx);
  return mx + std::log(s);
}

// Solves (A + λI) X = Bm in place for symmetric positive definite A (n x n,
// double) by Cholesky; Bm is n x n. Returns false if A + λI is not positive
// definite (numerically).
bool CholeskySolve(std::vector<double> A, int64_t n, std::vector<double>* Bm) {
  for (int64_t i = 0; i < n; ++i) A[i * n + i] += kRidge;
  for (int64_t j = 0; j < n; ++j) {
    double d = A[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= A[j * n + k] * A[j * n + k];
    if (!(d > 0.0)) return false;
    d = std::sqrt(d);
    A[j * n + j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = A[i * n + j];
      for (int64_t k = 0; k < j; ++k) s -= A[i * n + k] * A[j * n + k];
      A[i * n + j] = s / d;
    }
  }
  std::vector<double>& X = *Bm;
  for (int64_t c = 0; c < n; ++c) {  // column by column: L y = b, Lᵀ x = y
    for (int64_t i = 0; i < n; ++i) {
      double s = X[i * n + c];
      for (int64_t k = 0; k < i; ++k) s -= A[i * n + k] * X[k * n + c];
      X[i * n + c] = s / A[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; --i) {
      double s = X[i * n + c];
      for (int64_t k = i + 1; k < n; ++k) s -= A[k * n + i] * X[k * n + c];
      X[i * n + c] = s / A[i * n + i];
    }
  }
  return true;
}

}  // namespace

absl::Status EvalLoss(const Model& model, const int32_t* tokens, int64_t n, int64_t context,
                      LossEval* out) {
  MM_RETURN_IF_ERROR(CheckTokens(model, tokens, n));
  if (context < 0) return Error(ErrorCode::kInvalidArgument, "context must be >= 0");
  const int64_t V = model.config().vocab_size;
  const int64_t piece = context == 0 ? n : context;
  const int64_t rows = ChunkRows(V);
  std::vector<float> logits(rows * V);
  Workspace ws;
  StreamState state;
  LossEval r;
  for (int64_t p0 = 0; p0 < n; p0 += piece) {
    const int64_t p1 = std::min(n, p0 + piece);
    state.Reset(model.config());
    StreamState* sp = &state;
    for (int64_t c0 = p0; c0 < p1; c0 += rows) {
      const int64_t len = std::min(rows, p1 - c0);
      Forward(model, &sp, 1, len, tokens + c0, LogitsMode::kAll, logits.data(), &ws);
      for (int64_t i = 0; i < len; ++i) {
        const int64_t j = c0 + i;
        if (j + 1 >= p1) break;
        const float* row = &logits[i * V];
        r.loss_sum += LogSumExp(row, V) - row[tokens[j + 1]];
        ++r.targets;
      }
    }
  }
  *out = r;
  return absl::OkStatus();
}

absl::Status EvalFidelity(const Model& model, const int32_t* tokens, int64_t n,
                          FidelityEval* out) {
  MM_RETURN_IF_ERROR(CheckTokens(model, tokens, n));
  const ModelConfig& c = model.config();
  const int64_t V = c.vocab_size, D = c.d_model, L = c.n_layer;
  Backend& be = model.backend();
  // The embedding as f32 [V, D].
  std::vector<float> emb(V * D);
  const Matrix& E = model.weights().embedding;
  if (E.is_bf16()) {
    cpu::ConvertBf16ToF32(E.bf16.data(), emb.data(), emb.size());
  } else {
    std::copy(E.f32.begin(), E.f32.end(), emb.begin());
  }
  const int64_t rows = ChunkRows(V);
  std::vector<float> logits(rows * V), hidden((L + 1) * rows * D), pred(rows * D);
  // Gram accumulators: XᵀX per layer 0..L, XᵀY per (l, gap).
  std::vector<std::vector<double>> gram(L + 1, std::vector<double>(D * D, 0.0));
  std::vector<std::vector<double>> cross(3 * (L + 1));
  for (int g = 0; g < 3; ++g) {
    for (int64_t l = 0; l + kGaps[g] <= L; ++l) cross[g * (L + 1) + l].assign(D * D, 0.0);
  }
  auto accumulate = [&](const float* X, const float* Y, int64_t m, std::vector<double>* acc) {
    be.GramAccumulate(X, Y, m, D, acc->data());  // XᵀY in double
  };
  Workspace ws;
  StreamState state;
  state.Reset(c);
  StreamState* sp = &state;
  double cos_sum = 0.0;
  int64_t targets = 0;
  for (int64_t c0 = 0; c0 < n; c0 += rows) {
    const int64_t len = std::min(rows, n - c0);
    Forward(model, &sp, 1, len, tokens + c0, LogitsMode::kAll, logits.data(), &ws,
            hidden.data());
    // ETMF: softmax rows, then t̂ = p·E.
    for (int64_t i = 0; i < len; ++i) {
      float* row = &logits[i * V];
      const double lse = LogSumExp(row, V);
      for (int64_t v = 0; v < V; ++v) row[v] = static_cast<float>(std::exp(row[v] - lse));
    }
    be.MatmulBackwardInput(logits.data(), len, V, emb.data(), V, D, pred.data(), D, false);
    for (int64_t i = 0; i < len; ++i) {
      const int64_t j = c0 + i;
      if (j + 1 >= n) break;
      const float* t = &emb[tokens[j + 1] * D];
      const float* p = &pred[i * D];
      double dot = 0.0, nt = 0.0, np = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        dot += static_cast<double>(t[d]) * p[d];
        nt += static_cast<double>(t[d]) * t[d];
        np += static_cast<double>(p[d]) * p[d];
      }
      cos_sum += dot / (std::sqrt(nt * np) + 1e-12);
      ++targets;
    }
    for (int64_t l = 0; l <= L; ++l) {
      const float* X = &hidden[l * len * D];
      accumulate(X, X, len, &gram[l]);
      for (int g = 0; g < 3; ++g) {
        if (l + kGaps[g] > L) continue;
        accumulate(X, &hidden[(l + kGaps[g]) * len * D], len, &cross[g * (L + 1) + l]);
      }
    }
  }
  FidelityEval r;
  r.tokens = n;
  r.etmf = targets ? cos_sum / targets : 0.0;
  for (int g = 0; g < 3; ++g) {
    const int64_t G = kGaps[g];
    if (G > L) {
      r.eclmf[g] = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t l = 0; l + G <= L; ++l) {
      const std::vector<double>& xx = gram[l];
      const std::vector<double>& xy = cross[g * (L + 1) + l];
      const std::vector<double>& yy = gram[l + G];
      std::vector<double> W = xy;
      double score = std::numeric_limits<double>::quiet_NaN();
      if (CholeskySolve(xx, D, &W)) {
        // ‖Y − XW‖² = tr(YᵀY) − 2·tr(WᵀXᵀY) + tr(WᵀXᵀXW).
        double trace_yy = 0.0, trace_x = 0.0, cross_term = 0.0, quad = 0.0;
        for (int64_t i = 0; i < D; ++i) {
          trace_yy += yy[i * D + i];
          trace_x += xx[i * D + i];
        }
        for (int64_t i = 0; i < D * D; ++i) cross_term += W[i] * xy[i];
        std::vector<double> xw(D * D, 0.0);  // XᵀX·W
        for (int64_t i = 0; i < D; ++i) {
          for (int64_t k = 0; k < D; ++k) {
            const double a = xx[i * D + k];
            for (int64_t j = 0; j < D; ++j) xw[i * D + j] += a * W[k * D + j];
          }
        }
        for (int64_t i = 0; i < D * D; ++i) quad += W[i] * xw[i];
        const double resid = std::max(0.0, trace_yy - 2.0 * cross_term + quad);
        score = 1.0 - std::sqrt(resid) / (std::sqrt(trace_x) + 1e-6);
      }
      if (std::isnan(score)) continue;  // this layer's regression did not solve
      sum += score;
      ++count;
    }
    r.eclmf[g] = count ? sum / count : std::numeric_limits<double>::quiet_NaN();
  }
  *out = r;
  return absl::OkStatus();
}

}  // namespace memmamba
