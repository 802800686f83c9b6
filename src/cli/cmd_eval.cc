// memmamba eval: perplexity by context length (mm_eval_loss) and passkey
// retrieval accuracy (passkey.h), as a markdown table and a PNG chart.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "chart.h"
#include "cli.h"
#include "passkey.h"

namespace memmamba_cli {
namespace {

struct ContextResult {
  uint64_t context;  // 0 = the whole file as one stream
  double loss, perplexity;
  uint64_t targets;
  double seconds;
};

struct PasskeyCell {
  int correct = 0, samples = 0, digits = 0;
};

std::string Percent(int correct, int total) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.0f%% (%d/%d)", total ? 100.0 * correct / total : 0.0, correct,
                total);
  return buf;
}

std::string Trim(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

int RunEval(const Args& args) {
  const std::string model_path = args.positional[0];
  const std::string file_path = args.positional[1];
  const uint64_t limit = args.U64("--limit", UINT64_MAX, 2);
  const std::string table_path = args.Str("--table");
  const std::string chart_path = args.Str("--chart");
  if (args.Has("--fasta") && args.Has("--text")) UsageError("--fasta and --text exclude each other");
  const InputFormat format = args.Has("--fasta")  ? InputFormat::kFasta
                             : args.Has("--text") ? InputFormat::kText
                                                  : InputFormat::kAuto;

  std::vector<uint64_t> contexts;
  for (const std::string& c : SplitList(args.Str("--contexts", "256,1024,4096,0"), ',')) {
    contexts.push_back(c == "all" || c == "whole" ? 0 : ParseCount(c, "--contexts"));
  }
  if (contexts.empty()) UsageError("--contexts: give at least one context length");
  for (uint64_t c : contexts) {
    if (c == 1) UsageError("--contexts 1: a piece of one token has no target (use 2 or more)");
  }
  std::vector<uint64_t> lengths;
  for (const std::string& c : SplitList(args.Str("--passkey"), ',')) {
    const uint64_t n = ParseCount(c, "--passkey");
    if (n < MM_PASSKEY_MIN_LENGTH) {
      UsageError("--passkey " + c + ": a sample needs at least " +
                 std::to_string(MM_PASSKEY_MIN_LENGTH) + " tokens");
    }
    lengths.push_back(n);
  }
  if (args.Has("--passkey") && lengths.empty()) UsageError("--passkey: give at least one length");
  std::vector<double> depths;
  for (const std::string& d : SplitList(args.Str("--depths", "0,0.25,0.5,0.75,1"), ',')) {
    char* end = nullptr;
    const double v = std::strtod(d.c_str(), &end);
    if (end == d.c_str() || *end != '\0' || !(v >= 0 && v <= 1)) {
      UsageError("--depths '" + d + "': expected numbers between 0 and 1");
    }
    depths.push_back(v);
  }
  if (depths.empty()) UsageError("--depths: give at least one depth");
  const int samples = static_cast<int>(args.U64("--samples", 5, 1, 1000000));
  const uint64_t seed = args.U64("--seed", 1);
  const std::string filler_kind = args.Str("--filler", "file");
  if (filler_kind != "file" && filler_kind != "random") {
    UsageError("--filler '" + filler_kind + "': expected file or random");
  }
  for (const char* o : {"--depths", "--samples", "--filler"}) {
    if (args.Has(o) && lengths.empty()) UsageError(std::string(o) + " needs --passkey LENGTHS");
  }

  std::string data = ExtractTokens(ReadFile(file_path), format, nullptr);
  if (data.size() > limit) data.resize(static_cast<size_t>(limit));
  if (data.size() < 2) Fail("'" + file_path + "' holds fewer than 2 tokens");
  std::vector<int32_t> tokens(data.size());
  for (size_t i = 0; i < data.size(); ++i) tokens[i] = static_cast<unsigned char>(data[i]);

  ModelHandle model;
  LoadModel(model_path, args.Threads(), &model);

  // Perplexity by context length.
  std::vector<ContextResult> results;
  for (uint64_t context : contexts) {
    if (context >= tokens.size()) {
      std::fprintf(stderr, "memmamba eval: context %s skipped: the data hold only %s tokens\n",
                   WithCommas(context).c_str(), WithCommas(tokens.size()).c_str());
      continue;
    }
    mm_eval_result r;
    Check(mm_eval_result_init(&r, sizeof r), "mm_eval_result_init");
    const double t0 = NowSeconds();
    const mm_status st =
        mm_eval_loss(model.model, tokens.data(), tokens.size(), static_cast<size_t>(context), &r);
    if (st != MM_OK) FailStatus("mm_eval_loss (context " + std::to_string(context) + ")", st,
                                mm_last_error());
    results.push_back({context, r.loss, r.perplexity, r.tokens, NowSeconds() - t0});
    std::fprintf(stderr, "memmamba eval: context %s: perplexity %.4f (%.1f s)\n",
                 context ? WithCommas(context).c_str() : "whole", r.perplexity,
                 results.back().seconds);
  }

  // Passkey retrieval.
  std::vector<std::vector<PasskeyCell>> cells(lengths.size(), std::vector<PasskeyCell>(depths.size()));
  if (!lengths.empty()) {
    mm_session* session = nullptr;
    Check(mm_session_create(&session, model.model, nullptr), "mm_session_create");
    std::vector<float> logits(model.config.vocab_size);
    const unsigned char* filler =
        filler_kind == "file" ? reinterpret_cast<const unsigned char*>(data.data()) : nullptr;
    const size_t filler_len = filler_kind == "file" ? data.size() : 0;
    for (size_t li = 0; li < lengths.size(); ++li) {
      std::vector<int32_t> sample(static_cast<size_t>(lengths[li]));
      const double t0 = NowSeconds();
      for (size_t di = 0; di < depths.size(); ++di) {
        for (int k = 0; k < samples; ++k) {
          uint64_t rng = mm_passkey_sample_seed(seed, lengths[li], depths[di],
                                                static_cast<uint64_t>(k));
          mm_passkey_build(sample.data(), sample.size(), depths[di], filler, filler_len, &rng,
                           nullptr, nullptr);
          int correct = 0, digits = 0;
          const mm_status st = mm_passkey_score(session, sample.data(), sample.size(),
                                                logits.data(), logits.size(), &correct, &digits);
          if (st != MM_OK) {
            const std::string detail = mm_session_last_error(session);
            mm_session_free(session);
            FailStatus("passkey sample", st, detail.c_str());
          }
          cells[li][di].correct += correct;
          cells[li][di].digits += digits;
          ++cells[li][di].samples;
        }
      }
      int correct = 0, total = 0;
      for (const PasskeyCell& c : cells[li]) correct += c.correct, total += c.samples;
      std::fprintf(stderr, "memmamba eval: passkey length %s: %s (%.1f s)\n",
                   WithCommas(lengths[li]).c_str(), Percent(correct, total).c_str(),
                   NowSeconds() - t0);
    }
    mm_session_free(session);
  }

  // The markdown report.
  const mm_model_config& c = model.config;
  std::string md;
  char buf[512];
  md += "# memmamba eval\n\n";
  std::snprintf(buf, sizeof buf,
                "- model: `%s` (%s parameters, d_model %u, n_layer %u, note_window %u, "
                "pool_capacity %u, fingerprint %s)\n",
                model_path.c_str(), WithCommas(mm_model_parameter_count(model.model)).c_str(),
                c.d_model, c.n_layer, c.note_window, c.pool_capacity,
                Hex64(mm_model_fingerprint(model.model)).c_str());
  md += buf;
  std::snprintf(buf, sizeof buf, "- data: `%s`, %s tokens\n\n", file_path.c_str(),
                WithCommas(tokens.size()).c_str());
  md += buf;
  if (!results.empty()) {
    md += "## Perplexity by context length\n\n"
          "The data are cut into consecutive pieces of `context` tokens, each read from an "
          "empty state (the first token of a piece is not a target).\n\n"
          "| context | targets | loss (nats) | bits/byte | perplexity |\n"
          "| ---: | ---: | ---: | ---: | ---: |\n";
    for (const ContextResult& r : results) {
      const std::string ctx = r.context ? WithCommas(r.context)
                                        : "whole (" + WithCommas(tokens.size()) + ")";
      std::snprintf(buf, sizeof buf, "| %s | %s | %.4f | %.4f | %.4f |\n", ctx.c_str(),
                    WithCommas(r.targets).c_str(), r.loss, r.loss / std::log(2.0), r.perplexity);
      md += buf;
    }
    md += "\n";
  }
  if (!lengths.empty()) {
    std::snprintf(buf, sizeof buf,
                  "## Passkey retrieval\n\n"
                  "%d samples per cell (seed %llu, filler: %s). A 5-digit key is hidden at a "
                  "depth of the filler; a sample counts when, after the query, greedy "
                  "decoding reproduces all 5 digits.\n\n",
                  samples, static_cast<unsigned long long>(seed),
                  filler_kind == "file" ? "the data" : "random letters");
    md += buf;
    md += "| length |";
    for (double d : depths) md += " depth " + Trim(d) + " |";
    md += " all depths | digits |\n| ---: |";
    for (size_t i = 0; i < depths.size(); ++i) md += " ---: |";
    md += " ---: | ---: |\n";
    for (size_t li = 0; li < lengths.size(); ++li) {
      md += "| " + WithCommas(lengths[li]) + " |";
      int correct = 0, total = 0, digits = 0;
      for (const PasskeyCell& cell : cells[li]) {
        md += " " + Percent(cell.correct, cell.samples) + " |";
        correct += cell.correct, total += cell.samples, digits += cell.digits;
      }
      std::snprintf(buf, sizeof buf, " %s | %.0f%% |\n", Percent(correct, total).c_str(),
                    total ? 100.0 * digits / (total * MM_PASSKEY_DIGITS) : 0.0);
      md += buf;
    }
    md += "\n";
  }
  std::fputs(md.c_str(), stdout);
  if (!table_path.empty()) {
    WriteFileAtomically(table_path, md);
    std::printf("table: %s\n", table_path.c_str());
  }

  if (!chart_path.empty()) {
    const int panel_w = 640, panel_h = 420;
    const int panels = (results.empty() ? 0 : 1) + (lengths.empty() ? 0 : 1);
    if (panels == 0) Fail("nothing to chart: every context was skipped");
    Canvas canvas(panel_w * panels, panel_h, {255, 255, 255});
    int x = 0;
    std::string name = model_path;
    const size_t slash = name.find_last_of('/');
    if (slash != std::string::npos) name = name.substr(slash + 1);
    if (!results.empty()) {
      ChartSpec spec;
      spec.title = "Perplexity by context length";
      spec.x_label = "context (tokens)";
      spec.y_label = "perplexity";
      Series s;
      s.name = name;
      s.color = SeriesColor(0);
      std::vector<ContextResult> sorted = results;
      auto at = [&](const ContextResult& r) {
        return static_cast<double>(r.context ? r.context : tokens.size());
      };
      std::sort(sorted.begin(), sorted.end(),
                [&](const ContextResult& a, const ContextResult& b) { return at(a) < at(b); });
      for (const ContextResult& r : sorted) {
        s.x.push_back(at(r));
        s.y.push_back(r.perplexity);
      }
      spec.series.push_back(s);
      DrawChart(&canvas, x, 0, panel_w, panel_h, spec);
      x += panel_w;
    }
    if (!lengths.empty()) {
      ChartSpec spec;
      spec.title = "Passkey accuracy by length";
      spec.x_label = "sample length (tokens)";
      spec.y_label = "accuracy";
      spec.y_percent = true;
      std::vector<size_t> order(lengths.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] < lengths[b]; });
      if (depths.size() > 1) {
        for (size_t di = 0; di < depths.size(); ++di) {
          Series s;
          s.name = "depth " + Trim(depths[di]);
          s.color = SeriesColor(di + 1);
          s.thickness = 1;
          for (size_t li : order) {
            s.x.push_back(static_cast<double>(lengths[li]));
            s.y.push_back(double(cells[li][di].correct) / cells[li][di].samples);
          }
          spec.series.push_back(s);
        }
      }
      Series all;
      all.name = depths.size() > 1 ? "all depths" : "depth " + Trim(depths[0]);
      all.color = SeriesColor(0);
      all.thickness = 3;
      for (size_t li : order) {
        int correct = 0, total = 0;
        for (const PasskeyCell& cell : cells[li]) correct += cell.correct, total += cell.samples;
        all.x.push_back(static_cast<double>(lengths[li]));
        all.y.push_back(double(correct) / total);
      }
      spec.series.push_back(all);
      DrawChart(&canvas, x, 0, panel_w, panel_h, spec);
    }
    WriteFileAtomically(chart_path, canvas.EncodePng());
    std::printf("chart: %s (%dx%d)\n", chart_path.c_str(), canvas.width(), canvas.height());
  }
  return 0;
}

