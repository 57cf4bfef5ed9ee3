#!/usr/bin/env python3
"""Runs every subcommand of the `tollgate` command-line tool against a real
redis-server, and its bad input (docs/cli.md).

Usage: cli_check.py PATH_TO_TOLLGATE [--redis-server PATH]

Checks the output (human and --json), the documented exit codes (0
allowed or done, 1 denied, 2 usage, 3 store error), that `tollgate --help`
is the text docs/cli.md shows, and that no password is ever printed. The
servers are started on free loopback ports and stopped by their PIDs.
`bench` runs briefly on servers of its own: its figures are checked for
presence and consistency, never for speed, and its keys must be gone
afterwards.
Exit status: 0 passed, 1 a failure, 77 redis-server not found (skip).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from redis_scripts_check import Redis, RedisServer, free_port  # noqa: E402

DOC = HERE.parent / "docs" / "cli.md"
SECRET = "cli-s3cret-pw"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what, file=sys.stderr)


class Cli:
    def __init__(self, binary, url=None):
        self.binary = binary
        self.url = url

    def run(self, *args, env_url=None, url=True):
        cmd = [self.binary] + list(args)
        if url and self.url is not None:
            cmd += ["--url", self.url]
        env = dict(os.environ)
        env.pop("REDIS_URL", None)
        if env_url is not None:
            env["REDIS_URL"] = env_url
        p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                           timeout=60)
        check(SECRET not in p.stdout + p.stderr,
              "%s printed the password" % (args,))
        return p

    def json(self, *args, **kw):
        p = self.run(*args, "--json", **kw)
        try:
            return p.returncode, json.loads(p.stdout)
        except ValueError:
            failures.append("%s: not JSON: %r %r" % (args, p.stdout, p.stderr))
            return p.returncode, {}


def doc_help():
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- help -->\n```text\n(.*?)```\n<!-- /help -->", text,
                  re.S)
    return m.group(1) if m else None


def test_help(binary):
    cli = Cli(binary)
    p = cli.run("--help")
    check(p.returncode == 0, "--help exits 0")
    check(p.stdout == doc_help(),
          "tollgate --help differs from docs/cli.md's usage block")
    p = cli.run("-h")
    check(p.returncode == 0 and p.stdout == doc_help(), "-h is --help")
    p = cli.run()
    check(p.returncode == 2 and p.stderr == doc_help(),
          "no command: the help on stderr, exit 2")
    p = cli.run("--version")
    check(p.returncode == 0 and re.fullmatch(r"tollgate \d+\.\d+\.\d+\n", p.stdout),
          "--version: %r" % p.stdout)


def test_commands(binary, url, port):
    cli = Cli(binary, url)
    # check: allowed, allowed, denied; the exit status says which.
    p = cli.run("check", "user:1", "2/m")
    check(p.returncode == 0 and p.stdout.startswith("allowed user:1  remaining 1/2"),
          "first check: %r" % p.stdout)
    rc, d = cli.json("check", "user:1", "2/m")
    check(rc == 0 and d.get("allowed") is True and d.get("remaining") == 0 and
          d.get("limit") == 2 and d.get("source") == "store" and
          d.get("key") == "user:1" and d.get("policy") == "2/m" and
          d.get("cost") == 1 and d.get("shadow") is False,
          "second check, JSON: %r" % d)
    rc, d = cli.json("check", "user:1", "2/m")
    check(rc == 1 and d.get("allowed") is False and d.get("retry_after_ms", 0) > 0,
          "third check denied with exit 1: %r" % d)
    p = cli.run("check", "user:1", "2/m")
    check(p.returncode == 1 and p.stdout.startswith("denied user:1") and
          "retry in" in p.stdout, "human denial: %r" % p.stdout)
    # peek: the same answer, nothing charged.
    rc, d = cli.json("peek", "user:2", "2/m")
    check(rc == 0 and d.get("remaining") == 2 and d.get("cost") == 0,
          "peek of a fresh key: %r" % d)
    rc, d = cli.json("peek", "user:2", "2/m")
    check(rc == 0 and d.get("remaining") == 2, "peek charged nothing: %r" % d)
    # --cost, and a cost above the capacity: never.
    rc, d = cli.json("check", "user:2", "2/m", "--cost", "2")
    check(rc == 0 and d.get("remaining") == 0 and d.get("cost") == 2,
          "--cost 2: %r" % d)
    p = cli.run("check", "user:3", "2/m", "--cost=5")
    check(p.returncode == 1 and "retry never" in p.stdout, "cost 5 > 2: %r" % p.stdout)
    # Several policies: the one that denies is reported.
    rc, d = cli.json("check", "multi:4", "10/m", "1/h name=hourly")
    rc, d = cli.json("check", "multi:4", "10/m", "1/h name=hourly")
    check(rc == 1 and d.get("policy_index") == 1 and
          d.get("policy") == "1/h name=hourly", "multi-policy denial: %r" % d)

    # keys: a pattern, JSON lines, --all.
    p = cli.run("keys", "user:*", "2/m", "--json")
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    keys = sorted(r["key"] for r in rows)
    check(p.returncode == 0 and keys == ["user:1", "user:2"],
          "keys user:* lists the 2/m states: %r" % keys)
    check(all(r["policy"] == "2/m" and r["limit"] == 2 and r["remaining"] == 0
              for r in rows), "keys rows: %r" % rows)
    p = cli.run("keys", "user:1", "2/m")
    check(p.returncode == 0 and p.stdout.startswith("user:1  remaining 0/2") and
          "1 state(s)" in p.stderr, "keys user:1: %r %r" % (p.stdout, p.stderr))
    p = cli.run("keys", "*", "2/m")
    check(p.returncode == 2 and "--all" in p.stderr, "keys * needs --all: %r" % p.stderr)
    p = cli.run("keys", "*", "2/m", "--all", "--json")
    # user:1, user:2 and multi:4's unnamed first policy (a state belongs to
    # a position or a name, not to a limit); user:3's denial wrote nothing.
    check(p.returncode == 0 and len(p.stdout.splitlines()) == 3,
          "keys * --all: %r" % p.stdout)
    p = cli.run("keys", "multi:4", "10/m", "1/h name=hourly", "--json")
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    check(sorted((r["policy_index"], r["remaining"]) for r in rows) == [(0, 9), (1, 0)],
          "keys with two policies: %r" % rows)

    # block, unblock, reset.
    p = cli.run("block", "user:9", "15m")
    check(p.returncode == 0 and p.stdout == "blocked user:9 for 900000 ms\n",
          "block: %r" % p.stdout)
    rc, d = cli.json("check", "user:9", "100/h")
    check(rc == 1 and d.get("retry_after_ms", 0) > 890000, "blocked key denied: %r" % d)
    rc, d = cli.json("unblock", "user:9")
    check(rc == 0 and d == {"command": "unblock", "key": "user:9", "ok": True},
          "unblock JSON: %r" % d)
    rc, d = cli.json("check", "user:9", "100/h")
    check(rc == 0 and d.get("remaining") == 99, "unblocked: %r" % d)
    p = cli.run("reset", "user:1")
    check(p.returncode == 0 and p.stdout == "reset user:1\n", "reset: %r" % p.stdout)
    rc, d = cli.json("peek", "user:1", "2/m")
    check(rc == 0 and d.get("remaining") == 2, "reset gave the budget back: %r" % d)

    # health and ping.
    rc, h = cli.json("health")
    check(rc == 0 and h.get("ok") is True and h.get("topology") == "standalone" and
          h.get("connection") == "ready" and h.get("ping_rtt_us", -1) >= 0 and
          re.fullmatch(r"\d+\.\d+\.\d+", h.get("server_version", "")) is not None,
          "health JSON: %r" % h)
    nodes = h.get("nodes", [])
    check(len(nodes) == 1 and nodes[0]["address"] == "127.0.0.1:%d" % port and
          nodes[0]["role"] == "primary", "health nodes: %r" % nodes)
    p = cli.run("health")
    check(p.returncode == 0 and p.stdout.startswith("store       standalone, reachable"),
          "health: %r" % p.stdout)
    p = cli.run("ping")
    check(p.returncode == 0 and re.fullmatch(r"ok  round trip \d+ us\n", p.stdout),
          "ping: %r" % p.stdout)

    # REDIS_URL, and --prefix keeping apart another application's keys.
    bare = Cli(binary)
    p = bare.run("check", "env:1", "5/m", env_url=url)
    check(p.returncode == 0 and "remaining 4/5" in p.stdout, "REDIS_URL: %r" % p.stdout)
    p = cli.run("check", "user:1", "2/m", "--prefix", "other:")
    check(p.returncode == 0 and "remaining 1/2" in p.stdout, "--prefix: %r" % p.stdout)
    p = cli.run("keys", "user:*", "2/m", "--prefix=other:", "--json")
    check([json.loads(x)["key"] for x in p.stdout.splitlines()] == ["user:1"],
          "keys under --prefix: %r" % p.stdout)
    # -o sets any option by name.
    p = cli.run("ping", "-o", "connect_timeout_ms=500", "--option=timeout_ms=500")
    check(p.returncode == 0, "-o: %r" % p.stderr)


def test_bad_input(binary, url):
    cli = Cli(binary, url)
    cases = [
        (("frob",), 2, "unknown command 'frob'"),
        (("check", "k"), 2, "check expects KEY POLICY"),
        (("check", "k", "10 per fortnight"), 2, "at byte"),
        (("check", "k", "10/m", "--cost", "x"), 2, "--cost expects an integer"),
        (("peek", "k", "10/m", "--cost", "2"), 2, "peek takes no --cost"),
        (("check", "", "10/m"), 2, "RL_E_KEY_INVALID"),
        (("block", "k", "soon"), 2, "DURATION 'soon'"),
        (("block", "k"), 2, "block expects KEY DURATION"),
        (("reset",), 2, "reset expects KEY"),
        (("keys", "**", "10/m"), 2, "add --all"),
        (("keys", "user:*"), 2, "keys expects PATTERN POLICY"),
        (("ping", "extra"), 2, "ping takes no arguments"),
        (("ping", "--bogus"), 2, "unknown option '--bogus'"),
        (("ping", "-o", "nonsense=1"), 2, "RL_E_INVALID_ARG"),
        (("ping", "-o", "novalue"), 2, "expects NAME=VALUE"),
    ]
    for args, code, needle in cases:
        p = cli.run(*args)
        check(p.returncode == code and needle in p.stderr,
              "%r: exit %d, stderr %r" % (args, p.returncode, p.stderr))
        check(p.returncode != 2 or "tollgate --help" in p.stderr or "at byte" in p.stderr
              or "RL_E_" in p.stderr, "%r: usage errors point to --help" % (args,))
    p = Cli(binary).run("ping", "--timeout")
    check(p.returncode == 2 and "--timeout needs a value" in p.stderr,
          "an option without its value: %r" % p.stderr)
    # No store at all.
    p = Cli(binary).run("ping")
    check(p.returncode == 2 and "set REDIS_URL" in p.stderr, "no URL: %r" % p.stderr)
    p = Cli(binary).run("ping", "--url", "memory://")
    check(p.returncode == 2 and "shared store" in p.stderr, "memory://: %r" % p.stderr)
    p = Cli(binary).run("ping", "--url", "http://%s@x" % SECRET)
    check(p.returncode == 2 and "RL_E_URL" in p.stderr, "bad scheme: %r" % p.stderr)
    # A URL where the command goes is not echoed (it may hold a password).
    p = Cli(binary).run("redis://:%s@127.0.0.1:1" % SECRET, "ping")
    check(p.returncode == 2 and "--url" in p.stderr, "URL as command: %r" % p.stderr)


def bench_keys_left(r):
    """The keys of a bench run still in the server (any database 0 key
    whose name has the bench's sub-prefix)."""
    cursor, left = "0", []
    while True:
        cursor, page = r.call("SCAN", cursor, "MATCH", "*bench:*", "COUNT", 1000)
        cursor = cursor.decode()
        left += [k.decode() for k in page]
        if cursor == "0":
            return left


def check_ratios(d, what):
    t, b, r = d.get("tollgate", {}), d.get("baseline") or {}, d.get("ratios") or {}
    for mode in ("sequential", "in_flight"):
        for field in ("checks_per_s", "cpu_us_per_check"):
            want = t[mode][field] / b[mode][field]
            got = r.get(mode, {}).get(field, -1)
            check(abs(got - want) <= 0.02 * want + 0.001,
                  "%s: ratio %s %s is %r, the figures give %r" % (what, mode, field, got, want))
    want = t["sequential"]["p50_us"] / b["sequential"]["p50_us"]
    got = r.get("sequential", {}).get("p50_us", -1)
    check(abs(got - want) <= 0.02 * want + 0.001,
          "%s: ratio of the p50s is %r, the figures give %r" % (what, got, want))


def check_figures(d, side, what):
    figs = d.get(side) or {}
    for mode in ("sequential", "in_flight"):
        f = figs.get(mode, {})
        fields = ["checks", "seconds", "checks_per_s", "cpu_us_per_check"]
        if mode == "sequential":
            fields += ["p50_us", "p99_us"]
        for field in fields:
            check(isinstance(f.get(field), (int, float)) and f[field] > 0,
                  "%s: %s %s %s is not a positive number: %r" % (what, side, mode, field, f))
        if mode == "sequential" and f.get("p50_us") is not None:
            check(f["p50_us"] <= f.get("p99_us", 0), "%s: %s p50 above p99: %r" % (what, side, f))


def test_bench(binary, redis_bin):
    server = RedisServer(redis_bin)
    try:
        r = server.start()
        # Keys of an application: the bench must leave them alone.
        r.call("SET", "tollgate:v2:{user:1}", "1")
        r.call("SET", "tollgate:bench-not-mine", "1")
        cli = Cli(binary, "redis://127.0.0.1:%d" % server.port)
        rc, d = cli.json("bench", "--duration", "0.3", "--keys", "100")
        check(rc == 0, "bench --json: exit %d" % rc)
        for field, want in (("topology", "standalone"), ("policy", "1000000000/h"),
                            ("keys", 100), ("in_flight", 64), ("duration_s", 0.3),
                            ("address", "127.0.0.1:%d" % server.port),
                            ("baseline_skipped", None)):
            check(d.get(field, "missing") == want, "bench JSON %s: %r" % (field, d.get(field)))
        check(re.fullmatch(r"bench:[0-9a-f]{8}:\*", d.get("key_pattern", "")) is not None,
              "bench key_pattern: %r" % d.get("key_pattern"))
        check(re.fullmatch(r"\d+\.\d+\.\d+", d.get("redis_version", "")) is not None,
              "bench redis_version: %r" % d.get("redis_version"))
        check(d.get("cpus", 0) >= 1, "bench cpus: %r" % d.get("cpus"))
        for load in ("load_before", "load_after"):
            check(isinstance(d.get(load), list) and len(d[load]) == 3 and
                  all(x >= 0 for x in d[load]), "bench %s: %r" % (load, d.get(load)))
        check_figures(d, "tollgate", "bench")
        check_figures(d, "baseline", "bench")
        if d.get("tollgate") and d.get("baseline"):
            check_ratios(d, "bench")
        check(d.get("deleted_keys", 0) >= 1, "bench deleted_keys: %r" % d.get("deleted_keys"))
        check(bench_keys_left(r) == [] and r.call("DBSIZE") == 2,
              "bench left keys: %r" % bench_keys_left(r))
        check(r.call("EXISTS", "tollgate:v2:{user:1}", "tollgate:bench-not-mine") == 2,
              "bench deleted an application's keys")

        # The human table, a --prefix and a database: the same cleanup.
        cli = Cli(binary, "redis://127.0.0.1:%d/3?prefix=app:" % server.port)
        p = cli.run("bench", "--duration=0.2", "--keys=20", "--in-flight=8",
                    "--prefix", "other:")
        check(p.returncode == 0, "bench human: exit %d, %r" % (p.returncode, p.stderr))
        for needle in ("tollgate rl_check, sequential", "tollgate rl_check_async, 8 in flight",
                       "baseline INCR+PEXPIRE, sequential", "baseline INCR+PEXPIRE, 8 in flight",
                       "tollgate / baseline", "load average before:", "load average after:",
                       "keys the bench wrote"):
            check(needle in p.stdout, "bench human output lacks %r: %r" % (needle, p.stdout))
        r.call("SELECT", 3)
        check(r.call("DBSIZE") == 0, "bench on db 3 left keys: %r" % bench_keys_left(r))
        r.close()
    finally:
        server.cleanup()

    # A unix socket: no baseline (it speaks TCP), tollgate's figures alone;
    # its keys are deleted through the limiter (listed, then reset).
    server = RedisServer(redis_bin)
    server.extra_args += ["--unixsocket", os.path.join(server.dir, "r.sock")]
    try:
        r = server.start()
        cli = Cli(binary, "unix://" + os.path.join(server.dir, "r.sock"))
        rc, d = cli.json("bench", "--duration", "0.2", "--keys", "30")
        check(rc == 0 and d.get("baseline") is None and d.get("ratios") is None and
              "unix socket" in (d.get("baseline_skipped") or ""),
              "bench on a unix socket: exit %d, %r" % (rc, d))
        check_figures(d, "tollgate", "bench unix")
        check(r.call("DBSIZE") == 0, "bench on a unix socket left keys: %r" % bench_keys_left(r))
        p = cli.run("bench", "--duration", "0.1", "--keys", "5")
        check(p.returncode == 0 and "baseline skipped:" in p.stdout and
              "tollgate / baseline" not in p.stdout, "bench human, unix: %r" % p.stdout)
        r.close()
    finally:
        server.cleanup()

    # Bad arguments: 2, before any store call.
    cli = Cli(binary, "redis://127.0.0.1:%d" % free_port())
    for args, needle in ((("--duration", "x"), "--duration expects seconds"),
                         (("--duration", "0"), "--duration expects seconds"),
                         (("--keys", "0"), "--keys expects"),
                         (("--in-flight", "many"), "--in-flight expects"),
                         (("extra",), "bench takes no arguments")):
        p = cli.run("bench", *args)
        check(p.returncode == 2 and needle in p.stderr and "tollgate --help" in p.stderr,
              "bench %r: exit %d, %r" % (args, p.returncode, p.stderr))
    p = cli.run("ping", "--keys", "5")
    check(p.returncode == 2 and "--keys is an option of bench" in p.stderr,
          "a bench option elsewhere: %r" % p.stderr)
    p = Cli(binary).run("bench", "--url", "memory://")
    check(p.returncode == 2 and "shared store" in p.stderr, "bench on memory://: %r" % p.stderr)


def test_unreachable(binary):
    port = free_port()  # nothing listens there
    cli = Cli(binary, "redis://:%s@127.0.0.1:%d?connect_timeout_ms=300" % (SECRET, port))
    for args in (("check", "k", "10/m"), ("peek", "k", "10/m"), ("ping",),
                 ("reset", "k"), ("block", "k", "1m"), ("unblock", "k"),
                 ("keys", "k*", "10/m"), ("bench", "--duration", "0.1")):
        p = cli.run(*args)
        check(p.returncode == 3 and "RL_E_CONNECT" in p.stderr,
              "%r on an unreachable store: exit %d, %r" % (args, p.returncode, p.stderr))
    rc, h = cli.json("health")
    check(rc == 3 and h.get("ok") is False and h.get("error"),
          "health of an unreachable store: %r" % h)
    p = cli.run("health")
    check(p.returncode == 3 and "UNREACHABLE" in p.stdout, "health human: %r" % p.stdout)


def test_wrong_password(binary, redis_bin):
    server = RedisServer(redis_bin, ["--requirepass", "right-pw"])
    try:
        server.start()
        cli = Cli(binary, "redis://:%s@127.0.0.1:%d" % (SECRET, server.port))
        p = cli.run("check", "k", "10/m")
        check(p.returncode == 3 and "RL_E_AUTH" in p.stderr,
              "wrong password: exit %d, %r" % (p.returncode, p.stderr))
        p = cli.run("bench", "--duration", "0.1")
        check(p.returncode == 3 and "RL_E_AUTH" in p.stderr,
              "bench, wrong password: exit %d, %r" % (p.returncode, p.stderr))
        good = Cli(binary, "redis://:right-pw@127.0.0.1:%d" % server.port)
        p = good.run("ping")
        check(p.returncode == 0 and "right-pw" not in p.stdout + p.stderr,
              "right password: %r" % p.stderr)
        # bench's own client logs in with the URL's password, and a -o
        # password overrides it for both clients; neither is printed.
        for bench in (good, Cli(binary, "redis://:%s@127.0.0.1:%d" % (SECRET, server.port))):
            extra = () if bench is good else ("-o", "password=right-pw")
            p = bench.run("bench", "--duration", "0.1", "--keys", "10", *extra)
            check(p.returncode == 0 and "right-pw" not in p.stdout + p.stderr and
                  "tollgate / baseline" in p.stdout,
                  "bench with a password: exit %d, %r" % (p.returncode, p.stderr))
    finally:
        server.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tollgate")
    ap.add_argument("--redis-server", default=shutil.which("redis-server"))
    a = ap.parse_args()
    test_help(a.tollgate)
    if not a.redis_server:
        print("redis-server not found: skipped the store checks")
        return 77
    server = RedisServer(a.redis_server)
    try:
        server.start()
        url = "redis://127.0.0.1:%d" % server.port
        test_commands(a.tollgate, url, server.port)
        test_bad_input(a.tollgate, url)
    finally:
        server.cleanup()
    test_bench(a.tollgate, a.redis_server)
    test_unreachable(a.tollgate)
    test_wrong_password(a.tollgate, a.redis_server)
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("cli: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
