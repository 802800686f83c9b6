// PoolAttendFolded (the pool reads of streaming and prefill) against
// PoolAttend over explicitly projected keys k_j = K·ŝ_j and values
// v_j = V·ŝ_j (the training pass's form): the same function, DESIGN 2.3
// step 1, up to float rounding.
#include <gtest/gtest.h>

#include <cmath>
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
    be->PoolAttendFolded(q.data(), m, sp.data(), K.data(), V.data(), S, H, got.data());
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < S; ++i) {
      num += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
      den += want[i] * static_cast<double>(want[i]);
    }
    EXPECT_LE(std::sqrt(num / std::max(den, 1e-30)), 2e-6)
        << "S " << S << " H " << H << " m " << m;
  }
}

}  // namespace
}  // namespace memmamba
