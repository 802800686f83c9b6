// Training throughput through the public API: mm_train_step on the default
// configuration (DESIGN 2.1; 4.1 M parameters, memory on), B sequences of T
// tokens, every target counted, AdamW with the default options (clipping at
// 1.0, accum_steps 1: every call updates the weights).
//
//   bench_train [--B=4] [--T=512] [--threads=2] [--pool=1] [--min_time=10]
//               [--shape=0|1] [--cuda=0|1] [--tf32=0|1]
//               [--world=N --rank=R --id_file=PATH]
//               [benchmark flags]
//
// --shape=1: the Mamba-130m shape (V 50280, D 768, L 24, the default memory);
// --cuda=1: the trainer runs on the GPU (mm_trainer_options.device);
// --tf32=1: its products on TF32 tensor cores (mm_trainer_options.math).
//
// Counters: tokens_per_s = B·T per step (positions processed, the same
// measure bench/torch_train.py reports), loss (of the last step), params,
// model_flops_per_s = 6 · params · tokens/s (the usual estimate of a
// training step's matrix work: 2 flops per weight per token forward, 4
// backward; the head is the tied embedding, so every parameter counts once).
// One step runs before timing starts, so allocation of the trainer's buffers
// is not counted; then steps run for at least --min_time seconds (a step of
// the default shape takes seconds: the default 10 gives a few). bench/run_train.sh runs this beside the PyTorch baseline.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "memmamba/memmamba.h"

namespace {

int64_t g_B = 4, g_T = 512, g_threads = 2, g_pool = 1, g_min_time = 10, g_shape = 0,
        g_cuda = 0, g_tf32 = 0, g_world = 0, g_rank = 0;
std::string g_id_file = "nccl.id";

// --world=N (N >= 1, with --cuda=1): the trainer joins a data-parallel group
// of N, as rank --rank (on GPU `rank`); rank 0 makes the NCCL id and writes
// it to --id_file, the others wait for it there. Every rank runs the same
// benchmark on its own batch of B sequences (weak scaling): tokens_per_s is
// this rank's. --world=1 is a group of one: the whole collective path.
int JoinGroup(mm_trainer* trainer) {
  uint8_t id[MM_NCCL_ID_BYTES];
  mm_status st = g_rank == 0 ? mm_nccl_id_create(id)
                             : mm_nccl_id_read_file(id, g_id_file.c_str(), 120000);
  if (st == MM_OK && g_rank == 0) st = mm_nccl_id_write_file(g_id_file.c_str(), id);
  if (st != MM_OK) return st;
  mm_data_parallel_options dp;
  mm_data_parallel_options_init(&dp, sizeof dp);
  dp.world_size = static_cast<uint32_t>(g_world);
  dp.rank = static_cast<uint32_t>(g_rank);
  std::memcpy(dp.nccl_id, id, sizeof id);
  return mm_trainer_join(trainer, &dp);
}

void BM_TrainStep(benchmark::State& state) {
  const int64_t B = state.range(0), T = state.range(1), threads = state.range(2),
                pool = state.range(3), shape = state.range(4), cuda = state.range(5);
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  if (!pool) c.pool_capacity = 0;
  if (shape == 1) {
    c.vocab_size = 50280;
    c.d_model = 768;
    c.n_layer = 24;
  }
  mm_model_options mo;
  mm_model_options_init(&mo, sizeof mo);
  mo.n_threads = static_cast<int32_t>(threads);
  mm_model* model = nullptr;
  if (mm_model_create(&model, &c, 1, &mo) != MM_OK) return state.SkipWithError(mm_last_error());
  mm_trainer_options to;
  mm_trainer_options_init(&to, sizeof to);
  to.n_threads = static_cast<int32_t>(threads);
  to.device = cuda ? MM_DEVICE_CUDA : MM_DEVICE_CPU;
  to.math = g_tf32 ? MM_MATH_TF32 : MM_MATH_FP32;
  mm_trainer* trainer = nullptr;
  if (mm_trainer_create(&trainer, model, &to) != MM_OK) {
    mm_model_free(model);
    return state.SkipWithError(mm_last_error());
  }
  const uint64_t params = mm_model_parameter_count(model);
  mm_model_free(model);
  if (g_world > 0 && JoinGroup(trainer) != MM_OK) {
    std::string msg = std::string("join: ") + mm_last_error();
    mm_trainer_free(trainer);
    return state.SkipWithError(msg.c_str());
  }

  // Random tokens (a fixed stream: the same batch every step, as the baseline).
  std::vector<int32_t> tokens(static_cast<size_t>(B * T));
  uint64_t x = 88172645463325252ull;
  for (auto& t : tokens) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t = static_cast<int32_t>(x % static_cast<uint64_t>(c.vocab_size));
  }
  mm_train_result r;
  mm_train_result_init(&r, sizeof r);
  if (mm_train_step(trainer, tokens.data(), B, T, nullptr, &r) != MM_OK) {
    std::string msg = mm_trainer_last_error(trainer);
    mm_trainer_free(trainer);
    return state.SkipWithError(msg.c_str());
  }
  for (auto _ : state) {
    if (mm_train_step(trainer, tokens.data(), B, T, nullptr, &r) != MM_OK) {
      std::string msg = mm_trainer_last_error(trainer);
      mm_trainer_free(trainer);
      return state.SkipWithError(msg.c_str());
    }
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(B * T),
                                                      benchmark::Counter::kIsIterationInvariantRate);
  state.counters["loss"] = r.loss;
  state.counters["params"] = static_cast<double>(params);
  state.counters["model_flops_per_s"] =
      benchmark::Counter(6.0 * static_cast<double>(params) * static_cast<double>(B * T),
                         benchmark::Counter::kIsIterationInvariantRate);
  std::string label = shape == 1 ? "130m" : "default";
  label += pool ? "/pool" : "/nopool";
  label += cuda ? "/cuda" : "/cpu";
  if (g_world > 0) label += "/rank" + std::to_string(g_rank) + "of" + std::to_string(g_world);
  state.SetLabel(label);
  mm_trainer_free(trainer);
}

