// The limiter's own timeouts reach the transport: against a frozen Redis
// (SIGSTOP: connections are accepted, nothing is answered) a ping gives up
// within connect_timeout_ms + timeout_ms as set in rl_options, not the
// URL's defaults (1000 + 200 ms).
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

// A limiter on `server` that answers errors (RL_FAIL_ERROR).
rl_limiter *limiter_on(const tollgate_test::RedisServer &server,
                       uint32_t timeout_ms, uint32_t connect_timeout_ms = 0) {
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = timeout_ms;
  o.connect_timeout_ms = connect_timeout_ms;
  o.deny_cache = -1;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  return lim;
}

}  // namespace

TEST_CASE("redis deadlines: option timeouts bound a ping to a frozen server",
          "[redis][deadline]") {
  tollgate_test::RedisServer server;
  server.stop();
  rl_limiter *lim = limiter_on(server, 50, 50);
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
  rl_limiter *lim = limiter_on(server, 200);
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

// One async check to a frozen server: started at once, then `took` waits
// for its callback, which must say RL_E_TIMEOUT, and says when it came.
class TimedOut {
 public:
  TimedOut(rl_limiter *lim, const char *key, rl_policy *policy)
      : start_(std::chrono::steady_clock::now()) {
    REQUIRE(rl_check_async(lim, key, std::strlen(key), &policy, 1, 1, &done,
                           this) == RL_OK);
  }
  std::chrono::nanoseconds took() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(8), [&] { return done_; });
    REQUIRE(done_);
    CHECK(status_ == RL_E_TIMEOUT);
    return at_ - start_;
  }

 private:
  static void done(int status, const rl_decision *, const char *, void *u) {
    auto *t = static_cast<TimedOut *>(u);
    std::lock_guard<std::mutex> lock(t->mu_);
    t->done_ = true;
    t->status_ = status;
    t->at_ = std::chrono::steady_clock::now();
    t->cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  int status_ = 0;
  std::chrono::steady_clock::time_point start_, at_;
};

// A ping on its own thread (to a frozen server it waits connect_timeout_ms
// + timeout_ms).
std::thread pinger(rl_limiter *lim) {
  return std::thread([lim] {
    int64_t rtt = 0;
    rl_ping(lim, &rtt);
  });
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
  rl_limiter *lim = limiter_on(server, 200, 5000);
  rl_policy *policy = nullptr;
  REQUIRE(rl_policy_parse(&policy, "100/s", 5, nullptr) == RL_OK);
  int64_t rtt = 0;
  REQUIRE(rl_ping(lim, &rtt) == RL_OK);  // connected
  server.stop();
  // A first check in flight, so that the ping below goes behind it, then
  // the ping (deadline 5.2 s), which outlives the check.
  TimedOut first(lim, "a", policy);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::thread ping = pinger(lim);
  constexpr auto kBound = std::chrono::milliseconds(200 + 250);
  CHECK(first.took() < kBound);
  CHECK(TimedOut(lim, "b", policy).took() < kBound);
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
  CHECK(took < kBound);
  // Two pings in flight: a check queued behind them is not due (the queue
  // waits for as many replies as are in flight), yet it too ends at its
  // own deadline, not theirs.
  std::thread ping2 = pinger(lim);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(TimedOut(lim, "d", policy).took() < kBound);
  server.cont();
  ping.join();
  ping2.join();
  rl_policy_release(policy);
  rl_destroy(lim);
}
