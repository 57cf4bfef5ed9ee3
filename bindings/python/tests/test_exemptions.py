"""Allow and deny lists (docs/exemptions.md; the C++ test is
tests/test_exemptions.cpp): ``Limiter(allow=..., deny=...)``,
``set_allow_list`` / ``set_deny_list``. Exact keys, IPv4 / IPv6 addresses
and CIDR ranges, decided in this process before any store call: a key on
the deny list is denied (``source`` "deny_list", ``retry_after`` inf), else
a key on the allow list is allowed and charged nothing (``source``
"allow_list"); the deny list wins. Memory store and a real redis-server
(conftest.py), including one that was killed (fail mode "error": listed
keys are still answered, the others raise)."""

from __future__ import annotations

import asyncio
import ipaddress
import math
from typing import Any

import pytest

import tollgate
from tollgate import Decision, InvalidArgument, Limiter, Policy

from conftest import Store, needs_redis


def denied_by_list(d: Decision) -> None:
    assert not d.allowed and not bool(d)
    assert d.source == "deny_list" and d.shadow is False
    assert d.retry_after == math.inf and d.retry_after_ms == -1
    assert d.remaining == 0


def allowed_by_list(d: Decision, limit: int = 1) -> None:
    assert d.allowed and d.source == "allow_list" and d.shadow is False
    assert d.remaining == d.limit == limit  # nothing charged
    assert d.retry_after == 0.0 and d.reset_after == 0.0


def lists_decide(lim: Limiter, store_up: bool = True) -> None:
    """tests/test_exemptions.cpp's lists_decide: every kind of check on a
    limiter with both lists; then the counters and an emptied list (the
    store decides again: with the store down, that check raises)."""
    p = Policy(1, "1m")
    lim.set_deny_list(["abuser", "203.0.113.0/24"])
    lim.set_allow_list(["health-check", "10.0.0.0/8", "203.0.113.9"])
    denied_by_list(lim.check("abuser", p))
    # The deny list wins over the allow list.
    denied_by_list(lim.check("203.0.113.9", p))
    # Allowed, never charged: a 1/m policy lets it through every time.
    for _ in range(5):
        allowed_by_list(lim.check("10.1.2.3", p))
    # Several keys: denied if any is denied; allowed by the list only if all are.
    denied_by_list(lim.check_keys([("health-check", p), ("abuser", p)]))
    allowed_by_list(lim.check_keys([("health-check", p), ("10.9.9.9", p)]))

    async def main() -> None:
        denied_by_list(await lim.check_async("abuser", p))
        allowed_by_list(await lim.check_async("health-check", p))
        denied_by_list(await lim.check_keys_async([("10.1.1.1", p), ("203.0.113.200", p)]))
        # A wait on a denied key ends at once.
        denied_by_list(await lim.check_wait_async("abuser", p, max_wait=60))

    asyncio.run(main())
    denied_by_list(lim.check_wait("abuser", p, max_wait=60))
    h = lim.health()
    assert h["list_denied"] == 7
    assert h["list_allowed"] == 7
    assert h["checks"] == 14 and h["allowed"] == 7 and h["denied"] == 7

    # Emptying the lists: the store decides again.
    lim.set_deny_list([])
    lim.set_allow_list(())
    if store_up:
        d = lim.check("abuser", p)
        assert d.allowed and d.source == "store" and d.remaining == 0
    else:
        with pytest.raises(tollgate.TollgateConnectionError):
            lim.check("abuser", p)


def test_the_lists_decide_before_the_store(store: Store) -> None:
    lists_decide(store.limiter())


def test_lists_given_at_creation(store: Store) -> None:
    lim = store.limiter(allow=["vip", "2001:db8::/32"], deny=("abuser",))
    p = Policy(1, "1m")
    allowed_by_list(lim.check("vip", p))
    allowed_by_list(lim.check("2001:db8:1::5", p))
    denied_by_list(lim.check("abuser", p))
    assert lim.check("other", p).source == "store"


