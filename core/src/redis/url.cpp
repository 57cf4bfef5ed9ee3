#include "tollgate/redis/url.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <set>
#include <string_view>

namespace tollgate::redis {
namespace {

Errc bad(std::string message) {
  return fail(Errc::url, "url: " + message);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in`; `what` names the part for the error (never the
// text itself, which may be a password).
Errc decode(std::string_view in, const char *what, std::string &out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size())
      return bad(std::string("malformed %-escape in the ") + what);
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0)
      return bad(std::string("malformed %-escape in the ") + what);
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return Errc::ok;
}

bool parse_u64(std::string_view s, uint64_t &out) {
  if (s.empty() || s.size() > 19) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

Errc number(std::string_view key, std::string_view value, uint64_t lo,
            uint64_t hi, uint64_t &out) {
  if (!parse_u64(value, out) || out < lo || out > hi)
    return bad("option " + std::string(key) + " expects an integer in " +
               std::to_string(lo) + ".." + std::to_string(hi));
  return Errc::ok;
}

Errc boolean(std::string_view key, std::string_view v, bool &out) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") {
    out = true;
  } else if (v == "0" || v == "false" || v == "no" || v == "off") {
    out = false;
  } else {
    return bad("option " + std::string(key) +
               " expects 1|0|true|false|yes|no|on|off");
  }
  return Errc::ok;
}

Errc apply_option(std::string_view key, const std::string &value, bool unix,
                  Settings &s) {
  uint64_t n = 0;
  Errc rc = Errc::ok;
  const bool tls_option = key.rfind("tls_", 0) == 0;
  if (tls_option && !s.tls.enabled)
    return bad("option " + std::string(key) +
               " requires rediss:// (or rediss+cluster://, "
               "rediss+sentinel://)");
  const bool sentinel_option =
      key == "sentinel_username" || key == "sentinel_password";
  if (sentinel_option && s.topology != TopologyKind::sentinel)
    return bad("option " + std::string(key) +
               " requires redis+sentinel:// or rediss+sentinel://");
  if (key == "connect_timeout_ms") {
    rc = number(key, value, 1, 600000, n);
    s.connect_timeout_ms = static_cast<uint32_t>(n);
  } else if (key == "timeout_ms") {
    rc = number(key, value, 1, 600000, n);
    s.timeout_ms = static_cast<uint32_t>(n);
  } else if (key == "prefix") {
    if (value.empty() || value.size() > 128 ||
        value.find_first_of("{}") != std::string::npos)
      return bad("option prefix expects 1..128 bytes without { or }");
    s.key_prefix = value;
  } else if (key == "tls_ca") {
    s.tls.ca_file = value;
  } else if (key == "tls_ca_dir") {
    s.tls.ca_dir = value;
  } else if (key == "tls_cert") {
    s.tls.cert_file = value;
  } else if (key == "tls_key") {
    s.tls.key_file = value;
  } else if (key == "tls_server_name") {
    s.tls.server_name = value;
  } else if (key == "tls_verify") {
    rc = boolean(key, value, s.tls.verify);
  } else if (key == "failure_mode") {
    if (value == "open")
      s.failure_mode = FailureMode::open;
    else if (value == "closed")
      s.failure_mode = FailureMode::closed;
    else if (value == "local")
      s.failure_mode = FailureMode::local;
    else if (value == "error")
      s.failure_mode = FailureMode::error;
    else
      return bad("option failure_mode expects open|closed|local|error");
  } else if (key == "local_divisor") {
    rc = number(key, value, 1, 1000000, n);
    s.local_divisor = static_cast<uint32_t>(n);
  } else if (key == "deny_cache") {
    rc = boolean(key, value, s.deny_cache);
  } else if (key == "functions") {
    rc = boolean(key, value, s.functions);
  } else if (key == "deny_cache_size") {
    rc = number(key, value, 1, 10000000, n);
    s.deny_cache_size = static_cast<uint32_t>(n);
  } else if (key == "connections") {
    rc = number(key, value, 1, 64, n);
    s.connections = static_cast<uint32_t>(n);
  } else if (key == "reconnect_max_ms") {
    rc = number(key, value, 10, 600000, n);
    s.reconnect_max_ms = static_cast<uint32_t>(n);
  } else if (key == "spin_us") {
    rc = number(key, value, 0, 1000, n);
    s.spin_us = static_cast<uint32_t>(n);
  } else if (key == "max_async") {
    rc = number(key, value, 0, 2147483647, n);
    s.max_async = static_cast<uint32_t>(n);
  } else if (key == "sentinel_username") {
    // The sentinels' own ACL user and password (AUTH to each sentinel);
    // the URL's user info is for the data nodes. Never echoed.
    s.sentinel_username = value;
  } else if (key == "sentinel_password") {
    s.sentinel_password = value;
  } else if (key == "db") {
    if (s.topology == TopologyKind::cluster) {
      // A cluster has only database 0; ?db=0 is accepted as a no-op.
      if (!parse_u64(value, n) || n != 0)
        return bad("option db: a cluster has only database 0");
      s.db = 0;
      return Errc::ok;
    }
    if (!unix)
      return bad(
          "option db is for unix:// URLs; redis:// and redis+sentinel:// "
          "take the database in the path (redis://host:6379/2, "
          "redis+sentinel://host:26379/mymaster/2)");
    rc = number(key, value, 0, 2147483647, n);
    s.db = static_cast<int>(n);
  } else {
    return bad("unknown option '" + std::string(key) + "'");
  }
  return rc;
}

Errc parse_query(std::string_view query, bool unix, Settings &s) {
  std::set<std::string> seen;
  size_t start = 0;
  while (start <= query.size()) {
    size_t amp = query.find('&', start);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view pair = query.substr(start, amp - start);
    start = amp + 1;
    if (pair.empty()) return bad("empty option in the query");
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return bad("options are key=value pairs");
    std::string key, value;
    Errc rc = decode(pair.substr(0, eq), "option name", key);
    if (rc != Errc::ok) return rc;
    rc = decode(pair.substr(eq + 1), "option value", value);
    if (rc != Errc::ok) return rc;
    if (!seen.insert(key).second)
      return bad("option '" + key + "' given twice");
    rc = apply_option(key, value, unix, s);
    if (rc != Errc::ok) return rc;
    if (amp == query.size()) break;
  }
  return Errc::ok;
}

// The database in a path's last part ("2" of /2 or /mymaster/2).
Errc parse_db(std::string_view digits, const char *form, Settings &s) {
  uint64_t db = 0;
  if (!parse_u64(digits, db) || db > 2147483647)
    return bad(std::string("the path must be ") + form);
  s.db = static_cast<int>(db);
  return Errc::ok;
}

// host, host:port, [v6] or [v6]:port. `where` starts each message ("" for
// the one host of a redis:// URL, "seed 2: " in a list). The port stays
// `out.port` when the text has none.
Errc parse_host_port(std::string_view authority, const std::string &where,
                     HostPort &out) {
  std::string_view host = authority, port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return bad(where + "unterminated [ in an IPv6 host");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad(where + "expected :port after ]");
      port = after.substr(1);
      if (port.empty()) return bad(where + "empty port");
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET6, std::string(host).c_str(), buf) != 1)
      return bad(where + "malformed IPv6 address in brackets");
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) return bad(where + "empty port");
    }
  }
  if (host.empty()) return bad(where + "missing host");
  if (host.find_first_of(" %/?#@[]") != std::string_view::npos)
    return bad(where + "malformed host");
  out.host = std::string(host);
  if (!port.empty()) {
    uint64_t p = 0;
    if (!parse_u64(port, p) || p < 1 || p > 65535)
      return bad(where + "port must be 1..65535");
    out.port = static_cast<uint16_t>(p);
  }
  return Errc::ok;
}

// A comma-separated seed list (cluster nodes or sentinels). A seed's port
// is optional, as in redis-py (whose ClusterNode defaults to 6379) and in
// most sentinel clients (26379, the port Sentinel listens on by default):
// `default_port` is 6379 for cluster seeds and 26379 for sentinels. (The
// Python limits library requires an explicit port on every seed; every
// URL it accepts means the same here.)
Errc parse_seeds(std::string_view list, uint16_t default_port,
                 std::vector<HostPort> &out) {
  out.clear();
  if (list.find_first_not_of(',') == std::string_view::npos)
    return bad(
        "empty seed list: expected host[:port][,host[:port]...] (unix "
        "sockets are not supported with cluster or sentinel)");
  size_t start = 0;
  for (size_t i = 1;; ++i) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view seed = list.substr(start, comma - start);
    const std::string where = "seed " + std::to_string(i) + ": ";
    if (seed.empty()) return bad(where + "empty (a stray ',')");
    HostPort hp;
    hp.port = default_port;
    const Errc rc = parse_host_port(seed, where, hp);
    if (rc != Errc::ok) return rc;
    out.push_back(std::move(hp));
    if (comma == list.size()) break;
    start = comma + 1;
  }
  return Errc::ok;
}

// The master name and optional database of a sentinel URL's path:
// /<master-name>[/db] (a trailing '/' after either is allowed).
Errc parse_sentinel_path(std::string_view path, Settings &s) {
  if (!path.empty()) path.remove_prefix(1);  // the '/'
  const size_t slash = path.find('/');
  const std::string_view name = path.substr(0, slash);
  if (name.empty())
    return bad(
        "missing master name: expected "
        "redis+sentinel://host[:port][,host[:port]...]/<master-name>[/db]");
  Errc rc = decode(name, "master name", s.master_name);
  if (rc != Errc::ok) return rc;
  for (const char c : s.master_name)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad("malformed master name (spaces or control characters)");
  if (slash == std::string_view::npos) return Errc::ok;
  const std::string_view db = path.substr(slash + 1);
  if (db.empty()) return Errc::ok;
  return parse_db(db, "/<master-name>/<db>, a database number 0 .. 2147483647",
                  s);
}

struct Scheme {
  std::string_view prefix;
  TopologyKind topology;
  bool tls;
  bool unix;
};

constexpr Scheme kSchemes[] = {
    {"redis://", TopologyKind::standalone, false, false},
    {"rediss://", TopologyKind::standalone, true, false},
    {"unix://", TopologyKind::standalone, false, true},
    {"redis+cluster://", TopologyKind::cluster, false, false},
    {"rediss+cluster://", TopologyKind::cluster, true, false},
    {"redis+sentinel://", TopologyKind::sentinel, false, false},
    {"rediss+sentinel://", TopologyKind::sentinel, true, false},
};

bool unix_topology_scheme(std::string_view url) {
  return url.rfind("unix+cluster://", 0) == 0 ||
         url.rfind("unix+sentinel://", 0) == 0;
}

}  // namespace

bool is_redis_url(const std::string &url) {
  for (const Scheme &scheme : kSchemes)
    if (url.rfind(scheme.prefix, 0) == 0) return true;
  return unix_topology_scheme(url);
}

Errc parse_url(const std::string &url, Settings &out) {
  Settings s = out;
  std::string_view rest(url);
  const Scheme *scheme = nullptr;
  for (const Scheme &candidate : kSchemes)
    if (rest.rfind(candidate.prefix, 0) == 0) scheme = &candidate;
  if (scheme == nullptr) {
    if (unix_topology_scheme(rest))
      return bad(
          "unix sockets are not supported with cluster or sentinel: use "
          "redis+cluster:// or redis+sentinel:// with host[:port] seeds");
    return bad(
        "expected redis://, rediss://, unix://, redis+cluster://, "
        "rediss+cluster://, redis+sentinel:// or rediss+sentinel://");
  }
  rest.remove_prefix(scheme->prefix.size());
  const bool unix = scheme->unix;
  s.topology = scheme->topology;
  if (scheme->tls) s.tls.enabled = true;
  s.seeds.clear();  // from the URL only, never from `out`
  s.master_name.clear();
  if (rest.find('#') != std::string_view::npos)
    return bad("fragments (#...) are not allowed");
  std::string_view query;
  const size_t q = rest.find('?');
  if (q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    if (query.empty()) return bad("empty query after '?'");
  }

  if (unix) {
    s.unix_socket = true;
    if (rest.empty() || rest[0] != '/')
      return bad("unix:// needs an absolute socket path (unix:///path)");
    Errc rc = decode(rest, "socket path", s.path);
    if (rc != Errc::ok) return rc;
    if (s.path.size() > 107) return bad("unix socket path is too long");
  } else {
    // [userinfo@]host[:port][/db], or [userinfo@]seed[,seed...][/path]
    const size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos
                                ? std::string_view()
                                : rest.substr(slash);
    const size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      const std::string_view userinfo = authority.substr(0, at);
      authority = authority.substr(at + 1);
      const size_t colon = userinfo.find(':');
      Errc rc = decode(userinfo.substr(0, colon), "user name", s.username);
      if (rc != Errc::ok) return rc;
      if (colon != std::string_view::npos) {
        rc = decode(userinfo.substr(colon + 1), "password", s.password);
        if (rc != Errc::ok) return rc;
      } else if (!s.username.empty()) {
        // redis://secret@host is the old form: the single field is the
        // password, as in redis-py and ioredis.
        s.password = s.username;
        s.username.clear();
      }
    }
    if (s.topology == TopologyKind::standalone) {
      if (authority.find(',') != std::string_view::npos)
        return bad(
            "a host list needs redis+cluster:// or redis+sentinel:// "
            "(redis:// takes one host)");
      HostPort hp;
      hp.port = s.port;
      const Errc rc = parse_host_port(authority, "", hp);
      if (rc != Errc::ok) return rc;
      s.host = std::move(hp.host);
      s.port = hp.port;
      if (!path.empty() && path != "/") {
        const Errc prc = parse_db(path.substr(1),
                                  "a database number (/0 .. /2147483647)", s);
        if (prc != Errc::ok) return prc;
      }
    } else {
      const bool cluster = s.topology == TopologyKind::cluster;
      Errc rc = parse_seeds(authority, cluster ? 6379 : 26379, s.seeds);
      if (rc != Errc::ok) return rc;
      s.host = s.seeds[0].host;
      s.port = s.seeds[0].port;
      if (cluster) {
        s.db = 0;  // whatever `out` had: a cluster has only database 0
        if (!path.empty() && path != "/")
          return bad(
              "redis+cluster:// takes no /db path: a cluster has only "
              "database 0");
      } else {
        rc = parse_sentinel_path(path, s);
        if (rc != Errc::ok) return rc;
      }
    }
  }
  if (!query.empty()) {
    Errc rc = parse_query(query, unix, s);
    if (rc != Errc::ok) return rc;
  }
  if (s.tls.cert_file.empty() != s.tls.key_file.empty())
    return bad("tls_cert and tls_key go together (mutual TLS needs both)");
  if (!s.sentinel_username.empty() && s.sentinel_password.empty())
    return bad("sentinel_username needs sentinel_password");
  out = std::move(s);
  return Errc::ok;
}

}  // namespace tollgate::redis
