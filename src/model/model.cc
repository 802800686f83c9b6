#include "model/model.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "runtime/device_sessions.h"
#include "common/hash.h"
#include "model/safetensors.h"

namespace memmamba {
namespace {

float* ParamData(const ParamRef& p) {
  return p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
}

// Appends n values of T (2, 4 or 8 bytes) as little-endian bytes.
template <typename T>
void HashLittleEndian(const T* values, size_t n, Xxh64* h) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  unsigned char buf[4096];
  size_t used = 0;
  for (size_t i = 0; i < n; ++i) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, &values[i], sizeof(T));
    for (size_t k = 0; k < sizeof(T); ++k) buf[used++] = b[sizeof(T) - 1 - k];
    if (used == sizeof buf) {
      h->Update(buf, used);
      used = 0;
    }
  }
  h->Update(buf, used);
#else
  h->Update(values, n * sizeof(T));
#endif
}

}  // namespace

Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Finish(ModelConfig config, ModelWeights weights,
                                                     const ModelOptions& options) {
  std::unique_ptr<Model> model(new Model());
  model->config_ = std::move(config);
  model->weights_ = std::move(weights);
  const ModelConfig& c = model->config_;
  MM_RETURN_IF_ERROR(CheckFinite(c, &model->weights_));
  PrepareWeights(c, &model->weights_);
  if (options.bf16_weights) ConvertMatricesToBf16(c, &model->weights_);
  // 0: OpenMP's default team size, which honours OMP_NUM_THREADS and the
  // CPUs this process may run on (taskset, container limits).
  model->n_threads_ = options.n_threads > 0 ? options.n_threads : omp_get_max_threads();
  model->options_ = options;
  model->backend_ = CreateCpuBackend(model->n_threads_);
  model->readers_.assign(c.n_layer, {});
  for (int64_t j = 0; j < c.n_layer; ++j) model->readers_[j].push_back(j);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (!c.HasCrossLayerRead(l)) continue;
    for (int64_t j = c.CrossLayerBegin(l); j < l; ++j) model->readers_[j].push_back(l);
  }
  // kUnsupported without the CUDA backend, kNoDevice without a GPU.
  if (options.cuda) {
    MM_ASSIGN_OR_RETURN(model->device_, DeviceSessions::Create(*model));
  }
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> Model::FromWeights(ModelConfig config,
                                                          ModelWeights weights,
                                                          const ModelOptions& options) {
  MM_RETURN_IF_ERROR(config.Resolve());
  return Finish(std::move(config), std::move(weights), options);
}

uint64_t Model::Fingerprint() const {
  std::call_once(fingerprint_once_, [this] {
    Xxh64 h(0);
    const std::string tag = "memmamba model fingerprint v1\n";
    h.Update(tag.data(), tag.size());
    for (const auto& [key, value] : config_.ToMetadata()) {
      const std::string line = key + "=" + value + "\n";
      h.Update(line.data(), line.size());
    }
    ModelWeights& w = const_cast<ModelWeights&>(weights_);  // ListParams only reads here
    for (const ParamRef& p : ListParams(config_, &w)) {
      h.Update(p.name.c_str(), p.name.size() + 1);  // with the NUL
      const bool bf16 = p.matrix && p.matrix->is_bf16();
      h.Update(bf16 ? "b" : "f", 1);
      const int64_t rank = static_cast<int64_t>(p.shape.size());
      HashLittleEndian(&rank, 1, &h);
      HashLittleEndian(p.shape.data(), p.shape.size(), &h);
      if (bf16) {
        HashLittleEndian(p.matrix->bf16.data(), p.matrix->bf16.size(), &h);
      } else {
        HashLittleEndian(ParamData(p), static_cast<size_t>(p.numel()), &h);
      }
    }
    fingerprint_ = h.Digest();
  });
  return fingerprint_;
}

