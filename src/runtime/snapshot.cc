// Session snapshots: see snapshot.h for the checks and schemas/snapshot.fbs
// for the format.
//
// Writing builds both flatbuffers in one FlatBufferBuilder, back to front:
// the Snapshot payload first (finished as a buffer of its own), then its
// bytes become the [ubyte] payload vector by pushing the vector's length in
// front of them, then the outer SnapshotFile table. This is the layout
// flatbuffers' nested_flatbuffer expects, without copying the payload from
// a second builder; the payload starts 8-byte aligned because a finished
// buffer's size is a multiple of its alignment. Last, the checksum is
// computed over the finished file and written into its field.
#include "runtime/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "common/hash.h"
#include "flatbuffers/flatbuffers.h"
#include "runtime/forward.h"
#include "snapshot_generated.h"

namespace memmamba {
namespace {

constexpr char kIdentifier[] = "MMSN";
static_assert(sizeof(kIdentifier) - 1 == flatbuffers::kFileIdentifierLength, "");

// Largest snapshot the format can hold (flatbuffers' 32-bit offsets).
constexpr uint64_t kMaxSnapshotBytes = FLATBUFFERS_MAX_BUFFER_SIZE - 1;

// Bytes a snapshot spends beyond RawStateBytes, at most: per layer a table,
// its vtable, six vector length prefixes and their alignment padding; per
// snapshot the two root tables, vtables and headers. Used to size the
// builder once and to refuse states too large for the format.
uint64_t OverheadBound(int64_t n_layer) { return 160 * static_cast<uint64_t>(n_layer) + 1024; }

// Float and int arrays are stored little-endian; on little-endian hosts
// that is a plain copy.
constexpr bool kLittleEndian = FLATBUFFERS_LITTLEENDIAN != 0;

void StoreFloats(const float* src, size_t n, uint8_t* dst) {
  if (kLittleEndian) {
    if (n) std::memcpy(dst, src, n * sizeof(float));
  } else {
    for (size_t i = 0; i < n; ++i) flatbuffers::WriteScalar(dst + 4 * i, src[i]);
  }
}

void LoadFloats(const uint8_t* src, size_t n, float* dst) {
  if (kLittleEndian) {
    if (n) std::memcpy(dst, src, n * sizeof(float));
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = flatbuffers::ReadScalar<float>(src + 4 * i);
  }
}

void LoadFloats(const flatbuffers::Vector<float>* v, std::vector<float>* out) {
  const size_t n = v ? v->size() : 0;
  out->resize(n);
  if (n) LoadFloats(v->Data(), n, out->data());
}

template <typename T>
size_t SizeOf(const flatbuffers::Vector<T>* v) {
  return v ? v->size() : 0;
}

// flatbuffers' FLATBUFFERS_MIN_BUFFER_SIZE, which only compiles inside its
// namespace: a root offset, a table's vtable offset and an empty vtable.
constexpr size_t kMinBufferSize = sizeof(flatbuffers::uoffset_t) +
                                  sizeof(flatbuffers::soffset_t) + 2 * sizeof(uint16_t);

// Byte offset of a field inside a generated table (0 when absent); the
// generated types derive privately from flatbuffers::Table.
template <typename T>
flatbuffers::voffset_t FieldOffset(const T* table, flatbuffers::voffset_t field) {
  return reinterpret_cast<const flatbuffers::Table*>(table)->GetOptionalFieldOffset(field);
}

// XXH64 of the file with the 8 checksum bytes at `at` read as zeros.
uint64_t Checksum(const uint8_t* data, size_t size, size_t at) {
  Xxh64 h(0);
  h.Update(data, at);
  h.UpdateZeros(sizeof(uint64_t));
  h.Update(data + at + sizeof(uint64_t), size - at - sizeof(uint64_t));
  return h.Digest();
}

// Builds the snapshot of `state` into `b`. With fill = false only the layout
// is made (vector contents are left unwritten and no checksum is computed):
// enough to know the size.
absl::Status Build(const Model& model, const StreamState& state, bool fill,
                   flatbuffers::FlatBufferBuilder* b) {
  const ModelConfig& c = model.config();
  const int64_t S = c.summary_dim;
  if (static_cast<int64_t>(state.layers.size()) != c.n_layer) {
    return Errorf(ErrorCode::kInternal, "snapshot: the state has ", state.layers.size(),
                  " layers, the model ", c.n_layer);
  }
  const uint64_t bound = RawStateBytes(state) + OverheadBound(c.n_layer);
  if (bound > kMaxSnapshotBytes) {
    return Errorf(ErrorCode::kUnsupported, "snapshot: a state of ", RawStateBytes(state),
                  " bytes exceeds the 2 GiB a snapshot can hold");
  }
  // One allocation for the whole build (the builder grows by doubling and
  // copying otherwise).
  *b = flatbuffers::FlatBufferBuilder(static_cast<size_t>(bound));
  const uint64_t fingerprint = model.Fingerprint();

  auto floats = [&](const float* src, size_t n) {
    uint8_t* dst = nullptr;
    auto off = b->CreateUninitializedVector(n, sizeof(float), &dst);
    if (fill) StoreFloats(src, n, dst);
    return flatbuffers::Offset<flatbuffers::Vector<float>>(off);
  };

  std::vector<flatbuffers::Offset<fb::LayerState>> layers(state.layers.size());
  // Back to front: the last layer is built first so that the file holds
  // layer 0 first, each layer's arrays in schema order.
  for (size_t l = state.layers.size(); l-- > 0;) {
    const LayerState& L = state.layers[l];
    const size_t n = L.pool.size();
    uint8_t* dst = nullptr;
    auto summary = flatbuffers::Offset<flatbuffers::Vector<float>>(
        b->CreateUninitializedVector(n * S, sizeof(float), &dst));
    if (fill) {
      for (size_t i = 0; i < n; ++i) {
        StoreFloats(L.pool[i]->summary.data(), S, dst + i * S * sizeof(float));
      }
    }
    auto score = flatbuffers::Offset<flatbuffers::Vector<float>>(
        b->CreateUninitializedVector(n, sizeof(float), &dst));
    if (fill) {
      for (size_t i = 0; i < n; ++i) flatbuffers::WriteScalar(dst + 4 * i, L.pool[i]->score);
    }
    auto window = flatbuffers::Offset<flatbuffers::Vector<int64_t>>(
        b->CreateUninitializedVector(n, sizeof(int64_t), &dst));
    if (fill) {
      for (size_t i = 0; i < n; ++i) {
        flatbuffers::WriteScalar<int64_t>(dst + 8 * i, L.pool[i]->window);
      }
    }
    auto win_max = floats(L.win_max.data(), L.win_max.size());
    auto ssm = floats(L.ssm.data(), L.ssm.size());
    auto conv = floats(L.conv.data(), L.conv.size());
    layers[l] = fb::CreateLayerState(*b, conv, ssm, win_max, window, score, summary);
  }
  auto layer_vec = b->CreateVector(layers);
  auto payload_root = fb::CreateSnapshot(
      *b, fingerprint, state.position, static_cast<uint32_t>(c.n_layer),
      static_cast<uint32_t>(c.d_model), static_cast<uint32_t>(c.d_inner()),
      static_cast<uint32_t>(c.d_state), static_cast<uint32_t>(c.d_conv),
      static_cast<uint32_t>(c.summary_dim), static_cast<uint32_t>(c.note_window),
      static_cast<uint32_t>(c.pool_capacity),
      c.pool_policy == PoolPolicy::kFifo ? fb::PoolPolicy::FIFO : fb::PoolPolicy::PRIORITY,
      layer_vec);
  b->Finish(payload_root);
  // The finished payload is the contents of the [ubyte] vector: its length
  // goes in front of it (this is all FlatBufferBuilder::EndVector does).
  const flatbuffers::uoffset_t payload_size = b->GetSize();
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> payload(
      b->PushElement<flatbuffers::uoffset_t>(payload_size));
  b->ForceDefaults(true);  // the checksum field must exist while it is still 0
  b->Finish(fb::CreateSnapshotFile(*b, kSnapshotFormatVersion, payload, 0), kIdentifier);
  if (b->GetSize() > bound) {
    return Errorf(ErrorCode::kInternal, "snapshot: ", b->GetSize(),
                  " bytes exceed the size bound ", bound);
  }
  if (fill) {
    uint8_t* data = b->GetBufferPointer();
    const auto* root = flatbuffers::GetRoot<fb::SnapshotFile>(data);
    const size_t at = static_cast<size_t>(
        reinterpret_cast<const uint8_t*>(root) +
        FieldOffset(root, fb::SnapshotFile::VT_CHECKSUM) - data);
    flatbuffers::WriteScalar<uint64_t>(data + at, Checksum(data, b->GetSize(), at));
  }
  return absl::OkStatus();
}

absl::Status Corrupt(const char* what) {
  return Errorf(ErrorCode::kCorruptFile, "snapshot: ", what);
}

// A checked snapshot: the payload and what it says about itself.
struct Opened {
  const fb::Snapshot* snapshot = nullptr;
  SnapshotInfo info;
};

// Steps 1-4 of snapshot.h on an 8-byte aligned buffer.
absl::StatusOr<Opened> Open(const uint8_t* data, size_t size) {
  if (size == 0) return Corrupt("empty (0 bytes)");
  if (size < 2 * sizeof(flatbuffers::uoffset_t) ||
      !flatbuffers::BufferHasIdentifier(data, kIdentifier)) {
    std::string id;
    for (size_t i = 4; i < 8 && i < size; ++i) {
      const char ch = static_cast<char>(data[i]);
      id += (ch >= 32 && ch < 127) ? std::string(1, ch)
                                  : absl::StrCat("\\x", absl::Hex(data[i], absl::kZeroPad2));
    }
    return Errorf(ErrorCode::kCorruptFile, "not a memmamba snapshot: file identifier '", id,
                  "' (", size, " bytes), expected 'MMSN'");
  }
  if (size > kMaxSnapshotBytes) {
    return Errorf(ErrorCode::kCorruptFile, "snapshot: ", size,
                  " bytes is more than the format's 2 GiB");
  }
  flatbuffers::Verifier::Options opts;
  opts.max_depth = 8;
  opts.max_tables = 16;
  opts.check_nested_flatbuffers = false;  // after the checksum and version
  flatbuffers::Verifier outer(data, size, opts);
  if (!outer.VerifyBuffer<fb::SnapshotFile>(kIdentifier)) {
    return Corrupt("the outer table is malformed (flatbuffers verifier)");
  }
  const fb::SnapshotFile* file = flatbuffers::GetRoot<fb::SnapshotFile>(data);
  const flatbuffers::voffset_t checksum_field =
      FieldOffset(file, fb::SnapshotFile::VT_CHECKSUM);
  if (checksum_field == 0) return Corrupt("no checksum");
  const size_t at = static_cast<size_t>(reinterpret_cast<const uint8_t*>(file) +
                                        checksum_field - data);
  const uint64_t computed = Checksum(data, size, at);
  if (computed != file->checksum()) {
    return Errorf(ErrorCode::kChecksum, "snapshot: checksum mismatch (stored ",
                  absl::Hex(file->checksum(), absl::kZeroPad16), ", computed ",
                  absl::Hex(computed, absl::kZeroPad16), "): the bytes were corrupted");
  }
  const uint32_t version = file->format_version();
  if (FieldOffset(file, fb::SnapshotFile::VT_FORMAT_VERSION) == 0 || version == 0) {
    return Corrupt("no format version");
  }
  if (version > kSnapshotFormatVersion) {
    return Errorf(ErrorCode::kVersion, "snapshot: format version ", version,
                  " is newer than this library reads (", kSnapshotFormatVersion,
                  "): a newer memmamba wrote it");
  }
  const flatbuffers::Vector<uint8_t>* payload = file->payload();
  if (payload == nullptr || payload->size() < kMinBufferSize) {
    return Corrupt("no payload");
  }
  if (reinterpret_cast<uintptr_t>(payload->Data()) % 8 != 0) {
    return Corrupt("the payload is not 8-byte aligned in the file");
  }
  flatbuffers::Verifier::Options payload_opts;
  payload_opts.max_depth = 8;
  payload_opts.max_tables = 4097;  // the root and up to 4096 layers
  flatbuffers::Verifier inner(payload->Data(), payload->size(), payload_opts);
  if (!inner.VerifyBuffer<fb::Snapshot>(nullptr)) {
    return Corrupt("the payload is malformed (flatbuffers verifier)");
  }
  Opened o;
  o.snapshot = flatbuffers::GetRoot<fb::Snapshot>(payload->Data());
  const fb::Snapshot& s = *o.snapshot;
  SnapshotInfo& info = o.info;
  info.format_version = version;
  info.model_fingerprint = s.model_fingerprint();
  info.position = s.position();
  info.n_layer = s.n_layer();
  info.d_model = s.d_model();
  info.d_inner = s.d_inner();
  info.d_state = s.d_state();
  info.d_conv = s.d_conv();
  info.summary_dim = s.summary_dim();
  info.note_window = s.note_window();
  info.pool_capacity = s.pool_capacity();
  if (info.position < 0) return Errorf(ErrorCode::kCorruptFile, "snapshot: position ", info.position);
  if (info.n_layer < 1 || info.n_layer > 4096 || info.d_model < 1 || info.d_inner < 1 ||
      info.d_state < 1 || info.d_conv < 1 || info.summary_dim < 1 || info.note_window < 1) {
    return Errorf(ErrorCode::kCorruptFile, "snapshot: shape out of range (n_layer ",
                  info.n_layer, ", d_model ", info.d_model, ", d_inner ", info.d_inner,
                  ", d_state ", info.d_state, ", d_conv ", info.d_conv, ", summary_dim ",
                  info.summary_dim, ", note_window ", info.note_window, ")");
  }
  switch (s.pool_policy()) {
    case fb::PoolPolicy::PRIORITY: info.pool_policy = PoolPolicy::kPriority; break;
    case fb::PoolPolicy::FIFO: info.pool_policy = PoolPolicy::kFifo; break;
    default:
      return Errorf(ErrorCode::kCorruptFile, "snapshot: unknown pool policy ",
                    static_cast<int>(s.pool_policy()));
  }
  const auto* layers = s.layers();
  if (SizeOf(layers) != static_cast<size_t>(info.n_layer)) {
    return Errorf(ErrorCode::kCorruptFile, "snapshot: ", SizeOf(layers), " layers, n_layer is ",
                  info.n_layer);
  }
  // Sizes in uint64: each factor is < 2^32, no product overflows.
  const uint64_t E = info.d_inner, S = info.summary_dim;
  const uint64_t conv_size = static_cast<uint64_t>(info.d_conv - 1) * E;
  const uint64_t ssm_size = static_cast<uint64_t>(info.d_state) * E;
  const uint64_t win_size = info.pool_capacity > 0 ? static_cast<uint64_t>(info.d_model) : 0;
  const int64_t completed_windows = info.position / info.note_window;
  uint64_t bytes = sizeof(int64_t);
  for (flatbuffers::uoffset_t l = 0; l < layers->size(); ++l) {
    const fb::LayerState* L = layers->Get(l);
    auto expect = [&](const char* name, size_t got, uint64_t want) -> absl::Status {
      if (got == want) return absl::OkStatus();
      return Errorf(ErrorCode::kCorruptFile, "snapshot: layer ", l, " ", name, " holds ", got,
                    " values, the shape needs ", want);
    };
    MM_RETURN_IF_ERROR(expect("conv", SizeOf(L->conv()), conv_size));
    MM_RETURN_IF_ERROR(expect("ssm", SizeOf(L->ssm()), ssm_size));
    MM_RETURN_IF_ERROR(expect("win_max", SizeOf(L->win_max()), win_size));
    const size_t n = SizeOf(L->pool_window());
    // The verifier (flatbuffers 2.0) only checks a vector's length prefix
    // for 4-byte alignment; 8-byte elements must be checked here.
    if (n > 0 && reinterpret_cast<uintptr_t>(L->pool_window()->Data()) % alignof(int64_t) != 0) {
      return Errorf(ErrorCode::kCorruptFile, "snapshot: layer ", l,
                    " pool_window is not 8-byte aligned");
    }
    if (n > static_cast<uint64_t>(info.pool_capacity)) {
      return Errorf(ErrorCode::kCorruptFile, "snapshot: layer ", l, " holds ", n,
                    " notes, pool_capacity is ", info.pool_capacity);
    }
    MM_RETURN_IF_ERROR(expect("pool_score", SizeOf(L->pool_score()), n));
    MM_RETURN_IF_ERROR(expect("pool_summary", SizeOf(L->pool_summary()), n * S));
    int64_t previous = -1;
    for (flatbuffers::uoffset_t i = 0; i < n; ++i) {
      const int64_t w = L->pool_window()->Get(i);
      if (w <= previous || w >= completed_windows) {
        return Errorf(ErrorCode::kCorruptFile, "snapshot: layer ", l, " note ", i,
                      " has window ", w, ": windows must ascend and be complete (< ",
                      completed_windows, " at position ", info.position, ")");
      }
      previous = w;
    }
    info.notes_total += static_cast<int64_t>(n);
    bytes += sizeof(float) * (conv_size + ssm_size + win_size) +
             n * (sizeof(int64_t) + sizeof(float) + sizeof(float) * S);
  }
  info.state_bytes = bytes;
  return o;
}

// Runs f(aligned pointer) on `data`, copying it first when it is not 8-byte
// aligned (flatbuffers reads scalars in place).
template <typename F>
auto WithAligned(const void* data, size_t size, F&& f) {
  if (reinterpret_cast<uintptr_t>(data) % 8 == 0 || size == 0) {
    return f(static_cast<const uint8_t*>(data));
  }
  std::unique_ptr<uint64_t[]> copy(new uint64_t[(size + 7) / 8]);
  std::memcpy(copy.get(), data, size);
  return f(reinterpret_cast<const uint8_t*>(copy.get()));
}

std::string Describe(const SnapshotInfo& i) {
  return absl::StrCat("n_layer ", i.n_layer, ", d_model ", i.d_model, ", d_inner ", i.d_inner,
                      ", d_state ", i.d_state, ", d_conv ", i.d_conv, ", summary_dim ",
                      i.summary_dim, ", note_window ", i.note_window, ", pool_capacity ",
                      i.pool_capacity, ", fingerprint ",
                      absl::Hex(i.model_fingerprint, absl::kZeroPad16));
}

}  // namespace

uint64_t RawStateBytes(const StreamState& state) {
  uint64_t bytes = sizeof(state.position);
  for (const LayerState& L : state.layers) {
    bytes += (L.conv.size() + L.ssm.size() + L.win_max.size()) * sizeof(float);
    for (const PoolEntryPtr& e : L.pool) {
      bytes += sizeof(e->window) + sizeof(e->score) + e->summary.size() * sizeof(float);
    }
  }
  return bytes;
}

absl::StatusOr<size_t> SnapshotSize(const Model& model, const StreamState& state) {
  flatbuffers::FlatBufferBuilder b;
  MM_RETURN_IF_ERROR(Build(model, state, /*fill=*/false, &b));
  return static_cast<size_t>(b.GetSize());
}

absl::Status WriteSnapshot(const Model& model, const StreamState& state,
                           absl::FunctionRef<absl::Status(const uint8_t*, size_t)> sink) {
  flatbuffers::FlatBufferBuilder b;
  MM_RETURN_IF_ERROR(Build(model, state, /*fill=*/true, &b));
  return sink(b.GetBufferPointer(), b.GetSize());
}

absl::StatusOr<SnapshotInfo> InspectSnapshot(const void* data, size_t size) {
  return WithAligned(data, size, [&](const uint8_t* p) -> absl::StatusOr<SnapshotInfo> {
    MM_ASSIGN_OR_RETURN(Opened o, Open(p, size));
    return o.info;
  });
}

absl::Status ReadSnapshot(const Model& model, const void* data, size_t size, StreamState* out) {
  return WithAligned(data, size, [&](const uint8_t* p) -> absl::Status {
    MM_ASSIGN_OR_RETURN(Opened o, Open(p, size));
    const SnapshotInfo& info = o.info;
    const ModelConfig& c = model.config();
    if (info.model_fingerprint != model.Fingerprint()) {
      SnapshotInfo mine;
      mine.n_layer = c.n_layer;
      mine.d_model = c.d_model;
      mine.d_inner = c.d_inner();
      mine.d_state = c.d_state;
      mine.d_conv = c.d_conv;
      mine.summary_dim = c.summary_dim;
      mine.note_window = c.note_window;
      mine.pool_capacity = c.pool_capacity;
      mine.model_fingerprint = model.Fingerprint();
      return Errorf(ErrorCode::kModelMismatch,
                    "snapshot: taken on another model (", Describe(info), "); this model has ",
                    Describe(mine));
    }
    // Implied by the fingerprint; checked because the sizes below rely on it.
    if (info.n_layer != c.n_layer || info.d_model != c.d_model || info.d_inner != c.d_inner() ||
        info.d_state != c.d_state || info.d_conv != c.d_conv ||
        info.summary_dim != c.summary_dim || info.note_window != c.note_window ||
        info.pool_capacity != c.pool_capacity || info.pool_policy != c.pool_policy) {
      return Errorf(ErrorCode::kCorruptFile,
                    "snapshot: the model fingerprint matches but the shape does not (",
                    Describe(info), ")");
    }
    const fb::Snapshot& s = *o.snapshot;
    const int64_t S = c.summary_dim;
    out->position = info.position;
    out->layers.resize(c.n_layer);
    std::vector<std::pair<int64_t, PoolEntry*>> notes;  // (layer, note)
    notes.reserve(static_cast<size_t>(info.notes_total));
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const fb::LayerState* src = s.layers()->Get(static_cast<flatbuffers::uoffset_t>(l));
      LayerState& L = out->layers[l];
      LoadFloats(src->conv(), &L.conv);
      LoadFloats(src->ssm(), &L.ssm);
      LoadFloats(src->win_max(), &L.win_max);
      const size_t n = SizeOf(src->pool_window());
      const size_t kv_size = model.readers(l).size() * 2 * static_cast<size_t>(S);
      L.pool.clear();
      L.pool.reserve(n);
      for (flatbuffers::uoffset_t i = 0; i < n; ++i) {
        auto entry = std::make_shared<PoolEntry>();
        entry->window = src->pool_window()->Get(i);
        entry->score = src->pool_score()->Get(i);
        entry->summary.resize(S);
        LoadFloats(src->pool_summary()->Data() + i * S * sizeof(float), S,
                   entry->summary.data());
        entry->kv.resize(kv_size);  // allocated here, filled below
        notes.emplace_back(l, entry.get());
        L.pool.push_back(std::move(entry));
      }
    }
    // The derived projections, one note at a time as TakeNotes makes them
    // (so bit-identical), notes spread over the model's threads: this is
    // most of a restore's time. Nothing in the loop allocates or throws.
    const int64_t n_notes = static_cast<int64_t>(notes.size());
    const int threads = static_cast<int>(std::max<int64_t>(
        1, std::min<int64_t>(model.n_threads(), n_notes / 32)));
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads) if (threads > 1)
    for (int64_t j = 0; j < n_notes; ++j) {
      ComputeNoteProjections(model, notes[j].first, notes[j].second);
    }
    return absl::OkStatus();
  });
}

