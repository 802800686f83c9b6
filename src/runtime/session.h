// A session: one token stream on a model, with transactional feeds (a
// failed call leaves the stream exactly as it was). On an MM_DEVICE_CUDA
// model the stream's state lives on the GPU (runtime/device_sessions.h):
// state() then holds the position, and the rest once SyncState() has
// brought it down; validation still happens before any work, but a device
// failure in the middle of a feed leaves that stream undefined (reset or
// restore it).
#ifndef MEMMAMBA_RUNTIME_SESSION_H_
#define MEMMAMBA_RUNTIME_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "common/status.h"
#include "model/model.h"
#include "runtime/forward.h"
#include "runtime/sample.h"
#include "runtime/state.h"

namespace memmamba {

class Session {
 public:
  static constexpr int64_t kDefaultMaxChunk = 256;

  // A session at position 0: on a device model it takes a slot there
  // (kOutOfMemory, or the device's error).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Session>> Create(const Model* model,
                                                                      int64_t max_chunk);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Feeds n tokens in internal blocks of at most max_chunk tokens. `logits`
  // holds `capacity` floats. Validates everything before any work.
  [[nodiscard]] absl::Status Feed(const int32_t* tokens, size_t n, LogitsMode mode,
                                  float* logits, size_t capacity);

  // One token for each of n distinct sessions of one model, batched.
  [[nodiscard]] static absl::Status StepMany(Session* const* sessions, size_t n,
                                             const int32_t* tokens, float* logits,
                                             size_t capacity);
  // StepMany, then each session's next token chosen from its logits
  // (runtime/sample.h) into next[i]; on a GPU model the choice is made on
  // the device and only the ids come back.
  [[nodiscard]] static absl::Status StepManySample(Session* const* sessions, size_t n,
                                                   const int32_t* tokens,
                                                   const SampleOptions& options, int32_t* next);

  [[nodiscard]] absl::Status Reset();
  // Zeroes every layer's recurrent state (scan state, conv inputs) and keeps
  // the position, the pools and the pending note windows.
  [[nodiscard]] absl::Status ResetRecurrent();

  // Replaces the stream's state with the one `fill` writes into a scratch
  // state (it may reuse that state's allocations and must set every field).
  // If `fill` fails the session is exactly as before. Snapshot restore
  // (runtime/snapshot.h) goes through here.
  [[nodiscard]] absl::Status Restore(absl::FunctionRef<absl::Status(StreamState*)> fill);

  const Model& model() const { return *model_; }
  const StreamState& state() const { return state_; }
  // Brings state() up to date with the device (a no-op on the CPU): before
  // a snapshot or a look at the pools.
  [[nodiscard]] absl::Status SyncState();
  // Notes in layer `layer`'s pool, or -1 (a layer out of range, a device
  // error).
  int32_t PoolSize(uint32_t layer);
  // state().Bytes() of the stream's current state (0 after a device error);
  // a device session reads only its pools' fill.
  uint64_t StateBytes();

 private:
  Session(const Model* model, int64_t max_chunk);
  [[nodiscard]] absl::Status CheckTokens(const int32_t* tokens, size_t n) const;
  [[nodiscard]] absl::Status FeedDevice(const int32_t* tokens, size_t n, LogitsMode mode,
                                        float* logits);
  // StepMany and StepManySample (sample != nullptr: next receives the ids).
  [[nodiscard]] static absl::Status StepManyImpl(Session* const* sessions, size_t n,
                                                 const int32_t* tokens, float* logits,
                                                 size_t capacity, const SampleOptions* sample,
                                                 int32_t* next);
  [[nodiscard]] static absl::Status StepManyDevice(Session* const* sessions, size_t n,
                                                   const int32_t* tokens, float* logits,
                                                   const SampleOptions* sample, int32_t* next);

  const Model* model_;
  int64_t max_chunk_;
  StreamState state_;
  StreamState scratch_;  // long feeds and restores work here; swapped in on success
  Workspace workspace_;
  std::vector<float> sample_logits_;  // StepManySample's logits on the CPU
  int slot_ = -1;  // the stream's slot on the device (device models)
};

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_SESSION_H_
