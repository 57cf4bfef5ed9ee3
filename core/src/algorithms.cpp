#include "tollgate/algorithms.hpp"

#include <algorithm>

namespace tollgate {
namespace {

// Floor division for a possibly negative numerator and positive divisor.
int64_t floor_div(int64_t a, int64_t b) noexcept {
  int64_t q = a / b;
  if ((a % b != 0) && (a < 0)) --q;
  return q;
}

// How many windows ahead a stored window may lie and still be read as the
// clock having stepped back: one, or as many as fit in kMaxClockStepUs. A
// window further ahead belongs to another period (the policy changed).
int64_t max_ahead(int64_t P) noexcept {
  return std::max<int64_t>(1, kMaxClockStepUs / P);
}

Outcome gcra(const Policy &p, const State *s, int64_t now, int64_t cost) {
  const int64_t T = p.interval_us;
  const int64_t tau = p.capacity * T;
  int64_t base = s ? std::max(s->a, now) : now;
  Outcome o{};
  // Before this check's charge; an allowed charge overwrites both below, so
  // that path makes one division, not two.
  auto report_current = [&] {
    o.remaining = std::max<int64_t>(0, floor_div(now + tau - base, T));
    o.reset_after_us = base - now;
  };
  if (cost < 0) {
    // A refund: the debt shrinks by -cost cells, never below none.
    o.allowed = true;
    if (base > now) {
      const int64_t back =
          -cost >= (base - now + T - 1) / T ? base - now : -cost * T;
      base -= back;
      o.write = true;
      o.next.a = base;
      o.expires_at_us = base;
    }
    report_current();
    return o;
  }
  if (cost > p.capacity) {
    report_current();
    o.retry_after_us = kRetryNever;
    return o;
  }
  const int64_t n = cost == 0 ? 1 : cost;
  const int64_t allow_at = base + n * T - tau;
  if (now < allow_at) {
    report_current();
    o.retry_after_us = allow_at - now;
    return o;
  }
  o.allowed = true;
  if (cost == 0) {
    report_current();
    return o;
  }
  const int64_t new_tat = base + cost * T;
  o.write = true;
  o.next.a = new_tat;
  o.expires_at_us = new_tat;
  o.remaining = floor_div(now + tau - new_tat, T);
  o.reset_after_us = new_tat - now;
  return o;
}

Outcome fixed_window(const Policy &p, const State *s, int64_t now,
                     int64_t cost) {
  const int64_t P = p.period_us;
  int64_t w = now / P;
  int64_t count = 0;
  // The same window, or a newer one not far ahead (the clock stepped back).
  // Any other stored window is of the past, or of another period (the
  // policy changed): its count does not carry.
  if (s && (s->a == w || (s->a > w && s->a - w <= max_ahead(P)))) {
    w = s->a;
    count = s->b;
  }
  const int64_t end = (w + 1) * P;
  Outcome o{};
  if (cost < 0 && count > 0) {
    // A refund: the window's count goes down by -cost, never below 0.
    count = -cost >= count ? 0 : count + cost;
    o.write = true;
    o.next.a = w;
    o.next.b = count;
    o.expires_at_us = end;
  }
  o.remaining = std::max<int64_t>(0, p.limit - count);
  o.reset_after_us = count > 0 ? end - now : 0;
  if (cost < 0) {
    o.allowed = true;
    return o;
  }
  if (cost > p.limit) {
    o.retry_after_us = kRetryNever;
    return o;
  }
  const int64_t need = cost == 0 ? 1 : cost;
  if (count + need > p.limit) {
    o.retry_after_us = end - now;
    return o;
  }
  o.allowed = true;
  if (cost == 0) return o;
  count += cost;
  o.write = true;
  o.next.a = w;
  o.next.b = count;
  o.expires_at_us = end;
  o.remaining = p.limit - count;
  o.reset_after_us = end - now;
  return o;
}

Outcome sliding_window(const Policy &p, const State *s, int64_t now,
                       int64_t cost) {
  const int64_t P = p.period_us;
  const int64_t Pm = p.period_ms;
  int64_t w = now / P;
  int64_t curr = 0, prev = 0;
  if (s) {
    if (s->a == w) {
      curr = s->b;
      prev = s->c;
    } else if (s->a == w - 1) {
      prev = s->b;
    } else if (s->a > w && s->a - w <= max_ahead(P)) {
      // The clock stepped back: stay in the stored window.
      w = s->a;
      curr = s->b;
      prev = s->c;
    }
  }
  // Evaluate from the stored window's start if the clock is behind it, but
  // measure every duration from the real `now`.
  const int64_t real_now = now;
  now = std::max(now, w * P);
  const int64_t start = w * P;
  const int64_t end = start + P;
  const int64_t rem = Pm - (now - start) / 1000;  // 1 .. Pm
  const int64_t cap = p.limit * Pm;
  Outcome o{};
  if (cost < 0 && curr + prev > 0) {
    // A refund: -cost units back from the current window's count, then
    // from the previous one's, never below 0.
    const int64_t from_curr = std::min(-cost, curr);
    curr -= from_curr;
    prev -= std::min(-cost - from_curr, prev);
    o.write = true;
    o.next.a = w;
    o.next.b = curr;
    o.next.c = prev;
    o.expires_at_us = end + P;
  }
  const int64_t used = prev * rem + curr * Pm;
  auto fits = [&](int64_t c) { return used + c * Pm <= cap; };
  auto wait = [&](int64_t c) -> int64_t {
    const int64_t S = cap - (curr + c) * Pm;
    if (S >= 0) {
      const int64_t r = S / prev;  // prev > 0 here, or fits(c) held
      return start + (Pm - r) * 1000 - real_now;
    }
    // curr > 0 here (else c > limit, refused earlier). r2 < Pm always holds
    // when S < 0, so the wait runs into the next window.
    const int64_t r2 = (cap - c * Pm) / curr;
    return end + (Pm - r2) * 1000 - real_now;
  };
  auto reset_after = [&](int64_t cur) -> int64_t {
    if (cur > 0) return end + P - real_now;
    if (prev > 0) return end - real_now;
    return 0;
  };
  o.remaining = std::max<int64_t>(0, (cap - used) / Pm);
  o.reset_after_us = reset_after(curr);
  if (cost < 0) {
    o.allowed = true;
    return o;
  }
  if (cost > p.limit) {
    o.retry_after_us = kRetryNever;
    return o;
  }
  const int64_t need = cost == 0 ? 1 : cost;
  if (!fits(need)) {
    o.retry_after_us = wait(need);
    return o;
  }
  o.allowed = true;
  if (cost == 0) return o;
  curr += cost;
  o.write = true;
  o.next.a = w;
  o.next.b = curr;
  o.next.c = prev;
  o.expires_at_us = end + P;
  o.remaining = std::max<int64_t>(0, (cap - prev * rem - curr * Pm) / Pm);
  o.reset_after_us = reset_after(curr);
  return o;
}

}  // namespace

Outcome evaluate(const Policy &policy, const State *stored, int64_t now,
                 int64_t cost) noexcept {
  switch (policy.algorithm) {
    case Algorithm::gcra:
    case Algorithm::token_bucket:
      // The token bucket's state is the time it is full again, which is
      // GCRA's tat: the two make the same decisions (docs/algorithms.md).
      return gcra(policy, stored, now, cost);
    case Algorithm::fixed_window:
      return fixed_window(policy, stored, now, cost);
    case Algorithm::sliding_window:
      return sliding_window(policy, stored, now, cost);
  }
  return Outcome{};
}

Strike strike(const Policy &p, const State *stored, int64_t now) noexcept {
  Strike s{};
  if (p.strikes <= 1) {
    s.block = true;
    return s;
  }
  const int64_t T = p.strike_period_us;
  const int64_t w = now / T;
  // A count of another window (older, or ahead after a clock step) is over.
  const int64_t count = (stored && stored->a == w ? stored->b : 0) + 1;
  s.write = true;
  s.next.a = w;
  s.expires_at_us = (w + 1) * T;
  if (count >= p.strikes) {
    s.block = true;  // the count starts again
  } else {
    s.next.b = count;
  }
  return s;
}

}  // namespace tollgate
