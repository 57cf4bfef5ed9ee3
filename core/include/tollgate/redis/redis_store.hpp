// The Redis store: runs the algorithm scripts over the transport. Keys are
// `<prefix>v2:{<user key>}...` (redis_key below), so all of one subject's
// policies and its block share a cluster slot and a multi-policy check is
// one atomic script.
#pragma once

#include <atomic>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tollgate/algorithms.hpp"
#include "tollgate/memory_store.hpp"
#include "tollgate/redis/transport.hpp"
#include "tollgate/redis/url.hpp"

namespace tollgate::redis {

inline constexpr size_t kMaxPolicies = 16;
// The values a check script takes per policy: algorithm, limit, period_ms,
// capacity, interval_us, block_us, strikes, strike_period_us.
inline constexpr size_t kPolicyArgs = 9;

// A finished store check. On success `outcomes[0..n)` hold each policy's
// allowed, remaining, reset_after_us and retry_after_us.
struct StoreCheck {
  Errc code = Errc::ok;
  std::string message;
  bool allowed = false;
  size_t n = 0;
  Outcome outcomes[kMaxPolicies];
};

using CheckDone = void (*)(void *ctx, StoreCheck &result);

// One listed (key, policy) state.
struct KeyEntry {
  std::string key;
  Policy policy;
  size_t index = 0;  // the policy's position in the listing's list
  int64_t remaining = 0;
  int64_t reset_after_us = 0;
};

class RedisStore {
 public:
  // `pinned_clock`: use the scripts that take the time from the caller
  // (only present in TOLLGATE_TESTING builds).
  static Errc create(const Settings &settings, bool pinned_clock,
                     std::unique_ptr<RedisStore> &out);
  ~RedisStore();

  // Runs one check; `done` runs exactly once, on the I/O thread or inline.
  // `now_us` is used only with pinned-clock scripts. `blocking`: the caller
  // waits for `done` anyway, so it may carry the command on its own thread
  // (Transport::Mode::blocking).
  // `first_index`: the position of policies[0] in its list (a policy
  // without a name keeps its state under its position).
  void check(std::string_view key, std::span<const Policy> policies,
             int64_t cost, int64_t now_us, int64_t deadline_ns, CheckDone done,
             void *ctx, bool blocking = false, size_t first_index = 0);

  // Several (key, policies) pairs in one decision (the many script):
  // outcomes come back pair by pair. On a cluster the pairs must share a
  // slot (same_slot); the caller checks.
  void check_many(std::span<const MemoryStore::KeyPolicies> items, int64_t cost,
                  int64_t now_us, int64_t deadline_ns, CheckDone done,
                  void *ctx, bool blocking = false);
  // Whether every pair's keys lie in one cluster slot (always true off a
  // cluster).
  bool same_slot(std::span<const MemoryStore::KeyPolicies> items) const;

  // Deletes every policy's state of `key` (SCAN for the key's pattern, then
  // DEL). Blocking until `deadline_ns`.
  Errc reset(std::string_view key, int64_t deadline_ns);

  // One PING round trip.
  Errc ping(int64_t deadline_ns, int64_t &rtt_us);

  // One SCAN page of the limiter's keys with each state's remaining and
  // reset (a cost-0 check). `cursor` starts as "0" and is "0" again at the
  // end.
  // Only states of the given policies' identities are listed, each peeked
  // with its policy; the others are skipped. `pattern`: a Redis glob the
  // whole user key must match (glob_match); empty lists every key.
  Errc scan_page(std::string &cursor, std::vector<KeyEntry> &out,
                 std::span<const Policy> policies, std::string_view pattern,
                 int64_t now_us, int64_t deadline_ns);

  TransportStats stats() const { return transport_->stats(); }
  Transport &transport() { return *transport_; }
  const Settings &settings() const { return settings_; }

  // Key format 2: `<prefix>v2:{<key>}` for the policy at `index` 0 without a
  // name, `...}:<index>` for a later one, `...}:<name>` for a named one
  // (docs/redis.md, "Keys and state").
  std::string redis_key(std::string_view key, const Policy &p,
                        size_t index) const;
  void append_redis_key(std::string &out, std::string_view key, const Policy &p,
                        size_t index) const;
  // The key's block: `<prefix>v2:{<key>}:!`; its strike counts are the
  // hash of that name with an `s` appended (docs/redis.md, "Blocks").
  void append_block_key(std::string &out, std::string_view key) const;

  // Blocks `key` for `duration_us` from the server's now (or `now_us` with
  // pinned-clock scripts), replacing any block it has. Blocking until
  // `deadline_ns`.
  Errc block(std::string_view key, int64_t duration_us, int64_t now_us,
             int64_t deadline_ns);
  // Lifts `key`'s block and forgets its strikes (DEL of both keys).
  Errc unblock(std::string_view key, int64_t deadline_ns);

  // One lease operation on `key`'s leases, `<prefix>v2:{<key>}:!l` (the
  // lease script; docs/leases.md): op 'a' acquire (max, ttl_us), 'r' renew
  // (ttl_us), 'x' release. `out` gets the reply's integers: acquire
  // {1, held} or {0, held, retry_after_us}; renew and release {1} or {0}.
  // Blocking until `deadline_ns`.
  Errc lease(char op, std::string_view key, std::string_view id, int64_t max,
             int64_t ttl_us, int64_t now_us, int64_t deadline_ns,
             std::vector<int64_t> &out);

 private:
  RedisStore(const Settings &settings, bool pinned,
             std::unique_ptr<Transport> transport);
  // One command, waited for. `slot`: a cluster sends it to that slot's
  // primary; `node`: to that primary (host:port) instead.
  CallResult call(std::vector<std::string_view> argv, int64_t deadline_ns,
                  int slot = kAnySlot, const std::string *node = nullptr);
  // The nodes a command for every primary goes to: standalone, the one
  // server (""); a cluster, its primaries (after waiting for a slot map).
  Errc primaries(int64_t deadline_ns, std::vector<std::string> &out);
  Errc scan_node(const std::string &node, int slot, const std::string &pattern,
                 std::string &cursor, std::vector<std::string> &keys,
                 const char *what, int64_t deadline_ns);

  Settings settings_;
  bool pinned_;

 public:
  struct CheckPool;  // checks in flight, reused

 private:
  // Before transport_: pending checks come back to it while the transport
  // shuts down.
  std::unique_ptr<CheckPool> pool_;
  std::unique_ptr<Transport> transport_;
  bool clustered_;
  // Cluster: checks for one node travel joined (the batch_cluster script)
  // until a node cannot run that script (Redis before 7.0); then each
  // check goes alone.
  std::atomic<bool> cluster_join_{true};
};

// A state's key name, parsed: the user key and the identity (a name, or
// the position of an unnamed policy).
struct StateName {
  std::string user_key;
  std::string name;
  size_t position = 0;
};
// Parses a listed Redis key (key format 2); false if it is not one of
// tollgate's keys under `prefix`.
// Whether all of `text` matches the glob `pattern` as Redis's SCAN MATCH
// reads one: '*' any run of bytes, '?' one byte, '[abc]', '[a-z]', '[^a]'
// a set, '\' makes the next byte literal.
bool glob_match(std::string_view pattern, std::string_view text);

bool parse_redis_key(std::string_view redis_key, std::string_view prefix,
                     StateName &out);

}  // namespace tollgate::redis
