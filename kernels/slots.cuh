// Device pieces shared by the session-slot kernels (sessions.cu) and the
// single-token decode kernels (decode.cu), so that both compute a note's
// score and a pool read with the same code and the same reduction order: a
// stream's notes do not depend on whether its tokens came one at a time or in
// a feed. The math is in sessions.cu's file comment.
#ifndef MEMMAMBA_KERNELS_SLOTS_CUH_
#define MEMMAMBA_KERNELS_SLOTS_CUH_

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "internal.cuh"

namespace memmamba::cuda::slot_ops {

// Every kernel that scores notes or reads pools runs blocks of kThreads.
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Σ v over the block (every thread gets the sum); `red` holds kWarps floats.
__device__ inline float BlockSum(float v, float* red) {
  v = WarpSum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // `red` may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) total += red[i];
  return total;
}

// A closed window's score σ(Σ_d sw[d]·(m[d] − mean m) + sb), by the whole
// block; `sum` is this thread's Σ of m[d] over its columns (d = threadIdx.x,
// + kThreads, ...), taken in that order.
__device__ inline float NoteScore(const float* m, int64_t D, const float* sw, float sb, float sum,
                                  float* red) {
  const float mean = BlockSum(sum, red) / static_cast<float>(D);
  float dot = 0.0f;
  for (int64_t d = threadIdx.x; d < D; d += kThreads) dot += sw[d] * (m[d] - mean);
  return Sigmoid(BlockSum(dot, red) + sb);
}

// mmc_slots_note_window for one stream by the whole block: its T rows (at
// rows, D apart) into the pending maxima acc; where the window closes, m = acc,
// *score = its score and acc = −∞; else m = 0 and *score = −∞.
__device__ inline void NoteWindow(const float* rows, int64_t T, int64_t D, float* acc, bool closes,
                                  const float* sw, float sb, float* m, float* score, float* red) {
  float sum = 0.0f;
  for (int64_t d = threadIdx.x; d < D; d += kThreads) {
    float v = acc[d];
    for (int64_t t = 0; t < T; ++t) v = fmaxf(v, rows[t * D + d]);
    if (closes) {
      m[d] = v;
      acc[d] = -INFINITY;
      sum += v;
    } else {
      m[d] = 0.0f;
      acc[d] = v;
    }
  }
  if (!closes) {  // block-uniform
    if (threadIdx.x == 0) *score = -INFINITY;
    return;
  }
  const float s = NoteScore(m, D, sw, sb, sum, red);
  if (threadIdx.x == 0) *score = s;
}

// p[0 .. m) = softmax(p) by one warp (m > 0).
__device__ inline void WarpSoftmax(float* p, int64_t m) {
  const int lane = threadIdx.x % 32;
  float mx = -INFINITY;
  for (int64_t j = lane; j < m; j += 32) mx = fmaxf(mx, p[j]);
  mx = WarpMax(mx);
  float sum = 0.0f;
  for (int64_t j = lane; j < m; j += 32) {
    const float e = expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  sum = WarpSum(sum);
  const float inv = 1.0f / sum;
  __syncwarp();
  for (int64_t j = lane; j < m; j += 32) p[j] *= inv;
}

// Notes staged in shared memory per tile. Where S % 4 == 0 a read moves
// notes in float4s and tile rows are S + 4 floats; else floats, rows of
// S + 1. Either way threads reading different notes at the same column hit
// different banks.
constexpr int64_t kTileFloats = 8192;

inline __host__ __device__ int64_t TileRow(int64_t S) { return S % 4 == 0 ? S + 4 : S + 1; }

inline int64_t TileNotes(int64_t S, int64_t m_max) {
  const int64_t fit = kTileFloats / TileRow(S);
  return std::max<int64_t>(1, std::min<int64_t>(std::max<int64_t>(m_max, 1), fit));
}

// The scores' floats, rounded up so that the tile after them is 16-byte aligned.
inline __host__ __device__ int64_t ScoreFloats(int64_t H, int64_t m_max) {
  return (H * m_max + 3) / 4 * 4;
}

// Dynamic shared memory of one ReadRow: qk, u, the scores, one tile (padded
// to 8 bytes) and the notes' addresses.
inline size_t ReadSharedBytes(int64_t S, int64_t H, int64_t m_max) {
  const int64_t floats = 2 * H * S + ScoreFloats(H, m_max) + TileNotes(S, m_max) * TileRow(S);
  return static_cast<size_t>(floats + floats % 2) * sizeof(float) +
         static_cast<size_t>(m_max) * sizeof(int64_t);
}

// The gate of one row's read, by the whole block: γ = σ(gw·a + gb) where the
// slot's pools of the read's layers (their versions where r.ver_ids is set)
// hold notes (*notes of them) and γ > threshold, else 0; the same in every
// thread.
__device__ inline float ReadGate(const mmc_slot_pools& pools, const mmc_slot_read_args& r,
                                 int64_t slot, int64_t version, const float* ar, float* red,
                                 int64_t* notes = nullptr) {
  float dot = 0.0f;
#pragma unroll 4
  for (int64_t d = threadIdx.x; d < r.D; d += kThreads) dot += r.gw[d] * ar[d];
  const float g = Sigmoid(BlockSum(dot, red) + r.gb);
  int64_t m = 0;
  for (int64_t l = r.src_begin; l < r.src_end; ++l) {
    m += r.ver_ids != nullptr ? r.ver_count[l * r.n_versions + version]
                              : pools.count[slot * pools.n_layer + l];
  }
  if (notes != nullptr) *notes = m;
  return m > 0 && g > r.threshold ? g : 0.0f;
}

// One row's pool read by the whole block (sessions.cu's file comment): where
// ReadGate is not 0, o (S floats) = the folded attention over the notes;
// else o = 0. Returns the gate. `version` picks the row's pool versions
// where r.ver_ids is set. sm: ReadSharedBytes(S, H, r.m_max) bytes, 16-byte
// aligned. o is written by lane 0 of each warp: synchronise before reading it
// from other threads.
//
// Every global load of a phase is issued by many threads at once (the tile
// copy, K along its columns, V along its rows): a read costs a few memory
// latencies, not one per note.
__device__ inline float ReadRow(const mmc_slot_pools& pools, const mmc_slot_read_args& r,
                                int64_t slot, int64_t version, const float* ar, const float* q,
                                int64_t tile_notes, float* sm, float* o) {
  __shared__ float red[kWarps];
  const int64_t S = pools.S, H = r.H, dh = S / H, P = pools.capacity;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // With versions (a call over several windows), the row's version of each
  // source pool: ids below P are entries of the slot's pool, P + c the
  // call's new note c.
  const int64_t nv = r.n_versions;
  int64_t m = 0;
  const float g = ReadGate(pools, r, slot, version, ar, red, &m);
  if (g == 0.0f) {
    for (int64_t j = threadIdx.x; j < S; j += kThreads) o[j] = 0.0f;
    return 0.0f;
  }
  const bool vec = S % 4 == 0;         // block-uniform
  const int64_t ld = TileRow(S);       // a tile row
  float* qk = sm;                      // [H, S]
  float* u = qk + H * S;               // [H, S]
  float* p = u + H * S;                // [H, m]
  float* tile = p + ScoreFloats(H, r.m_max);  // [tile_notes, ld]
  const int64_t used = 2 * H * S + ScoreFloats(H, r.m_max) + tile_notes * ld;
  const float** note = reinterpret_cast<const float**>(sm + used + used % 2);  // [m]
  // The notes' summaries, in layer then window order: note j is found by
  // walking the (few) source pools' counts.
  for (int64_t j = threadIdx.x; j < m; j += kThreads) {
    int64_t l = r.src_begin, i = j;
    for (;; ++l) {
      const int64_t c = r.ver_ids != nullptr ? r.ver_count[l * nv + version]
                                             : pools.count[slot * pools.n_layer + l];
      if (i < c) break;
      i -= c;
    }
    const int64_t pool = slot * pools.n_layer + l;
    int64_t id = i;
    if (r.ver_ids != nullptr) id = r.ver_ids[(l * nv + version) * P + i];
    note[j] = id < P ? pools.summary + (pool * P + id) * S
                     : r.new_notes + (l * r.n_new + (id - P)) * S;
  }
  const float scale = 1.0f / sqrtf(static_cast<float>(dh));
  // Index math in 32 bits: a 64-bit division is a long subroutine on the GPU.
  const int Si = static_cast<int>(S), HSi = static_cast<int>(H * S);
  for (int idx = threadIdx.x; idx < HSi; idx += kThreads) {
    const int h = idx / Si, s = idx - h * Si;
    float acc = 0.0f;
#pragma unroll 8
    for (int64_t i = 0; i < dh; ++i) acc += (scale * q[h * dh + i]) * r.k[(h * dh + i) * S + s];
    qk[idx] = acc;
    u[idx] = 0.0f;
  }
  __syncthreads();
  // Each thread has kInFlight loads in the air before it stores any: a
  // tile costs a few latencies of L2, not one per element a thread copies.
  auto load_tile = [&](int64_t j0, int64_t tn) {
    constexpr int kInFlight = 16;
    if (vec) {
      const int S4 = Si / 4, total = static_cast<int>(tn) * S4;
      for (int base = threadIdx.x; base < total; base += kThreads * kInFlight) {
        float4 v[kInFlight];
#pragma unroll
        for (int i = 0; i < kInFlight; ++i) {
          const int idx = base + i * kThreads;
          if (idx < total) {
            const int jj = idx / S4;
            v[i] = reinterpret_cast<const float4*>(note[j0 + jj])[idx - jj * S4];
          }
        }
#pragma unroll
        for (int i = 0; i < kInFlight; ++i) {
          const int idx = base + i * kThreads;
          if (idx < total) {
            const int jj = idx / S4;
            reinterpret_cast<float4*>(tile + jj * ld)[idx - jj * S4] = v[i];
          }
        }
      }
      __syncthreads();
      return;
    }
    const int total = static_cast<int>(tn) * Si;
    for (int base = threadIdx.x; base < total; base += kThreads * kInFlight) {
      float v[kInFlight];
      int at[kInFlight];
#pragma unroll
      for (int i = 0; i < kInFlight; ++i) {
        const int idx = base + i * kThreads;
        if (idx < total) {
          const int jj = idx / Si, s = idx - jj * Si;
          v[i] = note[j0 + jj][s];
          at[i] = jj * static_cast<int>(ld) + s;
        }
      }
#pragma unroll
      for (int i = 0; i < kInFlight; ++i) {
        if (base + i * kThreads < total) tile[at[i]] = v[i];
      }
    }
    __syncthreads();
  };
  // Scores, thread per (head, note) of the tile.
  for (int64_t j0 = 0; j0 < m; j0 += tile_notes) {
    const int64_t tn = min(tile_notes, m - j0);
    load_tile(j0, tn);
    const int tni = static_cast<int>(tn);
    for (int idx = threadIdx.x; idx < static_cast<int>(H) * tni; idx += kThreads) {
      const int h = idx / tni, jj = idx - h * tni;
      const float* qh = qk + h * S;
      const float* sj = tile + jj * ld;
      float acc = 0.0f;
      if (vec) {
        const float4* q4 = reinterpret_cast<const float4*>(qh);
        const float4* s4 = reinterpret_cast<const float4*>(sj);
        for (int c = 0; c < Si / 4; ++c) {
          const float4 a4 = q4[c], b4 = s4[c];
          acc += a4.x * b4.x + a4.y * b4.y + a4.z * b4.z + a4.w * b4.w;
        }
      } else {
        for (int64_t s = 0; s < S; ++s) acc += qh[s] * sj[s];
      }
      p[h * m + j0 + jj] = acc;
    }
    __syncthreads();
  }
  // Softmax over the notes, one warp per head.
  for (int64_t h = warp; h < H; h += kWarps) WarpSoftmax(p + h * m, m);
  __syncthreads();
  // u_h = Σ_j p_jh ŝ_j, thread per (head, column); the last tile is still in
  // place when there was one.
  for (int64_t j0 = 0; j0 < m; j0 += tile_notes) {
    const int64_t tn = min(tile_notes, m - j0);
    if (m > tile_notes) load_tile(j0, tn);
    for (int idx = threadIdx.x; idx < HSi; idx += kThreads) {
      const int h = idx / Si, s = idx - h * Si;
      const float* ph = p + h * m + j0;
      float acc = u[idx];
      for (int64_t jj = 0; jj < tn; ++jj) acc += ph[jj] * tile[jj * ld + s];
      u[idx] = acc;
    }
    __syncthreads();
  }
  // o_h = V_h u_h: a warp per output, lanes along its row of V (coalesced),
  // four outputs a warp at a time so that their loads are in flight together.
  constexpr int kOut = 4;
  for (int64_t i0 = warp; i0 < S; i0 += int64_t{kWarps} * kOut) {
    float acc[kOut];
#pragma unroll
    for (int k = 0; k < kOut; ++k) {
      const int64_t i = i0 + int64_t{k} * kWarps;
      acc[k] = 0.0f;
      if (i < S) {
        const float* uh = u + (static_cast<int>(i) / static_cast<int>(dh)) * S;
        const float* vr = r.v + i * S;
        for (int64_t s = lane; s < S; s += 32) acc[k] += vr[s] * uh[s];
      }
    }
#pragma unroll
    for (int k = 0; k < kOut; ++k) {
      const int64_t i = i0 + int64_t{k} * kWarps;
      const float sum = WarpSum(acc[k]);
      if (lane == 0 && i < S) o[i] = sum;
    }
  }
  return g;
}

// Shared memory of a block that runs AttendHead: `lead` floats of its own
// first, then q, qk and u [S], the partial sums [max(kThreads, S)], the
// scores [m_max] (rounded to 8 bytes) and the notes' addresses [m_max].
inline size_t AttendHeadSharedBytes(int64_t lead, int64_t S, int64_t m_max) {
  const int64_t floats = lead + 3 * S + std::max<int64_t>(kThreads, S) + m_max;
  return static_cast<size_t>(floats + floats % 2) * sizeof(float) +
         static_cast<size_t>(m_max) * sizeof(float*);
}

// Notes a warp scores at once (AttendHead).
constexpr int kNotesPerPass = 4;

// Head h of read `ri` for one row of stream slot `slot`, by the whole block,
// from the head's query q (dh floats, shared): o_h (dh floats at ob) = V_h
// Σ_j softmax_j(qk_h·ŝ_j) ŝ_j with qk_h = K_hᵀ q / √dh over the notes of
// the read's source pools (no versions), 0 where they are empty. Shared
// scratch: qk, u [S], part [max(kThreads, S)], p [m_max], note [m_max].
// Every note loop is split across warps. Ends without a barrier after its
// last shared write; ob is written by lane 0 of each warp.
__device__ inline void AttendHead(const mmc_slot_pools& pools, const mmc_slot_read_args& ri,
                                  int64_t slot, int h, const float* q, float* qk, float* u,
                                  float* part, float* p, const float** note, float* ob) {
  const int S = static_cast<int>(pools.S), dh = S / static_cast<int>(ri.H);
  const int64_t P = pools.capacity, nl = pools.n_layer;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int m = 0;
  for (int64_t l = ri.src_begin; l < ri.src_end; ++l) m += pools.count[slot * nl + l];
  if (m == 0) {
    for (int k = threadIdx.x; k < dh; k += kThreads) ob[k] = 0.0f;
    return;
  }
  for (int j = threadIdx.x; j < m; j += kThreads) {
    int64_t l = ri.src_begin, at = j;
    for (;; ++l) {
      const int c = pools.count[slot * nl + l];
      if (at < c) break;
      at -= c;
    }
    note[j] = pools.summary + ((slot * nl + l) * P + at) * S;
  }
  __syncthreads();
  const float scale = 1.0f / sqrtf(static_cast<float>(dh));
  for (int s = threadIdx.x; s < S; s += kThreads) {
    float acc = 0.0f;
#pragma unroll 8
    for (int k = 0; k < dh; ++k) acc += (scale * q[k]) * ri.k[(h * dh + k) * S + s];
    qk[s] = acc;
  }
  __syncthreads();
  // Scores: a warp per note, lanes along the summary, kNotesPerPass notes'
  // loads in flight together.
  for (int j0 = warp; j0 < m; j0 += kWarps * kNotesPerPass) {
    float acc[kNotesPerPass] = {};
    for (int s = lane; s < S; s += 32) {
      const float qs = qk[s];
#pragma unroll
      for (int t = 0; t < kNotesPerPass; ++t) {
        const int j = j0 + t * kWarps;
        if (j < m) acc[t] += qs * note[j][s];
      }
    }
#pragma unroll
    for (int t = 0; t < kNotesPerPass; ++t) {
      const float v = WarpSum(acc[t]);
      const int j = j0 + t * kWarps;
      if (lane == 0 && j < m) p[j] = v;
    }
  }
  __syncthreads();
  if (warp == 0) slot_ops::WarpSoftmax(p, m);
  __syncthreads();
  // u = Σ_j p_j ŝ_j: G groups of S threads, group g summing notes g, g + G, ...
  const int G = max(1, kThreads / S);
  for (int idx = threadIdx.x; idx < G * S; idx += kThreads) {
    const int g = idx / S, s = idx - g * S;
    float acc = 0.0f;
#pragma unroll 4
    for (int j = g; j < m; j += G) acc += p[j] * note[j][s];
    part[idx] = acc;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < S; s += kThreads) {
    float acc = 0.0f;
    for (int g = 0; g < G; ++g) acc += part[g * S + s];
    u[s] = acc;
  }
  __syncthreads();
  // o_h = V_h u: a warp per output.
  for (int k = warp; k < dh; k += kWarps) {
    const float* vr = ri.v + static_cast<int64_t>(h * dh + k) * S;
    float acc = 0.0f;
    for (int s = lane; s < S; s += 32) acc += vr[s] * u[s];
    acc = WarpSum(acc);
    if (lane == 0) ob[k] = acc;
  }
}

}  // namespace memmamba::cuda::slot_ops

#endif  // MEMMAMBA_KERNELS_SLOTS_CUH_
