#include "support/redis_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "support/certs.hpp"

namespace tollgate_test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char *kRedisServer = "/usr/bin/redis-server";

// The TCP connection could not be made (as opposed to failing later).
struct ConnectError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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

// ---- A blocking client connection (plain or TLS) with one deadline --------

class Conn {
 public:
  Conn(uint16_t port, bool tls, Clock::time_point deadline)
      : deadline_(deadline) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) fail_errno("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
      if (errno != EINPROGRESS) {
        const int e = errno;
        close(fd_);
        fd_ = -1;
        throw ConnectError("connect to 127.0.0.1:" + std::to_string(port) +
                           ": " + std::strerror(e));
      }
      try {
        wait_fd(fd_, POLLOUT, deadline_);
      } catch (const std::exception &e) {
        close(fd_);
        fd_ = -1;
        throw ConnectError("connect to 127.0.0.1:" + std::to_string(port) +
                           ": " + e.what());
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        close(fd_);
        fd_ = -1;
        throw ConnectError("connect to 127.0.0.1:" + std::to_string(port) +
                           ": " + std::strerror(err));
      }
    }
    if (tls) {
      try {
        start_tls();
      } catch (...) {
        free_tls();
        close(fd_);
        fd_ = -1;
        throw;
      }
    }
  }

  ~Conn() {
    free_tls();
    if (fd_ >= 0) close(fd_);
  }
  Conn(const Conn &) = delete;
  Conn &operator=(const Conn &) = delete;

  void write_all(std::string_view data) {
    if (!ssl_) return raw_write(data);
    ERR_clear_error();
    const int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
    // Memory BIOs take everything at once.
    if (n != static_cast<int>(data.size())) throw tls_error("SSL_write");
    flush_tls();
  }

  // Appends at least one byte to `buf`.
  void read_some(std::string &buf) {
    char tmp[16384];
    if (!ssl_) {
      buf.append(tmp, raw_read(tmp, sizeof tmp));
      return;
    }
    for (;;) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, tmp, sizeof tmp);
      flush_tls();
      if (n > 0) {
        buf.append(tmp, static_cast<size_t>(n));
        return;
      }
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_READ) {
        fill_tls();
        continue;
      }
      if (e == SSL_ERROR_ZERO_RETURN)
        throw std::runtime_error("connection closed by the server");
      throw tls_error("SSL_read");
    }
  }

 private:
  // TLS over memory BIOs: our own send(MSG_NOSIGNAL) and recv move the
  // bytes, so a dead server cannot raise SIGPIPE and the deadline holds.
  void start_tls() {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (!ctx_) throw tls_error("SSL_CTX_new");
    // A setup tool, not a test of verification: trust anything.
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    const Certs &c = test_certs();
    if (SSL_CTX_use_certificate_chain_file(ctx_, c.client_cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, c.client_key.c_str(),
                                    SSL_FILETYPE_PEM) != 1)
      throw tls_error("loading the client certificate");
    ssl_ = SSL_new(ctx_);
    if (!ssl_) throw tls_error("SSL_new");
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (!rbio || !wbio) {
      BIO_free(rbio);
      BIO_free(wbio);
      throw tls_error("BIO_new");
    }
    SSL_set_bio(ssl_, rbio, wbio);  // owned by ssl_ from here
    rbio_ = rbio;
    wbio_ = wbio;
    SSL_set_connect_state(ssl_);
    for (;;) {
      ERR_clear_error();
      const int r = SSL_do_handshake(ssl_);
      flush_tls();
      if (r == 1) return;
      if (SSL_get_error(ssl_, r) != SSL_ERROR_WANT_READ)
        throw tls_error("TLS handshake");
      fill_tls();
    }
  }

  void free_tls() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    ssl_ = nullptr;
    ctx_ = nullptr;
  }

  static std::runtime_error tls_error(const std::string &what) {
    std::string msg = what + " failed";
    while (const unsigned long e = ERR_get_error()) {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      msg += std::string(": ") + buf;
    }
    return std::runtime_error(msg);
  }

  void flush_tls() {
    char tmp[16384];
    while (BIO_ctrl_pending(wbio_) > 0) {
      const int n = BIO_read(wbio_, tmp, sizeof tmp);
      if (n <= 0) break;
      raw_write(std::string_view(tmp, static_cast<size_t>(n)));
    }
  }

  void fill_tls() {
    char tmp[16384];
    const size_t n = raw_read(tmp, sizeof tmp);
    if (BIO_write(rbio_, tmp, static_cast<int>(n)) != static_cast<int>(n))
      throw tls_error("BIO_write");
  }

  void raw_write(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_fd(fd_, POLLOUT, deadline_);
      } else if (errno != EINTR) {
        fail_errno("send");
      }
    }
  }

  size_t raw_read(char *buf, size_t cap) {
    for (;;) {
      const ssize_t n = recv(fd_, buf, cap, 0);
      if (n > 0) return static_cast<size_t>(n);
      if (n == 0) throw std::runtime_error("connection closed by the server");
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        wait_fd(fd_, POLLIN, deadline_);
      else if (errno != EINTR)
        fail_errno("recv");
    }
  }

  Clock::time_point deadline_;
  int fd_ = -1;
  SSL_CTX *ctx_ = nullptr;
  SSL *ssl_ = nullptr;
  BIO *rbio_ = nullptr;  // owned by ssl_
  BIO *wbio_ = nullptr;  // owned by ssl_
};

