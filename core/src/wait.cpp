#include "tollgate/wait.hpp"

#include <algorithm>

#include "tollgate/algorithms.hpp"

namespace tollgate {

Errc check_max_wait(int64_t max_wait_ms) {
  if (max_wait_ms < 0 || max_wait_ms > kMaxWaitMs)
    return fail(Errc::invalid_arg, "max_wait_ms: must be 0 .. 2^40 ms (got " +
                                       std::to_string(max_wait_ms) + ")");
  return Errc::ok;
}

Errc wait_until_allowed(
    int64_t max_wait_ms, RetryHint hint,
    const std::function<Errc(WaitTry &)> &attempt,
    const std::function<void(Steady::time_point)> &sleep_until) {
  const Errc bad = check_max_wait(max_wait_ms);
  if (bad != Errc::ok) return bad;
  const Steady::time_point deadline =
      Steady::now() + std::chrono::milliseconds(max_wait_ms);
  int64_t step_ms = kFirstLeaseStepMs;
  for (;;) {
    WaitTry t;
    const Errc rc = attempt(t);
    if (rc != Errc::ok || t.done || t.retry_ms == kRetryNever) return rc;
    const Steady::time_point now = Steady::now();
    if (now >= deadline) return Errc::ok;
    const int64_t left_ms =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    int64_t sleep_ms = std::max<int64_t>(1, t.retry_ms);
    if (hint == RetryHint::exact) {
      if (sleep_ms > left_ms) return Errc::ok;  // cannot pass in time
    } else {
      sleep_ms = std::min({sleep_ms, step_ms, left_ms});
      step_ms = std::min<int64_t>(step_ms * 2, kMaxWaitMs);
    }
    sleep_until(std::min(deadline, now + std::chrono::milliseconds(sleep_ms)));
  }
}

}  // namespace tollgate
