// The memory store's table and slots under churn: keys removed from the
// middle of collision runs, keys at the inline-buffer boundary, a key with
// more policies than it has slots, and what stats() counts.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "tollgate/memory_store.hpp"

using namespace tollgate;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000;
constexpr int64_t kMin = 60'000'000;

Policy make(Algorithm a, int64_t limit, int64_t period_ms) {
  Policy p;
  REQUIRE(make_policy(static_cast<int32_t>(a), limit, period_ms, 0, 0, p) ==
          Errc::ok);
  return p;
}

bool hit(MemoryStore &s, std::string_view key, const Policy &p, int64_t now) {
  Outcome o;
  return s.check(key, std::span<const Policy>(&p, 1), now, 1, &o);
}

}  // namespace

TEST_CASE("memory edges: removing keys keeps every other key findable",
          "[memory]") {
  // One shard, a few thousand keys: the open-addressed table grows several
  // times and holds long probe runs; resets take keys out of their middles.
  MemoryStore s({100000, 1});
  const Policy p = make(Algorithm::fixed_window, 1, 60000);
  const int n = 3000;
  for (int i = 0; i < n; ++i)
    REQUIRE(hit(s, "key-" + std::to_string(i), p, kT0));
  CHECK(s.stats().live_keys == n);
  int removed = 0;
  for (int i = 0; i < n; i += 3) {
    REQUIRE(s.reset("key-" + std::to_string(i)));
    ++removed;
  }
  CHECK_FALSE(s.reset("key-0"));  // already gone
  CHECK_FALSE(s.reset("never"));
  CHECK(s.stats().live_keys == static_cast<uint64_t>(n - removed));
  // Kept keys still hold their charge; removed ones start afresh.
  int wrong = 0;
  for (int i = 0; i < n; ++i) {
    const bool allowed = hit(s, "key-" + std::to_string(i), p, kT0);
    if (allowed != (i % 3 == 0)) ++wrong;
  }
  CHECK(wrong == 0);
  // Freed entries are reused: the count is back to n, and all are charged.
  CHECK(s.stats().live_keys == n);
  for (int i = 0; i < n; i += 7)
    CHECK_FALSE(hit(s, "key-" + std::to_string(i), p, kT0));
}

TEST_CASE("memory edges: keys around the inline buffer size", "[memory]") {
  MemoryStore s({1000, 1});
  const Policy p = make(Algorithm::fixed_window, 1, 60000);
  std::vector<std::string> keys;
  for (size_t len :
       {size_t{1}, size_t{23}, size_t{24}, size_t{25}, size_t{64}}) {
    keys.push_back(std::string(len, 'x'));
    keys.push_back(std::string(len - 1, 'x') + 'y');
  }
  for (const std::string &k : keys) REQUIRE(hit(s, k, p, kT0));
  for (const std::string &k : keys) {
    INFO(k.size());
    CHECK_FALSE(hit(s, k, p, kT0));
  }
  for (const std::string &k : keys) CHECK(s.reset(k));
  CHECK(s.stats().live_keys == 0);
}

TEST_CASE("memory edges: one key under many policies keeps each state",
          "[memory]") {
  MemoryStore s({1000, 1});
  // 48 slots per key. Policies 1..56, one at a time, each charged once
  // (limit 2: one unit left). The first 48 fill the slots; later ones reuse
  // the slot that expires first.
  // Named: each checked alone, an unnamed one would be known by its
  // position (0) and share one state with the others.
  constexpr int kSlots = 48;
  std::vector<Policy> ps;
  for (int i = 1; i <= kSlots + 8; ++i) {
    ps.push_back(make(Algorithm::fixed_window, 2, 1000 * i));
    REQUIRE(tollgate::set_policy_name(ps.back(), "p" + std::to_string(i)) ==
            Errc::ok);
  }
  for (int i = 0; i < kSlots; ++i) REQUIRE(hit(s, "k", ps[i], kT0));
  // Every one of the 48 remembers its charge: one more passes, then none.
  for (int i = 0; i < kSlots; ++i) {
    INFO("policy " << i);
    Outcome o;
    REQUIRE(s.check("k", std::span<const Policy>(&ps[i], 1), kT0, 0, &o));
    CHECK(o.remaining == 1);
  }
  // A 49th policy takes the slot of the policy whose state lapses first
  // (policy 0: the 1 s window); the others keep theirs.
  REQUIRE(hit(s, "k", ps[kSlots], kT0));
  Outcome o;
  REQUIRE(s.check("k", std::span<const Policy>(&ps[kSlots], 1), kT0, 0, &o));
  CHECK(o.remaining == 1);
  for (int i = 1; i < kSlots; ++i) {
    INFO("policy " << i);
    REQUIRE(s.check("k", std::span<const Policy>(&ps[i], 1), kT0, 0, &o));
    CHECK(o.remaining == 1);
  }
  REQUIRE(s.check("k", std::span<const Policy>(&ps[0], 1), kT0, 0, &o));
  CHECK(o.remaining == 2);  // forgotten
  CHECK(s.stats().live_keys == 1);
}

