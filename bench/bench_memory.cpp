// tollgate-bench-memory: the memory store through the C ABI (rl_check).
//
// Prints one table (or JSON with --json): checks/s on one hot key and on
// 1,000,000 distinct keys with 1 and 2 threads, p50/p99 ns per check, RSS
// bytes per key, and the same figures for a baseline measured in the same
// process (std::unordered_map<std::string, int64_t> under one std::mutex
// doing the same lookup + GCRA update), so results can be read as ratios on
// a noisy machine. It is not a test: it never fails because of speed.
//
// It uses nothing but tollgate.h, except the A/B mode (--ab-rounds N),
// which calls the store directly: the current MemoryStore against the
// layout it replaced (bench/old_memory_store.cpp), alternately, N rounds on
// the same keys, medians reported. See docs/benchmarks.md and bench/NOTES.md.
//
//   tollgate-bench-memory [--quick] [--json] [--duration SEC] [--keys N]
//                         [--max-keys N] [--shards N] [--reps N] [--no-pin]
//                         [--ab-rounds N]

#include "tollgate.h"

// The A/B mode only: both stores, called directly.
#include "old_memory_store.hpp"
#include "tollgate/memory_store.hpp"
#include "tollgate/policy.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

// ---- Options --------------------------------------------------------------

struct Options {
  bool quick = false;
  bool json = false;
  bool pin = true;
  double duration = 1.5;    // seconds per throughput figure (all reps)
  int reps = 3;             // runs per figure; the median is reported
  uint64_t keys = 1000000;  // distinct keys
  uint64_t max_keys = 0;    // 0: the key count
  uint32_t shards = 0;      // 0: library default
  int ab_rounds = 0;        // > 0: old vs new store, that many rounds
  int metrics_rounds = 0;   // > 0: metrics on vs off, that many rounds
};

[[noreturn]] void usage(const char *argv0) {
  std::fprintf(
      stderr,
      "usage: %s [--quick] [--json] [--duration SEC] [--keys N] "
      "[--max-keys N] [--shards N] [--reps N] [--no-pin] [--ab-rounds N]\n"
      "       [--metrics-ab N]\n"
      "  --quick      smoke run: 0.2 s per figure, 100,000 keys\n"
      "  --json       print JSON instead of the table\n"
      "  --duration   seconds per throughput figure (default 1.5)\n"
      "  --reps       runs per figure, median reported (default 3)\n"
      "  --keys       distinct keys (default 1,000,000; max 8,999,999)\n"
      "  --max-keys   limiter max_keys (default: the key count)\n"
      "  --shards     limiter shards (default: library default)\n"
      "  --no-pin     do not pin worker threads to CPUs\n"
      "  --ab-rounds  old vs new memory store, N alternating rounds\n"
      "  --metrics-ab limiters with metrics on and off (rl_options.metrics),\n"
      "               and off again as a control,\n"
      "               N rounds, 1 thread, in this process\n",
      argv0);
  std::exit(2);
}

Options parse(int argc, char **argv) {
  Options o;
  bool keys_set = false, dur_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> const char * {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--quick")
      o.quick = true;
    else if (a == "--json")
      o.json = true;
    else if (a == "--no-pin")
      o.pin = false;
    else if (a == "--duration") {
      o.duration = std::atof(next());
      dur_set = true;
    } else if (a == "--keys") {
      o.keys = std::strtoull(next(), nullptr, 10);
      keys_set = true;
    } else if (a == "--max-keys")
      o.max_keys = std::strtoull(next(), nullptr, 10);
    else if (a == "--reps")
      o.reps = std::atoi(next());
    else if (a == "--shards")
      o.shards = static_cast<uint32_t>(std::strtoul(next(), nullptr, 10));
    else if (a == "--ab-rounds")
      o.ab_rounds = std::atoi(next());
    else if (a == "--metrics-ab")
      o.metrics_rounds = std::atoi(next());
    else
      usage(argv[0]);
  }
  if (o.quick) {
    if (!dur_set) o.duration = 0.2;
    if (!keys_set) o.keys = 100000;
  }
  if (o.keys < 2 || o.keys > 8999999 || o.duration <= 0 || o.reps < 1)
    usage(argv[0]);
  // max_keys is a store-wide bound: exactly `keys` holds them all.
  if (o.max_keys == 0) o.max_keys = o.keys;
  return o;
}

// ---- Small helpers --------------------------------------------------------

using Clock = std::chrono::steady_clock;

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void die_rc(const char *what, int rc) {
  std::fprintf(stderr, "tollgate-bench-memory: %s failed: %s (%s)\n", what,
               rl_strerror(rc), rl_last_error());
  std::exit(1);
}

[[noreturn]] void die(const char *what) {
  std::fprintf(stderr, "tollgate-bench-memory: %s\n", what);
  std::exit(1);
}

// VmRSS of this process in bytes, from /proc/self/status.
int64_t vm_rss_bytes() {
  FILE *f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) {
      kb = std::strtoll(line + 6, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

std::string cpu_model() {
  FILE *f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "unknown";
  char line[512];
  std::string model = "unknown";
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "model name", 10) == 0) {
      const char *p = std::strchr(line, ':');
      if (p) {
        model = p + 1;
        while (!model.empty() &&
               (model.front() == ' ' || model.front() == '\t'))
          model.erase(model.begin());
        while (!model.empty() && (model.back() == '\n' || model.back() == ' '))
          model.pop_back();
      }
      break;
    }
  }
  std::fclose(f);
  return model;
}

std::string clocksource() {
  FILE *f = std::fopen(
      "/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
  if (!f) return "unknown";
  char buf[64] = {0};
  if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
  std::fclose(f);
  std::string s = buf;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s.empty() ? "unknown" : s;
}

#if defined(__clang__)
constexpr const char *kCompiler = "clang " __clang_version__;
#elif defined(__GNUC__)
constexpr const char *kCompiler = "GCC " __VERSION__;
#else
constexpr const char *kCompiler = "unknown";
#endif

std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return std::string(u.sysname) + " " + u.release;
}

// The 1-minute load average: other work on the machine skews every figure.
double loadavg1() {
  FILE *f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double l = -1;
  if (std::fscanf(f, "%lf", &l) != 1) l = -1;
  std::fclose(f);
  return l;
}

// CPU time of the whole machine (from /proc/stat) and of this process (and
// its children), so the report can say how much CPU other processes took
// and how much the hypervisor stole while the benchmark ran.
struct CpuTimes {
  double busy_s = 0, steal_s = 0, self_s = 0;
};

