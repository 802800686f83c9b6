// Session snapshots (DESIGN 5, runtime/snapshot.h), through the C API:
//   - continuity: a snapshot taken at any position, restored into a fresh or
//     a used session, continues with logits identical bit for bit to the
//     uninterrupted stream, and the restored state (including the derived
//     note projections) equals the original bit for bit;
//   - bad snapshots: every truncation, single-byte flips over a whole
//     snapshot, wrong identifier, version or model, zero length, huge
//     declared sizes and crafted inconsistencies each fail with their own
//     code and leave the target session exactly as it was;
//   - size query, caller / library buffers, files, inspection, the model
//     fingerprint, and the format-version-1 files checked into tests/data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <dirent.h>
#include <unistd.h>

#include "api/handles.h"
#include "flatbuffers/flatbuffers.h"
#include "memmamba/memmamba.h"
#include "runtime/snapshot.h"
#include "snapshot_generated.h"

namespace memmamba {
namespace {

using ModelHandle = std::unique_ptr<mm_model, decltype(&mm_model_free)>;
using SessionHandle = std::unique_ptr<mm_session, decltype(&mm_session_free)>;

// A small model with memory and cross-layer reads (layers 1 and 3 read the
// pools of the two layers below them).
mm_model_config SmallConfig(int32_t policy, uint32_t window) {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layer = 4;
  c.d_state = 8;
  c.summary_dim = 16;
  c.attn_heads = 4;
  c.note_window = window;
  c.pool_capacity = 5;
  c.pool_policy = policy;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  return c;
}

// A tiny one, so that every byte of its snapshot can be damaged in turn.
mm_model_config TinyConfig() {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 16;
  c.d_model = 8;
  c.n_layer = 2;
  c.d_state = 2;
  c.summary_dim = 4;
  c.attn_heads = 2;
  c.note_window = 2;
  c.pool_capacity = 3;
  c.pool_policy = MM_POOL_PRIORITY;
  c.cross_layer_period = 2;
  c.cross_layer_span = 1;
  return c;
}

ModelHandle MakeModel(const mm_model_config& c, uint64_t seed, int32_t dtype = MM_DTYPE_F32) {
  mm_model_options o;
  mm_model_options_init(&o, sizeof o);
  o.n_threads = 2;
  o.weight_dtype = dtype;
  mm_model* m = nullptr;
  EXPECT_EQ(mm_model_create(&m, &c, seed, &o), MM_OK) << mm_last_error();
  return ModelHandle(m, mm_model_free);
}

SessionHandle MakeSession(const mm_model* m) {
  mm_session* s = nullptr;
  EXPECT_EQ(mm_session_create(&s, m, nullptr), MM_OK) << mm_last_error();
  return SessionHandle(s, mm_session_free);
}

uint32_t Vocab(const mm_model* m) {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  mm_model_get_config(m, &c);
  return c.vocab_size;
}

std::vector<int32_t> RandomTokens(size_t n, uint32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& v : t) v = static_cast<int32_t>(rng() % vocab);
  return t;
}

// One token; returns the next-token logits.
std::vector<float> Step(mm_session* s, int32_t token, uint32_t vocab) {
  std::vector<float> logits(vocab);
  EXPECT_EQ(mm_session_feed(s, &token, 1, MM_LOGITS_LAST, logits.data(), vocab), MM_OK)
      << mm_session_last_error(s);
  return logits;
}

void Feed(mm_session* s, const std::vector<int32_t>& tokens) {
  ASSERT_EQ(mm_session_feed(s, tokens.data(), tokens.size(), MM_LOGITS_NONE, nullptr, 0), MM_OK)
      << mm_session_last_error(s);
}

std::string TakeSnapshot(const mm_session* s) {
  void* data = nullptr;
  size_t size = 0;
  EXPECT_EQ(mm_session_snapshot_alloc(s, &data, &size), MM_OK) << mm_last_error();
  std::string bytes(static_cast<const char*>(data), size);
  mm_free(data);
  return bytes;
}

mm_status Restore(mm_session* s, const std::string& bytes) {
  return mm_session_restore(s, bytes.data(), bytes.size());
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Bit-for-bit equality of two streams' states.
void ExpectSameState(const StreamState& a, const StreamState& b, const std::string& where) {
  ASSERT_EQ(a.position, b.position) << where;
  ASSERT_EQ(a.layers.size(), b.layers.size()) << where;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerState& x = a.layers[l];
    const LayerState& y = b.layers[l];
    EXPECT_TRUE(SameBits(x.conv, y.conv)) << where << " layer " << l << " conv";
    EXPECT_TRUE(SameBits(x.ssm, y.ssm)) << where << " layer " << l << " ssm";
    EXPECT_TRUE(SameBits(x.win_max, y.win_max)) << where << " layer " << l << " win_max";
    ASSERT_EQ(x.pool.size(), y.pool.size()) << where << " layer " << l;
    for (size_t i = 0; i < x.pool.size(); ++i) {
      EXPECT_EQ(x.pool[i]->window, y.pool[i]->window) << where;
      EXPECT_EQ(std::memcmp(&x.pool[i]->score, &y.pool[i]->score, sizeof(float)), 0) << where;
      ASSERT_EQ(a.summary_dim, b.summary_dim) << where;
      EXPECT_EQ(std::memcmp(x.pool[i]->summary, y.pool[i]->summary,
                            a.summary_dim * sizeof(float)),
                0)
          << where << " summary of note " << i;
    }
  }
}

// ---------------------------------------------------------------------------
// Continuity.

struct ContinuityCase {
  const char* name;
  int32_t policy;
  uint32_t window;
};

class SnapshotContinuityTest : public ::testing::TestWithParam<ContinuityCase> {};

TEST_P(SnapshotContinuityTest, RestoredStreamsContinueBitForBit) {
  const ContinuityCase& k = GetParam();
  const uint32_t w = k.window;
  ModelHandle model = MakeModel(SmallConfig(k.policy, w), 11);
  const uint32_t V = Vocab(model.get());
  const size_t T = 3000;
  const size_t horizon = w + 8;  // every continuation closes at least one window
  const std::vector<int32_t> tokens = RandomTokens(T + horizon, V, 5);

  // Every position in two ranges covering all residues modulo the window
  // (one from the start, one with full pools deep in the stream), plus
  // random ones.
  std::set<size_t> points;
  const size_t span = std::max<size_t>(w + 2, 40);
  for (size_t p = 0; p <= span; ++p) points.insert(p);
  for (size_t p = 1501; p <= 1501 + span; ++p) points.insert(p);
  std::mt19937 rng(99);
  while (points.size() < 2 * (span + 1) + 25) points.insert(rng() % T);

  // The uninterrupted stream, one token at a time; snapshots and state
  // copies at the chosen positions.
  SessionHandle ref = MakeSession(model.get());
  std::vector<std::vector<float>> logits(T + horizon);
  std::map<size_t, std::string> snapshots;
  std::map<size_t, StreamState> states;
  for (size_t p = 0; p < T + horizon; ++p) {
    if (points.count(p)) {
      snapshots[p] = TakeSnapshot(ref.get());
      states[p] = ref->impl->state();
    }
    logits[p] = Step(ref.get(), tokens[p], V);
  }
  ASSERT_GT(mm_session_pool_size(ref.get(), 0), 0);

  // Restore each into a fresh session or into one that is in use, and
  // continue.
  SessionHandle used = MakeSession(model.get());
  Feed(used.get(), RandomTokens(77, V, 3));
  int checked = 0;
  for (const auto& [p, bytes] : snapshots) {
    SessionHandle fresh = MakeSession(model.get());
    mm_session* s = (checked % 2 == 0) ? fresh.get() : used.get();
    ASSERT_EQ(Restore(s, bytes), MM_OK) << "position " << p << ": " << mm_session_last_error(s);
    ASSERT_EQ(mm_session_position(s), p);
    ExpectSameState(states[p], s->impl->state(), "position " + std::to_string(p));
    EXPECT_EQ(TakeSnapshot(s), bytes) << "position " << p << ": re-snapshot differs";
    for (size_t i = p; i < p + horizon; ++i) {
      const std::vector<float> got = Step(s, tokens[i], V);
      ASSERT_TRUE(SameBits(got, logits[i]))
          << k.name << ": snapshot at " << p << ", logits at " << i << " differ";
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(points.size()));
}

INSTANTIATE_TEST_SUITE_P(
    Configs, SnapshotContinuityTest,
    ::testing::Values(ContinuityCase{"fifo_w1", MM_POOL_FIFO, 1},
                      ContinuityCase{"fifo_w32", MM_POOL_FIFO, 32},
                      ContinuityCase{"priority_w1", MM_POOL_PRIORITY, 1},
                      ContinuityCase{"priority_w32", MM_POOL_PRIORITY, 32}),
    [](const ::testing::TestParamInfo<ContinuityCase>& info) { return info.param.name; });

TEST(SnapshotTest, PlainMambaAndChunkedFeedsRoundTrip) {
  mm_model_config c = SmallConfig(MM_POOL_PRIORITY, 4);
  c.pool_capacity = 0;  // no memory: no window accumulators, no pools
  ModelHandle model = MakeModel(c, 3);
  const uint32_t V = Vocab(model.get());
  SessionHandle a = MakeSession(model.get());
  Feed(a.get(), RandomTokens(301, V, 1));
  const std::string bytes = TakeSnapshot(a.get());
  SessionHandle b = MakeSession(model.get());
  ASSERT_EQ(Restore(b.get(), bytes), MM_OK) << mm_session_last_error(b.get());
  ExpectSameState(a->impl->state(), b->impl->state(), "plain");
  // Chunked continuation: same chunks on both sides, same bits.
  const std::vector<int32_t> more = RandomTokens(100, V, 2);
  std::vector<float> la(100 * V), lb(100 * V);
  ASSERT_EQ(mm_session_feed(a.get(), more.data(), 100, MM_LOGITS_ALL, la.data(), la.size()), MM_OK);
  ASSERT_EQ(mm_session_feed(b.get(), more.data(), 100, MM_LOGITS_ALL, lb.data(), lb.size()), MM_OK);
  EXPECT_TRUE(SameBits(la, lb));
}

// ---------------------------------------------------------------------------
// Bad snapshots. The target session has its own stream; after every refused
// restore its state (compared through its own snapshot) is unchanged, and
// in the end it continues exactly like a twin that never saw a bad snapshot.

class BadSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<ModelHandle>(MakeModel(TinyConfig(), 21));
    V_ = Vocab(model());
    SessionHandle source = MakeSession(model());
    Feed(source.get(), RandomTokens(11, V_, 4));  // pools filled, a window pending
    good_ = TakeSnapshot(source.get());
    target_ = std::make_unique<SessionHandle>(MakeSession(model()));
    twin_ = std::make_unique<SessionHandle>(MakeSession(model()));
    Feed(target(), RandomTokens(7, V_, 8));
    Feed(twin(), RandomTokens(7, V_, 8));
    before_ = TakeSnapshot(target());
  }