@needs_redis
def test_redis_down_listed_keys_are_still_answered(own_redis: Any) -> None:
    # No store call is made for a listed key: with Redis gone and fail mode
    # "error", listed keys are answered and every other key raises.
    url = own_redis.url
    own_redis.kill()
    p = Policy(1, "1m")
    with Limiter(url, failure_mode="error", connect_timeout_ms=200, timeout_ms=300) as lim:
        lists_decide(lim, store_up=False)
    with Limiter(
        url, failure_mode="error", connect_timeout_ms=200, timeout_ms=300, allow=["10.0.0.0/8"], deny=["abuser"]
    ) as lim:
        allowed_by_list(lim.check("10.1.2.3", p))
        denied_by_list(lim.check("abuser", p))
        with pytest.raises(tollgate.TollgateConnectionError):
            lim.check("11.1.2.3", p)

        async def main() -> None:
            allowed_by_list(await lim.check_async("10.1.2.3", p))
            with pytest.raises(tollgate.TollgateConnectionError):
                await lim.check_async("11.1.2.3", p)

        asyncio.run(main())


def test_an_allowed_key_is_never_charged_nor_written(store: Store) -> None:
    lim = store.limiter(allow=["vip"])
    p = Policy(1, "1m")
    for _ in range(3):
        allowed_by_list(lim.check("vip", p))
    if store.kind == "redis":
        assert store.stored_keys() == []
    # A refund is not listed: it goes to the store (nothing to give back).
    with pytest.raises(tollgate.NothingToRefund):
        lim.refund("vip", p)
    # Leases do not consult the lists.
    lim.set_deny_list(["vip"])
    got = lim.acquire("vip", max_in_flight=1, ttl=5)
    assert got and got.lease is not None
    got.lease.release()


def test_deny_wins_and_cost(store: Store) -> None:
    lim = store.limiter(allow=["10.0.0.0/8", "k"], deny=["10.0.0.7", "k"])
    p = Policy(5, "1m")
    denied_by_list(lim.check("10.0.0.7", p))
    denied_by_list(lim.check("k", p))
    allowed_by_list(lim.check("10.0.0.8", p), limit=5)
    # Any cost is allowed by the list, even one the policy can never pass.
    allowed_by_list(lim.check("10.0.0.8", p, cost=1000), limit=5)
    denied_by_list(lim.check("10.0.0.7", p, cost=0))


def test_addresses_match_in_any_spelling() -> None:
    with Limiter(allow=["fe80::1", "10.0.0.0/8", "2001:db8::/126"], deny=["192.0.2.1"]) as lim:
        p = Policy(1, "1m")
        allowed_by_list(lim.check("fe80:0:0:0:0:0:0:1", p))
        allowed_by_list(lim.check("::ffff:10.1.2.3", p))  # IPv4-mapped: as IPv4
        allowed_by_list(lim.check("2001:db8::3", p))
        assert lim.check("2001:db8::4", p).source == "store"  # past the /126
        denied_by_list(lim.check(b"192.0.2.1", p))  # bytes keys too
        # A key that merely contains an address is not one.
        assert lim.check("ip:10.1.2.3", p).source == "store"
        assert lim.check("10.1.2.3x", p).source == "store"


def test_ipaddress_objects_and_any_iterable() -> None:
    with Limiter() as lim:
        p = Policy(1, "1m")
        lim.set_allow_list(
            e
            for e in (
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_address("2001:db8::1"),
                ipaddress.ip_interface("192.168.1.7/24"),  # its network
                "vip",
                b"raw\xffkey",
            )
        )
        lim.set_deny_list({ipaddress.IPv6Network("2001:db8:bad::/48")})
        allowed_by_list(lim.check("10.200.0.1", p))
        allowed_by_list(lim.check("2001:db8::1", p))
        allowed_by_list(lim.check("192.168.1.200", p))
        allowed_by_list(lim.check("vip", p))
        allowed_by_list(lim.check(b"raw\xffkey", p))
        denied_by_list(lim.check("2001:db8:bad::9", p))


def test_runtime_replacement() -> None:
    with Limiter(deny=["a"]) as lim:
        p = Policy(1, "1m")
        denied_by_list(lim.check("a", p))
        lim.set_deny_list(["b"])  # replaces, does not add
        assert lim.check("a", p).source == "store"
        denied_by_list(lim.check("b", p))
        lim.set_allow_list(["b", "c"])
        denied_by_list(lim.check("b", p))  # still denied: deny wins
        allowed_by_list(lim.check("c", p))
        lim.set_deny_list([])
        allowed_by_list(lim.check("b", p))
        lim.set_allow_list([])
        assert lim.check("c", p).source == "store"


def test_a_shadow_limiter_answers_a_deny_list_denial_allowed(store: Store) -> None:
    lim = store.limiter(shadow=True, deny=["abuser"])
    p = Policy(10, "1s")
    d = lim.check("abuser", p)
    assert d.allowed and d.shadow is True and d.source == "deny_list"
    assert d.retry_after == math.inf
    h = lim.health()
    assert h["list_denied"] == 1 and h["shadow_denied"] == 1
    if store.kind == "redis":
        assert store.stored_keys() == []  # still no store call


