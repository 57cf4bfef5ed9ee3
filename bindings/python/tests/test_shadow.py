"""Shadow mode (docs/algorithms.md, "Shadow mode"; the C++ test is
tests/test_shadow.cpp): a policy with shadow=True ("100/h shadow") is
evaluated and its state kept as if enforced, but its denial does not deny
the check: the decision is allowed with ``shadow`` True and describes the
would-be denial. A Limiter(shadow=True) answers every denial (a policy's,
a block's, fail closed's) that way. Turning shadow off keeps usage;
``health()["shadow_denied"]`` counts the shadowed denials.

Memory store with a pinned clock (exact values) and a real redis-server
(conftest.py; the server's clock, so bounds)."""

from __future__ import annotations

import asyncio
import datetime
import pickle
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import pytest

import tollgate
from tollgate import Decision, InvalidArgument, Limiter, Policy

from conftest import Clock, Store, needs_redis


@pytest.fixture
def store(store: Store) -> Store:
    """conftest's `store`, its memory limiters on one pinned clock (20 s into
    a minute); Redis ones share state under the test's own prefix."""
    store.pinned = True
    return store


def would_deny_for_a_minute(d: Decision, store: Store) -> None:
    """A 1/m policy's shadowed denial right after its one allowed check:
    allowed, shadow, and the denial's numbers (exact on the pinned clock;
    the Redis server's clock moves a little)."""
    assert d.allowed and bool(d) and d.shadow is True
    assert d.limit == 1 and d.remaining == 0 and d.source == "store"
    if store.kind == "memory":
        assert d.retry_after_ms == 60_000 and d.retry_after == 60.0
    else:
        # Not charged: a charge would push the wait towards two minutes.
        assert 50_000 < d.retry_after_ms <= 60_000, d
    assert d.reset_after_ms >= d.retry_after_ms


# ---- a shadow policy -------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: Policy.parse("1/m shadow"), lambda: Policy(1, "1m", shadow=True)])
def test_a_shadow_policy_allows_reports_and_keeps_usage(store: Store, make: Callable[[], Policy]) -> None:
    lim = store.limiter()
    shadow = make()
    assert shadow.shadow is True
    first = lim.check("sh", shadow)
    assert first.allowed and first.shadow is False and first.remaining == 0
    # The second would be denied: allowed, and says what it would have been.
    for _ in range(3):
        d = lim.check("sh", shadow)
        would_deny_for_a_minute(d, store)
        assert d.policy_index == 0
    assert lim.health()["shadow_denied"] == 3
    # Turning shadow off keeps usage: the same identity (position 0) is now
    # enforced and denies. The shadow denials charged nothing: the wait is
    # still the one the allowed check left (a charge would add a minute).
    enforced = Policy(1, "1m")
    d = lim.check("sh", enforced)
    assert not d.allowed and d.shadow is False
    assert 50_000 < d.retry_after_ms <= 60_000
    if store.kind == "memory":
        assert d.retry_after_ms == 60_000
    assert lim.health()["shadow_denied"] == 3
    # ... and back on: shadow again.
    assert lim.check("sh", shadow).shadow is True
    if store.kind == "memory":
        store.clock.advance(60)
        d = lim.check("sh", shadow)
        assert d.allowed and not d.shadow  # the minute passed


def test_an_enforced_and_a_shadow_policy(store: Store) -> None:
    lim = store.limiter()
    ten = Policy.parse("10/m name=enforced")
    one = Policy.parse("1/m name=trial shadow")
    assert (one.name, one.shadow, ten.shadow) == ("trial", True, False)
    assert lim.check("mixed", ten, one).shadow is False
    # The enforced one is charged every time; the shadow one reports its
    # would-be denial.
    for i in range(2):
        d = lim.check("mixed", ten, one)
        would_deny_for_a_minute(d, store)
        assert d.policy_index == 1
        assert lim.check("mixed", ten, cost=0).remaining == 8 - i
    # The enforced policy's denial is enforced, and charges nothing.
    assert lim.check("mixed", ten, cost=7).remaining == 0
    d = lim.check("mixed", ten, one)
    assert not d.allowed and d.shadow is False
    assert lim.check("mixed", ten, cost=0).remaining == 0
    assert lim.health()["shadow_denied"] == 2


