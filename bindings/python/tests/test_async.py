"""asyncio: check_async rides on the C async entry point (no thread per
call), never blocks the loop, and is safe to cancel."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import tollgate


def test_memory_store_async_matches_sync() -> None:
    async def main() -> None:
        lim = tollgate.Limiter()
        p = tollgate.Policy(3, "1h")
        got = [await lim.check_async("k", p) for _ in range(5)]
        assert [d.allowed for d in got] == [True, True, True, False, False]
        assert got[3].retry_after > 0
        lim.close()

    asyncio.run(main())


def test_many_concurrent_checks_on_redis(redis_server, prefix) -> None:
    async def main() -> None:
        lim = tollgate.Limiter(redis_server.url, key_prefix=prefix)
        # ~32 years: nothing refills while the 2000 checks run (at 500/h one
        # unit came back every 7.2 s, and a loaded machine can take that).
        p = tollgate.Policy(500, 1_000_000_000)
        threads_before = threading.active_count()
        results = await asyncio.gather(
            *(lim.check_async("burst", p) for _ in range(2000))
        )
        assert sum(d.allowed for d in results) == 500
        assert all(d.source in ("store", "deny_cache") for d in results)
        # One I/O thread for the limiter, not one per call.
        assert threading.active_count() <= threads_before + 1
        lim.close()

    asyncio.run(main())


def test_one_limiter_serves_loops_in_several_threads(redis_server, prefix) -> None:
    # Each thread runs its own event loop; whichever loop drains the shared
    # queue hands the other loops' results over with call_soon_threadsafe.
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix)
    # ~32 years: nothing refills while the threads run (at 300/h one unit
    # came back every 12 s, within the threads' 30 s join).
    p = tollgate.Policy(300, 1_000_000_000)
    allowed = []
    errors = []

    def run() -> None:
        async def main() -> int:
            got = await asyncio.gather(*(lim.check_async("shared", p) for _ in range(200)))
            return sum(d.allowed for d in got)

        try:
            allowed.append(asyncio.run(main()))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(allowed) == 4 and sum(allowed) == 300
    lim.close()


def test_the_loop_keeps_running_while_redis_is_frozen(own_redis) -> None:
    async def main() -> None:
        lim = tollgate.Limiter(own_redis.url, timeout_ms=300)
        p = tollgate.Policy(10, "1m")
        await lim.check_async("k", p)  # connected
        own_redis.freeze()
        try:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            t = asyncio.create_task(ticker())
            start = time.monotonic()
            d = await lim.check_async("k", p)
            elapsed = time.monotonic() - start
            t.cancel()
            assert d.source == "fail_open"
            assert 0.25 <= elapsed <= 0.3 + 0.2
            assert ticks >= 10  # the loop ran while the check was pending
        finally:
            own_redis.thaw()
        lim.close()

    asyncio.run(main())


def test_cancelling_a_pending_check_is_safe(own_redis) -> None:
    async def main() -> None:
        lim = tollgate.Limiter(own_redis.url, timeout_ms=200)
        p = tollgate.Policy(10, "1m")
        await lim.check_async("k", p)
        own_redis.freeze()
        try:
            task = asyncio.create_task(lim.check_async("k", p))
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.3)  # the late answer arrives and is dropped
        finally:
            own_redis.thaw()
        d = await lim.check_async("k", p)
        assert d.source == "store"
        lim.close()

    asyncio.run(main())


def test_errors_and_types_through_check_async() -> None:
    async def main() -> None:
        lim = tollgate.Limiter()
        with pytest.raises(TypeError):
            await lim.check_async(123, tollgate.Policy(1, "1s"))  # type: ignore[arg-type]
        with pytest.raises(tollgate.InvalidArgument):
            await lim.check_async("", tollgate.Policy(1, "1s"))
        with pytest.raises(TypeError):
            await lim.check_async("k", "not a policy")  # type: ignore[arg-type]
        lim.close()

    asyncio.run(main())


def test_close_answers_pending_checks(own_redis) -> None:
    async def main() -> None:
        lim = tollgate.Limiter(own_redis.url, timeout_ms=5000)
        p = tollgate.Policy(10, "1m")
        await lim.check_async("k", p)
        own_redis.freeze()
        try:
            tasks = [asyncio.create_task(lim.check_async("k", p)) for _ in range(20)]
            await asyncio.sleep(0.05)
            lim.close()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(e, tollgate.Error) for e in done), done
        finally:
            own_redis.thaw()

    asyncio.run(main())


def test_headers_come_from_the_core() -> None:
    # A pinned clock: on the real one, Retry-After reads 29 once a second
    # passes between the first check and the denied one.
    lim = tollgate.Limiter(clock=lambda: 1_700_000_000_000_000)
    p = tollgate.Policy(2, "1m")
    d = lim.check("k", p)
    h = tollgate.rate_limit_headers(d, p, "FREE")
    assert h == {
        "RateLimit-Policy": '"FREE";q=2;w=60',
        "RateLimit": '"FREE";r=1;t=30',
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "30",
    }
    lim.check("k", p)
    denied = lim.check("k", p)
    h = tollgate.rate_limit_headers(denied, p)
    assert h["Retry-After"] == "30"
    assert h["RateLimit-Policy"] == '"default";q=2;w=60'
    lim.close()
