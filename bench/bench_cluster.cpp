// The Redis store through the C ABI against a Redis Cluster and against a
// standalone server, measured alternately in one run so that the machine's
// noise hits both:
//
//   tollgate-bench-cluster [--json] <standalone url> <cluster url>
//                          [seconds] [rounds] [second cluster url]
//
// Each round measures, for every target in turn (the order rotates every
// round): sequential blocking rl_check on 1 thread (the default spin_us,
// then spin_us = -1: no polling for the reply, so the CPU is the call's own
// work rather than its wait), then rl_check_async with 64 in flight from 1
// thread. Keys are drawn at random (the same sequence for every target)
// from 100,000 distinct keys; the policy never denies (1e9 per hour), the
// deny cache is off, failures are errors (each one counted and printed).
// Every figure gets a limiter of its own, warmed up for 0.3 s with the same
// work before it is timed. A second cluster URL (the same cluster with
// other seeds, say) is measured as a third target.
//
// Client CPU per check is the process's CPU time (getrusage RUSAGE_SELF:
// every thread, the caller's and the I/O thread's) divided by the checks;
// "cs" is the process's context switches per check. If
// TOLLGATE_BENCH_STANDALONE_PIDS / TOLLGATE_BENCH_CLUSTER_PIDS list the
// redis-server PIDs (spaces or commas), their CPU per check is printed too
// (/proc/PID/stat; the cluster's replicas included). "busy" is the CPUs the
// whole machine used during the figure (/proc/stat), out of nproc; "other"
// the part of it used by neither this process nor the listed servers (other
// processes, the idle servers of the other target, interrupts); "steal"
// what the hypervisor took.
//
// bench/cluster.sh starts both servers and runs this. It never fails on
// speed; it exits 1 only if a limiter cannot be created.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "machine.hpp"
#include "tollgate.h"

namespace {

using tollgate_bench::load_average;

using Clock = std::chrono::steady_clock;

constexpr int kKeys = 100000;
constexpr int kInFlight = 64;
constexpr double kWarmupSecs = 0.3;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

using tollgate_bench::Usage;
using tollgate_bench::usage;

const double kTick = static_cast<double>(sysconf(_SC_CLK_TCK));

std::vector<int> parse_pids(const char *env) {
  std::vector<int> out;
  const char *s = std::getenv(env);
  if (!s) return out;
  while (*s) {
    char *end;
    const long v = std::strtol(s, &end, 10);
    if (end == s) {
      ++s;
      continue;
    }
    if (v > 0) out.push_back(static_cast<int>(v));
    s = end;
  }
  return out;
}

// utime + stime of the listed processes, in microseconds (-1: none listed).
double pids_cpu_us(const std::vector<int> &pids) {
  if (pids.empty()) return -1;
  double total = 0;
  for (int pid : pids) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = std::fopen(path, "r");
    if (!f) continue;
    char buf[1024];
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    // After the command name (which may hold spaces): state is field 3,
    // utime and stime are fields 14 and 15.
    const char *p = std::strrchr(buf, ')');
    if (!p) continue;
    unsigned long long ut = 0, st = 0;
    if (std::sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                    &ut, &st) == 2)
      total += (ut + st) / kTick * 1e6;
  }
  return total;
}

// The machine's busy and stolen time from /proc/stat, in ticks.
struct MachineTicks {
  double busy = 0, steal = 0;
};
MachineTicks machine_ticks() {
  MachineTicks m;
  if (FILE *f = std::fopen("/proc/stat", "r")) {
    unsigned long long v[8] = {};
    // user nice system idle iowait irq softirq steal
    if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
      m.busy = static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6]);
      m.steal = static_cast<double>(v[7]);
    }
    std::fclose(f);
  }
  return m;
}

// xorshift64: the same key sequence for every figure.
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint32_t next(uint32_t n) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s % n);
  }
};

