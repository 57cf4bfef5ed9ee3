// Concurrency leases in process (docs/leases.md): per key, the leases held
// now, each ending at its expiry unless released first. The memory store's
// leases, and the local failure mode's. Bounded: at most `max_keys` keys
// hold leases; a key whose leases have all expired is dropped when its shard
// needs room.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tollgate {

struct LeaseOutcome {
  bool acquired = false;
  int64_t in_flight = 0;       // held after the call (the new one included)
  int64_t retry_after_us = 0;  // denied: until the earliest held lease ends
};

class LeaseTable {
 public:
  explicit LeaseTable(uint64_t max_keys);
  ~LeaseTable();
  LeaseTable(const LeaseTable &) = delete;
  LeaseTable &operator=(const LeaseTable &) = delete;

  // Drops `key`'s expired leases, then adds lease `id` ending at `expires_at`
  // if fewer than `max` are held. Returns false (nothing added) only when
  // the table holds max_keys keys with live leases and `key` is not one.
  // Throws std::bad_alloc.
  bool acquire(std::string_view key, uint64_t id, int64_t max,
               int64_t expires_at, int64_t now, LeaseOutcome &out);
  // Lease `id` of `key` now ends at `expires_at`; false if it is not held
  // at `now` (expired or released).
  bool renew(std::string_view key, uint64_t id, int64_t expires_at,
             int64_t now);
  // Ends lease `id`; true if it was held at `now`.
  bool release(std::string_view key, uint64_t id, int64_t now);
  // Forgets every lease of `key` (rl_reset).
  void reset(std::string_view key);
  // Keys holding leases (expired ones not yet dropped included).
  size_t key_count() const;

 private:
  struct Held {
    uint64_t id;
    int64_t expires_at;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::vector<Held>> keys;
  };
  static constexpr size_t kShards = 16;
  Shard &shard_for(std::string_view key);
  // Drops the keys of `s` (locked) whose leases have all ended by `now`.
  void sweep(Shard &s, int64_t now);

  uint64_t max_per_shard_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace tollgate
