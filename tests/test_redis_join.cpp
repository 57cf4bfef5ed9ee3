// Checks joined into one batch call keep their own policies: a policy is
// shared in the call only when all five of its values equal another's.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

struct Results {
  std::mutex mu;
  std::map<std::string, int> allowed;
  std::atomic<int> done{0}, errors{0};
};

struct Call {
  Results *r;
  std::string key;
};

void on_done(int status, const rl_decision *d, const char *, void *user) {
  auto *c = static_cast<Call *>(user);
  if (status != RL_OK) {
    c->r->errors.fetch_add(1);
  } else {
    std::lock_guard<std::mutex> lock(c->r->mu);
    c->r->allowed[c->key] += d->allowed;
  }
  c->r->done.fetch_add(1);
  delete c;
}

rl_policy_spec policy(int32_t alg, int64_t limit, int64_t period_ms) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = period_ms;
  return p;
}

}  // namespace

TEST_CASE("redis join: joined checks of different policies keep their own",
          "[redis][join]") {
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = 20000;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  // Every value of `a` sorts after the same value of `b` (as text): GCRA
  // 1 per second, and a token bucket of 3 per 9 s.
  const rl_policy_spec b = policy(RL_ALG_GCRA, 1, 1000);
  const rl_policy_spec a = policy(RL_ALG_TOKEN_BUCKET, 3, 9000);
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "warm", 4, &b, 1, 1) == RL_OK);  // connected

  // Frozen: the first call waits on the wire and the rest queue behind it,
  // to leave together as one joined call when Redis answers again.
  server.stop();
  Results r;
  auto send = [&](const std::string &key, const rl_policy_spec &p) {
    REQUIRE(rl_check_async(lim, key.data(), key.size(), &p, 1, 1, on_done,
                           new Call{&r, key}) == RL_OK);
  };
  send("first", b);
  send("b", b);
  for (int i = 0; i < 3; ++i) send("a", a);
  server.cont();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (r.done.load() < 5 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(r.done.load() == 5);
  CHECK(r.errors.load() == 0);
  CHECK(r.allowed["first"] == 1);
  CHECK(r.allowed["b"] == 1);
  CHECK(r.allowed["a"] == 3);  // the token bucket's 3, not GCRA's 1
  rl_destroy(lim);
}
