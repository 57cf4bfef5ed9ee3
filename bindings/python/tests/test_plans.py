"""tollgate.plans on its own: key functions, plans, costs, the binding
outcome and the 429 body, without a web server. Requests are real
Starlette requests and Flask request contexts (plus one plain object for a
framework whose headers have no ``getlist``). Added for the mutation run
(docs/testing.md, "Mutation testing"): each test pins a behaviour a user relies on.
"""

from __future__ import annotations

import hashlib
import json
import types
from typing import Any, Dict, List, Optional, Tuple

import re

import pytest

flask = pytest.importorskip("flask")
pytest.importorskip("starlette")

from starlette.requests import Request  # noqa: E402

import tollgate  # noqa: E402
from tollgate import Policy  # noqa: E402
from tollgate.plans import (  # noqa: E402
    DEFAULT_PLANS,
    MAX_KEY_VALUE,
    AddressList,
    Limits,
    Outcome,
    binding,
    check_cost,
    check_key,
    check_key_func,
    client_address,
    denied_body,
    forwarded_for,
    header_key,
    headers_for,
    organization_key,
    resolve_cost,
    scoped_key,
)


def exactly(text: str) -> str:
    """A pytest.raises(match=...) pattern for the whole message."""
    return "^" + re.escape(text) + "$"


T0 = 1_700_000_000_000_000


def starlette(
    headers: Optional[List[Tuple[str, str]]] = None, client: Optional[Tuple[str, int]] = ("203.0.113.7", 5000)
) -> Request:
    scope: Dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or [])],
        "client": client,
    }
    return Request(scope)


def with_flask(func: Any, headers: Optional[List[Tuple[str, str]]] = None, remote: Optional[str] = "203.0.113.7") -> Any:
    app = flask.Flask(__name__)
    environ = {"REMOTE_ADDR": remote} if remote is not None else {}
    with app.test_request_context("/", headers=headers or [], environ_base=environ):
        if remote is None:
            flask.request.environ.pop("REMOTE_ADDR", None)
        return func(flask.request)


def both(func: Any, headers: Optional[List[Tuple[str, str]]] = None, addr: str = "203.0.113.7") -> Any:
    """func's key for a Starlette and a Flask request; asserts they agree."""
    a = func(starlette(headers, (addr, 5000)))
    b = with_flask(func, headers, addr)
    assert a == b, (a, b)
    return a


# ---- client_address ------------------------------------------------------------------


def test_forwarded_for_on_several_header_lines() -> None:
    trusted = client_address(trust_forwarded=True, trusted_proxies=2)
    lines = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "192.0.2.9, 192.0.2.10")]
    # All lines count, in order: the 2nd from the right is 192.0.2.9.
    assert both(trusted, lines) == "ip:192.0.2.9"
    # Exactly as many entries as proxies: the leftmost is the client.
    assert both(client_address(trust_forwarded=True, trusted_proxies=3), lines) == "ip:198.51.100.1"
    # Empty entries are skipped, not counted as hops.
    assert both(client_address(trust_forwarded=True, trusted_proxies=2), [("X-Forwarded-For", "198.51.100.1, , 192.0.2.9")]) == "ip:198.51.100.1"
    assert both(client_address(trust_forwarded=True), [("X-Forwarded-For", " 198.51.100.1 ")]) == "ip:198.51.100.1"


def test_forwarded_addresses_with_ports_and_brackets() -> None:
    trusted = client_address(trust_forwarded=True)
    assert both(trusted, [("X-Forwarded-For", "198.51.100.1:5000")]) == "ip:198.51.100.1"
    assert both(trusted, [("X-Forwarded-For", "[2001:db8::1]:443")]) == "ip:2001:db8::/64"
    assert both(client_address(trust_forwarded=True, ipv6_prefix=None), [("X-Forwarded-For", "[2001:db8::1]:443")]) == "ip:2001:db8::1"
    # A bare IPv6 address (several colons) is not split at a colon.
    assert both(client_address(trust_forwarded=True, ipv6_prefix=None), [("X-Forwarded-For", "2001:db8::7")]) == "ip:2001:db8::7"
    assert both(trusted, [("X-Forwarded-For", "::ffff:198.51.100.4")]) == "ip:198.51.100.4"
    # Not an address: the peer is used.
    assert both(trusted, [("X-Forwarded-For", "[garbage]:1")]) == "ip:203.0.113.7"


