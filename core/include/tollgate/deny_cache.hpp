// A small local cache of recent store denials: a key the store denied with
// a retry_after is answered "denied" without a round trip until that time
// has passed. Bounded; sharded by key hash.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tollgate {

struct CachedDenial {
  int64_t until_ns = 0;  // monotonic time when the denial lapses
  int64_t cost = 0;      // the smallest cost denied: larger costs are too
  int64_t limit = 0;
  int64_t remaining = 0;
  int64_t reset_at_ns = 0;
  uint32_t policy_index = 0;
};

class DenyCache {
 public:
  explicit DenyCache(size_t capacity);
  ~DenyCache();

  // True (with `out`) if `key` under policy set `sig` is known to be denied
  // at `now_ns` for `cost`.
  bool lookup(std::string_view key, uint64_t sig, int64_t cost, int64_t now_ns,
              CachedDenial &out);
  void insert(std::string_view key, uint64_t sig, const CachedDenial &d,
              int64_t now_ns);
  // Forgets the denial of `key` under policy set `sig` (a refund).
  void erase(std::string_view key, uint64_t sig);
  // Forgets every denial of `key`, under any policy set (rl_reset). Walks
  // the whole cache: resets are rare.
  void erase_key(std::string_view key);

 private:
  struct Shard;
  static constexpr size_t kShards = 16;
  std::unique_ptr<Shard[]> shards_;
  size_t per_shard_;
  uint64_t seed_;
};

}  // namespace tollgate
