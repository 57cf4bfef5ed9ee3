#include "tollgate/memory_store.hpp"

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <stdexcept>
#include <thread>

#include "tollgate/hash.hpp"

namespace tollgate {
namespace {

// Each key is one 64-byte cache line in its shard's open-addressing table:
// the key (inline up to kInlineKey bytes), the first policy's state and its
// expiry, so finding a key at 1 M keys costs one dependent cache miss.
constexpr uint32_t kInlineKey = 18;
// Entry::kind: kEmpty marks an unused table slot (a fresh mapping is all
// zeros, so all empty); 1 + length marks a key kept inline; kSpilled (with
// the key length's bits above 16) a key kept out of line.
constexpr uint8_t kEmpty = 0;
constexpr uint8_t kSpilled = 0x80;
// States remembered per key: a check's 16 policies, their 16 strike counts,
// the block, and room for identities of other checks.
constexpr uint16_t kMaxSlots = 48;
constexpr int kEvictionSamples = 8;
constexpr int kReclaimSamples = 2;
constexpr uint32_t kMinCapacity = 16;
constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;

struct Slot {
  uint64_t policy_id;
  int64_t expires_at;
  State state;
};

// Slots 1 .. nslots-1 of a key with several policies, out of line.
struct Extra {
  uint32_t cap;
  uint32_t unused;
  Slot *slots() noexcept { return reinterpret_cast<Slot *>(this + 1); }
};

// A key that is longer than kInlineKey, or that holds more than one policy,
// keeps its bytes and its extra slots out of line; the entry then holds
// (unaligned, hence memcpy) the key pointer, the Extra pointer and the low
// 16 bits of the key length.
struct Spilled {
  char *key;
  Extra *extra;
  uint16_t len_low;
};

struct alignas(64) Entry {
  Slot slot0;
  uint32_t last_used;  // the shard's access counter at the last touch
  uint8_t kind;
  uint8_t nslots;
  char bytes[kInlineKey];  // the key, or a Spilled

