#include "tollgate/headers.hpp"

#include <algorithm>

namespace tollgate {
namespace {

// Whole seconds, rounded up, never negative. Not (ms + 999) / 1000: a
// caller's decision may hold any int64, and INT64_MAX + 999 overflows.
int64_t ceil_s(int64_t ms) {
  return ms <= 0 ? 0 : ms / 1000 + (ms % 1000 != 0);
}

std::string sf_string(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c < 0x20 || c > 0x7e) continue;  // sf-string is printable ASCII
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace

HeaderValues format_headers(bool allowed, int64_t limit, int64_t remaining,
                            int64_t reset_after_ms, int64_t retry_after_ms,
                            int64_t period_ms, std::string_view name) {
  HeaderValues h;
  const std::string n = sf_string(name.empty() ? "default" : name);
  const int64_t window = ceil_s(period_ms);
  const int64_t reset = ceil_s(reset_after_ms);
  const int64_t left = remaining < 0 ? 0 : remaining;
  h.ratelimit_policy =
      n + ";q=" + std::to_string(limit) + ";w=" + std::to_string(window);
  h.ratelimit =
      n + ";r=" + std::to_string(left) + ";t=" + std::to_string(reset);
  h.x_limit = std::to_string(limit);
  h.x_remaining = std::to_string(left);
  h.x_reset = std::to_string(reset);
  if (!allowed) {
    // A request that can never pass (cost above capacity) has no finite
    // retry; one window is the honest "not soon" a client can act on.
    const int64_t retry = retry_after_ms < 0
                              ? window
                              : std::max<int64_t>(1, ceil_s(retry_after_ms));
    h.retry_after = std::to_string(retry);
  }
  return h;
}

}  // namespace tollgate
