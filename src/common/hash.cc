// XXH64 (see hash.h for the specification it follows).
#include "common/hash.h"

#include <algorithm>
#include <cstring>

namespace memmamba {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ull;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ull;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian loads: one unaligned load (and a byte swap on big-endian
// hosts).
inline uint64_t Read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

inline uint32_t Read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

inline uint64_t Round(uint64_t acc, uint64_t lane) {
  acc += lane * kPrime2;
  acc = Rotl(acc, 31);
  return acc * kPrime1;
}

inline uint64_t MergeRound(uint64_t acc, uint64_t value) {
  acc ^= Round(0, value);
  return acc * kPrime1 + kPrime4;
}

// Consumes whole 32-byte stripes of [p, p + n); returns the bytes consumed.
inline size_t Stripes(uint64_t* acc, const unsigned char* p, size_t n) {
  uint64_t v0 = acc[0], v1 = acc[1], v2 = acc[2], v3 = acc[3];
  size_t done = 0;
  for (; done + 32 <= n; done += 32) {
    v0 = Round(v0, Read64(p + done));
    v1 = Round(v1, Read64(p + done + 8));
    v2 = Round(v2, Read64(p + done + 16));
    v3 = Round(v3, Read64(p + done + 24));
  }
  acc[0] = v0;
  acc[1] = v1;
  acc[2] = v2;
  acc[3] = v3;
  return done;
}

}  // namespace

Xxh64::Xxh64(uint64_t seed) : seed_(seed) {
  acc_[0] = seed + kPrime1 + kPrime2;
  acc_[1] = seed + kPrime2;
  acc_[2] = seed;
  acc_[3] = seed - kPrime1;
}

void Xxh64::Update(const void* data, size_t size) {
  if (size == 0) return;
  const unsigned char* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (buffered_ > 0) {
    const size_t take = std::min(size, 32 - buffered_);
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    size -= take;
    if (buffered_ < 32) return;
    Stripes(acc_, buf_, 32);
    buffered_ = 0;
  }
  const size_t done = Stripes(acc_, p, size);
  std::memcpy(buf_, p + done, size - done);
  buffered_ = size - done;
}

void Xxh64::UpdateZeros(size_t size) {
  static const unsigned char kZeros[256] = {};
  while (size > 0) {
    const size_t n = std::min(size, sizeof kZeros);
    Update(kZeros, n);
    size -= n;
  }
}

uint64_t Xxh64::Digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = Rotl(acc_[0], 1) + Rotl(acc_[1], 7) + Rotl(acc_[2], 12) + Rotl(acc_[3], 18);
    for (int i = 0; i < 4; ++i) h = MergeRound(h, acc_[i]);
  } else {
    h = seed_ + kPrime5;
  }
  h += total_;
  const unsigned char* p = buf_;
  size_t n = buffered_;
  for (; n >= 8; p += 8, n -= 8) {
    h ^= Round(0, Read64(p));
    h = Rotl(h, 27) * kPrime1 + kPrime4;
  }
  if (n >= 4) {
    h ^= static_cast<uint64_t>(Read32(p)) * kPrime1;
    h = Rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
    n -= 4;
  }
  for (; n > 0; ++p, --n) {
    h ^= *p * kPrime5;
    h = Rotl(h, 11) * kPrime1;
  }
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

uint64_t Xxh64Hash(const void* data, size_t size, uint64_t seed) {
  Xxh64 h(seed);
  h.Update(data, size);
  return h.Digest();
}

}  // namespace memmamba