  bool spilled() const noexcept { return kind >= kSpilled; }
  Spilled spill() const noexcept {
    Spilled s;
    std::memcpy(&s.key, bytes, 8);
    std::memcpy(&s.extra, bytes + 8, 8);
    std::memcpy(&s.len_low, bytes + 16, 2);
    return s;
  }
  void set_spill(char *key, Extra *extra, size_t len) noexcept {
    kind = static_cast<uint8_t>(kSpilled | (len >> 16));
    const uint16_t low = static_cast<uint16_t>(len);
    std::memcpy(bytes, &key, 8);
    std::memcpy(bytes + 8, &extra, 8);
    std::memcpy(bytes + 16, &low, 2);
  }
  std::string_view key() const noexcept {
    if (!spilled()) return {bytes, kind - 1u};
    const Spilled s = spill();
    return {s.key, (static_cast<size_t>(kind & 0x7f) << 16) | s.len_low};
  }
  bool holds(std::string_view k) const noexcept {
    if (!spilled())
      return kind == k.size() + 1 &&
             (k.empty() || std::memcmp(bytes, k.data(), k.size()) == 0);
    const std::string_view mine = key();
    return mine.size() == k.size() &&
           (k.empty() || std::memcmp(mine.data(), k.data(), k.size()) == 0);
  }
  Extra *extra() const noexcept { return spilled() ? spill().extra : nullptr; }
  uint32_t extra_cap() const noexcept {
    const Extra *x = extra();
    return x ? x->cap : 0;
  }
  Slot &slot(uint32_t i) noexcept {
    return i == 0 ? slot0 : spill().extra->slots()[i - 1];
  }
  bool expired(int64_t now) noexcept {
    for (uint32_t i = 0; i < nslots; ++i)
      if (slot(i).expires_at > now) return false;
    return true;
  }
};
static_assert(sizeof(Entry) == 64, "one cache line per key");

// The shard lock: a futex-style mutex whose uncontended lock and unlock are
// one atomic instruction each, inline (std::mutex goes through
// pthread_mutex_trylock/unlock calls). It spins briefly before sleeping:
// shard critical sections are short, and a futex sleep costs far more than
// the wait it avoids. state: 0 free, 1 held, 2 held with possible sleepers.
class ShardLock {
 public:
  bool held() const noexcept {
    return state_.load(std::memory_order_relaxed) != 0;
  }
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

// Every live store, for the fork handlers below: fork() waits until no
// thread is inside any shard of any store (the handler takes every shard
// lock), so the child gets whole states and free locks, and a child of a
// process that was checking on other threads works instead of
// deadlocking on a lock held by a thread it does not have.
struct LiveStores {
  std::mutex mu;
  std::vector<MemoryStore *> stores;
};
LiveStores &live_stores() {
  static LiveStores *r = new LiveStores;  // used while static dtors run
  return *r;
}
void before_fork() {
  LiveStores &r = live_stores();
  r.mu.lock();
  for (MemoryStore *s : r.stores) s->lock_all_for_fork();
}
void after_fork() {  // in the parent and in the child, on the forking thread
  LiveStores &r = live_stores();
  for (MemoryStore *s : r.stores) s->unlock_all_after_fork();
  r.mu.unlock();
}

uint32_t round_pow2(uint64_t v) {
  uint32_t p = 1;
  while (p < v && p < (1u << 30)) p <<= 1;
  return p;
}

// Tables are mapped, not allocated: a fresh mapping reads as all empty
// slots without being written, and a table of 2 MiB or more starts on a
// 2 MiB boundary and is advised to use transparent huge pages, so random
// lookups over a large table miss the TLB far less (one entry per 2 MiB
// instead of per 4 KiB).
size_t mapped_bytes(uint64_t cap) noexcept {
  return (cap * sizeof(Entry) + kPage - 1) & ~(kPage - 1);
}

// Maps `bytes` (a multiple of kPage) starting on a 2 MiB boundary, advised
// to use transparent huge pages; nullptr if the kernel refuses.
void *map_huge(size_t bytes, int flags) noexcept {
  const size_t span = bytes + kHugePage;
  void *p = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (base + kHugePage - 1) & ~(kHugePage - 1);
  if (start > base) munmap(p, start - base);
  const size_t tail = span - (start - base) - bytes;
  if (tail > 0) munmap(reinterpret_cast<void *>(start + bytes), tail);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void *>(start), bytes, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<void *>(start);
}

Entry *map_table(uint64_t cap) {
  const size_t bytes = mapped_bytes(cap);
  void *p = nullptr;
  if (bytes < kHugePage) {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) p = nullptr;
  } else {
    p = map_huge(bytes, 0);
  }
  if (!p) throw std::bad_alloc();
  return static_cast<Entry *>(p);
}

void unmap_table(Entry *t, uint64_t cap) noexcept {
  if (t) munmap(t, mapped_bytes(cap));
}

// Frees what an entry holds out of line and marks its slot empty.
void release(Entry &e) noexcept {
  if (e.spilled()) {
    const Spilled s = e.spill();
    delete[] s.key;
    ::operator delete(s.extra);
  }
  e.kind = kEmpty;
  e.nslots = 0;
}

Extra *new_extra(uint32_t cap) {
  void *mem = ::operator new(sizeof(Extra) + cap * sizeof(Slot));
  Extra *x = ::new (mem) Extra{cap, 0};
  return x;
}

char *copy_key(std::string_view key) {
  char *p = new char[key.empty() ? 1 : key.size()];
  if (!key.empty()) std::memcpy(p, key.data(), key.size());
  return p;
}

}  // namespace

struct alignas(64) MemoryStore::Shard {
  ShardLock mu;
  // Written under the lock; read without it only to prefetch a slot.
  std::atomic<Entry *> table{nullptr};
  std::atomic<uint32_t> cap{0};
  uint32_t full_cap = kMinCapacity;  // room for this shard's share of max_keys
  // This shard's part of the store's arena (full_cap entries), taken when
  // the table grows to full_cap; nullptr once taken, or without an arena.
  Entry *slice = nullptr;
  Entry *in_slice = nullptr;  // the table, while it lives in the slice
  uint32_t count = 0;
  uint32_t clock = 0;
  uint64_t seed = 0;
  uint64_t rng = 0;
  uint64_t evictions = 0;
  uint64_t reclaimed = 0;
  uint64_t checks = 0;
  uint64_t allowed = 0;
  std::atomic<uint64_t> *total = nullptr;  // the store's key count

  ~Shard() {
    Entry *t = tab();
    const uint32_t c = capacity();
    for (uint32_t i = 0; i < c; ++i) release(t[i]);
    drop_table(t, c);
  }

  // The arena belongs to the store: a table there is given back with
  // MADV_DONTNEED, not unmapped.
  void drop_table(Entry *t, uint32_t c) noexcept {
    if (t && t == in_slice) {
      madvise(t, mapped_bytes(c), MADV_DONTNEED);
      in_slice = nullptr;
    } else {
      unmap_table(t, c);
    }
  }

  Entry *tab() const noexcept { return table.load(std::memory_order_relaxed); }
  uint32_t capacity() const noexcept {
    return cap.load(std::memory_order_relaxed);
  }

