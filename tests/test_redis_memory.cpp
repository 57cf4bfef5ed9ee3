// Blocking checks on Redis leave nothing allocated behind: the heap's
// in-use bytes stay flat over many calls.
#include <malloc.h>
#include <catch2/catch.hpp>

#include <string>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;  // the sanitizers keep their own heap
#else
constexpr bool kSanitized = false;
#endif

TEST_CASE("redis memory: blocking checks do not grow the heap",
          "[redis][memory_use]") {
  if (kSanitized) return;  // LeakSanitizer covers this there
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = 1000000000;
  p.period_ms = 3600 * 1000;
  rl_decision d = RL_DECISION_INIT;
  auto run = [&](int n) {
    for (int i = 0; i < n; ++i)
      REQUIRE(rl_check(lim, &d, "k", 1, &p, 1, 1) == RL_OK);
  };
  run(2000);  // warm up: connections, buffers, free lists
  const size_t before = mallinfo2().uordblks;
  run(20000);
  const size_t after = mallinfo2().uordblks;
  // 20000 calls: a leak of even 16 bytes each would be 320 KB or more.
  INFO("in use before " << before << ", after " << after);
  CHECK(after < before + 160 * 1024);
  rl_destroy(lim);
}
