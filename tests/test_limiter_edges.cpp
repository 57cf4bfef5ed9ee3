// The limiter at its edges, through the C ABI: which policy a multi-policy
// decision reports, the bounds of every option and input, the clock's
// range, and the failure modes' answers when the store cannot be reached.
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"
#include "tollgate/limiter.hpp"

namespace {

int64_t g_now_us = 1'700'000'000'000'000;

// About 32 years: on the real clock no refill or window boundary can fall
// between a test's calls, however slow the machine.
constexpr int64_t kLongMs = 1'000'000'000'000;

struct Lim {
  rl_limiter *p = nullptr;
  int rc = RL_OK;
  explicit Lim(const rl_options &o) { rc = rl_create(&p, &o); }
  ~Lim() { rl_destroy(p); }
  Lim(const Lim &) = delete;
  Lim &operator=(const Lim &) = delete;
};

rl_options pinned_memory() {
  rl_options o = RL_OPTIONS_INIT;
  o.clock = [](void *) -> int64_t { return g_now_us; };
  return o;
}

rl_policy_spec policy(int32_t alg, int64_t limit, int64_t period_ms,
                      int64_t burst = 0) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = period_ms;
  p.burst = burst;
  return p;
}

rl_decision check(rl_limiter *lim, const std::string &key,
                  const std::vector<rl_policy_spec> &ps, int64_t cost = 1) {
  rl_decision d = RL_DECISION_INIT;
  const int rc =
      rl_check(lim, &d, key.data(), key.size(), ps.data(), ps.size(), cost);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

int create_rc(rl_options o) {
  Lim lim(o);
  return lim.rc;
}

// A Redis URL on which nothing listens: connecting is refused at once.
std::string refused_url() {
  return "redis://127.0.0.1:" + std::to_string(tollgate_test::free_port());
}

}  // namespace

TEST_CASE("limiter: a denial reports the policy with the longest wait",
          "[limiter]") {
  Lim lim(pinned_memory());
  REQUIRE(lim.rc == RL_OK);
  // After one unit each: GCRA 1 per 1 s waits 1 s, GCRA 1 per 10 s waits
  // 10 s, token bucket 1 per 5 s waits 5 s.
  const std::vector<rl_policy_spec> ps = {policy(RL_ALG_GCRA, 1, 1000),
                                          policy(RL_ALG_GCRA, 1, 10000),
                                          policy(RL_ALG_TOKEN_BUCKET, 1, 5000)};
  REQUIRE(check(lim.p, "k", ps).allowed == 1);
  rl_decision d = check(lim.p, "k", ps);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 1);
  CHECK(d.limit == 1);
  CHECK(d.retry_after_ms == 10000);
  // Reversed order: the same policy, at its new index.
  const std::vector<rl_policy_spec> rev = {ps[2], ps[1], ps[0]};
  REQUIRE(check(lim.p, "r", rev).allowed == 1);
  d = check(lim.p, "r", rev);
  CHECK(d.policy_index == 1);
  CHECK(d.retry_after_ms == 10000);
  // A policy the call can never pass outranks any finite wait, wherever it
  // stands in the list.
  const std::vector<rl_policy_spec> never = {policy(RL_ALG_GCRA, 1, 10000),
                                             policy(RL_ALG_GCRA, 5, 1000)};
  REQUIRE(check(lim.p, "n", never).allowed == 1);
  d = check(lim.p, "n", never, 2);  // 2 > capacity 1 of policy 0
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 0);
  CHECK(d.retry_after_ms == RL_RETRY_NEVER);
  const std::vector<rl_policy_spec> never2 = {policy(RL_ALG_GCRA, 5, 1000),
                                              policy(RL_ALG_GCRA, 1, 10000)};
  REQUIRE(check(lim.p, "n2", never2).allowed == 1);
  d = check(lim.p, "n2", never2, 2);
  CHECK(d.policy_index == 1);
  CHECK(d.retry_after_ms == RL_RETRY_NEVER);
  // ... and a finite wait never displaces it.
  const std::vector<rl_policy_spec> never3 = {policy(RL_ALG_GCRA, 1, 1000),
                                              policy(RL_ALG_GCRA, 1, 60000),
                                              policy(RL_ALG_GCRA, 3, 1000)};
  d = check(lim.p, "n3", never3, 2);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 0);
  CHECK(d.retry_after_ms == RL_RETRY_NEVER);
}

