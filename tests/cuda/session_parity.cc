// Sessions of an MM_DEVICE_CUDA model (src/runtime/device_sessions.cc)
// against the same model on the CPU, the reference: logits of streams fed one
// token at a time, in random chunks and in batched steps; the pools (windows
// equal, summaries close); snapshots taken on one device and continued on the
// other; a refused restore that changes nothing; resets; and enough sessions
// to make the slot arrays grow, each keeping its stream. Configurations
// cover both pool policies, windows 1 and 4, each fusion mode, cross-layer
// reads, plain Mamba and bf16 weights.
//
// Without a CUDA device (or without libmemmamba_cuda) the program exits 77,
// which CTest reports as a skip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_library.h"
#include "model/model.h"
#include "runtime/sample.h"
#include "runtime/session.h"
#include "runtime/snapshot.h"

namespace memmamba {
namespace {

struct Case {
  std::string name;
  PoolPolicy policy = PoolPolicy::kPriority;
  int64_t window = 4;
  Fusion fusion = Fusion::kWeighted;
  int64_t cross = 2;
  int64_t capacity = 6;
  bool bf16 = false;
  int64_t summary = 12;  // 12: the reads move notes in float4s; 9: in floats
  bool tf32 = false;     // the GPU model's products on TF32 tensor cores
  bool bf16_products = false;  // MM_MATH_BF16 on the GPU
};

ModelConfig Config(const Case& k) {
  ModelConfig c;
  c.vocab_size = 50;
  c.d_model = 24;
  c.n_layer = 4;
  c.d_state = 5;
  c.summary_dim = k.summary;
  c.attn_heads = 3;
  c.note_window = k.window;
  c.pool_capacity = k.capacity;
  c.pool_policy = k.policy;
  c.fusion = k.fusion;
  c.cross_layer_period = k.cross;
  c.cross_layer_span = 2;
  c.note_threshold = 0.5f;
  EXPECT_TRUE(c.Resolve().ok());
  return c;
}

// A CPU model with weights moved away from their init (so that fusion,
// gates and scores all matter) and its twin on the GPU.
struct Pair {
  std::unique_ptr<Model> cpu, gpu;
};

Pair MakePair(const Case& k, uint64_t seed) {
  ModelOptions one;
  one.n_threads = 1;
  const ModelConfig config = Config(k);
  auto base = Model::Create(config, seed, one);
  EXPECT_TRUE(base.ok()) << base.status();
  ModelWeights w = (*base)->weights();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const ParamRef& p : ListParams(config, &w)) {
    float* d = p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    const float s = p.name.find("A_log") != std::string::npos ? 0.1f
                    : p.name.find("score.bias") != std::string::npos ? 0.5f
                                                                     : 0.1f;
    for (int64_t i = 0; i < p.numel(); ++i) d[i] += s * normal(rng);
  }
  one.bf16_weights = k.bf16;
  ModelOptions dev = one;
  dev.cuda = true;
  dev.tf32 = k.tf32 || k.bf16_products;
  dev.bf16_products = k.bf16_products;
  Pair pair;
  auto cpu = Model::FromWeights(config, w, one);
  auto gpu = Model::FromWeights(config, std::move(w), dev);
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_TRUE(gpu.ok()) << gpu.status();
  if (cpu.ok()) pair.cpu = std::move(*cpu);
  if (gpu.ok()) pair.gpu = std::move(*gpu);
  return pair;
}

std::unique_ptr<Session> NewSession(const Model* m, int64_t max_chunk = 0) {
  auto s = Session::Create(m, max_chunk);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % V);
  return t;
}

