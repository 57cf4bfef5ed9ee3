// The pure algorithms, called directly with explicit time.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

#include "tollgate/algorithms.hpp"

using namespace tollgate;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000;  // an epoch time in us
constexpr int64_t kMs = 1000;
constexpr int64_t kSec = 1'000'000;

Policy make(Algorithm a, int64_t limit, int64_t period_ms, int64_t burst = 0) {
  Policy p;
  REQUIRE(make_policy(static_cast<int32_t>(a), limit, period_ms, burst, 0, p) ==
          Errc::ok);
  return p;
}

// A key's state under one policy, applying writes like a store does.
struct Key {
  explicit Key(const Policy &policy) : p(policy) {}
  Policy p;
  State s;
  bool has = false;
  Outcome hit(int64_t now, int64_t cost = 1) {
    Outcome o = evaluate(p, has ? &s : nullptr, now, cost);
    if (o.write) {
      s = o.next;
      has = true;
    }
    return o;
  }
};

const Algorithm kAll[] = {Algorithm::gcra, Algorithm::token_bucket,
                          Algorithm::fixed_window, Algorithm::sliding_window};

}  // namespace

TEST_CASE("a fresh key admits exactly the limit at once, every algorithm",
          "[algorithms]") {
  for (Algorithm a : kAll) {
    INFO(algorithm_name(a));
    // Start on a window boundary so windows do not split the burst.
    const int64_t t = (kT0 / (3600 * kSec)) * 3600 * kSec;
    Key k{make(a, 100, 3600 * 1000)};
    for (int i = 0; i < 100; ++i) {
      const Outcome o = k.hit(t);
      REQUIRE(o.allowed);
      REQUIRE(o.remaining == 99 - i);
      REQUIRE(o.retry_after_us == 0);
    }
    const Outcome o = k.hit(t);
    REQUIRE_FALSE(o.allowed);
    REQUIRE(o.remaining == 0);
    REQUIRE(o.retry_after_us > 0);
    REQUIRE_FALSE(o.write);
  }
}

TEST_CASE("a denied call charges nothing and retry_after is exact",
          "[algorithms]") {
  for (Algorithm a : kAll) {
    INFO(algorithm_name(a));
    const int64_t t = (kT0 / kSec) * kSec;
    Key k{make(a, 5, 1000)};
    for (int i = 0; i < 5; ++i) REQUIRE(k.hit(t).allowed);
    const State before = k.s;
    const Outcome denied = k.hit(t, 1);
    REQUIRE_FALSE(denied.allowed);
    REQUIRE(k.s.a == before.a);
    REQUIRE(k.s.b == before.b);
    REQUIRE(k.s.c == before.c);
    const int64_t wait = denied.retry_after_us;
    REQUIRE(wait > 0);
    REQUIRE_FALSE(k.hit(t + wait - 1).allowed);
    REQUIRE(k.hit(t + wait).allowed);
  }
}

TEST_CASE("cost 0 peeks without charging", "[algorithms]") {
  for (Algorithm a : kAll) {
    INFO(algorithm_name(a));
    const int64_t t = (kT0 / kSec) * kSec;
    Key k{make(a, 3, 1000)};
    Outcome peek = k.hit(t, 0);
    REQUIRE(peek.allowed);
    REQUIRE_FALSE(peek.write);
    REQUIRE(peek.remaining == 3);
    REQUIRE_FALSE(k.has);
    for (int i = 0; i < 3; ++i) REQUIRE(k.hit(t).allowed);
    peek = k.hit(t, 0);
    REQUIRE_FALSE(peek.allowed);
    REQUIRE(peek.remaining == 0);
    REQUIRE(peek.retry_after_us == k.hit(t, 1).retry_after_us);
  }
}

TEST_CASE("cost above capacity is denied with retry never, not charged",
          "[algorithms]") {
  for (Algorithm a : kAll) {
    INFO(algorithm_name(a));
    Key k{make(a, 10, 1000)};
    const Outcome o = k.hit(kT0, 11);
    REQUIRE_FALSE(o.allowed);
    REQUIRE(o.retry_after_us == kRetryNever);
    REQUIRE(o.remaining == 10);
    REQUIRE_FALSE(k.has);
    const Outcome huge = k.hit(kT0, INT64_MAX);
    REQUIRE_FALSE(huge.allowed);
    REQUIRE(huge.retry_after_us == kRetryNever);
    REQUIRE(k.hit(kT0, 10).allowed);  // exactly capacity fits
  }
}