def test_ipv6_prefixes() -> None:
    addr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd"
    assert both(client_address(ipv6_prefix=128), addr=addr) == "ip:" + addr
    assert both(client_address(ipv6_prefix=127), addr=addr) == "ip:2001:db8:1:2:aaaa:bbbb:cccc:dddc/127"
    assert both(client_address(ipv6_prefix=48), addr=addr) == "ip:2001:db8:1::/48"
    assert both(client_address(ipv6_prefix=1), addr=addr) == "ip:::/1"
    # IPv4 is never cut to a prefix.
    assert both(client_address(ipv6_prefix=8), addr="198.51.100.200") == "ip:198.51.100.200"


def test_peer_that_is_not_an_ip_or_is_missing() -> None:
    # A unix-socket peer or a test client's name is used as it is.
    assert client_address(starlette(client=("testclient", 50000))) == "ip:testclient"
    assert client_address(starlette(client=None)) == "ip:unknown"
    assert client_address(starlette(client=("", 0))) == "ip:unknown"
    assert with_flask(client_address, remote=None) == "ip:unknown"
    assert with_flask(client_address, remote="") == "ip:unknown"


def test_plain_request_object_without_getlist() -> None:
    # A framework whose headers are a plain mapping, with remote_addr.
    req = types.SimpleNamespace(headers={"X-Forwarded-For": "198.51.100.1, 192.0.2.9"}, remote_addr="203.0.113.7")
    assert client_address(req) == "ip:203.0.113.7"
    assert client_address(trust_forwarded=True)(req) == "ip:192.0.2.9"
    assert client_address(trust_forwarded=True, trusted_proxies=2)(req) == "ip:198.51.100.1"
    bare = types.SimpleNamespace(headers={}, remote_addr="203.0.113.7")
    assert client_address(trust_forwarded=True)(bare) == "ip:203.0.113.7"
    assert header_key("X-API-Key")(types.SimpleNamespace(headers={"X-API-Key": " k "}, remote_addr=None)) == "x-api-key:k"


def test_client_address_argument_checks() -> None:
    with pytest.raises(TypeError, match=exactly("trust_forwarded must be a bool, not int")):
        client_address(trust_forwarded=1)  # type: ignore[call-overload]
    hop_or_list = "trusted_proxies must be an int (a hop count) or a list of the proxies' addresses and CIDR ranges, not "
    with pytest.raises(TypeError, match=exactly(hop_or_list + "bool")):
        client_address(trusted_proxies=True)
    with pytest.raises(TypeError, match=exactly(hop_or_list + "str")):
        client_address(trusted_proxies="2")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"^trusted_proxies must be >= 1 \(got 0\)$"):
        client_address(trusted_proxies=0)
    for bad in (0, 129, True, 64.0, "64"):
        with pytest.raises(ValueError, match=r"^ipv6_prefix must be None or an int in 1\.\.128 \(got .+\)$"):
            client_address(ipv6_prefix=bad)  # type: ignore[call-overload]
    for good in (1, 128, None):
        assert callable(client_address(ipv6_prefix=good))
    assert client_address(trusted_proxies=1, trust_forwarded=False) is not None


def test_key_function_names() -> None:
    # The key functions' names say what they key by (in reprs and logs).
    assert client_address(trust_forwarded=True, trusted_proxies=2).__qualname__ == (
        "client_address(trust_forwarded=True, trusted_proxies=2)"
    )
    assert header_key("X-API-Key").__qualname__ == "header_key('X-API-Key')"
    assert organization_key("X-Team").__qualname__ == "organization_key('X-Team')"


