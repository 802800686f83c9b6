// One-token steps of a few streams in session slots (memmamba_cuda.h,
// "Decode"): the layer of DESIGN 2.3 in six kernels whose work spreads over
// the GPU, where the general ops take twelve or more (a norm, the window
// kernel, two products and a fusion per read, a product per projection, the
// conv and the scan). At one token the step is bound by launches and by the
// latency of each small kernel, not by arithmetic, so fewer kernels that each
// read their weights once at full width are what makes it fast.
//
// decode_linear, per row r and output n:  y[r, n] (+)= Σ_k w[n, k]·x̂[r, k],
//   x̂ = x | RMSNorm(x) (mmc_rms_norm's reduction, the same bits) | the causal
//   conv + bias + SiLU of the slot's K−1 previous inputs and x (read only).
//   Every block builds all rows' x̂ in shared memory (a few KiB, from L2),
//   then a warp per output reads its row of w once, four weights a load
//   (fp32, or bf16 widened exactly: half the bytes, the same fp32 sums), for
//   every row. Optionally the conv runs on the way out instead, on outputs
//   n < conv_n: the in projection hands the x projection ξc, so the conv is
//   computed once per channel, not once in each of the x projection's
//   blocks.
// decode_read, in two kernels: per (head, read, row) a block computes the
//   row's note norm a, the head's query and its part of the read's attention
//   output o (slot_ops::ReadRow's math,
//   with the note loops split across warps: at one token a read is a chain
//   of small dependent steps, so it goes as fast as its work spreads); then
//   per row (blockIdx.y) and slice of D (blockIdx.x) the gates
//   (slot_ops::ReadGate, as mmc_slots_pool_read takes them) and
//   x[d] += f_i(d)·(γ_i·(wo_i[d]·o_i)) for each read i in order; one more
//   block of the row runs the note window (slot_ops::NoteWindow) meanwhile.
// decode_scan, per (row, channel): Δ = softplus(dt_w[e]·δ + dt_bias[e]) over
//   the channel's G lanes, then mmc_slots_selective_scan's update for one
//   row, and the conv state moves on by the row's input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "internal.cuh"
#include "slots.cuh"

namespace memmamba::cuda {
namespace {

using slot_ops::kThreads;
using slot_ops::kWarps;

constexpr int kMaxConvK = 16;
constexpr int kHeld = 12;  // float4s of a weight row a lane loads early: K <= 1536 whole

// Four consecutive weights from float4 k4 of a row: fp32, or bf16 widened
// exactly (the upper 16 bits of a float; the first in the low half).
__device__ __forceinline__ float4 LoadWeights4(const float* row, int64_t k4) {
  return __ldg(reinterpret_cast<const float4*>(row) + k4);
}
__device__ __forceinline__ float4 LoadWeights4(const uint16_t* row, int64_t k4) {
  const uint2 v = __ldg(reinterpret_cast<const uint2*>(row) + k4);
  return make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                     __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u));
}

