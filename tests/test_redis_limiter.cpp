// Limiter-level behaviour through the C ABI, mostly on Redis: what rl_reset
// and rl_ping leave behind (the deny cache, the health snapshot), a cached
// denial lapsing, multi-policy checks on both stores, and async checks
// joined into one script call.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

struct Lim {
  rl_limiter *p = nullptr;
  explicit Lim(const std::string &url) {
    rl_options o = RL_OPTIONS_INIT;
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    const int rc = rl_create(&p, &o);
    INFO("rl_create: " << rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
  Lim(const Lim &) = delete;
  Lim &operator=(const Lim &) = delete;
};

rl_decision check(rl_limiter *lim, const std::string &key,
                  const rl_policy_spec &p) {
  rl_decision d = RL_DECISION_INIT;
  const int rc = rl_check(lim, &d, key.data(), key.size(), &p, 1, 1);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

}  // namespace

TEST_CASE("redis: rl_reset also forgets the key's cached denials",
          "[redis][deny_cache]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = 1;
  p.period_ms = 3600 * 1000;
  REQUIRE(check(lim.p, "k", p).allowed == 1);
  REQUIRE(check(lim.p, "k", p).source == RL_SOURCE_STORE);  // denied
  REQUIRE(check(lim.p, "k", p).source == RL_SOURCE_DENY_CACHE);
  REQUIRE(check(lim.p, "other", p).allowed == 1);
  REQUIRE(check(lim.p, "other", p).allowed == 0);

  REQUIRE(rl_reset(lim.p, "k", 1) == RL_OK);
  const rl_decision after = check(lim.p, "k", p);
  CHECK(after.allowed == 1);
  CHECK(after.source == RL_SOURCE_STORE);
  // Other keys keep theirs.
  CHECK(check(lim.p, "other", p).source == RL_SOURCE_DENY_CACHE);
}

TEST_CASE("redis: a cached denial lapses at its retry_after",
          "[redis][deny_cache]") {
  // GCRA 2 per 2 s: T = 1 s. After the burst a denial is cached for its
  // retry_after; once that has passed the store answers (and allows)
  // again, instead of the cache denying forever.
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = 2;
  p.period_ms = 2000;
  // The third call is denied only if the three land within T; a machine
  // that paused longer than that starts over on a fresh key (the test is
  // about the lapse, not about speed).
  std::string key;
  rl_decision denied = RL_DECISION_INIT;
  auto before = std::chrono::steady_clock::now();
  auto denied_at = before;
  for (int attempt = 0; attempt < 5; ++attempt) {
    key = "k" + std::to_string(attempt);
    const auto first = std::chrono::steady_clock::now();
    REQUIRE(check(lim.p, key, p).allowed == 1);
    REQUIRE(check(lim.p, key, p).allowed == 1);
    before = std::chrono::steady_clock::now();
    denied = check(lim.p, key, p);
    denied_at = std::chrono::steady_clock::now();
    if (denied_at - first < std::chrono::milliseconds(900)) break;
  }
  REQUIRE(denied.allowed == 0);
  REQUIRE(denied.source == RL_SOURCE_STORE);
  REQUIRE(denied.retry_after_ms > 0);
  REQUIRE(denied.retry_after_ms <= 1000);
  const rl_decision cached = check(lim.p, key, p);
  const auto cached_at = std::chrono::steady_clock::now();
  if (cached_at - before < std::chrono::milliseconds(denied.retry_after_ms)) {
    REQUIRE(cached.allowed == 0);
    REQUIRE(cached.source == RL_SOURCE_DENY_CACHE);
    REQUIRE(cached.retry_after_ms <= denied.retry_after_ms);
  }
  // The denial was made and cached before `denied_at`: past its
  // retry_after from then, the cache must have let go and Redis allows.
  std::this_thread::sleep_until(
      denied_at + std::chrono::milliseconds(denied.retry_after_ms + 20));
  const rl_decision again = check(lim.p, key, p);
  CHECK(again.source == RL_SOURCE_STORE);
  CHECK(again.allowed == 1);
}

TEST_CASE("redis: each policy's reset_after and retry_after reach the decision",
          "[redis][multi]") {
  // GCRA over ~32 years: T = period / limit, and a fresh key's first unit
  // resets after exactly T whatever the clock reads, so the figures are
  // exact; each one must come from its own policy's place in the reply.
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  constexpr int64_t kPeriodMs = 1'000'000'000'000;
  rl_policy_spec ps[2] = {RL_POLICY_SPEC_INIT, RL_POLICY_SPEC_INIT};
  ps[0].limit = 10;  // T = 1e11 ms
  ps[0].period_ms = kPeriodMs;
  ps[1].limit = 4;  // T = 2.5e11 ms
  ps[1].period_ms = kPeriodMs;
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim.p, &d, "a", 1, &ps[0], 1, 1) == RL_OK);
  CHECK(d.reset_after_ms == 100'000'000'000);
  CHECK(d.retry_after_ms == 0);
  REQUIRE(rl_check(lim.p, &d, "b", 1, ps, 2, 1) == RL_OK);
  REQUIRE(d.allowed == 1);
  CHECK(d.policy_index == 1);  // fewest remaining
  CHECK(d.remaining == 3);
  CHECK(d.reset_after_ms == 250'000'000'000);
  REQUIRE(rl_check(lim.p, &d, "b", 1, ps, 2, 3) == RL_OK);
  REQUIRE(d.allowed == 1);
  // The second policy is spent: it denies, with a retry of one of its
  // intervals less the few ms the calls took.
  REQUIRE(rl_check(lim.p, &d, "b", 1, ps, 2, 1) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 1);
  CHECK(d.retry_after_ms <= 250'000'000'000);
  CHECK(d.retry_after_ms > 250'000'000'000 - 600'000);
  CHECK(d.reset_after_ms > 1'000'000'000'000 - 600'000);
  CHECK(d.reset_after_ms <= 1'000'000'000'000);
}

namespace {

// One multi-policy check on `lim`: three policies, the one at `deny_at`
// already exhausted on `key`. A denied check charges none of them; the
// decision names the denying one. Then, once the exhausted policy is left
// out, an allowed check charges every policy in it exactly once.
void multi_policy_denial_at(rl_limiter *lim, const std::string &key,
                            int deny_at, int32_t deny_alg) {
  INFO("key " << key << ", denying policy at " << deny_at << ", algorithm "
              << deny_alg);
  const int32_t others[2] = {(deny_alg + 1) % 4, (deny_alg + 2) % 4};
  rl_policy_spec ps[3];
  // Named: each is checked alone and in sub-lists, where an unnamed policy
  // would take its state from its position.
  static const char *const kNames[3] = {"p0", "p1", "p2"};
  for (int i = 0, o = 0; i < 3; ++i) {
    ps[i] = RL_POLICY_SPEC_INIT;
    ps[i].name = kNames[i];
    ps[i].name_len = 2;
    // About 32 years: no window boundary passes during the test.
    ps[i].period_ms = 1'000'000'000'000;
    if (i == deny_at) {
      ps[i].algorithm = deny_alg;
      ps[i].limit = 2;
    } else {
      ps[i].algorithm = others[o++];
      ps[i].limit = 10 + i;  // distinct from each other
    }
  }
  rl_decision d = RL_DECISION_INIT;
  // Exhaust the denying policy on its own.
  for (int i = 0; i < 2; ++i) {
    REQUIRE(rl_check(lim, &d, key.data(), key.size(), &ps[deny_at], 1, 1) ==
            RL_OK);
    REQUIRE(d.allowed == 1);
  }
  for (int round = 0; round < 3; ++round) {
    REQUIRE(rl_check(lim, &d, key.data(), key.size(), ps, 3, 1) == RL_OK);
    CHECK(d.allowed == 0);
    CHECK(d.policy_index == static_cast<uint32_t>(deny_at));
    CHECK(d.limit == 2);
  }
  // No policy was charged by the denied checks (a peek reads each alone).
  for (int i = 0; i < 3; ++i) {
    REQUIRE(rl_check(lim, &d, key.data(), key.size(), &ps[i], 1, 0) == RL_OK);
    CHECK(d.remaining == (i == deny_at ? 0 : ps[i].limit));
  }
  // The two others together: allowed, and each charged once.
  rl_policy_spec pair[2];
  for (int i = 0, o = 0; i < 3; ++i)
    if (i != deny_at) pair[o++] = ps[i];
  REQUIRE(rl_check(lim, &d, key.data(), key.size(), pair, 2, 1) == RL_OK);
  CHECK(d.allowed == 1);
  for (const rl_policy_spec &p : pair) {
    REQUIRE(rl_check(lim, &d, key.data(), key.size(), &p, 1, 0) == RL_OK);
    CHECK(d.remaining == p.limit - 1);
  }
}

void multi_policy_every_position(rl_limiter *lim) {
  for (int32_t alg = 0; alg < 4; ++alg)
    for (int at = 0; at < 3; ++at)
      multi_policy_denial_at(
          lim, "multi-" + std::to_string(alg) + "-" + std::to_string(at), at,
          alg);
}

}  // namespace

TEST_CASE("a denying policy first, in the middle or last charges no other",
          "[memory][multi]") {
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, nullptr) == RL_OK);
  multi_policy_every_position(lim);
  rl_destroy(lim);
}

TEST_CASE(
    "redis: a denying policy first, in the middle or last charges no other",
    "[redis][multi]") {
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.deny_cache = -1;  // every check reaches the scripts
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  multi_policy_every_position(lim);
  rl_destroy(lim);
}

TEST_CASE("redis: rl_ping's round trip shows in rl_health", "[redis][health]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  int64_t rtt = -1;
  REQUIRE(rl_ping(lim.p, &rtt) == RL_OK);
  CHECK(rtt >= 0);
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim.p, &h) == RL_OK);
  CHECK(h.last_ping_us >= 0);
}

