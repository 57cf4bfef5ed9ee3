#pragma once

#include <cstdint>

namespace tollgate {

// Microseconds since the Unix epoch from CLOCK_REALTIME. Wall time (not
// monotonic) so epoch-aligned windows agree with the Redis store's TIME.
int64_t realtime_us() noexcept;

}  // namespace tollgate
