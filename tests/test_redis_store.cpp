// The Redis store against a real redis-server that the tests start: shared
// limits, scripts, deadlines, reconnects, failure modes, the deny cache,
// health, admin listing, auth and TLS.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/certs.hpp"
#include "support/fake_server.hpp"
#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

using tollgate_test::FakeReply;
using tollgate_test::RedisServer;

namespace {

using Clock = std::chrono::steady_clock;

// About 32 years: on Redis' clock no refill or window boundary falls
// between a test's calls, so exact counts hold however slow the machine.
constexpr int64_t kLongMs = 1'000'000'000'000;

struct Lim {
  rl_limiter *p = nullptr;
  explicit Lim(const rl_options &o) {
    const int rc = rl_create(&p, &o);
    INFO("rl_create: " << rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
};

// Options for `url`; the URL text is kept alive for the whole test run.
rl_options opts_for(const std::string &url, int32_t failure_mode = 0) {
  static std::mutex mu;
  static std::deque<std::string> urls;
  std::lock_guard<std::mutex> lock(mu);
  urls.push_back(url);
  rl_options o = RL_OPTIONS_INIT;
  o.url = urls.back().c_str();
  o.failure_mode = failure_mode;
  return o;
}

rl_policy_spec policy(int64_t limit, int64_t period_ms,
                      int32_t alg = RL_ALG_GCRA) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = period_ms;
  return p;
}

int check(rl_limiter *lim, const std::string &key, const rl_policy_spec &p,
          rl_decision &d, int64_t cost = 1) {
  const rl_decision fresh = RL_DECISION_INIT;
  d = fresh;
  return rl_check(lim, &d, key.data(), key.size(), &p, 1, cost);
}

rl_health_info health(rl_limiter *lim) {
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim, &h) == RL_OK);
  return h;
}

// Waits until `pred` holds, up to `ms`.
template <typename F>
bool eventually(F pred, int ms) {
  const auto end = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// DBSIZE of database `db` (SELECT inside a script affects only the script).
long long dbsize(const RedisServer &server, int db) {
  const tollgate_test::RespValue r = server.query(
      {"EVAL", "redis.call('SELECT', ARGV[1]) return redis.call('DBSIZE')", "0",
       std::to_string(db)});
  INFO(r.str);
  REQUIRE(r.type == ':');
  return r.integer;
}

int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                               since)
      .count();
}

}  // namespace

TEST_CASE("redis: a limit is shared and exact", "[redis]") {
  RedisServer server;
  const std::string url = server.url();
  rl_options o = opts_for(url, RL_FAIL_ERROR);
  Lim a(o), b(o);
  const rl_policy_spec p = policy(5, 3600 * 1000);
  rl_decision d;
  int admitted = 0;
  for (int i = 0; i < 10; ++i) {
    REQUIRE(check(i % 2 ? a.p : b.p, "org-123", p, d) == RL_OK);
    CHECK((d.source == RL_SOURCE_STORE || d.source == RL_SOURCE_DENY_CACHE));
    admitted += d.allowed;
  }
  CHECK(admitted == 5);
  // Keys carry a TTL and the documented schema.
  const tollgate_test::RespValue ttl =
      server.query({"PTTL", "tollgate:v2:{org-123}"});
  CHECK(ttl.type == ':');
  CHECK(ttl.integer > 0);
  // The I/O thread pings every second and reports the round trip.
  CHECK(eventually([&] { return health(a.p).last_ping_us >= 0; }, 2500));
  rl_health_info h = health(a.p);
  CHECK(h.store_kind == RL_STORE_REDIS);
  CHECK(h.connection == RL_CONN_READY);
  CHECK(std::string(h.server_version).rfind("7.", 0) == 0);
}

TEST_CASE("redis: multi-policy checks are atomic and all-or-nothing",
          "[redis]") {
  RedisServer server;
  Lim lim(opts_for(server.url(), RL_FAIL_ERROR));
  rl_policy_spec ps[2] = {policy(2, 3600 * 1000),
                          policy(3, kLongMs, RL_ALG_FIXED_WINDOW)};
  ps[1].name = "window";  // checked alone below: its identity is its name
  ps[1].name_len = 6;
  rl_decision d = RL_DECISION_INIT;
  for (int i = 0; i < 2; ++i)
    REQUIRE(rl_check(lim.p, &d, "k", 1, ps, 2, 1) == RL_OK);
  REQUIRE(rl_check(lim.p, &d, "k", 1, ps, 2, 1) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.policy_index == 0);
  // The fixed window was charged twice, not three times.
  REQUIRE(rl_check(lim.p, &d, "k", 1, &ps[1], 1, 0) == RL_OK);
  CHECK(d.remaining == 1);
}

