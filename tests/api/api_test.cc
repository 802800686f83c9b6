// Tests of the public C API (include/memmamba/memmamba.h, DESIGN 4) as a C
// user meets it: versions, status codes and messages, NULL handling,
// struct_size versioning, configuration and option validation, the
// "a failed call changes nothing" rule for feeds and batched steps (proven
// bitwise, by continuing the stream next to a twin that never saw the failed
// call), model files (round trips, truncation, corruption, missing / misshapen
// / mistyped / non-finite tensors, bad metadata), importing Mamba v1
// checkpoints, reset, constant state size, and one model shared by threads.
//
// Only the public API is exercised, except that weight files are built and
// inspected with the library's own safetensors reader/writer
// (src/model/safetensors.h): the tests edit a saved file's tensors or
// metadata and re-serialise it, so that each file differs from a valid one
// in exactly one way.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "memmamba/memmamba.h"
#include "model/half.h"
#include "model/safetensors.h"

namespace {

namespace fs = std::filesystem;
using memmamba::DType;

// ---------------------------------------------------------------------------
// Small models and handles
// ---------------------------------------------------------------------------

constexpr uint32_t kVocab = 48;

// Small enough that the whole file runs in seconds; every memory feature is
// on: 3 layers, a note every 4 tokens, 4 notes per pool, a cross-layer read
// in layer 1 (period 2).
mm_model_config SmallConfig() {
  mm_model_config c;
  EXPECT_EQ(mm_model_config_init(&c, sizeof c), MM_OK);
  c.vocab_size = kVocab;
  c.d_model = 16;
  c.n_layer = 3;
  c.d_state = 4;
  c.d_conv = 4;
  c.expand = 2;
  c.note_window = 4;
  c.summary_dim = 8;
  c.attn_heads = 2;
  c.pool_capacity = 4;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  return c;
}

mm_model_options Options(int32_t dtype = MM_DTYPE_F32) {
  mm_model_options o;
  EXPECT_EQ(mm_model_options_init(&o, sizeof o), MM_OK);
  o.weight_dtype = dtype;
  o.n_threads = 2;
  return o;
}

struct ModelDeleter {
  void operator()(mm_model* m) const { mm_model_free(m); }
};
struct SessionDeleter {
  void operator()(mm_session* s) const { mm_session_free(s); }
};
using ModelPtr = std::unique_ptr<mm_model, ModelDeleter>;
using SessionPtr = std::unique_ptr<mm_session, SessionDeleter>;

ModelPtr MakeModel(uint64_t seed = 7, const mm_model_config* config = nullptr,
                   int32_t dtype = MM_DTYPE_F32) {
  const mm_model_config c = config ? *config : SmallConfig();
  const mm_model_options o = Options(dtype);
  mm_model* m = nullptr;
  const mm_status st = mm_model_create(&m, &c, seed, &o);
  EXPECT_EQ(st, MM_OK) << mm_last_error();
  return ModelPtr(m);
}

SessionPtr MakeSession(const mm_model* model) {
  mm_session* s = nullptr;
  const mm_status st = mm_session_create(&s, model, nullptr);
  EXPECT_EQ(st, MM_OK) << mm_last_error();
  return SessionPtr(s);
}

// A new session of `model` restored from a snapshot of `s`.
SessionPtr RestoredCopy(const mm_model* model, const mm_session* s) {
  void* snap = nullptr;
  size_t size = 0;
  EXPECT_EQ(mm_session_snapshot_alloc(s, &snap, &size), MM_OK);
  SessionPtr restored = MakeSession(model);
  EXPECT_EQ(mm_session_restore(restored.get(), snap, size), MM_OK);
  mm_free(snap);
  return restored;
}

std::vector<int32_t> Tokens(size_t n, uint32_t seed, uint32_t vocab = kVocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& v : t) v = static_cast<int32_t>(rng() % vocab);
  return t;
}

// Feeds `tokens` and returns the logits of every position.
std::vector<float> FeedAll(mm_session* s, const std::vector<int32_t>& tokens,
                           uint32_t vocab = kVocab) {
  std::vector<float> logits(tokens.size() * vocab);
  const mm_status st = mm_session_feed(s, tokens.data(), tokens.size(), MM_LOGITS_ALL,
                                       logits.data(), logits.size());
  EXPECT_EQ(st, MM_OK) << mm_last_error();
  return logits;
}

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return a.size() == b.size() ? num / std::max(den, 1e-30) : 1e30;
}

// Logits of `tokens` fed into a fresh session of `model`.
std::vector<float> FreshLogits(const mm_model* model, const std::vector<int32_t>& tokens,
                               uint32_t vocab = kVocab) {
  SessionPtr s = MakeSession(model);
  return FeedAll(s.get(), tokens, vocab);
}

// ---------------------------------------------------------------------------
// Checking failures: code, message, and "nothing changed"
// ---------------------------------------------------------------------------

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Case-insensitive; `needle` may list alternatives separated by '|'.
bool Mentions(const std::string& text, const std::string& needle) {
  const std::string hay = Lower(text);
  size_t begin = 0;
  while (true) {
    const size_t bar = needle.find('|', begin);
    const std::string alt = Lower(needle.substr(begin, bar - begin));
    if (hay.find(alt) != std::string::npos) return true;
    if (bar == std::string::npos) return false;
    begin = bar + 1;
  }
}

// `got` must be `want`, mm_last_error() must be non-empty and mention every
// needle, and each session in `sessions` must carry the same message.
::testing::AssertionResult Fails(mm_status got, mm_status want,
                                 const std::vector<std::string>& needles,
                                 const std::vector<const mm_session*>& sessions = {}) {
  const char* raw = mm_last_error();
  if (raw == nullptr) return ::testing::AssertionFailure() << "mm_last_error() is NULL";
  const std::string msg = raw;
  if (got != want) {
    return ::testing::AssertionFailure()
           << "returned " << got << " (" << mm_status_string(got) << "), expected " << want
           << " (" << mm_status_string(want) << "); mm_last_error: '" << msg << "'";
  }
  if (msg.empty()) return ::testing::AssertionFailure() << "mm_last_error() is empty";
  for (const std::string& n : needles) {
    if (!Mentions(msg, n)) {
      return ::testing::AssertionFailure()
             << "mm_last_error() '" << msg << "' does not mention '" << n << "'";
    }
  }
  for (size_t i = 0; i < sessions.size(); ++i) {
    const char* smsg = mm_session_last_error(sessions[i]);
    if (smsg == nullptr || msg != smsg) {
      return ::testing::AssertionFailure()
             << "session #" << i << ": mm_session_last_error() is '"
             << (smsg ? smsg : "(NULL)") << "', mm_last_error() is '" << msg << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

// Proves that `s` is in exactly the state of `twin`: same position, same
// pool sizes, and continuing both with the same tokens (crossing several
// note windows) gives bit-identical logits.
void ExpectSameFuture(mm_session* s, mm_session* twin, uint32_t seed, uint32_t n_layer = 3) {
  ASSERT_EQ(mm_session_position(s), mm_session_position(twin));
  for (uint32_t l = 0; l < n_layer; ++l) {
    EXPECT_EQ(mm_session_pool_size(s, l), mm_session_pool_size(twin, l)) << "layer " << l;
  }
  const std::vector<int32_t> more = Tokens(23, seed);
  const std::vector<float> a = FeedAll(s, more), b = FeedAll(twin, more);
  EXPECT_TRUE(BitwiseEqual(a, b)) << "the session diverged from its twin: the failed call "
                                     "changed its state";
}

// Gives each session a distinct stale message (a failing call that changes
// nothing), so that a test can see whether a later call overwrote it.
void StampStaleMessage(mm_session* s) {
  EXPECT_EQ(mm_session_feed(s, nullptr, 0, 1234, nullptr, 0), MM_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(Mentions(mm_session_last_error(s), "1234"));
}

// A value to pre-load output handles with: a failing call must overwrite it
// with NULL (never dereferenced, never freed).
char g_sentinel_byte;
template <typename T>
T* Sentinel() {
  return reinterpret_cast<T*>(&g_sentinel_byte);
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(out.good()) << path;
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

uint64_t HeaderLength(const std::string& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[i]);
  return n;
}

void SetHeaderLength(std::string* file, uint64_t n) {
  for (int i = 0; i < 8; ++i) (*file)[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
}

// A safetensors file as editable values.
struct EditTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;

  size_t numel() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
  float GetF32(size_t i) const {
    float v;
    std::memcpy(&v, bytes.data() + i * sizeof v, sizeof v);
    return v;
  }
  void SetF32(size_t i, float v) { std::memcpy(&bytes[i * sizeof v], &v, sizeof v); }
};

struct EditFile {
  std::vector<EditTensor> tensors;
  std::map<std::string, std::string> metadata;

  EditTensor* Find(const std::string& name) {
    for (EditTensor& t : tensors) {
      if (t.name == name) return &t;
    }
    ADD_FAILURE() << "no tensor '" << name << "' in the test file";
    return nullptr;
  }
  void Erase(const std::string& name) {
    const size_t before = tensors.size();
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [&](const EditTensor& t) { return t.name == name; }),
                  tensors.end());
    EXPECT_EQ(tensors.size() + 1, before) << "no tensor '" << name << "' to erase";
  }
};

EditFile ReadEdit(const std::string& path) {
  EditFile f;
  auto reader = memmamba::SafetensorsReader::ReadFile(path);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return f;
  f.metadata = reader->metadata();
  for (const memmamba::TensorInfo& t : reader->tensors()) {
    EditTensor e;
    e.name = t.name;
    e.dtype = t.dtype;
    e.shape = t.shape;
    e.bytes.assign(reinterpret_cast<const char*>(reader->data(t)), t.nbytes);
    f.tensors.push_back(std::move(e));
  }
  return f;
}

void WriteEdit(const std::string& path, const EditFile& f) {
  std::vector<memmamba::TensorToWrite> out;
  for (const EditTensor& t : f.tensors) {
    memmamba::TensorToWrite w;
    w.name = t.name;
    w.dtype = t.dtype;
    w.shape = t.shape;
    w.data = t.bytes.data();
    w.nbytes = t.bytes.size();
    out.push_back(std::move(w));
  }
  auto bytes = memmamba::SerializeSafetensors(out, f.metadata);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  WriteBytes(path, *bytes);
}

// Each test gets its own empty directory under testing::TempDir().
class ApiFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("memmamba_api_" + std::to_string(getpid()) + "_" + info->test_suite_name() + "_" +
            info->name());
    fs::remove_all(dir_);
    ASSERT_TRUE(fs::create_directories(dir_)) << dir_;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Entries of the test directory (file names), sorted.
  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  // mm_model_load, checking that a failure leaves *out == NULL.
  mm_status Load(const std::string& path, ModelPtr* model = nullptr,
                 const mm_model_options* options = nullptr) {
    mm_model* m = Sentinel<mm_model>();
    const mm_status st = mm_model_load(&m, path.c_str(), options);
    if (st != MM_OK) {
      EXPECT_EQ(m, nullptr) << "a failed mm_model_load left *out set";
    } else {
      EXPECT_NE(m, nullptr);
      if (model) {
        model->reset(m);
      } else {
        mm_model_free(m);
      }
    }
    return st;
  }

  // Saves a fresh small model to `name` and returns its path.
  std::string SaveSmall(const std::string& name, uint64_t seed = 11) {
    ModelPtr m = MakeModel(seed);
    const std::string path = Path(name);
    EXPECT_EQ(mm_model_save(m.get(), path.c_str()), MM_OK) << mm_last_error();
    return path;
  }

  fs::path dir_;
};

// ---------------------------------------------------------------------------
// Versions, status strings, free(NULL)
// ---------------------------------------------------------------------------

TEST(ApiVersion, NumbersMatchTheHeader) {
  EXPECT_EQ(mm_version(), static_cast<uint32_t>(MM_VERSION_NUMBER));
  EXPECT_EQ(mm_abi_version(), static_cast<uint32_t>(MM_ABI_VERSION));
  const char* text = mm_version_string();
  ASSERT_NE(text, nullptr);
  EXPECT_STRNE(text, "");
  char expected[64];
  std::snprintf(expected, sizeof expected, "%d.%d.%d", MM_VERSION_MAJOR, MM_VERSION_MINOR,
                MM_VERSION_PATCH);
  EXPECT_STREQ(text, expected);
}

TEST(ApiVersion, StatusStringForEveryCode) {
  const std::vector<std::pair<mm_status, const char*>> codes = {
      {MM_OK, "MM_OK"},
      {MM_ERR_INVALID_ARGUMENT, "MM_ERR_INVALID_ARGUMENT"},
      {MM_ERR_STRUCT_SIZE, "MM_ERR_STRUCT_SIZE"},
      {MM_ERR_TOKEN_OUT_OF_RANGE, "MM_ERR_TOKEN_OUT_OF_RANGE"},
      {MM_ERR_OUT_OF_MEMORY, "MM_ERR_OUT_OF_MEMORY"},
      {MM_ERR_IO, "MM_ERR_IO"},
      {MM_ERR_CORRUPT_FILE, "MM_ERR_CORRUPT_FILE"},
      {MM_ERR_TENSOR_MISSING, "MM_ERR_TENSOR_MISSING"},
      {MM_ERR_TENSOR_SHAPE, "MM_ERR_TENSOR_SHAPE"},
      {MM_ERR_TENSOR_DTYPE, "MM_ERR_TENSOR_DTYPE"},
      {MM_ERR_NON_FINITE, "MM_ERR_NON_FINITE"},
      {MM_ERR_CONFIG, "MM_ERR_CONFIG"},
      {MM_ERR_MODEL_MISMATCH, "MM_ERR_MODEL_MISMATCH"},
      {MM_ERR_UNSUPPORTED, "MM_ERR_UNSUPPORTED"},
      {MM_ERR_BUFFER_TOO_SMALL, "MM_ERR_BUFFER_TOO_SMALL"},
      {MM_ERR_INTERNAL, "MM_ERR_INTERNAL"},
      {MM_ERR_CHECKSUM, "MM_ERR_CHECKSUM"},
      {MM_ERR_VERSION, "MM_ERR_VERSION"},
      {MM_ERR_NO_DEVICE, "MM_ERR_NO_DEVICE"},
      {MM_ERR_COMM, "MM_ERR_COMM"},
  };
  // The values are fixed forever.
  EXPECT_EQ(codes.size(), 20u);
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i].first, -static_cast<int>(i));

  std::vector<std::string> seen;
  for (const auto& [code, name] : codes) {
    const char* s = mm_status_string(code);
    ASSERT_NE(s, nullptr) << name;
    // Starts with the code's name followed by ':' (so MM_ERR_IO is not a
    // prefix match of something else).
    EXPECT_EQ(std::string(s).rfind(std::string(name) + ":", 0), 0u) << s;
    EXPECT_EQ(std::find(seen.begin(), seen.end(), s), seen.end()) << "duplicate text " << s;
    seen.push_back(s);
  }
  for (mm_status unknown : {1, 2, -20, -21, -100, 1000, std::numeric_limits<int32_t>::min(),
                            std::numeric_limits<int32_t>::max()}) {
    const char* s = mm_status_string(unknown);
    ASSERT_NE(s, nullptr) << unknown;
    EXPECT_STRNE(s, "") << unknown;
    EXPECT_EQ(std::find(seen.begin(), seen.end(), s), seen.end())
        << unknown << " is reported as a known code: " << s;
  }
}

