"""The web integrations: tollgate.asgi (Starlette/FastAPI), tollgate.flask
and tollgate.plans, through the example apps in examples/python/ and their
test clients (Starlette's TestClient over httpx, Flask's test_client).

The limiters use a pinned clock (the memory store's ``clock`` option), so
every header value is known exactly and the two frameworks can be compared
byte for byte. The Redis test starts its own redis-server on a loopback
port (conftest.py) and stops it by PID.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import re
import time
import warnings
from typing import Any, Dict, List, Optional, Tuple

import pytest

pytest.importorskip("httpx")
fastapi = pytest.importorskip("fastapi")
flask = pytest.importorskip("flask")

from fastapi import Depends, FastAPI  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

with warnings.catch_warnings():
    # Newer Starlette prefers another HTTP client package for its TestClient
    # and warns about httpx; httpx still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import tollgate  # noqa: E402
from tollgate import Policy  # noqa: E402
from tollgate.asgi import RateLimitExceeded, RateLimitMiddleware, rate_limit, rate_limit_exceeded_handler  # noqa: E402
from tollgate.flask import RateLimiter  # noqa: E402
from tollgate.plans import (  # noqa: E402
    DEFAULT_PLANS,
    HEADER_NAMES,
    Limits,
    client_address,
    header_key,
    organization_key,
)

from conftest import REPO_ROOT, Clock, needs_redis  # noqa: E402

EXAMPLES = REPO_ROOT / "examples" / "python"


# ---- stand-ins for core functions this build may not have yet --------------------


def _py_rate_limit_headers(decision: Any, policy: Any, name: str = "default") -> Dict[str, str]:
    """Test-only stand-in for tollgate.rate_limit_headers (the core's
    rl_headers_format, core/src/headers.cpp), used only when the installed
    package does not have it."""

    def ceil_s(ms: int) -> int:
        return 0 if ms <= 0 else (ms + 999) // 1000

    text = "".join(("\\" + c if c in '"\\' else c) for c in (name or "default") if 0x20 <= ord(c) <= 0x7E)
    quoted = '"%s"' % text
    window = ceil_s(policy.period_ms)
    reset = ceil_s(decision.reset_after_ms)
    left = max(0, decision.remaining)
    out = {
        "RateLimit-Policy": "%s;q=%d;w=%d" % (quoted, decision.limit, window),
        "RateLimit": "%s;r=%d;t=%d" % (quoted, left, reset),
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(left),
        "X-RateLimit-Reset": str(reset),
    }
    if not decision.allowed:
        ms = decision.retry_after_ms
        out["Retry-After"] = str(window if ms < 0 else max(1, ceil_s(ms)))
    return out


@pytest.fixture(autouse=True)
def _headers_function(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(tollgate, "rate_limit_headers"):
        monkeypatch.setattr(tollgate, "rate_limit_headers", _py_rate_limit_headers, raising=False)


class _AsyncShim:
    """Test-only: adds check_async (over check) to a limiter that lacks it."""

    def __init__(self, inner: tollgate.Limiter) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def check_async(self, key: Any, *policies: Policy, cost: int = 1) -> tollgate.Decision:
        return self._inner.check(key, *policies, cost=cost)


def make_limiter(url: Optional[str] = None, **options: Any) -> Any:
    limiter = tollgate.Limiter(url, **options)
    return limiter if hasattr(limiter, "check_async") else _AsyncShim(limiter)


# ---- the example apps behind one small client interface --------------------------------


def _load_example(name: str) -> Any:
    path = EXAMPLES / (name + ".py")
    spec = importlib.util.spec_from_file_location("tollgate_example_" + name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fastapi_example() -> Any:
    return _load_example("fastapi_app")


@pytest.fixture(scope="module")
def flask_example() -> Any:
    return _load_example("flask_app")


class Reply:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # only the rate-limit fields, by their canonical names
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return "Reply(%d, %r, %r)" % (self.status, self.headers, self.body)


def _ours(headers: Any) -> Dict[str, str]:
    return {name: headers[name] for name in HEADER_NAMES if name in headers}


class AsgiClient:
    def __init__(self, app: Any) -> None:
        self.client = TestClient(app)

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> Reply:
        r = self.client.get(path, headers=headers or {})
        for name in HEADER_NAMES:  # each field at most once
            assert len(r.headers.get_list(name)) <= 1, (name, r.headers)
        return Reply(r.status_code, _ours(r.headers), r.content)

    def close(self) -> None:
        self.client.close()


class FlaskClient:
    def __init__(self, app: Any) -> None:
        self.client = app.test_client()

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> Reply:
        r = self.client.get(path, headers=headers or {})
        for name in HEADER_NAMES:
            assert len(r.headers.getlist(name)) <= 1, (name, r.headers)
        return Reply(r.status_code, _ours(r.headers), r.get_data())

    def close(self) -> None:
        pass


def example_client(framework: str, fastapi_example: Any, flask_example: Any, limiter: Any) -> Any:
    if framework == "fastapi":
        return AsgiClient(fastapi_example.create_app(limiter))
    return FlaskClient(flask_example.create_app(limiter))


FREE = {"X-Org-Id": "initech"}
PRO = {"X-Org-Id": "globex"}
ENTERPRISE = {"X-Org-Id": "acme"}

POLICY_RE = re.compile(r'^"(?P<name>[^"\\]*)";q=(?P<q>\d+);w=(?P<w>\d+)$')
RATELIMIT_RE = re.compile(r'^"(?P<name>[^"\\]*)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def assert_well_formed(reply: Reply) -> Dict[str, Any]:
    """Checks the fields against each other; returns them parsed."""
    h = reply.headers
    for name in HEADER_NAMES[:5]:
        assert name in h, (name, reply)
    pol = POLICY_RE.match(h["RateLimit-Policy"])
    rl = RATELIMIT_RE.match(h["RateLimit"])
    assert pol and rl, reply
    assert pol["name"] == rl["name"]
    assert h["X-RateLimit-Limit"] == pol["q"]
    assert h["X-RateLimit-Remaining"] == rl["r"]
    assert h["X-RateLimit-Reset"] == rl["t"]
    for field in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert re.fullmatch(r"\d+", h[field]), (field, reply)
    if reply.status == 429:
        assert re.fullmatch(r"[1-9]\d*", h["Retry-After"]), reply
        assert h["X-RateLimit-Remaining"] == "0"
        body = reply.json()
        assert body["detail"] == "Rate limit exceeded"
        assert body["retry_after"] == int(h["Retry-After"])
    else:
        assert "Retry-After" not in h, reply
    return {
        "name": pol["name"],
        "q": int(pol["q"]),
        "w": int(pol["w"]),
        "r": int(rl["r"]),
        "t": int(rl["t"]),
        "retry": int(h["Retry-After"]) if "Retry-After" in h else None,
    }


# ---- the examples: plans, 429, headers ------------------------------------------------


def test_free_org_gets_exactly_100_then_429(framework: str, fastapi_example: Any, flask_example: Any) -> None:
    client = example_client(framework, fastapi_example, flask_example, make_limiter(clock=Clock()))
    try:
        statuses = [client.get("/", FREE).status for _ in range(100)]
        assert statuses == [200] * 100
        denied = client.get("/", FREE)
        assert denied.status == 429
        fields = assert_well_formed(denied)
        # GCRA 100/h: the next unit frees up one emission interval (36 s) later.
        assert fields == {"name": "FREE", "q": 100, "w": 3600, "r": 0, "t": 3600, "retry": 36}
        assert denied.json() == {"detail": "Rate limit exceeded", "retry_after": 36}
        # Another organization, another limit; PRO passes its 101st.
        for _ in range(101):
            assert client.get("/", PRO).status == 200
    finally:
        client.close()


def test_headers_on_allowed_and_denied(framework: str, fastapi_example: Any, flask_example: Any) -> None:
    clock = Clock()
    client = example_client(framework, fastapi_example, flask_example, make_limiter(clock=clock))
    try:
        first = client.get("/", FREE)
        assert first.status == 200
        assert first.json() == {"org": "initech", "plan": "FREE"}
        assert first.headers == {
            "RateLimit-Policy": '"FREE";q=100;w=3600',
            "RateLimit": '"FREE";r=99;t=36',
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "99",
            "X-RateLimit-Reset": "36",
        }
        for plan, headers, limit in (("PRO", PRO, 1000), ("ENTERPRISE", ENTERPRISE, 10000)):
            fields = assert_well_formed(client.get("/", headers))
            assert (fields["name"], fields["q"], fields["w"], fields["r"]) == (plan, limit, 3600, limit - 1)
        # An unknown organization is on FREE, under its own key.
        assert assert_well_formed(client.get("/", {"X-Org-Id": "unknown-co"}))["r"] == 99
        # No X-Org-Id: keyed by client address, FREE.
        assert assert_well_formed(client.get("/"))["name"] == "FREE"

        for _ in range(99):
            assert client.get("/", FREE).status == 200
        denied = client.get("/", FREE)
        assert denied.status == 429 and denied.headers["Retry-After"] == "36"
        clock.advance(35.5)
        again = client.get("/", FREE)
        assert again.status == 429 and again.headers["Retry-After"] == "1"  # 0.5 s, rounded up
        clock.advance(0.5)
        assert client.get("/", FREE).status == 200
    finally:
        client.close()


def _sequence(client: Any, clock: Clock) -> List[Tuple[int, Dict[str, str], Any]]:
    out: List[Tuple[int, Dict[str, str], Any]] = []

    def get(path: str, headers: Optional[Dict[str, str]] = None) -> None:
        r = client.get(path, headers)
        body = r.body if r.status == 429 else r.json()
        out.append((r.status, r.headers, body))

    for _ in range(103):
        get("/", FREE)
    for _ in range(12):
        get("/search", PRO)
    get("/", PRO)
    clock.advance(7.25)
    get("/search", PRO)
    get("/", FREE)
    clock.advance(30)
    get("/", FREE)
    get("/", FREE)
    for _ in range(3):
        get("/search", {"X-Org-Id": 'we"ird\\org'})
    clock.advance(3600)
    get("/", FREE)
    return out


def test_asgi_and_flask_emit_identical_headers(fastapi_example: Any, flask_example: Any) -> None:
    a_clock, f_clock = Clock(), Clock()
    a = AsgiClient(fastapi_example.create_app(make_limiter(clock=a_clock)))
    f = FlaskClient(flask_example.create_app(make_limiter(clock=f_clock)))
    try:
        from_asgi = _sequence(a, a_clock)
        from_flask = _sequence(f, f_clock)
    finally:
        a.close()
        f.close()
    assert len(from_asgi) == len(from_flask)
    for i, (x, y) in enumerate(zip(from_asgi, from_flask)):
        assert x == y, "request %d differs:\nasgi  %r\nflask %r" % (i, x, y)
    statuses = [s for s, _, _ in from_asgi]
    assert statuses.count(429) >= 5 and statuses.count(200) >= 100
    for status, headers, body in from_asgi:
        assert_well_formed(Reply(status, headers, body if isinstance(body, bytes) else json.dumps(body).encode()))


# ---- per-route limits -------------------------------------------------------------------


def test_per_route_limit(framework: str, fastapi_example: Any, flask_example: Any) -> None:
    clock = Clock()
    client = example_client(framework, fastapi_example, flask_example, make_limiter(clock=clock))
    try:
        replies = [client.get("/search?q=x", PRO) for _ in range(10)]
        assert [r.status for r in replies] == [200] * 10
        # The route's 10/min binds before PRO's 1000/h: its headers are sent.
        assert replies[0].headers["RateLimit-Policy"] == '"search";q=10;w=60'
        assert replies[0].headers["RateLimit"] == '"search";r=9;t=6'
        assert replies[-1].json() == {"q": "x", "results": []}
        denied = client.get("/search?q=x", PRO)
        assert denied.status == 429
        assert assert_well_formed(denied) == {"name": "search", "q": 10, "w": 60, "r": 0, "t": 60, "retry": 6}
        # The rest of the app still answers, under the plan's limit, which the
        # 10 searches allowed were charged to, and not the one the route
        # denied (one check_keys for both limits, all or nothing).
        index = client.get("/", PRO)
        assert index.status == 200
        assert index.headers["RateLimit"] == '"PRO";r=989;t=40'  # 11 x 3.6 s, rounded up
        # Another organization has its own search limit.
        assert client.get("/search", ENTERPRISE).status == 200
        clock.advance(6)
        assert client.get("/search?q=x", PRO).status == 200
    finally:
        client.close()


def test_dependency_alone_sets_headers_and_raises_429() -> None:
    limiter = make_limiter(clock=Clock())
    app = FastAPI()
    per_route = rate_limit(limiter, Policy(2, "10s"), key=header_key("X-API-Key", hash=True))
    seen: List[Optional[tollgate.Decision]] = []

    @app.get("/items")
    async def items(decision: Optional[tollgate.Decision] = Depends(per_route)) -> Dict[str, int]:
        seen.append(decision)
        return {"n": 1}

    with TestClient(app) as client:
        ok = client.get("/items", headers={"X-API-Key": "k1"})
        assert ok.status_code == 200
        assert ok.headers["RateLimit-Policy"] == '"default";q=2;w=10'
        assert ok.headers["RateLimit"] == '"default";r=1;t=5'
        assert seen[-1] is not None and seen[-1].remaining == 1
        assert client.get("/items", headers={"X-API-Key": "k1"}).status_code == 200
        denied = client.get("/items", headers={"X-API-Key": "k1"})
        assert denied.status_code == 429
        # FastAPI's own handler for HTTPException: {"detail": ...}, our headers.
        assert denied.json() == {"detail": "Rate limit exceeded"}
        assert denied.headers["Retry-After"] == "5"
        assert denied.headers["X-RateLimit-Remaining"] == "0"
        assert len(seen) == 2  # the endpoint did not run
        assert client.get("/items", headers={"X-API-Key": "k2"}).status_code == 200
    # The hashed API key is what reaches the limiter.
    key = "items|x-api-key:sha256:" + hashlib.sha256(b"k1").hexdigest()
    assert limiter.check(key, Policy(2, "10s"), cost=0).remaining == 0


def test_flask_decorator_without_global_limit() -> None:
    limiter = make_limiter(clock=Clock())
    app = flask.Flask(__name__)
    ext = RateLimiter(app, limiter=limiter)  # no policies: decorators only
    calls: List[int] = []

    @app.get("/export")
    @ext.limit(Policy(2, "10s"), key=header_key("X-API-Key"), cost=1)
    def export() -> Dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    @app.get("/async")
    @ext.limit(Policy(1, "10s"), key=lambda request: "same")
    async def async_view() -> str:
        return "ok"

    @app.get("/free")
    def free() -> str:
        return "free"

    @app.get("/busy")
    @ext.limit(Policy(5, "10s"))
    def busy() -> Any:
        return "later", 503, {"Retry-After": "120"}

    client = app.test_client()
    r = client.get("/export", headers={"X-API-Key": "abc"})
    assert r.status_code == 200 and r.get_json() == {"n": 1}
    assert r.headers["RateLimit"] == '"default";r=1;t=5'
    client.get("/export", headers={"X-API-Key": "abc"})
    denied = client.get("/export", headers={"X-API-Key": "abc"})
    assert denied.status_code == 429 and denied.headers["Retry-After"] == "5"
    assert denied.get_json() == {"detail": "Rate limit exceeded", "retry_after": 5}
    assert len(calls) == 2
    assert "RateLimit" not in client.get("/free").headers  # nothing checked
    r503 = client.get("/busy")  # the view's own Retry-After is kept
    assert r503.status_code == 503 and r503.headers["Retry-After"] == "120"
    assert r503.headers["RateLimit"] == '"default";r=4;t=2'
    assert limiter.check("export|x-api-key:abc", Policy(2, "10s"), cost=0).remaining == 0
    if importlib.util.find_spec("asgiref") is None:
        return  # Flask runs async views through asgiref (flask[async])
    assert client.get("/async").status_code == 200
    assert client.get("/async").status_code == 429


# ---- key functions ---------------------------------------------------------------------


def _starlette_request(headers: Dict[str, str], client: Optional[Tuple[str, int]] = ("203.0.113.7", 5000)) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": client,
    }
    return Request(scope)


def _flask_key(key_func: Any, headers: Dict[str, str], remote: str = "203.0.113.7") -> Any:
    app = flask.Flask(__name__)
    with app.test_request_context("/", headers=headers, environ_base={"REMOTE_ADDR": remote}):
        return key_func(flask.request)


@pytest.mark.parametrize("make", ["starlette", "flask"])
def test_key_functions(make: str) -> None:
    def key(func: Any, headers: Dict[str, str], addr: str = "203.0.113.7") -> Any:
        if make == "starlette":
            return func(_starlette_request(headers, (addr, 5000)))
        return _flask_key(func, headers, addr)

    xff = {"X-Forwarded-For": "198.51.100.1, 192.0.2.9"}
    # Default: the peer; X-Forwarded-For is not trusted.
    assert key(client_address, {}) == "ip:203.0.113.7"
    assert key(client_address, xff) == "ip:203.0.113.7"
    # Behind proxies you run: the N-th address from the right.
    assert key(client_address(trust_forwarded=True), xff) == "ip:192.0.2.9"
    assert key(client_address(trust_forwarded=True, trusted_proxies=2), xff) == "ip:198.51.100.1"
    assert key(client_address(trust_forwarded=True, trusted_proxies=3), xff) == "ip:203.0.113.7"
    assert key(client_address(trust_forwarded=True), {"X-Forwarded-For": "not-an-ip"}) == "ip:203.0.113.7"
    assert key(client_address(trust_forwarded=True), {}) == "ip:203.0.113.7"
    # IPv6: by /64 unless told otherwise; IPv4-mapped as IPv4.
    assert key(client_address, {}, "2001:db8:1:2:aaaa::5") == "ip:2001:db8:1:2::/64"
    assert key(client_address(ipv6_prefix=None), {}, "2001:db8:1:2:aaaa::5") == "ip:2001:db8:1:2:aaaa::5"
    assert key(client_address, {}, "::ffff:192.0.2.1") == "ip:192.0.2.1"

    api = header_key("X-API-Key")
    assert key(api, {"X-API-Key": "abc"}) == "x-api-key:abc"
    assert key(api, {}) == "ip:203.0.113.7"  # missing: the client address
    assert key(api, {"X-API-Key": "  "}) == "ip:203.0.113.7"
    assert key(header_key("X-API-Key", fallback=None), {}) is None
    digest = hashlib.sha256(b"abc").hexdigest()
    assert key(header_key("X-API-Key", hash=True), {"X-API-Key": "abc"}) == "x-api-key:sha256:" + digest
    assert key(header_key("X-API-Key", prefix="k/"), {"X-API-Key": "abc"}) == "k/abc"
    long_value = "v" * 500
    assert key(api, {"X-API-Key": long_value}) == (
        "x-api-key:sha256:" + hashlib.sha256(long_value.encode()).hexdigest()
    )

    org = organization_key("X-Org-Id")
    assert key(org, {"X-Org-Id": "acme"}) == "org:acme"
    assert key(org, {}) == "ip:203.0.113.7"
    assert key(organization_key(getter=lambda r: "from-auth"), {"X-Org-Id": "acme"}) == "org:from-auth"
    assert key(organization_key(getter=lambda r: None, fallback=None), {}) is None


def test_key_function_errors() -> None:
    with pytest.raises(ValueError):
        client_address(trusted_proxies=0)
    with pytest.raises(TypeError):
        client_address(trust_forwarded="yes")
    with pytest.raises(TypeError):
        header_key("")
    with pytest.raises(TypeError):
        organization_key(None)
    with pytest.raises(TypeError):
        organization_key(fallback="ip")  # type: ignore[arg-type]


@pytest.mark.parametrize("trust", [False, True])
def test_spoofed_forwarded_for_does_not_escape_the_limit(framework: str, trust: bool) -> None:
    limiter = make_limiter(clock=Clock())
    key = client_address(trust_forwarded=True) if trust else client_address
    client: Any
    if framework == "fastapi":
        app = FastAPI()
        app.add_middleware(RateLimitMiddleware, limiter=limiter, policies=Policy(3, "1h"), key=key)

        @app.get("/")
        async def index() -> str:
            return "ok"

        client = AsgiClient(app)
    else:
        fapp = flask.Flask(__name__)
        RateLimiter(fapp, limiter=limiter, policies=Policy(3, "1h"), key=key)
        fapp.add_url_rule("/", "index", lambda: "ok")
        client = FlaskClient(fapp)
    try:
        statuses = [
            client.get("/", {"X-Forwarded-For": "198.51.100.%d" % i}).status for i in range(5)
        ]
        # Untrusted: every request is the same peer. Trusted: five clients.
        assert statuses == ([200] * 5 if trust else [200, 200, 200, 429, 429])
    finally:
        client.close()


def test_middleware_options() -> None:
    limiter = make_limiter(clock=Clock())

    async def async_key(request: Request) -> Optional[str]:
        await asyncio.sleep(0)
        if request.url.path == "/healthz":
            return None  # unlimited
        return request.headers.get("X-User", "anon")

    async def async_plan(request: Request) -> Optional[str]:
        return "TEAM" if request.headers.get("X-User") == "t" else None

    app = FastAPI()
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        policies=[Policy(2, "1m"), Policy(100, "1d")],
        plans={"TEAM": Policy(5, "1m")},
        plan_of=async_plan,
        key=async_key,
        name="api",
        cost=lambda request: 2 if request.url.path == "/heavy" else 1,
    )

    @app.get("/maintenance")
    async def maintenance() -> Response:
        return Response("later", status_code=503, headers={"Retry-After": "120"})

    @app.get("/{path}")
    async def any_path(path: str) -> str:
        return path

    with TestClient(app) as client:
        r = client.get("/a", headers={"X-User": "u"})
        assert r.headers["RateLimit-Policy"] == '"api";q=2;w=60'  # the binding policy of the two
        assert r.headers["RateLimit"] == '"api";r=1;t=30'
        assert client.get("/heavy", headers={"X-User": "u"}).status_code == 429  # cost 2 > 1 left
        r = client.get("/a", headers={"X-User": "t"})
        assert r.headers["RateLimit-Policy"] == '"api";q=5;w=60'
        h = client.get("/healthz")
        assert h.status_code == 200 and "RateLimit" not in h.headers
        # The app's own Retry-After survives on an allowed response.
        m = client.get("/maintenance", headers={"X-User": "m"})
        assert m.status_code == 503 and m.headers["Retry-After"] == "120"
        assert m.headers["RateLimit"] == '"api";r=1;t=30'


def test_limits_configuration() -> None:
    with pytest.raises(ValueError):
        Limits(plans=DEFAULT_PLANS)  # plans without plan_of
    with pytest.raises(TypeError):
        Limits(policies="100/h")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Limits(policies=[Policy(1, 1), "x"])  # type: ignore[list-item]
    limits = Limits(plan_of=lambda r: None)
    assert limits.for_plan(None) == ((DEFAULT_PLANS["FREE"],), "FREE")
    assert limits.for_plan("PRO") == ((Policy(1000, "1h"),), "PRO")
    with pytest.raises(KeyError):
        limits.for_plan("GOLD")
    assert dict(DEFAULT_PLANS) == {
        "FREE": Policy(100, "1h"),
        "PRO": Policy(1000, "1h"),
        "ENTERPRISE": Policy(10000, "1h"),
    }
    with pytest.raises(TypeError):
        DEFAULT_PLANS["FREE"] = Policy(1, 1)  # type: ignore[index]
    with pytest.raises(ValueError):
        RateLimitMiddleware(lambda *a: None, make_limiter())  # neither policies nor plans
    with pytest.raises(ValueError):
        rate_limit(make_limiter())  # no policy


def test_rate_limit_exceeded_is_an_http_exception() -> None:
    from starlette.exceptions import HTTPException

    limiter = make_limiter(clock=Clock())
    d = limiter.check("k", Policy(1, "1s"), cost=2)
    exc = RateLimitExceeded(d, {"Retry-After": "1"})
    assert isinstance(exc, HTTPException) and exc.status_code == 429 and exc.decision is d


# ---- a global and a per-route limit: one decision -------------------------------------------
#
# A request under the global limit (the Flask extension's, the middleware's)
# and a per-route one is checked with one Limiter.check_keys: all or
# nothing. The two-step fallback (route first, then the global limit, whose
# denial refunds the route) runs when check_keys raises UnsupportedError
# (keys of several cluster slots; test_cluster.py has it on a real cluster)
# or cannot take the pairs (different costs, a key twice).


class Recorder:
    """Test-only: a limiter that records the calls the helpers make, and
    can refuse check_keys as a Redis Cluster refuses keys of several slots."""

    def __init__(self, inner: tollgate.Limiter, unsupported: bool = False) -> None:
        self.inner = inner
        self.unsupported = unsupported
        self.calls: List[Tuple[Any, ...]] = []

    def check(self, key: Any, *policies: Policy, cost: int = 1) -> tollgate.Decision:
        self.calls.append(("check", key, cost))
        return self.inner.check(key, *policies, cost=cost)

    async def check_async(self, key: Any, *policies: Policy, cost: int = 1) -> tollgate.Decision:
        self.calls.append(("check", key, cost))
        return await self.inner.check_async(key, *policies, cost=cost)

    def _keys(self, pairs: Any, cost: int) -> None:
        self.calls.append(("check_keys", tuple(k for k, _ in pairs), cost))
        if self.unsupported:
            raise tollgate.UnsupportedError(
                "keys: the keys lie in several cluster slots", "RL_E_UNSUPPORTED"
            )

    def check_keys(self, pairs: Any, cost: int = 1) -> tollgate.Decision:
        self._keys(pairs, cost)
        return self.inner.check_keys(pairs, cost=cost)

    async def check_keys_async(self, pairs: Any, cost: int = 1) -> tollgate.Decision:
        self._keys(pairs, cost)
        return await self.inner.check_keys_async(pairs, cost=cost)

    def refund(self, key: Any, *policies: Policy, amount: int = 1) -> tollgate.Decision:
        self.calls.append(("check", key, -amount))
        return self.inner.refund(key, *policies, amount=amount)

    async def refund_async(self, key: Any, *policies: Policy, amount: int = 1) -> tollgate.Decision:
        self.calls.append(("check", key, -amount))
        return await self.inner.refund_async(key, *policies, amount=amount)


def _status_from_query(args: Any) -> int:
    return int(args.get("status", "200"))


def joint_client(
    framework: str,
    limiter: Any,
    glob: Policy,
    route: Policy,
    *,
    key: Any = lambda request: "org",
    route_key: Any = None,
    route_cost: int = 1,
    count: str = "all",
    handler: bool = True,
) -> Any:
    """An app with the global limit `glob` (name "global"), "/search" under
    `route` too (name "search": key "search|<key>"), and "/other" under the
    global limit alone; "?status=N" answers N."""
    if framework == "flask":
        app = flask.Flask(__name__)
        ext = RateLimiter(app, limiter=limiter, policies=glob, key=key, name="global", count=count)

        @app.get("/search")
        @ext.limit(route, name="search", key=route_key, cost=route_cost)
        def search() -> Any:
            return {"route": "search"}, _status_from_query(flask.request.args)

        @app.get("/other")
        def other() -> Any:
            return {"route": "other"}, _status_from_query(flask.request.args)

        return FlaskClient(app)
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limiter=limiter, policies=glob, key=key, name="global", count=count)
    if handler:
        app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)
    dep = rate_limit(limiter, route, key=route_key or key, name="search", cost=route_cost)

    @app.get("/search", dependencies=[Depends(dep)])
    async def search(request: Request) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"route": "search"}, status_code=_status_from_query(request.query_params))

    @app.get("/other")
    async def other(request: Request) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"route": "other"}, status_code=_status_from_query(request.query_params))

    return AsgiClient(app)


def _peek(limiter: Any, key: str, policy: Policy) -> int:
    inner = getattr(limiter, "inner", limiter)
    return inner.check(key, policy, cost=0).remaining


@pytest.fixture(params=["memory", "redis"])
def store_limiter(request: pytest.FixtureRequest) -> Any:
    """A limiter on the memory store (a pinned clock) or on the session's
    redis-server (periods long enough that its clock changes nothing)."""
    if request.param == "memory":
        lim = make_limiter(clock=Clock())
    else:
        server = request.getfixturevalue("redis_server")
        lim = make_limiter(server.url, key_prefix=request.getfixturevalue("prefix"), failure_mode="error")
    yield lim
    lim.close()


def test_a_route_denial_costs_nothing_under_the_global_limit(framework: str, store_limiter: Any) -> None:
    glob, route = Policy(100, "1h"), Policy(2, "1h", "fixed_window")
    lim = Recorder(store_limiter)
    client = joint_client(framework, lim, glob, route)
    try:
        assert [client.get("/search").status for _ in range(2)] == [200, 200]
        assert lim.calls == [("check_keys", ("org", "search|org"), 1)] * 2  # one call per request
        denied = [client.get("/search") for _ in range(3)]
        assert [r.status for r in denied] == [429] * 3
        assert denied[0].headers["RateLimit-Policy"].startswith('"search";q=2;w=3600')
        assert denied[0].headers["X-RateLimit-Remaining"] == "0"
        # The global limit was charged for the two allowed requests only.
        assert _peek(lim, "org", glob) == 98
        assert _peek(lim, "search|org", route) == 0
        other = client.get("/other")
        assert other.status == 200 and other.headers["X-RateLimit-Remaining"] == "97"
        assert lim.calls[-1] == ("check", "org", 1)  # no route limit: one check
    finally:
        client.close()


def test_a_global_denial_costs_nothing_on_the_route(framework: str, store_limiter: Any) -> None:
    glob, route = Policy(2, "1h", "fixed_window"), Policy(10, "1h")
    client = joint_client(framework, store_limiter, glob, route)
    try:
        assert [client.get("/other").status for _ in range(2)] == [200, 200]
        denied = client.get("/search")
        assert denied.status == 429
        assert denied.headers["RateLimit-Policy"] == '"global";q=2;w=3600'
        assert denied.json()["detail"] == "Rate limit exceeded"
        assert _peek(store_limiter, "search|org", route) == 10  # never charged
        assert _peek(store_limiter, "org", glob) == 0
    finally:
        client.close()


def test_the_binding_limit_describes_an_allowed_request(framework: str) -> None:
    lim = make_limiter(clock=Clock())
    client = joint_client(framework, lim, Policy(100, "1h"), Policy(3, "1m"))
    try:
        r = client.get("/search")
        assert r.status == 200 and r.json() == {"route": "search"}
        assert r.headers["RateLimit"] == '"search";r=2;t=20'  # fewer left than the global 99
        lim.check("org", Policy(100, "1h"), cost=98)
        r = client.get("/search")
        assert r.headers["RateLimit"] == '"global";r=0;t=3600'  # now the global binds
        assert client.get("/search").status == 429
        assert _peek(lim, "search|org", Policy(3, "1m")) == 1
    finally:
        client.close()


def test_fallback_when_check_keys_is_unsupported(framework: str, store_limiter: Any) -> None:
    """check_keys raising UnsupportedError (a cluster, keys of several
    slots): the route alone first, then the global limit, whose denial gives
    the route's charge back."""
    glob, route = Policy(100, "1h"), Policy(2, "1h", "fixed_window")
    lim = Recorder(store_limiter, unsupported=True)
    client = joint_client(framework, lim, glob, route)
    try:
        assert client.get("/search").status == 200
        assert lim.calls == [
            ("check_keys", ("org", "search|org"), 1),
            ("check", "search|org", 1),
            ("check", "org", 1),
        ]
        assert client.get("/search").status == 200
        lim.calls.clear()
        denied = client.get("/search")  # the route denies: the global limit is untouched
        assert denied.status == 429 and denied.headers["RateLimit-Policy"].startswith('"search"')
        assert lim.calls == [("check_keys", ("org", "search|org"), 1), ("check", "search|org", 1)]
        assert _peek(lim, "org", glob) == 98
    finally:
        client.close()

    glob2, route2 = Policy(2, "1h", "fixed_window"), Policy(10, "1h")
    lim2 = Recorder(store_limiter, unsupported=True)
    client = joint_client(framework, lim2, glob2, route2, key=lambda request: "u")
    try:
        assert [client.get("/other").status for _ in range(2)] == [200, 200]
        lim2.calls.clear()
        denied = client.get("/search")  # the global limit denies: the route's charge is given back
        assert denied.status == 429
        assert denied.headers["RateLimit-Policy"] == '"global";q=2;w=3600'
        assert lim2.calls == [
            ("check_keys", ("u", "search|u"), 1),
            ("check", "search|u", 1),
            ("check", "u", 1),
            ("check", "search|u", -1),
        ]
        assert _peek(lim2, "search|u", route2) == 10
    finally:
        client.close()


