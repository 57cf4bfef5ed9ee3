"""Concurrency leases: the Python side of ``Limiter.acquire`` and
``Limiter.lease`` (docs/python.md, "Leases").

The C handle lives in the native :class:`tollgate.Lease`, which frees it when
it dies (that does not release it). This module holds what ``acquire``
answers (:class:`LeaseResult`), the exception a denied ``with`` raises
(:class:`LeaseDenied`), the context manager (:class:`LeaseContext`) and the
asyncio twins. The C ABI has no asynchronous lease calls, so on a Redis
limiter the blocking C call runs in the event loop's default executor (the
extension releases the GIL around it) and the loop never blocks; a memory
limiter, which never waits on I/O, answers inline (as ``check_async`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ContextManager,
    Dict,
    Iterator,
    Optional,
    Set,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from . import _native
from ._errors import Error

if TYPE_CHECKING:
    from ._native import Period, Source

Key = Union[str, bytes]
T = TypeVar("T")


@dataclass(frozen=True)
class LeaseResult:
    """What :meth:`Limiter.acquire` answers. Immutable; truthy when acquired.

    Acquired: ``acquired`` True, ``lease`` the held :class:`tollgate.Lease`,
    ``retry_after`` 0.0. Denied (``max_in_flight`` leases of ``key`` are
    held): ``acquired`` False, ``lease`` None, ``retry_after`` the seconds
    until the earliest held lease ends by its ttl (a release may free a
    place sooner). ``in_flight`` is the leases of the key held after the
    call, the new one included (0 when the store was unavailable and the
    failure mode answered open or closed; the count in this process for
    ``"local"``); ``source`` which path answered (``"store"``, or
    ``"fail_open"`` / ``"fail_closed"`` / ``"local"``)."""

    key: Key
    acquired: bool
    lease: Optional[_native.Lease]
    in_flight: int
    max_in_flight: int
    retry_after_ms: int
    source: Source

    @property
    def retry_after(self) -> float:
        """Seconds until the earliest held lease ends (0.0 when acquired,
        at least 0.001 when denied)."""
        return self.retry_after_ms / 1000.0

    def __bool__(self) -> bool:
        return self.acquired


class LeaseDenied(Exception):
    """Raised by ``with limiter.lease(...)`` and ``async with`` when the
    lease is denied. ``result`` is the denied :class:`LeaseResult`;
    ``retry_after`` (seconds), ``retry_after_ms``, ``in_flight``,
    ``max_in_flight``, ``key`` and ``source`` are its fields. Not a
    :class:`tollgate.Error`: a denial is an answer, not a failure."""

    def __init__(self, result: LeaseResult) -> None:
        super().__init__(
            "lease denied: %d of %d leases of %r held (source %s); retry after %.3f s"
            % (result.in_flight, result.max_in_flight, result.key, result.source, result.retry_after)
        )
        self.result = result

    @property
    def retry_after(self) -> float:
        return self.result.retry_after

    @property
    def retry_after_ms(self) -> int:
        return self.result.retry_after_ms

    @property
    def key(self) -> Key:
        return self.result.key

    @property
    def in_flight(self) -> int:
        return self.result.in_flight

    @property
    def max_in_flight(self) -> int:
        return self.result.max_in_flight

    @property
    def source(self) -> Source:
        return self.result.source

    def __reduce__(self) -> Any:  # pickles with its result (lease None)
        return (type(self), (self.result,))


# ---- asyncio -------------------------------------------------------------


def _quiet_release(lease: _native.Lease) -> None:
    try:
        lease.release()
    except Error:  # it ends after its ttl anyway
        pass


def _release_abandoned(fut: asyncio.Future[Any]) -> None:
    """Done callback of an acquire whose awaiting task was cancelled: a lease
    it got is released off the loop (nobody will use it)."""
    if fut.cancelled() or fut.exception() is not None:
        return
    lease = fut.result().lease
    if lease is None:
        return
    try:
        asyncio.get_running_loop().run_in_executor(None, _quiet_release, lease)
    except RuntimeError:  # the loop or its executor is shutting down
        threading.Thread(target=_quiet_release, args=(lease,), daemon=True).start()


def _retrieve(fut: asyncio.Future[Any]) -> None:
    # A shielded call whose awaiter was cancelled: mark its error retrieved.
    if not fut.cancelled():
        fut.exception()


async def _shielded(call: Callable[[], T], on_cancel: Callable[[asyncio.Future[T]], None]) -> T:
    """Runs the blocking `call` in the loop's default executor. Cancelling
    the awaiting task does not stop it: `on_cancel` is then called with its
    future once it is done."""
    fut = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        fut.add_done_callback(on_cancel)
        raise


async def acquire_async(limiter: _native.Limiter, key: Key, *, max_in_flight: int, ttl: Period) -> LeaseResult:
    """acquire_async(key, *, max_in_flight, ttl) -> LeaseResult (a
    coroutine): :meth:`acquire` without blocking the event loop. If the
    awaiting task is cancelled, a lease acquired meanwhile is released."""
    call = functools.partial(limiter.acquire, key, max_in_flight=max_in_flight, ttl=ttl)
    if limiter.store == "memory":
        return call()
    return await _shielded(call, _release_abandoned)


async def renew_async(lease: _native.Lease, ttl: Optional[Period] = None) -> None:
    """renew_async(ttl=None) -> None (a coroutine): :meth:`renew` without
    blocking the event loop."""
    if lease._memory:
        return lease.renew(ttl)
    await asyncio.get_running_loop().run_in_executor(None, lease.renew, ttl)


async def release_async(lease: _native.Lease) -> bool:
    """release_async() -> bool (a coroutine): :meth:`release` without
    blocking the event loop. Cancelling the awaiting task does not stop the
    release."""
    if lease._memory:
        return lease.release()
    return await _shielded(lease.release, _retrieve)


# ---- Waiting for a lease (docs/waiting.md) ------------------------------------
#
# acquire_wait is the C rl_lease_acquire_wait (it blocks its thread).
# acquire_wait_async follows the same rule on the event loop: after a denial
# it sleeps 10 ms, then 20, 40, ... (never beyond the denial's retry_after
# nor the wait left) and tries again, and wakes at once when a lease of the
# same limiter is released in this process. The wake-up: the extension calls
# _released(core_id) after every successful release (any thread, any loop,
# sync or async); each limiter with asyncio waiters has a _Releases here (a
# release count and the futures of the waiters asleep), and every waiter's
# future is settled on its own loop with call_soon_threadsafe.

_FIRST_STEP_MS = 10
RETRY_NEVER = -1  # a denial's retry_after_ms when no wait can help


def _ceil_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up (the wait left, as the C rule has it)."""
    ms = int(seconds * 1000.0)
    return ms + 1 if ms < seconds * 1000.0 else ms


