// Concurrency leases (docs/leases.md): at most max_in_flight held per key,
// ended by release or by their ttl, on the memory store and on Redis (a
// sorted set per key, on the server's clock), with the failure modes'
// answers while Redis is away, the bad-input errors, and processes sharing
// one key.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/handles.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

using tollgate_test::Limiter;
using tollgate_test::TestClock;

struct Got {
  rl_lease *lease = nullptr;
  rl_lease_info info = RL_LEASE_INFO_INIT;
};

Got acquire(rl_limiter *lim, const std::string &key, int64_t max,
            int64_t ttl_ms) {
  Got g;
  const int rc = rl_lease_acquire(lim, key.data(), key.size(), max, ttl_ms,
                                  &g.lease, &g.info);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  REQUIRE((g.lease != nullptr) == (g.info.acquired == 1));
  return g;
}

int release(rl_limiter *lim, rl_lease *lease) {
  int held = -1;
  const int rc = rl_lease_release(lim, lease, &held);
  INFO(rl_last_error());
  REQUIRE(rc == RL_OK);
  return held;
}

// The semantics every store shares, on a clock the test moves.
void semantics(const std::string &url) {
  TestClock clock;
  Limiter lim({.url = url, .clock = &clock});
  const std::string key = "report:org-7";
  Got a = acquire(lim.p, key, 2, 1000);
  CHECK(a.info.acquired == 1);
  CHECK(a.info.in_flight == 1);
  CHECK(a.info.max_in_flight == 2);
  CHECK(a.info.retry_after_ms == 0);
  CHECK(a.info.source == RL_SOURCE_STORE);
  clock.now += 300'000;
  Got b = acquire(lim.p, key, 2, 1000);
  CHECK(b.info.in_flight == 2);
  // Full: denied until the earliest lease ends (a's, 700 ms from now).
  Got c = acquire(lim.p, key, 2, 1000);
  CHECK(c.info.acquired == 0);
  CHECK(c.lease == nullptr);
  CHECK(c.info.in_flight == 2);
  CHECK(c.info.retry_after_ms == 700);
  // Another key is not affected.
  Got other = acquire(lim.p, "report:org-8", 2, 1000);
  CHECK(other.info.acquired == 1);
  // A release lets the next one in.
  CHECK(release(lim.p, a.lease) == 1);
  Got d = acquire(lim.p, key, 2, 1000);
  CHECK(d.info.acquired == 1);
  CHECK(d.info.in_flight == 2);
  // A double release is harmless and says the lease was not held.
  CHECK(release(lim.p, a.lease) == 0);
  // Renewing b (ends at +1300 ms) to 1000 ms from +900 ms: it ends at
  // +1900 ms. At +1500 ms d (acquired at +300 ms) has ended, b has not.
  clock.now += 600'000;
  REQUIRE(rl_lease_renew(lim.p, b.lease, 1000) == RL_OK);
  clock.now += 600'000;
  Got e = acquire(lim.p, key, 2, 1000);  // ends at +2500 ms
  CHECK(e.info.acquired == 1);
  CHECK(e.info.in_flight == 2);
  Got full = acquire(lim.p, key, 2, 1000);
  CHECK(full.info.acquired == 0);
  CHECK(full.info.retry_after_ms == 400);  // b, at +1900 ms
  // d has expired: renewing it fails, and its late release is harmless and
  // says so.
  CHECK(rl_lease_renew(lim.p, d.lease, 1000) == RL_E_NOT_FOUND);
  CHECK(std::string(rl_last_error()).find("not held") != std::string::npos);
  CHECK(release(lim.p, d.lease) == 0);
  // At b's end its place is free again.
  clock.now += 400'000;
  Got f = acquire(lim.p, key, 2, 1000);
  CHECK(f.info.acquired == 1);
  CHECK(f.info.in_flight == 2);  // e and f
  CHECK(release(lim.p, b.lease) == 0);
  // A released lease cannot be renewed.
  CHECK(release(lim.p, f.lease) == 1);
  CHECK(rl_lease_renew(lim.p, f.lease, 1000) == RL_E_NOT_FOUND);
  // rl_reset forgets the key's leases.
  const std::string one = "report:org-9";
  Got g1 = acquire(lim.p, one, 1, 60000);
  CHECK(g1.info.acquired == 1);
  CHECK(acquire(lim.p, one, 1, 60000).info.acquired == 0);
  REQUIRE(rl_reset(lim.p, one.data(), one.size()) == RL_OK);
  Got g2 = acquire(lim.p, one, 1, 60000);
  CHECK(g2.info.acquired == 1);
  for (rl_lease *l : {a.lease, b.lease, d.lease, e.lease, other.lease, f.lease,
                      g1.lease, g2.lease})
    rl_lease_free(l);
}

}  // namespace