def test_a_shadow_policy_with_a_block_never_blocks(store: Store) -> None:
    lim = store.limiter()
    blocking = Policy.parse("1/m block=1h shadow name=b")
    assert blocking.block_ms == 3_600_000 and blocking.shadow
    assert lim.check("block", blocking).shadow is False
    for _ in range(3):
        assert lim.check("block", blocking).shadow is True
    d = lim.check("block", Policy.parse("100/m name=other"))
    assert d.allowed and d.shadow is False and d.remaining == 99


def test_check_keys_shadow(store: Store) -> None:
    lim = store.limiter()
    per_key = Policy.parse("1/m shadow")
    ten = Policy(10, "1m")
    pairs: List[Tuple[str, Union[Policy, Sequence[Policy]]]] = [("ka", per_key), ("kb", [ten])]
    assert lim.check_keys(pairs).shadow is False
    d = lim.check_keys(pairs)
    would_deny_for_a_minute(d, store)
    assert d.policy_index == 0
    # A shadow denial on one key does not deny the others.
    assert lim.check("kb", ten, cost=0).remaining == 8


def test_the_asyncio_and_waiting_checks_report_shadow(store: Store) -> None:
    lim = store.limiter()
    p = Policy.parse("1/m shadow")
    lim.check("a", p)
    started = time.monotonic()
    d = lim.check_wait("a", p, max_wait=30)  # allowed: returns at once
    assert time.monotonic() - started < 5
    would_deny_for_a_minute(d, store)

    async def main() -> None:
        d = await lim.check_async("a", p)
        would_deny_for_a_minute(d, store)
        d = await lim.check_keys_async([("a", p), ("b", Policy(5, "1m"))])
        would_deny_for_a_minute(d, store)
        started = time.monotonic()
        d = await lim.check_wait_async("a", p, max_wait=30)
        assert time.monotonic() - started < 5
        would_deny_for_a_minute(d, store)

    asyncio.run(main())
    assert lim.health()["shadow_denied"] == 4


def test_a_refund_is_not_shadow(store: Store) -> None:
    lim = store.limiter()
    p = Policy.parse("2/m shadow")
    lim.check("r", p, cost=2)
    assert lim.check("r", p).shadow is True
    d = lim.refund("r", p)
    assert d.allowed and d.shadow is False and d.remaining == 1


# ---- a shadow limiter ---------------------------------------------------------------


def test_a_shadow_limiter_allows_every_denial(store: Store) -> None:
    lim = store.limiter(shadow=True)
    assert lim.shadow is True
    p = Policy(1, "1m")
    assert p.shadow is False
    assert lim.check("lim", p).shadow is False
    d = lim.check("lim", p)
    would_deny_for_a_minute(d, store)
    # A blocked key too.
    lim.block("blocked", 60)
    d = lim.check("blocked", p)
    assert d.allowed and d.shadow is True and d.remaining == 0
    assert 0 < d.retry_after_ms <= 60_000
    h = lim.health()
    assert h["shadow_denied"] == 2
    enforcing = store.limiter()
    assert enforcing.shadow is False
    if store.kind == "redis":
        # The same keys through an enforcing limiter: usage was kept, and
        # the block is real.
        assert not enforcing.check("lim", p).allowed
        assert not enforcing.check("blocked", Policy(100, "1h")).allowed
    assert enforcing.health()["shadow_denied"] == 0


def test_shadow_limiter_option_values_and_other_checks(store: Store) -> None:
    for value, on in ((True, True), (False, False), (None, False)):
        assert store.limiter(shadow=value).shadow is on
    lim = store.limiter(shadow=True)
    many = Policy(1, "1m", name="strict")
    assert lim.check_keys([("x", many), ("y", many)]).shadow is False
    d = lim.check_keys([("x", many), ("y", many)])
    would_deny_for_a_minute(d, store)

    async def main() -> Decision:
        return await lim.check_async("x", many)

    would_deny_for_a_minute(asyncio.run(main()), store)


@needs_redis
def test_a_shadow_limiter_with_redis_down_and_fail_closed(own_redis: Any) -> None:
    url = own_redis.url
    own_redis.kill()
    options: Dict[str, Any] = dict(failure_mode="closed", timeout_ms=300, connect_timeout_ms=200, deny_cache=False)
    with Limiter(url, **options) as enforcing:
        d = enforcing.check("k", Policy(10, "1s"))
        assert not d.allowed and d.shadow is False and d.source == "fail_closed"
    with Limiter(url, shadow=True, **options) as lim:
        d = lim.check("k", Policy(10, "1s"))
        assert d.allowed and d.shadow is True and d.source == "fail_closed"
        assert d.retry_after_ms == 1000

        async def main() -> Decision:
            return await lim.check_async("k", Policy(10, "1s"))

        d = asyncio.run(main())
        assert d.allowed and d.shadow is True and d.source == "fail_closed"
        h = lim.health()
        assert h["shadow_denied"] == 2 and h["fail_closed"] >= 2