// w: the weight [N, K], fp32 or bf16 (W). conv_n > 0: mmc_decode_linear_conv's
// conv of outputs n < conv_n into conv_y.
template <int kRows, int kInput, typename W>
__global__ void __launch_bounds__(kThreads)
    DecodeLinearKernel(mmc_decode_linear_args p, const W* w, int64_t conv_n, float* conv_y) {
  extern __shared__ float4 xs4[];  // [kRows][K / 4]
  float* xs = reinterpret_cast<float*>(xs4);
  __shared__ float inv[kRows];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t K = p.K, rows = p.rows, K4 = K / 4;
  // This warp's row of w (up to kHeld float4s a lane) is loaded while the
  // kernel before still runs: nothing writes weights.
  const int64_t n = blockIdx.x * int64_t{kWarps} + warp;
  const bool has_row = n < p.N;
  const W* w_row = w + (has_row ? n : 0) * K;
  float4 held[kHeld];
#pragma unroll
  for (int j = 0; j < kHeld; ++j) {
    const int64_t k = lane + 32 * j;
    if (has_row && k < K4) held[j] = LoadWeights4(w_row, k);
  }
  WaitForPrevious();
  AllowNext();
  if constexpr (kInput == MMC_DECODE_INPUT_RMS_NORM) {
    // A warp per row, as RmsNormKernel (norm.cu) sums it.
    for (int r = warp; r < rows; r += kWarps) {
      const float* xr = p.x + r * p.ld_x;
      double ss = 0.0;
#pragma unroll 8
      for (int64_t d = lane; d < K; d += 32) ss += static_cast<double>(xr[d]) * xr[d];
      ss = WarpSumDouble(ss);
      if (lane == 0) inv[r] = static_cast<float>(1.0 / sqrt(ss / K + p.eps));
    }
    __syncthreads();
  }
  // Rows past `rows` are zeros; loops unrolled so that a thread's loads are
  // in flight together.
  const bool keep = p.x_out != nullptr && blockIdx.x == 0;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float* xr = p.x + r * p.ld_x;
    const float* st = nullptr;
    if constexpr (kInput == MMC_DECODE_INPUT_CONV) {
      if (r < rows) {
        st = p.conv_state +
             (static_cast<int64_t>(p.slots[r]) * p.n_layer + p.layer) * (p.conv_k - 1) * K;
      }
    }
#pragma unroll 4
    for (int64_t k = threadIdx.x; k < K; k += kThreads) {
      float v = 0.0f;
      if (r < rows) {
        const float x = xr[k];
        if constexpr (kInput == MMC_DECODE_INPUT_PLAIN) {
          v = x;
        } else if constexpr (kInput == MMC_DECODE_INPUT_RMS_NORM) {
          v = x * inv[r] * p.norm[k];
        } else {
          // SlotConvKernel's sum: bias, the state's inputs oldest first, x.
          const int64_t ck = p.conv_k;
          const float* wk = p.conv_w + k * ck;
          float acc = p.conv_b[k];
#pragma unroll 4
          for (int64_t j = 0; j + 1 < ck; ++j) acc += wk[j] * st[j * K + k];
          acc += wk[ck - 1] * x;
          v = Silu(acc);
        }
        if (keep) p.x_out[r * K + k] = v;
      }
      xs[r * K + k] = v;
    }
  }
  __syncthreads();
  if (!has_row) return;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
  auto add = [&](const float4& wv, int64_t k) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float4 xv = xs4[r * K4 + k];
      acc[r] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
    }
  };
#pragma unroll
  for (int j = 0; j < kHeld; ++j) {
    const int64_t k = lane + 32 * j;
    if (k < K4) add(held[j], k);
  }
#pragma unroll 4
  for (int64_t k = lane + 32 * kHeld; k < K4; k += 32) add(LoadWeights4(w_row, k), k);
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = WarpSum(acc[r]);
  if (lane != 0) return;
  const bool conv_out = n < conv_n;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r < rows) {
      float* y = p.y + r * p.ld_y + n;
      const float v = p.accumulate ? *y + acc[r] : acc[r];
      *y = v;
      if (conv_out) {
        // The CONV input's sum above: bias, the state's inputs oldest first, v.
        const int64_t ck = p.conv_k, C = conv_n;
        const float* st =
            p.conv_state + (static_cast<int64_t>(p.slots[r]) * p.n_layer + p.layer) * (ck - 1) * C;
        const float* wk = p.conv_w + n * ck;
        float c = p.conv_b[n];
        for (int64_t j = 0; j + 1 < ck; ++j) c += wk[j] * st[j * C + n];
        c += wk[ck - 1] * v;
        conv_y[r * C + n] = Silu(c);
      }
    }
  }
}

constexpr int kQueryRowsHeld = 2;  // DecodeAttendKernel: rows of wq a warp loads early
constexpr int kQueryHeld = 8;      // and float4s of each a lane holds: D <= 1024 whole
constexpr int kReadRowsPerWarp = 8;
constexpr int kReadColumnsPerBlock = kWarps * kReadRowsPerWarp;

