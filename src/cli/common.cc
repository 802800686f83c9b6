// Shared pieces of the command-line tool: errors, option parsing and help,
// files, model configuration text, small utilities.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli.h"

namespace memmamba_cli {

void UsageError(const std::string& message) { throw CliError(kExitUsage, message); }
void Fail(const std::string& message) { throw CliError(kExitFailure, message); }

void FailStatus(const std::string& what, mm_status status, const char* detail) {
  std::string message = what + ": " + mm_status_string(status);
  if (detail != nullptr && detail[0] != '\0') message += std::string(" (") + detail + ")";
  throw CliError(kExitFailure, message);
}

void Check(mm_status status, const std::string& what) {
  if (status != MM_OK) FailStatus(what, status, mm_last_error());
}

// ---------------------------------------------------------------------------
// Options

const OptionSpec kThreadsOption = {
    "--threads", "N",
    "Threads for the model's computations; 0 = all cores (default: the environment variable "
    "MEMMAMBA_THREADS, else 0). On a busy machine 1 is often fastest."};

const OptionSpec kDeviceOption = {
    "--device", "DEV",
    "Where the model's sessions run: 'cpu' (default) or 'cuda' (the first NVIDIA GPU; the "
    "results match the CPU's to float rounding, and snapshots move between the two)."};

static const OptionSpec kHelpOption = {"--help", nullptr, "Print this help and exit (also -h)."};

bool Args::Has(const std::string& name) const {
  return values.count(name) > 0 || flags.count(name) > 0;
}

std::string Args::Str(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  return it == values.end() ? fallback : it->second;
}

uint64_t Args::U64(const std::string& name, uint64_t fallback, uint64_t min, uint64_t max) const {
  auto it = values.find(name);
  if (it == values.end()) return fallback;
  const uint64_t v = ParseCount(it->second, name);
  if (v < min || v > max) {
    UsageError(name + " " + it->second + ": must be between " + std::to_string(min) + " and " +
               std::to_string(max));
  }
  return v;
}

double Args::F64(const std::string& name, double fallback, double min, double max) const {
  auto it = values.find(name);
  if (it == values.end()) return fallback;
  const char* s = it->second.c_str();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || errno != 0 || !std::isfinite(v)) {
    UsageError(name + " '" + it->second + "': not a number");
  }
  if (v < min || v > max) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s %s: must be between %g and %g", name.c_str(), s, min, max);
    UsageError(buf);
  }
  return v;
}

int32_t Args::Device() const {
  const std::string d = Str("--device", "cpu");
  if (d == "cpu") return MM_DEVICE_CPU;
  if (d == "cuda") return MM_DEVICE_CUDA;
  UsageError("--device '" + d + "': expected cpu or cuda");
  return MM_DEVICE_CPU;
}

int32_t Args::Threads() const {
  uint64_t fallback = 0;
  // The environment's default lets scripts and CI bound every command at once.
  if (const char* env = std::getenv("MEMMAMBA_THREADS"); env != nullptr && env[0] != '\0') {
    fallback = ParseCount(env, "MEMMAMBA_THREADS");
  }
  return static_cast<int32_t>(U64("--threads", fallback, 0, 4096));
}

static const OptionSpec* FindOption(const Command& command, const std::string& name) {
  for (const OptionSpec& o : command.options) {
    if (name == o.name) return &o;
  }
  return nullptr;
}

bool ParseArgs(const Command& command, int argc, char** argv, Args* out) {
  bool options_done = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (options_done || arg.size() < 2 || arg[0] != '-' ||
        std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.') {
      // A lone "-" or a negative number is a positional argument.
      out->positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      PrintCommandHelp(command, stdout);
      return false;
    }
    std::string value;
    bool has_inline_value = false;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline_value = true;
    }
    const OptionSpec* spec = FindOption(command, arg);
    if (spec == nullptr) {
      UsageError("unknown option '" + arg + "' (see 'memmamba " + command.name + " --help')");
    }
    if (spec->value == nullptr) {
      if (has_inline_value) UsageError("option " + arg + " takes no value");
      ++out->flags[arg];
      continue;
    }
    if (!has_inline_value) {
      if (i + 1 >= argc) UsageError("option " + arg + " needs a value (" + spec->value + ")");
      value = argv[++i];
    }
    out->values[arg] = value;
  }
  const size_t n = out->positional.size();
  if (n < command.min_positional || n > command.max_positional) {
    std::string message = std::string("expected ") + command.usage + "; got " +
                          std::to_string(n) + " argument" + (n == 1 ? "" : "s");
    if (n > command.max_positional) message += " (unexpected '" + out->positional.back() + "')";
    UsageError(message + " (see 'memmamba " + command.name + " --help')");
  }
  return true;
}

