#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/half.h"
#include "model/json.h"

namespace memmamba {
namespace {

// Debian's Abseil keeps its own absl::string_view, which std::string_view
// does not convert to implicitly; wrap explicitly for StrCat.
absl::string_view Sv(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// A tensor entry is about 8 JSON values (the entry, dtype, shape, its dims,
// data_offsets and its two numbers), so 2M values allow ~250k tensors, far
// more than any real file, while a hostile 100 MiB header of tiny values
// ("[0,0,0,...") is refused before its parsed tree passes ~100 MiB.
constexpr size_t kMaxHeaderJsonValues = size_t{1} << 21;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::kBool, "BOOL", 1},      {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},          {DType::kI16, "I16", 2},
    {DType::kU16, "U16", 2},        {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},      {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},        {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},        {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},        {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
};

const DTypeEntry* FindDType(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return &e;
  }
  return nullptr;
}

// A tensor name as it appears in messages: bare when it is plain printable
// ASCII (the usual "layers.0.mixer.D"), otherwise JSON-quoted and cut to a
// bounded length so that hostile names cannot flood a log.
std::string NameForMessage(std::string_view name) {
  constexpr size_t kMaxBytes = 96;
  bool plain = !name.empty() && name.size() <= kMaxBytes;
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == '"') plain = false;
  }
  if (plain) return std::string(name);
  if (name.size() <= kMaxBytes) return JsonQuote(name);
  size_t cut = kMaxBytes;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return absl::StrCat(JsonQuote(name.substr(0, cut)), "...");
}

absl::Status Corrupt(std::string_view what) {
  return Errorf(ErrorCode::kCorruptFile, "safetensors: ", Sv(what));
}

// "safetensors: tensor NAME: <what>"
absl::Status TensorCorrupt(std::string_view name, std::string_view what) {
  return Errorf(ErrorCode::kCorruptFile, "safetensors: tensor ",
                NameForMessage(name), ": ", Sv(what));
}

uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t LoadLE32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

uint16_t LoadLE16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

constexpr bool kLittleEndianHost =
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
    false;  // unknown: take the portable byte-by-byte path
#endif

// Product of `shape` with overflow checks. False when a dim is negative or
// the count exceeds int64 (the reference implementation's usize bound is
// no tighter in practice). A zero dim makes the count 0 whatever the rest.
bool ElementCount(const std::vector<int64_t>& shape, uint64_t* count) {
  uint64_t n = 1;
  bool overflow = false;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) {
      *count = 0;
      return true;
    }
    const uint64_t ud = static_cast<uint64_t>(d);
    if (n > static_cast<uint64_t>(INT64_MAX) / ud) overflow = true;
    if (!overflow) n *= ud;
  }
  if (overflow) return false;
  *count = n;
  return true;
}

absl::Status ParseMetadata(const JsonValue& value,
                           std::map<std::string, std::string>* out) {
  if (!value.is_object()) {
    return Corrupt(absl::StrCat("__metadata__ is a JSON ",
                                Sv(JsonTypeName(value.type())),
                                ", expected an object of strings"));
  }
  for (const JsonMember& m : value.object()) {
    if (!m.value.is_string()) {
      return Corrupt(absl::StrCat("__metadata__ value for key ",
                                  NameForMessage(m.key), " is a JSON ",
                                  Sv(JsonTypeName(m.value.type())),
                                  ", expected a string"));
    }
    out->emplace(m.key, m.value.string_value());
  }
  return absl::OkStatus();
}

