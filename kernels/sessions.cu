// Streaming sessions on the device: the note block and the pool reads of
// DESIGN 2.3 for streams whose state lives in slots of one allocation per
// kind (memmamba_cuda.h, "Session slots"). The CPU twins are TakeNotes and
// ReadAndFuse in src/runtime/forward.cc, InsertNote in src/runtime/pool.cc
// and FoldedRead in src/backend/cpu/cpu_backend.cc.
//
// slots_note_window, per stream b (T rows, all in one note window):
//   acc[d] = max(acc[d], a[b·T + t, d]) over its rows; where windows[b] >= 0
//   the window closes: m[b] = acc, score[b] = σ(Σ_d sw[d]·(m[d] − mean m) + sb),
//   acc = −∞; elsewhere m[b] = 0 and score[b] = −∞                (m, score overwritten)
// slots_pool_insert, per layer l and stream b with windows[b] >= 0 and
//   score[l, b] > threshold: the note ŝ = score·raw[l, b] enters the pool of
//   (slot, l) as InsertNote decides (FIFO drops the oldest when full;
//   PRIORITY replaces the first lowest score iff the new one is greater);
//   notes stay in window order.
// slots_pool_read, per row r (stream b = r / T):
//   γ = σ(gw·a[r] + gb); m = the notes of layers [src_begin, src_end) of the
//   stream's slot, in layer then window order; gate[r] = γ if m > 0 and
//   γ > threshold, else 0. Where gate[r] != 0 the folded read of
//   Backend::PoolAttendFolded: per head h, qk_h = (1/√dh)·K_hᵀ q_h,
//   p_jh = softmax_j(qk_h·ŝ_j), o_h = V_h Σ_j p_jh ŝ_j; other rows get o = 0.
//
// One block per stream (note window), per (stream, layer) (insert) or per
// row (read); reductions take a fixed tree, so results are deterministic.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "internal.cuh"
#include "slots.cuh"