# ---- header_key and organization_key ------------------------------------------------------


def test_values_are_hashed_past_128_utf8_bytes() -> None:
    api = header_key("X-API-Key")
    exact = "v" * MAX_KEY_VALUE
    assert MAX_KEY_VALUE == 128
    assert both(api, [("X-API-Key", exact)]) == "x-api-key:" + exact
    over = "v" * (MAX_KEY_VALUE + 1)
    assert both(api, [("X-API-Key", over)]) == "x-api-key:sha256:" + hashlib.sha256(over.encode()).hexdigest()
    # The bound is in UTF-8 bytes, not characters: 43 x 3 bytes = 129.
    wide = "\u20ac" * 43
    assert api(starlette()) == "ip:203.0.113.7"
    req = types.SimpleNamespace(headers={"X-API-Key": wide}, remote_addr=None)
    assert api(req) == "x-api-key:sha256:" + hashlib.sha256(wide.encode()).hexdigest()
    org = organization_key()
    assert org(types.SimpleNamespace(headers={"X-Org-Id": over}, remote_addr=None)) == (
        "org:sha256:" + hashlib.sha256(over.encode()).hexdigest()
    )
    # hash=False (the default) keeps a short value readable; hash=0 is False.
    assert both(header_key("X-API-Key", hash=0), [("X-API-Key", "abc")]) == "x-api-key:abc"  # type: ignore[arg-type]


def test_header_key_prefix_and_fallback() -> None:
    assert both(header_key("X-Tenant", prefix=""), [("X-Tenant", "t1")]) == "t1"
    assert both(header_key("X-Tenant", fallback=lambda r: "anon"), []) == "anon"
    assert both(header_key("X-Tenant", fallback=lambda r: "anon"), [("X-Tenant", "")]) == "anon"
    with pytest.raises(TypeError, match=exactly("prefix must be a str, not bytes")):
        header_key("X-Tenant", prefix=b"t:")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("header_key: the header name must be a non-empty str")):
        header_key(b"X-Tenant")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("fallback must be a key function or None, not str")):
        header_key("X-Tenant", fallback="ip")  # type: ignore[arg-type]


def test_organization_key_getter() -> None:
    by_getter = organization_key(getter=lambda r: r.headers.get("X-Auth-Org"))
    assert both(by_getter, [("X-Auth-Org", "  acme ")]) == "org:acme"
    assert both(by_getter, [("X-Auth-Org", "   ")]) == "ip:203.0.113.7"  # blank: the fallback
    assert both(by_getter, [("X-Org-Id", "spoofed")]) == "ip:203.0.113.7"  # the header is not read
    assert both(organization_key(getter=lambda r: 42), []) == "org:42"
    assert both(organization_key(None, getter=lambda r: "a"), []) == "org:a"
    assert both(organization_key("X-Team"), [("X-Team", "blue"), ("X-Org-Id", "acme")]) == "org:blue"
    assert both(organization_key("X-Team", fallback=None), []) is None
    with pytest.raises(TypeError, match=exactly("organization_key: give a header name or a getter")):
        organization_key("")
    with pytest.raises(TypeError, match=exactly("getter must be callable, not str")):
        organization_key(getter="org")  # type: ignore[arg-type]
    # The repr names the getter when there is one.
    getter = lambda r: "a"  # noqa: E731
    assert organization_key(getter=getter).__qualname__ == "organization_key(%r)" % (getter,)


# ---- Limits ---------------------------------------------------------------------------------


