"""Concurrency leases (Limiter.acquire / Limiter.lease, docs/python.md
"Leases"), on the memory store and on a real redis-server: at most
max_in_flight held at once, the exact retry_after, expiry at the ttl, renew,
late and double releases, with / async with (without blocking the event
loop), bad input, the failure modes, 8 processes on one Redis key, and a
SIGKILLed holder's lease coming back after its ttl.

The semantics run on a clock the test moves (the `clock` option; on Redis a
build with -DTOLLGATE_TESTING=ON pins the scripts' time to it), as
tests/test_leases.cpp does; the tests across processes and the SIGKILL test
run on the Redis server's own clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import gc
import os
import pickle
import signal
import sys
import threading
import time
from typing import Any, Callable, List

import pytest

import tollgate
from tollgate import (
    InvalidArgument,
    Lease,
    LeaseContext,
    LeaseDenied,
    LeaseLost,
    LeaseResult,
    Limiter,
    TollgateConnectionError,
    TollgateTimeoutError,
)

from conftest import LONG, Clock, Store, abandoned_lease_released, needs_redis, redis_command, take

MakeLimiter = Callable[..., Limiter]


@pytest.fixture
def make_limiter(store: Store) -> MakeLimiter:
    """Makes limiters of one store (conftest's `store`: closed after the
    test); every Redis one shares the test's own key prefix, so they see
    the same leases."""
    store.redis_options["timeout_ms"] = 5000
    return store.limiter


def full(lim: Limiter, key: str, max_in_flight: int) -> bool:
    """True if `max_in_flight` leases of `key` are held (a probe that takes
    and gives back a lease when one is free)."""
    got = lim.acquire(key, max_in_flight=max_in_flight, ttl=LONG)
    if got.lease is not None:
        assert got.lease.release() is True
        return False
    return True


# ---- at most max_in_flight -----------------------------------------------------------


def test_at_most_max_in_flight_and_the_exact_retry_after(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = make_limiter(clock=clock)
    a = lim.acquire("report:org-7", max_in_flight=2, ttl=1)
    assert isinstance(a, LeaseResult) and a
    assert (a.acquired, a.in_flight, a.max_in_flight, a.retry_after, a.retry_after_ms, a.source) == (
        True,
        1,
        2,
        0.0,
        0,
        "store",
    )
    assert isinstance(a.lease, Lease) and a.key == "report:org-7"
    clock.advance_ms(300)
    b = lim.acquire("report:org-7", max_in_flight=2, ttl=1)
    assert b.acquired and b.in_flight == 2
    # full: denied until the earliest lease (a's) ends, 700 ms from now
    c = lim.acquire("report:org-7", max_in_flight=2, ttl=1)
    assert not c and c.acquired is False and c.lease is None
    assert (c.in_flight, c.max_in_flight, c.retry_after_ms, c.retry_after, c.source) == (2, 2, 700, 0.7, "store")
    # another key has its own count
    assert lim.acquire("report:org-8", max_in_flight=2, ttl=1).in_flight == 1
    # a release lets the next one in
    assert a.lease is not None and a.lease.release() is True
    d = lim.acquire("report:org-7", max_in_flight=2, ttl=1)
    assert d.acquired and d.in_flight == 2


def test_max_in_flight_is_the_callers(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    a = take(lim, "k", 1)
    assert not lim.acquire("k", max_in_flight=1, ttl=LONG)
    b = lim.acquire("k", max_in_flight=2, ttl=LONG)  # compares the same count with 2
    assert b.acquired and b.in_flight == 2
    assert a.release() and b.lease is not None and b.lease.release()


def test_limiters_on_one_redis_count_together_memory_ones_do_not(make_limiter: MakeLimiter) -> None:
    a, b = make_limiter(), make_limiter()
    x = take(a, "shared", 1)
    got = b.acquire("shared", max_in_flight=1, ttl=LONG)
    if a.store == "memory":  # each memory limiter has its own state
        assert got.lease is not None and got.lease.release()
    else:
        assert not got and got.in_flight == 1
    assert x.release()


def test_the_result_and_the_lease(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    got = lim.acquire(b"bytes-key", max_in_flight=3, ttl="1500ms")
    lease = got.lease
    assert lease is not None
    assert (lease.key, lease.max_in_flight, lease.in_flight) == (b"bytes-key", 3, 1)
    assert (lease.ttl, lease.ttl_ms, lease.source, lease.released) == (1.5, 1500, "store", False)
    assert repr(lease) == "<tollgate.Lease key=b'bytes-key' in_flight=1/3 ttl=1.5 source='store'>"
    assert "acquired=True" in repr(got)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.acquired = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        lease.ttl = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        pickle.dumps(lease)  # a handle of this process
    assert lease.release() is True
    assert repr(lease).endswith(" released>")
    first = lim.acquire("one", max_in_flight=1, ttl=LONG)
    denied = lim.acquire("one", max_in_flight=1, ttl=LONG)
    assert not denied and "acquired=False" in repr(denied) and "lease=None" in repr(denied)
    assert pickle.loads(pickle.dumps(denied)) == denied  # a denial pickles
    assert first.lease is not None and first.lease.release()


# ---- the ttl ------------------------------------------------------------------------


def test_a_lease_ends_at_its_ttl(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = make_limiter(clock=clock)
    lease = take(lim, "k", 1, "10s")
    clock.advance_ms(9_999)
    denied = lim.acquire("k", max_in_flight=1, ttl=LONG)
    assert not denied and denied.retry_after_ms == 1
    clock.advance_ms(1)
    after = lim.acquire("k", max_in_flight=1, ttl=LONG)
    assert after.acquired and after.in_flight == 1  # the ended lease was dropped
    assert lease.release() is False
    assert after.lease is not None and after.lease.release() is True


def test_ttl_forms(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    forms = [
        (2, 2000),
        (1.5, 1500),
        (0.001, 1),
        ("250ms", 250),
        ("1m", 60_000),
        (datetime.timedelta(seconds=3), 3000),
        (datetime.timedelta(milliseconds=2**40), 2**40),  # the longest
    ]
    for ttl, ms in forms:
        lease = take(lim, "forms", 1, ttl)
        assert lease.ttl_ms == ms, ttl
        assert lease.release()


@needs_redis
def test_the_ttl_runs_on_the_redis_servers_clock(redis_server: Any, prefix: str) -> None:
    with Limiter(redis_server.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000) as lim:
        lease = take(lim, "k", 1, "400ms")
        denied = lim.acquire("k", max_in_flight=1, ttl=LONG)
        assert not denied and 0 < denied.retry_after_ms <= 400
        time.sleep(denied.retry_after + 0.05)
        assert take(lim, "k", 1).release() is True
        assert lease.release() is False


# ---- renew ---------------------------------------------------------------------------


def test_renew_moves_the_end(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = make_limiter(clock=clock)
    lease = take(lim, "k", 1, 1)  # ends at +1000 ms
    clock.advance_ms(900)
    lease.renew()  # None: its ttl again: ends at +1900 ms
    assert lease.ttl_ms == 1000
    clock.advance_ms(600)
    assert full(lim, "k", 1)  # past the first end, still held
    lease.renew("5s")  # ends at +6500 ms
    assert lease.ttl == 5.0
    lim.renew(lease, datetime.timedelta(seconds=2))  # through its limiter: +3500 ms
    assert lease.ttl_ms == 2000
    clock.advance_ms(1999)
    denied = lim.acquire("k", max_in_flight=1, ttl=LONG)
    assert denied.retry_after_ms == 1
    clock.advance_ms(1)
    assert not full(lim, "k", 1)


def test_renewing_an_ended_or_released_lease_raises_lease_lost(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = make_limiter(clock=clock)
    lease = take(lim, "k", 1, 1)
    clock.advance_ms(1000)
    with pytest.raises(LeaseLost) as info:
        lease.renew(LONG)
    e = info.value
    assert e.code == "RL_E_NOT_FOUND" and "not held" in str(e)
    assert isinstance(e, LookupError) and isinstance(e, tollgate.Error)
    assert not isinstance(e, tollgate.NothingToRefund)
    assert lease.ttl_ms == 1000  # unchanged by the failed renew
    assert not full(lim, "k", 1)  # the renew did not bring it back
    with pytest.raises(LeaseLost):
        lim.renew(lease)

    released = take(lim, "k", 1)
    assert released.release() is True
    with pytest.raises(LeaseLost):
        released.renew()


# ---- late and double releases ----------------------------------------------------------


def test_a_late_release_is_harmless_and_reported(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = make_limiter(clock=clock)
    old = take(lim, "k", 1, 1)
    clock.advance_ms(1000)
    new = take(lim, "k", 1)  # the ended lease's place
    assert old.release() is False  # ended: not held any more
    assert old.released
    assert full(lim, "k", 1)  # the late release did not end the new lease
    assert new.release() is True
    assert not full(lim, "k", 1)


def test_a_double_release_is_harmless_and_reported(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    lease, other = take(lim, "k", 2), take(lim, "k", 2)
    assert lease.release() is True
    assert lease.release() is False
    assert lim.release(lease) is False
    # the second and third releases did not end the other lease
    third = take(lim, "k", 2)
    assert full(lim, "k", 2)
    assert other.release() is True and third.release() is True


def test_reset_forgets_the_keys_leases(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    lease = take(lim, "k", 1)
    assert full(lim, "k", 1)
    lim.reset("k")
    again = take(lim, "k", 1)
    assert lease.release() is False  # forgotten
    assert again.release() is True


# ---- with / async with ------------------------------------------------------------------


def test_with_releases_on_exit(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    ctx = lim.lease("k", max_in_flight=1, ttl=LONG)
    assert isinstance(ctx, LeaseContext) and ctx.lease is None
    with ctx as lease:
        assert isinstance(lease, Lease) and lease.in_flight == 1
        assert ctx.lease is lease and ctx.result is not None and ctx.result.lease is lease
        assert "held" in repr(ctx)
        assert full(lim, "k", 1)
    assert lease.released and ctx.lease is None
    assert not full(lim, "k", 1)


def test_with_releases_on_an_exception(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    ctx = lim.lease("k", max_in_flight=1, ttl=LONG)
    with pytest.raises(ZeroDivisionError):
        with ctx as lease:
            1 / 0
    assert lease.released and ctx.lease is None
    assert not full(lim, "k", 1)
    with ctx as again:  # the context can be entered again once it let go
        assert again is not lease
    assert not full(lim, "k", 1)


def test_a_denied_with_raises_lease_denied(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    ran = []
    with lim.lease("k", max_in_flight=1, ttl=LONG):
        ctx = lim.lease("k", max_in_flight=1, ttl=LONG)
        with pytest.raises(LeaseDenied) as info:
            with ctx:
                ran.append(True)
    assert ran == []
    e = info.value
    assert 0 < e.retry_after <= LONG and e.retry_after_ms == e.result.retry_after_ms
    assert (e.key, e.in_flight, e.max_in_flight, e.source) == ("k", 1, 1, "store")
    assert isinstance(e.result, LeaseResult) and not e.result and ctx.result is e.result
    assert str(e).startswith("lease denied: 1 of 1 leases of 'k' held (source store); retry after ")
    assert not isinstance(e, tollgate.Error)  # a denial is an answer, not a failure
    copy = pickle.loads(pickle.dumps(e))
    assert copy.result == e.result and str(copy) == str(e)
    assert not full(lim, "k", 1)
    with ctx:  # a denied context can be entered again
        pass


def test_a_release_inside_the_with_is_not_repeated(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    with lim.lease("k", max_in_flight=1, ttl=LONG) as lease:
        assert lease.release() is True
        other = take(lim, "k", 1)  # the freed place
    assert full(lim, "k", 1)  # the exit did not touch `other`
    assert other.release()


def test_a_with_whose_lease_ended_exits_quietly(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = make_limiter(clock=clock)
    with lim.lease("k", max_in_flight=1, ttl=1) as lease:
        clock.advance_ms(1000)
    assert lease.released  # the exit's release reported False, harmlessly


def test_one_context_holds_one_lease_at_a_time() -> None:
    lim = Limiter()
    ctx = lim.lease("k", max_in_flight=5, ttl=LONG)
    with ctx:
        with pytest.raises(RuntimeError, match="already entered"):
            with ctx:
                pass
    lim.close()


def test_async_with_and_the_async_calls(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()

    async def main() -> None:
        async with lim.lease("k", max_in_flight=1, ttl=LONG) as lease:
            assert isinstance(lease, Lease)
            denied = await lim.acquire_async("k", max_in_flight=1, ttl=LONG)
            assert not denied and denied.lease is None
        assert lease.released
        assert not full(lim, "k", 1)

        with pytest.raises(KeyError):
            async with lim.lease("k", max_in_flight=1, ttl=LONG) as failing:
                raise KeyError("boom")
        assert failing.released
        assert not full(lim, "k", 1)

        async with lim.lease("k", max_in_flight=1, ttl=LONG):
            with pytest.raises(LeaseDenied) as info:
                async with lim.lease("k", max_in_flight=1, ttl=LONG):
                    pass
            assert info.value.retry_after > 0

        got = await lim.acquire_async("k", max_in_flight=1, ttl="1s")
        assert got.acquired and got.lease is not None
        await got.lease.renew_async(LONG)
        assert got.lease.ttl == LONG
        await got.lease.renew_async()
        assert await got.lease.release_async() is True
        assert await got.lease.release_async() is False
        with pytest.raises(LeaseLost):
            await got.lease.renew_async()
        with pytest.raises(InvalidArgument):
            await lim.acquire_async("k", max_in_flight=0, ttl=LONG)

    asyncio.run(main())


@needs_redis
def test_async_lease_calls_do_not_block_the_loop(own_redis: Any) -> None:
    # A frozen server: each call waits out timeout_ms in the executor while
    # the loop keeps ticking.
    lim = Limiter(own_redis.url, failure_mode="error", timeout_ms=500)
    held = take(lim, "held", 1)  # connected, and a lease to renew and release

    async def main() -> None:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        own_redis.freeze()
        try:
            before = ticks
            with pytest.raises((TollgateTimeoutError, TollgateConnectionError)):
                async with lim.lease("k", max_in_flight=1, ttl=LONG):
                    pass
            assert ticks - before >= 10  # ~50 ticks in 500 ms; a few on a busy machine
            before = ticks
            with pytest.raises((TollgateTimeoutError, TollgateConnectionError)):
                await held.renew_async()
            with pytest.raises((TollgateTimeoutError, TollgateConnectionError)):
                await held.release_async()
            assert ticks - before >= 20
        finally:
            own_redis.thaw()
            stop.set()
            await task

    asyncio.run(main())
    lim.close()


@needs_redis
def test_a_cancelled_acquire_releases_the_lease_it_got(own_redis: Any) -> None:
    # The server is frozen while the acquire waits; the task is cancelled;
    # the server thaws and the acquire completes with a lease, which is
    # released by itself (long before its ttl).
    lim = Limiter(own_redis.url, failure_mode="error", timeout_ms=10_000)
    take(lim, "warm", 1).release()

    async def main() -> None:
        own_redis.freeze()
        try:
            task = asyncio.ensure_future(lim.acquire_async("k", max_in_flight=1, ttl=600))
            await asyncio.sleep(0.2)  # the acquire is waiting on the frozen server
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            own_redis.thaw()
        await abandoned_lease_released(lim, "k")

    asyncio.run(main())
    lim.close()


@needs_redis
def test_a_cancelled_release_still_completes(own_redis: Any) -> None:
    lim = Limiter(own_redis.url, failure_mode="error", timeout_ms=10_000)
    lease = take(lim, "k", 1, 600)

    async def main() -> None:
        own_redis.freeze()
        try:
            task = asyncio.ensure_future(lease.release_async())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            own_redis.thaw()
        deadline = time.monotonic() + 20
        while not lease.released:
            assert time.monotonic() < deadline, "the release did not complete"
            await asyncio.sleep(0.02)
        assert not full(lim, "k", 1)

    asyncio.run(main())
    lim.close()


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_in_flight", [0, -1, 1_000_001])
def test_bad_max_in_flight(make_limiter: MakeLimiter, max_in_flight: int) -> None:
    lim = make_limiter()
    with pytest.raises(InvalidArgument) as info:
        lim.acquire("k", max_in_flight=max_in_flight, ttl=LONG)
    assert info.value.code == "RL_E_INVALID_ARG"
    assert str(info.value) == "max_in_flight: must be 1 to 1000000 (got %d)" % max_in_flight
    with pytest.raises(InvalidArgument):
        with lim.lease("k", max_in_flight=max_in_flight, ttl=LONG):
            pass
    assert take(lim, "k", 1_000_000).release()  # the largest is taken


@pytest.mark.parametrize(
    "ttl, message",
    [
        (0, "ttl: must be 1 ms to 2^40 ms (got 0 ms)"),
        (0.0, "ttl: must be 1 ms to 2^40 ms (got 0 ms)"),
        (-1, "ttl: must be 1 ms to 2^40 ms (got -1000 ms)"),
        (-0.5, "ttl: must be 1 ms to 2^40 ms (got -500 ms)"),
        ("0s", "ttl: "),
        ("soon", "ttl: "),
        (0.0005, "ttl: 0.0005 s is not a whole number of milliseconds"),
        (datetime.timedelta(milliseconds=2**40 + 1), "ttl: must be 1 ms to 2^40 ms (got 1099511627777 ms)"),
        (2**41 // 1000, "ttl: must be 1 ms to 2^40 ms"),
        (float("nan"), "ttl: "),
    ],
)
def test_bad_ttl(make_limiter: MakeLimiter, ttl: Any, message: str) -> None:
    lim = make_limiter()
    with pytest.raises(InvalidArgument) as info:
        lim.acquire("k", max_in_flight=1, ttl=ttl)
    assert info.value.code == "RL_E_INVALID_ARG" and str(info.value).startswith(message), str(info.value)
    lease = take(lim, "k", 1)
    with pytest.raises(InvalidArgument):
        lease.renew(ttl)
    assert lease.ttl == LONG and lease.release()


def test_bad_types_and_keys() -> None:
    lim = Limiter()
    with pytest.raises(TypeError, match="max_in_flight must be an int, not str"):
        lim.acquire("k", max_in_flight="3", ttl=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_in_flight must be an int, not bool"):
        lim.acquire("k", max_in_flight=True, ttl=1)
    with pytest.raises(TypeError, match="key must be str or bytes"):
        lim.acquire(42, max_in_flight=1, ttl=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ttl must be"):
        lim.acquire("k", max_in_flight=1, ttl=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ttl must be .* not bool"):
        lim.acquire("k", max_in_flight=1, ttl=True)
    with pytest.raises(TypeError):  # keyword-only: acquire("k", 3, 30) reads ambiguously
        lim.acquire("k", 3, 30)  # type: ignore[misc]
    with pytest.raises(TypeError):
        lim.lease("k", 3, 30)  # type: ignore[misc]
    with pytest.raises(TypeError):
        lim.acquire("k", max_in_flight=1)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgument) as info:
        lim.acquire("", max_in_flight=1, ttl=1)
    assert info.value.code == "RL_E_KEY_INVALID"
    with pytest.raises(TypeError, match="lease must be a tollgate.Lease, not str"):
        lim.release("k")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lease must be a tollgate.Lease, not NoneType"):
        lim.renew(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Lease()  # type: ignore[call-arg]
    lim.close()


def test_a_lease_through_another_limiter_is_refused(make_limiter: MakeLimiter) -> None:
    lim, other = make_limiter(), make_limiter()
    lease = take(lim, "k", 1)
    for call in (lambda: other.release(lease), lambda: other.renew(lease, LONG)):
        with pytest.raises(InvalidArgument) as info:
            call()
        assert info.value.code == "RL_E_INVALID_ARG"
        assert "another limiter" in str(info.value)
    assert lease.released is False and lease.ttl == LONG
    assert full(lim, "k", 1)  # untouched
    assert lim.release(lease) is True


# ---- lifetimes -----------------------------------------------------------------------------


def test_a_lease_outlives_its_limiter(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    lease = take(lim, "k", 1)
    lim.close()
    with pytest.raises(TollgateConnectionError) as info:
        lease.release()
    assert info.value.code == "RL_E_CLOSED"
    with pytest.raises(TollgateConnectionError):
        lease.renew()
    assert lease.released is False
    del lim
    gc.collect()
    del lease  # the handle is freed after the limiter
    gc.collect()


def test_a_dropped_lease_is_freed_not_released(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = make_limiter(clock=clock)
    take(lim, "k", 1, 5)  # dropped at once
    gc.collect()
    assert full(lim, "k", 1)  # still held
    clock.advance_ms(5000)
    assert not full(lim, "k", 1)  # ended by its ttl


def test_threads_share_one_limiter(make_limiter: MakeLimiter) -> None:
    lim = make_limiter()
    peak = inside = acquired = 0
    lock = threading.Lock()
    errors: List[BaseException] = []

    # Each thread takes 25 leases, trying again after a denial: how many
    # tries that needs depends on the scheduler, the total does not.
    deadline = time.monotonic() + 60

    def work() -> None:
        nonlocal peak, inside, acquired
        try:
            mine = 0
            while mine < 25 and time.monotonic() < deadline:
                got = lim.acquire("t", max_in_flight=2, ttl=LONG)
                if got.lease is None:
                    time.sleep(0)
                    continue
                mine += 1
                with lock:
                    inside += 1
                    acquired += 1
                    peak = max(peak, inside)
                time.sleep(0)
                with lock:
                    inside -= 1
                assert got.lease.release() is True
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors and 1 <= peak <= 2 and acquired == 100
    assert not full(lim, "t", 1)


# ---- while Redis is away --------------------------------------------------------------------


def _down(own_redis: Any, mode: Any, **options: Any) -> Limiter:
    """A limiter on a server that was SIGKILLed before it was made."""
    url = own_redis.url
    own_redis.kill()
    return Limiter(url, failure_mode=mode, timeout_ms=300, connect_timeout_ms=300, **options)


@needs_redis
def test_failure_mode_open_grants_leases_stored_nowhere(own_redis: Any) -> None:
    with _down(own_redis, "open") as lim:
        a = lim.acquire("k", max_in_flight=1, ttl=LONG)
        b = lim.acquire("k", max_in_flight=1, ttl=LONG)  # not counted anywhere
        assert a.acquired and b.acquired and a.lease is not None and b.lease is not None
        assert (a.source, a.in_flight, a.retry_after) == ("fail_open", 0, 0.0)
        assert (a.lease.source, a.lease.in_flight) == ("fail_open", 0)
        a.lease.renew()
        assert a.lease.release() is True
        with lim.lease("k", max_in_flight=1, ttl=LONG) as lease:
            assert lease.source == "fail_open"


@needs_redis
def test_failure_mode_closed_denies(own_redis: Any) -> None:
    with _down(own_redis, "closed") as lim:
        got = lim.acquire("k", max_in_flight=5, ttl=LONG)
        assert not got and got.lease is None
        assert (got.source, got.retry_after_ms, got.in_flight) == ("fail_closed", 1000, 0)
        with pytest.raises(LeaseDenied) as info:
            with lim.lease("k", max_in_flight=5, ttl=LONG):
                pass
        assert info.value.source == "fail_closed"


@needs_redis
def test_failure_mode_local_counts_in_this_process(own_redis: Any) -> None:
    # Four processes share the limit: each holds 8 / 4 = 2 on its own.
    with _down(own_redis, "local", local_divisor=4) as lim:
        a, b = take(lim, "k", 8), take(lim, "k", 8)
        assert a.source == b.source == "local"
        assert (a.in_flight, b.in_flight) == (1, 2)  # counted in this process
        c = lim.acquire("k", max_in_flight=8, ttl=LONG)
        assert not c and c.source == "local" and c.in_flight == 2 and c.retry_after_ms > 0
        a.renew()
        assert a.release() is True and a.release() is False
        assert take(lim, "k", 8).release() and b.release()


@needs_redis
def test_failure_mode_error_raises(own_redis: Any) -> None:
    with _down(own_redis, "error") as lim:
        with pytest.raises(TollgateConnectionError) as info:
            lim.acquire("k", max_in_flight=1, ttl=LONG)
        assert info.value.code == "RL_E_CONNECT"
        with pytest.raises(TollgateConnectionError):
            with lim.lease("k", max_in_flight=1, ttl=LONG):
                pass


@needs_redis
def test_renew_and_release_of_a_stored_lease_raise_while_redis_is_away(own_redis: Any) -> None:
    # Whatever the failure mode: they are not decisions.
    lim = Limiter(own_redis.url, failure_mode="open", timeout_ms=300, connect_timeout_ms=300)
    lease = take(lim, "k", 1)
    assert lease.source == "store"
    ctx = lim.lease("j", max_in_flight=1, ttl=LONG)
    ctx.__enter__()
    other = lim.lease("i", max_in_flight=1, ttl=LONG)
    other.__enter__()
    own_redis.kill()
    with pytest.raises((TollgateConnectionError, TollgateTimeoutError)):
        lease.renew()
    with pytest.raises((TollgateConnectionError, TollgateTimeoutError)):
        lease.release()
    assert lease.released is False  # it may be tried again
    # A with block that completed raises the failed release; one that
    # raised keeps its own exception.
    with pytest.raises((TollgateConnectionError, TollgateTimeoutError)):
        ctx.__exit__(None, None, None)
    other.__exit__(KeyError, KeyError("k"), None)  # no exception
    lim.close()


# ---- 8 processes on one Redis key -------------------------------------------------------------

PROCESSES = 8
MAX_IN_FLIGHT = 3
RUN_FOR = 1.5  # seconds


def _worker(url: str, prefix: str, go: Any, holding: Any, most: Any, acquired: Any, errors: Any) -> None:
    try:
        lim = Limiter(url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
        go.wait(30)
        end = time.monotonic() + RUN_FOR
        while time.monotonic() < end:
            got = lim.acquire("export", max_in_flight=MAX_IN_FLIGHT, ttl=LONG)
            if got.lease is None:
                time.sleep(0.0002)
                continue
            # Counted after the acquire and uncounted before the release, so
            # the count never exceeds the leases actually held.
            with holding.get_lock():
                holding.value += 1
                now = holding.value
            with most.get_lock():
                most.value = max(most.value, now)
            with acquired.get_lock():
                acquired.value += 1
            time.sleep(0.0005)
            with holding.get_lock():
                holding.value -= 1
            if got.lease.release() is not True:
                with errors.get_lock():
                    errors.value += 1
        lim.close()
    except BaseException:
        with errors.get_lock():
            errors.value += 1
        raise


@needs_redis
@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_8_processes_on_one_key_never_hold_more_than_max(redis_server: Any, prefix: str) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    holding, most, acquired, errors = (ctx.Value("i", 0) for _ in range(4))
    procs = [
        ctx.Process(target=_worker, args=(redis_server.url, prefix, go, holding, most, acquired, errors))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    # The parent samples the count continuously while they run.
    samples: List[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(holding.value)

    sampler = threading.Thread(target=sample)
    try:
        go.set()
        sampler.start()
        for p in procs:
            p.join(90)
            assert p.exitcode == 0
    finally:
        stop.set()
        if sampler.is_alive():
            sampler.join(10)
        for p in procs:
            if p.is_alive():  # hung: stop it by PID before failing
                p.kill()
                p.join(5)
    assert errors.value == 0
    assert holding.value == 0
    assert len(samples) > 1000 and max(samples) <= MAX_IN_FLIGHT, (len(samples), max(samples))
    assert 2 <= most.value <= MAX_IN_FLIGHT, most.value  # at most 3, and they did contend
    assert acquired.value > PROCESSES
    assert redis_command(redis_server.port, "ZCARD", prefix + "v2:{export}:!l") == 0  # all released


# ---- a SIGKILLed holder ------------------------------------------------------------------------


def _holder(url: str, prefix: str, ready: int) -> None:
    lim = Limiter(url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
    got = lim.acquire("job", max_in_flight=1, ttl="800ms")
    os.write(ready, b"y" if got.acquired else b"n")
    time.sleep(60)  # killed before this ends, holding the lease


@needs_redis
@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_sigkilled_holders_lease_is_reclaimed_after_its_ttl(redis_server: Any, prefix: str) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    r, w = os.pipe()
    child = ctx.Process(target=_holder, args=(redis_server.url, prefix, w))
    child.start()
    try:
        os.close(w)
        assert os.read(r, 1) == b"y"  # the child holds the lease
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
    finally:
        os.close(r)
        if child.is_alive():
            child.kill()
            child.join(5)
    with Limiter(redis_server.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000) as lim:
        denied = lim.acquire("job", max_in_flight=1, ttl=LONG)
        assert not denied  # still held by the dead process
        assert 1 <= denied.retry_after_ms <= 800
        time.sleep(denied.retry_after + 0.02)
        got = lim.acquire("job", max_in_flight=1, ttl=LONG)
        assert got.acquired and got.lease is not None and got.in_flight == 1
        assert got.lease.release() is True


# ---- what Redis holds -------------------------------------------------------------------------


@needs_redis
def test_redis_keeps_a_keys_leases_in_one_expiring_sorted_set(redis_server: Any, prefix: str) -> None:
    with Limiter(redis_server.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000) as lim:
        a, b = take(lim, "jobs", 5), take(lim, "jobs", 5)
        keys = redis_command(redis_server.port, "KEYS", prefix + "*")
        assert keys == [(prefix + "v2:{jobs}:!l").encode()], keys
        key = keys[0]
        assert redis_command(redis_server.port, "TYPE", key) == "zset"
        assert redis_command(redis_server.port, "ZCARD", key) == 2
        assert 25_000 < redis_command(redis_server.port, "PTTL", key) <= LONG * 1000
        assert a.release() and b.release()
        assert redis_command(redis_server.port, "EXISTS", key) == 0
        # the key listing does not show lease sets
        assert take(lim, "jobs", 5).release()
        assert list(lim.keys(tollgate.Policy(5, "1m"))) == []

