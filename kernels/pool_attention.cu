// Gathered pool attention of many rows at once (DESIGN 2.3 steps 1-2, 2.4:
// every token reads the pool of the window before its own; backend.h
// PoolAttend / PoolAttendBackward, applied row by row; the CPU twin is in
// src/backend/cpu/cpu_backend.cc).
//
// Row r reads the entries j of entries[offsets[r] .. offsets[r+1]) (CSR), each
// an index into a key table and a value table. With dh = S/H and
// s_jh = q_h·k_jh/√dh, p_jh = softmax_j(s_jh):
//   forward   o_h = Σ_j p_jh v_jh                              (o overwritten; 0 if no entry)
//   backward  dp_jh = do_h·v_jh;  ds_jh = p_jh (dp_jh − Σ_i p_ih dp_ih)/√dh
//             dq_h = Σ_j ds_jh k_jh                            (dq overwritten)
//             dk[i] += Σ_{(r,j): entry i} ds_jh q_rh;  dv[i] += Σ p_jh do_rh   (accumulated)
//
// Forward: one warp per row, online softmax over chunks of 32 entries (lane =
// entry for the scores, lane = dimension for o), so a row may read any number
// of entries. Backward: the same warp per row recomputes p (a first pass for
// the per-head max and sum), stores p and ds per (entry, head) and writes dq;
// a second kernel, one block per table row, sums the contributions of the rows
// that read it, following the transposed index (mmc_pool_index_transpose):
// the reference list is cut into 8 fixed segments (one per warp, each summed
// in ascending row order), then the segments are added in order. A
// deterministic segmented reduction: no atomics, the same bits every run.
#include <algorithm>
#include <cmath>
#include <vector>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kWarps = 4;          // rows per block
constexpr int kMaxDimsPerLane = 8;  // S <= 256
constexpr int kMaxS = 32 * kMaxDimsPerLane;

// Shared memory of one warp: q (or do) [S], p [H][32], per-head M, l, alpha, mean.
__host__ __device__ inline int WarpSmemFloats(int S, int H) { return S + 32 * H + 4 * H + S; }

struct RowView {
  const float* q;
  const float* keys;
  const float* values;
  int64_t ld_q, ld_kv;
  int S, H, dh;
  float scale;
};

// Score of the lane's entry for head h (lane = entry).
__device__ __forceinline__ float HeadScore(const float* qs, const float* krow, int h, int dh,
                                           float scale) {
  const int off = h * dh;
  float dot = 0.0f;
  for (int d = 0; d < dh; ++d) dot += qs[off + d] * krow[off + d];
  return dot * scale;
}

// Online per-head max and sum over the row's entries: M[h], l[h] in shared memory.
__device__ void RowMaxSum(const RowView& v, const int32_t* ent, int m, const float* qs,
                          float* Ms, float* ls) {
  const int lane = threadIdx.x & 31;
  for (int h = lane; h < v.H; h += 32) {
    Ms[h] = -INFINITY;
    ls[h] = 0.0f;
  }
  __syncwarp();
  for (int base = 0; base < m; base += 32) {
    const int j = base + lane;
    const bool live = j < m;
    const float* krow = v.keys + (live ? int64_t{ent[j]} : 0) * v.ld_kv;
    for (int h = 0; h < v.H; ++h) {
      const float sc = live ? HeadScore(qs, krow, h, v.dh, v.scale) : -INFINITY;
      const float newM = fmaxf(Ms[h], WarpMax(sc));
      const float p = live ? expf(sc - newM) : 0.0f;
      const float sum = WarpSum(p);
      const float l = ls[h] * expf(Ms[h] - newM) + sum;
      __syncwarp();
      if (lane == 0) {
        Ms[h] = newM;
        ls[h] = l;
      }
      __syncwarp();
    }
  }
}