// One head h (blockIdx.x) of read i (blockIdx.y) of row b (blockIdx.z): the
// note norm a of the row (every block; block (0, 0) writes it out), the
// head's query q_h = wq_h·a, and slot_ops::ReadRow's folded attention for
// that head, o[(b·2 + i)·S + h·dh
// + k] = V_h Σ_j softmax_j(qk_h·ŝ_j) ŝ_j with qk_h = K_hᵀ q_h / √dh (0 where
// the pools are empty), with the work of one row spread over H blocks and
// every note loop split across warps.
__global__ void __launch_bounds__(kThreads)
    DecodeAttendKernel(mmc_slot_pools pools, mmc_decode_read_args r) {
  extern __shared__ float4 sm4[];
  float* sm = reinterpret_cast<float*>(sm4);
  __shared__ float inv;
  const int h = blockIdx.x, i = blockIdx.y;
  const int64_t b = blockIdx.z, D = r.D, D4 = D / 4;
  const mmc_slot_read_args& ri = r.read[i];
  const int S = static_cast<int>(pools.S), dh = S / static_cast<int>(ri.H);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // The first kQueryRowsHeld of this warp's rows of wq, up to kQueryHeld
  // float4s a lane, load while the kernel before still runs.
  const float4* wq4 = reinterpret_cast<const float4*>(r.wq[i] + static_cast<int64_t>(h) * dh * D);
  float4 held[kQueryRowsHeld][kQueryHeld];
#pragma unroll
  for (int j = 0; j < kQueryRowsHeld; ++j) {
    const int k = warp + kWarps * j;
#pragma unroll
    for (int c = 0; c < kQueryHeld; ++c) {
      const int64_t col = lane + 32 * c;
      if (k < dh && col < D4) held[j][c] = __ldg(wq4 + k * D4 + col);
    }
  }
  // The head's rows of K and V, and the notes of the pools it reads, on
  // their way to L2 meanwhile (slots were uploaded before the step began).
  const int64_t slot = r.slots[b];
  PrefetchL2(ri.k + static_cast<int64_t>(h) * dh * S, int64_t{4} * dh * S);
  PrefetchL2(ri.v + static_cast<int64_t>(h) * dh * S, int64_t{4} * dh * S);
  for (int64_t l = ri.src_begin; l < ri.src_end; ++l) {
    PrefetchL2(pools.summary + (slot * pools.n_layer + l) * pools.capacity * S,
               int64_t{4} * pools.capacity * S);
  }
  WaitForPrevious();
  AllowNext();
  float* a = sm;                                 // [D]
  float* q = a + D;                              // [S]: this head's dh of it
  float* qk = q + S;                             // [S]
  float* u = qk + S;                             // [S]
  float* part = u + S;                           // [max(kThreads, S)]
  float* p = part + max(kThreads, S);            // [m_max]
  const int64_t used = D + 3 * S + max(kThreads, S) + ri.m_max;
  const float** note = reinterpret_cast<const float**>(sm + used + used % 2);
  float* ob = r.o + (b * 2 + i) * S + h * dh;
  // a = RMSNorm(x) as RmsNormKernel (norm.cu) sums it.
  const float* xr = r.x + b * D;
  if (warp == 0) {
    double ss = 0.0;
#pragma unroll 8
    for (int64_t d = lane; d < D; d += 32) ss += static_cast<double>(xr[d]) * xr[d];
    ss = WarpSumDouble(ss);
    if (lane == 0) inv = static_cast<float>(1.0 / sqrt(ss / D + r.eps));
  }
  __syncthreads();
  const bool first = h == 0 && i == 0;
#pragma unroll 4
  for (int64_t d = threadIdx.x; d < D; d += kThreads) {
    const float v = xr[d] * inv * r.note_norm[d];
    a[d] = v;
    if (first) r.a[b * D + d] = v;
  }
  __syncthreads();
  // The head's query, a warp per output, lanes along wq's row in float4s
  // (the held ones first, then the rest of the row, then any further rows).
  auto dot = [&](const float4& wv, int64_t c) {
    const float4 av = sm4[c];
    return wv.x * av.x + wv.y * av.y + wv.z * av.z + wv.w * av.w;
  };
#pragma unroll
  for (int j = 0; j < kQueryRowsHeld; ++j) {
    const int k = warp + kWarps * j;
    if (k >= dh) break;
    float acc = 0.0f;
#pragma unroll
    for (int c = 0; c < kQueryHeld; ++c) {
      const int64_t col = lane + 32 * c;
      if (col < D4) acc += dot(held[j][c], col);
    }
    for (int64_t col = lane + 32 * kQueryHeld; col < D4; col += 32) {
      acc += dot(__ldg(wq4 + k * D4 + col), col);
    }
    acc = WarpSum(acc);
    if (lane == 0) q[k] = acc;
  }
  for (int k = warp + kWarps * kQueryRowsHeld; k < dh; k += kWarps) {
    float acc = 0.0f;
#pragma unroll 6
    for (int64_t col = lane; col < D4; col += 32) acc += dot(__ldg(wq4 + k * D4 + col), col);
    acc = WarpSum(acc);
    if (lane == 0) q[k] = acc;
  }
  slot_ops::AttendHead(pools, ri, slot, h, q, qk, u, part, p, note, ob);
}