// ---- RESP ------------------------------------------------------------------

long long parse_ll(std::string_view s) {
  long long v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size())
    throw std::runtime_error("RESP: not an integer: '" + std::string(s) + "'");
  return v;
}

std::optional<RespValue> parse_at(std::string_view buf, size_t &pos,
                                  int depth) {
  if (depth > 32) throw std::runtime_error("RESP: nested too deep");
  if (pos >= buf.size()) return std::nullopt;
  const size_t eol = buf.find("\r\n", pos + 1);
  if (eol == std::string_view::npos) return std::nullopt;
  const std::string_view line = buf.substr(pos + 1, eol - pos - 1);
  size_t p = eol + 2;
  RespValue v;
  v.type = buf[pos];
  switch (v.type) {
    case '+':
    case '-':
      v.str = line;
      break;
    case ':':
      v.integer = parse_ll(line);
      break;
    case '$': {
      const long long n = parse_ll(line);
      if (n == -1) {
        v.null = true;
        break;
      }
      if (n < 0 || n > (512LL << 20))
        throw std::runtime_error("RESP: bad bulk length " + std::string(line));
      const auto len = static_cast<size_t>(n);
      if (buf.size() - p < len + 2) return std::nullopt;
      if (buf.substr(p + len, 2) != "\r\n")
        throw std::runtime_error("RESP: bulk string without CRLF");
      v.str = buf.substr(p, len);
      p += len + 2;
      break;
    }
    case '*': {
      const long long n = parse_ll(line);
      if (n == -1) {
        v.null = true;
        break;
      }
      if (n < 0 || n > 10'000'000)
        throw std::runtime_error("RESP: bad array length " + std::string(line));
      for (long long i = 0; i < n; ++i) {
        std::optional<RespValue> e = parse_at(buf, p, depth + 1);
        if (!e) return std::nullopt;
        v.elements.push_back(std::move(*e));
      }
      break;
    }
    default:
      throw std::runtime_error("RESP: unexpected type byte '" +
                               std::string(1, v.type) + "'");
  }
  pos = p;
  return v;
}

// ---- Processes -------------------------------------------------------------

