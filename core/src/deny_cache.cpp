#include "tollgate/deny_cache.hpp"

#include <mutex>
#include <random>
#include <unordered_map>

#include "tollgate/hash.hpp"

namespace tollgate {

struct DenyCache::Shard {
  std::mutex mu;
  std::unordered_map<std::string, CachedDenial> map;
};

DenyCache::DenyCache(size_t capacity)
    : shards_(std::make_unique<Shard[]>(kShards)),
      per_shard_(capacity / kShards ? capacity / kShards : 1) {
  std::random_device rd;
  seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

DenyCache::~DenyCache() = default;

namespace {
std::string entry_key(std::string_view key, uint64_t sig) {
  std::string k(reinterpret_cast<const char *>(&sig), sizeof sig);
  k.append(key.data(), key.size());
  return k;
}
}  // namespace

bool DenyCache::lookup(std::string_view key, uint64_t sig, int64_t cost,
                       int64_t now_ns, CachedDenial &out) {
  Shard &s = shards_[hash_bytes(key, seed_ ^ sig) % kShards];
  // Every check looks here first: build the map key in a per-thread buffer
  // instead of allocating one per call.
  thread_local std::string k;
  k.assign(reinterpret_cast<const char *>(&sig), sizeof sig);
  k.append(key.data(), key.size());
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(k);
  if (it == s.map.end()) return false;
  if (it->second.until_ns <= now_ns) {
    s.map.erase(it);
    return false;
  }
  if (cost < it->second.cost) return false;
  out = it->second;
  return true;
}

void DenyCache::insert(std::string_view key, uint64_t sig,
                       const CachedDenial &d, int64_t now_ns) {
  Shard &s = shards_[hash_bytes(key, seed_ ^ sig) % kShards];
  std::string k = entry_key(key, sig);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.map.size() >= per_shard_ && s.map.find(k) == s.map.end()) {
    // Full: drop lapsed entries; if none lapsed, drop one arbitrary entry.
    for (auto it = s.map.begin(); it != s.map.end();)
      it = it->second.until_ns <= now_ns ? s.map.erase(it) : std::next(it);
    if (s.map.size() >= per_shard_) s.map.erase(s.map.begin());
  }
  // The newest denial replaces an older one: correct either way, since a
  // lookup only answers for costs at least the cached one until it lapses.
  s.map[std::move(k)] = d;
}

void DenyCache::erase(std::string_view key, uint64_t sig) {
  Shard &s = shards_[hash_bytes(key, seed_ ^ sig) % kShards];
  const std::string k = entry_key(key, sig);
  std::lock_guard<std::mutex> lock(s.mu);
  s.map.erase(k);
}

void DenyCache::erase_key(std::string_view key) {
  for (size_t i = 0; i < kShards; ++i) {
    Shard &s = shards_[i];
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto it = s.map.begin(); it != s.map.end();) {
      const std::string &k = it->first;  // the policy signature, then the key
      const bool match = k.size() == sizeof(uint64_t) + key.size() &&
                         k.compare(sizeof(uint64_t), key.size(), key) == 0;
      it = match ? s.map.erase(it) : std::next(it);
    }
  }
}

}  // namespace tollgate
