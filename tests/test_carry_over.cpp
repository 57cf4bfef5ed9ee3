// Issue 15 item 2: a key's state is kept under the policy's identity (its
// name, or its position in the list), so a changed limit keeps what was
// used, on the memory store and on a real Redis, by the rules of
// docs/algorithms.md ("Identity and limit changes"); and bad names are
// refused with a clear error. tests/vectors/carry_over.json replays the
// same rules step by step.
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

// About 32 years: no window boundary and no visible refill during a test.
constexpr int64_t kLong = 1'000'000'000'000;

rl_policy_spec spec(int32_t alg, int64_t limit, const char *name = nullptr) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = kLong;
  if (name) {
    p.name = name;
    p.name_len = std::char_traits<char>::length(name);
  }
  return p;
}

struct Lim {
  rl_limiter *p = nullptr;
  explicit Lim(const std::string &url) {
    rl_options o = RL_OPTIONS_INIT;
    if (!url.empty()) o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    o.deny_cache = -1;
    REQUIRE(rl_create(&p, &o) == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
  rl_decision check(const std::string &key, const rl_policy_spec &s,
                    int64_t cost) {
    rl_decision d = RL_DECISION_INIT;
    REQUIRE(rl_check(p, &d, key.data(), key.size(), &s, 1, cost) == RL_OK);
    return d;
  }
};

// Every algorithm on `lim`: 60 used of 100, then the limit goes to 1000,
// then to 50.
void limit_changes(Lim &lim) {
  for (int32_t alg = 0; alg < 4; ++alg) {
    INFO("algorithm " << alg);
    const std::string key = "sub-" + std::to_string(alg);
    REQUIRE(lim.check(key, spec(alg, 100), 60).remaining == 40);
    const bool time_shape = alg == RL_ALG_GCRA || alg == RL_ALG_TOKEN_BUCKET;
    // Up to 1000: GCRA and the bucket keep the share used (600 of 1000);
    // the windows keep the count (60 of 1000).
    rl_decision d = lim.check(key, spec(alg, 1000), 0);
    CHECK(d.allowed == 1);
    CHECK(d.limit == 1000);
    CHECK(d.remaining == (time_shape ? 400 : 940));
    // Down to 50 from there: the windows have used 60 > 50 (denied);
    // GCRA and the bucket: 60% of 50 used, 20 left.
    d = lim.check(key, spec(alg, 50), 1);
    if (time_shape) {
      CHECK(d.allowed == 1);
      CHECK(d.remaining == 19);
    } else {
      CHECK(d.allowed == 0);
      CHECK(d.remaining == 0);
      CHECK(d.retry_after_ms > 0);
    }
  }
}

// Names and positions.
void identities(Lim &lim) {
  const rl_policy_spec day = spec(RL_ALG_FIXED_WINDOW, 10, "day");
  const rl_policy_spec other = spec(RL_ALG_FIXED_WINDOW, 20);
  rl_decision d = RL_DECISION_INIT;
  // "day" at position 1, charged 3 times.
  const rl_policy_spec pair[2] = {other, day};
  for (int i = 0; i < 3; ++i)
    REQUIRE(rl_check(lim.p, &d, "who", 3, pair, 2, 1) == RL_OK);
  // Alone (position 0) it is found by its name: 7 left.
  CHECK(lim.check("who", day, 0).remaining == 7);
  // Unnamed, position 0 is `other`'s state (3 used of 20), whatever limit.
  CHECK(lim.check("who", spec(RL_ALG_FIXED_WINDOW, 5), 0).remaining == 2);
  // Another shape at the same identity reads nothing: fresh.
  CHECK(lim.check("who", spec(RL_ALG_GCRA, 5), 0).remaining == 5);
  // GCRA and the token bucket share the time shape.
  REQUIRE(lim.check("tb", spec(RL_ALG_GCRA, 10), 4).remaining == 6);
  CHECK(lim.check("tb", spec(RL_ALG_TOKEN_BUCKET, 10), 0).remaining == 6);
  // A renamed policy is another identity: fresh.
  CHECK(lim.check("who", spec(RL_ALG_FIXED_WINDOW, 10, "week"), 0).remaining ==
        10);
}

}  // namespace

TEST_CASE("carry-over: a limit change keeps usage, memory store", "[carry]") {
  Lim lim("");
  limit_changes(lim);
  identities(lim);
}

TEST_CASE("carry-over: a limit change keeps usage, Redis", "[carry][redis]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  limit_changes(lim);
  identities(lim);
  // A second process sees the same: the state is in Redis, not the limiter.
  Lim other(server.url());
  CHECK(other.check("sub-2", spec(RL_ALG_FIXED_WINDOW, 1000), 0).remaining ==
        940);  // the denied check at 50 charged nothing
}

TEST_CASE("carry-over: policy names are validated, in the struct and text",
          "[carry][policy]") {
  rl_policy *p = nullptr;
  for (const char *bad : {"1day", "_x", "a b", "a:b", "a}", "\xc3\xa9t\xc3\xa9",
                          "abcdefghijabcdefghijabcdefghijabc"}) {
    INFO(bad);
    rl_policy_spec s = spec(RL_ALG_GCRA, 10, bad);
    CHECK(rl_policy_create(&p, &s) == RL_E_POLICY);
    CHECK(p == nullptr);
    CHECK(std::string(rl_last_error()).find("name") != std::string::npos);
  }
  // The first letter may be any of A-Z and a-z, the ends included.
  for (const char *good : {"A", "Z1", "a.b", "z-_"}) {
    INFO(good);
    rl_policy_spec s = spec(RL_ALG_GCRA, 10, good);
    CHECK(rl_policy_create(&p, &s) == RL_OK);
    rl_policy_release(p);
  }
  for (const char *bad : {"@x", "[x", "`x", "{x"}) {  // just outside them
    INFO(bad);
    rl_policy_spec s = spec(RL_ALG_GCRA, 10, bad);
    CHECK(rl_policy_create(&p, &s) == RL_E_POLICY);
  }
  // A NULL name with a length.
  rl_policy_spec s = spec(RL_ALG_GCRA, 10);
  s.name_len = 3;
  CHECK(rl_policy_create(&p, &s) == RL_E_INVALID_ARG);
  // 32 bytes is the most; it reads back.
  const std::string longest(RL_MAX_NAME_LEN, 'n');
  s = spec(RL_ALG_GCRA, 10, longest.c_str());
  REQUIRE(rl_policy_create(&p, &s) == RL_OK);
  rl_policy_spec back = RL_POLICY_SPEC_INIT;
  REQUIRE(rl_policy_get(p, &back) == RL_OK);
  CHECK(std::string(back.name, back.name_len) == longest);
  rl_policy_release(p);
  // A version-1 struct has no name fields: they are not read or written.
  rl_policy_spec v1 = spec(RL_ALG_GCRA, 10, "ignored");
  v1.version = 1;
  REQUIRE(rl_policy_create(&p, &v1) == RL_OK);
  rl_policy_spec out1 = RL_POLICY_SPEC_INIT;
  out1.version = 1;
  out1.name = "untouched";
  REQUIRE(rl_policy_get(p, &out1) == RL_OK);
  CHECK(std::string(out1.name) == "untouched");
  rl_policy_release(p);

  // The text: name=..., with the offset of a bad one.
  size_t at = 99;
  const std::string text = "100/h name=daily.v2-x, burst=5";
  REQUIRE(rl_policy_parse(&p, text.data(), text.size(), &at) == RL_OK);
  REQUIRE(rl_policy_get(p, &back) == RL_OK);
  CHECK(std::string(back.name, back.name_len) == "daily.v2-x");
  CHECK(back.burst == 5);
  rl_policy_release(p);
  const std::string digit = "100/h name=9lives";
  CHECK(rl_policy_parse(&p, digit.data(), digit.size(), &at) == RL_E_POLICY);
  CHECK(at == 11);
  CHECK(std::string(rl_last_error()).find("letter") != std::string::npos);
  const std::string twice = "100/h name=a name=b";
  CHECK(rl_policy_parse(&p, twice.data(), twice.size(), &at) == RL_E_POLICY);
  CHECK(at == 13);
  const std::string empty = "100/h name=";
  CHECK(rl_policy_parse(&p, empty.data(), empty.size(), &at) == RL_E_POLICY);
  CHECK(at == 11);

  // Two policies of one check with one name: refused, naming both.
  Lim lim("");
  const rl_policy_spec two[2] = {spec(RL_ALG_GCRA, 10, "x"),
                                 spec(RL_ALG_FIXED_WINDOW, 5, "x")};
  rl_decision d = RL_DECISION_INIT;
  CHECK(rl_check(lim.p, &d, "k", 1, two, 2, 1) == RL_E_POLICY);
  CHECK(std::string(rl_last_error()).find("name of policy 0") !=
        std::string::npos);
}
