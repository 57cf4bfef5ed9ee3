"""Allow and deny lists in the web integrations (tollgate.asgi,
tollgate.flask; docs/python.md, "Exemptions"), and how they find the
client address: the peer, a hop count, or the proxies' CIDR ranges
(``trusted_proxies=``), from ``X-Forwarded-For`` or the RFC 7239
``Forwarded`` header (``proxy_header=``).

A request on a deny list gets 403 ``{"detail":"Forbidden"}`` without
rate-limit headers or Retry-After, before any check (the limiter's
counters stay at zero); one on an allow list is never limited. A denial of
the limiter's own deny list is answered 403 too. Memory store and the
session's redis-server."""

from __future__ import annotations

import ipaddress
import json
import types
import warnings
from typing import Any, Dict, List, Optional, Tuple

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
flask = pytest.importorskip("flask")

from fastapi import Depends, FastAPI  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import tollgate  # noqa: E402
from tollgate import InvalidArgument, Limiter, Policy  # noqa: E402
from tollgate.asgi import RateLimitMiddleware, rate_limit  # noqa: E402
from tollgate.flask import RateLimiter  # noqa: E402
from tollgate.plans import (  # noqa: E402
    HEADER_NAMES,
    AddressList,
    client_address,
    forwarded_for,
    organization_key,
)

from conftest import Store  # noqa: E402

PROXIES = ["10.0.0.0/8", "fd00::/8"]
FORBIDDEN = {"detail": "Forbidden"}


# ---- fake requests for the key functions ---------------------------------------------


