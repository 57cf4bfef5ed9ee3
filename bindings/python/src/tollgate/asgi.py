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
service emits the same bytes for the same decision. A decision allowed by
shadow mode (``decision.shadow``: a shadow policy, or a
``Limiter(shadow=True)``) is allowed: the request goes through, without
``Retry-After``, its other headers describing the would-be denial
(docs/python.md, "Shadow mode").

``allow=`` and ``deny=`` lists (client addresses and CIDR ranges, exact
keys; docs/python.md, "Exemptions") are evaluated before any check: a
request on the deny list gets ``403`` with ``{"detail":"Forbidden"}`` and
no rate-limit headers (no wait helps), one on the allow list is not
limited. ``trusted_proxies=`` (a hop count, or the proxies' CIDR ranges)
and ``proxy_header=`` say how the client address is found.

When a request is subject to both the middleware and a per-route
:func:`rate_limit` dependency (on the same limiter), the middleware checks
both at once, before the app runs: it finds the route the router will pick
(FastAPI's routes, included routers too), and makes one
``Limiter.check_keys_async`` over its (key, policies) and the route's, all
or nothing. A request the route denies costs nothing under the global
limit, and one the global limit denies costs nothing on the route; the
dependency then reports the middleware's decision instead of checking
again. A route's denial is still answered through the app's exception
handler for :class:`RateLimitExceeded` (the body is the one the dependency
would have produced). When one call cannot take both (keys in several Redis
Cluster slots, different costs), the route's limit is checked alone first,
then the global one, whose denial refunds the route's charge
(``tollgate.plans.joint_check_async``).

The response's headers describe the limit that binds first: a denial if
any, else the one with the fewest remaining (see
``tollgate.plans.binding``).
"""

import functools
import inspect
import json
from typing import Any, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Sequence, Set, Tuple, Union

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Match
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("tollgate.asgi needs Starlette: pip install starlette (or fastapi)") from exc

try:
    from starlette._utils import is_async_callable as _is_async_callable
except ImportError:  # pragma: no cover - a Starlette without it

    def _is_async_callable(obj: Any) -> bool:
        while isinstance(obj, functools.partial):
            obj = obj.func
        return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(getattr(obj, "__call__", None))


try:  # FastAPI >= 0.165: included routers are kept apart, with their dependencies
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI (routes flattened) or Starlette alone
    _iter_route_contexts = None

from tollgate import Decision, Error, Limiter, Policy

from .plans import (
    FORBIDDEN_BODY,
    HEADER_NAMES,
    Charge,
    Exemptions,
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
    denied_by_list,
    failed_response,
    headers_for,
    joint_check_async,
    resolve_cost,
    scoped_key,
    web_options,
)

__all__ = ["RateLimitMiddleware", "RateLimitExceeded", "Forbidden", "rate_limit", "rate_limit_exceeded_handler"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope entry that collects a request's outcomes (the middleware's and
#: the per-route dependencies'): a list shared by every layer.
SCOPE_KEY = "tollgate.outcomes"

#: The scope entry of the route limits the middleware checked together with
#: its own: route limit -> the Outcome to report (None: its key function
#: left the request unlimited). The dependency then does not check.
_SCOPE_ROUTES = "tollgate.routes"

#: The scope entry a middleware sets on a request its allow list exempts:
#: the rate_limit() dependencies then do not check it either.
SCOPE_EXEMPT = "tollgate.exempt"

#: The ids of the limiters that some rate_limit() dependency uses: only
#: their middlewares look for the route's limits.
_LIMITERS_WITH_ROUTES: Set[int] = set()

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


async def _send_forbidden(send: Send) -> None:
    """The answer to a request on a deny list: 403, no rate-limit headers
    and no Retry-After (waiting does not help)."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(FORBIDDEN_BODY)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": raw})
    await send({"type": "http.response.body", "body": FORBIDDEN_BODY})


async def _give_back(limiter: Limiter, pending: Pending) -> None:
    """Refunds a charge whose response does not count. The response has
    gone: a refund that fails (nothing to give back, the store away) is
    dropped."""
    try:
        await limiter.refund_async(pending.key, *pending.policies, amount=pending.cost)
    except Error:
        pass


