/* Compiled as strict C99 (-std=c99 -pedantic -Werror): the public header is
 * plain C. Also checks, at run time, the calls a C user starts with. */
#include <stdio.h>
#include <stdlib.h>

#include "memmamba/memmamba.h"

#define CHECK(cond)                                               \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                   \
    }                                                             \
  } while (0)

int main(void) {
  mm_model_config cfg;
  mm_model *model = NULL;
  mm_session *s = NULL;
  int32_t toks[3] = {1, 2, 3};
  float *logits;

  CHECK(mm_version() == MM_VERSION_NUMBER);
  CHECK(mm_abi_version() == MM_ABI_VERSION);
  CHECK(mm_status_string(MM_ERR_IO) != NULL);
  CHECK(mm_status_string(12345) != NULL);
  mm_free(NULL);
  mm_model_free(NULL);
  mm_session_free(NULL);

  CHECK(mm_model_config_init(&cfg, sizeof cfg) == MM_OK);
  cfg.d_model = 32;
  cfg.n_layer = 2;
  cfg.summary_dim = 16;
  CHECK(mm_model_create(&model, &cfg, 1, NULL) == MM_OK);
  CHECK(mm_session_create(&s, model, NULL) == MM_OK);
  logits = (float *)malloc(sizeof(float) * cfg.vocab_size);
  CHECK(mm_session_feed(s, toks, 3, MM_LOGITS_LAST, logits, cfg.vocab_size) == MM_OK);
  CHECK(mm_session_position(s) == 3);
  toks[0] = -1;
  CHECK(mm_session_feed(s, toks, 1, MM_LOGITS_NONE, NULL, 0) == MM_ERR_TOKEN_OUT_OF_RANGE);
  CHECK(mm_last_error()[0] != '\0');
  CHECK(mm_session_last_error(s)[0] != '\0');
  CHECK(mm_session_position(s) == 3);
  free(logits);
  mm_session_free(s);
  mm_model_free(model);
  printf("abi_c99: ok\n");
  return 0;
}
