"""Waiting until allowed (docs/waiting.md, docs/python.md "Waiting"):
check_wait / acquire_wait (the C rl_check_wait and rl_lease_acquire_wait,
the GIL released) and their asyncio twins check_wait_async /
acquire_wait_async (the same rule on the event loop's timers), on the memory
store and on a real redis-server, as tests/test_waiting.cpp does: a check
sleeps its retry_after between tries and returns at once when no wait can
help or the wait left is too short; a lease wait steps up to its hint and
wakes at once on a release in this process; errors end a wait; a cancelled
asyncio wait stops and keeps no lease; bad waits are InvalidArgument naming
max_wait.

Timings are asserted only as deadline bounds (a call ended before, or not
before, a given time), never as exact durations.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import threading
import time
from typing import Any, Callable, List

import pytest

import tollgate
from tollgate import (
    Decision,
    InvalidArgument,
    Lease,
    LeaseDenied,
    LeaseResult,
    Limiter,
    Policy,
    TollgateConnectionError,
)

from conftest import LONG, Store, abandoned_lease_released, needs_redis, take

MakeLimiter = Callable[..., Limiter]


@pytest.fixture
def make_limiter(store: Store) -> MakeLimiter:
    """Makes limiters of one store (conftest's `store`: closed after the
    test). Redis ones share the test's own key prefix and have no deny
    cache, so every try reaches the server (and is counted)."""
    store.redis_options.update(timeout_ms=5000, deny_cache=False)
    return store.limiter


class Waits:
    """The waiting calls, through the blocking API ("sync") or the asyncio
    one run to completion on a fresh loop ("async"); `elapsed` is the time
    the last call took (measured inside the loop for "async")."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.elapsed = 0.0

    def _timed(self, start: Callable[[], Any]) -> Any:
        if self.mode == "sync":
            t0 = time.monotonic()
            out = start()
            self.elapsed = time.monotonic() - t0
            return out

        async def main() -> Any:
            t0 = time.monotonic()
            out = await start()
            self.elapsed = time.monotonic() - t0
            return out

        return asyncio.run(main())

    def check_wait(self, lim: Limiter, key: Any, *policies: Policy, **kw: Any) -> Decision:
        fn = lim.check_wait if self.mode == "sync" else lim.check_wait_async
        return self._timed(lambda: fn(key, *policies, **kw))

    def acquire_wait(self, lim: Limiter, key: Any, **kw: Any) -> LeaseResult:
        fn = lim.acquire_wait if self.mode == "sync" else lim.acquire_wait_async
        return self._timed(lambda: fn(key, **kw))


@pytest.fixture(params=["sync", "async"])
def waits(request: pytest.FixtureRequest) -> Waits:
    return Waits(request.param)


def checks(lim: Limiter) -> int:
    return lim.health()["checks"]


def in_flight_now(lim: Limiter, key: Any) -> int:
    """The key's leases held now (a probe: takes one place of many and gives
    it back)."""
    probe = take(lim, key, 1000)
    assert probe.release() is True
    return probe.in_flight - 1


# ---- checks ----------------------------------------------------------------------------------


def test_a_check_waits_its_retry_after_and_passes_in_at_most_three_tries(
    make_limiter: MakeLimiter, waits: Waits
) -> None:
    lim = make_limiter()
    p = Policy(1, "300ms")
    assert lim.check("k", p).allowed  # just charged: the next passes in 300 ms
    before = checks(lim)
    d = waits.check_wait(lim, "k", p, max_wait=5)
    assert isinstance(d, Decision) and d.allowed and d.retry_after == 0.0
    assert checks(lim) - before <= 3  # one per retry_after, not a loop
    assert waits.elapsed < 5


def test_a_wait_shorter_than_retry_after_returns_the_denial_at_once(make_limiter: MakeLimiter, waits: Waits) -> None:
    lim = make_limiter()
    p = Policy(1, "300ms")
    assert lim.check("k", p).allowed
    before = checks(lim)
    d = waits.check_wait(lim, "k", p, max_wait=0.1)
    assert not d.allowed
    assert d.retry_after > 0.1  # what it could not wait, for the caller to use
    assert waits.elapsed < 0.1
    assert checks(lim) - before == 1


def test_a_cost_above_the_capacity_returns_retry_never_at_once(make_limiter: MakeLimiter, waits: Waits) -> None:
    lim = make_limiter()
    p = Policy(5, "1s")
    d = waits.check_wait(lim, "k", p, cost=6, max_wait=60)
    assert not d.allowed
    assert d.retry_after_ms == -1 and d.retry_after == math.inf
    assert waits.elapsed < 1


