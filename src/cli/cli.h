// The memmamba command-line tool: shared pieces of the subcommands.
//
// The tool is a client of the public C API only (memmamba/memmamba.h); it
// never sees the library's internals. Every byte of an input file is a token
// (vocabulary 256). Errors inside a command are thrown as CliError and turned
// into a message and an exit status by main(): 1 for a failure (a file that
// cannot be read, a library call that fails), 2 for a usage error.
#ifndef MEMMAMBA_CLI_CLI_H_
#define MEMMAMBA_CLI_CLI_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "memmamba/memmamba.h"

namespace memmamba_cli {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

class CliError : public std::runtime_error {
 public:
  CliError(int exit_code, const std::string& message)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// A usage error (exit 2): a bad option or argument.
[[noreturn]] void UsageError(const std::string& message);
// A failure (exit 1).
[[noreturn]] void Fail(const std::string& message);
// A failed library call: "<what>: MM_ERR_...: <detail>" (exit 1).
[[noreturn]] void FailStatus(const std::string& what, mm_status status, const char* detail);
// Throws through FailStatus unless status is MM_OK; the detail is mm_last_error().
void Check(mm_status status, const std::string& what);

// ---------------------------------------------------------------------------
// Options. Each command declares its options once; the parser accepts only
// those and the help text is generated from the same table, so it is
// complete by construction.

struct OptionSpec {
  const char* name;   // "--top"
  const char* value;  // "N", or nullptr for a flag
  const char* help;   // one or more sentences; wrapped when printed
};

class Args {
 public:
  bool Has(const std::string& name) const;
  // The value of an option (the last one given), or `fallback`.
  std::string Str(const std::string& name, const std::string& fallback = "") const;
  // Typed values; a malformed value is a usage error naming the option.
  uint64_t U64(const std::string& name, uint64_t fallback, uint64_t min = 0,
               uint64_t max = UINT64_MAX) const;
  double F64(const std::string& name, double fallback, double min, double max) const;
  int32_t Threads() const;  // --threads (0 = all cores)
  int32_t Device() const;   // --device cpu|cuda, as an mm_device (default cpu)

  std::vector<std::string> positional;
  std::map<std::string, std::string> values;  // options with a value
  std::map<std::string, int> flags;           // flags, with how often given
};

struct Command {
  const char* name;         // "stream" or "snapshot inspect"
  const char* usage;        // "MODEL FILE [options]"
  const char* summary;      // one line for the command list
  const char* description;  // paragraphs, '\n'-separated
  std::vector<OptionSpec> options;
  size_t min_positional;
  size_t max_positional;
  int (*run)(const Args& args);
};

// Parses argv (after the command words) against `command`; prints the help
// and returns false for --help / -h.
bool ParseArgs(const Command& command, int argc, char** argv, Args* out);
void PrintCommandHelp(const Command& command, std::FILE* out);

// Shared option groups.
extern const OptionSpec kThreadsOption;
extern const OptionSpec kDeviceOption;

// ---------------------------------------------------------------------------
// Files and data.

// The whole file; a failure names the path and the reason.
std::string ReadFile(const std::string& path);
// Writes `bytes` to path atomically (a temporary file beside it, then rename).
void WriteFileAtomically(const std::string& path, const std::string& bytes);
bool FileExists(const std::string& path);
uint64_t FileSize(const std::string& path);  // 0 when unknown

// How the bytes of an input file become tokens.
enum class InputFormat { kAuto, kText, kFasta };
// Text: every byte. FASTA ('>' first byte in auto mode): the letters of the
// sequence lines; header ('>') and comment (';') lines are skipped.
std::string ExtractTokens(const std::string& bytes, InputFormat format, bool* was_fasta);

// ---------------------------------------------------------------------------
// Models.

// mm_model_config as "key=value,...": parses into *config (starting from its
// current values); unknown keys and bad values are usage errors.
void ParseConfig(const std::string& text, mm_model_config* config,
                 std::vector<std::string>* keys_set = nullptr);
// The configuration as "key=value,..." (every field), which ParseConfig reads.
std::string FormatConfig(const mm_model_config& config);
const char* PolicyName(int32_t policy);
const char* FusionName(int32_t fusion);

struct ModelHandle {
  ModelHandle() = default;
  ModelHandle(const ModelHandle&) = delete;
  ModelHandle& operator=(const ModelHandle&) = delete;
  ~ModelHandle() { mm_model_free(model); }
  mm_model* model = nullptr;
  mm_model_config config{};
};
// A session the tool owns, freed with it.
struct SessionHandle {
  SessionHandle() = default;
  SessionHandle(const SessionHandle&) = delete;
  SessionHandle& operator=(const SessionHandle&) = delete;
  ~SessionHandle() { mm_session_free(session); }
  mm_session* session = nullptr;
};
// Loads a model (onto `device`, an mm_device) and reads its configuration;
// checks that byte tokens fit.
void LoadModel(const std::string& path, int32_t threads, ModelHandle* out,
               int32_t device = MM_DEVICE_CPU);
mm_model_config GetConfig(const mm_model* model);
// Fails unless the model's vocabulary holds the 256 byte tokens.
void RequireByteVocab(const mm_model_config& config, const std::string& what);

// ---------------------------------------------------------------------------
// Small utilities.

double NowSeconds();
std::string Hex64(uint64_t v);
std::string WithCommas(uint64_t v);
std::string HumanCount(double v);      // 12.3k, 4.56M
std::string HumanDuration(double s);   // 45s, 3m07s, 2h05m
std::string HumanBytes(uint64_t v);    // 1.2 MiB
std::vector<std::string> SplitList(const std::string& text, char sep);
// "256", "4k" (= 4096), "1M" (= 1048576): a token count.
uint64_t ParseCount(const std::string& text, const std::string& what);
// A printable, single-line excerpt of raw bytes (escapes control bytes).
std::string Printable(const std::string& bytes, size_t max_chars);
uint64_t Fnv1a64(const void* data, size_t n, uint64_t h = 1469598103934665603ull);
uint32_t Crc32(const void* data, size_t n, uint32_t crc = 0);
bool StderrIsTty();

// xoshiro256**: the data sampler's random numbers. Its whole state is four
// words, saved beside trainer checkpoints so a resumed run draws the same
// batches as an uninterrupted one.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t Next();
  uint64_t Below(uint64_t n);  // uniform in [0, n), n > 0; no modulo bias
  uint64_t s[4];
};

// ---------------------------------------------------------------------------
// Commands (one file each).
int RunInfo(const Args& args);
int RunImportMamba(const Args& args);
int RunStream(const Args& args);
int RunSnapshotInspect(const Args& args);
int RunSnapshotContinue(const Args& args);
int RunTrain(const Args& args);
int RunEval(const Args& args);

// Prints a snapshot's description (mm_snapshot_inspect_file); returns false
// with *status set when the file is not a readable snapshot.
bool DescribeSnapshot(const std::string& path, std::FILE* out, mm_status* status,
                      std::string* error);

extern const Command kInfoCommand;
extern const Command kImportMambaCommand;
extern const Command kStreamCommand;
extern const Command kSnapshotInspectCommand;
extern const Command kSnapshotContinueCommand;
extern const Command kTrainCommand;
extern const Command kEvalCommand;
extern const Command kGenerateCommand;

}  // namespace memmamba_cli

#endif  // MEMMAMBA_CLI_CLI_H_
