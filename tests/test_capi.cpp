// The C ABI: the bad-input matrix, async completion, health, versions.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/policy_specs.hpp"
#include "tollgate.h"

namespace {

struct Lim {
  rl_limiter *p = nullptr;
  explicit Lim(const rl_options *o = nullptr) {
    REQUIRE(rl_create(&p, o) == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
};

rl_policy_spec policy(int64_t limit, int64_t period_ms,
                      int32_t alg = RL_ALG_GCRA) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = period_ms;
  return p;
}

bool mentions(const char *needle) {
  return std::string(rl_last_error()).find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("bad input returns the right code and message", "[capi]") {
  Lim lim;
  const rl_policy_spec ok = policy(10, 1000);
  rl_decision d = RL_DECISION_INIT;

  SECTION("NULL limiter") {
    CHECK(rl_check(nullptr, &d, "k", 1, &ok, 1, 1) == RL_E_INVALID_ARG);
    CHECK(mentions("limiter"));
    CHECK(rl_reset(nullptr, "k", 1) == RL_E_INVALID_ARG);
    rl_health_info h = RL_HEALTH_INIT;
    CHECK(rl_health(nullptr, &h) == RL_E_INVALID_ARG);
  }
  SECTION("NULL key with a length") {
    CHECK(rl_check(lim.p, &d, nullptr, 5, &ok, 1, 1) == RL_E_KEY_INVALID);
    CHECK(mentions("NULL"));
    CHECK(rl_reset(lim.p, nullptr, 5) == RL_E_KEY_INVALID);
  }
  SECTION("empty key") {
    CHECK(rl_check(lim.p, &d, "", 0, &ok, 1, 1) == RL_E_KEY_INVALID);
    CHECK(mentions("empty"));
    CHECK(rl_check(lim.p, &d, nullptr, 0, &ok, 1, 1) == RL_E_KEY_INVALID);
  }
  SECTION("oversized key") {
    const std::string key(513, 'k');
    CHECK(rl_check(lim.p, &d, key.data(), key.size(), &ok, 1, 1) ==
          RL_E_KEY_TOO_LONG);
    CHECK(mentions("513"));
    CHECK(rl_check(lim.p, &d, key.data(), 512, &ok, 1, 1) == RL_OK);
  }
  SECTION("zero or negative limit") {
    const rl_policy_spec zero = policy(0, 1000), neg = policy(-3, 1000);
    CHECK(rl_check(lim.p, &d, "k", 1, &zero, 1, 1) == RL_E_POLICY);
    CHECK(mentions("limit"));
    CHECK(rl_check(lim.p, &d, "k", 1, &neg, 1, 1) == RL_E_POLICY);
  }
  SECTION("zero or negative period") {
    const rl_policy_spec zero = policy(10, 0), neg = policy(10, -1);
    CHECK(rl_check(lim.p, &d, "k", 1, &zero, 1, 1) == RL_E_POLICY);
    CHECK(mentions("period"));
    CHECK(rl_check(lim.p, &d, "k", 1, &neg, 1, 1) == RL_E_POLICY);
  }
  SECTION("unknown algorithm") {
    const rl_policy_spec bad = policy(10, 1000, 42);
    CHECK(rl_check(lim.p, &d, "k", 1, &bad, 1, 1) == RL_E_POLICY);
    CHECK(mentions("algorithm"));
  }
  SECTION("overflowing values") {
    const rl_policy_spec huge = policy(INT64_MAX, 1000);
    CHECK(rl_check(lim.p, &d, "k", 1, &huge, 1, 1) == RL_E_OVERFLOW);
    CHECK(mentions("limit"));
  }
  SECTION("a refund beyond 2^53 - 1 units, and one with nothing to give") {
    const int64_t too_far = -(int64_t{1} << 53);
    CHECK(rl_check(lim.p, &d, "k", 1, &ok, 1, too_far) == RL_E_INVALID_ARG);
    CHECK(mentions("2^53"));
    CHECK(rl_check(lim.p, &d, "k", 1, &ok, 1, INT64_MIN) == RL_E_INVALID_ARG);
    CHECK(rl_check(lim.p, &d, "k", 1, &ok, 1, -1) == RL_E_NOT_FOUND);
    CHECK(mentions("nothing to give back"));
    CHECK(rl_check(lim.p, &d, "k", 1, &ok, 1, too_far + 1) == RL_E_NOT_FOUND);
  }
  SECTION("no policies, too many, NULL array, duplicates") {
    CHECK(rl_check(lim.p, &d, "k", 1, &ok, 0, 1) == RL_E_INVALID_ARG);
    rl_policy_spec many[17];
    for (int i = 0; i < 17; ++i) many[i] = policy(i + 1, 1000);
    CHECK(rl_check(lim.p, &d, "k", 1, many, 17, 1) == RL_E_INVALID_ARG);
    CHECK(rl_check(lim.p, &d, "k", 1, static_cast<rl_policy *const *>(nullptr),
                   1, 1) == RL_E_INVALID_ARG);
    const rl_policy_spec dup[2] = {ok, ok};
    CHECK(rl_check(lim.p, &d, "k", 1, dup, 2, 1) == RL_E_POLICY);
    CHECK(mentions("repeats"));
  }
  SECTION("wrong struct versions") {
    rl_options o = RL_OPTIONS_INIT;
    rl_limiter *l = reinterpret_cast<rl_limiter *>(0x1);
    o.version = 0;
    CHECK(rl_create(&l, &o) == RL_E_VERSION);
    CHECK(l == nullptr);
    CHECK(mentions("rl_options"));
    o.version = 99;
    CHECK(rl_create(&l, &o) == RL_E_VERSION);
    rl_decision bad = RL_DECISION_INIT;
    bad.version = RL_DECISION_VERSION + 1;
    CHECK(rl_check(lim.p, &bad, "k", 1, &ok, 1, 1) == RL_E_VERSION);
    rl_policy_spec pv = ok;
    pv.version = 0;
    rl_policy *h0 = nullptr;
    CHECK(rl_policy_create(&h0, &pv) == RL_E_VERSION);
    CHECK(h0 == nullptr);
    pv.version = 7;
    CHECK(rl_policy_create(&h0, &pv) == RL_E_VERSION);
    CHECK(mentions("rl_policy_spec"));
    rl_health_info h = RL_HEALTH_INIT;
    h.version = 0;
    CHECK(rl_health(lim.p, &h) == RL_E_VERSION);
  }
  SECTION("rl_options version 3: spin_us, and older versions still work") {
    rl_options o = RL_OPTIONS_INIT;
    o.url = "redis://127.0.0.1:1";  // nothing is connected at creation
    rl_limiter *l = nullptr;
    o.spin_us = -2;
    CHECK(rl_create(&l, &o) == RL_E_INVALID_ARG);
    CHECK(mentions("spin_us"));
    o.spin_us = 1001;
    CHECK(rl_create(&l, &o) == RL_E_INVALID_ARG);
    for (int32_t v : {-1, 0, 1, 1000}) {
      o.spin_us = v;
      REQUIRE(rl_create(&l, &o) == RL_OK);
      rl_destroy(l);
    }
    // A version-2 caller's struct ends before spin_us: never read.
    o.spin_us = 12345;
    o.version = 2;
    REQUIRE(rl_create(&l, &o) == RL_OK);
    rl_destroy(l);
  }
  SECTION("bad options and URLs") {
    rl_limiter *l = nullptr;
    rl_options o = RL_OPTIONS_INIT;
    o.url = "foo://x";
    CHECK(rl_create(&l, &o) == RL_E_URL);
    CHECK(mentions("foo"));
    o.url = "no scheme at all";
    CHECK(rl_create(&l, &o) == RL_E_URL);
    // Malformed Redis URLs: a clear error that never echoes the password.
    for (const char *bad :
         {"redis://:hunter2@localhost:99999",
          "redis://:hunter2@localhost:6379/notadb",
          "redis://:hunter2@localhost:6379?bogus=1", "redis://:hunter2@:6379",
          "redis://:hunter2%zz@localhost",
          "rediss://:hunter2@localhost?tls_cert=/a.pem",
          "redis://:hunter2@localhost?tls_ca=/ca.pem",
          "unix://relative/path.sock"}) {
      INFO(bad);
      o.url = bad;
      CHECK(rl_create(&l, &o) == RL_E_URL);
      CHECK(l == nullptr);
      CHECK_FALSE(mentions("hunter2"));
      CHECK(mentions("url: "));
    }
    // A well-formed one creates a limiter without any I/O.
    o.url = "redis://:hunter2@127.0.0.1:1/3?timeout_ms=50&failure_mode=closed";
    REQUIRE(rl_create(&l, &o) == RL_OK);
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(l, &h) == RL_OK);
    CHECK(h.store_kind == RL_STORE_REDIS);
    CHECK(std::string(h.last_error).find("hunter2") == std::string::npos);
    rl_destroy(l);
    l = nullptr;
    // The Redis store refuses a client clock outside test builds' scripts.
    o.url = "redis://127.0.0.1:1";
    o.clock = [](void *) -> int64_t { return 1; };
#ifndef TOLLGATE_TESTING
    CHECK(rl_create(&l, &o) == RL_E_UNSUPPORTED);
#endif
    o.clock = nullptr;
    o.url = "memory://";
    o.max_key_len = 70000;
    CHECK(rl_create(&l, &o) == RL_E_INVALID_ARG);
    CHECK(mentions("max_key_len"));
    CHECK(rl_create(nullptr, nullptr) == RL_E_INVALID_ARG);
  }
  SECTION("NULL out pointers and callbacks") {
    CHECK(rl_check(lim.p, nullptr, "k", 1, &ok, 1, 1) == RL_E_INVALID_ARG);
    CHECK(rl_health(lim.p, nullptr) == RL_E_INVALID_ARG);
    CHECK(rl_check_async(lim.p, "k", 1, &ok, 1, 1, nullptr, nullptr) ==
          RL_E_INVALID_ARG);
  }
}

TEST_CASE("errors are counted and cleared", "[capi]") {
  Lim lim;
  const rl_policy_spec ok = policy(10, 1000);
  rl_decision d = RL_DECISION_INIT;
  CHECK(rl_check(lim.p, &d, "", 0, &ok, 1, 1) == RL_E_KEY_INVALID);
  CHECK(std::strlen(rl_last_error()) > 0);
  CHECK(rl_check(lim.p, &d, "k", 1, &ok, 1, 1) == RL_OK);
  CHECK(std::string(rl_last_error()).empty());
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.errors == 1);
  CHECK(h.checks == 1);
  CHECK(h.store_kind == RL_STORE_MEMORY);
  CHECK(h.live_keys == 1);
}

TEST_CASE("strerror and versions", "[capi]") {
  for (int c = 0; c >= RL_E_INTERNAL; --c) {
    CHECK(rl_strerror(c) != nullptr);
    CHECK(std::string(rl_strerror(c)) != "unknown error code");
  }
  CHECK(std::string(rl_strerror(-999)) == "unknown error code");
  CHECK(rl_version_number() == RL_VERSION_NUMBER);
  CHECK(std::string(rl_version_string()) == RL_VERSION_STRING);
  rl_destroy(nullptr);
}

TEST_CASE("async completes inline, exactly once, like rl_check", "[capi]") {
  // One fixed time for both limiters: with the real clock the second one
  // checks a few microseconds later, and a retry that crosses a millisecond
  // then rounds to one less.
  rl_options o = RL_OPTIONS_INIT;
  o.clock = [](void *) -> int64_t { return 1'700'000'000'000'000; };
  Lim a(&o), b(&o);
  const rl_policy_spec p = policy(3, 60000);
  struct Got {
    int calls = 0;
    int status = -100;
    rl_decision d = RL_DECISION_INIT;
  };
  for (int i = 0; i < 5; ++i) {
    Got got;
    REQUIRE(rl_check_async(
                a.p, "user", 4, &p, 1, 1,
                [](int status, const rl_decision *d, const char *, void *u) {
                  Got *g = static_cast<Got *>(u);
                  ++g->calls;
                  g->status = status;
                  g->d = *d;
                },
                &got) == RL_OK);
    CHECK(got.calls == 1);  // inline, before rl_check_async returned
    CHECK(got.status == RL_OK);
    rl_decision sync = RL_DECISION_INIT;
    REQUIRE(rl_check(b.p, &sync, "user", 4, &p, 1, 1) == RL_OK);
    CHECK(got.d.allowed == sync.allowed);
    CHECK(got.d.remaining == sync.remaining);
    CHECK(got.d.retry_after_ms == sync.retry_after_ms);
    CHECK(got.d.allowed == (i < 3 ? 1 : 0));
  }
  // Invalid input: an error code, and the callback never runs.
  int calls = 0;
  CHECK(rl_check_async(
            a.p, "", 0, &p, 1, 1,
            [](int, const rl_decision *, const char *, void *u) {
              ++*static_cast<int *>(u);
            },
            &calls) == RL_E_KEY_INVALID);
  CHECK(calls == 0);
}

TEST_CASE(
    "memory store: a refund never creates a key, and gives back only "
    "what was used",
    "[capi][refund]") {
  Lim lim;
  const rl_policy_spec p = policy(5, 60000, RL_ALG_FIXED_WINDOW);
  rl_decision d = RL_DECISION_INIT;
  CHECK(rl_check(lim.p, &d, "new", 3, &p, 1, -2) == RL_E_NOT_FOUND);
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.live_keys == 0);
  REQUIRE(rl_check(lim.p, &d, "k", 1, &p, 1, 4) == RL_OK);
  REQUIRE(rl_check(lim.p, &d, "k", 1, &p, 1, -3) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.remaining == 4);
  CHECK(d.retry_after_ms == 0);
  REQUIRE(rl_check(lim.p, &d, "k", 1, &p, 1, -100) == RL_OK);
  CHECK(d.remaining == 5);
  CHECK(d.reset_after_ms == 0);
  CHECK(rl_check(lim.p, &d, "k", 1, &p, 1, -1) == RL_E_NOT_FOUND);
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.live_keys == 1);
}

