/*
 * log_anomaly: finds the unusual lines of a log file. Every byte is a token
 * (vocab 256); the file streams through one session, and each byte costs
 * -log2 p(byte | all bytes before it) bits. A line that the model, having
 * read everything before it, finds hard to predict (many bits per byte) is
 * out of the ordinary: an error among routine requests, a new client, an
 * odd path.
 *
 *   log_anomaly MODEL LOGFILE [--top N] [--threads N]
 *
 * Prints the mean bits per byte of the whole log and its N most surprising
 * lines (default 10), then what the stream's memory holds at the end: the
 * lines its pools' notes summarise, highest note score first
 * (mm_session_pool_notes), found by a second read of the file. The first
 * byte of the file has no prediction and is not counted. A model trained on similar logs ranks far better than a fresh
 * one: `memmamba train --out log.safetensors ... access.log`.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memmamba/memmamba.h"

#define BLOCK 1024 /* bytes per feed */

typedef struct {
  double bits_per_byte;
  unsigned long long line_no;
  char text[100];
} ranked_line;

static int fail(const char *what, mm_status st) {
  fprintf(stderr, "log_anomaly: %s failed: %s (%s)\n", what, mm_status_string(st),
          mm_last_error());
  return 1;
}

/* -log2 softmax(row)[token]. */
static double surprisal_bits(const float *row, size_t vocab, int32_t token) {
  float max = row[0];
  for (size_t v = 1; v < vocab; ++v) max = row[v] > max ? row[v] : max;
  double sum = 0;
  for (size_t v = 0; v < vocab; ++v) sum += exp((double)(row[v] - max));
  return -((double)(row[token] - max) - log(sum)) / log(2.0);
}

/* One note of the session's pools at the end of the log. */
typedef struct {
  unsigned long long start; /* the byte its window starts at */
  float score;
  unsigned layer;
} kept_note;

static int by_score(const void *a, const void *b) {
  const kept_note *x = a, *y = b;
  return x->score < y->score ? 1 : x->score > y->score ? -1 : 0;
}

/* The notes of every layer's pool, highest score first; *n of them (a
 * malloc'd array, NULL on failure). */
static kept_note *memory_notes(const mm_session *s, const mm_model_config *cfg, size_t *n) {
  size_t cap = (size_t)cfg->n_layer * cfg->pool_capacity, got = 0;
  kept_note *notes = malloc((cap ? cap : 1) * sizeof *notes);
  int64_t *windows = malloc((cfg->pool_capacity + 1) * sizeof *windows);
  float *scores = malloc((cfg->pool_capacity + 1) * sizeof *scores);
  for (uint32_t l = 0; notes && windows && scores && l < cfg->n_layer; ++l) {
    size_t count = 0;
    if (mm_session_pool_notes(s, l, windows, scores, NULL, cfg->pool_capacity, &count) != MM_OK) {
      break;
    }
    for (size_t i = 0; i < count && i < cfg->pool_capacity && got < cap; ++i, ++got) {
      notes[got].start = (unsigned long long)windows[i] * cfg->note_window;
      notes[got].score = scores[i];
      notes[got].layer = l;
    }
  }
  free(scores);
  free(windows);
  if (notes) qsort(notes, got, sizeof *notes, by_score);
  *n = got;
  return notes;
}

/* Sets r's line number and its text: the line up to its end, printable
 * ASCII only, cut to fit. */
