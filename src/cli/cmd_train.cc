// memmamba train: next-token training on random windows of text, FASTA or
// log files, through mm_train_step.
//
// Data: every file becomes a byte-token sequence (FASTA: its sequence
// letters). A batch is B windows of T consecutive tokens, each drawn
// uniformly among all windows that lie inside one file, by the tool's own
// seeded random number generator (xoshiro256**).
//
// Exact resumption: a trainer checkpoint (mm_trainer_save: weights, AdamW
// moments, pending gradient, step) is written to --trainer-out, and beside
// it TRAINER.sampler, a small text file with the sampler's generator state
// and the run's settings (batch, sequence length, learning rate, warm-up,
// seed, a hash of the data). `--resume TRAINER` loads both, so the resumed
// run draws the same batches and ends with the same weights, byte for byte,
// as an uninterrupted one (same machine, build and --threads).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli.h"

namespace memmamba_cli {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void OnInterrupt(int) {
  g_interrupted = 1;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
}

struct TrainData {
  std::vector<std::string> names;
  std::vector<std::string> tokens;  // one byte-token sequence per file
  std::vector<uint64_t> window_end; // prefix sums of the windows per file
  uint64_t total_tokens = 0;
  uint64_t hash = 0;
};

void LoadData(const std::vector<std::string>& paths, InputFormat format, size_t seq,
              TrainData* data) {
  data->hash = Fnv1a64(nullptr, 0);
  uint64_t windows = 0;
  size_t fasta_files = 0;
  for (const std::string& path : paths) {
    bool fasta = false;
    std::string tokens = ExtractTokens(ReadFile(path), format, &fasta);
    fasta_files += fasta;
    data->total_tokens += tokens.size();
    const uint64_t n = tokens.size();
    data->hash = Fnv1a64(&n, sizeof n, data->hash);
    data->hash = Fnv1a64(tokens.data(), tokens.size(), data->hash);
    if (tokens.size() >= seq) windows += tokens.size() - seq + 1;
    data->window_end.push_back(windows);
    data->names.push_back(path);
    data->tokens.push_back(std::move(tokens));
  }
  if (windows == 0) {
    Fail("no input file holds a window of --seq " + std::to_string(seq) + " tokens (" +
         WithCommas(data->total_tokens) + " tokens in all)");
  }
  std::fprintf(stderr, "memmamba train: %zu file%s (%zu read as FASTA), %s tokens\n",
               paths.size(), paths.size() == 1 ? "" : "s", fasta_files,
               WithCommas(data->total_tokens).c_str());
}

// Fills tokens[B*T] with B windows drawn by rng.
void SampleBatch(const TrainData& data, size_t batch, size_t seq, Rng* rng,
                 std::vector<int32_t>* tokens) {
  tokens->resize(batch * seq);
  for (size_t b = 0; b < batch; ++b) {
    const uint64_t w = rng->Below(data.window_end.back());
    const size_t f = static_cast<size_t>(
        std::upper_bound(data.window_end.begin(), data.window_end.end(), w) -
        data.window_end.begin());
    const uint64_t start = w - (f == 0 ? 0 : data.window_end[f - 1]);
    const unsigned char* src =
        reinterpret_cast<const unsigned char*>(data.tokens[f].data()) + start;
    for (size_t t = 0; t < seq; ++t) (*tokens)[b * seq + t] = src[t];
  }
}

// The sampler state and run settings stored beside a trainer checkpoint.
struct SamplerState {
  uint64_t step = 0;   // the trainer's optimizer steps when written
  uint64_t calls = 0;  // mm_train_step calls made so far
  Rng rng;
  uint64_t seed = 0;
  uint64_t batch = 0, seq = 0, warmup = 0;
  double lr = 0;
  uint64_t data_tokens = 0, data_hash = 0;
};

std::string SamplerPath(const std::string& trainer_path) { return trainer_path + ".sampler"; }

void WriteSampler(const std::string& path, const SamplerState& s) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "# memmamba train: the data sampler of the trainer checkpoint beside this file\n"
                "memmamba-train-sampler 1\n"
                "step %llu\ncalls %llu\nrng %016llx %016llx %016llx %016llx\nseed %llu\n"
                "batch %llu\nseq %llu\nlr %.9g\nwarmup %llu\ndata_tokens %llu\n"
                "data_hash %016llx\n",
                (unsigned long long)s.step, (unsigned long long)s.calls,
                (unsigned long long)s.rng.s[0], (unsigned long long)s.rng.s[1],
                (unsigned long long)s.rng.s[2], (unsigned long long)s.rng.s[3],
                (unsigned long long)s.seed, (unsigned long long)s.batch,
                (unsigned long long)s.seq, s.lr, (unsigned long long)s.warmup,
                (unsigned long long)s.data_tokens, (unsigned long long)s.data_hash);
  WriteFileAtomically(path, buf);
}

