"""Threads: exactness under contention, and the GIL released while C works."""

from __future__ import annotations

import threading
import time

import pytest

from tollgate import Limiter, Policy

from conftest import needs_redis

THREADS = 16


def hammer(lim: Limiter, key: str, policy: Policy, per_thread: int) -> int:
    start = threading.Barrier(THREADS)
    counts = [0] * THREADS
    errors = []

    def worker(i: int) -> None:
        try:
            start.wait()
            n = 0
            for _ in range(per_thread):
                if lim.check(key, policy).allowed:
                    n += 1
            counts[i] = n
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return sum(counts)


@pytest.mark.parametrize("algorithm", ["gcra", "token_bucket", "fixed_window", "sliding_window"])
def test_16_threads_one_key_memory_admit_exactly_limit(algorithm):
    limit = 1000
    with Limiter() as lim:
        # ~32 years on the real clock: nothing refills and no window
        # boundary (with "1d", midnight UTC) falls during the test
        policy = Policy(limit, 1_000_000_000, algorithm)
        assert hammer(lim, "hot-key", policy, per_thread=500) == limit
        h = lim.health()
        assert h["allowed"] == limit and h["checks"] == THREADS * 500


@needs_redis
def test_16_threads_one_key_redis_admit_exactly_limit(redis_server, prefix):
    limit = 300
    with Limiter(redis_server.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000) as lim:
        assert hammer(lim, "hot-key", Policy(limit, "1d"), per_thread=40) == limit


def test_gil_is_released_during_check():
    # A clock that sleeps in C-like fashion is not enough (it takes the GIL),
    # so make the check wait on another thread's Python work instead: while
    # the clock blocks on an Event, other Python threads must keep running.
    gate = threading.Event()
    progressed = []

    def clock() -> int:
        gate.wait(5)  # releases the GIL while waiting, like any Python wait
        return 1_700_000_000_000_000

    def spinner() -> None:
        deadline = time.monotonic() + 0.2
        n = 0
        while time.monotonic() < deadline:
            n += 1
        progressed.append(n)
        gate.set()

    lim = Limiter(clock=clock)
    t = threading.Thread(target=spinner)
    t.start()
    assert lim.check("k", Policy(1, 1)).allowed
    t.join()
    assert progressed and progressed[0] > 0


@needs_redis
def test_gil_is_released_while_redis_is_frozen(own_redis):
    # The server is frozen (SIGSTOP): a check waits in C for its deadline.
    # Meanwhile another Python thread must run freely.
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
        d = lim.check("k", Policy(5, "1h"))
        elapsed = time.monotonic() - started
        stop.set()
        t.join()
        assert d.source == "fail_open"
        assert 0.4 < elapsed < 3.0
        # ~1 ms per tick: a held GIL would have allowed only a few
        assert ticks[0] > 100, ticks
    finally:
        own_redis.thaw()
        lim.close()


EXIT_WITH_DAEMONS = """
import sys, threading, time
import tollgate
url = sys.argv[1] if len(sys.argv) > 1 else None
lim = tollgate.Limiter(url, timeout_ms=2000) if url else tollgate.Limiter()
policy = tollgate.Policy(10**9, "1h")
def spin():
    while True:
        lim.check("busy", policy)
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
time.sleep(0.3)
print("bye")
"""


def _exit_cleanly(*args: str) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_DAEMONS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.strip() == b"bye"


def test_interpreter_exits_cleanly_with_daemon_threads_mid_check():
    # At exit CPython ends daemon threads when they retake the GIL; that must
    # not abort the process (it would with an RAII GIL guard in a noexcept
    # destructor).
    for _ in range(3):
        _exit_cleanly()


@needs_redis
def test_interpreter_exits_cleanly_with_daemon_threads_mid_redis_check(redis_server):
    for _ in range(2):
        _exit_cleanly(redis_server.url)


def test_interpreter_exits_cleanly_with_daemon_threads_in_the_clock():
    import subprocess
    import sys

    script = """
import threading, time
import tollgate
lim = tollgate.Limiter(clock=lambda: time.time_ns() // 1000)
policy = tollgate.Policy(10**9, "1h")
def spin():
    while True:
        lim.check("busy", policy)
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
time.sleep(0.3)
print("bye")
"""
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 0, r.stderr.decode()


def _child_closes_and_checks(lim: Limiter, q) -> None:
    # The parent's thread is still inside a check: the child must not wait
    # for it, and its own checks work.
    d = Limiter().check("child", Policy(1, 1))
    lim.close()
    q.put(d.allowed)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_while_another_thread_is_mid_check():
    import multiprocessing
    import sys

    if sys.platform != "linux":
        pytest.skip("fork start method")
    inside = threading.Event()
    release = threading.Event()

    def clock() -> int:
        inside.set()
        release.wait(10)
        return 1_700_000_000_000_000

    lim = Limiter(clock=clock)
    t = threading.Thread(target=lambda: lim.check("k", Policy(1, 1)))
    t.start()
    try:
        assert inside.wait(5)
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_child_closes_and_checks, args=(lim, q), daemon=True)
        p.start()
        p.join(20)
        if p.is_alive():  # hung: stop it (by PID) before failing
            p.kill()
            p.join(5)
        assert p.exitcode == 0
        assert q.get(timeout=5) is True
    finally:
        release.set()
        t.join(10)
    lim.close()
