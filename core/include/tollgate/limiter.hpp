// The limiter: validates a check, asks the store (memory, or Redis through
// the deny cache), applies the failure mode when the store cannot answer,
// picks the reported decision and counts everything for health. Stores
// below it; the C ABI above it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tollgate/error.hpp"
#include "tollgate/free_list.hpp"
#include "tollgate/leases.hpp"
#include "tollgate/log.hpp"
#include "tollgate/memory_store.hpp"
#include "tollgate/metrics.hpp"
#include "tollgate/policy.hpp"

namespace tollgate {

namespace redis {
class RedisStore;
struct Settings;
struct KeyEntry;
}  // namespace redis
class DenyCache;
struct RedisCheck;

inline constexpr size_t kMaxPoliciesPerCheck = 16;
inline constexpr size_t kMaxKeysPerCheck = MemoryStore::kMaxKeysPerCheck;
inline constexpr uint32_t kDefaultMaxKeyLen = 512;
inline constexpr uint32_t kMaxMaxKeyLen = 65536;
inline constexpr uint64_t kDefaultMaxKeys = 1000000;

enum class StoreKind : int32_t { memory = 1, redis = 2 };
enum class Source : int32_t {
  store = 0,
  deny_cache = 1,
  fail_open = 2,
  fail_closed = 3,
  local = 4,
  allow_list = 5,
  deny_list = 6,
};

struct LimiterConfig {
  std::string url;  // "", "memory://", "redis://...", "rediss://", "unix://"
  uint64_t max_keys = 0;
  uint32_t max_key_len = 0;
  uint32_t shards = 0;
  int64_t (*clock)(void *) = nullptr;
  void *clock_user_data = nullptr;
  // Network-store overrides of the URL's options (0 / nullopt: the URL's).
  uint32_t connect_timeout_ms = 0;
  uint32_t timeout_ms = 0;
  std::optional<std::string> key_prefix;
  int32_t failure_mode = 0;
  uint32_t local_divisor = 0;
  int32_t deny_cache = 0;
  int32_t spin_us = 0;  // 0: the URL's (default 200); -1: never; 1..1000
  uint32_t deny_cache_size = 0;
  uint32_t connections = 0;
  uint32_t reconnect_max_ms = 0;
  std::optional<std::string> username, password;
  std::optional<std::string> tls_ca_file, tls_ca_dir, tls_cert_file,
      tls_key_file, tls_server_name;
  int32_t tls_verify = 0;
  int32_t metrics = 0;  // 0 or 1: decisions counted per label; -1: not
  // Async checks waiting for the store, at most (0: the URL's, default
  // 65536; -1: no bound; beyond it Errc::busy).
  int32_t max_async = 0;
};

struct Decision {
  bool allowed = false;
  int64_t limit = 0;
  int64_t remaining = 0;
  int64_t reset_after_us = 0;
  int64_t retry_after_us = 0;
  Source source = Source::store;
  uint32_t policy_index = 0;
  // Allowed only because what denied it is in shadow mode: the other
  // fields describe the denial that was not enforced.
  bool shadow = false;
};

// One Redis node (rl_health_node).
struct NodeHealth {
  std::string address;
  bool primary = false;
  bool started = false;    // connections opened
  int32_t connection = 0;  // as Health::connection
  uint32_t in_flight = 0;
  uint64_t failures = 0;
  uint64_t reconnects = 0;
  std::string last_error;
  RttCounts rtt;  // round trips of its commands
};

struct Health {
  StoreKind store_kind = StoreKind::memory;
  uint64_t checks = 0;
  uint64_t allowed = 0;
  uint64_t denied = 0;
  uint64_t errors = 0;
  uint64_t live_keys = 0;
  uint64_t evictions = 0;
  int32_t connection = 0;  // 0 none, 1 connecting, 2 ready, 3 down
  uint32_t in_flight = 0;
  uint64_t reconnects = 0;
  int64_t last_ping_us = -1;
  uint64_t store_errors = 0;
  uint64_t fail_open = 0;
  uint64_t fail_closed = 0;
  uint64_t local_fallback = 0;
  uint64_t deny_cache_hits = 0;
  std::string server_version;
  std::string last_error;
  int32_t topology = 0;  // 0 memory, 1 standalone, 2 cluster, 3 sentinel
  std::vector<NodeHealth> nodes;
  int64_t slot_map_age_ms = -1;
  uint64_t slot_map_refreshes = 0;
  uint64_t moved = 0;
  uint64_t ask = 0;
  uint64_t master_switches = 0;
  uint64_t shadow_denied = 0;  // denials answered allowed by shadow mode
  uint64_t list_allowed = 0;   // checks answered by the allow list
  uint64_t list_denied = 0;    // checks answered by the deny list
  uint64_t async_pending = 0;  // async checks waiting for the store
  uint64_t async_refused = 0;  // async checks refused (busy)
};

// Completion of check_async: `code` ok with a decision, or an error.
using CheckCallback = void (*)(void *user, Errc code, const Decision *d);

class KeyIterator;

class Limiter {
 public:
  static Errc create(const LimiterConfig &config,
                     std::unique_ptr<Limiter> &out);
  ~Limiter();