// Reaps `pid`. Returns true once it has exited (or is not our child any
// more, e.g. reaped by someone else); `block` waits for that.
bool reap(pid_t pid, bool block, int *status = nullptr) {
  for (;;) {
    int st = 0;
    const pid_t r = waitpid(pid, &st, block ? 0 : WNOHANG);
    if (r == pid) {
      if (status) *status = st;
      return true;
    }
    if (r == 0) return false;
    if (errno == EINTR) continue;
    if (status) *status = -1;
    return true;  // ECHILD
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

// fork + exec with stdin from /dev/null and stdout and stderr to `out_fd`.
// The child gets SIGKILL if the forking thread dies, starts with no signal
// blocked and inherits no descriptor but 0, 1 and 2.
pid_t spawn(const std::string &path, const std::vector<std::string> &argv,
            int out_fd) {
  // Everything the child needs is prepared before fork: between fork and
  // exec only async-signal-safe calls are allowed (the test process has
  // threads).
  std::vector<char *> cargv;
  cargv.reserve(argv.size() + 1);
  for (const std::string &a : argv)
    cargv.push_back(const_cast<char *>(a.c_str()));
  cargv.push_back(nullptr);
  const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) fail_errno("open /dev/null");
  sigset_t none;
  sigemptyset(&none);
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);  // the parent died already
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
      _exit(126);
    if (close_range(3, ~0U, 0) != 0)
      for (int fd = 3; fd < 65536; ++fd) close(fd);
    execv(path.c_str(), cargv.data());
    _exit(127);
  }
  const int fork_errno = errno;
  close(devnull);
  if (pid < 0) {
    errno = fork_errno;
    fail_errno("fork");
  }
  return pid;
}

std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string tail(const std::string &text, size_t lines = 30) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (size_t n = 0; n < lines && pos > 0; ++n) {
    const size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return pos == 0 ? text : text.substr(pos + 1);
}

std::string percent_encode(const std::string &s) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// A value in a redis config file, double-quoted (sdssplitargs rules).
std::string conf_quote(const std::string &s) {
  std::string q = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

std::string make_temp_dir(const char *prefix) {
  std::string tmpl = (fs::temp_directory_path() / prefix).string() + "XXXXXX";
  // A unix socket path must fit in sun_path (108 bytes).
  if (tmpl.size() > 70) tmpl = std::string("/tmp/") + prefix + "XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) fail_errno("mkdtemp " + tmpl);
  return tmpl;
}

}  // namespace

// ---- Public helpers
// ----------------------------------------------------------

std::string resp_encode(const std::vector<std::string> &args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string &a : args)
    out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

std::optional<RespValue> resp_parse(std::string_view buf, size_t &pos) {
  return parse_at(buf, pos, 0);
}

ProcessResult run_process(const std::vector<std::string> &argv,
                          std::chrono::milliseconds timeout) {
  if (argv.empty()) throw std::runtime_error("run_process: empty argv");
  const std::string path = find_in_path(argv[0]);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) fail_errno("pipe2");
  pid_t pid;
  try {
    pid = spawn(path, argv, fds[1]);
  } catch (...) {
    close(fds[0]);
    close(fds[1]);
    throw;
  }
  close(fds[1]);

  ProcessResult result;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) {
      result.output.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;  // EOF: every writer closed the pipe
    }
  }
  close(fds[0]);
  int status = 0;
  reap(pid, true, &status);
  if (status == -1)
    result.exit_code = -1;
  else if (WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.exit_code = -WTERMSIG(status);
  return result;
}

uint16_t free_port() {
  // Below the ephemeral range (usually 32768-60999): kernels hand those to
  // outgoing connections and to bind(port 0), so a port from there could be
  // taken while its server is down.
  int lo = 32768;
  {
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    int a = 0, b = 0;
    if (range >> a >> b) lo = a;
  }
  thread_local std::mt19937 rng(std::random_device{}() ^
                                static_cast<unsigned>(getpid()));
  const bool have_range = lo > 12000;
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_errno("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (have_range)
      a.sin_port = htons(static_cast<uint16_t>(
          std::uniform_int_distribution<int>(10000, lo - 1)(rng)));
    socklen_t len = sizeof a;
    const bool ok =
        bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0;
    close(fd);
    if (ok) return ntohs(a.sin_port);
  }
  throw std::runtime_error("free_port: no free loopback port found");
}

// ---- RedisServer -----------------------------------------------------------