class Headers:
    """Case-insensitive headers with repeated fields (werkzeug's getlist)."""

    def __init__(self, pairs: List[Tuple[str, str]]) -> None:
        self.pairs = pairs

    def getlist(self, name: str) -> List[str]:
        return [v for k, v in self.pairs if k.lower() == name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        found = self.getlist(name)
        return found[0] if found else default


def flask_like(peer: Optional[str], *pairs: Tuple[str, str]) -> Any:
    return types.SimpleNamespace(headers=Headers(list(pairs)), remote_addr=peer)


def starlette_like(peer: Optional[str], *pairs: Tuple[str, str]) -> Any:
    return types.SimpleNamespace(headers=Headers(list(pairs)), client=None if peer is None else (peer, 4000))


def both(key: Any, peer: Optional[str], *pairs: Tuple[str, str]) -> str:
    a = key(flask_like(peer, *pairs))
    b = key(starlette_like(peer, *pairs))
    assert a == b
    return str(a)


XFF = "X-Forwarded-For"


# ---- trusted proxies by CIDR ------------------------------------------------------------


def test_trusted_proxies_by_cidr_walk_x_forwarded_for_from_the_right() -> None:
    key = client_address(trusted_proxies=PROXIES, ipv6_prefix=None)
    # The client wrote the left entries (spoofed), the proxies the rest.
    assert both(key, "10.0.0.5", (XFF, "6.6.6.6, 10.1.1.1, 198.51.100.7, 10.2.2.2")) == "ip:198.51.100.7"
    # Several lines are one list.
    assert both(key, "10.0.0.5", (XFF, "6.6.6.6, 198.51.100.7"), (XFF, "10.2.2.2")) == "ip:198.51.100.7"
    # A peer outside the proxies is the client: its header is ignored.
    assert both(key, "192.0.2.1", (XFF, "198.51.100.7")) == "ip:192.0.2.1"
    # Every entry a proxy: the left-most (the first proxy's own peer).
    assert both(key, "10.0.0.5", (XFF, "10.3.3.3, 10.2.2.2")) == "ip:10.3.3.3"
    # No header: the proxy itself (a health check from inside).
    assert both(key, "10.0.0.5") == "ip:10.0.0.5"
    # A non-address where the walk stops: the client is unknown.
    assert both(key, "10.0.0.5", (XFF, "198.51.100.7, unknown, 10.2.2.2")) == "ip:unknown"
    # ... but not one further left than the client.
    assert both(key, "10.0.0.5", (XFF, "garbage, 198.51.100.7")) == "ip:198.51.100.7"
    # Ports and brackets, IPv6 proxies, IPv4-mapped peers.
    assert both(key, "fd00::1", (XFF, "[2001:db8::9]:443, fd00::2")) == "ip:2001:db8::9"
    assert both(key, "::ffff:10.0.0.5", (XFF, "198.51.100.7:5000")) == "ip:198.51.100.7"
    assert both(key, "10.0.0.5", (XFF, "::ffff:198.51.100.7")) == "ip:198.51.100.7"
    # The default ipv6_prefix keys the client's /64.
    keyed = client_address(trusted_proxies=PROXIES)
    assert both(keyed, "10.0.0.5", (XFF, "2001:db8:1:2:3::9")) == "ip:2001:db8:1:2::/64"
    # ipaddress objects, single addresses.
    objs = client_address(trusted_proxies=[ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_address("192.0.2.1")])
    assert both(objs, "192.0.2.1", (XFF, "198.51.100.7, 10.0.0.1")) == "ip:198.51.100.7"
    assert objs.__qualname__ == "client_address(trusted_proxies=[10.0.0.0/8, 192.0.2.1/32])"


def test_hop_count_keeps_working() -> None:
    key = client_address(trust_forwarded=True, trusted_proxies=2)
    assert both(key, "10.0.0.5", (XFF, "6.6.6.6, 198.51.100.7, 10.2.2.2")) == "ip:198.51.100.7"
    assert both(key, "10.0.0.5", (XFF, "10.2.2.2")) == "ip:10.0.0.5"  # too few: the peer
    assert both(client_address(trusted_proxies=2), "10.0.0.5", (XFF, "1.1.1.1, 2.2.2.2")) == "ip:10.0.0.5"


# ---- RFC 7239 Forwarded -------------------------------------------------------------------


def test_forwarded_for_parsing() -> None:
    assert forwarded_for(["for=192.0.2.60;proto=http;by=203.0.113.43"]) == ["192.0.2.60"]
    assert forwarded_for(['for="[2001:db8:cafe::17]:4711"']) == ["[2001:db8:cafe::17]:4711"]
    # Several elements, several lines, case-insensitive names, spaces.
    assert forwarded_for(["for=192.0.2.43, For=198.51.100.17", ' FOR = "203.0.113.60:80" ']) == [
        "192.0.2.43",
        "198.51.100.17",
        "203.0.113.60:80",
    ]
    assert forwarded_for(["for=unknown, for=_hidden"]) == ["unknown", "_hidden"]
    # An element without for=, with two, or malformed: None (one hop each).
    assert forwarded_for(["proto=https, for=1.2.3.4;for=5.6.7.8, garbage, for=\"open"]) == [None, None, None, None]
    # Quoted strings keep their commas and semicolons, and unescape.
    assert forwarded_for(['for="a,b;c";by=x, for="\\"q\\""']) == ["a,b;c", '"q"']
    assert forwarded_for(["", " , "]) == []


def test_forwarded_header_finds_the_client() -> None:
    key = client_address(trusted_proxies=PROXIES, proxy_header="forwarded", ipv6_prefix=None)
    fwd = "Forwarded"
    assert both(key, "10.0.0.5", (fwd, "for=192.0.2.60;proto=http")) == "ip:192.0.2.60"
    assert both(key, "10.0.0.5", (fwd, 'for="[2001:db8:cafe::17]:4711"')) == "ip:2001:db8:cafe::17"
    assert both(key, "10.0.0.5", (fwd, 'for=6.6.6.6, for="198.51.100.7:1234", for=10.2.2.2')) == "ip:198.51.100.7"
    assert both(key, "10.0.0.5", (fwd, "for=6.6.6.6"), (fwd, "for=10.2.2.2")) == "ip:6.6.6.6"
    # unknown, an obfuscated node, an element without for=: the walk ends there.
    assert both(key, "10.0.0.5", (fwd, "for=198.51.100.7, for=unknown")) == "ip:unknown"
    assert both(key, "10.0.0.5", (fwd, 'for=198.51.100.7, for="_gazonk:_port"')) == "ip:unknown"
    assert both(key, "10.0.0.5", (fwd, "for=198.51.100.7, proto=https")) == "ip:unknown"
    assert both(key, "10.0.0.5", (fwd, 'for="[2001:db8::1]x"')) == "ip:unknown"
    # "forwarded" reads only Forwarded: X-Forwarded-For is ignored.
    assert both(key, "10.0.0.5", (XFF, "198.51.100.7")) == "ip:10.0.0.5"
    # "auto": Forwarded when present, else X-Forwarded-For.
    auto = client_address(trusted_proxies=PROXIES, proxy_header="auto")
    assert both(auto, "10.0.0.5", (XFF, "198.51.100.1"), (fwd, "for=198.51.100.2")) == "ip:198.51.100.2"
    assert both(auto, "10.0.0.5", (XFF, "198.51.100.1")) == "ip:198.51.100.1"
    # The default reads only X-Forwarded-For: a Forwarded header that the
    # proxies pass through untouched is the client's to forge.
    xff = client_address(trusted_proxies=PROXIES)
    assert both(xff, "10.0.0.5", (XFF, "198.51.100.1"), (fwd, "for=10.9.9.9")) == "ip:198.51.100.1"
    # A hop count over Forwarded elements.
    hops = client_address(trust_forwarded=True, trusted_proxies=2, proxy_header="forwarded")
    assert both(hops, "10.0.0.5", (fwd, "for=6.6.6.6, for=198.51.100.7, for=10.2.2.2")) == "ip:198.51.100.7"
    assert both(hops, "10.0.0.5", (fwd, "for=6.6.6.6, for=_x, for=10.2.2.2")) == "ip:10.0.0.5"


# ---- bad options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries, message",
    [
        (["10.0.0.0/8", "10.0.0.0/33"], "trusted_proxies[1]: a CIDR prefix length is 0 to 32"),
        (["proxy.internal"], "trusted_proxies[0]: not an IPv4 or IPv6 address or CIDR range"),
        (["10.0.0.300"], "trusted_proxies[0]: not an IPv4 or IPv6 address or CIDR range"),
        (["fe80::1%eth0"], "trusted_proxies[0]: not an IPv4 or IPv6 address or CIDR range"),
        (["2001:db8::/129"], "trusted_proxies[0]: a CIDR prefix length is 0 to 128"),
        ([""], "trusted_proxies[0]: empty"),
        ([], "trusted_proxies: empty (None trusts no proxy;"),
    ],
)
def test_bad_trusted_proxies(entries: List[str], message: str) -> None:
    for make in (
        lambda: client_address(trusted_proxies=entries),
        lambda: RateLimitMiddleware(FastAPI(), limiter=Limiter(), policies=Policy(1, "1m"), trusted_proxies=entries),
        lambda: RateLimiter(None, policies=Policy(1, "1m"), trusted_proxies=entries),
        lambda: rate_limit(Limiter(), Policy(1, "1m"), trusted_proxies=entries),
    ):
        with pytest.raises(InvalidArgument) as info:
            make()
        assert str(info.value).startswith(message)
        assert info.value.code == "RL_E_INVALID_ARG"
        for e in entries:
            if e:
                assert e not in str(info.value)  # never echoed