def test_an_allowed_check_returns_at_once_and_charges_once(make_limiter: MakeLimiter, waits: Waits) -> None:
    lim = make_limiter()
    p = Policy(10, "1m")
    before = checks(lim)
    d = waits.check_wait(lim, "k", p, max_wait=60, cost=3)
    assert d.allowed and d.remaining == 7 and checks(lim) - before == 1
    # several policies, as check() takes them
    q = Policy(100, "1h", name="hourly")
    d = waits.check_wait(lim, "k2", Policy(10, "1m", name="minute"), q, max_wait=1)
    assert d.allowed


@pytest.mark.parametrize("max_wait", [0, 0.0, datetime.timedelta(0)])
def test_a_wait_of_zero_is_one_try(make_limiter: MakeLimiter, waits: Waits, max_wait: Any) -> None:
    lim = make_limiter()
    p = Policy(1, "1m")
    assert waits.check_wait(lim, "k", p, max_wait=max_wait).allowed
    before = checks(lim)
    d = waits.check_wait(lim, "k", p, max_wait=max_wait)
    assert not d.allowed and checks(lim) - before == 1
    assert d.retry_after > 59 and d.remaining == 0  # the denial as a plain check answers it


@pytest.mark.parametrize("max_wait", [2, 2.0, "2s", "2000ms", datetime.timedelta(seconds=2)])
def test_max_wait_forms(waits: Waits, max_wait: Any) -> None:
    lim = Limiter()
    p = Policy(1, "200ms")
    assert lim.check("k", p).allowed
    assert waits.check_wait(lim, "k", p, max_wait=max_wait).allowed
    lim.close()


