// Backward ops of the CPU backend called with streams of different lengths
// give what one call per stream gives (the training path always passes equal
// lengths; other callers need not).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace memmamba {
namespace {

struct Stream {
  int64_t T;
  std::vector<float> xc, dt, bc, z, y, cps, dy;
  std::vector<float> dxc, ddt, dbc, dz;
};

TEST(CpuScanBackward, MixedLengthsEqualOneCallPerStream) {
  const int64_t E = 24, N = 4;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  std::vector<float> dt_bias(E), A(N * E), D(E);
  for (auto& v : dt_bias) v = nd(rng) - 2.0f;
  for (auto& v : A) v = -std::abs(nd(rng)) - 0.1f;
  for (auto& v : D) v = nd(rng);
  std::unique_ptr<Backend> be = CreateCpuBackend(2);
  std::vector<Stream> s(3);
  const int64_t lengths[3] = {70, 5, 130};
  for (int i = 0; i < 3; ++i) {
    Stream& x = s[i];
    x.T = lengths[i];
    for (auto* v : {&x.xc, &x.dt, &x.z, &x.y, &x.dy, &x.dxc, &x.ddt, &x.dz}) v->resize(x.T * E);
    x.bc.resize(x.T * 2 * N);
    x.dbc.resize(x.T * 2 * N);
    for (auto* v : {&x.xc, &x.dt, &x.z, &x.dy, &x.bc}) {
      for (auto& f : *v) f = nd(rng);
    }
    x.cps.resize(((x.T + kScanChunk - 1) / kScanChunk) * N * E);
    std::vector<float> state(N * E, 0.0f);
    ScanArgs a;
    a.T = x.T;
    a.E = E;
    a.N = N;
    a.xc = x.xc.data();
    a.dt = x.dt.data();
    a.dt_bias = dt_bias.data();
    a.A = A.data();
    a.B = x.bc.data();
    a.C = x.bc.data() + N;
    a.ld_bc = 2 * N;
    a.D = D.data();
    a.z = x.z.data();
    a.ld_z = E;
    a.state = state.data();
    a.y = x.y.data();
    a.checkpoints = x.cps.data();
    be->SelectiveScan(&a, 1);
  }
  auto run = [&](bool together, std::vector<float>* dA, std::vector<float>* dD,
                 std::vector<float>* dbias) {
    dA->assign(N * E, 0.0f);
    dD->assign(E, 0.0f);
    dbias->assign(E, 0.0f);
    std::vector<ScanBackwardArgs> args(3);
    for (int i = 0; i < 3; ++i) {
      Stream& x = s[i];
      ScanBackwardArgs& g = args[i];
      g.fwd.T = x.T;
      g.fwd.E = E;
      g.fwd.N = N;
      g.fwd.xc = x.xc.data();
      g.fwd.dt = x.dt.data();
      g.fwd.dt_bias = dt_bias.data();
      g.fwd.A = A.data();
      g.fwd.B = x.bc.data();
      g.fwd.C = x.bc.data() + N;
      g.fwd.ld_bc = 2 * N;
      g.fwd.D = D.data();
      g.fwd.z = x.z.data();
      g.fwd.ld_z = E;
      g.checkpoints = x.cps.data();
      g.dy = x.dy.data();
      g.dxc = x.dxc.data();
      g.ddt = x.ddt.data();
      g.dB = x.dbc.data();
      g.dC = x.dbc.data() + N;
      g.ld_dbc = 2 * N;
      g.dz = x.dz.data();
      g.ld_dz = E;
      g.dA = dA->data();
      g.dD = dD->data();
      g.ddt_bias = dbias->data();
    }
    if (together) {
      be->SelectiveScanBackward(args.data(), 3);
    } else {
      for (int i = 0; i < 3; ++i) be->SelectiveScanBackward(&args[i], 1);
    }
  };
  std::vector<float> dA1, dD1, db1, dA2, dD2, db2;
#if defined(__x86_64__)
  const unsigned csr = _mm_getcsr();  // the backward flushes denormals inside only
#endif
  run(false, &dA1, &dD1, &db1);
  std::vector<std::vector<float>> per_stream;
  for (auto& x : s) per_stream.push_back(x.dbc);
  run(true, &dA2, &dD2, &db2);
#if defined(__x86_64__)
  EXPECT_EQ(_mm_getcsr(), csr);
#endif
  EXPECT_EQ(dA1, dA2);
  EXPECT_EQ(dD1, dD2);
  EXPECT_EQ(db1, db2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(per_stream[i], s[i].dbc) << i;
}

// A float kept as rounded: the compiler cannot fuse it into a multiply-add.
float Rounded(float x) {
#if defined(__x86_64__)
  asm("" : "+x"(x));
#endif
  return x;
}

// A read's backward written out plainly: every dot product's products
// rounded and added one by one from d = 0, the softmax and Σ p·dp as the
// backend defines them, one fused multiply-add per gradient element.
void PlainReadBackward(const std::vector<float>& q, const std::vector<const float*>& keys,
                       const std::vector<const float*>& values, int64_t S, int64_t H,
                       const std::vector<float>& dout, std::vector<float>* dq,
                       std::vector<std::vector<float>>* dk, std::vector<std::vector<float>>* dv) {
  const int64_t m = static_cast<int64_t>(keys.size()), dh = S / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  auto dot = [&](const float* a, const float* b) {
    float sum = 0.0f;
    for (int64_t d = 0; d < dh; ++d) sum = Rounded(sum + Rounded(a[d] * b[d]));
    return sum;
  };
  dq->assign(S, 0.0f);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t off = h * dh;
    std::vector<float> p(m), dp(m);
    float mx = -INFINITY;
    for (int64_t j = 0; j < m; ++j) {
      p[j] = dot(&q[off], keys[j] + off) * scale;
      dp[j] = dot(&dout[off], values[j] + off);
      mx = std::max(mx, p[j]);
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < m; ++j) sum += (p[j] = std::exp(p[j] - mx));
    const float inv = 1.0f / sum;
    float mean = 0.0f;
    for (int64_t j = 0; j < m; ++j) mean = std::fma(p[j] *= inv, dp[j], mean);
    for (int64_t j = 0; j < m; ++j) {
      const float ds = p[j] * (dp[j] - mean) * scale;
      for (int64_t d = 0; d < dh; ++d) {
        (*dq)[off + d] = std::fma(ds, keys[j][off + d], (*dq)[off + d]);
        (*dk)[j][off + d] = std::fma(ds, q[off + d], (*dk)[j][off + d]);
        (*dv)[j][off + d] = std::fma(p[j], dout[off + d], (*dv)[j][off + d]);
      }
    }
  }
}

// The backend's read backward gives the plain loops' bits where a head's
// width is a multiple of 8 (the vector path, with note counts that fill
// and do not fill its groups of eight), and agrees to rounding elsewhere.
TEST(CpuPoolAttendBackward, EqualsThePlainLoops) {
  std::unique_ptr<Backend> be = CreateCpuBackend(1);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Shape {
    int64_t S, H;
  };
  for (const Shape sh : {Shape{16, 2}, Shape{64, 4}, Shape{32, 1}, Shape{24, 2}, Shape{12, 4}}) {
    for (const int64_t m : {1, 3, 8, 9, 17}) {
      const int64_t S = sh.S, H = sh.H;
      std::vector<float> q(S), dout(S);
      for (float& x : q) x = nd(rng);
      for (float& x : dout) x = nd(rng);
      std::vector<std::vector<float>> k(m, std::vector<float>(S)), v = k;
      for (auto& row : k) for (float& x : row) x = nd(rng);
      for (auto& row : v) for (float& x : row) x = nd(rng);
      std::vector<const float*> keys, values;
      for (int64_t j = 0; j < m; ++j) {
        keys.push_back(k[j].data());
        values.push_back(v[j].data());
      }
      // Both accumulate into gradients that already hold something.
      std::vector<std::vector<float>> dk(m, std::vector<float>(S, 0.25f)), dv = dk;
      std::vector<std::vector<float>> dk_ref = dk, dv_ref = dv;
      std::vector<float*> dkp, dvp;
      for (int64_t j = 0; j < m; ++j) {
        dkp.push_back(dk[j].data());
        dvp.push_back(dv[j].data());
      }
      std::vector<float> dq(S, 9.0f), dq_ref;
      be->PoolAttendBackward(q.data(), m, keys.data(), values.data(), S, H, dout.data(),
                             dq.data(), dkp.data(), dvp.data());
      PlainReadBackward(q, keys, values, S, H, dout, &dq_ref, &dk_ref, &dv_ref);
#if defined(__x86_64__)
      const bool exact = (S / H) % 8 == 0;
#else
      const bool exact = false;  // no vector path, and no rounding barrier in the reference
#endif
      auto check = [&](const std::vector<float>& got, const std::vector<float>& want) {
        for (int64_t i = 0; i < S; ++i) {
          if (exact) {
            ASSERT_EQ(got[i], want[i]) << "S " << S << " H " << H << " m " << m << " i " << i;
          } else {
            ASSERT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::abs(want[i])))
                << "S " << S << " H " << H << " m " << m << " i " << i;
          }
        }
      };
      check(dq, dq_ref);
      for (int64_t j = 0; j < m; ++j) {
        check(dk[j], dk_ref[j]);
        check(dv[j], dv_ref[j]);
      }
    }
  }
}

}  // namespace
}  // namespace memmamba

