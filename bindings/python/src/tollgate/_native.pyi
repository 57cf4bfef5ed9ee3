"""Type stubs of tollgate._native, the extension over tollgate.h."""

import datetime
import ipaddress
import logging
import os
from typing import Callable, Dict, Iterable, Iterator, List, Literal, Optional, Sequence, Tuple, TypedDict, Union

from ._leases import LeaseContext, LeaseResult
from ._metrics import MetricSample
from ._types import KeyState

Key = Union[str, bytes]
#: One pair of Limiter.check_keys: a key and its policy (or policies).
KeyPolicies = Tuple[Key, Union["Policy", Sequence["Policy"]]]
Period = Union[int, float, str, datetime.timedelta]
Algorithm = Literal["gcra", "token_bucket", "fixed_window", "sliding_window"]
Source = Literal["store", "deny_cache", "fail_open", "fail_closed", "local", "allow_list", "deny_list"]
#: An allow or deny list entry: an exact key, an IP address or a CIDR range.
ListEntry = Union[
    str,
    bytes,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
]
FailureMode = Literal["open", "closed", "local", "error"]
Connection = Literal["none", "connecting", "ready", "down"]

class HealthNode(TypedDict):
    """One Redis node of ``Limiter.health()["nodes"]`` (stub only)."""

    address: str  # "host:port", or the unix socket path
    role: Literal["primary", "other"]  # other: a seed, a replica, a former primary
    connection: Connection  # "none": not connected to yet
    in_flight: int
    errors: int
    reconnects: int
    last_error: str

class HealthInfo(TypedDict):
    """What ``Limiter.health()`` returns (stub only: a plain dict at run time)."""

    store: Literal["memory", "redis"]
    connection: Connection
    checks: int
    allowed: int
    denied: int
    errors: int
    live_keys: int
    evictions: int
    in_flight: int
    reconnects: int
    last_ping: Optional[float]
    store_errors: int
    fail_open: int
    fail_closed: int
    local_fallback: int
    deny_cache_hits: int
    shadow_denied: int  # would-be denials answered allowed by shadow mode
    list_allowed: int  # checks answered by the allow list
    list_denied: int  # checks answered by the deny list
    async_pending: int  # async checks waiting for the store (<= max_async)
    async_refused: int  # async checks refused with BusyError (RL_E_BUSY)
    server_version: str
    last_error: str
    topology: Literal["memory", "standalone", "cluster", "sentinel"]
    slot_map_age_ms: Optional[int]  # cluster: None until a slot map is read
    slot_map_refreshes: int
    moved: int
    ask: int
    master_switches: int  # sentinel: moves to another master
    nodes: List[HealthNode]

VERSION: str
VERSION_NUMBER: int
HEADER_VERSION_NUMBER: int
ERROR_CODES: Dict[str, int]
MAX_POLICIES: int
MAX_KEYS: int
FAILURE_MODES: Dict[str, int]
MAX_WAIT_MS: int

def strerror(code: int) -> str: ...
def _max_wait_ms(value: Period, what: str = "max_wait") -> int: ...
def _set_release_hook(hook: Optional[Callable[[int], None]]) -> None: ...

class Policy:
    """A rate limit: at most `limit` units per `period`."""

    def __init__(
        self,
        limit: int,
        period: Period,
        algorithm: Algorithm = "gcra",
        burst: Optional[int] = None,
        *,
        name: Optional[str] = None,
        block: Optional[Period] = None,
        strikes: Optional[int] = None,
        strikes_period: Optional[Period] = None,
        shadow: bool = False,
    ) -> None: ...
    @staticmethod
    def parse(text: str) -> "Policy":
        """A policy from the library's text syntax, e.g. "100/h",
        "10/s burst=20", "5000/d sliding_window", "100/h name=hourly",
        "5/m block=15m strikes=3/h" or "100/h shadow"."""
    @property
    def limit(self) -> int: ...
    @property
    def period(self) -> float:
        """The period in seconds."""
    @property
    def period_ms(self) -> int: ...
    @property
    def algorithm(self) -> Algorithm: ...
    @property
    def burst(self) -> Optional[int]: ...
    @property
    def name(self) -> Optional[str]:
        """The policy's identity under a key, or None (known by its position)."""
    @property
    def block(self) -> Optional[float]:
        """Seconds a denial by this policy blocks the key, or None."""
    @property
    def block_ms(self) -> Optional[int]: ...
    @property
    def strikes(self) -> Optional[int]:
        """The denial within one strikes_period that starts the block, or None (the first)."""
    @property
    def strikes_period(self) -> Optional[float]:
        """The window strikes are counted in, in seconds, or None."""
    @property
    def strikes_period_ms(self) -> Optional[int]: ...
    @property
    def shadow(self) -> bool:
        """True in shadow mode: evaluated and its state kept as if enforced,
        but its denial does not deny the check (decision.shadow says so)."""
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __getstate__(
        self,
    ) -> Union[
        Tuple[int, int, str, int, Optional[str], int, int, int],
        Tuple[int, int, str, int, Optional[str], int, int, int, bool],
    ]: ...
    def __setstate__(
        self,
        state: Union[
            Tuple[int, int, str, int],
            Tuple[int, int, str, int, Optional[str]],
            Tuple[int, int, str, int, Optional[str], int, int, int],
            Tuple[int, int, str, int, Optional[str], int, int, int, bool],
        ],
    ) -> None: ...

