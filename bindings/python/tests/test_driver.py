"""Who reads the Redis replies of check_async: the running asyncio loop's
own thread (loop.add_reader on the connection; driver="loop", and "auto",
the default, where it can) or tollgate's I/O thread (driver="thread"). All
on a real redis-server: same decisions as the I/O thread,
deadlines from the loop's timers, loops in several threads, a limiter used
from a loop and a plain thread at once, and the option's validation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import tollgate

BIG = 1_000_000_000  # ms: nothing refills while a test runs


def test_the_running_loop_drives_on_request(redis_server, prefix) -> None:
    assert tollgate.Limiter(redis_server.url).driver == "thread"  # the default
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, driver="loop")
    assert lim.driver == "thread"  # nothing drives it yet
    threads_before = threading.active_count()

    async def main() -> list:
        p = tollgate.Policy(5, BIG)
        seq = [(await lim.check_async("seq", p)).allowed for _ in range(7)]
        assert lim.driver == "loop"
        many = await asyncio.gather(*(lim.check_async("many", p) for _ in range(20)))
        return seq + [sum(d.allowed for d in many)]

    got = asyncio.run(main())
    assert got == [True] * 5 + [False, False, 5]
    # No I/O thread was started: the loop's thread read every reply.
    assert threading.active_count() == threads_before
    lim.close()
    assert tollgate.Limiter().driver == "none"


def test_auto_drives_from_the_loop_one_at_a_time_and_many_at_once(
    redis_server, prefix, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOLLGATE_DRIVER", raising=False)
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, failure_mode="error",
                           timeout_ms=5000)

    async def main() -> tuple:
        seq_policy = tollgate.Policy(150, BIG)
        # One at a time, as a request handler awaits its check: the loop.
        seq = [(await lim.check_async("auto-seq", seq_policy)).allowed for _ in range(200)]
        after_seq = lim.driver
        # 64 at once, round after round: still the loop, the count exact.
        many_policy = tollgate.Policy(1500, BIG)
        allowed = 0
        for _ in range(40):
            ds = await asyncio.gather(*(lim.check_async("auto-many", many_policy)
                                        for _ in range(64)))
            allowed += sum(d.allowed for d in ds)
        return seq, after_seq, allowed, lim.driver

    seq, after_seq, allowed, after_many = asyncio.run(main())
    lim.close()
    assert seq == [True] * 150 + [False] * 50
    assert after_seq == "loop"
    assert allowed == 1500  # of 2,560
    assert after_many == "loop"


def test_driver_thread_keeps_the_io_thread(redis_server, prefix) -> None:
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, driver="thread")

    async def main() -> int:
        p = tollgate.Policy(3, BIG)
        return sum([(await lim.check_async("k", p)).allowed for _ in range(5)])

    assert asyncio.run(main()) == 3
    assert lim.driver == "thread"
    lim.close()


def test_driver_option_validation() -> None:
    with pytest.raises(tollgate.InvalidArgument, match="^driver: unknown 'threads'"):
        tollgate.Limiter(driver="threads")
    with pytest.raises(TypeError, match="driver must be a str"):
        tollgate.Limiter(driver=1)  # type: ignore[arg-type]


def test_the_environment_forces_the_driver_where_the_code_says_auto(
    redis_server, prefix, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def drive(lim: tollgate.Limiter) -> str:
        await lim.check_async("env", tollgate.Policy(3, BIG))
        return lim.driver

    monkeypatch.setenv("TOLLGATE_DRIVER", "loop")
    for options in ({}, {"driver": "auto"}):
        lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, **options)
        assert asyncio.run(drive(lim)) == "loop"
        lim.close()
    # An option other than "auto" wins over the environment.
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, driver="thread")
    assert asyncio.run(drive(lim)) == "thread"
    lim.close()
    # Where the loop cannot drive (TLS), "auto" stays on the thread, with
    # no error (driver="loop" would raise).
    tls = tollgate.Limiter("rediss://127.0.0.1:1", tls_verify=False, timeout_ms=50,
                           connect_timeout_ms=50, failure_mode="open")
    assert asyncio.run(drive(tls)) == "thread"
    tls.close()
    monkeypatch.setenv("TOLLGATE_DRIVER", "thread")
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, driver="loop")
    assert asyncio.run(drive(lim)) == "loop"
    lim.close()
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix)
    assert asyncio.run(drive(lim)) == "thread"
    lim.close()
    monkeypatch.setenv("TOLLGATE_DRIVER", "uv")
    with pytest.raises(tollgate.InvalidArgument, match="^TOLLGATE_DRIVER: unknown 'uv'"):
        tollgate.Limiter(redis_server.url)
    # Set but empty: as if unset.
    monkeypatch.setenv("TOLLGATE_DRIVER", "")
    assert tollgate.Limiter().driver == "none"


def test_driver_loop_is_refused_for_tls() -> None:
    # The TLS context is made at creation; the refusal comes at the first
    # check_async, before anything is sent.
    lim = tollgate.Limiter("rediss://127.0.0.1:1", tls_verify=False, driver="loop")

    async def main() -> None:
        with pytest.raises(tollgate.UnsupportedError, match="^driver: .*TLS"):
            await lim.check_async("k", tollgate.Policy(1, "1s"))

    asyncio.run(main())
    lim.close()
    auto = tollgate.Limiter("rediss://127.0.0.1:1", tls_verify=False, timeout_ms=50,
                            connect_timeout_ms=50, failure_mode="open")

    async def main_auto() -> None:
        d = await auto.check_async("k", tollgate.Policy(1, "1s"))
        assert d.source == "fail_open"

    asyncio.run(main_auto())
    assert auto.driver == "thread"
    auto.close()


def test_loop_and_thread_drivers_share_the_count(redis_server, prefix) -> None:
    loop_lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, driver="loop")
    thread_lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, driver="thread")
    p = tollgate.Policy(10, BIG)

    async def main() -> list:
        out = []
        for i in range(12):
            lim = thread_lim if i % 2 else loop_lim
            out.append((await lim.check_async("alt", p)).allowed)
        return out

    assert asyncio.run(main()) == [True] * 10 + [False, False]
    assert loop_lim.driver == "loop"
    loop_lim.close()
    thread_lim.close()


def test_a_frozen_server_times_out_from_the_loop_timer(own_redis) -> None:
    lim = tollgate.Limiter(own_redis.url, failure_mode="error", timeout_ms=150, driver="loop")

    async def main() -> float:
        p = tollgate.Policy(5, "1s")
        await lim.check_async("warm", p)
        assert lim.driver == "loop"
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        own_redis.freeze()
        started = time.monotonic()
        try:
            with pytest.raises(tollgate.TollgateTimeoutError):
                await lim.check_async("k", p)
        finally:
            own_redis.thaw()
        waited = time.monotonic() - started
        t.cancel()
        assert ticks >= 5, "the loop did not keep running"
        # Back once the server is.
        assert (await lim.check_async("again", p)).allowed
        return waited

    waited = asyncio.run(main())
    assert 0.14 <= waited < 1.5
    lim.close()


def test_blocking_check_on_the_loop_thread_and_from_a_plain_thread(redis_server, prefix) -> None:
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, timeout_ms=2000, driver="loop")
    p = tollgate.Policy(300, BIG)
    from_thread = []

    async def main() -> int:
        await lim.check_async("both", p)  # this loop drives from here on
        assert lim.driver == "loop"
        # A blocking check on the loop's own thread turns the loop itself.
        assert lim.check("both", p).allowed

        def plain() -> None:
            from_thread.extend(lim.check("both", p).allowed for _ in range(100))

        th = threading.Thread(target=plain)
        th.start()
        got = 0
        for _ in range(10):
            ds = await asyncio.gather(*(lim.check_async("both", p) for _ in range(10)))
            got += sum(d.allowed for d in ds)
        while th.is_alive():
            await asyncio.sleep(0.01)
        th.join()
        assert lim.driver == "loop"
        return got

    got = asyncio.run(main())
    # 1 + 1 + 100 + 100 checks against 300: every one allowed, each once.
    assert got + sum(from_thread) == 200
    assert len(from_thread) == 100
    assert lim.check("both", tollgate.Policy(300, BIG), cost=0).remaining == 300 - 202
    lim.close()


def test_loops_in_several_threads_hand_over_to_the_io_thread(redis_server, prefix) -> None:
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, timeout_ms=2000, driver="loop")
    p = tollgate.Policy(300, BIG)
    allowed = []
    errors = []

    def run() -> None:
        async def main() -> int:
            got = 0
            for _ in range(10):
                ds = await asyncio.gather(*(lim.check_async("shared", p) for _ in range(20)))
                got += sum(d.allowed for d in ds)
            return got

        try:
            allowed.append(asyncio.run(main()))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sum(allowed) == 300  # 600 checks from three loops
    assert lim.driver == "thread"
    lim.close()


def test_a_stopped_loop_hands_over_to_a_plain_thread(redis_server, prefix) -> None:
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, timeout_ms=2000, driver="loop")
    p = tollgate.Policy(5, BIG)
    done = threading.Event()

    def drive_then_stop() -> None:
        async def main() -> None:
            await lim.check_async("k", p)

        asyncio.run(main())  # this thread's loop drove, then ended
        done.set()

    th = threading.Thread(target=drive_then_stop)
    th.start()
    th.join(10)
    assert done.is_set()
    # Nothing runs that loop any more: a blocking check from this thread is
    # answered by the I/O thread, promptly, not by a timeout.
    started = time.monotonic()
    d = lim.check("k", p)
    assert d.allowed and d.source == "store"
    assert time.monotonic() - started < 1.0
    assert lim.driver == "thread"
    lim.close()


def test_close_while_the_loop_drives(own_redis) -> None:
    lim = tollgate.Limiter(own_redis.url, failure_mode="error", timeout_ms=2000, driver="loop")

    async def main() -> None:
        p = tollgate.Policy(5, "1s")
        await lim.check_async("k", p)
        own_redis.freeze()
        try:
            pending = asyncio.ensure_future(lim.check_async("k", p))
            await asyncio.sleep(0.02)
            lim.close()
            with pytest.raises(tollgate.Error):
                await pending
        finally:
            own_redis.thaw()

    asyncio.run(main())
