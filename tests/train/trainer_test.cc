// The trainer through the C API (DESIGN 4, 6): determinism, resume
// equality, accumulation, refusal of poisoned batches, and the training
// forward agreeing with the streaming forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "memmamba/memmamba.h"

namespace {

mm_model_config SmallConfig() {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 32;
  c.d_model = 16;
  c.n_layer = 4;
  c.d_state = 4;
  c.summary_dim = 8;
  c.attn_heads = 2;
  c.note_window = 4;
  c.pool_capacity = 3;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  return c;
}

struct Handles {
  mm_model* model = nullptr;
  mm_trainer* trainer = nullptr;
  ~Handles() {
    mm_trainer_free(trainer);
    mm_model_free(model);
  }
};

void MakeTrainer(Handles* h, uint32_t accum = 1) {
  mm_model_config c = SmallConfig();
  mm_model_options mo;
  mm_model_options_init(&mo, sizeof mo);
  mo.n_threads = 1;
  ASSERT_EQ(mm_model_create(&h->model, &c, 5, &mo), MM_OK);
  mm_trainer_options to;
  ASSERT_EQ(mm_trainer_options_init(&to, sizeof to), MM_OK);
  to.n_threads = 1;
  to.learning_rate = 3e-3f;
  to.accum_steps = accum;
  ASSERT_EQ(mm_trainer_create(&h->trainer, h->model, &to), MM_OK);
}

std::vector<int32_t> Batch(int seed, size_t n, int32_t vocab = 32) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& v : t) v = static_cast<int32_t>(rng() % vocab);
  return t;
}

std::string TempPath(const char* name) {
  return ::testing::TempDir() + "/" + name + std::to_string(::getpid());
}

// Bytes of a model exported from the trainer and saved.
std::string ExportBytes(mm_trainer* t) {
  mm_model* m = nullptr;
  EXPECT_EQ(mm_trainer_export_model(t, nullptr, &m), MM_OK);
  const std::string path = TempPath("export.safetensors");
  EXPECT_EQ(mm_model_save(m, path.c_str()), MM_OK);
  mm_model_free(m);
  FILE* f = std::fopen(path.c_str(), "rb");
  std::string bytes;
  char buf[65536];
  size_t got;
  while (f && (got = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, got);
  if (f) std::fclose(f);
  std::remove(path.c_str());
  return bytes;
}

TEST(Trainer, LossFallsOnARepeatedBatch) {
  Handles h;
  MakeTrainer(&h);
  std::vector<int32_t> tokens = Batch(1, 2 * 32);
  mm_train_result r;
  mm_train_result_init(&r, sizeof r);
  float first = 0.0f;
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(mm_train_step(h.trainer, tokens.data(), 2, 32, nullptr, &r), MM_OK)
        << mm_trainer_last_error(h.trainer);
    if (i == 0) first = r.loss;
    EXPECT_TRUE(r.updated);
    EXPECT_EQ(r.tokens, 2u * 31u);
    EXPECT_GT(r.grad_norm, 0.0f);
  }
  EXPECT_EQ(mm_trainer_step_count(h.trainer), 30u);
  EXPECT_NEAR(first, std::log(32.0f), 0.3f);
  EXPECT_LT(r.loss, 0.8f * first);
  std::vector<float> keep(4, -1.0f);
  ASSERT_EQ(mm_trainer_keep_fraction(h.trainer, keep.data(), keep.size()), MM_OK);
  for (float k : keep) EXPECT_TRUE(k >= 0.0f && k <= 1.0f);
}

