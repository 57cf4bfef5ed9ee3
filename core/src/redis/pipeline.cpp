#include "pipeline.hpp"

#include <sys/epoll.h>

#include "io_loop.hpp"

namespace tollgate::redis {
namespace {

constexpr int64_t kPingIntervalNs = 1000 * kMs;

}  // namespace

Pipeline::Pipeline(IoLoop &loop, ConnectionShared &shared, Address address,
                   uint32_t connections, PipelineOptions options)
    : loop_(loop),
      lender_(*this, loop),
      address_(std::move(address)),
      log_(shared.settings.log),
      direct_ok_(shared.ssl_ctx == nullptr && options.direct),
      lazy_(options.lazy),
      hooks_(options.hooks),
      first_token_(loop.reserve(connections)) {
  const uint32_t first_token = first_token_;
  std::random_device rd;
  for (uint32_t k = 0; k < connections; ++k)
    conns.push_back(std::make_unique<Connection>(
        shared, address_, first_token + k, *this,
        (static_cast<uint64_t>(rd()) << 32) ^ rd(), options.subscriber));
}

// ---- submitters
// --------------------------------------------------------------

bool Pipeline::try_direct(Request &r, bool wait) {
  // The driver's own async commands go through the queue: its next turn
  // sends them, joined, on connections that stay its own.
  if (!wait && loop_.hosted_by_me()) return false;
  return lender_.try_direct(r, wait);
}

void Pipeline::answer_down(Request &r) {
  Errc code;
  std::string msg;
  {
    std::lock_guard<std::mutex> lock(mu);
    code = down_code;
    msg = down_message;
  }
  finish(r.done, r.ctx, code, msg);
}

void Pipeline::submit(Request r) {
  if (state_now() == ConnState::down) {
    answer_down(r);
    return;
  }
  bool closed = false;
  size_t queued = 0;
  const int64_t deadline = r.deadline;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!loop_.ensure_started()) {
      closed = true;
    } else {
      queue.push_back(std::move(r));
      queued = queue.size();
      if (deadline < queue_deadline.load(std::memory_order_relaxed))
        queue_deadline.store(deadline);
    }
  }
  if (closed) {
    finish(r.done, r.ctx, Errc::closed, kClosedText);
    return;
  }
  // On the host's thread (the loop's driver): a due queue leaves now, as
  // the I/O thread would send it; the host turns the loop before its event
  // loop waits (rl_loop_turn), which arms the timers. Nothing to wake.
  if (loop_.hosted_by_me()) {
    if (queued >= io_waits.load()) loop_.host_flush(*this);
    return;
  }
  // Only a sleeping I/O thread is woken, once: commands queued while it is
  // busy ride along in its next write (auto-pipelining), and it looks at
  // the queue again before it sleeps. While it awaits replies, it is woken
  // only once as many commands are queued as are in flight (the queue is
  // due); it wakes for the replies (or their deadline) anyway, and sends a
  // due queue in one write, joined (Joiner). Under load this keeps about
  // two joined calls in flight, one in Redis while the callers work on the
  // other's answers, and saves a thread wake-up (on a VM as costly as a
  // round trip) per command. A queued command waits at most for the
  // replies in flight.
  if (queued < io_waits.load()) {
    loop_.wake_before(deadline);  // see queue_deadline
    return;
  }
  // The batch is due. While the I/O thread awaits replies on a plain
  // connection, this thread writes it (no wake-up); otherwise the I/O
  // thread is woken to send it.
  if (lender_.caller_write()) return;
  loop_.wake_if_sleeping();
}

bool Pipeline::ready_to_send() const {
  for (const auto &c : conns)
    if (c->ready() && c->owned()) return true;
  return false;
}

// ---- the I/O thread's turn
// ---------------------------------------------------

// The queue is due: as many commands queued as in flight. Until then the
// I/O thread leaves it for the callers to fill, also when a reply wakes it:
// sending whatever was queued at that moment split the callers' checks
// into calls of about 17 at 64 in flight, where Redis spends about 1 us
// more per check than in calls of 32 (docs/redis.md, "Joined checks").
// Each reply read lowers the count in flight, so a queued command still
// waits at most for the replies in flight.
bool Pipeline::due() {
  std::lock_guard<std::mutex> lock(mu);
  return !queue.empty() && (queue.size() >= io_waits.load() ||
                            queue_deadline.load() <= monotonic_ns());
}

