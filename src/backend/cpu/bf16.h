// bfloat16 <-> float32 conversion (DESIGN.md section 3: weights may be stored
// in bf16; all arithmetic is fp32).
//
// A bf16 value is the upper 16 bits of an IEEE-754 binary32 value:
//   ConvertBf16ToF32:  f32_bits = uint32(bf16) << 16           (exact)
//   ConvertF32ToBf16:  bf16 = round_to_nearest_even(f32_bits / 2^16)
//                      NaN stays NaN (quiet bit 0x0040 forced, sign kept);
//                      finite values beyond the largest bf16 round to +-Inf.
// Both functions overwrite their whole output range.
#ifndef MEMMAMBA_BACKEND_CPU_BF16_H_
#define MEMMAMBA_BACKEND_CPU_BF16_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace memmamba::cpu {

// Single-value conversions, inline so that kernels and tests share one
// definition of the rounding rule.
inline float Bf16ToF32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    // NaN: truncation could drop every payload bit and turn it into Inf.
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);  // ties go to the even result
  return static_cast<uint16_t>(bits >> 16);
}

// Converts n floats at src to bf16 at dst (round to nearest even, NaN kept).
// src and dst must not overlap. n == 0 is a no-op (pointers may then be NULL).
// Thread rule: any thread; no shared state.
void ConvertF32ToBf16(const float* src, uint16_t* dst, size_t n);

// Converts n bf16 values at src to floats at dst (exact). src and dst must not
// overlap. n == 0 is a no-op. Thread rule: any thread; no shared state.
void ConvertBf16ToF32(const uint16_t* src, float* dst, size_t n);

}  // namespace memmamba::cpu

#endif  // MEMMAMBA_BACKEND_CPU_BF16_H_
