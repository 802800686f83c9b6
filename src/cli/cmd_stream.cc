// memmamba stream (and snapshot continue): a file's bytes through a session,
// the surprisal of every byte, the most surprising lines.
//
// The surprisal of byte t is -log2 p(x_t | x_<t), from the logits after
// byte t-1. The first byte of a fresh stream has no prediction and is not
// scored. A snapshot holds the stream's state but not the logits its last
// token produced, so `--snapshot OUT` also writes OUT.logits (those logits,
// 4 bytes per vocabulary entry plus a small checked header): with it a
// resumed stream scores its first byte too, and the bits of a file streamed
// in two parts add up to those of the whole file.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"

namespace memmamba_cli {
namespace {

constexpr size_t kWindowBytes = 80;    // the unit of files without newlines
constexpr size_t kExcerptBytes = 160;  // bytes of a line kept for display
constexpr char kLogitsMagic[8] = {'M', 'M', 'L', 'O', 'G', 'I', 'T', 'S'};

// A line (or an 80-byte window) and the bits its bytes cost.
struct Segment {
  uint64_t index = 0;   // 1-based line or window number
  uint64_t offset = 0;  // byte offset in the file
  uint64_t bytes = 0;
  uint64_t scored = 0;
  double bits = 0;
  std::string text;  // the first kExcerptBytes bytes
};

// Keeps the n segments with the largest key (mean or total bits).
class TopSegments {
 public:
  TopSegments(size_t n, bool by_total) : n_(n), by_total_(by_total) {}
  void Offer(const Segment& s) {
    if (n_ == 0 || s.scored == 0) return;
    if (kept_.size() < n_) {
      kept_.push_back(s);
      std::push_heap(kept_.begin(), kept_.end(), Less());
      return;
    }
    if (Key(s) <= Key(kept_.front())) return;
    std::pop_heap(kept_.begin(), kept_.end(), Less());
    kept_.back() = s;
    std::push_heap(kept_.begin(), kept_.end(), Less());
  }
  std::vector<Segment> Sorted() const {
    std::vector<Segment> out = kept_;
    std::sort(out.begin(), out.end(), [this](const Segment& a, const Segment& b) {
      return Key(a) != Key(b) ? Key(a) > Key(b) : a.index < b.index;
    });
    return out;
  }

 private:
  double Key(const Segment& s) const { return by_total_ ? s.bits : s.bits / s.scored; }
  // Heap order: a "less than" b when a's key is larger, so the front is
  // the weakest kept segment; among equal keys the later one is weaker, so
  // the earliest ones stay.
  struct Order {
    const TopSegments* self;
    bool operator()(const Segment& a, const Segment& b) const {
      const double ka = self->Key(a), kb = self->Key(b);
      return ka != kb ? ka > kb : a.index < b.index;
    }
  };
  Order Less() const { return Order{this}; }
  size_t n_;
  bool by_total_;
  std::vector<Segment> kept_;
};

// -log2 softmax(row)[token].
double SurprisalBits(const float* row, size_t vocab, int32_t token) {
  float max = row[0];
  for (size_t v = 1; v < vocab; ++v) max = std::max(max, row[v]);
  double sum = 0;
  for (size_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v] - max));
  const double log_p = static_cast<double>(row[token] - max) - std::log(sum);
  return -log_p / std::log(2.0);
}

void WriteLogitsSidecar(const std::string& path, uint64_t position, uint64_t fingerprint,
                        const std::vector<float>& logits) {
  std::string bytes(kLogitsMagic, sizeof kLogitsMagic);
  auto put = [&bytes](const void* p, size_t n) {
    bytes.append(static_cast<const char*>(p), n);  // little-endian hosts
  };
  const uint32_t version = 1, vocab = static_cast<uint32_t>(logits.size());
  put(&version, 4);
  put(&vocab, 4);
  put(&position, 8);
  put(&fingerprint, 8);
  put(logits.data(), logits.size() * sizeof(float));
  const uint32_t crc = Crc32(bytes.data(), bytes.size());
  put(&crc, 4);
  WriteFileAtomically(path, bytes);
}

