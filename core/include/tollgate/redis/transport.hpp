// The Redis transport: a few multiplexed connections per endpoint, shared by
// every thread, driven by one I/O thread per limiter. Commands submitted
// while a write is in flight leave together in the next write
// (auto-pipelining), and joinable commands queued back to back leave as one
// command (see Joiner); replies are matched in order. Every command has a
// deadline; a dropped connection is re-established with capped exponential
// backoff and jitter, and while it is known to be down commands fail at once.
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "tollgate/error.hpp"
#include "tollgate/metrics.hpp"
#include "tollgate/redis/resp.hpp"
#include "tollgate/redis/url.hpp"

namespace tollgate::redis {

enum class ConnState : int32_t { connecting = 1, ready = 2, down = 3 };

// The outcome of one command. `code` is ok when a reply arrived (which may
// itself be an error reply), else connect, timeout, auth, tls, protocol or
// closed, with `message` saying why (never a secret).
struct CallResult {
  Errc code = Errc::ok;
  std::string message;
  std::unique_ptr<Reply> reply;
};

// Called exactly once per submitted command: on the I/O thread, or on the
// submitting thread when the command fails at once (connection known down,
// transport closing) or was carried by that thread (Mode::blocking). Must
// not block.
using Completion = void (*)(void *ctx, CallResult &&result);

// Commands that may travel as one. A joinable command is submitted as its
// part (the completion's context) with no wire text; the transport asks
// the Joiner for the text when it sends it: of the part alone (`single`),
// or, for parts queued back to back, of one command carrying the first k of
// them (`join`, 1 <= k <= parts.size(), chosen by the joiner). The joined
// command's completion and context come from `join` too, and that
// completion must complete each of the k parts exactly once (through the
// parts' own completions, which the joiner knows). Called on the I/O thread,
// or on a submitting thread that carries its own command.
class Joiner {
 public:
  virtual void single(void *part, std::string &cmd) const = 0;
  virtual size_t join(std::span<void *const> parts, std::string &cmd,
                      Completion &done, void *&ctx) const = 0;

 protected:
  ~Joiner() = default;
};

// The most parts the transport offers one join.
inline constexpr size_t kMaxJoin = 64;

// One node of a cluster, as rl_health reports it.
struct NodeStats {
  std::string address;   // host:port
  bool primary = false;  // it serves slots in the current map
  ConnState state = ConnState::connecting;
  bool started = false;  // connections opened (they open at first use)
  uint32_t in_flight = 0;
  uint64_t failures = 0;  // connections lost or refused
  uint64_t reconnects = 0;
  std::string last_error;
  RttCounts rtt;  // its commands' round trips
};

struct TransportStats {
  ConnState state = ConnState::connecting;
  uint32_t in_flight = 0;
  uint64_t reconnects = 0;
  int64_t last_ping_us = -1;
  // Commands their caller wrote on a connection busy with others (joined
  // calls count once).
  uint64_t caller_written = 0;
  // Lone waits (see Settings::spin_us) that spun before sleeping, and the
  // smoothed time a lone reply has kept its waiter waiting: waiters spin
  // only while that is within spin_us.
  uint64_t spun_waits = 0;
  int64_t lone_wait_us = 0;
  std::string server_version;
  std::string last_error;
  uint64_t failures = 0;  // connections lost or refused
  RttCounts rtt;          // user commands' round trips, all nodes
  // Cluster only.
  bool cluster = false;
  std::vector<NodeStats> nodes;
  int64_t slot_map_age_ms = -1;  // -1: no map yet
  uint64_t slot_map_refreshes = 0;
  uint64_t moved = 0;  // -MOVED replies followed
  uint64_t ask = 0;    // -ASK replies followed
  // Sentinel only: times the limiter moved to another master.
  uint64_t master_switches = 0;
};

// A command's cluster slot (hash_slot of its keys); kAnySlot: no key.
inline constexpr int kAnySlot = -1;

// Monotonic nanoseconds (CLOCK_MONOTONIC), the time base of deadlines.
int64_t monotonic_ns() noexcept;

// One address a host name resolved to.
struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// Resolves `host` (a name, not an IP literal) and `port` to the addresses
// to try, in order; 0 or a getaddrinfo error code (gai_strerror). The
// transport calls it on a helper thread of its own, never on the I/O
// thread, so a slow resolver delays only the connection, not deadlines.
using Resolver = int (*)(const std::string &host, uint16_t port,
                         std::vector<Endpoint> &out);

// The resolver transports use from now on (nullptr: getaddrinfo). For
// tests (a slow resolver, or names with several addresses); not
// synchronized with connections being opened.
void set_resolver(Resolver resolver) noexcept;

// Redis 7 functions (docs/redis.md, "Functions"): the library every
// connection loads after the scripts, and whether one-policy checks call it
// (FCALL) or their script (EVALSHA). Shared by every connection of a
// transport, read by its callers.
struct FunctionLibrary {
  std::string code;  // FUNCTION LOAD's argument; empty: never loaded
  // A connection loaded the library (or found it there); cleared when a
  // server answers that a function is missing (FUNCTION FLUSH).
  std::atomic<bool> usable{false};
  // A server refused it (before Redis 7, an ACL without FUNCTION or
  // FCALL): EVALSHA from then on.
  std::atomic<bool> refused{false};
  // A FUNCTION LOAD sent after a missing function is on its way.
  std::atomic<bool> reloading{false};
  bool callable() const {
    return usable.load(std::memory_order_relaxed) &&
           !refused.load(std::memory_order_relaxed);
  }
  // FUNCTION LOAD's answer: OK, or the library already there.
  static bool loaded(const Reply &reply);
  // Sets `refused`; the first time, keeps `why` for rl_health's
  // last_error (Transport::stats) and returns true.
  bool refuse(const std::string &why);
  std::string refusal() const;

