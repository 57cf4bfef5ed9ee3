// The limiter's own timeouts reach the transport: against a frozen Redis
// (SIGSTOP: connections are accepted, nothing is answered) a ping gives up
// within connect_timeout_ms + timeout_ms as set in rl_options, not the
// URL's defaults (1000 + 200 ms).
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

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
