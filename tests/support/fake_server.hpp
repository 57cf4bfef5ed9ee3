// A fake Redis: listens on a free loopback port and answers each command
// with scripted raw bytes, to test what the client does with malformed,
// oversized, slow, missing or cut-off replies.
//
// Every accepted connection runs the script from its start, on its own
// thread. Commands are RESP arrays (or inline lines), counted as they
// arrive, so replies stay in step even when the client pipelines. All
// waits (delays, sends to a client that does not read) end when the server
// is destroyed; the destructor joins every thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tollgate_test {

// What the fake does in answer to one command (or on accept).
struct FakeReply {
  enum class Then {
    stay,   // keep the connection open and keep reading
    close,  // then close the connection (FIN)
    reset,  // then reset it (RST: SO_LINGER 0)
  };
  std::string bytes;  // sent as they are; may be empty
  size_t chunk = 0;   // 0: one send; else sends of this many bytes
  std::chrono::milliseconds delay{0};  // before the first and every chunk
  Then then = Then::stay;

  // The bytes at once, e.g. send("+OK\r\n"), send("*888888880\r\n").
  static FakeReply send(std::string bytes);
  // The bytes after `delay`.
  static FakeReply delayed(std::string bytes, std::chrono::milliseconds delay);
  // The bytes in pieces of `chunk` bytes, `delay` before each (TCP_NODELAY
  // is set, so each piece is its own segment).
  static FakeReply dribble(
      std::string bytes, size_t chunk = 1,
      std::chrono::milliseconds delay = std::chrono::milliseconds(10));
  // Nothing: the command goes unanswered, the connection stays open.
  static FakeReply silent();
  // The bytes (if any), then close.
  static FakeReply close(std::string bytes = {});
  // The bytes (if any), then a TCP reset.
  static FakeReply reset(std::string bytes = {});
};

// A command as the fake received it.
struct FakeCommand {
  int connection = 0;             // 0-based, in accept order
  int index = 0;                  // 0-based, per connection
  std::vector<std::string> args;  // empty if it was not valid RESP
};

using FakeResponder = std::function<FakeReply(const FakeCommand &)>;

struct FakeScript {
  // Declared so FakeScript is no aggregate: FakeServer({reply}) then means
  // a list of replies, never a script with `on_accept` set.
  FakeScript() = default;

  // Done as soon as a connection is accepted, before any command: e.g.
  // FakeReply::close() to drop every connection at once, or send() to greet
  // with bytes the client did not ask for.
  std::optional<FakeReply> on_accept;
  // replies[i] answers command i of each connection ...
  std::vector<FakeReply> replies;
  // ... and this answers every command after them.
  FakeReply after = FakeReply::silent();
  // If set, answers every command instead (replies and after unused). Runs
  // on the connection's thread, concurrently for different connections;
  // it must return soon (the destructor joins that thread). Use
  // FakeReply::delayed to hold a reply back.
  FakeResponder responder;

  // "+OK\r\n" to the first n commands, then `next`, then `after`.
  static FakeScript ok_then(int n, FakeReply next,
                            FakeReply after = FakeReply::silent());
};

class FakeServer {
 public:
  explicit FakeServer(FakeScript script);
  // Shorthand: these replies in order, then silence.
  explicit FakeServer(std::vector<FakeReply> replies);
  ~FakeServer();
  FakeServer(const FakeServer &) = delete;
  FakeServer &operator=(const FakeServer &) = delete;

  uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  std::string url() const;  // redis://127.0.0.1:<port>

  int connections_accepted() const { return connections_.load(); }
  int commands_received() const { return commands_.load(); }
  // Every command so far, in arrival order.
  std::vector<FakeCommand> commands() const;
  // Wait until at least n commands / connections have arrived; false on
  // timeout.
  bool wait_for_commands(int n, std::chrono::milliseconds timeout) const;
  bool wait_for_connections(int n, std::chrono::milliseconds timeout) const;

 private:
  void accept_loop();
  void serve(int fd, int connection);
  // Returns false if the connection is over (closed, failed or stopping).
  bool perform(int fd, const FakeReply &reply);
  bool send_all(int fd, const char *data, size_t size);
  bool pause(std::chrono::milliseconds delay);  // false when stopping
  FakeReply reply_for(const FakeCommand &cmd) const;

  FakeScript script_;
  int listen_fd_ = -1;
  int stop_rd_ = -1, stop_wr_ = -1;  // readable once stopping
  uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::atomic<int> commands_{0};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<FakeCommand> log_;           // guarded by mu_
  std::vector<std::thread> conn_threads_;  // guarded by mu_
  std::thread acceptor_;
};

}  // namespace tollgate_test
