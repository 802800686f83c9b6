// Sessions on the GPU through the public API (MM_DEVICE_CUDA models): decode
// throughput of mm_sessions_step at 1 to 256 concurrent sessions, and
// prefill throughput of mm_session_feed, for the Mamba-130m shape (V=50280,
// D=768, L=24, f32 weights) with memory on (the default pools, every pool
// full: each session starts from a snapshot of a 2048-token stream) and off
// (pool_capacity 0); each step with its sessions' logits brought back to
// the host (logits:1), or without (logits:0, the model's own throughput),
// or with each session's next token drawn on the device and only the ids
// brought back (logits:2, mm_sessions_step_sample at temperature 1); the
// model's mm_math: products in fp32 (math:0), on TF32 tensor cores (math:1,
// MM_MATH_TF32), or the mixers and the head in bf16 (math:2, MM_MATH_BF16;
// the argument was called tf32 before MM_MATH_BF16). MM_CUDA_GRAPHS=0 in
// the environment runs one-token steps op by op instead of as recorded
// graphs.
//
// Without a GPU every benchmark reports the reason as an error and the
// program exits 0.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "memmamba/memmamba.h"

namespace {

constexpr int64_t kPrefix = 2048;  // tokens behind every decoding session

struct Setup {
  mm_model* model = nullptr;
  std::vector<uint8_t> snapshot;  // a session after kPrefix tokens
  std::string error;
};

std::vector<int32_t> Tokens(int64_t n, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % V);
  return t;
}

// Every model made stays (at most six, ~0.7 GB each on the device): the
// benchmarks' order alternates between them.
Setup& GetSetup(int pool, int math) {
  static std::map<int, Setup> cache;
  const int key = pool * 3 + math;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Setup& s = cache[key];
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 50280;
  c.d_model = 768;
  c.n_layer = 24;
  if (!pool) c.pool_capacity = 0;
  mm_model_options o;
  mm_model_options_init(&o, sizeof o);
  o.device = MM_DEVICE_CUDA;
  o.math = math;
  if (mm_model_create(&s.model, &c, 1, &o) != MM_OK) {
    s.error = mm_last_error();
    s.model = nullptr;
    return s;
  }
  mm_session* one = nullptr;
  mm_session_create(&one, s.model, nullptr);
  const std::vector<int32_t> prefix = Tokens(kPrefix, c.vocab_size, 1);
  mm_session_feed(one, prefix.data(), prefix.size(), MM_LOGITS_NONE, nullptr, 0);
  void* bytes = nullptr;
  size_t size = 0;
  if (mm_session_snapshot_alloc(one, &bytes, &size) != MM_OK) {
    s.error = mm_last_error();
  } else {
    s.snapshot.assign(static_cast<uint8_t*>(bytes), static_cast<uint8_t*>(bytes) + size);
    mm_free(bytes);
  }
  mm_session_free(one);
  return s;
}

int64_t Vocab(const mm_model* m) {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  mm_model_get_config(m, &c);
  return c.vocab_size;
}

// args: memory on/off, concurrent sessions, logits back to the host (1),
// none (0) or sampled ids (2), mm_math.
void BM_GpuDecode(benchmark::State& state) {
  const int pool = static_cast<int>(state.range(0));
  const int64_t B = state.range(1);
  const bool want_logits = state.range(2) != 0;
  Setup& s = GetSetup(pool, static_cast<int>(state.range(3)));
  if (s.model == nullptr || s.snapshot.empty()) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  const int64_t V = Vocab(s.model);
  std::vector<mm_session*> sessions(B, nullptr);
  for (auto& x : sessions) {
    if (mm_session_create(&x, s.model, nullptr) != MM_OK ||
        mm_session_restore(x, s.snapshot.data(), s.snapshot.size()) != MM_OK) {
      state.SkipWithError(mm_last_error());
      for (auto* y : sessions) mm_session_free(y);
      return;
    }
  }
  const bool sample = state.range(2) == 2;
  std::vector<float> logits(want_logits && !sample ? B * V : 0);
  float* out = logits.empty() ? nullptr : logits.data();
  std::vector<int32_t> tokens = Tokens(B, V, 2), next(B);
  std::mt19937 rng(3);
  auto step = [&]() {
    return sample ? mm_sessions_step_sample(sessions.data(), B, tokens.data(), nullptr,
                                            next.data())
                  : mm_sessions_step(sessions.data(), B, tokens.data(), out, logits.size());
  };
  for (int i = 0; i < 3; ++i) step();  // warm up (the first steps size the buffers)
  for (auto _ : state) {
    if (step() != MM_OK) {
      state.SkipWithError(mm_last_error());
      break;
    }
    if (sample) {
      tokens = next;
    } else {
      for (auto& t : tokens) t = static_cast<int32_t>(rng() % V);
    }
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * B), benchmark::Counter::kIsRate);
  state.counters["sessions"] = static_cast<double>(B);
  for (auto* x : sessions) mm_session_free(x);
}

// args: memory on/off, tokens per feed, mm_math.
void BM_GpuPrefill(benchmark::State& state) {
  const int pool = static_cast<int>(state.range(0));
  const int64_t T = state.range(1);
  Setup& s = GetSetup(pool, static_cast<int>(state.range(2)));
  if (s.model == nullptr) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  const int64_t V = Vocab(s.model);
  mm_session* session = nullptr;
  mm_session_options so;
  mm_session_options_init(&so, sizeof so);
  so.max_chunk = static_cast<uint32_t>(T);
  if (mm_session_create(&session, s.model, &so) != MM_OK) {
    state.SkipWithError(mm_last_error());
    return;
  }
  const std::vector<int32_t> tokens = Tokens(T, V, 4);
  std::vector<float> logits(V);
  for (auto _ : state) {
    mm_session_reset(session);
    if (mm_session_feed(session, tokens.data(), T, MM_LOGITS_LAST, logits.data(), V) != MM_OK) {
      state.SkipWithError(mm_last_error());
      break;
    }
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * T), benchmark::Counter::kIsRate);
  mm_session_free(session);
}

BENCHMARK(BM_GpuDecode)
    ->ArgNames({"pool", "sessions", "logits", "math"})
    ->ArgsProduct({{1, 0}, {1, 16, 64, 256}, {1, 0, 2}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GpuPrefill)
    ->ArgNames({"pool", "tokens", "math"})
    ->ArgsProduct({{1, 0}, {2048}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
