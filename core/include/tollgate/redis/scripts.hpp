// The Lua scripts that run the algorithms inside Redis (one per algorithm,
// one for multi-policy checks, one for checks joined into one call),
// embedded at build time from
// core/src/redis/lua/. See docs/redis.md for the calling convention.
#pragma once

#include <string_view>

#include "tollgate/policy.hpp"

namespace tollgate::redis {

struct Script {
  std::string_view name;  // "gcra", "token_bucket", ..., "multi", "batch",
                          // "batch_cluster", "block", "many", "lease"
  std::string_view body;  // Lua source
  std::string_view sha1;  // hex SHA1 of body (what EVALSHA takes)
  // The one-policy scripts: the same code's function in the library
  // (what FCALL takes); empty for the others.
  std::string_view function;
};

// The script for one policy of `algorithm`, or for several policies.
// `pinned_clock`: the variant that reads the time from ARGV[2] instead of
// TIME; it exists only in builds configured with TOLLGATE_TESTING=ON and is
// used only when a test sets rl_options.clock. Returns nullptr if absent.
const Script *script_for(Algorithm algorithm, bool pinned_clock);
const Script *multi_script(bool pinned_clock);
// Several checks, each of one or more policies, in one call (the transport
// joins checks queued back to back; docs/redis.md, "Joined checks").
const Script *batch_script(bool pinned_clock);
// The batch script for one Redis Cluster node (Redis 7.0 or later): the
// same text after a first line, `#!lua flags=allow-cross-slot-keys`, so
// its checks' keys may lie in several slots of that node.
const Script *cluster_batch_script(bool pinned_clock);

// rl_block: blocks one key for a duration (docs/redis.md, "Blocks").
const Script *block_script(bool pinned_clock);

// rl_check_keys: several (key, policies) pairs in one decision, all in one
// slot (docs/redis.md, "Several keys").
const Script *many_script(bool pinned_clock);

// rl_lease_*: acquires, renews or releases one lease (docs/leases.md).
const Script *lease_script(bool pinned_clock);

// The one-policy checks as a Redis 7 function library (FUNCTION LOAD's
// argument): its functions are the Script::function names of the same
// clock. Empty if absent (pinned_clock in a build without the variants).
std::string_view function_library(bool pinned_clock);

// Whether this build carries the pinned-clock variants.
bool has_pinned_clock_scripts();

}  // namespace tollgate::redis
