/*
 * genome_contigs: streams a FASTA genome one contig at a time, keeps each
 * contig's memory on disk, and shows that a stream restored from disk goes
 * on exactly as the one that never stopped.
 *
 *   genome_contigs MODEL FASTA OUTDIR [--limit N] [--probe N] [--threads N]
 *
 * Every '>' record (a contig or chromosome) is its own stream: a fresh
 * session reads its bases (a base is a byte token; line breaks are not
 * tokens) and, at the record's end, writes its snapshot to
 * OUTDIR/NNN_<name>.mmsnap with mm_session_snapshot_file (atomically).
 *
 * Then the check: a new session restores the last contig's snapshot from
 * the file, and both it and the last contig's original session, still in
 * memory, are fed the same next bytes (the first --probe bases of the
 * genome, default 256). Their logits must be identical, bit for bit: that is
 * what a snapshot promises on the same machine and build. Exit status 0 when
 * they are.
 *
 * --limit N streams at most N bases per contig (quick runs).
 *
 *   genome_contigs model.safetensors /usr/share/htslib-test/test/ce.fa contigs --limit 2000
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memmamba/memmamba.h"

#define CHUNK 1024 /* bases per feed */

typedef struct {
  const mm_model *model;
  mm_session *session; /* the current contig's stream */
  int32_t chunk[CHUNK];
  size_t pending;
  size_t limit, in_contig;
  unsigned contigs;
  uint32_t n_layer, capacity;
  const char *outdir;
  char last_snapshot[4096];
  int32_t *probe; /* the genome's first bases */
  size_t probe_len, probe_cap;
} genome;

static int fail(const char *what, mm_status st) {
  fprintf(stderr, "genome_contigs: %s failed: %s (%s)\n", what, mm_status_string(st),
          mm_last_error());
  return 1;
}

static int flush_chunk(genome *g) {
  if (g->pending == 0) return 0;
  mm_status st = mm_session_feed(g->session, g->chunk, g->pending, MM_LOGITS_NONE, NULL, 0);
  g->pending = 0;
  return st == MM_OK ? 0 : fail("mm_session_feed", st);
}

static int add_base(genome *g, unsigned char base) {
  if (g->limit && g->in_contig >= g->limit) return 0;
  if (g->in_contig == 0) { /* a contig's first base: its own fresh stream */
    mm_session_free(g->session);
    g->session = NULL;
    mm_status st = mm_session_create(&g->session, g->model, NULL);
    if (st != MM_OK) return fail("mm_session_create", st);
  }
  ++g->in_contig;
  if (g->probe_len < g->probe_cap) g->probe[g->probe_len++] = base;
  if (g->pending == CHUNK && flush_chunk(g)) return 1;
  g->chunk[g->pending++] = base;
  return 0;
}

/* Ends a contig: writes its snapshot. The session is kept (for the check)
 * until the next contig's first base. */
static int end_contig(genome *g, const char *name) {
  if (g->in_contig == 0) return 0;
  if (flush_chunk(g)) return 1;
  ++g->contigs;
  char safe[48];
  size_t n = 0;
  for (const char *p = name; *p && n + 1 < sizeof safe; ++p) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '.';
    safe[n++] = ok ? c : '_';
  }
  safe[n] = '\0';
  snprintf(g->last_snapshot, sizeof g->last_snapshot, "%s/%03u_%s.mmsnap", g->outdir, g->contigs,
           n ? safe : "contig");
  mm_status st = mm_session_snapshot_file(g->session, g->last_snapshot);
  if (st != MM_OK) return fail("mm_session_snapshot_file", st);
  uint32_t notes = 0;
  for (uint32_t l = 0; l < g->n_layer; ++l) notes += (uint32_t)mm_session_pool_size(g->session, l);
  printf("contig %u %s: %zu bases, notes %u/%u, state %llu bytes -> %s\n", g->contigs, name,
         g->in_contig, notes, g->n_layer * g->capacity,
         (unsigned long long)mm_session_state_bytes(g->session), g->last_snapshot);
  fflush(stdout);
  g->in_contig = 0;
  return 0;
}

/* Feeds the probe to the last contig's live session and to a session
 * restored from its snapshot file; compares the logits. */
