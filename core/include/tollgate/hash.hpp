// A fast seeded 64-bit hash for binary keys. Each limiter picks a random
// seed, so an attacker who controls keys cannot aim them at one bucket chain
// across processes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace tollgate {

inline uint64_t hash_mix(uint64_t x) noexcept {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

inline uint64_t hash_bytes(std::string_view s, uint64_t seed) noexcept {
  constexpr uint64_t k = 0x9e3779b97f4a7c15ULL;
  const char *p = s.data();
  size_t n = s.size();
  uint64_t h = seed ^ (static_cast<uint64_t>(n) * k);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ hash_mix(w + k)) * k;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    // The n < 8 tail bytes, little-endian, as memcpy into a zeroed word
    // would give, from overlapping loads: a byte loop into a stack word
    // stalls the load that reads it back (store forwarding).
    uint64_t w;
    if (n >= 4) {
      uint32_t lo, hi;
      std::memcpy(&lo, p, 4);
      std::memcpy(&hi, p + n - 4, 4);
      w = lo | (static_cast<uint64_t>(hi) << (8 * (n - 4)));
    } else {
      const auto *b = reinterpret_cast<const unsigned char *>(p);
      w = static_cast<uint64_t>(b[0]) |
          (static_cast<uint64_t>(b[n / 2]) << (8 * (n / 2))) |
          (static_cast<uint64_t>(b[n - 1]) << (8 * (n - 1)));
    }
    h = (h ^ hash_mix(w ^ (static_cast<uint64_t>(n) << 56))) * k;
  }
  return hash_mix(h);
}

}  // namespace tollgate