TEST_CASE("redis: NOSCRIPT after SCRIPT FLUSH is recovered", "[redis]") {
  RedisServer server;
  Lim lim(opts_for(server.url(), RL_FAIL_ERROR));
  const rl_policy_spec p = policy(100, kLongMs);
  rl_decision d;
  REQUIRE(check(lim.p, "k", p, d) == RL_OK);
  server.command({"SCRIPT", "FLUSH"});
  REQUIRE(check(lim.p, "k", p, d) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.remaining == 98);
}

TEST_CASE("redis: deny cache answers repeat denials locally", "[redis]") {
  RedisServer server;
  Lim lim(opts_for(server.url(), RL_FAIL_ERROR));
  const rl_policy_spec p = policy(1, kLongMs);
  rl_decision d;
  REQUIRE(check(lim.p, "k", p, d) == RL_OK);
  REQUIRE(check(lim.p, "k", p, d) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.source == RL_SOURCE_STORE);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(check(lim.p, "k", p, d) == RL_OK);
    CHECK(d.allowed == 0);
    CHECK(d.source == RL_SOURCE_DENY_CACHE);
    CHECK(d.retry_after_ms > 0);
  }
  CHECK(health(lim.p).deny_cache_hits == 5);

  rl_options off = opts_for(server.url(), RL_FAIL_ERROR);
  off.deny_cache = -1;
  Lim plain(off);
  REQUIRE(check(plain.p, "k", p, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_STORE);
  CHECK(health(plain.p).deny_cache_hits == 0);
}

TEST_CASE("redis: reset and the admin listing", "[redis]") {
  RedisServer server;
  Lim lim(opts_for(server.url(), RL_FAIL_ERROR));
  const rl_policy_spec p = policy(10, kLongMs);
  rl_policy_spec w = policy(7, kLongMs, RL_ALG_FIXED_WINDOW);
  w.name = "w";  // its own identity, so it is listed apart from p
  w.name_len = 1;
  rl_decision d;
  const std::string glob_key = "user*[1]?";  // glob characters are escaped
  REQUIRE(check(lim.p, "org-1", p, d, 3) == RL_OK);
  REQUIRE(check(lim.p, "org-2", w, d, 2) == RL_OK);
  REQUIRE(check(lim.p, glob_key, p, d) == RL_OK);
  REQUIRE(check(lim.p, "user-x", p, d) == RL_OK);

  rl_keys *it = nullptr;
  rl_policy *listed[2] = {nullptr, nullptr};
  REQUIRE(rl_policy_create(&listed[0], &p) == RL_OK);
  REQUIRE(rl_policy_create(&listed[1], &w) == RL_OK);
  REQUIRE(rl_keys_open(lim.p, listed, 2, &it) == RL_OK);
  // The iterator keeps what it needs of the handles.
  rl_policy_release(listed[0]);
  rl_policy_release(listed[1]);
  int seen = 0;
  bool saw_org1 = false, saw_org2 = false;
  for (;;) {
    rl_key_info info = RL_KEY_INFO_INIT;
    const int rc = rl_keys_next(it, &info);
    if (rc == RL_E_DONE) break;
    REQUIRE(rc == RL_OK);
    ++seen;
    const std::string key(info.key, info.key_len);
    if (key == "org-1") {
      saw_org1 = true;
      CHECK(info.policy.algorithm == RL_ALG_GCRA);
      CHECK(info.policy.limit == 10);
      CHECK(info.remaining == 7);
      CHECK(info.reset_after_ms > 0);
    }
    if (key == "org-2") {
      saw_org2 = true;
      CHECK(info.policy.algorithm == RL_ALG_FIXED_WINDOW);
      CHECK(std::string(info.policy.name, info.policy.name_len) == "w");
      CHECK(info.policy_index == 1);
      CHECK(info.remaining == 5);
    }
  }
  rl_keys_free(it);
  CHECK(seen == 4);
  CHECK(saw_org1);
  CHECK(saw_org2);

  // Reset one key with glob characters: only it goes.
  REQUIRE(rl_reset(lim.p, glob_key.data(), glob_key.size()) == RL_OK);
  REQUIRE(check(lim.p, "user-x", p, d, 0) == RL_OK);
  CHECK(d.remaining == 9);
  REQUIRE(check(lim.p, glob_key, p, d, 0) == RL_OK);
  CHECK(d.remaining == 10);
}