TEST(Trainer, ResumedRunEqualsUninterruptedBitForBit) {
  const int kSteps = 6, kSplit = 2;
  std::string uninterrupted, resumed;
  {
    Handles h;
    MakeTrainer(&h, /*accum=*/2);
    for (int i = 0; i < kSteps; ++i) {
      std::vector<int32_t> t = Batch(100 + i, 2 * 24);
      ASSERT_EQ(mm_train_step(h.trainer, t.data(), 2, 24, nullptr, nullptr), MM_OK);
    }
    uninterrupted = ExportBytes(h.trainer);
  }
  {
    Handles h;
    MakeTrainer(&h, 2);
    // kSplit + 1 calls: the save falls in the middle of an accumulation.
    for (int i = 0; i <= kSplit; ++i) {
      std::vector<int32_t> t = Batch(100 + i, 2 * 24);
      ASSERT_EQ(mm_train_step(h.trainer, t.data(), 2, 24, nullptr, nullptr), MM_OK);
    }
    const std::string path = TempPath("trainer.safetensors");
    ASSERT_EQ(mm_trainer_save(h.trainer, path.c_str()), MM_OK);
    mm_trainer* loaded = nullptr;
    ASSERT_EQ(mm_trainer_load(&loaded, path.c_str(), 1), MM_OK) << mm_last_error();
    std::remove(path.c_str());
    EXPECT_EQ(mm_trainer_step_count(loaded), mm_trainer_step_count(h.trainer));
    for (int i = kSplit + 1; i < kSteps; ++i) {
      std::vector<int32_t> t = Batch(100 + i, 2 * 24);
      ASSERT_EQ(mm_train_step(loaded, t.data(), 2, 24, nullptr, nullptr), MM_OK);
    }
    resumed = ExportBytes(loaded);
    mm_trainer_free(loaded);
  }
  ASSERT_FALSE(uninterrupted.empty());
  EXPECT_TRUE(uninterrupted == resumed) << "resumed weights differ";
}

TEST(Trainer, AccumulationUpdatesEveryNthCall) {
  Handles h;
  MakeTrainer(&h, 3);
  mm_train_result r;
  mm_train_result_init(&r, sizeof r);
  for (int i = 1; i <= 6; ++i) {
    std::vector<int32_t> t = Batch(i, 16);
    ASSERT_EQ(mm_train_step(h.trainer, t.data(), 1, 16, nullptr, &r), MM_OK);
    EXPECT_EQ(r.updated, i % 3 == 0);
    EXPECT_EQ(r.step, static_cast<uint64_t>(i / 3));
  }
}

TEST(Trainer, PoisonedBatchesChangeNothing) {
  Handles h;
  MakeTrainer(&h, 2);
  std::vector<int32_t> good = Batch(9, 2 * 16);
  // One accepted call: the accumulator is non-empty when the bad ones come.
  ASSERT_EQ(mm_train_step(h.trainer, good.data(), 2, 16, nullptr, nullptr), MM_OK);
  const std::string trainer_path = TempPath("before.safetensors");
  ASSERT_EQ(mm_trainer_save(h.trainer, trainer_path.c_str()), MM_OK);
  const std::string before = ExportBytes(h.trainer);

  std::vector<int32_t> bad = good;
  bad[7] = 32;  // out of range
  EXPECT_EQ(mm_train_step(h.trainer, bad.data(), 2, 16, nullptr, nullptr),
            MM_ERR_TOKEN_OUT_OF_RANGE);
  EXPECT_NE(std::string(mm_trainer_last_error(h.trainer)).find("token 32"), std::string::npos);
  bad[7] = -1;
  EXPECT_EQ(mm_train_step(h.trainer, bad.data(), 2, 16, nullptr, nullptr),
            MM_ERR_TOKEN_OUT_OF_RANGE);
  std::vector<uint8_t> none(2 * 16, 0);
  EXPECT_EQ(mm_train_step(h.trainer, good.data(), 2, 16, none.data(), nullptr),
            MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_train_step(h.trainer, good.data(), 1, 1, nullptr, nullptr),
            MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_train_step(h.trainer, nullptr, 2, 16, nullptr, nullptr), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_train_step(h.trainer, good.data(), 0, 16, nullptr, nullptr),
            MM_ERR_INVALID_ARGUMENT);
  mm_train_result small;
  small.struct_size = 4;
  EXPECT_EQ(mm_train_step(h.trainer, good.data(), 2, 16, nullptr, &small), MM_ERR_STRUCT_SIZE);
  EXPECT_EQ(mm_trainer_set_learning_rate(h.trainer, NAN), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_trainer_set_learning_rate(h.trainer, -1.0f), MM_ERR_INVALID_ARGUMENT);

  // A NaN-producing input: a trainer whose embedding row 3 is +Inf-scaled
  // (a crafted weight) refuses every batch that uses token 3.
  EXPECT_EQ(before, ExportBytes(h.trainer));
  EXPECT_EQ(mm_trainer_step_count(h.trainer), 0u);

  // The same trainer continues exactly like its saved copy.
  mm_trainer* copy = nullptr;
  ASSERT_EQ(mm_trainer_load(&copy, trainer_path.c_str(), 1), MM_OK);
  std::remove(trainer_path.c_str());
  ASSERT_EQ(mm_train_step(h.trainer, good.data(), 2, 16, nullptr, nullptr), MM_OK);
  ASSERT_EQ(mm_train_step(copy, good.data(), 2, 16, nullptr, nullptr), MM_OK);
  EXPECT_EQ(ExportBytes(h.trainer), ExportBytes(copy));
  mm_trainer_free(copy);
}

