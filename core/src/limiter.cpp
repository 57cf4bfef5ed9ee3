#include "tollgate/limiter.hpp"

#include <new>
#include <string>

#include "tollgate/clock.hpp"

namespace tollgate {
namespace {

// Index of the calling thread's counter stripe, fixed per thread.
size_t thread_stripe_index() noexcept {
  static std::atomic<size_t> next{0};
  thread_local const size_t index =
      next.fetch_add(1, std::memory_order_relaxed);
  return index;
}

void bump(std::atomic<uint64_t> &c) noexcept {
  c.fetch_add(1, std::memory_order_relaxed);
}

// The reported decision: when denied, the denying policy with the longest
// retry (never counts as longest); when allowed, the fewest remaining. Ties
// go to the lowest index.
size_t pick_reported(const Outcome *o, size_t n, bool allowed) noexcept {
  size_t best = n;
  for (size_t i = 0; i < n; ++i) {
    if (allowed) {
      if (best == n || o[i].remaining < o[best].remaining) best = i;
      continue;
    }
    if (o[i].allowed) continue;
    if (best == n) {
      best = i;
      continue;
    }
    const int64_t a = o[i].retry_after_us, b = o[best].retry_after_us;
    if (b == kRetryNever) continue;
    if (a == kRetryNever || a > b) best = i;
  }
  return best;
}

}  // namespace

Limiter::CounterStripe &Limiter::stripe() noexcept {
  return counters_[thread_stripe_index() % kStripes];
}

Limiter::Limiter(const LimiterConfig &config)
    : max_key_len_(config.max_key_len ? config.max_key_len : kDefaultMaxKeyLen),
      clock_(config.clock),
      clock_user_data_(config.clock_user_data) {}

Errc Limiter::create(const LimiterConfig &config,
                     std::unique_ptr<Limiter> &out) {
  const std::string &url = config.url;
  if (!url.empty() && url != "memory://") {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos || scheme_end == 0)
      return fail(Errc::url,
                  "url: expected <scheme>://..., e.g. memory:// "
                  "(the URL is not echoed: it may hold a password)");
    const std::string scheme = url.substr(0, scheme_end);
    if (scheme == "memory")
      return fail(Errc::url, "url: memory:// takes no host, path or options");
    if (scheme == "redis" || scheme == "rediss" || scheme == "unix")
      return fail(Errc::unsupported, "url: the " + scheme +
                                         ":// store is not available in this "
                                         "build (only memory://)");
    if (scheme.size() > 16 ||
        scheme.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789+-.") !=
            std::string::npos)
      return fail(Errc::url, "url: malformed scheme");
    return fail(Errc::url,
                "url: unknown scheme '" + scheme + "' (expected memory://)");
  }
  if (config.max_key_len > kMaxMaxKeyLen)
    return fail(Errc::invalid_arg, "options: max_key_len " +
                                       std::to_string(config.max_key_len) +
                                       " exceeds 65536");
  if (config.shards > 1024)
    return fail(
        Errc::invalid_arg,
        "options: shards " + std::to_string(config.shards) + " exceeds 1024");
  MemoryStoreConfig mc;
  mc.max_keys = config.max_keys ? config.max_keys : kDefaultMaxKeys;
  mc.shards = config.shards;
  // Entries are indexed with 32 bits per shard.
  if (mc.max_keys >= (uint64_t{1} << 32) - 1)
    return fail(Errc::invalid_arg, "options: max_keys " +
                                       std::to_string(mc.max_keys) +
                                       " exceeds 4294967294");
  std::unique_ptr<Limiter> lim(new Limiter(config));
  lim->memory_ = std::make_unique<MemoryStore>(mc);
  out = std::move(lim);
  return Errc::ok;
}

Errc Limiter::validate_key(std::string_view key) {
  if (key.empty()) return fail(Errc::key_invalid, "key: must not be empty");
  if (key.size() > max_key_len_)
    return fail(Errc::key_too_long, "key: " + std::to_string(key.size()) +
                                        " bytes exceeds max_key_len " +
                                        std::to_string(max_key_len_));
  return Errc::ok;
}

Errc Limiter::now(int64_t &out) {
  out = clock_ ? clock_(clock_user_data_) : realtime_us();
  if (out < 0 || out >= kMaxTimeUs)
    return fail(Errc::overflow, "clock: time " + std::to_string(out) +
                                    " us is outside [0, 2^52)");
  return Errc::ok;
}

Errc Limiter::check(std::string_view key, std::span<const Policy> policies,
                    int64_t cost, Decision &out) {
  Errc rc = validate_key(key);
  if (rc == Errc::ok &&
      (policies.empty() || policies.size() > kMaxPoliciesPerCheck))
    rc = fail(Errc::invalid_arg, "policies: expected 1 to 16 policies, got " +
                                     std::to_string(policies.size()));
  if (rc == Errc::ok && cost < 0)
    rc = fail(Errc::invalid_arg,
              "cost: must be >= 0 (got " + std::to_string(cost) + ")");
  for (size_t i = 0; rc == Errc::ok && i < policies.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (policies[i].id == policies[j].id) {
        rc = fail(Errc::policy, "policies: policy " + std::to_string(i) +
                                    " repeats policy " + std::to_string(j));
        break;
      }
  int64_t t = 0;
  if (rc == Errc::ok) rc = now(t);
  if (rc != Errc::ok) {
    count_error();
    return rc;
  }

  Outcome outcomes[kMaxPoliciesPerCheck];  // filled by the store
  bool allowed;
  try {
    allowed = memory_->check(key, policies, t, cost, outcomes);
  } catch (const std::bad_alloc &) {
    count_error();
    return fail(Errc::nomem, "memory store: out of memory");
  }
  const size_t i = pick_reported(outcomes, policies.size(), allowed);
  out.allowed = allowed;
  out.limit = policies[i].limit;
  out.remaining = outcomes[i].remaining;
  out.reset_after_us = outcomes[i].reset_after_us;
  out.retry_after_us = allowed ? 0 : outcomes[i].retry_after_us;
  out.source = Source::store;
  out.policy_index = static_cast<uint32_t>(i);
  // checks, allowed and denied are counted by the store under its lock.
  return Errc::ok;
}

Errc Limiter::reset(std::string_view key) {
  Errc rc = validate_key(key);
  if (rc != Errc::ok) {
    count_error();
    return rc;
  }
  memory_->reset(key);
  return Errc::ok;
}

void Limiter::count_error() noexcept {
  bump(stripe().errors);
}

Health Limiter::health() const {
  Health h;
  h.store_kind = StoreKind::memory;
  for (const CounterStripe &c : counters_)
    h.errors += c.errors.load(std::memory_order_relaxed);
  const MemoryStoreStats s = memory_->stats();
  h.checks = s.checks;
  h.allowed = s.allowed;
  h.denied = s.denied;
  h.live_keys = s.live_keys;
  h.evictions = s.evictions;
  return h;
}

}  // namespace tollgate