std::string SealSnapshot(std::string_view payload, uint32_t version) {
  flatbuffers::FlatBufferBuilder b(payload.size() + 256);
  b.ForceVectorAlignment(payload.size(), 1, 8);
  auto vec = b.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  b.ForceDefaults(true);
  b.Finish(fb::CreateSnapshotFile(b, version, vec, 0), kIdentifier);
  std::string file(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
  ResealSnapshot(&file);
  return file;
}

bool ResealSnapshot(std::string* file) {
  if (file->empty() || file->size() > kMaxSnapshotBytes) return false;
  // A copy: std::string's bytes need not be 8-byte aligned.
  std::vector<uint64_t> aligned((file->size() + 7) / 8);
  std::memcpy(aligned.data(), file->data(), file->size());
  const uint8_t* data = reinterpret_cast<const uint8_t*>(aligned.data());
  flatbuffers::Verifier::Options opts;
  opts.check_nested_flatbuffers = false;
  flatbuffers::Verifier outer(data, file->size(), opts);
  if (!outer.VerifyBuffer<fb::SnapshotFile>(nullptr)) return false;
  const auto* root = flatbuffers::GetRoot<fb::SnapshotFile>(data);
  const flatbuffers::voffset_t field = FieldOffset(root, fb::SnapshotFile::VT_CHECKSUM);
  if (field == 0) return false;
  const size_t at = static_cast<size_t>(reinterpret_cast<const uint8_t*>(root) + field - data);
  uint8_t sum[8];
  flatbuffers::WriteScalar<uint64_t>(sum, Checksum(data, file->size(), at));
  std::memcpy(&(*file)[at], sum, sizeof sum);
  return true;
}

absl::StatusOr<std::string> ReadSnapshotFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Errorf(ErrorCode::kIo, path, ": cannot open: ", std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return Errorf(ErrorCode::kIo, path, ": cannot stat: ", std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Errorf(ErrorCode::kIo, path, ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxSnapshotBytes) {
    return Errorf(ErrorCode::kCorruptFile, path, ": ", st.st_size,
                  " bytes is more than a snapshot can hold (2 GiB)");
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, &bytes[done], bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Errorf(ErrorCode::kIo, path, ": read failed: ", std::strerror(errno));
    if (got == 0) break;  // the file shrank meanwhile: what is left is checked as it is
    done += static_cast<size_t>(got);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace memmamba