def test_bad_option_types() -> None:
    with pytest.raises(TypeError, match=r"^trusted_proxies\[0\] must be a str or an ipaddress"):
        client_address(trusted_proxies=[10])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^trusted_proxies must be an int \(a hop count\) or a list"):
        client_address(trusted_proxies="10.0.0.0/8")
    with pytest.raises(ValueError, match=r"trust_forwarded=False contradicts it$"):
        client_address(trust_forwarded=False, trusted_proxies=PROXIES)
    with pytest.raises(ValueError, match=r"^proxy_header must be 'x-forwarded-for', 'forwarded' or 'auto', not 'via'$"):
        client_address(trusted_proxies=PROXIES, proxy_header="via")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"^proxy_header must be a str, not int$"):
        client_address(proxy_header=1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"^proxy_header needs trusted_proxies"):
        RateLimiter(None, policies=Policy(1, "1m"), proxy_header="forwarded")
    with pytest.raises(TypeError, match=r"^deny must be an iterable of str"):
        RateLimiter(None, policies=Policy(1, "1m"), deny="10.0.0.1")
    with pytest.raises(InvalidArgument, match=r"^allow\[1\]: a CIDR prefix length is 0 to 32$"):
        rate_limit(Limiter(), Policy(1, "1m"), allow=["ok", "10.0.0.0/99"])
    with pytest.raises(InvalidArgument, match=r"^deny\[0\]: empty$"):
        RateLimitMiddleware(FastAPI(), limiter=Limiter(), policies=Policy(1, "1m"), deny=[""])