// Reads OUT.logits; returns false (with the reason) unless it belongs to a
// snapshot at `position` of the model `fingerprint`.
bool ReadLogitsSidecar(const std::string& path, uint64_t position, uint64_t fingerprint,
                       size_t vocab, std::vector<float>* logits, std::string* why) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    *why = "no " + path;
    return false;
  }
  std::fclose(f);
  const std::string bytes = ReadFile(path);
  const size_t want = 8 + 4 + 4 + 8 + 8 + vocab * sizeof(float) + 4;
  if (bytes.size() != want || std::memcmp(bytes.data(), kLogitsMagic, 8) != 0) {
    *why = path + " is not a logits file of this model's vocabulary";
    return false;
  }
  uint32_t crc;
  std::memcpy(&crc, bytes.data() + want - 4, 4);
  if (crc != Crc32(bytes.data(), want - 4)) {
    *why = path + " is damaged (checksum)";
    return false;
  }
  uint64_t file_position, file_fingerprint;
  std::memcpy(&file_position, bytes.data() + 16, 8);
  std::memcpy(&file_fingerprint, bytes.data() + 24, 8);
  if (file_position != position || file_fingerprint != fingerprint) {
    *why = path + " belongs to another snapshot (position " + std::to_string(file_position) +
           ", model " + Hex64(file_fingerprint) + ")";
    return false;
  }
  logits->resize(vocab);
  std::memcpy(logits->data(), bytes.data() + 32, vocab * sizeof(float));
  return true;
}

struct FileHandle {
  ~FileHandle() {
    if (f != nullptr) std::fclose(f);
  }
  std::FILE* f = nullptr;
};

