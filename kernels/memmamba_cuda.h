/* memmamba_cuda.h — the op table of the CUDA backend (libmemmamba_cuda).
 *
 * The CUDA kernels of every op of src/backend/backend.h, in a shared object of
 * their own: the core library and CPU-only programs never load the CUDA
 * runtime, and a host backend can open this library at run time (dlopen +
 * mmc_get_op_table) or link it directly. The math of each op is the one
 * backend.h writes down (DESIGN.md sections 2.3, 2.4, 6); each kernel file in
 * kernels/ repeats it and says whether it overwrites or accumulates.
 *
 * Plain C99: sizes are int64_t, tensors are device pointers to row-major fp32
 * (bf16 only where named), no CUDA type crosses (the stream travels as void*).
 *
 *   mmc_context* ctx = NULL;
 *   if (mmc_context_create(&ctx, NULL) != MMC_OK) ...;   // device 0, own stream
 *   float* d = NULL;
 *   mmc_malloc(ctx, (void**)&d, bytes);
 *   mmc_memcpy(ctx, d, host, bytes, MMC_COPY_HOST_TO_DEVICE);
 *   mmc_rms_norm(ctx, d, M, D, w, 1e-5f, out);           // queued on the stream
 *   int st = mmc_synchronize(ctx);                       // errors of queued work
 *   mmc_free(ctx, d);
 *   mmc_context_free(ctx);
 *
 * Statuses: every function returns an int, MMC_OK (0) or a negative
 * mmc_status. A CUDA error never aborts the process: it becomes a status and
 * its text is kept in the context (mmc_context_last_error). Ops are queued on
 * the context's stream and return once queued: an error of the kernel itself
 * (a fault) is reported by a later call, at the latest by mmc_synchronize. A
 * fault leaves the device unusable for the process (CUDA's rule); every later
 * call then fails with MMC_ERR_CUDA.
 *
 * Threads: a context is used by one thread at a time; different contexts may
 * be used by different threads at once. Calls make the context's device
 * current for their duration and restore the caller's current device.
 *
 * Memory: pointers passed to ops are device memory (mmc_malloc or any CUDA
 * allocation of the context's device) owned by the caller. Temporaries are
 * taken from a stream-ordered pool owned by the context. Device allocation
 * failures return MMC_ERR_OUT_OF_MEMORY and change nothing.
 *
 * Determinism: every op gives the same bits for the same inputs on the same
 * device and build; no op uses floating-point atomics (reductions across
 * blocks go through fixed-order partial sums).
 *
 * Versions: MMC_API_VERSION here, mmc_api_version() in the library; a table
 * returned by mmc_get_op_table carries both its struct_size and version.
 * Arguments structs are fixed for an API version: a changed one becomes a new
 * function.
 */
#ifndef MEMMAMBA_CUDA_H_
#define MEMMAMBA_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#if defined(MMC_BUILDING_LIBRARY)
#define MMC_API __attribute__((visibility("default")))
#else
#define MMC_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MMC_API_VERSION 8

typedef enum mmc_status {
  MMC_OK = 0,
  MMC_ERR_INVALID_ARGUMENT = -1, /* NULL where a pointer is needed, bad size or stride */
  MMC_ERR_STRUCT_SIZE = -2,      /* an options/table struct of an unknown size */
  MMC_ERR_OUT_OF_MEMORY = -4,    /* device (or pinned host) memory exhausted */
  MMC_ERR_UNSUPPORTED = -13,     /* a shape this build does not handle (e.g. N > 64) */
  MMC_ERR_INTERNAL = -15,        /* a bug in the library: please report it */
  MMC_ERR_NO_DEVICE = -100,      /* no usable CUDA device or driver */
  MMC_ERR_CUDA = -101,           /* any other CUDA runtime error (text in the context) */
  MMC_ERR_CUBLAS = -102,         /* a cuBLASLt error (text in the context) */
  MMC_ERR_COMM = -103            /* an NCCL error (text in the context) */
} mmc_status;

/* Static text naming a status; never NULL. Any thread. */
MMC_API const char* mmc_status_string(int status);

/* MMC_API_VERSION of the built library. Any thread. */
MMC_API uint32_t mmc_api_version(void);

/* ------------------------------------------------------------------------ */
/* Context */

typedef struct mmc_context mmc_context;

typedef struct mmc_context_options {
  uint32_t struct_size; /* sizeof(mmc_context_options), set by _init */
  int32_t device;       /* CUDA device ordinal; default 0 */
  void* stream;         /* a cudaStream_t of that device to queue work on; NULL
                           (default): the context creates its own non-blocking
                           stream. A stream passed in stays the caller's and
                           must outlive the context. */
  int32_t allow_tf32;   /* nonzero: fp32 matrix products may use TF32 tensor
                           cores (about 1e-3 relative error); default 0 */
  /* Since MMC_API_VERSION 8. */
  int32_t bf16_products; /* nonzero: mmc_matmul with bf16 weights rounds x to
                            bf16 (to nearest even) and multiplies on bf16
                            tensor cores, sums in fp32 (about 1e-2 relative
                            error), instead of widening the weights to fp32;
                            default 0 */
} mmc_context_options;

/* Fills defaults. Returns MMC_ERR_INVALID_ARGUMENT (NULL), MMC_ERR_STRUCT_SIZE
 * (size smaller than the first field or larger than this library knows). */
MMC_API int mmc_context_options_init(mmc_context_options* options, size_t struct_size);

/* Creates a context on a device: a stream, a cuBLASLt handle and workspace,
 * and a memory pool for temporaries. options may be NULL (defaults). *out is
 * set to NULL on failure. Returns MMC_ERR_NO_DEVICE (no device/driver, or the
 * ordinal is out of range), MMC_ERR_OUT_OF_MEMORY, MMC_ERR_CUDA,
 * MMC_ERR_CUBLAS, MMC_ERR_STRUCT_SIZE. Any thread. */
MMC_API int mmc_context_create(mmc_context** out, const mmc_context_options* options);

/* Waits for queued work, then frees the context. NULL is a no-op. */
MMC_API void mmc_context_free(mmc_context* ctx);

/* Text of the last error recorded in the context ("" if none); owned by the
 * context, valid until its next call. */
MMC_API const char* mmc_context_last_error(const mmc_context* ctx);

/* The context's stream as a cudaStream_t. */
MMC_API void* mmc_context_stream(const mmc_context* ctx);

typedef struct mmc_device_info {
  char name[256];
  int32_t major, minor;          /* compute capability */
  int32_t multiprocessors;
  int64_t global_memory_bytes;
  int64_t l2_cache_bytes;
  int32_t runtime_version;       /* cudaRuntimeGetVersion */
  int32_t driver_version;        /* cudaDriverGetVersion */
} mmc_device_info;

MMC_API int mmc_device_get_info(mmc_context* ctx, mmc_device_info* info);

/* ------------------------------------------------------------------------ */
/* Memory, synchronisation, timing */

typedef enum mmc_copy_kind {
  MMC_COPY_HOST_TO_DEVICE = 1,
  MMC_COPY_DEVICE_TO_HOST = 2,
  MMC_COPY_DEVICE_TO_DEVICE = 3
} mmc_copy_kind;

