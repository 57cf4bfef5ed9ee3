"""Fixtures: throwaway redis-server processes on free loopback ports.

Every server is started by these fixtures with its own temporary directory,
bound to 127.0.0.1, without persistence, and stopped by its PID (never by
name). Tests that need Redis are skipped when redis-server is not installed.
A Redis Cluster (or a Sentinel set) comes from the repository's
tests/servers/topology.py (`Topology`, the `redis_cluster` and
`redis_sentinel` fixtures).

Limiters for tests that run on both stores come from `store` (a `Store`
that makes them on the memory store or on the session's server, and closes
them), with a `Clock` the test moves; `framework` runs a web test on
FastAPI and on Flask.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import tollgate
from tollgate import Lease, Limiter

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # bindings/python
REPO_ROOT = PACKAGE_ROOT.parents[1]
# In a checkout: the repository's tests/vectors; in an unpacked sdist: the
# copy it carries.
VECTORS_DIR = next(
    (
        d
        for d in (REPO_ROOT / "tests" / "vectors", PACKAGE_ROOT / "_tollgate_src" / "tests" / "vectors")
        if (d / "gcra.json").is_file()
    ),
    REPO_ROOT / "tests" / "vectors",
)

# The cluster and sentinel harness (docs/testing.md, "Cluster and Sentinel
# servers"): the repository's, or the copy an unpacked sdist carries
# (pyproject.toml's force-include).
TOPOLOGY_SCRIPT = next(
    (
        p
        for p in (
            REPO_ROOT / "tests" / "servers" / "topology.py",
            PACKAGE_ROOT / "_tollgate_src" / "tests" / "servers" / "topology.py",
        )
        if p.is_file()
    ),
    None,
)

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int, password: Optional[str] = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
            # -NOAUTH also proves the server is up.
            return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
    except OSError:
        return False


class RedisServer:
    """One redis-server child process."""

    def __init__(self, password: Optional[str] = None, extra: Optional[List[str]] = None):
        self.password = password
        self.extra = list(extra or [])
        self.dir = tempfile.mkdtemp(prefix="tollgate-py-redis-")
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self, port: Optional[int] = None) -> None:
        """Starts the server on `port`, or on a free port."""
        assert REDIS_SERVER is not None
        last_log = ""
        for _attempt in range(5):  # a free port can be taken before bind
            self.port = port or free_port()
            args = [
                REDIS_SERVER,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log"),
            ]
            if self.password:
                args += ["--requirepass", self.password]
            args += self.extra
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if _ping(self.port):
                    return
                time.sleep(0.01)
            try:
                last_log = Path(self.dir, "redis.log").read_text()
            except OSError:
                pass
            self.kill()
        raise RuntimeError("redis-server did not start:\n" + last_log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s127.0.0.1:%d" % (auth, self.port)

    def kill(self) -> None:
        """SIGKILL, by PID, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        """Starts the server again on its port (after kill(): an outage
        that ends), with an empty data set."""
        self.kill()
        self.start(self.port)

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server shared by the tests that do not break it."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of the test's own (to kill, freeze or restart)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses (tests share the session server)."""
    return "tgpy:%s:" % uuid.uuid4().hex[:12]


# ---- Limiters on either store ---------------------------------------------------

T0 = 1_700_000_000_000_000  # us: a fixed clock reading, 800 s into an hour, 20 s into a minute
LONG = 30  # seconds: a lease ttl that never passes within a test


class Clock:
    """A clock the test moves (integer microseconds since the epoch), for
    the Limiter's `clock` option."""

    def __init__(self, now_us: int = T0) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * 1_000_000)

    def advance_ms(self, ms: int) -> None:
        self.now_us += ms * 1000


