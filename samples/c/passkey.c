/*
 * passkey: the passkey-retrieval experiment (DESIGN 7) on byte tokens.
 *
 *   passkey train --out MODEL [options]       train a model on the task
 *   passkey eval MODEL [options]              accuracy by length and depth,
 *                                             plus ETMF / ECLMF on text
 *   passkey sample --length L --depth D ...   write one sample's bytes
 *
 * A sample of L tokens (bytes; vocab 256), for a depth d in [0, 1]:
 *   F = L - 13 filler bytes; the key is 5 random decimal digits K;
 *   p = floor(d * F + 0.5);
 *   sample = filler[0, p) 0x01 K 0x02 filler[p, F) 0x03 K
 * Training may write decoys over filler bytes (--decoys: digit strings of
 * 1-5 digits, never over the key's frame or the query; add_decoys).
 * Only the 5 answer digits (the last 5 tokens) are targets. A sample is
 * answered correctly iff, teacher-forced, the argmax of the logits after
 * 0x03 is K[0], after K[0] is K[1], ..., after K[3] is K[4]: all five.
 * Training may also continue streams (--prefill L): a stream is L bytes of
 * filler with a key's frame at a uniformly drawn depth, read by a session;
 * a sequence that continues it (mm_train_step_from) is filler ending in the
 * query, answered by the stream's key, which now lies up to L + T tokens
 * back, with pools as full of filler notes as in a long evaluation stream.
 * The recurrent state still carries a key over tens of thousands of tokens
 * (bench/RESULTS.md), so the reads need not learn to answer alone unless
 * --prefill-forget resets the streams' recurrent state at their end
 * (mm_session_reset_recurrent), as a million tokens would.
 * With --prefill-base B every stream first reads the same B filler bytes
 * (read once, then restored from a snapshot), so that its key is written
 * B to B + L tokens into a stream, as a key at depth 0.75 of a 1M sample is.
 * With --prefill-filler the streams hold no key: a sequence that continues
 * one is a whole sample of its own (key, filler, query; --forget-share and
 * --decoys apply), read against pools already full of a long stream's
 * filler notes, the notes a key competes with in a long evaluation stream.
 * Filler: Jane Austen's novels (text_source "janeausten", read from a
 * uniformly drawn start offset, wrapping around) or, with --filler random,
 * uniform random lowercase letters.
 * Random numbers: splitmix64. The generator of a sample is seeded with
 * mix(seed, L, round(d * 1e6), index) (see sample_seed), and draws, in
 * this order: the 5 digits (each next() % 10), then for Jane Austen the
 * start offset (next() % text length), or for random filler one letter per
 * filler byte ('a' + next() % 26). Training draws its samples from its own
 * stream (seeded by --seed), so evaluation samples are never trained on.
 *
 * Evaluation streams each sample through a session in chunks with
 * MM_LOGITS_NONE up to the query: a sample of any length runs in the
 * session's constant memory plus its own bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memmamba/memmamba.h"
#include "text_source.h"

enum { kKeyDigits = 5, kOverhead = 13, kKeyOpen = 1, kKeyClose = 2, kQuery = 3 };

/* ------------------------------------------------------------------------ */
/* Utilities                                                                 */
/* ------------------------------------------------------------------------ */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of this process (all its threads): what a run costs on a
 * machine shared with other work, where wall time says little. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static uint64_t mix(uint64_t h, uint64_t v) {
  rng r = {h ^ (v * 0xff51afd7ed558ccdull)};
  return rng_next(&r);
}

static uint64_t sample_seed(uint64_t seed, uint64_t length, double depth, uint64_t index) {
  uint64_t d = (uint64_t)floor(depth * 1e6 + 0.5);
  return mix(mix(mix(mix(0x70617373u, seed), length), d), index);
}

static int fail_status(const char *what, mm_status st) {
  fprintf(stderr, "passkey: %s failed: %s (%s)\n", what, mm_status_string(st), mm_last_error());
  return 1;
}

static int parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-') return -1;
  *out = (size_t)v;
  return 0;
}

static int parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Samples                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct filler {
  int random;           /* 1: random lowercase letters */
  unsigned char *text;  /* else: the text (bytes 0x01..0x03 replaced by ' ') */
  size_t len;
} filler;

static int filler_load(filler *f, const char *kind, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  if (!strcmp(kind, "random")) {
    f->random = 1;
    return 0;
  }
  if (ts_load(!strcmp(kind, "austen") ? "janeausten" : kind, NULL, &f->text, &f->len, err,
              errlen))
    return -1;
  if (f->len < 1000) {
    snprintf(err, errlen, "filler %s has only %zu bytes", kind, f->len);
    free(f->text);
    return -1;
  }
  for (size_t i = 0; i < f->len; ++i)
    if (f->text[i] == kKeyOpen || f->text[i] == kKeyClose || f->text[i] == kQuery) f->text[i] = ' ';
  return 0;
}

/* Writes the sample of `length` tokens (>= kOverhead + 1) into out[length]
 * and its key into key[5] (ASCII digits). */
/* Where the key's frame starts in a sample of `length` at `depth`: after
 * p = floor(depth * F + 0.5) filler bytes. */
static size_t key_offset(size_t length, double depth) {
  size_t n_fill = length - kOverhead;
  size_t p = (size_t)floor(depth * (double)n_fill + 0.5);
  return p > n_fill ? n_fill : p;
}

static void make_sample(const filler *f, uint64_t seed, size_t length, double depth,
                        unsigned char *out, unsigned char *key) {
  rng r = {seed};
  for (int i = 0; i < kKeyDigits; ++i) key[i] = (unsigned char)('0' + rng_next(&r) % 10);
  size_t n_fill = length - kOverhead;
  size_t p = key_offset(length, depth);
  size_t start = f->random ? 0 : (size_t)(rng_next(&r) % f->len);
  size_t at = 0;
  for (size_t i = 0; i < n_fill; ++i) {
    if (i == p) {
      out[at++] = kKeyOpen;
      memcpy(out + at, key, kKeyDigits);
      at += kKeyDigits;
      out[at++] = kKeyClose;
    }
    if (f->random) {
      out[at++] = (unsigned char)('a' + rng_next(&r) % 26);
    } else {
      out[at++] = f->text[start];
      if (++start == f->len) start = 0;
    }
  }
  if (p == n_fill) {
    out[at++] = kKeyOpen;
    memcpy(out + at, key, kKeyDigits);
    at += kKeyDigits;
    out[at++] = kKeyClose;
  }
  out[at++] = kQuery;
  memcpy(out + at, key, kKeyDigits);
}

/* Training only: overwrites filler of a sample made by make_sample (key at
 * `depth`) with `n` decoys, digit strings of 1-5 digits without the key's
 * frame, so that neither the note scores nor the reads can tell the key by
 * its digits alone: Jane Austen's text has a digit in about one window of
 * 2000, so a 2k-token training sample almost never holds one, while the
 * pools of a 1M-token stream fill up with them. Decoys never touch the
 * key's frame or the query. */
