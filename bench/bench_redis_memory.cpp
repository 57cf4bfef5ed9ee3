// tollgate-bench-redis-memory: what tollgate's state costs Redis per subject,
// against rate-limiter-flexible's Redis layout measured in the same run.
//
// It starts its own redis-server (a free loopback port, no persistence,
// stopped by PID at the end) and, for each row, FLUSHALLs, reads INFO
// memory's used_memory, makes N subjects' state ("user:1000000",
// "user:1000001", ...; one policy, 100 per hour), reads used_memory again and
// reports the difference / N. Rows:
//
//   - tollgate, each algorithm, through the C ABI (rl_check_async, at most
//     512 in flight), default prefix "tollgate:";
//   - the baseline: rate-limiter-flexible's RateLimiterRedis (fixed window,
//     its only algorithm) as it writes Redis: key "rlflx:<user key>", one
//     script per consume that does SET key 0 EX <duration> NX, INCRBY key
//     <points>, PTTL key (its incrTtlLuaScript; the script here is our own
//     with the same three commands), pipelined;
//   - tollgate GCRA with the short prefix "t:";
//   - GCRA with prefix "t:" and 7-byte user keys ("1000000"), the baseline;
//   - every algorithm and the baseline with 40-byte user keys
//     ("user:000...0001000000").
//
// Per row it also prints the key name's length and MEMORY USAGE of one key.
// docs/production.md ("Bytes per key") holds the table, and
// tests/test_secure_compose.cpp ([memory]) checks it.
//
//   tollgate-bench-redis-memory [--json] [--n N] [--redis-server PATH]
//                               [--maxmemory-policy POLICY]
//
// --maxmemory-policy also sets maxmemory 4gb (the policy only applies with a
// maxmemory): an LRU or LFU policy keeps Redis from sharing the objects of
// small integers (0-9999), which changes rate-limiter-flexible's figure.
// It never fails on a figure; it fails if a call fails or a row does not
// end with N keys.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "machine.hpp"
#include "tollgate.h"

namespace {

using tollgate_bench::cpu_model;
using tollgate_bench::kernel_release;
using tollgate_bench::load_average;

[[noreturn]] void die(const std::string &what) {
  std::fprintf(stderr, "tollgate-bench-redis-memory: %s\n", what.c_str());
  std::exit(1);
}

// ---- A private redis-server ----------------------------------------------

// A port nothing listens on now: bind port 0, read it, close.
uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0)
    die("no free port");
  close(fd);
  return ntohs(a.sin_port);
}

