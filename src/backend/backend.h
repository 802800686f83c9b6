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
  // Training: when set, the state before positions 0, kScanChunk, 2·kScanChunk…
  // is written here ([ceil(T / kScanChunk), N, E]) for SelectiveScanBackward.
  float* checkpoints = nullptr;
};

// Positions between two saved scan states (ScanArgs::checkpoints).
constexpr int64_t kScanChunk = 64;

// The backward of SelectiveScan for one stream that started from the state
// `checkpoints` holds (the forward's inputs, again, plus the gradient of y).
// Overwrites dxc, ddt (gradient of dt before bias and softplus), dB and dC
// (rows at dB + t·ld_dbc); accumulates into dA ([N, E], gradient of A),
// dD and ddt_bias ([E]).
struct ScanBackwardArgs {
  ScanArgs fwd;                    // as in the forward (state unused)
  const float* checkpoints = nullptr;
  const float* dy = nullptr;       // [T, E]
  float* dxc = nullptr;            // [T, E]
  float* ddt = nullptr;            // [T, E]
  float* dB = nullptr;             // row t at dB + t*ld_dbc, N values
  float* dC = nullptr;             // row t at dC + t*ld_dbc, N values
  int64_t ld_dbc = 0;
  float* dz = nullptr;             // row t at dz + t*ld_dz, E values (overwritten)
  int64_t ld_dz = 0;
  float* dA = nullptr;             // [N, E], accumulated
  float* dD = nullptr;             // [E], accumulated
  float* ddt_bias = nullptr;       // [E], accumulated
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

// The backward of ConvSilu for one stream (training) that started from the
// inputs `prev` ([K-1, E], oldest first; NULL: zeros), which are constants:
// they get no gradient. Recomputes the pre-activation from xi; overwrites dxi
// (row t at dxi + t·ld_dxi, E values); accumulates into dw [E, K] and db [E].
struct ConvBackwardArgs {
  int64_t T = 0, E = 0, K = 0;
  const float* xi = nullptr;
  int64_t ld_xi = 0;
  const float* prev = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  const float* dout = nullptr;  // [T, E]
  float* dxi = nullptr;
  int64_t ld_dxi = 0;
  float* dw = nullptr;
  float* db = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // y[m, :] (row stride ldy) = x[m, :] (row stride ldx) · Wᵀ, for m < M;
  // accumulates into y when `accumulate`, else overwrites.
  virtual void Matmul(const float* x, int64_t M, int64_t ldx, const WeightRef& w,
                      float* y, int64_t ldy, bool accumulate) = 0;

  // Sizes whatever scratch the calling thread's Matmul calls with bf16
  // weights and K <= max_k take, so that they allocate nothing later.
  virtual void ReserveBf16Products(int64_t max_k) { (void)max_k; }

  // out[m] = x[m] / sqrt(mean(x[m]²) + eps) ⊙ w, rows of D; overwrites.
  virtual void RmsNorm(const float* x, int64_t M, int64_t D, const float* w, float eps,
                       float* out) = 0;

  // Causal depthwise conv + bias + SiLU, for each of `n` streams
  // (ConvArgs); streams are independent and may run in parallel.
  virtual void ConvSilu(const ConvArgs* streams, int64_t n) = 0;

  // The selective scan with softplus, D skip and SiLU gate fused, for each
  // of `n` streams (ScanArgs).
  virtual void SelectiveScan(const ScanArgs* streams, int64_t n) = 0;

  // The middle of one stream's one-position mixer step (DESIGN 2.3 step 4):
  // ConvSilu(conv), dbc [x_proj.rows] = x_proj·ξc, dt = dt_proj·dbc[0, R)
  // and SelectiveScan(scan), in one pass over the threads (each takes a
  // run of channels for the conv, the dt rows and the scan, with barriers
  // around the x projection) where the four ops take four parallel regions.
  // Same bits as those ops in turn. conv.T == scan.T == 1, and scan reads
  // conv.out, dbc and dt as that sequence of ops would.
  virtual void MixerStep(const ConvArgs& conv, const WeightRef& x_proj, float* dbc,
                         const WeightRef& dt_proj, float* dt, const ScanArgs& scan) = 0;

  // Multi-head attention of one query over m entries (DESIGN 2.3 step 1):
  // head h uses dims [h·S/H, (h+1)·S/H); o_h = Σ_j softmax_j(q_h·k_jh/√(S/H)) v_jh.
  // keys[j] / values[j] point at S floats. Overwrites o[S]. m >= 1.
  virtual void PoolAttend(const float* q, int64_t m, const float* const* keys,
                          const float* const* values, int64_t S, int64_t H, float* o) = 0;

  // The same attention read straight from the notes' summaries ŝ_j, with the
  // key and value projections K, V ([S, S], f32) folded into the query and
  // the output: per head h (rows K_h, V_h = [h·S/H, (h+1)·S/H) of K, V)
  //   q_h·(K ŝ_j)_h = (K_hᵀ q_h)·ŝ_j   and   Σ_j p_jh (V ŝ_j)_h = V_h (Σ_j p_jh ŝ_j).
  // A pool then holds nothing derived from its summaries (no per-note keys
  // or values to store, copy or recompute on restore) at 2·S² multiply-adds
  // per read plus H·S (instead of S) per note.
  // For M rows at once: row r's query is q + r·S, it attends over the m[r]
  // summaries notes[r][0..m[r]) (S floats each) and overwrites o + r·S; rows
  // with m[r] = 0 are left untouched. Rows are independent (and may run in
  // parallel); each row's result does not depend on M. `scratch` holds
  // PoolAttendFoldedScratch(max m[r], S, H) floats: the op allocates nothing
  // (the forward pass sizes everything before it writes a stream).
  virtual void PoolAttendFolded(int64_t M, const float* q, const float* const* const* notes,
                                const int64_t* m, const float* k, const float* v, int64_t S,
                                int64_t H, float* o, float* scratch) = 0;
  virtual int64_t PoolAttendFoldedScratch(int64_t max_m, int64_t S, int64_t H) const = 0;

