// rl_health on Redis while calls wait: a frozen server shows its pending
// checks in in_flight, and they all complete once it answers again.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

TEST_CASE("redis health: checks waiting on a frozen server are in flight",
          "[redis][health]") {
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = 20000;  // far beyond the test: nothing times out
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = 100;
  p.period_ms = 60000;
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "k", 1, &p, 1, 1) == RL_OK);  // connected

  server.stop();
  // counts[0]: callbacks run; counts[1]: of them, answered RL_OK.
  auto cb = [](int status, const rl_decision *, const char *, void *user) {
    auto *counts = static_cast<std::atomic<int> *>(user);
    if (status == RL_OK) counts[1].fetch_add(1);
    counts[0].fetch_add(1);
  };
  std::atomic<int> counts[2] = {0, 0};
  for (int i = 0; i < 3; ++i)
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, cb, counts) == RL_OK);
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim, &h) == RL_OK);
  CHECK(h.in_flight >= 1);
  CHECK(h.in_flight <= 3);
  CHECK(counts[0].load() == 0);

  server.cont();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (counts[0].load() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(counts[0].load() == 3);
  CHECK(counts[1].load() == 3);
  REQUIRE(rl_health(lim, &h) == RL_OK);
  CHECK(h.in_flight == 0);
  CHECK(h.checks == 4);
  CHECK(h.allowed == 4);
  rl_destroy(lim);
}
