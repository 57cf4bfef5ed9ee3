#include "support/fake_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "support/redis_server.hpp"

namespace tollgate_test {

// ---- FakeReply / FakeScript ------------------------------------------------

FakeReply FakeReply::send(std::string bytes) {
  FakeReply r;
  r.bytes = std::move(bytes);
  return r;
}

FakeReply FakeReply::delayed(std::string bytes,
                             std::chrono::milliseconds delay) {
  FakeReply r = send(std::move(bytes));
  r.delay = delay;
  return r;
}

FakeReply FakeReply::dribble(std::string bytes, size_t chunk,
                             std::chrono::milliseconds delay) {
  FakeReply r = delayed(std::move(bytes), delay);
  r.chunk = chunk == 0 ? 1 : chunk;
  return r;
}

FakeReply FakeReply::silent() {
  return FakeReply{};
}

FakeReply FakeReply::close(std::string bytes) {
  FakeReply r = send(std::move(bytes));
  r.then = Then::close;
  return r;
}

FakeReply FakeReply::reset(std::string bytes) {
  FakeReply r = send(std::move(bytes));
  r.then = Then::reset;
  return r;
}

FakeScript FakeScript::ok_then(int n, FakeReply next, FakeReply after) {
  FakeScript s;
  for (int i = 0; i < n; ++i) s.replies.push_back(FakeReply::send("+OK\r\n"));
  s.replies.push_back(std::move(next));
  s.after = std::move(after);
  return s;
}

// ---- FakeServer ------------------------------------------------------------

FakeServer::FakeServer(std::vector<FakeReply> replies)
    : FakeServer([&] {
        FakeScript s;
        s.replies = std::move(replies);
        return s;
      }()) {}

FakeServer::FakeServer(FakeScript script) : script_(std::move(script)) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0)
    throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: the kernel picks
  socklen_t len = sizeof a;
  int fds[2];
  if (bind(listen_fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
      listen(listen_fd_, 64) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&a), &len) != 0 ||
      pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    throw std::runtime_error(std::string("fake server: ") + std::strerror(e));
  }
  port_ = ntohs(a.sin_port);
  stop_rd_ = fds[0];
  stop_wr_ = fds[1];
  acceptor_ = std::thread([this] { accept_loop(); });
}

FakeServer::~FakeServer() {
  // Nobody reads the pipe, so it stays readable: every poll sees "stop".
  const char c = 's';
  while (write(stop_wr_, &c, 1) < 0 && errno == EINTR) {
  }
  acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(conn_threads_);
  }
  for (std::thread &t : threads) t.join();
  ::close(listen_fd_);
  ::close(stop_rd_);
  ::close(stop_wr_);
}

std::string FakeServer::url() const {
  return "redis://127.0.0.1:" + std::to_string(port_);
}

std::vector<FakeCommand> FakeServer::commands() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

bool FakeServer::wait_for_commands(int n,
                                   std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return commands_.load() >= n; });
}

bool FakeServer::wait_for_connections(int n,
                                      std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return connections_.load() >= n; });
}

void FakeServer::accept_loop() {
  for (;;) {
    pollfd p[2] = {{stop_rd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[0].revents) return;
    if (!(p[1].revents & POLLIN)) continue;
    const int fd =
        accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;  // EAGAIN, ECONNABORTED, EMFILE...
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard<std::mutex> lock(mu_);
    const int index = connections_.fetch_add(1);
    conn_threads_.emplace_back([this, fd, index] { serve(fd, index); });
    cv_.notify_all();
  }
}

FakeReply FakeServer::reply_for(const FakeCommand &cmd) const {
  if (script_.responder) return script_.responder(cmd);
  const auto i = static_cast<size_t>(cmd.index);
  return i < script_.replies.size() ? script_.replies[i] : script_.after;
}

void FakeServer::serve(int fd, int connection) {
  bool open = !script_.on_accept || perform(fd, *script_.on_accept);
  std::string buf;
  int index = 0;
  while (open) {
    pollfd p[2] = {{stop_rd_, POLLIN, 0}, {fd, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) break;
    char tmp[65536];
    const ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      break;
    }
    buf.append(tmp, static_cast<size_t>(n));

    // Every complete command in the buffer, in order.
    size_t pos = 0;
    while (open && pos < buf.size()) {
      FakeCommand cmd;
      cmd.connection = connection;
      cmd.index = index;
      if (buf[pos] == '*') {
        std::optional<RespValue> v;
        try {
          v = resp_parse(buf, pos);
        } catch (const std::exception &) {
          pos = buf.size();  // malformed: one command with no args
          v = RespValue{};
        }
        if (!v) break;  // incomplete; wait for more
        for (const RespValue &e : v->elements) cmd.args.push_back(e.str);
      } else {
        // An inline command (what telnet or `redis-cli` in a pipe sends).
        const size_t eol = buf.find('\n', pos);
        if (eol == std::string::npos) break;
        std::string line = buf.substr(pos, eol - pos);
        pos = eol + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        std::istringstream words(line);
        for (std::string w; words >> w;) cmd.args.push_back(w);
        if (cmd.args.empty()) continue;  // a blank line is no command
      }
      ++index;
      {
        std::lock_guard<std::mutex> lock(mu_);
        log_.push_back(cmd);
        commands_.fetch_add(1);
        cv_.notify_all();
      }
      open = perform(fd, reply_for(cmd));
    }
    buf.erase(0, pos);
  }
  ::close(fd);
}

bool FakeServer::perform(int fd, const FakeReply &reply) {
  const size_t size = reply.bytes.size();
  const size_t chunk = reply.chunk == 0 ? size : reply.chunk;
  if (size == 0 && !pause(reply.delay)) return false;
  for (size_t off = 0; off < size; off += chunk) {
    if (!pause(reply.delay)) return false;
    if (!send_all(fd, reply.bytes.data() + off, std::min(chunk, size - off)))
      return false;
  }
  switch (reply.then) {
    case FakeReply::Then::stay:
      return true;
    case FakeReply::Then::reset: {
      const linger lg{1, 0};  // close() then sends RST
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      return false;
    }
    case FakeReply::Then::close:
      return false;
  }
  return false;
}

bool FakeServer::send_all(int fd, const char *data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;  // peer gone
    // The client is not reading: wait for room, or for the end.
    pollfd p[2] = {{stop_rd_, POLLIN, 0}, {fd, POLLOUT, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return false;
    if (p[0].revents) return false;
  }
  return true;
}

bool FakeServer::pause(std::chrono::milliseconds delay) {
  if (delay.count() <= 0) {
    pollfd p{stop_rd_, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
  }
  const auto until = std::chrono::steady_clock::now() + delay;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          until - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return true;
    pollfd p{stop_rd_, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(left));
    if (r > 0) return false;
    if (r < 0 && errno != EINTR) return true;
  }
}

}  // namespace tollgate_test
