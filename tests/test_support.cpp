// Tests of the test fixtures themselves (tests/support/): real redis-server
// processes, TLS material and the scripted fake server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/certs.hpp"
#include "support/fake_server.hpp"
#include "support/redis_server.hpp"

using namespace tollgate_test;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

long long elapsed_ms(Clock::time_point t0) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
}

bool process_exists(pid_t pid) {
  return kill(pid, 0) == 0 || errno != ESRCH;
}

// The state letter in /proc/<pid>/stat ('T' when stopped).
char process_state(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(f)),
                  std::istreambuf_iterator<char>());
  const size_t paren = all.rfind(')');
  return paren == std::string::npos || paren + 2 >= all.size() ? '?'
                                                               : all[paren + 2];
}

// A raw TCP client for poking the fake server.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0);
  }
  ~Client() { close(fd_); }
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;

  void send(const std::string &bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  void command(const std::vector<std::string> &args) {
    send(resp_encode(args));
  }

  // Reads until `n` bytes have arrived, EOF, an error or the timeout.
  std::string read(size_t n, milliseconds timeout = milliseconds(2000)) {
    std::string out;
    const auto deadline = Clock::now() + timeout;
    while (out.size() < n && !eof_) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - Clock::now())
              .count();
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[65536];
      const ssize_t r = recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) {
        eof_ = true;
        error_ = r < 0 ? errno : 0;
        break;
      }
      ++reads;
      out.append(buf, static_cast<size_t>(r));
    }
    return out;
  }
  bool eof() const { return eof_; }
  int error() const { return error_; }
  int reads = 0;

 private:
  int fd_ = -1;
  bool eof_ = false;
  int error_ = 0;
};

}  // namespace

// ---- RESP helpers
// ------------------------------------------------------------

TEST_CASE("support: resp_encode and resp_parse", "[support]") {
  CHECK(resp_encode({"SET", "k", ""}) ==
        "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");

  const std::string two = "*3\r\n:-5\r\n$-1\r\n*1\r\n+OK\r\n-ERR x\r\n";
  size_t pos = 0;
  const auto a = resp_parse(two, pos);
  REQUIRE(a);
  CHECK(a->type == '*');
  REQUIRE(a->elements.size() == 3);
  CHECK(a->elements[0].integer == -5);
  CHECK(a->elements[1].null);
  CHECK(a->elements[2].elements.at(0).str == "OK");
  const auto e = resp_parse(two, pos);
  REQUIRE(e);
  CHECK(e->is_error());
  CHECK(e->str == "ERR x");
  CHECK(pos == two.size());

  // Incomplete input leaves pos alone.
  for (const std::string partial : {"$5\r\nhel", "*2\r\n:1\r\n", "+OK\r"}) {
    size_t p = 0;
    CHECK_FALSE(resp_parse(partial, p));
    CHECK(p == 0);
  }
  size_t p = 0;
  CHECK_THROWS(resp_parse("!garbage\r\n", p));
  CHECK_THROWS(resp_parse(":12x\r\n", p));
  CHECK_THROWS(resp_parse("$999999999999\r\n", p));
}

// ---- RedisServer
// -------------------------------------------------------------