def test_limits_names_and_defaults() -> None:
    a, b = Policy(5, "1m"), Policy(50, "1h")
    plans = {"BASIC": a, "TEAM": (a, b)}
    limits = Limits(plans=plans, plan_of=lambda r: None)
    assert not limits.empty
    assert limits.for_plan(None) == ((a,), "BASIC")  # the first plan, by its name
    assert limits.for_plan("TEAM") == ((a, b), "TEAM")
    named = Limits(plans=plans, plan_of=lambda r: None, name="api")
    assert named.for_plan(None) == ((a,), "api")
    assert named.for_plan("TEAM") == ((a, b), "api")
    both_given = Limits(policies=[b], plans=plans, plan_of=lambda r: None)
    assert both_given.for_plan(None) == ((b,), "default")
    assert Limits(policies=b, name="x").for_plan(None) == ((b,), "x")
    # Plan names need not be strings; the header name is their str().
    assert Limits(plans={7: a}, plan_of=lambda r: 7).for_plan(7) == ((a,), "7")
    assert Limits(plans={7: a}, plan_of=lambda r: 7).for_plan(None) == ((a,), "7")
    assert Limits().empty
    with pytest.raises(ValueError, match=exactly("no policies: give policies= or plans=")):
        Limits().for_plan(None)
    with pytest.raises(KeyError) as info:
        limits.for_plan("GOLD")
    assert info.value.args == ("plan_of returned 'GOLD', which is not in plans ('BASIC', 'TEAM')",)


def test_limits_argument_checks() -> None:
    p = Policy(1, "1s")
    with pytest.raises(TypeError, match=exactly("name must be a str, not int")):
        Limits(policies=p, name=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("plan_of must be callable, not str")):
        Limits(plans={"A": p}, plan_of="A")
    with pytest.raises(ValueError, match=exactly("plans need plan_of, a function request -> plan name")):
        Limits(plans={"A": p})
    with pytest.raises(TypeError, match=exactly("plans must be a mapping of plan name to policies, not list")):
        Limits(plans=[("A", p)], plan_of=lambda r: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=exactly("plans is empty")):
        Limits(plans={}, plan_of=lambda r: None)
    with pytest.raises(ValueError, match=r"^plans\['A'\]: at least one Policy is needed$"):
        Limits(plans={"A": ()}, plan_of=lambda r: None)
    with pytest.raises(ValueError, match=exactly("policies: at least one Policy is needed")):
        Limits(policies=[])
    with pytest.raises(TypeError, match=exactly("policies must be a tollgate.Policy or a sequence of them, not bytes")):
        Limits(policies=b"100/h")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^plans\['A'\] must hold tollgate.Policy objects, not int$"):
        Limits(plans={"A": [p, 3]}, plan_of=lambda r: None)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=exactly("policies must be a tollgate.Policy or a sequence of them, not set")):
        Limits(policies={p})  # type: ignore[arg-type]


# ---- costs and keys ---------------------------------------------------------------------------


def test_costs() -> None:
    req = starlette()
    check_cost(0)  # a peek is allowed
    check_cost(lambda r: 1)
    assert resolve_cost(3, req) == 3
    assert resolve_cost(lambda r: 0, req) == 0
    with pytest.raises(ValueError, match=r"^cost must be >= 0 \(got -1\)$"):
        check_cost(-1)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(TypeError, match=exactly("cost must be an int or a function request -> int, not %s" % type(bad).__name__)):
            check_cost(bad)
    with pytest.raises(TypeError, match=exactly("cost must be an int (or a function returning one), not bool")):
        resolve_cost(lambda r: False, req)
    with pytest.raises(TypeError, match=exactly("cost must be an int (or a function returning one), not float")):
        resolve_cost(lambda r: 1.5, req)
    with pytest.raises(TypeError, match=exactly("cost must be an int (or a function returning one), not str")):
        resolve_cost("2", req)


def test_key_checks_and_scoped_keys() -> None:
    check_key_func(lambda r: None)
    with pytest.raises(TypeError, match=exactly("key must be a key function (request -> str | bytes | None), not str")):
        check_key_func("ip")
    assert check_key("k") == "k" and check_key(b"k") == b"k"
    with pytest.raises(TypeError, match=exactly("the key function returned int; expected str, bytes or None")):
        check_key(5)
    assert scoped_key("search", "org:a") == "search|org:a"
    assert scoped_key("s\u00e9", b"org:\xff") == "s\u00e9".encode() + b"|org:\xff"


