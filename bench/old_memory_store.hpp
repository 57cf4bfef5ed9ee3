// The memory store as it was before the one-cache-line layout (issue 15,
// item 7), kept only so tollgate-bench-memory --ab-rounds can measure the
// old and the new layout in the same process on the same keys. Not built
// into the library; the namespace is renamed so both link.
// (old layout) The in-process store: a sharded hash map from key to per-policy
// state, bounded by a maximum key count across all shards. No timer per key:
// expired keys are reclaimed a few at a time as new keys arrive, and at the
// bound a sampled least-recently-used key is evicted (an expired one first).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "tollgate/algorithms.hpp"

namespace tollgate_old {
using tollgate::Outcome;
using tollgate::Policy;
using tollgate::State;

struct OldMemoryStoreConfig {
  uint64_t max_keys = 1000000;
  uint32_t shards = 0;  // 0: automatic
};

struct OldMemoryStoreStats {
  uint64_t checks = 0;
  uint64_t allowed = 0;
  uint64_t denied = 0;
  uint64_t live_keys = 0;
  uint64_t evictions = 0;
  uint64_t expired_reclaimed = 0;
};

class OldMemoryStore {
 public:
  explicit OldMemoryStore(const OldMemoryStoreConfig &config);
  ~OldMemoryStore();
  OldMemoryStore(const OldMemoryStore &) = delete;
  OldMemoryStore &operator=(const OldMemoryStore &) = delete;

  // Evaluates every policy for `key` at `now`, under one shard lock. If all
  // allow (and cost >= 1) every policy's new state is stored; otherwise
  // nothing is. outcomes[i] is constructed (placement new) with policy i's
  // outcome, so `outcomes` may be raw storage. Returns true if
  // every policy allowed. Throws std::bad_alloc only.
  bool check(std::string_view key, std::span<const Policy> policies,
             int64_t now, int64_t cost, Outcome *outcomes);

  // Drops all state for `key`. Returns true if the key was present.
  bool reset(std::string_view key);

  OldMemoryStoreStats stats() const;
  uint32_t shard_count() const noexcept;
  uint64_t max_keys() const noexcept { return max_keys_; }

 private:
  struct Shard;
  Shard &shard_for(uint64_t hash) const noexcept;
  // Evicts one key from some shard other than `self` that is not locked
  // right now; false if none could be taken without waiting.
  bool evict_elsewhere(const Shard *self, int64_t now) noexcept;

  uint64_t seed_;
  uint64_t max_keys_;
  std::atomic<uint64_t> total_keys_{0};
  uint32_t shard_bits_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace tollgate_old