def test_different_costs_take_two_steps(framework: str) -> None:
    glob, route = Policy(100, "1h"), Policy(10, "1h")
    lim = Recorder(make_limiter(clock=Clock()))
    client = joint_client(framework, lim, glob, route, route_cost=4)
    try:
        assert client.get("/search").status == 200
        assert lim.calls == [("check", "search|org", 4), ("check", "org", 1)]
        assert [client.get("/search").status for _ in range(2)] == [200, 429]
        assert _peek(lim, "org", glob) == 98  # the route's denial did not reach it
        assert _peek(lim, "search|org", route) == 2
    finally:
        client.close()


@pytest.mark.parametrize("status", [200, 404])
def test_count_successful_gives_back_per_key(framework: str, status: int) -> None:
    """count="successful": a failed response gives its charges back, each
    key on its own (Flask: the global limit's and the view's, which takes
    the extension's count; FastAPI: the middleware's; a rate_limit
    dependency keeps its charge)."""
    glob, route = Policy(10, "1h"), Policy(5, "1h")
    lim = make_limiter(clock=Clock())
    client = joint_client(framework, lim, glob, route, count="successful")
    try:
        assert client.get("/search?status=%d" % status).status == status
        kept = status < 400
        assert _peek(lim, "org", glob) == (9 if kept else 10)
        assert _peek(lim, "search|org", route) == (4 if kept or framework == "fastapi" else 5)
    finally:
        client.close()


