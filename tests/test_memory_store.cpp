// The memory store: bounded key count, expiry reclaim, LRU eviction,
// binary-safe keys, multi-policy all-or-nothing, reset.
#include <catch2/catch.hpp>

#include <malloc.h>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "tollgate/memory_store.hpp"

using namespace tollgate;

namespace {

constexpr int64_t kSec = 1'000'000;
constexpr int64_t kT0 = 1'700'000'000'000'000;

Policy make(Algorithm a, int64_t limit, int64_t period_ms, int64_t burst = 0) {
  Policy p;
  REQUIRE(make_policy(static_cast<int32_t>(a), limit, period_ms, burst, 0, p) ==
          Errc::ok);
  return p;
}

bool hit(MemoryStore &s, std::string_view key, const Policy &p, int64_t now,
         int64_t cost = 1) {
  Outcome o;
  return s.check(key, std::span<const Policy>(&p, 1), now, cost, &o);
}

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

}  // namespace

TEST_CASE("keys are binary-safe and distinct", "[memory]") {
  MemoryStore s({1000, 0});
  const Policy p = make(Algorithm::fixed_window, 1, 60000);
  const std::string a("a\0b", 3), b("a\0c", 3), c("a", 1);
  const std::string long_key(300, '\xff');  // longer than the inline buffer
  std::string long_key2 = long_key;
  long_key2.back() = '\xfe';
  for (const std::string *k :
       {&a, &b, &c, &long_key, &std::as_const(long_key2)}) {
    REQUIRE(hit(s, *k, p, kT0));
    REQUIRE_FALSE(hit(s, *k, p, kT0));
  }
  REQUIRE(s.stats().live_keys == 5);
}

TEST_CASE("reset forgets every policy of a key", "[memory]") {
  MemoryStore s({1000, 0});
  const Policy p1 = make(Algorithm::gcra, 1, 60000);
  const Policy p2 = make(Algorithm::sliding_window, 1, 60000);
  REQUIRE(hit(s, "k", p1, kT0));
  REQUIRE(hit(s, "k", p2, kT0));
  REQUIRE_FALSE(hit(s, "k", p1, kT0));
  REQUIRE(s.reset("k"));
  REQUIRE_FALSE(s.reset("k"));
  REQUIRE(hit(s, "k", p1, kT0));
  REQUIRE(hit(s, "k", p2, kT0));
}

TEST_CASE("multi-policy checks are all-or-nothing", "[memory]") {
  MemoryStore s({1000, 0});
  const Policy both[] = {make(Algorithm::gcra, 2, 1000),
                         make(Algorithm::fixed_window, 5, 60000)};
  Outcome o[2];
  const int64_t t = (kT0 / (60 * kSec)) * 60 * kSec;
  for (int i = 0; i < 2; ++i) REQUIRE(s.check("k", both, t, 1, o));
  // The per-second policy denies: the per-minute one must not be charged.
  for (int i = 0; i < 10; ++i) REQUIRE_FALSE(s.check("k", both, t, 1, o));
  REQUIRE_FALSE(o[0].allowed);
  REQUIRE(o[1].allowed);
  REQUIRE(o[1].remaining == 3);
  // A second later two more pass; two seconds later the per-minute policy
  // denies while the per-second one would allow.
  REQUIRE(s.check("k", both, t + kSec, 1, o));
  REQUIRE(s.check("k", both, t + kSec, 1, o));
  REQUIRE(o[1].remaining == 1);
  REQUIRE(s.check("k", both, t + 2 * kSec, 1, o));
  REQUIRE_FALSE(s.check("k", both, t + 2 * kSec, 1, o));
  REQUIRE(o[0].allowed);
  REQUIRE(o[0].remaining == 1);  // not charged by the denied call
  REQUIRE_FALSE(o[1].allowed);
}

TEST_CASE("a key remembers many policies and stays bounded", "[memory]") {
  MemoryStore s({10, 1});
  // 40 policies of their own names on one key: more than the per-key slot
  // limit.
  auto named = [](int i) {
    Policy p = make(Algorithm::gcra, i, 60000);
    REQUIRE(tollgate::set_policy_name(p, "p" + std::to_string(i)) ==
            tollgate::Errc::ok);
    return p;
  };
  for (int i = 1; i <= 40; ++i) REQUIRE(hit(s, "k", named(i), kT0 + i));
  // The most recent one is remembered (it was charged once).
  const Policy p40 = named(40);
  for (int i = 0; i < 39; ++i) REQUIRE(hit(s, "k", p40, kT0 + 200));
  REQUIRE_FALSE(hit(s, "k", p40, kT0 + 200));
  REQUIRE(s.stats().live_keys == 1);
}

