// What the lone-wait spin buys and costs: sequential checks against one
// Redis with spin_us = 0 (never), 50 and 200 (the default), on the three
// paths a lone wait takes: a blocking rl_check (the caller spins), an
// awaited rl_check_async, one at a time (the I/O thread spins; Node's and
// Python's `await check()` with driver "thread"), and the same driven by
// the caller's own event loop (rl_loop_open: an epoll loop that turns with
// rl_loop_turn_idle, which spins, when it has nothing else to do; Node's
// and Python's default driver). Per figure: checks/s, p50/p99 latency, the
// process's CPU per call (every thread, spinning included), context
// switches per call (about 1 where the waiter slept, 0 where it caught the
// reply spinning). The spin
// values alternate within each round; medians of the rounds are printed.
//
//   tollgate-bench-spin [--json] [--label TEXT] redis://127.0.0.1:PORT
//                       [seconds per figure] [rounds]
//
// bench/spin.sh runs it on an idle machine and again beside CPU burners
// (docs/benchmarks.md, "The lone-wait spin"). It never fails on speed.
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "machine.hpp"
#include "tollgate.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kSpins[] = {-1, 50, 200};  // -1: rl_options' "never"
constexpr int kKeys = 10000;
constexpr double kWarmupSecs = 0.3;

struct Figure {
  double rate = 0, p50 = 0, p99 = 0, cpu = 0, cs = 0;
  long errors = 0;
};

double pct(std::vector<double> &v, int p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, v.size() * p / 100)];
}

using tollgate_bench::Usage;
using tollgate_bench::usage;

// One awaited async call at a time: the caller sleeps on a condition
// variable until the completion (run by the I/O thread) signals it.
struct Awaiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int status = 0;
};

void on_done(int status, const rl_decision *, const char *, void *u) {
  auto *a = static_cast<Awaiter *>(u);
  std::lock_guard<std::mutex> lock(a->mu);
  a->status = status;
  a->done = true;
  a->cv.notify_one();
}

class Bench {
 public:
  Bench(std::string url, double secs) : url_(std::move(url)), secs_(secs) {
    rl_policy_spec spec = RL_POLICY_SPEC_INIT;
    spec.limit = 1000000000;  // never denies: every call writes
    spec.period_ms = 3600 * 1000;
    if (rl_policy_create(&policy_, &spec) != RL_OK) std::abort();
    for (int i = 0; i < kKeys; ++i)
      keys_.push_back("spin:" + std::to_string(i));
  }
  ~Bench() { rl_policy_release(policy_); }
  Bench(const Bench &) = delete;
  Bench &operator=(const Bench &) = delete;

  enum Path { kBlocking, kAwaited, kEventLoop };

  bool run(int spin_us, Path path, Figure &out) {
    rl_options o = RL_OPTIONS_INIT;
    o.url = url_.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    o.timeout_ms = 2000;
    o.deny_cache = -1;
    o.spin_us = spin_us;
    rl_limiter *lim = nullptr;
    if (rl_create(&lim, &o) != RL_OK) {
      std::fprintf(stderr, "rl_create: %s\n", rl_last_error());
      return false;
    }
    // The event loop: an epoll of the caller's own, watching the
    // library's descriptor, as libuv and asyncio do.
    int fd = -1;
    if (path == kEventLoop) {
      ep_ = epoll_create1(EPOLL_CLOEXEC);
      epoll_event ev{};
      ev.events = EPOLLIN;
      if (ep_ < 0 || rl_loop_open(lim, &fd) != RL_OK ||
          epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        std::fprintf(stderr, "rl_loop_open: %s\n", rl_last_error());
        return false;
      }
    }
    std::vector<double> lat;
    Figure scratch;
    loop(lim, path, kWarmupSecs, lat, scratch);  // connected, settled
    lat.clear();
    Figure f;
    const Usage u0 = usage();
    const auto t0 = Clock::now();
    const long n = loop(lim, path, secs_, lat, f);
    const double elapsed =
        std::chrono::duration<double>(Clock::now() - t0).count();
    const Usage u1 = usage();
    rl_destroy(lim);
    if (ep_ >= 0) close(ep_);
    ep_ = -1;
    const double dn = static_cast<double>(std::max(n, 1L));
    f.rate = static_cast<double>(n) / elapsed;
    f.cpu = (u1.cpu_us - u0.cpu_us) / dn;
    f.cs = (u1.switches - u0.switches) / dn;
    f.p50 = pct(lat, 50);
    f.p99 = pct(lat, 99);
    out = f;
    return true;
  }

 private:
  // One check on the event loop: submitted, then an idle turn (the loop
  // has nothing else to do), then the loop waits for the descriptor or
  // the turn's timer and turns again, until the callback ran.
  int on_event_loop(rl_limiter *lim, const std::string &k) {
    Awaiter a;
    int rc =
        rl_check_async(lim, k.data(), k.size(), &policy_, 1, 1, on_done, &a);
    if (rc != RL_OK) return rc;
    int64_t next_us = -1;
    rc = rl_loop_turn_idle(lim, &next_us);
    while (rc == RL_OK && !a.done) {
      epoll_event ev;
      const int ms = next_us < 0 ? 1000
                                 : static_cast<int>(std::min<int64_t>(
                                       (next_us + 999) / 1000, 1000));
      epoll_wait(ep_, &ev, 1, ms);
      rc = rl_loop_turn_idle(lim, &next_us);
    }
    return rc == RL_OK ? a.status : rc;
  }