def test_a_route_key_of_none_leaves_one_check(framework: str) -> None:
    glob, route = Policy(10, "1h"), Policy(1, "1h")
    lim = Recorder(make_limiter(clock=Clock()))
    client = joint_client(framework, lim, glob, route, route_key=lambda request: None)
    try:
        assert [client.get("/search").status for _ in range(3)] == [200] * 3
        assert lim.calls == [("check", "org", 1)] * 3
    finally:
        client.close()


def test_flask_stacked_route_limits_in_one_call() -> None:
    inner = make_limiter(clock=Clock())
    lim = Recorder(inner)
    app = flask.Flask(__name__)
    ext = RateLimiter(app, limiter=lim, policies=Policy(100, "1h"), key=lambda r: "org")

    @app.get("/x")
    @ext.limit(Policy(5, "1h"), scope="burst")
    @ext.limit(Policy(2, "1h"), scope="x")
    def x() -> str:
        return "x"

    @app.get("/same")
    @ext.limit(Policy(5, "1h", name="a"))
    @ext.limit(Policy(3, "1h", name="b"))
    def same() -> str:
        return "same"

    client = app.test_client()
    assert client.get("/x").status_code == 200
    assert lim.calls == [("check_keys", ("org", "x|org", "burst|org"), 1)]
    assert client.get("/x").status_code == 200
    assert client.get("/x").status_code == 429  # x's 2/h
    assert _peek(lim, "org", Policy(100, "1h")) == 98
    assert _peek(lim, "burst|org", Policy(5, "1h")) == 3
    # Two limits on one key cannot go in one call: the two steps, route first.
    lim.calls.clear()
    assert client.get("/same").status_code == 200
    assert lim.calls == [("check", "same|org", 1), ("check", "same|org", 1), ("check", "org", 1)]


