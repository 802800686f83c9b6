/*
 * stream_file: streams a file byte by byte (a byte is a token, vocab 256)
 * through a MemMamba model and reports throughput, the stream's state size
 * and the mean surprisal (bits per byte) of the model's predictions.
 *
 *   stream_file FILE [--model PATH] [--chunk N] [--threads N] [--limit BYTES]
 *
 * Without --model it uses a freshly initialised model of the default
 * configuration (seed 42).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memmamba/memmamba.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fail(const char *what, mm_status st) {
  fprintf(stderr, "stream_file: %s failed: %s (%s)\n", what, mm_status_string(st),
          mm_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *path = NULL, *model_path = NULL;
  size_t chunk = 512, limit = (size_t)-1;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = strtoul(argv[++i], NULL, 10);
    else if (argv[i][0] != '-' && !path) path = argv[i];
    else {
      fprintf(stderr, "usage: %s FILE [--model PATH] [--chunk N] [--threads N] [--limit BYTES]\n", argv[0]);
      return 2;
    }
  }
  if (!path || chunk == 0) {
    fprintf(stderr, "usage: %s FILE [--model PATH] [--chunk N] [--threads N] [--limit BYTES]\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }

  mm_model_options opts;
  mm_model_options_init(&opts, sizeof opts);
  opts.n_threads = threads;
  mm_model *model = NULL;
  mm_status st = model_path ? mm_model_load(&model, model_path, &opts)
                            : mm_model_create(&model, NULL, 42, &opts);
  if (st != MM_OK) return fail(model_path ? "mm_model_load" : "mm_model_create", st);
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  mm_model_get_config(model, &cfg);
  if (cfg.vocab_size < 256) {
    fprintf(stderr, "stream_file: the model's vocabulary (%u) is smaller than a byte\n", cfg.vocab_size);
    return 1;
  }
  mm_session *session = NULL;
  if ((st = mm_session_create(&session, model, NULL)) != MM_OK) return fail("mm_session_create", st);

  int32_t *tokens = malloc(chunk * sizeof *tokens);
  float *logits = malloc(chunk * cfg.vocab_size * sizeof *logits);
  unsigned char *bytes = malloc(chunk);
  if (!tokens || !logits || !bytes) {
    fprintf(stderr, "stream_file: out of memory\n");
    return 1;
  }
  double bits = 0.0, t0 = now_seconds();
  size_t total = 0, scored = 0, n;
  int have_prev = 0;
  float *prev = malloc(cfg.vocab_size * sizeof *prev);
  while (total < limit && (n = fread(bytes, 1, chunk < limit - total ? chunk : limit - total, f)) > 0) {
    for (size_t i = 0; i < n; ++i) tokens[i] = bytes[i];
    if ((st = mm_session_feed(session, tokens, n, MM_LOGITS_ALL, logits, n * cfg.vocab_size)) != MM_OK)
      return fail("mm_session_feed", st);
    /* Surprisal of each byte under the prediction made before it. */
    for (size_t i = 0; i < n; ++i) {
      const float *p = i == 0 ? (have_prev ? prev : NULL) : logits + (i - 1) * cfg.vocab_size;
      if (!p) continue;
      float mx = p[0];
      for (uint32_t v = 1; v < cfg.vocab_size; ++v) mx = p[v] > mx ? p[v] : mx;
      double sum = 0.0;
      for (uint32_t v = 0; v < cfg.vocab_size; ++v) sum += exp((double)p[v] - mx);
      bits += (log(sum) - ((double)p[tokens[i]] - mx)) / log(2.0);
      ++scored;
    }
    memcpy(prev, logits + (n - 1) * cfg.vocab_size, cfg.vocab_size * sizeof *prev);
    have_prev = 1;
    total += n;
  }
  double secs = now_seconds() - t0;
  printf("streamed %zu tokens from %s in %.2f s: %.0f tokens/s\n", total, path, secs, total / secs);
  printf("model: d_model=%u n_layer=%u note_window=%u pool_capacity=%u, %llu parameters\n",
         cfg.d_model, cfg.n_layer, cfg.note_window, cfg.pool_capacity,
         (unsigned long long)mm_model_parameter_count(model));
  printf("state: %llu bytes (constant in stream length); notes in layer 0 pool: %d\n",
         (unsigned long long)mm_session_state_bytes(session), mm_session_pool_size(session, 0));
  printf("mean surprisal: %.3f bits/byte\n", scored ? bits / scored : 0.0);
  free(prev);
  free(bytes);
  free(logits);
  free(tokens);
  fclose(f);
  mm_session_free(session);
  mm_model_free(model);
  return 0;
}
