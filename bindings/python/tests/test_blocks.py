"""Blocks: a policy's block (Policy(..., block=, strikes=, strikes_period=),
"block=15m strikes=3/h") denies a key by every policy after a denial, and
Limiter.block / Limiter.unblock set and lift one (docs/api-c.md, rl_block).
Memory store with a pinned clock, and a real redis-server (conftest.py)."""

from __future__ import annotations

import asyncio
import datetime
import pickle
from typing import Any

import pytest

import tollgate
from tollgate import InvalidArgument, Limiter, NothingToRefund, Policy

from conftest import Clock, needs_redis  # Clock starts at T0: 800 s into an hour, 20 s into a minute


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lim(clock: Clock) -> Any:
    with Limiter(clock=clock) as limiter:
        yield limiter


def blocked(d: tollgate.Decision, at_least: float) -> bool:
    """Denied by a block with at least `at_least` seconds left."""
    return not d.allowed and d.remaining == 0 and d.retry_after >= at_least and d.source == "store"


# ---- Policy fields -------------------------------------------------------------


def test_parse_round_trips_the_block_fields():
    p = Policy.parse("5/m block=15m strikes=3/h")
    assert (p.limit, p.period_ms, p.algorithm, p.name) == (5, 60_000, "gcra", None)
    assert (p.block, p.block_ms) == (900.0, 900_000)
    assert (p.strikes, p.strikes_period, p.strikes_period_ms) == (3, 3600.0, 3_600_000)
    assert p == Policy(5, "1m", block="15m", strikes=3, strikes_period="1h")
    assert p == Policy(5, 60, block=900, strikes=3, strikes_period=datetime.timedelta(hours=1))
    assert hash(p) == hash(Policy(5, "1m", block=900.0, strikes=3, strikes_period=3600))
    assert repr(p) == "Policy(5, '1m', block='15m', strikes=3, strikes_period='1h')"
    assert eval(repr(p), {"Policy": Policy}) == p
    assert pickle.loads(pickle.dumps(p)) == p

    named = Policy.parse("5/m name=login block=15m")
    assert (named.name, named.block_ms, named.strikes, named.strikes_period) == ("login", 900_000, None, None)
    assert repr(named) == "Policy(5, '1m', name='login', block='15m')"
    assert eval(repr(named), {"Policy": Policy}) == named
    every = Policy.parse("5/m name=login block=15m strikes=3/h")
    for q in (named, every):
        r = pickle.loads(pickle.dumps(q))
        assert r == q and r.name == "login" and r.block_ms == 900_000 and r.strikes == q.strikes


def test_block_fields_default_to_none_and_take_part_in_equality():
    plain = Policy(5, "1m")
    assert (plain.block, plain.block_ms, plain.strikes, plain.strikes_period, plain.strikes_period_ms) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert Policy(5, "1m", block=None, strikes=None, strikes_period=None) == plain
    a = Policy(5, "1m", block="15m")
    b = Policy(5, "1m", block="1h")
    c = Policy(5, "1m", block="15m", strikes=3, strikes_period="1h")
    d = Policy(5, "1m", block="15m", strikes=3, strikes_period="1d")
    e = Policy(5, "1m", block="15m", strikes=4, strikes_period="1h")
    assert len({plain, a, b, c, d, e}) == 6
    assert a != plain and a != b and c != a and c != d and c != e
    assert Policy(5, "1m", block=1.5).block_ms == 1500
    assert repr(Policy(5, "1m", block=1.5)) == "Policy(5, '1m', block='1500ms')"
    for p in (a, c, Policy(1, 1, "fixed_window", block="250ms"), Policy(2, 3, "token_bucket", 4, block=7)):
        assert pickle.loads(pickle.dumps(p)) == p
        assert eval(repr(p), {"Policy": Policy}) == p


def test_a_pickle_of_an_older_policy_still_loads():
    p = Policy.__new__(Policy)
    p.__setstate__((5, 60_000, "gcra", 0, "login"))  # before blocks
    assert p == Policy(5, "1m", name="login") and p.block is None
    q = Policy.__new__(Policy)
    q.__setstate__((5, 60_000, "gcra", 0))  # before names
    assert q == Policy(5, "1m")
    assert Policy(5, "1m", block="15m").__getstate__() == (5, 60_000, "gcra", 0, None, 900_000, 0, 0)