namespace memmamba::cuda {
namespace {

using slot_ops::kThreads;
using slot_ops::kWarps;
constexpr int64_t kMaxBlocks = 65535;

__global__ void __launch_bounds__(kThreads)
    NoteWindowKernel(const float* __restrict__ a, int64_t T, int64_t D,
                     const int32_t* __restrict__ slot_of, const int64_t* __restrict__ windows,
                     float* __restrict__ win_max, int64_t n_layer, int64_t layer,
                     const float* __restrict__ sw, float sb, float* __restrict__ m,
                     float* __restrict__ score) {
  __shared__ float red[kWarps];
  const int64_t b = blockIdx.x;
  float* acc = win_max + (static_cast<int64_t>(slot_of[b]) * n_layer + layer) * D;
  slot_ops::NoteWindow(a + b * T * D, T, D, acc, windows[b] >= 0, sw, sb, m + b * D, score + b,
                       red);
}

__global__ void __launch_bounds__(kThreads)
    PoolInsertKernel(mmc_slot_pools pools, int policy, float threshold, int64_t B,
                     const int32_t* __restrict__ slots, const int64_t* __restrict__ windows,
                     const float* __restrict__ raw, const float* __restrict__ score) {
  __shared__ int decision[2];  // the victim (-1: none), whether the note is kept
  const int64_t b = blockIdx.x, l = blockIdx.y;
  const int64_t window = windows[b];
  if (window < 0) return;
  const float s = score[l * B + b];
  if (!(s > threshold)) return;
  const int64_t P = pools.capacity, S = pools.S;
  const int64_t pool = static_cast<int64_t>(slots[b]) * pools.n_layer + l;
  float* summary = pools.summary + pool * P * S;
  float* scores = pools.score + pool * P;
  int64_t* wins = pools.window + pool * P;
  int32_t* count = pools.count + pool;
  const int n = *count;
  if (threadIdx.x == 0) {
    int victim = -1, keep = 1;
    if (n >= P) {
      victim = 0;
      if (policy == MMC_POOL_PRIORITY) {
        for (int i = 1; i < n; ++i) {
          if (scores[i] < scores[victim]) victim = i;
        }
        keep = s > scores[victim];
      }
    }
    decision[0] = victim;
    decision[1] = keep;
  }
  __syncthreads();
  const int victim = decision[0];
  if (!decision[1]) return;
  int last = n;  // where the note goes
  if (victim >= 0) {
    // Rows after the victim move up one; each thread moves its own columns
    // row after row, so no two threads touch the same float.
    for (int i = victim; i + 1 < n; ++i) {
      for (int64_t j = threadIdx.x; j < S; j += kThreads) {
        summary[i * S + j] = summary[(i + 1) * S + j];
      }
    }
    last = n - 1;
  }
  const float* r = raw + (l * B + b) * S;
  for (int64_t j = threadIdx.x; j < S; j += kThreads) summary[last * S + j] = r[j] * s;
  __syncthreads();  // every thread has read `n` before it changes
  if (threadIdx.x == 0) {
    for (int i = victim < 0 ? n : victim; i + 1 < n; ++i) {
      scores[i] = scores[i + 1];
      wins[i] = wins[i + 1];
    }
    scores[last] = s;
    wins[last] = window;
    *count = last + 1;
  }
}

__global__ void __launch_bounds__(kThreads)
    PoolReadKernel(mmc_slot_pools pools, mmc_slot_read_args r, int64_t tile_notes) {
  extern __shared__ float sm[];
  const int64_t row = blockIdx.x;
  const int64_t version = r.ver_ids != nullptr ? r.row_version[row] : 0;
  const float g = slot_ops::ReadRow(pools, r, r.slots[row / r.T], version, r.a + row * r.D,
                                 r.q + row * pools.S, tile_notes, sm, r.o + row * pools.S);
  if (threadIdx.x == 0) r.gate[row] = g;
}

// Head h (blockIdx.x) of row blockIdx.y's pool read, for calls without pool
// versions: the row's gate (ReadGate; head 0 writes it) and, where it is not
// 0, the head's folded attention from the row's query (slot_ops::
// AttendHead), else o = 0: PoolReadKernel's result with H blocks a row.
__global__ void __launch_bounds__(kThreads)
    PoolReadHeadKernel(mmc_slot_pools pools, mmc_slot_read_args r) {
  extern __shared__ float4 sm4[];
  float* sm = reinterpret_cast<float*>(sm4);
  __shared__ float red[kWarps];
  const int h = blockIdx.x;
  const int64_t row = blockIdx.y;
  const int S = static_cast<int>(pools.S), dh = S / static_cast<int>(r.H);
  const int64_t slot = r.slots[row / r.T];
  float* ob = r.o + row * S + h * dh;
  const float g = slot_ops::ReadGate(pools, r, slot, 0, r.a + row * r.D, red);
  if (h == 0 && threadIdx.x == 0) r.gate[row] = g;
  if (g == 0.0f) {
    for (int k = threadIdx.x; k < dh; k += kThreads) ob[k] = 0.0f;
    return;
  }
  float* q = sm;                        // [S]: the head's dh of it
  float* qk = q + S;                    // [S]
  float* u = qk + S;                    // [S]
  float* part = u + S;                  // [max(kThreads, S)]
  float* p = part + max(kThreads, S);   // [m_max]
  const int64_t used = 3 * S + max(kThreads, S) + r.m_max;
  const float** note = reinterpret_cast<const float**>(sm + used + used % 2);
  for (int k = threadIdx.x; k < dh; k += kThreads) q[k] = r.q[row * S + h * dh + k];
  __syncthreads();
  slot_ops::AttendHead(pools, r, slot, h, q, qk, u, part, p, note, ob);
}

// Causal conv + bias + SiLU, one thread per (stream, channel) walking its
// T rows; the K−1 previous inputs come from and go back to the slot.
constexpr int kMaxK = 16;
constexpr int kMixerThreads = 128;
// Channels (streams · E) from which the slot scan takes a lane per channel.
constexpr int64_t kScanChannelsPerThreadMin = 8192;

__global__ void __launch_bounds__(kMixerThreads)
    SlotConvKernel(int64_t B, int64_t T, int64_t E, int64_t K, const float* __restrict__ xi,
                   int64_t ld_xi, const float* __restrict__ w, const float* __restrict__ bias,
                   float* __restrict__ state, int64_t n_layer, int64_t layer,
                   const int32_t* __restrict__ slots, float* __restrict__ out) {
  const int64_t idx = blockIdx.x * int64_t{kMixerThreads} + threadIdx.x;
  if (idx >= B * E) return;
  const int64_t b = idx / E, e = idx - b * E;
  float* st = state + (static_cast<int64_t>(slots[b]) * n_layer + layer) * (K - 1) * E;
  float win[kMaxK];  // win[k]: input position t − K + 1 + k
#pragma unroll
  for (int k = 0; k < kMaxK; ++k) win[k] = k < K - 1 ? st[k * E + e] : 0.0f;
  const float b0 = bias[e];
  const float* we = w + e * K;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t r = b * T + t;
    const float x = xi[r * ld_xi + e];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) {
      if (k == K - 1) win[k] = x;
    }
    float acc = b0;
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) {
      if (k < K) acc += we[k] * win[k];
    }
    out[r * E + e] = Silu(acc);
#pragma unroll
    for (int k = 0; k + 1 < kMaxK; ++k) win[k] = win[k + 1];
  }
#pragma unroll
  for (int k = 0; k < kMaxK; ++k) {
    if (k < K - 1) st[k * E + e] = win[k];
  }
}

