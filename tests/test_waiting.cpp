// Waiting until allowed (docs/waiting.md): rl_check_wait sleeps a denial's
// retry_after between tries, returns at once when no wait can help or the
// wait left is too short, and rl_lease_acquire_wait steps up to a lease's
// retry hint and wakes on a release in this process. Memory and Redis.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

#include "support/handles.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

using Steady = std::chrono::steady_clock;

int64_t ms_since(Steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() -
                                                               t0)
      .count();
}

using tollgate_test::fresh_key;
using tollgate_test::health;
using tollgate_test::Limiter;
using tollgate_test::Policy;

// A limiter on `url` ("" for the memory store) whose every try reaches the
// store.
tollgate_test::LimiterConfig config(const std::string &url,
                                    int32_t failure_mode = RL_FAIL_ERROR) {
  return {.url = url, .failure_mode = failure_mode, .deny_cache = -1};
}

rl_decision wait_check(rl_limiter *lim, const std::string &key, rl_policy *p,
                       int64_t cost, int64_t max_wait_ms) {
  rl_decision d = RL_DECISION_INIT;
  const int rc =
      rl_check_wait(lim, &d, key.data(), key.size(), &p, 1, cost, max_wait_ms);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

void check_waits(const std::string &url) {
  Limiter lim(config(url));
  Policy one("1/300ms");  // GCRA: one unit every 300 ms, burst 1
  const std::string key = fresh_key("wait");

  // The first passes without waiting; the second waits about 300 ms, in
  // two tries (denied, then allowed after sleeping retry_after).
  REQUIRE(wait_check(lim.p, key, one.p, 1, 0).allowed == 1);
  const uint64_t before = health(lim.p).checks;
  auto t0 = Steady::now();
  rl_decision d = wait_check(lim.p, key, one.p, 1, 5000);
  CHECK(d.allowed == 1);
  CHECK(ms_since(t0) < 5000);
  CHECK(health(lim.p).checks - before <= 3);  // no polling in a loop

  // A wait shorter than the retry hint returns at once, denied, with the
  // hint; nothing was charged (the next full wait still passes).
  t0 = Steady::now();
  d = wait_check(lim.p, key, one.p, 1, 100);
  CHECK(d.allowed == 0);
  CHECK(d.retry_after_ms > 100);
  CHECK(ms_since(t0) < 100);
  // max_wait 0 is one try.
  CHECK(wait_check(lim.p, key, one.p, 1, 0).allowed == 0);

  // A cost no wait can satisfy: RL_RETRY_NEVER at once, even with a long
  // wait.
  t0 = Steady::now();
  d = wait_check(lim.p, key + ":big", one.p, 2, 60000);
  CHECK(d.allowed == 0);
  CHECK(d.retry_after_ms == RL_RETRY_NEVER);
  CHECK(ms_since(t0) < 1000);
}

}  // namespace

TEST_CASE("waiting: a check waits retry_after, not longer, not in a loop",
          "[waiting]") {
  SECTION("memory") {
    check_waits("");
  }
  SECTION("redis") {
    tollgate_test::RedisServer server;
    check_waits(server.url());
  }
}

TEST_CASE("waiting: bad waits are errors", "[waiting]") {
  Limiter lim;
  Policy p("10/s");
  rl_decision d = RL_DECISION_INIT;
  for (int64_t bad : {int64_t{-1}, RL_MAX_WAIT_MS + 1}) {
    CHECK(rl_check_wait(lim.p, &d, "k", 1, &p.p, 1, 1, bad) ==
          RL_E_INVALID_ARG);
    CHECK(std::string(rl_last_error()).find("max_wait_ms") !=
          std::string::npos);
    rl_lease *lease = nullptr;
    CHECK(rl_lease_acquire_wait(lim.p, "k", 1, 1, 1000, bad, &lease, nullptr) ==
          RL_E_INVALID_ARG);
    CHECK(lease == nullptr);
  }
  CHECK(rl_check_wait(nullptr, &d, "k", 1, &p.p, 1, 1, 10) == RL_E_INVALID_ARG);
  CHECK(rl_lease_acquire_wait(nullptr, "k", 1, 1, 1000, 10, nullptr, nullptr) ==
        RL_E_INVALID_ARG);
  // The check's own errors end the wait at once.
  CHECK(rl_check_wait(lim.p, &d, "", 0, &p.p, 1, 1, 1000) != RL_OK);
  rl_lease *lease = nullptr;
  CHECK(rl_lease_acquire_wait(lim.p, "k", 1, 0, 1000, 1000, &lease, nullptr) ==
        RL_E_INVALID_ARG);
}

