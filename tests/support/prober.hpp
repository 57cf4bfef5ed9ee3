// Small helpers for the failover tests (cluster, sentinel): a limiter
// handle that cleans up, a policy that never rolls over, and a Prober that
// checks one key from a thread and records what happened to every call.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "support/policy_specs.hpp"
#include "tollgate.h"

namespace tollgate_test {

struct Lim {
  rl_limiter *p = nullptr;
  // `ca`: the test CA for a TLS topology (added as ?tls_ca=).
  explicit Lim(const std::string &base, int failure_mode = RL_FAIL_ERROR,
               int timeout_ms = 1000, const std::string &ca = "") {
    const std::string url = ca.empty() ? base : base + "?tls_ca=" + ca;
    rl_options o = RL_OPTIONS_INIT;
    o.url = url.c_str();
    o.failure_mode = failure_mode;
    o.timeout_ms = timeout_ms;
    o.deny_cache = -1;  // every check reaches Redis
    const int rc = rl_create(&p, &o);
    INFO(rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
  Lim(const Lim &) = delete;
  Lim &operator=(const Lim &) = delete;
  int check(const std::string &key, const rl_policy_spec &pol, rl_decision &d) {
    d = RL_DECISION_INIT;
    return rl_check(p, &d, key.data(), key.size(), &pol, 1, 1);
  }
  rl_health_info health() {
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(p, &h) == RL_OK);
    return h;
  }
};

inline rl_policy_spec per_year(int64_t limit) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = limit;
  p.period_ms = 1'000'000'000'000;  // ~32 years: no window rolls over
  return p;
}

// Checks one key (a limit it never reaches) from a thread until finish():
// the calls that were admitted (and when each ended), the failures, the
// longest call, and when the last failure ended. Times are microseconds
// since the Prober was made.
class Prober {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int64_t kLimit = 1'000'000'000;

  Prober(const std::string &url, std::string key, int timeout_ms)
      : lim_(url, RL_FAIL_ERROR, timeout_ms), key_(std::move(key)) {
    th_ = std::thread([this] { run(); });
  }
  ~Prober() { finish(); }

  void finish() {
    stop_.store(true);
    if (th_.joinable()) th_.join();
  }
  int64_t now_us() const { return since(t0_); }
  long ok() const { return ok_.load(); }
  long failed() const { return failed_.load(); }
  int64_t longest_us() const { return longest_us_.load(); }
  int64_t last_fail_us() const { return last_fail_us_.load(); }
  Lim &limiter() { return lim_; }
  const std::string &key() const { return key_; }
  // Waits until `more` further calls were admitted (or `within` passed).
  void wait_ok(long more, std::chrono::seconds within) const {
    const long want = ok_.load() + more;
    const auto until = Clock::now() + within;
    while (ok_.load() < want && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // After finish(): admitted calls that ended within [from_us, to_us].
  long admitted_between(int64_t from_us, int64_t to_us) const {
    return static_cast<long>(
        std::count_if(admitted_at_.begin(), admitted_at_.end(),
                      [&](int64_t t) { return t >= from_us && t <= to_us; }));
  }

 private:
  static int64_t since(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() -
                                                                 t)
        .count();
  }
  void run() {
    const rl_policy_spec pol = per_year(kLimit);
    admitted_at_.reserve(1 << 20);
    while (!stop_.load()) {
      const auto s = Clock::now();
      rl_decision d;
      const int rc = lim_.check(key_, pol, d);
      const int64_t took = since(s), at = since(t0_);
      if (took > longest_us_.load()) longest_us_.store(took);
      if (rc == RL_OK && d.allowed) {
        admitted_at_.push_back(at);
        ok_.fetch_add(1);
      } else {
        failed_.fetch_add(1);
        last_fail_us_.store(at);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }

  Lim lim_;
  std::string key_;
  Clock::time_point t0_ = Clock::now();
  std::atomic<bool> stop_{false};
  std::atomic<long> ok_{0}, failed_{0};
  std::atomic<int64_t> longest_us_{0}, last_fail_us_{-1};
  std::vector<int64_t> admitted_at_;  // the worker's until finish()
  std::thread th_;
};

// How many admissions of `key` a (new) master counts now: a cost-0 check
// from a fresh limiter.
inline long counted(const std::string &url, const std::string &key,
                    const std::string &ca = "") {
  Lim a(url, RL_FAIL_ERROR, 2000, ca);
  rl_decision d = RL_DECISION_INIT;
  const rl_policy_spec pol = per_year(Prober::kLimit);
  REQUIRE(rl_check(a.p, &d, key.data(), key.size(), &pol, 1, 0) == RL_OK);
  return static_cast<long>(Prober::kLimit - d.remaining);
}

}  // namespace tollgate_test