double RelErr(const float* got, const float* want, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// fp32 throughout on both sides; the sums run in other orders.
constexpr double kTol = 2e-5;

// The pools of a session, as windows per layer (the device's brought down).
std::vector<std::vector<int64_t>> PoolWindows(Session* s) {
  EXPECT_TRUE(s->SyncState().ok());
  std::vector<std::vector<int64_t>> out;
  for (const LayerState& L : s->state().layers) {
    std::vector<int64_t> w;
    for (const PoolEntryPtr& e : L.pool) w.push_back(e->window);
    out.push_back(w);
  }
  return out;
}

// The two states agree: the same notes, the arrays within kTol.
void ExpectCloseStates(Session* gpu, Session* cpu, const std::string& what) {
  ASSERT_TRUE(gpu->SyncState().ok());
  ASSERT_TRUE(cpu->SyncState().ok());
  const StreamState& a = gpu->state();
  const StreamState& b = cpu->state();
  ASSERT_EQ(a.position, b.position) << what;
  ASSERT_EQ(a.layers.size(), b.layers.size()) << what;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerState &x = a.layers[l], &y = b.layers[l];
    EXPECT_LE(RelErr(x.ssm.data(), y.ssm.data(), y.ssm.size()), kTol) << what << " layer " << l;
    EXPECT_LE(RelErr(x.conv.data(), y.conv.data(), y.conv.size()), kTol) << what << " layer " << l;
    ASSERT_EQ(x.win_max.size(), y.win_max.size());
    for (size_t d = 0; d < y.win_max.size(); ++d) {
      if (std::isinf(y.win_max[d])) {
        EXPECT_EQ(x.win_max[d], y.win_max[d]) << what;
      } else {
        EXPECT_NEAR(x.win_max[d], y.win_max[d], 1e-4 * (1 + std::fabs(y.win_max[d]))) << what;
      }
    }
    ASSERT_EQ(x.pool.size(), y.pool.size()) << what << " layer " << l;
    for (size_t i = 0; i < y.pool.size(); ++i) {
      EXPECT_EQ(x.pool[i]->window, y.pool[i]->window) << what;
      EXPECT_NEAR(x.pool[i]->score, y.pool[i]->score, 1e-5) << what;
      EXPECT_LE(RelErr(x.pool[i]->summary, y.pool[i]->summary, a.summary_dim), kTol) << what;
    }
  }
}

class SessionParity : public ::testing::TestWithParam<Case> {};

TEST_P(SessionParity, StreamsChunksAndSteps) {
  const Case& k = GetParam();
  Pair p = MakePair(k, 4321);
  ASSERT_TRUE(p.cpu && p.gpu);
  EXPECT_EQ(p.cpu->Fingerprint(), p.gpu->Fingerprint());
  const int64_t T = 160, V = p.cpu->config().vocab_size;
  const std::vector<int32_t> tokens = RandomTokens(T, V, 7);

  // The reference: one token at a time on the CPU.
  auto ref = NewSession(p.cpu.get());
  std::vector<float> want(T * V);
  for (int64_t t = 0; t < T; ++t) {
    ASSERT_TRUE(ref->Feed(&tokens[t], 1, LogitsMode::kLast, &want[t * V], V).ok());
  }

  // The GPU one token at a time, then in random chunks (a small block size).
  auto one = NewSession(p.gpu.get());
  std::vector<float> got(T * V);
  for (int64_t t = 0; t < T; ++t) {
    ASSERT_TRUE(one->Feed(&tokens[t], 1, LogitsMode::kLast, &got[t * V], V).ok());
  }
  EXPECT_LE(RelErr(got.data(), want.data(), got.size()), kTol) << "one token at a time";
  ExpectCloseStates(one.get(), ref.get(), "one token at a time");

  auto chunked = NewSession(p.gpu.get(), 7);
  std::mt19937 rng(5);
  for (int64_t t = 0; t < T;) {
    const int64_t n = std::min<int64_t>(T - t, 1 + rng() % 23);
    ASSERT_TRUE(chunked->Feed(&tokens[t], n, LogitsMode::kAll, &got[t * V], n * V).ok());
    t += n;
  }
  EXPECT_LE(RelErr(got.data(), want.data(), got.size()), kTol) << "chunked";
  EXPECT_EQ(PoolWindows(chunked.get()), PoolWindows(ref.get()));
  if (k.capacity > 0) {
    int64_t notes = 0;
    for (uint32_t l = 0; l < 4; ++l) notes += chunked->PoolSize(l);
    EXPECT_GT(notes, 0) << "no note was ever kept: the pools go untested";
  }

  // Five streams stepped together on the GPU equal their CPU feeds.
  const int kStreams = 5;
  std::vector<std::unique_ptr<Session>> gpu, cpu;
  std::vector<std::vector<int32_t>> streams;
  for (int i = 0; i < kStreams; ++i) {
    gpu.push_back(NewSession(p.gpu.get()));
    cpu.push_back(NewSession(p.cpu.get()));
    streams.push_back(RandomTokens(T / 2, V, 100 + i));
  }
  // Different positions: stream i starts i tokens ahead.
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(gpu[i]->Feed(streams[i].data(), i, LogitsMode::kNone, nullptr, 0).ok());
    ASSERT_TRUE(cpu[i]->Feed(streams[i].data(), i, LogitsMode::kNone, nullptr, 0).ok());
  }
  std::vector<Session*> ptrs;
  for (auto& s : gpu) ptrs.push_back(s.get());
  std::vector<float> step(kStreams * V), solo(V);
  double worst = 0.0;
  for (int64_t t = kStreams; t < T / 2; ++t) {
    std::vector<int32_t> toks(kStreams);
    for (int i = 0; i < kStreams; ++i) toks[i] = streams[i][t];
    ASSERT_TRUE(Session::StepMany(ptrs.data(), kStreams, toks.data(), step.data(), step.size())
                    .ok());
    for (int i = 0; i < kStreams; ++i) {
      ASSERT_TRUE(cpu[i]->Feed(&toks[i], 1, LogitsMode::kLast, solo.data(), V).ok());
      worst = std::max(worst, RelErr(&step[i * V], solo.data(), V));
    }
  }
  EXPECT_LE(worst, kTol) << "batched steps";
  for (int i = 0; i < kStreams; ++i) {
    ExpectCloseStates(gpu[i].get(), cpu[i].get(), "stream " + std::to_string(i));
  }

  // The state's size from the device's pool fill equals the CPU's.
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(cpu[i]->SyncState().ok());
    EXPECT_EQ(gpu[i]->StateBytes(), cpu[i]->state().Bytes()) << "stream " << i;
  }

  // Reset: the stream starts again.
  ASSERT_TRUE(one->Reset().ok());
  EXPECT_EQ(one->state().position, 0);
  ASSERT_TRUE(one->Feed(tokens.data(), 9, LogitsMode::kAll, got.data(), 9 * V).ok());
  EXPECT_LE(RelErr(got.data(), want.data(), 9 * V), kTol) << "after a reset";
}

