// bfloat16 <-> float32 conversion; the math is stated in bf16.h.
// Both functions overwrite dst[0, n). The AVX2 paths produce exactly the same
// bits as the scalar F32ToBf16 / Bf16ToF32 in bf16.h (tested).
#include "backend/cpu/bf16.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace memmamba::cpu {

void ConvertF32ToBf16(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX2__)
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf_bits = _mm256_set1_epi32(0x7f800000);
  const __m256i round_bias = _mm256_set1_epi32(0x7fff);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i quiet = _mm256_set1_epi32(0x0040);
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), one);
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(bits, _mm256_add_epi32(round_bias, lsb)), 16);
    const __m256i nan_value =
        _mm256_or_si256(_mm256_srli_epi32(bits, 16), quiet);
    // Both operands are non-negative as int32, so the signed compare is exact.
    const __m256i is_nan =
        _mm256_cmpgt_epi32(_mm256_and_si256(bits, abs_mask), inf_bits);
    const __m256i h32 = _mm256_blendv_epi8(rounded, nan_value, is_nan);
    // Values are in [0, 0xffff], so unsigned-saturating packing is exact;
    // packus works per 128-bit lane, the permute restores element order.
    const __m256i packed = _mm256_permute4x64_epi64(
        _mm256_packus_epi32(h32, h32), _MM_SHUFFLE(3, 1, 2, 0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_castsi256_si128(packed));
  }
#endif
  for (; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

void ConvertBf16ToF32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
  }
#endif
  for (; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

}  // namespace memmamba::cpu
