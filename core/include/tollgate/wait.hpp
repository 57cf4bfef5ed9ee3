// Waiting until a check is allowed or a lease is acquired (docs/waiting.md):
// the one rule every waiting call follows, so C, Python and Node callers
// that wait the same time get the same answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "tollgate/error.hpp"

namespace tollgate {

// The longest wait a caller may ask for (ms), as for block durations.
inline constexpr int64_t kMaxWaitMs = int64_t{1} << 40;

// What one try answered.
struct WaitTry {
  bool done = false;  // allowed (or acquired): stop with this answer
  // When not done: ms until the call can pass (>= 1), or kRetryNever.
  int64_t retry_ms = 0;
};

// How a denial's retry hint is read.
enum class RetryHint {
  // The time the call will pass if nothing else charges the key (a rate
  // check): a wait shorter than it cannot succeed, so the call returns at
  // once; otherwise the waiter sleeps exactly that long between tries.
  exact,
  // The latest time a slot frees (a lease: its holders may release any
  // time before): the waiter tries again after a short step that doubles
  // each time (kFirstLeaseStepMs, ...) up to the hint, until the wait ends.
  at_most,
};

inline constexpr int64_t kFirstLeaseStepMs = 10;

using Steady = std::chrono::steady_clock;

// Tries `attempt` until it is done, its error, a retry hint of
// kRetryNever, or a hint that cannot be met within max_wait_ms (exact);
// between tries calls `sleep_until` (which may return early: a release in
// this process). max_wait_ms 0 is one try. Returns the last try's error,
// else ok (the caller keeps the last try's answer).
Errc wait_until_allowed(
    int64_t max_wait_ms, RetryHint hint,
    const std::function<Errc(WaitTry &)> &attempt,
    const std::function<void(Steady::time_point)> &sleep_until);

// Validates a wait given by a caller (0 .. kMaxWaitMs).
Errc check_max_wait(int64_t max_wait_ms);

}  // namespace tollgate