/* cudaMalloc on the context's device. bytes == 0 gives NULL. */
MMC_API int mmc_malloc(mmc_context* ctx, void** ptr, size_t bytes);
/* Waits for the stream, then frees. NULL is a no-op. */
MMC_API int mmc_free(mmc_context* ctx, void* ptr);
/* Queued on the stream. Host memory may be pageable: then a host-to-device
 * copy has read the host buffer when the call returns, and a device-to-host
 * copy has filled it when the call returns. */
MMC_API int mmc_memcpy(mmc_context* ctx, void* dst, const void* src, size_t bytes,
                       mmc_copy_kind kind);
MMC_API int mmc_memset(mmc_context* ctx, void* ptr, int value, size_t bytes);
/* Waits for the context's queued work; returns the first error it met. */
MMC_API int mmc_synchronize(mmc_context* ctx);

typedef struct mmc_event mmc_event;
MMC_API int mmc_event_create(mmc_context* ctx, mmc_event** out);
MMC_API int mmc_event_record(mmc_context* ctx, mmc_event* event);
/* Milliseconds between two recorded events; waits for `end`. */
MMC_API int mmc_event_elapsed_ms(mmc_context* ctx, mmc_event* start, mmc_event* end,
                                 float* ms);
MMC_API void mmc_event_free(mmc_event* event);

/* ------------------------------------------------------------------------ */
/* Matrix products (gemm.cu, cuBLASLt, fp32 arithmetic) */

/* A weight matrix [rows, cols], row stride cols, f32 or bf16 (the upper 16
 * bits of a float); exactly one of the two pointers is set. */
typedef struct mmc_weight {
  const float* f32;
  const uint16_t* bf16;
  int64_t rows;
  int64_t cols;
} mmc_weight;

/* y[m, :] (row stride ldy) = x[m, :] (ldx) · Wᵀ for m < M; accumulates when
 * `accumulate`, else overwrites; padding columns of y are not touched.
 * bf16 weights are widened exactly to fp32 in panels and multiplied in fp32
 * (the CPU backend's arithmetic), or, in a context with bf16_products, x is
 * rounded to bf16 and the product runs on bf16 tensor cores with fp32 sums.
 * Backend::Matmul. */
MMC_API int mmc_matmul(mmc_context* ctx, const float* x, int64_t M, int64_t ldx,
                       const mmc_weight* w, float* y, int64_t ldy, int accumulate);

/* Since MMC_API_VERSION 8: mmc_matmul of x already in bf16 (row stride ldx)
 * and bf16 weights (w->bf16 set, w->f32 NULL) on bf16 tensor cores, sums in
 * fp32, in any context; its producers write x in bf16 themselves
 * (mmc_rms_norm_bf16, mmc_slots_selective_scan_bf16), so no rounding pass
 * runs in between. */
MMC_API int mmc_matmul_bf16(mmc_context* ctx, const uint16_t* x, int64_t M, int64_t ldx,
                            const mmc_weight* w, float* y, int64_t ldy, int accumulate);

/* dx[m, :] (ldx) = dy[m, :] (ldy) · W, W [N, K] f32; accumulates when
 * `accumulate`. Backend::MatmulBackwardInput. */
MMC_API int mmc_matmul_backward_input(mmc_context* ctx, const float* dy, int64_t M,
                                      int64_t ldy, const float* w, int64_t N, int64_t K,
                                      float* dx, int64_t ldx, int accumulate);

/* dw [N, K] += Σ_m dy[m, :]ᵀ x[m, :]. Backend::MatmulBackwardWeight. */
MMC_API int mmc_matmul_backward_weight(mmc_context* ctx, const float* dy, int64_t M,
                                       int64_t ldy, const float* x, int64_t ldx, int64_t N,
                                       int64_t K, float* dw);

/* ------------------------------------------------------------------------ */
/* RMSNorm (norm.cu) */

/* out[m] = x[m] / sqrt(mean(x[m]²) + eps) ⊙ w, M rows of D; overwrites. */
MMC_API int mmc_rms_norm(mmc_context* ctx, const float* x, int64_t M, int64_t D,
                         const float* w, float eps, float* out);
/* Since MMC_API_VERSION 8: mmc_rms_norm with out [M, D] in bf16, each value
 * the fp32 one rounded to nearest even. */
MMC_API int mmc_rms_norm_bf16(mmc_context* ctx, const float* x, int64_t M, int64_t D,
                              const float* w, float eps, uint16_t* out);

/* dx [M, D] overwritten (or accumulated when `accumulate`); dw [D] += the
 * weight gradient. Backend::RmsNormBackward. */
MMC_API int mmc_rms_norm_backward(mmc_context* ctx, const float* x, int64_t M, int64_t D,
                                  const float* w, float eps, const float* dy, float* dx,
                                  int accumulate, float* dw);

/* ------------------------------------------------------------------------ */
/* Causal depthwise conv + bias + SiLU (conv.cu); one struct per stream, the
 * same fields as backend.h's ConvArgs / ConvBackwardArgs. All streams of one
 * call share E and K (1 <= K <= 16); T may differ. */

typedef struct mmc_conv_args {
  int64_t T, E, K;
  const float* xi;  /* row t at xi + t*ld_xi */
  int64_t ld_xi;
  const float* w;   /* [E, K] */
  const float* b;   /* [E] */
  float* state;     /* [K-1, E], oldest first; read, then updated */
  float* out;       /* [T, E], overwritten */
} mmc_conv_args;

MMC_API int mmc_conv_silu(mmc_context* ctx, const mmc_conv_args* streams, int64_t n);

typedef struct mmc_conv_backward_args {
  int64_t T, E, K;
  const float* xi;
  int64_t ld_xi;
  const float* w;
  const float* b;
  const float* dout; /* [T, E] */
  float* dxi;        /* row t at dxi + t*ld_dxi, overwritten */
  int64_t ld_dxi;
  float* dw;         /* [E, K], accumulated */
  float* db;         /* [E], accumulated */
} mmc_conv_backward_args;

/* From a zero state (training). dw and db receive the sum over all streams
 * of the call; streams may share dw/db (they normally do). */
MMC_API int mmc_conv_silu_backward(mmc_context* ctx, const mmc_conv_backward_args* streams,
                                   int64_t n);

/* ------------------------------------------------------------------------ */
/* Selective scan (scan.cu); the fields of backend.h's ScanArgs /
 * ScanBackwardArgs. All streams of one call share E and N (1 <= N <= 64);
 * T may differ. Checkpoints: the state before positions 0, 64, 128, ...
 * (kScanChunk = MMC_SCAN_CHUNK), [ceil(T / 64), N, E]. */

#define MMC_SCAN_CHUNK 64

