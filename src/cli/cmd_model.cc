// memmamba info, memmamba snapshot inspect, memmamba import-mamba.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli.h"

namespace memmamba_cli {
namespace {

void PrintModel(const std::string& path, const mm_model* model, const char* kind) {
  const mm_model_config c = GetConfig(model);
  std::printf("%s: %s (%s)\n", kind, path.c_str(), HumanBytes(FileSize(path)).c_str());
  std::printf("  parameters      %s\n", WithCommas(mm_model_parameter_count(model)).c_str());
  std::printf("  fingerprint     %s\n", Hex64(mm_model_fingerprint(model)).c_str());
  std::printf("  shape           vocab_size %u, d_model %u, n_layer %u, d_state %u, d_conv %u, "
              "expand %u, dt_rank %u\n",
              c.vocab_size, c.d_model, c.n_layer, c.d_state, c.d_conv, c.expand, c.dt_rank);
  if (c.pool_capacity == 0) {
    std::printf("  memory          none (pool_capacity 0: plain Mamba)\n");
  } else {
    std::printf("  memory          note_window %u, summary_dim %u, pool_capacity %u (%s), "
                "note_threshold %g\n",
                c.note_window, c.summary_dim, c.pool_capacity, PolicyName(c.pool_policy),
                static_cast<double>(c.note_threshold));
    std::printf("  pool reads      attn_heads %u, gate_threshold %g, cross_layer_period %u, "
                "cross_layer_span %u, fusion %s\n",
                c.attn_heads, static_cast<double>(c.gate_threshold), c.cross_layer_period,
                c.cross_layer_span, FusionName(c.fusion));
  }
  std::printf("  embeddings      %s\n", c.tie_embeddings ? "tied (the LM head shares them)"
                                                          : "untied (own LM head)");
  mm_session* session = nullptr;
  if (mm_session_create(&session, model, nullptr) == MM_OK) {
    std::printf("  state/stream    %s (%s bytes, constant in the stream length)\n",
                HumanBytes(mm_session_state_bytes(session)).c_str(),
                WithCommas(mm_session_state_bytes(session)).c_str());
    mm_session_free(session);
  }
  std::printf("  config          %s\n", FormatConfig(c).c_str());
}

}  // namespace

bool DescribeSnapshot(const std::string& path, std::FILE* out, mm_status* status,
                      std::string* error) {
  mm_snapshot_info info;
  Check(mm_snapshot_info_init(&info, sizeof info), "mm_snapshot_info_init");
  *status = mm_snapshot_inspect_file(path.c_str(), &info);
  if (*status != MM_OK) {
    *error = mm_last_error();
    return false;
  }
  const uint64_t capacity = static_cast<uint64_t>(info.n_layer) * info.pool_capacity;
  std::fprintf(out, "snapshot: %s (%s)\n", path.c_str(), HumanBytes(FileSize(path)).c_str());
  std::fprintf(out, "  format version  %u\n", info.format_version);
  std::fprintf(out, "  position        %s tokens\n", WithCommas(info.position).c_str());
  std::fprintf(out, "  model           fingerprint %s\n", Hex64(info.model_fingerprint).c_str());
  std::fprintf(out, "  shape           n_layer %u, d_model %u, d_inner %u, d_state %u, d_conv %u\n",
               info.n_layer, info.d_model, info.d_inner, info.d_state, info.d_conv);
  std::fprintf(out, "  notes           note_window %u, summary_dim %u, pool_capacity %u (%s)\n",
               info.note_window, info.summary_dim, info.pool_capacity,
               PolicyName(info.pool_policy));
  if (capacity > 0) {
    std::fprintf(out, "  pool fill       %u/%llu notes (%.1f%%)\n", info.notes_total,
                 static_cast<unsigned long long>(capacity), 100.0 * info.notes_total / capacity);
  } else {
    std::fprintf(out, "  pool fill       no pools (plain Mamba)\n");
  }
  std::fprintf(out, "  state           %s bytes\n", WithCommas(info.state_bytes).c_str());
  return true;
}

int RunInfo(const Args& args) {
  const std::string path = args.positional[0];
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) Fail("cannot open '" + path + "': " + std::strerror(errno));
    std::fclose(f);
  }
  // A snapshot is recognised by its identifier, cheaply; an intact file
  // that fails its checksum or comes from a newer library is a snapshot too.
  mm_status snap_status;
  std::string snap_error;
  if (DescribeSnapshot(path, stdout, &snap_status, &snap_error)) return 0;
  if (snap_status == MM_ERR_CHECKSUM || snap_status == MM_ERR_VERSION) {
    FailStatus("'" + path + "' is a snapshot that cannot be read", snap_status, snap_error.c_str());
  }
  mm_model_options options;
  Check(mm_model_options_init(&options, sizeof options), "mm_model_options_init");
  options.n_threads = 1;
  mm_model* model = nullptr;
  const mm_status model_status = mm_model_load(&model, path.c_str(), &options);
  if (model_status == MM_OK) {
    try {
      PrintModel(path, model, "model");
    } catch (...) {
      mm_model_free(model);
      throw;
    }
    mm_model_free(model);
    return 0;
  }
  const std::string model_error = mm_last_error();
  // A trainer checkpoint (mm_trainer_save) holds a model plus optimizer state.
  mm_trainer* trainer = nullptr;
  if (mm_trainer_load(&trainer, path.c_str(), 1) == MM_OK) {
    const uint64_t steps = mm_trainer_step_count(trainer);
    const mm_status st = mm_trainer_export_model(trainer, nullptr, &model);
    mm_trainer_free(trainer);
    Check(st, "mm_trainer_export_model");
    try {
      PrintModel(path, model, "trainer checkpoint");
      std::printf("  optimizer steps %s\n", WithCommas(steps).c_str());
      const std::string sampler = path + ".sampler";
      if (FileExists(sampler)) std::printf("  data sampler    %s\n", sampler.c_str());
    } catch (...) {
      mm_model_free(model);
      throw;
    }
    mm_model_free(model);
    return 0;
  }
  Fail("'" + path + "' is neither a model (" + mm_status_string(model_status) + ": " +
       model_error + ") nor a snapshot (" + mm_status_string(snap_status) + ": " + snap_error +
       ") nor a trainer checkpoint");
}

