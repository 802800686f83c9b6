// XXH64, the 64-bit xxHash of Yann Collet, written from its published
// specification (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md,
// "XXH64 algorithm description"). Used for the model fingerprint and the
// snapshot checksum: fast (a few bytes per cycle), well specified and
// reproducible anywhere, so a value computed on one machine can be checked
// on another. Not a cryptographic hash: it detects corruption, not forgery.
//
// Input bytes are read as little-endian 64/32-bit words whatever the host,
// so the hash of a byte string is the same on every machine.
#ifndef MEMMAMBA_COMMON_HASH_H_
#define MEMMAMBA_COMMON_HASH_H_

#include <cstddef>
#include <cstdint>

namespace memmamba {

// Streaming XXH64: Update() any number of times with pieces of the input,
// then Digest(). Splitting the input differently gives the same digest.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);

  // Appends `size` bytes (data may be NULL when size is 0).
  void Update(const void* data, size_t size);
  // Appends `size` zero bytes.
  void UpdateZeros(size_t size);
  // The hash of everything appended so far (the state is not changed).
  uint64_t Digest() const;

 private:
  uint64_t seed_;
  uint64_t acc_[4];
  uint64_t total_ = 0;      // bytes appended
  unsigned char buf_[32];  // a partial stripe
  size_t buffered_ = 0;
};

// XXH64 of one byte string.
uint64_t Xxh64Hash(const void* data, size_t size, uint64_t seed = 0);

}  // namespace memmamba

#endif  // MEMMAMBA_COMMON_HASH_H_