  // A key's home slot: the low 32 hash bits scaled to the capacity (the
  // shard was chosen by the high bits), so capacities need not be powers of
  // two and the table can be sized to the bound.
  static uint32_t home(uint64_t h, uint32_t c) noexcept {
    return static_cast<uint32_t>(
        (static_cast<uint64_t>(static_cast<uint32_t>(h)) * c) >> 32);
  }
  uint32_t home_of(const Entry &e, uint32_t c) const noexcept {
    return home(hash_bytes(e.key(), seed), c);
  }

  uint64_t next_random() noexcept {  // xorshift64
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }

  // Linear probing from the home slot: the probe's next slots share the
  // cache line's page and are usually one line away.
  Entry *find(uint64_t h, std::string_view key) noexcept {
    const uint32_t c = capacity();
    if (c == 0) return nullptr;
    Entry *t = tab();
    for (uint32_t pos = home(h, c);;) {
      Entry &e = t[pos];
      if (e.kind == kEmpty) return nullptr;
      if (e.holds(key)) return &e;
      if (++pos == c) pos = 0;
    }
  }

  // Grows the table before an insert would push its load above 17/20: by
  // half, but first to exactly full_cap, the size for this shard's share of
  // the bound (load 4/5 there), so a store at its bound is not left in a
  // half-empty table, and a shard may hold 6% over its share before the
  // next growth.
  void reserve_one() {
    const uint32_t c = capacity();
    if (c != 0 && (uint64_t{count} + 1) * 20 <= uint64_t{c} * 17) return;
    uint64_t want = c == 0 ? kMinCapacity : uint64_t{c} + c / 2;
    if (c < full_cap && want > full_cap) want = full_cap;
    want = std::min<uint64_t>(want, UINT32_MAX);
    if (want <= c) throw std::bad_alloc();
    Entry *fresh;
    if (slice && want == full_cap) {
      fresh = in_slice = slice;  // untouched, so all empty
      slice = nullptr;
    } else {
      fresh = map_table(want);
    }
    Entry *old = tab();
    const uint32_t n = static_cast<uint32_t>(want);
    for (uint32_t i = 0; i < c; ++i) {
      if (old[i].kind == kEmpty) continue;
      uint32_t pos = home_of(old[i], n);
      while (fresh[pos].kind != kEmpty)
        if (++pos == n) pos = 0;
      fresh[pos] = old[i];
    }
    table.store(fresh, std::memory_order_relaxed);
    cap.store(n, std::memory_order_relaxed);
    drop_table(old, c);
  }

  // Removes `victim` with backward-shift deletion: each entry after it in
  // the probe run moves back into the hole unless that would put it before
  // its home, so the table never holds tombstones and every remaining key
  // stays reachable from its home.
  void erase(Entry &victim) noexcept {
    release(victim);
    Entry *t = tab();
    const uint32_t c = capacity();
    uint32_t hole = static_cast<uint32_t>(&victim - t);
    for (uint32_t j = hole;;) {
      if (++j == c) j = 0;
      Entry &e = t[j];
      if (e.kind == kEmpty) break;
      const uint32_t h = home_of(e, c);
      const bool stays = hole < j ? (h > hole && h <= j) : (h > hole || h <= j);
      if (stays) continue;
      t[hole] = e;
      e.kind = kEmpty;
      e.nslots = 0;
      hole = j;
    }
    --count;
    total->fetch_sub(1, std::memory_order_relaxed);
  }

  // Picks a random live entry, or nullptr after a few misses.
  Entry *sample() noexcept {
    const uint32_t c = capacity();
    if (c == 0) return nullptr;
    for (int tries = 0; tries < 4; ++tries) {
      Entry &e = tab()[next_random() % c];
      if (e.kind != kEmpty) return &e;
    }
    return nullptr;
  }

  // A few random probes free expired keys: the cost is spread over inserts
  // and no timer per key is needed.
  void reclaim_some(int64_t now) noexcept {
    for (int i = 0; i < kReclaimSamples && count > 0; ++i) {
      Entry *e = sample();
      if (e && e->expired(now)) {
        erase(*e);
        ++reclaimed;
      }
    }
  }

