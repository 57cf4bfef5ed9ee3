// Metrics (docs/metrics.md): decisions counted per policy label, decision
// and source; the round-trip histogram and node series of a real Redis; the
// C API that walks a snapshot; metrics turned off; bad input.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "support/handles.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

using tollgate_test::Limiter;
using tollgate_test::LimiterConfig;
using tollgate_test::Policy;

// One series as read through the C API, its labels joined in a string
// ("decision=allowed,policy=api,source=store").
struct Read {
  int32_t type = 0;
  std::string help;
  double value = 0;
  std::vector<double> bounds;
  std::vector<uint64_t> buckets;
  uint64_t count = 0;
  double sum = 0;
};
using Snapshot = std::map<std::string, Read>;  // "name{labels}" -> series

Snapshot read_metrics(rl_limiter *lim) {
  rl_metrics *m = nullptr;
  REQUIRE(rl_metrics_read(lim, &m) == RL_OK);
  Snapshot out;
  rl_metric s = RL_METRIC_INIT;
  int rc;
  while ((rc = rl_metrics_next(m, &s)) == RL_OK) {
    std::string id = std::string(s.name) + "{";
    for (uint32_t i = 0; i < s.n_labels; ++i)
      id += std::string(i ? "," : "") + s.label_names[i] + "=" +
            s.label_values[i];
    id += "}";
    Read r;
    r.type = s.type;
    r.help = s.help;
    r.value = s.value;
    for (size_t i = 0; i < s.n_buckets; ++i) {
      r.bounds.push_back(s.bucket_bounds[i]);
      r.buckets.push_back(s.bucket_counts[i]);
    }
    r.count = s.count;
    r.sum = s.sum;
    INFO(id);
    CHECK(out.count(id) == 0);  // every series once
    CHECK_FALSE(r.help.empty());
    out[id] = r;
  }
  CHECK(rc == RL_E_DONE);
  CHECK(rl_metrics_next(m, &s) == RL_E_DONE);
  rl_metrics_free(m);
  return out;
}

double value(const Snapshot &s, const std::string &id) {
  auto it = s.find(id);
  if (it == s.end()) return -1;  // absent
  return it->second.value;
}

std::string checks(const char *policy, const char *decision,
                   const char *source) {
  return std::string("tollgate_checks_total{policy=") + policy +
         ",decision=" + decision + ",source=" + source + "}";
}

}  // namespace

TEST_CASE("metrics: decisions per policy name, decision and source",
          "[metrics]") {
  Limiter lim;
  Policy api("3/m name=api");
  Policy unnamed("100/m");
  Policy trial("1/m name=trial shadow");
  for (int i = 0; i < 5; ++i) tollgate_test::check(lim.p, "u:1", {api.p});
  for (int i = 0; i < 4; ++i) tollgate_test::check(lim.p, "u:1", {unnamed.p});
  for (int i = 0; i < 3; ++i) tollgate_test::check(lim.p, "u:1", {trial.p});
  // Several policies: counted once, under the policy the decision reports.
  tollgate_test::check(lim.p, "u:2", {unnamed.p, api.p});
  // The lists answer before the store.
  const char *deny[] = {"bad"};
  const size_t deny_len[] = {3};
  REQUIRE(rl_set_list(lim.p, RL_LIST_DENY, deny, deny_len, 1) == RL_OK);
  tollgate_test::check(lim.p, "bad", {api.p});
  tollgate_test::check(lim.p, "bad", {unnamed.p});
  // An async check (the memory store answers inline).
  int done = 0;
  REQUIRE(rl_check_async(
              lim.p, "u:3", 3, &api.p, 1, 1,
              [](int status, const rl_decision *, const char *, void *u) {
                CHECK(status == RL_OK);
                ++*static_cast<int *>(u);
              },
              &done) == RL_OK);
  CHECK(done == 1);
  // An error: counted apart, never as a decision.
  rl_decision d = RL_DECISION_INIT;
  CHECK(rl_check(lim.p, &d, "", 0, &api.p, 1, 1) == RL_E_KEY_INVALID);

  const Snapshot s = read_metrics(lim.p);
  CHECK(value(s, checks("api", "allowed", "store")) == 3 + 1 + 1);
  CHECK(value(s, checks("api", "denied", "store")) == 2);
  CHECK(value(s, checks("default", "allowed", "store")) == 4);
  CHECK(value(s, checks("api", "denied", "deny_list")) == 1);
  CHECK(value(s, checks("default", "denied", "deny_list")) == 1);
  // The shadow policy: always allowed, its would-be denials counted.
  CHECK(value(s, checks("trial", "allowed", "store")) == 3);
  CHECK(value(s, checks("trial", "denied", "store")) == -1);
  CHECK(value(s, "tollgate_shadow_denials_total{policy=trial}") == 2);
  CHECK(value(s, "tollgate_check_errors_total{}") == 1);
  CHECK(value(s, "tollgate_memory_keys{}") >= 3);
  CHECK(value(s, "tollgate_memory_evictions_total{}") == 0);
  CHECK(s.at("tollgate_checks_total{policy=api,decision=allowed,source=store}")
            .type == RL_METRIC_COUNTER);
  CHECK(s.at("tollgate_memory_keys{}").type == RL_METRIC_GAUGE);
  // The memory store has no Redis series.
  CHECK(value(s, "tollgate_store_errors_total{}") == -1);
}