CpuTimes cpu_times() {
  CpuTimes t;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (FILE *f = std::fopen("/proc/stat", "r")) {
    unsigned long long v[10] = {0};
    if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                    &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                    &v[8], &v[9]) >= 8) {
      // user nice system idle iowait irq softirq steal (guest is in user)
      t.busy_s = static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
      t.steal_s = static_cast<double>(v[7]) / hz;
    }
    std::fclose(f);
  }
  auto secs = [](const rusage &r) {
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  rusage self{}, kids{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  t.self_s = secs(self) + secs(kids);
  return t;
}

std::vector<int> usable_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

double percentile(std::vector<double> &v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

// ---- Policies -------------------------------------------------------------

// A policy handle for the whole run (never released: the process exits).
rl_policy *make_policy(const rl_policy_spec &spec) {
  rl_policy *p = nullptr;
  const int rc = rl_policy_create(&p, &spec);
  if (rc != RL_OK) die_rc("rl_policy_create", rc);
  return p;
}

// "Never denies": GCRA, 1e9 units per 1e12 ms (~31.7 years), burst 0 (= limit).
// The emission interval T = ceil(1e15 us / 1e9) = 1 s and tau = 1e9 s, so a
// key may take 1e9 units at once: nothing in this run is ever denied. Every
// allowed unit moves the key's TAT 1 s ahead, i.e. keeps it alive (a GCRA key
// expires at its TAT). capacity * T = 1e15 us <= 2^50: inside the bounds.
rl_policy *allow_policy() {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = RL_ALG_GCRA;
  p.limit = 1000000000;
  p.period_ms = 1000000000000;
  p.burst = 0;
  return make_policy(p);
}

// "Almost always denies": GCRA, 1 unit per hour. The warm-up call on each key
// is allowed (and keeps the key alive for an hour); every timed call is denied.
rl_policy *deny_policy() {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = RL_ALG_GCRA;
  p.limit = 1;
  p.period_ms = 3600000;
  p.burst = 0;
  return make_policy(p);
}

// Warm-up cost on the "allow" policy: 3600 units = TAT one hour ahead, so no
// key expires (and is silently re-created) between the timed phases.
constexpr int64_t kWarmCost = 3600;

rl_limiter *make_limiter(uint64_t max_keys, uint32_t shards,
                         bool metrics = true) {
  rl_options o = RL_OPTIONS_INIT;
  o.url = "memory://";
  o.max_keys = max_keys;
  o.shards = shards;
  o.metrics = metrics ? 1 : -1;
  rl_limiter *lim = nullptr;
  int rc = rl_create(&lim, &o);
  if (rc != RL_OK) die_rc("rl_create", rc);
  return lim;
}

rl_health_info health(rl_limiter *lim) {
  rl_health_info h = RL_HEALTH_INIT;
  int rc = rl_health(lim, &h);
  if (rc != RL_OK) die_rc("rl_health", rc);
  return h;
}

// One check; returns allowed (0/1). Errors abort the benchmark.
inline int check(rl_limiter *lim, const char *key, size_t len, rl_policy *pol,
                 int64_t cost) {
  rl_decision d = RL_DECISION_INIT;
  int rc = rl_check(lim, &d, key, len, &pol, 1, cost);
  if (__builtin_expect(rc != RL_OK, 0)) die_rc("rl_check", rc);
  return d.allowed;
}

// ---- Keys -----------------------------------------------------------------

// Keys "user:%u" with ids 1,000,000 .. 1,000,000 + N - 1: always 12 bytes.
// Stored in flat buffers with a 16-byte stride, formatted before any timing.
constexpr size_t kStride = 16;
constexpr size_t kKeyLen = 12;

struct KeyBuf {
  std::vector<char> bytes;
  size_t n = 0;
  const char *key(size_t i) const { return bytes.data() + i * kStride; }
};

void put_key(KeyBuf &kb, size_t slot, uint64_t id) {
  char tmp[32];
  int len = std::snprintf(tmp, sizeof tmp, "user:%" PRIu64, id + 1000000);
  if (len != static_cast<int>(kKeyLen)) die("key length is not 12");
  std::memcpy(kb.bytes.data() + slot * kStride, tmp, kKeyLen);
}

// Ids {id in [0, n) : id % parts == part}, in a shuffled order (fixed seed).
// Insertion uses part 0 of 1 unshuffled; the timed passes use shuffled
// orders, so the store cannot profit from allocation order = access order.
KeyBuf make_keys(uint64_t n, unsigned parts, unsigned part, bool shuffle,
                 uint32_t seed) {
  std::vector<uint64_t> ids;
  ids.reserve(n / parts + 1);
  for (uint64_t id = part; id < n; id += parts) ids.push_back(id);
  if (shuffle) {
    std::mt19937_64 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
  }
  KeyBuf kb;
  kb.n = ids.size();
  kb.bytes.assign(kb.n * kStride, 0);
  for (size_t i = 0; i < kb.n; ++i) put_key(kb, i, ids[i]);
  return kb;
}

// ---- Baseline: unordered_map + one mutex ----------------------------------

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// The same work per call as the limiter's single-policy GCRA check, written
// the obvious way: read the wall clock, lock, find-or-insert, GCRA update.
struct Baseline {
  std::unordered_map<std::string, int64_t, SvHash, std::equal_to<>> map;
  std::mutex mu;
  int64_t T = 1000000;             // us per unit (the allow policy)
  int64_t tau = 1000000000LL * T;  // burst * T

  __attribute__((noinline)) int check(const char *key, size_t len,
                                      int64_t cost) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
    std::string_view k(key, len);
    std::lock_guard<std::mutex> g(mu);
    auto it = map.find(k);
    if (it == map.end()) it = map.emplace(std::string(k), now).first;
    int64_t base = std::max(it->second, now);
    int64_t new_tat = base + cost * T;
    if (now < new_tat - tau) return 0;
    it->second = new_tat;
    return 1;
  }
};

// ---- Throughput -----------------------------------------------------------

struct Throughput {
  double ops_per_s = 0;
  uint64_t ops = 0;
  uint64_t allowed = 0;
  double cpu_ns = 0;  // CPU time of the workers while timed, all threads
};

// CPU time of the calling thread, in nanoseconds.
double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// Runs `threads` workers for `seconds`. body(t, pos, allowed) performs exactly
// kChunk operations for worker t and returns; the deadline is checked between
// chunks. Workers are pinned to distinct CPUs when possible.
constexpr int kChunk = 512;

Throughput run_threads(
    int threads, double seconds, const Options &opt,
    const std::function<void(int, size_t &, uint64_t &)> &body) {
  std::vector<int> cpus = usable_cpus();
  bool pin = opt.pin && static_cast<int>(cpus.size()) >= threads;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<int64_t> start{0};
  std::vector<uint64_t> ops(static_cast<size_t>(threads)), allowed(ops.size());
  std::vector<int64_t> end(ops.size());
  std::vector<double> cpu(ops.size());
  std::vector<std::thread> ws;
  for (int t = 0; t < threads; ++t) {
    ws.emplace_back([&, t] {
      if (pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[static_cast<size_t>(t)], &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      }
      size_t pos = 0;
      uint64_t n = 0, ok = 0;
      // A short untimed warm-up so caches and branch predictors settle.
      for (int i = 0; i < 8; ++i) body(t, pos, ok);
      ok = 0;
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      const int64_t deadline =
          start.load() + static_cast<int64_t>(seconds * 1e9);
      const double cpu0 = thread_cpu_ns();
      int64_t now;
      do {
        body(t, pos, ok);
        n += kChunk;
      } while ((now = now_ns()) < deadline);
      cpu[static_cast<size_t>(t)] = thread_cpu_ns() - cpu0;
      ops[static_cast<size_t>(t)] = n;
      allowed[static_cast<size_t>(t)] = ok;
      end[static_cast<size_t>(t)] = now;
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  start.store(now_ns());
  go.store(true, std::memory_order_release);
  for (auto &w : ws) w.join();
  Throughput r;
  int64_t last = 0;
  for (size_t t = 0; t < ops.size(); ++t) {
    r.ops += ops[t];
    r.allowed += allowed[t];
    r.cpu_ns += cpu[t];
    last = std::max(last, end[t]);
  }
  r.ops_per_s = static_cast<double>(r.ops) /
                (static_cast<double>(last - start.load()) / 1e9);
  return r;
}

// A throughput figure: the median of `reps` runs (and their spread).
struct Stat {
  double ops_per_s = 0, min = 0, max = 0;
  uint64_t ops = 0, allowed = 0;
  double cpu_ns_per_call = 0;  // of the median run
};

Stat summarize(std::vector<Throughput> v) {
  std::sort(v.begin(), v.end(), [](const Throughput &a, const Throughput &b) {
    return a.ops_per_s < b.ops_per_s;
  });
  Stat s;
  const Throughput &m = v[v.size() / 2];
  s.ops_per_s = m.ops_per_s;
  s.ops = m.ops;
  s.allowed = m.allowed;
  s.cpu_ns_per_call = m.ops ? m.cpu_ns / static_cast<double>(m.ops) : 0;
  s.min = v.front().ops_per_s;
  s.max = v.back().ops_per_s;
  return s;
}

// 1 thread and 2 threads, interleaved (1T, 2T, 1T, 2T, ...) so slow drift of
// a noisy machine hits both equally; each figure is the median of its runs.
template <class B1, class B2>
std::pair<Stat, Stat> measure_pair(const Options &opt, B1 &&one, B2 &&two) {
  std::vector<Throughput> r1, r2;
  const double each = opt.duration / opt.reps;
  for (int i = 0; i < opt.reps; ++i) {
    r1.push_back(run_threads(1, each, opt, one));
    r2.push_back(run_threads(2, each, opt, two));
  }
  return {summarize(r1), summarize(r2)};
}

// Dependent random loads over 64 MiB (a pointer chase): the machine's memory
// latency, the floor for any lookup whose table does not fit in cache.
double memory_latency_ns(bool quick) {
  const size_t line = 64 / sizeof(size_t);
  const size_t n = (quick ? 16u : 64u) * 1024 * 1024 / 64;
  std::vector<size_t> perm(n);
  for (size_t i = 0; i < n; ++i) perm[i] = i;
  std::mt19937_64 rng(7);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<size_t> next(n * line);
  for (size_t i = 0; i < n; ++i)
    next[perm[i] * line] = perm[(i + 1) % n] * line;
  size_t p = 0;
  for (size_t i = 0; i < n; ++i) p = next[p];
  const size_t iters = quick ? 500000 : 2000000;
  int64_t a = now_ns();
  for (size_t i = 0; i < iters; ++i) p = next[p];
  int64_t b = now_ns();
  asm volatile("" ::"r"(p));
  return static_cast<double>(b - a) / static_cast<double>(iters);
}

// ---- Latency --------------------------------------------------------------

struct Latency {
  double p50 = 0, p99 = 0;              // per call, timer overhead subtracted
  double raw_p50 = 0, raw_p99 = 0;      // per call, as measured
  double batch_p50 = 0, batch_p99 = 0;  // batches of 64, divided by 64
};

constexpr int kBatch = 64;

struct TimerOverhead {
  double min = 0, p50 = 0, p99 = 0;
};

TimerOverhead measure_timer_overhead(size_t samples) {
  std::vector<double> v(samples);
  for (size_t i = 0; i < samples; ++i) {
    int64_t a = now_ns();
    asm volatile("" ::: "memory");
    int64_t b = now_ns();
    v[i] = static_cast<double>(b - a);
  }
  TimerOverhead o;
  o.min = *std::min_element(v.begin(), v.end());
  o.p50 = percentile(v, 0.50);
  o.p99 = percentile(v, 0.99);
  return o;
}

// op(i) performs the i-th check. `samples` per-call samples, then
// samples / 64 batch samples (the same number of checks).
template <class Op>
Latency measure_latency(size_t samples, const TimerOverhead &ovh, Op &&op) {
  Latency L;
  std::vector<double> v(samples);
  size_t i = 0;
  for (size_t s = 0; s < samples; ++s) {
    int64_t a = now_ns();
    op(i++);
    int64_t b = now_ns();
    v[s] = static_cast<double>(b - a);
  }
  L.raw_p50 = percentile(v, 0.50);
  L.raw_p99 = percentile(v, 0.99);
  L.p50 = std::max(0.0, L.raw_p50 - ovh.p50);
  L.p99 = std::max(0.0, L.raw_p99 - ovh.p50);
  size_t batches = std::max<size_t>(samples / kBatch, 100);
  std::vector<double> b(batches);
  for (size_t s = 0; s < batches; ++s) {
    int64_t a = now_ns();
    for (int k = 0; k < kBatch; ++k) op(i++);
    int64_t e = now_ns();
    b[s] = static_cast<double>(e - a) / kBatch;
  }
  L.batch_p50 = percentile(b, 0.50);
  L.batch_p99 = percentile(b, 0.99);
  return L;
}

// ---- Memory (in a forked child, so nothing else is in the heap) -----------

struct MemResult {
  int64_t rss_before = 0, rss_after = 0;
  uint64_t keys = 0, live_keys = 0, evictions = 0;
  double bytes_per_key = 0;
  int64_t huge_bytes = 0;  // AnonHugePages (A/B mode only)
  int ok = 0;
};

// Key of exactly `len` bytes: "user:" + zero-padded id, formatted into a stack
// buffer (this is not timed; nothing is held outside the store).
inline size_t fixed_key(char *buf, size_t len, uint64_t id) {
  std::snprintf(buf, 64, "user:%0*" PRIu64, static_cast<int>(len - 5), id);
  return len;
}

MemResult mem_child(bool baseline, size_t key_len, uint64_t n,
                    uint64_t max_keys, uint32_t shards) {
  MemResult r;
  r.keys = n;
  char key[64];
  if (!baseline) {
    r.rss_before = vm_rss_bytes();
    rl_limiter *lim = make_limiter(max_keys, shards);
    rl_policy *pol = allow_policy();
    for (uint64_t id = 0; id < n; ++id)
      check(lim, key, fixed_key(key, key_len, id), pol, kWarmCost);
    r.rss_after = vm_rss_bytes();
    rl_health_info h = health(lim);
    r.live_keys = h.live_keys;
    r.evictions = h.evictions;
    // Not destroyed: the child exits right away.
  } else {
    r.rss_before = vm_rss_bytes();
    auto *b = new Baseline;
    for (uint64_t id = 0; id < n; ++id)
      b->check(key, fixed_key(key, key_len, id), kWarmCost);
    r.rss_after = vm_rss_bytes();
    r.live_keys = b->map.size();
  }
  r.bytes_per_key =
      static_cast<double>(r.rss_after - r.rss_before) / static_cast<double>(n);
  r.ok = 1;
  return r;
}

MemResult measure_memory(bool baseline, size_t key_len, uint64_t n,
                         uint64_t max_keys, uint32_t shards) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe failed");
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    close(fds[0]);
    MemResult r = mem_child(baseline, key_len, n, max_keys, shards);
    ssize_t w = write(fds[1], &r, sizeof r);
    _exit(w == static_cast<ssize_t>(sizeof r) ? 0 : 1);
  }
  close(fds[1]);
  MemResult r;
  ssize_t got = read(fds[0], &r, sizeof r);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != static_cast<ssize_t>(sizeof r) || !r.ok)
    die("memory child failed");
  return r;
}

// ---- A/B: the store before and after the one-cache-line layout ----------

// Both stores directly (no limiter, no policy cache): what differs between
// them is the store alone. Every check reads CLOCK_REALTIME as the limiter
// does, so per-check figures stay comparable with the rl_check ones.
inline int64_t now_us() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

tollgate::Policy ab_policy() {
  rl_policy *h = allow_policy();
  rl_policy_spec r = RL_POLICY_SPEC_INIT;
  if (rl_policy_get(h, &r) != RL_OK) die("rl_policy_get failed");
  rl_policy_release(h);
  tollgate::Policy p{};
  if (tollgate::make_policy(r.algorithm, r.limit, r.period_ms, r.burst, 0, p) !=
      tollgate::Errc::ok)
    die("make_policy failed");
  return p;
}

template <class Store>
inline int ab_check(Store &s, const tollgate::Policy &p, const char *key,
                    size_t len, int64_t cost) {
  tollgate::Outcome o;
  return s.check(std::string_view(key, len),
                 std::span<const tollgate::Policy>(&p, 1), now_us(), cost, &o);
}

struct AbFigures {
  double keys_t1 = 0, keys_t2 = 0, hot_t1 = 0, hot_t2 = 0;  // checks/s
  double keys_t1_cpu = 0, keys_t2_cpu = 0, hot_t1_cpu = 0, hot_t2_cpu = 0;
  double keys_p50 = 0, keys_p99 = 0, hot_p50 = 0, hot_p99 = 0;
  double keys_batch_p50 = 0;
  double bytes16 = 0, bytes24 = 0;
};

// AnonHugePages of this process: table memory on transparent huge pages.
int64_t anon_huge_bytes() {
  FILE *f = std::fopen("/proc/self/smaps_rollup", "r");
  if (!f) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "AnonHugePages:", 14) == 0) {
      kb = std::strtoll(line + 14, nullptr, 10);
      break;
    }
  std::fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

