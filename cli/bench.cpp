// `tollgate bench` (docs/cli.md, "bench"): the headline Redis benchmark
// against the store of --url, with a plain pipelined client as baseline.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <tollgate.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli.hpp"

namespace tollgate_cli {
namespace {

// ---- bench ----------------------------------------------------------------
//
// The headline Redis benchmark (docs/benchmarks.md) against the store of
// --url: tollgate's rl_check one call after another and rl_check_async with
// --in-flight calls outstanding, then a plain pipelined client doing the
// naive limiter by hand (INCR key + PEXPIRE key 60000 per check) on the same
// store, one check at a time and --in-flight at once. Every figure has the
// process's CPU time per check beside it (getrusage: user + sys, every
// thread, tollgate's I/O thread included).

using Clock = std::chrono::steady_clock;

// Never denies, so every check runs the script and writes: the worst case.
constexpr const char *kBenchPolicy = "1000000000/h";
constexpr int64_t kMaxBenchKeys = 1000000;
constexpr int64_t kMaxInFlight = 4096;
constexpr double kMaxDuration = 600;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU time of the whole process so far, in microseconds.
double process_cpu_us() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

// /proc/loadavg's 1, 5 and 15 minute averages; false if unreadable.
bool load_average(double (&l)[3]) {
  FILE *f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return false;
  const bool ok = std::fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) == 3;
  std::fclose(f);
  return ok;
}

// One figure: `checks` done in `seconds` of wall time and `cpu_us` of
// process CPU time; latencies only for one-at-a-time figures.
struct Figure {
  uint64_t checks = 0;
  double seconds = 0, cpu_us = 0;
  double p50_us = -1, p99_us = -1;
  double per_sec() const { return checks / seconds; }
  double cpu_per_check() const { return cpu_us / checks; }
};

// Runs `one(i)` (one check, false on failure) for `duration` seconds, one
// call after another, timing each.
template <class F>
bool run_sequential(double duration, F &&one, Figure &fig) {
  std::vector<uint32_t> lat_ns;
  lat_ns.reserve(1 << 16);
  const double c0 = process_cpu_us();
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(duration));
  auto s = t0;
  do {
    if (!one(lat_ns.size())) return false;
    const auto e = Clock::now();
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(e - s).count();
    lat_ns.push_back(static_cast<uint32_t>(std::min<int64_t>(ns, UINT32_MAX)));
    s = e;
  } while (s < end);
  fig.seconds = seconds_between(t0, s);
  fig.cpu_us = process_cpu_us() - c0;
  fig.checks = lat_ns.size();
  std::sort(lat_ns.begin(), lat_ns.end());
  fig.p50_us = lat_ns[lat_ns.size() / 2] / 1e3;
  fig.p99_us =
      lat_ns[std::min(lat_ns.size() - 1, lat_ns.size() * 99 / 100)] / 1e3;
  return true;
}

// The bench's user keys: "bench:<8 random hex digits>:<i>", i < --keys.
struct BenchKeys {
  std::string sub;  // "bench:1a2b3c4d:"
  uint64_t n = 0;
  char buf[64];
  // The key of check i, in buf.
  std::string_view at(uint64_t i) {
    const int len =
        std::snprintf(buf, sizeof buf, "%s%" PRIu64, sub.c_str(), i % n);
    return {buf, static_cast<size_t>(len)};
  }
};

// ---- the baseline: a plain RESP client on a TCP socket

// What the baseline connects to: a redis://[user:password@]host[:port][/db]
// URL with the overrides the limiter got (--prefix, -o).
struct PlainTarget {
  std::string host, port = "6379", db, user, password, prefix = "tollgate:";
};

