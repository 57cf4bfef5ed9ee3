// The local deny cache on its own: when a cached denial answers, when it
// lapses, what a reset forgets, and that it stays within its bound.
#include <catch2/catch.hpp>

#include <string>

#include "tollgate/deny_cache.hpp"

using tollgate::CachedDenial;
using tollgate::DenyCache;

namespace {

CachedDenial denial(int64_t until_ns, int64_t cost) {
  CachedDenial d;
  d.until_ns = until_ns;
  d.cost = cost;
  d.limit = 7;
  d.remaining = 0;
  d.reset_at_ns = until_ns + 500;
  d.policy_index = 3;
  return d;
}

}  // namespace

TEST_CASE("deny cache: a denial answers until it lapses, then never again",
          "[deny_cache]") {
  DenyCache cache(1000);
  CachedDenial out;
  CHECK_FALSE(cache.lookup("k", 1, 1, 0, out));
  cache.insert("k", 1, denial(1000, 1), 0);

  REQUIRE(cache.lookup("k", 1, 1, 999, out));
  CHECK(out.until_ns == 1000);
  CHECK(out.cost == 1);
  CHECK(out.limit == 7);
  CHECK(out.reset_at_ns == 1500);
  CHECK(out.policy_index == 3);
  // At until_ns the denial has lapsed: the store must answer again.
  CHECK_FALSE(cache.lookup("k", 1, 1, 1000, out));
  // And it is gone for good, even if asked about an earlier time.
  CHECK_FALSE(cache.lookup("k", 1, 1, 10, out));
}

TEST_CASE("deny cache: only costs at least the denied one are answered",
          "[deny_cache]") {
  DenyCache cache(1000);
  cache.insert("k", 1, denial(1000, 5), 0);
  CachedDenial out;
  CHECK_FALSE(cache.lookup("k", 1, 4, 10, out));  // a smaller cost may pass
  CHECK(cache.lookup("k", 1, 5, 10, out));
  CHECK(cache.lookup("k", 1, 6, 10, out));
}

TEST_CASE("deny cache: keys and policy sets are kept apart", "[deny_cache]") {
  DenyCache cache(1000);
  cache.insert("k", 1, denial(1000, 1), 0);
  CachedDenial out;
  CHECK_FALSE(cache.lookup("k", 2, 1, 10, out));  // another policy set
  CHECK_FALSE(cache.lookup("kk", 1, 1, 10, out));
  CHECK_FALSE(cache.lookup("", 1, 1, 10, out));
  // The newest denial of a key replaces the older one.
  cache.insert("k", 1, denial(2000, 2), 10);
  REQUIRE(cache.lookup("k", 1, 2, 1500, out));
  CHECK(out.until_ns == 2000);
  CHECK_FALSE(cache.lookup("k", 1, 1, 1500, out));
}

TEST_CASE("deny cache: erase_key forgets that key under every policy set only",
          "[deny_cache]") {
  DenyCache cache(1000);
  for (uint64_t sig = 1; sig <= 3; ++sig) {
    cache.insert("ab", sig, denial(1000, 1), 0);
    cache.insert("a", sig, denial(1000, 1), 0);
    cache.insert("b", sig, denial(1000, 1), 0);
    cache.insert("xab", sig, denial(1000, 1), 0);
  }
  cache.erase_key("ab");
  CachedDenial out;
  for (uint64_t sig = 1; sig <= 3; ++sig) {
    CHECK_FALSE(cache.lookup("ab", sig, 1, 10, out));
    // Keys that are a prefix, a suffix or an extension of it stay.
    CHECK(cache.lookup("a", sig, 1, 10, out));
    CHECK(cache.lookup("b", sig, 1, 10, out));
    CHECK(cache.lookup("xab", sig, 1, 10, out));
  }
  cache.erase_key("zz");  // absent: nothing else goes
  CHECK(cache.lookup("a", 1, 1, 10, out));
}

TEST_CASE("deny cache: the entry count stays within the capacity",
          "[deny_cache]") {
  // 16 shards; a capacity of 16 holds one entry per shard. However many
  // keys are denied, at most 16 are remembered, and the newest always is.
  for (size_t capacity : {size_t{0}, size_t{16}}) {
    DenyCache cache(capacity);
    CachedDenial out;
    for (int i = 0; i < 500; ++i) {
      const std::string key = "key" + std::to_string(i);
      cache.insert(key, 1, denial(1'000'000, 1), i);
      REQUIRE(cache.lookup(key, 1, 1, i, out));
    }
    int remembered = 0;
    for (int i = 0; i < 500; ++i)
      remembered += cache.lookup("key" + std::to_string(i), 1, 1, 600, out);
    CHECK(remembered >= 1);
    CHECK(remembered <= 16);
  }
}

TEST_CASE("deny cache: a full cache drops lapsed denials before live ones",
          "[deny_cache]") {
  // Capacity 32: two entries per shard. Fill every shard with lapsed
  // entries, then add live ones: while a shard has a lapsed entry to drop,
  // no live entry is pushed out, so every live denial is still there.
  DenyCache cache(32);
  CachedDenial out;
  for (int i = 0; i < 400; ++i)
    cache.insert("old" + std::to_string(i), 1, denial(100, 1), 0);
  // One live key: whichever shard it lands in has lapsed entries to drop.
  cache.insert("live", 1, denial(1'000'000, 1), 200);
  cache.insert("live2", 1, denial(1'000'000, 1), 200);
  CHECK(cache.lookup("live", 1, 1, 300, out));
  CHECK(cache.lookup("live2", 1, 1, 300, out));
}