def test_the_integrations_parse_entries_as_the_library_does() -> None:
    entries = [
        "10.0.0.0/8", "10.0.0.1/8", "0.0.0.0/0", "::/0", "2001:db8::/32", "::ffff:10.0.0.0/104",
        "::ffff:10.0.0.0/95", "fe80::1", "10.0.0.0/33", "10.0.0.300", "1.2.3", "1.2.3.4/", "1.2.3.4/x",
        "1.2.3.4/08", "1.2.3.4/0008", "2001:db8::/129", "abc", "cafe", "dead:beef", "a.b", "ip:10.0.0.1",
        "health-check", "", "x" * 600, "fe80::1%eth0", "1.2.3.4 ", "010.0.0.1",
    ]
    lim = Limiter()
    for e in entries:
        try:
            lim.set_deny_list([e])
            native = None
        except InvalidArgument as exc:
            native = str(exc).replace("entries[0]", "deny[0]")
        try:
            AddressList([e], "deny")
            ours = None
        except InvalidArgument as exc:
            ours = str(exc)
        if e == "x" * 600:
            assert native is not None and ours is None  # the key length is the limiter's
            continue
        assert ours == native, e
    # The same keys match.
    entries = ["10.0.0.0/8", "2001:db8::/126", "::ffff:192.168.0.0/112", "fe80::1", "exact"]
    lim.set_deny_list(entries)
    ours_list = AddressList(entries, "deny")
    for k in ["10.1.2.3", "11.0.0.0", "2001:db8::3", "2001:db8::4", "192.168.7.7", "::ffff:192.168.7.7",
              "fe80:0::1", "exact", "ip:10.1.2.3"]:
        native_hit = lim.check(k, Policy(1, "1h")).source == "deny_list"
        ip = tollgate.plans._parse_ip(k)  # type: ignore[attr-defined]
        assert (ours_list.has_address(ip) or ours_list.has_key(k)) == native_hit, k
    lim.close()


# ---- the integrations ----------------------------------------------------------------------


