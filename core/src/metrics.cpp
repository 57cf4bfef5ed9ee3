#include "tollgate/metrics.hpp"

#include <algorithm>
#include <mutex>
#include <unordered_map>

namespace tollgate {
using detail::g_stripe_owner;
using detail::home_stripe;
using detail::thread_pointer;

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

// Stripe ownership, shared by every limiter of the process. A thread's
// home stripe is a hash of its thread pointer; it owns that stripe while
// the slot below holds its thread pointer (0: free), claimed at its first
// count and given back when it exits, so a pool that replaces its workers
// keeps owning stripes. Only the owner writes its stripe. A thread whose
// home is owned by another live thread counts in the shared stripe.
//
// The fast path (DecisionCounters::count, inline) reads the thread
// pointer and this table (detail::g_stripe_owner): no thread_local, since a
// thread_local of a shared library costs a call to __tls_get_addr (and the
// spills around it) on every check, and initial-exec made the Node addon,
// loaded late with dlopen, fail with "cannot allocate memory in static TLS
// block".

// The slow path's state of this thread: unclaimed, owner (of its home),
// or exited (thread_local destructors are running: count shared, claim
// nothing, since the stripe is already given back).
enum class Claim : unsigned char { unclaimed, owner, exited };
thread_local Claim t_claim = Claim::unclaimed;

struct StripeHolder {
  size_t index;
  uintptr_t tp;
  ~StripeHolder() {
    t_claim = Claim::exited;
    // Release: this thread's last counts happen before the next owner's.
    uintptr_t expected = tp;
    g_stripe_owner[index].compare_exchange_strong(expected, 0,
                                                  std::memory_order_release);
  }
};

// The stripe this thread owns, or kOwnedStripes (the shared one).
size_t stripe_of_thread() noexcept {
  const uintptr_t tp = thread_pointer();
  const size_t home = home_stripe(tp);
  if (g_stripe_owner[home].load(std::memory_order_acquire) == tp) return home;
  if (t_claim != Claim::unclaimed) return kOwnedStripes;
  uintptr_t expected = 0;
  if (!g_stripe_owner[home].compare_exchange_strong(expected, tp,
                                                    std::memory_order_acquire))
    return kOwnedStripes;  // owned by another live thread: try again later
  t_claim = Claim::owner;
  thread_local StripeHolder holder{home, tp};
  return home;
}

}  // namespace

namespace detail {
std::atomic<uintptr_t> g_stripe_owner[kOwnedStripes];
}  // namespace detail

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

// A label's first decision, or a thread's first count (it takes a stripe),
// or a thread without a stripe of its own: kept out of line so the fast path
// stays small.
void DecisionCounters::count_slow(uint16_t label, size_t slot,
                                  bool shadow) noexcept {
  Block *b = block(label);
  if (b == nullptr) [[unlikely]]
    return;
  const size_t t = stripe_of_thread();
  if (t < kOwnedStripes) {
    add_owned(b->stripes[t], slot, shadow);
    return;
  }
  Stripe &shared = b->stripes[kOwnedStripes];
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