int RunSnapshotInspect(const Args& args) {
  const std::string path = args.positional[0];
  mm_status status;
  std::string error;
  if (!DescribeSnapshot(path, stdout, &status, &error)) {
    FailStatus("cannot read snapshot '" + path + "'", status, error.c_str());
  }
  return 0;
}

int RunImportMamba(const Args& args) {
  const std::string checkpoint = args.positional[0];
  const std::string out_path = args.positional[1];
  mm_model_config config;
  Check(mm_model_config_init(&config, sizeof config), "mm_model_config_init");
  std::vector<std::string> keys;
  if (args.Has("--config")) ParseConfig(args.Str("--config"), &config, &keys);
  static const char* const kShapeKeys[] = {"vocab_size", "d_model", "n_layer", "d_state",
                                           "d_conv",     "expand",  "dt_rank"};
  for (const std::string& k : keys) {
    for (const char* shape_key : kShapeKeys) {
      if (k == shape_key) {
        UsageError("--config " + k + ": the Mamba shape comes from the checkpoint; only the "
                   "memory settings can be chosen");
      }
    }
  }
  if (args.Has("--window")) {
    config.note_window = static_cast<uint32_t>(args.U64("--window", 0, 1, UINT32_MAX));
  }
  if (args.Has("--capacity")) {
    config.pool_capacity = static_cast<uint32_t>(args.U64("--capacity", 0, 0, UINT32_MAX));
  }
  if (args.Has("--policy")) ParseConfig("pool_policy=" + args.Str("--policy"), &config);
  if (args.Has("--fusion")) ParseConfig("fusion=" + args.Str("--fusion"), &config);
  const uint64_t seed = args.U64("--seed", 42);
  const std::string dtype = args.Str("--dtype", "f32");
  mm_model_options options;
  Check(mm_model_options_init(&options, sizeof options), "mm_model_options_init");
  options.n_threads = args.Threads();
  if (dtype == "f32") options.weight_dtype = MM_DTYPE_F32;
  else if (dtype == "bf16") options.weight_dtype = MM_DTYPE_BF16;
  else UsageError("--dtype '" + dtype + "': expected f32 or bf16");

  if (!FileExists(checkpoint)) {
    Fail("cannot open checkpoint '" + checkpoint + "': " + std::strerror(ENOENT));
  }
  ModelHandle model;
  const mm_status st =
      mm_model_import_mamba(&model.model, checkpoint.c_str(), &config, seed, &options);
  if (st != MM_OK) FailStatus("cannot import '" + checkpoint + "'", st, mm_last_error());
  const mm_status save = mm_model_save(model.model, out_path.c_str());
  if (save != MM_OK) FailStatus("cannot save '" + out_path + "'", save, mm_last_error());
  PrintModel(out_path, model.model, "imported model");
  return 0;
}

