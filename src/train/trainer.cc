#include "train/trainer.h"

#include <cmath>
#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "backend/cpu/bf16.h"
#include "model/safetensors.h"
#include "train/cuda_train.h"

namespace memmamba {
namespace {

constexpr char kFormatKey[] = "memmamba.trainer";
constexpr char kFormatVersion[] = "1";

float* Data(const ParamRef& p) {
  return p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
}

std::string FloatText(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));  // round-trips a float
  return buf;
}

// Widens every bf16 matrix of `w` to f32.
void WidenToF32(const ModelConfig& c, ModelWeights* w) {
  for (const ParamRef& p : ListParams(c, w)) {
    if (p.matrix == nullptr || !p.matrix->is_bf16()) continue;
    p.matrix->f32.resize(p.matrix->bf16.size());
    cpu::ConvertBf16ToF32(p.matrix->bf16.data(), p.matrix->f32.data(), p.matrix->bf16.size());
    LargeVector<uint16_t>().swap(p.matrix->bf16);
  }
}

}  // namespace

absl::Status TrainerOptions::Validate() const {
  if (!(learning_rate > 0.0f) || !std::isfinite(learning_rate)) {
    return Errorf(ErrorCode::kInvalidArgument, "learning_rate ", learning_rate,
                  " must be finite and > 0");
  }
  if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f)) {
    return Errorf(ErrorCode::kInvalidArgument, "betas (", beta1, ", ", beta2,
                  ") must lie in [0, 1)");
  }
  if (!(eps > 0.0f) || !std::isfinite(eps)) {
    return Errorf(ErrorCode::kInvalidArgument, "eps ", eps, " must be finite and > 0");
  }
  if (!(weight_decay >= 0.0f) || !std::isfinite(weight_decay)) {
    return Errorf(ErrorCode::kInvalidArgument, "weight_decay ", weight_decay,
                  " must be finite and >= 0");
  }
  if (!(grad_clip >= 0.0f) || !std::isfinite(grad_clip)) {
    return Errorf(ErrorCode::kInvalidArgument, "grad_clip ", grad_clip,
                  " must be finite and >= 0 (0 = off)");
  }
  if (accum_steps < 1 || accum_steps > (int64_t{1} << 30)) {
    return Errorf(ErrorCode::kInvalidArgument, "accum_steps ", accum_steps, " must be >= 1");
  }
  if (n_threads < 0) {
    return Errorf(ErrorCode::kInvalidArgument, "n_threads ", n_threads, " must be >= 0");
  }
  return absl::OkStatus();
}

Trainer::Trainer() = default;

// The factor applied to the summed gradient of an update: 1/accum_steps,
// times the clip factor; *norm = the global norm of the mean gradient.
float Trainer::GradientScale(double sum_squares, double* norm) const {
  const double inv_accum = 1.0 / static_cast<double>(options_.accum_steps);
  *norm = std::sqrt(sum_squares) * inv_accum;
  const double clip = options_.grad_clip > 0.0f && *norm > options_.grad_clip
                          ? options_.grad_clip / *norm
                          : 1.0;
  return static_cast<float>(inv_accum * clip);
}
Trainer::~Trainer() = default;

std::string Trainer::device_name() const { return device_ ? device_->device_name() : ""; }

absl::Status Trainer::AttachDevice() {
  MM_ASSIGN_OR_RETURN(device_,
                      CudaTrainState::Create(model_.get(), params_, options_.accum_steps > 1,
                                                   /*device=*/0, options_.tf32));
  return device_->Upload(m_, v_, accum_);
}

