"""Redis Cluster through the Python API: a `redis+cluster://` URL on a real
3-primary + 3-replica cluster (tests/servers/topology.py, the
`redis_cluster` fixture, one per module), sync and asyncio checks exact per
key with the keys spread over every primary, health's cluster fields and
nodes, reset, ping and key listing, and bad cluster URLs."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Dict, List

import pytest

import tollgate
from conftest import redis_command
from tollgate import InvalidArgument, Limiter, Policy, ProtocolError

KEYS = ["user:%d" % i for i in range(60)]
# Ten years: nothing refills while a test runs.
YEARS = 10 * 365 * 24 * 3600


def keys_per_primary(cluster, prefix: str) -> Dict[int, List[bytes]]:
    """Each primary's own keys under `prefix` (KEYS on a test server)."""
    return {port: redis_command(port, "KEYS", prefix + "*") for port in cluster.primary_ports}


def assert_spread(cluster, prefix: str, n_keys: int) -> None:
    held = keys_per_primary(cluster, prefix)
    assert len(held) == 3
    for port, keys in held.items():
        assert keys, "primary %d holds none of the keys" % port
        # DBSIZE agrees: only this module's tests write to the cluster.
        assert redis_command(port, "DBSIZE") >= len(keys)
    # One policy: one state key per user key, each on exactly one primary.
    assert sum(len(k) for k in held.values()) == n_keys


def test_cluster_sync_checks_from_two_limiters_admit_exactly_the_limit(redis_cluster, prefix) -> None:
    a = Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error", timeout_ms=2000)
    b = Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error", timeout_ms=2000)
    p = Policy(4, YEARS)
    allowed: Counter = Counter()
    for round_ in range(6):
        for key in KEYS:
            d = (a if round_ % 2 else b).check(key, p)
            assert d.source in ("store", "deny_cache"), (key, d)
            allowed[key] += d.allowed
    assert allowed == Counter({k: 4 for k in KEYS})
    assert_spread(redis_cluster, prefix, len(KEYS))
    a.close()
    b.close()


def test_cluster_async_checks_from_two_limiters_admit_exactly_the_limit(redis_cluster, prefix) -> None:
    async def main() -> None:
        a = Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
        b = Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error", timeout_ms=5000)
        p = Policy(5, YEARS)
        # 60 keys x 8 checks, all in flight at once over both limiters.
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
    assert_spread(redis_cluster, prefix, len(KEYS))


def test_cluster_health_reports_topology_slot_map_and_nodes(redis_cluster, prefix) -> None:
    with Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error") as lim:
        before = lim.health()
        assert before["topology"] == "cluster" and before["store"] == "redis"
        # From the start: the URL's seeds (every node here).
        seeds = {"127.0.0.1:%d" % n["port"] for n in redis_cluster.nodes}
        assert {n["address"] for n in before["nodes"]} == seeds
        for key in KEYS[:20]:
            assert lim.check(key, Policy(3, YEARS)).allowed
        h = lim.health()
        json.dumps(h)  # plain data
        assert h["topology"] == "cluster"
        assert h["connection"] == "ready"
        assert h["slot_map_refreshes"] >= 1
        assert isinstance(h["slot_map_age_ms"], int) and h["slot_map_age_ms"] >= 0
        assert h["moved"] == 0 and h["ask"] == 0  # a stable cluster
        assert (h["checks"], h["allowed"]) == (20, 20)
        primaries = [n for n in h["nodes"] if n["role"] == "primary"]
        want = {"127.0.0.1:%d" % port for port in redis_cluster.primary_ports}
        assert {n["address"] for n in primaries} == want and len(primaries) == 3
        assert {n["address"] for n in h["nodes"]} == seeds
        assert len(h["nodes"]) == len(seeds)  # each node once
        for n in h["nodes"]:
            assert set(n) == {"address", "role", "connection", "in_flight", "errors", "reconnects", "last_error"}
            assert n["role"] in ("primary", "other")
            assert n["connection"] in ("none", "connecting", "ready", "down")
            assert n["errors"] == 0 and n["reconnects"] == 0 and n["last_error"] == ""
            assert isinstance(n["in_flight"], int) and n["in_flight"] >= 0
        assert all(n["connection"] == "ready" for n in primaries)


def test_health_topology_of_memory_and_standalone_stores(redis_server) -> None:
    h = Limiter().health()
    assert h["topology"] == "memory" and h["nodes"] == []
    assert h["slot_map_age_ms"] is None
    assert (h["slot_map_refreshes"], h["moved"], h["ask"]) == (0, 0, 0)
    with Limiter(redis_server.url, failure_mode="error") as lim:
        lim.ping()
        h = lim.health()
        assert h["topology"] == "standalone"
        assert h["slot_map_age_ms"] is None and h["slot_map_refreshes"] == 0
        (node,) = h["nodes"]
        assert node["address"] == "127.0.0.1:%d" % redis_server.port
        assert node["role"] == "primary" and node["connection"] == "ready"


def test_cluster_reset_ping_and_keys(redis_cluster, prefix) -> None:
    with Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error") as lim:
        assert lim.ping() >= 0  # every primary answers
        p = Policy(2, YEARS)
        for key in KEYS[:30]:
            assert [lim.check(key, p).allowed for _ in range(3)] == [True, True, False]
        # keys() visits every primary
        listed = list(lim.keys(p))
        assert sorted(s.key for s in listed) == sorted(KEYS[:30])
        assert all(s.policy == p and s.remaining == 0 for s in listed)
        # reset goes to the key's own primary
        for key in KEYS[:30:3]:
            lim.reset(key)
            d = lim.check(key, p)
            assert d.allowed and d.remaining == 1, key
        assert not lim.check(KEYS[1], p).allowed


