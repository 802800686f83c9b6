// The note block, the pool read's gate and fusion, and A = −exp(A_log)ᵀ: the
// small ops of the whole-sequence forward and backward between the products,
// the scan and the pool attention (DESIGN 2.1 fusion knob, 2.3 step 5; the
// CPU twin is src/train/gradients.cc: TakeNotes, the gate and fusion loops of
// ReadForward / ReadBackward, NotesBackward, the A_log loop of LayerBackward).
//
// note_windows, window r = b·nw + k over positions [k·w, (k+1)·w) of sequence b:
//   m[r, d]   = max_t a[b·T + t, d];  arg[r, d] = the first t attaining it   (overwrites)
//   score[r]  = σ(Σ_d sw[d]·(m[r, d] − mean_d m[r, :]) + *sb)               (overwrites)
//   (a column of only −∞ or NaN in a window gets m = −∞, arg = its first position)
// note_scale:            s[r, j] = score[r]·raw[r, j]                        (overwrites)
// note_scale_backward:   draw[r, j] = score[r]·ds[r, j]                      (overwrites)
//                        dscore[r] = (extra[r] | 0) + Σ_j ds[r, j]·raw[r, j] (overwrites)
// note_score_backward, g_r = dscore[r]·score[r]·(1 − score[r]):
//   dm[r, d] += g_r·(sw[d] − mean sw);  dsw[d] += Σ_r g_r·(m[r, d] − mean m[r, :]);
//   *dsb += Σ_r g_r                                                         (accumulate)
// note_max_backward:     da[(b·T + arg[r, d])·D + d] += dm[r, d]             (accumulates)
// read_gate:             γ = σ(gw·a[r] + *gb);  gate[r] = γ if the row reads an
//                        entry and γ > threshold, else 0                     (overwrites)
// read_fuse:             x[r] += f ⊙ (γ·co[r]) for rows with γ ≠ 0,
//                        f = alpha | 1 | σ(fuse ⊙ a[r])                      (accumulates)
// read_fuse_backward, rows with γ ≠ 0, dc = f ⊙ dx[r]:
//   dco[r] = γ·dc (0 for other rows)                                         (overwrites)
//   dγ = Σ_d dc·co;  q = dγ·γ·(1 − γ);  da[r] += q·gw (+ p ⊙ fuse, GATED)    (accumulates)
//   dgw += Σ_r q·a[r];  *dgb += Σ_r q;  dalpha += Σ_r dx·γ·co (WEIGHTED);
//   dfuse += Σ_r p ⊙ a[r] with p = dx·γ·co·f·(1 − f) (GATED)                (accumulate)
// a_from_log:            A[n, e] = −exp(A_log[e, n])                        (overwrites)
// a_log_backward:        dA_log[e, n] += dA[n, e]·A[n, e]                   (accumulates)
//
// Row reductions (means, dot products) take one warp per row, summed in
// double. Column sums over rows (dsw, dalpha, dfuse, dgw) go through partials
// of RowsPerPartial(rows) consecutive rows (one thread per column, rows
// ascending), then the partials in block order; the scalar sums (dsb, dgb)
// take the per-row terms through one block's fixed tree, in double. So a
// call is deterministic for a shape, with no atomics. The fusion mode is a
// template parameter.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = 256;
constexpr int kSumThreads = 1024;
constexpr int64_t kMinRowsPerPartial = 8;
constexpr int64_t kMaxRowsPerPartial = 64;
constexpr int64_t kMaxBlocks = 65535;

unsigned GridFor(int64_t items, int64_t per_block) {
  return static_cast<unsigned>(std::min(CeilDiv(items, per_block), kMaxBlocks));
}

// Rows summed by one thread of a partial kernel: 64 at 8192 rows, fewer for
// fewer rows (256 notes give 32 blocks of 8, not 4 of 64), so that the
// partial kernels have blocks enough to fill the device.
int64_t RowsPerPartial(int64_t rows) {
  return std::clamp<int64_t>(CeilDiv(rows, 128), kMinRowsPerPartial, kMaxRowsPerPartial);
}

