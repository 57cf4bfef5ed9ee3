// rl_reset on a Redis holding many other keys: the SCAN for the key's
// policies runs over several pages, and every page's matches are deleted.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

TEST_CASE("redis reset: every policy of the key goes, across SCAN pages",
          "[redis][reset]") {
  tollgate_test::RedisServer server;
  // 5000 keys that are not the target's: SCAN ... COUNT 1000 needs several
  // pages, and the target's keys land on different ones.
  REQUIRE(server
              .query({"EVAL",
                      "for i = 1, 5000 do redis.call('SET', 'filler:' .. i, "
                      "'x') end return 1",
                      "0"})
              .integer == 1);
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.deny_cache = -1;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);

  // 16 policies of their own names, 16 Redis keys (checked one at a time,
  // unnamed ones would all be position 0: one key).
  static const std::string kNames[16] = {"a", "b", "c", "d", "e", "f",
                                         "g", "h", "i", "j", "k", "l",
                                         "m", "n", "o", "p"};
  std::vector<rl_policy_spec> ps;
  for (int i = 0; i < 16; ++i) {
    rl_policy_spec p = RL_POLICY_SPEC_INIT;
    p.algorithm = RL_ALG_FIXED_WINDOW;
    p.limit = 1;
    p.period_ms = 3600 * 1000 + i;
    p.name = kNames[i].data();
    p.name_len = kNames[i].size();
    ps.push_back(p);
  }
  rl_decision d = RL_DECISION_INIT;
  for (const rl_policy_spec &p : ps) {
    REQUIRE(rl_check(lim, &d, "target", 6, &p, 1, 1) == RL_OK);
    REQUIRE(d.allowed == 1);
    REQUIRE(rl_check(lim, &d, "target", 6, &p, 1, 1) == RL_OK);
    REQUIRE(d.allowed == 0);
  }
  REQUIRE(server.query({"DBSIZE"}).integer == 5016);

  REQUIRE(rl_reset(lim, "target", 6) == RL_OK);
  CHECK(server.query({"DBSIZE"}).integer == 5000);
  int fresh = 0;
  for (const rl_policy_spec &p : ps) {
    REQUIRE(rl_check(lim, &d, "target", 6, &p, 1, 0) == RL_OK);
    fresh += d.remaining == 1;
  }
  CHECK(fresh == 16);
  rl_destroy(lim);
}