// Writes `text` wrapped at `width` columns; continuation lines (and the first
// one when first_indent is given) start with `indent` spaces.
static void PrintWrapped(std::FILE* out, const std::string& text, size_t indent, size_t first_col,
                         size_t width) {
  size_t col = first_col;
  size_t i = 0;
  bool first_word = true;
  while (i < text.size()) {
    if (text[i] == '\n') {  // explicit line break: keep it
      std::fputc('\n', out);
      for (size_t k = 0; k < indent; ++k) std::fputc(' ', out);
      col = indent;
      first_word = true;
      ++i;
      continue;
    }
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\n') ++j;
    const std::string word = text.substr(i, j - i);
    if (!first_word && col + 1 + word.size() > width) {
      std::fputc('\n', out);
      for (size_t k = 0; k < indent; ++k) std::fputc(' ', out);
      col = indent;
      first_word = true;
    }
    if (!first_word) {
      std::fputc(' ', out);
      ++col;
    }
    std::fputs(word.c_str(), out);
    col += word.size();
    first_word = false;
    i = j;
  }
  std::fputc('\n', out);
}

void PrintCommandHelp(const Command& command, std::FILE* out) {
  std::fprintf(out, "usage: memmamba %s %s\n\n", command.name, command.usage);
  PrintWrapped(out, command.summary, 0, 0, 79);
  if (command.description != nullptr && command.description[0] != '\0') {
    std::fputc('\n', out);
    // Paragraphs are separated by blank lines ("\n\n"); lines starting with
    // two spaces are printed as they are (examples).
    std::string text = command.description;
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(start, end - start);
      if (line.rfind("  ", 0) == 0 || line.empty()) {
        std::fprintf(out, "%s\n", line.c_str());
      } else {
        PrintWrapped(out, line, 0, 0, 79);
      }
      start = end + 1;
    }
  }
  std::fprintf(out, "\noptions:\n");
  std::vector<OptionSpec> all = command.options;
  all.push_back(kHelpOption);
  for (const OptionSpec& o : all) {
    std::string head = std::string("  ") + o.name;
    if (o.value != nullptr) head += std::string(" ") + o.value;
    constexpr size_t kColumn = 26;
    if (head.size() + 2 > kColumn) {
      std::fprintf(out, "%s\n", head.c_str());
      head.clear();
    }
    head.resize(kColumn, ' ');
    std::fputs(head.c_str(), out);
    PrintWrapped(out, o.help, kColumn, kColumn, 79);
  }
}

// ---------------------------------------------------------------------------
// Files

std::string ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) Fail("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::fclose(f);
    Fail("'" + path + "' is a directory");
  }
  std::string bytes;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) Fail("cannot read '" + path + "': " + std::strerror(err));
  return bytes;
}

void WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp" + std::to_string(getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) Fail("cannot write '" + path + "': " + std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() &&
                  std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    Fail("cannot write '" + path + "': " + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    std::remove(tmp.c_str());
    Fail("cannot write '" + path + "': " + std::strerror(rename_err));
  }
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::string ExtractTokens(const std::string& bytes, InputFormat format, bool* was_fasta) {
  bool fasta = format == InputFormat::kFasta;
  if (format == InputFormat::kAuto) fasta = !bytes.empty() && bytes[0] == '>';
  if (was_fasta != nullptr) *was_fasta = fasta;
  if (!fasta) return bytes;
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    size_t end = bytes.find('\n', i);
    if (end == std::string::npos) end = bytes.size();
    if (bytes[i] != '>' && bytes[i] != ';') {
      for (size_t k = i; k < end; ++k) {
        const unsigned char c = static_cast<unsigned char>(bytes[k]);
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*' || c == '-') {
          out.push_back(static_cast<char>(c));
        }
      }
    }
    i = end + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Models

const char* PolicyName(int32_t policy) {
  return policy == MM_POOL_PRIORITY ? "PRIORITY" : policy == MM_POOL_FIFO ? "FIFO" : "?";
}

const char* FusionName(int32_t fusion) {
  switch (fusion) {
    case MM_FUSION_WEIGHTED: return "WEIGHTED";
    case MM_FUSION_RESIDUAL: return "RESIDUAL";
    case MM_FUSION_GATED: return "GATED";
    default: return "?";
  }
}

