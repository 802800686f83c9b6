// A session: one token stream on a model, with transactional feeds (a
// failed call leaves the stream exactly as it was).
#ifndef MEMMAMBA_RUNTIME_SESSION_H_
#define MEMMAMBA_RUNTIME_SESSION_H_

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "common/status.h"
#include "model/model.h"
#include "runtime/forward.h"
#include "runtime/state.h"

namespace memmamba {

class Session {
 public:
  static constexpr int64_t kDefaultMaxChunk = 256;

  Session(const Model* model, int64_t max_chunk);

  // Feeds n tokens in internal blocks of at most max_chunk tokens. `logits`
  // holds `capacity` floats. Validates everything before any work.
  [[nodiscard]] absl::Status Feed(const int32_t* tokens, size_t n, LogitsMode mode,
                                  float* logits, size_t capacity);

  // One token for each of n distinct sessions of one model, batched.
  [[nodiscard]] static absl::Status StepMany(Session* const* sessions, size_t n,
                                             const int32_t* tokens, float* logits,
                                             size_t capacity);

  void Reset() { state_.Reset(model_->config()); }

  // Replaces the stream's state with the one `fill` writes into a scratch
  // state (it may reuse that state's allocations and must set every field).
  // If `fill` fails the session is exactly as before. Snapshot restore
  // (runtime/snapshot.h) goes through here.
  [[nodiscard]] absl::Status Restore(absl::FunctionRef<absl::Status(StreamState*)> fill);

  const Model& model() const { return *model_; }
  const StreamState& state() const { return state_; }

 private:
  [[nodiscard]] absl::Status CheckTokens(const int32_t* tokens, size_t n) const;

  const Model* model_;
  int64_t max_chunk_;
  StreamState state_;
  StreamState scratch_;  // the feed works here and is swapped in on success
  Workspace workspace_;
};

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_SESSION_H_
