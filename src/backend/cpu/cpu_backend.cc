// The CPU backend: the reference implementation of every op of
// src/backend/backend.h (the math of each op is written there, DESIGN 2.3).
//
// Threads: OpenMP with the backend's own thread budget on each parallel
// region; matrix products go through OpenBLAS (src/backend/cpu/matmul.h).
// Results never depend on the thread count: work is split over independent
// rows, channels or streams, never over a reduction.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/scan_kernel.h"
#include "backend/cpu/vec_math.h"

namespace memmamba {
namespace {

using cpu::Sigmoid;
using cpu::Silu;
using cpu::Softplus;

// Channels per scan task: a multiple of 8 that keeps a task's A, D and state
// rows in L1/L2 while giving both cores work at E = 512.
constexpr int64_t kScanBlock = 64;
// Multiply-adds (T·E·N over the streams) from which a scan takes every thread.
constexpr int64_t kMinParallelScanWork = 8192;
// Bytes of Wq and Wo (together) a thread of a one-row read must have to be
// worth waking (PoolReadRow).
constexpr int64_t kMinReadBytesPerThread = 96 * 1024;

// Softmax of each of `rows` rows of m scores, in place.
void SoftmaxRows(float* scores, int64_t rows, int64_t m) {
  for (int64_t h = 0; h < rows; ++h) {
    float* sc = scores + h * m;
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

// One note's share of a read's backward over dh values: dq += ds·k,
// dk += ds·q, dv += p·do. Each element is one fused multiply-add, so the
// vector and scalar paths give the same bits; the pointers are the caller's
// separate buffers (the compiler cannot know that, hence the intrinsics).
inline void AccumulateReadGrads(float ds, float p, const float* k, const float* q,
                                const float* dout, int64_t dh, float* dq, float* dk,
                                float* dv) {
  int64_t d = 0;
#if MM_CPU_AVX2
  const __m256 vds = _mm256_set1_ps(ds), vp = _mm256_set1_ps(p);
  for (; d + 8 <= dh; d += 8) {
    _mm256_storeu_ps(dq + d, _mm256_fmadd_ps(vds, _mm256_loadu_ps(k + d), _mm256_loadu_ps(dq + d)));
    _mm256_storeu_ps(dk + d, _mm256_fmadd_ps(vds, _mm256_loadu_ps(q + d), _mm256_loadu_ps(dk + d)));
    _mm256_storeu_ps(dv + d,
                     _mm256_fmadd_ps(vp, _mm256_loadu_ps(dout + d), _mm256_loadu_ps(dv + d)));
  }
#endif
  for (; d < dh; ++d) {
    dq[d] = std::fma(ds, k[d], dq[d]);
    dk[d] = std::fma(ds, q[d], dk[d]);
    dv[d] = std::fma(p, dout[d], dv[d]);
  }
}

// a·b rounded to float before any addition that follows: never fused into a
// multiply-add, so a sum of these has the bits of Dot8Rows' lanes.
inline float RoundedProduct(float a, float b) {
  float p = a * b;
#if defined(__x86_64__)
  asm("" : "+x"(p));
#endif
  return p;
}

#if MM_CPU_AVX2
// r[i] (row i, 8 floats) → r[d] (lane i = row i's element d).
inline void Transpose8x8(__m256 (&r)[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// out[i] = Σ_d a[d]·rows[i][d] for eight rows of n floats (n % 8 == 0), a
// lane a row. Each lane computes as the loop `dot += a[d] * row[d]` does
// when the compiler multiplies eight at a time and adds one by one (every
// product rounded, then added in order from d = 0): the same bits, with the
// eight rows' additions side by side instead of one chain per row.
inline void Dot8Rows(const float* a, const float* const* rows, int64_t n, float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t d0 = 0; d0 < n; d0 += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(rows[i] + d0);
    Transpose8x8(r);
    for (int d = 0; d < 8; ++d) {
      __m256 prod = _mm256_mul_ps(_mm256_set1_ps(a[d0 + d]), r[d]);
      asm("" : "+x"(prod));  // the product stays rounded: no fused multiply-add
      acc = _mm256_add_ps(acc, prod);
    }
  }
  _mm256_storeu_ps(out, acc);
}
#endif

// d SiLU(x) / dx = σ(x)·(1 + x·(1 − σ(x))).
inline float SiluGrad(float x) {
  const float s = Sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

// The scan backward for channels [e0, e1) of one stream (ScanBackwardArgs),
// chunk by chunk from the last: the chunk's states are recomputed from its
// checkpoint into `states` ([kScanChunk, N, nb]), then walked backwards with
// the gradient carried into the previous state in `carry` ([N, nb]).
// dB / dC of these channels go to part_b / part_c ([T, N]): the caller sums
// the channel blocks in a fixed order.
void ScanBackwardChannels(const ScanBackwardArgs& g, int64_t e0, int64_t e1, float* states,
                          float* carry, float* deltas, float* part_b, float* part_c) {
  const ScanArgs& a = g.fwd;
  const int64_t N = a.N, E = a.E, T = a.T, nb = e1 - e0;
  std::fill(carry, carry + N * nb, 0.0f);
  std::fill(part_b, part_b + T * N, 0.0f);
  std::fill(part_c, part_c + T * N, 0.0f);
  std::vector<float> ddelta(nb), du(nb), dyy(nb);
  for (int64_t c = (T + kScanChunk - 1) / kScanChunk - 1; c >= 0; --c) {
    const int64_t t0 = c * kScanChunk, t1 = std::min(T, t0 + kScanChunk);
    const float* cp = g.checkpoints + c * N * E;
    // Recompute the states after each position of the chunk.
    for (int64_t t = t0; t < t1; ++t) {
      float* st = states + (t - t0) * N * nb;
      const float* prev = t > t0 ? st - N * nb : nullptr;
      const float* B = a.B + t * a.ld_bc;
      float* dl = deltas + (t - t0) * nb;
      for (int64_t i = 0; i < nb; ++i) dl[i] = Softplus(a.dt[t * E + e0 + i] + a.dt_bias[e0 + i]);
      for (int64_t n = 0; n < N; ++n) {
        const float* A = a.A + n * E + e0;
        const float* sp = prev ? prev + n * nb : cp + n * E + e0;
        const float* u = a.xc + t * E + e0;
        for (int64_t i = 0; i < nb; ++i) {
          st[n * nb + i] = std::exp(dl[i] * A[i]) * sp[i] + dl[i] * B[n] * u[i];
        }
      }
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const float* st = states + (t - t0) * N * nb;
      const float* B = a.B + t * a.ld_bc;
      const float* C = a.C + t * a.ld_bc;
      const float* u = a.xc + t * E + e0;
      const float* z = a.z + t * a.ld_z + e0;
      const float* dy = g.dy + t * E + e0;
      const float* dl = deltas + (t - t0) * nb;
      float* dz = g.dz + t * g.ld_dz + e0;
      // y = yy·SiLU(z), yy = Σ_n s·C + D·u.
      for (int64_t i = 0; i < nb; ++i) {
        float yy = a.D[e0 + i] * u[i];
        for (int64_t n = 0; n < N; ++n) yy += st[n * nb + i] * C[n];
        dz[i] = dy[i] * yy * SiluGrad(z[i]);
        dyy[i] = dy[i] * Silu(z[i]);
        g.dD[e0 + i] += dyy[i] * u[i];
        du[i] = dyy[i] * a.D[e0 + i];
        ddelta[i] = 0.0f;
      }
      for (int64_t n = 0; n < N; ++n) {
        const float* A = a.A + n * E + e0;
        const float* sprev = t > t0 ? st - N * nb + n * nb : cp + n * E + e0;
        const float* s_t = st + n * nb;
        float* cr = carry + n * nb;
        float* dA = g.dA + n * E + e0;
        float db = 0.0f, dc = 0.0f;
        for (int64_t i = 0; i < nb; ++i) {
          const float gs = cr[i] + dyy[i] * C[n];
          dc += dyy[i] * s_t[i];
          const float decay = std::exp(dl[i] * A[i]);
          const float d_decay = gs * sprev[i];
          ddelta[i] += d_decay * decay * A[i] + gs * B[n] * u[i];
          dA[i] += d_decay * decay * dl[i];
          db += gs * dl[i] * u[i];
          du[i] += gs * dl[i] * B[n];
          cr[i] = gs * decay;
        }
        part_b[t * N + n] += db;
        part_c[t * N + n] += dc;
      }
      for (int64_t i = 0; i < nb; ++i) {
        const float ddt = ddelta[i] * Sigmoid(a.dt[t * E + e0 + i] + a.dt_bias[e0 + i]);
        g.ddt[t * E + e0 + i] = ddt;
        g.ddt_bias[e0 + i] += ddt;
        g.dxc[t * E + e0 + i] = du[i];
      }
    }
  }
}

#if MM_CPU_AVX2
inline __m256 Sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, cpu::Exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// ScanBackwardChannels for nb a multiple of 8, eight channels per vector; the
// decays exp(Δ·A) of the recomputation are kept ([kScanChunk, N, nb] in
// `decays`) so the backward walk needs no exp of its own.
void ScanBackwardChannels8(const ScanBackwardArgs& g, int64_t e0, int64_t e1, float* states,
                           float* decays, float* carry, float* deltas, float* part_b,
                           float* part_c) {
  const ScanArgs& a = g.fwd;
  const int64_t N = a.N, E = a.E, T = a.T, nb = e1 - e0;
  std::fill(carry, carry + N * nb, 0.0f);
  std::fill(part_b, part_b + T * N, 0.0f);
  std::fill(part_c, part_c + T * N, 0.0f);
  std::vector<float> ddelta(nb), du(nb), dyy(nb);
  for (int64_t c = (T + kScanChunk - 1) / kScanChunk - 1; c >= 0; --c) {
    const int64_t t0 = c * kScanChunk, t1 = std::min(T, t0 + kScanChunk);
    const float* cp = g.checkpoints + c * N * E;
    for (int64_t t = t0; t < t1; ++t) {
      float* st = states + (t - t0) * N * nb;
      float* dc = decays + (t - t0) * N * nb;
      const float* prev = t > t0 ? st - N * nb : nullptr;
      const float* B = a.B + t * a.ld_bc;
      float* dl = deltas + (t - t0) * nb;
      const float* u = a.xc + t * E + e0;
      // The walk back reads z and dy and writes dz, which nothing here
      // touches first: ask for their rows now, a chunk of rows ahead of use.
      for (int64_t i = 0; i < nb; i += 16) {
        _mm_prefetch(reinterpret_cast<const char*>(a.z + t * a.ld_z + e0 + i), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(g.dy + t * E + e0 + i), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(g.dz + t * g.ld_dz + e0 + i), _MM_HINT_T0);
      }
      for (int64_t i = 0; i < nb; i += 8) {
        _mm256_storeu_ps(dl + i, cpu::Softplus8(_mm256_add_ps(
                                     _mm256_loadu_ps(a.dt + t * E + e0 + i),
                                     _mm256_loadu_ps(a.dt_bias + e0 + i))));
      }
      for (int64_t n = 0; n < N; ++n) {
        const float* A = a.A + n * E + e0;
        const float* sp = prev ? prev + n * nb : cp + n * E + e0;
        const __m256 bn = _mm256_set1_ps(B[n]);
        for (int64_t i = 0; i < nb; i += 8) {
          const __m256 d = _mm256_loadu_ps(dl + i);
          const __m256 decay = cpu::Exp8(_mm256_mul_ps(d, _mm256_loadu_ps(A + i)));
          _mm256_storeu_ps(dc + n * nb + i, decay);
          _mm256_storeu_ps(st + n * nb + i,
                           _mm256_fmadd_ps(decay, _mm256_loadu_ps(sp + i),
                                           _mm256_mul_ps(_mm256_mul_ps(d, bn),
                                                         _mm256_loadu_ps(u + i))));
        }
      }
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const float* st = states + (t - t0) * N * nb;
      const float* dc = decays + (t - t0) * N * nb;
      const float* B = a.B + t * a.ld_bc;
      const float* C = a.C + t * a.ld_bc;
      const float* u = a.xc + t * E + e0;
      const float* z = a.z + t * a.ld_z + e0;
      const float* dy = g.dy + t * E + e0;
      const float* dl = deltas + (t - t0) * nb;
      float* dz = g.dz + t * g.ld_dz + e0;
      for (int64_t i = 0; i < nb; i += 8) {
        const __m256 uu = _mm256_loadu_ps(u + i);
        const __m256 Dv = _mm256_loadu_ps(a.D + e0 + i);
        __m256 yy = _mm256_mul_ps(Dv, uu);
        for (int64_t n = 0; n < N; ++n) {
          yy = _mm256_fmadd_ps(_mm256_loadu_ps(st + n * nb + i), _mm256_set1_ps(C[n]), yy);
        }
        const __m256 zz = _mm256_loadu_ps(z + i);
        const __m256 sg = Sigmoid8(zz);
        const __m256 one = _mm256_set1_ps(1.0f);
        const __m256 silu_grad =
            _mm256_mul_ps(sg, _mm256_fmadd_ps(zz, _mm256_sub_ps(one, sg), one));
        const __m256 dyv = _mm256_loadu_ps(dy + i);
        _mm256_storeu_ps(dz + i, _mm256_mul_ps(_mm256_mul_ps(dyv, yy), silu_grad));
        const __m256 dyyv = _mm256_mul_ps(dyv, _mm256_mul_ps(zz, sg));
        _mm256_storeu_ps(dyy.data() + i, dyyv);
        _mm256_storeu_ps(g.dD + e0 + i,
                         _mm256_fmadd_ps(dyyv, uu, _mm256_loadu_ps(g.dD + e0 + i)));
        _mm256_storeu_ps(du.data() + i, _mm256_mul_ps(dyyv, Dv));
        _mm256_storeu_ps(ddelta.data() + i, _mm256_setzero_ps());
      }
      for (int64_t n = 0; n < N; ++n) {
        const float* A = a.A + n * E + e0;
        const float* sprev = t > t0 ? st - N * nb + n * nb : cp + n * E + e0;
        const float* s_t = st + n * nb;
        const float* decay_n = dc + n * nb;
        float* cr = carry + n * nb;
        float* dA = g.dA + n * E + e0;
        const __m256 cn = _mm256_set1_ps(C[n]), bn = _mm256_set1_ps(B[n]);
        __m256 db = _mm256_setzero_ps(), dcv = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i += 8) {
          const __m256 dyyv = _mm256_loadu_ps(dyy.data() + i);
          const __m256 gs = _mm256_fmadd_ps(dyyv, cn, _mm256_loadu_ps(cr + i));
          dcv = _mm256_fmadd_ps(dyyv, _mm256_loadu_ps(s_t + i), dcv);
          const __m256 decay = _mm256_loadu_ps(decay_n + i);
          const __m256 d_decay = _mm256_mul_ps(gs, _mm256_loadu_ps(sprev + i));
          const __m256 dd = _mm256_mul_ps(d_decay, decay);
          const __m256 dlv = _mm256_loadu_ps(dl + i);
          const __m256 uu = _mm256_loadu_ps(u + i);
          const __m256 gs_dl = _mm256_mul_ps(gs, dlv);
          __m256 dlt = _mm256_loadu_ps(ddelta.data() + i);
          dlt = _mm256_fmadd_ps(dd, _mm256_loadu_ps(A + i), dlt);
          dlt = _mm256_fmadd_ps(_mm256_mul_ps(gs, bn), uu, dlt);
          _mm256_storeu_ps(ddelta.data() + i, dlt);
          _mm256_storeu_ps(dA + i, _mm256_fmadd_ps(dd, dlv, _mm256_loadu_ps(dA + i)));
          db = _mm256_fmadd_ps(gs_dl, uu, db);
          _mm256_storeu_ps(du.data() + i,
                           _mm256_fmadd_ps(gs_dl, bn, _mm256_loadu_ps(du.data() + i)));
          _mm256_storeu_ps(cr + i, _mm256_mul_ps(gs, decay));
        }
        part_b[t * N + n] += cpu::HorizontalSum8(db);
        part_c[t * N + n] += cpu::HorizontalSum8(dcv);
      }
      for (int64_t i = 0; i < nb; i += 8) {
        const __m256 x = _mm256_add_ps(_mm256_loadu_ps(a.dt + t * E + e0 + i),
                                       _mm256_loadu_ps(a.dt_bias + e0 + i));
        const __m256 ddt = _mm256_mul_ps(_mm256_loadu_ps(ddelta.data() + i), Sigmoid8(x));
        _mm256_storeu_ps(g.ddt + t * E + e0 + i, ddt);
        _mm256_storeu_ps(g.ddt_bias + e0 + i,
                         _mm256_add_ps(_mm256_loadu_ps(g.ddt_bias + e0 + i), ddt));
        _mm256_storeu_ps(g.dxc + t * E + e0 + i, _mm256_loadu_ps(du.data() + i));
      }
    }
  }
}
#endif

// Input row `src` of a conv backward from channel e0 on: row K-1+src of prev
// where src < 0 (NULL without prev: zeros).
const float* Input(const ConvBackwardArgs& a, int64_t src, int64_t e0) {
  if (src >= 0) return a.xi + src * a.ld_xi + e0;
  if (a.prev == nullptr) return nullptr;
  return a.prev + (a.K - 1 + src) * a.E + e0;
}

// Channels [e0, e1) of ConvSiluBackward, position by position with the
// channels innermost (contiguous, so the loops vectorise): the weights are
// read as [K, nb] and their gradient gathered the same way, then added to
// dw [E, K] once.
void ConvBackwardChannels(const ConvBackwardArgs& a, int64_t e0, int64_t e1) {
  const int64_t K = a.K, nb = e1 - e0;
  std::vector<float> wt(K * nb), dwt(K * nb, 0.0f), pre(nb), dpre(nb), db(nb, 0.0f);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t i = 0; i < nb; ++i) wt[k * nb + i] = a.w[(e0 + i) * K + k];
  }
  for (int64_t t = 0; t < a.T; ++t) {
    for (int64_t i = 0; i < nb; ++i) a.dxi[t * a.ld_dxi + e0 + i] = 0.0f;
  }
  for (int64_t t = 0; t < a.T; ++t) {
    for (int64_t i = 0; i < nb; ++i) pre[i] = a.b[e0 + i];
    for (int64_t k = 0; k < K; ++k) {
      const float* x = Input(a, t - K + 1 + k, e0);
      if (x == nullptr) continue;
      const float* w = &wt[k * nb];
      for (int64_t i = 0; i < nb; ++i) pre[i] += w[i] * x[i];
    }
    const float* dout = a.dout + t * a.E + e0;
    int64_t i = 0;
#if MM_CPU_AVX2
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= nb; i += 8) {
      const __m256 x = _mm256_loadu_ps(&pre[i]);
      const __m256 sg = _mm256_div_ps(
          one, _mm256_add_ps(one, cpu::Exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
      const __m256 grad = _mm256_mul_ps(sg, _mm256_fmadd_ps(x, _mm256_sub_ps(one, sg), one));
      _mm256_storeu_ps(&dpre[i], _mm256_mul_ps(_mm256_loadu_ps(dout + i), grad));
    }
#endif
    for (; i < nb; ++i) dpre[i] = dout[i] * SiluGrad(pre[i]);
    for (int64_t j = 0; j < nb; ++j) db[j] += dpre[j];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t src = t - K + 1 + k;
      const float* x = Input(a, src, e0);
      if (x == nullptr) continue;
      float* dw = &dwt[k * nb];
      for (int64_t j = 0; j < nb; ++j) dw[j] += dpre[j] * x[j];
      if (src < 0) continue;  // an input of `prev`: a constant
      float* dx = a.dxi + src * a.ld_dxi + e0;
      const float* w = &wt[k * nb];
      for (int64_t j = 0; j < nb; ++j) dx[j] += dpre[j] * w[j];
    }
  }
  for (int64_t j = 0; j < nb; ++j) {
    a.db[e0 + j] += db[j];
    for (int64_t k = 0; k < K; ++k) a.dw[(e0 + j) * K + k] += dwt[k * nb + j];
  }
}

#if MM_CPU_AVX2
// out[0..64) = Σ_{i < n} coef(i)·row(i)[0..64), one fused multiply-add per
// term in order of i from zero, the 64 sums held in registers throughout.
template <typename Coef, typename Row>
inline void WeightedRowSum64(int64_t n, const Coef& coef, const Row& row, float* out) {
  __m256 acc[8];
  for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; ++i) {
    const __m256 w = _mm256_set1_ps(coef(i));
    const float* r = row(i);
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(r + 8 * c), acc[c]);
  }
  for (int c = 0; c < 8; ++c) _mm256_storeu_ps(out + 8 * c, acc[c]);
}
#endif

// Floats of scratch FoldedReadHeads needs for m notes.
int64_t FoldedReadScratch(int64_t m, int64_t S, int64_t H) { return 2 * H * S + H * m; }

// Heads [h0, h1) of one row of Backend::PoolAttendFolded: writes o[h·dh ..
// (h+1)·dh) for those heads. Each head's operations do not depend on which
// other heads the call takes. `scratch` holds FoldedReadScratch floats.
void FoldedReadHeads(const float* q, int64_t m, const float* const* summaries, const float* k,
                     const float* v, int64_t S, int64_t H, int64_t h0, int64_t h1, float* o,
                     float* scratch) {
  const int64_t dh = S / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  float* qk = scratch;         // [H, S]: scale · K_hᵀ q_h
  float* u = qk + H * S;       // [H, S]: Σ_j p_jh ŝ_j
  float* scores = u + H * S;   // [H, m]
  std::fill(qk + h0 * S, qk + h1 * S, 0.0f);
  std::fill(u + h0 * S, u + h1 * S, 0.0f);
#if MM_CPU_AVX2
  // The two accumulations below (qk over i, u over j) keep a block of 64
  // floats of their output in registers through the whole sum
  // (WeightedRowSum64): the same multiply-adds in the same order as the
  // loops after them.
  if (S % 64 == 0) {
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t s0 = 0; s0 < S; s0 += 64) {
        WeightedRowSum64(
            dh, [&](int64_t i) { return scale * q[h * dh + i]; },
            [&](int64_t i) { return k + (h * dh + i) * S + s0; }, qk + h * S + s0);
      }
    }
  } else
