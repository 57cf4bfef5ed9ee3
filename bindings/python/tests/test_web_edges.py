"""Edges of tollgate.asgi and tollgate.flask that the example apps do not
reach: traffic that is not HTTP, an app's own rate-limit headers, a global
and a per-route limit on one request, shared scopes, configuration from
app.config, and the argument checks. Added for the mutation run
(docs/testing.md, "Mutation testing"). Limiters use a pinned clock; the one Redis test
uses the conftest's redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from typing import Any, AsyncIterator, Dict, List, Optional

import re

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
flask = pytest.importorskip("flask")

from fastapi import Depends, FastAPI  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.websockets import WebSocket  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import tollgate  # noqa: E402
from tollgate import Policy  # noqa: E402
from tollgate.asgi import (  # noqa: E402
    RateLimitExceeded,
    RateLimitMiddleware,
    rate_limit,
    rate_limit_exceeded_handler,
)
from tollgate.flask import RateLimiter  # noqa: E402

from conftest import needs_redis  # noqa: E402


def exactly(text: str) -> str:
    """A pytest.raises(match=...) pattern for the whole message."""
    return "^" + re.escape(text) + "$"


T0 = 1_700_000_000_000_000


def limiter() -> tollgate.Limiter:
    return tollgate.Limiter(clock=lambda: T0)


def header_list(r: Any, name: str) -> List[str]:
    h = r.headers
    return list(h.get_list(name) if hasattr(h, "get_list") else h.getlist(name))


# ---- ASGI --------------------------------------------------------------------------------


def test_asgi_websocket_and_lifespan_pass_unchecked() -> None:
    lim = limiter()
    started: List[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(RateLimitMiddleware, limiter=lim, policies=Policy(1, "1h"), key=lambda r: "one")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    @app.get("/")
    async def index() -> str:
        return "ok"

    with TestClient(app) as client:
        assert started == [True]  # lifespan reached the app
        for _ in range(3):
            with client.websocket_connect("/ws") as conn:
                assert conn.receive_text() == "hi"
        # The websockets were not charged: the one request is allowed.
        assert client.get("/").status_code == 200
        assert client.get("/").status_code == 429


def _raw_app(headers: List[Any], status: int = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": message["type"] + ".complete"})
                if kind == "shutdown":
                    return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"raw"})

    return app


def test_asgi_replaces_an_apps_own_rate_limit_headers() -> None:
    app = _raw_app(
        [
            (b"X-RateLimit-Limit", b"999"),
            (b"ratelimit", b"bogus"),
            (b"Retry-After", b"120"),
            (b"X-Other", b"kept"),
        ]
    )
    wrapped = RateLimitMiddleware(app, limiter=limiter(), policies=Policy(5, "1m"), key=lambda r: "k")
    with TestClient(wrapped) as client:
        r = client.get("/")
    assert r.status_code == 200 and r.content == b"raw"
    assert header_list(r, "X-RateLimit-Limit") == ["5"]
    assert header_list(r, "RateLimit") == ['"default";r=4;t=12']
    assert header_list(r, "Retry-After") == ["120"]  # the app's own, on an allowed response
    assert header_list(r, "X-Other") == ["kept"]


def test_asgi_app_without_headers_gets_ours() -> None:
    wrapped = RateLimitMiddleware(
        _raw_app([]), limiter=limiter(), policies=Policy(5, "1m"), key=lambda r: "k", name="api"
    )
    with TestClient(wrapped) as client:
        r = client.get("/")
    assert r.headers["RateLimit-Policy"] == '"api";q=5;w=60'


def test_asgi_denial_response() -> None:
    wrapped = RateLimitMiddleware(_raw_app([]), limiter=limiter(), policies=Policy(1, "1m"), key=lambda r: b"k")
    with TestClient(wrapped) as client:
        assert client.get("/").status_code == 200
        r = client.get("/")
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-length"] == str(len(r.content))
    assert r.json() == {"detail": "Rate limit exceeded", "retry_after": 60}
    assert header_list(r, "Retry-After") == ["60"]


def test_asgi_middleware_and_route_limit_on_one_request() -> None:
    """The route denies while the middleware allows: the 429's headers are
    the route's, each field once (the middleware replaces the handler's)."""
    lim = limiter()
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limiter=lim, policies=Policy(100, "1h"), key=lambda r: "org")
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)

    @app.get("/search", dependencies=[Depends(rate_limit(lim, Policy(1, "10s"), key=lambda r: "org", name="search"))])
    async def search() -> str:
        return "ok"

    with TestClient(app) as client:
        ok = client.get("/search")
        assert ok.status_code == 200
        assert ok.headers["RateLimit"] == '"search";r=0;t=10'  # fewer left than the global 99
        denied = client.get("/search")
    assert denied.status_code == 429
    assert header_list(denied, "RateLimit-Policy") == ['"search";q=1;w=10']
    assert header_list(denied, "Retry-After") == ["10"]
    assert denied.json() == {"detail": "Rate limit exceeded", "retry_after": 10}


def test_asgi_outcomes_are_in_the_scope() -> None:
    """tollgate.asgi.SCOPE_KEY: the scope entry an app can read."""
    from tollgate.asgi import SCOPE_KEY

    assert SCOPE_KEY == "tollgate.outcomes"
    app = FastAPI()
    app.add_middleware(RateLimitMiddleware, limiter=limiter(), policies=Policy(5, "1m"), key=lambda r: "k", name="g")

    @app.get("/")
    async def index(request: Request) -> Dict[str, Any]:
        outcomes = request.scope["tollgate.outcomes"]
        return {"n": len(outcomes), "name": outcomes[0].name, "remaining": outcomes[0].decision.remaining}

    with TestClient(app) as client:
        assert client.get("/").json() == {"n": 1, "name": "g", "remaining": 4}


def test_import_errors_name_the_missing_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "starlette.exceptions", None)
    monkeypatch.delitem(sys.modules, "tollgate.asgi")
    with pytest.raises(ImportError, match=exactly("tollgate.asgi needs Starlette: pip install starlette (or fastapi)")):
        importlib.import_module("tollgate.asgi")
    monkeypatch.setitem(sys.modules, "flask", None)
    monkeypatch.delitem(sys.modules, "tollgate.flask")
    with pytest.raises(ImportError, match=exactly("tollgate.flask needs Flask: pip install flask")):
        importlib.import_module("tollgate.flask")


def test_asgi_key_function_results() -> None:
    lim = limiter()
    for bad in (5, ["k"]):
        wrapped = RateLimitMiddleware(_raw_app([]), limiter=lim, policies=Policy(1, "1m"), key=lambda r, b=bad: b)
        with TestClient(wrapped) as client:
            with pytest.raises(TypeError, match=exactly("the key function returned %s; expected str, bytes or None" % type(bad).__name__)):
                client.get("/")
    # bytes and str name the same key
    both = RateLimitMiddleware(
        _raw_app([]), limiter=lim, policies=Policy(1, "1m"),
        key=lambda r: b"same" if r.url.path == "/b" else "same",
    )
    with TestClient(both) as client:
        assert client.get("/a").status_code == 200
        assert client.get("/b").status_code == 429


def test_asgi_argument_checks() -> None:
    p = Policy(1, "1s")
    with pytest.raises(TypeError, match=exactly("RateLimitMiddleware needs a tollgate.Limiter (limiter=...)")):
        RateLimitMiddleware(_raw_app([]), limiter=None, policies=p)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("key must be a key function (request -> str | bytes | None), not str")):
        RateLimitMiddleware(_raw_app([]), limiter=limiter(), policies=p, key="ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=exactly("cost must be >= 0 (got -1)")):
        RateLimitMiddleware(_raw_app([]), limiter=limiter(), policies=p, cost=-1)
    with pytest.raises(ValueError, match=exactly("RateLimitMiddleware needs policies= or plans= (with plan_of=)")):
        RateLimitMiddleware(_raw_app([]), limiter=limiter())
    with pytest.raises(TypeError, match=exactly("rate_limit needs a tollgate.Limiter")):
        rate_limit(None, p)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("scope must be a str, not bytes")):
        rate_limit(limiter(), p, scope=b"s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("key must be a key function (request -> str | bytes | None), not int")):
        rate_limit(limiter(), p, key=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("cost must be an int or a function request -> int, not str")):
        rate_limit(limiter(), p, cost="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=exactly("rate_limit needs at least one tollgate.Policy")):
        rate_limit(limiter())


def test_asgi_shared_scope_and_route_names() -> None:
    lim = limiter()
    app = FastAPI()
    shared = rate_limit(lim, Policy(2, "1m"), key=lambda r: "u", scope="reports")
    own = rate_limit(lim, Policy(2, "1m"), key=lambda r: "u", cost=lambda r: 2 if r.url.path == "/two" else 1)

    @app.get("/daily", dependencies=[Depends(shared)])
    async def daily() -> str:
        return "d"

    @app.get("/weekly", dependencies=[Depends(shared)])
    async def weekly() -> str:
        return "w"

    @app.get("/one", dependencies=[Depends(own)])
    async def one() -> str:
        return "1"

    @app.get("/two", dependencies=[Depends(own)])
    async def two() -> str:
        return "2"

    with TestClient(app) as client:
        assert client.get("/daily").status_code == 200
        assert client.get("/weekly").status_code == 200
        assert client.get("/daily").status_code == 429  # one limit for both routes
        assert client.get("/one").status_code == 200
        r = client.get("/two")  # cost 2, its own counter
        assert r.status_code == 200 and r.headers["RateLimit"] == '"default";r=0;t=60'
    assert lim.check("reports|u", Policy(2, "1m"), cost=0).remaining == 0
    assert lim.check("one|u", Policy(2, "1m"), cost=0).remaining == 1
    assert lim.check("two|u", Policy(2, "1m"), cost=0).remaining == 0


def test_asgi_dependency_outside_a_route() -> None:
    """Called on a request without a matched route, the dependency scopes the
    key by the path; a key function returning None skips the check."""
    lim = limiter()
    dep = rate_limit(lim, Policy(3, "1m"), key=lambda r: r.headers.get("x-user"))

    def request(user: Optional[str]) -> Request:
        headers = [(b"x-user", user.encode())] if user else []
        return Request({"type": "http", "method": "GET", "path": "/raw", "query_string": b"", "headers": headers})

    response = Response()
    decision = asyncio.run(dep(request("ann"), response))
    assert decision is not None and decision.remaining == 2
    assert response.headers["RateLimit"] == '"default";r=2;t=20'
    assert lim.check("/raw|ann", Policy(3, "1m"), cost=0).remaining == 2
    skipped = Response()
    assert asyncio.run(dep(request(None), skipped)) is None
    assert "RateLimit" not in skipped.headers


def test_exception_handler_without_headers() -> None:
    async def call() -> Response:
        req = Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []})
        return await rate_limit_exceeded_handler(req, ValueError("not ours"))

    r = asyncio.run(call())
    assert r.status_code == 429 and r.media_type == "application/json"
    assert r.body == b'{"detail":"Rate limit exceeded","retry_after":1}'


# ---- Flask --------------------------------------------------------------------------------


def test_flask_config_builds_the_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    app = flask.Flask(__name__)
    app.config["TOLLGATE_OPTIONS"] = {"max_keys": 1, "clock": lambda: T0}
    ext = RateLimiter(policies=Policy(1, "1h"), key=lambda r: r.path)
    ext.init_app(app)
    assert app.extensions["tollgate"] is ext
    assert ext.limiter is not None and ext.limiter.store == "memory"
    client = app.test_client()
    assert client.get("/a").status_code == 404  # checked, then no route
    assert client.get("/a").status_code == 429
    # max_keys=1 came through: a second key evicts the first.
    assert client.get("/b").status_code == 404
    assert client.get("/a").status_code == 404


@needs_redis
def test_flask_config_url_and_options(redis_server: Any, prefix: str) -> None:
    app = flask.Flask(__name__)
    app.config["TOLLGATE_URL"] = redis_server.url
    app.config["TOLLGATE_OPTIONS"] = {"key_prefix": prefix}
    ext = RateLimiter(app, policies=Policy(5, "1h"), key=lambda r: "org:1")
    assert ext.limiter is not None
    try:
        assert ext.limiter.store == "redis"
        app.add_url_rule("/", "index", lambda: "ok")
        assert app.test_client().get("/").status_code == 200
        with tollgate.Limiter(redis_server.url, key_prefix=prefix) as other:
            assert other.check("org:1", Policy(5, "1h"), cost=0).remaining == 4
    finally:
        ext.limiter.close()


def test_flask_without_a_limiter() -> None:
    ext = RateLimiter()
    app = flask.Flask(__name__)
    app.testing = True  # exceptions reach the test

    @app.get("/")
    @ext.limit(Policy(1, "1m"))
    def index() -> str:
        return "ok"

    with pytest.raises(RuntimeError, match=exactly("tollgate.flask.RateLimiter has no limiter: pass limiter= or call init_app(app)")):
        app.test_client().get("/")


def test_flask_decorator_without_init_app_sets_headers() -> None:
    lim = limiter()
    ext = RateLimiter(limiter=lim)  # never init_app: no after_request hook
    app = flask.Flask(__name__)

    @app.get("/")
    @ext.limit(Policy(2, "1m"), key=lambda r: "k", name="solo")
    def index() -> Any:
        return "ok", 200, {"X-RateLimit-Limit": "999", "RateLimit": "bogus"}

    client = app.test_client()
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers.getlist("X-RateLimit-Limit") == ["2"]
    assert r.headers.getlist("RateLimit") == ['"solo";r=1;t=30']
    client.get("/")
    denied = client.get("/")
    assert denied.status_code == 429 and denied.mimetype == "application/json"
    assert denied.get_json() == {"detail": "Rate limit exceeded", "retry_after": 30}


def test_flask_global_limit_edges() -> None:
    lim = limiter()
    app = flask.Flask(__name__)
    app.testing = True
    keys: Dict[str, Any] = {"/health": None, "/bad": 5}
    ext = RateLimiter(
        app,
        limiter=lim,
        policies=Policy(3, "1m"),
        plans={"GOLD": Policy(10, "1m")},
        plan_of=lambda r: r.headers.get("X-Plan"),
        key=lambda r: keys.get(r.path, "user"),
        cost=lambda r: int(r.headers.get("X-Cost", "1")),
    )

    @app.route("/<path:p>")
    def any_path(p: str) -> Any:
        return "ok", 200, {"X-RateLimit-Remaining": "999"}

    client = app.test_client()
    h = client.get("/health")
    assert h.status_code == 200 and "RateLimit" not in h.headers  # key None: unlimited
    with pytest.raises(TypeError, match=exactly("the key function returned int; expected str, bytes or None")):
        client.get("/bad")
    r = client.get("/x")
    assert r.headers.getlist("X-RateLimit-Remaining") == ["2"]  # the app's value replaced
    assert r.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    gold = client.get("/x", headers={"X-Plan": "GOLD"})
    assert gold.headers["RateLimit-Policy"] == '"GOLD";q=10;w=60'
    # A plan's policy is the same identity as the default's (position 0): the
    # key keeps its usage across plans. GCRA keeps the time of debt: 20 s
    # of 3/m plus 6 s of 10/m leave 34 s, 5 units of 10/m and 1 of 3/m.
    assert gold.headers["X-RateLimit-Remaining"] == "5"
    assert client.get("/x", headers={"X-Cost": "2"}).status_code == 429
    assert client.get("/x").status_code == 200
    denied = client.get("/x")
    assert denied.status_code == 429 and denied.mimetype == "application/json"
    assert denied.headers["X-RateLimit-Remaining"] == "0"
    assert ext.limiter is lim


def test_flask_global_and_route_limit_on_one_request() -> None:
    lim = limiter()
    app = flask.Flask(__name__)
    ext = RateLimiter(app, limiter=lim, policies=Policy(100, "1h"), key=lambda r: "org")

    @app.get("/search")
    @ext.limit(Policy(1, "10s"), name="search")
    def search() -> str:
        return "ok"

    @app.get("/a")
    @ext.limit(Policy(5, "1m"), key=lambda r: "u", scope="shared")
    def a() -> str:
        return "a"

    @app.get("/b")
    @ext.limit(Policy(5, "1m"), key=lambda r: "u", scope="shared")
    def b() -> str:
        return "b"

    client = app.test_client()
    ok = client.get("/search")
    assert ok.headers["RateLimit"] == '"search";r=0;t=10'
    denied = client.get("/search")
    assert denied.status_code == 429
    assert denied.headers.getlist("RateLimit-Policy") == ['"search";q=1;w=10']
    assert denied.headers.getlist("Retry-After") == ["10"]
    client.get("/a")
    client.get("/b")
    assert lim.check("shared|u", Policy(5, "1m"), cost=0).remaining == 3
    assert lim.check("search|org", Policy(1, "10s"), cost=0).remaining == 0


def test_flask_async_view_is_keyed_by_its_own_name() -> None:
    pytest.importorskip("asgiref")  # Flask runs async views through asgiref
    lim = limiter()
    app = flask.Flask(__name__)
    ext = RateLimiter(app, limiter=lim)

    @app.get("/report")
    @ext.limit(Policy(3, "1m"), key=lambda r: "u")
    async def report() -> str:
        return "r"

    assert app.view_functions["report"].__name__ == "report"
    r = app.test_client().get("/report")
    assert r.status_code == 200 and r.headers["RateLimit"] == '"default";r=2;t=20'
    assert lim.check("report|u", Policy(3, "1m"), cost=0).remaining == 2


def test_flask_argument_checks() -> None:
    ext = RateLimiter(limiter=limiter())
    p = Policy(1, "1s")
    with pytest.raises(ValueError, match=exactly("limit() needs at least one tollgate.Policy")):
        ext.limit()
    with pytest.raises(TypeError, match=exactly("key must be a key function (request -> str | bytes | None), not str")):
        ext.limit(p, key="ip")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("cost must be an int or a function request -> int, not float")):
        ext.limit(p, cost=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("scope must be a str, not int")):
        ext.limit(p, scope=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=exactly("key must be a key function (request -> str | bytes | None), not NoneType")):
        RateLimiter(key=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=exactly("cost must be >= 0 (got -2)")):
        RateLimiter(cost=-2)
