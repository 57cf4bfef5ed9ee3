// The Redis store through the C ABI, against baselines measured in the same
// process on the same Redis: a plain blocking client (one command per round
// trip, like most client libraries) and a hand-pipelined raw client.
//
//   tollgate-bench-redis [--json] redis://127.0.0.1:PORT [seconds per figure]
//
// (tests/with_redis.sh starts a throwaway redis-server: see
// docs/benchmarks.md.) It prints a table, or JSON with --json (the input of
// bench/plot.py); it never fails on speed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "machine.hpp"
#include "tollgate.h"

namespace {

using tollgate_bench::cpu_model;
using tollgate_bench::kernel_release;
using tollgate_bench::load_average;
using tollgate_bench::machine_cpu;
using tollgate_bench::MachineCpu;
using tollgate_bench::Noise;
using tollgate_bench::noise_between;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A minimal blocking RESP client for the baselines: it only needs to count
// complete top-level replies of known shapes (simple, integer or array of
// integers), so it scans lines.
struct RawClient {
  int fd = -1;
  std::string buf;
  explicit RawClient(uint16_t port) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
      std::perror("connect");
      std::exit(1);
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawClient() { close(fd); }
  void send_all(const std::string &s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd, s.data() + off, s.size() - off, 0);
      if (n <= 0) std::exit(1);
      off += static_cast<size_t>(n);
    }
  }
  // Reads until `replies` complete replies arrived. A reply is a line
  // starting with + - : or an array header "*N" followed by N such lines.
  void read_replies(int replies) {
    size_t pos = 0;
    int done = 0, pending_elems = 0;
    for (;;) {
      size_t eol;
      while ((eol = buf.find("\r\n", pos)) != std::string::npos) {
        const char t = buf[pos];
        if (t == '*') {
          pending_elems = std::atoi(buf.c_str() + pos + 1);
          if (pending_elems == 0) ++done;
        } else if (pending_elems > 0) {
          if (--pending_elems == 0) ++done;
        } else {
          ++done;
        }
        pos = eol + 2;
        if (done == replies) {
          buf.erase(0, pos);
          return;
        }
      }
      char tmp[65536];
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) std::exit(1);
      buf.append(tmp, static_cast<size_t>(n));
    }
  }
};

// redis-server's own CPU time (INFO cpu: used_cpu_user + used_cpu_sys), in
// microseconds, read over a connection of its own so no figure pays for it.
double server_cpu_us(RawClient &c) {
  const std::string cmd = "*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n";
  c.send_all(cmd);
  // The reply is one bulk string: "$<len>\r\n<len bytes>\r\n".
  size_t eol;
  while ((eol = c.buf.find("\r\n")) == std::string::npos ||
         c.buf.size() <
             eol + 2 + std::strtoul(c.buf.c_str() + 1, nullptr, 10) + 2) {
    char tmp[4096];
    const ssize_t n = ::recv(c.fd, tmp, sizeof tmp, 0);
    if (n <= 0) std::exit(1);
    c.buf.append(tmp, static_cast<size_t>(n));
  }
  const size_t len = std::strtoul(c.buf.c_str() + 1, nullptr, 10);
  const std::string body = c.buf.substr(eol + 2, len);
  c.buf.erase(0, eol + 2 + len + 2);
  double total = 0;
  for (const char *field : {"used_cpu_sys:", "used_cpu_user:"}) {
    const size_t at = body.find(field);
    if (at != std::string::npos)
      total += std::atof(body.c_str() + at + std::strlen(field));
  }
  return total * 1e6;
}

std::string resp(const std::vector<std::string> &args) {
  std::string s;
  s.append("*").append(std::to_string(args.size())).append("\r\n");
  for (const std::string &a : args) {
    s.append("$").append(std::to_string(a.size())).append("\r\n");
    s.append(a).append("\r\n");
  }
  return s;
}

// The script tollgate runs, loaded by the baseline itself (same work per
// call on the server).
const char *kGcraLike =
    "local t = redis.call('TIME') local now = t[1] * 1000000 + t[2] "
    "local tat = tonumber(redis.call('GET', KEYS[1]) or now) "
    "if tat < now then tat = now end "
    "local new = tat + 36000 "
    "redis.call('SET', KEYS[1], string.format('%d', new), 'PX', 60000) "
    "return {1, 1, 99, 36000, 0}";

// CPU time of the whole process (every thread: the caller's and the
// transport's I/O thread), in microseconds.
double cpu_us() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
         ru.ru_stime.tv_usec;
}