TEST_CASE("support: a redis-server starts, answers and is stopped by pid",
          "[support]") {
  pid_t pid = -1;
  std::string dir;
  uint16_t port = 0;
  {
    RedisServer s;
    pid = s.pid();
    dir = s.dir();
    port = s.port();
    CHECK(pid > 0);
    CHECK(process_exists(pid));
    CHECK(s.host() == "127.0.0.1");
    CHECK(s.url() == "redis://127.0.0.1:" + std::to_string(port));
    CHECK(s.unix_path().empty());
    CHECK(s.command({"PING"}) == "+PONG\r\n");
    CHECK(s.command({"SET", "k", "v", "PX", "60000"}) == "+OK\r\n");
    CHECK(s.command({"GET", "k"}) == "$1\r\nv\r\n");
    CHECK(s.command({"GET", "missing"}) == "$-1\r\n");
    const RespValue ttl = s.query({"PTTL", "k"});
    CHECK(ttl.type == ':');
    CHECK(ttl.integer > 50000);
    CHECK(ttl.integer <= 60000);
    const RespValue keys = s.query({"KEYS", "*"});
    REQUIRE(keys.elements.size() == 1);
    CHECK(keys.elements[0].str == "k");
    CHECK(s.query({"NO-SUCH-COMMAND"}).is_error());
    CHECK(s.command({"FLUSHALL"}) == "+OK\r\n");
    CHECK(s.command({"SCRIPT", "FLUSH"}) == "+OK\r\n");
    CHECK(s.command({"DBSIZE"}) == ":0\r\n");
    // Loopback only, no persistence, and its log in its own temp dir.
    CHECK(s.command({"CONFIG", "GET", "bind"}) ==
          "*2\r\n$4\r\nbind\r\n$9\r\n127.0.0.1\r\n");
    CHECK(s.command({"CONFIG", "GET", "save"}) ==
          "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    CHECK(s.command({"CONFIG", "GET", "appendonly"}) ==
          "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    CHECK_THAT(s.log(), Contains("Ready to accept connections"));
    // DEBUG is allowed from loopback (DEBUG SLEEP freezes a server).
    CHECK(s.command({"DEBUG", "SLEEP", "0"}) == "+OK\r\n");
  }
  CHECK_FALSE(process_exists(pid));  // SIGTERM'd and reaped
  CHECK_FALSE(std::filesystem::exists(dir));
}

TEST_CASE("support: servers side by side get their own ports and data",
          "[support]") {
  RedisServer a, b;
  CHECK(a.port() != b.port());
  CHECK(a.pid() != b.pid());
  a.command({"SET", "only-in-a", "1"});
  CHECK(b.command({"EXISTS", "only-in-a"}) == ":0\r\n");
  CHECK(a.command({"EXISTS", "only-in-a"}) == ":1\r\n");
}

TEST_CASE("support: password and ACL users", "[support]") {
  RedisOptions o;
  o.password = "p@ss word:1";
  o.acl_users = {{"alice", "alice-pw"}, {"reader", "reader-pw", "~* +@read"}};
  RedisServer s(o);
  CHECK_THAT(s.command_noauth({"GET", "x"}), StartsWith("-NOAUTH"));
  CHECK(s.command({"PING"}) == "+PONG\r\n");
  CHECK(s.url() ==
        "redis://:p%40ss%20word%3A1@127.0.0.1:" + std::to_string(s.port()));
  CHECK(s.command_as("alice", "alice-pw", {"ACL", "WHOAMI"}) ==
        "$5\r\nalice\r\n");
  CHECK_THAT(s.command_as("alice", "wrong", {"PING"}), StartsWith("-NOAUTH"));
  CHECK(s.command_as("reader", "reader-pw", {"GET", "x"}) == "$-1\r\n");
  CHECK_THAT(s.command_as("reader", "reader-pw", {"SET", "x", "1"}),
             StartsWith("-NOPERM"));
}

TEST_CASE("support: kill9 and restart on the same port", "[support]") {
  RedisServer s;
  const uint16_t port = s.port();
  const pid_t first = s.pid();
  REQUIRE(s.command({"SET", "k", "v"}) == "+OK\r\n");
  // A client that stays connected keeps the server's side of the
  // connection alive in the kernel after the kill; the port must still be
  // reusable.
  Client held(port);
  held.command({"PING"});
  CHECK(held.read(7) == "+PONG\r\n");

  s.kill9();
  CHECK_FALSE(s.running());
  CHECK(s.pid() == -1);
  CHECK_FALSE(process_exists(first));
  CHECK_THROWS(s.command({"PING"}, milliseconds(500)));

  s.restart();
  CHECK(s.port() == port);
  CHECK(s.pid() != first);
  CHECK(s.command({"PING"}) == "+PONG\r\n");
  CHECK(s.command({"GET", "k"}) == "$-1\r\n");  // no persistence

  // restart() on a running server kills it first.
  const pid_t second = s.pid();
  s.restart();
  CHECK(s.port() == port);
  CHECK_FALSE(process_exists(second));
  CHECK(s.command({"PING"}) == "+PONG\r\n");
}

TEST_CASE("support: stop and cont", "[support]") {
  const auto make = Clock::now();
  pid_t pid = -1;
  {
    RedisServer s;
    pid = s.pid();
    s.stop();
    CHECK(s.stopped());
    CHECK(process_state(pid) == 'T');
    const auto t0 = Clock::now();
    CHECK_THROWS(s.command({"PING"}, milliseconds(300)));
    CHECK(elapsed_ms(t0) >= 290);
    s.cont();
    CHECK_FALSE(s.stopped());
    CHECK(s.command({"PING"}) == "+PONG\r\n");
    s.stop();  // destroyed while stopped: SIGCONT, then SIGTERM
  }
  CHECK_FALSE(process_exists(pid));
  CHECK(elapsed_ms(make) < 3000);  // not the 2 s SIGKILL fallback plus more
}

TEST_CASE("support: the unix socket", "[support]") {
  RedisOptions o;
  o.unix_socket = true;
  RedisServer s(o);
  REQUIRE_FALSE(s.unix_path().empty());
  CHECK(s.unix_path().front() == '/');
  CHECK(s.unix_url() == "unix://" + s.unix_path());
  struct stat st {};
  REQUIRE(stat(s.unix_path().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0700);
  const ProcessResult r = run_process(
      {"redis-cli", "-s", s.unix_path(), "PING"}, milliseconds(10000));
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("PONG"));
  CHECK(s.command({"PING"}) == "+PONG\r\n");  // TCP as well
}

TEST_CASE("support: extra args, and a server that cannot start", "[support]") {
  RedisOptions o;
  o.extra_args = {"--maxmemory", "1mb"};
  RedisServer s(o);
  CHECK(s.command({"CONFIG", "GET", "maxmemory"}) ==
        "*2\r\n$9\r\nmaxmemory\r\n$7\r\n1048576\r\n");

  RedisOptions bad;
  bad.extra_args = {"--no-such-directive", "1"};
  try {
    RedisServer never(bad);
    FAIL("a bad directive should not start");
  } catch (const std::runtime_error &e) {
    // The message carries the log's tail, which names the problem.
    CHECK_THAT(e.what(), Contains("no-such-directive"));
  }
}

TEST_CASE("support: run_process", "[support]") {
  ProcessResult ok =
      run_process({"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(ok.exit_code == 3);
  CHECK_FALSE(ok.timed_out);
  CHECK_THAT(ok.output, Contains("out") && Contains("err"));
  const auto t0 = Clock::now();
  ProcessResult slow = run_process({"sleep", "10"}, milliseconds(200));
  CHECK(slow.timed_out);
  CHECK(slow.exit_code == -SIGKILL);
  CHECK(elapsed_ms(t0) < 2000);
  CHECK_THROWS(run_process({"no-such-program-tollgate"}));
}

// ---- TLS -----------------------------------------------------------------

TEST_CASE("support: test certificates", "[support][tls]") {
  const Certs &c = test_certs();
  CHECK(&c == &test_certs());  // cached
  for (const std::string *f :
       {&c.ca_cert, &c.server_cert, &c.server_key, &c.wrong_cert,
        &c.client_cert, &c.client_key, &c.other_ca_cert, &c.other_client_cert})
    CHECK(std::filesystem::path(*f).is_absolute());
  auto verify = [](const std::string &ca, const std::string &cert,
                   std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {"openssl", "verify", "-CAfile", ca};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(cert);
    return run_process(argv).exit_code == 0;
  };
  CHECK(verify(c.ca_cert, c.server_cert, {"-verify_hostname", "localhost"}));
  CHECK(verify(c.ca_cert, c.server_cert, {"-verify_ip", "127.0.0.1"}));
  CHECK_FALSE(
      verify(c.ca_cert, c.wrong_cert, {"-verify_hostname", "localhost"}));
  CHECK(verify(c.ca_cert, c.wrong_cert, {"-verify_hostname", "wrong.example"}));
  CHECK_FALSE(verify(c.other_ca_cert, c.server_cert));
  CHECK(verify(c.ca_cert, c.client_cert, {"-purpose", "sslclient"}));
  CHECK(verify(c.other_ca_cert, c.other_client_cert));
  CHECK_FALSE(verify(c.ca_cert, c.other_client_cert));
}

namespace {

// `openssl s_client` handshake against a server, verifying like a client
// would. Exits 0 only if verification succeeded.
ProcessResult s_client(uint16_t port, const std::string &ca,
                       const std::string &name) {
  return run_process(
      {"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
       "-CAfile", ca, "-verify_return_error", "-verify_hostname", name,
       "-brief"},
      milliseconds(10000));
}

ProcessResult cli_tls(uint16_t port, std::vector<std::string> tls_args) {
  std::vector<std::string> argv = {"redis-cli", "--tls", "-h",
                                   "127.0.0.1", "-p",    std::to_string(port)};
  argv.insert(argv.end(), tls_args.begin(), tls_args.end());
  argv.push_back("PING");
  return run_process(argv, milliseconds(10000));
}

}  // namespace

TEST_CASE("support: a TLS server", "[support][tls]") {
  const Certs &c = test_certs();
  RedisOptions o;
  o.tls = true;
  RedisServer s(o);
  CHECK(s.url() == "rediss://127.0.0.1:" + std::to_string(s.port()));
  CHECK(s.command({"PING"}) == "+PONG\r\n");  // the fixture's own TLS client
  CHECK(s.command({"CONFIG", "GET", "port"}) ==
        "*2\r\n$4\r\nport\r\n$1\r\n0\r\n");  // no plaintext port

  const ProcessResult cli = cli_tls(s.port(), {"--cacert", c.ca_cert});
  CHECK(cli.exit_code == 0);
  CHECK_THAT(cli.output, Contains("PONG"));

  const ProcessResult good = s_client(s.port(), c.ca_cert, "localhost");
  INFO(good.output);
  CHECK(good.exit_code == 0);
  CHECK_THAT(good.output, Contains("Verification: OK"));
  const ProcessResult wrong_ca =
      s_client(s.port(), c.other_ca_cert, "localhost");
  INFO(wrong_ca.output);
  CHECK(wrong_ca.exit_code != 0);
  const ProcessResult wrong_name =
      s_client(s.port(), c.ca_cert, "wrong.example");
  INFO(wrong_name.output);
  CHECK(wrong_name.exit_code != 0);

  // Plaintext to the TLS port gets no RESP answer.
  bool answered = true;
  try {
    Client plain(s.port());
    plain.command({"PING"});
    answered = plain.read(7, milliseconds(500)) == "+PONG\r\n";
  } catch (...) {
    answered = false;
  }
  CHECK_FALSE(answered);
}

TEST_CASE("support: a TLS server with the wrong.example certificate",
          "[support][tls]") {
  const Certs &c = test_certs();
  RedisOptions o;
  o.tls = true;
  o.tls_cert_file = c.wrong_cert;
  o.tls_key_file = c.wrong_key;
  RedisServer s(o);
  CHECK(s.command({"PING"}) == "+PONG\r\n");
  CHECK(s_client(s.port(), c.ca_cert, "localhost").exit_code != 0);
  CHECK(s_client(s.port(), c.ca_cert, "wrong.example").exit_code == 0);
}

TEST_CASE("support: a mutual-TLS server", "[support][tls]") {
  const Certs &c = test_certs();
  RedisOptions o;
  o.tls = true;
  o.tls_auth_clients = "yes";
  RedisServer s(o);
  CHECK(s.command({"PING"}) == "+PONG\r\n");  // presents the client cert
  const ProcessResult with_cert = cli_tls(
      s.port(),
      {"--cacert", c.ca_cert, "--cert", c.client_cert, "--key", c.client_key});
  CHECK(with_cert.exit_code == 0);
  CHECK_THAT(with_cert.output, Contains("PONG"));
  const ProcessResult without = cli_tls(s.port(), {"--cacert", c.ca_cert});
  CHECK_THAT(without.output, !Contains("PONG"));
  const ProcessResult other =
      cli_tls(s.port(), {"--cacert", c.ca_cert, "--cert", c.other_client_cert,
                         "--key", c.other_client_key});
  CHECK_THAT(other.output, !Contains("PONG"));
}

// ---- FakeServer ------------------------------------------------------------

TEST_CASE("support: fake server answers in step, then misbehaves",
          "[support][fake]") {
  FakeServer fake(FakeScript::ok_then(2, FakeReply::send("*888888880\r\n")));
  CHECK(fake.url() == "redis://127.0.0.1:" + std::to_string(fake.port()));
  Client c(fake.port());
  c.command({"PING"});
  CHECK(c.read(5) == "+OK\r\n");
  c.command({"AUTH", "x"});
  CHECK(c.read(5) == "+OK\r\n");
  c.command({"EVALSHA", "abc", "1", "k"});
  CHECK(c.read(12) == "*888888880\r\n");
  c.command({"PING"});
  CHECK(c.read(1, milliseconds(200)).empty());  // silent afterwards
  CHECK_FALSE(c.eof());
  REQUIRE(fake.wait_for_commands(4, milliseconds(2000)));
  const std::vector<FakeCommand> log = fake.commands();
  REQUIRE(log.size() == 4);
  CHECK(log[2].args == std::vector<std::string>{"EVALSHA", "abc", "1", "k"});
  CHECK(log[2].index == 2);
  CHECK(log[2].connection == 0);
  CHECK(fake.connections_accepted() == 1);
}

TEST_CASE("support: fake server counts pipelined and split commands",
          "[support][fake]") {
  FakeServer fake({FakeReply::send("+A\r\n"), FakeReply::send("+B\r\n"),
                   FakeReply::send("+C\r\n"), FakeReply::send("+D\r\n")});
  Client c(fake.port());
  c.send(resp_encode({"GET", "a"}) + resp_encode({"GET", "b"}) + "PING\r\n");
  CHECK(c.read(12) == "+A\r\n+B\r\n+C\r\n");
  const std::string cmd = resp_encode({"SET", "key", std::string(1000, 'v')});
  c.send(cmd.substr(0, 500));
  CHECK(c.read(1, milliseconds(100)).empty());  // not a command yet
  c.send(cmd.substr(500));
  CHECK(c.read(4) == "+D\r\n");
  REQUIRE(fake.wait_for_commands(4, milliseconds(2000)));
  CHECK(fake.commands_received() == 4);
  CHECK(fake.commands()[2].args == std::vector<std::string>{"PING"});
  CHECK(fake.commands()[3].args.at(2).size() == 1000);
}

TEST_CASE("support: fake server dribbles, delays, closes and resets",
          "[support][fake]") {
  SECTION("one byte at a time") {
    const std::string reply = "$5\r\nhello\r\n";
    FakeServer fake({FakeReply::dribble(reply, 1, milliseconds(20))});
    Client c(fake.port());
    c.command({"GET", "k"});
    const auto t0 = Clock::now();
    std::string got;
    while (got.size() < reply.size() && !c.eof() && elapsed_ms(t0) < 3000)
      got += c.read(reply.size() - got.size(), milliseconds(100));
    CHECK(got == reply);
    CHECK(elapsed_ms(t0) >= 200);
    CHECK(c.reads >= 5);  // arrived in pieces
  }
  SECTION("delayed") {
    FakeServer fake({FakeReply::delayed("+OK\r\n", milliseconds(300))});
    Client c(fake.port());
    c.command({"PING"});
    CHECK(c.read(5, milliseconds(150)).empty());
    CHECK(c.read(5, milliseconds(2000)) == "+OK\r\n");
  }
  SECTION("closed on accept") {
    FakeScript s;
    s.on_accept = FakeReply::close();
    FakeServer fake(s);
    Client c(fake.port());
    CHECK(c.read(1).empty());
    CHECK(c.eof());
    CHECK(c.error() == 0);  // a clean FIN
    CHECK(fake.wait_for_connections(1, milliseconds(1000)));
  }
  SECTION("greeting on accept") {
    FakeScript s;
    s.on_accept = FakeReply::send("!garbage\r\n");
    FakeServer fake(s);
    Client c(fake.port());
    CHECK(c.read(10) == "!garbage\r\n");
  }
  SECTION("closed mid-reply") {
    FakeServer fake({FakeReply::close("*5\r\n:1\r\n")});
    Client c(fake.port());
    c.command({"EVALSHA"});
    CHECK(c.read(100) == "*5\r\n:1\r\n");
    CHECK(c.eof());
  }
  SECTION("reset") {
    FakeServer fake({FakeReply::reset()});
    Client c(fake.port());
    c.command({"PING"});
    CHECK(c.read(1).empty());
    CHECK(c.eof());
    CHECK(c.error() == ECONNRESET);
  }
}

TEST_CASE("support: fake server responder and several connections",
          "[support][fake]") {
  FakeScript s;
  s.responder = [](const FakeCommand &cmd) {
    if (cmd.args.empty()) return FakeReply::close();
    return FakeReply::send("+" + cmd.args[0] + ":" +
                           std::to_string(cmd.connection) + ":" +
                           std::to_string(cmd.index) + "\r\n");
  };
  FakeServer fake(s);
  Client a(fake.port());
  REQUIRE(fake.wait_for_connections(1, milliseconds(2000)));
  Client b(fake.port());
  REQUIRE(fake.wait_for_connections(2, milliseconds(2000)));
  a.command({"PING"});
  CHECK(a.read(11) == "+PING:0:0\r\n");
  b.command({"INFO"});
  CHECK(b.read(11) == "+INFO:1:0\r\n");
  a.command({"TIME"});
  CHECK(a.read(11) == "+TIME:0:1\r\n");
}

TEST_CASE("support: fake server stops promptly with a client that never reads",
          "[support][fake]") {
  std::unique_ptr<Client> c;
  auto fake = std::make_unique<FakeServer>(std::vector<FakeReply>{
      FakeReply::send("$999999999999\r\n" + std::string(8 << 20, 'x'))});
  c = std::make_unique<Client>(fake->port());
  c->command({"GET", "huge"});
  REQUIRE(fake->wait_for_commands(1, milliseconds(2000)));
  // Far more than the socket buffers hold: the fake's send is blocked now.
  std::this_thread::sleep_for(milliseconds(100));
  const auto t0 = Clock::now();
  fake.reset();
  CHECK(elapsed_ms(t0) < 1000);
}

// Hidden (run it by name): how long the fixtures take, for planning tests.
TEST_CASE("support: timings", "[.support-timing]") {
  auto time_ms = [](auto &&f) {
    const auto t0 = Clock::now();
    f();
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  const double certs = time_ms([] { test_certs(); });
  std::unique_ptr<RedisServer> s;
  const double start = time_ms([&] { s = std::make_unique<RedisServer>(); });
  const double cmd = time_ms([&] { s->command({"PING"}); });
  const double kill_restart = time_ms([&] {
    s->kill9();
    s->restart();
  });
  const double stop = time_ms([&] { s.reset(); });
  RedisOptions o;
  o.tls = true;
  const double tls_start =
      time_ms([&] { s = std::make_unique<RedisServer>(o); });
  const double tls_cmd = time_ms([&] { s->command({"PING"}); });
  const double tls_stop = time_ms([&] { s.reset(); });
  const double fake = time_ms([] { FakeServer f(FakeScript{}); });
  WARN("certs " << certs << " ms; start " << start << ", command " << cmd
                << ", kill9+restart " << kill_restart << ", stop " << stop
                << "; TLS start " << tls_start << ", command " << tls_cmd
                << ", stop " << tls_stop << "; fake server up+down " << fake
                << " ms");
}