  void TearDown() override {
    // Continue the target and its twin: identical, bit for bit.
    const std::vector<int32_t> more = RandomTokens(9, V_, 6);
    for (int32_t t : more) {
      ASSERT_TRUE(SameBits(Step(target(), t, V_), Step(twin(), t, V_)))
          << "the target session changed";
    }
  }

  mm_model* model() { return model_->get(); }
  mm_session* target() { return target_->get(); }
  mm_session* twin() { return twin_->get(); }

  // Restores `bytes` into the target; expects a failure and an unchanged
  // target. Returns the code.
  mm_status Refused(const std::string& bytes, const std::string& what) {
    const mm_status st = Restore(target(), bytes);
    EXPECT_NE(st, MM_OK) << what << " was accepted";
    EXPECT_STRNE(mm_session_last_error(target()), "") << what;
    EXPECT_EQ(TakeSnapshot(target()), before_) << what << " changed the target";
    return st;
  }

  // The payload of a snapshot as an object tree, edited, and sealed again
  // as a file with a valid checksum.
  std::string Edit(const std::function<void(fb::SnapshotT*)>& edit, uint32_t version = kSnapshotFormatVersion) {
    std::vector<uint64_t> aligned((good_.size() + 7) / 8);
    std::memcpy(aligned.data(), good_.data(), good_.size());
    const auto* file = fb::GetSnapshotFile(aligned.data());
    std::unique_ptr<fb::SnapshotT> t(
        flatbuffers::GetRoot<fb::Snapshot>(file->payload()->data())->UnPack());
    edit(t.get());
    flatbuffers::FlatBufferBuilder b;
    b.Finish(fb::Snapshot::Pack(b, t.get()));
    return SealSnapshot(
        std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()), version);
  }

  // Offset in good_ of the first byte of a payload field found by `locate`.
  size_t OffsetOf(const std::function<const uint8_t*(const fb::Snapshot*)>& locate) {
    std::vector<uint64_t> aligned((good_.size() + 7) / 8);
    std::memcpy(aligned.data(), good_.data(), good_.size());
    const auto* file = fb::GetSnapshotFile(aligned.data());
    const uint8_t* p = locate(flatbuffers::GetRoot<fb::Snapshot>(file->payload()->data()));
    return static_cast<size_t>(p - reinterpret_cast<const uint8_t*>(aligned.data()));
  }

  std::unique_ptr<ModelHandle> model_;
  uint32_t V_ = 0;
  std::string good_, before_;
  std::unique_ptr<SessionHandle> target_, twin_;
};

