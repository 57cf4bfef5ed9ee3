// The memory store before the one-cache-line layout, for the A/B mode of
// tollgate-bench-memory only (see old_memory_store.hpp).
#include "old_memory_store.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <thread>
#include <vector>

#include "tollgate/hash.hpp"

namespace tollgate_old {
using namespace tollgate;
namespace {

constexpr uint32_t kInlineKey = 24;  // keys up to this size need no heap
constexpr uint32_t kFree = UINT32_MAX;
constexpr uint32_t kNone = UINT32_MAX;
constexpr uint32_t kChunkBits = 10;  // slab chunks of 1024 entries
constexpr uint32_t kChunkSize = 1u << kChunkBits;
constexpr uint16_t kMaxSlots = 32;  // policies remembered per key
constexpr int kEvictionSamples = 8;
constexpr int kReclaimSamples = 2;

struct Slot {
  uint64_t policy_id;
  int64_t expires_at;
  State state;
};

// 96 bytes. Entries live in a chunked slab and are never moved, so the hash
// table holds 32-bit indices plus 32 bits of hash.
struct Entry {
  uint64_t hash;
  uint32_t key_len;    // kFree marks a free entry
  uint32_t last_used;  // the shard's access counter at the last touch
  uint32_t next_free;
  uint16_t nslots;
  uint16_t extra_cap;
  union {
    char inline_key[kInlineKey];
    char *heap_key;
  } k;
  Slot slot0;
  Slot *extra;  // slots 1 .. nslots-1

