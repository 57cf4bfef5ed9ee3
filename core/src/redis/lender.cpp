#include "lender.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "io_loop.hpp"
#include "pipeline.hpp"

namespace tollgate::redis {
namespace {

// Writes what a plain socket takes now of `data`, from `off` (advanced): 0
// when it is all written or the socket would block, else the errno.
int send_now(int fd, std::string_view data, size_t &off) {
  while (off < data.size()) {
    const ssize_t w = send(fd, data.data() + off, data.size() - off,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0) {
      off += static_cast<size_t>(w);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return errno;
  }
  return 0;
}

// Waits until `fd` is ready for `events` or the deadline passes.
bool wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    const int64_t left = deadline - monotonic_ns();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = poll(
        &p, 1,
        static_cast<int>(std::min<int64_t>((left + kMs - 1) / kMs, 1 << 30)));
    if (rc > 0) return true;  // ready, or an error the next call reports
    if (rc < 0 && errno != EINTR) return true;
  }
}

}  // namespace

bool Lender::try_direct(Request &r, bool wait) {
  if (!p_.direct_ok_ || p_.state_now() != ConnState::ready) return false;
  const size_t n = p_.conns.size();
  const size_t start = p_.direct_rr.fetch_add(1, std::memory_order_relaxed);
  for (size_t k = 0; k < n; ++k) {
    Connection &c = *p_.conns[(start + k) % n];
    int v = kOwnIdle;
    if (c.owner.compare_exchange_strong(v, kOwnCaller)) {
      materialize(r);
      return wait ? direct(c, r) : direct_send(c, r);
    }
  }
  return false;
}

