/*
 * passkey.h — the passkey retrieval task (DESIGN 7) over byte tokens, as the
 * `memmamba eval --passkey` command runs it. Header-only C99 (also C++), so
 * that programs and tests build exactly the same samples.
 *
 * The format (a byte is a token):
 *
 *   filler[0 .. p)  0x01 d1 d2 d3 d4 d5 0x02  filler[p .. F)  0x03 d1 d2 d3 d4 d5
 *
 *   - `length` tokens in all; F = length - 13 filler bytes (length >= 14).
 *   - The key is 5 random decimal digits ('0'..'9' as bytes 48..57).
 *   - The key block (0x01, the 5 digits, 0x02) is inserted at depth d, a
 *     fraction of the filler: p = floor(d * F + 0.5), so d = 0 puts it first
 *     and d = 1 right before the query.
 *   - Filler: F consecutive bytes of a filler text, starting at a random
 *     offset and wrapping around at its end; bytes 0x01..0x03 of the text
 *     become spaces so the markers stay unambiguous. Without a filler text,
 *     F random lowercase letters.
 *   - The sequence ends with the query 0x03 followed by the 5 key digits.
 *
 * Scoring: feed everything up to and including the 0x03; the sample is
 * correct iff greedy argmax decoding reproduces all 5 digits, each digit
 * predicted after the true previous digits have been fed (teacher forcing):
 * argmax(logits) == d1, feed d1, argmax == d2, ..., argmax == d5. Ties go
 * to the lowest token id.
 *
 * Randomness: splitmix64. The generator of sample number `index` (0, 1, ...)
 * of a (length, depth) cell starts from
 * mm_passkey_sample_seed(seed, length, depth, index), so every sample can be
 * rebuilt on its own, on any machine; it draws, in this order: the 5 digits
 * (each next() % 10), then the filler offset (next() % filler_len) or the F
 * letters (each next() % 26). samples/c/passkey.c builds the same samples.
 */
#ifndef MEMMAMBA_CLI_PASSKEY_H_
#define MEMMAMBA_CLI_PASSKEY_H_

#include <stddef.h>
#include <stdint.h>

#include "memmamba/memmamba.h"

#define MM_PASSKEY_DIGITS 5
#define MM_PASSKEY_KEY_OPEN 0x01
#define MM_PASSKEY_KEY_CLOSE 0x02
#define MM_PASSKEY_QUERY 0x03
/* 0x01 + 5 digits + 0x02 + 0x03 + 5 digits, plus at least one filler byte. */
#define MM_PASSKEY_OVERHEAD (2 * MM_PASSKEY_DIGITS + 3)
#define MM_PASSKEY_MIN_LENGTH (MM_PASSKEY_OVERHEAD + 1)

/* The next value of a splitmix64 stream; advances *state. */
static inline uint64_t mm_passkey_rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The generator state of sample `index` of the cell (length, depth) for a
 * run seeded with `seed`. */
static inline uint64_t mm_passkey_sample_seed(uint64_t seed, uint64_t length, double depth,
                                              uint64_t index) {
  const uint64_t values[4] = {seed, length, (uint64_t)(depth * 1e6 + 0.5), index};
  uint64_t h = 0x70617373u; /* "pass" */
  for (int i = 0; i < 4; ++i) {
    uint64_t state = h ^ (values[i] * 0xff51afd7ed558ccdull);
    h = mm_passkey_rng_next(&state);
  }
  return h;
}

/* Builds one sample of `length` tokens into tokens[0 .. length) with the key
 * at `depth` (clamped to [0, 1]). `filler` may be NULL or empty (random
 * letters). On success writes the key's digits as text into key[0..5] plus
 * a terminating NUL (key may be NULL), sets *query_pos (may be NULL) to the
 * index of the 0x03 token (always length - 6) and returns 0; returns -1 when
 * tokens or rng is NULL or length < MM_PASSKEY_MIN_LENGTH. *rng is the
 * generator state (mm_passkey_sample_seed), advanced by the draws. */
