// Matrix products of the CPU backend; the contract is in matmul.h.
//
//   y[m, n] (=|+=) sum_{k < K} x[m, k] * W[n, k]      0 <= m < M, 0 <= n < N
//
// Overwrites y[m, 0..N) when accumulate is false, adds to it when true.
//
// Paths (chosen from the shape alone, never from n_threads):
//  * Streaming (small M, decode): W is read once, row block by row block, by
//    a register-tiled AVX2 kernel (Tile); bf16 rows are widened 8 values at a
//    time in registers. Each output element owns one 8-lane accumulator:
//    lane j sums x[m, k] * W[n, k] for k = 8i + j in increasing i with FMA,
//    the lanes are added in a fixed tree (HorizontalSum), then the K % 8 tail
//    follows with scalar FMAs. That order is the same for every tile shape,
//    so splitting N between threads cannot change a single bit.
//  * Large M (prefill, training): OpenBLAS sgemm on a grid of blocks whose
//    sizes depend on the shape alone (MakeGrid); each block is one
//    single-threaded sgemm call and threads take blocks dynamically, so
//    every call, and every bit, is the same whatever the team. bf16 blocks
//    first widen their rows of W (a panel: a block of rows, all of K) into
//    a per-thread fp32 buffer sized to stay in L2.
//    OpenBLAS' own threading is not used: its threaded driver blocks K
//    differently from the serial one, and even serial calls on different
//    slices of N round differently near OpenBLAS' register-tile edges, so
//    a split that followed n_threads would leak into the bits (measured).
//
// The caller's OpenMP ICVs are never touched: team members call
// omp_set_num_threads(1) inside our parallel region, which only changes
// their own implicit task's ICV, so OpenBLAS (OpenMP build, which reads
// omp_get_max_threads() and stays serial inside an active region anyway)
// runs single-threaded in every member, also in a team of one.
#include "backend/cpu/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "backend/cpu/bf16.h"

