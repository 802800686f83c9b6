// The body shared by both builds of the scan kernel (scan_kernel.h):
// included by scan_kernel.cc and scan_kernel_avx512.cc only.
#ifndef MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_INL_H_
#define MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_INL_H_

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/backend.h"
#include "backend/cpu/vec_math.h"

namespace memmamba::cpu {
namespace {

// Position t, channels [e, e1): eight at a time where AVX2 is there, the
// rest one by one. State and A are [N, E], so a vector runs across
// channels and the sum over n needs no horizontal reduction.
inline void ScanPositionFrom(const ScanArgs& a, int64_t t, int64_t e, int64_t e1) {
  const int64_t N = a.N, E = a.E;
  const float* xc = a.xc + t * E;
  const float* dt = a.dt + t * E;
  const float* B = a.B + t * a.ld_bc;
  const float* C = a.C + t * a.ld_bc;
  const float* z = a.z + t * a.ld_z;
  float* y = a.y + t * E;
#if MM_CPU_AVX2
  for (; e + 8 <= e1; e += 8) {
    const __m256 delta = Softplus8(_mm256_add_ps(_mm256_loadu_ps(dt + e), _mm256_loadu_ps(a.dt_bias + e)));
    const __m256 u = _mm256_loadu_ps(xc + e);
    const __m256 du = _mm256_mul_ps(delta, u);
    __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(a.D + e), u);
    for (int64_t n = 0; n < N; ++n) {
      float* s = a.state + n * E + e;
      const __m256 dA = Exp8(_mm256_mul_ps(delta, _mm256_loadu_ps(a.A + n * E + e)));
      const __m256 vs = _mm256_fmadd_ps(dA, _mm256_loadu_ps(s), _mm256_mul_ps(du, _mm256_set1_ps(B[n])));
      _mm256_storeu_ps(s, vs);
      acc = _mm256_fmadd_ps(vs, _mm256_set1_ps(C[n]), acc);
    }
    _mm256_storeu_ps(y + e, _mm256_mul_ps(acc, Silu8(_mm256_loadu_ps(z + e))));
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

// Channels per pass of a one-position step: its Δ, Δ·ξc and sums stay in
// L1 while the state and A rows stream past.
constexpr int64_t kStepChannels = 512;

// One position (T = 1, a decode step) of channels [e0, e1), n outermost: the
// rows state[n, e0:e1) and A[n, e0:e1) are each read in one sequential run.
// A step's state is cold (the weights streamed since it was last touched
// evict it), and the position-major loop touches 2N rows a vector at a time,
// more streams than the hardware prefetcher follows, so it waits on every
// line. Per channel the operations and their order are those of
// ScanPositionFrom, so the bits are the same.
inline void ScanStepFrom(const ScanArgs& a, int64_t e0, int64_t e1) {
  int64_t e = e0;
#if MM_CPU_AVX2
  const int64_t N = a.N, E = a.E;
  alignas(32) float delta[kStepChannels], du[kStepChannels], acc[kStepChannels];
  while (e1 - e >= 8) {
    const int64_t len = std::min(kStepChannels, (e1 - e) / 8 * 8);
    for (int64_t i = 0; i < len; i += 8) {
      const __m256 d = Softplus8(_mm256_add_ps(_mm256_loadu_ps(a.dt + e + i),
                                               _mm256_loadu_ps(a.dt_bias + e + i)));
      const __m256 u = _mm256_loadu_ps(a.xc + e + i);
      _mm256_store_ps(delta + i, d);
      _mm256_store_ps(du + i, _mm256_mul_ps(d, u));
      _mm256_store_ps(acc + i, _mm256_mul_ps(_mm256_loadu_ps(a.D + e + i), u));
    }
    for (int64_t n = 0; n < N; ++n) {
      const float* A = a.A + n * E + e;
      float* s = a.state + n * E + e;
      const __m256 b = _mm256_set1_ps(a.B[n]), c = _mm256_set1_ps(a.C[n]);
      for (int64_t i = 0; i < len; i += 8) {
        const __m256 dA = Exp8(_mm256_mul_ps(_mm256_load_ps(delta + i), _mm256_loadu_ps(A + i)));
        const __m256 vs = _mm256_fmadd_ps(dA, _mm256_loadu_ps(s + i),
                                          _mm256_mul_ps(_mm256_load_ps(du + i), b));
        _mm256_storeu_ps(s + i, vs);
        _mm256_store_ps(acc + i, _mm256_fmadd_ps(vs, c, _mm256_load_ps(acc + i)));
      }
    }
    for (int64_t i = 0; i < len; i += 8) {
      _mm256_storeu_ps(a.y + e + i, _mm256_mul_ps(_mm256_load_ps(acc + i),
                                                  Silu8(_mm256_loadu_ps(a.z + e + i))));
    }
    e += len;
  }
#endif
  ScanPositionFrom(a, 0, e, e1);
}

// Every position of channels [e0, e1); `position(t)` runs one.
template <typename Position>
inline void ScanRange(const ScanArgs& a, int64_t e0, int64_t e1, const Position& position) {
  for (int64_t t = 0; t < a.T; ++t) {
    if (a.checkpoints != nullptr && t % kScanChunk == 0) {
      float* cp = a.checkpoints + (t / kScanChunk) * a.N * a.E;
      for (int64_t n = 0; n < a.N; ++n) {
        std::memcpy(cp + n * a.E + e0, a.state + n * a.E + e0, (e1 - e0) * sizeof(float));
      }
    }
    position(t);
  }
}

}  // namespace
}  // namespace memmamba::cpu

#endif  // MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_INL_H_
