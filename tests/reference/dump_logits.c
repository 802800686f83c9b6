/*
 * dump_logits DIR KEY=VALUE...: builds a small model through the C API,
 * saves it to DIR/model.safetensors, feeds random tokens and writes
 * DIR/tokens.i32 and DIR/logits.f32 (every position) for check_logits.py,
 * the independent reference. Keys: policy (PRIORITY|FIFO), window,
 * fusion (WEIGHTED|RESIDUAL|GATED), cross (period), span, capacity, T,
 * gate (threshold), seed, tie (0|1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memmamba/memmamba.h"

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

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR [key=value...]\n", argv[0]);
    return 2;
  }
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 48;
  c.d_model = 24;
  c.n_layer = 4;
  c.d_state = 8;
  c.summary_dim = 16;
  c.attn_heads = 4;
  c.note_window = 4;
  c.pool_capacity = 5;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  unsigned T = 300, seed = 11;
  for (int i = 2; i < argc; ++i) {
    char key[64];
    const char *eq = strchr(argv[i], '=');
    if (!eq || (size_t)(eq - argv[i]) >= sizeof key) return 2;
    memcpy(key, argv[i], eq - argv[i]);
    key[eq - argv[i]] = 0;
    const char *v = eq + 1;
    if (!strcmp(key, "policy")) c.pool_policy = !strcmp(v, "FIFO") ? MM_POOL_FIFO : MM_POOL_PRIORITY;
    else if (!strcmp(key, "window")) c.note_window = atoi(v);
    else if (!strcmp(key, "fusion"))
      c.fusion = !strcmp(v, "GATED") ? MM_FUSION_GATED : !strcmp(v, "RESIDUAL") ? MM_FUSION_RESIDUAL : MM_FUSION_WEIGHTED;
    else if (!strcmp(key, "cross")) c.cross_layer_period = atoi(v);
    else if (!strcmp(key, "span")) c.cross_layer_span = atoi(v);
    else if (!strcmp(key, "capacity")) c.pool_capacity = atoi(v);
    else if (!strcmp(key, "gate")) c.gate_threshold = (float)atof(v);
    else if (!strcmp(key, "tie")) c.tie_embeddings = atoi(v);
    else if (!strcmp(key, "T")) T = atoi(v);
    else if (!strcmp(key, "seed")) seed = atoi(v);
    else {
      fprintf(stderr, "unknown key %s\n", key);
      return 2;
    }
  }
  mm_model *model;
  mm_status st = mm_model_create(&model, &c, seed, NULL);
  if (st != MM_OK) {
    fprintf(stderr, "mm_model_create: %s\n", mm_last_error());
    return 1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
  if ((st = mm_model_save(model, path)) != MM_OK) {
    fprintf(stderr, "mm_model_save: %s\n", mm_last_error());
    return 1;
  }
  int32_t *tokens = malloc(T * sizeof *tokens);
  float *logits = malloc((size_t)T * c.vocab_size * sizeof *logits);
  srand(seed);
  for (unsigned i = 0; i < T; ++i) tokens[i] = rand() % c.vocab_size;
  mm_session *s;
  mm_session_create(&s, model, NULL);
  if ((st = mm_session_feed(s, tokens, T, MM_LOGITS_ALL, logits, (size_t)T * c.vocab_size)) != MM_OK) {
    fprintf(stderr, "mm_session_feed: %s\n", mm_last_error());
    return 1;
  }
  int rc = write_file(argv[1], "tokens.i32", tokens, T * sizeof *tokens) ||
           write_file(argv[1], "logits.f32", logits, (size_t)T * c.vocab_size * sizeof *logits);
  mm_session_free(s);
  mm_model_free(model);
  free(tokens);
  free(logits);
  return rc;
}