// Parses one "name": {...} header entry into `info`, checking everything
// that does not depend on the other entries. `data_size` is the size of the
// data section.
absl::Status ParseTensorEntry(const std::string& name, const JsonValue& entry,
                              size_t data_size, TensorInfo* info) {
  info->name = name;
  if (!entry.is_object()) {
    return TensorCorrupt(name, absl::StrCat("entry is a JSON ",
                                            Sv(JsonTypeName(entry.type())),
                                            ", expected an object"));
  }
  for (const JsonMember& m : entry.object()) {
    if (m.key != "dtype" && m.key != "shape" && m.key != "data_offsets") {
      return TensorCorrupt(name,
                           absl::StrCat("unknown field ", JsonQuote(m.key)));
    }
  }
  const JsonValue* dtype = entry.Find("dtype");
  const JsonValue* shape = entry.Find("shape");
  const JsonValue* offsets = entry.Find("data_offsets");
  if (dtype == nullptr) return TensorCorrupt(name, "missing \"dtype\"");
  if (shape == nullptr) return TensorCorrupt(name, "missing \"shape\"");
  if (offsets == nullptr) {
    return TensorCorrupt(name, "missing \"data_offsets\"");
  }

  // dtype
  if (!dtype->is_string()) {
    return TensorCorrupt(name, absl::StrCat("\"dtype\" is a JSON ",
                                            Sv(JsonTypeName(dtype->type())),
                                            ", expected a string"));
  }
  auto parsed_dtype = DTypeFromName(dtype->string_value());
  if (!parsed_dtype.ok()) {
    return Errorf(ErrorCode::kTensorDtype, "safetensors: tensor ",
                  NameForMessage(name), ": ", parsed_dtype.status().message());
  }
  info->dtype = *parsed_dtype;

  // shape
  if (!shape->is_array()) {
    return TensorCorrupt(name, absl::StrCat("\"shape\" is a JSON ",
                                            Sv(JsonTypeName(shape->type())),
                                            ", expected an array"));
  }
  info->shape.clear();
  info->shape.reserve(shape->array().size());
  for (size_t i = 0; i < shape->array().size(); ++i) {
    auto dim = shape->array()[i].AsInt64();
    if (!dim.ok()) {
      return TensorCorrupt(name, absl::StrCat("shape[", i, "]: ",
                                              dim.status().message()));
    }
    if (*dim < 0) {
      return TensorCorrupt(name, absl::StrCat("shape[", i, "] is negative (",
                                              *dim, ")"));
    }
    info->shape.push_back(*dim);
  }
  uint64_t count = 0;
  if (!ElementCount(info->shape, &count)) {
    return TensorCorrupt(name, absl::StrCat("shape ",
                                            ShapeToString(info->shape),
                                            " has more than 2^63-1 elements"));
  }
  const uint64_t elem_size = DTypeSize(info->dtype);
  if (count > std::numeric_limits<uint64_t>::max() / elem_size) {
    return TensorCorrupt(name, absl::StrCat("shape ",
                                            ShapeToString(info->shape), " of ",
                                            Sv(DTypeName(info->dtype)),
                                            " needs more than 2^64 bytes"));
  }
  const uint64_t needed = count * elem_size;

  // data_offsets
  if (!offsets->is_array() || offsets->array().size() != 2) {
    return TensorCorrupt(
        name, "\"data_offsets\" must be an array of two unsigned integers");
  }
  uint64_t begin_end[2];
  for (size_t i = 0; i < 2; ++i) {
    auto v = offsets->array()[i].AsUint64();
    if (!v.ok()) {
      return TensorCorrupt(name, absl::StrCat("data_offsets[", i, "]: ",
                                              v.status().message()));
    }
    begin_end[i] = *v;
  }
  const uint64_t begin = begin_end[0];
  const uint64_t end = begin_end[1];
  const std::string range = absl::StrCat("data_offsets [", begin, ", ", end,
                                         "]");
  if (begin > end) {
    return TensorCorrupt(name, absl::StrCat(range, " are not ascending"));
  }
  if (end > data_size) {
    return TensorCorrupt(name,
                         absl::StrCat(range, " extend past the end of the ",
                                      data_size, "-byte data section"));
  }
  if (end - begin != needed) {
    return TensorCorrupt(
        name, absl::StrCat(range, " hold ", end - begin, " bytes but shape ",
                           ShapeToString(info->shape), " of ",
                           Sv(DTypeName(info->dtype)), " needs ", needed));
  }
  // All three fit in size_t now: they are bounded by data_size.
  info->num_elements = static_cast<size_t>(count);
  info->offset = static_cast<size_t>(begin);
  info->nbytes = static_cast<size_t>(needed);
  return absl::OkStatus();
}

