/*
 * text_source.c: see text_source.h.
 *
 * The R part reads just enough of R's serialization format (XDR, versions 2
 * and 3: "X\n", three version ints, for version 3 the native encoding) to
 * take character vectors out of a lazy-load database:
 *   NAME.rdx  a gzip'ed serialization of
 *             list(variables = list(NAME = c(offset, length), ...),
 *                  references = list(...), compressed = TRUE | 2L | 3L)
 *   NAME.rdb  the objects, each `length` bytes at `offset`: a 4-byte
 *             big-endian uncompressed size, then (compressed = TRUE) a zlib
 *             stream, or (2, 3) a type byte ('Z' zlib, '0' stored, '2'
 *             bzip2, 'X' xz) and the stream; inside, a serialization.
 * An item starts with a 32-bit flags word: type = flags & 0xff, bit 9 "has
 * attributes", bit 10 "has tag", references (type 255) carry their index
 * in flags >> 8 (or, if that is 0, in the next int). Only the types such
 * data uses are read (NULL and the environment markers, symbols, pairlists,
 * strings and atomic vectors, lists); anything else is reported, not guessed.
 *
 * Every count read from a file is checked against the bytes left before
 * anything is allocated for it, so memory stays proportional to the input,
 * and nesting is limited, so the recursion stays shallow.
 */
#define _POSIX_C_SOURCE 200809L /* fseeko, ftello, strnlen */

#include "text_source.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* Limits that keep a hostile input from asking for unbounded memory. */
enum {
  kMaxIndexBytes = 16 << 20,  /* decompressed .rdx */
  kMaxObjectBytes = 64 << 20, /* one decompressed .rdb object */
  kMaxItems = 4 << 20,        /* R objects and strings in one serialization */
  kMaxDepth = 64              /* nesting of R objects */
};

