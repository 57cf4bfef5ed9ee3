"""Rate limiting for Starlette and FastAPI (any ASGI app).

Two pieces, usable together or alone:

- :class:`RateLimitMiddleware`, a pure ASGI middleware: every HTTP request
  is checked against the policies of its plan before the app sees it.
- :func:`rate_limit`, a per-route FastAPI dependency.

::

    import tollgate
    from fastapi import Depends, FastAPI
    from tollgate.asgi import RateLimitMiddleware, rate_limit
    from tollgate.plans import DEFAULT_PLANS, organization_key

    limiter = tollgate.Limiter("redis://127.0.0.1:6379/0")
    app = FastAPI()
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        key=organization_key("X-Org-Id"),
        plans=DEFAULT_PLANS,
        plan_of=lambda request: PLANS_BY_ORG.get(request.headers.get("X-Org-Id"), "FREE"),
    )

    @app.post("/search", dependencies=[Depends(rate_limit(limiter, tollgate.Policy(10, "1m")))])
    async def search(): ...

Checks use ``await limiter.check_async(...)``: the event loop is never
blocked and no thread is used per call. Every response carries
``RateLimit-Policy``, ``RateLimit`` and ``X-RateLimit-Limit/Remaining/Reset``;
a denied request gets ``429`` with ``Retry-After`` (whole seconds) and the
body ``{"detail":"Rate limit exceeded","retry_after":<seconds>}``. The header
values come from the C library (``tollgate.rate_limit_headers``), so a Node
service emits the same bytes for the same decision.

When a request passes both the middleware and a per-route limit, the
response's headers describe the limit that binds first: a denial if any,
else the one with the fewest remaining (see ``tollgate.plans.binding``).
"""

import inspect
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Sequence, Tuple, Union

try:
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("tollgate.asgi needs Starlette: pip install starlette (or fastapi)") from exc

from tollgate import Decision, Error, Limiter, Policy

from .plans import (
    HEADER_NAMES,
    KeyFunc,
    Limits,
    Outcome,
    Pending,
    PolicySpec,
    binding,
    check_cost,
    check_count,
    check_key,
    check_key_func,
    client_address,
    denied_body,
    failed_response,
    headers_for,
    resolve_cost,
    scoped_key,
)

__all__ = ["RateLimitMiddleware", "RateLimitExceeded", "rate_limit", "rate_limit_exceeded_handler"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope entry that collects a request's outcomes (the middleware's and
#: the per-route dependencies'): a list shared by every layer.
SCOPE_KEY = "tollgate.outcomes"

_OUR_HEADERS = frozenset(n.lower().encode("latin-1") for n in HEADER_NAMES)
_RETRY_AFTER = b"retry-after"


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _raw_headers(headers: Dict[str, str]) -> List[Tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _with_headers(raw: Sequence[Tuple[bytes, bytes]], headers: Dict[str, str]) -> List[Tuple[bytes, bytes]]:
    """`raw` with our header fields replaced by `headers` (Retry-After is
    replaced only when `headers` has one: an app's own Retry-After, e.g. on
    a 503, is kept)."""
    drop = set(_OUR_HEADERS)
    if "Retry-After" not in headers:
        drop.discard(_RETRY_AFTER)
    kept = [(k, v) for k, v in raw if k.lower() not in drop]
    return kept + _raw_headers(headers)


async def _send_denied(send: Send, headers: Dict[str, str]) -> None:
    body = denied_body(headers)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 429, "headers": raw + _raw_headers(headers)})
    await send({"type": "http.response.body", "body": body})


async def _give_back(limiter: Limiter, pending: Pending) -> None:
    """Refunds a charge whose response does not count. The response has
    gone: a refund that fails (nothing to give back, the store away) is
    dropped."""
    try:
        await limiter.refund_async(pending.key, *pending.policies, amount=pending.cost)
    except Error:
        pass