TEST_CASE("metrics: counts are exact under many threads", "[metrics]") {
  Limiter lim;
  Policy p("1000000/s name=hot");
  constexpr int kThreads = 8, kEach = 20000;
  std::atomic<int> failed{0};  // (Catch2 assertions are for this thread)
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      const std::string key = "k" + std::to_string(t % 3);
      rl_policy *ps[] = {p.p};
      for (int i = 0; i < kEach; ++i) {
        rl_decision d = RL_DECISION_INIT;
        if (rl_check(lim.p, &d, key.data(), key.size(), ps, 1, 1) != RL_OK)
          ++failed;
      }
    });
  // Snapshots taken while the threads count never exceed the total.
  for (int i = 0; i < 20; ++i) {
    const Snapshot s = read_metrics(lim.p);
    const double a = std::max(0.0, value(s, checks("hot", "allowed", "store")));
    const double b = std::max(0.0, value(s, checks("hot", "denied", "store")));
    CHECK(a + b <= kThreads * kEach);
  }
  for (auto &t : ts) t.join();
  CHECK(failed == 0);
  const Snapshot s = read_metrics(lim.p);
  const double a = std::max(0.0, value(s, checks("hot", "allowed", "store")));
  const double b = std::max(0.0, value(s, checks("hot", "denied", "store")));
  CHECK(a + b == kThreads * kEach);
  rl_health_info h = tollgate_test::health(lim.p);
  CHECK(a == static_cast<double>(h.allowed));
  CHECK(b == static_cast<double>(h.denied));
}

TEST_CASE(
    "metrics: threads that come and go give their stripes back, and no count "
    "is lost",
    "[metrics]") {
  Limiter lim;
  Policy p("1000000/s name=churn");
  // 200 short-lived threads, 4 at a time: more than there are owned
  // stripes, so indices are reused after threads exit.
  constexpr int kWaves = 50, kPerWave = 4, kEach = 500;
  std::atomic<int> failed{0};  // (Catch2 assertions are for this thread)
  for (int w = 0; w < kWaves; ++w) {
    std::vector<std::thread> ts;
    for (int t = 0; t < kPerWave; ++t)
      ts.emplace_back([&] {
        rl_policy *ps[] = {p.p};
        for (int i = 0; i < kEach; ++i) {
          rl_decision d = RL_DECISION_INIT;
          if (rl_check(lim.p, &d, "c", 1, ps, 1, 1) != RL_OK) ++failed;
        }
      });
    for (auto &t : ts) t.join();
  }
  CHECK(failed == 0);
  const Snapshot s = read_metrics(lim.p);
  CHECK(value(s, checks("churn", "allowed", "store")) ==
        kWaves * kPerWave * kEach);
}

TEST_CASE(
    "metrics: more live threads than owned stripes share one, and no count "
    "is lost",
    "[metrics]") {
  Limiter lim;
  Policy p("1000000/s name=crowd");
  // 100 threads alive at once: more than the 64 owned stripes, so some
  // homes collide and those threads count in the shared stripe.
  constexpr int kThreads = 100, kEach = 1000;
  std::atomic<int> failed{0}, ready{0};  // (assertions are for this thread)
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&] {
      ++ready;
      while (!go.load()) std::this_thread::yield();
      rl_policy *ps[] = {p.p};
      for (int i = 0; i < kEach; ++i) {
        rl_decision d = RL_DECISION_INIT;
        if (rl_check(lim.p, &d, "c", 1, ps, 1, 1) != RL_OK) ++failed;
      }
      // Stay alive until every thread has counted: owners never leave.
      ++ready;
      while (ready.load() < 2 * kThreads) std::this_thread::yield();
    });
  while (ready.load() < kThreads) std::this_thread::yield();
  go = true;
  for (auto &t : ts) t.join();
  CHECK(failed == 0);
  const Snapshot s = read_metrics(lim.p);
  CHECK(value(s, checks("crowd", "allowed", "store")) == kThreads * kEach);
}