struct Stats {
  double per_sec;
  double p50_us, p99_us;
  double cpu_us;             // process CPU per check
  double server_cpu_us = 0;  // redis-server CPU per check
};

Stats percentiles(std::vector<double> &us, double secs, double cpu) {
  std::sort(us.begin(), us.end());
  return {us.size() / secs, us[us.size() / 2], us[us.size() * 99 / 100],
          cpu / us.size()};
}

uint16_t port_of(const std::string &url) {
  const size_t colon = url.rfind(':');
  return static_cast<uint16_t>(std::atoi(url.c_str() + colon + 1));
}

}  // namespace

int main(int argc, char **argv) {
  bool json = false, metrics = true;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0)
      json = true;
    else if (std::strcmp(argv[i], "--no-metrics") == 0)
      metrics = false;  // rl_options.metrics off: the A/B of docs/metrics.md
    else
      pos.emplace_back(argv[i]);
  }
  if (pos.empty()) {
    std::fprintf(stderr,
                 "usage: %s [--json] [--no-metrics] redis://127.0.0.1:PORT "
                 "[seconds]\n",
                 argv[0]);
    return 2;
  }
  const std::string url = pos[0];
  const double secs = pos.size() > 1 ? std::atof(pos[1].c_str()) : 2.0;
  RawClient info(port_of(url));
  double s0 = 0;  // redis-server CPU at the start of a figure
  rl_options o = RL_OPTIONS_INIT;
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  o.timeout_ms = 2000;
  o.deny_cache = -1;
  o.metrics = metrics ? 1 : -1;
  rl_limiter *lim = nullptr;
  if (rl_create(&lim, &o) != RL_OK) {
    std::fprintf(stderr, "rl_create: %s\n", rl_last_error());
    return 1;
  }
  rl_policy_spec spec = RL_POLICY_SPEC_INIT;
  spec.limit = 1000000000;  // never denies: every call writes, the worst case
  spec.period_ms = 3600 * 1000;
  rl_policy *p = nullptr;  // lives until the process exits
  if (rl_policy_create(&p, &spec) != RL_OK) {
    std::fprintf(stderr, "rl_policy_create: %s\n", rl_last_error());
    return 1;
  }
  int64_t rtt;
  if (rl_ping(lim, &rtt) != RL_OK) {
    std::fprintf(stderr, "ping: %s\n", rl_last_error());
    return 1;
  }
  char key[32];
  int key_n = 0;
  // Each figure starts a probe: this process's CPU, redis-server's and the
  // machine's, so that what other processes took meanwhile is known.
  MachineCpu m0;
  double c0 = 0;
  const auto start_probe = [&] {
    s0 = server_cpu_us(info);
    c0 = cpu_us();
    m0 = machine_cpu();
  };
  // ... and ends it: the CPU this process and redis-server used, each read
  // once, and what other processes took.
  struct Spent {
    double own_us, server_us;
    Noise noise;
  };
  const auto end_probe = [&] {
    Spent out{cpu_us() - c0, server_cpu_us(info) - s0, {}};
    out.noise = noise_between(m0, machine_cpu(), out.own_us, out.server_us);
    return out;
  };

  const double load_before = load_average();
  // 1. Sequential, one call after another.
  std::vector<double> lat;
  start_probe();
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    key_n = std::snprintf(key, sizeof key, "user:%d",
                          static_cast<int>(lat.size() % 1000));
    rl_decision d = RL_DECISION_INIT;
    const auto s = Clock::now();
    if (rl_check(lim, &d, key, static_cast<size_t>(key_n), &p, 1, 1) != RL_OK)
      return 1;
    lat.push_back(seconds_since(s) * 1e6);
  }
  const double seq_wall = seconds_since(t0);
  const Spent seq_spent = end_probe();
  Stats seq = percentiles(lat, seq_wall, seq_spent.own_us);
  seq.server_cpu_us = seq_spent.server_us / lat.size();
  const Noise seq_noise = seq_spent.noise;

  // 2. 64 checks in flight from one thread (rl_check_async).
  struct Window {
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;
    long done = 0, errors = 0;
  } w;
  auto cb = [](int status, const rl_decision *, const char *, void *u) {
    auto *win = static_cast<Window *>(u);
    std::lock_guard<std::mutex> lock(win->mu);
    --win->in_flight;
    ++win->done;
    if (status != RL_OK) ++win->errors;
    win->cv.notify_one();
  };
  start_probe();
  t0 = Clock::now();
  long issued = 0;
  while (seconds_since(t0) < secs) {
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait(lock, [&] { return w.in_flight < 64; });
      ++w.in_flight;
    }
    key_n = std::snprintf(key, sizeof key, "user:%ld", issued++ % 1000);
    if (rl_check_async(lim, key, static_cast<size_t>(key_n), &p, 1, 1, cb,
                       &w) != RL_OK)
      return 1;
  }
  {
    std::unique_lock<std::mutex> lock(w.mu);
    w.cv.wait(lock, [&] { return w.in_flight == 0; });
  }
  const double async_rate = w.done / seconds_since(t0);
  const Spent async_spent = end_probe();
  const double async_cpu = async_spent.own_us / w.done;
  const double async_server = async_spent.server_us / w.done;
  const Noise async_noise = async_spent.noise;

  // 3. 8 threads calling the blocking rl_check at once (auto-pipelining).
  std::atomic<long> threaded{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  start_probe();
  t0 = Clock::now();
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      char k[32];
      long n = 0;
      while (!stop) {
        const int kn = std::snprintf(k, sizeof k, "t%d:%ld", t, n++ % 100);
        rl_decision d = RL_DECISION_INIT;
        if (rl_check(lim, &d, k, static_cast<size_t>(kn), &p, 1, 1) == RL_OK)
          ++threaded;
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  stop = true;
  for (auto &th : threads) th.join();
  const double threaded_rate = threaded / seconds_since(t0);
  const Spent threaded_spent = end_probe();
  const double threaded_cpu = threaded_spent.own_us / threaded.load();
  const double threaded_server = threaded_spent.server_us / threaded.load();
  const Noise threaded_noise = threaded_spent.noise;

  // Baselines on the same server: a blocking client, one EVALSHA per round
  // trip, and the same client pipelining 64 at a time.
  RawClient raw(port_of(url));
  raw.send_all(resp({"SCRIPT", "LOAD", kGcraLike}));
  // The reply is "$40\r\n<sha1>\r\n".
  while (raw.buf.size() < 47) {
    char tmp[256];
    const ssize_t n = ::recv(raw.fd, tmp, sizeof tmp, 0);
    if (n <= 0) return 1;
    raw.buf.append(tmp, static_cast<size_t>(n));
  }
  const std::string sha = raw.buf.substr(raw.buf.find("\r\n") + 2, 40);
  raw.buf.clear();
  lat.clear();
  start_probe();
  t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    const std::string cmd = resp(
        {"EVALSHA", sha, "1", "base:" + std::to_string(lat.size() % 1000)});
    const auto s = Clock::now();
    raw.send_all(cmd);
    raw.read_replies(1);
    lat.push_back(seconds_since(s) * 1e6);
  }
  const double raw_seq_wall = seconds_since(t0);
  const Spent raw_seq_spent = end_probe();
  Stats raw_seq = percentiles(lat, raw_seq_wall, raw_seq_spent.own_us);
  raw_seq.server_cpu_us = raw_seq_spent.server_us / lat.size();
  const Noise raw_seq_noise = raw_seq_spent.noise;
  start_probe();
  t0 = Clock::now();
  long raw_done = 0;
  while (seconds_since(t0) < secs) {
    std::string batch;
    for (int i = 0; i < 64; ++i)
      batch += resp({"EVALSHA", sha, "1",
                     "base:" + std::to_string((raw_done + i) % 1000)});
    raw.send_all(batch);
    raw.read_replies(64);
    raw_done += 64;
  }
  const double raw_pipe_rate = raw_done / seconds_since(t0);
  const Spent raw_pipe_spent = end_probe();
  const double raw_pipe_cpu = raw_pipe_spent.own_us / raw_done;
  const double raw_pipe_server = raw_pipe_spent.server_us / raw_done;
  const Noise raw_pipe_noise = raw_pipe_spent.noise;
  const double load_after = load_average();

  // Every figure, with what other processes took while it ran.
  struct JRow {
    const char *id, *name;
    double rate, p50, p99, cpu, server;
    Noise noise;
  };
  const JRow rows[] = {
      {"seq", "tollgate rl_check, sequential, 1 thread", seq.per_sec,
       seq.p50_us, seq.p99_us, seq.cpu_us, seq.server_cpu_us, seq_noise},
      {"raw_seq", "baseline: blocking client, EVALSHA per round trip",
       raw_seq.per_sec, raw_seq.p50_us, raw_seq.p99_us, raw_seq.cpu_us,
       raw_seq.server_cpu_us, raw_seq_noise},
      {"async64", "tollgate rl_check_async, 64 in flight, 1 thread", async_rate,
       -1, -1, async_cpu, async_server, async_noise},
      {"threads8", "tollgate rl_check, 8 threads (auto-pipelined)",
       threaded_rate, -1, -1, threaded_cpu, threaded_server, threaded_noise},
      {"raw_pipe64", "baseline: raw client pipelining 64 EVALSHA",
       raw_pipe_rate, -1, -1, raw_pipe_cpu, raw_pipe_server, raw_pipe_noise},
  };
  bool noisy = false;
  for (const JRow &r : rows) noisy = noisy || r.noise.noisy();

  rl_health_info h = RL_HEALTH_INIT;
  rl_health(lim, &h);
  if (json) {
    std::printf("{\n  \"bench\": \"redis\",\n  \"tollgate_version\": \"%s\",\n",
                rl_version_string());
    std::printf("  \"redis_version\": \"%s\",\n", h.server_version);
    std::printf(
        "  \"machine\": {\"nproc\": %u, \"cpu_model\": \"%s\", \"kernel\": "
        "\"%s\", \"loadavg_start\": %.2f, \"loadavg_end\": %.2f},\n",
        std::thread::hardware_concurrency(), cpu_model().c_str(),
        kernel_release().c_str(), load_before, load_after);
    std::printf("  \"seconds_per_figure\": %.2f,\n  \"errors\": %ld,\n", secs,
                w.errors);
    std::printf("  \"rows\": [\n");
    for (size_t i = 0; i < std::size(rows); ++i) {
      const JRow &r = rows[i];
      std::printf(
          "    {\"id\": \"%s\", \"name\": \"%s\", \"checks_per_s\": %.0f", r.id,
          r.name, r.rate);
      if (r.p50 >= 0)
        std::printf(", \"p50_us\": %.1f, \"p99_us\": %.1f", r.p50, r.p99);
      std::printf(
          ", \"cpu_us_per_check\": %.2f, \"server_cpu_us_per_check\": "
          "%.2f, \"noise_other\": %.3f, \"noise_steal\": %.3f, "
          "\"noisy\": %s}%s\n",
          r.cpu, r.server, r.noise.other, r.noise.steal,
          r.noise.noisy() ? "true" : "false",
          i + 1 < std::size(rows) ? "," : "");
    }
    std::printf(
        "  ],\n  \"ratios\": {\"seq_p50_over_blocking\": %.3f, "
        "\"async64_over_seq\": %.3f, \"async64_over_raw_pipe64\": %.3f}\n}\n",
        seq.p50_us / raw_seq.p50_us, async_rate / seq.per_sec,
        async_rate / raw_pipe_rate);
    rl_destroy(lim);
    return 0;
  }
  std::printf("tollgate-bench-redis (%s, Redis %s, %.1f s per figure)\n",
              rl_version_string(), h.server_version, secs);
  std::printf("load average (1 min): %.2f before, %.2f after\n", load_before,
              load_after);
  std::printf("%-52s %10s %8s %8s %11s %8s %8s\n", "", "checks/s", "p50 us",
              "p99 us", "CPU us/chk", "other %", "steal %");
  for (const JRow &r : rows) {
    if (r.p50 >= 0)
      std::printf("%-52s %10.0f %8.1f %8.1f %11.2f", r.name, r.rate, r.p50,
                  r.p99, r.cpu);
    else
      std::printf("%-52s %10.0f %8s %8s %11.2f", r.name, r.rate, "", "", r.cpu);
    std::printf(" %8.1f %8.1f%s\n", 100 * r.noise.other, 100 * r.noise.steal,
                r.noise.noisy() ? "  noisy" : "");
  }
  if (noisy)
    std::printf(
        "NOTE: other processes or the hypervisor took more than 5%% of the "
        "CPU during a figure marked noisy: do not claim it\n");
  std::printf(
      "ratios: sequential p50 tollgate/baseline %.2fx; 64 in flight "
      "vs sequential %.1fx; async vs raw pipelined %.2fx\n",
      seq.p50_us / raw_seq.p50_us, async_rate / seq.per_sec,
      async_rate / raw_pipe_rate);
  std::printf("errors: %ld async\n", w.errors);
  rl_destroy(lim);
  return 0;
}
