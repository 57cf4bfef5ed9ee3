#include "dialer.hpp"

#include <netdb.h>
#include <sys/epoll.h>
#include <sys/un.h>

#include <cstring>

#include "connection.hpp"

namespace tollgate::redis {

DialStep Dialer::failed(Errc code, std::string why) {
  stage_ = DialStep::failed;
  return DialStep{DialStep::failed, 0, code, std::move(why)};
}

DialStep Dialer::start(Stream &stream) {
  addrs_.clear();
  next_addr_ = 0;
  if (address_.unix_socket) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (address_.path.size() >= sizeof un.sun_path)
      return failed(Errc::connect, "connect: unix socket path too long");
    std::memcpy(un.sun_path, address_.path.data(), address_.path.size());
    Endpoint e;
    std::memcpy(&e.addr, &un, sizeof un);
    e.len = sizeof un;
    addrs_.push_back(e);
    return next(stream);
  }
  if (is_ip_literal(address_.host)) {  // no lookup: resolved here
    const int rc =
        resolve_now(address_.host, address_.port, AI_NUMERICHOST, addrs_);
    if (rc != 0)
      return failed(Errc::connect, "connect: cannot resolve host '" +
                                       address_.host +
                                       "': " + gai_strerror(rc));
    return next(stream);
  }
  // A host name is looked up on a helper thread, never on the I/O thread:
  // a resolver that takes seconds must not hold up every other deadline.
  stage_ = DialStep::resolving;
  if (lookup_) return check_lookup(stream);  // the previous attempt's
  std::string error;
  lookup_ =
      Lookup::start(address_.host, address_.port, wake_fd_, lookups_, error);
  if (!lookup_) return failed(Errc::connect, error);
  return DialStep{DialStep::resolving};
}

DialStep Dialer::check_lookup(Stream &stream) {
  int rc = 0;
  std::vector<Endpoint> found;
  if (!lookup_ || !lookup_->take(rc, found))
    return DialStep{DialStep::resolving};
  lookup_.reset();
  if (rc != 0 || found.empty())
    return failed(Errc::connect,
                  "connect: cannot resolve host '" + address_.host +
                      "': " + (rc != 0 ? gai_strerror(rc) : "no address"));
  addrs_ = std::move(found);
  next_addr_ = 0;
  return next(stream);
}

// Connects to the addresses left, in order, until one connects or is in
// progress; a host whose first address refuses (say ::1, where Redis
// listens on 127.0.0.1 only) is reached on the next. With none left the
// dial failed, with the last address's error.
DialStep Dialer::next(Stream &stream) {
  std::string last = "no address";
  while (next_addr_ < addrs_.size()) {
    const int err = stream.open(addrs_[next_addr_++]);
    if (err != 0) {
      last = errno_text(err);
      continue;
    }
    stage_ = DialStep::tcp;
    return DialStep{DialStep::tcp, EPOLLOUT | EPOLLIN};
  }
  return failed(Errc::connect, "connect: " + address_.text() + ": " + last);
}

DialStep Dialer::on_io(Stream &stream) {
  if (stage_ == DialStep::tls) return tls_step(stream);
  return connected_tcp(stream);
}

DialStep Dialer::connected_tcp(Stream &stream) {
  const int err = stream.connect_error();
  if (err != 0 && next_addr_ < addrs_.size())
    return DialStep{DialStep::retry};  // the next one, same deadline
  if (err != 0)
    return failed(Errc::connect,
                  "connect: " + address_.text() + ": " + errno_text(err));
  if (!ssl_ctx_) {
    stage_ = DialStep::connected;
    return DialStep{DialStep::connected};
  }
  const std::string why = stream.start_tls(
      ssl_ctx_, s_.tls.server_name.empty() ? address_.host : s_.tls.server_name,
      s_.tls.verify);
  if (!why.empty()) return failed(Errc::tls, "tls: " + why);
  stage_ = DialStep::tls;
  return tls_step(stream);
}

DialStep Dialer::tls_step(Stream &stream) {
  std::string why;
  switch (stream.tls_handshake(why)) {
    case Stream::Step::done:
      stage_ = DialStep::connected;
      return DialStep{DialStep::connected};
    case Stream::Step::want_read:
      return DialStep{DialStep::tls, EPOLLIN};
    case Stream::Step::want_write:
      return DialStep{DialStep::tls, EPOLLIN | EPOLLOUT};
    case Stream::Step::failed:
      break;
  }
  return failed(Errc::tls, "tls: " + address_.text() + ": " + why);
}

}  // namespace tollgate::redis
