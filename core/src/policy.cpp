#include "tollgate/policy.hpp"

#include <string>

#include "tollgate/hash.hpp"

namespace tollgate {

const char *algorithm_name(Algorithm a) noexcept {
  switch (a) {
    case Algorithm::gcra:
      return "gcra";
    case Algorithm::token_bucket:
      return "token_bucket";
    case Algorithm::fixed_window:
      return "fixed_window";
    case Algorithm::sliding_window:
      return "sliding_window";
  }
  return "unknown";
}

Errc make_policy(int32_t algorithm, int64_t limit, int64_t period_ms,
                 int64_t burst, uint32_t flags, Policy &out) {
  if (algorithm < 0 || algorithm > 3)
    return fail(Errc::policy,
                "policy: unknown algorithm " + std::to_string(algorithm) +
                    " (expected RL_ALG_GCRA, RL_ALG_TOKEN_BUCKET, "
                    "RL_ALG_FIXED_WINDOW or RL_ALG_SLIDING_WINDOW)");
  const auto alg = static_cast<Algorithm>(algorithm);
  if (flags != 0)
    return fail(Errc::policy,
                "policy: flags must be 0 (got " + std::to_string(flags) + ")");
  if (limit <= 0)
    return fail(Errc::policy, "policy: limit must be >= 1 (got " +
                                  std::to_string(limit) + ")");
  if (period_ms <= 0)
    return fail(Errc::policy, "policy: period_ms must be >= 1 (got " +
                                  std::to_string(period_ms) + ")");
  if (burst < 0)
    return fail(Errc::policy, "policy: burst must be >= 0 (got " +
                                  std::to_string(burst) + ")");
  const bool windowed =
      alg == Algorithm::fixed_window || alg == Algorithm::sliding_window;
  if (windowed && burst != 0)
    return fail(Errc::policy, std::string("policy: burst applies to gcra and "
                                          "token_bucket only; it must be 0 "
                                          "for ") +
                                  algorithm_name(alg));
  if (limit > kMaxLimit)
    return fail(Errc::overflow, "policy: limit " + std::to_string(limit) +
                                    " exceeds the maximum 2^40");
  if (period_ms > kMaxPeriodMs)
    return fail(Errc::overflow, "policy: period_ms " +
                                    std::to_string(period_ms) +
                                    " exceeds the maximum 2^40");
  if (burst > kMaxLimit)
    return fail(Errc::overflow, "policy: burst " + std::to_string(burst) +
                                    " exceeds the maximum 2^40");

  Policy p{};
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = period_ms;
  p.burst = burst;
  p.period_us = period_ms * 1000;  // <= 2^40 * 1000 < 2^50
  p.capacity = windowed || burst == 0 ? limit : burst;
  if (!windowed) {
    p.interval_us = (p.period_us + limit - 1) / limit;
    // capacity * T <= 2^50, checked without overflowing (both <= 2^50).
    if (p.capacity > kMaxSpanUs / p.interval_us)
      return fail(Errc::overflow,
                  "policy: capacity x emission interval exceeds 2^50 us "
                  "(burst too large for this limit and period)");
  } else if (alg == Algorithm::sliding_window &&
             limit > kMaxWindowProduct / period_ms) {
    return fail(Errc::overflow,
                "policy: limit x period_ms exceeds 2^51 for sliding_window");
  }
  // The id keys this policy's state under a user key: the same parameters
  // give the same id in every process.
  uint64_t h = hash_mix(static_cast<uint64_t>(algorithm) + 0x51);
  h = hash_mix(h ^ static_cast<uint64_t>(limit));
  h = hash_mix(h ^ static_cast<uint64_t>(period_ms));
  h = hash_mix(h ^ static_cast<uint64_t>(p.capacity));
  p.id = h;
  out = p;
  return Errc::ok;
}

}  // namespace tollgate
