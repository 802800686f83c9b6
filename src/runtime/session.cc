#include "runtime/session.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <unordered_set>
#include <utility>
#include <vector>

#include "runtime/device_sessions.h"

namespace memmamba {

Session::Session(const Model* model, int64_t max_chunk)
    : model_(model), max_chunk_(max_chunk > 0 ? max_chunk : kDefaultMaxChunk) {
  state_.Reset(model->config());
}

absl::StatusOr<std::unique_ptr<Session>> Session::Create(const Model* model, int64_t max_chunk) {
  std::unique_ptr<Session> s(new Session(model, max_chunk));
  if (DeviceSessions* dev = model->device_sessions()) {
    std::lock_guard<std::mutex> lock(dev->mutex());
    MM_ASSIGN_OR_RETURN(s->slot_, dev->Acquire());
  }
  return s;
}

Session::~Session() {
  if (DeviceSessions* dev = model_->device_sessions(); dev != nullptr && slot_ >= 0) {
    std::lock_guard<std::mutex> lock(dev->mutex());
    dev->Release(slot_);
  }
}

absl::Status Session::Reset() {
  if (DeviceSessions* dev = model_->device_sessions()) {
    std::lock_guard<std::mutex> lock(dev->mutex());
    MM_RETURN_IF_ERROR(dev->Reset(slot_));
  }
  state_.Reset(model_->config());
  return absl::OkStatus();
}

namespace {
void ZeroRecurrent(StreamState* state) {
  for (LayerState& layer : state->layers) {
    std::fill(layer.conv.begin(), layer.conv.end(), 0.0f);
    std::fill(layer.ssm.begin(), layer.ssm.end(), 0.0f);
  }
}
}  // namespace

absl::Status Session::ResetRecurrent() {
  if (model_->device_sessions() == nullptr) {
    ZeroRecurrent(&state_);
    return absl::OkStatus();
  }
  // On the device: the whole state down, then up again into a slot of its
  // own (Restore), so that a failure leaves the stream as it was.
  MM_RETURN_IF_ERROR(SyncState());
  return Restore([&](StreamState* s) {
    *s = state_;
    ZeroRecurrent(s);
    return absl::OkStatus();
  });
}

absl::Status Session::SyncState() {
  DeviceSessions* dev = model_->device_sessions();
  if (dev == nullptr) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(dev->mutex());
  return dev->Download(slot_, &state_);
}

int32_t Session::PoolSize(uint32_t layer) {
  if (layer >= state_.layers.size()) return -1;
  DeviceSessions* dev = model_->device_sessions();
  if (dev == nullptr) return static_cast<int32_t>(state_.layers[layer].pool.size());
  std::lock_guard<std::mutex> lock(dev->mutex());
  std::vector<int32_t> sizes;
  if (!dev->PoolSizes(slot_, &sizes).ok()) return -1;
  return sizes[layer];
}

uint64_t Session::StateBytes() {
  DeviceSessions* dev = model_->device_sessions();
  if (dev == nullptr) return state_.Bytes();
  // StreamState::Bytes() of the device's state, from its pool fill alone.
  std::vector<int32_t> sizes;
  {
    std::lock_guard<std::mutex> lock(dev->mutex());
    if (!dev->PoolSizes(slot_, &sizes).ok()) return 0;
  }
  const ModelConfig& c = model_->config();
  const uint64_t per_layer =
      sizeof(float) * static_cast<uint64_t>((c.d_conv - 1) * c.d_inner() + c.d_state * c.d_inner() +
                                            (c.memory_enabled() ? c.d_model : 0));
  const uint64_t per_note = sizeof(int64_t) + sizeof(float) + sizeof(float) * c.summary_dim;
  uint64_t bytes = sizeof(int64_t) + per_layer * static_cast<uint64_t>(c.n_layer);
  for (int32_t n : sizes) bytes += per_note * static_cast<uint64_t>(n);
  return bytes;
}

// The feed of a device session, in pieces of at most max_chunk tokens (and
// of the device's MaxRowsPerCall()).
absl::Status Session::FeedDevice(const int32_t* tokens, size_t n, LogitsMode mode,
                                 float* logits) {
  const ModelConfig& c = model_->config();
  const size_t V = static_cast<size_t>(c.vocab_size);
  DeviceSessions& dev = *model_->device_sessions();
  std::lock_guard<std::mutex> lock(dev.mutex());
  int64_t position = state_.position;
  const size_t piece = static_cast<size_t>(std::min(max_chunk_, dev.MaxRowsPerCall()));
  for (size_t done = 0; done < n;) {
    const size_t len = std::min(n - done, piece);
    const bool last_piece = done + len == n;
    LogitsMode piece_mode = LogitsMode::kNone;
    float* out = nullptr;
    if (mode == LogitsMode::kAll) {
      piece_mode = LogitsMode::kAll;
      out = logits + done * V;
    } else if (mode == LogitsMode::kLast && last_piece) {
      piece_mode = LogitsMode::kLast;
      out = logits;
    }
    MM_RETURN_IF_ERROR(dev.Forward(&slot_, &position, 1, static_cast<int64_t>(len),
                                   tokens + done, piece_mode, out));
    position += static_cast<int64_t>(len);
    state_.position = position;
    done += len;
  }
  return absl::OkStatus();
}

absl::Status Session::StepManyDevice(Session* const* sessions, size_t n, const int32_t* tokens,
                                     float* logits, const SampleOptions* sample,
                                     int32_t* next) {
  DeviceSessions& dev = *sessions[0]->model_->device_sessions();
  std::vector<int> slots(n);
  std::vector<int64_t> positions(n);
  for (size_t i = 0; i < n; ++i) {
    slots[i] = sessions[i]->slot_;
    positions[i] = sessions[i]->state_.position;
  }
  std::lock_guard<std::mutex> lock(dev.mutex());
  if (sample != nullptr) {
    MM_RETURN_IF_ERROR(dev.StepSample(slots.data(), positions.data(), static_cast<int64_t>(n),
                                      tokens, *sample, next));
  } else {
    MM_RETURN_IF_ERROR(dev.Forward(slots.data(), positions.data(), static_cast<int64_t>(n), 1,
                                   tokens, logits ? LogitsMode::kLast : LogitsMode::kNone,
                                   logits));
  }
  for (size_t i = 0; i < n; ++i) ++sessions[i]->state_.position;
  return absl::OkStatus();
}

absl::Status Session::CheckTokens(const int32_t* tokens, size_t n) const {
  const int64_t V = model_->config().vocab_size;
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) {
      return Errorf(ErrorCode::kTokenOutOfRange, "token ", tokens[i], " at index ", i,
                    " is outside [0, ", V, ")");
    }
  }
  return absl::OkStatus();
}

