// The policy text syntax through the C ABI: rl_policy_parse and
// rl_period_parse, with the input as the text. Checks what tollgate.h
// promises:
//   - a parsed policy's fields are in range, and rl_policy_create accepts
//     them back and yields the same fields;
//   - a failure is RL_E_POLICY or RL_E_OVERFLOW, with *out NULL, an error
//     offset within the text and a message;
//   - a period rl_period_parse accepts is the period of "1/<period>".
// Every handle is released (LeakSanitizer checks).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tollgate.h"

namespace {

constexpr int64_t kMax = int64_t{1} << 40;

void require(bool ok, const char *what, const char *text, size_t len) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_policy: %s\ntext: %.*s\n", what,
               static_cast<int>(len), text);
  std::abort();
}

bool same(const rl_policy_spec &a, const rl_policy_spec &b) {
  return a.algorithm == b.algorithm && a.limit == b.limit &&
         a.period_ms == b.period_ms && a.burst == b.burst &&
         a.flags == b.flags && a.name_len == b.name_len &&
         (a.name_len == 0 || std::memcmp(a.name, b.name, a.name_len) == 0) &&
         a.block_ms == b.block_ms && a.strikes == b.strikes &&
         a.strikes_period_ms == b.strikes_period_ms;
}

void check_failure(int rc, const char *text, size_t len) {
  require(rc == RL_E_POLICY || rc == RL_E_OVERFLOW,
          "a failure other than RL_E_POLICY or RL_E_OVERFLOW", text, len);
  const char *message = rl_last_error();
  require(message != nullptr && message[0] != '\0',
          "a failure without a message", text, len);
}

void check_policy(const char *text, size_t len) {
  rl_policy *p = reinterpret_cast<rl_policy *>(1);  // must become NULL
  size_t offset = SIZE_MAX;
  const int rc = rl_policy_parse(&p, text, len, &offset);
  if (rc != RL_OK) {
    require(p == nullptr, "*out not NULL after a failure", text, len);
    require(offset <= len, "an error offset beyond the text", text, len);
    check_failure(rc, text, len);
    return;
  }
  require(p != nullptr, "no handle after success", text, len);
  rl_policy_spec spec = RL_POLICY_SPEC_INIT;
  require(rl_policy_get(p, &spec) == RL_OK, "rl_policy_get failed", text, len);
  require(
      spec.algorithm >= RL_ALG_GCRA && spec.algorithm <= RL_ALG_SLIDING_WINDOW,
      "algorithm", text, len);
  require(spec.limit >= 1 && spec.limit <= kMax, "limit", text, len);
  require(spec.period_ms >= 1 && spec.period_ms <= kMax, "period", text, len);
  require(spec.burst >= 0 && spec.burst <= kMax, "burst", text, len);
  require((spec.flags & ~RL_POLICY_SHADOW) == 0, "flags", text, len);
  require(spec.name_len <= RL_MAX_NAME_LEN, "name length", text, len);
  require(
      spec.block_ms >= 0 && spec.strikes >= 0 && spec.strikes_period_ms >= 0,
      "block", text, len);

  // The fields make the same policy through rl_policy_create.
  rl_policy *again = nullptr;
  require(rl_policy_create(&again, &spec) == RL_OK,
          "rl_policy_create refused a parsed policy", text, len);
  rl_policy_spec back = RL_POLICY_SPEC_INIT;
  require(rl_policy_get(again, &back) == RL_OK && same(spec, back),
          "rl_policy_create made another policy", text, len);
  rl_policy_release(again);

  // Retain and release pair up: the handle survives one extra reference.
  require(rl_policy_retain(p) == p, "rl_policy_retain", text, len);
  rl_policy_release(p);
  require(rl_policy_get(p, &back) == RL_OK, "released too early", text, len);
  rl_policy_release(p);
}

void check_period(const char *text, size_t len) {
  int64_t ms = -7;
  const int rc = rl_period_parse(text, len, &ms);
  if (rc != RL_OK) {
    check_failure(rc, text, len);
    return;
  }
  require(ms >= 1 && ms <= kMax, "a period out of 1 .. 2^40 ms", text, len);
  // Whatever the period syntax accepts, a policy accepts after "1/".
  const std::string policy = "1/" + std::string(text, len);
  rl_policy *p = nullptr;
  const int prc = rl_policy_parse(&p, policy.data(), policy.size(), nullptr);
  require(prc == RL_OK, "a valid period refused in a policy", text, len);
  rl_policy_spec spec = RL_POLICY_SPEC_INIT;
  require(rl_policy_get(p, &spec) == RL_OK && spec.period_ms == ms &&
              spec.limit == 1,
          "the policy has another period", text, len);
  rl_policy_release(p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = reinterpret_cast<const char *>(data);
  check_policy(text, size);
  check_period(text, size);
  return 0;
}
