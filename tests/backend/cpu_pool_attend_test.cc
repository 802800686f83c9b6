// PoolAttendFolded (the pool reads of streaming and prefill) against
// PoolAttend over explicitly projected keys k_j = K·ŝ_j and values
// v_j = V·ŝ_j (the training pass's form): the same function, DESIGN 2.3
// step 1, up to float rounding. PoolReadRow (a one-row read in one pass)
// against the ops it fuses.
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

// y = W·x for W [S, S].
std::vector<float> Project(const std::vector<float>& W, const float* x, int64_t S) {
  std::vector<float> y(S, 0.0f);
  for (int64_t i = 0; i < S; ++i) {
    double acc = 0.0;
    for (int64_t s = 0; s < S; ++s) acc += static_cast<double>(W[i * S + s]) * x[s];
    y[i] = static_cast<float>(acc);
  }
  return y;
}

TEST(CpuPoolAttendFolded, EqualsAttentionOverProjectedNotes) {
  std::unique_ptr<Backend> be = CreateCpuBackend(1);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Shape { int64_t S, H, m; };
  for (const Shape& sh : {Shape{8, 1, 1}, Shape{8, 2, 3}, Shape{16, 4, 50}, Shape{64, 4, 200},
                          Shape{12, 3, 7}}) {
    const int64_t S = sh.S, H = sh.H, m = sh.m;
    std::vector<float> K(S * S), V(S * S), q(S), notes(m * S);
    for (auto* v : {&K, &V, &q, &notes}) {
      for (float& f : *v) f = 0.5f * nd(rng);
    }
    std::vector<std::vector<float>> keys, values;
    std::vector<const float*> kp, vp, sp;
    for (int64_t j = 0; j < m; ++j) {
      keys.push_back(Project(K, &notes[j * S], S));
      values.push_back(Project(V, &notes[j * S], S));
    }
    for (int64_t j = 0; j < m; ++j) {
      kp.push_back(keys[j].data());
      vp.push_back(values[j].data());
      sp.push_back(&notes[j * S]);
    }
    std::vector<float> want(S), got(S);
    be->PoolAttend(q.data(), m, kp.data(), vp.data(), S, H, want.data());
    const float* const* rows[1] = {sp.data()};
    std::vector<float> scratch(be->PoolAttendFoldedScratch(m, S, H));
    be->PoolAttendFolded(1, q.data(), rows, &m, K.data(), V.data(), S, H, got.data(),
                         scratch.data());
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < S; ++i) {
      num += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
      den += want[i] * static_cast<double>(want[i]);
    }
    EXPECT_LE(std::sqrt(num / std::max(den, 1e-30)), 2e-6)
        << "S " << S << " H " << H << " m " << m;
  }
}

// Many rows in one call (spread over threads) give what one call per row
// gives, bit for bit; rows without notes are left as they were.
TEST(CpuPoolAttendFolded, RowsEqualOneCallPerRow) {
  std::unique_ptr<Backend> be = CreateCpuBackend(2);
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t S = 32, H = 4, M = 97;
  std::vector<float> K(S * S), V(S * S), q(M * S), notes(120 * S);
  for (auto* v : {&K, &V, &q, &notes}) {
    for (float& f : *v) f = 0.5f * nd(rng);
  }
  std::vector<const float*> all;
  for (int64_t j = 0; j < 120; ++j) all.push_back(&notes[j * S]);
  std::vector<const float* const*> rows(M);
  std::vector<int64_t> m(M);
  for (int64_t r = 0; r < M; ++r) {
    m[r] = r % 7 == 3 ? 0 : 1 + (r * 37) % 120;
    rows[r] = all.data() + (r * 11) % (120 - m[r] + 1);
  }
  std::vector<float> got(M * S, 42.0f), want(M * S, 42.0f);
  std::vector<float> scratch(be->PoolAttendFoldedScratch(120, S, H));
  be->PoolAttendFolded(M, q.data(), rows.data(), m.data(), K.data(), V.data(), S, H, got.data(),
                       scratch.data());
  for (int64_t r = 0; r < M; ++r) {
    be->PoolAttendFolded(1, &q[r * S], &rows[r], &m[r], K.data(), V.data(), S, H, &want[r * S],
                         scratch.data());
  }
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
  EXPECT_EQ(got[3 * S], 42.0f);  // row 3 has no notes
}

// PoolReadRow gives the bits of Matmul (q), PoolAttendFolded and Matmul (c)
// in turn, for every thread count, with f32 and bf16 weights, on shapes
// whose products are split over the threads and shapes that are not.
TEST(CpuPoolReadRow, EqualsTheOpsItFuses) {
  std::mt19937 rng(13);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Shape { int64_t D, S, H, m; };
  for (const Shape& sh : {Shape{768, 64, 4, 50}, Shape{768, 64, 4, 200}, Shape{256, 64, 4, 7},
                          Shape{1000, 48, 3, 1}, Shape{2048, 32, 1, 9}}) {
    const int64_t D = sh.D, S = sh.S, H = sh.H, m = sh.m;
    std::vector<float> a(D), wq(S * D), wo(D * S), K(S * S), V(S * S), notes(m * S);
    for (auto* v : {&a, &wq, &wo, &K, &V, &notes}) {
      for (float& f : *v) f = 0.5f * nd(rng);
    }
    std::vector<uint16_t> wq16(wq.size()), wo16(wo.size());
    cpu::ConvertF32ToBf16(wq.data(), wq16.data(), wq.size());
    cpu::ConvertF32ToBf16(wo.data(), wo16.data(), wo.size());
    std::vector<const float*> sp;
    for (int64_t j = 0; j < m; ++j) sp.push_back(&notes[j * S]);
    const float* const* rows[1] = {sp.data()};
    for (bool bf16 : {false, true}) {
      WeightRef q_ref{bf16 ? nullptr : wq.data(), bf16 ? wq16.data() : nullptr, S, D};
      WeightRef o_ref{bf16 ? nullptr : wo.data(), bf16 ? wo16.data() : nullptr, D, S};
      for (int threads : {1, 2, 3, 4}) {
        std::unique_ptr<Backend> be = CreateCpuBackend(threads);
        std::vector<float> scratch(be->PoolAttendFoldedScratch(m, S, H));
        std::vector<float> q(S), o(S), c(D), q2(S, 7.0f), o2(S, 7.0f), c2(D, 7.0f);
        be->Matmul(a.data(), 1, D, q_ref, q.data(), S, false);
        be->PoolAttendFolded(1, q.data(), rows, &m, K.data(), V.data(), S, H, o.data(),
                             scratch.data());
        be->Matmul(o.data(), 1, S, o_ref, c.data(), D, false);
        be->PoolReadRow(a.data(), D, q_ref, sp.data(), m, K.data(), V.data(), S, H, o_ref,
                        q2.data(), o2.data(), c2.data(), scratch.data());
        const std::string what = "D " + std::to_string(D) + " m " + std::to_string(m) +
                                 (bf16 ? " bf16" : " f32") + " threads " +
                                 std::to_string(threads);
        EXPECT_EQ(0, std::memcmp(q.data(), q2.data(), S * sizeof(float))) << what;
        EXPECT_EQ(0, std::memcmp(o.data(), o2.data(), S * sizeof(float))) << what;
        EXPECT_EQ(0, std::memcmp(c.data(), c2.data(), D * sizeof(float))) << what;
      }
    }
  }
}

}  // namespace
}  // namespace memmamba
