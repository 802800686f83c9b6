// Backend::MixerStep (the middle of a one-token mixer step in one pass)
// against the four ops it fuses, bit for bit: every thread count, f32 and
// bf16 weights, channel counts that are and are not multiples of 16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/bf16.h"

namespace memmamba {
namespace {

struct Shape {
  int64_t E, N, R, K;
};

TEST(CpuMixerStep, EqualsTheOpsItFuses) {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto random = [&](int64_t n, float scale, float shift) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = shift + scale * nd(rng);
    return v;
  };
  for (const Shape& sh : {Shape{1536, 16, 48, 4}, Shape{1043, 16, 7, 4}, Shape{512, 16, 16, 4},
                          Shape{40, 8, 3, 2}}) {
    const int64_t E = sh.E, N = sh.N, R = sh.R, K = sh.K, ld_dbc = R + 2 * N;
    const std::vector<float> xz = random(2 * E, 1.0f, 0.0f), conv_w = random(E * K, 0.5f, 0.0f),
                             conv_b = random(E, 0.2f, 0.0f),
                             conv0 = random((K - 1) * E, 1.0f, 0.0f),
                             wx = random(ld_dbc * E, 0.05f, 0.0f), wdt = random(E * R, 0.3f, 0.0f),
                             bias = random(E, 0.5f, -3.0f), D = random(E, 1.0f, 1.0f),
                             ssm0 = random(N * E, 1.0f, 0.0f);
    std::vector<float> A = random(N * E, 1.0f, 0.0f);
    for (float& a : A) a = -std::exp(a);
    std::vector<uint16_t> wx16(wx.size()), wdt16(wdt.size());
    cpu::ConvertF32ToBf16(wx.data(), wx16.data(), wx.size());
    cpu::ConvertF32ToBf16(wdt.data(), wdt16.data(), wdt.size());
    for (bool bf16 : {false, true}) {
      const WeightRef x_ref{bf16 ? nullptr : wx.data(), bf16 ? wx16.data() : nullptr, ld_dbc, E};
      const WeightRef dt_ref{bf16 ? nullptr : wdt.data(), bf16 ? wdt16.data() : nullptr, E, R};
      for (int threads : {1, 2, 3, 4}) {
        std::unique_ptr<Backend> be = CreateCpuBackend(threads);
        // Two runs from the same state: the four ops, then the fused step.
        struct Run {
          std::vector<float> conv, ssm, xc, dbc, dt, y;
        } runs[2];
        for (int fused = 0; fused < 2; ++fused) {
          Run& r = runs[fused];
          r.conv = conv0;
          r.ssm = ssm0;
          r.xc.assign(E, 7.0f);
          r.dbc.assign(ld_dbc, 7.0f);
          r.dt.assign(E, 7.0f);
          r.y.assign(E, 7.0f);
          ConvArgs ca;
          ca.T = 1;
          ca.E = E;
          ca.K = K;
          ca.xi = xz.data();
          ca.ld_xi = 2 * E;
          ca.w = conv_w.data();
          ca.b = conv_b.data();
          ca.state = r.conv.data();
          ca.out = r.xc.data();
          ScanArgs sa;
          sa.T = 1;
          sa.E = E;
          sa.N = N;
          sa.xc = r.xc.data();
          sa.dt = r.dt.data();
          sa.dt_bias = bias.data();
          sa.A = A.data();
          sa.B = r.dbc.data() + R;
          sa.C = r.dbc.data() + R + N;
          sa.ld_bc = ld_dbc;
          sa.D = D.data();
          sa.z = xz.data() + E;
          sa.ld_z = 2 * E;
          sa.state = r.ssm.data();
          sa.y = r.y.data();
          if (fused) {
            be->MixerStep(ca, x_ref, r.dbc.data(), dt_ref, r.dt.data(), sa);
          } else {
            be->ConvSilu(&ca, 1);
            be->Matmul(r.xc.data(), 1, E, x_ref, r.dbc.data(), ld_dbc, false);
            be->Matmul(r.dbc.data(), 1, ld_dbc, dt_ref, r.dt.data(), E, false);
            be->SelectiveScan(&sa, 1);
          }
        }
        const std::string what = "E " + std::to_string(E) + (bf16 ? " bf16" : " f32") +
                                 " threads " + std::to_string(threads);
        auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
          return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
        };
        EXPECT_TRUE(same(runs[0].conv, runs[1].conv)) << what;
        EXPECT_TRUE(same(runs[0].xc, runs[1].xc)) << what;
        EXPECT_TRUE(same(runs[0].dbc, runs[1].dbc)) << what;
        EXPECT_TRUE(same(runs[0].dt, runs[1].dt)) << what;
        EXPECT_TRUE(same(runs[0].ssm, runs[1].ssm)) << what;
        EXPECT_TRUE(same(runs[0].y, runs[1].y)) << what;
      }
    }
  }
}

}  // namespace
}  // namespace memmamba