TEST_CASE("metrics: off by option, on by default", "[metrics]") {
  rl_options o = RL_OPTIONS_INIT;
  CHECK(o.metrics == 0);
  REQUIRE(rl_options_set(&o, "metrics", "off") == RL_OK);
  CHECK(o.metrics == -1);
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  Policy api("3/m name=api");
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "k", 1, &api.p, 1, 1) == RL_OK);
  rl_metrics *m = nullptr;
  REQUIRE(rl_metrics_read(lim, &m) == RL_OK);
  rl_destroy(lim);  // a snapshot outlives its limiter
  rl_metric s = RL_METRIC_INIT;
  bool decisions = false, errors = false;
  while (rl_metrics_next(m, &s) == RL_OK) {
    decisions |= std::string(s.name) == "tollgate_checks_total";
    errors |= std::string(s.name) == "tollgate_check_errors_total";
  }
  rl_metrics_free(m);
  CHECK_FALSE(decisions);
  CHECK(errors);  // the health series remain
  o.metrics = 2;
  CHECK(rl_create(&lim, &o) == RL_E_INVALID_ARG);
  CHECK(std::string(rl_last_error()).find("metrics must be -1, 0 or 1") !=
        std::string::npos);
  CHECK(rl_options_set(&o, "metrics", "sometimes") == RL_E_INVALID_ARG);
}

TEST_CASE("metrics: bad arguments", "[metrics]") {
  Limiter lim;
  rl_metrics *m = nullptr;
  CHECK(rl_metrics_read(nullptr, &m) == RL_E_INVALID_ARG);
  CHECK(m == nullptr);
  CHECK(rl_metrics_read(lim.p, nullptr) == RL_E_INVALID_ARG);
  REQUIRE(rl_metrics_read(lim.p, &m) == RL_OK);
  rl_metric s = RL_METRIC_INIT;
  CHECK(rl_metrics_next(nullptr, &s) == RL_E_INVALID_ARG);
  CHECK(rl_metrics_next(m, nullptr) == RL_E_INVALID_ARG);
  s.version = 0;
  CHECK(rl_metrics_next(m, &s) == RL_E_VERSION);
  s.version = RL_METRIC_VERSION + 1;
  CHECK(rl_metrics_next(m, &s) == RL_E_VERSION);
  rl_metrics_free(m);
  rl_metrics_free(nullptr);
}

TEST_CASE("metrics: a Redis node's series and round-trip histogram",
          "[metrics][redis]") {
  tollgate_test::RedisServer server;
  const std::string url = server.url();
  Limiter lim({.url = url, .failure_mode = RL_FAIL_OPEN});
  Policy p("2/m name=login");
  for (int i = 0; i < 10; ++i) tollgate_test::check(lim.p, "ip:1", {p.p});
  const std::string node = "127.0.0.1:" + std::to_string(server.port());
  Snapshot s = read_metrics(lim.p);
  CHECK(value(s, checks("login", "allowed", "store")) == 2);
  CHECK(value(s, checks("login", "denied", "store")) +
            std::max(0.0, value(s, checks("login", "denied", "deny_cache"))) ==
        8);
  CHECK(value(s, "tollgate_store_up{node=" + node + "}") == 1);
  CHECK(value(s, "tollgate_store_primary{node=" + node + "}") == 1);
  CHECK(value(s, "tollgate_store_in_flight{node=" + node + "}") == 0);
  CHECK(value(s, "tollgate_store_errors_total{}") == 0);
  const Read &rtt =
      s.at("tollgate_store_round_trip_seconds{node=" + node + "}");
  CHECK(rtt.type == RL_METRIC_HISTOGRAM);
  REQUIRE(rtt.bounds.size() == 16);
  CHECK(rtt.bounds.front() == Approx(25e-6));
  CHECK(rtt.bounds.back() == Approx(2.5));
  // Every check that reached Redis was one round trip (the deny cache
  // answers the rest in process); the buckets are cumulative.
  const double from_store = value(s, checks("login", "allowed", "store")) +
                            value(s, checks("login", "denied", "store"));
  CHECK(rtt.count >= static_cast<uint64_t>(from_store));
  CHECK(rtt.sum > 0);
  for (size_t i = 1; i < rtt.buckets.size(); ++i)
    CHECK(rtt.buckets[i] >= rtt.buckets[i - 1]);
  CHECK(rtt.buckets.back() <= rtt.count);

  // The store goes away: fail open answers, and the series say so.
  server.kill9();
  Policy q("100/m name=api");
  for (int i = 0; i < 3; ++i) tollgate_test::check(lim.p, "ip:2", {q.p});
  s = read_metrics(lim.p);
  CHECK(value(s, checks("api", "allowed", "fail_open")) == 3);
  CHECK(value(s, "tollgate_store_errors_total{}") >= 1);
  CHECK(value(s, "tollgate_store_up{node=" + node + "}") == 0);
  CHECK(value(s, "tollgate_store_connection_failures_total{node=" + node +
                     "}") >= 1);
}
