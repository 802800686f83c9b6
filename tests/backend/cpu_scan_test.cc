// The two builds of the scan kernel (src/backend/cpu/scan_kernel.h) give the
// same bits: sixteen channels per vector or eight (and the scalar tail), and
// a one-position step gives the bits of a longer call.
#include "backend/cpu/scan_kernel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace memmamba::cpu {
namespace {

struct ScanCase {
  int64_t T, E, N;
};

class ScanKernelTest : public ::testing::TestWithParam<ScanCase> {};

TEST_P(ScanKernelTest, Avx512BuildGivesTheBaselineBits) {
  if (!HaveAvx512Scan()) GTEST_SKIP() << "no AVX-512F build or CPU";
  const auto [T, E, N] = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(T * 1000 + E * 10 + N));
  std::normal_distribution<float> g(0.0f, 1.0f);
  auto fill = [&](std::vector<float>* v, size_t n, float scale, float shift) {
    v->resize(n);
    for (float& x : *v) x = shift + scale * g(rng);
  };
  const int64_t ld_bc = 2 * N + 3, ld_z = E + 5;
  std::vector<float> xc, dt, bias, A, bc, D, z, state;
  fill(&xc, T * E, 1.0f, 0.0f);
  fill(&dt, T * E, 4.0f, -2.0f);  // softplus on both sides of its x > 20 cut
  for (int64_t i = 0; i < T * E; i += 7) dt[i] = 25.0f + i % 3;
  for (int64_t i = 3; i < T * E; i += 11) dt[i] = -90.0f;  // exp underflows to 0
  fill(&bias, E, 0.5f, -3.0f);
  fill(&A, N * E, 1.0f, 0.0f);
  for (float& a : A) a = -std::exp(a);
  fill(&bc, T * ld_bc, 1.0f, 0.0f);
  fill(&D, E, 1.0f, 1.0f);
  fill(&z, T * ld_z, 2.0f, 0.0f);
  fill(&state, N * E, 1.0f, 0.0f);
  const int64_t chunks = (T + kScanChunk - 1) / kScanChunk;

  std::vector<float> s_base = state, s_512 = state, y_base(T * E), y_512(T * E);
  std::vector<float> cp_base(chunks * N * E, 0.0f), cp_512 = cp_base;
  auto args = [&](float* s, float* y, float* cp) {
    ScanArgs a;
    a.T = T;
    a.E = E;
    a.N = N;
    a.xc = xc.data();
    a.dt = dt.data();
    a.dt_bias = bias.data();
    a.A = A.data();
    a.B = bc.data();
    a.C = bc.data() + N;
    a.ld_bc = ld_bc;
    a.D = D.data();
    a.z = z.data();
    a.ld_z = ld_z;
    a.state = s;
    a.y = y;
    a.checkpoints = cp;
    return a;
  };
  const ScanArgs base = args(s_base.data(), y_base.data(), cp_base.data());
  const ScanArgs wide = args(s_512.data(), y_512.data(), cp_512.data());
  // Channel blocks as the backend splits them, with odd edges.
  for (int64_t e0 = 0; e0 < E; e0 += 40) {
    const int64_t e1 = std::min(E, e0 + 40);
    ScanChannelsBaseline(base, e0, e1);
    ScanChannelsAvx512(wide, e0, e1);
  }
  auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same_bits(y_base, y_512));
  EXPECT_TRUE(same_bits(s_base, s_512));
  EXPECT_TRUE(same_bits(cp_base, cp_512));
  bool finite = true;
  for (float v : y_base) finite = finite && std::isfinite(v);
  EXPECT_TRUE(finite);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScanKernelTest,
                         ::testing::Values(ScanCase{1, 1536, 16}, ScanCase{37, 72, 16},
                                           ScanCase{130, 77, 8}, ScanCase{5, 200, 4}));