TEST_CASE("leases: at most max_in_flight, release, renew and ttl (memory)",
          "[leases][limiter]") {
  semantics("");
}

TEST_CASE("leases: at most max_in_flight, release, renew and ttl (Redis)",
          "[leases][redis]") {
  tollgate_test::RedisServer server;
  semantics(server.url());
  // The key's leases are one sorted set, expiring with its last lease.
  Limiter lim({.url = server.url()});
  Got a = acquire(lim.p, "k", 3, 60000);
  const std::string name = "tollgate:v2:{k}:!l";
  CHECK(server.command({"TYPE", name}) == "+zset\r\n");
  CHECK(server.command({"ZCARD", name}) == ":1\r\n");
  const tollgate_test::RespValue ttl = server.query({"PTTL", name});
  CHECK(ttl.integer > 50000);
  CHECK(ttl.integer <= 60000);
  // The key listing does not show it as a state.
  rl_policy *p = nullptr;
  REQUIRE(rl_policy_parse(&p, "5/m", 3, nullptr) == RL_OK);
  rl_keys *it = nullptr;
  REQUIRE(rl_keys_open(lim.p, &p, 1, &it) == RL_OK);
  rl_key_info ki = RL_KEY_INFO_INIT;
  CHECK(rl_keys_next(it, &ki) == RL_E_DONE);
  rl_keys_free(it);
  rl_policy_release(p);
  CHECK(release(lim.p, a.lease) == 1);
  rl_lease_free(a.lease);
}

TEST_CASE("leases: bad input gets a clear error", "[leases][limiter]") {
  Limiter lim;
  Limiter other;
  rl_lease *l = reinterpret_cast<rl_lease *>(0x1);
  rl_lease_info info = RL_LEASE_INFO_INIT;
  auto refused = [&](int64_t max, int64_t ttl, const char *text) {
    l = reinterpret_cast<rl_lease *>(0x1);
    CHECK(rl_lease_acquire(lim.p, "k", 1, max, ttl, &l, &info) ==
          RL_E_INVALID_ARG);
    CHECK(l == nullptr);
    CHECK(std::string(rl_last_error()).find(text) != std::string::npos);
  };
  refused(0, 1000, "max_in_flight must be 1 to 1000000 (got 0)");
  refused(-3, 1000, "max_in_flight");
  refused(RL_MAX_IN_FLIGHT + 1, 1000, "max_in_flight");
  refused(1, 0, "ttl must be 1 ms to 2^40 ms (got 0)");
  refused(1, -5, "ttl");
  refused(1, RL_MAX_LEASE_TTL_MS + 1, "ttl");
  CHECK(rl_lease_acquire(lim.p, "", 0, 1, 1000, &l, &info) == RL_E_KEY_INVALID);
  CHECK(rl_lease_acquire(lim.p, nullptr, 3, 1, 1000, &l, &info) ==
        RL_E_KEY_INVALID);
  CHECK(rl_lease_acquire(nullptr, "k", 1, 1, 1000, &l, &info) ==
        RL_E_INVALID_ARG);
  CHECK(rl_lease_acquire(lim.p, "k", 1, 1, 1000, nullptr, &info) ==
        RL_E_INVALID_ARG);
  rl_lease_info old = RL_LEASE_INFO_INIT;
  old.version = 99;
  CHECK(rl_lease_acquire(lim.p, "k", 1, 1, 1000, &l, &old) == RL_E_VERSION);
  // The largest values are taken; info may be NULL.
  REQUIRE(rl_lease_acquire(lim.p, "big", 3, RL_MAX_IN_FLIGHT,
                           RL_MAX_LEASE_TTL_MS, &l, nullptr) == RL_OK);
  REQUIRE(l != nullptr);
  // A lease shown to another limiter is refused, and stays usable.
  int held = -1;
  CHECK(rl_lease_release(other.p, l, &held) == RL_E_INVALID_ARG);
  CHECK(std::string(rl_last_error()).find("another limiter") !=
        std::string::npos);
  CHECK(held == 0);
  CHECK(rl_lease_renew(other.p, l, 1000) == RL_E_INVALID_ARG);
  CHECK(rl_lease_renew(lim.p, l, 0) == RL_E_INVALID_ARG);
  CHECK(rl_lease_renew(lim.p, l, 1000) == RL_OK);
  CHECK(rl_lease_release(lim.p, nullptr, &held) == RL_E_INVALID_ARG);
  CHECK(rl_lease_release(nullptr, l, &held) == RL_E_INVALID_ARG);
  CHECK(rl_lease_release(lim.p, l, nullptr) == RL_OK);
  rl_lease_free(l);
  rl_lease_free(nullptr);
}