std::string percent_decode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      out += static_cast<char>(
          std::strtol(std::string(in.substr(i + 1, 2)).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

// The last -o NAME=VALUE for `name`, or nullptr.
const std::string *option_value(const Args &a, const char *name) {
  const std::string *v = nullptr;
  for (const auto &[n, value] : a.options)
    if (n == name) v = &value;
  return v;
}

// Fills `t` for a plain redis:// store; otherwise returns why the baseline
// cannot run there. The URL was already accepted by rl_create, so this
// reads it leniently.
std::string plain_target(const Args &a, PlainTarget &t) {
  const std::string *url_opt = option_value(a, "url");
  const std::string url = url_opt ? *url_opt : a.url;
  if (url.rfind("redis://", 0) != 0) {
    const char *kind = url.find("+cluster://") != std::string::npos
                           ? "a cluster"
                       : url.find("+sentinel://") != std::string::npos
                           ? "found through Sentinel"
                       : url.rfind("rediss://", 0) == 0 ? "TLS (rediss://)"
                       : url.rfind("unix://", 0) == 0   ? "a unix socket"
                                                        : "not redis://";
    return std::string(
               "the plain client speaks RESP over TCP to one "
               "redis://host:port; this store is ") +
           kind;
  }
  std::string_view rest = std::string_view(url).substr(8), query;
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  const size_t slash = rest.find('/');
  std::string_view auth = rest.substr(0, slash);
  if (slash != std::string_view::npos) t.db = rest.substr(slash + 1);
  if (const size_t at = auth.rfind('@'); at != std::string_view::npos) {
    const std::string_view info = auth.substr(0, at);
    auth = auth.substr(at + 1);
    const size_t colon = info.find(':');
    if (colon == std::string_view::npos) {
      t.password = percent_decode(info);  // redis://secret@host
    } else {
      t.user = percent_decode(info.substr(0, colon));
      t.password = percent_decode(info.substr(colon + 1));
    }
  }
  std::string_view port;
  if (!auth.empty() && auth[0] == '[') {
    const size_t close = auth.find(']');
    t.host = auth.substr(1, close - 1);
    if (close + 1 < auth.size()) port = auth.substr(close + 2);
  } else {
    const size_t colon = auth.find(':');
    t.host = auth.substr(0, colon);
    if (colon != std::string_view::npos) port = auth.substr(colon + 1);
  }
  if (!port.empty()) t.port = port;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.rfind("prefix=", 0) == 0)
      t.prefix = percent_decode(pair.substr(7));
    query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
  }
  // The limiter's fields override the URL's, -o after --prefix.
  if (!a.prefix.empty()) t.prefix = a.prefix;
  if (const std::string *v = option_value(a, "key_prefix")) t.prefix = *v;
  if (const std::string *v = option_value(a, "username")) t.user = *v;
  if (const std::string *v = option_value(a, "password")) t.password = *v;
  return "";
}

void append_command(std::string &out,
                    std::initializer_list<std::string_view> args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const std::string_view arg : args) {
    out += '$';
    out += std::to_string(arg.size());
    out += "\r\n";
    out += arg;
    out += "\r\n";
  }
}

// Blocking, with the limiter's timeout on every send and receive. It only
// reads the replies its commands get: simple strings, errors, integers.
struct PlainClient {
  int fd = -1;
  std::string in;
  size_t pos = 0;
  std::string error;  // what failed; never holds a secret
  ~PlainClient() {
    if (fd >= 0) close(fd);
  }

  bool open(const PlainTarget &t, int timeout_ms) {
    addrinfo hints{}, *list = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    const int rc = getaddrinfo(t.host.c_str(), t.port.c_str(), &hints, &list);
    if (rc != 0) {
      error = "cannot resolve " + t.host + ": " + gai_strerror(rc);
      return false;
    }
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    error = "cannot connect to " + t.host + ":" + t.port;
    for (addrinfo *ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
      fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      // SO_SNDTIMEO bounds connect() too.
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        error += std::string(": ") + std::strerror(errno);
        close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(list);
    if (fd < 0) return false;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    error.clear();
    std::string cmd;
    if (!t.password.empty()) {
      if (t.user.empty())
        append_command(cmd, {"AUTH", t.password});
      else
        append_command(cmd, {"AUTH", t.user, t.password});
      if (!call(cmd, "AUTH")) return false;
    }
    if (!t.db.empty() && t.db != "0") {
      cmd.clear();
      append_command(cmd, {"SELECT", t.db});
      if (!call(cmd, "SELECT")) return false;
    }
    return true;
  }

  bool send_all(std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error = std::string("send: ") + std::strerror(errno);
        return false;
      }
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  bool has_reply() const { return in.find("\r\n", pos) != std::string::npos; }

  // The next reply's line ("+OK", ":1"); false on an error reply, an
  // unexpected kind or a lost connection.
  bool reply(std::string_view &line, const char *what) {
    size_t eol;
    while ((eol = in.find("\r\n", pos)) == std::string::npos) {
      in.erase(0, pos);
      pos = 0;
      char tmp[65536];
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error = std::string(what) + ": " +
                (n == 0            ? "connection closed by the server"
                 : errno == EAGAIN ? "timed out"
                                   : std::strerror(errno));
        return false;
      }
      in.append(tmp, static_cast<size_t>(n));
    }
    line = std::string_view(in).substr(pos, eol - pos);
    pos = eol + 2;
    if (!line.empty() && (line[0] == '+' || line[0] == ':')) return true;
    error = std::string(what) + ": " +
            (!line.empty() && line[0] == '-'
                 ? std::string(line.substr(1))
                 : std::string("unexpected reply from the server"));
    return false;
  }

