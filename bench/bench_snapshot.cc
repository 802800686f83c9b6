// Snapshot size and speed (DESIGN 5) for the default configuration and the
// Mamba-130m shape, with every pool full (the largest state a stream has).
//
// Targets (issue "session snapshots"):
//   size:  snapshot bytes within 5% of the raw state bytes;
//   speed: save + restore under 3x a plain memcpy of the raw state bytes.
//
// Raw state bytes (RawStateBytes in runtime/snapshot.h): what a stream's
// state minimally is, as the session holds it:
//   8 (position)
//   + per layer 4 * ((d_conv-1)*d_inner  conv
//                    + d_state*d_inner   SSM
//                    + d_model)          pending window max
//   + per note 8 (window index) + 4 (score) + 4 * summary_dim (summary).
// Nothing derived is stored: the pool reads fold the key and value
// projections into the query and the output (Backend::PoolAttendFolded).
//
// Timings (best of --reps runs each, after a warm-up; all in one process,
// so the memcpy baseline sees the same machine load):
//   memcpy   std::memcpy of raw-state-bytes between two warm buffers;
//   save     mm_session_snapshot into a warm caller buffer (serialise +
//            checksum + copy out);
//   restore  mm_session_restore into a session in use (verify + checksum +
//            copy in);
//   inspect  mm_snapshot_inspect: the verifier and checksum alone.
// The state is synthetic (random values, full pools at a realistic
// position) so that the 130m shape needs no hour-long prefill: sizes and
// times depend only on the shapes.
//
//   build/bench/bench_snapshot [--reps N] [--only default|130m]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "api/handles.h"
#include "memmamba/memmamba.h"
#include "runtime/forward.h"
#include "runtime/session.h"
#include "runtime/snapshot.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

template <typename F>
double Best(int reps, F&& f) {
  f();  // warm-up
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  return best;
}

// Fills the session with a random state of full pools.
void FillRandomState(mm_session* s, uint64_t seed) {
  const memmamba::Model& model = s->impl->model();
  const memmamba::ModelConfig& c = model.config();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  absl::Status st = s->impl->Restore([&](memmamba::StreamState* state) {
    state->Reset(c);
    const int64_t windows = 10 * c.pool_capacity + 7;
    state->position = windows * c.note_window + c.note_window / 2;
    for (int64_t l = 0; l < c.n_layer; ++l) {
      memmamba::LayerState& L = state->layers[l];
      for (float& v : L.conv) v = normal(rng);
      for (float& v : L.ssm) v = normal(rng);
      for (float& v : L.win_max) v = normal(rng);
      // One note per block, as streaming makes them.
      for (int64_t i = 0; i < c.pool_capacity; ++i) {
        auto block = memmamba::MakeNoteBlock(1, c.summary_dim);
        memmamba::PoolEntry& e = block->entries[0];
        e.window = windows - c.pool_capacity + i;
        e.score = 0.5f + 0.5f * std::abs(normal(rng)) / 4.0f;
        for (int64_t j = 0; j < c.summary_dim; ++j) block->summaries[j] = 0.1f * normal(rng);
        L.pool.push_back(memmamba::ShareNote(block, 0));
      }
    }
    return absl::OkStatus();
  });
  if (!st.ok()) {
    std::fprintf(stderr, "bench_snapshot: %s\n", std::string(st.message()).c_str());
    std::exit(1);
  }
}

void Run(const char* name, const mm_model_config& cfg, int reps) {
  mm_model_options o;
  mm_model_options_init(&o, sizeof o);
  mm_model* model = nullptr;
  auto t0 = Clock::now();
  if (mm_model_create(&model, &cfg, 1, &o) != MM_OK) {
    std::fprintf(stderr, "bench_snapshot: %s\n", mm_last_error());
    std::exit(1);
  }
  const double create_s = Seconds(t0, Clock::now());
  t0 = Clock::now();
  const uint64_t fingerprint = mm_model_fingerprint(model);
  const double fingerprint_s = Seconds(t0, Clock::now());

  mm_session *s = nullptr, *t = nullptr;
  mm_session_create(&s, model, nullptr);
  mm_session_create(&t, model, nullptr);
  FillRandomState(s, 7);
  FillRandomState(t, 8);  // the restore target is a session in use
  const uint64_t raw = memmamba::RawStateBytes(s->impl->state());
  size_t size = 0;
  mm_session_snapshot_size(s, &size);
  std::vector<unsigned char> buffer(size), src(raw, 1), dst(raw, 0);

  const double memcpy_s = Best(reps * 4, [&] {
    std::memcpy(dst.data(), src.data(), raw);
    asm volatile("" : : "r"(dst.data()) : "memory");
  });
  // glibc's memcpy switches to non-temporal stores for large copies, which
  // is slow for data that is read again soon; the same bytes copied in
  // 64 KiB pieces stay in cache. Both baselines are reported.
  const double pieces_s = Best(reps * 4, [&] {
    constexpr size_t kPiece = 64 * 1024;
    for (size_t at = 0; at < raw; at += kPiece) {
      std::memcpy(dst.data() + at, src.data() + at, std::min(kPiece, raw - at));
    }
    asm volatile("" : : "r"(dst.data()) : "memory");
  });
  size_t written = 0;
  const double save_s = Best(reps, [&] {
    if (mm_session_snapshot(s, buffer.data(), buffer.size(), &written) != MM_OK) std::abort();
  });
  const double restore_s = Best(reps, [&] {
    if (mm_session_restore(t, buffer.data(), written) != MM_OK) std::abort();
  });
  const double size_s = Best(reps, [&] { mm_session_snapshot_size(s, &size); });
  mm_snapshot_info info;
  mm_snapshot_info_init(&info, sizeof info);
  const double inspect_s = Best(reps, [&] {
    if (mm_snapshot_inspect(buffer.data(), written, &info) != MM_OK) std::abort();
  });
  const memmamba::StreamState& state = s->impl->state();
  int64_t notes = 0;
  for (const auto& L : state.layers) notes += static_cast<int64_t>(L.pool.size());

  std::printf("\n== %s: d_model %u, n_layer %u, vocab %u; %lld notes (pools full)\n", name,
              cfg.d_model, cfg.n_layer, cfg.vocab_size, static_cast<long long>(notes));
  std::printf("model create %.2f s, fingerprint (first call, %llu params) %.3f s = %016llx\n",
              create_s, static_cast<unsigned long long>(mm_model_parameter_count(model)),
              fingerprint_s, static_cast<unsigned long long>(fingerprint));
  std::printf("raw state bytes     %10llu\n", static_cast<unsigned long long>(raw));
  std::printf("snapshot bytes      %10zu  (%+.3f%% of raw; target within 5%%)\n", written,
              100.0 * (static_cast<double>(written) / raw - 1.0));
  std::printf("memcpy of raw bytes %10.1f us  (%.1f GB/s)\n", memcpy_s * 1e6, raw / memcpy_s / 1e9);
  std::printf("memcpy in 64 KiB    %10.1f us  (%.1f GB/s)\n", pieces_s * 1e6,
              raw / pieces_s / 1e9);
  std::printf("snapshot_size       %10.1f us\n", size_s * 1e6);
  std::printf("save                %10.1f us  = %5.2f x memcpy\n", save_s * 1e6, save_s / memcpy_s);
  std::printf("restore             %10.1f us  = %5.2f x memcpy\n", restore_s * 1e6,
              restore_s / memcpy_s);
  std::printf("  inspect           %10.1f us  = %5.2f x memcpy (restore's checks: verifier +\n"
              "                                   checksum, no copy)\n",
              inspect_s * 1e6, inspect_s / memcpy_s);
  std::printf("save + restore      %10.1f us  = %5.2f x memcpy (target < 3x), %.2f x memcpy "
              "in 64 KiB pieces\n",
              (save_s + restore_s) * 1e6, (save_s + restore_s) / memcpy_s,
              (save_s + restore_s) / pieces_s);
  mm_session_free(s);
  mm_session_free(t);
  mm_model_free(model);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 30;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--only default|130m]\n", argv[0]);
      return 2;
    }
  }
  if (only.empty() || only == "default") {
    mm_model_config c;
    mm_model_config_init(&c, sizeof c);
    Run("default configuration", c, reps);
  }
  if (only.empty() || only == "130m") {
    mm_model_config c;
    mm_model_config_init(&c, sizeof c);
    c.vocab_size = 50280;
    c.d_model = 768;
    c.n_layer = 24;
    Run("Mamba-130m shape", c, std::max(3, reps / 3));
  }
  return 0;
}
