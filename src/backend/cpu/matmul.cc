// Matrix products of the CPU backend; the contract is in matmul.h.
//
//   y[m, n] (=|+=) sum_{k < K} x[m, k] * W[n, k]      0 <= m < M, 0 <= n < N
//
// Overwrites y[m, 0..N) when accumulate is false, adds to it when true.
//
// Paths (chosen from the shape alone, never from n_threads):
//  * Streaming (M <= 16, decode): W is read once, a block
//    of rows at a time, by register-tiled AVX2 kernels (Tile) that widen
//    bf16 8 values at a time in registers and prefetch W ahead; threads
//    take contiguous slices of N. Each output element's sum has a fixed
//    order (see Tile) that does not depend on the tile's place or shape,
//    so the split of N cannot change a bit.
//  * OpenBLAS (M > 16, through sgemm): a grid of
//    blocks whose sizes depend on the shape alone (MakeGrid); each block is
//    one single-threaded BLAS call and threads take blocks dynamically, so
//    every call, and every bit, is the same whatever the team. bf16 blocks
//    first widen their rows of W (a panel: a block of rows, all of K) into
//    a per-thread fp32 buffer sized to stay in L2.
//    OpenBLAS' own threading is not used: it splits the product by thread
//    count, and calls on different slices round differently near OpenBLAS'
//    register-tile edges (measured: serial sgemm on two 64-aligned halves of
//    N differs in the last bits from one whole call), so n_threads would
//    leak into the bits.
//    fp32 M == 1 once went to sgemv through this grid: it was as fast in
//    isolation, but when the two cores were shared with another job the
//    grid's per-call team turned single decode steps into scheduler-slice
//    waits (measured: 8 ms per 64x768 product); the streaming kernel runs
//    M == 1 with one small team and measured as fast.
//  * AMX (M > 16, where the CPU has AMX-BF16, the OS grants the tile state
//    and MM_CPU_AMX is not "0"): matmul_amx.cc. Activations are split
//    exactly into three bf16 parts and multiplied on the tile unit; with
//    bf16 weights the products are fp32-exact, only the summation order
//    differs; fp32 weights are split too and the part products below
//    2^-24 of each term are left out (the same bound).
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

#if defined(MM_CPU_AMX_MATMUL)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/bf16.h"
#include "backend/cpu/matmul_amx.h"