 private:
  mutable std::mutex mu_;
  std::string refusal_;  // under mu_
};

class Transport {
 public:
  // Validates the TLS material (CA, client certificate and key) so that a
  // bad file is an error at creation, not at the first call. `preload`:
  // scripts sent with SCRIPT LOAD on every (re)connect, before the
  // connection is declared ready, so EVALSHA finds them. `library`: then
  // FUNCTION LOAD of it, on servers of Redis 7 or later (empty: none).
  static Errc create(const Settings &settings, std::vector<std::string> preload,
                     std::string_view library, std::unique_ptr<Transport> &out);
  ~Transport();  // fails pending commands with Errc::closed
  Transport(const Transport &) = delete;
  Transport &operator=(const Transport &) = delete;

  // queued: if a connection is idle, the calling thread writes the command
  // on it (never waiting: what the socket does not take is left to the I/O
  // thread) and the I/O thread reads the reply and runs the completion;
  // otherwise the command is queued for the I/O thread to send.
  // blocking: for a caller that waits for the answer anyway. If a
  // connection is idle, the calling thread borrows it, sends the command,
  // waits for the reply (or the deadline) and runs the completion itself
  // before submit returns: no thread hand-off. Otherwise as queued.
  enum class Mode { queued, blocking };

  // Submits one RESP-formatted command. Thread-safe. The I/O thread starts
  // on first use, and again in a forked child (which never shares its
  // parent's sockets).
  // `slot`: where the command's keys hash to (hash_slot); a cluster sends
  // it to that slot's primary and follows -MOVED and -ASK. Standalone and
  // sentinel transports ignore it.
  void submit(std::string command, int64_t deadline_ns, Completion done,
              void *ctx, Mode mode = Mode::queued, int slot = kAnySlot);

  // Submits a joinable command: `part` is `done`'s context and `joiner`
  // makes its text (see Joiner). Otherwise as submit.
  void submit_joinable(const Joiner *joiner, void *part, int64_t deadline_ns,
                       Completion done, Mode mode = Mode::queued,
                       int slot = kAnySlot);

  // True for a cluster: commands on different slots never travel as one.
  bool clustered() const;
  // The primaries now, host:port (standalone: the one server), for
  // commands that must reach each (SCAN, PING); and submission to one of
  // them by its address (one no longer known fails with Errc::store).
  std::vector<std::string> primaries();
  void submit_to(const std::string &primary, std::string command,
                 int64_t deadline_ns, Completion done, void *ctx);

  TransportStats stats() const;

  // The function library and its state (see FunctionLibrary).
  FunctionLibrary &functions();

  // Records a round trip measured by a caller (rl_ping) as the last ping.
  void note_ping(int64_t rtt_us);

  // ---- A host's event loop as the driver, instead of the I/O thread
  // (io_loop.hpp). Plain TCP only: TLS stays on the I/O thread, which
  // blocks SIGPIPE for its writes.
  // The calling thread becomes the driver: it watches the returned
  // descriptor for readability and calls host_turn then, and when the time
  // host_turn returned comes. -1 if it cannot: TLS, the I/O thread has
  // started, or another thread drives.
  int host_open();
  bool tls() const;
  // Any thread: the I/O thread takes over.
  void host_close();
  // The driver's thread: see IoLoop::host_turn (kHostGone: stop watching;
  // `idle`: the host has nothing else ready, a lone wait may be spun for).
  int64_t host_turn(bool idle = false);
  static constexpr int64_t kHostGone = INT64_MIN;

  // Waits until `done()` (under `lock`, which the completion notifies `cv`
  // under) or `until_ns`; false at `until_ns`. On the thread that drives
  // the loop (whose event loop cannot turn while it waits), it turns the
  // loop itself instead of sleeping.
  template <class Done>
  bool wait(std::unique_lock<std::mutex> &lock, std::condition_variable &cv,
            int64_t until_ns, Done done) {
    while (!done()) {
      const int64_t now = monotonic_ns();
      if (now >= until_ns) return false;
      if (hosted_here()) {
        lock.unlock();
        pump(until_ns);
        lock.lock();
      } else {
        cv.wait_for(lock, std::chrono::nanoseconds(
                              std::min<int64_t>(until_ns - now, 1000000000)));
      }
    }
    return true;
  }

 private:
  struct Core;
  struct Shared;
  explicit Transport(std::shared_ptr<Shared> shared);
  Core *core();
  bool hosted_here();
  void pump(int64_t until_ns);
  std::shared_ptr<Shared> shared_;
  std::atomic<Core *> core_{nullptr};
};

}  // namespace tollgate::redis
