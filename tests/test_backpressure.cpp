// Back-pressure (rl_options.max_async): against a Redis frozen with SIGSTOP
// (connections stay open, nothing is answered) a flood of async checks
// takes exactly max_async slots; every other call fails at once with
// RL_E_BUSY, its callback never runs, and the process's memory stays
// bounded. Once the server answers again every accepted call completes
// exactly once and the slots are free again. Callbacks run on the I/O
// thread and only touch atomics; every assertion is on the test's thread.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

// The value of the unlabelled series `name` of rl_metrics_read, or -1.
double metric(rl_limiter *lim, const std::string &name) {
  rl_metrics *m = nullptr;
  if (rl_metrics_read(lim, &m) != RL_OK) return -1;
  rl_metric s = RL_METRIC_INIT;
  double value = -1;
  while (rl_metrics_next(m, &s) == RL_OK)
    if (name == s.name) value = s.value;
  rl_metrics_free(m);
  return value;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;  // the sanitizers keep their own heap
#else
constexpr bool kSanitized = false;
#endif

// Resident set size of this process, in bytes (/proc/self/statm).
int64_t rss_bytes() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

// One accepted call: how many times its callback ran, and the last status.
struct Slot {
  std::atomic<int> calls{0};
  std::atomic<int> status{1};
};

void on_done(int status, const rl_decision *, const char *, void *user) {
  auto *slot = static_cast<Slot *>(user);
  slot->status.store(status);
  slot->calls.fetch_add(1);
}

struct Policy {
  rl_policy *p = nullptr;
  Policy() {
    rl_policy_spec spec = RL_POLICY_SPEC_INIT;
    spec.limit = 1000000000;
    spec.period_ms = 3600 * 1000;
    REQUIRE(rl_policy_create(&p, &spec) == RL_OK);
  }
  ~Policy() { rl_policy_release(p); }
};

struct Flood {
  size_t accepted = 0;
  size_t refused = 0;  // RL_E_BUSY
  size_t other = 0;    // any other code (a failure of the test)
  std::string busy_message;
  std::chrono::nanoseconds slowest_refusal{0};
};

// Submits `n` async checks; accepted call i gets slots[i] (slots must have
// room for every call that can be accepted).
Flood flood(rl_limiter *lim, rl_policy *policy, size_t n,
            std::vector<Slot> &slots) {
  Flood f;
  for (size_t i = 0; i < n; ++i) {
    void *user = f.accepted < slots.size() ? &slots[f.accepted] : nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = rl_check_async(lim, "bp", 2, &policy, 1, 1, on_done, user);
    if (rc == RL_OK) {
      ++f.accepted;
    } else if (rc == RL_E_BUSY) {
      const auto took = std::chrono::steady_clock::now() - t0;
      if (took > f.slowest_refusal) f.slowest_refusal = took;
      if (f.refused++ == 0) f.busy_message = rl_last_error();
    } else {
      ++f.other;
    }
  }
  return f;
}

rl_health_info health(rl_limiter *lim) {
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim, &h) == RL_OK);
  return h;
}

// Waits (on the test's thread) until `done()` or 30 s have passed.
template <class F>
bool wait_for(F done) {
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

size_t completed(const std::vector<Slot> &slots, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; ++i) c += slots[i].calls.load() > 0 ? 1 : 0;
  return c;
}

// A limiter on `server` that waits a minute for each reply (nothing times
// out while the test holds the server frozen), connected before it returns.
rl_limiter *make_limiter(const tollgate_test::RedisServer &server,
                         int32_t max_async, bool set = true) {
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = 60000;
  if (set) o.max_async = max_async;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  int64_t rtt = 0;
  REQUIRE(rl_ping(lim, &rtt) == RL_OK);
  return lim;
}

}  // namespace

