"""The Redis store through the Python API: sharing, processes, failure modes,
errors and secrets. Every server is a throwaway redis-server on a loopback
port (conftest.py), stopped by PID."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest

import tollgate
from tollgate import (
    AuthError,
    InvalidArgument,
    KeyState,
    Limiter,
    Policy,
    TollgateConnectionError,
    TollgateTimeoutError,
)

from conftest import RedisServer, needs_redis

pytestmark = needs_redis

SECRET = "Wr0ng-Pa55-7f3a91"


def test_two_limiters_share_one_limit(redis_server, prefix):
    p = Policy(5, "1h")
    with Limiter(redis_server.url, key_prefix=prefix) as a, Limiter(redis_server.url, key_prefix=prefix) as b:
        results = [(a if i % 2 else b).check("org-1", p) for i in range(8)]
        assert [d.allowed for d in results] == [True] * 5 + [False] * 3
        assert all(d.source in ("store", "deny_cache") for d in results)
        assert results[4].remaining == 0
        assert results[5].retry_after > 0
        # another prefix is another namespace
        with Limiter(redis_server.url, key_prefix=prefix + "other:") as c:
            assert c.check("org-1", p).allowed


@pytest.mark.parametrize("spin_us", [0, 1000])
def test_blocking_checks_with_and_without_the_spin(redis_server, prefix, spin_us):
    # Sequential checks ride the caller-thread path on the idle connection;
    # spinning (or not) before sleeping changes no decision.
    # A window of ~32 years: no window boundary (which resets the count)
    # falls between the checks, however slowly they run.
    p = Policy(20, 1_000_000_000, algorithm="fixed_window")
    with Limiter(redis_server.url, key_prefix=prefix, spin_us=spin_us, deny_cache=False) as lim:
        got = [lim.check("seq", p) for _ in range(30)]
    assert [d.allowed for d in got] == [True] * 20 + [False] * 10
    assert [d.remaining for d in got[:20]] == list(range(19, -1, -1))
    assert all(d.source == "store" for d in got)


def test_decisions_and_admin(redis_server, prefix):
    with Limiter(redis_server.url, key_prefix=prefix, deny_cache=False) as lim:
        assert lim.store == "redis"
        rtt = lim.ping()
        assert 0 <= rtt < 1
        # GCRA 2/h (T = 30 min): the third check is denied however slowly
        # the calls run (at 2 per second a 0.5 s pause would let it pass).
        # per_hour is named: its state is its own wherever it stands in a
        # check's list (unnamed, it would share position 0 with `tight`).
        tight, per_hour = Policy(2, "1h"), Policy(10, "1h", "sliding_window", name="hourly")
        assert lim.check("user:α", tight, per_hour).allowed
        assert lim.check(b"bin\xff", tight).allowed
        lim.check("user:α", tight, per_hour, cost=1)
        d = lim.check("user:α", tight, per_hour)
        assert not d.allowed and d.policy_index == 0 and d.source == "store"
        never = lim.check("user:α", per_hour, cost=11)
        assert never.retry_after == math.inf

        states = list(lim.keys([tight, per_hour]))
        assert all(isinstance(s, KeyState) for s in states)
        listed = {(s.key, s.policy, s.policy_index) for s in states}
        assert listed == {("user:α", tight, 0), ("user:α", per_hour, 1), (b"bin\xff", tight, 0)}
        assert all(s.policy is (tight, per_hour)[s.policy_index] for s in states)
        hour = next(s for s in states if s.key == "user:α" and s.policy == per_hour)
        # a sliding window is full again at the end of the next window
        assert hour.remaining == 8 and 0 < hour.reset_after <= 7200
        raw = {s.key for s in lim.keys([tight, per_hour], raw=True)}
        assert raw == {"user:α".encode(), b"bin\xff"}

        lim.reset("user:α")
        assert {s.key for s in lim.keys([tight, per_hour])} == {b"bin\xff"}
        assert lim.check("user:α", tight).remaining == 1

        h = lim.health()
        assert h["store"] == "redis" and h["connection"] == "ready"
        assert h["checks"] >= 5 and h["server_version"]
        assert h["last_ping"] is None or h["last_ping"] >= 0


def test_keys_iterator_lifecycle(redis_server, prefix):
    lim = Limiter(redis_server.url, key_prefix=prefix)
    for i in range(30):
        lim.check("k%d" % i, Policy(3, "1h"))
    it = lim.keys(Policy(3, "1h"))
    first = next(it)
    assert isinstance(first, KeyState)
    it.close()
    with pytest.raises(StopIteration):
        next(it)
    it2 = lim.keys(Policy(3, "1h"))
    next(it2)
    lim.close()  # frees the open iterator first
    with pytest.raises(TollgateConnectionError):
        next(it2)
    del it2
    # an iterator keeps its limiter object alive
    lim3 = Limiter(redis_server.url, key_prefix=prefix)
    it3 = lim3.keys([Policy(3, "1h")])
    del lim3
    assert len(list(it3)) == 30


def test_deny_cache_answers_locally(redis_server, prefix):
    with Limiter(redis_server.url, key_prefix=prefix) as lim:
        p = Policy(1, "1h")
        assert lim.check("k", p).allowed
        assert lim.check("k", p).source == "store"
        d = lim.check("k", p)
        assert not d.allowed and d.source == "deny_cache"
        assert lim.health()["deny_cache_hits"] >= 1


# ---- processes -------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import tollgate
    url, prefix, start_at, attempts, limit = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    lim = tollgate.Limiter(url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
    lim.ping()
    policy = tollgate.Policy(limit, "1d")
    while time.time() < start_at:
        time.sleep(0.001)
    allowed = sum(lim.check("shared-key", policy).allowed for _ in range(attempts))
    lim.close()
    print(json.dumps({"allowed": allowed}))
    """
)


