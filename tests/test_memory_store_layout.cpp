// The memory store's one-cache-line layout: keys at and past the inline
// size (out of line), short keys that move out of line when they gain a
// second policy, the table growing under a shard's keys, backward-shift
// deletion under heavy churn (checked against a reference map), and the
// bound under evictions spread over shards.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tollgate/memory_store.hpp"

using namespace tollgate;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000;

Policy make(Algorithm a, int64_t limit, int64_t period_ms) {
  Policy p;
  REQUIRE(make_policy(static_cast<int32_t>(a), limit, period_ms, 0, 0, p) ==
          Errc::ok);
  return p;
}

bool hit(MemoryStore &s, std::string_view key, const Policy &p, int64_t now,
         int64_t cost = 1) {
  Outcome o;
  return s.check(key, std::span<const Policy>(&p, 1), now, cost, &o);
}

int64_t remaining(MemoryStore &s, std::string_view key, const Policy &p,
                  int64_t now) {
  Outcome o;
  s.check(key, std::span<const Policy>(&p, 1), now, 0, &o);
  return o.remaining;
}

}  // namespace

TEST_CASE("memory layout: keys inline, at the edge and out of line",
          "[memory]") {
  MemoryStore s({1000, 1});
  const Policy p = make(Algorithm::fixed_window, 3, 60000);
  std::vector<std::string> keys;
  // 18 bytes fit inline; 19 and longer go out of line, up to the limiter's
  // largest max_key_len (65536) and past 16 bits of length.
  for (size_t len :
       {size_t{1}, size_t{17}, size_t{18}, size_t{19}, size_t{24}, size_t{300},
        size_t{65535}, size_t{65536}, size_t{70000}}) {
    keys.push_back(std::string(len, 'k'));
    keys.push_back(std::string(len - 1, 'k') + 'z');  // differs at the end
  }
  for (const std::string &k : keys) REQUIRE(hit(s, k, p, kT0));
  for (const std::string &k : keys) REQUIRE(hit(s, k, p, kT0, 1));
  for (const std::string &k : keys) {
    INFO(k.size());
    CHECK(remaining(s, k, p, kT0) == 1);
  }
  CHECK(s.stats().live_keys == keys.size());
  for (size_t i = 0; i < keys.size(); i += 2) CHECK(s.reset(keys[i]));
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO(keys[i].size());
    CHECK(remaining(s, keys[i], p, kT0) == (i % 2 == 0 ? 3 : 1));
  }
  CHECK(s.stats().live_keys == keys.size() / 2);
}

TEST_CASE("memory layout: a short key moves out of line with a 2nd policy",
          "[memory]") {
  MemoryStore s({1000, 1});
  // Named: each is also checked alone (an unnamed one is known by its
  // position in the list).
  Policy a = make(Algorithm::gcra, 5, 60000);
  Policy b = make(Algorithm::fixed_window, 7, 60000);
  Policy c = make(Algorithm::token_bucket, 9, 60000);
  REQUIRE(tollgate::set_policy_name(a, "a") == tollgate::Errc::ok);
  REQUIRE(tollgate::set_policy_name(b, "b") == tollgate::Errc::ok);
  REQUIRE(tollgate::set_policy_name(c, "c") == tollgate::Errc::ok);
  for (const std::string key :
       {"", "u", "exactly-18-bytes!!", "a-key-of-24-bytes-------"}) {
    INFO(key.size());
    REQUIRE(hit(s, key, a, kT0));  // one slot, inline if short
    const Policy both[] = {a, b};
    Outcome o[2];
    REQUIRE(s.check(key, both, kT0, 1, o));  // a second slot
    const Policy three[] = {a, b, c};
    Outcome o3[3];
    REQUIRE(s.check(key, three, kT0, 1, o3));  // a third
    CHECK(remaining(s, key, a, kT0) == 2);
    CHECK(remaining(s, key, b, kT0) == 5);
    CHECK(remaining(s, key, c, kT0) == 8);
    CHECK(s.reset(key));
    CHECK(remaining(s, key, a, kT0) == 5);
  }
  CHECK(s.stats().live_keys == 0);  // peeks (cost 0) create no key
}

TEST_CASE("memory layout: the table grows under a shard's keys", "[memory]") {
  // One shard, no bound in sight: the table starts at 16 slots and grows by
  // half (to the bound's size first) many times; every key stays findable
  // with its own state after each growth.
  MemoryStore s({1u << 20, 1});
  const Policy p = make(Algorithm::fixed_window, 5, 60000);
  const int n = 50000;
  for (int i = 0; i < n; ++i) {
    const std::string key = "grow:" + std::to_string(i);
    REQUIRE(hit(s, key, p, kT0, 1 + i % 4));
  }
  REQUIRE(s.stats().live_keys == n);
  int wrong = 0;
  for (int i = 0; i < n; ++i)
    if (remaining(s, "grow:" + std::to_string(i), p, kT0) != 4 - i % 4) ++wrong;
  CHECK(wrong == 0);
  CHECK(s.stats().evictions == 0);
}