// Snapshots: a GPU stream continued on the CPU, a CPU stream continued on
// the GPU, and a refused restore that leaves the GPU session as it was.
TEST_P(SessionParity, SnapshotsCrossDevices) {
  const Case& k = GetParam();
  Pair p = MakePair(k, 99);
  ASSERT_TRUE(p.cpu && p.gpu);
  const int64_t T = 120, V = p.cpu->config().vocab_size;
  const std::vector<int32_t> tokens = RandomTokens(T, V, 11);
  for (const int64_t cut : {int64_t{1}, k.window * 3, int64_t{57}}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    auto ref = NewSession(p.cpu.get());
    std::vector<float> want((T - cut) * V), got((T - cut) * V);
    ASSERT_TRUE(ref->Feed(tokens.data(), cut, LogitsMode::kNone, nullptr, 0).ok());
    ASSERT_TRUE(
        ref->Feed(&tokens[cut], T - cut, LogitsMode::kAll, want.data(), want.size()).ok());

    // GPU → snapshot → CPU.
    auto g = NewSession(p.gpu.get());
    ASSERT_TRUE(g->Feed(tokens.data(), cut, LogitsMode::kNone, nullptr, 0).ok());
    ASSERT_TRUE(g->SyncState().ok());
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(WriteSnapshot(*p.gpu, g->state(), [&](const uint8_t* d, size_t n) {
                  bytes.assign(d, d + n);
                  return absl::OkStatus();
                }).ok());
    auto c = NewSession(p.cpu.get());
    ASSERT_TRUE(c->Restore([&](StreamState* s) {
                   return ReadSnapshot(*p.cpu, bytes.data(), bytes.size(), s);
                 }).ok());
    ASSERT_TRUE(c->Feed(&tokens[cut], T - cut, LogitsMode::kAll, got.data(), got.size()).ok());
    EXPECT_LE(RelErr(got.data(), want.data(), got.size()), kTol) << "GPU snapshot on the CPU";

    // CPU → snapshot → GPU (a session already in use).
    auto src = NewSession(p.cpu.get());
    ASSERT_TRUE(src->Feed(tokens.data(), cut, LogitsMode::kNone, nullptr, 0).ok());
    std::vector<uint8_t> cpu_bytes;
    ASSERT_TRUE(WriteSnapshot(*p.cpu, src->state(), [&](const uint8_t* d, size_t n) {
                  cpu_bytes.assign(d, d + n);
                  return absl::OkStatus();
                }).ok());
    auto used = NewSession(p.gpu.get());
    ASSERT_TRUE(used->Feed(tokens.data(), 13, LogitsMode::kNone, nullptr, 0).ok());
    ASSERT_TRUE(used->Restore([&](StreamState* s) {
                      return ReadSnapshot(*p.gpu, cpu_bytes.data(), cpu_bytes.size(), s);
                    }).ok());
    EXPECT_EQ(used->state().position, cut);
    ASSERT_TRUE(
        used->Feed(&tokens[cut], T - cut, LogitsMode::kAll, got.data(), got.size()).ok());
    EXPECT_LE(RelErr(got.data(), want.data(), got.size()), kTol) << "CPU snapshot on the GPU";

    // A damaged snapshot is refused and the GPU session goes on unchanged.
    auto keep = NewSession(p.gpu.get());
    ASSERT_TRUE(keep->Feed(tokens.data(), cut, LogitsMode::kNone, nullptr, 0).ok());
    std::vector<uint8_t> bad = cpu_bytes;
    bad[bad.size() / 2] ^= 0x40;
    EXPECT_FALSE(keep->Restore([&](StreamState* s) {
                        return ReadSnapshot(*p.gpu, bad.data(), bad.size(), s);
                      }).ok());
    ASSERT_TRUE(
        keep->Feed(&tokens[cut], T - cut, LogitsMode::kAll, got.data(), got.size()).ok());
    EXPECT_LE(RelErr(got.data(), want.data(), got.size()), kTol) << "after a refused restore";
  }
}