__global__ void __launch_bounds__(32 * kWarps)
    PoolAttendKernel(const __grid_constant__ mmc_pool_attend_args a) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = blockIdx.x * int64_t{kWarps} + warp;
  if (r >= a.rows) return;
  const int S = static_cast<int>(a.S), H = static_cast<int>(a.H), dh = S / H;
  float* qs = smem + warp * WarpSmemFloats(S, H);
  float* ps = qs + S;         // [H][32]
  float* Ms = ps + 32 * H;    // [H]
  float* ls = Ms + H;         // [H]
  float* alpha = ls + H;      // [H]
  const int64_t off = a.offsets[r];
  const int m = static_cast<int>(a.offsets[r + 1] - off);
  const int32_t* ent = a.entries + off;
  float* o = a.o + r * a.ld_o;
  if (m <= 0) {
    for (int d = lane; d < S; d += 32) o[d] = 0.0f;
    return;
  }
  for (int d = lane; d < S; d += 32) qs[d] = a.q[r * a.ld_q + d];
  for (int h = lane; h < H; h += 32) {
    Ms[h] = -INFINITY;
    ls[h] = 0.0f;
  }
  __syncwarp();
  const float scale = 1.0f / sqrtf(static_cast<float>(dh));
  float acc[kMaxDimsPerLane];
  int head[kMaxDimsPerLane];
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    acc[i] = 0.0f;
    head[i] = min((lane + 32 * i) / dh, H - 1);
  }
  for (int base = 0; base < m; base += 32) {
    const int j = base + lane;
    const bool live = j < m;
    const int32_t row = live ? ent[j] : 0;
    const float* krow = a.keys + int64_t{row} * a.ld_kv;
    for (int h = 0; h < H; ++h) {
      const float sc = live ? HeadScore(qs, krow, h, dh, scale) : -INFINITY;
      const float newM = fmaxf(Ms[h], WarpMax(sc));
      const float p = live ? expf(sc - newM) : 0.0f;
      const float sum = WarpSum(p);
      const float al = expf(Ms[h] - newM);
      ps[h * 32 + lane] = p;
      __syncwarp();
      if (lane == 0) {
        alpha[h] = al;
        ls[h] = ls[h] * al + sum;
        Ms[h] = newM;
      }
      __syncwarp();
    }
    const int cnt = min(32, m - base);
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) {
      if (lane + 32 * i < S) acc[i] *= alpha[head[i]];
    }
    for (int jj = 0; jj < cnt; ++jj) {
      const int32_t vr = __shfl_sync(0xffffffffu, row, jj);
      const float* vrow = a.values + int64_t{vr} * a.ld_kv;
#pragma unroll
      for (int i = 0; i < kMaxDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < S) acc[i] += ps[head[i] * 32 + jj] * vrow[d];
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < S) o[d] = acc[i] / ls[head[i]];
  }
}

struct BackwardScratch {
  float* P;        // [nnz][H] softmax weights
  float* DS;       // [nnz][H] score gradients
  int32_t* rowof;  // [nnz] the row of each index position
};