static void add_decoys(unsigned char *out, size_t length, double depth, size_t n, rng *r) {
  size_t n_fill = length - kOverhead, p = key_offset(length, depth);
  /* Filler occupies out[0, p) and out[p + 7, length - 6). */
  for (size_t d = 0; d < n && n_fill >= 2 * kKeyDigits; ++d) {
    size_t len = 1 + (size_t)(rng_next(r) % kKeyDigits);
    size_t at = (size_t)(rng_next(r) % (n_fill - len + 1)); /* index into the filler */
    if (at < p && at + len > p) at = p >= len ? p - len : p; /* keep clear of the frame */
    size_t pos = at < p ? at : at + kKeyDigits + 2;
    for (size_t i = 0; i < len; ++i) out[pos + i] = (unsigned char)('0' + rng_next(r) % 10);
  }
}

/* n filler bytes from a random starting point (training only: evaluation
 * samples come from make_sample). */
static void fill_bytes(const filler *f, rng *r, unsigned char *out, size_t n) {
  size_t at = f->random ? 0 : (size_t)(rng_next(r) % f->len);
  for (size_t i = 0; i < n; ++i) {
    if (f->random) {
      out[i] = (unsigned char)('a' + rng_next(r) % 26);
    } else {
      out[i] = f->text[at];
      if (++at == f->len) at = 0;
    }
  }
}

/* Training only (--prefill): sessions of the model being trained, each
 * having read a stream of `length` filler bytes with keys[i]'s frame at a
 * random depth. Rebuilt from the current weights by prefill_refresh;
 * mm_train_step_from reads them without changing them. */
typedef struct prefill {
  mm_model *model;
  mm_session *streams[16];
  unsigned char keys[16][kKeyDigits];
  size_t key_at[16]; /* stream position of each key's frame */
  size_t n, length;
  size_t base; /* --prefill-base: filler every stream reads first (0: none) */
  int forget;  /* --prefill-forget: streams end with their recurrent state reset */
  int filler;  /* --prefill-filler: streams of filler only, no key */
} prefill;

static void prefill_free(prefill *p) {
  for (size_t i = 0; i < p->n; ++i) mm_session_free(p->streams[i]);
  mm_model_free(p->model);
  p->model = NULL;
  p->n = 0;
}

static mm_status prefill_refresh(prefill *p, size_t n, const mm_trainer *trainer,
                                 const mm_model_options *mo, const filler *f, rng *r) {
  prefill_free(p);
  unsigned char *bytes = malloc(p->length);
  int32_t *tokens = malloc(p->length * sizeof *tokens);
  if (!bytes || !tokens) {
    free(bytes);
    free(tokens);
    return MM_ERR_OUT_OF_MEMORY;
  }
  mm_status st = mm_trainer_export_model(trainer, mo, &p->model);
  /* A shared base (--prefill-base): read once, then every stream starts
   * from its snapshot, so its key is written that deep into a stream, with
   * pools as full as there, for the cost of one read of the base. */
  void *base = NULL;
  size_t base_size = 0;
  if (st == MM_OK && p->base) {
    mm_session *s = NULL;
    st = mm_session_create(&s, p->model, NULL);
    for (size_t done = 0; st == MM_OK && done < p->base;) {
      size_t len = p->base - done < p->length ? p->base - done : p->length;
      fill_bytes(f, r, bytes, len);
      for (size_t k = 0; k < len; ++k) tokens[k] = bytes[k];
      st = mm_session_feed(s, tokens, len, MM_LOGITS_NONE, NULL, 0);
      done += len;
    }
    if (st == MM_OK) st = mm_session_snapshot_alloc(s, &base, &base_size);
    mm_session_free(s);
  }
  for (size_t i = 0; i < n && st == MM_OK; ++i) {
    if ((st = mm_session_create(&p->streams[i], p->model, NULL)) != MM_OK) break;
    ++p->n;
    if (base && (st = mm_session_restore(p->streams[i], base, base_size)) != MM_OK) break;
    fill_bytes(f, r, bytes, p->length);
    if (!p->filler) {
      size_t at = (size_t)(rng_next(r) % (p->length - kKeyDigits - 1));
      bytes[at] = kKeyOpen;
      for (int d = 0; d < kKeyDigits; ++d) {
        p->keys[i][d] = (unsigned char)('0' + rng_next(r) % 10);
        bytes[at + 1 + d] = p->keys[i][d];
      }
      bytes[at + 1 + kKeyDigits] = kKeyClose;
      p->key_at[i] = p->base + at;
    }
    for (size_t k = 0; k < p->length; ++k) tokens[k] = bytes[k];
    st = mm_session_feed(p->streams[i], tokens, p->length, MM_LOGITS_NONE, NULL, 0);
    if (st == MM_OK && p->forget) st = mm_session_reset_recurrent(p->streams[i]);
  }
  mm_free(base);
  free(tokens);
  free(bytes);
  return st;
}

/* ------------------------------------------------------------------------ */
/* Evaluating one sample through a session                                   */
/* ------------------------------------------------------------------------ */

typedef struct sample_result {
  int correct;       /* all five digits */
  int digits_right;  /* 0..5 */
  double digit_nats; /* sum of -log p(true digit) over the five */
  unsigned held;     /* key_layers at the query */
} sample_result;

static int argmax(const float *v, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return (int)best;
}

static double nll(const float *v, size_t n, int target) {
  float mx = v[0];
  for (size_t i = 1; i < n; ++i) mx = v[i] > mx ? v[i] : mx;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += exp((double)v[i] - mx);
  return log(sum) - ((double)v[target] - mx);
}

/* The layers (bit l for layer l) whose pool holds a note of a window that
 * overlaps the key's frame, stream positions [at, at + 7): whether the
 * memory still has the key, whatever the reads make of it. */
static unsigned key_layers(const mm_session *s, const mm_model_config *cfg, size_t at) {
  int64_t lo = (int64_t)(at / cfg->note_window);
  int64_t hi = (int64_t)((at + kKeyDigits + 1) / cfg->note_window);
  int64_t *windows = malloc((cfg->pool_capacity + 1) * sizeof *windows);
  unsigned held = 0;
  for (uint32_t l = 0; windows && l < cfg->n_layer && l < 32; ++l) {
    size_t n = 0;
    if (mm_session_pool_notes(s, l, windows, NULL, NULL, cfg->pool_capacity, &n) != MM_OK) break;
    for (size_t i = 0; i < n && i < cfg->pool_capacity; ++i) {
      if (windows[i] >= lo && windows[i] <= hi) held |= 1u << l;
    }
  }
  free(windows);
  return held;
}

/* Feeds seq[0 .. length-5) (through the query byte) in chunks without
 * logits, then the answer digits one by one, teacher-forced. With forget >
 * 0 the recurrent state is reset (mm_session_reset_recurrent) `forget`
 * tokens before the query, so that only the pools carry what came before. */
