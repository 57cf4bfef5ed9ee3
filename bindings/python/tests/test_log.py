"""The log hook in Python: a Redis limiter sends what the C library logs
(docs/metrics.md, "Logs") to the standard logger named "tollgate" (or the
`logger` option's). Real redis-servers, killed and restarted by PID: each
episode logged exactly once each way however many checks meet it, the
levels, nothing after close(), no password in any message, nothing from the
memory store; no deadlock when a handler is slow (the I/O thread waits for
the GIL while the library holds the hook's lock) nor when a handler calls
its own limiter; a fork and the interpreter's exit while a handler runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable, Iterator, List, Optional

import pytest

import tollgate
from tollgate import Limiter, Policy

from conftest import REDIS_SERVER, RedisServer, needs_redis

PASSWORD = "s3cret-py-log-pw"
POLICY = Policy(1000, "1s")


class Records(logging.Handler):
    """Keeps every record it is given (from any thread); `on_emit` runs in
    emit() first (a slow handler, one that calls the limiter)."""

    def __init__(self, on_emit: Optional[Callable[[logging.LogRecord], None]] = None) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []
        self.on_emit = on_emit
        self.finished_at: List[float] = []  # when each emit() returned

    def emit(self, record: logging.LogRecord) -> None:
        if self.on_emit is not None:
            self.on_emit(record)
        self.records.append(record)
        self.finished_at.append(time.monotonic())

    def count(self, level: int, part: str) -> int:
        return sum(1 for r in list(self.records) if r.levelno == level and part in r.getMessage())

    def text(self) -> str:
        return "\n".join("%s %s %s" % (r.levelname, r.name, r.getMessage()) for r in list(self.records))


@pytest.fixture
def tollgate_logger() -> Iterator[logging.Logger]:
    """The "tollgate" logger at DEBUG for the test, as it was after."""
    logger = logging.getLogger("tollgate")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(level)


@pytest.fixture
def records(tollgate_logger: logging.Logger) -> Iterator[Records]:
    """A Records handler on the "tollgate" logger."""
    h = Records()
    tollgate_logger.addHandler(h)
    yield h
    tollgate_logger.removeHandler(h)


@pytest.fixture
def auth_server() -> Iterator[RedisServer]:
    """A password-protected server of the test's own (to kill and restart)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(password=PASSWORD)
    yield server
    server.stop()


def limiter(url: str, **options: object) -> Limiter:
    """A fail-open limiter that notices an outage fast."""
    opts = dict(
        failure_mode="open", deny_cache=False, connect_timeout_ms=200, timeout_ms=200, reconnect_max_ms=100
    )
    opts.update(options)
    return Limiter(url, **opts)  # type: ignore[arg-type]