__global__ void __launch_bounds__(32 * kWarps)
    PoolAttendBackwardRowsKernel(const __grid_constant__ mmc_pool_attend_backward_args g,
                                 BackwardScratch sc) {
  extern __shared__ float smem[];
  const mmc_pool_attend_args& a = g.fwd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = blockIdx.x * int64_t{kWarps} + warp;
  if (r >= a.rows) return;
  const int S = static_cast<int>(a.S), H = static_cast<int>(a.H), dh = S / H;
  float* qs = smem + warp * WarpSmemFloats(S, H);
  float* ps = qs + S;         // [H][32]
  float* Ms = ps + 32 * H;
  float* ls = Ms + H;
  float* mean = ls + H;
  float* dos = mean + 2 * H;  // [S]
  const int64_t off = a.offsets[r];
  const int m = static_cast<int>(a.offsets[r + 1] - off);
  const int32_t* ent = a.entries + off;
  float* dq = g.dq + r * g.ld_dq;
  if (m <= 0) {
    for (int d = lane; d < S; d += 32) dq[d] = 0.0f;
    return;
  }
  for (int d = lane; d < S; d += 32) {
    qs[d] = a.q[r * a.ld_q + d];
    dos[d] = g.dout[r * g.ld_dout + d];
  }
  for (int h = lane; h < H; h += 32) mean[h] = 0.0f;
  __syncwarp();
  const float scale = 1.0f / sqrtf(static_cast<float>(dh));
  const RowView v{a.q, a.keys, a.values, a.ld_q, a.ld_kv, S, H, dh, scale};
  RowMaxSum(v, ent, m, qs, Ms, ls);
  // p and dp of every entry; Σ_j p dp per head.
  for (int base = 0; base < m; base += 32) {
    const int j = base + lane;
    const bool live = j < m;
    const int32_t row = live ? ent[j] : 0;
    const float* krow = a.keys + int64_t{row} * a.ld_kv;
    const float* vrow = a.values + int64_t{row} * a.ld_kv;
    if (live) sc.rowof[off + j] = static_cast<int32_t>(r);
    for (int h = 0; h < H; ++h) {
      float p = 0.0f, dp = 0.0f;
      if (live) {
        p = expf(HeadScore(qs, krow, h, dh, scale) - Ms[h]) / ls[h];
        for (int d = h * dh; d < (h + 1) * dh; ++d) dp += dos[d] * vrow[d];
        sc.P[(off + j) * H + h] = p;
        sc.DS[(off + j) * H + h] = dp;
      }
      const float s = WarpSum(p * dp);
      if (lane == 0) mean[h] += s;
      __syncwarp();
    }
  }
  // ds, and dq = Σ_j ds_j k_j.
  float acc[kMaxDimsPerLane];
  int head[kMaxDimsPerLane];
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    acc[i] = 0.0f;
    head[i] = min((lane + 32 * i) / dh, H - 1);
  }
  for (int base = 0; base < m; base += 32) {
    const int j = base + lane;
    const bool live = j < m;
    const int32_t row = live ? ent[j] : 0;
    for (int h = 0; h < H; ++h) {
      float ds = 0.0f;
      if (live) {
        const int64_t k = (off + j) * H + h;
        ds = sc.P[k] * (sc.DS[k] - mean[h]) * scale;
        sc.DS[k] = ds;
      }
      ps[h * 32 + lane] = ds;
    }
    __syncwarp();
    const int cnt = min(32, m - base);
    for (int jj = 0; jj < cnt; ++jj) {
      const int32_t kr = __shfl_sync(0xffffffffu, row, jj);
      const float* krow = a.keys + int64_t{kr} * a.ld_kv;
#pragma unroll
      for (int i = 0; i < kMaxDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < S) acc[i] += ps[head[i] * 32 + jj] * krow[d];
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < S) dq[d] = acc[i];
  }
}

// One block per table row: its reference list (positions ascending) is cut
// into kTableWarps equal segments, one per warp; each warp sums its segment
// in order (lanes load 32 references at once, then walk them), and the warps'
// sums are added in warp order, then to dk / dv: a fixed order for a given
// index, so the bits never change between runs.
constexpr int kTableWarps = 8;