void Pipeline::take_queue(std::vector<Request> &out) {
  out.swap(queue);
  queue_deadline.store(INT64_MAX, std::memory_order_relaxed);
}

void Pipeline::start(int64_t now) {
  if (started_.exchange(true)) return;
  for (auto &c : conns) c->start_connect(now);
}

void Pipeline::before_sleep() {
  // A lent connection has nothing handed; from here until the wake-up,
  // io_known is exact.
  if (direct_ok_)
    for (auto &c : conns)
      if (c->owned()) c->absorb();
}

int64_t Pipeline::next_timer() const {
  // A lazy pipeline not yet started has nothing to time (its ping is not
  // due): the I/O thread must not wake for it.
  if (!started_.load()) return INT64_MAX;
  int64_t next = std::min({next_deadline, next_ping, queue_deadline.load()});
  for (const auto &c : conns)
    next = std::min({next, c->next_timer(), c->ws.handed_deadline.load()});
  return next;
}

void Pipeline::after_wake(int64_t now) {
  want_conn.store(false);
  lender_.reclaim(now);
}

void Pipeline::on_io(size_t conn, uint32_t events, int64_t now) {
  Connection &c = *conns[conn];
  if (c.owned()) c.on_io(events, now);
}

void Pipeline::send_due(int64_t now) {
  for (auto &c : conns)
    if (c->owned()) c->check_lookup(now);
  if (!waiting.empty()) redispatch_waiting(now);
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!queue.empty() &&
        (queue.size() >= io_waits.load() || queue_deadline.load() <= now))
      take_queue(batch_);
  }
  if (!started_.load() &&
      (!batch_.empty() || !waiting.empty() || start_wanted_.load()))
    start(now);
  if (!batch_.empty()) {
    join_runs(batch_, joined_, now, join_parts);
    for (Request &r : joined_) dispatch(std::move(r), now);
    joined_.clear();
    batch_.clear();
  }
  if (want_conn.load()) {
    // Parked behind a lent connection: a caller that returned it before
    // seeing want_conn did not wake us, so look again.
    lender_.reclaim(now);
    redispatch_waiting(now);
  }
}

void Pipeline::flush(int64_t now) {
  for (auto &c : conns)
    if (c->owned()) c->flush(now);
}

void Pipeline::housekeeping(int64_t now) {
  if (!started_.load()) return;  // lazy: nothing opened, nothing to time
  for (auto &c : conns)
    if (c->owned()) c->timers(now);
  if (now >= next_ping) {
    next_ping = now + kPingIntervalNs;
    for (auto &c : conns)
      if (c->ready() && c->owned()) c->send_internal({"PING"}, Kind::ping, now);
  }
  if (now >= next_deadline) expire(now);
  flush(now);
  lender_.lend_idle();
  publish_state();
}

// Moves `batch` into `out`, joining each run of joinable commands with the
// same joiner (see Joiner) into as few commands as it takes. A part whose
// deadline has passed is answered at once, as dispatch would; `expired`:
// where such parts go (to be answered by the caller) instead.
void Pipeline::join_runs(std::vector<Request> &batch, std::vector<Request> &out,
                         int64_t now, std::vector<void *> &parts,
                         std::vector<Request> *expired) {
  size_t i = 0;
  while (i < batch.size()) {
    const Joiner *j = batch[i].joiner;
    size_t end = i + 1;
    while (j && end < batch.size() && batch[end].joiner == j) ++end;
    if (end - i < 2) {
      out.push_back(std::move(batch[i]));
      i = end;
      continue;
    }
    // [i, end): one run. Its live parts, in order.
    size_t live = i;
    for (size_t k = i; k < end; ++k) {
      if (batch[k].deadline <= now) {
        if (expired)
          expired->push_back(std::move(batch[k]));
        else
          finish(batch[k].done, batch[k].ctx, Errc::timeout, kUnsentText);
        continue;
      }
      if (live != k) batch[live] = std::move(batch[k]);
      ++live;
    }
    size_t k = i;
    while (k < live) {
      if (live - k == 1) {
        out.push_back(std::move(batch[k]));
        break;
      }
      parts.clear();
      const size_t take = std::min(live - k, kMaxJoin);
      for (size_t m = 0; m < take; ++m) parts.push_back(batch[k + m].ctx);
      Request joined;
      const size_t got = j->join(std::span<void *const>(parts.data(), take),
                                 joined.cmd, joined.done, joined.ctx);
      joined.deadline = INT64_MAX;
      joined.parts = static_cast<uint32_t>(got);
      for (size_t m = 0; m < got; ++m)
        joined.deadline = std::min(joined.deadline, batch[k + m].deadline);
      out.push_back(std::move(joined));
      k += got;
    }
    i = end;
  }
}