TEST_CASE("decisions report ms rounded up and the deciding policy", "[capi]") {
  rl_options o = RL_OPTIONS_INIT;
  o.clock = [](void *) -> int64_t { return 1'700'000'000'000'000; };
  Lim lim(&o);
  const rl_policy_spec ps[2] = {policy(3, 1000),
                                policy(2, 60000, RL_ALG_FIXED_WINDOW)};
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim.p, &d, "k", 1, ps, 2, 1) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.policy_index == 1);  // fewest remaining
  CHECK(d.remaining == 1);
  CHECK(d.limit == 2);
  REQUIRE(rl_check(lim.p, &d, "k", 1, ps, 2, 1) == RL_OK);
  REQUIRE(rl_check(lim.p, &d, "k", 1, ps, 2, 1) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 1);
  CHECK(d.retry_after_ms > 0);
  REQUIRE(rl_check(lim.p, &d, "k", 1, ps, 2, 5) == RL_OK);
  CHECK(d.retry_after_ms == RL_RETRY_NEVER);
  // 3 per second: T = 333334 us -> 334 ms after one unit.
  REQUIRE(rl_check(lim.p, &d, "other", 5, &ps[0], 1, 1) == RL_OK);
  CHECK(d.reset_after_ms == 334);
  CHECK(d.source == RL_SOURCE_STORE);
}

