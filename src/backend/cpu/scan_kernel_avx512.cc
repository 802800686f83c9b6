// The AVX-512F build of the scan kernel (scan_kernel.h). Compiled with
// -mavx512f (CMakeLists.txt) and run only where the CPU has it. The 16-lane
// functions below are Exp8, Log8, Softplus8 and Silu8 of vec_math.h written
// for 16 lanes, operation for operation, so that every lane gets the bits
// the 8-lane versions give it.
#include "backend/cpu/scan_kernel.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#include "backend/cpu/scan_kernel_inl.h"

namespace memmamba::cpu {
namespace {

inline __m512 Exp16(__m512 x) {
  const __m512 hi = _mm512_set1_ps(88.3762626647949f);
  const __m512 lo = _mm512_set1_ps(-87.3365447504f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  __m512 result = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), result);  // andnot(under, ·)
}

inline __m512 Log16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512i bits = _mm512_castps_si512(x);
  __m512 e = _mm512_cvtepi32_ps(
      _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(126)));
  __m512 m = _mm512_castsi512_ps(_mm512_or_si512(
      _mm512_and_si512(bits, _mm512_set1_epi32(0x807fffff)), _mm512_set1_epi32(0x3f000000)));
  const __mmask16 small = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm512_sub_ps(e, _mm512_maskz_mov_ps(small, one));
  __m512 xr = _mm512_sub_ps(_mm512_add_ps(m, _mm512_maskz_mov_ps(small, m)), one);
  __m512 z = _mm512_mul_ps(xr, xr);
  __m512 y = _mm512_set1_ps(7.0376836292E-2f);
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(-1.1514610310E-1f));
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(1.1676998740E-1f));
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(-1.2420140846E-1f));
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(1.4249322787E-1f));
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(-1.6668057665E-1f));
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(2.0000714765E-1f));
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(-2.4999993993E-1f));
  y = _mm512_fmadd_ps(y, xr, _mm512_set1_ps(3.3333331174E-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, xr), z);
  y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(_mm512_set1_ps(0.5f), z, y);
  return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(xr, y));
}

inline __m512 Softplus16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 y = Exp16(_mm512_min_ps(x, _mm512_set1_ps(20.0f)));
  __m512 u = _mm512_add_ps(one, y);
  __m512 d = _mm512_sub_ps(u, one);
  const __mmask16 is_one = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_EQ_OQ);
  __m512 ratio = _mm512_div_ps(y, _mm512_mask_blend_ps(is_one, d, one));
  __m512 l1p = _mm512_mask_blend_ps(is_one, _mm512_mul_ps(Log16(u), ratio), y);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(20.0f), _CMP_GT_OQ), l1p, x);
}

inline __m512 Silu16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(x, _mm512_add_ps(one, Exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// Position t, channels [e0, e1): sixteen at a time, the rest as the baseline.
inline void ScanPosition16(const ScanArgs& a, int64_t t, int64_t e0, int64_t e1) {
  const int64_t N = a.N, E = a.E;
  const float* xc = a.xc + t * E;
  const float* dt = a.dt + t * E;
  const float* B = a.B + t * a.ld_bc;
  const float* C = a.C + t * a.ld_bc;
  const float* z = a.z + t * a.ld_z;
  float* y = a.y + t * E;
  int64_t e = e0;
  for (; e + 16 <= e1; e += 16) {
    const __m512 delta =
        Softplus16(_mm512_add_ps(_mm512_loadu_ps(dt + e), _mm512_loadu_ps(a.dt_bias + e)));
    const __m512 u = _mm512_loadu_ps(xc + e);
    const __m512 du = _mm512_mul_ps(delta, u);
    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(a.D + e), u);
    for (int64_t n = 0; n < N; ++n) {
      float* s = a.state + n * E + e;
      const __m512 dA = Exp16(_mm512_mul_ps(delta, _mm512_loadu_ps(a.A + n * E + e)));
      const __m512 vs = _mm512_fmadd_ps(dA, _mm512_loadu_ps(s), _mm512_mul_ps(du, _mm512_set1_ps(B[n])));
      _mm512_storeu_ps(s, vs);
      acc = _mm512_fmadd_ps(vs, _mm512_set1_ps(C[n]), acc);
    }
    _mm512_storeu_ps(y + e, _mm512_mul_ps(acc, Silu16(_mm512_loadu_ps(z + e))));
  }
  ScanPositionFrom(a, t, e, e1);
}

// ScanStepFrom (scan_kernel_inl.h) sixteen channels at a time.
inline void ScanStep16(const ScanArgs& a, int64_t e0, int64_t e1) {
  const int64_t N = a.N, E = a.E;
  alignas(64) float delta[kStepChannels], du[kStepChannels], acc[kStepChannels];
  int64_t e = e0;
  while (e1 - e >= 16) {
    const int64_t len = std::min(kStepChannels, (e1 - e) / 16 * 16);
    for (int64_t i = 0; i < len; i += 16) {
      const __m512 d = Softplus16(_mm512_add_ps(_mm512_loadu_ps(a.dt + e + i),
                                                _mm512_loadu_ps(a.dt_bias + e + i)));
      const __m512 u = _mm512_loadu_ps(a.xc + e + i);
      _mm512_store_ps(delta + i, d);
      _mm512_store_ps(du + i, _mm512_mul_ps(d, u));
      _mm512_store_ps(acc + i, _mm512_mul_ps(_mm512_loadu_ps(a.D + e + i), u));
    }
    for (int64_t n = 0; n < N; ++n) {
      const float* A = a.A + n * E + e;
      float* s = a.state + n * E + e;
      const __m512 b = _mm512_set1_ps(a.B[n]), c = _mm512_set1_ps(a.C[n]);
      for (int64_t i = 0; i < len; i += 16) {
        const __m512 dA = Exp16(_mm512_mul_ps(_mm512_load_ps(delta + i), _mm512_loadu_ps(A + i)));
        const __m512 vs = _mm512_fmadd_ps(dA, _mm512_loadu_ps(s + i),
                                          _mm512_mul_ps(_mm512_load_ps(du + i), b));
        _mm512_storeu_ps(s + i, vs);
        _mm512_store_ps(acc + i, _mm512_fmadd_ps(vs, c, _mm512_load_ps(acc + i)));
      }
    }
    for (int64_t i = 0; i < len; i += 16) {
      _mm512_storeu_ps(a.y + e + i, _mm512_mul_ps(_mm512_load_ps(acc + i),
                                                  Silu16(_mm512_loadu_ps(a.z + e + i))));
    }
    e += len;
  }
  ScanPositionFrom(a, 0, e, e1);
}

}  // namespace

void ScanChannelsAvx512(const ScanArgs& a, int64_t e0, int64_t e1) {
  if (a.T == 1 && a.checkpoints == nullptr) return ScanStep16(a, e0, e1);
  ScanRange(a, e0, e1, [&](int64_t t) { ScanPosition16(a, t, e0, e1); });
}

}  // namespace memmamba::cpu

#endif  // defined(__AVX512F__)
