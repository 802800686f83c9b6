/*
 * text_source: byte streams from real data, for the samples that train and
 * evaluate byte-level models (vocab 256).
 *
 * Sources (a "spec"):
 *   janeausten          Jane Austen's six novels, in order of publication,
 *                       from Debian's r-cran-janeaustenr (an R lazy-load
 *                       database; decoded here, no R needed). Lines are
 *                       joined with '\n', novels separated by a blank line.
 *   janeausten:NAME     one novel: sensesensibility, prideprejudice,
 *                       mansfieldpark, emma, northangerabbey, persuasion.
 *   rdata:BASE[:NAME]   any R lazy-load database BASE.rdx + BASE.rdb whose
 *                       objects are character vectors (all of them in index
 *                       order, or the one called NAME).
 *   PATH                any file, plain or gzip-compressed (detected by its
 *                       bytes, not its name): a FASTA genome (e.g.
 *                       /usr/share/htslib-test/test/ce.fa, or the .fasta.gz
 *                       references of ragout-examples), a log
 *                       (/usr/share/logstalgia/example.log), a changelog.gz.
 *
 * A file whose first non-blank byte is '>' is FASTA; with
 * ts_options.fasta_sequence_only its header lines and all line breaks are
 * dropped, leaving the bases.
 *
 * Everything read is untrusted: every length and offset is checked, and a
 * malformed, truncated or unsupported input is an error with a message,
 * never a crash. Plain C99 + zlib; no global state; any thread.
 */
#ifndef MEMMAMBA_SAMPLES_TEXT_SOURCE_H_
#define MEMMAMBA_SAMPLES_TEXT_SOURCE_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where Debian's r-cran-janeaustenr keeps the novels (without .rdx/.rdb). */
#define TS_JANEAUSTEN_BASE "/usr/lib/R/site-library/janeaustenr/data/Rdata"

typedef struct ts_options {
  int fasta_sequence_only; /* FASTA: drop '>' header lines and line breaks */
  size_t max_bytes;        /* stop after this many bytes; 0 = no limit */
} ts_options;

/* Defaults: keep FASTA as it is, no limit. */
void ts_options_init(ts_options *options);

/* Loads the source `spec` (see above). `options` may be NULL (defaults).
 * On success returns 0, *data is a malloc'ed buffer of *len bytes (free()
 * it; never NULL, also for an empty source) and err is untouched. On
 * failure returns -1, *data = NULL, *len = 0 and err (errlen bytes, may be
 * NULL with errlen 0) holds a message. */
int ts_load(const char *spec, const ts_options *options, unsigned char **data,
            size_t *len, char *err, size_t errlen);

/* --- R lazy-load databases, from memory (what ts_load uses; exposed for
 *     tests and for callers with their own I/O) --------------------------- */

typedef struct ts_rdata_entry {
  char name[64];          /* the object's name (longer names are refused) */
  size_t offset, length;  /* its bytes in the .rdb */
} ts_rdata_entry;

typedef struct ts_rdata_index {
  ts_rdata_entry *entries; /* malloc'ed; free with ts_rdata_index_free */
  size_t count;
  int compression;         /* 1 = zlib, 2 or 3 = typed (byte 5 says which) */
} ts_rdata_index;

/* Parses the .rdx bytes (a gzip'ed or plain R serialization of
 * list(variables = list(NAME = c(offset, length), ...), references, compressed)).
 * Returns 0 or -1 with a message; on failure *index is empty. */
int ts_rdata_parse_index(const unsigned char *rdx, size_t rdx_len, ts_rdata_index *index,
                         char *err, size_t errlen);

/* Frees what ts_rdata_parse_index allocated; safe on an empty index. */
void ts_rdata_index_free(ts_rdata_index *index);

/* Decodes one object of an .rdb (its `length` bytes at `offset`, as the
 * index says) that must be a character vector: its elements joined by '\n',
 * each followed by '\n' (NA as an empty line), in a malloc'ed *text of
 * *len bytes. Returns 0 or -1 with a message (*text = NULL, *len = 0). */
int ts_rdata_decode_strings(const unsigned char *blob, size_t blob_len, int compression,
                            unsigned char **text, size_t *len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* MEMMAMBA_SAMPLES_TEXT_SOURCE_H_ */
