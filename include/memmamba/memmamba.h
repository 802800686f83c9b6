/*
 * memmamba.h — the public C API of memmamba, the MemMamba runtime.
 *
 * MemMamba is a selective state-space model (Mamba v1) whose layers take
 * notes: every `note_window` tokens a layer may compress what it saw into a
 * small summary kept in a bounded pool; later tokens attend to the pools.
 * Time stays linear in the stream length and a stream's state stays constant.
 *
 * Usage (error checks elided):
 *
 *   mm_model_config cfg;
 *   mm_model_config_init(&cfg, sizeof cfg);      // defaults (DESIGN 2.1)
 *   mm_model *model;
 *   mm_model_create(&model, &cfg, 42, NULL);    // or mm_model_load()
 *   mm_session *s;
 *   mm_session_create(&s, model, NULL);
 *   int32_t tokens[] = {72, 105, 33};
 *   float *logits = malloc(sizeof(float) * cfg.vocab_size);
 *   mm_session_feed(s, tokens, 3, MM_LOGITS_LAST, logits, cfg.vocab_size);
 *   mm_session_free(s);
 *   mm_model_free(model);
 *
 * Threads: a model is immutable once created and may be shared by any number
 * of sessions and threads. A session is used by one thread at a time. Each
 * function says which rule applies ("any thread" / "one thread per handle").
 *
 * Errors: every fallible call returns an mm_status (MM_OK = 0, errors are
 * negative; values never change). A failed call changes nothing. The detail
 * of the last failure is kept per session (mm_session_last_error) and, for
 * every call, per thread (mm_last_error). Output handles are set to NULL on
 * failure.
 *
 * Options structs start with `struct_size`, are filled by their _init call,
 * are passed by const pointer (NULL = defaults) and only ever grow at the
 * end: the library reads the prefix the caller knows.
 *
 * This header includes only <stddef.h>, <stdint.h> and <stdbool.h> and
 * compiles as C99.
 */
#ifndef MEMMAMBA_MEMMAMBA_H_
#define MEMMAMBA_MEMMAMBA_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(MM_BUILDING_LIBRARY)
#define MM_API __declspec(dllexport)
#else
#define MM_API
#endif
#else
#define MM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

#define MM_VERSION_MAJOR 0
#define MM_VERSION_MINOR 1
#define MM_VERSION_PATCH 0
/* MAJOR*10000 + MINOR*100 + PATCH, comparable with mm_version(). */
#define MM_VERSION_NUMBER \
  (MM_VERSION_MAJOR * 10000 + MM_VERSION_MINOR * 100 + MM_VERSION_PATCH)
/* Bumped on any incompatible change of the ABI; compare with mm_abi_version(). */
#define MM_ABI_VERSION 1

/* The library's MM_VERSION_NUMBER. Any thread. */
MM_API uint32_t mm_version(void);
/* The library's version as static text, e.g. "0.1.0". Any thread. */
MM_API const char *mm_version_string(void);
/* The library's MM_ABI_VERSION. A program built against another ABI version
 * must not use the library. Any thread. */