// SlotConvKernel for K = 4 with four channels a thread in float4s (E % 4 ==
// 0, 16-byte aligned arrays): per channel the same operations in the same
// order, so the same bits, in a quarter of the threads and memory accesses.
__device__ inline float Conv4(float b, float w0, float w1, float w2, float w3, float x0,
                              float x1, float x2, float x3) {
  float acc = b;
  acc += w0 * x0;
  acc += w1 * x1;
  acc += w2 * x2;
  acc += w3 * x3;
  return Silu(acc);
}

__global__ void __launch_bounds__(kMixerThreads)
    SlotConv4Kernel(int64_t B, int64_t T, int64_t E, const float* __restrict__ xi,
                    int64_t ld_xi, const float* __restrict__ w, const float* __restrict__ bias,
                    float* __restrict__ state, int64_t n_layer, int64_t layer,
                    const int32_t* __restrict__ slots, float* __restrict__ out) {
  const int64_t E4 = E / 4;
  const int64_t idx = blockIdx.x * int64_t{kMixerThreads} + threadIdx.x;
  if (idx >= B * E4) return;
  const int64_t b = idx / E4, e = (idx - b * E4) * 4;
  float4* st = reinterpret_cast<float4*>(
      state + (static_cast<int64_t>(slots[b]) * n_layer + layer) * 3 * E + e);
  float4 p0 = st[0], p1 = st[E4], p2 = st[2 * E4];  // inputs t − 3, t − 2, t − 1
  const float4 bb = *reinterpret_cast<const float4*>(bias + e);
  const float4* wp = reinterpret_cast<const float4*>(w + e * 4);  // a channel's 4 taps each
  const float4 wa = wp[0], wb = wp[1], wc = wp[2], wd = wp[3];
  for (int64_t t = 0; t < T; ++t) {
    const int64_t r = b * T + t;
    const float4 x = *reinterpret_cast<const float4*>(xi + r * ld_xi + e);
    float4 y;
    y.x = Conv4(bb.x, wa.x, wa.y, wa.z, wa.w, p0.x, p1.x, p2.x, x.x);
    y.y = Conv4(bb.y, wb.x, wb.y, wb.z, wb.w, p0.y, p1.y, p2.y, x.y);
    y.z = Conv4(bb.z, wc.x, wc.y, wc.z, wc.w, p0.z, p1.z, p2.z, x.z);
    y.w = Conv4(bb.w, wd.x, wd.y, wd.z, wd.w, p0.w, p1.w, p2.w, x.w);
    *reinterpret_cast<float4*>(out + r * E + e) = y;
    p0 = p1;
    p1 = p2;
    p2 = x;
  }
  st[0] = p0;
  st[E4] = p1;
  st[2 * E4] = p2;
}

// The selective scan (the formula of scan.cu's forward; exp(Δ·A) in __expf
// as there). A channel's N states are spread over G lanes (G a power of two,
// at most 32; lane g holds states g, g + G, ...: kSPL of them), so a row's
// dependency chain is one state update and a G-lane sum, not N updates; or,
// G = 1, a lane holds a whole channel (many streams, see the launch).
// With G = 1 and N <= 16, SlotScanLaneKernel (SlotScanStepKernel for
// one-token steps) computes the same with fewer instructions; kSPL 32
// remains for 16 < N <= 32, and for channels whose state offsets do not fit
// 32 bits.
// y: a.y, or (mmc_slots_selective_scan_bf16) a bf16 output in its place.
template <int kSPL, typename Y>
__global__ void __launch_bounds__(kMixerThreads)
    SlotScanKernel(mmc_slot_scan_args a, int g_shift, Y* y) {
  const int64_t E = a.E, N = a.N;
  const int G = 1 << g_shift;
  const int64_t idx = blockIdx.x * int64_t{kMixerThreads} + threadIdx.x;
  const int64_t group = idx >> g_shift;
  const int g = static_cast<int>(idx & (G - 1));
  // Every lane of a warp takes part in the sums; lanes past the end compute
  // on nothing and write nothing.
  const bool live = group < a.streams * E;
  const int64_t b = live ? group / E : 0, e = live ? group - b * E : 0;
  float* st = a.state + (static_cast<int64_t>(live ? a.slots[b] : 0) * a.n_layer + a.layer) * N * E;
  float s[kSPL], A[kSPL];
#pragma unroll
  for (int i = 0; i < kSPL; ++i) {
    const int64_t n = g + int64_t{G} * i;
    s[i] = live && n < N ? st[n * E + e] : 0.0f;
    A[i] = live && n < N ? a.A[n * E + e] : 0.0f;
  }
  const float bias = live ? a.dt_bias[e] : 0.0f, Dv = live ? a.D[e] : 0.0f;
  for (int64_t t = 0; t < a.T; ++t) {
    const int64_t r = b * a.T + t;
    float acc = 0.0f, u = 0.0f;
    if (live) {
      const float d = Softplus(a.dt[r * E + e] + bias);
      u = a.xc[r * E + e];
      const float du = d * u;
      const float* Br = a.B + r * a.ld_bc;
      const float* Cr = a.C + r * a.ld_bc;
#pragma unroll
      for (int i = 0; i < kSPL; ++i) {
        const int64_t n = g + int64_t{G} * i;
        if (n < N) {
          s[i] = __expf(d * A[i]) * s[i] + du * Br[n];
          acc += s[i] * Cr[n];
        }
      }
    }
    for (int o = G >> 1; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o, G);
    if (live && g == 0) StoreValue(y + r * E + e, (acc + Dv * u) * Silu(a.z[r * a.ld_z + e]));
  }
  if (!live) return;
#pragma unroll
  for (int i = 0; i < kSPL; ++i) {
    const int64_t n = g + int64_t{G} * i;
    if (n < N) st[n * E + e] = s[i];
  }
}

