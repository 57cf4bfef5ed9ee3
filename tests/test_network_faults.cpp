// Network faults between tollgate and a real redis-server (issue 18):
//
// - a partition: the server and the limiter live in a network namespace
//   of the test's own (`ip netns`), and taking its loopback down drops
//   everything; then it comes back up;
// - added latency, jitter, a trickling connection and a black hole, from
//   toxiproxy (https://github.com/Shopify/toxiproxy) put between the two.
//
// Under each: every call returns within its deadline, the failure mode
// answers while the store cannot, traffic recovers by itself once healed,
// and the counts are exact again once healed.
//
// A fault that cannot be set up here (not root, no `ip netns`, no toxiproxy
// binary) skips its test: it prints why and exits with code 77, which
// ctest reports as skipped (SKIP_RETURN_CODE), never as passed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/prober.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

using tollgate_test::free_port;
using tollgate_test::Lim;
using tollgate_test::per_year;
using tollgate_test::RedisServer;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kSkip = 77;

[[noreturn]] void skip(const std::string &why) {
  std::printf("SKIPPED: %s\n", why.c_str());
  std::fflush(stdout);
  std::_Exit(kSkip);
}

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t)
      .count();
}

// Runs a command (argv, no shell); its exit code, or -1.
int run(const std::vector<std::string> &argv) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    std::vector<char *> args;
    for (const std::string &a : argv)
      args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// One call's result and how long it took.
struct Call {
  int rc = 0;
  rl_decision d = RL_DECISION_INIT;
  int64_t took_ms = 0;
};

Call timed_check(Lim &lim, const std::string &key, int64_t limit = 1000000000) {
  Call c;
  const rl_policy_spec pol = per_year(limit);
  const auto t0 = Clock::now();
  c.rc = lim.check(key, pol, c.d);
  c.took_ms = ms_since(t0);
  return c;
}

// Calls until one is answered by the store, for up to `ms`: true if one was.
bool recovers_within(Lim &lim, const std::string &key, int ms) {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < until) {
    const Call c = timed_check(lim, key);
    if (c.rc == RL_OK && c.d.source == RL_SOURCE_STORE) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// A limit so large against its period (one unit back per ~16 minutes)
// that a test's checks consume it without any coming back meanwhile.
constexpr int64_t kExactLimit = 1'000'000;

// What the server has counted for `key` under that limit: a cost-0 check
// from a fresh limiter.
long used(const std::string &url, const std::string &key) {
  Lim a(url, RL_FAIL_ERROR, 2000);
  const rl_policy_spec pol = per_year(kExactLimit);
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(a.p, &d, key.data(), key.size(), &pol, 1, 0) == RL_OK);
  REQUIRE(d.source == RL_SOURCE_STORE);
  return static_cast<long>(kExactLimit - d.remaining);
}

// After healing: `n` more checks of `key` are counted exactly `n` times
// by the server, and a fresh key with a limit of 20 admits exactly 20 of 30.
void check_exact_after_heal(const std::string &url, Lim &lim,
                            const std::string &key) {
  const long before = used(url, key);
  constexpr int kN = 50;
  int admitted = 0;
  for (int i = 0; i < kN; ++i) {
    const Call c = timed_check(lim, key, kExactLimit);
    REQUIRE(c.rc == RL_OK);
    CHECK(c.d.source == RL_SOURCE_STORE);
    admitted += c.d.allowed ? 1 : 0;
  }
  CHECK(admitted == kN);
  CHECK(used(url, key) - before == kN);
  int fresh = 0;
  for (int i = 0; i < 30; ++i) {
    const Call c = timed_check(lim, key + ":fresh", 20);
    REQUIRE(c.rc == RL_OK);
    fresh += c.d.allowed ? 1 : 0;
  }
  CHECK(fresh == 20);
}

// ---- a network namespace of the test's own --------------------------------