struct Figure {
  double rate = 0;          // checks/s (answered without error)
  double p50 = 0, p99 = 0;  // us per check (async: submit to callback)
  double cpu = 0;           // client CPU us per check
  double cs = 0;            // client context switches per check
  double server = -1;       // redis-server CPU us per check (-1: no PIDs)
  double busy = 0;          // CPUs the whole machine used
  double other = -1;        // of those, not this process or its servers
  double steal = 0;         // CPUs stolen by the hypervisor
  long checks = 0, errors = 0, denied = 0;
  std::string first_error;
  uint64_t moved = 0, ask = 0, refreshes = 0;
};

enum Mode { kSeq = 0, kSeqNoSpin = 1, kAsync = 2, kModes = 3 };
const char *const kModeName[kModes] = {"rl_check, sequential",
                                       "rl_check, sequential, spin_us=-1",
                                       "rl_check_async, 64 in flight"};

struct Target {
  std::string url;
  std::string name;
  std::vector<int> pids;
};

struct Keys {
  std::vector<std::string> k;
  Keys() {
    k.reserve(kKeys);
    char buf[32];
    for (int i = 0; i < kKeys; ++i) {
      std::snprintf(buf, sizeof buf, "user:%06d", i);
      k.emplace_back(buf);
    }
  }
};

double pct(std::vector<double> &v, int p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, v.size() * p / 100)];
}

struct Window {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> free;  // slots not in flight
  struct Slot {
    Window *w;
    Clock::time_point t;
    int idx;
  } slots[kInFlight];
  std::vector<double> lat;
  bool record = false;
  long done = 0, errors = 0, denied = 0;
  std::string first_error;
};

void on_async(int status, const rl_decision *d, const char *, void *u) {
  auto *slot = static_cast<Window::Slot *>(u);
  Window *w = slot->w;
  const double us =
      std::chrono::duration<double, std::micro>(Clock::now() - slot->t).count();
  std::lock_guard<std::mutex> lock(w->mu);
  if (status != RL_OK) {
    ++w->errors;
    if (w->first_error.empty())
      w->first_error = "status " + std::to_string(status);
  } else {
    ++w->done;
    if (!d->allowed) ++w->denied;
    if (w->record) w->lat.push_back(us);
  }
  w->free.push_back(slot->idx);
  w->cv.notify_one();
}

class Bench {
 public:
  Bench(const Keys &keys, double secs) : keys_(keys), secs_(secs) {
    rl_policy_spec spec = RL_POLICY_SPEC_INIT;
    spec.limit = 1000000000;  // never denies: every call writes
    spec.period_ms = 3600 * 1000;
    if (rl_policy_create(&policy_, &spec) != RL_OK) std::abort();
  }
  ~Bench() { rl_policy_release(policy_); }
  Bench(const Bench &) = delete;
  Bench &operator=(const Bench &) = delete;