// A row's reads (o from DecodeAttendKernel) projected, gated and fused into
// its slice of x (blockIdx.x), and the row's note window (block 0).
template <int kMode>
__global__ void __launch_bounds__(kThreads) DecodeReadKernel(mmc_slot_pools pools,
                                                             mmc_decode_read_args r) {
  extern __shared__ float o[];  // the row's reads [2][S]
  __shared__ float red[kWarps];
  const int64_t b = blockIdx.y, S = pools.S, D = r.D;
  {  // This block's rows of each read's output projection, and the gates' weights.
    const int64_t d_lo = blockIdx.x * int64_t{kReadColumnsPerBlock};
    const int64_t cols = d_lo < D ? min(int64_t{kReadColumnsPerBlock}, D - d_lo) : 0;
    for (int i = 0; i < r.n_reads; ++i) {
      PrefetchL2(r.wo[i] + d_lo * S, int64_t{4} * cols * S);
      PrefetchL2(r.read[i].gw, int64_t{4} * D);
    }
  }
  WaitForPrevious();
  AllowNext();
  const int64_t slot = r.slots[b];
  const float* ar = r.a + b * D;
  if (blockIdx.x + 1 == gridDim.x) {  // the last block: the note window alone
    float* acc = r.win_max + (slot * r.n_layer + r.layer) * D;
    slot_ops::NoteWindow(ar, 1, D, acc, r.windows[b] >= 0, r.sw, r.sb, r.m + b * D, r.score + b,
                         red);
    return;
  }
  float gate[2] = {0.0f, 0.0f};
  for (int i = 0; i < r.n_reads; ++i) {
    gate[i] = slot_ops::ReadGate(pools, r.read[i], slot, 0, ar, red);
  }
  for (int64_t idx = threadIdx.x; idx < r.n_reads * S; idx += kThreads) {
    o[idx] = r.o[b * 2 * S + idx];
  }
  __syncthreads();
  // A warp takes kReadRowsPerWarp consecutive columns, their loads together.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t d0 = blockIdx.x * int64_t{kReadColumnsPerBlock} + warp * kReadRowsPerWarp;
  float xv[kReadRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kReadRowsPerWarp; ++j) xv[j] = d0 + j < D ? r.x[b * D + d0 + j] : 0.0f;
  for (int i = 0; i < r.n_reads; ++i) {
    if (gate[i] == 0.0f) continue;  // ReadFuseKernel skips such rows
    float co[kReadRowsPerWarp] = {};
    for (int64_t s = lane; s < S; s += 32) {
      const float os = o[i * S + s];
#pragma unroll
      for (int j = 0; j < kReadRowsPerWarp; ++j) {
        if (d0 + j < D) co[j] += r.wo[i][(d0 + j) * S + s] * os;
      }
    }
#pragma unroll
    for (int j = 0; j < kReadRowsPerWarp; ++j) {
      const float c = WarpSum(co[j]);
      const int64_t d = d0 + j;
      if (d < D) {
        const float f =
            FuseWeight<kMode>(r.alpha[i], r.fuse[i], kMode == MMC_FUSION_GATED ? ar[d] : 0.0f, d);
        xv[j] += f * (gate[i] * c);
      }
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < kReadRowsPerWarp; ++j) {
      if (d0 + j < D) r.x[b * D + d0 + j] = xv[j];
    }
  }
}