TEST(Trainer, NonFiniteGradientIsRefused) {
  // A crafted weight: a row of the LM head at 3e38 makes that logit +-Inf,
  // the softmax NaN and so the loss of every batch.
  mm_model_config c = SmallConfig();
  c.tie_embeddings = false;
  mm_model* model = nullptr;
  ASSERT_EQ(mm_model_create(&model, &c, 5, nullptr), MM_OK);
  const std::string path = TempPath("poison.safetensors");
  ASSERT_EQ(mm_model_save(model, path.c_str()), MM_OK);
  mm_model_free(model);
  // Patch lm_head.weight[3, :] to 3e38 in the file (f32, row-major).
  FILE* f = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(f, nullptr);
  uint64_t header_len = 0;
  ASSERT_EQ(std::fread(&header_len, 8, 1, f), 1u);
  std::string header(header_len, '\0');
  ASSERT_EQ(std::fread(&header[0], 1, header_len, f), header_len);
  const size_t at = header.find("\"lm_head.weight\"");
  ASSERT_NE(at, std::string::npos);
  const size_t offs = header.find("data_offsets", at);
  unsigned long begin = 0;
  ASSERT_EQ(std::sscanf(header.c_str() + header.find('[', offs) + 1, "%lu", &begin), 1);
  std::vector<float> row(16, 3e38f);
  std::fseek(f, static_cast<long>(8 + header_len + begin + 3 * 16 * sizeof(float)), SEEK_SET);
  ASSERT_EQ(std::fwrite(row.data(), sizeof(float), row.size(), f), row.size());
  std::fclose(f);
  ASSERT_EQ(mm_model_load(&model, path.c_str(), nullptr), MM_OK) << mm_last_error();
  std::remove(path.c_str());
  mm_trainer* t = nullptr;
  ASSERT_EQ(mm_trainer_create(&t, model, nullptr), MM_OK);
  std::vector<int32_t> tokens(16, 1);
  tokens[5] = 3;
  const std::string before = ExportBytes(t);
  EXPECT_EQ(mm_train_step(t, tokens.data(), 1, 16, nullptr, nullptr), MM_ERR_NON_FINITE);
  EXPECT_NE(std::string(mm_trainer_last_error(t)).find("not finite"), std::string::npos);
  EXPECT_EQ(before, ExportBytes(t));
  EXPECT_EQ(mm_trainer_step_count(t), 0u);
  mm_trainer_free(t);
  mm_model_free(model);
}