template <class Store, class Config>
MemResult ab_mem_child(size_t key_len, uint64_t n, uint32_t shards) {
  MemResult r;
  r.keys = n;
  char key[64];
  const tollgate::Policy p = ab_policy();
  r.rss_before = vm_rss_bytes();
  auto *s = new Store(Config{n, shards});
  for (uint64_t id = 0; id < n; ++id)
    ab_check(*s, p, key, fixed_key(key, key_len, id), kWarmCost);
  r.rss_after = vm_rss_bytes();
  r.huge_bytes = anon_huge_bytes();
  r.live_keys = s->stats().live_keys;
  r.evictions = s->stats().evictions;
  r.bytes_per_key =
      static_cast<double>(r.rss_after - r.rss_before) / static_cast<double>(n);
  r.ok = 1;
  return r;  // not destroyed: the child exits right away
}

template <class Store, class Config>
MemResult ab_memory(size_t key_len, uint64_t n, uint32_t shards) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe failed");
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    close(fds[0]);
    MemResult r = ab_mem_child<Store, Config>(key_len, n, shards);
    ssize_t w = write(fds[1], &r, sizeof r);
    _exit(w == static_cast<ssize_t>(sizeof r) ? 0 : 1);
  }
  close(fds[1]);
  MemResult r;
  ssize_t got = read(fds[0], &r, sizeof r);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != static_cast<ssize_t>(sizeof r) || !r.ok)
    die("memory child failed");
  return r;
}