namespace {

// Every decision of a burst of async checks, by key.
struct Burst {
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, errors = 0;
  std::string first_error;
  std::map<std::string, std::vector<rl_decision>> by_key;
};
struct Call {
  Burst *burst;
  std::string key;
};
void on_done(int status, const rl_decision *d, const char *, void *user) {
  auto *call = static_cast<Call *>(user);
  Burst &b = *call->burst;
  std::lock_guard<std::mutex> lock(b.mu);
  if (status != RL_OK) {
    if (b.errors++ == 0) b.first_error = rl_last_error();
  } else {
    b.by_key[call->key].push_back(*d);
  }
  ++b.done;
  delete call;
  b.cv.notify_one();
}

long evalsha_calls(const tollgate_test::RedisServer &server) {
  const std::string info = server.command({"INFO", "commandstats"});
  const std::string tag = "cmdstat_evalsha:calls=";
  const size_t at = info.find(tag);
  return at == std::string::npos ? 0 : std::stol(info.substr(at + tag.size()));
}

rl_policy_spec make(int32_t alg, int64_t limit) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = alg;
  p.limit = limit;
  // About 32 years: on Redis' clock no refill or window boundary falls
  // inside the burst, so every count below is exact however slow it runs.
  p.period_ms = 1'000'000'000'000;
  return p;
}

}  // namespace

