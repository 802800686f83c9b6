#include "common/large_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

namespace memmamba {
namespace {

TEST(LargePagesTest, LargeArraysAre2MiBAlignedAndHoldTheirValues) {
  LargeVector<float> v(kLargePageBytes / sizeof(float) + 12345);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % kLargePageBytes, 0u);
  std::iota(v.begin(), v.end(), 0.0f);
  LargeVector<float> copy = v;  // a second large allocation
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % kLargePageBytes, 0u);
  EXPECT_EQ(copy, v);
  v.resize(7);  // shrinking keeps the storage; freeing it later uses its size
  v.shrink_to_fit();
  EXPECT_EQ(v.size(), 7u);
  EXPECT_EQ(v[6], 6.0f);
}

TEST(LargePagesTest, SmallArraysUseOrdinaryAllocation) {
  LargeVector<uint16_t> v(100, 7);
  EXPECT_EQ(v.size(), 100u);
  for (uint16_t x : v) EXPECT_EQ(x, 7);
  LargeVector<uint16_t>().swap(v);
  EXPECT_TRUE(v.empty());
}

TEST(LargePagesTest, ImpossibleSizesThrowLikeOperatorNew) {
  LargePageAllocator<float> a;
  EXPECT_THROW(a.allocate(static_cast<size_t>(-1) / 2), std::bad_array_new_length);
  EXPECT_THROW(a.allocate(static_cast<size_t>(1) << 60), std::bad_alloc);
}

}  // namespace
}  // namespace memmamba
