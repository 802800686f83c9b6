// Session snapshots: see snapshot.h for the checks and schemas/snapshot.fbs
// for the format.
//
// Writing makes the file's layout (BuildLayout), then copies the state's
// arrays into the destination once and checksums it there (FillAndHash); reading
// checks everything (Open) before copying the arrays out.
#include "runtime/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <omp.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "common/hash.h"
#include "flatbuffers/flatbuffers.h"
#include "model/model.h"
#include "snapshot_generated.h"

// XXH3 from Debian's libxxhash-dev, inlined so that it is compiled with the
// build's vector extensions (AVX2 at x86-64-v3).
#define XXH_INLINE_ALL
#include <xxhash.h>

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

// Bytes per block of the XXH3_BLOCKS checksum (schemas/snapshot.fbs).
constexpr size_t kChecksumBlock = 16 * 1024;

// Digest d_i of block i of the XXH3_BLOCKS checksum, the 8 checksum bytes
// at `at` read as zeros.
uint64_t HashBlock(const uint8_t* data, size_t size, size_t at, int64_t i) {
  const size_t begin = static_cast<size_t>(i) * kChecksumBlock;
  const size_t len = std::min(kChecksumBlock, size - begin);
  if (at < begin + len && at + sizeof(uint64_t) > begin) {
    // The block holding the checksum field: hash a copy with it zeroed.
    uint8_t copy[kChecksumBlock];
    std::memcpy(copy, data + begin, len);
    const size_t lo = std::max(at, begin), hi = std::min(at + sizeof(uint64_t), begin + len);
    std::memset(copy + (lo - begin), 0, hi - lo);
    return XXH3_64bits_withSeed(copy, len, static_cast<uint64_t>(i));
  }
  return XXH3_64bits_withSeed(data + begin, len, static_cast<uint64_t>(i));
}

// The digest of the blocks' digests as little-endian words (converted in
// place; allocates nothing, so it may run inside a parallel region).
uint64_t CombineDigests(std::vector<uint64_t>* digests) {
  for (uint64_t& d : *digests) d = flatbuffers::EndianScalar(d);
  return XXH3_64bits(digests->data(), digests->size() * sizeof(uint64_t));
}

int64_t ChecksumBlocks(size_t size) {
  return static_cast<int64_t>((size + kChecksumBlock - 1) / kChecksumBlock);
}

// Threads for work over a file of `blocks` checksum blocks: at least four
// blocks (64 KiB) a thread, or it is not worth waking one.
int TeamFor(int64_t blocks, int n_threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, blocks / 4)));
}

// The part of a file thread `t` of `team` owns: whole checksum blocks
// [*b0, *b1), bytes [*lo, *hi).
void OwnedRange(size_t size, int t, int team, int64_t* b0, int64_t* b1, size_t* lo, size_t* hi) {
  const int64_t n = ChecksumBlocks(size);
  *b0 = n * t / team;
  *b1 = n * (t + 1) / team;
  *lo = std::min(size, static_cast<size_t>(*b0) * kChecksumBlock);
  *hi = std::min(size, static_cast<size_t>(*b1) * kChecksumBlock);
}

// The checksum of a file by `kind`'s rule (schemas/snapshot.fbs), the 8
// checksum bytes at `at` read as zeros; XXH3_BLOCKS spreads its blocks over
// up to `n_threads` threads (the digest does not depend on how many).
uint64_t Checksum(fb::ChecksumKind kind, const uint8_t* data, size_t size, size_t at,
                  int n_threads) {
  if (kind == fb::ChecksumKind::XXH64_FILE) {
    Xxh64 h(0);
    h.Update(data, at);
    h.UpdateZeros(sizeof(uint64_t));
    h.Update(data + at + sizeof(uint64_t), size - at - sizeof(uint64_t));
    return h.Digest();
  }
  const int64_t n = ChecksumBlocks(size);
  std::vector<uint64_t> digests(static_cast<size_t>(n));
  const int threads = TeamFor(n, n_threads);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t i = 0; i < n; ++i) digests[i] = HashBlock(data, size, at, i);
  return CombineDigests(&digests);
}