typedef struct mmc_scan_args {
  int64_t T, E, N;
  const float* xc;      /* [T, E] */
  const float* dt;      /* [T, E], before bias and softplus */
  const float* dt_bias; /* [E] */
  const float* A;       /* [N, E] */
  const float* B;       /* row t at B + t*ld_bc */
  const float* C;
  int64_t ld_bc;
  const float* D;       /* [E] */
  const float* z;       /* row t at z + t*ld_z */
  int64_t ld_z;
  float* state;         /* [N, E], read and updated */
  float* y;             /* [T, E], overwritten */
  float* checkpoints;   /* NULL or [ceil(T/64), N, E], overwritten */
} mmc_scan_args;

MMC_API int mmc_selective_scan(mmc_context* ctx, const mmc_scan_args* streams, int64_t n);

typedef struct mmc_scan_backward_args {
  mmc_scan_args fwd;        /* the forward's inputs (state, y, checkpoints unused) */
  const float* checkpoints; /* as the forward wrote them */
  const float* dy;          /* [T, E] */
  float* dxc;               /* [T, E], overwritten */
  float* ddt;               /* [T, E], overwritten */
  float* dB;                /* row t at dB + t*ld_dbc, overwritten */
  float* dC;
  int64_t ld_dbc;
  float* dz;                /* row t at dz + t*ld_dz, overwritten */
  int64_t ld_dz;
  float* dA;                /* [N, E], accumulated */
  float* dD;                /* [E], accumulated */
  float* ddt_bias;          /* [E], accumulated */
} mmc_scan_backward_args;

/* Streams may share dA / dD / ddt_bias (the layer's gradients, as in
 * training): each stream's contribution is summed into a temporary, then the
 * streams that share an output are added to it in stream order. */
MMC_API int mmc_selective_scan_backward(mmc_context* ctx,
                                        const mmc_scan_backward_args* streams, int64_t n);

/* ------------------------------------------------------------------------ */
/* Gathered pool attention (pool_attention.cu): `rows` queries at once, row r
 * reading the entries entries[offsets[r] .. offsets[r+1]) of a key table and
 * a value table (CSR). Per row, as Backend::PoolAttend: head h uses dims
 * [h·S/H, (h+1)·S/H); o_h = Σ_j softmax_j(q_h·k_jh/√(S/H)) v_jh. A row with no
 * entries gets o = 0. S <= 256, H divides S. The index is not checked on the
 * device: mmc_pool_index_transpose checks it on the host. */

typedef struct mmc_pool_attend_args {
  int64_t rows, S, H;
  const float* q;          /* row r at q + r*ld_q */
  int64_t ld_q;
  const float* keys;       /* table row i at keys + i*ld_kv */
  const float* values;     /* table row i at values + i*ld_kv */
  int64_t ld_kv;
  int64_t table_rows;      /* entries index rows [0, table_rows) */
  const int32_t* offsets;  /* device, [rows + 1], offsets[0] = 0, non-decreasing */
  const int32_t* entries;  /* device, [nnz] table row indices */
  int64_t nnz;             /* offsets[rows] (the caller built the index) */
  float* o;                /* row r at o + r*ld_o, overwritten */
  int64_t ld_o;
} mmc_pool_attend_args;

MMC_API int mmc_pool_attend(mmc_context* ctx, const mmc_pool_attend_args* args);

/* The transposed index the backward needs to sum each table row's gradient
 * in a fixed order: for table row i, t_positions[t_offsets[i] ..
 * t_offsets[i+1]) are the positions k (into entries) with entries[k] == i,
 * ascending. Host memory in and out (the caller, who built the CSR on the
 * host, uploads the result). nnz = offsets[rows]. Returns
 * MMC_ERR_INVALID_ARGUMENT for offsets that decrease or entries out of range.
 * Any thread. */
MMC_API int mmc_pool_index_transpose(const int32_t* offsets, int64_t rows,
                                     const int32_t* entries, int64_t table_rows,
                                     int32_t* t_offsets /* [table_rows + 1] */,
                                     int32_t* t_positions /* [nnz] */);

typedef struct mmc_pool_attend_backward_args {
  mmc_pool_attend_args fwd;    /* the forward's inputs (o unused) */
  const int32_t* t_offsets;    /* device, mmc_pool_index_transpose */
  const int32_t* t_positions;  /* device */
  const float* dout;           /* row r at dout + r*ld_dout */
  int64_t ld_dout;
  float* dq;                   /* row r at dq + r*ld_dq, overwritten (0 for empty rows) */
  int64_t ld_dq;
  float* dkeys;                /* table row i at dkeys + i*ld_dkv, accumulated */
  float* dvalues;              /* table row i at dvalues + i*ld_dkv, accumulated */
  int64_t ld_dkv;
} mmc_pool_attend_backward_args;

/* Backend::PoolAttendBackward of every row; the gradients of a table row are
 * summed over the rows that read it in ascending row order (a deterministic
 * segmented reduction, no atomics), then added to dkeys / dvalues. */
MMC_API int mmc_pool_attend_backward(mmc_context* ctx,
                                     const mmc_pool_attend_backward_args* args);

/* ------------------------------------------------------------------------ */
/* Loss (loss.cu) */

/* In place over M rows of logits [M, V]: a row with 0 <= targets[m] < V
 * becomes scale·(softmax(row) − onehot(target)) and adds
 * −log softmax(row)[target] to *loss_sum; other rows become 0 (a target >= V
 * adds NaN). targets (int32) and loss_sum (one double) are device memory;
 * the M losses are summed in a fixed order, then added.
 * Backend::SoftmaxCrossEntropy. */
MMC_API int mmc_softmax_cross_entropy(mmc_context* ctx, float* logits, int64_t M, int64_t V,
                                      const int32_t* targets, float scale, double* loss_sum);

/* ------------------------------------------------------------------------ */
/* Optimizer (optimizer.cu): many tensors per call */

typedef struct mmc_tensor_ref {
  const float* x;
  int64_t n;
} mmc_tensor_ref;

/* *out (device double) = Σ over tensors Σ x[i]², summed in double in a fixed
 * order (the global gradient norm). Overwrites *out. */
MMC_API int mmc_sum_squares(mmc_context* ctx, const mmc_tensor_ref* tensors, int64_t n_tensors,
                            double* out);

typedef struct mmc_adamw_tensor {
  float* w;
  const float* g;
  float* m;
  float* v;
  int64_t n;
  float weight_decay;   /* per tensor: 0 for norms, biases, A_log, D, alpha */
} mmc_adamw_tensor;

typedef struct mmc_adamw_params {
  float lr, beta1, beta2, eps;
  float grad_scale;                /* gs: clipping, accumulation */
  const float* grad_scale_device;  /* NULL, or one device float multiplying gs
                                      (a clip factor computed on the device) */
  int64_t step;                    /* counting from 1 */
} mmc_adamw_params;

/* Backend::AdamW of every tensor: m = β1·m + (1−β1)·g·gs;
 * v = β2·v + (1−β2)·(g·gs)²; w -= lr·(m/(1−β1^step) / (sqrt(v/(1−β2^step)) + eps)
 * + wd·w). Overwrites w, m, v. */
MMC_API int mmc_adamw(mmc_context* ctx, const mmc_adamw_tensor* tensors, int64_t n_tensors,
                      const mmc_adamw_params* params);