#endif
  for (int64_t h = h0; h < h1; ++h) {
    float* r = qk + h * S;
    for (int64_t i = 0; i < dh; ++i) {
      const float qi = scale * q[h * dh + i];
      const float* kr = k + (h * dh + i) * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) r[s] += qi * kr[s];
    }
  }
  // Scores: each summary is read once for all the call's heads.
  for (int64_t j = 0; j < m; ++j) {
    const float* sj = summaries[j];
    for (int64_t h = h0; h < h1; ++h) {
      const float* r = qk + h * S;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t s = 0; s < S; ++s) dot += r[s] * sj[s];
      scores[h * m + j] = dot;
    }
  }
  SoftmaxRows(scores + h0 * m, h1 - h0, m);
#if MM_CPU_AVX2
  if (S % 64 == 0) {
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t s0 = 0; s0 < S; s0 += 64) {
        WeightedRowSum64(
            m, [&](int64_t j) { return scores[h * m + j]; },
            [&](int64_t j) { return summaries[j] + s0; }, u + h * S + s0);
      }
    }
  } else
#endif
  for (int64_t j = 0; j < m; ++j) {
    const float* sj = summaries[j];
    for (int64_t h = h0; h < h1; ++h) {
      const float p = scores[h * m + j];
      float* r = u + h * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) r[s] += p * sj[s];
    }
  }
  // o_h = V_h u_h.
  for (int64_t h = h0; h < h1; ++h) {
    const float* r = u + h * S;
    for (int64_t i = 0; i < dh; ++i) {
      const float* vr = v + (h * dh + i) * S;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t s = 0; s < S; ++s) dot += vr[s] * r[s];
      o[h * dh + i] = dot;
    }
  }
}

