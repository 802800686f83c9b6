// Tests of src/backend/cpu/matmul.h and bf16.h.
//
// Checks  y[m, n] (=|+=) sum_k x[m, k] * W[n, k]  against a float64 loop, with
// the error bounded by the worst case of an fp32 sum in any order:
//   |y - ref| <= (K + 3) * 2^-24 * (sum_k |x[m, k]| * |W[n, k]| + |y0[m, n]|),
// checks that n_threads never changes a bit, that padding columns are left
// alone, and that the caller's OpenMP ICV survives the call. The bf16 tests
// cover the round trip of every bf16 value and the rounding rule (ties to
// even, NaN, Inf, overflow). The AMX paths of the bf16 and fp32 products
// (matmul_amx.h) get the same checks on their own, over ragged shapes, values
// of many magnitudes, weights whose bf16 parts are all non-zero, sums that
// cancel, and against the sgemm path; those tests skip where the CPU or the
// OS does not allow AMX.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/bf16.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/matmul_amx.h"
#include "gtest/gtest.h"

namespace memmamba::cpu {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---------------------------------------------------------------------------
// bf16 conversion.

TEST(Bf16Test, EveryBf16RoundTrips) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> widened(all.size());
  ConvertBf16ToF32(all.data(), widened.data(), all.size());
  std::vector<uint16_t> back(all.size());
  ConvertF32ToBf16(widened.data(), back.data(), widened.size());
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(Bits(widened[i]), i << 16) << i;
    if (std::isnan(widened[i])) {
      // Signalling NaNs come back quiet; sign and payload are kept.
      EXPECT_EQ(back[i], i | 0x0040u) << i;
    } else {
      EXPECT_EQ(back[i], i) << i;
    }
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  struct Case {
    uint32_t f32;
    uint16_t bf16;
  };
  const Case cases[] = {
      {0x3f800000u, 0x3f80},  // 1.0
      {0x3f808000u, 0x3f80},  // 1 + 2^-8: tie, even stays (mantissa ...0)
      {0x3f818000u, 0x3f82},  // 1 + 3*2^-8: tie, odd rounds up to even
      {0x3f808001u, 0x3f81},  // just above the tie: up
      {0x3f807fffu, 0x3f80},  // just below the tie: down
      {0xbf808000u, 0xbf80},  // negative tie to even
      {0xbf818000u, 0xbf82},  // negative tie, odd mantissa: to even
      {0x00000000u, 0x0000},  // +0
      {0x80000000u, 0x8000},  // -0
      {0x00000001u, 0x0000},  // smallest subnormal rounds to 0
      {0x00008000u, 0x0000},  // subnormal tie to even (0)
      {0x00018000u, 0x0002},  // subnormal tie to even (up)
      {0x7f800000u, 0x7f80},  // +Inf
      {0xff800000u, 0xff80},  // -Inf
      {0x7f7fffffu, 0x7f80},  // FLT_MAX overflows to +Inf
      {0xff7fffffu, 0xff80},  // -FLT_MAX overflows to -Inf
      {0x7f7f7fffu, 0x7f7f},  // largest value that stays finite
      {0x7fc00000u, 0x7fc0},  // quiet NaN
      {0xffc00000u, 0xffc0},  // negative quiet NaN
      {0x7f800001u, 0x7fc0},  // NaN with only low payload bits stays NaN
      {0x7fbfffffu, 0x7fff},  // signalling NaN: quieted, high payload kept
      {0xff800001u, 0xffc0},  // negative NaN, low payload only
  };
  for (const Case& c : cases) {
    EXPECT_EQ(F32ToBf16(FromBits(c.f32)), c.bf16) << std::hex << c.f32;
    // Through the vector path too: 8 copies, then 3 more for the tail.
    std::vector<float> src(11, FromBits(c.f32));
    std::vector<uint16_t> dst(src.size());
    ConvertF32ToBf16(src.data(), dst.data(), src.size());
    for (uint16_t h : dst) EXPECT_EQ(h, c.bf16) << std::hex << c.f32;
  }
}