  // At the bound: among sampled keys, an expired one goes first, else the
  // least recently used of the sample (Redis's approximated LRU). A shard
  // of no more keys than samples compares them all: random probes of its
  // (sparse) table could miss its least recently used key.
  void evict_one(int64_t now) noexcept {
    Entry *victim = nullptr;
    uint32_t oldest_age = 0;
    const auto consider = [&](Entry *e) {
      if (e->expired(now)) {
        victim = e;
        ++reclaimed;
        return false;  // an expired key goes first: stop looking
      }
      const uint32_t age = clock - e->last_used;
      if (!victim || age > oldest_age) {
        victim = e;
        oldest_age = age;
      }
      return true;
    };
    Entry *t = tab();
    if (count <= static_cast<uint32_t>(kEvictionSamples)) {
      for (uint32_t i = 0; i < capacity(); ++i)
        if (t[i].kind != kEmpty && !consider(&t[i])) break;
    } else {
      for (int i = 0; i < kEvictionSamples; ++i) {
        Entry *e = sample();
        if (e && !consider(e)) break;
      }
    }
    if (!victim) {  // unlucky samples: take the first live entry
      for (uint32_t i = 0; i < capacity(); ++i)
        if (t[i].kind != kEmpty) {
          victim = &t[i];
          break;
        }
    }
    if (!victim) return;
    if (!victim->expired(now)) ++evictions;
    erase(*victim);
  }