  // One check: all policies or none are charged. `policies` must come from
  // make_policy. Errors: key_invalid, key_too_long, invalid_arg, policy
  // (duplicate), overflow (clock out of range), nomem; with failure mode
  // "error" also the store's (connect, timeout, auth, tls, protocol, store).
  Errc check(std::string_view key, std::span<const Policy> policies,
             int64_t cost, Decision &out);

  // The same without waiting. Validation errors are returned (the callback
  // never runs); otherwise `cb` runs exactly once: inline for the memory
  // store and for answers known at once, else on the I/O thread. Errc::busy
  // (the callback never runs) when max_async checks already wait for the
  // store.
  Errc check_async(std::string_view key, std::span<const Policy> policies,
                   int64_t cost, CheckCallback cb, void *user);

  // Several (key, policies) pairs in one decision, all or nothing: nothing
  // is charged unless every policy of every pair allows. The decision's
  // policy_index counts the policies pair by pair (the second pair's first
  // policy follows the first pair's last). 1 to kMaxKeysPerCheck distinct
  // keys, at most kMaxPoliciesPerCheck policies in all. On a Redis Cluster
  // the pairs must share a slot (unsupported otherwise).
  using KeyPolicies = MemoryStore::KeyPolicies;
  Errc check_keys(std::span<const KeyPolicies> items, int64_t cost,
                  Decision &out);
  Errc check_keys_async(std::span<const KeyPolicies> items, int64_t cost,
                        CheckCallback cb, void *user);

  Errc reset(std::string_view key);
  // Blocks `key` for duration_ms (1 .. 2^40): every check of it is denied
  // until then, whatever its policies (docs/algorithms.md, "Blocks").
  Errc block(std::string_view key, int64_t duration_ms);
  // Lifts `key`'s block and forgets its strike counts.
  Errc unblock(std::string_view key);
  Errc ping(int64_t &rtt_us);

  // The Redis connection driven by the calling thread's event loop instead
  // of the I/O thread (rl_loop_open, rl_loop_turn, rl_loop_turn_idle,
  // rl_loop_close).
  Errc loop_open(int &fd);
  Errc loop_turn(int64_t &next_us, bool idle = false);
  Errc loop_close();

