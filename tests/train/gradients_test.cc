// Gradients against central finite differences of the f32 loss, along a
// random direction per parameter tensor (DESIGN 2.4, 6). The float64 check
// of every element against the independent reference's autograd lives in
// tests/reference (check_grads.py); this one runs in-process on every build.
#include "train/gradients.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "model/model.h"
#include "runtime/session.h"

namespace memmamba {
namespace {

struct GradCase {
  std::string name;
  PoolPolicy policy = PoolPolicy::kPriority;
  int64_t window = 4;
  Fusion fusion = Fusion::kWeighted;
  int64_t cross = 2;
  int64_t capacity = 8;
  bool tie = true;
  float gate = 0.0f;
  int64_t d_model = 16;  // 13: d_inner 26, the scan's scalar (non-multiple-of-8) path
  // > 0: sequence 0 continues a stream of this many tokens (Batch::initial);
  // sequence 1 starts from empty state.
  int64_t from_state = 0;
  // > 0: the recurrent state resets (Batch::resets) before this position of
  // sequence 0 and before the next position of sequence 1 and at its start.
  int64_t reset_at = 0;
};

ModelConfig SmallConfig(const GradCase& g) {
  ModelConfig c;
  c.vocab_size = 40;
  c.d_model = g.d_model;
  c.n_layer = 4;
  c.d_state = 4;
  c.summary_dim = 8;
  c.attn_heads = 2;
  c.note_window = g.window;
  c.pool_capacity = g.capacity;
  c.pool_policy = g.policy;
  c.fusion = g.fusion;
  c.cross_layer_period = g.cross;
  c.cross_layer_span = 2;
  c.tie_embeddings = g.tie;
  c.gate_threshold = g.gate;
  return c;
}

ModelOptions OneThread() {
  ModelOptions o;
  o.n_threads = 1;
  return o;
}

// A model whose every tensor is moved away from its init (so that, e.g.,
// fuse.weight = 0 or alpha = 0.1 do not hide a wrong gradient).
std::unique_ptr<Model> PerturbedModel(const ModelConfig& config, uint64_t seed) {
  auto base = Model::Create(config, seed, OneThread());
  EXPECT_TRUE(base.ok()) << base.status();
  ModelWeights w = (*base)->weights();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const ParamRef& p : ListParams((*base)->config(), &w)) {
    float* d = p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    const bool keep_score_high = p.name.find("note.score.bias") != std::string::npos;
    for (int64_t i = 0; i < p.numel(); ++i) {
      if (keep_score_high) continue;  // every note stays above the threshold
      d[i] += (p.name.find("A_log") != std::string::npos ? 0.1f : 0.05f) * normal(rng);
    }
  }
  auto m = Model::FromWeights((*base)->config(), std::move(w), OneThread());
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

// n token ids in [0, V), drawn from mt19937(seed).
std::vector<int32_t> RandomTokens(int64_t n, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(n);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % V);
  return tokens;
}

// A session of `model` fed `n` random tokens (seeded by `seed`).
std::unique_ptr<Session> StreamedSession(const Model& model, int64_t n, uint32_t seed) {
  auto s = Session::Create(&model, 0);
  EXPECT_TRUE(s.ok()) << s.status();
  const std::vector<int32_t> tokens = RandomTokens(n, model.config().vocab_size, seed);
  EXPECT_TRUE((*s)->Feed(tokens.data(), tokens.size(), LogitsMode::kNone, nullptr, 0).ok());
  return std::move(*s);
}

double Loss(const Model& model, const Batch& batch) {
  BatchStats stats;
  Gradients g;
  EXPECT_TRUE(ComputeGradients(model, batch, {}, &stats, &g).ok());
  return stats.loss();
}

class GradientTest : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradientTest, MatchesFiniteDifferencesForEveryTensor) {
  const GradCase& gc = GetParam();
  const ModelConfig config = SmallConfig(gc);
  std::unique_ptr<Model> model = PerturbedModel(config, 7);
  const int64_t B = 2, T = 24;
  std::vector<int32_t> tokens(B * T);
  std::vector<uint8_t> mask(B * T);
  std::mt19937 rng(3);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % config.vocab_size);
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = (i % 3) != 0;
  Batch batch{tokens.data(), B, T, mask.data()};
  // The initial state is made once, by the unperturbed weights: a constant.
  std::unique_ptr<Session> stream;
  std::vector<const StreamState*> initial(B, nullptr);
  if (gc.from_state > 0) {
    stream = StreamedSession(*model, gc.from_state, 21);
    initial[0] = &stream->state();
    batch.initial = initial.data();
  }
  std::vector<uint8_t> resets(B * T, 0);
  if (gc.reset_at > 0) {
    resets[gc.reset_at] = resets[T] = resets[T + gc.reset_at + 1] = 1;
    batch.resets = resets.data();
  }

  BatchStats stats;
  Gradients grads;
  ASSERT_TRUE(ComputeGradients(*model, batch, {}, &stats, &grads).ok());
  ModelWeights base = model->weights();
  std::vector<ParamRef> params = ListParams(model->config(), &base);
  ASSERT_EQ(params.size(), grads.size());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int checked = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamRef& p = params[i];
    // Keep/evict decisions, argmax positions and gate activity are
    // constants of the gradient but not of the loss: a step that crosses one
    // makes the finite difference jump. Such a step is recognised by the
    // difference at h disagreeing with the one at h/2, and another random
    // direction is drawn.
    auto numeric_along = [&](const std::vector<float>& dir, float h) {
      double loss_pm[2];
      for (int side = 0; side < 2; ++side) {
        ModelWeights w = base;
        std::vector<ParamRef> wp = ListParams(model->config(), &w);
        float* d = wp[i].matrix ? wp[i].matrix->f32.data()
                   : wp[i].vector ? wp[i].vector->data() : wp[i].scalar;
        for (int64_t k = 0; k < p.numel(); ++k) d[k] += (side ? -h : h) * dir[k];
        auto m = Model::FromWeights(model->config(), std::move(w), OneThread());
        EXPECT_TRUE(m.ok());
        loss_pm[side] = Loss(**m, batch);
      }
      return (loss_pm[0] - loss_pm[1]) / (2.0 * h);
    };
    bool smooth = false;
    for (int attempt = 0; attempt < 6 && !smooth; ++attempt) {
      std::vector<float> dir(p.numel());
      for (auto& v : dir) v = normal(rng);
      double analytic = 0.0;
      for (int64_t k = 0; k < p.numel(); ++k) analytic += static_cast<double>(grads[i][k]) * dir[k];
      const float h = attempt < 3 ? 2e-3f : 5e-4f;
      const double numeric = numeric_along(dir, h);
      const double half = numeric_along(dir, h / 2);
      const double tol = 2e-2 * std::abs(analytic) + 3e-4;
      if (std::abs(numeric - half) > tol) continue;  // a decision flipped
      smooth = true;
      EXPECT_NEAR(numeric, analytic, tol) << gc.name << ": " << p.name;
    }
    EXPECT_TRUE(smooth) << gc.name << ": " << p.name << ": no direction without a decision flip";
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(params.size()));
}