def test_flask_view_called_directly_checks_its_own_limit() -> None:
    """The before_request hook takes the limits of the routed view only: a
    decorated view another view calls checks its limit when called."""
    lim = make_limiter(clock=Clock())
    app = flask.Flask(__name__)
    ext = RateLimiter(app, limiter=lim, policies=Policy(100, "1h"), key=lambda r: "org")

    @app.get("/inner")
    @ext.limit(Policy(1, "1h"), scope="inner")
    def inner() -> str:
        return "inner"

    @app.get("/outer")
    @ext.limit(Policy(5, "1h"), scope="outer")
    def outer() -> Any:
        return inner()

    client = app.test_client()
    assert client.get("/outer").status_code == 200
    assert client.get("/outer").status_code == 429  # inner's 1/h, checked when called
    assert _peek(lim, "outer|org", Policy(5, "1h")) == 3
    assert _peek(lim, "inner|org", Policy(1, "1h")) == 0


def test_fastapi_route_denial_goes_through_the_apps_handler() -> None:
    """A route denial found by the middleware is answered as the
    dependency's RateLimitExceeded would be: FastAPI's own handler (its
    body), or the app's handler for the exception or for 429."""
    from fastapi.responses import PlainTextResponse

    for handler, body in (
        (None, {"detail": "Rate limit exceeded"}),
        ("class", "slow down"),
        ("status", "429 handler"),
        ("sync", "sync handler"),
    ):
        lim = make_limiter(clock=Clock())
        app = FastAPI()
        app.add_middleware(RateLimitMiddleware, limiter=lim, policies=Policy(100, "1h"), key=lambda r: "org")
        if handler == "class":

            async def on_limit(request: Request, exc: Exception) -> Response:
                return PlainTextResponse("slow down", status_code=429)

            app.add_exception_handler(RateLimitExceeded, on_limit)
        elif handler == "status":

            async def on_429(request: Request, exc: Exception) -> Response:
                return PlainTextResponse("429 handler", status_code=429)

            app.add_exception_handler(429, on_429)
        elif handler == "sync":

            def on_sync(request: Request, exc: Exception) -> Response:
                return PlainTextResponse("sync handler", status_code=429)

            app.add_exception_handler(RateLimitExceeded, on_sync)
        calls: List[int] = []
        dep = rate_limit(lim, Policy(1, "1m"), key=lambda r: "org", name="search")

        @app.get("/search", dependencies=[Depends(dep)])
        async def search() -> str:
            calls.append(1)
            return "ok"

        with TestClient(app) as client:
            assert client.get("/search").status_code == 200
            denied = client.get("/search")
        assert denied.status_code == 429, handler
        assert (denied.json() if handler is None else denied.text) == body
        # our headers, each once, whatever the handler returned
        assert header_list_of(denied, "RateLimit-Policy") == ['"search";q=1;w=60']
        assert header_list_of(denied, "Retry-After") == ["60"]
        assert calls == [1]
        assert _peek(lim, "org", Policy(100, "1h")) == 99