TEST_CASE("leases: a lease may be freed after its limiter", "[leases]") {
  rl_lease *l = nullptr;
  {
    Limiter lim;
    REQUIRE(rl_lease_acquire(lim.p, "k", 1, 1, 1000, &l, nullptr) == RL_OK);
  }
  rl_lease_free(l);  // ASan: no use of the destroyed limiter
}

TEST_CASE("leases: while Redis is away the failure mode answers",
          "[leases][redis]") {
  tollgate_test::RedisServer server;
  const std::string url = server.url();
  server.kill9();
  {
    Limiter lim({.url = url, .failure_mode = RL_FAIL_OPEN});
    Got a = acquire(lim.p, "k", 1, 1000);
    CHECK(a.info.acquired == 1);
    CHECK(a.info.source == RL_SOURCE_FAIL_OPEN);
    Got b = acquire(lim.p, "k", 1, 1000);  // not counted anywhere
    CHECK(b.info.acquired == 1);
    CHECK(rl_lease_renew(lim.p, a.lease, 1000) == RL_OK);
    CHECK(release(lim.p, a.lease) == 1);
    rl_lease_free(a.lease);
    rl_lease_free(b.lease);
  }
  {
    Limiter lim({.url = url, .failure_mode = RL_FAIL_CLOSED});
    Got a = acquire(lim.p, "k", 5, 1000);
    CHECK(a.info.acquired == 0);
    CHECK(a.info.source == RL_SOURCE_FAIL_CLOSED);
    CHECK(a.info.retry_after_ms == 1000);
  }
  {
    // Four processes share the limit: each holds 8 / 4 = 2 on its own.
    Limiter lim(
        {.url = url, .failure_mode = RL_FAIL_LOCAL, .local_divisor = 4});
    Got a = acquire(lim.p, "k", 8, 1000);
    Got b = acquire(lim.p, "k", 8, 1000);
    Got c = acquire(lim.p, "k", 8, 1000);
    CHECK(a.info.acquired == 1);
    CHECK(a.info.source == RL_SOURCE_LOCAL);
    CHECK(b.info.acquired == 1);
    CHECK(c.info.acquired == 0);
    CHECK(c.info.source == RL_SOURCE_LOCAL);
    CHECK(rl_lease_renew(lim.p, a.lease, 1000) == RL_OK);
    CHECK(release(lim.p, a.lease) == 1);
    Got d = acquire(lim.p, "k", 8, 1000);
    CHECK(d.info.acquired == 1);
    rl_lease_free(a.lease);
    rl_lease_free(b.lease);
    rl_lease_free(d.lease);
  }
  {
    Limiter lim({.url = url, .failure_mode = RL_FAIL_ERROR});
    rl_lease *l = nullptr;
    CHECK(rl_lease_acquire(lim.p, "k", 1, 1, 1000, &l, nullptr) ==
          RL_E_CONNECT);
    CHECK(l == nullptr);
  }
}