RedisServer::RedisServer(RedisOptions options) : options_(std::move(options)) {
  owner_ = getpid();
  dir_ = make_temp_dir("tollgate-redis-");
  try {
    log_path_ = dir_ + "/redis.log";
    conf_path_ = dir_ + "/redis.conf";
    if (options_.unix_socket) unix_path_ = dir_ + "/redis.sock";
    {
      std::ofstream conf(conf_path_);
      conf << "# written by tests/support/redis_server.cpp\n";
      for (const AclUser &u : options_.acl_users)
        conf << "user " << conf_quote(u.name) << " on "
             << conf_quote(">" + u.password) << " " << u.rules << "\n";
      if (!conf) throw std::runtime_error("cannot write " + conf_path_);
    }
    if (options_.tls) test_certs();  // made before the clock starts
    const auto deadline = Clock::now() + options_.start_timeout;
    for (int attempt = 1;; ++attempt) {
      port_ = free_port();
      if (start_once(deadline) == Started::ready) return;
      // Someone took the port between free_port() and redis's bind.
      if (attempt == 20)
        throw std::runtime_error("redis-server: every port tried was taken");
    }
  } catch (...) {
    cleanup();
    throw;
  }
}

RedisServer::~RedisServer() {
  try {
    cleanup();
  } catch (...) {
    // A destructor must not throw; the PDEATHSIG still kills the child.
  }
}

void RedisServer::cleanup() {
  // A forked test child inherits this object; the server is not its own.
  if (getpid() != owner_) return;
  terminate();
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

void RedisServer::terminate() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);  // a stopped process would hold SIGTERM pending
  stopped_ = false;
  kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < deadline) {
    if (reap(pid_, false)) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
  kill9();
}