TEST(Trainer, TrainingLossEqualsStreamingEvalLoss) {
  // The training forward (whole sequence, notes for all windows at once)
  // and the streaming runtime compute the same function (DESIGN 2.4).
  Handles h;
  MakeTrainer(&h);
  std::vector<int32_t> tokens = Batch(4, 64);
  mm_trainer_options slow;
  mm_trainer_options_init(&slow, sizeof slow);
  slow.learning_rate = 1e-30f;  // the step leaves the weights as they are (to float precision)
  mm_trainer* t = nullptr;
  ASSERT_EQ(mm_trainer_create(&t, h.model, &slow), MM_OK);
  mm_train_result r;
  mm_train_result_init(&r, sizeof r);
  ASSERT_EQ(mm_train_step(t, tokens.data(), 1, 64, nullptr, &r), MM_OK);
  mm_eval_result e;
  mm_eval_result_init(&e, sizeof e);
  ASSERT_EQ(mm_eval_loss(h.model, tokens.data(), 64, 0, &e), MM_OK);
  EXPECT_EQ(e.tokens, 63u);
  EXPECT_NEAR(r.loss, e.loss, 1e-5 * e.loss);
  // Pieces of 16 tokens from empty state: 4 pieces of 15 targets.
  ASSERT_EQ(mm_eval_loss(h.model, tokens.data(), 64, 16, &e), MM_OK);
  EXPECT_EQ(e.tokens, 60u);
  EXPECT_NEAR(e.perplexity, std::exp(e.loss), 1e-9 * e.perplexity);
  mm_trainer_free(t);
}

// A session fed `n` tokens of Batch(seed, n).
mm_session* FedSession(mm_model* model, int seed, size_t n) {
  mm_session* s = nullptr;
  EXPECT_EQ(mm_session_create(&s, model, nullptr), MM_OK);
  std::vector<int32_t> t = Batch(seed, n);
  EXPECT_EQ(mm_session_feed(s, t.data(), n, MM_LOGITS_NONE, nullptr, 0), MM_OK);
  return s;
}

std::string SnapshotBytes(const mm_session* s) {
  void* bytes = nullptr;
  size_t size = 0;
  EXPECT_EQ(mm_session_snapshot_alloc(s, &bytes, &size), MM_OK);
  std::string out(static_cast<const char*>(bytes), size);
  mm_free(bytes);
  return out;
}

// Mean next-token cross-entropy of a 32-token sequence over a vocabulary of
// 32 from its logits [32, 32].
double MeanNextTokenLoss(const std::vector<float>& logits, const std::vector<int32_t>& tokens) {
  double sum = 0.0;
  for (int i = 0; i + 1 < 32; ++i) {
    const float* row = &logits[i * 32];
    double mx = row[0], z = 0.0;
    for (int v = 1; v < 32; ++v) mx = std::max<double>(mx, row[v]);
    for (int v = 0; v < 32; ++v) z += std::exp(row[v] - mx);
    sum += (mx + std::log(z) - row[tokens[i + 1]]) / 31.0;
  }
  return sum;
}

// A trainer whose updates change nothing measurable: its result reports
// the loss of the weights as they are.
mm_trainer* LossOnlyTrainer(const mm_model* model) {
  mm_trainer_options slow;
  mm_trainer_options_init(&slow, sizeof slow);
  slow.learning_rate = 1e-30f;
  slow.n_threads = 1;
  mm_trainer* t = nullptr;
  EXPECT_EQ(mm_trainer_create(&t, model, &slow), MM_OK);
  return t;
}

