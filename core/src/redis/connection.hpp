// One socket to one Redis endpoint: connect (through the resolver), TLS,
// the handshake (AUTH, SELECT, INFO, SCRIPT LOAD), RESP writes and bounded
// reads, and the FIFO of commands awaiting their replies. The only code
// that touches a socket, apart from the direct path (lender.hpp), which
// borrows an idle connection's socket for one command.
//
// Threads: the I/O thread owns a connection, except while it is lent (see
// Lender); callers that write a batch on a busy one do so under `ws.mu`.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "dialer.hpp"
#include "request.hpp"
#include "resolver.hpp"
#include "stream.hpp"
#include "tollgate/redis/resp.hpp"
#include "tollgate/redis/url.hpp"

namespace tollgate::redis {

// Where a connection goes.
struct Address {
  bool unix_socket = false;
  std::string host;  // IPv6 literals without brackets
  uint16_t port = 0;
  std::string path;          // unix socket
  std::string text() const;  // host:port, or the path
};

// What every connection of a transport shares: settings, TLS context,
// scripts to preload, and the I/O thread's epoll and wake-up descriptors.
struct ConnectionShared {
  const Settings &settings;
  SSL_CTX *ssl_ctx;  // null without TLS
  const std::vector<std::string> &preload;
  FunctionLibrary &functions;  // loaded after the scripts
  int ep_fd;
  int wake_fd;
  LookupThreads &lookups;  // the transport's host-name lookups
};

class Connection;

// What a connection tells the pipeline that owns it.
class ConnectionOwner {
 public:
  // Ready for users' commands; `reconnect`: it had been ready before.
  virtual void conn_ready(Connection &c, bool reconnect, int64_t now) = 0;
  // A reply to one of the pipeline's commands (user, ping, asking). False
  // if the connection was dropped meanwhile (stop reading it).
  virtual bool conn_reply(Connection &c, const InFlight &f,
                          std::unique_ptr<Reply> reply, int64_t now) = 0;
  // The connection closed. `lost` holds what it carried, to be answered
  // with lost_code / lost_msg; `code` / `msg` is the error itself.
  virtual void conn_failed(Connection &c, std::deque<InFlight> &lost,
                           Errc lost_code, const std::string &lost_msg,
                           Errc code, const std::string &msg, int64_t now) = 0;
  virtual void conn_note(Errc code, const std::string &msg) = 0;
  virtual void conn_version(std::string version) = 0;
  // A subscriber connection's pub/sub message (not a reply to a command).
  virtual void conn_push(Connection &, const Reply &) {}
  virtual void note_deadline(int64_t deadline) = 0;

 protected:
  ~ConnectionOwner() = default;
};

enum class Phase { down, resolving, tcp, tls, hello, ready };

// The write side, shared with callers that write queued commands
// themselves while the I/O thread awaits replies (Lender::caller_write).
// Under `mu`: writes to the socket, wbuf and inflight appends, `handed`
// and `open`. The bytes on the socket are always the commands of inflight,
// then those of `handed`, in order; the I/O thread moves `handed` to
// inflight (absorb) before it appends, reads replies, times commands out
// or closes the connection.
struct WriteSide {
  std::mutex mu;
  std::vector<InFlight> handed;  // written by callers, not yet absorbed
  bool open = false;             // ready, plain TCP, owned by the I/O thread
  // Users' commands in inflight that the I/O thread times out, as of its
  // last look: while there are any, it wakes by itself for a reply or a
  // deadline, and then absorbs.
  std::atomic<uint32_t> io_known{0};
  // The earliest deadline in `handed` (INT64_MAX: none), a timer of the
  // I/O thread: the commands it knows may have a later deadline than a
  // caller's (a ROLE check, a call with a longer timeout), or none left
  // once they timed out, so a caller that hands commands over also makes
  // sure the thread wakes for theirs (IoLoop::wake_before).
  std::atomic<int64_t> handed_deadline{INT64_MAX};
};

// Who may touch a connection (Connection::owner). The I/O thread owns
// every connection, and lends an idle one (ready, nothing in flight) so
// that a blocking caller can carry its own command without two hand-offs:
//   io -> idle            I/O thread lends it (store, release)
//   idle -> io            I/O thread takes it back (CAS)
//   idle -> caller        a blocking caller borrows it (CAS)
//   caller -> idle        the caller is done and it is still clean
//   caller -> returned    the caller left a late reply or a broken socket
//   returned -> io        I/O thread takes it back (CAS) and deals with it
enum Owner : int { kOwnIo = 0, kOwnIdle = 1, kOwnCaller = 2, kOwnReturned = 3 };

class Connection {
 public:
  // `subscriber`: pub/sub messages ("message" arrays) arriving between
  // replies go to ConnectionOwner::conn_push instead of the FIFO.
  Connection(ConnectionShared &shared, Address address, uint32_t token,
             ConnectionOwner &owner, uint64_t seed, bool subscriber = false);
  ~Connection() { close(); }
  Connection(const Connection &) = delete;
  Connection &operator=(const Connection &) = delete;