// SlotScanKernel with g_shift 0 (a lane per channel, N <= 16) without the
// lane-group index arithmetic: the channel's rows are walked with 32-bit
// offsets (N·E < 2^31, checked at launch). Per channel the same operations
// in the same order, so the same bits; under Nsight Compute the general
// kernel issued ~1,600 instructions a warp for this case (65 % of the issue
// slots, 38 % of DRAM bandwidth).
template <typename Y>
__global__ void __launch_bounds__(kMixerThreads) SlotScanLaneKernel(mmc_slot_scan_args a, Y* y) {
  const int64_t idx = blockIdx.x * int64_t{kMixerThreads} + threadIdx.x;
  if (idx >= a.streams * a.E) return;
  const int64_t b = idx / a.E;
  const int E = static_cast<int>(a.E), N = static_cast<int>(a.N);
  const int e = static_cast<int>(idx - b * a.E);
  float* st = a.state + (static_cast<int64_t>(a.slots[b]) * a.n_layer + a.layer) * a.N * a.E + e;
  const float* Ae = a.A + e;
  float s[16], A[16];
#pragma unroll
  for (int n = 0; n < 16; ++n) {
    s[n] = n < N ? st[n * E] : 0.0f;
    A[n] = n < N ? Ae[n * E] : 0.0f;
  }
  const float bias = a.dt_bias[e], Dv = a.D[e];
  for (int64_t t = 0; t < a.T; ++t) {
    const int64_t r = b * a.T + t;
    const float d = Softplus(a.dt[r * E + e] + bias);
    const float u = a.xc[r * E + e];
    const float du = d * u;
    const float* Br = a.B + r * a.ld_bc;
    const float* Cr = a.C + r * a.ld_bc;
    float acc = 0.0f;
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      if (n < N) {
        s[n] = __expf(d * A[n]) * s[n] + du * Br[n];
        acc += s[n] * Cr[n];
      }
    }
    StoreValue(y + r * E + e, (acc + Dv * u) * Silu(a.z[r * a.ld_z + e]));
  }
#pragma unroll
  for (int n = 0; n < 16; ++n) {
    if (n < N) st[n * E] = s[n];
  }
}

// SlotScanLaneKernel for one-token steps (T = 1): a channel's states in two
// rounds of 8 (load, update, store), so a thread holds half of them: 56
// registers instead of 84, nine blocks a multiprocessor instead of six, and
// more of the state's loads in flight. The same operations in the same
// order, so the same bits. Many sessions stepping at once are bound by this
// kernel's trips to memory, not by its arithmetic.
template <typename Y>
__global__ void __launch_bounds__(kMixerThreads) SlotScanStepKernel(mmc_slot_scan_args a, Y* y) {
  const int64_t idx = blockIdx.x * int64_t{kMixerThreads} + threadIdx.x;
  if (idx >= a.streams * a.E) return;
  const int64_t b = idx / a.E;
  const int E = static_cast<int>(a.E), N = static_cast<int>(a.N);
  const int e = static_cast<int>(idx - b * a.E);
  float* st = a.state + (static_cast<int64_t>(a.slots[b]) * a.n_layer + a.layer) * a.N * a.E + e;
  const float* Ae = a.A + e;
  const float d = Softplus(a.dt[b * E + e] + a.dt_bias[e]);
  const float u = a.xc[b * E + e];
  const float du = d * u;
  const float* Br = a.B + b * a.ld_bc;
  const float* Cr = a.C + b * a.ld_bc;
  float acc = 0.0f;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float s[8], A[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int n = h * 8 + i;
      s[i] = n < N ? st[n * E] : 0.0f;
      A[i] = n < N ? Ae[n * E] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int n = h * 8 + i;
      if (n < N) {
        s[i] = __expf(d * A[i]) * s[i] + du * Br[n];
        acc += s[i] * Cr[n];
        st[n * E] = s[i];
      }
    }
  }
  StoreValue(y + b * E + e, (acc + a.D[e] * u) * Silu(a.z[b * a.ld_z + e]));
}

