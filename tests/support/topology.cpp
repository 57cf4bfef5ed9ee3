#include "support/topology.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#ifndef TOLLGATE_TOPOLOGY_SCRIPT
#error "TOLLGATE_TOPOLOGY_SCRIPT must name tests/servers/topology.py"
#endif

namespace tollgate_test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using json = nlohmann::json;

constexpr int kSlots = 16384;

[[noreturn]] void fail_errno(const std::string &what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

int remaining_ms(Clock::time_point deadline) {
  const auto ms =
      std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return ms <= 0 ? 0 : static_cast<int>(std::min<long long>(ms, INT_MAX));
}

// Waits until `fd` is ready for `events`; throws when the deadline passes.
void wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return;
    if (r == 0) throw std::runtime_error("timed out");
    if (errno != EINTR) fail_errno("poll");
  }
}

std::string find_in_path(const std::string &name) {
  if (name.find('/') != std::string::npos) return name;
  const char *path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error(name + ": not found in PATH");
}

// Reaps `pid` if it has exited (or waits for it with `block`).
bool reap(pid_t pid, bool block) {
  for (;;) {
    int st = 0;
    const pid_t r = waitpid(pid, &st, block ? 0 : WNOHANG);
    if (r == pid) return true;
    if (r == 0) return false;
    if (errno == EINTR) continue;
    return true;  // ECHILD
  }
}

// True if something accepts connections on 127.0.0.1:port.
bool port_answers(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// OpenSSL writes with write(2): a peer gone away would raise SIGPIPE. This
// holds SIGPIPE blocked on the calling thread and discards one raised
// meanwhile.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_);
  }
  ~SigpipeGuard() {
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard &) = delete;
  SigpipeGuard &operator=(const SigpipeGuard &) = delete;

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

std::string ssl_errors(const std::string &what) {
  std::string msg = what + " failed";
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += std::string(": ") + buf;
  }
  return msg;
}

// One client connection to 127.0.0.1:port, plain or TLS (non-blocking
// socket, one deadline for everything).
class Conn {
 public:
  Conn(uint16_t port, SSL_CTX *ctx, Clock::time_point deadline)
      : deadline_(deadline) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) fail_errno("socket");
    try {
      connect_to(port);
      if (ctx) handshake(ctx);
    } catch (...) {
      release();
      throw;
    }
  }
  ~Conn() { release(); }
  Conn(const Conn &) = delete;
  Conn &operator=(const Conn &) = delete;

  void write_all(std::string_view data) {
    while (!data.empty()) {
      if (ssl_) {
        ERR_clear_error();
        const int n =
            SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (n > 0) {
          data.remove_prefix(static_cast<size_t>(n));
          continue;
        }
        wait_tls(n, "SSL_write");
        continue;
      }
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0)
        data.remove_prefix(static_cast<size_t>(n));
      else if (errno == EAGAIN || errno == EWOULDBLOCK)
        wait_fd(fd_, POLLOUT, deadline_);
      else if (errno != EINTR)
        fail_errno("send");
    }
  }

  // Appends at least one byte to `buf`.
  void read_some(std::string &buf) {
    char tmp[16384];
    for (;;) {
      if (ssl_) {
        ERR_clear_error();
        const int n = SSL_read(ssl_, tmp, sizeof tmp);
        if (n > 0) {
          buf.append(tmp, static_cast<size_t>(n));
          return;
        }
        wait_tls(n, "SSL_read");
        continue;
      }
      const ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf.append(tmp, static_cast<size_t>(n));
        return;
      }
      if (n == 0) throw std::runtime_error("connection closed by the server");
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        wait_fd(fd_, POLLIN, deadline_);
      else if (errno != EINTR)
        fail_errno("recv");
    }
  }

 private:
  void connect_to(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string where = "connect to 127.0.0.1:" + std::to_string(port);
    if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) return;
    if (errno != EINPROGRESS) fail_errno(where);
    try {
      wait_fd(fd_, POLLOUT, deadline_);
    } catch (const std::exception &e) {
      throw std::runtime_error(where + ": " + e.what());
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) throw std::runtime_error(where + ": " + std::strerror(err));
  }

  void handshake(SSL_CTX *ctx) {
    ssl_ = SSL_new(ctx);
    if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1)
      throw std::runtime_error(ssl_errors("SSL_new"));
    // The server certificate must be for 127.0.0.1 (and from the test CA).
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), "127.0.0.1") != 1)
      throw std::runtime_error(ssl_errors("X509_VERIFY_PARAM_set1_ip_asc"));
    for (;;) {
      ERR_clear_error();
      const int r = SSL_connect(ssl_);
      if (r == 1) return;
      wait_tls(r, "TLS handshake");
    }
  }

  // After an SSL call returned `r` <= 0: waits if it wants I/O, else throws.
  void wait_tls(int r, const char *what) {
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        return wait_fd(fd_, POLLIN, deadline_);
      case SSL_ERROR_WANT_WRITE:
        return wait_fd(fd_, POLLOUT, deadline_);
      case SSL_ERROR_ZERO_RETURN:
        throw std::runtime_error("connection closed by the server");
      default:
        throw std::runtime_error(ssl_errors(what));
    }
  }

  void release() {
    if (ssl_) SSL_free(ssl_);
    ssl_ = nullptr;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  Clock::time_point deadline_;
  int fd_ = -1;
  SSL *ssl_ = nullptr;
};