  bool call(const std::string &cmd, const char *what) {
    std::string_view line;
    return send_all(cmd) && reply(line, what);
  }
};

// The naive limiter's check of `key`: INCR key, PEXPIRE key 60000.
void append_naive_check(std::string &out, std::string_view key) {
  append_command(out, {"INCR", key});
  append_command(out, {"PEXPIRE", key, "60000"});
}

// ---- tollgate with --in-flight outstanding checks

struct Window {
  std::mutex mu;
  std::condition_variable cv;
  int64_t in_flight = 0;
  uint64_t done = 0, errors = 0;
  int first_status = RL_OK;
  std::string first_message;
};

void on_checked(int status, const rl_decision *, const char *message,
                void *user_data) {
  auto *w = static_cast<Window *>(user_data);
  std::lock_guard<std::mutex> lock(w->mu);
  --w->in_flight;
  ++w->done;
  if (status != RL_OK && w->errors++ == 0) {
    w->first_status = status;
    w->first_message = message;
  }
  w->cv.notify_one();
}

struct BenchRun {
  Figure seq, async, base_seq, base_async;
  bool baseline = false;
  std::string skipped;  // why the baseline did not run
  uint64_t deleted = 0;
};

void print_figure_json(const char *name, const Figure &f, bool last) {
  std::printf("\"%s\": {\"checks\": %" PRIu64
              ", \"seconds\": %.3f, \"checks_per_s\": %.1f",
              name, f.checks, f.seconds, f.per_sec());
  if (f.p50_us >= 0)
    std::printf(", \"p50_us\": %.1f, \"p99_us\": %.1f", f.p50_us, f.p99_us);
  std::printf(", \"cpu_us_per_check\": %.3f}%s", f.cpu_per_check(),
              last ? "" : ", ");
}

void print_figure_row(const char *name, const Figure &f) {
  if (f.p50_us >= 0)
    std::printf("  %-40s %10.0f %8.1f %8.1f %12.2f\n", name, f.per_sec(),
                f.p50_us, f.p99_us, f.cpu_per_check());
  else
    std::printf("  %-40s %10.0f %8s %8s %12.2f\n", name, f.per_sec(), "-", "-",
                f.cpu_per_check());
}

}  // namespace

