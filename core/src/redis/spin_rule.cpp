#include "spin_rule.hpp"

#include <time.h>

#include <algorithm>

namespace tollgate::redis {

namespace {

// Each sample counts 1/weight; the first is taken as it is (0 means none
// yet).
void smooth(std::atomic<int64_t> &e, int64_t x, int64_t weight) {
  const int64_t v = e.load(std::memory_order_relaxed);
  e.store(v == 0 ? std::max<int64_t>(x, 1) : v + (x - v) / weight,
          std::memory_order_relaxed);
}

// The same for the estimates of one kind, where a sample counts at most
// twice the estimate: on a busy host one wait in a few dozen takes ten
// times the usual, and these estimates compare the usual waits of two
// kinds. (The estimate of all waits takes every sample whole: it must
// notice at once when the round trip grows.)
void smooth_capped(std::atomic<int64_t> &e, int64_t x) {
  const int64_t v = e.load(std::memory_order_relaxed);
  smooth(e, v == 0 ? x : std::min(x, 2 * v), SpinRule::kKindWeight);
}

}  // namespace

int64_t SpinRule::clip(int64_t ns) const {
  return std::clamp<int64_t>(ns, 0, 4 * spin_ns_);
}

bool SpinRule::worth() const {
  const Estimates e = estimates();
  if (e.spun_wait_ns == 0 || e.spun_cpu_ns == 0 || e.slept_wait_ns == 0 ||
      e.slept_cpu_ns == 0)
    return true;
  return e.slept_wait_ns - e.spun_wait_ns >= e.spun_cpu_ns - e.slept_cpu_ns;
}

SpinRule::Plan SpinRule::plan() {
  Plan p;
  if (!in_reach()) return p;
  const uint64_t n = lone_waits_.fetch_add(1, std::memory_order_relaxed);
  const bool probe = n % kProbeEvery == kProbeEvery - 1;
  p.spin = probe ? !worth() : worth();
  p.timed = probe || n % kTimeEvery == 0;
  if (p.spin) spun_waits_.fetch_add(1, std::memory_order_relaxed);
  return p;
}

void SpinRule::note(int64_t waited_ns, bool spun, int64_t cpu_ns) {
  const int64_t x = clip(waited_ns);
  smooth(all_wait_ns_, x, kReachWeight);
  Kind &k = spun ? spun_ : slept_;
  smooth_capped(k.wait_ns, x);
  if (cpu_ns >= 0) smooth_capped(k.cpu_ns, clip(cpu_ns));
}

SpinRule::Estimates SpinRule::estimates() const {
  constexpr auto r = std::memory_order_relaxed;
  return {spun_.wait_ns.load(r), spun_.cpu_ns.load(r), slept_.wait_ns.load(r),
          slept_.cpu_ns.load(r)};
}

int64_t SpinRule::thread_cpu_ns() {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return -1;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace tollgate::redis
