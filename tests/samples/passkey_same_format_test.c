/*
 * The passkey samples of samples/c/passkey.c are byte for byte those of the
 * CLI's `memmamba eval --passkey` (src/cli/passkey.h): same seeds, same
 * draws, same filler handling, for random and Jane Austen filler.
 *
 *   passkey_same_format_test PASSKEY_PROGRAM
 *
 * Prints "N passed, N failed".
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passkey.h"
#include "text_source.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PASSKEY_PROGRAM\n", argv[0]);
    return 2;
  }
  int passed = 0, failed = 0;
  unsigned char *austen = NULL;
  size_t austen_len = 0;
  char err[512];
  int have_austen = ts_load("janeausten", NULL, &austen, &austen_len, err, sizeof err) == 0;
  if (!have_austen) printf("skipped: Jane Austen filler (%s)\n", err);
  static const size_t lengths[] = {14, 100, 2048, 70000};
  static const double depths[] = {0.0, 0.25, 0.5, 0.75, 1.0, 0.1234567};
  for (int filler = 0; filler < 1 + have_austen; ++filler) {
    for (size_t l = 0; l < sizeof lengths / sizeof *lengths; ++l) {
      for (size_t d = 0; d < sizeof depths / sizeof *depths; ++d) {
        for (unsigned index = 0; index < 3; ++index) {
          size_t length = lengths[l];
          uint64_t seed = 7 + index;
          char cmd[1024];
          snprintf(cmd, sizeof cmd, "'%s' sample --length %zu --depth %.9g --index %u --seed %llu --filler %s",
                   argv[1], length, depths[d], index, (unsigned long long)seed,
                   filler ? "austen" : "random");
          FILE *p = popen(cmd, "r");
          unsigned char *got = malloc(length + 1);
          size_t n = p ? fread(got, 1, length + 1, p) : 0;
          int rc = p ? pclose(p) : -1;
          int32_t *want = malloc(length * sizeof *want);
          uint64_t rng = mm_passkey_sample_seed(seed, length, depths[d], index);
          mm_passkey_build(want, length, depths[d], filler ? austen : NULL, filler ? austen_len : 0,
                           &rng, NULL, NULL);
          int same = rc == 0 && n == length;
          for (size_t i = 0; same && i < length; ++i) same = got[i] == (unsigned char)want[i];
          if (same) {
            ++passed;
          } else {
            ++failed;
            fprintf(stderr, "FAILED: %s differs from mm_passkey_build\n", cmd);
          }
          free(want);
          free(got);
        }
      }
    }
  }
  free(austen);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