TEST_CASE("redis: Redis killed under load, then restarted", "[redis][chaos]") {
  RedisServer server;
  rl_options o = opts_for(server.url(), RL_FAIL_CLOSED);
  o.timeout_ms = 200;
  o.reconnect_max_ms = 500;
  Lim lim(o);
  const rl_policy_spec p = policy(1000000, 60000);
  rl_decision d;
  REQUIRE(check(lim.p, "warm", p, d) == RL_OK);
  REQUIRE(d.source == RL_SOURCE_STORE);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> worst_ms{0}, calls{0}, closed_answers{0}, bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const std::string key = "load" + std::to_string(t);
      while (!stop) {
        rl_decision dd = RL_DECISION_INIT;
        const auto start = Clock::now();
        const int rc = rl_check(lim.p, &dd, key.data(), key.size(), &p, 1, 1);
        const int64_t ms = elapsed_ms(start);
        int64_t prev = worst_ms.load();
        while (ms > prev && !worst_ms.compare_exchange_weak(prev, ms)) {
        }
        ++calls;
        if (rc != RL_OK) ++bad;
        if (dd.source == RL_SOURCE_FAIL_CLOSED) {
          ++closed_answers;
          if (dd.allowed) ++bad;
        }
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  server.kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  // While it is known down, answers come at once (no timeout each).
  const auto t0 = Clock::now();
  REQUIRE(check(lim.p, "down", p, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_FAIL_CLOSED);
  CHECK(d.allowed == 0);
  CHECK(elapsed_ms(t0) < 100);
  CHECK(health(lim.p).connection != RL_CONN_READY);

  server.restart();
  // Back within the backoff cap (500 ms) plus a connect, same limiter.
  CHECK(eventually(
      [&] {
        rl_decision dd;
        return check(lim.p, "after", p, dd) == RL_OK &&
               dd.source == RL_SOURCE_STORE;
      },
      3000));
  stop = true;
  for (auto &th : threads) th.join();
  CHECK(bad == 0);
  CHECK(closed_answers > 0);
  INFO("calls " << calls << ", worst " << worst_ms << " ms");
  CHECK(worst_ms <= 200 + 150);  // deadline plus slack
  // The restarted Redis started with no scripts; the reconnect loaded them.
  REQUIRE(check(lim.p, "after2", p, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_STORE);
  const rl_health_info h = health(lim.p);
  // One connection, one restart: exactly one re-established connection,
  // made by the I/O thread alone however many threads were calling.
  CHECK(h.reconnects == 1);
  CHECK(h.fail_closed > 0);
  CHECK(h.store_errors > 0);
  CHECK(std::strlen(h.last_error) > 0);
}

TEST_CASE("redis: a frozen Redis (SIGSTOP) is bounded by the deadline",
          "[redis][chaos]") {
  RedisServer server;
  rl_options o = opts_for(server.url(), RL_FAIL_OPEN);
  o.timeout_ms = 150;
  Lim lim(o);
  const rl_policy_spec p = policy(1000, 60000);
  rl_decision d;
  REQUIRE(check(lim.p, "k", p, d) == RL_OK);
  REQUIRE(d.source == RL_SOURCE_STORE);
  server.stop();
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    REQUIRE(check(lim.p, "k", p, d) == RL_OK);
    const int64_t ms = elapsed_ms(t0);
    CHECK(d.source == RL_SOURCE_FAIL_OPEN);
    CHECK(d.allowed == 1);
    CHECK(ms >= 140);
    CHECK(ms <= 150 + 100);
  }
  server.cont();
  CHECK(eventually(
      [&] {
        rl_decision dd;
        return check(lim.p, "k", p, dd) == RL_OK &&
               dd.source == RL_SOURCE_STORE;
      },
      3000));
}

TEST_CASE("redis: local fallback divides the limit", "[redis][chaos]") {
  RedisServer server;
  rl_options o = opts_for(server.url(), RL_FAIL_LOCAL);
  o.local_divisor = 4;
  Lim lim(o);
  server.kill9();
  const rl_policy_spec p = policy(100, 3600 * 1000);
  int admitted = 0;
  for (int i = 0; i < 60; ++i) {
    rl_decision d;
    REQUIRE(check(lim.p, "k", p, d) == RL_OK);
    CHECK(d.source == RL_SOURCE_LOCAL);
    admitted += d.allowed;
  }
  CHECK(admitted == 25);
  CHECK(health(lim.p).local_fallback == 60);
}

TEST_CASE("redis: charges and refunds from many threads stay exact",
          "[redis][refund]") {
  RedisServer server;
  Lim lim(opts_for(server.url(), RL_FAIL_ERROR));
  // A fixed window of ~32 years: nothing refills while the test runs.
  const rl_policy_spec p =
      policy(1'000'000'000, 1'000'000'000'000, RL_ALG_FIXED_WINDOW);
  constexpr int kThreads = 6, kRounds = 150;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        rl_decision d;
        // 3 charged, then 1 given back: 2 per round stay used.
        if (check(lim.p, "k", p, d, 3) != RL_OK || !d.allowed) ++errors;
        if (check(lim.p, "k", p, d, -1) != RL_OK || !d.allowed) ++errors;
      }
    });
  for (auto &th : threads) th.join();
  CHECK(errors.load() == 0);
  rl_decision peek;
  REQUIRE(check(lim.p, "k", p, peek, 0) == RL_OK);
  CHECK(peek.remaining == 1'000'000'000 - 2 * kThreads * kRounds);
  // Everything back at once, then nothing left to give.
  REQUIRE(check(lim.p, "k", p, peek, -(int64_t{1} << 40)) == RL_OK);
  CHECK(peek.remaining == 1'000'000'000);
  CHECK(check(lim.p, "k", p, peek, -1) == RL_E_NOT_FOUND);
}

TEST_CASE("redis: a refund while Redis is away gets the failure mode's answer",
          "[redis][refund][chaos]") {
  RedisServer server;
  rl_options o = opts_for(server.url(), RL_FAIL_LOCAL);
  Lim local(o);
  Lim closed(opts_for(server.url(), RL_FAIL_CLOSED));
  const rl_policy_spec p = policy(10, 3600 * 1000);
  rl_decision d;
  REQUIRE(check(local.p, "k", p, d) == RL_OK);
  server.kill9();
  // The local limiter never saw a charge, and still answers allowed.
  REQUIRE(check(local.p, "k", p, d, -1) == RL_OK);
  CHECK(d.source == RL_SOURCE_LOCAL);
  CHECK(d.allowed == 1);
  REQUIRE(check(closed.p, "k", p, d, -1) == RL_OK);
  CHECK(d.source == RL_SOURCE_FAIL_CLOSED);
}

TEST_CASE("redis: connection refused answers at once with the error",
          "[redis]") {
  RedisServer server;
  const std::string url = server.url();
  server.kill9();
  Lim lim(opts_for(url, RL_FAIL_ERROR));
  const rl_policy_spec p = policy(10, 1000);
  rl_decision d;
  const auto t0 = Clock::now();
  const int rc = check(lim.p, "k", p, d);
  CHECK((rc == RL_E_CONNECT || rc == RL_E_TIMEOUT));
  CHECK(elapsed_ms(t0) <= 250);
  int64_t rtt = 0;
  CHECK(rl_ping(lim.p, &rtt) == RL_E_CONNECT);
}

TEST_CASE("redis: auth errors are clear and never echo the password",
          "[redis][auth]") {
  RedisServer::Options so;
  so.password = "correct-horse";
  so.acl_users = {{"alice", "alice-pass-123"}};
  RedisServer server(so);
  const std::string base = "redis://127.0.0.1:" + std::to_string(server.port());

  SECTION("wrong password") {
    const std::string url =
        "redis://:Wr0ngPa55word@127.0.0.1:" + std::to_string(server.port());
    Lim lim(opts_for(url, RL_FAIL_ERROR));
    int64_t rtt;
    CHECK(rl_ping(lim.p, &rtt) == RL_E_AUTH);
    const std::string err = rl_last_error();
    CHECK(err.find("Wr0ngPa55word") == std::string::npos);
    CHECK(err.find("auth") != std::string::npos);
    rl_decision d;
    CHECK(check(lim.p, "k", policy(1, 1000), d) == RL_E_AUTH);
    CHECK(std::string(rl_last_error()).find("Wr0ngPa55word") ==
          std::string::npos);
    CHECK(std::string(health(lim.p).last_error).find("Wr0ngPa55word") ==
          std::string::npos);
  }
  SECTION("wrong ACL user") {
    rl_options o = opts_for(base, RL_FAIL_ERROR);
    o.username = "mallory";
    o.password = "alice-pass-123";
    Lim lim(o);
    int64_t rtt;
    CHECK(rl_ping(lim.p, &rtt) == RL_E_AUTH);
    CHECK(std::string(rl_last_error()).find("alice-pass-123") ==
          std::string::npos);
  }
  SECTION("no password at all") {
    Lim lim(opts_for(base, RL_FAIL_ERROR));
    int64_t rtt;
    CHECK(rl_ping(lim.p, &rtt) == RL_E_AUTH);
  }
  SECTION("right ACL user and password in the URL") {
    const std::string url = "redis://alice:alice-pass-123@127.0.0.1:" +
                            std::to_string(server.port()) + "/2";
    Lim lim(opts_for(url, RL_FAIL_ERROR));
    int64_t rtt = -1;
    REQUIRE(rl_ping(lim.p, &rtt) == RL_OK);
    CHECK(rtt >= 0);
    rl_decision d;
    REQUIRE(check(lim.p, "k", policy(1, 1000), d) == RL_OK);
    CHECK(d.source == RL_SOURCE_STORE);
  }
}

TEST_CASE("redis: TLS verification, names, plaintext and mutual TLS",
          "[redis][tls]") {
  const tollgate_test::Certs &certs = tollgate_test::test_certs();
  const rl_policy_spec p = policy(10, 60000);
  rl_decision d;

  SECTION("the right CA works") {
    RedisServer::Options so;
    so.tls = true;
    RedisServer server(so);
    rl_options o = opts_for(server.url(), RL_FAIL_ERROR);
    o.tls_ca_file = certs.ca_cert.c_str();
    Lim lim(o);
    int64_t rtt;
    REQUIRE(rl_ping(lim.p, &rtt) == RL_OK);
    REQUIRE(check(lim.p, "k", p, d) == RL_OK);
    CHECK(d.source == RL_SOURCE_STORE);
    CHECK(d.remaining == 9);
    // By name too: the certificate carries DNS:localhost.
    rl_options byname = opts_for(
        "rediss://localhost:" + std::to_string(server.port()), RL_FAIL_ERROR);
    byname.tls_ca_file = certs.ca_cert.c_str();
    Lim named(byname);
    CHECK(rl_ping(named.p, &rtt) == RL_OK);
  }
  SECTION("the wrong CA is refused") {
    RedisServer::Options so;
    so.tls = true;
    RedisServer server(so);
    rl_options o = opts_for(server.url(), RL_FAIL_ERROR);
    o.tls_ca_file = certs.other_ca_cert.c_str();
    Lim lim(o);
    int64_t rtt;
    CHECK(rl_ping(lim.p, &rtt) == RL_E_TLS);
    CHECK(std::string(rl_last_error()).find("certificate verif") !=
          std::string::npos);
    // Turning verification off is explicit, and then it connects.
    rl_options insecure = opts_for(server.url(), RL_FAIL_ERROR);
    insecure.tls_verify = -1;
    Lim lim2(insecure);
    CHECK(rl_ping(lim2.p, &rtt) == RL_OK);
  }
  SECTION("a hostname mismatch is refused") {
    RedisServer::Options so;
    so.tls = true;
    so.tls_cert_file = certs.wrong_cert;  // certificate for wrong.example
    so.tls_key_file = certs.wrong_key;
    RedisServer server(so);
    rl_options o = opts_for(server.url(), RL_FAIL_ERROR);
    o.tls_ca_file = certs.ca_cert.c_str();
    Lim lim(o);
    int64_t rtt;
    CHECK(rl_ping(lim.p, &rtt) == RL_E_TLS);
    CHECK(std::string(rl_last_error()).find("mismatch") != std::string::npos);
    rl_options named = opts_for(server.url(), RL_FAIL_ERROR);
    named.tls_ca_file = certs.ca_cert.c_str();
    named.tls_server_name = "localhost";
    Lim lim2(named);
    CHECK(rl_ping(lim2.p, &rtt) == RL_E_TLS);
  }
  SECTION("a plaintext client to a TLS port is refused") {
    RedisServer::Options so;
    so.tls = true;
    RedisServer server(so);
    Lim lim(opts_for("redis://127.0.0.1:" + std::to_string(server.port()),
                     RL_FAIL_ERROR));
    int64_t rtt;
    const int rc = rl_ping(lim.p, &rtt);
    CHECK(rc != RL_OK);
    CHECK((rc == RL_E_CONNECT || rc == RL_E_TIMEOUT || rc == RL_E_PROTOCOL));
    INFO(rl_last_error());
    CHECK(std::strlen(rl_last_error()) > 0);
  }
  SECTION("mutual TLS: no client certificate fails, the right one works") {
    RedisServer::Options so;
    so.tls = true;
    so.tls_auth_clients = "yes";
    RedisServer server(so);
    rl_options o = opts_for(server.url(), RL_FAIL_ERROR);
    o.tls_ca_file = certs.ca_cert.c_str();
    Lim without(o);
    int64_t rtt;
    CHECK(rl_ping(without.p, &rtt) == RL_E_TLS);
    o.tls_cert_file = certs.client_cert.c_str();
    o.tls_key_file = certs.client_key.c_str();
    Lim with(o);
    REQUIRE(rl_ping(with.p, &rtt) == RL_OK);
    REQUIRE(check(with.p, "k", p, d) == RL_OK);
    CHECK(d.source == RL_SOURCE_STORE);
  }
  SECTION("bad TLS files are errors at creation") {
    RedisServer::Options so;
    so.tls = true;
    RedisServer server(so);
    rl_options o = opts_for(server.url(), RL_FAIL_ERROR);
    o.tls_ca_file = "/nonexistent/ca.pem";
    rl_limiter *lim = nullptr;
    CHECK(rl_create(&lim, &o) == RL_E_TLS);
    CHECK(lim == nullptr);
    o.tls_ca_file = certs.ca_cert.c_str();
    o.tls_cert_file = certs.client_cert.c_str();
    o.tls_key_file = certs.wrong_key.c_str();  // does not match
    CHECK(rl_create(&lim, &o) == RL_E_TLS);
  }
}

TEST_CASE("redis: malformed and oversized replies are protocol errors",
          "[redis][protocol]") {
  auto statm_rss_mb = [] {
    long pages = 0, rss = 0;
    FILE *f = std::fopen("/proc/self/statm", "r");
    if (f) {
      if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
      std::fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE) / (1024 * 1024);
  };
  const std::string info_body = "# Server\r\nredis_version:9.9.9\r\n";
  const std::string info =
      "$" + std::to_string(info_body.size()) + "\r\n" + info_body + "\r\n";
  const rl_policy_spec p = policy(10, 60000);

  struct Case {
    const char *name;
    std::vector<FakeReply> replies;
    int expect;
  };
  const std::string huge_bulk_then_data =
      "$999999999999\r\n" + std::string(9 * 1024 * 1024, 'x');
  // The handshake: INFO, then one SCRIPT LOAD per script (nine: four
  // algorithms, multi, batch, block, many, lease), then FUNCTION LOAD (a
  // server of 7.0 or later), answered with the library's name.
  auto after_handshake = [&](std::vector<FakeReply> rest) {
    std::vector<FakeReply> all = {FakeReply::send(info)};
    for (int i = 0; i < 9; ++i)
      all.push_back(
          FakeReply::send("$40\r\n" + std::string(40, 'a' + i) + "\r\n"));
    all.push_back(FakeReply::send("$8\r\ntollgate\r\n"));
    all.insert(all.end(), rest.begin(), rest.end());
    return all;
  };
  const Case cases[] = {
      {"absurd array in the handshake",
       {FakeReply::send("*888888880\r\n")},
       RL_E_PROTOCOL},
      {"absurd array as a check reply",
       after_handshake({FakeReply::send("*888888880\r\n")}), RL_E_PROTOCOL},
      {"absurd bulk length, then megabytes",
       after_handshake({FakeReply::send(huge_bulk_then_data)}), RL_E_PROTOCOL},
      {"garbage type byte", after_handshake({FakeReply::send("!garbage\r\n")}),
       RL_E_PROTOCOL},
      {"wrong reply shape", after_handshake({FakeReply::send(":1\r\n")}),
       RL_E_PROTOCOL},
      {"error reply",
       after_handshake({FakeReply::send("-ERR something broke\r\n")}),
       RL_E_STORE},
      {"closed mid-reply", after_handshake({FakeReply::close("*5\r\n:1\r\n")}),
       RL_E_CONNECT},
      {"silent after the handshake", after_handshake({}), RL_E_TIMEOUT},
  };
  for (const Case &c : cases) {
    SECTION(c.name) {
      tollgate_test::FakeServer fake(c.replies);
      rl_options o = opts_for(fake.url(), RL_FAIL_ERROR);
      // The silent server is about the deadline; the others about the
      // error, which must not lose a race with a short deadline on a slow
      // (sanitized, loaded) machine: 9 MB of junk take a while under TSan.
      const uint32_t deadline_ms = c.expect == RL_E_TIMEOUT ? 300 : 5000;
      o.timeout_ms = deadline_ms;
      o.deny_cache = -1;
      const long before = statm_rss_mb();
      Lim lim(o);
      rl_decision dd;
      const auto t0 = Clock::now();
      const int rc = check(lim.p, "k", p, dd);
      INFO(rl_last_error());
      CHECK(rc == c.expect);
      CHECK(elapsed_ms(t0) <= deadline_ms + 150);
      CHECK(statm_rss_mb() - before < 64);  // nothing of the announced size
      if (c.expect == RL_E_PROTOCOL)
        CHECK(std::string(rl_last_error()).find("protocol") !=
              std::string::npos);
    }
  }
}

TEST_CASE("redis: a joined call's bad reply answers every check in it",
          "[redis][protocol][join]") {
  // A fake Redis: the handshake goes through, then every script call gets
  // `reply`. 200 async checks at once: the first may go alone, the rest
  // are joined; every one must get the error, within the deadline.
  const std::string info_body = "# Server\r\nredis_version:9.9.9\r\n";
  const std::string info =
      "$" + std::to_string(info_body.size()) + "\r\n" + info_body + "\r\n";
  struct Case {
    const char *name;
    std::string reply;
    int expect;
  };
  const Case cases[] = {
      {"wrong shape", ":1\r\n", RL_E_PROTOCOL},
      {"array of the wrong length", "*3\r\n:1\r\n:1\r\n:1\r\n", RL_E_PROTOCOL},
      {"error reply", "-ERR boom\r\n", RL_E_STORE},
      // NOSCRIPT every time: one EVAL retry per call, then the error.
      {"NOSCRIPT forever", "-NOSCRIPT No matching script\r\n", RL_E_STORE},
  };
  for (const Case &c : cases) {
    SECTION(c.name) {
      std::atomic<int> joined{0};
      tollgate_test::FakeScript script;
      script.responder = [&](const tollgate_test::FakeCommand &cmd) {
        if (!cmd.args.empty() && cmd.args[0] == "INFO")
          return FakeReply::send(info);
        if (cmd.args.size() >= 2 && cmd.args[0] == "SCRIPT")
          return FakeReply::send("$40\r\n" + std::string(40, 'a') + "\r\n");
        if (cmd.args.size() >= 2 && cmd.args[0] == "FUNCTION")
          return FakeReply::send("$8\r\ntollgate\r\n");
        // EVALSHA or FCALL <name> <numkeys> ...: more than one key is a
        // joined call.
        if (cmd.args.size() > 3 && cmd.args[2] != "1") ++joined;
        return FakeReply::send(c.reply);
      };
      tollgate_test::FakeServer fake(std::move(script));
      rl_options o = opts_for(fake.url(), RL_FAIL_ERROR);
      // Long enough that the bad reply, not the deadline, ends every call
      // on a slow (sanitized, loaded) machine.
      o.timeout_ms = 5000;
      o.deny_cache = -1;
      Lim lim(o);
      const rl_policy_spec p = policy(1000, 60000);
      struct Counter {
        std::mutex mu;
        std::condition_variable cv;
        int done = 0, expected = 0, other = 0;
      } k;
      auto cb = [](int status, const rl_decision *, const char *, void *user) {
        auto *k = static_cast<Counter *>(user);
        std::lock_guard<std::mutex> lock(k->mu);
        ++k->done;
        if (status != k->expected) ++k->other;
        k->cv.notify_one();
      };
      k.expected = c.expect;
      constexpr int kCalls = 200;
      const auto t0 = Clock::now();
      for (int i = 0; i < kCalls; ++i) {
        const std::string key = "k" + std::to_string(i % 20);
        REQUIRE(rl_check_async(lim.p, key.data(), key.size(), &p, 1, 1, cb,
                               &k) == RL_OK);
      }
      {
        std::unique_lock<std::mutex> lock(k.mu);
        REQUIRE(k.cv.wait_for(lock, std::chrono::seconds(10),
                              [&] { return k.done == kCalls; }));
      }
      CHECK(elapsed_ms(t0) <= 5000 + 300);
      CHECK(k.other == 0);
      CHECK(joined.load() > 0);
    }
  }
}

TEST_CASE("redis: many async checks in flight complete without a thread each",
          "[redis][async]") {
  RedisServer server;
  // 2000 calls queued at once: the default 200 ms deadline is about speed,
  // which a loaded machine need not meet; this test is about completions.
  Lim lim(opts_for(server.url() + "?timeout_ms=20000", RL_FAIL_ERROR));
  const rl_policy_spec p = policy(500, kLongMs);
  struct Counter {
    std::mutex mu;
    std::condition_variable cv;
    int done = 0, allowed = 0, errors = 0, store = 0;
  } c;
  auto cb = [](int status, const rl_decision *d, const char *, void *user) {
    auto *k = static_cast<Counter *>(user);
    std::lock_guard<std::mutex> lock(k->mu);
    ++k->done;
    if (status != RL_OK) {
      ++k->errors;
    } else {
      k->allowed += d->allowed;
      k->store += d->source == RL_SOURCE_STORE;
    }
    k->cv.notify_one();
  };
  constexpr int kCalls = 2000;
  for (int i = 0; i < kCalls; ++i)
    REQUIRE(rl_check_async(lim.p, "burst", 5, &p, 1, 1, cb, &c) == RL_OK);
  {
    std::unique_lock<std::mutex> lock(c.mu);
    REQUIRE(c.cv.wait_for(lock, std::chrono::seconds(10),
                          [&] { return c.done == kCalls; }));
  }
  CHECK(c.errors == 0);
  CHECK(c.allowed == 500);
  // Thousands were in flight at once on one connection: they were
  // pipelined, not one round trip after another.
  const rl_health_info h = health(lim.p);
  CHECK(h.in_flight == 0);
  CHECK(h.checks == kCalls);
}

TEST_CASE("redis: destroying a limiter answers pending async checks",
          "[redis][async]") {
  RedisServer server;
  auto cb = [](int status, const rl_decision *, const char *, void *user) {
    auto *counts = static_cast<std::atomic<int> *>(user);
    if (status == RL_E_CLOSED) ++counts[0];
    ++counts[1];
  };
  std::atomic<int> counts[2] = {{0}, {0}};
  {
    rl_options o = opts_for(server.url(), RL_FAIL_OPEN);
    Lim lim(o);
    server.stop();  // nothing will be answered by Redis
    const rl_policy_spec p = policy(10, 1000);
    for (int i = 0; i < 50; ++i)
      REQUIRE(rl_check_async(lim.p, "k", 1, &p, 1, 1, cb, counts) == RL_OK);
  }  // rl_destroy: every accepted callback has run before it returns
  CHECK(counts[1] == 50);  // each exactly once
  CHECK(counts[0] == 50);  // as RL_E_CLOSED, never a made-up decision
  server.cont();
}

namespace {
// Completions of async checks, with their messages (copied in the callback,
// where the library's text is valid).
struct Completions {
  std::mutex mu;
  std::vector<std::pair<int, std::string>> got;
  static void cb(int status, const rl_decision *d, const char *message,
                 void *user) {
    auto *c = static_cast<Completions *>(user);
    std::lock_guard<std::mutex> lock(c->mu);
    // The decision comes with RL_OK only; the message with errors only.
    c->got.emplace_back(
        status, std::string(message ? message : "(NULL)") +
                    (status == RL_OK && d == nullptr ? " (no decision)" : ""));
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return got.size();
  }
};

rl_policy *handle(int64_t limit, int64_t period_ms) {
  rl_policy_spec spec = RL_POLICY_SPEC_INIT;
  spec.limit = limit;
  spec.period_ms = period_ms;
  rl_policy *h = nullptr;
  REQUIRE(rl_policy_create(&h, &spec) == RL_OK);
  return h;
}
}  // namespace

TEST_CASE(
    "redis: pending async checks at rl_destroy get RL_E_CLOSED and a message, "
    "their policies released at once",
    "[redis][async]") {
  RedisServer server;
  Completions c;
  {
    rl_options o = opts_for(server.url(), RL_FAIL_OPEN);
    Lim lim(o);
    server.stop();  // nothing will be answered by Redis
    for (int i = 0; i < 20; ++i) {
      rl_policy *p = handle(10, 1000);
      REQUIRE(rl_check_async(lim.p, "k", 1, &p, 1, 1, &Completions::cb, &c) ==
              RL_OK);
      rl_policy_release(p);  // the call keeps what it needs
    }
  }  // rl_destroy
  REQUIRE(c.size() == 20);
  for (const auto &[status, message] : c.got) {
    CHECK(status == RL_E_CLOSED);
    CHECK(message.find("destroyed") != std::string::npos);
  }
  server.cont();
}

TEST_CASE("redis: an async error carries its message (RL_FAIL_ERROR, no Redis)",
          "[redis][async]") {
  // A port nothing listens on: the check fails to connect.
  RedisServer server;
  const std::string url = server.url();
  server.kill9();
  rl_options o = opts_for(url, RL_FAIL_ERROR);
  o.connect_timeout_ms = 300;
  o.timeout_ms = 300;
  Completions c;
  {
    Lim lim(o);
    rl_policy *p = handle(10, 1000);
    REQUIRE(rl_check_async(lim.p, "k", 1, &p, 1, 1, &Completions::cb, &c) ==
            RL_OK);
    rl_policy_release(p);
    for (int i = 0; i < 200 && c.size() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(c.size() == 1);
    // And with the store known to be down, the answer comes inline.
    p = handle(10, 1000);
    REQUIRE(rl_check_async(lim.p, "k", 1, &p, 1, 1, &Completions::cb, &c) ==
            RL_OK);
    rl_policy_release(p);
    for (int i = 0; i < 200 && c.size() < 2; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(c.size() == 2);
  for (const auto &[status, message] : c.got) {
    CHECK((status == RL_E_CONNECT || status == RL_E_TIMEOUT));
    CHECK(!message.empty());
    CHECK(message != "(NULL)");
    INFO(message);
    CHECK(message.find("password") == std::string::npos);
  }
}

TEST_CASE("redis: unix socket with a database number", "[redis]") {
  RedisServer::Options so;
  so.unix_socket = true;
  RedisServer server(so);
  const std::string url = "unix://" + server.unix_path() + "?db=3";
  Lim lim(opts_for(url, RL_FAIL_ERROR));
  const rl_policy_spec p = policy(2, 60000);
  rl_decision d;
  REQUIRE(check(lim.p, "k", p, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_STORE);
  CHECK(d.remaining == 1);
  CHECK(dbsize(server, 3) == 1);
  CHECK(dbsize(server, 0) == 0);
}

#if !defined(__SANITIZE_THREAD__)
TEST_CASE("redis: a forked child makes its own connection", "[redis][fork]") {
  RedisServer server;
  Lim lim(opts_for(server.url(), RL_FAIL_ERROR));
  const rl_policy_spec p = policy(3, 3600 * 1000);
  rl_decision d;
  REQUIRE(check(lim.p, "shared", p, d) == RL_OK);  // parent's thread runs
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child must not touch the parent's socket or I/O thread.
    rl_decision cd = RL_DECISION_INIT;
    const int rc = rl_check(lim.p, &cd, "shared", 6, &p, 1, 1);
    _exit(rc == RL_OK && cd.source == RL_SOURCE_STORE && cd.remaining == 1 ? 0
                                                                           : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent's connection still works and sees the child's charge.
  REQUIRE(check(lim.p, "shared", p, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_STORE);
  CHECK(d.remaining == 0);
}
#endif
