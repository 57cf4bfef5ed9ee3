"""C and Python processes on one Redis key enforce one limit: the C worker
(tests/redis_worker.c, built by the CMake test build) and Python processes
admit exactly `limit` in total."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

WORKER = os.environ.get("TOLLGATE_TEST_WORKER", "")
LIMIT = 150
PERIOD_S = 10 * 365 * 24 * 3600  # ten years: no refill during the test


@pytest.mark.skipif(
    not os.path.exists(WORKER),
    reason="set TOLLGATE_TEST_WORKER to the built tollgate-test-worker",
)
def test_c_and_python_processes_share_exactly_limit(redis_server) -> None:
    key = "xlang-" + uuid.uuid4().hex
    url = redis_server.url
    c_workers = [
        subprocess.Popen(
            [WORKER, url, key, "0", str(LIMIT), str(PERIOD_S * 1000), "4", "100"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    script = (
        "import sys, tollgate\n"
        "lim = tollgate.Limiter(sys.argv[1], failure_mode='error', timeout_ms=2000)\n"
        "p = tollgate.Policy(%d, %d)\n"
        "n = 0\n"
        "for _ in range(400):\n"
        "    d = lim.check(sys.argv[2], p)\n"
        "    assert d.source in ('store', 'deny_cache'), d\n"
        "    n += d.allowed\n"
        "print(n)\n" % (LIMIT, PERIOD_S)
    )
    py_workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, key],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    total = 0
    for proc in c_workers:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        fields = out.split()
        assert fields[0] == "admitted" and fields[4] == "errors" and fields[5] == "0"
        total += int(fields[1])
    for proc in py_workers:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        total += int(out.strip())
    assert total == LIMIT