TEST_CASE("the key count never exceeds max_keys, LRU keys go first",
          "[memory]") {
  MemoryStore s({1000, 4});
  const Policy p = make(Algorithm::fixed_window, 5, 3600 * 1000);
  const int64_t t = kT0;
  // A hot set of 100 keys touched between every batch of new keys.
  for (int round = 0; round < 50; ++round) {
    for (int h = 0; h < 100; ++h) hit(s, "hot" + std::to_string(h), p, t, 0);
    for (int i = 0; i < 200; ++i)
      hit(s, "cold" + std::to_string(round * 200 + i), p, t);
    REQUIRE(s.stats().live_keys <= 1000);
  }
  const MemoryStoreStats st = s.stats();
  REQUIRE(st.live_keys <= 1000);
  REQUIRE(st.evictions > 8000);
  // Peeks do not create keys, so charge the hot set once, then churn again.
  for (int h = 0; h < 100; ++h)
    REQUIRE(hit(s, "hot" + std::to_string(h), p, t));
  for (int round = 0; round < 20; ++round) {
    for (int h = 0; h < 100; ++h) hit(s, "hot" + std::to_string(h), p, t, 0);
    for (int i = 0; i < 200; ++i)
      hit(s, "churn" + std::to_string(round * 200 + i), p, t);
  }
  // Recently used keys survive: each still holds its one charged unit.
  int survived = 0;
  for (int h = 0; h < 100; ++h) {
    Outcome o;
    const std::string key = "hot" + std::to_string(h);
    s.check(key, std::span<const Policy>(&p, 1), t, 0, &o);
    if (o.remaining == 4) ++survived;
  }
  CHECK(survived >= 95);  // sampled LRU: nearly all, by design
  // The oldest cold keys are gone.
  int old_alive = 0;
  for (int i = 0; i < 200; ++i) {
    Outcome o;
    s.check("cold" + std::to_string(i), std::span<const Policy>(&p, 1), t, 0,
            &o);
    if (o.remaining < 5) ++old_alive;
  }
  CHECK(old_alive == 0);
}

TEST_CASE("expired keys are reclaimed without timers", "[memory]") {
  MemoryStore s({100000, 1});
  const Policy p = make(Algorithm::gcra, 10, 1000);  // state lives <= 1 s
  for (int i = 0; i < 20000; ++i) hit(s, "old" + std::to_string(i), p, kT0);
  REQUIRE(s.stats().live_keys == 20000);
  // Much later, new traffic sweeps the expired keys out as it arrives.
  const int64_t later = kT0 + 3600 * kSec;
  for (int i = 0; i < 40000; ++i) hit(s, "new" + std::to_string(i), p, later);
  const MemoryStoreStats st = s.stats();
  CHECK(st.expired_reclaimed > 15000);
  CHECK(st.evictions == 0);
  CHECK(st.live_keys < 40000 + 5000);
}

TEST_CASE("a flood of 5 M unique keys stays within the bound",
          "[memory][flood][slow]") {
  // Under the sanitizers (5-10x slower) the same flood at a fifth of the
  // scale: the bound and the evictions are what is checked there; the RSS
  // ceiling is checked in the plain build only.
  constexpr int kScale = kSanitized ? 5 : 1;
  constexpr uint64_t kBound = 1000000 / kScale;
  constexpr int kFlood = 5000000 / kScale;
  const uint64_t before = rss_bytes();
  {
    MemoryStore s({kBound, 0});
    const Policy p = make(Algorithm::gcra, 100, 3600 * 1000);
    char key[32];
    for (int i = 0; i < kFlood; ++i) {
      const int n = std::snprintf(key, sizeof key, "ip:10.%d.%d.%d", i >> 16,
                                  (i >> 8) & 255, i & 255);
      REQUIRE(hit(s, std::string_view(key, static_cast<size_t>(n)), p, kT0));
      if (i % 500000 == 0) REQUIRE(s.stats().live_keys <= kBound);
    }
    const MemoryStoreStats st = s.stats();
    REQUIRE(st.live_keys <= kBound);
    REQUIRE(st.live_keys >= kBound / 100 * 99);
    REQUIRE(st.evictions >= static_cast<uint64_t>(kFlood) / 5 * 4);
    const uint64_t grown = rss_bytes() - before;
    INFO("RSS growth " << grown << " bytes for " << st.live_keys << " keys");
    // Documented ceiling (README): 160 MB for the default 1 M keys.
    if (!kSanitized) REQUIRE(grown < 160ull * 1024 * 1024);
  }
}