__global__ void __launch_bounds__(32 * kTableWarps)
    PoolAttendBackwardTableKernel(const __grid_constant__ mmc_pool_attend_backward_args g,
                                  BackwardScratch sc) {
  __shared__ float red[kTableWarps][2][kMaxS];
  const mmc_pool_attend_args& a = g.fwd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t i = blockIdx.x;
  const int begin = g.t_offsets[i], end = g.t_offsets[i + 1];
  if (begin >= end) return;  // the whole block
  const int S = static_cast<int>(a.S), H = static_cast<int>(a.H), dh = S / H;
  const int seg = (end - begin + kTableWarps - 1) / kTableWarps;
  const int wb = min(end, begin + warp * seg), we = min(end, wb + seg);
  float dk[kMaxDimsPerLane], dv[kMaxDimsPerLane];
  int head[kMaxDimsPerLane];
#pragma unroll
  for (int x = 0; x < kMaxDimsPerLane; ++x) {
    dk[x] = 0.0f;
    dv[x] = 0.0f;
    head[x] = min((lane + 32 * x) / dh, H - 1);
  }
  for (int base = wb; base < we; base += 32) {
    const bool live = base + lane < we;
    const int32_t k_lane = live ? g.t_positions[base + lane] : 0;
    const int32_t r_lane = live ? sc.rowof[k_lane] : 0;
    const int cnt = min(32, we - base);
#pragma unroll 4
    for (int jj = 0; jj < cnt; ++jj) {
      const int64_t k = __shfl_sync(0xffffffffu, k_lane, jj);
      const int64_t r = __shfl_sync(0xffffffffu, r_lane, jj);
      const float* q = a.q + r * a.ld_q;
      const float* dout = g.dout + r * g.ld_dout;
#pragma unroll
      for (int x = 0; x < kMaxDimsPerLane; ++x) {
        const int d = lane + 32 * x;
        if (d < S) {
          dk[x] += sc.DS[k * H + head[x]] * q[d];
          dv[x] += sc.P[k * H + head[x]] * dout[d];
        }
      }
    }
  }
#pragma unroll
  for (int x = 0; x < kMaxDimsPerLane; ++x) {
    const int d = lane + 32 * x;
    if (d < S) {
      red[warp][0][d] = dk[x];
      red[warp][1][d] = dv[x];
    }
  }
  __syncthreads();
  for (int d = threadIdx.x; d < S; d += blockDim.x) {
    float sk = 0.0f, sv = 0.0f;
    for (int w = 0; w < kTableWarps; ++w) {
      sk += red[w][0][d];
      sv += red[w][1][d];
    }
    g.dkeys[i * g.ld_dkv + d] += sk;
    g.dvalues[i * g.ld_dkv + d] += sv;
  }
}

