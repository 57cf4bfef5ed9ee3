// Several keys in one decision (rl_check_keys): all or nothing across keys
// on memory and Redis (sync and async), the flattened policy index, refunds,
// a blocked key, the deny cache per pair, the argument errors, and on a
// Redis Cluster the one-slot rule. The decisions are pinned down by
// tests/vectors/multi_key.json (test_vectors.cpp).
#include <catch2/catch.hpp>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "support/prober.hpp"
#include "support/redis_server.hpp"
#include "support/topology.hpp"
#include "tollgate.h"

namespace {

rl_policy *parse(const char *text) {
  rl_policy *h = nullptr;
  const int rc = rl_policy_parse(&h, text, std::strlen(text), nullptr);
  INFO(text << ": " << rl_last_error());
  REQUIRE(rc == RL_OK);
  return h;
}

// A global limit under one key and a route limit under another.
struct Pairs {
  rl_policy *global = parse("5/h name=global");
  rl_policy *route = parse("2/h name=login");
  std::vector<std::string> keys{"ip:1", "login|ip:1"};
  ~Pairs() {
    rl_policy_release(global);
    rl_policy_release(route);
  }
  int check(rl_limiter *lim, rl_decision &d, int64_t cost = 1) {
    const char *ks[2] = {keys[0].data(), keys[1].data()};
    const size_t lens[2] = {keys[0].size(), keys[1].size()};
    rl_policy *ps[2] = {global, route};
    const size_t ns[2] = {1, 1};
    d = RL_DECISION_INIT;
    return rl_check_keys(lim, &d, ks, lens, 2, ps, ns, cost);
  }
  // The global limit alone, peeked.
  int64_t global_remaining(rl_limiter *lim) {
    rl_decision d = RL_DECISION_INIT;
    REQUIRE(rl_check(lim, &d, keys[0].data(), keys[0].size(), &global, 1, 0) ==
            RL_OK);
    return d.remaining;
  }
};

rl_limiter *make(const std::string &url, int32_t deny_cache = -1) {
  rl_options o = RL_OPTIONS_INIT;
  if (!url.empty()) {
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    o.deny_cache = deny_cache;
  }
  rl_limiter *lim = nullptr;
  INFO(rl_last_error());
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  return lim;
}

// The route limit denies: the global one is not charged.
void route_denial_leaves_global(rl_limiter *lim) {
  Pairs p;
  rl_decision d;
  REQUIRE(p.check(lim, d) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.policy_index == 1);  // the route: fewer left
  CHECK(d.remaining == 1);
  REQUIRE(p.check(lim, d) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(p.global_remaining(lim) == 3);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(p.check(lim, d) == RL_OK);
    CHECK(d.allowed == 0);
    CHECK(d.policy_index == 1);  // key 1's first policy
    CHECK(d.limit == 2);
  }
  CHECK(p.global_remaining(lim) == 3);  // the denials cost nothing
  // A refund goes back to both keys.
  REQUIRE(p.check(lim, d, -1) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(p.global_remaining(lim) == 4);
  REQUIRE(p.check(lim, d) == RL_OK);
  CHECK(d.allowed == 1);
  // A blocked key denies the whole check.
  REQUIRE(rl_block(lim, p.keys[0].data(), p.keys[0].size(), 60000) == RL_OK);
  REQUIRE(p.check(lim, d, 0) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.retry_after_ms > 50000);
  REQUIRE(rl_unblock(lim, p.keys[0].data(), p.keys[0].size()) == RL_OK);
}

}  // namespace

TEST_CASE("several keys: a denial by one pair charges no other (memory)",
          "[check_keys][memory]") {
  rl_limiter *lim = make("");
  route_denial_leaves_global(lim);
  rl_destroy(lim);
}

TEST_CASE("several keys: a denial by one pair charges no other (Redis)",
          "[check_keys][redis]") {
  tollgate_test::RedisServer server;
  rl_limiter *lim = make(server.url());
  route_denial_leaves_global(lim);
  // One script call per check of several keys.
  const std::string info = server.command({"INFO", "commandstats"});
  CHECK(info.find("cmdstat_evalsha") != std::string::npos);
  rl_destroy(lim);
}

TEST_CASE("several keys: the async call and the deny cache per pair",
          "[check_keys][redis]") {
  tollgate_test::RedisServer server;
  rl_limiter *lim = make(server.url(), 1);
  Pairs p;
  rl_decision d;
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int status = 0;
    rl_decision d = RL_DECISION_INIT;
  } w;
  const auto cb = [](int status, const rl_decision *dec, const char *,
                     void *user) {
    auto *w = static_cast<Wait *>(user);
    std::lock_guard<std::mutex> lock(w->mu);
    w->status = status;
    if (dec) w->d = *dec;
    w->done = true;
    w->cv.notify_one();
  };
  const char *ks[2] = {p.keys[0].data(), p.keys[1].data()};
  const size_t lens[2] = {p.keys[0].size(), p.keys[1].size()};
  rl_policy *ps[2] = {p.global, p.route};
  const size_t ns[2] = {1, 1};
  REQUIRE(rl_check_keys_async(lim, ks, lens, 2, ps, ns, 2, cb, &w) == RL_OK);
  {
    std::unique_lock<std::mutex> lock(w.mu);
    REQUIRE(
        w.cv.wait_for(lock, std::chrono::seconds(5), [&] { return w.done; }));
  }
  CHECK(w.status == RL_OK);
  CHECK(w.d.allowed == 1);
  CHECK(w.d.remaining == 0);
  // Denied by the route: cached under the route's key and policy, so the
  // same pair in a later check (or the route alone) is answered locally.
  REQUIRE(p.check(lim, d) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.source == RL_SOURCE_STORE);
  REQUIRE(p.check(lim, d) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.source == RL_SOURCE_DENY_CACHE);
  CHECK(d.policy_index == 1);
  rl_decision alone = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &alone, p.keys[1].data(), p.keys[1].size(), &p.route, 1,
                   1) == RL_OK);
  CHECK(alone.source == RL_SOURCE_DENY_CACHE);
  CHECK(alone.policy_index == 0);
  rl_destroy(lim);
}

