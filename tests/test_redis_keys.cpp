// Redis key names read back for the admin listing: which names are a
// tollgate key under a prefix, what user key and policy they hold, and that
// distinct policies get distinct keys.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "support/redis_server.hpp"
#include "tollgate.h"
#include "tollgate/redis/redis_store.hpp"

using tollgate::Algorithm;
using tollgate::Policy;
using tollgate::redis::parse_redis_key;

TEST_CASE("redis keys: a key name gives back its user key and policy",
          "[redis][keys]") {
  std::string user;
  Policy p{};
  REQUIRE(parse_redis_key("tollgate:{org-1}:gcra:10:60000:10",
                          "tollgate:", user, p));
  CHECK(user == "org-1");
  CHECK(p.algorithm == Algorithm::gcra);
  CHECK(p.limit == 10);
  CHECK(p.period_ms == 60000);
  CHECK(p.burst == 0);
  CHECK(p.capacity == 10);

  // A burst is a capacity other than the limit.
  REQUIRE(parse_redis_key("t:{k}:token_bucket:5:1000:20", "t:", user, p));
  CHECK(user == "k");
  CHECK(p.algorithm == Algorithm::token_bucket);
  CHECK(p.burst == 20);
  CHECK(p.capacity == 20);
  REQUIRE(parse_redis_key("t:{k}:fixed_window:5:1000:5", "t:", user, p));
  CHECK(p.algorithm == Algorithm::fixed_window);
  REQUIRE(parse_redis_key("t:{k}:sliding_window:3:1000:3", "t:", user, p));
  CHECK(p.algorithm == Algorithm::sliding_window);
  CHECK(p.limit == 3);

  // The user key may hold ':', '{' and '}'; only the last four fields are
  // the policy. A prefix may hold ':' too.
  REQUIRE(parse_redis_key("app:rl:{a:b}{c}:gcra:1:1000:1", "app:rl:", user, p));
  CHECK(user == "a:b}{c");
  CHECK(p.limit == 1);
  // A one-byte user key.
  REQUIRE(parse_redis_key("p{x}:gcra:2:1000:2", "p", user, p));
  CHECK(user == "x");
}

TEST_CASE("redis keys: names that are not tollgate keys are skipped",
          "[redis][keys]") {
  std::string user;
  Policy p{};
  for (const char *bad : {
           "other:{k}:gcra:10:60000:10",      // another prefix
           "tollgate:k}:gcra:10:60000:10",    // no '{'
           "tollgate:{k:gcra:10:60000:10",    // no '}' before the suffix
           "tollgate:{k}:leaky:10:60000:10",  // unknown algorithm
           "tollgate:{k}:gcra:ten:60000:10",  // not a number
           "tollgate:{k}:gcra:10:60000:",     // empty field
           "tollgate:{k}:gcra:10:60000",      // three fields
           "tollgate:{k}:gcra:0:60000:0",     // not a valid policy
           "tollgate:{k}:gcra:10:-5:10",      // not a valid policy
           "tollgate:{",                      // too short
           "tollgate:",
       }) {
    INFO(bad);
    CHECK_FALSE(parse_redis_key(bad, "tollgate:", user, p));
  }
  // The fields must come after the prefix, not inside it.
  CHECK_FALSE(parse_redis_key("a:1:2:3{k}", "a:1:2:3", user, p));
  // Another prefix of the same length is another prefix.
  CHECK_FALSE(
      parse_redis_key("tollgats:{k}:gcra:10:60000:10", "tollgate:", user, p));
  // A prefix without ':' and a name with too few ':' (none, or three).
  CHECK_FALSE(parse_redis_key("app{k}", "app", user, p));
  CHECK_FALSE(parse_redis_key("app{k}gcra10600010", "app", user, p));
  CHECK_FALSE(parse_redis_key("app{k}:10:60000:10", "app", user, p));
  CHECK(parse_redis_key("app{k}:gcra:10:60000:10", "app", user, p));
  CHECK(user == "k");
}

TEST_CASE("redis keys: policies that differ only in their limit keep apart",
          "[redis][keys]") {
  // GCRA with burst 10 over 1000 s: limits 600000 and 600001 have the same
  // capacity (10) and the same emission interval (1667 us); only the limit
  // tells them apart, and it must still give each its own Redis key.
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy a = RL_POLICY_INIT;
  a.limit = 600000;
  a.period_ms = 1000 * 1000;
  a.burst = 10;
  rl_policy b = a;
  b.limit = 600001;
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "k", 1, &a, 1, 1) == RL_OK);
  REQUIRE(rl_check(lim, &d, "k", 1, &b, 1, 1) == RL_OK);
  CHECK(server.query({"DBSIZE"}).integer == 2);
  rl_keys *it = nullptr;
  REQUIRE(rl_keys_open(lim, &it) == RL_OK);
  std::set<int64_t> limits;
  rl_key_info info = RL_KEY_INFO_INIT;
  while (rl_keys_next(it, &info) == RL_OK) limits.insert(info.policy.limit);
  rl_keys_free(it);
  CHECK(limits == std::set<int64_t>{600000, 600001});
  rl_destroy(lim);
}