TEST_F(BadSnapshotTest, TheGoodOneIsAcceptedAndVerifies) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(good_.data()), good_.size());
  EXPECT_TRUE(fb::VerifySnapshotFileBuffer(v));  // a standard flatbuffer, nested payload too
  SessionHandle s = MakeSession(model());
  EXPECT_EQ(Restore(s.get(), good_), MM_OK) << mm_session_last_error(s.get());
  EXPECT_EQ(Restore(s.get(), Edit([](fb::SnapshotT*) {})), MM_OK) << mm_session_last_error(s.get());
  // Also from an odd address (the caller's buffer may have any alignment).
  std::string shifted = " " + good_;
  EXPECT_EQ(mm_session_restore(s.get(), shifted.data() + 1, good_.size()), MM_OK);
}

TEST_F(BadSnapshotTest, EveryTruncation) {
  std::map<mm_status, int> codes;
  for (size_t n = 0; n < good_.size(); ++n) {
    const mm_status st = Refused(good_.substr(0, n), "truncation to " + std::to_string(n));
    EXPECT_TRUE(st == MM_ERR_CORRUPT_FILE || st == MM_ERR_CHECKSUM)
        << "truncation to " << n << ": " << mm_status_string(st);
    ++codes[st];
  }
  EXPECT_GT(codes[MM_ERR_CORRUPT_FILE], 0);
}

TEST_F(BadSnapshotTest, EverySingleByteFlip) {
  // The checksum covers every byte (the version too) and is checked before
  // the version: damage is never mistaken for a file of a newer version.
  std::map<mm_status, int> codes;
  for (size_t i = 0; i < good_.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string bad = good_;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      const std::string what = "flip " + std::to_string(mask) + " at " + std::to_string(i);
      const mm_status st = Refused(bad, what);
      ++codes[st];
      if (i >= 4 && i < 8) {
        EXPECT_EQ(st, MM_ERR_CORRUPT_FILE) << what << " (identifier)";
      } else {
        EXPECT_TRUE(st == MM_ERR_CORRUPT_FILE || st == MM_ERR_CHECKSUM)
            << what << ": " << mm_status_string(st);
      }
    }
  }
  EXPECT_GT(codes[MM_ERR_CHECKSUM], 0);
  EXPECT_GT(codes[MM_ERR_CORRUPT_FILE], 0);
}