// A stream whose recurrent state was reset midway (Session::ResetRecurrent)
// goes on as on the CPU, with the same notes.
TEST_P(SessionParity, ResetRecurrentMatchesTheCpu) {
  const Case& k = GetParam();
  Pair p = MakePair(k, 5);
  ASSERT_TRUE(p.cpu && p.gpu);
  const int64_t T = 96, cut = 41, V = p.cpu->config().vocab_size;
  const std::vector<int32_t> tokens = RandomTokens(T, V, 17);
  auto c = NewSession(p.cpu.get());
  auto g = NewSession(p.gpu.get());
  std::vector<float> want((T - cut) * V), got((T - cut) * V);
  for (Session* s : {c.get(), g.get()}) {
    ASSERT_TRUE(s->Feed(tokens.data(), cut, LogitsMode::kNone, nullptr, 0).ok());
    ASSERT_TRUE(s->ResetRecurrent().ok());
  }
  ExpectCloseStates(g.get(), c.get(), "after the reset");
  for (const LayerState& L : g->state().layers) {
    for (float x : L.ssm) ASSERT_EQ(x, 0.0f);
  }
  ASSERT_TRUE(c->Feed(&tokens[cut], T - cut, LogitsMode::kAll, want.data(), want.size()).ok());
  ASSERT_TRUE(g->Feed(&tokens[cut], T - cut, LogitsMode::kAll, got.data(), got.size()).ok());
  EXPECT_LE(RelErr(got.data(), want.data(), got.size()), kTol);
  ExpectCloseStates(g.get(), c.get(), "at the end");
}