/* ------------------------------------------------------------------------ */
/* Rows, note block, pool-read gate and fusion (rows.cu, notes.cu): the parts
 * of the whole-sequence forward and its backward between the ops above
 * (src/train/gradients.cc does the same on the host). Index arrays are
 * device int32 and are not checked on the device (the host builds them). */

/* For i < n: dst row out_rows[i] (row stride ld_dst; out_rows NULL: row i)
 * = (accumulate ? itself : 0) + Σ_{j ∈ [offsets[i], offsets[i+1])} src row
 * src_rows[j] (ld_src; src_rows NULL: row j), summed in ascending j; offsets
 * NULL means j = i (one source row each). D columns. Output rows must be
 * distinct. Serves the embedding lookup, the target-row gather and scatter
 * of the loss, and the embedding gradient (rows grouped by token). */
MMC_API int mmc_gather_rows(mmc_context* ctx, const float* src, int64_t ld_src,
                            const int32_t* src_rows, const int32_t* offsets,
                            const int32_t* out_rows, int64_t n, int64_t D, float* dst,
                            int64_t ld_dst, int accumulate);

/* y[i] += x[i] for i < n. */
MMC_API int mmc_add(mmc_context* ctx, const float* x, int64_t n, float* y);

/* Window maxima and note scores (DESIGN 2.3 step 5) of B sequences of T rows
 * of a ([B·T, D], row stride D), nw = T / w complete windows each; window r =
 * b·nw + k covers positions [k·w, (k+1)·w) of sequence b:
 *   m[r, d]   = max over those positions of a[b·T + t, d]
 *   arg[r, d] = the first t (position in the sequence) attaining it (int32)
 *   score[r]  = σ(Σ_d sw[d]·(m[r, d] − mean_d m[r, :]) + *sb)
 * m, arg [B·nw, D] and score [B·nw] overwritten. sb is a device float. */
MMC_API int mmc_note_windows(mmc_context* ctx, const float* a, int64_t B, int64_t T, int64_t D,
                             int64_t w, const float* sw, const float* sb, float* m,
                             int32_t* arg, float* score);

/* s[r, :] = score[r]·raw[r, :], rows × S; overwrites s. */
MMC_API int mmc_note_scale(mmc_context* ctx, const float* raw, const float* score, int64_t rows,
                           int64_t S, float* s);

/* The backward of mmc_note_scale: draw[r, :] = score[r]·ds[r, :]
 * (overwritten) and dscore[r] = (extra ? extra[r] : 0) + Σ_j ds[r, j]·raw[r, j]
 * (overwritten; `extra` carries the straight-through surrogate). */
MMC_API int mmc_note_scale_backward(mmc_context* ctx, const float* raw, const float* score,
                                    const float* ds, const float* extra, int64_t rows,
                                    int64_t S, float* draw, float* dscore);

/* The backward of the score: with g_r = dscore[r]·score[r]·(1 − score[r]),
 *   dm[r, d] += g_r·(sw[d] − mean sw)                       (accumulated)
 *   dsw[d]   += Σ_r g_r·(m[r, d] − mean_d m[r, :])          (accumulated)
 *   *dsb     += Σ_r g_r                                     (accumulated)
 * the sums over r in a fixed order. */
MMC_API int mmc_note_score_backward(mmc_context* ctx, const float* m, const float* score,
                                    const float* dscore, int64_t rows, int64_t D,
                                    const float* sw, float* dm, float* dsw, float* dsb);

/* The backward of the max: da[(b·T + arg[r, d])·D + d] += dm[r, d] for every
 * window r = b·nw + k (no two windows share a position). */
MMC_API int mmc_note_max_backward(mmc_context* ctx, const float* dm, const int32_t* arg,
                                  int64_t B, int64_t nw, int64_t T, int64_t D, float* da);

/* The gate of a pool read, per row r < M of a ([M, D]):
 *   γ = σ(gw·a[r] + *gb);  gate[r] = γ if offsets[r+1] > offsets[r] and γ > threshold, else 0
 * (offsets: the read's CSR index, device, [M + 1]). Overwrites gate [M]. */
MMC_API int mmc_read_gate(mmc_context* ctx, const float* a, int64_t M, int64_t D,
                          const float* gw, const float* gb, float threshold,
                          const int32_t* offsets, float* gate);

/* Fusion modes, as DESIGN 2.1's fusion knob. */
#define MMC_FUSION_WEIGHTED 0
#define MMC_FUSION_RESIDUAL 1
#define MMC_FUSION_GATED 2

/* x[r, d] += f[r, d]·(gate[r]·co[r, d]) for rows with gate[r] != 0, where f =
 * alpha[d] (WEIGHTED), 1 (RESIDUAL) or σ(fuse[d]·a[r, d]) (GATED). alpha /
 * fuse may be NULL where the mode does not use them. */
MMC_API int mmc_read_fuse(mmc_context* ctx, int mode, const float* a, const float* co,
                          const float* gate, int64_t M, int64_t D, const float* alpha,
                          const float* fuse, float* x);

/* The backward of mmc_read_gate + mmc_read_fuse, given dx (the gradient of
 * x). For rows with gate[r] = γ != 0, with dc = f ⊙ dx[r]:
 *   WEIGHTED: dalpha[d] += Σ_r dx·γ·co
 *   GATED:    p = dx·γ·co·f·(1 − f);  dfuse[d] += Σ_r p·a;  da[r, d] += p·fuse[d]
 *   dγ = Σ_d dc·co;  dco[r] = γ·dc;  q = dγ·γ·(1 − γ);
 *   dgw[d] += Σ_r q·a[r, d];  da[r, d] += q·gw[d];  *dgb += Σ_r q
 * Rows with gate 0 get dco = 0 and add nothing. dco [M, D] overwritten; da
 * accumulated; the parameter sums over r in a fixed order. dalpha / dfuse
 * may be NULL where the mode does not use them. */
MMC_API int mmc_read_fuse_backward(mmc_context* ctx, int mode, const float* a, const float* co,
                                   const float* gate, const float* dx, int64_t M, int64_t D,
                                   const float* alpha, const float* fuse, const float* gw,
                                   float* dco, float* da, float* dalpha, float* dfuse,
                                   float* dgw, float* dgb);

/* A [N, E] = −exp(A_log)ᵀ from A_log [E, N] (overwrites A). */
MMC_API int mmc_a_from_log(mmc_context* ctx, const float* A_log, int64_t E, int64_t N, float* A);

/* dA_log[e, n] += dA[n, e]·A[n, e] (A = −exp(A_log)ᵀ, both [N, E]). */
MMC_API int mmc_a_log_backward(mmc_context* ctx, const float* dA, const float* A, int64_t E,
                               int64_t N, float* dA_log);

/* ------------------------------------------------------------------------ */
/* Session slots (sessions.cu): the note block and pool reads of streaming
 * sessions whose state lives on the device, one slot per session in arrays
 * laid out slot-major. The slots_ ops step B streams of T rows each (rows
 * b·T .. b·T + T − 1 of their activations belong to stream b); for
 * mmc_slots_note_window a stream's T rows lie in one note window, which
 * closes after them where windows[b] >= 0 (that window's index; −1 where it
 * stays open). slots (int32) and windows (int64) are device arrays of B;
 * slots must be distinct. One stream's call over several windows takes the
 * chunk_ ops below instead of the note window and insert, and gives the read
 * its pool versions. The CPU twins are TakeNotes and ReadAndFuse in
 * src/runtime/forward.cc. */

