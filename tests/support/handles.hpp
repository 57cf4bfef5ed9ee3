// Handles of the C API that clean up after themselves, and the small
// helpers the tests of a limiter's features share (leases, waiting, shadow
// mode, allow and deny lists): a limiter on the memory store or on a
// RedisServer's url, made from named options; a parsed policy; a clock the
// test moves; a check that must succeed; the health counters; fresh keys.
//
// The failover tests' limiter (always Redis, deny cache off) is
// tollgate_test::Lim in support/prober.hpp; handles made from policy specs
// are in support/policy_specs.hpp.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tollgate.h"

namespace tollgate_test {

// A clock the test moves (rl_options.clock, memory store): microseconds
// since the Unix epoch.
struct TestClock {
  int64_t now = 1'700'000'000'000'000;

  static int64_t read(void *self) {
    return static_cast<TestClock *>(self)->now;
  }
  // Makes a limiter created with `o` read this clock.
  void use_in(rl_options &o) {
    o.clock = &TestClock::read;
    o.clock_user_data = this;
  }
};

// The options a Limiter is made with, by name:
//   Limiter lim({.url = server.url(), .failure_mode = RL_FAIL_OPEN});
// Every other field of rl_options keeps its default.
struct LimiterConfig {
  std::string url;  // "" for the memory store
  // These two are set only with a url (a network store).
  int32_t failure_mode = RL_FAIL_ERROR;
  int32_t deny_cache = 0;  // 0 the default (on), -1 off
  int32_t shadow = 0;
  uint32_t local_divisor = 0;
  uint32_t connect_timeout_ms = 200;
  uint32_t timeout_ms = 500;
  TestClock *clock = nullptr;

  // Points into `url`: valid while this config is.
  rl_options options() const {
    rl_options o = RL_OPTIONS_INIT;
    if (!url.empty()) {
      o.url = url.c_str();
      o.failure_mode = failure_mode;
      o.deny_cache = deny_cache;
    }
    o.shadow = shadow;
    o.local_divisor = local_divisor;
    o.connect_timeout_ms = connect_timeout_ms;
    o.timeout_ms = timeout_ms;
    if (clock != nullptr) clock->use_in(o);
    return o;
  }
};

// rl_create (REQUIRE'd to succeed) and rl_destroy.
struct Limiter {
  rl_limiter *p = nullptr;

  explicit Limiter(const LimiterConfig &config = {}) {
    const rl_options o = config.options();
    const int rc = rl_create(&p, &o);
    INFO("rl_create: " << rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Limiter() { rl_destroy(p); }
  Limiter(const Limiter &) = delete;
  Limiter &operator=(const Limiter &) = delete;
};

// rl_policy_parse of the whole text (REQUIRE'd to succeed) and
// rl_policy_release.
struct Policy {
  rl_policy *p = nullptr;

  explicit Policy(std::string_view text) {
    const int rc = rl_policy_parse(&p, text.data(), text.size(), nullptr);
    INFO(text << ": " << rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Policy() { rl_policy_release(p); }
  Policy(const Policy &) = delete;
  Policy &operator=(const Policy &) = delete;
};

// rl_check of one key against `policies`: the status, the decision in `d`.
inline int try_check(rl_limiter *lim, const std::string &key,
                     const std::vector<rl_policy *> &policies, rl_decision &d,
                     int64_t cost = 1) {
  d = RL_DECISION_INIT;
  return rl_check(lim, &d, key.data(), key.size(), policies.data(),
                  policies.size(), cost);
}

// The same, REQUIRE'd to succeed: the decision.
inline rl_decision check(rl_limiter *lim, const std::string &key,
                         const std::vector<rl_policy *> &policies,
                         int64_t cost = 1) {
  rl_decision d;
  const int rc = try_check(lim, key, policies, d, cost);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

// rl_health, REQUIRE'd to succeed.
inline rl_health_info health(rl_limiter *lim) {
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim, &h) == RL_OK);
  return h;
}

// A key no earlier test or run has used: "<stem>:<steady clock>:<n>".
inline std::string fresh_key(const std::string &stem) {
  static std::atomic<int> n{0};
  return stem + ":" +
         std::to_string(
             std::chrono::steady_clock::now().time_since_epoch().count()) +
         ":" + std::to_string(n++);
}

}  // namespace tollgate_test
