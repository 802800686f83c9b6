#include "runtime/session.h"

#include <algorithm>
#include <unordered_set>
#include <utility>
#include <vector>

namespace memmamba {

Session::Session(const Model* model, int64_t max_chunk)
    : model_(model), max_chunk_(max_chunk > 0 ? max_chunk : kDefaultMaxChunk) {
  state_.Reset(model->config());
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

  scratch_ = state_;  // reuses scratch_'s allocations
  StreamState* stream = &scratch_;
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
  std::swap(state_, scratch_);
  return absl::OkStatus();
}

absl::Status Session::Restore(absl::FunctionRef<absl::Status(StreamState*)> fill) {
  MM_RETURN_IF_ERROR(fill(&scratch_));
  std::swap(state_, scratch_);
  return absl::OkStatus();
}

absl::Status Session::StepMany(Session* const* sessions, size_t n, const int32_t* tokens,
                               float* logits, size_t capacity) {
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

  std::vector<StreamState*> streams(n);
  for (size_t i = 0; i < n; ++i) {
    sessions[i]->scratch_ = sessions[i]->state_;
    streams[i] = &sessions[i]->scratch_;
  }
  Forward(*model, streams.data(), static_cast<int64_t>(n), 1, tokens,
          logits ? LogitsMode::kLast : LogitsMode::kNone, logits, &sessions[0]->workspace_);
  for (size_t i = 0; i < n; ++i) std::swap(sessions[i]->state_, sessions[i]->scratch_);
  return absl::OkStatus();
}

}  // namespace memmamba
