#include "tollgate/leases.hpp"

#include <algorithm>
#include <functional>

namespace tollgate {

LeaseTable::LeaseTable(uint64_t max_keys)
    : max_per_shard_(std::max<uint64_t>(1, (max_keys + kShards - 1) / kShards)),
      shards_(new Shard[kShards]) {}

LeaseTable::~LeaseTable() = default;

LeaseTable::Shard &LeaseTable::shard_for(std::string_view key) {
  return shards_[std::hash<std::string_view>{}(key) % kShards];
}

void LeaseTable::sweep(Shard &s, int64_t now) {
  for (auto it = s.keys.begin(); it != s.keys.end();) {
    const bool live =
        std::any_of(it->second.begin(), it->second.end(),
                    [now](const Held &h) { return h.expires_at > now; });
    it = live ? std::next(it) : s.keys.erase(it);
  }
}

bool LeaseTable::acquire(std::string_view key, uint64_t id, int64_t max,
                         int64_t expires_at, int64_t now, LeaseOutcome &out) {
  Shard &s = shard_for(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.keys.find(std::string(key));
  if (it == s.keys.end()) {
    if (s.keys.size() >= max_per_shard_) sweep(s, now);
    if (s.keys.size() >= max_per_shard_) return false;
    it = s.keys.emplace(std::string(key), std::vector<Held>{}).first;
  }
  std::vector<Held> &held = it->second;
  std::erase_if(held, [now](const Held &h) { return h.expires_at <= now; });
  out = LeaseOutcome{};
  if (static_cast<int64_t>(held.size()) < max) {
    held.push_back(Held{id, expires_at});
    out.acquired = true;
    out.in_flight = static_cast<int64_t>(held.size());
    return true;
  }
  out.in_flight = static_cast<int64_t>(held.size());
  int64_t first = held.front().expires_at;
  for (const Held &h : held) first = std::min(first, h.expires_at);
  out.retry_after_us = first - now;
  return true;
}

bool LeaseTable::renew(std::string_view key, uint64_t id, int64_t expires_at,
                       int64_t now) {
  Shard &s = shard_for(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.keys.find(std::string(key));
  if (it == s.keys.end()) return false;
  for (Held &h : it->second) {
    if (h.id != id) continue;
    if (h.expires_at <= now) return false;
    h.expires_at = expires_at;
    return true;
  }
  return false;
}

bool LeaseTable::release(std::string_view key, uint64_t id, int64_t now) {
  Shard &s = shard_for(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.keys.find(std::string(key));
  if (it == s.keys.end()) return false;
  std::vector<Held> &held = it->second;
  bool was_held = false;
  std::erase_if(held, [&](const Held &h) {
    if (h.id != id) return false;
    was_held = h.expires_at > now;
    return true;
  });
  if (held.empty()) s.keys.erase(it);
  return was_held;
}

void LeaseTable::reset(std::string_view key) {
  Shard &s = shard_for(key);
  std::lock_guard<std::mutex> lock(s.mu);
  s.keys.erase(std::string(key));
}

size_t LeaseTable::key_count() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard<std::mutex> lock(shards_[i].mu);
    n += shards_[i].keys.size();
  }
  return n;
}

}  // namespace tollgate