// Rows [n0, n1) of y = W·x for one row x, on the calling thread: the same
// bits as those rows of a whole product (a row's sum does not depend on
// which rows a call takes).
void MatvecRows(const float* x, int64_t K, const WeightRef& w, int64_t n0, int64_t n1,
                float* y) {
  if (n1 <= n0) return;
  if (w.bf16) {
    cpu::MatmulBf16(x, 1, K, K, w.bf16 + n0 * K, n1 - n0, y + n0, n1 - n0, false, 1);
  } else {
    cpu::MatmulF32(x, 1, K, K, w.f32 + n0 * K, n1 - n0, y + n0, n1 - n0, false, 1);
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

  void ReserveBf16Products(int64_t max_k) override {
    cpu::ReserveBf16Products(max_k, n_threads_);
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
    const int threads =
        streams[0].T * E * streams[0].N * n >= kMinParallelScanWork ? n_threads_ : 1;
    // A one-position step takes one run of channels per thread and stream,
    // so that each reads its state rows in long runs (cpu::ScanStepFrom).
    const int64_t block = streams[0].T == 1
                              ? std::max<int64_t>(kScanBlock, (E / threads + 15) / 16 * 16)
                              : kScanBlock;
    const int64_t blocks = (E + block - 1) / block;
    const int64_t tasks = n * blocks;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const ScanArgs& a = streams[task / blocks];
      const int64_t e0 = (task % blocks) * block;
      cpu::ScanChannels(a, e0, std::min(E, e0 + block));
    }
  }

  void MixerStep(const ConvArgs& conv, const WeightRef& x_proj, float* dbc,
                 const WeightRef& dt_proj, float* dt, const ScanArgs& scan) override {
    const int64_t E = conv.E, groups = (E + 15) / 16;
    const int team = E * scan.N >= kMinParallelScanWork ? n_threads_ : 1;
#pragma omp parallel num_threads(team) if (team > 1)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t e0 = std::min(E, groups * t / n * 16);
      const int64_t e1 = std::min(E, groups * (t + 1) / n * 16);
      ConvChannels(conv, e0, e1);
#pragma omp barrier
      const int64_t rows = x_proj.rows;
      MatvecRows(conv.out, E, x_proj, rows * t / n, rows * (t + 1) / n, dbc);
#pragma omp barrier
      MatvecRows(dbc, dt_proj.cols, dt_proj, e0, e1, dt);
      cpu::ScanChannels(scan, e0, e1);
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
    SoftmaxRows(scores.data(), H, m);
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

  void PoolAttendFolded(int64_t M, const float* q, const float* const* const* notes,
                        const int64_t* m, const float* k, const float* v, int64_t S, int64_t H,
                        float* o, float* scratch) override {
    int64_t work = 0, max_m = 0;  // multiply-adds, the most notes of a row
    for (int64_t r = 0; r < M; ++r) {
      work += m[r] > 0 ? 2 * S * (S + H * m[r]) : 0;
      max_m = std::max(max_m, m[r]);
    }
    const int threads = M > 1 && work >= (1 << 17) ? n_threads_ : 1;
    const int64_t per_thread = FoldedReadScratch(max_m, S, H);
    float* base = scratch;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads) if (threads > 1)
    for (int64_t r = 0; r < M; ++r) {
      if (m[r] == 0) continue;
      float* mine = base + omp_get_thread_num() * per_thread;
      FoldedReadHeads(q + r * S, m[r], notes[r], k, v, S, H, 0, H, o + r * S, mine);
    }
  }

  void PoolReadRow(const float* a, int64_t D, const WeightRef& wq, const float* const* notes,
                   int64_t m, const float* k, const float* v, int64_t S, int64_t H,
                   const WeightRef& wo, float* q, float* o, float* c, float* scratch) override {
    // Each thread takes a run of heads (their rows of Wq, then their
    // attention), and after one barrier a run of 16-row groups of Wo.
    const int64_t elem = wq.bf16 ? 2 : 4;
    const int64_t bytes = 2 * S * D * elem;  // Wq and Wo
    const int team = static_cast<int>(std::clamp<int64_t>(
        std::min<int64_t>(bytes / kMinReadBytesPerThread, H), 1, n_threads_));
    const int64_t dh = S / H, groups = (D + 15) / 16;
#pragma omp parallel num_threads(team) if (team > 1)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t h0 = H * t / n, h1 = H * (t + 1) / n;
      MatvecRows(a, D, wq, h0 * dh, h1 * dh, q);
      // The heads' rows of the scratch are disjoint: one scratch serves all.
      if (h1 > h0) FoldedReadHeads(q, m, notes, k, v, S, H, h0, h1, o, scratch);
#pragma omp barrier
      const int64_t d0 = std::min(D, groups * t / n * 16);
      const int64_t d1 = std::min(D, groups * (t + 1) / n * 16);
      MatvecRows(o, S, wo, d0, d1, c);
    }
  }

  int64_t PoolAttendFoldedScratch(int64_t max_m, int64_t S, int64_t H) const override {
    return n_threads_ * FoldedReadScratch(max_m, S, H);
  }

  void MatmulBackwardInput(const float* dy, int64_t M, int64_t ldy, const float* w, int64_t N,
                           int64_t K, float* dx, int64_t ldx, bool accumulate) override {
    cpu::Gemm(false, false, M, K, N, dy, ldy, w, K, dx, ldx, accumulate, n_threads_);
  }

  void MatmulBackwardWeight(const float* dy, int64_t M, int64_t ldy, const float* x,
                            int64_t ldx, int64_t N, int64_t K, float* dw) override {
    cpu::Gemm(true, false, N, K, M, dy, ldy, x, ldx, dw, K, true, n_threads_);
  }

  // y = x·r·w with r = 1/sqrt(mean(x²) + eps):
  // dx = r·(dy⊙w) − x·r³·Σ_d(dy⊙w⊙x)/D;  dw += Σ_m dy⊙x·r.
  void RmsNormBackward(const float* x, int64_t M, int64_t D, const float* w, float eps,
                       const float* dy, float* dx, bool accumulate, float* dw) override {
    std::vector<float> inv(M);
    const int threads = M * D >= (1 << 16) ? n_threads_ : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * D;
      const float* g = dy + m * D;
      double ss = 0.0, dot = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        ss += static_cast<double>(xr[d]) * xr[d];
        dot += static_cast<double>(g[d]) * w[d] * xr[d];
      }
      const double r = 1.0 / std::sqrt(ss / D + eps);
      inv[m] = static_cast<float>(r);
      const float k = static_cast<float>(r * r * r * dot / D);
      const float rf = static_cast<float>(r);
      float* o = dx + m * D;
      for (int64_t d = 0; d < D; ++d) {
        const float v = rf * g[d] * w[d] - xr[d] * k;
        o[d] = accumulate ? o[d] + v : v;
      }
    }
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * D;
      const float* g = dy + m * D;
      for (int64_t d = 0; d < D; ++d) dw[d] += g[d] * xr[d] * inv[m];
    }
  }

  void ConvSiluBackward(const ConvBackwardArgs* streams, int64_t n) override {
    if (n == 0) return;
    const int64_t E = streams[0].E;
    const int64_t blocks = (E + kScanBlock - 1) / kScanBlock;
    // Tasks are channel blocks; streams run in order inside one, so the
    // accumulation into dw and db has a fixed order.
    const int threads = streams[0].T * E * n >= 4096 ? n_threads_ : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t e0 = blk * kScanBlock, e1 = std::min(E, e0 + kScanBlock);
      for (int64_t i = 0; i < n; ++i) ConvBackwardChannels(streams[i], e0, e1);
    }
  }

  void SelectiveScanBackward(const ScanBackwardArgs* streams, int64_t n) override {
    if (n == 0) return;
    const int64_t E = streams[0].fwd.E, N = streams[0].fwd.N;
    const int64_t blocks = (E + kScanBlock - 1) / kScanBlock;
    int64_t max_t = 0;  // streams may differ in length
    for (int64_t i = 0; i < n; ++i) max_t = std::max(max_t, streams[i].fwd.T);
    // Every buffer below is written before it is read (the kernels clear
    // their parts of `part`), so none is zero-filled: with many short
    // streams that filling was most of the call.
    std::unique_ptr<float[]> part(new float[blocks * 2 * max_t * N]);
    // Per thread: states and decays [rows, N, kScanBlock], carry [N,
    // kScanBlock], deltas [rows, kScanBlock]; one allocation for the call.
    const int64_t rows = std::min(max_t, kScanChunk);
    const int64_t per_thread = (2 * rows * N + N + rows) * kScanBlock;
    std::unique_ptr<float[]> scratch(new float[n_threads_ * per_thread]);
    const cpu::FlushDenormals flush;  // this thread; each worker sets its own
    for (int64_t i = 0; i < n; ++i) {
      const ScanBackwardArgs& g = streams[i];
      const int64_t T = g.fwd.T;
      const int threads = T * E * N >= 32768 ? n_threads_ : 1;
#pragma omp parallel num_threads(threads)
      {
        const cpu::FlushDenormals flush_worker;
        float* states = scratch.get() + omp_get_thread_num() * per_thread;
        float* decays = states + rows * N * kScanBlock;
        float* carry = decays + rows * N * kScanBlock;
        float* deltas = carry + N * kScanBlock;
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const int64_t e0 = blk * kScanBlock, e1 = std::min(E, e0 + kScanBlock);
          float* pb = part.get() + blk * 2 * T * N;
#if MM_CPU_AVX2
          if ((e1 - e0) % 8 == 0) {
            ScanBackwardChannels8(g, e0, e1, states, decays, carry, deltas, pb, pb + T * N);
            continue;
          }
#endif
          ScanBackwardChannels(g, e0, e1, states, carry, deltas, pb, pb + T * N);
        }
      }
      // dB, dC: the channel blocks summed in block order.
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t k = 0; k < N; ++k) {
          float b = 0.0f, c = 0.0f;
          for (int64_t blk = 0; blk < blocks; ++blk) {
            b += part[blk * 2 * T * N + t * N + k];
            c += part[blk * 2 * T * N + T * N + t * N + k];
          }
          g.dB[t * g.ld_dbc + k] = b;
          g.dC[t * g.ld_dbc + k] = c;
        }
      }
    }
  }

  void PoolAttendBackward(const float* q, int64_t m, const float* const* keys,
                          const float* const* values, int64_t S, int64_t H, const float* dout,
                          float* dq, float* const* dkeys, float* const* dvalues) override {
    const int64_t dh = S / H;
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    thread_local std::vector<float> p, dp;  // [m rounded up to 8]
    p.resize((m + 7) / 8 * 8);
    dp.resize(p.size());
    std::fill(dq, dq + S, 0.0f);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t off = h * dh;
      // p_j = scale·q_h·k_jh and dp_j = do_h·v_jh, eight notes at a time
      // where the head's width allows (the same bits as the loops below).
      int64_t j0 = 0;
#if MM_CPU_AVX2
      if (dh % 8 == 0) {
        for (; j0 < m; j0 += 8) {
          const float* kr[8];
          const float* vr[8];
          for (int i = 0; i < 8; ++i) {
            const int64_t j = std::min(j0 + i, m - 1);  // past the end: a copy of the last
            kr[i] = keys[j] + off;
            vr[i] = values[j] + off;
          }
          Dot8Rows(q + off, kr, dh, &p[j0]);
          Dot8Rows(dout + off, vr, dh, &dp[j0]);
        }
        for (int64_t j = 0; j < m; ++j) p[j] = p[j] * scale;
      }
#endif
      for (int64_t j = j0; j < m; ++j) {
        float dot = 0.0f;
        for (int64_t d = 0; d < dh; ++d) dot += q[off + d] * keys[j][off + d];
        p[j] = dot * scale;
        float dvp = 0.0f;
        for (int64_t d = 0; d < dh; ++d) dvp += dout[off + d] * values[j][off + d];
        dp[j] = dvp;
      }
      float mx = -INFINITY;
      for (int64_t j = 0; j < m; ++j) mx = std::max(mx, p[j]);
      float sum = 0.0f;
      for (int64_t j = 0; j < m; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      const float inv = 1.0f / sum;
      // ds_j = p_j (dp_j − Σ_i p_i dp_i).
      float mean = 0.0f;
      for (int64_t j = 0; j < m; ++j) {
        p[j] *= inv;
        mean = std::fma(p[j], dp[j], mean);
      }
      for (int64_t j = 0; j < m; ++j) {
        const float ds = p[j] * (dp[j] - mean) * scale;
        AccumulateReadGrads(ds, p[j], keys[j] + off, q + off, dout + off, dh, dq + off,
                            dkeys[j] + off, dvalues[j] + off);
      }
    }
  }

  void PoolAttendKappaGrad(const float* q, int64_t m, const float* const* keys,
                           const float* const* values, int64_t c, const float* const* ckeys,
                           const float* const* cvalues, int64_t S, int64_t H, const float* dout,
                           float* dkappa) override {
    const int64_t dh = S / H, n = m + c;
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    // Per candidate: its score, do·v and its two exponentials, each computed
    // once ([n rounded up to 8] each; the pool's exponentials in e_pool).
    // The dots are rounded products added in order, the weighted sums fused
    // multiply-adds: the operations this surrogate has always had, spelled
    // out so that no compiler's choice of contraction can change a bit.
    thread_local std::vector<float> sc, dp, e_all, e_pool;
    sc.resize((n + 7) / 8 * 8);
    dp.resize(sc.size());
    e_all.resize(n);
    e_pool.resize(m);
    std::fill(dkappa, dkappa + n, 0.0f);
    auto key = [&](int64_t j) { return j < m ? keys[j] : ckeys[j - m]; };
    auto value = [&](int64_t j) { return j < m ? values[j] : cvalues[j - m]; };
    for (int64_t h = 0; h < H; ++h) {
      const int64_t off = h * dh;
      int64_t j0 = 0;
#if MM_CPU_AVX2
      if (dh % 8 == 0) {  // eight candidates at a time, the bits of the loop below
        for (; j0 < n; j0 += 8) {
          const float* kr[8];
          const float* vr[8];
          for (int i = 0; i < 8; ++i) {
            const int64_t j = std::min(j0 + i, n - 1);  // past the end: a copy of the last
            kr[i] = key(j) + off;
            vr[i] = value(j) + off;
          }
          Dot8Rows(q + off, kr, dh, &sc[j0]);
          Dot8Rows(dout + off, vr, dh, &dp[j0]);
        }
      }
#endif
      for (int64_t j = j0; j < n; ++j) {
        float dot = 0.0f, dvp = 0.0f;
        const float* k = key(j) + off;
        const float* v = value(j) + off;
        for (int64_t d = 0; d < dh; ++d) dot += RoundedProduct(q[off + d], k[d]);
        for (int64_t d = 0; d < dh; ++d) dvp += RoundedProduct(dout[off + d], v[d]);
        sc[j] = dot;
        dp[j] = dvp;
      }
      // Each softmax its own max: one candidate far above the pool must not
      // underflow the pool's sum to 0.
      float mx = -INFINITY, mx_pool = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        sc[j] = sc[j] * scale;
        mx = std::max(mx, sc[j]);
        if (j < m) mx_pool = std::max(mx_pool, sc[j]);
      }
      float z_pool = 0.0f, z_all = 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        e_all[j] = std::exp(sc[j] - mx);
        z_all += e_all[j];
        if (j < m) {
          e_pool[j] = std::exp(sc[j] - mx_pool);
          z_pool += e_pool[j];
        }
      }
      // o·do under the pool's own softmax (the forward's weights).
      float o_do = 0.0f;
      for (int64_t j = 0; j < m; ++j) o_do = std::fma(e_pool[j] / z_pool, dp[j], o_do);
      // dκ_j scaled by softmax over all candidates: no weight exceeds 1.
      for (int64_t j = 0; j < n; ++j) {
        dkappa[j] = std::fma(e_all[j] / z_all, dp[j] - o_do, dkappa[j]);
      }
    }
  }

  void SoftmaxCrossEntropy(float* logits, int64_t M, int64_t V, const int32_t* targets,
                           float scale, double* loss_sum) override {
    std::vector<double> losses(M, 0.0);
#pragma omp parallel for num_threads(M * V >= 65536 ? n_threads_ : 1) schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      float* row = logits + m * V;
      if (targets[m] < 0) {
        std::fill(row, row + V, 0.0f);
        continue;
      }
      float mx = -INFINITY;
      for (int64_t v = 0; v < V; ++v) mx = std::max(mx, row[v]);
      double sum = 0.0;
      for (int64_t v = 0; v < V; ++v) {
        row[v] = std::exp(row[v] - mx);
        sum += row[v];
      }
      const float target_p = static_cast<float>(row[targets[m]] / sum);
      losses[m] = -std::log(static_cast<double>(row[targets[m]]) / sum);
      const float k = static_cast<float>(scale / sum);
      for (int64_t v = 0; v < V; ++v) row[v] *= k;
      row[targets[m]] = scale * (target_p - 1.0f);
    }
    for (int64_t m = 0; m < M; ++m) *loss_sum += losses[m];
  }

  void GramAccumulate(const float* x, const float* y, int64_t M, int64_t D,
                      double* out) override {
    if (M <= 0 || D <= 0) return;
    std::vector<double> xd(x, x + M * D), yd(y, y + M * D);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(D),
                static_cast<int>(D), static_cast<int>(M), 1.0, xd.data(), static_cast<int>(D),
                yd.data(), static_cast<int>(D), 1.0, out, static_cast<int>(D));
  }

  double SumSquares(const float* x, int64_t n) override {
    constexpr int64_t kBlock = 1 << 16;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> part(blocks, 0.0);
#pragma omp parallel for num_threads(blocks > 1 ? n_threads_ : 1) schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      double acc = 0.0;
      for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
        acc += static_cast<double>(x[i]) * x[i];
      }
      part[b] = acc;
    }
    double total = 0.0;
    for (double v : part) total += v;
    return total;
  }

  void AdamW(float* w, const float* g, float* m, float* v, int64_t n, float gs, float lr,
             float beta1, float beta2, float eps, float wd, int64_t step) override {
    const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
    const float inv_bc1 = static_cast<float>(1.0 / bc1);
    const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
#pragma omp parallel for num_threads(n >= (1 << 16) ? n_threads_ : 1) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i] * gs;
      m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
      v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
      const float update = (m[i] * inv_bc1) / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
      w[i] -= lr * (update + wd * w[i]);
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
