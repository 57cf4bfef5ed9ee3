"""Rate limiting for Flask: an extension with a global limit and a
per-route decorator.

::

    import tollgate
    from flask import Flask
    from tollgate.flask import RateLimiter
    from tollgate.plans import DEFAULT_PLANS, organization_key

    app = Flask(__name__)
    limits = RateLimiter(
        app,
        limiter=tollgate.Limiter("redis://127.0.0.1:6379/0"),
        key=organization_key("X-Org-Id"),
        plans=DEFAULT_PLANS,
        plan_of=lambda request: PLANS_BY_ORG.get(request.headers.get("X-Org-Id"), "FREE"),
    )

    @app.post("/search")
    @limits.limit(tollgate.Policy(10, "1m"))
    def search(): ...

Checks use the synchronous ``limiter.check`` (the GIL is released while it
waits for Redis). Every response carries ``RateLimit-Policy``, ``RateLimit``
and ``X-RateLimit-Limit/Remaining/Reset``; a denied request gets ``429``
with ``Retry-After`` (whole seconds) and the body
``{"detail":"Rate limit exceeded","retry_after":<seconds>}``, exactly as
``tollgate.asgi`` answers. The header values come from the C library
(``tollgate.rate_limit_headers``). A decision allowed by shadow mode
(``decision.shadow``: a shadow policy, or a ``Limiter(shadow=True)``) is
allowed: the request goes through, without ``Retry-After``, its other
headers describing the would-be denial (docs/python.md, "Shadow mode").

``allow=`` and ``deny=`` lists (client addresses and CIDR ranges, exact
keys; docs/python.md, "Exemptions") are evaluated before any check: a
request on the deny list gets ``403`` with ``{"detail":"Forbidden"}`` and
no rate-limit headers (no wait helps), one on the allow list is not
limited. ``trusted_proxies=`` (a hop count, or the proxies' CIDR ranges)
and ``proxy_header=`` say how the client address is found.

A request under both the global limit and a view's :meth:`RateLimiter.limit`
is checked once for both, in the ``before_request`` hook (which finds the
view's limits through ``request.endpoint``): one ``Limiter.check_keys`` over
the global (key, policies) and the route's, all or nothing. A request the
route denies costs nothing under the global limit, and one the global limit
denies costs nothing on the route. When one call cannot take them (keys in
several Redis Cluster slots, different costs), the route's limit is checked
alone first, then the global one, whose denial refunds the route's charge
(``tollgate.plans.joint_check``).

The module is ``tollgate.flask``; it does not shadow the ``flask`` package
(``from tollgate.flask import RateLimiter``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar, Union

try:
    import flask as _flask
    from werkzeug.exceptions import HTTPException as _HTTPException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("tollgate.flask needs Flask: pip install flask") from exc

import tollgate as _tollgate
from tollgate import Limiter, Policy

from .plans import (
    FORBIDDEN_BODY,
    HEADER_NAMES,
    Charge,
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
    joint_check,
    resolve_cost,
    scoped_key,
    web_options,
)

__all__ = ["RateLimiter"]

F = TypeVar("F", bound=Callable[..., Any])

#: The flask.g attribute that collects a request's outcomes.
_G_KEY = "_tollgate_outcomes"


def _outcomes() -> List[Outcome]:
    outcomes: Optional[List[Outcome]] = _flask.g.get(_G_KEY)
    if outcomes is None:
        outcomes = []
        setattr(_flask.g, _G_KEY, outcomes)
    return outcomes


#: The flask.g attribute holding the request's charges that its response
#: may give back (``count`` other than "all").
_G_PENDING = "_tollgate_pending"

#: The flask.g attribute holding the route limits that ``before_request``
#: checked together with the global limit: route limit -> the charge its
#: response may give back (or None). The view's wrapper then does not check.
_G_ROUTES = "_tollgate_routes"

#: The flask.g attribute holding each extension's verdict of its lists on
#: the request: id(extension) -> ("deny" / "allow" / None, the key).
_G_VERDICT = "_tollgate_verdict"

#: The key of a request not computed yet.
_UNSET: Any = object()

#: The attribute of a view wrapped by :meth:`RateLimiter.limit` that lists
#: its route limits (innermost first), for ``before_request``.
_VIEW_LIMITS = "_tollgate_limits"


class _RouteLimit:
    """One :meth:`RateLimiter.limit` decorator's limit."""

    __slots__ = ("owner", "policies", "name", "key", "cost", "scope", "count", "failed")

    def __init__(
        self,
        owner: "RateLimiter",
        policies: Tuple[Policy, ...],
        name: str,
        key: Optional[KeyFunc],
        cost: Any,
        scope: Optional[str],
        count: str,
        failed: Callable[[int], bool],
    ) -> None:
        self.owner = owner
        self.policies = policies
        self.name = name
        self.key = key
        self.cost = cost
        self.scope = scope
        self.count = count
        self.failed = failed

    def charge(self, request: Any) -> Optional[Charge]:
        """The request's (key, policies) under this limit, or None when the
        key function leaves it unlimited."""
        k = (self.key or self.owner.key)(request)
        if k is None:
            return None
        k = scoped_key(self.scope if self.scope is not None else (request.endpoint or request.path), check_key(k))
        return Charge(k, self.policies, self.name, resolve_cost(self.cost, request))

    def pending(self, charge: Charge) -> Optional[Pending]:
        if self.count == "all":
            return None
        return Pending(charge.key, charge.policies, charge.cost, self.count, self.failed)


