// Pool semantics (DESIGN 2.3 "Insert"): eviction order, ties, thresholds and
// the pending partial window.
#include "runtime/pool.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "memmamba/memmamba.h"

namespace memmamba {
namespace {

PoolEntryPtr Note(int64_t window, float score) {
  auto e = std::make_shared<PoolEntry>();
  e->window = window;
  e->score = score;
  return e;
}

std::vector<int64_t> Windows(const Pool& pool) {
  std::vector<int64_t> w;
  for (const auto& e : pool) w.push_back(e->window);
  return w;
}

TEST(PoolTest, AppendsUntilFull) {
  Pool pool;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(InsertNote(PoolPolicy::kPriority, 3, Note(i, 0.9f), &pool));
  EXPECT_EQ(Windows(pool), (std::vector<int64_t>{0, 1, 2}));
}

TEST(PoolTest, FifoDropsOldest) {
  Pool pool;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(InsertNote(PoolPolicy::kFifo, 3, Note(i, 0.9f - i * 0.1f), &pool));
  EXPECT_EQ(Windows(pool), (std::vector<int64_t>{2, 3, 4}));
}

TEST(PoolTest, PriorityReplacesLowestKeepsWindowOrder) {
  Pool pool;
  InsertNote(PoolPolicy::kPriority, 3, Note(0, 0.9f), &pool);
  InsertNote(PoolPolicy::kPriority, 3, Note(1, 0.6f), &pool);
  InsertNote(PoolPolicy::kPriority, 3, Note(2, 0.8f), &pool);
  EXPECT_TRUE(InsertNote(PoolPolicy::kPriority, 3, Note(3, 0.7f), &pool));
  EXPECT_EQ(Windows(pool), (std::vector<int64_t>{0, 2, 3}));  // window 1 (0.6) went
}

TEST(PoolTest, PriorityDropsNewNoteUnlessStrictlyGreater) {
  Pool pool;
  InsertNote(PoolPolicy::kPriority, 2, Note(0, 0.7f), &pool);
  InsertNote(PoolPolicy::kPriority, 2, Note(1, 0.8f), &pool);
  EXPECT_FALSE(InsertNote(PoolPolicy::kPriority, 2, Note(2, 0.7f), &pool));  // equal: dropped
  EXPECT_FALSE(InsertNote(PoolPolicy::kPriority, 2, Note(3, 0.6f), &pool));
  EXPECT_EQ(Windows(pool), (std::vector<int64_t>{0, 1}));
}

TEST(PoolTest, PriorityTiesEvictTheOldest) {
  Pool pool;
  InsertNote(PoolPolicy::kPriority, 3, Note(0, 0.6f), &pool);
  InsertNote(PoolPolicy::kPriority, 3, Note(1, 0.9f), &pool);
  InsertNote(PoolPolicy::kPriority, 3, Note(2, 0.6f), &pool);
  EXPECT_TRUE(InsertNote(PoolPolicy::kPriority, 3, Note(3, 0.65f), &pool));
  EXPECT_EQ(Windows(pool), (std::vector<int64_t>{1, 2, 3}));  // 0 and 2 tie; 0 is older
}

TEST(PoolTest, ZeroCapacityKeepsNothing) {
  Pool pool;
  EXPECT_FALSE(InsertNote(PoolPolicy::kFifo, 0, Note(0, 0.9f), &pool));
  EXPECT_TRUE(pool.empty());
}

TEST(NoteScoreTest, CentredAndDeterministic) {
  std::vector<float> m = {1.0f, 2.0f, 3.0f, 6.0f};
  std::vector<float> w = {0.5f, -0.25f, 0.125f, 1.0f};
  // mean 3: centred m = (-2, -1, 0, 3); dot = -1 + 0.25 + 0 + 3 = 2.25.
  float expected = 1.0f / (1.0f + std::exp(-(2.25f + 0.5f)));
  EXPECT_NEAR(NoteScore(m.data(), 4, w.data(), 0.5f), expected, 1e-7f);
  // A shared offset does not change the score.
  std::vector<float> shifted = {11.0f, 12.0f, 13.0f, 16.0f};
  EXPECT_NEAR(NoteScore(shifted.data(), 4, w.data(), 0.5f), expected, 1e-6f);
}

// Through the public API: thresholds and the pending partial window.
mm_model* SmallModel(uint32_t window, uint32_t capacity, float threshold, int32_t policy) {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 32;
  c.d_model = 16;
  c.n_layer = 2;
  c.summary_dim = 8;
  c.attn_heads = 2;
  c.note_window = window;
  c.pool_capacity = capacity;
  c.note_threshold = threshold;
  c.pool_policy = policy;
  mm_model* m = nullptr;
  EXPECT_EQ(mm_model_create(&m, &c, 7, nullptr), MM_OK);
  return m;
}

TEST(PoolApiTest, ThresholdAboveEveryScoreKeepsNothing) {
  mm_model* m = SmallModel(4, 8, 1.0f, MM_POOL_FIFO);  // σ(...) < 1 always
  mm_session* s = nullptr;
  ASSERT_EQ(mm_session_create(&s, m, nullptr), MM_OK);
  std::vector<int32_t> toks(64);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>(i % 32);
  ASSERT_EQ(mm_session_feed(s, toks.data(), toks.size(), MM_LOGITS_NONE, nullptr, 0), MM_OK);
  EXPECT_EQ(mm_session_pool_size(s, 0), 0);
  EXPECT_EQ(mm_session_pool_size(s, 1), 0);
  mm_session_free(s);
  mm_model_free(m);
}

TEST(PoolApiTest, PartialWindowStaysPending) {
  // Score bias 2 at init: every note passes τ1 = 0.5, so pools count windows.
  mm_model* m = SmallModel(4, 8, 0.5f, MM_POOL_FIFO);
  mm_session* s = nullptr;
  ASSERT_EQ(mm_session_create(&s, m, nullptr), MM_OK);
  std::vector<int32_t> toks(11, 3);
  ASSERT_EQ(mm_session_feed(s, toks.data(), 11, MM_LOGITS_NONE, nullptr, 0), MM_OK);
  EXPECT_EQ(mm_session_pool_size(s, 0), 2);  // windows 0, 1 closed; 8..10 pending
  ASSERT_EQ(mm_session_feed(s, toks.data(), 1, MM_LOGITS_NONE, nullptr, 0), MM_OK);
  EXPECT_EQ(mm_session_pool_size(s, 0), 3);  // position 11 closes window 2
  ASSERT_EQ(mm_session_feed(s, toks.data(), 11, MM_LOGITS_NONE, nullptr, 0), MM_OK);
  EXPECT_EQ(mm_session_pool_size(s, 0), 5);
  mm_session_free(s);
  mm_model_free(m);
}

TEST(PoolApiTest, FifoPoolStaysAtCapacity) {
  mm_model* m = SmallModel(1, 5, 0.5f, MM_POOL_FIFO);
  mm_session* s = nullptr;
  ASSERT_EQ(mm_session_create(&s, m, nullptr), MM_OK);
  std::vector<int32_t> toks(40, 5);
  ASSERT_EQ(mm_session_feed(s, toks.data(), toks.size(), MM_LOGITS_NONE, nullptr, 0), MM_OK);
  EXPECT_EQ(mm_session_pool_size(s, 0), 5);
  EXPECT_EQ(mm_session_pool_size(s, 2), -1);
  mm_session_free(s);
  mm_model_free(m);
}

}  // namespace
}  // namespace memmamba