class Decision:
    """The answer to a check. Immutable; bool(decision) is decision.allowed."""

    @property
    def allowed(self) -> bool: ...
    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float:
        """Seconds until the state is back to full (0.0 if full)."""
    @property
    def retry_after(self) -> float:
        """Seconds before the same call can pass; 0.0 if allowed (a shadow
        decision: the would-be denial's), math.inf if never."""
    @property
    def reset_after_ms(self) -> int: ...
    @property
    def retry_after_ms(self) -> int:
        """Milliseconds; -1 (RL_RETRY_NEVER) if never."""
    @property
    def source(self) -> Source: ...
    @property
    def policy_index(self) -> int:
        """The reported policy's index in the check's policies (check_keys:
        every pair's policies back to back, pair 0's first)."""
    @property
    def shadow(self) -> bool:
        """True if allowed only because what denied the call is in shadow
        mode (a shadow Policy, or a Limiter with shadow=True); limit,
        remaining, reset_after, retry_after and policy_index then describe
        the would-be denial."""
    def __bool__(self) -> bool: ...
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class KeysIterator(Iterator[KeyState]):
    def __iter__(self) -> "KeysIterator": ...
    def __next__(self) -> KeyState: ...
    def close(self) -> None: ...

class Lease:
    """A held concurrency lease (LeaseResult.lease, or `with
    Limiter.lease(...) as lease`): held until released or until its ttl
    passes without a renew. The C handle is freed when the object dies;
    that does not release it."""

    @property
    def key(self) -> Key: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def in_flight(self) -> int:
        """Leases of the key held just after this one was acquired (itself
        included; 0 for a fail-open lease, the count in this process for a
        local one)."""
    @property
    def ttl(self) -> float:
        """Seconds it lasts from its acquire or last renew."""
    @property
    def ttl_ms(self) -> int: ...
    @property
    def source(self) -> Source:
        """"store", or "fail_open" / "local" when the store was unavailable."""
    @property
    def released(self) -> bool:
        """True once release() returned."""
    @property
    def _memory(self) -> bool: ...
    def renew(self, ttl: Optional[Period] = None) -> None:
        """Extend it to end `ttl` from now (None: its ttl); LeaseLost if it
        is no longer held."""
    async def renew_async(self, ttl: Optional[Period] = None) -> None: ...
    def release(self) -> bool:
        """End it; True if it was held until now, False if it had expired
        or was released already."""
    async def release_async(self) -> bool: ...

