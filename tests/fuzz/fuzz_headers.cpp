// rl_headers_format with a decision, a policy period and a name taken from
// the input: 1 byte allowed, 8 bytes each of limit, remaining,
// reset_after_ms, retry_after_ms and period, then the name (the rest).
// Any int64 may come, as a C caller can pass any decision. Checks, against
// the header's own description of each field (tollgate.h):
//   - every field is NUL-terminated within its array and nothing is cut;
//   - the numbers: X-RateLimit-Limit is the limit, Remaining never below
//     0, Reset and the RateLimit t= are whole seconds rounded up, w= the
//     window in seconds rounded up, Retry-After "" when allowed, else at
//     least 1 (one window for RL_RETRY_NEVER);
//   - the name is an sf-string: printable ASCII, `"` and `\` escaped,
//     "default" when empty; a name beyond 100 bytes is RL_E_INVALID_ARG.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tollgate.h"

namespace {

void require(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_headers: %s\n", what);
  std::abort();
}

int64_t take64(const uint8_t *&data, size_t &size) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = v << 8 | (size ? *data : 0);
    if (size) ++data, --size;
  }
  return static_cast<int64_t>(v);
}

// Whole seconds, rounded up, never negative; in 128 bits so that the
// expectation itself cannot overflow.
std::string ceil_seconds(int64_t ms) {
  if (ms <= 0) return "0";
  const __int128 s = (static_cast<__int128>(ms) + 999) / 1000;
  return std::to_string(static_cast<long long>(s));
}

std::string sf_name(const char *name, size_t len) {
  if (len == 0) return "\"default\"";
  std::string out = "\"";
  for (size_t i = 0; i < len; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c > 0x7e) continue;
    if (c == '"' || c == '\\') out += '\\';
    out += static_cast<char>(c);
  }
  return out + "\"";
}

template <size_t N>
std::string field(const char (&f)[N]) {
  require(std::memchr(f, '\0', N) != nullptr, "a field not NUL-terminated");
  return std::string(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rl_decision d = RL_DECISION_INIT;
  d.allowed = size ? (*data & 1) : 0;
  if (size) ++data, --size;
  d.limit = take64(data, size);
  d.remaining = take64(data, size);
  d.reset_after_ms = take64(data, size);
  d.retry_after_ms = take64(data, size);
  // Any valid period: 1 .. 2^40 ms.
  const int64_t period_ms =
      1 + static_cast<int64_t>(static_cast<uint64_t>(take64(data, size)) %
                               (uint64_t{1} << 40));
  const char *name = reinterpret_cast<const char *>(data);
  const size_t name_len = size;

  rl_policy_spec spec = RL_POLICY_SPEC_INIT;
  spec.limit = 1;
  spec.period_ms = period_ms;
  rl_policy *policy = nullptr;
  require(rl_policy_create(&policy, &spec) == RL_OK, "rl_policy_create");

  rl_headers h = RL_HEADERS_INIT;
  const int rc =
      rl_headers_format(&h, &d, policy, name_len ? name : nullptr, name_len);
  rl_policy_release(policy);
  if (name_len > 100) {
    require(rc == RL_E_INVALID_ARG, "a name beyond 100 bytes accepted");
    return 0;
  }
  require(rc == RL_OK, "rl_headers_format failed");

  const std::string n = sf_name(name, name_len);
  const std::string limit = std::to_string(d.limit);
  const std::string left = std::to_string(d.remaining < 0 ? 0 : d.remaining);
  const std::string reset = ceil_seconds(d.reset_after_ms);
  const std::string window = ceil_seconds(period_ms);
  require(field(h.ratelimit_policy) == n + ";q=" + limit + ";w=" + window,
          "RateLimit-Policy");
  require(field(h.ratelimit) == n + ";r=" + left + ";t=" + reset, "RateLimit");
  require(field(h.x_ratelimit_limit) == limit, "X-RateLimit-Limit");
  require(field(h.x_ratelimit_remaining) == left, "X-RateLimit-Remaining");
  require(field(h.x_ratelimit_reset) == reset, "X-RateLimit-Reset");
  std::string retry;
  if (!d.allowed) {
    if (d.retry_after_ms < 0)
      retry = window;
    else
      retry = d.retry_after_ms == 0 ? "1" : ceil_seconds(d.retry_after_ms);
  }
  require(field(h.retry_after) == retry, "Retry-After");
  return 0;
}