// Twenty sessions (the slot arrays grow 4 → 8 → 16 → 32), fed in turns;
// each equals its own CPU stream, and a freed slot is taken again cleanly;
// recorded steps survive the arrays growing under them.
TEST_P(SessionParity, ManySessionsKeepTheirStreams) {
  const Case& k = GetParam();
  Pair p = MakePair(k, 7);
  ASSERT_TRUE(p.cpu && p.gpu);
  const int64_t V = p.cpu->config().vocab_size;
  const int kSessions = 20, kRounds = 3, kLen = 11;
  std::vector<std::unique_ptr<Session>> gpu, cpu;
  std::vector<std::vector<int32_t>> streams;
  for (int i = 0; i < kSessions; ++i) {
    gpu.push_back(NewSession(p.gpu.get()));
    cpu.push_back(NewSession(p.cpu.get()));
    streams.push_back(RandomTokens(kRounds * kLen, V, 500 + i));
  }
  // Two of them stepped together (their steps are recorded as a graph), then
  // more sessions (the slot arrays move), then stepped again: the graphs
  // follow the arrays.
  {
    auto extra_g = NewSession(p.gpu.get()), extra_c = NewSession(p.cpu.get());
    Session* pair_g[2] = {gpu[0].get(), extra_g.get()};
    Session* pair_c[2] = {cpu[0].get(), extra_c.get()};
    std::vector<float> step(2 * V), solo(V);
    std::vector<std::unique_ptr<Session>> more;
    for (int t = 0; t < 12; ++t) {
      if (t == 6) {
        for (int i = 0; i < 40; ++i) more.push_back(NewSession(p.gpu.get()));
      }
      const int32_t toks[2] = {static_cast<int32_t>((7 * t) % V),
                               static_cast<int32_t>((3 * t + 1) % V)};
      ASSERT_TRUE(Session::StepMany(pair_g, 2, toks, step.data(), step.size()).ok());
      for (int i = 0; i < 2; ++i) {
        ASSERT_TRUE(pair_c[i]->Feed(&toks[i], 1, LogitsMode::kLast, solo.data(), V).ok());
        EXPECT_LE(RelErr(&step[i * V], solo.data(), V), kTol) << "step " << t << " stream " << i;
      }
    }
    ASSERT_TRUE(gpu[0]->Reset().ok());
    ASSERT_TRUE(cpu[0]->Reset().ok());
  }
  gpu[3].reset();  // a slot freed in the middle...
  gpu[3] = NewSession(p.gpu.get());  // ...and taken again: it starts empty
  std::vector<float> a(kLen * V), b(kLen * V);
  for (int r = 0; r < kRounds; ++r) {
    for (int i = 0; i < kSessions; ++i) {
      const int32_t* t = &streams[i][r * kLen];
      ASSERT_TRUE(gpu[i]->Feed(t, kLen, LogitsMode::kAll, a.data(), a.size()).ok());
      ASSERT_TRUE(cpu[i]->Feed(t, kLen, LogitsMode::kAll, b.data(), b.size()).ok());
      EXPECT_LE(RelErr(a.data(), b.data(), a.size()), kTol) << "session " << i << " round " << r;
    }
  }
}

// Many streams stepped in one call: more rows than the decode products take
// (the general products and the decode reads), and enough channels (200 ·
// E = 9600) for the scan's lane-per-channel layout. Streams start at
// different positions, so windows close on different steps.
TEST_P(SessionParity, StepsManyStreamsAtOnce) {
  const Case& k = GetParam();
  Pair p = MakePair(k, 99);
  ASSERT_TRUE(p.cpu && p.gpu);
  const int64_t V = p.cpu->config().vocab_size;
  const int kStreams = 200, kSteps = 3 * 4 + 2;
  std::vector<std::unique_ptr<Session>> gpu, cpu;
  std::vector<std::vector<int32_t>> streams;
  for (int i = 0; i < kStreams; ++i) {
    gpu.push_back(NewSession(p.gpu.get()));
    cpu.push_back(NewSession(p.cpu.get()));
    streams.push_back(RandomTokens(16 + kSteps, V, 900 + i));
    const int64_t ahead = i % 16;
    ASSERT_TRUE(gpu[i]->Feed(streams[i].data(), ahead, LogitsMode::kNone, nullptr, 0).ok());
    ASSERT_TRUE(cpu[i]->Feed(streams[i].data(), ahead, LogitsMode::kNone, nullptr, 0).ok());
  }
  std::vector<Session*> ptrs;
  for (auto& s : gpu) ptrs.push_back(s.get());
  std::vector<float> step(kStreams * V), solo(V);
  double worst = 0.0;
  for (int t = 0; t < kSteps; ++t) {
    std::vector<int32_t> toks(kStreams);
    for (int i = 0; i < kStreams; ++i) toks[i] = streams[i][i % 16 + t];
    ASSERT_TRUE(Session::StepMany(ptrs.data(), kStreams, toks.data(), step.data(), step.size())
                    .ok());
    for (int i = 0; i < kStreams; ++i) {
      ASSERT_TRUE(cpu[i]->Feed(&toks[i], 1, LogitsMode::kLast, solo.data(), V).ok());
      worst = std::max(worst, RelErr(&step[i * V], solo.data(), V));
    }
  }
  EXPECT_LE(worst, kTol) << "200 streams stepped together";
  for (int i : {0, 7, 13, 199}) {
    ExpectCloseStates(gpu[i].get(), cpu[i].get(), "stream " + std::to_string(i));
  }
}

