// The NCCL unique id of a data-parallel group (DESIGN 6): made by one rank,
// handed to every rank by the caller, through a file, an environment
// variable or its own channel. The group itself is the trainers'
// (Trainer::JoinDataParallel).
#ifndef MEMMAMBA_TRAIN_DATA_PARALLEL_H_
#define MEMMAMBA_TRAIN_DATA_PARALLEL_H_

#include <array>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace memmamba {

using NcclId = std::array<uint8_t, 128>;

// A new id from NCCL (through the CUDA backend). kUnsupported where the
// backend or NCCL cannot be opened, kComm for an NCCL error.
[[nodiscard]] absl::StatusOr<NcclId> CreateNcclId();

// 256 lowercase hex digits, and back (kInvalidArgument for anything else).
std::string NcclIdToHex(const NcclId& id);
[[nodiscard]] absl::StatusOr<NcclId> NcclIdFromHex(const std::string& hex);

// The id in the text of an id file: its first whitespace-separated word as
// NcclIdFromHex reads it (kInvalidArgument otherwise). The file reader's
// parser, fuzzed by tests/fuzz/nccl_id_fuzz.cc.
[[nodiscard]] absl::StatusOr<NcclId> ParseNcclIdText(const std::string& text);

// The id as hex in a file written atomically (temporary, flush, rename), so
// a reader never sees half of it; and read back, waiting up to `timeout_ms`
// for the file to appear (kIo when it does not).
[[nodiscard]] absl::Status WriteNcclIdFile(const std::string& path, const NcclId& id);
[[nodiscard]] absl::StatusOr<NcclId> ReadNcclIdFile(const std::string& path, int64_t timeout_ms);

}  // namespace memmamba

#endif  // MEMMAMBA_TRAIN_DATA_PARALLEL_H_
