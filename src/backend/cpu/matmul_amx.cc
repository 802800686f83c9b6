// The AMX path of the products with bf16 and fp32 weights (DESIGN.md section 3;
// matmul_amx.h, contract in matmul.h):
//
//   y[m, n] (=|+=) sum_{k < K} x[m, k] * W[n, k]      0 <= m < M, 0 <= n < N
//
// Overwrites y[m, 0..N) when accumulate is false, adds to it when true.
//
// The tile unit multiplies bf16 by bf16 only, so each fp32 activation is split
// exactly into three bf16 parts (round to nearest even at each step):
//   hi = bf16(x),  mid = bf16(x - hi),  lo = bf16(x - hi - mid),
//   x  = hi + mid + lo  exactly.
// (x has 24 significant bits; x - hi is exact in fp32 and holds at most 16 of
// them, x - hi - mid at most 8, so lo loses nothing.) With x in
// [2^e, 2^(e+1)): |mid| <= 2^(e-8) and |lo| <= 2^(e-17) (lo is 0 when
// |x - hi| = 2^(e-8)), so |mid| <= 2^-8 |x| and |lo| <= 2^-17 |x|. Every
// bf16 x bf16 product is exact in fp32 (8 x 8 significant bits).
//
// bf16 weights (one part, W itself):
//   y = sum_k hi_k W_k  +  sum_k (mid_k W_k + lo_k W_k)
// is the fp32 product with only the summation order changed: 3 products a
// tile pair.
// fp32 weights: W is split the same way, W = Wh + Wm + Wl, and of the nine
// part products the six of order <= 2 are kept:
//   y = sum_k hi Wh  +  sum_k (lo Wh + mid Wh + hi Wm + mid Wm + hi Wl);
// the three dropped ones are at most (2^-25 + 2^-25 + 2^-34) |x W|, that is
// (1 + 2^-10) 2^-24 |x W| together: one unit of fp32 rounding per term.
//
// In both, the hi products go to one fp32 tile and the others (each at most
// 2^-8 (1 + 2^-8) of |x W|) to a second, and at the end
//   y = (hi tile + second tile) (+ y before).
// Error: TDPBF16PS sums the 32 products of an instruction in two lanes (even
// and odd k, 16 products each, in order, rounding at each add), adds the two
// lanes and then the tile (measured with values below half an ulp of the
// running sum; the SDM leaves the order to the implementation). A hi product
// therefore goes through at most 15 + 1 roundings in its instruction
// (ceil(K / 2) - 1 + 1 when K <= 32) and one per later 32 values of k; the
// second tile's roundings are 2^-7 times smaller; the last two adds round once
// each, and for fp32 weights the dropped products add one more unit. For
// every K that stays within the header's bound
// (K + 3) * 2^-24 * (sum_k |x W| + |y before|), which the tests check
// against float64, down to K = 1 (hi product exact, 3 units and a fraction).
// Limits of exactness: the tile unit treats subnormal inputs as zero and
// flushes subnormal results, so parts or products below 2^-126 are lost
// (values below ~2^-110 lose their lo part, fp32 weights below 2^-126
// count as zero). A finite value beyond the largest bf16 keeps its
// truncation as hi (rounding would give Inf); a non-finite value has hi = x
// and zero mid and lo parts, so NaN propagates, and so does Inf with bf16
// weights; with fp32 weights an Inf meets the other operand's parts, and
// where one of them is zero (any value exact in bf16) 0 * Inf gives NaN
// where fp32 gives Inf: the result is still not finite.
//
// Layout. A tile holds 16 rows of 64 bytes. An A tile is 16 rows of x, 32
// values of k (one part); a B tile is W (one part) in the VNNI layout: tile
// row r holds the pairs (W[n][2r], W[n][2r+1]) of 16 consecutive n; an output
// tile is 16 x 16 fp32. x is packed once per call, all rows, into its three
// parts, one 1 KiB tile after the other in the order (16-row tile, k chunk,
// part); W is packed per block of rows (a panel) into a per-thread buffer,
// in the order (16-row tile, k chunk, part): one part for bf16, three for
// fp32, split as it is packed. (Packing fp32 W takes 14-16 % of the product
// at M = 512 by perf, mostly the split; keeping packed planes between calls
// would need a cache tied to the weights' lifetime, and is not done.) M, N
// and K are padded with zeros to multiples of 16, 16 and 32; padded rows are
// never written back.
//
// Determinism: every output element is summed in the same order (k chunks
// ascending, within a chunk the products in the order of TileRow, hi tile
// then second tile) whatever block or thread computes it, so the bits depend
// neither on n_threads nor on the block grid. The grid (panels of W times
// blocks of rows of x, sizes from the shape) only shares the work out,
// dynamically, as the sgemm path's grid does.
//
// This file is compiled with AMX-TILE, AMX-BF16, AVX-512F and AVX-512BW
// (CMakeLists.txt) and is entered only where matmul.cc found them usable; it
// defines nothing with external linkage but MatmulBf16Amx and MatmulF32Amx,
// so no inline function compiled with those instructions can stand in for a
// baseline one.
#include "backend/cpu/matmul_amx.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512F__) && \
    defined(__AVX512BW__)