absl::Status Session::Feed(const int32_t* tokens, size_t n, LogitsMode mode, float* logits,
                           size_t capacity) {
  const size_t V = static_cast<size_t>(model_->config().vocab_size);
  if (n > 0 && tokens == nullptr) {
    return Error(ErrorCode::kInvalidArgument, "tokens is NULL with n_tokens > 0");
  }
  if (mode == LogitsMode::kLast && n == 0) {
    return Error(ErrorCode::kInvalidArgument, "MM_LOGITS_LAST needs at least one token");
  }
  if (mode == LogitsMode::kAll && n > SIZE_MAX / V) {
    return Error(ErrorCode::kInvalidArgument, "n_tokens * vocab_size overflows");
  }
  const size_t needed = mode == LogitsMode::kAll ? n * V : mode == LogitsMode::kLast ? V : 0;
  if (needed > 0 && logits == nullptr) {
    return Error(ErrorCode::kInvalidArgument, "logits is NULL but the mode asks for logits");
  }
  if (capacity < needed) {
    return Errorf(ErrorCode::kBufferTooSmall, "logits buffer holds ", capacity,
                  " floats; this call needs ", needed);
  }
  MM_RETURN_IF_ERROR(CheckTokens(tokens, n));
  if (n == 0) return absl::OkStatus();
  if (model_->device_sessions() != nullptr) return FeedDevice(tokens, n, mode, logits);

  // One block runs on the live state: Forward allocates all it needs before
  // it writes the stream, so if it throws the stream is as it was. A longer
  // feed is several Forward calls, so it works on a copy, swapped in at the
  // end (a copy a block of tokens, against one a token for short feeds).
  const bool in_place = n <= static_cast<size_t>(max_chunk_);
  if (!in_place) scratch_ = state_;  // reuses scratch_'s allocations
  StreamState* stream = in_place ? &state_ : &scratch_;
  for (size_t done = 0; done < n;) {
    const size_t len = std::min<size_t>(n - done, static_cast<size_t>(max_chunk_));
    const bool last_chunk = done + len == n;
    LogitsMode chunk_mode = LogitsMode::kNone;
    float* out = nullptr;
    if (mode == LogitsMode::kAll) {
      chunk_mode = LogitsMode::kAll;
      out = logits + done * V;
    } else if (mode == LogitsMode::kLast && last_chunk) {
      chunk_mode = LogitsMode::kLast;
      out = logits;
    }
    Forward(*model_, &stream, 1, static_cast<int64_t>(len), tokens + done, chunk_mode, out,
            &workspace_);
    done += len;
  }
  if (!in_place) std::swap(state_, scratch_);
  return absl::OkStatus();
}