TEST_CASE(
    "backpressure: a flood against a frozen server takes exactly max_async "
    "calls, refuses the rest at once with RL_E_BUSY, memory stays bounded, "
    "and every accepted call completes once after the server wakes",
    "[redis][backpressure]") {
  constexpr size_t kBound = 1000;
  constexpr size_t kCalls = 200000;
  tollgate_test::RedisServer server;
  rl_limiter *lim = make_limiter(server, static_cast<int32_t>(kBound));
  Policy policy;
  std::vector<Slot> slots(kBound + 1);

  server.stop();
  const int64_t rss_before = rss_bytes();
  const auto start = std::chrono::steady_clock::now();
  const Flood f = flood(lim, policy.p, kCalls, slots);
  const auto took = std::chrono::steady_clock::now() - start;
  const int64_t rss_after = rss_bytes();
  const size_t done_while_frozen = completed(slots, kBound + 1);

  // Several keys are refused the same way while the slots are taken.
  const char *keys[2] = {"bp:a", "bp:b"};
  const size_t lens[2] = {4, 4};
  rl_policy *ps[2] = {policy.p, policy.p};
  const size_t counts[2] = {1, 1};
  const int keys_rc = rl_check_keys_async(lim, keys, lens, 2, ps, counts, 1,
                                          on_done, &slots[kBound]);
  const std::string keys_message = rl_last_error();
  const rl_health_info frozen = health(lim);
  const double pending_metric = metric(lim, "tollgate_async_pending");
  const double refused_metric = metric(lim, "tollgate_async_refused_total");

  server.cont();
  const bool all_done =
      wait_for([&] { return completed(slots, f.accepted) == f.accepted; });
  // Give a wrongly repeated callback time to show itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const rl_health_info after = health(lim);

  CHECK(done_while_frozen == 0);
  CHECK(f.accepted == kBound);
  CHECK(f.refused == kCalls - kBound);
  CHECK(f.other == 0);
  INFO("busy message: " << f.busy_message);
  CHECK(f.busy_message.find("too many async calls in flight: 1000") !=
        std::string::npos);
  CHECK(f.busy_message.find("max_async") != std::string::npos);
  CHECK(keys_rc == RL_E_BUSY);
  CHECK(keys_message.find("max_async") != std::string::npos);
  CHECK(std::string(rl_error_name(RL_E_BUSY)) == "RL_E_BUSY");
  CHECK(std::string(rl_strerror(RL_E_BUSY)).find("max_async") !=
        std::string::npos);
  // "At once": a refusal sends nothing and waits for nothing. 199,000 of
  // them in well under the 60 s the accepted calls would wait.
  INFO("flood took " << std::chrono::duration<double>(took).count()
                     << " s, slowest refusal "
                     << f.slowest_refusal.count() / 1000 << " us");
  CHECK(took < std::chrono::seconds(20));
  CHECK(f.slowest_refusal < std::chrono::seconds(1));
  CHECK(frozen.async_pending == kBound);
  CHECK(frozen.async_refused == kCalls - kBound + 1);
  // The same figures as metrics (docs/metrics.md).
  CHECK(pending_metric == kBound);
  CHECK(refused_metric == kCalls - kBound + 1);
  if (!kSanitized) {
    // 1000 pending calls hold about 3.4 MB; the 199,001 refused ones
    // nothing (40 bytes kept by each would be 8 MB). Queued instead, they
    // would hold some 680 MB (docs/api-c.md, "Back-pressure").
    INFO("RSS before " << rss_before << ", after " << rss_after);
    CHECK(rss_before > 0);
    CHECK(rss_after - rss_before < 8 * 1024 * 1024);
  }

  CHECK(all_done);
  size_t once = 0, ok = 0;
  for (size_t i = 0; i < f.accepted; ++i) {
    once += slots[i].calls.load() == 1 ? 1 : 0;
    ok += slots[i].status.load() == RL_OK ? 1 : 0;
  }
  CHECK(once == f.accepted);
  CHECK(ok == f.accepted);
  CHECK(slots[kBound].calls.load() == 0);  // the refused rl_check_keys_async
  CHECK(after.async_pending == 0);
  CHECK(after.async_refused == kCalls - kBound + 1);

  // The slots are free again: a new flood takes the whole bound once more.
  std::vector<Slot> again(kBound);
  const Flood g = flood(lim, policy.p, kBound, again);
  CHECK(g.accepted == kBound);
  CHECK(g.refused == 0);
  CHECK(wait_for([&] { return completed(again, kBound) == kBound; }));
  rl_destroy(lim);
}

TEST_CASE(
    "backpressure: without the option the default bound, 65536, applies, "
    "and -1 means no bound",
    "[redis][backpressure]") {
  constexpr size_t kDefault = 65536;
  constexpr size_t kCalls = kDefault + 1000;
  tollgate_test::RedisServer server;
  Policy policy;
  std::vector<Slot> slots(kCalls);

  rl_limiter *lim = make_limiter(server, 0, /*set=*/false);
  server.stop();
  const int64_t rss_before = rss_bytes();
  const Flood f = flood(lim, policy.p, kCalls, slots);
  const int64_t rss_after = rss_bytes();
  server.cont();
  CHECK(f.accepted == kDefault);
  CHECK(f.refused == kCalls - kDefault);
  CHECK(f.other == 0);
  CHECK(f.busy_message.find("65536") != std::string::npos);
  CHECK(wait_for([&] { return completed(slots, f.accepted) == f.accepted; }));
  CHECK(health(lim).async_pending == 0);
  // The cost of one pending call, for the record (docs/api-c.md).
  INFO("RSS per pending call: "
       << (rss_after - rss_before) / static_cast<int64_t>(kDefault) << " B");
  CHECK(rss_after >= rss_before);
  rl_destroy(lim);

  std::vector<Slot> more(kCalls);
  lim = make_limiter(server, -1);
  server.stop();
  const Flood g = flood(lim, policy.p, kCalls, more);
  server.cont();
  CHECK(g.accepted == kCalls);
  CHECK(g.refused == 0);
  CHECK(wait_for([&] { return completed(more, g.accepted) == g.accepted; }));
  const rl_health_info h = health(lim);
  CHECK(h.async_pending == 0);
  CHECK(h.async_refused == 0);
  rl_destroy(lim);
}