// A one-position call (a decode step: n outermost, ScanStepFrom) gives the
// bits of the position-major loop that a call over several positions runs.
TEST(ScanKernelTest, OnePositionStepsGiveThePositionMajorBits) {
  const int64_t T = 3, E = 1043, N = 16;  // runs over kStepChannels, a scalar tail
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  auto random = [&](size_t n, float scale, float shift) {
    std::vector<float> v(n);
    for (float& x : v) x = shift + scale * g(rng);
    return v;
  };
  const int64_t ld_bc = 2 * N + 1, ld_z = 2 * E;
  std::vector<float> xc = random(T * E, 1.0f, 0.0f), dt = random(T * E, 4.0f, -2.0f),
                     bias = random(E, 0.5f, -3.0f), A = random(N * E, 1.0f, 0.0f),
                     bc = random(T * ld_bc, 1.0f, 0.0f), D = random(E, 1.0f, 1.0f),
                     z = random(T * ld_z, 2.0f, 0.0f), state = random(N * E, 1.0f, 0.0f);
  for (int64_t i = 0; i < T * E; i += 13) dt[i] = 30.0f;
  for (float& a : A) a = -std::exp(a);
  auto args = [&](int64_t t0, int64_t len, float* s, float* y) {
    ScanArgs a;
    a.T = len;
    a.E = E;
    a.N = N;
    a.xc = xc.data() + t0 * E;
    a.dt = dt.data() + t0 * E;
    a.dt_bias = bias.data();
    a.A = A.data();
    a.B = bc.data() + t0 * ld_bc;
    a.C = bc.data() + t0 * ld_bc + N;
    a.ld_bc = ld_bc;
    a.D = D.data();
    a.z = z.data() + t0 * ld_z;
    a.ld_z = ld_z;
    a.state = s;
    a.y = y + t0 * E;
    return a;
  };
  using Kernel = void (*)(const ScanArgs&, int64_t, int64_t);
  std::vector<Kernel> kernels = {ScanChannelsBaseline};
  if (HaveAvx512Scan()) kernels.push_back(ScanChannelsAvx512);
  for (Kernel kernel : kernels) {
    std::vector<float> s_all = state, s_step = state, y_all(T * E), y_step(T * E);
    kernel(args(0, T, s_all.data(), y_all.data()), 0, E);
    for (int64_t t = 0; t < T; ++t) {
      // Ranges as the backend splits channels: multiples of 16 but the last
      // (a vector's lanes and the scalar tail compute exp differently).
      kernel(args(t, 1, s_step.data(), y_step.data()), 0, 528);
      kernel(args(t, 1, s_step.data(), y_step.data()), 528, 1040);
      kernel(args(t, 1, s_step.data(), y_step.data()), 1040, E);
    }
    EXPECT_EQ(0, std::memcmp(y_all.data(), y_step.data(), y_all.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(s_all.data(), s_step.data(), s_all.size() * sizeof(float)));
  }
}

TEST(ScanKernelTest, DispatchRunsTheChosenBuild) {
  const int64_t T = 3, E = 24, N = 2;
  std::vector<float> ones(T * 2 * E + 2 * N * T + 64, 0.5f), s1(N * E, 0.1f), s2 = s1,
      y1(T * E), y2(T * E), A(N * E, -1.0f);
  ScanArgs a;
  a.T = T;
  a.E = E;
  a.N = N;
  a.xc = a.dt = a.dt_bias = a.D = a.z = ones.data();
  a.A = A.data();
  a.B = a.C = ones.data();
  a.ld_bc = 2 * N;
  a.ld_z = E;
  a.state = s1.data();
  a.y = y1.data();
  ScanChannels(a, 0, E);
  a.state = s2.data();
  a.y = y2.data();
  ScanChannelsBaseline(a, 0, E);
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(s1.data(), s2.data(), s1.size() * sizeof(float)));
}

}  // namespace
}  // namespace memmamba::cpu