  const char *key() const noexcept {
    return key_len <= kInlineKey ? k.inline_key : k.heap_key;
  }
  Slot &slot(uint32_t i) noexcept { return i == 0 ? slot0 : extra[i - 1]; }
  bool expired(int64_t now) noexcept {
    for (uint32_t i = 0; i < nslots; ++i)
      if (slot(i).expires_at > now) return false;
    return true;
  }
};
static_assert(sizeof(Entry) == 96, "keep the per-key footprint small");

// The shard lock: a futex-style mutex whose uncontended lock and unlock are
// one atomic instruction each, inline (std::mutex goes through
// pthread_mutex_trylock/unlock calls). It spins briefly before sleeping:
// shard critical sections are short, and a futex sleep costs far more than
// the wait it avoids. state: 0 free, 1 held, 2 held with possible sleepers.
class ShardLock {
 public:
  bool try_lock() noexcept {
    uint32_t expected = 0;
    return state_.compare_exchange_strong(
        expected, 1, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void lock() noexcept {
    if (!try_lock()) lock_slow();
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  void lock_slow() noexcept {
    for (int i = 0; i < 100; ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if (state_.load(std::memory_order_relaxed) == 0 && try_lock()) return;
    }
    // Mark the lock contended so the holder's unlock wakes a sleeper.
    while (state_.exchange(2, std::memory_order_acquire) != 0)
      state_.wait(2, std::memory_order_relaxed);
  }
  std::atomic<uint32_t> state_{0};
};

struct SpinGuard {
  explicit SpinGuard(ShardLock &m) : mu(m) { mu.lock(); }
  ~SpinGuard() { mu.unlock(); }
  SpinGuard(const SpinGuard &) = delete;
  SpinGuard &operator=(const SpinGuard &) = delete;
  ShardLock &mu;
};

uint32_t round_pow2(uint64_t v) {
  uint32_t p = 1;
  while (p < v && p < (1u << 30)) p <<= 1;
  return p;
}

}  // namespace

struct alignas(64) OldMemoryStore::Shard {
  ShardLock mu;
  std::vector<uint64_t> table;  // (low 32 hash bits << 32) | (index + 1)
  uint64_t mask = 0;
  std::vector<std::unique_ptr<Entry[]>> chunks;
  uint32_t slab_size = 0;  // entries ever handed out (high-water mark)
  uint32_t free_head = kNone;
  uint32_t count = 0;
  uint32_t clock = 0;
  uint64_t rng = 0;
  uint64_t evictions = 0;
  uint64_t reclaimed = 0;
  uint64_t checks = 0;
  uint64_t allowed = 0;
  std::atomic<uint64_t> *total = nullptr;  // the store's key count

  ~Shard() {
    for (uint32_t i = 0; i < slab_size; ++i) release(at(i));
  }

  Entry &at(uint32_t i) noexcept {
    return chunks[i >> kChunkBits][i & (kChunkSize - 1)];
  }

  static void release(Entry &e) noexcept {
    if (e.key_len == kFree) return;
    if (e.key_len > kInlineKey) delete[] e.k.heap_key;
    delete[] e.extra;
    e.extra = nullptr;
    e.key_len = kFree;
  }

  uint64_t next_random() noexcept {  // xorshift64
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }

  static uint32_t tag_of(uint64_t h) noexcept {
    return static_cast<uint32_t>(h);
  }

  uint32_t find(uint64_t h, std::string_view key) noexcept {
    if (table.empty()) return kNone;
    const uint32_t tag = tag_of(h);
    for (uint64_t pos = h & mask;; pos = (pos + 1) & mask) {
      const uint64_t v = table[pos];
      if (v == 0) return kNone;
      if (static_cast<uint32_t>(v >> 32) == tag) {
        const uint32_t idx = static_cast<uint32_t>(v) - 1;
        Entry &e = at(idx);
        if (e.hash == h && e.key_len == key.size() &&
            std::memcmp(e.key(), key.data(), key.size()) == 0)
          return idx;
      }
    }
  }

  // The low 32 hash bits are both the tag and the home position (tables
  // never exceed 2^32 slots), so rehashing needs no entry reads.
  void table_put(uint32_t tag, uint32_t idx) noexcept {
    uint64_t pos = tag & mask;
    while (table[pos] != 0) pos = (pos + 1) & mask;
    table[pos] = (static_cast<uint64_t>(tag) << 32) | (idx + 1);
  }

  // Grows the table before an insert would push its load above 3/4.
  void reserve_one() {
    if (!table.empty() && (count + 1) * 4 <= table.size() * 3) return;
    const size_t size = table.empty() ? 16 : table.size() * 2;
    std::vector<uint64_t> old(size, 0);
    old.swap(table);
    mask = size - 1;
    for (uint64_t v : old)
      if (v != 0)
        table_put(static_cast<uint32_t>(v >> 32), static_cast<uint32_t>(v) - 1);
  }

  // Removes index `idx` from the table with backward-shift deletion, so the
  // table never holds tombstones.
  void table_erase(uint64_t h, uint32_t idx) noexcept {
    uint64_t i = h & mask;
    while (static_cast<uint32_t>(table[i]) != idx + 1) i = (i + 1) & mask;
    table[i] = 0;
    for (uint64_t j = (i + 1) & mask; table[j] != 0; j = (j + 1) & mask) {
      const uint64_t home = (table[j] >> 32) & mask;
      // Move j back to the hole at i unless its home lies in (i, j].
      const bool stays =
          (i < j) ? (home > i && home <= j) : (home > i || home <= j);
      if (!stays) {
        table[i] = table[j];
        table[j] = 0;
        i = j;
      }
    }
  }

  void free_entry(uint32_t idx) noexcept {
    Entry &e = at(idx);
    table_erase(e.hash, idx);
    release(e);
    e.next_free = free_head;
    free_head = idx;
    --count;
    total->fetch_sub(1, std::memory_order_relaxed);
  }

  // Picks a random live entry, or kNone after a few misses.
  uint32_t sample() noexcept {
    for (int tries = 0; tries < 4; ++tries) {
      const uint32_t idx = static_cast<uint32_t>(next_random() % slab_size);
      if (at(idx).key_len != kFree) return idx;
    }
    return kNone;
  }

  // A few random probes free expired keys: the cost is spread over inserts
  // and no timer per key is needed.
  void reclaim_some(int64_t now) noexcept {
    for (int i = 0; i < kReclaimSamples && count > 0; ++i) {
      const uint32_t idx = sample();
      if (idx != kNone && at(idx).expired(now)) {
        free_entry(idx);
        ++reclaimed;
      }
    }
  }

  // At the bound: among sampled keys, an expired one goes first, else the
  // least recently used of the sample (Redis's approximated LRU).
  void evict_one(int64_t now) noexcept {
    uint32_t victim = kNone;
    uint32_t oldest_age = 0;
    for (int i = 0; i < kEvictionSamples; ++i) {
      const uint32_t idx = sample();
      if (idx == kNone) continue;
      Entry &e = at(idx);
      if (e.expired(now)) {
        victim = idx;
        ++reclaimed;
        break;
      }
      const uint32_t age = clock - e.last_used;
      if (victim == kNone || age > oldest_age) {
        victim = idx;
        oldest_age = age;
      }
    }
    if (victim == kNone) {  // unlucky samples: take the first live entry
      for (uint32_t i = 0; i < slab_size; ++i)
        if (at(i).key_len != kFree) {
          victim = i;
          break;
        }
    }
    if (victim == kNone) return;
    if (!at(victim).expired(now)) ++evictions;
    free_entry(victim);
  }

  // Inserts a new key (not present) once `reserve_slot` made room for it in
  // the store's total. May throw std::bad_alloc (the reservation is then
  // returned by the caller).
  uint32_t insert(uint64_t h, std::string_view key) {
    reserve_one();
    if (free_head == kNone && (slab_size & (kChunkSize - 1)) == 0 &&
        (slab_size >> kChunkBits) >= chunks.size()) {
      chunks.emplace_back(new Entry[kChunkSize]);
    }
    char *heap = nullptr;
    if (key.size() > kInlineKey) heap = new char[key.size()];

    uint32_t idx;
    if (free_head != kNone) {
      idx = free_head;
      free_head = at(idx).next_free;
    } else {
      idx = slab_size++;
    }
    Entry &e = at(idx);
    e.hash = h;
    e.key_len = static_cast<uint32_t>(key.size());
    e.last_used = clock;
    e.next_free = kNone;
    e.nslots = 0;
    e.extra_cap = 0;
    e.extra = nullptr;
    if (heap) {
      std::memcpy(heap, key.data(), key.size());
      e.k.heap_key = heap;
    } else {
      std::memcpy(e.k.inline_key, key.data(), key.size());
    }
    table_put(tag_of(h), idx);
    ++count;  // the store's total was counted by the reservation
    return idx;
  }
};

namespace {

int find_slot(Entry &e, uint64_t id) noexcept {
  for (uint32_t i = 0; i < e.nslots; ++i)
    if (e.slot(i).policy_id == id) return static_cast<int>(i);
  return -1;
}

// Makes room for `more` new slots in `e` (may throw before changing `e`).
void reserve_slots(Entry &e, uint32_t more) {
  const uint32_t want = std::min<uint32_t>(e.nslots + more, kMaxSlots);
  if (want <= 1u + e.extra_cap) return;
  uint32_t cap = e.extra_cap ? e.extra_cap : 1;
  while (1u + cap < want) cap *= 2;
  Slot *grown = new Slot[cap];
  if (e.nslots > 1) std::copy(e.extra, e.extra + (e.nslots - 1), grown);
  delete[] e.extra;
  e.extra = grown;
  e.extra_cap = static_cast<uint16_t>(cap);
}

// Returns a slot for policy `id`, adding one, or, when the key already
// holds kMaxSlots policies, reusing the stalest slot that belongs to none of
// the policies being committed now.
Slot &slot_for(Entry &e, uint64_t id,
               std::span<const Policy> committing) noexcept {
  const int found = find_slot(e, id);
  if (found >= 0) return e.slot(static_cast<uint32_t>(found));
  if (e.nslots < kMaxSlots && e.nslots < 1u + e.extra_cap) {
    Slot &s = e.slot(e.nslots++);
    s.policy_id = id;
    return s;
  }
  auto in_use = [&](uint64_t sid) {
    for (const Policy &p : committing)
      if (p.id == sid) return true;
    return false;
  };
  int stalest = -1;
  for (uint32_t i = 0; i < e.nslots; ++i) {
    if (in_use(e.slot(i).policy_id)) continue;
    if (stalest < 0 || e.slot(i).expires_at <
                           e.slot(static_cast<uint32_t>(stalest)).expires_at)
      stalest = static_cast<int>(i);
  }
  // kMaxSlots exceeds the most policies one check may carry, so some slot
  // is always free to reuse.
  Slot &s = e.slot(static_cast<uint32_t>(stalest));
  s.policy_id = id;
  return s;
}

}  // namespace

OldMemoryStore::OldMemoryStore(const OldMemoryStoreConfig &config) {
  max_keys_ = config.max_keys == 0 ? 1 : config.max_keys;
  uint32_t n = config.shards;
  if (n == 0) {
    n = static_cast<uint32_t>(std::min<uint64_t>(64, max_keys_ / 4096));
    if (n == 0) n = 1;
  }
  n = round_pow2(std::min<uint32_t>(n, 1024));
  shard_bits_ = 0;
  while ((1u << shard_bits_) < n) ++shard_bits_;

  std::random_device rd;
  seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  shards_ = std::make_unique<Shard[]>(n);
  for (uint32_t i = 0; i < n; ++i) {
    Shard &s = shards_[i];
    s.total = &total_keys_;
    s.rng = hash_mix(seed_ + i + 1) | 1;
  }
}

OldMemoryStore::~OldMemoryStore() = default;

uint32_t OldMemoryStore::shard_count() const noexcept {
  return 1u << shard_bits_;
}

OldMemoryStore::Shard &OldMemoryStore::shard_for(uint64_t hash) const noexcept {
  const uint32_t i =
      shard_bits_ == 0 ? 0 : static_cast<uint32_t>(hash >> (64 - shard_bits_));
  return shards_[i];
}

bool OldMemoryStore::evict_elsewhere(const Shard *self, int64_t now) noexcept {
  const uint32_t n = shard_count();
  for (uint32_t i = 0; i < n; ++i) {
    Shard &other = shards_[i];
    if (&other == self || !other.mu.try_lock()) continue;
    const bool took = other.count > 0;
    if (took) other.evict_one(now);
    other.mu.unlock();
    if (took) return true;
  }
  return false;
}

bool OldMemoryStore::check(std::string_view key,
                           std::span<const Policy> policies, int64_t now,
                           int64_t cost, Outcome *outcomes) {
  const uint64_t h = hash_bytes(key, seed_);
  Shard &s = shard_for(h);
  SpinGuard lock(s.mu);
  ++s.clock;
  ++s.checks;
  uint32_t idx = s.find(h, key);
  Entry *e = idx == kNone ? nullptr : &s.at(idx);
  bool all = true;
  uint32_t missing = 0;
  for (size_t i = 0; i < policies.size(); ++i) {
    const int slot = e ? find_slot(*e, policies[i].id) : -1;
    if (slot < 0) ++missing;
    const State *st =
        slot >= 0 ? &e->slot(static_cast<uint32_t>(slot)).state : nullptr;
    // Constructed in place (guaranteed elision): evaluate() writes straight
    // into outcomes[i]. Copying its returned temporary with wide moves read
    // fields just written with narrower stores (a store-forwarding stall).
    ::new (static_cast<void *>(&outcomes[i]))
        Outcome(evaluate(policies[i], st, now, cost));
    all = all && outcomes[i].allowed;
  }
  if (e) e->last_used = s.clock;
  if (all) ++s.allowed;
  if (cost == 0) return all;
  if (!all) {
    // Nothing is charged: policies that would have allowed report their
    // state as it stays, not as it would have become.
    for (size_t i = 0; i < policies.size(); ++i) {
      if (!outcomes[i].allowed) continue;
      const int slot = e ? find_slot(*e, policies[i].id) : -1;
      const State *st =
          slot >= 0 ? &e->slot(static_cast<uint32_t>(slot)).state : nullptr;
      const Outcome now_state = evaluate(policies[i], st, now, 0);
      outcomes[i].write = false;
      outcomes[i].remaining = now_state.remaining;
      outcomes[i].reset_after_us = now_state.reset_after_us;
    }
    return false;
  }

  // Commit: every allocation happens before the first state is written, so
  // a bad_alloc leaves the key as it was.
  if (!e) {
    // Count the new key against the store-wide bound first: reclaim expired
    // keys, then evict here, or from another shard if this one is empty.
    if (s.count > 0) s.reclaim_some(now);
    for (;;) {
      uint64_t cur = total_keys_.load(std::memory_order_relaxed);
      if (cur < max_keys_) {
        if (total_keys_.compare_exchange_weak(cur, cur + 1,
                                              std::memory_order_relaxed))
          break;
        continue;
      }
      if (s.count > 0) {
        s.evict_one(now);
      } else if (!evict_elsewhere(&s, now)) {
        std::this_thread::yield();
      }
    }
    try {
      idx = s.insert(h, key);
    } catch (...) {
      total_keys_.fetch_sub(1, std::memory_order_relaxed);
      throw;
    }
    e = &s.at(idx);
  }
  try {
    reserve_slots(*e, missing);
  } catch (...) {
    if (e->nslots == 0) s.free_entry(idx);
    throw;
  }
  for (size_t i = 0; i < policies.size(); ++i) {
    const Outcome &o = outcomes[i];
    if (!o.write) continue;
    Slot &slot = slot_for(*e, policies[i].id, policies);
    slot.state = o.next;
    slot.expires_at = o.expires_at_us;
  }
  return true;
}

bool OldMemoryStore::reset(std::string_view key) {
  const uint64_t h = hash_bytes(key, seed_);
  Shard &s = shard_for(h);
  SpinGuard lock(s.mu);
  const uint32_t idx = s.find(h, key);
  if (idx == kNone) return false;
  s.free_entry(idx);
  return true;
}

OldMemoryStoreStats OldMemoryStore::stats() const {
  OldMemoryStoreStats out;
  for (uint32_t i = 0; i < shard_count(); ++i) {
    Shard &s = shards_[i];
    std::lock_guard<ShardLock> lock(s.mu);
    out.checks += s.checks;
    out.allowed += s.allowed;
    out.live_keys += s.count;
    out.evictions += s.evictions;
    out.expired_reclaimed += s.reclaimed;
  }
  out.denied = out.checks - out.allowed;
  return out;
}

}  // namespace tollgate_old
