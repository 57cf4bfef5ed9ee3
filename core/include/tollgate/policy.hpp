// A validated policy: algorithm, limit, period (and burst), with the derived
// integer quantities every algorithm uses. See docs/algorithms.md.
#pragma once

#include <cstdint>

#include "tollgate/error.hpp"

namespace tollgate {

enum class Algorithm : int32_t {
  gcra = 0,
  token_bucket = 1,
  fixed_window = 2,
  sliding_window = 3,
};

inline constexpr int64_t kMaxLimit = int64_t{1} << 40;
inline constexpr int64_t kMaxPeriodMs = int64_t{1} << 40;
inline constexpr int64_t kMaxSpanUs = int64_t{1} << 50;         // capacity * T
inline constexpr int64_t kMaxWindowProduct = int64_t{1} << 51;  // limit*Pm
inline constexpr int64_t kMaxTimeUs = int64_t{1} << 52;

// Filled only by make_policy (no default member initialisers, so arrays of
// policies on the hot path cost nothing to declare).
struct Policy {
  Algorithm algorithm;
  int64_t limit;
  int64_t period_ms;
  int64_t burst;        // as given (0 = default)
  int64_t period_us;    // P
  int64_t capacity;     // burst or limit
  int64_t interval_us;  // T = ceil(P / limit), GCRA and token bucket
  uint64_t id;          // identifies the policy's state under a key
};

// Validates the raw fields and fills `out`. On failure returns the error
// code (policy or overflow) with a message naming the field.
Errc make_policy(int32_t algorithm, int64_t limit, int64_t period_ms,
                 int64_t burst, uint32_t flags, Policy &out);

const char *algorithm_name(Algorithm a) noexcept;

}  // namespace tollgate
