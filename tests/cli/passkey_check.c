/*
 * passkey_check: tests of the passkey format (src/cli/passkey.h).
 *
 *   passkey_check                   the format's invariants; exit 0 when all hold
 *   passkey_check write L D I S     writes sample I of length L, depth D, seed S
 *                                   (random-letter filler) to stdout, for
 *                                   comparison with `passkey sample`
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passkey.h"

static int failures = 0;
#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (!(cond)) {                                        \
      fprintf(stderr, "passkey_check: %s: ", #cond);      \
      fprintf(stderr, __VA_ARGS__);                       \
      fputc('\n', stderr);                                \
      ++failures;                                         \
    }                                                     \
  } while (0)

static void check_sample(size_t length, double depth, const unsigned char *filler,
                         size_t filler_len, uint64_t index) {
  int32_t *t = malloc(sizeof(int32_t) * length), *again = malloc(sizeof(int32_t) * length);
  char key[6];
  size_t query = 0;
  uint64_t rng = mm_passkey_sample_seed(11, length, depth, index);
  CHECK(mm_passkey_build(t, length, depth, filler, filler_len, &rng, key, &query) == 0, "build");
  CHECK(query == length - 6, "query at %zu of %zu", query, length);
  CHECK(t[query] == MM_PASSKEY_QUERY, "query token %d", t[query]);
  CHECK(strlen(key) == 5, "key '%s'", key);
  for (int d = 0; d < 5; ++d) {
    CHECK(key[d] >= '0' && key[d] <= '9', "digit %c", key[d]);
    CHECK(t[query + 1 + d] == key[d], "answer digit %d", d);
  }
  /* Exactly one key block, at p = floor(depth * F + 0.5) among the filler. */
  const size_t n_filler = length - 13;
  const size_t p = (size_t)(depth * (double)n_filler + 0.5);
  size_t opens = 0, at = 0;
  for (size_t i = 0; i < query; ++i) {
    if (t[i] == MM_PASSKEY_KEY_OPEN) ++opens, at = i;
    CHECK(t[i] != MM_PASSKEY_QUERY, "query token inside the sample at %zu", i);
  }
  CHECK(opens == 1, "%zu key blocks", opens);
  CHECK(at == p, "key block at %zu, expected %zu (depth %g)", at, p, depth);
  for (int d = 0; d < 5; ++d) CHECK(t[at + 1 + d] == key[d], "key digit %d", d);
  CHECK(t[at + 6] == MM_PASSKEY_KEY_CLOSE, "close marker");
  for (size_t i = 0; i < query; ++i) {
    if (i >= at && i <= at + 6) continue;
    CHECK(t[i] > MM_PASSKEY_QUERY && t[i] < 256, "filler byte %d at %zu", t[i], i);
    if (!filler) CHECK(t[i] >= 'a' && t[i] <= 'z', "random filler byte %d", t[i]);
  }
  /* The same seed builds the same sample. */
  rng = mm_passkey_sample_seed(11, length, depth, index);
  mm_passkey_build(again, length, depth, filler, filler_len, &rng, NULL, NULL);
  CHECK(memcmp(t, again, sizeof(int32_t) * length) == 0, "not reproducible");
  free(t);
  free(again);
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "write")) {
    const size_t length = strtoul(argv[2], NULL, 10);
    const double depth = atof(argv[3]);
    uint64_t rng = mm_passkey_sample_seed(strtoull(argv[5], NULL, 10), length, depth,
                                          strtoull(argv[4], NULL, 10));
    int32_t *t = malloc(sizeof(int32_t) * length);
    if (!t || mm_passkey_build(t, length, depth, NULL, 0, &rng, NULL, NULL) != 0) return 1;
    for (size_t i = 0; i < length; ++i) putchar(t[i]);
    free(t);
    return 0;
  }
  /* Filler with marker bytes: they must become spaces. */
  const unsigned char filler[] = "a filler text\x01 with\x02 markers\x03 in it.";
  const double depths[] = {0, 0.25, 0.5, 0.75, 1};
  const size_t lengths[] = {MM_PASSKEY_MIN_LENGTH, 15, 64, 257};
  for (size_t l = 0; l < sizeof lengths / sizeof *lengths; ++l) {
    for (size_t d = 0; d < 5; ++d) {
      check_sample(lengths[l], depths[d], NULL, 0, d);
      check_sample(lengths[l], depths[d], filler, sizeof filler - 1, d);
    }
  }
  int32_t t[64];
  uint64_t rng = 1;
  CHECK(mm_passkey_build(t, MM_PASSKEY_MIN_LENGTH - 1, 0.5, NULL, 0, &rng, NULL, NULL) == -1,
        "a too short sample must be refused");
  /* Depth 0: the key first; depth 1: right before the query. */
  rng = 5;
  mm_passkey_build(t, 40, 0.0, NULL, 0, &rng, NULL, NULL);
  CHECK(t[0] == MM_PASSKEY_KEY_OPEN, "depth 0");
  rng = 5;
  mm_passkey_build(t, 40, 1.0, NULL, 0, &rng, NULL, NULL);
  CHECK(t[40 - 7] == MM_PASSKEY_KEY_CLOSE && t[40 - 13] == MM_PASSKEY_KEY_OPEN, "depth 1");
  /* Scoring: argmax ties go to the lowest id. */
  const float v[4] = {1, 3, 3, 2};
  CHECK(mm_passkey_argmax(v, 4) == 1, "argmax tie");
  if (failures == 0) printf("passkey format: all checks passed\n");
  return failures ? 1 : 0;
}