// Finite differences need a loss that is smooth around the weights: the
// cases keep PRIORITY pools below capacity (no score ranking to flip) and the
// gate threshold at 0. PRIORITY eviction and gate thresholds are checked
// element by element, without perturbation, against the float64 reference
// (tests/reference/check_grads.py).
INSTANTIATE_TEST_SUITE_P(
    Configs, GradientTest,
    ::testing::Values(
        GradCase{"priority_w4_weighted_cross"},
        GradCase{"fifo_w1_gated_cross", PoolPolicy::kFifo, 1, Fusion::kGated, 2, 6},
        GradCase{"priority_w1_residual_cross_every_layer", PoolPolicy::kPriority, 1,
                 Fusion::kResidual, 1, 32},
        GradCase{"fifo_w4_untied_evicting", PoolPolicy::kFifo, 4, Fusion::kWeighted, 0, 3,
                 false},
        GradCase{"plain_mamba", PoolPolicy::kPriority, 4, Fusion::kWeighted, 2, 0},
        GradCase{"odd_width_scalar_scan", PoolPolicy::kFifo, 4, Fusion::kWeighted, 2, 4, true,
                 0.0f, 13},
        GradCase{"priority_w4_from_state", PoolPolicy::kPriority, 4, Fusion::kWeighted, 2, 16,
                 true, 0.0f, 16, /*from_state=*/20},
        GradCase{"fifo_w1_evicting_from_state", PoolPolicy::kFifo, 1, Fusion::kGated, 2, 6,
                 false, 0.0f, 16, /*from_state=*/12},
        GradCase{"priority_w4_resets", PoolPolicy::kPriority, 4, Fusion::kWeighted, 2, 8, true,
                 0.0f, 16, /*from_state=*/0, /*reset_at=*/10},
        GradCase{"fifo_w1_from_state_resets", PoolPolicy::kFifo, 1, Fusion::kGated, 2, 6, false,
                 0.0f, 16, /*from_state=*/12, /*reset_at=*/7}),
    [](const ::testing::TestParamInfo<GradCase>& info) { return info.param.name; });

}  // namespace
}  // namespace memmamba