namespace memmamba::cpu {
namespace {

// M up to which the streaming kernel beats sgemm (measured with
// bench/bench_machine.cc on a 2-core Zen 3; see the PR notes). For fp32 the
// streaming kernel also beats sgemv at M == 1 because it has no per-call
// setup and reaches the read bandwidth; sgemv gives the same bandwidth.
constexpr int64_t kStreamMaxMF32 = 8;
constexpr int64_t kStreamMaxMBf16 = 16;

// Below this many weight bytes per thread the fork/join (~1-2 us) costs more
// than the extra bandwidth of a second core brings.
constexpr int64_t kMinStreamBytesPerThread = 64 * 1024;

// Below this many flops per thread an sgemm block is not worth a thread.
constexpr double kMinBlasFlopsPerThread = 4.0e6;

// The sgemm block grid (MakeGrid): about kTargetBlocks blocks so that dynamic
// scheduling balances two or more threads, none narrower than
// kMinBlockRowsN rows of W nor kMinBlockRowsM rows of x.
constexpr int64_t kTargetBlocks = 8;
constexpr int64_t kMinBlockRowsN = 128;
constexpr int64_t kMinBlockRowsM = 64;

// bf16: floats of widened W per thread buffer (the panel), which caps the rows
// of W per block. Sized to stay in the 512 KiB L2 of a Zen 3 core beside
// sgemm's own packed blocks.
constexpr int64_t kPanelFloats = 96 * 1024;

constexpr int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

// True when every size of an sgemm call fits OpenBLAS' 32-bit blasint.
bool FitsBlasInt(int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldy) {
  return M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && ldx <= INT_MAX &&
         ldy <= INT_MAX;
}

// Runs body(begin, end) on contiguous slices of [0, n) whose boundaries are
// multiples of `align`, one slice per member of an OpenMP team of at most
// `team` threads (fewer when nested inside an active region).
template <typename Body>
void ForEachSlice(int64_t n, int64_t align, int team, const Body& body) {
  const int64_t units = CeilDiv(n, align);
  team = static_cast<int>(std::clamp<int64_t>(team, 1, units));
#pragma omp parallel num_threads(team)
  {
    const int64_t size = omp_get_num_threads();
    const int64_t rank = omp_get_thread_num();
    const int64_t begin = std::min(n, units * rank / size * align);
    const int64_t end = std::min(n, units * (rank + 1) / size * align);
    if (begin < end) body(begin, end);
  }
}

// ---------------------------------------------------------------------------
// Streaming kernel.

#if defined(__AVX2__)

struct F32Source {
  using Elem = float;
  static __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
  static float Load1(const float* p) { return *p; }
};

struct Bf16Source {
  using Elem = uint16_t;
  // Zero-extend 8 bf16 to 32 bits and shift them into the high half.
  static __m256 Load8(const uint16_t* p) {
    const __m256i h = _mm256_cvtepu16_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  static float Load1(const uint16_t* p) { return Bf16ToF32(*p); }
};

// Fixed reduction tree: (l0+l4, l1+l5, l2+l6, l3+l7), then pairs, then one.
inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// One register tile: MB rows of x times NB rows of W. MB * NB accumulators
// plus MB x vectors plus one W vector fit the 16 ymm registers for the
// shapes used (1x8, 2x6, 3x4).
template <typename Source, int MB, int NB>
void Tile(const float* x, int64_t ldx, const typename Source::Elem* w,
          int64_t K, float* y, int64_t ldy, bool accumulate,
          const char* prefetch) {
  __m256 acc[MB][NB];
  for (int m = 0; m < MB; ++m) {
    for (int n = 0; n < NB; ++n) acc[m][n] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
#ifdef MM_PREFETCH
    if (prefetch != nullptr) {
      constexpr int kBytes = NB * 8 * sizeof(typename Source::Elem);
      for (int b = 0; b < kBytes; b += 64) _mm_prefetch(prefetch + b, MM_PREFETCH);
      prefetch += kBytes;
    }
#endif
    __m256 xv[MB];
    for (int m = 0; m < MB; ++m) xv[m] = _mm256_loadu_ps(x + m * ldx + k);
    for (int n = 0; n < NB; ++n) {
      const __m256 wv = Source::Load8(w + n * K + k);
      for (int m = 0; m < MB; ++m) {
        acc[m][n] = _mm256_fmadd_ps(wv, xv[m], acc[m][n]);
      }
    }
  }
  for (int m = 0; m < MB; ++m) {
    for (int n = 0; n < NB; ++n) {
      float s = HorizontalSum(acc[m][n]);
      for (int64_t t = k; t < K; ++t) {
        s = std::fma(x[m * ldx + t], Source::Load1(w + n * K + t), s);
      }
      float* out = y + m * ldy + n;
      *out = accumulate ? *out + s : s;
    }
  }
}

constexpr int kMaxTileM = 3;
constexpr int kMaxTileN = 8;

template <typename Source>
using TileFn = void (*)(const float*, int64_t, const typename Source::Elem*,
                        int64_t, float*, int64_t, bool, const char*);

template <typename Source, int MB, size_t... I>
constexpr std::array<TileFn<Source>, kMaxTileN> TileRow(
    std::index_sequence<I...>) {
  return {{&Tile<Source, MB, static_cast<int>(I) + 1>...}};
}

template <typename Source>
TileFn<Source> GetTile(int mb, int nb) {
  static constexpr std::array<std::array<TileFn<Source>, kMaxTileN>, kMaxTileM>
      kTable = {{TileRow<Source, 1>(std::make_index_sequence<kMaxTileN>()),
                 TileRow<Source, 2>(std::make_index_sequence<kMaxTileN>()),
                 TileRow<Source, 3>(std::make_index_sequence<kMaxTileN>())}};
  return kTable[mb - 1][nb - 1];
}

// Rows n_begin..n_end of W against all M rows of x. Works for any M (it is
// also the fallback when a buffer cannot be allocated), fastest for M <= 16.
template <typename Source>
void StreamRows(const float* x, int64_t M, int64_t K, int64_t ldx,
                const typename Source::Elem* w, int64_t n_begin,
                int64_t n_end, float* y, int64_t ldy, bool accumulate) {
  // Rows of W per block: 8 independent FMA chains at M == 1 hide the FMA
  // latency; for M >= 3 a 3x4 tile needs 7 loads per 12 FMAs.
  const int nb_max = M == 1 ? 8 : (M == 2 ? 6 : 4);
  const int64_t m_blocks = CeilDiv(M, kMaxTileM);
  for (int64_t n = n_begin; n < n_end; n += nb_max) {
    const int nb = static_cast<int>(std::min<int64_t>(nb_max, n_end - n));
    int64_t m = 0;
    for (int64_t b = 0; b < m_blocks; ++b) {
      // Balanced blocks (16 = 3+3+3+3+2+2) keep tiles as wide as possible.
      const int mb = static_cast<int>(M / m_blocks + (b < M % m_blocks));
      GetTile<Source>(mb, nb)(
          x + m * ldx, ldx, w + n * K, K, y + m * ldy + n, ldy, accumulate,
          b == 0 ? reinterpret_cast<const char*>(w + (n + nb) * K) : nullptr);
      m += mb;
    }
  }
}

#else  // !defined(__AVX2__): portable scalar path, same math, same contract.

struct F32Source {
  using Elem = float;
  static float Load1(const float* p) { return *p; }
};

struct Bf16Source {
  using Elem = uint16_t;
  static float Load1(const uint16_t* p) { return Bf16ToF32(*p); }
};

template <typename Source>
void StreamRows(const float* x, int64_t M, int64_t K, int64_t ldx,
                const typename Source::Elem* w, int64_t n_begin,
                int64_t n_end, float* y, int64_t ldy, bool accumulate) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    const typename Source::Elem* row = w + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = x + m * ldx;
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += xm[k] * Source::Load1(row + k);
      float* out = y + m * ldy + n;
      *out = accumulate ? *out + s : s;
    }
  }
}