TEST_CASE("waiting: the failure mode's denial ends a short wait at once",
          "[waiting]") {
  tollgate_test::RedisServer server;
  const std::string url = server.url();
  server.kill9();
  Limiter lim(config(url, RL_FAIL_CLOSED));
  Policy p("10/s");
  const auto t0 = Steady::now();
  rl_decision d = wait_check(lim.p, "k", p.p, 1, 200);
  CHECK(d.allowed == 0);
  CHECK(d.source == RL_SOURCE_FAIL_CLOSED);
  CHECK(ms_since(t0) < 200 + 1500);  // one connect attempt, no sleep
}

namespace {

void lease_waits(const std::string &url) {
  Limiter lim(config(url));
  const std::string key = fresh_key("lw");
  rl_lease *held = nullptr;
  rl_lease_info info = RL_LEASE_INFO_INIT;
  REQUIRE(rl_lease_acquire_wait(lim.p, key.data(), key.size(), 1, 60000, 0,
                                &held, &info) == RL_OK);
  REQUIRE(info.acquired == 1);

  // Held for a minute: a 150 ms wait ends denied, after the wait and not
  // much later.
  rl_lease *got = nullptr;
  auto t0 = Steady::now();
  REQUIRE(rl_lease_acquire_wait(lim.p, key.data(), key.size(), 1, 60000, 150,
                                &got, &info) == RL_OK);
  CHECK(info.acquired == 0);
  CHECK(got == nullptr);
  CHECK(info.retry_after_ms > 150);
  CHECK(ms_since(t0) >= 150);
  CHECK(ms_since(t0) < 150 + 1000);

  // A waiter in another thread gets the lease when this one is released.
  int waiter_rc = -1;
  rl_lease_info waiter_info = RL_LEASE_INFO_INIT;
  std::thread waiter([&] {
    waiter_rc = rl_lease_acquire_wait(lim.p, key.data(), key.size(), 1, 60000,
                                      20000, &got, &waiter_info);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  int was_held = 0;
  REQUIRE(rl_lease_release(lim.p, held, &was_held) == RL_OK);
  CHECK(was_held == 1);
  rl_lease_free(held);
  waiter.join();
  CHECK(waiter_rc == RL_OK);
  CHECK(waiter_info.acquired == 1);
  REQUIRE(got != nullptr);

  // A holder that never releases (another process, say): its lease ends
  // after its ttl and a waiter then gets one.
  rl_lease *short_lived = nullptr;
  const std::string key2 = key + ":2";
  REQUIRE(rl_lease_acquire_wait(lim.p, key2.data(), key2.size(), 1, 300, 0,
                                &short_lived, &info) == RL_OK);
  REQUIRE(info.acquired == 1);
  rl_lease *after = nullptr;
  REQUIRE(rl_lease_acquire_wait(lim.p, key2.data(), key2.size(), 1, 1000, 10000,
                                &after, &info) == RL_OK);
  CHECK(info.acquired == 1);
  REQUIRE(after != nullptr);
  REQUIRE(rl_lease_release(lim.p, got, &was_held) == RL_OK);
  REQUIRE(rl_lease_release(lim.p, after, &was_held) == RL_OK);
  rl_lease_free(got);
  rl_lease_free(after);
  rl_lease_free(short_lived);
}

}  // namespace

TEST_CASE("waiting: a lease wait steps up, it does not poll",
          "[waiting][leases][redis]") {
  // Held for a minute by another limiter (no release wakes the waiter): a
  // 700 ms wait tries at 0, 10, 30, 70, 150, 310 and 630 ms and at the end,
  // eight tries; a waiter polling every 10 ms would make about 70.
  tollgate_test::RedisServer server;
  Limiter holder(config(server.url())), waiter(config(server.url()));
  rl_lease *held = nullptr;
  rl_lease_info info = RL_LEASE_INFO_INIT;
  REQUIRE(rl_lease_acquire(holder.p, "steps", 5, 1, 60000, &held, &info) ==
          RL_OK);
  REQUIRE(info.acquired == 1);
  auto calls = [&] {
    const std::string stats = server.command({"INFO", "commandstats"});
    const size_t at = stats.find("cmdstat_evalsha:calls=");
    REQUIRE(at != std::string::npos);
    return std::stoll(stats.substr(at + 22));
  };
  const long long before = calls();
  rl_lease *got = nullptr;
  REQUIRE(rl_lease_acquire_wait(waiter.p, "steps", 5, 1, 60000, 700, &got,
                                &info) == RL_OK);
  CHECK(info.acquired == 0);
  const long long tries = calls() - before;
  CHECK(tries >= 6);
  CHECK(tries <= 9);
  int was_held = 0;
  REQUIRE(rl_lease_release(holder.p, held, &was_held) == RL_OK);
  rl_lease_free(held);
}

TEST_CASE("waiting: a lease wait ends at a release, an expiry or the wait",
          "[waiting][leases]") {
  SECTION("memory") {
    lease_waits("");
  }
  SECTION("redis") {
    tollgate_test::RedisServer server;
    lease_waits(server.url());
  }
}