namespace memmamba {
namespace {

// The straight-through estimator (DESIGN 6) changes gradients, never values:
// the loss is bitwise the same, and so are the gradients of every tensor that
// no note score depends on (the last layer's mixer, the final norm, an
// untied head); the scorers get gradient from windows the pool left out.
TEST(StraightThrough, ChangesOnlyWhatScoresFeed) {
  ModelConfig c = SmallConfig(GradCase{"st", PoolPolicy::kPriority, 2, Fusion::kWeighted, 2, 3,
                                       /*tie=*/false});
  std::unique_ptr<Model> model = PerturbedModel(c, 11);
  const int64_t B = 2, T = 32;
  std::vector<int32_t> tokens(B * T);
  std::mt19937 rng(5);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % c.vocab_size);
  Batch batch{tokens.data(), B, T, nullptr};
  BatchStats plain_stats, st_stats;
  Gradients plain, st;
  ASSERT_TRUE(ComputeGradients(*model, batch, {}, &plain_stats, &plain).ok());
  GradientOptions o;
  o.straight_through = true;
  ASSERT_TRUE(ComputeGradients(*model, batch, o, &st_stats, &st).ok());
  EXPECT_EQ(plain_stats.loss_sum, st_stats.loss_sum);
  ModelWeights w = model->weights();
  std::vector<ParamRef> params = ListParams(model->config(), &w);
  const std::string last = "layers." + std::to_string(c.n_layer - 1) + ".mixer.";
  bool score_differs = false;
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].name;
    if (name.rfind(last, 0) == 0 || name == "norm_f.weight" || name == "lm_head.weight") {
      EXPECT_EQ(plain[i], st[i]) << name;
    }
    if (name.find("note.score.weight") != std::string::npos && plain[i] != st[i]) {
      score_differs = true;
    }
  }
  EXPECT_TRUE(score_differs);
}

// Keeping every layer's activations or recomputing them in the backward
// gives the same bits.
TEST(Recompute, SameGradientsAsKeepingActivations) {
  ModelConfig c = SmallConfig(GradCase{"rc"});
  std::unique_ptr<Model> model = PerturbedModel(c, 3);
  const int64_t B = 3, T = 40;
  std::vector<int32_t> tokens(B * T);
  std::mt19937 rng(9);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % c.vocab_size);
  Batch batch{tokens.data(), B, T, nullptr};
  for (bool st : {false, true}) {
    GradientOptions keep, recompute;
    keep.straight_through = recompute.straight_through = st;
    recompute.keep_activations_bytes = 0;
    BatchStats s1, s2;
    Gradients g1, g2;
    ASSERT_TRUE(ComputeGradients(*model, batch, keep, &s1, &g1).ok());
    ASSERT_TRUE(ComputeGradients(*model, batch, recompute, &s2, &g2).ok());
    EXPECT_EQ(s1.loss_sum, s2.loss_sum);
    EXPECT_EQ(g1, g2) << "straight_through " << st;
  }
}

