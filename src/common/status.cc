#include "common/status.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace memmamba {
namespace {

constexpr char kPayloadUrl[] = "memmamba/error_code";

absl::StatusCode CanonicalFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return absl::StatusCode::kOk;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kStructSize:
    case ErrorCode::kConfig:
    case ErrorCode::kTensorShape:
    case ErrorCode::kTensorDtype:
    case ErrorCode::kModelMismatch: return absl::StatusCode::kInvalidArgument;
    case ErrorCode::kTokenOutOfRange:
    case ErrorCode::kBufferTooSmall: return absl::StatusCode::kOutOfRange;
    case ErrorCode::kOutOfMemory: return absl::StatusCode::kResourceExhausted;
    case ErrorCode::kIo: return absl::StatusCode::kUnavailable;
    case ErrorCode::kCorruptFile:
    case ErrorCode::kChecksum: return absl::StatusCode::kDataLoss;
    case ErrorCode::kVersion: return absl::StatusCode::kUnimplemented;
    case ErrorCode::kNoDevice: return absl::StatusCode::kUnavailable;
    case ErrorCode::kComm: return absl::StatusCode::kUnavailable;
    case ErrorCode::kTensorMissing: return absl::StatusCode::kNotFound;
    case ErrorCode::kNonFinite: return absl::StatusCode::kFailedPrecondition;
    case ErrorCode::kUnsupported: return absl::StatusCode::kUnimplemented;
    case ErrorCode::kInternal: return absl::StatusCode::kInternal;
  }
  return absl::StatusCode::kInternal;
}

}  // namespace

absl::Status Error(ErrorCode code, std::string_view message) {
  if (code == ErrorCode::kOk) return absl::OkStatus();
  absl::Status status(CanonicalFor(code), absl::string_view(message.data(), message.size()));
  status.SetPayload(kPayloadUrl, absl::Cord(std::to_string(static_cast<int>(code))));
  return status;
}

ErrorCode CodeOf(const absl::Status& status) {
  if (status.ok()) return ErrorCode::kOk;
  if (auto payload = status.GetPayload(kPayloadUrl)) {
    int value = 0;
    if (absl::SimpleAtoi(std::string(*payload), &value) && value < 0 &&
        value >= static_cast<int>(kLowestErrorCode)) {
      return static_cast<ErrorCode>(value);
    }
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: return ErrorCode::kInvalidArgument;
    case absl::StatusCode::kOutOfRange: return ErrorCode::kInvalidArgument;
    case absl::StatusCode::kResourceExhausted: return ErrorCode::kOutOfMemory;
    case absl::StatusCode::kDataLoss: return ErrorCode::kCorruptFile;
    case absl::StatusCode::kNotFound: return ErrorCode::kIo;
    case absl::StatusCode::kUnimplemented: return ErrorCode::kUnsupported;
    default: return ErrorCode::kInternal;
  }
}

}  // namespace memmamba
