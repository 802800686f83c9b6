/*
 * train_file: trains a small byte-level MemMamba (vocab 256) on a file, saves
 * it, and streams the file's held-out tail through it, reporting the loss in
 * bits per byte before and after training.
 *
 *   train_file SOURCE [--minutes M | --steps N] [--out MODEL] [--holdout 0.1]
 *                     [--batch B] [--seq T] [--seed S] [--lr 3e-3] [--threads N]
 *                     [--limit BYTES] [--eval-limit BYTES] [--fasta-sequence-only]
 *                     [--d-model D] [--layers L] [--d-state N] [--window W] [--capacity P]
 *
 * SOURCE is a file (plain or gzip: a genome, a log, any text) or
 * "janeausten" (Jane Austen's novels, from Debian's r-cran-janeaustenr); see
 * text_source.h. The first (1 - holdout) of it is for training, on random
 * windows of T bytes; the tail is never trained on and is streamed as one
 * stream from an empty state. The saved model streams further data with
 * samples/c/stream_file (--model MODEL).
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

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of this process, all threads: on a shared machine the wall
 * clock says little about what the work cost. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* splitmix64: the program's own seeded generator, the same on every platform. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int fail(const char *what, mm_status st, const char *detail) {
  fprintf(stderr, "train_file: %s failed: %s (%s)\n", what, mm_status_string(st),
          detail ? detail : mm_last_error());
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

static int parse_u32(const char *s, size_t lo, size_t hi, uint32_t *out) {
  size_t v;
  if (parse_size(s, &v) || v < lo || v > hi) return -1;
  *out = (uint32_t)v;
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: train_file SOURCE [--minutes M | --steps N] [--out MODEL] [--holdout 0.1]\n"
          "                  [--batch B] [--seq T] [--seed S] [--lr 3e-3] [--threads N]\n"
          "                  [--limit BYTES] [--eval-limit BYTES] [--fasta-sequence-only]\n"
          "                  [--d-model D] [--layers L] [--d-state N] [--window W] [--capacity P]\n"
          "SOURCE: a file (plain or .gz) or \"janeausten\"\n");
}

/* Held-out loss in bits per byte: the tail streamed as one stream. */
static int held_out_bits(const mm_model *model, const int32_t *tokens, size_t n, double *bits,
                         double *tokens_per_s) {
  mm_eval_result r;
  mm_eval_result_init(&r, sizeof r);
  double t0 = now_seconds();
  mm_status st = mm_eval_loss(model, tokens, n, 0, &r);
  if (st != MM_OK) return fail("mm_eval_loss", st, NULL);
  *tokens_per_s = n / (now_seconds() - t0);
  *bits = r.loss / log(2.0);
  return 0;
}