  // Concurrency leases (docs/leases.md). A lease is held by the store (the
  // memory store, or Redis), by the local failure mode's table, or nowhere
  // (granted by fail open).
  enum class LeaseWhere : uint8_t { store, local, unstored };
  struct Lease {
    std::string key;
    uint64_t id = 0;
    LeaseWhere where = LeaseWhere::store;
  };
  // Acquires a lease on `key` if fewer than `max` (1 .. kMaxInFlight) are
  // held, for ttl_ms (1 .. 2^40). Ok whether acquired or denied
  // (out.acquired); `lease` is filled when acquired. While the store is
  // unavailable the failure mode answers (`source`).
  Errc lease_acquire(std::string_view key, int64_t max, int64_t ttl_ms,
                     LeaseOutcome &out, Source &source, Lease &lease);
  // The lease now ends ttl_ms from now; not_found if it is not held.
  Errc lease_renew(const Lease &lease, int64_t ttl_ms);
  // Ends the lease; was_held: whether it was held until now.
  Errc lease_release(const Lease &lease, bool &was_held);
  static constexpr int64_t kMaxInFlight = 1000000;
  // Lease waiters sleep until `until` or until a lease of this limiter is
  // released after they read release_count() (`seen`), whichever is first:
  // a release in this process wakes them at once (docs/waiting.md).
  uint64_t release_count();
  void sleep_until_release(std::chrono::steady_clock::time_point until,
                           uint64_t seen);
  // Lists the states of these policies' identities (a name, or the position
  // of an unnamed one), each peeked with its policy; with a `pattern` (a
  // glob, redis::glob_match), only user keys that match it.
  Errc open_keys(std::span<const Policy> policies, std::string_view pattern,
                 std::unique_ptr<KeyIterator> &out);

 private:
  // check_async; `blocking`: the caller waits for the answer anyway, so a
  // Redis check may run on its thread (redis::Transport::Mode::blocking).
  Errc start_check(std::string_view key, std::span<const Policy> policies,
                   int64_t cost, CheckCallback cb, void *user, bool blocking);
  Errc start_check_keys(std::span<const KeyPolicies> items, int64_t cost,
                        CheckCallback cb, void *user, bool blocking);
  Errc validate_keys(std::span<const KeyPolicies> items, int64_t cost);
  // Several keys: the store's outcomes (pair by pair) to a decision.
  void finish_redis_keys(std::span<const KeyPolicies> items, int64_t cost,
                         bool allowed, const void *outcomes, Decision &out);
  Errc fallback_keys(std::span<const KeyPolicies> items, int64_t cost,
                     Errc code, const std::string &message, Decision &out);

 public:
  Health health() const;

  // Counts a call that failed before reaching the limiter (e.g. the C ABI
  // rejected a NULL pointer), so health's error count is complete.
  void count_error() noexcept;
  // A decision answered allowed by shadow mode (rl_health: shadow_denied).
  void count_shadow() noexcept;
  // A check answered by an allow or deny list (docs/exemptions.md).
  void count_list(bool allowed) noexcept;
  // A decision given to the caller, under its policy's metrics label
  // (docs/metrics.md); nothing when metrics are off.
  void count_decision(uint16_t label, const Decision &d) noexcept {
    if (decisions_) [[likely]]
      decisions_->count(label, d.allowed, static_cast<int>(d.source), d.shadow);
  }
  // Every series of the metrics (docs/metrics.md), read now.
  std::vector<MetricSeries> metrics() const;
  // The log hook (rl_set_log_handler).
  LogSink &log() noexcept { return *log_; }

  uint32_t max_key_len() const noexcept { return max_key_len_; }

 private:
  friend class KeyIterator;
  friend struct RedisCheck;
  explicit Limiter(const LimiterConfig &config);
  Errc validate(std::string_view key, std::span<const Policy> policies,
                int64_t cost);
  // The key of an admin call (reset, block, unblock), counted as an error
  // if it is refused.
  Errc validate_key(std::string_view key);
  Errc now(int64_t &out);
  Errc check_memory(std::string_view key, std::span<const Policy> policies,
                    int64_t cost, Decision &out);
  // The answer when the store could not decide (by failure mode).
  Errc fallback(std::string_view key, std::span<const Policy> policies,
                int64_t cost, Errc code, const std::string &message,
                Decision &out);
  void finish_redis(std::string_view key, std::span<const Policy> policies,
                    int64_t cost, bool allowed, const void *outcomes,
                    Decision &out);