def wait_until(cond: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def until_store_answers(lim: Limiter, seconds: float = 10.0) -> None:
    assert wait_until(lambda: lim.check("k", POLICY).source == "store", seconds), "the store never answered again"


def outage(lim: Limiter, server: RedisServer, checks: int = 100) -> int:
    """Kills the server and checks `checks` times over about a second (the
    reconnection attempts go on meanwhile); the fail-open answers."""
    server.kill()
    answered_without = 0
    for _ in range(checks):
        answered_without += lim.check("k", POLICY).source == "fail_open"
        time.sleep(0.01)
    return answered_without


@needs_redis
def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(auth_server, records):
    url = auth_server.url
    assert PASSWORD in url
    with limiter(url) as lim:
        for _ in range(20):
            assert lim.check("k", POLICY).source == "store"
        assert records.records == []  # nothing happened

        assert outage(lim, auth_server) >= 95
        assert wait_until(lambda: records.count(logging.WARNING, " is unreachable (") == 1)
        time.sleep(0.3)  # more reconnection attempts fail meanwhile
        assert records.count(logging.WARNING, " is unreachable (") == 1, records.text()
        assert records.count(logging.WARNING, "the store cannot answer") == 1, records.text()
        assert records.count(logging.WARNING, "allowing every check (fail open)") == 1, records.text()

        auth_server.restart()
        until_store_answers(lim)
        for _ in range(20):
            assert lim.check("k", POLICY).source == "store"
        where = "127.0.0.1:%d" % auth_server.port
        assert wait_until(lambda: records.count(logging.INFO, "reconnected to %s after " % where) == 1)
        assert records.count(logging.INFO, "the store answers again after") == 1, records.text()
        assert records.count(logging.INFO, " check(s) were answered without it meanwhile") == 1
        assert records.count(logging.WARNING, "the store cannot answer") == 1
        assert len(records.records) == 4, records.text()

        # A second outage is a second episode.
        outage(lim, auth_server, checks=10)
        assert records.count(logging.WARNING, "the store cannot answer") == 2, records.text()

    for r in records.records:
        assert r.name == "tollgate"
        # The library's text, without its "tollgate: " prefix (the logger's
        # name says it); never the password, nor the URL that holds it.
        message = r.getMessage()
        assert not message.startswith("tollgate:"), message
        assert PASSWORD not in message and PASSWORD not in logging.Formatter().format(r)
        assert r.args in (None, (), {})


@needs_redis
def test_caplog_sees_the_episode_at_warning_and_info(own_redis, caplog):
    caplog.set_level(logging.INFO, logger="tollgate")
    with limiter(own_redis.url) as lim:
        lim.check("k", POLICY)
        outage(lim, own_redis, checks=20)
        own_redis.restart()
        until_store_answers(lim)
        assert wait_until(lambda: any("reconnected to" in r.getMessage() for r in caplog.records))
    got = sorted((r.levelname, r.getMessage().split(" (")[0].split(" after")[0]) for r in caplog.records)
    where = "127.0.0.1:%d" % own_redis.port
    assert got == [
        ("INFO", "reconnected to " + where),
        ("INFO", "the store answers again"),
        ("WARNING", where + " is unreachable"),
        ("WARNING", "the store cannot answer"),
    ], caplog.text


@needs_redis
def test_the_logger_level_filters_and_applies_at_once(own_redis, tollgate_logger, records):
    tollgate_logger.setLevel(logging.WARNING)
    with limiter(own_redis.url) as lim:
        lim.check("k", POLICY)
        outage(lim, own_redis, checks=20)
        own_redis.restart()
        until_store_answers(lim)
        time.sleep(0.2)
        assert records.count(logging.WARNING, "the store cannot answer") == 1, records.text()
        assert [r for r in records.records if r.levelno < logging.WARNING] == []  # below the level
        # Read at each message: the next episode's INFO lines come through.
        tollgate_logger.setLevel(logging.INFO)
        outage(lim, own_redis, checks=20)
        own_redis.restart()
        until_store_answers(lim)
        assert wait_until(lambda: records.count(logging.INFO, "reconnected to") == 1), records.text()
        assert records.count(logging.INFO, "the store answers again") == 1


@needs_redis
def test_the_logger_option(own_redis, tollgate_logger, records):
    mine = logging.getLogger("tollgate.test-sessions")  # propagates to "tollgate"
    other = logging.getLogger("tollgate-test-elsewhere")
    other.setLevel(logging.DEBUG)
    other.propagate = False
    elsewhere = Records()
    other.addHandler(elsewhere)
    try:
        with limiter(own_redis.url, logger=mine) as a, limiter(
            own_redis.url, logger=logging.LoggerAdapter(other, {"limiter": "b"})
        ) as b, limiter(own_redis.url, logger=None) as c:
            for lim in (a, b, c):
                lim.check("k", POLICY)
            own_redis.kill()
            for lim in (a, b, c):
                for _ in range(5):
                    assert lim.check("k", POLICY).source == "fail_open"
            assert wait_until(lambda: records.count(logging.WARNING, "is unreachable") == 2)
            assert wait_until(lambda: elsewhere.count(logging.WARNING, "is unreachable") == 1)
        assert sorted(r.name for r in records.records if "cannot answer" in r.getMessage()) == [
            "tollgate",
            "tollgate.test-sessions",
        ]
        assert [r.name for r in elsewhere.records if "cannot answer" in r.getMessage()] == [
            "tollgate-test-elsewhere"
        ]
        assert all(getattr(r, "limiter", None) == "b" for r in elsewhere.records)
    finally:
        other.removeHandler(elsewhere)

    for bad in ("tollgate", print, 1, True):
        with pytest.raises(TypeError, match="logger must be a logging.Logger or a logging.LoggerAdapter, not"):
            Limiter(own_redis.url, logger=bad)
    # Any store takes it; the memory store logs nothing.
    Limiter(logger=mine).close()


def test_the_memory_store_logs_nothing(tollgate_logger, records):
    with Limiter(max_keys=2) as lim:
        for i in range(50):
            lim.check("k%d" % (i % 5), Policy(1, "1h"))  # evictions, denials
        lim.health()
        lim.metrics()
    with Limiter(logger=tollgate_logger) as lim:
        lim.check("k", POLICY)
    assert records.records == []


@needs_redis
def test_nothing_is_logged_after_close(own_redis, records):
    lim = limiter(own_redis.url)
    lim.check("k", POLICY)
    outage(lim, own_redis, checks=20)
    assert wait_until(lambda: records.count(logging.WARNING, "is unreachable") == 1)
    lim.close()  # the I/O thread was reconnecting
    before = len(records.records)
    own_redis.restart()  # a live limiter would log "reconnected" now
    time.sleep(0.5)
    assert len(records.records) == before, records.text()
    assert records.count(logging.INFO, "reconnected") == 0


@needs_redis
def test_close_waits_for_a_message_being_delivered_and_none_comes_after(own_redis, tollgate_logger):
    entered = threading.Event()

    def slow(record: logging.LogRecord) -> None:
        entered.set()
        time.sleep(0.5)  # the GIL released: close() runs meanwhile

    h = Records(on_emit=slow)
    tollgate_logger.addHandler(h)
    try:
        lim = limiter(own_redis.url)
        lim.check("k", POLICY)
        own_redis.kill()  # the I/O thread logs "is unreachable" (slowly)

        def checks() -> None:
            for _ in range(3):
                try:
                    lim.check("k", POLICY)
                except tollgate.TollgateConnectionError:  # closed meanwhile
                    pass

        checker = threading.Thread(target=checks)
        assert entered.wait(10)
        checker.start()  # its first check logs "cannot answer" on its thread
        time.sleep(0.05)
        lim.close()
        closed_at = time.monotonic()
        checker.join(10)
        own_redis.restart()
        time.sleep(0.5)
        assert h.finished_at and all(t <= closed_at for t in h.finished_at), h.text()
        assert h.count(logging.INFO, "reconnected") == 0
    finally:
        tollgate_logger.removeHandler(h)


@needs_redis
def test_check_async_while_the_io_thread_waits_for_the_gil_in_a_handler(own_redis, tollgate_logger):
    # The I/O thread logs "is unreachable" holding the library's hook lock
    # and sleeps in the handler; the event loop's next check_async is
    # answered on the loop's thread (the store is down) and logs "cannot
    # answer", which takes that lock: with the GIL held, neither thread
    # could go on.
    in_io_handler = threading.Event()
    main = threading.get_ident()

    def slow(record: logging.LogRecord) -> None:
        if record.thread != main and "is unreachable" in record.getMessage():
            in_io_handler.set()
            time.sleep(0.5)

    h = Records(on_emit=slow)
    tollgate_logger.addHandler(h)

    async def run(lim: Limiter) -> List[str]:
        assert (await lim.check_async("k", POLICY)).source == "store"
        own_redis.kill()
        while not in_io_handler.is_set():
            await asyncio.sleep(0.005)
        sources = [(await lim.check_async("k", POLICY)).source for _ in range(20)]
        sources.append((await lim.check_keys_async([("k", POLICY), ("j", POLICY)])).source)
        return sources

    try:
        # The I/O thread reads the replies (the loop driver would log on the
        # loop's own thread: tests/test_driver.py).
        with limiter(own_redis.url, driver="thread") as lim:
            sources = asyncio.run(asyncio.wait_for(run(lim), 30))
        assert set(sources) == {"fail_open"}, sources
        assert h.count(logging.WARNING, "the store cannot answer") == 1, h.text()
        assert h.count(logging.WARNING, "is unreachable") == 1, h.text()
    finally:
        tollgate_logger.removeHandler(h)


@needs_redis
def test_a_handler_cannot_close_or_call_its_own_limiter(own_redis, tollgate_logger):
    errors: List[BaseException] = []
    other = Limiter()  # another limiter is fine
    lim_box: List[Limiter] = []

    def reentrant(record: logging.LogRecord) -> None:
        lim = lim_box[0]
        for call in (lambda: lim.check("k", POLICY), lim.close, lim.health, lambda: lim.block("k", 1)):
            try:
                call()
            except RuntimeError as e:
                errors.append(e)
        assert other.check("k", POLICY).allowed

    h = Records(on_emit=reentrant)
    tollgate_logger.addHandler(h)
    try:
        lim = limiter(own_redis.url)
        lim_box.append(lim)
        lim.check("k", POLICY)
        outage(lim, own_redis, checks=10)
        assert wait_until(lambda: len(h.records) >= 2), h.text()
        assert not lim.closed
        assert len(errors) == 4 * len(h.records)
        assert {str(e).split(" (")[0] for e in errors} == {
            "a limiter cannot be called from its own log handler",
            "a limiter cannot be closed from its own log handler",
        }
        lim.close()  # from elsewhere it closes
        assert lim.closed
    finally:
        tollgate_logger.removeHandler(h)
        other.close()


@needs_redis
def test_a_failing_handler_is_reported_and_the_limiter_goes_on(own_redis, tollgate_logger):
    seen: List[str] = []

    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # Out of logging (Handler.handle does not catch it) and out of
            # the callable the hook calls: reported as unraisable.
            seen.append(record.getMessage())
            raise ValueError("handler failed")

    h = Broken()
    tollgate_logger.addHandler(h)
    unraisable: List[object] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with limiter(own_redis.url) as lim:
            lim.check("k", POLICY)
            assert outage(lim, own_redis, checks=10) >= 9
            assert wait_until(lambda: len(seen) == 2)
            time.sleep(0.1)
        assert len(unraisable) == 2
        assert all(isinstance(u.exc_value, ValueError) for u in unraisable)  # type: ignore[attr-defined]
    finally:
        sys.unraisablehook = old_hook
        tollgate_logger.removeHandler(h)


@needs_redis
def test_ctrl_c_in_a_handler_on_the_main_thread_is_raised_after_the_call(own_redis, tollgate_logger):
    main = threading.get_ident()

    def interrupted(record: logging.LogRecord) -> None:
        if record.thread == main and "cannot answer" in record.getMessage():
            raise KeyboardInterrupt

    h = Records(on_emit=interrupted)
    tollgate_logger.addHandler(h)
    try:
        with limiter(own_redis.url) as lim:
            lim.check("k", POLICY)
            own_redis.kill()
            # Known down: the next check is answered (and logs) here.
            assert wait_until(lambda: h.count(logging.WARNING, "is unreachable") == 1)
            caught = False
            try:
                lim.check("k", POLICY)  # logs "cannot answer" on this thread
                for _ in range(100000):
                    pass
            except KeyboardInterrupt:
                caught = True
            assert caught
            assert lim.check("k", POLICY).source == "fail_open"  # it goes on
    finally:
        tollgate_logger.removeHandler(h)


# ---- Fork and exit ------------------------------------------------------------

SLOW_HANDLER = """
import logging, sys, threading, time
entered = threading.Event()
class Slow(logging.Handler):
    def emit(self, record):
        sys.stderr.write("%s %s\\n" % (record.levelname, record.getMessage()))
        sys.stderr.flush()
        entered.set()
        time.sleep(SLEEP)
log = logging.getLogger("tollgate")
log.setLevel(logging.INFO)
log.addHandler(Slow())
"""


@needs_redis
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_fork_while_the_io_thread_is_in_a_handler(own_redis, tollgate_logger):
    if sys.platform != "linux":
        pytest.skip("fork")
    in_io_handler = threading.Event()
    main = threading.get_ident()

    def slow(record: logging.LogRecord) -> None:
        if record.thread != main:
            in_io_handler.set()
            time.sleep(0.5)  # holding the library's hook lock

    h = Records(on_emit=slow)
    tollgate_logger.addHandler(h)
    try:
        lim = limiter(own_redis.url)
        lim.check("k", POLICY)
        own_redis.kill()
        assert in_io_handler.wait(10)
        pid = os.fork()  # waits for the handler: the child gets the lock free
        if pid == 0:  # the child: it logs, checks and closes, then leaves
            code = 1
            try:
                h.on_emit = None
                for _ in range(5):
                    lim.check("k", POLICY)
                lim.close()
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 15
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.02)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        # The parent's hook is on again.
        own_redis.restart()
        until_store_answers(lim)
        assert wait_until(lambda: h.count(logging.INFO, "reconnected to") == 1), h.text()
        lim.close()
    finally:
        tollgate_logger.removeHandler(h)