TEST(ApiVersion, FreeNullIsANoOp) {
  mm_free(nullptr);
  mm_model_free(nullptr);
  mm_session_free(nullptr);
}

TEST(ApiErrors, LastErrorIsPerThread) {
  // A fresh thread starts with "".
  std::string fresh = "not run";
  std::thread([&] { fresh = mm_last_error(); }).join();
  EXPECT_EQ(fresh, "");

  // A failure in another thread does not touch this thread's message.
  ASSERT_EQ(mm_model_config_init(nullptr, sizeof(mm_model_config)), MM_ERR_INVALID_ARGUMENT);
  const std::string mine = mm_last_error();
  ASSERT_FALSE(mine.empty());
  std::string theirs;
  std::thread([&] {
    mm_model* m = nullptr;
    mm_model_config c = SmallConfig();
    c.vocab_size = 0;
    EXPECT_EQ(mm_model_create(&m, &c, 1, nullptr), MM_ERR_CONFIG);
    theirs = mm_last_error();
  }).join();
  EXPECT_TRUE(Mentions(theirs, "vocab_size")) << theirs;
  EXPECT_EQ(mine, mm_last_error());
}

// ---------------------------------------------------------------------------
// NULL handles and buffers
// ---------------------------------------------------------------------------

TEST(ApiNull, InitCalls) {
  EXPECT_TRUE(Fails(mm_model_config_init(nullptr, sizeof(mm_model_config)),
                    MM_ERR_INVALID_ARGUMENT, {"NULL"}));
  EXPECT_TRUE(Fails(mm_model_options_init(nullptr, sizeof(mm_model_options)),
                    MM_ERR_INVALID_ARGUMENT, {"NULL"}));
  EXPECT_TRUE(Fails(mm_session_options_init(nullptr, sizeof(mm_session_options)),
                    MM_ERR_INVALID_ARGUMENT, {"NULL"}));
}

TEST(ApiNull, ModelCalls) {
  const mm_model_config c = SmallConfig();
  EXPECT_TRUE(Fails(mm_model_create(nullptr, &c, 1, nullptr), MM_ERR_INVALID_ARGUMENT,
                    {"out"}));

  // NULL config / options mean the defaults (DESIGN 2.1).
  {
    mm_model* m = nullptr;
    ASSERT_EQ(mm_model_create(&m, nullptr, 1, nullptr), MM_OK) << mm_last_error();
    ModelPtr defaults(m);
    mm_model_config got, want;
    ASSERT_EQ(mm_model_config_init(&want, sizeof want), MM_OK);
    want.dt_rank = 16;  // resolved: ceil(256 / 16)
    std::memset(&got, 0, sizeof got);
    got.struct_size = sizeof got;
    ASSERT_EQ(mm_model_get_config(defaults.get(), &got), MM_OK);
    EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0);
  }

  mm_model* m = Sentinel<mm_model>();
  EXPECT_TRUE(Fails(mm_model_load(nullptr, "x.safetensors", nullptr), MM_ERR_INVALID_ARGUMENT,
                    {"out"}));
  EXPECT_TRUE(Fails(mm_model_load(&m, nullptr, nullptr), MM_ERR_INVALID_ARGUMENT, {"path"}));
  EXPECT_EQ(m, nullptr);

  m = Sentinel<mm_model>();
  EXPECT_TRUE(Fails(mm_model_import_mamba(nullptr, "x.safetensors", nullptr, 1, nullptr),
                    MM_ERR_INVALID_ARGUMENT, {"out"}));
  EXPECT_TRUE(Fails(mm_model_import_mamba(&m, nullptr, nullptr, 1, nullptr),
                    MM_ERR_INVALID_ARGUMENT, {"path"}));
  EXPECT_EQ(m, nullptr);

  ModelPtr model = MakeModel();
  EXPECT_TRUE(Fails(mm_model_save(nullptr, "x.safetensors"), MM_ERR_INVALID_ARGUMENT,
                    {"model"}));
  EXPECT_TRUE(Fails(mm_model_save(model.get(), nullptr), MM_ERR_INVALID_ARGUMENT, {"path"}));

  mm_model_config out;
  ASSERT_EQ(mm_model_config_init(&out, sizeof out), MM_OK);
  EXPECT_TRUE(Fails(mm_model_get_config(nullptr, &out), MM_ERR_INVALID_ARGUMENT, {"model"}));
  EXPECT_TRUE(Fails(mm_model_get_config(model.get(), nullptr), MM_ERR_INVALID_ARGUMENT,
                    {"config"}));

  EXPECT_EQ(mm_model_parameter_count(nullptr), 0u);
  EXPECT_GT(mm_model_parameter_count(model.get()), 0u);
}

TEST(ApiNull, SessionCalls) {
  ModelPtr model = MakeModel();
  EXPECT_TRUE(Fails(mm_session_create(nullptr, model.get(), nullptr), MM_ERR_INVALID_ARGUMENT,
                    {"out"}));
  mm_session* s = Sentinel<mm_session>();
  EXPECT_TRUE(Fails(mm_session_create(&s, nullptr, nullptr), MM_ERR_INVALID_ARGUMENT,
                    {"model"}));
  EXPECT_EQ(s, nullptr);

  const int32_t tok[2] = {1, 2};
  float logits[2 * kVocab];
  EXPECT_TRUE(Fails(mm_session_feed(nullptr, tok, 2, MM_LOGITS_NONE, nullptr, 0),
                    MM_ERR_INVALID_ARGUMENT, {"session"}));
  EXPECT_TRUE(Fails(mm_session_reset(nullptr), MM_ERR_INVALID_ARGUMENT, {"session"}));

  EXPECT_EQ(mm_session_position(nullptr), 0u);
  EXPECT_EQ(mm_session_state_bytes(nullptr), 0u);
  EXPECT_EQ(mm_session_pool_size(nullptr, 0), -1);
  ASSERT_NE(mm_session_last_error(nullptr), nullptr);
  EXPECT_STREQ(mm_session_last_error(nullptr), "");

  SessionPtr session = MakeSession(model.get());
  SessionPtr twin = MakeSession(model.get());
  EXPECT_STREQ(mm_session_last_error(session.get()), "");
  EXPECT_EQ(mm_session_pool_size(session.get(), 0), 0);
  EXPECT_EQ(mm_session_pool_size(session.get(), 3), -1);  // n_layer = 3
  EXPECT_EQ(mm_session_pool_size(session.get(), UINT32_MAX), -1);

  // NULL tokens with n > 0, NULL logits where logits are asked for.
  EXPECT_TRUE(Fails(mm_session_feed(session.get(), nullptr, 2, MM_LOGITS_NONE, nullptr, 0),
                    MM_ERR_INVALID_ARGUMENT, {"tokens"}, {session.get()}));
  EXPECT_TRUE(Fails(mm_session_feed(session.get(), tok, 2, MM_LOGITS_LAST, nullptr, kVocab),
                    MM_ERR_INVALID_ARGUMENT, {"logits"}, {session.get()}));
  EXPECT_TRUE(Fails(mm_session_feed(session.get(), tok, 2, MM_LOGITS_ALL, nullptr, 2 * kVocab),
                    MM_ERR_INVALID_ARGUMENT, {"logits"}, {session.get()}));
  EXPECT_EQ(mm_session_position(session.get()), 0u);
  ExpectSameFuture(session.get(), twin.get(), 1);
  (void)logits;

  // mm_sessions_step: NULL array, NULL entry, NULL tokens.
  mm_session* both[2] = {session.get(), twin.get()};
  EXPECT_TRUE(Fails(mm_sessions_step(nullptr, 2, tok, nullptr, 0), MM_ERR_INVALID_ARGUMENT,
                    {"sessions"}));
  EXPECT_TRUE(Fails(mm_sessions_step(both, 2, nullptr, nullptr, 0), MM_ERR_INVALID_ARGUMENT,
                    {"tokens"}));
  mm_session* with_null[2] = {session.get(), nullptr};
  EXPECT_TRUE(Fails(mm_sessions_step(with_null, 2, tok, nullptr, 0), MM_ERR_INVALID_ARGUMENT,
                    {"sessions[1]"}));
  ExpectSameFuture(session.get(), twin.get(), 2);
}

// ---------------------------------------------------------------------------
// struct_size
// ---------------------------------------------------------------------------

// A struct as a newer header would declare it: the current one plus fields.
template <typename T>
struct Grown {
  T base;
  uint32_t future[3];
};

TEST(ApiStructSize, InitRejectsUnknownSmallSizes) {
  for (size_t size : {size_t{0}, size_t{4}, sizeof(mm_model_config) - 1}) {
    mm_model_config c;
    EXPECT_TRUE(Fails(mm_model_config_init(&c, size), MM_ERR_STRUCT_SIZE, {"size"}))
        << "size " << size;
  }
  for (size_t size : {size_t{0}, size_t{4}, offsetof(mm_model_options, math) - 1}) {
    mm_model_options o;
    EXPECT_TRUE(Fails(mm_model_options_init(&o, size), MM_ERR_STRUCT_SIZE, {"size"}))
        << "size " << size;
  }
  for (size_t size : {size_t{0}, size_t{4}, sizeof(mm_session_options) - 1}) {
    mm_session_options o;
    EXPECT_TRUE(Fails(mm_session_options_init(&o, size), MM_ERR_STRUCT_SIZE, {"size"}))
        << "size " << size;
  }
}

TEST(ApiStructSize, InitOfALargerStructZeroesTheTail) {
  Grown<mm_model_config> g;
  std::memset(&g, 0xAB, sizeof g);
  ASSERT_EQ(mm_model_config_init(&g.base, sizeof g), MM_OK);
  EXPECT_EQ(g.base.struct_size, sizeof g);
  EXPECT_EQ(g.base.vocab_size, 256u);
  EXPECT_EQ(g.base.pool_capacity, 50u);
  for (uint32_t f : g.future) EXPECT_EQ(f, 0u);

  Grown<mm_model_options> go;
  std::memset(&go, 0xAB, sizeof go);
  ASSERT_EQ(mm_model_options_init(&go.base, sizeof go), MM_OK);
  EXPECT_EQ(go.base.struct_size, sizeof go);
  EXPECT_EQ(go.base.device, MM_DEVICE_CPU);
  for (uint32_t f : go.future) EXPECT_EQ(f, 0u);

  Grown<mm_session_options> gs;
  std::memset(&gs, 0xAB, sizeof gs);
  ASSERT_EQ(mm_session_options_init(&gs.base, sizeof gs), MM_OK);
  EXPECT_EQ(gs.base.struct_size, sizeof gs);
  EXPECT_EQ(gs.base.max_chunk, 0u);
  for (uint32_t f : gs.future) EXPECT_EQ(f, 0u);
}

TEST(ApiStructSize, CreateRejectsUnknownSmallSizes) {
  ModelPtr model = MakeModel();
  // No version of these structs ever had a size below the first one's, so
  // such sizes are refused where a struct is passed, as by the _init calls.
  for (uint32_t size : {0u, 4u, static_cast<uint32_t>(sizeof(mm_model_config) - 1)}) {
    SCOPED_TRACE("mm_model_config.struct_size = " + std::to_string(size));
    mm_model_config c = SmallConfig();
    c.struct_size = size;
    mm_model* m = Sentinel<mm_model>();
    EXPECT_TRUE(Fails(mm_model_create(&m, &c, 1, nullptr), MM_ERR_STRUCT_SIZE,
                      {"struct_size"}));
    EXPECT_EQ(m, nullptr);
    if (m != nullptr && m != Sentinel<mm_model>()) mm_model_free(m);
    m = Sentinel<mm_model>();
    EXPECT_TRUE(Fails(mm_model_import_mamba(&m, "/nonexistent/ckpt.safetensors", &c, 1, nullptr),
                      MM_ERR_STRUCT_SIZE, {"struct_size"}));
    EXPECT_EQ(m, nullptr);
  }
  for (uint32_t size : {0u, 4u, static_cast<uint32_t>(offsetof(mm_model_options, math) - 1)}) {
    SCOPED_TRACE("mm_model_options.struct_size = " + std::to_string(size));
    mm_model_options o = Options();
    o.struct_size = size;
    mm_model_config c = SmallConfig();
    mm_model* m = Sentinel<mm_model>();
    EXPECT_TRUE(Fails(mm_model_create(&m, &c, 1, &o), MM_ERR_STRUCT_SIZE, {"struct_size"}));
    EXPECT_EQ(m, nullptr);
    if (m != nullptr && m != Sentinel<mm_model>()) mm_model_free(m);
    m = Sentinel<mm_model>();
    EXPECT_TRUE(Fails(mm_model_load(&m, "/nonexistent/model.safetensors", &o),
                      MM_ERR_STRUCT_SIZE, {"struct_size"}));
    EXPECT_EQ(m, nullptr);
  }
  for (uint32_t size : {0u, 4u, static_cast<uint32_t>(sizeof(mm_session_options) - 1)}) {
    SCOPED_TRACE("mm_session_options.struct_size = " + std::to_string(size));
    mm_session_options o;
    ASSERT_EQ(mm_session_options_init(&o, sizeof o), MM_OK);
    o.struct_size = size;
    mm_session* s = Sentinel<mm_session>();
    EXPECT_TRUE(Fails(mm_session_create(&s, model.get(), &o), MM_ERR_STRUCT_SIZE,
                      {"struct_size"}));
    EXPECT_EQ(s, nullptr);
    if (s != nullptr && s != Sentinel<mm_session>()) mm_session_free(s);
  }
}

