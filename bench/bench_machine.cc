// Machine probes and matrix-product timings of the CPU backend
// (src/backend/cpu/matmul.h: y[m, n] = sum_k x[m, k] * W[n, k], overwriting y).
//
//   BM_ReadBandwidth/threads:T   sum of a 1 GiB float array with AVX2 loads
//                                (on huge pages where granted, as weights are);
//                                "GB/s" = bytes read per second (1e9 bytes),
//                                mean over passes; "best_GB/s" = the fastest
//                                32 MiB slice of any pass.
//   BM_SgemmPeak/threads:T       cblas_sgemm 2048 x 2048 x 2048 with OpenBLAS'
//                                own T threads; "GFLOP/s".
//   BM_DecodeMatmul{F32,Bf16}    Mamba-130m decode shapes, M = 1 and 16;
//                                "GB/s" = weight bytes read per second,
//                                "frac_bw" = that over the probe's best_GB/s
//                                at the same T ("probe_GB/s").
//                                Weights rotate over copies totalling >= 256
//                                MiB, so every call streams W from DRAM (the
//                                32 MiB L3 would otherwise hold the smaller
//                                matrices, as it does not in a real model).
//   BM_PrefillMatmul{F32,Bf16}   M = 512 prefill shapes; "GFLOP/s".
//
// Rates are means over the timed calls; the best_* counters use the fastest
// single call, the figure undisturbed by other processes on a shared machine.
// Every probe is selectable by name, e.g.
//   bench_machine --benchmark_filter='BM_ReadBandwidth|BM_DecodeMatmulBf16'
// Times are wall-clock (UseRealTime): the work runs on an OpenMP team.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/bf16.h"
#include "backend/cpu/matmul.h"
#include "common/large_pages.h"

namespace memmamba::cpu {
namespace {

using memmamba::AllocateLarge;
using memmamba::FreeLarge;

constexpr size_t kProbeBytes = size_t{1} << 30;
constexpr size_t kRotationBytes = size_t{256} << 20;

struct FreeDeleter {
  size_t bytes = 0;
  void operator()(void* p) const { FreeLarge(p, bytes); }
};

// Probe arrays and weight copies live on the same pages as a model's
// weights (common/large_pages.h: huge pages where granted), so a probe
// measures what the library's kernels can reach. NULL when out of memory.
template <typename T>
std::unique_ptr<T[], FreeDeleter> AllocateArray(size_t count) {
  const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  T* p = nullptr;
  try {
    p = static_cast<T*>(AllocateLarge(bytes));
  } catch (const std::bad_alloc&) {
  }
  return std::unique_ptr<T[], FreeDeleter>(p, FreeDeleter{bytes});
}

size_t CeilDivSize(size_t a, size_t b) { return (a + b - 1) / b; }

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
      .count();
}

// Per-call wall times: the mean (what Google Benchmark reports) and the best
// call. On a shared 2-core machine another process can take a core for
// milliseconds; the best call is the undisturbed figure.
struct CallTimer {
  double total = 0.0, best = 1e300;
  template <typename F>
  void Time(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double dt = SecondsSince(t0);
    total += dt;
    best = std::min(best, dt);
  }
};

// Sum of n floats (n a multiple of 64 per thread), 8 independent vector
// accumulators so that the adds never limit the load rate.
float SumArray(const float* a, size_t n, int threads) {
  float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const size_t size = omp_get_num_threads(), rank = omp_get_thread_num();
    const size_t chunk = n / size / 64 * 64;
    const float* p = a + rank * chunk;
    const float* end = rank + 1 == size ? a + n : p + chunk;
    __m256 acc[8];
    for (__m256& v : acc) v = _mm256_setzero_ps();
    for (; p + 64 <= end; p += 64) {
      for (int j = 0; j < 8; ++j) {
        acc[j] = _mm256_add_ps(acc[j], _mm256_load_ps(p + 8 * j));
      }
    }
    for (int j = 1; j < 8; ++j) acc[0] = _mm256_add_ps(acc[0], acc[j]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc[0]);
    for (float v : lanes) total += v;
    for (; p < end; ++p) total += *p;
  }
  return total;
}

// The 1 GiB probe array, first-touched by the same static partition that
// reads it; NULL when it cannot be allocated.
const float* ProbeArray() {
  static const float* array = [] {
    const size_t n = kProbeBytes / sizeof(float);
    float* a = AllocateArray<float>(n).release();
    if (a == nullptr) return a;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) a[i] = static_cast<float>(i & 1023);
    return a;
  }();
  return array;
}