struct Server {
  pid_t pid = -1;
  uint16_t port = 0;
  Server(const std::string &exe, const std::string &policy) {
    port = free_port();
    std::vector<std::string> args = {exe,
                                     "--port",
                                     std::to_string(port),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--daemonize",
                                     "no",
                                     "--loglevel",
                                     "warning",
                                     "--logfile",
                                     ""};
    if (!policy.empty()) {
      for (const char *a : {"--maxmemory", "4gb", "--maxmemory-policy"})
        args.emplace_back(a);
      args.push_back(policy);
    }
    pid = fork();
    if (pid < 0) die("fork failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the bench
      // Its log (warnings only) must not mix with the bench's JSON.
      const int null_fd = open("/dev/null", O_WRONLY);
      if (null_fd >= 0) dup2(null_fd, STDOUT_FILENO);
      std::vector<char *> argv;
      for (std::string &a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      std::perror("exec redis-server");
      _exit(127);
    }
  }
  ~Server() {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
  }
};

// ---- A blocking RESP client (setup, INFO, and the baseline's pipeline) -----

struct Reply {
  char type = 0;  // + - : $ *
  std::string str;
  long long integer = 0;
  std::vector<Reply> elements;
};

std::string resp(const std::vector<std::string> &args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string &a : args)
    s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // redis-server may still be starting: retry for up to 5 s.
    for (int i = 0;; ++i) {
      if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) break;
      if (i == 100) die("redis-server did not start");
      close(fd_);
      fd_ = socket(AF_INET, SOCK_STREAM, 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~Client() { close(fd_); }
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;

  void send(const std::string &s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, 0);
      if (n <= 0) die("send failed");
      off += static_cast<size_t>(n);
    }
  }
  Reply read() {
    Reply r = parse();
    if (pos_ > 65536) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return r;
  }
  Reply query(const std::vector<std::string> &args) {
    send(resp(args));
    Reply r = read();
    if (r.type == '-') die(args[0] + ": " + r.str);
    return r;
  }

 private:
  std::string line() {
    size_t eol;
    while ((eol = buf_.find("\r\n", pos_)) == std::string::npos) fill();
    std::string s = buf_.substr(pos_, eol - pos_);
    pos_ = eol + 2;
    return s;
  }
  void fill() {
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) die("connection to redis-server lost");
    buf_.append(tmp, static_cast<size_t>(n));
  }
  Reply parse() {
    const std::string l = line();
    Reply r;
    r.type = l.empty() ? '?' : l[0];
    const std::string rest = l.substr(1);
    switch (r.type) {
      case '+':
      case '-':
        r.str = rest;
        break;
      case ':':
        r.integer = std::atoll(rest.c_str());
        break;
      case '$': {
        const long long len = std::atoll(rest.c_str());
        if (len < 0) break;
        while (buf_.size() < pos_ + static_cast<size_t>(len) + 2) fill();
        r.str = buf_.substr(pos_, static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len) + 2;
        break;
      }
      case '*': {
        const long long n = std::atoll(rest.c_str());
        for (long long i = 0; i < n; ++i) r.elements.push_back(parse());
        break;
      }
      default:
        die("unexpected reply: " + l);
    }
    return r;
  }
  int fd_ = -1;
  std::string buf_;
  size_t pos_ = 0;
};

std::string info_field(Client &c, const char *section, const char *field) {
  const std::string info = c.query({"INFO", section}).str;
  const std::string tag = std::string(field) + ":";
  const size_t at = info.find(tag);
  if (at == std::string::npos) die(std::string("INFO has no ") + field);
  const size_t from = at + tag.size();
  return info.substr(from, info.find_first_of("\r\n", from) - from);
}

long long used_memory(Client &c) {
  return std::atoll(info_field(c, "memory", "used_memory").c_str());
}

// ---- The rows --------------------------------------------------------------

constexpr int kBaseline = -1;  // the row's algorithm: rate-limiter-flexible

struct Row {
  std::string id, name;
  int algorithm;       // RL_ALG_*, or kBaseline
  std::string prefix;  // tollgate's key prefix ("rlflx:" for the baseline)
  size_t key_bytes;    // the user key's length
  Row(std::string i, std::string n, int alg, std::string p, size_t bytes)
      : id(std::move(i)),
        name(std::move(n)),
        algorithm(alg),
        prefix(std::move(p)),
        key_bytes(bytes) {}
  // Measured.
  std::string sample_key;  // the Redis key of subject 0
  long long per_subject = 0;
  long long memory_usage = 0;
  int attempts = 0;
};

// The user key of subject i: "user:" and 1000000 + i, zero-padded to
// key_bytes ("user:1000000" at 12 bytes).
std::string user_key(size_t key_bytes, long i) {
  char buf[128];
  if (key_bytes >= 12)
    std::snprintf(buf, sizeof buf, "user:%0*ld",
                  static_cast<int>(key_bytes - 5), 1000000 + i);
  else  // the number alone: "1000000" at 7 bytes
    std::snprintf(buf, sizeof buf, "%0*ld", static_cast<int>(key_bytes),
                  1000000 + i);
  return buf;
}

// tollgate's key for an unnamed policy at position 0 (docs/redis.md).
std::string tollgate_key(const std::string &prefix, const std::string &user) {
  return prefix + "v2:{" + user + "}";
}

