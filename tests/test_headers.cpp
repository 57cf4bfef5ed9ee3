// HTTP rate-limit header values at their edges: rounding of milliseconds to
// whole seconds, negative remaining, a denial with no wait left, and which
// bytes of a policy name survive into the sf-string.
#include <catch2/catch.hpp>

#include <string>

#include "tollgate/headers.hpp"

using tollgate::format_headers;
using tollgate::HeaderValues;

TEST_CASE("headers: milliseconds round up to whole seconds at the boundary",
          "[headers]") {
  // reset exactly 1000 ms: 1 s, not 2; 1001 ms: 2 s; 999 ms: 1 s.
  HeaderValues h = format_headers(true, 10, 5, 1000, 0, 1000, "p");
  CHECK(h.x_reset == "1");
  CHECK(h.ratelimit == "\"p\";r=5;t=1");
  CHECK(h.ratelimit_policy == "\"p\";q=10;w=1");
  h = format_headers(true, 10, 5, 1001, 0, 2000, "p");
  CHECK(h.x_reset == "2");
  CHECK(h.ratelimit_policy == "\"p\";q=10;w=2");
  h = format_headers(true, 10, 5, 999, 0, 2001, "p");
  CHECK(h.x_reset == "1");
  CHECK(h.ratelimit_policy == "\"p\";q=10;w=3");
  // Nothing to wait for: 0 s (never negative).
  h = format_headers(true, 10, 10, 0, 0, 1000, "p");
  CHECK(h.x_reset == "0");
  h = format_headers(true, 10, 10, -5, 0, 1000, "p");
  CHECK(h.x_reset == "0");
  CHECK(h.ratelimit == "\"p\";r=10;t=0");
}

TEST_CASE("headers: remaining is never negative", "[headers]") {
  HeaderValues h = format_headers(false, 10, -3, 2000, 1500, 60000, "p");
  CHECK(h.x_remaining == "0");
  CHECK(h.ratelimit == "\"p\";r=0;t=2");
  CHECK(h.x_limit == "10");
  h = format_headers(true, 10, 0, 2000, 0, 60000, "p");
  CHECK(h.x_remaining == "0");
  h = format_headers(true, 10, 1, 2000, 0, 60000, "p");
  CHECK(h.x_remaining == "1");
}

TEST_CASE("headers: Retry-After only when denied and at least one second",
          "[headers]") {
  // Allowed: no Retry-After, whatever retry_after says.
  HeaderValues h = format_headers(true, 10, 0, 2000, 5000, 60000, "p");
  CHECK(h.retry_after.empty());
  // Denied with no wait left (a race with the window's end): 1 s, not 0.
  h = format_headers(false, 10, 0, 2000, 0, 60000, "p");
  CHECK(h.retry_after == "1");
  // Exactly two seconds: 2; a millisecond more: 3.
  h = format_headers(false, 10, 0, 2000, 2000, 60000, "p");
  CHECK(h.retry_after == "2");
  h = format_headers(false, 10, 0, 2000, 2001, 60000, "p");
  CHECK(h.retry_after == "3");
  // Never (negative): one window, rounded up.
  h = format_headers(false, 10, 0, 2000, -1, 90500, "p");
  CHECK(h.retry_after == "91");
}

TEST_CASE("headers: policy names keep printable ASCII only", "[headers]") {
  // Space (0x20) and tilde (0x7e) are the ends of the printable range and
  // stay; DEL (0x7f), a control byte and bytes above 0x7f go.
  const std::string name = std::string(" a~") + '\x7f' + '\x1f' + "b" + '\x80';
  HeaderValues h = format_headers(true, 1, 1, 0, 0, 1000, name);
  CHECK(h.ratelimit_policy == "\" a~b\";q=1;w=1");
  // A backslash and a quote are escaped, each with one backslash.
  h = format_headers(true, 1, 1, 0, 0, 1000, "\\\"");
  CHECK(h.ratelimit_policy == "\"\\\\\\\"\";q=1;w=1");
  // An empty name is "default".
  h = format_headers(true, 1, 1, 0, 0, 1000, "");
  CHECK(h.ratelimit == "\"default\";r=1;t=0");
}

TEST_CASE("headers: the largest milliseconds round up without overflow",
          "[headers]") {
  // Found by tests/fuzz/fuzz_headers: a decision is the caller's and may
  // hold any int64; INT64_MAX ms used to overflow while rounding up (UBSan).
  constexpr int64_t kMax = INT64_MAX;  // 9223372036854775807 ms
  const HeaderValues h = format_headers(false, 1, 0, kMax, kMax, kMax, "p");
  CHECK(h.x_reset == "9223372036854776");
  CHECK(h.ratelimit == "\"p\";r=0;t=9223372036854776");
  CHECK(h.ratelimit_policy == "\"p\";q=1;w=9223372036854776");
  CHECK(h.retry_after == "9223372036854776");
  // Just below a whole second, and a whole number of seconds.
  CHECK(format_headers(true, 1, 0, kMax - 807, 0, 1000, "p").x_reset ==
        "9223372036854775");
  CHECK(format_headers(true, 1, 0, kMax - 806, 0, 1000, "p").x_reset ==
        "9223372036854776");
}
