// The in-process store: a sharded hash map from key to per-policy state,
// bounded by a maximum key count across all shards. Each key is one 64-byte
// cache line in its shard's open-addressing table (linear probing), holding
// the key (up to 18 bytes inline; longer keys, and keys with several
// policies, keep the rest out of line), the first policy's state and its
// expiry. No timer per key: expired keys are reclaimed a few at a time as
// new keys arrive, and at the bound a sampled least-recently-used key is
// evicted (an expired one first).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "tollgate/algorithms.hpp"

namespace tollgate {

struct MemoryStoreConfig {
  uint64_t max_keys = 1000000;
  uint32_t shards = 0;  // 0: automatic
};

struct MemoryStoreStats {
  uint64_t checks = 0;
  uint64_t allowed = 0;
  uint64_t denied = 0;
  uint64_t live_keys = 0;
  uint64_t evictions = 0;
  uint64_t expired_reclaimed = 0;
};

class MemoryStore {
 public:
  static constexpr size_t kMaxKeyLen = size_t{1} << 23;

  explicit MemoryStore(const MemoryStoreConfig &config);
  ~MemoryStore();
  MemoryStore(const MemoryStore &) = delete;
  MemoryStore &operator=(const MemoryStore &) = delete;

  // Evaluates every policy for `key` at `now`, under one shard lock. If all
  // allow (and cost >= 1) every policy's new state is stored; otherwise
  // nothing is. A refund (cost < 0) stores the state of every policy that
  // had usage to give back, and returns whether any had. outcomes[i] is
  // constructed (placement new) with policy i's outcome, so `outcomes` may
  // be raw storage. Returns true if every policy allowed. Throws
  // std::bad_alloc, or std::length_error for a key of kMaxKeyLen bytes or
  // more (the limiter allows at most 65536).
  bool check(std::string_view key, std::span<const Policy> policies,
             int64_t now, int64_t cost, Outcome *outcomes);

  // One key and its policies, for check_many.
  struct KeyPolicies {
    std::string_view key;
    std::span<const Policy> policies;
  };
  static constexpr size_t kMaxKeysPerCheck = 8;

  // Several keys in one decision: every pair's policies are evaluated
  // under the locks of all their shards; the states are written only if
  // every policy of every pair allows (cost >= 1). A refund gives back to
  // every pair what it can. `outcomes` holds one entry per policy, pair by
  // pair. A blocked key denies the whole check. The keys must differ.
  // Returns true if every policy allowed (a refund: if any gave back).
  bool check_many(std::span<const KeyPolicies> items, int64_t now, int64_t cost,
                  Outcome *outcomes);

  // Drops all state for `key` (blocks and strikes included). Returns true
  // if the key was present.
  bool reset(std::string_view key);

  // Blocks `key` until `until` (replacing any block it has): every check
  // of it is denied until then. Throws std::bad_alloc.
  void block(std::string_view key, int64_t until, int64_t now);
  // Lifts `key`'s block and forgets its strikes. Returns true if it was
  // blocked at `now`.
  bool unblock(std::string_view key, int64_t now);

  MemoryStoreStats stats() const;
  uint32_t shard_count() const noexcept;
  uint64_t max_keys() const noexcept { return max_keys_; }

  // The fork handlers' (pthread_atfork, registered by the first store):
  // every shard lock taken before fork(), released after it in the parent
  // and in the child (docs/api-c.md, "fork()").
  void lock_all_for_fork() noexcept;
  void unlock_all_after_fork() noexcept;

 private:
  struct Shard;
  Shard &shard_for(uint64_t hash) const noexcept;
  // Evicts one key from some shard other than `self` that is not locked
  // right now; false if none could be taken without waiting.
  bool evict_elsewhere(const Shard *self, int64_t now) noexcept;
  // Adds `key` (absent, hash h) to locked shard `s`, counted against the
  // bound (evicting if need be); returns its Entry. Throws std::bad_alloc.
  void *add_key(Shard &s, uint64_t h, std::string_view key, int64_t now);
  // Writes the allowed (or refunded) outcomes of `key` (locked shard;
  // `entry` its Entry or nullptr), adding the key and its slots first.
  // `missing`: slots to add, or UINT32_MAX to count them here.
  void commit(Shard &s, void *entry, uint64_t h, std::string_view key,
              std::span<const Policy> policies, int64_t now,
              const Outcome *outcomes, uint32_t missing);
  // After a denial (locked shard): counts the strikes of denying policies
  // with a block and blocks the key if one is due, adjusting `outcomes`.
  // `entry` is the key's Entry or nullptr.
  void strike(Shard &s, void *entry, uint64_t h, std::string_view key,
              std::span<const Policy> policies, int64_t now, Outcome *outcomes);

  uint64_t seed_;
  uint64_t max_keys_;
  std::atomic<uint64_t> total_keys_{0};
  uint32_t shard_bits_;
  void *arena_ = nullptr;  // the shards' full-size tables, one mapping
  size_t arena_bytes_ = 0;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace tollgate