absl::Status Trainer::JoinDataParallel(const DataParallelOptions& o) {
  if (!device_) {
    return Error(ErrorCode::kUnsupported,
                 "data-parallel training needs a trainer on the GPU (MM_DEVICE_CUDA)");
  }
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size || o.nccl_id == nullptr) {
    return Errorf(ErrorCode::kInvalidArgument, "data-parallel group: rank ", o.rank,
                  " of world size ", o.world_size, o.nccl_id ? "" : ", no NCCL id");
  }
  if (device_->in_group()) {
    return Error(ErrorCode::kInvalidArgument, "the trainer is already in a data-parallel group");
  }
  if (accum_count_ != 0) {
    return Errorf(ErrorCode::kInvalidArgument, "join between updates: ", accum_count_, " of ",
                  options_.accum_steps, " calls of the current accumulation are done");
  }
  const int ordinal = o.device < 0 ? o.rank : o.device;
  if (ordinal != device_->device()) {
    MM_RETURN_IF_ERROR(SyncHost());
    MM_ASSIGN_OR_RETURN(auto moved, CudaTrainState::Create(model_.get(), params_,
                                                           options_.accum_steps > 1, ordinal,
                                                           options_.tf32));
    MM_RETURN_IF_ERROR(moved->Upload(m_, v_, accum_));
    device_ = std::move(moved);
  }
  MM_RETURN_IF_ERROR(device_->JoinGroup(o.world_size, o.rank, o.nccl_id));
  double step = o.rank == 0 ? static_cast<double>(step_) : 0.0;
  MM_RETURN_IF_ERROR(device_->AllReduce(&step, 1));
  step_ = static_cast<int64_t>(step);
  host_stale_ = true;
  return absl::OkStatus();
}

int Trainer::world_size() const { return device_ ? device_->world_size() : 1; }

absl::Status Trainer::SyncHost() const {
  if (!device_ || !host_stale_) return absl::OkStatus();
  MM_RETURN_IF_ERROR(
      device_->Download(model_->mutable_weights_for_training(), &m_, &v_, &accum_));
  host_stale_ = false;
  return absl::OkStatus();
}

void Trainer::Allocate() {
  params_ = ListParams(model_->config(), model_->mutable_weights_for_training());
  m_.assign(params_.size(), {});
  v_.assign(params_.size(), {});
  accum_.assign(params_.size(), {});
  for (size_t i = 0; i < params_.size(); ++i) {
    m_[i].assign(params_[i].numel(), 0.0f);
    v_[i].assign(params_[i].numel(), 0.0f);
    if (options_.accum_steps > 1) accum_[i].assign(params_[i].numel(), 0.0f);
  }
  keep_fraction_.assign(model_->config().n_layer, 0.0f);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const Model& init,
                                                         const TrainerOptions& options) {
  MM_RETURN_IF_ERROR(options.Validate());
  ModelWeights weights = init.weights();
  WidenToF32(init.config(), &weights);
  ModelOptions mo;
  mo.n_threads = options.n_threads;
  MM_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                      Model::FromWeights(init.config(), std::move(weights), mo));
  std::unique_ptr<Trainer> t(new Trainer());
  t->model_ = std::move(model);
  t->options_ = options;
  t->Allocate();
  if (options.cuda) MM_RETURN_IF_ERROR(t->AttachDevice());
  return t;
}

absl::Status Trainer::SetLearningRate(float lr) {
  TrainerOptions o = options_;
  o.learning_rate = lr;
  MM_RETURN_IF_ERROR(o.Validate());
  options_.learning_rate = lr;
  return absl::OkStatus();
}

absl::Status Trainer::Step(const Batch& batch, StepResult* result) {
  absl::Status valid = CheckBatch(batch);
  if (!valid.ok() && device_ && device_->in_group()) {
    // The other ranks wait for this one in the step's collective: it takes
    // part, refusing, so that the step is refused everywhere.
    MM_RETURN_IF_ERROR(RefuseInGroup());
  }
  MM_RETURN_IF_ERROR(valid);
  return device_ ? StepOnDevice(batch, result) : StepOnHost(batch, result);
}

absl::Status Trainer::CheckBatch(const Batch& batch) const {
  const ModelConfig& c = model_->config();
  if (batch.tokens == nullptr || batch.B < 1 || batch.T < 1) {
    return Error(ErrorCode::kInvalidArgument, "tokens is NULL or the batch is empty");
  }
  if (batch.B > (int64_t{1} << 40) / batch.T) {
    return Error(ErrorCode::kInvalidArgument, "batch * seq_len is too large");
  }
  const int64_t n = batch.B * batch.T;
  for (int64_t i = 0; i < n; ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= c.vocab_size) {
      return Errorf(ErrorCode::kTokenOutOfRange, "token ", batch.tokens[i], " at index ", i,
                    " is outside [0, ", c.vocab_size, ")");
    }
  }
  if (batch.resets != nullptr && device_) {
    for (int64_t i = 0; i < n; ++i) {
      if (batch.resets[i]) {
        return Error(ErrorCode::kUnsupported,
                     "recurrent-state resets run on the CPU only, not on a GPU trainer");
      }
    }
  }
  for (int64_t b = 0; batch.initial != nullptr && b < batch.B; ++b) {
    if (batch.initial[b] == nullptr) continue;
    if (device_) {
      return Error(ErrorCode::kUnsupported,
                   "training from a stream's state runs on the CPU only, not on a GPU trainer");
    }
    absl::Status state = CheckInitialState(c, *batch.initial[b]);
    if (!state.ok()) return Errorf(CodeOf(state), "sequence ", b, ": ", state.message());
  }
  return absl::OkStatus();
}

