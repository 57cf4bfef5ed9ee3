// The Redis connection driven by the caller's event loop (rl_loop_open,
// rl_loop_turn, rl_loop_close) against a real redis-server: callbacks run
// on the driving thread, deadlines fire from the loop's timers, blocking
// calls work from the driver's thread and from others at once, and the I/O
// thread takes over on rl_loop_close.
#include <poll.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

// Deadlines far beyond a turn, unless a test is about them: a sanitizer
// build on a busy machine stretches hand-overs past 200 ms.
rl_limiter *make(const std::string &url, uint32_t timeout_ms = 5000) {
  rl_options o = RL_OPTIONS_INIT;
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = timeout_ms;
  rl_limiter *lim = nullptr;
  const int rc = rl_create(&lim, &o);
  INFO("rl_create: " << rl_last_error());
  REQUIRE(rc == RL_OK);
  return lim;
}

rl_policy_spec spec(int64_t limit, int64_t period_ms) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.limit = limit;
  p.period_ms = period_ms;
  return p;
}

struct Answer {
  int status = 1;  // not yet
  int allowed = -1;
  std::thread::id thread;
  std::string message;
};

void on_answer(int status, const rl_decision *d, const char *message,
               void *user) {
  auto *a = static_cast<Answer *>(user);
  a->allowed = d ? d->allowed : -1;
  a->thread = std::this_thread::get_id();
  a->message = message;
  reinterpret_cast<std::atomic<int> *>(&a->status)->store(status);
}

int status_of(const Answer &a) {
  return reinterpret_cast<const std::atomic<int> *>(&a.status)->load();
}

// What a host's event loop does: poll the descriptor, turn on readiness
// and when the timer comes, until `done` or `limit` passes. Returns the
// number of turns.
template <class Done>
int drive(rl_limiter *lim, int fd, Done done,
          std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  int64_t next_us = 0;
  int turns = 0;
  while (!done() && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    const int timeout =
        next_us < 0 ? 50 : static_cast<int>((next_us + 999) / 1000);
    poll(&p, 1, std::min(timeout, 50));
    const int rc = rl_loop_turn(lim, &next_us);
    INFO(rl_last_error());
    REQUIRE(rc == RL_OK);
    ++turns;
  }
  return turns;
}

}  // namespace

TEST_CASE("loop: async checks complete on the driving thread",
          "[redis][loop]") {
  tollgate_test::RedisServer server;
  rl_limiter *lim = make(server.url());
  int fd = -1;
  REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
  REQUIRE(fd >= 0);
  int fd2 = -1;
  REQUIRE(rl_loop_open(lim, &fd2) == RL_OK);  // again on the same thread
  REQUIRE(fd2 == fd);
  const rl_policy_spec p = spec(5, 3600 * 1000);
  // Sequential (each awaited before the next) and then 8 at once.
  int allowed = 0;
  for (int i = 0; i < 3; ++i) {
    Answer a;
    REQUIRE(rl_check_async(lim, "seq", 3, &p, 1, 1, on_answer, &a) == RL_OK);
    drive(lim, fd, [&] { return status_of(a) != 1; });
    REQUIRE(status_of(a) == RL_OK);
    REQUIRE(a.thread == std::this_thread::get_id());
    allowed += a.allowed;
  }
  REQUIRE(allowed == 3);
  std::vector<Answer> many(8);
  for (Answer &a : many)
    REQUIRE(rl_check_async(lim, "burst", 5, &p, 1, 1, on_answer, &a) == RL_OK);
  drive(lim, fd, [&] {
    for (const Answer &a : many)
      if (status_of(a) == 1) return false;
    return true;
  });
  allowed = 0;
  for (const Answer &a : many) {
    REQUIRE(status_of(a) == RL_OK);
    REQUIRE(a.thread == std::this_thread::get_id());
    allowed += a.allowed;
  }
  REQUIRE(allowed == 5);
  // Nothing started the I/O thread: no reply was read anywhere else.
  rl_health_info health = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim, &health) == RL_OK);
  REQUIRE(health.connection == RL_CONN_READY);
  rl_destroy(lim);
}

