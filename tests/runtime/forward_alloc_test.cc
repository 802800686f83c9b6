// A feed or a batched step runs on the session's live state (no copy per
// call), which is only transactional if nothing can fail once the forward
// pass has written a stream. These tests replace the global operator new to
// check exactly that: Forward makes no allocation that can throw once
// ReserveForward has run, and an allocation failure injected at every
// possible point of a feed or step leaves every session exactly as it was.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/forward.h"
#include "runtime/session.h"

namespace {

// Allocations counted while `g_counting`; the allocation numbered
// `g_fail_at` (1-based, 0 = never) throws std::bad_alloc.
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_news{0};
std::atomic<int64_t> g_fail_at{0};

void* Allocate(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) {
    const int64_t k = ++g_news;
    if (k == g_fail_at.load(std::memory_order_relaxed)) throw std::bad_alloc();
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}

void* AllocateAligned(size_t n, std::align_val_t al) {
  if (g_counting.load(std::memory_order_relaxed)) {
    const int64_t k = ++g_news;
    if (k == g_fail_at.load(std::memory_order_relaxed)) throw std::bad_alloc();
  }
  const size_t a = static_cast<size_t>(al);
  if (void* p = std::aligned_alloc(a, (n + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(size_t n) { return Allocate(n); }
void* operator new[](size_t n) { return Allocate(n); }
void* operator new(size_t n, std::align_val_t a) { return AllocateAligned(n, a); }
void* operator new[](size_t n, std::align_val_t a) { return AllocateAligned(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace memmamba {
namespace {

struct Case {
  std::string name;
  PoolPolicy policy;
  int64_t window;
  int64_t cross_period;  // 0 = off
  int64_t capacity;      // 0 = plain Mamba
  bool bf16 = false;
};

void PrintTo(const Case& k, std::ostream* os) { *os << k.name; }

std::unique_ptr<Model> MakeModel(const Case& k) {
  ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layer = 4;
  c.d_state = 8;
  c.summary_dim = 16;
  c.attn_heads = 4;
  c.note_window = k.window;
  c.pool_capacity = k.capacity;
  c.pool_policy = k.policy;
  c.fusion = Fusion::kGated;
  c.cross_layer_period = k.cross_period;
  c.cross_layer_span = 2;
  c.note_threshold = 0.3f;  // most windows are kept: pools fill and evict
  ModelOptions opts;
  opts.n_threads = 2;
  opts.bf16_weights = k.bf16;
  auto model = Model::Create(c, 77, opts);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

std::vector<int32_t> Tokens(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& v : t) v = static_cast<int32_t>(rng() % 64);
  return t;
}

// Every field of two states, the notes' contents included.
void ExpectSameState(const StreamState& a, const StreamState& b) {
  ASSERT_EQ(a.position, b.position);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerState& x = a.layers[l];
    const LayerState& y = b.layers[l];
    EXPECT_EQ(x.conv, y.conv) << "layer " << l;
    EXPECT_EQ(x.ssm, y.ssm) << "layer " << l;
    EXPECT_EQ(x.win_max, y.win_max) << "layer " << l;
    ASSERT_EQ(x.pool.size(), y.pool.size()) << "layer " << l;
    for (size_t i = 0; i < x.pool.size(); ++i) {
      EXPECT_EQ(x.pool[i]->window, y.pool[i]->window);
      EXPECT_EQ(x.pool[i]->score, y.pool[i]->score);
      for (int64_t s = 0; s < a.summary_dim; ++s) {
        EXPECT_EQ(x.pool[i]->summary[s], y.pool[i]->summary[s]);
      }
    }
  }
}

class ForwardAllocTest : public ::testing::TestWithParam<Case> {};

// After ReserveForward, Forward itself makes no throwing allocation, for
// one-token steps (across window closes), chunks and batched streams.
TEST_P(ForwardAllocTest, ForwardAllocatesNothingOnceReserved) {
  std::unique_ptr<Model> model = MakeModel(GetParam());
  ASSERT_NE(model, nullptr);
  std::vector<StreamState> states(3);
  for (StreamState& s : states) s.Reset(model->config());
  Workspace ws;
  std::vector<float> logits(3 * 37 * 64);
  const std::vector<int32_t> tokens = Tokens(3 * 37, 5);
  std::mt19937 rng(3);
  for (int call = 0; call < 60; ++call) {
    const int64_t B = 1 + call % 3;
    const int64_t T = call % 5 == 4 ? 1 + rng() % 37 : 1;
    std::vector<StreamState*> streams;
    for (int64_t b = 0; b < B; ++b) streams.push_back(&states[b]);
    const LogitsMode mode = call % 2 ? LogitsMode::kLast : LogitsMode::kAll;
    ReserveForward(*model, streams.data(), B, T, &ws);
    g_news = 0;
    g_counting = true;
    Forward(*model, streams.data(), B, T, tokens.data(), mode, logits.data(), &ws);
    g_counting = false;
    EXPECT_EQ(g_news.load(), 0) << "call " << call << ": B " << B << " T " << T;
  }
}

// Fails the k-th allocation of a feed, for every k until the feed succeeds:
// each failure leaves the session as it was, and the next feed succeeds.
TEST_P(ForwardAllocTest, FailedAllocationLeavesSessionsAsTheyWere) {
  std::unique_ptr<Model> model = MakeModel(GetParam());
  ASSERT_NE(model, nullptr);
  const std::vector<int32_t> warm = Tokens(160, 11);
  const std::vector<int32_t> more = Tokens(40, 12);
  std::vector<float> logits(40 * 64);
  // A one-token feed at each position of a window, a chunk, then batched steps.
  for (int what = 0; what < 4; ++what) {
    for (int64_t k = 1;; ++k) {
      std::vector<std::unique_ptr<Session>> sessions;
      for (int i = 0; i < 3; ++i) {
        auto s = Session::Create(model.get(), 0);
        ASSERT_TRUE(s.ok());
        ASSERT_TRUE((*s)->Feed(warm.data(), 147 + i + what, LogitsMode::kNone, nullptr, 0).ok());
        sessions.push_back(std::move(*s));
      }
      std::vector<StreamState> before;
      for (const auto& s : sessions) before.push_back(s->state());
      bool threw = false;
      g_news = 0;
      g_fail_at = k;
      g_counting = true;
      try {
        absl::Status st;
        if (what < 2) {
          st = sessions[0]->Feed(more.data(), 1, LogitsMode::kLast, logits.data(), 64);
        } else if (what == 2) {
          st = sessions[0]->Feed(more.data(), 23, LogitsMode::kAll, logits.data(),
                                 logits.size());
        } else {
          Session* all[3] = {sessions[0].get(), sessions[1].get(), sessions[2].get()};
          st = Session::StepMany(all, 3, more.data(), logits.data(), logits.size());
        }
        EXPECT_TRUE(st.ok()) << st;
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      g_counting = false;
      g_fail_at = 0;
      if (!threw) break;  // k passed the call's last allocation
      for (size_t i = 0; i < sessions.size(); ++i) {
        SCOPED_TRACE("case " + std::to_string(what) + ", allocation " + std::to_string(k) +
                     ", session " + std::to_string(i));
        ExpectSameState(sessions[i]->state(), before[i]);
      }
      ASSERT_TRUE(sessions[0]->Feed(more.data(), 1, LogitsMode::kNone, nullptr, 0).ok());
      ASSERT_LT(k, 10000);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, ForwardAllocTest,
    ::testing::Values(Case{"priority_w4_cross2", PoolPolicy::kPriority, 4, 2, 5},
                      Case{"fifo_w1_cross1", PoolPolicy::kFifo, 1, 1, 3},
                      Case{"priority_w32_bf16", PoolPolicy::kPriority, 32, 2, 4, true},
                      Case{"plain_mamba", PoolPolicy::kFifo, 4, 0, 0}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace memmamba