#define MMC_POOL_FIFO 0
#define MMC_POOL_PRIORITY 1

typedef struct mmc_slot_pools {
  int64_t n_layer;   /* L */
  int64_t capacity;  /* P: notes a pool holds */
  int64_t S;         /* floats per note summary */
  float* summary;    /* [slots][L][P][S] */
  float* score;      /* [slots][L][P] */
  int64_t* window;   /* [slots][L][P], ascending within a pool */
  int32_t* count;    /* [slots][L]: notes held */
} mmc_slot_pools;

/* Per stream b: acc = win_max[slots[b]][layer] ([slots][n_layer][D]) becomes
 * max(acc, a rows); where the window closes, m[b] = acc, score[b] =
 * σ(Σ_d sw[d]·(m[b, d] − mean m[b]) + sb) and acc = −∞; elsewhere m[b] = 0
 * and score[b] = −∞. m [B, D] and score [B] overwritten. */
MMC_API int mmc_slots_note_window(mmc_context* ctx, const float* a, int64_t B, int64_t T,
                                  int64_t D, const int32_t* slots, const int64_t* windows,
                                  float* win_max, int64_t n_layer, int64_t layer,
                                  const float* sw, float sb, float* m, float* score);

/* Per layer l and stream b whose window closes with score[l·B + b] >
 * threshold: the note (window, score, summary score·raw[(l·B + b)·S ..])
 * enters pool (slots[b], l) as InsertNote decides under `policy`
 * (MMC_POOL_FIFO / MMC_POOL_PRIORITY), keeping window order. */
MMC_API int mmc_slots_pool_insert(mmc_context* ctx, const mmc_slot_pools* pools, int policy,
                                  float threshold, int64_t B, const int32_t* slots,
                                  const int64_t* windows, const float* raw,
                                  const float* score);

typedef struct mmc_slot_read_args {
  int64_t B, T, D, H;
  int64_t src_begin, src_end; /* the pools read: layers [src_begin, src_end) */
  int64_t m_max;              /* >= (src_end − src_begin)·capacity */
  const float* a;             /* [B·T, D] */
  const float* gw;            /* [D] gate weights */
  float gb;                   /* gate bias */
  float threshold;            /* gate threshold */
  const float* q;             /* [B·T, S] queries (q projection of a) */
  const float* k;             /* [S, S] key projection, f32 */
  const float* v;             /* [S, S] value projection, f32 */
  const int32_t* slots;       /* device [B] */
  float* gate;                /* [B·T], overwritten */
  float* o;                   /* [B·T, S], overwritten (0 where gate is 0) */
  /* Versions, for one stream's call over several note windows (NULL ver_ids:
   * every row reads the slot's pools). Row r reads, of source layer l, the
   * ver_count[l·n_versions + v] ids at ver_ids + (l·n_versions + v)·capacity
   * with v = row_version[r]: an id below capacity is that entry of the slot's
   * pool, capacity + c the call's note c of layer l, whose summary is at
   * new_notes + (l·n_new + c)·S (mmc_chunk_pool_versions writes them). */
  const int32_t* ver_ids;
  const int32_t* ver_count;
  int64_t n_versions;
  const int32_t* row_version; /* device [B·T] */
  const float* new_notes;
  int64_t n_new;
} mmc_slot_read_args;

/* Per row: γ = σ(gw·a + gb); gate = γ where the stream's pools of layers
 * [src_begin, src_end) hold notes and γ > threshold, else 0; where gate != 0,
 * o = Backend::PoolAttendFolded over those notes (layer, then window order).
 * MMC_ERR_UNSUPPORTED where the read's shared memory (2·H·S + H·m_max floats,
 * a tile of up to 32 KiB of notes and m_max offsets) exceeds the device's. */
MMC_API int mmc_slots_pool_read(mmc_context* ctx, const mmc_slot_pools* pools,
                                const mmc_slot_read_args* args);

/* One stream's call over T rows at positions p0 .. p0 + T − 1 that may
 * close several note windows (position p closes one where p % w == w − 1):
 * acc ([D], the slot's pending maxima of the layer) walks the rows; the c-th
 * window closed gets m[c] = its maxima, score[c] = σ(Σ_d sw[d]·(m[c, d] −
 * mean m[c]) + sb), and acc restarts at −∞. m [closes, D] and score
 * [closes] overwritten; acc updated. */
MMC_API int mmc_chunk_note_windows(mmc_context* ctx, const float* a, int64_t T, int64_t D,
                                   int64_t p0, int64_t w, float* acc, const float* sw, float sb,
                                   float* m, float* score);

/* The versions of pool (slot, layer) over the call's n_new closed windows,
 * as InsertNote decides under `policy` with score[c] the c-th window's
 * score: version v (after v windows) is count[v] ids at ids + v·capacity
 * (mmc_slot_read_args's ids), v = 0 .. n_new. ids [(n_new + 1)·capacity] and
 * count [n_new + 1] overwritten; the pool itself is not changed. */
MMC_API int mmc_chunk_pool_versions(mmc_context* ctx, const mmc_slot_pools* pools, int policy,
                                    float threshold, int64_t slot, int64_t layer, int64_t n_new,
                                    const float* score, int32_t* ids, int32_t* count);

/* Makes the last version of every layer (ids + (l·(n_new + 1) + n_new)·capacity,
 * as mmc_chunk_pool_versions wrote them for each layer l) the pools of
 * `slot`: the entries kept, then the call's notes (summary new_notes +
 * (l·n_new + c)·S, score new_score[l·n_new + c], window new_window[c]). */
MMC_API int mmc_chunk_pool_commit(mmc_context* ctx, const mmc_slot_pools* pools, int64_t slot,
                                  int64_t n_new, const int32_t* ids, const int32_t* count,
                                  const float* new_notes, const float* new_score,
                                  const int64_t* new_window);

/* The mixer's causal conv + bias + SiLU (mmc_conv_silu's math) for B streams
 * of T rows (row b·T + t at xi + (b·T + t)·ld_xi; out [B·T, E]), the K−1
 * previous inputs of stream b in state[slots[b]][layer] ([slots][n_layer]
 * [K−1][E], oldest first; read, then updated). K <= 16. */
MMC_API int mmc_slots_conv_silu(mmc_context* ctx, int64_t B, int64_t T, int64_t E, int64_t K,
                                const float* xi, int64_t ld_xi, const float* w, const float* b,
                                float* state, int64_t n_layer, int64_t layer,
                                const int32_t* slots, float* out);