static int check_restore(genome *g, size_t vocab) {
  if (!g->session || g->probe_len == 0) {
    fprintf(stderr, "genome_contigs: no contig with bases in the file\n");
    return 1;
  }
  mm_session *restored = NULL;
  mm_status st = mm_session_create(&restored, g->model, NULL);
  if (st != MM_OK) return fail("mm_session_create", st);
  st = mm_session_restore_file(restored, g->last_snapshot);
  if (st != MM_OK) {
    mm_session_free(restored);
    return fail("mm_session_restore_file", st);
  }
  const size_t n = g->probe_len;
  float *a = malloc(sizeof(float) * n * vocab), *b = malloc(sizeof(float) * n * vocab);
  int rc = 0;
  if (!a || !b) rc = fail("malloc", MM_ERR_OUT_OF_MEMORY);
  if (rc == 0 && (st = mm_session_feed(g->session, g->probe, n, MM_LOGITS_ALL, a, n * vocab)))
    rc = fail("mm_session_feed (uninterrupted)", st);
  if (rc == 0 && (st = mm_session_feed(restored, g->probe, n, MM_LOGITS_ALL, b, n * vocab)))
    rc = fail("mm_session_feed (restored)", st);
  if (rc == 0) {
    double max_diff = 0;
    for (size_t i = 0; i < n * vocab; ++i) {
      double d = fabs((double)a[i] - (double)b[i]);
      if (d > max_diff) max_diff = d;
    }
    const int identical = memcmp(a, b, sizeof(float) * n * vocab) == 0;
    printf("restored %s (position %llu) and fed the next %zu bytes: logits %s "
           "the uninterrupted stream's (max |difference| %g)\n",
           g->last_snapshot, (unsigned long long)(mm_session_position(restored) - n), n,
           identical ? "identical, bit for bit, to" : "DIFFER from", max_diff);
    rc = identical ? 0 : 1;
  }
  free(a);
  free(b);
  mm_session_free(restored);
  return rc;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *fasta_path = NULL;
  genome g;
  memset(&g, 0, sizeof g);
  g.probe_cap = 256;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--limit") && i + 1 < argc) g.limit = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--probe") && i + 1 < argc) g.probe_cap = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (argv[i][0] != '-' && !model_path) model_path = argv[i];
    else if (argv[i][0] != '-' && !fasta_path) fasta_path = argv[i];
    else if (argv[i][0] != '-' && !g.outdir) g.outdir = argv[i];
    else model_path = NULL, i = argc;
  }
  if (!model_path || !fasta_path || !g.outdir || g.probe_cap == 0) {
    fprintf(stderr,
            "usage: %s MODEL FASTA OUTDIR [--limit N] [--probe N] [--threads N]\n", argv[0]);
    return 2;
  }
  if (mkdir(g.outdir, 0777) != 0 && errno != EEXIST) {
    perror(g.outdir);
    return 1;
  }
  FILE *f = fopen(fasta_path, "rb");
  if (!f) {
    perror(fasta_path);
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
  g.model = model;
  g.n_layer = cfg.n_layer;
  g.capacity = cfg.pool_capacity;
  g.probe = malloc(sizeof(int32_t) * g.probe_cap);
  int rc = g.probe ? 0 : fail("malloc", MM_ERR_OUT_OF_MEMORY);
  if (cfg.vocab_size < 256) {
    fprintf(stderr, "genome_contigs: the model's vocabulary (%u) is smaller than a byte\n",
            cfg.vocab_size);
    rc = 1;
  }

  char *line = NULL, name[256] = "";
  size_t cap = 0;
  ssize_t len;
  int seen_header = 0;
  while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
    if (len > 0 && line[0] == '>') {
      rc = end_contig(&g, name);
      size_t n = strcspn(line + 1, " \t\r\n");
      if (n >= sizeof name) n = sizeof name - 1;
      memcpy(name, line + 1, n);
      name[n] = '\0';
      seen_header = 1;
      continue;
    }
    if (!seen_header) {
      if (strspn(line, " \t\r\n") == (size_t)len) continue;
      fprintf(stderr, "genome_contigs: %s is not FASTA (it should start with a '>' line)\n",
              fasta_path);
      rc = 1;
      break;
    }
    for (ssize_t i = 0; i < len && rc == 0; ++i) {
      unsigned char c = (unsigned char)line[i];
      if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) rc = add_base(&g, c);
    }
  }
  if (rc == 0 && ferror(f)) {
    perror(fasta_path);
    rc = 1;
  }
  if (rc == 0) rc = end_contig(&g, name);
  if (rc == 0) rc = check_restore(&g, cfg.vocab_size);
  free(line);
  free(g.probe);
  fclose(f);
  mm_session_free(g.session);
  mm_model_free(model);
  return rc;
}