#include <immintrin.h>
#include <omp.h>

#include <cstdlib>

namespace memmamba::cpu {
namespace {

constexpr int64_t kTileRows = 16;   // rows of x or W per tile
constexpr int64_t kChunk = 32;      // values of k per tile
constexpr int64_t kTileElems = 512; // bf16 per A or B tile (1 KiB)
constexpr int64_t kParts = 3;       // hi, mid, lo of x (and of fp32 W)
constexpr int kRowBytes = 64;       // every tile row, every tile

// The grid: about kTargetBlocks blocks so that two or more threads balance;
// panels of at least kMinPanelRows rows of W (a multiple of two tiles) and at
// most kPanelBytes of packed W (it is read once per 16 rows of x: it should
// stay in L2); blocks of at least kMinBlockRowsM rows of x.
constexpr int64_t kTargetBlocks = 8;
constexpr int64_t kMinPanelRows = 64;
constexpr int64_t kPanelBytes = 256 * 1024;
constexpr int64_t kMinBlockRowsM = 64;

// Chunks of k (32 values each) per block of K: the x tiles of a block
// (3 KiB a chunk) stay in L1 for all the pairs of W tiles of a panel.
// Measured at M = 512 (one thread, bench_machine): 4 chunks and 8 run the
// 3072 x 768 product alike (~430 GFLOP/s), 768 x 1536 at ~375 and ~310;
// without blocks, ~345 and ~330.
constexpr int64_t kBlockChunks = 4;

// Below this many flops per thread a block is not worth a thread.
constexpr double kMinFlopsPerThread = 4.0e6;

// The parts W is packed into: bf16 is one already, fp32 splits into three.
template <typename Elem>
constexpr int64_t kWParts = sizeof(Elem) == 2 ? 1 : kParts;

// The gather that packs W takes 32-bit byte offsets of 16 rows.
template <typename Elem>
constexpr int64_t kMaxGatherK = (int64_t{1} << 31) / (16 * sizeof(Elem));

// Local helpers rather than std:: templates: this file's instructions must
// not end up in a function the rest of the library shares (see the top).
int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }
int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t Max(int64_t a, int64_t b) { return a > b ? a : b; }

// The tile intrinsics' asm statements do not tell the compiler which memory
// they read (tileloadd, ldtilecfg) or that results are read back after
// tilestored: a barrier before and after keeps plain loads and stores in
// program order around them.
inline void CompilerBarrier() { asm volatile("" ::: "memory"); }

// Palette 1, eight tiles of 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

void LoadTileConfig() {
  TileConfig cfg = {};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = kRowBytes;
    cfg.rows[t] = kTileRows;
  }
  CompilerBarrier();
  _tile_loadconfig(&cfg);
}

// ---------------------------------------------------------------------------
// Packing.

// Round to nearest even of finite fp32 bits to bf16, in the low 16 bits of
// each lane (finite values beyond the largest bf16 give Inf).
inline __m512i RoundToBf16(__m512i bits) {
  const __m512i odd =
      _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff));
  return _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
}

inline __m512 Widen(__m512i bf16) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(bf16, 16));
}