// Next tokens chosen on the device (Session::StepManySample) equal the
// host's choice (runtime/sample.h) from the logits of twins stepped with
// logits on the same device (the same kernels: the same bits), greedy and
// tempered, one seed for all or one per stream, for 12 streams (the decode
// reads beside the general products) and 100 (the general ops). A row whose best two scores are within 1e-4
// is not compared: the device's logarithm may round the other way there.
TEST(SessionSample, DeviceDrawsMatchTheHost) {
  Pair p = MakePair(Case{"sample"}, 31);
  ASSERT_TRUE(p.gpu);
  const int64_t V = p.gpu->config().vocab_size;
  for (int n : {12, 100}) {
    std::vector<std::unique_ptr<Session>> a, b;
    for (int i = 0; i < n; ++i) {
      a.push_back(NewSession(p.gpu.get()));
      b.push_back(NewSession(p.gpu.get()));
      const std::vector<int32_t> pre = RandomTokens(i % 9, V, 700 + i);
      ASSERT_TRUE(a[i]->Feed(pre.data(), pre.size(), LogitsMode::kNone, nullptr, 0).ok());
      ASSERT_TRUE(b[i]->Feed(pre.data(), pre.size(), LogitsMode::kNone, nullptr, 0).ok());
    }
    std::vector<Session*> pa, pb;
    for (int i = 0; i < n; ++i) {
      pa.push_back(a[i].get());
      pb.push_back(b[i].get());
    }
    std::vector<int32_t> tok(n, 1), next(n);
    std::vector<float> logits(n * V);
    int compared = 0;
    for (int step = 0; step < 10; ++step) {
      SampleOptions o;
      o.temperature = step % 2 == 0 ? 0.0f : 0.9f;
      o.seed = 77 + step;
      std::vector<uint64_t> seeds(n);
      for (int i = 0; i < n; ++i) seeds[i] = 1000 * step + i;
      if (step % 4 == 3) o.seeds = seeds.data();  // a seed per stream
      ASSERT_TRUE(Session::StepMany(pa.data(), n, tok.data(), logits.data(), logits.size()).ok());
      ASSERT_TRUE(Session::StepManySample(pb.data(), n, tok.data(), o, next.data()).ok());
      for (int i = 0; i < n; ++i) {
        const float* row = &logits[i * V];
        const int64_t pos = b[i]->state().position;
        const uint64_t seed = SeedOf(o, i);
        const int32_t want = SampleRow(row, V, o.temperature, seed, pos);
        // The runner-up's score: the choice with the winner masked out.
        std::vector<float> masked(row, row + V);
        masked[want] = NAN;
        const int32_t second = SampleRow(masked.data(), V, o.temperature, seed, pos);
        auto score = [&](int32_t v) {
          if (o.temperature == 0.0f) return row[v];
          const uint64_t h = SampleMix(seed ^ SampleMix(static_cast<uint64_t>(pos) ^
                                                         SampleMix(static_cast<uint64_t>(v))));
          const float u = (static_cast<float>(h >> 40) + 0.5f) / 16777216.0f;
          return row[v] / o.temperature + -std::log(-std::log(u));
        };
        if (std::fabs(score(want) - score(second)) < 1e-4f) continue;
        EXPECT_EQ(next[i], want) << n << " streams, step " << step << ", stream " << i;
        ++compared;
      }
      tok = next;
    }
    EXPECT_GT(compared, n * 10 * 9 / 10);
  }
}

