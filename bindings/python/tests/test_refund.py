"""Refunds (a negative cost, or Limiter.refund) and the web integrations'
count modes built on them: count only failed responses (failed logins), or
only successful ones. Memory store, and a real redis-server (conftest.py)."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

import tollgate
from tollgate import InvalidArgument, Limiter, NothingToRefund, Policy

from conftest import needs_redis


def test_refund_gives_back_what_was_used_and_no_more() -> None:
    with Limiter() as lim:
        p = Policy(5, "1m", algorithm="fixed_window")
        assert lim.check("k", p, cost=3).remaining == 2
        d = lim.refund("k", p, amount=2)
        assert d.allowed and d.remaining == 4 and d.retry_after == 0.0
        d = lim.refund("k", p, amount=100)
        assert d.remaining == 5 and d.reset_after == 0.0
        with pytest.raises(NothingToRefund) as info:
            lim.refund("k", p)
        assert info.value.code == "RL_E_NOT_FOUND" and "nothing to give back" in str(info.value)
        with pytest.raises(NothingToRefund):
            lim.refund("never-charged", p)
        # The same thing as a negative cost.
        lim.check("k", p, cost=2)
        assert lim.check("k", p, cost=-1).remaining == 4


def test_refund_amount_is_checked() -> None:
    with Limiter() as lim:
        p = Policy(5, "1m")
        lim.check("k", p)
        for bad in (0, -3):
            with pytest.raises(InvalidArgument, match="amount: must be >= 1"):
                lim.refund("k", p, amount=bad)
        for wrong in (1.5, "1", True):
            with pytest.raises(TypeError, match="amount must be an int"):
                lim.refund("k", p, amount=wrong)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument) as info:
            lim.refund("k", p, amount=2**53)
        assert info.value.code == "RL_E_INVALID_ARG"
        assert lim.check("k", p, cost=0).remaining == 4  # nothing was given back


def test_refund_async_on_memory() -> None:
    async def run() -> None:
        with Limiter() as lim:
            p = Policy(3, "1h")
            await lim.check_async("k", p, cost=3)
            d = await lim.refund_async("k", p, amount=2)
            assert d.remaining == 2
            with pytest.raises(NothingToRefund):
                await lim.refund_async("other", p)

    asyncio.run(run())


@needs_redis
def test_refund_on_redis_sync_and_async(redis_server: Any, prefix: str) -> None:
    with Limiter(redis_server.url, key_prefix=prefix, failure_mode="error") as lim:
        a, b = Policy(2, "1h"), Policy(10, "1d", algorithm="sliding_window")
        assert lim.check("k", a, b, cost=2).remaining == 0
        assert not lim.check("k", a, b)
        d = lim.refund("k", a, b)
        assert d.allowed and d.source == "store" and d.remaining == 1
        assert lim.check("k", a, b).allowed

        async def run() -> None:
            d = await lim.refund_async("k", a, b, amount=5)
            assert d.remaining == 2
            with pytest.raises(NothingToRefund):
                await lim.refund_async("k", a, b)

        asyncio.run(run())


# ---- count modes -------------------------------------------------------------------

pytest.importorskip("httpx")
pytest.importorskip("starlette")
flask = pytest.importorskip("flask")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from tollgate.asgi import RateLimitMiddleware  # noqa: E402
from tollgate.flask import RateLimiter  # noqa: E402


def _login(request: Request) -> JSONResponse:
    if request.query_params.get("status") == "boom":
        raise RuntimeError("the view failed")
    status = int(request.query_params.get("status", "200"))
    return JSONResponse({"status": status}, status_code=status)


def _asgi_client(limiter: Limiter, **options: Any) -> TestClient:
    app = Starlette(routes=[Route("/login", _login)])
    app.add_middleware(
        RateLimitMiddleware, limiter=limiter, policies=Policy(3, "1h"), key=lambda r: "client", **options
    )
    return TestClient(app, raise_server_exceptions=False)


def _statuses(get: Any, codes: list) -> list:
    return [get(code) for code in codes]


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_asgi_count_failed_charges_only_failed_responses(store: str, request: Any) -> None:
    url = None
    if store == "redis":
        url = request.getfixturevalue("redis_server").url
        prefix = request.getfixturevalue("prefix")
    with (Limiter(url, key_prefix=prefix) if url else Limiter()) as lim:
        client = _asgi_client(lim, count="failed")

        def get(code: Any) -> int:
            return client.get("/login", params={"status": code}).status_code

        # Good logins (and a 399) cost nothing; three failures, from 400
        # up, use the limit up.
        assert _statuses(get, [200] * 5 + [399]) == [200] * 5 + [399]
        assert _statuses(get, [400, 401, 401]) == [400, 401, 401]
        assert get(200) == 429
        assert lim.check("client", Policy(3, "1h"), cost=0).remaining == 0


def test_asgi_count_successful_and_a_custom_predicate() -> None:
    with Limiter() as lim:
        client = _asgi_client(lim, count="successful")

        def get(code: Any) -> int:
            return client.get("/login", params={"status": code}).status_code

        # Failures (and an app that raises: a 500) cost nothing.
        assert _statuses(get, [404, 500, "boom", 401]) == [404, 500, 500, 401]
        assert _statuses(get, [200, 201, 200]) == [200, 201, 200]
        assert get(200) == 429
    with Limiter() as lim:
        # Only 401 counts as failed: a 404 is given back under "successful".
        client = _asgi_client(lim, count="successful", failed=lambda status: status == 401)

        def get2(code: Any) -> int:
            return client.get("/login", params={"status": code}).status_code

        assert _statuses(get2, [401] * 4) == [401] * 4
        assert _statuses(get2, [404, 404, 404]) == [404, 404, 404]
        assert get2(404) == 429


def test_count_options_are_checked() -> None:
    with Limiter() as lim:
        with pytest.raises(ValueError, match="count must be 'all', 'failed' or 'successful', not 'some'"):
            RateLimitMiddleware(lambda *a: None, limiter=lim, policies=Policy(1, "1s"), count="some")
        with pytest.raises(TypeError, match="failed must be a function"):
            RateLimitMiddleware(lambda *a: None, limiter=lim, policies=Policy(1, "1s"), count="failed", failed=3)
        with pytest.raises(ValueError, match="count must be"):
            RateLimiter(limiter=lim, policies=Policy(1, "1s"), count="")
        ext = RateLimiter(limiter=lim)
        with pytest.raises(ValueError, match="count must be"):
            ext.limit(Policy(1, "1s"), count="failures")


def _flask_app(limiter: Limiter, *, global_count: str = "all", route_count: Any = None) -> Any:
    app = flask.Flask(__name__)
    limits = RateLimiter(
        app,
        limiter=limiter,
        policies=Policy(3, "1h") if global_count != "off" else None,
        key=lambda r: "client",
        count=global_count if global_count != "off" else "all",
    )

    @app.get("/login")
    def login() -> Any:
        status = flask.request.args.get("status", "200")
        if status == "abort":
            flask.abort(401)
        return {"status": int(status)}, int(status)

    @app.get("/route")
    @limits.limit(Policy(2, "1h"), count=route_count, scope="route")
    def route() -> Any:
        status = flask.request.args.get("status", "200")
        if status == "boom":
            raise RuntimeError("the view failed")
        return {"status": int(status)}, int(status)

    return app


def test_flask_global_count_failed() -> None:
    with Limiter() as lim:
        client = _flask_app(lim, global_count="failed").test_client()

        def get(code: str) -> int:
            return client.get("/login?status=" + code).status_code

        assert [get("200") for _ in range(5)] == [200] * 5
        assert [get("403"), get("abort"), get("401")] == [403, 401, 401]
        assert get("200") == 429


def test_flask_route_count_successful_and_a_view_that_raises() -> None:
    with Limiter() as lim:
        app = _flask_app(lim, global_count="off", route_count="successful")
        app.config["PROPAGATE_EXCEPTIONS"] = False
        client = app.test_client()

        def get(code: str) -> int:
            return client.get("/route?status=" + code).status_code

        # Failures (a raising view is a 500) are given back on the route.
        assert [get("500"), get("boom"), get("404")] == [500, 500, 404]
        assert [get("200"), get("200")] == [200, 200]
        assert get("200") == 429


def test_flask_route_defaults_to_the_extension_count() -> None:
    with Limiter() as lim:
        app = flask.Flask(__name__)
        limits = RateLimiter(app, limiter=lim, key=lambda r: "c", count="failed")

        @app.get("/r")
        @limits.limit(Policy(1, "1h"))
        def r() -> Any:
            return {"ok": True}

        client = app.test_client()
        assert [client.get("/r").status_code for _ in range(3)] == [200, 200, 200]
