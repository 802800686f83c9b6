// The op interface every backend implements (DESIGN 3).
//
// The forward pass (src/runtime/forward.cc) is written once against this
// table of ops; the CPU backend (always built) is the reference for every
// other backend. Pointers are in the backend's memory space; sizes are in
// elements; matrices are row-major. Every op documents whether it overwrites
// or accumulates into its output.
#ifndef MEMMAMBA_BACKEND_BACKEND_H_
#define MEMMAMBA_BACKEND_BACKEND_H_

#include <cstdint>
#include <memory>

namespace memmamba {

// A weight matrix [rows, cols], stored either as f32 or as bf16.
struct WeightRef {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

// Arguments of the selective scan over T positions of one stream
// (DESIGN 2.3 step 4, from x_proj's output on).
struct ScanArgs {
  int64_t T = 0, E = 0, N = 0;
  const float* xc = nullptr;      // [T, E] conv output ξc
  const float* dt = nullptr;      // [T, E] dt_proj·δ, before bias and softplus
  const float* dt_bias = nullptr; // [E]
  const float* A = nullptr;       // [N, E] = -exp(A_log)ᵀ
  const float* B = nullptr;       // row t at B + t*ld_bc, N values
  const float* C = nullptr;       // row t at C + t*ld_bc, N values
  int64_t ld_bc = 0;
  const float* D = nullptr;       // [E]
  const float* z = nullptr;       // row t at z + t*ld_z, E values (gate)
  int64_t ld_z = 0;
  float* state = nullptr;         // [N, E], read and updated in place
  float* y = nullptr;             // [T, E], overwritten: (Σ_n s·C + D·ξc)·SiLU(z)
};

// Causal depthwise conv + bias + SiLU over T positions of one stream:
// out[t, e] = SiLU(b[e] + Σ_k w[e, k]·ξ[t-K+1+k, e]); positions before the
// block come from `state` ([K-1, E], oldest first), which is then updated to
// the last K-1 inputs. Overwrites out [T, E].
struct ConvArgs {
  int64_t T = 0, E = 0, K = 0;
  const float* xi = nullptr;  // row t at xi + t*ld_xi
  int64_t ld_xi = 0;
  const float* w = nullptr;   // [E, K]
  const float* b = nullptr;   // [E]
  float* state = nullptr;     // [K-1, E]
  float* out = nullptr;       // [T, E]
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // y[m, :] (row stride ldy) = x[m, :] (row stride ldx) · Wᵀ, for m < M;
  // accumulates into y when `accumulate`, else overwrites.
  virtual void Matmul(const float* x, int64_t M, int64_t ldx, const WeightRef& w,
                      float* y, int64_t ldy, bool accumulate) = 0;

  // out[m] = x[m] / sqrt(mean(x[m]²) + eps) ⊙ w, rows of D; overwrites.
  virtual void RmsNorm(const float* x, int64_t M, int64_t D, const float* w, float eps,
                       float* out) = 0;

  // Causal depthwise conv + bias + SiLU, for each of `n` streams
  // (ConvArgs); streams are independent and may run in parallel.
  virtual void ConvSilu(const ConvArgs* streams, int64_t n) = 0;

  // The selective scan with softplus, D skip and SiLU gate fused, for each
  // of `n` streams (ScanArgs).
  virtual void SelectiveScan(const ScanArgs* streams, int64_t n) = 0;

  // Multi-head attention of one query over m entries (DESIGN 2.3 step 1):
  // head h uses dims [h·S/H, (h+1)·S/H); o_h = Σ_j softmax_j(q_h·k_jh/√(S/H)) v_jh.
  // keys[j] / values[j] point at S floats. Overwrites o[S]. m >= 1.
  virtual void PoolAttend(const float* q, int64_t m, const float* const* keys,
                          const float* const* values, int64_t S, int64_t H, float* o) = 0;
};

// The CPU backend using `n_threads` threads (>= 1).
std::unique_ptr<Backend> CreateCpuBackend(int n_threads);

}  // namespace memmamba

#endif  // MEMMAMBA_BACKEND_BACKEND_H_