  // One row's whole read: q [S] = Wq·a (a [D], Wq [S, D]), o [S] = the folded
  // attention of q over notes[0..m) (m >= 1, as PoolAttendFolded), c [D] =
  // Wo·o (Wo [D, S]); the same bits as Matmul, PoolAttendFolded and Matmul
  // in turn, in one pass over the threads where those take two parallel
  // regions around a serial attention. Writes q, o and c; `scratch` holds
  // PoolAttendFoldedScratch(m, S, H) floats.
  virtual void PoolReadRow(const float* a, int64_t D, const WeightRef& wq,
                           const float* const* notes, int64_t m, const float* k,
                           const float* v, int64_t S, int64_t H, const WeightRef& wo, float* q,
                           float* o, float* c, float* scratch) = 0;

  // --- Training (DESIGN 2.4, 6). Backward ops take the forward's inputs again
  // and the gradient of its output; "accumulates" means +=.

  // Gradient of Matmul's input: dx[m, :] (ldx) = dy[m, :] (ldy) · W
  // (W [N, K], f32); accumulates into dx when `accumulate`.
  virtual void MatmulBackwardInput(const float* dy, int64_t M, int64_t ldy, const float* w,
                                   int64_t N, int64_t K, float* dx, int64_t ldx,
                                   bool accumulate) = 0;
  // Gradient of Matmul's weight: dw [N, K] += Σ_m dy[m, :]ᵀ x[m, :].
  virtual void MatmulBackwardWeight(const float* dy, int64_t M, int64_t ldy, const float* x,
                                    int64_t ldx, int64_t N, int64_t K, float* dw) = 0;

  // Gradient of RmsNorm: overwrites dx [M, D] (or accumulates when
  // `accumulate`), accumulates into dw [D].
  virtual void RmsNormBackward(const float* x, int64_t M, int64_t D, const float* w, float eps,
                               const float* dy, float* dx, bool accumulate, float* dw) = 0;

  virtual void ConvSiluBackward(const ConvBackwardArgs* streams, int64_t n) = 0;
  virtual void SelectiveScanBackward(const ScanBackwardArgs* streams, int64_t n) = 0;

  // Gradient of PoolAttend (same inputs, do = gradient of o): overwrites
  // dq[S]; accumulates into dkeys[j] and dvalues[j] (S floats each).
  virtual void PoolAttendBackward(const float* q, int64_t m, const float* const* keys,
                                  const float* const* values, int64_t S, int64_t H,
                                  const float* dout, float* dq, float* const* dkeys,
                                  float* const* dvalues) = 0;

  // The straight-through note estimator (DESIGN 6). Every candidate j (the m
  // pool entries, keys/values, then the c other completed windows,
  // ckeys/cvalues) carries κ_j = keep_j + score_j − stopgrad(score_j); its
  // weight is κ_j times the softmax over all candidates, so no weight
  // exceeds 1, and the forward (κ = keep) is the pool's own attention. This
  // writes the surrogate gradient, per head h summed,
  //   dκ_j = Σ_h e^{s_jh} / Σ_all e^{s_ih} · (do_h·v_jh − do_h·o_h),
  // with o_h the forward's output (softmax over the pool), into dkappa
  // (overwritten; pool entries first). m >= 1.
  virtual void PoolAttendKappaGrad(const float* q, int64_t m, const float* const* keys,
                                   const float* const* values, int64_t c,
                                   const float* const* ckeys, const float* const* cvalues,
                                   int64_t S, int64_t H, const float* dout,
                                   float* dkappa) = 0;

  // Next-token cross-entropy of M rows of logits [M, V], in place: row m with
  // targets[m] >= 0 becomes scale·(softmax(row) − onehot(target)) and adds
  // −log softmax(row)[target] to *loss_sum (a double, summed in row order);
  // rows with targets[m] < 0 become 0.
  virtual void SoftmaxCrossEntropy(float* logits, int64_t M, int64_t V, const int32_t* targets,
                                   float scale, double* loss_sum) = 0;

  // out [D, D] += Xᵀ·Y in double (X, Y: [M, D] f32, row stride D): the Gram
  // matrices of evaluation's ridge regressions (ECLMF), which must stay
  // positive semi-definite to double precision when X has low rank.
  virtual void GramAccumulate(const float* x, const float* y, int64_t M, int64_t D,
                              double* out) = 0;

  // Σ x[i]² in double, in a fixed order (the global gradient norm).
  virtual double SumSquares(const float* x, int64_t n) = 0;

  // One AdamW update of n parameters (DESIGN 6), `step` counting from 1:
  // m = β1·m + (1−β1)·g·gs;  v = β2·v + (1−β2)·(g·gs)²;
  // w -= lr·( m/(1−β1^step) / (sqrt(v/(1−β2^step)) + eps) + wd·w ).
  // gs scales the gradient (clipping, accumulation).
  virtual void AdamW(float* w, const float* g, float* m, float* v, int64_t n, float gs,
                     float lr, float beta1, float beta2, float eps, float wd, int64_t step) = 0;
};

// The CPU backend using `n_threads` threads (>= 1).
std::unique_ptr<Backend> CreateCpuBackend(int n_threads);

}  // namespace memmamba

#endif  // MEMMAMBA_BACKEND_BACKEND_H_
