// Allow and deny lists (docs/exemptions.md): exact keys, and IPv4 / IPv6
// addresses and CIDR ranges that match keys which are IP addresses.
// Evaluated in process before any store call.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "tollgate/error.hpp"

namespace tollgate {

class KeyList {
 public:
  // Parses `entries`: each an exact key (1 .. max_key_len bytes), or an
  // address ("10.1.2.3", "2001:db8::1") or a CIDR range ("10.0.0.0/8",
  // "2001:db8::/32"). Text that looks like an address or a range (hex
  // digits, '.', ':' and '/' only, with a '.' or ':') must be one:
  // "10.0.0.0/33" or "10.0.0.300" is an error naming the entry.
  static Errc parse(const std::vector<std::string_view> &entries,
                    size_t max_key_len, KeyList &out);
  bool empty() const { return keys_.empty() && ranges_.empty(); }
  size_t size() const { return keys_.size() + ranges_.size(); }
  // Whether `key` is listed: equal to a key entry, or an IP address (an
  // IPv4-mapped IPv6 address counts as its IPv4 address) inside a range.
  bool contains(std::string_view key) const;

 private:
  struct Range {
    std::array<uint8_t, 16> net{};  // IPv4 in the first 4 bytes
    uint8_t bits = 0;
    bool v6 = false;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_set<std::string, Hash, std::equal_to<>> keys_;
  std::vector<Range> ranges_;
};

// Parses an IPv4 or IPv6 address (no brackets, no zone); an IPv4-mapped
// IPv6 address becomes IPv4. Exposed for tests.
bool parse_ip(std::string_view text, std::array<uint8_t, 16> &addr, bool &v6);

}  // namespace tollgate