// Moves the calling thread (the test's) into a new network namespace with
// its loopback up, and back out when destroyed. Processes forked meanwhile
// (redis-server) and threads started meanwhile (the limiter's I/O thread)
// live in it.
class Netns {
 public:
  Netns() : name_("tollgate-test-" + std::to_string(getpid())) {
    if (geteuid() != 0) skip("network namespaces need root");
    if (run({"ip", "netns", "add", name_}) != 0)
      skip("`ip netns add` failed (no iproute2, or no permission)");
    if (run({"ip", "netns", "exec", name_, "ip", "link", "set", "lo", "up"}) !=
        0) {
      run({"ip", "netns", "del", name_});
      skip("cannot bring up the namespace's loopback");
    }
    home_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int ns =
        open(("/var/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
    if (home_ < 0 || ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
      if (ns >= 0) close(ns);
      run({"ip", "netns", "del", name_});
      skip("setns into the test's namespace failed");
    }
    close(ns);
  }
  ~Netns() {
    if (home_ >= 0) {
      setns(home_, CLONE_NEWNET);
      close(home_);
    }
    run({"ip", "netns", "del", name_});
  }
  Netns(const Netns &) = delete;
  Netns &operator=(const Netns &) = delete;

  // The namespace's loopback down (a partition: everything dropped) or up.
  void loopback(bool up) {
    REQUIRE(run({"ip", "netns", "exec", name_, "ip", "link", "set", "lo",
                 up ? "up" : "down"}) == 0);
  }

 private:
  std::string name_;
  int home_ = -1;
};

// ---- toxiproxy ------------------------------------------------------------

// The toxiproxy server binary: $TOLLGATE_TOXIPROXY, else where `go install
// github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0` puts it.
std::string toxiproxy_binary() {
  if (const char *p = std::getenv("TOLLGATE_TOXIPROXY"); p && *p)
    return access(p, X_OK) == 0 ? p : "";
  std::vector<std::string> candidates;
  if (const char *g = std::getenv("GOPATH"); g && *g)
    candidates.push_back(std::string(g) + "/bin/server");
  if (const char *h = std::getenv("HOME"); h && *h)
    candidates.push_back(std::string(h) + "/go/bin/server");
  for (const std::string &c : candidates)
    if (access(c.c_str(), X_OK) == 0) return c;
  return "";
}

// A toxiproxy server on a free loopback port, stopped by its PID, with one
// proxy from a free port to `upstream_port`; toxics are added and removed
// through its HTTP API.
class Toxiproxy {
 public:
  explicit Toxiproxy(uint16_t upstream_port) {
    const std::string bin = toxiproxy_binary();
    if (bin.empty())
      skip(
          "no toxiproxy server: set TOLLGATE_TOXIPROXY, or run `go install "
          "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0`");
    api_port_ = free_port();
    listen_port_ = free_port();
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const int null = open("/dev/null", O_WRONLY);
      if (null >= 0) {
        dup2(null, 1);
        dup2(null, 2);
      }
      const std::string port = std::to_string(api_port_);
      execl(bin.c_str(), bin.c_str(), "-host", "127.0.0.1", "-port",
            port.c_str(), static_cast<char *>(nullptr));
      _exit(127);
    }
    // Wait for its API, then make the proxy.
    const auto until = Clock::now() + std::chrono::seconds(10);
    int status = -1;
    while (Clock::now() < until) {
      status = http("GET", "/version", "");
      if (status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (status != 200) {
      stop();
      skip("the toxiproxy server did not answer on its API port");
    }
    const std::string body =
        R"({"name":"redis","listen":"127.0.0.1:)" +
        std::to_string(listen_port_) + R"(","upstream":"127.0.0.1:)" +
        std::to_string(upstream_port) + R"(","enabled":true})";
    REQUIRE(http("POST", "/proxies", body) == 201);
  }
  ~Toxiproxy() { stop(); }
  Toxiproxy(const Toxiproxy &) = delete;
  Toxiproxy &operator=(const Toxiproxy &) = delete;

  std::string url() const {
    return "redis://127.0.0.1:" + std::to_string(listen_port_);
  }
  // `attributes` is a JSON object's text.
  void add(const std::string &name, const std::string &type,
           const std::string &stream, const std::string &attributes) {
    const std::string body =
        R"({"name":")" + name + R"(","type":")" + type + R"(","stream":")" +
        stream + R"(","toxicity":1.0,"attributes":)" + attributes + "}";
    REQUIRE(http("POST", "/proxies/redis/toxics", body) == 200);
  }
  void remove(const std::string &name) {
    REQUIRE(http("DELETE", "/proxies/redis/toxics/" + name, "") == 204);
  }

 private:
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  // One HTTP/1.1 request to the API; the status code, or -1.
  int http(const std::string &method, const std::string &path,
           const std::string &body) const {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(api_port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
      close(fd);
      return -1;
    }
    const std::string req = method + " " + path +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Content-Type: application/json\r\n"
                            "Connection: close\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(req.size())) {
      close(fd);
      return -1;
    }
    std::string reply;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
      reply.append(buf, static_cast<size_t>(n));
    close(fd);
    // "HTTP/1.1 200 OK"
    if (reply.size() < 12 || reply.compare(0, 5, "HTTP/") != 0) return -1;
    return std::atoi(reply.c_str() + reply.find(' ') + 1);
  }

  pid_t pid_ = -1;
  uint16_t api_port_ = 0, listen_port_ = 0;
};

constexpr int kTimeoutMs = 200;
// How far past its deadline a call may return on a loaded 2-core machine
// (and in the sanitizer builds).
constexpr int kSlackMs = 250;

}  // namespace