int cmd_bench(Args &a) {
  if (!a.positional.empty()) return usage_error("bench takes no arguments");
  if (a.cost_given || a.all)
    return usage_error("bench takes no --cost or --all");
  char *end = nullptr;
  errno = 0;
  const double duration = std::strtod(a.duration.c_str(), &end);
  if (a.duration.empty() || errno != 0 || *end != '\0' ||
      !std::isfinite(duration) || duration <= 0 || duration > kMaxDuration)
    return usage_error("--duration expects seconds, 0 < SEC <= 600, got '" +
                       a.duration + "'");
  int64_t n_keys = 0, in_flight = 0;
  if (!parse_int(a.keys, n_keys) || n_keys < 1 || n_keys > kMaxBenchKeys)
    return usage_error("--keys expects 1 .. 1000000, got '" + a.keys + "'");
  if (!parse_int(a.in_flight, in_flight) || in_flight < 1 ||
      in_flight > kMaxInFlight)
    return usage_error("--in-flight expects 1 .. 4096, got '" + a.in_flight +
                       "'");
  int64_t timeout_ms = 1000;
  if (!a.timeout.empty() && !parse_int(a.timeout, timeout_ms))
    timeout_ms = 1000;  // rl_create reports a bad --timeout
  Policies pols;
  int st = parse_policies({kBenchPolicy}, 0, pols);
  if (st >= 0) return st;
  Limiter lim;
  if ((st = open_limiter(a, lim)) >= 0) return st;
  int64_t rtt = 0;
  int rc = rl_ping(lim.p, &rtt);
  if (rc != RL_OK) return library_error("bench", rc, status_of(rc));

  BenchKeys keys;
  {
    std::random_device rd;
    char sub[32];
    std::snprintf(sub, sizeof sub, "bench:%08x:", static_cast<unsigned>(rd()));
    keys.sub = sub;
    keys.n = static_cast<uint64_t>(n_keys);
  }
  PlainTarget target;
  BenchRun run;
  run.skipped = plain_target(a, target);
  run.baseline = run.skipped.empty();
  PlainClient plain;

  double load_before[3] = {-1, -1, -1}, load_after[3] = {-1, -1, -1};
  const bool have_load = load_average(load_before);
  std::string failure;  // the first failure; the keys are deleted anyway
  int failure_status = kStore;
  rl_policy *const *policy = pols.list.data();

  auto tollgate_check = [&](uint64_t i) {
    const std::string_view k = keys.at(i);
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(lim.p, &d, k.data(), k.size(), policy, 1, 1);
    if (rc == RL_OK) return true;
    failure = std::string("rl_check: ") + rl_last_error() + " (" +
              rl_error_name(rc) + ")";
    failure_status = status_of(rc);
    return false;
  };
  // Warm-up (the scripts loaded, the connection busy), then the figures.
  Figure warm;
  bool ok = run_sequential(0.05, tollgate_check, warm) &&
            run_sequential(duration, tollgate_check, run.seq);

  if (ok) {
    Window w;
    const double c0 = process_cpu_us();
    const auto t0 = Clock::now();
    const auto stop = t0 + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(duration));
    for (uint64_t i = 0; Clock::now() < stop; ++i) {
      {
        std::unique_lock<std::mutex> lock(w.mu);
        w.cv.wait(lock, [&] { return w.in_flight < in_flight; });
        if (w.errors > 0) break;
        ++w.in_flight;
      }
      const std::string_view k = keys.at(i);
      rc = rl_check_async(lim.p, k.data(), k.size(), policy, 1, 1, on_checked,
                          &w);
      if (rc != RL_OK) {
        std::lock_guard<std::mutex> lock(w.mu);
        --w.in_flight;
        if (w.errors++ == 0) {
          w.first_status = rc;
          w.first_message = rl_last_error();
        }
        break;
      }
    }
    std::unique_lock<std::mutex> lock(w.mu);
    w.cv.wait(lock, [&] { return w.in_flight == 0; });
    run.async.seconds = seconds_between(t0, Clock::now());
    run.async.cpu_us = process_cpu_us() - c0;
    run.async.checks = w.done;
    if (w.errors > 0) {
      ok = false;
      failure = "rl_check_async: " + std::to_string(w.errors) + " of " +
                std::to_string(w.done) +
                " checks failed, the first: " + w.first_message + " (" +
                rl_error_name(w.first_status) + ")";
      failure_status = status_of(w.first_status);
    }
  }

  if (ok && run.baseline) {
    std::string cmd, key;
    auto base_key = [&](uint64_t i) -> const std::string & {
      key.assign(target.prefix).append(keys.at(i));
      return key;
    };
    auto naive_check = [&](uint64_t i) {
      cmd.clear();
      std::string_view line;
      append_naive_check(cmd, base_key(i));
      return plain.send_all(cmd) && plain.reply(line, "INCR") &&
             plain.reply(line, "PEXPIRE");
    };
    ok = plain.open(target, static_cast<int>(timeout_ms)) &&
         run_sequential(0.05, naive_check, warm) &&
         run_sequential(duration, naive_check, run.base_seq);
    // --in-flight checks outstanding: refilled as their replies arrive.
    const double c0 = process_cpu_us();
    const auto t0 = Clock::now();
    const auto stop = t0 + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(duration));
    uint64_t issued = 0, done = 0;
    int64_t outstanding = 0;
    bool issuing = true;
    while (ok) {
      if (issuing && Clock::now() >= stop) issuing = false;
      if (issuing && outstanding < in_flight) {
        cmd.clear();
        for (; outstanding < in_flight; ++outstanding)
          append_naive_check(cmd, base_key(issued++));
        ok = plain.send_all(cmd);
      }
      if (outstanding == 0) break;
      // One check's two replies (waiting for them), then every check whose
      // replies are already here.
      std::string_view line;
      do {
        ok = ok && plain.reply(line, "INCR") && plain.reply(line, "PEXPIRE");
        if (ok) --outstanding, ++done;
      } while (ok && outstanding > 0 && plain.has_reply());
    }
    run.base_async.seconds = seconds_between(t0, Clock::now());
    run.base_async.cpu_us = process_cpu_us() - c0;
    run.base_async.checks = done;
    if (!ok) failure = "baseline: " + plain.error;
  }
  if (have_load) load_average(load_after);

  // Delete what the bench wrote: on a plain redis:// store by name (key
  // format 2, docs/production.md: <prefix>v2:{<key>} for the policy's
  // state; the baseline's <prefix><key>), on any other through the
  // limiter: the bench keys it lists, each reset.
  std::string cleanup_error;
  if (run.baseline) {
    PlainClient del;
    bool dok = del.open(target, static_cast<int>(timeout_ms));
    std::string cmd;
    std::vector<std::string> names;
    std::string_view line;
    for (uint64_t i = 0; dok && i < keys.n;) {
      names.clear();
      for (; i < keys.n && names.size() < 512; ++i) {
        const std::string k(keys.at(i));
        names.push_back(target.prefix + "v2:{" + k + "}");
        names.push_back(target.prefix + k);
      }
      cmd = "*" + std::to_string(names.size() + 1) + "\r\n$3\r\nDEL\r\n";
      for (const std::string &n : names)
        cmd += "$" + std::to_string(n.size()) + "\r\n" + n + "\r\n";
      dok = del.send_all(cmd) && del.reply(line, "DEL");
      if (dok) run.deleted += std::strtoull(line.data() + 1, nullptr, 10);
    }
    if (!dok) cleanup_error = "deleting the bench's keys: " + del.error;
  } else {
    const std::string pattern = keys.sub + "*";
    rl_keys *it = nullptr;
    rc = rl_keys_open_match(lim.p, pattern.data(), pattern.size(), policy, 1,
                            &it);
    std::vector<std::string> found;
    rl_key_info info = RL_KEY_INFO_INIT;
    if (rc == RL_OK) {
      while ((rc = rl_keys_next(it, &info)) == RL_OK)
        found.emplace_back(info.key, info.key_len);
      rl_keys_free(it);
      if (rc == RL_E_DONE) rc = RL_OK;
    }
    for (size_t i = 0; rc == RL_OK && i < found.size(); ++i)
      if ((rc = rl_reset(lim.p, found[i].data(), found[i].size())) == RL_OK)
        ++run.deleted;
    if (rc != RL_OK)
      cleanup_error = std::string("deleting the bench's keys: ") +
                      rl_last_error() + " (" + rl_error_name(rc) + ")";
  }

  if (!ok || !cleanup_error.empty()) {
    if (!ok) std::fprintf(stderr, "tollgate: bench: %s\n", failure.c_str());
    if (!cleanup_error.empty())
      std::fprintf(stderr, "tollgate: bench: %s\n", cleanup_error.c_str());
    return ok ? kStore : failure_status;
  }

  rl_health_info h = RL_HEALTH_INIT;
  rl_health(lim.p, &h);
  rl_node_info node = RL_NODE_INIT;
  if (h.nodes == 0 || rl_health_node(lim.p, 0, &node) != RL_OK)
    node.address[0] = '\0';
  const unsigned cpus = std::thread::hardware_concurrency();
  // tollgate / baseline.
  const double r_seq = run.seq.per_sec() / run.base_seq.per_sec();
  const double r_seq_cpu =
      run.seq.cpu_per_check() / run.base_seq.cpu_per_check();
  const double r_seq_p50 = run.seq.p50_us / run.base_seq.p50_us;
  const double r_async = run.async.per_sec() / run.base_async.per_sec();
  const double r_async_cpu =
      run.async.cpu_per_check() / run.base_async.cpu_per_check();

  if (a.json) {
    std::printf(
        "{\"tollgate_version\": \"%s\", \"topology\": \"%s\", "
        "\"address\": %s, \"redis_version\": %s, \"policy\": \"%s\", "
        "\"duration_s\": %g, \"keys\": %" PRId64 ", \"in_flight\": %" PRId64
        ", \"key_pattern\": %s, "
        "\"cpus\": %u, ",
        rl_version_string(), topology_name(h.topology),
        json_string(node.address).c_str(),
        json_string(h.server_version).c_str(), kBenchPolicy, duration, n_keys,
        in_flight, json_string(keys.sub + "*").c_str(), cpus);
    if (have_load)
      std::printf(
          "\"load_before\": [%.2f, %.2f, %.2f], \"load_after\": "
          "[%.2f, %.2f, %.2f], ",
          load_before[0], load_before[1], load_before[2], load_after[0],
          load_after[1], load_after[2]);
    else
      std::printf("\"load_before\": null, \"load_after\": null, ");
    std::printf("\"tollgate\": {");
    print_figure_json("sequential", run.seq, false);
    print_figure_json("in_flight", run.async, true);
    std::printf("}, \"baseline\": ");
    if (run.baseline) {
      std::printf("{");
      print_figure_json("sequential", run.base_seq, false);
      print_figure_json("in_flight", run.base_async, true);
      std::printf(
          "}, \"baseline_skipped\": null, \"ratios\": {\"sequential\": "
          "{\"checks_per_s\": %.4f, \"cpu_us_per_check\": %.4f, "
          "\"p50_us\": %.4f}, \"in_flight\": {\"checks_per_s\": %.4f, "
          "\"cpu_us_per_check\": %.4f}}",
          r_seq, r_seq_cpu, r_seq_p50, r_async, r_async_cpu);
    } else {
      std::printf("null, \"baseline_skipped\": %s, \"ratios\": null",
                  json_string(run.skipped).c_str());
    }
    std::printf(", \"deleted_keys\": %" PRIu64 "}\n", run.deleted);
    return kAllowed;
  }

  std::printf("tollgate bench: %s store %s, Redis %s; tollgate %s\n",
              topology_name(h.topology), node.address, h.server_version,
              rl_version_string());
  std::printf("%g s per figure, %" PRId64 " keys (%s*), %" PRId64
              " in flight, policy %s (never denies: every check writes)\n",
              duration, n_keys, printable(keys.sub).c_str(), in_flight,
              kBenchPolicy);
  if (have_load)
    std::printf("load average before: %.2f %.2f %.2f (1/5/15 min, %u CPUs)\n",
                load_before[0], load_before[1], load_before[2], cpus);
  std::printf("\n  %-40s %10s %8s %8s %12s\n", "", "checks/s", "p50 us",
              "p99 us", "CPU us/check");
  char label[64];
  print_figure_row("tollgate rl_check, sequential", run.seq);
  std::snprintf(label, sizeof label,
                "tollgate rl_check_async, %" PRId64 " in flight", in_flight);
  print_figure_row(label, run.async);
  if (run.baseline) {
    print_figure_row("baseline INCR+PEXPIRE, sequential", run.base_seq);
    std::snprintf(label, sizeof label,
                  "baseline INCR+PEXPIRE, %" PRId64 " in flight", in_flight);
    print_figure_row(label, run.base_async);
    std::printf("\n  %-40s %10s %12s %8s\n", "tollgate / baseline", "checks/s",
                "CPU us/check", "p50");
    std::printf("  %-40s %9.2fx %11.2fx %7.2fx\n", "sequential", r_seq,
                r_seq_cpu, r_seq_p50);
    std::snprintf(label, sizeof label, "%" PRId64 " in flight", in_flight);
    std::printf("  %-40s %9.2fx %11.2fx\n", label, r_async, r_async_cpu);
  } else {
    std::printf("\nbaseline skipped: %s\n", run.skipped.c_str());
  }
  if (have_load) {
    std::printf("\nload average after:  %.2f %.2f %.2f\n", load_after[0],
                load_after[1], load_after[2]);
    if (cpus > 0 && load_before[0] >= cpus / 2.0)
      std::printf(
          "note: the machine was busy before the bench (load %.2f on %u "
          "CPUs): figures from a busy machine mean little\n",
          load_before[0], cpus);
  }
  std::printf("deleted %" PRIu64 " keys the bench wrote\n", run.deleted);
  return kAllowed;
}

}  // namespace tollgate_cli
