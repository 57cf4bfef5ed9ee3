// The store URL parser (redis://, rediss://, unix://, redis+cluster://,
// rediss+cluster://, redis+sentinel://, rediss+sentinel://): the input is
// the URL. Besides ASan and UBSan it checks what url.hpp promises:
//  - a parsed URL is coherent (a cluster or sentinel URL has seeds and its
//    first seed is host:port, a sentinel URL has a master name, a cluster
//    has only database 0, ports are never 0, ...);
//  - an error message does not depend on the password: the same URL with
//    its password (user info, or ?sentinel_password=) replaced by another
//    gives the same result and the same message, unless the password
//    itself is malformed. So no message echoes a password.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tollgate/error.hpp"
#include "tollgate/redis/url.hpp"

using tollgate::Errc;
using tollgate::redis::parse_url;
using tollgate::redis::Settings;
using tollgate::redis::TopologyKind;

namespace {

void require(bool ok, const char *what, const std::string &url) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_url: %s\nurl: %s\n", what, url.c_str());
  std::abort();
}

struct Result {
  Errc rc;
  std::string message;
  Settings settings;
};

Result parse(const std::string &url) {
  Result r;
  tollgate::clear_last_error();
  r.rc = parse_url(url, r.settings);
  r.message = tollgate::last_error_message();
  return r;
}

void check_parsed(const std::string &url, const Settings &s) {
  require(tollgate::redis::is_redis_url(url), "parsed, yet not a Redis URL",
          url);
  if (s.unix_socket) {
    require(s.topology == TopologyKind::standalone, "unix with a topology",
            url);
    require(!s.path.empty() && s.path.size() <= 107, "bad unix path", url);
  } else {
    require(!s.host.empty() && s.port != 0, "no host or port", url);
  }
  if (s.topology == TopologyKind::standalone) {
    require(s.seeds.empty() && s.master_name.empty(), "standalone seeds", url);
  } else {
    require(!s.seeds.empty(), "no seeds", url);
    require(s.host == s.seeds[0].host && s.port == s.seeds[0].port,
            "host is not the first seed", url);
    for (const auto &seed : s.seeds)
      require(!seed.host.empty() && seed.port != 0, "empty seed", url);
  }
  if (s.topology == TopologyKind::cluster)
    require(s.db == 0 && s.master_name.empty(), "cluster db or master", url);
  if (s.topology == TopologyKind::sentinel)
    require(!s.master_name.empty(), "sentinel without a master name", url);
  else
    require(s.sentinel_username.empty() && s.sentinel_password.empty(),
            "sentinel credentials outside sentinel", url);
  require(s.db >= 0, "negative db", url);
  require(s.tls.cert_file.empty() == s.tls.key_file.empty(),
          "a TLS cert without its key", url);
  require(s.tls.enabled == (url.rfind("rediss", 0) == 0), "TLS flag", url);
  require(s.connections >= 1 && s.timeout_ms >= 1 && s.local_divisor >= 1,
          "option out of range", url);
  require(!s.key_prefix.empty() &&
              s.key_prefix.find_first_of("{}") == std::string::npos,
          "bad key prefix", url);
}

// The span of the URL's password, as the URL grammar places it: the user
// info is what precedes the last '@' of the authority (the text between
// "://" and the first '/' or '?'); the password follows its first ':', or
// is the whole user info in the old form redis://secret@host. Empty
// length: none.
std::pair<size_t, size_t> userinfo_password(const std::string &url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || url.rfind("unix", 0) == 0 ||
      url.find_first_of("/?#") < scheme_end)
    return {0, 0};
  const size_t start = scheme_end + 3;
  size_t end = url.find_first_of("/?#", start);
  if (end == std::string::npos) end = url.size();
  const std::string_view authority(url.data() + start, end - start);
  const size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return {0, 0};
  const size_t colon = authority.substr(0, at).find(':');
  if (colon == std::string_view::npos) return {start, at};
  return {start + colon + 1, at - colon - 1};
}

// The spans of every ?sentinel_password= value.
std::vector<std::pair<size_t, size_t>> option_passwords(
    const std::string &url) {
  std::vector<std::pair<size_t, size_t>> out;
  const size_t q = url.find('?');
  if (q == std::string::npos) return out;
  size_t start = q + 1;
  while (start <= url.size()) {
    size_t amp = url.find_first_of("&#", start);
    if (amp == std::string::npos) amp = url.size();
    constexpr std::string_view kKey = "sentinel_password=";
    if (std::string_view(url).substr(start, amp - start).rfind(kKey, 0) == 0)
      out.emplace_back(start + kKey.size(), amp - start - kKey.size());
    start = amp + 1;
  }
  return out;
}

bool is_password_escape_error(const std::string &message) {
  return message == "url: malformed %-escape in the password" ||
         message == "url: malformed %-escape in the user name" ||
         message == "url: malformed %-escape in the option value";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string url(reinterpret_cast<const char *>(data), size);
  const Result first = parse(url);
  if (first.rc == Errc::ok) {
    require(first.message.empty(), "a message after success", url);
    check_parsed(url, first.settings);
  } else {
    require(first.rc == Errc::url, "an error other than Errc::url", url);
    require(first.message.rfind("url: ", 0) == 0, "message without 'url: '",
            url);
  }

  // Replace every password (right to left, so earlier spans stay put) by a
  // well-formed one of another length and content.
  std::vector<std::pair<size_t, size_t>> spans = option_passwords(url);
  const auto userinfo = userinfo_password(url);
  if (userinfo.second > 0) spans.push_back(userinfo);
  std::sort(spans.begin(), spans.end());
  std::string other = url;
  bool replaced = false;
  for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
    if (it->second == 0) continue;  // an empty password stays empty
    other.replace(it->first, it->second, "pw");
    replaced = true;
  }
  if (!replaced) return 0;
  const Result second = parse(other);
  if (first.rc != second.rc || first.message != second.message) {
    // Only the password's own malformed escape may tell them apart, and
    // that message names the part, not its text.
    require(first.rc == Errc::url && is_password_escape_error(first.message),
            "the result depends on the password's text", url);
  } else if (first.rc == Errc::ok) {
    require(second.settings.host == first.settings.host &&
                second.settings.db == first.settings.db &&
                second.settings.username == first.settings.username,
            "the password changed another field", url);
  }
  return 0;
}
