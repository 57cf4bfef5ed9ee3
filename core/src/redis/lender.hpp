// The direct path: callers that carry their own commands instead of
// handing them to the I/O thread, which on a VM saves a thread wake-up
// (about as costly as a loopback round trip) per command.
//  - A blocking caller borrows an idle connection (ready, nothing in
//    flight), writes its command, waits for the reply (spinning a little
//    first) and runs the completion itself.
//  - An async caller borrows an idle connection, writes its command and
//    hands the connection back; the I/O thread reads the reply.
//  - A caller whose queued batch is due while the I/O thread awaits replies
//    on a plain connection writes the batch there itself (caller_write).
// Plain TCP only: TLS stays on the I/O thread (SSL_write on a caller's
// thread could raise SIGPIPE there; the I/O thread blocks it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "request.hpp"

namespace tollgate::redis {

class Pipeline;
class Connection;
class IoLoop;

class Lender {
 public:
  Lender(Pipeline &p, IoLoop &loop) : p_(p), loop_(loop) {}

  // Any thread. False: nothing was done (no idle connection, or it turned
  // out closed before anything was sent); the caller queues `r`.
  bool try_direct(Request &r, bool wait);
  // Any thread. False if no connection qualifies.
  bool caller_write();

  // I/O thread: takes back every idle or returned connection; lends every
  // idle ready one.
  void reclaim(int64_t now);
  void lend_idle();

 private:
  bool probe(Connection &c);
  bool direct_send(Connection &c, Request &r);
  bool direct(Connection &c, Request &r);
  void give_back(Connection &c, int to);
  void give_back_broken(Connection &c, Errc code, std::string msg);

  Pipeline &p_;
  IoLoop &loop_;
};

}  // namespace tollgate::redis