// Orders `tensors` by data offset and checks that the non-empty ones tile
// the data section exactly: no shared bytes, no gaps, nothing left over.
absl::Status CheckLayout(std::vector<TensorInfo>* tensors, size_t data_size) {
  std::stable_sort(tensors->begin(), tensors->end(),
                   [](const TensorInfo& a, const TensorInfo& b) {
                     if (a.offset != b.offset) return a.offset < b.offset;
                     return a.nbytes < b.nbytes;
                   });
  size_t covered = 0;  // data section bytes [0, covered) are accounted for
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : *tensors) {
    if (t.nbytes == 0) continue;  // owns no bytes: cannot overlap or cover
    if (t.offset < covered) {
      return Corrupt(absl::StrCat(
          "tensors ", NameForMessage(previous->name), " [", previous->offset,
          ", ", previous->offset + previous->nbytes, ") and ",
          NameForMessage(t.name), " [", t.offset, ", ", t.offset + t.nbytes,
          ") overlap"));
    }
    if (t.offset > covered) {
      return Corrupt(absl::StrCat("data section bytes [", covered, ", ",
                                  t.offset,
                                  ") are not covered by any tensor"));
    }
    covered = t.offset + t.nbytes;
    previous = &t;
  }
  if (covered != data_size) {
    return Corrupt(absl::StrCat("data section bytes [", covered, ", ",
                                data_size,
                                ") after the last tensor are not covered by "
                                "any tensor"));
  }
  return absl::OkStatus();
}

std::string ErrnoString(int err) {
  // strerror is not thread-safe; strerror_r has a GNU and an XSI flavour.
  struct Pick {
    static std::string From(int rc, const char* buf) {
      return rc == 0 ? std::string(buf) : std::string("unknown error");
    }
    static std::string From(const char* s, const char*) {
      return std::string(s);
    }
  };
  char buf[256];
  buf[0] = '\0';
  return absl::StrCat(Pick::From(strerror_r(err, buf, sizeof buf), buf),
                      " (errno ", err, ")");
}

absl::Status IoError(std::string_view what, const std::string& path, int err) {
  return Errorf(ErrorCode::kIo, Sv(what), " ", path, ": ", ErrnoString(err));
}

// Re-labels an error with the file it came from, keeping its code.
absl::Status WithPath(const std::string& path, const absl::Status& status) {
  return Errorf(CodeOf(status), path, ": ", status.message());
}

// A random-enough suffix for temporary files: O_EXCL guarantees we never
// clobber anything, this only makes collisions (and retries) unlikely.
uint64_t TempSuffix() {
  static std::atomic<uint64_t> counter{0};
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t x = static_cast<uint64_t>(ts.tv_sec) * 1000000007u +
               static_cast<uint64_t>(ts.tv_nsec) +
               (counter.fetch_add(1, std::memory_order_relaxed) << 40) +
               (static_cast<uint64_t>(getpid()) << 20) +
               reinterpret_cast<uintptr_t>(&ts);
  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    // Some kernels refuse single writes above 2 GiB; chunk well below.
    const size_t chunk = std::min<size_t>(left, size_t{1} << 30);
    const ssize_t n = write(fd, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot write", path, errno);
    }
    if (n == 0) return IoError("cannot write", path, EIO);
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

size_t DTypeSize(DType dtype) {
  const DTypeEntry* e = FindDType(dtype);
  return e != nullptr ? e->size : 0;
}

std::string_view DTypeName(DType dtype) {
  const DTypeEntry* e = FindDType(dtype);
  return e != nullptr ? e->name : "?";
}

absl::StatusOr<DType> DTypeFromName(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  std::string shown = JsonQuote(name.substr(0, 32));
  if (name.size() > 32) shown += "...";
  return Errorf(ErrorCode::kTensorDtype, "unknown dtype ", shown);
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    absl::StrAppend(&s, shape[i]);
  }
  s += "]";
  return s;
}

