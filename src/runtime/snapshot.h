// Session snapshots (DESIGN 5): a stream's whole state as bytes, to be
// restored later, in another process or on another machine, continuing
// exactly as if the stream had never stopped. The format is
// schemas/snapshot.fbs (read its header comment first).
//
// Reading is strict, because a snapshot may come from anywhere. Every check
// passes before the restored state replaces a session's; failures are
// reported in this order, each with its own code:
//   1. size 0, a wrong file identifier, a size the format cannot have
//      (>= 2 GiB), the outer table failing the flatbuffers verifier, no
//      checksum field or an unknown checksum kind: kCorruptFile;
//   2. the checksum over the file's bytes does not match: kChecksum. It
//      covers the version too, so damage is never taken for a newer file;
//      its rule is the file's checksum_kind (XXH64 of the whole file in
//      format version 1, block-wise XXH3 spread over the model's threads
//      since version 2);
//   3. a format version newer than kSnapshotFormatVersion: kVersion (none,
//      or 0: kCorruptFile);
//   4. the payload failing the verifier; a shape field out of range; any
//      vector whose length disagrees with the shape (conv, ssm, win_max,
//      pool arrays); more notes than pool_capacity; note windows not
//      strictly ascending or not of a completed window: kCorruptFile;
//   5. (restore only) a model fingerprint other than the target model's:
//      kModelMismatch.
// The state is a plain copy (a pool holds nothing derived from its notes,
// see PoolEntry), each layer's notes in one block; in format version 2 the
// hashing and the copy share one parallel region, each block copied right
// after it is hashed (ReadSnapshot).
// Values are not range-checked: floats are restored bit for bit.
#ifndef MEMMAMBA_RUNTIME_SNAPSHOT_H_
#define MEMMAMBA_RUNTIME_SNAPSHOT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "common/status.h"
#include "model/model.h"
#include "runtime/state.h"

namespace memmamba {

// The format version this library writes, and the newest it reads.
inline constexpr uint32_t kSnapshotFormatVersion = 2;

// What a snapshot says about itself (InspectSnapshot).
struct SnapshotInfo {
  uint32_t format_version = 0;
  uint64_t model_fingerprint = 0;
  int64_t position = 0;
  int64_t n_layer = 0, d_model = 0, d_inner = 0, d_state = 0, d_conv = 0, summary_dim = 0,
          note_window = 0, pool_capacity = 0;
  PoolPolicy pool_policy = PoolPolicy::kPriority;
  int64_t notes_total = 0;    // notes over all layers' pools
  uint64_t state_bytes = 0;   // RawStateBytes of the state it holds
};

// The bytes of state a snapshot has to carry, the baseline of the size
// target in bench/: position (8) + per layer 4 * (|conv| + |ssm| + |win_max|)
// + per note window index (8) + score (4) + summary (4 * summary_dim);
// the same as StreamState::Bytes().
uint64_t RawStateBytes(const StreamState& state);

// Exact size in bytes of the snapshot WriteSnapshot makes of `state`,
// without serialising the state's values. Errors: kUnsupported (a state
// too large for the format's 2 GiB).
[[nodiscard]] absl::StatusOr<size_t> SnapshotSize(const Model& model, const StreamState& state);

// Serialises `state` (a stream of `model`) into the buffer `place` returns
// for the snapshot's exact size (called once, before anything is written;
// its error is returned as is). The arrays are copied from the state
// straight into that buffer, and checksummed there, on the model's threads.
// Errors: kUnsupported (too large), and place's.
[[nodiscard]] absl::Status WriteSnapshotInto(
    const Model& model, const StreamState& state,
    absl::FunctionRef<absl::StatusOr<uint8_t*>(size_t size)> place);

// The same into a buffer of its own, then `sink` is called once with the
// finished bytes, valid during the call only; returns what `sink` returns.
[[nodiscard]] absl::Status WriteSnapshot(
    const Model& model, const StreamState& state,
    absl::FunctionRef<absl::Status(const uint8_t* data, size_t size)> sink);

// Checks a snapshot (steps 1-4 above) without a model and describes it.
[[nodiscard]] absl::StatusOr<SnapshotInfo> InspectSnapshot(const void* data, size_t size);

// Checks a snapshot against `model` (steps 1-5) and fills *out with its
// state; returns OK only if every check passed. *out is a spare state (it
// may reuse its allocations): on error its contents are unspecified, so the
// caller swaps it in only on success (Session::Restore does).
[[nodiscard]] absl::Status ReadSnapshot(const Model& model, const void* data, size_t size,
                                        StreamState* out);

// The whole file at `path`, in memory aligned for reading. Errors: kIo (cannot
// open or read), kCorruptFile (larger than any snapshot can be).
[[nodiscard]] absl::StatusOr<std::string> ReadSnapshotFile(const std::string& path);

// For tests and tools that craft snapshots. SealSnapshot wraps the bytes of
// a Snapshot flatbuffer (`payload`, not checked) into a complete file of
// format `version` with a valid checksum (of the kind that version
// writes). ResealSnapshot recomputes the
// checksum of a file after its bytes were edited; it returns false (and
// leaves the bytes) when the outer table cannot be located.
std::string SealSnapshot(std::string_view payload, uint32_t version);
bool ResealSnapshot(std::string* file);

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_SNAPSHOT_H_