TEST(ApiStructSize, LargerStructsWithAZeroTailAreAccepted) {
  const mm_model_config small = SmallConfig();
  Grown<mm_model_config> gc;
  ASSERT_EQ(mm_model_config_init(&gc.base, sizeof gc), MM_OK);
  gc.base = small;
  gc.base.struct_size = sizeof gc;
  Grown<mm_model_options> go;
  ASSERT_EQ(mm_model_options_init(&go.base, sizeof go), MM_OK);
  go.base.n_threads = 2;

  mm_model* raw = nullptr;
  ASSERT_EQ(mm_model_create(&raw, &gc.base, 7, &go.base), MM_OK) << mm_last_error();
  ModelPtr grown(raw);
  ModelPtr plain = MakeModel(7, &small);

  mm_model_config a, b;
  ASSERT_EQ(mm_model_config_init(&a, sizeof a), MM_OK);
  ASSERT_EQ(mm_model_config_init(&b, sizeof b), MM_OK);
  ASSERT_EQ(mm_model_get_config(grown.get(), &a), MM_OK);
  ASSERT_EQ(mm_model_get_config(plain.get(), &b), MM_OK);
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);

  Grown<mm_session_options> gs;
  ASSERT_EQ(mm_session_options_init(&gs.base, sizeof gs), MM_OK);
  gs.base.max_chunk = 5;
  mm_session* s = nullptr;
  ASSERT_EQ(mm_session_create(&s, grown.get(), &gs.base), MM_OK) << mm_last_error();
  SessionPtr session(s);
  const std::vector<int32_t> toks = Tokens(30, 3);
  EXPECT_LE(RelErr(FeedAll(session.get(), toks), FreshLogits(plain.get(), toks)), 1e-5);
}

TEST(ApiStructSize, LargerStructsWithANonZeroTailAreRejected) {
  ModelPtr model = MakeModel();
  Grown<mm_model_config> gc;
  ASSERT_EQ(mm_model_config_init(&gc.base, sizeof gc), MM_OK);
  gc.base = SmallConfig();
  gc.base.struct_size = sizeof gc;
  gc.future[1] = 1;
  mm_model* m = Sentinel<mm_model>();
  EXPECT_TRUE(Fails(mm_model_create(&m, &gc.base, 1, nullptr), MM_ERR_STRUCT_SIZE,
                    {"struct_size"}));
  EXPECT_EQ(m, nullptr);
  m = Sentinel<mm_model>();
  EXPECT_TRUE(Fails(mm_model_import_mamba(&m, "/nonexistent/ckpt.safetensors", &gc.base, 1,
                                          nullptr),
                    MM_ERR_STRUCT_SIZE, {"struct_size"}));
  EXPECT_EQ(m, nullptr);

  Grown<mm_model_options> go;
  ASSERT_EQ(mm_model_options_init(&go.base, sizeof go), MM_OK);
  go.future[2] = 0x100;
  mm_model_config c = SmallConfig();
  m = Sentinel<mm_model>();
  EXPECT_TRUE(Fails(mm_model_create(&m, &c, 1, &go.base), MM_ERR_STRUCT_SIZE, {"struct_size"}));
  EXPECT_EQ(m, nullptr);

  Grown<mm_session_options> gs;
  ASSERT_EQ(mm_session_options_init(&gs.base, sizeof gs), MM_OK);
  gs.future[0] = 7;
  mm_session* s = Sentinel<mm_session>();
  EXPECT_TRUE(Fails(mm_session_create(&s, model.get(), &gs.base), MM_ERR_STRUCT_SIZE,
                    {"struct_size"}));
  EXPECT_EQ(s, nullptr);
}

TEST(ApiStructSize, GetConfigWritesOnlyWhatTheCallerKnows) {
  const mm_model_config want = SmallConfig();
  ModelPtr model = MakeModel(7, &want);

  // The current size: every field, dt_rank resolved (ceil(16 / 16) = 1).
  mm_model_config got;
  std::memset(&got, 0xCD, sizeof got);
  got.struct_size = sizeof got;
  ASSERT_EQ(mm_model_get_config(model.get(), &got), MM_OK) << mm_last_error();
  mm_model_config expect = want;
  expect.dt_rank = 1;
  EXPECT_EQ(std::memcmp(&got, &expect, sizeof got), 0);

  // A newer, larger struct: struct_size is kept, the known prefix is filled,
  // nothing past struct_size is touched, and the fields this library does
  // not know are either untouched or zero.
  struct {
    Grown<mm_model_config> g;
    unsigned char guard[16];
  } big;
  std::memset(&big, 0xCD, sizeof big);
  big.g.base.struct_size = sizeof big.g;
  ASSERT_EQ(mm_model_get_config(model.get(), &big.g.base), MM_OK) << mm_last_error();
  EXPECT_EQ(big.g.base.struct_size, sizeof big.g);
  mm_model_config prefix = big.g.base;
  prefix.struct_size = sizeof prefix;
  EXPECT_EQ(std::memcmp(&prefix, &expect, sizeof prefix), 0);
  for (uint32_t f : big.g.future) EXPECT_TRUE(f == 0xCDCDCDCDu || f == 0u) << f;
  for (unsigned char b : big.guard) EXPECT_EQ(b, 0xCD);

  // Sizes no version ever had: refused, and the struct is left alone.
  for (uint32_t size : {0u, 4u, 8u, static_cast<uint32_t>(sizeof(mm_model_config) - 1)}) {
    mm_model_config c;
    std::memset(&c, 0xCD, sizeof c);
    c.struct_size = size;
    mm_model_config before = c;
    EXPECT_TRUE(Fails(mm_model_get_config(model.get(), &c), MM_ERR_STRUCT_SIZE,
                      {"struct_size"}))
        << "size " << size;
    EXPECT_EQ(std::memcmp(&c, &before, sizeof c), 0) << "size " << size;
  }
}

// ---------------------------------------------------------------------------
// Configuration and options
// ---------------------------------------------------------------------------

TEST(ApiConfig, InvalidValuesAreConfigErrors) {
  struct Case {
    const char* what;
    void (*edit)(mm_model_config*);
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"summary_dim not divisible by attn_heads",
       [](mm_model_config* c) { c->summary_dim = 10; c->attn_heads = 4; },
       {"summary_dim", "attn_heads"}},
      {"vocab_size 0", [](mm_model_config* c) { c->vocab_size = 0; }, {"vocab_size"}},
      {"d_model 0", [](mm_model_config* c) { c->d_model = 0; }, {"d_model"}},
      {"n_layer 0", [](mm_model_config* c) { c->n_layer = 0; }, {"n_layer"}},
      {"attn_heads 0", [](mm_model_config* c) { c->attn_heads = 0; }, {"attn_heads"}},
      {"unknown pool_policy 2", [](mm_model_config* c) { c->pool_policy = 2; }, {"pool_policy"}},
      {"unknown pool_policy -1", [](mm_model_config* c) { c->pool_policy = -1; },
       {"pool_policy"}},
      {"unknown fusion 3", [](mm_model_config* c) { c->fusion = 3; }, {"fusion"}},
      {"unknown fusion -7", [](mm_model_config* c) { c->fusion = -7; }, {"fusion"}},
      {"NaN note_threshold",
       [](mm_model_config* c) { c->note_threshold = std::numeric_limits<float>::quiet_NaN(); },
       {"threshold"}},
      {"NaN gate_threshold",
       [](mm_model_config* c) { c->gate_threshold = std::numeric_limits<float>::quiet_NaN(); },
       {"threshold"}},
      {"inf note_threshold",
       [](mm_model_config* c) { c->note_threshold = std::numeric_limits<float>::infinity(); },
       {"threshold"}},
      {"norm_eps 0", [](mm_model_config* c) { c->norm_eps = 0.0f; }, {"norm_eps"}},
      {"NaN norm_eps",
       [](mm_model_config* c) { c->norm_eps = std::numeric_limits<float>::quiet_NaN(); },
       {"norm_eps"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    mm_model_config c = SmallConfig();
    k.edit(&c);
    mm_model* m = Sentinel<mm_model>();
    EXPECT_TRUE(Fails(mm_model_create(&m, &c, 1, nullptr), MM_ERR_CONFIG, k.needles));
    EXPECT_EQ(m, nullptr);
    if (m != nullptr && m != Sentinel<mm_model>()) mm_model_free(m);
  }
}

TEST(ApiOptions, InvalidOptionsAreInvalidArguments) {
  struct Case {
    const char* what;
    void (*edit)(mm_model_options*);
    const char* needle;
  };
  const std::vector<Case> cases = {
      {"device 2", [](mm_model_options* o) { o->device = 2; }, "device"},
      {"device -1", [](mm_model_options* o) { o->device = -1; }, "device"},
      {"weight_dtype 2", [](mm_model_options* o) { o->weight_dtype = 2; }, "dtype"},
      {"weight_dtype -1", [](mm_model_options* o) { o->weight_dtype = -1; }, "dtype"},
      {"n_threads -1", [](mm_model_options* o) { o->n_threads = -1; }, "n_threads"},
      {"n_threads INT32_MIN",
       [](mm_model_options* o) { o->n_threads = std::numeric_limits<int32_t>::min(); },
       "n_threads"},
      {"math 3", [](mm_model_options* o) { o->math = 3; }, "math"},
      {"math -1", [](mm_model_options* o) { o->math = -1; }, "math"},
  };
  const mm_model_config c = SmallConfig();
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    mm_model_options o = Options();
    k.edit(&o);
    mm_model* m = Sentinel<mm_model>();
    EXPECT_TRUE(Fails(mm_model_create(&m, &c, 1, &o), MM_ERR_INVALID_ARGUMENT, {k.needle}));
    EXPECT_EQ(m, nullptr);
    if (m != nullptr && m != Sentinel<mm_model>()) mm_model_free(m);
  }
}

// MM_MATH_TF32 and MM_MATH_BF16 only concern GPU products: a CPU model
// computes the same bits with them, and an options struct of the first
// version (without `math`) is accepted. A trainer refuses MM_MATH_BF16.
TEST(ApiOptions, MathTf32LeavesCpuModelsAlone) {
  const mm_model_config c = SmallConfig();
  mm_model_options o = Options();
  EXPECT_EQ(o.math, MM_MATH_FP32);
  ModelPtr fp32(nullptr);
  {
    mm_model* m = nullptr;
    ASSERT_EQ(mm_model_create(&m, &c, 5, &o), MM_OK) << mm_last_error();
    fp32.reset(m);
  }
  o.math = MM_MATH_TF32;
  mm_model* tf32 = nullptr;
  ASSERT_EQ(mm_model_create(&tf32, &c, 5, &o), MM_OK) << mm_last_error();
  ModelPtr tf32_owned(tf32);
  o.math = MM_MATH_BF16;
  mm_model* bf16 = nullptr;
  ASSERT_EQ(mm_model_create(&bf16, &c, 5, &o), MM_OK) << mm_last_error();
  ModelPtr bf16_owned(bf16);
  mm_model_options v1 = Options();
  v1.struct_size = offsetof(mm_model_options, math);
  mm_model* old = nullptr;
  ASSERT_EQ(mm_model_create(&old, &c, 5, &v1), MM_OK) << mm_last_error();
  ModelPtr old_owned(old);
  std::vector<float> a, b, d, e;
  const std::vector<std::pair<mm_model*, std::vector<float>*>> runs = {
      {fp32.get(), &a}, {tf32, &b}, {old, &d}, {bf16, &e}};
  for (auto [model, out] : runs) {
    mm_session* s = nullptr;
    ASSERT_EQ(mm_session_create(&s, model, nullptr), MM_OK);
    const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
    out->assign(c.vocab_size, 0.0f);
    ASSERT_EQ(mm_session_feed(s, tokens.data(), tokens.size(), MM_LOGITS_LAST, out->data(),
                              out->size()),
              MM_OK);
    mm_session_free(s);
  }
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, d);
  EXPECT_EQ(a, e);
  mm_trainer_options t;
  ASSERT_EQ(mm_trainer_options_init(&t, sizeof t), MM_OK);
  EXPECT_EQ(t.math, MM_MATH_FP32);
  t.math = 3;
  mm_trainer* trainer = Sentinel<mm_trainer>();
  EXPECT_TRUE(Fails(mm_trainer_create(&trainer, fp32.get(), &t), MM_ERR_INVALID_ARGUMENT,
                    {"math"}));
  EXPECT_EQ(trainer, nullptr);
  t.math = MM_MATH_BF16;
  trainer = Sentinel<mm_trainer>();
  EXPECT_TRUE(Fails(mm_trainer_create(&trainer, fp32.get(), &t), MM_ERR_UNSUPPORTED,
                    {"MM_MATH_BF16"}));
  EXPECT_EQ(trainer, nullptr);
  t.math = MM_MATH_TF32;
  ASSERT_EQ(mm_trainer_create(&trainer, fp32.get(), &t), MM_OK) << mm_last_error();
  mm_trainer_free(trainer);
}

// MM_DEVICE_CUDA models: MM_ERR_UNSUPPORTED without the CUDA backend,
// MM_ERR_NO_DEVICE where the backend loads but no GPU answers; with a GPU
// the model is made (tests/cuda/session_parity.cc covers it).
TEST(ApiOptions, CudaModelsFailCleanlyWithoutAGpu) {
  const mm_model_config c = SmallConfig();
  mm_model_options o = Options();
  o.device = MM_DEVICE_CUDA;
  mm_model* m = Sentinel<mm_model>();
  const mm_status s = mm_model_create(&m, &c, 1, &o);
  if (s == MM_OK) {
    mm_model_free(m);
    return;
  }
  EXPECT_TRUE(s == MM_ERR_UNSUPPORTED || s == MM_ERR_NO_DEVICE) << mm_status_string(s);
  EXPECT_NE(std::string(mm_last_error()).find("CUDA"), std::string::npos) << mm_last_error();
  EXPECT_EQ(m, nullptr);
  if (m != nullptr && m != Sentinel<mm_model>()) mm_model_free(m);
}