  const Address &address() const { return address_; }
  std::string where() const { return address_.text(); }
  Phase phase() const { return phase_; }
  bool ready() const { return phase_ == Phase::ready; }
  int fd() const { return stream_.fd(); }
  bool plain() const { return !stream_.is_tls(); }
  bool tls_wants_write() const { return stream_.wants_write(); }
  bool owned() const { return owner.load(std::memory_order_relaxed) == kOwnIo; }
  // When the I/O thread must look at it next (a phase deadline, a retry).
  int64_t next_timer() const;

  // I/O thread.
  void start_connect(int64_t now);
  void on_io(uint32_t events, int64_t now);
  void check_lookup(int64_t now);
  void timers(int64_t now);  // phase deadlines, reconnects
  void flush(int64_t now);
  // Appends a command (its text, then its in-flight entry) to be written.
  void send(Request &r, Kind kind, int64_t now);
  void send_internal(std::vector<std::string_view> argv, Kind kind,
                     int64_t now);
  void absorb();
  void absorb_locked();             // under ws.mu
  bool drain_replies(int64_t now);  // false if the connection was dropped
  void watch(uint32_t events);
  // Closes it, answers what it carried (through the owner) and schedules
  // a reconnect.
  void fail(Errc code, const std::string &msg, int64_t now);
  void close();
  // Users' commands awaiting a reply that the I/O thread times out.
  uint32_t timed() const;
  std::string closed_text() const;

  // Shared with the direct path (Lender) and the pipeline.
  std::atomic<int> owner{kOwnIo};
  WriteSide ws;
  std::deque<InFlight> inflight;
  std::string wbuf;
  std::unique_ptr<Reader> reader;
  // Set by a caller that found the connection broken on the direct path;
  // the I/O thread fails the connection when it takes it back.
  bool broken = false;
  Errc broken_code = Errc::connect;
  std::string broken_msg;

 private:
  void dialed(DialStep step, int64_t now);
  void start_hello(int64_t now);
  void read_some(int64_t now);
  bool handshake_reply(const InFlight &f, const Reply &reply, int64_t now);
  void became_ready(int64_t now);
  int64_t backoff_ns();
  std::string rejected_after_handshake() const;

  ConnectionShared &shared_;
  const Settings &s_;
  Address address_;
  uint32_t token_;
  ConnectionOwner &owner_;
  std::mt19937_64 rng_;
  bool subscriber_;

  Stream stream_;
  Phase phase_ = Phase::down;
  size_t wpos_ = 0;
  int64_t phase_deadline_ = 0;
  Dialer dialer_;
  int64_t retry_at_ = 0;
  int attempts_ = 0;
  bool ever_ready_ = false;
  uint32_t events_ = 0;
  int handshake_left_ = 0;
};

}  // namespace tollgate::redis