typedef struct mmc_slot_scan_args {
  int64_t streams, T, E, N; /* N <= 64; row r = b·T + t of stream b */
  const float* xc;          /* [streams·T, E] */
  const float* dt;          /* [streams·T, E], before bias and softplus */
  const float* dt_bias;     /* [E] */
  const float* A;           /* [N, E] */
  const float* B;           /* row r at B + r*ld_bc */
  const float* C;
  int64_t ld_bc;
  const float* D;           /* [E] */
  const float* z;           /* row r at z + r*ld_z */
  int64_t ld_z;
  float* state;             /* [slots][n_layer][N][E]; stream b's at slots[b], read and updated */
  int64_t n_layer, layer;
  const int32_t* slots;     /* device [streams] */
  float* y;                 /* [streams·T, E], overwritten */
} mmc_slot_scan_args;

/* mmc_selective_scan's math for streams whose states live in slots. */
MMC_API int mmc_slots_selective_scan(mmc_context* ctx, const mmc_slot_scan_args* args);
/* Since MMC_API_VERSION 8: the same with the output in bf16 ([streams·T, E],
 * each value the fp32 one rounded to nearest even) in y; args->y is not
 * read. */
MMC_API int mmc_slots_selective_scan_bf16(mmc_context* ctx, const mmc_slot_scan_args* args,
                                          uint16_t* y);

/* ------------------------------------------------------------------------ */
/* Decode (decode.cu): one-token steps of at most MMC_DECODE_MAX_ROWS streams
 * in session slots, each layer in a few kernels whose work spreads over the
 * GPU: a matrix-vector product reads each weight once for all rows and takes
 * its input through a prologue (RMSNorm, or the mixer's causal conv), the
 * pool reads are fused with their output projections and the fusion, and
 * the scan computes Δ itself. Same math as the ops they replace (the slot
 * ops above, mmc_rms_norm, mmc_matmul), sums in other orders. Every row's
 * inputs of a product fit in 48 KiB of shared memory:
 * MMC_DECODE_ROWS_ROUNDED(rows)·K <= MMC_DECODE_MAX_INPUT_FLOATS. */

#define MMC_DECODE_MAX_ROWS 8
/* mmc_decode_read holds no row in shared memory: a grid dimension's limit. */
#define MMC_DECODE_READ_MAX_ROWS 65535
#define MMC_DECODE_MAX_INPUT_FLOATS 12288
/* rows as the products hold them: the next power of two. */
#define MMC_DECODE_ROWS_ROUNDED(rows) ((rows) <= 1 ? 1 : (rows) <= 2 ? 2 : (rows) <= 4 ? 4 : 8)

typedef enum mmc_decode_input {
  MMC_DECODE_INPUT_PLAIN = 0,    /* x̂ = x */
  MMC_DECODE_INPUT_RMS_NORM = 1, /* x̂ = mmc_rms_norm(x; norm, eps), the same bits */
  MMC_DECODE_INPUT_CONV = 2      /* x̂ = mmc_slots_conv_silu of row r's x after the K−1
                                    inputs in conv_state[slots[r]][layer] (read only;
                                    mmc_decode_scan shifts x into it) */
} mmc_decode_input;

typedef struct mmc_decode_linear_args {
  int64_t rows, K, N;      /* rows <= MMC_DECODE_MAX_ROWS, K % 4 == 0, see above */
  int input;               /* mmc_decode_input */
  const float* x;          /* row r at x + r·ld_x, K floats */
  int64_t ld_x;
  const float* norm;       /* RMS_NORM: [K] weights */
  float eps;
  const float* conv_w;     /* CONV: [K, conv_k] */
  const float* conv_b;     /* CONV: [K] */
  int64_t conv_k;          /* CONV: <= 16 */
  const float* conv_state; /* CONV: [slots][n_layer][conv_k − 1][K] */
  int64_t n_layer, layer;
  const int32_t* slots;    /* CONV: device [rows] */
  float* x_out;            /* optional [rows, K]: x̂ */
  const float* w;          /* [N, K] */
  float* y;                /* row r at y + r·ld_y, N floats */
  int64_t ld_y;
  int accumulate;          /* y += w·x̂ instead of y = w·x̂ */
} mmc_decode_linear_args;

/* y = w·x̂ (or +=) for every row. */
MMC_API int mmc_decode_linear(mmc_context* ctx, const mmc_decode_linear_args* args);

typedef struct mmc_decode_linear_conv_args {
  mmc_decode_linear_args linear; /* input PLAIN or RMS_NORM; its conv_* fields,
                                    n_layer, layer and slots describe the conv */
  int64_t conv_n;                /* 1 <= conv_n <= linear.N */
  float* conv_y;                 /* [rows, conv_n] */
} mmc_decode_linear_conv_args;

/* mmc_decode_linear, then the conv on the way out (the in projection's ξ
 * half): for n < conv_n, conv_y[r·conv_n + n] = mmc_slots_conv_silu of
 * y[r, n] after the conv_k − 1 inputs in conv_state[slots[r]][layer]
 * ([conv_k − 1][conv_n], read only), with conv_w [conv_n, conv_k] and
 * conv_b [conv_n]: what a CONV input reading y computes, once per channel
 * instead of once in each block of the product that reads it. */
MMC_API int mmc_decode_linear_conv(mmc_context* ctx, const mmc_decode_linear_conv_args* args);

/* Since MMC_API_VERSION 8. */
typedef struct mmc_decode_linear_bf16_args {
  mmc_decode_linear_conv_args op; /* conv_n 0: mmc_decode_linear, else
                                     mmc_decode_linear_conv; op.linear.w is
                                     not read */
  const uint16_t* w;              /* [N, K] bf16 (the upper 16 bits of a
                                     float), 8-byte aligned */
} mmc_decode_linear_bf16_args;

/* mmc_decode_linear or mmc_decode_linear_conv with the weight in bf16: each
 * weight is widened exactly to fp32 as it is loaded and x̂ stays fp32 (the
 * CPU backend's arithmetic with bf16 weights), so the product reads half the
 * bytes. */
MMC_API int mmc_decode_linear_bf16(mmc_context* ctx, const mmc_decode_linear_bf16_args* args);

typedef struct mmc_decode_read_args {
  int64_t rows, D;         /* rows <= MMC_DECODE_READ_MAX_ROWS, D % 4 == 0 */
  const float* note_norm;  /* [D]: a = mmc_rms_norm(x; note_norm, eps), the same bits */
  float eps;
  float* a;                /* [rows, D], written */
  const int32_t* slots;    /* device [rows] */
  int n_reads;             /* 1 or 2 (cross-token, then cross-layer) */
  mmc_slot_read_args read[2]; /* B = rows, T = 1; a and slots as above; q, gate, o
                                 and the versions unused */
  const float* wq[2];      /* [S, D] query projections: q = wq·a */
  const float* wo[2];      /* [D, S] output projections */
  const float* alpha[2];   /* WEIGHTED: [D] */
  const float* fuse[2];    /* GATED: [D] */
  int fusion;              /* MMC_FUSION_* */
  float* o;                /* [rows, 2, S] workspace: each read's attention output */
  float* x;                /* [rows, D]: += each read's fused, gated projection, in order */
  /* The layer's note window, mmc_slots_note_window's math (T = 1): */
  const int64_t* windows;  /* device [rows] */
  float* win_max;
  int64_t n_layer, layer;
  const float* sw;
  float sb;
  float* m;                /* [rows, D] */
  float* score;            /* [rows] */
} mmc_decode_read_args;

