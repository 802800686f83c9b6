// Backward ops of the CPU backend called with streams of different lengths
// give what one call per stream gives (the training path always passes equal
// lengths; other callers need not).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace memmamba