def test_waiters_that_share_a_key_all_pass_in_turn(make_limiter: MakeLimiter) -> None:
    # No queue: whichever try comes first after a unit frees takes it; the
    # others are denied again and wait on with the new retry_after.
    lim = make_limiter()
    p = Policy(1, "100ms")

    async def main() -> List[Decision]:
        return await asyncio.gather(*(lim.check_wait_async("k", p, max_wait=10) for _ in range(4)))

    assert all(d.allowed for d in asyncio.run(main()))

    got: List[Decision] = []
    threads = [threading.Thread(target=lambda: got.append(lim.check_wait("t", p, max_wait=10))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 4 and all(d.allowed for d in got)


def test_a_blocking_wait_releases_the_gil() -> None:
    lim = Limiter()
    p = Policy(1, "500ms")
    assert lim.check("k", p).allowed
    ticks = 0
    stop = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        assert lim.check_wait("k", p, max_wait=5).allowed  # ~500 ms asleep
    finally:
        stop.set()
        t.join()
    assert ticks >= 5  # ~100 on an idle machine: the thread ran meanwhile
    lim.close()


def test_an_async_wait_never_blocks_the_loop(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    p = Policy(1, "500ms")
    assert lim.check("k", p).allowed

    async def main() -> None:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(ticker())
        d = await lim.check_wait_async("k", p, max_wait=5)
        stop.set()
        await task
        assert d.allowed and ticks >= 5

    asyncio.run(main())


# ---- Redis away ----------------------------------------------------------------------------


def _down(own_redis: Any, mode: str) -> Limiter:
    """A limiter on a server that was SIGKILLed before it was made."""
    url = own_redis.url
    own_redis.kill()
    return Limiter(url, failure_mode=mode, timeout_ms=500, connect_timeout_ms=200, deny_cache=False)


@needs_redis
def test_fail_closed_ends_a_short_wait_at_once(own_redis: Any, waits: Waits) -> None:
    with _down(own_redis, "closed") as lim:
        d = waits.check_wait(lim, "k", Policy(10, "1s"), max_wait=0.2)
        assert not d.allowed and d.source == "fail_closed" and d.retry_after_ms == 1000
        assert waits.elapsed < 0.2 + 1.5  # one connect attempt, no sleep


@needs_redis
def test_an_error_ends_the_wait(own_redis: Any, waits: Waits) -> None:
    with _down(own_redis, "error") as lim:
        t0 = time.monotonic()
        with pytest.raises(TollgateConnectionError):
            waits.check_wait(lim, "k", Policy(10, "1s"), max_wait=60)
        with pytest.raises(TollgateConnectionError):
            waits.acquire_wait(lim, "k", max_in_flight=1, ttl=LONG, max_wait=60)
        assert time.monotonic() - t0 < 20


@needs_redis
def test_fail_closed_ends_a_short_lease_wait_after_the_wait(own_redis: Any, waits: Waits) -> None:
    # A lease's hint is a bound, not the time it passes: the wait tries on
    # until it is over (then the last denial).
    with _down(own_redis, "closed") as lim:
        got = waits.acquire_wait(lim, "k", max_in_flight=1, ttl=LONG, max_wait=0.2)
        assert not got and got.source == "fail_closed" and got.retry_after_ms == 1000
        assert 0.2 <= waits.elapsed < 0.2 + 10


# ---- leases -------------------------------------------------------------------------


def test_a_lease_wait_on_a_full_key_ends_denied_after_the_wait(make_limiter: MakeLimiter, waits: Waits) -> None:
    lim = make_limiter()
    held = take(lim, "k", 1)
    got = waits.acquire_wait(lim, "k", max_in_flight=1, ttl=LONG, max_wait=0.15)
    assert isinstance(got, LeaseResult) and not got and got.lease is None
    assert got.retry_after > 0.15 and got.in_flight == 1
    assert 0.15 <= waits.elapsed < 0.15 + 1
    assert held.release() is True


def test_a_lease_wait_on_a_free_key_acquires_at_once(make_limiter: MakeLimiter, waits: Waits) -> None:
    lim = make_limiter()
    got = waits.acquire_wait(lim, "k", max_in_flight=2, ttl=LONG, max_wait=60)
    assert got.acquired and isinstance(got.lease, Lease) and got.in_flight == 1
    assert waits.elapsed < 5
    got0 = waits.acquire_wait(lim, "k", max_in_flight=2, ttl=LONG, max_wait=0)  # one try
    assert got0.acquired and got0.in_flight == 2
    assert got.lease.release() and got0.lease is not None and got0.lease.release()


def test_a_waiting_thread_gets_the_lease_when_it_is_released(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    held = take(lim, "k", 1)
    out: List[LeaseResult] = []
    waiter = threading.Thread(
        target=lambda: out.append(lim.acquire_wait("k", max_in_flight=1, ttl=LONG, max_wait=20))
    )
    waiter.start()
    time.sleep(0.1)
    assert held.release() is True
    waiter.join(30)
    assert len(out) == 1 and out[0].acquired and out[0].lease is not None
    assert out[0].lease.release() is True


def test_a_waiting_task_gets_the_lease_when_it_is_released(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()

    async def main() -> None:
        held = take(lim, "k", 1)
        waiter = asyncio.ensure_future(lim.acquire_wait_async("k", max_in_flight=1, ttl=LONG, max_wait=20))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        assert await held.release_async() is True
        got = await asyncio.wait_for(waiter, 25)
        assert got.acquired and got.lease is not None
        # released by a thread (a blocking release) while a task waits
        waiter = asyncio.ensure_future(lim.acquire_wait_async("k", max_in_flight=1, ttl=LONG, max_wait=20))
        await asyncio.sleep(0.1)
        releaser = threading.Thread(target=got.lease.release)
        releaser.start()
        again = await asyncio.wait_for(waiter, 25)
        releaser.join()
        assert again.acquired and again.lease is not None and await again.lease.release_async()

    asyncio.run(main())
    assert tollgate._leases._releases == {}  # no waiter left watching


def test_an_async_waiter_wakes_at_once_on_a_release() -> None:
    # The memory store answers inline, so nothing but the wake-up can run the
    # waiter's next try within a few passes of the loop (no time passes):
    # without it the waiter would sleep its current step (hundreds of ms).
    lim = Limiter()

    async def main() -> None:
        held = take(lim, "k", 1)
        waiter = asyncio.ensure_future(lim.acquire_wait_async("k", max_in_flight=1, ttl=LONG, max_wait=20))
        await asyncio.sleep(1.0)  # its steps are now 320 ms, 640 ms, ...
        assert not waiter.done()
        assert held.release() is True
        for _ in range(20):
            if waiter.done():
                break
            await asyncio.sleep(0)
        assert waiter.done(), "the waiter did not wake on the release"
        got = waiter.result()
        assert got.acquired and got.lease is not None and got.lease.release()

    asyncio.run(main())
    lim.close()


def test_a_holders_lease_ending_by_its_ttl_lets_a_waiter_in(make_limiter: MakeLimiter, waits: Waits) -> None:
    # A holder that never releases (another process, say).
    lim = make_limiter()
    take(lim, "k", 1, ttl=0.3)
    got = waits.acquire_wait(lim, "k", max_in_flight=1, ttl=LONG, max_wait=10)
    assert got.acquired and got.lease is not None
    assert waits.elapsed < 10
    assert got.lease.release() is True


def test_with_lease_wait(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    held = take(lim, "k", 1)
    t0 = time.monotonic()
    with pytest.raises(LeaseDenied) as info:
        with lim.lease("k", max_in_flight=1, ttl=LONG, wait=0.15):
            pass  # not reached
    assert time.monotonic() - t0 >= 0.15
    assert info.value.retry_after > 0.15 and info.value.in_flight == 1

    ctx = lim.lease("k", max_in_flight=1, ttl=LONG, wait="20s")
    assert "wait='20s'" in repr(ctx)
    threading.Timer(0.1, held.release).start()
    with ctx as lease:
        assert isinstance(lease, Lease) and ctx.result is not None and ctx.result.acquired
    assert lease.released and in_flight_now(lim, "k") == 0


def test_async_with_lease_wait(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()

    async def main() -> None:
        held = take(lim, "k", 1)
        t0 = time.monotonic()
        with pytest.raises(LeaseDenied):
            async with lim.lease("k", max_in_flight=1, ttl=LONG, wait=0.15):
                pass
        assert time.monotonic() - t0 >= 0.15

        async def release_soon() -> None:
            await asyncio.sleep(0.1)
            await held.release_async()

        releaser = asyncio.ensure_future(release_soon())
        async with lim.lease("k", max_in_flight=1, ttl=LONG, wait=datetime.timedelta(seconds=20)) as lease:
            assert isinstance(lease, Lease)
        await releaser
        assert lease.released and in_flight_now(lim, "k") == 0

    asyncio.run(main())


# ---- cancellation ----------------------------------------------------------------------


def test_a_cancelled_check_wait_stops_at_once(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    p = Policy(1, "10s")
    assert lim.check("k", p).allowed

    async def main() -> None:
        task = asyncio.ensure_future(lim.check_wait_async("k", p, max_wait=60))
        await asyncio.sleep(0.1)  # asleep until the unit frees
        before = checks(lim)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 1
        await asyncio.sleep(0.2)
        assert checks(lim) == before  # no try after the cancel

    asyncio.run(main())


def test_a_cancelled_lease_wait_stops_and_holds_nothing(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()

    async def main() -> None:
        held = take(lim, "k", 1)
        task = asyncio.ensure_future(lim.acquire_wait_async("k", max_in_flight=1, ttl=LONG, max_wait=60))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 1
        assert await held.release_async() is True
        await asyncio.sleep(0.1)
        assert in_flight_now(lim, "k") == 0  # the cancelled waiter took nothing

        # a context waiting is cancelled the same way, and can be entered again
        held = take(lim, "k", 1)
        ctx = lim.lease("k", max_in_flight=1, ttl=LONG, wait=60)

        async def enter() -> None:
            async with ctx:
                pass

        task = asyncio.ensure_future(enter())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ctx.lease is None
        assert held.release() is True
        await enter()
        assert in_flight_now(lim, "k") == 0

    asyncio.run(main())
    assert tollgate._leases._releases == {}


@needs_redis
def test_a_lease_wait_cancelled_mid_try_releases_the_lease_it_got(own_redis: Any) -> None:
    # The server is frozen during the wait's first try; the task is
    # cancelled; the server thaws and the try completes with a lease, which
    # is released by itself (long before its ttl).
    lim = Limiter(own_redis.url, failure_mode="error", timeout_ms=10_000)
    take(lim, "warm", 1).release()

    async def main() -> None:
        own_redis.freeze()
        try:
            task = asyncio.ensure_future(lim.acquire_wait_async("k", max_in_flight=1, ttl=600, max_wait=60))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            own_redis.thaw()
        await abandoned_lease_released(lim, "k")

    asyncio.run(main())
    lim.close()


# ---- bad input ---------------------------------------------------------------------------

BAD_WAITS = [
    -1,
    -0.5,
    "-1s",
    datetime.timedelta(milliseconds=-1),
    2**40 // 1000 + 1,  # seconds: just above 2^40 ms
    float(2**40) / 1000 + 0.001,
    float("inf"),
    float("nan"),
    0.0005,  # not a whole number of milliseconds
]


@pytest.mark.parametrize("max_wait", BAD_WAITS)
def test_bad_max_wait_is_invalid_argument_naming_it(max_wait: Any) -> None:
    lim = Limiter()
    p = Policy(1, "1s")

    def raises(call: Callable[[], Any], name: str = "max_wait") -> None:
        with pytest.raises(InvalidArgument) as info:
            call()
        assert str(info.value).startswith(name + ": ") and info.value.code == "RL_E_INVALID_ARG"

    raises(lambda: lim.check_wait("k", p, max_wait=max_wait))
    raises(lambda: asyncio.run(lim.check_wait_async("k", p, max_wait=max_wait)))
    raises(lambda: lim.acquire_wait("k", max_in_flight=1, ttl=1, max_wait=max_wait))
    raises(lambda: asyncio.run(lim.acquire_wait_async("k", max_in_flight=1, ttl=1, max_wait=max_wait)))
    raises(lambda: lim.lease("k", max_in_flight=1, ttl=1, wait=max_wait), "wait")
    assert lim.health()["checks"] == 0 and in_flight_now(lim, "k") == 0  # nothing tried
    lim.close()


def test_the_longest_wait_is_accepted() -> None:
    lim = Limiter()
    p = Policy(1, "1s")
    longest = datetime.timedelta(milliseconds=2**40)
    assert lim.check_wait("k", p, max_wait=longest).allowed
    assert lim.check_wait("k", p, cost=2, max_wait=longest).retry_after_ms == -1
    got = lim.acquire_wait("k", max_in_flight=1, ttl=1, max_wait=longest)
    assert got.acquired and got.lease is not None and got.lease.release()
    assert tollgate._native.MAX_WAIT_MS == 2**40
    lim.close()


def test_bad_types() -> None:
    lim = Limiter()
    p = Policy(1, "1s")
    for bad in (True, None, [1], object()):
        with pytest.raises(TypeError, match="max_wait"):
            lim.check_wait("k", p, max_wait=bad)
        with pytest.raises(TypeError, match="max_wait"):
            asyncio.run(lim.check_wait_async("k", p, max_wait=bad))
        with pytest.raises(TypeError, match="max_wait"):
            lim.acquire_wait("k", max_in_flight=1, ttl=1, max_wait=bad)
        with pytest.raises(TypeError, match="max_wait"):
            asyncio.run(lim.acquire_wait_async("k", max_in_flight=1, ttl=1, max_wait=bad))
    with pytest.raises(TypeError, match="wait"):
        lim.lease("k", max_in_flight=1, ttl=1, wait=True)
    with pytest.raises(TypeError, match="max_wait"):
        lim.check_wait("k", p)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_wait"):
        asyncio.run(lim.check_wait_async("k", p))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_wait"):
        lim.acquire_wait("k", max_in_flight=1, ttl=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        lim.acquire_wait("k", 1, 1, 1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'wait'"):
        lim.check_wait("k", p, wait=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="at least one tollgate.Policy"):
        lim.check_wait("k", max_wait=1)
    with pytest.raises(TypeError, match="key must be str or bytes"):
        lim.check_wait(42, p, max_wait=1)  # type: ignore[arg-type]
    # the other arguments are checked as check() and acquire() check them
    with pytest.raises(InvalidArgument, match="max_in_flight"):
        lim.acquire_wait("k", max_in_flight=0, ttl=1, max_wait=1)
    with pytest.raises(InvalidArgument, match="max_in_flight"):
        asyncio.run(lim.acquire_wait_async("k", max_in_flight=0, ttl=1, max_wait=1))
    with pytest.raises(InvalidArgument, match="ttl"):
        lim.acquire_wait("k", max_in_flight=1, ttl=0, max_wait=1)
    lim.close()


def test_a_closed_limiter_refuses_waits() -> None:
    lim = Limiter()
    lim.close()
    p = Policy(1, "1s")
    with pytest.raises(TollgateConnectionError):
        lim.check_wait("k", p, max_wait=1)
    with pytest.raises(TollgateConnectionError):
        asyncio.run(lim.check_wait_async("k", p, max_wait=1))
    with pytest.raises(TollgateConnectionError):
        lim.acquire_wait("k", max_in_flight=1, ttl=1, max_wait=1)
    with pytest.raises(TollgateConnectionError):
        asyncio.run(lim.acquire_wait_async("k", max_in_flight=1, ttl=1, max_wait=1))
    assert tollgate._leases._releases == {}