class App:
    """One framework's app: a global limit `glob` (or none), "/route" under
    `route` too (a rate_limit dependency / a limit decorator), the
    integration's options `opts`. `ran` counts the views that ran."""

    def __init__(
        self,
        framework: str,
        limiter: Limiter,
        glob: Optional[Policy] = Policy(1, "1h"),
        route: Optional[Policy] = None,
        route_opts: Optional[Dict[str, Any]] = None,
        **opts: Any,
    ) -> None:
        self.framework = framework
        self.ran = 0
        self.clients: Dict[str, Any] = {}
        if framework == "flask":
            app = flask.Flask(__name__)
            ext = RateLimiter(app, limiter=limiter, policies=glob, **opts)

            @app.get("/")
            def index() -> Any:
                self.ran += 1
                return {"ran": True}

            if route is not None:

                @app.get("/route")
                @ext.limit(route, **(route_opts or {}))
                def routed() -> Any:
                    self.ran += 1
                    return {"ran": True}

            self.flask = app.test_client()
        else:
            fapp = FastAPI()
            if glob is not None:
                fapp.add_middleware(RateLimitMiddleware, limiter=limiter, policies=glob, **opts)

            @fapp.get("/")
            async def index() -> Any:
                self.ran += 1
                return {"ran": True}

            if route is not None:
                dep = rate_limit(limiter, route, **(route_opts or {}))

                @fapp.get("/route", dependencies=[Depends(dep)])
                async def routed() -> Any:
                    self.ran += 1
                    return {"ran": True}

            self.fastapi = fapp

    def get(self, path: str = "/", peer: str = "203.0.113.7", headers: Optional[Dict[str, str]] = None) -> Any:
        if self.framework == "flask":
            r = self.flask.get(path, headers=headers or {}, environ_base={"REMOTE_ADDR": peer})
            return types.SimpleNamespace(status=r.status_code, headers=r.headers, body=r.get_data())
        client = self.clients.get(peer)
        if client is None:
            client = self.clients[peer] = TestClient(self.fastapi, client=(peer, 4000))
        r = client.get(path, headers=headers or {})
        return types.SimpleNamespace(status=r.status_code, headers=r.headers, body=r.content)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


@pytest.fixture
def limiter(store: Store) -> Limiter:
    """A limiter on each store (conftest's `store`, which closes it)."""
    return store.limiter()


def forbidden(r: Any) -> None:
    assert r.status == 403
    assert json.loads(r.body) == FORBIDDEN
    for name in HEADER_NAMES:  # no rate-limit headers, no Retry-After
        assert name not in r.headers, name


def limited_ok(r: Any) -> None:
    assert r.status == 200
    assert r.headers["X-RateLimit-Limit"] == "1"


def unlimited_ok(r: Any) -> None:
    assert r.status == 200
    for name in HEADER_NAMES:
        assert name not in r.headers, name


def test_deny_and_allow_lists_by_address(framework: str, limiter: Limiter) -> None:
    app = App(framework, limiter, allow=["192.0.2.0/24", "2001:db8::/32"], deny=["192.0.2.66", "198.51.100.0/24"])
    try:
        # Denied: 403 before any check (the limiter was never called).
        forbidden(app.get(peer="198.51.100.9"))
        forbidden(app.get(peer="192.0.2.66"))  # deny wins over the allow range
        assert app.ran == 0 and limiter.health()["checks"] == 0
        # Allowed: never limited (a 1/h limit), never checked, no headers.
        for _ in range(4):
            unlimited_ok(app.get(peer="192.0.2.1"))
        assert limiter.health()["checks"] == 0
        # Anyone else: limited.
        limited_ok(app.get(peer="203.0.113.7"))
        assert app.get(peer="203.0.113.7").status == 429
        assert app.ran == 5
    finally:
        app.close()


def test_exact_entries_match_the_key(framework: str) -> None:
    with Limiter() as lim:
        app = App(framework, lim, key=organization_key("X-Org-Id"), allow=["org:partner"], deny=["org:evil"])
        try:
            forbidden(app.get(headers={"X-Org-Id": "evil"}))
            for _ in range(3):
                unlimited_ok(app.get(headers={"X-Org-Id": "partner"}))
            limited_ok(app.get(headers={"X-Org-Id": "acme"}))
            assert app.get(headers={"X-Org-Id": "acme"}).status == 429
        finally:
            app.close()