// 100 per hour, of one algorithm (created once, never released).
rl_policy *policy_for(int32_t algorithm) {
  static rl_policy *made[4] = {};
  if (made[algorithm] == nullptr) {
    rl_policy_spec spec = RL_POLICY_SPEC_INIT;
    spec.algorithm = algorithm;
    spec.limit = 100;
    spec.period_ms = 3600 * 1000;
    if (rl_policy_create(&made[algorithm], &spec) != RL_OK)
      die(std::string("rl_policy_create: ") + rl_last_error());
  }
  return made[algorithm];
}

// One limiter per prefix, created (and its scripts loaded, one check of each
// algorithm) before the first row, so that no row pays for a connection or
// the script cache.
rl_limiter *limiter_for(uint16_t port, const std::string &prefix) {
  static std::vector<std::pair<std::string, rl_limiter *>> made;
  for (const auto &[p, lim] : made)
    if (p == prefix) return lim;
  const std::string url = "redis://127.0.0.1:" + std::to_string(port);
  rl_options o = RL_OPTIONS_INIT;
  o.url = url.c_str();
  o.key_prefix = prefix.c_str();
  o.failure_mode = RL_FAIL_ERROR;  // every store error surfaces
  o.timeout_ms = 5000;
  o.deny_cache = -1;
  rl_limiter *lim = nullptr;
  if (rl_create(&lim, &o) != RL_OK)
    die(std::string("rl_create: ") + rl_last_error());
  for (int32_t alg = 0; alg < 4; ++alg) {
    rl_policy *p = policy_for(alg);
    rl_decision d = RL_DECISION_INIT;
    if (rl_check(lim, &d, "warm", 4, &p, 1, 1) != RL_OK)
      die(std::string("rl_check: ") + rl_last_error());
  }
  made.emplace_back(prefix, lim);  // lives until the process exits
  return lim;
}

// N subjects through tollgate, at most 512 checks in flight.
void fill_tollgate(rl_limiter *lim, const Row &row, long n) {
  rl_policy *p = policy_for(row.algorithm);
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    long in_flight = 0, errors = 0, denied = 0;
  } w;
  auto cb = [](int status, const rl_decision *d, const char *, void *user) {
    auto *w = static_cast<Wait *>(user);
    std::lock_guard<std::mutex> lock(w->mu);
    if (status != RL_OK)
      ++w->errors;
    else if (!d->allowed)
      ++w->denied;
    --w->in_flight;
    w->cv.notify_all();
  };
  for (long i = 0; i < n; ++i) {
    const std::string key = user_key(row.key_bytes, i);
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait(lock, [&] { return w.in_flight < 512; });
      ++w.in_flight;
    }
    if (rl_check_async(lim, key.data(), key.size(), &p, 1, 1, cb, &w) !=
        RL_OK) {
      std::lock_guard<std::mutex> lock(w.mu);
      ++w.errors;
      --w.in_flight;
    }
  }
  {
    std::unique_lock<std::mutex> lock(w.mu);
    w.cv.wait(lock, [&] { return w.in_flight == 0; });
  }
  if (w.errors != 0 || w.denied != 0)
    die(row.name + ": " + std::to_string(w.errors) + " errors, " +
        std::to_string(w.denied) + " denied");
}

// rate-limiter-flexible's consume(key, 1) on Redis (points 100, duration
// 3600): one script doing SET NX EX, INCRBY, PTTL, answering {consumed, ttl}.
const char *kRlflxScript =
    "redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX') "
    "local consumed = redis.call('incrby', KEYS[1], ARGV[1]) "
    "local ttl = redis.call('pttl', KEYS[1]) "
    "if ttl == -1 then redis.call('expire', KEYS[1], ARGV[2]) "
    "ttl = 1000 * ARGV[2] end "
    "return {consumed, ttl}";

