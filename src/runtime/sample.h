// The next-token choice of mm_sessions_step_sample (include/memmamba/
// memmamba.h documents the draw; kernels/sample.cu is the device twin, with
// the same integer arithmetic):
//
//   temperature == 0:  argmax_v logits[v]
//   temperature  > 0:  argmax_v (logits[v] / temperature + g(v)),
//                      g(v) = -log(-log(u)), u = ((h >> 40) + 0.5) / 2^24,
//                      h = SampleMix(seed ^ SampleMix(p ^ SampleMix(v)))
//
// with p the stream's position after its step: the Gumbel-max draw from
// softmax(logits / temperature). NaN is never chosen, ties go to the
// lowest id, a row of NaN gives 0.
#ifndef MEMMAMBA_RUNTIME_SAMPLE_H_
#define MEMMAMBA_RUNTIME_SAMPLE_H_

#include <cstddef>
#include <cstdint>

namespace memmamba {

struct SampleOptions {
  float temperature = 1.0f;  // 0: greedy
  uint64_t seed = 0;
  // A batched step's per-stream seeds (stream i draws with seeds[i]), or
  // nullptr: every stream draws with `seed`.
  const uint64_t* seeds = nullptr;
};

// Stream i's seed in a batched step.
inline uint64_t SeedOf(const SampleOptions& options, size_t i) {
  return options.seeds != nullptr ? options.seeds[i] : options.seed;
}

// The SplitMix64 step: z + 0x9e3779b97f4a7c15, then its finaliser.
uint64_t SampleMix(uint64_t z);

// The id chosen from one stream's V logits at position p, drawn with `seed`
// (options.seed and options.seeds are not read).
int32_t SampleRow(const float* logits, int64_t V, float temperature, uint64_t seed, int64_t p);

}  // namespace memmamba

#endif  // MEMMAMBA_RUNTIME_SAMPLE_H_
