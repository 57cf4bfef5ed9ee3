// realtime_us() is inline in clock.hpp (it is on every check's hot path);
// this unit only checks that the header stands alone.
#include "tollgate/clock.hpp"
