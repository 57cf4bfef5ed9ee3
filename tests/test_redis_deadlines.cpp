// The limiter's own timeouts reach the transport: against a frozen Redis
// (SIGSTOP: connections are accepted, nothing is answered) a ping gives up
// within connect_timeout_ms + timeout_ms as set in rl_options, not the
// URL's defaults (1000 + 200 ms).
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "support/redis_server.hpp"
#include "tollgate.h"

TEST_CASE("redis deadlines: option timeouts bound a ping to a frozen server",
          "[redis][deadline]") {
  tollgate_test::RedisServer server;
  server.stop();
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.connect_timeout_ms = 50;
  o.timeout_ms = 50;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  const auto start = std::chrono::steady_clock::now();
  int64_t rtt = 0;
  const int rc = rl_ping(lim, &rtt);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(rc != RL_OK);
  // 100 ms of deadlines; well under the 1200 ms of the defaults even on a
  // loaded machine.
  CHECK(took < std::chrono::milliseconds(700));
  rl_destroy(lim);
  server.cont();
}

// An admin call (reset) on a server that accepted the connection but stopped
// answering ends with the transport's own timeout, which names the server:
// the waiting caller gives the I/O thread a little slack past the deadline
// instead of giving up first with a vaguer message.
TEST_CASE(
    "redis deadlines: a reset on a frozen server ends with the "
    "transport's timeout, naming the server, not before the deadline",
    "[redis][deadline]") {
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = 200;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  int64_t rtt = 0;
  REQUIRE(rl_ping(lim, &rtt) == RL_OK);  // connected
  server.stop();
  const auto start = std::chrono::steady_clock::now();
  const int rc = rl_reset(lim, "k", 1);
  const auto took = std::chrono::steady_clock::now() - start;
  const std::string msg = rl_last_error();
  server.cont();
  CHECK(rc == RL_E_TIMEOUT);
  INFO(msg);
  CHECK(msg.find("127.0.0.1:" + std::to_string(server.port())) !=
        std::string::npos);
  CHECK(took >= std::chrono::milliseconds(195));
  rl_destroy(lim);
}

namespace {

struct AsyncEnd {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int status = 0;
  std::string message;
  std::chrono::steady_clock::time_point at;
};

void on_async_end(int status, const rl_decision *, const char *message,
                  void *user) {
  auto *e = static_cast<AsyncEnd *>(user);
  std::lock_guard<std::mutex> lock(e->mu);
  e->done = true;
  e->status = status;
  e->message = message;
  e->at = std::chrono::steady_clock::now();
  e->cv.notify_all();
}

}  // namespace

// A caller that finds the I/O thread awaiting a reply writes its command on
// the connection itself and hands it over. The command the I/O thread
// knows may have a later deadline (here a ping, which may wait
// connect_timeout_ms + timeout_ms, standing in for Sentinel's ROLE check),
// or none left once it timed out: the I/O thread must still wake at the
// handed command's own deadline. It used to sleep until the later one (up
// to 1 s): async checks ended 800 ms late while Sentinel failed over
// (docs/reliability.md, "Deadlines"). The same for a command left in the
// queue behind two such commands.
TEST_CASE(
    "redis deadlines: a check handed over behind a command with a later "
    "deadline still ends at its own, async and blocking",
    "[redis][deadline]") {
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = 200;
  o.connect_timeout_ms = 5000;
  o.deny_cache = -1;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy *policy = nullptr;
  REQUIRE(rl_policy_parse(&policy, "100/s", 5, nullptr) == RL_OK);
  int64_t rtt = 0;
  REQUIRE(rl_ping(lim, &rtt) == RL_OK);  // connected
  server.stop();
  // A first check in flight, so that the ping below goes behind it, then
  // the ping (deadline 5.2 s), which outlives the check.
  AsyncEnd first;
  REQUIRE(rl_check_async(lim, "a", 1, &policy, 1, 1, on_async_end, &first) ==
          RL_OK);
  std::thread pinger([lim] {
    int64_t t = 0;
    rl_ping(lim, &t);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    std::lock_guard<std::mutex> lock(first.mu);
    CHECK(first.done);
  }
  AsyncEnd e;
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(rl_check_async(lim, "b", 1, &policy, 1, 1, on_async_end, &e) ==
          RL_OK);
  {
    std::unique_lock<std::mutex> lock(e.mu);
    e.cv.wait_for(lock, std::chrono::seconds(3), [&] { return e.done; });
    REQUIRE(e.done);
    CHECK(e.status == RL_E_TIMEOUT);
    CHECK(e.at - start < std::chrono::milliseconds(200 + 250));
  }
  // Blocking: it ends with the transport's own timeout, which names the
  // server, not with the caller giving up 50 ms later by itself.
  rl_decision d = RL_DECISION_INIT;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = rl_check(lim, &d, "c", 1, &policy, 1, 1);
  const auto took = std::chrono::steady_clock::now() - t0;
  const std::string msg = rl_last_error();
  CHECK(rc == RL_E_TIMEOUT);
  INFO(msg);
  CHECK(msg.find("127.0.0.1:" + std::to_string(server.port())) !=
        std::string::npos);
  CHECK(took < std::chrono::milliseconds(200 + 250));
  // Two pings in flight: a check queued behind them is not due (the queue
  // waits for as many replies as are in flight), yet it too ends at its
  // own deadline, not theirs.
  std::thread pinger2([lim] {
    int64_t t = 0;
    rl_ping(lim, &t);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  AsyncEnd queued;
  const auto queued_at = std::chrono::steady_clock::now();
  REQUIRE(rl_check_async(lim, "d", 1, &policy, 1, 1, on_async_end, &queued) ==
          RL_OK);
  {
    std::unique_lock<std::mutex> lock(queued.mu);
    queued.cv.wait_for(lock, std::chrono::seconds(8),
                       [&] { return queued.done; });
    REQUIRE(queued.done);
    CHECK(queued.status == RL_E_TIMEOUT);
    CHECK(queued.at - queued_at < std::chrono::milliseconds(200 + 250));
  }
  server.cont();
  pinger.join();
  pinger2.join();
  rl_policy_release(policy);
  rl_destroy(lim);
}
