// memmamba: the command-line tool. `memmamba --help` lists the commands;
// `memmamba <command> --help` describes one completely.
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "cli.h"

namespace memmamba_cli {
namespace {

struct Entry {
  const char* words;  // "snapshot inspect"
  const Command* command;
};

const std::vector<Entry>& Commands() {
  static const std::vector<Entry> kCommands = {
      {"info", &kInfoCommand},
      {"import-mamba", &kImportMambaCommand},
      {"stream", &kStreamCommand},
      {"generate", &kGenerateCommand},
      {"snapshot inspect", &kSnapshotInspectCommand},
      {"snapshot continue", &kSnapshotContinueCommand},
      {"train", &kTrainCommand},
      {"eval", &kEvalCommand},
  };
  return kCommands;
}

void PrintMainHelp(std::FILE* out) {
  std::fprintf(out,
               "usage: memmamba <command> [arguments] [options]\n"
               "\n"
               "Streams, snapshots, trains and evaluates MemMamba models (memmamba %s).\n"
               "Every byte of an input file is a token (vocabulary 256); FASTA files can\n"
               "be read as their sequence letters.\n"
               "\n"
               "commands:\n",
               mm_version_string());
  for (const Entry& e : Commands()) {
    std::fprintf(out, "  %s %s\n      %s\n", e.words, e.command->usage, e.command->summary);
  }
  std::fprintf(out,
               "\n"
               "general options:\n"
               "  --help, -h        this help; 'memmamba <command> --help' describes a command\n"
               "  --version         print the versions of the tool and the library\n"
               "\n"
               "environment:\n"
               "  MEMMAMBA_THREADS  the default of --threads (0 or unset: all cores)\n"
               "\n"
               "Exit status: 0 on success, 1 when something failed (a file, a library call),\n"
               "2 for a usage error.\n");
}

int Main(int argc, char** argv) {
  if (mm_abi_version() != MM_ABI_VERSION) {
    std::fprintf(stderr, "memmamba: the library's ABI version %u differs from the tool's %u\n",
                 mm_abi_version(), static_cast<unsigned>(MM_ABI_VERSION));
    return kExitFailure;
  }
  if (argc < 2) {
    PrintMainHelp(stderr);
    return kExitUsage;
  }
  const std::string first = argv[1];
  if (first == "--help" || first == "-h" || first == "help") {
    if (first == "help" && argc >= 3) {
      // "memmamba help stream" = "memmamba stream --help".
      std::string words = argv[2];
      if (argc >= 4 && words == "snapshot") words += std::string(" ") + argv[3];
      for (const Entry& e : Commands()) {
        if (words == e.words) {
          PrintCommandHelp(*e.command, stdout);
          return 0;
        }
      }
      std::fprintf(stderr, "memmamba: unknown command '%s' (see 'memmamba --help')\n",
                   words.c_str());
      return kExitUsage;
    }
    PrintMainHelp(stdout);
    return 0;
  }
  if (first == "--version") {
    std::printf("memmamba %d.%d.%d (library %s, ABI %u)\n", MM_VERSION_MAJOR, MM_VERSION_MINOR,
                MM_VERSION_PATCH, mm_version_string(), mm_abi_version());
    return 0;
  }
  // Longest match first: "snapshot inspect" before a lone "snapshot".
  const Entry* found = nullptr;
  int consumed = 0;
  for (const Entry& e : Commands()) {
    const std::string words = e.words;
    const size_t space = words.find(' ');
    if (space == std::string::npos) {
      if (first == words) found = &e, consumed = 1;
    } else if (first == words.substr(0, space) && argc >= 3 &&
               words.substr(space + 1) == argv[2]) {
      found = &e, consumed = 2;
    }
  }
  if (found == nullptr) {
    if (first == "snapshot") {
      const bool help = argc >= 3 && (!std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "-h"));
      std::fprintf(help ? stdout : stderr,
                   "usage: memmamba snapshot inspect SNAPSHOT\n"
                   "       memmamba snapshot continue MODEL SNAPSHOT FILE [options]\n"
                   "See 'memmamba snapshot inspect --help' and "
                   "'memmamba snapshot continue --help'.\n");
      return help ? 0 : kExitUsage;
    }
    std::fprintf(stderr, "memmamba: unknown command '%s' (see 'memmamba --help')\n",
                 first.c_str());
    return kExitUsage;
  }
  const Command& command = *found->command;
  try {
    Args args;
    if (!ParseArgs(command, argc - 1 - consumed, argv + 1 + consumed, &args)) return 0;
    return command.run(args);
  } catch (const CliError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "memmamba %s: %s\n", command.name, e.what());
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "memmamba %s: out of memory\n", command.name);
    return kExitFailure;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "memmamba %s: %s\n", command.name, e.what());
    return kExitFailure;
  }
}

}  // namespace
}  // namespace memmamba_cli

int main(int argc, char** argv) { return memmamba_cli::Main(argc, argv); }
