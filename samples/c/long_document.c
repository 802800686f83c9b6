/*
 * long_document: streams a long document through a MemMamba model, keeps
 * its memory on disk, and picks it up later in a fresh process.
 *
 * The document is a FASTA file (a genome: each '>' record, a contig or
 * chromosome, is a section; its bases are the tokens) or a text file (a
 * novel: each paragraph, ended by a blank line, is a section; its bytes are
 * the tokens). A byte is a token (vocab 256).
 *
 *   long_document FILE --snapshots DIR [options]
 *       streams FILE and, at the end of every section, writes the stream's
 *       snapshot to DIR/NNN_<section>.mmsnap (atomically: a crash never
 *       leaves a half-written file).
 *   long_document FILE --resume SNAPSHOT [options]
 *       in a fresh process: inspects SNAPSHOT, restores it, skips the
 *       sections of FILE it had already consumed and streams the rest.
 *
 * Options: --model PATH (default: a fresh model of the default configuration,
 * seed 42), --limit N (at most N tokens per section, for quick runs),
 * --threads N.
 *
 * For each section both modes print the same line,
 *   section 4 CHROMOSOME_IV: 3000 tokens, position 12000, notes 96/400, logits 9f3c...
 * where `logits` is a hash of the next-token logits after the section: the
 * lines of a resumed run equal those of the uninterrupted run, bit for bit.
 *
 *   long_document ce.fa --limit 3000 --snapshots snaps
 *   long_document ce.fa --limit 3000 --resume snaps/003_CHROMOSOME_III.mmsnap
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memmamba/memmamba.h"

#define CHUNK 512 /* tokens per feed; chunks restart at every section */

typedef struct {
  mm_model *model;
  mm_session *session;
  uint32_t vocab, n_layer, capacity;
  float *logits;
  int32_t chunk[CHUNK];
  size_t pending;      /* tokens in chunk[] not fed yet */
  size_t limit;        /* tokens per section, 0 = all */
  size_t in_section;   /* tokens of the current section so far (after limit) */
  uint64_t position;   /* tokens consumed by the whole document so far */
  uint64_t skip;       /* --resume: tokens already in the snapshot */
  unsigned section;    /* sections completed */
  const char *snapshot_dir;
} stream;

static int fail(const char *what, mm_status st) {
  fprintf(stderr, "long_document: %s failed: %s (%s)\n", what, mm_status_string(st),
          mm_last_error());
  return 1;
}

/* FNV-1a over the bytes of the logits: equal logits, equal hash. */
static uint64_t digest(const float *v, size_t n) {
  const unsigned char *p = (const unsigned char *)v;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n * sizeof *v; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static int feed_pending(stream *s, int32_t mode) {
  if (s->skip > 0 || s->pending == 0) return 0;
  mm_status st = mm_session_feed(s->session, s->chunk, s->pending, mode, s->logits, s->vocab);
  if (st != MM_OK) return fail("mm_session_feed", st);
  s->pending = 0;
  return 0;
}

static int add_token(stream *s, unsigned char byte) {
  if (s->limit && s->in_section >= s->limit) return 0;
  ++s->in_section;
  if (s->skip > 0) return 0; /* resuming: already in the snapshot */
  if (s->pending == CHUNK && feed_pending(s, MM_LOGITS_NONE)) return 1;
  s->chunk[s->pending++] = byte;
  return 0;
}

/* The file-name-safe form of a section name. */
static void safe_name(const char *in, char *out, size_t size) {
  size_t n = 0;
  for (; *in && n + 1 < size && n < 40; ++in) {
    char c = *in;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '.';
    out[n++] = ok ? c : '_';
  }
  out[n] = '\0';
}

static int end_section(stream *s, const char *name) {
  if (s->in_section == 0) return 0; /* empty sections do not count */
  ++s->section;
  const size_t tokens = s->in_section;
  s->in_section = 0;
  if (s->skip > 0) {
    if (tokens > s->skip) {
      fprintf(stderr, "long_document: the snapshot's position is not at a section end of this "
                      "file (same file and --limit as when it was written?)\n");
      return 1;
    }
    s->skip -= tokens;
    s->position += tokens;
    return 0;
  }
  if (feed_pending(s, MM_LOGITS_LAST)) return 1;
  s->position += tokens;
  uint32_t notes = 0;
  for (uint32_t l = 0; l < s->n_layer; ++l) notes += (uint32_t)mm_session_pool_size(s->session, l);
  printf("section %u %s: %zu tokens, position %llu, notes %u/%u, logits %016llx\n", s->section,
         name, tokens, (unsigned long long)s->position, notes, s->n_layer * s->capacity,
         (unsigned long long)digest(s->logits, s->vocab));
  if (s->snapshot_dir) {
    char safe[64], path[4096];
    safe_name(name, safe, sizeof safe);
    snprintf(path, sizeof path, "%s/%03u_%s.mmsnap", s->snapshot_dir, s->section, safe);
    mm_status st = mm_session_snapshot_file(s->session, path);
    if (st != MM_OK) return fail("mm_session_snapshot_file", st);
    printf("  snapshot %s\n", path);
  }
  fflush(stdout);
  return 0;
}

/* Reads FILE line by line (constant memory) and streams its sections. */
static int stream_file(stream *s, FILE *f) {
  char *line = NULL, name[256] = "";
  size_t cap = 0;
  ssize_t len;
  int fasta = -1, rc = 0;
  unsigned paragraph = 0;
  while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
    if (fasta < 0) {
      if (len == 0 || line[0] == '\n') continue;
      fasta = line[0] == '>';
      if (!fasta) snprintf(name, sizeof name, "paragraph_%u", ++paragraph);
    }
    if (fasta) {
      if (line[0] == '>') {
        rc = end_section(s, name);
        size_t n = strcspn(line + 1, " \t\r\n");
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, line + 1, n);
        name[n] = '\0';
        continue;
      }
      for (ssize_t i = 0; i < len && rc == 0; ++i) {
        if (line[i] != '\n' && line[i] != '\r') rc = add_token(s, (unsigned char)line[i]);
      }
    } else {
      int blank = strspn(line, " \t\r\n") == (size_t)len;
      for (ssize_t i = 0; i < len && rc == 0 && !blank; ++i) rc = add_token(s, (unsigned char)line[i]);
      if (blank && rc == 0 && s->in_section > 0) {
        rc = end_section(s, name);
        snprintf(name, sizeof name, "paragraph_%u", ++paragraph);
      }
    }
  }
  if (rc == 0) rc = end_section(s, name);
  free(line);
  if (rc == 0 && s->skip > 0) {
    fprintf(stderr, "long_document: the file ended before the snapshot's position\n");
    rc = 1;
  }
  return rc;
}