const Command kEvalCommand = {
    "eval",
    "MODEL FILE [options]",
    "Perplexity by context length and passkey retrieval; a markdown table and a PNG chart.",
    "Perplexity: FILE's tokens (bytes; a FASTA file's sequence letters) are cut into "
    "consecutive pieces of each --contexts length, every piece read from an empty state "
    "(mm_eval_loss); context 0 ('whole') reads the data as one stream. Contexts not shorter "
    "than the data are skipped.\n"
    "\n"
    "Passkey retrieval (--passkey LENGTHS): for every length and depth, --samples sequences of "
    "that many tokens hide a 5-digit key (bytes 0x01, 5 digits, 0x02) at that depth of a "
    "filler (bytes of FILE from a random offset, or random letters), and end with the query "
    "0x03; a sample is correct when greedy decoding after the query reproduces all 5 digits "
    "(each predicted after the true previous ones). The format is in src/cli/passkey.h.\n"
    "\n"
    "The tables go to stdout (and --table); --chart draws perplexity against context length "
    "and accuracy against sample length (log scale), one panel each.\n"
    "\n"
    "  memmamba eval model.safetensors ce.fa --contexts 128,512,2k,0 --chart ppl.png\n"
    "  memmamba eval model.safetensors book.txt --passkey 256,1k,4k --samples 10 --table eval.md",
    {
        {"--contexts", "LIST", "Context lengths, comma-separated (4k = 4096); 0 or "
                               "'whole' = one stream (default 256,1024,4096,0)."},
        {"--limit", "N", "Use only the first N tokens of FILE."},
        {"--passkey", "LENGTHS", "Also measure passkey retrieval at these sample lengths "
                                 "(tokens, comma-separated, 1k = 1024; each at least 14)."},
        {"--depths", "LIST", "Depths of the key, fractions of the filler (default "
                             "0,0.25,0.5,0.75,1)."},
        {"--samples", "K", "Passkey samples per length and depth (default 5)."},
        {"--filler", "KIND", "Passkey filler: 'file' (bytes of FILE, default) or 'random' "
                             "(random lowercase letters)."},
        {"--seed", "S", "Seed of the passkey samples (default 1)."},
        {"--table", "OUT.md", "Write the tables as markdown to OUT.md."},
        {"--chart", "OUT.png", "Draw the results as a PNG line chart."},
        {"--fasta", nullptr, "Read FILE as FASTA (sequence letters only) even without a leading '>'."},
        {"--text", nullptr, "Read FILE as raw bytes even if it starts with '>'."},
        kThreadsOption,
    },
    2,
    2,
    RunEval,
};

}  // namespace memmamba_cli