// Bytes of `count` floats, rounded up so that what follows in a scratch
// buffer stays 256-byte aligned.
size_t FloatBytes(int64_t count) { return (count * sizeof(float) + 255) / 256 * 256; }

// The warp of a warp-per-row kernel, and the first row and row stride it walks.
struct WarpRows {
  int lane;
  int64_t first, stride;
};
__device__ __forceinline__ WarpRows MyWarpRows() {
  return {static_cast<int>(threadIdx.x % 32),
          blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32,
          int64_t{gridDim.x} * kWarpsPerBlock};
}

// ---------------------------------------------------------------------------
// Sums shared by the backward kernels.

// out[d] += Σ_b partial[b·D + d], b ascending.
__global__ void __launch_bounds__(kThreads)
    AddColumnPartialsKernel(const float* __restrict__ partial, int64_t blocks, int64_t D,
                            float* __restrict__ out) {
  for (int64_t d = blockIdx.x * int64_t{kThreads} + threadIdx.x; d < D;
       d += int64_t{gridDim.x} * kThreads) {
    float acc = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) acc += partial[b * D + d];
    out[d] += acc;
  }
}

// *out += Σ_i v[i] (or, with `mean`, *out = Σ_i v[i] / n), one block, in
// double, a fixed tree.
__global__ void __launch_bounds__(kSumThreads)
    SumScalarKernel(const float* __restrict__ v, int64_t n, bool mean, float* __restrict__ out) {
  __shared__ double s[kSumThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kSumThreads) acc += v[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int width = kSumThreads / 2; width > 0; width >>= 1) {
    if (threadIdx.x < width) s[threadIdx.x] += s[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (mean) {
      *out = static_cast<float>(s[0] / static_cast<double>(n));
    } else {
      *out += static_cast<float>(s[0]);
    }
  }
}

int AddColumnPartials(mmc_context* ctx, const float* partial, int64_t blocks, int64_t D,
                      float* out) {
  AddColumnPartialsKernel<<<GridFor(D, kThreads), kThreads, 0, ctx->stream>>>(partial, blocks,
                                                                              D, out);
  MMC_LAUNCH_CHECK(ctx, "AddColumnPartialsKernel");
  return MMC_OK;
}

int SumScalar(mmc_context* ctx, const float* v, int64_t n, bool mean, float* out) {
  SumScalarKernel<<<1, kSumThreads, 0, ctx->stream>>>(v, n, mean, out);
  MMC_LAUNCH_CHECK(ctx, "SumScalarKernel");
  return MMC_OK;
}

// Mean of a row of D in float (double sum), as every lane of the warp sees it.
__device__ __forceinline__ float WarpRowMean(const float* row, int64_t D, int lane) {
  double s = 0.0;
  for (int64_t d = lane; d < D; d += 32) s += row[d];
  return static_cast<float>(WarpSumDouble(s) / static_cast<double>(D));
}

// ---------------------------------------------------------------------------
// Notes.

// One thread per column d (blockIdx.x) of window rows r (blockIdx.y, strided);
// positions walked in increasing order with a strict >, so the first
// position attaining the max wins.
__global__ void __launch_bounds__(kThreads)
    NoteMaxKernel(const float* __restrict__ a, int64_t T, int64_t D, int64_t w, int64_t nw,
                  int64_t rows, float* __restrict__ m, int32_t* __restrict__ arg) {
  const int64_t d = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  if (d >= D) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t b = r / nw, t0 = (r % nw) * w;
    const float* col = a + (b * T + t0) * D + d;
    float mx = -INFINITY;
    int64_t at = t0;
#pragma unroll 4
    for (int64_t t = 0; t < w; ++t) {
      const float v = col[t * D];
      if (v > mx) {
        mx = v;
        at = t0 + t;
      }
    }
    m[r * D + d] = mx;
    arg[r * D + d] = static_cast<int32_t>(at);
  }
}