namespace {

enum class FieldKind { kU32, kF32, kPolicy, kFusion, kBool };
struct ConfigField {
  const char* key;
  FieldKind kind;
  size_t offset;
};

#define MM_FIELD(name, kind) {#name, kind, offsetof(mm_model_config, name)}
const ConfigField kConfigFields[] = {
    MM_FIELD(vocab_size, FieldKind::kU32),     MM_FIELD(d_model, FieldKind::kU32),
    MM_FIELD(n_layer, FieldKind::kU32),        MM_FIELD(d_state, FieldKind::kU32),
    MM_FIELD(d_conv, FieldKind::kU32),         MM_FIELD(expand, FieldKind::kU32),
    MM_FIELD(dt_rank, FieldKind::kU32),        MM_FIELD(note_window, FieldKind::kU32),
    MM_FIELD(summary_dim, FieldKind::kU32),    MM_FIELD(pool_capacity, FieldKind::kU32),
    MM_FIELD(pool_policy, FieldKind::kPolicy), MM_FIELD(note_threshold, FieldKind::kF32),
    MM_FIELD(attn_heads, FieldKind::kU32),     MM_FIELD(gate_threshold, FieldKind::kF32),
    MM_FIELD(cross_layer_period, FieldKind::kU32),
    MM_FIELD(cross_layer_span, FieldKind::kU32),
    MM_FIELD(fusion, FieldKind::kFusion),      MM_FIELD(norm_eps, FieldKind::kF32),
    MM_FIELD(tie_embeddings, FieldKind::kBool),
};
#undef MM_FIELD

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string FieldNames() {
  std::string names;
  for (const ConfigField& f : kConfigFields) {
    if (!names.empty()) names += ", ";
    names += f.key;
  }
  return names;
}

}  // namespace

void ParseConfig(const std::string& text, mm_model_config* config,
                 std::vector<std::string>* keys_set) {
  for (const std::string& item : SplitList(text, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      UsageError("--config '" + item + "': expected key=value (keys: " + FieldNames() + ")");
    }
    const std::string key = item.substr(0, eq);
    const std::string value = item.substr(eq + 1);
    const ConfigField* field = nullptr;
    for (const ConfigField& f : kConfigFields) {
      if (key == f.key) field = &f;
    }
    if (field == nullptr) {
      UsageError("--config: unknown key '" + key + "' (keys: " + FieldNames() + ")");
    }
    char* base = reinterpret_cast<char*>(config) + field->offset;
    const std::string what = "--config " + key;
    switch (field->kind) {
      case FieldKind::kU32: {
        const uint64_t v = ParseCount(value, what);
        if (v > UINT32_MAX) UsageError(what + "=" + value + ": too large");
        const uint32_t u = static_cast<uint32_t>(v);
        std::memcpy(base, &u, sizeof u);
        break;
      }
      case FieldKind::kF32: {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(value.c_str(), &end);
        if (value.empty() || *end != '\0' || errno != 0 || !std::isfinite(v)) {
          UsageError(what + "=" + value + ": not a number");
        }
        const float f = static_cast<float>(v);
        std::memcpy(base, &f, sizeof f);
        break;
      }
      case FieldKind::kPolicy: {
        const std::string v = Upper(value);
        int32_t p;
        if (v == "PRIORITY" || v == "0") p = MM_POOL_PRIORITY;
        else if (v == "FIFO" || v == "1") p = MM_POOL_FIFO;
        else UsageError(what + "=" + value + ": expected PRIORITY or FIFO");
        std::memcpy(base, &p, sizeof p);
        break;
      }
      case FieldKind::kFusion: {
        const std::string v = Upper(value);
        int32_t p;
        if (v == "WEIGHTED" || v == "0") p = MM_FUSION_WEIGHTED;
        else if (v == "RESIDUAL" || v == "1") p = MM_FUSION_RESIDUAL;
        else if (v == "GATED" || v == "2") p = MM_FUSION_GATED;
        else UsageError(what + "=" + value + ": expected WEIGHTED, RESIDUAL or GATED");
        std::memcpy(base, &p, sizeof p);
        break;
      }
      case FieldKind::kBool: {
        const std::string v = Upper(value);
        int32_t b;
        if (v == "1" || v == "TRUE" || v == "YES") b = 1;
        else if (v == "0" || v == "FALSE" || v == "NO") b = 0;
        else UsageError(what + "=" + value + ": expected 0 or 1");
        std::memcpy(base, &b, sizeof b);
        break;
      }
    }
    if (keys_set != nullptr) keys_set->push_back(key);
  }
}