TEST_CASE("limiter: equal waits and equal remaining go to the first policy",
          "[limiter]") {
  Lim lim(pinned_memory());
  REQUIRE(lim.rc == RL_OK);
  // GCRA and token bucket with the same limit and period wait alike.
  const std::vector<rl_policy_spec> ps = {policy(RL_ALG_GCRA, 2, 2000),
                                          policy(RL_ALG_TOKEN_BUCKET, 2, 2000)};
  rl_decision d = check(lim.p, "k", ps);
  CHECK(d.allowed == 1);
  CHECK(d.remaining == 1);
  CHECK(d.policy_index == 0);
  REQUIRE(check(lim.p, "k", ps).allowed == 1);
  d = check(lim.p, "k", ps);
  CHECK(d.allowed == 0);
  CHECK(d.retry_after_ms == 1000);
  CHECK(d.policy_index == 0);
  const std::vector<rl_policy_spec> rev = {ps[1], ps[0]};
  d = check(lim.p, "k2", rev);
  CHECK(d.policy_index == 0);
  REQUIRE(check(lim.p, "k2", rev).allowed == 1);
  d = check(lim.p, "k2", rev);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 0);
  // Allowed: the fewest remaining, wherever it is.
  const std::vector<rl_policy_spec> three = {policy(RL_ALG_GCRA, 10, 1000),
                                             policy(RL_ALG_GCRA, 4, 1000),
                                             policy(RL_ALG_GCRA, 7, 1000)};
  d = check(lim.p, "k3", three);
  CHECK(d.allowed == 1);
  CHECK(d.policy_index == 1);
  CHECK(d.remaining == 3);
  CHECK(d.limit == 4);
  CHECK(d.retry_after_ms == 0);
}

TEST_CASE("limiter: input bounds are inclusive", "[limiter]") {
  rl_options o = pinned_memory();
  o.max_key_len = 8;
  Lim lim(o);
  REQUIRE(lim.rc == RL_OK);
  const rl_policy_spec p = policy(RL_ALG_GCRA, 100, 1000);
  rl_decision d = RL_DECISION_INIT;
  CHECK(rl_check(lim.p, &d, "12345678", 8, &p, 1, 1) == RL_OK);
  CHECK(rl_check(lim.p, &d, "123456789", 9, &p, 1, 1) == RL_E_KEY_TOO_LONG);
  CHECK(rl_reset(lim.p, "12345678", 8) == RL_OK);
  CHECK(rl_reset(lim.p, "123456789", 9) == RL_E_KEY_TOO_LONG);
  CHECK(rl_reset(lim.p, "", 0) == RL_E_KEY_INVALID);

  // 16 policies per check, not 17; none is not a check.
  std::vector<rl_policy_spec> ps;
  for (int i = 1; i <= 17; ++i) ps.push_back(policy(RL_ALG_GCRA, i, 1000));
  CHECK(rl_check(lim.p, &d, "k", 1, ps.data(), 16, 1) == RL_OK);
  CHECK(rl_check(lim.p, &d, "k", 1, ps.data(), 17, 1) == RL_E_INVALID_ARG);
  CHECK(rl_check(lim.p, &d, "k", 1, ps.data(), 0, 1) == RL_E_INVALID_ARG);
  // Cost 0 peeks; a refund gives back up to 2^53 - 1 units, not 2^53.
  CHECK(rl_check(lim.p, &d, "k", 1, ps.data(), 1, 0) == RL_OK);
  const int64_t most = (int64_t{1} << 53) - 1;
  CHECK(rl_check(lim.p, &d, "k", 1, ps.data(), 1, -most) == RL_OK);
  CHECK(rl_check(lim.p, &d, "k", 1, ps.data(), 1, -most - 1) ==
        RL_E_INVALID_ARG);
  // A policy repeated anywhere in the list, not only next to itself.
  std::vector<rl_policy_spec> dup = {ps[0], ps[1], ps[2], ps[0]};
  CHECK(rl_check(lim.p, &d, "k", 1, dup.data(), 4, 1) == RL_E_POLICY);
  dup = {ps[0], ps[1], ps[2], ps[2]};
  CHECK(rl_check(lim.p, &d, "k", 1, dup.data(), 4, 1) == RL_E_POLICY);
  dup = {ps[0], ps[1], ps[1], ps[3]};
  CHECK(rl_check(lim.p, &d, "k", 1, dup.data(), 4, 1) == RL_E_POLICY);

  // Every refused call is counted as an error, nothing else.
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.errors == 9);
  CHECK(h.checks == 4);

  rl_options big = pinned_memory();
  big.max_key_len = 65536;
  CHECK(create_rc(big) == RL_OK);
  big.max_key_len = 65537;
  CHECK(create_rc(big) == RL_E_INVALID_ARG);
  big.max_key_len = 0;
  big.shards = 1024;
  CHECK(create_rc(big) == RL_OK);
  big.shards = 1025;
  CHECK(create_rc(big) == RL_E_INVALID_ARG);
  big.shards = 0;
  big.max_keys = 4294967295u;
  CHECK(create_rc(big) == RL_E_INVALID_ARG);
}