#endif  // defined(__AVX2__)

template <typename Source>
void StreamParallel(const float* x, int64_t M, int64_t K, int64_t ldx,
                    const typename Source::Elem* w, int64_t N, float* y,
                    int64_t ldy, bool accumulate, int n_threads) {
  const int64_t bytes =
      N * K * static_cast<int64_t>(sizeof(typename Source::Elem));
  const int team = static_cast<int>(std::clamp<int64_t>(
      bytes / kMinStreamBytesPerThread, 1, n_threads));
  if (team == 1) {
    StreamRows<Source>(x, M, K, ldx, w, 0, N, y, ldy, accumulate);
    return;
  }
  ForEachSlice(N, /*align=*/16, team, [&](int64_t begin, int64_t end) {
    StreamRows<Source>(x, M, K, ldx, w, begin, end, y, ldy, accumulate);
  });
}

// ---------------------------------------------------------------------------
// OpenBLAS paths.
//
// The product is cut into a grid of blocks (rows of W x rows of x) whose sizes
// depend on the shape alone; each block is one single-threaded sgemm call and
// threads take blocks dynamically. OpenBLAS' reduction order for an element
// depends on where the element falls in the register tiling of its call (its
// edge kernels sum differently), and that tiling depends on the call's sizes;
// with a fixed grid every call is the same whatever the team, so the bits are.
// (Aligned slices per thread were tried and differ in the last bits.)

struct BlockGrid {
  int64_t n_rows, n_blocks;  // rows of W (columns of y) per block
  int64_t m_rows, m_blocks;  // rows of x (rows of y) per block
};

// max_n_rows caps the rows of W per block (the bf16 panel buffer).
BlockGrid MakeGrid(int64_t M, int64_t N, int64_t max_n_rows) {
  BlockGrid g;
  // Each block repacks its part of x (m_rows * K floats) for
  // 2 * m_rows * n_rows * K flops: blocks should be wide in N.
  g.n_rows = std::max(kMinBlockRowsN, RoundUp(CeilDiv(N, kTargetBlocks), 16));
  g.n_rows = std::min({g.n_rows, max_n_rows, N});
  g.n_blocks = CeilDiv(N, g.n_rows);
  // Too few blocks to share between threads: cut M as well (each M block
  // repacks its block of W, so only when N is narrow).
  g.m_blocks = 1;
  if (g.n_blocks < kTargetBlocks) {
    g.m_blocks = std::clamp<int64_t>(CeilDiv(kTargetBlocks, g.n_blocks), 1,
                                     CeilDiv(M, kMinBlockRowsM));
  }
  g.m_rows = RoundUp(CeilDiv(M, g.m_blocks), 16);
  g.m_rows = std::min(g.m_rows, M);
  g.m_blocks = CeilDiv(M, g.m_rows);
  return g;
}

// y[m0.., n0..] = x[rows] W[rows]^T (+ y): a block, single-threaded.
void Sgemm(const float* x, int64_t M, int64_t K, int64_t ldx, const float* w,
           int64_t N, float* y, int64_t ldy, float beta) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0f, x,
              static_cast<int>(ldx), w, static_cast<int>(K), beta, y,
              static_cast<int>(ldy));
}

