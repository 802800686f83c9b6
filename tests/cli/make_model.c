/*
 * make_model: writes a freshly initialised model for the command-line tests.
 *
 *   make_model OUT [SEED] [key=value ...]
 *
 * The configuration starts tiny (d_model 32, 2 layers, note window 4, 4
 * notes per layer, cross-layer reads in layer 1) so that every test runs in
 * a fraction of a second; key=value pairs change single fields (the integer
 * and float fields of mm_model_config by name).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memmamba/memmamba.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: make_model OUT [SEED] [key=value ...]\n");
    return 2;
  }
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.d_model = 32;
  c.n_layer = 2;
  c.d_state = 4;
  c.note_window = 4;
  c.summary_dim = 16;
  c.pool_capacity = 4;
  c.attn_heads = 2;
  c.cross_layer_period = 2;
  c.cross_layer_span = 1;
  unsigned long long seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 7;
  for (int i = 3; i < argc; ++i) {
    char key[64];
    double v;
    if (sscanf(argv[i], "%63[^=]=%lf", key, &v) != 2) {
      fprintf(stderr, "make_model: bad setting '%s'\n", argv[i]);
      return 2;
    }
    if (!strcmp(key, "d_model")) c.d_model = (uint32_t)v;
    else if (!strcmp(key, "n_layer")) c.n_layer = (uint32_t)v;
    else if (!strcmp(key, "note_window")) c.note_window = (uint32_t)v;
    else if (!strcmp(key, "pool_capacity")) c.pool_capacity = (uint32_t)v;
    else if (!strcmp(key, "pool_policy")) c.pool_policy = (int32_t)v;
    else if (!strcmp(key, "note_threshold")) c.note_threshold = (float)v;
    else {
      fprintf(stderr, "make_model: unknown key '%s'\n", key);
      return 2;
    }
  }
  mm_model *model = NULL;
  mm_status st = mm_model_create(&model, &c, seed, NULL);
  if (st == MM_OK) st = mm_model_save(model, argv[1]);
  if (st != MM_OK) {
    fprintf(stderr, "make_model: %s (%s)\n", mm_status_string(st), mm_last_error());
    mm_model_free(model);
    return 1;
  }
  mm_model_free(model);
  return 0;
}