TEST_CASE("limiter: an unknown algorithm's error lists the known ones",
          "[limiter]") {
  Lim lim(pinned_memory());
  REQUIRE(lim.rc == RL_OK);
  const rl_policy_spec p = policy(7, 100, 1000);
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim.p, &d, "k", 1, &p, 1, 1) == RL_E_POLICY);
  const std::string msg = rl_last_error();
  CHECK(msg.find("unknown algorithm 7") != std::string::npos);
  for (const char *name : {"RL_ALG_GCRA", "RL_ALG_TOKEN_BUCKET",
                           "RL_ALG_FIXED_WINDOW", "RL_ALG_SLIDING_WINDOW"})
    CHECK(msg.find(name) != std::string::npos);
  // Just past either end of the known values (0..3).
  for (int32_t alg : {-1, 4}) {
    INFO("algorithm " << alg);
    const rl_policy_spec q = policy(alg, 100, 1000);
    CHECK(rl_check(lim.p, &d, "k", 1, &q, 1, 1) == RL_E_POLICY);
  }
  const rl_policy_spec last = policy(3, 100, 1000);
  CHECK(rl_check(lim.p, &d, "k", 1, &last, 1, 1) == RL_OK);
}

TEST_CASE("limiter: the clock must be from 0 to under 2^52 microseconds",
          "[limiter]") {
  const int64_t saved = g_now_us;
  Lim lim(pinned_memory());
  REQUIRE(lim.rc == RL_OK);
  const rl_policy_spec p = policy(RL_ALG_GCRA, 100, 1000);
  rl_decision d = RL_DECISION_INIT;
  g_now_us = 0;
  CHECK(rl_check(lim.p, &d, "k", 1, &p, 1, 1) == RL_OK);
  g_now_us = (int64_t{1} << 52) - 1;
  CHECK(rl_check(lim.p, &d, "k", 1, &p, 1, 1) == RL_OK);
  g_now_us = int64_t{1} << 52;
  CHECK(rl_check(lim.p, &d, "k", 1, &p, 1, 1) == RL_E_OVERFLOW);
  g_now_us = -1;
  CHECK(rl_check(lim.p, &d, "k", 1, &p, 1, 1) == RL_E_OVERFLOW);
  g_now_us = saved;
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.errors == 2);
}