def test_cluster_url_to_a_standalone_server_fails_clearly(redis_server) -> None:
    url = "redis+cluster://127.0.0.1:%d" % redis_server.port
    with Limiter(url, failure_mode="error", timeout_ms=500) as lim:
        with pytest.raises(ProtocolError) as info:
            lim.check("k", Policy(5, YEARS))
        assert "not in cluster mode" in str(info.value)


SECRET = "s3cr3t-cluster-pw"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "rediss+cluster://",
        "redis+cluster://,,",
        "redis+cluster://:%s@" % SECRET,
        "redis+cluster://:%s@127.0.0.1:7000,,127.0.0.1:7002" % SECRET,
        "redis+cluster://:%s@127.0.0.1:7000,127.0.0.1:70000" % SECRET,
        "redis+cluster://127.0.0.1:7000/1",
        "redis+cluster://127.0.0.1:7000?tls_ca=/x",
        "redis+cluster:///tmp/redis.sock",
        "redis://:%s@127.0.0.1:7000,127.0.0.1:7001" % SECRET,
    ],
)
def test_bad_cluster_urls_raise_the_url_error(url) -> None:
    with pytest.raises(InvalidArgument) as info:
        Limiter(url)
    assert info.value.code == "RL_E_URL"
    assert str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert isinstance(info.value, tollgate.Error)


# ---- several keys in one decision (check_keys) -------------------------------------


def test_cluster_check_keys_needs_one_slot(redis_cluster, prefix) -> None:
    """Keys of several slots are refused before anything is sent; keys
    that start with one {tag} share a slot and are checked all or nothing."""
    port = redis_cluster.primary_ports[0]
    assert redis_command(port, "CLUSTER", "KEYSLOT", "org") != redis_command(port, "CLUSTER", "KEYSLOT", "search|org")
    g, r = Policy(5, YEARS, name="global"), Policy(2, YEARS, name="login")
    with Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error", timeout_ms=2000) as lim:
        with pytest.raises(tollgate.UnsupportedError) as info:
            lim.check_keys([("org", g), ("search|org", r)])
        assert info.value.code == "RL_E_UNSUPPORTED"
        assert lim.check("org", g, cost=0).remaining == 5  # nothing was sent
        pairs = [("{user:1}:global", g), ("{user:1}:login", [r])]
        assert [lim.check_keys(pairs).allowed for _ in range(4)] == [True, True, False, False]
        assert lim.check("{user:1}:global", g, cost=0).remaining == 3
        assert lim.check_keys(pairs, cost=-1).allowed  # a refund to both
        assert lim.check("{user:1}:global", g, cost=0).remaining == 4
        assert lim.check("{user:1}:login", r, cost=0).remaining == 1

        async def main() -> None:
            d = await lim.check_keys_async([("{user:2}:a", g), ("{user:2}:b", r)])
            assert d.allowed and d.policy_index == 1
            with pytest.raises(tollgate.UnsupportedError):
                await lim.check_keys_async([("org", g), ("search|org", r)])

        asyncio.run(main())


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_cluster_helpers_fall_back_to_two_steps(redis_cluster, prefix, framework) -> None:
    """On a cluster the global key ("org") and the route's ("search|org")
    lie in different slots: the helpers check the route alone, then the
    global limit. A route denial leaves the global limit untouched; a global
    denial gives the route's charge back."""
    pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    flask = pytest.importorskip("flask")
    import warnings

    from fastapi import Depends, FastAPI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from tollgate.asgi import RateLimitMiddleware, rate_limit
    from tollgate.flask import RateLimiter

    def client_for(lim: Limiter, glob: Policy, route: Policy):
        if framework == "flask":
            app = flask.Flask(__name__)
            ext = RateLimiter(app, limiter=lim, policies=glob, key=lambda r: "org", name="global")

            @app.get("/search")
            @ext.limit(route, name="search")
            def search() -> str:
                return "ok"

            @app.get("/other")
            def other() -> str:
                return "ok"

            c = app.test_client()
            return lambda path: c.get(path).status_code
        app = FastAPI()
        app.add_middleware(RateLimitMiddleware, limiter=lim, policies=glob, key=lambda r: "org", name="global")

        @app.get("/search", dependencies=[Depends(rate_limit(lim, route, key=lambda r: "org", name="search"))])
        async def search() -> str:
            return "ok"

        @app.get("/other")
        async def other() -> str:
            return "ok"

        tc = TestClient(app)
        return lambda path: tc.get(path).status_code

    with Limiter(redis_cluster.url, key_prefix=prefix, failure_mode="error", timeout_ms=2000) as lim:
        glob, route = Policy(100, YEARS), Policy(2, YEARS)
        get = client_for(lim, glob, route)
        assert [get("/search") for _ in range(5)] == [200, 200, 429, 429, 429]
        assert lim.check("org", glob, cost=0).remaining == 98  # the route's denials cost nothing here
        assert lim.check("search|org", route, cost=0).remaining == 0
    with Limiter(redis_cluster.url, key_prefix=prefix + "b:", failure_mode="error", timeout_ms=2000) as lim:
        glob, route = Policy(2, YEARS), Policy(10, YEARS)
        get = client_for(lim, glob, route)
        assert [get("/other") for _ in range(2)] == [200, 200]
        assert get("/search") == 429
        # The route was charged first, then given back when the global denied.
        assert lim.check("search|org", route, cost=0).remaining == 10
        assert lim.check("org", glob, cost=0).remaining == 0