int main(int argc, char **argv) {
  const char *source = NULL, *out = "model.safetensors";
  double minutes = 1.5, holdout = 0.1, lr = 3e-3;
  size_t steps = 0, batch = 8, seq = 256, seed = 1, limit = 0, eval_limit = 65536, threads = 0;
  int fasta_only = 0;
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  /* Small enough to learn something in a minute or two on two cores. */
  cfg.d_model = 64;
  cfg.n_layer = 4;
  cfg.d_state = 8;
  cfg.note_window = 16;
  cfg.pool_capacity = 16;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    int ok = i + 1 < argc;
    if (!strcmp(a, "--fasta-sequence-only")) {
      fasta_only = 1;
      continue;
    }
    if (ok && !strcmp(a, "--minutes")) {
      ok = !parse_double(argv[++i], &minutes) && minutes > 0;
      steps = 0;
    } else if (ok && !strcmp(a, "--steps")) {
      ok = !parse_size(argv[++i], &steps) && steps > 0;
    } else if (ok && !strcmp(a, "--out")) out = argv[++i];
    else if (ok && !strcmp(a, "--holdout")) ok = !parse_double(argv[++i], &holdout) && holdout > 0 && holdout < 1;
    else if (ok && !strcmp(a, "--batch")) ok = !parse_size(argv[++i], &batch) && batch > 0 && batch <= 4096;
    else if (ok && !strcmp(a, "--seq")) ok = !parse_size(argv[++i], &seq) && seq >= 2 && seq <= (1u << 20);
    else if (ok && !strcmp(a, "--seed")) ok = !parse_size(argv[++i], &seed);
    else if (ok && !strcmp(a, "--lr")) ok = !parse_double(argv[++i], &lr) && lr > 0;
    else if (ok && !strcmp(a, "--threads")) ok = !parse_size(argv[++i], &threads) && threads <= 1024;
    else if (ok && !strcmp(a, "--limit")) ok = !parse_size(argv[++i], &limit);
    else if (ok && !strcmp(a, "--eval-limit")) ok = !parse_size(argv[++i], &eval_limit);
    else if (ok && !strcmp(a, "--d-model")) ok = !parse_u32(argv[++i], 1, 8192, &cfg.d_model);
    else if (ok && !strcmp(a, "--layers")) ok = !parse_u32(argv[++i], 1, 256, &cfg.n_layer);
    else if (ok && !strcmp(a, "--d-state")) ok = !parse_u32(argv[++i], 1, 256, &cfg.d_state);
    else if (ok && !strcmp(a, "--window")) ok = !parse_u32(argv[++i], 1, 65536, &cfg.note_window);
    else if (ok && !strcmp(a, "--capacity")) ok = !parse_u32(argv[++i], 0, 65536, &cfg.pool_capacity);
    else if (a[0] != '-' && !source) source = a;
    else ok = 0;
    if (!ok) {
      usage();
      return 2;
    }
  }
  if (!source) {
    usage();
    return 2;
  }

  /* The data: bytes are tokens. */
  ts_options to;
  ts_options_init(&to);
  to.fasta_sequence_only = fasta_only;
  to.max_bytes = limit;
  unsigned char *bytes;
  size_t n_bytes;
  char err[512];
  if (ts_load(source, &to, &bytes, &n_bytes, err, sizeof err)) {
    fprintf(stderr, "train_file: %s\n", err);
    return 1;
  }
  size_t n_held = (size_t)(n_bytes * holdout), n_train = n_bytes - n_held;
  if (n_train < seq + 1 || n_held < 2) {
    fprintf(stderr, "train_file: %s has %zu bytes: too few for --seq %zu and --holdout %g\n",
            source, n_bytes, seq, holdout);
    free(bytes);
    return 1;
  }
  int32_t *all = malloc(n_bytes * sizeof *all);
  int32_t *batch_tokens = malloc(batch * seq * sizeof *batch_tokens);
  if (!all || !batch_tokens) {
    fprintf(stderr, "train_file: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < n_bytes; ++i) all[i] = bytes[i];
  free(bytes);
  const int32_t *held = all + n_train;
  size_t n_eval = eval_limit && n_held > eval_limit ? eval_limit : n_held;
  printf("data: %s, %zu bytes: %zu for training, %zu held out (%zu of them streamed)\n", source,
         n_bytes, n_train, n_held, n_eval);

  mm_model_options mo;
  mm_model_options_init(&mo, sizeof mo);
  mo.n_threads = (int32_t)threads;
  mm_model *model = NULL;
  mm_status st = mm_model_create(&model, &cfg, seed, &mo);
  if (st != MM_OK) return fail("mm_model_create", st, NULL);
  mm_model_get_config(model, &cfg);
  printf("model: d_model=%u n_layer=%u note_window=%u pool_capacity=%u, %llu parameters\n",
         cfg.d_model, cfg.n_layer, cfg.note_window, cfg.pool_capacity,
         (unsigned long long)mm_model_parameter_count(model));
  double bits_before, speed;
  if (held_out_bits(model, held, n_eval, &bits_before, &speed)) return 1;
  printf("held-out loss before training: %.3f bits/byte (streamed at %.0f tokens/s)\n",
         bits_before, speed);

  mm_trainer_options topt;
  mm_trainer_options_init(&topt, sizeof topt);
  topt.learning_rate = (float)lr;
  topt.n_threads = (int32_t)threads;
  mm_trainer *trainer = NULL;
  st = mm_trainer_create(&trainer, model, &topt);
  mm_model_free(model);
  model = NULL;
  if (st != MM_OK) return fail("mm_trainer_create", st, NULL);

  /* Random windows of the training part; warm-up, then cosine decay to lr/10. */
  uint64_t rng = seed ^ 0x6461746173656564ull;
  const size_t warmup = 20;
  double budget = steps ? (double)steps : minutes * 60.0;
  double t0 = now_seconds(), cpu0 = cpu_seconds(), last = t0, loss_sum = 0.0;
  size_t step = 0, loss_n = 0, seen = 0;
  int rc = 0;
  printf("training: batch %zu x %zu bytes, lr %g, %s %.0f\n", batch, seq, lr,
         steps ? "steps" : "seconds", budget);
  for (;;) {
    double progress = (steps ? (double)step : now_seconds() - t0) / budget;
    if (progress >= 1.0) break;
    for (size_t b = 0; b < batch; ++b) {
      size_t start = (size_t)(next_random(&rng) % (n_train - seq + 1));
      memcpy(batch_tokens + b * seq, all + start, seq * sizeof *all);
    }
    double lr_now = step < warmup ? lr * (step + 1) / warmup
                                  : lr * (0.1 + 0.45 * (1 + cos(3.14159265358979323846 * progress)));
    mm_trainer_set_learning_rate(trainer, (float)lr_now);
    mm_train_result res;
    mm_train_result_init(&res, sizeof res);
    st = mm_train_step(trainer, batch_tokens, batch, seq, NULL, &res);
    if (st != MM_OK) {
      rc = fail("mm_train_step", st, mm_trainer_last_error(trainer));
      break;
    }
    ++step;
    seen += batch * seq;
    loss_sum += res.loss;
    ++loss_n;
    double now = now_seconds();
    if (now - last >= 5.0 || step == 1) {
      printf("step %5zu  loss %.3f bits/byte  lr %.2e  %.0f tokens/s  %.0f s\n", step,
             loss_sum / loss_n / log(2.0), lr_now, seen / (now - t0), now - t0);
      fflush(stdout);
      loss_sum = 0.0;
      loss_n = 0;
      last = now;
    }
  }
  double train_secs = now_seconds() - t0;
  if (!rc) {
    st = mm_trainer_export_model(trainer, &mo, &model);
    if (st == MM_OK) st = mm_model_save(model, out);
    if (st != MM_OK) {
      rc = fail("export and save", st, NULL);
    } else {
      double bits_after;
      printf("trained %zu steps (%zu tokens) in %.0f s (%.0f s of CPU); saved %s\n", step, seen,
             train_secs, cpu_seconds() - cpu0, out);
      if (held_out_bits(model, held, n_eval, &bits_after, &speed)) {
        rc = 1;
      } else {
        printf("held-out loss after training:  %.3f bits/byte (before: %.3f; streamed at %.0f "
               "tokens/s)\n", bits_after, bits_before, speed);
        printf("stream more with: stream_file FILE --model %s\n", out);
      }
    }
    mm_model_free(model);
  }
  mm_trainer_free(trainer);
  free(batch_tokens);
  free(all);
  return rc;
}
