#include "backend/cpu/scan_kernel.h"

#include "backend/cpu/scan_kernel_inl.h"

namespace memmamba::cpu {

void ScanChannelsBaseline(const ScanArgs& a, int64_t e0, int64_t e1) {
  if (a.T == 1 && a.checkpoints == nullptr) return ScanStepFrom(a, e0, e1);
  ScanRange(a, e0, e1, [&](int64_t t) { ScanPositionFrom(a, t, e0, e1); });
}

bool HaveAvx512Scan() {
#if defined(MM_CPU_AVX512_SCAN)
  static const bool have = __builtin_cpu_supports("avx512f");
  return have;
#else
  return false;
#endif
}

#if !defined(MM_CPU_AVX512_SCAN)
void ScanChannelsAvx512(const ScanArgs& a, int64_t e0, int64_t e1) {
  ScanChannelsBaseline(a, e0, e1);  // not built: never chosen
}
#endif

void ScanChannels(const ScanArgs& a, int64_t e0, int64_t e1) {
  if (HaveAvx512Scan()) {
    ScanChannelsAvx512(a, e0, e1);
  } else {
    ScanChannelsBaseline(a, e0, e1);
  }
}

}  // namespace memmamba::cpu
