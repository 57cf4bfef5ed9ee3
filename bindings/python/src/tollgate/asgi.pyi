"""Type stubs of tollgate.asgi (Starlette / FastAPI)."""

from typing import Any, Awaitable, Callable, Dict, Iterable, Literal, Mapping, MutableMapping, Optional, Union

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tollgate import Decision, Limiter, Policy
from tollgate.plans import Exemptions, KeyFunc, ListEntry, PolicySpec, ProxyHeader, TrustedProxies

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY: str
SCOPE_EXEMPT: str

# A key or plan function may also be `async`.
AsgiKeyFunc = Union[KeyFunc, Callable[[Request], Awaitable[Optional[Union[str, bytes]]]]]

class RateLimitMiddleware:
    app: ASGIApp
    limiter: Limiter
    exemptions: Optional[Exemptions]
    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        policies: Optional[PolicySpec] = None,
        key: AsgiKeyFunc = ...,
        plans: Optional[Mapping[str, PolicySpec]] = None,
        plan_of: Optional[Callable[[Request], Any]] = None,
        name: Optional[str] = None,
        cost: Union[int, Callable[[Request], int]] = 1,
        count: Literal["all", "failed", "successful"] = "all",
        failed: Callable[[int], bool] = ...,
        allow: Optional[Iterable[ListEntry]] = None,
        deny: Optional[Iterable[ListEntry]] = None,
        trusted_proxies: TrustedProxies = None,
        proxy_header: ProxyHeader = "x-forwarded-for",
    ) -> None: ...
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...

class Forbidden(HTTPException):
    decision: Optional[Decision]
    def __init__(self, decision: Optional[Decision] = None) -> None: ...

class RateLimitExceeded(HTTPException):
    decision: Decision
    def __init__(self, decision: Decision, headers: Dict[str, str]) -> None: ...

async def rate_limit_exceeded_handler(request: Request, exc: Exception) -> Response: ...
def rate_limit(
    limiter: Limiter,
    *policies: Policy,
    key: AsgiKeyFunc = ...,
    cost: Union[int, Callable[[Request], int]] = 1,
    name: Optional[str] = None,
    scope: Optional[str] = None,
    allow: Optional[Iterable[ListEntry]] = None,
    deny: Optional[Iterable[ListEntry]] = None,
    trusted_proxies: TrustedProxies = None,
    proxy_header: ProxyHeader = "x-forwarded-for",
) -> Callable[[Request, Response], Awaitable[Optional[Decision]]]: ...