TEST_CASE(
    "redis: async checks queued together are joined, and decide as "
    "one by one",
    "[redis][async][join]") {
  tollgate_test::RedisServer server;
  Lim lim(server.url());
  // Eight keys, each with its own policy (every algorithm twice), and one
  // key checked against two policies at once.
  constexpr int kKeys = 8;
  std::vector<rl_policy_spec> pols;
  for (int k = 0; k < kKeys; ++k) pols.push_back(make(k % 4, 20 + k));
  const rl_policy_spec both[2] = {make(RL_ALG_GCRA, 40),
                                  make(RL_ALG_FIXED_WINDOW, 25)};
  constexpr int kRounds = 60;

  for (int pass = 0; pass < 2; ++pass) {
    INFO("pass " << pass);
    if (pass == 1) {
      // The scripts are gone: joined calls fall back to EVAL once.
      server.command({"SCRIPT", "FLUSH"});
    }
    // Fresh keys each pass (the first pass's denials are cached locally).
    const std::string pre = "p" + std::to_string(pass);
    const long calls_before = evalsha_calls(server);
    Burst b;
    int sent = 0;
    for (int r = 0; r < kRounds; ++r) {
      for (int k = 0; k < kKeys; ++k) {
        const std::string key = pre + "j" + std::to_string(k);
        auto *call = new Call{&b, key};
        REQUIRE(rl_check_async(lim.p, key.data(), key.size(), &pols[k], 1, 1,
                               on_done, call) == RL_OK);
        ++sent;
      }
      auto *call = new Call{&b, pre + "both"};
      REQUIRE(rl_check_async(lim.p, call->key.data(), call->key.size(), both, 2,
                             1, on_done, call) == RL_OK);
      ++sent;
    }
    {
      std::unique_lock<std::mutex> lock(b.mu);
      REQUIRE(b.cv.wait_for(lock, std::chrono::seconds(20),
                            [&] { return b.done == sent; }));
    }
    INFO(b.first_error);
    REQUIRE(b.errors == 0);
    // Per key exactly `limit` admitted, and the admitted calls saw every
    // remaining count from limit - 1 down to 0 once: each check saw the
    // state its predecessors left, inside a joined call as across calls.
    for (int k = 0; k < kKeys; ++k) {
      const auto &ds = b.by_key[pre + "j" + std::to_string(k)];
      REQUIRE(ds.size() == static_cast<size_t>(kRounds));
      std::multiset<int64_t> remaining;
      for (const rl_decision &d : ds)
        if (d.allowed) remaining.insert(d.remaining);
      std::multiset<int64_t> want;
      for (int64_t r = 0; r < pols[k].limit; ++r) want.insert(r);
      CHECK(remaining == want);
    }
    // Two policies, all or nothing: the fixed window's 25 bound both.
    int admitted = 0;
    for (const rl_decision &d : b.by_key[pre + "both"]) admitted += d.allowed;
    CHECK(admitted == 25);
    rl_decision d = RL_DECISION_INIT;
    const std::string both_key = pre + "both";
    REQUIRE(rl_check(lim.p, &d, both_key.data(), both_key.size(), &both[0], 1,
                     0) == RL_OK);
    CHECK(d.remaining == 15);
    // Fewer script calls than checks reached Redis: checks were joined.
    // (The first of a burst may go alone, and a joined call takes at most
    // 64 checks.)
    const long calls = evalsha_calls(server) - calls_before;
    INFO("EVALSHA calls " << calls << " for " << sent << " checks");
    CHECK(calls < sent / 2);
  }
}