TEST_CASE("memory layout: churn of inserts and resets matches a map",
          "[memory]") {
  // A small table kept near its load limit, keys removed from the middles
  // and ends of probe runs (and across the wrap to slot 0) in random order:
  // backward-shift deletion must leave every other key reachable.
  MemoryStore s({100000, 1});
  const Policy p = make(Algorithm::fixed_window, 1000, 60000);
  std::mt19937_64 rng(42);
  std::map<std::string, int64_t> ref;  // key -> units charged
  for (int step = 0; step < 60000; ++step) {
    const std::string key =
        (step % 5 == 0 ? std::string(30, 'L') : std::string("c")) +
        std::to_string(rng() % 400);
    if (rng() % 3 == 0) {
      CHECK(s.reset(key) == (ref.erase(key) == 1));
    } else {
      REQUIRE(hit(s, key, p, kT0));
      ++ref[key];
    }
    if (step % 5000 == 0) {
      REQUIRE(s.stats().live_keys == ref.size());
      for (const auto &[k, n] : ref)
        REQUIRE(remaining(s, k, p, kT0) == 1000 - n);
    }
  }
  REQUIRE(s.stats().live_keys == ref.size());
  for (const auto &[k, n] : ref) CHECK(remaining(s, k, p, kT0) == 1000 - n);
}

TEST_CASE("memory layout: the bound holds with keys out of line and shards",
          "[memory]") {
  // 8 shards, 2,000 keys at most, 20,000 distinct long and short keys: the
  // count never passes the bound, every eviction frees its out-of-line
  // bytes (the sanitizer build checks for leaks), and the most recent keys
  // are kept.
  MemoryStore s({2000, 8});
  const Policy p = make(Algorithm::gcra, 10, 3600 * 1000);
  for (int i = 0; i < 20000; ++i) {
    const std::string key =
        (i % 2 ? std::string(40, 'x') : std::string("s")) + std::to_string(i);
    REQUIRE(hit(s, key, p, kT0));
    if (i % 1000 == 0) REQUIRE(s.stats().live_keys <= 2000);
  }
  const MemoryStoreStats st = s.stats();
  CHECK(st.live_keys <= 2000);
  CHECK(st.live_keys >= 1900);
  CHECK(st.evictions >= 18000);
  int recent = 0;
  for (int i = 19900; i < 20000; ++i) {
    const std::string key =
        (i % 2 ? std::string(40, 'x') : std::string("s")) + std::to_string(i);
    if (remaining(s, key, p, kT0) == 9) ++recent;
  }
  CHECK(recent >= 95);
}

TEST_CASE("memory layout: a shard grows into the store's arena", "[memory]") {
  // 40,000 keys in one shard: its full-size table (50,001 lines, 3.2 MB)
  // lives in the huge-page arena. The table grows from 16 slots into it,
  // keeps every key across that move, then evicts at the bound.
  MemoryStore s({40000, 1});
  const Policy p = make(Algorithm::fixed_window, 5, 60000);
  for (int i = 0; i < 40000; ++i)
    REQUIRE(hit(s, "arena:" + std::to_string(i), p, kT0, 1 + i % 3));
  int wrong = 0;
  for (int i = 0; i < 40000; ++i)
    if (remaining(s, "arena:" + std::to_string(i), p, kT0) != 4 - i % 3)
      ++wrong;
  CHECK(wrong == 0);
  CHECK(s.stats().evictions == 0);
  for (int i = 40000; i < 60000; ++i)
    REQUIRE(hit(s, "arena:" + std::to_string(i), p, kT0));
  CHECK(s.stats().live_keys == 40000);
  CHECK(s.stats().evictions == 20000);
  int recent = 0;
  for (int i = 59000; i < 60000; ++i)
    if (remaining(s, "arena:" + std::to_string(i), p, kT0) == 4) ++recent;
  CHECK(recent >= 950);
}

TEST_CASE(
    "memory layout: a small shard always evicts its least recently "
    "used key",
    "[memory]") {
  // The eviction sample is the next live entries from a random slot, so
  // with no more keys than samples every key is compared: over many fresh
  // stores (each a new random hash seed and table layout) the oldest key
  // goes every time, never a newer one.
  const Policy p = make(Algorithm::gcra, 1, 3600 * 1000);
  for (int round = 0; round < 300; ++round) {
    MemoryStore s({4, 1});
    int64_t now = kT0;
    for (const char *k : {"a", "b", "c", "d", "e"}) {  // "e" evicts "a"
      REQUIRE(hit(s, k, p, now));
      now += 1000;
    }
    INFO("round " << round);
    REQUIRE(s.stats().live_keys == 4);
    REQUIRE(hit(s, "a", p, now));  // evicted: a fresh key again
    for (const char *k : {"c", "d", "e"}) REQUIRE_FALSE(hit(s, k, p, now));
  }
}