// The same weights on two threads.
std::unique_ptr<Model> WithTwoThreads(const Model& model) {
  ModelOptions two_threads;
  two_threads.n_threads = 2;
  auto two = Model::FromWeights(model.config(), model.weights(), two_threads);
  EXPECT_TRUE(two.ok()) << two.status();
  return std::move(*two);
}

// One long sequence with straight-through scores: the reads' rows are
// shared out over the threads (the forward's reads and the κ gradients),
// and the gradients are the bits of one thread.
TEST(Threads, OneLongSequenceGivesTheBitsOfOneThread) {
  ModelConfig c = SmallConfig(GradCase{"threads", PoolPolicy::kPriority, 4, Fusion::kGated, 2, 6});
  std::unique_ptr<Model> one = PerturbedModel(c, 21);
  std::unique_ptr<Model> two = WithTwoThreads(*one);
  const int64_t T = 65536 / c.summary_dim;  // large enough for the threads to be used
  std::vector<int32_t> tokens = RandomTokens(T, c.vocab_size, 23);
  Batch batch{tokens.data(), 1, T, nullptr};
  GradientOptions o;
  o.straight_through = true;
  BatchStats s1, s2;
  Gradients g1, g2;
  ASSERT_TRUE(ComputeGradients(*one, batch, o, &s1, &g1).ok());
  ASSERT_TRUE(ComputeGradients(*two, batch, o, &s2, &g2).ok());
  EXPECT_EQ(s1.loss_sum, s2.loss_sum);
  EXPECT_EQ(g1, g2);
}

// A batch cut into groups (GradientOptions::group_rows): with a mask,
// streams to continue and resets in it, the groups' sums are those of one
// pass up to rounding, and their bits are the same on one thread and two,
// with and without a workspace carried from call to call.
TEST(Groups, SumToOnePassAndGiveTheSameBitsOnAnyThreadCount) {
  ModelConfig c = SmallConfig(GradCase{"groups", PoolPolicy::kFifo, 4, Fusion::kGated, 2, 6});
  std::unique_ptr<Model> one = PerturbedModel(c, 31);
  std::unique_ptr<Model> two = WithTwoThreads(*one);
  const int64_t B = 5, T = 24;
  std::vector<int32_t> tokens = RandomTokens(B * T, c.vocab_size, 37);
  std::vector<uint8_t> mask(B * T, 1), resets(B * T, 0);
  std::mt19937 rng(41);
  for (auto& m : mask) m = rng() % 4 != 0;
  resets[2 * T + 9] = resets[4 * T] = 1;
  std::unique_ptr<Session> stream = StreamedSession(*one, 48, 43);
  const StreamState* initial[B] = {nullptr, &stream->state(), nullptr, nullptr,
                                   &stream->state()};
  Batch batch{tokens.data(), B, T, mask.data()};
  batch.initial = initial;
  batch.resets = resets.data();
  for (bool st : {false, true}) {
    GradientOptions whole, grouped;
    whole.straight_through = grouped.straight_through = st;
    whole.group_rows = 0;
    grouped.group_rows = 2 * T;  // groups of 2, 2 and 1 sequences
    BatchStats s0, s1, s2, s3;
    Gradients g0, g1, g2, g3;
    ASSERT_TRUE(ComputeGradients(*one, batch, whole, &s0, &g0).ok());
    ASSERT_TRUE(ComputeGradients(*one, batch, grouped, &s1, &g1).ok());
    ASSERT_TRUE(ComputeGradients(*two, batch, grouped, &s2, &g2).ok());
    GradientWorkspacePtr ws = MakeGradientWorkspace();
    grouped.workspace = ws.get();
    for (int pass = 0; pass < 2; ++pass) {
      ASSERT_TRUE(ComputeGradients(*two, batch, grouped, &s3, &g3).ok());
      EXPECT_EQ(s3.loss_sum, s1.loss_sum);
      EXPECT_EQ(g3, g1) << "workspace, pass " << pass;
    }
    EXPECT_EQ(s1.loss_sum, s2.loss_sum);
    EXPECT_EQ(s1.keep_fraction, s2.keep_fraction);
    EXPECT_EQ(g1, g2) << "straight_through " << st;
    EXPECT_EQ(s1.targets, s0.targets);
    EXPECT_EQ(s1.keep_fraction, s0.keep_fraction);
    EXPECT_NEAR(s1.loss_sum, s0.loss_sum, 1e-6 * s0.loss_sum);
    ASSERT_EQ(g1.size(), g0.size());
    for (size_t i = 0; i < g0.size(); ++i) {
      double most = 0.0, diff = 0.0;
      for (size_t k = 0; k < g0[i].size(); ++k) {
        most = std::max(most, std::fabs(static_cast<double>(g0[i][k])));
        diff = std::max(diff, std::fabs(static_cast<double>(g1[i][k]) - g0[i][k]));
      }
      EXPECT_LE(diff, 1e-5 * most + 1e-12) << "tensor " << i << " straight_through " << st;
    }
  }
  GradientOptions bad;
  bad.group_rows = -1;
  BatchStats s;
  Gradients g;
  EXPECT_EQ(CodeOf(ComputeGradients(*one, batch, bad, &s, &g)), ErrorCode::kInvalidArgument);
}