// Takes --B=, --T=, --threads=, --pool=, --min_time= out of argv (the rest
// goes to Google Benchmark). Returns false on a malformed value.
bool ParseOwnFlags(int* argc, char** argv) {
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    struct {
      const char* prefix;
      int64_t* value;
    } flags[] = {{"--B=", &g_B},         {"--T=", &g_T},
                 {"--threads=", &g_threads}, {"--pool=", &g_pool},
                 {"--min_time=", &g_min_time}, {"--shape=", &g_shape},
                 {"--cuda=", &g_cuda},       {"--tf32=", &g_tf32},
                 {"--world=", &g_world},
                 {"--rank=", &g_rank}};
    bool mine = false;
    if (std::strncmp(argv[i], "--id_file=", 10) == 0) {
      g_id_file = argv[i] + 10;
      mine = true;
    }
    for (auto& f : flags) {
      const size_t n = std::strlen(f.prefix);
      if (std::strncmp(argv[i], f.prefix, n) == 0) {
        char* end = nullptr;
        *f.value = std::strtoll(argv[i] + n, &end, 10);
        if (end == argv[i] + n || *end != 0 || *f.value < 0) return false;
        mine = true;
      }
    }
    if (!mine) argv[out++] = argv[i];
  }
  *argc = out;
  return g_B >= 1 && g_T >= 2 && g_shape <= 1 && g_cuda <= 1 && g_tf32 <= 1 &&
         (g_world == 0 || (g_cuda == 1 && g_rank < g_world)) && !g_id_file.empty();
}

}  // namespace

int main(int argc, char** argv) {
  if (!ParseOwnFlags(&argc, argv)) {
    std::fprintf(stderr, "usage: %s [--B=N>=1] [--T=N>=2] [--threads=N] [--pool=0|1] "
                         "[--min_time=SECONDS] [--shape=0|1] [--cuda=0|1] [--tf32=0|1] "
                         "[--world=N --rank=R [--id_file=PATH]] "
                         "[benchmark flags]\n", argv[0]);
    return 2;
  }
  benchmark::RegisterBenchmark("BM_TrainStep", BM_TrainStep)
      ->Args({g_B, g_T, g_threads, g_pool, g_shape, g_cuda, g_tf32})
      ->ArgNames({"B", "T", "threads", "pool", "shape", "cuda", "tf32"})
      ->Unit(benchmark::kMillisecond)
      ->MinTime(static_cast<double>(g_min_time))
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