// Runs the grid. For bf16 each thread widens the W rows of its current block
// into its own buffer (reused while consecutive blocks share those rows).
// Returns false, having written nothing, when that buffer cannot be had.
template <typename Elem>
bool GridSgemm(const float* x, int64_t M, int64_t K, int64_t ldx,
               const Elem* w, int64_t N, float* y, int64_t ldy,
               bool accumulate, int n_threads) {
  constexpr bool kWiden = std::is_same_v<Elem, uint16_t>;
  const float beta = accumulate ? 1.0f : 0.0f;
  const BlockGrid g = MakeGrid(
      M, N,
      kWiden ? std::max<int64_t>(16, kPanelFloats / K / 16 * 16) : N);
  const int64_t blocks = g.n_blocks * g.m_blocks;
  const double flops = 2.0 * M * N * K;
  int team = static_cast<int>(std::min<double>(
      {static_cast<double>(n_threads), static_cast<double>(blocks),
       std::max(1.0, flops / kMinBlasFlopsPerThread)}));
  std::unique_ptr<float[]> buffer;
  if constexpr (kWiden) {
    const size_t panel = static_cast<size_t>(g.n_rows * K);
    buffer.reset(new (std::nothrow) float[team * panel]);
    if (buffer == nullptr && team > 1) {
      // One buffer gives the same bits; only its failure changes the path,
      // and then for every n_threads alike.
      team = 1;
      buffer.reset(new (std::nothrow) float[panel]);
    }
    if (buffer == nullptr) return false;
  }
#pragma omp parallel num_threads(team)
  {
    // Task-local ICV (see the top of the file): OpenBLAS stays serial here.
    omp_set_num_threads(1);
    float* panel = nullptr;
    if constexpr (kWiden) panel = buffer.get() + omp_get_thread_num() * g.n_rows * K;
    int64_t widened = -1;  // the block row held in panel
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < blocks; ++i) {
      const int64_t p = i / g.m_blocks, b = i % g.m_blocks;
      const int64_t n0 = p * g.n_rows, nr = std::min(g.n_rows, N - n0);
      const int64_t m0 = b * g.m_rows, mr = std::min(g.m_rows, M - m0);
      const float* wf = nullptr;
      if constexpr (kWiden) {
        if (widened != p) {
          ConvertBf16ToF32(w + n0 * K, panel, static_cast<size_t>(nr * K));
          widened = p;
        }
        wf = panel;
      } else {
        wf = w + n0 * K;
      }
      Sgemm(x + m0 * ldx, mr, K, ldx, wf, nr, y + m0 * ldy + n0, ldy, beta);
    }
  }
  return true;
}

// The empty sum: y = 0, or y unchanged when accumulating.
void EmptyProduct(int64_t M, int64_t N, float* y, int64_t ldy,
                  bool accumulate) {
  if (accumulate) return;
  for (int64_t m = 0; m < M; ++m) std::fill(y + m * ldy, y + m * ldy + N, 0.0f);
}

}  // namespace

void MatmulF32(const float* x, int64_t M, int64_t K, int64_t ldx,
               const float* w, int64_t N, float* y, int64_t ldy,
               bool accumulate, int n_threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    EmptyProduct(M, N, y, ldy, accumulate);
    return;
  }
  n_threads = std::max(n_threads, 1);
  if (M <= kStreamMaxMF32 || !FitsBlasInt(M, N, K, ldx, ldy)) {
    StreamParallel<F32Source>(x, M, K, ldx, w, N, y, ldy, accumulate,
                              n_threads);
    return;
  }
  if (!GridSgemm(x, M, K, ldx, w, N, y, ldy, accumulate, n_threads)) {
    // Unreachable: fp32 needs no buffer.
    StreamParallel<F32Source>(x, M, K, ldx, w, N, y, ldy, accumulate,
                              n_threads);
  }
}

void MatmulBf16(const float* x, int64_t M, int64_t K, int64_t ldx,
                const uint16_t* w_bf16, int64_t N, float* y, int64_t ldy,
                bool accumulate, int n_threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    EmptyProduct(M, N, y, ldy, accumulate);
    return;
  }
  n_threads = std::max(n_threads, 1);
  if (M > kStreamMaxMBf16 && FitsBlasInt(M, N, K, ldx, ldy) &&
      GridSgemm(x, M, K, ldx, w_bf16, N, y, ldy, accumulate, n_threads)) {
    return;
  }
  StreamParallel<Bf16Source>(x, M, K, ldx, w_bf16, N, y, ldy, accumulate,
                             n_threads);
}

}  // namespace memmamba::cpu