static int set_error(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

void ts_options_init(ts_options *options) {
  if (!options) return;
  options->fasta_sequence_only = 0;
  options->max_bytes = 0;
}

/* ------------------------------------------------------------------------ */
/* A growable byte buffer                                                    */
/* ------------------------------------------------------------------------ */

typedef struct buf {
  unsigned char *p;
  size_t n, cap;
} buf;

static int buf_reserve(buf *b, size_t extra) {
  if (extra <= b->cap - b->n) return 0;
  if (extra > SIZE_MAX / 2 - b->n) return -1;
  size_t cap = b->cap ? b->cap : 1 << 16;
  while (cap - b->n < extra) cap *= 2;
  unsigned char *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* A bump allocator: one free for everything a parse made                    */
/* ------------------------------------------------------------------------ */

typedef struct arena_block {
  struct arena_block *next;
  size_t used, cap;
} arena_block;

#define ARENA_HEADER (((sizeof(arena_block)) + 15u) & ~(size_t)15u)

typedef struct arena {
  arena_block *head;
} arena;

static void *arena_alloc(arena *a, size_t size) {
  if (size > SIZE_MAX - 64) return NULL;
  size = (size + 15u) & ~(size_t)15u;
  if (!a->head || a->head->cap - a->head->used < size) {
    size_t cap = size > (1u << 16) ? size : (1u << 16);
    arena_block *b = malloc(ARENA_HEADER + cap);
    if (!b) return NULL;
    b->next = a->head;
    b->used = 0;
    b->cap = cap;
    a->head = b;
  }
  void *p = (unsigned char *)a->head + ARENA_HEADER + a->head->used;
  a->head->used += size;
  memset(p, 0, size);
  return p;
}

static void arena_free(arena *a) {
  while (a->head) {
    arena_block *next = a->head->next;
    free(a->head);
    a->head = next;
  }
}

/* ------------------------------------------------------------------------ */
/* R serialization (XDR)                                                     */
/* ------------------------------------------------------------------------ */

enum {
  R_SYMSXP = 1, R_LISTSXP = 2, R_CHARSXP = 9, R_LGLSXP = 10, R_INTSXP = 13,
  R_REALSXP = 14, R_CPLXSXP = 15, R_STRSXP = 16, R_VECSXP = 19, R_EXPRSXP = 20,
  R_RAWSXP = 24,
  R_BASEENV = 241, R_EMPTYENV = 242, R_BASENAMESPACE = 250, R_MISSINGARG = 251,
  R_UNBOUNDVALUE = 252, R_GLOBALENV = 253, R_NILVALUE = 254, R_REFSXP = 255
};

typedef struct rstr {
  const unsigned char *p; /* into the serialized bytes */
  size_t n;
  int na;
} rstr;

typedef struct robj {
  int type;
  size_t n;                   /* vectors: elements */
  const unsigned char *data;  /* atomic vectors: their big-endian bytes */
  rstr str;                   /* CHARSXP */
  rstr *strs;                 /* STRSXP: n strings */
  struct robj **elts;         /* VECSXP / EXPRSXP: n items */
  struct robj *attr;          /* attributes (a pairlist) or NULL */
  struct robj *tag, *car, *cdr; /* LISTSXP */
  struct robj *name;          /* SYMSXP: its CHARSXP */
} robj;

typedef struct reader {
  const unsigned char *p;
  size_t n, pos;
  arena mem;
  robj **refs;
  size_t nrefs, refcap;
  size_t items;
  char *err;
  size_t errlen;
  int failed;
} reader;

static void *rd_fail(reader *r, const char *fmt, ...) {
  if (!r->failed && r->err && r->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
  }
  r->failed = 1;
  return NULL;
}

static size_t rd_left(const reader *r) { return r->n - r->pos; }

static int rd_u32(reader *r, uint32_t *v) {
  if (rd_left(r) < 4) {
    rd_fail(r, "R data truncated at byte %zu", r->pos);
    return -1;
  }
  const unsigned char *q = r->p + r->pos;
  *v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
  r->pos += 4;
  return 0;
}

/* A vector length: an int, or -1 then two ints (upper, lower) for a long one. */
static int rd_length(reader *r, size_t *len) {
  uint32_t v;
  if (rd_u32(r, &v)) return -1;
  if (v == 0xffffffffu) {
    uint32_t hi, lo;
    if (rd_u32(r, &hi) || rd_u32(r, &lo)) return -1;
    uint64_t l = (uint64_t)hi << 32 | lo;
    if (l > SIZE_MAX) {
      rd_fail(r, "R vector length %llu too large", (unsigned long long)l);
      return -1;
    }
    *len = (size_t)l;
    return 0;
  }
  if (v > 0x7fffffffu) {
    rd_fail(r, "negative R vector length at byte %zu", r->pos - 4);
    return -1;
  }
  *len = v;
  return 0;
}

static robj *rd_new(reader *r, int type, size_t count) {
  /* count: how many items this object adds (itself plus its strings). */
  if (count > kMaxItems || r->items > (size_t)kMaxItems - count)
    return rd_fail(r, "R data has more than %d objects", kMaxItems);
  r->items += count;
  robj *o = arena_alloc(&r->mem, sizeof *o);
  if (!o) return rd_fail(r, "out of memory");
  o->type = type;
  return o;
}

static robj *rd_item(reader *r, int depth);

static int rd_charsxp(reader *r, rstr *s) {
  uint32_t len;
  if (rd_u32(r, &len)) return -1;
  if (len == 0xffffffffu) { /* NA_STRING */
    s->p = r->p + r->pos;
    s->n = 0;
    s->na = 1;
    return 0;
  }
  if (len > rd_left(r)) {
    rd_fail(r, "R string of %u bytes runs past the end of the data", len);
    return -1;
  }
  s->p = r->p + r->pos;
  s->n = len;
  s->na = 0;
  r->pos += len;
  return 0;
}

static robj *rd_with_flags(reader *r, uint32_t flags, int depth) {
  if (depth > kMaxDepth) return rd_fail(r, "R objects nested deeper than %d", kMaxDepth);
  int type = (int)(flags & 0xffu);
  int has_attr = (flags >> 9) & 1, has_tag = (flags >> 10) & 1;
  robj *o = NULL;
  size_t n = 0;
  switch (type) {
    case R_NILVALUE: case R_EMPTYENV: case R_BASEENV: case R_GLOBALENV:
    case R_UNBOUNDVALUE: case R_MISSINGARG: case R_BASENAMESPACE:
      return rd_new(r, type, 1);
    case R_REFSXP: {
      uint32_t index = flags >> 8;
      if (index == 0 && rd_u32(r, &index)) return NULL;
      if (index < 1 || index > r->nrefs)
        return rd_fail(r, "R reference %u to nothing (%zu known)", index, r->nrefs);
      return r->refs[index - 1];
    }
    case R_SYMSXP: {
      robj *name = rd_item(r, depth + 1);
      if (!name) return NULL;
      if (name->type != R_CHARSXP) return rd_fail(r, "R symbol whose name is not a string");
      if (!(o = rd_new(r, type, 1))) return NULL;
      o->name = name;
      if (r->nrefs == r->refcap) {
        size_t cap = r->refcap ? r->refcap * 2 : 64;
        robj **refs = realloc(r->refs, cap * sizeof *refs);
        if (!refs) return rd_fail(r, "out of memory");
        r->refs = refs;
        r->refcap = cap;
      }
      r->refs[r->nrefs++] = o;
      return o;
    }
    case R_LISTSXP: {
      /* A pairlist: the CDR chain is walked in a loop, not by recursion. */
      robj *head = NULL, **link = &head;
      for (;;) {
        robj *node = rd_new(r, R_LISTSXP, 1);
        if (!node) return NULL;
        if (has_attr && !(node->attr = rd_item(r, depth + 1))) return NULL;
        if (has_tag && !(node->tag = rd_item(r, depth + 1))) return NULL;
        if (!(node->car = rd_item(r, depth + 1))) return NULL;
        *link = node;
        uint32_t next;
        if (rd_u32(r, &next)) return NULL;
        if ((next & 0xffu) != R_LISTSXP) {
          if (!(node->cdr = rd_with_flags(r, next, depth + 1))) return NULL;
          return head;
        }
        has_attr = (next >> 9) & 1;
        has_tag = (next >> 10) & 1;
        link = &node->cdr;
      }
    }
    case R_CHARSXP:
      if (!(o = rd_new(r, type, 1))) return NULL;
      if (rd_charsxp(r, &o->str)) return NULL;
      return o; /* strings carry no attributes in a serialization */
    case R_LGLSXP: case R_INTSXP: case R_REALSXP: case R_CPLXSXP: case R_RAWSXP: {
      size_t width = type == R_RAWSXP ? 1 : type == R_REALSXP ? 8 : type == R_CPLXSXP ? 16 : 4;
      if (rd_length(r, &n)) return NULL;
      if (n > rd_left(r) / width)
        return rd_fail(r, "R vector of %zu elements runs past the end of the data", n);
      if (!(o = rd_new(r, type, 1))) return NULL;
      o->n = n;
      o->data = r->p + r->pos;
      r->pos += n * width;
      break;
    }
    case R_STRSXP: {
      if (rd_length(r, &n)) return NULL;
      if (n > rd_left(r) / 8) /* each element: flags and a length at least */
        return rd_fail(r, "R character vector of %zu elements runs past the end of the data", n);
      if (!(o = rd_new(r, type, 1 + n))) return NULL;
      o->n = n;
      if (n && !(o->strs = arena_alloc(&r->mem, n * sizeof *o->strs)))
        return rd_fail(r, "out of memory");
      for (size_t i = 0; i < n; ++i) {
        uint32_t f;
        if (rd_u32(r, &f)) return NULL;
        if ((f & 0xffu) != R_CHARSXP)
          return rd_fail(r, "element %zu of an R character vector is of type %u", i, f & 0xffu);
        if (rd_charsxp(r, &o->strs[i])) return NULL;
      }
      break;
    }
    case R_VECSXP: case R_EXPRSXP: {
      if (rd_length(r, &n)) return NULL;
      if (n > rd_left(r) / 4)
        return rd_fail(r, "R list of %zu elements runs past the end of the data", n);
      if (!(o = rd_new(r, type, 1))) return NULL;
      o->n = n;
      if (n && !(o->elts = arena_alloc(&r->mem, n * sizeof *o->elts)))
        return rd_fail(r, "out of memory");
      for (size_t i = 0; i < n; ++i)
        if (!(o->elts[i] = rd_item(r, depth + 1))) return NULL;
      break;
    }
    default:
      return rd_fail(r, "R object type %d is not supported here (at byte %zu)", type, r->pos - 4);
  }
  if (has_attr && !(o->attr = rd_item(r, depth + 1))) return NULL;
  return o;
}

static robj *rd_item(reader *r, int depth) {
  uint32_t flags;
  if (rd_u32(r, &flags)) return NULL;
  return rd_with_flags(r, flags, depth);
}

/* Reads the header and the one object of a serialization. */
static robj *rd_serialization(reader *r) {
  if (r->n < 2 || r->p[0] != 'X' || r->p[1] != '\n') {
    if (r->n >= 2 && (r->p[0] == 'A' || r->p[0] == 'B') && r->p[1] == '\n')
      return rd_fail(r, "R serialization in %s format: only XDR is supported",
                     r->p[0] == 'A' ? "ASCII" : "native binary");
    return rd_fail(r, "not an R serialization (no \"X\\n\" header)");
  }
  r->pos = 2;
  uint32_t version, writer, min_reader;
  if (rd_u32(r, &version) || rd_u32(r, &writer) || rd_u32(r, &min_reader)) return NULL;
  if (version != 2 && version != 3)
    return rd_fail(r, "R serialization version %u is not supported", version);
  if (version == 3) {
    uint32_t nelen;
    if (rd_u32(r, &nelen)) return NULL;
    if (nelen > rd_left(r) || nelen > 255) return rd_fail(r, "bad R native encoding length %u", nelen);
    r->pos += nelen;
  }
  robj *o = rd_item(r, 0);
  if (o && r->pos != r->n)
    return rd_fail(r, "%zu bytes after the end of the R object", r->n - r->pos);
  return o;
}

static void rd_init(reader *r, const unsigned char *p, size_t n, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  r->p = p;
  r->n = n;
  r->err = err;
  r->errlen = errlen;
}

static void rd_done(reader *r) {
  arena_free(&r->mem);
  free(r->refs);
  r->refs = NULL;
}

static int rstr_is(const rstr *s, const char *text) {
  size_t n = strlen(text);
  return !s->na && s->n == n && memcmp(s->p, text, n) == 0;
}

/* The `names` attribute of o, or NULL. */
static const robj *r_names(const robj *o) {
  for (const robj *a = o->attr; a && a->type == R_LISTSXP; a = a->cdr)
    if (a->tag && a->tag->type == R_SYMSXP && rstr_is(&a->tag->name->str, "names") &&
        a->car && a->car->type == R_STRSXP && a->car->n == o->n)
      return a->car;
  return NULL;
}

/* Element i of a numeric vector as a non-negative integer below 2^53. */
static int r_number(const robj *o, size_t i, uint64_t *v) {
  if (i >= o->n) return -1;
  if (o->type == R_INTSXP || o->type == R_LGLSXP) {
    const unsigned char *q = o->data + 4 * i;
    uint32_t u = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
    if (u > 0x7fffffffu) return -1; /* negative or NA */
    *v = u;
    return 0;
  }
  if (o->type == R_REALSXP) {
    const unsigned char *q = o->data + 8 * i;
    uint64_t bits = 0;
    for (int k = 0; k < 8; ++k) bits = bits << 8 | q[k];
    double d;
    memcpy(&d, &bits, sizeof d);
    if (!(d >= 0.0 && d < 9007199254740992.0) || d != (double)(uint64_t)d) return -1;
    *v = (uint64_t)d;
    return 0;
  }
  return -1;
}

/* ------------------------------------------------------------------------ */
/* Decompression                                                             */
/* ------------------------------------------------------------------------ */

/* gzip (or zlib, auto-detected) stream -> buf, at most `limit` bytes. */
static int inflate_all(const unsigned char *in, size_t in_len, size_t limit, buf *out,
                       char *err, size_t errlen) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 32 + MAX_WBITS) != Z_OK) return set_error(err, errlen, "zlib: cannot start");
  size_t fed = 0;
  for (;;) {
    if (zs.avail_in == 0 && fed < in_len) {
      size_t take = in_len - fed > (1u << 30) ? (1u << 30) : in_len - fed;
      zs.next_in = (Bytef *)(in + fed);
      zs.avail_in = (uInt)take;
      fed += take;
    }
    if (out->n >= limit) {
      inflateEnd(&zs);
      return set_error(err, errlen, "decompressed data larger than %zu bytes", limit);
    }
    if (buf_reserve(out, 1 << 16)) {
      inflateEnd(&zs);
      return set_error(err, errlen, "out of memory");
    }
    size_t room = out->cap - out->n;
    if (room > limit - out->n) room = limit - out->n;
    if (room > (1u << 30)) room = 1u << 30;
    zs.next_out = out->p + out->n;
    zs.avail_out = (uInt)room;
    int rc = inflate(&zs, Z_NO_FLUSH);
    out->n += room - zs.avail_out;
    if (rc == Z_STREAM_END) break;
    int starved = zs.avail_in == 0 && fed == in_len;
    if ((rc == Z_OK || rc == Z_BUF_ERROR) && starved && zs.avail_out != 0) {
      inflateEnd(&zs);
      return set_error(err, errlen, "corrupt compressed data: truncated stream");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      const char *msg = zs.msg ? zs.msg : "bad stream";
      inflateEnd(&zs);
      return set_error(err, errlen, "corrupt compressed data: %s", msg);
    }
  }
  inflateEnd(&zs);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* R lazy-load databases                                                     */
