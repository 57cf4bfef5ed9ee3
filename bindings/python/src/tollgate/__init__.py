"""tollgate: a rate limiter that many servers and many languages share.

    >>> import tollgate
    >>> limiter = tollgate.Limiter()                      # in-process memory store
    >>> per_hour = tollgate.Policy(100, "1h")
    >>> d = limiter.check("org-123", per_hour)
    >>> d.allowed, d.remaining
    (True, 99)

Point the limiter at Redis (``Limiter("redis://host:6379/0")``) and every
process, in any language, that uses the same Redis enforces the same limit on
the same keys. This package is a thin layer over tollgate's C library: the
decisions are the library's, byte for byte.

Metrics: ``limiter.metrics()`` reads the library's series (decisions per
policy name, decision and source; errors; each Redis node's state and
round-trip histogram) as :class:`MetricSample` objects with their Prometheus
names. ``tollgate.prometheus.TollgateCollector`` exports them through
prometheus_client (``pip install tollgate[prometheus]``),
``tollgate.opentelemetry.TollgateInstruments`` through the OpenTelemetry
API (``pip install tollgate[opentelemetry]``). ``Limiter(metrics=False)``
stops counting decisions per policy.

Logs: a Redis limiter logs each episode of its store once (a node
unreachable and reconnected, the failure mode entered and left) to the
standard logger ``tollgate`` (``logging.getLogger("tollgate")``), or to its
``logger`` option's; configure it with :mod:`logging`.

The ``tollgate`` command (docs/cli.md) comes with the package: ``tollgate
peek KEY POLICY --url redis://...`` and the rest, from a shell.
"""

from __future__ import annotations

from typing import Union

from . import _native
from ._errors import (
    AuthError,
    BusyError,
    Error,
    InvalidArgument,
    LeaseLost,
    NothingToRefund,
    ProtocolError,
    TLSError,
    TollgateConnectionError,
    TollgateTimeoutError,
    UnsupportedError,
)
from ._leases import LeaseContext, LeaseDenied, LeaseResult
from ._metrics import MetricSample
from ._native import Decision, Lease, Policy
from ._types import KeyState

__version__ = "0.1.0"

#: The version of the C library compiled into this package.
LIBRARY_VERSION: str = _native.VERSION

Key = Union[str, bytes]

# Limiter is the native class (its options are checked by _options.py).
Limiter = _native.Limiter

# (Decision is a static C type already named tollgate.Decision.)
for _cls in (
    Limiter,
    Policy,
    KeyState,
    Error,
    TollgateConnectionError,
    TollgateTimeoutError,
    AuthError,
    TLSError,
    ProtocolError,
    InvalidArgument,
    UnsupportedError,
    NothingToRefund,
    BusyError,
    Lease,
    LeaseResult,
    LeaseDenied,
    LeaseLost,
    LeaseContext,
    MetricSample,
):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "Limiter",
    "Policy",
    "Decision",
    "KeyState",
    "Key",
    "Error",
    "TollgateConnectionError",
    "TollgateTimeoutError",
    "AuthError",
    "TLSError",
    "ProtocolError",
    "InvalidArgument",
    "UnsupportedError",
    "NothingToRefund",
    "BusyError",
    "Lease",
    "LeaseResult",
    "LeaseDenied",
    "LeaseLost",
    "LeaseContext",
    "MetricSample",
    "LIBRARY_VERSION",
    "__version__",
]


# ---- asyncio -------------------------------------------------------------
#
# check_async rides on the C library's async entry point: the completion
# runs on tollgate's I/O thread, queues the result without the GIL and bumps
# an eventfd (once per batch). Each event loop that awaits a check watches
# that fd (loop.add_reader); its reader (Limiter._async_drain, in C) drains
# the queue on the loop's own thread and resolves the futures. No thread per
# call, and the loop never blocks. A memory-store check is answered at once.

import asyncio as _asyncio
import weakref as _weakref

from ._leases import RETRY_NEVER as _RETRY_NEVER
from ._leases import _ceil_ms


def _deliver(fut: "_asyncio.Future[Decision]", value: object, exc: object) -> None:
    """Settles `fut` on its own loop (a result drained by another loop)."""
    if fut.done():  # cancelled meanwhile: the result is dropped
        return
    if exc is not None:
        fut.set_exception(exc)  # type: ignore[arg-type]
    else:
        fut.set_result(value)  # type: ignore[arg-type]


def _async_watch(limiter: "_native.Limiter", loop: "_asyncio.AbstractEventLoop") -> None:
    """Makes `loop` watch the limiter's eventfd (once per loop)."""
    state = limiter._async_state
    if "loops" not in state:
        state["loops"] = _weakref.WeakSet()
        state["close"] = _async_close
    loops = state["loops"]
    if loop not in loops:
        loop.add_reader(limiter._async_fd(), limiter._async_drain)
        loops.add(loop)


def _async_close(limiter: "_native.Limiter") -> None:
    # Called by close() after rl_destroy answered every pending check.
    limiter._async_drain()
    state = limiter._async_state
    fd = limiter._async_fd()
    for loop in list(state.get("loops", ())):
        if not loop.is_closed():
            try:
                loop.remove_reader(fd)
            except (RuntimeError, ValueError):
                pass
    state.get("loops", _weakref.WeakSet()).clear()


async def _check_async(
    self: "_native.Limiter", key: Key, *policies: Policy, cost: int = 1
) -> Decision:
    """check_async(key, *policies, cost=1) -> Decision (a coroutine)

    The same check as check(), without blocking the event loop: Redis checks
    complete on tollgate's I/O thread and are handed to this loop through an
    eventfd it watches. Cancelling the awaiting task is safe: the result,
    when it arrives, is dropped (a check already sent may still be charged).
    """
    started = self._async_start(key, *policies, cost=cost)
    if type(started) is Decision:  # the memory store answers at once
        return started
    return await started