  struct alignas(64) CounterStripe {
    std::atomic<uint64_t> errors{0}, checks{0}, allowed{0}, denied{0},
        store_errors{0}, fail_open{0}, fail_closed{0}, local_fallback{0},
        deny_cache_hits{0}, shadow_denied{0}, list_allowed{0}, list_denied{0};
  };
  static constexpr size_t kStripes = 16;
  CounterStripe &stripe() noexcept;

  uint32_t max_key_len_;
  int64_t (*clock_)(void *);
  void *clock_user_data_;
  std::unique_ptr<MemoryStore> memory_;
  // Network store state (null for the memory store).
  std::unique_ptr<redis::Settings> settings_;
  std::unique_ptr<redis::RedisStore> redis_;
  std::unique_ptr<DenyCache> deny_cache_;
  std::unique_ptr<MemoryStore> local_;  // RL_FAIL_LOCAL
  // Leases held in process: the memory store's, or the local failure
  // mode's.
  std::unique_ptr<LeaseTable> leases_;
  uint64_t lease_base_ = 0;  // random: ids differ across processes
  std::atomic<uint64_t> lease_seq_{0};
  std::mutex release_mu_;
  std::condition_variable release_cv_;
  uint64_t releases_ = 0;  // under release_mu_
  void signal_release();
  // The failure mode's answer to an acquire the store could not decide.
  Errc lease_fallback(std::string_view key, int64_t max, int64_t ttl_us,
                      Errc code, LeaseOutcome &out, Source &source,
                      Lease &lease);
  // Async Redis checks in flight (made here, finished on the I/O thread).
  std::unique_ptr<FreeList<RedisCheck>> redis_checks_;
  // Back-pressure: async checks accepted and not yet completed (each takes
  // a slot before it is queued and gives it back once, just before its
  // callback), bounded by max_async_ (0: no bound); refusals counted.
  uint64_t max_async_ = 0;
  alignas(64) std::atomic<uint64_t> async_pending_{0};
  std::atomic<uint64_t> async_refused_{0};
  // Takes a slot, or refuses with Errc::busy.
  Errc admit_async();
  void finish_async() noexcept {
    async_pending_.fetch_sub(1, std::memory_order_relaxed);
  }
  mutable std::array<CounterStripe, kStripes> counters_;
  std::unique_ptr<DecisionCounters> decisions_;  // null: metrics off
  std::shared_ptr<LogSink> log_ = std::make_shared<LogSink>();
  // A fallback episode: from the first check the store could not answer to
  // the next one it answered (logged once each way).
  std::atomic<bool> in_fallback_{false};
  std::atomic<int64_t> fallback_since_ns_{0};
  std::atomic<uint64_t> fallback_answers_at_start_{0};
  void begin_fallback(const std::string &message);
  void end_fallback();
  uint64_t fallback_answers() const noexcept;
  void note_store_answer() noexcept {
    if (in_fallback_.load(std::memory_order_relaxed)) [[unlikely]]
      end_fallback();
  }
};

// Walks the limiter's keys a SCAN page at a time.
class KeyIterator {
 public:
  KeyIterator(Limiter &limiter, std::span<const Policy> policies,
              std::string_view pattern);
  ~KeyIterator();
  // ok with *entry set, done at the end, or an error.
  Errc next(const redis::KeyEntry *&entry);

 private:
  Limiter &limiter_;
  std::vector<Policy> policies_;
  std::string pattern_;
  std::string cursor_ = "0";
  bool started_ = false;
  std::vector<redis::KeyEntry> page_;
  size_t pos_ = 0;
};

}  // namespace tollgate
