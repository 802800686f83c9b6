// Causal depthwise conv + bias + SiLU (DESIGN 2.3 step 4: ξc =
// SiLU(causal_conv(ξ) + conv1d.bias); backend.h ConvSilu / ConvSiluBackward;
// the CPU twin is ConvChannels / ConvBackwardChannels in cpu_backend.cc).
//
// Forward, per stream:  out[t, e] = SiLU(b[e] + Σ_k w[e, k]·ξ[t-K+1+k, e])   (overwrites)
//   positions before the block come from state ([K-1, E], oldest first), which
//   is then replaced by the last K-1 inputs.
// Backward, from a zero state:
//   pre[t, e] = b[e] + Σ_k w[e, k]·ξ[t-K+1+k, e] (recomputed),
//   g[t, e]   = dout[t, e]·SiLU'(pre[t, e]);
//   dξ[s, e]  = Σ_k w[e, k]·g[s+K-1-k, e]                                   (overwrites)
//   dw[e, k] += Σ_t g[t, e]·ξ[t-K+1+k, e];  db[e] += Σ_t g[t, e]              (accumulate)
//   dw and db are summed per tile of kTileT positions into partials, then the
//   partials of every stream sharing dw / db in (stream, tile) order
//   (deterministic, no atomics).
//
// Layout: a block is kTileE channels × kTileT positions of one stream; the
// inputs of the tile and its K-1 halo rows are staged in shared memory, so
// each input is read from device memory about once.
#include <algorithm>
#include <map>
#include <vector>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kTileE = 32;
constexpr int kTileT = 64;
constexpr int kGroups = 8;  // 256 threads: 32 channels × 8 row groups
constexpr int kMaxK = 16;
constexpr int kMaxStreams = 16;

using ConvBatch = Batch<mmc_conv_args, kMaxStreams>;

struct ConvBackwardItem {
  mmc_conv_backward_args a;
  int64_t partial_index;  // first source index of this stream's tiles
};
using ConvBackwardBatch = Batch<ConvBackwardItem, kMaxStreams>;
static_assert(sizeof(ConvBatch) <= 4000 && sizeof(ConvBackwardBatch) <= 4000,
              "kernel parameters stay under 4 KiB");

__global__ void __launch_bounds__(kTileE* kGroups)
    ConvSiluKernel(const __grid_constant__ ConvBatch batch) {
  extern __shared__ float xs[];  // [kTileT + K - 1][kTileE]
  const mmc_conv_args& a = batch.item[blockIdx.z];
  const int64_t T = a.T, E = a.E, K = a.K;
  const int64_t t0 = blockIdx.y * int64_t{kTileT};
  if (t0 > 0 && t0 >= T) return;
  const int64_t e0 = blockIdx.x * int64_t{kTileE};
  const int c = threadIdx.x % kTileE, g = threadIdx.x / kTileE;
  const int64_t e = e0 + c;
  const bool valid = e < E;
  const int64_t rows = kTileT + K - 1;
  // Row r holds position t0 - (K-1) + r: from the state before 0, zero past T.
  for (int64_t r = g; r < rows; r += kGroups) {
    const int64_t t = t0 - (K - 1) + r;
    float v = 0.0f;
    if (valid) {
      if (t < 0) {
        v = a.state[(K - 1 + t) * E + e];
      } else if (t < T) {
        v = a.xi[t * a.ld_xi + e];
      }
    }
    xs[r * kTileE + c] = v;
  }
  __syncthreads();
  if (valid) {
    const float bias = a.b[e];
    const float* w = a.w + e * K;
    for (int i = g; i < kTileT; i += kGroups) {
      const int64_t t = t0 + i;
      if (t >= T) break;
      float acc = bias;
      for (int64_t k = 0; k < K; ++k) acc += w[k] * xs[(i + k) * kTileE + c];
      a.out[t * E + e] = Silu(acc);
    }
    // The new state (the first tile's block is the only reader of the old one,
    // and has it in shared memory): row j holds position T - (K-1) + j.
    if (blockIdx.y == 0) {
      for (int64_t j = g; j < K - 1; j += kGroups) {
        const int64_t p = T - (K - 1) + j;
        a.state[j * E + e] = p >= 0 ? a.xi[p * a.ld_xi + e] : xs[(p + K - 1) * kTileE + c];
      }
    }
  }
}