absl::Status Session::Restore(absl::FunctionRef<absl::Status(StreamState*)> fill) {
  MM_RETURN_IF_ERROR(fill(&scratch_));
  if (DeviceSessions* dev = model_->device_sessions()) {
    // Into a slot of its own, which replaces the session's only once the
    // whole state is there.
    std::lock_guard<std::mutex> lock(dev->mutex());
    MM_ASSIGN_OR_RETURN(const int slot, dev->Acquire());
    if (absl::Status st = dev->Upload(slot, scratch_); !st.ok()) {
      dev->Release(slot);
      return st;
    }
    dev->Release(slot_);
    slot_ = slot;
  }
  std::swap(state_, scratch_);
  return absl::OkStatus();
}

absl::Status Session::StepMany(Session* const* sessions, size_t n, const int32_t* tokens,
                               float* logits, size_t capacity) {
  return StepManyImpl(sessions, n, tokens, logits, capacity, nullptr, nullptr);
}

absl::Status Session::StepManySample(Session* const* sessions, size_t n, const int32_t* tokens,
                                     const SampleOptions& options, int32_t* next) {
  if (!(options.temperature >= 0.0f) || !std::isfinite(options.temperature)) {
    return Errorf(ErrorCode::kInvalidArgument, "temperature ", options.temperature,
                  " is not a finite number >= 0");
  }
  if (n > 0 && next == nullptr) {
    return Error(ErrorCode::kInvalidArgument, "next_tokens is NULL");
  }
  return StepManyImpl(sessions, n, tokens, nullptr, 0, &options, next);
}

absl::Status Session::StepManyImpl(Session* const* sessions, size_t n, const int32_t* tokens,
                                   float* logits, size_t capacity, const SampleOptions* sample,
                                   int32_t* next) {
  if (n == 0) return absl::OkStatus();
  if (sessions == nullptr || tokens == nullptr) {
    return Error(ErrorCode::kInvalidArgument, "sessions or tokens is NULL");
  }
  const Model* model = sessions[0]->model_;
  std::unordered_set<const Session*> seen;
  for (size_t i = 0; i < n; ++i) {
    if (sessions[i] == nullptr) {
      return Errorf(ErrorCode::kInvalidArgument, "sessions[", i, "] is NULL");
    }
    if (sessions[i]->model_ != model) {
      return Errorf(ErrorCode::kModelMismatch, "sessions[", i,
                    "] belongs to another model than sessions[0]");
    }
    if (!seen.insert(sessions[i]).second) {
      return Errorf(ErrorCode::kInvalidArgument, "sessions[", i, "] appears twice");
    }
  }
  const size_t V = static_cast<size_t>(model->config().vocab_size);
  if (logits != nullptr && (n > SIZE_MAX / V || capacity < n * V)) {
    return Errorf(ErrorCode::kBufferTooSmall, "logits buffer holds ", capacity,
                  " floats; this call needs ", n * V);
  }
  MM_RETURN_IF_ERROR(sessions[0]->CheckTokens(tokens, n));
  if (model->device_sessions() != nullptr) {
    if (n > static_cast<size_t>(DeviceSessions::kMaxStreams)) {
      return Errorf(ErrorCode::kInvalidArgument, n,
                    " sessions in one step; a GPU model steps at most ",
                    DeviceSessions::kMaxStreams, " at once");
    }
    return StepManyDevice(sessions, n, tokens, logits, sample, next);
  }

  if (sample != nullptr) {
    if (n > SIZE_MAX / V) {
      return Errorf(ErrorCode::kInvalidArgument, n, " sessions of ", V, " logits overflow");
    }
    sessions[0]->sample_logits_.resize(n * V);
    logits = sessions[0]->sample_logits_.data();
  }
  // On the live states: Forward allocates all it needs before it writes one.
  std::vector<StreamState*> streams(n);
  for (size_t i = 0; i < n; ++i) streams[i] = &sessions[i]->state_;
  Forward(*model, streams.data(), static_cast<int64_t>(n), 1, tokens,
          logits ? LogitsMode::kLast : LogitsMode::kNone, logits, &sessions[0]->workspace_);
  if (sample != nullptr) {
    for (size_t i = 0; i < n; ++i) {
      next[i] = SampleRow(logits + i * V, static_cast<int64_t>(V), sample->temperature,
                          SeedOf(*sample, i), sessions[i]->state_.position);
    }
  }
  return absl::OkStatus();
}

}  // namespace memmamba