def _give_back(limiter: Limiter, pending: Pending, status: int) -> None:
    """Refunds `pending` if a response with `status` does not count. The
    response is made: a refund that fails (nothing to give back, the store
    away) is dropped."""
    if not pending.gives_back(status):
        return
    try:
        limiter.refund(pending.key, *pending.policies, amount=pending.cost)
    except _tollgate.Error:
        pass


def _set_headers(response: Any, outcomes: List[Outcome]) -> None:
    headers = headers_for(binding(outcomes))
    for field in HEADER_NAMES:
        if field == "Retry-After" and field not in headers:
            continue  # keep an app's own Retry-After (e.g. on a 503)
        response.headers.pop(field, None)
    for field, value in headers.items():
        response.headers[field] = value


def _forbidden_response() -> Any:
    """The answer to a request on a deny list: 403, no rate-limit headers
    and no Retry-After."""
    return _flask.current_app.response_class(FORBIDDEN_BODY, status=403, mimetype="application/json")


def _denied_response(outcomes: List[Outcome]) -> Any:
    headers = headers_for(binding(outcomes))
    return _flask.current_app.response_class(
        denied_body(headers), status=429, headers=headers, mimetype="application/json"
    )


class RateLimiter:
    """The Flask extension.

    - ``app``: the application, or ``None`` and :meth:`init_app` later.
    - ``limiter``: a :class:`tollgate.Limiter`. ``None``: ``init_app``
      creates one from ``app.config["TOLLGATE_URL"]`` (memory store when
      unset) and the options in ``app.config["TOLLGATE_OPTIONS"]`` (a dict).
    - ``policies``, ``plans``, ``plan_of``, ``name``, ``cost``: the global
      limit, checked for every request in a ``before_request`` hook; as in
      :class:`tollgate.asgi.RateLimitMiddleware`. With neither ``policies``
      nor ``plans`` there is no global limit, only the :meth:`limit`
      decorators.
    - ``key``: the key function (request -> str, bytes or None; ``None``
      leaves the request unlimited); default the client address
      (``request.remote_addr``; see :mod:`tollgate.plans` for proxies).
    - ``count`` and ``failed``: which requests keep their charge, as in
      :class:`tollgate.asgi.RateLimitMiddleware` (``"all"``, ``"failed"`` or
      ``"successful"``; ``failed`` default 4xx and 5xx): the global limit's
      charge of a response that does not count is refunded in the
      ``after_request`` hook; :meth:`limit` takes its own.
    - ``allow``, ``deny``: allow and deny lists (IP addresses and CIDR
      ranges matching the client address, exact entries matching the key
      of ``key``), evaluated in ``before_request`` for every request, with
      or without a global limit: a denied request gets ``403`` (no
      Retry-After) and the view does not run; an allowed one is checked by
      none of this extension's limits (the :meth:`limit` decorators
      included). A denial of the limiter's own deny list
      (``decision.source == "deny_list"``) is answered 403 as well.
    - ``trusted_proxies``, ``proxy_header``: how the client address is
      found, for the lists and the default key, as in
      :class:`tollgate.asgi.RateLimitMiddleware`.

    A request under the global limit and a view's :meth:`limit` is checked
    for both at once in ``before_request`` (``Limiter.check_keys``, all or
    nothing; the module's docstring describes the fallback), so the route's
    limit is charged before later ``before_request`` hooks run.

    An ``after_request`` hook adds the headers to every response, describing
    the limit that binds first when a global and a per-route limit both
    applied. A check that raises (a limiter with ``failure_mode="error"``
    while Redis is away) propagates: choose the behaviour with the
    limiter's ``failure_mode``.
    """

    def __init__(
        self,
        app: Optional[_flask.Flask] = None,
        limiter: Optional[Limiter] = None,
        policies: Optional[PolicySpec] = None,
        key: KeyFunc = client_address,
        plans: Optional[Any] = None,
        plan_of: Optional[Callable[[Any], Any]] = None,
        name: Optional[str] = None,
        cost: Union[int, Callable[[Any], int]] = 1,
        count: str = "all",
        failed: Callable[[int], bool] = failed_response,
        allow: Optional[Iterable[Any]] = None,
        deny: Optional[Iterable[Any]] = None,
        trusted_proxies: Any = None,
        proxy_header: str = "x-forwarded-for",
    ) -> None:
        check_key_func(key)
        check_cost(cost)
        check_count(count, failed)
        key, self.exemptions = web_options(key, allow, deny, trusted_proxies, proxy_header)
        self.count = count
        self.failed = failed
        self.limiter: Optional[Limiter] = limiter
        self.key = key
        self.cost = cost
        self.limits = Limits(policies, plans, plan_of, name)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: _flask.Flask) -> None:
        """Install the hooks on ``app`` (and create the limiter if none was
        given). ``app.extensions["tollgate"]`` is this extension."""
        if self.limiter is None:
            options = dict(app.config.get("TOLLGATE_OPTIONS") or {})
            self.limiter = _tollgate.Limiter(app.config.get("TOLLGATE_URL") or None, **options)
        app.extensions["tollgate"] = self
        app.before_request(self._before_request)
        app.after_request(self._after_request)

    def _limiter(self) -> Limiter:
        if self.limiter is None:
            raise RuntimeError("tollgate.flask.RateLimiter has no limiter: pass limiter= or call init_app(app)")
        return self.limiter

    def _verdict(self, request: Any) -> Tuple[Optional[str], Any]:
        """The lists' verdict on the request, once per request: ("deny",
        "allow" or None; the key, or _UNSET when the address alone was
        denied)."""
        verdicts: Dict[int, Tuple[Optional[str], Any]] = _flask.g.setdefault(_G_VERDICT, {})
        cached = verdicts.get(id(self))
        if cached is not None:
            return cached
        exemptions = self.exemptions
        assert exemptions is not None
        # A shadow limiter lets a deny-listed request go on, as it answers
        # a key on its own deny list.
        enforce = not self._limiter().shadow
        ip = exemptions.address(request)
        verdict: Tuple[Optional[str], Any]
        if enforce and exemptions.denies(ip):
            verdict = ("deny", _UNSET)
        else:
            key = self.key(request)
            if key is not None:
                key = check_key(key)
            if enforce and exemptions.denies(None, key):
                verdict = ("deny", key)
            elif exemptions.allows(ip, key):
                verdict = ("allow", key)
            else:
                verdict = (None, key)
        verdicts[id(self)] = verdict
        return verdict

    def _before_request(self) -> Any:
        request = _flask.request
        key = _UNSET
        if self.exemptions is not None:
            verdict, key = self._verdict(request)
            if verdict == "deny":
                return _forbidden_response()
            if verdict == "allow":
                return None
        if self.limits.empty:
            return None
        if key is _UNSET:
            key = self.key(request)
        if key is None:
            return None
        key = check_key(key)
        plan = self.limits.plan_of(request) if self.limits.plan_of is not None else None
        policies, name = self.limits.for_plan(plan)
        cost = resolve_cost(self.cost, request)
        limiter = self._limiter()
        routes = self._route_charges(request)
        route_charges = [c for _, c in routes if c is not None]
        outcomes = _outcomes()
        if route_charges:
            # The global limit and the view's, in one decision.
            joint = joint_check(limiter, [Charge(key, policies, name, cost)] + route_charges)
            if any(o is not None and denied_by_list(o.decision) for o in joint.outcomes):
                return _forbidden_response()  # without rate-limit headers
            outcomes.extend(joint.reported())
            allowed = joint.allowed
        else:
            decision = limiter.check(key, *policies, cost=cost)
            if denied_by_list(decision):
                return _forbidden_response()
            outcomes.append(Outcome.of(decision, policies, name))
            allowed = decision.allowed
        if not allowed:
            return _denied_response(outcomes)
        if routes:
            checked: Dict[_RouteLimit, Optional[Pending]] = _flask.g.setdefault(_G_ROUTES, {})
            for route, c in routes:
                checked[route] = None if c is None else route.pending(c)
        if self.count != "all":
            setattr(_flask.g, _G_PENDING, Pending(key, policies, cost, self.count, self.failed))
        return None

    def _route_charges(self, request: Any) -> List[Tuple[_RouteLimit, Optional[Charge]]]:
        """The request's charges under the limits of this extension on the
        view it is routed to (None for one whose key function returned
        None)."""
        endpoint = request.endpoint
        if endpoint is None:
            return []
        view = _flask.current_app.view_functions.get(endpoint)
        checked = _flask.g.get(_G_ROUTES) or {}
        return [
            (route, route.charge(request))
            for route in getattr(view, _VIEW_LIMITS, ())
            if isinstance(route, _RouteLimit) and route.owner is self and route not in checked
        ]

    def _after_request(self, response: Any) -> Any:
        outcomes = _flask.g.get(_G_KEY)
        if outcomes:
            _set_headers(response, outcomes)
        pending: Optional[Pending] = _flask.g.pop(_G_PENDING, None)
        if pending is not None:
            _give_back(self._limiter(), pending, response.status_code)
        return response

    def limit(
        self,
        *policies: Policy,
        key: Optional[KeyFunc] = None,
        cost: Union[int, Callable[[Any], int]] = 1,
        name: Optional[str] = None,
        scope: Optional[str] = None,
        count: Optional[str] = None,
        failed: Optional[Callable[[int], bool]] = None,
    ) -> Callable[[F], F]:
        """A decorator limiting one view, placed under the route decorator::

            @app.get("/search")
            @limits.limit(Policy(10, "1m"))
            def search(): ...

        ``key`` defaults to the extension's key function. Each view has its
        own counters: the key is ``"<scope>|<key>"``, ``scope`` defaulting
        to the endpoint name (``request.endpoint``, e.g. ``"search"``, the
        same name FastAPI gives the route, so the two frameworks build the
        same keys). A denied request gets the 429 without the view running.
        ``count`` and ``failed`` default to the extension's; a view that
        raises counts as a 500 (``abort(code)`` as its code). Works for ``async def`` views too.

        Under the extension's global limit, the ``before_request`` hook
        checks this limit together with the global one (one
        ``Limiter.check_keys``, all or nothing) and the decorator does not
        check again; otherwise (no global limit, its key function returned
        None, or an app without :meth:`init_app`) the decorator checks when
        the view is called.
        """
        route_count = self.count if count is None else count
        route_failed = self.failed if failed is None else failed
        check_count(route_count, route_failed)
        limits = Limits(policies if policies else None, None, None, name)
        if limits.empty:
            raise ValueError("limit() needs at least one tollgate.Policy")
        if key is not None:
            check_key_func(key)
        check_cost(cost)
        if scope is not None and not isinstance(scope, str):
            raise TypeError("scope must be a str, not %s" % type(scope).__name__)
        route_policies, route_name = limits.for_plan(None)
        route = _RouteLimit(self, route_policies, route_name, key, cost, scope, route_count, route_failed)

        def check() -> Any:
            """(None, the charge a response may give back, or None) to go
            on, or (the 429 or 403 response, None)."""
            if self.exemptions is not None:
                # Decided in before_request already, but for an app
                # without init_app's hooks.
                verdict, _ = self._verdict(_flask.request)
                if verdict == "deny":
                    return _forbidden_response(), None
                if verdict == "allow":
                    return None, None
            checked = _flask.g.get(_G_ROUTES)
            if checked is not None and route in checked:
                # before_request checked it with the global limit.
                return None, checked.pop(route)
            c = route.charge(_flask.request)
            if c is None:
                return None, None
            decision = self._limiter().check(c.key, *c.policies, cost=c.cost)
            if denied_by_list(decision):
                return _forbidden_response(), None
            outcomes = _outcomes()
            outcomes.append(Outcome.of(decision, c.policies, c.name))
            if not decision.allowed:
                return _denied_response(outcomes), None
            return None, route.pending(c)

        def finish(rv: Any, pending: Optional[Pending]) -> Any:
            # Set the headers here too, so the decorator works on an app
            # without init_app's after_request hook.
            response = _flask.current_app.make_response(rv)
            outcomes = _outcomes()
            if outcomes:  # none for a request the lists or the key function exempted
                _set_headers(response, outcomes)
            if pending is not None:
                _give_back(self._limiter(), pending, response.status_code)
            return response

        def raised(pending: Optional[Pending], exc: BaseException) -> None:
            # abort(401) answers 401; anything else a 500.
            if pending is not None:
                status = exc.code if isinstance(exc, _HTTPException) and exc.code else 500
                _give_back(self._limiter(), pending, status)

        def decorator(view: F) -> F:
            if inspect.iscoroutinefunction(view):

                @functools.wraps(view)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    denied, pending = check()
                    if denied is not None:
                        return denied
                    try:
                        rv = await view(*args, **kwargs)
                    except BaseException as exc:
                        raised(pending, exc)
                        raise
                    return finish(rv, pending)

                setattr(async_wrapper, _VIEW_LIMITS, getattr(view, _VIEW_LIMITS, ()) + (route,))
                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                denied, pending = check()
                if denied is not None:
                    return denied
                try:
                    rv = view(*args, **kwargs)
                except BaseException as exc:
                    raised(pending, exc)
                    raise
                return finish(rv, pending)

            setattr(wrapper, _VIEW_LIMITS, getattr(view, _VIEW_LIMITS, ()) + (route,))
            return wrapper  # type: ignore[return-value]

        return decorator
