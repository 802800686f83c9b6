// The selective scan with softplus, D skip and SiLU gate fused (DESIGN 2.3
// step 4; backend.h ScanArgs / ScanBackwardArgs; the CPU twin is ScanPosition
// and ScanBackwardChannels in src/backend/cpu/cpu_backend.cc).
//
// Forward, per stream and channel e, for t = 0..T-1:
//   Δ = softplus(dt[t,e] + dt_bias[e]);  s[n,e] ← exp(Δ·A[n,e])·s[n,e] + Δ·B[t,n]·ξc[t,e]
//   y[t,e] = (Σ_n s[n,e]·C[t,n] + D[e]·ξc[t,e]) · SiLU(z[t,e])          (y overwritten)
//   state is read and updated in place; when checkpoints is set, the state
//   before positions 0, 64, 128, ... is written there ([ceil(T/64), N, E]).
// Backward, from the checkpoints, chunk by chunk from the last: the chunk's
//   states are recomputed into shared memory, then walked backwards carrying
//   ∂L/∂s into the previous state:
//   yy = Σ_n s·C + D·ξc;  dz = dy·yy·SiLU'(z);  dyy = dy·SiLU(z)
//   g_n = carry_n + dyy·C_n;  carry_n ← g_n·exp(Δ·A_n)
//   dΔ = Σ_n g_n·s_prev,n·exp(Δ·A_n)·A_n + g_n·B_n·ξc;  ddt = dΔ·σ(dt + dt_bias)
//   dξc = dyy·D + Σ_n g_n·Δ·B_n;  dB[t,n] = Σ_e g_n·Δ·ξc;  dC[t,n] = Σ_e dyy·s_n
//   dA += g_n·s_prev,n·exp(Δ·A_n)·Δ;  dD += dyy·ξc;  ddt_bias += ddt
//   dxc, ddt, dz, dB, dC are overwritten; dA, dD, ddt_bias accumulated.
//
// Layout: a block holds `cpb` channels of one stream; G lanes (a power of two)
// share a channel, lane l holding the states n = l, l+G, ... (kSPL of them:
// 2 in the forward, 1 in the backward for N <= 32). Each chunk of 64
// positions has Δ, ξc (and in the backward dy·SiLU(z), dy·SiLU'(z), σ) of the
// block's channels and B, C staged in shared memory by the whole block. The
// loops over t keep only the recurrence serial: every cross-lane sum (Σ_n per
// channel, Σ_e per (t, n)) is taken from per-lane partials in shared memory
// after the loop (forward: per chunk; backward: every kFlushRows rows), in a
// fixed order. dB and dC sum over all E channels: per block in channel order,
// then a second kernel sums the blocks in order. dA, dD and ddt_bias go to a
// per-stream partial, then into the outputs in stream order (streams of a
// batch may share them). No atomics: deterministic.
// Parallelism is over (stream, channel) only: at B = 4, E = 1536 the H100
// holds ~12 warps per SM and each walks all T positions, so both directions
// are latency-bound (bench/bench_cuda_ops; a scan split over T is the next
// step). exp(Δ·A) uses __expf (ex2.approx; relative error ~2^-21·(1+|Δ·A|)),
// the other transcendental functions libdevice's accurate ones.
#include <algorithm>
#include <vector>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kChunk = MMC_SCAN_CHUNK;
static_assert(kChunk == 64, "backend.h kScanChunk");
constexpr int kMaxN = 64;
constexpr int kMaxStreamsForward = 16;
constexpr int kMaxStreamsBackward = 8;

using ScanBatch = Batch<mmc_scan_args, kMaxStreamsForward>;

struct ScanBackwardItem {
  mmc_scan_backward_args a;
  int64_t bc_offset;    // this stream's dB/dC partials, in floats
  int64_t grad_index;   // this stream's dA/dD/ddt_bias partial
};
using ScanBackwardBatch = Batch<ScanBackwardItem, kMaxStreamsBackward>;
static_assert(sizeof(ScanBatch) <= 4000 && sizeof(ScanBackwardBatch) <= 4000,
              "kernel parameters stay under 4 KiB");