TEST(Bf16Test, VectorPathMatchesScalarOnRandomBits) {
  std::mt19937 rng(7);
  for (size_t n : {0u, 1u, 7u, 8u, 9u, 1000u, 4099u}) {
    std::vector<float> src(n);
    for (float& f : src) f = FromBits(static_cast<uint32_t>(rng()));
    std::vector<uint16_t> dst(n);
    ConvertF32ToBf16(src.data(), dst.data(), n);
    std::vector<float> wide(n);
    ConvertBf16ToF32(dst.data(), wide.data(), n);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(dst[i], F32ToBf16(src[i])) << i;
      ASSERT_EQ(Bits(wide[i]), static_cast<uint32_t>(dst[i]) << 16) << i;
      if (std::isnan(src[i])) {
        EXPECT_TRUE(std::isnan(wide[i]));
      } else if (std::isfinite(wide[i])) {
        // Rounding error at most half a bf16 ulp: 2^-9 relative.
        // Half a bf16 ulp: 2^-8 relative for normal values, 2^-134 absolute
        // among subnormals.
        const double half_ulp =
            std::max(std::ldexp(std::fabs(static_cast<double>(src[i])), -8),
                     std::ldexp(1.0, -134));
        EXPECT_LE(std::fabs(static_cast<double>(wide[i]) - src[i]), half_ulp);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Matmul.

enum class WeightType { kF32, kBf16 };

struct Problem {
  int64_t M, N, K, ldx, ldy;
  std::vector<float> x;      // M * ldx, padding holds NaN (must not be read)
  std::vector<float> w_f32;  // N * K, rounded to bf16 values unless asked not
  std::vector<uint16_t> w_bf16;  // w_f32 rounded to bf16
  std::vector<float> y0;  // M * ldy, the initial y
};

enum class Values {
  kUniform,  // uniform in (-1, 1)
  // Magnitudes from 2^-20 to 2^20 (and some exact zeros), so that the parts
  // of the AMX split and the terms of each sum span many binades.
  kSpread,
  // Every value's mid and lo bf16 parts near their largest (the low 16 bits
  // of the mantissa 0b0xxxxxxxx0111111), so that the part products the fp32
  // AMX path leaves out are as large as they get; magnitudes 2^-4 to 2^4.
  kLargeParts,
};

// With bf16_weights, W holds values exactly representable in bf16, so both
// entry points see the same weights and share one reference; otherwise W is
// full fp32 (only for MatmulF32).
Problem MakeProblem(int64_t M, int64_t N, int64_t K, int64_t x_pad,
                    int64_t y_pad, uint32_t seed,
                    Values values = Values::kUniform, bool bf16_weights = true) {
  Problem p{M, N, K, K + x_pad, N + y_pad, {}, {}, {}, {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::uniform_int_distribution<int> binade(-20, 20);
  const auto value = [&]() -> float {
    if (values == Values::kLargeParts) {
      const uint32_t r = static_cast<uint32_t>(rng());
      const uint32_t exponent = 127 - 4 + r % 9;
      const uint32_t mantissa =
          ((r >> 4) & 0x7fu) << 16 | ((r >> 11) & 0xffu) << 7 | 0x3fu;
      return FromBits((r >> 31) << 31 | exponent << 23 | mantissa);
    }
    const float v = dist(rng);
    if (values == Values::kUniform) return v;
    const int e = binade(rng);
    return e == 20 ? 0.0f : std::ldexp(v, e);
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  p.x.assign(static_cast<size_t>(M * p.ldx), nan);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k) p.x[m * p.ldx + k] = value();
  }
  p.w_f32.resize(static_cast<size_t>(N * K));
  for (float& v : p.w_f32) {
    v = bf16_weights ? Bf16ToF32(F32ToBf16(value())) : value();
  }
  p.w_bf16.resize(p.w_f32.size());
  ConvertF32ToBf16(p.w_f32.data(), p.w_bf16.data(), p.w_f32.size());
  p.y0.resize(static_cast<size_t>(M * p.ldy));
  for (float& v : p.y0) v = value();
  return p;
}

// y before a product: y0, with NaN in the region an overwriting product
// writes (it must not leak into the result).
std::vector<float> StartingY(const Problem& p, bool accumulate) {
  std::vector<float> y = p.y0;
  if (!accumulate) {
    for (int64_t m = 0; m < p.M; ++m) {
      for (int64_t n = 0; n < p.N; ++n) {
        y[m * p.ldy + n] = std::numeric_limits<float>::quiet_NaN();
      }
    }
  }
  return y;
}

std::vector<float> RunMatmul(const Problem& p, WeightType type, bool accumulate,
                             int n_threads) {
  std::vector<float> y = StartingY(p, accumulate);
  if (type == WeightType::kF32) {
    MatmulF32(p.x.data(), p.M, p.K, p.ldx, p.w_f32.data(), p.N, y.data(), p.ldy,
              accumulate, n_threads);
  } else {
    MatmulBf16(p.x.data(), p.M, p.K, p.ldx, p.w_bf16.data(), p.N, y.data(),
               p.ldy, accumulate, n_threads);
  }
  return y;
}

void CheckAgainstReference(const Problem& p, bool accumulate,
                           const std::vector<float>& y,
                           const std::string& what) {
  const double u = std::ldexp(1.0, -24);
  for (int64_t m = 0; m < p.M; ++m) {
    for (int64_t n = 0; n < p.N; ++n) {
      double ref = 0.0, abs_sum = 0.0;
      for (int64_t k = 0; k < p.K; ++k) {
        const double prod =
            static_cast<double>(p.x[m * p.ldx + k]) * p.w_f32[n * p.K + k];
        ref += prod;
        abs_sum += std::fabs(prod);
      }
      const double y0 = p.y0[m * p.ldy + n];
      if (accumulate) {
        ref += y0;
        abs_sum += std::fabs(y0);
      }
      const double bound = (p.K + 3) * u * abs_sum;
      ASSERT_LE(std::fabs(y[m * p.ldy + n] - ref), bound)
          << what << " m=" << m << " n=" << n << " y=" << y[m * p.ldy + n]
          << " ref=" << ref;
    }
    // Padding columns are never written.
    for (int64_t n = p.N; n < p.ldy; ++n) {
      ASSERT_EQ(Bits(y[m * p.ldy + n]), Bits(p.y0[m * p.ldy + n]))
          << what << " padding m=" << m << " n=" << n;
    }
  }
}

std::string Describe(const Problem& p, WeightType type, bool accumulate) {
  return std::string(type == WeightType::kF32 ? "f32" : "bf16") +
         " M=" + std::to_string(p.M) + " N=" + std::to_string(p.N) +
         " K=" + std::to_string(p.K) + " ldx=" + std::to_string(p.ldx) +
         " ldy=" + std::to_string(p.ldy) + (accumulate ? " acc" : " set");
}

// Runs every check on one shape: reference, bitwise n_threads invariance.
void CheckShape(int64_t M, int64_t N, int64_t K, int64_t x_pad, int64_t y_pad) {
  const Problem p = MakeProblem(M, N, K, x_pad, y_pad,
                                static_cast<uint32_t>(M * 7919 + N * 31 + K));
  for (WeightType type : {WeightType::kF32, WeightType::kBf16}) {
    for (bool accumulate : {false, true}) {
      const std::string what = Describe(p, type, accumulate);
      const std::vector<float> y1 = RunMatmul(p, type, accumulate, 1);
      CheckAgainstReference(p, accumulate, y1, what);
      for (int n_threads : {2, 3}) {
        const std::vector<float> yt = RunMatmul(p, type, accumulate, n_threads);
        ASSERT_EQ(std::memcmp(y1.data(), yt.data(), y1.size() * sizeof(float)),
                  0)
            << what << ": n_threads=" << n_threads << " differs from 1";
      }
    }
  }
}

class MatmulShapeTest : public testing::TestWithParam<int64_t> {};

TEST_P(MatmulShapeTest, MatchesFloat64ReferenceAndIgnoresThreadCount) {
  const int64_t M = GetParam();
  for (int64_t K : {1, 5, 8, 13, 64, 67, 769}) {
    for (int64_t N : {1, 3, 17, 64, 65, 130}) {
      CheckShape(M, N, K, /*x_pad=*/0, /*y_pad=*/0);
      CheckShape(M, N, K, /*x_pad=*/3, /*y_pad=*/5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DecodeAndPrefillM, MatmulShapeTest,
                         testing::Values(1, 2, 3, 7, 16, 33, 100));

// Shapes big enough that every path really splits its work between threads:
// streaming over N, sgemm over N and over M, bf16 panels, K above the sgemm
// K block.
TEST(MatmulTest, LargeShapesSplitAcrossThreads) {
  CheckShape(1, 1000, 768, 0, 0);
  CheckShape(16, 700, 1537, 8, 1);
  CheckShape(17, 300, 771, 1, 1);
  CheckShape(64, 1003, 515, 0, 3);
  CheckShape(300, 50, 257, 2, 2);
  CheckShape(129, 200, 1601, 0, 0);
}

TEST(MatmulTest, EmptyKOverwritesWithZeroOrKeeps) {
  std::vector<float> y(6, 5.0f);
  MatmulF32(nullptr, 2, 0, 0, nullptr, 2, y.data(), 3, false, 2);
  EXPECT_EQ(y, (std::vector<float>{0, 0, 5, 0, 0, 5}));
  std::vector<float> z(6, 5.0f);
  MatmulBf16(nullptr, 2, 0, 0, nullptr, 2, z.data(), 3, true, 2);
  EXPECT_EQ(z, std::vector<float>(6, 5.0f));
  MatmulBf16(nullptr, 0, 4, 4, nullptr, 0, nullptr, 0, false, 2);  // no-op
}

// The caller's omp_get_max_threads() is the same after every call, whatever
// the path, and results do not change when called from a parallel region.
TEST(MatmulTest, RestoresOpenMpIcvAndWorksInsideParallelRegions) {
  const int saved = omp_get_max_threads();
  const Problem small = MakeProblem(1, 300, 200, 0, 0, 1);
  const Problem large = MakeProblem(100, 300, 200, 0, 0, 2);
  for (int icv : {1, 2, 3}) {
    omp_set_num_threads(icv);
    for (const Problem* p : {&small, &large}) {
      for (WeightType type : {WeightType::kF32, WeightType::kBf16}) {
        for (int n_threads : {1, 2, 4}) {
          RunMatmul(*p, type, false, n_threads);
          ASSERT_EQ(omp_get_max_threads(), icv)
              << Describe(*p, type, false) << " n_threads=" << n_threads;
        }
      }
    }
  }
  omp_set_num_threads(2);
  for (const Problem* p : {&small, &large}) {
    for (WeightType type : {WeightType::kF32, WeightType::kBf16}) {
      const std::vector<float> expected = RunMatmul(*p, type, true, 1);
      std::vector<float> got[2];
#pragma omp parallel num_threads(2)
      {
        got[omp_get_thread_num()] = RunMatmul(*p, type, true, 2);
        // Inside the region too: the member's ICV is unchanged.
        EXPECT_EQ(omp_get_max_threads(), 2);
      }
      for (const std::vector<float>& g : got) {
        EXPECT_EQ(std::memcmp(g.data(), expected.data(),
                              expected.size() * sizeof(float)),
                  0)
            << Describe(*p, type, true);
      }
    }
  }
  omp_set_num_threads(saved);
}

// ---------------------------------------------------------------------------
// The AMX path (matmul_amx.h).

// Turns the AMX path of MatmulBf16 and MatmulF32 off for a scope (as
// MM_CPU_AMX=0 does).
class AmxOff {
 public:
  AmxOff() { SetAmxBf16ForTesting(false); }
  ~AmxOff() { SetAmxBf16ForTesting(true); }
  AmxOff(const AmxOff&) = delete;
  AmxOff& operator=(const AmxOff&) = delete;
};

#define SKIP_WITHOUT_AMX()                                              \
  do {                                                                  \
    if (!AmxBf16Supported()) {                                          \
      GTEST_SKIP() << "this CPU or OS does not allow AMX-BF16 tiles";   \
    }                                                                   \
  } while (false)

// The AMX product itself, whatever MM_CPU_AMX says.
std::vector<float> RunAmx(const Problem& p, WeightType type, bool accumulate,
                          int n_threads) {
  std::vector<float> y = StartingY(p, accumulate);
  if (type == WeightType::kF32) {
    EXPECT_TRUE(MatmulF32Amx(p.x.data(), p.M, p.K, p.ldx, p.w_f32.data(), p.N,
                             y.data(), p.ldy, accumulate, n_threads));
  } else {
    EXPECT_TRUE(MatmulBf16Amx(p.x.data(), p.M, p.K, p.ldx, p.w_bf16.data(),
                              p.N, y.data(), p.ldy, accumulate, n_threads));
  }
  return y;
}

// The reference, the header's bound, untouched padding, and the same bits
// for 1, 2 and 3 threads, for one problem.
void CheckAmxProblem(const Problem& p, WeightType type,
                     const std::string& note) {
  for (bool accumulate : {false, true}) {
    const std::string what = "amx " + Describe(p, type, accumulate) + note;
    const std::vector<float> y1 = RunAmx(p, type, accumulate, 1);
    CheckAgainstReference(p, accumulate, y1, what);
    for (int n_threads : {2, 3}) {
      const std::vector<float> yt = RunAmx(p, type, accumulate, n_threads);
      ASSERT_EQ(std::memcmp(y1.data(), yt.data(), y1.size() * sizeof(float)),
                0)
          << what << ": n_threads=" << n_threads << " differs from 1";
    }
  }
}

// The same on a random problem of the shape; fp32 weights are full fp32.
void CheckAmxShape(WeightType type, int64_t M, int64_t N, int64_t K,
                   int64_t x_pad, int64_t y_pad, Values values) {
  const Problem p = MakeProblem(
      M, N, K, x_pad, y_pad,
      static_cast<uint32_t>(M * 7919 + N * 31 + K + static_cast<int>(values)),
      values, /*bf16_weights=*/type == WeightType::kBf16);
  CheckAmxProblem(p, type,
                  " values=" + std::to_string(static_cast<int>(values)));
}

constexpr WeightType kBothTypes[] = {WeightType::kBf16, WeightType::kF32};

TEST(AmxMatmulTest, MatchesFloat64ReferenceOnRaggedShapes) {
  SKIP_WITHOUT_AMX();
  for (WeightType type : kBothTypes) {
    for (int64_t M : {17, 31, 48, 100}) {
      for (int64_t K : {1, 2, 5, 31, 32, 33, 48, 67, 200, 769}) {
        for (int64_t N : {1, 15, 17, 48, 80, 130}) {
          for (Values v : {Values::kUniform, Values::kSpread,
                           Values::kLargeParts}) {
            CheckAmxShape(type, M, N, K, /*x_pad=*/0, /*y_pad=*/0, v);
            CheckAmxShape(type, M, N, K, /*x_pad=*/3, /*y_pad=*/5, v);
          }
        }
      }
    }
  }
}

// Shapes with many blocks of the grid (panels of W and blocks of rows of x),
// a K of several panels' worth, and the model's products (Mamba-130m: x_proj
// 80 x 1536, dt_proj 1536 x 48, out_proj 768 x 1536, in_proj 3072 x 768),
// also with K = 3072.
TEST(AmxMatmulTest, LargeShapesSplitAcrossThreads) {
  SKIP_WITHOUT_AMX();
  for (WeightType type : kBothTypes) {
    CheckAmxShape(type, 300, 257, 129, 1, 2, Values::kSpread);
    CheckAmxShape(type, 300, 80, 1536, 0, 3, Values::kUniform);
    CheckAmxShape(type, 130, 1536, 48, 2, 0, Values::kSpread);
    CheckAmxShape(type, 64, 1003, 515, 0, 3, Values::kUniform);
    CheckAmxShape(type, 129, 200, 1601, 5, 1, Values::kSpread);
    CheckAmxShape(type, 17, 700, 2100, 0, 0, Values::kUniform);
    CheckAmxShape(type, 200, 97, 3072, 1, 1, Values::kLargeParts);
    CheckAmxShape(type, 45, 768, 1536, 0, 0, Values::kSpread);
    CheckAmxShape(type, 33, 3072, 768, 0, 0, Values::kLargeParts);
  }
}

// Sums that cancel: every row of x is (a, -a, b, -b, ...) against W rows
// (c, c, d, d, ...), or the pairs cancel but for a small difference, so the
// exact result is 0 or tiny next to sum |x W| and only the bound relative to
// that sum can hold. Also W whose mid and lo parts are all as large as they
// get, against x likewise, for every small K.
TEST(AmxMatmulTest, CancellingSums) {
  SKIP_WITHOUT_AMX();
  for (WeightType type : kBothTypes) {
    for (int64_t K : {2, 4, 6, 34, 48, 770, 1536}) {
      for (Values v : {Values::kUniform, Values::kSpread,
                       Values::kLargeParts}) {
        for (bool nudge : {false, true}) {
          Problem p = MakeProblem(40, 35, K, 1, 2, static_cast<uint32_t>(K),
                                  v, type == WeightType::kBf16);
          for (int64_t m = 0; m < p.M; ++m) {
            float* row = p.x.data() + m * p.ldx;
            for (int64_t k = 0; k + 1 < K; k += 2) {
              // nudge: one ulp off, so the sum is small but not 0.
              row[k + 1] = nudge ? -std::nextafter(row[k], 0.0f) : -row[k];
            }
          }
          for (int64_t n = 0; n < p.N; ++n) {
            float* row = p.w_f32.data() + n * K;
            for (int64_t k = 0; k + 1 < K; k += 2) row[k + 1] = row[k];
          }
          ConvertF32ToBf16(p.w_f32.data(), p.w_bf16.data(), p.w_f32.size());
          CheckAmxProblem(p, type,
                          std::string(" cancelling") + (nudge ? " nudged" : ""));
        }
      }
    }
  }
}

// Both paths of each product on one machine: each within the bound of the
// exact result, so within twice the bound of each other.
TEST(AmxMatmulTest, AgreesWithTheSgemmPath) {
  SKIP_WITHOUT_AMX();
  const double u = std::ldexp(1.0, -24);
  for (WeightType type : kBothTypes) {
    for (auto [M, N, K] : {std::array<int64_t, 3>{17, 80, 48},
                           {100, 130, 769}, {257, 300, 200}, {64, 1003, 515},
                           {300, 96, 1536}}) {
      for (Values v : {Values::kUniform, Values::kSpread,
                       Values::kLargeParts}) {
        const Problem p =
            MakeProblem(M, N, K, 2, 3, 5, v, type == WeightType::kBf16);
        for (bool accumulate : {false, true}) {
          const std::vector<float> amx = RunAmx(p, type, accumulate, 2);
          std::vector<float> sgemm;
          {
            AmxOff off;
            sgemm = RunMatmul(p, type, accumulate, 2);
          }
          const std::string what = Describe(p, type, accumulate);
          CheckAgainstReference(p, accumulate, sgemm, "sgemm " + what);
          for (int64_t m = 0; m < M; ++m) {
            for (int64_t n = 0; n < N; ++n) {
              double abs_sum =
                  accumulate ? std::fabs(p.y0[m * p.ldy + n]) : 0.0;
              for (int64_t k = 0; k < K; ++k) {
                abs_sum += std::fabs(static_cast<double>(p.x[m * p.ldx + k]) *
                                     p.w_f32[n * K + k]);
              }
              ASSERT_LE(std::fabs(static_cast<double>(amx[m * p.ldy + n]) -
                                  sgemm[m * p.ldy + n]),
                        2.0 * (K + 3) * u * abs_sum)
                  << what << " m=" << m << " n=" << n;
            }
          }
        }
      }
    }
  }
}

// Through MatmulBf16 and MatmulF32: the path is taken for M > 16 and gives
// the AMX bits.
TEST(AmxMatmulTest, MatmulTakesThePath) {
  SKIP_WITHOUT_AMX();
  if (!AmxBf16Enabled()) GTEST_SKIP() << "MM_CPU_AMX=0";
  for (WeightType type : kBothTypes) {
    const Problem p = MakeProblem(40, 100, 70, 1, 1, 9, Values::kUniform,
                                  type == WeightType::kBf16);
    const std::vector<float> amx = RunAmx(p, type, true, 2);
    const std::vector<float> via = RunMatmul(p, type, true, 2);
    EXPECT_EQ(std::memcmp(amx.data(), via.data(), amx.size() * sizeof(float)),
              0)
        << Describe(p, type, true);
  }
}

// NaN activations give NaN; Inf activations give the same Inf with bf16
// weights and a non-finite result with fp32 weights (where a zero part of W
// meets the Inf, NaN); a finite activation beyond the largest bf16 (which
// rounds to Inf in bf16) still gives a finite sum.
TEST(AmxMatmulTest, NonFiniteAndHugeActivations) {
  SKIP_WITHOUT_AMX();
  for (WeightType type : kBothTypes) {
    const bool bf16 = type == WeightType::kBf16;
    Problem p = MakeProblem(20, 18, 40, 0, 0, 3, Values::kUniform, bf16);
    // Positive weights, below 1 for fp32 so that huge * W stays finite.
    for (float& v : p.w_f32) v = std::fabs(v) * (bf16 ? 1.0f : 0.5f) + 0.25f;
    if (bf16) {
      for (float& v : p.w_f32) v = Bf16ToF32(F32ToBf16(v));
    }
    ConvertF32ToBf16(p.w_f32.data(), p.w_bf16.data(), p.w_f32.size());
    const float inf = std::numeric_limits<float>::infinity();
    p.x[0 * p.ldx + 3] = inf;
    p.x[1 * p.ldx + 39] = -inf;
    p.x[2 * p.ldx + 17] = std::numeric_limits<float>::quiet_NaN();
    // Beyond 0x7f7f7fff, the largest value that stays finite in bf16.
    const float huge = FromBits(0x7f7fc000u);
    for (int64_t m = 3; m < p.M; ++m) {
      for (int64_t k = 0; k < p.K; ++k) p.x[m * p.ldx + k] = 0.0f;
    }
    p.x[3 * p.ldx + 5] = huge;
    p.x[4 * p.ldx + 0] = -huge;
    const std::vector<float> y = RunAmx(p, type, false, 1);
    const double u = std::ldexp(1.0, -24);
    for (int64_t n = 0; n < p.N; ++n) {
      if (bf16) {
        EXPECT_EQ(y[0 * p.ldy + n], inf) << n;
        EXPECT_EQ(y[1 * p.ldy + n], -inf) << n;
      } else {
        EXPECT_FALSE(std::isfinite(y[0 * p.ldy + n])) << n;
        EXPECT_FALSE(std::isfinite(y[1 * p.ldy + n])) << n;
      }
      EXPECT_TRUE(std::isnan(y[2 * p.ldy + n])) << n;
      if (bf16) {
        // One term each: the product itself, rounded once.
        EXPECT_EQ(y[3 * p.ldy + n], huge * p.w_f32[n * p.K + 5]) << n;
        EXPECT_EQ(y[4 * p.ldy + n], -huge * p.w_f32[n * p.K + 0]) << n;
      } else {
        // Split W: several products and roundings, within the bound (K = 40).
        const double ref3 = static_cast<double>(huge) * p.w_f32[n * p.K + 5];
        const double ref4 = -static_cast<double>(huge) * p.w_f32[n * p.K];
        EXPECT_LE(std::fabs(y[3 * p.ldy + n] - ref3), 43 * u * std::fabs(ref3))
            << n;
        EXPECT_LE(std::fabs(y[4 * p.ldy + n] - ref4), 43 * u * std::fabs(ref4))
            << n;
      }
    }
  }
}

// fp32 weights that are not finite or lie beyond the largest bf16: NaN in W
// gives NaN, Inf a non-finite result (NaN where a zero part of x meets it,
// as 0 * Inf is), a huge finite weight keeps a finite sum.
TEST(AmxMatmulTest, NonFiniteAndHugeF32Weights) {
  SKIP_WITHOUT_AMX();
  Problem p = MakeProblem(20, 6, 40, 0, 0, 4, Values::kUniform, false);
  for (float& v : p.x) v = std::fabs(v) * 0.5f + 0.25f;  // positive, < 1
  const float inf = std::numeric_limits<float>::infinity();
  const float huge = FromBits(0x7f7fc000u);
  for (int64_t k = 0; k < p.K; ++k) {
    p.w_f32[3 * p.K + k] = 0.0f;
    p.w_f32[4 * p.K + k] = 0.0f;
  }
  p.w_f32[0 * p.K + 7] = inf;
  p.w_f32[1 * p.K + 33] = -inf;
  p.w_f32[2 * p.K + 0] = std::numeric_limits<float>::quiet_NaN();
  p.w_f32[3 * p.K + 9] = huge;
  p.w_f32[4 * p.K + 39] = -huge;
  p.x[5 * p.ldx + 7] = 0.0f;  // 0 * Inf
  const std::vector<float> y = RunAmx(p, WeightType::kF32, false, 1);
  const double u = std::ldexp(1.0, -24);
  for (int64_t m = 0; m < p.M; ++m) {
    if (m == 5) {
      EXPECT_TRUE(std::isnan(y[m * p.ldy + 0])) << m;
    } else {
      EXPECT_FALSE(std::isfinite(y[m * p.ldy + 0])) << m;
    }
    EXPECT_FALSE(std::isfinite(y[m * p.ldy + 1])) << m;
    EXPECT_TRUE(std::isnan(y[m * p.ldy + 2])) << m;
    const double ref3 = static_cast<double>(p.x[m * p.ldx + 9]) * huge;
    const double ref4 = -static_cast<double>(p.x[m * p.ldx + 39]) * huge;
    EXPECT_LE(std::fabs(y[m * p.ldy + 3] - ref3), 43 * u * std::fabs(ref3))
        << m;
    EXPECT_LE(std::fabs(y[m * p.ldy + 4] - ref4), 43 * u * std::fabs(ref4))
        << m;
  }
}

}  // namespace
}  // namespace memmamba::cpu