TEST(Trainer, StepFromSessionsContinuesTheirStreams) {
  Handles h;
  MakeTrainer(&h);
  const std::vector<int32_t> tokens = Batch(8, 2 * 32);
  // The loss of a sequence continuing a session is what feeding it gives.
  mm_trainer* t = LossOnlyTrainer(h.model);
  ASSERT_NE(t, nullptr);
  mm_session* from = FedSession(h.model, 9, 40);  // window 4: 10 windows, pools full
  const std::string before = SnapshotBytes(from);
  const mm_session* sessions[2] = {from, nullptr};
  mm_train_result r;
  mm_train_result_init(&r, sizeof r);
  ASSERT_EQ(mm_train_step_from(t, sessions, tokens.data(), 1, 32, nullptr, &r), MM_OK)
      << mm_trainer_last_error(t);
  EXPECT_TRUE(SnapshotBytes(from) == before) << "the session changed";
  std::vector<float> logits(32 * 32);
  ASSERT_EQ(mm_session_feed(from, tokens.data(), 32, MM_LOGITS_ALL, logits.data(), logits.size()),
            MM_OK);
  const double want = MeanNextTokenLoss(logits, tokens);
  EXPECT_NEAR(r.loss, want, 1e-5 * want);
  mm_trainer_free(t);

  // NULL sessions, or only NULL entries, is mm_train_step, bit for bit.
  Handles a, b;
  MakeTrainer(&a);
  MakeTrainer(&b);
  const mm_session* none[2] = {nullptr, nullptr};
  ASSERT_EQ(mm_train_step(a.trainer, tokens.data(), 2, 32, nullptr, nullptr), MM_OK);
  ASSERT_EQ(mm_train_step_from(b.trainer, nullptr, tokens.data(), 2, 32, nullptr, nullptr),
            MM_OK);
  ASSERT_EQ(mm_train_step(a.trainer, tokens.data(), 2, 32, nullptr, nullptr), MM_OK);
  ASSERT_EQ(mm_train_step_from(b.trainer, none, tokens.data(), 2, 32, nullptr, nullptr), MM_OK);
  EXPECT_TRUE(ExportBytes(a.trainer) == ExportBytes(b.trainer));

  // Refused, changing nothing: a session inside a note window, or of a model
  // with another configuration.
  const std::string weights = ExportBytes(h.trainer);
  mm_session* inside = FedSession(h.model, 9, 30);
  sessions[0] = nullptr;
  sessions[1] = inside;
  EXPECT_EQ(mm_train_step_from(h.trainer, sessions, tokens.data(), 2, 32, nullptr, nullptr),
            MM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mm_trainer_last_error(h.trainer)).find("note_window"), std::string::npos);
  mm_model_config c = SmallConfig();
  c.pool_capacity = 5;
  mm_model* other = nullptr;
  ASSERT_EQ(mm_model_create(&other, &c, 5, nullptr), MM_OK);
  mm_session* foreign = FedSession(other, 9, 40);
  sessions[1] = foreign;
  EXPECT_EQ(mm_train_step_from(h.trainer, sessions, tokens.data(), 2, 32, nullptr, nullptr),
            MM_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(ExportBytes(h.trainer) == weights);
  EXPECT_EQ(mm_trainer_step_count(h.trainer), 0u);
  mm_session_free(foreign);
  mm_model_free(other);
  mm_session_free(inside);
  mm_session_free(from);
}

// mm_train_step_batch: without resets it is mm_train_step_from bit for bit;
// a sequence whose recurrent state resets has the loss of a session fed its
// pieces with mm_session_reset_recurrent between them; bad structs change
// nothing.
TEST(Trainer, StepBatchWithRecurrentResets) {
  const std::vector<int32_t> tokens = Batch(12, 2 * 32);
  Handles a, b;
  MakeTrainer(&a);
  MakeTrainer(&b);
  mm_train_batch in;
  ASSERT_EQ(mm_train_batch_init(&in, sizeof in), MM_OK);
  in.tokens = tokens.data();
  in.batch = 2;
  in.seq_len = 32;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(mm_train_step(a.trainer, tokens.data(), 2, 32, nullptr, nullptr), MM_OK);
    ASSERT_EQ(mm_train_step_batch(b.trainer, &in, nullptr), MM_OK);
  }
  EXPECT_TRUE(ExportBytes(a.trainer) == ExportBytes(b.trainer));

  // The loss with a reset before position 13 (after the update above).
  std::vector<uint8_t> resets(32, 0);
  resets[13] = 1;
  in.batch = 1;
  in.recurrent_resets = resets.data();
  mm_trainer* t = LossOnlyTrainer(a.model);
  ASSERT_NE(t, nullptr);
  mm_train_result r;
  mm_train_result_init(&r, sizeof r);
  ASSERT_EQ(mm_train_step_batch(t, &in, &r), MM_OK) << mm_trainer_last_error(t);
  mm_trainer_free(t);
  mm_session* s = nullptr;
  ASSERT_EQ(mm_session_create(&s, a.model, nullptr), MM_OK);
  std::vector<float> logits(32 * 32);
  ASSERT_EQ(mm_session_feed(s, tokens.data(), 13, MM_LOGITS_ALL, logits.data(), 13 * 32), MM_OK);
  ASSERT_EQ(mm_session_reset_recurrent(s), MM_OK);
  ASSERT_EQ(mm_session_feed(s, &tokens[13], 19, MM_LOGITS_ALL, &logits[13 * 32], 19 * 32),
            MM_OK);
  mm_session_free(s);
  const double want = MeanNextTokenLoss(logits, tokens);
  EXPECT_NEAR(r.loss, want, 1e-5 * want);

  // Refused, changing nothing: NULL, a struct too small, unknown fields set.
  const std::string weights = ExportBytes(a.trainer);
  EXPECT_EQ(mm_train_step_batch(a.trainer, nullptr, nullptr), MM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(mm_train_step_batch(nullptr, &in, nullptr), MM_ERR_INVALID_ARGUMENT);
  mm_train_batch small = in;
  small.struct_size = 8;
  EXPECT_EQ(mm_train_step_batch(a.trainer, &small, nullptr), MM_ERR_STRUCT_SIZE);
  struct {
    mm_train_batch batch;
    uint64_t future;
  } bigger{in, 1};
  bigger.batch.struct_size = sizeof bigger;
  EXPECT_EQ(mm_train_step_batch(a.trainer, &bigger.batch, nullptr), MM_ERR_STRUCT_SIZE);
  in.tokens = nullptr;
  EXPECT_EQ(mm_train_step_batch(a.trainer, &in, nullptr), MM_ERR_INVALID_ARGUMENT);
  EXPECT_TRUE(ExportBytes(a.trainer) == weights);
}

