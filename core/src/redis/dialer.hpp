// Getting a Stream connected to one address: the addresses (a unix path,
// an IP literal, or a host name looked up on a helper thread), each tried
// in order until one connects, then the TLS handshake. The connection
// drives it from its epoll events and bounds it with its connect deadline.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "resolver.hpp"
#include "stream.hpp"
#include "tollgate/redis/url.hpp"

namespace tollgate::redis {

struct Address;

struct DialStep {
  // resolving: wait for the lookup (the wake-up eventfd); tcp, tls: watch
  // `events` on the stream; retry: close the stream and call next();
  // connected: the stream is ready for the handshake; failed: `code`, `why`.
  enum State { resolving, tcp, tls, retry, connected, failed };
  DialStep(State st, uint32_t ev = 0, Errc c = Errc::ok, std::string w = {})
      : state(st), events(ev), code(c), why(std::move(w)) {}
  State state;
  uint32_t events;
  Errc code;
  std::string why;
};

class Dialer {
 public:
  Dialer(const Address &address, const Settings &s, SSL_CTX *ssl_ctx,
         int wake_fd, LookupThreads &lookups)
      : address_(address),
        s_(s),
        ssl_ctx_(ssl_ctx),
        wake_fd_(wake_fd),
        lookups_(lookups) {}

  DialStep start(Stream &stream);
  DialStep check_lookup(Stream &stream);  // while resolving
  DialStep on_io(Stream &stream);         // while tcp or tls
  DialStep next(Stream &stream);          // the next address

 private:
  DialStep connected_tcp(Stream &stream);
  DialStep tls_step(Stream &stream);
  DialStep failed(Errc code, std::string why);

  const Address &address_;
  const Settings &s_;
  SSL_CTX *ssl_ctx_;
  int wake_fd_;
  LookupThreads &lookups_;
  DialStep::State stage_ = DialStep::failed;
  // A lookup that outlived its deadline is kept: the next attempt waits
  // for it rather than starting another, so a resolver that hangs cannot
  // pile up threads.
  std::shared_ptr<Lookup> lookup_;
  std::vector<Endpoint> addrs_;
  size_t next_addr_ = 0;
};

}  // namespace tollgate::redis
