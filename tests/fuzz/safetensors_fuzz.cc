// libFuzzer target for the safetensors reader (and through it the JSON
// parser): any byte string must either be refused with a status or yield a
// reader whose every tensor can be read back without touching memory
// outside the buffer.
//
// Build (see tests/fuzz/corpus/safetensors/ for seeds):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
//     src/common/status.cc src/model/json.cc src/model/safetensors.cc \
//     tests/fuzz/safetensors_fuzz.cc -labsl_status -labsl_statusor \
//     -labsl_strings -labsl_cord -o safetensors_fuzz
//   ./safetensors_fuzz -max_len=4096 tests/fuzz/corpus/safetensors
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/safetensors.h"

namespace {

// Tensors above this size are skipped: converting them proves nothing the
// small ones do not, and would only slow the fuzzer down.
constexpr size_t kMaxTensorBytes = size_t{16} << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using memmamba::SafetensorsReader;
  using memmamba::TensorInfo;
  auto reader = SafetensorsReader::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size));
  if (!reader.ok()) {
    // Every refusal must carry a message.
    if (reader.status().message().empty()) __builtin_trap();
    return 0;
  }
  std::vector<float> out;
  uint8_t sink = 0;
  for (const TensorInfo& t : reader->tensors()) {
    if (t.nbytes > kMaxTensorBytes) continue;
    // Every byte the reader claims is the tensor's must be readable.
    const uint8_t* bytes = reader->data(t);
    if (bytes == nullptr) __builtin_trap();
    for (size_t i = 0; i < t.nbytes; ++i) sink ^= bytes[i];
    if (reader->Find(t.name) != &t) __builtin_trap();

    // num_elements <= nbytes, so this is bounded by kMaxTensorBytes floats.
    out.assign(t.num_elements, 0.0f);
    absl::Status s = reader->CopyAsFloat(t, out.data(), out.size());
    if (!s.ok() && memmamba::CodeOf(s) != memmamba::ErrorCode::kTensorDtype) {
      __builtin_trap();  // a parsed tensor must convert or be of another dtype
    }
    // The shape-checked entry point must agree.
    absl::Status s2 = reader->ReadAsFloat(t.name, t.shape, out.data());
    if (s.ok() != s2.ok()) __builtin_trap();
  }
  // Keep the reads from being optimised away.
  volatile uint8_t keep = sink;
  (void)keep;
  return 0;
}
