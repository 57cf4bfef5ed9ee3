// The log hook (rl_set_log_handler): each episode logged once, not once per
// call (a node unreachable then reconnected, the failure mode entered and
// left, a cluster's slot map); levels; turning it off; no secret in any
// message. Real redis-servers, killed and restarted by PID.
#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/handles.hpp"
#include "support/redis_server.hpp"
#include "support/topology.hpp"
#include "tollgate.h"

namespace {

using tollgate_test::Policy;

struct Logged {
  std::mutex mu;
  std::vector<std::pair<int, std::string>> lines;

  static void handler(int level, const char *message, void *self) {
    auto *l = static_cast<Logged *>(self);
    std::lock_guard<std::mutex> lock(l->mu);
    l->lines.emplace_back(level, message);
  }
  // Messages at `level` containing `part`.
  int count(int level, const std::string &part) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (const auto &[lv, text] : lines)
      n += lv == level && text.find(part) != std::string::npos;
    return n;
  }
  std::string all() {
    std::lock_guard<std::mutex> lock(mu);
    std::string out;
    for (const auto &[lv, text] : lines)
      out += std::to_string(lv) + " " + text + "\n";
    return out;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return lines.size();
  }
};

rl_limiter *redis_limiter(const std::string &url) {
  rl_options o = RL_OPTIONS_INIT;
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_OPEN;
  o.deny_cache = -1;
  o.connect_timeout_ms = 200;
  o.timeout_ms = 200;
  o.reconnect_max_ms = 100;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  return lim;
}

int check_source(rl_limiter *lim, rl_policy *p) {
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "k", 1, &p, 1, 1) == RL_OK);
  return d.source;
}

// Checks until the store answers again (a restarted server), for up to 10 s.
void wait_for_store(rl_limiter *lim, rl_policy *p) {
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (check_source(lim, p) != RL_SOURCE_STORE &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

}  // namespace

TEST_CASE(
    "log: an outage is logged once when it starts and once when it ends, "
    "whatever the number of calls",
    "[log][redis]") {
  tollgate_test::RedisOptions ro;
  ro.password = "s3cret-log-pw";
  tollgate_test::RedisServer server(ro);
  const std::string url =
      "redis://:s3cret-log-pw@127.0.0.1:" + std::to_string(server.port());
  rl_limiter *lim = redis_limiter(url);
  Logged log;
  REQUIRE(rl_set_log_handler(lim, RL_LOG_INFO, &Logged::handler, &log) ==
          RL_OK);
  Policy p("1000/s");
  for (int i = 0; i < 20; ++i) CHECK(check_source(lim, p.p) == RL_SOURCE_STORE);
  CHECK(log.size() == 0);  // nothing happened

  server.kill9();
  int fallbacks = 0;
  for (int i = 0; i < 50; ++i)
    fallbacks += check_source(lim, p.p) == RL_SOURCE_FAIL_OPEN;
  CHECK(fallbacks >= 45);  // a few may meet a store still answering
  // Reconnection attempts go on meanwhile (every 100 ms at most).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  INFO(log.all());
  CHECK(log.count(RL_LOG_WARN, "the store cannot answer") == 1);
  CHECK(log.count(RL_LOG_WARN, "allowing every check (fail open)") == 1);
  CHECK(log.count(RL_LOG_WARN, " is unreachable (") == 1);

  server.restart();
  wait_for_store(lim, p.p);
  for (int i = 0; i < 20; ++i) CHECK(check_source(lim, p.p) == RL_SOURCE_STORE);
  CHECK(log.count(RL_LOG_INFO,
                  "reconnected to 127.0.0.1:" + std::to_string(server.port()) +
                      " after") == 1);
  CHECK(log.count(RL_LOG_INFO, "the store answers again after") == 1);
  CHECK(log.count(RL_LOG_WARN, "the store cannot answer") == 1);
  // The episode's answers are counted in its closing line.
  CHECK(log.all().find(" check(s) were answered without it") !=
        std::string::npos);
  CHECK(log.all().find("s3cret-log-pw") == std::string::npos);

  // A second outage is a second episode.
  server.kill9();
  for (int i = 0; i < 10; ++i) check_source(lim, p.p);
  CHECK(log.count(RL_LOG_WARN, "the store cannot answer") == 2);
  rl_destroy(lim);
  CHECK(log.all().find("s3cret-log-pw") == std::string::npos);
}

TEST_CASE("log: levels, turning it off, bad arguments", "[log][redis]") {
  tollgate_test::RedisServer server;
  rl_limiter *lim = redis_limiter(server.url());
  Logged warn_only, none;
  REQUIRE(rl_set_log_handler(lim, RL_LOG_WARN, &Logged::handler, &warn_only) ==
          RL_OK);
  Policy p("1000/s");
  check_source(lim, p.p);
  server.kill9();
  for (int i = 0; i < 5; ++i) check_source(lim, p.p);
  server.restart();
  wait_for_store(lim, p.p);
  INFO(warn_only.all());
  CHECK(warn_only.count(RL_LOG_WARN, "the store cannot answer") == 1);
  CHECK(warn_only.count(RL_LOG_INFO, "") == 0);  // below the level asked

  // Off: no call after rl_set_log_handler returns.
  REQUIRE(rl_set_log_handler(lim, RL_LOG_DEBUG, nullptr, nullptr) == RL_OK);
  const size_t before = warn_only.size();
  server.kill9();
  for (int i = 0; i < 5; ++i) check_source(lim, p.p);
  CHECK(warn_only.size() == before);

  CHECK(rl_set_log_handler(nullptr, RL_LOG_INFO, &Logged::handler, &none) ==
        RL_E_INVALID_ARG);
  CHECK(rl_set_log_handler(lim, 0, &Logged::handler, &none) ==
        RL_E_INVALID_ARG);
  CHECK(rl_set_log_handler(lim, 5, &Logged::handler, &none) ==
        RL_E_INVALID_ARG);
  CHECK(std::string(rl_last_error()).find("RL_LOG_ERROR (1) to RL_LOG_DEBUG") !=
        std::string::npos);
  rl_destroy(lim);
  CHECK(none.size() == 0);
}

TEST_CASE("log: a cluster's slot map is logged when it is read, once",
          "[log][redis][cluster]") {
  tollgate_test::Topology t;
  rl_options o = RL_OPTIONS_INIT;
  o.url = t.url().c_str();
  o.failure_mode = RL_FAIL_ERROR;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  Logged log;
  REQUIRE(rl_set_log_handler(lim, RL_LOG_DEBUG, &Logged::handler, &log) ==
          RL_OK);
  Policy p("100/s");
  for (int i = 0; i < 30; ++i) {
    const std::string key = "user:" + std::to_string(i);
    rl_decision d = RL_DECISION_INIT;
    REQUIRE(rl_check(lim, &d, key.data(), key.size(), &p.p, 1, 1) == RL_OK);
  }
  rl_destroy(lim);
  INFO(log.all());
  CHECK(log.count(RL_LOG_INFO, "cluster slot map read: 3 primaries (") == 1);
  CHECK(log.count(RL_LOG_WARN, "") == 0);
}