TEST(ApiOptions, CudaTrainersFailCleanlyWithoutAGpu) {
  ModelPtr model = MakeModel();
  mm_trainer_options o;
  ASSERT_EQ(mm_trainer_options_init(&o, sizeof o), MM_OK);
  EXPECT_EQ(o.device, MM_DEVICE_CPU);
  o.device = 7;
  mm_trainer* t = Sentinel<mm_trainer>();
  EXPECT_TRUE(Fails(mm_trainer_create(&t, model.get(), &o), MM_ERR_INVALID_ARGUMENT, {"device"}));
  EXPECT_EQ(t, nullptr);
  o.device = MM_DEVICE_CUDA;
  const mm_status s = mm_trainer_create(&t, model.get(), &o);
  if (s == MM_OK) {  // a machine with a GPU: tests/cuda covers it
    mm_trainer_free(t);
  } else {
    EXPECT_TRUE(s == MM_ERR_UNSUPPORTED || s == MM_ERR_NO_DEVICE) << mm_status_string(s);
    EXPECT_EQ(t, nullptr);
  }
  // An options struct of the first version (without `device`) is accepted.
  mm_trainer_options v1;
  ASSERT_EQ(mm_trainer_options_init(&v1, offsetof(mm_trainer_options, device)), MM_OK);
  ASSERT_EQ(mm_trainer_create(&t, model.get(), &v1), MM_OK) << mm_last_error();
  mm_trainer_free(t);
  t = Sentinel<mm_trainer>();
  EXPECT_TRUE(Fails(mm_trainer_load_on(&t, "no-such-file.safetensors", 1, 9),
                    MM_ERR_INVALID_ARGUMENT, {"device"}));
  EXPECT_EQ(t, nullptr);
}

// Data-parallel training: what can be checked without GPUs (tests/cuda/
// data_parallel.cc runs the groups).
TEST(ApiDataParallel, OptionsAndRefusals) {
  mm_data_parallel_options o;
  ASSERT_EQ(mm_data_parallel_options_init(&o, sizeof o), MM_OK);
  EXPECT_EQ(o.struct_size, sizeof o);
  EXPECT_EQ(o.world_size, 1u);
  EXPECT_EQ(o.rank, 0u);
  EXPECT_EQ(o.device, -1);
  EXPECT_TRUE(Fails(mm_data_parallel_options_init(&o, 3), MM_ERR_STRUCT_SIZE, {"size"}));
  EXPECT_TRUE(Fails(mm_data_parallel_options_init(nullptr, sizeof o), MM_ERR_INVALID_ARGUMENT,
                    {"NULL"}));

  ModelPtr model = MakeModel();
  mm_trainer* t = nullptr;
  ASSERT_EQ(mm_trainer_create(&t, model.get(), nullptr), MM_OK) << mm_last_error();
  EXPECT_EQ(mm_trainer_world_size(t), 1u);
  EXPECT_EQ(mm_trainer_world_size(nullptr), 1u);
  ASSERT_EQ(mm_data_parallel_options_init(&o, sizeof o), MM_OK);
  EXPECT_TRUE(Fails(mm_trainer_join(nullptr, &o), MM_ERR_INVALID_ARGUMENT, {"trainer"}));
  EXPECT_TRUE(Fails(mm_trainer_join(t, nullptr), MM_ERR_INVALID_ARGUMENT, {"options"}));
  EXPECT_STRNE(mm_trainer_last_error(t), "");
  o.world_size = 2;
  o.rank = 2;
  EXPECT_TRUE(Fails(mm_trainer_join(t, &o), MM_ERR_INVALID_ARGUMENT, {"rank 2"}));
  o.world_size = 0;
  o.rank = 0;
  EXPECT_TRUE(Fails(mm_trainer_join(t, &o), MM_ERR_INVALID_ARGUMENT, {"world size 0"}));
  o.world_size = 1;
  o.struct_size = 5;
  EXPECT_TRUE(Fails(mm_trainer_join(t, &o), MM_ERR_STRUCT_SIZE, {"struct_size"}));
  o.struct_size = sizeof o;
  // A trainer on the CPU cannot join, and keeps training as before.
  EXPECT_TRUE(Fails(mm_trainer_join(t, &o), MM_ERR_UNSUPPORTED, {"GPU"}));
  EXPECT_EQ(mm_trainer_world_size(t), 1u);
  const std::vector<int32_t> toks = Tokens(2 * 9, 3);
  mm_train_result r;
  ASSERT_EQ(mm_train_result_init(&r, sizeof r), MM_OK);
  EXPECT_EQ(mm_train_step(t, toks.data(), 2, 9, nullptr, &r), MM_OK) << mm_trainer_last_error(t);
  mm_trainer_free(t);
}

TEST(ApiDataParallel, IdExchange) {
  uint8_t id[MM_NCCL_ID_BYTES];
  for (int i = 0; i < MM_NCCL_ID_BYTES; ++i) id[i] = static_cast<uint8_t>(i * 37 + 5);
  char hex[2 * MM_NCCL_ID_BYTES + 1];
  EXPECT_TRUE(Fails(mm_nccl_id_to_hex(id, hex, 2 * MM_NCCL_ID_BYTES), MM_ERR_BUFFER_TOO_SMALL,
                    {"257"}));
  ASSERT_EQ(mm_nccl_id_to_hex(id, hex, sizeof hex), MM_OK);
  EXPECT_EQ(std::strlen(hex), 256u);
  EXPECT_EQ(std::string(hex, 4), "052a");  // 5, 42
  uint8_t back[MM_NCCL_ID_BYTES] = {0};
  ASSERT_EQ(mm_nccl_id_from_hex(back, hex), MM_OK);
  EXPECT_EQ(std::memcmp(back, id, sizeof id), 0);
  // Bad text changes nothing.
  std::string bad(hex);
  bad[100] = 'x';
  EXPECT_TRUE(Fails(mm_nccl_id_from_hex(back, bad.c_str()), MM_ERR_INVALID_ARGUMENT, {"hex"}));
  EXPECT_TRUE(Fails(mm_nccl_id_from_hex(back, "abcd"), MM_ERR_INVALID_ARGUMENT, {"256"}));
  EXPECT_EQ(std::memcmp(back, id, sizeof id), 0);
  EXPECT_TRUE(Fails(mm_nccl_id_from_hex(back, nullptr), MM_ERR_INVALID_ARGUMENT, {"NULL"}));

  // Through a file, written atomically; a reader waits for it.
  const std::string path = ::testing::TempDir() + "mm_api_nccl.id";
  std::remove(path.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(Fails(mm_nccl_id_read_file(back, path.c_str(), 60), MM_ERR_IO, {"60 ms"}));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(60));
  ASSERT_EQ(mm_nccl_id_write_file(path.c_str(), id), MM_OK) << mm_last_error();
  std::memset(back, 0, sizeof back);
  ASSERT_EQ(mm_nccl_id_read_file(back, path.c_str(), 0), MM_OK) << mm_last_error();
  EXPECT_EQ(std::memcmp(back, id, sizeof id), 0);
  { std::ofstream(path) << "not an id\n"; }
  EXPECT_TRUE(Fails(mm_nccl_id_read_file(back, path.c_str(), 0), MM_ERR_INVALID_ARGUMENT,
                    {"NCCL id"}));
  std::remove(path.c_str());
  EXPECT_TRUE(Fails(mm_nccl_id_write_file("/no/such/dir/x.id", id), MM_ERR_IO, {"/no/such"}));

  // A new id: from NCCL where the CUDA backend and NCCL are there.
  const mm_status s = mm_nccl_id_create(back);
  EXPECT_TRUE(s == MM_OK || s == MM_ERR_UNSUPPORTED || s == MM_ERR_COMM) << mm_status_string(s);
  EXPECT_TRUE(Fails(mm_nccl_id_create(nullptr), MM_ERR_INVALID_ARGUMENT, {"NULL"}));
}

TEST(ApiSessionOptions, MaxChunkDoesNotChangeResults) {
  ModelPtr model = MakeModel();
  const std::vector<int32_t> toks = Tokens(70, 9);
  const std::vector<float> ref = FreshLogits(model.get(), toks);
  for (uint32_t chunk : {1u, 3u, 64u}) {
    mm_session_options o;
    ASSERT_EQ(mm_session_options_init(&o, sizeof o), MM_OK);
    o.max_chunk = chunk;
    mm_session* s = nullptr;
    ASSERT_EQ(mm_session_create(&s, model.get(), &o), MM_OK) << mm_last_error();
    SessionPtr session(s);
    EXPECT_LE(RelErr(FeedAll(session.get(), toks), ref), 1e-5) << "max_chunk " << chunk;
  }
  mm_session_options o;
  ASSERT_EQ(mm_session_options_init(&o, sizeof o), MM_OK);
  o.max_chunk = (1u << 20) + 1;
  mm_session* s = Sentinel<mm_session>();
  EXPECT_TRUE(Fails(mm_session_create(&s, model.get(), &o), MM_ERR_INVALID_ARGUMENT,
                    {"max_chunk"}));
  EXPECT_EQ(s, nullptr);
}

// ---------------------------------------------------------------------------
// Feeds: failures change nothing
// ---------------------------------------------------------------------------