static mm_status run_sample(mm_session *s, const mm_model_config *cfg, const unsigned char *seq,
                            size_t length, size_t key_at, size_t chunk, size_t forget,
                            int32_t *tokens, float *logits, sample_result *res) {
  size_t vocab = cfg->vocab_size;
  mm_status st = mm_session_reset(s);
  if (st != MM_OK) return st;
  size_t prefix = length - kKeyDigits;
  size_t cut = forget && forget < prefix ? prefix - forget : 0;
  for (size_t at = 0; at < prefix;) {
    size_t n = prefix - at < chunk ? prefix - at : chunk;
    if (at < cut && cut - at < n) n = cut - at;
    for (size_t i = 0; i < n; ++i) tokens[i] = seq[at + i];
    int last = at + n == prefix;
    st = mm_session_feed(s, tokens, n, last ? MM_LOGITS_LAST : MM_LOGITS_NONE,
                         last ? logits : NULL, last ? vocab : 0);
    if (st != MM_OK) return st;
    at += n;
    if (at == cut && (st = mm_session_reset_recurrent(s)) != MM_OK) return st;
  }
  res->held = key_layers(s, cfg, key_at);
  res->correct = 1;
  res->digits_right = 0;
  res->digit_nats = 0.0;
  for (int d = 0; d < kKeyDigits; ++d) {
    int truth = seq[prefix + d];
    int right = argmax(logits, vocab) == truth;
    res->digits_right += right;
    res->correct &= right;
    res->digit_nats += nll(logits, vocab, truth);
    if (d + 1 < kKeyDigits) {
      int32_t t = truth;
      st = mm_session_feed(s, &t, 1, MM_LOGITS_LAST, logits, vocab);
      if (st != MM_OK) return st;
    }
  }
  return MM_OK;
}

/* ------------------------------------------------------------------------ */
/* Common model options                                                      */
/* ------------------------------------------------------------------------ */

typedef struct model_args {
  mm_model_config cfg;
  int threads;
} model_args;

/* Returns 1 if argv[*i] was a model option (consuming its value), 0 if not,
 * -1 on a bad value. */
static int model_option(model_args *m, int argc, char **argv, int *i) {
  static const struct {
    const char *flag;
    size_t offset;
  } u32[] = {
      {"--d-model", offsetof(mm_model_config, d_model)},
      {"--layers", offsetof(mm_model_config, n_layer)},
      {"--d-state", offsetof(mm_model_config, d_state)},
      {"--expand", offsetof(mm_model_config, expand)},
      {"--window", offsetof(mm_model_config, note_window)},
      {"--summary", offsetof(mm_model_config, summary_dim)},
      {"--capacity", offsetof(mm_model_config, pool_capacity)},
      {"--heads", offsetof(mm_model_config, attn_heads)},
      {"--cross-period", offsetof(mm_model_config, cross_layer_period)},
      {"--cross-span", offsetof(mm_model_config, cross_layer_span)},
  };
  const char *a = argv[*i];
  for (size_t k = 0; k < sizeof u32 / sizeof *u32; ++k) {
    if (strcmp(a, u32[k].flag)) continue;
    size_t v;
    if (*i + 1 >= argc || parse_size(argv[++*i], &v) || v > 1u << 30) return -1;
    *(uint32_t *)((char *)&m->cfg + u32[k].offset) = (uint32_t)v;
    return 1;
  }
  if (!strcmp(a, "--threshold")) {
    double v;
    if (*i + 1 >= argc || parse_double(argv[++*i], &v)) return -1;
    m->cfg.note_threshold = (float)v;
    return 1;
  }
  if (!strcmp(a, "--policy")) {
    if (*i + 1 >= argc) return -1;
    const char *v = argv[++*i];
    if (!strcmp(v, "priority")) m->cfg.pool_policy = MM_POOL_PRIORITY;
    else if (!strcmp(v, "fifo")) m->cfg.pool_policy = MM_POOL_FIFO;
    else return -1;
    return 1;
  }
  if (!strcmp(a, "--fusion")) {
    if (*i + 1 >= argc) return -1;
    const char *v = argv[++*i];
    if (!strcmp(v, "weighted")) m->cfg.fusion = MM_FUSION_WEIGHTED;
    else if (!strcmp(v, "residual")) m->cfg.fusion = MM_FUSION_RESIDUAL;
    else if (!strcmp(v, "gated")) m->cfg.fusion = MM_FUSION_GATED;
    else return -1;
    return 1;
  }
  if (!strcmp(a, "--threads")) {
    size_t v;
    if (*i + 1 >= argc || parse_size(argv[++*i], &v) || v > 1024) return -1;
    m->threads = (int)v;
    return 1;
  }
  return 0;
}

/* The experiment's default model: small enough to train in minutes on two
 * cores; the note window and pool sized for keys of 7 bytes. */
static void model_defaults(model_args *m) {
  mm_model_config_init(&m->cfg, sizeof m->cfg);
  m->cfg.d_model = 64;
  m->cfg.n_layer = 4;
  m->cfg.note_window = 16;
  m->cfg.summary_dim = 64;
  m->cfg.pool_capacity = 16;
  m->cfg.cross_layer_period = 4;
  m->cfg.cross_layer_span = 4;
  m->threads = 1;
}

static void print_config(const char *prefix, const mm_model *model) {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  mm_model_get_config(model, &c);
  printf("%sd_model=%u n_layer=%u d_state=%u expand=%u note_window=%u summary_dim=%u "
         "pool_capacity=%u policy=%s threshold=%g heads=%u cross=%u/%u, %llu parameters\n",
         prefix, c.d_model, c.n_layer, c.d_state, c.expand, c.note_window, c.summary_dim,
         c.pool_capacity, c.pool_policy == MM_POOL_FIFO ? "fifo" : "priority",
         (double)c.note_threshold, c.attn_heads, c.cross_layer_period, c.cross_layer_span,
         (unsigned long long)mm_model_parameter_count(model));
}

/* ------------------------------------------------------------------------ */
/* passkey sample                                                            */
/* ------------------------------------------------------------------------ */

