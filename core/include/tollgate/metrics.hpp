// Metrics (docs/metrics.md): decisions counted per policy label, decision
// and source without a lock on the hot path, store round trips in a
// histogram per node, and the snapshot the C API iterates.
#pragma once

#include <pthread.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate {

// ---- policy labels --------------------------------------------------------

// A check is counted under the label of the policy its decision reports:
// the policy's name, or "default" for an unnamed one (as the RateLimit
// headers name it). Labels are interned process-wide into small ids when a
// policy is made, so a check counts by index, never by string.
inline constexpr uint16_t kDefaultLabel = 0;  // unnamed policies
inline constexpr size_t kMaxLabels = 1024;
// Names beyond the first kMaxLabels - 2 share this label ("other").
inline constexpr uint16_t kOtherLabel = kMaxLabels - 1;

uint16_t intern_label(std::string_view name);
// Every label's text, by id (ids not yet given are absent).
std::vector<std::string> label_names();

// ---- decision counters ----------------------------------------------------

// The sources a decision can come from (Source's values, in order).
inline constexpr size_t kSources = 7;
// One counter per (allowed, source), and one for shadow mode's would-be
// denials (also counted allowed).
inline constexpr size_t kDecisionSlots = 2 * kSources + 1;
inline constexpr size_t kShadowSlot = 2 * kSources;

inline constexpr size_t decision_slot(bool allowed, int source) noexcept {
  return (allowed ? kSources : 0) + static_cast<size_t>(source);
}

// Stripes a thread may own (a power of two); one more is shared.
inline constexpr size_t kOwnedStripes = 64;

namespace detail {
// The thread owning each stripe (its thread pointer), or 0: metrics.cpp
// claims and gives back; the inline fast path of count() only compares.
extern std::atomic<uintptr_t> g_stripe_owner[kOwnedStripes];

inline uintptr_t thread_pointer() noexcept {
#if defined(__has_builtin) && __has_builtin(__builtin_thread_pointer)
  return reinterpret_cast<uintptr_t>(__builtin_thread_pointer());
#else
  return static_cast<uintptr_t>(pthread_self());  // glibc: the same value
#endif
}

// A thread's home stripe: its thread pointer, hashed.
inline size_t home_stripe(uintptr_t tp) noexcept {
  static_assert(std::has_single_bit(kOwnedStripes));
  constexpr int kBits = std::countr_zero(kOwnedStripes);
  return static_cast<size_t>((uint64_t{tp} * 0x9E3779B97F4A7C15ull) >>
                             (64 - kBits));
}
}  // namespace detail

class DecisionCounters {
 public:
  DecisionCounters();
  ~DecisionCounters();
  DecisionCounters(const DecisionCounters &) = delete;
  DecisionCounters &operator=(const DecisionCounters &) = delete;

  // One decision under `label` (a label's block is made on its first
  // decision). Lock-free: a thread owns the stripe its thread pointer
  // hashes to (unless another live thread owns it) and adds there with a
  // plain load and store (no read-modify-write); a thread that exits gives
  // its stripe back; threads without one share a stripe with atomic adds.
  // A shadow decision also counts a would-be denial.
  void count(uint16_t label, bool allowed, int source, bool shadow) noexcept {
    if (label >= kMaxLabels || source < 0 ||
        static_cast<size_t>(source) >= kSources) [[unlikely]]
      return;
    // The fast path (inline, no lock, no call): the label's block exists
    // and this thread owns its home stripe, where it is the only writer.
    Block *b = blocks_[label].load(std::memory_order_acquire);
    const uintptr_t tp = detail::thread_pointer();
    const size_t home = detail::home_stripe(tp);
    if (b != nullptr && detail::g_stripe_owner[home].load(
                            std::memory_order_relaxed) == tp) [[likely]] {
      add_owned(b->stripes[home], decision_slot(allowed, source), shadow);
      return;
    }
    count_slow(label, decision_slot(allowed, source), shadow);
  }

  // The sums over stripes: per label with any decision, its counts.
  struct Row {
    uint16_t label;
    std::array<uint64_t, kDecisionSlots> n;
  };
  std::vector<Row> read() const;

 private:
  struct alignas(64) Stripe {
    std::array<std::atomic<uint64_t>, kDecisionSlots> n{};
  };
  struct Block {
    std::array<Stripe, kOwnedStripes + 1> stripes;  // the last one is shared
  };
  Block *block(uint16_t label) noexcept;
  static void add_owned(Stripe &s, size_t slot, bool shadow) noexcept {
    auto add = [](std::atomic<uint64_t> &c) {
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    };
    add(s.n[slot]);
    if (shadow) [[unlikely]]
      add(s.n[kShadowSlot]);
  }
  [[gnu::noinline]] void count_slow(uint16_t label, size_t slot,
                                    bool shadow) noexcept;

  std::unique_ptr<std::atomic<Block *>[]> blocks_;
};

// ---- store round trips ----------------------------------------------------

// Upper bounds of the round-trip histogram's buckets, in microseconds (a
// last bucket takes the rest).
inline constexpr std::array<int64_t, 16> kRttBoundsUs = {
    25,    50,    100,   250,    500,    1000,   2500,    5000,
    10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

struct RttCounts {
  std::array<uint64_t, kRttBoundsUs.size() + 1> buckets{};  // not cumulative
  uint64_t count = 0;
  uint64_t sum_ns = 0;
  void add(const RttCounts &o) noexcept;
};

// Round trips of one node's commands, recorded by whichever thread reads
// the reply (the I/O thread, or a blocking caller on its own connection).
class RttHistogram {
 public:
  void record(int64_t ns) noexcept;
  RttCounts read() const noexcept;

 private:
  std::array<std::atomic<uint64_t>, kRttBoundsUs.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

// ---- the snapshot ---------------------------------------------------------

enum class MetricType : int32_t { counter = 1, gauge = 2, histogram = 3 };

// One series of the snapshot (rl_metric).
struct MetricSeries {
  MetricType type = MetricType::counter;
  const char *name = "";  // static text
  const char *help = "";  // static text
  std::vector<std::pair<const char *, std::string>> labels;
  double value = 0;
  // Histograms: cumulative counts per kRttBoundsUs bound (seconds).
  std::vector<uint64_t> cumulative;
  uint64_t count = 0;
  double sum = 0;
};

// The bucket bounds in seconds, as rl_metric.bucket_bounds reports them.
const double *rtt_bounds_seconds() noexcept;

}  // namespace tollgate
