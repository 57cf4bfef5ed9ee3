"""Type stubs of tollgate.plans."""

from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

from tollgate import Decision, Policy

Key = Union[str, bytes]
KeyFunc = Callable[[Any], Optional[Key]]
PolicySpec = Union[Policy, Sequence[Policy]]

DEFAULT_PLANS: Mapping[str, Policy]
HEADER_NAMES: Tuple[str, ...]
MAX_KEY_VALUE: int

@overload
def client_address(
    request: None = None,
    *,
    trust_forwarded: bool = False,
    trusted_proxies: int = 1,
    ipv6_prefix: Optional[int] = 64,
) -> Callable[[Any], str]: ...
@overload
def client_address(
    request: Any,
    *,
    trust_forwarded: bool = False,
    trusted_proxies: int = 1,
    ipv6_prefix: Optional[int] = 64,
) -> str: ...
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