static int cmd_sample(int argc, char **argv) {
  size_t length = 256, index = 0, seed = 1, decoys = 0;
  double depth = 0.5;
  const char *filler_kind = "austen";
  for (int i = 0; i < argc; ++i) {
    const char *a = argv[i];
    int ok = i + 1 < argc;
    if (ok && !strcmp(a, "--length")) ok = !parse_size(argv[++i], &length);
    else if (ok && !strcmp(a, "--depth")) ok = !parse_double(argv[++i], &depth);
    else if (ok && !strcmp(a, "--index")) ok = !parse_size(argv[++i], &index);
    else if (ok && !strcmp(a, "--seed")) ok = !parse_size(argv[++i], &seed);
    else if (ok && !strcmp(a, "--filler")) filler_kind = argv[++i];
    else if (ok && !strcmp(a, "--decoys")) ok = !parse_size(argv[++i], &decoys);
    else ok = 0;
    if (!ok) {
      fprintf(stderr, "usage: passkey sample [--length L] [--depth D] [--index I] [--seed S] "
                      "[--filler austen|random|SPEC] [--decoys N (as training writes them)]\n");
      return 2;
    }
  }
  if (length <= kOverhead || length > ((size_t)1 << 32) || !(depth >= 0.0 && depth <= 1.0) ||
      decoys > length) {
    fprintf(stderr, "passkey: need --length > %d, --depth in [0, 1] and --decoys <= --length\n",
            kOverhead);
    return 2;
  }
  filler f;
  char err[512];
  if (filler_load(&f, filler_kind, err, sizeof err)) {
    fprintf(stderr, "passkey: %s\n", err);
    return 1;
  }
  unsigned char *seq = malloc(length), key[kKeyDigits];
  if (!seq) {
    fprintf(stderr, "passkey: out of memory\n");
    return 1;
  }
  make_sample(&f, sample_seed(seed, length, depth, index), length, depth, seq, key);
  if (decoys) {
    rng r = {mix(sample_seed(seed, length, depth, index), 0x6465636f79u)};
    add_decoys(seq, length, depth, decoys, &r);
  }
  int rc = fwrite(seq, 1, length, stdout) == length && fflush(stdout) == 0 ? 0 : 1;
  free(seq);
  free(f.text);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* passkey eval                                                              */
/* ------------------------------------------------------------------------ */

static int parse_list(const char *s, double *out, int max, int *n) {
  *n = 0;
  char *copy = strdup(s), *save = NULL;
  if (!copy) return -1;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (*n == max || parse_double(tok, &out[*n])) {
      free(copy);
      return -1;
    }
    ++*n;
  }
  free(copy);
  return *n ? 0 : -1;
}

typedef struct eval_args {
  double lengths[32], depths[32];
  int n_lengths, n_depths;
  size_t samples, seed, chunk, fidelity_tokens, forget;
  const char *filler_kind, *table, *label;
} eval_args;

/* Accuracy over `samples` samples of each (length, depth); fills acc[l][d].
 * Prints a line per cell and, for long samples, one per sample. */
static int evaluate(const mm_model *model, const filler *f, const eval_args *a, double *acc,
                    double *digit_acc, int verbose) {
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  mm_model_get_config(model, &cfg);
  size_t vocab = cfg.vocab_size;
  mm_session_options so;
  mm_session_options_init(&so, sizeof so);
  so.max_chunk = 1024;
  mm_session *s = NULL;
  mm_status st = mm_session_create(&s, model, &so);
  if (st != MM_OK) return fail_status("mm_session_create", st);
  size_t max_len = 0;
  for (int l = 0; l < a->n_lengths; ++l)
    if ((size_t)a->lengths[l] > max_len) max_len = (size_t)a->lengths[l];
  unsigned char *seq = malloc(max_len), key[kKeyDigits];
  int32_t *tokens = malloc(a->chunk * sizeof *tokens);
  float *logits = malloc(vocab * sizeof *logits);
  if (!seq || !tokens || !logits) {
    fprintf(stderr, "passkey: out of memory\n");
    return 1;
  }
  int rc = 0;
  for (int l = 0; l < a->n_lengths && !rc; ++l) {
    size_t length = (size_t)a->lengths[l];
    for (int d = 0; d < a->n_depths && !rc; ++d) {
      double depth = a->depths[d], t0 = now_seconds();
      size_t right = 0, digits = 0, held = 0, held_right = 0;
      double nats = 0.0;
      for (size_t k = 0; k < a->samples; ++k) {
        make_sample(f, sample_seed(a->seed, length, depth, k), length, depth, seq, key);
        sample_result r;
        double ts = now_seconds();
        size_t key_at = key_offset(length, depth);
        st = run_sample(s, &cfg, seq, length, key_at, a->chunk, a->forget, tokens, logits, &r);
        if (st != MM_OK) {
          rc = fail_status("mm_session_feed", st);
          break;
        }
        right += (size_t)r.correct;
        digits += (size_t)r.digits_right;
        nats += r.digit_nats;
        held += r.held != 0;
        held_right += r.held != 0 && r.correct;
        if (verbose && length >= 65536) {
          fprintf(stderr, "  length %zu depth %.2f sample %zu/%zu: %s (%d/5 digits), %.1f s, "
                  "%.0f tokens/s, pools (* holds the key):", length, depth, k + 1, a->samples,
                  r.correct ? "right" : "wrong", r.digits_right, now_seconds() - ts,
                  length / (now_seconds() - ts));
          for (uint32_t layer = 0; layer < cfg.n_layer; ++layer) {
            fprintf(stderr, " %d%s", mm_session_pool_size(s, layer),
                    layer < 32 && (r.held >> layer & 1u) ? "*" : "");
          }
          fprintf(stderr, "\n");
        }
      }
      if (rc) break;
      acc[l * a->n_depths + d] = (double)right / a->samples;
      if (digit_acc) digit_acc[l * a->n_depths + d] = (double)digits / (a->samples * kKeyDigits);
      if (verbose) {
        printf("length %8zu depth %.2f: accuracy %5.1f%% (%zu/%zu), digits %5.1f%%, "
               "digit loss %.3f nats, key in a pool %zu/%zu (right %zu), %.1f s\n",
               length, depth, 100.0 * right / a->samples, right, a->samples,
               100.0 * digits / (a->samples * kKeyDigits), nats / (a->samples * kKeyDigits),
               held, a->samples, held_right, now_seconds() - t0);
        fflush(stdout);
      }
    }
  }
  free(logits);
  free(tokens);
  free(seq);
  mm_session_free(s);
  return rc;
}

static void write_table(FILE *out, const eval_args *a, const double *acc, const mm_fidelity *fid,
                        const char *label) {
  fprintf(out, "%s: passkey accuracy (%%, %zu samples per cell, seed %zu, filler %s)\n\n",
          label, a->samples, a->seed, a->filler_kind);
  fprintf(out, "| length |");
  for (int d = 0; d < a->n_depths; ++d) fprintf(out, " depth %.2f |", a->depths[d]);
  fprintf(out, " mean |\n|---:|");
  for (int d = 0; d <= a->n_depths; ++d) fprintf(out, "---:|");
  fprintf(out, "\n");
  for (int l = 0; l < a->n_lengths; ++l) {
    double sum = 0.0;
    fprintf(out, "| %.0f |", a->lengths[l]);
    for (int d = 0; d < a->n_depths; ++d) {
      fprintf(out, " %.0f |", 100.0 * acc[l * a->n_depths + d]);
      sum += acc[l * a->n_depths + d];
    }
    fprintf(out, " %.1f |\n", 100.0 * sum / a->n_depths);
  }
  if (fid) {
    fprintf(out, "\nETMF %.4f; ECLMF G=2 %.4f, G=5 %.4f, G=10 %.4f (%llu tokens of text)\n",
            fid->etmf, fid->eclmf[0], fid->eclmf[1], fid->eclmf[2],
            (unsigned long long)fid->tokens);
  }
}

