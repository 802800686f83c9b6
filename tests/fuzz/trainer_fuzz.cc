// libFuzzer target for the trainer file reader (train/trainer.h,
// mm_trainer_load): any byte string must either be refused with a status and
// a message, or give a trainer that can take a step and save itself again.
//
// Seeds (tests/fuzz/corpus/trainer/) are trainer files of the tiny model
// below, written by the disabled test TrainerFuzzSeeds.DISABLED_Write in
// tests/train/trainer_test.cc:
//   MM_TRAINER_FUZZ_SEEDS_OUT=tests/fuzz/corpus/trainer build/tests/memmamba_tests \
//     --gtest_also_run_disabled_tests --gtest_filter='TrainerFuzzSeeds.*'
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "train/trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto trainer = memmamba::Trainer::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "input", 1);
  if (!trainer.ok()) {
    if (trainer.status().message().empty()) __builtin_trap();  // errors say why
    return 0;
  }
  const memmamba::ModelConfig& c = (*trainer)->config();
  // A loaded trainer is usable: one step on a short batch (bounded work: the
  // file had to hold every weight, so the model is small).
  if (c.d_model * c.n_layer > 4096) return 0;
  std::vector<int32_t> tokens(8);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i % c.vocab_size);
  memmamba::Batch b;
  b.tokens = tokens.data();
  b.B = 1;
  b.T = static_cast<int64_t>(tokens.size());
  memmamba::StepResult r;
  absl::Status s = (*trainer)->Step(b, &r);
  if (!s.ok() && s.message().empty()) __builtin_trap();
  return 0;
}