// Where the checksum field of a verified outer table is (0 when absent),
// and which rule computes it (kCorruptFile for a kind this reader does not
// know: the checksum covers the kind, so only damage or a newer writer can
// produce one, and the checksum cannot tell which).
struct ChecksumField {
  size_t at = 0;
  fb::ChecksumKind kind = fb::ChecksumKind::XXH64_FILE;
};

absl::StatusOr<ChecksumField> FindChecksum(const uint8_t* data, const fb::SnapshotFile* file) {
  ChecksumField f;
  const flatbuffers::voffset_t field = FieldOffset(file, fb::SnapshotFile::VT_CHECKSUM);
  if (field == 0) return Errorf(ErrorCode::kCorruptFile, "snapshot: no checksum");
  f.at = static_cast<size_t>(reinterpret_cast<const uint8_t*>(file) + field - data);
  f.kind = file->checksum_kind();
  if (f.kind != fb::ChecksumKind::XXH64_FILE && f.kind != fb::ChecksumKind::XXH3_BLOCKS) {
    return Errorf(ErrorCode::kCorruptFile, "snapshot: unknown checksum kind ",
                  static_cast<int>(f.kind));
  }
  return f;
}

// Where the state's arrays go in a snapshot file. The layout (tables,
// vtables, vector lengths) is built by a FlatBufferBuilder with the arrays'
// contents left unwritten; the contents are then copied from the state
// straight into the destination, once (FillAndHash).
struct Region {
  enum Kind { kFloats, kSummaries, kScores, kWindows } kind;
  size_t from_end = 0;         // the array's first byte, counted from the file's end
  size_t begin = 0;            // ... and from its start (once the layout is finished)
  size_t bytes = 0;
  const float* src = nullptr;  // kFloats
  const Pool* pool = nullptr;  // the others
};

struct Layout {
  flatbuffers::FlatBufferBuilder* builder = nullptr;  // holds the finished layout
  std::vector<Region> regions;                         // in ascending file order
  size_t checksum_at = 0;                              // the checksum field's offset
};

// The builder the layouts of one thread are made in, kept between calls so
// that a snapshot does not map and unmap a buffer of its size each time. It
// only ever writes headers: the arrays' bytes are reserved, never touched,
// so most of its memory is never made resident. It is made anew, sized
// `bound` up front (a builder that grows copies its reserved bytes, and so
// touches them), when a layout needs more, or when it is far larger than
// this layout needs (so one huge snapshot does not pin its size for ever).
flatbuffers::FlatBufferBuilder& LayoutBuilder(uint64_t bound) {
  struct Cached {
    std::unique_ptr<flatbuffers::FlatBufferBuilder> builder;
    uint64_t reserved = 0;
  };
  thread_local Cached cached;
  constexpr uint64_t kKeepSmall = 16u << 20;
  if (!cached.builder || bound > cached.reserved ||
      cached.reserved > std::max<uint64_t>(2 * bound, kKeepSmall)) {
    cached.builder.reset();
    cached.builder = std::make_unique<flatbuffers::FlatBufferBuilder>(static_cast<size_t>(bound));
    cached.reserved = bound;
  }
  cached.builder->Clear();
  return *cached.builder;
}

