// The CPU backend: the reference implementation of every op of
// src/backend/backend.h (the math of each op is written there, DESIGN 2.3).
//
// Threads: OpenMP with the backend's own thread budget on each parallel
// region; matrix products go through OpenBLAS (src/backend/cpu/matmul.h).
// Results never depend on the thread count: work is split over independent
// rows, channels or streams, never over a reduction.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/vec_math.h"

namespace memmamba {
namespace {

using cpu::Sigmoid;
using cpu::Silu;
using cpu::Softplus;

// Channels per scan task: a multiple of 8 that keeps a task's A, D and state
// rows in L1/L2 while giving both cores work at E = 512.
constexpr int64_t kScanBlock = 64;

// One position of the scan for channels [e0, e1) (DESIGN 2.3 step 4):
// Δ = softplus(dt + bias); s ← exp(Δ·A)·s + Δ·B·ξc; y = (Σ_n s·C + D·ξc)·SiLU(z).
// State and A are [N, E], so eight channels run in one vector and the sum
// over n needs no horizontal reduction.
void ScanPosition(const ScanArgs& a, int64_t t, int64_t e0, int64_t e1) {
  const int64_t N = a.N, E = a.E;
  const float* xc = a.xc + t * E;
  const float* dt = a.dt + t * E;
  const float* B = a.B + t * a.ld_bc;
  const float* C = a.C + t * a.ld_bc;
  const float* z = a.z + t * a.ld_z;
  float* y = a.y + t * E;
  int64_t e = e0;
#if MM_CPU_AVX2
  for (; e + 8 <= e1; e += 8) {
    const __m256 delta =
        cpu::Softplus8(_mm256_add_ps(_mm256_loadu_ps(dt + e), _mm256_loadu_ps(a.dt_bias + e)));
    const __m256 u = _mm256_loadu_ps(xc + e);
    const __m256 du = _mm256_mul_ps(delta, u);
    __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(a.D + e), u);
    for (int64_t n = 0; n < N; ++n) {
      float* s = a.state + n * E + e;
      const __m256 dA = cpu::Exp8(_mm256_mul_ps(delta, _mm256_loadu_ps(a.A + n * E + e)));
      const __m256 vs = _mm256_fmadd_ps(dA, _mm256_loadu_ps(s),
                                        _mm256_mul_ps(du, _mm256_set1_ps(B[n])));
      _mm256_storeu_ps(s, vs);
      acc = _mm256_fmadd_ps(vs, _mm256_set1_ps(C[n]), acc);
    }
    _mm256_storeu_ps(y + e, _mm256_mul_ps(acc, cpu::Silu8(_mm256_loadu_ps(z + e))));
  }
#endif
  for (; e < e1; ++e) {
    const float delta = Softplus(dt[e] + a.dt_bias[e]);
    const float u = xc[e];
    const float du = delta * u;
    float acc = a.D[e] * u;
    for (int64_t n = 0; n < N; ++n) {
      float* s = a.state + n * E + e;
      *s = std::exp(delta * a.A[n * E + e]) * *s + du * B[n];
      acc += *s * C[n];
    }
    y[e] = acc * Silu(z[e]);
  }
}

void ConvChannels(const ConvArgs& a, int64_t e0, int64_t e1) {
  const int64_t K = a.K, E = a.E;
  for (int64_t t = 0; t < a.T; ++t) {
    float* out = a.out + t * E;
    for (int64_t e = e0; e < e1; ++e) out[e] = a.b[e];
    for (int64_t k = 0; k < K; ++k) {
      // Input position t - K + 1 + k: from the state when negative.
      const int64_t src = t - K + 1 + k;
      const float* in = src >= 0 ? a.xi + src * a.ld_xi : a.state + (K - 1 + src) * E;
      for (int64_t e = e0; e < e1; ++e) out[e] += a.w[e * K + k] * in[e];
    }
    int64_t e = e0;
#if MM_CPU_AVX2
    for (; e + 8 <= e1; e += 8) _mm256_storeu_ps(out + e, cpu::Silu8(_mm256_loadu_ps(out + e)));
#endif
    for (; e < e1; ++e) out[e] = Silu(out[e]);
  }
  // The new state: the last K-1 inputs (from the block and the old state).
  if (K > 1) {
    for (int64_t j = 0; j < K - 1; ++j) {
      // State row j holds position T - (K-1) + j.
      const int64_t src = a.T - (K - 1) + j;
      if (src >= 0) continue;  // filled below, after old rows are consumed
      const float* in = a.state + (K - 1 + src) * E;
      std::memmove(a.state + j * E + e0, in + e0, (e1 - e0) * sizeof(float));
    }
    for (int64_t j = 0; j < K - 1; ++j) {
      const int64_t src = a.T - (K - 1) + j;
      if (src < 0) continue;
      std::memcpy(a.state + j * E + e0, a.xi + src * a.ld_xi + e0, (e1 - e0) * sizeof(float));
    }
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int n_threads) : n_threads_(std::max(1, n_threads)) {}

  const char* name() const override { return "cpu"; }

  void Matmul(const float* x, int64_t M, int64_t ldx, const WeightRef& w, float* y,
              int64_t ldy, bool accumulate) override {
    if (M == 0) return;
    if (w.bf16) {
      cpu::MatmulBf16(x, M, w.cols, ldx, w.bf16, w.rows, y, ldy, accumulate, n_threads_);
    } else {
      cpu::MatmulF32(x, M, w.cols, ldx, w.f32, w.rows, y, ldy, accumulate, n_threads_);
    }
  }

  void RmsNorm(const float* x, int64_t M, int64_t D, const float* w, float eps,
               float* out) override {
    const int threads = M * D >= (1 << 16) ? n_threads_ : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * D;
      float* o = out + m * D;
      double ss = 0.0;  // double: the norm of wide rows loses nothing
      for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(xr[d]) * xr[d];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / D + eps));
      for (int64_t d = 0; d < D; ++d) o[d] = xr[d] * inv * w[d];
    }
  }

  void ConvSilu(const ConvArgs* streams, int64_t n) override {
    if (n == 0) return;
    const int64_t E = streams[0].E;
    const int64_t blocks = (E + kScanBlock - 1) / kScanBlock;
    const int64_t tasks = n * blocks;
    const int threads = streams[0].T * E * n >= 4096 ? n_threads_ : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const ConvArgs& a = streams[task / blocks];
      const int64_t e0 = (task % blocks) * kScanBlock;
      ConvChannels(a, e0, std::min(E, e0 + kScanBlock));
    }
  }

  void SelectiveScan(const ScanArgs* streams, int64_t n) override {
    if (n == 0) return;
    const int64_t E = streams[0].E;
    const int64_t blocks = (E + kScanBlock - 1) / kScanBlock;
    const int64_t tasks = n * blocks;
    const int threads = streams[0].T * E * streams[0].N * n >= 8192 ? n_threads_ : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const ScanArgs& a = streams[task / blocks];
      const int64_t e0 = (task % blocks) * kScanBlock;
      const int64_t e1 = std::min(E, e0 + kScanBlock);
      for (int64_t t = 0; t < a.T; ++t) ScanPosition(a, t, e0, e1);
    }
  }

  void PoolAttend(const float* q, int64_t m, const float* const* keys,
                  const float* const* values, int64_t S, int64_t H, float* o) override {
    const int64_t dh = S / H;
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    // The model (and so its backend) is shared by threads: scratch is per thread.
    thread_local std::vector<float> scores;  // [H, m]
    scores.resize(H * m);
    // Scores: each key row is read once for all heads.
    for (int64_t j = 0; j < m; ++j) {
      const float* k = keys[j];
      for (int64_t h = 0; h < H; ++h) {
        const int64_t off = h * dh;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t d = 0; d < dh; ++d) dot += q[off + d] * k[off + d];
        scores[h * m + j] = dot * scale;
      }
    }
    // Softmax over the entries, per head.
    for (int64_t h = 0; h < H; ++h) {
      float* sc = &scores[h * m];
      float mx = -INFINITY;
      for (int64_t j = 0; j < m; ++j) mx = std::max(mx, sc[j]);
      float sum = 0.0f;
      for (int64_t j = 0; j < m; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < m; ++j) sc[j] *= inv;
    }
    // o_h = Σ_j p_hj v_jh: each value row is read once for all heads.
    std::fill(o, o + S, 0.0f);
    for (int64_t j = 0; j < m; ++j) {
      const float* v = values[j];
      for (int64_t h = 0; h < H; ++h) {
        const float p = scores[h * m + j];
        const int64_t off = h * dh;
#pragma omp simd
        for (int64_t d = 0; d < dh; ++d) o[off + d] += p * v[off + d];
      }
    }
  }

 private:
  int n_threads_;
};

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(int n_threads) {
  return std::make_unique<CpuBackend>(n_threads);
}

}  // namespace memmamba
