// The note pool of one layer (DESIGN 2.3 step 5, "Insert") and the note
// score, shared by every view of the model so that keep/evict decisions are
// computed by the same code everywhere.
#ifndef MEMMAMBA_RUNTIME_POOL_H_
#define MEMMAMBA_RUNTIME_POOL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"

namespace memmamba {

// One note. Immutable once inserted, so pools (and session copies) share
// entries by pointer. A note is only what DESIGN 2.3 step 5 makes: the reads
// fold the key and value projections into the query and output
// (Backend::PoolAttendFolded), so nothing derived is kept beside it.
struct PoolEntry {
  int64_t window = 0;              // index of the window the note summarises
  float score = 0.0f;              // σ(...) of DESIGN 2.3 step 5
  const float* summary = nullptr;  // ŝ [S], owned by the NoteBlock the entry lives in
};

// Storage for n notes in one allocation: a note taken while streaming is a
// block of one, a restored pool a block of all its notes (no allocation per
// note). The entries share ownership of their block, so a block lives until
// its last note leaves every pool; a layer's pool thus pins at most one
// restored block of ≤ P notes beside its own: memory stays bounded.
struct NoteBlock {
  std::vector<PoolEntry> entries;
  std::unique_ptr<float[]> summaries;  // [n, S]; entries[i].summary is row i
};

using PoolEntryPtr = std::shared_ptr<const PoolEntry>;
// Entries in ascending window order.
using Pool = std::vector<PoolEntryPtr>;

// A block of n notes with room for summaries of S floats (not initialised:
// the caller writes every one).
std::shared_ptr<NoteBlock> MakeNoteBlock(int64_t n, int64_t S);
// Note i of `block`, sharing ownership of the whole block.
inline PoolEntryPtr ShareNote(const std::shared_ptr<NoteBlock>& block, int64_t i) {
  return PoolEntryPtr(block, &block->entries[static_cast<size_t>(i)]);
}

// score = σ(w·(m − mean(m)) + b) over the D channels of the window max `m`.
// A fixed sequential reduction order: every caller gets the same bits.
float NoteScore(const float* m, int64_t D, const float* w, float b);

// Inserts a note that passed the threshold (DESIGN 2.3 "Insert"). Returns
// whether it was kept. FIFO drops the oldest when full; PRIORITY replaces
// the lowest score (ties: the oldest) iff the new score is strictly greater.
bool InsertNote(PoolPolicy policy, int64_t capacity, PoolEntryPtr note, Pool* pool);

// Pool membership over whole sequences (training, DESIGN 2.4): for each of B
// sequences whose nw complete windows have `scores` ([B·nw]), starting from
// the pool initial[b] (empty where `initial` or initial[b] is NULL; its notes
// are older than the sequence's windows), versions[b][k] lists the notes in
// the pool that tokens of window k read, k < n_versions, in pool order, as
// InsertNote decides it: the sequence's window j as j, note i of initial[b]
// as −1 − i. Adds the number of windows over the threshold to *kept.
using PoolVersions = std::vector<std::vector<std::vector<int32_t>>>;
PoolVersions ComputePoolVersions(const ModelConfig& config, const float* scores, int64_t B,
                                 int64_t nw, int64_t n_versions, const Pool* const* initial,
                                 int64_t* kept);

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_POOL_H_
