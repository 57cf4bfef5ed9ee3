// The commands for one endpoint: the queue every thread submits to, the
// connections that carry them (a few, multiplexed), joining of joinable
// commands queued back to back, deadlines, and the completion of every
// command exactly once. Driven by the I/O loop (io_loop.hpp); the direct
// path (lender.hpp) lets callers skip the I/O thread where they can.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "connection.hpp"
#include "lender.hpp"
#include "request.hpp"

namespace tollgate::redis {

class IoLoop;
class Pipeline;

// What a topology wants to hear from a pipeline of its own (Sentinel).
class PipelineHooks {
 public:
  virtual void pipeline_ready(Pipeline &) {}
  virtual void pipeline_failed(Pipeline &) {}
  virtual void pipeline_push(Pipeline &, const Reply &) {}

 protected:
  ~PipelineHooks() = default;
};

struct PipelineOptions {
  bool lazy = false;        // connections open when the first command comes
  bool direct = true;       // callers may use the sockets (plain TCP only)
  bool subscriber = false;  // pub/sub: see Connection
  PipelineHooks *hooks = nullptr;
};

class Pipeline final : public ConnectionOwner {
 public:
  // `connections` sockets to `address`, driven by `loop` once attached
  // (IoLoop::attach).
  Pipeline(IoLoop &loop, ConnectionShared &shared, Address address,
           uint32_t connections, PipelineOptions options = {});
  // Any thread: a lazy pipeline opens its connections on the I/O thread's
  // next turn, with nothing queued.
  void want_start();
  Pipeline(const Pipeline &) = delete;
  Pipeline &operator=(const Pipeline &) = delete;

  // Any thread: queues `r` (or answers it at once if the endpoint is known
  // to be down or the transport is closing), waking the I/O thread or
  // writing the batch itself when it is due (see the .cpp).
  void submit(Request r);
  // Any thread: carries `r` on an idle connection, if there is one (the
  // direct path). False: `r` untouched, queue it.
  bool try_direct(Request &r, bool wait);

  // I/O thread, once per loop turn (see IoLoop::run).
  void before_sleep();                         // absorb what callers wrote
  bool due();                                  // the queue is due (under mu)
  void take_queue(std::vector<Request> &out);  // under mu: the whole queue
  uint32_t awaited() const { return io_waits.load(); }
  int64_t next_timer() const;    // earliest deadline or connection timer
  void after_wake(int64_t now);  // take back lent connections
  bool ready_to_send() const;    // a ready connection of the loop's own
  void on_io(size_t conn, uint32_t events, int64_t now);
  void send_due(int64_t now);      // the queue, joined, onto connections
  void housekeeping(int64_t now);  // timers, flush, lend, publish
  void flush(int64_t now);         // writes what the connections hold
  void start(int64_t now);         // first connections
  void close_all();                // I/O thread, at the end
  void fail_queue(Errc code, const std::string &msg);  // after the thread

  TransportStats stats() const;
  void note_ping(int64_t rtt_us);
  const Address &address() const { return address_; }
  uint32_t first_token() const { return first_token_; }
  uint32_t connection_count() const {
    return static_cast<uint32_t>(conns.size());
  }
  bool lazy() const { return lazy_; }
  bool started() const { return started_.load(); }
  std::string where() const { return address_.text(); }
  ConnState state_now() const {
    return static_cast<ConnState>(state.load(std::memory_order_acquire));
  }

  // ConnectionOwner.
  void conn_ready(Connection &c, bool reconnect, int64_t now) override;
  bool conn_reply(Connection &c, const InFlight &f,
                  std::unique_ptr<Reply> reply, int64_t now) override;
  void conn_failed(Connection &c, std::deque<InFlight> &lost, Errc lost_code,
                   const std::string &lost_msg, Errc code,
                   const std::string &msg, int64_t now) override;
  void conn_note(Errc code, const std::string &msg) override;
  void conn_version(std::string version) override;
  void conn_push(Connection &c, const Reply &reply) override;
  void note_deadline(int64_t d) override {
    next_deadline = std::min(next_deadline, d);
  }

 private:
  friend class Lender;

  void join_runs(std::vector<Request> &batch, std::vector<Request> &out,
                 int64_t now, std::vector<void *> &parts,
                 std::vector<Request> *expired = nullptr);
  void dispatch(Request r, int64_t now);
  void send_on(Connection &c, Request r, int64_t now);
  void redispatch_waiting(int64_t now);
  void expire(int64_t now);
  void publish_state();
  void set_error(Errc code, const std::string &msg);
  void answer_down(Request &r);

  IoLoop &loop_;
  Lender lender_;
  Address address_;
  std::shared_ptr<LogSink> log_;
  // A down episode (the I/O thread's): logged when it starts and when the
  // pipeline is ready again, not at every failed attempt between.
  bool down_logged_ = false;
  int64_t down_since_ns_ = 0;
  const bool direct_ok_;  // plain TCP: callers may use the sockets
  const bool lazy_;
  PipelineHooks *hooks_;
  uint32_t first_token_;
  std::atomic<bool> started_{false};
  std::atomic<bool> start_wanted_{false};
  std::atomic<uint64_t> failures_{0};

  // Shared with submitters, under `mu`.
  mutable std::mutex mu;
  std::vector<Request> queue;
  // The earliest deadline in `queue` (INT64_MAX: empty), a timer of the
  // I/O thread: a queue that is not due yet waits for the replies in
  // flight, but those may never come (a frozen server) and their deadlines
  // may be later (a ROLE check, a ping), so it is also due at its own
  // earliest deadline, which answers what has expired.
  std::atomic<int64_t> queue_deadline{INT64_MAX};
  Errc down_code = Errc::connect;
  std::string down_message;
  TransportStats stats_;

  std::atomic<int32_t> state{static_cast<int32_t>(ConnState::connecting)};
  std::atomic<uint32_t> in_flight{0};
  // The commands (joined ones counted by their parts) whose reply the I/O
  // thread awaits: while there are any, it wakes by itself (a reply, or a
  // deadline). See submit.
  std::atomic<uint32_t> io_waits{0};
  std::atomic<bool> want_conn{false};  // I/O thread waits for a lent conn
  std::atomic<uint32_t> direct_rr{0};
  std::atomic<uint32_t> rr_hint{0};
  std::atomic<uint64_t> caller_written{0};
  // Round trips of user commands (sent to reply read), for the metrics.
  RttHistogram rtt;

  // The I/O thread's own.
  std::vector<std::unique_ptr<Connection>> conns;
  std::deque<Request> waiting;  // while no connection is ready
  std::vector<Request> batch_, joined_;
  std::vector<void *> join_parts;
  size_t rr = 0;
  int64_t next_ping = 0;
  int64_t next_deadline = INT64_MAX;
};

}  // namespace tollgate::redis