// One pass over the probe array, timed in kProbeSliceBytes slices (each far
// larger than the L3, so each is a DRAM read): the sum of the slice times and
// the fastest slice. A slice lasts ~2 ms, short enough to fall between the
// time slices of other processes on a shared machine.
constexpr size_t kProbeSliceBytes = size_t{32} << 20;

struct PassTimes {
  double total = 0.0, best_slice = 1e300;
};

PassTimes ProbePass(int threads) {
  const float* a = ProbeArray();
  const size_t slice = kProbeSliceBytes / sizeof(float);
  PassTimes t;
  for (size_t i = 0; i < kProbeBytes / sizeof(float); i += slice) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(SumArray(a + i, slice, threads));
    const double dt = SecondsSince(t0);
    t.total += dt;
    t.best_slice = std::min(t.best_slice, dt);
  }
  return t;
}

// Best read bandwidth seen so far per thread count (fastest slice), in
// bytes/s; measured (3 passes) on first use when BM_ReadBandwidth has not run.
std::map<int, double>& BestBandwidth() {
  static std::map<int, double> best;
  return best;
}

// Returns 0 when the probe array cannot be allocated.
double ProbeBandwidth(int threads) {
  auto it = BestBandwidth().find(threads);
  if (it != BestBandwidth().end()) return it->second;
  if (ProbeArray() == nullptr) return 0.0;
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    best = std::max(best, kProbeSliceBytes / ProbePass(threads).best_slice);
  }
  BestBandwidth()[threads] = best;
  return best;
}

// ---------------------------------------------------------------------------
// (a) read bandwidth.

void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  // Allocation and first touch stay out of the timing.
  if (ProbeArray() == nullptr) {
    state.SkipWithError("cannot allocate the 1 GiB probe array");
    return;
  }
  double best_slice = 1e300, total = 0.0;
  for (auto _ : state) {
    const PassTimes t = ProbePass(threads);
    total += t.total;
    best_slice = std::min(best_slice, t.best_slice);
  }
  const double best = kProbeSliceBytes / best_slice;
  double& recorded = BestBandwidth()[threads];
  recorded = std::max(recorded, best);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(kProbeBytes));
  // Mean over all passes, and the fastest slice (what frac_bw divides by).
  state.counters["GB/s"] = kProbeBytes * state.iterations() / total / 1e9;
  state.counters["best_GB/s"] = best / 1e9;
}
BENCHMARK(BM_ReadBandwidth)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

// ---------------------------------------------------------------------------
// (b) large sgemm with OpenBLAS' own threading.

void BM_SgemmPeak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr int kN = 2048;
  std::vector<float> a(size_t{kN} * kN, 0.5f), b(size_t{kN} * kN, 0.25f),
      c(size_t{kN} * kN);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);  // the OpenMP OpenBLAS reads this ICV
  CallTimer timer;
  for (auto _ : state) {
    timer.Time([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kN, kN, kN, 1.0f,
                  a.data(), kN, b.data(), kN, 0.0f, c.data(), kN);
    });
    benchmark::ClobberMemory();
  }
  omp_set_num_threads(saved);
  const double flops = 2.0 * kN * kN * kN;
  state.counters["GFLOP/s"] = flops * state.iterations() / timer.total / 1e9;
  state.counters["best_GFLOP/s"] = flops / timer.best / 1e9;
}
BENCHMARK(BM_SgemmPeak)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// (c), (d) MatmulF32 / MatmulBf16.

template <typename Elem>
struct Operands {
  int64_t M, N, K;
  std::vector<float> x, y;
  std::unique_ptr<Elem[], FreeDeleter> w;  // copies * N * K
  int64_t copies;
};