TEST_CASE("limiter: memory health counts checks and keys", "[limiter]") {
  Lim lim(pinned_memory());
  REQUIRE(lim.rc == RL_OK);
  const std::vector<rl_policy_spec> ps = {policy(RL_ALG_GCRA, 2, 1000)};
  check(lim.p, "a", ps);
  check(lim.p, "a", ps);
  check(lim.p, "a", ps);  // denied
  check(lim.p, "b", ps);
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.store_kind == 1);
  CHECK(h.checks == 4);
  CHECK(h.allowed == 3);
  CHECK(h.denied == 1);
  CHECK(h.live_keys == 2);
  CHECK(h.errors == 0);
  int64_t rtt = -1;
  CHECK(rl_ping(lim.p, &rtt) == RL_OK);
  CHECK(rtt == 0);
}

TEST_CASE("limiter: network options are checked against their ranges",
          "[limiter]") {
  const std::string url = refused_url();
  auto opts = [&] {
    rl_options o = RL_OPTIONS_INIT;
    o.url = url.c_str();
    o.connect_timeout_ms = 50;
    o.timeout_ms = 50;
    return o;
  };
  rl_options o = opts();
  CHECK(create_rc(o) == RL_OK);
  o.connect_timeout_ms = 600000;
  CHECK(create_rc(o) == RL_OK);
  o.connect_timeout_ms = 600001;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o = opts();
  o.timeout_ms = 600000;
  CHECK(create_rc(o) == RL_OK);
  o.timeout_ms = 600001;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  o.reconnect_max_ms = 10;
  CHECK(create_rc(o) == RL_OK);
  o.reconnect_max_ms = 9;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.reconnect_max_ms = 600000;
  CHECK(create_rc(o) == RL_OK);
  o.reconnect_max_ms = 600001;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  o.deny_cache_size = 10000000;
  CHECK(create_rc(o) == RL_OK);
  o.deny_cache_size = 10000001;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  const std::string p128(128, 'p'), p129(129, 'p');
  o.key_prefix = p128.c_str();
  CHECK(create_rc(o) == RL_OK);
  o.key_prefix = p129.c_str();
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.key_prefix = "";
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.key_prefix = "a{b";
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.key_prefix = "ab}";
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  o.failure_mode = RL_FAIL_ERROR;
  CHECK(create_rc(o) == RL_OK);
  o.failure_mode = 5;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.failure_mode = -1;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  o.deny_cache = -1;
  CHECK(create_rc(o) == RL_OK);
  o.deny_cache = 1;
  CHECK(create_rc(o) == RL_OK);
  o.deny_cache = 2;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.deny_cache = -2;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  o.spin_us = -1;
  CHECK(create_rc(o) == RL_OK);
  o.spin_us = 1000;
  CHECK(create_rc(o) == RL_OK);
  o.spin_us = 1001;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.spin_us = -2;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  o.connections = 64;
  CHECK(create_rc(o) == RL_OK);
  o.connections = 65;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  o = opts();
  o.failure_mode = RL_FAIL_LOCAL;
  o.local_divisor = 1000000;
  CHECK(create_rc(o) == RL_OK);
  o.local_divisor = 1000001;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);

  // TLS options need rediss://.
  for (int which = 0; which < 6; ++which) {
    o = opts();
    switch (which) {
      case 0:
        o.tls_ca_file = "/nonexistent/ca.pem";
        break;
      case 1:
        o.tls_ca_dir = "/nonexistent";
        break;
      case 2:
        o.tls_cert_file = "/nonexistent/c.pem";
        break;
      case 3:
        o.tls_key_file = "/nonexistent/k.pem";
        break;
      case 4:
        o.tls_server_name = "example.com";
        break;
      default:
        o.tls_verify = 1;
        break;
    }
    INFO("TLS option " << which);
    CHECK(create_rc(o) == RL_E_INVALID_ARG);
  }
}