/* ------------------------------------------------------------------------ */

void ts_rdata_index_free(ts_rdata_index *index) {
  if (!index) return;
  free(index->entries);
  index->entries = NULL;
  index->count = 0;
}

int ts_rdata_parse_index(const unsigned char *rdx, size_t rdx_len, ts_rdata_index *index,
                         char *err, size_t errlen) {
  if (!index) return set_error(err, errlen, "no index to fill");
  memset(index, 0, sizeof *index);
  if (!rdx && rdx_len) return set_error(err, errlen, "no index bytes");
  buf plain = {0};
  const unsigned char *p = rdx;
  size_t n = rdx_len;
  if (n >= 2 && rdx[0] == 0x1f && rdx[1] == 0x8b) {
    if (inflate_all(rdx, rdx_len, kMaxIndexBytes, &plain, err, errlen)) {
      free(plain.p);
      return -1;
    }
    p = plain.p;
    n = plain.n;
  }
  reader r;
  char msg[200] = "";
  rd_init(&r, p, n, msg, sizeof msg);
  int rc = -1;
  const robj *top = rd_serialization(&r);
  const robj *names, *vars = NULL, *vnames = NULL, *compressed = NULL;
  if (!top) {
    set_error(err, errlen, "R index: %s", msg);
    goto done;
  }
  if (top->type != R_VECSXP || !(names = r_names(top))) {
    set_error(err, errlen, "R index: not a named list");
    goto done;
  }
  for (size_t i = 0; i < top->n; ++i) {
    if (rstr_is(&names->strs[i], "variables")) vars = top->elts[i];
    if (rstr_is(&names->strs[i], "compressed")) compressed = top->elts[i];
  }
  if (!vars || vars->type != R_VECSXP || (vars->n && !(vnames = r_names(vars)))) {
    set_error(err, errlen, "R index: no named list `variables`");
    goto done;
  }
  uint64_t comp = 0;
  if (!compressed || r_number(compressed, 0, &comp) || comp < 1 || comp > 3) {
    set_error(err, errlen, "R index: `compressed` is missing or not 1, 2 or 3");
    goto done;
  }
  index->compression = (int)comp;
  if (vars->n && !(index->entries = calloc(vars->n, sizeof *index->entries))) {
    set_error(err, errlen, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < vars->n; ++i) {
    const rstr *name = &vnames->strs[i];
    const robj *pos = vars->elts[i];
    uint64_t off, len;
    if (name->na || name->n == 0 || name->n >= sizeof index->entries[i].name ||
        memchr(name->p, 0, name->n)) {
      set_error(err, errlen, "R index: entry %zu has an unusable name", i);
      goto done;
    }
    if (pos->n != 2 || r_number(pos, 0, &off) || r_number(pos, 1, &len) || off > SIZE_MAX ||
        len > SIZE_MAX) {
      set_error(err, errlen, "R index: entry %zu has no valid (offset, length)", i);
      goto done;
    }
    memcpy(index->entries[i].name, name->p, name->n);
    index->entries[i].offset = (size_t)off;
    index->entries[i].length = (size_t)len;
  }
  index->count = vars->n;
  rc = 0;
done:
  rd_done(&r);
  free(plain.p);
  if (rc) ts_rdata_index_free(index);
  return rc;
}

int ts_rdata_decode_strings(const unsigned char *blob, size_t blob_len, int compression,
                            unsigned char **text, size_t *len, char *err, size_t errlen) {
  if (!text || !len) return set_error(err, errlen, "no output");
  *text = NULL;
  *len = 0;
  if (!blob && blob_len) return set_error(err, errlen, "no object bytes");
  if (blob_len < 5) return set_error(err, errlen, "R object of %zu bytes is truncated", blob_len);
  size_t size = (size_t)blob[0] << 24 | (size_t)blob[1] << 16 | (size_t)blob[2] << 8 | blob[3];
  const unsigned char *stream = blob + 4;
  size_t stream_len = blob_len - 4;
  char type = 'Z';
  if (compression == 2 || compression == 3) {
    type = (char)blob[4];
    ++stream;
    --stream_len;
  } else if (compression != 1) {
    return set_error(err, errlen, "unknown R compression %d", compression);
  }
  if (size > kMaxObjectBytes)
    return set_error(err, errlen, "R object of %zu bytes is larger than the %d allowed", size,
                     kMaxObjectBytes);
  unsigned char *plain = malloc(size ? size : 1);
  if (!plain) return set_error(err, errlen, "out of memory");
  if (type == 'Z') {
    /* zlib expands at most ~1032:1; a larger claim is a corrupt header. */
    uLongf got = (uLongf)size;
    if ((size > 1024 && size / 1100 > stream_len) ||
        uncompress(plain, &got, stream, (uLong)stream_len) != Z_OK || got != size) {
      free(plain);
      return set_error(err, errlen, "R object: corrupt zlib data");
    }
  } else if (type == '0') {
    if (stream_len != size) {
      free(plain);
      return set_error(err, errlen, "R object: stored size %zu but %zu bytes", size, stream_len);
    }
    if (size) memcpy(plain, stream, size);
  } else {
    free(plain);
    if (type == '2' || type == 'X')
      return set_error(err, errlen, "R object compressed with %s: only zlib is supported",
                       type == '2' ? "bzip2" : "xz");
    return set_error(err, errlen, "R object: unknown compression type byte 0x%02x",
                     (unsigned)(unsigned char)type);
  }
  reader r;
  char msg[200] = "";
  rd_init(&r, plain, size, msg, sizeof msg);
  const robj *o = rd_serialization(&r);
  int rc = -1;
  if (!o) {
    set_error(err, errlen, "R object: %s", msg);
  } else if (o->type != R_STRSXP) {
    set_error(err, errlen, "R object is of type %d, not a character vector", o->type);
  } else {
    size_t total = 0;
    for (size_t i = 0; i < o->n; ++i) total += o->strs[i].n + 1; /* bounded by `size` */
    unsigned char *out = malloc(total ? total : 1);
    if (!out) {
      set_error(err, errlen, "out of memory");
    } else {
      size_t at = 0;
      for (size_t i = 0; i < o->n; ++i) {
        if (o->strs[i].n) memcpy(out + at, o->strs[i].p, o->strs[i].n);
        at += o->strs[i].n;
        out[at++] = '\n';
      }
      *text = out;
      *len = total;
      rc = 0;
    }
  }
  rd_done(&r);
  free(plain);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

/* The whole of a (small) plain file. */
static int read_small_file(const char *path, size_t limit, buf *out, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return set_error(err, errlen, "%s: %s", path, strerror(errno));
  for (;;) {
    if (buf_reserve(out, 1 << 16)) {
      fclose(f);
      return set_error(err, errlen, "out of memory");
    }
    size_t got = fread(out->p + out->n, 1, out->cap - out->n, f);
    out->n += got;
    if (out->n > limit) {
      fclose(f);
      return set_error(err, errlen, "%s: larger than %zu bytes", path, limit);
    }
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) return set_error(err, errlen, "%s: read error", path);
  return 0;
}

/* Appends the object `e` of the open .rdb `f` (of `file_size` bytes). */
static int append_rdata_object(FILE *f, size_t file_size, const char *path,
                               const ts_rdata_entry *e, int compression, buf *out,
                               char *err, size_t errlen) {
  if (e->offset > file_size || e->length > file_size - e->offset)
    return set_error(err, errlen, "%s: object %s at %zu+%zu lies outside the file (%zu bytes)",
                     path, e->name, e->offset, e->length, file_size);
  unsigned char *blob = malloc(e->length ? e->length : 1);
  if (!blob) return set_error(err, errlen, "out of memory");
  if (fseeko(f, (off_t)e->offset, SEEK_SET) || fread(blob, 1, e->length, f) != e->length) {
    free(blob);
    return set_error(err, errlen, "%s: cannot read object %s", path, e->name);
  }
  unsigned char *text;
  size_t len;
  char msg[256];
  int rc = ts_rdata_decode_strings(blob, e->length, compression, &text, &len, msg, sizeof msg);
  free(blob);
  if (rc) return set_error(err, errlen, "%s: object %s: %s", path, e->name, msg);
  if (out->n && buf_reserve(out, 1) == 0) out->p[out->n++] = '\n'; /* a blank line between */
  if (buf_reserve(out, len)) {
    free(text);
    return set_error(err, errlen, "out of memory");
  }
  memcpy(out->p + out->n, text, len);
  out->n += len;
  free(text);
  return 0;
}

/* `names` is a NULL-terminated list of objects to take, in that order, or
 * NULL for every object in index order. */
static int load_rdata(const char *base, const char *const *names, buf *out, char *err,
                      size_t errlen) {
  size_t bl = strlen(base);
  char *path = malloc(bl + 5);
  if (!path) return set_error(err, errlen, "out of memory");
  memcpy(path, base, bl);
  memcpy(path + bl, ".rdx", 5);
  buf rdx = {0};
  ts_rdata_index index = {0};
  FILE *f = NULL;
  int rc = -1;
  char msg[256];
  if (read_small_file(path, kMaxIndexBytes, &rdx, err, errlen)) goto done;
  if (ts_rdata_parse_index(rdx.p, rdx.n, &index, msg, sizeof msg)) {
    set_error(err, errlen, "%s: %s", path, msg);
    goto done;
  }
  memcpy(path + bl, ".rdb", 5);
  if (!(f = fopen(path, "rb"))) {
    set_error(err, errlen, "%s: %s", path, strerror(errno));
    goto done;
  }
  off_t end;
  if (fseeko(f, 0, SEEK_END) || (end = ftello(f)) < 0) {
    set_error(err, errlen, "%s: cannot seek", path);
    goto done;
  }
  if (names) {
    for (const char *const *n = names; *n; ++n) {
      size_t i = 0;
      while (i < index.count && strcmp(index.entries[i].name, *n)) ++i;
      if (i == index.count) {
        set_error(err, errlen, "%s: no object named %s", path, *n);
        goto done;
      }
      if (append_rdata_object(f, (size_t)end, path, &index.entries[i], index.compression, out,
                              err, errlen))
        goto done;
    }
  } else {
    for (size_t i = 0; i < index.count; ++i)
      if (append_rdata_object(f, (size_t)end, path, &index.entries[i], index.compression, out,
                              err, errlen))
        goto done;
  }
  rc = 0;
done:
  if (f) fclose(f);
  ts_rdata_index_free(&index);
  free(rdx.p);
  free(path);
  return rc;
}

/* Any file through zlib's gzread (which reads plain files as they are),
 * FASTA detection and stripping on the fly, at most `max` output bytes. */
static int load_file(const char *path, const ts_options *o, buf *out, char *err, size_t errlen) {
  gzFile gz = gzopen(path, "rb");
  if (!gz) return set_error(err, errlen, "%s: %s", path, errno ? strerror(errno) : "cannot open");
  gzbuffer(gz, 1 << 17);
  size_t max = o->max_bytes ? o->max_bytes : SIZE_MAX;
  unsigned char chunk[1 << 16];
  int fasta = -1;          /* unknown until the first non-blank byte */
  int line_start = 1, in_header = 0;
  int rc = 0;
  while (out->n < max) {
    int got = gzread(gz, chunk, sizeof chunk);
    if (got < 0) break; /* reported below */
    if (got == 0) break;
    if (buf_reserve(out, (size_t)got)) {
      rc = set_error(err, errlen, "out of memory");
      break;
    }
    for (int i = 0; i < got && out->n < max; ++i) {
      unsigned char c = chunk[i];
      int blank = c == ' ' || c == '\t' || c == '\n' || c == '\r';
      if (fasta < 0 && !blank) {
        fasta = c == '>';
        if (fasta && o->fasta_sequence_only) out->n = 0; /* drop leading blanks */
      }
      if (fasta > 0 && o->fasta_sequence_only) {
        if (line_start && c == '>') in_header = 1;
        line_start = c == '\n';
        if (in_header) {
          if (c == '\n') in_header = 0;
          continue;
        }
        if (blank) continue;
      }
      out->p[out->n++] = c;
    }
  }
  int errnum = Z_OK;
  const char *zmsg = gzerror(gz, &errnum);
  if (!rc && errnum != Z_OK && errnum != Z_STREAM_END)
    rc = set_error(err, errlen, "%s: %s", path,
                   errnum == Z_ERRNO ? strerror(errno) : (zmsg ? zmsg : "read error"));
  gzclose(gz);
  return rc;
}

static const char *const kAustenNovels[] = {
    "sensesensibility", "prideprejudice", "mansfieldpark", "emma",
    "northangerabbey",  "persuasion",     NULL};

/* Names the package when its files are not there at all. */
static void austen_hint(char *err, size_t errlen) {
  FILE *f = fopen(TS_JANEAUSTEN_BASE ".rdx", "rb");
  if (f) {
    fclose(f);
    return;
  }
  size_t used = err ? strnlen(err, errlen) : 0;
  if (err && used < errlen)
    snprintf(err + used, errlen - used, " (the novels come from Debian's r-cran-janeaustenr)");
}

int ts_load(const char *spec, const ts_options *options, unsigned char **data, size_t *len,
            char *err, size_t errlen) {
  if (data) *data = NULL;
  if (len) *len = 0;
  if (!spec || !data || !len) return set_error(err, errlen, "ts_load: NULL argument");
  ts_options defaults;
  ts_options_init(&defaults);
  const ts_options *o = options ? options : &defaults;
  buf out = {0};
  int rc;
  if (!strcmp(spec, "janeausten")) {
    rc = load_rdata(TS_JANEAUSTEN_BASE, kAustenNovels, &out, err, errlen);
    if (rc) austen_hint(err, errlen);
  } else if (!strncmp(spec, "janeausten:", 11)) {
    const char *one[2] = {spec + 11, NULL};
    rc = load_rdata(TS_JANEAUSTEN_BASE, one, &out, err, errlen);
    if (rc) austen_hint(err, errlen);
  } else if (!strncmp(spec, "rdata:", 6)) {
    const char *rest = spec + 6;
    const char *colon = strrchr(rest, ':');
    char *base = colon ? malloc((size_t)(colon - rest) + 1) : NULL;
    if (colon && !base) {
      rc = set_error(err, errlen, "out of memory");
    } else if (colon) {
      memcpy(base, rest, (size_t)(colon - rest));
      base[colon - rest] = 0;
      const char *one[2] = {colon + 1, NULL};
      rc = load_rdata(base, one, &out, err, errlen);
    } else {
      rc = load_rdata(rest, NULL, &out, err, errlen);
    }
    free(base);
  } else {
    rc = load_file(spec, o, &out, err, errlen);
  }
  if (!rc && o->max_bytes && out.n > o->max_bytes) out.n = o->max_bytes;
  if (!rc && !out.p && buf_reserve(&out, 1)) rc = set_error(err, errlen, "out of memory");
  if (rc) {
    free(out.p);
    return -1;
  }
  *data = out.p;
  *len = out.n;
  return 0;
}