void fill_baseline(Client &c, const std::string &sha, const Row &row, long n) {
  constexpr long kBatch = 512;
  for (long i = 0; i < n; i += kBatch) {
    const long end = std::min(n, i + kBatch);
    std::string out;
    for (long j = i; j < end; ++j)
      out += resp({"EVALSHA", sha, "1", row.prefix + user_key(row.key_bytes, j),
                   "1", "3600", "100", "3600"});
    c.send(out);
    for (long j = i; j < end; ++j) {
      const Reply r = c.read();
      if (r.type != '*' || r.elements.size() != 2 || r.elements[0].integer != 1)
        die(row.name + ": unexpected reply " + r.str);
    }
  }
}

void measure(Client &c, uint16_t port, const std::string &sha, Row &row,
             long n) {
  // A fixed window ends on the hour: a row that crosses it loses keys (they
  // expire), so it is measured again.
  for (row.attempts = 1;; ++row.attempts) {
    c.query({"FLUSHALL", "SYNC"});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const long long before = used_memory(c);
    if (row.algorithm == kBaseline)
      fill_baseline(c, sha, row, n);
    else
      fill_tollgate(limiter_for(port, row.prefix), row, n);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const long long after = used_memory(c);
    const long long keys = c.query({"DBSIZE"}).integer;
    if (keys != n) {
      if (row.attempts < 3) continue;
      die(row.name + ": DBSIZE " + std::to_string(keys) + ", not " +
          std::to_string(n));
    }
    row.sample_key = row.algorithm == kBaseline
                         ? row.prefix + user_key(row.key_bytes, 0)
                         : tollgate_key(row.prefix, user_key(row.key_bytes, 0));
    const Reply usage = c.query({"MEMORY", "USAGE", row.sample_key});
    if (usage.type != ':') die(row.name + ": no key " + row.sample_key);
    row.memory_usage = usage.integer;
    row.per_subject = (after - before) / n;
    return;
  }
}

std::string json_escape(const std::string &s) {
  std::string o;
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o;
}

}  // namespace

