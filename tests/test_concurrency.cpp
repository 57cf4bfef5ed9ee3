// One limiter, many threads, one key: exactly `limit` calls are admitted,
// for every algorithm and for a multi-policy check.
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "support/policy_specs.hpp"
#include "tollgate.h"

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kCallsPerThread = 20000;  // sanitizers are ~10x slower
#else
constexpr int kCallsPerThread = 100000;
#endif
constexpr int kThreads = 8;

int64_t pinned_clock(void *) {
  return 1'700'000'000'123'456;
}

int64_t admitted(rl_limiter *lim, const rl_policy_spec *policies, size_t n) {
  std::atomic<int64_t> total{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      int64_t mine = 0;
      for (int i = 0; i < kCallsPerThread; ++i) {
        rl_decision d = RL_DECISION_INIT;
        if (rl_check(lim, &d, "org-123", 7, policies, n, 1) != RL_OK) ++errors;
        mine += d.allowed;
      }
      total += mine;
    });
  for (auto &th : threads) th.join();
  REQUIRE(errors == 0);
  return total;
}

}  // namespace

TEST_CASE("8 threads on one key admit exactly the limit", "[concurrency]") {
  const int32_t algs[] = {RL_ALG_GCRA, RL_ALG_TOKEN_BUCKET, RL_ALG_FIXED_WINDOW,
                          RL_ALG_SLIDING_WINDOW};
  for (int32_t alg : algs) {
    INFO("algorithm " << alg);
    rl_options opts = RL_OPTIONS_INIT;
    opts.clock = pinned_clock;  // no refill during the run: exactly L
    rl_limiter *lim = nullptr;
    REQUIRE(rl_create(&lim, &opts) == RL_OK);
    rl_policy_spec p = RL_POLICY_SPEC_INIT;
    p.algorithm = alg;
    p.limit = 12345;
    p.period_ms = 3600 * 1000;
    CHECK(admitted(lim, &p, 1) == 12345);
    rl_health_info h = RL_HEALTH_INIT;
    REQUIRE(rl_health(lim, &h) == RL_OK);
    CHECK(h.checks == uint64_t{kThreads} * kCallsPerThread);
    CHECK(h.allowed == 12345);
    CHECK(h.denied == h.checks - 12345);
    rl_destroy(lim);
  }
}

TEST_CASE("8 threads on the real clock admit exactly the limit",
          "[concurrency]") {
  // A long period: no refill can happen while the test runs.
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, nullptr) == RL_OK);
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = 5000;
  p.period_ms = 86400LL * 1000 * 1000;  // 1000 days: T is 4.8 hours
  CHECK(admitted(lim, &p, 1) == 5000);
  rl_destroy(lim);
}

TEST_CASE("8 threads, multi-policy: the tighter policy bounds the total",
          "[concurrency]") {
  rl_options opts = RL_OPTIONS_INIT;
  opts.clock = pinned_clock;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &opts) == RL_OK);
  rl_policy_spec p[2] = {RL_POLICY_SPEC_INIT, RL_POLICY_SPEC_INIT};
  p[0].algorithm = RL_ALG_SLIDING_WINDOW;
  p[0].limit = 4000;
  p[0].period_ms = 1000;
  p[1].algorithm = RL_ALG_GCRA;
  p[1].limit = 3000;
  p[1].period_ms = 3600 * 1000;
  CHECK(admitted(lim, p, 2) == 3000);
  // Nothing beyond the admitted calls was charged to the looser policy.
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "org-123", 7, &p[0], 1, 0) == RL_OK);
  CHECK(d.remaining == 1000);
  rl_destroy(lim);
}