// The note block of one stream's call over several windows: the rows walk
// the pending window's maxima (from the slot), and each row that ends a
// window (position p with p % w == w − 1) closes it: m[c] = the maxima,
// score[c] = σ(Σ_d sw[d]·(m[c, d] − mean m[c]) + sb), acc = −∞. A block per
// window closed (`first`: the row that closes the first, `closes` of them);
// block 0, the only one that touches acc, starts from it and also walks the
// rows after the last close (all rows where none closes) back into it.
__global__ void __launch_bounds__(kThreads)
    ChunkNoteWindowsKernel(const float* __restrict__ a, int64_t T, int64_t D, int64_t w,
                           int64_t first, int64_t closes, float* __restrict__ acc,
                           const float* __restrict__ sw, float sb, float* __restrict__ m,
                           float* __restrict__ score) {
  __shared__ float red[kWarps];
  const int64_t c = blockIdx.x;
  if (c < closes) {
    const int64_t t0 = c == 0 ? 0 : first + (c - 1) * w + 1, t1 = first + c * w;
    float* mc = m + c * D;
    float sum = 0.0f;
    for (int64_t d = threadIdx.x; d < D; d += kThreads) {
      float v = c == 0 ? acc[d] : -INFINITY;
      for (int64_t t = t0; t <= t1; ++t) v = fmaxf(v, a[t * D + d]);
      mc[d] = v;
      sum += v;
    }
    const float s = slot_ops::NoteScore(mc, D, sw, sb, sum, red);
    if (threadIdx.x == 0) score[c] = s;
  }
  if (c != 0) return;
  const int64_t tail = closes == 0 ? 0 : first + (closes - 1) * w + 1;
  for (int64_t d = threadIdx.x; d < D; d += kThreads) {
    float v = closes == 0 ? acc[d] : -INFINITY;
    for (int64_t t = tail; t < T; ++t) v = fmaxf(v, a[t * D + d]);
    acc[d] = v;
  }
}

// The pool versions of one layer over a call's n_new closed windows, as
// InsertNote decides them: version v (after the first v closes) lists the
// ids of its notes in window order (id < P: the slot pool's entry, P + c:
// the call's note c). One thread: at most n_new · P steps.
__global__ void ChunkVersionsKernel(mmc_slot_pools pools, int policy, float threshold,
                                    int64_t slot, int64_t layer, int64_t n_new,
                                    const float* __restrict__ score, int32_t* __restrict__ ids,
                                    int32_t* __restrict__ count) {
  if (threadIdx.x != 0) return;
  const int64_t P = pools.capacity;
  const int64_t pool = slot * pools.n_layer + layer;
  const float* old_score = pools.score + pool * P;
  int32_t* cur = ids;  // version 0, then each next version starts as a copy
  int n = pools.count[pool];
  for (int i = 0; i < n; ++i) cur[i] = i;
  count[0] = n;
  auto score_of = [&](int32_t id) { return id < P ? old_score[id] : score[id - P]; };
  for (int64_t c = 0; c < n_new; ++c) {
    int32_t* next = cur + P;
    for (int i = 0; i < n; ++i) next[i] = cur[i];
    const float s = score[c];
    if (s > threshold) {
      if (n < P) {
        next[n++] = static_cast<int32_t>(P + c);
      } else {
        int victim = 0;
        bool keep = true;
        if (policy == MMC_POOL_PRIORITY) {
          for (int i = 1; i < n; ++i) {
            if (score_of(next[i]) < score_of(next[victim])) victim = i;
          }
          keep = s > score_of(next[victim]);
        }
        if (keep) {
          for (int i = victim; i + 1 < n; ++i) next[i] = next[i + 1];
          next[n - 1] = static_cast<int32_t>(P + c);
        }
      }
    }
    count[c + 1] = n;
    cur = next;
  }
}

