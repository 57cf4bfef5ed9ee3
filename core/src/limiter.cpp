#include "tollgate/limiter.hpp"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <new>
#include <random>
#include <string>

#include "tollgate/clock.hpp"
#include "tollgate/deny_cache.hpp"
#include "tollgate/hash.hpp"
#include "tollgate/redis/redis_store.hpp"
#include "tollgate/redis/url.hpp"

namespace tollgate {

static_assert(kMaxMaxKeyLen < MemoryStore::kMaxKeyLen,
              "the memory store must hold the longest key a check accepts");
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
  return best < n ? best : 0;
}

// The decision to report, written field by field into `d`: building a
// Decision and copying it whole reads back, with wide loads, fields just
// written with narrow stores, which stalls store forwarding (the memory
// store's hot path).
void report_into(Decision &d, std::span<const Policy> policies,
                 const Outcome *o, bool allowed) noexcept {
  // An allowed check with a denying policy: that policy is in shadow mode,
  // and the decision reports the denial it would have been.
  bool shadowed = false;
  if (allowed)
    for (size_t k = 0; k < policies.size(); ++k) shadowed |= !o[k].allowed;
  const bool enforced = allowed && !shadowed;
  const size_t i = pick_reported(o, policies.size(), enforced);
  d.allowed = allowed;
  d.limit = policies[i].limit;
  d.remaining = o[i].remaining;
  d.reset_after_us = o[i].reset_after_us;
  d.retry_after_us = enforced ? 0 : o[i].retry_after_us;
  d.source = Source::store;
  d.policy_index = static_cast<uint32_t>(i);
  d.shadow = shadowed;
}

Decision reported(std::span<const Policy> policies, const Outcome *o,
                  bool allowed) {
  Decision d;
  report_into(d, policies, o, allowed);
  return d;
}

// A policy as one of n servers enforces it alone (RL_FAIL_LOCAL): limit
// and burst divided by n, the name and the block kept (local state has the
// same identities).
Policy local_share(const Policy &p, int64_t n) {
  const int64_t limit = std::max<int64_t>(1, p.limit / n);
  const int64_t burst = p.burst ? std::max<int64_t>(1, p.burst / n) : 0;
  Policy out;
  if (make_policy(static_cast<int32_t>(p.algorithm), limit, p.period_ms, burst,
                  0, out) != Errc::ok ||
      set_policy_name(out, policy_name(p)) != Errc::ok ||
      set_policy_block(out, p.block_us / 1000, p.strikes,
                       p.strike_period_us / 1000) != Errc::ok)
    out = p;
  out.label = p.label;
  return out;
}

// Whether a denial may be cached. A policy with strikes counts each denial
// in the store: a cached denial would count none. So with strikes in the
// set, a denial is cached only if it lasts at least as long as the
// shortest such block (the denial that starts a block does; a later
// strike could not block the key any longer than the limit denies it).
bool cacheable_denial(std::span<const Policy> policies, int64_t retry_us) {
  for (const Policy &p : policies)
    if (p.strikes > 1 && retry_us < p.block_us) return false;
  return true;
}

uint64_t policy_signature(std::span<const Policy> policies) {
  uint64_t h = 0x7461676c6c6f74ULL;
  for (const Policy &p : policies) h = hash_mix(h ^ p.id);
  return h;
}

// A store denial, as the deny cache keeps it (`index`: the reported
// policy's position in the cached policy set).
CachedDenial cached_denial(const Decision &out, int64_t cost, uint32_t index,
                           int64_t now_ns) {
  CachedDenial d;
  d.until_ns = now_ns + out.retry_after_us * 1000;
  d.cost = cost == 0 ? 1 : cost;
  d.limit = out.limit;
  d.remaining = out.remaining;
  d.reset_at_ns = now_ns + out.reset_after_us * 1000;
  d.policy_index = index;
  return d;
}

// The decision a cached denial answers at now_ns (`first`: the position of
// the cached policy set's first policy in the check's list).
Decision from_cache(const CachedDenial &hit, int64_t now_ns, size_t first) {
  Decision d;
  d.allowed = false;
  d.limit = hit.limit;
  d.remaining = hit.remaining;
  d.retry_after_us = std::max<int64_t>(1, (hit.until_ns - now_ns + 999) / 1000);
  d.reset_after_us = std::max<int64_t>(0, (hit.reset_at_ns - now_ns) / 1000);
  d.source = Source::deny_cache;
  d.policy_index = static_cast<uint32_t>(first + hit.policy_index);
  return d;
}

// How long a fail-closed answer tells clients to wait.
constexpr int64_t kFailClosedRetryUs = 1'000'000;