// "key:value" lines of INFO or CLUSTER INFO.
std::map<std::string, std::string> parse_info(const std::string &text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos || line[0] == '#') continue;
    out[line.substr(0, colon)] = line.substr(colon + 1);
  }
  return out;
}

uint16_t to_port(long long v) {
  if (v <= 0 || v > 65535)
    throw std::runtime_error("bad port " + std::to_string(v));
  return static_cast<uint16_t>(v);
}

std::string json_string(const json &j, const char *key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? std::string()
                                        : it->get<std::string>();
}

uint16_t json_port(const json &j, const char *key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? 0 : to_port(it->get<long long>());
}

}  // namespace

// ---- Start and stop
// ----------------------------------------------------------

Topology::Topology(TopologyOptions options) : options_(std::move(options)) {
  owner_ = getpid();
  const std::string python = find_in_path("python3");
  const char *env_script = std::getenv("TOLLGATE_TOPOLOGY_SCRIPT");
  const std::string script =
      env_script && *env_script ? env_script : TOLLGATE_TOPOLOGY_SCRIPT;
  std::vector<std::string> argv = {python, script};
  if (options_.kind == TopologyKind::cluster) {
    argv.insert(argv.end(),
                {"cluster", "--primaries", std::to_string(options_.primaries),
                 "--replicas-per-primary",
                 std::to_string(options_.replicas_per_primary)});
    if (options_.tls) argv.push_back("--tls");
  } else {
    argv.insert(argv.end(),
                {"sentinel", "--master-name", options_.master_name});
  }
  argv.insert(argv.end(), {"--timeout", std::to_string(static_cast<long long>(
                                            options_.start_timeout.count()))});

  // Its stderr goes to an unlinked temp file we keep open and read back.
  std::string err_path = "/tmp/tollgate-topology-stderr-XXXXXX";
  err_fd_ = mkostemp(err_path.data(), O_CLOEXEC);
  if (err_fd_ < 0) fail_errno("mkostemp");
  unlink(err_path.c_str());

  // One socket pair is its stdin and stdout: send() with MSG_NOSIGNAL
  // cannot raise SIGPIPE here if it has died.
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    close(err_fd_);
    fail_errno("socketpair");
  }
  sock_ = sv[0];

  // Between fork and exec only async-signal-safe calls (the test process
  // has threads): everything is prepared here.
  std::vector<char *> cargv;
  for (const std::string &a : argv)
    cargv.push_back(const_cast<char *>(a.c_str()));
  cargv.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);
  const pid_t parent = getpid();
  const int child_sock = sv[1];
  const int err_fd = err_fd_;
  const pid_t pid = fork();
  if (pid == 0) {
    // SIGTERM, not SIGKILL: the script then stops its servers and removes
    // its temp dirs.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (dup2(child_sock, 0) < 0 || dup2(child_sock, 1) < 0 ||
        dup2(err_fd, 2) < 0)
      _exit(126);
    if (close_range(3, ~0U, 0) != 0)
      for (int fd = 3; fd < 65536; ++fd) close(fd);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  const int fork_errno = errno;
  close(sv[1]);
  if (pid < 0) {
    close(sock_);
    close(err_fd_);
    errno = fork_errno;
    fail_errno("fork");
  }
  script_ = pid;

  try {
    // The script's own --timeout bounds start-up; this is a backstop.
    const auto deadline =
        Clock::now() + options_.start_timeout + std::chrono::seconds(30);
    const json j = json::parse(read_line(deadline));
    tls_ = j.at("tls").get<bool>();
    url_ = j.at("url").get<std::string>();
    ca_ = json_string(j, "ca");
    master_name_ = json_string(j, "master_name");
    for (const json &n : j.at("nodes")) {
      TopologyNode node;
      node.host = n.at("host").get<std::string>();
      node.port = to_port(n.at("port").get<long long>());
      node.pid = n.at("pid").get<pid_t>();
      node.role = n.at("role").get<std::string>();
      node.id = json_string(n, "id");
      node.dir = n.at("dir").get<std::string>();
      node.bus_port = json_port(n, "bus_port");
      node.primary_port = json_port(n, "primary_port");
      nodes_.push_back(std::move(node));
    }
    if (j.contains("sentinels")) {
      for (const json &s : j.at("sentinels")) {
        SentinelNode node;
        node.host = s.at("host").get<std::string>();
        node.port = to_port(s.at("port").get<long long>());
        node.pid = s.at("pid").get<pid_t>();
        node.dir = s.at("dir").get<std::string>();
        sentinels_.push_back(std::move(node));
      }
    }
    if (tls_) {
      ssl_ctx_ = SSL_CTX_new(TLS_client_method());
      if (!ssl_ctx_) throw std::runtime_error(ssl_errors("SSL_CTX_new"));
      SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
      if (SSL_CTX_load_verify_locations(ssl_ctx_, ca_.c_str(), nullptr) != 1)
        throw std::runtime_error(ssl_errors("loading " + ca_));
    }
  } catch (const std::exception &e) {
    stop_script();
    if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
    ssl_ctx_ = nullptr;
    const std::string msg = std::string("topology.py: ") + e.what() +
                            "\n--- its stderr:\n" + script_stderr();
    close(err_fd_);
    err_fd_ = -1;
    throw std::runtime_error(msg);
  }
}

