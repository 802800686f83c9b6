/*
 * A program built against an installed memmamba, as a user builds it: it
 * creates a small model, feeds a few tokens and prints the argmax of the
 * next-token logits. Built twice by tests/packaging (CMake package, and
 * pkg-config); both builds must print the same line.
 */
#include <stdio.h>
#include <stdlib.h>

#include <memmamba/memmamba.h>

int main(void) {
  if (mm_abi_version() != MM_ABI_VERSION) {
    fprintf(stderr, "memmamba: header ABI %d, library ABI %u\n", MM_ABI_VERSION,
            (unsigned)mm_abi_version());
    return 1;
  }
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  cfg.d_model = 32;
  cfg.n_layer = 2;
  cfg.summary_dim = 16;
  cfg.note_window = 4;
  cfg.pool_capacity = 4;
  cfg.cross_layer_period = 2;
  cfg.cross_layer_span = 1;
  mm_model_options opts;
  mm_model_options_init(&opts, sizeof opts);
  opts.n_threads = 1;
  mm_model *model = NULL;
  mm_session *session = NULL;
  if (mm_model_create(&model, &cfg, 7, &opts) != MM_OK ||
      mm_session_create(&session, model, NULL) != MM_OK) {
    fprintf(stderr, "memmamba: %s\n", mm_last_error());
    mm_model_free(model);
    return 1;
  }
  const char *text = "installed memmamba works";
  int32_t tokens[64];
  size_t n = 0;
  for (; text[n] && n < 64; ++n) tokens[n] = (unsigned char)text[n];
  float *logits = malloc(sizeof(float) * cfg.vocab_size);
  mm_status st = logits ? mm_session_feed(session, tokens, n, MM_LOGITS_LAST, logits,
                                          cfg.vocab_size)
                        : MM_ERR_OUT_OF_MEMORY;
  if (st == MM_OK) {
    uint32_t best = 0;
    for (uint32_t v = 1; v < cfg.vocab_size; ++v)
      if (logits[v] > logits[best]) best = v;
    printf("memmamba %s: %zu tokens, argmax %u\n", mm_version_string(), n, (unsigned)best);
  } else {
    fprintf(stderr, "mm_session_feed: %s\n", mm_session_last_error(session));
  }
  free(logits);
  mm_session_free(session);
  mm_model_free(model);
  return st == MM_OK ? 0 : 1;
}
