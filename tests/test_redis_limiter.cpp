// Limiter-level behaviour on Redis through the C ABI: what rl_reset and
// rl_ping leave behind (the deny cache, the health snapshot), and async
// checks joined into one script call.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

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

rl_decision check(rl_limiter *lim, const std::string &key, const rl_policy &p) {
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
  rl_policy p = RL_POLICY_INIT;
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
void on_done(int status, const rl_decision *d, void *user) {
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

rl_policy make(int32_t alg, int64_t limit) {
  rl_policy p = RL_POLICY_INIT;
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = 3600 * 1000;
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
  std::vector<rl_policy> pols;
  for (int k = 0; k < kKeys; ++k) pols.push_back(make(k % 4, 20 + k));
  const rl_policy both[2] = {make(RL_ALG_GCRA, 40),
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