// One warp per window row.
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    NoteScoreKernel(const float* __restrict__ m, int64_t rows, int64_t D,
                    const float* __restrict__ sw, const float* __restrict__ sb,
                    float* __restrict__ score) {
  const WarpRows wr = MyWarpRows();
  const float bias = *sb;
  for (int64_t r = wr.first; r < rows; r += wr.stride) {
    const float* mr = m + r * D;
    const float mean = WarpRowMean(mr, D, wr.lane);
    double dot = 0.0;
    for (int64_t d = wr.lane; d < D; d += 32) dot += sw[d] * (mr[d] - mean);
    dot = WarpSumDouble(dot);
    if (wr.lane == 0) score[r] = Sigmoid(static_cast<float>(dot) + bias);
  }
}

__global__ void __launch_bounds__(kThreads)
    NoteScaleKernel(const float* __restrict__ raw, const float* __restrict__ score, int64_t n,
                    int64_t S, float* __restrict__ s) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    s[i] = score[i / S] * raw[i];
  }
}

// One warp per row.
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    NoteScaleBackwardKernel(const float* __restrict__ raw, const float* __restrict__ score,
                            const float* __restrict__ ds, const float* __restrict__ extra,
                            int64_t rows, int64_t S, float* __restrict__ draw,
                            float* __restrict__ dscore) {
  const WarpRows wr = MyWarpRows();
  for (int64_t r = wr.first; r < rows; r += wr.stride) {
    const float sc = score[r];
    double acc = 0.0;
    for (int64_t j = wr.lane; j < S; j += 32) {
      const float g = ds[r * S + j];
      draw[r * S + j] = sc * g;
      acc += g * raw[r * S + j];
    }
    acc = WarpSumDouble(acc);
    if (wr.lane == 0) {
      dscore[r] = (extra != nullptr ? extra[r] : 0.0f) + static_cast<float>(acc);
    }
  }
}

// g[r] = dscore·s·(1 − s) and the row mean of m, one warp per row.
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    NoteScoreRowKernel(const float* __restrict__ m, const float* __restrict__ score,
                       const float* __restrict__ dscore, int64_t rows, int64_t D,
                       float* __restrict__ g, float* __restrict__ m_mean) {
  const WarpRows wr = MyWarpRows();
  for (int64_t r = wr.first; r < rows; r += wr.stride) {
    const float mean = WarpRowMean(m + r * D, D, wr.lane);
    if (wr.lane == 0) {
      const float s = score[r];
      g[r] = dscore[r] * s * (1.0f - s);
      m_mean[r] = mean;
    }
  }
}

// dm[r, d] += g_r·(sw[d] − mean sw) and partial[b, d] = Σ_{r in block b}
// g_r·(m[r, d] − mean m[r]); one thread per column, rows ascending.
__global__ void __launch_bounds__(kThreads)
    NoteScorePartialKernel(const float* __restrict__ m, const float* __restrict__ g,
                           const float* __restrict__ m_mean, int64_t rows, int64_t D,
                           const float* __restrict__ sw, const float* __restrict__ sw_mean,
                           int64_t chunk, int64_t blocks, float* __restrict__ dm,
                           float* __restrict__ partial) {
  const int64_t d = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  if (d >= D) return;
  const float wc = sw[d] - *sw_mean;
  for (int64_t b = blockIdx.y; b < blocks; b += gridDim.y) {
    const int64_t r1 = min(rows, (b + 1) * chunk);
    float acc = 0.0f;
    for (int64_t r = b * chunk; r < r1; ++r) {
      const float gr = g[r];
      if (gr == 0.0f) continue;  // as the CPU: such a row adds nothing
      dm[r * D + d] += gr * wc;
      acc += gr * (m[r * D + d] - m_mean[r]);
    }
    partial[b * D + d] = acc;
  }
}

// Windows never share a position and each thread owns one column, so the
// scattered additions never collide.
__global__ void __launch_bounds__(kThreads)
    NoteMaxBackwardKernel(const float* __restrict__ dm, const int32_t* __restrict__ arg,
                          int64_t nw, int64_t T, int64_t D, int64_t rows,
                          float* __restrict__ da) {
  const int64_t d = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  if (d >= D) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t b = r / nw;
    da[(b * T + arg[r * D + d]) * D + d] += dm[r * D + d];
  }
}