class _RouteLimit:
    """One :func:`rate_limit` dependency's limit."""

    __slots__ = ("limiter", "policies", "name", "key", "cost", "scope", "exemptions", "call")

    def __init__(
        self,
        limiter: Limiter,
        policies: Tuple[Policy, ...],
        name: str,
        key: KeyFunc,
        cost: Any,
        scope: Optional[str],
        exemptions: Optional[Exemptions] = None,
    ) -> None:
        self.limiter = limiter
        self.policies = policies
        self.name = name
        self.key = key
        self.cost = cost
        self.scope = scope
        self.exemptions = exemptions
        self.call: Any = None  # the dependency function

    async def charge(self, request: Request) -> Optional[Charge]:
        """The request's (key, policies) under this limit, or None when the
        key function leaves it unlimited, or a list of this dependency
        (or the middleware's) exempts it. Raises :class:`Forbidden` for a
        request on this dependency's deny list."""
        exemptions = self.exemptions
        ip = None
        # A shadow limiter lets a deny-listed request go on, as it answers
        # a key on its own deny list.
        enforce = exemptions is not None and not self.limiter.shadow
        if exemptions is not None:
            ip = exemptions.address(request)
            if enforce and exemptions.denies(ip):
                raise Forbidden()
        k = await _maybe_await(self.key(request))
        if k is not None:
            k = check_key(k)
        if exemptions is not None:
            if enforce and exemptions.denies(None, k):
                raise Forbidden()
            if exemptions.allows(ip, k):
                return None
        if k is None or request.scope.get(SCOPE_EXEMPT):
            return None
        k = scoped_key(self.scope if self.scope is not None else _route_scope(request), k)
        return Charge(k, self.policies, self.name, resolve_cost(self.cost, request))


def _route_limits_of(dependant: Any) -> Tuple[_RouteLimit, ...]:
    """The rate_limit() dependencies anywhere in a FastAPI route's
    dependency tree (its own, its routers', the app's), each once."""
    found: List[_RouteLimit] = []
    seen: Set[int] = set()
    stack = [dependant]
    while stack:
        d = stack.pop()
        for sub in reversed(getattr(d, "dependencies", None) or ()):
            route = getattr(getattr(sub, "call", None), "_tollgate_route", None)
            if isinstance(route, _RouteLimit) and all(route is not r for r in found):
                found.append(route)
            if id(sub) not in seen:
                seen.add(id(sub))
                stack.append(sub)
    return tuple(found)