int main(int argc, char **argv) {
  const char *path = NULL, *model_path = NULL, *resume = NULL;
  stream s;
  memset(&s, 0, sizeof s);
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!strcmp(argv[i], "--snapshots") && i + 1 < argc) s.snapshot_dir = argv[++i];
    else if (!strcmp(argv[i], "--resume") && i + 1 < argc) resume = argv[++i];
    else if (!strcmp(argv[i], "--limit") && i + 1 < argc) s.limit = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (argv[i][0] != '-' && !path) path = argv[i];
    else path = NULL, i = argc;
  }
  if (!path || (!s.snapshot_dir && !resume)) {
    fprintf(stderr,
            "usage: %s FILE (--snapshots DIR | --resume SNAPSHOT) [--model PATH] [--limit N] "
            "[--threads N]\n",
            argv[0]);
    return 2;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }

  mm_model_options opts;
  mm_model_options_init(&opts, sizeof opts);
  opts.n_threads = threads;
  mm_status st = model_path ? mm_model_load(&s.model, model_path, &opts)
                            : mm_model_create(&s.model, NULL, 42, &opts);
  if (st != MM_OK) return fail(model_path ? "mm_model_load" : "mm_model_create", st);
  mm_model_config cfg;
  mm_model_config_init(&cfg, sizeof cfg);
  mm_model_get_config(s.model, &cfg);
  if (cfg.vocab_size < 256) {
    fprintf(stderr, "long_document: the model's vocabulary (%u) is smaller than a byte\n",
            cfg.vocab_size);
    return 1;
  }
  s.vocab = cfg.vocab_size;
  s.n_layer = cfg.n_layer;
  s.capacity = cfg.pool_capacity;
  s.logits = malloc(sizeof(float) * s.vocab);
  if (!s.logits) return fail("malloc", MM_ERR_OUT_OF_MEMORY);
  if ((st = mm_session_create(&s.session, s.model, NULL)) != MM_OK)
    return fail("mm_session_create", st);

  if (resume) {
    /* What the snapshot holds, without the model... */
    mm_snapshot_info info;
    mm_snapshot_info_init(&info, sizeof info);
    if ((st = mm_snapshot_inspect_file(resume, &info)) != MM_OK)
      return fail("mm_snapshot_inspect_file", st);
    printf("resume %s: format %u, position %llu, model %016llx, notes %u/%u, %llu bytes of state\n",
           resume, info.format_version, (unsigned long long)info.position,
           (unsigned long long)info.model_fingerprint, info.notes_total,
           info.n_layer * info.pool_capacity, (unsigned long long)info.state_bytes);
    if (info.model_fingerprint != mm_model_fingerprint(s.model))
      fprintf(stderr, "long_document: the snapshot was taken on another model\n");
    /* ...then the stream itself (refused on another model). */
    if ((st = mm_session_restore_file(s.session, resume)) != MM_OK)
      return fail("mm_session_restore_file", st);
    s.skip = info.position;
  }
  int rc = stream_file(&s, f);
  fclose(f);
  free(s.logits);
  mm_session_free(s.session);
  mm_model_free(s.model);
  return rc;
}