// Lanes per channel and threads per block for N states and kSPL per lane.
struct Layout {
  int g_shift;   // G = 1 << g_shift
  int threads;   // 32..128, a multiple of G
  int cpb() const { return threads >> g_shift; }
};

Layout MakeLayout(int64_t N, int spl) {
  int shift = 0;
  while ((int64_t{1} << shift) * spl < N) ++shift;
  const int G = 1 << shift;
  return Layout{shift, std::clamp(16 * G, 32, 128)};
}

template <int kSPL>
__global__ void __launch_bounds__(128)
    ScanForwardKernel(const __grid_constant__ ScanBatch batch, int g_shift) {
  extern __shared__ float sm[];
  const mmc_scan_args& a = batch.item[blockIdx.y];
  const int64_t T = a.T, E = a.E, N = a.N;
  const int G = 1 << g_shift;
  const int bd = blockDim.x;
  const int cpb = bd >> g_shift;
  const int tid = threadIdx.x, ch = tid >> g_shift, gl = tid & (G - 1);
  const int64_t e0 = blockIdx.x * int64_t{cpb};
  const int64_t e = e0 + ch;
  const bool valid = e < E;
  float* s_delta = sm;                  // [kChunk][cpb]
  float* s_u = s_delta + kChunk * cpb;  // [kChunk][cpb]
  float* s_B = s_u + kChunk * cpb;      // [kChunk][N]
  float* s_C = s_B + kChunk * N;        // [kChunk][N]
  float* s_part = s_C + kChunk * N;     // [kChunk][bd]: each lane's Σ over its states

  float st[kSPL], Ar[kSPL];
#pragma unroll
  for (int i = 0; i < kSPL; ++i) {
    const int64_t n = gl + int64_t{G} * i;
    const bool live = valid && n < N;
    st[i] = live ? a.state[n * E + e] : 0.0f;
    Ar[i] = live ? a.A[n * E + e] : 0.0f;
  }
  const int64_t chunks = (T + kChunk - 1) / kChunk;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t t0 = c * kChunk;
    const int L = static_cast<int>(min(int64_t{kChunk}, T - t0));
    if (a.checkpoints != nullptr) {
      float* cp = a.checkpoints + c * N * E;
#pragma unroll
      for (int i = 0; i < kSPL; ++i) {
        const int64_t n = gl + int64_t{G} * i;
        if (valid && n < N) cp[n * E + e] = st[i];
      }
    }
    __syncthreads();  // the previous chunk's tiles are consumed
#pragma unroll 4
    for (int idx = tid; idx < L * cpb; idx += bd) {
      const int t = idx / cpb, j = idx - t * cpb;
      const int64_t ee = e0 + j;
      float d = 0.0f, u = 0.0f;
      if (ee < E) {
        d = Softplus(__ldg(a.dt + (t0 + t) * E + ee) + __ldg(a.dt_bias + ee));
        u = __ldg(a.xc + (t0 + t) * E + ee);
      }
      s_delta[idx] = d;
      s_u[idx] = u;
    }
#pragma unroll 4
    for (int idx = tid; idx < L * N; idx += bd) {
      const int t = idx / static_cast<int>(N), n = idx - t * static_cast<int>(N);
      s_B[idx] = __ldg(a.B + (t0 + t) * a.ld_bc + n);
      s_C[idx] = __ldg(a.C + (t0 + t) * a.ld_bc + n);
    }
    __syncthreads();
    // The recurrence is the only serial chain; no cross-lane work inside the
    // loop, so unrolled steps overlap.
#pragma unroll 4
    for (int t = 0; t < L; ++t) {
      const float d = s_delta[t * cpb + ch];
      const float du = d * s_u[t * cpb + ch];
      float acc = 0.0f;
#pragma unroll
      for (int i = 0; i < kSPL; ++i) {
        const int n = gl + G * i;
        if (n < N) {
          st[i] = __expf(d * Ar[i]) * st[i] + du * s_B[t * N + n];
          acc += st[i] * s_C[t * N + n];
        }
      }
      s_part[t * bd + tid] = acc;
    }
    __syncthreads();
    for (int idx = tid; idx < L * cpb; idx += bd) {
      const int t = idx / cpb, j = idx - t * cpb;
      const int64_t ee = e0 + j;
      if (ee < E) {
        const float* part = s_part + t * bd + j * G;
        float yy = 0.0f;
        for (int l = 0; l < G; ++l) yy += part[l];
        yy += a.D[ee] * s_u[idx];
        a.y[(t0 + t) * E + ee] = yy * Silu(__ldg(a.z + (t0 + t) * a.ld_z + ee));
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kSPL; ++i) {
    const int64_t n = gl + int64_t{G} * i;
    if (valid && n < N) a.state[n * E + e] = st[i];
  }
}

size_t ForwardSmem(const Layout& l, int64_t N) {
  return (2 * kChunk * l.cpb() + 2 * kChunk * N + int64_t{kChunk} * l.threads) * sizeof(float);
}

// Rows of the walk back between two flushes of the per-lane partials (a
// divisor of kChunk; more rows, more shared memory, fewer barriers).
constexpr int kFlushRows = 8;

size_t BackwardSmem(const Layout& l, int spl, int64_t N) {
  const int64_t bd = l.threads, cpb = l.cpb(), flush = kFlushRows;
  return (int64_t{kChunk} * spl * bd + 5 * kChunk * cpb + 2 * kChunk * N + 3 * flush * bd +
          2 * flush * spl * bd + 2 * flush * cpb) *
         sizeof(float);
}

// The walk back keeps every cross-lane sum out of its loop: each lane writes
// its partial terms (Σ over its states of s·C, of the dΔ terms and of the dξc
// terms; each state's dB and dC term) to shared memory, and every `flush`
// rows the block turns them into the outputs: per (t, channel) the sums over
// the G lanes (in a rotated but fixed order), per (t, n) the sum over the
// block's channels in channel order. dD and ddt_bias of a channel are summed
// by one thread in t-descending order.
template <int kSPL>
__global__ void __launch_bounds__(128)
    ScanBackwardKernel(const __grid_constant__ ScanBackwardBatch batch, int g_shift, int flush,
                       float* __restrict__ bc_partials, float* __restrict__ grad_partials) {
  extern __shared__ float sm[];
  const ScanBackwardItem& item = batch.item[blockIdx.y];
  const mmc_scan_backward_args& g = item.a;
  const mmc_scan_args& a = g.fwd;
  const int64_t T = a.T, E = a.E, N = a.N;
  const int G = 1 << g_shift;
  const int bd = blockDim.x;
  const int cpb = bd >> g_shift;
  const int tid = threadIdx.x, ch = tid >> g_shift, gl = tid & (G - 1);
  const int64_t e0 = blockIdx.x * int64_t{cpb};
  const int64_t e = e0 + ch;
  const bool valid = e < E;
  const int64_t nblk = gridDim.x;

  float* s_st = sm;                              // [kChunk][kSPL][bd]
  float* s_delta = s_st + kChunk * kSPL * bd;    // [kChunk][cpb] each
  float* s_u = s_delta + kChunk * cpb;
  float* s_dyy = s_u + kChunk * cpb;             // dy·SiLU(z)
  float* s_dzf = s_dyy + kChunk * cpb;           // dy·SiLU'(z)
  float* s_sig = s_dzf + kChunk * cpb;           // σ(dt + dt_bias)
  float* s_B = s_sig + kChunk * cpb;             // [kChunk][N]
  float* s_C = s_B + kChunk * N;
  float* s_py = s_C + kChunk * N;                // [flush][bd]: Σ_i s·C
  float* s_pdl = s_py + flush * bd;              // [flush][bd]: dΔ terms
  float* s_pdu = s_pdl + flush * bd;             // [flush][bd]: dξc terms
  float* s_pdb = s_pdu + flush * bd;             // [flush][kSPL][bd]: dB term of a state
  float* s_pdc = s_pdb + flush * kSPL * bd;      // [flush][kSPL][bd]: dC term
  float* s_gD = s_pdc + flush * kSPL * bd;       // [flush][cpb]: dD term
  float* s_gB = s_gD + flush * cpb;              // [flush][cpb]: ddt

  float Ar[kSPL], dA_acc[kSPL], carry[kSPL], cp[kSPL];
#pragma unroll
  for (int i = 0; i < kSPL; ++i) {
    const int64_t n = gl + int64_t{G} * i;
    Ar[i] = (valid && n < N) ? a.A[n * E + e] : 0.0f;
    dA_acc[i] = 0.0f;
    carry[i] = 0.0f;
  }
  float dD_acc = 0.0f, ddtb_acc = 0.0f;  // of channel e0 + tid, for tid < cpb

  float* part_b = bc_partials + item.bc_offset;  // [nblk][T][N]
  float* part_c = part_b + nblk * T * N;

  const int64_t chunks = (T + kChunk - 1) / kChunk;
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kChunk;
    const int L = static_cast<int>(min(int64_t{kChunk}, T - t0));
    __syncthreads();
#pragma unroll 2
    for (int idx = tid; idx < L * cpb; idx += bd) {
      const int t = idx / cpb, j = idx - t * cpb;
      const int64_t ee = e0 + j;
      float d = 0.0f, u = 0.0f, dyy = 0.0f, dzf = 0.0f, sg = 0.0f;
      if (ee < E) {
        const float x = __ldg(a.dt + (t0 + t) * E + ee) + __ldg(a.dt_bias + ee);
        d = Softplus(x);
        sg = Sigmoid(x);
        u = __ldg(a.xc + (t0 + t) * E + ee);
        const float zz = __ldg(a.z + (t0 + t) * a.ld_z + ee);
        const float dyv = __ldg(g.dy + (t0 + t) * E + ee);
        dyy = dyv * Silu(zz);
        dzf = dyv * SiluGrad(zz);
      }
      s_delta[idx] = d;
      s_u[idx] = u;
      s_dyy[idx] = dyy;
      s_dzf[idx] = dzf;
      s_sig[idx] = sg;
    }
#pragma unroll 4
    for (int idx = tid; idx < L * N; idx += bd) {
      const int t = idx / static_cast<int>(N), n = idx - t * static_cast<int>(N);
      s_B[idx] = __ldg(a.B + (t0 + t) * a.ld_bc + n);
      s_C[idx] = __ldg(a.C + (t0 + t) * a.ld_bc + n);
    }
    __syncthreads();
    // Recompute the chunk's states from its checkpoint (thread-private slots).
    float s[kSPL];
#pragma unroll
    for (int i = 0; i < kSPL; ++i) {
      const int64_t n = gl + int64_t{G} * i;
      cp[i] = (valid && n < N) ? __ldg(g.checkpoints + c * N * E + n * E + e) : 0.0f;
      s[i] = cp[i];
    }
#pragma unroll 4
    for (int t = 0; t < L; ++t) {
      const float d = s_delta[t * cpb + ch];
      const float du = d * s_u[t * cpb + ch];
#pragma unroll
      for (int i = 0; i < kSPL; ++i) {
        const int n = gl + G * i;
        const float bn = n < N ? s_B[t * N + n] : 0.0f;
        s[i] = __expf(d * Ar[i]) * s[i] + du * bn;
        s_st[(t * kSPL + i) * bd + tid] = s[i];
      }
    }
    // Walk back.
    for (int t = L - 1; t >= 0; --t) {
      const int r = t % flush;
      const float d = s_delta[t * cpb + ch];
      const float uu = s_u[t * cpb + ch];
      const float dyy = s_dyy[t * cpb + ch];
      float yp = 0.0f, dlp = 0.0f, dup = 0.0f;
#pragma unroll
      for (int i = 0; i < kSPL; ++i) {
        const int n = gl + G * i;
        const bool live = n < N;
        const float bn = live ? s_B[t * N + n] : 0.0f;
        const float cn = live ? s_C[t * N + n] : 0.0f;
        const float s_t = live ? s_st[(t * kSPL + i) * bd + tid] : 0.0f;
        const float sprev = !live ? 0.0f : (t > 0 ? s_st[((t - 1) * kSPL + i) * bd + tid] : cp[i]);
        const float gs = carry[i] + dyy * cn;
        yp += s_t * cn;
        const float decay = __expf(d * Ar[i]);
        const float d_decay = gs * sprev;
        dlp += d_decay * decay * Ar[i] + gs * bn * uu;
        dA_acc[i] += d_decay * decay * d;
        dup += gs * d * bn;
        carry[i] = gs * decay;
        s_pdb[(r * kSPL + i) * bd + tid] = gs * d * uu;
        s_pdc[(r * kSPL + i) * bd + tid] = dyy * s_t;
      }
      s_py[r * bd + tid] = yp;
      s_pdl[r * bd + tid] = dlp;
      s_pdu[r * bd + tid] = dup;
      if (r == 0) {
        // Rows [t, t + rows) are complete.
        __syncthreads();
        const int rows = min(flush, L - t);
        for (int idx = tid; idx < rows * cpb; idx += bd) {
          const int rr = idx / cpb, j = idx - rr * cpb;
          const int tt = t + rr, ti = tt * cpb + j;
          const int base = rr * bd + j * G;
          float yy = 0.0f, dl = 0.0f, du = 0.0f;
          for (int l = 0; l < G; ++l) {
            const int q = base + ((l + j) & (G - 1));  // rotated: fewer bank conflicts
            yy += s_py[q];
            dl += s_pdl[q];
            du += s_pdu[q];
          }
          const int64_t ee = e0 + j;
          float ddt = 0.0f;
          if (ee < E) {
            const float Dv = a.D[ee];
            yy += Dv * s_u[ti];
            ddt = dl * s_sig[ti];
            const int64_t row = t0 + tt;
            g.dz[row * g.ld_dz + ee] = s_dzf[ti] * yy;
            g.ddt[row * E + ee] = ddt;
            g.dxc[row * E + ee] = du + s_dyy[ti] * Dv;
          }
          s_gD[rr * cpb + j] = s_dyy[ti] * s_u[ti];
          s_gB[rr * cpb + j] = ddt;
        }
        for (int idx = tid; idx < rows * static_cast<int>(N); idx += bd) {
          const int rr = idx / static_cast<int>(N), n = idx - rr * static_cast<int>(N);
          const int l = n & (G - 1), i = n >> g_shift;
          const float* pb = s_pdb + (rr * kSPL + i) * bd + l;
          const float* pc = s_pdc + (rr * kSPL + i) * bd + l;
          float sb = 0.0f, sc = 0.0f;
          for (int q = 0; q < cpb; ++q) {
            sb += pb[q * G];
            sc += pc[q * G];
          }
          const int64_t row = (blockIdx.x * T + t0 + t + rr) * N + n;
          part_b[row] = sb;
          part_c[row] = sc;
        }
        __syncthreads();
        if (tid < cpb) {
          for (int rr = rows - 1; rr >= 0; --rr) {
            dD_acc += s_gD[rr * cpb + tid];
            ddtb_acc += s_gB[rr * cpb + tid];
          }
        }
      }
    }
  }
  // This stream's dA [N, E], dD [E], ddt_bias [E] partial.
  float* gp = grad_partials + item.grad_index * (N * E + 2 * E);
#pragma unroll
  for (int i = 0; i < kSPL; ++i) {
    const int64_t n = gl + int64_t{G} * i;
    if (valid && n < N) gp[n * E + e] = dA_acc[i];
  }
  if (tid < cpb && e0 + tid < E) {
    gp[N * E + e0 + tid] = dD_acc;
    gp[N * E + E + e0 + tid] = ddtb_acc;
  }
}