EXIT_IN_AN_OUTAGE = (
    """
import sys, threading, time
import tollgate
SLEEP = float(sys.argv[2])
"""
    + SLOW_HANDLER
    + """
url = sys.argv[1]
lim = tollgate.Limiter(url, failure_mode="open", timeout_ms=100, connect_timeout_ms=100, reconnect_max_ms=50)
policy = tollgate.Policy(10**9, "1h")
for _ in range(20):
    lim.check("k", policy)
def spin():
    while True:
        lim.check("busy", policy)
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
time.sleep(0.3)
print("bye", flush=True)
"""
)


def exits_cleanly(script: str, *args: str) -> str:
    """Runs `script` in a new interpreter: it must print "bye" and exit 0
    within 20 s, without a traceback or a fatal error. Its stderr."""
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert r.stdout.strip() == b"bye"
    assert time.monotonic() - started < 20
    assert "Traceback" not in err and "Fatal" not in err, err
    return err


@needs_redis
@pytest.mark.parametrize("sleep", [0.0, 0.5])
def test_the_interpreter_exits_with_a_live_limiter_in_an_outage(own_redis, sleep):
    # Nothing to connect to: every check fails over, the I/O thread keeps
    # reconnecting, daemon threads keep checking, and with sleep > 0 a
    # handler is mid-message when the interpreter exits (the atexit hook
    # waits for it, then no limiter logs any more).
    own_redis.kill()
    for _ in range(2):
        err = exits_cleanly(EXIT_IN_AN_OUTAGE, own_redis.url, str(sleep))
        assert "WARNING the store cannot answer" in err, err