// The three parts of 16 values (see the top), each in the low half of lanes.
inline void Split(__m512 x, __m512i* hi, __m512i* mid, __m512i* lo) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 finite =
      _mm512_cmplt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  // From 0x7f7f8000 up rounding overflows (finite values) or must not be
  // done (Inf, NaN): these keep their truncation, NaN made quiet as
  // ConvertF32ToBf16 does.
  const __mmask16 big =
      _mm512_cmpge_epu32_mask(abs, _mm512_set1_epi32(0x7f7f8000));
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  __m512i h = _mm512_mask_srli_epi32(RoundToBf16(bits), big, bits, 16);
  h = _mm512_mask_or_epi32(h, nan, h, _mm512_set1_epi32(0x40));
  const __m512 r1 = _mm512_maskz_sub_ps(finite, x, Widen(h));
  const __m512i m = RoundToBf16(_mm512_castps_si512(r1));
  const __m512 r2 = _mm512_sub_ps(r1, Widen(m));
  *hi = h;
  *mid = m;
  // r2 has at most 8 significant bits: its upper half holds all of it (a
  // subnormal r2 loses bits, as the tile unit would).
  *lo = _mm512_srli_epi32(_mm512_castps_si512(r2), 16);
}

// Two vectors of 16 bf16-in-32-bit lanes as one row of 32 bf16.
inline void StoreRow(uint16_t* dst, __m512i first, __m512i second) {
  const __m512i row = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm512_cvtepi32_epi16(first)),
      _mm512_cvtepi32_epi16(second), 1);
  _mm512_store_si512(dst, row);
}

inline __mmask16 FirstLanes(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 16) return 0xffff;
  return static_cast<__mmask16>((1u << n) - 1);
}

// Rows 16 t .. 16 t + 15 of x into the A tiles of every chunk and part.
void PackX(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t t,
           int64_t chunks, uint16_t* dst) {
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t k0 = c * kChunk;
    const __mmask16 first = FirstLanes(K - k0);
    const __mmask16 second = FirstLanes(K - k0 - 16);
    uint16_t* tiles = dst + c * kParts * kTileElems;
    for (int64_t r = 0; r < kTileRows; ++r) {
      const int64_t m = t * kTileRows + r;
      __m512i hi[2], mid[2], lo[2];
      if (m < M) {
        const float* row = x + m * ldx + k0;
        Split(_mm512_maskz_loadu_ps(first, row), &hi[0], &mid[0], &lo[0]);
        Split(_mm512_maskz_loadu_ps(second, row + 16), &hi[1], &mid[1],
              &lo[1]);
      } else {
        hi[0] = hi[1] = mid[0] = mid[1] = lo[0] = lo[1] =
            _mm512_setzero_si512();
      }
      StoreRow(tiles + r * kChunk, hi[0], hi[1]);
      StoreRow(tiles + kTileElems + r * kChunk, mid[0], mid[1]);
      StoreRow(tiles + 2 * kTileElems + r * kChunk, lo[0], lo[1]);
    }
  }
}

// Tile row r of a B tile, for each part: the pairs (W[n][2r], W[n][2r+1])
// of 16 rows n whose byte offsets from `pair` (at W[0][2r]) are `rows`.
inline void PackPairRow(const uint16_t* pair, __m512i rows, uint16_t* out) {
  _mm512_store_si512(out, _mm512_i32gather_epi32(rows, pair, 1));
}

inline void PackPairRow(const float* pair, __m512i rows, uint16_t* out) {
  // 64-bit gathers of 8 rows each: lanes (W[n][2r], W[n][2r+1]) for n in
  // order, split, then each part's 16-bit halves side by side (StoreRow) is
  // the VNNI row.
  __m512i hi[2], mid[2], lo[2];
  for (int h = 0; h < 2; ++h) {
    const __m512 pairs = _mm512_castsi512_ps(_mm512_i32gather_epi64(
        h == 0 ? _mm512_castsi512_si256(rows)
               : _mm512_extracti64x4_epi64(rows, 1),
        pair, 1));
    Split(pairs, &hi[h], &mid[h], &lo[h]);
  }
  StoreRow(out, hi[0], hi[1]);
  StoreRow(out + kTileElems, mid[0], mid[1]);
  StoreRow(out + 2 * kTileElems, lo[0], lo[1]);
}