absl::StatusOr<SafetensorsReader> SafetensorsReader::FromBytes(
    std::string bytes) {
  const size_t size = bytes.size();
  if (size < 8) {
    return Corrupt(absl::StrCat("file is ", size,
                                " bytes, shorter than the 8-byte header "
                                "length prefix"));
  }
  const uint64_t header_len =
      LoadLE64(reinterpret_cast<const uint8_t*>(bytes.data()));
  if (header_len > kMaxHeaderBytes) {
    return Corrupt(absl::StrCat("header length ", header_len,
                                " exceeds the limit of ", kMaxHeaderBytes,
                                " bytes (100 MiB)"));
  }
  if (header_len > size - 8) {
    return Corrupt(absl::StrCat("header length ", header_len, " exceeds the ",
                                size - 8,
                                " bytes that follow the length prefix (file "
                                "size ",
                                size, ")"));
  }
  const size_t data_start = 8 + static_cast<size_t>(header_len);
  const size_t data_size = size - data_start;
  const std::string_view header(bytes.data() + 8,
                                static_cast<size_t>(header_len));

  JsonParseOptions options;
  options.max_depth = 64;
  options.max_values = kMaxHeaderJsonValues;
  auto json = ParseJson(header, options);
  if (!json.ok()) {
    return Corrupt(absl::StrCat("header is not valid JSON: ",
                                json.status().message(), " of the header"));
  }
  if (!json->is_object()) {
    return Corrupt(absl::StrCat("header is a JSON ",
                                Sv(JsonTypeName(json->type())),
                                ", expected an object"));
  }

  SafetensorsReader reader;
  reader.tensors_.reserve(json->object().size());
  for (const JsonMember& m : json->object()) {
    if (m.key == "__metadata__") {
      MM_RETURN_IF_ERROR(ParseMetadata(m.value, &reader.metadata_));
      continue;
    }
    TensorInfo info;
    MM_RETURN_IF_ERROR(ParseTensorEntry(m.key, m.value, data_size, &info));
    reader.tensors_.push_back(std::move(info));
  }
  MM_RETURN_IF_ERROR(CheckLayout(&reader.tensors_, data_size));
  // Names are unique: the JSON parser refuses duplicate keys.
  for (size_t i = 0; i < reader.tensors_.size(); ++i) {
    reader.index_.emplace(reader.tensors_[i].name, i);
  }
  reader.data_start_ = data_start;
  reader.bytes_ = std::move(bytes);
  return reader;
}

absl::StatusOr<SafetensorsReader> SafetensorsReader::ReadFile(
    const std::string& path) {
  int fd;
  do {
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return IoError("cannot open", path, errno);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};

  struct stat st;
  if (fstat(fd, &st) != 0) return IoError("cannot stat", path, errno);
  if (S_ISDIR(st.st_mode)) return IoError("cannot read", path, EISDIR);
  if (!S_ISREG(st.st_mode)) {
    return Errorf(ErrorCode::kIo, "cannot read ", path,
                  ": not a regular file");
  }
  if (st.st_size < 0) {
    return Errorf(ErrorCode::kIo, "cannot read ", path, ": negative size");
  }
  std::string bytes;
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size > bytes.max_size() ||
      file_size > std::numeric_limits<size_t>::max() / 2) {
    return Errorf(ErrorCode::kOutOfMemory, "cannot read ", path, ": ",
                  file_size, " bytes do not fit in memory");
  }
  bytes.resize(static_cast<size_t>(file_size));
  size_t got = 0;
  while (got < bytes.size()) {
    const size_t chunk = std::min<size_t>(bytes.size() - got, size_t{1} << 30);
    const ssize_t n = read(fd, &bytes[got], chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot read", path, errno);
    }
    if (n == 0) break;  // the file shrank since fstat: parse what is there
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  auto reader = FromBytes(std::move(bytes));
  if (!reader.ok()) return WithPath(path, reader.status());
  return reader;
}

