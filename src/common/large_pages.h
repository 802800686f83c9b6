// Storage for large read-mostly arrays (the model's weight matrices) on
// transparent huge pages where the system offers them.
//
// Decode streams every weight once per token. With 4 KiB pages the
// hardware prefetchers stop at each page boundary and every 4 KiB costs a
// TLB walk; 2 MiB pages remove both (measured: +8-9 % read bandwidth on the
// development machine, bench/RESULTS.md). Linux grants huge pages to a
// range only when asked (THP "madvise", a common default) and only to
// 2 MiB-aligned parts of it that are not yet touched, so an allocation of
// at least kLargePageBytes is aligned to 2 MiB and advised before anything
// writes it. The advice is best effort: where it is refused or unknown the
// memory is ordinary memory. Nothing else changes: no rounding of sizes
// (the tail below the last 2 MiB boundary keeps small pages), no locking,
// no failure that ordinary allocation would not have.
#ifndef MEMMAMBA_COMMON_LARGE_PAGES_H_
#define MEMMAMBA_COMMON_LARGE_PAGES_H_

#include <cstddef>
#include <new>
#include <vector>

namespace memmamba {

inline constexpr size_t kLargePageBytes = size_t{2} << 20;

// bytes >= kLargePageBytes: 2 MiB-aligned and advised for huge pages;
// smaller: plain operator new. Throws std::bad_alloc like operator new.
void* AllocateLarge(size_t bytes);
// Frees what AllocateLarge(bytes) returned (the same `bytes`).
void FreeLarge(void* p, size_t bytes) noexcept;

// A std::allocator that places large arrays with AllocateLarge.
template <typename T>
struct LargePageAllocator {
  using value_type = T;
  LargePageAllocator() = default;
  template <typename U>
  LargePageAllocator(const LargePageAllocator<U>&) noexcept {}  // NOLINT: rebind
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(AllocateLarge(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept { FreeLarge(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const LargePageAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const LargePageAllocator<U>&) const noexcept { return false; }
};

template <typename T>
using LargeVector = std::vector<T, LargePageAllocator<T>>;

}  // namespace memmamba

#endif  // MEMMAMBA_COMMON_LARGE_PAGES_H_
