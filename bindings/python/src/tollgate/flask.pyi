"""Type stubs of tollgate.flask."""

from typing import Any, Callable, Iterable, Literal, Mapping, Optional, TypeVar, Union

from flask import Flask

from tollgate import Limiter, Policy
from tollgate.plans import Exemptions, KeyFunc, Limits, ListEntry, PolicySpec, ProxyHeader, TrustedProxies

F = TypeVar("F", bound=Callable[..., Any])

class RateLimiter:
    limiter: Optional[Limiter]
    key: KeyFunc
    limits: Limits
    exemptions: Optional[Exemptions]
    def __init__(
        self,
        app: Optional[Flask] = None,
        limiter: Optional[Limiter] = None,
        policies: Optional[PolicySpec] = None,
        key: KeyFunc = ...,
        plans: Optional[Mapping[str, PolicySpec]] = None,
        plan_of: Optional[Callable[[Any], Any]] = None,
        name: Optional[str] = None,
        cost: Union[int, Callable[[Any], int]] = 1,
        count: Literal["all", "failed", "successful"] = "all",
        failed: Callable[[int], bool] = ...,
        allow: Optional[Iterable[ListEntry]] = None,
        deny: Optional[Iterable[ListEntry]] = None,
        trusted_proxies: TrustedProxies = None,
        proxy_header: ProxyHeader = "x-forwarded-for",
    ) -> None: ...
    def init_app(self, app: Flask) -> None: ...
    def limit(
        self,
        *policies: Policy,
        key: Optional[KeyFunc] = None,
        cost: Union[int, Callable[[Any], int]] = 1,
        name: Optional[str] = None,
        scope: Optional[str] = None,
        count: Optional[Literal["all", "failed", "successful"]] = None,
        failed: Optional[Callable[[int], bool]] = None,
    ) -> Callable[[F], F]: ...