constexpr int kScanThreads = 128;
constexpr int kScanHeld = 4;  // Δ's weights a lane loads early

// SlotScanKernel (sessions.cu) for one row per stream: a channel's N states
// over G lanes (kSPL each), which first share Δ's product of R terms.
template <int kSPL>
__global__ void __launch_bounds__(kScanThreads) DecodeScanKernel(mmc_decode_scan_args a,
                                                                 int g_shift) {
  const int64_t E = a.E, N = a.N, R = a.R;
  const int G = 1 << g_shift;
  const int64_t idx = blockIdx.x * int64_t{kScanThreads} + threadIdx.x;
  const int64_t group = idx >> g_shift;
  const int g = static_cast<int>(idx & (G - 1));
  // Every lane of a warp takes part in the sums; lanes past the end compute
  // on nothing and write nothing.
  const bool live = group < a.rows * E;
  const int64_t b = live ? group / E : 0, e = live ? group - b * E : 0;
  // Weights while the kernel before still runs.
  float A[kSPL], wdt[kScanHeld];
#pragma unroll
  for (int i = 0; i < kSPL; ++i) {
    const int64_t n = g + int64_t{G} * i;
    A[i] = live && n < N ? a.A[n * E + e] : 0.0f;
  }
#pragma unroll
  for (int j = 0; j < kScanHeld; ++j) {
    const int64_t k = g + int64_t{G} * j;
    wdt[j] = live && k < R ? a.dt_w[e * R + k] : 0.0f;
  }
  const float bias = live ? a.dt_bias[e] : 0.0f, Dv = live ? a.D[e] : 0.0f;
  WaitForPrevious();
  AllowNext();
  const int64_t slot = live ? a.slots[b] : 0;
  const float* dbc = a.dbc + b * a.ld_dbc;
  float dt = 0.0f;
  if (live) {
#pragma unroll
    for (int j = 0; j < kScanHeld; ++j) {
      const int64_t k = g + int64_t{G} * j;
      if (k < R) dt += wdt[j] * dbc[k];
    }
    for (int64_t k = g + int64_t{G} * kScanHeld; k < R; k += G) dt += a.dt_w[e * R + k] * dbc[k];
  }
  for (int o = G >> 1; o > 0; o >>= 1) dt += __shfl_xor_sync(0xffffffffu, dt, o, G);
  float acc = 0.0f, u = 0.0f;
  if (live) {
    const float d = Softplus(dt + bias);
    u = a.xc[b * E + e];
    const float du = d * u;
    const float* Br = dbc + R;
    const float* Cr = Br + N;
    float* st = a.state + (slot * a.n_layer + a.layer) * N * E;
#pragma unroll
    for (int i = 0; i < kSPL; ++i) {
      const int64_t n = g + int64_t{G} * i;
      if (n < N) {
        const float s = __expf(d * A[i]) * st[n * E + e] + du * Br[n];
        st[n * E + e] = s;
        acc += s * Cr[n];
      }
    }
  }
  for (int o = G >> 1; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o, G);
  if (!live || g != 0) return;
  a.y[b * E + e] = (acc + Dv * u) * Silu(a.z[b * a.ld_z + e]);
  const int64_t ck = a.conv_k;
  if (ck > 1) {
    float* cs = a.conv_state + (slot * a.n_layer + a.layer) * (ck - 1) * E;
    for (int64_t k = 0; k + 2 < ck; ++k) cs[k * E + e] = cs[(k + 1) * E + e];
    cs[(ck - 2) * E + e] = a.xi[b * a.ld_xi + e];
  }
}

