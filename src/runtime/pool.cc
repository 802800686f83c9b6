#include "runtime/pool.h"

#include <cmath>

namespace memmamba {

float NoteScore(const float* m, int64_t D, const float* w, float b) {
  float mean = 0.0f;
  for (int64_t d = 0; d < D; ++d) mean += m[d];
  mean /= static_cast<float>(D);
  float dot = 0.0f;
  for (int64_t d = 0; d < D; ++d) dot += w[d] * (m[d] - mean);
  return 1.0f / (1.0f + std::exp(-(dot + b)));
}

std::shared_ptr<NoteBlock> MakeNoteBlock(int64_t n, int64_t S) {
  auto block = std::make_shared<NoteBlock>();
  block->entries.resize(static_cast<size_t>(n));
  block->summaries.reset(new float[static_cast<size_t>(n * S)]);
  for (int64_t i = 0; i < n; ++i) block->entries[i].summary = block->summaries.get() + i * S;
  return block;
}

PoolVersions ComputePoolVersions(const ModelConfig& config, const float* scores, int64_t B,
                                 int64_t nw, int64_t n_versions, const Pool* const* initial,
                                 int64_t* kept) {
  PoolVersions versions(B);
  for (int64_t b = 0; b < B; ++b) {
    // Entries carry their id in `window`; InsertNote reads only scores and order.
    Pool pool;
    if (initial != nullptr && initial[b] != nullptr) {
      for (size_t i = 0; i < initial[b]->size(); ++i) {
        auto entry = std::make_shared<PoolEntry>();
        entry->window = -1 - static_cast<int64_t>(i);
        entry->score = (*initial[b])[i]->score;
        pool.push_back(std::move(entry));
      }
    }
    auto& vs = versions[b];
    vs.reserve(n_versions);
    for (int64_t k = 0; k < n_versions; ++k) {
      std::vector<int32_t> windows;
      for (const PoolEntryPtr& e : pool) windows.push_back(static_cast<int32_t>(e->window));
      vs.push_back(std::move(windows));
      if (k < nw && scores[b * nw + k] > config.note_threshold) {
        ++*kept;
        auto entry = std::make_shared<PoolEntry>();
        entry->window = k;
        entry->score = scores[b * nw + k];
        InsertNote(config.pool_policy, config.pool_capacity, std::move(entry), &pool);
      }
    }
  }
  return versions;
}

bool InsertNote(PoolPolicy policy, int64_t capacity, PoolEntryPtr note, Pool* pool) {
  if (capacity <= 0) return false;
  if (static_cast<int64_t>(pool->size()) < capacity) {
    pool->push_back(std::move(note));
    return true;
  }
  if (policy == PoolPolicy::kFifo) {
    pool->erase(pool->begin());
    pool->push_back(std::move(note));
    return true;
  }
  // PRIORITY: the first minimum in window order is the oldest among ties.
  size_t victim = 0;
  for (size_t i = 1; i < pool->size(); ++i) {
    if ((*pool)[i]->score < (*pool)[victim]->score) victim = i;
  }
  if (!(note->score > (*pool)[victim]->score)) return false;
  pool->erase(pool->begin() + victim);
  pool->push_back(std::move(note));  // the newest window: order is kept
  return true;
}

}  // namespace memmamba