  // One figure on a limiter of its own; false if it cannot be created.
  bool run(const Target &target, Mode mode, Figure &out) {
    rl_options o = RL_OPTIONS_INIT;
    o.url = target.url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    o.timeout_ms = 2000;
    o.deny_cache = -1;
    if (mode == kSeqNoSpin) o.spin_us = -1;
    rl_limiter *lim = nullptr;
    if (rl_create(&lim, &o) != RL_OK) {
      std::fprintf(stderr, "rl_create(%s): %s\n", target.url.c_str(),
                   rl_last_error());
      return false;
    }
    int64_t rtt;
    if (rl_ping(lim, &rtt) != RL_OK)
      std::fprintf(stderr, "ping %s: %s\n", target.url.c_str(),
                   rl_last_error());
    // Warm-up: the same work, untimed (connections to every node, the
    // scripts loaded, the spin estimate settled).
    Figure scratch;
    if (mode == kAsync)
      windowed(lim, kWarmupSecs, nullptr, scratch);
    else
      sequential(lim, kWarmupSecs, nullptr, scratch);
    rl_health_info h0 = RL_HEALTH_INIT;
    rl_health(lim, &h0);

    Figure f;
    std::vector<double> lat;
    lat.reserve(1 << 20);
    const double s0 = pids_cpu_us(target.pids);
    const MachineTicks m0 = machine_ticks();
    const Usage u0 = usage();
    const auto t0 = Clock::now();
    if (mode == kAsync)
      windowed(lim, secs_, &lat, f);
    else
      sequential(lim, secs_, &lat, f);
    const double elapsed = seconds_since(t0);
    const Usage u1 = usage();
    const MachineTicks m1 = machine_ticks();
    const double s1 = pids_cpu_us(target.pids);

    rl_health_info h1 = RL_HEALTH_INIT;
    rl_health(lim, &h1);
    rl_destroy(lim);

    const double n = static_cast<double>(f.checks);
    f.rate = n / elapsed;
    f.cpu = n > 0 ? (u1.cpu_us - u0.cpu_us) / n : 0;
    f.cs = n > 0 ? (u1.switches - u0.switches) / n : 0;
    f.server = s0 >= 0 && n > 0 ? (s1 - s0) / n : -1;
    f.busy = (m1.busy - m0.busy) / kTick / elapsed;
    f.steal = (m1.steal - m0.steal) / kTick / elapsed;
    if (s0 >= 0)
      f.other = f.busy - (u1.cpu_us - u0.cpu_us + s1 - s0) / 1e6 / elapsed;
    f.p50 = pct(lat, 50);
    f.p99 = pct(lat, 99);
    f.moved = h1.moved - h0.moved;
    f.ask = h1.ask - h0.ask;
    f.refreshes = h1.slot_map_refreshes - h0.slot_map_refreshes;
    out = f;
    return true;
  }

 private:
  void sequential(rl_limiter *lim, double secs, std::vector<double> *lat,
                  Figure &f) {
    Rng rng;
    const auto t0 = Clock::now();
    for (long n = 1;; ++n) {
      const std::string &k = keys_.k[rng.next(kKeys)];
      rl_decision d = RL_DECISION_INIT;
      const auto s = Clock::now();
      const int rc = rl_check(lim, &d, k.data(), k.size(), &policy_, 1, 1);
      const auto e = Clock::now();
      if (rc != RL_OK) {
        ++f.errors;
        if (f.first_error.empty()) f.first_error = rl_last_error();
      } else {
        ++f.checks;
        if (!d.allowed) ++f.denied;
        if (lat)
          lat->push_back(
              std::chrono::duration<double, std::micro>(e - s).count());
      }
      if ((n & 15) == 0 &&
          std::chrono::duration<double>(e - t0).count() >= secs)
        break;
    }
  }

  void windowed(rl_limiter *lim, double secs, std::vector<double> *lat,
                Figure &f) {
    Window w;
    for (int i = 0; i < kInFlight; ++i) {
      w.slots[i] = {&w, {}, i};
      w.free.push_back(i);
    }
    if (lat) {
      w.lat.swap(*lat);
      w.record = true;
    }
    Rng rng;
    const auto t0 = Clock::now();
    for (long n = 0;; ++n) {
      if ((n & 15) == 0 && seconds_since(t0) >= secs) break;
      int idx;
      {
        std::unique_lock<std::mutex> lock(w.mu);
        w.cv.wait(lock, [&] { return !w.free.empty(); });
        idx = w.free.back();
        w.free.pop_back();
      }
      const std::string &k = keys_.k[rng.next(kKeys)];
      w.slots[idx].t = Clock::now();
      if (rl_check_async(lim, k.data(), k.size(), &policy_, 1, 1, on_async,
                         &w.slots[idx]) != RL_OK) {
        std::lock_guard<std::mutex> lock(w.mu);
        ++w.errors;
        if (w.first_error.empty()) w.first_error = rl_last_error();
        w.free.push_back(idx);
      }
    }
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait(lock, [&] { return w.free.size() == kInFlight; });
    }
    f.checks = w.done;
    f.errors = w.errors;
    f.denied = w.denied;
    f.first_error = w.first_error;
    if (lat) lat->swap(w.lat);
  }

  const Keys &keys_;
  const double secs_;
  rl_policy *policy_ = nullptr;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string span(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f-%.2fx", v.front(), v.back());
  return buf;
}