TEST_CASE("loop: a blocking check on the driving thread turns the loop itself",
          "[redis][loop]") {
  tollgate_test::RedisServer server;
  rl_limiter *lim = make(server.url());
  int fd = -1;
  REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
  const rl_policy_spec p = spec(2, 3600 * 1000);
  // An async check in flight while the blocking ones wait: its callback
  // runs inside the blocking call, on this thread.
  Answer a;
  REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &a) == RL_OK);
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "k", 1, &p, 1, 1) == RL_OK);
  REQUIRE(d.allowed == 1);
  REQUIRE(rl_check(lim, &d, "k", 1, &p, 1, 1) == RL_OK);
  REQUIRE(d.allowed == 0);
  REQUIRE(status_of(a) == RL_OK);
  REQUIRE(a.thread == std::this_thread::get_id());
  REQUIRE(rl_reset(lim, "k", 1) == RL_OK);
  int64_t rtt = -1;
  REQUIRE(rl_ping(lim, &rtt) == RL_OK);
  REQUIRE(rtt >= 0);
  rl_destroy(lim);
}

TEST_CASE("loop: other threads' blocking checks ride on the driver's loop",
          "[redis][loop]") {
  tollgate_test::RedisServer server;
  rl_limiter *lim = make(server.url(), 2000);
  int fd = -1;
  REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
  const rl_policy_spec p = spec(300, 3600 * 1000);
  std::atomic<int> thread_allowed{0}, thread_errors{0}, running{4};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        rl_decision d = RL_DECISION_INIT;
        if (rl_check(lim, &d, "shared", 6, &p, 1, 1) != RL_OK)
          ++thread_errors;
        else
          thread_allowed += d.allowed;
      }
      --running;
    });
  // Meanwhile the driver checks asynchronously, 10 at a time.
  int loop_allowed = 0;
  for (int round = 0; round < 15; ++round) {
    std::vector<Answer> batch(10);
    for (Answer &a : batch)
      REQUIRE(rl_check_async(lim, "shared", 6, &p, 1, 1, on_answer, &a) ==
              RL_OK);
    drive(lim, fd, [&] {
      for (const Answer &a : batch)
        if (status_of(a) == 1) return false;
      return true;
    });
    for (const Answer &a : batch) {
      INFO(a.message);
      REQUIRE(status_of(a) == RL_OK);
      REQUIRE(a.thread == std::this_thread::get_id());
      loop_allowed += a.allowed;
    }
  }
  drive(lim, fd, [&] { return running.load() == 0; });
  for (std::thread &t : threads) t.join();
  REQUIRE(thread_errors.load() == 0);
  // 200 + 150 checks against a limit of 300, from both sides at once.
  REQUIRE(thread_allowed.load() + loop_allowed == 300);
  rl_destroy(lim);
}

TEST_CASE("loop: a frozen server's deadline fires from the loop's timer",
          "[redis][loop]") {
  tollgate_test::RedisServer server;
  rl_limiter *lim = make(server.url(), 150);
  int fd = -1;
  REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
  const rl_policy_spec p = spec(5, 60000);
  Answer warm;
  REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &warm) == RL_OK);
  drive(lim, fd, [&] { return status_of(warm) != 1; });
  REQUIRE(status_of(warm) == RL_OK);
  server.stop();  // SIGSTOP: the socket stays open, nothing answers
  Answer a;
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &a) == RL_OK);
  // Only the descriptor's readiness and the returned timer drive it.
  drive(lim, fd, [&] { return status_of(a) != 1; });
  const auto waited = std::chrono::steady_clock::now() - t0;
  server.cont();
  REQUIRE(status_of(a) == RL_E_TIMEOUT);
  REQUIRE(a.thread == std::this_thread::get_id());
  REQUIRE(waited >= std::chrono::milliseconds(140));
  REQUIRE(waited < std::chrono::milliseconds(1500));
  rl_destroy(lim);
}

