"""Shadow mode through the web integrations (tollgate.asgi, tollgate.flask):
a shadowed denial (a shadow policy's, or any denial of a limiter with
shadow=True) lets the request through: the view runs and answers, no 429
and no Retry-After; the RateLimit and X-RateLimit fields are the library's
for the decision (rl_headers_format), so they describe the would-be denial
(remaining 0). Memory store with a pinned clock (exact header values), and
the session's redis-server."""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
flask = pytest.importorskip("flask")

from fastapi import Depends, FastAPI  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import tollgate  # noqa: E402
from tollgate import Decision, Limiter, Policy  # noqa: E402
from tollgate.asgi import RateLimitMiddleware, rate_limit  # noqa: E402
from tollgate.flask import RateLimiter  # noqa: E402
from tollgate.plans import HEADER_NAMES  # noqa: E402

from conftest import Clock, Store  # noqa: E402


def key(request: Any) -> str:
    return "org"


def ours(headers: Any) -> Dict[str, str]:
    return {name: headers[name] for name in HEADER_NAMES if name in headers}


#: What a 1/m policy named "trial" shows after its one allowed request, on
#: the pinned clock: the would-be denial, without Retry-After.
SHADOWED = {
    "RateLimit-Policy": '"trial";q=1;w=60',
    "RateLimit": '"trial";r=0;t=60',
    "X-RateLimit-Limit": "1",
    "X-RateLimit-Remaining": "0",
    "X-RateLimit-Reset": "60",
}


class App:
    """An app of one framework: the global limit `glob` (name "trial") on
    every request, "/route" also under `route` (name "trial") when given;
    ``seen`` collects the decisions the FastAPI dependency returned."""

    def __init__(self, framework: str, limiter: Limiter, glob: Optional[Policy], route: Optional[Policy] = None):
        self.framework = framework
        self.seen: List[Optional[Decision]] = []
        if framework == "flask":
            app = flask.Flask(__name__)
            ext = RateLimiter(app, limiter=limiter, policies=glob, key=key, name="trial")

            @app.get("/")
            def index() -> Any:
                return {"ran": True}

            if route is not None:

                @app.get("/route")
                @ext.limit(route, name="trial", key=key)
                def routed() -> Any:
                    return {"ran": True}

            self.client: Any = app.test_client()
            return
        fastapi_app = FastAPI()
        if glob is not None:
            fastapi_app.add_middleware(RateLimitMiddleware, limiter=limiter, policies=glob, key=key, name="trial")

        @fastapi_app.get("/")
        async def index() -> Any:
            return {"ran": True}

        if route is not None:
            dep = rate_limit(limiter, route, key=key, name="trial")

            @fastapi_app.get("/route")
            async def routed(decision: Optional[Decision] = Depends(dep)) -> Any:
                self.seen.append(decision)
                return {"ran": True}

        self.client = TestClient(fastapi_app)

    def get(self, path: str = "/") -> Any:
        r = self.client.get(path)
        body = r.get_json() if self.framework == "flask" else r.json()
        return r.status_code, ours(r.headers), body

    def close(self) -> None:
        if self.framework != "flask":
            self.client.close()


@pytest.fixture
def store(store: Store) -> Store:
    """conftest's `store`: its memory limiters on the pinned clock (20 s
    into a minute), Redis ones under the test's own prefix."""
    store.pinned = True
    return store


def assert_shadowed(status: int, headers: Dict[str, str], body: Any, exact: bool) -> None:
    assert status == 200 and body == {"ran": True}
    assert "Retry-After" not in headers
    assert headers["X-RateLimit-Remaining"] == "0" and headers["X-RateLimit-Limit"] == "1"
    if exact:
        assert headers == SHADOWED
    else:
        assert headers["RateLimit-Policy"] == SHADOWED["RateLimit-Policy"]


def test_a_shadow_global_limit_lets_the_request_through(framework: str, store: Store) -> None:
    with store.limiter() as lim:
        app = App(framework, lim, Policy(1, "1m", shadow=True))
        try:
            status, headers, _ = app.get()
            assert status == 200 and headers["X-RateLimit-Remaining"] == "0" and "Retry-After" not in headers
            for _ in range(3):
                assert_shadowed(*app.get(), exact=store.kind == "memory")
            assert lim.health()["shadow_denied"] == 3
        finally:
            app.close()
        # The same limit enforced: the usage the shadow limit kept denies.
        app = App(framework, lim, Policy(1, "1m"))
        try:
            status, headers, body = app.get()
            assert status == 429 and body["detail"] == "Rate limit exceeded"
            assert 50 <= int(headers["Retry-After"]) <= 60
        finally:
            app.close()


def test_a_shadow_route_limit_lets_the_request_through(framework: str, store: Store) -> None:
    """The route's limit alone (the FastAPI dependency returns the shadow
    decision) and under an enforced global limit (one check_keys)."""
    with store.limiter() as lim:
        for glob in (None, Policy(100, "1h", name="global")):
            app = App(framework, lim, glob, route=Policy(1, "1m", shadow=True, name="r%d" % (glob is None)))
            try:
                assert app.get("/route")[0] == 200
                for _ in range(2):
                    status, headers, body = app.get("/route")
                    assert status == 200 and body == {"ran": True} and "Retry-After" not in headers
                    assert headers["RateLimit"].startswith('"trial";r=0;t=')
                if framework == "fastapi":
                    assert [d.shadow for d in app.seen if d is not None] == [False, True, True]
                    app.seen.clear()
            finally:
                app.close()
        assert lim.health()["shadow_denied"] == 4


def test_a_shadow_limiter_passes_denials_and_blocks(framework: str, store: Store) -> None:
    with store.limiter(shadow=True) as lim:
        app = App(framework, lim, Policy(1, "1m"))
        try:
            assert app.get()[0] == 200
            assert_shadowed(*app.get(), exact=store.kind == "memory")
            lim.block("org", "1h")
            status, headers, body = app.get()
            assert status == 200 and body == {"ran": True} and "Retry-After" not in headers
            assert headers["X-RateLimit-Remaining"] == "0"
            assert lim.health()["shadow_denied"] == 2
        finally:
            app.close()


def test_flask_config_turns_a_shadow_limiter_on() -> None:
    app = flask.Flask(__name__)
    app.config["TOLLGATE_OPTIONS"] = {"shadow": True}
    ext = RateLimiter(policies=Policy(1, "1h"), key=key)
    ext.init_app(app)

    @app.get("/")
    def index() -> Any:
        return "ok"

    assert ext.limiter is not None and ext.limiter.shadow is True
    client = app.test_client()
    replies = [client.get("/") for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert all("Retry-After" not in r.headers for r in replies)
    assert replies[-1].headers["X-RateLimit-Remaining"] == "0"
    assert ext.limiter.health()["shadow_denied"] == 2
    ext.limiter.close()


def test_headers_are_the_librarys_for_the_decision() -> None:
    """What the helpers send is tollgate.rate_limit_headers of the decision
    (rl_headers_format): for a shadow decision, no Retry-After."""
    with Limiter(clock=Clock()) as lim:
        p = Policy(1, "1m", shadow=True)
        lim.check("org", p)
        d = lim.check("org", p)
        assert d.shadow and d.retry_after_ms == 60_000
        assert tollgate.rate_limit_headers(d, p, name="trial") == SHADOWED