def header_list_of(r: Any, name: str) -> List[str]:
    return list(r.headers.get_list(name))


def test_fastapi_included_router_and_the_dependencys_decision() -> None:
    """A route of an included router (its limit given to include_router),
    and a dependency read in the endpoint: one call; the dependency returns
    the middleware's decision and adds no second outcome."""
    from fastapi import APIRouter
    from tollgate.asgi import SCOPE_KEY

    inner = make_limiter(clock=Clock())
    lim = Recorder(inner)
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limiter=lim, policies=Policy(100, "1h"), key=lambda r: "org")
    router = APIRouter()
    seen: List[Any] = []
    per_item = rate_limit(lim, Policy(10, "1m"), key=lambda r: "org", name="items")

    @router.get("/items/{item_id}")
    async def item(item_id: int, request: Request, decision: Any = Depends(per_item)) -> Dict[str, Any]:
        seen.append((decision, len(request.scope[SCOPE_KEY])))
        return {"id": item_id}

    admin = APIRouter()

    @admin.get("/stats")
    async def stats() -> str:
        return "stats"

    app.include_router(router, prefix="/v1")
    app.include_router(admin, prefix="/admin", dependencies=[Depends(rate_limit(lim, Policy(1, "1h"),
                                                                                key=lambda r: "org",
                                                                                scope="admin"))])
    with TestClient(app) as client:
        r = client.get("/v1/items/7")
        assert r.status_code == 200 and r.json() == {"id": 7}
        assert lim.calls == [("check_keys", ("org", "item|org"), 1)]
        decision, n_outcomes = seen[0]
        assert decision.allowed and decision.limit == 10 and decision.remaining == 9
        assert n_outcomes == 1
        assert client.get("/admin/stats").status_code == 200
        assert lim.calls[-1] == ("check_keys", ("org", "admin|org"), 1)
        assert client.get("/admin/stats").status_code == 429
        assert client.get("/nowhere").status_code == 404
        assert lim.calls[-1] == ("check", "org", 1)
    assert _peek(lim, "org", Policy(100, "1h")) == 97  # item, stats, the 404; not the denied stats


