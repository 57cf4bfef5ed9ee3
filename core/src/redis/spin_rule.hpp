// Whether a lone wait for a reply spins before it sleeps, shared by the I/O
// thread and blocking callers of one transport.
//
// A lone wait is a waiter with one reply due and nothing else to do (a
// sequential check). Spinning, it catches the reply without a wake-up (on
// a VM an idle vCPU's wake-up costs about as much as a loopback round
// trip), but it burns CPU for the whole wait; sleeping costs CPU too (the
// poll, the switch out and back in). A lone wait spins only while
//  - the smoothed wait of all lone waits is within spin_us: on a network
//    whose round trip is longer the spin would not catch the reply;
//  - and the spin pays: the latency it saves (the sleepers' smoothed wait
//    less the spinners') is at least the CPU it costs beyond a sleep (the
//    spinners' smoothed thread CPU per wait less the sleepers').
// One lone wait in kProbeEvery goes the other way, so that both kinds
// keep current estimates. A wait's wall time varies several-fold from one
// wait to the next on a busy host, so the estimates of each kind move by
// 1/kKindWeight per sample (and a sample counts at most twice the
// estimate); the estimate of all waits, which only has to notice a much
// longer round trip, by 1/kReachWeight. The thread CPU clock is a system
// call here, so it is read around every probe and around one other wait
// in kTimeEvery. Relaxed atomics: a lost update only nudges a heuristic.
#pragma once

#include <atomic>
#include <cstdint>

namespace tollgate::redis {

class SpinRule {
 public:
  static constexpr uint64_t kProbeEvery = 128;
  static constexpr uint64_t kTimeEvery = 8;
  static constexpr int64_t kKindWeight = 32;
  static constexpr int64_t kReachWeight = 8;

  explicit SpinRule(int64_t spin_ns) : spin_ns_(spin_ns) {}

  struct Plan {
    bool spin = false;
    bool timed = false;  // read the thread CPU clock around the wait
  };
  // The plan of the lone wait starting now.
  Plan plan();
  // A lone wait ended with its reply after `waited_ns`; `cpu_ns` is the
  // waiter's thread CPU over it, or -1 if the wait was not timed.
  void note(int64_t waited_ns, bool spun, int64_t cpu_ns);

  // The smoothed wait of all lone waits is within spin_us.
  bool in_reach() const {
    return spin_ns_ > 0 &&
           all_wait_ns_.load(std::memory_order_relaxed) <= spin_ns_;
  }
  // The spin saves at least the CPU it costs beyond a sleep (true until
  // both kinds have an estimate of both figures).
  bool worth() const;

  uint64_t spun_waits() const { return spun_waits_.load(); }
  int64_t lone_wait_us() const { return all_wait_ns_.load() / 1000; }
  struct Estimates {  // 0: no sample yet
    int64_t spun_wait_ns, spun_cpu_ns, slept_wait_ns, slept_cpu_ns;
  };
  Estimates estimates() const;

  // This thread's CPU time (CLOCK_THREAD_CPUTIME_ID), in ns.
  static int64_t thread_cpu_ns();

 private:
  struct Kind {
    std::atomic<int64_t> wait_ns{0};
    std::atomic<int64_t> cpu_ns{0};
  };
  int64_t clip(int64_t ns) const;

  const int64_t spin_ns_;
  std::atomic<int64_t> all_wait_ns_{0};
  Kind spun_;
  Kind slept_;
  std::atomic<uint64_t> lone_waits_{0};
  std::atomic<uint64_t> spun_waits_{0};
};

}  // namespace tollgate::redis
