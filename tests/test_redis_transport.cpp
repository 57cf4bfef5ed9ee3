// The Redis transport's two paths: commands queued to the I/O thread, and
// blocking commands that the calling thread carries itself on an idle
// connection it borrows. Against a real redis-server (and a fake one for
// bad replies): replies never go to the wrong caller, deadlines hold on both
// paths, and a connection that broke under a borrower is repaired.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "redis/spin_rule.hpp"
#include "support/fake_server.hpp"
#include "support/redis_server.hpp"
#include "tollgate/redis/resp.hpp"
#include "tollgate/redis/transport.hpp"
#include "tollgate/redis/url.hpp"

using tollgate::Errc;
using tollgate::redis::CallResult;
using tollgate::redis::format_command;
using tollgate::redis::monotonic_ns;
using tollgate::redis::Reply;
using tollgate::redis::Settings;
using tollgate::redis::Transport;
using tollgate_test::FakeReply;
using tollgate_test::RedisServer;

namespace {

using Mode = Transport::Mode;
constexpr int64_t kMsNs = 1000000;

// One command's outcome and the thread its completion ran on.
struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Errc code = Errc::ok;
  std::string message;
  Reply::Type type = Reply::Type::nil;
  int64_t integer = 0;
  std::string str;
  std::thread::id thread;
};

void on_done(void *ctx, CallResult &&r) {
  auto *o = static_cast<Outcome *>(ctx);
  std::lock_guard<std::mutex> lock(o->mu);
  o->code = r.code;
  o->message = r.message;
  if (r.reply) {
    o->type = r.reply->type;
    o->integer = r.reply->integer;
    o->str = r.reply->str;
  }
  o->thread = std::this_thread::get_id();
  o->done = true;
  o->cv.notify_all();
}

// `adjust` changes the settings further before the transport is made.
std::unique_ptr<Transport> make(
    const std::string &url, uint32_t timeout_ms, uint32_t connections = 1,
    const std::function<void(Settings &)> &adjust = {}) {
  Settings s;
  REQUIRE(tollgate::redis::parse_url(url, s) == Errc::ok);
  s.timeout_ms = timeout_ms;
  s.connect_timeout_ms = 1000;
  s.connections = connections;
  s.reconnect_max_ms = 200;
  if (adjust) adjust(s);
  std::unique_ptr<Transport> t;
  REQUIRE(Transport::create(s, {}, {}, t) == Errc::ok);
  return t;
}

std::string cmd(std::vector<std::string_view> argv) {
  std::string out;
  format_command(argv, out);
  return out;
}

// Submits and waits (up to 500 ms past the deadline) for the completion;
// false if it never came. Safe on any thread (no Catch assertions).
bool submit_wait(Transport &t, Outcome &o, const std::string &command,
                 Mode mode, int64_t timeout_ms) {
  t.submit(command, monotonic_ns() + timeout_ms * kMsNs, on_done, &o, mode);
  std::unique_lock<std::mutex> lock(o.mu);
  return o.cv.wait_for(lock, std::chrono::milliseconds(timeout_ms + 500),
                       [&] { return o.done; });
}

// The same on the test's thread, asserting that the completion came.
Outcome &run(Transport &t, Outcome &o, const std::string &command, Mode mode,
             int64_t timeout_ms = 500) {
  REQUIRE(submit_wait(t, o, command, mode, timeout_ms));
  return o;
}

