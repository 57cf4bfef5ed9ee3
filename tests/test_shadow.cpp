// Shadow mode (docs/algorithms.md, "Shadow mode"): a policy (or a whole
// limiter) in shadow mode is evaluated and its state kept as if enforced,
// but its denials are answered allowed with rl_decision.shadow = 1; turning
// it off keeps usage. Memory and Redis (single, several policies, several
// keys, joined async checks).
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "support/handles.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

using tollgate_test::check;
using tollgate_test::fresh_key;
using tollgate_test::health;
using tollgate_test::Limiter;
using tollgate_test::Policy;

// A limiter on `url` ("" for the memory store), with this file's timeouts.
tollgate_test::LimiterConfig config(const std::string &url = "",
                                    int32_t shadow = 0,
                                    int32_t failure_mode = RL_FAIL_ERROR) {
  return {.url = url,
          .failure_mode = failure_mode,
          .shadow = shadow,
          .connect_timeout_ms = 300,
          .timeout_ms = 2000};
}

void policy_shadow(const std::string &url) {
  Limiter lim(config(url));
  Policy shadow("1/m shadow");
  Policy enforced("1/m");
  const std::string key = fresh_key("sh");

  rl_decision d = check(lim.p, key, {shadow.p});
  CHECK(d.allowed == 1);
  CHECK(d.shadow == 0);
  // The second would be denied: allowed, and says what it would have been.
  for (int i = 0; i < 3; ++i) {
    d = check(lim.p, key, {shadow.p});
    CHECK(d.allowed == 1);
    CHECK(d.shadow == 1);
    CHECK(d.remaining == 0);
    CHECK(d.retry_after_ms > 50000);
    CHECK(d.retry_after_ms <= 60000);
  }
  CHECK(health(lim.p).shadow_denied == 3);
  // A shadow denial charges nothing: the wait is still under a minute, as
  // after the one allowed check.
  // Turning shadow off keeps usage: the same identity (position 0) is now
  // enforced and denies.
  d = check(lim.p, key, {enforced.p});
  CHECK(d.allowed == 0);
  CHECK(d.shadow == 0);
  CHECK(d.retry_after_ms > 50000);

  // A shadow policy next to an enforced one: the enforced one is charged
  // every time; the shadow one reports its would-be denial.
  Policy ten("10/m name=enforced");
  Policy one("1/m name=trial shadow");
  const std::string key2 = fresh_key("mixed");
  CHECK(check(lim.p, key2, {ten.p, one.p}).shadow == 0);
  d = check(lim.p, key2, {ten.p, one.p});
  CHECK(d.allowed == 1);
  CHECK(d.shadow == 1);
  CHECK(d.policy_index == 1);
  CHECK(d.limit == 1);
  d = check(lim.p, key2, {ten.p}, 0);  // peek
  CHECK(d.remaining == 8);

  // A shadow policy with a block never blocks: its denials are not
  // enforced, so they strike nothing.
  Policy blocking("1/m block=1h shadow name=b");
  Policy plenty("100/m name=other");
  const std::string key3 = fresh_key("block");
  check(lim.p, key3, {blocking.p});
  CHECK(check(lim.p, key3, {blocking.p}).shadow == 1);
  d = check(lim.p, key3, {plenty.p});
  CHECK(d.allowed == 1);
  CHECK(d.shadow == 0);

  // Several keys: a shadow denial on one key does not deny the others.
  Policy per_key("1/m shadow");
  const std::string a = fresh_key("ka"), b = fresh_key("kb");
  const char *keys[] = {a.c_str(), b.c_str()};
  const size_t lens[] = {a.size(), b.size()};
  rl_policy *ps[] = {per_key.p, ten.p};
  const size_t counts[] = {1, 1};
  rl_decision dk = RL_DECISION_INIT;
  REQUIRE(rl_check_keys(lim.p, &dk, keys, lens, 2, ps, counts, 1) == RL_OK);
  CHECK(dk.shadow == 0);
  REQUIRE(rl_check_keys(lim.p, &dk, keys, lens, 2, ps, counts, 1) == RL_OK);
  CHECK(dk.allowed == 1);
  CHECK(dk.shadow == 1);
  CHECK(dk.policy_index == 0);
  CHECK(check(lim.p, b, {ten.p}, 0).remaining == 8);
}

void limiter_shadow(const std::string &url) {
  Limiter lim(config(url, 1));
  Policy p("1/m");
  const std::string key = fresh_key("lim");
  CHECK(check(lim.p, key, {p.p}).shadow == 0);
  rl_decision d = check(lim.p, key, {p.p});
  CHECK(d.allowed == 1);
  CHECK(d.shadow == 1);
  CHECK(d.retry_after_ms > 0);
  // A blocked key too.
  const std::string blocked = fresh_key("blocked");
  REQUIRE(rl_block(lim.p, blocked.data(), blocked.size(), 60000) == RL_OK);
  d = check(lim.p, blocked, {p.p});
  CHECK(d.allowed == 1);
  CHECK(d.shadow == 1);
  CHECK(health(lim.p).shadow_denied == 2);
  // The same key through an enforcing limiter: usage was kept.
  Limiter enforcing(config(url));
  if (!url.empty()) CHECK(check(enforcing.p, key, {p.p}).allowed == 0);
}

}  // namespace