class Store:
    """Makes limiters on one store and closes them at the test's end.
    `memory`: each limiter with state of its own, on the real clock, or on
    `clock` (one shared by the limiters it makes) when `pinned`. `redis`:
    the session's server under a key prefix of the test's own, so its
    limiters share state; `redis_options` (failure mode "error" unless the
    test changes it) under the options a limiter is given. A clock for Redis
    needs a -DTOLLGATE_TESTING=ON build: the test is skipped on another."""

    def __init__(self, kind: str, server: Optional[RedisServer] = None, prefix: str = "") -> None:
        self.kind = kind
        self.server = server
        self.prefix = prefix
        self.clock = Clock()
        self.pinned = False
        self.redis_options: Dict[str, Any] = {"failure_mode": "error"}
        self.made: List[Limiter] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def limiter(self, **options: Any) -> Limiter:
        if self.kind == "memory":
            if self.pinned:
                options.setdefault("clock", self.clock)
            lim = Limiter(**options)
        else:
            opts = dict(self.redis_options, key_prefix=self.prefix)
            opts.update(options)
            try:
                lim = Limiter(self.url, **opts)
            except tollgate.UnsupportedError:
                if "clock" not in opts:
                    raise
                pytest.skip("this build takes no clock for Redis (configure with -DTOLLGATE_TESTING=ON)")
        self.made.append(lim)
        return lim

    def stored_keys(self) -> List[bytes]:
        """Redis: the keys under the test's prefix."""
        assert self.server is not None
        found: List[bytes] = redis_command(self.server.port, "KEYS", self.prefix + "*")
        return found

    def close(self) -> None:
        for lim in self.made:
            lim.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A Store of each kind: the test runs on both. A module that wants its
    memory limiters on the pinned clock, or other Redis options, overrides
    this fixture with one that takes it and sets `pinned` or
    `redis_options`."""
    if request.param == "memory":
        s = Store("memory")
    else:
        s = Store("redis", request.getfixturevalue("redis_server"), request.getfixturevalue("prefix"))
    yield s
    s.close()


@pytest.fixture(params=["fastapi", "flask"])
def framework(request: pytest.FixtureRequest) -> str:
    """The web integration a test runs on: tollgate.asgi or tollgate.flask."""
    return str(request.param)


def take(lim: Limiter, key: tollgate.Key, max_in_flight: int, ttl: Any = LONG) -> Lease:
    """A lease that must be acquired."""
    got = lim.acquire(key, max_in_flight=max_in_flight, ttl=ttl)
    assert got.acquired and got.lease is not None, got
    return got.lease


async def abandoned_lease_released(lim: Limiter, key: tollgate.Key) -> None:
    """Waits (20 s at most) until the one lease of `key` that a cancelled
    task abandoned is released by itself, long before its ttl: the key's
    one place is free again."""
    deadline = time.monotonic() + 20
    while True:
        got = await lim.acquire_async(key, max_in_flight=1, ttl=LONG)
        if got.lease is not None:
            assert got.in_flight == 1 and await got.lease.release_async()
            return
        assert time.monotonic() < deadline, "the abandoned lease was not released"
        await asyncio.sleep(0.02)


# ---- Raw RESP -----------------------------------------------------------------


def _resp_read(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("Redis error: " + rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError("unexpected RESP reply: %r" % line)


def redis_command(port: int, *args: Any, timeout: float = 5.0) -> Any:
    """One command to 127.0.0.1:`port` on a connection of its own; bulk
    strings come back as bytes, an error reply raises RuntimeError."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(out))
        with s.makefile("rb") as f:
            return _resp_read(f)


# ---- Cluster and Sentinel -------------------------------------------------------


class Topology:
    """A Redis Cluster (`kind` "cluster") or Sentinel set ("sentinel")
    started by tests/servers/topology.py on free loopback ports. `info` is
    the script's JSON line (`url`, `nodes`, and for sentinel `master_name`
    and `sentinels`); the script stops every process it started when its
    stdin closes (`close`)."""

    def __init__(self, kind: str, *args: str, timeout: float = 30) -> None:
        assert TOPOLOGY_SCRIPT is not None
        self.kind = kind
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, str(TOPOLOGY_SCRIPT), kind, "--timeout", str(timeout), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        # The script bounds its own start-up (--timeout) and exits 1 with the
        # failing node's log on stderr, which ends this read.
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self._stop()
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")
            self._stderr.close()
            raise RuntimeError("topology.py %s did not start (exit %s):\n%s" % (kind, self.proc.returncode, err))
        self.info: Dict[str, Any] = json.loads(line)
        self.url: str = self.info["url"]
        self.nodes: List[Dict[str, Any]] = self.info["nodes"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def primary_ports(self) -> List[int]:
        """The ports of the nodes that started as primaries."""
        return [n["port"] for n in self.nodes if n["role"] == "primary"]

    @property
    def master_name(self) -> str:
        """Sentinel: the name the sentinels monitor the master by."""
        return self.info["master_name"]

    @property
    def sentinel_ports(self) -> List[int]:
        """Sentinel: the sentinels' ports (the URL's hosts)."""
        return [s["port"] for s in self.info["sentinels"]]

    def current_master(self, sentinel: int = 0) -> int:
        """Sentinel: the master's port as one sentinel names it now
        (SENTINEL GET-MASTER-ADDR-BY-NAME)."""
        host, port = redis_command(
            self.sentinel_ports[sentinel], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        assert host == b"127.0.0.1", host
        return int(port)

    def command(self, line: str) -> Dict[str, Any]:
        """One stdin command (`ping`, `restart <port>`); its JSON answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        """Closes the script's stdin (it stops its servers by PID and removes
        its temp dir) and waits; SIGKILL by PID after 15 s."""
        self._stop()
        self._stderr.close()

    def _stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_topology(kind: str, *args: str) -> Topology:
    """A Topology, or a skip when redis-server or the script is missing."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    if TOPOLOGY_SCRIPT is None:
        pytest.skip("tests/servers/topology.py not found (in the checkout or in _tollgate_src)")
    return Topology(kind, *args)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[Topology]:
    """A 3-primary + 3-replica Redis Cluster shared by one test module."""
    topo = start_topology("cluster")
    yield topo
    topo.close()


@pytest.fixture(scope="module")
def redis_sentinel() -> Iterator[Topology]:
    """A primary, a replica and 3 sentinels shared by one test module (a
    stable master: tests that fail over take `own_redis_sentinel`)."""
    topo = start_topology("sentinel")
    yield topo
    topo.close()


@pytest.fixture
def own_redis_sentinel() -> Iterator[Topology]:
    """A Sentinel set of the test's own (to fail over); about 2 s to start."""
    topo = start_topology("sentinel")
    yield topo
    topo.close()