// Waits until a PING answers on the I/O thread's side and the connection
// had time to go idle (so the next blocking command can borrow it).
void settle(Transport &t) {
  for (int i = 0; i < 100; ++i) {
    Outcome o;
    run(t, o, cmd({"PING"}), Mode::queued, 1000);
    if (o.code == Errc::ok && o.str == "PONG") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

int64_t ms_since(int64_t t0) {
  return (monotonic_ns() - t0) / kMsNs;
}

// With `key`'s counter at 1, freezes Redis under an INCR sent with `mode`:
// the INCR times out within its 150 ms deadline. Once Redis resumes it runs
// (2) and its late reply must be dropped, not handed to the next command,
// which sees 3. Returns the thread that answered the frozen INCR.
std::thread::id late_reply_is_dropped(RedisServer &server, Transport &t,
                                      Mode mode, const std::string &key) {
  server.stop();
  const int64_t t0 = monotonic_ns();
  Outcome frozen;
  run(t, frozen, cmd({"INCR", key}), mode, 150);
  const int64_t took = ms_since(t0);
  CHECK(frozen.code == Errc::timeout);
  CHECK(took >= 140);
  CHECK(took <= 150 + 100);
  server.cont();
  Outcome next;
  run(t, next, cmd({"INCR", key}), mode, 1000);
  CHECK(next.code == Errc::ok);
  CHECK(next.integer == 3);
  return frozen.thread;
}

}  // namespace

TEST_CASE(
    "transport: a blocking command on an idle connection runs on the "
    "caller's thread",
    "[redis][transport]") {
  RedisServer server;
  auto t = make(server.url(), 1000);
  settle(*t);
  Outcome direct;
  run(*t, direct, cmd({"PING"}), Mode::blocking);
  CHECK(direct.code == Errc::ok);
  CHECK(direct.str == "PONG");
  CHECK(direct.thread == std::this_thread::get_id());
  Outcome queued;
  run(*t, queued, cmd({"PING"}), Mode::queued);
  CHECK(queued.code == Errc::ok);
  CHECK(queued.thread != std::this_thread::get_id());
  // Error replies come back as replies on both paths.
  Outcome err;
  run(*t, err, cmd({"NOSUCHCOMMAND"}), Mode::blocking);
  CHECK(err.code == Errc::ok);
  CHECK(err.type == Reply::Type::error);
}

TEST_CASE(
    "transport: blocking and queued commands from many threads never "
    "get each other's replies",
    "[redis][transport]") {
  RedisServer server;
  for (uint32_t conns : {1u, 2u}) {
    auto t = make(server.url(), 2000, conns);
    settle(*t);
    const std::string key = "counter-" + std::to_string(conns);
    constexpr int kThreads = 4;
    constexpr int kCalls = 400;
    std::atomic<int> wrong{0};
    std::atomic<int> errors{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < kThreads; ++w) {
      threads.emplace_back([&, w] {
        // Each thread owns a key of its own (its INCR replies must count
        // 1, 2, 3, ...) and shares one counter with the others.
        const std::string mine = key + "-" + std::to_string(w);
        for (int i = 1; i <= kCalls; ++i) {
          const Mode mode = (i + w) % 3 == 0 ? Mode::queued : Mode::blocking;
          Outcome own;
          if (!submit_wait(*t, own, cmd({"INCR", mine}), mode, 2000) ||
              own.code != Errc::ok)
            ++errors;
          else if (own.type != Reply::Type::integer || own.integer != i)
            ++wrong;
          Outcome shared;
          if (!submit_wait(*t, shared, cmd({"INCR", key}), mode, 2000) ||
              shared.code != Errc::ok)
            ++errors;
        }
      });
    }
    for (auto &th : threads) th.join();
    CHECK(errors.load() == 0);
    CHECK(wrong.load() == 0);
    const tollgate_test::RespValue total = server.query({"GET", key});
    CHECK(total.type == '$');
    CHECK(total.str == std::to_string(kThreads * kCalls));
  }
}

TEST_CASE(
    "transport: a borrower that times out leaves the late reply to the "
    "I/O thread",
    "[redis][transport][chaos]") {
  RedisServer server;
  auto t = make(server.url(), 1000);
  settle(*t);
  Outcome first;
  run(*t, first, cmd({"INCR", "late"}), Mode::blocking);
  REQUIRE(first.integer == 1);
  CHECK(late_reply_is_dropped(server, *t, Mode::blocking, "late") ==
        std::this_thread::get_id());  // it was borrowed
  settle(*t);
  Outcome again;
  run(*t, again, cmd({"INCR", "late"}), Mode::blocking, 1000);
  CHECK(again.integer == 4);
  CHECK(again.thread == std::this_thread::get_id());  // idle and lent again
}

TEST_CASE("transport: Redis killed while a connection is lent, then restarted",
          "[redis][transport][chaos]") {
  RedisServer server;
  auto t = make(server.url(), 300);
  settle(*t);
  server.kill9();
  // The I/O thread sees the close (EPOLLRDHUP) or the borrower does: either
  // way the answer is an error within the deadline, never a hang.
  for (int i = 0; i < 5; ++i) {
    const int64_t t0 = monotonic_ns();
    Outcome o;
    run(*t, o, cmd({"PING"}), Mode::blocking, 300);
    CHECK(o.code != Errc::ok);
    CHECK(ms_since(t0) <= 300 + 100);
  }
  server.restart();
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    Outcome o;
    run(*t, o, cmd({"PING"}), Mode::blocking, 300);
    back = o.code == Errc::ok && o.str == "PONG";
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  CHECK(back);
  CHECK(t->stats().reconnects == 1);
}

TEST_CASE(
    "transport: bad replies to a borrower are protocol errors and the "
    "connection is replaced",
    "[redis][transport][protocol]") {
  struct Case {
    const char *name;
    FakeReply reply;  // to the PING under test
    Errc expect;
  };
  const std::string info_body = "# Server\r\nredis_version:9.9.9\r\n";
  const std::string info =
      "$" + std::to_string(info_body.size()) + "\r\n" + info_body + "\r\n";
  const Case cases[] = {
      {"garbage type byte", FakeReply::send("!garbage\r\n"), Errc::protocol},
      {"absurd array", FakeReply::send("*888888880\r\n"), Errc::protocol},
      {"closed mid-reply", FakeReply::close("*5\r\n:1\r\n"), Errc::connect},
      {"two replies for one command", FakeReply::send("+PONG\r\n+PONG\r\n"),
       Errc::ok},
      {"silence", FakeReply::silent(), Errc::timeout},
  };
  for (const Case &c : cases) {
    SECTION(c.name) {
      // Handshake (INFO), the settling PING, then the case's reply.
      tollgate_test::FakeServer fake(
          {FakeReply::send(info), FakeReply::send("+PONG\r\n"), c.reply});
      auto t = make(fake.url(), 300);
      settle(*t);
      const int64_t t0 = monotonic_ns();
      Outcome o;
      run(*t, o, cmd({"PING"}), Mode::blocking, 300);
      INFO(o.message);
      CHECK(o.code == c.expect);
      CHECK(ms_since(t0) <= 300 + 100);
      if (c.expect == Errc::ok) {
        // The stray second reply makes the connection suspect: the I/O
        // thread drops it instead of handing the extra bytes to anyone.
        CHECK(o.str == "PONG");
        Outcome next;
        run(*t, next, cmd({"PING"}), Mode::blocking, 300);
        CHECK(next.code != Errc::ok);
      }
    }
  }
}

TEST_CASE(
    "transport: an async command written by the caller on an idle "
    "connection keeps its deadline and its place",
    "[redis][transport][chaos]") {
  RedisServer server;
  auto t = make(server.url(), 1000);
  settle(*t);
  Outcome first;
  run(*t, first, cmd({"INCR", "async"}), Mode::queued);
  REQUIRE(first.integer == 1);
  CHECK(first.thread != std::this_thread::get_id());  // read by the I/O thread
  settle(*t);
  late_reply_is_dropped(server, *t, Mode::queued, "async");

  // A command larger than the socket takes at once: the caller writes what
  // it can and the I/O thread sends the rest.
  settle(*t);
  const std::string big(8 * 1024 * 1024, 'v');
  Outcome set;
  run(*t, set, cmd({"SET", "big", big}), Mode::queued, 5000);
  CHECK(set.code == Errc::ok);
  CHECK(set.str == "OK");
  CHECK(server.query({"STRLEN", "big"}).integer ==
        static_cast<long long>(big.size()));
}

TEST_CASE(
    "transport: commands queued behind a busy connection are written by "
    "their caller, in order, and keep their deadlines",
    "[redis][transport][caller_write]") {
  RedisServer server;
  auto t = make(server.url(), 300);
  settle(*t);
  // Order: a BLPOP holds the connection busy (Redis answers it in 200
  // ms), and the I/O thread knows it is in flight; 400 INCRs submitted
  // behind it are written by this thread in batches. Every reply still
  // reaches its own command.
  constexpr int kCalls = 400;
  std::vector<Outcome> outs(kCalls);
  const int64_t deadline = monotonic_ns() + 5000 * kMsNs;
  Outcome busy;
  t->submit(cmd({"BLPOP", "cw-none", "0.2"}), deadline, on_done, &busy,
            Mode::queued);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int i = 0; i < kCalls; ++i)
    t->submit(cmd({"INCR", "cw"}), deadline, on_done, &outs[i], Mode::queued);
  for (int i = 0; i < kCalls; ++i) {
    std::unique_lock<std::mutex> lock(outs[i].mu);
    REQUIRE(outs[i].cv.wait_for(lock, std::chrono::seconds(5),
                                [&] { return outs[i].done; }));
    INFO("command " << i << ": " << outs[i].message);
    REQUIRE(outs[i].code == Errc::ok);
    CHECK(outs[i].integer == i + 1);
  }
  const uint64_t written = t->stats().caller_written;
  CHECK(written > 0);

  {
    std::unique_lock<std::mutex> lock(busy.mu);
    REQUIRE(busy.cv.wait_for(lock, std::chrono::seconds(5),
                             [&] { return busy.done; }));
    CHECK(busy.code == Errc::ok);
    CHECK(busy.type == Reply::Type::nil);
  }

  // Deadlines: Redis frozen with a command in flight; what callers write
  // behind it still times out by its own deadline (the I/O thread learns
  // of those commands when it wakes for the first one's deadline).
  settle(*t);
  server.stop();
  const int64_t t0 = monotonic_ns();
  Outcome first;
  t->submit(cmd({"PING"}), monotonic_ns() + 300 * kMsNs, on_done, &first,
            Mode::queued);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  constexpr int kFrozen = 60;
  std::vector<Outcome> frozen(kFrozen);
  for (int i = 0; i < kFrozen; ++i)
    t->submit(cmd({"INCR", "cw"}), monotonic_ns() + 300 * kMsNs, on_done,
              &frozen[i], Mode::queued);
  for (int i = 0; i < kFrozen; ++i) {
    std::unique_lock<std::mutex> lock(frozen[i].mu);
    REQUIRE(frozen[i].cv.wait_for(lock, std::chrono::seconds(3),
                                  [&] { return frozen[i].done; }));
    CHECK(frozen[i].code == Errc::timeout);
  }
  CHECK(ms_since(t0) <= 20 + 300 + 150);
  {
    std::unique_lock<std::mutex> lock(first.mu);
    REQUIRE(first.cv.wait_for(lock, std::chrono::seconds(3),
                              [&] { return first.done; }));
    CHECK(first.code == Errc::timeout);
  }
  CHECK(t->stats().caller_written > written);
  server.cont();
  // The late replies are dropped, not handed to the next command.
  Outcome next;
  run(*t, next, cmd({"INCR", "cw"}), Mode::queued, 2000);
  CHECK(next.code == Errc::ok);
  CHECK(next.integer > kCalls);
}