TEST_F(BadSnapshotTest, WrongIdentifier) {
  std::string bad = good_;
  std::memcpy(&bad[4], "MMSX", 4);
  EXPECT_EQ(Refused(bad, "identifier MMSX"), MM_ERR_CORRUPT_FILE);
  EXPECT_NE(std::string(mm_session_last_error(target())).find("identifier"), std::string::npos);
  // A safetensors file, say.
  EXPECT_EQ(Refused(std::string("\x10\0\0\0\0\0\0\0{\"a\":1}        ", 24), "safetensors"),
            MM_ERR_CORRUPT_FILE);
}

TEST_F(BadSnapshotTest, WrongVersion) {
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT*) {}, 3), "version 3"), MM_ERR_VERSION);
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT*) {}, 0xFFFFFFFFu), "version max"), MM_ERR_VERSION);
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT*) {}, 0), "version 0"), MM_ERR_CORRUPT_FILE);
  // A damaged file of a newer version is damaged first.
  std::string newer = Edit([](fb::SnapshotT*) {}, 3);
  newer[newer.size() - 1] ^= 1;
  EXPECT_EQ(Refused(newer, "version 3, bad checksum"), MM_ERR_CHECKSUM);
}

TEST_F(BadSnapshotTest, WrongModel) {
  mm_model_config c = TinyConfig();
  ModelHandle other_seed = MakeModel(c, 22);
  ModelHandle bf16 = MakeModel(c, 21, MM_DTYPE_BF16);
  c.note_threshold = 0.25f;
  ModelHandle other_config = MakeModel(c, 21);
  for (mm_model* m : {other_seed.get(), bf16.get(), other_config.get()}) {
    SessionHandle s = MakeSession(m);
    Feed(s.get(), {1, 2, 3});
    const std::string before = TakeSnapshot(s.get());
    EXPECT_EQ(Restore(s.get(), good_), MM_ERR_MODEL_MISMATCH) << mm_session_last_error(s.get());
    EXPECT_NE(std::string(mm_session_last_error(s.get())).find("another model"), std::string::npos);
    EXPECT_EQ(TakeSnapshot(s.get()), before);
  }
  // The snapshot's shape fields must agree with the fingerprinted model.
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT* t) { t->model_fingerprint ^= 1; }), "fingerprint"),
            MM_ERR_MODEL_MISMATCH);
}

TEST_F(BadSnapshotTest, ZeroLengthAndNull) {
  EXPECT_EQ(Refused(std::string(), "zero length"), MM_ERR_CORRUPT_FILE);
  EXPECT_EQ(mm_session_restore(target(), nullptr, 10), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_session_restore(nullptr, good_.data(), good_.size()), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(TakeSnapshot(target()), before_);
}

TEST_F(BadSnapshotTest, HugeDeclaredSizes) {
  auto set_u32 = [](std::string s, size_t at, uint32_t v) {
    for (int k = 0; k < 4; ++k) s[at + k] = static_cast<char>((v >> (8 * k)) & 0xFF);
    return s;
  };
  // The payload vector's length (outer table), with the checksum made valid
  // again where the outer table still parses.
  std::vector<uint64_t> aligned((good_.size() + 7) / 8);
  std::memcpy(aligned.data(), good_.data(), good_.size());
  const auto* file = fb::GetSnapshotFile(aligned.data());
  const size_t payload_len_at = static_cast<size_t>(
      reinterpret_cast<const uint8_t*>(file->payload()) -
      reinterpret_cast<const uint8_t*>(aligned.data()));
  for (uint32_t n : {0x7FFFFFFFu, 0xFFFFFFFFu, 0x10000u, static_cast<uint32_t>(good_.size())}) {
    std::string bad = set_u32(good_, payload_len_at, n);
    ResealSnapshot(&bad);
    EXPECT_EQ(Refused(bad, "payload length " + std::to_string(n)), MM_ERR_CORRUPT_FILE);
  }
  // Vectors inside the payload: conv, pool arrays, the layer list.
  const size_t conv_len_at = OffsetOf([](const fb::Snapshot* s) {
    return reinterpret_cast<const uint8_t*>(s->layers()->Get(0)->conv());
  });
  const size_t summary_len_at = OffsetOf([](const fb::Snapshot* s) {
    return reinterpret_cast<const uint8_t*>(s->layers()->Get(1)->pool_summary());
  });
  const size_t layers_len_at = OffsetOf(
      [](const fb::Snapshot* s) { return reinterpret_cast<const uint8_t*>(s->layers()); });
  for (size_t at : {conv_len_at, summary_len_at, layers_len_at}) {
    for (uint32_t n : {0x3FFFFFFFu, 0x7FFFFFFFu, 0xFFFFFFFFu, 1000000u}) {
      std::string bad = set_u32(good_, at, n);
      ASSERT_TRUE(ResealSnapshot(&bad));
      EXPECT_EQ(Refused(bad, "vector length " + std::to_string(n) + " at " + std::to_string(at)),
                MM_ERR_CORRUPT_FILE);
    }
  }
  // Declared shapes far from the data.
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT* t) { t->n_layer = 1u << 30; }), "n_layer"),
            MM_ERR_CORRUPT_FILE);
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT* t) { t->d_inner = 0xFFFFFFFFu; }), "d_inner"),
            MM_ERR_CORRUPT_FILE);
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT* t) { t->d_state = 0; }), "d_state 0"),
            MM_ERR_CORRUPT_FILE);
}

