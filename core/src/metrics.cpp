#include "tollgate/metrics.hpp"

#include <algorithm>
#include <mutex>
#include <unordered_map>

namespace tollgate {
namespace {

struct LabelRegistry {
  std::mutex mu;
  std::vector<std::string> names{"default"};
  std::unordered_map<std::string, uint16_t> ids;
};

LabelRegistry &registry() {
  // Never destroyed: policies may be made while static destructors run.
  static LabelRegistry *r = new LabelRegistry;
  return *r;
}

// Stripe indices: a thread takes the lowest free one at its first count
// and gives it back when it exits, so a process that starts threads again
// and again (a pool that replaces its workers) keeps owning stripes. The
// mutex orders a thread's last counts before the next owner's first.
struct StripeIndices {
  std::mutex mu;
  std::vector<size_t> free;  // returned by exited threads
  size_t next = 0;
};

StripeIndices &stripe_indices() {
  static StripeIndices *s = new StripeIndices;  // threads exit late
  return *s;
}

// A constant-initialised thread_local (no guard on each access); the
// holder, made on the slow path only, returns the index at thread exit.
// (Not initial-exec: the Node addon, loaded with dlopen after many other
// libraries, then failed with "cannot allocate memory in static TLS block".)
thread_local size_t t_stripe = SIZE_MAX;

struct StripeHolder {
  size_t index;
  ~StripeHolder() {
    // Counts made later on this thread (from other thread_local
    // destructors) go to the shared stripe: the index may be taken again.
    t_stripe = SIZE_MAX - 1;
    StripeIndices &s = stripe_indices();
    std::lock_guard<std::mutex> lock(s.mu);
    s.free.push_back(index);
  }
};

size_t take_stripe() {
  StripeIndices &s = stripe_indices();
  size_t index;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.free.empty()) {
      auto lowest = std::min_element(s.free.begin(), s.free.end());
      index = *lowest;
      s.free.erase(lowest);
    } else {
      index = s.next++;
    }
  }
  thread_local StripeHolder holder{index};
  t_stripe = index;
  return index;
}

inline size_t stripe_of_thread() noexcept {
  const size_t s = t_stripe;
  if (s != SIZE_MAX) [[likely]]
    return s;
  try {
    return take_stripe();
  } catch (...) {
    return SIZE_MAX;  // out of memory: the shared stripe
  }
}

}  // namespace

uint16_t intern_label(std::string_view name) {
  if (name.empty()) return kDefaultLabel;
  LabelRegistry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const std::string key(name);
  auto it = r.ids.find(key);
  if (it != r.ids.end()) return it->second;
  if (r.names.size() >= kOtherLabel) return kOtherLabel;
  const auto id = static_cast<uint16_t>(r.names.size());
  r.names.push_back(key);
  r.ids.emplace(key, id);
  return id;
}

std::vector<std::string> label_names() {
  LabelRegistry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> out = r.names;
  out.resize(kMaxLabels);
  out[kOtherLabel] = "other";
  return out;
}

DecisionCounters::DecisionCounters()
    : blocks_(new std::atomic<Block *>[kMaxLabels]) {
  for (size_t i = 0; i < kMaxLabels; ++i)
    blocks_[i].store(nullptr, std::memory_order_relaxed);
}

DecisionCounters::~DecisionCounters() {
  for (size_t i = 0; i < kMaxLabels; ++i)
    delete blocks_[i].load(std::memory_order_relaxed);
}

DecisionCounters::Block *DecisionCounters::block(uint16_t label) noexcept {
  std::atomic<Block *> &slot = blocks_[label];
  Block *b = slot.load(std::memory_order_acquire);
  if (b != nullptr) [[likely]]
    return b;
  Block *made = new (std::nothrow) Block;
  if (made == nullptr) return nullptr;  // out of memory: not counted
  if (slot.compare_exchange_strong(b, made, std::memory_order_acq_rel))
    return made;
  delete made;  // another thread made it first
  return b;
}

void DecisionCounters::count(uint16_t label, bool allowed, int source,
                             bool shadow) noexcept {
  if (label >= kMaxLabels || source < 0 ||
      static_cast<size_t>(source) >= kSources) [[unlikely]]
    return;
  Block *b = block(label);
  if (b == nullptr) [[unlikely]]
    return;
  const size_t t = stripe_of_thread();
  const size_t slot = decision_slot(allowed, source);
  if (t < kOwned) [[likely]] {
    // This thread is the only writer of its stripe: readers see whole
    // values, and no add is lost.
    Stripe &s = b->stripes[t];
    auto add = [](std::atomic<uint64_t> &c) {
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    };
    add(s.n[slot]);
    if (shadow) [[unlikely]]
      add(s.n[kShadowSlot]);
    return;
  }
  Stripe &shared = b->stripes[kOwned];
  shared.n[slot].fetch_add(1, std::memory_order_relaxed);
  if (shadow) [[unlikely]]
    shared.n[kShadowSlot].fetch_add(1, std::memory_order_relaxed);
}

std::vector<DecisionCounters::Row> DecisionCounters::read() const {
  std::vector<Row> out;
  for (size_t i = 0; i < kMaxLabels; ++i) {
    const Block *b = blocks_[i].load(std::memory_order_acquire);
    if (b == nullptr) continue;
    Row row{static_cast<uint16_t>(i), {}};
    for (const Stripe &s : b->stripes)
      for (size_t k = 0; k < kDecisionSlots; ++k)
        row.n[k] += s.n[k].load(std::memory_order_relaxed);
    out.push_back(row);
  }
  return out;
}

void RttCounts::add(const RttCounts &o) noexcept {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum_ns += o.sum_ns;
}

void RttHistogram::record(int64_t ns) noexcept {
  if (ns < 0) ns = 0;
  size_t i = 0;  // the first bucket whose bound holds it (le, inclusive)
  while (i < kRttBoundsUs.size() && ns > kRttBoundsUs[i] * 1000) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

RttCounts RttHistogram::read() const noexcept {
  RttCounts out;
  // The count is the buckets' sum, so that it agrees with them in every
  // snapshot (they are read one by one while others record).
  for (size_t i = 0; i < buckets_.size(); ++i) {
    out.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    out.count += out.buckets[i];
  }
  out.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return out;
}

const double *rtt_bounds_seconds() noexcept {
  static const auto bounds = [] {
    std::array<double, kRttBoundsUs.size()> b{};
    for (size_t i = 0; i < b.size(); ++i)
      b[i] = static_cast<double>(kRttBoundsUs[i]) / 1e6;
    return b;
  }();
  return bounds.data();
}

}  // namespace tollgate