int Stream(const Args& args, const std::string& model_path, const std::string& file_path,
           const std::string& resume_path) {
  const size_t top_n = args.U64("--top", 10, 0, 100000);
  const size_t chunk = args.U64("--chunk", 1024, 1, 65536);
  const uint64_t limit = args.U64("--limit", UINT64_MAX, 1);
  const std::string by = args.Str("--by", "mean");
  if (by != "mean" && by != "total") UsageError("--by '" + by + "': expected mean or total");
  const std::string snapshot_path = args.Str("--snapshot");

  FileHandle input;
  input.f = std::fopen(file_path.c_str(), "rb");
  if (input.f == nullptr) Fail("cannot open '" + file_path + "': " + std::strerror(errno));

  ModelHandle model;
  LoadModel(model_path, args.Threads(), &model, args.Device());
  const size_t vocab = model.config.vocab_size;
  const uint64_t fingerprint = mm_model_fingerprint(model.model);
  SessionHandle session;
  Check(mm_session_create(&session.session, model.model, nullptr), "mm_session_create");

  std::vector<float> prev;  // the logits after the last byte fed
  bool have_prev = false;
  uint64_t start_position = 0;
  if (!resume_path.empty()) {
    const mm_status st = mm_session_restore_file(session.session, resume_path.c_str());
    if (st != MM_OK) {
      FailStatus("cannot resume from '" + resume_path + "'", st,
                 mm_session_last_error(session.session));
    }
    start_position = mm_session_position(session.session);
    std::string why;
    have_prev = ReadLogitsSidecar(resume_path + ".logits", start_position, fingerprint, vocab,
                                  &prev, &why);
    if (!have_prev && start_position > 0) {
      std::fprintf(stderr, "memmamba: note: %s: the first byte is not scored\n", why.c_str());
    }
  }

  std::vector<int32_t> tokens(chunk);
  std::vector<unsigned char> bytes(chunk);
  std::vector<float> logits(chunk * vocab);
  TopSegments top_lines(top_n, by == "total"), top_windows(top_n, by == "total");
  Segment line, window;
  line.index = window.index = 1;
  uint64_t n_bytes = 0, n_scored = 0, n_newlines = 0;
  double total_bits = 0, feed_seconds = 0;

  while (n_bytes < limit) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk, limit - n_bytes));
    const size_t got = std::fread(bytes.data(), 1, want, input.f);
    if (got == 0) break;
    for (size_t j = 0; j < got; ++j) tokens[j] = bytes[j];
    const double t0 = NowSeconds();
    const mm_status st = mm_session_feed(session.session, tokens.data(), got, MM_LOGITS_ALL,
                                         logits.data(), logits.size());
    feed_seconds += NowSeconds() - t0;
    if (st != MM_OK) FailStatus("mm_session_feed", st, mm_session_last_error(session.session));
    for (size_t j = 0; j < got; ++j) {
      const float* row =
          j > 0 ? logits.data() + (j - 1) * vocab : (have_prev ? prev.data() : nullptr);
      const unsigned char byte = bytes[j];
      for (Segment* s : {&line, &window}) {
        if (s->bytes == 0) s->offset = n_bytes;
        ++s->bytes;
        if (s->text.size() < kExcerptBytes) s->text.push_back(static_cast<char>(byte));
      }
      if (row != nullptr) {
        const double b = SurprisalBits(row, vocab, byte);
        total_bits += b;
        ++n_scored;
        line.bits += b, ++line.scored;
        window.bits += b, ++window.scored;
      }
      ++n_bytes;
      if (byte == '\n') {
        ++n_newlines;
        top_lines.Offer(line);
        const uint64_t next = line.index + 1;
        line = Segment();
        line.index = next;
      }
      if (window.bytes == kWindowBytes) {
        top_windows.Offer(window);
        const uint64_t next = window.index + 1;
        window = Segment();
        window.index = next;
      }
    }
    prev.assign(logits.data() + (got - 1) * vocab, logits.data() + got * vocab);
    have_prev = true;
  }
  if (std::ferror(input.f)) Fail("cannot read '" + file_path + "': " + std::strerror(errno));
  if (line.bytes > 0) top_lines.Offer(line);
  if (window.bytes > 0) top_windows.Offer(window);

  const uint64_t position = mm_session_position(session.session);
  uint64_t notes = 0;
  for (uint32_t l = 0; l < model.config.n_layer; ++l) {
    notes += static_cast<uint64_t>(std::max(0, mm_session_pool_size(session.session, l)));
  }

  std::printf("stream: %s through %s\n", file_path.c_str(), model_path.c_str());
  if (!resume_path.empty()) {
    std::printf("  resumed         from %s at position %s\n", resume_path.c_str(),
                WithCommas(start_position).c_str());
  }
  std::printf("  bytes           %s (%s scored)\n", WithCommas(n_bytes).c_str(),
              WithCommas(n_scored).c_str());
  if (n_scored > 0) {
    std::printf("  surprisal       %.6f bits/byte, %.6f bits over %llu bytes\n",
                total_bits / n_scored, total_bits, static_cast<unsigned long long>(n_scored));
  } else {
    std::printf("  surprisal       n/a (no byte had a prediction)\n");
  }
  if (feed_seconds > 0 && n_bytes > 0) {
    std::printf("  speed           %s tokens/s (%.3f s in the model)\n",
                HumanCount(n_bytes / feed_seconds).c_str(), feed_seconds);
  }
  std::printf("  state           %s bytes; position %s; notes %llu/%llu\n",
              WithCommas(mm_session_state_bytes(session.session)).c_str(),
              WithCommas(position).c_str(), static_cast<unsigned long long>(notes),
              static_cast<unsigned long long>(model.config.n_layer) * model.config.pool_capacity);

  if (!snapshot_path.empty()) {
    const mm_status st = mm_session_snapshot_file(session.session, snapshot_path.c_str());
    if (st != MM_OK) {
      FailStatus("cannot write snapshot '" + snapshot_path + "'", st,
                 mm_session_last_error(session.session));
    }
    const std::string sidecar = snapshot_path + ".logits";
    if (have_prev) {
      WriteLogitsSidecar(sidecar, position, fingerprint, prev);
    } else {
      std::remove(sidecar.c_str());  // a stale one would not match anyway
    }
    std::printf("  snapshot        %s (position %s)\n", snapshot_path.c_str(),
                WithCommas(position).c_str());
  }

  // Lines, unless the file has (almost) none: then 80-byte windows.
  const bool use_lines = n_newlines > 0 && n_bytes / (n_newlines + 1) <= 4 * kWindowBytes;
  const std::vector<Segment> top = (use_lines ? top_lines : top_windows).Sorted();
  if (top_n > 0 && !top.empty()) {
    std::printf("\nthe %zu most surprising %s (by %s bits):\n", top.size(),
                use_lines ? "lines" : "80-byte windows", by == "total" ? "total" : "mean");
    std::printf("  %9s  %9s  %6s  %8s  %s\n", "bits/byte", "bits", "bytes",
                use_lines ? "line" : "window", "text");
    for (const Segment& s : top) {
      char where[32];
      std::snprintf(where, sizeof where, "%llu", static_cast<unsigned long long>(s.index));
      std::string text = s.text;
      if (use_lines && !text.empty() && text.back() == '\n') text.pop_back();
      std::printf("  %9.3f  %9.1f  %6llu  %8s  %s\n", s.bits / s.scored, s.bits,
                  static_cast<unsigned long long>(s.bytes), where,
                  Printable(text, 72).c_str());
    }
  }
  return 0;
}

}  // namespace

