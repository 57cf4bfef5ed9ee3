#include "tollgate/exemptions.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace tollgate {
namespace {

// Hex digits, '.', ':' and '/' only, with a '.' or a ':': meant as an
// address or a range, so it must parse as one.
bool looks_like_address(std::string_view s) {
  bool sep = false;
  for (char c : s) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F');
    if (c == '.' || c == ':') sep = true;
    if (!hex && c != '.' && c != ':' && c != '/') return false;
  }
  return sep;
}

bool prefix_matches(const uint8_t *a, const uint8_t *net, unsigned bits) {
  const unsigned whole = bits / 8, rest = bits % 8;
  if (std::memcmp(a, net, whole) != 0) return false;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xFF00u >> rest);
  return (a[whole] & mask) == (net[whole] & mask);
}

}  // namespace

bool parse_ip(std::string_view text, std::array<uint8_t, 16> &addr, bool &v6) {
  // INET6_ADDRSTRLEN is 46; longer text is not an address.
  char buf[64];
  if (text.empty() || text.size() >= sizeof buf) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  addr.fill(0);
  if (inet_pton(AF_INET, buf, addr.data()) == 1) {
    v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, buf, addr.data()) != 1) return false;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0,    0,
                                          0, 0, 0, 0, 0xFF, 0xFF};
  if (std::memcmp(addr.data(), kMapped, sizeof kMapped) == 0) {
    std::memmove(addr.data(), addr.data() + 12, 4);
    std::memset(addr.data() + 4, 0, 12);
    v6 = false;
    return true;
  }
  v6 = true;
  return true;
}

Errc KeyList::parse(const std::vector<std::string_view> &entries,
                    size_t max_key_len, KeyList &out) {
  KeyList list;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string_view e = entries[i];
    const std::string where = "entries[" + std::to_string(i) + "]: ";
    if (e.empty()) return fail(Errc::invalid_arg, where + "empty");
    const size_t slash = e.find('/');
    std::array<uint8_t, 16> probe;
    bool probe_v6 = false;
    // An address followed by '/' is meant as a range, whatever follows.
    const bool range_like = slash != std::string_view::npos &&
                            parse_ip(e.substr(0, slash), probe, probe_v6);
    if (!range_like && !looks_like_address(e)) {
      if (e.size() > max_key_len)
        return fail(Errc::invalid_arg, where + "a key of " +
                                           std::to_string(e.size()) +
                                           " bytes; keys are at most " +
                                           std::to_string(max_key_len));
      list.keys_.emplace(e);
      continue;
    }
    Range r;
    if (!parse_ip(e.substr(0, slash), r.net, r.v6))
      return fail(Errc::invalid_arg,
                  where +
                      "not an IPv4 or IPv6 address or CIDR range "
                      "(expected e.g. 10.0.0.0/8 or 2001:db8::/32)");
    const unsigned max_bits = r.v6 ? 128 : 32;
    unsigned bits = max_bits;
    if (slash != std::string_view::npos) {
      const std::string_view len = e.substr(slash + 1);
      if (len.empty() || len.size() > 3)
        return fail(Errc::invalid_arg, where + "a CIDR prefix length is 0 to " +
                                           std::to_string(max_bits));
      bits = 0;
      for (char c : len) {
        if (c < '0' || c > '9')
          return fail(Errc::invalid_arg, where +
                                             "a CIDR prefix length is 0 to " +
                                             std::to_string(max_bits));
        bits = bits * 10 + static_cast<unsigned>(c - '0');
      }
      // A mapped IPv4 range given in IPv6 form (::ffff:10.0.0.0/104).
      if (!r.v6 && e.find(':') != std::string_view::npos) {
        if (bits < 96)
          return fail(Errc::invalid_arg,
                      where +
                          "an IPv4-mapped range needs a prefix of 96 to "
                          "128");
        bits -= 96;
      }
      if (bits > max_bits)
        return fail(Errc::invalid_arg, where + "a CIDR prefix length is 0 to " +
                                           std::to_string(max_bits));
    }
    r.bits = static_cast<uint8_t>(bits);
    list.ranges_.push_back(r);
  }
  out = std::move(list);
  return Errc::ok;
}

bool KeyList::contains(std::string_view key) const {
  if (!keys_.empty() && keys_.find(key) != keys_.end()) return true;
  if (ranges_.empty()) return false;
  std::array<uint8_t, 16> a;
  bool v6 = false;
  if (!looks_like_address(key) || !parse_ip(key, a, v6)) return false;
  for (const Range &r : ranges_)
    if (r.v6 == v6 && prefix_matches(a.data(), r.net.data(), r.bits))
      return true;
  return false;
}

}  // namespace tollgate
