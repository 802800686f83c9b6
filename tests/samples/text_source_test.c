/*
 * Tests of samples/c/text_source: the R lazy-load decoder on hand-made R
 * serializations and on Debian's r-cran-janeaustenr, robustness on every
 * truncation and on bit flips (built with ASan + UBSan where available, so
 * a read out of bounds fails the test even where it would not crash), and
 * the file sources (plain, gzip, FASTA stripping, errors).
 *
 *   text_source_test WORK_DIR
 *
 * Prints "N passed, N failed" and exits non-zero on any failure. The real
 * data parts are skipped (and say so) where the Debian packages are absent.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "text_source.h"

static int passed, failed;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      ++passed;                                            \
    } else {                                               \
      ++failed;                                            \
      fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fputc('\n', stderr);                                 \
    }                                                      \
  } while (0)

/* --- Writing R serializations (XDR, version 3) --------------------------- */

typedef struct out {
  unsigned char p[1 << 16];
  size_t n;
} out;

static void put_u32(out *o, uint32_t v) {
  o->p[o->n++] = (unsigned char)(v >> 24);
  o->p[o->n++] = (unsigned char)(v >> 16);
  o->p[o->n++] = (unsigned char)(v >> 8);
  o->p[o->n++] = (unsigned char)v;
}
static void put_bytes(out *o, const void *p, size_t n) {
  memcpy(o->p + o->n, p, n);
  o->n += n;
}
static void put_header(out *o) {
  put_bytes(o, "X\n", 2);
  put_u32(o, 3);
  put_u32(o, 0x040201);
  put_u32(o, 0x030500);
  put_u32(o, 5);
  put_bytes(o, "UTF-8", 5);
}
static void put_charsxp(out *o, const char *s) {
  put_u32(o, 0x00040009); /* CHARSXP, UTF-8 level */
  if (!s) {
    put_u32(o, 0xffffffffu);
    return;
  }
  put_u32(o, (uint32_t)strlen(s));
  put_bytes(o, s, strlen(s));
}
static void put_strsxp(out *o, const char *const *s, size_t n) {
  put_u32(o, 16);
  put_u32(o, (uint32_t)n);
  for (size_t i = 0; i < n; ++i) put_charsxp(o, s[i]);
}
/* attributes: pairlist(names = <names>), with the symbol written once and
 * referenced afterwards as R does. */
static void put_names_attr(out *o, const char *const *names, size_t n, int *names_sym_written,
                           uint32_t *ref_of_names) {
  put_u32(o, 0x00000402); /* LISTSXP with tag */
  if (!*names_sym_written) {
    put_u32(o, 1); /* SYMSXP */
    put_charsxp(o, "names");
    *names_sym_written = 1;
  } else {
    put_u32(o, (*ref_of_names << 8) | 0xff); /* REFSXP */
  }
  put_strsxp(o, names, n);
  put_u32(o, 254); /* NILVALUE: end of the pairlist */
}

/* The index of an .rdb with objects at (offsets[i], lengths[i]). */
static void make_index(out *o, const char *const *names, const uint32_t *offsets,
                       const uint32_t *lengths, size_t n, int compressed) {
  int sym = 0;
  uint32_t names_ref = 1;
  put_header(o);
  put_u32(o, 0x00000213); /* VECSXP with attributes */
  put_u32(o, 3);
  put_u32(o, 0x00000213); /* variables */
  put_u32(o, (uint32_t)n);
  for (size_t i = 0; i < n; ++i) {
    put_u32(o, 13);
    put_u32(o, 2);
    put_u32(o, offsets[i]);
    put_u32(o, lengths[i]);
  }
  put_names_attr(o, names, n, &sym, &names_ref);
  put_u32(o, 19); /* references: empty list */
  put_u32(o, 0);
  put_u32(o, 10); /* compressed */
  put_u32(o, 1);
  put_u32(o, (uint32_t)compressed);
  static const char *const top[] = {"variables", "references", "compressed"};
  put_names_attr(o, top, 3, &sym, &names_ref);
}