TEST_CASE(
    "backpressure: deadlines and rl_destroy give the slots back, the URL "
    "sets the bound, answers known at once are never refused",
    "[redis][backpressure]") {
  tollgate_test::RedisServer server;
  Policy policy;

  SECTION("calls that time out free their slots") {
    rl_options o = RL_OPTIONS_INIT;
    const std::string url = server.url();
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    o.timeout_ms = 100;
    o.max_async = 10;
    rl_limiter *lim = nullptr;
    REQUIRE(rl_create(&lim, &o) == RL_OK);
    int64_t rtt = 0;
    REQUIRE(rl_ping(lim, &rtt) == RL_OK);
    server.stop();
    std::vector<Slot> slots(11);
    const Flood f = flood(lim, policy.p, 50, slots);
    CHECK(f.accepted == 10);
    CHECK(f.refused == 40);
    const bool timed_out =
        wait_for([&] { return completed(slots, f.accepted) == f.accepted; });
    const rl_health_info h = health(lim);
    server.cont();
    CHECK(timed_out);
    size_t timeouts = 0;
    for (size_t i = 0; i < f.accepted; ++i)
      timeouts += slots[i].status.load() == RL_E_TIMEOUT ? 1 : 0;
    CHECK(timeouts == f.accepted);
    CHECK(h.async_pending == 0);
    rl_destroy(lim);
  }

  SECTION("rl_destroy completes pending calls once, with RL_E_CLOSED") {
    rl_limiter *lim = make_limiter(server, 10);
    server.stop();
    std::vector<Slot> slots(11);
    const Flood f = flood(lim, policy.p, 20, slots);
    rl_destroy(lim);
    server.cont();
    CHECK(f.accepted == 10);
    CHECK(f.refused == 10);
    for (size_t i = 0; i < f.accepted; ++i) {
      CHECK(slots[i].calls.load() == 1);
      CHECK(slots[i].status.load() == RL_E_CLOSED);
    }
  }

  SECTION("?max_async= in the URL") {
    rl_options o = RL_OPTIONS_INIT;
    const std::string url = server.url() + "?max_async=5&timeout_ms=60000";
    o.url = url.c_str();
    rl_limiter *lim = nullptr;
    REQUIRE(rl_create(&lim, &o) == RL_OK);
    int64_t rtt = 0;
    REQUIRE(rl_ping(lim, &rtt) == RL_OK);
    server.stop();
    std::vector<Slot> slots(6);
    const Flood f = flood(lim, policy.p, 100, slots);
    server.cont();
    CHECK(f.accepted == 5);
    CHECK(f.refused == 95);
    CHECK(f.busy_message.find("in flight: 5 ") != std::string::npos);
    CHECK(wait_for([&] { return completed(slots, f.accepted) == f.accepted; }));
    rl_destroy(lim);
  }

  SECTION("the memory store answers inline: nothing waits, nothing refused") {
    rl_options o = RL_OPTIONS_INIT;
    o.max_async = 1;
    rl_limiter *lim = nullptr;
    REQUIRE(rl_create(&lim, &o) == RL_OK);
    std::vector<Slot> slots(100);
    const Flood f = flood(lim, policy.p, 100, slots);
    CHECK(f.accepted == 100);
    CHECK(completed(slots, 100) == 100);
    rl_destroy(lim);
  }
}

TEST_CASE("backpressure: max_async by name, and its range",
          "[backpressure][options]") {
  rl_options o = RL_OPTIONS_INIT;
  CHECK(o.max_async == 0);
  CHECK(rl_options_set(&o, "max_async", "1000") == RL_OK);
  CHECK(o.max_async == 1000);
  CHECK(rl_options_set(&o, "max_async", "-1") == RL_OK);
  CHECK(o.max_async == -1);
  CHECK(rl_options_set(&o, "max_async", "-2") == RL_E_INVALID_ARG);
  CHECK(rl_options_set(&o, "max_async", "2147483648") == RL_E_INVALID_ARG);
  rl_options old = RL_OPTIONS_INIT;
  old.version = 5;
  CHECK(rl_options_set(&old, "max_async", "10") == RL_E_VERSION);

  o.max_async = -2;
  rl_limiter *lim = nullptr;
  CHECK(rl_create(&lim, &o) == RL_E_INVALID_ARG);
  CHECK(std::string(rl_last_error()).find("max_async") != std::string::npos);
  CHECK(lim == nullptr);

  rl_options url = RL_OPTIONS_INIT;
  url.url = "redis://127.0.0.1:1?max_async=-1";
  CHECK(rl_create(&lim, &url) == RL_E_URL);
  CHECK(std::string(rl_last_error()).find("max_async") != std::string::npos);
}
