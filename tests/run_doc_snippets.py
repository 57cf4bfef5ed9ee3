#!/usr/bin/env python3
"""Runs the code blocks of the docs that are marked runnable.

A fenced block whose info string is "<language> run" (```c run,
```python run, ```js run) is a complete program a user can paste; "run
redis" also wants a Redis server. Each suite runs its own language:

  run_doc_snippets.py c --pkg-config-path DIR FILE...
      compiled with cc and `pkg-config --cflags --libs tollgate` (an
      installed tollgate: the install test passes its prefix), then run
  run_doc_snippets.py python --python EXE FILE...
      run with that interpreter (the test venv, with tollgate installed)
  run_doc_snippets.py node --node-project DIR FILE...
      written into DIR (a project where the packed package is installed)
      and run with node

A block that wants Redis gets a throwaway redis-server on a free loopback
port, started and stopped (by PID) here; the text `redis://localhost:6379`
in the block is replaced with its URL. Every block must exit 0; the script
fails if a file has a block marked with an unknown language, or if no block
of the language was found at all (a marker lost in an edit).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LANGS = {"c": "c", "python": "python", "js": "node", "javascript": "node"}
FENCE = re.compile(r"^```(\S+)((?: \S+)*)\s*$")
USER_URL = "redis://localhost:6379"


def blocks(path: Path):
    """(line number, language, flags, text) of each runnable block."""
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and "run" in m.group(2).split():
            start = i + 1
            j = start
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            if j == len(lines):
                raise SystemExit("%s:%d: unterminated block" % (path, i + 1))
            yield i + 1, m.group(1), set(m.group(2).split()), "\n".join(lines[start:j]) + "\n"
            i = j
        i += 1


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tollgate-doc-redis-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("redis-server did not start")

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_block(lang: str, text: str, work: Path, args, env) -> subprocess.CompletedProcess:
    if lang == "c":
        src, exe = work / "snippet.c", work / "snippet"
        src.write_text(text)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "tollgate"], env=env,
                               check=True, capture_output=True, text=True).stdout.split()
        subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)] + flags,
                       env=env, check=True)
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "tollgate"], env=env,
                                check=True, capture_output=True, text=True).stdout.strip()
        env = dict(env, LD_LIBRARY_PATH=libdir)
        return subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=60)
    if lang == "python":
        src = work / "snippet.py"
        src.write_text(text)
        return subprocess.run([args.python, str(src)], env=env, capture_output=True, text=True,
                              timeout=60, cwd=work)
    # An ES module if it imports, else CommonJS (require).
    esm = re.search(r"^import ", text, re.M) is not None
    src = Path(args.node_project) / ("doc-snippet.mjs" if esm else "doc-snippet.cjs")
    src.write_text(text)
    try:
        return subprocess.run(["node", str(src)], env=env, capture_output=True, text=True,
                              timeout=60, cwd=args.node_project)
    finally:
        src.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lang", choices=["c", "python", "node"])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--pkg-config-path")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--node-project")
    args = ap.parse_args()
    if os.sep in args.python:  # blocks run in a temp dir
        args.python = os.path.abspath(args.python)
    env = dict(os.environ)
    if args.pkg_config_path:
        env["PKG_CONFIG_PATH"] = args.pkg_config_path
    if args.lang == "node" and not args.node_project:
        ap.error("node needs --node-project")
    found = failed = 0
    redis = None
    try:
        for path in args.files:
            for line, lang, flags, text in blocks(path):
                if lang not in LANGS:
                    print("FAIL %s:%d: runnable block in unknown language %r" % (path, line, lang))
                    failed += 1
                    continue
                if LANGS[lang] != args.lang:
                    continue
                found += 1
                if "redis" in flags:
                    if redis is None:
                        redis = Redis()
                    text = text.replace(USER_URL, redis.url)
                with tempfile.TemporaryDirectory(prefix="tollgate-doc-") as work:
                    try:
                        r = run_block(args.lang, text, Path(work), args, env)
                    except subprocess.CalledProcessError as e:
                        print("FAIL %s:%d: does not build: %s" % (path, line, e))
                        failed += 1
                        continue
                if r.returncode != 0:
                    print("FAIL %s:%d: exit %d\n%s%s" % (path, line, r.returncode, r.stdout, r.stderr))
                    failed += 1
                else:
                    print("ok   %s:%d (%s)%s" % (path, line, args.lang,
                                                  ": " + r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""))
    finally:
        if redis:
            redis.stop()
    if found == 0:
        print("FAIL no runnable %s block in %s" % (args.lang, ", ".join(map(str, args.files))))
        return 1
    print("%d runnable %s blocks, %d failed" % (found, args.lang, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