static inline int mm_passkey_build(int32_t *tokens, size_t length, double depth,
                                   const unsigned char *filler, size_t filler_len,
                                   uint64_t *rng, char key[MM_PASSKEY_DIGITS + 1],
                                   size_t *query_pos) {
  if (tokens == NULL || rng == NULL || length < MM_PASSKEY_MIN_LENGTH) return -1;
  if (!(depth >= 0.0)) depth = 0.0; /* also NaN */
  if (depth > 1.0) depth = 1.0;
  const size_t n_filler = length - MM_PASSKEY_OVERHEAD;
  int32_t digits[MM_PASSKEY_DIGITS];
  for (int i = 0; i < MM_PASSKEY_DIGITS; ++i) {
    digits[i] = '0' + (int32_t)(mm_passkey_rng_next(rng) % 10u);
    if (key != NULL) key[i] = (char)digits[i];
  }
  if (key != NULL) key[MM_PASSKEY_DIGITS] = '\0';
  size_t insert_at = (size_t)(depth * (double)n_filler + 0.5);
  if (insert_at > n_filler) insert_at = n_filler;
  size_t offset = 0;
  if (filler != NULL && filler_len > 0) offset = (size_t)(mm_passkey_rng_next(rng) % filler_len);
  size_t out = 0;
  for (size_t i = 0; i < n_filler; ++i) {
    if (i == insert_at) {
      tokens[out++] = MM_PASSKEY_KEY_OPEN;
      for (int d = 0; d < MM_PASSKEY_DIGITS; ++d) tokens[out++] = digits[d];
      tokens[out++] = MM_PASSKEY_KEY_CLOSE;
    }
    int32_t byte;
    if (filler != NULL && filler_len > 0) {
      byte = filler[(offset + i) % filler_len];
      if (byte >= MM_PASSKEY_KEY_OPEN && byte <= MM_PASSKEY_QUERY) byte = ' ';
    } else {
      byte = 'a' + (int32_t)(mm_passkey_rng_next(rng) % 26u);
    }
    tokens[out++] = byte;
  }
  if (insert_at == n_filler) {
    tokens[out++] = MM_PASSKEY_KEY_OPEN;
    for (int d = 0; d < MM_PASSKEY_DIGITS; ++d) tokens[out++] = digits[d];
    tokens[out++] = MM_PASSKEY_KEY_CLOSE;
  }
  if (query_pos != NULL) *query_pos = out;
  tokens[out++] = MM_PASSKEY_QUERY;
  for (int d = 0; d < MM_PASSKEY_DIGITS; ++d) tokens[out++] = digits[d];
  return 0;
}

/* The index of the largest of n values; ties go to the lowest index. */
static inline size_t mm_passkey_argmax(const float *v, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

/* Scores one sample built by mm_passkey_build on `session` (reset first, so
 * the sample is read from an empty state). `logits` is caller scratch of
 * `vocab_size` floats. Sets *correct to 1 when all 5 digits are decoded, else
 * 0, and *digits_correct (may be NULL) to how many of the 5 argmax
 * predictions matched. Returns MM_OK or the failing call's status. */
static inline mm_status mm_passkey_score(mm_session *session, const int32_t *tokens,
                                         size_t length, float *logits, size_t vocab_size,
                                         int *correct, int *digits_correct) {
  if (session == NULL || tokens == NULL || logits == NULL || correct == NULL ||
      length < MM_PASSKEY_MIN_LENGTH) {
    return MM_ERR_INVALID_ARGUMENT;
  }
  const size_t query_pos = length - MM_PASSKEY_DIGITS - 1;
  mm_status st = mm_session_reset(session);
  if (st != MM_OK) return st;
  st = mm_session_feed(session, tokens, query_pos + 1, MM_LOGITS_LAST, logits, vocab_size);
  if (st != MM_OK) return st;
  int matched = 0;
  for (int d = 0; d < MM_PASSKEY_DIGITS; ++d) {
    const int32_t truth = tokens[query_pos + 1 + (size_t)d];
    if ((int32_t)mm_passkey_argmax(logits, vocab_size) == truth) ++matched;
    if (d + 1 < MM_PASSKEY_DIGITS) {
      st = mm_session_feed(session, &truth, 1, MM_LOGITS_LAST, logits, vocab_size);
      if (st != MM_OK) return st;
    }
  }
  *correct = matched == MM_PASSKEY_DIGITS;
  if (digits_correct != NULL) *digits_correct = matched;
  return MM_OK;
}

#endif /* MEMMAMBA_CLI_PASSKEY_H_ */
