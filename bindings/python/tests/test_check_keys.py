"""Limiter.check_keys and check_keys_async (rl_check_keys): several
(key, policies) pairs in one decision, all or nothing, on the memory store
and on a real redis-server (conftest.py). policy_index counts the policies
pair by pair; a refund goes to every pair with usage; a blocked key denies;
bad input raises with a message naming the pair."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any, Iterator

import pytest

import tollgate
from tollgate import InvalidArgument, Limiter, NothingToRefund, Policy

from conftest import needs_redis

T0 = 1_700_000_000_000_000  # a fixed clock reading, us


def exactly(text: str) -> str:
    return "^" + re.escape(text) + "$"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def lim(request: Any) -> Iterator[Limiter]:
    """A limiter on the memory store (a pinned clock) or on the session's
    redis-server (a key prefix of the test's own)."""
    if request.param == "memory":
        with Limiter(clock=Clock()) as limiter:
            yield limiter
    else:
        server = request.getfixturevalue("redis_server")
        prefix = request.getfixturevalue("prefix")
        with Limiter(server.url, key_prefix=prefix, deny_cache=False, failure_mode="error") as limiter:
            yield limiter


# Long periods: nothing refills while a test runs on Redis's own clock.
GLOBAL = Policy(5, "1000d", name="global")
LOGIN = Policy(2, "1000d", "fixed_window", name="login")


def peek(limiter: Limiter, key: Any, *policies: Policy) -> int:
    return limiter.check(key, *policies, cost=0).remaining


# ---- all or nothing ---------------------------------------------------------------


def test_a_route_denial_charges_nothing_under_the_global_limit(lim: Limiter) -> None:
    pairs = [("ip:1", GLOBAL), ("login|ip:1", [LOGIN])]
    first = lim.check_keys(pairs)
    assert first.allowed and first.policy_index == 1 and first.remaining == 1  # the route binds
    assert lim.check_keys(pairs).allowed
    for _ in range(3):
        d = lim.check_keys(pairs)
        assert not d.allowed and d.policy_index == 1 and d.limit == 2
    # Only the two allowed checks were charged under the global limit.
    assert peek(lim, "ip:1", GLOBAL) == 3
    assert peek(lim, "login|ip:1", LOGIN) == 0


def test_a_global_denial_charges_nothing_on_the_route(lim: Limiter) -> None:
    tight = Policy(1, "1000d", name="global")
    route = Policy(10, "1000d", name="search")
    assert lim.check("u", tight).allowed  # the global limit is used up elsewhere
    d = lim.check_keys([("u", [tight]), ("search|u", [route])])
    assert not d.allowed and d.policy_index == 0 and d.limit == 1
    assert peek(lim, "search|u", route) == 10
    # cost 0 peeks both: nothing is charged
    p = lim.check_keys([("u", [tight]), ("search|u", [route])], cost=0)
    assert not p.allowed
    assert peek(lim, "search|u", route) == 10


def test_policy_index_counts_the_policies_pair_by_pair(lim: Limiter) -> None:
    a = [Policy(100, "1000d", name="a0"), Policy(50, "1000d", name="a1")]
    b = [Policy(30, "1000d", name="b0"), Policy(3, "1000d", name="b1"), Policy(40, "1000d", name="b2")]
    c = Policy(20, "1000d", name="c0")
    d = lim.check_keys([("a", a), ("b", tuple(b)), ("c", c)])
    # allowed: the fewest remaining, b1, is the 4th policy in all (index 3)
    assert d.allowed and d.policy_index == 3 and d.limit == 3 and d.remaining == 2
    d = lim.check_keys([("a", a), ("b", b), ("c", c)], cost=3)
    assert not d.allowed and d.policy_index == 3
    # nothing of the denied call was charged on any key
    assert [peek(lim, "a", *a), peek(lim, "b", *b), peek(lim, "c", c)] == [49, 2, 19]
    # c's policy alone denies: index 5
    d = lim.check_keys([("a", a), ("b", b), ("c", c)], cost=20)
    assert not d.allowed and d.policy_index == 3  # b1 (2 left) waits longest
    d = lim.check_keys([("a", a), ("c", c)], cost=20)
    assert not d.allowed and d.policy_index == 2 and d.limit == 20


def test_a_refund_goes_to_every_pair_with_usage(lim: Limiter) -> None:
    g = Policy(10, "1000d", name="g")
    r = Policy(10, "1000d", name="r")
    assert lim.check_keys([("x", g), ("route|x", r)], cost=4).allowed
    assert lim.check("only-global", g, cost=2).allowed
    back = lim.check_keys([("x", g), ("route|x", r)], cost=-3)
    assert back.allowed
    assert [peek(lim, "x", g), peek(lim, "route|x", r)] == [9, 9]
    # one pair with usage is enough; the other is skipped
    assert lim.check_keys([("only-global", g), ("route|only-global", r)], cost=-1).allowed
    assert [peek(lim, "only-global", g), peek(lim, "route|only-global", r)] == [9, 10]
    # none has usage: NothingToRefund (RL_E_NOT_FOUND), nothing written
    with pytest.raises(NothingToRefund) as info:
        lim.check_keys([("fresh", g), ("route|fresh", r)], cost=-1)
    assert info.value.code == "RL_E_NOT_FOUND"


def test_a_blocked_key_denies_the_whole_check(lim: Limiter) -> None:
    g = Policy(10, "1000d", name="g")
    r = Policy(10, "1000d", name="r")
    lim.block("route|b", 3600)
    d = lim.check_keys([("b", g), ("route|b", r)])
    assert not d.allowed and d.policy_index == 1
    assert d.retry_after > 3000
    assert peek(lim, "b", g) == 10  # the other key was not charged
    lim.unblock("route|b")
    assert lim.check_keys([("b", g), ("route|b", r)]).allowed
    assert peek(lim, "b", g) == 9


def test_str_and_bytes_keys_and_one_pair(lim: Limiter) -> None:
    g = Policy(3, "1000d")
    d = lim.check_keys([(b"bin\x00key", g)])
    assert d.allowed and d.remaining == 2 and d.policy_index == 0
    assert peek(lim, b"bin\x00key", g) == 2
    # a str and the bytes of its UTF-8 are one key
    assert lim.check_keys([("caf\u00e9", g), (b"other", [g])]).allowed
    assert peek(lim, "caf\u00e9".encode(), g) == 2
    # pairs may be lists, and the pairs a tuple
    assert lim.check_keys((["l1", [g]], ["l2", (g,)])).allowed


def test_check_keys_matches_check_for_one_pair(lim: Limiter) -> None:
    ps = [Policy(7, "1000d", name="p"), Policy(4, "1000d", "sliding_window", name="q")]
    for _ in range(6):
        a = lim.check("one", *ps)
        b = lim.check_keys([("one-k", ps)])
        assert (a.allowed, a.limit, a.remaining, a.policy_index) == (b.allowed, b.limit, b.remaining, b.policy_index)


# ---- errors ---------------------------------------------------------------------------


def test_errors_name_the_pair(lim: Limiter) -> None:
    g = Policy(5, "1000d")
    cases = [
        ([("a", g), ("a", [Policy(5, "1000d", "fixed_window")])],
         "pairs[1]: the key of pairs[0] again (a key appears once: give it all its policies in one pair)"),
        ([("a", g), (b"a", g)],
         "pairs[1]: the key of pairs[0] again (a key appears once: give it all its policies in one pair)"),
        ([], "pairs: expected 1 to 8 (key, policies) pairs, got 0"),
        ([("k%d" % i, g) for i in range(9)], "pairs: expected 1 to 8 (key, policies) pairs, got 9"),
        ([("a", [Policy(i + 1, "1h") for i in range(9)]), ("b", [Policy(i + 1, "1h") for i in range(8)])],
         "pairs: at most 16 policies in all the pairs, got 17"),
        ([("a", g), ("b", [])], "pairs[1]: no policies (give a tollgate.Policy or a list of 1 or more)"),
    ]
    for pairs, message in cases:
        with pytest.raises(InvalidArgument, match=exactly(message)) as info:
            lim.check_keys(pairs)
        assert info.value.code == "RL_E_INVALID_ARG"
    with pytest.raises(InvalidArgument, match=exactly("pairs[1]: key: must not be empty")) as info:
        lim.check_keys([("a", g), ("", g)])
    assert info.value.code == "RL_E_KEY_INVALID"
    with pytest.raises(InvalidArgument, match=exactly("pairs[0]: key: 513 bytes exceeds max_key_len 512")) as info:
        lim.check_keys([("x" * 513, g)])
    assert info.value.code == "RL_E_KEY_TOO_LONG"
    # the same policy twice within a pair: the library's check, named
    with pytest.raises(InvalidArgument, match=r"^pairs\[1\]: ") as info:
        lim.check_keys([("a", g), ("b", [g, g])])
    assert info.value.code == "RL_E_POLICY"
    # the 8 keys and 16 policies the library takes pass
    assert lim.check_keys([("k%d" % i, [Policy(j + 1, "1h") for j in range(2)]) for i in range(8)]).allowed
    # none of the refused calls charged anything
    assert peek(lim, "a", g) == 5 and peek(lim, "b", g) == 5


def test_type_errors(lim: Limiter) -> None:
    g = Policy(5, "1000d")
    cases = [
        ("ab", "check_keys() pairs must be a list of (key, policies) pairs, not str"),
        (None, "check_keys() pairs must be a list of (key, policies) pairs, not NoneType"),
        ({"a": g}, "check_keys() pairs must be a list of (key, policies) pairs, not dict"),
        (("a", g), "check_keys() pairs[0] must be a (key, policies) pair, not str (pass a list of pairs: "
                   "[(key, policies), ...])"),
        ([("a",)], "check_keys() pairs[0] must be a (key, policies) pair of 2 items, not 1"),
        ([("a", g, 1)], "check_keys() pairs[0] must be a (key, policies) pair of 2 items, not 3"),
        ([("a", g), 5], "check_keys() pairs[1] must be a (key, policies) pair, not int"),
        ([(1, g)], "check_keys() pairs[0]: the key must be str or bytes, not int"),
        ([("a", "100/h")], "check_keys() pairs[0]: policies must be a tollgate.Policy or a list of them, not str"),
        ([("a", [g, "x"])], "check_keys() pairs[0]: policies must be tollgate.Policy, not str (index 1)"),
        ([("a", None)], "check_keys() pairs[0]: policies must be a tollgate.Policy or a list of them, not NoneType"),
    ]
    for pairs, message in cases:
        with pytest.raises(TypeError, match=exactly(message)):
            lim.check_keys(pairs)
    with pytest.raises(TypeError, match="cost must be an int, not float"):
        lim.check_keys([("a", g)], cost=1.0)
    with pytest.raises(TypeError, match="cost must be an int, not bool"):
        lim.check_keys([("a", g)], cost=True)
    with pytest.raises(TypeError):
        lim.check_keys([("a", g)], 1)  # cost is keyword-only
    with pytest.raises(TypeError, match="never initialized"):
        lim.check_keys([("a", Policy.__new__(Policy))])


def test_closed_limiter() -> None:
    lim = Limiter()
    lim.close()
    with pytest.raises(tollgate.TollgateConnectionError) as info:
        lim.check_keys([("a", Policy(1, "1s"))])
    assert info.value.code == "RL_E_CLOSED"


def test_the_keys_stay_alive_while_the_list_changes() -> None:
    # The binding copies the pairs (tuples) before calling C: a list the
    # caller empties right after is no concern.
    with Limiter() as limiter:
        pairs = [("k-%d" % i, [Policy(10, "1h")]) for i in range(8)]
        assert limiter.check_keys(pairs).allowed
        pairs.clear()
        assert peek(limiter, "k-7", Policy(10, "1h")) == 9
        # without a clock the memory store answers check_keys_async at once
        d = asyncio.run(limiter.check_keys_async([("k-0", Policy(10, "1h")), ("z", Policy(1, "1h"))]))
        assert type(d) is tollgate.Decision and d.allowed and d.policy_index == 1


# ---- asyncio ---------------------------------------------------------------------------


def test_check_keys_async(lim: Limiter) -> None:
    pairs = [("ip:9", GLOBAL), ("login|ip:9", [LOGIN])]

    async def main() -> list:
        return await asyncio.gather(*(lim.check_keys_async(pairs) for _ in range(4)))

    got = asyncio.run(main())
    assert sorted(d.allowed for d in got) == [False, False, True, True]
    assert all(d.policy_index == 1 for d in got)
    assert peek(lim, "ip:9", GLOBAL) == 3

    async def errors() -> None:
        with pytest.raises(InvalidArgument, match=r"^pairs\[1\]: the key of pairs\[0\] again"):
            await lim.check_keys_async([("a", GLOBAL), ("a", LOGIN)])
        with pytest.raises(TypeError, match=r"^check_keys_async\(\) pairs\[0\]: the key must be str or bytes"):
            await lim.check_keys_async([(3, GLOBAL)])
        with pytest.raises(NothingToRefund):
            await lim.check_keys_async([("never", GLOBAL), ("never2", LOGIN)], cost=-1)
        d = await lim.check_keys_async([("ip:9", GLOBAL), ("login|ip:9", [LOGIN])], cost=0)
        assert not d.allowed

    asyncio.run(errors())


def test_check_keys_async_needs_a_running_loop(redis_server: Any, prefix: str) -> None:
    with Limiter(redis_server.url, key_prefix=prefix) as limiter:
        coro = limiter.check_keys_async([("a", GLOBAL)])
        with pytest.raises(RuntimeError, match="check_keys_async"):
            coro.send(None)
        coro.close()


# ---- the GIL -----------------------------------------------------------------------------


@needs_redis
def test_gil_is_released_while_redis_is_frozen(own_redis: Any) -> None:
    lim = Limiter(own_redis.url, timeout_ms=600, failure_mode="open")
    assert lim.ping() >= 0
    own_redis.freeze()
    try:
        ticks = []
        stop = threading.Event()

        def ticker() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                time.sleep(0.001)
            ticks.append(n)

        t = threading.Thread(target=ticker)
        t.start()
        started = time.monotonic()
        d = lim.check_keys([("k", Policy(5, "1h")), ("route|k", Policy(1, "1h"))])
        elapsed = time.monotonic() - started
        stop.set()
        t.join()
        assert d.source == "fail_open" and d.allowed
        assert 0.4 < elapsed < 3.0
        assert ticks[0] > 100, ticks
    finally:
        own_redis.thaw()
        lim.close()


def test_exports() -> None:
    assert tollgate._native.MAX_KEYS == 8
    assert "pair by pair" in tollgate.Decision.policy_index.__doc__
    assert "all or nothing" in Limiter.check_keys.__doc__
