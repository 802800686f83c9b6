/*
 * agreement_fixture DIR: what the Rust and Go bindings must reproduce bit
 * for bit. Writes into DIR:
 *   model.safetensors   a small model with memory
 *   tokens.i32          T token ids (int32, little-endian)
 *   logits.f32          the logits of every position, one feed of all T
 *                       tokens (T x vocab float32)
 *   snapshot.mmsnap     the stream after the first T/2 tokens
 *   resumed.f32         the logits of a session restored from snapshot.mmsnap
 *                       fed the last T - T/2 tokens in one call
 *   struct_sizes.txt    "name size" per options/result struct of the header
 * Every model here runs with n_threads = 1; the bindings load it so too.
 */
#include <stdio.h>
#include <stdlib.h>

#include "memmamba/memmamba.h"

enum { kT = 200 };

static int write_file(const char *dir, const char *name, const void *data, size_t bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, bytes, f) != bytes || fclose(f) != 0) {
    perror(path);
    return 1;
  }
  return 0;
}

static int fail(const char *what, const char *message) {
  fprintf(stderr, "agreement_fixture: %s: %s\n", what, message);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.d_model = 32;
  c.n_layer = 4;
  c.d_state = 8;
  c.summary_dim = 16;
  c.note_window = 4;
  c.pool_capacity = 5;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  mm_model_options o;
  mm_model_options_init(&o, sizeof o);
  o.n_threads = 1;

  mm_model *model;
  if (mm_model_create(&model, &c, 2024, &o) != MM_OK) return fail("mm_model_create", mm_last_error());
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (mm_model_save(model, path) != MM_OK) return fail("mm_model_save", mm_last_error());
  mm_model_free(model);
  /* The bindings start from the file: so does the reference. */
  if (mm_model_load(&model, path, &o) != MM_OK) return fail("mm_model_load", mm_last_error());

  static int32_t tokens[kT];
  unsigned x = 12345;
  for (int i = 0; i < kT; ++i) {
    x = x * 1103515245u + 12345u;
    tokens[i] = (int32_t)((x >> 16) % c.vocab_size);
  }
  const size_t V = c.vocab_size;
  float *logits = malloc(sizeof(float) * kT * V);
  if (!logits) return fail("malloc", "out of memory");

  mm_session *s;
  if (mm_session_create(&s, model, NULL) != MM_OK) return fail("mm_session_create", mm_last_error());
  if (mm_session_feed(s, tokens, kT, MM_LOGITS_ALL, logits, kT * V) != MM_OK)
    return fail("mm_session_feed", mm_session_last_error(s));
  if (write_file(dir, "tokens.i32", tokens, sizeof tokens) ||
      write_file(dir, "logits.f32", logits, sizeof(float) * kT * V))
    return 1;

  const int half = kT / 2;
  mm_session_reset(s);
  if (mm_session_feed(s, tokens, half, MM_LOGITS_NONE, NULL, 0) != MM_OK)
    return fail("mm_session_feed", mm_session_last_error(s));
  snprintf(path, sizeof path, "%s/snapshot.mmsnap", dir);
  if (mm_session_snapshot_file(s, path) != MM_OK)
    return fail("mm_session_snapshot_file", mm_session_last_error(s));
  mm_session *r;
  if (mm_session_create(&r, model, NULL) != MM_OK) return fail("mm_session_create", mm_last_error());
  if (mm_session_restore_file(r, path) != MM_OK)
    return fail("mm_session_restore_file", mm_session_last_error(r));
  if (mm_session_feed(r, tokens + half, kT - half, MM_LOGITS_ALL, logits, kT * V) != MM_OK)
    return fail("mm_session_feed", mm_session_last_error(r));
  if (write_file(dir, "resumed.f32", logits, sizeof(float) * (kT - half) * V)) return 1;

  snprintf(path, sizeof path, "%s/struct_sizes.txt", dir);
  FILE *f = fopen(path, "w");
  if (!f) return fail(path, "cannot write");
  fprintf(f, "mm_model_config %zu\n", sizeof(mm_model_config));
  fprintf(f, "mm_model_options %zu\n", sizeof(mm_model_options));
  fprintf(f, "mm_session_options %zu\n", sizeof(mm_session_options));
  fprintf(f, "mm_snapshot_info %zu\n", sizeof(mm_snapshot_info));
  fprintf(f, "mm_trainer_options %zu\n", sizeof(mm_trainer_options));
  fprintf(f, "mm_train_result %zu\n", sizeof(mm_train_result));
  fprintf(f, "mm_eval_result %zu\n", sizeof(mm_eval_result));
  fprintf(f, "mm_fidelity %zu\n", sizeof(mm_fidelity));
  fprintf(f, "mm_sample_options %zu\n", sizeof(mm_sample_options));
  fprintf(f, "mm_train_batch %zu\n", sizeof(mm_train_batch));
  if (fclose(f) != 0) return fail(path, "cannot write");

  mm_session_free(r);
  mm_session_free(s);
  mm_model_free(model);
  free(logits);
  printf("agreement_fixture: wrote %s (%d tokens, vocab %zu)\n", dir, kT, V);
  return 0;
}
