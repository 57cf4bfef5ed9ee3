#pragma once

#include <time.h>

#include <cstdint>

namespace tollgate {

// Microseconds since the Unix epoch from CLOCK_REALTIME. Wall time (not
// monotonic) so epoch-aligned windows agree with the Redis store's TIME.
// Inline: it is read once per check, on the hot path.
inline int64_t realtime_us() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace tollgate