TEST_CASE("leases: 8 processes on one key never hold more than max at once",
          "[leases][redis][processes]") {
  tollgate_test::RedisServer server;
  const std::string url = server.url();
  constexpr int kProcs = 8;
  constexpr int kMax = 3;
  // Shared between the processes: holders now, the most seen, acquisitions.
  struct Shared {
    std::atomic<int> holding, most, acquired, errors;
  };
  void *mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  auto *sh = new (mem) Shared{{0}, {0}, {0}, {0}};
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcs; ++i) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      rl_options o = RL_OPTIONS_INIT;
      o.url = url.c_str();
      o.failure_mode = RL_FAIL_ERROR;
      rl_limiter *lim = nullptr;
      if (rl_create(&lim, &o) != RL_OK) _exit(2);
      const auto end =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
      while (std::chrono::steady_clock::now() < end) {
        rl_lease *l = nullptr;
        if (rl_lease_acquire(lim, "export", 6, kMax, 10000, &l, nullptr) !=
            RL_OK) {
          sh->errors.fetch_add(1);
          continue;
        }
        if (l == nullptr) {
          usleep(200);
          continue;
        }
        // Counted after the acquire and uncounted before the release, so
        // this count never exceeds the leases actually held.
        const int now = sh->holding.fetch_add(1) + 1;
        int most = sh->most.load();
        while (now > most && !sh->most.compare_exchange_weak(most, now)) {
        }
        sh->acquired.fetch_add(1);
        usleep(500);
        sh->holding.fetch_sub(1);
        int held = 0;
        if (rl_lease_release(lim, l, &held) != RL_OK || held != 1)
          sh->errors.fetch_add(1);
        rl_lease_free(l);
      }
      rl_destroy(lim);
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  INFO("acquired " << sh->acquired.load() << ", most at once "
                   << sh->most.load());
  CHECK(sh->errors.load() == 0);
  CHECK(sh->most.load() <= kMax);
  CHECK(sh->most.load() >= 2);  // the processes did contend
  CHECK(sh->acquired.load() > kProcs);
  CHECK(server.command({"ZCARD", "tollgate:v2:{export}:!l"}) == ":0\r\n");
  munmap(mem, sizeof(Shared));
}

TEST_CASE("leases: a SIGKILLed holder's lease ends after its ttl",
          "[leases][redis][processes]") {
  tollgate_test::RedisServer server;
  const std::string url = server.url();
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    rl_options o = RL_OPTIONS_INIT;
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    rl_limiter *lim = nullptr;
    rl_lease *l = nullptr;
    char ok = 'n';
    if (rl_create(&lim, &o) == RL_OK &&
        rl_lease_acquire(lim, "job", 3, 1, 800, &l, nullptr) == RL_OK && l)
      ok = 'y';
    (void)!write(ready[1], &ok, 1);
    for (;;) pause();  // killed here, holding the lease
  }
  close(ready[1]);
  char ok = 0;
  REQUIRE(read(ready[0], &ok, 1) == 1);
  close(ready[0]);
  REQUIRE(kill(pid, SIGKILL) == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(ok == 'y');
  Limiter lim({.url = url});
  Got denied = acquire(lim.p, "job", 1, 1000);
  CHECK(denied.info.acquired == 0);
  CHECK(denied.info.retry_after_ms >= 1);
  CHECK(denied.info.retry_after_ms <= 800);
  std::this_thread::sleep_for(
      std::chrono::milliseconds(denied.info.retry_after_ms + 20));
  Got got = acquire(lim.p, "job", 1, 1000);
  CHECK(got.info.acquired == 1);
  CHECK(release(lim.p, got.lease) == 1);
  rl_lease_free(got.lease);
}

TEST_CASE(
    "leases: the memory table holds at most max_keys keys, and drops "
    "keys whose leases have ended to make room",
    "[leases]") {
  TestClock clock;
  rl_options o = RL_OPTIONS_INIT;
  o.max_keys = 16;  // one key per lease shard
  clock.use_in(o);
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  int held = 0, refused = 0;
  std::string first_refused;
  std::vector<rl_lease *> leases;
  for (int i = 0; i < 100; ++i) {
    const std::string key = "bound:" + std::to_string(i);
    rl_lease *l = nullptr;
    rl_lease_info info = RL_LEASE_INFO_INIT;
    const int rc =
        rl_lease_acquire(lim, key.data(), key.size(), 1, 1000, &l, &info);
    if (rc == RL_OK) {
      REQUIRE(info.acquired == 1);
      ++held;
      leases.push_back(l);
    } else {
      CHECK(rc == RL_E_NOMEM);
      if (first_refused.empty()) first_refused = key;
      ++refused;
    }
  }
  CHECK(held >= 1);
  CHECK(held <= 16);  // never more keys than max_keys
  REQUIRE(refused > 0);
  // Once every lease has ended, a new key finds room: the ended keys are
  // dropped when room is needed.
  clock.now += 1'000'000;
  rl_lease *l = nullptr;
  rl_lease_info info = RL_LEASE_INFO_INIT;
  REQUIRE(rl_lease_acquire(lim, first_refused.data(), first_refused.size(), 1,
                           1000, &l, &info) == RL_OK);
  CHECK(info.acquired == 1);
  rl_lease_free(l);
  for (rl_lease *x : leases) rl_lease_free(x);
  rl_destroy(lim);
}
