// Bytes to and from one endpoint over a plain or a TLS socket: open a
// non-blocking socket, TLS handshake, read, write, close. What the bytes
// mean (RESP, the handshake commands) is the connection's business.
#pragma once

#include <openssl/ssl.h>
#include <sys/types.h>

#include <cstddef>
#include <string>

#include "tollgate/error.hpp"
#include "tollgate/redis/transport.hpp"

namespace tollgate::redis {

class Stream {
 public:
  Stream() = default;
  ~Stream() { close(); }
  Stream(const Stream &) = delete;
  Stream &operator=(const Stream &) = delete;

  int fd() const { return fd_; }
  bool is_tls() const { return ssl_ != nullptr; }

  // Opens a non-blocking socket and starts connecting to `e`: 0 (connected
  // or in progress) or the errno of the failure (the socket is closed).
  int open(const Endpoint &e);
  // Once the socket turned writable: 0, or the connect's errno.
  int connect_error() const;

  // TLS on the connected socket. `name`: the server name to send (SNI)
  // and, with `verify`, to check the certificate against. Empty on
  // success, else the reason.
  std::string start_tls(SSL_CTX *ctx, const std::string &name, bool verify);
  enum class Step { done, want_read, want_write, failed };
  Step tls_handshake(std::string &why);

  enum class Io { data, again, closed, failed };
  // Reads up to `cap` bytes into `buf`. data: `got` bytes; again: nothing
  // now (for TLS, `wants_write` tells whether it waits for writability);
  // closed: the peer closed; failed: `code` and `why`.
  Io read(char *buf, size_t cap, size_t &got, Errc &code, std::string &why);
  // Writes from `p`. data: `wrote` bytes (maybe fewer than len); again:
  // would block; closed: the TLS peer closed; failed: `code` and `why`.
  Io write(const char *p, size_t len, size_t &wrote, Errc &code,
           std::string &why);
  bool wants_write() const { return wants_write_; }
  void clear_wants_write() { wants_write_ = false; }

  void close();

 private:
  int fd_ = -1;
  SSL *ssl_ = nullptr;
  bool wants_write_ = false;
};

}  // namespace tollgate::redis
