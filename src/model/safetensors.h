// Reading and writing safetensors files (DESIGN 5: weights).
//
// The format (https://github.com/huggingface/safetensors):
//   bytes 0..8    N, the header length, unsigned 64-bit little-endian
//   bytes 8..8+N  a JSON object, UTF-8, optionally padded with spaces:
//                   { "__metadata__": { "key": "value", ... },      optional
//                     "tensor name": { "dtype": "F32",
//                                      "shape": [2, 3],
//                                      "data_offsets": [begin, end] }, ... }
//   bytes 8+N..   the data section; data_offsets are relative to its start,
//                 tensors are stored row-major, little-endian.
//
// Reading is strict, because a weights file may come from anywhere: the
// reader validates the whole header before any tensor is handed out, never
// reads outside the buffer, never allocates from an unchecked size, and
// reports each problem with its own message (ErrorCode::kCorruptFile unless
// said otherwise):
//   - file shorter than 8 bytes; header length above 100 MiB or above the
//     bytes that follow the length prefix;
//   - header not valid JSON (see json.h: strict UTF-8, no duplicate keys,
//     depth <= 64, at most 2M values) or not an object;
//   - `__metadata__` not an object of string -> string;
//   - an entry that is not an object, lacks dtype/shape/data_offsets, or
//     has any other field (no writer produces one; refusing it catches
//     corruption that a lenient reader would silently accept);
//   - unknown dtype (ErrorCode::kTensorDtype);
//   - a negative dimension, or an element count / byte size that overflows;
//   - data_offsets not exactly two ascending unsigned integers inside the
//     data section, or a byte count different from elements * dtype size;
//   - two tensors sharing bytes (zero-size tensors share none);
//   - data section bytes not covered by any tensor, in a gap or at the end.
//     The format requires the buffer to be "entirely indexed" and the
//     reference implementation refuses such files, so we do too: hidden
//     bytes could carry anything and round-trips would lose them.
// Data may be unaligned (other writers do not pad the header); tensors are
// only ever accessed through memcpy.
//
// Writing emits `__metadata__` first (omitted when empty), then the tensors
// in the order given with consecutive data_offsets, and pads the header with
// spaces so that the data section starts at a multiple of 8 bytes.
#ifndef MEMMAMBA_MODEL_SAFETENSORS_H_
#define MEMMAMBA_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace memmamba {

// The dtypes of the safetensors format with a whole-byte element size.
// (The sub-byte F4/F6 types and any future ones are refused as unknown.)
enum class DType {
  kBool,    // "BOOL", 1 byte
  kU8,      // "U8"
  kI8,      // "I8"
  kI16,     // "I16"
  kU16,     // "U16"
  kF16,     // "F16", IEEE binary16
  kBF16,    // "BF16", bfloat16
  kI32,     // "I32"
  kU32,     // "U32"
  kF32,     // "F32"
  kF64,     // "F64"
  kI64,     // "I64"
  kU64,     // "U64"
  kF8E4M3,  // "F8_E4M3"
  kF8E5M2,  // "F8_E5M2"
};

// Element size in bytes; 0 for a value outside the enum.
size_t DTypeSize(DType dtype);
// The format's name ("F32", ...); "?" for a value outside the enum.
std::string_view DTypeName(DType dtype);
// The dtype with this format name. Errors: kTensorDtype.
[[nodiscard]] absl::StatusOr<DType> DTypeFromName(std::string_view name);

// Renders a shape as "[2,3]" ("[]" for a scalar), as used in messages.
std::string ShapeToString(const std::vector<int64_t>& shape);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // every dim >= 0; empty for a 0-d scalar
  size_t num_elements = 0;     // product of shape (1 for a scalar)
  size_t offset = 0;  // byte offset from the start of the data section
  size_t nbytes = 0;  // num_elements * DTypeSize(dtype)
};

// A validated safetensors file held in memory.
//
// Owns the file's bytes; everything it returns (TensorInfo references, data
// pointers, the metadata map) lives as long as the reader. References to
// TensorInfo and metadata survive moving the reader; data pointers should
// be fetched again from the moved-to reader.
// Move-only, so a multi-gigabyte buffer is never copied by accident.
// Threads: const methods may be called from any number of threads at once.
class SafetensorsReader {
 public:
  // Largest header accepted: 100 MiB. (The reference implementation stops
  // at 100,000,000 bytes; no real header comes near either bound.)
  static constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

