// libFuzzer target for the NCCL id file reader (src/train/data_parallel.h):
// any bytes give an id or kInvalidArgument, never a crash; an id read back
// from its own text is the same id.
#include <cstddef>
#include <cstdint>
#include <string>

#include "train/data_parallel.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<memmamba::NcclId> id = memmamba::ParseNcclIdText(text);
  if (!id.ok()) {
    if (memmamba::CodeOf(id.status()) != memmamba::ErrorCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  absl::StatusOr<memmamba::NcclId> again =
      memmamba::ParseNcclIdText(memmamba::NcclIdToHex(*id) + "\n");
  if (!again.ok() || *again != *id) __builtin_trap();
  return 0;
}