__global__ void __launch_bounds__(kTileE* kGroups)
    ConvSiluBackwardKernel(const __grid_constant__ ConvBackwardBatch batch, float* partials,
                           int64_t partial_stride) {
  extern __shared__ float smem[];
  const ConvBackwardItem& item = batch.item[blockIdx.z];
  const mmc_conv_backward_args& a = item.a;
  const int64_t T = a.T, E = a.E, K = a.K;
  const int64_t t0 = blockIdx.y * int64_t{kTileT};
  const int64_t tiles = (T + kTileT - 1) / kTileT;
  if (static_cast<int64_t>(blockIdx.y) >= tiles) return;
  const int64_t e0 = blockIdx.x * int64_t{kTileE};
  const int c = threadIdx.x % kTileE, g = threadIdx.x / kTileE;
  const int64_t e = e0 + c;
  const bool valid = e < E;
  // xs row r: position t0 - (K-1) + r, r < kTileT + 2(K-1); zero outside [0, T).
  // gs row r: g at position t0 + r, r < kTileT + K - 1; zero past T.
  const int64_t x_rows = kTileT + 2 * (K - 1), g_rows = kTileT + K - 1;
  float* xs = smem;
  float* gs = xs + x_rows * kTileE;
  float* red = gs + g_rows * kTileE;  // [kGroups][K + 1][kTileE]
  for (int64_t r = g; r < x_rows; r += kGroups) {
    const int64_t t = t0 - (K - 1) + r;
    xs[r * kTileE + c] = (valid && t >= 0 && t < T) ? a.xi[t * a.ld_xi + e] : 0.0f;
  }
  __syncthreads();
  const float* w = a.w + (valid ? e : 0) * K;
  const float bias = valid ? a.b[e] : 0.0f;
  for (int64_t r = g; r < g_rows; r += kGroups) {
    const int64_t t = t0 + r;
    float v = 0.0f;
    if (valid && t < T) {
      float pre = bias;
      for (int64_t k = 0; k < K; ++k) pre += w[k] * xs[(r + k) * kTileE + c];
      v = a.dout[t * E + e] * SiluGrad(pre);
    }
    gs[r * kTileE + c] = v;
  }
  __syncthreads();
  // dξ of the tile's positions, terms in the CPU's order (k descending).
  if (valid) {
    for (int i = g; i < kTileT; i += kGroups) {
      const int64_t s = t0 + i;
      if (s >= T) break;
      float acc = 0.0f;
      for (int64_t k = K - 1; k >= 0; --k) acc += gs[(i + K - 1 - k) * kTileE + c] * w[k];
      a.dxi[s * a.ld_dxi + e] = acc;
    }
  }
  // dw (k < K) and db (k = K) over this group's rows, then over the groups.
  for (int64_t k = 0; k <= K; ++k) {
    float acc = 0.0f;
    for (int i = g; i < kTileT; i += kGroups) {
      const float gv = gs[i * kTileE + c];
      acc += k < K ? gv * xs[(i + k) * kTileE + c] : gv;
    }
    red[(g * (K + 1) + k) * kTileE + c] = acc;
  }
  __syncthreads();
  if (valid) {
    float* out = partials + (item.partial_index + blockIdx.y) * partial_stride;
    for (int64_t k = g; k <= K; k += kGroups) {
      float acc = 0.0f;
      for (int q = 0; q < kGroups; ++q) acc += red[(q * (K + 1) + k) * kTileE + c];
      if (k < K) {
        out[e * K + k] = acc;
      } else {
        out[E * K + e] = acc;
      }
    }
  }
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_conv_silu(mmc_context* ctx, const mmc_conv_args* streams, int64_t n) {
  MMC_ENTER(ctx);
  if (n < 0 || (n > 0 && streams == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  if (n == 0) return MMC_OK;
  const int64_t E = streams[0].E, K = streams[0].K;
  if (E < 0 || K < 1) return MMC_ERR_INVALID_ARGUMENT;
  if (K > kMaxK) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "conv: K > 16");
  for (int64_t i = 0; i < n; ++i) {
    const mmc_conv_args& a = streams[i];
    if (a.E != E || a.K != K || a.T < 0 || a.ld_xi < E) return MMC_ERR_INVALID_ARGUMENT;
    if (E > 0 && (a.w == nullptr || a.b == nullptr || (K > 1 && a.state == nullptr) ||
                  (a.T > 0 && (a.xi == nullptr || a.out == nullptr)))) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
  }
  if (E == 0) return MMC_OK;
  return Guarded(ctx, [&]() -> int {
    const size_t smem = (kTileT + K - 1) * kTileE * sizeof(float);
    for (int64_t first = 0; first < n; first += kMaxStreams) {
      ConvBatch batch;
      batch.count = static_cast<int>(std::min<int64_t>(kMaxStreams, n - first));
      int64_t tiles = 1;
      for (int i = 0; i < batch.count; ++i) {
        batch.item[i] = streams[first + i];
        tiles = std::max(tiles, CeilDiv(streams[first + i].T, kTileT));
      }
      if (tiles > 65535) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "conv: T too large");
      const dim3 grid(static_cast<unsigned>(CeilDiv(E, kTileE)), static_cast<unsigned>(tiles),
                      static_cast<unsigned>(batch.count));
      ConvSiluKernel<<<grid, kTileE * kGroups, smem, ctx->stream>>>(batch);
      MMC_LAUNCH_CHECK(ctx, "ConvSiluKernel");
    }
    return MMC_OK;
  });
}

MMC_API int mmc_conv_silu_backward(mmc_context* ctx, const mmc_conv_backward_args* streams,
                                   int64_t n) {
  MMC_ENTER(ctx);
  if (n < 0 || (n > 0 && streams == nullptr)) return MMC_ERR_INVALID_ARGUMENT;
  if (n == 0) return MMC_OK;
  const int64_t E = streams[0].E, K = streams[0].K;
  if (E < 0 || K < 1) return MMC_ERR_INVALID_ARGUMENT;
  if (K > kMaxK) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "conv: K > 16");
  for (int64_t i = 0; i < n; ++i) {
    const mmc_conv_backward_args& a = streams[i];
    if (a.E != E || a.K != K || a.T < 0 || a.ld_xi < E || a.ld_dxi < E) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
    if (E > 0 && a.T > 0 &&
        (a.w == nullptr || a.b == nullptr || a.xi == nullptr || a.dout == nullptr ||
         a.dxi == nullptr || a.dw == nullptr || a.db == nullptr)) {
      return MMC_ERR_INVALID_ARGUMENT;
    }
  }
  if (E == 0) return MMC_OK;
  return Guarded(ctx, [&]() -> int {
    std::vector<int64_t> first(n), count(n);
    int64_t sources = 0;
    for (int64_t i = 0; i < n; ++i) {
      first[i] = sources;
      count[i] = CeilDiv(streams[i].T, kTileT);
      sources += count[i];
    }
    if (sources == 0) return MMC_OK;
    if (sources > INT32_MAX) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "conv: T too large");
    const int64_t stride = E * K + E;
    Scratch partials(ctx);
    MMC_RETURN_IF_ERROR(partials.Allocate(sources * stride * sizeof(float)));
    const int64_t x_rows = kTileT + 2 * (K - 1), g_rows = kTileT + K - 1;
    const size_t smem = (x_rows + g_rows + kGroups * (K + 1)) * kTileE * sizeof(float);
    for (int64_t f = 0; f < n; f += kMaxStreams) {
      ConvBackwardBatch batch;
      batch.count = static_cast<int>(std::min<int64_t>(kMaxStreams, n - f));
      int64_t tiles = 1;
      for (int i = 0; i < batch.count; ++i) {
        batch.item[i].a = streams[f + i];
        batch.item[i].partial_index = first[f + i];
        tiles = std::max(tiles, count[f + i]);
      }
      if (tiles > 65535) return FailWith(ctx, MMC_ERR_UNSUPPORTED, "conv: T too large");
      const dim3 grid(static_cast<unsigned>(CeilDiv(E, kTileE)), static_cast<unsigned>(tiles),
                      static_cast<unsigned>(batch.count));
      ConvSiluBackwardKernel<<<grid, kTileE * kGroups, smem, ctx->stream>>>(
          batch, partials.as<float>(), stride);
      MMC_LAUNCH_CHECK(ctx, "ConvSiluBackwardKernel");
    }
    std::vector<float*> dw(n), db(n);
    for (int64_t i = 0; i < n; ++i) {
      dw[i] = streams[i].dw;
      db[i] = streams[i].db;
    }
    for (const auto& [target, list] : GroupSources(dw, first, count)) {
      if (list.empty()) continue;
      MMC_RETURN_IF_ERROR(AddPartials(ctx, target, partials.as<float>(), stride, E * K,
                                      list.data(), static_cast<int>(list.size())));
    }
    for (const auto& [target, list] : GroupSources(db, first, count)) {
      if (list.empty()) continue;
      MMC_RETURN_IF_ERROR(AddPartials(ctx, target, partials.as<float>(E * K * sizeof(float)),
                                      stride, E, list.data(), static_cast<int>(list.size())));
    }
    return MMC_OK;
  });
}

}  // extern "C"
