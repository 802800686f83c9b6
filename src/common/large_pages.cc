#include "common/large_pages.h"

#include <cstdlib>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace memmamba {

void* AllocateLarge(size_t bytes) {
  if (bytes < kLargePageBytes) return ::operator new(bytes);
  void* p = nullptr;
  if (posix_memalign(&p, kLargePageBytes, bytes) != 0) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Best effort: EINVAL (no THP in this kernel) leaves ordinary pages.
  madvise(p, bytes / kLargePageBytes * kLargePageBytes, MADV_HUGEPAGE);
#endif
  return p;
}

void FreeLarge(void* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes < kLargePageBytes) {
    ::operator delete(p);
  } else {
    std::free(p);
  }
}

}  // namespace memmamba