void header() {
  std::printf("  %-54s %8s %7s %7s %8s %6s %8s %5s %5s %5s %4s\n", "",
              "checks/s", "p50 us", "p99 us", "client", "client", "server",
              "busy", "other", "steal", "err");
  std::printf("  %-54s %8s %7s %7s %8s %6s %8s %5s %5s %5s %4s\n", "", "", "",
              "", "CPU us", "cs", "CPU us", "CPUs", "CPUs", "CPUs", "");
}

void row(const std::string &label, const Figure &f) {
  char server[16] = "-", other[16] = "-";
  if (f.server >= 0) std::snprintf(server, sizeof server, "%.2f", f.server);
  if (f.other > -1) std::snprintf(other, sizeof other, "%.2f", f.other);
  std::printf(
      "  %-54s %8.0f %7.1f %7.1f %8.2f %6.2f %8s %5.2f %5s %5.2f %4ld\n",
      label.c_str(), f.rate, f.p50, f.p99, f.cpu, f.cs, server, f.busy, other,
      f.steal, f.errors);
}

// The JSON of a run: the medians of every figure, and the client CPU
// ratios the issue's target is about (docs/benchmarks.md, "Redis
// Cluster"). Targets are "standalone" and "cluster_<n>_seeds"; modes
// "seq", "seq_nospin" and "async64".
void write_json(FILE *f, const std::vector<Target> &targets,
                const std::vector<std::vector<Figure>> &med, int rounds,
                double secs, long errors, double load_before,
                double load_after) {
  static const char *const kModeId[kModes] = {"seq", "seq_nospin", "async64"};
  const auto target_id = [&](size_t t) {
    std::string id = targets[t].name;
    for (char &c : id)
      if (c == ',' || c == ' ') c = '_';
    std::string out;
    for (char c : id)
      if (!(c == '_' && !out.empty() && out.back() == '_')) out += c;
    return out;
  };
  const char *replicas = std::getenv("TOLLGATE_BENCH_CLUSTER_REPLICAS");
  std::fprintf(
      f,
      "{\n  \"bench\": \"cluster\",\n  \"tollgate_version\": \"%s\",\n"
      "  \"machine\": {\"nproc\": %ld, \"cpu_model\": \"%s\", "
      "\"kernel\": \"%s\", \"loadavg_start\": %.2f, \"loadavg_end\": "
      "%.2f},\n"
      "  \"seconds_per_figure\": %.1f,\n  \"rounds\": %d,\n  \"keys\": %d,\n"
      "  \"primaries\": 3,\n  \"replicas_per_primary\": %d,\n"
      "  \"errors\": %ld,\n  \"rows\": [",
      rl_version_string(), sysconf(_SC_NPROCESSORS_ONLN),
      tollgate_bench::cpu_model().c_str(),
      tollgate_bench::kernel_release().c_str(), load_before, load_after, secs,
      rounds, kKeys, replicas ? std::atoi(replicas) : 1, errors);
  bool first = true;
  for (int m = 0; m < kModes; ++m)
    for (size_t t = 0; t < targets.size(); ++t) {
      const Figure &x = med[m][t];
      std::fprintf(f,
                   "%s\n    {\"id\": \"%s_%s\", \"target\": \"%s\", "
                   "\"mode\": \"%s\", \"name\": \"%s, %s\", "
                   "\"checks_per_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": "
                   "%.1f, \"cpu_us_per_check\": %.2f, "
                   "\"context_switches_per_check\": %.2f, "
                   "\"server_cpu_us_per_check\": %.2f}",
                   first ? "" : ",", target_id(t).c_str(), kModeId[m],
                   target_id(t).c_str(), kModeId[m], targets[t].name.c_str(),
                   kModeName[m], x.rate, x.p50, x.p99, x.cpu, x.cs, x.server);
      first = false;
    }
  std::fprintf(f, "\n  ],\n  \"ratios\": {");
  first = true;
  for (size_t t = 1; t < targets.size(); ++t) {
    for (int m = 0; m < kModes; ++m) {
      std::fprintf(f, "%s\n    \"%s_over_standalone_cpu_%s\": %.3f",
                   first ? "" : ",", target_id(t).c_str(), kModeId[m],
                   med[m][t].cpu / med[m][0].cpu);
      first = false;
    }
    std::fprintf(f, ",\n    \"%s_over_standalone_rate_async64\": %.3f",
                 target_id(t).c_str(),
                 med[kAsync][t].rate / med[kAsync][0].rate);
  }
  std::fprintf(f, "\n  }\n}\n");
}

}  // namespace