def test_three_processes_share_exactly_limit(redis_server, prefix):
    limit, attempts = 100, 150
    start_at = time.time() + 1.5
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_server.url, prefix, str(start_at), str(attempts), str(limit)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(3)
    ]
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        total += json.loads(out)["allowed"]
    assert total == limit


def _forked_worker(lim: Limiter, n: int, q) -> None:
    # Uses the limiter object inherited from the parent across fork: the
    # child must open its own connection.
    allowed = sum(lim.check("fork-key", Policy(50, "1d")).allowed for _ in range(n))
    q.put(allowed)


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
# Forking a process with threads (the limiter's I/O thread) is the point here.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_children_share_exactly_limit(redis_server, prefix):
    ctx = multiprocessing.get_context("fork")
    lim = Limiter(redis_server.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
    lim.check("warm-up", Policy(1, 1))  # the parent's connection and I/O thread exist
    q = ctx.Queue()
    procs = [ctx.Process(target=_forked_worker, args=(lim, 40, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    total = sum(q.get(timeout=5) for _ in procs)
    # 3 x 40 attempts on a limit of 50
    assert total == 50
    # the parent still works after its children are gone
    assert lim.check("fork-key", Policy(50, "1d"), cost=0).remaining == 0
    lim.close()


# ---- Redis going away ------------------------------------------------------


@pytest.mark.parametrize(
    "mode, source, allowed",
    [("open", "fail_open", True), ("closed", "fail_closed", False), ("local", "local", True)],
)
def test_server_killed_mid_test_gives_failure_mode_answer(own_redis, mode, source, allowed):
    timeout_ms = 300
    lim = Limiter(own_redis.url, failure_mode=mode, timeout_ms=timeout_ms, connect_timeout_ms=300,
                  deny_cache=False)
    p = Policy(100, "1h")
    first = lim.check("k", p)
    assert first.allowed and first.source == "store"
    own_redis.kill()  # SIGKILL
    for _ in range(3):
        started = time.monotonic()
        d = lim.check("k", p)
        elapsed = time.monotonic() - started
        assert d.source == source
        assert d.allowed is allowed
        # within the deadline (plus scheduling slack)
        assert elapsed < timeout_ms / 1000 + 0.5, elapsed
    if mode == "closed":
        assert d.retry_after > 0
    h = lim.health()
    assert h["connection"] in ("down", "connecting")
    assert h["fail_open"] + h["fail_closed"] + h["local_fallback"] >= 3
    lim.close()


def test_server_killed_with_error_mode_raises(own_redis):
    lim = Limiter(own_redis.url, failure_mode="error", timeout_ms=300, connect_timeout_ms=300)
    assert lim.check("k", Policy(5, "1h")).source == "store"
    own_redis.kill()
    started = time.monotonic()
    with pytest.raises((TollgateConnectionError, TollgateTimeoutError)) as info:
        lim.check("k", Policy(5, "1h"))
    assert time.monotonic() - started < 0.8
    assert info.value.code in ("RL_E_CONNECT", "RL_E_TIMEOUT")
    with pytest.raises((TollgateConnectionError, TollgateTimeoutError)):
        lim.ping()
    lim.close()


def test_frozen_server_times_out(own_redis):
    lim = Limiter(own_redis.url, failure_mode="error", timeout_ms=250)
    assert lim.ping() >= 0
    own_redis.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(TollgateTimeoutError) as info:
            lim.check("k", Policy(5, "1h"))
        elapsed = time.monotonic() - started
        assert isinstance(info.value, TimeoutError)
        assert info.value.code == "RL_E_TIMEOUT"
        assert 0.2 < elapsed < 1.0, elapsed
    finally:
        own_redis.thaw()
    lim.close()


def test_nothing_listening_is_a_connection_error():
    from conftest import free_port

    port = free_port()
    lim = Limiter("redis://127.0.0.1:%d" % port, failure_mode="error", connect_timeout_ms=300)
    with pytest.raises(TollgateConnectionError) as info:
        lim.ping()
    assert info.value.code == "RL_E_CONNECT"
    assert isinstance(info.value, ConnectionError)
    # the default failure mode (open) answers, and says so
    with Limiter("redis://127.0.0.1:%d" % port, connect_timeout_ms=300) as lim2:
        d = lim2.check("k", Policy(3, "1m"))
        assert d.allowed and d.source == "fail_open" and d.remaining == 3


# ---- credentials -----------------------------------------------------------


@pytest.fixture
def auth_redis():
    server = RedisServer(password="correct-horse-battery")
    yield server
    server.stop()


def _assert_no_secret(exc: BaseException) -> None:
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)
    assert all(SECRET not in str(a) for a in exc.args)


def test_wrong_password_is_auth_error_without_the_password(auth_redis):
    url = "redis://:%s@127.0.0.1:%d" % (SECRET, auth_redis.port)
    lim = Limiter(url, failure_mode="error", timeout_ms=500)
    with pytest.raises(AuthError) as info:
        lim.ping()
    assert info.value.code == "RL_E_AUTH"
    _assert_no_secret(info.value)
    with pytest.raises(AuthError) as info:
        lim.check("k", Policy(1, 1))
    _assert_no_secret(info.value)
    assert SECRET not in json.dumps(lim.health())
    assert SECRET not in repr(lim)
    lim.close()

    # the same through the password option, and through ACL user syntax
    for lim in (
        Limiter("redis://127.0.0.1:%d" % auth_redis.port, password=SECRET, failure_mode="error"),
        Limiter("redis://default:%s@127.0.0.1:%d" % (SECRET, auth_redis.port), failure_mode="error"),
    ):
        with pytest.raises(AuthError) as info:
            lim.ping()
        _assert_no_secret(info.value)
        lim.close()

    # no password at all: refused too, as an auth error
    with Limiter("redis://127.0.0.1:%d" % auth_redis.port, failure_mode="error") as lim:
        with pytest.raises(AuthError):
            lim.ping()

    # the right one works, from the URL or the option
    with Limiter(auth_redis.url) as lim:
        assert lim.ping() >= 0
        assert lim.check("k", Policy(1, 1)).source == "store"
    with Limiter("redis://127.0.0.1:%d" % auth_redis.port, password="correct-horse-battery") as lim:
        assert lim.check("k2", Policy(1, 1)).source == "store"


def test_wrong_password_in_fail_open_mode_is_labelled(auth_redis):
    url = "redis://:%s@127.0.0.1:%d" % (SECRET, auth_redis.port)
    with Limiter(url, timeout_ms=500) as lim:
        d = lim.check("k", Policy(1, 1))
        assert d.allowed and d.source == "fail_open"
        h = lim.health()
        assert SECRET not in h["last_error"]


def test_tls_to_a_plaintext_port_fails(redis_server):
    url = "rediss://127.0.0.1:%d" % redis_server.port
    with Limiter(url, failure_mode="error", connect_timeout_ms=500, tls_verify=False) as lim:
        with pytest.raises((tollgate.TLSError, TollgateConnectionError, TollgateTimeoutError)):
            lim.ping()


def test_bad_redis_options(redis_server):
    for options in (
        {"key_prefix": "has{brace"},
        {"key_prefix": "x" * 129},
        {"connections": 65},
        {"local_divisor": 1_000_001},
        {"tls_verify": False},  # TLS options need rediss://
        {"tls_ca_file": "/etc/ssl/certs/ca-certificates.crt"},
    ):
        with pytest.raises(InvalidArgument) as info:
            Limiter(redis_server.url, **options)
        assert info.value.code == "RL_E_INVALID_ARG", options


def test_option_ranges_match_the_url_ranges(redis_server):
    # docs/redis.md: timeout_ms and connect_timeout_ms are 1..600000,
    # reconnect_max_ms 10..600000, deny_cache_size 1..10000000.
    for options in (
        {"timeout_ms": 600_001},
        {"connect_timeout_ms": 600_001},
        {"reconnect_max_ms": 5},
        {"deny_cache_size": 10_000_001},
    ):
        with pytest.raises(InvalidArgument):
            Limiter(redis_server.url, **options)