// dB[t, n] = Σ_blk part_b[blk, t, n] (blk ascending), dC likewise; overwrites.
__global__ void ScanBcSumKernel(const __grid_constant__ ScanBackwardBatch batch, int64_t nblk,
                                const float* __restrict__ bc_partials) {
  const ScanBackwardItem& item = batch.item[blockIdx.y];
  const mmc_scan_backward_args& g = item.a;
  const int64_t T = g.fwd.T, N = g.fwd.N;
  const float* part_b = bc_partials + item.bc_offset;
  const float* part_c = part_b + nblk * T * N;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < T * N;
       i += int64_t{gridDim.x} * blockDim.x) {
    float sb = 0.0f, sc = 0.0f;
    for (int64_t b = 0; b < nblk; ++b) {
      sb += part_b[b * T * N + i];
      sc += part_c[b * T * N + i];
    }
    const int64_t t = i / N, n = i - t * N;
    g.dB[t * g.ld_dbc + n] = sb;
    g.dC[t * g.ld_dbc + n] = sc;
  }
}

int SetSmem(mmc_context* ctx, const void* kernel, size_t bytes) {
  if (bytes > ctx->smem_optin) {
    return FailWith(ctx, MMC_ERR_UNSUPPORTED, "scan: shared memory need exceeds the device's");
  }
  if (bytes > 48 * 1024) {
    MMC_CUDA_CHECK(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes)));
  }
  return MMC_OK;
}