uint64_t Model::ParameterCount() const {
  uint64_t n = 0;
  ModelWeights& w = const_cast<ModelWeights&>(weights_);  // ListParams only reads here
  for (const ParamRef& p : ListParams(config_, &w)) n += static_cast<uint64_t>(p.numel());
  return n;
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(ModelConfig config, uint64_t seed,
                                                     const ModelOptions& options) {
  MM_RETURN_IF_ERROR(config.Resolve());
  ModelWeights weights;
  AllocateWeights(config, &weights);
  InitializeWeights(config, seed, [](const ParamRef&) { return true; }, &weights);
  return Finish(std::move(config), std::move(weights), options);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path,
                                                   const ModelOptions& options) {
  MM_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::ReadFile(path));
  MM_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromMetadata(file.metadata()));
  // Every parameter takes at least 2 bytes (bf16): a configuration larger
  // than the file can back is refused before anything is allocated for it.
  if (CountParameters(config) * 2 > static_cast<double>(file.data_section_size())) {
    return Errorf(ErrorCode::kCorruptFile, path, ": the configuration needs ",
                  CountParameters(config), " parameters; the file holds ",
                  file.data_section_size(), " bytes of tensors");
  }
  ModelWeights weights;
  AllocateWeights(config, &weights);
  std::set<std::string> expected;
  for (const ParamRef& p : ListParams(config, &weights)) {
    expected.insert(p.name);
    if (file.Find(p.name) == nullptr) {
      return Errorf(ErrorCode::kTensorMissing, path, ": tensor '", p.name, "' is missing");
    }
    MM_RETURN_IF_ERROR(file.ReadAsFloat(p.name, p.shape, ParamData(p)));
  }
  for (const TensorInfo& t : file.tensors()) {
    if (!expected.count(t.name)) {
      return Errorf(ErrorCode::kCorruptFile, path, ": unexpected tensor '", t.name,
                    "' for this configuration");
    }
  }
  return Finish(std::move(config), std::move(weights), options);
}

