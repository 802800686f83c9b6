// PoolAttendFolded (the pool reads of streaming and prefill) against
// PoolAttend over explicitly projected keys k_j = K·ŝ_j and values
// v_j = V·ŝ_j (the training pass's form): the same function, DESIGN 2.3
// step 1, up to float rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"

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

}  // namespace
}  // namespace memmamba
