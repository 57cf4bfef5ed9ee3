// Store URL parsing; the forms and options are in url.hpp and
// docs/redis.md ("URLs and options").
//
// Every error starts "url: ", names the part or option at fault and shows
// the form expected. No message quotes the URL, its user info or any text
// from them, with one exception: the name of an unknown option, and only
// when it cannot be a piece of a password (see option_name_for_message).
#include "tollgate/redis/url.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <set>
#include <string_view>
#include <utility>

namespace tollgate::redis {
namespace {

constexpr uint64_t kMaxDb = 2147483647;
constexpr size_t kMaxHostLen = 255;
constexpr size_t kMaxPrefixLen = 128;
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un{}.sun_path) - 1;
constexpr const char *kTcpForm =
    "redis://[user[:password]@]host[:port][/db][?option=value&...]";

Errc bad(const std::string &message) {
  return fail(Errc::url, "url: " + message);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in` into `out`. `what` names the part for the error;
// the text itself is never quoted (it may be a password).
Errc decode(std::string_view in, const std::string &what, std::string &out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    const int hi = i + 1 < in.size() ? hex_value(in[i + 1]) : -1;
    const int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      return bad("malformed %-escape in the " + what +
                 " (expected % and two hex digits, e.g. %40 for @)");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return Errc::ok;
}

// Plain decimal digits only: no sign, no spaces, at most 19 digits.
bool parse_u64(std::string_view s, uint64_t &out) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool has_nul(const std::string &s) {
  return s.find('\0') != std::string::npos;
}

// What a query is parsed with.
struct QueryContext {
  bool unix_socket = false;
  // The raw URL has an '@' after its '?'. A well-formed URL has none there
  // unless an option value holds one; more likely a password holds an
  // unencoded '?', which ended the authority early, so the "query" may hold
  // the rest of the password. Nothing of it is then quoted.
  bool may_hold_password = false;
};

// The name of an unknown option as it may appear in a message: quoted only
// if it looks like an option name (short, [A-Za-z0-9_.-]) and the query
// cannot hold a piece of the password.
std::string option_name_for_message(std::string_view key,
                                    const QueryContext &ctx) {
  bool plain = !key.empty() && key.size() <= 32 && !ctx.may_hold_password;
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) plain = false;
  }
  if (plain) return "'" + std::string(key) + "'";
  if (ctx.may_hold_password)
    return "(name not shown: the URL has an '@' after its '?', so the query "
           "may hold part of a password; write '?' in a password as %3F and "
           "'@' as %40)";
  return "(name not shown: not a plain option name)";
}

Errc number(const char *key, const std::string &value, uint64_t lo, uint64_t hi,
            uint32_t &out) {
  uint64_t n = 0;
  if (!parse_u64(value, n) || n < lo || n > hi)
    return bad("option " + std::string(key) + " expects an integer in " +
               std::to_string(lo) + ".." + std::to_string(hi));
  out = static_cast<uint32_t>(n);
  return Errc::ok;
}

// A file name or server name handed to OpenSSL as a C string.
Errc text(const char *key, const char *expected, const std::string &value,
          std::string &out) {
  if (value.empty() || has_nul(value) || value.size() > 4096)
    return bad("option " + std::string(key) + " expects " + expected);
  out = value;
  return Errc::ok;
}

Errc apply_option(const std::string &key, const std::string &value,
                  Settings &s) {
  const char *k = key.c_str();
  if (key == "connect_timeout_ms")
    return number(k, value, 1, 600000, s.connect_timeout_ms);
  if (key == "timeout_ms") return number(k, value, 1, 600000, s.timeout_ms);
  if (key == "prefix") {
    if (value.empty() || value.size() > kMaxPrefixLen ||
        value.find_first_of("{}") != std::string::npos)
      return bad(
          "option prefix expects 1..128 bytes without { or } (the key's "
          "{hash tag} follows the prefix)");
    s.key_prefix = value;
    return Errc::ok;
  }
  if (key == "tls_ca")
    return text(k, "a CA bundle file name", value, s.tls.ca_file);
  if (key == "tls_ca_dir")
    return text(k, "a hashed CA directory name", value, s.tls.ca_dir);
  if (key == "tls_cert")
    return text(k, "a client certificate file name", value, s.tls.cert_file);
  if (key == "tls_key")
    return text(k, "a client private key file name", value, s.tls.key_file);
  if (key == "tls_server_name") {
    if (value.size() > kMaxHostLen)
      return bad("option tls_server_name expects a host name of 1..255 bytes");
    return text(k, "a host name of 1..255 bytes", value, s.tls.server_name);
  }
  if (key == "tls_verify") {
    if (value == "1" || value == "true" || value == "yes") {
      s.tls.verify = true;
    } else if (value == "0" || value == "false" || value == "no") {
      s.tls.verify = false;
    } else {
      return bad("option tls_verify expects 1|0|true|false|yes|no");
    }
    return Errc::ok;
  }
  if (key == "failure_mode") {
    if (value == "open") {
      s.failure_mode = FailureMode::open;
    } else if (value == "closed") {
      s.failure_mode = FailureMode::closed;
    } else if (value == "local") {
      s.failure_mode = FailureMode::local;
    } else if (value == "error") {
      s.failure_mode = FailureMode::error;
    } else {
      return bad("option failure_mode expects open|closed|local|error");
    }
    return Errc::ok;
  }
  if (key == "local_divisor")
    return number(k, value, 1, 1000000, s.local_divisor);
  if (key == "deny_cache") {
    if (value == "on" || value == "1" || value == "true") {
      s.deny_cache = true;
    } else if (value == "off" || value == "0" || value == "false") {
      s.deny_cache = false;
    } else {
      return bad("option deny_cache expects on|off|1|0|true|false");
    }
    return Errc::ok;
  }
  if (key == "deny_cache_size")
    return number(k, value, 1, 10000000, s.deny_cache_size);
  if (key == "connections") return number(k, value, 1, 64, s.connections);
  if (key == "reconnect_max_ms")
    return number(k, value, 10, 600000, s.reconnect_max_ms);
  if (key == "db") {
    uint64_t db = 0;
    if (!parse_u64(value, db) || db > kMaxDb)
      return bad("option db expects an integer in 0..2147483647");
    s.db = static_cast<int>(db);
    return Errc::ok;
  }
  return bad("unknown option");  // unreachable: the caller checks names
}

bool known_option(const std::string &key) {
  static const std::set<std::string, std::less<>> known = {"connect_timeout_ms",
                                                           "timeout_ms",
                                                           "prefix",
                                                           "tls_ca",
                                                           "tls_ca_dir",
                                                           "tls_cert",
                                                           "tls_key",
                                                           "tls_server_name",
                                                           "tls_verify",
                                                           "failure_mode",
                                                           "local_divisor",
                                                           "deny_cache",
                                                           "deny_cache_size",
                                                           "connections",
                                                           "reconnect_max_ms",
                                                           "db"};
  return known.count(key) != 0;
}

Errc parse_query(std::string_view query, const QueryContext &ctx, Settings &s) {
  std::set<std::string> seen;
  size_t start = 0;
  for (;;) {
    size_t amp = query.find('&', start);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view pair = query.substr(start, amp - start);
    if (pair.empty())
      return bad("empty option in the query (expected ?key=value&key=value)");
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return bad("options are key=value pairs (?timeout_ms=100&prefix=app:)");
    std::string key, value;
    Errc rc = decode(pair.substr(0, eq), "option names", key);
    if (rc != Errc::ok) return rc;
    if (!known_option(key))
      return bad("unknown option " + option_name_for_message(key, ctx) +
                 " (see docs/redis.md for the options)");
    rc = decode(pair.substr(eq + 1), "value of option " + key, value);
    if (rc != Errc::ok) return rc;
    if (!seen.insert(key).second)
      return bad("option " + key + " is given twice");
    if (key.rfind("tls_", 0) == 0 && !s.tls.enabled)
      return bad(key + " requires rediss:// (TLS)");
    if (key == "db" && !ctx.unix_socket)
      return bad(
          "option db is for unix:// URLs; redis:// and rediss:// take the "
          "database in the path (redis://host:6379/2)");
    rc = apply_option(key, value, s);
    if (rc != Errc::ok) return rc;
    if (amp == query.size()) return Errc::ok;
    start = amp + 1;
  }
}

bool host_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

// host[:port] or [ipv6][:port]
Errc parse_host_port(std::string_view authority, Settings &s) {
  std::string_view host = authority, port;
  bool has_port = false;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return bad("unterminated [ in an IPv6 host (expected [::1]:6379)");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':')
        return bad("expected :port after the IPv6 host's ] ([::1]:6379)");
      port = after.substr(1);
      has_port = true;
    }
    if (host.empty())
      return bad("missing host (expected " + std::string(kTcpForm) + ")");
    in6_addr addr{};
    if (host.size() > 45 ||
        inet_pton(AF_INET6, std::string(host).c_str(), &addr) != 1)
      return bad("malformed IPv6 address in the host (expected [::1])");
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      if (authority.find(':', colon + 1) != std::string_view::npos)
        return bad(
            "an IPv6 host must be in brackets (expected "
            "redis://[::1]:6379)");
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (host.empty())
      return bad("missing host (expected " + std::string(kTcpForm) + ")");
    if (host.size() > kMaxHostLen)
      return bad("the host is longer than 255 bytes");
    for (char c : host)
      if (!host_name_char(c))
        return bad(
            "malformed host (expected a name, an IPv4 address or an IPv6 "
            "address in brackets; only letters, digits, '-', '.' and '_')");
  }
  s.host = std::string(host);
  if (has_port) {
    uint64_t p = 0;
    if (!parse_u64(port, p) || p < 1 || p > 65535)
      return bad("port must be an integer in 1..65535 (redis://host:6379)");
    s.port = static_cast<uint16_t>(p);
  }
  return Errc::ok;
}

Errc parse_tcp(std::string_view rest, Settings &s) {
  // [userinfo@]host[:port][/db]
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = userinfo.find(':');
    Errc rc = decode(userinfo.substr(0, colon), "user info", s.username);
    if (rc != Errc::ok) return rc;
    if (colon != std::string_view::npos) {
      rc = decode(userinfo.substr(colon + 1), "user info", s.password);
      if (rc != Errc::ok) return rc;
    } else {
      // redis://secret@host: one field is a password (AUTH <password>), as
      // in redis-cli -u. Taking it for a user name would send the secret
      // as a name, and names may be shown where passwords never are.
      s.password = std::move(s.username);
      s.username.clear();
    }
  }
  Errc rc = parse_host_port(authority, s);
  if (rc != Errc::ok) return rc;
  if (!path.empty() && path != "/") {
    std::string db_text;
    rc = decode(path.substr(1), "path", db_text);
    if (rc != Errc::ok) return rc;
    uint64_t db = 0;
    if (!parse_u64(db_text, db) || db > kMaxDb)
      return bad(
          "the path must be a database number /0 .. /2147483647 "
          "(redis://host:6379/2)");
    s.db = static_cast<int>(db);
  }
  return Errc::ok;
}

Errc parse_unix(std::string_view rest, Settings &s) {
  s.unix_socket = true;
  if (rest.empty() || rest[0] != '/')
    return bad(
        "unix:// takes an absolute socket path and no host or user info "
        "(expected unix:///path/to/redis.sock[?db=N&...])");
  Errc rc = decode(rest, "socket path", s.path);
  if (rc != Errc::ok) return rc;
  if (has_nul(s.path)) return bad("the socket path must not contain %00");
  if (s.path.back() == '/')
    return bad(
        "the socket path names a directory (expected "
        "unix:///path/to/redis.sock)");
  if (s.path.size() > kMaxUnixPath)
    return bad("the socket path is longer than " +
               std::to_string(kMaxUnixPath) + " bytes");
  return Errc::ok;
}

}  // namespace

bool is_redis_url(const std::string &url) {
  return url.rfind("redis://", 0) == 0 || url.rfind("rediss://", 0) == 0 ||
         url.rfind("unix://", 0) == 0;
}

Errc parse_url(const std::string &url, Settings &out) {
  Settings s = out;
  std::string_view rest(url);
  QueryContext ctx;
  if (rest.rfind("redis://", 0) == 0) {
    rest.remove_prefix(8);
  } else if (rest.rfind("rediss://", 0) == 0) {
    rest.remove_prefix(9);
    s.tls.enabled = true;
  } else if (rest.rfind("unix://", 0) == 0) {
    rest.remove_prefix(7);
    ctx.unix_socket = true;
  } else {
    return bad("expected redis://, rediss:// or unix://");
  }
  if (rest.find('#') != std::string_view::npos)
    return bad(
        "'#' is not allowed (URLs take no fragment; write '#' in a password "
        "or an option value as %23)");
  const size_t q = rest.find('?');
  std::string_view query;
  const bool has_query = q != std::string_view::npos;
  if (has_query) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    ctx.may_hold_password = query.find('@') != std::string_view::npos;
    if (query.empty())
      return bad("empty query after '?' (expected ?key=value&...)");
  }
  Errc rc = ctx.unix_socket ? parse_unix(rest, s) : parse_tcp(rest, s);
  if (rc != Errc::ok) return rc;
  if (has_query) {
    rc = parse_query(query, ctx, s);
    if (rc != Errc::ok) return rc;
  }
  if (!s.tls.cert_file.empty() && s.tls.key_file.empty())
    return bad("tls_cert needs tls_key (mutual TLS takes both)");
  if (s.tls.cert_file.empty() && !s.tls.key_file.empty())
    return bad("tls_key needs tls_cert (mutual TLS takes both)");
  out = std::move(s);
  return Errc::ok;
}

}  // namespace tollgate::redis
