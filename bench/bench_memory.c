/*
 * bench_memory [TOKENS]: streams TOKENS (default 1,000,000) pseudo-random
 * byte tokens through one session of the default configuration and prints
 * the resident memory (VmRSS) and the session's state size after 1k tokens
 * and at the end. The target: RSS after 1M tokens within 1 MiB of RSS after 1k.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memmamba/memmamba.h"

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, "VmRSS:", 6)) kib = strtol(line + 6, NULL, 10);
  }
  if (f) fclose(f);
  return kib;
}

int main(int argc, char **argv) {
  const long total = argc > 1 ? atol(argv[1]) : 1000000;
  mm_model *model;
  mm_session *s;
  if (mm_model_create(&model, NULL, 1, NULL) != MM_OK || mm_session_create(&s, model, NULL) != MM_OK) {
    fprintf(stderr, "bench_memory: %s\n", mm_last_error());
    return 1;
  }
  enum { kChunk = 1000 };
  int32_t tokens[kChunk];
  unsigned x = 12345;
  long done = 0, rss_1k = 0;
  uint64_t state_1k = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (done < total) {
    for (int i = 0; i < kChunk; ++i) {
      x = x * 1103515245u + 12345u;
      tokens[i] = (x >> 16) & 255;
    }
    if (mm_session_feed(s, tokens, kChunk, MM_LOGITS_NONE, NULL, 0) != MM_OK) {
      fprintf(stderr, "bench_memory: %s\n", mm_last_error());
      return 1;
    }
    done += kChunk;
    if (done == kChunk) {
      rss_1k = rss_kib();
      state_1k = mm_session_state_bytes(s);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
  const long rss_end = rss_kib();
  printf("tokens=%ld seconds=%.1f tokens_per_s=%.0f\n", done, secs, done / secs);
  printf("rss_kib_after_1k=%ld rss_kib_after_all=%ld delta_kib=%ld\n", rss_1k, rss_end, rss_end - rss_1k);
  printf("state_bytes_after_1k=%llu state_bytes_after_all=%llu\n", (unsigned long long)state_1k,
         (unsigned long long)mm_session_state_bytes(s));
  mm_session_free(s);
  mm_model_free(model);
  return 0;
}