Errc apply_overrides(const LimiterConfig &c, redis::Settings &s) {
  // The same ranges as the URL's query options (docs/redis.md).
  if (c.connect_timeout_ms > 600000 || c.timeout_ms > 600000)
    return fail(Errc::invalid_arg,
                "options: connect_timeout_ms and timeout_ms must be 1..600000");
  if (c.reconnect_max_ms &&
      (c.reconnect_max_ms < 10 || c.reconnect_max_ms > 600000))
    return fail(Errc::invalid_arg,
                "options: reconnect_max_ms must be 10..600000");
  if (c.deny_cache_size > 10000000)
    return fail(Errc::invalid_arg,
                "options: deny_cache_size must be 1..10000000");
  if (c.connect_timeout_ms) s.connect_timeout_ms = c.connect_timeout_ms;
  if (c.timeout_ms) s.timeout_ms = c.timeout_ms;
  if (c.key_prefix) {
    const std::string &p = *c.key_prefix;
    if (p.empty() || p.size() > 128 || p.find_first_of("{}") != p.npos)
      return fail(Errc::invalid_arg,
                  "options: key_prefix must be 1..128 bytes without { or }");
    s.key_prefix = p;
  }
  if (c.failure_mode < 0 || c.failure_mode > 4)
    return fail(Errc::invalid_arg, "options: failure_mode " +
                                       std::to_string(c.failure_mode) +
                                       " is not an RL_FAIL_* value");
  if (c.failure_mode > 0)
    s.failure_mode = static_cast<redis::FailureMode>(c.failure_mode);
  if (c.local_divisor) s.local_divisor = c.local_divisor;
  if (c.deny_cache < -1 || c.deny_cache > 1)
    return fail(Errc::invalid_arg, "options: deny_cache must be -1, 0 or 1");
  if (c.deny_cache) s.deny_cache = c.deny_cache > 0;
  if (c.spin_us < -1 || c.spin_us > 1000)
    return fail(Errc::invalid_arg, "options: spin_us must be -1 .. 1000");
  if (c.spin_us) s.spin_us = c.spin_us > 0 ? c.spin_us : 0;
  if (c.max_async) s.max_async = c.max_async > 0 ? c.max_async : 0;
  if (c.deny_cache_size) s.deny_cache_size = c.deny_cache_size;
  if (c.connections > 64)
    return fail(Errc::invalid_arg, "options: connections must be 1..64");
  if (c.connections) s.connections = c.connections;
  if (c.reconnect_max_ms) s.reconnect_max_ms = c.reconnect_max_ms;
  if (c.username) s.username = *c.username;
  if (c.password) s.password = *c.password;
  const bool any_tls = c.tls_ca_file || c.tls_ca_dir || c.tls_cert_file ||
                       c.tls_key_file || c.tls_server_name || c.tls_verify;
  if (any_tls && !s.tls.enabled)
    return fail(Errc::invalid_arg,
                "options: TLS options require a rediss:// URL");
  if (c.tls_ca_file) s.tls.ca_file = *c.tls_ca_file;
  if (c.tls_ca_dir) s.tls.ca_dir = *c.tls_ca_dir;
  if (c.tls_cert_file) s.tls.cert_file = *c.tls_cert_file;
  if (c.tls_key_file) s.tls.key_file = *c.tls_key_file;
  if (c.tls_server_name) s.tls.server_name = *c.tls_server_name;
  if (c.tls_verify < -1 || c.tls_verify > 1)
    return fail(Errc::invalid_arg, "options: tls_verify must be -1, 0 or 1");
  if (c.tls_verify) s.tls.verify = c.tls_verify > 0;
  if (s.tls.cert_file.empty() != s.tls.key_file.empty())
    return fail(Errc::invalid_arg,
                "options: a TLS client certificate needs its key and the "
                "key its certificate");
  if (s.local_divisor == 0 || s.local_divisor > 1000000)
    return fail(Errc::invalid_arg, "options: local_divisor must be 1..1000000");
  return Errc::ok;
}

}  // namespace

Limiter::CounterStripe &Limiter::stripe() noexcept {
  return counters_[thread_stripe_index() % kStripes];
}

Limiter::Limiter(const LimiterConfig &config)
    : max_key_len_(config.max_key_len ? config.max_key_len : kDefaultMaxKeyLen),
      clock_(config.clock),
      clock_user_data_(config.clock_user_data),
      decisions_(config.metrics == -1 ? nullptr
                                      : std::make_unique<DecisionCounters>()) {}

Errc Limiter::create(const LimiterConfig &config,
                     std::unique_ptr<Limiter> &out) {
  const std::string &url = config.url;
  if (config.metrics < -1 || config.metrics > 1)
    return fail(Errc::invalid_arg, "options: metrics must be -1, 0 or 1 (got " +
                                       std::to_string(config.metrics) + ")");
  if (config.max_async < -1)
    return fail(Errc::invalid_arg,
                "options: max_async must be -1 (no bound), 0 (default) or "
                "1 .. 2147483647 (got " +
                    std::to_string(config.max_async) + ")");
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
  lim->lease_base_ = (uint64_t{std::random_device{}()} << 32) ^
                     std::random_device{}() ^
                     static_cast<uint64_t>(realtime_us());
  if (url.empty() || url == "memory://") {
    lim->memory_ = std::make_unique<MemoryStore>(mc);
    lim->leases_ = std::make_unique<LeaseTable>(mc.max_keys);
    out = std::move(lim);
    return Errc::ok;
  }
  if (!redis::is_redis_url(url)) {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos || scheme_end == 0 || scheme_end > 16 ||
        url.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789+-.") <
            scheme_end)
      return fail(Errc::url,
                  "url: expected <scheme>://..., e.g. memory:// or "
                  "redis://host:6379 (the URL is not echoed: it may hold a "
                  "password)");
    const std::string scheme = url.substr(0, scheme_end);
    if (scheme == "memory")
      return fail(Errc::url, "url: memory:// takes no host, path or options");
    return fail(Errc::url, "url: unknown scheme '" + scheme +
                               "' (expected memory://, redis://, rediss://, "
                               "unix://, redis+cluster://, rediss+cluster://, "
                               "redis+sentinel:// or rediss+sentinel://)");
  }
  auto settings = std::make_unique<redis::Settings>();
  Errc rc = redis::parse_url(url, *settings);
  if (rc != Errc::ok) return rc;
  rc = apply_overrides(config, *settings);
  if (rc != Errc::ok) return rc;
  settings->log = lim->log_;
  rc = redis::RedisStore::create(*settings, config.clock != nullptr,
                                 lim->redis_);
  if (rc != Errc::ok) return rc;
  lim->redis_checks_ = std::make_unique<FreeList<RedisCheck>>();
  if (settings->deny_cache)
    lim->deny_cache_ = std::make_unique<DenyCache>(settings->deny_cache_size);
  if (settings->failure_mode == redis::FailureMode::local) {
    lim->local_ = std::make_unique<MemoryStore>(mc);
    lim->leases_ = std::make_unique<LeaseTable>(mc.max_keys);
  }
  lim->max_async_ = settings->max_async;
  lim->settings_ = std::move(settings);
  out = std::move(lim);
  return Errc::ok;
}