EXIT_WITH_A_MESSAGE_PENDING = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time, threading
    import tollgate
    SLEEP = 1.0
    """
) + SLOW_HANDLER + textwrap.dedent(
    """
    url, pid = sys.argv[1], int(sys.argv[2])
    lim = tollgate.Limiter(url, failure_mode="open", timeout_ms=100, reconnect_max_ms=50)
    lim.check("k", tollgate.Policy(10, "1h"))
    os.kill(pid, signal.SIGKILL)   # the I/O thread sees it and logs, slowly
    assert entered.wait(10)
    print("bye", flush=True)       # exits while the handler sleeps
    """
)


@needs_redis
def test_the_interpreter_exits_while_the_io_thread_is_in_a_handler(own_redis):
    err = exits_cleanly(EXIT_WITH_A_MESSAGE_PENDING, own_redis.url, str(own_redis.pid))
    assert "is unreachable" in err, err
    own_redis.proc.wait(10)  # the script killed it: reaped here


def test_the_levels_match_the_library():
    from tollgate import _log

    assert _log.LEVELS == {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}
    assert _log.LOGGER_NAME == "tollgate"
    got: List[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    logger = logging.getLogger("tollgate-test-levels")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(Keep())
    emit = _log.emitter(logger)
    for level in (1, 2, 3, 4):
        emit(level, "tollgate: line %d: 100%% (kept as is)" % level)
    emit(2, "no prefix")
    assert [(r.levelno, r.getMessage()) for r in got] == [
        (logging.ERROR, "line 1: 100% (kept as is)"),
        (logging.WARNING, "line 2: 100% (kept as is)"),
        (logging.INFO, "line 3: 100% (kept as is)"),
        (logging.DEBUG, "line 4: 100% (kept as is)"),
        (logging.WARNING, "no prefix"),
    ]
    logger.setLevel(logging.WARNING)
    del got[:]
    emit(3, "tollgate: dropped")
    emit(1, "tollgate: kept")
    assert [r.getMessage() for r in got] == ["kept"]
    assert tollgate  # the package's import registered the exit and fork hooks