template <int kRows, typename W>
cudaError_t LaunchLinear(mmc_context* ctx, const mmc_decode_linear_args& p, const W* w,
                         int64_t conv_n, float* conv_y, unsigned blocks, size_t smem) {
  switch (p.input) {
    case MMC_DECODE_INPUT_PLAIN:
      return LaunchDependent(ctx, DecodeLinearKernel<kRows, MMC_DECODE_INPUT_PLAIN, W>, blocks,
                             kThreads, smem, p, w, conv_n, conv_y);
    case MMC_DECODE_INPUT_RMS_NORM:
      return LaunchDependent(ctx, DecodeLinearKernel<kRows, MMC_DECODE_INPUT_RMS_NORM, W>,
                             blocks, kThreads, smem, p, w, conv_n, conv_y);
    default:
      return LaunchDependent(ctx, DecodeLinearKernel<kRows, MMC_DECODE_INPUT_CONV, W>, blocks,
                             kThreads, smem, p, w, conv_n, conv_y);
  }
}

// mmc_decode_linear (conv_n = 0), mmc_decode_linear_conv and, with W =
// uint16_t, mmc_decode_linear_bf16 (p.w not read).
template <typename W>
int DecodeLinear(mmc_context* ctx, const mmc_decode_linear_args& p, const W* w, int64_t conv_n,
                 float* conv_y) {
  if (p.rows < 0 || p.rows > MMC_DECODE_MAX_ROWS || p.K < 1 || p.N < 0 || p.ld_x < p.K ||
      p.ld_y < p.N || p.input < MMC_DECODE_INPUT_PLAIN || p.input > MMC_DECODE_INPUT_CONV) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  const bool conv_in = p.input == MMC_DECODE_INPUT_CONV, conv_out = conv_n > 0;
  if (conv_n < 0 || conv_n > p.N || (conv_in && conv_out)) return MMC_ERR_INVALID_ARGUMENT;
  if (p.rows == 0 || p.N == 0) return MMC_OK;
  if (p.x == nullptr || w == nullptr || p.y == nullptr ||
      (p.input == MMC_DECODE_INPUT_RMS_NORM && p.norm == nullptr) ||
      (conv_out && conv_y == nullptr) ||
      ((conv_in || conv_out) &&
       (p.conv_w == nullptr || p.conv_b == nullptr || p.slots == nullptr || p.conv_k < 1 ||
        (p.conv_k > 1 && p.conv_state == nullptr) || p.n_layer < 1 || p.layer < 0 ||
        p.layer >= p.n_layer))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  const int64_t rows_pow2 = MMC_DECODE_ROWS_ROUNDED(p.rows);
  if (p.K % 4 != 0 || reinterpret_cast<uintptr_t>(w) % (4 * sizeof(W)) != 0 ||
      rows_pow2 * p.K > MMC_DECODE_MAX_INPUT_FLOATS || (conv_in && p.conv_k > kMaxConvK)) {
    return FailWith(ctx, MMC_ERR_UNSUPPORTED,
                    "decode_linear: needs K % 4 == 0, weights aligned to 4 of them, rows·K <= " +
                        std::to_string(MMC_DECODE_MAX_INPUT_FLOATS) +
                        " (rows rounded up to a power of two) and a conv of at most 16 taps");
  }
  return Guarded(ctx, [&]() -> int {
    const int64_t blocks = CeilDiv(p.N, kWarps);
    if (blocks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
    const size_t smem = static_cast<size_t>(rows_pow2 * p.K) * sizeof(float);
    const unsigned grid = static_cast<unsigned>(blocks);
    cudaError_t err;
    switch (rows_pow2) {
      case 1: err = LaunchLinear<1>(ctx, p, w, conv_n, conv_y, grid, smem); break;
      case 2: err = LaunchLinear<2>(ctx, p, w, conv_n, conv_y, grid, smem); break;
      case 4: err = LaunchLinear<4>(ctx, p, w, conv_n, conv_y, grid, smem); break;
      default: err = LaunchLinear<8>(ctx, p, w, conv_n, conv_y, grid, smem); break;
    }
    if (err != cudaSuccess) return Fail(ctx, err, "decode_linear");
    return MMC_OK;
  });
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

MMC_API int mmc_decode_linear(mmc_context* ctx, const mmc_decode_linear_args* args) {
  MMC_ENTER(ctx);
  if (args == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  return DecodeLinear(ctx, *args, args->w, 0, nullptr);
}

MMC_API int mmc_decode_linear_conv(mmc_context* ctx, const mmc_decode_linear_conv_args* args) {
  MMC_ENTER(ctx);
  if (args == nullptr || args->conv_n < 1) return MMC_ERR_INVALID_ARGUMENT;
  return DecodeLinear(ctx, args->linear, args->linear.w, args->conv_n, args->conv_y);
}

MMC_API int mmc_decode_linear_bf16(mmc_context* ctx, const mmc_decode_linear_bf16_args* args) {
  MMC_ENTER(ctx);
  if (args == nullptr || args->op.conv_n < 0) return MMC_ERR_INVALID_ARGUMENT;
  return DecodeLinear(ctx, args->op.linear, args->w, args->op.conv_n, args->op.conv_y);
}

MMC_API int mmc_decode_read(mmc_context* ctx, const mmc_slot_pools* pools,
                            const mmc_decode_read_args* args) {
  MMC_ENTER(ctx);
  if (pools == nullptr || args == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  const mmc_decode_read_args& r = *args;
  if (r.rows < 0 || r.rows > MMC_DECODE_READ_MAX_ROWS || r.D < 1 || r.n_reads < 1 ||
      r.n_reads > 2) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (r.rows == 0) return MMC_OK;
  if (r.D % 4 != 0) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "decode_read: D % 4 != 0");
  if (r.a == nullptr || r.note_norm == nullptr || r.o == nullptr || r.slots == nullptr ||
      r.x == nullptr || r.windows == nullptr || r.win_max == nullptr || r.sw == nullptr ||
      r.m == nullptr || r.score == nullptr ||
      r.n_layer < 1 || r.layer < 0 || r.layer >= r.n_layer || pools->S < 1 ||
      pools->count == nullptr || pools->summary == nullptr ||
      (r.fusion != MMC_FUSION_WEIGHTED && r.fusion != MMC_FUSION_RESIDUAL &&
       r.fusion != MMC_FUSION_GATED)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  int64_t m_max = 0;
  for (int i = 0; i < r.n_reads; ++i) {
    const mmc_slot_read_args& ri = r.read[i];
    if (ri.H < 1 || pools->S % ri.H != 0 || ri.D != r.D || ri.src_begin < 0 ||
        ri.src_end < ri.src_begin || ri.src_end > pools->n_layer || ri.m_max < 0 ||
        ri.m_max < (ri.src_end - ri.src_begin) * pools->capacity || ri.gw == nullptr ||
        ri.k == nullptr || ri.v == nullptr || ri.ver_ids != nullptr ||
        r.wq[i] == nullptr || !Aligned16(r.wq[i]) || r.wo[i] == nullptr ||
        (r.fusion == MMC_FUSION_WEIGHTED && r.alpha[i] == nullptr) ||
        (r.fusion == MMC_FUSION_GATED && r.fuse[i] == nullptr)) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
    m_max = std::max(m_max, ri.m_max);
  }
  if (r.n_reads == 2 && r.read[1].H != r.read[0].H) return MMC_ERR_INVALID_ARGUMENT;
  return Guarded(ctx, [&]() -> int {
    const size_t attend_smem = slot_ops::AttendHeadSharedBytes(r.D, pools->S, m_max);  // a [D]
    const size_t smem = static_cast<size_t>(2 * pools->S) * sizeof(float);
    if (std::max(attend_smem, smem) > ctx->smem_optin) {
      return FailWith(ctx, MMC_ERR_UNSUPPORTED,
                      "decode_read: " + std::to_string(std::max(attend_smem, smem)) +
                          " bytes of shared memory per block exceed the device's " +
                          std::to_string(ctx->smem_optin));
    }
    auto allow = [&](auto kernel, size_t bytes) -> int {
      if (bytes > 48 * 1024) {
        MMC_CUDA_CHECK(ctx, cudaFuncSetAttribute(kernel,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(bytes)));
      }
      return MMC_OK;
    };
    {
      MMC_RETURN_IF_ERROR(allow(DecodeAttendKernel, attend_smem));
      const dim3 grid(static_cast<unsigned>(r.read[0].H), static_cast<unsigned>(r.n_reads),
                      static_cast<unsigned>(r.rows));
      const cudaError_t err =
          LaunchDependent(ctx, DecodeAttendKernel, grid, kThreads, attend_smem, *pools, r);
      if (err != cudaSuccess) return Fail(ctx, err, "decode_read");
    }
    // One block more in x for the note window (DecodeReadKernel).
    const dim3 grid(static_cast<unsigned>(CeilDiv(r.D, kReadColumnsPerBlock) + 1),
                    static_cast<unsigned>(r.rows));
    auto launch = [&](auto kernel) -> int {
      MMC_RETURN_IF_ERROR(allow(kernel, smem));
      const cudaError_t err = LaunchDependent(ctx, kernel, grid, kThreads, smem, *pools, r);
      if (err != cudaSuccess) return Fail(ctx, err, "decode_read");
      return MMC_OK;
    };
    switch (r.fusion) {
      case MMC_FUSION_WEIGHTED: return launch(DecodeReadKernel<MMC_FUSION_WEIGHTED>);
      case MMC_FUSION_RESIDUAL: return launch(DecodeReadKernel<MMC_FUSION_RESIDUAL>);
      default: return launch(DecodeReadKernel<MMC_FUSION_GATED>);
    }
  });
}

MMC_API int mmc_decode_scan(mmc_context* ctx, const mmc_decode_scan_args* args) {
  MMC_ENTER(ctx);
  if (args == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  const mmc_decode_scan_args& a = *args;
  if (a.rows < 0 || a.rows > MMC_DECODE_MAX_ROWS || a.E < 1 || a.N < 1 || a.R < 1 ||
      a.ld_dbc < a.R + 2 * a.N || a.ld_z < a.E || a.ld_xi < a.E || a.conv_k < 1 ||
      a.n_layer < 1 || a.layer < 0 || a.layer >= a.n_layer) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (a.N > 64) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "decode_scan: N > 64");
  if (a.rows == 0) return MMC_OK;
  if (a.xc == nullptr || a.dbc == nullptr || a.dt_w == nullptr || a.dt_bias == nullptr ||
      a.A == nullptr || a.D == nullptr || a.z == nullptr || a.state == nullptr ||
      a.slots == nullptr || a.y == nullptr || a.xi == nullptr ||
      (a.conv_k > 1 && a.conv_state == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    // G = the next power of two >= N, at most 32; kSPL = ceil(N / G).
    int g_shift = 0;
    while ((int64_t{1} << g_shift) < a.N && g_shift < 5) ++g_shift;
    const int64_t spl = CeilDiv(a.N, int64_t{1} << g_shift);
    const unsigned grid =
        static_cast<unsigned>(CeilDiv(a.rows * a.E << g_shift, kScanThreads));
    const cudaError_t err =
        spl == 1 ? LaunchDependent(ctx, DecodeScanKernel<1>, grid, kScanThreads, 0, a, g_shift)
                 : LaunchDependent(ctx, DecodeScanKernel<2>, grid, kScanThreads, 0, a, g_shift);
    if (err != cudaSuccess) return Fail(ctx, err, "decode_scan");
    return MMC_OK;
  });
}
