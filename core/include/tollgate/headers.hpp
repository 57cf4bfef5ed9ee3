// HTTP rate-limit headers for a decision: the IETF draft fields
// (draft-ietf-httpapi-ratelimit-headers: RateLimit-Policy and RateLimit),
// the legacy X-RateLimit-* trio and Retry-After. One function, so every
// binding emits byte-identical headers for the same decision.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tollgate {

struct HeaderValues {
  std::string ratelimit_policy;  // "<name>";q=<limit>;w=<window s>
  std::string ratelimit;         // "<name>";r=<remaining>;t=<reset s>
  std::string x_limit;           // X-RateLimit-Limit
  std::string x_remaining;       // X-RateLimit-Remaining
  std::string x_reset;           // X-RateLimit-Reset (seconds from now)
  std::string retry_after;       // Retry-After; empty when allowed
};

// `name` is the policy's name in the structured fields (quoted as an sf-
// string; bytes outside printable ASCII are dropped, `"` and `\` escaped).
HeaderValues format_headers(bool allowed, int64_t limit, int64_t remaining,
                            int64_t reset_after_ms, int64_t retry_after_ms,
                            int64_t period_ms, std::string_view name);

}  // namespace tollgate