TEST(ApiFeed, EveryFailureLeavesTheSessionUntouched) {
  ModelPtr model = MakeModel();
  SessionPtr s = MakeSession(model.get());
  SessionPtr twin = MakeSession(model.get());
  const std::vector<int32_t> prefix = Tokens(10, 1);
  FeedAll(s.get(), prefix);
  FeedAll(twin.get(), prefix);

  std::vector<float> buf(400 * kVocab, 0.0f);
  uint32_t seed = 100;
  // After each failure: same position, and the future equals the twin's.
  auto unchanged = [&](uint64_t position) {
    EXPECT_EQ(mm_session_position(s.get()), position);
    ExpectSameFuture(s.get(), twin.get(), seed++);
  };

  // Out-of-range ids, last in a batch longer than the internal block (256):
  // validation must precede any work.
  for (int32_t bad : {-1, static_cast<int32_t>(kVocab), std::numeric_limits<int32_t>::min(),
                      std::numeric_limits<int32_t>::max()}) {
    for (int32_t mode : {MM_LOGITS_NONE, MM_LOGITS_LAST, MM_LOGITS_ALL}) {
      SCOPED_TRACE("bad id " + std::to_string(bad) + ", mode " + std::to_string(mode));
      std::vector<int32_t> toks = Tokens(300, seed);
      toks.back() = bad;
      const uint64_t pos = mm_session_position(s.get());
      EXPECT_TRUE(Fails(mm_session_feed(s.get(), toks.data(), toks.size(), mode, buf.data(),
                                        buf.size()),
                        MM_ERR_TOKEN_OUT_OF_RANGE, {std::to_string(bad), "299"}, {s.get()}));
      unchanged(pos);
    }
  }
  {
    SCOPED_TRACE("bad id first");
    std::vector<int32_t> toks = Tokens(5, seed);
    toks.front() = -1;
    const uint64_t pos = mm_session_position(s.get());
    EXPECT_TRUE(Fails(mm_session_feed(s.get(), toks.data(), toks.size(), MM_LOGITS_LAST,
                                      buf.data(), kVocab),
                      MM_ERR_TOKEN_OUT_OF_RANGE, {"-1"}, {s.get()}));
    unchanged(pos);
  }

  const std::vector<int32_t> five = Tokens(5, 77);
  struct Case {
    const char* what;
    const int32_t* tokens;
    size_t n;
    int32_t mode;
    float* logits;
    size_t capacity;
    mm_status want;
    std::vector<std::string> needles;
  };
  const size_t huge_n = std::numeric_limits<size_t>::max() / kVocab + 1;
  const std::vector<Case> cases = {
      {"LAST, capacity V-1", five.data(), 5, MM_LOGITS_LAST, buf.data(), kVocab - 1,
       MM_ERR_BUFFER_TOO_SMALL, {"47", "48"}},
      {"LAST, capacity 0", five.data(), 5, MM_LOGITS_LAST, buf.data(), 0,
       MM_ERR_BUFFER_TOO_SMALL, {"48"}},
      {"ALL, capacity 5V-1", five.data(), 5, MM_LOGITS_ALL, buf.data(), 5 * kVocab - 1,
       MM_ERR_BUFFER_TOO_SMALL, {std::to_string(5 * kVocab - 1), std::to_string(5 * kVocab)}},
      {"ALL, capacity V (enough for LAST only)", five.data(), 5, MM_LOGITS_ALL, buf.data(),
       kVocab, MM_ERR_BUFFER_TOO_SMALL, {std::to_string(5 * kVocab)}},
      {"mode 3", five.data(), 5, 3, buf.data(), buf.size(), MM_ERR_INVALID_ARGUMENT,
       {"mode", "3"}},
      {"mode -1", five.data(), 5, -1, buf.data(), buf.size(), MM_ERR_INVALID_ARGUMENT,
       {"mode", "-1"}},
      {"mode 3 with no tokens", nullptr, 0, 3, nullptr, 0, MM_ERR_INVALID_ARGUMENT, {"mode"}},
      {"LAST with 0 tokens", five.data(), 0, MM_LOGITS_LAST, buf.data(), buf.size(),
       MM_ERR_INVALID_ARGUMENT, {"LAST"}},
      {"LAST with 0 tokens, NULL tokens", nullptr, 0, MM_LOGITS_LAST, buf.data(), buf.size(),
       MM_ERR_INVALID_ARGUMENT, {"LAST"}},
      {"NULL tokens, n 5", nullptr, 5, MM_LOGITS_NONE, nullptr, 0, MM_ERR_INVALID_ARGUMENT,
       {"tokens"}},
      {"NULL logits, LAST", five.data(), 5, MM_LOGITS_LAST, nullptr, kVocab,
       MM_ERR_INVALID_ARGUMENT, {"logits"}},
      {"NULL logits, ALL", five.data(), 5, MM_LOGITS_ALL, nullptr, 5 * kVocab,
       MM_ERR_INVALID_ARGUMENT, {"logits"}},
      // n * vocab_size overflows size_t: refused before any token is read.
      {"ALL, n * V overflows", five.data(), huge_n, MM_LOGITS_ALL, buf.data(),
       std::numeric_limits<size_t>::max(), MM_ERR_INVALID_ARGUMENT, {"overflow"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    const uint64_t pos = mm_session_position(s.get());
    EXPECT_TRUE(Fails(mm_session_feed(s.get(), k.tokens, k.n, k.mode, k.logits, k.capacity),
                      k.want, k.needles, {s.get()}));
    unchanged(pos);
  }

  // Feeding nothing succeeds and changes nothing.
  {
    SCOPED_TRACE("empty feeds");
    const uint64_t pos = mm_session_position(s.get());
    EXPECT_EQ(mm_session_feed(s.get(), nullptr, 0, MM_LOGITS_NONE, nullptr, 0), MM_OK)
        << mm_last_error();
    EXPECT_EQ(mm_session_feed(s.get(), five.data(), 0, MM_LOGITS_NONE, nullptr, 0), MM_OK)
        << mm_last_error();
    EXPECT_EQ(mm_session_feed(s.get(), five.data(), 0, MM_LOGITS_ALL, nullptr, 0), MM_OK)
        << mm_last_error();
    unchanged(pos);
  }
  // The session still works and the position counts every successful token.
  EXPECT_EQ(mm_session_position(s.get()), 10u + 23u * (seed - 100));
}

TEST(ApiFeed, LogitsModesAgree) {
  ModelPtr model = MakeModel();
  const std::vector<int32_t> toks = Tokens(37, 5);
  const std::vector<float> all = FreshLogits(model.get(), toks);
  SessionPtr s = MakeSession(model.get());
  std::vector<float> last(kVocab);
  ASSERT_EQ(mm_session_feed(s.get(), toks.data(), toks.size(), MM_LOGITS_LAST, last.data(),
                            last.size()),
            MM_OK);
  // Equal within the equivalence tolerance (DESIGN 2.4), not bitwise: the
  // LM head runs as a matrix product for ALL and a vector product for LAST.
  EXPECT_LE(RelErr(last, std::vector<float>(all.end() - kVocab, all.end())), 1e-5);
  EXPECT_EQ(mm_session_position(s.get()), toks.size());
  for (float v : all) ASSERT_TRUE(std::isfinite(v));
}

// ---------------------------------------------------------------------------
// mm_sessions_step
// ---------------------------------------------------------------------------

// mm_sessions_step_sample: the header's draw, written out again here from
// its text alone.
uint64_t HeaderMix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int32_t HeaderDraw(const float* logits, int64_t V, float temperature, uint64_t seed,
                   uint64_t p) {
  int32_t best_id = 0;
  float best = -INFINITY;
  bool any = false;
  for (int64_t v = 0; v < V; ++v) {
    float s = logits[v];
    if (temperature > 0.0f) {
      const uint64_t h = HeaderMix(seed ^ HeaderMix(p ^ HeaderMix(static_cast<uint64_t>(v))));
      const float u = (static_cast<float>(h >> 40) + 0.5f) / 16777216.0f;
      s = s / temperature + -std::log(-std::log(u));
    }
    if (std::isnan(s)) continue;
    if (!any || s > best) {
      best = s;
      best_id = static_cast<int32_t>(v);
      any = true;
    }
  }
  return best_id;
}

// Twins: one set steps with logits, the other samples; the sampled ids are
// the header's draw from the twins' logits (the same bits on the CPU), for
// greedy and tempered choices, several seeds, three sessions at once.
TEST(ApiSample, DrawsFollowTheHeader) {
  ModelPtr model = MakeModel(11);
  const int64_t V = kVocab;
  std::vector<SessionPtr> with_logits, sampled;
  for (int i = 0; i < 3; ++i) {
    with_logits.push_back(MakeSession(model.get()));
    sampled.push_back(MakeSession(model.get()));
    const std::vector<int32_t> p = Tokens(4 + 3 * i, 20 + i);
    FeedAll(with_logits[i].get(), p);
    FeedAll(sampled[i].get(), p);
  }
  mm_session* a[3] = {with_logits[0].get(), with_logits[1].get(), with_logits[2].get()};
  mm_session* b[3] = {sampled[0].get(), sampled[1].get(), sampled[2].get()};
  std::vector<float> logits(3 * V);
  int32_t tok[3] = {1, 2, 3};
  std::set<int32_t> seen;
  for (int step = 0; step < 12; ++step) {
    mm_sample_options o;
    ASSERT_EQ(mm_sample_options_init(&o, sizeof o), MM_OK);
    EXPECT_EQ(o.temperature, 1.0f);
    EXPECT_EQ(o.seed, 0u);
    o.temperature = step % 3 == 0 ? 0.0f : step % 3 == 1 ? 0.7f : 2.5f;
    o.seed = 1000 + step / 2;
    const uint64_t seeds[3] = {5u + step, 77u, 1234567u * step};
    if (step % 4 == 1) o.seeds = seeds;  // a seed per session
    int32_t next[3] = {-1, -1, -1};
    ASSERT_EQ(mm_sessions_step(a, 3, tok, logits.data(), logits.size()), MM_OK);
    ASSERT_EQ(mm_sessions_step_sample(b, 3, tok, step == 4 ? nullptr : &o, next), MM_OK)
        << mm_last_error();
    for (int i = 0; i < 3; ++i) {
      const float t = step == 4 ? 1.0f : o.temperature;
      const uint64_t seed = step == 4 ? 0 : o.seeds ? o.seeds[i] : o.seed;
      EXPECT_EQ(next[i], HeaderDraw(&logits[i * V], V, t, seed, mm_session_position(b[i])))
          << "step " << step << " session " << i;
      EXPECT_EQ(mm_session_position(b[i]), mm_session_position(a[i]));
      seen.insert(next[i]);
      tok[i] = next[i];
    }
  }
  EXPECT_GT(seen.size(), 3u) << "the draws never vary";

  // Identical sessions draw identically with one seed, independently with
  // a seed each.
  SessionPtr x = MakeSession(model.get()), y = MakeSession(model.get());
  mm_session* xy[2] = {x.get(), y.get()};
  int32_t same[2] = {4, 4};
  bool differed = false;
  for (int step = 0; step < 8; ++step) {
    mm_sample_options o;
    ASSERT_EQ(mm_sample_options_init(&o, sizeof o), MM_OK);
    o.temperature = 3.0f;
    const uint64_t seeds[2] = {1, 2};
    o.seeds = step % 2 == 0 ? nullptr : seeds;
    int32_t next[2];
    ASSERT_EQ(mm_sessions_step_sample(xy, 2, same, &o, next), MM_OK) << mm_last_error();
    if (o.seeds == nullptr) EXPECT_EQ(next[0], next[1]) << "step " << step;
    differed = differed || next[0] != next[1];
    same[0] = same[1] = next[0];  // the same tokens keep the twins equal
  }
  EXPECT_TRUE(differed) << "a seed per session never changed a draw";
}

// Bad arguments change nothing: positions stay and the next step gives the
// logits an untouched twin gives.
TEST(ApiSample, FailuresChangeNothing) {
  ModelPtr model = MakeModel(12);
  SessionPtr s = MakeSession(model.get()), twin = MakeSession(model.get());
  FeedAll(s.get(), Tokens(6, 3));
  FeedAll(twin.get(), Tokens(6, 3));
  mm_session* one[1] = {s.get()};
  const int32_t tok[1] = {5};
  int32_t next[1] = {-1};
  mm_sample_options o;
  ASSERT_EQ(mm_sample_options_init(&o, sizeof o), MM_OK);
  EXPECT_TRUE(Fails(mm_sessions_step_sample(one, 1, tok, &o, nullptr), MM_ERR_INVALID_ARGUMENT,
                    {"next_tokens"}));
  for (float t : {-1.0f, NAN, INFINITY}) {
    o.temperature = t;
    EXPECT_TRUE(Fails(mm_sessions_step_sample(one, 1, tok, &o, next), MM_ERR_INVALID_ARGUMENT,
                      {"temperature"}));
  }
  o.temperature = 1.0f;
  o.struct_size = 4;
  EXPECT_TRUE(Fails(mm_sessions_step_sample(one, 1, tok, &o, next), MM_ERR_STRUCT_SIZE,
                    {"struct_size"}));
  const int32_t bad[1] = {kVocab};
  EXPECT_TRUE(Fails(mm_sessions_step_sample(one, 1, bad, nullptr, next),
                    MM_ERR_TOKEN_OUT_OF_RANGE, {"token"}));
  EXPECT_EQ(next[0], -1);
  EXPECT_EQ(mm_session_position(s.get()), 6u);
  EXPECT_EQ(mm_sessions_step_sample(one, 0, tok, nullptr, nullptr), MM_OK);
  std::vector<float> x(kVocab), y(kVocab);
  ASSERT_EQ(mm_session_feed(s.get(), tok, 1, MM_LOGITS_LAST, x.data(), x.size()), MM_OK);
  ASSERT_EQ(mm_session_feed(twin.get(), tok, 1, MM_LOGITS_LAST, y.data(), y.size()), MM_OK);
  EXPECT_EQ(x, y);
}

TEST(ApiStep, EveryFailureLeavesEverySessionUntouched) {
  // Two models with the same configuration and seed: equal weights, but
  // still different models.
  ModelPtr ma = MakeModel(7), mb = MakeModel(7);
  std::vector<SessionPtr> a, ta;
  for (int i = 0; i < 3; ++i) {
    a.push_back(MakeSession(ma.get()));
    ta.push_back(MakeSession(ma.get()));
  }
  SessionPtr b = MakeSession(mb.get()), tb = MakeSession(mb.get());
  for (int i = 0; i < 3; ++i) {
    const std::vector<int32_t> p = Tokens(5 + i, 10 + i);
    FeedAll(a[i].get(), p);
    FeedAll(ta[i].get(), p);
  }
  FeedAll(b.get(), Tokens(6, 20));
  FeedAll(tb.get(), Tokens(6, 20));

  std::vector<float> buf(4 * kVocab);
  uint32_t seed = 500;
  auto stamp_all = [&] {
    for (auto& s : a) StampStaleMessage(s.get());
    StampStaleMessage(b.get());
  };
  auto positions = [&] {
    std::vector<uint64_t> p;
    for (auto& s : a) p.push_back(mm_session_position(s.get()));
    p.push_back(mm_session_position(b.get()));
    return p;
  };
  auto unchanged = [&](const std::vector<uint64_t>& before) {
    EXPECT_EQ(positions(), before);
    for (int i = 0; i < 3; ++i) ExpectSameFuture(a[i].get(), ta[i].get(), seed++);
    ExpectSameFuture(b.get(), tb.get(), seed++);
  };

  mm_session* a0 = a[0].get();
  mm_session* a1 = a[1].get();
  mm_session* a2 = a[2].get();
  mm_session* b0 = b.get();
  struct Case {
    const char* what;
    std::vector<mm_session*> sessions;
    std::vector<int32_t> tokens;
    bool with_logits;
    size_t capacity;
    mm_status want;
    std::vector<std::string> needles;
  };
  const int32_t V = static_cast<int32_t>(kVocab);
  const std::vector<Case> cases = {
      {"two models", {a0, b0}, {1, 2}, true, 2 * kVocab, MM_ERR_MODEL_MISMATCH,
       {"model"}},
      {"two models, other session first", {b0, a0, a1}, {1, 2, 3}, false, 0,
       MM_ERR_MODEL_MISMATCH, {"model"}},
      {"one session twice", {a0, a1, a0}, {1, 2, 3}, true, 3 * kVocab,
       MM_ERR_INVALID_ARGUMENT, {"twice|duplicate|more than once"}},
      {"token == vocab_size for the last session", {a0, a1, a2}, {1, 2, V}, true,
       3 * kVocab, MM_ERR_TOKEN_OUT_OF_RANGE, {std::to_string(V)}},
      {"token -1 for the first session", {a0, a1, a2}, {-1, 2, 3}, false, 0,
       MM_ERR_TOKEN_OUT_OF_RANGE, {"-1"}},
      {"logits capacity 3V-1", {a0, a1, a2}, {1, 2, 3}, true, 3 * kVocab - 1,
       MM_ERR_BUFFER_TOO_SMALL, {std::to_string(3 * kVocab)}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    stamp_all();
    const std::vector<uint64_t> before = positions();
    const std::vector<const mm_session*> passed(k.sessions.begin(), k.sessions.end());
    EXPECT_TRUE(Fails(mm_sessions_step(k.sessions.data(), k.sessions.size(), k.tokens.data(),
                                       k.with_logits ? buf.data() : nullptr, k.capacity),
                      k.want, k.needles, passed));
    unchanged(before);
  }

  // The header: "On any error no session changes, and the message is set for
  // this thread and on every session passed" — NULL entries and NULL tokens
  // included.
  {
    SCOPED_TRACE("a NULL entry");
    stamp_all();
    const std::vector<uint64_t> before = positions();
    mm_session* with_null[3] = {a0, nullptr, a1};
    const int32_t toks[3] = {1, 2, 3};
    EXPECT_TRUE(Fails(mm_sessions_step(with_null, 3, toks, nullptr, 0), MM_ERR_INVALID_ARGUMENT,
                      {"sessions[1]"}, {a0, a1}));
    unchanged(before);
  }
  {
    SCOPED_TRACE("NULL tokens");
    stamp_all();
    const std::vector<uint64_t> before = positions();
    mm_session* two[2] = {a0, a1};
    EXPECT_TRUE(Fails(mm_sessions_step(two, 2, nullptr, buf.data(), buf.size()),
                      MM_ERR_INVALID_ARGUMENT, {"tokens"}, {a0, a1}));
    unchanged(before);
  }

  // Zero sessions: nothing to do, even with NULL arrays.
  EXPECT_EQ(mm_sessions_step(nullptr, 0, nullptr, nullptr, 0), MM_OK);
}

TEST(ApiStep, EqualsSeparateFeeds) {
  ModelPtr model = MakeModel();
  const int kStreams = 3;
  std::vector<SessionPtr> batch, solo;
  for (int i = 0; i < kStreams; ++i) {
    batch.push_back(MakeSession(model.get()));
    solo.push_back(MakeSession(model.get()));
  }
  std::vector<mm_session*> ptrs;
  for (auto& s : batch) ptrs.push_back(s.get());
  std::vector<float> step(kStreams * kVocab), one(kVocab);
  double worst = 0.0;
  for (int t = 0; t < 30; ++t) {
    const std::vector<int32_t> toks = Tokens(kStreams, 1000 + t);
    // Every other step without logits.
    const bool want = t % 2 == 0;
    ASSERT_EQ(mm_sessions_step(ptrs.data(), kStreams, toks.data(), want ? step.data() : nullptr,
                               want ? step.size() : 0),
              MM_OK)
        << mm_last_error();
    for (int i = 0; i < kStreams; ++i) {
      ASSERT_EQ(mm_session_feed(solo[i].get(), &toks[i], 1, MM_LOGITS_LAST, one.data(), kVocab),
                MM_OK);
      if (want) {
        worst = std::max(worst, RelErr(std::vector<float>(step.begin() + i * kVocab,
                                                          step.begin() + (i + 1) * kVocab),
                                       one));
      }
    }
  }
  EXPECT_LE(worst, 1e-5);
  for (int i = 0; i < kStreams; ++i) EXPECT_EQ(mm_session_position(batch[i].get()), 30u);
}

// ---------------------------------------------------------------------------
// Model files
// ---------------------------------------------------------------------------

TEST_F(ApiFiles, SaveLoadRoundTripIsBitwise) {
  ModelPtr model = MakeModel(11);
  const std::string p1 = Path("a.safetensors"), p2 = Path("b.safetensors");
  ASSERT_EQ(mm_model_save(model.get(), p1.c_str()), MM_OK) << mm_last_error();
  ModelPtr loaded;
  const mm_model_options o = Options();
  ASSERT_EQ(Load(p1, &loaded, &o), MM_OK) << mm_last_error();

  mm_model_config c1, c2;
  ASSERT_EQ(mm_model_config_init(&c1, sizeof c1), MM_OK);
  ASSERT_EQ(mm_model_config_init(&c2, sizeof c2), MM_OK);
  ASSERT_EQ(mm_model_get_config(model.get(), &c1), MM_OK);
  ASSERT_EQ(mm_model_get_config(loaded.get(), &c2), MM_OK);
  EXPECT_EQ(std::memcmp(&c1, &c2, sizeof c1), 0);
  EXPECT_EQ(mm_model_parameter_count(model.get()), mm_model_parameter_count(loaded.get()));

  const std::vector<int32_t> toks = Tokens(60, 4);
  EXPECT_TRUE(BitwiseEqual(FreshLogits(model.get(), toks), FreshLogits(loaded.get(), toks)));

  // Saving the loaded model writes the same bytes; no temporary is left.
  ASSERT_EQ(mm_model_save(loaded.get(), p2.c_str()), MM_OK) << mm_last_error();
  EXPECT_EQ(ReadBytes(p1), ReadBytes(p2));
  // Saving over an existing file replaces it.
  ModelPtr other = MakeModel(12);
  ASSERT_EQ(mm_model_save(other.get(), p2.c_str()), MM_OK) << mm_last_error();
  EXPECT_NE(ReadBytes(p1), ReadBytes(p2));
  EXPECT_EQ(Listing(), (std::vector<std::string>{"a.safetensors", "b.safetensors"}));

  // NULL options load with the defaults.
  EXPECT_EQ(Load(p1), MM_OK) << mm_last_error();
}

TEST_F(ApiFiles, Bf16WeightsSaveAsBf16AndReloadBitwise) {
  const std::string p32 = SaveSmall("f32.safetensors");
  const std::string p16 = Path("bf16.safetensors");
  const mm_model_options bf16 = Options(MM_DTYPE_BF16);
  ModelPtr m16;
  ASSERT_EQ(Load(p32, &m16, &bf16), MM_OK) << mm_last_error();
  ASSERT_EQ(mm_model_save(m16.get(), p16.c_str()), MM_OK) << mm_last_error();

  // Matrices are BF16 (rounded to nearest even from the f32 file), vectors stay F32.
  EditFile f32 = ReadEdit(p32), f16 = ReadEdit(p16);
  ASSERT_EQ(f32.tensors.size(), f16.tensors.size());
  for (const char* name : {"embedding.weight", "layers.0.mixer.in_proj.weight",
                           "layers.2.mixer.out_proj.weight", "layers.1.note.summary.weight",
                           "layers.1.tok.q.weight"}) {
    SCOPED_TRACE(name);
    EditTensor* a = f32.Find(name);
    EditTensor* b = f16.Find(name);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(b->dtype, DType::kBF16);
    EXPECT_EQ(a->shape, b->shape);
    ASSERT_EQ(b->bytes.size(), a->numel() * 2);
    for (size_t i = 0; i < a->numel(); ++i) {
      uint16_t h;
      std::memcpy(&h, b->bytes.data() + 2 * i, 2);
      ASSERT_EQ(h, memmamba::FloatToBF16(a->GetF32(i))) << "element " << i;
    }
  }
  for (const char* name : {"norm_f.weight", "layers.0.mixer.A_log", "layers.0.mixer.D",
                           "layers.0.note.score.bias"}) {
    EditTensor* b = f16.Find(name);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->dtype, DType::kF32) << name;
    EXPECT_EQ(b->bytes, f32.Find(name)->bytes) << name;
  }

  const std::vector<int32_t> toks = Tokens(60, 6);
  const std::vector<float> ref = FreshLogits(m16.get(), toks);
  ModelPtr again;
  ASSERT_EQ(Load(p16, &again, &bf16), MM_OK) << mm_last_error();
  EXPECT_TRUE(BitwiseEqual(FreshLogits(again.get(), toks), ref));
  // Loading the BF16 file as F32 widens exactly; only the arithmetic differs.
  ModelPtr widened;
  const mm_model_options f32o = Options(MM_DTYPE_F32);
  ASSERT_EQ(Load(p16, &widened, &f32o), MM_OK) << mm_last_error();
  EXPECT_LE(RelErr(FreshLogits(widened.get(), toks), ref), 1e-4);
  // And the bf16 model differs from the f32 one (the option took effect).
  ModelPtr m32;
  ASSERT_EQ(Load(p32, &m32, &f32o), MM_OK);
  EXPECT_FALSE(BitwiseEqual(FreshLogits(m32.get(), toks), ref));
}

TEST_F(ApiFiles, UnreadablePathsAreIoErrors) {
  const std::string missing = Path("does_not_exist.safetensors");
  EXPECT_TRUE(Fails(Load(missing), MM_ERR_IO, {"does_not_exist.safetensors"}));
  EXPECT_TRUE(Fails(Load(dir_.string()), MM_ERR_IO, {dir_.filename().string()}));
  // Not a regular file.
  EXPECT_TRUE(Fails(Load("/dev/null"), MM_ERR_IO, {"/dev/null"}));
  fs::create_directory(Path("sub.safetensors"));
  EXPECT_TRUE(Fails(Load(Path("sub.safetensors")), MM_ERR_IO, {"sub.safetensors"}));

  mm_model* m = Sentinel<mm_model>();
  EXPECT_TRUE(Fails(mm_model_import_mamba(&m, missing.c_str(), nullptr, 1, nullptr), MM_ERR_IO,
                    {"does_not_exist.safetensors"}));
  EXPECT_EQ(m, nullptr);
}

TEST_F(ApiFiles, EveryTruncationIsACorruptFile) {
  const std::string full = ReadBytes(SaveSmall("m.safetensors"));
  const size_t size = full.size();
  const size_t header = static_cast<size_t>(HeaderLength(full));
  ASSERT_LT(8 + header, size);
  std::vector<size_t> lengths = {0,
                                 1,
                                 7,
                                 8,
                                 9,
                                 8 + header / 4,
                                 8 + header / 2,
                                 8 + header - 1,
                                 8 + header,
                                 8 + header + 1,
                                 8 + header + 4,
                                 (8 + header + size) / 2,
                                 size - 5,
                                 size - 4,
                                 size - 1};
  for (size_t i = 1; i < 16; ++i) lengths.push_back(size * i / 16);
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  ASSERT_GE(lengths.size(), 28u);
  const std::string path = Path("cut.safetensors");
  for (size_t n : lengths) {
    SCOPED_TRACE("first " + std::to_string(n) + " of " + std::to_string(size) + " bytes");
    WriteBytes(path, full.substr(0, n));
    // Every length, the empty file included, is MM_ERR_CORRUPT_FILE (observed
    // and required): a 0-byte file opens and reads fine, it is just shorter
    // than the 8-byte length prefix. MM_ERR_IO is kept for files that cannot
    // be opened or read.
    EXPECT_TRUE(Fails(Load(path), MM_ERR_CORRUPT_FILE, {"cut.safetensors"}));
  }
}

TEST_F(ApiFiles, MalformedHeadersAreCorruptFiles) {
  const std::string full = ReadBytes(SaveSmall("m.safetensors"));
  const uint64_t header = HeaderLength(full);
  const std::string path = Path("bad.safetensors");
  struct Case {
    const char* what;
    std::string bytes;
  };
  std::vector<Case> cases;
  {
    std::string b = full;
    ASSERT_EQ(b[8], '{');
    b[8] = 'X';
    cases.push_back({"JSON does not start with '{'", b});
  }
  {
    std::string b = full;
    const size_t close = b.rfind('}', 8 + header - 1);
    ASSERT_NE(close, std::string::npos);
    b[close] = ',';
    cases.push_back({"JSON object not closed", b});
  }
  {
    std::string b = full;
    const size_t quote = b.find("\"dtype\"", 8);
    ASSERT_NE(quote, std::string::npos);
    b[quote + 1] = '\xff';
    cases.push_back({"invalid UTF-8 in a key", b});
  }
  {
    std::string b = full;
    const size_t colon = b.find(':', 8);
    b.insert(colon, "   ");  // the header length no longer covers the JSON
    cases.push_back({"bytes inserted into the header", b});
  }
  {
    std::string b = full;
    SetHeaderLength(&b, full.size());
    cases.push_back({"header length beyond the file", b});
  }
  {
    std::string b = full;
    SetHeaderLength(&b, std::numeric_limits<uint64_t>::max());
    cases.push_back({"header length 2^64-1", b});
  }
  {
    std::string b = full;
    SetHeaderLength(&b, 0);
    cases.push_back({"header length 0", b});
  }
  cases.push_back({"trailing bytes after the data", full + std::string(8, '\0')});
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    WriteBytes(path, k.bytes);
    EXPECT_TRUE(Fails(Load(path), MM_ERR_CORRUPT_FILE, {"bad.safetensors"}));
  }
}

TEST_F(ApiFiles, TensorProblemsHaveTheirOwnCodesAndNames) {
  const std::string good = SaveSmall("m.safetensors");
  ASSERT_EQ(Load(good), MM_OK) << mm_last_error();
  const EditFile base = ReadEdit(good);
  const std::string path = Path("edited.safetensors");

  struct Case {
    const char* what;
    void (*edit)(EditFile*);
    mm_status want;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"a tensor renamed",
       [](EditFile* f) { f->Find("layers.1.mixer.D")->name = "layers.1.mixer.Dx"; },
       MM_ERR_TENSOR_MISSING, {"layers.1.mixer.D"}},
      {"norm_f.weight removed", [](EditFile* f) { f->Erase("norm_f.weight"); },
       MM_ERR_TENSOR_MISSING, {"norm_f.weight"}},
      {"a memory tensor removed", [](EditFile* f) { f->Erase("layers.1.lay.q.weight"); },
       MM_ERR_TENSOR_MISSING, {"layers.1.lay.q.weight"}},
      {"untied config without lm_head",
       [](EditFile* f) { f->metadata["tie_embeddings"] = "false"; }, MM_ERR_TENSOR_MISSING,
       {"lm_head.weight"}},
      {"a matrix transposed (same byte count)",
       [](EditFile* f) {
         EditTensor* t = f->Find("layers.0.mixer.in_proj.weight");
         std::swap(t->shape[0], t->shape[1]);
       },
       MM_ERR_TENSOR_SHAPE, {"layers.0.mixer.in_proj.weight"}},
      {"a vector half as long",
       [](EditFile* f) {
         EditTensor* t = f->Find("layers.2.mixer.D");
         t->shape[0] /= 2;
         t->bytes.resize(t->bytes.size() / 2);
       },
       MM_ERR_TENSOR_SHAPE, {"layers.2.mixer.D"}},
      {"a vector given an extra dimension",
       [](EditFile* f) {
         EditTensor* t = f->Find("norm_f.weight");
         t->shape = {1, t->shape[0]};
       },
       MM_ERR_TENSOR_SHAPE, {"norm_f.weight"}},
      {"an I64 matrix",
       [](EditFile* f) {
         EditTensor* t = f->Find("layers.1.mixer.x_proj.weight");
         t->dtype = DType::kI64;
         t->bytes.assign(t->numel() * 8, '\0');
       },
       MM_ERR_TENSOR_DTYPE, {"layers.1.mixer.x_proj.weight"}},
      {"a U8 vector",
       [](EditFile* f) {
         EditTensor* t = f->Find("norm_f.weight");
         t->dtype = DType::kU8;
         t->bytes.assign(t->numel(), '\1');
       },
       MM_ERR_TENSOR_DTYPE, {"norm_f.weight"}},
      {"NaN in a matrix",
       [](EditFile* f) {
         f->Find("layers.1.mixer.x_proj.weight")->SetF32(3, std::numeric_limits<float>::quiet_NaN());
       },
       MM_ERR_NON_FINITE, {"layers.1.mixer.x_proj.weight"}},
      {"+inf in a vector",
       [](EditFile* f) {
         f->Find("layers.0.mixer.D")->SetF32(0, std::numeric_limits<float>::infinity());
       },
       MM_ERR_NON_FINITE, {"layers.0.mixer.D"}},
      {"NaN in a scalar",
       [](EditFile* f) {
         f->Find("layers.2.note.score.bias")->SetF32(0, -std::numeric_limits<float>::quiet_NaN());
       },
       MM_ERR_NON_FINITE, {"layers.2.note.score.bias"}},
      {"metadata without 'format'", [](EditFile* f) { f->metadata.erase("format"); },
       MM_ERR_CONFIG, {"format"}},
      {"no metadata at all", [](EditFile* f) { f->metadata.clear(); }, MM_ERR_CONFIG,
       {"format"}},
      {"another format", [](EditFile* f) { f->metadata["format"] = "mamba"; }, MM_ERR_CONFIG,
       {"format"}},
      {"summary_dim not divisible by attn_heads",
       [](EditFile* f) { f->metadata["summary_dim"] = "7"; }, MM_ERR_CONFIG, {"summary_dim"}},
      {"vocab_size 0", [](EditFile* f) { f->metadata["vocab_size"] = "0"; }, MM_ERR_CONFIG,
       {"vocab_size"}},
      {"vocab_size not a number", [](EditFile* f) { f->metadata["vocab_size"] = "many"; },
       MM_ERR_CONFIG, {"vocab_size"}},
      {"d_model missing", [](EditFile* f) { f->metadata.erase("d_model"); }, MM_ERR_CONFIG,
       {"d_model"}},
      {"unknown fusion", [](EditFile* f) { f->metadata["fusion"] = "SUMMED"; }, MM_ERR_CONFIG,
       {"fusion"}},
      {"NaN threshold", [](EditFile* f) { f->metadata["note_threshold"] = "nan"; },
       MM_ERR_CONFIG, {"threshold"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    EditFile f = base;
    k.edit(&f);
    WriteEdit(path, f);
    EXPECT_TRUE(Fails(Load(path), k.want, k.needles));
  }

  // The unedited re-serialisation still loads (the edits alone fail).
  WriteEdit(path, base);
  EXPECT_EQ(Load(path), MM_OK) << mm_last_error();
}

TEST_F(ApiFiles, NonFiniteBf16IsRefused) {
  const std::string p32 = SaveSmall("f32.safetensors");
  const mm_model_options bf16 = Options(MM_DTYPE_BF16);
  ModelPtr m16;
  ASSERT_EQ(Load(p32, &m16, &bf16), MM_OK);
  const std::string p16 = Path("bf16.safetensors");
  ASSERT_EQ(mm_model_save(m16.get(), p16.c_str()), MM_OK);
  EditFile f = ReadEdit(p16);
  EditTensor* t = f.Find("layers.0.mixer.out_proj.weight");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->dtype, DType::kBF16);
  const uint16_t nan = 0x7FC0;
  std::memcpy(&t->bytes[10], &nan, 2);
  const std::string bad = Path("bad.safetensors");
  WriteEdit(bad, f);
  const mm_model_options f32 = Options(MM_DTYPE_F32);
  EXPECT_TRUE(Fails(Load(bad, nullptr, &bf16), MM_ERR_NON_FINITE,
                    {"layers.0.mixer.out_proj.weight"}));
  EXPECT_TRUE(Fails(Load(bad, nullptr, &f32), MM_ERR_NON_FINITE,
                    {"layers.0.mixer.out_proj.weight"}));
}

TEST_F(ApiFiles, LoadHonoursOptions) {
  const std::string p = SaveSmall("m.safetensors");
  mm_model_options o = Options();
  o.device = MM_DEVICE_CUDA;
  const mm_status s = Load(p, nullptr, &o);  // MM_OK on a machine with a GPU
  EXPECT_TRUE(s == MM_OK || s == MM_ERR_UNSUPPORTED || s == MM_ERR_NO_DEVICE)
      << mm_status_string(s);
  o = Options();
  o.weight_dtype = 5;
  EXPECT_TRUE(Fails(Load(p, nullptr, &o), MM_ERR_INVALID_ARGUMENT, {"dtype"}));
}

TEST_F(ApiFiles, SaveToAnUnwritablePathIsAnIoError) {
  ModelPtr model = MakeModel();
  const std::string inside_missing = Path("no_such_dir/sub/model.safetensors");
  EXPECT_TRUE(Fails(mm_model_save(model.get(), inside_missing.c_str()), MM_ERR_IO,
                    {"no_such_dir"}));
  EXPECT_FALSE(fs::exists(Path("no_such_dir")));

  // A directory where the file should go: refused, the directory survives.
  fs::create_directory(Path("taken"));
  EXPECT_TRUE(Fails(mm_model_save(model.get(), Path("taken").c_str()), MM_ERR_IO, {"taken"}));
  EXPECT_TRUE(fs::is_directory(Path("taken")));
  EXPECT_TRUE(fs::is_empty(Path("taken")));
  // No temporary files are left behind.
  EXPECT_EQ(Listing(), (std::vector<std::string>{"taken"}));
}

// ---------------------------------------------------------------------------
// mm_model_import_mamba
// ---------------------------------------------------------------------------

// A Mamba v1 checkpoint in the reference naming, random values.
struct MambaShape {
  int64_t V = 40, D = 16, L = 2, E = 32, K = 4, N = 4, R = 3;
};

enum class Head { kNone, kSameAsEmbedding, kDifferent };

EditFile MambaCheckpoint(const MambaShape& s, uint32_t seed,
                         const std::string& embedding_name = "backbone.embedding.weight",
                         Head head = Head::kNone) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  EditFile f;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float offset) {
    EditTensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.bytes.resize(t.numel() * sizeof(float));
    for (size_t i = 0; i < t.numel(); ++i) t.SetF32(i, offset + normal(rng));
    f.tensors.push_back(std::move(t));
  };
  add(embedding_name, {s.V, s.D}, 0.0f);
  for (int64_t l = 0; l < s.L; ++l) {
    const std::string p = "backbone.layers." + std::to_string(l) + ".";
    add(p + "norm.weight", {s.D}, 1.0f);
    add(p + "mixer.in_proj.weight", {2 * s.E, s.D}, 0.0f);
    add(p + "mixer.conv1d.weight", {s.E, 1, s.K}, 0.0f);
    add(p + "mixer.conv1d.bias", {s.E}, 0.0f);
    add(p + "mixer.x_proj.weight", {s.R + 2 * s.N, s.E}, 0.0f);
    add(p + "mixer.dt_proj.weight", {s.E, s.R}, 0.0f);
    add(p + "mixer.dt_proj.bias", {s.E}, -3.0f);
    add(p + "mixer.A_log", {s.E, s.N}, 0.5f);
    add(p + "mixer.D", {s.E}, 1.0f);
    add(p + "mixer.out_proj.weight", {s.D, s.E}, 0.0f);
  }
  add("backbone.norm_f.weight", {s.D}, 1.0f);
  if (head == Head::kSameAsEmbedding) {
    EditTensor t = f.tensors.front();
    t.name = "lm_head.weight";
    f.tensors.push_back(std::move(t));
  } else if (head == Head::kDifferent) {
    add("lm_head.weight", {s.V, s.D}, 0.0f);
  }
  return f;
}