const Command kInfoCommand = {
    "info",
    "FILE",
    "Describe a model, a snapshot or a trainer checkpoint.",
    "A model (.safetensors, as mm_model_save writes it): its configuration, parameter count, "
    "fingerprint and the state a stream of it keeps. A snapshot (as 'memmamba stream "
    "--snapshot' or mm_session_snapshot_file writes it): its position, shape, pool fill and "
    "state bytes, without needing the model. A trainer checkpoint ('memmamba train "
    "--trainer-out'): its model and optimizer step count. The kind is found by trying each.\n"
    "\n"
    "  memmamba info model.safetensors\n"
    "  memmamba info doc.mmsnap",
    {},
    1,
    1,
    RunInfo,
};

const Command kSnapshotInspectCommand = {
    "snapshot inspect",
    "SNAPSHOT",
    "Describe a snapshot: position, shape, pool fill, state bytes.",
    "Checks the snapshot completely (identifier, checksum, version, sizes) without a model. "
    "A damaged file fails with MM_ERR_CHECKSUM or MM_ERR_CORRUPT_FILE, one from a newer "
    "library with MM_ERR_VERSION.",
    {},
    1,
    1,
    RunSnapshotInspect,
};

const Command kImportMambaCommand = {
    "import-mamba",
    "CHECKPOINT OUT [options]",
    "Turn a Mamba v1 checkpoint into a MemMamba model file.",
    "CHECKPOINT is a safetensors file in the reference naming (backbone.embedding.weight or "
    "backbone.embeddings.weight, backbone.layers.{i}.norm.weight, "
    "backbone.layers.{i}.mixer.{in_proj,conv1d,x_proj,dt_proj,out_proj}.*, .A_log, .D, "
    "backbone.norm_f.weight, optional lm_head.weight). The Mamba shapes come from the "
    "checkpoint; the memory settings from the options below, and the memory weights start "
    "freshly initialised from --seed. OUT is written atomically as safetensors.\n"
    "\n"
    "  memmamba import-mamba mamba.safetensors memmamba.safetensors --window 32 --capacity 50",
    {
        {"--window", "N", "Tokens per note (note_window; default 32)."},
        {"--capacity", "N", "Notes kept per layer (pool_capacity; default 50); 0 = plain Mamba."},
        {"--policy", "P", "Pool policy: PRIORITY (keep the best-scored notes, default) or FIFO."},
        {"--fusion", "F", "How pool reads join the residual: WEIGHTED (default), RESIDUAL or GATED."},
        {"--config", "K=V,...",
         "Any other memory setting of mm_model_config, e.g. "
         "summary_dim=64,attn_heads=4,note_threshold=0.5,cross_layer_period=4 (the shape keys "
         "are refused: they come from the checkpoint)."},
        {"--seed", "N", "Seed of the fresh memory weights (default 42)."},
        {"--dtype", "T", "Weight storage of the written model: f32 (default) or bf16."},
        kThreadsOption,
    },
    2,
    2,
    RunImportMamba,
};

}  // namespace memmamba_cli