absl::Status Trainer::StepOnHost(const Batch& batch, StepResult* result) {
  GradientOptions go;
  go.straight_through = options_.straight_through;
  go.workspace = workspace_.get();
  BatchStats stats;
  Gradients g;
  MM_RETURN_IF_ERROR(ComputeGradients(*model_, batch, go, &stats, &g));
  Backend& be = model_->backend();
  if (!std::isfinite(stats.loss())) {
    return Errorf(ErrorCode::kNonFinite, "the loss is not finite (", stats.loss(),
                  "): the step is refused and nothing changed");
  }
  double micro_sq = 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double sq = be.SumSquares(g[i].data(), static_cast<int64_t>(g[i].size()));
    if (!std::isfinite(sq)) {
      return Errorf(ErrorCode::kNonFinite, "the gradient of '", params_[i].name,
                    "' is not finite: the step is refused and nothing changed");
    }
    micro_sq += sq;
  }
  // Accepted: from here on the call succeeds.
  keep_fraction_ = stats.keep_fraction;
  const bool accumulating = options_.accum_steps > 1;
  if (accumulating) {
    for (size_t i = 0; i < g.size(); ++i) {
      float* acc = accum_[i].data();
      const float* gi = g[i].data();
      for (size_t k = 0; k < g[i].size(); ++k) acc[k] += gi[k];
    }
  }
  ++accum_count_;
  StepResult r;
  r.loss = stats.loss();
  r.tokens = stats.targets;
  if (accum_count_ < options_.accum_steps) {
    r.step = step_;
    if (result) *result = r;
    return absl::OkStatus();
  }
  // The update: gradient = Σ micro gradients / accum_steps, clipped.
  const std::vector<std::vector<float>>& total = accumulating ? accum_ : g;
  double sq = micro_sq;
  if (accumulating) {
    sq = 0.0;
    for (const auto& t : total) sq += be.SumSquares(t.data(), static_cast<int64_t>(t.size()));
  }
  double norm = 0.0;
  const float gs = GradientScale(sq, &norm);
  ++step_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& p = params_[i];
    be.AdamW(Data(p), total[i].data(), m_[i].data(), v_[i].data(), p.numel(), gs,
             options_.learning_rate, options_.beta1, options_.beta2, options_.eps,
             p.weight_decay ? options_.weight_decay : 0.0f, step_);
  }
  if (accumulating) {
    for (auto& a : accum_) std::fill(a.begin(), a.end(), 0.0f);
  }
  accum_count_ = 0;
  model_->RefreshDerivedWeights();
  r.grad_norm = norm;
  r.updated = true;
  r.step = step_;
  if (result) *result = r;
  return absl::OkStatus();
}

