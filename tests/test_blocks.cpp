// Blocks (docs/algorithms.md, "Blocks"): the policy syntax and its errors,
// rl_block / rl_unblock's argument errors, and what the Redis store adds:
// a blocked key is answered from the deny cache without a round trip, a
// block set by one limiter holds for another, rl_unblock clears this
// limiter's cached denials, and the key listing does not show block
// hashes. The decisions themselves are pinned down by
// tests/vectors/block.json (test_vectors.cpp, on memory and Redis).
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

struct Lim {
  rl_limiter *p = nullptr;
  explicit Lim(const std::string &url = "", int32_t deny_cache = 0) {
    rl_options o = RL_OPTIONS_INIT;
    if (!url.empty()) o.url = url.c_str();
    o.failure_mode = url.empty() ? 0 : RL_FAIL_ERROR;
    o.deny_cache = deny_cache;
    const int rc = rl_create(&p, &o);
    INFO("rl_create: " << rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
  Lim(const Lim &) = delete;
  Lim &operator=(const Lim &) = delete;
};

rl_decision check(rl_limiter *lim, const std::string &key,
                  const rl_policy_spec &p, int64_t cost = 1) {
  rl_decision d = RL_DECISION_INIT;
  const int rc = rl_check(lim, &d, key.data(), key.size(), &p, 1, cost);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

rl_policy_spec spec(const char *text) {
  rl_policy *h = nullptr;
  size_t off = 0;
  const int rc = rl_policy_parse(&h, text, std::strlen(text), &off);
  INFO(text << ": " << rl_last_error());
  REQUIRE(rc == RL_OK);
  rl_policy_spec s = RL_POLICY_SPEC_INIT;
  REQUIRE(rl_policy_get(h, &s) == RL_OK);
  s.name = nullptr;  // points into the handle
  s.name_len = 0;
  rl_policy_release(h);
  return s;
}

long evalsha_calls(const tollgate_test::RedisServer &server) {
  const std::string info = server.command({"INFO", "commandstats"});
  const std::string tag = "cmdstat_evalsha:calls=";
  const size_t at = info.find(tag);
  return at == std::string::npos ? 0 : std::stol(info.substr(at + tag.size()));
}

}  // namespace

TEST_CASE("blocks: the policy text gives block and strikes",
          "[blocks][policy]") {
  const rl_policy_spec s = spec("5/m name=login block=15m strikes=3/h");
  CHECK(s.limit == 5);
  CHECK(s.period_ms == 60000);
  CHECK(s.block_ms == 900000);
  CHECK(s.strikes == 3);
  CHECK(s.strikes_period_ms == 3600000);
  const rl_policy_spec b = spec("10/s block=1.5s");
  CHECK(b.block_ms == 1500);
  CHECK(b.strikes == 0);
  CHECK(b.strikes_period_ms == 0);
}

TEST_CASE("blocks: malformed block and strikes name the byte at fault",
          "[blocks][policy]") {
  struct Bad {
    const char *text;
    int code;
    size_t offset;
    const char *says;
  };
  const Bad bad[] = {
      {"5/m strikes=3/h", RL_E_POLICY, 4, "strikes need a block"},
      {"5/m block=15m strikes=3", RL_E_POLICY, 23, "expected '/'"},
      {"5/m block=15m strikes=0/h", RL_E_POLICY, 22, "must be >= 1"},
      {"5/m block=0ms", RL_E_POLICY, 10, "at least 1 ms"},
      {"5/m block=15", RL_E_POLICY, 12, "expected a unit"},
      {"5/m block=m", RL_E_POLICY, 10, "expected a number"},
      {"5/m block=1m block=2m", RL_E_POLICY, 13, "block given twice"},
      {"5/m block 1m", RL_E_POLICY, 9, "expected '=' after block"},
      {"5/m block=2000000000000s", RL_E_OVERFLOW, 10, "2^40"},
  };
  for (const Bad &b : bad) {
    INFO(b.text);
    rl_policy *h = nullptr;
    size_t off = 999;
    const int rc = rl_policy_parse(&h, b.text, std::strlen(b.text), &off);
    const std::string msg = rl_last_error();
    INFO(msg);
    CHECK(rc == b.code);
    CHECK(h == nullptr);
    CHECK(off == b.offset);
    CHECK(msg.find(b.says) != std::string::npos);
  }
}

TEST_CASE("blocks: rl_policy_create checks the block fields",
          "[blocks][policy]") {
  struct Bad {
    int64_t block_ms, strikes, strikes_period_ms;
    int code;
  };
  const Bad bad[] = {
      {-1, 0, 0, RL_E_POLICY},
      {0, 3, 60000, RL_E_POLICY},     // strikes without a block
      {1000, 3, 0, RL_E_POLICY},      // strikes without their period
      {1000, 0, 60000, RL_E_POLICY},  // a period without strikes
      {(int64_t{1} << 40) + 1, 0, 0, RL_E_OVERFLOW},
  };
  for (const Bad &b : bad) {
    INFO(b.block_ms << " " << b.strikes << " " << b.strikes_period_ms << ": "
                    << rl_last_error());
    rl_policy_spec s = RL_POLICY_SPEC_INIT;
    s.limit = 5;
    s.period_ms = 1000;
    s.block_ms = b.block_ms;
    s.strikes = b.strikes;
    s.strikes_period_ms = b.strikes_period_ms;
    rl_policy *h = nullptr;
    CHECK(rl_policy_create(&h, &s) == b.code);
    CHECK(h == nullptr);
    // The message names the field.
    const std::string m = rl_last_error();
    CHECK(m.rfind("policy: ", 0) == 0);
    CHECK((m.find("block") != std::string::npos ||
           m.find("strikes") != std::string::npos));
  }
  // A version-2 spec has no block fields: they are not read.
  rl_policy_spec v2 = RL_POLICY_SPEC_INIT;
  v2.version = 2;
  v2.limit = 5;
  v2.period_ms = 1000;
  v2.block_ms = -7;
  rl_policy *h = nullptr;
  REQUIRE(rl_policy_create(&h, &v2) == RL_OK);
  rl_policy_spec back = RL_POLICY_SPEC_INIT;
  REQUIRE(rl_policy_get(h, &back) == RL_OK);
  CHECK(back.block_ms == 0);
  rl_policy_release(h);
}

TEST_CASE("blocks: rl_block and rl_unblock refuse bad arguments",
          "[blocks][limiter]") {
  Lim lim;
  for (int64_t d : {int64_t{0}, int64_t{-1}, (int64_t{1} << 40) + 1}) {
    INFO(d);
    CHECK(rl_block(lim.p, "k", 1, d) == RL_E_INVALID_ARG);
    CHECK(std::string(rl_last_error()).find("block: the duration") !=
          std::string::npos);
  }
  CHECK(rl_block(lim.p, "", 0, 1000) == RL_E_KEY_INVALID);
  CHECK(rl_block(lim.p, nullptr, 3, 1000) == RL_E_KEY_INVALID);
  CHECK(rl_block(nullptr, "k", 1, 1000) == RL_E_INVALID_ARG);
  CHECK(rl_unblock(lim.p, "", 0) == RL_E_KEY_INVALID);
  CHECK(rl_unblock(nullptr, "k", 1) == RL_E_INVALID_ARG);
  CHECK(rl_unblock(lim.p, "never-blocked", 13) == RL_OK);
  // Nothing was blocked by the refusals.
  CHECK(check(lim.p, "k", spec("1/s")).allowed == 1);
}

TEST_CASE(
    "blocks on Redis: the deny cache answers a blocked key, and "
    "rl_unblock clears it",
    "[blocks][redis]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url(), 1);
  const rl_policy_spec p = spec("1/s block=1h");
  REQUIRE(check(lim.p, "k", p).allowed == 1);
  const rl_decision blocked = check(lim.p, "k", p);
  REQUIRE(blocked.allowed == 0);
  CHECK(blocked.source == RL_SOURCE_STORE);
  CHECK(blocked.retry_after_ms > 3590000);
  // Every later check is answered locally: no script runs.
  const long before = evalsha_calls(server);
  for (int i = 0; i < 50; ++i) {
    const rl_decision d = check(lim.p, "k", p);
    CHECK(d.allowed == 0);
    CHECK(d.source == RL_SOURCE_DENY_CACHE);
    CHECK(d.retry_after_ms > 3590000);
  }
  CHECK(evalsha_calls(server) == before);
  // The block is in Redis, with a TTL of about the block.
  const long long pttl = server.query({"PTTL", "tollgate:v2:{k}:!"}).integer;
  CHECK(pttl > 3590000);
  CHECK(pttl <= 3600000);
  REQUIRE(rl_unblock(lim.p, "k", 1) == RL_OK);
  CHECK(server.query({"EXISTS", "tollgate:v2:{k}:!"}).integer == 0);
  const rl_decision after = check(lim.p, "k", p, 0);
  CHECK(after.source == RL_SOURCE_STORE);
}

TEST_CASE(
    "blocks on Redis: a block set by one limiter holds for another, "
    "and the key listing shows states only",
    "[blocks][redis]") {
  tollgate_test::RedisServer server;
  Lim a(server.url(), -1), b(server.url(), -1);
  const rl_policy_spec p = spec("10/m");
  REQUIRE(check(a.p, "user:1", p).allowed == 1);
  REQUIRE(rl_block(a.p, "user:1", 6, 120000) == RL_OK);
  const rl_decision d = check(b.p, "user:1", p);
  CHECK(d.allowed == 0);
  CHECK(d.remaining == 0);
  CHECK(d.retry_after_ms > 110000);
  CHECK(d.retry_after_ms <= 120000);
  // A refund still runs; the key stays blocked.
  CHECK(check(b.p, "user:1", p, -1).allowed == 1);
  CHECK(check(a.p, "user:1", p).allowed == 0);

  rl_policy *h = nullptr;
  REQUIRE(rl_policy_parse(&h, "10/m", 4, nullptr) == RL_OK);
  rl_keys *it = nullptr;
  REQUIRE(rl_keys_open(a.p, &h, 1, &it) == RL_OK);
  rl_policy_release(h);
  int listed = 0;
  rl_key_info info = RL_KEY_INFO_INIT;
  int rc;
  while ((rc = rl_keys_next(it, &info)) == RL_OK) {
    ++listed;
    CHECK(std::string(info.key, info.key_len) == "user:1");
  }
  CHECK(rc == RL_E_DONE);
  CHECK(listed == 1);  // the state, not the block
  // An older rl_key_info, whose embedded spec was smaller, is refused.
  rl_key_info old = RL_KEY_INFO_INIT;
  old.version = 2;
  CHECK(rl_keys_next(it, &old) == RL_E_VERSION);
  rl_keys_free(it);

  // rl_reset lifts the block with the states.
  REQUIRE(rl_reset(b.p, "user:1", 6) == RL_OK);
  CHECK(server.query({"EXISTS", "tollgate:v2:{user:1}:!"}).integer == 0);
  CHECK(check(a.p, "user:1", p).allowed == 1);
}

TEST_CASE(
    "blocks on Redis with the deny cache: strikes all reach the store, "
    "and a shorter rl_block is seen at once",
    "[blocks][redis]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url(), 1);
  // Strikes: the denials before the block are not cached (each must count
  // in Redis); the one that blocks is.
  const rl_policy_spec p = spec("1/s block=10m strikes=3/h");
  REQUIRE(check(lim.p, "s", p).allowed == 1);
  for (int i = 0; i < 2; ++i) {
    const rl_decision d = check(lim.p, "s", p);
    CHECK(d.allowed == 0);
    CHECK(d.source == RL_SOURCE_STORE);
  }
  // The third denial blocks for 10 minutes, and is cached from then on.
  const rl_decision third = check(lim.p, "s", p);
  CHECK(third.allowed == 0);
  CHECK(third.source == RL_SOURCE_STORE);
  CHECK(third.retry_after_ms > 590000);
  const std::string u = server.query({"GET", "tollgate:v2:{s}:!"}).str;
  CHECK_FALSE(u.empty());  // blocked
  CHECK(check(lim.p, "s", p).source == RL_SOURCE_DENY_CACHE);

  // A block shortened by hand: this limiter's cached denial goes.
  const rl_policy_spec q = spec("1/s block=5m");
  REQUIRE(check(lim.p, "t", q).allowed == 1);
  REQUIRE(check(lim.p, "t", q).retry_after_ms > 290000);
  CHECK(check(lim.p, "t", q).source == RL_SOURCE_DENY_CACHE);
  REQUIRE(rl_block(lim.p, "t", 1, 2000) == RL_OK);
  const rl_decision d = check(lim.p, "t", q);
  CHECK(d.source == RL_SOURCE_STORE);
  CHECK(d.retry_after_ms <= 2000);
}

namespace {
int64_t out_of_range_clock(void *) {
  return -1;
}
}  // namespace

TEST_CASE("blocks and several keys: a memory clock out of range is refused",
          "[blocks][check_keys][limiter]") {
  rl_options o = RL_OPTIONS_INIT;
  o.clock = out_of_range_clock;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  CHECK(rl_block(lim, "k", 1, 1000) == RL_E_OVERFLOW);
  CHECK(rl_unblock(lim, "k", 1) == RL_E_OVERFLOW);
  rl_policy *h = nullptr;
  REQUIRE(rl_policy_parse(&h, "5/s", 3, nullptr) == RL_OK);
  const char *keys[2] = {"a", "b"};
  const size_t lens[2] = {1, 1};
  rl_policy *ps[2] = {h, h};
  const size_t ns[2] = {1, 1};
  rl_decision d = RL_DECISION_INIT;
  CHECK(rl_check_keys(lim, &d, keys, lens, 2, ps, ns, 1) == RL_E_OVERFLOW);
  CHECK(std::string(rl_last_error()).find("clock") != std::string::npos);
  rl_policy_release(h);
  rl_destroy(lim);
}
