// What the transport's parts pass between them: a command on its way out
// (Request), a command on the wire awaiting its reply (InFlight), and the
// one way a command is answered (finish). Private to core/src/redis.
#pragma once

#include <cstdint>
#include <string>

#include "tollgate/redis/transport.hpp"

namespace tollgate::redis {

inline constexpr int64_t kMs = 1000000;  // ns

// Why a command is on a connection. Users' commands carry a completion;
// the others are the connection's own (handshake, keep-alive, redirects).
enum class Kind : uint8_t {
  user,
  auth,
  select,
  info,
  load,
  load_functions,
  ping,
  asking
};

struct Request {
  std::string cmd;  // empty for a joinable command until it is sent
  int64_t deadline = 0;
  Completion done = nullptr;
  void *ctx = nullptr;
  const Joiner *joiner = nullptr;  // set: joinable, ctx is its part
  uint32_t parts = 1;              // commands it carries (joined: several)
  bool asking = false;  // cluster: preceded by ASKING on the same socket
};

// Gives a joinable command its own text, unless it has it already.
inline void materialize(Request &r) {
  if (r.joiner && r.cmd.empty()) r.joiner->single(r.ctx, r.cmd);
}

struct InFlight {
  Completion done;
  void *ctx;
  int64_t deadline;
  int64_t sent_ns;
  Kind kind;
  bool finished;  // answered already (timed out): its reply is dropped
  uint32_t parts = 1;
};

inline void finish(Completion done, void *ctx, Errc code,
                   const std::string &msg) {
  CallResult r;
  r.code = code;
  r.message = msg;
  done(ctx, std::move(r));
}

inline constexpr const char *kClosedText = "closed: the limiter was destroyed";
inline constexpr std::string_view kAskingCommand = "*1\r\n$6\r\nASKING\r\n";
inline constexpr const char *kUnsentText =
    "timeout: the deadline passed before the command was sent";

// strerror_r's text for errno `err`.
std::string errno_text(int err);
// OpenSSL's error queue as text (emptied).
std::string openssl_errors();

}  // namespace tollgate::redis