// The B tiles (kWParts of them, one after the other at out) of the 16 rows
// of W at w (row stride ld elements) and 32 values of k.
template <typename Elem>
void PackTile(const Elem* w, int64_t ld, uint16_t* out) {
  const __m512i rows = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int>(ld * sizeof(Elem))));
  for (int r = 0; r < kTileRows; ++r) {
    PackPairRow(w + 2 * r, rows, out + r * 32);
  }
}

// Rows n0 .. n0 + nr of W (row stride K) into B tiles: for each 16-row tile
// j and chunk c, its kWParts tiles at dst + (j * chunks + c) * kWParts *
// kTileElems.
template <typename Elem>
void PackW(const Elem* w, int64_t N, int64_t K, int64_t n0, int64_t nr,
           int64_t chunks, uint16_t* dst) {
  const int64_t tiles = CeilDiv(nr, kTileRows);
  for (int64_t j = 0; j < tiles; ++j) {
    const int64_t n_base = n0 + j * kTileRows;
    const int64_t valid_n = Min(kTileRows, N - n_base);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t k0 = c * kChunk;
      uint16_t* out = dst + (j * chunks + c) * kWParts<Elem> * kTileElems;
      if (valid_n == kTileRows && k0 + kChunk <= K && K <= kMaxGatherK<Elem>) {
        PackTile(w + n_base * K + k0, K, out);
        continue;
      }
      // Edge tile: through a copy with zeros beyond N and K.
      alignas(64) Elem edge[kTileRows * kChunk];
      for (int64_t n = 0; n < kTileRows; ++n) {
        for (int64_t k = 0; k < kChunk; ++k) {
          edge[n * kChunk + k] = n < valid_n && k0 + k < K
                                     ? w[(n_base + n) * K + k0 + k]
                                     : Elem{0};
        }
      }
      PackTile(edge, kChunk, out);
    }
  }
}

// ---------------------------------------------------------------------------
// Products.

// One row of x tiles (a: its packed chunks) times one or two 16-row tiles
// of W (b0, b1: their packed chunks), over chunks [c0, c1). Tiles 0 and 1
// sum the hi and the other products of b0, 2 and 3 those of b1; A goes
// through 4 and 5, B through 6 and 7. The sums start at zero when `first`,
// else from acc (hi0, rest0, hi1, rest1, 256 floats each), and end in acc:
// storing and reloading a tile is exact, so cutting K into blocks changes no
// bit. The order of an output tile's products does not depend on kTwo.
template <int64_t kWP, bool kTwo>
void TileRow(const uint16_t* a, const uint16_t* b0, const uint16_t* b1,
             int64_t c0, int64_t c1, bool first, float* acc) {
  CompilerBarrier();
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (kTwo) {
      _tile_zero(2);
      _tile_zero(3);
    }
  } else {
    _tile_loadd(0, acc, kRowBytes);
    _tile_loadd(1, acc + 256, kRowBytes);
    if constexpr (kTwo) {
      _tile_loadd(2, acc + 512, kRowBytes);
      _tile_loadd(3, acc + 768, kRowBytes);
    }
  }
  for (int64_t c = c0; c < c1; ++c) {
    const uint16_t* ac = a + c * kParts * kTileElems;
    const uint16_t* bc0 = b0 + c * kWP * kTileElems;
    const uint16_t* bc1 = kTwo ? b1 + c * kWP * kTileElems : nullptr;
    // x hi times W (hi): the hi tiles.
    _tile_loadd(6, bc0, kRowBytes);
    if constexpr (kTwo) _tile_loadd(7, bc1, kRowBytes);
    _tile_loadd(4, ac, kRowBytes);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kTwo) _tile_dpbf16ps(2, 4, 7);
    if constexpr (kWP == 1) {
      // bf16 W: x mid, then x lo, times W.
      _tile_loadd(5, ac + kTileElems, kRowBytes);
      _tile_dpbf16ps(1, 5, 6);
      if constexpr (kTwo) _tile_dpbf16ps(3, 5, 7);
      _tile_loadd(4, ac + 2 * kTileElems, kRowBytes);
      _tile_dpbf16ps(1, 4, 6);
      if constexpr (kTwo) _tile_dpbf16ps(3, 4, 7);
    } else {
      // fp32 W: lo Wh, mid Wh, hi Wm, mid Wm, hi Wl (9 loads, 12 products
      // for two tiles of W).
      _tile_loadd(5, ac + 2 * kTileElems, kRowBytes);
      _tile_dpbf16ps(1, 5, 6);
      if constexpr (kTwo) _tile_dpbf16ps(3, 5, 7);
      _tile_loadd(5, ac + kTileElems, kRowBytes);
      _tile_dpbf16ps(1, 5, 6);
      if constexpr (kTwo) _tile_dpbf16ps(3, 5, 7);
      _tile_loadd(6, bc0 + kTileElems, kRowBytes);
      _tile_dpbf16ps(1, 4, 6);
      _tile_dpbf16ps(1, 5, 6);
      if constexpr (kTwo) {
        _tile_loadd(7, bc1 + kTileElems, kRowBytes);
        _tile_dpbf16ps(3, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_loadd(6, bc0 + 2 * kTileElems, kRowBytes);
      _tile_dpbf16ps(1, 4, 6);
      if constexpr (kTwo) {
        _tile_loadd(7, bc1 + 2 * kTileElems, kRowBytes);
        _tile_dpbf16ps(3, 4, 7);
      }
    }
  }
  _tile_stored(0, acc, kRowBytes);
  _tile_stored(1, acc + 256, kRowBytes);
  if constexpr (kTwo) {
    _tile_stored(2, acc + 512, kRowBytes);
    _tile_stored(3, acc + 768, kRowBytes);
  }
  CompilerBarrier();
}

