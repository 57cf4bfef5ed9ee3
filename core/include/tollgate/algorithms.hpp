// The four algorithms as pure functions: (stored state, now, policy, cost)
// -> outcome and new state. No clock, no I/O, integer microseconds only.
// The formulas are specified in docs/algorithms.md.
#pragma once

#include <cstdint>

#include "tollgate/policy.hpp"

namespace tollgate {

// Per-policy stored state. Meaning by algorithm:
//   GCRA:           a = tat
//   token bucket:   a = the time the bucket is full again (GCRA's tat)
//   fixed window:   a = window index, b = count
//   sliding window: a = window index, b = current count, c = previous count
struct State {
  int64_t a = 0;
  int64_t b = 0;
  int64_t c = 0;
};

inline constexpr int64_t kRetryNever = -1;

// The windows read a stored window newer than now's (the clock stepped
// back) if it starts at most max(1 window, this) ahead; a window further
// ahead is another period's (docs/algorithms.md, "Identity").
inline constexpr int64_t kMaxClockStepUs = int64_t{3600} * 1000000;

// No default member initialisers: arrays of these on the hot path are left
// uninitialised; evaluate() value-initialises what it returns.
struct Outcome {
  bool allowed;
  bool write;  // true: store `next` (only when allowed, cost >= 1)
  int64_t remaining;
  int64_t reset_after_us;
  int64_t retry_after_us;  // 0 when allowed; kRetryNever if impossible
  State next;
  int64_t expires_at_us;  // when `next` stops mattering (for the TTL)
};

// `stored` is nullptr for a key with no state under this policy.
// Preconditions (checked by callers): policy made by make_policy,
// 0 <= now < kMaxTimeUs, cost >= -(2^53 - 1). A negative cost is a refund:
// allowed, and `write` only if the policy had usage to give back.
Outcome evaluate(const Policy &policy, const State *stored, int64_t now,
                 int64_t cost) noexcept;

// One denial under a policy with a block (docs/algorithms.md, "Blocks"):
// a charge denied by the policy, other than one that can never pass. With
// strikes N/T the denial is counted in the current window of T (stored:
// a = window index, b = count; nullptr for none) and the N-th blocks; with
// no strikes the first denial blocks.
struct Strike {
  bool block;  // block the key for policy.block_us from now
  bool write;  // store `next` (the strike count) until expires_at_us
  State next;
  int64_t expires_at_us;
};
Strike strike(const Policy &policy, const State *stored, int64_t now) noexcept;

}  // namespace tollgate
