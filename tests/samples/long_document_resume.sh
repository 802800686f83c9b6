#!/bin/sh
# Snapshots across processes: samples/c/long_document streams a genome and
# writes a snapshot file at every contig end; a second process resumes from
# one of them and must print the same lines (logits hashes, bit for bit) for
# every later contig as the uninterrupted run.
#   long_document_resume.sh PROGRAM WORK_DIR
set -eu
prog=$1
work=$2
rm -rf "$work"
mkdir -p "$work/snapshots"
input=/usr/share/htslib-test/test/ce.fa  # Debian's htslib-test: C. elegans, 7 contigs
if [ ! -r "$input" ]; then
  # Without it: a made-up genome of 5 contigs.
  input=$work/genome.fa
  awk 'BEGIN { srand(7); for (c = 1; c <= 5; c++) { print ">contig" c;
         for (l = 0; l < 40; l++) { s = ""; for (i = 0; i < 60; i++) s = s substr("ACGT", int(rand() * 4) + 1, 1); print s } } }' > "$input"
fi
"$prog" "$input" --limit 300 --threads 2 --snapshots "$work/snapshots" > "$work/uninterrupted.txt"
snapshot=$(ls "$work/snapshots"/*.mmsnap | sed -n 3p)
"$prog" "$input" --limit 300 --threads 2 --resume "$snapshot" > "$work/resumed.txt"
grep '^section' "$work/uninterrupted.txt" | tail -n +4 > "$work/expected.txt"
grep '^section' "$work/resumed.txt" > "$work/got.txt"
cat "$work/resumed.txt"
if [ ! -s "$work/got.txt" ] || ! cmp -s "$work/expected.txt" "$work/got.txt"; then
  echo "resumed run differs from the uninterrupted one:" >&2
  diff "$work/expected.txt" "$work/got.txt" >&2 || true
  exit 1
fi
echo "resumed from $snapshot: $(wc -l < "$work/got.txt") sections identical"
