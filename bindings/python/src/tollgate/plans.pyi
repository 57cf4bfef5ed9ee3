"""Type stubs of tollgate.plans."""

import ipaddress
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Literal,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

from tollgate import Decision, Policy
from tollgate._native import ListEntry as ListEntry

Key = Union[str, bytes]
KeyFunc = Callable[[Any], Optional[Key]]
PolicySpec = Union[Policy, Sequence[Policy]]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
ProxyHeader = Literal["x-forwarded-for", "forwarded", "auto"]
#: A proxy's address or CIDR range.
ProxyEntry = Union[
    str,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
]
#: None (the peer), a hop count, or the proxies' addresses and ranges.
TrustedProxies = Union[None, int, Iterable[ProxyEntry]]

DEFAULT_PLANS: Mapping[str, Policy]
HEADER_NAMES: Tuple[str, ...]
PROXY_HEADERS: Tuple[str, ...]
MAX_KEY_VALUE: int
FORBIDDEN_BODY: bytes

@overload
def client_address(
    request: None = None,
    *,
    trust_forwarded: Optional[bool] = None,
    trusted_proxies: Union[int, Iterable[ProxyEntry]] = 1,
    ipv6_prefix: Optional[int] = 64,
    proxy_header: ProxyHeader = "x-forwarded-for",
) -> Callable[[Any], str]: ...
@overload
def client_address(
    request: Any,
    *,
    trust_forwarded: Optional[bool] = None,
    trusted_proxies: Union[int, Iterable[ProxyEntry]] = 1,
    ipv6_prefix: Optional[int] = 64,
    proxy_header: ProxyHeader = "x-forwarded-for",
) -> str: ...
def forwarded_for(lines: Sequence[str]) -> List[Optional[str]]: ...

class ClientRule:
    hops: int
    networks: Tuple[IPNetwork, ...]
    header: str
    def __init__(self, hops: int = 0, networks: Tuple[IPNetwork, ...] = (), header: str = "x-forwarded-for") -> None: ...
    def resolve(self, request: Any) -> Tuple[Optional[IPAddress], Optional[str]]: ...

def client_rule(
    trusted_proxies: TrustedProxies = None,
    proxy_header: ProxyHeader = "x-forwarded-for",
    *,
    trust_forwarded: Optional[bool] = None,
) -> ClientRule: ...
def rule_of(key: Any) -> Optional[ClientRule]: ...

class AddressList:
    keys: FrozenSet[bytes]
    networks: Tuple[IPNetwork, ...]
    def __init__(self, entries: Iterable[ListEntry], what: str = "entries") -> None: ...
    def __bool__(self) -> bool: ...
    def has_address(self, ip: Optional[IPAddress]) -> bool: ...
    def has_key(self, key: Optional[Key]) -> bool: ...

class Exemptions:
    allow: AddressList
    deny: AddressList
    rule: ClientRule
    def __init__(
        self, allow: Optional[Iterable[ListEntry]], deny: Optional[Iterable[ListEntry]], rule: ClientRule
    ) -> None: ...
    def address(self, request: Any) -> Optional[IPAddress]: ...
    def denies(self, ip: Optional[IPAddress], key: Optional[Key] = None) -> bool: ...
    def allows(self, ip: Optional[IPAddress], key: Optional[Key]) -> bool: ...

def web_options(
    key: KeyFunc,
    allow: Optional[Iterable[ListEntry]],
    deny: Optional[Iterable[ListEntry]],
    trusted_proxies: TrustedProxies,
    proxy_header: str,
) -> Tuple[KeyFunc, Optional[Exemptions]]: ...
def denied_by_list(decision: Decision) -> bool: ...
def header_key(
    name: str,
    *,
    prefix: Optional[str] = None,
    fallback: Optional[KeyFunc] = ...,
    hash: bool = False,
) -> KeyFunc: ...
def organization_key(
    header: Optional[str] = "X-Org-Id",
    *,
    getter: Optional[Callable[[Any], Optional[str]]] = None,
    fallback: Optional[KeyFunc] = ...,
) -> KeyFunc: ...

class Limits:
    plan_of: Optional[Callable[[Any], Any]]
    def __init__(
        self,
        policies: Optional[PolicySpec] = None,
        plans: Optional[Mapping[str, PolicySpec]] = None,
        plan_of: Optional[Callable[[Any], Any]] = None,
        name: Optional[str] = None,
    ) -> None: ...
    @property
    def empty(self) -> bool: ...
    def for_plan(self, plan: Any) -> Tuple[Tuple[Policy, ...], str]: ...

class Outcome(NamedTuple):
    decision: Decision
    policy: Policy
    name: str
    @classmethod
    def of(cls, decision: Decision, policies: Sequence[Policy], name: str) -> "Outcome": ...

def binding(outcomes: Sequence[Outcome]) -> Outcome: ...
def headers_for(outcome: Outcome) -> Dict[str, str]: ...
def denied_body(headers: Mapping[str, str]) -> bytes: ...
def scoped_key(scope: str, key: Key) -> Key: ...
def resolve_cost(cost: Union[int, Callable[[Any], int]], request: Any) -> int: ...
def check_cost(cost: Any) -> None: ...

COUNT_MODES: Tuple[str, ...]

def failed_response(status: int) -> bool: ...
def check_count(count: Any, failed: Any) -> None: ...
def counted(count: str, failed: Callable[[int], bool], status: int) -> bool: ...

class Pending(NamedTuple):
    key: Key
    policies: Tuple[Policy, ...]
    cost: int
    count: str
    failed: Callable[[int], bool]
    def gives_back(self, status: int) -> bool: ...
def check_key_func(key: Any) -> None: ...
def check_key(key: Any) -> Key: ...

class Charge(NamedTuple):
    key: Key
    policies: Tuple[Policy, ...]
    name: str
    cost: int

class Joint(NamedTuple):
    allowed: bool
    outcomes: Tuple[Optional[Outcome], ...]
    denied_by: Optional[int]
    def reported(self) -> List[Outcome]: ...

def one_call(charges: Sequence[Charge]) -> bool: ...
def joint_check(limiter: Any, charges: Sequence[Charge]) -> Joint: ...
async def joint_check_async(limiter: Any, charges: Sequence[Charge]) -> Joint: ...
