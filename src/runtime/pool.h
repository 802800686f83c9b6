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
// entries by pointer.
struct PoolEntry {
  int64_t window = 0;          // index of the window the note summarises
  float score = 0.0f;          // σ(...) of DESIGN 2.3 step 5
  std::vector<float> summary;  // ŝ [S]
  // Derived from `summary` (not state): for each reader of this layer's pool
  // (ModelPlan::readers), its key then value projection, [n_readers][2][S].
  std::vector<float> kv;

  const float* key(int reader, int64_t S) const { return kv.data() + (2 * reader) * S; }
  const float* value(int reader, int64_t S) const { return kv.data() + (2 * reader + 1) * S; }
};

using PoolEntryPtr = std::shared_ptr<const PoolEntry>;
// Entries in ascending window order.
using Pool = std::vector<PoolEntryPtr>;

// score = σ(w·(m − mean(m)) + b) over the D channels of the window max `m`.
// A fixed sequential reduction order: every caller gets the same bits.
float NoteScore(const float* m, int64_t D, const float* w, float b);

// Inserts a note that passed the threshold (DESIGN 2.3 "Insert"). Returns
// whether it was kept. FIFO drops the oldest when full; PRIORITY replaces
// the lowest score (ties: the oldest) iff the new score is strictly greater.
bool InsertNote(PoolPolicy policy, int64_t capacity, PoolEntryPtr note, Pool* pool);

// Pool membership over whole sequences (training, DESIGN 2.4): for each of B
// sequences whose nw complete windows have `scores` ([B·nw]), starting from
// an empty pool, versions[b][k] lists the windows (ascending) in the pool
// that tokens of window k read, k < n_versions, as InsertNote decides it.
// Adds the number of notes over the threshold to *kept.
using PoolVersions = std::vector<std::vector<std::vector<int32_t>>>;
PoolVersions ComputePoolVersions(const ModelConfig& config, const float* scores, int64_t B,
                                 int64_t nw, int64_t n_versions, int64_t* kept);

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_POOL_H_