// y[r, 0..cols) (=|+=) hi[r] + rest[r] for r < rows; other columns of y
// are not touched (masked loads and stores).
void WriteTile(const float* sums, float* y, int64_t ldy, int64_t rows,
               int64_t cols, bool accumulate) {
  const __mmask16 mask = FirstLanes(cols);
  for (int64_t r = 0; r < rows; ++r) {
    __m512 v = _mm512_add_ps(_mm512_load_ps(sums + r * 16),
                             _mm512_load_ps(sums + 256 + r * 16));
    float* dst = y + r * ldy;
    if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
    _mm512_mask_storeu_ps(dst, mask, v);
  }
}

void* AllocateBytes(size_t bytes) {
  // aligned_alloc wants a multiple of the alignment; every size here is one.
  return std::aligned_alloc(64, bytes);
}

// The product for either weight type (see the top). The grid is the same for
// both: panels of the same rows of W, fp32's three times the bytes.
template <typename Elem>
bool MatmulAmx(const float* x, int64_t M, int64_t K, int64_t ldx,
               const Elem* w, int64_t N, float* y, int64_t ldy,
               bool accumulate, int n_threads) {
  constexpr int64_t kWP = kWParts<Elem>;
  const int64_t chunks = CeilDiv(K, kChunk);
  const int64_t m_tiles = CeilDiv(M, kTileRows);

  // The grid, from the shape alone (it cannot change a bit; see the top).
  const int64_t n_pad = RoundUp(N, kTileRows);
  int64_t n_rows = Max(kMinPanelRows, RoundUp(CeilDiv(N, kTargetBlocks), 32));
  n_rows = Min(n_rows, Max(32, kPanelBytes / (chunks * kChunk * 2) / 32 * 32));
  n_rows = Min(n_rows, n_pad);
  const int64_t n_blocks = CeilDiv(N, n_rows);
  int64_t m_blocks = 1;
  if (n_blocks < kTargetBlocks) {
    m_blocks = Max(1, Min(CeilDiv(kTargetBlocks, n_blocks),
                          CeilDiv(M, kMinBlockRowsM)));
  }
  const int64_t m_rows = RoundUp(CeilDiv(M, m_blocks), kTileRows);
  m_blocks = CeilDiv(M, m_rows);
  const int64_t blocks = n_blocks * m_blocks;

  const double per_thread = 2.0 * M * N * K / kMinFlopsPerThread;
  int team = n_threads < 1 ? 1 : n_threads;
  if (team > blocks) team = static_cast<int>(blocks);
  if (team > per_thread) team = per_thread < 1.0 ? 1 : static_cast<int>(per_thread);

  const int64_t x_elems = m_tiles * chunks * kParts * kTileElems;
  // Per thread: its panel of W, then the sums of one row of output tiles.
  const int64_t panel_elems =
      CeilDiv(n_rows, kTileRows) * chunks * kWP * kTileElems;
  const int64_t acc_floats = CeilDiv(n_rows, 2 * kTileRows) * 4 * 256;
  const int64_t scratch_bytes = panel_elems * 2 + acc_floats * 4;
  auto* packed_x = static_cast<uint16_t*>(AllocateBytes(x_elems * 2));
  auto* scratch = static_cast<char*>(AllocateBytes(team * scratch_bytes));
  if (scratch == nullptr && team > 1) {
    // Fewer threads give the same bits.
    team = 1;
    scratch = static_cast<char*>(AllocateBytes(scratch_bytes));
  }
  if (packed_x == nullptr || scratch == nullptr) {
    std::free(packed_x);
    std::free(scratch);
    return false;
  }

#pragma omp parallel num_threads(team)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < m_tiles; ++t) {
      PackX(x, M, K, ldx, t, chunks,
            packed_x + t * chunks * kParts * kTileElems);
    }
    // (The loop's barrier: every thread sees all of packed_x.)
    LoadTileConfig();
    char* mine = scratch + omp_get_thread_num() * scratch_bytes;
    auto* panel = reinterpret_cast<uint16_t*>(mine);
    auto* acc = reinterpret_cast<float*>(mine + panel_elems * 2);
    int64_t packed = -1;  // the panel held in `panel`
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < blocks; ++i) {
      const int64_t p = i / m_blocks, b = i % m_blocks;
      const int64_t n0 = p * n_rows, nr = Min(n_rows, N - n0);
      const int64_t m0 = b * m_rows, m_end = Min(M, m0 + m_rows);
      if (packed != p) {
        PackW(w, N, K, n0, nr, chunks, panel);
        packed = p;
      }
      const int64_t n_tiles = CeilDiv(nr, kTileRows);
      for (int64_t t = m0 / kTileRows; t * kTileRows < m_end; ++t) {
        const uint16_t* a = packed_x + t * chunks * kParts * kTileElems;
        // K in blocks of chunks: the x tiles of a block stay in L1 while
        // they meet every pair of W tiles of the panel.
        for (int64_t c0 = 0; c0 < chunks; c0 += kBlockChunks) {
          const int64_t c1 = Min(chunks, c0 + kBlockChunks);
          for (int64_t j = 0; j < n_tiles; j += 2) {
            const uint16_t* b0 = panel + j * chunks * kWP * kTileElems;
            float* sums = acc + j / 2 * 4 * 256;
            if (j + 1 < n_tiles) {
              TileRow<kWP, true>(a, b0, b0 + chunks * kWP * kTileElems, c0,
                                 c1, c0 == 0, sums);
            } else {
              TileRow<kWP, false>(a, b0, nullptr, c0, c1, c0 == 0, sums);
            }
          }
        }
        const int64_t rows = Min(kTileRows, M - t * kTileRows);
        float* y_row = y + t * kTileRows * ldy + n0;
        for (int64_t j = 0; j < n_tiles; ++j) {
          WriteTile(acc + j / 2 * 4 * 256 + j % 2 * 512,
                    y_row + j * kTileRows, ldy, rows,
                    Min(kTileRows, nr - j * kTileRows), accumulate);
        }
      }
    }
    // Gives the tile state back, so that context switches stop saving it.
    _tile_release();
  }
  std::free(packed_x);
  std::free(scratch);
  return true;
}

}  // namespace

bool MatmulBf16Amx(const float* x, int64_t M, int64_t K, int64_t ldx,
                   const uint16_t* w_bf16, int64_t N, float* y, int64_t ldy,
                   bool accumulate, int n_threads) {
  return MatmulAmx(x, M, K, ldx, w_bf16, N, y, ldy, accumulate, n_threads);
}

bool MatmulF32Amx(const float* x, int64_t M, int64_t K, int64_t ldx,
                  const float* w, int64_t N, float* y, int64_t ldy,
                  bool accumulate, int n_threads) {
  return MatmulAmx(x, M, K, ldx, w, N, y, ldy, accumulate, n_threads);
}

}  // namespace memmamba::cpu

#endif  // AMX-TILE, AMX-BF16, AVX-512F, AVX-512BW