/* An .rdb object: size, (type byte,) stream. */
static size_t make_object(unsigned char *dst, size_t cap, const out *plain, int compression,
                          char type) {
  size_t at = 0;
  dst[at++] = (unsigned char)(plain->n >> 24);
  dst[at++] = (unsigned char)(plain->n >> 16);
  dst[at++] = (unsigned char)(plain->n >> 8);
  dst[at++] = (unsigned char)plain->n;
  if (compression != 1) dst[at++] = (unsigned char)type;
  if (type == '0') {
    memcpy(dst + at, plain->p, plain->n);
    return at + plain->n;
  }
  uLongf clen = (uLongf)(cap - at);
  if (compress(dst + at, &clen, plain->p, (uLong)plain->n) != Z_OK) abort();
  return at + clen;
}

/* --- Robustness ----------------------------------------------------------- */

/* Every call must return 0 or -1, and a success must produce sane output. */
static int try_strings(const unsigned char *p, size_t n, int compression) {
  unsigned char *text = (unsigned char *)1;
  size_t len = 12345;
  char err[256] = "";
  int rc = ts_rdata_decode_strings(p, n, compression, &text, &len, err, sizeof err);
  if (rc == 0) {
    if (!text) return -2;
    if (len) (void)text[len - 1];
    free(text);
  } else if (rc != -1 || text || len || !err[0]) {
    return -2;
  }
  return rc;
}