static void set_line(ranked_line *r, unsigned long long line_no, const char *line, size_t len) {
  r->line_no = line_no;
  size_t k = 0;
  for (size_t i = 0; i < len && k + 1 < sizeof r->text; ++i) {
    char c = line[i];
    if (c == '\n' || c == '\r') break;
    r->text[k++] = (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  r->text[k] = '\0';
}

/* Keeps top[0..*n) sorted by bits per byte, highest first, at most cap. */
static void offer(ranked_line *top, size_t *n, size_t cap, double bpb, unsigned long long line_no,
                  const char *line, size_t len) {
  size_t pos = *n;
  while (pos > 0 && top[pos - 1].bits_per_byte < bpb) --pos;
  if (pos >= cap) return;
  size_t last = *n < cap ? *n : cap - 1;
  memmove(&top[pos + 1], &top[pos], (last - pos) * sizeof *top);
  if (*n < cap) ++*n;
  top[pos].bits_per_byte = bpb;
  set_line(&top[pos], line_no, line, len);
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *log_path = NULL;
  size_t top_n = 10;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--top") && i + 1 < argc) top_n = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (argv[i][0] != '-' && !model_path) model_path = argv[i];
    else if (argv[i][0] != '-' && !log_path) log_path = argv[i];
    else model_path = NULL, i = argc;
  }
  if (!model_path || !log_path || top_n == 0) {
    fprintf(stderr, "usage: %s MODEL LOGFILE [--top N] [--threads N]\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(log_path, "rb");
  if (!f) {
    perror(log_path);
    return 1;
  }

  mm_model_options opts;
  mm_model_options_init(&opts, sizeof opts);
  opts.n_threads = threads;
  mm_model *model = NULL;
  mm_status st = mm_model_load(&model, model_path, &opts);
  if (st != MM_OK) {
    fclose(f);
    return fail("mm_model_load", st);
  }
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  mm_model_get_config(model, &cfg);
  const size_t vocab = cfg.vocab_size;
  if (vocab < 256) {
    fprintf(stderr, "log_anomaly: the model's vocabulary (%zu) is smaller than a byte\n", vocab);
    fclose(f);
    mm_model_free(model);
    return 1;
  }
  mm_session *session = NULL;
  st = mm_session_create(&session, model, NULL);
  float *logits = malloc(sizeof(float) * vocab * BLOCK); /* row i: after byte i of a block */
  float *prev = malloc(sizeof(float) * vocab);          /* after the last byte fed */
  ranked_line *top = calloc(top_n, sizeof *top);
  int rc = 0;
  if (st != MM_OK) rc = fail("mm_session_create", st);
  else if (!logits || !prev || !top) rc = fail("malloc", MM_ERR_OUT_OF_MEMORY);

  char *line = NULL;
  size_t cap = 0, kept = 0;
  ssize_t len;
  int have_prev = 0;
  unsigned long long line_no = 0, scored = 0;
  double total_bits = 0;
  int32_t tokens[BLOCK];
  while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
    ++line_no;
    double line_bits = 0;
    size_t line_scored = 0;
    for (size_t start = 0; start < (size_t)len && rc == 0; start += BLOCK) {
      size_t n = (size_t)len - start < BLOCK ? (size_t)len - start : BLOCK;
      for (size_t i = 0; i < n; ++i) tokens[i] = (unsigned char)line[start + i];
      st = mm_session_feed(session, tokens, n, MM_LOGITS_ALL, logits, vocab * BLOCK);
      if (st != MM_OK) {
        rc = fail("mm_session_feed", st);
        break;
      }
      for (size_t i = 0; i < n; ++i) {
        const float *row = i > 0 ? logits + (i - 1) * vocab : (have_prev ? prev : NULL);
        if (!row) continue;
        line_bits += surprisal_bits(row, vocab, tokens[i]);
        ++line_scored;
      }
      memcpy(prev, logits + (n - 1) * vocab, sizeof(float) * vocab);
      have_prev = 1;
    }
    if (line_scored > 0) {
      total_bits += line_bits;
      scored += line_scored;
      offer(top, &kept, top_n, line_bits / line_scored, line_no, line, (size_t)len);
    }
  }
  if (rc == 0 && ferror(f)) {
    perror(log_path);
    rc = 1;
  }
  if (rc == 0) {
    printf("%s: %llu lines, %llu bytes scored, %.4f bits/byte on average\n", log_path, line_no,
           scored, scored ? total_bits / scored : 0.0);
    printf("the %zu most surprising lines:\n", kept);
    for (size_t i = 0; i < kept; ++i) {
      printf("  %7.3f bits/byte  line %-7llu %s\n", top[i].bits_per_byte, top[i].line_no,
             top[i].text);
    }
  }
  if (rc == 0) {
    /* The lines the memory kept: one more read of the file finds the line
     * of each note's first byte (notes in position order), then up to top_n
     * distinct lines are shown by note score. */
    size_t n_notes = 0;
    kept_note *notes = memory_notes(session, &cfg, &n_notes);
    ranked_line *lines = calloc(n_notes ? n_notes : 1, sizeof *lines);
    size_t *order = malloc((n_notes ? n_notes : 1) * sizeof *order);
    if (!notes || !lines || !order) {
      rc = fail("malloc", MM_ERR_OUT_OF_MEMORY);
    } else {
      for (size_t k = 0; k < n_notes; ++k) order[k] = k;
      for (size_t k = 1; k < n_notes; ++k) { /* insertion sort by position */
        size_t v = order[k], j = k;
        for (; j > 0 && notes[order[j - 1]].start > notes[v].start; --j) order[j] = order[j - 1];
        order[j] = v;
      }
      rewind(f);
      unsigned long long at = 0, no = 0;
      size_t next = 0;
      while (next < n_notes && (len = getline(&line, &cap, f)) > 0) {
        ++no;
        at += (unsigned long long)len;
        for (; next < n_notes && notes[order[next]].start < at; ++next) {
          set_line(&lines[order[next]], no, line, (size_t)len);
        }
      }
      printf("what the memory holds at the end: %zu notes of %u-byte windows in %u layers; "
             "the lines they summarise, by note score:\n",
             n_notes, cfg.note_window, cfg.n_layer);
      size_t shown = 0;
      for (size_t k = 0; k < n_notes && shown < top_n; ++k) {
        int seen = lines[k].line_no == 0;  /* past the end: not found */
        for (size_t i = 0; i < k && !seen; ++i) seen = lines[i].line_no == lines[k].line_no;
        if (seen) continue;
        ++shown;
        printf("  score %.3f  layer %u  line %-7llu %s\n", notes[k].score, notes[k].layer,
               lines[k].line_no, lines[k].text);
      }
    }
    free(order);
    free(lines);
    free(notes);
  }
  free(line);
  free(top);
  free(prev);
  free(logits);
  fclose(f);
  mm_session_free(session);
  mm_model_free(model);
  return rc;
}
