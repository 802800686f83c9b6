// The body shared by both builds of the scan kernel (scan_kernel.h):
// included by scan_kernel.cc and scan_kernel_avx512.cc only.
#ifndef MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_INL_H_
#define MEMMAMBA_BACKEND_CPU_SCAN_KERNEL_INL_H_

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