struct AbKeys {
  KeyBuf ins, all, half[2];
};

template <class Store, class Config>
AbFigures ab_round(const Options &opt, const AbKeys &k,
                   const TimerOverhead &ovh, size_t samples) {
  AbFigures f;
  const tollgate::Policy p = ab_policy();
  const char *const hot = "user:hotkey1";
  const size_t hot_len = std::strlen(hot);
  {
    auto *s = new Store(Config{k.ins.n, opt.shards});
    for (size_t i = 0; i < k.ins.n; ++i)
      if (!ab_check(*s, p, k.ins.key(i), kKeyLen, kWarmCost))
        die("first call on a key denied");
    auto body = [&](int threads) {
      return [&, threads](int t, size_t &pos, uint64_t &ok) {
        const KeyBuf &kb = threads == 1 ? k.all : k.half[t];
        for (int c = 0; c < kChunk; ++c) {
          ok += ab_check(*s, p, kb.key(pos), kKeyLen, 1);
          if (++pos == kb.n) pos = 0;
        }
      };
    };
    const auto [t1, t2] = measure_pair(opt, body(1), body(2));
    f.keys_t1 = t1.ops_per_s;
    f.keys_t2 = t2.ops_per_s;
    f.keys_t1_cpu = t1.cpu_ns_per_call;
    f.keys_t2_cpu = t2.cpu_ns_per_call;
    size_t lpos = 0;
    const Latency L = measure_latency(samples, ovh, [&](size_t) {
      ab_check(*s, p, k.all.key(lpos), kKeyLen, 1);
      if (++lpos == k.all.n) lpos = 0;
    });
    f.keys_p50 = L.p50;
    f.keys_p99 = L.p99;
    f.keys_batch_p50 = L.batch_p50;
    if (s->stats().evictions != 0) die("A/B: evictions in the key run");
    delete s;
  }
  {
    auto *s = new Store(Config{k.ins.n, opt.shards});
    ab_check(*s, p, hot, hot_len, kWarmCost);
    auto body = [&](int, size_t &, uint64_t &ok) {
      for (int c = 0; c < kChunk; ++c) ok += ab_check(*s, p, hot, hot_len, 1);
    };
    const auto [t1, t2] = measure_pair(opt, body, body);
    f.hot_t1 = t1.ops_per_s;
    f.hot_t2 = t2.ops_per_s;
    f.hot_t1_cpu = t1.cpu_ns_per_call;
    f.hot_t2_cpu = t2.cpu_ns_per_call;
    const Latency L = measure_latency(
        samples, ovh, [&](size_t) { ab_check(*s, p, hot, hot_len, 1); });
    f.hot_p50 = L.p50;
    f.hot_p99 = L.p99;
    delete s;
  }
  return f;
}

double median_of(std::vector<AbFigures> &v, double AbFigures::*m) {
  std::vector<double> x;
  for (const AbFigures &f : v) x.push_back(f.*m);
  std::sort(x.begin(), x.end());
  return x[x.size() / 2];
}