TEST_CASE("loop: an idle turn polls for a lone wait's reply", "[redis][loop]") {
  tollgate_test::RedisServer server;
  const rl_policy_spec p = spec(1000, 60000);
  // A limiter with spin_us `spin`, driven by this thread.
  auto open = [&](int32_t spin, int &fd) {
    rl_options o = RL_OPTIONS_INIT;
    const std::string url = server.url();
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    o.timeout_ms = 5000;
    o.spin_us = spin;
    rl_limiter *lim = nullptr;
    REQUIRE(rl_create(&lim, &o) == RL_OK);
    REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
    return lim;
  };
  int fd = -1;

  SECTION("the reply is read, and the callback runs, inside the call") {
    // 1000 us: a loopback round trip, even under a sanitizer, fits many
    // times over. One idle turn right after each submission, never a poll
    // of the descriptor: the replies caught there ran in the call.
    rl_limiter *lim = open(1000, fd);
    int caught = 0;
    for (int i = 0; i < 20; ++i) {
      Answer a;
      REQUIRE(rl_check_async(lim, "idle", 4, &p, 1, 1, on_answer, &a) == RL_OK);
      int64_t next_us = 0;
      REQUIRE(rl_loop_turn_idle(lim, &next_us) == RL_OK);
      if (status_of(a) != 1) ++caught;
      drive(lim, fd, [&] { return status_of(a) != 1; });
      REQUIRE(status_of(a) == RL_OK);
      REQUIRE(a.allowed == 1);
      REQUIRE(a.thread == std::this_thread::get_id());
    }
    INFO("replies caught inside rl_loop_turn_idle: " << caught);
    REQUIRE(caught >= 1);
    rl_destroy(lim);
  }
  SECTION("a frozen server: the idle turn returns after the spin at most") {
    rl_limiter *lim = open(1000, fd);
    Answer warm;
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &warm) == RL_OK);
    drive(lim, fd, [&] { return status_of(warm) != 1; });
    server.stop();  // SIGSTOP: nothing answers
    Answer a;
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &a) == RL_OK);
    const auto t0 = std::chrono::steady_clock::now();
    int64_t next_us = -1;
    REQUIRE(rl_loop_turn_idle(lim, &next_us) == RL_OK);
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(status_of(a) == 1);  // still waiting: the call did not
    CHECK(next_us > 0);        // the deadline's timer is armed
    CHECK(took < std::chrono::milliseconds(500));
    server.cont();
    drive(lim, fd, [&] { return status_of(a) != 1; });
    REQUIRE(status_of(a) == RL_OK);
    rl_destroy(lim);
  }
  SECTION("spin_us 0 never polls, nor does a turn with two replies due") {
    rl_limiter *lim = open(-1, fd);  // -1: no spin
    Answer warm;
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &warm) == RL_OK);
    drive(lim, fd, [&] { return status_of(warm) != 1; });
    server.stop();
    Answer a;
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &a) == RL_OK);
    int64_t next_us = -1;
    REQUIRE(rl_loop_turn_idle(lim, &next_us) == RL_OK);
    CHECK(status_of(a) == 1);
    server.cont();
    drive(lim, fd, [&] { return status_of(a) != 1; });
    REQUIRE(status_of(a) == RL_OK);
    rl_destroy(lim);
  }
  SECTION("bad arguments") {
    int64_t next = 0;
    REQUIRE(rl_loop_turn_idle(nullptr, &next) == RL_E_INVALID_ARG);
    rl_limiter *lim = open(200, fd);
    REQUIRE(rl_loop_turn_idle(lim, nullptr) == RL_OK);
    std::thread([&] { next = rl_loop_turn_idle(lim, nullptr); }).join();
    REQUIRE(next == RL_E_CLOSED);  // not the driver's thread
    rl_destroy(lim);
  }
}

