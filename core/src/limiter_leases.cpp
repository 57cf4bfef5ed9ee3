// Concurrency leases (docs/leases.md): the limiter's side. The memory store
// keeps them in a LeaseTable; Redis in a sorted set per key (the lease
// script), scored by the time each lease ends on the server's clock.
#include <cstdio>

#include "tollgate/clock.hpp"
#include "tollgate/limiter.hpp"
#include "tollgate/redis/redis_store.hpp"
#include "tollgate/redis/url.hpp"

namespace tollgate {
namespace {

// How long a fail-closed denial tells the caller to wait (as for checks).
constexpr int64_t kLeaseClosedRetryUs = 1'000'000;

// A bijection of 64-bit integers (splitmix64's finalizer): consecutive
// sequence numbers give unrelated-looking, distinct ids.
uint64_t mix(uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::string id_text(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx",
                static_cast<unsigned long long>(id));
  return std::string(buf, 16);
}

int64_t deadline_after(uint32_t timeout_ms) {
  return redis::monotonic_ns() + static_cast<int64_t>(timeout_ms) * 1000000;
}

Errc not_held() {
  return fail(Errc::not_found, "lease: not held (it expired or was released)");
}

Errc check_ttl(int64_t ttl_ms) {
  if (ttl_ms >= 1 && ttl_ms <= kMaxPeriodMs) return Errc::ok;
  return fail(Errc::invalid_arg, "lease: ttl must be 1 ms to 2^40 ms (got " +
                                     std::to_string(ttl_ms) + ")");
}

}  // namespace

Errc Limiter::lease_acquire(std::string_view key, int64_t max, int64_t ttl_ms,
                            LeaseOutcome &out, Source &source, Lease &lease) {
  Errc rc = validate_key(key);
  if (rc != Errc::ok) return rc;
  if (max < 1 || max > kMaxInFlight) {
    count_error();
    return fail(Errc::invalid_arg,
                "lease: max_in_flight must be 1 to 1000000 (got " +
                    std::to_string(max) + ")");
  }
  rc = check_ttl(ttl_ms);
  if (rc != Errc::ok) {
    count_error();
    return rc;
  }
  const int64_t ttl_us = ttl_ms * 1000;
  const uint64_t id = mix(lease_base_ + lease_seq_.fetch_add(1));
  source = Source::store;
  lease = Lease{};
  if (memory_) {
    int64_t t = 0;
    rc = now(t);
    if (rc != Errc::ok) return rc;
    if (!leases_->acquire(key, id, max, t + ttl_us, t, out)) {
      count_error();
      return fail(Errc::nomem,
                  "lease: max_keys keys hold leases already (the memory "
                  "store's bound)");
    }
  } else {
    int64_t t = 0;
    if (clock_) {
      rc = now(t);
      if (rc != Errc::ok) return rc;
    }
    std::vector<int64_t> v;
    rc = redis_->lease('a', key, id_text(id), max, ttl_us, t,
                       deadline_after(settings_->timeout_ms), v);
    if (rc == Errc::closed) return rc;
    if (rc != Errc::ok)
      return lease_fallback(key, max, ttl_us, rc, out, source, lease);
    out = LeaseOutcome{};
    out.acquired = v[0] == 1;
    out.in_flight = v[1];
    if (!out.acquired) out.retry_after_us = v[2];
  }
  if (out.acquired) lease = Lease{std::string(key), id, LeaseWhere::store};
  return Errc::ok;
}

Errc Limiter::lease_fallback(std::string_view key, int64_t max, int64_t ttl_us,
                             Errc code, LeaseOutcome &out, Source &source,
                             Lease &lease) {
  CounterStripe &c = stripe();
  c.store_errors.fetch_add(1, std::memory_order_relaxed);
  out = LeaseOutcome{};
  switch (settings_->failure_mode) {
    case redis::FailureMode::error:
      c.errors.fetch_add(1, std::memory_order_relaxed);
      return code;  // its message is recorded already
    case redis::FailureMode::open:
      c.fail_open.fetch_add(1, std::memory_order_relaxed);
      out.acquired = true;
      source = Source::fail_open;
      lease = Lease{std::string(key), 0, LeaseWhere::unstored};
      return Errc::ok;
    case redis::FailureMode::closed:
      c.fail_closed.fetch_add(1, std::memory_order_relaxed);
      out.retry_after_us = kLeaseClosedRetryUs;
      source = Source::fail_closed;
      return Errc::ok;
    case redis::FailureMode::local:
      break;
  }
  c.local_fallback.fetch_add(1, std::memory_order_relaxed);
  source = Source::local;
  // Each of N processes holds at most its share while the store is away.
  const int64_t share = std::max<int64_t>(
      1, max / static_cast<int64_t>(settings_->local_divisor));
  const int64_t t = realtime_us();
  const uint64_t id = mix(lease_base_ + lease_seq_.fetch_add(1));
  if (!leases_->acquire(key, id, share, t + ttl_us, t, out)) {
    c.errors.fetch_add(1, std::memory_order_relaxed);
    return fail(Errc::nomem,
                "lease: max_keys keys hold local leases already (the local "
                "failure mode's bound)");
  }
  if (out.acquired) lease = Lease{std::string(key), id, LeaseWhere::local};
  return Errc::ok;
}

Errc Limiter::lease_renew(const Lease &lease, int64_t ttl_ms) {
  Errc rc = check_ttl(ttl_ms);
  if (rc != Errc::ok) {
    count_error();
    return rc;
  }
  const int64_t ttl_us = ttl_ms * 1000;
  bool held = true;
  switch (lease.where) {
    case LeaseWhere::unstored:
      return Errc::ok;  // granted by fail open: nothing to extend
    case LeaseWhere::local: {
      const int64_t t = realtime_us();
      held = leases_->renew(lease.key, lease.id, t + ttl_us, t);
      break;
    }
    case LeaseWhere::store:
      if (memory_) {
        int64_t t = 0;
        rc = now(t);
        if (rc != Errc::ok) return rc;
        held = leases_->renew(lease.key, lease.id, t + ttl_us, t);
        break;
      }
      int64_t t = 0;
      if (clock_) {
        rc = now(t);
        if (rc != Errc::ok) return rc;
      }
      std::vector<int64_t> v;
      rc = redis_->lease('r', lease.key, id_text(lease.id), 0, ttl_us, t,
                         deadline_after(settings_->timeout_ms), v);
      if (rc != Errc::ok) {
        count_error();
        return rc;
      }
      held = v[0] == 1;
      break;
  }
  return held ? Errc::ok : not_held();
}

uint64_t Limiter::release_count() {
  std::lock_guard<std::mutex> lock(release_mu_);
  return releases_;
}

void Limiter::sleep_until_release(std::chrono::steady_clock::time_point until,
                                  uint64_t seen) {
  std::unique_lock<std::mutex> lock(release_mu_);
  release_cv_.wait_until(lock, until, [&] { return releases_ != seen; });
}

void Limiter::signal_release() {
  {
    std::lock_guard<std::mutex> lock(release_mu_);
    ++releases_;
  }
  release_cv_.notify_all();
}

Errc Limiter::lease_release(const Lease &lease, bool &was_held) {
  // Whatever the outcome, a waiter may try again now: a slot may be free.
  struct Signal {
    Limiter &self;
    ~Signal() { self.signal_release(); }
  } signal{*this};
  was_held = true;
  switch (lease.where) {
    case LeaseWhere::unstored:
      return Errc::ok;
    case LeaseWhere::local:
      was_held = leases_->release(lease.key, lease.id, realtime_us());
      return Errc::ok;
    case LeaseWhere::store:
      break;
  }
  int64_t t = 0;
  Errc rc = Errc::ok;
  if (memory_ || clock_) {
    rc = now(t);
    if (rc != Errc::ok) return rc;
  }
  if (memory_) {
    was_held = leases_->release(lease.key, lease.id, t);
    return Errc::ok;
  }
  std::vector<int64_t> v;
  rc = redis_->lease('x', lease.key, id_text(lease.id), 0, 0, t,
                     deadline_after(settings_->timeout_ms), v);
  if (rc != Errc::ok) {
    count_error();
    return rc;
  }
  was_held = v[0] == 1;
  return Errc::ok;
}

}  // namespace tollgate