  // Validates `bytes` as a safetensors file and takes ownership of them.
  // Errors: kCorruptFile, kTensorDtype (see the file comment).
  [[nodiscard]] static absl::StatusOr<SafetensorsReader> FromBytes(
      std::string bytes);

  // Reads the whole file at `path` and validates it like FromBytes; error
  // messages start with the path. Errors: kIo (cannot open/read, not a
  // regular file), kOutOfMemory (file larger than a std::string can hold),
  // and those of FromBytes.
  [[nodiscard]] static absl::StatusOr<SafetensorsReader> ReadFile(
      const std::string& path);

  SafetensorsReader(SafetensorsReader&&) = default;
  SafetensorsReader& operator=(SafetensorsReader&&) = default;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  // The `__metadata__` object (empty when absent).
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }

  // All tensors in file order: ascending data offset, ties (zero-size
  // tensors) in header order. For a file written by SerializeSafetensors
  // this is the order the tensors were given in.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  // The tensor with this name, or nullptr. O(log n).
  const TensorInfo* Find(std::string_view name) const;

  // Pointer to the tensor's first byte inside the owned buffer (valid for
  // info.nbytes bytes, possibly unaligned: read it with memcpy). `info` must
  // come from this reader's tensors()/Find(); for anything that does not
  // fit inside the data section the result is nullptr.
  const uint8_t* data(const TensorInfo& info) const;

  // Size of the data section and its offset in the file.
  size_t data_section_size() const { return bytes_.size() - data_start_; }
  size_t data_section_offset() const { return data_start_; }

  // Copies tensor `name` into `out` as float32, converting from F32, F16,
  // BF16 or F64 (F64 values beyond the float range become +-inf; NaN and
  // inf are copied as they are: checking them is the caller's policy).
  // `expected_shape` is always checked, so `out` must hold
  // product(expected_shape) floats (an empty shape means a 0-d scalar: one
  // float). `out` may be NULL only when that product is 0.
  // Errors: kTensorMissing, kTensorShape ("tensor NAME: expected [a,b], got
  // [c,d]"), kTensorDtype (other dtypes), kInvalidArgument (NULL out).
  [[nodiscard]] absl::Status ReadAsFloat(
      std::string_view name, const std::vector<int64_t>& expected_shape,
      float* out) const;

  // The same conversion without a shape check, for code that walks
  // tensors(): writes info.num_elements floats to `out`, which holds
  // `out_count`. Errors: kBufferTooSmall, kTensorDtype, kInvalidArgument
  // (`info` not from this reader, NULL out with elements to write).
  [[nodiscard]] absl::Status CopyAsFloat(const TensorInfo& info, float* out,
                                         size_t out_count) const;

 private:
  SafetensorsReader() = default;

  std::string bytes_;     // the whole file
  size_t data_start_ = 0;  // 8 + header length
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> tensors_[i]
};

// One tensor for SerializeSafetensors. `data` points to `nbytes` bytes in
// the file's layout (row-major, little-endian); it is only read, and only
// during the call. It may be NULL when nbytes is 0.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Builds a complete safetensors file in memory (see the file comment for the
// layout). Errors: kInvalidArgument (a name that is "__metadata__", repeated,
// or not valid UTF-8; metadata not valid UTF-8; a negative dimension; nbytes
// not equal to elements * dtype size; NULL data with nbytes > 0; a dtype
// outside the enum), kOutOfMemory (total size overflows).
// Threads: any thread.
[[nodiscard]] absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata);

// Replaces the file at `path` with `bytes` so that a reader sees either the
// old file or the complete new one, never a mix: writes
// PATH.tmp.<pid>.<random> (created exclusively, mode 0666 & ~umask), fsyncs
// and closes it, renames it over PATH, then fsyncs the directory (best
// effort). On any failure the temporary file is removed and PATH is left as
// it was. The new file does not inherit the old one's permissions.
// Errors: kIo, with the failing step, path and strerror.
// Threads: any thread (concurrent writers of one path: the last rename wins).
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path,
                                               std::string_view bytes);

// SerializeSafetensors + WriteFileAtomically.
[[nodiscard]] absl::Status WriteSafetensorsFile(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata);

}  // namespace memmamba

#endif  // MEMMAMBA_MODEL_SAFETENSORS_H_