def test_trusted_proxies_pick_the_client_for_lists_and_key(framework: str) -> None:
    with Limiter() as lim:
        app = App(framework, lim, trusted_proxies=PROXIES, deny=["198.51.100.66"], allow=["192.0.2.0/24"])
        try:
            # Behind the proxy 10.0.0.5: the client is the right-most untrusted entry.
            forbidden(app.get(peer="10.0.0.5", headers={XFF: "198.51.100.66, 10.1.1.1"}))
            # A spoofed allowed address further left does not help.
            forbidden(app.get(peer="10.0.0.5", headers={XFF: "192.0.2.1, 198.51.100.66"}))
            unlimited_ok(app.get(peer="10.0.0.5", headers={XFF: "198.51.100.66, 192.0.2.1"}))
            # The default key is that client: one limit per client, not per proxy.
            limited_ok(app.get(peer="10.0.0.5", headers={XFF: "6.6.6.6, 203.0.113.1"}))
            assert app.get(peer="10.0.0.6", headers={XFF: "7.7.7.7, 203.0.113.1"}).status == 429
            limited_ok(app.get(peer="10.0.0.5", headers={XFF: "203.0.113.2"}))
            # A peer that is not a proxy is the client, whatever it sends.
            forbidden(app.get(peer="198.51.100.66", headers={XFF: "192.0.2.1"}))
        finally:
            app.close()


def test_forwarded_header_through_the_integrations(framework: str) -> None:
    with Limiter() as lim:
        app = App(framework, lim, trusted_proxies=PROXIES, proxy_header="forwarded", deny=["2001:db8::bad"])
        try:
            forbidden(app.get(peer="10.0.0.5", headers={"Forwarded": 'for="[2001:db8::bad]:4711";proto=https'}))
            limited_ok(app.get(peer="10.0.0.5", headers={"Forwarded": 'for="[2001:db8::1]:1"'}))
            # The same /64: the same key.
            assert app.get(peer="10.0.0.5", headers={"Forwarded": "for=\"[2001:db8::2]\""}).status == 429
            # X-Forwarded-For is not read.
            limited_ok(app.get(peer="10.0.0.5", headers={XFF: "2001:db8::bad"}))
        finally:
            app.close()


def test_trusted_proxies_from_any_iterable(framework: str) -> None:
    with Limiter() as lim:
        proxies = (ipaddress.ip_network(p) for p in PROXIES)  # read once
        app = App(framework, lim, trusted_proxies=proxies, deny=["198.51.100.66"])
        try:
            forbidden(app.get(peer="fd00::7", headers={XFF: "198.51.100.66, 10.0.0.9"}))
            limited_ok(app.get(peer="10.0.0.5", headers={XFF: "203.0.113.1"}))
            assert app.get(peer="10.0.0.6", headers={XFF: "203.0.113.1"}).status == 429
        finally:
            app.close()


def test_a_hop_count_for_the_lists(framework: str) -> None:
    with Limiter() as lim:
        app = App(framework, lim, trusted_proxies=1, deny=["198.51.100.66"])
        try:
            forbidden(app.get(peer="10.0.0.5", headers={XFF: "198.51.100.66"}))
            limited_ok(app.get(peer="10.0.0.5", headers={XFF: "198.51.100.66, 203.0.113.9"}))
        finally:
            app.close()


def test_a_client_address_key_function_lends_its_rule(framework: str) -> None:
    # No trusted_proxies on the integration: the lists use the key
    # function's own rule, so they match the address the key names.
    with Limiter() as lim:
        app = App(framework, lim, key=client_address(trusted_proxies=PROXIES), deny=["198.51.100.66"])
        try:
            forbidden(app.get(peer="10.0.0.5", headers={XFF: "198.51.100.66"}))
            limited_ok(app.get(peer="10.0.0.5", headers={XFF: "198.51.100.67"}))
        finally:
            app.close()