class RateLimitMiddleware:
    """ASGI middleware that rate-limits every HTTP request.

    - ``limiter``: a :class:`tollgate.Limiter` (memory or Redis); the caller
      owns it (and closes it).
    - ``policies``: a Policy or a sequence of policies, for every request, or
      for those whose ``plan_of`` returns ``None``.
    - ``key``: the key function (request -> str, bytes or None; may be
      ``async``); default :func:`tollgate.plans.client_address`. ``None``
      leaves the request unlimited (and without rate-limit headers).
    - ``plans`` and ``plan_of``: a plan-to-policy map and a function
      (request -> plan name or None; may be ``async``) choosing a plan per
      request; ``plan_of`` alone uses ``tollgate.plans.DEFAULT_PLANS``.
    - ``name``: the policy name in the ``RateLimit*`` headers; default the
      plan's name, or ``"default"``.
    - ``cost``: units per request, an int or a function request -> int.
    - ``count``: which requests keep their charge: ``"all"`` (default),
      ``"failed"`` (only those answered with a failed status: e.g. count
      only failed logins) or ``"successful"``; ``failed`` (status -> bool,
      default 4xx and 5xx) says which statuses failed. The request is
      checked and charged before the app runs, so concurrent requests stay
      limited; a response that does not count gets its units back with a
      refund (``limiter.refund_async``). An app that raises counts as 500.

    The key and plan functions receive a ``starlette.requests.Request``
    built on the scope (headers, client, URL; not the body). WebSocket and
    lifespan traffic pass through unchecked. A check that raises (a
    limiter with ``failure_mode="error"`` while Redis is away) propagates:
    choose the behaviour with the limiter's ``failure_mode``.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        policies: Optional[PolicySpec] = None,
        key: KeyFunc = client_address,
        plans: Optional[Any] = None,
        plan_of: Optional[Callable[[Request], Any]] = None,
        name: Optional[str] = None,
        cost: Union[int, Callable[[Request], int]] = 1,
        count: str = "all",
        failed: Callable[[int], bool] = failed_response,
    ) -> None:
        if limiter is None:
            raise TypeError("RateLimitMiddleware needs a tollgate.Limiter (limiter=...)")
        check_key_func(key)
        check_cost(cost)
        check_count(count, failed)
        self.count = count
        self.failed = failed
        self.app = app
        self.limiter = limiter
        self.key = key
        self.cost = cost
        self.limits = Limits(policies, plans, plan_of, name)
        if self.limits.empty:
            raise ValueError("RateLimitMiddleware needs policies= or plans= (with plan_of=)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = await _maybe_await(self.key(request))
        if key is None:
            await self.app(scope, receive, send)
            return
        key = check_key(key)
        plan = None
        if self.limits.plan_of is not None:
            plan = await _maybe_await(self.limits.plan_of(request))
        policies, name = self.limits.for_plan(plan)
        cost = resolve_cost(self.cost, request)
        decision = await self.limiter.check_async(key, *policies, cost=cost)
        # Per-route dependencies (and other tollgate middleware) add their
        # outcomes to this list; the response's headers describe the one
        # that binds.
        outcomes: List[Outcome] = scope.setdefault(SCOPE_KEY, [])
        outcomes.append(Outcome.of(decision, policies, name))
        if not decision.allowed:
            await _send_denied(send, headers_for(binding(outcomes)))
            return

        status = 500  # an app that raises before it answers

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = headers_for(binding(outcomes))
                message = dict(message)
                message["headers"] = _with_headers(message.get("headers") or [], headers)
            await send(message)

        if self.count == "all":
            await self.app(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            pending = Pending(key, policies, cost, self.count, self.failed)
            if pending.gives_back(status):
                await _give_back(self.limiter, pending)


class RateLimitExceeded(HTTPException):
    """Raised by a :func:`rate_limit` dependency when its limit denies.

    A 429 with the rate-limit headers and ``Retry-After``; ``decision`` is
    the denying :class:`tollgate.Decision`. FastAPI's default handler answers
    ``{"detail": "Rate limit exceeded"}``; install
    :func:`rate_limit_exceeded_handler` to get the middleware's body (which
    adds ``retry_after``).
    """

    def __init__(self, decision: Decision, headers: Dict[str, str]) -> None:
        super().__init__(status_code=429, detail="Rate limit exceeded", headers=headers)
        self.decision = decision


async def rate_limit_exceeded_handler(request: Request, exc: Exception) -> Response:
    """An exception handler for :class:`RateLimitExceeded`:
    ``app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)``."""
    headers = dict(getattr(exc, "headers", None) or {})
    return Response(denied_body(headers), status_code=429, headers=headers, media_type="application/json")


def _route_scope(request: Request) -> str:
    route = request.scope.get("route")
    name = getattr(route, "name", None)
    if name:
        return str(name)
    return request.url.path


def rate_limit(
    limiter: Limiter,
    *policies: Policy,
    key: KeyFunc = client_address,
    cost: Union[int, Callable[[Request], int]] = 1,
    name: Optional[str] = None,
    scope: Optional[str] = None,
) -> Callable[[Request, Response], Awaitable[Optional[Decision]]]:
    """A FastAPI dependency that limits one route (or a router)::

        @app.get("/search", dependencies=[Depends(rate_limit(limiter, Policy(10, "1m")))])

    or, to read the decision, ``decision = Depends(rate_limit(...))``.

    Each route has its own counters: the key is ``"<scope>|<key>"`` where
    ``scope`` defaults to the route's name (the endpoint function's name,
    as Flask's endpoint is), so ``/search`` and ``/export`` limited with the
    same policy do not share a limit; give the same ``scope`` to share one.
    The key function (default: the client address; may be ``async``)
    returning ``None`` skips the check (the dependency then returns
    ``None``).

    Allowed: the rate-limit headers are set on the response (when the
    endpoint returns a ``Response`` object itself, FastAPI does not copy
    them; the middleware, if installed, still sets the binding limit's).
    Denied: raises :class:`RateLimitExceeded` (a 429 with the headers and
    ``Retry-After``).
    """
    if limiter is None:
        raise TypeError("rate_limit needs a tollgate.Limiter")
    check_key_func(key)
    check_cost(cost)
    if scope is not None and not isinstance(scope, str):
        raise TypeError("scope must be a str, not %s" % type(scope).__name__)
    limits = Limits(policies if policies else None, None, None, name)
    if limits.empty:
        raise ValueError("rate_limit needs at least one tollgate.Policy")
    route_policies, route_name = limits.for_plan(None)

    async def tollgate_rate_limit(request: Request, response: Response) -> Optional[Decision]:
        k = await _maybe_await(key(request))
        if k is None:
            return None
        k = scoped_key(scope if scope is not None else _route_scope(request), check_key(k))
        decision = await limiter.check_async(k, *route_policies, cost=resolve_cost(cost, request))
        outcome = Outcome.of(decision, route_policies, route_name)
        outcomes = request.scope.get(SCOPE_KEY)
        if outcomes is not None:
            outcomes.append(outcome)
        headers = headers_for(outcome)
        if not decision.allowed:
            raise RateLimitExceeded(decision, headers)
        for field, value in headers.items():
            response.headers[field] = value
        return decision

    return tollgate_rate_limit