@pytest.mark.parametrize(
    "kwargs, code, message",
    [
        ({"strikes": 3, "strikes_period": "1h"}, "RL_E_POLICY", "strikes: need a block"),
        ({"block": "15m", "strikes": 3}, "RL_E_POLICY", "strikes: need strikes_period"),
        ({"block": "15m", "strikes_period": "1h"}, "RL_E_POLICY", "strikes_period: needs strikes"),
        ({"block": 0}, "RL_E_POLICY", "block: must be at least 1 ms"),
        ({"block": -5}, "RL_E_POLICY", "block: must be at least 1 ms"),
        ({"block": -1.0}, "RL_E_POLICY", "block: must be > 0 seconds"),
        ({"block": "0s"}, "RL_E_POLICY", "block: must be at least 1 ms"),
        ({"block": "soon"}, "RL_E_POLICY", "block: expected a number and a unit"),
        ({"block": 0.0001}, "RL_E_POLICY", "not a whole number of milliseconds"),
        ({"block": datetime.timedelta(0)}, "RL_E_POLICY", "block: must be at least 1 ms"),
        ({"block": 2**41}, "RL_E_OVERFLOW", r"exceeds the maximum 2\^40 ms"),
        ({"block": "15m", "strikes": 0, "strikes_period": "1h"}, "RL_E_POLICY", "strikes: must be >= 1"),
        ({"block": "15m", "strikes": -2, "strikes_period": "1h"}, "RL_E_POLICY", "strikes: must be >= 1"),
        ({"block": "15m", "strikes": 3, "strikes_period": 0}, "RL_E_POLICY", "strikes_period: must be at least"),
        ({"block": "15m", "strikes": 2**41, "strikes_period": "1h"}, "RL_E_OVERFLOW", r"at most 2\^40"),
    ],
)
def test_invalid_block_fields(kwargs, code, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        Policy(5, "1m", **kwargs)
    assert info.value.code == code


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"block": True}, "block must be seconds"),
        ({"block": [1]}, "block must be seconds"),
        ({"block": "15m", "strikes": 2.0, "strikes_period": "1h"}, "strikes must be an int, not float"),
        ({"block": "15m", "strikes": "3", "strikes_period": "1h"}, "strikes must be an int, not str"),
        ({"block": "15m", "strikes": True, "strikes_period": "1h"}, "strikes must be an int, not bool"),
        ({"block": "15m", "strikes": 3, "strikes_period": object()}, "strikes_period must be seconds"),
    ],
)
def test_block_fields_wrong_types(kwargs, needle):
    with pytest.raises(TypeError, match=needle):
        Policy(5, "1m", **kwargs)


