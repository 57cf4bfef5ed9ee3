// Store URLs and the Redis connection settings they carry:
//   redis://[user[:password]@]host[:port][/db][?options]
//   rediss://...                       (TLS)
//   unix:///path/to/redis.sock[?db=N&options]
//   redis+cluster://[user[:password]@]host[:port][,host[:port]...][?options]
//   rediss+cluster://...               (TLS)
//   redis+sentinel://[user[:password]@]host[:port][,host[:port]...]
//       /<master-name>[/db][?options]
//   rediss+sentinel://...              (TLS, to the sentinels and the nodes)
// Parsing is strict: unknown options, bad values and malformed URLs are
// errors that name the problem without echoing the password.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tollgate/error.hpp"
#include "tollgate/log.hpp"

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

enum class TopologyKind {
  standalone,  // redis://, rediss://, unix://
  cluster,     // redis+cluster://, rediss+cluster://
  sentinel,    // redis+sentinel://, rediss+sentinel://
};

struct HostPort {
  std::string host;  // IPv6 literals without brackets
  uint16_t port = 0;
};

struct Settings {
  TopologyKind topology = TopologyKind::standalone;
  // Where: TCP host/port, or a unix socket path. For a cluster or sentinel
  // URL, host and port are those of the first seed.
  bool unix_socket = false;
  std::string host;  // IPv6 literals without brackets
  uint16_t port = 6379;
  std::string path;  // unix socket path
  // Cluster: the seed nodes; sentinel: the sentinels; in URL order, at
  // least one. Empty for standalone URLs.
  std::vector<HostPort> seeds;
  std::string master_name;  // sentinel: the monitored master's name
  int db = 0;               // /N or ?db=N, 0 .. 2^31-1 (always 0: cluster)
  std::string username;     // ACL user of the data nodes; empty: none
  std::string password;     // the data nodes'; empty: no AUTH
  // Sentinel: AUTH for the sentinels themselves (?sentinel_username=,
  // ?sentinel_password=); the URL's user info is for the data nodes.
  std::string sentinel_username;
  std::string sentinel_password;
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
  // Async checks (Limiter::check_async, check_keys_async) waiting for the
  // store at once, at most; beyond it they are refused with Errc::busy
  // (0: no bound). 65536: well above what one process keeps in flight to a
  // healthy or merely slow server (the pending count is about rate x
  // latency, at most rate x timeout_ms: 65536 at 200 ms is 330,000
  // checks/s), while a frozen server with a long timeout holds at most
  // ~220 MB of pending calls (~3.4 KB each, docs/api-c.md).
  uint32_t max_async = 65536;
  // One-policy checks call the Redis 7 function library (FCALL) where the
  // server lets every connection load it, EVALSHA otherwise (?functions=no:
  // always EVALSHA, nothing loaded). docs/redis.md, "Functions".
  bool functions = true;
  // The limiter's log hook (never null once the limiter made it); shared by
  // every copy of these settings.
  std::shared_ptr<LogSink> log;
};

// True if `url` names a Redis store: redis://, rediss://, unix://,
// redis+cluster://, rediss+cluster://, redis+sentinel://, rediss+sentinel://
// (and unix+cluster:// or unix+sentinel://, which parse_url refuses with a
// message saying why).
bool is_redis_url(const std::string &url);

// Parses one of the URLs above into `out` (which starts with its defaults).
// Errors: Errc::url with a message naming the part or option at fault; the
// password never appears in it.
Errc parse_url(const std::string &url, Settings &out);

}  // namespace tollgate::redis
