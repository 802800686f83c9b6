// Sessions of an MM_DEVICE_CUDA model (DESIGN 3, 5): the model's weights on
// the GPU (matrices widened to f32, exactly), and every session's state (conv
// and SSM state, the pending window's maxima, the pools) in a slot of
// device arrays laid out slot-major, so one batched call steps any set of
// sessions. The forward follows runtime/forward.cc op for op through the
// kernels of libmemmamba_cuda. A call either steps B streams by one row each
// (every row reads its stream's pools as they are; up to 8 streams through
// the fused decode kernels, kernels/decode.cu), or runs one stream over
// T rows that may close several note windows: each layer's notes for those
// windows and the pool's version after each of them are computed on the
// device (mmc_chunk_pool_versions), and each row reads its window's version.
// Either way the notes of the windows a call closes enter the pools after
// all its layers have read.
//
// The host keeps each session's position; the state stays on the device
// until a snapshot (Download) or a restore (Upload). Calls are serialised by
// a mutex: sessions of one model may be used from several threads.
#ifndef MEMMAMBA_RUNTIME_DEVICE_SESSIONS_H_
#define MEMMAMBA_RUNTIME_DEVICE_SESSIONS_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "model/config.h"
#include "runtime/forward.h"
#include "runtime/sample.h"
#include "runtime/state.h"

namespace memmamba {

class Model;

class DeviceSessions {
 public:
  // The device twin of `model` (which must outlive it) on CUDA device 0.
  // kUnsupported without libmemmamba_cuda or for a shape the kernels do
  // not handle, kNoDevice without a GPU, kOutOfMemory.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DeviceSessions>> Create(
      const Model& model);
  ~DeviceSessions();
  DeviceSessions(const DeviceSessions&) = delete;
  DeviceSessions& operator=(const DeviceSessions&) = delete;

  // A slot in the state of a fresh stream (position 0, empty pools); the
  // arrays grow (doubling) when every slot is taken.
  [[nodiscard]] absl::StatusOr<int> Acquire();
  void Release(int slot);
  [[nodiscard]] absl::Status Reset(int slot);
  // A stream's whole state in and out (snapshots; the position is the
  // caller's). Upload expects a state sized for the model (Reset or a
  // checked snapshot).
  [[nodiscard]] absl::Status Upload(int slot, const StreamState& state);
  [[nodiscard]] absl::Status Download(int slot, StreamState* state);
  // Notes in each layer's pool of a slot.
  [[nodiscard]] absl::Status PoolSizes(int slot, std::vector<int32_t>* sizes);

  // T tokens for each of B streams (tokens [B·T], stream b's at b·T) in the
  // given slots, at the given positions: B = 1 and any T, or any B and
  // T = 1. Logits as Forward (runtime/forward.h) asks: kLast gives B rows,
  // kAll B·T. Slots must be distinct.
  [[nodiscard]] absl::Status Forward(const int* slots, const int64_t* positions, int64_t B,
                                     int64_t T, const int32_t* tokens, LogitsMode mode,
                                     float* logits);
  // One token for each of B streams, as Forward, then each stream's next
  // token chosen from its logits on the device (runtime/sample.h, at the
  // position after the step) into next [B] on the host.
  [[nodiscard]] absl::Status StepSample(const int* slots, const int64_t* positions, int64_t B,
                                        const int32_t* tokens, const SampleOptions& options,
                                        int32_t* next);

  // The most streams one step takes (a block per row in the slot kernels).
  static constexpr int64_t kMaxStreams = 65535;
  // The most tokens one stream's call takes: a longer feed is cut into
  // calls of this size (results do not depend on it), so that no kernel's
  // grid nor a call's pool versions (n_layer · capacity ids per window the
  // call closes) grow with the feed.
  int64_t MaxRowsPerCall() const;

  std::mutex& mutex() { return mu_; }
  const std::string& device_name() const;

 private:
  struct Impl;
  explicit DeviceSessions(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::mutex mu_;
};

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_DEVICE_SESSIONS_H_