  long loop(rl_limiter *lim, Path path, double secs, std::vector<double> &lat,
            Figure &f) {
    const auto t0 = Clock::now();
    uint64_t x = 88172645463325252ULL;
    long n = 0;
    for (;;) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const std::string &k = keys_[x % kKeys];
      const auto s = Clock::now();
      int rc;
      if (path == kEventLoop) {
        rc = on_event_loop(lim, k);
      } else if (path == kAwaited) {
        Awaiter a;
        rc = rl_check_async(lim, k.data(), k.size(), &policy_, 1, 1, on_done,
                            &a);
        if (rc == RL_OK) {
          std::unique_lock<std::mutex> lock(a.mu);
          a.cv.wait(lock, [&] { return a.done; });
          rc = a.status;
        }
      } else {
        rl_decision d = RL_DECISION_INIT;
        rc = rl_check(lim, &d, k.data(), k.size(), &policy_, 1, 1);
      }
      const auto e = Clock::now();
      if (rc != RL_OK) {
        ++f.errors;
      } else {
        ++n;
        lat.push_back(std::chrono::duration<double, std::micro>(e - s).count());
      }
      if ((n & 15) == 0 &&
          std::chrono::duration<double>(e - t0).count() >= secs)
        return n;
    }
  }

  std::string url_;
  double secs_;
  int ep_ = -1;
  rl_policy *policy_ = nullptr;
  std::vector<std::string> keys_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char **argv) {
  bool json = false;
  std::string label = "idle";
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (std::strcmp(argv[i], "--label") == 0 && i + 1 < argc) {
      label = argv[++i];
    } else {
      break;
    }
  }
  if (i >= argc) {
    std::fprintf(stderr,
                 "usage: %s [--json] [--label TEXT] <redis url> [seconds per "
                 "figure] [rounds]\n",
                 argv[0]);
    return 2;
  }
  const std::string url = argv[i];
  const double secs = i + 1 < argc ? std::atof(argv[i + 1]) : 2.0;
  const int rounds = i + 2 < argc ? std::max(1, std::atoi(argv[i + 2])) : 3;
  Bench bench(url, secs);
  const double load_before = tollgate_bench::load_average();

  // [path][spin] -> one Figure per round
  constexpr int kPaths = 3;
  std::vector<Figure> figs[kPaths][3];
  for (int r = 0; r < rounds; ++r)
    for (int path = 0; path < kPaths; ++path)
      for (int s = 0; s < 3; ++s) {
        Figure f;
        if (!bench.run(kSpins[s], static_cast<Bench::Path>(path), f)) return 1;
        figs[path][s].push_back(f);
      }

  const char *paths[kPaths] = {"rl_check", "rl_check_async, awaited",
                               "rl_check_async, event loop"};
  long errors = 0;
  if (json) {
    std::printf(
        "{\"bench\": \"spin\", \"label\": \"%s\", \"load_before\": "
        "%.2f, \"load_after\": %.2f, \"rounds\": %d, \"rows\": [",
        label.c_str(), load_before, tollgate_bench::load_average(), rounds);
  } else {
    std::printf("%s (load %.2f before)\n%-26s %8s %9s %9s %8s %7s %6s\n",
                label.c_str(), load_before, "path", "spin_us", "checks/s",
                "p50 us", "p99 us", "CPU us", "cs");
  }
  bool first = true;
  for (int path = 0; path < kPaths; ++path)
    for (int s = 0; s < 3; ++s) {
      auto pick = [&](double Figure::*m) {
        std::vector<double> v;
        for (const Figure &f : figs[path][s]) v.push_back(f.*m);
        return median(v);
      };
      for (const Figure &f : figs[path][s]) errors += f.errors;
      const int spin = kSpins[s] < 0 ? 0 : kSpins[s];
      if (json) {
        std::printf(
            "%s\n  {\"path\": \"%s\", \"spin_us\": %d, \"rate\": %.1f, "
            "\"p50_us\": %.1f, \"p99_us\": %.1f, \"cpu_us\": %.2f, "
            "\"cs\": %.2f}",
            first ? "" : ",", paths[path], spin, pick(&Figure::rate),
            pick(&Figure::p50), pick(&Figure::p99), pick(&Figure::cpu),
            pick(&Figure::cs));
        first = false;
      } else {
        std::printf("%-26s %8d %9.0f %9.1f %8.1f %7.2f %6.2f\n", paths[path],
                    spin, pick(&Figure::rate), pick(&Figure::p50),
                    pick(&Figure::p99), pick(&Figure::cpu), pick(&Figure::cs));
      }
    }
  if (json)
    std::printf("\n], \"errors\": %ld}\n", errors);
  else
    std::printf("errors: %ld; load %.2f after\n", errors,
                tollgate_bench::load_average());
  return errors == 0 ? 0 : 1;
}