class ApiImport : public ApiFiles {
 protected:
  // mm_model_import_mamba, checking that a failure leaves *out == NULL.
  mm_status Import(const std::string& path, const mm_model_config* memory, ModelPtr* model) {
    mm_model* m = Sentinel<mm_model>();
    const mm_model_options o = Options();
    const mm_status st = mm_model_import_mamba(&m, path.c_str(), memory, 5, &o);
    if (st != MM_OK) {
      EXPECT_EQ(m, nullptr) << "a failed import left *out set";
    } else if (model) {
      model->reset(m);
    } else {
      mm_model_free(m);
    }
    return st;
  }

  mm_model_config PlainMemory() {
    mm_model_config c;
    EXPECT_EQ(mm_model_config_init(&c, sizeof c), MM_OK);
    c.pool_capacity = 0;
    return c;
  }

  // Checks that the model saved from `model` holds the checkpoint's Mamba
  // tensors bit for bit, under their memmamba names.
  void ExpectMambaWeights(const mm_model* model, const EditFile& ckpt,
                          const std::string& embedding_name) {
    const std::string saved = Path("saved_import.safetensors");
    ASSERT_EQ(mm_model_save(model, saved.c_str()), MM_OK) << mm_last_error();
    auto reader = memmamba::SafetensorsReader::ReadFile(saved);
    ASSERT_TRUE(reader.ok()) << reader.status();
    for (const EditTensor& t : ckpt.tensors) {
      std::string name = t.name;
      if (name == embedding_name) {
        name = "embedding.weight";
      } else if (name.rfind("backbone.", 0) == 0) {
        name = name.substr(9);
      }
      SCOPED_TRACE(t.name + " -> " + name);
      const memmamba::TensorInfo* info = reader->Find(name);
      ASSERT_NE(info, nullptr);
      EXPECT_EQ(info->dtype, DType::kF32);
      ASSERT_EQ(info->nbytes, t.bytes.size());
      EXPECT_EQ(std::memcmp(reader->data(*info), t.bytes.data(), t.bytes.size()), 0);
      if (name.find("conv1d.weight") != std::string::npos) {
        EXPECT_EQ(info->shape, (std::vector<int64_t>{t.shape[0], t.shape[2]}));
      } else {
        EXPECT_EQ(info->shape, t.shape);
      }
    }
  }
};

