"""Back-pressure (max_async): against a frozen Redis (SIGSTOP: connected,
nothing answered) at most max_async async checks wait; every other one
raises BusyError (RL_E_BUSY) at once and queues nothing. Once the server
answers again the waiting checks complete and the slots are free."""

from __future__ import annotations

import asyncio

import pytest

import tollgate
from tollgate import BusyError, Error, InvalidArgument, Limiter, Policy
from tollgate._errors import error_class


def test_busy_error_is_the_class_of_rl_e_busy() -> None:
    from tollgate import _native

    assert _native.ERROR_CODES["RL_E_BUSY"] == -20
    assert error_class("RL_E_BUSY") is BusyError
    assert issubclass(BusyError, Error)
    assert "BusyError" in tollgate.__all__


def test_max_async_option_range() -> None:
    for bad in (-1, 2**31):
        with pytest.raises(InvalidArgument) as info:
            Limiter(max_async=bad)
        assert "max_async" in str(info.value)
    for wrong in ("10", 1.5, True):
        with pytest.raises(TypeError):
            Limiter(max_async=wrong)
    for good in (None, 0, 1, 2**31 - 1):
        Limiter(max_async=good).close()


def test_frozen_server_holds_max_async_checks_and_refuses_the_rest(own_redis, prefix) -> None:
    async def main() -> None:
        lim = Limiter(own_redis.url, key_prefix=prefix, failure_mode="error", timeout_ms=60000, max_async=50)
        p = Policy(1_000_000, "1h")
        assert (await lim.check_async("warm", p)).source == "store"
        own_redis.freeze()
        try:
            tasks = [asyncio.ensure_future(lim.check_async("k", p)) for _ in range(500)]
            keys_task = asyncio.ensure_future(lim.check_keys_async([("a", [p]), ("b", [p])]))
            await asyncio.sleep(0.05)  # every task has started its check
            refused = [t for t in tasks if t.done()]
            waiting = [t for t in tasks if not t.done()]
            frozen = lim.health()
        finally:
            own_redis.thaw()
        assert len(waiting) == 50
        assert len(refused) == 450
        for t in refused:
            e = t.exception()
            assert isinstance(e, BusyError), repr(e)
            assert e.code == "RL_E_BUSY"
        message = str(refused[0].exception())
        assert "too many async calls in flight: 50 " in message and "max_async" in message
        assert keys_task.done() and isinstance(keys_task.exception(), BusyError)
        assert frozen["async_pending"] == 50
        assert frozen["async_refused"] == 451

        got = await asyncio.wait_for(asyncio.gather(*waiting), 30)
        assert [d.source for d in got] == ["store"] * 50
        h = lim.health()
        assert h["async_pending"] == 0 and h["async_refused"] == 451
        # The slots are free again.
        again = await asyncio.gather(*(lim.check_async("k", p) for _ in range(50)))
        assert len(again) == 50
        lim.close()

    asyncio.run(main())


def test_default_bound_applies_without_the_option(own_redis, prefix) -> None:
    async def main() -> None:
        lim = Limiter(own_redis.url, key_prefix=prefix, failure_mode="error", timeout_ms=60000)
        p = Policy(1_000_000, "1h")
        await lim.check_async("warm", p)
        own_redis.freeze()
        busy = 0
        started = []
        try:
            for _ in range(66000):
                try:
                    started.append(lim._async_start("k", p, cost=1))
                except BusyError:
                    busy += 1
            pending = lim.health()["async_pending"]
        finally:
            own_redis.thaw()
        assert busy == 66000 - 65536
        assert pending == 65536
        await asyncio.wait_for(asyncio.gather(*started), 60)
        assert lim.health()["async_pending"] == 0
        lim.close()

    asyncio.run(main())