static int cmd_eval(int argc, char **argv) {
  eval_args a;
  memset(&a, 0, sizeof a);
  a.samples = 8;
  a.seed = 1234;
  a.chunk = 65536;
  a.fidelity_tokens = 4096;
  a.filler_kind = "austen";
  const char *model_path = NULL;
  int threads = 1;
  parse_list("1024,4096,16384,65536,262144,1048576", a.lengths, 32, &a.n_lengths);
  parse_list("0,0.25,0.5,0.75,1", a.depths, 32, &a.n_depths);
  for (int i = 0; i < argc; ++i) {
    const char *x = argv[i];
    int ok = i + 1 < argc;
    size_t v;
    if (ok && !strcmp(x, "--lengths")) ok = !parse_list(argv[++i], a.lengths, 32, &a.n_lengths);
    else if (ok && !strcmp(x, "--depths")) ok = !parse_list(argv[++i], a.depths, 32, &a.n_depths);
    else if (ok && !strcmp(x, "--samples")) ok = !parse_size(argv[++i], &a.samples) && a.samples > 0;
    else if (ok && !strcmp(x, "--seed")) ok = !parse_size(argv[++i], &a.seed);
    else if (ok && !strcmp(x, "--chunk")) ok = !parse_size(argv[++i], &a.chunk) && a.chunk > 0;
    else if (ok && !strcmp(x, "--forget")) ok = !parse_size(argv[++i], &a.forget);
    else if (ok && !strcmp(x, "--filler")) a.filler_kind = argv[++i];
    else if (ok && !strcmp(x, "--table")) a.table = argv[++i];
    else if (ok && !strcmp(x, "--label")) a.label = argv[++i];
    else if (ok && !strcmp(x, "--fidelity-tokens")) ok = !parse_size(argv[++i], &a.fidelity_tokens);
    else if (ok && !strcmp(x, "--threads")) {
      ok = !parse_size(argv[++i], &v) && v <= 1024;
      threads = (int)v;
    } else if (x[0] != '-' && !model_path) model_path = x;
    else ok = 0;
    if (!ok) {
      fprintf(stderr,
              "usage: passkey eval MODEL [--lengths L1,L2,..] [--depths D1,D2,..] [--samples K]\n"
              "         [--seed S] [--filler austen|random|SPEC] [--table OUT.md] [--label TEXT]\n"
              "         [--fidelity-tokens N (0 = skip)] [--chunk N] [--threads N]\n"
              "         [--forget N: reset the recurrent state N tokens before the query]\n");
      return 2;
    }
  }
  if (!model_path) {
    fprintf(stderr, "passkey eval: no model given\n");
    return 2;
  }
  for (int l = 0; l < a.n_lengths; ++l)
    if (!(a.lengths[l] > kOverhead) || a.lengths[l] > 4294967296.0 ||
        a.lengths[l] != floor(a.lengths[l])) {
      fprintf(stderr, "passkey eval: lengths must be whole numbers above %d\n", kOverhead);
      return 2;
    }
  for (int d = 0; d < a.n_depths; ++d)
    if (!(a.depths[d] >= 0.0 && a.depths[d] <= 1.0)) {
      fprintf(stderr, "passkey eval: depths must lie in [0, 1]\n");
      return 2;
    }
  mm_model_options mo;
  mm_model_options_init(&mo, sizeof mo);
  mo.n_threads = threads;
  mm_model *model = NULL;
  mm_status st = mm_model_load(&model, model_path, &mo);
  if (st != MM_OK) return fail_status("mm_model_load", st);
  print_config("model: ", model);
  filler f;
  char err[512];
  if (filler_load(&f, a.filler_kind, err, sizeof err)) {
    fprintf(stderr, "passkey: %s\n", err);
    mm_model_free(model);
    return 1;
  }
  double *acc = calloc((size_t)a.n_lengths * a.n_depths, sizeof *acc);
  double t0 = now_seconds(), cpu0 = cpu_seconds();
  int rc = acc ? evaluate(model, &f, &a, acc, NULL, 1) : 1;
  double secs = now_seconds() - t0, cpu_secs = cpu_seconds() - cpu0;

  /* The memory measures on a text excerpt (the filler's text, or random letters). */
  mm_fidelity fid, *fidp = NULL;
  if (!rc && a.fidelity_tokens >= 2) {
    int32_t *tok = malloc(a.fidelity_tokens * sizeof *tok);
    rng r = {a.seed};
    size_t start = f.random ? 0 : (size_t)(rng_next(&r) % f.len);
    for (size_t i = 0; tok && i < a.fidelity_tokens; ++i)
      tok[i] = f.random ? 'a' + (int32_t)(rng_next(&r) % 26) : f.text[(start + i) % f.len];
    mm_fidelity_init(&fid, sizeof fid);
    st = tok ? mm_eval_fidelity(model, tok, a.fidelity_tokens, &fid) : MM_ERR_OUT_OF_MEMORY;
    free(tok);
    if (st != MM_OK) {
      rc = fail_status("mm_eval_fidelity", st);
    } else {
      fidp = &fid;
      printf("ETMF %.4f; ECLMF G=2 %.4f, G=5 %.4f, G=10 %.4f over %llu tokens\n", fid.etmf,
             fid.eclmf[0], fid.eclmf[1], fid.eclmf[2], (unsigned long long)fid.tokens);
    }
  }
  if (!rc) {
    char label[600];
    snprintf(label, sizeof label, "%s", a.label ? a.label : model_path);
    printf("\n");
    write_table(stdout, &a, acc, fidp, label);
    printf("evaluation took %.0f s (%.0f s of CPU)\n", secs, cpu_secs);
    if (a.table) {
      FILE *out = fopen(a.table, "w");
      if (!out) {
        fprintf(stderr, "passkey: %s: %s\n", a.table, strerror(errno));
        rc = 1;
      } else {
        write_table(out, &a, acc, fidp, label);
        if (fclose(out)) rc = 1;
      }
    }
  }
  free(acc);
  free(f.text);
  mm_model_free(model);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* passkey train                                                             */
/* ------------------------------------------------------------------------ */

static int cmd_train(int argc, char **argv) {
  model_args m;
  model_defaults(&m);
  const char *out = NULL, *init = NULL, *filler_kind = "austen";
  size_t steps = 0, seq = 2048, seq_min = 128, batch_tokens = 4096, seed = 1, eval_every = 50,
         final_eval_every = 0,
         eval_samples = 32, warmup = 30, probe = 0, mix_min = 0, prefill_every = 50,
         prefill_streams = 4;
  double decoys = 0.0; /* per 2048 tokens */
  double prefill_share = 0.5, forget_share = 0.0;
  prefill pre;
  memset(&pre, 0, sizeof pre);
  double minutes = 0.0, lr = 2e-3, lr_final = 0.1, advance = 0.9, clip = 1.0, wd = 0.1,
         depth_edge = 0.1, stage_share = 0.0;
  int straight = 0, cpu_budget = 0, device = MM_DEVICE_CPU;
  for (int i = 0; i < argc; ++i) {
    int r = model_option(&m, argc, argv, &i);
    if (r == 1) continue;
    const char *x = argv[i];
    int ok = r == 0 && i + 1 < argc;
    if (r == 0 && !strcmp(x, "--straight-through")) {
      straight = 1;
      continue;
    }
    if (r == 0 && !strcmp(x, "--prefill-forget")) {
      pre.forget = 1;
      continue;
    }
    if (r == 0 && !strcmp(x, "--prefill-filler")) {
      pre.filler = 1;
      continue;
    }
    if (ok && !strcmp(x, "--out")) out = argv[++i];
    else if (ok && !strcmp(x, "--init")) init = argv[++i];
    else if (ok && !strcmp(x, "--filler")) filler_kind = argv[++i];
    else if (ok && !strcmp(x, "--steps")) ok = !parse_size(argv[++i], &steps);
    else if (ok && !strcmp(x, "--minutes")) ok = !parse_double(argv[++i], &minutes) && minutes > 0;
    else if (ok && !strcmp(x, "--cpu-minutes")) {
      ok = !parse_double(argv[++i], &minutes) && minutes > 0;
      cpu_budget = 1;
    }
    else if (ok && !strcmp(x, "--seq")) ok = !parse_size(argv[++i], &seq);
    else if (ok && !strcmp(x, "--seq-min")) ok = !parse_size(argv[++i], &seq_min);
    else if (ok && !strcmp(x, "--batch-tokens")) ok = !parse_size(argv[++i], &batch_tokens);
    else if (ok && !strcmp(x, "--seed")) ok = !parse_size(argv[++i], &seed);
    else if (ok && !strcmp(x, "--eval-every")) ok = !parse_size(argv[++i], &eval_every);
    else if (ok && !strcmp(x, "--final-eval-every")) {
      ok = !parse_size(argv[++i], &final_eval_every);
    }
    else if (ok && !strcmp(x, "--eval-samples")) ok = !parse_size(argv[++i], &eval_samples);
    else if (ok && !strcmp(x, "--probe")) ok = !parse_size(argv[++i], &probe);
    else if (ok && !strcmp(x, "--warmup")) ok = !parse_size(argv[++i], &warmup);
    else if (ok && !strcmp(x, "--lr")) ok = !parse_double(argv[++i], &lr) && lr > 0;
    else if (ok && !strcmp(x, "--lr-final")) ok = !parse_double(argv[++i], &lr_final) && lr_final > 0;
    else if (ok && !strcmp(x, "--advance")) ok = !parse_double(argv[++i], &advance);
    else if (ok && !strcmp(x, "--clip")) ok = !parse_double(argv[++i], &clip) && clip >= 0;
    else if (ok && !strcmp(x, "--weight-decay")) ok = !parse_double(argv[++i], &wd) && wd >= 0;
    else if (ok && !strcmp(x, "--depth-edge")) ok = !parse_double(argv[++i], &depth_edge);
    else if (ok && !strcmp(x, "--mix-min")) ok = !parse_size(argv[++i], &mix_min);
    else if (ok && !strcmp(x, "--stage-share")) ok = !parse_double(argv[++i], &stage_share) && stage_share > 0;
    else if (ok && !strcmp(x, "--prefill")) ok = !parse_size(argv[++i], &pre.length);
    else if (ok && !strcmp(x, "--prefill-base")) ok = !parse_size(argv[++i], &pre.base);
    else if (ok && !strcmp(x, "--prefill-every")) {
      ok = !parse_size(argv[++i], &prefill_every) && prefill_every > 0;
    }
    else if (ok && !strcmp(x, "--prefill-streams")) {
      ok = !parse_size(argv[++i], &prefill_streams) && prefill_streams > 0 && prefill_streams <= 16;
    }
    else if (ok && !strcmp(x, "--prefill-share")) {
      ok = !parse_double(argv[++i], &prefill_share) && prefill_share >= 0 && prefill_share <= 1;
    }
    else if (ok && !strcmp(x, "--forget-share")) {
      ok = !parse_double(argv[++i], &forget_share) && forget_share >= 0 && forget_share <= 1;
    }
    else if (ok && !strcmp(x, "--decoys")) {
      ok = !parse_double(argv[++i], &decoys) && decoys >= 0 && decoys <= 2048;
    }
    else if (ok && !strcmp(x, "--device")) {
      const char *d = argv[++i];
      ok = !strcmp(d, "cpu") || !strcmp(d, "cuda");
      device = !strcmp(d, "cuda") ? MM_DEVICE_CUDA : MM_DEVICE_CPU;
    }
    else ok = 0;
    if (!ok) {
      fprintf(stderr,
              "usage: passkey train --out MODEL [--steps N | --minutes M | --cpu-minutes M] [--seed S]\n"
              "  data:  [--seq 2048] [--seq-min 128] [--batch-tokens 4096] [--filler austen|random|SPEC]\n"
              "         [--depth-edge 0.1 (share of samples at depth 0 and at 1 each)]\n"
              "         [--decoys 0 (digit strings of 1-5 digits per 2048 filler bytes, <= 2048)]\n"
              "         [--forget-share 0: a share of the sequences whose recurrent state resets\n"
              "          between the key and the query (mm_train_batch.recurrent_resets)]\n"
              "         [--prefill L: a share of the sequences (--prefill-share 0.5) continue\n"
              "          one of --prefill-streams 4 streams of L filler bytes holding a key,\n"
              "          ending in its query; new streams, read by the current weights, every\n"
              "          --prefill-every 50 steps; CPU trainer only]\n"
              "         [--prefill-base B: every stream first reads the same B filler bytes,\n"
              "          so that its key lies B to B + L bytes deep; the base is read once]\n"
              "         [--prefill-forget: the streams' recurrent state is reset after their\n"
              "          L bytes, so that only the pools carry the key]\n"
              "         [--prefill-filler: the streams hold no key; the sequences that\n"
              "          continue them are whole samples, read against their full pools]\n"
              "  optim: [--lr 2e-3] [--lr-final 0.1 (fraction)] [--warmup 30] [--clip 1]\n"
              "         [--weight-decay 0.1] [--straight-through] [--init MODEL]\n"
              "         [--device cpu|cuda (where the trainer runs; checks run on the CPU)]\n"
              "  curriculum: lengths seq-min, 2 seq-min, .., seq; the next when the accuracy\n"
              "         of --eval-samples 32 (every --eval-every 50 steps) reaches --advance 0.9,\n"
              "         or when the stage has used --stage-share (1/stages) of the budget\n"
              "         [--final-eval-every N: in the last stage, where a check cannot move\n"
              "          the curriculum, check every N steps only (and at the end); checks\n"
              "          never change the weights]\n"
              "         [--probe L: also report accuracy at length L at each evaluation]\n"
              "         [--mix-min L: in the last stage, lengths drawn log-uniformly in [L, seq]]\n"
              "  model: [--d-model 64] [--layers 4] [--d-state 16] [--expand 2] [--window 16]\n"
              "         [--summary 64] [--capacity 16 (0 = plain Mamba)] [--heads 4]\n"
              "         [--threshold 0.5] [--policy priority|fifo] [--fusion weighted|residual|gated]\n"
              "         [--cross-period 4] [--cross-span 4] [--threads 1]\n");
      return 2;
    }
  }
  if (!out || (!steps && minutes <= 0)) {
    fprintf(stderr, "passkey train: needs --out and --steps or --minutes\n");
    return 2;
  }
  if (seq > 2048 || seq_min <= kOverhead + 1 || seq_min > seq || batch_tokens < seq_min ||
      (mix_min && (mix_min <= kOverhead + 1 || mix_min > seq || batch_tokens < mix_min)) ||
      depth_edge < 0 || depth_edge > 0.5) {
    fprintf(stderr, "passkey train: need %d < --seq-min <= --seq <= 2048, --batch-tokens >= "
                    "--seq-min and --depth-edge in [0, 0.5]\n", kOverhead + 1);
    return 2;
  }
  if ((pre.forget || pre.filler) && !pre.length) {
    fprintf(stderr, "passkey train: --prefill-forget and --prefill-filler need --prefill L\n");
    return 2;
  }
  filler f;
  char err[512];
  if (filler_load(&f, filler_kind, err, sizeof err)) {
    fprintf(stderr, "passkey: %s\n", err);
    return 1;
  }
  mm_model_options mo;
  mm_model_options_init(&mo, sizeof mo);
  mo.n_threads = m.threads;
  mm_model *model = NULL;
  mm_status st = init ? mm_model_load(&model, init, &mo) : mm_model_create(&model, &m.cfg, seed, &mo);
  if (st != MM_OK) return fail_status(init ? "mm_model_load" : "mm_model_create", st);
  print_config("model: ", model);
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  mm_model_get_config(model, &cfg);
  /* Whole note windows: a stream is continued only at a window's end. */
  pre.length -= pre.length % cfg.note_window;
  pre.base -= pre.base % cfg.note_window;
  if (pre.length && pre.length < 2 * kKeyDigits) {
    fprintf(stderr, "passkey train: --prefill needs at least %d bytes\n", 2 * kKeyDigits);
    mm_model_free(model);
    return 2;
  }
  mm_trainer_options to;
  mm_trainer_options_init(&to, sizeof to);
  to.learning_rate = (float)lr;
  to.grad_clip = (float)clip;
  to.weight_decay = (float)wd;
  to.n_threads = m.threads;
  to.note_straight_through = straight;
  to.device = device;
  mm_trainer *trainer = NULL;
  st = mm_trainer_create(&trainer, model, &to);
  mm_model_free(model);
  model = NULL;
  if (st != MM_OK) return fail_status("mm_trainer_create", st);

  /* Curriculum stages: seq_min, 2 seq_min, ..., seq. */
  size_t stage_len[16];
  int n_stages = 0;
  for (size_t t = seq_min; t < seq && n_stages < 15; t *= 2) stage_len[n_stages++] = t;
  stage_len[n_stages++] = seq;
  int stage = 0;
  if (stage_share <= 0.0) stage_share = 1.0 / n_stages;
  double budget = steps ? (double)steps : minutes * 60.0; /* steps, or seconds */
  double stage_start = 0.0;

  /* A step holds B = batch_tokens / T sequences (at least one) of T <= seq. */
  size_t cap_tokens = batch_tokens > seq ? batch_tokens : seq;
  int32_t *tokens = malloc(cap_tokens * sizeof *tokens);
  uint8_t *mask = malloc(cap_tokens);
  uint8_t *resets = calloc(cap_tokens, 1); /* --forget-share */
  unsigned char *sample = malloc(seq), key[kKeyDigits];
  float *keep = malloc(cfg.n_layer * sizeof *keep);
  /* Per sequence: the stream it continues (NULL: none). */
  const mm_session **from = malloc(cap_tokens * sizeof *from);
  if (!tokens || !mask || !resets || !sample || !keep || !from) {
    fprintf(stderr, "passkey: out of memory\n");
    return 1;
  }
  rng data = {mix(seed, 0x747261696eu)};

  printf("train: seed %zu, lr %g (warm-up %zu, cosine to %g x), clip %g, weight decay %g, "
         "straight-through %s, decoys %g, threads %d, %s, curriculum",
         seed, lr, warmup, lr_final, clip, wd, straight ? "on" : "off", decoys, m.threads,
         device == MM_DEVICE_CUDA ? "GPU" : "CPU");
  for (int s = 0; s < n_stages; ++s) printf(" %zu", stage_len[s]);
  printf(", %zu tokens per batch, budget %.0f %s", batch_tokens, budget,
         steps ? "steps" : cpu_budget ? "CPU seconds" : "seconds");
  if (forget_share > 0) printf(", recurrent resets in a share %g of the sequences", forget_share);
  if (pre.length) {
    printf(", prefill %zu tokens (share %g, %zu streams, every %zu steps, base %zu%s%s)",
           pre.length, prefill_share, prefill_streams, prefill_every, pre.base,
           pre.forget ? ", recurrent state reset" : "", pre.filler ? ", filler only" : "");
  }
  printf("\n");
  fflush(stdout);

  double t0 = now_seconds(), cpu0 = cpu_seconds(), loss_sum = 0.0, last_print = t0;
  size_t loss_n = 0, step = 0, tokens_seen = 0;
  int rc = 0;
  for (;;) {
    double used = steps ? (double)step : cpu_budget ? cpu_seconds() - cpu0 : now_seconds() - t0;
    double progress = used / budget;
    if (progress >= 1.0) break;
    /* Stage share: a non-final stage ends by its share of the budget at the latest. */
    if (stage + 1 < n_stages && used - stage_start >= budget * stage_share) {
      ++stage;
      stage_start = used;
      printf("stage %d: length %zu (budget share used up)\n", stage, stage_len[stage]);
    }
    size_t T = stage_len[stage];
    if (mix_min && stage + 1 == n_stages) {
      /* Final stage: lengths drawn log-uniformly from [mix_min, seq], so
       * that the query is seen at many distances from the stream's start. */
      double lo = log((double)mix_min), hi = log((double)seq);
      T = (size_t)exp(lo + (hi - lo) * rng_uniform(&data));
      if (T < mix_min) T = mix_min;
      if (T > seq) T = seq;
    }
    size_t B = batch_tokens / T;
    if (B < 1) B = 1;
    if (pre.length && step % prefill_every == 0) {
      if ((st = prefill_refresh(&pre, prefill_streams, trainer, &mo, &f, &data)) != MM_OK) {
        rc = fail_status("prefill", st);
        break;
      }
      printf("prefill at step %zu: ", step);
      if (!pre.filler) {
        size_t held = 0;
        for (size_t i = 0; i < pre.n; ++i) {
          held += key_layers(pre.streams[i], &cfg, pre.key_at[i]) != 0;
        }
        printf("the key is in a pool in %zu of %zu streams; ", held, pre.n);
      }
      printf("the first stream's pools hold");
      for (uint32_t l = 0; l < cfg.n_layer; ++l) {
        printf(" %d", (int)mm_session_pool_size(pre.streams[0], l));
      }
      printf(" notes\n");
    }
    for (size_t b = 0; b < B; ++b) {
      from[b] = NULL;
      size_t i = 0;
      if (pre.length && rng_uniform(&data) < prefill_share) {
        i = (size_t)(rng_next(&data) % pre.n);
        from[b] = pre.streams[i];
      }
      if (from[b] && !pre.filler) {
        /* Filler, the query, and the key of the stream continued. */
        fill_bytes(&f, &data, sample, T - kKeyDigits - 1);
        sample[T - kKeyDigits - 1] = kQuery;
        memcpy(sample + T - kKeyDigits, pre.keys[i], kKeyDigits);
        for (size_t t = 0; t < T; ++t) {
          tokens[b * T + t] = sample[t];
          mask[b * T + t] = t >= T - kKeyDigits;
        }
        continue;
      }
      double u = rng_uniform(&data), depth;
      if (u < depth_edge) depth = 0.0;
      else if (u < 2 * depth_edge) depth = 1.0;
      else depth = rng_uniform(&data);
      make_sample(&f, rng_next(&data), T, depth, sample, key);
      if (decoys > 0) {
        /* The whole part, plus one more with the fraction's odds. */
        double want = decoys * (double)T / 2048.0;
        size_t n = (size_t)want + (rng_uniform(&data) < want - floor(want));
        add_decoys(sample, T, depth, n, &data);
      }
      for (size_t t = 0; t < T; ++t) {
        tokens[b * T + t] = sample[t];
        mask[b * T + t] = t >= T - kKeyDigits;
        resets[b * T + t] = 0;
      }
      /* --forget-share: the recurrent state resets somewhere between the
       * key's window and the query, so that only the notes carry the key,
       * and the note block learns from the answer how to write them. */
      size_t after_key = key_offset(T, depth) + kKeyDigits + 2, query = T - kKeyDigits - 1;
      if (forget_share > 0 && after_key <= query && rng_uniform(&data) < forget_share) {
        resets[b * T + after_key + rng_next(&data) % (query - after_key + 1)] = 1;
      }
    }
    double lr_now = lr * (step < warmup ? (double)(step + 1) / warmup
                                        : lr_final + (1 - lr_final) * 0.5 * (1 + cos(3.14159265358979323846 * progress)));
    mm_trainer_set_learning_rate(trainer, (float)lr_now);
    mm_train_result res;
    mm_train_result_init(&res, sizeof res);
    mm_train_batch in;
    mm_train_batch_init(&in, sizeof in);
    in.tokens = tokens;
    in.batch = B;
    in.seq_len = T;
    in.loss_mask = mask;
    in.sessions = pre.length ? from : NULL;
    in.recurrent_resets = forget_share > 0 ? resets : NULL;
    st = mm_train_step_batch(trainer, &in, &res);
    if (st != MM_OK) {
      fprintf(stderr, "passkey: mm_train_step_batch failed: %s (%s)\n", mm_status_string(st),
              mm_trainer_last_error(trainer));
      rc = 1;
      break;
    }
    ++step;
    tokens_seen += B * T;
    loss_sum += res.loss;
    ++loss_n;
    double now = now_seconds();
    /* In the last stage a check only reports, so --final-eval-every may
     * thin the checks out there; the run's last step is then still checked. */
    int thinned = stage + 1 == n_stages && final_eval_every && eval_every;
    size_t every = thinned ? final_eval_every : eval_every;
    int eval_now = every && (step % every == 0 || (thinned && steps && step == steps));
    if (eval_now || now - last_print > 30.0) {
      mm_trainer_keep_fraction(trainer, keep, cfg.n_layer);
      printf("step %5zu  T %4zu  loss %.3f  lr %.2e  |g| %.2f  %.0f tok/s  %.0f s (cpu %.0f s)  keep",
             step, T, loss_sum / loss_n, lr_now, (double)res.grad_norm, tokens_seen / (now - t0),
             now - t0, cpu_seconds() - cpu0);
      for (uint32_t l = 0; l < cfg.n_layer; ++l) printf(" %.2f", (double)keep[l]);
      printf("\n");
      fflush(stdout);
      loss_sum = 0.0;
      loss_n = 0;
      last_print = now;
    }
    if (eval_now) {
      if ((st = mm_trainer_export_model(trainer, &mo, &model)) != MM_OK) {
        rc = fail_status("mm_trainer_export_model", st);
        break;
      }
      eval_args a;
      memset(&a, 0, sizeof a);
      a.n_lengths = probe ? 2 : 1;
      a.lengths[0] = (double)T;
      a.lengths[1] = (double)probe;
      a.n_depths = 1;
      a.depths[0] = 0.5;
      a.samples = eval_samples;
      a.seed = seed + step; /* fresh samples each time */
      a.chunk = 65536;
      /* Random depths for the check: one "cell" per depth is too coarse. */
      double acc[2] = {0, 0}, dig[2] = {0, 0};
      double depths_acc = 0.0, depths_dig = 0.0;
      static const double check_depths[] = {0.0, 0.3, 0.6, 1.0};
      double probe_acc = 0.0;
      for (int d = 0; d < 4 && !rc; ++d) {
        a.depths[0] = check_depths[d];
        a.samples = eval_samples / 4 ? eval_samples / 4 : 1;
        if (evaluate(model, &f, &a, acc, dig, 0)) rc = 1;
        depths_acc += acc[0] / 4;
        depths_dig += dig[0] / 4;
        probe_acc += acc[1] / 4;
      }
      mm_model_free(model);
      model = NULL;
      if (rc) break;
      printf("  check at length %zu: accuracy %.1f%%, digits %.1f%%", T, 100 * depths_acc,
             100 * depths_dig);
      if (probe) printf("; at length %zu: %.1f%%", probe, 100 * probe_acc);
      printf("\n");
      fflush(stdout);
      if (depths_acc >= advance && stage + 1 < n_stages) {
        ++stage;
        stage_start = steps ? (double)step : cpu_budget ? cpu_seconds() - cpu0 : now_seconds() - t0;
        printf("stage %d: length %zu\n", stage, stage_len[stage]);
      }
    }
  }
  double secs = now_seconds() - t0;
  if (!rc) {
    st = mm_trainer_export_model(trainer, &mo, &model);
    if (st == MM_OK) st = mm_model_save(model, out);
    if (st != MM_OK) {
      rc = fail_status("export and save", st);
    } else {
      printf("trained %zu steps (%zu tokens) in %.0f s (%.0f s of CPU); final length %zu; "
             "saved %s\n", step, tokens_seen, secs, cpu_seconds() - cpu0, stage_len[stage], out);
    }
    mm_model_free(model);
  }
  prefill_free(&pre);
  free((void *)from);
  free(keep);
  free(sample);
  free(mask);
  free(resets);
  free(tokens);
  free(f.text);
  mm_trainer_free(trainer);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "sample")) return cmd_sample(argc - 2, argv + 2);
  fprintf(stderr,
          "usage: passkey train --out MODEL [--steps N | --minutes M] [options]  (--help for them)\n"
          "       passkey eval MODEL [--lengths ..] [--depths ..] [--samples K] [--table OUT.md]\n"
          "       passkey sample [--length L] [--depth D] [--index I] [--seed S] [--filler ..]\n");
  return 2;
}