// A workspace carried from pass to pass (as a trainer carries it) holds the
// last pass's buffers; a pass of another shape, with or without kept
// activations and resets, still gives the bits of a pass with its own.
TEST(Workspace, ReusedAcrossShapesGivesTheBitsOfAFreshPass) {
  ModelConfig c = SmallConfig(GradCase{"ws"});
  std::unique_ptr<Model> model = PerturbedModel(c, 5);
  GradientWorkspacePtr ws = MakeGradientWorkspace();
  std::mt19937 rng(17);
  struct Shape {
    int64_t B, T;
    bool recompute, reset;
  } shapes[] = {{3, 40, false, false}, {2, 17, false, true}, {4, 24, true, false},
                {1, 9, false, true}, {3, 40, false, true}};
  for (const Shape& sh : shapes) {
    std::vector<int32_t> tokens(sh.B * sh.T);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % c.vocab_size);
    std::vector<uint8_t> resets(sh.B * sh.T, 0);
    if (sh.reset) resets[sh.T / 2] = 1;
    Batch batch{tokens.data(), sh.B, sh.T, nullptr};
    if (sh.reset) batch.resets = resets.data();
    GradientOptions fresh, reused;
    if (sh.recompute) fresh.keep_activations_bytes = reused.keep_activations_bytes = 0;
    reused.workspace = ws.get();
    BatchStats s1, s2;
    Gradients g1, g2;
    ASSERT_TRUE(ComputeGradients(*model, batch, fresh, &s1, &g1).ok());
    ASSERT_TRUE(ComputeGradients(*model, batch, reused, &s2, &g2).ok());
    EXPECT_EQ(s1.loss_sum, s2.loss_sum) << sh.B << "x" << sh.T;
    EXPECT_EQ(g1, g2) << sh.B << "x" << sh.T;
  }
}

}  // namespace
}  // namespace memmamba