// Builds the layout of the snapshot of `state` (DESIGN 5, schemas/
// snapshot.fbs) in LayoutBuilder(), back to front: the Snapshot payload
// first (finished as a buffer of its own), then its bytes become the [ubyte]
// payload vector by pushing the vector's length in front of them, then the
// outer SnapshotFile table. This is the layout flatbuffers' nested_flatbuffer
// expects; the payload starts 8-byte aligned because a finished buffer's
// size is a multiple of its alignment.
absl::StatusOr<Layout> BuildLayout(const Model& model, const StreamState& state) {
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
  Layout layout;
  flatbuffers::FlatBufferBuilder* b = &LayoutBuilder(bound);
  layout.builder = b;
  b->ForceDefaults(false);
  const uint64_t fingerprint = model.Fingerprint();
  // Reserves an array of n elements of `size` bytes and records where it is.
  auto reserve = [&](Region r, size_t n, size_t size) {
    uint8_t* dst = nullptr;
    const flatbuffers::uoffset_t off = b->CreateUninitializedVector(n, size, &dst);
    r.bytes = n * size;
    r.from_end = b->GetSize() - sizeof(flatbuffers::uoffset_t);  // past the length prefix
    if (r.bytes > 0) layout.regions.push_back(r);
    return off;
  };
  auto floats = [&](const std::vector<float>& v) {
    Region r{Region::kFloats};
    r.src = v.data();
    return flatbuffers::Offset<flatbuffers::Vector<float>>(reserve(r, v.size(), sizeof(float)));
  };

  std::vector<flatbuffers::Offset<fb::LayerState>> layers(state.layers.size());
  // Back to front: the last layer is built first so that the file holds
  // layer 0 first, each layer's arrays in schema order.
  for (size_t l = state.layers.size(); l-- > 0;) {
    const LayerState& L = state.layers[l];
    const size_t n = L.pool.size();
    Region pool{Region::kSummaries};
    pool.pool = &L.pool;
    auto summary = flatbuffers::Offset<flatbuffers::Vector<float>>(
        reserve(pool, n * S, sizeof(float)));
    pool.kind = Region::kScores;
    auto score = flatbuffers::Offset<flatbuffers::Vector<float>>(reserve(pool, n, sizeof(float)));
    pool.kind = Region::kWindows;
    auto window = flatbuffers::Offset<flatbuffers::Vector<int64_t>>(
        reserve(pool, n, sizeof(int64_t)));
    auto win_max = floats(L.win_max);
    auto ssm = floats(L.ssm);
    auto conv = floats(L.conv);
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
  b->Finish(fb::CreateSnapshotFile(*b, kSnapshotFormatVersion, payload, 0,
                                   fb::ChecksumKind::XXH3_BLOCKS),
            kIdentifier);
  if (b->GetSize() > bound) {
    return Errorf(ErrorCode::kInternal, "snapshot: ", b->GetSize(),
                  " bytes exceed the size bound ", bound);
  }
  const uint8_t* data = b->GetBufferPointer();
  const auto* root = flatbuffers::GetRoot<fb::SnapshotFile>(data);
  layout.checksum_at = static_cast<size_t>(reinterpret_cast<const uint8_t*>(root) +
                                           FieldOffset(root, fb::SnapshotFile::VT_CHECKSUM) -
                                           data);
  std::reverse(layout.regions.begin(), layout.regions.end());
  for (Region& r : layout.regions) r.begin = b->GetSize() - r.from_end;
  return layout;
}

// Writes bytes [a, b) of region `r` (offsets within the array; element
// boundaries) from the state to `out`.
void StoreRegionPart(const Region& r, int64_t S, size_t a, size_t b, uint8_t* out) {
  switch (r.kind) {
    case Region::kFloats:
      StoreFloats(r.src + a / sizeof(float), (b - a) / sizeof(float), out);
      break;
    case Region::kSummaries:
      for (size_t i = a / sizeof(float); i < b / sizeof(float);) {
        const size_t note = i / S, off = i % S;
        const size_t n = std::min<size_t>(S - off, b / sizeof(float) - i);
        StoreFloats((*r.pool)[note]->summary + off, n, out);
        out += n * sizeof(float);
        i += n;
      }
      break;
    case Region::kScores:
      for (size_t i = a / sizeof(float); i < b / sizeof(float); ++i, out += sizeof(float)) {
        StoreFloats(&(*r.pool)[i]->score, 1, out);
      }
      break;
    case Region::kWindows:
      for (size_t i = a / sizeof(int64_t); i < b / sizeof(int64_t); ++i) {
        const int64_t w = flatbuffers::EndianScalar((*r.pool)[i]->window);
        std::memcpy(out, &w, sizeof w);
        out += sizeof w;
      }
      break;
  }
}

// Writes bytes [lo, hi) of the snapshot whose layout is `layout` into dst:
// the layout's bytes between the arrays, the arrays' parts from the state.
void WriteRange(const Layout& layout, int64_t S, size_t lo, size_t hi, uint8_t* dst) {
  const uint8_t* src = layout.builder->GetBufferPointer();
  size_t at = lo;  // written up to here
  for (const Region& r : layout.regions) {
    const size_t rb = r.begin, re = r.begin + r.bytes;
    if (re <= at) continue;
    if (rb >= hi) break;
    if (rb > at) {  // layout bytes before the array
      std::memcpy(dst + at, src + at, rb - at);
      at = rb;
    }
    const size_t e = std::min(re, hi);
    StoreRegionPart(r, S, at - rb, e - rb, dst + at);
    at = e;
  }
  if (hi > at) std::memcpy(dst + at, src + at, hi - at);
}

// Writes the snapshot whose layout is `layout` into dst[0, size) and
// checksums it there. Each thread owns a run of whole checksum blocks: it
// writes that part of the file and then hashes it while it is still in its
// own cache; one parallel region per save. (Writing and hashing block by
// block measured slower: the writes stream better in one run.)
void FillAndHash(const Layout& layout, int64_t S, uint8_t* dst, int n_threads) {
  const size_t size = layout.builder->GetSize();
  std::vector<uint64_t> digests(static_cast<size_t>(ChecksumBlocks(size)));
  const int team = TeamFor(ChecksumBlocks(size), n_threads);
#pragma omp parallel num_threads(team) if (team > 1)
  {
    int64_t b0, b1;
    size_t lo, hi;
    OwnedRange(size, omp_get_thread_num(), omp_get_num_threads(), &b0, &b1, &lo, &hi);
    WriteRange(layout, S, lo, hi, dst);
    for (int64_t i = b0; i < b1; ++i) {
      digests[i] = HashBlock(dst, size, layout.checksum_at, i);
    }
  }
  const uint64_t sum = flatbuffers::EndianScalar(CombineDigests(&digests));
  std::memcpy(dst + layout.checksum_at, &sum, sizeof sum);
}

absl::Status Corrupt(const char* what) {
  return Errorf(ErrorCode::kCorruptFile, "snapshot: ", what);
}

// A checked snapshot: the payload and what it says about itself.
struct Opened {
  const fb::Snapshot* snapshot = nullptr;
  SnapshotInfo info;
};

// A snapshot whose outer table passed step 1 of snapshot.h.
struct Outer {
  const fb::SnapshotFile* file = nullptr;
  ChecksumField checksum;
};

// Step 1 of snapshot.h on an 8-byte aligned buffer.
absl::StatusOr<Outer> OpenOuter(const uint8_t* data, size_t size) {
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
  Outer o;
  o.file = flatbuffers::GetRoot<fb::SnapshotFile>(data);
  MM_ASSIGN_OR_RETURN(o.checksum, FindChecksum(data, o.file));
  return o;
}

// Step 2: the stored checksum against the one computed.
absl::Status CompareChecksum(const fb::SnapshotFile* file, uint64_t computed) {
  if (computed == file->checksum()) return absl::OkStatus();
  return Errorf(ErrorCode::kChecksum, "snapshot: checksum mismatch (stored ",
                absl::Hex(file->checksum(), absl::kZeroPad16), ", computed ",
                absl::Hex(computed, absl::kZeroPad16), "): the bytes were corrupted");
}

// Steps 3-4: the version and the payload. Safe on damaged bytes (the
// verifier bounds every read), but only meaningful once the checksum
// matched: callers report a checksum mismatch first.
absl::StatusOr<Opened> OpenPayload(const fb::SnapshotFile* file) {
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

// Steps 1-4 of snapshot.h in order; the checksum runs on up to `n_threads`
// threads.
absl::StatusOr<Opened> Open(const uint8_t* data, size_t size, int n_threads) {
  MM_ASSIGN_OR_RETURN(const Outer outer, OpenOuter(data, size));
  MM_RETURN_IF_ERROR(CompareChecksum(
      outer.file, Checksum(outer.checksum.kind, data, size, outer.checksum.at, n_threads)));
  return OpenPayload(outer.file);
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

// Step 5 (the model) for a snapshot whose payload passed steps 3-4.
absl::Status CheckModel(const Model& model, const SnapshotInfo& info) {
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
    return Errorf(ErrorCode::kModelMismatch, "snapshot: taken on another model (",
                  Describe(info), "); this model has ", Describe(mine));
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
  return absl::OkStatus();
}

// A float array of a snapshot file and where it goes in the state.
struct CopyRegion {
  size_t begin = 0;  // first byte in the file
  size_t bytes = 0;
  float* dst = nullptr;
};

// Sizes *out for the checked snapshot `o` (of `model`, in the file at
// `file`) and makes each layer's pool as one block of notes with their
// windows and scores; returns the float arrays still to copy (LoadRange),
// in file order. Allocates; copies no array.
std::vector<CopyRegion> PrepareState(const Model& model, const Opened& o, const uint8_t* file,
                                     StreamState* out) {
  const ModelConfig& c = model.config();
  const int64_t S = c.summary_dim;
  const fb::Snapshot& s = *o.snapshot;
  out->position = o.info.position;
  out->summary_dim = S;
  out->layers.resize(c.n_layer);
  std::vector<CopyRegion> regions;
  auto add = [&](const flatbuffers::Vector<float>* v, float* dst) {
    if (SizeOf(v) == 0) return;
    regions.push_back({static_cast<size_t>(v->Data() - file), v->size() * sizeof(float), dst});
  };
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const fb::LayerState* src = s.layers()->Get(static_cast<flatbuffers::uoffset_t>(l));
    LayerState& L = out->layers[l];
    L.conv.resize(SizeOf(src->conv()));
    L.ssm.resize(SizeOf(src->ssm()));
    L.win_max.resize(SizeOf(src->win_max()));
    add(src->conv(), L.conv.data());
    add(src->ssm(), L.ssm.data());
    add(src->win_max(), L.win_max.data());
    const int64_t n = static_cast<int64_t>(SizeOf(src->pool_window()));
    L.pool.clear();
    if (n == 0) continue;
    std::shared_ptr<NoteBlock> block = MakeNoteBlock(n, S);
    L.pool.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      PoolEntry& e = block->entries[i];
      e.window = src->pool_window()->Get(static_cast<flatbuffers::uoffset_t>(i));
      e.score = src->pool_score()->Get(static_cast<flatbuffers::uoffset_t>(i));
      L.pool.push_back(ShareNote(block, i));
    }
    add(src->pool_summary(), block->summaries.get());
  }
  std::sort(regions.begin(), regions.end(),
            [](const CopyRegion& a, const CopyRegion& b) { return a.begin < b.begin; });
  return regions;
}

// Copies the parts of `regions` that lie in bytes [lo, hi) of `file` into
// the state.
void LoadRange(const std::vector<CopyRegion>& regions, const uint8_t* file, size_t lo,
               size_t hi) {
  for (const CopyRegion& r : regions) {
    const size_t b = std::max(lo, r.begin), e = std::min(hi, r.begin + r.bytes);
    if (b >= e) continue;
    LoadFloats(file + b, (e - b) / sizeof(float), r.dst + (b - r.begin) / sizeof(float));
  }
}

}  // namespace