TEST_CASE("a short key with one policy takes no heap memory beyond its slot",
          "[memory]") {
  // Its bytes and its state live in its 64-byte table entry (mapped, not
  // malloc'd); only a long key or a second policy goes out of line.
  if (kSanitized) return;  // the sanitizers' allocators keep no mallinfo
  MemoryStore s({200000, 1});
  const Policy p = make(Algorithm::gcra, 100, 3600 * 1000);
  REQUIRE(hit(s, "warm", p, kT0));
  const size_t before = mallinfo2().uordblks;
  char key[32];
  for (int i = 0; i < 100000; ++i) {
    const int n = std::snprintf(key, sizeof key, "user:%d", i);
    REQUIRE(hit(s, std::string_view(key, static_cast<size_t>(n)), p, kT0));
  }
  const size_t after = mallinfo2().uordblks;
  INFO("heap growth " << after - before << " bytes for 100000 keys");
  CHECK(after - before < 100000);  // under a byte per key
  // A second policy moves a key's bytes and slots out of line.
  const Policy q = make(Algorithm::fixed_window, 100, 60000);
  for (int i = 0; i < 1000; ++i) {
    const int n = std::snprintf(key, sizeof key, "user:%d", i);
    REQUIRE(hit(s, std::string_view(key, static_cast<size_t>(n)), q, kT0));
  }
  CHECK(mallinfo2().uordblks - after >= 1000 * sizeof(void *));
}

TEST_CASE("at the key bound expired keys go before live ones, then the LRU",
          "[memory]") {
  // One shard of 200 keys: 100 live keys used long ago, then 100 keys whose
  // state has expired but that were used more recently. 100 new keys must
  // take the expired keys' places, not the live ones' (an LRU-only victim
  // choice would drop the older live keys first).
  MemoryStore s({200, 1});
  const Policy live = make(Algorithm::fixed_window, 5, 3600 * 1000);
  const Policy brief = make(Algorithm::gcra, 10, 1000);  // state <= 1 s
  const int64_t t = (kT0 / (3600 * kSec)) * 3600 * kSec;
  for (int i = 0; i < 100; ++i)
    REQUIRE(hit(s, "live" + std::to_string(i), live, t));
  for (int i = 0; i < 100; ++i)
    REQUIRE(hit(s, "brief" + std::to_string(i), brief, t + kSec));
  REQUIRE(s.stats().live_keys == 200);
  const int64_t later = t + 60 * kSec;  // every "brief" state has expired
  for (int i = 0; i < 100; ++i)
    REQUIRE(hit(s, "new" + std::to_string(i), live, later));
  const MemoryStoreStats st = s.stats();
  // Every insert also frees the expired keys its random probes meet, so a
  // few "brief" keys may be gone beyond what the new keys needed: the store
  // ends at or slightly under its bound, never over it (the probes depend on
  // the store's random seed; CI once saw 199).
  CHECK(st.live_keys <= 200);
  CHECK(st.live_keys >= 190);
  // Sampling finds nearly every expired key first; the few that hide from
  // the samples cost a live key each (about 10 here; choosing victims by
  // LRU alone costs 40 or more).
  CHECK(st.expired_reclaimed >= 80);
  CHECK(st.evictions <= 20);
  int live_kept = 0;
  for (int i = 0; i < 100; ++i) {
    Outcome o;
    s.check("live" + std::to_string(i), std::span<const Policy>(&live, 1),
            later, 0, &o);
    if (o.remaining == 4) ++live_kept;
  }
  CHECK(live_kept >= 80);
  // Then, with no expired key left, the least recently used go: touch half
  // of the new keys, add 50 more, and the untouched old ones are the victims.
  for (int i = 0; i < 50; ++i)
    hit(s, "new" + std::to_string(i), live, later, 0);
  for (int i = 0; i < 50; ++i)
    REQUIRE(hit(s, "newer" + std::to_string(i), live, later + kSec));
  int touched_kept = 0;
  for (int i = 0; i < 50; ++i) {
    Outcome o;
    s.check("new" + std::to_string(i), std::span<const Policy>(&live, 1),
            later + kSec, 0, &o);
    if (o.remaining == 4) ++touched_kept;
  }
  CHECK(touched_kept >= 45);
}
