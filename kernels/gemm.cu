// Matrix products through cuBLASLt, fp32 arithmetic (src/backend/backend.h
// Matmul, MatmulBackwardInput, MatmulBackwardWeight; DESIGN 3):
//
//   matmul                  y[m, :] = x[m, :] · Wᵀ         (overwrites, or accumulates)
//   matmul_bf16             the same, x and W in bf16, on bf16 tensor cores, fp32 sums
//   matmul_backward_input   dx[m, :] = dy[m, :] · W        (overwrites, or accumulates)
//   matmul_backward_weight  dW += dyᵀ · x                   (accumulates)
//
// Row-major operands are handed to column-major cuBLASLt as their transposes:
// a row-major [R, C] matrix with row stride ld is a column-major C×R matrix
// with leading dimension ld, so y = x·Wᵀ becomes yᵀ = W·xᵀ and so on below.
// Compute type CUBLAS_COMPUTE_32F (no TF32) unless the context allows TF32.
// bf16 weights (the upper half of a float) are widened exactly into an fp32
// panel of at most 16 Mi elements and multiplied in fp32: the CPU backend's
// arithmetic, not tensor-core bf16 speed. In a context with bf16_products,
// x is rounded to bf16 instead (to nearest even, NaN kept a NaN) and the
// product runs on bf16 tensor cores, A and B bf16, C fp32, sums in fp32.
//
// Plans (descriptors, layouts and the heuristic's algorithm) are cached per
// shape, strides and pointer alignment in the context; cuBLASLt's results are
// deterministic for a fixed algorithm, so the same call gives the same bits.
#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <type_traits>

#include "internal.cuh"

namespace memmamba::cuda {

namespace {

struct GemmKey {
  bool trans_a, trans_b, tf32, bf16;  // bf16: A and B in bf16
  int64_t m, n, k, lda, ldb, ldc;
  int align_a, align_b, align_c;
  bool operator<(const GemmKey& o) const {
    return std::tie(trans_a, trans_b, tf32, bf16, m, n, k, lda, ldb, ldc, align_a, align_b,
                    align_c) < std::tie(o.trans_a, o.trans_b, o.tf32, o.bf16, o.m, o.n, o.k,
                                        o.lda, o.ldb, o.ldc, o.align_a, o.align_b, o.align_c);
  }
};

struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
};

int Alignment(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  for (int a = 16; a > 4; a /= 2) {
    if (v % a == 0) return a;
  }
  return 4;
}

int CublasFail(mmc_context* ctx, cublasStatus_t st, const char* what) {
  ctx->last_error = std::string(what) + ": " + cublasLtGetStatusName(st) + " (" +
                    cublasLtGetStatusString(st) + ")";
  if (st == CUBLAS_STATUS_ALLOC_FAILED) return MMC_ERR_OUT_OF_MEMORY;
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_ARCH_MISMATCH) {
    return MMC_ERR_UNSUPPORTED;
  }
  return MMC_ERR_CUBLAS;
}

#define MMC_LT_CHECK(ctx, expr)                                       \
  do {                                                                \
    const cublasStatus_t mmc_st_ = (expr);                            \
    if (mmc_st_ != CUBLAS_STATUS_SUCCESS) return CublasFail((ctx), mmc_st_, #expr); \
  } while (0)

void DestroyPlan(GemmPlan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p = GemmPlan{};
}

}  // namespace

struct GemmCache {
  std::map<GemmKey, GemmPlan> plans;
};

void DestroyGemmCache(GemmCache* cache) {
  if (cache == nullptr) return;
  for (auto& kv : cache->plans) DestroyPlan(kv.second);
  delete cache;
}