TEST_CASE("rate-limit headers are formatted by one function",
          "[capi][headers]") {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = 100;
  p.period_ms = 3600 * 1000;
  rl_decision d = RL_DECISION_INIT;
  d.allowed = 1;
  d.limit = 100;
  d.remaining = 99;
  d.reset_after_ms = 36000;
  rl_headers h = RL_HEADERS_INIT;
  REQUIRE(rl_headers_format(&h, &d, &p, "FREE", 4) == RL_OK);
  CHECK(std::string(h.ratelimit_policy) == "\"FREE\";q=100;w=3600");
  CHECK(std::string(h.ratelimit) == "\"FREE\";r=99;t=36");
  CHECK(std::string(h.x_ratelimit_limit) == "100");
  CHECK(std::string(h.x_ratelimit_remaining) == "99");
  CHECK(std::string(h.x_ratelimit_reset) == "36");
  CHECK(std::string(h.retry_after).empty());

  // Denied: Retry-After in whole seconds, rounded up.
  d.allowed = 0;
  d.remaining = 0;
  d.retry_after_ms = 35001;
  d.reset_after_ms = 3600000;
  REQUIRE(rl_headers_format(&h, &d, &p, nullptr, 0) == RL_OK);
  CHECK(std::string(h.ratelimit_policy) == "\"default\";q=100;w=3600");
  CHECK(std::string(h.ratelimit) == "\"default\";r=0;t=3600");
  CHECK(std::string(h.retry_after) == "36");
  d.retry_after_ms = 1;
  REQUIRE(rl_headers_format(&h, &d, &p, nullptr, 0) == RL_OK);
  CHECK(std::string(h.retry_after) == "1");
  // Never: one window.
  d.retry_after_ms = RL_RETRY_NEVER;
  REQUIRE(rl_headers_format(&h, &d, &p, nullptr, 0) == RL_OK);
  CHECK(std::string(h.retry_after) == "3600");

  // Names are sf-strings: quotes and backslashes escaped, controls dropped.
  const char name[] = "a\"b\\c\nd\xff";
  REQUIRE(rl_headers_format(&h, &d, &p, name, sizeof name - 1) == RL_OK);
  CHECK(std::string(h.ratelimit_policy) == "\"a\\\"b\\\\cd\";q=100;w=3600");

  // Sub-second windows round up to one second.
  p.period_ms = 250;
  REQUIRE(rl_headers_format(&h, &d, &p, "x", 1) == RL_OK);
  CHECK(std::string(h.ratelimit_policy) == "\"x\";q=100;w=1");

  // Bad input.
  CHECK(rl_headers_format(nullptr, &d, &p, nullptr, 0) == RL_E_INVALID_ARG);
  CHECK(rl_headers_format(&h, &d, &p, nullptr, 3) == RL_E_INVALID_ARG);
  const std::string longname(101, 'n');
  CHECK(rl_headers_format(&h, &d, &p, longname.data(), longname.size()) ==
        RL_E_INVALID_ARG);
  rl_policy_spec bad = p;
  bad.limit = 0;
  CHECK(rl_headers_format(&h, &d, &bad, nullptr, 0) == RL_E_POLICY);
  rl_headers wrong = RL_HEADERS_INIT;
  wrong.version = 9;
  CHECK(rl_headers_format(&wrong, &d, &p, nullptr, 0) == RL_E_VERSION);
}