uint64_t RawStateBytes(const StreamState& state) { return state.Bytes(); }

absl::StatusOr<size_t> SnapshotSize(const Model& model, const StreamState& state) {
  MM_ASSIGN_OR_RETURN(const Layout layout, BuildLayout(model, state));
  return static_cast<size_t>(layout.builder->GetSize());
}

absl::Status WriteSnapshotInto(const Model& model, const StreamState& state,
                               absl::FunctionRef<absl::StatusOr<uint8_t*>(size_t)> place) {
  MM_ASSIGN_OR_RETURN(const Layout layout, BuildLayout(model, state));
  MM_ASSIGN_OR_RETURN(uint8_t* dst, place(layout.builder->GetSize()));
  FillAndHash(layout, model.config().summary_dim, dst, model.n_threads());
  return absl::OkStatus();
}

absl::Status WriteSnapshot(const Model& model, const StreamState& state,
                           absl::FunctionRef<absl::Status(const uint8_t*, size_t)> sink) {
  std::vector<uint8_t> bytes;
  MM_RETURN_IF_ERROR(WriteSnapshotInto(model, state, [&](size_t n) -> absl::StatusOr<uint8_t*> {
    bytes.resize(n);
    return bytes.data();
  }));
  return sink(bytes.data(), bytes.size());
}

