"""Fixtures: throwaway redis-server processes on free loopback ports.

Every server is started by these fixtures with its own temporary directory,
bound to 127.0.0.1, without persistence, and stopped by its PID (never by
name). Tests that need Redis are skipped when redis-server is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

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

    def start(self) -> None:
        assert REDIS_SERVER is not None
        last_log = ""
        for _attempt in range(5):  # a free port can be taken before bind
            self.port = free_port()
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