// Makes each layer's last version its slot pool (block per layer): entries
// kept move up in place (an entry's new row is never after its old one), the
// call's notes follow from new_notes.
__global__ void __launch_bounds__(kThreads)
    ChunkCommitKernel(mmc_slot_pools pools, int64_t slot, int64_t n_new,
                      const int32_t* __restrict__ ids, const int32_t* __restrict__ count,
                      const float* __restrict__ new_notes, const float* __restrict__ new_score,
                      const int64_t* __restrict__ new_window) {
  const int64_t l = blockIdx.x, P = pools.capacity, S = pools.S;
  const int64_t pool = slot * pools.n_layer + l;
  const int32_t* last = ids + (l * (n_new + 1) + n_new) * P;
  const int n = count[l * (n_new + 1) + n_new];
  float* summary = pools.summary + pool * P * S;
  for (int j = 0; j < n; ++j) {
    const int64_t id = last[j];
    if (id == j) continue;
    const float* src = id < P ? summary + id * S : new_notes + (l * n_new + (id - P)) * S;
    for (int64_t k = threadIdx.x; k < S; k += kThreads) summary[j * S + k] = src[k];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float* scores = pools.score + pool * P;
    int64_t* wins = pools.window + pool * P;
    for (int j = 0; j < n; ++j) {
      const int64_t id = last[j];
      if (id < P) {
        scores[j] = scores[id];
        wins[j] = wins[id];
      } else {
        scores[j] = new_score[l * n_new + (id - P)];
        wins[j] = new_window[id - P];
      }
    }
    pools.count[pool] = n;
  }
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

MMC_API int mmc_slots_note_window(mmc_context* ctx, const float* a, int64_t B, int64_t T,
                                  int64_t D, const int32_t* slots, const int64_t* windows,
                                  float* win_max, int64_t n_layer, int64_t layer,
                                  const float* sw, float sb, float* m, float* score) {
  MMC_ENTER(ctx);
  if (B < 0 || T < 1 || D < 1 || n_layer < 1 || layer < 0 || layer >= n_layer) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (B == 0) return MMC_OK;
  if (a == nullptr || slots == nullptr || windows == nullptr || win_max == nullptr ||
      sw == nullptr || m == nullptr || score == nullptr || B > kMaxBlocks) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    NoteWindowKernel<<<static_cast<unsigned>(B), kThreads, 0, ctx->stream>>>(
        a, T, D, slots, windows, win_max, n_layer, layer, sw, sb, m, score);
    MMC_LAUNCH_CHECK(ctx, "slots_note_window");
    return MMC_OK;
  });
}

MMC_API int mmc_slots_pool_insert(mmc_context* ctx, const mmc_slot_pools* pools, int policy,
                                  float threshold, int64_t B, const int32_t* slots,
                                  const int64_t* windows, const float* raw,
                                  const float* score) {
  MMC_ENTER(ctx);
  if (pools == nullptr || B < 0 || (policy != MMC_POOL_FIFO && policy != MMC_POOL_PRIORITY)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (B == 0 || pools->capacity == 0) return MMC_OK;
  if (pools->n_layer < 1 || pools->n_layer > kMaxBlocks || pools->capacity < 0 ||
      pools->capacity > (1 << 30) || pools->S < 1 || pools->summary == nullptr ||
      pools->score == nullptr || pools->window == nullptr || pools->count == nullptr ||
      slots == nullptr || windows == nullptr || raw == nullptr || score == nullptr ||
      B > kMaxBlocks) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    const dim3 grid(static_cast<unsigned>(B), static_cast<unsigned>(pools->n_layer));
    PoolInsertKernel<<<grid, kThreads, 0, ctx->stream>>>(*pools, policy, threshold, B, slots,
                                                         windows, raw, score);
    MMC_LAUNCH_CHECK(ctx, "slots_pool_insert");
    return MMC_OK;
  });
}

MMC_API int mmc_slots_pool_read(mmc_context* ctx, const mmc_slot_pools* pools,
                                const mmc_slot_read_args* args) {
  MMC_ENTER(ctx);
  if (pools == nullptr || args == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  const mmc_slot_read_args& r = *args;
  if (r.B < 0 || r.T < 1) return MMC_ERR_INVALID_ARGUMENT;
  const int64_t M = r.B * r.T;
  if (M == 0) return MMC_OK;
  if (pools->S < 1 || r.H < 1 || pools->S % r.H != 0 || r.D < 1 || r.src_begin < 0 ||
      r.src_end < r.src_begin || r.src_end > pools->n_layer || r.m_max < 0 ||
      r.m_max < (r.src_end - r.src_begin) * pools->capacity || M > kMaxBlocks ||
      r.a == nullptr || r.gw == nullptr || r.q == nullptr || r.k == nullptr ||
      r.v == nullptr || r.slots == nullptr || r.gate == nullptr || r.o == nullptr ||
      pools->count == nullptr || pools->summary == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    // Without versions (one-token steps, short feeds): H blocks a row, so a
    // batch's reads spread over the device.
    const size_t head_smem = slot_ops::AttendHeadSharedBytes(0, pools->S, r.m_max);
    if (r.ver_ids == nullptr && M <= 65535 && head_smem <= ctx->smem_optin) {
      if (head_smem > 48 * 1024) {
        MMC_CUDA_CHECK(ctx, cudaFuncSetAttribute(PoolReadHeadKernel,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(head_smem)));
      }
      const dim3 grid(static_cast<unsigned>(r.H), static_cast<unsigned>(M));
      PoolReadHeadKernel<<<grid, kThreads, head_smem, ctx->stream>>>(*pools, r);
      MMC_LAUNCH_CHECK(ctx, "slots_pool_read");
      return MMC_OK;
    }
    const size_t smem = slot_ops::ReadSharedBytes(pools->S, r.H, r.m_max);
    if (smem > ctx->smem_optin) {
      return FailWith(ctx, MMC_ERR_UNSUPPORTED,
                      "slots_pool_read: " + std::to_string(smem) +
                          " bytes of shared memory per read exceed the device's " +
                          std::to_string(ctx->smem_optin));
    }
    if (smem > 48 * 1024) {
      MMC_CUDA_CHECK(ctx, cudaFuncSetAttribute(PoolReadKernel,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem)));
    }
    PoolReadKernel<<<static_cast<unsigned>(M), kThreads, smem, ctx->stream>>>(
        *pools, r, slot_ops::TileNotes(pools->S, r.m_max));
    MMC_LAUNCH_CHECK(ctx, "slots_pool_read");
    return MMC_OK;
  });
}