# ---- outcomes, headers, 429 body ------------------------------------------------------------


def _limiter() -> tollgate.Limiter:
    return tollgate.Limiter(clock=lambda: T0)


def test_outcome_reports_the_policy_that_decided() -> None:
    lim = _limiter()
    wide, narrow = Policy(100, "1h"), Policy(2, "1m")
    d = lim.check("k", wide, narrow)
    assert d.policy_index == 1
    o = Outcome.of(d, (wide, narrow), "api")
    assert o.policy == narrow and o.name == "api" and o.decision is d
    assert headers_for(o)["RateLimit-Policy"] == '"api";q=2;w=60'


def test_binding_outcome() -> None:
    lim = _limiter()
    p10, p5, p1 = Policy(10, "1m"), Policy(5, "1m"), Policy(1, "1h")
    allowed10 = Outcome.of(lim.check("a", p10), (p10,), "ten")  # 9 left
    allowed5 = Outcome.of(lim.check("b", p5), (p5,), "five")  # 4 left
    assert binding([allowed10, allowed5]) is allowed5
    assert binding([allowed5, allowed10]) is allowed5
    # A denial binds over any allowed outcome.
    lim.check("c", p1)
    denied_short = Outcome.of(lim.check("c", p1), (p1,), "hour")  # retry 3600 s
    lim.check("d", p10, cost=10)
    denied_shorter = Outcome.of(lim.check("d", p10), (p10,), "minute")  # retry 6 s
    assert not denied_short.decision.allowed and not denied_shorter.decision.allowed
    assert binding([allowed5, denied_shorter]) is denied_shorter
    # Of several denials, the longest retry.
    assert binding([denied_shorter, denied_short, allowed10]) is denied_short
    assert binding([denied_short, denied_shorter]) is denied_short
    # A request that can never pass (cost above the limit: retry_after_ms
    # -1) binds over any finite retry.
    never = Outcome.of(lim.check("e", p5, cost=6), (p5,), "never")
    assert never.decision.retry_after_ms < 0
    assert binding([denied_short, never]) is never
    assert binding([never, denied_short]) is never


def test_denied_body() -> None:
    assert json.loads(denied_body({"Retry-After": "36"})) == {"detail": "Rate limit exceeded", "retry_after": 36}
    assert denied_body({"Retry-After": "7"}) == b'{"detail":"Rate limit exceeded","retry_after":7}'
    assert denied_body({}) == b'{"detail":"Rate limit exceeded","retry_after":1}'
    assert denied_body({"Retry-After": "soon"}) == b'{"detail":"Rate limit exceeded","retry_after":1}'


def test_default_plans() -> None:
    assert list(DEFAULT_PLANS) == ["FREE", "PRO", "ENTERPRISE"]


def test_forwarded_quoted_values_keep_escaped_quotes_and_separators() -> None:
    # Inside quotes a backslash escapes the next character, so neither the
    # quote it escapes nor a ';' or ',' after it ends the value or the
    # element.
    assert forwarded_for(['for="a\\";b,c";proto=x, for=192.0.2.1']) == ['a";b,c', "192.0.2.1"]


def test_address_list_reads_ascii_bytes_as_ranges_and_other_bytes_as_keys() -> None:
    entries = AddressList([b"10.0.0.0/8", b"user:1", b"\xff"], "allow")
    assert [str(n) for n in entries.networks] == ["10.0.0.0/8"]
    assert entries.keys == frozenset({b"user:1", b"\xff"})


def test_an_empty_trusted_proxies_list_is_an_invalid_argument_with_its_code() -> None:
    with pytest.raises(tollgate.InvalidArgument, match="^trusted_proxies: empty") as e:
        client_address(trust_forwarded=True, trusted_proxies=[])
    assert e.value.code == "RL_E_INVALID_ARG"
