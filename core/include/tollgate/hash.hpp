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
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ hash_mix(w ^ (static_cast<uint64_t>(n) << 56))) * k;
  }
  return hash_mix(h);
}

}  // namespace tollgate
