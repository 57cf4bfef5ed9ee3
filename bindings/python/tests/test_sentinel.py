"""Redis Sentinel through the Python API: a `redis+sentinel://` URL on a
real primary, replica and 3 sentinels (tests/servers/topology.py; the
`redis_sentinel` fixture, one per module, keeps a stable master), sync and
asyncio checks exact per key and written on the master, health's sentinel
fields and nodes, ping, reset and key listing, a `SENTINEL FAILOVER` on a
set of the test's own (`own_redis_sentinel`) followed by the limiter, an
unknown master name and bad sentinel URLs."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Callable, List

import pytest

import tollgate
from conftest import redis_command
from tollgate import InvalidArgument, Limiter, Policy, ProtocolError

KEYS = ["user:%d" % i for i in range(20)]
# Ten years: nothing refills while a test runs.
YEARS = 10 * 365 * 24 * 3600


def addr(port: int) -> str:
    return "127.0.0.1:%d" % port


def wait_for(what: str, cond: Callable[[], bool], within: float, step: float = 0.02) -> float:
    """Polls `cond` until it holds; the seconds it took. Fails after `within`."""
    start = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            pytest.fail("%s: not within %g s" % (what, within))
        time.sleep(step)


def assert_on_master(sentinel, prefix: str, n_keys: int, dbsize_before: int) -> None:
    """The prefix's keys, one state key per user key, are all on the master
    the sentinels name (only this module's tests write to the set, one at a
    time, so DBSIZE grows by exactly that many)."""
    master = sentinel.current_master()
    assert master == sentinel.primary_ports[0]  # a stable master
    assert len(redis_command(master, "KEYS", prefix + "*")) == n_keys
    assert redis_command(master, "DBSIZE") == dbsize_before + n_keys


def test_sentinel_sync_checks_from_two_limiters_admit_exactly_the_limit(redis_sentinel, prefix) -> None:
    master = redis_sentinel.current_master()
    before = redis_command(master, "DBSIZE")
    a = Limiter(redis_sentinel.url, key_prefix=prefix, failure_mode="error", timeout_ms=2000)
    b = Limiter(redis_sentinel.url, key_prefix=prefix, failure_mode="error", timeout_ms=2000)
    p = Policy(4, YEARS)
    allowed: Counter = Counter()
    for round_ in range(6):
        for key in KEYS:
            d = (a if round_ % 2 else b).check(key, p)
            assert d.source in ("store", "deny_cache"), (key, d)
            allowed[key] += d.allowed
    assert allowed == Counter({k: 4 for k in KEYS})
    assert_on_master(redis_sentinel, prefix, len(KEYS), before)
    a.close()
    b.close()


def test_sentinel_async_checks_from_two_limiters_admit_exactly_the_limit(redis_sentinel, prefix) -> None:
    before = redis_command(redis_sentinel.current_master(), "DBSIZE")

    async def main() -> None:
        a = Limiter(redis_sentinel.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
        b = Limiter(redis_sentinel.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
        p = Policy(5, YEARS)
        # 20 keys x 8 checks, all in flight at once over both limiters.
        calls = [(key, (a, b)[i % 2]) for i in range(8) for key in KEYS]
        got = await asyncio.gather(*(lim.check_async(key, p) for key, lim in calls))
        allowed: Counter = Counter()
        for (key, _), d in zip(calls, got):
            assert d.source in ("store", "deny_cache"), (key, d)
            allowed[key] += d.allowed
        assert allowed == Counter({k: 5 for k in KEYS})
        # Each admitted check saw its predecessors' state.
        for key in KEYS:
            left = sorted(d.remaining for (k, _), d in zip(calls, got) if k == key and d.allowed)
            assert left == [0, 1, 2, 3, 4], key
        a.close()
        b.close()

    asyncio.run(main())
    assert_on_master(redis_sentinel, prefix, len(KEYS), before)


def test_sentinel_health_reports_topology_master_and_nodes(redis_sentinel, prefix) -> None:
    master = redis_sentinel.current_master()
    sentinels = {addr(port) for port in redis_sentinel.sentinel_ports}
    with Limiter(redis_sentinel.url, key_prefix=prefix, failure_mode="error") as lim:
        before = lim.health()
        assert before["topology"] == "sentinel" and before["store"] == "redis"
        assert before["master_switches"] == 0
        for key in KEYS:
            assert lim.check(key, Policy(3, YEARS)).allowed
        h = lim.health()
        json.dumps(h)  # plain data
        assert h["topology"] == "sentinel"
        assert h["connection"] == "ready"
        assert h["master_switches"] == 0  # a stable master
        assert (h["checks"], h["allowed"], h["errors"]) == (20, 20, 0)
        # Cluster-only fields stay at rest.
        assert h["slot_map_age_ms"] is None
        assert (h["slot_map_refreshes"], h["moved"], h["ask"]) == (0, 0, 0)
        assert h["server_version"]  # the master's
        # The data nodes met (the master, marked primary), then the sentinels.
        primaries = [n for n in h["nodes"] if n["role"] == "primary"]
        assert [n["address"] for n in primaries] == [addr(master)]
        assert primaries[0]["connection"] == "ready"
        assert h["nodes"][0]["address"] == addr(master)
        addresses = [n["address"] for n in h["nodes"]]
        assert len(addresses) == len(set(addresses))  # each node once
        assert sentinels <= set(addresses)
        data_nodes = {addr(n["port"]) for n in redis_sentinel.nodes}
        assert set(addresses) <= sentinels | data_nodes
        for n in h["nodes"]:
            assert set(n) == {"address", "role", "connection", "in_flight", "errors", "reconnects", "last_error"}
            assert n["connection"] in ("none", "connecting", "ready", "down")
            assert n["errors"] == 0 and n["reconnects"] == 0 and n["last_error"] == ""


def test_health_master_switches_is_zero_without_sentinel(redis_server) -> None:
    assert Limiter().health()["master_switches"] == 0
    with Limiter(redis_server.url, failure_mode="error") as lim:
        lim.ping()
        h = lim.health()
        assert h["topology"] == "standalone" and h["master_switches"] == 0


def test_sentinel_ping_reset_and_keys(redis_sentinel, prefix) -> None:
    master = redis_sentinel.current_master()
    with Limiter(redis_sentinel.url, key_prefix=prefix, failure_mode="error") as lim:
        assert lim.ping() >= 0
        p = Policy(2, YEARS)
        for key in KEYS:
            assert [lim.check(key, p).allowed for _ in range(3)] == [True, True, False]
        listed = list(lim.keys(p))
        assert sorted(s.key for s in listed) == sorted(KEYS)
        assert all(s.policy == p and s.remaining == 0 for s in listed)
        lim.reset(KEYS[3])
        assert len(redis_command(master, "KEYS", prefix + "*")) == len(KEYS) - 1
        d = lim.check(KEYS[3], p)
        assert d.allowed and d.remaining == 1
        assert not lim.check(KEYS[4], p).allowed


def test_sentinel_unknown_master_name_fails_at_once_naming_it(redis_sentinel) -> None:
    url = redis_sentinel.url.rsplit("/", 1)[0] + "/no-such-master"
    with Limiter(url, failure_mode="error", timeout_ms=500) as lim:
        start = time.monotonic()
        with pytest.raises(ProtocolError) as info:
            lim.check("k", Policy(5, YEARS))
        assert time.monotonic() - start < 1.5
        assert info.value.code == "RL_E_STORE"
        assert "no-such-master" in str(info.value)
        assert "no sentinel knows" in str(info.value)

        async def main() -> None:
            with pytest.raises(ProtocolError) as ainfo:
                await lim.check_async("k", Policy(5, YEARS))
            assert "no-such-master" in str(ainfo.value)

        start = time.monotonic()
        asyncio.run(main())
        assert time.monotonic() - start < 1.5
        h = lim.health()
        assert h["topology"] == "sentinel" and h["connection"] != "ready"
        assert "no-such-master" in h["last_error"]


# A sentinel set of its own (about 2 s to start), a failover (1-3 s) and
# the polls below (at most 20 + 5 + 10 s): above the default 60 s only if
# something is wrong, but then it should fail, not time out.
@pytest.mark.timeout(120)
def test_sentinel_failover_checks_follow_the_new_master(own_redis_sentinel, prefix) -> None:
    topo = own_redis_sentinel
    old = topo.current_master()
    timeout_ms = 500
    lim = Limiter(topo.url, key_prefix=prefix, failure_mode="error", timeout_ms=timeout_ms)
    p = Policy(1_000_000, YEARS)
    longest = 0.0

    def check(key: str) -> bool:
        """One check; True if it succeeded. No call outlives its deadline."""
        nonlocal longest
        start = time.monotonic()
        try:
            ok = lim.check(key, p).allowed
        except tollgate.Error:
            ok = False
        longest = max(longest, time.monotonic() - start)
        return ok

    for key in KEYS:
        assert check(key)
    assert lim.health()["master_switches"] == 0

    assert redis_command(topo.sentinel_ports[0], "SENTINEL", "FAILOVER", topo.master_name) == "OK"
    new: List[int] = []

    def named() -> bool:
        check(KEYS[0])  # checks go on meanwhile
        port = topo.current_master(sentinel=1)
        if port != old:
            new.append(port)
        return bool(new)

    wait_for("the sentinels name a new master", named, 20)
    assert new[0] != old and new[0] in {n["port"] for n in topo.nodes}

    # Checks succeed again within 5 s; the limiter follows the switch (the
    # sentinels announce it about a second after the promotion) within 10 s;
    # from then on every check succeeds.
    wait_for("checks succeed", lambda: check(KEYS[1]), 5)
    wait_for("health counts the switch", lambda: check(KEYS[2]) and lim.health()["master_switches"] >= 1, 10)
    for key in KEYS:
        assert check(key), key
    assert longest < timeout_ms / 1000 + 0.75, longest

    h = lim.health()
    assert h["topology"] == "sentinel" and h["connection"] == "ready"
    assert h["master_switches"] >= 1
    primaries = [n["address"] for n in h["nodes"] if n["role"] == "primary"]
    assert primaries == [addr(new[0])]
    assert addr(old) in {n["address"] for n in h["nodes"]}  # now "other"
    # The new master holds the keys (replicated before the switch, or
    # written after it), and asyncio checks land there too.
    assert len(redis_command(new[0], "KEYS", prefix + "*")) == len(KEYS)

    async def main() -> None:
        got = await asyncio.gather(*(lim.check_async(key, p) for key in KEYS))
        assert all(d.allowed and d.source == "store" for d in got)

    asyncio.run(main())
    lim.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:1",
        "redis+sentinel://h:1/",
        "redis+sentinel:///m",
        "redis+sentinel://",
        "rediss+sentinel://h:1",
        "redis+sentinel://,/m",
        "redis+sentinel://h:1,,h:2/m",
        "redis+sentinel://h:1,h:99999/m",
        "redis+sentinel://h:1/m/x",
        "redis+sentinel://h:1/my%20master",
        "redis+sentinel://h:1/m?sentinel_username=w",
        "redis+sentinel://h:1/m?nope=1",
        "redis://h:1?sentinel_password=x",
        "unix+sentinel:///tmp/r.sock",
    ],
)
def test_bad_sentinel_urls_raise_the_url_error(url) -> None:
    with pytest.raises(InvalidArgument) as info:
        Limiter(url)
    assert info.value.code == "RL_E_URL"
    assert str(info.value)
    assert isinstance(info.value, tollgate.Error)


def test_bad_sentinel_urls_never_show_passwords() -> None:
    secret = "s3cr3t-sentinel-pw"
    for url in [
        "redis+sentinel://:%s@h:1" % secret,
        "redis+sentinel://:%s@/m" % secret,
        "redis+sentinel://h:1?sentinel_password=%s" % secret,
        "redis+sentinel://:%s@h:1,h:0/m?sentinel_password=%s" % (secret, secret),
    ]:
        with pytest.raises(InvalidArgument) as info:
            Limiter(url)
        assert info.value.code == "RL_E_URL", url
        assert secret not in str(info.value) and secret not in repr(info.value)