TEST_CASE(
    "network faults: a partition (the namespace's loopback down) and its "
    "healing",
    "[redis][faults][slow]") {
  Netns ns;
  RedisServer server;
  const std::string url = server.url();
  Lim open(url, RL_FAIL_OPEN, kTimeoutMs);
  Lim strict(url, RL_FAIL_ERROR, kTimeoutMs);
  REQUIRE(recovers_within(open, "p", 3000));
  REQUIRE(recovers_within(strict, "p", 3000));

  ns.loopback(false);
  // Partitioned: every call ends by its deadline; fail open answers allowed
  // with its source saying so, the strict limiter reports an error.
  int open_answers = 0, errors = 0;
  for (int i = 0; i < 10; ++i) {
    const Call a = timed_check(open, "p");
    CHECK(a.took_ms <= kTimeoutMs + kSlackMs);
    if (a.rc == RL_OK && a.d.allowed && a.d.source == RL_SOURCE_FAIL_OPEN)
      ++open_answers;
    const Call b = timed_check(strict, "p");
    CHECK(b.took_ms <= kTimeoutMs + kSlackMs);
    if (b.rc != RL_OK) ++errors;
  }
  CHECK(open_answers == 10);
  CHECK(errors == 10);

  ns.loopback(true);
  // Healed: both recover by themselves, and count exactly again.
  CHECK(recovers_within(open, "p", 10000));
  CHECK(recovers_within(strict, "p", 10000));
  check_exact_after_heal(url, strict, "p:exact");
  check_exact_after_heal(url, open, "p:exact-open");
}

TEST_CASE("network faults: 50 ms of latency with jitter, through toxiproxy",
          "[redis][faults][slow]") {
  RedisServer server;
  Toxiproxy proxy(server.port());
  const std::string url = proxy.url();
  Lim lim(url, RL_FAIL_OPEN, 500);
  REQUIRE(recovers_within(lim, "lat", 3000));
  proxy.add("lat", "latency", "downstream", R"({"latency":50,"jitter":20})");
  // Slower, never wrong: every reply comes from the store, in time.
  int from_store = 0;
  for (int i = 0; i < 20; ++i) {
    const Call c = timed_check(lim, "lat");
    CHECK(c.took_ms <= 500 + kSlackMs);
    if (c.rc == RL_OK && c.d.source == RL_SOURCE_STORE) ++from_store;
  }
  CHECK(from_store == 20);
  check_exact_after_heal(url, lim, "lat:exact");
  // Latency beyond the deadline: each call ends at its deadline, fail open.
  proxy.add("slow", "latency", "downstream", R"({"latency":1500,"jitter":0})");
  for (int i = 0; i < 5; ++i) {
    const Call c = timed_check(lim, "lat");
    CHECK(c.took_ms <= 500 + kSlackMs);
    CHECK(c.rc == RL_OK);
    CHECK(c.d.source == RL_SOURCE_FAIL_OPEN);
  }
  proxy.remove("slow");
  proxy.remove("lat");
  CHECK(recovers_within(lim, "lat", 10000));
  check_exact_after_heal(url, lim, "lat:exact2");
}

TEST_CASE(
    "network faults: a trickling connection and a black hole, through "
    "toxiproxy",
    "[redis][faults][slow]") {
  RedisServer server;
  Toxiproxy proxy(server.port());
  const std::string url = proxy.url();
  Lim lim(url, RL_FAIL_CLOSED, kTimeoutMs);
  REQUIRE(recovers_within(lim, "t", 3000));

  // Replies cut into 1-byte pieces, 5 ms apart: a reply of tens of bytes
  // takes longer than the deadline. Calls end by it, denied (fail closed).
  proxy.add("trickle", "slicer", "downstream",
            R"({"average_size":1,"size_variation":0,"delay":5000})");
  for (int i = 0; i < 5; ++i) {
    const Call c = timed_check(lim, "t");
    CHECK(c.took_ms <= kTimeoutMs + kSlackMs);
    CHECK(c.rc == RL_OK);
  }
  proxy.remove("trickle");
  CHECK(recovers_within(lim, "t", 10000));

  // A black hole: data goes in and nothing comes back (toxiproxy's
  // "timeout" toxic with no timeout), like lost packets.
  proxy.add("hole", "timeout", "upstream", R"({"timeout":0})");
  int closed = 0;
  for (int i = 0; i < 5; ++i) {
    const Call c = timed_check(lim, "t");
    CHECK(c.took_ms <= kTimeoutMs + kSlackMs);
    if (c.rc == RL_OK && !c.d.allowed && c.d.source == RL_SOURCE_FAIL_CLOSED)
      ++closed;
  }
  CHECK(closed == 5);
  proxy.remove("hole");
  CHECK(recovers_within(lim, "t", 10000));
  check_exact_after_heal(url, lim, "t:exact");
}