TEST(Eval, FidelityIsFiniteAndBounded) {
  Handles h;
  MakeTrainer(&h);
  std::vector<int32_t> tokens = Batch(8, 300);
  mm_fidelity f;
  ASSERT_EQ(mm_fidelity_init(&f, sizeof f), MM_OK);
  ASSERT_EQ(mm_eval_fidelity(h.model, tokens.data(), tokens.size(), &f), MM_OK);
  EXPECT_EQ(f.tokens, 300u);
  EXPECT_TRUE(f.etmf > -1.0 && f.etmf < 1.0) << f.etmf;
  EXPECT_TRUE(std::isfinite(f.eclmf[0]) && f.eclmf[0] <= 1.0) << f.eclmf[0];
  EXPECT_TRUE(std::isnan(f.eclmf[1]));  // G = 5 > n_layer = 4
  EXPECT_TRUE(std::isnan(f.eclmf[2]));
  // Three distinct tokens: the embeddings (h_0) have rank 3 < d_model, and
  // the ridge regression must still be solvable.
  std::vector<int32_t> few(400);
  for (size_t i = 0; i < few.size(); ++i) few[i] = static_cast<int32_t>(1 + (i * 7) % 3);
  ASSERT_EQ(mm_eval_fidelity(h.model, few.data(), few.size(), &f), MM_OK);
  EXPECT_TRUE(std::isfinite(f.eclmf[0])) << f.eclmf[0];
  // Bad input.
  EXPECT_EQ(mm_eval_fidelity(h.model, tokens.data(), 1, &f), MM_ERR_INVALID_ARGUMENT);
  tokens[9] = 99;
  EXPECT_EQ(mm_eval_fidelity(h.model, tokens.data(), tokens.size(), &f),
            MM_ERR_TOKEN_OUT_OF_RANGE);
  mm_eval_result e;
  mm_eval_result_init(&e, sizeof e);
  EXPECT_EQ(mm_eval_loss(h.model, tokens.data(), tokens.size(), 0, &e),
            MM_ERR_TOKEN_OUT_OF_RANGE);
  e.struct_size = 3;
  EXPECT_EQ(mm_eval_loss(h.model, tokens.data(), 8, 0, &e), MM_ERR_STRUCT_SIZE);
}