TEST_CASE("limiter: failure modes answer when the store is unreachable",
          "[limiter]") {
  const std::string url = refused_url();
  rl_options o = RL_OPTIONS_INIT;
  o.url = url.c_str();
  o.connect_timeout_ms = 200;
  o.timeout_ms = 200;
  const std::vector<rl_policy_spec> ps = {policy(RL_ALG_GCRA, 10, kLongMs),
                                          policy(RL_ALG_GCRA, 20, kLongMs)};

  SECTION("open: allowed, remaining unknown so the full limit") {
    o.failure_mode = RL_FAIL_OPEN;
    Lim lim(o);
    REQUIRE(lim.rc == RL_OK);
    const rl_decision d = check(lim.p, "k", ps);
    CHECK(d.allowed == 1);
    CHECK(d.source == RL_SOURCE_FAIL_OPEN);
    CHECK(d.limit == 10);
    CHECK(d.remaining == 10);
    CHECK(d.retry_after_ms == 0);
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(lim.p, &h) == RL_OK);
    CHECK(h.checks == 1);
    CHECK(h.allowed == 1);
    CHECK(h.denied == 0);
    CHECK(h.fail_open == 1);
    CHECK(h.store_errors == 1);
    CHECK(h.errors == 0);
    CHECK(h.store_kind == 2);
  }
  SECTION("closed: denied for one second") {
    o.failure_mode = RL_FAIL_CLOSED;
    Lim lim(o);
    REQUIRE(lim.rc == RL_OK);
    const rl_decision d = check(lim.p, "k", ps);
    CHECK(d.allowed == 0);
    CHECK(d.source == RL_SOURCE_FAIL_CLOSED);
    CHECK(d.limit == 10);
    CHECK(d.remaining == 0);
    CHECK(d.retry_after_ms == 1000);
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(lim.p, &h) == RL_OK);
    CHECK(h.checks == 1);
    CHECK(h.allowed == 0);
    CHECK(h.denied == 1);
    CHECK(h.fail_closed == 1);
    CHECK(h.store_errors == 1);
  }
  SECTION("error: the store's error code, counted") {
    o.failure_mode = RL_FAIL_ERROR;
    Lim lim(o);
    REQUIRE(lim.rc == RL_OK);
    rl_decision d = RL_DECISION_INIT;
    CHECK(rl_check(lim.p, &d, "k", 1, ps.data(), 2, 1) == RL_E_CONNECT);
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(lim.p, &h) == RL_OK);
    CHECK(h.errors == 1);
    CHECK(h.store_errors == 1);
  }
  SECTION("local: each server allows limit / divisor, at least 1") {
    o.failure_mode = RL_FAIL_LOCAL;
    o.local_divisor = 4;
    Lim lim(o);
    REQUIRE(lim.rc == RL_OK);
    // 10 / 4 = 2 per window locally. The local store runs on the real
    // clock: windows that never end keep the counts exact.
    const std::vector<rl_policy_spec> one = {
        policy(RL_ALG_FIXED_WINDOW, 10, kLongMs)};
    int allowed = 0;
    for (int i = 0; i < 5; ++i) {
      const rl_decision d = check(lim.p, "k", one);
      CHECK(d.source == RL_SOURCE_LOCAL);
      allowed += d.allowed;
      if (i == 0) CHECK(d.limit == 2);
    }
    CHECK(allowed == 2);
    // 3 / 4 rounds down to 0: still 1.
    const std::vector<rl_policy_spec> small = {
        policy(RL_ALG_FIXED_WINDOW, 3, kLongMs)};
    allowed = 0;
    for (int i = 0; i < 3; ++i) allowed += check(lim.p, "s", small).allowed;
    CHECK(allowed == 1);
    // A burst is divided too: GCRA 8 per period with burst 8 -> burst 2.
    const std::vector<rl_policy_spec> burst = {
        policy(RL_ALG_GCRA, 8, kLongMs, 8)};
    allowed = 0;
    for (int i = 0; i < 4; ++i) allowed += check(lim.p, "b", burst).allowed;
    CHECK(allowed == 2);
    // Both policies of a check are scaled; the tighter reports.
    allowed = 0;
    for (int i = 0; i < 4; ++i) allowed += check(lim.p, "m", ps).allowed;
    CHECK(allowed == 2);
    // A reset forgets the local state too.
    REQUIRE(rl_reset(lim.p, "k", 1) != RL_OK);  // the store itself is away
    CHECK(check(lim.p, "k", one).allowed == 1);
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(lim.p, &h) == RL_OK);
    CHECK(h.local_fallback == 17);
    CHECK(h.checks == 17);
    CHECK(h.allowed == 8);
    CHECK(h.denied == 9);
  }
}