TEST_CASE("weighted costs", "[algorithms]") {
  for (Algorithm a : kAll) {
    INFO(algorithm_name(a));
    const int64_t t = (kT0 / kSec) * kSec;
    Key k{make(a, 10, 1000)};
    REQUIRE(k.hit(t, 7).remaining == 3);
    const Outcome denied = k.hit(t, 4);
    REQUIRE_FALSE(denied.allowed);
    REQUIRE(denied.remaining == 3);
    REQUIRE(k.hit(t, 3).remaining == 0);
  }
}

TEST_CASE("fixed window edges", "[algorithms]") {
  const int64_t start = (kT0 / kSec + 1) * kSec;  // a window boundary
  Key k{make(Algorithm::fixed_window, 2, 1000)};
  REQUIRE(k.hit(start + 999'999).allowed);  // last microsecond of a window
  REQUIRE(k.hit(start + 999'999).allowed);
  const Outcome o = k.hit(start + 999'999);
  REQUIRE_FALSE(o.allowed);
  REQUIRE(o.retry_after_us == 1);
  REQUIRE(k.hit(start + kSec).allowed);  // first microsecond of the next
  REQUIRE(k.hit(start + kSec).remaining == 0);
}

TEST_CASE("sliding window weights the previous window", "[algorithms]") {
  const int64_t start = (kT0 / kSec + 1) * kSec;
  Key k{make(Algorithm::sliding_window, 10, 1000)};
  for (int i = 0; i < 10; ++i) REQUIRE(k.hit(start + 500 * kMs).allowed);
  // Next window, 300 ms in: the previous window counts 10 * 700/1000 = 7.
  const int64_t t = start + kSec + 300 * kMs;
  Outcome peek = k.hit(t, 0);
  REQUIRE(peek.remaining == 3);
  REQUIRE(k.hit(t, 3).allowed);
  const Outcome denied = k.hit(t);
  REQUIRE_FALSE(denied.allowed);
  // One more unit fits once 10 * rem + 3 * 1000 + 1000 <= 10000: rem <= 600,
  // i.e. 400 ms into the window: 100 ms from now.
  REQUIRE(denied.retry_after_us == 100 * kMs);
  REQUIRE(k.hit(t + 100 * kMs).allowed);
}

TEST_CASE("GCRA burst 1 spaces units, burst between spreads the rest",
          "[algorithms]") {
  Key spaced{make(Algorithm::gcra, 10, 1000, 1)};
  REQUIRE(spaced.hit(kT0).allowed);
  const Outcome o = spaced.hit(kT0);
  REQUIRE_FALSE(o.allowed);
  REQUIRE(o.retry_after_us == 100 * kMs);
  REQUIRE(spaced.hit(kT0 + 100 * kMs).allowed);

  Key mid{make(Algorithm::gcra, 10, 1000, 4)};
  for (int i = 0; i < 4; ++i) REQUIRE(mid.hit(kT0).allowed);
  REQUIRE_FALSE(mid.hit(kT0).allowed);
}

TEST_CASE("no over-admission over a long run (redis_rate #24 class)",
          "[algorithms]") {
  // Random arrivals for 60 s; in every prefix the admitted units never
  // exceed capacity + elapsed / T (GCRA, bucket) or the window bounds.
  std::mt19937_64 rng(42);
  for (Algorithm a : kAll) {
    for (int64_t burst : {int64_t{1}, int64_t{3}, int64_t{0}, int64_t{25}}) {
      if ((a == Algorithm::fixed_window || a == Algorithm::sliding_window) &&
          burst != 0)
        continue;
      INFO(algorithm_name(a) << " burst " << burst);
      Key k{make(a, 10, 1000, burst)};
      int64_t t = (kT0 / kSec) * kSec;
      const int64_t t_start = t;
      int64_t admitted = 0;
      std::vector<int64_t> times;
      for (int i = 0; i < 20000; ++i) {
        t += static_cast<int64_t>(rng() % 6000);
        const int64_t cost = 1 + static_cast<int64_t>(rng() % 3);
        if (k.hit(t, cost).allowed) {
          admitted += cost;
          for (int c = 0; c < cost; ++c) times.push_back(t);
        }
        if (a == Algorithm::gcra || a == Algorithm::token_bucket) {
          REQUIRE(admitted <= k.p.capacity + (t - t_start) / k.p.interval_us);
        }
      }
      if (a == Algorithm::fixed_window || a == Algorithm::sliding_window) {
        // No more than `limit` in any epoch-aligned window (fixed), and for
        // sliding windows no more than 2x limit in any 1 s span.
        size_t lo = 0;
        for (size_t hi = 0; hi < times.size(); ++hi) {
          while (times[hi] - times[lo] >= kSec) ++lo;
          REQUIRE(hi - lo + 1 <= 20);
        }
        if (a == Algorithm::fixed_window) {
          size_t i = 0;
          while (i < times.size()) {
            size_t j = i;
            while (j < times.size() && times[j] / kSec == times[i] / kSec) ++j;
            REQUIRE(j - i <= 10);
            i = j;
          }
        }
      }
      REQUIRE(admitted > 0);
    }
  }
}

TEST_CASE("GCRA and token bucket agree on every decision", "[algorithms]") {
  std::mt19937_64 rng(7);
  for (int64_t burst : {int64_t{1}, int64_t{5}, int64_t{0}, int64_t{40}}) {
    INFO("burst " << burst);
    Key g{make(Algorithm::gcra, 17, 1000, burst)};
    Key b{make(Algorithm::token_bucket, 17, 1000, burst)};
    int64_t t = kT0;
    for (int i = 0; i < 20000; ++i) {
      t += static_cast<int64_t>(rng() % 120000);
      const int64_t cost = static_cast<int64_t>(rng() % 4);
      const Outcome og = g.hit(t, cost);
      const Outcome ob = b.hit(t, cost);
      REQUIRE(og.allowed == ob.allowed);
      REQUIRE(og.remaining == ob.remaining);
      REQUIRE(og.retry_after_us == ob.retry_after_us);
    }
  }
}

TEST_CASE("the clock stepping back never rewinds state", "[algorithms]") {
  for (Algorithm a : kAll) {
    INFO(algorithm_name(a));
    const int64_t t = (kT0 / kSec) * kSec + 10 * kSec;
    Key k{make(a, 3, 1000)};
    for (int i = 0; i < 3; ++i) REQUIRE(k.hit(t).allowed);
    // Five seconds earlier: still the same exhausted state, no refund.
    REQUIRE_FALSE(k.hit(t - 5 * kSec).allowed);
  }
}

TEST_CASE("large but valid values stay exact", "[algorithms]") {
  const int64_t big = int64_t{1} << 40;
  Key k{make(Algorithm::gcra, big, 1000)};
  REQUIRE(k.hit(kT0, big).allowed);
  REQUIRE_FALSE(k.hit(kT0, 1).allowed);
  Key w{make(Algorithm::fixed_window, big, int64_t{1} << 30)};
  REQUIRE(w.hit(kT0, big - 1).remaining == 1);
  Key s{make(Algorithm::sliding_window, int64_t{1} << 20, int64_t{1} << 31)};
  REQUIRE(s.hit(kT0, 1 << 20).allowed);
  REQUIRE_FALSE(s.hit(kT0 + 1, 1).allowed);
  // The largest time the store accepts.
  Key late{make(Algorithm::token_bucket, 1000, 1000)};
  REQUIRE(late.hit(kMaxTimeUs - 1).allowed);
}

TEST_CASE(
    "every denial is exact at its boundary, limits above 1, every algorithm",
    "[algorithms]") {
  // Random arrivals and costs; at each denial, a copy of the key one
  // microsecond before retry_after is still denied and a copy exactly at it
  // is allowed (a `>` for `>=`, or an off-by-one in any formula, fails).
  // Limits, bursts and periods chosen so intervals are whole and fractional.
  std::mt19937_64 rng(20261204);
  struct Shape {
    int64_t limit, period_ms, burst;
  };
  const Shape shapes[] = {{2, 1000, 0},       {3, 1000, 0},  {5, 1000, 1},
                          {7, 60000, 3},      {10, 1000, 0}, {60, 60000, 0},
                          {100, 3600000, 40}, {2, 7, 0}};
  for (Algorithm a : kAll) {
    for (const Shape &sh : shapes) {
      const bool windowed =
          a == Algorithm::fixed_window || a == Algorithm::sliding_window;
      if (windowed && sh.burst != 0) continue;
      INFO(algorithm_name(a)
           << " " << sh.limit << "/" << sh.period_ms << " burst " << sh.burst);
      Key k{make(a, sh.limit, sh.period_ms, sh.burst)};
      int64_t t = kT0 + static_cast<int64_t>(rng() % kSec);
      int denials = 0;
      for (int i = 0; i < 400; ++i) {
        t += static_cast<int64_t>(rng() % (sh.period_ms * kMs / sh.limit + 1));
        const int64_t cost =
            1 +
            static_cast<int64_t>(rng() % std::min<int64_t>(k.p.capacity, 3));
        const Key before = k;
        const Outcome o = k.hit(t, cost);
        if (o.allowed) continue;
        ++denials;
        INFO("denied at +" << (t - kT0) << " us, cost " << cost << ", retry "
                           << o.retry_after_us);
        REQUIRE(o.retry_after_us > 0);
        Key early = before, exact = before;
        REQUIRE_FALSE(early.hit(t + o.retry_after_us - 1, cost).allowed);
        REQUIRE(exact.hit(t + o.retry_after_us, cost).allowed);
      }
      CHECK(denials > 10);
    }
  }
}