TEST(Trainer, BadFilesAndOptions) {
  mm_trainer* t = reinterpret_cast<mm_trainer*>(1);
  EXPECT_EQ(mm_trainer_load(&t, "/nonexistent/trainer", 0), MM_ERR_IO);
  EXPECT_EQ(t, nullptr);
  // A model file is not a trainer file.
  Handles h;
  MakeTrainer(&h);
  const std::string path = TempPath("model-not-trainer.safetensors");
  ASSERT_EQ(mm_model_save(h.model, path.c_str()), MM_OK);
  EXPECT_EQ(mm_trainer_load(&t, path.c_str(), 0), MM_ERR_CORRUPT_FILE);
  std::remove(path.c_str());
  // Every truncation of a trainer file is refused.
  const std::string tp = TempPath("trainer-trunc.safetensors");
  ASSERT_EQ(mm_trainer_save(h.trainer, tp.c_str()), MM_OK);
  FILE* f = std::fopen(tp.c_str(), "rb");
  std::string bytes;
  char buf[65536];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, got);
  std::fclose(f);
  for (size_t cut : {size_t{0}, size_t{7}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    f = std::fopen(tp.c_str(), "wb");
    std::fwrite(bytes.data(), 1, cut, f);
    std::fclose(f);
    EXPECT_LT(mm_trainer_load(&t, tp.c_str(), 0), 0) << cut;
    EXPECT_EQ(t, nullptr);
  }
  std::remove(tp.c_str());
  mm_trainer_options o;
  mm_trainer_options_init(&o, sizeof o);
  o.accum_steps = 0;
  EXPECT_EQ(mm_trainer_create(&t, h.model, &o), MM_ERR_INVALID_ARGUMENT);
  mm_trainer_options_init(&o, sizeof o);
  o.beta2 = 1.0f;
  EXPECT_EQ(mm_trainer_create(&t, h.model, &o), MM_ERR_INVALID_ARGUMENT);
  mm_trainer_options_init(&o, sizeof o);
  o.struct_size = 2;
  EXPECT_EQ(mm_trainer_create(&t, h.model, &o), MM_ERR_STRUCT_SIZE);
  EXPECT_EQ(mm_trainer_create(&t, nullptr, nullptr), MM_ERR_INVALID_ARGUMENT);
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  ASSERT_EQ(mm_trainer_get_config(h.trainer, &cfg), MM_OK);
  EXPECT_EQ(cfg.n_layer, 4u);
  EXPECT_EQ(cfg.pool_capacity, 3u);
  EXPECT_EQ(mm_trainer_get_config(nullptr, &cfg), MM_ERR_INVALID_ARGUMENT);
  cfg.struct_size = 4;
  EXPECT_EQ(mm_trainer_get_config(h.trainer, &cfg), MM_ERR_STRUCT_SIZE);
  mm_trainer_free(nullptr);
  EXPECT_EQ(mm_trainer_step_count(nullptr), 0u);
  EXPECT_STREQ(mm_trainer_last_error(nullptr), "");
}

// Writes the fuzzer's seed corpus (tests/fuzz/trainer_fuzz.cc) when
// MM_TRAINER_FUZZ_SEEDS_OUT names a directory: trainer files of a tiny model,
// one mid-accumulation.
TEST(TrainerFuzzSeeds, DISABLED_Write) {
  const char* out = std::getenv("MM_TRAINER_FUZZ_SEEDS_OUT");
  ASSERT_NE(out, nullptr);
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
  c.cross_layer_period = 2;
  c.cross_layer_span = 1;
  mm_model* m = nullptr;
  ASSERT_EQ(mm_model_create(&m, &c, 21, nullptr), MM_OK);
  mm_trainer_options o;
  mm_trainer_options_init(&o, sizeof o);
  o.accum_steps = 2;
  o.n_threads = 1;
  mm_trainer* t = nullptr;
  ASSERT_EQ(mm_trainer_create(&t, m, &o), MM_OK);
  std::vector<int32_t> tokens = Batch(1, 8, 16);
  ASSERT_EQ(mm_trainer_save(t, (std::string(out) + "/fresh.safetensors").c_str()), MM_OK);
  ASSERT_EQ(mm_train_step(t, tokens.data(), 1, 8, nullptr, nullptr), MM_OK);
  ASSERT_EQ(mm_trainer_save(t, (std::string(out) + "/accumulating.safetensors").c_str()), MM_OK);
  ASSERT_EQ(mm_train_step(t, tokens.data(), 1, 8, nullptr, nullptr), MM_OK);
  ASSERT_EQ(mm_trainer_save(t, (std::string(out) + "/stepped.safetensors").c_str()), MM_OK);
  mm_trainer_free(t);
  mm_model_free(m);
}

}  // namespace