TEST_CASE("shadow: a shadow policy allows, reports and keeps usage",
          "[shadow]") {
  SECTION("memory") {
    policy_shadow("");
  }
  SECTION("redis") {
    tollgate_test::RedisServer server;
    policy_shadow(server.url());
  }
}

TEST_CASE("shadow: a shadow limiter allows every denial", "[shadow]") {
  SECTION("memory") {
    limiter_shadow("");
  }
  SECTION("redis") {
    tollgate_test::RedisServer server;
    limiter_shadow(server.url());
  }
  SECTION("redis down, fail closed") {
    tollgate_test::RedisServer server;
    const std::string url = server.url();
    server.kill9();
    Limiter lim(config(url, 1, RL_FAIL_CLOSED));
    Policy p("10/s");
    const rl_decision d = check(lim.p, "k", {p.p});
    CHECK(d.allowed == 1);
    CHECK(d.shadow == 1);
    CHECK(d.source == RL_SOURCE_FAIL_CLOSED);
  }
}

TEST_CASE("shadow: joined async checks on Redis", "[shadow][redis]") {
  tollgate_test::RedisServer server;
  Limiter lim(config(server.url()));
  Policy p("1/m shadow");
  struct Tally {
    std::mutex mu;
    std::condition_variable cv;
    int done = 0, allowed = 0, shadowed = 0, errors = 0;
  } t;
  auto cb = [](int status, const rl_decision *d, const char *, void *user) {
    auto *t = static_cast<Tally *>(user);
    std::lock_guard<std::mutex> lock(t->mu);
    if (status != RL_OK) {
      ++t->errors;
    } else {
      t->allowed += d->allowed;
      t->shadowed += d->shadow;
    }
    ++t->done;
    t->cv.notify_all();
  };
  const int n = 200;
  for (int i = 0; i < n; ++i)
    REQUIRE(rl_check_async(lim.p, "joined", 6, &p.p, 1, 1, cb, &t) == RL_OK);
  std::unique_lock<std::mutex> lock(t.mu);
  REQUIRE(t.cv.wait_for(lock, std::chrono::seconds(20),
                        [&] { return t.done == n; }));
  CHECK(t.errors == 0);
  CHECK(t.allowed == n);
  CHECK(t.shadowed == n - 1);
}

TEST_CASE("shadow: bad input and older structs", "[shadow][policy]") {
  rl_policy *h = nullptr;
  rl_policy_spec spec = RL_POLICY_SPEC_INIT;
  spec.limit = 10;
  spec.period_ms = 1000;
  spec.flags = 2;
  CHECK(rl_policy_create(&h, &spec) == RL_E_POLICY);
  CHECK(std::string(rl_last_error()).find("flags") != std::string::npos);
  spec.flags = RL_POLICY_SHADOW;
  REQUIRE(rl_policy_create(&h, &spec) == RL_OK);
  rl_policy_spec back = RL_POLICY_SPEC_INIT;
  REQUIRE(rl_policy_get(h, &back) == RL_OK);
  CHECK(back.flags == RL_POLICY_SHADOW);
  rl_policy_release(h);
  struct BadText {
    const char *text, *says;
  };
  for (const BadText &b :
       {BadText{"10/s shadow shadow", "shadow given twice"},
        BadText{"10/s shadow=1", "unknown option"},
        BadText{"10/s gcra token_bucket", "algorithm given twice"},
        BadText{"10 s", "as in \"100/h\" or \"100 per 15m\""}}) {
    INFO(b.text);
    h = nullptr;
    CHECK(rl_policy_parse(&h, b.text, std::strlen(b.text), nullptr) ==
          RL_E_POLICY);
    CHECK(h == nullptr);
    CHECK(std::string(rl_last_error()).find(b.says) != std::string::npos);
  }

  rl_options o = RL_OPTIONS_INIT;
  o.shadow = 2;
  rl_limiter *lim = nullptr;
  CHECK(rl_create(&lim, &o) == RL_E_INVALID_ARG);
  CHECK(std::string(rl_last_error()).find("shadow") != std::string::npos);
  CHECK(rl_options_set(&o, "shadow", "on") == RL_OK);
  CHECK(o.shadow == 1);
  CHECK(rl_options_set(&o, "shadow", "3") == RL_E_INVALID_ARG);

  // A caller built against version 1 of rl_decision: nothing is written
  // past its end.
  Limiter l(config());
  Policy p("1/m shadow");
  rl_decision d = RL_DECISION_INIT;
  d.version = 1;
  d.shadow = 77;
  REQUIRE(rl_check(l.p, &d, "v1", 2, &p.p, 1, 1) == RL_OK);
  REQUIRE(rl_check(l.p, &d, "v1", 2, &p.p, 1, 1) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.shadow == 77);
}
