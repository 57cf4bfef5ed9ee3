// A validated policy: algorithm, limit, period (and burst), with the derived
// integer quantities every algorithm uses. See docs/algorithms.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

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

// A policy name (its identity under a key): 1 to kMaxNameLen bytes of
// [A-Za-z0-9_.-], starting with a letter (docs/algorithms.md, "Identity").
inline constexpr size_t kMaxNameLen = 32;

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
  uint64_t id;          // the parameters and the name: equal ids, same policy
  uint64_t name_id;     // a hash of the name; 0 when the policy has none
  // A denial blocks the key for block_us (0: never), at the strikes-th
  // denial within one strike window of strike_period_us (strikes 0 or 1:
  // at the first). docs/algorithms.md, "Blocks".
  int64_t block_us;
  int64_t strikes;
  int64_t strike_period_us;
  uint8_t name_len;
  // Shadow mode (docs/algorithms.md, "Shadow mode"): a denial by this
  // policy is recorded (nothing charged to it) but does not deny the check.
  bool shadow;
  // The metrics label (metrics.hpp): interned from the name when a policy
  // handle is made; 0 ("default") for unnamed policies. Not part of the id.
  uint16_t label;
  char name[kMaxNameLen];
};

// Policy flags (rl_policy_spec.flags).
inline constexpr uint32_t kPolicyShadow = 1u;

// Puts p in (or out of) shadow mode. Updates p.id; not its identity.
void set_policy_shadow(Policy &p, bool shadow) noexcept;

// The identity of the policy at `index` of a check's list: its name, or,
// without one, its position. State is kept under the identity, not under
// the limit and period, so a changed limit finds the state of the old one.
inline uint64_t identity(const Policy &p, size_t index) noexcept {
  return p.name_id != 0 ? p.name_id : static_cast<uint64_t>(index) + 1;
}

// The state kept for an identity has one of three shapes: a time (GCRA and
// token bucket), a fixed window's count, or a sliding window's two counts.
// The memory store keys state by identity and shape, so state of another
// shape is never read.
inline uint64_t state_shape(Algorithm a) noexcept {
  return a == Algorithm::fixed_window     ? 1
         : a == Algorithm::sliding_window ? 2
                                          : 0;
}

// Validates a policy name: 1 to kMaxNameLen bytes of [A-Za-z0-9_.-]
// starting with a letter; on failure returns Errc::policy with a message
// saying what is wrong.
Errc check_policy_name(std::string_view name);

// Names `p` (validated: 1 to kMaxNameLen bytes of [A-Za-z0-9_.-] starting
// with a letter); an empty name removes it. Updates p.id.
Errc set_policy_name(Policy &p, std::string_view name);

// Gives `p` a block: a denial blocks the key for block_ms (0 removes the
// block), at the strikes-th denial within one window of strikes_period_ms
// (strikes 0: at the first; then strikes_period_ms must be 0). Validated
// (policy or overflow, with a message naming the field). Updates p.id.
Errc set_policy_block(Policy &p, int64_t block_ms, int64_t strikes,
                      int64_t strikes_period_ms);

inline std::string_view policy_name(const Policy &p) noexcept {
  return std::string_view(p.name, p.name_len);
}

// Validates the raw fields and fills `out`. On failure returns the error
// code (policy or overflow) with a message naming the field.
Errc make_policy(int32_t algorithm, int64_t limit, int64_t period_ms,
                 int64_t burst, uint32_t flags, Policy &out);

const char *algorithm_name(Algorithm a) noexcept;

// The raw fields of a policy as the text syntax gives them (not validated:
// make_policy does that).
struct PolicyFields {
  int32_t algorithm = 0;
  int64_t limit = 0;
  int64_t period_ms = 0;
  int64_t burst = 0;
  std::string_view name;  // a view into the parsed text
  int64_t block_ms = 0;
  int64_t strikes = 0;
  int64_t strikes_period_ms = 0;
  bool shadow = false;
};

// A period such as "1h", "30s", "250ms", "1.5s" or "2 minutes" -> whole
// milliseconds, 1 .. kMaxPeriodMs. On failure returns policy (or overflow)
// with a message, and `error_offset` is the byte offset of the problem.
Errc parse_period(std::string_view text, int64_t &period_ms,
                  size_t &error_offset);

// The one policy text syntax ("100/h", "100 per 15m", "10/s burst=20",
// "5000/d sliding_window"; see docs/api-c.md), parsed and validated by
// make_policy. On failure `error_offset` is the byte offset of the problem.
Errc parse_policy(std::string_view text, Policy &out, PolicyFields &fields,
                  size_t &error_offset);

}  // namespace tollgate