def _candidate_routes(app: Any) -> Iterable[Any]:
    routes = getattr(getattr(app, "router", None), "routes", None)
    if routes is None:
        return ()
    if _iter_route_contexts is not None:
        return _iter_route_contexts(routes)
    return routes


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
    - ``allow``, ``deny``: allow and deny lists (IP addresses and CIDR
      ranges matching the client address, exact entries matching the
      key): a denied request gets ``403`` (no Retry-After) before any
      check, an allowed one goes through unchecked, its route limits too.
      A denial of the limiter's own deny list (``decision.source ==
      "deny_list"``) is answered 403 as well.
    - ``trusted_proxies``: how the client address is found (for the lists
      and the default key): None (the peer; or the rule of a
      ``client_address(...)`` key function), a hop count, or a list of the
      proxies' addresses and CIDR ranges; ``proxy_header``:
      ``"x-forwarded-for"``, ``"forwarded"`` (RFC 7239) or ``"auto"``
      (see :func:`tollgate.plans.client_address`).

    The key and plan functions receive a ``starlette.requests.Request``
    built on the scope (headers, client, URL; not the body). WebSocket and
    lifespan traffic pass through unchecked. A check that raises (a
    limiter with ``failure_mode="error"`` while Redis is away) propagates:
    choose the behaviour with the limiter's ``failure_mode``.

    A request whose route has :func:`rate_limit` dependencies on the same
    limiter is checked for them and for this middleware's limit in one
    decision, before the app runs (the module's docstring has the details):
    the route's limit is then charged before the route's other
    dependencies run.
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
        allow: Optional[Iterable[Any]] = None,
        deny: Optional[Iterable[Any]] = None,
        trusted_proxies: Any = None,
        proxy_header: str = "x-forwarded-for",
    ) -> None:
        if limiter is None:
            raise TypeError("RateLimitMiddleware needs a tollgate.Limiter (limiter=...)")
        check_key_func(key)
        key, self.exemptions = web_options(key, allow, deny, trusted_proxies, proxy_header)
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
        # Route dependency trees already searched: id(dependant) ->
        # (dependant, its route limits).
        self._route_cache: Dict[int, Tuple[Any, Tuple[_RouteLimit, ...]]] = {}

    def _find_route(self, scope: Scope) -> Optional[Tuple[Scope, Tuple[_RouteLimit, ...]]]:
        """The route the router will pick for `scope`, as (its scope, its
        rate_limit() limits on this middleware's limiter), or None for a
        request that no FastAPI route with such limits takes."""
        app = scope.get("app")
        probe = dict(scope)
        for route in _candidate_routes(app):
            try:
                match, child = route.matches(probe)
            except Exception:  # a route type this search does not know
                return None  # the dependencies check on their own
            if match is not Match.FULL:
                continue
            dependant = getattr(route, "dependant", None)
            if dependant is None:
                return None  # a mount, a plain Starlette route
            cached = self._route_cache.get(id(dependant))
            if cached is None or cached[0] is not dependant:
                cached = (dependant, _route_limits_of(dependant))
                self._route_cache[id(dependant)] = cached
            overrides = getattr(app, "dependency_overrides", None) or {}
            limits = tuple(r for r in cached[1] if r.limiter is self.limiter and r.call not in overrides)
            if not limits:
                return None
            probe.update(child)
            probe["route"] = getattr(route, "original_route", route)
            return probe, limits
        return None

    async def _route_charges(self, scope: Scope) -> List[Tuple[_RouteLimit, Optional[Charge]]]:
        if id(self.limiter) not in _LIMITERS_WITH_ROUTES:
            return []
        found = self._find_route(scope)
        if found is None:
            return []
        route_scope, limits = found
        checked = scope.get(_SCOPE_ROUTES) or {}
        request = Request(route_scope)
        return [(r, await r.charge(request)) for r in limits if r not in checked]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        exemptions = self.exemptions
        # A shadow limiter lets a deny-listed request go on, as it answers
        # a key on its own deny list.
        enforce = exemptions is not None and not self.limiter.shadow
        if exemptions is not None:
            ip = exemptions.address(request)
            if enforce and exemptions.denies(ip):
                await _send_forbidden(send)
                return
        key = await _maybe_await(self.key(request))
        if key is not None:
            key = check_key(key)
        if exemptions is not None:
            if enforce and exemptions.denies(None, key):
                await _send_forbidden(send)
                return
            if exemptions.allows(ip, key):
                scope[SCOPE_EXEMPT] = True
                await self.app(scope, receive, send)
                return
        if key is None:
            await self.app(scope, receive, send)
            return
        plan = None
        if self.limits.plan_of is not None:
            plan = await _maybe_await(self.limits.plan_of(request))
        policies, name = self.limits.for_plan(plan)
        cost = resolve_cost(self.cost, request)
        try:
            routes = await self._route_charges(scope)
        except Forbidden:  # a route's deny list
            await _send_forbidden(send)
            return
        route_charges = [c for _, c in routes if c is not None]
        # Per-route dependencies (and other tollgate middleware) add their
        # outcomes to this list; the response's headers describe the one
        # that binds.
        outcomes: List[Outcome] = scope.setdefault(SCOPE_KEY, [])
        if route_charges:
            # This limit and the route's, in one decision.
            joint = await joint_check_async(self.limiter, [Charge(key, policies, name, cost)] + route_charges)
            outcomes.extend(joint.reported())
            if not joint.allowed:
                assert joint.denied_by is not None
                denied = joint.outcomes[joint.denied_by]
                assert denied is not None
                if denied_by_list(denied.decision):
                    await _send_forbidden(send)
                    return
                headers = headers_for(binding(outcomes))
                if joint.denied_by == 0:
                    await _send_denied(send, headers)
                else:
                    await _answer_route_denial(scope, receive, send, RateLimitExceeded(denied.decision, headers))
                return
            checked: Dict[_RouteLimit, Optional[Outcome]] = scope.setdefault(_SCOPE_ROUTES, {})
            it = iter(joint.outcomes[1:])
            for route, c in routes:
                checked[route] = None if c is None else next(it)
        else:
            decision = await self.limiter.check_async(key, *policies, cost=cost)
            outcomes.append(Outcome.of(decision, policies, name))
            if denied_by_list(decision):
                await _send_forbidden(send)
                return
            if not decision.allowed:
                await _send_denied(send, headers_for(binding(outcomes)))
                return
            if routes:  # every route key function returned None
                skipped: Dict[_RouteLimit, Optional[Outcome]] = scope.setdefault(_SCOPE_ROUTES, {})
                for route, _ in routes:
                    skipped[route] = None

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