int run_ab(const Options &opt) {
  const double load_start = loadavg1();
  const int64_t t0 = now_ns();
  std::fprintf(stderr, "A/B: %d rounds, %" PRIu64 " keys, loadavg %.2f\n",
               opt.ab_rounds, opt.keys, load_start);
  // Bytes per key first, in children forked before this process allocates
  // anything large (a child's allocator could otherwise reuse memory the
  // parent freed, already resident, and look cheaper than it is).
  std::vector<double> mem[2][2];  // [new][24-byte]
  double huge_new = 0;
  for (int r = 0; r < opt.ab_rounds; ++r)
    for (int side = 0; side < 2; ++side) {
      const bool is_new = (side == 0) == (r % 2 == 1);
      for (int l = 0; l < 2; ++l) {
        const size_t len = l ? 24 : 16;
        const MemResult m =
            is_new
                ? ab_memory<tollgate::MemoryStore, tollgate::MemoryStoreConfig>(
                      len, opt.keys, opt.shards)
                : ab_memory<tollgate_old::OldMemoryStore,
                            tollgate_old::OldMemoryStoreConfig>(len, opt.keys,
                                                                opt.shards);
        mem[is_new][l].push_back(m.bytes_per_key);
        if (is_new) huge_new = static_cast<double>(m.huge_bytes);
      }
    }
  AbKeys k;
  k.ins = make_keys(opt.keys, 1, 0, false, 0);
  k.all = make_keys(opt.keys, 1, 0, true, 1);
  k.half[0] = make_keys(opt.keys, 2, 0, true, 2);
  k.half[1] = make_keys(opt.keys, 2, 1, true, 3);
  const size_t samples =
      static_cast<size_t>(std::min<uint64_t>(opt.keys, 1000000));
  const TimerOverhead ovh = measure_timer_overhead(samples);
  const double dram_ns = memory_latency_ns(opt.quick);
  std::vector<AbFigures> olds, news;
  std::vector<double> loads;
  for (int r = 0; r < opt.ab_rounds; ++r) {
    // Alternate which store goes first, so drift hits both alike.
    for (int side = 0; side < 2; ++side) {
      const bool is_new = (side == 0) == (r % 2 == 1);
      std::fprintf(stderr, "  [%5.1f s] round %d, %s store (load %.2f)\n",
                   static_cast<double>(now_ns() - t0) / 1e9, r + 1,
                   is_new ? "new" : "old", loadavg1());
      if (is_new)
        news.push_back(
            ab_round<tollgate::MemoryStore, tollgate::MemoryStoreConfig>(
                opt, k, ovh, samples));
      else
        olds.push_back(
            ab_round<tollgate_old::OldMemoryStore,
                     tollgate_old::OldMemoryStoreConfig>(opt, k, ovh, samples));
      loads.push_back(loadavg1());
    }
  }
  for (size_t r = 0; r < olds.size(); ++r) {
    olds[r].bytes16 = mem[0][0][r];
    olds[r].bytes24 = mem[0][1][r];
    news[r].bytes16 = mem[1][0][r];
    news[r].bytes24 = mem[1][1][r];
  }
  const double load_end = loadavg1();
  std::printf(
      "tollgate-bench-memory --ab-rounds %d: store A/B, old layout (slab + "
      "index table) vs new (one cache line per key)\n"
      "%" PRIu64
      " keys of 12 bytes, one GCRA policy that never denies, shards %s, "
      "%.2f s per throughput figure (median of %d), medians of %d rounds\n"
      "random memory load %.0f ns; timer overhead p50 %.0f ns (subtracted); "
      "loadavg start %.2f, end %.2f\n\n",
      opt.ab_rounds, opt.keys,
      opt.shards ? std::to_string(opt.shards).c_str() : "default", opt.duration,
      opt.reps, opt.ab_rounds, dram_ns, ovh.p50, load_start, load_end);
  struct Line {
    const char *name;
    double AbFigures::*v;
    double AbFigures::*cpu;
    bool higher_better;
  };
  const Line lines[] = {
      {"1M keys, 1 thread, checks/s", &AbFigures::keys_t1,
       &AbFigures::keys_t1_cpu, true},
      {"1M keys, 2 threads, checks/s", &AbFigures::keys_t2,
       &AbFigures::keys_t2_cpu, true},
      {"hot key, 1 thread, checks/s", &AbFigures::hot_t1,
       &AbFigures::hot_t1_cpu, true},
      {"hot key, 2 threads, checks/s", &AbFigures::hot_t2,
       &AbFigures::hot_t2_cpu, true},
      {"1M keys, p50 ns per check", &AbFigures::keys_p50,
       &AbFigures::keys_t1_cpu, false},
      {"1M keys, p99 ns per check", &AbFigures::keys_p99,
       &AbFigures::keys_t1_cpu, false},
      {"1M keys, batch-of-64 p50 ns", &AbFigures::keys_batch_p50,
       &AbFigures::keys_t1_cpu, false},
      {"hot key, p50 ns per check", &AbFigures::hot_p50, &AbFigures::hot_t1_cpu,
       false},
      {"hot key, p99 ns per check", &AbFigures::hot_p99, &AbFigures::hot_t1_cpu,
       false},
      {"bytes per key, 16-byte keys", &AbFigures::bytes16, nullptr, false},
      {"bytes per key, 24-byte keys", &AbFigures::bytes24, nullptr, false},
  };
  std::printf("%-32s %12s %8s %12s %8s %9s\n", "", "old", "CPU ns", "new",
              "CPU ns", "new/old");
  for (const Line &l : lines) {
    const double o = median_of(olds, l.v), n = median_of(news, l.v);
    const bool rate = l.higher_better;
    char ob[32], nb[32], oc[16] = "-", nc[16] = "-";
    if (rate) {
      std::snprintf(ob, sizeof ob, "%.2f M", o / 1e6);
      std::snprintf(nb, sizeof nb, "%.2f M", n / 1e6);
    } else {
      std::snprintf(ob, sizeof ob, "%.1f", o);
      std::snprintf(nb, sizeof nb, "%.1f", n);
    }
    if (l.cpu) {
      std::snprintf(oc, sizeof oc, "%.1f", median_of(olds, l.cpu));
      std::snprintf(nc, sizeof nc, "%.1f", median_of(news, l.cpu));
    }
    std::printf("%-32s %12s %8s %12s %8s %8.2fx\n", l.name, ob, oc, nb, nc,
                o > 0 ? n / o : 0.0);
  }
  std::printf("\nper round (old | new): 1M-key p50 ns, 1T M checks/s\n");
  for (size_t r = 0; r < olds.size(); ++r)
    std::printf("  round %zu: %.0f, %.2f | %.0f, %.2f   (load after %.2f)\n",
                r + 1, olds[r].keys_p50, olds[r].keys_t1 / 1e6,
                news[r].keys_p50, news[r].keys_t1 / 1e6, loads[2 * r + 1]);
  std::printf(
      "CPU ns: workers' CPU time per check in the throughput run "
      "(beside a latency: of the 1-thread run)\n"
      "new store's tables on transparent huge pages: %.1f MiB\n",
      huge_new / 1048576.0);
  return 0;
}

// ---- Output ---------------------------------------------------------------

struct Row {
  const char *name;
  Stat t1, t2;
};

double mops(const Stat &t) {
  return t.ops_per_s / 1e6;
}
double frac_allowed(const Stat &t) {
  return t.ops ? static_cast<double>(t.allowed) / static_cast<double>(t.ops)
               : 0.0;
}

}  // namespace

// The cost of counting decisions per policy label (docs/metrics.md): two
// limiters, metrics on and off, measured in turns in this process (ABBA
// within each round, so drift hits both alike); 1 thread, a hot key and
// `keys` distinct keys, every check allowed.
int run_metrics_ab(const Options &opt) {
  const double load_start = loadavg1();
  const CpuTimes cpu_start = cpu_times();
  const int64_t wall_start = now_ns();
  const KeyBuf all = make_keys(opt.keys, 1, 0, true, 1);
  const char *const hot = "user:hotkey1";
  rl_policy *const allow = allow_policy();
  struct Side {
    rl_limiter *lim;
    std::vector<Throughput> hot, keys;
  } on{make_limiter(opt.max_keys, opt.shards, true), {}, {}},
      off{make_limiter(opt.max_keys, opt.shards, false), {}, {}},
      // A second limiter with metrics off: off2 / off is the noise floor
      // of the comparison (the same code measured twice).
      off2{make_limiter(opt.max_keys, opt.shards, false), {}, {}};
  for (Side *s : {&on, &off, &off2}) {
    check(s->lim, hot, kKeyLen, allow, kWarmCost);
    for (size_t i = 0; i < all.n; ++i)
      check(s->lim, all.key(i), kKeyLen, allow, kWarmCost);
  }
  auto body_hot = [&](rl_limiter *lim) {
    return [=](int, size_t &, uint64_t &ok) {
      for (int k = 0; k < kChunk; ++k) ok += check(lim, hot, kKeyLen, allow, 1);
    };
  };
  auto body_keys = [&](rl_limiter *lim) {
    return [=, &all](int, size_t &pos, uint64_t &ok) {
      for (int k = 0; k < kChunk; ++k) {
        ok += check(lim, all.key(pos), kKeyLen, allow, 1);
        if (++pos == all.n) pos = 0;
      }
    };
  };
  const double each = opt.duration;
  for (int r = 0; r < opt.metrics_rounds; ++r) {
    Side *order[6] = {&on, &off, &off2, &off2, &off, &on};
    if (r % 2) std::swap(order[0], order[1]), std::swap(order[4], order[5]);
    for (Side *s : order) {
      s->hot.push_back(run_threads(1, each / 2, opt, body_hot(s->lim)));
      s->keys.push_back(run_threads(1, each / 2, opt, body_keys(s->lim)));
    }
  }
  // Metrics on really counted: every check of the "on" limiter is there.
  rl_metrics *m = nullptr;
  if (rl_metrics_read(on.lim, &m) != RL_OK) die("rl_metrics_read");
  rl_metric series = RL_METRIC_INIT;
  double counted = 0;
  while (rl_metrics_next(m, &series) == RL_OK)
    if (std::string_view(series.name) == "tollgate_checks_total")
      counted += series.value;
  rl_metrics_free(m);
  if (counted < static_cast<double>(health(on.lim).checks))
    die("metrics on: decisions not counted");
  const double load_end = loadavg1();
  const CpuTimes cpu_end = cpu_times();
  const Stat hot_on = summarize(on.hot), hot_off = summarize(off.hot);
  const Stat keys_on = summarize(on.keys), keys_off = summarize(off.keys);
  const Stat hot_off2 = summarize(off2.hot), keys_off2 = summarize(off2.keys);
  const double cpus_s = static_cast<double>(now_ns() - wall_start) / 1e9 *
                        static_cast<double>(usable_cpus().size());
  std::printf(
      "tollgate-bench-memory --metrics-ab %d: metrics on vs off, 1 thread, "
      "%" PRIu64
      " keys, %.2f s per side per round\n"
      "load %.2f -> %.2f, other processes %.1f%% of the CPUs\n",
      opt.metrics_rounds, opt.keys, each, load_start, load_end,
      100.0 *
          std::max(0.0, (cpu_end.busy_s - cpu_start.busy_s) -
                            (cpu_end.self_s - cpu_start.self_s)) /
          std::max(1e-9, cpus_s));
  std::printf(
      "| figure | metrics on | metrics off | on / off |\n"
      "|---|---|---|---|\n");
  auto row = [](const char *name, const Stat &a, const Stat &b) {
    std::printf(
        "| %s, M checks/s (CPU ns per check) | %.2f (%.1f) | %.2f "
        "(%.1f) | %.3fx |\n",
        name, a.ops_per_s / 1e6, a.cpu_ns_per_call, b.ops_per_s / 1e6,
        b.cpu_ns_per_call, a.ops_per_s / b.ops_per_s);
  };
  row("hot key, allowed", hot_on, hot_off);
  row("distinct keys, allowed", keys_on, keys_off);
  std::printf(
      "control, metrics off twice (second / first): hot key %.3fx, "
      "distinct keys %.3fx\n",
      hot_off2.ops_per_s / hot_off.ops_per_s,
      keys_off2.ops_per_s / keys_off.ops_per_s);
  rl_destroy(on.lim);
  rl_destroy(off.lim);
  rl_destroy(off2.lim);
  rl_policy_release(allow);
  return 0;
}

