// What a cached denial answers on Redis: the same decision as the store's
// (limit, remaining, the deciding policy, reset and retry counted down from
// the denial), only for costs at least the denied one, and never for a
// call that can never pass.
#include <catch2/catch.hpp>

#include <string>

#include "support/policy_specs.hpp"
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

rl_decision check(rl_limiter *lim, const std::string &key,
                  const rl_policy_spec *ps, size_t n, int64_t cost) {
  rl_decision d = RL_DECISION_INIT;
  const int rc = rl_check(lim, &d, key.data(), key.size(), ps, n, cost);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

rl_policy_spec policy(int32_t alg, int64_t limit, int64_t period_ms) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = period_ms;
  return p;
}

}  // namespace

TEST_CASE("redis deny cache: a cached denial repeats the store's decision",
          "[redis][deny_cache]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  // Two policies; the hour-long one denies (its retry is the longer).
  const rl_policy_spec ps[2] = {policy(RL_ALG_GCRA, 5, 1000),
                                policy(RL_ALG_GCRA, 1, 3600 * 1000)};
  REQUIRE(check(lim.p, "k", ps, 2, 1).allowed == 1);
  const rl_decision store = check(lim.p, "k", ps, 2, 1);
  REQUIRE(store.allowed == 0);
  REQUIRE(store.source == RL_SOURCE_STORE);
  REQUIRE(store.policy_index == 1);
  REQUIRE(store.retry_after_ms > 3500 * 1000);
  const rl_decision cached = check(lim.p, "k", ps, 2, 1);
  REQUIRE(cached.source == RL_SOURCE_DENY_CACHE);
  CHECK(cached.allowed == 0);
  CHECK(cached.limit == store.limit);
  CHECK(cached.remaining == store.remaining);
  CHECK(cached.policy_index == 1);
  // Counted down from the denial: at most the store's, and not by more
  // than the few seconds a slow machine may take between the calls.
  CHECK(cached.retry_after_ms <= store.retry_after_ms);
  CHECK(cached.retry_after_ms > store.retry_after_ms - 60 * 1000);
  CHECK(cached.reset_after_ms <= store.reset_after_ms);
  CHECK(cached.reset_after_ms > store.reset_after_ms - 60 * 1000);

  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.deny_cache_hits == 1);
  CHECK(h.checks == 3);
  CHECK(h.denied == 2);
  CHECK(h.allowed == 1);
}

TEST_CASE("redis deny cache: only costs at least the denied one are cached",
          "[redis][deny_cache]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  const rl_policy_spec p = policy(RL_ALG_FIXED_WINDOW, 3, 3600 * 1000);
  REQUIRE(check(lim.p, "k", &p, 1, 2).allowed == 1);
  // Cost 2 is denied (1 left) and cached; cost 1 still goes to the store
  // and passes; a larger cost is answered by the cache.
  REQUIRE(check(lim.p, "k", &p, 1, 2).source == RL_SOURCE_STORE);
  CHECK(check(lim.p, "k", &p, 1, 2).source == RL_SOURCE_DENY_CACHE);
  CHECK(check(lim.p, "k", &p, 1, 3).source == RL_SOURCE_DENY_CACHE);
  const rl_decision one = check(lim.p, "k", &p, 1, 1);
  CHECK(one.source == RL_SOURCE_STORE);
  CHECK(one.allowed == 1);

  // A peek denied (nothing left) is cached as a cost of 1: the next call
  // of cost 1 is answered locally, and so is the next peek.
  const rl_decision peek = check(lim.p, "k", &p, 1, 0);
  REQUIRE(peek.allowed == 0);
  REQUIRE(peek.source == RL_SOURCE_STORE);
  CHECK(check(lim.p, "k", &p, 1, 1).source == RL_SOURCE_DENY_CACHE);
  CHECK(check(lim.p, "k", &p, 1, 0).source == RL_SOURCE_STORE);
}

TEST_CASE("redis deny cache: a call that can never pass is not cached",
          "[redis][deny_cache]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  const rl_policy_spec p = policy(RL_ALG_GCRA, 2, 3600 * 1000);
  for (int i = 0; i < 3; ++i) {
    const rl_decision d = check(lim.p, "k", &p, 1, 3);  // above capacity 2
    CHECK(d.allowed == 0);
    CHECK(d.retry_after_ms == RL_RETRY_NEVER);
    CHECK(d.source == RL_SOURCE_STORE);
  }
  // Nothing was charged: the whole capacity is still there.
  CHECK(check(lim.p, "k", &p, 1, 2).allowed == 1);
}

TEST_CASE("redis deny cache: a refund clears the key's cached denial",
          "[redis][deny_cache][refund]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  const rl_policy_spec p = policy(RL_ALG_GCRA, 2, 3600 * 1000);
  REQUIRE(check(lim.p, "k", &p, 1, 2).allowed == 1);
  REQUIRE(check(lim.p, "k", &p, 1, 1).source == RL_SOURCE_STORE);  // denied
  REQUIRE(check(lim.p, "k", &p, 1, 1).source == RL_SOURCE_DENY_CACHE);
  // The refund reaches the store (a cached denial never answers one) ...
  const rl_decision back = check(lim.p, "k", &p, 1, -1);
  CHECK(back.allowed == 1);
  CHECK(back.source == RL_SOURCE_STORE);
  CHECK(back.remaining == 1);
  // ... and the next check asks the store again, which admits it.
  const rl_decision next = check(lim.p, "k", &p, 1, 1);
  CHECK(next.source == RL_SOURCE_STORE);
  CHECK(next.allowed == 1);
  CHECK(next.remaining == 0);
  // Nothing to give back on a key never charged: an error, nothing written.
  rl_decision d = RL_DECISION_INIT;
  CHECK(rl_check(lim.p, &d, "never", 5, &p, 1, -1) == RL_E_NOT_FOUND);
  CHECK(server.query({"EXISTS", "tollgate:v2:{never}"}).integer == 0);
}
