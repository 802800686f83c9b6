// Decode and prefill throughput through the public API, for the default
// configuration and the Mamba-130m shape (V=50280, D=768, L=24), weights
// f32 and bf16, memory on (default pool) and off (pool_capacity 0).
//
// Counters: tokens/s, and the bytes of weights one decode token reads /
// the flops one prefill token costs, so bench/run_cpu.sh can report each
// result as a fraction of the machine's measured read bandwidth or GEMM
// throughput from the same run. Decode also reports its fastest step
// ("best_ms"): on a shared machine the mean carries every step another
// process delayed, so run_cpu.sh sets the mean against the probe's mean and
// the best step against the probe's best slice.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "api/handles.h"
#include "memmamba/memmamba.h"
#include "model/model.h"
#include "model/weights.h"

namespace {

enum Shape { kDefault = 0, k130m = 1 };

mm_model* GetModel(int shape, int bf16, int pool, int threads) {
  static std::map<std::vector<int>, mm_model*> cache;
  std::vector<int> key = {shape, bf16, pool, threads};
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  for (auto& [k, m] : cache) mm_model_free(m);  // keep one large model alive at a time
  cache.clear();
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  if (shape == k130m) {
    c.vocab_size = 50280;
    c.d_model = 768;
    c.n_layer = 24;
  }
  if (!pool) c.pool_capacity = 0;
  mm_model_options o;
  mm_model_options_init(&o, sizeof o);
  o.weight_dtype = bf16 ? MM_DTYPE_BF16 : MM_DTYPE_F32;
  o.n_threads = threads;
  mm_model* m = nullptr;
  if (mm_model_create(&m, &c, 1, &o) != MM_OK) return nullptr;
  cache[key] = m;
  return m;
}

// Bytes of weights one token reads in decode, and 2·(weights used per
// token) flops; notes' projections happen once per window and are left out.
void WeightCost(const mm_model* m, double* decode_bytes, double* prefill_flops_per_token,
                double* head_flops) {
  const memmamba::Model& model = *m->impl;
  const memmamba::ModelConfig& c = model.config();
  auto& w = const_cast<memmamba::ModelWeights&>(model.weights());
  double bytes = 0, weights = 0;
  for (const memmamba::ParamRef& p : memmamba::ListParams(c, &w)) {
    const std::string& n = p.name;
    if (n == "embedding.weight" || n == "lm_head.weight") continue;
    if (n.find("k.weight") != std::string::npos || n.find("v.weight") != std::string::npos ||
        n.find("note.summary") != std::string::npos) continue;
    if (!c.memory_enabled() && (n.find(".tok.") != std::string::npos ||
                                n.find(".lay.") != std::string::npos ||
                                n.find(".note.") != std::string::npos)) continue;
    const double elem = p.matrix && p.matrix->is_bf16() ? 2 : 4;
    bytes += p.numel() * elem;
    if (p.matrix) weights += p.numel();
  }
  const memmamba::Matrix& head = model.weights().head();
  const double head_bytes = head.size() * (head.is_bf16() ? 2.0 : 4.0);
  *decode_bytes = bytes + head_bytes;
  *prefill_flops_per_token = 2.0 * weights;
  *head_flops = 2.0 * head.size();
}

void SetLabels(benchmark::State& state, const mm_model* m, int shape, int bf16, int pool) {
  state.SetLabel(std::string(shape == k130m ? "130m" : "default") + (bf16 ? "/bf16" : "/f32") +
                 (pool ? "/pool" : "/nopool"));
}

// args: shape, bf16, pool, sessions, threads
void BM_Decode(benchmark::State& state) {
  const int shape = state.range(0), bf16 = state.range(1), pool = state.range(2),
            batch = state.range(3), threads = state.range(4);
  mm_model* m = GetModel(shape, bf16, pool, threads);
  if (!m) return state.SkipWithError("model creation failed");
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  mm_model_get_config(m, &c);
  std::vector<mm_session*> sessions(batch);
  for (auto& s : sessions) mm_session_create(&s, m, nullptr);
  // Warm the streams past a few windows so pools hold notes.
  std::vector<int32_t> warm(256);
  for (size_t i = 0; i < warm.size(); ++i) warm[i] = static_cast<int32_t>((i * 7919) % 256);
  for (auto* s : sessions) mm_session_feed(s, warm.data(), warm.size(), MM_LOGITS_NONE, nullptr, 0);
  std::vector<int32_t> tokens(batch, 65);
  std::vector<float> logits(static_cast<size_t>(batch) * c.vocab_size);
  double best = 1e300;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    mm_status st = batch == 1 ? mm_session_feed(sessions[0], tokens.data(), 1, MM_LOGITS_LAST,
                                                logits.data(), logits.size())
                              : mm_sessions_step(sessions.data(), batch, tokens.data(),
                                                 logits.data(), logits.size());
    if (st != MM_OK) return state.SkipWithError(mm_last_error());
    benchmark::DoNotOptimize(logits.data());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                              .count());
  }
  double bytes, flops, head_flops;
  WeightCost(m, &bytes, &flops, &head_flops);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_bytes_per_step"] = bytes;
  state.counters["best_ms"] = best * 1e3;
  SetLabels(state, m, shape, bf16, pool);
  for (auto* s : sessions) mm_session_free(s);
}

// args: shape, bf16, pool, T, threads
void BM_Prefill(benchmark::State& state) {
  const int shape = state.range(0), bf16 = state.range(1), pool = state.range(2),
            T = state.range(3), threads = state.range(4);
  mm_model* m = GetModel(shape, bf16, pool, threads);
  if (!m) return state.SkipWithError("model creation failed");
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  mm_model_get_config(m, &c);
  mm_session_options so;
  mm_session_options_init(&so, sizeof so);
  so.max_chunk = T;
  mm_session* s = nullptr;
  mm_session_create(&s, m, &so);
  std::vector<int32_t> tokens(T);
  for (int i = 0; i < T; ++i) tokens[i] = (i * 7919) % 256;
  std::vector<float> logits(c.vocab_size);
  for (auto _ : state) {
    mm_session_reset(s);
    if (mm_session_feed(s, tokens.data(), T, MM_LOGITS_LAST, logits.data(), logits.size()) != MM_OK) {
      return state.SkipWithError(mm_last_error());
    }
  }
  double bytes, flops, head_flops;
  WeightCost(m, &bytes, &flops, &head_flops);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(T), benchmark::Counter::kIsIterationInvariantRate);
  // Flops of the call: every token through every layer, the head once.
  state.counters["flops_per_call"] = flops * T + head_flops;
  SetLabels(state, m, shape, bf16, pool);
  mm_session_free(s);
}

void DecodeArgs(benchmark::internal::Benchmark* b) {
  for (int shape : {kDefault, k130m})
    for (int bf16 : {0, 1})
      for (int pool : {1, 0})
        for (int batch : {1, 16}) b->Args({shape, bf16, pool, batch, 2});
}

void PrefillArgs(benchmark::internal::Benchmark* b) {
  for (int shape : {kDefault, k130m})
    for (int bf16 : {0, 1})
      for (int pool : {1, 0}) b->Args({shape, bf16, pool, 512, 2});
}

BENCHMARK(BM_Decode)->Apply(DecodeArgs)->ArgNames({"shape", "bf16", "pool", "sessions", "threads"})
    ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
BENCHMARK(BM_Prefill)->Apply(PrefillArgs)->ArgNames({"shape", "bf16", "pool", "T", "threads"})
    ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