int RunStream(const Args& args) {
  return Stream(args, args.positional[0], args.positional[1], args.Str("--resume"));
}

int RunSnapshotContinue(const Args& args) {
  return Stream(args, args.positional[0], args.positional[2], args.positional[1]);
}

#define MM_STREAM_COMMON_OPTIONS                                                              \
  {"--top", "N", "Show the N most surprising lines (default 10; 0 = none)."},                 \
      {"--by", "HOW", "Rank lines by 'mean' bits per byte (default) or by 'total' bits."},     \
      {"--chunk", "N", "Bytes fed to the model per call, up to 65536 (default 1024); results do " \
                       "not depend on it."},                                                            \
      {"--limit", "N", "Stream at most the first N bytes of FILE (suffixes k, M)."},           \
      {"--snapshot", "OUT",                                                                   \
       "At the end, write the stream's state to the snapshot OUT (atomically) and its last "   \
       "logits to OUT.logits, so that a resumed stream also scores its first byte."},          \
      kDeviceOption, kThreadsOption

const Command kStreamCommand = {
    "stream",
    "MODEL FILE [options]",
    "Stream a file through a model: bits per byte, speed, the most surprising lines.",
    "Feeds FILE's bytes (a byte is a token) through one session of MODEL, in chunks, and "
    "scores every byte by its surprisal, -log2 p(byte | everything before it). Prints the "
    "mean bits per byte, tokens per second, the stream's state size and the N lines whose "
    "bytes surprised the model most: in a log, the unusual entries. Files with hardly any "
    "newlines (a line longer than 320 bytes on average) are ranked in windows of 80 bytes "
    "instead. The first byte of a fresh stream has no prediction and is not scored.\n"
    "\n"
    "With --resume SNAP the stream starts from a snapshot (and the logits beside it in "
    "SNAP.logits, when present): FILE is then the continuation of the text the snapshot "
    "has read, and the bits of the two parts add up to those of the whole.\n"
    "\n"
    "  memmamba stream model.safetensors access.log --top 5\n"
    "  memmamba stream model.safetensors part1.txt --snapshot part1.mmsnap\n"
    "  memmamba stream model.safetensors part2.txt --resume part1.mmsnap",
    {
        MM_STREAM_COMMON_OPTIONS,
        {"--resume", "SNAP",
         "Restore the snapshot SNAP first; FILE continues the stream it holds (same as "
         "'memmamba snapshot continue MODEL SNAP FILE')."},
    },
    2,
    2,
    RunStream,
};

const Command kSnapshotContinueCommand = {
    "snapshot continue",
    "MODEL SNAPSHOT FILE [options]",
    "Continue a snapshot's stream with FILE ('memmamba stream MODEL FILE --resume SNAPSHOT').",
    "Restores SNAPSHOT (which must have been taken on MODEL: another model is refused with "
    "MM_ERR_MODEL_MISMATCH) and streams FILE as its continuation, reporting as 'memmamba "
    "stream' does.\n"
    "\n"
    "  memmamba snapshot continue model.safetensors part1.mmsnap part2.txt",
    {MM_STREAM_COMMON_OPTIONS},
    3,
    3,
    RunSnapshotContinue,
};

}  // namespace memmamba_cli