int main(int argc, char **argv) {
  bool json = false;
  long n = 100000;
  std::string exe = "redis-server", mm_policy;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--n" && i + 1 < argc) {
      n = std::atol(argv[++i]);
    } else if (a == "--redis-server" && i + 1 < argc) {
      exe = argv[++i];
    } else if (a == "--maxmemory-policy" && i + 1 < argc) {
      mm_policy = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: %s [--json] [--n N] [--redis-server PATH] "
                   "[--maxmemory-policy POLICY]\n",
                   argv[0]);
      return 2;
    }
  }
  if (n <= 0) die("--n must be positive");

  Server server(exe, mm_policy);
  Client c(server.port);
  c.query({"PING"});
  const std::string version = info_field(c, "server", "redis_version");
  const std::string allocator = info_field(c, "memory", "mem_allocator");
  const std::string policy = info_field(c, "memory", "maxmemory_policy");
  const std::string sha = c.query({"SCRIPT", "LOAD", kRlflxScript}).str;

  std::vector<Row> rows;
  static const char *names[] = {"GCRA", "token bucket", "fixed window",
                                "sliding window"};
  static const char *ids[] = {"gcra", "token_bucket", "fixed_window",
                              "sliding_window"};
  // 12-byte user keys: every algorithm, the baseline, GCRA with prefix t:.
  // 7-byte user keys ("1000000"): GCRA with prefix t: (a key name of 14
  // bytes, the smallest size class), the baseline. 40-byte user keys:
  // every algorithm, the baseline.
  for (const size_t bytes : {12, 7, 40}) {
    const std::string b = std::to_string(bytes);
    if (bytes != 7)
      for (int alg = 0; alg < 4; ++alg)
        rows.emplace_back(std::string(ids[alg]) + "_" + b, names[alg], alg,
                          "tollgate:", bytes);
    if (bytes == 7)
      rows.emplace_back("gcra_short_prefix_" + b, "GCRA", RL_ALG_GCRA,
                        "t:", bytes);
    rows.emplace_back("rlflx_" + b, "rate-limiter-flexible", kBaseline,
                      "rlflx:", bytes);
    if (bytes == 12)
      rows.emplace_back("gcra_short_prefix_" + b, "GCRA", RL_ALG_GCRA,
                        "t:", bytes);
  }

  for (const Row &r : rows)
    if (r.algorithm != kBaseline) limiter_for(server.port, r.prefix);

  const double load_start = load_average();
  const auto t0 = std::chrono::steady_clock::now();
  for (Row &r : rows) measure(c, server.port, sha, r, n);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  const double load_end = load_average();

  // The baseline of a row: rate-limiter-flexible at the same key length.
  auto baseline = [&](const Row &r) -> const Row & {
    for (const Row &b : rows)
      if (b.algorithm == kBaseline && b.key_bytes == r.key_bytes) return b;
    return r;
  };

  if (json) {
    std::printf(
        "{\n  \"bench\": \"redis_memory\",\n  \"tollgate_version\": \"%s\",\n"
        "  \"redis_version\": \"%s\",\n  \"mem_allocator\": \"%s\",\n"
        "  \"maxmemory_policy\": \"%s\",\n",
        rl_version_string(), version.c_str(), allocator.c_str(),
        policy.c_str());
    std::printf(
        "  \"machine\": {\"nproc\": %u, \"cpu_model\": \"%s\", \"kernel\": "
        "\"%s\", \"loadavg_start\": %.2f, \"loadavg_end\": %.2f},\n",
        std::thread::hardware_concurrency(), json_escape(cpu_model()).c_str(),
        json_escape(kernel_release()).c_str(), load_start, load_end);
    std::printf(
        "  \"subjects\": %ld,\n  \"policy\": \"100/h\",\n  \"seconds\": "
        "%.1f,\n  \"rows\": [\n",
        n, secs);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row &r = rows[i];
      std::printf(
          "    {\"id\": \"%s\", \"name\": \"%s\", \"prefix\": \"%s\", "
          "\"user_key_bytes\": %zu, \"key_name\": \"%s\", "
          "\"key_name_bytes\": %zu, \"bytes_per_subject\": %lld, "
          "\"memory_usage\": %lld, \"vs_baseline\": %.2f, \"attempts\": "
          "%d}%s\n",
          r.id.c_str(), r.name.c_str(), r.prefix.c_str(), r.key_bytes,
          json_escape(r.sample_key).c_str(), r.sample_key.size(), r.per_subject,
          r.memory_usage,
          static_cast<double>(r.per_subject) / baseline(r).per_subject,
          r.attempts, i + 1 < rows.size() ? "," : "");
    }
    std::printf("  ]\n}\n");
    return 0;
  }

  std::printf(
      "Redis %s (%s), maxmemory-policy %s; %ld subjects per row, policy "
      "100/h; tollgate %s\n",
      version.c_str(), allocator.c_str(), policy.c_str(), n,
      rl_version_string());
  std::printf("load average (1 min): %.2f before, %.2f after (%.0f s)\n\n",
              load_start, load_end, secs);
  // The table of docs/production.md ("Bytes per key").
  std::printf(
      "| row | prefix | user key bytes | key name bytes | bytes per subject "
      "| MEMORY USAGE | vs rate-limiter-flexible |\n"
      "|---|---|---|---|---|---|---|\n");
  for (const Row &r : rows)
    std::printf("| %s | `%s` | %zu | %zu | %lld | %lld | %.2fx |\n",
                r.name.c_str(), r.prefix.c_str(), r.key_bytes,
                r.sample_key.size(), r.per_subject, r.memory_usage,
                static_cast<double>(r.per_subject) / baseline(r).per_subject);
  return 0;
}