template <typename Elem>
Operands<Elem> MakeOperands(int64_t M, int64_t N, int64_t K, bool rotate) {
  Operands<Elem> o{M, N, K, {}, {}, nullptr, 1};
  const size_t matrix_bytes = static_cast<size_t>(N * K) * sizeof(Elem);
  if (rotate) {
    o.copies = static_cast<int64_t>(
        std::max<size_t>(1, CeilDivSize(kRotationBytes, matrix_bytes)));
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  o.x.resize(static_cast<size_t>(M * K));
  for (float& v : o.x) v = dist(rng);
  o.y.resize(static_cast<size_t>(M * N));
  const size_t count = static_cast<size_t>(o.copies * N * K);
  o.w = AllocateArray<Elem>(count);
  if (o.w == nullptr) return o;
  std::vector<float> row(static_cast<size_t>(K));
  for (size_t i = 0; i < count; i += row.size()) {
    for (float& v : row) v = dist(rng) * 0.05f;
    if constexpr (std::is_same_v<Elem, uint16_t>) {
      ConvertF32ToBf16(row.data(), o.w.get() + i, row.size());
    } else {
      std::copy(row.begin(), row.end(), o.w.get() + i);
    }
  }
  return o;
}

template <typename Elem>
void CallMatmul(Operands<Elem>& o, int64_t copy, int threads) {
  const Elem* w = o.w.get() + copy * o.N * o.K;
  if constexpr (std::is_same_v<Elem, uint16_t>) {
    MatmulBf16(o.x.data(), o.M, o.K, o.K, w, o.N, o.y.data(), o.N, false,
               threads);
  } else {
    MatmulF32(o.x.data(), o.M, o.K, o.K, w, o.N, o.y.data(), o.N, false,
              threads);
  }
}

template <typename Elem>
void BM_DecodeMatmul(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const double probe = ProbeBandwidth(threads);
  Operands<Elem> o = MakeOperands<Elem>(M, N, K, /*rotate=*/true);
  if (probe == 0.0 || o.w == nullptr) {
    state.SkipWithError("out of memory");
    return;
  }
  for (int64_t c = 0; c < o.copies; ++c) CallMatmul(o, c, threads);  // warm
  const double weight_bytes = static_cast<double>(N * K) * sizeof(Elem);
  int64_t copy = 0;
  CallTimer timer;
  for (auto _ : state) {
    timer.Time([&] { CallMatmul(o, copy, threads); });
    benchmark::ClobberMemory();
    if (++copy == o.copies) copy = 0;
  }
  state.SetBytesProcessed(static_cast<int64_t>(weight_bytes) *
                          static_cast<int64_t>(state.iterations()));
  const double mean_rate = weight_bytes * state.iterations() / timer.total;
  const double best_rate = weight_bytes / timer.best;
  state.counters["GB/s"] = mean_rate / 1e9;
  state.counters["best_GB/s"] = best_rate / 1e9;
  // Fractions of the probe's best_GB/s at the same thread count.
  state.counters["frac_bw"] = mean_rate / probe;
  state.counters["best_frac_bw"] = best_rate / probe;
  state.counters["probe_GB/s"] = probe / 1e9;
}

template <typename Elem>
void BM_PrefillMatmul(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  Operands<Elem> o = MakeOperands<Elem>(M, N, K, /*rotate=*/false);
  if (o.w == nullptr) {
    state.SkipWithError("out of memory");
    return;
  }
  CallMatmul(o, 0, threads);  // warm
  CallTimer timer;
  for (auto _ : state) {
    timer.Time([&] { CallMatmul(o, 0, threads); });
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * M * N * K;
  state.counters["GFLOP/s"] = flops * state.iterations() / timer.total / 1e9;
  state.counters["best_GFLOP/s"] = flops / timer.best / 1e9;
}

// Mamba-130m: in_proj 3072 x 768, out_proj 768 x 1536, lm_head 50280 x 768.
void DecodeArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "threads"});
  for (int64_t M : {1, 16}) {
    for (auto [N, K] :
         {std::pair<int64_t, int64_t>{3072, 768}, {768, 1536}, {50280, 768}}) {
      for (int64_t threads : {1, 2}) b->Args({M, N, K, threads});
    }
  }
}

void PrefillArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "threads"});
  for (auto [N, K] : {std::pair<int64_t, int64_t>{3072, 768}, {768, 1536}}) {
    for (int64_t threads : {1, 2}) b->Args({512, N, K, threads});
  }
}

BENCHMARK(BM_DecodeMatmul<float>)
    ->Name("BM_DecodeMatmulF32")
    ->Apply(DecodeArgs)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeMatmul<uint16_t>)
    ->Name("BM_DecodeMatmulBf16")
    ->Apply(DecodeArgs)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PrefillMatmul<float>)
    ->Name("BM_PrefillMatmulF32")
    ->Apply(PrefillArgs)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PrefillMatmul<uint16_t>)
    ->Name("BM_PrefillMatmulBf16")
    ->Apply(PrefillArgs)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace memmamba::cpu

BENCHMARK_MAIN();
