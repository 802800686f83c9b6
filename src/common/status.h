// Internal error handling: absl::Status carrying the public error code.
//
// Every fallible internal function returns absl::Status / absl::StatusOr<T>.
// The public mm_status value travels as a payload so that the C layer can
// return "the most specific error" without string matching; the canonical
// absl code is chosen to match it for readers who only look at that.
#ifndef MEMMAMBA_COMMON_STATUS_H_
#define MEMMAMBA_COMMON_STATUS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace memmamba {

// Mirrors the public mm_status values (memmamba.h); src/api static_asserts
// that the two agree. Values are fixed forever.
enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = -1,   // NULL pointer, bad enum, bad count
  kStructSize = -2,        // options struct with an unknown struct_size
  kTokenOutOfRange = -3,   // token id >= vocab_size (or negative)
  kOutOfMemory = -4,
  kIo = -5,                // open/read/write/rename failed
  kCorruptFile = -6,       // truncated or malformed file
  kTensorMissing = -7,     // a required tensor is absent
  kTensorShape = -8,       // tensor of the wrong shape
  kTensorDtype = -9,       // tensor of an unsupported dtype
  kNonFinite = -10,        // NaN/Inf in weights or results
  kConfig = -11,           // invalid model configuration
  kModelMismatch = -12,    // handles built on different models
  kUnsupported = -13,      // feature/device not available in this build
  kBufferTooSmall = -14,   // caller buffer too small
  kInternal = -15,         // a bug: please report
  kChecksum = -16,         // snapshot checksum mismatch (corrupted bytes)
  kVersion = -17,          // snapshot format version newer than this library
  kNoDevice = -18,         // CUDA backend present, no usable GPU or driver
  kComm = -19,             // a collective between data-parallel trainers failed (NCCL)
};

// The lowest (most negative) ErrorCode value.
inline constexpr ErrorCode kLowestErrorCode = ErrorCode::kComm;

// Builds a status with the given public code and message.
absl::Status Error(ErrorCode code, std::string_view message);

template <typename... Args>
absl::Status Errorf(ErrorCode code, const Args&... args) {
  return Error(code, absl::StrCat(args...));
}

// Extracts the public code from a status (kOk for OK, a best match from the
// canonical code when no payload is present).
ErrorCode CodeOf(const absl::Status& status);

}  // namespace memmamba

#define MM_RETURN_IF_ERROR(expr)                \
  do {                                          \
    ::absl::Status mm_status_ = (expr);         \
    if (!mm_status_.ok()) return mm_status_;    \
  } while (0)

#define MM_CONCAT_INNER_(a, b) a##b
#define MM_CONCAT_(a, b) MM_CONCAT_INNER_(a, b)
#define MM_ASSIGN_OR_RETURN(lhs, rexpr) \
  MM_ASSIGN_OR_RETURN_IMPL_(MM_CONCAT_(mm_statusor_, __LINE__), lhs, rexpr)
#define MM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                              \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

#endif  // MEMMAMBA_COMMON_STATUS_H_
