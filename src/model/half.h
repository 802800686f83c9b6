// Scalar conversions between float32 and the 16-bit float formats used in
// weight files (DESIGN 3, 5): IEEE binary16 ("F16") and bfloat16 ("BF16"),
// plus a well-defined float64 -> float32 narrowing.
//
// All conversions work on bit patterns with integer arithmetic only, so the
// results do not depend on the floating-point environment (rounding mode,
// flush-to-zero) or on compiler flags such as -ffast-math:
//   - widening (F16/BF16 -> float) is exact, including subnormals, signed
//     zeros, infinities and NaN payloads;
//   - narrowing (float -> F16/BF16) rounds to nearest, ties to even;
//     overflow gives +-infinity, NaN stays NaN (quiet, sign kept).
// Every function is pure and safe to call from any thread.
#ifndef MEMMAMBA_MODEL_HALF_H_
#define MEMMAMBA_MODEL_HALF_H_

#include <cstdint>
#include <cstring>
#include <limits>

namespace memmamba {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float FloatFromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// bfloat16 is the top half of a float32: widening is a shift.
inline float BF16ToFloat(uint16_t h) {
  return FloatFromBits(static_cast<uint32_t>(h) << 16);
}

inline uint16_t FloatToBF16(float f) {
  uint32_t x = FloatBits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) {
    // NaN: truncating could clear every payload bit left and turn it into
    // infinity; set the quiet bit instead.
    return static_cast<uint16_t>((x >> 16) | 0x0040u);
  }
  // Round to nearest even: add 0x7FFF plus the lowest kept bit; a carry
  // into the exponent correctly rounds up to the next binade / infinity.
  x += 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
inline float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float32.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return FloatFromBits(FloatBits(magnitude) | sign);
  }
  if (exponent == 31) {  // infinity or NaN (payload kept, quiet bit too)
    return FloatFromBits(sign | 0x7F800000u | (mantissa << 13));
  }
  return FloatFromBits(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

inline uint16_t FloatToF16(float f) {
  const uint32_t x = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u;  // NaN -> quiet NaN
  if (a >= 0x47800000u) return sign | 0x7C00u;  // >= 2^16 (or inf) -> inf
  if (a < 0x38800000u) {
    // Below 2^-14: the result is an F16 subnormal (or zero). The value is
    // m * 2^(e - 150); in units of 2^-24 that is m >> (126 - e), rounded.
    const uint32_t e = a >> 23;
    if (e < 102) return sign;  // < 2^-25: rounds to (signed) zero
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);  // q == 0x400 is the min normal
  }
  // Normal range: rebias the exponent, then round the 13 dropped bits to
  // nearest even; a carry may step into the next binade or to infinity.
  a -= (127u - 15u) << 23;
  a += 0xFFFu + ((a >> 13) & 1u);
  return static_cast<uint16_t>(sign | (a >> 13));
}

// double -> float with IEEE round-to-nearest semantics made explicit:
// static_cast of an out-of-range double is undefined behaviour in C++, so
// values beyond the float range become +-infinity (or +-FLT_MAX when they
// are within half an ulp of it, as rounding would give).
inline float DoubleToFloat(double d) {
  if (d != d) return std::numeric_limits<float>::quiet_NaN();
  constexpr double kMax = static_cast<double>(std::numeric_limits<float>::max());
  // 2^128 - 2^103: the midpoint between FLT_MAX and 2^128; ties go to the
  // even neighbour, which is 2^128 (infinity).
  constexpr double kInfThreshold = 340282356779733661637539395458142568448.0;
  if (d > kMax) {
    return d >= kInfThreshold ? std::numeric_limits<float>::infinity()
                              : std::numeric_limits<float>::max();
  }
  if (d < -kMax) {
    return d <= -kInfThreshold ? -std::numeric_limits<float>::infinity()
                               : -std::numeric_limits<float>::max();
  }
  return static_cast<float>(d);
}

}  // namespace memmamba

#endif  // MEMMAMBA_MODEL_HALF_H_