namespace {

int MakePlan(mmc_context* ctx, const GemmKey& key, GemmPlan* plan) {
  const cublasComputeType_t compute =
      key.tf32 && !key.bf16 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cudaDataType_t ab = key.bf16 ? CUDA_R_16BF : CUDA_R_32F;
  MMC_LT_CHECK(ctx, cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F));
  const cublasOperation_t ta = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  MMC_LT_CHECK(ctx, cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                   sizeof ta));
  MMC_LT_CHECK(ctx, cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                   sizeof tb));
  // Stored shapes (before the transposes).
  const uint64_t a_rows = key.trans_a ? key.k : key.m, a_cols = key.trans_a ? key.m : key.k;
  const uint64_t b_rows = key.trans_b ? key.n : key.k, b_cols = key.trans_b ? key.k : key.n;
  MMC_LT_CHECK(ctx, cublasLtMatrixLayoutCreate(&plan->a, ab, a_rows, a_cols, key.lda));
  MMC_LT_CHECK(ctx, cublasLtMatrixLayoutCreate(&plan->b, ab, b_rows, b_cols, key.ldb));
  MMC_LT_CHECK(ctx, cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_32F, key.m, key.n, key.ldc));

  cublasLtMatmulPreference_t pref = nullptr;
  MMC_LT_CHECK(ctx, cublasLtMatmulPreferenceCreate(&pref));
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } pref_guard{pref};
  const uint64_t ws = ctx->lt_workspace_bytes;
  MMC_LT_CHECK(ctx, cublasLtMatmulPreferenceSetAttribute(
                        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  const uint32_t al_a = key.align_a, al_b = key.align_b, al_c = key.align_c;
  MMC_LT_CHECK(ctx, cublasLtMatmulPreferenceSetAttribute(
                        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
  MMC_LT_CHECK(ctx, cublasLtMatmulPreferenceSetAttribute(
                        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
  MMC_LT_CHECK(ctx, cublasLtMatmulPreferenceSetAttribute(
                        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
  MMC_LT_CHECK(ctx, cublasLtMatmulPreferenceSetAttribute(
                        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  MMC_LT_CHECK(ctx, cublasLtMatmulAlgoGetHeuristic(ctx->lt, plan->desc, plan->a, plan->b,
                                                   plan->c, plan->c, pref, 1, &result, &found));
  if (found == 0) {
    return FailWith(ctx, MMC_ERR_UNSUPPORTED, "cuBLASLt found no algorithm for this product");
  }
  plan->algo = result.algo;
  return MMC_OK;
}

// Column-major C (m×n, ldc) = op(A)·op(B) + beta·C; A and B fp32, or both
// bf16 (uint16_t).
template <typename AB>
int Gemm(mmc_context* ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
         const AB* A, int64_t lda, const AB* B, int64_t ldb, float* C, int64_t ldc,
         float beta) {
  static_assert(std::is_same_v<AB, float> || std::is_same_v<AB, uint16_t>);
  GemmKey key{trans_a, trans_b, ctx->allow_tf32, std::is_same_v<AB, uint16_t>, m, n, k, lda,
              ldb, ldc, Alignment(A), Alignment(B), Alignment(C)};
  if (ctx->gemm_cache == nullptr) ctx->gemm_cache = new GemmCache;
  auto it = ctx->gemm_cache->plans.find(key);
  if (it == ctx->gemm_cache->plans.end()) {
    GemmPlan plan;
    const int st = MakePlan(ctx, key, &plan);
    if (st != MMC_OK) {
      DestroyPlan(plan);
      return st;
    }
    it = ctx->gemm_cache->plans.emplace(key, plan).first;
  }
  const GemmPlan& p = it->second;
  const float alpha = 1.0f;
  MMC_LT_CHECK(ctx, cublasLtMatmul(ctx->lt, p.desc, &alpha, A, p.a, B, p.b, &beta, C, p.c, C, p.c,
                                   &p.algo, ctx->lt_workspace, ctx->lt_workspace_bytes,
                                   ctx->stream));
  return MMC_OK;
}

// Zeroes rows x cols of a row-major matrix with row stride ld.
int ZeroRows(mmc_context* ctx, float* p, int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return MMC_OK;
  MMC_CUDA_CHECK(ctx, cudaMemset2DAsync(p, ld * sizeof(float), 0, cols * sizeof(float), rows,
                                        ctx->stream));
  return MMC_OK;
}

__global__ void WidenBf16Kernel(const uint16_t* __restrict__ in, float* __restrict__ out,
                                int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __uint_as_float(static_cast<uint32_t>(in[i]) << 16);
  }
}

constexpr int64_t kBf16PanelElements = int64_t{1} << 24;

// out[m·K + k] = bf16(x[m·ldx + k]), to nearest even; a NaN stays a NaN.
__global__ void RoundBf16Kernel(const float* __restrict__ x, int64_t M, int64_t K, int64_t ldx,
                                uint16_t* __restrict__ out) {
  const int64_t n = M * K;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = RoundBf16(x[i / K * ldx + i % K]);
  }
}

}  // namespace
}  // namespace memmamba::cuda

using namespace memmamba::cuda;

namespace {

// mmc_matmul (X = float) and mmc_matmul_bf16 (X = uint16_t: x in bf16,
// whose weights must be bf16 too).
template <typename X>
int Matmul(mmc_context* ctx, const X* x, int64_t M, int64_t ldx, const mmc_weight* w, float* y,
           int64_t ldy, int accumulate) {
  constexpr bool kBf16X = std::is_same_v<X, uint16_t>;
  MMC_ENTER(ctx);
  if (w == nullptr || M < 0 || w->rows < 0 || w->cols < 0) return MMC_ERR_INVALID_ARGUMENT;
  const int64_t N = w->rows, K = w->cols;
  if (((w->f32 == nullptr) == (w->bf16 == nullptr) || (kBf16X && w->f32 != nullptr)) && N > 0 &&
      K > 0) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (M == 0 || N == 0) return MMC_OK;
  if (ldy < N || ldx < K || y == nullptr || (K > 0 && x == nullptr)) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (K == 0) return accumulate ? MMC_OK : ZeroRows(ctx, y, M, N, ldy);
  return Guarded(ctx, [&]() -> int {
    const float beta = accumulate ? 1.0f : 0.0f;
    // yᵀ (N×M, ldy) = op_T(W as K×N, ld K) · xᵀ (K×M, ldx).
    if constexpr (kBf16X) {
      return Gemm(ctx, true, false, N, M, K, w->bf16, K, x, ldx, y, ldy, beta);
    } else {
      if (w->f32 != nullptr) {
        return Gemm(ctx, true, false, N, M, K, w->f32, K, x, ldx, y, ldy, beta);
      }
      if (ctx->bf16_products) {
        Scratch xb(ctx);
        MMC_RETURN_IF_ERROR(xb.Allocate(static_cast<size_t>(M * K) * sizeof(uint16_t)));
        const int64_t blocks = std::min<int64_t>(CeilDiv(M * K, 256), 4096);
        RoundBf16Kernel<<<static_cast<unsigned>(blocks), 256, 0, ctx->stream>>>(
            x, M, K, ldx, xb.as<uint16_t>());
        MMC_LAUNCH_CHECK(ctx, "RoundBf16Kernel");
        return Gemm(ctx, true, false, N, M, K, w->bf16, K, xb.as<const uint16_t>(), K, y, ldy,
                    beta);
      }
      const int64_t panel_rows = std::max<int64_t>(1, std::min(N, kBf16PanelElements / K));
      Scratch panel(ctx);
      MMC_RETURN_IF_ERROR(panel.Allocate(panel_rows * K * sizeof(float)));
      for (int64_t r0 = 0; r0 < N; r0 += panel_rows) {
        const int64_t rows = std::min(panel_rows, N - r0);
        const int64_t n = rows * K;
        const int64_t blocks = std::min<int64_t>(CeilDiv(n, 256), 4096);
        WidenBf16Kernel<<<static_cast<unsigned>(blocks), 256, 0, ctx->stream>>>(
            w->bf16 + r0 * K, panel.as<float>(), n);
        MMC_LAUNCH_CHECK(ctx, "WidenBf16Kernel");
        MMC_RETURN_IF_ERROR(
            Gemm(ctx, true, false, rows, M, K, panel.as<float>(), K, x, ldx, y + r0, ldy, beta));
      }
      return MMC_OK;
    }
  });
}

}  // namespace

extern "C" {

MMC_API int mmc_matmul(mmc_context* ctx, const float* x, int64_t M, int64_t ldx,
                       const mmc_weight* w, float* y, int64_t ldy, int accumulate) {
  return Matmul(ctx, x, M, ldx, w, y, ldy, accumulate);
}

MMC_API int mmc_matmul_bf16(mmc_context* ctx, const uint16_t* x, int64_t M, int64_t ldx,
                            const mmc_weight* w, float* y, int64_t ldy, int accumulate) {
  return Matmul(ctx, x, M, ldx, w, y, ldy, accumulate);
}

MMC_API int mmc_matmul_backward_input(mmc_context* ctx, const float* dy, int64_t M, int64_t ldy,
                                      const float* w, int64_t N, int64_t K, float* dx,
                                      int64_t ldx, int accumulate) {
  MMC_ENTER(ctx);
  if (M < 0 || N < 0 || K < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (M == 0 || K == 0) return MMC_OK;
  if (ldx < K || ldy < N || dx == nullptr || (N > 0 && (dy == nullptr || w == nullptr))) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  if (N == 0) return accumulate ? MMC_OK : ZeroRows(ctx, dx, M, K, ldx);
  return Guarded(ctx, [&]() -> int {
    // dxᵀ (K×M, ldx) = (W as K×N, ld K) · dyᵀ (N×M, ldy).
    return Gemm(ctx, false, false, K, M, N, w, K, dy, ldy, dx, ldx, accumulate ? 1.0f : 0.0f);
  });
}

MMC_API int mmc_matmul_backward_weight(mmc_context* ctx, const float* dy, int64_t M,
                                       int64_t ldy, const float* x, int64_t ldx, int64_t N,
                                       int64_t K, float* dw) {
  MMC_ENTER(ctx);
  if (M < 0 || N < 0 || K < 0) return MMC_ERR_INVALID_ARGUMENT;
  if (M == 0 || N == 0 || K == 0) return MMC_OK;
  if (ldx < K || ldy < N || dy == nullptr || x == nullptr || dw == nullptr) {
    return MMC_ERR_INVALID_ARGUMENT;
  }
  return Guarded(ctx, [&]() -> int {
    // dWᵀ (K×N, ld K) += xᵀ (K×M, ldx) · op_T(dyᵀ as N×M, ldy).
    return Gemm(ctx, false, true, K, N, M, x, ldx, dy, ldy, dw, K, 1.0f);
  });
}

}  // extern "C"