TEST_CASE("policy handles: shared by threads, retained and released at once",
          "[capi][policy]") {
  rl_policy *p = nullptr;
  REQUIRE(rl_policy_parse(&p, "1000000/s", 9, nullptr) == RL_OK);
  Lim lim;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const std::string key = "k" + std::to_string(t);
      for (int i = 0; i < 2000; ++i) {
        rl_policy *mine = rl_policy_retain(p);
        rl_decision d = RL_DECISION_INIT;
        if (rl_check(lim.p, &d, key.data(), key.size(), &mine, 1, 1) != RL_OK)
          std::abort();
        rl_policy_release(mine);
      }
    });
  for (auto &t : threads) t.join();
  rl_policy_spec s = RL_POLICY_SPEC_INIT;
  REQUIRE(rl_policy_get(p, &s) == RL_OK);  // still alive: one reference left
  CHECK(s.limit == 1000000);
  CHECK(s.period_ms == 1000);
  rl_policy_release(p);
}

TEST_CASE("policy handles: a check's array holds pointers, one may be NULL",
          "[capi][policy]") {
  Lim lim;
  rl_policy *a = nullptr, *b = nullptr;
  REQUIRE(rl_policy_parse(&a, "5/s", 3, nullptr) == RL_OK);
  REQUIRE(rl_policy_parse(&b, "100 per hour, fixed_window", 26, nullptr) ==
          RL_OK);
  rl_policy *both[2] = {a, b};
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim.p, &d, "k", 1, both, 2, 1) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.policy_index == 0);  // 4 left of 5, 99 of 100
  both[1] = nullptr;
  CHECK(rl_check(lim.p, &d, "k", 1, both, 2, 1) == RL_E_INVALID_ARG);
  CHECK(mentions("policies[1]"));
  int calls = 0;
  CHECK(rl_check_async(
            lim.p, "k", 1, both, 2, 1,
            [](int, const rl_decision *, const char *, void *u) {
              ++*static_cast<int *>(u);
            },
            &calls) == RL_E_INVALID_ARG);
  CHECK(calls == 0);
  // Headers from the handle of the reporting policy (policy_index 0).
  rl_headers h = RL_HEADERS_INIT;
  REQUIRE(rl_headers_format(&h, &d, a, "fast", 4) == RL_OK);
  CHECK(std::string(h.ratelimit_policy) == "\"fast\";q=5;w=1");
  rl_policy_release(a);
  rl_policy_release(b);
}