// The same steps as Step() on the device's state. A failure of the device
// itself (a CUDA error) after the update began cannot be rolled back; every
// check that can refuse a step runs before it.
absl::Status Trainer::StepOnDevice(const Batch& batch, StepResult* result) {
  GradientOptions go;
  go.straight_through = options_.straight_through;
  BatchStats stats;
  const absl::Status pass = device_->ComputeGradients(batch, go, &stats);
  double micro_sq = 0.0;
  StepResult r;
  if (device_->in_group()) {
    if (!pass.ok()) {
      RefuseInGroup().IgnoreError();  // reporting `pass` matters more
      return pass;
    }
    MM_RETURN_IF_ERROR(ReduceOverGroup(stats, &micro_sq, &r));
  } else {
    MM_RETURN_IF_ERROR(pass);
    if (!std::isfinite(stats.loss())) {
      return Errorf(ErrorCode::kNonFinite, "the loss is not finite (", stats.loss(),
                    "): the step is refused and nothing changed");
    }
    MM_RETURN_IF_ERROR(device_->SumSquares(/*of_accum=*/false, &micro_sq, nullptr));
    if (!std::isfinite(micro_sq)) {
      std::vector<double> per;
      MM_RETURN_IF_ERROR(device_->SumSquares(false, &micro_sq, &per));
      size_t bad = 0;
      while (bad + 1 < per.size() && std::isfinite(per[bad])) ++bad;
      return Errorf(ErrorCode::kNonFinite, "the gradient of '", params_[bad].name,
                    "' is not finite: the step is refused and nothing changed");
    }
    r.loss = stats.loss();
    r.tokens = stats.targets;
  }
  keep_fraction_ = stats.keep_fraction;
  const bool accumulating = options_.accum_steps > 1;
  if (accumulating) MM_RETURN_IF_ERROR(device_->Accumulate());
  host_stale_ = true;
  ++accum_count_;
  if (accum_count_ < options_.accum_steps) {
    r.step = step_;
    if (result) *result = r;
    return absl::OkStatus();
  }
  double sq = micro_sq;
  if (accumulating) MM_RETURN_IF_ERROR(device_->SumSquares(/*of_accum=*/true, &sq, nullptr));
  double norm = 0.0;
  const float gs = GradientScale(sq, &norm);
  ++step_;
  MM_RETURN_IF_ERROR(device_->AdamW(accumulating, gs, options_.learning_rate, options_.beta1,
                                    options_.beta2, options_.eps, options_.weight_decay, step_));
  if (accumulating) MM_RETURN_IF_ERROR(device_->ZeroAccum());
  accum_count_ = 0;
  r.grad_norm = norm;
  r.updated = true;
  r.step = step_;
  if (result) *result = r;
  return absl::OkStatus();
}

// In a data-parallel group, after this rank's gradient pass: the checks of
// every rank, then the group's gradient in place of this rank's, its Σ g²,
// and the group's loss and targets. Every rank makes the same collective
// calls in the same order whatever its own batch gave, so that a refused
// step is refused everywhere.
absl::Status Trainer::ReduceOverGroup(const BatchStats& stats, double* micro_sq,
                                      StepResult* r) {
  double local_sq = 0.0;
  const bool loss_ok = std::isfinite(stats.loss_sum);
  if (loss_ok) MM_RETURN_IF_ERROR(device_->SumSquares(/*of_accum=*/false, &local_sq, nullptr));
  const bool ok = loss_ok && std::isfinite(local_sq) && stats.targets > 0;
  // [targets, Σ loss, ranks refusing]
  double group[3] = {static_cast<double>(stats.targets), ok ? stats.loss_sum : 0.0,
                     ok ? 0.0 : 1.0};
  MM_RETURN_IF_ERROR(device_->AllReduce(group, 3));
  if (group[2] > 0) {
    return Errorf(ErrorCode::kNonFinite, group[2], " of the group's ", device_->world_size(),
                  " ranks refused the step (a bad batch, a failed pass, a non-finite loss or "
                  "gradient, or no target)",
                  ok ? "" : ", this rank among them",
                  ": the step is refused on every rank and nothing changed");
  }
  // Σ_r (targets_r / targets) · gradient_r: the gradient of the group's
  // mean loss.
  MM_RETURN_IF_ERROR(device_->AllReduceGradient(static_cast<double>(stats.targets) / group[0]));
  MM_RETURN_IF_ERROR(device_->SumSquares(/*of_accum=*/false, micro_sq, nullptr));
  r->loss = group[1] / group[0];
  r->tokens = static_cast<int64_t>(group[0]);
  return absl::OkStatus();
}

absl::Status Trainer::RefuseInGroup() {
  double group[3] = {0.0, 0.0, 1.0};  // as ReduceOverGroup: a refusing rank
  return device_->AllReduce(group, 3);
}

absl::StatusOr<std::unique_ptr<Model>> Trainer::ExportModel(const ModelOptions& options) const {
  MM_RETURN_IF_ERROR(SyncHost());
  return Model::FromWeights(model_->config(), model_->weights(), options);
}