namespace {
// A refund gives back at most 2^53 - 1 units: exact in Redis Lua's doubles.
constexpr int64_t kMinCost = -((int64_t{1} << 53) - 1);

[[gnu::cold, gnu::noinline]] Errc nothing_to_refund() {
  return fail(Errc::not_found,
              "refund: nothing to give back: the key has no usage under any "
              "of its policies (never charged, given back already, or "
              "refilled)");
}

// The error path of Limiter::validate, out of line: names the first problem.
[[gnu::cold, gnu::noinline]] Errc invalid_check(
    std::string_view key, std::span<const Policy> policies, int64_t cost,
    uint32_t max_key_len) {
  if (key.empty()) return fail(Errc::key_invalid, "key: must not be empty");
  if (key.size() > max_key_len)
    return fail(Errc::key_too_long, "key: " + std::to_string(key.size()) +
                                        " bytes exceeds max_key_len " +
                                        std::to_string(max_key_len));
  if (policies.empty() || policies.size() > kMaxPoliciesPerCheck)
    return fail(Errc::invalid_arg, "policies: expected 1 to 16 policies, got " +
                                       std::to_string(policies.size()));
  if (cost < kMinCost)
    return fail(Errc::invalid_arg,
                "cost: a refund gives back at most 2^53 - 1 units (got " +
                    std::to_string(cost) + ")");
  for (size_t i = 0; i < policies.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      if (policies[i].id == policies[j].id)
        return fail(Errc::policy, "policies: policy " + std::to_string(i) +
                                      " repeats policy " + std::to_string(j));
      if (policies[i].name_id != 0 &&
          policies[i].name_id == policies[j].name_id)
        return fail(Errc::policy,
                    "policies: policy " + std::to_string(i) +
                        " has the name of policy " + std::to_string(j) + " ('" +
                        std::string(policy_name(policies[i])) + "')");
    }
  return Errc::internal;  // not reached: validate() found a problem
}

[[gnu::cold, gnu::noinline]] Errc clock_out_of_range(int64_t t) {
  return fail(Errc::overflow,
              "clock: time " + std::to_string(t) + " us is outside [0, 2^52)");
}
}  // namespace

