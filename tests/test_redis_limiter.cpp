// Limiter-level behaviour on Redis through the C ABI: what rl_reset and
// rl_ping leave behind (the deny cache, the health snapshot).
#include <catch2/catch.hpp>

#include <string>

#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

struct Lim {
  rl_limiter *p = nullptr;
  explicit Lim(const std::string &url) {
    rl_options o = RL_OPTIONS_INIT;
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    const int rc = rl_create(&p, &o);
    INFO("rl_create: " << rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
  Lim(const Lim &) = delete;
  Lim &operator=(const Lim &) = delete;
};

rl_decision check(rl_limiter *lim, const std::string &key, const rl_policy &p) {
  rl_decision d = RL_DECISION_INIT;
  const int rc = rl_check(lim, &d, key.data(), key.size(), &p, 1, 1);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

}  // namespace

TEST_CASE("redis: rl_reset also forgets the key's cached denials",
          "[redis][deny_cache]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  rl_policy p = RL_POLICY_INIT;
  p.limit = 1;
  p.period_ms = 3600 * 1000;
  REQUIRE(check(lim.p, "k", p).allowed == 1);
  REQUIRE(check(lim.p, "k", p).source == RL_SOURCE_STORE);  // denied
  REQUIRE(check(lim.p, "k", p).source == RL_SOURCE_DENY_CACHE);
  REQUIRE(check(lim.p, "other", p).allowed == 1);
  REQUIRE(check(lim.p, "other", p).allowed == 0);

  REQUIRE(rl_reset(lim.p, "k", 1) == RL_OK);
  const rl_decision after = check(lim.p, "k", p);
  CHECK(after.allowed == 1);
  CHECK(after.source == RL_SOURCE_STORE);
  // Other keys keep theirs.
  CHECK(check(lim.p, "other", p).source == RL_SOURCE_DENY_CACHE);
}

TEST_CASE("redis: rl_ping's round trip shows in rl_health", "[redis][health]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  int64_t rtt = -1;
  REQUIRE(rl_ping(lim.p, &rtt) == RL_OK);
  CHECK(rtt >= 0);
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.last_ping_us >= 0);
}