namespace memmamba {
namespace {

// Mean next-token cross-entropy of `logits` [T, V] against tokens[1..T).
double CrossEntropy(const std::vector<float>& logits, const std::vector<int32_t>& tokens,
                    int64_t V) {
  double sum = 0.0;
  const int64_t T = static_cast<int64_t>(tokens.size());
  for (int64_t t = 0; t + 1 < T; ++t) {
    const float* row = &logits[t * V];
    double mx = row[0], z = 0.0;
    for (int64_t v = 1; v < V; ++v) mx = std::max<double>(mx, row[v]);
    for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
    sum += mx + std::log(z) - row[tokens[t + 1]];
  }
  return sum / static_cast<double>(T - 1);
}

// Configurations for the tests of sequences that continue a stream: full
// and evicting pools, cross-layer reads, and no memory.
std::vector<GradCase> StreamCases() {
  return {GradCase{"priority_w4", PoolPolicy::kPriority, 4, Fusion::kWeighted, 2, 3},
          GradCase{"fifo_w1", PoolPolicy::kFifo, 1, Fusion::kGated, 1, 5},
          GradCase{"plain_mamba", PoolPolicy::kPriority, 4, Fusion::kWeighted, 2, 0}};
}

// A sequence that continues a stream (Batch::initial) has the loss that
// feeding it to the stream's session gives (DESIGN 2.4): conv and SSM state,
// full and evicting pools, cross-layer reads; the straight-through estimator
// does not change it. The stream's state is read, not changed.
TEST(FromState, LossEqualsFeedingTheStream) {
  for (const GradCase& g : StreamCases()) {
    const ModelConfig c = SmallConfig(g);
    std::unique_ptr<Model> model = PerturbedModel(c, 13);
    const int64_t T = 40, V = c.vocab_size, prefix = 48;
    std::vector<int32_t> tokens = RandomTokens(T, V, 17);
    std::unique_ptr<Session> stream = StreamedSession(*model, prefix, 23);
    if (c.memory_enabled()) {
      ASSERT_EQ(static_cast<int64_t>(stream->state().layers[0].pool.size()), c.pool_capacity)
          << g.name;
    }
    const StreamState* initial[1] = {&stream->state()};
    Batch batch{tokens.data(), 1, T, nullptr};
    batch.initial = initial;
    for (bool st : {false, true}) {
      GradientOptions o;
      o.straight_through = st;
      BatchStats stats;
      Gradients grads;
      ASSERT_TRUE(ComputeGradients(*model, batch, o, &stats, &grads).ok()) << g.name;
      EXPECT_EQ(stream->state().position, prefix);
      std::unique_ptr<Session> fed = StreamedSession(*model, prefix, 23);
      std::vector<float> logits(T * V);
      ASSERT_TRUE(fed->Feed(tokens.data(), T, LogitsMode::kAll, logits.data(), logits.size())
                      .ok());
      const double want = CrossEntropy(logits, tokens, V);
      EXPECT_NEAR(stats.loss(), want, 1e-5 * want) << g.name << " straight_through " << st;
      // From empty state the loss differs: the state mattered.
      BatchStats empty;
      Batch fresh{tokens.data(), 1, T, nullptr};
      ASSERT_TRUE(ComputeGradients(*model, fresh, o, &empty, &grads).ok());
      EXPECT_GT(std::abs(empty.loss() - want), 3e-5 * want) << g.name;
    }
  }
}

// Recurrent resets (Batch::resets) give the loss of feeding the pieces to a
// session with mm_session_reset_recurrent between them, from empty state and
// from a stream (where a reset at 0 drops the stream's recurrent state).
TEST(Resets, LossEqualsFeedingWithRecurrentResets) {
  for (const GradCase& g : StreamCases()) {
    const ModelConfig c = SmallConfig(g);
    std::unique_ptr<Model> model = PerturbedModel(c, 13);
    const int64_t T = 40, V = c.vocab_size, prefix = 48;
    std::vector<int32_t> tokens = RandomTokens(T, V, 19);
    std::unique_ptr<Session> stream = StreamedSession(*model, prefix, 29);
    // A session where the batch's sequence starts: the stream again, or empty.
    auto start = [&](bool from_stream) {
      if (from_stream) return StreamedSession(*model, prefix, 29);
      auto created = Session::Create(model.get(), 0);
      EXPECT_TRUE(created.ok());
      return std::move(*created);
    };
    for (bool from_stream : {false, true}) {
      for (const std::vector<int64_t>& cuts :
           {std::vector<int64_t>{13}, std::vector<int64_t>{0, 7, 8, 33}}) {
        std::vector<uint8_t> resets(T, 0);
        for (int64_t t : cuts) resets[t] = 1;
        const StreamState* initial[1] = {&stream->state()};
        Batch batch{tokens.data(), 1, T, nullptr};
        batch.initial = from_stream ? initial : nullptr;
        batch.resets = resets.data();
        const double got = Loss(*model, batch);
        // The same pieces through a session.
        std::unique_ptr<Session> fed = start(from_stream);
        std::vector<float> logits(T * V);
        int64_t t0 = 0;
        for (int64_t t = 0; t <= T; ++t) {
          if (t < T && !resets[t]) continue;
          if (t > t0) {
            ASSERT_TRUE(fed->Feed(&tokens[t0], t - t0, LogitsMode::kAll, &logits[t0 * V],
                                  (t - t0) * V)
                            .ok());
          }
          if (t < T) ASSERT_TRUE(fed->ResetRecurrent().ok());
          t0 = t;
        }
        const double want = CrossEntropy(logits, tokens, V);
        EXPECT_NEAR(got, want, 1e-5 * want) << g.name << " from_stream " << from_stream;
        // Without the resets the logits differ: they mattered.
        std::unique_ptr<Session> plain = start(from_stream);
        std::vector<float> kept(T * V);
        ASSERT_TRUE(
            plain->Feed(tokens.data(), T, LogitsMode::kAll, kept.data(), kept.size()).ok());
        double most = 0.0;
        for (int64_t i = 0; i < T * V; ++i) {
          most = std::max<double>(most, std::fabs(kept[i] - logits[i]));
        }
        EXPECT_GT(most, 1e-3) << g.name;
      }
    }
  }
}

TEST(FromState, RefusesAStateInsideAWindowOrOfAnotherShape) {
  const ModelConfig c = SmallConfig(GradCase{"w4"});
  std::unique_ptr<Model> model = PerturbedModel(c, 13);
  std::vector<int32_t> tokens(16, 1);
  BatchStats stats;
  Gradients grads;
  std::unique_ptr<Session> inside = StreamedSession(*model, 6, 1);  // window 4: pending
  const StreamState* initial[1] = {&inside->state()};
  Batch batch{tokens.data(), 1, 16, nullptr};
  batch.initial = initial;
  absl::Status s = ComputeGradients(*model, batch, {}, &stats, &grads);
  EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidArgument) << s;
  ModelConfig wider = c;
  wider.d_model = 24;
  std::unique_ptr<Model> other = PerturbedModel(wider, 13);
  std::unique_ptr<Session> shaped = StreamedSession(*other, 8, 1);
  initial[0] = &shaped->state();
  s = ComputeGradients(*model, batch, {}, &stats, &grads);
  EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidArgument) << s;
}

TEST(CountParameters, EqualsTheParameterList) {
  for (const GradCase& g :
       {GradCase{"a"}, GradCase{"b", PoolPolicy::kFifo, 1, Fusion::kGated, 1, 4, false},
        GradCase{"c", PoolPolicy::kFifo, 1, Fusion::kResidual, 0, 0}}) {
    ModelConfig c = SmallConfig(g);
    ASSERT_TRUE(c.Resolve().ok());
    ModelWeights w;
    AllocateWeights(c, &w);
    double n = 0;
    for (const ParamRef& p : ListParams(c, &w)) n += static_cast<double>(p.numel());
    EXPECT_EQ(CountParameters(c), n) << g.name;
  }
}

}  // namespace
}  // namespace memmamba
