// Store URLs and the Redis connection settings they carry:
//   redis://[user[:password]@]host[:port][/db][?options]
//   rediss://...                       (TLS)
//   unix:///path/to/redis.sock[?db=N&options]
// Parsing is strict: unknown options, bad values and malformed URLs are
// errors that name the problem without echoing the password.
#pragma once

#include <cstdint>
#include <string>

#include "tollgate/error.hpp"

namespace tollgate::redis {

enum class FailureMode : int32_t {
  open = 1,
  closed = 2,
  local = 3,
  error = 4,
};

struct TlsSettings {
  bool enabled = false;     // rediss://
  bool verify = true;       // tls_verify=0 turns it off (explicit, insecure)
  std::string ca_file;      // tls_ca
  std::string ca_dir;       // tls_ca_dir
  std::string cert_file;    // tls_cert
  std::string key_file;     // tls_key
  std::string server_name;  // tls_server_name; default: the host
};

struct Settings {
  // Where: TCP host/port, or a unix socket path.
  bool unix_socket = false;
  std::string host;  // IPv6 literals without brackets
  uint16_t port = 6379;
  std::string path;      // unix socket path
  int db = 0;            // /N or ?db=N, 0 .. 2^31-1
  std::string username;  // ACL user; empty: none
  std::string password;  // empty: no AUTH
  TlsSettings tls;

  uint32_t connect_timeout_ms = 1000;
  uint32_t timeout_ms = 200;
  std::string key_prefix = "tollgate:";
  FailureMode failure_mode = FailureMode::open;
  uint32_t local_divisor = 1;
  bool deny_cache = true;
  uint32_t deny_cache_size = 10000;
  uint32_t connections = 1;
  uint32_t reconnect_max_ms = 2000;
  // A lone wait (a blocking call on an idle connection, or the I/O thread
  // with one reply awaited) polls up to this long before it sleeps, while
  // lone replies have been coming back within it (0: never).
  uint32_t spin_us = 200;
};

// True if `url` names a Redis store (redis://, rediss://, unix://).
bool is_redis_url(const std::string &url);

// Parses a redis://, rediss:// or unix:// URL into `out` (which starts with
// its defaults). Errors: Errc::url with a message naming the part or option
// at fault; the password never appears in it.
Errc parse_url(const std::string &url, Settings &out);

}  // namespace tollgate::redis