// ---------------------------------------------------------------------------
// Pool read: gate and fusion.

// One warp per row.
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    ReadGateKernel(const float* __restrict__ a, int64_t M, int64_t D,
                   const float* __restrict__ gw, const float* __restrict__ gb, float threshold,
                   const int32_t* __restrict__ offsets, float* __restrict__ gate) {
  const WarpRows wr = MyWarpRows();
  const float bias = *gb;
  for (int64_t r = wr.first; r < M; r += wr.stride) {
    const float* ar = a + r * D;
    double dot = 0.0;
    for (int64_t d = wr.lane; d < D; d += 32) dot += gw[d] * ar[d];
    dot = WarpSumDouble(dot);
    if (wr.lane == 0) {
      const float g = Sigmoid(static_cast<float>(dot) + bias);
      gate[r] = (offsets[r + 1] > offsets[r] && g > threshold) ? g : 0.0f;
    }
  }
}

// Columns d (blockIdx.x) of rows r (blockIdx.y, strided); rows with gate 0
// are skipped whole.
template <int kMode>
__global__ void __launch_bounds__(kThreads)
    ReadFuseKernel(const float* __restrict__ a, const float* __restrict__ co,
                   const float* __restrict__ gate, int64_t M, int64_t D,
                   const float* __restrict__ alpha, const float* __restrict__ fuse,
                   float* __restrict__ x) {
  const int64_t d = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  if (d >= D) return;
  for (int64_t r = blockIdx.y; r < M; r += gridDim.y) {
    const float g = gate[r];
    if (g == 0.0f) continue;
    const int64_t i = r * D + d;
    const float f = FuseWeight<kMode>(alpha, fuse, kMode == MMC_FUSION_GATED ? a[i] : 0.0f, d);
    x[i] += f * (g * co[i]);
  }
}

// One warp per row: dγ, q (to q_out for the parameter sums), dco, da.
template <int kMode>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    ReadFuseBackwardRowKernel(const float* __restrict__ a, const float* __restrict__ co,
                              const float* __restrict__ gate, const float* __restrict__ dx,
                              int64_t M, int64_t D, const float* __restrict__ alpha,
                              const float* __restrict__ fuse, const float* __restrict__ gw,
                              float* __restrict__ dco, float* __restrict__ da,
                              float* __restrict__ q_out) {
  const WarpRows wr = MyWarpRows();
  for (int64_t r = wr.first; r < M; r += wr.stride) {
    const int64_t base = r * D;
    const float g = gate[r];
    if (g == 0.0f) {
      for (int64_t d = wr.lane; d < D; d += 32) dco[base + d] = 0.0f;
      if (wr.lane == 0) q_out[r] = 0.0f;
      continue;
    }
    double dgamma = 0.0;
    for (int64_t d = wr.lane; d < D; d += 32) {
      const float av = kMode == MMC_FUSION_GATED ? a[base + d] : 0.0f;
      const float f = FuseWeight<kMode>(alpha, fuse, av, d);
      dgamma += (f * dx[base + d]) * co[base + d];
    }
    dgamma = WarpSumDouble(dgamma);
    const float q = static_cast<float>(dgamma) * g * (1.0f - g);
    if (wr.lane == 0) q_out[r] = q;
    for (int64_t d = wr.lane; d < D; d += 32) {
      const int64_t i = base + d;
      const float av = kMode == MMC_FUSION_GATED ? a[i] : 0.0f;
      const float f = FuseWeight<kMode>(alpha, fuse, av, d);
      dco[i] = (f * dx[i]) * g;
      float v = da[i];
      if constexpr (kMode == MMC_FUSION_GATED) {
        const float p = dx[i] * g * co[i] * f * (1.0f - f);
        v += p * fuse[d];
      }
      da[i] = v + q * gw[d];
    }
  }
}

