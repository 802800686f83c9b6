// memmamba generate: a model writes bytes after a prompt, each drawn from its
// next-byte distribution through mm_sessions_step_sample (greedy at
// temperature 0; otherwise fixed by --seed and the stream's position, so a
// run is repeatable, on the CPU and on a GPU alike up to near ties).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli.h"

namespace memmamba_cli {
namespace {

int RunGenerate(const Args& args) {
  const std::string model_path = args.positional[0];
  if (args.Has("--prompt") && args.Has("--prompt-file")) {
    UsageError("give --prompt or --prompt-file, not both");
  }
  const std::string prompt =
      args.Has("--prompt-file") ? ReadFile(args.Str("--prompt-file")) : args.Str("--prompt");
  const uint64_t n = args.U64("--tokens", 200, 1, uint64_t{1} << 30);
  const double temperature = args.F64("--temperature", 0.8, 0.0, 1e6);
  const uint64_t seed = args.U64("--seed", 0);

  ModelHandle model;
  LoadModel(model_path, args.Threads(), &model, args.Device());
  SessionHandle s;
  Check(mm_session_create(&s.session, model.model, nullptr), "mm_session_create");
  // Every byte of the prompt but the last goes in as a feed; the last is the
  // first step's input. An empty prompt starts from a newline.
  std::vector<int32_t> tokens(prompt.begin(), prompt.end());
  for (int32_t& t : tokens) t = static_cast<unsigned char>(t);
  if (tokens.empty()) tokens.push_back('\n');
  const double t0 = NowSeconds();
  if (tokens.size() > 1) {
    const mm_status st = mm_session_feed(s.session, tokens.data(), tokens.size() - 1,
                                         MM_LOGITS_NONE, nullptr, 0);
    if (st != MM_OK) FailStatus("mm_session_feed", st, mm_session_last_error(s.session));
  }
  const double t1 = NowSeconds();
  mm_sample_options o;
  Check(mm_sample_options_init(&o, sizeof o), "mm_sample_options_init");
  o.temperature = static_cast<float>(temperature);
  o.seed = seed;
  int32_t token = tokens.back();
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  for (uint64_t i = 0; i < n; ++i) {
    int32_t next = 0;
    const mm_status st = mm_sessions_step_sample(&s.session, 1, &token, &o, &next);
    if (st != MM_OK) FailStatus("mm_sessions_step_sample", st, mm_session_last_error(s.session));
    std::fputc(next, stdout);
    token = next;
  }
  std::fflush(stdout);
  const double t2 = NowSeconds();
  std::fprintf(stderr,
               "\ngenerate: %s bytes of prompt in %.3f s, %s bytes generated at %s tokens/s "
               "(temperature %g, seed %llu)\n",
               WithCommas(prompt.size()).c_str(), t1 - t0, WithCommas(n).c_str(),
               HumanCount(static_cast<double>(n) / std::max(t2 - t1, 1e-9)).c_str(),
               temperature, static_cast<unsigned long long>(seed));
  return 0;
}

}  // namespace

const Command kGenerateCommand = {
    "generate",
    "MODEL [options]",
    "Write bytes after a prompt, each drawn from the model's next-byte distribution.",
    "Feeds the prompt through one session of MODEL, then draws N bytes one at a time with "
    "mm_sessions_step_sample and writes the prompt and the bytes to standard output (a "
    "summary goes to standard error). At --temperature 0 each byte is the most likely one; "
    "above 0 it is drawn from softmax(logits / temperature), fixed by --seed and the "
    "stream's position, so a run repeats exactly. An empty prompt starts from a newline.\n"
    "\n"
    "  memmamba generate model.safetensors --prompt 'It is a truth ' --tokens 300\n"
    "  memmamba generate model.safetensors --prompt-file start.txt --temperature 0",
    {
        {"--prompt", "TEXT", "The text to continue (default: none)."},
        {"--prompt-file", "FILE", "Read the text to continue from FILE."},
        {"--tokens", "N", "Bytes to generate (default 200)."},
        {"--temperature", "T", "0 = greedy; higher is more varied (default 0.8)."},
        {"--seed", "S", "Picks the draws; the same seed gives the same bytes (default 0)."},
        kDeviceOption,
        kThreadsOption,
    },
    1,
    1,
    RunGenerate,
};

}  // namespace memmamba_cli