absl::Status Trainer::Save(const std::string& path) const {
  MM_RETURN_IF_ERROR(SyncHost());
  std::vector<TensorToWrite> tensors;
  auto add = [&](std::string name, const ParamRef& p, const float* data) {
    TensorToWrite t;
    t.name = std::move(name);
    t.shape = p.shape;
    t.dtype = DType::kF32;
    t.data = data;
    t.nbytes = static_cast<size_t>(p.numel()) * sizeof(float);
    tensors.push_back(std::move(t));
  };
  for (size_t i = 0; i < params_.size(); ++i) add(params_[i].name, params_[i], Data(params_[i]));
  for (size_t i = 0; i < params_.size(); ++i) {
    add("optimizer.m." + params_[i].name, params_[i], m_[i].data());
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    add("optimizer.v." + params_[i].name, params_[i], v_[i].data());
  }
  if (accum_count_ > 0) {
    for (size_t i = 0; i < params_.size(); ++i) {
      add("optimizer.accum." + params_[i].name, params_[i], accum_[i].data());
    }
  }
  std::map<std::string, std::string> meta = model_->config().ToMetadata();
  meta[kFormatKey] = kFormatVersion;
  meta["trainer.step"] = std::to_string(step_);
  meta["trainer.accum_count"] = std::to_string(accum_count_);
  meta["trainer.accum_steps"] = std::to_string(options_.accum_steps);
  meta["trainer.learning_rate"] = FloatText(options_.learning_rate);
  meta["trainer.beta1"] = FloatText(options_.beta1);
  meta["trainer.beta2"] = FloatText(options_.beta2);
  meta["trainer.eps"] = FloatText(options_.eps);
  meta["trainer.weight_decay"] = FloatText(options_.weight_decay);
  meta["trainer.grad_clip"] = FloatText(options_.grad_clip);
  meta["trainer.straight_through"] = options_.straight_through ? "true" : "false";
  return WriteSafetensorsFile(path, tensors, meta);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Load(const std::string& path, int n_threads,
                                                       bool cuda) {
  MM_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::ReadFile(path));
  return FromFile(file, path, n_threads, cuda);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::FromBytes(std::string bytes,
                                                            const std::string& what,
                                                            int n_threads, bool cuda) {
  absl::StatusOr<SafetensorsReader> file = SafetensorsReader::FromBytes(std::move(bytes));
  if (!file.ok()) {
    return Error(CodeOf(file.status()), what + ": " + std::string(file.status().message()));
  }
  return FromFile(*file, what, n_threads, cuda);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::FromFile(const SafetensorsReader& file,
                                                           const std::string& path,
                                                           int n_threads, bool cuda) {
  const auto& meta = file.metadata();
  auto format = meta.find(kFormatKey);
  if (format == meta.end()) {
    return Errorf(ErrorCode::kCorruptFile, path,
                  ": not a trainer file (no memmamba.trainer metadata; a model file? "
                  "use mm_trainer_create on the loaded model)");
  }
  if (format->second != kFormatVersion) {
    return Errorf(ErrorCode::kCorruptFile, path, ": trainer format version '", format->second,
                  "' is not supported");
  }
  std::map<std::string, std::string> config_meta;
  for (const auto& [k, v] : meta) {
    if (k.rfind("trainer.", 0) != 0 && k != kFormatKey) config_meta[k] = v;
  }
  MM_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromMetadata(config_meta));
  MM_RETURN_IF_ERROR(config.Resolve());
  auto text = [&](const char* key) -> absl::StatusOr<std::string> {
    auto it = meta.find(key);
    if (it == meta.end()) return Errorf(ErrorCode::kCorruptFile, path, ": metadata lacks ", key);
    return it->second;
  };
  auto get_float = [&](const char* key, float* out) -> absl::Status {
    MM_ASSIGN_OR_RETURN(std::string s, text(key));
    if (!absl::SimpleAtof(s, out)) {
      return Errorf(ErrorCode::kCorruptFile, path, ": metadata ", key, " = '", s, "'");
    }
    return absl::OkStatus();
  };
  auto get_int = [&](const char* key, int64_t* out) -> absl::Status {
    MM_ASSIGN_OR_RETURN(std::string s, text(key));
    if (!absl::SimpleAtoi(s, out) || *out < 0) {
      return Errorf(ErrorCode::kCorruptFile, path, ": metadata ", key, " = '", s, "'");
    }
    return absl::OkStatus();
  };
  TrainerOptions o;
  int64_t step = 0, accum_count = 0;
  MM_RETURN_IF_ERROR(get_int("trainer.step", &step));
  MM_RETURN_IF_ERROR(get_int("trainer.accum_count", &accum_count));
  MM_RETURN_IF_ERROR(get_int("trainer.accum_steps", &o.accum_steps));
  MM_RETURN_IF_ERROR(get_float("trainer.learning_rate", &o.learning_rate));
  MM_RETURN_IF_ERROR(get_float("trainer.beta1", &o.beta1));
  MM_RETURN_IF_ERROR(get_float("trainer.beta2", &o.beta2));
  MM_RETURN_IF_ERROR(get_float("trainer.eps", &o.eps));
  MM_RETURN_IF_ERROR(get_float("trainer.weight_decay", &o.weight_decay));
  MM_RETURN_IF_ERROR(get_float("trainer.grad_clip", &o.grad_clip));
  MM_ASSIGN_OR_RETURN(std::string st, text("trainer.straight_through"));
  if (st != "true" && st != "false") {
    return Errorf(ErrorCode::kCorruptFile, path, ": metadata trainer.straight_through = '", st,
                  "'");
  }
  o.straight_through = st == "true";
  o.n_threads = n_threads;
  o.cuda = cuda;
  if (absl::Status s = o.Validate(); !s.ok()) {
    return Errorf(ErrorCode::kCorruptFile, path, ": ", s.message());
  }
  if (accum_count >= o.accum_steps) {
    return Errorf(ErrorCode::kCorruptFile, path, ": accum_count ", accum_count,
                  " is not below accum_steps ", o.accum_steps);
  }
  // Weights and two moments, at least 2 bytes each: a configuration the file
  // cannot back is refused before anything is allocated for it.
  if (CountParameters(config) * 3 * 2 > static_cast<double>(file.data_section_size())) {
    return Errorf(ErrorCode::kCorruptFile, path, ": the configuration needs ",
                  CountParameters(config), " parameters; the file holds ",
                  file.data_section_size(), " bytes of tensors");
  }
  ModelWeights weights;
  AllocateWeights(config, &weights);
  for (const ParamRef& p : ListParams(config, &weights)) {
    MM_RETURN_IF_ERROR(file.ReadAsFloat(p.name, p.shape, Data(p)));
  }
  ModelOptions mo;
  mo.n_threads = n_threads;
  MM_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                      Model::FromWeights(config, std::move(weights), mo));
  std::unique_ptr<Trainer> t(new Trainer());
  t->model_ = std::move(model);
  t->options_ = o;
  t->Allocate();
  size_t expected = 3 * t->params_.size();
  for (size_t i = 0; i < t->params_.size(); ++i) {
    const ParamRef& p = t->params_[i];
    MM_RETURN_IF_ERROR(file.ReadAsFloat("optimizer.m." + p.name, p.shape, t->m_[i].data()));
    MM_RETURN_IF_ERROR(file.ReadAsFloat("optimizer.v." + p.name, p.shape, t->v_[i].data()));
    if (accum_count > 0) {
      MM_RETURN_IF_ERROR(
          file.ReadAsFloat("optimizer.accum." + p.name, p.shape, t->accum_[i].data()));
    }
    for (const std::vector<float>* v : {&t->m_[i], &t->v_[i], &t->accum_[i]}) {
      for (float x : *v) {
        if (!std::isfinite(x)) {
          return Errorf(ErrorCode::kNonFinite, path, ": optimizer state of '", p.name,
                        "' holds NaN or Inf");
        }
      }
    }
  }
  if (accum_count > 0) expected += t->params_.size();
  if (file.tensors().size() != expected) {
    return Errorf(ErrorCode::kCorruptFile, path, ": ", file.tensors().size(),
                  " tensors where this configuration has ", expected);
  }
  t->step_ = step;
  t->accum_count_ = accum_count;
  if (cuda) MM_RETURN_IF_ERROR(t->AttachDevice());
  return t;
}

}  // namespace memmamba