def test_fastapi_overridden_and_foreign_dependencies_check_apart() -> None:
    """A dependency overridden in app.dependency_overrides, or on another
    limiter, is not checked by the middleware."""
    lim = Recorder(make_limiter(clock=Clock()))
    other = make_limiter(clock=Clock())
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limiter=lim, policies=Policy(100, "1h"), key=lambda r: "org")
    mine = rate_limit(lim, Policy(1, "1h"), key=lambda r: "org", scope="mine")
    foreign = rate_limit(other, Policy(1, "1h"), key=lambda r: "org", scope="foreign")

    @app.get("/mine", dependencies=[Depends(mine)])
    async def mine_view() -> str:
        return "mine"

    @app.get("/foreign", dependencies=[Depends(foreign)])
    async def foreign_view() -> str:
        return "foreign"

    app.dependency_overrides[mine] = lambda: None
    with TestClient(app) as client:
        assert [client.get("/mine").status_code for _ in range(2)] == [200, 200]
        assert [client.get("/foreign").status_code for _ in range(2)] == [200, 429]
    assert lim.calls == [("check", "org", 1)] * 4
    assert _peek(lim, "org", Policy(100, "1h")) == 96  # the middleware let the foreign denial through
    assert other.check("foreign|org", Policy(1, "1h"), cost=0).remaining == 0