TEST_CASE("memory edges: a multi-policy check grows the key's slots at once",
          "[memory]") {
  MemoryStore s({1000, 1});
  std::vector<Policy> ps;
  for (int i = 1; i <= 16; ++i)
    ps.push_back(make(Algorithm::gcra, 5, 1000 * i));
  std::vector<Outcome> out(16);
  // 1, then 2, 4 and 16 policies on one key: every state is kept.
  for (size_t n : {size_t{1}, size_t{2}, size_t{4}, size_t{16}})
    REQUIRE(s.check("k", std::span<const Policy>(ps.data(), n), kT0, 1,
                    out.data()));
  REQUIRE(
      s.check("k", std::span<const Policy>(ps.data(), 16), kT0, 0, out.data()));
  CHECK(out[0].remaining == 1);  // charged 4 times
  CHECK(out[1].remaining == 2);  // 3 times
  CHECK(out[2].remaining == 3);  // twice
  CHECK(out[3].remaining == 3);
  CHECK(out[4].remaining == 4);  // once
  CHECK(out[15].remaining == 4);
}

TEST_CASE("memory edges: stats count checks, keys, evictions and reclaims",
          "[memory]") {
  MemoryStore s({4, 1});
  const Policy p = make(Algorithm::fixed_window, 1, 1000);
  for (int i = 0; i < 4; ++i) REQUIRE(hit(s, "k" + std::to_string(i), p, kT0));
  CHECK_FALSE(hit(s, "k0", p, kT0));
  MemoryStoreStats st = s.stats();
  CHECK(st.checks == 5);
  CHECK(st.allowed == 4);
  CHECK(st.denied == 1);
  CHECK(st.live_keys == 4);
  CHECK(st.evictions == 0);
  // A fifth key at the bound evicts a live one.
  REQUIRE(hit(s, "k4", p, kT0));
  st = s.stats();
  CHECK(st.live_keys == 4);
  CHECK(st.evictions == 1);
  // A minute later every key has lapsed: new keys reclaim them, and a
  // lapsed key taken at the bound is not counted as an eviction.
  for (int i = 0; i < 8; ++i)
    REQUIRE(hit(s, "n" + std::to_string(i), p, kT0 + kMin));
  st = s.stats();
  CHECK(st.live_keys == 4);
  CHECK(st.evictions == 1 + 4);  // "n4".."n7" push out live "n0".."n3"
  CHECK(st.expired_reclaimed >= 1);
  CHECK(s.max_keys() == 4);
}

TEST_CASE("memory edges: shard counts", "[memory]") {
  CHECK(MemoryStore({1000, 0}).shard_count() == 1);
  CHECK(MemoryStore({1000000, 0}).shard_count() == 64);
  CHECK(MemoryStore({20000, 0}).shard_count() == 4);
  CHECK(MemoryStore({1000, 3}).shard_count() == 4);
  CHECK(MemoryStore({1000, 4}).shard_count() == 4);
  CHECK(MemoryStore({1000, 5000}).shard_count() == 1024);
  CHECK(MemoryStore({0, 1}).max_keys() == 1);
}

TEST_CASE("memory edges: at the bound, recently used keys are kept",
          "[memory]") {
  // 100 keys in one shard: 50 hot ones touched before every insert, 50
  // cold ones never again. Each new key evicts the least recently used of
  // 8 sampled keys, which is a hot key only if all 8 samples are hot
  // (about 0.5^8): of 50 evictions, hardly any may take a hot key. A
  // victim picked from fewer samples, or at random, takes ~25.
  MemoryStore s({100, 1});
  const Policy p = make(Algorithm::fixed_window, 1, 3600 * 1000);
  for (int i = 0; i < 50; ++i) {
    REQUIRE(hit(s, "hot" + std::to_string(i), p, kT0));
    REQUIRE(hit(s, "cold" + std::to_string(i), p, kT0));
  }
  Outcome o;
  for (int r = 0; r < 50; ++r) {
    for (int i = 0; i < 50; ++i)  // a peek counts as a use
      s.check("hot" + std::to_string(i), std::span<const Policy>(&p, 1), kT0, 0,
              &o);
    REQUIRE(hit(s, "new" + std::to_string(r), p, kT0));
  }
  CHECK(s.stats().live_keys == 100);
  int hot_lost = 0;
  for (int i = 0; i < 50; ++i) {
    s.check("hot" + std::to_string(i), std::span<const Policy>(&p, 1), kT0, 0,
            &o);
    hot_lost += o.remaining == 1;  // forgotten: a fresh window
  }
  CHECK(hot_lost <= 5);
}