int Validate(const mmc_pool_attend_args& a) {
  if (a.rows < 0 || a.S < 1 || a.H < 1 || a.S % a.H != 0 || a.nnz < 0 || a.table_rows < 0) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (a.ld_q < a.S || a.ld_kv < a.S) return MMC_ERR_INVALID_ARGUMENT;
  if (a.rows > 0 && (a.q == nullptr || a.offsets == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  if (a.nnz > 0 && (a.entries == nullptr || a.keys == nullptr || a.values == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (a.nnz > INT32_MAX) return MMC_ERR_UNSUPPORTED;
  return MMC_OK;
}

size_t Smem(const mmc_pool_attend_args& a) {
  return kWarps * WarpSmemFloats(static_cast<int>(a.S), static_cast<int>(a.H)) * sizeof(float);
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_pool_attend(mmc_context* ctx, const mmc_pool_attend_args* args) {
  MMC_ENTER(ctx);
  if (args == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  const mmc_pool_attend_args& a = *args;
  MMC_RETURN_IF_ERROR(Validate(a));
  if (a.ld_o < a.S || (a.rows > 0 && a.o == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  if (a.S > kMaxS) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "pool attention: S > 256");
  if (a.rows == 0) return MMC_OK;
  const int64_t blocks = CeilDiv(a.rows, kWarps);
  if (blocks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
  const size_t smem = Smem(a);
  if (smem > 48 * 1024) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "pool attention: H too large");
  PoolAttendKernel<<<static_cast<unsigned>(blocks), 32 * kWarps, smem, ctx->stream>>>(a);
  MMC_LAUNCH_CHECK(ctx, "PoolAttendKernel");
  return MMC_OK;
}

MMC_API int mmc_pool_index_transpose(const int32_t* offsets, int64_t rows,
                                     const int32_t* entries, int64_t table_rows,
                                     int32_t* t_offsets, int32_t* t_positions) {
  if (rows < 0 || table_rows < 0 || offsets == nullptr || t_offsets == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (offsets[0] != 0) return MMC_ERR_INVALID_ARGUMENT;
  for (int64_t r = 0; r < rows; ++r) {
    if (offsets[r + 1] < offsets[r]) return MMC_ERR_INVALID_ARGUMENT;
  }
  const int64_t nnz = offsets[rows];
  if (nnz > 0 && (entries == nullptr || t_positions == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  for (int64_t k = 0; k < nnz; ++k) {
    if (entries[k] < 0 || entries[k] >= table_rows) return MMC_ERR_INVALID_ARGUMENT;
  }
  // Counting sort by table row; positions stay ascending within a row.
  for (int64_t i = 0; i <= table_rows; ++i) t_offsets[i] = 0;
  for (int64_t k = 0; k < nnz; ++k) ++t_offsets[entries[k] + 1];
  for (int64_t i = 0; i < table_rows; ++i) t_offsets[i + 1] += t_offsets[i];
  return Guarded(nullptr, [&]() -> int {
    std::vector<int32_t> next(t_offsets, t_offsets + table_rows);
    for (int64_t k = 0; k < nnz; ++k) t_positions[next[entries[k]]++] = static_cast<int32_t>(k);
    return MMC_OK;
  });
}

MMC_API int mmc_pool_attend_backward(mmc_context* ctx,
                                     const mmc_pool_attend_backward_args* args) {
  MMC_ENTER(ctx);
  if (args == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  const mmc_pool_attend_backward_args& g = *args;
  const mmc_pool_attend_args& a = g.fwd;
  MMC_RETURN_IF_ERROR(Validate(a));
  if (g.ld_dout < a.S || g.ld_dq < a.S || g.ld_dkv < a.S) return MMC_ERR_INVALID_ARGUMENT;
  if (a.rows > 0 && (g.dout == nullptr || g.dq == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  if (a.nnz > 0 && (g.t_offsets == nullptr || g.t_positions == nullptr || g.dkeys == nullptr ||
                    g.dvalues == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (a.S > kMaxS) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "pool attention: S > 256");
  if (a.rows == 0) return MMC_OK;
  const int64_t blocks = CeilDiv(a.rows, kWarps);
  if (blocks > INT32_MAX || a.table_rows > INT32_MAX) return MMC_ERR_UNSUPPORTED;
  const size_t smem = Smem(a);
  if (smem > 48 * 1024) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "pool attention: H too large");
  return Guarded(ctx, [&]() -> int {
    const int64_t H = a.H, nnz = a.nnz;
    const size_t pbytes = ((nnz * H * sizeof(float)) + 255) / 256 * 256;
    Scratch scratch(ctx);
    MMC_RETURN_IF_ERROR(scratch.Allocate(2 * pbytes + nnz * sizeof(int32_t)));
    BackwardScratch sc{scratch.as<float>(), scratch.as<float>(pbytes),
                       scratch.as<int32_t>(2 * pbytes)};
    PoolAttendBackwardRowsKernel<<<static_cast<unsigned>(blocks), 32 * kWarps, smem,
                                   ctx->stream>>>(g, sc);
    MMC_LAUNCH_CHECK(ctx, "PoolAttendBackwardRowsKernel");
    if (nnz > 0 && a.table_rows > 0) {
      PoolAttendBackwardTableKernel<<<static_cast<unsigned>(a.table_rows), 32 * kTableWarps, 0,
                                      ctx->stream>>>(g, sc);
      MMC_LAUNCH_CHECK(ctx, "PoolAttendBackwardTableKernel");
    }
    return MMC_OK;
  });
}

}  // extern "C"