TEST_CASE("several keys: bad arguments are refused with a clear error",
          "[check_keys][limiter]") {
  rl_limiter *lim = make("");
  rl_policy *a = parse("5/h");
  const char *two[2] = {"k", "k"};
  const size_t lens[2] = {1, 1};
  rl_policy *ps[17];
  for (rl_policy *&h : ps) h = a;
  const size_t ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  rl_decision d = RL_DECISION_INIT;
  struct Bad {
    const char *what;
    int code;
    const char *says;
    int rc;
  };
  std::vector<Bad> bad;
  bad.push_back({"a key twice", RL_E_INVALID_ARG, "repeats key 0",
                 rl_check_keys(lim, &d, two, lens, 2, ps, ones, 1)});
  bad.push_back({"no keys", RL_E_INVALID_ARG, "1 to 8 keys",
                 rl_check_keys(lim, &d, two, lens, 0, ps, ones, 1)});
  const char *nine[9] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
  const size_t nine_lens[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  bad.push_back({"nine keys", RL_E_INVALID_ARG, "1 to 8 keys",
                 rl_check_keys(lim, &d, nine, nine_lens, 9, ps, ones, 1)});
  const size_t many[2] = {9, 8};
  const char *ab[2] = {"a", "b"};
  bad.push_back({"17 policies in all", RL_E_INVALID_ARG, "at most 16",
                 rl_check_keys(lim, &d, ab, lens, 2, ps, many, 1)});
  const size_t none[2] = {1, 0};
  bad.push_back({"a pair without policies", RL_E_INVALID_ARG, "1 or more",
                 rl_check_keys(lim, &d, ab, lens, 2, ps, none, 1)});
  const size_t empty_lens[2] = {1, 0};
  bad.push_back({"an empty key", RL_E_KEY_INVALID, "keys[1]: key",
                 rl_check_keys(lim, &d, ab, empty_lens, 2, ps, ones, 1)});
  bad.push_back({"NULL arrays", RL_E_INVALID_ARG, "NULL",
                 rl_check_keys(lim, &d, nullptr, lens, 2, ps, ones, 1)});
  const char *null_key[2] = {"a", nullptr};
  bad.push_back({"a NULL key", RL_E_KEY_INVALID, "keys[1]",
                 rl_check_keys(lim, &d, null_key, lens, 2, ps, ones, 1)});
  for (const Bad &b : bad) {
    INFO(b.what << ": " << b.rc);
    CHECK(b.rc == b.code);
  }
  // Each message names the problem (checked on a fresh failure each).
  CHECK(rl_check_keys(lim, &d, two, lens, 2, ps, ones, 1) == RL_E_INVALID_ARG);
  CHECK(std::string(rl_last_error()).find("repeats key 0") !=
        std::string::npos);
  const size_t dup[1] = {2};
  CHECK(rl_check_keys(lim, &d, ab, lens, 1, ps, dup, 1) == RL_E_POLICY);
  CHECK(std::string(rl_last_error()).find("keys[0]") != std::string::npos);
  CHECK(rl_check_keys(lim, &d, ab, empty_lens, 2, ps, ones, 1) ==
        RL_E_KEY_INVALID);
  CHECK(std::string(rl_last_error()).find("keys[1]: key: must not be empty") !=
        std::string::npos);
  rl_policy_release(a);
  rl_destroy(lim);
}

TEST_CASE("several keys on a cluster: one slot, or refused before sending",
          "[check_keys][redis][cluster]") {
  tollgate_test::Topology t;
  tollgate_test::Lim a(t.url());
  rl_policy *g = parse("3/h name=global");
  rl_policy *r = parse("1/h name=route");
  rl_policy *ps[2] = {g, r};
  const size_t ns[2] = {1, 1};
  rl_decision d = RL_DECISION_INIT;
  // Keys of different slots.
  const char *apart[2] = {"user:1", "user:2:route"};
  const size_t apart_lens[2] = {6, 12};
  CHECK(rl_check_keys(a.p, &d, apart, apart_lens, 2, ps, ns, 1) ==
        RL_E_UNSUPPORTED);
  CHECK(std::string(rl_last_error()).find("share a slot") != std::string::npos);
  // The same {tag}: one slot, one script, all or nothing.
  const char *tagged[2] = {"{user:1}:global", "{user:1}:route"};
  const size_t tagged_lens[2] = {15, 14};
  REQUIRE(rl_check_keys(a.p, &d, tagged, tagged_lens, 2, ps, ns, 1) == RL_OK);
  CHECK(d.allowed == 1);
  REQUIRE(rl_check_keys(a.p, &d, tagged, tagged_lens, 2, ps, ns, 1) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 1);
  REQUIRE(rl_check(a.p, &d, tagged[0], tagged_lens[0], &g, 1, 0) == RL_OK);
  CHECK(d.remaining == 2);  // charged once, by the allowed check only
  rl_policy_release(g);
  rl_policy_release(r);
}

TEST_CASE("several keys: the local failure mode charges every pair",
          "[redis][limiter]") {
  // Nothing listens on port 1: every call is answered by the failure mode,
  // here the local limiter (each pair against its own policies, divisor 1).
  rl_options o = RL_OPTIONS_INIT;
  o.url = "redis://127.0.0.1:1";
  o.failure_mode = RL_FAIL_LOCAL;
  o.local_divisor = 1;
  o.connect_timeout_ms = 200;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  Pairs p;
  rl_decision d;
  for (int i = 0; i < 2; ++i) {
    REQUIRE(p.check(lim, d) == RL_OK);
    CHECK(d.allowed == 1);
    CHECK(d.source == RL_SOURCE_LOCAL);
  }
  // The route pair (2/h, the second) was charged twice: the third call is
  // denied by it, as on the store.
  REQUIRE(p.check(lim, d) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 1);
  rl_destroy(lim);
}