SamplerState ReadSampler(const std::string& path) {
  const std::string text = ReadFile(path);
  SamplerState s;
  bool magic = false;
  unsigned seen = 0;
  for (const std::string& line : SplitList(text, '\n')) {
    if (line[0] == '#') continue;
    char key[64];
    if (std::sscanf(line.c_str(), "%63s", key) != 1) continue;
    const char* rest = line.c_str() + std::strlen(key);
    unsigned long long a = 0, b = 0, c = 0, d = 0;
    double x = 0;
    const std::string k = key;
    bool ok = true;
    if (k == "memmamba-train-sampler") {
      ok = std::sscanf(rest, "%llu", &a) == 1 && a == 1;
      magic = ok;
    } else if (k == "rng") {
      ok = std::sscanf(rest, "%llx %llx %llx %llx", &a, &b, &c, &d) == 4;
      s.rng.s[0] = a, s.rng.s[1] = b, s.rng.s[2] = c, s.rng.s[3] = d;
      seen |= 1;
    } else if (k == "lr") {
      ok = std::sscanf(rest, "%lf", &x) == 1 && x > 0;
      s.lr = x;
      seen |= 2;
    } else if (k == "data_hash") {
      ok = std::sscanf(rest, "%llx", &a) == 1;
      s.data_hash = a;
    } else {
      uint64_t* field = k == "step"          ? &s.step
                        : k == "calls"       ? &s.calls
                        : k == "seed"        ? &s.seed
                        : k == "batch"       ? &s.batch
                        : k == "seq"         ? &s.seq
                        : k == "warmup"      ? &s.warmup
                        : k == "data_tokens" ? &s.data_tokens
                                             : nullptr;
      if (field == nullptr) continue;  // written by a later version: ignored
      ok = std::sscanf(rest, "%llu", &a) == 1;
      *field = a;
      if (k == "batch") seen |= 4;
      if (k == "seq") seen |= 8;
    }
    if (!ok) Fail("'" + path + "': malformed line '" + line + "'");
  }
  if (!magic || seen != 15 || s.batch == 0 || s.seq < 2) {
    Fail("'" + path + "' is not a memmamba train sampler file");
  }
  return s;
}

struct TrainerHandle {
  ~TrainerHandle() { mm_trainer_free(trainer); }
  mm_trainer* trainer = nullptr;
};

void CheckTrainer(mm_status st, const TrainerHandle& t, const std::string& what) {
  if (st != MM_OK) {
    const char* detail = mm_trainer_last_error(t.trainer);
    FailStatus(what, st, detail != nullptr && detail[0] ? detail : mm_last_error());
  }
}

// Writes the model, and the trainer checkpoint with its sampler when asked.
void SaveCheckpoint(const TrainerHandle& trainer, const std::string& model_path,
                    const std::string& trainer_path, const SamplerState& sampler) {
  ModelHandle model;
  CheckTrainer(mm_trainer_export_model(trainer.trainer, nullptr, &model.model), trainer,
               "mm_trainer_export_model");
  const mm_status st = mm_model_save(model.model, model_path.c_str());
  if (st != MM_OK) FailStatus("cannot save model '" + model_path + "'", st, mm_last_error());
  if (!trainer_path.empty()) {
    const mm_status ts = mm_trainer_save(trainer.trainer, trainer_path.c_str());
    if (ts != MM_OK) {
      FailStatus("cannot save trainer '" + trainer_path + "'", ts,
                 mm_trainer_last_error(trainer.trainer));
    }
    WriteSampler(SamplerPath(trainer_path), sampler);
  }
}

std::string Bar(double fraction, int width) {
  fraction = std::min(1.0, std::max(0.0, fraction));
  const int full = static_cast<int>(fraction * width + 1e-9);
  return "[" + std::string(full, '#') + std::string(width - full, '-') + "]";
}

}  // namespace