class Forbidden(HTTPException):
    """Raised by a :func:`rate_limit` dependency for a request on a deny
    list (its own ``deny=``, or the limiter's: ``decision.source ==
    "deny_list"``): a 403 without rate-limit headers or Retry-After.
    ``decision`` is the limiter's denial, or None for the dependency's
    list. FastAPI's default handler answers ``{"detail": "Forbidden"}``."""

    def __init__(self, decision: Optional[Decision] = None) -> None:
        super().__init__(status_code=403, detail="Forbidden")
        self.decision = decision


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


async def _answer_route_denial(scope: Scope, receive: Receive, send: Send, exc: RateLimitExceeded) -> None:
    """Answers a route limit's denial found by the middleware as the app
    answers the dependency's RateLimitExceeded: with the app's handler for
    status 429 or for the exception's class (FastAPI's for HTTPException
    by default), the rate-limit headers set on whatever it returns."""
    app = scope.get("app")
    handlers = getattr(app, "exception_handlers", None) or {}
    handler = handlers.get(429)
    if handler is None:
        handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
    request = Request(scope, receive, send)
    if handler is None:
        body = json.dumps({"detail": exc.detail}).encode()
        response: Any = Response(body, status_code=429, headers=exc.headers, media_type="application/json")
    elif _is_async_callable(handler):
        response = await handler(request, exc)
    else:
        response = await run_in_threadpool(handler, request, exc)
    headers = dict(exc.headers or {})

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = _with_headers(message.get("headers") or [], headers)
        await send(message)

    await response(scope, receive, send_with_headers)


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
    allow: Optional[Iterable[Any]] = None,
    deny: Optional[Iterable[Any]] = None,
    trusted_proxies: Any = None,
    proxy_header: str = "x-forwarded-for",
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

    ``allow``, ``deny``, ``trusted_proxies`` and ``proxy_header`` are the
    middleware's: a request on the deny list (or denied by the limiter's
    deny list) raises :class:`Forbidden` (403); one on the allow list, or
    one a middleware's allow list exempted, is not checked (the dependency
    returns ``None``).

    Under a :class:`RateLimitMiddleware` on the same limiter, the middleware
    checks this limit together with its own before the app runs (one
    decision, all or nothing); the dependency then returns that decision
    (which may report the middleware's policy, the one that binds) without
    checking again.
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
    key, exemptions = web_options(key, allow, deny, trusted_proxies, proxy_header)
    route = _RouteLimit(limiter, route_policies, route_name, key, cost, scope, exemptions)

    async def tollgate_rate_limit(request: Request, response: Response) -> Optional[Decision]:
        checked = request.scope.get(_SCOPE_ROUTES)
        if checked is not None and route in checked:
            # The middleware checked it with its own limit (and allowed it).
            outcome = checked.pop(route)
            if outcome is None:
                return None
        else:
            c = await route.charge(request)
            if c is None:
                return None
            decision = await limiter.check_async(c.key, *c.policies, cost=c.cost)
            outcome = Outcome.of(decision, c.policies, c.name)
            outcomes = request.scope.get(SCOPE_KEY)
            if outcomes is not None:
                outcomes.append(outcome)
        if denied_by_list(outcome.decision):
            raise Forbidden(outcome.decision)
        headers = headers_for(outcome)
        if not outcome.decision.allowed:
            raise RateLimitExceeded(outcome.decision, headers)
        for field, value in headers.items():
            response.headers[field] = value
        return outcome.decision

    route.call = tollgate_rate_limit
    tollgate_rate_limit._tollgate_route = route  # type: ignore[attr-defined]
    _LIMITERS_WITH_ROUTES.add(id(limiter))
    return tollgate_rate_limit