def test_the_limiters_own_deny_list_answers_403(framework: str, limiter: Limiter) -> None:
    limiter.set_deny_list(["ip:203.0.113.66", "route|ip:203.0.113.77"])
    limiter.set_allow_list(["ip:203.0.113.88"])
    app = App(framework, limiter, route=Policy(1, "1h"), route_opts={"scope": "route"})
    try:
        forbidden(app.get(peer="203.0.113.66"))
        forbidden(app.get("/route", peer="203.0.113.66"))  # the global limit and the route's, in one call
        forbidden(app.get("/route", peer="203.0.113.77"))  # the route's key
        limited_ok(app.get(peer="203.0.113.77"))
        # The limiter's allow list: allowed every time, with its headers.
        for _ in range(3):
            r = app.get(peer="203.0.113.88")
            assert r.status == 200 and r.headers["X-RateLimit-Remaining"] == "1"
        assert app.ran == 4
        assert limiter.health()["list_denied"] == 3
    finally:
        app.close()


def test_route_limits_under_the_lists(framework: str) -> None:
    # Flask: the extension's lists cover its limit() decorators, global
    # limit or not. FastAPI: a middleware's allow list exempts the route's
    # dependency; a dependency takes lists of its own.
    with Limiter() as lim:
        if framework == "flask":
            app = App(framework, lim, glob=None, route=Policy(1, "1h"), allow=["192.0.2.1"], deny=["192.0.2.66"])
        else:
            app = App(
                framework, lim, glob=None, route=Policy(1, "1h"),
                route_opts={"allow": ["192.0.2.1"], "deny": ["192.0.2.66"]},
            )
        try:
            forbidden(app.get("/route", peer="192.0.2.66"))
            for _ in range(3):
                unlimited_ok(app.get("/route", peer="192.0.2.1"))
            limited_ok(app.get("/route", peer="192.0.2.2"))
            assert app.get("/route", peer="192.0.2.2").status == 429
            assert app.ran == 4
        finally:
            app.close()
        app = App(framework, lim, route=Policy(1, "1h"), allow=["192.0.2.1"], deny=["192.0.2.66"])
        try:
            for _ in range(3):  # neither the global nor the route limit
                unlimited_ok(app.get("/route", peer="192.0.2.1"))
            forbidden(app.get("/route", peer="192.0.2.66"))
        finally:
            app.close()


def test_a_route_dependencys_deny_list_under_the_middleware() -> None:
    # The middleware checks the route with its own limit: the dependency's
    # deny list still answers 403 before anything is charged.
    with Limiter() as lim:
        app = App("fastapi", lim, route=Policy(1, "1h"), route_opts={"deny": ["192.0.2.66"]})
        try:
            forbidden(app.get("/route", peer="192.0.2.66"))
            assert lim.health()["checks"] == 0
            limited_ok(app.get("/route", peer="192.0.2.2"))
        finally:
            app.close()


def test_a_shadow_limiter_lets_deny_listed_requests_through(framework: str) -> None:
    with Limiter(shadow=True, deny=["ip:203.0.113.5"]) as lim:
        app = App(framework, lim, deny=["198.51.100.0/24"])
        try:
            r = app.get(peer="198.51.100.9")  # the integration's list: not enforced
            assert r.status == 200 and r.headers["X-RateLimit-Remaining"] == "0"
            assert app.get(peer="203.0.113.5").status == 200  # the limiter's
            assert app.get(peer="198.51.100.9").status == 200  # shadowed 429
            assert app.ran == 3
        finally:
            app.close()


def test_no_lists_change_nothing(framework: str) -> None:
    with Limiter() as lim:
        app = App(framework, lim, allow=[], deny=None)
        try:
            limited_ok(app.get())
            assert app.get().status == 429
        finally:
            app.close()


def test_a_flask_route_limit_whose_key_function_returns_none() -> None:
    # No check, no outcome: the view's response goes out without headers
    # (the decorator used to fail on the empty outcome list).
    with Limiter() as lim:
        app = flask.Flask(__name__)
        ext = RateLimiter(app, limiter=lim)

        @app.get("/free")
        @ext.limit(Policy(1, "1h"), key=lambda request: None)
        def free() -> Any:
            return {"ran": True}

        client = app.test_client()
        for _ in range(3):
            r = client.get("/free")
            assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers
