// libFuzzer target for the snapshot reader (runtime/snapshot.h): any byte
// string must either be refused with a status and a message, or restore a
// state that the model can run on and that serialises back to a snapshot
// which restores again. Restoring happens onto a session of the tiny model
// below, the model the seeds were taken on, so inputs get past the
// fingerprint check and into the state code.
//
// Seeds (tests/fuzz/corpus/snapshot/) are snapshots of that model, written
// by the disabled test SnapshotFuzzSeeds.DISABLED_Write in
// tests/runtime/snapshot_test.cc:
//   MM_SNAPSHOT_FUZZ_SEEDS_OUT=tests/fuzz/corpus/snapshot build/tests/memmamba_tests \
//     --gtest_also_run_disabled_tests --gtest_filter='SnapshotFuzzSeeds.*'
// Built with the whole library by tests/fuzz/CMakeLists.txt (MM_FUZZ=ON);
// run: build-fuzz/tests/fuzz/fuzz_snapshot -max_len=8192 tests/fuzz/corpus/snapshot
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "api/handles.h"
#include "common/status.h"
#include "memmamba/memmamba.h"
#include "runtime/session.h"
#include "runtime/snapshot.h"

namespace {

// Must stay equal to TinyConfig() in tests/runtime/snapshot_test.cc.
mm_model* TinyModel() {
  mm_model_config c;
  mm_model_config_init(&c, sizeof c);
  c.vocab_size = 16;
  c.d_model = 8;
  c.n_layer = 2;
  c.d_state = 2;
  c.summary_dim = 4;
  c.attn_heads = 2;
  c.note_window = 2;
  c.pool_capacity = 3;
  c.pool_policy = MM_POOL_PRIORITY;
  c.cross_layer_period = 2;
  c.cross_layer_span = 1;
  mm_model_options o;
  mm_model_options_init(&o, sizeof o);
  o.n_threads = 1;
  mm_model* m = nullptr;
  if (mm_model_create(&m, &c, 21, &o) != MM_OK) __builtin_trap();
  return m;
}

// One input through inspection and restore (see the file comment).
void Check(const uint8_t* data, size_t size);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // As it is (almost always stopped by the checksum), then with a valid
  // checksum so that mutations reach the payload checks behind it.
  Check(data, size);
  std::string resealed(reinterpret_cast<const char*>(data), size);
  if (memmamba::ResealSnapshot(&resealed)) {
    Check(reinterpret_cast<const uint8_t*>(resealed.data()), resealed.size());
  }
  return 0;
}

namespace {

void Check(const uint8_t* data, size_t size) {
  static mm_model* model = TinyModel();
  static mm_session* session = [] {
    mm_session* s = nullptr;
    if (mm_session_create(&s, model, nullptr) != MM_OK) __builtin_trap();
    return s;
  }();
  const memmamba::Model& m = *model->impl;

  auto info = memmamba::InspectSnapshot(data, size);
  if (!info.ok() && info.status().message().empty()) __builtin_trap();

  const uint64_t position_before = mm_session_position(session);
  const mm_status st = mm_session_restore(session, data, size);
  if (st != MM_OK) {
    if (mm_session_last_error(session)[0] == '\0') __builtin_trap();
    if (mm_session_position(session) != position_before) __builtin_trap();
    return;
  }
  // Accepted: inspection agrees, the state runs and round-trips.
  if (!info.ok() || info->position != static_cast<int64_t>(mm_session_position(session))) {
    __builtin_trap();
  }
  std::string again;
  absl::Status w = memmamba::WriteSnapshot(m, session->impl->state(),
                                           [&](const uint8_t* p, size_t n) {
                                             again.assign(reinterpret_cast<const char*>(p), n);
                                             return absl::OkStatus();
                                           });
  if (!w.ok()) __builtin_trap();
  memmamba::StreamState check;
  if (!memmamba::ReadSnapshot(m, again.data(), again.size(), &check).ok()) __builtin_trap();
  const int32_t tokens[3] = {1, 7, 15};
  float logits[16];
  if (mm_session_feed(session, tokens, 3, MM_LOGITS_LAST, logits, 16) != MM_OK) __builtin_trap();
  mm_session_reset(session);
}

}  // namespace