std::string FormatConfig(const mm_model_config& config) {
  std::string out;
  const char* base = reinterpret_cast<const char*>(&config);
  for (const ConfigField& f : kConfigFields) {
    if (!out.empty()) out += ",";
    out += f.key;
    out += "=";
    char buf[64];
    switch (f.kind) {
      case FieldKind::kU32: {
        uint32_t v;
        std::memcpy(&v, base + f.offset, sizeof v);
        std::snprintf(buf, sizeof buf, "%u", v);
        break;
      }
      case FieldKind::kF32: {
        float v;
        std::memcpy(&v, base + f.offset, sizeof v);
        std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
        break;
      }
      case FieldKind::kPolicy:
      case FieldKind::kFusion:
      case FieldKind::kBool: {
        int32_t v;
        std::memcpy(&v, base + f.offset, sizeof v);
        std::snprintf(buf, sizeof buf, "%s",
                      f.kind == FieldKind::kPolicy   ? PolicyName(v)
                      : f.kind == FieldKind::kFusion ? FusionName(v)
                                                     : (v ? "1" : "0"));
        break;
      }
    }
    out += buf;
  }
  return out;
}

mm_model_config GetConfig(const mm_model* model) {
  mm_model_config config;
  Check(mm_model_config_init(&config, sizeof config), "mm_model_config_init");
  Check(mm_model_get_config(model, &config), "mm_model_get_config");
  return config;
}

void RequireByteVocab(const mm_model_config& config, const std::string& what) {
  if (config.vocab_size < 256) {
    Fail(what + ": the model's vocab_size is " + std::to_string(config.vocab_size) +
         "; byte tokens need at least 256");
  }
}

void LoadModel(const std::string& path, int32_t threads, ModelHandle* out, int32_t device) {
  if (!FileExists(path)) Fail("cannot open model '" + path + "': " + std::strerror(ENOENT));
  mm_model_options options;
  Check(mm_model_options_init(&options, sizeof options), "mm_model_options_init");
  options.n_threads = threads;
  options.device = device;
  const mm_status st = mm_model_load(&out->model, path.c_str(), &options);
  if (st != MM_OK) FailStatus("cannot load model '" + path + "'", st, mm_last_error());
  out->config = GetConfig(out->model);
  RequireByteVocab(out->config, "model '" + path + "'");
}

// ---------------------------------------------------------------------------
// Utilities

double NowSeconds() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string WithCommas(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string HumanCount(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e4) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string HumanDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  const long long t = static_cast<long long>(s + 0.5);
  if (t < 60) std::snprintf(buf, sizeof buf, "%llds", t);
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
  return buf;
}

std::string HumanBytes(uint64_t v) {
  char buf[32];
  if (v >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", v / double(1ull << 30));
  else if (v >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", v / double(1ull << 20));
  else if (v >= (1ull << 10)) std::snprintf(buf, sizeof buf, "%.1f KiB", v / double(1ull << 10));
  else std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(v));
  return buf;
}

std::vector<std::string> SplitList(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    // Trim spaces: "256, 1024" is fine.
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

uint64_t ParseCount(const std::string& text, const std::string& what) {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) {
    UsageError(what + " '" + text + "': expected a non-negative whole number");
  }
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  uint64_t scale = 1;
  if (*end == 'k' || *end == 'K') scale = 1024, ++end;
  else if (*end == 'M') scale = 1024 * 1024, ++end;
  if (*end != '\0' || errno != 0) {
    UsageError(what + " '" + text + "': expected a non-negative whole number");
  }
  if (v > UINT64_MAX / scale) UsageError(what + " '" + text + "': too large");
  return v * scale;
}

std::string Printable(const std::string& bytes, size_t max_chars) {
  std::string out;
  for (unsigned char c : bytes) {
    if (out.size() >= max_chars) {
      out += "...";
      break;
    }
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);  // UTF-8 passes through
    }
  }
  return out;
}

uint64_t Fnv1a64(const void* data, size_t n, uint64_t h) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

uint32_t Crc32(const void* data, size_t n, uint32_t crc) {
  static uint32_t table[256];
  static bool ready = false;
  if (!ready) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  const unsigned char* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

bool StderrIsTty() { return isatty(STDERR_FILENO) != 0; }

Rng::Rng(uint64_t seed) {
  // splitmix64 expands the seed into the four state words.
  uint64_t x = seed;
  for (uint64_t& w : s) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    w = z ^ (z >> 31);
  }
}

uint64_t Rng::Next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t Rng::Below(uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the biased tail
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % n;
}

}  // namespace memmamba_cli
