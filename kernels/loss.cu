// Softmax cross-entropy in place (DESIGN 6: next-token cross-entropy; backend.h
// SoftmaxCrossEntropy; the CPU twin is in src/backend/cpu/cpu_backend.cc).
//
// For each row m of logits [M, V] with 0 <= target < V:
//   row ← scale·(softmax(row) − onehot(target))                         (overwrites)
//   loss_sum += −log softmax(row)[target]                               (accumulates, double)
// rows with target < 0 become 0 and add nothing; a target >= V zeroes the row
// and adds NaN (the CPU reads out of bounds there: a caller error either way).
//
// One block per row: a pass for the running (max, Σ exp) of every thread,
// merged across the block, then a pass writing the gradient. The row losses go
// to a temporary and are summed in a fixed tree order by one block, then added
// to *loss_sum (deterministic; the CPU sums in row order, which differs from
// the tree by double rounding only).
#include <cmath>

#include "internal.cuh"

namespace memmamba::cuda {
namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads)
    SoftmaxCrossEntropyKernel(float* __restrict__ logits, int64_t V,
                              const int32_t* __restrict__ targets, float scale,
                              double* __restrict__ losses) {
  __shared__ float s_max[kThreads / 32];
  __shared__ double s_sum[kThreads / 32];
  const int64_t m = blockIdx.x;
  float* row = logits + m * V;
  const int32_t target = targets[m];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (target < 0 || target >= V) {
    for (int64_t v = tid; v < V; v += kThreads) row[v] = 0.0f;
    if (tid == 0) losses[m] = target < 0 ? 0.0 : NAN;
    return;
  }
  // Running max and sum of exp(x − max) of this thread's elements.
  float mx = -INFINITY, sum = 0.0f;
  for (int64_t v = tid; v < V; v += kThreads) {
    const float x = row[v];
    if (x > mx) {
      sum = sum * expf(mx - x) + 1.0f;
      mx = x;
    } else {
      sum += expf(x - mx);
    }
  }
  // Merge: the row max first, then every partial rescaled to it, in double.
  float row_max = WarpMax(mx);
  if (lane == 0) s_max[warp] = row_max;
  __syncthreads();
  row_max = s_max[0];
  for (int w = 1; w < kThreads / 32; ++w) row_max = fmaxf(row_max, s_max[w]);
  double part = mx == -INFINITY ? 0.0 : static_cast<double>(sum) * exp(static_cast<double>(mx) - row_max);
  part = WarpSumDouble(part);
  if (lane == 0) s_sum[warp] = part;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kThreads / 32; ++w) total += s_sum[w];
  const float k = static_cast<float>(scale / total);
  for (int64_t v = tid; v < V; v += kThreads) {
    const float e = expf(row[v] - row_max);
    if (v == target) {
      const float target_p = static_cast<float>(e / total);
      losses[m] = -log(static_cast<double>(e) / total);
      row[v] = scale * (target_p - 1.0f);
    } else {
      row[v] = e * k;
    }
  }
}

// *loss_sum += Σ_m losses[m], one block, fixed order.
__global__ void __launch_bounds__(1024)
    SumLossesKernel(const double* __restrict__ losses, int64_t M, double* loss_sum) {
  __shared__ double s[1024];
  double acc = 0.0;
  for (int64_t m = threadIdx.x; m < M; m += 1024) acc += losses[m];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int width = 512; width > 0; width >>= 1) {
    if (threadIdx.x < width) s[threadIdx.x] += s[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss_sum += s[0];
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

extern "C" {

MMC_API int mmc_softmax_cross_entropy(mmc_context* ctx, float* logits, int64_t M, int64_t V,
                                      const int32_t* targets, float scale, double* loss_sum) {
  MMC_ENTER(ctx);
  if (M < 0 || V < 1) return MMC_ERR_INVALID_ARGUMENT;
  if (M == 0) return MMC_OK;
  if (logits == nullptr || targets == nullptr || loss_sum == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (M > INT32_MAX) return MMC_ERR_UNSUPPORTED;
  return Guarded(ctx, [&]() -> int {
    Scratch losses(ctx);
    MMC_RETURN_IF_ERROR(losses.Allocate(M * sizeof(double)));
    SoftmaxCrossEntropyKernel<<<static_cast<unsigned>(M), kThreads, 0, ctx->stream>>>(
        logits, V, targets, scale, losses.as<double>());
    MMC_LAUNCH_CHECK(ctx, "SoftmaxCrossEntropyKernel");
    SumLossesKernel<<<1, 1024, 0, ctx->stream>>>(losses.as<double>(), M, loss_sum);
    MMC_LAUNCH_CHECK(ctx, "SumLossesKernel");
    return MMC_OK;
  });
}

}  // extern "C"