int main(int argc, char **argv) {
  // --json: the medians as JSON on standard output (bench/plot.py reads
  // them), and the running tables on standard error.
  bool json = false;
  std::vector<std::string> arg;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0)
      json = true;
    else
      arg.emplace_back(argv[i]);
  }
  if (arg.size() < 2) {
    std::fprintf(stderr,
                 "usage: %s [--json] <standalone url> <cluster url> [seconds "
                 "per figure] [rounds] [second cluster url]\n",
                 argv[0]);
    return 2;
  }
  FILE *json_out = nullptr;
  if (json) {
    json_out = fdopen(dup(STDOUT_FILENO), "w");
    if (!json_out || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
      std::perror("bench: --json");
      return 2;
    }
  }
  const double secs = arg.size() > 2 ? std::atof(arg[2].c_str()) : 2.0;
  const int rounds =
      arg.size() > 3 ? std::max(1, std::atoi(arg[3].c_str())) : 3;
  std::vector<Target> targets;
  targets.push_back(
      {arg[0], "standalone", parse_pids("TOLLGATE_BENCH_STANDALONE_PIDS")});
  std::vector<std::string> cluster_urls = {arg[1]};
  if (arg.size() > 4) cluster_urls.push_back(arg[4]);
  for (const std::string &url : cluster_urls) {
    const long seeds = 1 + std::count(url.begin(), url.end(), ',');
    targets.push_back({url, "cluster, " + std::to_string(seeds) + " seeds",
                       parse_pids("TOLLGATE_BENCH_CLUSTER_PIDS")});
  }
  const size_t nt = targets.size();
  const Keys keys;
  Bench bench(keys, secs);

  const double load_before = load_average();
  std::printf(
      "tollgate-bench-cluster (%s): %d rounds, %.1f s per figure, %d keys, "
      "%ld CPUs\n",
      rl_version_string(), rounds, secs, kKeys, sysconf(_SC_NPROCESSORS_ONLN));
  for (const Target &t : targets)
    std::printf("%-18s %s\n", (t.name + ":").c_str(), t.url.c_str());
  std::printf("load average (1 min) before: %.2f\n", load_before);
  std::fflush(stdout);

  // fig[round][mode][target]
  std::vector<std::vector<std::vector<Figure>>> fig(
      rounds,
      std::vector<std::vector<Figure>>(kModes, std::vector<Figure>(nt)));
  long total_errors = 0, total_denied = 0;
  uint64_t moved = 0, ask = 0;
  auto label = [&](size_t t, int m) {
    return targets[t].name + ", " + kModeName[m];
  };
  for (int r = 0; r < rounds; ++r) {
    std::printf("\nround %d (load %.2f)\n", r + 1, load_average());
    header();
    for (int m = 0; m < kModes; ++m) {
      // The targets in turn; the first one rotates every round.
      for (size_t k = 0; k < nt; ++k) {
        const size_t t = (k + static_cast<size_t>(r)) % nt;
        Figure &f = fig[r][m][t];
        if (!bench.run(targets[t], static_cast<Mode>(m), f)) return 1;
        total_errors += f.errors;
        total_denied += f.denied;
        moved += f.moved;
        ask += f.ask;
        row(label(t, m), f);
        if (f.errors)
          std::printf("    %ld errors, the first: %s\n", f.errors,
                      f.first_error.c_str());
        if (f.denied) std::printf("    %ld denied (expected 0)\n", f.denied);
        if (f.moved || f.ask || f.refreshes)
          std::printf("    MOVED %llu, ASK %llu, slot map refreshes %llu\n",
                      static_cast<unsigned long long>(f.moved),
                      static_cast<unsigned long long>(f.ask),
                      static_cast<unsigned long long>(f.refreshes));
        std::fflush(stdout);
      }
    }
    for (size_t t = 1; t < nt; ++t)
      std::printf(
          "  %s / standalone: client CPU per check %.2fx sequential, %.2fx "
          "spin_us=-1, %.2fx 64 in flight; 64-in-flight checks/s %.2fx\n",
          targets[t].name.c_str(), fig[r][kSeq][t].cpu / fig[r][kSeq][0].cpu,
          fig[r][kSeqNoSpin][t].cpu / fig[r][kSeqNoSpin][0].cpu,
          fig[r][kAsync][t].cpu / fig[r][kAsync][0].cpu,
          fig[r][kAsync][t].rate / fig[r][kAsync][0].rate);
  }

  // Medians over the rounds, figure by figure.
  std::vector<std::vector<Figure>> med(kModes, std::vector<Figure>(nt));
  for (int m = 0; m < kModes; ++m)
    for (size_t t = 0; t < nt; ++t) {
      auto col = [&](double Figure::*field) {
        std::vector<double> v;
        for (int r = 0; r < rounds; ++r) v.push_back(fig[r][m][t].*field);
        return median(v);
      };
      Figure &f = med[m][t];
      f.rate = col(&Figure::rate);
      f.p50 = col(&Figure::p50);
      f.p99 = col(&Figure::p99);
      f.cpu = col(&Figure::cpu);
      f.cs = col(&Figure::cs);
      f.server = col(&Figure::server);
      f.busy = col(&Figure::busy);
      f.steal = col(&Figure::steal);
      f.other = col(&Figure::other);
      for (int r = 0; r < rounds; ++r) f.errors += fig[r][m][t].errors;
    }
  std::printf("\nmedians of %d rounds (err: the sum)\n", rounds);
  header();
  for (int m = 0; m < kModes; ++m)
    for (size_t t = 0; t < nt; ++t) row(label(t, m), med[m][t]);

  for (size_t t = 1; t < nt; ++t) {
    std::printf("\n%s / standalone, client CPU per check (target <= 1.15x):\n",
                targets[t].name.c_str());
    for (int m = 0; m < kModes; ++m) {
      std::vector<double> per_round;
      for (int r = 0; r < rounds; ++r)
        per_round.push_back(fig[r][m][t].cpu / fig[r][m][0].cpu);
      const double ratio = med[m][t].cpu / med[m][0].cpu;
      std::printf("  %-34s %.2fx (medians), rounds %s: %s\n", kModeName[m],
                  ratio, span(per_round).c_str(),
                  ratio <= 1.15 ? "met" : "MISSED");
    }
    std::vector<double> per_round;
    for (int r = 0; r < rounds; ++r)
      per_round.push_back(fig[r][kAsync][t].rate / fig[r][kAsync][0].rate);
    std::printf(
        "  64 in flight, checks/s vs standalone: %.2fx (medians %.0f / %.0f), "
        "rounds %s\n",
        med[kAsync][t].rate / med[kAsync][0].rate, med[kAsync][t].rate,
        med[kAsync][0].rate, span(per_round).c_str());
  }
  std::printf("\nerrors: %ld; denied: %ld; cluster MOVED %llu, ASK %llu\n",
              total_errors, total_denied,
              static_cast<unsigned long long>(moved),
              static_cast<unsigned long long>(ask));
  const double load_after = load_average();
  std::printf("load average (1 min): %.2f before, %.2f after\n", load_before,
              load_after);
  if (json_out) {
    write_json(json_out, targets, med, rounds, secs, total_errors, load_before,
               load_after);
    std::fclose(json_out);
  }
  return 0;
}