def test_decision_source_repr_and_equality() -> None:
    with Limiter(allow=["ok"], deny=["no"]) as lim:
        p = Policy(3, "1m")
        no = lim.check("no", p)
        ok = lim.check("ok", p)
        assert "source='deny_list'" in repr(no) and "retry_after=inf" in repr(no)
        assert "source='allow_list'" in repr(ok)
        assert no == lim.check("no", p) and hash(no) == hash(lim.check("no", p))
        assert no != ok
        assert no.source is lim.check("no", p).source  # interned names


# ---- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, message",
    [
        ("10.0.0.0/33", "a CIDR prefix length is 0 to 32"),
        ("2001:db8::/129", "a CIDR prefix length is 0 to 128"),
        ("1.2.3.4/", "a CIDR prefix length is 0 to 32"),
        ("1.2.3.4/x", "a CIDR prefix length is 0 to 32"),
        ("10.0.0.300", "not an IPv4 or IPv6 address or CIDR range (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"),
        ("1.2.3", "not an IPv4 or IPv6 address or CIDR range (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"),
        ("", "empty"),
    ],
)
def test_a_bad_entry_is_refused_by_index_without_echo(entry: str, message: str) -> None:
    with Limiter(deny=["abuser"]) as lim:
        p = Policy(1, "1m")
        with pytest.raises(InvalidArgument) as info:
            lim.set_deny_list(["ok", entry])
        assert str(info.value) == "entries[1]: " + message
        assert info.value.code == "RL_E_INVALID_ARG"
        assert isinstance(info.value, ValueError)
        if entry:
            assert entry not in str(info.value)
        # The refused call left the list as it was.
        denied_by_list(lim.check("abuser", p))
        assert lim.check("ok", p).source == "store"
    # At creation: the option's name, then the library's message.
    with pytest.raises(InvalidArgument) as info:
        Limiter(allow=[entry])
    assert str(info.value) == "allow: entries[0]: " + message
    with pytest.raises(InvalidArgument, match=r"^deny: entries\[2\]: "):
        Limiter(deny=["a", "b", entry])


def test_too_long_keys_and_too_many_entries() -> None:
    with pytest.raises(InvalidArgument) as info:
        Limiter(max_key_len=8, deny=["12345678", "123456789"])
    assert str(info.value) == "deny: entries[1]: a key of 9 bytes; keys are at most 8"
    with Limiter() as lim:
        with pytest.raises(InvalidArgument, match=r"^entries: at most 100000 per list \(got 100001\)$"):
            lim.set_allow_list(["k%d" % i for i in range(100_001)])
        lim.set_allow_list(["k%d" % i for i in range(100_000)])  # the most
        allowed_by_list(lim.check("k99999", Policy(1, "1m")))


def test_wrong_types() -> None:
    with Limiter() as lim:
        for bad in ("10.0.0.1", b"abuser", 5, None):
            with pytest.raises(TypeError, match=r"^entries must be an iterable of str"):
                lim.set_deny_list(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError) as info:
            lim.set_allow_list(["ok", 7])  # type: ignore[list-item]
        assert str(info.value) == "entries[1] must be a str, bytes or an ipaddress address or network, not int"
        with pytest.raises(UnicodeEncodeError):
            lim.set_allow_list(["\udcff"])
    with pytest.raises(TypeError, match=r"^allow must be an iterable of str"):
        Limiter(allow="10.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^deny\[0\] must be a str"):
        Limiter(deny=[1.5])  # type: ignore[list-item]
    assert Limiter(allow=None, deny=None).check("k", Policy(1, "1m")).source == "store"


def test_a_closed_limiter_refuses_lists() -> None:
    lim = Limiter()
    lim.close()
    with pytest.raises(tollgate.TollgateConnectionError):
        lim.set_deny_list(["x"])


def test_lists_are_per_limiter(redis_server: Any, prefix: str) -> None:
    # Two limiters on one Redis (one prefix): the lists are each one's own.
    p = Policy(1, "1m")
    with Limiter(redis_server.url, key_prefix=prefix, deny=["k"]) as a, Limiter(redis_server.url, key_prefix=prefix) as b:
        denied_by_list(a.check("k", p))
        assert b.check("k", p).allowed
        assert not b.check("k", p).allowed  # b's store state
        denied_by_list(a.check("k", p))