TEST_F(BadSnapshotTest, InconsistentContents) {
  struct Case {
    const char* what;
    std::function<void(fb::SnapshotT*)> edit;
  };
  const Case cases[] = {
      {"a layer missing", [](fb::SnapshotT* t) { t->layers.pop_back(); }},
      {"an extra layer",
       [](fb::SnapshotT* t) {
         t->layers.push_back(std::make_unique<fb::LayerStateT>(*t->layers[0]));
       }},
      {"ssm one short", [](fb::SnapshotT* t) { t->layers[0]->ssm.pop_back(); }},
      {"conv one long", [](fb::SnapshotT* t) { t->layers[1]->conv.push_back(0.0f); }},
      {"win_max missing", [](fb::SnapshotT* t) { t->layers[0]->win_max.clear(); }},
      {"score count", [](fb::SnapshotT* t) { t->layers[0]->pool_score.push_back(0.9f); }},
      {"summary count", [](fb::SnapshotT* t) { t->layers[0]->pool_summary.pop_back(); }},
      {"more notes than the capacity",
       [](fb::SnapshotT* t) {
         auto& L = *t->layers[0];
         while (L.pool_window.size() <= t->pool_capacity) {
           L.pool_window.insert(L.pool_window.begin(), L.pool_window.front() - 1);
           L.pool_score.push_back(0.9f);
           L.pool_summary.insert(L.pool_summary.end(), t->summary_dim, 0.0f);
         }
       }},
      {"windows not ascending",
       [](fb::SnapshotT* t) {
         auto& w = t->layers[0]->pool_window;
         std::swap(w.front(), w.back());
       }},
      {"a window not yet complete",
       [](fb::SnapshotT* t) { t->layers[1]->pool_window.back() = t->position / t->note_window; }},
      {"a negative window", [](fb::SnapshotT* t) { t->layers[1]->pool_window.front() = -1; }},
      {"a negative position", [](fb::SnapshotT* t) { t->position = -5; }},
      {"an unknown pool policy",
       [](fb::SnapshotT* t) { t->pool_policy = static_cast<fb::PoolPolicy>(7); }},
      {"no layers", [](fb::SnapshotT* t) { t->layers.clear(); }},
  };
  for (const Case& k : cases) {
    EXPECT_EQ(Refused(Edit(k.edit), k.what), MM_ERR_CORRUPT_FILE) << k.what;
  }
  // Shape fields that agree with the data but not with the model whose
  // fingerprint the snapshot carries: a crafted file, not another model.
  EXPECT_EQ(Refused(Edit([](fb::SnapshotT* t) { t->pool_capacity = 7; }), "capacity"),
            MM_ERR_CORRUPT_FILE) << mm_session_last_error(target());
}