MMC_API int mmc_slots_conv_silu(mmc_context* ctx, int64_t B, int64_t T, int64_t E, int64_t K,
                                const float* xi, int64_t ld_xi, const float* w, const float* b,
                                float* state, int64_t n_layer, int64_t layer,
                                const int32_t* slots, float* out) {
  MMC_ENTER(ctx);
  if (B < 0 || T < 1 || E < 1 || K < 1 || ld_xi < E || n_layer < 1 || layer < 0 ||
      layer >= n_layer) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (K > kMaxK) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "slots_conv_silu: K > 16");
  if (B == 0) return MMC_OK;
  if (xi == nullptr || w == nullptr || b == nullptr || slots == nullptr || out == nullptr ||
      (K > 1 && state == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    if (K == 4 && E % 4 == 0 && ld_xi % 4 == 0 && Aligned16(xi) && Aligned16(w) &&
        Aligned16(b) && Aligned16(state) && Aligned16(out)) {
      const int64_t blocks = CeilDiv(B * (E / 4), kMixerThreads);
      if (blocks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
      SlotConv4Kernel<<<static_cast<unsigned>(blocks), kMixerThreads, 0, ctx->stream>>>(
          B, T, E, xi, ld_xi, w, b, state, n_layer, layer, slots, out);
      MMC_LAUNCH_CHECK(ctx, "slots_conv_silu");
      return MMC_OK;
    }
    const int64_t blocks = CeilDiv(B * E, kMixerThreads);
    if (blocks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
    SlotConvKernel<<<static_cast<unsigned>(blocks), kMixerThreads, 0, ctx->stream>>>(
        B, T, E, K, xi, ld_xi, w, b, state, n_layer, layer, slots, out);
    MMC_LAUNCH_CHECK(ctx, "slots_conv_silu");
    return MMC_OK;
  });
}

namespace {

// mmc_slots_selective_scan (Y float, y = a.y) and its _bf16 variant.
template <typename Y>
int SlotsSelectiveScan(mmc_context* ctx, const mmc_slot_scan_args* args, Y* y) {
  MMC_ENTER(ctx);
  if (args == nullptr) return MMC_ERR_INVALID_ARGUMENT;
  const mmc_slot_scan_args& a = *args;
  if (a.streams < 0 || a.T < 1 || a.E < 1 || a.N < 1 || a.n_layer < 1 || a.layer < 0 ||
      a.layer >= a.n_layer || a.ld_bc < 1 || a.ld_z < a.E) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (a.N > 64) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "slots_selective_scan: N > 64");
  if (a.streams == 0) return MMC_OK;
  if (a.xc == nullptr || a.dt == nullptr || a.dt_bias == nullptr || a.A == nullptr ||
      a.B == nullptr || a.C == nullptr || a.D == nullptr || a.z == nullptr ||
      a.state == nullptr || a.slots == nullptr || y == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    // Enough channels to fill the device with a thread each (many streams):
    // G = 1, a lane per channel holding all its states, so a warp's loads
    // of the state and of A are consecutive channels (one transaction per
    // state row). Fewer channels (one stream, few streams): G = the next
    // power of two >= N, at most 32, kSPL = ceil(N / G), for more threads
    // and a shorter chain per row.
    int g_shift = 0;
    const bool per_channel = a.streams * a.E >= kScanChannelsPerThreadMin && a.N <= 32;
    if (!per_channel) {
      while ((int64_t{1} << g_shift) < a.N && g_shift < 5) ++g_shift;
    }
    const int64_t spl = CeilDiv(a.N, int64_t{1} << g_shift);
    const int64_t blocks = CeilDiv(a.streams * a.E << g_shift, kMixerThreads);
    if (blocks > INT32_MAX) return MMC_ERR_UNSUPPORTED;
    const unsigned grid = static_cast<unsigned>(blocks);
    if (per_channel && a.N <= 16 && a.N * a.E < INT32_MAX && a.T == 1) {
      SlotScanStepKernel<<<grid, kMixerThreads, 0, ctx->stream>>>(a, y);
    } else if (per_channel && a.N <= 16 && a.N * a.E < INT32_MAX) {
      SlotScanLaneKernel<<<grid, kMixerThreads, 0, ctx->stream>>>(a, y);
    } else if (per_channel) {
      SlotScanKernel<32><<<grid, kMixerThreads, 0, ctx->stream>>>(a, g_shift, y);
    } else if (spl == 1) {
      SlotScanKernel<1><<<grid, kMixerThreads, 0, ctx->stream>>>(a, g_shift, y);
    } else {
      SlotScanKernel<2><<<grid, kMixerThreads, 0, ctx->stream>>>(a, g_shift, y);
    }
    MMC_LAUNCH_CHECK(ctx, "slots_selective_scan");
    return MMC_OK;
  });
}

}  // namespace