TEST_CASE(
    "transport: a late reply owed on a connection is no reason to skip "
    "waking the I/O thread",
    "[redis][transport][caller_write]") {
  RedisServer server;
  auto t = make(server.url(), 150);
  settle(*t);
  server.stop();
  // A blocking command on the idle connection times out on the caller's
  // thread: its late reply is still owed there, with no deadline left.
  Outcome blocked;
  run(*t, blocked, cmd({"PING"}), Mode::blocking, 150);
  CHECK(blocked.code == Errc::timeout);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  // A queued command behind it must still be timed out by the I/O thread
  // at its own deadline, not whenever that thread next wakes.
  for (int i = 0; i < 3; ++i) {
    const int64_t t0 = monotonic_ns();
    Outcome queued;
    run(*t, queued, cmd({"INCR", "owed"}), Mode::queued, 150);
    CHECK(queued.code == Errc::timeout);
    CHECK(ms_since(t0) <= 150 + 100);
  }
  server.cont();
}

TEST_CASE(
    "transport: waiters spin only while lone replies come back within "
    "spin_us",
    "[redis][transport][spin]") {
  RedisServer server;
  auto t = make(server.url(), 2000, 1, [](Settings &s) { s.spin_us = 1000; });
  settle(*t);
  // Nothing learnt yet: the first lone waits spun.
  CHECK(t->stats().spun_waits >= 1);

  // Twelve replies that each take 20 ms (Redis stopped meanwhile), on
  // both paths: the smoothed wait climbs past spin_us.
  for (int i = 0; i < 12; ++i) {
    server.stop();
    std::thread resume([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      server.cont();
    });
    Outcome o;
    run(*t, o, cmd({"PING"}), i % 2 ? Mode::blocking : Mode::queued, 2000);
    resume.join();
    CHECK(o.code == Errc::ok);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto slow = t->stats();
  CHECK(slow.lone_wait_us > 1000);
  // So the next lone waits sleep at once instead of spinning.
  Outcome a;
  run(*t, a, cmd({"PING"}), Mode::blocking);
  CHECK(a.code == Errc::ok);
  Outcome b;
  run(*t, b, cmd({"PING"}), Mode::queued);
  CHECK(b.code == Errc::ok);
  CHECK(t->stats().spun_waits == slow.spun_waits);

  // Fast replies bring the estimate down again.
  for (int i = 0; i < 40; ++i) {
    Outcome o;
    run(*t, o, cmd({"PING"}), i % 2 ? Mode::blocking : Mode::queued);
    CHECK(o.code == Errc::ok);
  }
  CHECK(t->stats().lone_wait_us < slow.lone_wait_us);
}

TEST_CASE(
    "transport: a lone wait spins only where the latency it saves is at "
    "least the CPU it costs beyond a sleep, and one wait in kProbeEvery "
    "tries the other way",
    "[redis][transport][spin]") {
  using tollgate::redis::SpinRule;
  constexpr int kRounds = 8;
  constexpr int kWaits = kRounds * static_cast<int>(SpinRule::kProbeEvery);
  const auto spins = [](SpinRule &rule) {
    int n = 0;
    for (int i = 0; i < kWaits; ++i) n += rule.plan().spin ? 1 : 0;
    return n;
  };
  // Waits of each kind, in us: wall time and the waiter's thread CPU.
  const auto learn = [](SpinRule &rule, int64_t spun_wait, int64_t spun_cpu,
                        int64_t slept_wait, int64_t slept_cpu) {
    for (int i = 0; i < 100; ++i) {
      rule.note(spun_wait * 1000, true, spun_cpu * 1000);
      rule.note(slept_wait * 1000, false, slept_cpu * 1000);
    }
  };
  SpinRule rule(200 * 1000);
  // Nothing learnt yet: spin, and read the CPU clock now and then.
  CHECK(rule.worth());
  int timed = 0;
  for (int i = 0; i < kWaits; ++i) timed += rule.plan().timed ? 1 : 0;
  CHECK(timed == kWaits / static_cast<int>(SpinRule::kTimeEvery) + kRounds);
  // A standalone Redis on a 2-vCPU VM: a spinner waits 35 us and burns 33,
  // a sleeper waits 80 and burns 12. 45 us saved for 21 of CPU: every wait
  // spins but the probes.
  learn(rule, 35, 33, 80, 12);
  CHECK(rule.worth());
  CHECK(spins(rule) == kWaits - kRounds);
  // A cluster on the same VM: 70 and 65 against 95 and 12. 25 us saved for
  // 53 of CPU: only the probes spin.
  learn(rule, 70, 65, 95, 12);
  CHECK_FALSE(rule.worth());
  CHECK(spins(rule) == kRounds);
  // A wall-clock-only rule (the spinner's whole wait as its cost) would
  // stop here too; this one keeps spinning: 30 us saved for 25 of CPU
  // (the spinner yielded its CPU for part of the wait).
  learn(rule, 40, 30, 70, 5);
  CHECK(rule.worth());
  CHECK(spins(rule) == kWaits - kRounds);
  // Untimed waits move the wall estimates only.
  for (int i = 0; i < 100; ++i) rule.note(150 * 1000, false, -1);
  const SpinRule::Estimates e = rule.estimates();
  CHECK(e.slept_wait_ns > 140 * 1000);
  CHECK(e.slept_cpu_ns < 6 * 1000);
  // A round trip past spin_us: nobody spins, not even a probe.
  learn(rule, 800, 800, 800, 10);
  CHECK_FALSE(rule.in_reach());
  CHECK(spins(rule) == 0);
  // spin_us 0: never.
  SpinRule off(0);
  CHECK(spins(off) == 0);
  // The thread CPU clock moves with work done on this thread.
  const int64_t c0 = SpinRule::thread_cpu_ns();
  volatile uint64_t sink = 0;
  for (uint64_t i = 0; i < 20000000; ++i) sink = sink + i;
  CHECK(c0 >= 0);
  CHECK(SpinRule::thread_cpu_ns() > c0);
}

namespace {

// Resolvers for the tests below (set_resolver takes a plain function, so
// their answers come from these globals).
std::atomic<uint16_t> g_good_port{0};
std::atomic<uint16_t> g_dead_port{0};
std::atomic<int> g_slow_ms{0};
std::atomic<int> g_slow_running{0};  // lookups of slow.test under way
std::atomic<int> g_slow_most{0};     // the most at once

tollgate::redis::Endpoint loopback(uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  tollgate::redis::Endpoint e;
  std::memcpy(&e.addr, &in, sizeof in);
  e.len = sizeof in;
  return e;
}

// "slow.test" answers after g_slow_ms; "two.test" has a refusing address
// first; "dead.test" only refusing ones; anything else does not exist.
int test_resolver(const std::string &host, uint16_t,
                  std::vector<tollgate::redis::Endpoint> &out) {
  if (host == "slow.test") {
    const int now_running = ++g_slow_running;
    int most = g_slow_most.load();
    while (now_running > most &&
           !g_slow_most.compare_exchange_weak(most, now_running)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(g_slow_ms.load()));
    --g_slow_running;
    out.push_back(loopback(g_good_port.load()));
    return 0;
  }
  if (host == "two.test") {
    out.push_back(loopback(g_dead_port.load()));
    out.push_back(loopback(g_good_port.load()));
    return 0;
  }
  if (host == "dead.test") {
    out.push_back(loopback(g_dead_port.load()));
    out.push_back(loopback(g_dead_port.load()));
    return 0;
  }
  return EAI_NONAME;
}

struct ResolverScope {
  explicit ResolverScope(tollgate::redis::Resolver r) {
    tollgate::redis::set_resolver(r);
  }
  ~ResolverScope() { tollgate::redis::set_resolver(nullptr); }
};

std::unique_ptr<Transport> make_host(const std::string &host, uint16_t port,
                                     uint32_t timeout_ms,
                                     uint32_t connect_timeout_ms) {
  return make("redis://" + host + ":" + std::to_string(port), timeout_ms, 1,
              [&](Settings &s) {
                s.connect_timeout_ms = connect_timeout_ms;
                s.reconnect_max_ms = 100;
              });
}

// The threads of this process now.
size_t thread_count() {
  size_t n = 0;
  for ([[maybe_unused]] const auto &e :
       std::filesystem::directory_iterator("/proc/self/task"))
    ++n;
  return n;
}

// PINGs until one answers PONG, for up to `ms`.
bool pong_within(Transport &t, int ms) {
  const int64_t until = monotonic_ns() + ms * kMsNs;
  while (monotonic_ns() < until) {
    Outcome o;
    if (submit_wait(t, o, cmd({"PING"}), Mode::queued, 200) &&
        o.code == Errc::ok && o.str == "PONG")
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

TEST_CASE(
    "transport: a slow host lookup runs beside the I/O thread, whose "
    "deadlines still hold",
    "[redis][transport][resolve]") {
  RedisServer server;
  g_good_port = server.port();
  g_slow_ms = 800;
  ResolverScope scope(test_resolver);
  auto t = make_host("slow.test", server.port(), 150, 3000);
  // A second transport whose connect deadline (100 ms) ends long before
  // the lookup does: its retries wait for that lookup instead of starting
  // more of them, and it connects once the lookup answers.
  auto retrying = make_host("slow.test", server.port(), 150, 100);
  // While the name is being looked up, commands wait for the connection
  // and are answered at their own deadline, not at the lookup's end.
  for (int i = 0; i < 3; ++i) {
    const int64_t t0 = monotonic_ns();
    Outcome o;
    run(*t, o, cmd({"PING"}), i == 1 ? Mode::blocking : Mode::queued, 150);
    const int64_t took = ms_since(t0);
    CHECK(o.code != Errc::ok);
    CHECK(took <= 150 + 100);
  }
  // Then the lookup ends and the connection is made.
  CHECK(pong_within(*t, 3000));
  CHECK(pong_within(*retrying, 3000));
  // One lookup per transport at most, however often the second retried.
  CHECK(g_slow_most.load() <= 2);
}

TEST_CASE("transport: a name's addresses are tried in order until one connects",
          "[redis][transport][resolve]") {
  RedisServer server;
  g_good_port = server.port();
  g_dead_port = tollgate_test::free_port();
  ResolverScope scope(test_resolver);
  {
    auto t = make_host("two.test", server.port(), 500, 1000);
    CHECK(pong_within(*t, 3000));
  }
  {
    // Every address refuses: the error says so, at once.
    auto t = make_host("dead.test", server.port(), 500, 1000);
    Outcome o;
    run(*t, o, cmd({"PING"}), Mode::queued, 500);
    CHECK(o.code == Errc::connect);
    CHECK(o.message.find("refused") != std::string::npos);
  }
  {
    auto t = make_host("nowhere.test", server.port(), 500, 1000);
    Outcome o;
    run(*t, o, cmd({"PING"}), Mode::queued, 500);
    CHECK(o.code == Errc::connect);
    CHECK(o.message.find("cannot resolve host 'nowhere.test'") !=
          std::string::npos);
  }
}

TEST_CASE(
    "transport: destroying it joins a lookup still under way: no thread of "
    "its own is left",
    "[redis][transport][resolve]") {
  RedisServer server;
  g_good_port = server.port();
  g_slow_ms = 600;
  ResolverScope scope(test_resolver);
  // A first thread, started and joined: under TSan that starts its own
  // background thread, which must be counted before, not after.
  std::thread([] {}).join();
  const size_t before = thread_count();
  auto t = make_host("slow.test", server.port(), 100, 3000);
  Outcome o;
  run(*t, o, cmd({"PING"}), Mode::queued, 100);  // starts the lookup
  CHECK(o.code != Errc::ok);
  CHECK(g_slow_running.load() == 1);  // still looking up
  t.reset();
  // The I/O thread and the helper were joined: neither runs any more.
  CHECK(g_slow_running.load() == 0);
  CHECK(thread_count() == before);
}

TEST_CASE("transport: a host name through the system resolver (localhost)",
          "[redis][transport][resolve]") {
  RedisServer server;
  auto t = make_host("localhost", server.port(), 1000, 2000);
  CHECK(pong_within(*t, 3000));
}
