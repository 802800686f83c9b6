// See sample.h.
#include "runtime/sample.h"

#include <cmath>

namespace memmamba {

uint64_t SampleMix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int32_t SampleRow(const float* logits, int64_t V, float temperature, uint64_t seed, int64_t p) {
  const float t = temperature;
  const uint64_t pos = static_cast<uint64_t>(p);
  float best = 0.0f;
  int64_t at = -1;
  for (int64_t v = 0; v < V; ++v) {
    float s = logits[v];
    if (t > 0.0f) {
      const uint64_t h =
          SampleMix(seed ^ SampleMix(pos ^ SampleMix(static_cast<uint64_t>(v))));
      const float u = (static_cast<float>(h >> 40) + 0.5f) / 16777216.0f;
      s = s / t + -std::log(-std::log(u));
    }
    // Ascending v: a strictly higher score wins, so ties keep the lowest id.
    if (!std::isnan(s) && (at < 0 || s > best)) {
      best = s;
      at = v;
    }
  }
  return static_cast<int32_t>(at < 0 ? 0 : at);
}

}  // namespace memmamba