TEST_F(ApiImport, ShapesAreInferredAndWeightsKept) {
  const MambaShape s;
  const EditFile ckpt = MambaCheckpoint(s, 1);
  const std::string path = Path("mamba.safetensors");
  WriteEdit(path, ckpt);

  const mm_model_config plain = PlainMemory();
  ModelPtr model;
  ASSERT_EQ(Import(path, &plain, &model), MM_OK) << mm_last_error();
  mm_model_config c;
  ASSERT_EQ(mm_model_config_init(&c, sizeof c), MM_OK);
  ASSERT_EQ(mm_model_get_config(model.get(), &c), MM_OK);
  EXPECT_EQ(c.vocab_size, s.V);
  EXPECT_EQ(c.d_model, s.D);
  EXPECT_EQ(c.n_layer, s.L);
  EXPECT_EQ(c.d_state, s.N);
  EXPECT_EQ(c.d_conv, s.K);
  EXPECT_EQ(c.expand, s.E / s.D);
  EXPECT_EQ(c.dt_rank, s.R);
  EXPECT_EQ(c.pool_capacity, 0u);
  EXPECT_EQ(c.tie_embeddings, 1);
  ExpectMambaWeights(model.get(), ckpt, "backbone.embedding.weight");

  // It runs.
  SessionPtr session = MakeSession(model.get());
  const std::vector<float> logits = FeedAll(session.get(), Tokens(20, 2, s.V), s.V);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));

  // With the memory on (NULL = default knobs): same Mamba weights, fresh memory.
  ModelPtr with_memory;
  ASSERT_EQ(Import(path, nullptr, &with_memory), MM_OK) << mm_last_error();
  ASSERT_EQ(mm_model_get_config(with_memory.get(), &c), MM_OK);
  EXPECT_EQ(c.pool_capacity, 50u);
  EXPECT_EQ(c.d_model, s.D);
  EXPECT_EQ(c.dt_rank, s.R);
  ExpectMambaWeights(with_memory.get(), ckpt, "backbone.embedding.weight");
}

TEST_F(ApiImport, EmbeddingsSpellingAndHeads) {
  const MambaShape s;
  const mm_model_config plain = PlainMemory();
  mm_model_config c;
  ASSERT_EQ(mm_model_config_init(&c, sizeof c), MM_OK);
  {
    SCOPED_TRACE("backbone.embeddings.weight");
    const EditFile ckpt = MambaCheckpoint(s, 2, "backbone.embeddings.weight");
    WriteEdit(Path("a.safetensors"), ckpt);
    ModelPtr m;
    ASSERT_EQ(Import(Path("a.safetensors"), &plain, &m), MM_OK) << mm_last_error();
    ASSERT_EQ(mm_model_get_config(m.get(), &c), MM_OK);
    EXPECT_EQ(c.vocab_size, s.V);
    ExpectMambaWeights(m.get(), ckpt, "backbone.embeddings.weight");
  }
  {
    SCOPED_TRACE("lm_head.weight equal to the embedding");
    const EditFile ckpt = MambaCheckpoint(s, 3, "backbone.embedding.weight",
                                          Head::kSameAsEmbedding);
    WriteEdit(Path("b.safetensors"), ckpt);
    ModelPtr m;
    ASSERT_EQ(Import(Path("b.safetensors"), &plain, &m), MM_OK) << mm_last_error();
    ASSERT_EQ(mm_model_get_config(m.get(), &c), MM_OK);
    EXPECT_EQ(c.tie_embeddings, 1);
  }
  {
    SCOPED_TRACE("lm_head.weight different from the embedding");
    const EditFile ckpt = MambaCheckpoint(s, 4, "backbone.embedding.weight", Head::kDifferent);
    WriteEdit(Path("c.safetensors"), ckpt);
    ModelPtr m;
    ASSERT_EQ(Import(Path("c.safetensors"), &plain, &m), MM_OK) << mm_last_error();
    ASSERT_EQ(mm_model_get_config(m.get(), &c), MM_OK);
    EXPECT_EQ(c.tie_embeddings, 0);
    ExpectMambaWeights(m.get(), ckpt, "backbone.embedding.weight");  // includes lm_head.weight
  }
}

