// Real redis-server processes for the tests.
//
// Each RedisServer is a child process on its own loopback port with its own
// temp dir, stopped by PID when the object goes away (and killed by the
// kernel if the test binary dies first). command() is a tiny blocking RESP
// client for test setup, over plain TCP or TLS.
//
// Threads: create, restart and destroy a server on a thread that outlives it
// (normally the test's own thread): the child asks the kernel for SIGKILL
// when the thread that forked it exits (PR_SET_PDEATHSIG is per thread).
// command() and query() may run on any thread, but not concurrently with
// kill9(), restart() or the destructor.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate_test {

// ---- RESP (version 2) helpers ----------------------------------------------

// One parsed reply. `type` is the RESP type byte: '+' simple string, '-'
// error, ':' integer, '$' bulk string, '*' array.
struct RespValue {
  char type = 0;
  std::string str;        // '+', '-', '$' (without the type byte or CRLF)
  long long integer = 0;  // ':'
  bool null = false;      // "$-1" or "*-1"
  std::vector<RespValue> elements;  // '*'

  bool is_error() const { return type == '-'; }
};

// A command as a RESP array of bulk strings.
std::string resp_encode(const std::vector<std::string> &args);

// Parses one complete value starting at buf[pos]. Returns it and moves `pos`
// past it, or std::nullopt (pos unchanged) if more bytes are needed. Throws
// std::runtime_error on malformed input.
std::optional<RespValue> resp_parse(std::string_view buf, size_t &pos);

// ---- Child processes
// ---------------------------------------------------------

struct ProcessResult {
  int exit_code = -1;      // the exit status, or -signal if killed by a signal
  bool timed_out = false;  // killed (SIGKILL) after `timeout`
  std::string output;      // stdout and stderr, interleaved
};

// Runs argv[0] (looked up in PATH unless it holds a '/') with stdin from
// /dev/null, collecting its output; kills it by PID after `timeout`. No
// shell is involved. Throws only if the process cannot be started.
ProcessResult run_process(
    const std::vector<std::string> &argv,
    std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A port on 127.0.0.1 that nothing is bound to right now, chosen below the
// kernel's ephemeral range so that no outgoing connection can take it while
// a server is down between kill9() and restart(). A race with another
// process remains; callers retry on "address in use".
uint16_t free_port();

// ---- RedisServer -----------------------------------------------------------

struct AclUser {
  std::string name;
  std::string password;
  std::string rules = "~* &* +@all";  // ACL rules after "on >password"
};

struct RedisOptions {
  std::string password;            // requirepass (for the default user)
  std::vector<AclUser> acl_users;  // written as `user` lines of a config file

  // TLS only: --tls-port <port> --port 0. The files default to test_certs():
  // server certificate and key (localhost, 127.0.0.1) and the test CA.
  bool tls = false;
  std::string tls_cert_file, tls_key_file, tls_ca_cert_file;
  // --tls-auth-clients: "no" (default here), "yes" (mutual TLS), "optional";
  // "" leaves Redis's own default, which is "yes".
  std::string tls_auth_clients = "no";

  // Also listen on <temp dir>/redis.sock (--unixsocketperm 700).
  bool unix_socket = false;

  // Appended to the command line, e.g. {"--maxmemory", "1mb"}. Must not
  // change --logfile, --loglevel or --daemonize: readiness is read from the
  // log.
  std::vector<std::string> extra_args;

  // How long start-up may take before the constructor gives up.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(5);
};

class RedisServer {
 public:
  using Options = RedisOptions;

  // Starts the server and waits until it answers; throws
  // std::runtime_error with the tail of its log if it cannot.
  explicit RedisServer(RedisOptions options = {});
  ~RedisServer();
  RedisServer(const RedisServer &) = delete;
  RedisServer &operator=(const RedisServer &) = delete;

  uint16_t port() const { return port_; }  // the TLS port for TLS servers
  std::string host() const { return "127.0.0.1"; }
  const std::string &unix_path() const { return unix_path_; }  // "" if none
  // redis://127.0.0.1:<port> (rediss:// for TLS), with the password (percent
  // encoded) as user info if one is set: redis://:<password>@127.0.0.1:<port>
  std::string url() const;
  // unix://<unix_path()> (no password); "" without a unix socket.
  std::string unix_url() const;
  pid_t pid() const { return pid_; }  // -1 while killed
  bool running() const { return pid_ > 0; }
  bool stopped() const { return stopped_; }
  const RedisOptions &options() const { return options_; }
  const std::string &dir() const { return dir_; }  // its temp dir
  std::string log() const;                         // the whole log so far

  // SIGKILL and reap. No-op if not running.
  void kill9();
  // SIGSTOP; returns once the process is stopped. It keeps its socket:
  // connections succeed (the kernel's backlog) but nothing is answered.
  void stop();
  // SIGCONT.
  void cont();
  // Starts it again on the same port (kill9() first if it is running),
  // retrying for a few seconds while the port is still in use. Data is not
  // kept (no persistence).
  void restart();

  // Sends one command on a new connection (AUTH first if a password is set)
  // and returns the reply's raw RESP bytes, e.g. "+PONG\r\n" or ":-2\r\n".
  // Error replies are returned, not thrown; a connection failure or a
  // timeout throws std::runtime_error. TLS servers are reached over TLS
  // (presenting test_certs().client_cert, not verifying the server).
  std::string command(
      const std::vector<std::string> &args,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  // The same reply, parsed.
  RespValue query(
      const std::vector<std::string> &args,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  // Without AUTH, e.g. to see -NOAUTH.
  std::string command_noauth(
      const std::vector<std::string> &args,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  // After "AUTH <user> <password>" (whose reply is not returned: a failed
  // AUTH shows as the command's -NOAUTH reply).
  std::string command_as(
      const std::string &user, const std::string &password,
      const std::vector<std::string> &args,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  enum class Started { ready, port_in_use };
  Started start_once(std::chrono::steady_clock::time_point deadline);
  std::string send_commands(const std::vector<std::vector<std::string>> &cmds,
                            std::chrono::milliseconds timeout) const;
  void terminate();  // SIGTERM, wait up to 2 s, then SIGKILL
  void cleanup();

  RedisOptions options_;
  pid_t owner_ = -1;  // the process that created this object
  std::string dir_;
  std::string log_path_;
  std::string conf_path_;
  std::string unix_path_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  bool stopped_ = false;
};

}  // namespace tollgate_test