// A borrower's first step: a peer that closed the idle connection shows as
// EOF (or stray bytes) before we write, and then nothing is lost by
// queueing instead. False: the connection was handed back.
bool Lender::probe(Connection &c) {
  char probe;
  const ssize_t pn = recv(c.fd(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  if (pn == 0 ||
      (pn < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    give_back_broken(c, Errc::connect,
                     pn == 0 ? c.closed_text() : "read: " + errno_text(errno));
    return false;
  }
  if (pn > 0) {  // bytes nobody asked for: the I/O thread sorts it out
    give_back(c, kOwnReturned);
    return false;
  }
  return true;
}

// The async caller's side: writes `r` on the borrowed idle connection
// (never waiting: what the socket does not take goes to the write buffer)
// and hands the connection back to the I/O thread, which reads the reply
// and runs the completion. The command leaves at once; the I/O thread
// wakes up while Redis works.
bool Lender::direct_send(Connection &c, Request &r) {
  if (!probe(c)) return false;
  size_t off = 0;
  const int err = send_now(c.fd(), r.cmd, off);
  if (err != 0 && off == 0) {  // nothing sent: the caller queues it instead
    give_back_broken(c, Errc::connect, "write: " + errno_text(err));
    return false;
  }
  // The rest (would block, or an error the I/O thread's flush meets again
  // and fails the connection with) goes to the write buffer.
  if (off < r.cmd.size()) c.wbuf.append(r.cmd, off, std::string::npos);
  c.inflight.push_back(
      InFlight{r.done, r.ctx, r.deadline, monotonic_ns(), Kind::user, false});
  p_.in_flight.fetch_add(1, std::memory_order_relaxed);
  p_.io_waits.fetch_add(1);
  give_back(c, kOwnReturned);  // wakes the I/O thread to read the reply
  return true;
}

void Lender::give_back(Connection &c, int to) {
  c.owner.store(to);
  if (to == kOwnReturned || p_.want_conn.load()) loop_.wake();
}

void Lender::give_back_broken(Connection &c, Errc code, std::string msg) {
  c.broken = true;
  c.broken_code = code;
  c.broken_msg = std::move(msg);
  give_back(c, kOwnReturned);
}

// The blocking caller's side: carries `r` on the borrowed connection and
// runs its completion on this thread.
bool Lender::direct(Connection &c, Request &r) {
  if (!probe(c)) return false;
  const int fd = c.fd();
  p_.in_flight.fetch_add(1, std::memory_order_relaxed);
  const int64_t sent_ns = monotonic_ns();
  size_t off = 0;
  bool timed_out = false;
  auto lost = [&](Errc code, const std::string &why) {
    p_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    give_back_broken(c, code, why);
    finish(r.done, r.ctx, code, "connection lost: " + why);
    return true;
  };
  for (;;) {
    const int err = send_now(fd, r.cmd, off);
    if (err != 0) {
      const std::string why = "write: " + errno_text(err);
      if (off == 0) {  // nothing left: queue it instead
        p_.in_flight.fetch_sub(1, std::memory_order_relaxed);
        give_back_broken(c, Errc::connect, why);
        return false;
      }
      return lost(Errc::connect, why);
    }
    if (off == r.cmd.size()) break;
    if (!wait_fd(fd, POLLOUT, r.deadline)) {
      timed_out = true;
      break;
    }
  }
  std::unique_ptr<Reply> reply;
  char buf[4096];
  // Before sleeping in poll, spin (retrying the read) up to spin_us: on a
  // VM an idle vCPU's wake-up costs tens of microseconds, about as much as
  // a loopback round trip. Bounded, and only on this path (a caller that
  // would otherwise sleep with nothing else to do).
  const int64_t spin_ns = loop_.spin_ns();
  int64_t wait_from = -1;  // when the first read found nothing
  int64_t spin_until = -1;
  SpinRule::Plan plan;
  int64_t cpu_from = -1;
  while (!timed_out) {
    const Reader::Status st = c.reader->next(reply);
    if (st == Reader::Status::reply) break;
    if (st == Reader::Status::error)
      return lost(Errc::protocol, c.reader->error());
    const ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got > 0) {
      if (!c.reader->feed(buf, static_cast<size_t>(got)))
        return lost(Errc::protocol, c.reader->error());
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
      return lost(Errc::connect,
                  got == 0 ? c.closed_text() : "read: " + errno_text(errno));
    if (wait_from < 0) {
      plan = spin_ns > 0 ? loop_.spin_rule().plan() : SpinRule::Plan{};
      if (plan.timed) cpu_from = SpinRule::thread_cpu_ns();
      wait_from = monotonic_ns();
      if (plan.spin) spin_until = std::min(wait_from + spin_ns, r.deadline);
    }
    if (spin_until >= 0) {
      const int64_t t = monotonic_ns();
      if (t < spin_until) {
        IoLoop::spin_pause(t - wait_from);
        continue;
      }
    }
    if (!wait_fd(fd, POLLIN, r.deadline)) timed_out = true;
  }
  if (wait_from >= 0 && !timed_out && spin_ns > 0) {
    const int64_t cpu_to = plan.timed ? SpinRule::thread_cpu_ns() : -1;
    loop_.spin_rule().note(
        monotonic_ns() - wait_from, plan.spin,
        cpu_from >= 0 && cpu_to >= 0 ? cpu_to - cpu_from : -1);
  }
  p_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  if (timed_out) {
    // The reply may still come: the I/O thread consumes and drops it.
    if (off < r.cmd.size()) {
      give_back_broken(c, Errc::timeout,
                       "timeout: a command was cut off mid-write");
    } else {
      c.inflight.push_back(
          InFlight{nullptr, nullptr, INT64_MAX, sent_ns, Kind::user, true});
      give_back(c, kOwnReturned);
    }
    finish(r.done, r.ctx, Errc::timeout,
           "timeout: " + c.where() + " did not answer before the deadline");
    return true;
  }
  p_.rtt.record(monotonic_ns() - sent_ns);
  // More than one reply's worth of bytes: let the I/O thread judge.
  give_back(c, c.reader->idle() ? kOwnIdle : kOwnReturned);
  CallResult res;
  res.reply = std::move(reply);
  r.done(r.ctx, std::move(res));
  return true;
}

// A caller's side: while the I/O thread awaits replies on a plain
// connection with nothing waiting to be written, takes the whole queue,
// joins it and writes it on that connection itself; the I/O thread absorbs
// the commands when it next wakes (for a reply, or the deadline of one it
// knows).
bool Lender::caller_write() {
  if (!p_.direct_ok_) return false;
  const size_t n = p_.conns.size();
  for (size_t k = 0; k < n; ++k) {
    Connection &c =
        *p_.conns[p_.rr_hint.fetch_add(1, std::memory_order_relaxed) % n];
    WriteSide &w = c.ws;
    if (w.io_known.load(std::memory_order_relaxed) == 0) continue;
    std::unique_lock<std::mutex> wlock(w.mu, std::try_to_lock);
    if (!wlock.owns_lock()) continue;
    // The owner first: only lend_idle, under this lock, moves a connection
    // away from the I/O thread, and a borrower's buffers are its own.
    if (c.owner.load() != kOwnIo || !w.open ||
        w.io_known.load(std::memory_order_relaxed) == 0 || c.fd() < 0 ||
        !c.wbuf.empty())
      continue;
    std::vector<Request> batch, joined, expired;
    {
      std::lock_guard<std::mutex> lock(p_.mu);
      if (loop_.stopping()) return false;
      p_.take_queue(batch);
    }
    if (batch.empty()) return true;
    const int64_t now = monotonic_ns();
    std::vector<void *> scratch;
    // Completions never run under the write lock: late parts are answered
    // after it is released.
    p_.join_runs(batch, joined, now, scratch, &expired);
    std::string out;
    uint32_t parts = 0;
    const size_t before = w.handed.size();
    int64_t earliest = INT64_MAX;
    for (Request &r : joined) {
      earliest = std::min(earliest, r.deadline);
      materialize(r);
      if (r.asking) {
        out += kAskingCommand;
        w.handed.push_back(
            InFlight{nullptr, nullptr, INT64_MAX, now, Kind::asking, false});
      }
      out += r.cmd;
      w.handed.push_back(
          InFlight{r.done, r.ctx, r.deadline, now, Kind::user, false, r.parts});
      parts += r.parts;
    }
    size_t added = 0;
    for (size_t k = before; k < w.handed.size(); ++k)
      added += w.handed[k].kind == Kind::user;
    p_.in_flight.fetch_add(static_cast<uint32_t>(added),
                           std::memory_order_relaxed);
    p_.caller_written.fetch_add(added, std::memory_order_relaxed);
    p_.io_waits.fetch_add(parts);
    size_t off = 0;
    send_now(c.fd(), out, off);
    // The rest (would block, or an error the I/O thread's write meets
    // again) goes to the write buffer; the I/O thread writes it (or fails
    // the connection, answering these commands).
    const bool rest = off < out.size();
    if (rest) c.wbuf.append(out, off, std::string::npos);
    if (earliest < w.handed_deadline.load(std::memory_order_relaxed))
      w.handed_deadline.store(earliest);
    wlock.unlock();
    for (Request &r : expired)
      finish(r.done, r.ctx, Errc::timeout, kUnsentText);
    if (rest) {
      loop_.set_awake();
      loop_.wake();
    } else {
      loop_.wake_before(earliest);
    }
    return true;
  }
  return false;
}

void Lender::reclaim(int64_t now) {
  for (auto &cp : p_.conns) {
    Connection &c = *cp;
    int v = c.owner.load();
    if (v != kOwnIdle && v != kOwnReturned) continue;
    if (!c.owner.compare_exchange_strong(v, kOwnIo)) continue;  // borrowed
    if (c.broken) {
      c.broken = false;
      c.fail(c.broken_code, c.broken_msg, now);
    } else if (c.fd() >= 0) {
      // An async borrower's command awaits its reply (and maybe the rest of
      // its bytes in wbuf): its deadline is ours now.
      for (const InFlight &f : c.inflight)
        if (f.kind == Kind::user && !f.finished) p_.note_deadline(f.deadline);
      c.watch(c.wbuf.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT);
      // Bytes a borrower read past its reply (a late reply it gave up on,
      // or one nobody asked for) are judged now, not at the next read.
      if (!c.reader->idle()) c.drain_replies(now);
    }
  }
}

// While lent, only the peer closing (EPOLLRDHUP) wakes the I/O thread, not
// the borrowers' replies.
void Lender::lend_idle() {
  if (!p_.direct_ok_ || !p_.waiting.empty()) return;
  for (auto &cp : p_.conns) {
    Connection &c = *cp;
    if (!c.owned() || !c.ready() || c.fd() < 0) continue;
    // Under the write lock: not while a caller's commands are being written
    // or await their replies, and once lent no caller writes here (a caller
    // checks the owner under this lock).
    std::lock_guard<std::mutex> lock(c.ws.mu);
    if (!c.inflight.empty() || !c.wbuf.empty() || c.tls_wants_write() ||
        !c.reader->idle() || !c.ws.handed.empty())
      continue;
    c.ws.io_known.store(0, std::memory_order_relaxed);
    c.watch(EPOLLRDHUP);
    c.owner.store(kOwnIdle, std::memory_order_release);
  }
}

}  // namespace tollgate::redis