class _Releases:
    """The releases seen for one limiter while asyncio waiters watch it."""

    __slots__ = ("count", "users", "asleep")

    def __init__(self) -> None:
        self.count = 0  # releases since the first waiter came
        self.users = 0  # waiters watching
        self.asleep: Set[Tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()


_releases_lock = threading.Lock()
_releases: Dict[int, _Releases] = {}  # by the limiter's _core_id, while watched


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _released(core_id: int) -> None:
    """Called by the extension (with the GIL) after each successful lease
    release through the limiter whose _core_id is `core_id`. An entry
    exists only while a waiter holds that limiter, so the id is never a
    stale address."""
    with _releases_lock:
        r = _releases.get(core_id)
        if r is None:
            return
        r.count += 1
        asleep, r.asleep = r.asleep, set()
    for loop, fut in asleep:
        try:
            loop.call_soon_threadsafe(_wake, fut)
        except RuntimeError:  # that loop is closed: its waiter is gone
            pass


_native._set_release_hook(_released)


def _watch(core_id: int) -> _Releases:
    with _releases_lock:
        r = _releases.get(core_id)
        if r is None:
            r = _releases[core_id] = _Releases()
        r.users += 1
        return r


def _unwatch(core_id: int, r: _Releases) -> None:
    with _releases_lock:
        r.users -= 1
        if r.users == 0 and _releases.get(core_id) is r:
            del _releases[core_id]


async def _sleep_until_release(r: _Releases, seen: int, delay: float) -> None:
    """Sleeps `delay` seconds, or less if a release comes (or came since the
    count was `seen`)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    entry = (loop, fut)
    with _releases_lock:
        if r.count != seen:
            return
        r.asleep.add(entry)
    timer = loop.call_later(delay, _wake, fut)
    try:
        await fut
    finally:
        timer.cancel()
        with _releases_lock:
            r.asleep.discard(entry)


async def acquire_wait_async(
    limiter: _native.Limiter, key: Key, *, max_in_flight: int, ttl: Period, max_wait: Period
) -> LeaseResult:
    """acquire_wait_async(key, *, max_in_flight, ttl, max_wait) -> LeaseResult
    (a coroutine): :meth:`acquire_wait` without blocking the event loop. It
    follows the same rule with the loop's timers, and wakes at once when a
    lease of this limiter is released in this process (any thread or loop).
    Cancelling the awaiting task ends the wait; a lease acquired meanwhile
    is released."""
    max_wait_ms = _native._max_wait_ms(max_wait)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_ms / 1000.0
    step_ms = _FIRST_STEP_MS
    core_id = limiter._core_id
    watched = _watch(core_id)
    try:
        while True:
            seen = watched.count
            result = await acquire_async(limiter, key, max_in_flight=max_in_flight, ttl=ttl)
            if result.acquired or result.retry_after_ms == RETRY_NEVER:
                return result
            now = loop.time()
            if now >= deadline:
                return result
            left_ms = _ceil_ms(deadline - now)
            sleep_ms = min(max(1, result.retry_after_ms), step_ms, left_ms)
            step_ms = min(step_ms * 2, _native.MAX_WAIT_MS)
            await _sleep_until_release(watched, seen, min(deadline - now, sleep_ms / 1000.0))
    finally:
        _unwatch(core_id, watched)


# ---- with / async with -----------------------------------------------------


class LeaseContext:
    """What :meth:`Limiter.lease` returns. ``with`` (or ``async with``)
    acquires the lease, raising :class:`LeaseDenied` when it is denied, and
    releases it on exit, an exception included; ``as`` binds the
    :class:`tollgate.Lease`. With ``wait`` (seconds, a str or a timedelta)
    it waits up to that long for a place (:meth:`Limiter.acquire_wait`)
    before it raises. It holds one lease at a time (entering it again while
    held raises RuntimeError); ``lease`` is the held lease, or None;
    ``result`` the last acquire's :class:`LeaseResult`, or None."""

    __slots__ = ("_limiter", "_key", "_max_in_flight", "_ttl", "_wait", "_lease", "_result", "_busy")

    def __init__(
        self, limiter: _native.Limiter, key: Key, max_in_flight: int, ttl: Period, wait: Optional[Period] = None
    ) -> None:
        self._limiter = limiter
        self._key = key
        self._max_in_flight = max_in_flight
        self._ttl = ttl
        self._wait = wait
        self._lease: Optional[_native.Lease] = None
        self._result: Optional[LeaseResult] = None
        self._busy = False

    @property
    def lease(self) -> Optional[_native.Lease]:
        return self._lease

    @property
    def result(self) -> Optional[LeaseResult]:
        return self._result

    def __repr__(self) -> str:
        return "<tollgate.LeaseContext key=%r max_in_flight=%r ttl=%r%s%s>" % (
            self._key,
            self._max_in_flight,
            self._ttl,
            "" if self._wait is None else " wait=%r" % (self._wait,),
            " held" if self._lease is not None else "",
        )

    @contextlib.contextmanager
    def _entering(self) -> Iterator[None]:
        """Around the acquire of ``__enter__`` / ``__aenter__``: one lease
        at a time, and entered no more if the acquire raises."""
        if self._busy:
            raise RuntimeError("this limiter.lease(...) is already entered: make one per with block")
        self._busy = True
        try:
            yield
        except BaseException:
            self._busy = False
            raise

    def _acquire(self, plain: Callable[..., T], waiting: Callable[..., T]) -> T:
        """`plain` (acquire's arguments) without ``wait``, else `waiting`
        (with ``max_wait``): the limiter's calls, or their asyncio twins."""
        if self._wait is None:
            return plain(self._key, max_in_flight=self._max_in_flight, ttl=self._ttl)
        return waiting(self._key, max_in_flight=self._max_in_flight, ttl=self._ttl, max_wait=self._wait)

    def _take(self, result: LeaseResult) -> _native.Lease:
        self._result = result
        if result.lease is None:
            self._busy = False
            raise LeaseDenied(result)
        self._lease = result.lease
        return result.lease

    def _finish(self) -> Optional[_native.Lease]:
        lease, self._lease, self._busy = self._lease, None, False
        return None if lease is None or lease.released else lease

    @staticmethod
    def _releasing(exc_type: Optional[Type[BaseException]]) -> ContextManager[Any]:
        """What the release on exit runs under: a failed release raises,
        except after the body's exception, which goes on (the lease ends
        after its ttl)."""
        return contextlib.nullcontext() if exc_type is None else contextlib.suppress(Error)

    def __enter__(self) -> _native.Lease:
        with self._entering():
            result = self._acquire(self._limiter.acquire, self._limiter.acquire_wait)
        return self._take(result)

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        lease = self._finish()
        if lease is not None:
            with self._releasing(exc_type):
                lease.release()

    async def __aenter__(self) -> _native.Lease:
        with self._entering():
            result = await self._acquire(
                functools.partial(acquire_async, self._limiter), functools.partial(acquire_wait_async, self._limiter)
            )
        return self._take(result)

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        lease = self._finish()
        if lease is not None:
            with self._releasing(exc_type):
                await release_async(lease)


def lease(
    limiter: _native.Limiter, key: Key, *, max_in_flight: int, ttl: Period, wait: Optional[Period] = None
) -> LeaseContext:
    """lease(key, *, max_in_flight, ttl, wait=None) -> LeaseContext

    ``with limiter.lease(key, max_in_flight=..., ttl=...) as lease:`` (or
    ``async with``) acquires a lease (:meth:`acquire`'s arguments), raises
    :class:`LeaseDenied` when it is denied, and releases it on exit, an
    exception included. With ``wait`` (0 to 2^40 ms, as ``max_wait`` of
    :meth:`acquire_wait`) it first waits up to that long for a place, and
    raises :class:`LeaseDenied` only if none freed in time."""
    if wait is not None:
        _native._max_wait_ms(wait, "wait")  # a bad wait raises here, by its name
    return LeaseContext(limiter, key, max_in_flight, ttl, wait)


__all__ = ("LeaseResult", "LeaseDenied", "LeaseContext")