void Pipeline::dispatch(Request r, int64_t now) {
  if (r.deadline <= now) {
    finish(r.done, r.ctx, Errc::timeout, kUnsentText);
    return;
  }
  const size_t n = conns.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (rr + k) % n;
    if (conns[i]->ready() && conns[i]->owned()) {
      rr = i + 1;
      send_on(*conns[i], std::move(r), now);
      return;
    }
  }
  for (auto &c : conns) {
    // A connection is being made, or lent to a blocking caller: wait.
    if (c->phase() != Phase::down) {
      if (!c->owned()) want_conn.store(true);
      note_deadline(r.deadline);
      waiting.push_back(std::move(r));
      return;
    }
  }
  answer_down(r);
}

void Pipeline::send_on(Connection &c, Request r, int64_t now) {
  if (r.asking) c.send_internal({"ASKING"}, Kind::asking, now);
  c.send(r, Kind::user, now);
  in_flight.fetch_add(1, std::memory_order_relaxed);
  io_waits.fetch_add(r.parts);
  note_deadline(r.deadline);
}

void Pipeline::redispatch_waiting(int64_t now) {
  std::deque<Request> w;
  w.swap(waiting);
  for (Request &r : w) dispatch(std::move(r), now);
}

// Answers every command whose deadline has passed. A command already on the
// wire stays in the FIFO (its reply must still be consumed in order) but is
// marked finished.
void Pipeline::expire(int64_t now) {
  int64_t next = INT64_MAX;
  for (auto it = waiting.begin(); it != waiting.end();) {
    if (it->deadline <= now) {
      finish(it->done, it->ctx, Errc::timeout,
             "timeout: no connection to " + where() +
                 " became ready before the deadline");
      it = waiting.erase(it);
    } else {
      next = std::min(next, it->deadline);
      ++it;
    }
  }
  for (auto &c : conns) {
    if (!c->owned()) continue;  // a borrower keeps its own deadline
    for (InFlight &f : c->inflight) {
      if (f.kind != Kind::user || f.finished) continue;
      if (f.deadline <= now) {
        f.finished = true;
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        io_waits.fetch_sub(f.parts);
        finish(f.done, f.ctx, Errc::timeout,
               "timeout: " + where() + " did not answer before the deadline");
      } else {
        next = std::min(next, f.deadline);
      }
    }
  }
  next_deadline = next;
}

void Pipeline::publish_state() {
  ConnState st = ConnState::down;
  for (const auto &c : conns) {
    if (c->ready()) {
      st = ConnState::ready;
      break;
    }
    if (c->phase() != Phase::down) st = ConnState::connecting;
  }
  state.store(static_cast<int32_t>(st), std::memory_order_release);
  std::string error;
  {
    std::lock_guard<std::mutex> lock(mu);
    stats_.state = st;
    error = stats_.last_error;
  }
  if (!log_) return;
  if (st == ConnState::down && !down_logged_) {
    down_logged_ = true;
    down_since_ns_ = monotonic_ns();
    log_->log(LogLevel::warn, "tollgate: " + where() + " is unreachable (" +
                                  error + "); reconnecting with backoff");
  } else if (st == ConnState::ready && down_logged_) {
    down_logged_ = false;
    log_->log(LogLevel::info,
              "tollgate: reconnected to " + where() + " after " +
                  std::to_string((monotonic_ns() - down_since_ns_) / kMs) +
                  " ms");
  }
}

void Pipeline::set_error(Errc code, const std::string &msg) {
  std::lock_guard<std::mutex> lock(mu);
  down_code = code;
  down_message = msg;
  stats_.last_error = msg;
}