Topology::~Topology() {
  // A forked test child inherits this object; the script is not its own.
  if (getpid() != owner_) return;
  try {
    stop_script();
  } catch (...) {
    // A destructor must not throw; the death signal still stops the script.
  }
  if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
  if (err_fd_ >= 0) close(err_fd_);
}

void Topology::stop_script() {
  if (sock_ >= 0) {
    close(sock_);  // EOF on its stdin: it stops everything and exits
    sock_ = -1;
  }
  if (script_ <= 0) return;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (reap(script_, false)) {
      script_ = -1;
      return;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  kill(script_, SIGKILL);  // its servers get SIGKILL from their death signal
  reap(script_, true);
  script_ = -1;
}

std::string Topology::script_stderr() const {
  std::string out;
  if (err_fd_ < 0) return out;
  char buf[4096];
  off_t off = 0;
  for (;;) {
    const ssize_t n = pread(err_fd_, buf, sizeof buf, off);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

// ---- Talking to the script -----------------------------------------------

std::string Topology::read_line(Clock::time_point deadline) {
  for (;;) {
    const auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    if (sock_ < 0) throw std::runtime_error("the script is not running");
    pollfd p{sock_, POLLIN, 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r == 0) throw std::runtime_error("no answer from the script in time");
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_errno("poll");
    }
    char tmp[65536];
    const ssize_t n = recv(sock_, tmp, sizeof tmp, 0);
    if (n == 0) throw std::runtime_error("the script exited");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fail_errno("recv from the script");
    }
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

std::string Topology::request(const std::string &line,
                              std::chrono::milliseconds timeout) {
  if (sock_ < 0) throw std::runtime_error("the script is not running");
  const std::string out = line + "\n";
  if (send(sock_, out.data(), out.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(out.size()))
    fail_errno("send to the script");
  const json reply = json::parse(read_line(Clock::now() + timeout));
  if (!reply.value("ok", false))
    throw std::runtime_error("topology.py " + line + ": " +
                             reply.value("error", std::string("failed")));
  return reply.dump();
}

void Topology::ping() {
  request("ping", std::chrono::seconds(10));
}

pid_t Topology::restart(uint16_t port) {
  const json reply = json::parse(
      request("restart " + std::to_string(port), std::chrono::seconds(30)));
  const pid_t pid = reply.at("pid").get<pid_t>();
  for (TopologyNode &n : nodes_)
    if (n.port == port) n.pid = pid;
  for (SentinelNode &s : sentinels_)
    if (s.port == port) s.pid = pid;
  return pid;
}

void Topology::kill9(uint16_t port) {
  pid_t *pid = nullptr;
  for (TopologyNode &n : nodes_)
    if (n.port == port) pid = &n.pid;
  for (SentinelNode &s : sentinels_)
    if (s.port == port) pid = &s.pid;
  if (!pid)
    throw std::runtime_error("kill9: no node on port " + std::to_string(port));
  if (*pid <= 0) return;
  kill(*pid, SIGKILL);  // the script reaps it
  *pid = -1;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (port_answers(port)) {
    if (Clock::now() >= deadline)
      throw std::runtime_error("kill9: port " + std::to_string(port) +
                               " still answers");
    std::this_thread::sleep_for(milliseconds(5));
  }
}

const TopologyNode &Topology::node(uint16_t port) const {
  for (const TopologyNode &n : nodes_)
    if (n.port == port) return n;
  throw std::runtime_error("no node on port " + std::to_string(port));
}

std::vector<pid_t> Topology::server_pids() const {
  std::vector<pid_t> out;
  for (const TopologyNode &n : nodes_)
    if (n.pid > 0) out.push_back(n.pid);
  for (const SentinelNode &s : sentinels_)
    if (s.pid > 0) out.push_back(s.pid);
  return out;
}

// ---- Queries
// -----------------------------------------------------------------

RespValue Topology::query(uint16_t port, const std::vector<std::string> &args,
                          std::chrono::milliseconds timeout) const {
  const SigpipeGuard guard;
  const auto deadline = Clock::now() + timeout;
  Conn conn(port, ssl_ctx_, deadline);
  conn.write_all(resp_encode(args));
  std::string buf;
  for (;;) {
    size_t pos = 0;
    if (auto v = resp_parse(buf, pos)) return *v;
    conn.read_some(buf);
  }
}

ProcessResult Topology::cli(uint16_t port, const std::vector<std::string> &args,
                            std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {"redis-cli", "-h", "127.0.0.1", "-p",
                                   std::to_string(port)};
  if (tls_) argv.insert(argv.end(), {"--tls", "--cacert", ca_});
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, timeout);
}

// ---- Cluster helpers -----------------------------------------------------

std::vector<SlotRange> Topology::slots_of(uint16_t port) const {
  const RespValue r = query(port, {"CLUSTER", "SLOTS"});
  if (r.type != '*')
    throw std::runtime_error("CLUSTER SLOTS on " + std::to_string(port) + ": " +
                             r.str);
  std::vector<SlotRange> out;
  for (const RespValue &e : r.elements) {
    if (e.elements.size() < 3) throw std::runtime_error("short CLUSTER SLOTS");
    SlotRange s;
    s.start = static_cast<int>(e.elements[0].integer);
    s.end = static_cast<int>(e.elements[1].integer);
    s.primary = to_port(e.elements[2].elements.at(1).integer);
    for (size_t i = 3; i < e.elements.size(); ++i)
      s.replicas.push_back(to_port(e.elements[i].elements.at(1).integer));
    std::sort(s.replicas.begin(), s.replicas.end());
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const SlotRange &a, const SlotRange &b) {
    return a.start < b.start;
  });
  return out;
}

std::vector<SlotRange> Topology::slots() const {
  std::string last_error = "no live node";
  for (const TopologyNode &n : nodes_) {
    if (n.pid <= 0) continue;
    try {
      return slots_of(n.port);
    } catch (const std::exception &e) {
      last_error = e.what();
    }
  }
  throw std::runtime_error("CLUSTER SLOTS: " + last_error);
}

std::vector<uint16_t> Topology::primary_ports() const {
  std::set<uint16_t> ports;
  for (const SlotRange &s : slots()) ports.insert(s.primary);
  return {ports.begin(), ports.end()};
}

uint16_t Topology::owner_of_slot(int slot) const {
  for (const SlotRange &s : slots())
    if (s.start <= slot && slot <= s.end) return s.primary;
  return 0;
}

int Topology::key_slot(const std::string &key) const {
  std::string last_error = "no live node";
  for (const TopologyNode &n : nodes_) {
    if (n.pid <= 0) continue;
    try {
      const RespValue r = query(n.port, {"CLUSTER", "KEYSLOT", key});
      if (r.type == ':') return static_cast<int>(r.integer);
      last_error = r.str;
    } catch (const std::exception &e) {
      last_error = e.what();
    }
  }
  throw std::runtime_error("CLUSTER KEYSLOT: " + last_error);
}

bool Topology::cluster_ok_now() const {
  std::set<uint16_t> live;
  for (const TopologyNode &n : nodes_)
    if (n.pid > 0) live.insert(n.port);
  if (live.empty()) return false;
  std::vector<SlotRange> first;
  bool have_first = false;
  for (const uint16_t port : live) {
    const auto info = parse_info(query(port, {"CLUSTER", "INFO"}).str);
    if (info.count("cluster_state") == 0 || info.at("cluster_state") != "ok" ||
        info.count("cluster_slots_ok") == 0 ||
        info.at("cluster_slots_ok") != std::to_string(kSlots))
      return false;
    const auto repl = parse_info(query(port, {"INFO", "replication"}).str);
    if (repl.count("role") && repl.at("role") == "slave" &&
        (repl.count("master_link_status") == 0 ||
         repl.at("master_link_status") != "up"))
      return false;
    std::vector<SlotRange> view = slots_of(port);
    if (!have_first) {
      first = std::move(view);
      have_first = true;
    } else if (view != first) {
      return false;
    }
  }
  int covered = 0, next = 0;
  for (const SlotRange &s : first) {
    if (s.start != next || !live.count(s.primary)) return false;
    covered += s.end - s.start + 1;
    next = s.end + 1;
  }
  return covered == kSlots;
}

bool Topology::wait_cluster_ok(std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      if (cluster_ok_now()) return true;
    } catch (const std::exception &) {
      // A node mid-restart; ask again.
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
}

uint16_t Topology::wait_for_new_primary_of(
    int slot, uint16_t old_port, std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      uint16_t agreed = 0;
      bool all_agree = true;
      for (const TopologyNode &n : nodes_) {
        if (n.pid <= 0) continue;
        uint16_t owner = 0;
        for (const SlotRange &s : slots_of(n.port))
          if (s.start <= slot && slot <= s.end) owner = s.primary;
        if (owner == 0 || owner == old_port ||
            (agreed != 0 && owner != agreed)) {
          all_agree = false;
          break;
        }
        agreed = owner;
      }
      if (all_agree && agreed != 0) {
        const auto repl =
            parse_info(query(agreed, {"INFO", "replication"}).str);
        if (repl.count("role") && repl.at("role") == "master") return agreed;
      }
    } catch (const std::exception &) {
      // Ask again.
    }
    if (Clock::now() >= deadline) return 0;
    std::this_thread::sleep_for(milliseconds(50));
  }
}

// ---- Sentinel helpers ----------------------------------------------------

HostPort Topology::current_master(uint16_t sentinel_port) const {
  std::string last_error = "no live sentinel";
  for (const SentinelNode &s : sentinels_) {
    if (s.pid <= 0 || (sentinel_port != 0 && s.port != sentinel_port)) continue;
    try {
      const RespValue r =
          query(s.port, {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name_});
      if (r.type == '*' && r.elements.size() == 2)
        return {r.elements[0].str, to_port(std::stoll(r.elements[1].str))};
      last_error = r.is_error() ? r.str : "no such master";
    } catch (const std::exception &e) {
      last_error = e.what();
    }
  }
  throw std::runtime_error("SENTINEL GET-MASTER-ADDR-BY-NAME: " + last_error);
}

}  // namespace tollgate_test