namespace {
// rl_policy_parse of `text`: the code, and on success the policy's fields.
int parse(const std::string &text, rl_policy_spec &out, size_t &at) {
  rl_policy *p = nullptr;
  at = 12345;
  const int rc = rl_policy_parse(&p, text.data(), text.size(), &at);
  out = RL_POLICY_SPEC_INIT;
  if (rc == RL_OK) {
    REQUIRE(rl_policy_get(p, &out) == RL_OK);
    rl_policy_release(p);
  } else {
    CHECK(p == nullptr);
  }
  return rc;
}
}  // namespace

TEST_CASE("policy text: options, algorithm names and their errors",
          "[capi][policy]") {
  rl_policy_spec s;
  size_t at = 0;
  REQUIRE(parse("100/h burst=20", s, at) == RL_OK);
  CHECK(s.limit == 100);
  CHECK(s.period_ms == 3600 * 1000);
  CHECK(s.burst == 20);
  CHECK(s.algorithm == RL_ALG_GCRA);
  REQUIRE(parse("100 per 15m algorithm=token_bucket burst = 5", s, at) ==
          RL_OK);
  CHECK(s.algorithm == RL_ALG_TOKEN_BUCKET);
  CHECK(s.burst == 5);
  CHECK(s.period_ms == 15 * 60 * 1000);
  REQUIRE(parse("5000/d sliding_window", s, at) == RL_OK);
  CHECK(s.algorithm == RL_ALG_SLIDING_WINDOW);
  // An assignment to anything but burst or algorithm is refused where the
  // word starts, whatever it sorts before or after.
  for (const char *word : {"abc", "aaa", "zzz", "algorithmx"}) {
    INFO(word);
    const std::string text = std::string("100/h ") + word + "=gcra";
    CHECK(parse(text, s, at) == RL_E_POLICY);
    CHECK(at == 6);
    CHECK(mentions("unknown option"));
  }
  CHECK(parse("100/h algorithm", s, at) == RL_E_POLICY);
  CHECK(mentions("expected '=' after algorithm"));
  CHECK(parse("100/h burst", s, at) == RL_E_POLICY);
  CHECK(mentions("expected '=' after burst"));
}

TEST_CASE(
    "memory store: at a bound of one key, a key in an empty shard "
    "evicts the one in another shard",
    "[memory]") {
  rl_options o = RL_OPTIONS_INIT;
  o.max_keys = 1;
  o.shards = 64;
  Lim lim(&o);
  const rl_policy_spec p = policy(5, 3600 * 1000);
  for (int i = 0; i < 50; ++i) {
    const std::string key = "k" + std::to_string(i);
    rl_decision d = RL_DECISION_INIT;
    REQUIRE(rl_check(lim.p, &d, key.data(), key.size(), &p, 1, 1) == RL_OK);
    REQUIRE(d.allowed == 1);
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(lim.p, &h) == RL_OK);
    REQUIRE(h.live_keys == 1);
  }
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.evictions == 49);
}