absl::StatusOr<SnapshotInfo> InspectSnapshot(const void* data, size_t size) {
  return WithAligned(data, size, [&](const uint8_t* p) -> absl::StatusOr<SnapshotInfo> {
    MM_ASSIGN_OR_RETURN(Opened o, Open(p, size, /*n_threads=*/1));
    return o.info;
  });
}

absl::Status ReadSnapshot(const Model& model, const void* data, size_t size, StreamState* out) {
  return WithAligned(data, size, [&](const uint8_t* p) -> absl::Status {
    MM_ASSIGN_OR_RETURN(const Outer outer, OpenOuter(p, size));
    // Steps 3-5 and the sizing of *out run before the checksum so that the
    // hashing and the copy share one parallel region; their verdict is
    // reported only after the checksum's (step 2 first, as always).
    absl::StatusOr<Opened> opened = OpenPayload(outer.file);
    absl::Status later = opened.status();
    if (later.ok()) later = CheckModel(model, opened->info);
    std::vector<CopyRegion> regions;
    if (later.ok()) regions = PrepareState(model, *opened, p, out);
    if (outer.checksum.kind == fb::ChecksumKind::XXH64_FILE) {  // format version 1
      MM_RETURN_IF_ERROR(CompareChecksum(
          outer.file, Checksum(outer.checksum.kind, p, size, outer.checksum.at, 1)));
      MM_RETURN_IF_ERROR(later);
      LoadRange(regions, p, 0, size);
      return absl::OkStatus();
    }
    // Each thread hashes its run of blocks and copies each block's arrays
    // into *out right after hashing it (still in its first-level cache).
    // The copy comes before the verdict: *out is a spare state, whose
    // contents are unspecified on error; every offset copied was checked by
    // the verifier (steps 3-4).
    std::vector<uint64_t> digests(static_cast<size_t>(ChecksumBlocks(size)));
    const int team = TeamFor(ChecksumBlocks(size), model.n_threads());
    const bool copy = later.ok();
#pragma omp parallel num_threads(team) if (team > 1)
    {
      int64_t b0, b1;
      size_t lo, hi;
      OwnedRange(size, omp_get_thread_num(), omp_get_num_threads(), &b0, &b1, &lo, &hi);
      for (int64_t i = b0; i < b1; ++i) {
        digests[i] = HashBlock(p, size, outer.checksum.at, i);
        if (copy) {
          const size_t begin = static_cast<size_t>(i) * kChecksumBlock;
          LoadRange(regions, p, begin, std::min(size, begin + kChecksumBlock));
        }
      }
    }
    MM_RETURN_IF_ERROR(CompareChecksum(outer.file, CombineDigests(&digests)));
    return later;
  });
}

std::string SealSnapshot(std::string_view payload, uint32_t version) {
  flatbuffers::FlatBufferBuilder b(payload.size() + 256);
  b.ForceVectorAlignment(payload.size(), 1, 8);
  auto vec = b.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  b.ForceDefaults(true);
  b.Finish(fb::CreateSnapshotFile(b, version, vec, 0,
                                  version >= 2 ? fb::ChecksumKind::XXH3_BLOCKS
                                               : fb::ChecksumKind::XXH64_FILE),
           kIdentifier);
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
  absl::StatusOr<ChecksumField> field = FindChecksum(data, root);
  if (!field.ok()) return false;
  uint8_t sum[8];
  flatbuffers::WriteScalar<uint64_t>(
      sum, Checksum(field->kind, data, file->size(), field->at, /*n_threads=*/1));
  std::memcpy(&(*file)[field->at], sum, sizeof sum);
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