/* Per row (any number of rows, also beside the general ops for the mixer):
 * a = RMSNorm(x), the reads of mmc_slots_pool_read with their
 * queries wq·a (a block per head and read), each projected by wo, gated and
 * fused into x as mmc_read_fuse does, and the note window of
 * mmc_slots_note_window. Both reads have the same H.
 * MMC_ERR_UNSUPPORTED where a block's shared memory (D + 3·S + max(256, S)
 * floats and 12 bytes for each note a read may see) exceeds the device's. */
MMC_API int mmc_decode_read(mmc_context* ctx, const mmc_slot_pools* pools,
                            const mmc_decode_read_args* args);

typedef struct mmc_decode_scan_args {
  int64_t rows, E, N, R;   /* N <= 64 */
  const float* xc;         /* [rows, E] the conv's output */
  const float* dbc;        /* row r at dbc + r·ld_dbc: δ [R], B [N], C [N] */
  int64_t ld_dbc;
  const float* dt_w;       /* [E, R]: Δ = softplus(dt_w·δ + dt_bias) */
  const float* dt_bias;    /* [E] */
  const float* A;          /* [N, E] */
  const float* D;          /* [E] */
  const float* z;          /* row r at z + r·ld_z */
  int64_t ld_z;
  float* state;            /* [slots][n_layer][N][E], read and updated */
  int64_t n_layer, layer;
  const int32_t* slots;    /* device [rows] */
  const float* xi;         /* row r's conv input at xi + r·ld_xi ... */
  int64_t ld_xi;
  float* conv_state;       /* ... shifted into [slots][n_layer][conv_k − 1][E] */
  int64_t conv_k;
  float* y;                /* [rows, E], overwritten */
} mmc_decode_scan_args;

/* mmc_slots_selective_scan's math for one row per stream, with Δ's product
 * by dt_w taken here, and the conv state moved on by the row's input. */
MMC_API int mmc_decode_scan(mmc_context* ctx, const mmc_decode_scan_args* args);

/* ------------------------------------------------------------------------ */
/* Graphs: work queued on a context's stream between mmc_graph_begin and
 * mmc_graph_end is recorded (a CUDA graph), not run; mmc_graph_launch runs
 * it again, with the same arguments (the same device pointers), in one
 * submission. Every op of this header that only launches kernels and
 * products may be recorded; copies from or to pageable host memory and
 * mmc_synchronize may not. */

typedef struct mmc_graph mmc_graph;

MMC_API int mmc_graph_begin(mmc_context* ctx);
/* Ends the recording. *out = the graph, or NULL when the recording failed
 * (an op in it failed or may not be recorded): the stream runs work again
 * either way. */
MMC_API int mmc_graph_end(mmc_context* ctx, mmc_graph** out);
MMC_API int mmc_graph_launch(mmc_context* ctx, mmc_graph* graph);
/* NULL is a no-op. */
MMC_API void mmc_graph_free(mmc_graph* graph);

/* ------------------------------------------------------------------------ */
/* The op table, for a host that opens the library at run time */

/* ------------------------------------------------------------------------ */
/* Collectives between GPUs (kernels/comm.cu), through NCCL, which is opened
 * at run time by the first call that needs it (MM_NCCL_LIBRARY names the
 * file, else libnccl.so.2 on the linker's path): programs that never make a
 * communicator need no NCCL. MMC_ERR_UNSUPPORTED where NCCL cannot be
 * opened, MMC_ERR_COMM for an NCCL error. */

#define MMC_COMM_ID_BYTES 128

typedef struct mmc_comm mmc_comm;

typedef enum mmc_dtype { MMC_DTYPE_F32 = 1, MMC_DTYPE_F64 = 2 } mmc_dtype;

/* Writes a new NCCL unique id (MMC_COMM_ID_BYTES) to `id`: made once, by one
 * rank, and handed by the caller to every rank. On failure the reason goes
 * to error[0..error_capacity) (may be NULL). Any thread. */
MMC_API int mmc_comm_unique_id(void* id, char* error, size_t error_capacity);

/* This rank's communicator among world_size ranks (one context, so one GPU,
 * each), on the context's device. Collective: every rank calls it with the
 * same id, and it returns once all have. */
MMC_API int mmc_comm_create(mmc_context* ctx, int32_t world_size, int32_t rank, const void* id,
                            mmc_comm** out);

/* Waits for the context's queued work, then frees the communicator. NULL is
 * a no-op. */
MMC_API void mmc_comm_free(mmc_context* ctx, mmc_comm* comm);

/* In place over n elements of `dtype` (MMC_DTYPE_F32 or F64): data =
 * Σ_ranks scale_rank · data_rank (NCCL's pre-multiplied sum where scale is
 * not 1). Every rank ends with the same bits. Collective, queued on the
 * context's stream. */
MMC_API int mmc_comm_all_reduce(mmc_context* ctx, mmc_comm* comm, void* data, int64_t n,
                                int dtype, double scale);

/* In place: `bytes` bytes at data become those of rank `root`. Collective,
 * queued on the context's stream. */
MMC_API int mmc_comm_broadcast(mmc_context* ctx, mmc_comm* comm, void* data, int64_t bytes,
                               int32_t root);

/* ------------------------------------------------------------------------ */
/* Sampling (sample.cu) */

/* out[r] (device, rows ints) = the next token of logits row r (device,
 * row stride ld >= V): temperature 0, the highest logit; > 0, the
 * Gumbel-max draw of mm_sessions_step_sample (memmamba.h) at positions[r]
 * (device) with seeds[r] (device), or `seed` for every row where seeds is
 * NULL. NaN never chosen, ties to the lowest id, a row of NaN gives 0.
 * rows <= 65535 (MMC_ERR_UNSUPPORTED beyond). */
MMC_API int mmc_sample_rows(mmc_context* ctx, const float* logits, int64_t rows, int64_t V,
                            int64_t ld, float temperature, uint64_t seed, const uint64_t* seeds,
                            const int64_t* positions, int32_t* out);

