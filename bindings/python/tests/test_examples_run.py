"""The example apps run the way their docstrings say: the documented command
(`uvicorn --app-dir examples/python fastapi_app:app`, `flask --app
examples/python/flask_app.py run`) from the repository root, with this venv's
tools on PATH, answers over HTTP with its plan's rate-limit headers, and a
TOLLGATE_URL pointing at a throwaway Redis makes two processes share one limit.

Each server is started here and stopped by its PID.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import REPO_ROOT, RedisServer, free_port

EXAMPLES = REPO_ROOT / "examples" / "python"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="not in a tollgate checkout")


def _command(app: str, port: int) -> List[str]:
    """The docstring's command, with the port made free."""
    if app == "fastapi":
        return [str(BIN / "uvicorn"), "--app-dir", "examples/python", "fastapi_app:app", "--port", str(port)]
    return [str(BIN / "flask"), "--app", "examples/python/flask_app.py", "run", "--port", str(port)]


def _get(port: int, path: str, org: str) -> Tuple[int, Dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"X-Org-Id": org})
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


class App:
    def __init__(self, app: str, url: Optional[str] = None) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
        env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
        if url:
            env["TOLLGATE_URL"] = url
        self.proc = subprocess.Popen(
            _command(app, self.port), cwd=REPO_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise AssertionError("%s exited %s:\n%s" % (app, self.proc.returncode, out[-3000:]))
            try:
                _get(self.port, "/", "probe")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("%s did not answer on port %d in 30 s" % (app, self.port))
                time.sleep(0.1)

    def get(self, path: str, org: str) -> Tuple[int, Dict[str, str]]:
        return _get(self.port, path, org)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(params=["fastapi", "flask"])
def app_name(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.mark.timeout(120)
def test_documented_command_serves_plan_headers(app_name: str) -> None:
    app = App(app_name)
    try:
        status, headers = app.get("/", "globex")  # PRO: 1,000 per hour
        assert status == 200
        assert headers["x-ratelimit-limit"] == "1000"
        assert headers["x-ratelimit-remaining"] == "999"
        status, headers = app.get("/", "initech")  # FREE: 100 per hour
        assert (status, headers["x-ratelimit-limit"]) == (200, "100")
        # /search adds 10 per minute: the 11th is a 429 with Retry-After.
        codes = [app.get("/search", "acme")[0] for _ in range(11)]
        assert codes == [200] * 10 + [429]
    finally:
        app.stop()


@pytest.mark.timeout(120)
def test_two_apps_on_one_redis_share_the_limit(redis_server: RedisServer) -> None:
    a = App("fastapi", redis_server.url)
    try:
        b = App("flask", redis_server.url)
        try:
            # One /search limit of 10 per minute across both processes.
            codes = [(a if i % 2 else b).get("/search", "acme-shared")[0] for i in range(11)]
            assert codes == [200] * 10 + [429]
        finally:
            b.stop()
    finally:
        a.stop()