TEST_CASE("limiter: failure mode left at 0 keeps the URL's, open by default",
          "[limiter]") {
  const std::vector<rl_policy_spec> ps = {policy(RL_ALG_GCRA, 10, 60000)};
  const std::string url = refused_url();
  rl_options o = RL_OPTIONS_INIT;
  o.url = url.c_str();
  o.connect_timeout_ms = 200;
  o.timeout_ms = 200;
  {
    Lim lim(o);  // failure_mode 0: the URL has none, so open
    REQUIRE(lim.rc == RL_OK);
    const rl_decision d = check(lim.p, "k", ps);
    CHECK(d.allowed == 1);
    CHECK(d.source == RL_SOURCE_FAIL_OPEN);
  }
  const std::string closed_url = url + "?failure_mode=closed";
  o.url = closed_url.c_str();
  {
    Lim lim(o);  // failure_mode 0: the URL's closed stands
    REQUIRE(lim.rc == RL_OK);
    const rl_decision d = check(lim.p, "k", ps);
    CHECK(d.allowed == 0);
    CHECK(d.source == RL_SOURCE_FAIL_CLOSED);
  }
  o.failure_mode = RL_FAIL_OPEN;  // an explicit option overrides the URL
  {
    Lim lim(o);
    REQUIRE(lim.rc == RL_OK);
    CHECK(check(lim.p, "k", ps).source == RL_SOURCE_FAIL_OPEN);
  }
}

TEST_CASE("limiter: TLS options on a rediss URL are checked too", "[limiter]") {
  const std::string url =
      "rediss://127.0.0.1:" + std::to_string(tollgate_test::free_port());
  rl_options o = RL_OPTIONS_INIT;
  o.url = url.c_str();
  o.connect_timeout_ms = 50;
  o.timeout_ms = 50;
  o.tls_verify = -1;
  CHECK(create_rc(o) == RL_OK);
  o.tls_verify = 1;
  CHECK(create_rc(o) == RL_OK);
  o.tls_verify = 2;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.tls_verify = -2;
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.tls_verify = 0;
  o.tls_cert_file = "/nonexistent/c.pem";  // a certificate needs its key
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
  o.tls_cert_file = nullptr;
  o.tls_key_file = "/nonexistent/k.pem";
  CHECK(create_rc(o) == RL_E_INVALID_ARG);
}

TEST_CASE("limiter: the C++ limiter refuses 0 or 17 policies itself",
          "[limiter]") {
  // The C ABI refuses these before the limiter sees them; the limiter's
  // own contract (limiter.hpp) is checked here, on the class itself.
  std::unique_ptr<tollgate::Limiter> lim;
  REQUIRE(tollgate::Limiter::create(tollgate::LimiterConfig{}, lim) ==
          tollgate::Errc::ok);
  std::vector<tollgate::Policy> ps(17);
  for (int i = 0; i < 17; ++i)
    REQUIRE(tollgate::make_policy(0, i + 1, 1000, 0, 0, ps[i]) ==
            tollgate::Errc::ok);
  tollgate::Decision d;
  CHECK(lim->check("k", std::span<const tollgate::Policy>(ps.data(), 0), 1,
                   d) == tollgate::Errc::invalid_arg);
  CHECK(lim->check("k", std::span<const tollgate::Policy>(ps.data(), 17), 1,
                   d) == tollgate::Errc::invalid_arg);
  CHECK(lim->check("k", std::span<const tollgate::Policy>(ps.data(), 16), 1,
                   d) == tollgate::Errc::ok);
  CHECK(lim->health().errors == 2);
}