const TensorInfo* SafetensorsReader::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* SafetensorsReader::data(const TensorInfo& info) const {
  const size_t data_size = data_section_size();
  if (info.offset > data_size || info.nbytes > data_size - info.offset) {
    return nullptr;
  }
  return reinterpret_cast<const uint8_t*>(bytes_.data()) + data_start_ +
         info.offset;
}

absl::Status SafetensorsReader::ReadAsFloat(
    std::string_view name, const std::vector<int64_t>& expected_shape,
    float* out) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return Errorf(ErrorCode::kTensorMissing, "tensor ", NameForMessage(name),
                  " not found");
  }
  if (info->shape != expected_shape) {
    return Errorf(ErrorCode::kTensorShape, "tensor ", NameForMessage(name),
                  ": expected ", ShapeToString(expected_shape), ", got ",
                  ShapeToString(info->shape));
  }
  // Equal shapes: the caller's buffer holds exactly num_elements floats.
  return CopyAsFloat(*info, out, info->num_elements);
}

absl::Status SafetensorsReader::CopyAsFloat(const TensorInfo& info, float* out,
                                            size_t out_count) const {
  const uint8_t* src = data(info);
  const size_t n = info.num_elements;
  const size_t elem_size = DTypeSize(info.dtype);
  // Checked by division so that a forged num_elements cannot wrap around.
  if (src == nullptr || elem_size == 0 || info.nbytes % elem_size != 0 ||
      info.nbytes / elem_size != n) {
    return Errorf(ErrorCode::kInvalidArgument, "tensor ",
                  NameForMessage(info.name),
                  ": TensorInfo does not describe this file's data");
  }
  if (n > out_count) {
    return Errorf(ErrorCode::kBufferTooSmall, "tensor ",
                  NameForMessage(info.name), " has ", n,
                  " elements, the buffer holds ", out_count);
  }
  switch (info.dtype) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kF64:
      break;
    default:
      return Errorf(ErrorCode::kTensorDtype, "tensor ",
                    NameForMessage(info.name), " has dtype ",
                    Sv(DTypeName(info.dtype)),
                    "; only F32, F16, BF16 and F64 convert to float");
  }
  if (n == 0) return absl::OkStatus();
  if (out == nullptr) {
    return Errorf(ErrorCode::kInvalidArgument, "tensor ",
                  NameForMessage(info.name), ": output buffer is NULL");
  }
  // The source may be unaligned: every load below goes through bytes.
  switch (info.dtype) {
    case DType::kF32:
      if (kLittleEndianHost) {
        std::memcpy(out, src, n * sizeof(float));
      } else {
        for (size_t i = 0; i < n; ++i) {
          out[i] = FloatFromBits(LoadLE32(src + 4 * i));
        }
      }
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) out[i] = F16ToFloat(LoadLE16(src + 2 * i));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        out[i] = BF16ToFloat(LoadLE16(src + 2 * i));
      }
      break;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) {
        const uint64_t bits = LoadLE64(src + 8 * i);
        double d;
        std::memcpy(&d, &bits, sizeof d);
        out[i] = DoubleToFloat(d);
      }
      break;
    default:
      break;  // refused above
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata) {
  auto invalid = [](std::string_view name, std::string_view what) {
    return Errorf(ErrorCode::kInvalidArgument, "safetensors: tensor ",
                  NameForMessage(name), ": ", Sv(what));
  };
  std::set<std::string_view> names;
  uint64_t data_size = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name == "__metadata__") {
      return invalid(t.name, "the name is reserved for the metadata");
    }
    if (!IsValidUtf8(t.name)) return invalid(t.name, "name is not UTF-8");
    if (!names.insert(t.name).second) {
      return invalid(t.name, "name appears more than once");
    }
    const size_t elem_size = DTypeSize(t.dtype);
    if (elem_size == 0) {
      return invalid(t.name, absl::StrCat("invalid dtype value ",
                                          static_cast<int>(t.dtype)));
    }
    for (int64_t d : t.shape) {
      if (d < 0) {
        return invalid(t.name, absl::StrCat("negative dimension in shape ",
                                            ShapeToString(t.shape)));
      }
    }
    uint64_t count = 0;
    if (!ElementCount(t.shape, &count) ||
        count > std::numeric_limits<uint64_t>::max() / elem_size ||
        count * elem_size != t.nbytes) {
      return invalid(t.name,
                     absl::StrCat("nbytes ", t.nbytes, " does not match shape ",
                                  ShapeToString(t.shape), " of ",
                                  Sv(DTypeName(t.dtype))));
    }
    if (t.data == nullptr && t.nbytes > 0) {
      return invalid(t.name, "data is NULL");
    }
    if (t.nbytes > std::numeric_limits<uint64_t>::max() - data_size) {
      return Errorf(ErrorCode::kOutOfMemory,
                    "safetensors: total data size overflows");
    }
    data_size += t.nbytes;
  }
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return Errorf(ErrorCode::kInvalidArgument,
                    "safetensors: metadata entry ", NameForMessage(key),
                    " is not UTF-8");
    }
  }

  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [key, value] : metadata) {
      if (!first) header += ",";
      first = false;
      AppendJsonString(key, &header);
      header += ":";
      AppendJsonString(value, &header);
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (!first) header += ",";
    first = false;
    AppendJsonString(t.name, &header);
    absl::StrAppend(&header, ":{\"dtype\":\"", Sv(DTypeName(t.dtype)),
                    "\",\"shape\":", ShapeToString(t.shape),
                    ",\"data_offsets\":[", offset, ",", offset + t.nbytes,
                    "]}");
    offset += t.nbytes;
  }
  header += "}";
  // Pad so that the data section starts 8-byte aligned.
  while ((8 + header.size()) % 8 != 0) header += ' ';
  if (header.size() > SafetensorsReader::kMaxHeaderBytes) {
    return Errorf(ErrorCode::kInvalidArgument, "safetensors: header of ",
                  header.size(), " bytes exceeds the 100 MiB limit");
  }

  std::string out;
  const uint64_t total_max = std::min<uint64_t>(
      out.max_size(), std::numeric_limits<size_t>::max() / 2);
  if (data_size > total_max - 8 - header.size()) {
    return Errorf(ErrorCode::kOutOfMemory, "safetensors: file of ",
                  data_size, " data bytes does not fit in memory");
  }
  out.reserve(8 + header.size() + static_cast<size_t>(data_size));
  const uint64_t header_len = header.size();
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>((header_len >> (8 * i)) & 0xFF));
  }
  out += header;
  for (const TensorToWrite& t : tensors) {
    if (t.nbytes > 0) out.append(static_cast<const char*>(t.data), t.nbytes);
  }
  return out;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 std::string_view bytes) {
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = absl::StrCat(path, ".tmp.", getpid(), ".",
                       absl::Hex(TempSuffix(), absl::kZeroPad16));
    fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST && errno != EINTR) break;
  }
  if (fd < 0) return IoError("cannot create temporary file", tmp, errno);

  // From here on every failure removes the temporary file.
  absl::Status status = WriteAll(fd, bytes, tmp);
  if (status.ok() && fsync(fd) != 0) {
    status = IoError("cannot fsync", tmp, errno);
  }
  if (close(fd) != 0 && status.ok()) {
    // close() may report a deferred write error (NFS); even on EINTR the
    // descriptor is gone on Linux, so it is never retried.
    status = IoError("cannot close", tmp, errno);
  }
  if (status.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    status = Errorf(ErrorCode::kIo, "cannot rename ", tmp, " to ", path, ": ",
                    ErrnoString(err));
  }
  if (!status.ok()) {
    unlink(tmp.c_str());
    return status;
  }
  // Make the rename itself durable. Best effort: the data is already in
  // place, and some filesystems refuse fsync on directories.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0              ? "/"
                                                    : path.substr(0, slash);
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensorsFile(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata) {
  MM_ASSIGN_OR_RETURN(std::string bytes,
                      SerializeSafetensors(tensors, metadata));
  return WriteFileAtomically(path, bytes);
}

}  // namespace memmamba