static int try_index(const unsigned char *p, size_t n) {
  ts_rdata_index index;
  char err[256] = "";
  int rc = ts_rdata_parse_index(p, n, &index, err, sizeof err);
  if (rc == 0) {
    for (size_t i = 0; i < index.count; ++i)
      if (strnlen(index.entries[i].name, sizeof index.entries[i].name) == sizeof index.entries[i].name)
        rc = -2;
    ts_rdata_index_free(&index);
  } else if (rc != -1 || index.entries || index.count || !err[0]) {
    return -2;
  }
  return rc;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Truncations (all of them up to `all`, sampled beyond), single bit flips
 * (every bit up to `all` bytes, sampled beyond) and random byte rewrites. */
static void mangle(const char *what, const unsigned char *p, size_t n, size_t all,
                   int (*try)(const unsigned char *, size_t, int), int arg) {
  unsigned char *copy = malloc(n ? n : 1);
  int bad = 0, accepted = 0, tried = 0;
  for (size_t cut = 0; cut < n; cut += cut < all ? 1 : 1 + rng() % (n / 64 + 1)) {
    unsigned char *exact /* exactly `cut` bytes: ASan sees an overread */ = malloc(cut ? cut : 1);
    memcpy(exact, p, cut);
    int rc = try(exact, cut, arg);
    free(exact);
    bad += rc == -2;
    accepted += rc == 0;
    ++tried;
  }
  CHECK(bad == 0, "%s: %d of %d truncations misbehaved", what, bad, tried);
  bad = 0;
  tried = 0;
  size_t flips = n < all ? n * 8 : all * 8, extra = n > 100000 ? 200 : 2000;
  for (size_t k = 0; k < flips + extra; ++k) {
    memcpy(copy, p, n);
    size_t bit = k < flips ? k : rng() % (n * 8);
    copy[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    if (k >= flips) copy[rng() % n] = (unsigned char)rng(); /* and a rewritten byte */
    int rc = try(copy, n, arg);
    bad += rc == -2;
    ++tried;
  }
  CHECK(bad == 0, "%s: %d of %d corruptions misbehaved", what, bad, tried);
  free(copy);
  (void)accepted;
}

static int try_index_adapter(const unsigned char *p, size_t n, int unused) {
  (void)unused;
  return try_index(p, n);
}

/* --- Tests ---------------------------------------------------------------- */

static void test_synthetic(void) {
  static const char *const lines[] = {"EMMA", "", "By Jane Austen", NULL, "CHAPTER I"};
  out plain = {{0}, 0};
  put_header(&plain);
  put_strsxp(&plain, lines, 5);
  static const char expect[] = "EMMA\n\nBy Jane Austen\n\nCHAPTER I\n";

  static unsigned char blob[1 << 16];
  for (int variant = 0; variant < 3; ++variant) {
    int compression = variant == 0 ? 1 : 3;
    char type = variant == 2 ? '0' : 'Z';
    size_t n = make_object(blob, sizeof blob, &plain, compression, type);
    unsigned char *text;
    size_t len;
    char err[256];
    int rc = ts_rdata_decode_strings(blob, n, compression, &text, &len, err, sizeof err);
    CHECK(rc == 0, "decode variant %d: %s", variant, rc ? err : "");
    if (rc == 0) {
      CHECK(len == sizeof expect - 1 && !memcmp(text, expect, len), "decode variant %d: wrong text",
            variant);
      free(text);
    }
    mangle(variant == 2 ? "stored object" : "zlib object", blob, n, n, try_strings, compression);
  }
  /* Other compressions are named, not guessed. */
  {
    size_t n = make_object(blob, sizeof blob, &plain, 3, 'Z');
    blob[4] = 'X';
    unsigned char *text;
    size_t len;
    char err[256] = "";
    CHECK(ts_rdata_decode_strings(blob, n, 3, &text, &len, err, sizeof err) == -1 &&
              strstr(err, "xz"),
          "xz object: %s", err);
  }
  /* A serialization that is not a character vector. */
  {
    out o = {{0}, 0};
    put_header(&o);
    put_u32(&o, 13);
    put_u32(&o, 1);
    put_u32(&o, 7);
    size_t n = make_object(blob, sizeof blob, &o, 1, 'Z');
    unsigned char *text;
    size_t len;
    char err[256] = "";
    CHECK(ts_rdata_decode_strings(blob, n, 1, &text, &len, err, sizeof err) == -1,
          "an integer vector is not text");
  }

  static const char *const names[] = {"first", "second"};
  static const uint32_t offsets[] = {0, 1234}, lengths[] = {1234, 99};
  out idx = {{0}, 0};
  make_index(&idx, names, offsets, lengths, 2, 1);
  ts_rdata_index index;
  char err[256];
  int rc = ts_rdata_parse_index(idx.p, idx.n, &index, err, sizeof err);
  CHECK(rc == 0, "index: %s", rc ? err : "");
  if (rc == 0) {
    CHECK(index.count == 2 && !strcmp(index.entries[1].name, "second") &&
              index.entries[1].offset == 1234 && index.entries[1].length == 99 &&
              index.compression == 1,
          "index: wrong entries");
    ts_rdata_index_free(&index);
  }
  mangle("plain index", idx.p, idx.n, idx.n, try_index_adapter, 0);
  /* The same index gzip'ed, as R writes it. */
  static unsigned char gz[1 << 16];
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = idx.p;
  zs.avail_in = (uInt)idx.n;
  zs.next_out = gz;
  zs.avail_out = sizeof gz;
  deflate(&zs, Z_FINISH);
  size_t gz_len = zs.total_out;
  deflateEnd(&zs);
  rc = ts_rdata_parse_index(gz, gz_len, &index, err, sizeof err);
  CHECK(rc == 0 && index.count == 2, "gzip index: %s", rc ? err : "");
  if (rc == 0) ts_rdata_index_free(&index);
  mangle("gzip index", gz, gz_len, gz_len, try_index_adapter, 0);

  /* Deep nesting is refused, not recursed into. */
  out deep = {{0}, 0};
  put_header(&deep);
  for (int i = 0; i < 1000; ++i) {
    put_u32(&deep, 19);
    put_u32(&deep, 1);
  }
  put_u32(&deep, 254);
  rc = ts_rdata_parse_index(deep.p, deep.n, &index, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "nested"), "deep nesting: %s", err);
  /* A huge claimed length is refused before any allocation. */
  out huge = {{0}, 0};
  put_header(&huge);
  put_u32(&huge, 16);
  put_u32(&huge, 0xffffffffu);
  put_u32(&huge, 0x7fffffffu);
  put_u32(&huge, 0xffffffffu);
  rc = ts_rdata_parse_index(huge.p, huge.n, &index, err, sizeof err);
  CHECK(rc == -1, "huge length accepted");
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc(size > 0 ? (size_t)size : 1);
  *n = fread(p, 1, (size_t)size, f);
  fclose(f);
  return p;
}

static void test_janeausten(void) {
  size_t rdx_len, rdb_len;
  unsigned char *rdx = read_all(TS_JANEAUSTEN_BASE ".rdx", &rdx_len);
  unsigned char *rdb = read_all(TS_JANEAUSTEN_BASE ".rdb", &rdb_len);
  if (!rdx || !rdb) {
    printf("skipped: r-cran-janeaustenr is not installed\n");
    free(rdx);
    free(rdb);
    return;
  }
  ts_rdata_index index;
  char err[256];
  int rc = ts_rdata_parse_index(rdx, rdx_len, &index, err, sizeof err);
  CHECK(rc == 0 && index.count == 6, "janeaustenr index: %s", rc ? err : "count");
  mangle("janeaustenr index", rdx, rdx_len, rdx_len, try_index_adapter, 0);
  if (rc == 0) {
    /* The shortest novel's object, mangled (zlib rejects most flips). */
    size_t best = 0;
    for (size_t i = 1; i < index.count; ++i)
      if (index.entries[i].length < index.entries[best].length) best = i;
    const ts_rdata_entry *e = &index.entries[best];
    if (e->offset <= rdb_len && e->length <= rdb_len - e->offset) {
      mangle("janeaustenr object", rdb + e->offset, e->length, 64, try_strings,
             index.compression);
      /* Its serialization itself, mangled: stored, so the parser sees it all. */
      unsigned char *text;
      size_t len;
      rc = ts_rdata_decode_strings(rdb + e->offset, e->length, index.compression, &text, &len,
                                   err, sizeof err);
      CHECK(rc == 0, "%s: %s", e->name, rc ? err : "");
      if (rc == 0) free(text);
      uLongf plain_len = (uLongf)((size_t)rdb[e->offset] << 24 | (size_t)rdb[e->offset + 1] << 16 |
                                  (size_t)rdb[e->offset + 2] << 8 | rdb[e->offset + 3]);
      unsigned char *stored = malloc(plain_len + 5);
      memcpy(stored, rdb + e->offset, 4);
      stored[4] = '0';
      if (uncompress(stored + 5, &plain_len, rdb + e->offset + 4, (uLong)(e->length - 4)) == Z_OK)
        mangle("janeaustenr serialization", stored, plain_len + 5, 256, try_strings, 3);
      free(stored);
    }
    ts_rdata_index_free(&index);
  }
  free(rdx);
  free(rdb);

  unsigned char *text;
  size_t len;
  rc = ts_load("janeausten", NULL, &text, &len, err, sizeof err);
  CHECK(rc == 0, "janeausten: %s", rc ? err : "");
  if (rc == 0) {
    static const char opening[] = "It is a truth universally acknowledged";
    int found = 0;
    for (size_t i = 0; i + sizeof opening - 1 <= len && !found; ++i)
      found = !memcmp(text + i, opening, sizeof opening - 1);
    CHECK(len > 4000000 && found, "janeausten: %zu bytes, opening line %s", len,
          found ? "found" : "missing");
    int control = 0;
    for (size_t i = 0; i < len; ++i) control |= text[i] < 4;
    CHECK(!control, "janeausten holds bytes 0..3");
    free(text);
  }
  ts_options o;
  ts_options_init(&o);
  o.max_bytes = 1000;
  rc = ts_load("janeausten:emma", &o, &text, &len, err, sizeof err);
  CHECK(rc == 0 && len == 1000 && !memcmp(text, "EMMA\n", 5), "janeausten:emma");
  if (rc == 0) free(text);
  rc = ts_load("janeausten:nosuchnovel", NULL, &text, &len, err, sizeof err);
  CHECK(rc == -1 && !text && !len && strstr(err, "nosuchnovel"), "unknown novel: %s", err);
  rc = ts_load("rdata:" TS_JANEAUSTEN_BASE, NULL, &text, &len, err, sizeof err);
  CHECK(rc == 0 && len > 4000000, "rdata: %s", rc ? err : "");
  if (rc == 0) free(text);
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fwrite(p, 1, n, f);
  fclose(f);
}

static void test_files(const char *work) {
  char path[4096], gzpath[4096], err[256];
  unsigned char *text;
  size_t len;
  static const char fasta[] = "\n>chr1 test\nACGT\nNNac\n>chr2\r\nTTTT\r\n";
  snprintf(path, sizeof path, "%s/t.fa", work);
  write_file(path, fasta, sizeof fasta - 1);
  ts_options o;
  ts_options_init(&o);
  int rc = ts_load(path, &o, &text, &len, err, sizeof err);
  CHECK(rc == 0 && len == sizeof fasta - 1 && !memcmp(text, fasta, len), "fasta as is");
  if (rc == 0) free(text);
  o.fasta_sequence_only = 1;
  rc = ts_load(path, &o, &text, &len, err, sizeof err);
  CHECK(rc == 0 && len == 12 && !memcmp(text, "ACGTNNacTTTT", 12), "fasta stripped");
  if (rc == 0) free(text);
  o.max_bytes = 5;
  rc = ts_load(path, &o, &text, &len, err, sizeof err);
  CHECK(rc == 0 && len == 5 && !memcmp(text, "ACGTN", 5), "fasta stripped, limited");
  if (rc == 0) free(text);

  /* gzip: whole, then truncated (an error, not a short read). */
  snprintf(gzpath, sizeof gzpath, "%s/t.fa.gz", work);
  gzFile gz = gzopen(gzpath, "wb");
  for (int i = 0; i < 2000; ++i) gzwrite(gz, fasta, sizeof fasta - 1);
  gzclose(gz);
  o.max_bytes = 0;
  rc = ts_load(gzpath, &o, &text, &len, err, sizeof err);
  CHECK(rc == 0 && len == 12 * 2000, "gzip fasta: %s", rc ? err : "length");
  if (rc == 0) free(text);
  size_t gz_len;
  unsigned char *gzbytes = read_all(gzpath, &gz_len);
  write_file(gzpath, gzbytes, gz_len / 2);
  rc = ts_load(gzpath, &o, &text, &len, err, sizeof err);
  CHECK(rc == -1 && !text, "truncated gzip accepted");
  gzbytes[gz_len / 3] ^= 0x55;
  write_file(gzpath, gzbytes, gz_len);
  rc = ts_load(gzpath, &o, &text, &len, err, sizeof err);
  CHECK(rc == -1 && !text, "corrupt gzip accepted");
  free(gzbytes);

  snprintf(path, sizeof path, "%s/empty", work);
  write_file(path, "", 0);
  rc = ts_load(path, NULL, &text, &len, err, sizeof err);
  CHECK(rc == 0 && text && len == 0, "empty file");
  free(text);
  snprintf(path, sizeof path, "%s/does-not-exist", work);
  rc = ts_load(path, NULL, &text, &len, err, sizeof err);
  CHECK(rc == -1 && !text && strstr(err, "does-not-exist"), "missing file: %s", err);
  rc = ts_load(work, NULL, &text, &len, err, sizeof err);
  CHECK(rc == -1 && !text, "a directory is not a source");
  rc = ts_load("rdata:/nonexistent/base", NULL, &text, &len, err, sizeof err);
  CHECK(rc == -1 && !text, "missing rdata");

  /* Debian's real files, where installed. */
  static const char *const real[] = {"/usr/share/htslib-test/test/ce.fa",
                                     "/usr/share/logstalgia/example.log",
                                     "/usr/share/doc/ragout/examples/E.Coli/references/DH1.fasta.gz"};
  for (size_t i = 0; i < sizeof real / sizeof *real; ++i) {
    FILE *f = fopen(real[i], "rb");
    if (!f) {
      printf("skipped: %s is not installed\n", real[i]);
      continue;
    }
    fclose(f);
    ts_options_init(&o);
    o.fasta_sequence_only = 1;
    o.max_bytes = 200000;
    rc = ts_load(real[i], &o, &text, &len, err, sizeof err);
    CHECK(rc == 0 && len > 1000, "%s: %s", real[i], rc ? err : "too short");
    if (rc == 0) {
      int fa = strstr(real[i], ".fa") != NULL, ok = 1;
      for (size_t k = 0; fa && k < len; ++k) ok &= strchr("ACGTNacgtnRYKMSWBDHV", text[k]) != NULL;
      CHECK(ok, "%s: bytes other than bases after stripping", real[i]);
      free(text);
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s WORK_DIR\n", argv[0]);
    return 2;
  }
  test_synthetic();
  test_janeausten();
  test_files(argv[1]);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
