// The limiter: validates a check, reads the clock, asks the store, picks the
// reported decision and counts everything for health. Stores below it; the
// C ABI above it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tollgate/error.hpp"
#include "tollgate/memory_store.hpp"
#include "tollgate/policy.hpp"

namespace tollgate {

inline constexpr size_t kMaxPoliciesPerCheck = 16;
inline constexpr uint32_t kDefaultMaxKeyLen = 512;
inline constexpr uint32_t kMaxMaxKeyLen = 65536;
inline constexpr uint64_t kDefaultMaxKeys = 1000000;

enum class StoreKind : int32_t { memory = 1 };
enum class Source : int32_t { store = 0 };

struct LimiterConfig {
  std::string url;  // "", "memory://"
  uint64_t max_keys = 0;
  uint32_t max_key_len = 0;
  uint32_t shards = 0;
  int64_t (*clock)(void *) = nullptr;
  void *clock_user_data = nullptr;
};

struct Decision {
  bool allowed = false;
  int64_t limit = 0;
  int64_t remaining = 0;
  int64_t reset_after_us = 0;
  int64_t retry_after_us = 0;
  Source source = Source::store;
  uint32_t policy_index = 0;
};

struct Health {
  StoreKind store_kind = StoreKind::memory;
  uint64_t checks = 0;
  uint64_t allowed = 0;
  uint64_t denied = 0;
  uint64_t errors = 0;
  uint64_t live_keys = 0;
  uint64_t evictions = 0;
};

class Limiter {
 public:
  // Parses the URL and builds the store. Errors: url, unsupported,
  // invalid_arg (option out of range).
  static Errc create(const LimiterConfig &config,
                     std::unique_ptr<Limiter> &out);

  // One check: all policies or none are charged. `policies` must come from
  // make_policy. Errors: key_invalid, key_too_long, invalid_arg, policy
  // (duplicate), overflow (clock out of range), nomem.
  Errc check(std::string_view key, std::span<const Policy> policies,
             int64_t cost, Decision &out);

  Errc reset(std::string_view key);

  Health health() const;

  // Counts a call that failed before reaching the limiter (e.g. the C ABI
  // rejected a NULL pointer), so health's error count is complete.
  void count_error() noexcept;

  uint32_t max_key_len() const noexcept { return max_key_len_; }

 private:
  explicit Limiter(const LimiterConfig &config);
  Errc validate_key(std::string_view key);
  Errc now(int64_t &out);

  // Counters striped over cache lines so threads do not share one line.
  struct alignas(64) CounterStripe {
    std::atomic<uint64_t> errors{0};
  };
  static constexpr size_t kStripes = 16;
  CounterStripe &stripe() noexcept;

  uint32_t max_key_len_;
  int64_t (*clock_)(void *);
  void *clock_user_data_;
  std::unique_ptr<MemoryStore> memory_;
  mutable std::array<CounterStripe, kStripes> counters_;
};

}  // namespace tollgate