  // Inserts a new key (not present) once the caller counted it in the
  // store's total. May throw std::bad_alloc before changing anything (the
  // reservation is then returned by the caller).
  Entry &insert(uint64_t h, std::string_view key) {
    char *out = key.size() > kInlineKey ? copy_key(key) : nullptr;
    try {
      reserve_one();
    } catch (...) {
      delete[] out;
      throw;
    }
    Entry *t = tab();
    const uint32_t c = capacity();
    uint32_t pos = home(h, c);
    while (t[pos].kind != kEmpty)
      if (++pos == c) pos = 0;
    Entry &e = t[pos];
    e.last_used = clock;
    e.nslots = 0;
    if (out) {
      e.set_spill(out, nullptr, key.size());
    } else {
      e.kind = static_cast<uint8_t>(key.size() + 1);
      if (!key.empty()) std::memcpy(e.bytes, key.data(), key.size());
    }
    ++count;  // the store's total was counted by the reservation
    return e;
  }
};

namespace {

// A state's slot under its key: the policy's identity (name or position)
// and the shape of its state, so a limit change finds the state and an
// algorithm of another shape does not read it.
// A policy state's id has its low two bits clear; the key's block (id 3)
// and the strike counts (low bits 11) are told apart by them.
uint64_t slot_id(const Policy &p, size_t index) noexcept {
  return hash_mix(identity(p, index) * 4 + state_shape(p.algorithm)) &
         ~uint64_t{3};
}
constexpr uint64_t kBlockSlot = 3;  // state.a: blocked until
uint64_t strike_slot_id(const Policy &p, size_t index) noexcept {
  return hash_mix(identity(p, index) * 4 + 3) | 3;
}
bool is_block_slot(uint64_t id) noexcept {
  return (id & 3) == 3;
}

// A check of a key blocked until `until`: denied, nothing charged. The
// wait is the block's, or the policy's own if longer (an impossible cost
// stays impossible); nothing is available meanwhile.
void deny_blocked(Outcome &o, const Policy &p, const State *st, int64_t now,
                  int64_t until) noexcept {
  const int64_t wait = until - now;
  const Outcome current = evaluate(p, st, now, 0);
  if (o.allowed)
    o.retry_after_us = wait;
  else if (o.retry_after_us != kRetryNever)
    o.retry_after_us = std::max(o.retry_after_us, wait);
  o.allowed = false;
  o.write = false;
  o.remaining = 0;
  o.reset_after_us = std::max(current.reset_after_us, wait);
}

int find_slot(Entry &e, uint64_t id) noexcept {
  for (uint32_t i = 0; i < e.nslots; ++i)
    if (e.slot(i).policy_id == id) return static_cast<int>(i);
  return -1;
}

// Makes room for `more` new slots in `e` (may throw before changing `e`).
// A key that needs a second slot moves its bytes out of line, next to the
// extra slots.
void reserve_slots(Entry &e, uint32_t more) {
  const uint32_t want = std::min<uint32_t>(e.nslots + more, kMaxSlots);
  const uint32_t have = e.extra_cap();
  if (want <= 1u + have) return;
  uint32_t cap = have ? have : 1;
  while (1u + cap < want) cap *= 2;
  const std::string_view key = e.key();
  char *moved = e.spilled() ? nullptr : copy_key(key);
  Extra *grown;
  try {
    grown = new_extra(cap);
  } catch (...) {
    delete[] moved;
    throw;
  }
  Extra *old = e.extra();
  if (e.nslots > 1)
    std::copy(old->slots(), old->slots() + (e.nslots - 1), grown->slots());
  ::operator delete(old);
  e.set_spill(moved ? moved : e.spill().key, grown, key.size());
}

// Returns a slot for policy `id`, adding one, or, when the key already
// holds kMaxSlots policies, reusing the stalest slot that belongs to none of
// the policies being committed now.
Slot &slot_for(Entry &e, uint64_t id,
               std::span<const Policy> committing) noexcept {
  const int found = find_slot(e, id);
  if (found >= 0) return e.slot(static_cast<uint32_t>(found));
  if (e.nslots < kMaxSlots && e.nslots < 1u + e.extra_cap()) {
    Slot &s = e.slot(e.nslots++);
    s.policy_id = id;
    return s;
  }
  auto in_use = [&](uint64_t sid) {
    for (size_t i = 0; i < committing.size(); ++i)
      if (slot_id(committing[i], i) == sid) return true;
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

MemoryStore::MemoryStore(const MemoryStoreConfig &config) {
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
  // Each shard's table is sized for its share of the bound at load 4/5.
  const uint64_t share = (max_keys_ + n - 1) / n;
  const uint64_t full = std::min<uint64_t>(UINT32_MAX, share * 5 / 4 + 1);
  const uint32_t full_cap =
      static_cast<uint32_t>(std::max<uint64_t>(kMinCapacity, full));
  // The full-size tables of all shards side by side in one mapping (address
  // space only until a shard grows into its part), so that at the bound
  // nearly every table byte sits on a 2 MiB transparent huge page: shard
  // tables of 1-2 MiB each would get none on their own. Without it (small
  // stores, or a kernel that refuses the mapping) tables are mapped one by
  // one.
  const size_t slice_bytes = mapped_bytes(full_cap);
  if (slice_bytes * n >= kHugePage && slice_bytes * n / n == slice_bytes) {
    arena_ = map_huge(slice_bytes * n, MAP_NORESERVE);
    if (arena_) arena_bytes_ = slice_bytes * n;
  }
  shards_ = std::make_unique<Shard[]>(n);
  for (uint32_t i = 0; i < n; ++i) {
    Shard &s = shards_[i];
    s.total = &total_keys_;
    s.seed = seed_;
    s.full_cap = full_cap;
    if (arena_)
      s.slice = reinterpret_cast<Entry *>(static_cast<char *>(arena_) +
                                          slice_bytes * i);
    s.rng = hash_mix(seed_ + i + 1) | 1;
  }
  static std::once_flag once;
  std::call_once(once,
                 [] { pthread_atfork(before_fork, after_fork, after_fork); });
  LiveStores &r = live_stores();
  std::lock_guard<std::mutex> lock(r.mu);
  r.stores.push_back(this);
}

void MemoryStore::lock_all_for_fork() noexcept {
  // In index order, as check_many takes several.
  for (uint32_t i = 0; i < shard_count(); ++i) shards_[i].mu.lock();
}

void MemoryStore::unlock_all_after_fork() noexcept {
  for (uint32_t i = 0; i < shard_count(); ++i) shards_[i].mu.unlock();
}

MemoryStore::~MemoryStore() {
  {
    LiveStores &r = live_stores();
    std::lock_guard<std::mutex> lock(r.mu);
    std::erase(r.stores, this);
  }
  shards_.reset();  // their tables may live in the arena
  if (arena_) munmap(arena_, arena_bytes_);
}

uint32_t MemoryStore::shard_count() const noexcept {
  return 1u << shard_bits_;
}

MemoryStore::Shard &MemoryStore::shard_for(uint64_t hash) const noexcept {
  const uint32_t i =
      shard_bits_ == 0 ? 0 : static_cast<uint32_t>(hash >> (64 - shard_bits_));
  return shards_[i];
}

bool MemoryStore::evict_elsewhere(const Shard *self, int64_t now) noexcept {
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

bool MemoryStore::check(std::string_view key, std::span<const Policy> policies,
                        int64_t now, int64_t cost, Outcome *outcomes) {
  if (key.size() >= kMaxKeyLen)
    throw std::length_error("memory store: key too long");
  const uint64_t h = hash_bytes(key, seed_);
  Shard &s = shard_for(h);
  // Start the key's cache miss before taking the lock. The table may be
  // replaced meanwhile; a prefetch never faults, and the lookup below reads
  // the table again under the lock. Not while another thread holds the
  // lock: that thread is likely writing the same line (one hot key), and
  // pulling it away would slow its critical section.
  if (Entry *t = s.tab(); t && !s.mu.held()) {
    const uint32_t c = s.capacity();
    // The home slot and the next: most keys sit at or one past home.
    const uint32_t pos = Shard::home(h, c);
    __builtin_prefetch(&t[pos], 0, 3);
    if (pos + 1 < c) __builtin_prefetch(&t[pos + 1], 0, 3);
  }
  SpinGuard lock(s.mu);
  ++s.clock;
  ++s.checks;
  Entry *e = s.find(h, key);
  if (e && cost >= 0) {
    // A blocked key is denied whatever its policies say (a refund runs).
    const int b = find_slot(*e, kBlockSlot);
    const int64_t until =
        b >= 0 ? e->slot(static_cast<uint32_t>(b)).state.a : 0;
    if (until > now) {
      e->last_used = s.clock;
      for (size_t i = 0; i < policies.size(); ++i) {
        const int slot = find_slot(*e, slot_id(policies[i], i));
        const State *st =
            slot >= 0 ? &e->slot(static_cast<uint32_t>(slot)).state : nullptr;
        ::new (static_cast<void *>(&outcomes[i]))
            Outcome(evaluate(policies[i], st, now, cost));
        deny_blocked(outcomes[i], policies[i], st, now, until);
      }
      return false;
    }
  }
  bool all = true;
  uint32_t missing = 0;
  for (size_t i = 0; i < policies.size(); ++i) {
    const int slot = e ? find_slot(*e, slot_id(policies[i], i)) : -1;
    if (slot < 0) ++missing;
    const State *st =
        slot >= 0 ? &e->slot(static_cast<uint32_t>(slot)).state : nullptr;
    // Constructed in place (guaranteed elision): evaluate() writes straight
    // into outcomes[i]. Copying its returned temporary with wide moves read
    // fields just written with narrower stores (a store-forwarding stall).
    ::new (static_cast<void *>(&outcomes[i]))
        Outcome(evaluate(policies[i], st, now, cost));
    // A shadow policy's denial is kept (nothing charged to it) but does not
    // deny the check.
    all = all && (outcomes[i].allowed || policies[i].shadow);
  }
  if (e) e->last_used = s.clock;
  if (cost < 0) {
    // A refund writes only where there was usage to give back, and never
    // creates a key: it answers whether anything was given back.
    all = false;
    for (size_t i = 0; i < policies.size(); ++i) all = all || outcomes[i].write;
    if (!all) return false;
  }
  if (all) ++s.allowed;
  if (cost == 0) return all;
  if (!all) {
    // Nothing is charged: policies that would have allowed report their
    // state as it stays, not as it would have become.
    for (size_t i = 0; i < policies.size(); ++i) {
      if (!outcomes[i].allowed) continue;
      const int slot = e ? find_slot(*e, slot_id(policies[i], i)) : -1;
      const State *st =
          slot >= 0 ? &e->slot(static_cast<uint32_t>(slot)).state : nullptr;
      const Outcome now_state = evaluate(policies[i], st, now, 0);
      outcomes[i].write = false;
      outcomes[i].remaining = now_state.remaining;
      outcomes[i].reset_after_us = now_state.reset_after_us;
    }
    strike(s, e, h, key, policies, now, outcomes);
    return false;
  }

  commit(s, e, h, key, policies, now, outcomes, missing);
  return true;
}

void MemoryStore::commit(Shard &s, void *entry, uint64_t h,
                         std::string_view key, std::span<const Policy> policies,
                         int64_t now, const Outcome *outcomes,
                         uint32_t missing) {
  auto *e = static_cast<Entry *>(entry);
  if (missing == UINT32_MAX) {
    missing = 0;
    for (size_t i = 0; i < policies.size(); ++i)
      if (!e || find_slot(*e, slot_id(policies[i], i)) < 0) ++missing;
  }
  // Every allocation happens before the first state is written, so a
  // bad_alloc leaves the key as it was.
  if (!e) e = static_cast<Entry *>(add_key(s, h, key, now));
  try {
    reserve_slots(*e, missing);
  } catch (...) {
    if (e->nslots == 0) s.erase(*e);
    throw;
  }
  for (size_t i = 0; i < policies.size(); ++i) {
    const Outcome &o = outcomes[i];
    if (!o.write) continue;
    Slot &slot = slot_for(*e, slot_id(policies[i], i), policies);
    slot.state = o.next;
    slot.expires_at = o.expires_at_us;
  }
}

bool MemoryStore::check_many(std::span<const KeyPolicies> items, int64_t now,
                             int64_t cost, Outcome *outcomes) {
  const size_t m = items.size();
  if (m == 0 || m > kMaxKeysPerCheck)
    throw std::length_error("memory store: 1 to 8 keys per check");
  uint64_t hashes[kMaxKeysPerCheck];
  uint32_t shard_of[kMaxKeysPerCheck];
  uint32_t order[kMaxKeysPerCheck];
  for (size_t j = 0; j < m; ++j) {
    if (items[j].key.size() >= kMaxKeyLen)
      throw std::length_error("memory store: key too long");
    hashes[j] = hash_bytes(items[j].key, seed_);
    shard_of[j] = static_cast<uint32_t>(&shard_for(hashes[j]) - &shards_[0]);
    order[j] = shard_of[j];
  }
  // Every shard involved, locked in ascending order (no deadlock with
  // another check of several keys), so the decision is atomic.
  std::sort(order, order + m);
  const size_t locked =
      static_cast<size_t>(std::unique(order, order + m) - order);
  for (size_t i = 0; i < locked; ++i) {
    Shard &s = shards_[order[i]];
    s.mu.lock();
    ++s.clock;
  }
  struct Unlock {
    MemoryStore *store;
    const uint32_t *order;
    size_t n;
    ~Unlock() {
      for (size_t i = n; i-- > 0;) store->shards_[order[i]].mu.unlock();
    }
  } unlock{this, order, locked};
  Shard &counted = shards_[shard_of[0]];
  ++counted.checks;
  const auto shard = [&](size_t j) -> Shard & { return shards_[shard_of[j]]; };
  const auto find = [&](size_t j) {
    return shard(j).find(hashes[j], items[j].key);
  };

  // Phase one: every pair decides on its own; nothing is written.
  bool all = true;
  bool blocked[kMaxKeysPerCheck] = {};
  size_t off = 0;
  for (size_t j = 0; j < m; ++j) {
    const std::span<const Policy> ps = items[j].policies;
    Outcome *o = outcomes + off;
    off += ps.size();
    Entry *e = find(j);
    if (e) e->last_used = shard(j).clock;
    int64_t until = 0;
    if (e && cost >= 0) {
      const int b = find_slot(*e, kBlockSlot);
      if (b >= 0) until = e->slot(static_cast<uint32_t>(b)).state.a;
    }
    for (size_t i = 0; i < ps.size(); ++i) {
      const int slot = e ? find_slot(*e, slot_id(ps[i], i)) : -1;
      const State *st =
          slot >= 0 ? &e->slot(static_cast<uint32_t>(slot)).state : nullptr;
      ::new (static_cast<void *>(&o[i]))
          Outcome(evaluate(ps[i], st, now, cost));
      if (until > now) deny_blocked(o[i], ps[i], st, now, until);
      all = all && (o[i].allowed || (ps[i].shadow && until <= now));
    }
    blocked[j] = until > now;
  }
  if (cost < 0) {
    // A refund: each pair gives back what it can; true if any could.
    bool any = false;
    for (size_t i = 0; i < off; ++i) any = any || outcomes[i].write;
    if (!any) return false;
    ++counted.allowed;
    off = 0;
    for (size_t j = 0; j < m; ++j) {
      commit(shard(j), find(j), hashes[j], items[j].key, items[j].policies, now,
             outcomes + off, UINT32_MAX);
      off += items[j].policies.size();
    }
    return true;
  }
  if (all) ++counted.allowed;
  if (cost == 0) return all;
  off = 0;
  if (!all) {
    // Nothing is charged anywhere: policies that would have allowed report
    // their state as it stays; each pair's denials count their strikes.
    for (size_t j = 0; j < m; ++j) {
      const std::span<const Policy> ps = items[j].policies;
      Outcome *o = outcomes + off;
      off += ps.size();
      if (blocked[j]) continue;
      Entry *e = find(j);
      for (size_t i = 0; i < ps.size(); ++i) {
        if (!o[i].allowed) continue;
        const int slot = e ? find_slot(*e, slot_id(ps[i], i)) : -1;
        const State *st =
            slot >= 0 ? &e->slot(static_cast<uint32_t>(slot)).state : nullptr;
        const Outcome now_state = evaluate(ps[i], st, now, 0);
        o[i].write = false;
        o[i].remaining = now_state.remaining;
        o[i].reset_after_us = now_state.reset_after_us;
      }
      strike(shard(j), e, hashes[j], items[j].key, ps, now, o);
    }
    return false;
  }
  // Phase two: every pair is written. Each entry is looked up again: an
  // insert for one pair may grow (move) or evict in a shard another pair
  // shares. A bad_alloc part-way leaves the pairs before it written.
  for (size_t j = 0; j < m; ++j) {
    commit(shard(j), find(j), hashes[j], items[j].key, items[j].policies, now,
           outcomes + off, UINT32_MAX);
    off += items[j].policies.size();
  }
  return true;
}

void *MemoryStore::add_key(Shard &s, uint64_t h, std::string_view key,
                           int64_t now) {
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
    return &s.insert(h, key);
  } catch (...) {
    total_keys_.fetch_sub(1, std::memory_order_relaxed);
    throw;
  }
}

void MemoryStore::strike(Shard &s, void *entry, uint64_t h,
                         std::string_view key, std::span<const Policy> policies,
                         int64_t now, Outcome *outcomes) {
  // Denials that count: by a policy with a block, of a cost that could
  // pass some day.
  uint32_t striking = 0;
  for (size_t i = 0; i < policies.size(); ++i)
    if (!outcomes[i].allowed && policies[i].block_us != 0 &&
        !policies[i].shadow && outcomes[i].retry_after_us != kRetryNever)
      ++striking;
  if (striking == 0) return;
  auto *e = static_cast<Entry *>(entry);
  if (!e) e = static_cast<Entry *>(add_key(s, h, key, now));
  try {
    reserve_slots(*e, striking + 1);
  } catch (...) {
    if (e->nslots == 0) s.erase(*e);
    throw;
  }
  int64_t until = 0;
  for (size_t i = 0; i < policies.size(); ++i) {
    const Policy &p = policies[i];
    if (outcomes[i].allowed || p.block_us == 0 || p.shadow ||
        outcomes[i].retry_after_us == kRetryNever)
      continue;
    const uint64_t id = strike_slot_id(p, i);
    const int found = find_slot(*e, id);
    const Strike k = tollgate::strike(
        p, found >= 0 ? &e->slot(static_cast<uint32_t>(found)).state : nullptr,
        now);
    if (k.write) {
      Slot &slot = slot_for(*e, id, policies);
      slot.state = k.next;
      slot.expires_at = k.expires_at_us;
    }
    if (k.block) until = std::max(until, now + p.block_us);
  }
  if (until == 0) return;
  // A longer block in place stays.
  const int held = find_slot(*e, kBlockSlot);
  if (held >= 0)
    until = std::max(until, e->slot(static_cast<uint32_t>(held)).state.a);
  Slot &b = slot_for(*e, kBlockSlot, policies);
  b.state = State{until, 0, 0};
  b.expires_at = until;
  for (size_t i = 0; i < policies.size(); ++i) {
    Outcome &o = outcomes[i];
    o.remaining = 0;
    o.reset_after_us = std::max(o.reset_after_us, until - now);
    if (!o.allowed && o.retry_after_us != kRetryNever)
      o.retry_after_us = std::max(o.retry_after_us, until - now);
  }
}

void MemoryStore::block(std::string_view key, int64_t until, int64_t now) {
  if (key.size() >= kMaxKeyLen)
    throw std::length_error("memory store: key too long");
  const uint64_t h = hash_bytes(key, seed_);
  Shard &s = shard_for(h);
  SpinGuard lock(s.mu);
  ++s.clock;
  Entry *e = s.find(h, key);
  if (!e) e = static_cast<Entry *>(add_key(s, h, key, now));
  try {
    reserve_slots(*e, 1);
  } catch (...) {
    if (e->nslots == 0) s.erase(*e);
    throw;
  }
  e->last_used = s.clock;
  Slot &b = slot_for(*e, kBlockSlot, {});
  b.state = State{until, 0, 0};
  b.expires_at = until;
}

bool MemoryStore::unblock(std::string_view key, int64_t now) {
  const uint64_t h = hash_bytes(key, seed_);
  Shard &s = shard_for(h);
  SpinGuard lock(s.mu);
  Entry *e = s.find(h, key);
  if (!e) return false;
  bool was = false;
  for (uint32_t i = 0; i < e->nslots; ++i) {
    Slot &slot = e->slot(i);
    if (!is_block_slot(slot.policy_id)) continue;
    if (slot.policy_id == kBlockSlot && slot.state.a > now) was = true;
    // Emptied in place: a block until 0, a count of window 0.
    slot.state = State{};
    slot.expires_at = 0;
  }
  return was;
}

bool MemoryStore::reset(std::string_view key) {
  const uint64_t h = hash_bytes(key, seed_);
  Shard &s = shard_for(h);
  SpinGuard lock(s.mu);
  Entry *e = s.find(h, key);
  if (!e) return false;
  s.erase(*e);
  return true;
}

MemoryStoreStats MemoryStore::stats() const {
  MemoryStoreStats out;
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

}  // namespace tollgate