// partial_gw[b, d] = Σ_{r in block b, γ ≠ 0} q_r·a[r, d] and partial_p[b, d]
// = Σ dx·γ·co (WEIGHTED) or Σ p·a (GATED); one thread per column, rows
// ascending.
template <int kMode>
__global__ void __launch_bounds__(kThreads)
    ReadFusePartialKernel(const float* __restrict__ a, const float* __restrict__ co,
                          const float* __restrict__ gate, const float* __restrict__ dx,
                          const float* __restrict__ q, int64_t M, int64_t D,
                          const float* __restrict__ fuse, int64_t chunk, int64_t blocks,
                          float* __restrict__ partial_gw, float* __restrict__ partial_p) {
  const int64_t d = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  if (d >= D) return;
  for (int64_t b = blockIdx.y; b < blocks; b += gridDim.y) {
    const int64_t r1 = min(M, (b + 1) * chunk);
    float acc_gw = 0.0f, acc_p = 0.0f;
    for (int64_t r = b * chunk; r < r1; ++r) {
      const float g = gate[r];
      if (g == 0.0f) continue;
      const int64_t i = r * D + d;
      const float av = a[i];
      acc_gw += q[r] * av;
      if constexpr (kMode == MMC_FUSION_WEIGHTED) {
        acc_p += dx[i] * g * co[i];
      } else if constexpr (kMode == MMC_FUSION_GATED) {
        const float f = Sigmoid(fuse[d] * av);
        acc_p += dx[i] * g * co[i] * f * (1.0f - f) * av;
      }
    }
    partial_gw[b * D + d] = acc_gw;
    if constexpr (kMode != MMC_FUSION_RESIDUAL) partial_p[b * D + d] = acc_p;
  }
}

template <int kMode>
int ReadFuseBackward(mmc_context* ctx, const float* a, const float* co, const float* gate,
                     const float* dx, int64_t M, int64_t D, const float* alpha,
                     const float* fuse, const float* gw, float* dco, float* da, float* dparam,
                     float* dgw, float* dgb) {
  const int64_t chunk = RowsPerPartial(M), blocks = CeilDiv(M, chunk);
  const int64_t n_partials = kMode == MMC_FUSION_RESIDUAL ? 1 : 2;
  Scratch scratch(ctx);
  const size_t q_bytes = FloatBytes(M);
  const size_t partial_bytes = FloatBytes(blocks * D);
  MMC_RETURN_IF_ERROR(scratch.Allocate(q_bytes + n_partials * partial_bytes));
  float* q = scratch.as<float>();
  float* partial_gw = scratch.as<float>(q_bytes);
  float* partial_p =
      kMode == MMC_FUSION_RESIDUAL ? nullptr : scratch.as<float>(q_bytes + partial_bytes);
  ReadFuseBackwardRowKernel<kMode>
      <<<GridFor(M, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, ctx->stream>>>(
          a, co, gate, dx, M, D, alpha, fuse, gw, dco, da, q);
  MMC_LAUNCH_CHECK(ctx, "ReadFuseBackwardRowKernel");
  const dim3 grid(static_cast<unsigned>(CeilDiv(D, kThreads)),
                  static_cast<unsigned>(std::min(blocks, kMaxBlocks)));
  ReadFusePartialKernel<kMode><<<grid, kThreads, 0, ctx->stream>>>(
      a, co, gate, dx, q, M, D, fuse, chunk, blocks, partial_gw, partial_p);
  MMC_LAUNCH_CHECK(ctx, "ReadFusePartialKernel");
  MMC_RETURN_IF_ERROR(AddColumnPartials(ctx, partial_gw, blocks, D, dgw));
  if constexpr (kMode != MMC_FUSION_RESIDUAL) {
    MMC_RETURN_IF_ERROR(AddColumnPartials(ctx, partial_p, blocks, D, dparam));
  }
  return SumScalar(ctx, q, M, /*mean=*/false, dgb);
}

// ---------------------------------------------------------------------------
// A = −exp(A_log)ᵀ.

// i = n·E + e over A [N, E].
__global__ void __launch_bounds__(kThreads)
    AFromLogKernel(const float* __restrict__ A_log, int64_t E, int64_t N, float* __restrict__ A) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < N * E;
       i += int64_t{gridDim.x} * kThreads) {
    const int64_t n = i / E, e = i % E;
    A[i] = -expf(A_log[e * N + n]);
  }
}