MMC_API int mmc_slots_selective_scan(mmc_context* ctx, const mmc_slot_scan_args* args) {
  return SlotsSelectiveScan(ctx, args, args != nullptr ? args->y : nullptr);
}

MMC_API int mmc_slots_selective_scan_bf16(mmc_context* ctx, const mmc_slot_scan_args* args,
                                          uint16_t* y) {
  return SlotsSelectiveScan(ctx, args, y);
}

MMC_API int mmc_chunk_note_windows(mmc_context* ctx, const float* a, int64_t T, int64_t D,
                                   int64_t p0, int64_t w, float* acc, const float* sw, float sb,
                                   float* m, float* score) {
  MMC_ENTER(ctx);
  if (T < 1 || D < 1 || p0 < 0 || w < 1 || a == nullptr || acc == nullptr || sw == nullptr ||
      m == nullptr || score == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    // Rows t with (p0 + t) % w == w − 1 close windows: the first, then every w-th.
    const int64_t first = (w - 1 - p0 % w) % w;
    const int64_t closes = first < T ? (T - 1 - first) / w + 1 : 0;
    if (closes > INT32_MAX) return MMC_ERR_UNSUPPORTED;
    const unsigned blocks = static_cast<unsigned>(std::max<int64_t>(closes, 1));
    ChunkNoteWindowsKernel<<<blocks, kThreads, 0, ctx->stream>>>(a, T, D, w, first, closes, acc,
                                                                 sw, sb, m, score);
    MMC_LAUNCH_CHECK(ctx, "chunk_note_windows");
    return MMC_OK;
  });
}

MMC_API int mmc_chunk_pool_versions(mmc_context* ctx, const mmc_slot_pools* pools, int policy,
                                    float threshold, int64_t slot, int64_t layer, int64_t n_new,
                                    const float* score, int32_t* ids, int32_t* count) {
  MMC_ENTER(ctx);
  if (pools == nullptr || (policy != MMC_POOL_FIFO && policy != MMC_POOL_PRIORITY) ||
      slot < 0 || layer < 0 || layer >= pools->n_layer || n_new < 0 || pools->capacity < 1 ||
      pools->capacity + n_new > INT32_MAX || (n_new > 0 && score == nullptr) ||
      ids == nullptr || count == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    ChunkVersionsKernel<<<1, 32, 0, ctx->stream>>>(*pools, policy, threshold, slot, layer,
                                                    n_new, score, ids, count);
    MMC_LAUNCH_CHECK(ctx, "chunk_pool_versions");
    return MMC_OK;
  });
}

MMC_API int mmc_chunk_pool_commit(mmc_context* ctx, const mmc_slot_pools* pools, int64_t slot,
                                  int64_t n_new, const int32_t* ids, const int32_t* count,
                                  const float* new_notes, const float* new_score,
                                  const int64_t* new_window) {
  MMC_ENTER(ctx);
  if (pools == nullptr || slot < 0 || n_new < 0 || pools->n_layer < 1 ||
      pools->n_layer > kMaxBlocks || ids == nullptr || count == nullptr ||
      (n_new > 0 && (new_notes == nullptr || new_score == nullptr || new_window == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (pools->capacity == 0) return MMC_OK;
  return Guarded(ctx, [&]() -> int {
    ChunkCommitKernel<<<static_cast<unsigned>(pools->n_layer), kThreads, 0, ctx->stream>>>(
        *pools, slot, n_new, ids, count, new_notes, new_score, new_window);
    MMC_LAUNCH_CHECK(ctx, "chunk_pool_commit");
    return MMC_OK;
  });
}