TEST_CASE(
    "8 threads, several keys in opposite orders: no deadlock, and every "
    "key admits exactly its limit",
    "[concurrency][check_keys]") {
  rl_options o = RL_OPTIONS_INIT;
  o.clock = pinned_clock;
  o.shards = 4;  // keys share and cross shards
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy *small = nullptr, *large = nullptr;
  REQUIRE(rl_policy_parse(&small, "300/h", 5, nullptr) == RL_OK);
  REQUIRE(rl_policy_parse(&large, "100000/h", 8, nullptr) == RL_OK);
  // Half the threads check (a, b), half (b, a); b's limit binds, so a is
  // charged only with b, and exactly 300 times.
  const char *ab[2] = {"key-a", "key-b"};
  const char *ba[2] = {"key-b", "key-a"};
  const size_t lens[2] = {5, 5};
  std::atomic<int64_t> total{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      const bool flip = t % 2 == 1;
      rl_policy *ps[2] = {flip ? small : large, flip ? large : small};
      const size_t ns[2] = {1, 1};
      int64_t mine = 0;
      for (int i = 0; i < kCallsPerThread / 10; ++i) {
        rl_decision d = RL_DECISION_INIT;
        if (rl_check_keys(lim, &d, flip ? ba : ab, lens, 2, ps, ns, 1) != RL_OK)
          ++errors;
        mine += d.allowed;
      }
      total += mine;
    });
  for (auto &th : threads) th.join();
  CHECK(errors == 0);
  CHECK(total == 300);
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "key-a", 5, &large, 1, 0) == RL_OK);
  CHECK(d.remaining == 100000 - 300);
  rl_policy_release(small);
  rl_policy_release(large);
  rl_destroy(lim);
}

// fork() while other threads check on a memory limiter: the child gets
// every shard whole and unlocked (the store's fork handlers), so its checks
// work and see the counts the parent had, instead of deadlocking on a
// shard lock held by a thread the child does not have.
TEST_CASE("memory store: a child forked while other threads check works",
          "[memory][fork]") {
  rl_limiter *lim = nullptr;
  rl_options o = RL_OPTIONS_INIT;
  o.shards = 2;  // few shards: a busy thread holds one most of the time
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy *ten = nullptr, *wide = nullptr;
  REQUIRE(rl_policy_parse(&ten, "10/h", 4, nullptr) == RL_OK);
  REQUIRE(rl_policy_parse(&wide, "1000000000/s", 12, nullptr) == RL_OK);
  rl_decision d = RL_DECISION_INIT;
  for (int i = 0; i < 3; ++i)
    REQUIRE(rl_check(lim, &d, "k", 1, &ten, 1, 1) == RL_OK);
  REQUIRE(d.remaining == 7);

  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 2; ++t)
    busy.emplace_back([&, t] {
      char key[16];
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const int n = std::snprintf(key, sizeof key, "b%d:%d", t,
                                    static_cast<int>(i % 256));
        rl_decision bd = RL_DECISION_INIT;
        rl_check(lim, &bd, key, static_cast<size_t>(n), &wide, 1, 1);
      }
    });
  int forks = 0, failed = 0, last_status = 0;
  for (; forks < 200 && failed == 0; ++forks) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      alarm(3);  // a deadlock ends as SIGALRM
      rl_decision cd = RL_DECISION_INIT;
      if (rl_check(lim, &cd, "k", 1, &ten, 1, 1) != RL_OK) _exit(2);
      if (!cd.allowed || cd.remaining != 6) _exit(3);
      char key[16];
      for (int i = 0; i < 256; ++i) {
        const int n = std::snprintf(key, sizeof key, "b0:%d", i);
        if (rl_check(lim, &cd, key, static_cast<size_t>(n), &wide, 1, 1) !=
            RL_OK)
          _exit(4);
      }
      _exit(0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failed;
      last_status = status;
    }
  }
  stop = true;
  for (auto &t : busy) t.join();
  INFO("forks " << forks << ", wait status " << last_status);
  CHECK(failed == 0);
  // The parent's own state is untouched by its children.
  REQUIRE(rl_check(lim, &d, "k", 1, &ten, 1, 1) == RL_OK);
  CHECK(d.remaining == 6);
  rl_policy_release(ten);
  rl_policy_release(wide);
  rl_destroy(lim);
}