TEST_F(ApiImport, BrokenCheckpointsAreRefused) {
  const MambaShape s;
  const EditFile base = MambaCheckpoint(s, 9);
  const std::string path = Path("broken.safetensors");
  const mm_model_config plain = PlainMemory();
  struct Case {
    const char* what;
    void (*edit)(EditFile*);
    mm_status want;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"a layer-1 tensor missing",
       [](EditFile* f) { f->Erase("backbone.layers.1.mixer.dt_proj.bias"); },
       MM_ERR_TENSOR_MISSING, {"backbone.layers.1.mixer.dt_proj.bias"}},
      {"norm_f missing", [](EditFile* f) { f->Erase("backbone.norm_f.weight"); },
       MM_ERR_TENSOR_MISSING, {"backbone.norm_f.weight"}},
      {"embedding missing", [](EditFile* f) { f->Erase("backbone.embedding.weight"); },
       MM_ERR_TENSOR_MISSING, {"embedding"}},
      {"layer-0 A_log missing", [](EditFile* f) { f->Erase("backbone.layers.0.mixer.A_log"); },
       MM_ERR_TENSOR_MISSING, {"A_log"}},
      // A checkpoint whose last layer lacks in_proj must not import as a
      // shallower model that silently drops that layer.
      {"the last layer's in_proj missing",
       [](EditFile* f) { f->Erase("backbone.layers.1.mixer.in_proj.weight"); },
       MM_ERR_TENSOR_MISSING, {"backbone.layers.1.mixer.in_proj.weight"}},
      {"x_proj with a row too many",
       [](EditFile* f) {
         EditTensor* t = f->Find("backbone.layers.1.mixer.x_proj.weight");
         t->shape[0] += 1;
         t->bytes.resize(t->numel() * sizeof(float), '\0');
       },
       MM_ERR_TENSOR_SHAPE, {"backbone.layers.1.mixer.x_proj.weight"}},
      {"NaN in out_proj",
       [](EditFile* f) {
         f->Find("backbone.layers.0.mixer.out_proj.weight")
             ->SetF32(2, std::numeric_limits<float>::quiet_NaN());
       },
       MM_ERR_NON_FINITE, {"layers.0.mixer.out_proj.weight"}},
      {"an I64 norm",
       [](EditFile* f) {
         EditTensor* t = f->Find("backbone.layers.0.norm.weight");
         t->dtype = DType::kI64;
         t->bytes.assign(t->numel() * 8, '\0');
       },
       MM_ERR_TENSOR_DTYPE, {"backbone.layers.0.norm.weight"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    EditFile f = base;
    k.edit(&f);
    WriteEdit(path, f);
    EXPECT_TRUE(Fails(Import(path, &plain, nullptr), k.want, k.needles));
  }

  // Bad memory knobs are configuration errors.
  WriteEdit(path, base);
  ASSERT_EQ(Import(path, &plain, nullptr), MM_OK) << mm_last_error();
  mm_model_config bad = PlainMemory();
  bad.pool_policy = 9;
  EXPECT_TRUE(Fails(Import(path, &bad, nullptr), MM_ERR_CONFIG, {"pool_policy"}));
  bad = PlainMemory();
  bad.summary_dim = 10;
  bad.attn_heads = 4;
  EXPECT_TRUE(Fails(Import(path, &bad, nullptr), MM_ERR_CONFIG, {"summary_dim"}));
  // Memory knobs are validated as mm_model_create validates them.
  bad = PlainMemory();
  bad.attn_heads = 0;
  EXPECT_TRUE(Fails(Import(path, &bad, nullptr), MM_ERR_CONFIG, {"attn_heads"}));
}

// ---------------------------------------------------------------------------
// Sessions: reset, state size
// ---------------------------------------------------------------------------

TEST(ApiSession, ResetReproducesAFreshSession) {
  ModelPtr model = MakeModel();
  const std::vector<int32_t> toks = Tokens(50, 8);
  const std::vector<float> fresh = FreshLogits(model.get(), toks);
  SessionPtr fresh_session = MakeSession(model.get());
  const uint64_t fresh_bytes = mm_session_state_bytes(fresh_session.get());

  SessionPtr s = MakeSession(model.get());
  FeedAll(s.get(), Tokens(120, 9));
  EXPECT_EQ(mm_session_position(s.get()), 120u);
  EXPECT_GT(mm_session_pool_size(s.get(), 0), 0);
  ASSERT_EQ(mm_session_reset(s.get()), MM_OK);
  EXPECT_EQ(mm_session_position(s.get()), 0u);
  for (uint32_t l = 0; l < 3; ++l) EXPECT_EQ(mm_session_pool_size(s.get(), l), 0);
  EXPECT_EQ(mm_session_state_bytes(s.get()), fresh_bytes);
  EXPECT_TRUE(BitwiseEqual(FeedAll(s.get(), toks), fresh));
  // Twice in a row, and again after more tokens.
  ASSERT_EQ(mm_session_reset(s.get()), MM_OK);
  ASSERT_EQ(mm_session_reset(s.get()), MM_OK);
  EXPECT_TRUE(BitwiseEqual(FeedAll(s.get(), toks), fresh));
}

// Without pools, a stream whose recurrent state was reset at a window
// boundary goes on exactly as a fresh one: nothing else carries the past.
TEST(ApiSession, ResetRecurrentWithoutPoolsForgetsThePast) {
  mm_model_config c = SmallConfig();
  c.pool_capacity = 0;
  ModelPtr model = MakeModel(7, &c);
  const std::vector<int32_t> next = Tokens(30, 12);
  SessionPtr s = MakeSession(model.get());
  FeedAll(s.get(), Tokens(40, 11));  // ten whole windows
  ASSERT_EQ(mm_session_reset_recurrent(s.get()), MM_OK);
  EXPECT_EQ(mm_session_position(s.get()), 40u);
  EXPECT_TRUE(BitwiseEqual(FeedAll(s.get(), next), FreshLogits(model.get(), next)));
}

// With pools, the notes, the position and the state's size stay; what
// follows differs from the stream that kept its recurrent state, and a
// snapshot taken after the reset carries it.
TEST(ApiSession, ResetRecurrentKeepsTheNotes) {
  mm_model_config c = SmallConfig();
  c.pool_policy = MM_POOL_FIFO;
  c.note_threshold = 0.0f;
  ModelPtr model = MakeModel(7, &c);
  SessionPtr s = MakeSession(model.get()), twin = MakeSession(model.get());
  const std::vector<int32_t> past = Tokens(42, 13), next = Tokens(20, 14);
  FeedAll(s.get(), past);
  FeedAll(twin.get(), past);
  const size_t P = c.pool_capacity, S = c.summary_dim;
  auto notes = [&](mm_session* x, uint32_t l) {
    std::vector<int64_t> w(P);
    std::vector<float> sc(P), su(P * S);
    size_t count = 0;
    EXPECT_EQ(mm_session_pool_notes(x, l, w.data(), sc.data(), su.data(), P, &count), MM_OK);
    EXPECT_EQ(count, P);
    std::vector<float> all(su);
    for (size_t i = 0; i < P; ++i) all.push_back(static_cast<float>(w[i]));
    all.insert(all.end(), sc.begin(), sc.end());
    return all;
  };
  const uint64_t bytes = mm_session_state_bytes(s.get());
  ASSERT_EQ(mm_session_reset_recurrent(s.get()), MM_OK);
  EXPECT_EQ(mm_session_position(s.get()), 42u);
  EXPECT_EQ(mm_session_state_bytes(s.get()), bytes);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    EXPECT_TRUE(BitwiseEqual(notes(s.get(), l), notes(twin.get(), l))) << "layer " << l;
  }
  SessionPtr restored = RestoredCopy(model.get(), s.get());
  const std::vector<float> after = FeedAll(s.get(), next);
  EXPECT_GT(RelErr(after, FeedAll(twin.get(), next)), 1e-3);
  EXPECT_TRUE(BitwiseEqual(FeedAll(restored.get(), next), after));
  EXPECT_TRUE(Fails(mm_session_reset_recurrent(nullptr), MM_ERR_INVALID_ARGUMENT, {"session"}));
}

// Every window scores above a threshold of 0, so a FIFO pool holds the last
// P windows: what mm_session_pool_notes must list, in that order.
TEST(ApiSession, PoolNotesListWhatThePoolsHold) {
  mm_model_config c = SmallConfig();
  c.pool_policy = MM_POOL_FIFO;
  c.note_threshold = 0.0f;
  ModelPtr model = MakeModel(7, &c);
  SessionPtr s = MakeSession(model.get());
  size_t count = 99;
  ASSERT_EQ(mm_session_pool_notes(s.get(), 0, nullptr, nullptr, nullptr, 0, &count), MM_OK);
  EXPECT_EQ(count, 0u);

  FeedAll(s.get(), Tokens(122, 3));  // 30 windows closed, one pending
  const size_t P = c.pool_capacity, S = c.summary_dim;
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    std::vector<int64_t> windows(P + 2, -7);
    std::vector<float> scores(P + 2, -7.0f), summaries((P + 2) * S, -7.0f);
    ASSERT_EQ(mm_session_pool_notes(s.get(), l, windows.data(), scores.data(), summaries.data(),
                                    P + 2, &count),
              MM_OK);
    ASSERT_EQ(count, P);
    ASSERT_EQ(static_cast<int32_t>(count), mm_session_pool_size(s.get(), l));
    for (size_t i = 0; i < P; ++i) {
      EXPECT_EQ(windows[i], static_cast<int64_t>(30 - P + i)) << "layer " << l;
      EXPECT_GT(scores[i], 0.0f);
      EXPECT_LT(scores[i], 1.0f);
      float norm = 0.0f;
      for (size_t k = 0; k < S; ++k) norm += std::fabs(summaries[i * S + k]);
      EXPECT_TRUE(std::isfinite(norm) && norm > 0.0f) << "note " << i;
    }
    EXPECT_EQ(windows[P], -7);  // nothing past the pool's notes
    EXPECT_EQ(scores[P], -7.0f);
    EXPECT_EQ(summaries[P * S], -7.0f);

    // Less room: the first notes, and the whole count. Any array may be NULL.
    std::vector<int64_t> two(2);
    ASSERT_EQ(mm_session_pool_notes(s.get(), l, two.data(), nullptr, nullptr, 2, &count), MM_OK);
    EXPECT_EQ(count, P);
    EXPECT_EQ(two[0], windows[0]);
    EXPECT_EQ(two[1], windows[1]);

    // A restored stream remembers the same notes, bit for bit.
    SessionPtr restored = RestoredCopy(model.get(), s.get());
    std::vector<int64_t> windows2(P);
    std::vector<float> scores2(P), summaries2(P * S);
    ASSERT_EQ(mm_session_pool_notes(restored.get(), l, windows2.data(), scores2.data(),
                                    summaries2.data(), P, &count),
              MM_OK);
    EXPECT_EQ(count, P);
    EXPECT_TRUE(std::equal(windows2.begin(), windows2.end(), windows.begin()));
    EXPECT_EQ(std::memcmp(scores2.data(), scores.data(), P * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(summaries2.data(), summaries.data(), P * S * sizeof(float)), 0);
  }
}

TEST(ApiSession, PoolNotesRefuseBadArguments) {
  ModelPtr model = MakeModel();
  SessionPtr s = MakeSession(model.get());
  SessionPtr twin = MakeSession(model.get());
  FeedAll(s.get(), Tokens(40, 4));
  FeedAll(twin.get(), Tokens(40, 4));
  int64_t windows[4] = {-7, -7, -7, -7};
  size_t count = 99;
  EXPECT_TRUE(Fails(mm_session_pool_notes(nullptr, 0, windows, nullptr, nullptr, 4, &count),
                    MM_ERR_INVALID_ARGUMENT, {"session"}));
  EXPECT_EQ(count, 0u);
  EXPECT_TRUE(Fails(mm_session_pool_notes(s.get(), 0, windows, nullptr, nullptr, 4, nullptr),
                    MM_ERR_INVALID_ARGUMENT, {"count"}, {s.get()}));
  count = 99;
  EXPECT_TRUE(Fails(mm_session_pool_notes(s.get(), 3, windows, nullptr, nullptr, 4, &count),
                    MM_ERR_INVALID_ARGUMENT, {"layer"}, {s.get()}));  // n_layer = 3
  EXPECT_EQ(count, 0u);
  EXPECT_TRUE(Fails(mm_session_pool_notes(s.get(), UINT32_MAX, windows, nullptr, nullptr, 4,
                                          &count),
                    MM_ERR_INVALID_ARGUMENT, {"layer"}, {s.get()}));
  for (int64_t w : windows) EXPECT_EQ(w, -7);
  ExpectSameFuture(s.get(), twin.get(), 2);
}

TEST(ApiSession, StateBytesStopGrowingOncePoolsAreFull) {
  ModelPtr model = MakeModel();
  SessionPtr s = MakeSession(model.get());
  const uint64_t empty = mm_session_state_bytes(s.get());
  EXPECT_GT(empty, 0u);
  const std::vector<int32_t> toks = Tokens(2000, 10);
  ASSERT_EQ(mm_session_feed(s.get(), toks.data(), 500, MM_LOGITS_NONE, nullptr, 0), MM_OK);
  const uint64_t at500 = mm_session_state_bytes(s.get());
  for (uint32_t l = 0; l < 3; ++l) EXPECT_EQ(mm_session_pool_size(s.get(), l), 4) << l;
  ASSERT_EQ(mm_session_feed(s.get(), toks.data() + 500, 1500, MM_LOGITS_NONE, nullptr, 0),
            MM_OK);
  EXPECT_EQ(mm_session_position(s.get()), 2000u);
  EXPECT_EQ(mm_session_state_bytes(s.get()), at500);
  EXPECT_GE(at500, empty);
}

// ---------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------

TEST(ApiThreads, SessionsOnOneSharedModelMatchASingleThread) {
  ModelPtr model = MakeModel(21);
  const std::vector<int32_t> toks = Tokens(300, 12);
  // Feed in uneven chunks (single tokens, short and long blocks).
  auto run = [&](std::vector<float>* out) {
    SessionPtr s = MakeSession(model.get());
    out->assign(toks.size() * kVocab, 0.0f);
    size_t done = 0;
    const size_t chunks[] = {1, 1, 7, 64, 3, 100};
    for (size_t i = 0; done < toks.size(); ++i) {
      const size_t n = std::min(chunks[i % 6], toks.size() - done);
      const mm_status st = mm_session_feed(s.get(), toks.data() + done, n, MM_LOGITS_ALL,
                                           out->data() + done * kVocab, n * kVocab);
      if (st != MM_OK) {
        ADD_FAILURE() << mm_last_error();
        return;
      }
      done += n;
    }
  };
  std::vector<float> reference;
  run(&reference);
  std::vector<std::vector<float>> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(run, &results[i]);
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(BitwiseEqual(results[i], reference)) << "thread " << i;
}

}  // namespace