int RunTrain(const Args& args) {
  const std::string out_path = args.Str("--out");
  if (out_path.empty()) UsageError("--out MODEL is required (see 'memmamba train --help')");
  const std::string resume_path = args.Str("--resume");
  const std::string trainer_out = args.Str("--trainer-out");
  if (args.Has("--init") && args.Has("--config")) {
    UsageError("--init and --config exclude each other (the model's configuration is in the "
               "--init file)");
  }
  if (!resume_path.empty()) {
    for (const char* o : {"--init", "--config", "--accum", "--clip", "--weight-decay",
                          "--straight-through"}) {
      if (args.Has(o)) {
        UsageError(std::string(o) + " cannot change a resumed run: the trainer checkpoint "
                   "holds the model and optimizer settings");
      }
    }
  }
  const uint64_t save_every = args.U64("--save-every", 0);
  if (save_every > 0 && trainer_out.empty()) {
    UsageError("--save-every needs --trainer-out FILE (where the trainer checkpoint goes)");
  }
  const bool has_steps = args.Has("--steps"), has_minutes = args.Has("--minutes");
  const uint64_t target_steps = args.U64("--steps", has_minutes ? UINT64_MAX : 100);
  const double minutes = args.F64("--minutes", 0, 0, 1e7);
  (void)has_steps;
  if (args.Has("--fasta") && args.Has("--text")) UsageError("--fasta and --text exclude each other");
  const InputFormat format = args.Has("--fasta")  ? InputFormat::kFasta
                             : args.Has("--text") ? InputFormat::kText
                                                  : InputFormat::kAuto;
  const uint64_t log_every = args.U64("--log-every", 10, 1);
  const int32_t threads = args.Threads();

  // Settings: the command line, else (when resuming) the original run's.
  SamplerState sampler;
  bool have_sampler = false;
  if (!resume_path.empty()) {
    if (!FileExists(resume_path)) {
      Fail("cannot open trainer '" + resume_path + "': " + std::strerror(ENOENT));
    }
    if (FileExists(SamplerPath(resume_path))) {
      sampler = ReadSampler(SamplerPath(resume_path));
      have_sampler = true;
    } else {
      std::fprintf(stderr,
                   "memmamba train: warning: no %s: the data order starts afresh from --seed, "
                   "so this run will not equal an uninterrupted one\n",
                   SamplerPath(resume_path).c_str());
    }
  }
  auto setting = [&](const char* name, uint64_t fallback, uint64_t saved, uint64_t min,
                     uint64_t max) {
    if (!have_sampler) return args.U64(name, fallback, min, max);
    const uint64_t v = args.U64(name, saved, min, max);
    if (v != saved) {
      std::fprintf(stderr,
                   "memmamba train: warning: %s %llu differs from the checkpoint's %llu: this "
                   "run will not equal an uninterrupted one\n",
                   name, (unsigned long long)v, (unsigned long long)saved);
    }
    return v;
  };
  const uint64_t batch = setting("--batch", 8, sampler.batch, 1, 1u << 20);
  const uint64_t seq = setting("--seq", 256, sampler.seq, 2, 1u << 26);
  const uint64_t seed = setting("--seed", 1, sampler.seed, 0, UINT64_MAX);
  const uint64_t warmup = setting("--warmup", 0, sampler.warmup, 0, UINT64_MAX);
  double lr = args.F64("--lr", have_sampler ? sampler.lr : 1e-3, 1e-12, 10);
  if (have_sampler && args.Has("--lr") && lr != sampler.lr) {
    std::fprintf(stderr, "memmamba train: warning: --lr %g differs from the checkpoint's %g\n", lr,
                 sampler.lr);
  }
  if (args.positional.empty()) UsageError("no training files given");

  TrainData data;
  LoadData(args.positional, format, seq, &data);
  if (have_sampler && (sampler.data_hash != data.hash || sampler.data_tokens != data.total_tokens)) {
    std::fprintf(stderr,
                 "memmamba train: warning: the data differ from the checkpoint's run "
                 "(%llu tokens then, %llu now)\n",
                 (unsigned long long)sampler.data_tokens, (unsigned long long)data.total_tokens);
  }

  TrainerHandle trainer;
  mm_model_config config;
  Check(mm_model_config_init(&config, sizeof config), "mm_model_config_init");
  if (!resume_path.empty()) {
    const mm_status st = mm_trainer_load(&trainer.trainer, resume_path.c_str(), threads);
    if (st != MM_OK) FailStatus("cannot load trainer '" + resume_path + "'", st, mm_last_error());
    ModelHandle probe;  // the configuration, for the vocabulary and layer count
    CheckTrainer(mm_trainer_export_model(trainer.trainer, nullptr, &probe.model), trainer,
                 "mm_trainer_export_model");
    config = GetConfig(probe.model);
    if (have_sampler && sampler.step != mm_trainer_step_count(trainer.trainer)) {
      Fail("'" + SamplerPath(resume_path) + "' (step " + std::to_string(sampler.step) +
           ") does not belong to '" + resume_path + "' (step " +
           std::to_string(mm_trainer_step_count(trainer.trainer)) + ")");
    }
  } else {
    ModelHandle model;
    mm_model_options model_options;
    Check(mm_model_options_init(&model_options, sizeof model_options), "mm_model_options_init");
    model_options.n_threads = threads;
    if (args.Has("--init")) {
      LoadModel(args.Str("--init"), threads, &model);
    } else {
      if (args.Has("--config")) ParseConfig(args.Str("--config"), &config);
      Check(mm_model_create(&model.model, &config, seed, &model_options), "mm_model_create");
    }
    config = GetConfig(model.model);
    mm_trainer_options options;
    Check(mm_trainer_options_init(&options, sizeof options), "mm_trainer_options_init");
    options.learning_rate = static_cast<float>(lr);
    options.n_threads = threads;
    options.accum_steps = static_cast<uint32_t>(args.U64("--accum", options.accum_steps, 1, 1u << 20));
    options.grad_clip = static_cast<float>(args.F64("--clip", options.grad_clip, 0, 1e30));
    options.weight_decay =
        static_cast<float>(args.F64("--weight-decay", options.weight_decay, 0, 1e30));
    options.note_straight_through = args.Has("--straight-through");
    const mm_status st = mm_trainer_create(&trainer.trainer, model.model, &options);
    if (st != MM_OK) FailStatus("mm_trainer_create", st, mm_last_error());
  }
  RequireByteVocab(config, "train");
  if (!have_sampler) {
    sampler.rng = Rng(seed);
    sampler.calls = 0;
  }
  sampler.seed = seed;
  sampler.batch = batch;
  sampler.seq = seq;
  sampler.lr = lr;
  sampler.warmup = warmup;
  sampler.data_tokens = data.total_tokens;
  sampler.data_hash = data.hash;

  const uint64_t first_step = mm_trainer_step_count(trainer.trainer);
  const bool tty = StderrIsTty();
  std::vector<int32_t> tokens;
  std::vector<float> keep(config.n_layer);
  double loss_sum = 0, last_loss = NAN;
  uint64_t loss_calls = 0, tokens_seen = 0, calls_this_run = 0;
  const double t_start = NowSeconds();
  double last_draw = 0;
  g_interrupted = 0;
  std::signal(SIGINT, OnInterrupt);
  std::string failure;

  auto progress = [&](uint64_t step, bool final) {
    const double elapsed = NowSeconds() - t_start;
    double fraction = 0, eta = NAN;
    const uint64_t done = step - first_step;
    if (target_steps != UINT64_MAX && target_steps > 0) {
      fraction = double(step) / double(target_steps);  // of the whole run, resumed or not
      if (done > 0) eta = elapsed / done * double(target_steps - std::min(step, target_steps));
    }
    if (minutes > 0) {
      const double f = elapsed / (minutes * 60);
      const double left = std::max(0.0, minutes * 60 - elapsed);
      if (f > fraction) fraction = f;
      if (!(eta <= left)) eta = left;
    }
    char line[512];
    int n = std::snprintf(line, sizeof line, "%s %3.0f%% step %llu", Bar(fraction, 20).c_str(),
                          100 * std::min(1.0, fraction), (unsigned long long)step);
    if (target_steps != UINT64_MAX) {
      n += std::snprintf(line + n, sizeof line - n, "/%llu", (unsigned long long)target_steps);
    }
    n += std::snprintf(line + n, sizeof line - n,
                       " loss %.4f (%.3f bits/byte) %s tok/s elapsed %s ETA %s", last_loss,
                       last_loss / std::log(2.0),
                       HumanCount(elapsed > 0 ? tokens_seen / elapsed : 0).c_str(),
                       HumanDuration(elapsed).c_str(), final ? "0s" : HumanDuration(eta).c_str());
    if (config.pool_capacity > 0 && config.n_layer > 0 &&
        mm_trainer_keep_fraction(trainer.trainer, keep.data(), keep.size()) == MM_OK) {
      const auto mm = std::minmax_element(keep.begin(), keep.end());
      n += std::snprintf(line + n, sizeof line - n, " keep %.2f-%.2f", *mm.first, *mm.second);
    }
    if (tty) {
      std::fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  };

  while (true) {
    const uint64_t step = mm_trainer_step_count(trainer.trainer);
    if (step >= target_steps) break;
    if (minutes > 0 && NowSeconds() - t_start >= minutes * 60) break;
    if (g_interrupted) {
      std::fprintf(stderr, "%smemmamba train: interrupted; saving\n", tty ? "\n" : "");
      break;
    }
    const double scale = warmup > 0 ? std::min(1.0, double(step + 1) / double(warmup)) : 1.0;
    CheckTrainer(mm_trainer_set_learning_rate(trainer.trainer, static_cast<float>(lr * scale)),
                 trainer, "mm_trainer_set_learning_rate");
    Rng before = sampler.rng;
    SampleBatch(data, batch, seq, &sampler.rng, &tokens);
    mm_train_result result;
    Check(mm_train_result_init(&result, sizeof result), "mm_train_result_init");
    const mm_status st = mm_train_step(trainer.trainer, tokens.data(), batch, seq, nullptr, &result);
    if (st != MM_OK) {
      sampler.rng = before;  // the refused batch is drawn again on resume
      const char* detail = mm_trainer_last_error(trainer.trainer);
      failure = std::string("mm_train_step at step ") + std::to_string(step) + ": " +
                mm_status_string(st) + (detail && detail[0] ? std::string(" (") + detail + ")" : "");
      if (st == MM_ERR_NON_FINITE) failure += "; a lower --lr or a --clip may help";
      break;
    }
    ++sampler.calls;
    ++calls_this_run;
    tokens_seen += batch * seq;
    loss_sum += result.loss;
    ++loss_calls;
    if (!result.updated) continue;
    last_loss = loss_sum / loss_calls;
    loss_sum = 0;
    loss_calls = 0;
    const uint64_t now_step = result.step;
    sampler.step = now_step;
    const bool last = now_step >= target_steps;
    if (tty) {
      if (NowSeconds() - last_draw > 0.1 || last) {
        progress(now_step, false);
        last_draw = NowSeconds();
      }
    } else if (now_step == first_step + 1 || now_step % log_every == 0 || last) {
      progress(now_step, false);
    }
    if (save_every > 0 && now_step % save_every == 0 && !last) {
      SaveCheckpoint(trainer, out_path, trainer_out, sampler);
    }
  }
  std::signal(SIGINT, SIG_DFL);
  const uint64_t final_step = mm_trainer_step_count(trainer.trainer);
  if (tty && final_step > first_step) progress(final_step, true);
  sampler.step = final_step;
  SaveCheckpoint(trainer, out_path, trainer_out, sampler);
  const double elapsed = NowSeconds() - t_start;
  std::printf("train: step %llu (%llu in this run, %s tokens, %s)", (unsigned long long)final_step,
              (unsigned long long)(final_step - first_step), WithCommas(tokens_seen).c_str(),
              HumanDuration(elapsed).c_str());
  if (std::isfinite(last_loss)) {
    std::printf(", last loss %.4f (%.3f bits/byte)", last_loss, last_loss / std::log(2.0));
  }
  std::printf("\n  model           %s\n", out_path.c_str());
  if (!trainer_out.empty()) {
    std::printf("  trainer         %s (data sampler: %s)\n", trainer_out.c_str(),
                SamplerPath(trainer_out).c_str());
  }
  (void)calls_this_run;
  if (!failure.empty()) Fail(failure + " (the last good state was saved)");
  return 0;
}

const Command kTrainCommand = {
    "train",
    "--out MODEL [options] FILES...",
    "Train (or fine-tune) a model on text, FASTA or log files.",
    "Reads FILES (every byte a token; a file starting with '>' is FASTA and only its sequence "
    "letters are used, header lines are skipped), and runs mm_train_step on batches of B random "
    "windows of T tokens, drawn uniformly among the windows inside the files by a generator "
    "seeded with --seed. Progress goes to stderr: a bar, the step, the loss (nats and bits per "
    "byte), tokens per second, the ETA and the range of the layers' note keep fractions "
    "(redrawn in place on a terminal, one line every --log-every steps otherwise). At the end "
    "(or on Ctrl-C, after the current step) the model is written to --out "
    "(mm_trainer_export_model + mm_model_save).\n"
    "\n"
    "A new run starts from --init MODEL, or from a fresh model of the --config settings "
    "(defaults of mm_model_config otherwise) initialised from --seed.\n"
    "\n"
    "Checkpoints and exact resumption: --trainer-out FILE writes the whole trainer "
    "(mm_trainer_save: weights, AdamW moments, step) at the end and every --save-every "
    "steps, with FILE.sampler beside it: the data generator's state and the run's settings "
    "(batch, seq, lr, warmup, seed, a hash of the data). '--resume FILE' continues from both: "
    "with the same FILES, machine and --threads, training to --steps N in two runs gives "
    "the same model file, byte for byte, as one run. Settings not given again are taken "
    "from FILE.sampler.\n"
    "\n"
    "  memmamba train --out dna.safetensors --config d_model=64,n_layer=2 --steps 200 ce.fa\n"
    "  memmamba train --out m.safetensors --steps 100 --trainer-out m.trainer --save-every 50 a.txt\n"
    "  memmamba train --out m.safetensors --steps 200 --resume m.trainer a.txt",
    {
        {"--out", "MODEL", "Where the trained model is written (required)."},
        {"--init", "MODEL", "Start from this model's weights (fine-tuning)."},
        {"--config", "K=V,...",
         "Configuration of a fresh model as mm_model_config fields, e.g. "
         "d_model=64,n_layer=2,note_window=8,pool_capacity=8. Keys: vocab_size, d_model, "
         "n_layer, d_state, d_conv, expand, dt_rank, note_window, summary_dim, pool_capacity, "
         "pool_policy (PRIORITY|FIFO), note_threshold, attn_heads, gate_threshold, "
         "cross_layer_period, cross_layer_span, fusion (WEIGHTED|RESIDUAL|GATED), norm_eps, "
         "tie_embeddings (0|1); 'memmamba info MODEL' prints a model's in this form."},
        {"--steps", "N",
         "Train until the trainer has made N optimizer steps in all (counting the steps of a "
         "resumed checkpoint). Default 100, or unlimited with --minutes."},
        {"--minutes", "M", "Stop after M minutes of this run (with --steps: whichever comes first)."},
        {"--batch", "B", "Sequences per step (default 8)."},
        {"--seq", "T", "Tokens per sequence (default 256)."},
        {"--lr", "X", "Peak learning rate of AdamW (default 0.001)."},
        {"--warmup", "N", "Raise the learning rate linearly over the first N steps (default 0)."},
        {"--seed", "S", "Seed of a fresh model's weights and of the data order (default 1)."},
        {"--accum", "N", "mm_train_step calls (batches) per optimizer step (default 1)."},
        {"--clip", "X", "Clip the global gradient norm to X; 0 = off (default 1.0)."},
        {"--weight-decay", "X", "Decoupled weight decay on matrices and embeddings (default 0.1)."},
        {"--straight-through", nullptr,
         "Train the note scorers with the straight-through estimator (DESIGN 6)."},
        {"--fasta", nullptr, "Read every file as FASTA (sequence letters only)."},
        {"--text", nullptr, "Read every file as raw bytes, even one starting with '>'."},
        {"--trainer-out", "FILE", "Write the trainer checkpoint (and FILE.sampler) here."},
        {"--save-every", "N", "Also write the model and the trainer checkpoint every N steps."},
        {"--resume", "FILE", "Continue the run of the trainer checkpoint FILE (and FILE.sampler)."},
        {"--log-every", "N", "When stderr is not a terminal: a progress line every N steps "
                             "(default 10)."},
        kThreadsOption,
    },
    0,
    1u << 20,
    RunTrain,
};

}  // namespace memmamba_cli
