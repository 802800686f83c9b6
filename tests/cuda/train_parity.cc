// Training on the GPU (src/train/cuda_train.cc) against the CPU, the
// reference: the loss and every parameter tensor's gradient for configurations
// covering both pool policies, windows 1 and 4, each fusion mode, cross-layer
// reads, plain Mamba and a loss mask; bitwise repeatability; recomputation in
// the backward equal to kept activations; a few optimizer steps next to the
// CPU trainer; an exact resume across a save in the middle of an
// accumulation; and a poisoned batch that changes nothing.
//
// Without a CUDA device (or without libmemmamba_cuda) the program exits 77,
// which CTest reports as a skip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "backend/cuda/cuda_library.h"
#include "model/model.h"
#include "train/cuda_train.h"
#include "train/gradients.h"
#include "train/trainer.h"

namespace memmamba {
namespace {

struct Case {
  std::string name;
  PoolPolicy policy = PoolPolicy::kPriority;
  int64_t window = 4;
  Fusion fusion = Fusion::kWeighted;
  int64_t cross = 2;
  int64_t capacity = 6;
  bool tie = true;
  float gate = 0.0f;
  int64_t d_model = 24;
  bool mask = false;
  int64_t B = 3, T = 45;  // T not a multiple of the window or of 64
};

ModelConfig Config(const Case& k) {
  ModelConfig c;
  c.vocab_size = 50;
  c.d_model = k.d_model;
  c.n_layer = 4;
  c.d_state = 5;
  c.summary_dim = 12;
  c.attn_heads = 3;
  c.note_window = k.window;
  c.pool_capacity = k.capacity;
  c.pool_policy = k.policy;
  c.fusion = k.fusion;
  c.cross_layer_period = k.cross;
  c.cross_layer_span = 2;
  c.tie_embeddings = k.tie;
  c.gate_threshold = k.gate;
  EXPECT_TRUE(c.Resolve().ok());
  return c;
}

// Weights moved away from their init so that no gradient hides behind a
// zero (fuse = 0, alpha = 0.1), and scores spread around the threshold.
std::unique_ptr<Model> Perturbed(const ModelConfig& config, uint64_t seed) {
  ModelOptions one;
  one.n_threads = 1;
  auto base = Model::Create(config, seed, one);
  EXPECT_TRUE(base.ok()) << base.status();
  ModelWeights w = (*base)->weights();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const ParamRef& p : ListParams(config, &w)) {
    float* d = p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    const float s = p.name.find("A_log") != std::string::npos ? 0.1f
                    : p.name.find("score.bias") != std::string::npos ? 0.5f
                                                                     : 0.05f;
    for (int64_t i = 0; i < p.numel(); ++i) d[i] += s * normal(rng);
  }
  auto m = Model::FromWeights(config, std::move(w), one);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

struct Data {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  Batch batch;
};

Data MakeBatch(const Case& k, int64_t vocab, uint32_t seed) {
  Data d;
  std::mt19937 rng(seed);
  d.tokens.resize(k.B * k.T);
  for (auto& t : d.tokens) t = static_cast<int32_t>(rng() % vocab);
  if (k.mask) {
    d.mask.resize(k.B * k.T);
    for (size_t i = 0; i < d.mask.size(); ++i) d.mask[i] = (i % 3) != 1;
  }
  d.batch = Batch{d.tokens.data(), k.B, k.T, k.mask ? d.mask.data() : nullptr};
  return d;
}

double NormErr(const std::vector<float>& a, const std::vector<float>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

std::vector<ParamRef> Params(const Model& m) {
  return ListParams(m.config(), const_cast<ModelWeights*>(&m.weights()));
}

absl::StatusOr<std::unique_ptr<CudaTrainState>> DeviceState(const Model& m) {
  MM_ASSIGN_OR_RETURN(auto st, CudaTrainState::Create(&m, Params(m), false));
  std::vector<std::vector<float>> zeros;
  for (const ParamRef& p : Params(m)) zeros.emplace_back(p.numel(), 0.0f);
  MM_RETURN_IF_ERROR(st->Upload(zeros, zeros, zeros));
  return st;
}

// The scan's __expf and sums in other orders (see op_parity.cc), carried
// through 4 layers and their backward.
constexpr double kTolGrad = 2e-4;
constexpr double kTolLoss = 1e-5;

class TrainParity : public ::testing::TestWithParam<Case> {};

TEST_P(TrainParity, LossAndEveryGradientMatchTheCpu) {
  const Case& k = GetParam();
  const ModelConfig config = Config(k);
  std::unique_ptr<Model> model = Perturbed(config, 11);
  Data d = MakeBatch(k, config.vocab_size, 5);

  BatchStats cpu_stats;
  Gradients cpu;
  ASSERT_TRUE(ComputeGradients(*model, d.batch, {}, &cpu_stats, &cpu).ok());

  auto st = DeviceState(*model);
  ASSERT_TRUE(st.ok()) << st.status();
  BatchStats gpu_stats;
  absl::Status s = (*st)->ComputeGradients(d.batch, {}, &gpu_stats);
  ASSERT_TRUE(s.ok()) << s;
  Gradients gpu;
  ASSERT_TRUE((*st)->DownloadGradients(&gpu).ok());

  EXPECT_EQ(gpu_stats.targets, cpu_stats.targets);
  EXPECT_NEAR(gpu_stats.loss(), cpu_stats.loss(), kTolLoss * std::abs(cpu_stats.loss()));
  EXPECT_EQ(gpu_stats.keep_fraction, cpu_stats.keep_fraction);
  const std::vector<ParamRef> params = Params(*model);
  ASSERT_EQ(gpu.size(), cpu.size());
  double worst = 0.0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double e = NormErr(gpu[i], cpu[i]);
    worst = std::max(worst, e);
    EXPECT_LE(e, kTolGrad) << params[i].name;
  }
  std::printf("[%s] loss %.9g (cpu %.9g), worst gradient error %.3g\n", k.name.c_str(),
              gpu_stats.loss(), cpu_stats.loss(), worst);

  // The same call again: the same bits. Recomputation in the backward: the
  // same bits as kept activations.
  Gradients again, recomputed;
  ASSERT_TRUE((*st)->ComputeGradients(d.batch, {}, &gpu_stats).ok());
  ASSERT_TRUE((*st)->DownloadGradients(&again).ok());
  GradientOptions low;
  low.device_keep_activations_bytes = 0.0;
  ASSERT_TRUE((*st)->ComputeGradients(d.batch, low, &gpu_stats).ok());
  ASSERT_TRUE((*st)->DownloadGradients(&recomputed).ok());
  for (size_t i = 0; i < gpu.size(); ++i) {
    EXPECT_EQ(again[i], gpu[i]) << "repeat: " << params[i].name;
    EXPECT_EQ(recomputed[i], gpu[i]) << "recompute: " << params[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, TrainParity,
    ::testing::Values(
        Case{"priority_w4_weighted"},
        Case{"fifo_w4_weighted", PoolPolicy::kFifo},
        Case{"priority_w1_residual", PoolPolicy::kPriority, 1, Fusion::kResidual},
        Case{"fifo_w1_gated", PoolPolicy::kFifo, 1, Fusion::kGated},
        Case{"gated_untied_gate_threshold", PoolPolicy::kPriority, 4, Fusion::kGated, 2, 6,
             false, 0.45f},
        Case{"no_cross_layer_masked", PoolPolicy::kFifo, 4, Fusion::kWeighted, 0, 6, true, 0.0f,
             24, true},
        Case{"plain_mamba", PoolPolicy::kFifo, 4, Fusion::kWeighted, 0, 0},
        Case{"long_ragged_d", PoolPolicy::kPriority, 8, Fusion::kWeighted, 2, 5, true, 0.0f, 37,
             false, 2, 300}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TrainerOptions Opts(bool cuda, int64_t accum) {
  TrainerOptions o;
  o.learning_rate = 3e-3f;
  o.accum_steps = accum;
  o.n_threads = 1;
  o.cuda = cuda;
  return o;
}

std::vector<float> Flat(const Model& m) {
  std::vector<float> out;
  for (const ParamRef& p : Params(m)) {
    const float* d = p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    out.insert(out.end(), d, d + p.numel());
  }
  return out;
}

std::vector<float> Weights(const Trainer& t) {
  auto m = t.ExportModel(ModelOptions{});
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? Flat(**m) : std::vector<float>{};
}

TEST(CudaTrainer, StepsFollowTheCpuTrainer) {
  const Case k;
  const ModelConfig config = Config(k);
  std::unique_ptr<Model> model = Perturbed(config, 3);
  auto cpu = Trainer::Create(*model, Opts(false, 1));
  auto gpu = Trainer::Create(*model, Opts(true, 1));
  ASSERT_TRUE(cpu.ok() && gpu.ok()) << gpu.status();
  EXPECT_FALSE((*gpu)->device_name().empty());
  const std::vector<float> w0 = Flat(*model);
  for (int i = 0; i < 4; ++i) {
    Data d = MakeBatch(k, config.vocab_size, 100 + i);
    StepResult rc, rg;
    ASSERT_TRUE((*cpu)->Step(d.batch, &rc).ok());
    absl::Status s = (*gpu)->Step(d.batch, &rg);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_NEAR(rg.loss, rc.loss, 1e-4 * rc.loss) << "step " << i;
    EXPECT_NEAR(rg.grad_norm, rc.grad_norm, 1e-3 * rc.grad_norm) << "step " << i;
    EXPECT_EQ(rg.step, rc.step);
  }
  // AdamW's first steps move every weight by about ±lr whatever the
  // gradient's size, so a gradient that is noise on both devices may move
  // its weight either way; the updates agree in aggregate.
  std::vector<float> wc = Weights(**cpu), wg = Weights(**gpu);
  ASSERT_EQ(wc.size(), w0.size());
  std::vector<float> dc(w0.size()), dg(w0.size());
  for (size_t i = 0; i < w0.size(); ++i) {
    dc[i] = wc[i] - w0[i];
    dg[i] = wg[i] - w0[i];
  }
  EXPECT_LE(NormErr(dg, dc), 0.05);
}

// MM_MATH_TF32: products on TF32 tensor cores (inputs rounded to 10
// mantissa bits) keep the loss and the gradient norm near the CPU's fp32,
// and the steps differ from the fp32 GPU trainer's (the option is used).
TEST(CudaTrainer, Tf32StaysNearFp32) {
  const Case k;
  const ModelConfig config = Config(k);
  std::unique_ptr<Model> model = Perturbed(config, 3);
  TrainerOptions tf = Opts(true, 1);
  tf.tf32 = true;
  auto cpu = Trainer::Create(*model, Opts(false, 1));
  auto gpu = Trainer::Create(*model, tf);
  auto exact = Trainer::Create(*model, Opts(true, 1));
  ASSERT_TRUE(cpu.ok() && gpu.ok() && exact.ok()) << gpu.status();
  bool differs = false;
  for (int i = 0; i < 3; ++i) {
    Data d = MakeBatch(k, config.vocab_size, 100 + i);
    StepResult rc, rg, re;
    ASSERT_TRUE((*cpu)->Step(d.batch, &rc).ok());
    ASSERT_TRUE((*gpu)->Step(d.batch, &rg).ok());
    ASSERT_TRUE((*exact)->Step(d.batch, &re).ok());
    EXPECT_NEAR(rg.loss, rc.loss, 1e-2 * rc.loss) << "step " << i;
    EXPECT_NEAR(rg.grad_norm, rc.grad_norm, 5e-2 * rc.grad_norm) << "step " << i;
    differs = differs || rg.loss != re.loss || rg.grad_norm != re.grad_norm;
  }
  EXPECT_TRUE(differs) << "TF32 never used";
}

TEST(CudaTrainer, ResumeAcrossASaveIsExact) {
  const Case k;
  const ModelConfig config = Config(k);
  std::unique_ptr<Model> model = Perturbed(config, 4);
  auto straight = Trainer::Create(*model, Opts(true, 2));
  auto first = Trainer::Create(*model, Opts(true, 2));
  ASSERT_TRUE(straight.ok() && first.ok()) << straight.status();
  const std::string path = ::testing::TempDir() + "cuda_resume.safetensors";
  std::unique_ptr<Trainer> resumed;
  for (int i = 0; i < 7; ++i) {
    Data d = MakeBatch(k, config.vocab_size, 200 + i);
    ASSERT_TRUE((*straight)->Step(d.batch, nullptr).ok());
    if (i < 3) {
      ASSERT_TRUE((*first)->Step(d.batch, nullptr).ok());
      if (i == 2) {  // in the middle of an accumulation
        ASSERT_TRUE((*first)->Save(path).ok());
        auto r = Trainer::Load(path, 1, /*cuda=*/true);
        ASSERT_TRUE(r.ok()) << r.status();
        resumed = std::move(*r);
        // The file also loads on the CPU, with the same weights.
        auto on_cpu = Trainer::Load(path, 1, /*cuda=*/false);
        ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
        EXPECT_EQ(Weights(**on_cpu), Weights(*resumed));
      }
    } else {
      ASSERT_TRUE(resumed->Step(d.batch, nullptr).ok());
    }
  }
  std::remove(path.c_str());
  EXPECT_EQ(resumed->step(), (*straight)->step());
  EXPECT_EQ(Weights(*resumed), Weights(**straight));
}

TEST(CudaTrainer, PoisonedBatchChangesNothing) {
  Case k;
  k.tie = false;
  const ModelConfig config = Config(k);
  std::unique_ptr<Model> model = Perturbed(config, 6);
  ModelWeights w = model->weights();
  for (int64_t d = 0; d < config.d_model; ++d) w.lm_head.f32[3 * config.d_model + d] = 3e38f;
  ModelOptions one;
  one.n_threads = 1;
  auto poisoned = Model::FromWeights(config, std::move(w), one);
  ASSERT_TRUE(poisoned.ok());
  auto t = Trainer::Create(**poisoned, Opts(true, 1));
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<float> before = Weights(**t);
  Data d = MakeBatch(k, config.vocab_size, 9);
  d.tokens[5] = 3;
  absl::Status s = (*t)->Step(d.batch, nullptr);
  EXPECT_EQ(CodeOf(s), ErrorCode::kNonFinite) << s;
  EXPECT_EQ((*t)->step(), 0);
  EXPECT_EQ(Weights(**t), before);
  // Straight-through is refused on the device, also without a change.
  TrainerOptions st = Opts(true, 1);
  st.straight_through = true;
  auto t2 = Trainer::Create(*model, st);
  ASSERT_TRUE(t2.ok());
  Data ok = MakeBatch(k, config.vocab_size, 10);
  EXPECT_EQ(CodeOf((*t2)->Step(ok.batch, nullptr)), ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace memmamba

int main(int argc, char** argv) {
  auto ctx = memmamba::CudaContext::Create();
  if (!ctx.ok()) {
    std::printf("cuda_train_parity: skipped: %s\n", std::string(ctx.status().message()).c_str());
    return 77;
  }
  std::printf("device: %s\n", (*ctx)->device_name().c_str());
  ctx->reset();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