// j = e·N + n over dA_log [E, N].
__global__ void __launch_bounds__(kThreads)
    ALogBackwardKernel(const float* __restrict__ dA, const float* __restrict__ A, int64_t E,
                       int64_t N, float* __restrict__ dA_log) {
  for (int64_t j = blockIdx.x * int64_t{kThreads} + threadIdx.x; j < N * E;
       j += int64_t{gridDim.x} * kThreads) {
    const int64_t e = j / N, n = j % N;
    dA_log[j] += dA[n * E + e] * A[n * E + e];
  }
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_note_windows(mmc_context* ctx, const float* a, int64_t B, int64_t T, int64_t D,
                             int64_t w, const float* sw, const float* sb, float* m,
                             int32_t* arg, float* score) {
  MMC_ENTER(ctx);
  if (B < 0 || T < 0 || D < 0 || w < 1) return MMC_ERR_INVALID_ARGUMENT;
  const int64_t nw = T / w, rows = B * nw;
  if (rows == 0) return MMC_OK;
  if (sb == nullptr || score == nullptr ||
      (D > 0 && (a == nullptr || sw == nullptr || m == nullptr || arg == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (T > INT32_MAX) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "note_windows: T >= 2^31");
  return Guarded(ctx, [&]() -> int {
    if (D > 0) {
      const dim3 grid(static_cast<unsigned>(CeilDiv(D, kThreads)),
                      static_cast<unsigned>(std::min(rows, kMaxBlocks)));
      NoteMaxKernel<<<grid, kThreads, 0, ctx->stream>>>(a, T, D, w, nw, rows, m, arg);
      MMC_LAUNCH_CHECK(ctx, "NoteMaxKernel");
    }
    NoteScoreKernel<<<GridFor(rows, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, ctx->stream>>>(
        m, rows, D, sw, sb, score);
    MMC_LAUNCH_CHECK(ctx, "NoteScoreKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_note_scale(mmc_context* ctx, const float* raw, const float* score, int64_t rows,
                           int64_t S, float* s) {
  MMC_ENTER(ctx);
  if (rows < 0 || S < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (rows == 0 || S == 0) return MMC_OK;
  if (raw == nullptr || score == nullptr || s == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  return Guarded(ctx, [&]() -> int {
    NoteScaleKernel<<<GridFor(rows * S, kThreads), kThreads, 0, ctx->stream>>>(raw, score,
                                                                               rows * S, S, s);
    MMC_LAUNCH_CHECK(ctx, "NoteScaleKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_note_scale_backward(mmc_context* ctx, const float* raw, const float* score,
                                    const float* ds, const float* extra, int64_t rows,
                                    int64_t S, float* draw, float* dscore) {
  MMC_ENTER(ctx);
  if (rows < 0 || S < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (rows == 0) return MMC_OK;
  if (dscore == nullptr ||
      (S > 0 && (raw == nullptr || score == nullptr || ds == nullptr || draw == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    NoteScaleBackwardKernel<<<GridFor(rows, kWarpsPerBlock), 32 * kWarpsPerBlock, 0,
                              ctx->stream>>>(raw, score, ds, extra, rows, S, draw, dscore);
    MMC_LAUNCH_CHECK(ctx, "NoteScaleBackwardKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_note_score_backward(mmc_context* ctx, const float* m, const float* score,
                                    const float* dscore, int64_t rows, int64_t D,
                                    const float* sw, float* dm, float* dsw, float* dsb) {
  MMC_ENTER(ctx);
  if (rows < 0 || D < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (rows == 0) return MMC_OK;
  if (score == nullptr || dscore == nullptr || dsb == nullptr ||
      (D > 0 && (m == nullptr || sw == nullptr || dm == nullptr || dsw == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    const int64_t chunk = RowsPerPartial(rows), blocks = CeilDiv(rows, chunk);
    Scratch scratch(ctx);
    const size_t row_bytes = FloatBytes(rows);
    const size_t mean_bytes = FloatBytes(1);
    MMC_RETURN_IF_ERROR(scratch.Allocate(2 * row_bytes + mean_bytes + FloatBytes(blocks * D)));
    float* g = scratch.as<float>();
    float* m_mean = scratch.as<float>(row_bytes);
    float* sw_mean = scratch.as<float>(2 * row_bytes);
    float* partial = scratch.as<float>(2 * row_bytes + mean_bytes);
    NoteScoreRowKernel<<<GridFor(rows, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, ctx->stream>>>(
        m, score, dscore, rows, D, g, m_mean);
    MMC_LAUNCH_CHECK(ctx, "NoteScoreRowKernel");
    if (D > 0) {
      MMC_RETURN_IF_ERROR(SumScalar(ctx, sw, D, /*mean=*/true, sw_mean));
      const dim3 grid(static_cast<unsigned>(CeilDiv(D, kThreads)),
                      static_cast<unsigned>(std::min(blocks, kMaxBlocks)));
      NoteScorePartialKernel<<<grid, kThreads, 0, ctx->stream>>>(m, g, m_mean, rows, D, sw,
                                                                 sw_mean, chunk, blocks, dm,
                                                                 partial);
      MMC_LAUNCH_CHECK(ctx, "NoteScorePartialKernel");
      MMC_RETURN_IF_ERROR(AddColumnPartials(ctx, partial, blocks, D, dsw));
    }
    return SumScalar(ctx, g, rows, /*mean=*/false, dsb);
  });
}

MMC_API int mmc_note_max_backward(mmc_context* ctx, const float* dm, const int32_t* arg,
                                  int64_t B, int64_t nw, int64_t T, int64_t D, float* da) {
  MMC_ENTER(ctx);
  if (B < 0 || nw < 0 || T < 0 || D < 0) return MMC_ERR_INVALID_ARGUMENT;
  const int64_t rows = B * nw;
  if (rows == 0 || D == 0) return MMC_OK;
  if (dm == nullptr || arg == nullptr || da == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  return Guarded(ctx, [&]() -> int {
    const dim3 grid(static_cast<unsigned>(CeilDiv(D, kThreads)),
                    static_cast<unsigned>(std::min(rows, kMaxBlocks)));
    NoteMaxBackwardKernel<<<grid, kThreads, 0, ctx->stream>>>(dm, arg, nw, T, D, rows, da);
    MMC_LAUNCH_CHECK(ctx, "NoteMaxBackwardKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_read_gate(mmc_context* ctx, const float* a, int64_t M, int64_t D,
                          const float* gw, const float* gb, float threshold,
                          const int32_t* offsets, float* gate) {
  MMC_ENTER(ctx);
  if (M < 0 || D < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (M == 0) return MMC_OK;
  if (gb == nullptr || offsets == nullptr || gate == nullptr ||
      (D > 0 && (a == nullptr || gw == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    ReadGateKernel<<<GridFor(M, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, ctx->stream>>>(
        a, M, D, gw, gb, threshold, offsets, gate);
    MMC_LAUNCH_CHECK(ctx, "ReadGateKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_read_fuse(mmc_context* ctx, int mode, const float* a, const float* co,
                          const float* gate, int64_t M, int64_t D, const float* alpha,
                          const float* fuse, float* x) {
  MMC_ENTER(ctx);
  if (mode != MMC_FUSION_WEIGHTED && mode != MMC_FUSION_RESIDUAL && mode != MMC_FUSION_GATED) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (M < 0 || D < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (M == 0 || D == 0) return MMC_OK;
  if (co == nullptr || gate == nullptr || x == nullptr ||
      (mode == MMC_FUSION_WEIGHTED && alpha == nullptr) ||
      (mode == MMC_FUSION_GATED && (fuse == nullptr || a == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    const dim3 grid(static_cast<unsigned>(CeilDiv(D, kThreads)),
                    static_cast<unsigned>(std::min(M, kMaxBlocks)));
    switch (mode) {
      case MMC_FUSION_WEIGHTED:
        ReadFuseKernel<MMC_FUSION_WEIGHTED>
            <<<grid, kThreads, 0, ctx->stream>>>(a, co, gate, M, D, alpha, fuse, x);
        break;
      case MMC_FUSION_RESIDUAL:
        ReadFuseKernel<MMC_FUSION_RESIDUAL>
            <<<grid, kThreads, 0, ctx->stream>>>(a, co, gate, M, D, alpha, fuse, x);
        break;
      default:
        ReadFuseKernel<MMC_FUSION_GATED>
            <<<grid, kThreads, 0, ctx->stream>>>(a, co, gate, M, D, alpha, fuse, x);
        break;
    }
    MMC_LAUNCH_CHECK(ctx, "ReadFuseKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_read_fuse_backward(mmc_context* ctx, int mode, const float* a, const float* co,
                                   const float* gate, const float* dx, int64_t M, int64_t D,
                                   const float* alpha, const float* fuse, const float* gw,
                                   float* dco, float* da, float* dalpha, float* dfuse,
                                   float* dgw, float* dgb) {
  MMC_ENTER(ctx);
  if (mode != MMC_FUSION_WEIGHTED && mode != MMC_FUSION_RESIDUAL && mode != MMC_FUSION_GATED) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (M < 0 || D < 0) return MMC_ERR_INVALID_ARGUMENT;
  // D == 0: dγ = 0 for every row, so nothing changes.
  if (M == 0 || D == 0) return MMC_OK;
  if (a == nullptr || co == nullptr || gate == nullptr || dx == nullptr || gw == nullptr ||
      dco == nullptr || da == nullptr || dgw == nullptr || dgb == nullptr ||
      (mode == MMC_FUSION_WEIGHTED && (alpha == nullptr || dalpha == nullptr)) ||
      (mode == MMC_FUSION_GATED && (fuse == nullptr || dfuse == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    switch (mode) {
      case MMC_FUSION_WEIGHTED:
        return ReadFuseBackward<MMC_FUSION_WEIGHTED>(ctx, a, co, gate, dx, M, D, alpha, fuse, gw,
                                                     dco, da, dalpha, dgw, dgb);
      case MMC_FUSION_RESIDUAL:
        return ReadFuseBackward<MMC_FUSION_RESIDUAL>(ctx, a, co, gate, dx, M, D, alpha, fuse, gw,
                                                     dco, da, nullptr, dgw, dgb);
      default:
        return ReadFuseBackward<MMC_FUSION_GATED>(ctx, a, co, gate, dx, M, D, alpha, fuse, gw,
                                                  dco, da, dfuse, dgw, dgb);
    }
  });
}

MMC_API int mmc_a_from_log(mmc_context* ctx, const float* A_log, int64_t E, int64_t N,
                           float* A) {
  MMC_ENTER(ctx);
  if (E < 0 || N < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (E == 0 || N == 0) return MMC_OK;
  if (A_log == nullptr || A == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  return Guarded(ctx, [&]() -> int {
    AFromLogKernel<<<GridFor(E * N, kThreads), kThreads, 0, ctx->stream>>>(A_log, E, N, A);
    MMC_LAUNCH_CHECK(ctx, "AFromLogKernel");
    return MMC_OK;
  });
}

MMC_API int mmc_a_log_backward(mmc_context* ctx, const float* dA, const float* A, int64_t E,
                               int64_t N, float* dA_log) {
  MMC_ENTER(ctx);
  if (E < 0 || N < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (E == 0 || N == 0) return MMC_OK;
  if (dA == nullptr || A == nullptr || dA_log == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  return Guarded(ctx, [&]() -> int {
    ALogBackwardKernel<<<GridFor(E * N, kThreads), kThreads, 0, ctx->stream>>>(dA, A, E, N,
                                                                               dA_log);
    MMC_LAUNCH_CHECK(ctx, "ALogBackwardKernel");
    return MMC_OK;
  });
}

}  // extern "C"