# ---- Redis: the two example apps share one limit ---------------------------------------------


@needs_redis
def test_examples_share_a_limit_over_redis(
    redis_server: Any, prefix: str, fastapi_example: Any, flask_example: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_lim = make_limiter(redis_server.url, key_prefix=prefix)
    f_lim = make_limiter(redis_server.url, key_prefix=prefix)
    a = AsgiClient(fastapi_example.create_app(a_lim))
    f = FlaskClient(flask_example.create_app(f_lim))
    try:
        # Redis' clock runs on: GCRA 100/h gives one unit back every 36 s
        # after the first request. The first 100 pass however slowly; the
        # rest are denied if the run takes less than that, and a slower run
        # may admit one more per 36 s it took, never more.
        started = time.monotonic()
        statuses = [(a if i % 3 else f).get("/", FREE).status for i in range(110)]
        denials = [client.get("/", FREE) for client in (a, f)]
        returned = int((time.monotonic() - started) // 36)
        assert statuses[:100] == [200] * 100
        admitted = statuses.count(200) + sum(d.status == 200 for d in denials)
        assert 100 <= admitted <= 100 + returned, (admitted, returned)
        for denied in denials:
            assert denied.status == 429 or returned > 0
            assert_well_formed(denied)
    finally:
        a.close()
        f.close()
        a_lim.close()
        f_lim.close()
    # TOLLGATE_URL picks the store.
    monkeypatch.setenv("TOLLGATE_URL", redis_server.url)
    app = fastapi_example.create_app()
    fapp = flask_example.create_app()
    try:
        assert app.state.limiter.store == "redis"
        assert fapp.extensions["tollgate"].limiter.store == "redis"
    finally:
        app.state.limiter.close()
        fapp.extensions["tollgate"].limiter.close()


def test_examples_default_to_memory(fastapi_example: Any, flask_example: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOLLGATE_URL", raising=False)
    app = fastapi_example.create_app()
    assert app.state.limiter.store == "memory"
    assert flask_example.create_app().extensions["tollgate"].limiter.store == "memory"