Limiter.check_async = _check_async  # type: ignore[attr-defined]


async def _check_keys_async(self: "_native.Limiter", pairs: object, *, cost: int = 1) -> Decision:
    """check_keys_async(pairs, *, cost=1) -> Decision (a coroutine)

    :meth:`check_keys` without blocking the event loop, as
    :meth:`check_async` is to :meth:`check`.
    """
    started = self._async_start_keys(pairs, cost=cost)
    if type(started) is Decision:  # the memory store answers at once
        return started
    return await started


Limiter.check_keys_async = _check_keys_async  # type: ignore[attr-defined]


async def _check_wait_async(
    self: "_native.Limiter", key: Key, *policies: Policy, max_wait: object, cost: int = 1
) -> Decision:
    """check_wait_async(key, *policies, max_wait, cost=1) -> Decision (a coroutine)

    :meth:`check_wait` without blocking the event loop: the same rule
    (docs/waiting.md) with the loop's timers. After a denial it sleeps the
    decision's retry_after (``asyncio.sleep``) and checks again; it returns
    the denial at once when retry_after is math.inf or longer than the wait
    left, and the first allowed decision as soon as it comes. Cancelling the
    awaiting task ends the wait (a check already sent may still be charged,
    as with check_async).
    """
    max_wait_ms = _native._max_wait_ms(max_wait)
    loop = _asyncio.get_running_loop()
    deadline = loop.time() + max_wait_ms / 1000.0
    while True:
        d = await _check_async(self, key, *policies, cost=cost)
        if d.allowed or d.retry_after_ms == _RETRY_NEVER:
            return d
        now = loop.time()
        if now >= deadline:
            return d
        sleep_ms = max(1, d.retry_after_ms)
        if sleep_ms > _ceil_ms(deadline - now):  # it cannot pass in time
            return d
        await _asyncio.sleep(min(deadline - now, sleep_ms / 1000.0))


Limiter.check_wait_async = _check_wait_async  # type: ignore[attr-defined]


def _refund_amount(amount: object) -> int:
    if type(amount) is not int:
        raise TypeError("amount must be an int, not %s" % type(amount).__name__)
    if amount < 1:
        raise InvalidArgument("amount: must be >= 1 (got %d)" % amount, "RL_E_INVALID_ARG")
    return -amount


def _refund(self: "_native.Limiter", key: Key, *policies: Policy, amount: int = 1) -> Decision:
    """refund(key, *policies, amount=1) -> Decision

    Gives ``amount`` units back to every policy of ``key`` that has usage,
    never beyond full, atomically (the same as ``check(..., cost=-amount)``;
    docs/algorithms.md, "Refunds"): a request that failed is not counted.
    The decision is allowed and reports the state after the refund. Raises
    :class:`NothingToRefund` if no policy had usage to give back.
    """
    return self.check(key, *policies, cost=_refund_amount(amount))


async def _refund_async(self: "_native.Limiter", key: Key, *policies: Policy, amount: int = 1) -> Decision:
    """refund_async(key, *policies, amount=1) -> Decision (a coroutine):
    :meth:`refund` without blocking the event loop."""
    return await _check_async(self, key, *policies, cost=_refund_amount(amount))


# ---- Allow and deny lists (docs/exemptions.md) -------------------------------

from . import _options

_LIST_ALLOW = 1  # RL_LIST_ALLOW
_LIST_DENY = 2  # RL_LIST_DENY


def _set_allow_list(self: "_native.Limiter", entries: object) -> None:
    """set_allow_list(entries) -> None

    Replace the limiter's allow list: a check of a key on it is allowed
    without a store call and charges nothing (``source`` "allow_list").
    ``entries``: an iterable of exact keys, IPv4 / IPv6 addresses and CIDR
    ranges ("10.0.0.0/8", "2001:db8::/32"), as str or ipaddress objects;
    empty clears the list. A bad entry raises :class:`InvalidArgument`
    naming it by index (``entries[2]``) and leaves the list unchanged.
    """
    self._set_list(_LIST_ALLOW, _options.list_entries(entries, "entries"))  # type: ignore[arg-type]


def _set_deny_list(self: "_native.Limiter", entries: object) -> None:
    """set_deny_list(entries) -> None

    Replace the limiter's deny list: a check of a key on it is denied
    without a store call (``source`` "deny_list", ``retry_after``
    math.inf); it wins over the allow list. Entries as for
    :meth:`set_allow_list`.
    """
    self._set_list(_LIST_DENY, _options.list_entries(entries, "entries"))  # type: ignore[arg-type]


Limiter.set_allow_list = _set_allow_list  # type: ignore[attr-defined]
Limiter.set_deny_list = _set_deny_list  # type: ignore[attr-defined]

Limiter.refund = _refund  # type: ignore[attr-defined]
Limiter.refund_async = _refund_async  # type: ignore[attr-defined]
rate_limit_headers = _native.rate_limit_headers
__all__ += ["rate_limit_headers"]


# ---- Concurrency leases (tollgate/_leases.py) ------------------------------
#
# acquire / renew / release are native (the C handle is freed when the Lease
# dies, and every call releases the GIL); the LeaseResult that acquire
# answers, the context manager and the asyncio twins are Python.

from . import _leases

Limiter.lease = _leases.lease  # type: ignore[attr-defined]
Limiter.acquire_async = _leases.acquire_async  # type: ignore[attr-defined]
Limiter.acquire_wait_async = _leases.acquire_wait_async  # type: ignore[attr-defined]
Lease.renew_async = _leases.renew_async  # type: ignore[attr-defined]
Lease.release_async = _leases.release_async  # type: ignore[attr-defined]