typedef struct mmc_op_table {
  uint32_t struct_size;  /* filled: min(caller's size, the library's) */
  uint32_t version;      /* MMC_API_VERSION of the library */
  const char* (*status_string)(int);
  int (*context_options_init)(mmc_context_options*, size_t);
  int (*context_create)(mmc_context**, const mmc_context_options*);
  void (*context_free)(mmc_context*);
  const char* (*context_last_error)(const mmc_context*);
  void* (*context_stream)(const mmc_context*);
  int (*device_get_info)(mmc_context*, mmc_device_info*);
  int (*malloc_)(mmc_context*, void**, size_t);
  int (*free_)(mmc_context*, void*);
  int (*memcpy_)(mmc_context*, void*, const void*, size_t, mmc_copy_kind);
  int (*memset_)(mmc_context*, void*, int, size_t);
  int (*synchronize)(mmc_context*);
  int (*matmul)(mmc_context*, const float*, int64_t, int64_t, const mmc_weight*, float*, int64_t,
                int);
  int (*matmul_backward_input)(mmc_context*, const float*, int64_t, int64_t, const float*,
                               int64_t, int64_t, float*, int64_t, int);
  int (*matmul_backward_weight)(mmc_context*, const float*, int64_t, int64_t, const float*,
                                int64_t, int64_t, int64_t, float*);
  int (*rms_norm)(mmc_context*, const float*, int64_t, int64_t, const float*, float, float*);
  int (*rms_norm_backward)(mmc_context*, const float*, int64_t, int64_t, const float*, float,
                           const float*, float*, int, float*);
  int (*conv_silu)(mmc_context*, const mmc_conv_args*, int64_t);
  int (*conv_silu_backward)(mmc_context*, const mmc_conv_backward_args*, int64_t);
  int (*selective_scan)(mmc_context*, const mmc_scan_args*, int64_t);
  int (*selective_scan_backward)(mmc_context*, const mmc_scan_backward_args*, int64_t);
  int (*pool_attend)(mmc_context*, const mmc_pool_attend_args*);
  int (*pool_index_transpose)(const int32_t*, int64_t, const int32_t*, int64_t, int32_t*,
                              int32_t*);
  int (*pool_attend_backward)(mmc_context*, const mmc_pool_attend_backward_args*);
  int (*softmax_cross_entropy)(mmc_context*, float*, int64_t, int64_t, const int32_t*, float,
                               double*);
  int (*sum_squares)(mmc_context*, const mmc_tensor_ref*, int64_t, double*);
  int (*adamw)(mmc_context*, const mmc_adamw_tensor*, int64_t, const mmc_adamw_params*);
  int (*gather_rows)(mmc_context*, const float*, int64_t, const int32_t*, const int32_t*,
                     const int32_t*, int64_t, int64_t, float*, int64_t, int);
  int (*add)(mmc_context*, const float*, int64_t, float*);
  int (*note_windows)(mmc_context*, const float*, int64_t, int64_t, int64_t, int64_t,
                      const float*, const float*, float*, int32_t*, float*);
  int (*note_scale)(mmc_context*, const float*, const float*, int64_t, int64_t, float*);
  int (*note_scale_backward)(mmc_context*, const float*, const float*, const float*,
                             const float*, int64_t, int64_t, float*, float*);
  int (*note_score_backward)(mmc_context*, const float*, const float*, const float*, int64_t,
                             int64_t, const float*, float*, float*, float*);
  int (*note_max_backward)(mmc_context*, const float*, const int32_t*, int64_t, int64_t,
                           int64_t, int64_t, float*);
  int (*read_gate)(mmc_context*, const float*, int64_t, int64_t, const float*, const float*,
                   float, const int32_t*, float*);
  int (*read_fuse)(mmc_context*, int, const float*, const float*, const float*, int64_t,
                   int64_t, const float*, const float*, float*);
  int (*read_fuse_backward)(mmc_context*, int, const float*, const float*, const float*,
                            const float*, int64_t, int64_t, const float*, const float*,
                            const float*, float*, float*, float*, float*, float*, float*);
  int (*a_from_log)(mmc_context*, const float*, int64_t, int64_t, float*);
  int (*a_log_backward)(mmc_context*, const float*, const float*, int64_t, int64_t, float*);
  /* Since MMC_API_VERSION 3. */
  int (*comm_unique_id)(void*, char*, size_t);
  int (*comm_create)(mmc_context*, int32_t, int32_t, const void*, mmc_comm**);
  void (*comm_free)(mmc_context*, mmc_comm*);
  int (*comm_all_reduce)(mmc_context*, mmc_comm*, void*, int64_t, int, double);
  int (*comm_broadcast)(mmc_context*, mmc_comm*, void*, int64_t, int32_t);
  /* Since MMC_API_VERSION 4. */
  int (*slots_note_window)(mmc_context*, const float*, int64_t, int64_t, int64_t, const int32_t*,
                           const int64_t*, float*, int64_t, int64_t, const float*, float, float*,
                           float*);
  int (*slots_pool_insert)(mmc_context*, const mmc_slot_pools*, int, float, int64_t,
                           const int32_t*, const int64_t*, const float*, const float*);
  int (*slots_pool_read)(mmc_context*, const mmc_slot_pools*, const mmc_slot_read_args*);
  int (*slots_conv_silu)(mmc_context*, int64_t, int64_t, int64_t, int64_t, const float*, int64_t,
                         const float*, const float*, float*, int64_t, int64_t, const int32_t*,
                         float*);
  int (*slots_selective_scan)(mmc_context*, const mmc_slot_scan_args*);
  int (*graph_begin)(mmc_context*);
  int (*graph_end)(mmc_context*, mmc_graph**);
  int (*graph_launch)(mmc_context*, mmc_graph*);
  void (*graph_free)(mmc_graph*);
  int (*chunk_note_windows)(mmc_context*, const float*, int64_t, int64_t, int64_t, int64_t,
                            float*, const float*, float, float*, float*);
  int (*chunk_pool_versions)(mmc_context*, const mmc_slot_pools*, int, float, int64_t, int64_t,
                             int64_t, const float*, int32_t*, int32_t*);
  int (*chunk_pool_commit)(mmc_context*, const mmc_slot_pools*, int64_t, int64_t, const int32_t*,
                           const int32_t*, const float*, const float*, const int64_t*);
  /* Since MMC_API_VERSION 5. */
  int (*decode_linear)(mmc_context*, const mmc_decode_linear_args*);
  int (*decode_read)(mmc_context*, const mmc_slot_pools*, const mmc_decode_read_args*);
  int (*decode_scan)(mmc_context*, const mmc_decode_scan_args*);
  /* Since MMC_API_VERSION 6. */
  int (*sample_rows)(mmc_context*, const float*, int64_t, int64_t, int64_t, float, uint64_t,
                     const uint64_t*, const int64_t*, int32_t*);
  /* Since MMC_API_VERSION 7. */
  int (*decode_linear_conv)(mmc_context*, const mmc_decode_linear_conv_args*);
  /* Since MMC_API_VERSION 8. */
  int (*decode_linear_bf16)(mmc_context*, const mmc_decode_linear_bf16_args*);
  int (*matmul_bf16)(mmc_context*, const uint16_t*, int64_t, int64_t, const mmc_weight*, float*,
                     int64_t, int);
  int (*rms_norm_bf16)(mmc_context*, const float*, int64_t, int64_t, const float*, float,
                       uint16_t*);
  int (*slots_selective_scan_bf16)(mmc_context*, const mmc_slot_scan_args*, uint16_t*);
} mmc_op_table;

/* Fills the prefix of *table that both sides know (struct_size bytes at most,
 * at least the two leading fields). Returns MMC_ERR_INVALID_ARGUMENT (NULL),
 * MMC_ERR_STRUCT_SIZE (smaller than the two leading fields). Any thread. */
MMC_API int mmc_get_op_table(mmc_op_table* table, size_t struct_size);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* MEMMAMBA_CUDA_H_ */