Errc Limiter::validate(std::string_view key, std::span<const Policy> policies,
                       int64_t cost) {
  bool ok = !key.empty() && key.size() <= max_key_len_ && !policies.empty() &&
            policies.size() <= kMaxPoliciesPerCheck && cost >= kMinCost;
  for (size_t i = 1; ok && i < policies.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (policies[i].id == policies[j].id ||
          (policies[i].name_id != 0 &&
           policies[i].name_id == policies[j].name_id)) {
        ok = false;
        break;
      }
  if (ok) [[likely]]
    return Errc::ok;
  count_error();
  return invalid_check(key, policies, cost, max_key_len_);
}

Errc Limiter::now(int64_t &out) {
  out = clock_ ? clock_(clock_user_data_) : realtime_us();
  if (out < 0 || out >= kMaxTimeUs) [[unlikely]] {
    count_error();
    return clock_out_of_range(out);
  }
  return Errc::ok;
}

Errc Limiter::check_memory(std::string_view key,
                           std::span<const Policy> policies, int64_t cost,
                           Decision &out) {
  int64_t t = 0;
  Errc rc = now(t);
  if (rc != Errc::ok) return rc;
  // Filled by the store, which constructs outcomes[i] for each policy in
  // place. Raw storage, not `Outcome[16]`: State's member initialisers would
  // zero 16 * 24 bytes per check (Outcome is an implicit-lifetime type).
  alignas(Outcome) std::byte storage[sizeof(Outcome) * kMaxPoliciesPerCheck];
  Outcome *outcomes = reinterpret_cast<Outcome *>(storage);
  bool allowed;
  try {
    allowed = memory_->check(key, policies, t, cost, outcomes);
  } catch (const std::bad_alloc &) {
    count_error();
    return fail(Errc::nomem, "memory store: out of memory");
  }
  if (cost < 0) {
    // A refund: `allowed` says whether any policy had usage to give back.
    if (!allowed) {
      count_error();
      return nothing_to_refund();
    }
  }
  report_into(out, policies, outcomes, allowed);
  // checks, allowed and denied are counted by the store under its lock.
  return Errc::ok;
}

Errc Limiter::fallback(std::string_view key, std::span<const Policy> policies,
                       int64_t cost, Errc code, const std::string &message,
                       Decision &out) {
  if (!in_fallback_.load(std::memory_order_relaxed)) [[unlikely]]
    begin_fallback(message);
  CounterStripe &c = stripe();
  bump(c.store_errors);
  switch (settings_->failure_mode) {
    case redis::FailureMode::error:
      bump(c.errors);
      return fail(code, message);
    case redis::FailureMode::open:
      bump(c.fail_open);
      out = Decision{};
      out.allowed = true;
      out.limit = policies[0].limit;
      out.remaining = policies[0].limit;  // unknown: the store is away
      out.source = Source::fail_open;
      return Errc::ok;
    case redis::FailureMode::closed:
      bump(c.fail_closed);
      out = Decision{};
      out.allowed = false;
      out.limit = policies[0].limit;
      out.retry_after_us = kFailClosedRetryUs;
      out.source = Source::fail_closed;
      return Errc::ok;
    case redis::FailureMode::local:
      break;
  }
  bump(c.local_fallback);
  // Each of N servers allows limit / N while the shared store is away.
  Policy scaled[kMaxPoliciesPerCheck];
  for (size_t i = 0; i < policies.size(); ++i)
    scaled[i] = local_share(policies[i], settings_->local_divisor);
  Outcome outcomes[kMaxPoliciesPerCheck];
  bool allowed;
  try {
    allowed =
        local_->check(key, std::span<const Policy>(scaled, policies.size()),
                      realtime_us(), cost, outcomes);
  } catch (const std::bad_alloc &) {
    bump(c.errors);
    return fail(Errc::nomem, "local fallback: out of memory");
  }
  // A refund is allowed locally whether or not the local limiter had
  // usage to give back: it cannot know what the store had.
  if (cost < 0) allowed = true;
  out = reported(std::span<const Policy>(scaled, policies.size()), outcomes,
                 allowed);
  out.source = Source::local;
  return Errc::ok;
}

void Limiter::finish_redis(std::string_view key,
                           std::span<const Policy> policies, int64_t cost,
                           bool allowed, const void *outcomes_raw,
                           Decision &out) {
  const auto *outcomes = static_cast<const Outcome *>(outcomes_raw);
  out = reported(policies, outcomes, allowed);
  note_store_answer();
  CounterStripe &c = stripe();
  bump(c.checks);
  bump(allowed ? c.allowed : c.denied);
  if (!allowed && deny_cache_ && out.retry_after_us > 0 &&
      cacheable_denial(policies, out.retry_after_us)) {
    const int64_t now_ns = redis::monotonic_ns();
    deny_cache_->insert(key, policy_signature(policies),
                        cached_denial(out, cost, out.policy_index, now_ns),
                        now_ns);
  }
}

namespace {
[[gnu::cold, gnu::noinline]] Errc refuse_busy(uint64_t bound) {
  return fail(Errc::busy,
              "too many async calls in flight: " + std::to_string(bound) +
                  " already wait for the store (option max_async)");
}
}  // namespace

// One Redis check in flight: everything needed to finish it on the I/O
// thread after the caller's buffers are gone.
struct RedisCheck {
  Limiter *lim;
  std::string key;  // several keys: all of them, back to back
  Policy policies[kMaxPoliciesPerCheck];
  size_t n;
  int64_t cost;
  CheckCallback cb;
  void *user;
  bool counted;  // holds one of the limiter's max_async slots
  // Several keys (m >= 1; 0 for one key): pair j is the bytes of `key` up
  // to key_end[j] (from key_end[j - 1]) with counts[j] of `policies`.
  size_t m;
  uint32_t key_end[kMaxKeysPerCheck];
  uint8_t counts[kMaxKeysPerCheck];

  // The pairs, viewing this object's storage.
  std::span<const Limiter::KeyPolicies> items(
      Limiter::KeyPolicies (&out)[kMaxKeysPerCheck]) const {
    uint32_t from = 0;
    size_t at = 0;
    for (size_t j = 0; j < m; ++j) {
      out[j].key = std::string_view(key).substr(from, key_end[j] - from);
      out[j].policies = std::span<const Policy>(policies + at, counts[j]);
      from = key_end[j];
      at += counts[j];
    }
    return {out, m};
  }

  // Gives the object back to its limiter's stash when done.
  struct Release {
    void operator()(RedisCheck *c) const { c->lim->redis_checks_->give(c); }
  };

  static void done(void *ctx, redis::StoreCheck &r) {
    std::unique_ptr<RedisCheck, Release> self(static_cast<RedisCheck *>(ctx));
    if (self->m > 0) {
      done_keys(*self, r);
      return;
    }
    const std::span<const Policy> ps(self->policies, self->n);
    Decision d;
    Errc rc = Errc::ok;
    if (r.code == Errc::ok && self->cost < 0 && !r.allowed) {
      self->lim->count_error();
      rc = nothing_to_refund();
    } else if (r.code == Errc::ok) {
      self->lim->finish_redis(self->key, ps, self->cost, r.allowed, r.outcomes,
                              d);
    } else if (r.code == Errc::closed) {
      // rl_destroy with the call pending: an error, never a made-up answer.
      rc = fail(Errc::closed, r.message);
    } else {
      rc = self->lim->fallback(self->key, ps, self->cost, r.code, r.message, d);
    }
    if (self->counted) self->lim->finish_async();
    self->cb(self->user, rc, rc == Errc::ok ? &d : nullptr);
  }

  static void done_keys(RedisCheck &self, redis::StoreCheck &r) {
    Limiter::KeyPolicies storage[kMaxKeysPerCheck];
    const std::span<const Limiter::KeyPolicies> items = self.items(storage);
    Decision d;
    Errc rc = Errc::ok;
    if (r.code == Errc::ok && self.cost < 0 && !r.allowed) {
      self.lim->count_error();
      rc = nothing_to_refund();
    } else if (r.code == Errc::ok) {
      self.lim->finish_redis_keys(items, self.cost, r.allowed, r.outcomes, d);
    } else if (r.code == Errc::closed) {
      rc = fail(Errc::closed, r.message);
    } else {
      rc = self.lim->fallback_keys(items, self.cost, r.code, r.message, d);
    }
    if (self.counted) self.lim->finish_async();
    self.cb(self.user, rc, rc == Errc::ok ? &d : nullptr);
  }
};

Limiter::~Limiter() {
  // The transport answers pending checks (closed) before the rest goes.
  redis_.reset();
}

Errc Limiter::admit_async() {
  // Taken before the check is queued: a flood cannot overshoot the bound.
  const uint64_t before =
      async_pending_.fetch_add(1, std::memory_order_relaxed);
  if (max_async_ == 0 || before < max_async_) [[likely]]
    return Errc::ok;
  async_pending_.fetch_sub(1, std::memory_order_relaxed);
  async_refused_.fetch_add(1, std::memory_order_relaxed);
  count_error();
  return refuse_busy(max_async_);
}

Errc Limiter::check_async(std::string_view key,
                          std::span<const Policy> policies, int64_t cost,
                          CheckCallback cb, void *user) {
  return start_check(key, policies, cost, cb, user, false);
}

Errc Limiter::start_check(std::string_view key,
                          std::span<const Policy> policies, int64_t cost,
                          CheckCallback cb, void *user, bool blocking) {
  Errc rc = validate(key, policies, cost);
  if (rc != Errc::ok) return rc;
  Decision d;
  if (memory_) {
    rc = check_memory(key, policies, cost, d);
    if (rc != Errc::ok) return rc;
    cb(user, Errc::ok, &d);
    return Errc::ok;
  }
  int64_t t = 0;
  if (clock_) {
    rc = now(t);
    if (rc != Errc::ok) return rc;
  }
  if (deny_cache_ && cost < 0) {
    // A refund goes to the store, and the key's cached denial under these
    // policies goes: it may no longer hold.
    deny_cache_->erase(key, policy_signature(policies));
  } else if (deny_cache_) {
    const int64_t now_ns = redis::monotonic_ns();
    CachedDenial hit;
    if (deny_cache_->lookup(key, policy_signature(policies), cost, now_ns,
                            hit)) {
      CounterStripe &c = stripe();
      bump(c.checks);
      bump(c.denied);
      bump(c.deny_cache_hits);
      d = from_cache(hit, now_ns, 0);
      cb(user, Errc::ok, &d);
      return Errc::ok;
    }
  }
  std::unique_ptr<RedisCheck, RedisCheck::Release> ctx(redis_checks_->take());
  ctx->lim = this;
  ctx->counted = !blocking;
  ctx->key.assign(key.data(), key.size());
  std::copy(policies.begin(), policies.end(), ctx->policies);
  ctx->n = policies.size();
  ctx->m = 0;
  ctx->cost = cost;
  ctx->cb = cb;
  ctx->user = user;
  const int64_t deadline =
      redis::monotonic_ns() +
      static_cast<int64_t>(settings_->timeout_ms) * 1000000;
  // The slot is taken last, once nothing here can throw: the completion
  // gives it back.
  if (!blocking) {
    rc = admit_async();
    if (rc != Errc::ok) return rc;
  }
  redis_->check(key, policies, cost, t, deadline, &RedisCheck::done,
                ctx.release(), blocking);
  return Errc::ok;
}

namespace {
// A blocking check's meeting point with its completion. Shared: if the
// I/O thread were ever late (e.g. stuck resolving a host name), the caller
// gives up at its deadline and the completion later writes into live memory.
struct SyncDecision {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Errc code = Errc::ok;
  Decision d;
  std::string message;
};
void sync_decision_done(void *user, Errc code, const Decision *d) {
  auto *holder = static_cast<std::shared_ptr<SyncDecision> *>(user);
  std::shared_ptr<SyncDecision> s = std::move(*holder);
  delete holder;
  std::string msg = code == Errc::ok ? "" : last_error_message();
  std::lock_guard<std::mutex> lock(s->mu);
  s->code = code;
  if (d) s->d = *d;
  s->message = std::move(msg);
  s->done = true;
  s->cv.notify_one();
}
// How long past its deadline a blocking caller waits for the I/O thread's
// own answer before answering by the failure mode itself.
constexpr int64_t kSyncSlackMs = 100;
}  // namespace

Errc Limiter::check(std::string_view key, std::span<const Policy> policies,
                    int64_t cost, Decision &out) {
  if (memory_) {
    Errc rc = validate(key, policies, cost);
    if (rc != Errc::ok) return rc;
    return check_memory(key, policies, cost, out);
  }
  auto s = std::make_shared<SyncDecision>();
  auto *holder = new std::shared_ptr<SyncDecision>(s);
  Errc rc = start_check(key, policies, cost, sync_decision_done, holder,
                        /*blocking=*/true);
  if (rc != Errc::ok) {
    delete holder;  // the callback never runs on a validation error
    return rc;
  }
  // The transport answers every check by its deadline (it owns the
  // timers); the extra bound below only guards against a stalled thread.
  std::unique_lock<std::mutex> lock(s->mu);
  const bool answered = redis_->transport().wait(
      lock, s->cv,
      redis::monotonic_ns() + (settings_->timeout_ms + kSyncSlackMs) * 1000000,
      [&] { return s->done; });
  if (!answered) {
    lock.unlock();
    return fallback(key, policies, cost, Errc::timeout,
                    "timeout: no answer from the store's I/O thread before "
                    "the deadline",
                    out);
  }
  if (s->code != Errc::ok) return fail(s->code, s->message);
  out = s->d;
  return Errc::ok;
}

// ---- several keys in one decision ------------------------------------------

Errc Limiter::validate_keys(std::span<const KeyPolicies> items, int64_t cost) {
  if (items.empty() || items.size() > kMaxKeysPerCheck) {
    count_error();
    return fail(Errc::invalid_arg,
                "keys: expected 1 to " + std::to_string(kMaxKeysPerCheck) +
                    " keys, got " + std::to_string(items.size()));
  }
  size_t total = 0;
  for (size_t j = 0; j < items.size(); ++j) {
    const Errc rc = validate(items[j].key, items[j].policies, cost);
    if (rc != Errc::ok)
      return fail(rc,
                  "keys[" + std::to_string(j) + "]: " + last_error_message());
    total += items[j].policies.size();
    for (size_t i = 0; i < j; ++i)
      if (items[i].key == items[j].key) {
        count_error();
        return fail(Errc::invalid_arg,
                    "keys: key " + std::to_string(j) + " repeats key " +
                        std::to_string(i) +
                        " (give one key all its policies in one pair)");
      }
  }
  if (total > kMaxPoliciesPerCheck) {
    count_error();
    return fail(Errc::invalid_arg,
                "policies: at most " + std::to_string(kMaxPoliciesPerCheck) +
                    " in all the pairs, got " + std::to_string(total));
  }
  return Errc::ok;
}

namespace {
// The pairs' policies, pair by pair (a decision's policy_index counts them
// so). Returns how many.
size_t flatten(std::span<const Limiter::KeyPolicies> items, Policy *out) {
  size_t n = 0;
  for (const Limiter::KeyPolicies &it : items)
    for (const Policy &p : it.policies) out[n++] = p;
  return n;
}
}  // namespace

void Limiter::finish_redis_keys(std::span<const KeyPolicies> items,
                                int64_t cost, bool allowed,
                                const void *outcomes_raw, Decision &out) {
  Policy flat[kMaxPoliciesPerCheck];
  const size_t n = flatten(items, flat);
  const auto *outcomes = static_cast<const Outcome *>(outcomes_raw);
  out = reported(std::span<const Policy>(flat, n), outcomes, allowed);
  note_store_answer();
  CounterStripe &c = stripe();
  bump(c.checks);
  bump(allowed ? c.allowed : c.denied);
  if (allowed || !deny_cache_ || out.retry_after_us <= 0) return;
  for (const KeyPolicies &it : items)
    if (!cacheable_denial(it.policies, out.retry_after_us)) return;
  // The reported pair's denial holds for that pair alone, in any check of
  // it: cached under its key and policies, with its own policy index.
  size_t first = 0;
  for (const KeyPolicies &it : items) {
    if (out.policy_index < first + it.policies.size()) {
      const int64_t now_ns = redis::monotonic_ns();
      deny_cache_->insert(
          it.key, policy_signature(it.policies),
          cached_denial(out, cost,
                        static_cast<uint32_t>(out.policy_index - first),
                        now_ns),
          now_ns);
      return;
    }
    first += it.policies.size();
  }
}

Errc Limiter::fallback_keys(std::span<const KeyPolicies> items, int64_t cost,
                            Errc code, const std::string &message,
                            Decision &out) {
  Policy flat[kMaxPoliciesPerCheck];
  const size_t n = flatten(items, flat);
  if (settings_->failure_mode != redis::FailureMode::local)
    return fallback(items[0].key, std::span<const Policy>(flat, n), cost, code,
                    message, out);
  if (!in_fallback_.load(std::memory_order_relaxed)) [[unlikely]]
    begin_fallback(message);
  CounterStripe &c = stripe();
  bump(c.store_errors);
  bump(c.local_fallback);
  Policy scaled[kMaxPoliciesPerCheck];
  KeyPolicies local_items[kMaxKeysPerCheck];
  size_t at = 0;
  for (size_t j = 0; j < items.size(); ++j) {
    for (size_t i = 0; i < items[j].policies.size(); ++i)
      scaled[at + i] =
          local_share(items[j].policies[i], settings_->local_divisor);
    local_items[j].key = items[j].key;
    local_items[j].policies =
        std::span<const Policy>(scaled + at, items[j].policies.size());
    at += items[j].policies.size();
  }
  Outcome outcomes[kMaxPoliciesPerCheck];
  bool allowed;
  try {
    allowed = local_->check_many(
        std::span<const KeyPolicies>(local_items, items.size()), realtime_us(),
        cost, outcomes);
  } catch (const std::bad_alloc &) {
    bump(c.errors);
    return fail(Errc::nomem, "local fallback: out of memory");
  }
  if (cost < 0) allowed = true;
  out = reported(std::span<const Policy>(scaled, n), outcomes, allowed);
  out.source = Source::local;
  return Errc::ok;
}

Errc Limiter::check_keys_async(std::span<const KeyPolicies> items, int64_t cost,
                               CheckCallback cb, void *user) {
  return start_check_keys(items, cost, cb, user, false);
}

Errc Limiter::start_check_keys(std::span<const KeyPolicies> items, int64_t cost,
                               CheckCallback cb, void *user, bool blocking) {
  Errc rc = validate_keys(items, cost);
  if (rc != Errc::ok) return rc;
  Decision d;
  if (memory_) {
    rc = check_keys(items, cost, d);
    if (rc != Errc::ok) return rc;
    cb(user, Errc::ok, &d);
    return Errc::ok;
  }
  if (!redis_->same_slot(items)) {
    count_error();
    return fail(Errc::unsupported,
                "keys: on a Redis Cluster the keys of one check must share a "
                "slot: start them with the same {tag}, as in "
                "\"{user:1}:global\" and \"{user:1}:login\"");
  }
  int64_t t = 0;
  if (clock_) {
    rc = now(t);
    if (rc != Errc::ok) return rc;
  }
  if (deny_cache_) {
    const int64_t now_ns = redis::monotonic_ns();
    size_t first = 0;
    for (const KeyPolicies &it : items) {
      const uint64_t sig = policy_signature(it.policies);
      CachedDenial hit;
      if (cost < 0) {
        deny_cache_->erase(it.key, sig);
      } else if (deny_cache_->lookup(it.key, sig, cost, now_ns, hit)) {
        // One pair denies: the whole check is denied, from the cache.
        CounterStripe &c = stripe();
        bump(c.checks);
        bump(c.denied);
        bump(c.deny_cache_hits);
        d = from_cache(hit, now_ns, first);
        cb(user, Errc::ok, &d);
        return Errc::ok;
      }
      first += it.policies.size();
    }
  }
  std::unique_ptr<RedisCheck, RedisCheck::Release> ctx(redis_checks_->take());
  ctx->lim = this;
  ctx->counted = !blocking;
  ctx->key.clear();
  ctx->n = 0;
  ctx->m = items.size();
  for (size_t j = 0; j < items.size(); ++j) {
    ctx->key.append(items[j].key);
    ctx->key_end[j] = static_cast<uint32_t>(ctx->key.size());
    ctx->counts[j] = static_cast<uint8_t>(items[j].policies.size());
    for (const Policy &p : items[j].policies) ctx->policies[ctx->n++] = p;
  }
  ctx->cost = cost;
  ctx->cb = cb;
  ctx->user = user;
  const int64_t deadline =
      redis::monotonic_ns() +
      static_cast<int64_t>(settings_->timeout_ms) * 1000000;
  // The slot is taken last, once nothing here can throw: the completion
  // gives it back.
  if (!blocking) {
    rc = admit_async();
    if (rc != Errc::ok) return rc;
  }
  redis_->check_many(items, cost, t, deadline, &RedisCheck::done, ctx.release(),
                     blocking);
  return Errc::ok;
}

Errc Limiter::check_keys(std::span<const KeyPolicies> items, int64_t cost,
                         Decision &out) {
  if (memory_) {
    Errc rc = validate_keys(items, cost);
    if (rc != Errc::ok) return rc;
    int64_t t = 0;
    rc = now(t);
    if (rc != Errc::ok) return rc;
    alignas(Outcome) std::byte storage[sizeof(Outcome) * kMaxPoliciesPerCheck];
    Outcome *outcomes = reinterpret_cast<Outcome *>(storage);
    bool allowed;
    try {
      allowed = memory_->check_many(items, t, cost, outcomes);
    } catch (const std::bad_alloc &) {
      count_error();
      return fail(Errc::nomem, "memory store: out of memory");
    }
    if (cost < 0 && !allowed) {
      count_error();
      return nothing_to_refund();
    }
    Policy flat[kMaxPoliciesPerCheck];
    const size_t n = flatten(items, flat);
    report_into(out, std::span<const Policy>(flat, n), outcomes, allowed);
    return Errc::ok;
  }
  auto s = std::make_shared<SyncDecision>();
  auto *holder = new std::shared_ptr<SyncDecision>(s);
  Errc rc = start_check_keys(items, cost, sync_decision_done, holder,
                             /*blocking=*/true);
  if (rc != Errc::ok) {
    delete holder;
    return rc;
  }
  std::unique_lock<std::mutex> lock(s->mu);
  const bool answered = redis_->transport().wait(
      lock, s->cv,
      redis::monotonic_ns() + (settings_->timeout_ms + kSyncSlackMs) * 1000000,
      [&] { return s->done; });
  if (!answered) {
    lock.unlock();
    return fallback_keys(items, cost, Errc::timeout,
                         "timeout: no answer from the store's I/O thread "
                         "before the deadline",
                         out);
  }
  if (s->code != Errc::ok) return fail(s->code, s->message);
  out = s->d;
  return Errc::ok;
}

Errc Limiter::validate_key(std::string_view key) {
  Errc rc = Errc::ok;
  if (key.empty())
    rc = fail(Errc::key_invalid, "key: must not be empty");
  else if (key.size() > max_key_len_)
    rc = fail(Errc::key_too_long, "key: " + std::to_string(key.size()) +
                                      " bytes exceeds max_key_len " +
                                      std::to_string(max_key_len_));
  if (rc != Errc::ok) count_error();
  return rc;
}

Errc Limiter::block(std::string_view key, int64_t duration_ms) {
  Errc rc = validate_key(key);
  if (rc != Errc::ok) return rc;
  if (duration_ms < 1 || duration_ms > kMaxPeriodMs) {
    count_error();
    return fail(Errc::invalid_arg,
                "block: the duration must be 1 ms to 2^40 "
                "ms (got " +
                    std::to_string(duration_ms) + ")");
  }
  const int64_t duration_us = duration_ms * 1000;
  try {
    if (memory_) {
      int64_t t = 0;
      rc = now(t);
      if (rc != Errc::ok) return rc;
      memory_->block(key, t + duration_us, t);
      return Errc::ok;
    }
    if (local_) {
      const int64_t t = realtime_us();
      local_->block(key, t + duration_us, t);
    }
  } catch (const std::bad_alloc &) {
    count_error();
    return fail(Errc::nomem, "block: out of memory");
  }
  int64_t t = 0;
  if (clock_) {
    rc = now(t);
    if (rc != Errc::ok) return rc;
  }
  const int64_t deadline =
      redis::monotonic_ns() +
      static_cast<int64_t>(settings_->timeout_ms) * 1000000;
  rc = redis_->block(key, duration_us, t, deadline);
  // A shorter block than a cached denial says must be seen at once.
  if (deny_cache_) deny_cache_->erase_key(key);
  if (rc != Errc::ok) count_error();
  return rc;
}

Errc Limiter::unblock(std::string_view key) {
  Errc rc = validate_key(key);
  if (rc != Errc::ok) return rc;
  if (memory_) {
    int64_t t = 0;
    rc = now(t);
    if (rc != Errc::ok) return rc;
    memory_->unblock(key, t);
    return Errc::ok;
  }
  if (local_) local_->unblock(key, realtime_us());
  const int64_t deadline =
      redis::monotonic_ns() +
      static_cast<int64_t>(settings_->timeout_ms) * 1000000;
  rc = redis_->unblock(key, deadline);
  // After the store's, so that a denial cached meanwhile goes too.
  if (deny_cache_) deny_cache_->erase_key(key);
  if (rc != Errc::ok) count_error();
  return rc;
}

Errc Limiter::reset(std::string_view key) {
  Errc rc = validate_key(key);
  if (rc != Errc::ok) return rc;
  if (leases_) leases_->reset(key);
  if (memory_) {
    memory_->reset(key);
    return Errc::ok;
  }
  if (local_) local_->reset(key);
  const int64_t deadline =
      redis::monotonic_ns() +
      static_cast<int64_t>(settings_->timeout_ms) * 1000000;
  rc = redis_->reset(key, deadline);
  // After the store's reset, so that a denial cached meanwhile goes too.
  if (deny_cache_) deny_cache_->erase_key(key);
  if (rc != Errc::ok) count_error();
  return rc;
}

Errc Limiter::ping(int64_t &rtt_us) {
  if (memory_) {
    rtt_us = 0;
    return Errc::ok;
  }
  const int64_t deadline = redis::monotonic_ns() +
                           static_cast<int64_t>(settings_->connect_timeout_ms +
                                                settings_->timeout_ms) *
                               1000000;
  return redis_->ping(deadline, rtt_us);
}

Errc Limiter::loop_open(int &fd) {
  fd = -1;
  if (memory_)
    return fail(Errc::unsupported,
                "loop: the memory store has no connection to drive");
  if (redis_->transport().tls())
    return fail(Errc::unsupported,
                "loop: a TLS connection stays on the I/O thread");
  fd = redis_->transport().host_open();
  if (fd < 0)
    return fail(Errc::busy,
                "loop: the I/O thread has started, or another thread drives "
                "the connection");
  return Errc::ok;
}

Errc Limiter::loop_turn(int64_t &next_us, bool idle) {
  next_us = -1;
  if (memory_)
    return fail(Errc::unsupported,
                "loop: the memory store has no connection to drive");
  const int64_t next = redis_->transport().host_turn(idle);
  if (next == redis::Transport::kHostGone)
    return fail(Errc::closed,
                "loop: this thread no longer drives the connection");
  if (next == INT64_MAX) return Errc::ok;
  const int64_t left = next - redis::monotonic_ns();
  next_us = left <= 0 ? 0 : (left + 999) / 1000;
  return Errc::ok;
}

Errc Limiter::loop_close() {
  if (memory_)
    return fail(Errc::unsupported,
                "loop: the memory store has no connection to drive");
  redis_->transport().host_close();
  return Errc::ok;
}

Errc Limiter::open_keys(std::span<const Policy> policies,
                        std::string_view pattern,
                        std::unique_ptr<KeyIterator> &out) {
  if (memory_)
    return fail(Errc::unsupported,
                "keys: the memory store does not list keys (the Redis store "
                "does)");
  if (policies.empty() || policies.size() > kMaxPoliciesPerCheck)
    return fail(Errc::invalid_arg, "policies: expected 1 to 16 policies, got " +
                                       std::to_string(policies.size()));
  out = std::make_unique<KeyIterator>(*this, policies, pattern);
  return Errc::ok;
}

void Limiter::count_error() noexcept {
  bump(stripe().errors);
}

void Limiter::count_shadow() noexcept {
  bump(stripe().shadow_denied);
}

void Limiter::count_list(bool allowed) noexcept {
  CounterStripe &c = stripe();
  bump(c.checks);
  bump(allowed ? c.allowed : c.denied);
  bump(allowed ? c.list_allowed : c.list_denied);
}

Health Limiter::health() const {
  Health h;
  h.async_pending = async_pending_.load(std::memory_order_relaxed);
  h.async_refused = async_refused_.load(std::memory_order_relaxed);
  for (const CounterStripe &c : counters_) {
    h.errors += c.errors.load(std::memory_order_relaxed);
    h.checks += c.checks.load(std::memory_order_relaxed);
    h.allowed += c.allowed.load(std::memory_order_relaxed);
    h.denied += c.denied.load(std::memory_order_relaxed);
    h.store_errors += c.store_errors.load(std::memory_order_relaxed);
    h.fail_open += c.fail_open.load(std::memory_order_relaxed);
    h.fail_closed += c.fail_closed.load(std::memory_order_relaxed);
    h.local_fallback += c.local_fallback.load(std::memory_order_relaxed);
    h.deny_cache_hits += c.deny_cache_hits.load(std::memory_order_relaxed);
    h.shadow_denied += c.shadow_denied.load(std::memory_order_relaxed);
    h.list_allowed += c.list_allowed.load(std::memory_order_relaxed);
    h.list_denied += c.list_denied.load(std::memory_order_relaxed);
  }
  if (memory_) {
    h.store_kind = StoreKind::memory;
    const MemoryStoreStats s = memory_->stats();
    h.checks += s.checks;
    h.allowed += s.allowed;
    h.denied += s.denied;
    h.live_keys = s.live_keys;
    h.evictions = s.evictions;
    return h;
  }
  h.store_kind = StoreKind::redis;
  // Failure-mode answers are checks too.
  h.checks += h.fail_open + h.fail_closed + h.local_fallback;
  h.allowed += h.fail_open;
  h.denied += h.fail_closed;
  if (local_) {
    const MemoryStoreStats s = local_->stats();
    h.allowed += s.allowed;
    h.denied += s.denied;
  }
  const redis::TransportStats t = redis_->stats();
  h.connection = static_cast<int32_t>(t.state);
  h.in_flight = t.in_flight;
  h.reconnects = t.reconnects;
  h.last_ping_us = t.last_ping_us;
  h.server_version = t.server_version;
  h.last_error = t.last_error;
  h.topology = 1 + static_cast<int32_t>(settings_->topology);
  for (const redis::NodeStats &s : t.nodes)
    h.nodes.push_back(NodeHealth{
        s.address, s.primary, s.started, static_cast<int32_t>(s.state),
        s.in_flight, s.failures, s.reconnects, s.last_error, s.rtt});
  if (t.nodes.empty())  // standalone: the one server
    h.nodes.push_back(NodeHealth{
        settings_->unix_socket
            ? settings_->path
            : settings_->host + ":" + std::to_string(settings_->port),
        true, true, static_cast<int32_t>(t.state), t.in_flight, t.failures,
        t.reconnects, t.last_error, t.rtt});
  h.slot_map_age_ms = t.slot_map_age_ms;
  h.slot_map_refreshes = t.slot_map_refreshes;
  h.moved = t.moved;
  h.ask = t.ask;
  h.master_switches = t.master_switches;
  return h;
}

KeyIterator::KeyIterator(Limiter &limiter, std::span<const Policy> policies,
                         std::string_view pattern)
    : limiter_(limiter),
      policies_(policies.begin(), policies.end()),
      pattern_(pattern) {}
KeyIterator::~KeyIterator() = default;

Errc KeyIterator::next(const redis::KeyEntry *&entry) {
  while (pos_ >= page_.size()) {
    if (started_ && cursor_ == "0") return Errc::done;
    started_ = true;
    page_.clear();
    pos_ = 0;
    int64_t t = 0;
    if (limiter_.clock_) {
      Errc rc = limiter_.now(t);
      if (rc != Errc::ok) return rc;
    }
    const int64_t deadline =
        redis::monotonic_ns() +
        static_cast<int64_t>(limiter_.settings_->timeout_ms) * 1000000;
    Errc rc = limiter_.redis_->scan_page(cursor_, page_, policies_, pattern_, t,
                                         deadline);
    if (rc != Errc::ok) return rc;
  }
  entry = &page_[pos_++];
  return Errc::ok;
}

}  // namespace tollgate