int ValidateForward(const mmc_scan_args& a, int64_t E, int64_t N) {
  if (a.E != E || a.N != N || a.T < 0 || a.ld_bc < N || a.ld_z < E) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (E > 0 && (a.dt_bias == nullptr || a.A == nullptr || a.D == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (E > 0 && a.T > 0 &&
      (a.xc == nullptr || a.dt == nullptr || a.B == nullptr || a.C == nullptr ||
       a.z == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return MMC_OK;
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_selective_scan(mmc_context* ctx, const mmc_scan_args* streams, int64_t n) {
  MMC_ENTER(ctx);
  if (n < 0 || (n > 0 && streams == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  if (n == 0) return MMC_OK;
  const int64_t E = streams[0].E, N = streams[0].N;
  if (E < 0 || N < 1) return MMC_ERR_INVALID_ARGUMENT;
  if (N > kMaxN) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "scan: N > 64");
  for (int64_t i = 0; i < n; ++i) {
    MMC_RETURN_IF_ERROR(ValidateForward(streams[i], E, N));
    if (E > 0 && (streams[i].state == nullptr || (streams[i].T > 0 && streams[i].y == nullptr))) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
  }
  if (E == 0) return MMC_OK;
  return Guarded(ctx, [&]() -> int {
    const Layout l = MakeLayout(N, 2);
    const size_t smem = ForwardSmem(l, N);
    MMC_RETURN_IF_ERROR(SetSmem(ctx, reinterpret_cast<const void*>(&ScanForwardKernel<2>), smem));
    const int64_t nblk = CeilDiv(E, l.cpb());
    if (nblk > INT32_MAX) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "scan: E too large");
    for (int64_t first = 0; first < n; first += kMaxStreamsForward) {
      ScanBatch batch;
      batch.count = static_cast<int>(std::min<int64_t>(kMaxStreamsForward, n - first));
      for (int i = 0; i < batch.count; ++i) batch.item[i] = streams[first + i];
      const dim3 grid(static_cast<unsigned>(nblk), static_cast<unsigned>(batch.count));
      ScanForwardKernel<2><<<grid, l.threads, smem, ctx->stream>>>(batch, l.g_shift);
      MMC_LAUNCH_CHECK(ctx, "ScanForwardKernel");
    }
    return MMC_OK;
  });
}

MMC_API int mmc_selective_scan_backward(mmc_context* ctx,
                                        const mmc_scan_backward_args* streams, int64_t n) {
  MMC_ENTER(ctx);
  if (n < 0 || (n > 0 && streams == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  if (n == 0) return MMC_OK;
  const int64_t E = streams[0].fwd.E, N = streams[0].fwd.N;
  if (E < 0 || N < 1) return MMC_ERR_INVALID_ARGUMENT;
  if (N > kMaxN) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "scan: N > 64");
  for (int64_t i = 0; i < n; ++i) {
    const mmc_scan_backward_args& g = streams[i];
    MMC_RETURN_IF_ERROR(ValidateForward(g.fwd, E, N));
    if (g.ld_dbc < N || g.ld_dz < E) return MMC_ERR_INVALID_ARGUMENT;
    if (E > 0 && (g.dA == nullptr || g.dD == nullptr || g.ddt_bias == nullptr)) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
    if (E > 0 && g.fwd.T > 0 &&
        (g.checkpoints == nullptr || g.dy == nullptr || g.dxc == nullptr || g.ddt == nullptr ||
         g.dB == nullptr || g.dC == nullptr || g.dz == nullptr)) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
  }
  if (E == 0) return MMC_OK;
  return Guarded(ctx, [&]() -> int {
    const int spl = N <= 32 ? 1 : 2;
    const Layout l = MakeLayout(N, spl);
    const int flush = kFlushRows;
    const size_t smem = BackwardSmem(l, spl, N);
    const void* kernel = spl == 1 ? reinterpret_cast<const void*>(&ScanBackwardKernel<1>)
                                  : reinterpret_cast<const void*>(&ScanBackwardKernel<2>);
    MMC_RETURN_IF_ERROR(SetSmem(ctx, kernel, smem));
    const int64_t nblk = CeilDiv(E, l.cpb());
    if (nblk > INT32_MAX) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "scan: E too large");
    // Partials: dB/dC per (stream, channel block, t, n); dA/dD/ddt_bias per stream.
    std::vector<int64_t> bc_offset(n);
    int64_t bc_total = 0;
    for (int64_t i = 0; i < n; ++i) {
      bc_offset[i] = bc_total;
      bc_total += 2 * nblk * streams[i].fwd.T * N;
    }
    const int64_t grad_stride = N * E + 2 * E;
    const size_t grad_bytes = ((n * grad_stride * sizeof(float)) + 255) / 256 * 256;
    Scratch scratch(ctx);
    MMC_RETURN_IF_ERROR(scratch.Allocate(grad_bytes + bc_total * sizeof(float)));
    float* grad_partials = scratch.as<float>();
    float* bc_partials = scratch.as<float>(grad_bytes);
    for (int64_t first = 0; first < n; first += kMaxStreamsBackward) {
      ScanBackwardBatch batch;
      batch.count = static_cast<int>(std::min<int64_t>(kMaxStreamsBackward, n - first));
      int64_t max_tn = 1;
      for (int i = 0; i < batch.count; ++i) {
        batch.item[i].a = streams[first + i];
        batch.item[i].bc_offset = bc_offset[first + i];
        batch.item[i].grad_index = first + i;
        max_tn = std::max(max_tn, streams[first + i].fwd.T * N);
      }
      const dim3 grid(static_cast<unsigned>(nblk), static_cast<unsigned>(batch.count));
      if (spl == 1) {
        ScanBackwardKernel<1><<<grid, l.threads, smem, ctx->stream>>>(
            batch, l.g_shift, flush, bc_partials, grad_partials);
      } else {
        ScanBackwardKernel<2><<<grid, l.threads, smem, ctx->stream>>>(
            batch, l.g_shift, flush, bc_partials, grad_partials);
      }
      MMC_LAUNCH_CHECK(ctx, "ScanBackwardKernel");
      const dim3 sum_grid(static_cast<unsigned>(std::min<int64_t>(CeilDiv(max_tn, 256), 4096)),
                          static_cast<unsigned>(batch.count));
      ScanBcSumKernel<<<sum_grid, 256, 0, ctx->stream>>>(batch, nblk, bc_partials);
      MMC_LAUNCH_CHECK(ctx, "ScanBcSumKernel");
    }
    std::vector<int64_t> first_index(n), one(n, 1);
    std::vector<float*> dA(n), dD(n), ddtb(n);
    for (int64_t i = 0; i < n; ++i) {
      first_index[i] = i;
      dA[i] = streams[i].dA;
      dD[i] = streams[i].dD;
      ddtb[i] = streams[i].ddt_bias;
    }
    for (const auto& [target, list] : GroupSources(dA, first_index, one)) {
      MMC_RETURN_IF_ERROR(AddPartials(ctx, target, grad_partials, grad_stride, N * E,
                                      list.data(), static_cast<int>(list.size())));
    }
    for (const auto& [target, list] : GroupSources(dD, first_index, one)) {
      MMC_RETURN_IF_ERROR(AddPartials(ctx, target, grad_partials + N * E, grad_stride, E,
                                      list.data(), static_cast<int>(list.size())));
    }
    for (const auto& [target, list] : GroupSources(ddtb, first_index, one)) {
      MMC_RETURN_IF_ERROR(AddPartials(ctx, target, grad_partials + N * E + E, grad_stride, E,
                                      list.data(), static_cast<int>(list.size())));
    }
    return MMC_OK;
  });
}

}  // extern "C"
