#!/usr/bin/env python3
"""Reference model of docs/algorithms.md and generator of the shared vectors.

This file is independent of the C++ core: it is written from the integer
formulas in docs/algorithms.md only (Python ints, `//` floor division, time in
microseconds internally, durations reported in milliseconds rounded up).

    python3 tests/vectors/reference.py --write   # regenerate the *.json files
    python3 tests/vectors/reference.py --check   # exit 1 if they are stale
    python3 tests/vectors/reference.py           # same as --check

Every run also replays all scenarios through a set of self-checks (exact
retry_after and reset_after found by probing, GCRA == token bucket, fixed
window never admits more than `limit` per window, no value beyond 2^53, ...),
so a scenario that does not show what its name says fails loudly here
rather than producing a misleading vector.

The file format is described in README.md beside this file.
"""

import argparse
import ipaddress
import json
import os
import sys

FORMAT = 3
HERE = os.path.dirname(os.path.abspath(__file__))

RL_RETRY_NEVER = -1
ALGORITHMS = {"gcra": 0, "token_bucket": 1, "fixed_window": 2,
              "sliding_window": 3}
# Error names a vector may expect (tollgate.h).
ERRORS = {"RL_E_INVALID_ARG": -1, "RL_E_KEY_INVALID": -2, "RL_E_POLICY": -4,
          "RL_E_NOT_FOUND": -19}
# Which path answered a check (rl_decision.source); "store" is left out of
# an expectation.
SOURCES = ("store", "allow_list", "deny_list")
MAX_IN_FLIGHT = 1_000_000     # RL_MAX_IN_FLIGHT
MAX_LEASE_TTL_MS = 1 << 40    # RL_MAX_LEASE_TTL_MS

MAX_LIMIT = 1 << 40
MAX_PERIOD_MS = 1 << 40
MAX_BUCKET_SPAN = 1 << 50     # capacity * T (GCRA, token bucket), us
MAX_SLIDING_PRODUCT = 1 << 51  # limit * period_ms (sliding window)
MAX_NOW = 1 << 52             # memory store clock, exclusive, us
MAX_SAFE = (1 << 53) - 1      # every integer in a vector (JSON, JS, Lua)
MAX_NAME_LEN = 32             # RL_MAX_NAME_LEN
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "0123456789_.-")
# The shape of the state an algorithm keeps (a store keeps state per key,
# identity and shape; state of another shape is not read).
SHAPES = {"gcra": "time", "token_bucket": "time", "fixed_window": "fixed",
          "sliding_window": "sliding"}
# A stored window newer than now's is read as the clock having stepped back
# if it lies at most max(1, MAX_CLOCK_STEP_US // P) windows ahead; further
# ahead it is another period's index (the policy changed).
MAX_CLOCK_STEP_US = 3600 * 1000 * 1000