void Pipeline::close_all() {
  // A borrower (a call still in progress, against the ABI's rules) is
  // bounded by its deadline: let it finish first.
  for (auto &c : conns) {
    for (;;) {
      int v = c->owner.load();
      if (v != kOwnCaller && c->owner.compare_exchange_strong(v, kOwnIo)) break;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  for (auto &c : conns) {
    c->close();
    for (InFlight &f : c->inflight) {
      if (f.kind != Kind::user || f.finished) continue;
      in_flight.fetch_sub(1, std::memory_order_relaxed);
      io_waits.fetch_sub(f.parts);
      finish(f.done, f.ctx, Errc::closed, kClosedText);
    }
    c->inflight.clear();
  }
  for (Request &r : waiting) finish(r.done, r.ctx, Errc::closed, kClosedText);
  waiting.clear();
}

void Pipeline::fail_queue(Errc code, const std::string &msg) {
  std::vector<Request> left;
  {
    std::lock_guard<std::mutex> lock(mu);
    take_queue(left);
  }
  for (Request &r : left) finish(r.done, r.ctx, code, msg);
}

// ---- what connections report
// -------------------------------------------------

void Pipeline::conn_ready(Connection &, bool reconnect, int64_t now) {
  if (reconnect) {
    std::lock_guard<std::mutex> lock(mu);
    ++stats_.reconnects;
  }
  redispatch_waiting(now);
  publish_state();
  if (hooks_) hooks_->pipeline_ready(*this);
}

void Pipeline::conn_push(Connection &, const Reply &reply) {
  if (hooks_) hooks_->pipeline_push(*this, reply);
}

void Pipeline::want_start() {
  start_wanted_.store(true);
  loop_.ensure_started();
  loop_.wake();
}

bool Pipeline::conn_reply(Connection &, const InFlight &f,
                          std::unique_ptr<Reply> reply, int64_t now) {
  if (f.kind == Kind::ping) {
    if (reply->type != Reply::Type::error) {
      std::lock_guard<std::mutex> lock(mu);
      stats_.last_ping_us = (now - f.sent_ns) / 1000;
    }
    return true;
  }
  // ASKING's +OK, or a reply to a command that timed out: dropped.
  if (f.kind != Kind::user || f.finished) return true;
  in_flight.fetch_sub(1, std::memory_order_relaxed);
  io_waits.fetch_sub(f.parts);
  rtt.record(now - f.sent_ns);
  CallResult r;
  r.reply = std::move(reply);
  f.done(f.ctx, std::move(r));
  return true;
}

void Pipeline::conn_failed(Connection &, std::deque<InFlight> &lost,
                           Errc lost_code, const std::string &lost_msg,
                           Errc code, const std::string &msg, int64_t) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  for (InFlight &f : lost) {
    if (f.kind != Kind::user || f.finished) continue;
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    io_waits.fetch_sub(f.parts);
    finish(f.done, f.ctx, lost_code, lost_msg);
  }
  set_error(code, msg);
  bool any_alive = false;
  for (const auto &c : conns) any_alive |= c->phase() != Phase::down;
  if (!any_alive) {
    // Nothing can carry the waiting commands: answer them now.
    std::deque<Request> w;
    w.swap(waiting);
    for (Request &r : w) finish(r.done, r.ctx, code, msg);
  }
  publish_state();
  if (hooks_) hooks_->pipeline_failed(*this);
}

void Pipeline::conn_note(Errc code, const std::string &msg) {
  set_error(code, msg);
}

void Pipeline::conn_version(std::string version) {
  std::lock_guard<std::mutex> lock(mu);
  stats_.server_version = std::move(version);
}

TransportStats Pipeline::stats() const {
  std::lock_guard<std::mutex> lock(mu);
  TransportStats out = stats_;
  out.state = state_now();
  out.in_flight = in_flight.load(std::memory_order_relaxed);
  out.caller_written = caller_written.load(std::memory_order_relaxed);
  out.failures = failures_.load(std::memory_order_relaxed);
  out.spun_waits =
      loop_.spin_rule().spun_waits() + loop_.host_spin_rule().spun_waits();
  out.lone_wait_us = loop_.spin_rule().lone_wait_us();
  out.rtt = rtt.read();
  return out;
}

void Pipeline::note_ping(int64_t rtt_us) {
  std::lock_guard<std::mutex> lock(mu);
  stats_.last_ping_us = rtt_us;
}

}  // namespace tollgate::redis