namespace memmamba {
namespace {

// The straight-through surrogate stays finite when a left-out window's
// attention logit is far above every pool entry's (the pool's own softmax
// must not underflow to a zero sum), and no weight exceeds 1.
TEST(CpuKappaGrad, FiniteWhenACandidateDominates) {
  std::unique_ptr<Backend> be = CreateCpuBackend(1);
  const int64_t S = 8, H = 2;
  std::vector<float> q(S, 1.0f), pool_k(S, -20.0f), pool_v(S, 0.5f), cand_k(S, 30.0f),
      cand_v(S, -1.0f), dout(S, 1.0f);
  const float* keys[] = {pool_k.data()};
  const float* values[] = {pool_v.data()};
  const float* ckeys[] = {cand_k.data()};
  const float* cvalues[] = {cand_v.data()};
  float dkappa[2] = {0.0f, 0.0f};
  be->PoolAttendKappaGrad(q.data(), 1, keys, values, 1, ckeys, cvalues, S, H, dout.data(),
                          dkappa);
  for (float d : dkappa) EXPECT_TRUE(std::isfinite(d)) << d;
  // Per head: weight ≤ 1 times |do·v − do·o| ≤ 4·(0.5 + 1): bounded.
  EXPECT_LE(std::abs(dkappa[1]), H * 4 * 1.5f + 1e-3f);
}

// The surrogate against its formula (backend.h) in double precision, for
// candidate counts around the kernel's groups of eight and head widths on
// both of its paths (16: eight candidates at a time; 2: one at a time).
TEST(CpuKappaGrad, MatchesItsFormula) {
  std::unique_ptr<Backend> be = CreateCpuBackend(1);
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t H : {4, 32}) {
    const int64_t S = 64, dh = S / H;
    for (int64_t m : {1, 7, 16}) {
      for (int64_t c : {0, 1, 9, 40}) {
        const int64_t n = m + c;
        std::vector<std::vector<float>> k(n, std::vector<float>(S)), v = k;
        std::vector<float> q(S), dout(S);
        for (auto* x : {&q, &dout}) for (float& f : *x) f = normal(rng);
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t d = 0; d < S; ++d) {
            k[j][d] = normal(rng);
            v[j][d] = normal(rng);
          }
        }
        std::vector<const float*> kp(n), vp(n);
        for (int64_t j = 0; j < n; ++j) {
          kp[j] = k[j].data();
          vp[j] = v[j].data();
        }
        std::vector<float> got(n, -1.0f);
        be->PoolAttendKappaGrad(q.data(), m, kp.data(), vp.data(), c, kp.data() + m,
                                vp.data() + m, S, H, dout.data(), got.data());
        std::vector<double> want(n, 0.0);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t off = h * dh;
          std::vector<double> s(n), dp(n);
          for (int64_t j = 0; j < n; ++j) {
            for (int64_t d = 0; d < dh; ++d) {
              s[j] += static_cast<double>(q[off + d]) * k[j][off + d];
              dp[j] += static_cast<double>(dout[off + d]) * v[j][off + d];
            }
            s[j] /= std::sqrt(static_cast<double>(dh));
          }
          double z_pool = 0.0, z_all = 0.0, o_do = 0.0;
          for (int64_t j = 0; j < n; ++j) {
            z_all += std::exp(s[j]);
            if (j < m) z_pool += std::exp(s[j]);
          }
          for (int64_t j = 0; j < m; ++j) o_do += std::exp(s[j]) / z_pool * dp[j];
          for (int64_t j = 0; j < n; ++j) want[j] += std::exp(s[j]) / z_all * (dp[j] - o_do);
        }
        for (int64_t j = 0; j < n; ++j) {
          EXPECT_NEAR(got[j], want[j], 1e-5 * (1.0 + std::abs(want[j])))
              << "H " << H << " m " << m << " c " << c << " j " << j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace memmamba