class Limiter:
    """A rate limiter over one store (memory, or Redis by URL)."""

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        max_keys: Optional[int] = ...,
        max_key_len: Optional[int] = ...,
        shards: Optional[int] = ...,
        connect_timeout_ms: Optional[int] = ...,
        timeout_ms: Optional[int] = ...,
        key_prefix: Optional[str] = ...,
        failure_mode: Optional[FailureMode] = ...,
        local_divisor: Optional[int] = ...,
        deny_cache: Optional[bool] = ...,
        deny_cache_size: Optional[int] = ...,
        connections: Optional[int] = ...,
        reconnect_max_ms: Optional[int] = ...,
        username: Optional[str] = ...,
        password: Optional[str] = ...,
        tls_ca_file: Optional[Union[str, os.PathLike[str]]] = ...,
        tls_ca_dir: Optional[Union[str, os.PathLike[str]]] = ...,
        tls_cert_file: Optional[Union[str, os.PathLike[str]]] = ...,
        tls_key_file: Optional[Union[str, os.PathLike[str]]] = ...,
        tls_server_name: Optional[str] = ...,
        tls_verify: Optional[bool] = ...,
        clock: Optional[Callable[[], int]] = ...,
        spin_us: Optional[int] = ...,
        max_async: Optional[int] = ...,
        driver: Optional[Literal["auto", "loop", "thread"]] = ...,
        shadow: Optional[bool] = ...,
        allow: Optional[Iterable[ListEntry]] = ...,
        deny: Optional[Iterable[ListEntry]] = ...,
        metrics: Optional[bool] = ...,
        logger: Optional[Union[logging.Logger, "logging.LoggerAdapter[logging.Logger]"]] = ...,
    ) -> None: ...
    def set_allow_list(self, entries: Iterable[ListEntry]) -> None:
        """Replace the allow list (keys, addresses, CIDR ranges): listed keys
        are allowed without a store call, nothing charged."""
    def set_deny_list(self, entries: Iterable[ListEntry]) -> None:
        """Replace the deny list: listed keys are denied without a store
        call (retry_after math.inf); it wins over the allow list."""
    def _set_list(self, list: int, entries: List[bytes], what: str = "") -> None: ...
    def check(self, key: Key, *policies: Policy, cost: int = 1) -> Decision: ...
    async def check_async(
        self, key: Key, *policies: Policy, cost: int = 1
    ) -> Decision: ...
    def check_wait(self, key: Key, *policies: Policy, max_wait: Period, cost: int = 1) -> Decision:
        """check() that waits up to max_wait (0 to 2^40 ms) for the check to
        be allowed, sleeping each denial's retry_after (docs/waiting.md);
        the denial at once when retry_after is math.inf or longer than the
        wait left. Blocks the thread (the GIL released)."""
    async def check_wait_async(
        self, key: Key, *policies: Policy, max_wait: Period, cost: int = 1
    ) -> Decision:
        """check_wait() on the event loop's timers: never blocks the loop."""
    def check_keys(self, pairs: Sequence[KeyPolicies], *, cost: int = 1) -> Decision:
        """Several (key, policies) pairs in one decision, all or nothing;
        policy_index counts the policies pair by pair."""
    async def check_keys_async(self, pairs: Sequence[KeyPolicies], *, cost: int = 1) -> Decision: ...
    def refund(self, key: Key, *policies: Policy, amount: int = 1) -> Decision: ...
    async def refund_async(
        self, key: Key, *policies: Policy, amount: int = 1
    ) -> Decision: ...
    def reset(self, key: Key) -> None: ...
    def block(self, key: Key, duration: Period) -> None: ...
    def unblock(self, key: Key) -> None: ...
    def acquire(self, key: Key, *, max_in_flight: int, ttl: Period) -> LeaseResult:
        """Acquire a lease if fewer than max_in_flight leases of key are held:
        a truthy LeaseResult with its lease, else a falsy one (lease None)
        with retry_after."""
    async def acquire_async(self, key: Key, *, max_in_flight: int, ttl: Period) -> LeaseResult: ...
    def acquire_wait(self, key: Key, *, max_in_flight: int, ttl: Period, max_wait: Period) -> LeaseResult:
        """acquire() that waits up to max_wait (0 to 2^40 ms) for a place:
        tries after 10 ms, 20, 40, ... (never beyond retry_after nor the
        wait left), and at once on a release of this limiter in this
        process. Blocks the thread (the GIL released)."""
    async def acquire_wait_async(
        self, key: Key, *, max_in_flight: int, ttl: Period, max_wait: Period
    ) -> LeaseResult:
        """acquire_wait() on the event loop's timers: never blocks the loop;
        a cancelled wait releases a lease it got."""
    def lease(
        self, key: Key, *, max_in_flight: int, ttl: Period, wait: Optional[Period] = None
    ) -> LeaseContext:
        """`with` / `async with`: acquire (waiting up to `wait` when given;
        LeaseDenied if denied), release on exit."""
    def renew(self, lease: Lease, ttl: Optional[Period] = None) -> None: ...
    def release(self, lease: Lease) -> bool: ...
    def ping(self) -> float: ...
    def health(self) -> HealthInfo: ...
    def metrics(self) -> List[MetricSample]:
        """Every series of the limiter's metrics now, as Prometheus names
        them (one snapshot, no I/O): tollgate_checks_total{policy, decision,
        source} (absent with metrics=False), errors, the memory store's keys,
        each Redis node's state and round-trip histogram, ..."""
    def keys(
        self, policies: Union[Policy, Sequence[Policy]], /, *, raw: bool = False
    ) -> KeysIterator: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Limiter": ...
    def __exit__(self, *exc_info: object) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def store(self) -> Literal["memory", "redis"]: ...
    @property
    def driver(self) -> Literal["loop", "thread", "none"]:
        """Who reads the Redis replies of check_async: "loop" (the running
        asyncio loop's thread, through loop.add_reader), "thread" (tollgate's
        I/O thread) or "none" (the memory store)."""
    @property
    def shadow(self) -> bool:
        """True if the whole limiter is in shadow mode (Limiter(shadow=True))."""
    @property
    def _core_id(self) -> int: ...

def rate_limit_headers(
    decision: Decision, policy: Policy, name: str = "default"
) -> Dict[str, str]: ...