TEST_CASE("loop: who may drive, and the hand-over to the I/O thread",
          "[redis][loop]") {
  tollgate_test::RedisServer server;
  const rl_policy_spec p = spec(5, 60000);
  int fd = -1;

  SECTION("the memory store has nothing to drive") {
    rl_options o = RL_OPTIONS_INIT;
    rl_limiter *mem = nullptr;
    REQUIRE(rl_create(&mem, &o) == RL_OK);
    REQUIRE(rl_loop_open(mem, &fd) == RL_E_UNSUPPORTED);
    int64_t next = 0;
    REQUIRE(rl_loop_turn(mem, &next) == RL_E_UNSUPPORTED);
    rl_destroy(mem);
  }
  SECTION("bad arguments") {
    REQUIRE(rl_loop_open(nullptr, &fd) == RL_E_INVALID_ARG);
    rl_limiter *lim = make(server.url());
    REQUIRE(rl_loop_open(lim, nullptr) == RL_E_INVALID_ARG);
    int64_t next = 0;
    REQUIRE(rl_loop_turn(lim, &next) == RL_E_CLOSED);  // nobody opened it
    rl_destroy(lim);
  }
  SECTION("once the I/O thread runs, it keeps the connection") {
    rl_limiter *lim = make(server.url());
    Answer a;
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &a) == RL_OK);
    REQUIRE(rl_loop_open(lim, &fd) == RL_E_BUSY);
    std::string err = rl_last_error();
    REQUIRE(err.find("I/O thread") != std::string::npos);
    while (status_of(a) == 1) std::this_thread::yield();
    REQUIRE(status_of(a) == RL_OK);
    REQUIRE(a.thread != std::this_thread::get_id());
    rl_destroy(lim);
  }
  SECTION("another thread cannot drive while one does") {
    rl_limiter *lim = make(server.url());
    REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
    int other = 0;
    std::thread([&] {
      int fd_other = -1;
      other = rl_loop_open(lim, &fd_other);
      int64_t next = 0;
      if (other == RL_E_BUSY && rl_loop_turn(lim, &next) != RL_E_CLOSED)
        other = 99;
    }).join();
    REQUIRE(other == RL_E_BUSY);
    rl_destroy(lim);
  }
  SECTION("rl_loop_close hands what is in flight to the I/O thread") {
    std::vector<Answer> left(4);
    Answer first;
    rl_limiter *lim = make(server.url());
    // Destroyed before the answers, also when a REQUIRE below fails: no
    // callback can then write into them.
    struct Destroy {
      rl_limiter *lim;
      ~Destroy() { rl_destroy(lim); }
    } destroy{lim};
    REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &first) == RL_OK);
    drive(lim, fd, [&] { return status_of(first) != 1; });
    REQUIRE(status_of(first) == RL_OK);
    // In flight when the driver leaves: the I/O thread reads its reply.
    for (Answer &a : left)
      REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &a) == RL_OK);
    REQUIRE(rl_loop_close(lim) == RL_OK);
    int64_t next = 0;
    REQUIRE(rl_loop_turn(lim, &next) == RL_E_CLOSED);
    for (Answer &a : left) {
      const auto end =
          std::chrono::steady_clock::now() + std::chrono::seconds(15);
      while (status_of(a) == 1 && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      INFO(a.message);
      REQUIRE(status_of(a) == RL_OK);
      REQUIRE(a.thread != std::this_thread::get_id());
    }
    REQUIRE(rl_loop_open(lim, &fd) == RL_E_BUSY);
  }
  SECTION("another thread takes the loop from a driver that stopped") {
    rl_limiter *lim = make(server.url());
    REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
    Answer queued;
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &queued) == RL_OK);
    // The driver never turns again; a plain thread's blocking check would
    // wait for it, so that thread hands the loop to the I/O thread first.
    int rc = 1, allowed = -1;
    std::thread([&] {
      if (rl_loop_close(lim) != RL_OK) return;
      rl_decision d = RL_DECISION_INIT;
      rc = rl_check(lim, &d, "k", 1, &p, 1, 1);
      allowed = d.allowed;
    }).join();
    REQUIRE(rc == RL_OK);
    REQUIRE(allowed == 1);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (status_of(queued) == 1 && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(status_of(queued) == RL_OK);  // sent by the I/O thread
    REQUIRE(queued.thread != std::this_thread::get_id());
    int64_t next = 0;
    REQUIRE(rl_loop_turn(lim, &next) == RL_E_CLOSED);
    rl_destroy(lim);
  }
  SECTION("rl_destroy answers what the loop still awaits") {
    rl_limiter *lim = make(server.url());
    REQUIRE(rl_loop_open(lim, &fd) == RL_OK);
    Answer a;
    REQUIRE(rl_check_async(lim, "k", 1, &p, 1, 1, on_answer, &a) == RL_OK);
    rl_destroy(lim);  // no turn ever read the reply
    REQUIRE(status_of(a) == RL_E_CLOSED);
  }
}