MM_API uint32_t mm_abi_version(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef int32_t mm_status;
enum {
  MM_OK = 0,
  MM_ERR_INVALID_ARGUMENT = -1,  /* NULL pointer, bad enum value or count */
  MM_ERR_STRUCT_SIZE = -2,       /* options struct with an unknown struct_size */
  MM_ERR_TOKEN_OUT_OF_RANGE = -3,/* a token id < 0 or >= vocab_size */
  MM_ERR_OUT_OF_MEMORY = -4,
  MM_ERR_IO = -5,                /* a file could not be opened, read or written */
  MM_ERR_CORRUPT_FILE = -6,      /* a file is truncated or malformed */
  MM_ERR_TENSOR_MISSING = -7,    /* a weights file lacks a required tensor */
  MM_ERR_TENSOR_SHAPE = -8,      /* a tensor has the wrong shape */
  MM_ERR_TENSOR_DTYPE = -9,      /* a tensor has an unsupported dtype */
  MM_ERR_NON_FINITE = -10,       /* NaN or Inf in weights */
  MM_ERR_CONFIG = -11,           /* an invalid model configuration */
  MM_ERR_MODEL_MISMATCH = -12,   /* handles that belong to different models */
  MM_ERR_UNSUPPORTED = -13,      /* not available in this build or machine */
  MM_ERR_BUFFER_TOO_SMALL = -14, /* a caller buffer is too small */
  MM_ERR_INTERNAL = -15,         /* a bug in the library: please report it */
  MM_ERR_CHECKSUM = -16,         /* a snapshot's checksum does not match its bytes */
  MM_ERR_VERSION = -17,          /* a snapshot of a format version newer than this library */
  MM_ERR_NO_DEVICE = -18,        /* MM_DEVICE_CUDA: the CUDA backend loaded, but no GPU or driver answers */
  MM_ERR_COMM = -19              /* data-parallel training: a collective (NCCL) failed */
};

/* Static text naming a status ("MM_ERR_IO: input/output error"); never NULL,
 * also for unknown values. Any thread. */
MM_API const char *mm_status_string(mm_status status);

/* The message of the last failed call made by this thread, or "" if none.
 * The text stays valid until this thread's next failing call. Any thread. */
MM_API const char *mm_last_error(void);

/* Frees a buffer returned by the library. mm_free(NULL) is a no-op. Any thread. */
MM_API void mm_free(void *ptr);

/* ------------------------------------------------------------------------ */
/* Model configuration (DESIGN 2.1)                                          */
/* ------------------------------------------------------------------------ */

typedef enum mm_pool_policy {
  MM_POOL_PRIORITY = 0, /* keep the highest-scored notes */
  MM_POOL_FIFO = 1      /* keep the most recent notes */
} mm_pool_policy;

typedef enum mm_fusion {
  MM_FUSION_WEIGHTED = 0, /* learned per-channel alpha */
  MM_FUSION_RESIDUAL = 1, /* alpha = 1 */
  MM_FUSION_GATED = 2     /* alpha = sigmoid(fuse.weight * a), per channel */
} mm_fusion;

typedef struct mm_model_config {
  uint32_t struct_size;        /* sizeof(mm_model_config) as the caller knows it */
  uint32_t vocab_size;         /* 256 */
  uint32_t d_model;            /* 256 */
  uint32_t n_layer;            /* 8 */
  uint32_t d_state;            /* 16 */
  uint32_t d_conv;             /* 4 */
  uint32_t expand;             /* 2: d_inner = expand * d_model */
  uint32_t dt_rank;            /* 0 = ceil(d_model / 16) */
  uint32_t note_window;        /* 32 tokens per note; 1 = a note per token */
  uint32_t summary_dim;        /* 64 */
  uint32_t pool_capacity;      /* 50 notes per layer; 0 = plain Mamba */
  int32_t pool_policy;         /* mm_pool_policy: MM_POOL_PRIORITY */
  float note_threshold;        /* 0.5: a note is kept iff its score > this */
  uint32_t attn_heads;         /* 4; summary_dim must be divisible by it */
  float gate_threshold;        /* 0.0: pool reads skipped where gate <= this */
  uint32_t cross_layer_period; /* 4; 0 = no cross-layer reads */
  uint32_t cross_layer_span;   /* 4 */
  int32_t fusion;              /* mm_fusion: MM_FUSION_WEIGHTED */
  float norm_eps;              /* 1e-5 */
  int32_t tie_embeddings;      /* 1: the LM head shares the embedding */
} mm_model_config;

/* Fills *config with the defaults and sets config->struct_size = size.
 * Returns MM_ERR_INVALID_ARGUMENT for NULL, MM_ERR_STRUCT_SIZE if size is
 * smaller than the first version of the struct. Any thread. */
MM_API mm_status mm_model_config_init(mm_model_config *config, size_t size);

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct mm_model mm_model;

typedef enum mm_device {
  MM_DEVICE_CPU = 0, /* always available; the default */
  MM_DEVICE_CUDA = 1 /* an NVIDIA GPU (device 0): a model's sessions keep their
                        state there and feed and step there (weights widened
                        to f32 on the GPU; mm_sessions_step batches any
                        sessions of the model); trainers train there
                        (mm_trainer_options.device). MM_ERR_UNSUPPORTED
                        without the CUDA backend, MM_ERR_NO_DEVICE where no
                        GPU or driver answers */
} mm_device;

typedef enum mm_dtype {
  MM_DTYPE_F32 = 0,  /* weights stored in float32 */
  MM_DTYPE_BF16 = 1  /* matrix weights stored in bfloat16 (inference) */
} mm_dtype;

typedef enum mm_math {
  MM_MATH_FP32 = 0, /* matrix products in fp32 arithmetic on every device:
                       a GPU model's results equal the CPU's to ~1e-5 */
  MM_MATH_TF32 = 1, /* on a CUDA device, fp32 matrix products may run on
                       TF32 tensor cores (inputs rounded to 10 mantissa
                       bits: ~1e-3 relative error, several times the speed
                       of fp32 where a product has many rows: batched
                       steps, prefill, training). State, scan, norms,
                       softmax and accumulation stay fp32. The CPU computes
                       in fp32 regardless */
  MM_MATH_BF16 = 2  /* on a CUDA device, the mixers' in and out
                       projections and the LM head are kept in bf16 on the
                       device (a tied embedding keeps its fp32 copy for
                       the lookups): products of many rows take their
                       input in bf16 and run on bf16 tensor cores, one-token
                       steps of a few sessions multiply the bf16 weights in
                       fp32; sums in fp32 (~1e-2 relative error). Every
                       other product as MM_MATH_TF32; state, scan, norms,
                       the pools and the attention over them stay fp32.
                       Models only: a trainer refuses it
                       (MM_ERR_UNSUPPORTED). The CPU computes in fp32
                       regardless */
} mm_math;

typedef struct mm_model_options {
  uint32_t struct_size;
  int32_t device;       /* mm_device: MM_DEVICE_CPU */
  int32_t weight_dtype; /* mm_dtype: MM_DTYPE_F32 */
  int32_t n_threads;    /* threads used by calls on this model; 0 = OpenMP's
                           default: OMP_NUM_THREADS, else the CPUs this
                           process may run on */
  /* Since 0.2: */
  int32_t math;         /* mm_math: MM_MATH_FP32 */
} mm_model_options;

/* Fills *options with the defaults. Same codes as mm_model_config_init. */
MM_API mm_status mm_model_options_init(mm_model_options *options, size_t size);

/* Creates a model with freshly initialised weights (DESIGN 2.2) drawn from
 * `seed`. `config` and `options` may be NULL (defaults). On success *out owns
 * the model (free with mm_model_free); on failure *out = NULL.
 * Returns MM_ERR_INVALID_ARGUMENT (out NULL), MM_ERR_STRUCT_SIZE,
 * MM_ERR_CONFIG, MM_ERR_UNSUPPORTED, MM_ERR_NO_DEVICE, MM_ERR_OUT_OF_MEMORY.
 * Any thread. */
MM_API mm_status mm_model_create(mm_model **out, const mm_model_config *config,
                                 uint64_t seed, const mm_model_options *options);

/* Loads a model saved by mm_model_save (safetensors, configuration in its
 * metadata). Returns MM_ERR_IO, MM_ERR_CORRUPT_FILE, MM_ERR_TENSOR_MISSING,
 * MM_ERR_TENSOR_SHAPE, MM_ERR_TENSOR_DTYPE, MM_ERR_NON_FINITE, MM_ERR_CONFIG
 * and the codes of mm_model_create. Any thread. */
MM_API mm_status mm_model_load(mm_model **out, const char *path,
                               const mm_model_options *options);

/* Writes the model's configuration and weights to `path` as safetensors,
 * atomically (a crash never leaves a partial file under `path`). bf16 models
 * write their matrices as BF16. Returns MM_ERR_INVALID_ARGUMENT, MM_ERR_IO.
 * Any thread (the model is not modified). */
MM_API mm_status mm_model_save(const mm_model *model, const char *path);

/* Imports a Mamba v1 checkpoint in the reference naming (safetensors:
 * backbone.embedding.weight or backbone.embeddings.weight,
 * backbone.layers.{i}.norm.weight, backbone.layers.{i}.mixer.{in_proj,
 * conv1d,x_proj,dt_proj,out_proj}.*, .A_log, .D, backbone.norm_f.weight,
 * optional lm_head.weight). The Mamba shapes (vocab_size, d_model, n_layer,
 * d_state, d_conv, expand, dt_rank) come from the checkpoint; the memory
 * knobs come from `memory_config` (may be NULL: defaults) and the memory
 * weights are freshly initialised from `seed`. Same codes as mm_model_load.
 * Any thread. */
MM_API mm_status mm_model_import_mamba(mm_model **out, const char *path,
                                       const mm_model_config *memory_config,
                                       uint64_t seed,
                                       const mm_model_options *options);

/* Copies the model's (resolved) configuration into *config, of which the
 * caller has set config->struct_size. Any thread. */
MM_API mm_status mm_model_get_config(const mm_model *model,
                                     mm_model_config *config);

/* Number of parameters (scalars) of the model. Any thread. */
MM_API uint64_t mm_model_parameter_count(const mm_model *model);

/* A 64-bit fingerprint of the model: a hash (XXH64) of its configuration and
 * of every weight as stored, so equal for a model and the same model saved
 * and loaded, different for another seed, configuration or weight dtype.
 * Snapshots record it and are only restored onto a model with the same
 * fingerprint. The first call reads all the weights once (about 0.1 s for
 * a Mamba-130m-sized model); later calls are free. 0 for NULL. Any thread. */
MM_API uint64_t mm_model_fingerprint(const mm_model *model);

/* Frees a model. Every session created from it must be freed first.
 * mm_model_free(NULL) is a no-op. */
MM_API void mm_model_free(mm_model *model);

/* ------------------------------------------------------------------------ */
/* Sessions: one token stream each                                           */
/* ------------------------------------------------------------------------ */

typedef struct mm_session mm_session;

typedef struct mm_session_options {
  uint32_t struct_size;
  uint32_t max_chunk; /* tokens processed per internal block of a feed; bounds
                         the scratch memory (on the GPU too). 0 = 256. Results
                         do not depend on it. */
} mm_session_options;

/* Fills *options with the defaults. Same codes as mm_model_config_init. */
MM_API mm_status mm_session_options_init(mm_session_options *options,
                                         size_t size);

/* Creates a session (a stream at position 0) on `model`, which must outlive
 * it. `options` may be NULL. Returns MM_ERR_INVALID_ARGUMENT,
 * MM_ERR_STRUCT_SIZE, MM_ERR_OUT_OF_MEMORY. Any thread. */
MM_API mm_status mm_session_create(mm_session **out, const mm_model *model,
                                   const mm_session_options *options);

/* Frees a session. mm_session_free(NULL) is a no-op. */
MM_API void mm_session_free(mm_session *session);

typedef enum mm_logits_mode {
  MM_LOGITS_NONE = 0, /* no logits: `logits` may be NULL */
  MM_LOGITS_LAST = 1, /* vocab_size floats: the next-token logits after the last token */
  MM_LOGITS_ALL = 2   /* n_tokens * vocab_size floats, row i after token i */
} mm_logits_mode;

/* Feeds `n_tokens` tokens (n_tokens may be 0) into the stream. Feeding a
 * sequence in one call, in chunks of any sizes or one token at a time gives
 * the same logits (DESIGN 2.4). `logits` receives what `mode` asks for;
 * `logits_capacity` is its size in floats. Validation happens before any
 * work: on any error the session is exactly as before the call (on a GPU
 * session, a failure of the device itself, MM_ERR_OUT_OF_MEMORY or
 * MM_ERR_INTERNAL in the middle of a feed, leaves the stream undefined:
 * reset or restore it).
 * Returns MM_ERR_INVALID_ARGUMENT (NULL session, NULL tokens with
 * n_tokens > 0, bad mode, NULL logits where needed),
 * MM_ERR_TOKEN_OUT_OF_RANGE, MM_ERR_BUFFER_TOO_SMALL, MM_ERR_OUT_OF_MEMORY.
 * One thread per session (sessions on one model may feed in parallel; the
 * sessions of a GPU model take turns on the device). */
MM_API mm_status mm_session_feed(mm_session *session, const int32_t *tokens,
                                 size_t n_tokens, int32_t mode, float *logits,
                                 size_t logits_capacity);

/* Steps `n_sessions` sessions by one token each in one batched call:
 * tokens[i] goes to sessions[i]. All sessions must be distinct (a repeated
 * one is MM_ERR_INVALID_ARGUMENT) and belong to the same model. `logits` may be NULL; otherwise it receives
 * n_sessions * vocab_size floats (row i for session i) and
 * `logits_capacity` is its size in floats. Results equal n_sessions separate
 * one-token feeds. On any error no session changes, and the message is set
 * for this thread and on every session passed (a GPU model steps at most
 * 65535 sessions at once; a failure of the device itself in the middle of a
 * step leaves them undefined, as for mm_session_feed).
 * Returns MM_ERR_INVALID_ARGUMENT, MM_ERR_MODEL_MISMATCH,
 * MM_ERR_TOKEN_OUT_OF_RANGE, MM_ERR_BUFFER_TOO_SMALL, MM_ERR_OUT_OF_MEMORY.
 * One thread per session: none of these sessions may be used elsewhere
 * during the call. */
MM_API mm_status mm_sessions_step(mm_session *const *sessions,
                                  size_t n_sessions, const int32_t *tokens,
                                  float *logits, size_t logits_capacity);

/* How mm_sessions_step_sample picks each next token. */
typedef struct mm_sample_options {
  uint32_t struct_size;
  float temperature; /* 1.0. 0: greedy, the highest logit (ties: the lowest
                        id); > 0: a draw from softmax(logits / temperature) */
  uint64_t seed;     /* 0: with the session's position, picks the draw */
  const uint64_t *seeds; /* NULL, or n_sessions seeds: seeds[i] instead of
                            `seed` for sessions[i], so that sessions at the
                            same position draw independently. Read during
                            the call only */
} mm_sample_options;

/* Fills *options with the defaults. Same codes as mm_model_config_init. */
MM_API mm_status mm_sample_options_init(mm_sample_options *options, size_t size);

/* mm_sessions_step, then each session's next token chosen from its logits
 * where they are computed (on a GPU model, on the device: only n_sessions
 * ids come back instead of n_sessions * vocab_size floats), written to
 * next_tokens[i]. The tokens are not fed: pass them to the next call.
 * With temperature T > 0 the choice is the Gumbel-max draw
 *   next = argmax_v (logits[v] / T + g(v)),  g(v) = -log(-log(u(v))),
 *   u(v) = ((h >> 40) + 0.5) / 2^24,  h = mix(seed ^ mix(p ^ mix(v))),
 * with p the session's position after the step (the number of tokens it
 * has taken), seed the session's (options->seeds[i], else options->seed),
 * v the token id and mix the SplitMix64 finaliser (z ^= z >>
 * 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb;
 * z ^= z >> 31, on z + 0x9e3779b97f4a7c15): a draw from softmax(logits /
 * T) that depends only on the seed, the position and the logits, on every
 * device (the logarithms in fp32; devices may differ where two candidates
 * are within rounding of each other). NaN logits are never chosen (all
 * NaN: id 0). `options` may be NULL (defaults). On any error no session
 * changes, as for mm_sessions_step.
 * Returns the codes of mm_sessions_step and MM_ERR_INVALID_ARGUMENT (NULL
 * next_tokens, a temperature that is negative or not finite),
 * MM_ERR_STRUCT_SIZE. One thread per session, as mm_sessions_step. */
MM_API mm_status mm_sessions_step_sample(mm_session *const *sessions, size_t n_sessions,
                                         const int32_t *tokens,
                                         const mm_sample_options *options,
                                         int32_t *next_tokens);

/* Returns the stream to position 0 with empty pools. Returns
 * MM_ERR_INVALID_ARGUMENT (NULL) and, for a session of an MM_DEVICE_CUDA
 * model, the device's error. One thread per session. */
MM_API mm_status mm_session_reset(mm_session *session);

/* Zeroes the recurrent state of every layer (the scan state and the conv's
 * last inputs) and keeps everything else: the position, the pools and the
 * pending note windows. The stream goes on as after a document boundary
 * whose past survives only in the notes (a session that moves on to a new
 * document but keeps its memory; training reads that cannot lean on the
 * recurrent state). Returns MM_ERR_INVALID_ARGUMENT (NULL) and, for a
 * session of an MM_DEVICE_CUDA model, the device's error, which leaves the
 * stream as it was. One thread per session. */
MM_API mm_status mm_session_reset_recurrent(mm_session *session);

/* Tokens consumed since creation or the last reset, or 0 for NULL. One thread
 * per session. */
MM_API uint64_t mm_session_position(const mm_session *session);

/* Bytes of recurrent state the session keeps in memory (conv and SSM state,
 * pending note windows, and the pools' notes: window, score, summary);
 * bounded whatever the stream length (it grows only until the pools are
 * full). 0 for NULL (and for a GPU session whose device failed). The same
 * number a snapshot of the session reports as
 * mm_snapshot_info.state_bytes: a snapshot stores exactly this state. */
MM_API uint64_t mm_session_state_bytes(const mm_session *session);

/* Number of notes currently in layer `layer`'s pool, or -1 for a NULL session,
 * a layer out of range or a GPU session whose device failed. One thread per
 * session. */
MM_API int32_t mm_session_pool_size(const mm_session *session, uint32_t layer);

/* What the stream remembers in layer `layer`: its pool's notes in pool order
 * (ascending window). Note i summarises note window windows[i], the stream
 * positions [windows[i] * note_window, (windows[i] + 1) * note_window);
 * scores[i] is its score and summaries[i * summary_dim ...] its summary ŝ
 * (DESIGN 2.3 step 5). Writes min(capacity, count) notes into the arrays
 * that are not NULL (each may be NULL: not wanted) and sets *count to the
 * number of notes in the pool, which may exceed capacity (call again with
 * more room; capacity 0 asks for the count alone). The session is not
 * changed; a GPU session's pools are read from the device. Returns
 * MM_ERR_INVALID_ARGUMENT (NULL session or count, a layer out of range), a
 * device error; on failure *count = 0 and no array is written. One thread
 * per session. */
MM_API mm_status mm_session_pool_notes(const mm_session *session, uint32_t layer,
                                       int64_t *windows, float *scores, float *summaries,
                                       size_t capacity, size_t *count);

/* The message of this session's last failed call, or "". Valid until the
 * session's next failing call or its free. One thread per session. */
MM_API const char *mm_session_last_error(const mm_session *session);

/* ------------------------------------------------------------------------ */
/* Snapshots: a stream's state as bytes (DESIGN 5)                           */
/* ------------------------------------------------------------------------ */

/*
 * A snapshot holds everything a session's stream has: its position, each
 * layer's conv and SSM state, the pending note window and the note pool.
 * Restored into a session of the same model (in this process or another,
 * on this machine or another), the stream continues exactly as if it had
 * never stopped: on the same machine and build the logits are identical bit
 * for bit. A snapshot's size is about mm_snapshot_info.state_bytes (the
 * state itself, plus a few hundred bytes).
 *
 * The format (schemas/snapshot.fbs) is a flatbuffer with the file
 * identifier "MMSN" at bytes 4..8, a format version and a checksum of all
 * its bytes. Every later version of the library reads snapshots of earlier
 * versions. Snapshots are tied to a model: restoring onto another model
 * (other weights, configuration or weight dtype) fails with
 * MM_ERR_MODEL_MISMATCH.
 *
 * Reading a snapshot checks it entirely before changing anything: a failed
 * restore leaves the session exactly as it was. The codes, in the order the
 * checks run:
 *   MM_ERR_CORRUPT_FILE    empty, not a snapshot (identifier), truncated or
 *                          malformed;
 *   MM_ERR_CHECKSUM        the bytes were changed after writing (any byte);
 *   MM_ERR_VERSION         an intact snapshot written by a newer library;
 *   MM_ERR_CORRUPT_FILE    sizes that disagree with the shape, and other
 *                          inconsistencies of an intact (crafted) snapshot;
 *   MM_ERR_MODEL_MISMATCH  (restore) taken on another model.
 */

/* Sets *size to the exact number of bytes mm_session_snapshot will write
 * for the session's current state (the state is not serialised: cheap).
 * Returns MM_ERR_INVALID_ARGUMENT (NULL session or size), MM_ERR_UNSUPPORTED
 * (a state above the format's 2 GiB), MM_ERR_OUT_OF_MEMORY. On failure
 * *size = 0. One thread per session. */
MM_API mm_status mm_session_snapshot_size(const mm_session *session, size_t *size);

/* Writes a snapshot of the session into `buffer` (`capacity` bytes, owned by
 * the caller) and sets *written to its size. With a capacity smaller than
 * the snapshot, returns MM_ERR_BUFFER_TOO_SMALL, writes nothing and sets
 * *written to the size needed. `buffer` may be NULL only with capacity 0.
 * The session is not changed. Returns MM_ERR_INVALID_ARGUMENT (NULL
 * session or written, NULL buffer with capacity > 0),
 * MM_ERR_BUFFER_TOO_SMALL, MM_ERR_UNSUPPORTED, MM_ERR_OUT_OF_MEMORY; on
 * other failures *written = 0. One thread per session. */
MM_API mm_status mm_session_snapshot(const mm_session *session, void *buffer,
                                     size_t capacity, size_t *written);

/* Writes a snapshot of the session into a buffer the library allocates:
 * *out receives it (free it with mm_free), *size its length. On failure
 * *out = NULL and *size = 0. Returns MM_ERR_INVALID_ARGUMENT (a NULL
 * argument), MM_ERR_UNSUPPORTED, MM_ERR_OUT_OF_MEMORY. One thread per
 * session. */
MM_API mm_status mm_session_snapshot_alloc(const mm_session *session, void **out,
                                           size_t *size);

/* Writes a snapshot of the session to the file `path`, atomically: the
 * bytes go to a temporary file in the same directory, which is flushed to
 * disk and then renamed over `path`, so a reader (or a crash at any moment)
 * sees either the old file or the complete new one, never a partial file.
 * Returns MM_ERR_INVALID_ARGUMENT (NULL), MM_ERR_IO, MM_ERR_UNSUPPORTED,
 * MM_ERR_OUT_OF_MEMORY. One thread per session. */
MM_API mm_status mm_session_snapshot_file(const mm_session *session, const char *path);

/* Replaces the session's stream with the one in the snapshot `data` (`size`
 * bytes, owned by the caller, only read during the call; any alignment).
 * The session may be fresh or in use; it must be on the model the snapshot
 * was taken on. On any failure the session is exactly as before the call.
 * Returns MM_ERR_INVALID_ARGUMENT (NULL session or data), the snapshot codes
 * above, MM_ERR_OUT_OF_MEMORY. One thread per session. */
MM_API mm_status mm_session_restore(mm_session *session, const void *data, size_t size);

/* mm_session_restore from the file `path`. Also returns MM_ERR_IO (cannot
 * open or read the file). One thread per session. */
MM_API mm_status mm_session_restore_file(mm_session *session, const char *path);

/* What a snapshot says about itself (mm_snapshot_inspect). Like the options
 * structs it only grows at the end: fill struct_size with
 * mm_snapshot_info_init and the library writes the fields the caller's
 * version knows. */
typedef struct mm_snapshot_info {
  uint32_t struct_size;
  uint32_t format_version;     /* 1 for snapshots of this library version */
  uint64_t position;           /* tokens the stream had consumed */
  uint64_t model_fingerprint;  /* mm_model_fingerprint of its model */
  uint32_t n_layer;            /* the model's shape (mm_model_config) */
  uint32_t d_model;
  uint32_t d_inner;            /* expand * d_model */
  uint32_t d_state;
  uint32_t d_conv;
  uint32_t summary_dim;
  uint32_t note_window;
  uint32_t pool_capacity;      /* notes per layer at most */
  int32_t pool_policy;         /* mm_pool_policy */
  uint32_t notes_total;        /* notes held, all layers together (the pool
                                  fill is notes_total / (n_layer * pool_capacity)) */
  uint64_t state_bytes;        /* bytes of state it carries (position, conv,
                                  SSM, window accumulators, notes) */
} mm_snapshot_info;

/* Zeroes *info and sets info->struct_size = size. Returns
 * MM_ERR_INVALID_ARGUMENT for NULL, MM_ERR_STRUCT_SIZE for a size smaller
 * than the first version of the struct. Any thread. */
MM_API mm_status mm_snapshot_info_init(mm_snapshot_info *info, size_t size);

/* Checks the snapshot `data` (`size` bytes) completely (the same checks as
 * mm_session_restore, less the model) and describes it in *info, whose
 * struct_size the caller has set. Needs no model. On failure *info is
 * unchanged. Returns MM_ERR_INVALID_ARGUMENT (NULL), MM_ERR_STRUCT_SIZE,
 * MM_ERR_CORRUPT_FILE, MM_ERR_VERSION, MM_ERR_CHECKSUM,
 * MM_ERR_OUT_OF_MEMORY. Any thread. */
MM_API mm_status mm_snapshot_inspect(const void *data, size_t size, mm_snapshot_info *info);

/* mm_snapshot_inspect of the file `path`; also returns MM_ERR_IO. Any thread. */
MM_API mm_status mm_snapshot_inspect_file(const char *path, mm_snapshot_info *info);

/* ------------------------------------------------------------------------ */
/* Training (DESIGN 2.4, 6)                                                  */
/* ------------------------------------------------------------------------ */

/*
 * A trainer owns a float32 copy of a model's weights (the master weights),
 * the AdamW moments and the gradient accumulator. Sessions never see a
 * trainer's weights change under them: mm_trainer_export_model hands out an
 * immutable model of the current weights, which can be streamed or saved at
 * any time while training goes on.
 *
 * One step (mm_train_step) runs the whole-sequence forward of B sequences of
 * T tokens from empty state, the next-token cross-entropy, the backward, and
 * every `accum_steps` calls: global-norm clipping and an AdamW update (no
 * weight decay on norms, biases, A_log, D and alpha). On one machine, build
 * and thread count a run is deterministic: training N steps, or k steps,
 * mm_trainer_save, mm_trainer_load and N-k steps gives identical weights.
 */
typedef struct mm_trainer mm_trainer;

typedef struct mm_trainer_options {
  uint32_t struct_size;
  float learning_rate;   /* 1e-3; changeable later (mm_trainer_set_learning_rate) */
  float beta1;           /* 0.9 */
  float beta2;           /* 0.95 */
  float eps;             /* 1e-8 */
  float weight_decay;    /* 0.1, decoupled (AdamW), on matrices and embeddings only */
  float grad_clip;       /* 1.0: clip the global gradient L2 norm to this; 0 = off */
  uint32_t accum_steps;  /* 1: calls of mm_train_step per optimizer update */
  int32_t n_threads;     /* 0 = as mm_model_options.n_threads */
  bool note_straight_through; /* false: see DESIGN 6; every earlier window of a
                                 sequence becomes a read candidate weighted by
                                 keep + score - stopgrad(score) (training only) */
  /* Since 0.2: */
  int32_t device;        /* mm_device: MM_DEVICE_CPU. MM_DEVICE_CUDA keeps the
                            weights, moments and activations on the GPU
                            (MM_ERR_UNSUPPORTED without the CUDA backend,
                            MM_ERR_NO_DEVICE without a GPU; the straight-through
                            estimator is CPU-only for now) */
  int32_t math;          /* mm_math: MM_MATH_FP32. MM_MATH_TF32: the GPU
                            trainer's fp32 products (forward and backward)
                            may use TF32 tensor cores; master weights,
                            moments and updates stay fp32. MM_MATH_BF16:
                            MM_ERR_UNSUPPORTED. Not saved with the
                            trainer: mm_trainer_load gives MM_MATH_FP32 */
} mm_trainer_options;

/* Fills *options with the defaults. Same codes as mm_model_config_init. */
MM_API mm_status mm_trainer_options_init(mm_trainer_options *options, size_t size);

/* Creates a trainer starting from `model`'s weights (bf16 weights are widened
 * to float32 master weights); the model is only read during the call and may
 * be freed afterwards. `options` may be NULL. Returns
 * MM_ERR_INVALID_ARGUMENT (NULL, learning rate <= 0 or not finite, betas
 * outside [0, 1), eps <= 0, weight decay < 0, clip < 0, accum_steps 0),
 * MM_ERR_STRUCT_SIZE, MM_ERR_OUT_OF_MEMORY, and for MM_DEVICE_CUDA
 * MM_ERR_UNSUPPORTED or MM_ERR_NO_DEVICE. Any thread. */
MM_API mm_status mm_trainer_create(mm_trainer **out, const mm_model *model,
                                   const mm_trainer_options *options);

/* Frees a trainer. mm_trainer_free(NULL) is a no-op. */
MM_API void mm_trainer_free(mm_trainer *trainer);

/* What one mm_train_step did. Grows only at the end, like the options. */
typedef struct mm_train_result {
  uint32_t struct_size;
  float loss;          /* mean cross-entropy (nats) over this call's targets */
  float grad_norm;     /* global L2 norm of the accumulated gradient before
                          clipping; meaningful when `updated` */
  uint64_t tokens;     /* targets this call counted (unmasked, t >= 1) */
  bool updated;        /* this call completed an accumulation and updated the weights */
  uint64_t step;       /* optimizer updates so far */
} mm_train_result;

/* Zeroes *result and sets result->struct_size = size. Same codes as
 * mm_snapshot_info_init. Any thread. */
MM_API mm_status mm_train_result_init(mm_train_result *result, size_t size);

/* One training call on `batch` sequences of `seq_len` tokens (row-major:
 * sequence b is tokens[b*seq_len .. (b+1)*seq_len)). Position t (t >= 1) of
 * each sequence is a target predicted from positions < t. `loss_mask` may be
 * NULL (every target counts) or hold batch*seq_len bytes aligned with
 * `tokens`: a non-zero byte makes that token a target; entries at t = 0 are
 * ignored. The gradient of a call is that of its mean loss, divided by
 * accum_steps. `result` may be NULL, else its struct_size must be set.
 * Validation happens first; a non-finite loss or gradient refuses the step:
 * on any error the trainer (weights, moments, accumulator, step) is exactly
 * as before. Returns MM_ERR_INVALID_ARGUMENT (NULL, batch or seq_len < 1 or
 * 1 x 1, no target counted), MM_ERR_STRUCT_SIZE, MM_ERR_TOKEN_OUT_OF_RANGE,
 * MM_ERR_NON_FINITE, MM_ERR_OUT_OF_MEMORY. One thread per trainer. */
MM_API mm_status mm_train_step(mm_trainer *trainer, const int32_t *tokens, size_t batch,
                               size_t seq_len, const uint8_t *loss_mask,
                               mm_train_result *result);

/* mm_train_step where sequence b continues the stream of sessions[b] instead
 * of starting from empty state: its forward starts from that session's conv
 * and SSM state, and its reads see the session's pools, whose notes count as
 * older than the sequence's windows: the function mm_session_feed would
 * compute on that session. Training a long stream a piece at a time
 * (truncated backpropagation through time), or training the reads against
 * full pools, goes through here. The sessions' state is a constant of the
 * gradient; it is read, never changed (feed a session the sequence to
 * advance it). `sessions` may be NULL (every sequence from empty state, as
 * mm_train_step) or hold `batch` entries, each NULL (empty state) or a
 * session of a model whose configuration equals the trainer's, at a position
 * that is a multiple of note_window where the model has memory (no pending
 * window). Returns
 * mm_train_step's codes, MM_ERR_INVALID_ARGUMENT also for a session of
 * another configuration or inside a note window, and MM_ERR_UNSUPPORTED on a
 * trainer on a GPU (MM_DEVICE_CUDA). One thread per trainer; no other thread
 * may use the sessions during the call. */
MM_API mm_status mm_train_step_from(mm_trainer *trainer, const mm_session *const *sessions,
                                    const int32_t *tokens, size_t batch, size_t seq_len,
                                    const uint8_t *loss_mask, mm_train_result *result);

/* One training call's inputs, for mm_train_step_batch: what mm_train_step and
 * mm_train_step_from take, and more. Grows only at the end; fill it with
 * mm_train_batch_init. */
typedef struct mm_train_batch {
  uint32_t struct_size;
  const int32_t *tokens;  /* batch * seq_len ids, row-major (required) */
  size_t batch, seq_len;
  const uint8_t *loss_mask;          /* NULL or batch * seq_len bytes (mm_train_step) */
  const mm_session *const *sessions; /* NULL or batch entries (mm_train_step_from) */
  /* NULL or batch * seq_len bytes aligned with tokens: a non-zero byte at
   * (b, t) zeroes sequence b's recurrent state (every layer's scan state and
   * conv inputs) before position t, the function a session computes when
   * mm_session_reset_recurrent is called between feeding positions < t and
   * >= t; notes and pools go on. At t = 0 it drops the recurrent state of
   * sessions[b] (its pools stay). Teaches reads to answer from the notes
   * alone. CPU trainers only. */
  const uint8_t *recurrent_resets;
} mm_train_batch;

/* Zeroes *batch and sets batch->struct_size = size. Same codes as
 * mm_snapshot_info_init. Any thread. */
MM_API mm_status mm_train_batch_init(mm_train_batch *batch, size_t size);

/* mm_train_step_from on the inputs `batch` describes. Returns its codes,
 * MM_ERR_STRUCT_SIZE, and MM_ERR_UNSUPPORTED for recurrent resets on a
 * trainer on a GPU. One thread per trainer. */
MM_API mm_status mm_train_step_batch(mm_trainer *trainer, const mm_train_batch *batch,
                                     mm_train_result *result);

/* Sets the learning rate used by the following updates (warm-up and decay
 * schedules are the caller's). Returns MM_ERR_INVALID_ARGUMENT for NULL or a
 * rate <= 0 or not finite. One thread per trainer. */
MM_API mm_status mm_trainer_set_learning_rate(mm_trainer *trainer, float learning_rate);

/* Optimizer updates applied so far, or 0 for NULL. One thread per trainer. */
MM_API uint64_t mm_trainer_step_count(const mm_trainer *trainer);

/* Per layer, the fraction of the note windows closed by the last
 * mm_train_step whose score passed note_threshold (DESIGN 6: a layer stuck at
 * 0 gets no memory gradient). Writes min(n_layer, capacity) floats. Returns
 * MM_ERR_INVALID_ARGUMENT (NULL). One thread per trainer. */
MM_API mm_status mm_trainer_keep_fraction(const mm_trainer *trainer, float *fractions,
                                          size_t capacity);

/* A new immutable model holding the trainer's current weights (float32,
 * `options` as for mm_model_create; may be NULL). Free it with
 * mm_model_free; it does not depend on the trainer. Returns
 * MM_ERR_INVALID_ARGUMENT, MM_ERR_STRUCT_SIZE, MM_ERR_OUT_OF_MEMORY.
 * One thread per trainer. */
MM_API mm_status mm_trainer_export_model(const mm_trainer *trainer,
                                         const mm_model_options *options,
                                         mm_model **out);

/* Writes the whole trainer (weights, moments, pending accumulated gradient,
 * step count, options but the thread count) to `path` atomically, as
 * safetensors: the model's tensors under their own names, the optimizer's
 * under "optimizer.", the rest in the metadata. It is not a model file
 * (mm_model_load refuses it): export the model for that. Returns
 * MM_ERR_INVALID_ARGUMENT, MM_ERR_IO, MM_ERR_OUT_OF_MEMORY. One thread per
 * trainer. */
MM_API mm_status mm_trainer_save(const mm_trainer *trainer, const char *path);

/* Loads a trainer written by mm_trainer_save; training continues exactly
 * where it stopped. `n_threads` 0 = as mm_model_options.n_threads. Returns
 * MM_ERR_INVALID_ARGUMENT, MM_ERR_IO, MM_ERR_CORRUPT_FILE,
 * MM_ERR_TENSOR_MISSING, MM_ERR_TENSOR_SHAPE, MM_ERR_TENSOR_DTYPE,
 * MM_ERR_NON_FINITE, MM_ERR_CONFIG, MM_ERR_OUT_OF_MEMORY. Any thread. */
MM_API mm_status mm_trainer_load(mm_trainer **out, const char *path, int32_t n_threads);

/* mm_trainer_load, continuing on `device` (mm_device): a trainer saved on
 * either device resumes on either, the same run bit for bit on the same
 * device. Codes of mm_trainer_load and of mm_trainer_options.device. */
MM_API mm_status mm_trainer_load_on(mm_trainer **out, const char *path, int32_t n_threads,
                                    int32_t device);

/* Writes the trainer's model configuration (as mm_model_get_config does for
 * a model: the prefix the caller's struct_size knows). Returns
 * MM_ERR_INVALID_ARGUMENT, MM_ERR_STRUCT_SIZE. One thread per trainer. */
MM_API mm_status mm_trainer_get_config(const mm_trainer *trainer, mm_model_config *config);

/* The message of this trainer's last failed call, or "". One thread per
 * trainer. */
MM_API const char *mm_trainer_last_error(const mm_trainer *trainer);

/* ------------------------------------------------------------------------ */
/* Data-parallel training over several GPUs (DESIGN 6, NCCL)                 */
/* ------------------------------------------------------------------------ */
/*
 * One trainer a GPU, each in its own process (or thread), all created from
 * the same model and options. One rank makes an NCCL id, the caller hands it
 * to every rank (a file: mm_nccl_id_write_file / mm_nccl_id_read_file; an
 * environment variable: mm_nccl_id_to_hex / mm_nccl_id_from_hex; or its own
 * channel), and every rank calls mm_trainer_join with its rank:
 *
 *   uint8_t id[MM_NCCL_ID_BYTES];
 *   if (rank == 0) { mm_nccl_id_create(id); mm_nccl_id_write_file("run.id", id); }
 *   else mm_nccl_id_read_file(id, "run.id", 60000);
 *   mm_data_parallel_options dp;
 *   mm_data_parallel_options_init(&dp, sizeof dp);
 *   dp.world_size = 4; dp.rank = rank;        // GPU `rank` unless dp.device says
 *   mm_trainer_join(trainer, &dp);            // returns once all 4 have joined
 *   mm_train_step(trainer, my_batch, ...);    // each rank its own sequences
 *
 * After the join every mm_train_step is collective: each rank computes the
 * gradient of its own batch, the gradients are summed over the group (NCCL
 * all-reduce), each weighted by its rank's share of the group's targets, and
 * every rank applies the same update: N ranks of b sequences each follow one
 * trainer given the N*b sequences, up to the order of the sums, and all hold
 * the same weights. mm_train_result reports the group's loss and targets
 * (keep fractions stay this rank's). A step refused on any rank (a
 * non-finite loss or gradient, or a batch without targets) is refused on
 * every rank. NCCL is opened at run time (MM_NCCL_LIBRARY names the file,
 * else libnccl.so.2 on the linker's path): single-GPU programs never need it.
 */

#define MM_NCCL_ID_BYTES 128

typedef struct mm_data_parallel_options {
  uint32_t struct_size;
  uint32_t world_size;   /* 1: trainers in the group, one GPU each */
  uint32_t rank;         /* 0: this trainer's place, 0 .. world_size-1 */
  int32_t device;        /* -1: the CUDA device ordinal to train on; -1 = rank */
  uint8_t nccl_id[MM_NCCL_ID_BYTES]; /* the group's id, the same on every rank */
} mm_data_parallel_options;

/* Fills defaults. Returns MM_ERR_INVALID_ARGUMENT, MM_ERR_STRUCT_SIZE. Any
 * thread. */
MM_API mm_status mm_data_parallel_options_init(mm_data_parallel_options *options, size_t size);

/* Joins a data-parallel group (above). Collective: returns once every rank
 * has called it. The trainer moves to options->device if it is on another
 * GPU, then takes rank 0's weights, moments and step count. Once per
 * trainer, between updates (not in the middle of an accumulation). Returns
 * MM_ERR_INVALID_ARGUMENT (NULL, rank >= world_size, world_size 0, a second
 * join, a pending accumulation), MM_ERR_STRUCT_SIZE, MM_ERR_UNSUPPORTED (a
 * CPU trainer, or NCCL cannot be opened), MM_ERR_NO_DEVICE (no such GPU),
 * MM_ERR_COMM (NCCL failed: a rank gave another id or world size, or
 * died), MM_ERR_OUT_OF_MEMORY. After MM_ERR_COMM the trainer may hold
 * another rank's state. One thread per trainer. */
MM_API mm_status mm_trainer_join(mm_trainer *trainer, const mm_data_parallel_options *options);

/* The size of the trainer's data-parallel group: 1 before mm_trainer_join,
 * or for NULL. */
MM_API uint32_t mm_trainer_world_size(const mm_trainer *trainer);

/* Writes a new NCCL id to id[0..MM_NCCL_ID_BYTES). Make it on one rank only.
 * Returns MM_ERR_INVALID_ARGUMENT, MM_ERR_UNSUPPORTED (no CUDA backend or no
 * NCCL), MM_ERR_COMM. Any thread. */
MM_API mm_status mm_nccl_id_create(uint8_t id[MM_NCCL_ID_BYTES]);

/* The id as 2*MM_NCCL_ID_BYTES lowercase hex digits and a NUL into
 * hex[0..capacity) (MM_ERR_BUFFER_TOO_SMALL below 257 bytes), and back
 * (MM_ERR_INVALID_ARGUMENT for anything but 256 hex digits; `id` is then
 * unchanged). For passing the id in an environment variable. Any thread. */
MM_API mm_status mm_nccl_id_to_hex(const uint8_t id[MM_NCCL_ID_BYTES], char *hex,
                                   size_t capacity);
MM_API mm_status mm_nccl_id_from_hex(uint8_t id[MM_NCCL_ID_BYTES], const char *hex);

/* The id as hex in a file written atomically (a temporary file, flushed,
 * renamed: a reader never sees half of it), and read back, waiting up to
 * timeout_ms for the file to appear. Returns MM_ERR_INVALID_ARGUMENT, MM_ERR_IO
 * (cannot write; no file before the timeout), MM_ERR_INVALID_ARGUMENT (the
 * file holds no id). Any thread. */
MM_API mm_status mm_nccl_id_write_file(const char *path, const uint8_t id[MM_NCCL_ID_BYTES]);
MM_API mm_status mm_nccl_id_read_file(uint8_t id[MM_NCCL_ID_BYTES], const char *path,
                                      uint32_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Evaluation (DESIGN 7)                                                     */
/* ------------------------------------------------------------------------ */

typedef struct mm_eval_result {
  uint32_t struct_size;
  double loss;        /* mean next-token cross-entropy, nats */
  double perplexity;  /* exp(loss) */
  uint64_t tokens;    /* targets counted */
} mm_eval_result;

/* Zeroes *result and sets struct_size. Same codes as mm_snapshot_info_init. */
MM_API mm_status mm_eval_result_init(mm_eval_result *result, size_t size);

/* Mean next-token loss of `model` over `tokens`, cut into consecutive pieces
 * of `context` tokens each read from an empty state (the last piece may be
 * shorter; a piece's first token is not a target). context = 0 reads the
 * whole sequence as one stream. Memory stays bounded whatever n_tokens is.
 * Returns MM_ERR_INVALID_ARGUMENT (NULL, fewer than 2 tokens),
 * MM_ERR_STRUCT_SIZE, MM_ERR_TOKEN_OUT_OF_RANGE, MM_ERR_OUT_OF_MEMORY.
 * Any thread. */
MM_API mm_status mm_eval_loss(const mm_model *model, const int32_t *tokens, size_t n_tokens,
                              size_t context, mm_eval_result *result);

typedef struct mm_fidelity {
  uint32_t struct_size;
  double etmf;         /* mean cos(E[x_j], sum_v p_j(v) E[v]) over targets j */
  double eclmf[3];     /* ECLMF for G = 2, 5, 10; NaN where G > n_layer */
  uint64_t tokens;     /* positions used */
} mm_fidelity;

/* Zeroes *result and sets struct_size. Same codes as mm_snapshot_info_init. */
MM_API mm_status mm_fidelity_init(mm_fidelity *result, size_t size);

/* The memory measures of DESIGN 7 over one stream of `n_tokens` tokens:
 * ETMF, and ECLMF_G from ridge regressions (lambda 1e-4) between the
 * residual streams h_l and h_{l+G} (h_0 the embeddings, h_l the output of
 * layer l) over all positions, averaged over l = 0 .. n_layer - G. The
 * regressions' Gram matrices are accumulated as the stream goes, so memory
 * does not grow with n_tokens (it is O(n_layer * d_model^2)). Returns MM_ERR_INVALID_ARGUMENT (NULL, fewer than 2
 * tokens), MM_ERR_STRUCT_SIZE, MM_ERR_TOKEN_OUT_OF_RANGE,
 * MM_ERR_OUT_OF_MEMORY. Any thread. */
MM_API mm_status mm_eval_fidelity(const mm_model *model, const int32_t *tokens,
                                  size_t n_tokens, mm_fidelity *result);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MEMMAMBA_MEMMAMBA_H_ */
