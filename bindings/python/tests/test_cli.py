"""The `tollgate` console script that `pip install` puts beside this
interpreter (pyproject.toml [project.scripts] -> tollgate._cli:main), which
execs the command-line tool built into the package (tollgate/_bin/tollgate,
docs/cli.md): its help is docs/cli.md's usage block, and its exit status is
the tool's (0 done or allowed, 1 denied, 2 usage, 3 store) against the
conftest's real redis-server.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

import tollgate
from tollgate import _cli

from conftest import REPO_ROOT, RedisServer, free_port

BIN_DIR = Path(sys.executable).parent
CLI_DOC = REPO_ROOT / "docs" / "cli.md"


def env() -> Dict[str, str]:
    """This interpreter's bin directory first on PATH (as an activated venv
    has it), and no REDIS_URL from the caller."""
    e = dict(os.environ, PATH=str(BIN_DIR) + os.pathsep + os.environ.get("PATH", ""))
    e.pop("REDIS_URL", None)
    return e


def tollgate_cmd(*args: str, **kwargs: str) -> subprocess.CompletedProcess:
    """`tollgate ARGS` by name, as a shell runs it from the venv's PATH."""
    return subprocess.run(["tollgate", *args], env=dict(env(), **kwargs), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)


def test_the_console_script_is_on_the_venv_path() -> None:
    script = BIN_DIR / "tollgate"
    assert script.is_file() and os.access(script, os.X_OK), "pip installed no console script %s" % script
    assert "tollgate._cli" in script.read_text()
    exe = Path(_cli.executable())
    assert exe.is_file() and os.access(exe, os.X_OK), exe
    assert exe.parent.parent == Path(tollgate.__file__).resolve().parent


def test_help_is_the_documented_usage() -> None:
    p = tollgate_cmd("--help")
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.startswith("usage: tollgate [options] <command> [arguments]\n")
    if CLI_DOC.is_file():  # not in an unpacked sdist
        m = re.search(r"<!-- help -->\n```text\n(.*?)```\n<!-- /help -->", CLI_DOC.read_text(), re.S)
        assert m, "docs/cli.md has no usage block"
        assert p.stdout == m.group(1)
    version = tollgate_cmd("--version")
    assert version.returncode == 0 and version.stdout == "tollgate %s\n" % tollgate.LIBRARY_VERSION


def test_exit_status_is_the_tools(redis_server: RedisServer, prefix: str) -> None:
    url = redis_server.url
    p = tollgate_cmd("ping", "--url", url)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok  round trip ")
    # Arguments pass through unchanged (options after the command, --json),
    # and so does the environment (REDIS_URL).
    p = tollgate_cmd("ping", "--json", REDIS_URL=url)
    assert p.returncode == 0 and p.stdout.startswith('{"ok": true, "rtt_us": '), (p.stdout, p.stderr)
    p = tollgate_cmd("check", "--url", url, "--prefix", prefix, "cli:k", "1/h")
    assert p.returncode == 0 and p.stdout.startswith("allowed cli:k"), p.stdout
    p = tollgate_cmd("check", "--url", url, "--prefix", prefix, "cli:k", "1/h")
    assert p.returncode == 1 and p.stdout.startswith("denied cli:k"), p.stdout
    # The state is the library's: a Python limiter on the same prefix sees it.
    with tollgate.Limiter(url, key_prefix=prefix, failure_mode="error", timeout_ms=5000) as lim:
        assert not lim.check("cli:k", tollgate.Policy(1, "1h")).allowed
    p = tollgate_cmd()
    assert p.returncode == 2 and p.stderr.startswith("usage: tollgate")
    p = tollgate_cmd("frobnicate", "--url", url)
    assert p.returncode == 2 and "unknown command 'frobnicate'" in p.stderr


def test_unreachable_store_exits_3() -> None:
    nowhere = "redis://127.0.0.1:%d" % free_port()  # nothing listens there
    p = tollgate_cmd("ping", "--url", nowhere, "--timeout", "2000")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "RL_E_CONNECT" in p.stderr


def test_main_reports_a_missing_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    # exec fails (no such file): main() returns 127 with the reason, and the
    # test process goes on.
    monkeypatch.setattr(_cli, "_RELATIVE", ("_bin", "no-such-tollgate"))
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert _cli.main() == 127
    assert re.fullmatch(r"tollgate: cannot run \S+/_bin/no-such-tollgate: No such file or directory\n", err.getvalue())