def ceil_div(a, b):
    return -(-a // b)


def us_to_ms(us):
    """A duration in us as reported in a decision: ms rounded up."""
    if us == RL_RETRY_NEVER:
        return RL_RETRY_NEVER
    assert us >= 0, us
    return ceil_div(us, 1000)


# --------------------------------------------------------------------------
# Policies


class Policy:
    def __init__(self, algorithm, limit, period_ms, burst=0, name=None,
                 block_ms=0, strikes=0, strikes_period_ms=0, shadow=False):
        assert algorithm in ALGORITHMS, algorithm
        # Shadow mode (docs/algorithms.md, "Shadow mode"): evaluated and
        # kept as if enforced, but its denial does not deny the check.
        self.shadow = shadow
        # A block (docs/algorithms.md, "Blocks"): a denial under this policy
        # blocks the key for block_ms, at the strikes-th denial within one
        # epoch-aligned strikes_period_ms window (no strikes: the first).
        assert 0 <= block_ms <= MAX_PERIOD_MS, block_ms
        assert (strikes == 0) == (strikes_period_ms == 0)
        assert strikes == 0 or block_ms > 0
        assert 0 <= strikes <= MAX_LIMIT and 0 <= strikes_period_ms <= MAX_PERIOD_MS
        self.block_ms, self.strikes = block_ms, strikes
        self.strikes_period_ms = strikes_period_ms
        self.algorithm = algorithm
        self.limit = limit
        self.period_ms = period_ms
        self.burst = burst
        self.name = name
        if name is not None:
            assert 1 <= len(name) <= MAX_NAME_LEN, name
            assert name[0].isascii() and name[0].isalpha(), name
            assert set(name) <= NAME_CHARS, name
        # Vectors hold only valid policies (invalid ones are the C tests'
        # business): check the bounds of docs/algorithms.md here.
        assert 1 <= limit <= MAX_LIMIT, limit
        assert 1 <= period_ms <= MAX_PERIOD_MS, period_ms
        assert 0 <= burst <= MAX_LIMIT, burst
        if algorithm in ("fixed_window", "sliding_window"):
            assert burst == 0, "windows take no burst"
        self.P = period_ms * 1000
        if algorithm in ("gcra", "token_bucket"):
            self.capacity = burst if burst != 0 else limit
            self.T = ceil_div(self.P, limit)
            assert self.capacity * self.T <= MAX_BUCKET_SPAN, self
        else:
            self.capacity = limit
        if algorithm == "sliding_window":
            assert limit * period_ms <= MAX_SLIDING_PRODUCT, self

    def ident(self):
        """The policy's parameters, name included: two policies of a list
        may not be equal in these."""
        return (self.algorithm, self.limit, self.period_ms, self.burst,
                self.name, self.block_ms, self.strikes,
                self.strikes_period_ms, self.shadow)

    @property
    def shape(self):
        return SHAPES[self.algorithm]

    def named(self, name):
        """This policy under a name."""
        return Policy(self.algorithm, self.limit, self.period_ms, self.burst,
                      name, self.block_ms, self.strikes,
                      self.strikes_period_ms, self.shadow)

    def blocking(self, block_ms, strikes=0, strikes_period_ms=0):
        """This policy with a block."""
        return Policy(self.algorithm, self.limit, self.period_ms, self.burst,
                      self.name, block_ms, strikes, strikes_period_ms,
                      self.shadow)

    def shadowed(self, shadow=True):
        """This policy in (or out of) shadow mode."""
        return Policy(self.algorithm, self.limit, self.period_ms, self.burst,
                      self.name, self.block_ms, self.strikes,
                      self.strikes_period_ms, shadow)

    def to_json(self):
        j = {"algorithm": self.algorithm, "limit": self.limit,
             "period_ms": self.period_ms, "burst": self.burst}
        if self.name is not None:
            j["name"] = self.name
        if self.block_ms:
            j["block_ms"] = self.block_ms
        if self.strikes:
            j["strikes"] = self.strikes
            j["strikes_period_ms"] = self.strikes_period_ms
        if self.shadow:
            j["shadow"] = True
        return j

    def __repr__(self):
        return "Policy(%s, %d, %d, %d, %r, %d, %d, %d, %r)" % self.ident()


def identity(p, index):
    """The identity a policy's state is kept under (docs/algorithms.md,
    "Identity"): its name, or without one its position in the check's list.
    A name starts with a letter, so the two never meet."""
    return p.name if p.name is not None else index


def gcra(limit, period_ms, burst=0, name=None):
    return Policy("gcra", limit, period_ms, burst, name)


def token_bucket(limit, period_ms, burst=0, name=None):
    return Policy("token_bucket", limit, period_ms, burst, name)


def fixed_window(limit, period_ms, name=None):
    return Policy("fixed_window", limit, period_ms, name=name)


def sliding_window(limit, period_ms, name=None):
    return Policy("sliding_window", limit, period_ms, name=name)


def bucket(alg, limit, period_ms, burst=0, name=None):
    return Policy(alg, limit, period_ms, burst, name)


# --------------------------------------------------------------------------
# The four algorithms. Each takes (policy, stored state or None, now in us,
# cost) and returns an Outcome; `state` is what an allowed call with
# cost >= 1 stores (None otherwise), `expires` the time it may be dropped.
# A negative cost is a refund (docs/algorithms.md, "Refunds"): allowed, and
# `state` set only when the policy had usage to give back.


class Outcome:
    def __init__(self, allowed, remaining, reset_us, retry_us, state=None,
                 expires=None):
        self.allowed = allowed
        self.remaining = remaining
        self.reset_us = reset_us
        self.retry_us = retry_us
        self.state = state
        self.expires = expires

    def key(self):
        return (self.allowed, self.remaining, self.reset_us, self.retry_us)

    def __repr__(self):
        return ("Outcome(allowed=%s, remaining=%d, reset_us=%d, retry_us=%d)"
                % (self.allowed, self.remaining, self.reset_us,
                   self.retry_us))


def eval_gcra(p, st, now, cost):
    T = p.T
    tau = p.capacity * T
    tat = now if st is None else st
    base = max(tat, now)
    if cost < 0:
        if base == now:
            return Outcome(True, tau // T, 0, 0)
        base = max(now, base + cost * T)
        # tat may still lie beyond now + tau (a lowered burst or limit, or a
        # clock step back): then nothing is free yet, remaining is 0.
        return Outcome(True, max(0, (now + tau - base) // T), base - now, 0,
                       state=base, expires=base)
    free = max(0, (now + tau - base) // T)
    if cost == 0:
        limit_at = base + T - tau
        allowed = limit_at <= now
        return Outcome(allowed, free, base - now, max(0, limit_at - now))
    if cost > p.capacity:
        return Outcome(False, free, base - now, RL_RETRY_NEVER)
    new_tat = base + cost * T
    allow_at = new_tat - tau
    if now < allow_at:
        return Outcome(False, free, base - now, allow_at - now)
    return Outcome(True, (now + tau - new_tat) // T, new_tat - now, 0,
                   state=new_tat, expires=new_tat)


def eval_token_bucket(p, st, now, cost):
    """The bucket holds whole tokens, one more every T, up to C; the time
    towards the next token is kept. Its state is one time, `full_at`: when
    the bucket is full again. From it, at `now`: the whole tokens in the
    bucket, and `last`, when the refill of the next token began. A state
    made under another limit or burst (the same identity) can say the
    bucket holds fewer than 0 tokens: that debt is paid back by refill
    before the next token is given."""
    T = p.T
    C = p.capacity
    if st is None or st <= now:
        tokens, last = C, now
    else:
        tokens = (now + C * T - st) // T  # may be < 0, see above
        last = st - (C - tokens) * T      # now - T < last <= now
        assert now - T < last <= now
        if tokens >= C:
            tokens, last = C, now

    def full_at(k):
        return now if k >= C else last + (C - k) * T

    def reset_after(k):
        return full_at(k) - now

    if cost < 0:
        if tokens == C:
            return Outcome(True, C, 0, 0)
        if tokens - cost >= C:
            tokens, last = C, now  # full again: the partial time goes
        else:
            tokens -= cost
        return Outcome(True, max(0, tokens), reset_after(tokens), 0,
                       state=full_at(tokens), expires=full_at(tokens))
    if cost == 0:
        allowed = tokens >= 1
        retry = 0 if allowed else (1 - tokens) * T - (now - last)
        return Outcome(allowed, max(0, tokens), reset_after(tokens), retry)
    if cost > C:
        return Outcome(False, max(0, tokens), reset_after(tokens),
                       RL_RETRY_NEVER)
    if tokens >= cost:
        tokens -= cost
        return Outcome(True, tokens, reset_after(tokens), 0,
                       state=full_at(tokens), expires=full_at(tokens))
    return Outcome(False, max(0, tokens), reset_after(tokens),
                   (cost - tokens) * T - (now - last))


def window_ahead(P):
    """How many windows ahead of now's a stored window may lie and still be
    read (the clock stepped back by up to an hour, or into the previous
    window)."""
    return max(1, MAX_CLOCK_STEP_US // P)


def eval_fixed_window(p, st, now, cost):
    P = p.P
    w = now // P
    # The current window, or a newer one not too far ahead (the clock
    # stepped back). Any other stored window is of the past or of another
    # period (the policy changed): its count does not carry.
    if st is not None and 0 <= st[0] - w <= window_ahead(P):
        window, count = st
    else:
        window, count = w, 0
    E = (window + 1) * P
    limit = p.limit
    out_state = None
    if cost < 0:
        allowed, retry = True, 0
        if count > 0:
            count = max(0, count + cost)
            out_state = (window, count)
    elif cost == 0:
        allowed = count + 1 <= limit
        retry = 0 if allowed else E - now
    elif cost > limit:
        allowed, retry = False, RL_RETRY_NEVER
    elif count + cost <= limit:
        count += cost
        allowed, retry = True, 0
        out_state = (window, count)
    else:
        allowed, retry = False, E - now
    reset = E - now if count > 0 else 0
    # A lowered limit (the same identity) can leave count above it: none
    # left until the window ends.
    return Outcome(allowed, max(0, limit - count), reset, retry,
                   state=out_state,
                   expires=E if out_state else None)


def eval_sliding_window(p, st, now, cost):
    P = p.P
    Pm = p.period_ms
    w = now // P
    # Windows w - 1, w, and newer ones not too far ahead (the clock stepped
    # back) are read; any other is of the past or of another period (the
    # policy changed).
    if st is not None and st[0] == w:
        _, curr, prev = st
    elif st is not None and st[0] == w - 1:
        prev, curr = st[1], 0
    elif st is not None and 0 < st[0] - w <= window_ahead(P):
        w, curr, prev = st  # newer than now: the clock stepped back
    else:
        curr = prev = 0
    real_now = now
    now = max(now, w * P)
    skew = now - real_now  # durations below are measured from real_now
    start = w * P
    E = start + P
    e = (now - start) // 1000
    rem = Pm - e
    assert 1 <= rem <= Pm
    cap = p.limit * Pm

    def used():
        return prev * rem + curr * Pm

    def fits(c):
        return used() + c * Pm <= cap

    def wait(c):
        S = cap - (curr + c) * Pm
        if S >= 0:
            r = S // prev
            return start + (Pm - r) * 1000 - now
        S2 = cap - c * Pm
        r2 = S2 // curr
        if r2 >= Pm:
            return E - now
        return E + (Pm - r2) * 1000 - now

    out_state = None
    if cost < 0:
        allowed, retry = True, 0
        if curr + prev > 0:
            back = -cost
            take = min(back, curr)
            curr -= take
            prev -= min(back - take, prev)
            out_state = (w, curr, prev)
    elif cost == 0:
        allowed = fits(1)
        retry = 0 if allowed else wait(1) + skew
    elif cost > p.limit:
        allowed, retry = False, RL_RETRY_NEVER
    elif fits(cost):
        curr += cost
        allowed, retry = True, 0
        out_state = (w, curr, prev)
    else:
        allowed, retry = False, wait(cost) + skew
    # remaining and reset_after describe the state after this call.
    remaining = max(0, (cap - used()) // Pm)
    if curr > 0:
        reset = E + P - real_now
    elif prev > 0:
        reset = E - real_now
    else:
        reset = 0
    return Outcome(allowed, remaining, reset, retry, state=out_state,
                   expires=E + P if out_state else None)


EVAL = {"gcra": eval_gcra, "token_bucket": eval_token_bucket,
        "fixed_window": eval_fixed_window,
        "sliding_window": eval_sliding_window}


# --------------------------------------------------------------------------
# The store: state per (key, policy); multi-policy checks.


class Decision:
    def __init__(self, allowed, limit, remaining, reset_us, retry_us, index,
                 shadow=False, source="store"):
        assert source in SOURCES
        self.allowed = allowed
        self.shadow = shadow
        self.source = source
        self.limit = limit
        self.remaining = remaining
        self.reset_us = reset_us
        self.retry_us = retry_us
        self.policy_index = index

    @property
    def reset_ms(self):
        return us_to_ms(self.reset_us)

    @property
    def retry_ms(self):
        return us_to_ms(self.retry_us)

    def to_json(self):
        j = {"allowed": self.allowed, "limit": self.limit,
             "remaining": self.remaining,
             "reset_after_ms": self.reset_ms,
             "retry_after_ms": self.retry_ms,
             "policy_index": self.policy_index}
        if self.shadow:
            j["shadow"] = True
        if self.source != "store":
            j["source"] = self.source
        return j

    def __repr__(self):
        return "Decision(%r)" % self.to_json()


def select(outcomes, allowed, to_ms=False):
    """Index of the policy a multi-policy decision reports."""
    if not allowed:
        def longest(i):
            r = outcomes[i].retry_us
            if r == RL_RETRY_NEVER:
                return float("inf")
            return us_to_ms(r) if to_ms else r
        best = None
        for i, o in enumerate(outcomes):
            if not o.allowed and (best is None or longest(i) > longest(best)):
                best = i
        return best
    best = 0
    for i, o in enumerate(outcomes):
        if o.remaining < outcomes[best].remaining:
            best = i
    return best


class ModelError(Exception):
    def __init__(self, code):
        Exception.__init__(self, code)
        self.code = code


class Store:
    """The memory store of the model. A key's states live per identity (the
    policy's name, or its position in the list) and shape (docs/algorithms.md,
    "Identity"), so a policy whose limit changes finds its state, and an
    algorithm of another shape does not read it."""

    def __init__(self):
        # (key, identity, shape) -> (state, expires)
        self.states = {}
        # (key, identity) -> the shape written last. Redis keeps one value
        # per identity: a write of one shape replaces the other's state,
        # which the memory store still has. No vector may depend on that.
        self.last_shape = {}
        self.max_now = None
        # key -> the time (us) it is blocked until (docs/algorithms.md,
        # "Blocks"); (key, identity) -> (strike window, count)
        self.blocks = {}
        self.strike_counts = {}
        # What the limiter holds beside the state: leases and lists.
        self.leases = Leases()
        self.lists = Lists()

    def blocked(self, key, now):
        return self.blocks.get(key, 0) > now

    def _state(self, key, p, index, now, cost):
        ident = identity(p, index)
        entry = self.states.get((key, ident, p.shape))
        if entry is None:
            return None
        state, expires = entry
        ev = EVAL[p.algorithm]
        if expires <= now:
            # A store may already have dropped the state: both readings must
            # agree, or the vector would depend on when a store expires keys.
            a = ev(p, state, now, cost).key()
            b = ev(p, None, now, cost).key()
            assert a == b, ("expired state still matters", p, a, b)
            return None
        if self.max_now is not None and expires <= self.max_now:
            # The clock went past this state's expiry and came back: whether
            # the state is still there depends on the store. Not a vector.
            raise AssertionError("clock stepped back over an expiry: %r" % p)
        if self.last_shape[(key, ident)] != p.shape:
            # Redis replaced this state with one of another shape; the
            # memory store kept it. Both must decide alike.
            a = ev(p, state, now, cost)
            b = ev(p, None, now, cost)
            assert (a.key(), a.state) == (b.key(), b.state), (
                "state overwritten by another shape still matters", p)
            return None
        return state

    def evaluate(self, key, policies, now, cost):
        """All per-policy outcomes, without writing anything."""
        if cost < -MAX_SAFE:
            raise ModelError("RL_E_INVALID_ARG")
        if len(key) == 0:
            raise ModelError("RL_E_KEY_INVALID")
        assert 1 <= len(policies) <= 16
        for i, p in enumerate(policies):
            for q in policies[:i]:
                # The same policy twice, or two policies of one name.
                if p.ident() == q.ident() or (p.name is not None and
                                              p.name == q.name):
                    raise ModelError("RL_E_POLICY")
        assert 0 <= now < MAX_NOW
        return [EVAL[p.algorithm](p, self._state(key, p, i, now, cost), now,
                                  cost)
                for i, p in enumerate(policies)]

    def _write(self, key, p, index, o):
        ident = identity(p, index)
        self.states[(key, ident, p.shape)] = (o.state, o.expires)
        self.last_shape[(key, ident)] = p.shape

    def check(self, key, policies, now, cost):
        outs = self.evaluate(key, policies, now, cost)
        listed = self.lists.answer([key], policies[0], cost)
        if listed is not None:
            return listed, None
        if cost >= 0 and self.blocked(key, now):
            # Blocked: denied by every policy, nothing written. The wait is
            # the block's, or the policy's own if longer (never stays
            # never); nothing is available meanwhile.
            wait = self.blocks[key] - now
            peeks = self.evaluate(key, policies, now, 0)
            outs = [Outcome(False, 0, max(q.reset_us, wait),
                            wait if o.allowed else
                            (o.retry_us if o.retry_us == RL_RETRY_NEVER
                             else max(o.retry_us, wait)))
                    for o, q in zip(outs, peeks)]
            return self._decide(policies, outs, False, now), outs
        allowed = all(o.allowed or p.shadow for p, o in zip(policies, outs))
        if not allowed and cost >= 1:
            outs = self._strike(key, policies, outs, now)
        if cost < 0:
            # A refund: every policy with usage gets it back; none had any:
            # an error, and nothing is written.
            if all(o.state is None for o in outs):
                raise ModelError("RL_E_NOT_FOUND")
            for i, (p, o) in enumerate(zip(policies, outs)):
                if o.state is not None:
                    self._write(key, p, i, o)
        elif allowed and cost >= 1:
            for i, (p, o) in enumerate(zip(policies, outs)):
                if o.allowed:  # not a shadow policy's denial
                    self._write(key, p, i, o)
        return self._decide(policies, outs, allowed, now), outs

    def check_keys(self, pairs, now, cost):
        """Several (key, policies) pairs in one decision (rl_check_keys):
        all or nothing; policy_index counts the policies pair by pair."""
        assert 1 <= len(pairs) <= 8
        keys = [k for k, _ in pairs]
        if cost < -MAX_SAFE:
            raise ModelError("RL_E_INVALID_ARG")
        for k, ps in pairs:
            self.evaluate(k, ps, now, cost)  # each pair's own errors
        if len(set(keys)) != len(keys):
            raise ModelError("RL_E_INVALID_ARG")
        assert sum(len(ps) for _, ps in pairs) <= 16
        listed = self.lists.answer(keys, pairs[0][1][0], cost)
        if listed is not None:
            return listed, None
        per_pair, blocked = [], []
        for k, ps in pairs:
            outs = self.evaluate(k, ps, now, cost)
            if cost >= 0 and self.blocked(k, now):
                wait = self.blocks[k] - now
                peeks = self.evaluate(k, ps, now, 0)
                outs = [Outcome(False, 0, max(q.reset_us, wait),
                                wait if o.allowed else
                                (o.retry_us if o.retry_us == RL_RETRY_NEVER
                                 else max(o.retry_us, wait)))
                        for o, q in zip(outs, peeks)]
                blocked.append(True)
            else:
                blocked.append(False)
            per_pair.append(outs)
        flat_p = [p for _, ps in pairs for p in ps]
        allowed = all(o.allowed or (p.shadow and not b)
                      for (k, ps), outs, b in zip(pairs, per_pair, blocked)
                      for p, o in zip(ps, outs))
        if cost < 0:
            if all(o.state is None for outs in per_pair for o in outs):
                raise ModelError("RL_E_NOT_FOUND")
            for (k, ps), outs in zip(pairs, per_pair):
                for i, (p, o) in enumerate(zip(ps, outs)):
                    if o.state is not None:
                        self._write(k, p, i, o)
        elif allowed and cost >= 1:
            for (k, ps), outs in zip(pairs, per_pair):
                for i, (p, o) in enumerate(zip(ps, outs)):
                    if o.allowed:
                        self._write(k, p, i, o)
        elif cost >= 1:
            per_pair = [outs if b else self._strike(k, ps, outs, now)
                        for (k, ps), outs, b in zip(pairs, per_pair, blocked)]
        flat_o = [o for outs in per_pair for o in outs]
        return self._decide(flat_p, flat_o, allowed, now), flat_o

    def _strike(self, key, policies, outs, now):
        """A denied charge: each denying policy with a block counts a
        strike; the key is blocked if one is due (every wait then lasts at
        least until the block ends, and nothing is available)."""
        till = 0
        for i, (p, o) in enumerate(zip(policies, outs)):
            if (o.allowed or not p.block_ms or p.shadow or
                    o.retry_us == RL_RETRY_NEVER):
                continue
            if p.strikes <= 1:
                till = max(till, now + p.block_ms * 1000)
                continue
            T = p.strikes_period_ms * 1000
            w = now // T
            sw, count = self.strike_counts.get((key, identity(p, i)), (None, 0))
            count = (count if sw == w else 0) + 1
            if count >= p.strikes:
                count = 0
                till = max(till, now + p.block_ms * 1000)
            self.strike_counts[(key, identity(p, i))] = (w, count)
        if till == 0:
            return outs
        till = max(till, self.blocks.get(key, 0))
        self.blocks[key] = till
        wait = till - now
        return [Outcome(o.allowed, 0, max(o.reset_us, wait),
                        o.retry_us if o.allowed or o.retry_us == RL_RETRY_NEVER
                        else max(o.retry_us, wait))
                for o in outs]

    def block(self, key, now, duration_ms):
        if len(key) == 0:
            raise ModelError("RL_E_KEY_INVALID")
        if not 1 <= duration_ms <= MAX_PERIOD_MS:
            raise ModelError("RL_E_INVALID_ARG")
        self.blocks[key] = now + duration_ms * 1000

    def unblock(self, key):
        self.blocks.pop(key, None)
        for k in [k for k in self.strike_counts if k[0] == key]:
            del self.strike_counts[k]

    def _decide(self, policies, outs, allowed, now):
        self.max_now = now if self.max_now is None else max(self.max_now, now)
        # Allowed with a denying policy: a shadow one; the decision reports
        # that denial as an enforced one would be reported.
        shadow = allowed and any(not o.allowed for o in outs)
        enforced = allowed and not shadow
        i = select(outs, enforced)
        # Whether ties in retry_after are judged in us or in ms is not said
        # by the doc; keep the vectors independent of that choice.
        assert i == select(outs, enforced, to_ms=True), (
            "reported policy depends on us/ms retry comparison", outs)
        o = outs[i]
        return Decision(allowed, policies[i].limit, o.remaining, o.reset_us,
                        o.retry_us, i, shadow)

    def reset(self, key):
        self.unblock(key)
        self.leases.reset(key)
        for k in [k for k in self.states if k[0] == key]:
            del self.states[k]
        for k in [k for k in self.last_shape if k[0] == key]:
            del self.last_shape[k]


# --------------------------------------------------------------------------
# Concurrency leases (docs/leases.md)


class Leases:
    """Held leases per key, each known by the label a vector gives it. A
    lease is held while its end lies after now: one ending exactly now has
    ended. A label names one lease for the whole case."""

    def __init__(self):
        self.ends = {}      # key -> {label: end (us)}
        self.key_of = {}    # label -> key
        self.released = set()

    def _held(self, key, now):
        held = self.ends.setdefault(key, {})
        for label in [l for l, end in held.items() if end <= now]:
            del held[label]
        return held

    def acquire(self, key, label, max_in_flight, ttl_ms, now):
        if len(key) == 0:
            raise ModelError("RL_E_KEY_INVALID")
        if not (1 <= max_in_flight <= MAX_IN_FLIGHT and
                1 <= ttl_ms <= MAX_LEASE_TTL_MS):
            raise ModelError("RL_E_INVALID_ARG")
        held = self._held(key, now)
        out = {"acquired": len(held) < max_in_flight,
               "max_in_flight": max_in_flight}
        if out["acquired"]:
            assert label not in self.key_of, "a label names one lease"
            held[label] = now + ttl_ms * 1000
            self.key_of[label] = key
            out["retry_after_ms"] = 0
        else:
            # Until the earliest held lease ends, at least 1 ms.
            out["retry_after_ms"] = max(1, us_to_ms(min(held.values()) - now))
        out["in_flight"] = len(held)
        return out

    def renew(self, label, ttl_ms, now):
        if not 1 <= ttl_ms <= MAX_LEASE_TTL_MS:
            raise ModelError("RL_E_INVALID_ARG")
        held = self._held(self.key_of[label], now)
        if label in self.released or label not in held:
            raise ModelError("RL_E_NOT_FOUND")
        held[label] = now + ttl_ms * 1000

    def release(self, label, now):
        """Whether the lease was held until this call."""
        held = self._held(self.key_of[label], now)
        was_held = label not in self.released and label in held
        held.pop(label, None)
        self.released.add(label)
        return was_held

    def reset(self, key):
        self.ends.pop(key, None)


# --------------------------------------------------------------------------
# Allow and deny lists (docs/exemptions.md)


ADDRESS_CHARS = set("0123456789abcdefABCDEF.:/")


def looks_like_address(text):
    """Hex digits, '.', ':' and '/' only, with a '.' or a ':'."""
    return (all(c in ADDRESS_CHARS for c in text) and
            ("." in text or ":" in text))


def parse_address(text):
    """(family, integer) of an IPv4 or IPv6 address, an IPv4-mapped IPv6
    address being its IPv4 address; None if the text is not one."""
    if not looks_like_address(text) or "/" in text:
        return None
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return None
    if a.version == 6 and a.ipv4_mapped is not None:
        return (4, int(a.ipv4_mapped))
    return (a.version, int(a))


class KeyList:
    def __init__(self, entries=()):
        """Raises ModelError("RL_E_INVALID_ARG") for an entry that is
        empty, or meant as an address or range and not one."""
        self.keys, self.ranges = set(), []
        for e in entries:
            if len(e) == 0:
                raise ModelError("RL_E_INVALID_ARG")
            head, slash, tail = e.partition("/")
            if not (slash and parse_address(head)) and not looks_like_address(e):
                self.keys.add(e)
                continue
            addr = parse_address(head)
            if addr is None:
                raise ModelError("RL_E_INVALID_ARG")
            family, value = addr
            width = 32 if family == 4 else 128
            bits = width
            if slash:
                if not (1 <= len(tail) <= 3 and tail.isdigit() and
                        tail.isascii()):
                    raise ModelError("RL_E_INVALID_ARG")
                bits = int(tail)
                if family == 4 and ":" in head:  # ::ffff:a.b.c.d/n
                    if bits < 96:
                        raise ModelError("RL_E_INVALID_ARG")
                    bits -= 96
                if bits > width:
                    raise ModelError("RL_E_INVALID_ARG")
            self.ranges.append((family, value >> (width - bits), bits))

    def __bool__(self):
        return bool(self.keys or self.ranges)

    def contains(self, key):
        if key in self.keys:
            return True
        addr = parse_address(key)
        if addr is None:
            return False
        family, value = addr
        width = 32 if family == 4 else 128
        return any(f == family and value >> (width - bits) == net
                   for f, net, bits in self.ranges)


class Lists:
    def __init__(self):
        self.allow, self.deny = KeyList(), KeyList()

    def set(self, which, entries):
        parsed = KeyList(entries)  # a refused list changes nothing
        setattr(self, which, parsed)

    def answer(self, keys, first_policy, cost):
        """The decision the lists give, before any store call; None: the
        store decides. Refunds do not consult them."""
        if cost < 0:
            return None
        if any(self.deny.contains(k) for k in keys):
            return Decision(False, first_policy.limit, 0, 0, RL_RETRY_NEVER,
                            0, source="deny_list")
        if self.allow and all(self.allow.contains(k) for k in keys):
            return Decision(True, first_policy.limit, first_policy.limit, 0,
                            0, 0, source="allow_list")
        return None


# --------------------------------------------------------------------------
# Scenario builder


T0 = 1_700_000_000_000  # ms since the epoch: 2023-11-14T22:13:20Z


def align(t_ms, period_ms):
    """Start of the epoch-aligned window of period_ms that holds t_ms."""
    return t_ms - t_ms % period_ms


class Case:
    def __init__(self, name, policies, key="user:1", clock_back=False):
        if not isinstance(policies, list):
            policies = [policies]
        assert valid_list(policies), "duplicate policy or name in a case"
        assert clock_back == ("clock step back" in name), name
        self.name = name
        self.key = key
        self.policies = policies
        self.first_policies = policies
        self.new_policies = False  # the next step carries self.policies
        self.clock_back = clock_back
        self.steps = []
        self.store = Store()
        self.now = None  # us
        self.monotone = True
        # fixed-window invariant: (key, identity, P, w) -> units admitted
        self.admitted = {}

    # time ------------------------------------------------------------------
    def at(self, t_ms):
        return self.at_us(t_ms * 1000)

    def at_us(self, t_us):
        if self.now is not None and t_us < self.now:
            assert self.clock_back, "time goes backwards in %r" % self.name
            self.monotone = False
        self.now = t_us
        return self

    def wait(self, ms):
        return self.at_us(self.now + ms * 1000)

    def wait_us(self, us):
        return self.at_us(self.now + us)

    def _time(self):
        assert self.now is not None, "set the time first"
        if self.now % 1000 == 0:
            step = {"t_ms": self.now // 1000}
        else:
            step = {"t_us": self.now}
        if self.new_policies:
            step["policies"] = [p.to_json() for p in self.policies]
            self.new_policies = False
        return step

    # policies --------------------------------------------------------------
    def use(self, policies):
        """From the next step on, the checks pass `policies` (the step says
        so in its "policies")."""
        if not isinstance(policies, list):
            policies = [policies]
        assert self.steps, "set the case's own policies instead"
        self.policies = policies
        self.new_policies = True
        return self

    # steps -----------------------------------------------------------------
    def check(self, cost=1, key=None, note=None, allowed=None, remaining=None,
              reset=None, retry=None, index=None, source=None):
        """One rl_check; the keyword arguments are hand-computed values that
        the model must agree with (reset and retry in ms)."""
        k = self.key if key is None else key
        step = self._time()
        if key is not None:
            step["key"] = key
        step["cost"] = cost
        d, outs = self.store.check(k, self.policies, self.now, cost)
        step["expect"] = d.to_json()
        if note:
            step["note"] = note
        self.steps.append(step)
        for name, want, got in (("allowed", allowed, d.allowed),
                                ("remaining", remaining, d.remaining),
                                ("reset_after_ms", reset, d.reset_ms),
                                ("retry_after_ms", retry, d.retry_ms),
                                ("policy_index", index, d.policy_index)):
            assert want is None or want == got, (
                "%s, step %d: %s is %r, the scenario says %r"
                % (self.name, len(self.steps) - 1, name, got, want))
        if source is not None:
            assert d.source == source, (self.name, d, source)
        if outs is not None:
            self._self_check(k, cost, d, outs)
        return d

    def peek(self, **kw):
        return self.check(0, **kw)

    def error(self, cost, code, key=None, note=None):
        assert code in ERRORS
        k = self.key if key is None else key
        step = self._time()
        if key is not None:
            step["key"] = key
        step["cost"] = cost
        step["expect_error"] = code
        if note:
            step["note"] = note
        try:
            self.store.check(k, self.policies, self.now, cost)
        except ModelError as e:
            assert e.code == code, (e.code, code)
        else:
            raise AssertionError("expected %s" % code)
        self.steps.append(step)
        return self

    def reset(self, key=None, note=None):
        step = self._time()
        if key is not None:
            step["key"] = key
        step["op"] = "reset"
        if note:
            step["note"] = note
        self.store.reset(self.key if key is None else key)
        self.steps.append(step)
        for k in [k for k in self.admitted
                  if k[0] == (self.key if key is None else key)]:
            del self.admitted[k]

    def block(self, duration_ms, key=None, note=None, error=None):
        """rl_block; `error`: the code it must fail with."""
        step = self._time()
        if key is not None:
            step["key"] = key
        step["op"] = "block"
        step["duration_ms"] = duration_ms
        if error:
            step["expect_error"] = error
        if note:
            step["note"] = note
        replay_op(self.store, step, self.key if key is None else key,
                  self.now)
        self.steps.append(step)
        return self

    def check_keys(self, pairs, cost=1, note=None, error=None, allowed=None,
                   remaining=None, retry=None, index=None, source=None):
        """One rl_check_keys of (key, policies) pairs."""
        step = self._time()
        step["op"] = "check_keys"
        step["pairs"] = [{"key": k, "policies": [p.to_json() for p in ps]}
                         for k, ps in pairs]
        step["cost"] = cost
        if note:
            step["note"] = note
        try:
            d, _ = self.store.check_keys(pairs, self.now, cost)
        except ModelError as e:
            assert e.code == error, (self.name, e.code, error)
            step["expect_error"] = error
            self.steps.append(step)
            return None
        assert error is None, (self.name, "expected", error)
        step["expect"] = d.to_json()
        self.steps.append(step)
        for name, want, got in (("allowed", allowed, d.allowed),
                                ("remaining", remaining, d.remaining),
                                ("retry_after_ms", retry, d.retry_ms),
                                ("policy_index", index, d.policy_index)):
            assert want is None or want == got, (
                "%s, step %d: %s is %r, the scenario says %r"
                % (self.name, len(self.steps) - 1, name, got, want))
        if source is not None:
            assert d.source == source, (self.name, d, source)
        assert d.allowed == (d.retry_us == 0) or d.shadow, d
        return d

    def _op(self, op, fields, key=None, note=None, error=None):
        """A step that is not a check: the model computes its expectation
        (acquire, release) or checks the error it must fail with."""
        step = self._time()
        if key is not None:
            step["key"] = key
        step["op"] = op
        step.update(fields)
        if note:
            step["note"] = note
        try:
            got = apply_op(self.store, step, self.key if key is None else key,
                           self.now)
        except ModelError as e:
            assert e.code == error, (self.name, step, e.code, error)
            step["expect_error"] = error
            self.steps.append(step)
            return None
        assert error is None, (self.name, step, "expected", error)
        if got is not None:
            step["expect"] = got
        self.steps.append(step)
        return got

    def acquire(self, lease, max_in_flight, ttl_ms, key=None, note=None,
                error=None, acquired=None, in_flight=None, retry=None):
        """rl_lease_acquire; `lease` labels the lease for later steps."""
        got = self._op("acquire", {"lease": lease,
                                   "max_in_flight": max_in_flight,
                                   "ttl_ms": ttl_ms}, key, note, error)
        for name, want in (("acquired", acquired), ("in_flight", in_flight),
                           ("retry_after_ms", retry)):
            assert want is None or got[name] == want, (
                "%s, step %d: %s is %r, the scenario says %r"
                % (self.name, len(self.steps) - 1, name, got[name], want))
        return got

    def renew(self, lease, ttl_ms, note=None, error=None):
        self._op("renew", {"lease": lease, "ttl_ms": ttl_ms}, None, note,
                 error)

    def release(self, lease, was_held, note=None):
        got = self._op("release", {"lease": lease}, None, note)
        assert got["was_held"] == was_held, (self.name, lease, got)

    def set_list(self, which, entries, note=None, error=None):
        """rl_set_list: `which` is "allow" or "deny"."""
        self._op("set_list", {"list": which, "entries": entries}, None, note,
                 error)

    def unblock(self, key=None, note=None):
        step = self._time()
        if key is not None:
            step["key"] = key
        step["op"] = "unblock"
        if note:
            step["note"] = note
        self.store.unblock(self.key if key is None else key)
        self.steps.append(step)
        return self

    # self-checks -----------------------------------------------------------
    def _self_check(self, key, cost, d, outs):
        for v in (d.remaining, d.reset_us, d.retry_us, d.limit):
            assert -1 <= v <= MAX_SAFE
        assert d.remaining >= 0 and d.reset_us >= 0
        if d.shadow:
            # Allowed, reporting a shadow policy's denial (its wait).
            assert d.allowed and d.retry_us != 0, d
            assert self.policies[d.policy_index].shadow, d
            return
        assert d.allowed == (d.retry_us == 0), d
        if cost >= 0 and self.store.blocked(key, self.now):
            # The block decides the waits; the policies' own exactness is
            # checked by the cases without one. Nothing passes before it
            # ends, and the decision says so.
            assert not d.allowed and d.remaining == 0
            assert d.retry_us == RL_RETRY_NEVER or (
                d.retry_us >= self.store.blocks[key] - self.now)
            return
        if not self.monotone:
            return
        now = self.now
        store = self.store
        probe_cost = max(cost, 1)
        # The fixed window never admits more than `limit` in a window; a
        # refund takes units back out of the count.
        # Counted per identity and period: a limit change keeps the count,
        # so the window never admits more than its current limit.
        if cost < 0:
            for i, (p, o) in enumerate(zip(self.policies, outs)):
                if p.algorithm == "fixed_window" and o.state is not None:
                    self.admitted[(key, identity(p, i), p.P, o.state[0])] = (
                        o.state[1])
        elif d.allowed and cost >= 1:
            for i, p in enumerate(self.policies):
                if p.algorithm == "fixed_window":
                    w = (key, identity(p, i), p.P, now // p.P)
                    self.admitted[w] = self.admitted.get(w, 0) + cost
                    assert self.admitted[w] <= p.limit
        for i, (p, o) in enumerate(zip(self.policies, outs)):
            one = OnePolicy(store, p, i)
            # retry_after is exact: passing at now + retry, not 1 us before,
            # and so waiting the reported ms passes, 1 ms less does not.
            if not o.allowed:
                if o.retry_us == RL_RETRY_NEVER:
                    assert probe_cost > p.capacity
                    far = one.evaluate(key, MAX_NOW - 1, probe_cost)
                    assert not far[0].allowed
                elif now + us_to_ms(o.retry_us) * 1000 < MAX_NOW:
                    r = o.retry_us
                    assert r > 0
                    def passes(at):
                        return one.evaluate(key, at, probe_cost)[0].allowed
                    assert passes(now + r)
                    assert not passes(now + r - 1)
                    rm = us_to_ms(r) * 1000
                    assert passes(now + rm)
                    assert not passes(now + rm - 1000)
                    # ... and still denied half-way there.
                    mid = now + r // 2
                    if r // 2 > 0:
                        assert not passes(mid)
            # reset_after is exact: the state is back to full then.
            if o.allowed and cost >= 1 and not d.allowed:
                continue  # what this policy would have stored: it was not
            if now + o.reset_us >= MAX_NOW:
                continue  # beyond the memory store's clock
            full = one.evaluate(key, now + o.reset_us, 0)[0]
            assert full.reset_us == 0 and full.remaining == p.capacity, (
                self.name, p, o, full)
            if o.reset_us > 0:
                before = one.evaluate(key, now + o.reset_us - 1, 0)[0]
                assert before.reset_us > 0

    def to_json(self):
        return {"name": self.name, "key": self.key,
                "policies": [p.to_json() for p in self.first_policies],
                "steps": self.steps}


def valid_list(policies):
    """No policy twice, no name twice (else RL_E_POLICY)."""
    idents = [p.ident() for p in policies]
    names = [p.name for p in policies if p.name is not None]
    return (len(set(idents)) == len(idents) and
            len(set(names)) == len(names))


class OnePolicy:
    """The store seen through one policy at its position of the list."""

    def __init__(self, store, p, index):
        self.store, self.p, self.index = store, p, index

    def evaluate(self, key, now, cost):
        st = self.store._state(key, self.p, self.index, now, cost)
        return [EVAL[self.p.algorithm](self.p, st, now, cost)]


def check_bucket_equivalence(case):
    """Replays a case with GCRA and token bucket swapped (in every policy
    list it uses); the decisions must be identical (docs: both are the same
    rate limiter, over the same state)."""
    swap = {"gcra": "token_bucket", "token_bucket": "gcra"}

    def swapped(policies):
        if not all(p.algorithm in swap for p in policies):
            return None
        out = [Policy(swap[p.algorithm], p.limit, p.period_ms, p.burst,
                      p.name, p.block_ms, p.strikes, p.strikes_period_ms,
                      p.shadow)
               for p in policies]
        return out if valid_list(out) else None

    policies = swapped(case.first_policies)
    if policies is None or any(st.get("op") == "check_keys"
                               for st in case.steps):
        return
    store = Store()
    for step in case.steps:
        if "policies" in step:
            policies = swapped(policies_from_json(step["policies"]))
            if policies is None:
                return
        now = step["t_us"] if "t_us" in step else step["t_ms"] * 1000
        key = step.get("key", case.key)
        if step.get("op") in STEP_OPS:
            return  # leases and lists: no algorithm to swap
        if step.get("op") in ("reset", "block", "unblock"):
            replay_op(store, step, key, now)
        elif "expect" in step:
            d, _ = store.check(key, policies, now, step["cost"])
            assert d.to_json() == step["expect"], (case.name, step, d)


# --------------------------------------------------------------------------
# Scenarios: GCRA and token bucket (the same scenarios, run on each)


def bucket_cases(alg):
    B = lambda *a: bucket(alg, *a)  # noqa: E731
    cases = []

    c = Case("fresh key, default burst", B(5, 1000))
    c.at(T0 + 123)
    c.check(allowed=True, remaining=4, reset=200, retry=0, index=0,
            note="T = 200 ms")
    c.check(key="user:2", allowed=True, remaining=4, reset=200,
            note="another fresh key")
    c.peek(key="user:3", allowed=True, remaining=5, reset=0, retry=0,
           note="a fresh key peeks full")
    cases.append(c)

    c = Case("burst exhausted then denied with exact retry_after", B(5, 1000))
    c.at(T0 + 500)
    for i in range(5):
        c.check(allowed=True, remaining=4 - i, reset=200 * (i + 1))
    c.check(allowed=False, remaining=0, reset=1000, retry=200,
            note="6th unit at once")
    c.wait(199).check(allowed=False, retry=1, reset=801,
                      note="1 ms before retry_after")
    c.wait(1).check(allowed=True, remaining=0, reset=1000,
                    note="exactly retry_after later")
    c.check(allowed=False, retry=200)
    cases.append(c)

    c = Case("non-integer interval: retry_after rounds up", B(3, 1000))
    c.at(T0 + 7)
    for i in range(3):
        c.check(allowed=True, remaining=2 - i)
    c.check(allowed=False, retry=334, reset=1001,
            note="T = 333334 us, retry 333334 us")
    c.wait(333).check(allowed=False, retry=1, note="333 ms: 334 us short")
    c.wait(1).check(allowed=True, remaining=0, note="334 ms")
    base = (T0 + 7) * 1000
    c.at_us(base + 666667).check(allowed=False, retry=1, note="1 us early")
    c.at_us(base + 666668).check(allowed=True, note="exactly on time, in us")
    c.at_us(base + 1000001).check(allowed=False, retry=1,
                                  note="3 T - 1 us after the burst")
    c.at_us(base + 1000002).peek(allowed=True, remaining=1)
    cases.append(c)

    c = Case("burst 1 spaces every unit one interval apart", B(10, 1000, 1))
    c.at(T0 + 40)
    c.check(allowed=True, remaining=0, reset=100)
    c.check(allowed=False, retry=100, reset=100)
    c.wait(50).check(allowed=False, retry=50, reset=50)
    c.wait(50).check(allowed=True, remaining=0, reset=100)
    c.wait(99).check(allowed=False, retry=1)
    c.wait(1).check(allowed=True)
    c.wait(5000).check(allowed=True, remaining=0,
                       note="idle time buys no burst")
    c.check(allowed=False, retry=100)
    c.check(2, allowed=False, retry=RL_RETRY_NEVER, remaining=0,
            note="cost 2 > burst 1")
    cases.append(c)

    c = Case("burst between 1 and limit", B(10, 1000, 4))
    c.at(T0 + 3)
    for i in range(4):
        c.check(allowed=True, remaining=3 - i, reset=100 * (i + 1))
    c.check(allowed=False, remaining=0, retry=100, reset=400)
    c.wait(100).check(allowed=True, remaining=0, reset=400)
    c.wait(250).check(2, allowed=True, remaining=0, reset=350,
                      note="2.5 T refilled 2 units")
    c.check(allowed=False, retry=50)
    c.wait(1000).check(4, allowed=True, remaining=0)
    c.check(5, allowed=False, retry=RL_RETRY_NEVER, note="cost 5 > burst 4")
    cases.append(c)

    c = Case("burst equal to limit given explicitly", B(5, 1000, 5))
    c.at(T0 + 999)
    for i in range(5):
        c.check(allowed=True, remaining=4 - i)
    c.check(allowed=False, retry=200, reset=1000)
    c.wait(1000).peek(allowed=True, remaining=5, reset=0)
    cases.append(c)

    c = Case("burst greater than limit", B(5, 1000, 12))
    c.at(T0 + 250)
    c.check(10, allowed=True, remaining=2, reset=2000)
    c.check(2, allowed=True, remaining=0, reset=2400)
    c.check(allowed=False, retry=200, reset=2400)
    c.wait(200).check(allowed=True, remaining=0)
    c.wait(2400).check(12, allowed=True, remaining=0, reset=2400,
                       note="full again: all 12 at once")
    c.wait(2400).check(13, allowed=False, retry=RL_RETRY_NEVER, remaining=12,
                       reset=0, note="cost 13 > burst 12")
    cases.append(c)

    c = Case("peek on a fresh key and after use", B(5, 1000))
    c.at(T0 + 10)
    c.peek(allowed=True, remaining=5, reset=0, retry=0)
    c.check(2, allowed=True, remaining=3, reset=400)
    c.peek(allowed=True, remaining=3, reset=400, retry=0)
    c.peek(allowed=True, remaining=3, reset=400, note="peeks charge nothing")
    c.wait(100).peek(allowed=True, remaining=3, reset=300)
    c.check(allowed=True, remaining=2, reset=500)
    cases.append(c)

    c = Case("peek denied when exhausted, and peeks charge nothing",
             B(5, 1000))
    c.at(T0 + 20)
    c.check(5, allowed=True, remaining=0, reset=1000)
    c.peek(allowed=False, remaining=0, reset=1000, retry=200)
    c.wait(150).peek(allowed=False, remaining=0, reset=850, retry=50)
    c.wait(49).peek(allowed=False, retry=1)
    c.wait(1).peek(allowed=True, remaining=1, reset=800, retry=0)
    c.peek(allowed=True, remaining=1)
    c.check(allowed=True, remaining=0, reset=1000)
    c.peek(allowed=False, retry=200)
    cases.append(c)

    c = Case("cost above capacity is never allowed", B(5, 1000))
    c.at(T0 + 30)
    c.check(6, allowed=False, retry=RL_RETRY_NEVER, remaining=5, reset=0,
            note="fresh key")
    c.check(2, allowed=True, remaining=3, reset=400)
    c.check(6, allowed=False, retry=RL_RETRY_NEVER, remaining=3, reset=400)
    c.check(MAX_SAFE, allowed=False, retry=RL_RETRY_NEVER, remaining=3,
            note="2^53 - 1")
    c.check(4, allowed=False, retry=200, note="not charged by the above")
    c.wait(400).check(5, allowed=True, remaining=0, reset=1000,
                      note="cost = capacity passes when full")
    cases.append(c)

    c = Case("weighted costs", B(10, 1000))
    c.at(T0 + 77)
    c.check(3, allowed=True, remaining=7, reset=300)
    c.check(4, allowed=True, remaining=3, reset=700)
    c.check(3, allowed=True, remaining=0, reset=1000)
    c.check(2, allowed=False, remaining=0, retry=200)
    c.wait(199).check(2, allowed=False, retry=1)
    c.wait(1).check(2, allowed=True, remaining=0, reset=1000)
    c.wait(550).check(5, allowed=True, remaining=0, reset=950,
                      note="5.5 T refilled 5 units")
    cases.append(c)

    c = Case("rejected weighted request is not charged", B(10, 1000))
    c.at(T0 + 1)
    c.check(8, allowed=True, remaining=2, reset=800)
    c.check(5, allowed=False, remaining=2, reset=800, retry=300)
    c.check(3, allowed=False, remaining=2, retry=100)
    c.check(2, allowed=True, remaining=0, reset=1000,
            note="the denied costs were not charged")
    c.wait(300).check(3, allowed=True, remaining=0, reset=1000)
    cases.append(c)

    c = Case("reset forgets the key", B(5, 1000))
    c.at(T0 + 2)
    c.check(5, allowed=True, remaining=0)
    c.check(allowed=False, retry=200)
    c.reset()
    c.check(allowed=True, remaining=4, reset=200, note="fresh after reset")
    c.reset(key="nobody", note="resetting an unknown key succeeds")
    c.check(allowed=True, remaining=3, note="other keys are untouched")
    cases.append(c)

    c = Case("limit 1", B(1, 1000))
    c.at(T0 + 600)
    c.check(allowed=True, remaining=0, reset=1000)
    c.check(allowed=False, retry=1000, reset=1000)
    c.wait(999).check(allowed=False, retry=1, reset=1)
    c.wait(1).check(allowed=True, remaining=0, reset=1000)
    c.wait(2500).peek(allowed=True, remaining=1, reset=0)
    cases.append(c)

    c = Case("steady rate at the interval is never denied", B(5, 1000))
    c.at(T0 + 5)
    c.check(5, allowed=True, remaining=0)
    for _ in range(6):
        c.wait(200).check(allowed=True, remaining=0, reset=1000)
    c.wait(100).check(allowed=False, retry=100)
    c.wait(100).check(allowed=True, remaining=0)
    cases.append(c)

    c = Case("partial refill counts whole units only", B(5, 1000))
    c.at(T0 + 11)
    c.check(5, allowed=True, remaining=0, reset=1000)
    c.wait(199).peek(allowed=False, remaining=0, reset=801, retry=1)
    c.wait(1).peek(allowed=True, remaining=1, reset=800)
    c.wait(199).peek(allowed=True, remaining=1, reset=601)
    c.wait(1).peek(allowed=True, remaining=2, reset=600)
    c.check(2, allowed=True, remaining=0, reset=1000)
    c.wait(399).check(2, allowed=False, retry=1, remaining=1)
    cases.append(c)

    c = Case("keys are independent", B(2, 1000))
    c.at(T0 + 300)
    c.check(2, key="a", allowed=True, remaining=0)
    c.check(key="a", allowed=False, retry=500)
    c.check(key="b", allowed=True, remaining=1)
    c.check(key="user:1", allowed=True, remaining=1)
    c.wait(500).check(key="a", allowed=True, remaining=0)
    c.check(key="b", allowed=True, remaining=1)
    cases.append(c)

    c = Case("an empty key is an error and charges nothing",
             B(5, 1000))
    c.at(T0 + 400)
    c.check(allowed=True, remaining=4)
    c.error(1, "RL_E_KEY_INVALID", key="")
    c.check(allowed=True, remaining=3, note="errors charged nothing")
    cases.append(c)

    c = Case("limit near 2^40 with a one-second period", B(1 << 40, 1000))
    c.at(T0 + 50)
    c.check(1 << 39, allowed=True, remaining=1 << 39,
            reset=ceil_div(1 << 39, 1000), note="T = 1 us")
    c.check(1 << 39, allowed=True, remaining=0,
            reset=ceil_div(1 << 40, 1000))
    c.check(allowed=False, retry=1, note="1 us rounds up to 1 ms")
    c.wait(1).check(1000, allowed=True, remaining=0,
                    note="1 ms refilled 1000 units")
    c.check((1 << 40) + 1, allowed=False, retry=RL_RETRY_NEVER)
    cases.append(c)

    c = Case("limit 2^40 over 2^40 ms, the largest valid policy",
             B(1 << 40, 1 << 40))
    c.at(T0 + 60)
    c.check((1 << 40) - 1, allowed=True, remaining=1,
            reset=(1 << 40) - 1, note="T = 1000 us")
    c.check(allowed=True, remaining=0, reset=1 << 40)
    c.check(allowed=False, retry=1, reset=1 << 40)
    c.wait(1).check(allowed=True, remaining=0, reset=1 << 40)
    c.wait(1000).check(1000, allowed=True, remaining=0)
    c.check(1001, allowed=False, retry=1001)
    cases.append(c)

    c = Case("long period: 1 unit per 2^40 ms", B(1, 1 << 40))
    c.at(T0 + 70)
    c.check(allowed=True, remaining=0, reset=1 << 40)
    c.wait(86_400_000).check(allowed=False, retry=(1 << 40) - 86_400_000,
                             note="a day later")
    c.at(T0 + 70 + (1 << 40) - 1).check(allowed=False, retry=1)
    c.wait(1).check(allowed=True, remaining=0, reset=1 << 40,
                    note="2^40 ms (34.8 years) later")
    cases.append(c)

    c = Case("1000 per 365 days", B(1000, 365 * 86_400_000))
    c.at(T0 + 80)
    c.check(999, allowed=True, remaining=1)
    c.check(2, allowed=False, retry=31_536_000, note="T = 8.76 h")
    c.check(allowed=True, remaining=0, reset=365 * 86_400_000)
    c.wait(31_536_000 - 1).peek(allowed=False, retry=1)
    c.wait(1).peek(allowed=True, remaining=1)
    cases.append(c)

    c = Case("clock step back: state in the future is not rewound",
             B(5, 1000), clock_back=True)
    c.at(T0 + 900)
    c.check(3, allowed=True, remaining=2, reset=600)
    c.at(T0 + 400).peek(note="500 ms back")
    c.check()
    c.check(2)
    c.at(T0 + 700).check()
    c.at(T0 + 900).check()
    cases.append(c)

    if alg == "token_bucket":
        c = Case("fractional refill carries over, no drift", B(3, 1000))
        c.at(T0 + 100)
        c.check(3, allowed=True, remaining=0, reset=1001)
        c.wait(500).check(allowed=True, remaining=0, reset=834,
                          note="1.5 T: one token, half a token kept")
        c.wait(200).check(allowed=True, remaining=0,
                          note="2.1 T after the burst: the kept half counts")
        c.wait(300).check(allowed=False, retry=1,
                          note="3 T after the burst less 2 us")
        c.wait(1).check(allowed=True, remaining=0)
        cases.append(c)

        c = Case("a full bucket drops the partial token", B(4, 1000))
        c.at(T0 + 100)
        c.check(allowed=True, remaining=3, reset=250)
        c.wait(370).check(4, allowed=True, remaining=0, reset=1000,
                          note="full after 250 ms, the 120 ms extra is lost")
        c.wait(249).check(allowed=False, retry=1)
        c.wait(1).check(allowed=True, remaining=0)
        cases.append(c)
    else:
        c = Case("idle time beyond a full refill is not banked", B(4, 1000))
        c.at(T0 + 100)
        c.check(allowed=True, remaining=3, reset=250)
        c.wait(370).check(4, allowed=True, remaining=0, reset=1000,
                          note="tat was in the past: base = now")
        c.wait(249).check(allowed=False, retry=1)
        c.wait(1).check(allowed=True, remaining=0)
        cases.append(c)

        c = Case("sub-millisecond times", B(3, 1000))
        base = (T0 + 100) * 1000 + 250
        c.at_us(base).check(3, allowed=True, remaining=0, reset=1001)
        c.at_us(base + 333333).check(allowed=False, retry=1)
        c.at_us(base + 333334).check(allowed=True, remaining=0)
        c.at_us(base + 333335).check(allowed=False, retry=334)
        cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: fixed window


def fixed_window_cases():
    cases = []
    S = align(T0, 1000)  # T0 is on a second boundary
    assert S == T0
    M = align(T0, 60_000)  # T0 is 20 s into its minute

    c = Case("fresh key mid-window", fixed_window(5, 1000))
    c.at(S + 250)
    c.check(allowed=True, remaining=4, reset=750, retry=0, index=0)
    c.check(key="user:2", allowed=True, remaining=4, reset=750)
    c.peek(key="user:3", allowed=True, remaining=5, reset=0, retry=0)
    cases.append(c)

    c = Case("exhausted, denied until the window ends", fixed_window(5, 1000))
    c.at(S + 100)
    for i in range(5):
        c.check(allowed=True, remaining=4 - i, reset=900)
    c.check(allowed=False, remaining=0, reset=900, retry=900)
    c.at(S + 998).check(allowed=False, retry=2, reset=2)
    c.at(S + 999).check(allowed=False, retry=1, reset=1,
                        note="last ms of the window")
    c.at(S + 1000).check(allowed=True, remaining=4, reset=1000,
                         note="first ms of the next window")
    cases.append(c)

    c = Case("window edges: full at the last ms and again at the first",
             fixed_window(5, 1000))
    c.at(S + 2999).check(5, allowed=True, remaining=0, reset=1,
                         note="last ms of a window")
    c.check(allowed=False, retry=1)
    c.at(S + 3000).check(5, allowed=True, remaining=0, reset=1000,
                         note="first ms of the next: 10 units in 2 ms")
    c.check(allowed=False, retry=1000)
    cases.append(c)

    c = Case("wait exactly retry_after from a time not aligned to the window",
             fixed_window(10, 60_000))
    t = T0 + 1234
    assert t - M == 21_234
    c.at(t).check(10, allowed=True, remaining=0, reset=38_766)
    c.check(allowed=False, retry=38_766)
    c.wait(38_765).check(allowed=False, retry=1, note="1 ms less")
    c.wait(1).check(allowed=True, remaining=9, reset=60_000,
                    note="exactly retry_after")
    cases.append(c)

    c = Case("sub-millisecond times round durations up", fixed_window(3, 1000))
    c.at(S + 5000).check(3, allowed=True, remaining=0, reset=1000)
    base = (S + 5000) * 1000
    c.at_us(base + 999_500).check(allowed=False, retry=1, reset=1,
                                  note="500 us before the end")
    c.at_us(base + 999_999).check(allowed=False, retry=1)
    c.at_us(base + 1_000_000).check(allowed=True, remaining=2)
    c.at_us(base + 1_000_001).check(allowed=True, remaining=1, reset=1000,
                                    note="999.999 ms left")
    cases.append(c)

    c = Case("peek allowed and denied, peeks charge nothing",
             fixed_window(3, 1000))
    c.at(S + 6100)
    c.peek(allowed=True, remaining=3, reset=0, retry=0)
    c.check(2, allowed=True, remaining=1, reset=900)
    c.peek(allowed=True, remaining=1, reset=900)
    c.peek(allowed=True, remaining=1)
    c.check(allowed=True, remaining=0)
    c.wait(50).peek(allowed=False, remaining=0, reset=850, retry=850)
    c.at(S + 7000).peek(allowed=True, remaining=3, reset=0)
    cases.append(c)

    c = Case("cost above limit is never allowed", fixed_window(5, 1000))
    c.at(S + 8200)
    c.check(6, allowed=False, retry=RL_RETRY_NEVER, remaining=5, reset=0)
    c.check(2, allowed=True, remaining=3, reset=800)
    c.check(6, allowed=False, retry=RL_RETRY_NEVER, remaining=3, reset=800)
    c.check(MAX_SAFE, allowed=False, retry=RL_RETRY_NEVER)
    c.at(S + 9000).check(5, allowed=True, remaining=0)
    cases.append(c)

    c = Case("weighted costs", fixed_window(10, 1000))
    c.at(S + 10_300)
    c.check(3, allowed=True, remaining=7)
    c.check(4, allowed=True, remaining=3)
    c.check(3, allowed=True, remaining=0, reset=700)
    c.check(allowed=False, retry=700)
    c.at(S + 11_000).check(10, allowed=True, remaining=0)
    cases.append(c)

    c = Case("rejected weighted request is not charged",
             fixed_window(10, 1000))
    c.at(S + 12_450)
    c.check(8, allowed=True, remaining=2)
    c.check(5, allowed=False, remaining=2, retry=550, reset=550)
    c.check(3, allowed=False, remaining=2)
    c.check(2, allowed=True, remaining=0,
            note="the denied costs were not charged")
    cases.append(c)

    c = Case("reset forgets the key", fixed_window(3, 1000))
    c.at(S + 13_010)
    c.check(3, allowed=True, remaining=0)
    c.check(allowed=False, retry=990)
    c.reset()
    c.check(allowed=True, remaining=2, reset=990)
    c.reset(key="nobody")
    c.check(allowed=True, remaining=1)
    cases.append(c)

    c = Case("limit 1", fixed_window(1, 1000))
    c.at(S + 14_001)
    c.check(allowed=True, remaining=0, reset=999)
    c.check(allowed=False, retry=999)
    c.at(S + 14_999).check(allowed=False, retry=1)
    c.at(S + 15_000).check(allowed=True, remaining=0, reset=1000)
    cases.append(c)

    c = Case("limit 2^40 in one-second windows", fixed_window(1 << 40, 1000))
    c.at(S + 16_500)
    c.check((1 << 40) - 1, allowed=True, remaining=1, reset=500)
    c.check(2, allowed=False, retry=500, remaining=1)
    c.check(allowed=True, remaining=0)
    c.check((1 << 40) + 1, allowed=False, retry=RL_RETRY_NEVER)
    c.at(S + 17_000).check(1 << 40, allowed=True, remaining=0)
    cases.append(c)

    c = Case("limit 2^40 in windows of 2^40 ms",
             fixed_window(1 << 40, 1 << 40))
    W = 1 << 40
    start = align(T0, W)
    assert start == W
    c.at(T0).check(1 << 39, allowed=True, remaining=1 << 39,
                   reset=start + W - T0)
    c.check(1 << 39, allowed=True, remaining=0)
    c.check(allowed=False, retry=start + W - T0)
    c.at(start + W - 1).check(allowed=False, retry=1)
    c.at(start + W).check(allowed=True, remaining=(1 << 40) - 1, reset=W)
    cases.append(c)

    c = Case("hour windows from a time not aligned to the hour",
             fixed_window(100, 3_600_000))
    H = align(T0, 3_600_000)
    c.at(T0).check(60, allowed=True, remaining=40, reset=H + 3_600_000 - T0)
    c.wait(1_000_000).check(41, allowed=False,
                            retry=H + 3_600_000 - T0 - 1_000_000)
    c.check(40, allowed=True, remaining=0)
    c.at(H + 3_600_000).check(100, allowed=True, remaining=0, reset=3_600_000)
    cases.append(c)

    c = Case("day windows are aligned to midnight UTC",
             fixed_window(1000, 86_400_000))
    D = align(T0, 86_400_000)
    c.at(T0).check(1000, allowed=True, remaining=0, reset=D + 86_400_000 - T0)
    c.check(allowed=False, retry=D + 86_400_000 - T0)
    c.at(D + 86_400_000 - 1).check(allowed=False, retry=1)
    c.at(D + 86_400_000).check(allowed=True, remaining=999)
    cases.append(c)

    c = Case("windows of 7 ms are epoch aligned", fixed_window(2, 7))
    s7 = align(T0, 7)
    assert T0 - s7 == 1
    c.at(T0).check(2, allowed=True, remaining=0, reset=6)
    c.check(allowed=False, retry=6)
    c.at(s7 + 6).check(allowed=False, retry=1)
    c.at(s7 + 7).check(allowed=True, remaining=1, reset=7)
    c.at(s7 + 13).check(allowed=True, remaining=0, reset=1)
    c.at(s7 + 14).check(2, allowed=True, remaining=0, reset=7)
    cases.append(c)

    c = Case("a count from an older window is forgotten",
             fixed_window(3, 1000))
    c.at(S + 20_500).check(3, allowed=True, remaining=0)
    c.at(S + 21_400).peek(allowed=True, remaining=3, reset=0,
                          note="the next window")
    c.at(S + 24_999).check(3, allowed=True, remaining=0, reset=1)
    c.at(S + 25_000).peek(allowed=True, remaining=3, reset=0)
    cases.append(c)

    c = Case("keys are independent", fixed_window(2, 1000))
    c.at(S + 26_100)
    c.check(2, key="a", allowed=True, remaining=0)
    c.check(key="a", allowed=False, retry=900)
    c.check(key="b", allowed=True, remaining=1)
    c.check(allowed=True, remaining=1)
    cases.append(c)

    c = Case("an empty key is an error and charges nothing",
             fixed_window(5, 1000))
    c.at(S + 27_100)
    c.check(allowed=True, remaining=4)
    c.error(1, "RL_E_KEY_INVALID", key="")
    c.check(allowed=True, remaining=3)
    cases.append(c)

    c = Case("clock step back: a newer window is used with its own end",
             fixed_window(5, 1000), clock_back=True)
    c.at(S + 31_100).check(5, allowed=True, remaining=0, reset=900)
    c.at(S + 30_900).check(note="back into the previous window")
    c.peek()
    c.at(S + 31_999).check()
    c.at(S + 32_000).check()
    cases.append(c)

    c = Case("clock step back by several windows within an hour: the newer "
             "window is still used", fixed_window(5, 1000), clock_back=True)
    c.at(S + 40_100).check(5, allowed=True, remaining=0, reset=900)
    c.at(S + 37_500).peek(allowed=False, retry=3500,
                          note="3 windows back: denied until the stored one "
                          "ends")
    c.at(S + 40_999).check(allowed=False, retry=1)
    c.at(S + 41_000).check(allowed=True, remaining=4)
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: sliding window


def sliding_window_cases():
    cases = []
    S = T0  # on a second boundary
    M = align(T0, 60_000)

    c = Case("fresh key mid-window", sliding_window(10, 1000))
    c.at(S + 250)
    c.check(allowed=True, remaining=9, reset=1750, retry=0, index=0)
    c.check(key="user:2", allowed=True, remaining=9, reset=1750)
    c.peek(key="user:3", allowed=True, remaining=10, reset=0, retry=0)
    cases.append(c)

    c = Case("previous window weighted at several elapsed points",
             sliding_window(10, 1000))
    c.at(S + 500).check(10, allowed=True, remaining=0, reset=1500)
    n = S + 1000
    c.at(n).peek(allowed=False, remaining=0, reset=1000, retry=100,
                 note="e = 0: the previous window counts in full")
    c.at(n + 1).peek(allowed=False, remaining=0, retry=99, note="e = 1")
    c.at(n + 100).peek(allowed=True, remaining=1, reset=900, note="e = 100")
    c.at(n + 250).peek(allowed=True, remaining=2, note="e = 250")
    c.at(n + 500).peek(allowed=True, remaining=5, note="e = 500")
    c.at(n + 750).peek(allowed=True, remaining=7, note="e = 750")
    c.at(n + 999).peek(allowed=True, remaining=9, reset=1, note="e = 999")
    c.at(n + 1000).peek(allowed=True, remaining=10, reset=0,
                        note="two windows later")
    cases.append(c)

    c = Case("previous and current windows together", sliding_window(10, 1000))
    c.at(S + 2100).check(6, allowed=True, remaining=4)
    n = S + 3000
    c.at(n + 300).check(5, allowed=True, remaining=0, reset=1700,
                        note="used 6 * 700 / 1000 = 4.2")
    c.check(allowed=False, retry=34, note="fits at e = 334")
    c.at(n + 333).check(allowed=False, retry=1)
    c.at(n + 334).check(allowed=True, remaining=0)
    c.check(allowed=False, retry=166, note="fits again at e = 500")
    cases.append(c)

    c = Case("waiting exactly retry_after passes, 1 ms less is denied",
             sliding_window(4, 1000))
    c.at(S + 4100).check(4, allowed=True, remaining=0)
    c.at(S + 5100).check(allowed=False, retry=150,
                         note="4 * (1000 - e) + 1000 <= 4000 at e = 250")
    c.wait(149).check(allowed=False, retry=1)
    c.wait(1).check(allowed=True, remaining=0)
    cases.append(c)

    c = Case("retry that crosses into the next window",
             sliding_window(10, 1000))
    c.at(S + 6200).check(10, allowed=True, remaining=0, reset=1800)
    c.check(allowed=False, retry=900,
            note="the current window alone is full: wait until e = 100 next")
    c.at(S + 6999).check(allowed=False, retry=101, reset=1001)
    c.at(S + 7000).peek(allowed=False, retry=100, reset=1000,
                        note="first ms of the next window")
    c.at(S + 7099).check(allowed=False, retry=1)
    c.at(S + 7100).check(allowed=True, remaining=0)
    cases.append(c)

    c = Case("weighted retry that crosses into the next window",
             sliding_window(10, 1000))
    c.at(S + 8000).check(4, allowed=True, remaining=6)
    c.at(S + 9500).check(8, allowed=True, remaining=0,
                         note="used 4 * 500 / 1000 + 8 = 10")
    c.check(3, allowed=False, retry=625, note="8 * (1000 - e) + 3000 <= 10000")
    c.check(allowed=False, retry=250, note="1 unit fits in this window")
    c.at(S + 10_124).check(3, allowed=False, retry=1)
    c.at(S + 10_125).check(3, allowed=True, remaining=0)
    cases.append(c)

    c = Case("window edges: the last ms and the first ms of the next",
             sliding_window(4, 1000))
    c.at(S + 11_999).check(4, allowed=True, remaining=0, reset=1001,
                           note="last ms of a window")
    c.at(S + 12_000).check(allowed=False, retry=250, reset=1000,
                           note="first ms: the previous window counts fully")
    c.at(S + 12_999).check(3, allowed=True, remaining=0, reset=1001,
                           note="last ms: the previous counts 4 * 1/1000")
    c.at(S + 13_000).check(allowed=True, remaining=0, reset=2000,
                           note="first ms: the previous 3 count fully")
    c.check(allowed=False, retry=334, remaining=0, reset=2000)
    cases.append(c)

    c = Case("peek allowed and denied, peeks charge nothing",
             sliding_window(3, 1000))
    c.at(S + 14_100)
    c.peek(allowed=True, remaining=3, reset=0, retry=0)
    c.check(2, allowed=True, remaining=1, reset=1900)
    c.peek(allowed=True, remaining=1)
    c.peek(allowed=True, remaining=1)
    c.check(allowed=True, remaining=0)
    c.peek(allowed=False, remaining=0, retry=1234, reset=1900,
           note="fits at e = 334 of the next window")
    c.at(S + 15_500).peek(allowed=True, remaining=1, reset=500)
    c.peek(allowed=True, remaining=1)
    c.check(allowed=True, remaining=0)
    cases.append(c)

    c = Case("cost above limit is never allowed", sliding_window(5, 1000))
    c.at(S + 16_200)
    c.check(6, allowed=False, retry=RL_RETRY_NEVER, remaining=5, reset=0)
    c.check(2, allowed=True, remaining=3, reset=1800)
    c.check(6, allowed=False, retry=RL_RETRY_NEVER, remaining=3, reset=1800)
    c.check(MAX_SAFE, allowed=False, retry=RL_RETRY_NEVER)
    c.at(S + 18_000).check(5, allowed=True, remaining=0)
    cases.append(c)

    c = Case("weighted costs", sliding_window(10, 1000))
    c.at(S + 19_000)
    c.check(3, allowed=True, remaining=7)
    c.check(4, allowed=True, remaining=3)
    c.check(3, allowed=True, remaining=0)
    c.at(S + 20_400).check(4, allowed=True, remaining=0,
                           note="used 10 * 600 / 1000 = 6")
    cases.append(c)

    c = Case("rejected weighted request is not charged",
             sliding_window(10, 1000))
    c.at(S + 21_450)
    c.check(8, allowed=True, remaining=2)
    c.check(5, allowed=False, remaining=2, reset=1550)
    c.check(3, allowed=False, remaining=2)
    c.check(2, allowed=True, remaining=0)
    cases.append(c)

    c = Case("reset forgets the key", sliding_window(3, 1000))
    c.at(S + 22_010).check(3, allowed=True, remaining=0)
    c.at(S + 23_010).check(allowed=False)
    c.reset()
    c.check(allowed=True, remaining=2, reset=1990,
            note="the previous window is forgotten too")
    c.reset(key="nobody")
    c.check(allowed=True, remaining=1)
    cases.append(c)

    c = Case("limit 1", sliding_window(1, 1000))
    c.at(S + 24_000).check(allowed=True, remaining=0, reset=2000)
    c.check(allowed=False, retry=2000,
            note="the next window is blocked by the previous in full")
    c.at(S + 25_000).peek(allowed=False, retry=1000, reset=1000)
    c.at(S + 25_999).peek(allowed=False, retry=1)
    c.at(S + 26_000).check(allowed=True, remaining=0)
    cases.append(c)

    c = Case("limit 2^40 with limit * period = 2^51",
             sliding_window(1 << 40, 2048))
    W = 2048
    s = align(T0, W)
    c.at(s + 1024).check(1 << 40, allowed=True, remaining=0)
    c.check(allowed=False)
    c.at(s + W + 512).check(allowed=True, note="a quarter of the window gone")
    c.check(1 << 38, allowed=False)
    c.peek()
    c.at(s + W + 1536).check(1 << 39, allowed=True)
    cases.append(c)

    c = Case("long period: 1 unit per 2^40 ms", sliding_window(1, 1 << 40))
    W = 1 << 40
    s = align(T0, W)
    c.at(T0).check(allowed=True, remaining=0, reset=s + 2 * W - T0)
    c.check(allowed=False, retry=s + 2 * W - T0)
    c.at(s + W).peek(allowed=False, retry=W, reset=W)
    c.at(s + 2 * W - 1).peek(allowed=False, retry=1)
    c.at(s + 2 * W).check(allowed=True)
    cases.append(c)

    c = Case("minute windows from a time not aligned to the minute",
             sliding_window(10, 60_000))
    c.at(T0).check(10, allowed=True, remaining=0, reset=M + 120_000 - T0)
    c.check(allowed=False)
    c.at(M + 60_000 + 15_000).peek(allowed=True, remaining=2,
                                    note="e = 15 s: the previous counts 3/4")
    c.check(3, allowed=False)
    c.check(2, allowed=True, remaining=0)
    c.check(allowed=False)
    cases.append(c)

    c = Case("elapsed time is counted in whole ms", sliding_window(10, 1000))
    c.at(S + 27_000).check(10, allowed=True)
    base = (S + 28_000) * 1000
    c.at_us(base + 99_999).peek(allowed=False, retry=1, remaining=0,
                                note="e = 99")
    c.at_us(base + 100_000).peek(allowed=True, remaining=1, note="e = 100")
    c.at_us(base + 100_999).peek(allowed=True, remaining=1, note="e = 100")
    c.at_us(base + 199_999).check(2, allowed=False, retry=1, note="e = 199")
    c.at_us(base + 200_001).check(2, allowed=True, remaining=0)
    cases.append(c)

    c = Case("state older than the previous window is forgotten",
             sliding_window(5, 1000))
    c.at(S + 29_300).check(5, allowed=True)
    c.at(S + 30_900).peek(allowed=True, remaining=4, reset=100)
    c.at(S + 31_000).peek(allowed=True, remaining=5, reset=0)
    c.check(5, allowed=True, remaining=0)
    cases.append(c)

    c = Case("keys are independent", sliding_window(2, 1000))
    c.at(S + 32_100)
    c.check(2, key="a", allowed=True, remaining=0)
    c.check(key="a", allowed=False)
    c.check(key="b", allowed=True, remaining=1)
    c.check(allowed=True, remaining=1)
    cases.append(c)

    c = Case("an empty key is an error and charges nothing",
             sliding_window(5, 1000))
    c.at(S + 33_100)
    c.check(allowed=True, remaining=4)
    c.error(1, "RL_E_KEY_INVALID", key="")
    c.check(allowed=True, remaining=3)
    cases.append(c)

    c = Case("clock step back: a newer window is used from its start",
             sliding_window(5, 1000), clock_back=True)
    c.at(S + 35_100).check(3, allowed=True, remaining=2, reset=1900)
    c.at(S + 34_900).peek(note="back into the previous window")
    c.check(2)
    c.check()
    c.at(S + 35_500).check()
    cases.append(c)

    c = Case("clock step back by several windows within an hour: the newer "
             "window is used from its start", sliding_window(5, 1000),
             clock_back=True)
    c.at(S + 40_100).check(5, allowed=True, remaining=0, reset=1900)
    c.at(S + 37_500).peek(allowed=False, retry=3700,
                          note="3 windows back: denied until 200 ms into the "
                          "window after the stored one")
    c.at(S + 41_200).check(allowed=True, remaining=0,
                           note="the 5 weigh 4 now")
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: several policies at once


def multi_policy_cases():
    cases = []
    S = T0
    M = align(T0, 60_000)

    c = Case("3 per second and 10 per minute, GCRA",
             [gcra(3, 1000), gcra(10, 60_000)])
    c.at(S + 100)
    c.check(allowed=True, remaining=2, index=0)
    c.check(allowed=True, remaining=1, index=0)
    c.check(allowed=True, remaining=0, index=0)
    c.check(allowed=False, retry=334, index=0, note="the second denies")
    c.at(S + 1100).check(3, allowed=False, index=0, retry=1,
                         note="3 T is 2 us more than a second")
    c.at(S + 1101).check(3, allowed=True, index=0, remaining=0)
    c.at(S + 2102).check(3, allowed=True, index=0, remaining=0,
                         note="the minute has 1 left")
    c.at(S + 3103).check(allowed=True, remaining=0, index=1,
                         note="the 10th unit in 3 s: the minute has 0 left")
    c.check(allowed=False, index=1, retry=2997, note="the minute denies")
    c.at(S + 4100).check(allowed=False, index=1, retry=2000)
    c.peek(allowed=False, index=1, retry=2000)
    c.at(S + 6100).check(allowed=True, index=1, remaining=0)
    cases.append(c)

    c = Case("3 per second and 10 per minute, fixed windows",
             [fixed_window(3, 1000), fixed_window(10, 60_000)])
    t = T0 + 100
    end = M + 60_000
    c.at(t).check(3, allowed=True, remaining=0, index=0, reset=900)
    c.check(allowed=False, index=0, retry=900)
    c.at(t + 1000).check(3, allowed=True, remaining=0, index=0)
    c.at(t + 2000).check(3, allowed=True, remaining=0, index=0)
    c.at(t + 3000).check(allowed=True, remaining=0, index=1,
                         note="the minute has 0 left, the second 2")
    c.check(allowed=False, index=1, retry=end - (t + 3000))
    c.at(end - 1).check(allowed=False, index=1, retry=1)
    c.at(end).check(3, allowed=True, remaining=0, index=0)
    cases.append(c)

    c = Case("3 per second and 10 per minute, sliding windows",
             [sliding_window(3, 1000), sliding_window(10, 60_000)])
    c.at(M + 30_000).check(3, allowed=True, remaining=0, index=0)
    c.at(M + 31_000).peek(allowed=False, index=0, retry=334,
                          note="the previous second counts in full")
    c.at(M + 31_334).check(allowed=True, remaining=0, index=0)
    c.at(M + 33_000).check(3, allowed=True, remaining=0, index=0,
                           note="the minute holds 7")
    c.at(M + 35_000).check(allowed=True, remaining=2, index=0,
                           note="both have 2 left: lowest index")
    c.at(M + 37_000).check(2, allowed=True, remaining=0, index=1,
                           note="the minute is full")
    c.at(M + 39_000).check(allowed=False, index=1, retry=27_000,
                           note="fits at 6 s into the next minute")
    c.at(M + 60_000).peek(allowed=False, index=1, retry=6000)
    c.at(M + 66_000).check(allowed=True, remaining=0, index=1)
    cases.append(c)

    c = Case("all or nothing: the denying policy keeps the others uncharged",
             [gcra(10, 1000), fixed_window(6, 60_000)])
    t = M + 60_000 - 100
    c.at(t).check(5, allowed=True, remaining=1, index=1)
    c.check(5, allowed=False, index=1, retry=100,
            note="the minute denies; the second would allow")
    c.at(M + 60_000).check(5, allowed=True, remaining=1, index=0,
                           note="GCRA has 6: the denied 5 were not charged")
    c.check(allowed=True, remaining=0, index=0, note="both at 0: lowest index")
    c.check(allowed=False, index=1, retry=60_000,
            note="both deny: the minute waits longer")
    cases.append(c)

    c = Case("all or nothing: an allowed policy is not charged either way",
             [fixed_window(4, 1000), gcra(2, 1000)])
    c.at(S + 200).check(2, allowed=True, remaining=0, index=1)
    c.check(allowed=False, index=1, retry=500)
    c.check(allowed=False, index=1)
    c.at(S + 700).check(allowed=True, remaining=0, index=1,
                        note="the window holds 3 of 4: the two denied calls "
                        "were not charged to it")
    c.at(S + 1200).check(allowed=True, index=1, remaining=0,
                         note="a new second window")
    c.at(S + 1700).check(allowed=True, index=1, remaining=0)
    c.at(S + 2200).check(allowed=True, index=1)
    c.at(S + 2700).peek(allowed=True, index=1, remaining=1)
    c.check(2, allowed=False, index=1, retry=500)
    c.check(allowed=True, index=1, remaining=0)
    c.at(S + 2701).peek(allowed=False, index=1, retry=499)
    cases.append(c)

    c = Case("denied: the policy with the longest retry_after is reported",
             [fixed_window(2, 1000), fixed_window(3, 60_000)])
    t = M + 20_500
    c.at(t).check(2, allowed=True, remaining=0, index=0)
    c.check(allowed=False, index=0, retry=500, note="only the second denies")
    c.at(t + 500).check(allowed=True, remaining=0, index=1)
    c.check(allowed=False, index=1, retry=39_000,
            note="both deny: the minute waits longer")
    c.peek(allowed=False, index=1, retry=39_000)
    cases.append(c)

    c = Case("denied: the earlier policy wins a tie in retry_after",
             [fixed_window(2, 1000), fixed_window(3, 2000)])
    A = align(T0, 2000)
    c.at(A + 1300).check(2, allowed=True, remaining=0, index=0)
    c.check(allowed=False, retry=700, index=0, note="only the first denies")
    c.check(2, allowed=False, retry=700, index=0,
            note="both deny, both windows end together: lowest index")
    c.at(A + 2200).check(2, allowed=True, remaining=0, index=0)
    c.at(A + 3100).check(allowed=True, remaining=0, index=1,
                         note="the 2 s window is full")
    c.check(allowed=False, retry=900, index=1, note="only the second denies")
    c.check(2, allowed=False, retry=900, index=0, note="both deny, tie")
    c.at(A + 4000).check(2, allowed=True, remaining=0, index=0)
    cases.append(c)

    c = Case("RL_RETRY_NEVER counts as the longest retry_after",
             [fixed_window(10, 60_000), gcra(5, 1000)])
    c.at(M + 1000).check(10, allowed=False, index=1, retry=RL_RETRY_NEVER,
                         remaining=5, note="10 > burst 5 of the GCRA")
    c.check(5, allowed=True, index=1, remaining=0)
    c.at(M + 2000).check(5, allowed=True, index=0, remaining=0)
    c.check(6, allowed=False, index=1, retry=RL_RETRY_NEVER,
            note="the window's 58 s wait is shorter than never")
    c.check(11, allowed=False, index=0, retry=RL_RETRY_NEVER,
            note="both never: lowest index")
    c.check(allowed=False, index=0, retry=58_000)
    cases.append(c)

    c = Case("allowed: the fewest remaining is reported, ties to the earlier",
             [gcra(10, 1000), token_bucket(4, 1000), fixed_window(6, 1000)])
    c.at(S + 100).check(allowed=True, remaining=3, index=1)
    c.check(allowed=True, remaining=2, index=1)
    c.check(allowed=True, remaining=1, index=1)
    c.check(allowed=True, remaining=0, index=1)
    c.at(S + 600).check(2, allowed=True, remaining=0, index=1,
                        note="bucket and window both at 0: lowest index")
    c.at(S + 1000).check(allowed=True, remaining=0, index=1)
    c.at(S + 2000).check(4, allowed=True, remaining=0, index=1)
    c.at(S + 3000).check(2, allowed=True, remaining=2, index=1)
    c.check(2, allowed=True, remaining=0, index=1)
    c.at(S + 3750).check(allowed=True, remaining=1, index=2,
                         note="the bucket refilled 3, the window did not")
    c.check(allowed=True, remaining=0, index=2)
    c.at(S + 3999).peek(allowed=False, index=2, retry=1)
    cases.append(c)

    c = Case("allowed: a remaining tie goes to the lowest index",
             [gcra(5, 1000), sliding_window(5, 1000)])
    c.at(S + 5000).check(allowed=True, remaining=4, index=0)
    c.check(3, allowed=True, remaining=1, index=0)
    c.peek(allowed=True, remaining=1, index=0)
    c.at(S + 6000).peek(allowed=True, index=1, remaining=1,
                        note="GCRA refilled; the sliding window still "
                        "counts 4")
    cases.append(c)

    c = Case("peek across policies",
             [token_bucket(2, 1000), fixed_window(5, 60_000)])
    c.at(M + 5000)
    c.peek(allowed=True, remaining=2, reset=0, index=0)
    c.check(2, allowed=True, remaining=0, index=0)
    c.peek(allowed=False, index=0, retry=500, note="the bucket denies")
    c.at(M + 6000).check(2, allowed=True, remaining=0, index=0)
    c.at(M + 7000).check(allowed=True, remaining=0, index=1)
    c.peek(allowed=False, index=1, retry=53_000,
           note="both deny a peek: the window waits longer")
    c.at(M + 60_000).peek(allowed=True, index=0, remaining=2)
    cases.append(c)

    c = Case("mixed algorithms: all four at once",
             [gcra(5, 1000), token_bucket(6, 3000), fixed_window(10, 60_000),
              sliding_window(10, 60_000)])
    c.at(M + 10_000).check(4, allowed=True, index=0, remaining=1)
    c.check(2, allowed=False, index=0, retry=200)
    c.at(M + 11_000).check(2, allowed=True, index=1, remaining=2)
    c.check(3, allowed=False, index=1, retry=500,
            note="only the bucket denies")
    c.at(M + 12_000).check(2, allowed=True, index=1, remaining=2,
                           note="three at 2: lowest index")
    c.at(M + 14_000).check(2, allowed=True, index=2, remaining=0,
                           note="window and sliding window at 0")
    c.check(allowed=False, index=3, retry=52_000,
            note="the sliding window waits 6 s into the next minute")
    c.at(M + 60_000).peek(allowed=False, index=3, retry=6000)
    c.at(M + 66_000).check(allowed=True, index=3, remaining=0)
    cases.append(c)

    c = Case("token bucket per second with a sliding window per hour",
             [token_bucket(10, 1000, 20), sliding_window(30, 3_600_000)])
    H = align(T0, 3_600_000)
    c.at(T0).check(20, allowed=True, remaining=0, index=0)
    c.check(allowed=False, index=0, retry=100)
    c.at(T0 + 1000).check(10, allowed=True, remaining=0, index=0)
    c.check(allowed=False, index=1, note="the hour is used up")
    c.at(H + 3_600_000 + 1_800_000).peek(allowed=True, index=1, remaining=15,
                                         note="half the previous hour counts")
    c.check(15, allowed=True, index=1, remaining=0)
    cases.append(c)

    c = Case("reset clears every policy of the key",
             [gcra(2, 1000), fixed_window(3, 60_000)])
    c.at(M + 40_000).check(2, allowed=True, index=0, remaining=0)
    c.at(M + 41_000).check(allowed=True, index=1, remaining=0)
    c.check(allowed=False, index=1)
    c.reset()
    c.check(allowed=True, index=0, remaining=1)
    c.check(allowed=True, index=0, remaining=0)
    c.check(allowed=False, index=0)
    cases.append(c)

    c = Case("keys are independent under several policies",
             [gcra(2, 1000), fixed_window(3, 60_000)])
    c.at(M + 42_000)
    c.check(2, key="a", allowed=True, index=0)
    c.check(key="a", allowed=False, index=0)
    c.check(key="b", allowed=True, index=0, remaining=1)
    c.at(M + 43_000).check(key="a", allowed=True, index=1, remaining=0)
    c.check(key="b", allowed=True, index=0, remaining=1)
    cases.append(c)

    c = Case("same limit and period under two algorithms keep separate state",
             [fixed_window(5, 1000), sliding_window(5, 1000)])
    c.at(S + 7900).check(5, allowed=True, remaining=0, index=0)
    c.at(S + 8000).peek(allowed=False, index=1, remaining=0,
                        note="the fixed window is empty again, the "
                        "sliding not")
    c.at(S + 8600).check(3, allowed=True, index=1, remaining=0)
    c.check(allowed=False, index=1)
    cases.append(c)

    c = Case("16 policies, the most a call takes",
             [gcra(k, 1000 * k) for k in range(16, 0, -1)])
    c.at(S + 9000).check(allowed=True, index=15, remaining=0)
    c.check(allowed=False, index=15, retry=1000)
    c.wait(1000).check(allowed=True, index=15, remaining=0)
    c.check(2, allowed=False, index=15, retry=RL_RETRY_NEVER)
    cases.append(c)

    c = Case("an empty key is an error and charges nothing",
             [gcra(3, 1000), fixed_window(5, 60_000)])
    c.at(M + 50_000).check(allowed=True, remaining=2, index=0)
    c.error(2, "RL_E_KEY_INVALID", key="")
    c.check(2, allowed=True, remaining=0, index=0)
    c.peek(allowed=False, index=0)
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: refunds (a negative cost), every algorithm


def refund_cases():
    cases = []
    S = T0
    for alg in ("gcra", "token_bucket"):
        B = lambda *a: bucket(alg, *a)  # noqa: E731
        c = Case("%s: a refund gives units back, never beyond full" % alg,
                 B(5, 1000))
        c.at(S + 10)
        c.check(3, allowed=True, remaining=2)
        c.check(-2, allowed=True, remaining=4, retry=0,
                note="two of the three come back")
        c.check(-5, allowed=True, remaining=5, reset=0,
                note="only the one still used comes back: full")
        c.error(-1, "RL_E_NOT_FOUND", note="full: nothing to give back")
        c.check(5, allowed=True, remaining=0)
        c.check(allowed=False)
        cases.append(c)

        c = Case("%s: a refund after a denial lets the next call through"
                 % alg, B(2, 1000))
        c.at(S + 20)
        c.check(2, allowed=True, remaining=0)
        c.check(allowed=False, retry=500)
        c.wait_us(123_456).check(-1, allowed=True, remaining=1,
                                 note="the refill's partial time is kept")
        c.check(allowed=True, remaining=0)
        c.check(allowed=False, retry=377, note="500 ms - 123.456 ms")
        cases.append(c)

        c = Case("%s: a refund on a key never charged is an error" % alg,
                 B(3, 60_000), key="user:new")
        c.at(S + 30)
        c.error(-1, "RL_E_NOT_FOUND")
        c.check(1, allowed=True, remaining=2,
                note="the failed refund wrote nothing")
        c.wait(60_000).error(-1, "RL_E_NOT_FOUND",
                             note="refilled by time: nothing to give back")
        cases.append(c)

    M = align(T0, 60_000) + 60_000
    c = Case("fixed_window: a refund lowers this window's count, never "
             "below 0", fixed_window(5, 60_000))
    c.at(M + 1000)
    c.check(4, allowed=True, remaining=1)
    c.check(2, allowed=False, retry=59_000)
    c.check(-2, allowed=True, remaining=3, reset=59_000)
    c.check(2, allowed=True, remaining=1)
    c.check(-9, allowed=True, remaining=5, reset=0, note="back to 0")
    c.error(-1, "RL_E_NOT_FOUND")
    c.check(1, allowed=True, remaining=4)
    c.at(M + 60_000).error(
        -1, "RL_E_NOT_FOUND", note="a new window: the old count is gone")
    cases.append(c)

    c = Case("sliding_window: a refund takes from the current window, then "
             "the previous one", sliding_window(10, 1000))
    W = align(T0, 1000) + 1000
    c.at(W + 500)
    c.check(6, allowed=True, remaining=4)
    c.at(W + 1250)
    c.check(3, allowed=True, note="6 in the previous window weigh 4.5")
    c.check(-4, allowed=True,
            note="3 from this window, 1 from the previous one")
    c.peek(allowed=True)
    c.check(-10, allowed=True, remaining=10, reset=0)
    c.error(-1, "RL_E_NOT_FOUND")
    c.at(W + 3000).check(2, allowed=True, remaining=8)
    c.check(-1, allowed=True, remaining=9)
    cases.append(c)

    c = Case("several policies: a refund goes to every policy with usage",
             [gcra(3, 1000), fixed_window(10, 60_000)])
    c.at(M + 100)
    c.check(3, allowed=True, remaining=0, index=0)
    c.check(allowed=False, index=0)
    c.check(-2, allowed=True, remaining=2, index=0,
            note="both get 2 back: 9 of 10 in the minute, 2 of 3")
    c.check(2, allowed=True, remaining=0, index=0)
    c.at(M + 1200)
    c.check(-1, allowed=True, index=0,
            note="GCRA refilled fully: only the window has usage")
    c.check(-100, allowed=True, remaining=3, index=0,
            note="the window back to 0; GCRA was full already")
    c.error(-1, "RL_E_NOT_FOUND", note="neither policy has usage")
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: a key's policies change (docs/algorithms.md, "Identity"). State
# is kept under the policy's name, or without one its position in the list,
# and its shape: a time (GCRA, token bucket), a fixed window, a sliding
# window.


def carry_over_cases():
    cases = []
    HOUR = 3_600_000
    H = align(T0, HOUR) + HOUR  # the start of an hour
    M = align(T0, 60_000) + 60_000

    for alg in ("gcra", "token_bucket"):
        B = lambda *a, **k: bucket(alg, *a, **k)  # noqa: E731
        c = Case("%s: a raised limit keeps the time until full: 100/h with 60 "
                 "used shows 600 of 1000 used" % alg, B(100, HOUR))
        c.at(H + 1000).check(60, allowed=True, remaining=40, reset=2_160_000,
                             note="full again in 60 x 36 s")
        c.use(B(1000, HOUR))
        c.peek(allowed=True, remaining=400, reset=2_160_000,
               note="the same time until full, at 3.6 s per unit")
        c.check(400, allowed=True, remaining=0, reset=HOUR)
        c.check(allowed=False, retry=3600)
        c.wait(3600).check(allowed=True, remaining=0)
        cases.append(c)

        c = Case("%s: a lowered limit keeps the time until full: 1000/h with "
                 "600 used shows 60 of 100 used" % alg, B(1000, HOUR))
        c.at(H + 2000).check(600, allowed=True, remaining=400,
                             reset=2_160_000)
        c.use(B(100, HOUR))
        c.peek(allowed=True, remaining=40, reset=2_160_000)
        c.check(40, allowed=True, remaining=0, reset=HOUR)
        c.check(allowed=False, retry=36_000, note="T = 36 s")
        c.wait(HOUR).peek(allowed=True, remaining=100, reset=0)
        cases.append(c)

        c = Case("%s: a changed burst keeps the time until full" % alg,
                 B(10, 1000))
        c.at(T0 + 100).check(10, allowed=True, remaining=0, reset=1000)
        c.use(B(10, 1000, 2))
        c.peek(allowed=False, remaining=0, reset=1000, retry=900,
               note="1 s until full, but only 0.2 s of burst: owes 0.8 s")
        c.check(-2, allowed=True, remaining=0, reset=800,
                note="a refund while still owing: remaining stays 0")
        c.peek(allowed=False, remaining=0, retry=700)
        c.wait(699).check(allowed=False, retry=1)
        c.wait(1).check(allowed=True, remaining=0, reset=200)
        c.check(allowed=False, retry=100)
        c.check(-1, allowed=True, remaining=1, reset=100)
        c.use(B(10, 1000, 20))
        c.peek(allowed=True, remaining=19, reset=100,
               note="the same 0.1 s until full under a burst of 20")
        c.check(19, allowed=True, remaining=0, reset=2000)
        c.check(allowed=False, retry=100)
        cases.append(c)

        c = Case("%s: a changed period keeps the time until full" % alg,
                 B(10, 1000))
        c.at(T0 + 200).check(5, allowed=True, remaining=5, reset=500)
        c.use(B(10, 10_000))
        c.peek(allowed=True, remaining=9, reset=500,
               note="0.5 s until full is half a unit of 1 s")
        c.wait(500).peek(allowed=True, remaining=10, reset=0)
        cases.append(c)

    c = Case("gcra then token bucket under one identity: the state carries",
             gcra(10, 1000, name="api"))
    c.at(T0 + 300).check(6, allowed=True, remaining=4, reset=600)
    c.use(token_bucket(10, 1000, name="api"))
    c.peek(allowed=True, remaining=4, reset=600,
           note="the bucket is full again when GCRA's tat says")
    c.check(4, allowed=True, remaining=0, reset=1000)
    c.check(allowed=False, retry=100)
    c.use(gcra(10, 1000, name="api"))
    c.peek(allowed=False, remaining=0, reset=1000, retry=100,
           note="and back: GCRA reads the bucket's full_at as its tat")
    c.wait(100).check(allowed=True, remaining=0)
    cases.append(c)

    c = Case("gcra then fixed window: state of another shape is not read",
             gcra(10, 60_000))
    c.at(M + 1000).check(10, allowed=True, remaining=0, reset=60_000)
    c.use(fixed_window(10, 60_000))
    c.peek(allowed=True, remaining=10, reset=0, note="a fresh window")
    c.use(gcra(10, 60_000))
    c.peek(allowed=False, remaining=0, retry=6000,
           note="the window's peek wrote nothing: GCRA's state is there")
    c.use(fixed_window(10, 60_000))
    c.check(3, allowed=True, remaining=7, reset=59_000)
    c.at(M + 61_000).use(gcra(10, 60_000))
    c.peek(allowed=True, remaining=10, reset=0,
           note="GCRA full again: its state no longer matters")
    c.check(allowed=True, remaining=9, reset=6000)
    cases.append(c)

    for alg, W in (("fixed_window", fixed_window),
                   ("sliding_window", sliding_window)):
        c = Case("%s: a raised limit keeps the count: 100/h with 60 used "
                 "has 940 of 1000 left" % alg, W(100, HOUR))
        c.at(H + 1000).check(60, allowed=True, remaining=40)
        c.use(W(1000, HOUR))
        c.peek(allowed=True, remaining=940)
        c.check(940, allowed=True, remaining=0)
        c.check(allowed=False)
        cases.append(c)

        c = Case("%s: a lowered limit keeps the count: 1000/h with 600 used "
                 "denies at 100/h" % alg, W(1000, HOUR))
        c.at(H + 2000).check(600, allowed=True, remaining=400)
        c.use(W(100, HOUR))
        if alg == "fixed_window":
            c.peek(allowed=False, remaining=0, retry=HOUR - 2000,
                   note="denied until the window ends")
            c.check(allowed=False, remaining=0, retry=HOUR - 2000)
            c.at(H + HOUR).peek(allowed=True, remaining=100, reset=0)
            c.check(100, allowed=True, remaining=0)
        else:
            c.peek(allowed=False, remaining=0, retry=HOUR - 2000 + 3_006_000,
                   note="600 in the previous hour weigh more than 99 until "
                   "50 min 6 s into the next")
            c.at(H + HOUR).peek(allowed=False, remaining=0,
                                retry=3_006_000)
            c.at(H + HOUR + 3_006_000).check(
                allowed=True, remaining=0,
                note="the previous hour's 600 weigh 99 now")
            c.check(allowed=False)
        cases.append(c)

        c = Case("%s: a changed period starts afresh" % alg, W(100, HOUR))
        c.at(H + 3000).check(100, allowed=True, remaining=0)
        c.check(allowed=False)
        c.use(W(100, 60_000))
        c.peek(allowed=True, remaining=100, reset=0,
               note="the hour's window is not a minute's")
        c.check(10, allowed=True, remaining=90)
        c.use(W(100, HOUR))
        c.peek(allowed=True, remaining=100, reset=0,
               note="and back: the minute's count replaced the hour's")
        cases.append(c)

    c = Case("sliding_window: a raised limit keeps the previous window's "
             "count", sliding_window(10, 1000))
    W0 = align(T0, 1000) + 5000
    c.at(W0 + 500).check(10, allowed=True, remaining=0)
    c.at(W0 + 1500).peek(allowed=True, remaining=5,
                         note="half of the previous 10 count")
    c.use(sliding_window(20, 1000))
    c.peek(allowed=True, remaining=15)
    c.check(15, allowed=True, remaining=0)
    c.check(allowed=False)
    cases.append(c)

    c = Case("a named policy keeps its state when its position moves",
             [gcra(3, 1000, name="burst"), fixed_window(10, 60_000,
                                                        name="minute")])
    c.at(M + 2000).check(3, allowed=True, remaining=0, index=0)
    c.use([fixed_window(10, 60_000, name="minute"),
           gcra(3, 1000, name="burst")])
    c.peek(allowed=False, index=1, retry=334,
           note="GCRA, now second, still has its state")
    c.wait(334).check(allowed=True, remaining=0, index=1)
    c.use([fixed_window(10, 60_000, name="minute")])
    c.check(6, allowed=True, remaining=0, index=0,
            note="alone, the window still counts 4")
    c.check(allowed=False, retry=57_666)
    cases.append(c)

    c = Case("an unnamed policy whose position moves does not keep its state",
             [gcra(3, 1000), fixed_window(10, 60_000)])
    c.at(M + 3000).check(3, allowed=True, remaining=0, index=0)
    c.use([fixed_window(10, 60_000), gcra(3, 1000)])
    c.peek(allowed=True, remaining=3, reset=0, index=1,
           note="both fresh: position 0 held GCRA's state, 1 the window's")
    c.check(3, allowed=True, remaining=0, index=1)
    c.check(allowed=False, index=1, retry=334)
    cases.append(c)

    c = Case("an unnamed policy is known by its position: it finds the state "
             "of the one there before", [gcra(3, 1000), gcra(60, 60_000)])
    c.at(M + 4000).check(3, allowed=True, remaining=0, index=0, reset=1001)
    c.use([gcra(60, 60_000), gcra(3, 1000)])
    c.peek(allowed=False, remaining=0, index=1, retry=2334,
           note="the 3/s policy, now at position 1, finds 60/min's 3 s "
           "until full")
    c.use([gcra(60, 60_000)])
    c.peek(allowed=True, remaining=58, reset=1001,
           note="60/min at position 0 finds 3/s's 1.000002 s until full")
    c.check(58, allowed=True, remaining=0)
    cases.append(c)

    c = Case("naming a policy gives it another identity", gcra(5, 1000))
    c.at(T0 + 400).check(5, allowed=True, remaining=0)
    c.use(gcra(5, 1000, name="daily"))
    c.peek(allowed=True, remaining=5, reset=0, note="fresh under its name")
    c.check(2, allowed=True, remaining=3)
    c.use(gcra(5, 1000))
    c.peek(allowed=False, remaining=0, note="the unnamed state is still there")
    cases.append(c)

    c = Case("two policies with the same name are refused",
             gcra(5, 1000, name="a"))
    c.at(T0 + 500).check(2, allowed=True, remaining=3)
    c.use([gcra(5, 1000, name="a"), fixed_window(10, 60_000, name="a")])
    c.error(1, "RL_E_POLICY", note="charges nothing")
    c.use([gcra(5, 1000, name="a"), gcra(6, 1000, name="a")])
    c.error(0, "RL_E_POLICY", note="a peek too")
    c.use([gcra(5, 1000), gcra(5, 1000)])
    c.error(1, "RL_E_POLICY", note="the same unnamed policy twice")
    c.use([gcra(5, 1000, name="a"), gcra(5, 1000, name="b")])
    c.check(allowed=True, remaining=2, index=0,
            note="the same policy under two names is two identities")
    c.check(2, allowed=True, remaining=0, index=0)
    c.check(allowed=False, index=0)
    c.use(gcra(5, 1000, name="b"))
    c.peek(allowed=True, remaining=2, index=0)
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: shadow mode (docs/algorithms.md, "Shadow mode")


def shadow_cases():
    cases = []
    M = 60_000
    for alg in ("gcra", "token_bucket", "fixed_window", "sliding_window"):
        if alg in ("gcra", "token_bucket"):
            p = bucket(alg, 2, 1000)
        elif alg == "fixed_window":
            p = fixed_window(2, 1000)
        else:
            p = sliding_window(2, 1000)
        c = Case("%s: a shadow policy allows, reports, and keeps its usage "
                 "when enforced" % alg, p.shadowed())
        c.at(align(T0, 1000) + 100)
        c.check(allowed=True, remaining=1)
        c.check(allowed=True, remaining=0)
        for _ in range(2):
            d = c.check(allowed=True, remaining=0,
                        note="a would-be denial: allowed, shadow set, "
                        "nothing charged")
            assert d.shadow and d.retry_ms > 0
        c.use(p)
        d = c.check(allowed=False, note="shadow off: the same identity, "
                    "its usage kept, now denies")
        assert not d.shadow
        cases.append(c)

    e, s = gcra(10, M, name="enforced"), fixed_window(1, M, name="trial")
    c = Case("an enforced and a shadow policy: the enforced one is charged "
             "every time", [e, s.shadowed()])
    c.at(align(T0, M) + 1000)
    c.check(allowed=True, index=1, remaining=0)
    for _ in range(3):
        d = c.check(allowed=True, index=1, note="the shadow policy would deny")
        assert d.shadow
    c.use(e)
    c.peek(allowed=True, remaining=6, note="charged four times")
    cases.append(c)

    e, s = gcra(1, M, name="enforced"), gcra(5, M, name="trial")
    c = Case("an enforced denial charges nothing, shadow policies included",
             [e, s.shadowed()])
    c.at(T0 + 10)
    c.check(allowed=True, index=0, remaining=0)
    d = c.check(allowed=False, index=0)
    assert not d.shadow
    c.use(s)
    c.check(allowed=True, remaining=3, note="one charge, not two")
    cases.append(c)

    b = gcra(1, M, name="b").blocking(60 * M).shadowed()
    c = Case("a shadow policy with a block never blocks the key", b)
    c.at(T0 + 10)
    c.check(allowed=True, remaining=0)
    d = c.check(allowed=True, remaining=0, note="would deny; no strike")
    assert d.shadow
    c.use(gcra(100, M, name="other"))
    c.check(allowed=True, remaining=99, note="not blocked")
    cases.append(c)

    g, t = gcra(1, M, name="global"), gcra(10, M, name="route")
    c = Case("several keys: a shadow denial on one key does not deny the "
             "others", g, key="ip:1")
    c.at(T0 + 10)
    pairs = [("ip:1", [g.shadowed()]), ("route|ip:1", [t])]
    c.check_keys(pairs, allowed=True, index=0, remaining=0)
    d = c.check_keys(pairs, allowed=True, index=0, remaining=0)
    assert d.shadow
    c.use(t)
    c.peek(key="route|ip:1", allowed=True, remaining=8)
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: blocks (docs/algorithms.md, "Blocks")


def block_cases():
    cases = []
    M = 60_000
    for alg in ("gcra", "token_bucket"):
        p = bucket(alg, 2, 1000).blocking(M)
        c = Case("%s: the first denial blocks the key for the block" % alg, p)
        c.at(T0 + 10)
        c.check(2, allowed=True, remaining=0)
        c.check(allowed=False, remaining=0, retry=M, reset=M,
                note="denied: blocked for 60 s, though 1 unit is back in 500 ms")
        c.wait(1000).check(allowed=False, remaining=0, retry=M - 1000,
                           note="refilled, still blocked")
        c.peek(allowed=False, retry=M - 1000,
               note="a peek says a unit would not pass")
        c.wait(M - 1000).check(allowed=True, remaining=1,
                               note="the block is over: the bucket refilled "
                               "meanwhile")
        cases.append(c)
    p = fixed_window(3, 1000).blocking(5000)
    c = Case("fixed_window: a block outlasts the window", p)
    c.at(align(T0, 1000) + 900)
    c.check(3, allowed=True, remaining=0)
    c.check(allowed=False, retry=5000, reset=5000,
            note="the window ends in 100 ms; the block in 5 s")
    c.wait(100).check(allowed=False, retry=4900, note="a new window")
    c.wait(4900).check(allowed=True, remaining=2)
    cases.append(c)

    p = sliding_window(2, M).blocking(10 * M, 3, M)
    c = Case("sliding_window: the third denial within a minute blocks", p)
    c.at(align(T0, M) + 1000)
    c.check(2, allowed=True, remaining=0)
    c.check(allowed=False, note="strike 1")
    c.wait(1000).check(allowed=False, note="strike 2")
    c.wait(1000).check(allowed=False, retry=10 * M,
                       note="strike 3: blocked for 10 minutes")
    c.wait(2 * M).check(allowed=False, retry=8 * M,
                        note="two minutes on: both windows empty, still blocked")
    c.wait(8 * M).check(allowed=True)
    cases.append(c)

    p = gcra(1, M).blocking(10 * M, 3, M)
    c = Case("gcra: strikes count within one window only", p)
    start = align(T0, M)
    c.at(start + M - 3000)
    c.check(allowed=True, remaining=0)
    c.check(allowed=False, note="strike 1 of this window")
    c.wait(1000).check(allowed=False, note="strike 2 of this window")
    c.at(start + M).check(allowed=False,
                          note="a new window: strike 1 again, no block")
    c.wait(1000).check(allowed=False, note="strike 2")
    c.wait(1000).check(allowed=False, retry=10 * M, note="strike 3: blocked")
    cases.append(c)

    p = gcra(1, M).blocking(10 * M, 2, M)
    c = Case("gcra: unblock lifts the block and forgets the strikes", p)
    c.at(align(T0, M) + 1000)
    c.check(allowed=True)
    c.check(allowed=False, note="strike 1")
    c.wait(10).check(allowed=False, retry=10 * M, note="strike 2: blocked")
    c.wait(10).unblock()
    c.wait(10).check(allowed=False, note="denied by the limit alone: strike 1 "
                     "again, not 3")
    assert c.steps[-1]["expect"]["retry_after_ms"] < M
    c.wait(10).check(allowed=False, retry=10 * M, note="strike 2: blocked")
    cases.append(c)

    c = Case("an explicit block denies every policy, then lifts",
             [gcra(10, M), fixed_window(100, 3_600_000)])
    c.at(T0)
    c.check(allowed=True, remaining=9, index=0)
    c.block(30_000, note="rl_block for 30 s")
    c.check(allowed=False, remaining=0, retry=30_000, reset=30_000, index=0)
    c.use(sliding_window(5, 1000))
    c.check(allowed=False, retry=30_000, reset=30_000,
            note="another policy list: blocked all the same")
    c.wait(1000).unblock()
    c.check(allowed=True, remaining=4)
    cases.append(c)

    c = Case("a block replaces a block; a policy's block keeps a longer one",
             gcra(1, 1000).blocking(2000))
    c.at(T0)
    c.block(60_000)
    c.check(allowed=False, retry=60_000)
    c.block(1000, note="shortened to 1 s")
    c.check(allowed=False, retry=1000)
    c.wait(1000).check(allowed=True)
    c.block(60_000)
    c.wait(1000).check(allowed=False, retry=59_000,
                       note="blocked: no strike while blocked")
    c.unblock()
    c.check(allowed=True)
    c.check(allowed=False, retry=2000, note="the policy's own block: 2 s")
    c.block(60_000)
    c.check(allowed=False, retry=60_000)
    cases.append(c)

    c = Case("a refund runs while the key is blocked", gcra(5, 1000))
    c.at(T0)
    c.check(3, allowed=True, remaining=2)
    c.block(10_000)
    c.check(-2, allowed=True, remaining=4, note="two units back")
    c.check(allowed=False, retry=10_000, remaining=0)
    c.wait(10_000).check(allowed=True, remaining=4)
    cases.append(c)

    c = Case("a reset lifts a block", fixed_window(1, 1000).blocking(M))
    c.at(align(T0, 1000))
    c.check(allowed=True)
    c.check(allowed=False, retry=M)
    c.wait(10).reset()
    c.check(allowed=True, remaining=0)
    cases.append(c)

    c = Case("a cost that can never pass does not block",
             gcra(2, 1000).blocking(M))
    c.at(T0)
    c.check(3, allowed=False, retry=RL_RETRY_NEVER)
    c.check(allowed=True, remaining=1)
    cases.append(c)

    c = Case("only a denying policy with a block blocks",
             [gcra(1, 1000), fixed_window(5, M).blocking(5 * M)])
    c.at(align(T0, M))
    c.check(allowed=True, index=0)
    c.check(allowed=False, index=0, retry=1000,
            note="denied by the policy without a block: no block")
    c.wait(1000).check(allowed=True)
    for _ in range(3):
        c.wait(1000).check(allowed=True)
    c.wait(1000).check(allowed=False, index=1, retry=5 * M,
                       note="the windowed policy denies: blocked 5 minutes")
    c.wait(1000).check(allowed=False, retry=5 * M - 1000)
    cases.append(c)

    c = Case("blocks: bad input", gcra(1, 1000))
    c.at(T0)
    c.block(0, error="RL_E_INVALID_ARG", note="a block of 0 ms")
    c.block(-5, error="RL_E_INVALID_ARG", note="a negative block")
    c.block(MAX_PERIOD_MS + 1, error="RL_E_INVALID_ARG",
            note="longer than 2^40 ms")
    c.block(1000, key="", error="RL_E_KEY_INVALID")
    c.check(allowed=True, note="nothing was blocked")
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: several keys in one decision (rl_check_keys)


def multi_key_cases():
    cases = []
    H = 3_600_000
    glob = gcra(5, H, name="global")
    login = fixed_window(2, H, name="login")
    ip, route = "ip:1", "login|ip:1"
    c = Case("a route denial charges nothing under the global limit", glob,
             key=ip)
    c.at(align(T0, H) + 1000)
    c.check_keys([(ip, [glob]), (route, [login])], allowed=True, index=1,
                 remaining=1)
    c.check_keys([(ip, [glob]), (route, [login])], allowed=True, index=1,
                 remaining=0)
    for _ in range(2):
        c.wait(10).check_keys([(ip, [glob]), (route, [login])], allowed=False,
                              index=1, note="the route denies")
    c.peek(allowed=True, remaining=3,
           note="the global limit was charged twice, not four times")
    cases.append(c)

    c = Case("a global denial charges nothing on the route",
             gcra(1, H, name="global"), key=ip)
    c.at(align(T0, H) + 1000)
    g1 = gcra(1, H, name="global")
    c.check_keys([(ip, [g1]), (route, [login])], allowed=True)
    c.check_keys([(ip, [g1]), (route, [login])], allowed=False, index=0)
    c.use(login)
    c.check(key=route, cost=0, allowed=True, remaining=1,
            note="the route was charged once")
    cases.append(c)

    a, b = gcra(10, 1000), fixed_window(3, 1000)
    c = Case("policy_index counts the policies pair by pair",
             [a, gcra(4, 4000, name="burst")], key="u:1")
    c.at(align(T0, 1000))
    pairs = [("u:1", [a, gcra(4, 4000, name="burst")]), ("u:1:api", [b])]
    c.check_keys(pairs, 3, allowed=True, index=2, remaining=0)
    c.check_keys(pairs, allowed=False, index=2, retry=1000,
                 note="the third policy in all: the second key's first")
    c.wait(1000).check_keys(pairs, 3, allowed=False, index=1,
                            note="the first key's second policy")
    cases.append(c)

    c = Case("a refund goes to every key with usage", gcra(5, 1000), key="a")
    c.at(T0)
    pa, pb = [gcra(5, 1000)], [fixed_window(5, 1000)]
    c.check_keys([("a", pa), ("b", pb)], 3, allowed=True)
    c.check_keys([("a", pa), ("b", pb)], -2, allowed=True,
                 note="two back on each key")
    c.check_keys([("a", pa), ("c", pb)], -1, allowed=True,
                 note="c has nothing to give back; a has")
    c.check_keys([("c", pa), ("d", pb)], -1, error="RL_E_NOT_FOUND",
                 note="no key has usage")
    c.check(0, allowed=True, remaining=5)
    cases.append(c)

    c = Case("a blocked key denies the whole check", gcra(5, 1000), key="a")
    c.at(T0)
    c.block(30_000, key="b")
    c.check_keys([("a", [gcra(5, 1000)]), ("b", [gcra(5, 1000)])],
                 allowed=False, retry=30_000, index=1)
    c.check(0, allowed=True, remaining=5, note="nothing charged on a")
    c.unblock(key="b")
    c.check_keys([("a", [gcra(5, 1000)]), ("b", [gcra(5, 1000)])],
                 allowed=True)
    cases.append(c)

    c = Case("a denying pair with a block is blocked; the other is not",
             gcra(5, H), key="a")
    c.at(T0)
    strict = gcra(1, H).blocking(60_000)
    c.check_keys([("a", [gcra(5, H)]), ("b", [strict])], allowed=True)
    c.check_keys([("a", [gcra(5, H)]), ("b", [strict])], allowed=False,
                 index=1)
    c.check(0, allowed=True, remaining=4, note="a is not blocked")
    c.use(gcra(5, H))
    c.check(key="b", cost=0, allowed=False, remaining=0,
            note="b is blocked for a minute (its own wait is longer)")
    cases.append(c)

    c = Case("several keys: bad input", gcra(5, 1000), key="a")
    c.at(T0)
    c.check_keys([("a", [gcra(5, 1000)]), ("a", [fixed_window(5, 1000)])],
                 error="RL_E_INVALID_ARG", note="a key twice")
    c.check_keys([("a", [gcra(5, 1000)]), ("", [gcra(5, 1000)])],
                 error="RL_E_KEY_INVALID", note="an empty key")
    c.check(0, allowed=True, remaining=5, note="nothing was charged")
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: concurrency leases (docs/leases.md)


def lease_cases():
    cases = []
    M = 60_000
    S = 10_000  # a ttl long enough that Redis's own expiry never interferes
    rate = gcra(100, M)

    c = Case("at most max_in_flight held; a release makes room", rate,
             key="export:1")
    c.at(T0)
    c.acquire("a", 2, S, acquired=True, in_flight=1)
    c.wait(1).acquire("b", 2, S, acquired=True, in_flight=2)
    c.wait(1).acquire("c", 2, S, acquired=False, in_flight=2, retry=S - 2,
                      note="denied until the earliest held lease ends")
    c.wait(3).release("a", True)
    c.acquire("d", 2, S, acquired=True, in_flight=2)
    c.release("b", True)
    c.release("d", True)
    c.acquire("e", 2, S, acquired=True, in_flight=1)
    cases.append(c)

    c = Case("a lease ends after its ttl, exactly then", rate, key="job:7")
    c.at(T0)
    c.acquire("a", 1, S, acquired=True, in_flight=1)
    c.wait_us(S * 1000 - 1).acquire("x", 1, S, acquired=False, in_flight=1,
                                    retry=1, note="1 us left: 1 ms")
    c.wait_us(1).acquire("b", 1, S, acquired=True, in_flight=1,
                         note="the lease ending now has ended")
    c.release("a", False, note="a release after the end is harmless")
    c.renew("a", S, error="RL_E_NOT_FOUND",
            note="so is a renewal, reported not held")
    c.acquire("y", 1, S, acquired=False, in_flight=1,
              note="neither brought it back")
    cases.append(c)

    c = Case("a renewal extends from now, and may shorten", rate, key="job:8")
    c.at(T0)
    c.acquire("a", 1, S, acquired=True)
    c.wait(S - 1).renew("a", S)
    c.wait(S - 2).acquire("x", 1, S, acquired=False, retry=2,
                          note="held S ms after the renewal")
    c.renew("a", 5, note="5 ms from now")
    c.wait(4).acquire("y", 1, S, acquired=False, retry=1)
    c.wait(1).acquire("b", 1, S, acquired=True, in_flight=1)
    c.renew("a", S, error="RL_E_NOT_FOUND")
    cases.append(c)

    c = Case("a double release is harmless and reported", rate, key="job:9")
    c.at(T0)
    c.acquire("a", 3, S, acquired=True)
    c.acquire("b", 3, S, acquired=True, in_flight=2)
    c.wait(10).release("a", True)
    c.release("a", False, note="the second release")
    c.renew("a", S, error="RL_E_NOT_FOUND", note="a released lease")
    c.acquire("c", 3, S, acquired=True, in_flight=2,
              note="b and c: the double release freed nothing more")
    cases.append(c)

    c = Case("a denial waits for the earliest of several ends", rate,
             key="job:10")
    c.at(T0)
    c.acquire("long", 3, 5 * S, acquired=True)
    c.wait(100).acquire("short", 3, S, acquired=True)
    c.wait(100).acquire("mid", 3, 2 * S, acquired=True, in_flight=3)
    c.wait(1000).acquire("x", 3, S, acquired=False, in_flight=3,
                         retry=S - 1100, note="'short' ends first")
    c.release("short", True)
    c.acquire("y", 2, S, acquired=False, in_flight=2, retry=2 * S + 200 - 1200,
              note="two held, two allowed: until 'mid' ends")
    cases.append(c)

    c = Case("max_in_flight is the caller's: each acquire counts what is "
             "held", rate, key="job:11")
    c.at(T0)
    for label in ("a", "b", "c"):
        c.acquire(label, 3, S, acquired=True)
    c.acquire("x", 2, S, acquired=False, in_flight=3,
              note="three held, two allowed")
    c.acquire("d", 4, S, acquired=True, in_flight=4)
    cases.append(c)

    c = Case("keys are independent, and leases do not touch the rate",
             gcra(1, M), key="tenant:a")
    c.at(T0)
    c.acquire("a", 1, S, acquired=True)
    c.acquire("b", 1, S, key="tenant:b", acquired=True, in_flight=1)
    c.check(allowed=True, remaining=0, note="the rate limit: its own state")
    c.check(allowed=False)
    c.acquire("x", 1, S, acquired=False, note="still one lease held")
    c.release("a", True)
    c.check(allowed=False, note="a release gives no rate back")
    cases.append(c)

    c = Case("a reset ends the key's leases", rate, key="job:12")
    c.at(T0)
    c.acquire("a", 1, S, acquired=True)
    c.wait(5).reset()
    c.acquire("b", 1, S, acquired=True, in_flight=1)
    c.release("a", False, note="ended by the reset")
    c.renew("b", S)
    c.release("b", True)
    cases.append(c)

    c = Case("bad arguments: a clear error, nothing held", rate, key="job:13")
    c.at(T0)
    c.acquire("a", 1, 0, error="RL_E_INVALID_ARG", note="ttl 0")
    c.acquire("a", 1, -5, error="RL_E_INVALID_ARG", note="negative ttl")
    c.acquire("a", 1, MAX_LEASE_TTL_MS + 1, error="RL_E_INVALID_ARG",
              note="ttl over RL_MAX_LEASE_TTL_MS")
    c.acquire("a", 0, S, error="RL_E_INVALID_ARG", note="max_in_flight 0")
    c.acquire("a", MAX_IN_FLIGHT + 1, S, error="RL_E_INVALID_ARG",
              note="max_in_flight over RL_MAX_IN_FLIGHT")
    c.acquire("a", 1, S, key="", error="RL_E_KEY_INVALID", note="empty key")
    c.acquire("a", 1, S, acquired=True, in_flight=1,
              note="none of them held anything")
    c.renew("a", 0, error="RL_E_INVALID_ARG", note="a renewal of ttl 0")
    c.wait(S - 1).acquire("x", 1, S, acquired=False, retry=1,
                          note="the refused renewal changed nothing")
    c.acquire("b", MAX_IN_FLIGHT, MAX_LEASE_TTL_MS, key="job:14",
              acquired=True, note="the largest values")
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Scenarios: allow and deny lists (docs/exemptions.md)


def list_cases():
    cases = []
    M = 60_000
    p = gcra(2, M)

    c = Case("an allowed key costs nothing; a denied key never passes", p,
             key="health-check")
    c.at(T0)
    c.set_list("allow", ["health-check", "partner:acme"])
    c.set_list("deny", ["abuser"])
    for _ in range(3):
        c.check(allowed=True, remaining=2, source="allow_list")
    c.check(key="abuser", allowed=False, remaining=0, retry=RL_RETRY_NEVER,
            source="deny_list")
    c.check(key="user:1", allowed=True, remaining=1,
            note="not listed: the store decides")
    c.set_list("allow", [], note="the allow list emptied")
    c.check(allowed=True, remaining=1,
            note="nothing was charged while allowed")
    cases.append(c)

    c = Case("the deny list wins over the allow list", p, key="10.1.2.3")
    c.at(T0)
    c.set_list("allow", ["10.0.0.0/8"])
    c.set_list("deny", ["10.1.2.3"])
    c.check(allowed=False, retry=RL_RETRY_NEVER, source="deny_list")
    c.check(key="10.1.2.4", allowed=True, remaining=2, source="allow_list")
    cases.append(c)

    c = Case("IPv4 ranges: edges, host bits, every spelling of one address",
             p, key="10.255.255.255")
    c.at(T0)
    c.set_list("deny", ["10.0.0.0/8", "192.168.1.77/24", "172.16.5.4",
                        "0.0.0.0/32"])
    c.check(source="deny_list", allowed=False, note="last address of /8")
    c.check(key="10.0.0.0", source="deny_list", allowed=False)
    c.check(key="11.0.0.0", source="store", allowed=True, remaining=1)
    c.check(key="9.255.255.255", source="store", allowed=True)
    c.check(key="192.168.1.0", source="deny_list", allowed=False,
            note="an entry's host bits are ignored")
    c.check(key="192.168.2.1", source="store", allowed=True)
    c.check(key="172.16.5.4", source="deny_list", allowed=False)
    c.check(key="172.16.5.5", source="store", allowed=True)
    c.check(key="::ffff:10.9.8.7", source="deny_list", allowed=False,
            note="IPv4-mapped IPv6: the IPv4 address")
    c.check(key="0.0.0.0", source="deny_list", allowed=False)
    cases.append(c)

    c = Case("IPv6 ranges and spellings", p, key="2001:db8::1")
    c.at(T0)
    c.set_list("allow", ["2001:db8::/32", "fe80::1", "::/128"])
    c.check(allowed=True, remaining=2, source="allow_list")
    c.check(key="2001:DB8:ffff:ffff:ffff:ffff:ffff:ffff", allowed=True,
            remaining=2, source="allow_list", note="upper case, last address")
    c.check(key="2001:db9::", allowed=True, remaining=1, source="store")
    c.check(key="fe80:0:0:0:0:0:0:1", allowed=True, remaining=2,
            source="allow_list", note="an address in any spelling")
    c.check(key="fe80::2", allowed=True, remaining=1, source="store")
    c.check(key="::", allowed=True, remaining=2, source="allow_list")
    c.check(key="::ffff:0.0.0.0", allowed=True, remaining=1, source="store",
            note="IPv4 0.0.0.0, not IPv6 ::")
    cases.append(c)

    c = Case("IPv4 and IPv4-mapped ranges, whole spaces", p, key="10.1.2.3")
    c.at(T0)
    c.set_list("allow", ["::ffff:10.0.0.0/104"])
    c.check(allowed=True, remaining=2, source="allow_list",
            note="a mapped range given in IPv6 form holds IPv4 keys")
    c.check(key="::ffff:10.200.0.1", allowed=True, remaining=2,
            source="allow_list")
    c.check(key="11.0.0.1", allowed=True, remaining=1, source="store")
    c.set_list("allow", ["0.0.0.0/0"])
    c.check(key="203.0.113.9", allowed=True, remaining=2, source="allow_list")
    c.check(key="2001:db8::9", allowed=True, remaining=1, source="store",
            note="an IPv4 range never holds an IPv6 key")
    c.set_list("allow", ["::/0"])
    c.check(key="2001:db8::9", allowed=True, remaining=2, source="allow_list")
    c.check(key="203.0.113.9", allowed=True, remaining=1, source="store",
            note="nor an IPv6 range an IPv4 key")
    cases.append(c)

    c = Case("a key that is not an address matches only exactly", p,
             key="ip:10.1.2.3")
    c.at(T0)
    c.set_list("deny", ["10.0.0.0/8", "user:42", "cafe"])
    c.check(allowed=True, remaining=1, source="store",
            note="'ip:10.1.2.3' is not an address")
    c.check(key="user:42", allowed=False, source="deny_list")
    c.check(key="user:420", allowed=True, source="store")
    c.check(key="cafe", allowed=False, source="deny_list",
            note="hex digits without '.' or ':' are a key")
    c.check(key="Cafe", allowed=True, source="store",
            note="keys compare byte for byte")
    cases.append(c)

    c = Case("a refused list changes nothing", p, key="10.0.0.1")
    c.at(T0)
    c.set_list("deny", ["10.0.0.0/8"])
    for bad, why in (("10.0.0.0/33", "prefix beyond 32"),
                     ("10.0.0.300", "an octet beyond 255"),
                     ("1.2.3.4/x", "a prefix that is not a number"),
                     ("1.2.3.4/", "an empty prefix"),
                     ("::ffff:10.0.0.0/95", "a mapped range under 96 bits"),
                     ("2001:db8::/129", "prefix beyond 128"),
                     ("2001:db8:::1", "not an IPv6 address"),
                     ("", "an empty entry")):
        c.set_list("deny", ["user:1", bad], error="RL_E_INVALID_ARG",
                   note=why)
    c.check(allowed=False, source="deny_list", note="the old list holds")
    c.check(key="user:1", allowed=True, source="store")
    cases.append(c)

    c = Case("several keys: one denied key denies; allowed only if all are",
             p, key="ip:1")
    c.at(T0)
    g, r = gcra(5, M, name="global"), fixed_window(2, M, name="route")
    c.set_list("allow", ["ip:1", "route|ip:1", "ip:2"])
    c.set_list("deny", ["route|ip:3"])
    c.check_keys([("ip:1", [g]), ("route|ip:1", [r])], allowed=True,
                 remaining=5, source="allow_list",
                 note="every key allowed: the first policy's limit")
    c.check_keys([("ip:2", [g]), ("route|ip:2", [r])], allowed=True,
                 source="store", note="one key not allowed: the store decides")
    c.check_keys([("ip:2", [g]), ("route|ip:3", [r])], allowed=False,
                 retry=RL_RETRY_NEVER, source="deny_list")
    c.use(g)
    c.set_list("allow", [])
    c.peek(key="ip:2", allowed=True, remaining=4,
           note="only the store's answer charged ip:2")
    cases.append(c)

    c = Case("refunds and leases do not consult the lists", p, key="vip")
    c.at(T0)
    c.check(allowed=True, remaining=1)
    c.set_list("allow", ["vip"])
    c.set_list("deny", ["banned"])
    c.check(-1, allowed=True, remaining=2, source="store",
            note="a refund goes to the store")
    c.error(-1, "RL_E_NOT_FOUND", key="banned",
            note="nothing to give back, listed or not")
    c.acquire("a", 1, 10_000, key="banned", acquired=True,
              note="a lease on a denied key")
    c.acquire("b", 1, 10_000, key="banned", acquired=False,
              note="counted as any lease")
    c.check(0, allowed=True, remaining=2, source="allow_list",
            note="a peek is a check")
    cases.append(c)
    return cases


# --------------------------------------------------------------------------
# Files


FILES = [
    ("gcra.json", "gcra",
     "GCRA (docs/algorithms.md): burst tolerance, exact retry_after, peeks, "
     "weights, large values.", lambda: bucket_cases("gcra")),
    ("token_bucket.json", "token_bucket",
     "Token bucket (docs/algorithms.md): the GCRA scenarios plus whole-token "
     "refill that keeps partial time.", lambda: bucket_cases("token_bucket")),
    ("fixed_window.json", "fixed_window",
     "Fixed window aligned to the Unix epoch (docs/algorithms.md).",
     fixed_window_cases),
    ("sliding_window.json", "sliding_window",
     "Sliding-window counter with the previous window weighted in whole ms "
     "(docs/algorithms.md).", sliding_window_cases),
    ("multi_policy.json", "multi",
     "Several policies in one call: all or nothing, and which policy the "
     "decision reports (docs/algorithms.md).", multi_policy_cases),
    ("refund.json", "multi",
     "Refunds, a negative cost: units back to every policy with usage, never "
     "beyond full; nothing to give back is RL_E_NOT_FOUND (docs/algorithms.md, "
     "\"Refunds\").", refund_cases),
    ("carry_over.json", "carry_over",
     "A key's policies change between calls (a step's \"policies\"): state "
     "is kept under the policy's name, or without one its position, and "
     "read by an algorithm of the same shape; a limit change keeps the time "
     "until full (GCRA, token bucket) or the counts (windows), a period "
     "change starts the windows afresh (docs/algorithms.md, \"Identity\").",
     carry_over_cases),
    ("block.json", "block",
     "Blocks: a denial under a policy with a block (after its strikes) "
     "blocks the key, and rl_block / rl_unblock; a blocked key is denied by "
     "every policy with retry_after at least the block's time left "
     "(docs/algorithms.md, \"Blocks\").", block_cases),
    ("multi_key.json", "multi_key",
     "Several keys in one decision (rl_check_keys): all or nothing across "
     "(key, policies) pairs, policy_index counted pair by pair, refunds to "
     "every key with usage, a blocked key denying the whole check "
     "(docs/algorithms.md, \"Several keys\").", multi_key_cases),
    ("shadow.json", "shadow",
     "Shadow mode: a policy with \"shadow\": true is evaluated and kept as "
     "if enforced but its denial does not deny the check; the decision is "
     "allowed with \"shadow\": true and reports the would-be denial; a "
     "shadow denial charges nothing and strikes nothing; turning shadow "
     "off keeps usage (docs/algorithms.md, \"Shadow mode\").", shadow_cases),
    ("leases.json", "leases",
     "Concurrency leases (docs/leases.md): at most max_in_flight held per "
     "key, a lease ends at its end time (exactly), renewals count from now, "
     "late and double releases are harmless and reported, a reset ends a "
     "key's leases; bad arguments are errors. Steps \"acquire\", "
     "\"renew\" and \"release\" name leases by label.", lease_cases),
    ("lists.json", "lists",
     "Allow and deny lists (docs/exemptions.md), evaluated before the "
     "store: exact keys, IPv4 and IPv6 addresses and CIDR ranges, the deny "
     "list winning, several keys, refunds and leases passing by, refused "
     "entries changing nothing. Steps \"set_list\" replace a list; "
     "\"source\" in an expectation says which list answered.", list_cases),
]


def dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def render(algorithm, description, cases):
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "duplicate case names"
    out = ["{", '  "format": %d,' % FORMAT,
           '  "algorithm": %s,' % dumps(algorithm),
           '  "description": %s,' % dumps(description), '  "cases": [']
    for ci, case in enumerate(cases):
        assert case.steps
        out.append("    {")
        out.append('      "name": %s,' % dumps(case.name))
        out.append('      "key": %s,' % dumps(case.key))
        out.append('      "policies": %s,'
                   % dumps([p.to_json() for p in case.first_policies]))
        out.append('      "steps": [')
        for si, step in enumerate(case.steps):
            assert ("t_ms" in step) != ("t_us" in step)
            comma = "," if si + 1 < len(case.steps) else ""
            out.append("        %s%s" % (dumps(step), comma))
        out.append("      ]")
        out.append("    }%s" % ("," if ci + 1 < len(cases) else ""))
    out.append("  ]")
    out.append("}")
    text = "\n".join(out) + "\n"
    assert json.loads(text)["cases"][0]["name"] == cases[0].name
    walk_ints(json.loads(text))
    return text


def walk_ints(v):
    if isinstance(v, bool):
        return
    if isinstance(v, int):
        assert -MAX_SAFE <= v <= MAX_SAFE, v
    elif isinstance(v, dict):
        for x in v.values():
            walk_ints(x)
    elif isinstance(v, list):
        for x in v:
            walk_ints(x)


def policies_from_json(raw):
    return [Policy(p["algorithm"], p["limit"], p["period_ms"], p["burst"],
                   p.get("name"), p.get("block_ms", 0), p.get("strikes", 0),
                   p.get("strikes_period_ms", 0), p.get("shadow", False))
            for p in raw]


def apply_op(store, step, key, now):
    """A lease or list step on the model: what it answers (the step's
    "expect"), or None; raises ModelError for its error."""
    op = step["op"]
    if op == "acquire":
        return store.leases.acquire(key, step["lease"], step["max_in_flight"],
                                    step["ttl_ms"], now)
    if op == "renew":
        store.leases.renew(step["lease"], step["ttl_ms"], now)
        return None
    if op == "release":
        return {"was_held": store.leases.release(step["lease"], now)}
    assert op == "set_list" and step["list"] in ("allow", "deny"), step
    store.lists.set(step["list"], step["entries"])
    return None


STEP_OPS = ("acquire", "renew", "release", "set_list")


def replay_op(store, step, key, now):
    """A reset, block or unblock step, or one of STEP_OPS."""
    op = step["op"]
    if op in STEP_OPS:
        try:
            got = apply_op(store, step, key, now)
        except ModelError as e:
            assert step.get("expect_error") == e.code, step
            return
        assert "expect_error" not in step, step
        assert step.get("expect") == got, (step, got)
        return
    if op == "reset":
        store.reset(key)
    elif op == "unblock":
        store.unblock(key)
    else:
        try:
            store.block(key, now, step["duration_ms"])
        except ModelError as e:
            assert step.get("expect_error") == e.code, step
            return
        assert "expect_error" not in step, step


def check_replay(case):
    """Replays a written case (its JSON) as a replayer does, on a fresh
    model: every expectation must come out again."""
    store = Store()
    policies = policies_from_json(case["policies"])
    for step in case["steps"]:
        if "policies" in step:
            policies = policies_from_json(step["policies"])
        now = step["t_us"] if "t_us" in step else step["t_ms"] * 1000
        key = step.get("key", case["key"])
        if step.get("op") in ("reset", "block", "unblock") + STEP_OPS:
            replay_op(store, step, key, now)
            continue
        if step.get("op") == "check_keys":
            pairs = [(p["key"], policies_from_json(p["policies"]))
                     for p in step["pairs"]]
            try:
                d, _ = store.check_keys(pairs, now, step["cost"])
            except ModelError as e:
                assert step.get("expect_error") == e.code, (case["name"], step)
                continue
            assert d.to_json() == step["expect"], (case["name"], step, d)
            continue
        try:
            d, _ = store.check(key, policies, now, step["cost"])
        except ModelError as e:
            assert step.get("expect_error") == e.code, (case["name"], step)
            continue
        assert d.to_json() == step["expect"], (case["name"], step, d)


def generate():
    texts = {}
    for fname, alg, desc, make in FILES:
        cases = make()
        for case in cases:
            check_bucket_equivalence(case)
            if alg not in ("multi", "carry_over", "block", "multi_key",
                           "shadow", "leases", "lists"):
                assert all(p.algorithm == alg
                           for p in case.policies), case.name
        texts[fname] = render(alg, desc, cases)
        for case in json.loads(texts[fname])["cases"]:
            check_replay(case)
    return texts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true",
                   help="regenerate the JSON files")
    g.add_argument("--check", action="store_true",
                   help="exit 1 if the JSON files differ (default)")
    args = ap.parse_args()
    texts = generate()
    if args.write:
        for fname, text in texts.items():
            with open(os.path.join(HERE, fname), "w", encoding="utf-8") as f:
                f.write(text)
            n = len(json.loads(text)["cases"])
            print("wrote %s (%d cases)" % (fname, n))
        return 0
    stale = []
    for fname, text in texts.items():
        path = os.path.join(HERE, fname)
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            stale.append(fname)
    if stale:
        print("stale or missing: %s; run %s --write"
              % (", ".join(stale), os.path.relpath(__file__)), file=sys.stderr)
        return 1
    print("vectors up to date (%d files)" % len(texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
