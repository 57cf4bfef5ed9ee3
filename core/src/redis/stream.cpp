#include "stream.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "request.hpp"
#include "resolver.hpp"

namespace tollgate::redis {
namespace {

// After SSL_read or SSL_write failed for good: closed (the peer went away
// without a TLS error) or failed, with OpenSSL's reason.
Stream::Io tls_failure(Errc &code, std::string &why) {
  const std::string detail = openssl_errors();
  if (detail.empty()) return Stream::Io::closed;
  code = Errc::tls;
  why = "tls: " + detail;
  return Stream::Io::failed;
}

}  // namespace

int Stream::open(const Endpoint &e) {
  const int family = e.addr.ss_family;
  fd_ = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return errno;
  if (family != AF_UNIX) {
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  int rc;
  do {
    rc = connect(fd_, reinterpret_cast<const sockaddr *>(&e.addr), e.len);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0 || errno == EINPROGRESS || errno == EAGAIN) return 0;
  const int err = errno;
  close();
  return err;
}

int Stream::connect_error() const {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

std::string Stream::start_tls(SSL_CTX *ctx, const std::string &name,
                              bool verify) {
  ssl_ = SSL_new(ctx);
  if (!ssl_) return openssl_errors();
  SSL_set_fd(ssl_, fd_);
  if (!is_ip_literal(name)) SSL_set_tlsext_host_name(ssl_, name.c_str());
  if (verify) {
    if (is_ip_literal(name))
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
    else
      SSL_set1_host(ssl_, name.c_str());
  }
  return {};
}

Stream::Step Stream::tls_handshake(std::string &why) {
  ERR_clear_error();
  const int rc = SSL_connect(ssl_);
  if (rc == 1) return Step::done;
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) return Step::want_read;
  if (err == SSL_ERROR_WANT_WRITE) return Step::want_write;
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    why = std::string("certificate verification failed: ") +
          X509_verify_cert_error_string(verify);
  } else {
    why = openssl_errors();
    if (why.empty())
      why = err == SSL_ERROR_SYSCALL
                ? "connection closed during the TLS handshake"
                : "handshake failed";
  }
  return Step::failed;
}

Stream::Io Stream::read(char *buf, size_t cap, size_t &got, Errc &code,
                        std::string &why) {
  if (ssl_) {
    ERR_clear_error();
    const int rc = SSL_read(ssl_, buf, static_cast<int>(cap));
    if (rc > 0) {
      got = static_cast<size_t>(rc);
      return Io::data;
    }
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) return Io::again;
    if (err == SSL_ERROR_WANT_WRITE) {
      wants_write_ = true;
      return Io::again;
    }
    return tls_failure(code, why);
  }
  for (;;) {
    const ssize_t n = recv(fd_, buf, cap, 0);
    if (n > 0) {
      got = static_cast<size_t>(n);
      return Io::data;
    }
    if (n == 0) return Io::closed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::again;
    code = Errc::connect;
    why = "read: " + errno_text(errno);
    return Io::failed;
  }
}

Stream::Io Stream::write(const char *p, size_t len, size_t &wrote, Errc &code,
                         std::string &why) {
  if (ssl_) {
    ERR_clear_error();
    const int rc =
        SSL_write(ssl_, p, static_cast<int>(std::min<size_t>(len, 1 << 30)));
    if (rc > 0) {
      wrote = static_cast<size_t>(rc);
      return Io::data;
    }
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
      return Io::again;
    return tls_failure(code, why);
  }
  for (;;) {
    const ssize_t n = ::send(fd_, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      wrote = static_cast<size_t>(n);
      return Io::data;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::again;
    code = Errc::connect;
    why = "write: " + errno_text(errno);
    return Io::failed;
  }
}

void Stream::close() {
  if (ssl_) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  wants_write_ = false;
}

}  // namespace tollgate::redis