# ---- the objects -------------------------------------------------------------------


def test_policy_shadow_attribute_equality_repr_pickle() -> None:
    p = Policy.parse("100/h shadow")
    q = Policy(100, "1h", shadow=True)
    plain = Policy(100, "1h")
    assert p == q and hash(p) == hash(q)
    assert p != plain and plain.shadow is False and Policy.parse("100/h").shadow is False
    assert repr(p) == "Policy(100, '1h', shadow=True)"
    assert repr(plain) == "Policy(100, '1h')"
    full = Policy.parse("5/m name=login block=15m strikes=3/h sliding_window shadow")
    assert full.shadow and full.algorithm == "sliding_window" and full.strikes == 3
    for x in (p, full, Policy(2, datetime.timedelta(seconds=3), "token_bucket", 4, shadow=True)):
        assert eval(repr(x), {"Policy": Policy}) == x
        y = pickle.loads(pickle.dumps(x))
        assert y == x and y.shadow is True
    # An enforced policy pickles as before (8 fields), a shadow one adds a 9th.
    assert plain.__getstate__() == (100, 3_600_000, "gcra", 0, None, 0, 0, 0)
    assert p.__getstate__() == (100, 3_600_000, "gcra", 0, None, 0, 0, 0, True)
    old = Policy.__new__(Policy)
    old.__setstate__((100, 3_600_000, "gcra", 0, None, 0, 0, 0))
    assert old == plain and old.shadow is False
    assert pickle.loads(pickle.dumps(plain)).shadow is False
    assert len({p, q, plain}) == 2


def test_decision_shadow_repr_and_equality() -> None:
    clock = Clock()
    with Limiter(clock=clock) as lim, Limiter(clock=clock, shadow=True) as shadow_lim:
        p = Policy(1, "1m")
        lim.check("k", p)
        shadow_lim.check("k", p)
        denied = lim.check("k", p)
        shadowed = shadow_lim.check("k", Policy(1, "1m"))
        assert not denied.shadow and shadowed.shadow
        assert repr(shadowed) == (
            "Decision(allowed=True, limit=1, remaining=0, reset_after=60.0, retry_after=60.0, "
            "source='store', policy_index=0, shadow=True)"
        )
        assert repr(denied).endswith("policy_index=0, shadow=False)")
        again = shadow_lim.check("k", Policy(1, "1m"))
        assert again == shadowed and hash(again) == hash(shadowed)
        assert again != denied
        with pytest.raises(AttributeError):
            shadowed.shadow = False  # type: ignore[misc]
        assert Decision.shadow.__doc__ and "shadow" in Decision.shadow.__doc__


def test_rate_limit_headers_of_a_shadow_decision() -> None:
    """rl_headers_format with an allowed decision whose retry_after > 0:
    no Retry-After; the other fields describe the would-be denial."""
    with Limiter(clock=Clock()) as lim:
        p = Policy(1, "1m", shadow=True)
        lim.check("h", p)
        d = lim.check("h", p)
        assert d.shadow and d.retry_after_ms == 60_000
        assert tollgate.rate_limit_headers(d, p, name="trial") == {
            "RateLimit-Policy": '"trial";q=1;w=60',
            "RateLimit": '"trial";r=0;t=60',
            "X-RateLimit-Limit": "1",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "60",
        }


@pytest.mark.parametrize(
    "text, offset",
    [("10/s shadow shadow", 12), ("10/s shadow=1", None), ("10/s shadows", None), ("shadow", None)],
)
def test_bad_shadow_text(text: str, offset: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        Policy.parse(text)
    assert info.value.code == "RL_E_POLICY"
    assert isinstance(info.value, ValueError)
    if offset is not None:
        assert "shadow given twice" in str(info.value) and "(at byte %d)" % offset in str(info.value)


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_bad_shadow_values(value: Any) -> None:
    with pytest.raises(TypeError, match="^shadow must be a bool, not "):
        Policy(10, "1s", shadow=value)
    if value is not None:  # None means the default for a Limiter option
        with pytest.raises(TypeError, match="^shadow must be a bool, not "):
            Limiter(shadow=value)


def test_health_has_shadow_denied_on_a_fresh_limiter() -> None:
    with Limiter() as lim:
        assert lim.health()["shadow_denied"] == 0
        assert lim.shadow is False