def test_block_fields_are_keyword_only_and_read_only():
    with pytest.raises(TypeError):
        Policy(5, "1m", "gcra", None, "15m")  # type: ignore[misc]
    p = Policy(5, "1m", block="15m")
    for field in ("block", "block_ms", "strikes", "strikes_period", "strikes_period_ms"):
        with pytest.raises(AttributeError):
            setattr(p, field, 1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("5/m strikes=3/h", "strikes need a block"),
        ("5/m block=15m strikes=3", "expected '/'"),
        ("5/m block=0s", "must be at least 1 ms"),
        ("5/m block=15m block=1h", "block given twice"),
    ],
)
def test_invalid_block_text(text, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        Policy.parse(text)
    assert info.value.code == "RL_E_POLICY"
    assert "(at byte " in str(info.value)


# ---- memory store -------------------------------------------------------------


def test_memory_policy_block_after_the_first_denial(lim, clock):
    p = Policy(2, "1m", block="15m")
    assert lim.check("k", p, cost=2).allowed
    d = lim.check("k", p)
    # GCRA alone would let a unit through in 30 s: the block says 15 minutes
    assert not d.allowed and d.remaining == 0
    assert d.retry_after_ms == 900_000 and d.reset_after_ms == 900_000
    clock.advance(60)  # the policy is full again; the key is still blocked
    d = lim.check("k", p)
    assert blocked(d, 840) and d.retry_after_ms == 840_000
    assert lim.check("k", p, cost=0).retry_after_ms == 840_000  # a peek says so too
    clock.advance(840)
    d = lim.check("k", p)
    assert d.allowed and d.remaining == 1  # over: the denied checks charged nothing
    assert lim.check("other", p, cost=2).allowed  # other keys were never blocked


def test_memory_strikes_block_at_the_third_denial_within_the_window(lim, clock):
    p = Policy(1, "1m", block="15m", strikes=3, strikes_period="1h")
    assert lim.check("k", p).allowed
    for strike in (1, 2):
        d = lim.check("k", p)
        assert not d.allowed and d.retry_after_ms == 60_000, strike  # the policy's own wait
    d = lim.check("k", p)  # the third denial
    assert not d.allowed and d.retry_after_ms == 900_000
    clock.advance(61)
    assert blocked(lim.check("k", p), 838)

    # Strikes count within one epoch-aligned hour: two in each of two hours
    # do not block. T0 is 800 s into its hour.
    assert lim.check("w", p).allowed
    assert not lim.check("w", p) and not lim.check("w", p)  # strikes 1, 2 of hour A
    clock.advance(3600 - 800 - 61)  # the next hour starts (the policy refilled)
    assert lim.check("w", p).allowed
    d = lim.check("w", p)
    assert not d.allowed and d.retry_after_ms == 60_000  # strike 1 of hour B
    d = lim.check("w", p)
    assert not d.allowed and d.retry_after_ms == 60_000  # strike 2 of hour B
    assert lim.check("w", p).retry_after_ms == 900_000  # the third: blocked


def test_memory_a_blocked_key_is_denied_under_any_policy(lim, clock):
    login = Policy(1, "1h", block="1d", name="login")
    assert lim.check("k", login).allowed
    assert lim.check("k", login).retry_after_ms == 86_400_000
    clock.advance(10)
    others = [Policy(1000, "1s"), Policy(5, "1h", "fixed_window"), Policy(10, "1m", "sliding_window")]
    for other in others:
        d = lim.check("k", other)
        assert blocked(d, 86_390) and d.limit == other.limit and d.retry_after_ms == 86_390_000
    d = lim.check("k", *others, cost=1)
    assert blocked(d, 86_390)
    # denials while blocked charge nothing: the other policies are full after
    lim.unblock("k")
    assert lim.check("k", others[1], cost=0).remaining == 5
    assert lim.check("k", others[0]).allowed


def test_memory_explicit_block_and_unblock(lim, clock):
    p = Policy(10, "1m")
    lim.block("k", 30)
    d = lim.check("k", p)
    assert blocked(d, 30) and d.retry_after == 30.0
    lim.block("k", "1h")  # replaces the block
    assert lim.check("k", p).retry_after_ms == 3_600_000
    lim.block(b"k", 1.5)  # bytes and str keys are the same key; may shorten it
    assert lim.check("k", p).retry_after_ms == 1500
    lim.block("k", datetime.timedelta(minutes=2))
    assert lim.check("k", p).retry_after_ms == 120_000
    lim.unblock("k")
    d = lim.check("k", p)
    assert d.allowed and d.remaining == 9  # the blocked checks charged nothing
    lim.unblock("k")  # not blocked: succeeds
    lim.unblock("never-seen")

    lim.block("t", "250ms")
    clock.advance(0.249)
    assert lim.check("t", p).retry_after_ms == 1
    clock.advance(0.001)
    assert lim.check("t", p).allowed  # the block lapsed


def test_memory_unblock_forgets_the_strike_counts(lim, clock):
    p = Policy(1, "1m", block="15m", strikes=3, strikes_period="1h")
    lim.check("k", p)
    assert not lim.check("k", p) and not lim.check("k", p)  # strikes 1, 2
    lim.unblock("k")
    assert lim.check("k", p).retry_after_ms == 60_000  # strike 1 again
    assert lim.check("k", p).retry_after_ms == 60_000  # 2
    assert lim.check("k", p).retry_after_ms == 900_000  # 3: blocked


def test_memory_reset_lifts_a_block(lim, clock):
    p = Policy(2, "1m", block="15m", strikes=2, strikes_period="1h")
    lim.check("k", p, cost=2)
    lim.check("k", p)
    lim.check("k", p)
    assert blocked(lim.check("k", p), 899)
    lim.reset("k")
    d = lim.check("k", p)
    assert d.allowed and d.remaining == 1
    lim.block("k", "1h")
    lim.reset("k")
    assert lim.check("k", p).allowed
    # the strike counts go too: one denial, a reset, one denial: no block
    lim.check("s", p, cost=2)
    assert lim.check("s", p).retry_after_ms == 30_000  # strike 1
    lim.reset("s")
    lim.check("s", p, cost=2)
    assert lim.check("s", p).retry_after_ms == 30_000  # strike 1 again
    assert lim.check("s", p).retry_after_ms == 900_000  # strike 2: blocked


def test_memory_a_refund_runs_while_blocked(lim, clock):
    p = Policy(5, "1h", "fixed_window")
    assert lim.check("k", p, cost=3).remaining == 2
    lim.block("k", "10m")
    d = lim.refund("k", p, amount=2)
    assert d.allowed and d.remaining == 4  # the refund reports the state after it
    assert blocked(lim.check("k", p, cost=0), 600)  # still blocked
    d = lim.check("k", p, cost=-1)
    assert d.allowed and d.remaining == 5
    with pytest.raises(NothingToRefund):
        lim.refund("k", p)
    lim.unblock("k")
    assert lim.check("k", p, cost=0).remaining == 5


@pytest.mark.parametrize(
    "duration",
    [0, -1, 0.0, -0.5, datetime.timedelta(0), datetime.timedelta(milliseconds=-1), "0s", 2**41, 2**62, float("nan"),
     float("inf"), 0.0001, "soon", "-1s", "99999999999999999999d"],
)
def test_block_duration_out_of_range_is_invalid_argument(lim, duration):
    with pytest.raises(InvalidArgument) as info:
        lim.block("k", duration)
    assert info.value.code == "RL_E_INVALID_ARG"
    assert isinstance(info.value, ValueError)
    assert "duration" in str(info.value)
    assert lim.check("k", Policy(1, "1h")).allowed  # nothing was blocked


def test_block_and_unblock_argument_errors(lim):
    with pytest.raises(TypeError, match="duration must be seconds"):
        lim.block("k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not bool"):
        lim.block("k", True)
    with pytest.raises(TypeError, match="key must be str or bytes"):
        lim.block(42, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be str or bytes"):
        lim.unblock(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lim.block("k")  # type: ignore[call-arg]
    for call in (lambda: lim.block("", 1), lambda: lim.unblock("")):
        with pytest.raises(InvalidArgument) as info:
            call()
        assert info.value.code == "RL_E_KEY_INVALID"
    with Limiter(max_key_len=4) as small:
        with pytest.raises(InvalidArgument) as info:
            small.block("toolong", 1)
        assert info.value.code == "RL_E_KEY_TOO_LONG"
    lim.block(key="k", duration=1)  # keywords
    lim.unblock(key="k")


def test_block_after_close_raises(clock):
    lim = Limiter(clock=clock)
    lim.close()
    for call in (lambda: lim.block("k", 1), lambda: lim.unblock("k")):
        with pytest.raises(tollgate.TollgateConnectionError) as info:
            call()
        assert info.value.code == "RL_E_CLOSED"


def test_a_clock_error_surfaces_from_block():
    def broken() -> int:
        raise ZeroDivisionError("clock")

    with Limiter(clock=broken) as lim:
        with pytest.raises(ZeroDivisionError):
            lim.block("k", 1)
        with pytest.raises(ZeroDivisionError):
            lim.unblock("k")


# ---- Redis ---------------------------------------------------------------------------


@pytest.fixture
def rlim(redis_server: Any, prefix: str) -> Any:
    with Limiter(redis_server.url, key_prefix=prefix, deny_cache=False, failure_mode="error") as limiter:
        yield limiter


# Strike windows are epoch-aligned: 10000 days (the current one runs from
# 2024-10 to 2052) keeps a window boundary out of a test's few milliseconds.
LONG = "10000d"


@needs_redis
def test_redis_policy_block_after_the_first_denial(rlim):
    p = Policy(2, "1h", block="1h")
    assert rlim.check("k", p, cost=2).allowed
    d = rlim.check("k", p)
    assert not d.allowed and d.remaining == 0 and d.source == "store"
    assert 3_599_000 <= d.retry_after_ms <= 3_600_000  # not GCRA's 30 minutes
    d = rlim.check("k", p, cost=0)
    assert blocked(d, 3590)
    assert rlim.check("other", p).allowed


@needs_redis
def test_redis_strikes_block_at_the_third_denial(rlim):
    p = Policy(1, "1h", block="1d", strikes=3, strikes_period=LONG)
    assert rlim.check("k", p).allowed
    for strike in (1, 2):
        d = rlim.check("k", p)
        assert not d.allowed and 3_590_000 <= d.retry_after_ms <= 3_600_000, strike
    d = rlim.check("k", p)
    assert not d.allowed and 86_390_000 <= d.retry_after_ms <= 86_400_000
    assert blocked(rlim.check("k", p), 86_000)


@needs_redis
def test_redis_a_blocked_key_is_denied_under_any_policy(rlim):
    login = Policy(1, "1h", block="1d", name="login")
    rlim.check("k", login)
    assert not rlim.check("k", login)
    others = [Policy(1000, "1s"), Policy(5, "1h", "fixed_window"), Policy(10, "1m", "sliding_window")]
    for other in others:
        d = rlim.check("k", other)
        assert blocked(d, 86_000) and d.limit == other.limit
    assert blocked(rlim.check("k", *others), 86_000)
    rlim.unblock("k")
    assert rlim.check("k", others[1], cost=0).remaining == 5  # nothing was charged
    assert rlim.check("k", *others).allowed


@needs_redis
def test_redis_explicit_block_unblock_and_reset(rlim):
    p = Policy(10, "1m")
    rlim.block("k", 30)
    d = rlim.check("k", p)
    assert blocked(d, 29) and d.retry_after <= 30
    rlim.block("k", "1h")
    assert 3_590_000 <= rlim.check("k", p).retry_after_ms <= 3_600_000
    rlim.block(b"k", datetime.timedelta(seconds=5))  # a shorter block replaces it
    assert 4_000 <= rlim.check("k", p).retry_after_ms <= 5_000
    rlim.unblock("k")
    d = rlim.check("k", p)
    assert d.allowed and d.remaining == 9
    rlim.unblock("k")
    rlim.unblock("never-seen")

    rlim.block("r", "1h")
    assert not rlim.check("r", p)
    rlim.reset("r")
    assert rlim.check("r", p).allowed

    # a policy's block, lifted by reset and by unblock (named: the unnamed
    # policy checked after it, at position 0 too, has another identity)
    q = Policy(1, "1h", block="1h", name="login")
    for lift in (rlim.reset, rlim.unblock):
        rlim.check("q", q)
        assert not rlim.check("q", q)
        assert not rlim.check("q", Policy(100, "1s"))
        lift("q")
        assert rlim.check("q", Policy(100, "1s")).allowed
        rlim.reset("q")


@needs_redis
def test_redis_unblock_forgets_the_strike_counts(rlim):
    p = Policy(1, "1h", block="1d", strikes=3, strikes_period=LONG)
    rlim.check("k", p)
    assert not rlim.check("k", p) and not rlim.check("k", p)
    rlim.unblock("k")
    assert rlim.check("k", p).retry_after_ms <= 3_600_000
    assert rlim.check("k", p).retry_after_ms <= 3_600_000
    assert rlim.check("k", p).retry_after_ms > 86_000_000


@needs_redis
def test_redis_a_refund_runs_while_blocked(rlim):
    p = Policy(5, "1d", "fixed_window")
    assert rlim.check("k", p, cost=3).remaining == 2
    rlim.block("k", "10m")
    d = rlim.refund("k", p, amount=2)
    assert d.allowed and d.remaining == 4 and d.source == "store"
    assert blocked(rlim.check("k", p, cost=0), 590)
    rlim.unblock("k")
    assert rlim.check("k", p, cost=0).remaining == 4


@needs_redis
def test_redis_block_errors_and_async_checks(rlim):
    for duration in (0, -1, datetime.timedelta(0), 2**41):
        with pytest.raises(InvalidArgument) as info:
            rlim.block("k", duration)
        assert info.value.code == "RL_E_INVALID_ARG"
    assert rlim.check("k", Policy(1, "1h")).allowed
    rlim.reset("k")

    async def run() -> None:
        p = Policy(1, "1h", block="1h", name="login")
        assert (await rlim.check_async("a", p)).allowed
        d = await rlim.check_async("a", p)
        assert not d.allowed and d.retry_after_ms > 3_590_000
        d = await rlim.check_async("a", Policy(100, "1s"))
        assert blocked(d, 3590)
        rlim.unblock("a")
        assert (await rlim.check_async("a", Policy(100, "1s"))).allowed

    asyncio.run(run())


@needs_redis
def test_redis_keys_lists_states_of_block_policies(rlim):
    p = Policy(3, "1h", block="1h", strikes=2, strikes_period=LONG, name="login")
    rlim.check("k", p, cost=3)
    assert not rlim.check("k", p)  # strike 1
    states = list(rlim.keys(p))
    assert [(s.key, s.policy_index, s.remaining) for s in states] == [("k", 0, 0)]
    assert states[0].policy is p
    assert not rlim.check("k", p)  # strike 2: blocked
    # the block and its strike counts are not listed as states
    assert [(s.key, s.policy_index) for s in rlim.keys(p)] == [("k", 0)]


@needs_redis
def test_redis_block_shared_by_two_limiters(redis_server, prefix):
    # one process blocks, another (its own connections) is denied; with the
    # deny cache off, an unblock takes effect everywhere at once
    opts = dict(key_prefix=prefix, deny_cache=False, failure_mode="error")
    with Limiter(redis_server.url, **opts) as a, Limiter(redis_server.url, **opts) as b:
        p = Policy(10, "1m")
        a.block("shared", "1h")
        assert blocked(b.check("shared", p), 3590)
        b.unblock("shared")
        assert a.check("shared", p).allowed
