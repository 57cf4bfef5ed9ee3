#include "tollgate/clock.hpp"

#include <time.h>

namespace tollgate {

int64_t realtime_us() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace tollgate