// Reduced-precision products on the GPU (k.tf32 or k.bf16_products) stay
// within `tol` of the CPU's fp32 in a long feed (the chunked products), in
// batched steps of more streams than the decode kernels take (the general
// products) and of a few (the decode kernels), and differ from the fp32 GPU
// model's bits (the option reaches the products). FIFO pools: a kept note
// does not depend on how two near scores compare.
void ExpectNearFp32(const Case& k, double tol) {
  Case exact = k;
  exact.tf32 = false;
  exact.bf16_products = false;
  Pair p = MakePair(k, 4321);
  Pair q = MakePair(exact, 4321);
  ASSERT_TRUE(p.cpu && p.gpu && q.gpu);
  const int64_t T = 100, V = p.cpu->config().vocab_size;
  const std::vector<int32_t> tokens = RandomTokens(T, V, 7);
  std::vector<float> got(T * V), want(T * V), fp32(T * V);
  auto g = NewSession(p.gpu.get()), c = NewSession(p.cpu.get()), e = NewSession(q.gpu.get());
  ASSERT_TRUE(g->Feed(tokens.data(), T, LogitsMode::kAll, got.data(), got.size()).ok());
  ASSERT_TRUE(c->Feed(tokens.data(), T, LogitsMode::kAll, want.data(), want.size()).ok());
  ASSERT_TRUE(e->Feed(tokens.data(), T, LogitsMode::kAll, fp32.data(), fp32.size()).ok());
  EXPECT_LE(RelErr(got.data(), want.data(), got.size()), tol);
  EXPECT_LE(RelErr(fp32.data(), want.data(), got.size()), kTol);
  EXPECT_GT(RelErr(got.data(), fp32.data(), got.size()), 0.0) << "the option never used";
  EXPECT_EQ(PoolWindows(g.get()), PoolWindows(c.get()));

  for (const int streams : {12, 3}) {
    std::vector<std::unique_ptr<Session>> gpu, cpu;
    for (int i = 0; i < streams; ++i) {
      gpu.push_back(NewSession(p.gpu.get()));
      cpu.push_back(NewSession(p.cpu.get()));
    }
    std::vector<Session*> ptrs;
    for (auto& s : gpu) ptrs.push_back(s.get());
    std::vector<float> step(streams * V), solo(V);
    double worst = 0.0;
    for (int64_t t = 0; t < 30; ++t) {
      std::vector<int32_t> toks(streams);
      for (int i = 0; i < streams; ++i) toks[i] = tokens[(t + 5 * i) % T];
      ASSERT_TRUE(
          Session::StepMany(ptrs.data(), streams, toks.data(), step.data(), step.size()).ok());
      for (int i = 0; i < streams; ++i) {
        ASSERT_TRUE(cpu[i]->Feed(&toks[i], 1, LogitsMode::kLast, solo.data(), V).ok());
        worst = std::max(worst, RelErr(&step[i * V], solo.data(), V));
      }
    }
    EXPECT_LE(worst, tol) << "batched steps of " << streams << " streams";
  }
}

// MM_MATH_TF32: inputs rounded to 10 mantissa bits.
TEST(SessionParityTf32, StaysNearFp32) {
  Case k{"tf32", PoolPolicy::kFifo, 4, Fusion::kWeighted, 2, 6, false, 12, true};
  ExpectNearFp32(k, 1e-2);
}

// MM_MATH_BF16: the mixers' and the head's weights in bf16 on the device,
// and their products' inputs rounded to bf16 (8 bits) where they run on
// tensor cores; from fp32 weights (rounded on upload) and from bf16 ones.
TEST(SessionParityBf16, StaysNearFp32) {
  Case k{"bf16_products", PoolPolicy::kFifo, 4, Fusion::kWeighted, 2, 6, false, 12};
  k.bf16_products = true;
  ExpectNearFp32(k, 3e-2);
  k.bf16 = true;
  ExpectNearFp32(k, 3e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, SessionParity,
    ::testing::Values(Case{"priority_w4"},
                      Case{"fifo_w1", PoolPolicy::kFifo, 1, Fusion::kWeighted, 2, 6},
                      Case{"gated_cross1", PoolPolicy::kPriority, 4, Fusion::kGated, 1, 5},
                      Case{"residual_nocross", PoolPolicy::kFifo, 4, Fusion::kResidual, 0, 3},
                      Case{"plain_mamba", PoolPolicy::kPriority, 4, Fusion::kWeighted, 0, 0},
                      Case{"bf16", PoolPolicy::kPriority, 4, Fusion::kWeighted, 2, 6, true},
                      Case{"summary9", PoolPolicy::kPriority, 4, Fusion::kWeighted, 1, 5,
                           false, 9}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

}  // namespace
}  // namespace memmamba

int main(int argc, char** argv) {
  auto ctx = memmamba::CudaContext::Create();
  if (!ctx.ok()) {
    std::printf("cuda_session_parity: skipped: %s\n",
                std::string(ctx.status().message()).c_str());
    return 77;
  }
  std::printf("device: %s\n", (*ctx)->device_name().c_str());
  ctx->reset();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