namespace memmamba::cpu {
namespace {

// M up to which the streaming kernel beats the sgemm grid (measured with
// bench/bench_machine.cc on the 2-core Zen 3 target: at M = 16 it runs at
// 65-75% of the FMA peak, above sgemm's efficiency on such thin products).
// fp32 at M == 1 streams too (see the top of the file for why not sgemv).
constexpr int64_t kStreamMaxMF32 = 16;
constexpr int64_t kStreamMaxMBf16 = 16;

// How far ahead of its reads the streaming kernel prefetches W (see Tile):
// for one row of W at a time (M == 1) and for blocks of rows (M >= 2).
// Prefetches never fault, so running past the end of W is harmless.
// M == 1: 2 KiB measured 2-8 % faster than 1 KiB (and 4 KiB slower) once
// weights sit on huge pages (130m decode, Xeon VM with AMX, 2026-12).
constexpr int kPrefetchBytesRow = 2048;
constexpr int kPrefetchBytesBlock = 3072;

// Below this many weight bytes per thread the fork/join (~1-2 us) costs more
// than a second core brings. A one-token product of 98 KB (the reads' q and
// o at the Mamba-130m shape, bf16, cold in memory) took 8.9 us on one core
// and 6.7-7.3 us on two: each core's stream is still ramping up at this
// size. 32 KiB also split the default configuration's 64 KB products, which
// sit in L3 there, and made its one-session steps ~6 % slower (the same
// VM, 2026-12).
constexpr int64_t kMinStreamBytesPerThread = 48 * 1024;

// The smallest slice of W a thread claims at a time in the streaming kernel
// (ForEachClaimedSlice): a claim is one atomic exchange between the cores.
constexpr int64_t kMinClaimBytes = 32 * 1024;

// Below this many flops per thread an sgemm block is not worth a thread.
constexpr double kMinBlasFlopsPerThread = 4.0e6;

// The sgemm block grid (MakeGrid): about kTargetBlocks blocks so that dynamic
// scheduling balances two or more threads, none narrower than
// kMinBlockRowsN rows of W nor kMinBlockRowsM rows of x.
constexpr int64_t kTargetBlocks = 8;
constexpr int64_t kMinBlockRowsN = 128;
constexpr int64_t kMinBlockRowsM = 64;

// bf16: floats of widened W per thread buffer (the panel), which caps the rows
// of W per block: 384 KiB stays in the 512 KiB L2 of a Zen 3 core between
// the widening and sgemm's packing of it. (Twice that measured the same
// within noise; M = 512 bf16 runs at ~95% of the fp32 grid.)
constexpr int64_t kPanelFloats = 96 * 1024;

constexpr int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

// True when every size of an sgemm call fits OpenBLAS' 32-bit blasint.
bool FitsBlasInt(int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldy) {
  return M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && ldx <= INT_MAX &&
         ldy <= INT_MAX;
}

// Runs body(begin, end) on slices of [0, n) that the members of a team of at
// most `team` threads claim as they go: each claim takes about 1/(2·team) of
// what is left, at least `min_units`, in multiples of `align`. A member that
// streams faster (or woke first) takes more, so the team ends together;
// every slice boundary stays a multiple of `align`.
template <typename Body>
void ForEachClaimedSlice(int64_t n, int64_t align, int64_t min_units, int team,
                         const Body& body) {
  const int64_t units = CeilDiv(n, align);
  team = static_cast<int>(std::clamp<int64_t>(team, 1, units));
  std::atomic<int64_t> next{0};  // the first unit nobody has claimed
#pragma omp parallel num_threads(team)
  {
    const int64_t size = omp_get_num_threads();
    int64_t begin = next.load(std::memory_order_relaxed);
    for (;;) {
      if (begin >= units) break;
      const int64_t take = std::max(min_units, (units - begin) / (2 * size));
      const int64_t end = std::min(units, begin + take);
      if (!next.compare_exchange_weak(begin, end, std::memory_order_relaxed)) continue;
      body(begin * align, std::min(n, end * align));
      begin = next.load(std::memory_order_relaxed);
    }
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

// One register tile: MB rows of x times NB rows of W, accumulated in kSplit
// interleaved 8-lane accumulators per output element (k-chunks of 8
// alternate between them: more independent FMA chains where MB * NB is
// small). After the loop the accumulators are added in order, the lanes
// summed by HorizontalSum, and the K % 8 tail added with scalar FMAs. The
// order depends on (kSplit, K) only, never on the tile's place or shape, and
// kSplit is fixed by M (4 at M == 1, else 1).
//
// With `prefetch`, the tile also prefetches ahead of its block of W (the NB
// rows are contiguous), at the rate it consumes the block: one linear stream
// that runs on into the next block. Demand misses alone cannot stream at the
// DRAM rate (Zen 3 has ~24 L1 miss buffers: 24 lines per ~90 ns is ~17
// GB/s), and the hardware prefetcher follows one sequential stream much
// better than several interleaved ones. Measured at M == 1 against a plain
// AVX2 read of the same bytes (median call): one row at a time with 4
// accumulators and 1 KiB ahead ~85%; 2 rows per tile ~72%; 8 rows ~60%;
// no prefetch at 2 rows ~45%.
template <typename Source, int MB, int NB, int kSplit>
void Tile(const float* x, int64_t ldx, const typename Source::Elem* w,
          int64_t K, float* y, int64_t ldy, bool accumulate, bool prefetch) {
  constexpr int kStep = 8 * kSplit;
  constexpr int kStepBytes =
      NB * kStep * static_cast<int>(sizeof(typename Source::Elem));
  __m256 acc[kSplit][MB][NB];
  for (int s = 0; s < kSplit; ++s) {
    for (int m = 0; m < MB; ++m) {
      for (int n = 0; n < NB; ++n) acc[s][m][n] = _mm256_setzero_ps();
    }
  }
  const char* ahead = reinterpret_cast<const char*>(w) +
                      (NB == 1 ? kPrefetchBytesRow : kPrefetchBytesBlock);
  int64_t k = 0;
  for (; k + kStep <= K; k += kStep) {
    if (prefetch) {
      for (int b = 0; b < kStepBytes; b += 64) {
        _mm_prefetch(ahead + b, _MM_HINT_T0);
      }
      ahead += kStepBytes;
    }
    for (int s = 0; s < kSplit; ++s) {
      __m256 xv[MB];
      for (int m = 0; m < MB; ++m) {
        xv[m] = _mm256_loadu_ps(x + m * ldx + k + 8 * s);
      }
      for (int n = 0; n < NB; ++n) {
        const __m256 wv = Source::Load8(w + n * K + k + 8 * s);
        for (int m = 0; m < MB; ++m) {
          acc[s][m][n] = _mm256_fmadd_ps(wv, xv[m], acc[s][m][n]);
        }
      }
    }
  }
  if constexpr (kSplit > 1) {
    for (; k + 8 <= K; k += 8) {
      for (int n = 0; n < NB; ++n) {
        const __m256 wv = Source::Load8(w + n * K + k);
        for (int m = 0; m < MB; ++m) {
          acc[0][m][n] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + m * ldx + k),
                                         acc[0][m][n]);
        }
      }
    }
  }
  for (int m = 0; m < MB; ++m) {
    for (int n = 0; n < NB; ++n) {
      __m256 v = acc[0][m][n];
      for (int s = 1; s < kSplit; ++s) v = _mm256_add_ps(v, acc[s][m][n]);
      float sum = HorizontalSum(v);
      for (int64_t t = k; t < K; ++t) {
        sum = std::fma(x[m * ldx + t], Source::Load1(w + n * K + t), sum);
      }
      float* out = y + m * ldy + n;
      *out = accumulate ? *out + sum : sum;
    }
  }
}

template <typename Source>
using TileFn = void (*)(const float*, int64_t, const typename Source::Elem*,
                        int64_t, float*, int64_t, bool, bool);

// M == 1: one row of W at a time (a single sequential stream), four
// accumulators: 4 FMA chains, enough to keep up with the memory.
constexpr int kRowSplit = 4;

// M >= 2: tiles of up to 3 x 4, one accumulator per output. 3 x 4 needs
// 7 loads per 12 FMAs and exactly the 16 ymm registers.
constexpr int kMaxTileM = 3;
constexpr int kMaxTileN = 4;

template <typename Source, int MB, size_t... I>
constexpr std::array<TileFn<Source>, kMaxTileN> TileRow(
    std::index_sequence<I...>) {
  return {{&Tile<Source, MB, static_cast<int>(I) + 1, 1>...}};
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
// also the fallback when a buffer cannot be allocated), meant for M <= 16.
// For M > 3 the block of W read by the first x block is still in L1 for
// the others.
template <typename Source>
void StreamRows(const float* x, int64_t M, int64_t K, int64_t ldx,
                const typename Source::Elem* w, int64_t n_begin, int64_t n_end,
                float* y, int64_t ldy, bool accumulate) {
  if (M == 1) {
    for (int64_t n = n_begin; n < n_end; ++n) {
      Tile<Source, 1, 1, kRowSplit>(x, ldx, w + n * K, K, y + n, ldy,
                                    accumulate, /*prefetch=*/true);
    }
    return;
  }
  const int64_t m_blocks = CeilDiv(M, kMaxTileM);
  for (int64_t n = n_begin; n < n_end; n += kMaxTileN) {
    const int nb = static_cast<int>(std::min<int64_t>(kMaxTileN, n_end - n));
    int64_t m = 0;
    for (int64_t b = 0; b < m_blocks; ++b) {
      // Balanced blocks (16 = 3+3+3+3+2+2) keep tiles as wide as possible.
      const int mb = static_cast<int>(M / m_blocks + (b < M % m_blocks));
      GetTile<Source>(mb, nb)(x + m * ldx, ldx, w + n * K, K, y + m * ldy + n,
                              ldy, accumulate, /*prefetch=*/b == 0);
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
                const typename Source::Elem* w, int64_t n_begin, int64_t n_end,
                float* y, int64_t ldy, bool accumulate) {
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
  const int team = static_cast<int>(
      std::clamp<int64_t>(bytes / kMinStreamBytesPerThread, 1, n_threads));
  if (team == 1) {
    StreamRows<Source>(x, M, K, ldx, w, 0, N, y, ldy, accumulate);
    return;
  }
  // Each row's sums do not depend on where a slice starts (Tile), so slices
  // are claimed as the threads go: in a one-token step the two cores do not
  // stream W equally fast, and equal halves left the faster one waiting.
  const int64_t min_units = std::max<int64_t>(
      1, kMinClaimBytes / (16 * K * static_cast<int64_t>(sizeof(typename Source::Elem))));
  ForEachClaimedSlice(N, /*align=*/16, min_units, team, [&](int64_t begin, int64_t end) {
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

// y[0, 0..N) = x[0, :] W^T (+ y): a row, single-threaded.
void Sgemv(const float* x, int64_t K, const float* w, int64_t N, float* y,
           float beta) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N),
              static_cast<int>(K), 1.0f, w, static_cast<int>(K), x, 1, beta, y,
              1);
}

// The calling thread's buffer for widened bf16 panels, grown only (so that
// a forward whose shapes were reserved allocates nothing): at least
// `floats` floats, or NULL when they cannot be had.
float* WidenPanels(size_t floats) {
  thread_local std::unique_ptr<float[]> buffer;
  thread_local size_t size = 0;
  if (size < floats) {
    std::unique_ptr<float[]> grown(new (std::nothrow) float[floats]);
    if (grown == nullptr) return nullptr;
    buffer = std::move(grown);
    size = floats;
  }
  return buffer.get();
}

// Runs the grid (blocks of one row of x go through sgemv). For bf16 each
// thread widens the W rows of its current block into its own buffer, reused
// while consecutive blocks share those rows. Returns false, having written
// nothing, when that buffer cannot be had.
template <typename Elem>
bool GridSgemm(const float* x, int64_t M, int64_t K, int64_t ldx, const Elem* w,
               int64_t N, float* y, int64_t ldy, bool accumulate,
               int n_threads) {
  constexpr bool kWiden = std::is_same_v<Elem, uint16_t>;
  const float beta = accumulate ? 1.0f : 0.0f;
  const BlockGrid g = MakeGrid(
      M, N, kWiden ? std::max<int64_t>(16, kPanelFloats / K / 16 * 16) : N);
  const int64_t blocks = g.n_blocks * g.m_blocks;
  // A thread must have enough work to pay for itself: flops for products,
  // bytes of W for a matrix-vector product (M == 1, memory-bound).
  const double per_thread = M == 1 ? static_cast<double>(N * K) * sizeof(Elem) /
                                         kMinStreamBytesPerThread
                                   : 2.0 * M * N * K / kMinBlasFlopsPerThread;
  int team = static_cast<int>(std::min<double>({static_cast<double>(n_threads),
                                                static_cast<double>(blocks),
                                                std::max(1.0, per_thread)}));
  float* buffer = nullptr;
  if constexpr (kWiden) {
    const size_t panel = static_cast<size_t>(g.n_rows * K);
    buffer = WidenPanels(team * panel);
    if (buffer == nullptr && team > 1) {
      // One buffer gives the same bits; only its failure changes the path,
      // and then for every n_threads alike.
      team = 1;
      buffer = WidenPanels(panel);
    }
    if (buffer == nullptr) return false;
  }
#pragma omp parallel num_threads(team)
  {
    // Task-local ICV (see the top of the file): OpenBLAS stays serial here.
    omp_set_num_threads(1);
    float* panel = nullptr;
    if constexpr (kWiden) {
      panel = buffer + omp_get_thread_num() * g.n_rows * K;
    }
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
      if (mr == 1) {
        Sgemv(x + m0 * ldx, K, wf, nr, y + m0 * ldy + n0, beta);
      } else {
        Sgemm(x + m0 * ldx, mr, K, ldx, wf, nr, y + m0 * ldy + n0, ldy, beta);
      }
    }
  }
  return true;
}

// Whether the CPU and the OS allow matmul_amx.cc's instructions: AMX-TILE,
// AMX-BF16, AVX-512F and AVX-512BW (cpuid), their register state enabled by
// the OS (XCR0), and the tile data granted to this process (Linux asks each
// process to request it: its signal frames grow by 8 KiB).
bool DetectAmxBf16() {
#if defined(MM_CPU_AMX_MATMUL)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & (1u << 27)) == 0) {
    return false;  // no OSXSAVE: XCR0 cannot be read
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const bool avx512f = (b >> 16) & 1u, avx512bw = (b >> 30) & 1u;
  const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
  if (!(avx512f && avx512bw && amx_bf16 && amx_tile)) return false;
  uint32_t xcr0_lo = 0, xcr0_hi = 0;
  asm volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  // SSE, AVX, the three AVX-512 components, XTILECFG and XTILEDATA.
  constexpr uint64_t kNeeded = 0x2u | 0x4u | 0xe0u | (1u << 17) | (1u << 18);
  const uint64_t xcr0 = (static_cast<uint64_t>(xcr0_hi) << 32) | xcr0_lo;
  if ((xcr0 & kNeeded) != kNeeded) return false;
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;  // not built
#endif
}

// Set by SetAmxBf16ForTesting.
std::atomic<bool> amx_off_for_testing{false};

// The empty sum: y = 0, or y unchanged when accumulating.
void EmptyProduct(int64_t M, int64_t N, float* y, int64_t ldy,
                  bool accumulate) {
  if (accumulate) return;
  for (int64_t m = 0; m < M; ++m) {
    std::fill(y + m * ldy, y + m * ldy + N, 0.0f);
  }
}

}  // namespace

bool AmxBf16Supported() {
  static const bool supported = DetectAmxBf16();
  return supported;
}

bool AmxBf16Enabled() {
  // The switch is read before the detection so that MM_CPU_AMX=0 also
  // leaves the process' tile permission alone.
  static const bool enabled = [] {
    const char* env = std::getenv("MM_CPU_AMX");
    if (env != nullptr && std::strcmp(env, "0") == 0) return false;
    return AmxBf16Supported();
  }();
  return enabled && !amx_off_for_testing.load(std::memory_order_relaxed);
}

void SetAmxBf16ForTesting(bool enabled) {
  amx_off_for_testing.store(!enabled, std::memory_order_relaxed);
}

#if !defined(MM_CPU_AMX_MATMUL)
bool MatmulBf16Amx(const float*, int64_t, int64_t, int64_t, const uint16_t*,
                   int64_t, float*, int64_t, bool, int) {
  return false;  // not built: AmxBf16Supported() is false
}

bool MatmulF32Amx(const float*, int64_t, int64_t, int64_t, const float*,
                  int64_t, float*, int64_t, bool, int) {
  return false;
}
#endif

void MatmulF32(const float* x, int64_t M, int64_t K, int64_t ldx,
               const float* w, int64_t N, float* y, int64_t ldy,
               bool accumulate, int n_threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    EmptyProduct(M, N, y, ldy, accumulate);
    return;
  }
  n_threads = std::max(n_threads, 1);
  if (M > kStreamMaxMF32 && AmxBf16Enabled() &&
      MatmulF32Amx(x, M, K, ldx, w, N, y, ldy, accumulate, n_threads)) {
    return;
  }
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
  if (M > kStreamMaxMBf16 && AmxBf16Enabled() &&
      MatmulBf16Amx(x, M, K, ldx, w_bf16, N, y, ldy, accumulate, n_threads)) {
    return;
  }
  if (M > kStreamMaxMBf16 && FitsBlasInt(M, N, K, ldx, ldy) &&
      GridSgemm(x, M, K, ldx, w_bf16, N, y, ldy, accumulate, n_threads)) {
    return;
  }
  StreamParallel<Bf16Source>(x, M, K, ldx, w_bf16, N, y, ldy, accumulate,
                             n_threads);
}

void ReserveBf16Products(int64_t max_k, int n_threads) {
  // A block row of the grid holds max(16, kPanelFloats / K / 16 * 16) rows.
  const int64_t rows = std::max<int64_t>(16, kPanelFloats / std::max<int64_t>(max_k, 1) / 16 * 16);
  WidenPanels(static_cast<size_t>(std::max(n_threads, 1)) *
              static_cast<size_t>(std::max(rows * max_k, kPanelFloats)));
}

void Gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
          int64_t ldc, bool accumulate, int n_threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    EmptyProduct(M, N, C, ldc, accumulate);
    return;
  }
  const float beta = accumulate ? 1.0f : 0.0f;
  // The grid: the wider output dimension is cut first, as in MakeGrid.
  const BlockGrid g = MakeGrid(M, N, N);
  const int64_t blocks = g.n_blocks * g.m_blocks;
  const int team = static_cast<int>(std::min<double>(
      {static_cast<double>(std::max(n_threads, 1)), static_cast<double>(blocks),
       std::max(1.0, 2.0 * M * N * K / kMinBlasFlopsPerThread)}));
#pragma omp parallel num_threads(team)
  {
    omp_set_num_threads(1);  // OpenBLAS serial in each member (see the top)
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < blocks; ++i) {
      const int64_t p = i / g.m_blocks, b = i % g.m_blocks;
      const int64_t n0 = p * g.n_rows, nr = std::min(g.n_rows, N - n0);
      const int64_t m0 = b * g.m_rows, mr = std::min(g.m_rows, M - m0);
      const float* a = trans_a ? A + m0 : A + m0 * lda;
      const float* bb = trans_b ? B + n0 * ldb : B + n0;
      cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                  trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(mr),
                  static_cast<int>(nr), static_cast<int>(K), 1.0f, a,
                  static_cast<int>(lda), bb, static_cast<int>(ldb), beta,
                  C + m0 * ldc + n0, static_cast<int>(ldc));
    }
  }
}

}  // namespace memmamba::cpu