absl::Status Model::Save(const std::string& path) const {
  ModelWeights& w = const_cast<ModelWeights&>(weights_);  // ListParams only reads here
  std::vector<TensorToWrite> tensors;
  for (const ParamRef& p : ListParams(config_, &w)) {
    TensorToWrite t;
    t.name = p.name;
    t.shape = p.shape;
    if (p.matrix && p.matrix->is_bf16()) {
      t.dtype = DType::kBF16;
      t.data = p.matrix->bf16.data();
      t.nbytes = p.matrix->bf16.size() * sizeof(uint16_t);
    } else {
      t.dtype = DType::kF32;
      t.data = ParamData(p);
      t.nbytes = static_cast<size_t>(p.numel()) * sizeof(float);
    }
    tensors.push_back(std::move(t));
  }
  MM_ASSIGN_OR_RETURN(std::string bytes, SerializeSafetensors(tensors, config_.ToMetadata()));
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<std::unique_ptr<Model>> Model::ImportMamba(const std::string& path,
                                                          const ModelConfig& memory_config,
                                                          uint64_t seed,
                                                          const ModelOptions& options) {
  MM_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::ReadFile(path));
  auto require = [&](const std::string& name) -> absl::StatusOr<const TensorInfo*> {
    const TensorInfo* t = file.Find(name);
    if (t == nullptr) {
      return Errorf(ErrorCode::kTensorMissing, path, ": Mamba checkpoint lacks '", name, "'");
    }
    return t;
  };
  std::string embedding_name = "backbone.embedding.weight";
  if (!file.Find(embedding_name)) embedding_name = "backbone.embeddings.weight";
  MM_ASSIGN_OR_RETURN(const TensorInfo* emb, require(embedding_name));
  // Layers: one more than the highest index any tensor names, so a missing
  // tensor of any layer is reported rather than the layer silently dropped.
  int64_t n_layer = 0;
  for (const TensorInfo& t : file.tensors()) {
    constexpr absl::string_view kPrefix = "backbone.layers.";
    if (!absl::StartsWith(t.name, kPrefix)) continue;
    absl::string_view rest = absl::string_view(t.name).substr(kPrefix.size());
    int64_t index = 0;
    if (!absl::SimpleAtoi(rest.substr(0, rest.find('.')), &index) || index < 0 ||
        index >= 4096) {
      return Errorf(ErrorCode::kCorruptFile, path, ": unexpected tensor name '", t.name, "'");
    }
    n_layer = std::max(n_layer, index + 1);
  }
  const std::string l0 = "backbone.layers.0.mixer.";
  MM_ASSIGN_OR_RETURN(const TensorInfo* in_proj, require(l0 + "in_proj.weight"));
  MM_ASSIGN_OR_RETURN(const TensorInfo* a_log, require(l0 + "A_log"));
  MM_ASSIGN_OR_RETURN(const TensorInfo* conv, require(l0 + "conv1d.weight"));
  MM_ASSIGN_OR_RETURN(const TensorInfo* dt_proj, require(l0 + "dt_proj.weight"));
  if (emb->shape.size() != 2 || in_proj->shape.size() != 2 || a_log->shape.size() != 2 ||
      dt_proj->shape.size() != 2 || (conv->shape.size() != 2 && conv->shape.size() != 3)) {
    return Errorf(ErrorCode::kTensorShape, path,
                  ": Mamba checkpoint tensors do not have the reference ranks");
  }
  ModelConfig c = memory_config;
  c.vocab_size = emb->shape[0];
  c.d_model = emb->shape[1];
  c.n_layer = n_layer;
  c.d_state = a_log->shape[1];
  c.d_conv = conv->shape.back();
  c.dt_rank = dt_proj->shape[1];
  const int64_t E = in_proj->shape[0] / 2;
  if (c.d_model <= 0 || E % c.d_model != 0) {
    return Errorf(ErrorCode::kTensorShape, path, ": in_proj rows ", in_proj->shape[0],
                  " are not 2·expand·d_model for d_model ", c.d_model);
  }
  c.expand = E / c.d_model;
  const TensorInfo* head = file.Find("lm_head.weight");
  c.tie_embeddings = true;
  if (head && (head->nbytes != emb->nbytes || head->dtype != emb->dtype ||
               std::memcmp(file.data(*head), file.data(*emb), emb->nbytes) != 0)) {
    c.tie_embeddings = false;
  }
  MM_RETURN_IF_ERROR(c.Resolve());
  ModelWeights weights;
  AllocateWeights(c, &weights);
  // Memory parts (and anything the checkpoint does not hold) start fresh.
  InitializeWeights(c, seed, [](const ParamRef& p) { return p.memory; }, &weights);
  for (const ParamRef& p : ListParams(c, &weights)) {
    if (p.memory) continue;
    std::string name;
    if (p.name == "embedding.weight") {
      name = embedding_name;
    } else if (p.name == "lm_head.weight") {
      name = "lm_head.weight";
    } else {
      name = "backbone." + p.name;
    }
    MM_ASSIGN_OR_RETURN(const TensorInfo* t, require(name));
    std::vector<int64_t> shape = p.shape;
    if (absl::EndsWith(p.name, "conv1d.weight") && t->shape.size() == 3) {
      shape = {p.shape[0], 1, p.shape[1]};  // the reference stores [E, 1, K]
    }
    MM_RETURN_IF_ERROR(file.ReadAsFloat(name, shape, ParamData(p)));
  }
  for (const TensorInfo& t : file.tensors()) {
    if (absl::EndsWith(t.name, "in_proj.bias") || absl::EndsWith(t.name, "out_proj.bias")) {
      return Errorf(ErrorCode::kUnsupported, path, ": '", t.name,
                    "': Mamba checkpoints with projection biases are not supported");
    }
  }
  return Finish(std::move(c), std::move(weights), options);
}

}  // namespace memmamba
