#include "connection.hpp"

#include <openssl/err.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace tollgate::redis {
namespace {

constexpr int64_t kFirstBackoffNs = 50 * kMs;
constexpr size_t kReadChunk = 64 * 1024;

// An error reply that says "not now" (a server loading its data, busy with
// a script, out of memory, or no primary at the moment), not "never".
bool transient(const std::string &text) {
  for (std::string_view p :
       {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM"})
    if (std::string_view(text).substr(0, p.size()) == p) return true;
  return false;
}

}  // namespace

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

std::string errno_text(int err) {
  char buf[128];
  // GNU strerror_r returns the message pointer.
  return std::string(strerror_r(err, buf, sizeof buf));
}

std::string Address::text() const {
  return unix_socket ? path : host + ":" + std::to_string(port);
}

Connection::Connection(ConnectionShared &shared, Address address,
                       uint32_t token, ConnectionOwner &owner, uint64_t seed,
                       bool subscriber)
    : shared_(shared),
      s_(shared.settings),
      address_(std::move(address)),
      token_(token),
      owner_(owner),
      rng_(seed),
      subscriber_(subscriber),
      dialer_(address_, s_, shared.ssl_ctx, shared.wake_fd, shared.lookups) {}

int64_t Connection::next_timer() const {
  if (phase_ == Phase::down) return retry_at_;
  if (phase_ != Phase::ready) return phase_deadline_;
  return INT64_MAX;
}

void Connection::watch(uint32_t events) {
  if (events_ == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u32 = token_;
  epoll_ctl(shared_.ep_fd, events_ == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
            stream_.fd(), &ev);
  events_ = events;
}

int64_t Connection::backoff_ns() {
  const int64_t cap =
      static_cast<int64_t>(s_.reconnect_max_ms ? s_.reconnect_max_ms : 2000) *
      kMs;
  int64_t d = kFirstBackoffNs;
  for (int k = 1; k < attempts_ && d < cap; ++k) d *= 2;
  d = std::min(d, cap);
  // Jitter in [d/2, d]: processes that lost Redis together do not all come
  // back in the same millisecond.
  return d / 2 +
         static_cast<int64_t>(rng_() % static_cast<uint64_t>(d / 2 + 1));
}

// ---- connecting
// --------------------------------------------------------------

void Connection::start_connect(int64_t now) {
  phase_deadline_ =
      now + static_cast<int64_t>(s_.connect_timeout_ms ? s_.connect_timeout_ms
                                                       : 1000) *
                kMs;
  dialed(dialer_.start(stream_), now);
}

void Connection::check_lookup(int64_t now) {
  if (phase_ == Phase::resolving) dialed(dialer_.check_lookup(stream_), now);
}

// Follows the dialer's step: the phase it is in, what to watch, and the
// handshake once the stream is connected.
void Connection::dialed(DialStep step, int64_t now) {
  for (;;) {
    switch (step.state) {
      case DialStep::resolving:
        phase_ = Phase::resolving;
        return;
      case DialStep::tcp:
        if (phase_ != Phase::tcp) {  // a new socket
          events_ = 0;
          reader = std::make_unique<Reader>();
          wbuf.clear();
          wpos_ = 0;
        }
        phase_ = Phase::tcp;
        watch(step.events);
        return;
      case DialStep::tls:
        phase_ = Phase::tls;
        watch(step.events);
        return;
      case DialStep::retry:
        close();
        phase_ = Phase::down;
        step = dialer_.next(stream_);
        continue;
      case DialStep::connected:
        start_hello(now);
        return;
      case DialStep::failed:
        fail(step.code, step.why, now);
        return;
    }
  }
}

void Connection::start_hello(int64_t now) {
  phase_ = Phase::hello;
  handshake_left_ = 0;
  watch(EPOLLIN | EPOLLOUT);
  if (!s_.password.empty()) {
    if (s_.username.empty())
      send_internal({"AUTH", s_.password}, Kind::auth, now);
    else
      send_internal({"AUTH", s_.username, s_.password}, Kind::auth, now);
    ++handshake_left_;
  }
  if (s_.db != 0) {
    const std::string db = std::to_string(s_.db);
    send_internal({"SELECT", db}, Kind::select, now);
    ++handshake_left_;
  }
  // INFO also proves the session is authorised (NOAUTH otherwise) and
  // tells the server's version.
  send_internal({"INFO", "server"}, Kind::info, now);
  ++handshake_left_;
}

void Connection::became_ready(int64_t now) {
  phase_ = Phase::ready;
  attempts_ = 0;
  {
    std::lock_guard<std::mutex> lock(ws.mu);
    ws.open = plain();  // TLS stays on the I/O thread (see Lender)
  }
  const bool reconnect = ever_ready_;
  ever_ready_ = true;
  watch(EPOLLIN | EPOLLOUT);
  owner_.conn_ready(*this, reconnect, now);
}

void Connection::fail(Errc code, const std::string &msg, int64_t now) {
  const bool was_ready = phase_ == Phase::ready;
  close();
  const std::string lost = was_ready ? "connection lost: " + msg : msg;
  const Errc lost_code =
      was_ready && code == Errc::protocol ? Errc::protocol : code;
  std::deque<InFlight> carried;
  carried.swap(inflight);
  phase_ = Phase::down;
  ++attempts_;
  retry_at_ = now + backoff_ns();
  owner_.conn_failed(*this, carried, lost_code, lost, code, msg, now);
}

void Connection::close() {
  std::lock_guard<std::mutex> lock(ws.mu);
  absorb_locked();  // callers' commands are failed with the others
  ws.open = false;
  if (stream_.fd() >= 0)
    epoll_ctl(shared_.ep_fd, EPOLL_CTL_DEL, stream_.fd(), nullptr);
  stream_.close();
  events_ = 0;
  wbuf.clear();
  wpos_ = 0;
}

void Connection::timers(int64_t now) {
  if (phase_ == Phase::down && retry_at_ <= now) {
    start_connect(now);
  } else if (phase_ == Phase::resolving && phase_deadline_ <= now) {
    fail(Errc::connect,
         "connect: resolving host '" + address_.host + "' took over " +
             std::to_string(s_.connect_timeout_ms) + " ms",
         now);
  } else if ((phase_ == Phase::tcp || phase_ == Phase::tls ||
              phase_ == Phase::hello) &&
             phase_deadline_ <= now) {
    fail(Errc::connect,
         "connect: " + where() + ": no answer within " +
             std::to_string(s_.connect_timeout_ms) + " ms",
         now);
  }
}

// ---- writing
// -----------------------------------------------------------------

uint32_t Connection::timed() const {
  uint32_t n = 0;
  for (const InFlight &f : inflight) n += f.kind == Kind::user && !f.finished;
  return n;
}

void Connection::absorb_locked() {
  for (const InFlight &f : ws.handed) {
    owner_.note_deadline(f.deadline);
    inflight.push_back(f);
  }
  ws.handed.clear();
  ws.handed_deadline.store(INT64_MAX, std::memory_order_relaxed);
  ws.io_known.store(timed(), std::memory_order_relaxed);
}

void Connection::absorb() {
  std::lock_guard<std::mutex> lock(ws.mu);
  absorb_locked();
}

void Connection::send(Request &r, Kind kind, int64_t now) {
  materialize(r);
  std::lock_guard<std::mutex> lock(ws.mu);
  absorb_locked();
  wbuf += r.cmd;
  inflight.push_back(
      InFlight{r.done, r.ctx, r.deadline, now, kind, false, r.parts});
  ws.io_known.store(timed(), std::memory_order_relaxed);
}

void Connection::send_internal(std::vector<std::string_view> argv, Kind kind,
                               int64_t now) {
  Request r;
  format_command(argv, r.cmd);
  r.deadline = INT64_MAX;
  send(r, kind, now);
}

void Connection::flush(int64_t now) {
  if (fd() < 0 || (phase_ != Phase::hello && phase_ != Phase::ready)) return;
  // Under the write lock (callers may write on this socket too); a failure
  // is handled after it is released.
  Errc fail_code = Errc::ok;
  std::string fail_msg;
  bool pending;
  {
    std::lock_guard<std::mutex> lock(ws.mu);
    while (wpos_ < wbuf.size()) {
      size_t n = 0;
      const Stream::Io io = stream_.write(
          wbuf.data() + wpos_, wbuf.size() - wpos_, n, fail_code, fail_msg);
      if (io == Stream::Io::again) break;
      if (io == Stream::Io::closed) {
        // With TLS 1.3 a server that rejects the client may just close.
        fail_code = phase_ == Phase::hello ? Errc::tls : Errc::connect;
        fail_msg = phase_ == Phase::hello ? rejected_after_handshake()
                                          : "write: connection closed";
      }
      if (io != Stream::Io::data) break;
      wpos_ += n;
    }
    pending = wpos_ < wbuf.size();
    if (!pending) {
      wbuf.clear();
      wpos_ = 0;
    } else if (wpos_ > (1 << 20)) {
      wbuf.erase(0, wpos_);
      wpos_ = 0;
    }
  }
  if (fail_code != Errc::ok) {
    fail(fail_code, fail_msg, now);
    return;
  }
  if (!pending)
    watch(stream_.wants_write() ? EPOLLIN | EPOLLOUT : EPOLLIN);
  else
    watch(EPOLLIN | EPOLLOUT);
}

// ---- reading
// -----------------------------------------------------------------

void Connection::on_io(uint32_t events, int64_t now) {
  if (fd() < 0) return;
  switch (phase_) {
    case Phase::tcp:
    case Phase::tls:
      dialed(dialer_.on_io(stream_), now);
      return;
    case Phase::hello:
    case Phase::ready:
      if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) read_some(now);
      if (fd() >= 0 && (events & EPOLLOUT)) flush(now);
      return;
    case Phase::down:
    case Phase::resolving:
      return;
  }
}

void Connection::read_some(int64_t now) {
  char buf[kReadChunk];
  for (;;) {
    size_t n = 0;
    Errc code = Errc::ok;
    std::string why;
    switch (stream_.read(buf, sizeof buf, n, code, why)) {
      case Stream::Io::again:
        return;
      case Stream::Io::closed:
        // With TLS 1.3 a server that rejects the client (no or a bad client
        // certificate) may just close after the handshake.
        if (stream_.is_tls() && phase_ == Phase::hello)
          fail(Errc::tls, rejected_after_handshake(), now);
        else
          fail(Errc::connect, closed_text(), now);
        return;
      case Stream::Io::failed:
        fail(code, why, now);
        return;
      case Stream::Io::data:
        break;
    }
    if (!reader->feed(buf, n)) {
      fail(Errc::protocol, reader->error(), now);
      return;
    }
    if (!drain_replies(now)) return;
  }
}

// With TLS 1.3 a server that rejects the client (no or a bad client
// certificate) may just close after the handshake, before any reply.
std::string Connection::rejected_after_handshake() const {
  return "tls: " + where() +
         " closed the connection right after the TLS handshake (does it "
         "require a client certificate? see tls_cert / tls_key)";
}

std::string Connection::closed_text() const {
  if (phase_ == Phase::hello)
    return "connection closed by " + where() + " during the handshake" +
           (s_.tls.enabled ? "" : " (a TLS port needs rediss://)");
  return "connection closed by " + where();
}

bool Connection::drain_replies(int64_t now) {
  for (;;) {
    std::unique_ptr<Reply> reply;
    const Reader::Status st = reader->next(reply);
    if (st == Reader::Status::more) return true;
    if (st == Reader::Status::error) {
      fail(Errc::protocol, reader->error(), now);
      return false;
    }
    if (subscriber_ && reply->type == Reply::Type::array &&
        reply->elements.size() >= 3 &&
        reply->elements[0]->type == Reply::Type::string &&
        (reply->elements[0]->str == "message" ||
         reply->elements[0]->str == "pmessage")) {
      owner_.conn_push(*this, *reply);
      continue;
    }
    if (inflight.empty()) absorb();  // a caller's command, written
    if (inflight.empty()) {
      fail(Errc::protocol, "protocol: a reply arrived with no command waiting",
           now);
      return false;
    }
    const InFlight f = inflight.front();
    inflight.pop_front();
    switch (f.kind) {
      case Kind::user:
      case Kind::ping:
      case Kind::asking:
        if (!owner_.conn_reply(*this, f, std::move(reply), now)) return false;
        break;
      default:
        if (!handshake_reply(f, *reply, now)) return false;
    }
    if (fd() < 0) return false;
  }
}

bool Connection::handshake_reply(const InFlight &f, const Reply &reply,
                                 int64_t now) {
  const bool is_error = reply.type == Reply::Type::error;
  if (f.kind == Kind::load) {
    // A failed load is not fatal: the store falls back to EVAL.
    if (is_error) owner_.conn_note(Errc::store, "SCRIPT LOAD: " + reply.str);
  } else if (f.kind == Kind::load_functions) {
    // Not fatal either: one-policy checks call their scripts instead.
    FunctionLibrary &lib = shared_.functions;
    if (FunctionLibrary::loaded(reply)) {
      lib.usable.store(true);
    } else if (transient(reply.str)) {
      // Checks call EVALSHA until a connection loads it (the next
      // handshake, or FUNCTION LOAD after a missing function).
    } else {
      const std::string why = "FUNCTION LOAD refused by " + where() +
                              " (checks call EVALSHA): " + reply.str;
      if (lib.refuse(why)) owner_.conn_note(Errc::store, why);
    }
  } else if (is_error) {
    const std::string &text = reply.str;
    const bool auth = f.kind == Kind::auth || text.rfind("NOAUTH", 0) == 0 ||
                      text.rfind("WRONGPASS", 0) == 0;
    const char *step = f.kind == Kind::auth     ? "AUTH"
                       : f.kind == Kind::select ? "SELECT"
                                                : "INFO";
    fail(auth ? Errc::auth : Errc::store,
         std::string(auth ? "auth: " : "handshake: ") + step + " refused by " +
             where() + ": " + text,
         now);
    return false;
  } else if (f.kind == Kind::info) {
    const std::string &text = reply.str;
    const auto pos = text.find("redis_version:");
    int major = 0;
    if (pos != std::string::npos) {
      const auto end = text.find_first_of("\r\n", pos);
      std::string version = text.substr(pos + 14, end - pos - 14);
      std::from_chars(version.data(), version.data() + version.size(), major);
      owner_.conn_version(std::move(version));
    }
    // The session is authorised: SCRIPT LOAD once per connection; EVALSHA
    // after. (A later NOSCRIPT, e.g. after SCRIPT FLUSH, is answered by the
    // store with EVAL.) Not before: a server refuses an unauthenticated
    // client's bulk over 16 KB by closing the connection, which would hide
    // its NOAUTH.
    for (const std::string &body : shared_.preload) {
      send_internal({"SCRIPT", "LOAD", body}, Kind::load, now);
      ++handshake_left_;
    }
    // Functions came with Redis 7.0. A library already there (this
    // tollgate's, under the same name) is answered with an error, which
    // is as good as loaded.
    FunctionLibrary &lib = shared_.functions;
    if (!lib.code.empty() && !lib.refused.load()) {
      if (major >= 7) {
        send_internal({"FUNCTION", "LOAD", lib.code}, Kind::load_functions,
                      now);
        ++handshake_left_;
      } else {
        lib.refuse("");  // not an error: nothing to report
      }
    }
  }
  if (--handshake_left_ == 0) became_ready(now);
  return true;
}

}  // namespace tollgate::redis
