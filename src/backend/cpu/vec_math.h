// Vectorised elementwise math for the CPU backend (AVX2 + FMA, with a scalar
// twin for other targets). exp is a Cephes-style range reduction
// x = n·ln2 + r with a degree-6 polynomial for e^r: relative error below
// 2e-7 over [-87, 88]; inputs below -87 give 0, which the scan relies on.
#ifndef MEMMAMBA_BACKEND_CPU_VEC_MATH_H_
#define MEMMAMBA_BACKEND_CPU_VEC_MATH_H_

#include <cmath>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MM_CPU_AVX2 1
#endif

namespace memmamba::cpu {

// Every function here is `static`: scan_kernel_avx512.cc includes this
// header under -mavx512f, and an out-of-line copy it emitted must never be
// the one the linker hands to code that runs on CPUs without AVX-512.

#if MM_CPU_AVX2
static inline __m256 Exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-87.3365447504f);
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(under, result);
}

// Natural log for x > 0 (Cephes logf: x = m·2^e, m in [√½, √2), degree-8
// polynomial); relative error below 2e-7. No special cases: callers pass
// finite positive values.
static inline __m256 Log8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256i bits = _mm256_castps_si256(x);
  __m256 e = _mm256_cvtepi32_ps(
      _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(bits, _mm256_set1_epi32(0x807fffff)), _mm256_set1_epi32(0x3f000000)));
  // m in [0.5, 1): below √½ use 2m - 1 and e - 1, else m - 1.
  __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
  __m256 xr = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(m, small)), one);
  __m256 z = _mm256_mul_ps(xr, xr);
  __m256 y = _mm256_set1_ps(7.0376836292E-2f);
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(-1.1514610310E-1f));
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(1.1676998740E-1f));
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(-1.2420140846E-1f));
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(1.4249322787E-1f));
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(-1.6668057665E-1f));
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(2.0000714765E-1f));
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(-2.4999993993E-1f));
  y = _mm256_fmadd_ps(y, xr, _mm256_set1_ps(3.3333331174E-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, xr), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, y);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(xr, y));
}

// softplus(x) = x for x > 20 (as PyTorch), else log1p(exp(x)), with
// log1p(y) = log(u)·y/(u-1), u = 1+y (exact where u rounds to 1: y).
static inline __m256 Softplus8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 y = Exp8(_mm256_min_ps(x, _mm256_set1_ps(20.0f)));
  __m256 u = _mm256_add_ps(one, y);
  __m256 d = _mm256_sub_ps(u, one);
  __m256 is_one = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_EQ_OQ);
  __m256 ratio = _mm256_div_ps(y, _mm256_blendv_ps(d, one, is_one));
  __m256 l1p = _mm256_blendv_ps(_mm256_mul_ps(Log8(u), ratio), y, is_one);
  return _mm256_blendv_ps(l1p, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

// x·σ(x).
static inline __m256 Silu8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(x, _mm256_add_ps(one, Exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

static inline float HorizontalSum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

static inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
static inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }
// PyTorch's softplus (threshold 20): x where x > 20, else log1p(exp(x)).
static inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// While alive, the calling thread flushes denormal results to zero and reads
// denormal inputs as zero (MXCSR FTZ and DAZ); the caller's mode comes back
// at the end of the scope. Meant for one kernel's loop, inside each thread of
// its parallel region: a backward pass through long decays multiplies values
// near 1e-38 by more such values, and on x86 each operation on a denormal
// takes a microcode assist of ~100 cycles. A value below 2^-126 carries
// nothing a gradient step can use.
class FlushDenormals {
 public:
#if defined(__SSE__) || defined(__x86_64__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

}  // namespace memmamba::cpu

#endif  // MEMMAMBA_BACKEND_CPU_VEC_MATH_H_