RedisServer::Started RedisServer::start_once(Clock::time_point deadline) {
  std::vector<std::string> args = {kRedisServer,
                                   conf_path_,
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--daemonize",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--logfile",
                                   "",
                                   "--loglevel",
                                   "notice",
                                   "--enable-debug-command",
                                   "local"};
  const std::string port = std::to_string(port_);
  if (options_.tls) {
    const Certs &c = test_certs();
    auto or_default = [](const std::string &v, const std::string &d) {
      return v.empty() ? d : v;
    };
    args.insert(
        args.end(),
        {"--port", "0", "--tls-port", port, "--tls-cert-file",
         or_default(options_.tls_cert_file, c.server_cert), "--tls-key-file",
         or_default(options_.tls_key_file, c.server_key), "--tls-ca-cert-file",
         or_default(options_.tls_ca_cert_file, c.ca_cert)});
    if (!options_.tls_auth_clients.empty())
      args.insert(args.end(),
                  {"--tls-auth-clients", options_.tls_auth_clients});
  } else {
    args.insert(args.end(), {"--port", port});
  }
  if (!options_.password.empty())
    args.insert(args.end(), {"--requirepass", options_.password});
  if (!unix_path_.empty())
    args.insert(args.end(),
                {"--unixsocket", unix_path_, "--unixsocketperm", "700"});
  args.insert(args.end(), options_.extra_args.begin(),
              options_.extra_args.end());

  const int log_fd =
      open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) fail_errno("open " + log_path_);
  struct stat st {};
  fstat(log_fd, &st);
  const auto log_start = static_cast<size_t>(st.st_size);
  try {
    pid_ = spawn(kRedisServer, args, log_fd);
  } catch (...) {
    close(log_fd);
    throw;
  }
  close(log_fd);
  stopped_ = false;

  // Ready when the log says so (then the port is ours: redis exits if its
  // bind fails) and a PING gets any answer (-NOAUTH counts).
  for (;;) {
    int status = 0;
    if (reap(pid_, false, &status)) {
      pid_ = -1;
      const std::string log = read_file(log_path_).substr(log_start);
      if (log.find("Address already in use") != std::string::npos)
        return Started::port_in_use;
      throw std::runtime_error("redis-server exited during start-up (port " +
                               port + "); log:\n" + tail(log));
    }
    if (read_file(log_path_).find("Ready to accept connections", log_start) !=
        std::string::npos) {
      try {
        send_commands({{"PING"}}, milliseconds(std::clamp(
                                      remaining_ms(deadline), 1, 1000)));
        return Started::ready;
      } catch (const ConnectError &) {
        // Not accepting yet; try again.
      } catch (const std::exception &) {
        // Connected, but a TLS server may refuse our client certificate (a
        // test's own CA): accepting connections is all readiness needs.
        if (options_.tls) return Started::ready;
      }
    }
    if (Clock::now() >= deadline) {
      kill9();
      throw std::runtime_error(
          "redis-server did not become ready within the start timeout (port " +
          port + "); log:\n" + tail(read_file(log_path_).substr(log_start)));
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

std::string RedisServer::url() const {
  std::string u = options_.tls ? "rediss://" : "redis://";
  if (!options_.password.empty())
    u += ":" + percent_encode(options_.password) + "@";
  return u + host() + ":" + std::to_string(port_);
}

std::string RedisServer::unix_url() const {
  return unix_path_.empty() ? std::string() : "unix://" + unix_path_;
}

std::string RedisServer::log() const {
  return read_file(log_path_);
}

void RedisServer::kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  reap(pid_, true);
  pid_ = -1;
  stopped_ = false;
}

void RedisServer::stop() {
  if (pid_ <= 0) throw std::runtime_error("stop(): the server is not running");
  kill(pid_, SIGSTOP);
  // Wait until it really is stopped, so the test's next step sees it so.
  for (;;) {
    int st = 0;
    const pid_t r = waitpid(pid_, &st, WUNTRACED);
    if (r == pid_ && WIFSTOPPED(st)) break;
    if (r == pid_ || (r < 0 && errno != EINTR)) {
      pid_ = -1;  // it exited instead
      throw std::runtime_error("stop(): the server exited");
    }
  }
  stopped_ = true;
}

void RedisServer::cont() {
  if (pid_ <= 0) throw std::runtime_error("cont(): the server is not running");
  kill(pid_, SIGCONT);
  stopped_ = false;
}

void RedisServer::restart() {
  kill9();
  // Redis binds with SO_REUSEADDR, so TIME_WAIT does not stop it; a socket
  // still bound elsewhere (a late client in another process) might.
  const auto deadline =
      Clock::now() +
      std::max<milliseconds>(options_.start_timeout, std::chrono::seconds(5));
  for (;;) {
    if (start_once(deadline) == Started::ready) return;
    if (Clock::now() >= deadline)
      throw std::runtime_error("restart(): port " + std::to_string(port_) +
                               " stayed in use");
    std::this_thread::sleep_for(milliseconds(50));
  }
}

std::string RedisServer::send_commands(
    const std::vector<std::vector<std::string>> &cmds,
    std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  Conn conn(port_, options_.tls, deadline);
  std::string out;
  for (const auto &c : cmds) out += resp_encode(c);
  conn.write_all(out);
  std::string buf;
  size_t pos = 0, last = 0;
  for (size_t done = 0; done < cmds.size();) {
    last = pos;
    if (resp_parse(buf, pos)) {
      ++done;
      continue;
    }
    conn.read_some(buf);
  }
  return buf.substr(last, pos - last);
}

std::string RedisServer::command(const std::vector<std::string> &args,
                                 std::chrono::milliseconds timeout) const {
  if (options_.password.empty()) return send_commands({args}, timeout);
  return send_commands({{"AUTH", options_.password}, args}, timeout);
}

RespValue RedisServer::query(const std::vector<std::string> &args,
                             std::chrono::milliseconds timeout) const {
  const std::string raw = command(args, timeout);
  size_t pos = 0;
  return *resp_parse(raw, pos);
}

std::string RedisServer::command_noauth(
    const std::vector<std::string> &args,
    std::chrono::milliseconds timeout) const {
  return send_commands({args}, timeout);
}

std::string RedisServer::command_as(const std::string &user,
                                    const std::string &password,
                                    const std::vector<std::string> &args,
                                    std::chrono::milliseconds timeout) const {
  return send_commands({{"AUTH", user, password}, args}, timeout);
}

}  // namespace tollgate_test
