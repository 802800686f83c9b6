// XXH64 against the reference implementation's outputs.
//
// The expected values were computed with the official xxHash library
// (libxxhash 0.8.1, Debian's libxxhash0, through XXH64() from Python
// ctypes) for the byte pattern below and for the spec's well-known inputs.
#include "common/hash.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace memmamba {
namespace {

std::string Pattern(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>((i * 131 + 7) & 255));
  return s;
}

TEST(Xxh64Test, WellKnownVectors) {
  EXPECT_EQ(Xxh64Hash("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(Xxh64Hash(nullptr, 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(Xxh64Hash("a", 1), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(Xxh64Hash("abc", 3), 0x44BC2CF5AD770999ull);
  const char* text = "Nobody inspects the spammish repetition";
  EXPECT_EQ(Xxh64Hash(text, std::strlen(text)), 0xFBCEA83C8A378BF1ull);
}

// Lengths around every branch of the algorithm: < 4, < 8, < 32 (no
// stripes), exactly one stripe, stripes plus 8/4/1-byte tails.
TEST(Xxh64Test, ReferenceLibraryVectors) {
  struct Vector {
    size_t n;
    uint64_t seed0, seed_golden;
  };
  const Vector vectors[] = {
      {0, 0xef46db3751d8e999ull, 0xc4349fc93c010000ull},
      {1, 0xa96c7f0ce858bbb7ull, 0x585882422a6165e7ull},
      {3, 0xbed43740ee6332bbull, 0x45fa1406538fa168ull},
      {4, 0xfa212ae44b3bb23dull, 0xa65107f22943365aull},
      {7, 0x2744460dd675d2c0ull, 0xc9b637e2c4599de2ull},
      {8, 0x994b676b71ce94ddull, 0xce592d5f53e192ecull},
      {15, 0x09e6451ed2ff8b1dull, 0x47a857d1f90c35e1ull},
      {31, 0x6711d55e306b5d8full, 0x24c4e99ab0404b5eull},
      {32, 0x07f7b8e3bc5d6e25ull, 0x046e99bbda1a814bull},
      {33, 0x09f85eeb4e1cbe9full, 0xd7fe2bfee6e4cdedull},
      {63, 0xb7c9968c066cb6a5ull, 0xbd457f9ea47180c8ull},
      {64, 0x50d4159a0411632eull, 0xa768f350a8e4fcf6ull},
      {100, 0x9ddada11d3dc2d8full, 0x35546bd9a4779ae4ull},
      {200, 0x3b8cc7eaa63f107eull, 0xcd5273f408a4cfbcull},
  };
  const std::string s = Pattern(200);
  for (const Vector& v : vectors) {
    EXPECT_EQ(Xxh64Hash(s.data(), v.n, 0), v.seed0) << "n=" << v.n;
    EXPECT_EQ(Xxh64Hash(s.data(), v.n, 0x9E3779B97F4A7C15ull), v.seed_golden) << "n=" << v.n;
  }
}

TEST(Xxh64Test, StreamingEqualsOneShotForAnySplit) {
  const std::string s = Pattern(1000);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = rng() % s.size();
    Xxh64 h(trial);
    size_t at = 0;
    while (at < n) {
      const size_t piece = std::min<size_t>(n - at, rng() % 70);
      h.Update(s.data() + at, piece);
      at += piece;
    }
    EXPECT_EQ(h.Digest(), Xxh64Hash(s.data(), n, trial)) << "n=" << n;
  }
}

TEST(Xxh64Test, UpdateZerosEqualsZeroBytes) {
  const std::vector<char> zeros(777, 0);
  Xxh64 h;
  h.Update("xy", 2);
  h.UpdateZeros(777);
  Xxh64 g;
  g.Update("xy", 2);
  g.Update(zeros.data(), zeros.size());
  EXPECT_EQ(h.Digest(), g.Digest());
}

}  // namespace
}  // namespace memmamba