int main(int argc, char **argv) {
  const Options opt = parse(argc, argv);
  if (opt.ab_rounds > 0) return run_ab(opt);
  if (opt.metrics_rounds > 0) return run_metrics_ab(opt);
  const uint64_t N = opt.keys;
  const size_t samples = static_cast<size_t>(std::min<uint64_t>(N, 1000000));
  const int64_t run_t0 = now_ns();
  auto log = [&](const char *what) {
    std::fprintf(stderr, "  [%5.1f s] %s\n",
                 static_cast<double>(now_ns() - run_t0) / 1e9, what);
  };

  if (rl_version_number() != RL_VERSION_NUMBER)
    die("header and library versions differ");
  const double load_start = loadavg1();
  const CpuTimes cpu_start = cpu_times();

  // -- Memory first, each in its own child process.
  log("memory: tollgate, 16- and 24-byte keys");
  const MemResult m16 = measure_memory(false, 16, N, opt.max_keys, opt.shards);
  const MemResult m24 = measure_memory(false, 24, N, opt.max_keys, opt.shards);
  log("memory: baseline");
  const MemResult b16 = measure_memory(true, 16, N, opt.max_keys, opt.shards);
  const MemResult b24 = measure_memory(true, 24, N, opt.max_keys, opt.shards);

  log("machine memory latency");
  const double dram_ns = memory_latency_ns(opt.quick);

  // -- Keys, formatted before anything is timed.
  log("formatting keys");
  const KeyBuf ins = make_keys(N, 1, 0, false, 0);
  const KeyBuf all = make_keys(N, 1, 0, true, 1);
  const KeyBuf half[2] = {make_keys(N, 2, 0, true, 2),
                          make_keys(N, 2, 1, true, 3)};
  const char *const hot = "user:hotkey1";  // 12 bytes, like the others
  const size_t hot_len = std::strlen(hot);

  rl_policy *const allow = allow_policy();
  rl_policy *const deny = deny_policy();
  const TimerOverhead ovh = measure_timer_overhead(samples);

  // Bodies: kChunk checks each.
  auto lim_hot = [&](rl_limiter *lim, rl_policy *pol) {
    return [=](int, size_t &, uint64_t &ok) {
      for (int k = 0; k < kChunk; ++k) ok += check(lim, hot, hot_len, pol, 1);
    };
  };
  auto lim_keys = [&](rl_limiter *lim, rl_policy *pol, int threads) {
    return [=, &all, &half](int t, size_t &pos, uint64_t &ok) {
      const KeyBuf &kb = threads == 1 ? all : half[t];
      for (int k = 0; k < kChunk; ++k) {
        ok += check(lim, kb.key(pos), kKeyLen, pol, 1);
        if (++pos == kb.n) pos = 0;
      }
    };
  };

  // -- Hot key: both threads on the same key.
  Row hot_allow{"hot key, allowed", {}, {}},
      hot_deny{"hot key, denied", {}, {}};
  Latency lat_hot_allow, lat_hot_deny;
  for (int variant = 0; variant < 2; ++variant) {
    const bool is_allow = variant == 0;
    log(is_allow ? "hot key, allowed" : "hot key, denied");
    rl_policy *pol = is_allow ? allow : deny;
    rl_limiter *lim = make_limiter(opt.max_keys, opt.shards);
    if (!check(lim, hot, hot_len, pol, is_allow ? kWarmCost : 1))
      die("first hot-key call denied");
    Row &row = is_allow ? hot_allow : hot_deny;
    std::tie(row.t1, row.t2) =
        measure_pair(opt, lim_hot(lim, pol), lim_hot(lim, pol));
    Latency L = measure_latency(
        samples, ovh, [&](size_t) { check(lim, hot, hot_len, pol, 1); });
    (is_allow ? lat_hot_allow : lat_hot_deny) = L;
    if (is_allow && health(lim).denied != 0)
      die("the allow policy denied a hot-key call");
    rl_destroy(lim);
  }

  // -- N distinct keys; 2 threads on disjoint halves.
  Row keys_allow{"1M keys, allowed", {}, {}},
      keys_deny{"1M keys, denied", {}, {}};
  Latency lat_keys_allow, lat_keys_deny;
  double insert_allow_ops = 0, insert_deny_ops = 0;
  rl_health_info h_allow{}, h_deny{};
  for (int variant = 0; variant < 2; ++variant) {
    const bool is_allow = variant == 0;
    log(is_allow ? "distinct keys, allowed" : "distinct keys, denied");
    rl_policy *pol = is_allow ? allow : deny;
    rl_limiter *lim = make_limiter(opt.max_keys, opt.shards);
    int64_t a = now_ns();
    for (size_t i = 0; i < ins.n; ++i)
      if (!check(lim, ins.key(i), kKeyLen, pol, is_allow ? kWarmCost : 1))
        die("first call on a key denied");
    const double ins_rate =
        static_cast<double>(ins.n) / (static_cast<double>(now_ns() - a) / 1e9);
    Row &row = is_allow ? keys_allow : keys_deny;
    std::tie(row.t1, row.t2) =
        measure_pair(opt, lim_keys(lim, pol, 1), lim_keys(lim, pol, 2));
    size_t lpos = 0;
    Latency L = measure_latency(samples, ovh, [&](size_t) {
      check(lim, all.key(lpos), kKeyLen, pol, 1);
      if (++lpos == all.n) lpos = 0;
    });
    const rl_health_info h = health(lim);
    if (is_allow) {
      lat_keys_allow = L;
      insert_allow_ops = ins_rate;
      h_allow = h;
      if (h.denied != 0) die("the allow policy denied a call");
    } else {
      lat_keys_deny = L;
      insert_deny_ops = ins_rate;
      h_deny = h;
    }
    rl_destroy(lim);
  }

  // -- Baseline, same process, same keys and access orders.
  Row base_hot{"baseline map+mutex, hot key", {}, {}};
  Row base_keys{"baseline map+mutex, 1M keys", {}, {}};
  Latency lat_base_hot, lat_base_keys;
  {
    log("baseline, hot key");
    Baseline b;
    b.check(hot, hot_len, kWarmCost);
    auto body = [&](int, size_t &, uint64_t &ok) {
      for (int k = 0; k < kChunk; ++k) ok += b.check(hot, hot_len, 1);
    };
    std::tie(base_hot.t1, base_hot.t2) = measure_pair(opt, body, body);
    lat_base_hot = measure_latency(samples, ovh,
                                   [&](size_t) { b.check(hot, hot_len, 1); });
  }
  {
    log("baseline, distinct keys");
    auto *b = new Baseline;
    b->map.reserve(N);
    for (size_t i = 0; i < ins.n; ++i) b->check(ins.key(i), kKeyLen, kWarmCost);
    auto body = [&](int threads) {
      return [&, threads](int t, size_t &pos, uint64_t &ok) {
        const KeyBuf &kb = threads == 1 ? all : half[t];
        for (int k = 0; k < kChunk; ++k) {
          ok += b->check(kb.key(pos), kKeyLen, 1);
          if (++pos == kb.n) pos = 0;
        }
      };
    };
    std::tie(base_keys.t1, base_keys.t2) = measure_pair(opt, body(1), body(2));
    size_t lpos = 0;
    lat_base_keys = measure_latency(samples, ovh, [&](size_t) {
      b->check(all.key(lpos), kKeyLen, 1);
      if (++lpos == all.n) lpos = 0;
    });
    delete b;
  }
  const double total_s = static_cast<double>(now_ns() - run_t0) / 1e9;
  const double load_end = loadavg1();
  const CpuTimes cpu_end = cpu_times();
  const double wall_cpus =
      total_s * static_cast<double>(std::max<size_t>(1, usable_cpus().size()));
  // Share of the machine's CPU time used by other processes / stolen.
  const double others_pct =
      std::max(0.0, 100.0 *
                        ((cpu_end.busy_s - cpu_start.busy_s) -
                         (cpu_end.self_s - cpu_start.self_s)) /
                        wall_cpus);
  const double steal_pct =
      100.0 * (cpu_end.steal_s - cpu_start.steal_s) / wall_cpus;
  log("done");

  // -- Report.
  const std::vector<int> cpus = usable_cpus();
  const bool pinned = opt.pin && cpus.size() >= 2;
  const unsigned ncpu = std::thread::hardware_concurrency();
  const std::string model = cpu_model();
  const std::string csrc = clocksource();
  const Row *rows[] = {&hot_allow, &hot_deny, &keys_allow,
                       &keys_deny, &base_hot, &base_keys};
  const struct {
    const char *name;
    const Latency *l;
  } lats[] = {{"hot key, allowed", &lat_hot_allow},
              {"hot key, denied", &lat_hot_deny},
              {"1M keys, allowed", &lat_keys_allow},
              {"1M keys, denied", &lat_keys_deny},
              {"baseline, hot key", &lat_base_hot},
              {"baseline, 1M keys", &lat_base_keys}};
  const struct {
    const char *name;
    size_t len;
    const MemResult *m;
  } mems[] = {{"tollgate", 16, &m16},
              {"tollgate", 24, &m24},
              {"baseline", 16, &b16},
              {"baseline", 24, &b24}};

  const double hot1 = mops(hot_allow.t1);
  const double p50k = std::max(lat_keys_allow.batch_p50, lat_keys_allow.p50);
  const double worst_mem = std::max(m16.bytes_per_key, m24.bytes_per_key);
  const double speedup = keys_allow.t2.ops_per_s / keys_allow.t1.ops_per_s;
  const bool ok_hot = hot1 >= 10, ok_p50 = p50k <= 150,
             ok_mem = worst_mem <= 128, ok_2x = speedup >= 1.8;

  if (opt.json) {
    auto b = [](bool v) { return v ? "true" : "false"; };
    std::printf("{\n  \"tollgate_version\": \"%s\",\n", rl_version_string());
    std::printf(
        "  \"machine\": {\"nproc\": %u, \"cpus_usable\": %zu, \"cpu_model\": "
        "\"%s\", \"kernel\": \"%s\", \"compiler\": \"%s\", "
        "\"clocksource\": \"%s\", \"memory_latency_ns\": %.1f, "
        "\"loadavg_start\": %.2f, \"loadavg_end\": %.2f, "
        "\"other_processes_cpu_pct\": %.1f, \"steal_pct\": %.1f},\n",
        ncpu, cpus.size(), model.c_str(), kernel_release().c_str(), kCompiler,
        csrc.c_str(), dram_ns, load_start, load_end, others_pct, steal_pct);
    std::printf("  \"config\": {\"keys\": %" PRIu64
                ", \"key_len\": %zu, \"max_keys\": %" PRIu64
                ", \"shards\": %u, \"duration_s\": %.3f, \"reps\": %d, "
                "\"quick\": %s, \"pinned\": %s},\n",
                N, kKeyLen, opt.max_keys, opt.shards, opt.duration, opt.reps,
                b(opt.quick), b(pinned));
    std::printf("  \"throughput_checks_per_s\": [\n");
    for (size_t i = 0; i < std::size(rows); ++i) {
      const Row &r = *rows[i];
      std::printf(
          "    {\"name\": \"%s\", \"t1\": %.0f, \"t1_min\": %.0f, \"t1_max\": "
          "%.0f, \"t2\": %.0f, "
          "\"t2_min\": %.0f, \"t2_max\": %.0f, \"t2_over_t1\": %.3f, "
          "\"t1_allowed_fraction\": %.6f, \"t1_cpu_ns_per_call\": %.1f, "
          "\"t2_cpu_ns_per_call\": %.1f}%s\n",
          r.name, r.t1.ops_per_s, r.t1.min, r.t1.max, r.t2.ops_per_s, r.t2.min,
          r.t2.max, r.t2.ops_per_s / r.t1.ops_per_s, frac_allowed(r.t1),
          r.t1.cpu_ns_per_call, r.t2.cpu_ns_per_call,
          i + 1 < std::size(rows) ? "," : "");
    }
    std::printf(
        "  ],\n  \"tollgate_over_baseline\": {\"hot_key_t1\": %.3f, "
        "\"hot_key_t2\": %.3f, \"keys_t1\": %.3f, \"keys_t2\": %.3f},\n",
        hot_allow.t1.ops_per_s / base_hot.t1.ops_per_s,
        hot_allow.t2.ops_per_s / base_hot.t2.ops_per_s,
        keys_allow.t1.ops_per_s / base_keys.t1.ops_per_s,
        keys_allow.t2.ops_per_s / base_keys.t2.ops_per_s);
    std::printf(
        "  \"insert_checks_per_s\": {\"allowed\": %.0f, \"denied\": "
        "%.0f},\n",
        insert_allow_ops, insert_deny_ops);
    std::printf(
        "  \"timer_overhead_ns\": {\"min\": %.1f, \"p50\": %.1f, \"p99\": "
        "%.1f},\n",
        ovh.min, ovh.p50, ovh.p99);
    std::printf("  \"latency_ns\": [\n");
    for (size_t i = 0; i < std::size(lats); ++i) {
      const Latency &l = *lats[i].l;
      std::printf(
          "    {\"name\": \"%s\", \"p50\": %.1f, \"p99\": %.1f, \"raw_p50\": "
          "%.1f, \"raw_p99\": %.1f, "
          "\"batch64_p50\": %.1f, \"batch64_p99\": %.1f}%s\n",
          lats[i].name, l.p50, l.p99, l.raw_p50, l.raw_p99, l.batch_p50,
          l.batch_p99, i + 1 < std::size(lats) ? "," : "");
    }
    std::printf("  ],\n  \"memory\": [\n");
    for (size_t i = 0; i < std::size(mems); ++i) {
      const MemResult &m = *mems[i].m;
      std::printf("    {\"name\": \"%s\", \"key_len\": %zu, \"keys\": %" PRIu64
                  ", \"live_keys\": %" PRIu64 ", \"evictions\": %" PRIu64
                  ", \"rss_before\": %" PRId64 ", \"rss_after\": %" PRId64
                  ", \"bytes_per_key\": %.1f}%s\n",
                  mems[i].name, mems[i].len, m.keys, m.live_keys, m.evictions,
                  m.rss_before, m.rss_after, m.bytes_per_key,
                  i + 1 < std::size(mems) ? "," : "");
    }
    std::printf("  ],\n  \"store\": {\"live_keys_allow\": %" PRIu64
                ", \"evictions_allow\": %" PRIu64
                ", \"live_keys_deny\": %" PRIu64
                ", \"evictions_deny\": %" PRIu64 "},\n",
                h_allow.live_keys, h_allow.evictions, h_deny.live_keys,
                h_deny.evictions);
    std::printf(
        "  \"targets\": {\"hot_key_10M\": %s, \"p50_150ns_1M_keys\": %s, "
        "\"bytes_per_key_128\": %s, "
        "\"two_thread_speedup_1_8\": %s},\n",
        b(ok_hot), b(ok_p50), b(ok_mem), b(ok_2x));
    std::printf("  \"total_s\": %.1f\n}\n", total_s);
    return 0;
  }

  std::printf(
      "tollgate-bench-memory  (tollgate %s, memory store via rl_check, one "
      "GCRA policy)\n",
      rl_version_string());
  std::printf(
      "machine: nproc %u (%zu usable), %s, clocksource %s, random memory "
      "load %.0f ns\n"
      "noise:   during the run other processes used %.1f%% and the "
      "hypervisor stole %.1f%% of the CPUs (loadavg %.2f -> %.2f)\n",
      ncpu, cpus.size(), model.c_str(), csrc.c_str(), dram_ns, others_pct,
      steal_pct, load_start, load_end);
  std::printf("config:  %" PRIu64
              " distinct keys \"user:%%u\" (%zu bytes), max_keys %" PRIu64
              ", shards %s, %.1f s per throughput figure (median of %d), "
              "threads %s%s\n",
              N, kKeyLen, opt.max_keys,
              opt.shards ? std::to_string(opt.shards).c_str() : "default",
              opt.duration, opt.reps, pinned ? "pinned" : "not pinned",
              opt.quick ? ", QUICK" : "");
  std::printf(
      "store after the distinct-key runs: allowed variant %" PRIu64
      " live keys, %" PRIu64 " evictions; denied variant %" PRIu64
      " live keys, %" PRIu64 " evictions%s\n",
      h_allow.live_keys, h_allow.evictions, h_deny.live_keys, h_deny.evictions,
      (h_allow.evictions || h_deny.evictions) ? "  <-- WARNING: evictions"
                                              : "");
  if (others_pct > 5 || steal_pct > 5)
    std::printf(
        "NOTE: the machine was busy (over 5%% of its CPU time went "
        "elsewhere); with 2 CPUs the 2-thread figures are then unreliable\n");
  std::printf("(\"1M keys\" below means %" PRIu64 " keys)\n\n", N);

  std::printf(
      "Throughput, M checks/s (median; min-max)  1 thread              2 "
      "threads             2T/1T  allowed\n");
  for (const Row *r : rows)
    std::printf(
        "  %-30s %7.2f (%5.2f-%5.2f)  %7.2f (%5.2f-%5.2f)  %5.2fx %6.1f%%\n",
        r->name, mops(r->t1), r->t1.min / 1e6, r->t1.max / 1e6, mops(r->t2),
        r->t2.min / 1e6, r->t2.max / 1e6, r->t2.ops_per_s / r->t1.ops_per_s,
        100.0 * frac_allowed(r->t1));
  std::printf("  tollgate / baseline, hot key   %7.2fx                %7.2fx\n",
              hot_allow.t1.ops_per_s / base_hot.t1.ops_per_s,
              hot_allow.t2.ops_per_s / base_hot.t2.ops_per_s);
  std::printf("  tollgate / baseline, 1M keys   %7.2fx                %7.2fx\n",
              keys_allow.t1.ops_per_s / base_keys.t1.ops_per_s,
              keys_allow.t2.ops_per_s / base_keys.t2.ops_per_s);
  std::printf(
      "  first check of every key (insert), 1 thread: %.2f M/s (allowed "
      "policy), %.2f M/s (denied policy)\n\n",
      insert_allow_ops / 1e6, insert_deny_ops / 1e6);

  std::printf(
      "Latency, ns per check, 1 thread   per call: p50    p99 | raw p50  raw "
      "p99 | batch of 64: p50    p99\n");
  for (const auto &lr : lats)
    std::printf("  %-30s %13.0f %6.0f | %7.0f  %7.0f | %17.1f %6.1f\n", lr.name,
                lr.l->p50, lr.l->p99, lr.l->raw_p50, lr.l->raw_p99,
                lr.l->batch_p50, lr.l->batch_p99);
  std::printf(
      "  timer overhead (two steady_clock reads): min %.0f, p50 %.0f, p99 %.0f "
      "ns\n"
      "  per call = raw - %.0f (timer p50); batch of 64 = one timer pair "
      "around 64 checks, / 64\n\n",
      ovh.min, ovh.p50, ovh.p99, ovh.p50);

  std::printf("Memory, VmRSS(after %" PRIu64
              " keys) - VmRSS(before rl_create) / keys   bytes/key  live keys  "
              "evictions\n",
              N);
  for (const auto &m : mems)
    std::printf("  %-8s %2zu-byte keys %44.1f  %9" PRIu64 "  %9" PRIu64 "\n",
                m.name, m.len, m.m->bytes_per_key, m.m->live_keys,
                m.m->evictions);
  std::printf(
      "  (baseline = std::unordered_map<std::string, int64_t>, no per-key "
      "expiry or LRU)\n\n");

  auto verdict = [](bool ok) { return ok ? "met" : "NOT met"; };
  std::printf("Targets\n");
  std::printf(
      "  >= 10 M checks/s, 1 thread, hot key       %7.2f M/s                   "
      "   %s\n",
      hot1, verdict(ok_hot));
  std::printf(
      "  p50 <= 150 ns at 1M keys (allowed)        %7.0f ns per call, %.0f ns "
      "batch64  %s\n",
      lat_keys_allow.p50, lat_keys_allow.batch_p50, verdict(ok_p50));
  std::printf(
      "  <= 128 bytes/key, keys up to 24 bytes     %7.1f B (worst of 16/24)    "
      "     %s\n",
      worst_mem, verdict(ok_mem));
  std::printf(
      "  ~2x with 2 threads, distinct keys (>=1.8x) %6.2fx                     "
      "      %s\n",
      speedup, verdict(ok_2x));
  std::printf("total run time %.1f s\n", total_s);
  return 0;
}
