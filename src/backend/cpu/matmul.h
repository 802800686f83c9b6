// Dense matrix products of the CPU backend (DESIGN.md section 3).
//
//   y[m, n] = sum_{k < K} x[m, k] * W[n, k]             (accumulate == false)
//   y[m, n] = y[m, n] + sum_{k < K} x[m, k] * W[n, k]   (accumulate == true)
//
// for 0 <= m < M, 0 <= n < N: a PyTorch Linear without bias, y = x W^T.
// x is row-major with row stride ldx (>= K); W is row-major [N, K] with row
// stride exactly K (fp32 or bf16, bf16 being the upper 16 bits of a float);
// y is row-major with row stride ldy (>= N). All arithmetic is fp32.
// Only y[m, 0..N) of each row is written; padding columns stay untouched.
//
// Determinism: the result is bitwise independent of n_threads. Work is split
// over N (or M) only, never over K, and each output element's reduction order
// depends on (M, N, K) alone. Results may differ between the bf16 and fp32
// entry points, between machines, and between the small-M and large-M paths
// (the choice of path depends on the shape and the machine only). Against the
// exact result the error stays within the worst-case fp32 bound the tests
// check: (K + 3) * 2^-24 * (sum_k |x[m, k] * W[n, k]| + |y_before[m, n]|).
// The AMX path (see below) keeps that bound down to parts of a value or
// products below 2^-126, which the tile unit flushes to zero, and may give
// NaN where fp32 gives +-Inf for an Inf input (matmul_amx.cc).
//
// Threads: n_threads >= 1 is this call's thread budget (values < 1 are
// treated as 1). The call may fork an OpenMP team of up to n_threads; when
// it is made inside an active parallel region it runs on the calling thread.
// The calling thread's OpenMP ICVs (omp_get_max_threads()) are the same after
// the call as before. Thread rule: any thread; calls on disjoint outputs may
// run concurrently.
//
// Ownership: all buffers belong to the caller and are only used during the
// call. x and w are read-only; y must not alias x or w.
// Preconditions (not checked, there is no error return): M, N, K >= 0,
// ldx >= K, ldy >= N; pointers may be NULL only where nothing is read or
// written (M == 0 or N == 0; x and w when K == 0).
// The functions never throw, abort or print; when a temporary buffer cannot be
// allocated a product falls back to a slower path that needs none.
#ifndef MEMMAMBA_BACKEND_CPU_MATMUL_H_
#define MEMMAMBA_BACKEND_CPU_MATMUL_H_

#include <cstddef>
#include <cstdint>

namespace memmamba::cpu {

// fp32 weights. M <= 16 (decode): the streaming AVX2 kernel, parallel over
// N. M > 16 (prefill, training): OpenBLAS sgemm on a grid of blocks fixed by
// the shape, one single-threaded call per block, blocks shared out
// dynamically; on CPUs with AMX-BF16 (and the OS's permission; MM_CPU_AMX=0
// turns it off) M > 16 runs on the tile unit instead: activations and
// weights each split exactly into three bf16 parts, and the six part
// products of order <= 2 accumulated (the three left out are at most
// (1 + 2^-10) * 2^-24 of |x w| per term): the same bound, other bits.
void MatmulF32(const float* x, int64_t M, int64_t K, int64_t ldx,
               const float* w, int64_t N, float* y, int64_t ldy,
               bool accumulate, int n_threads);

// bf16 weights, fp32 activations and outputs. M <= 16 (decode): an AVX2
// kernel that streams W once, widening 8 bf16 at a time in registers,
// parallel over N. M > 16 (prefill, training): W is widened panel by panel
// (a block of rows, all of K, 384 KiB) into a per-thread fp32 buffer and each
// panel goes through sgemm, parallel over panels; on CPUs with AMX-BF16
// (and the OS's permission; MM_CPU_AMX=0 turns it off) M > 16 runs on the
// tile unit instead, each activation split exactly into three bf16 parts
// (matmul_amx.h): the same bound, other bits.
void MatmulBf16(const float* x, int64_t M, int64_t K, int64_t ldx,
                const uint16_t* w_bf16, int64_t N, float* y, int64_t ldy,
                bool accumulate, int n_threads);

// Grows the calling thread's buffer for MatmulBf16's widened panels to what
// products with K <= max_k on n_threads threads take, so that later calls
// allocate nothing (the buffer lives as long as the thread). A failure is
// left to those calls, which then take a smaller team or another path.
void ReserveBf16Products(int64_t max_k, int n_threads);

// The general product of training's backward passes:
//   C[m, n] (ldc) = sum_k op(A)[m, k] * op(B)[k, n]   (+ C when accumulate)
// with op(A) = A [M, K] (lda) or, when trans_a, A^T of A [K, M]; op(B) = B
// [K, N] (ldb) or, when trans_b, B^T of B [N, K]. Row-major, fp32. The
// output is cut into a grid of blocks fixed by (M, N, K) alone, each block
// one single-threaded sgemm, so the bits never depend on n_threads. Same
// thread and ownership rules as above; C must not alias A or B.
void Gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
          int64_t ldc, bool accumulate, int n_threads);

}  // namespace memmamba::cpu

#endif  // MEMMAMBA_BACKEND_CPU_MATMUL_H_