TEST_F(BadSnapshotTest, BadFiles) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/bad_snapshot.mmsnap";
  {
    std::ofstream f(path, std::ios::binary);
    f.write(good_.data(), static_cast<std::streamsize>(good_.size() / 2));
  }
  const mm_status st = mm_session_restore_file(target(), path.c_str());
  EXPECT_TRUE(st == MM_ERR_CORRUPT_FILE || st == MM_ERR_CHECKSUM) << mm_status_string(st);
  EXPECT_NE(std::string(mm_session_last_error(target())).find(path), std::string::npos);
  EXPECT_EQ(mm_session_restore_file(target(), (dir + "/no_such_file.mmsnap").c_str()), MM_ERR_IO);
  EXPECT_EQ(mm_session_restore_file(target(), dir.c_str()), MM_ERR_IO);  // a directory
  EXPECT_EQ(mm_session_restore_file(target(), nullptr), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(TakeSnapshot(target()), before_);
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// The calls.

TEST(SnapshotApiTest, SizeBuffersAndAlloc) {
  ModelHandle model = MakeModel(SmallConfig(MM_POOL_PRIORITY, 4), 1);
  SessionHandle s = MakeSession(model.get());
  Feed(s.get(), RandomTokens(203, Vocab(model.get()), 1));
  size_t size = 0;
  ASSERT_EQ(mm_session_snapshot_size(s.get(), &size), MM_OK);
  const std::string bytes = TakeSnapshot(s.get());
  EXPECT_EQ(size, bytes.size());
  // Within 5% of the state it carries, plus a constant.
  EXPECT_LT(static_cast<double>(size), 1.05 * RawStateBytes(s->impl->state()) + 512);

  std::vector<char> buffer(size + 10, 'x');
  size_t written = 12345;
  EXPECT_EQ(mm_session_snapshot(s.get(), buffer.data(), size - 1, &written),
            MM_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(written, size);  // the size needed
  EXPECT_EQ(buffer[0], 'x');
  EXPECT_EQ(mm_session_snapshot(s.get(), nullptr, 0, &written), MM_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(mm_session_snapshot(s.get(), buffer.data(), buffer.size(), &written), MM_OK);
  EXPECT_EQ(written, size);
  EXPECT_EQ(std::string(buffer.data(), written), bytes);
  EXPECT_EQ(buffer[size], 'x');

  EXPECT_EQ(mm_session_snapshot(s.get(), nullptr, 5, &written), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(written, 0u);
  EXPECT_EQ(mm_session_snapshot(s.get(), buffer.data(), buffer.size(), nullptr),
            MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_session_snapshot(nullptr, buffer.data(), buffer.size(), &written),
            MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_session_snapshot_size(nullptr, &size), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(size, 0u);
  EXPECT_EQ(mm_session_snapshot_size(s.get(), nullptr), MM_ERR_INVALID_ARGUMENT);
  void* out = reinterpret_cast<void*>(1);
  EXPECT_EQ(mm_session_snapshot_alloc(nullptr, &out, &size), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(mm_session_snapshot_alloc(s.get(), nullptr, &size), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_session_snapshot_file(s.get(), nullptr), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_session_snapshot_file(nullptr, "x"), MM_ERR_INVALID_ARGUMENT);

  // The same state gives the same bytes; a fresh session too.
  EXPECT_EQ(TakeSnapshot(s.get()), bytes);
  SessionHandle empty = MakeSession(model.get());
  SessionHandle other = MakeSession(model.get());
  Feed(other.get(), {1, 2, 3});
  ASSERT_EQ(Restore(other.get(), TakeSnapshot(empty.get())), MM_OK);
  EXPECT_EQ(mm_session_position(other.get()), 0u);
  ExpectSameState(empty->impl->state(), other->impl->state(), "fresh");
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.push_back(e->d_name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(SnapshotApiTest, FilesAreWrittenAtomicallyAndRestore) {
  ModelHandle model = MakeModel(SmallConfig(MM_POOL_FIFO, 2), 1);
  const uint32_t V = Vocab(model.get());
  char tmpl[] = "/tmp/mm_snapshot_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string path = dir + "/stream.mmsnap";

  SessionHandle a = MakeSession(model.get());
  Feed(a.get(), RandomTokens(50, V, 1));
  ASSERT_EQ(mm_session_snapshot_file(a.get(), path.c_str()), MM_OK) << mm_last_error();
  const std::string first = TakeSnapshot(a.get());
  Feed(a.get(), RandomTokens(20, V, 2));
  ASSERT_EQ(mm_session_snapshot_file(a.get(), path.c_str()), MM_OK);  // replaces it
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"stream.mmsnap"});  // no temporary left

  // A write that fails (no such directory) leaves nothing behind.
  EXPECT_EQ(mm_session_snapshot_file(a.get(), (dir + "/missing/x.mmsnap").c_str()), MM_ERR_IO);
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"stream.mmsnap"});

  SessionHandle b = MakeSession(model.get());
  ASSERT_EQ(mm_session_restore_file(b.get(), path.c_str()), MM_OK) << mm_session_last_error(b.get());
  ExpectSameState(a->impl->state(), b->impl->state(), "file");
  mm_snapshot_info info;
  mm_snapshot_info_init(&info, sizeof info);
  ASSERT_EQ(mm_snapshot_inspect_file(path.c_str(), &info), MM_OK);
  EXPECT_EQ(info.position, 70u);
  EXPECT_EQ(mm_snapshot_inspect_file((dir + "/nope").c_str(), &info), MM_ERR_IO);
  // The first version, restored over the second.
  ASSERT_EQ(Restore(b.get(), first), MM_OK);
  EXPECT_EQ(mm_session_position(b.get()), 50u);
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

TEST(SnapshotApiTest, InspectWithoutAModel) {
  mm_model_config c = SmallConfig(MM_POOL_FIFO, 3);
  ModelHandle model = MakeModel(c, 9);
  SessionHandle s = MakeSession(model.get());
  Feed(s.get(), RandomTokens(31, Vocab(model.get()), 1));
  const std::string bytes = TakeSnapshot(s.get());

  mm_snapshot_info info;
  ASSERT_EQ(mm_snapshot_info_init(&info, sizeof info), MM_OK);
  EXPECT_EQ(info.struct_size, sizeof info);
  ASSERT_EQ(mm_snapshot_inspect(bytes.data(), bytes.size(), &info), MM_OK) << mm_last_error();
  EXPECT_EQ(info.format_version, kSnapshotFormatVersion);
  EXPECT_EQ(info.position, 31u);
  EXPECT_EQ(info.model_fingerprint, mm_model_fingerprint(model.get()));
  EXPECT_EQ(info.n_layer, c.n_layer);
  EXPECT_EQ(info.d_model, c.d_model);
  EXPECT_EQ(info.d_inner, c.d_model * c.expand);
  EXPECT_EQ(info.d_state, c.d_state);
  EXPECT_EQ(info.d_conv, c.d_conv);
  EXPECT_EQ(info.summary_dim, c.summary_dim);
  EXPECT_EQ(info.note_window, 3u);
  EXPECT_EQ(info.pool_capacity, c.pool_capacity);
  EXPECT_EQ(info.pool_policy, MM_POOL_FIFO);
  uint32_t notes = 0;
  for (uint32_t l = 0; l < c.n_layer; ++l) notes += mm_session_pool_size(s.get(), l);
  EXPECT_GT(notes, 0u);
  EXPECT_EQ(info.notes_total, notes);
  EXPECT_EQ(info.state_bytes, RawStateBytes(s->impl->state()));

  // An older, shorter struct gets its prefix; a too short one is refused.
  mm_snapshot_info small;
  std::memset(&small, 0x5A, sizeof small);
  small.struct_size = offsetof(mm_snapshot_info, state_bytes) + 8;
  ASSERT_EQ(mm_snapshot_inspect(bytes.data(), bytes.size(), &small), MM_OK);
  small.struct_size = 8;
  EXPECT_EQ(mm_snapshot_inspect(bytes.data(), bytes.size(), &small), MM_ERR_STRUCT_SIZE);
  EXPECT_EQ(mm_snapshot_info_init(&small, 8), MM_ERR_STRUCT_SIZE);
  EXPECT_EQ(mm_snapshot_info_init(nullptr, sizeof info), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_snapshot_inspect(nullptr, 5, &info), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_snapshot_inspect(bytes.data(), bytes.size(), nullptr), MM_ERR_INVALID_ARGUMENT);

  // A failure leaves *info as it was.
  mm_snapshot_info keep = info;
  std::string bad = bytes;
  bad[bad.size() / 2] ^= 0x10;
  EXPECT_EQ(mm_snapshot_inspect(bad.data(), bad.size(), &info), MM_ERR_CHECKSUM);
  EXPECT_NE(std::string(mm_last_error()).find("checksum"), std::string::npos);
  EXPECT_EQ(std::memcmp(&keep, &info, sizeof info), 0);
}

TEST(SnapshotApiTest, ModelFingerprint) {
  const mm_model_config c = SmallConfig(MM_POOL_PRIORITY, 4);
  ModelHandle a = MakeModel(c, 1);
  ModelHandle b = MakeModel(c, 1);
  ModelHandle other_seed = MakeModel(c, 2);
  ModelHandle bf16 = MakeModel(c, 1, MM_DTYPE_BF16);
  mm_model_config c2 = c;
  c2.gate_threshold = 0.125f;  // same weights, another function
  ModelHandle other_config = MakeModel(c2, 1);
  const uint64_t fa = mm_model_fingerprint(a.get());
  EXPECT_NE(fa, 0u);
  EXPECT_EQ(fa, mm_model_fingerprint(a.get()));
  EXPECT_EQ(fa, mm_model_fingerprint(b.get()));
  EXPECT_NE(fa, mm_model_fingerprint(other_seed.get()));
  EXPECT_NE(fa, mm_model_fingerprint(bf16.get()));
  EXPECT_NE(fa, mm_model_fingerprint(other_config.get()));
  EXPECT_EQ(mm_model_fingerprint(nullptr), 0u);

  // Saved and loaded: the same model, and its snapshots move with it.
  const std::string path = ::testing::TempDir() + "/fingerprint_model.safetensors";
  ASSERT_EQ(mm_model_save(a.get(), path.c_str()), MM_OK);
  mm_model* loaded = nullptr;
  ASSERT_EQ(mm_model_load(&loaded, path.c_str(), nullptr), MM_OK);
  ModelHandle l(loaded, mm_model_free);
  EXPECT_EQ(mm_model_fingerprint(l.get()), fa);
  SessionHandle s = MakeSession(a.get());
  Feed(s.get(), {1, 2, 3, 4, 5, 6, 7});
  SessionHandle t = MakeSession(l.get());
  EXPECT_EQ(Restore(t.get(), TakeSnapshot(s.get())), MM_OK);
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// Files of each format version (tests/data, see its README): they must load
// in every later version of the library and continue the stream.

struct OldCase {
  uint32_t version;      // tests/data/snapshot_v<version>_<name>.mmsnap
  const char* name;      // the model: tests/data/snapshot_v1_<name>.model.safetensors
  int32_t policy;
  uint32_t window;
  size_t position;       // tokens fed before the snapshot
};

const OldCase kOldCases[] = {
    {1, "priority_w4", MM_POOL_PRIORITY, 4, 50},
    {1, "fifo_w1", MM_POOL_FIFO, 1, 37},
    {2, "priority_w4", MM_POOL_PRIORITY, 4, 50},
    {2, "fifo_w1", MM_POOL_FIFO, 1, 37},
};

mm_model_config V1Config(const OldCase& k) {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 32;
  c.d_model = 16;
  c.n_layer = 4;
  c.d_state = 4;
  c.summary_dim = 8;
  c.attn_heads = 2;
  c.note_window = k.window;
  c.pool_capacity = 4;
  c.pool_policy = k.policy;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  return c;
}

// Token i of the stream the files were made from.
int32_t V1Token(size_t i) { return static_cast<int32_t>((i * 7 + i / 5) % 32); }

std::vector<int32_t> V1Tokens(size_t begin, size_t end) {
  std::vector<int32_t> t;
  for (size_t i = begin; i < end; ++i) t.push_back(V1Token(i));
  return t;
}

std::string ModelPath(const OldCase& k) {
  return std::string(MM_TEST_DATA_DIR) + "/snapshot_v1_" + k.name + ".model.safetensors";
}

std::string SnapshotPath(const std::string& dir, const OldCase& k) {
  return dir + "/snapshot_v" + std::to_string(k.version) + "_" + k.name + ".mmsnap";
}

TEST(SnapshotV1Test, CheckedInFilesLoadAndContinue) {
  for (const OldCase& k : kOldCases) {
    SCOPED_TRACE(SnapshotPath("", k));
    mm_model* raw = nullptr;
    ASSERT_EQ(mm_model_load(&raw, ModelPath(k).c_str(), nullptr), MM_OK) << mm_last_error();
    ModelHandle model(raw, mm_model_free);
    const std::string path = SnapshotPath(MM_TEST_DATA_DIR, k);
    mm_snapshot_info info;
    mm_snapshot_info_init(&info, sizeof info);
    ASSERT_EQ(mm_snapshot_inspect_file(path.c_str(), &info), MM_OK) << mm_last_error();
    EXPECT_EQ(info.format_version, k.version);
    EXPECT_EQ(info.position, k.position);
    EXPECT_EQ(info.model_fingerprint, mm_model_fingerprint(model.get()));
    EXPECT_GT(info.notes_total, 0u);

    // Continue the restored stream; compare with the whole stream fed
    // afresh (one token at a time on both sides). Identical where the
    // files were made; within float tolerance on another CPU or BLAS.
    const uint32_t V = Vocab(model.get());
    const size_t more = 24;
    SessionHandle restored = MakeSession(model.get());
    Feed(restored.get(), {5, 6});  // an existing session
    ASSERT_EQ(mm_session_restore_file(restored.get(), path.c_str()), MM_OK)
        << mm_session_last_error(restored.get());
    SessionHandle fresh = MakeSession(model.get());
    for (size_t i = 0; i < k.position; ++i) Step(fresh.get(), V1Token(i), V);
    for (size_t i = k.position; i < k.position + more; ++i) {
      const std::vector<float> a = Step(restored.get(), V1Token(i), V);
      const std::vector<float> b = Step(fresh.get(), V1Token(i), V);
      double num = 0, den = 0;
      for (uint32_t v = 0; v < V; ++v) {
        num = std::max(num, std::fabs(static_cast<double>(a[v]) - b[v]));
        den = std::max(den, std::fabs(static_cast<double>(b[v])));
      }
      EXPECT_LE(num / den, 1e-5) << "token " << i;
    }
  }
}

// Writes the files of the current format version into $MM_SNAPSHOT_OUT
// (and, for version 1, the models). Run once, when a format version is
// made (see tests/data/README.md); never regenerate older ones: the point
// is that files written by an old library keep loading.
TEST(SnapshotV1Test, DISABLED_Generate) {
  const char* out = std::getenv("MM_SNAPSHOT_OUT");
  ASSERT_NE(out, nullptr) << "set MM_SNAPSHOT_OUT to the output directory";
  for (const OldCase& k : kOldCases) {
    if (k.version != kSnapshotFormatVersion) continue;
    mm_model* m = nullptr;
    if (k.version == 1) {
      mm_model_config c = V1Config(k);
      ASSERT_EQ(mm_model_create(&m, &c, 2024, nullptr), MM_OK);
      ASSERT_EQ(mm_model_save(m, (std::string(out) + "/snapshot_v1_" + k.name +
                                  ".model.safetensors").c_str()),
                MM_OK);
    } else {
      ASSERT_EQ(mm_model_load(&m, ModelPath(k).c_str(), nullptr), MM_OK) << mm_last_error();
    }
    ModelHandle model(m, mm_model_free);
    SessionHandle s = MakeSession(model.get());
    for (size_t i = 0; i < k.position; ++i) Step(s.get(), V1Token(i), Vocab(model.get()));
    ASSERT_EQ(mm_session_snapshot_file(s.get(), SnapshotPath(out, k).c_str()), MM_OK);
  }
}

// Writes the fuzzer's seed corpus (tests/fuzz/snapshot_fuzz.cc) into
// $MM_SNAPSHOT_FUZZ_SEEDS_OUT: snapshots of TinyConfig() seed 21, the model
// the fuzz target restores onto.
TEST(SnapshotFuzzSeeds, DISABLED_Write) {
  const char* out = std::getenv("MM_SNAPSHOT_FUZZ_SEEDS_OUT");
  ASSERT_NE(out, nullptr) << "set MM_SNAPSHOT_FUZZ_SEEDS_OUT to the output directory";
  ModelHandle model = MakeModel(TinyConfig(), 21);
  SessionHandle s = MakeSession(model.get());
  const std::pair<size_t, const char*> seeds[] = {
      {0, "fresh.mmsnap"}, {5, "pending_window.mmsnap"}, {12, "full_pools.mmsnap"}};
  size_t fed = 0;
  for (const auto& [position, name] : seeds) {
    Feed(s.get(), RandomTokens(position - fed, Vocab(model.get()), 4 + position));
    fed = position;
    // Seeds of each format version sit side by side (fresh.mmsnap is v1,
    // v2_fresh.mmsnap v2, ...).
    const std::string prefix =
        kSnapshotFormatVersion == 1 ? "" : "v" + std::to_string(kSnapshotFormatVersion) + "_";
    ASSERT_EQ(mm_session_snapshot_file(s.get(), (std::string(out) + "/" + prefix + name).c_str()),
              MM_OK);
  }
}

}  // namespace
}  // namespace memmamba
