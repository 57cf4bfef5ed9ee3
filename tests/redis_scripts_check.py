#!/usr/bin/env python3
"""Replays the shared vectors through tollgate's Redis Lua scripts.

Usage: redis_scripts_check.py BUILD_DIR [--bench-calls N] [--redis-server PATH]

BUILD_DIR is a build tree configured with -DTOLLGATE_TESTING=ON. The scripts
are read from the generated BUILD_DIR/core/generated/scripts_data.cpp, so the
check runs exactly the bytes the library embeds (and their SHA1s); nothing is
composed here.

What it does, against a private redis-server started on a free loopback
port (stopped by its PID at the end, also on failure):

1. SCRIPT LOAD every embedded script; the SHA1 Redis returns must equal the
   embedded one. The production scripts must not read the caller's time.
2. Replay every case of tests/vectors/*.json through EVALSHA of the PINNED
   scripts (time in ARGV[2]), comparing every expected field exactly:
   decisions in ms are ceil(us / 1000) (except -1), and with several
   policies the reported one is chosen as in docs/algorithms.md
   "Multi-policy checks". Single-policy cases run through their
   algorithm's script, and every case through the multi-policy script and
   through the batch script (a joined call of one check). A "reset" step
   DELs the case's keys. Steps that expect an error are input validation done
   by the C++ layer before any script runs; they are counted and skipped.
   After every step: each existing key has a TTL (PTTL > 0), and a denied
   call or a peek changed no key.
3. Send random joined calls of the batch script (checks of many subjects,
   some twice, at one time per call) and compare every check with the
   model in tests/vectors/reference.py; malformed calls write nothing.
4. Run the PRODUCTION gcra and multi scripts against the real TIME and check
   the answers and the stored state against the server's clock.
5. Measure the server-side cost per call (INFO commandstats, usec_per_call)
   of the production gcra, multi and batch scripts, pipelined.

Exit status: 0 all passed, 1 a failure, 77 redis-server not found (skip).
Standard library only.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
ALGORITHMS = {"gcra": 0, "token_bucket": 1, "fixed_window": 2, "sliding_window": 3}
SCRIPT_ORDER = ["gcra", "token_bucket", "fixed_window", "sliding_window", "multi",
                "batch"]
SKIP = 77


# --------------------------------------------------------------------------
# A tiny RESP2 client.

class RedisError(Exception):
    pass


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def close(self):
        self.rfile.close()
        self.sock.close()

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, int):
                a = b"%d" % a
            elif isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        """One reply; an error reply is returned as a RedisError."""
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by redis-server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise ConnectionError("bad RESP type byte %r" % kind)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        reply = self.read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def pipeline(self, payload, count, raise_errors=True):
        """Sends pre-encoded commands and reads `count` replies."""
        self.sock.sendall(payload)
        replies = [self.read() for _ in range(count)]
        for r in replies:
            if raise_errors and isinstance(r, RedisError):
                raise r
        return replies


# --------------------------------------------------------------------------
# redis-server as a child process.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, binary):
        self.binary = binary
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="tollgate-redis-")
        self.log = os.path.join(self.dir, "redis.log")
        self.port = None

    def start(self):
        for _ in range(5):
            self.port = free_port()
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--daemonize", "no",
                     "--dir", self.dir],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    r = Redis(self.port)
                    if r.call("PING") == "PONG":
                        return r
                    r.close()
                except (OSError, RedisError):
                    time.sleep(0.05)
            self.stop()  # port taken, or too slow: try another port
        raise RuntimeError("redis-server did not start; log:\n" + self.log_text())

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this PID only
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# The embedded scripts.

ENTRY = re.compile(
    r'\{"(\w+)",\n\s*R"tollgate_lua\((.*?)\)tollgate_lua",\n\s*"([0-9a-f]{40})"\}',
    re.S)


def load_embedded(build_dir):
    path = Path(build_dir) / "core" / "generated" / "scripts_data.cpp"
    if not path.is_file():
        raise SystemExit("%s not found: configure %s first" % (path, build_dir))
    text = path.read_text()
    pinned_at = text.find("kPinnedScripts[6] = {")
    if pinned_at < 0:
        raise SystemExit("%s has no pinned scripts: configure with "
                         "-DTOLLGATE_TESTING=ON" % path)
    prod, pinned = {}, {}
    for m in ENTRY.finditer(text):
        (pinned if m.start() > pinned_at else prod)[m.group(1)] = (
            m.group(2).encode(), m.group(3))
    for table, what in ((prod, "production"), (pinned, "pinned")):
        if sorted(table) != sorted(SCRIPT_ORDER):
            raise SystemExit("%s: %s scripts found: %s" % (path, what, sorted(table)))
    return prod, pinned


# --------------------------------------------------------------------------
# Policies, keys, decisions.

def derive(policy):
    alg = policy["algorithm"]
    limit, period_ms, burst = policy["limit"], policy["period_ms"], policy["burst"]
    windowed = alg in ("fixed_window", "sliding_window")
    capacity = limit if windowed or burst == 0 else burst
    interval = 0 if windowed else -(-(period_ms * 1000) // limit)
    return {"alg": alg, "alg_id": ALGORITHMS[alg], "limit": limit,
            "period_ms": period_ms, "capacity": capacity, "interval": interval}


def redis_key(prefix, user_key, p):
    # <prefix>{<user key>}:<alg>:<limit>:<period_ms>:<capacity>, as the C++
    # store builds it.
    return b"%s{%s}:%s:%d:%d:%d" % (prefix, user_key.encode(), p["alg"].encode(),
                                    p["limit"], p["period_ms"], p["capacity"])


def script_argv(cost, now_us, policies):
    argv = [cost, now_us]
    for p in policies:
        argv += [p["alg_id"], p["limit"], p["period_ms"], p["capacity"], p["interval"]]
    return argv


def batch_call(now_us, checks):
    """KEYS and ARGV of one batch-script call (docs/redis.md, "Joined
    checks"): `checks` is a list of (cost, keys, policies)."""
    distinct, keys, tail = [], [], []
    for cost, ks, pols in checks:
        keys += ks
        tail += [len(pols), cost]
        for p in pols:
            v = [p["alg_id"], p["limit"], p["period_ms"], p["capacity"], p["interval"]]
            if v not in distinct:
                distinct.append(v)
            tail.append(distinct.index(v) + 1)
    argv = [len(distinct), now_us] + [x for v in distinct for x in v] + tail
    return keys, argv


def ms(us):
    return -1 if us == -1 else -(-us // 1000)


def pick_reported(outcomes, allowed):
    """docs/algorithms.md, "Multi-policy checks"."""
    best = None
    for i, o in enumerate(outcomes):
        if allowed:
            if best is None or o["remaining"] < outcomes[best]["remaining"]:
                best = i
            continue
        if o["allowed"]:
            continue
        if best is None:
            best = i
            continue
        a, b = o["retry"], outcomes[best]["retry"]
        if b == -1:
            continue
        if a == -1 or a > b:
            best = i
    return best


def parse_reply(reply, n):
    if not isinstance(reply, list) or len(reply) != 1 + 4 * n or not all(
            isinstance(x, int) for x in reply):
        raise AssertionError("malformed reply %r" % (reply,))
    outcomes = []
    for i in range(n):
        a, rem, reset, retry = reply[1 + 4 * i: 5 + 4 * i]
        outcomes.append({"allowed": a == 1, "remaining": rem, "reset": reset,
                         "retry": retry})
    if reply[0] != int(all(o["allowed"] for o in outcomes)):
        raise AssertionError("all_allowed %d disagrees with %r" % (reply[0], reply))
    return reply[0] == 1, outcomes


# --------------------------------------------------------------------------
# Replay.

class Replay:
    def __init__(self, r, pinned_sha):
        self.r = r
        self.sha = pinned_sha
        self.failures = []
        self.steps_checked = 0
        self.steps_skipped = 0
        self.resets = 0
        self.runs = 0
        self.ttl_checks = 0

    def fail(self, where, msg):
        self.failures.append("%s: %s" % (where, msg))

    def run_case(self, fname, case, mode, run_id):
        policies = [derive(p) for p in case["policies"]]
        prefix = b"tgcheck:%d:" % run_id
        sha = self.sha[mode] if mode != "single" else self.sha[policies[0]["alg"]]
        self.runs += 1
        for idx, step in enumerate(case["steps"]):
            where = "%s / %s / step %d (%s script)" % (fname, case["name"], idx, mode)
            now = step["t_us"] if "t_us" in step else step["t_ms"] * 1000
            user_key = step.get("key", case["key"])
            keys = [redis_key(prefix, user_key, p) for p in policies]
            if step.get("op", "check") == "reset":
                self.r.call("DEL", *keys)
                self.resets += 1
                continue
            if "expect_error" in step:
                self.steps_skipped += 1  # validated in C++ before any script runs
                continue
            cost = step["cost"]
            before = self.r.call("MGET", *keys)
            try:
                if mode == "batch":  # a batch of this one check
                    _, argv = batch_call(now, [(cost, keys, policies)])
                else:
                    argv = script_argv(cost, now, policies)
                reply = self.r.call("EVALSHA", sha, len(keys), *keys, *argv)
                allowed, outcomes = parse_reply(reply, len(policies))
            except (RedisError, AssertionError) as e:
                self.fail(where, str(e))
                continue
            self.steps_checked += 1
            i = pick_reported(outcomes, allowed)
            o = outcomes[i]
            got = {"allowed": allowed, "limit": policies[i]["limit"],
                   "remaining": o["remaining"], "reset_after_ms": ms(o["reset"]),
                   "retry_after_ms": 0 if allowed else ms(o["retry"]),
                   "policy_index": i}
            want = {k: step["expect"][k] for k in got}
            if got != want:
                self.fail(where, "t_us=%d cost=%d\n    expected %s\n    got      %s"
                          "\n    raw reply %s" % (now, cost, want, got, reply))
            self.check_writes(where, keys, before, allowed and cost >= 1)

    def check_writes(self, where, keys, before, wrote):
        after = self.r.call("MGET", *keys)
        if not wrote and after != before:
            self.fail(where, "a denied call or a peek changed state: %r -> %r"
                      % (before, after))
        for k, v in zip(keys, after):
            if v is None:
                if wrote:
                    self.fail(where, "allowed call left key %r unwritten" % k)
                continue
            self.ttl_checks += 1
            pttl = self.r.call("PTTL", k)
            if pttl <= 0:
                self.fail(where, "key %r has PTTL %d" % (k, pttl))


def replay_vectors(r, pinned_sha):
    rep = Replay(r, pinned_sha)
    run_id = 0
    per_file = []
    for path in sorted(VECTORS_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        before = (rep.steps_checked, len(rep.failures))
        for case in data["cases"]:
            modes = ["multi", "batch"]
            if len(case["policies"]) == 1:
                modes.insert(0, "single")
            for mode in modes:
                run_id += 1
                rep.run_case(path.name, case, mode, run_id)
        per_file.append((path.name, len(data["cases"]),
                         rep.steps_checked - before[0],
                         len(rep.failures) - before[1]))
    return rep, per_file


# --------------------------------------------------------------------------
# Beyond the vectors: the helpers near 2^53, and random steps compared with
# the independent Python model (tests/vectors/reference.py).

def check_helpers(r, pinned):
    """idiv and %d formatting, taken from the embedded pinned gcra script."""
    body = pinned["gcra"][0]
    body = body[:body.rindex(b"return run_single(")]
    body += (b"local out = {}\n"
             b"for i = 1, #ARGV, 2 do\n"
             b"  local q = idiv(tonumber(ARGV[i]), tonumber(ARGV[i + 1]))\n"
             b"  out[#out + 1] = fmt('%d', q)\n"
             b"end\n"
             b"out[#out + 1] = fmt('%d', tonumber(ARGV[1]))\n"
             b"return out\n")
    rng = random.Random(53)
    pairs = [((1 << 53) - 1, 1), ((1 << 53) - 1, 3), (-(1 << 53) + 1, 7),
             ((1 << 53) - 2, (1 << 52) - 1), (0, 5), (-1, 1000), (999, 1000),
             (1000, 1000), (-1000, 1000), (-1001, 1000)]
    for _ in range(2000):
        b = rng.randint(1, 1 << rng.randint(1, 50))
        q = rng.randint(-((1 << 53) - 1) // b, ((1 << 53) - 1) // b)
        a = q * b + rng.choice([0, 1, -1, b - 1, rng.randint(0, b - 1)])
        if abs(a) < (1 << 53):
            pairs.append((a, b))
    argv = [x for pair in pairs for x in pair]
    got = r.call("EVAL", body, 0, *argv)
    errors = []
    for (a, b), q in zip(pairs, got):
        if int(q) != a // b:
            errors.append("idiv(%d, %d) = %s, want %d" % (a, b, q.decode(), a // b))
    if int(got[-1]) != pairs[0][0]:
        errors.append("fmt('%%d') of 2^53 - 1 gave %r" % got[-1])
    return len(pairs), errors


def load_reference():
    spec = importlib.util.spec_from_file_location(
        "tollgate_reference", VECTORS_DIR / "reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_policy(ref, rng):
    while True:
        alg = rng.choice(list(ALGORITHMS))
        limit = rng.choice([1, 2, 3, 7, 10, 100, rng.randint(1, 1000),
                            rng.randint(1, 1 << 40), 1 << 40])
        period_ms = rng.choice([1, 7, 1000, 60000, 3600000, rng.randint(1, 100000),
                                rng.randint(1, 1 << 40), 1 << 40])
        burst = 0
        if alg in ("gcra", "token_bucket") and rng.random() < 0.4:
            burst = rng.choice([1, 2, rng.randint(1, 1000), rng.randint(1, 1 << 40)])
        try:
            return ref.Policy(alg, limit, period_ms, burst)
        except AssertionError:  # outside the bounds of docs/algorithms.md
            continue


def random_subjects(ref, rng, count, prefix, policy_counts):
    """`count` subjects, each with a random number (from `policy_counts`)
    of random policies and their keys, and an empty model."""
    subs = []
    for j in range(count):
        pols, keys = [], []
        for _ in range(rng.choice(policy_counts)):
            p = random_policy(ref, rng)
            d = derive(p.to_json())
            k = redis_key(b"%s:%d:" % (prefix, j), "s", d)
            if k not in keys:
                pols.append((p, d))
                keys.append(k)
        subs.append({"pols": pols, "keys": keys, "model": {}})
    return subs


def fuzz(r, pinned_sha, subjects=60, rounds=150, seed=2024):
    """Random policies (up to the bounds), times (up to 2^52 us, with small
    steps back), costs (0, 1, capacity, capacity + 1, 2^53 - 1, ...): every
    per-policy outcome in us must equal the model's. Both sides keep state
    past its expiry (Redis: the pinned TTL floor), which the doc says
    decides like a missing key."""
    ref = load_reference()
    rng = random.Random(seed)
    subs = random_subjects(ref, rng, subjects, b"tgfuzz", [1, 1, 1, 2, 3, 4])
    for s in subs:
        s["now"] = rng.randint(0, (1 << 52) - (1 << 50))
    errors, steps = [], 0
    for rnd in range(rounds):
        payload, plan = [], []
        for s in subs:
            p0 = rng.choice(s["pols"])[0]
            span = rng.choice([0, 1, 999, 1000, getattr(p0, "T", p0.P), p0.P, 2 * p0.P])
            dt = rng.randint(0, max(0, span))
            if rng.random() < 0.05:
                dt = -rng.randint(0, 2000)
            s["now"] = min(max(0, s["now"] + dt), (1 << 52) - 1)
            cap = p0.capacity
            cost = rng.choice([0, 1, 1, 1, 2, rng.randint(0, cap), cap, cap + 1,
                               (1 << 53) - 1])
            single = len(s["pols"]) == 1 and rng.random() < 0.5
            sha = pinned_sha[s["pols"][0][1]["alg"] if single else "multi"]
            payload.append(Redis.encode(
                "EVALSHA", sha, len(s["keys"]), *s["keys"],
                *script_argv(cost, s["now"], [d for _, d in s["pols"]])))
            plan.append((s, cost))
        replies = r.pipeline(b"".join(payload), len(payload), raise_errors=False)
        for (s, cost), reply in zip(plan, replies):
            steps += 1
            now = s["now"]
            if isinstance(reply, RedisError):
                errors.append("fuzz round %d: %s" % (rnd, reply))
                s["model"] = None
                continue
            outs = [ref.EVAL[p.algorithm](p, s["model"].get(p.ident()), now, cost)
                    for p, _ in s["pols"]]
            want = [(int(o.allowed), o.remaining, o.reset_us, o.retry_us) for o in outs]
            got = [tuple(reply[1 + 4 * i: 5 + 4 * i]) for i in range(len(outs))]
            if got != want or reply[0] != int(all(o.allowed for o in outs)):
                errors.append("fuzz round %d: %r now=%d cost=%d state=%r\n"
                              "    model %r\n    redis %r" % (
                                  rnd, [p for p, _ in s["pols"]], now, cost,
                                  s["model"], want, reply))
                s["model"] = None  # out of step with Redis: drop the subject
            elif all(o.allowed for o in outs) and cost >= 1:
                for (p, _), o in zip(s["pols"], outs):
                    s["model"][p.ident()] = o.state
        subs = [s for s in subs if s["model"] is not None]
        if len(errors) > 20:
            break
    for s in subs:
        for k in s["keys"]:
            if r.call("EXISTS", k) and r.call("PTTL", k) <= 0:
                errors.append("fuzz: key %r has no TTL" % k)
    return steps, errors


def fuzz_batch(r, pinned_sha, subjects=40, rounds=120, seed=4242):
    """The batch script against the model: each round is ONE call carrying a
    check of every subject (some subjects twice, so a key meets itself
    within a call), at one time for all; every check's outcomes must equal
    the model's, applied in the call's order."""
    ref = load_reference()
    rng = random.Random(seed)
    subs = random_subjects(ref, rng, subjects, b"tgbatch", [1, 1, 1, 2, 3])
    now = rng.randint(0, (1 << 52) - (1 << 50))
    errors, steps = [], 0
    for rnd in range(rounds):
        now = min(now + rng.choice([0, 1, 999, 1000, 100000, rng.randint(0, 10 ** 7)]),
                  (1 << 52) - 1)
        order = subs + rng.sample(subs, min(len(subs), 8))
        rng.shuffle(order)
        plan = []
        for s in order:
            cap = s["pols"][0][0].capacity
            cost = rng.choice([0, 1, 1, 1, 2, rng.randint(0, cap), cap, cap + 1])
            plan.append((s, cost))
        keys, argv = batch_call(now, [(c, s["keys"], [d for _, d in s["pols"]])
                                      for s, c in plan])
        try:
            reply = r.call("EVALSHA", pinned_sha["batch"], len(keys), *keys, *argv)
        except RedisError as e:
            errors.append("batch round %d: %s" % (rnd, e))
            break
        want_len = sum(1 + 4 * len(s["pols"]) for s, _ in plan)
        if not isinstance(reply, list) or len(reply) != want_len:
            errors.append("batch round %d: reply of %r items, want %d"
                          % (rnd, len(reply) if isinstance(reply, list) else reply,
                             want_len))
            break
        off = 0
        for s, cost in plan:
            steps += 1
            n = len(s["pols"])
            got = reply[off: off + 1 + 4 * n]
            off += 1 + 4 * n
            outs = [ref.EVAL[p.algorithm](p, s["model"].get(p.ident()), now, cost)
                    for p, _ in s["pols"]]
            want = [int(all(o.allowed for o in outs))]
            for o in outs:
                want += [int(o.allowed), o.remaining, o.reset_us, o.retry_us]
            if got != want:
                errors.append("batch round %d: %r now=%d cost=%d\n    model %r\n"
                              "    redis %r" % (rnd, [p for p, _ in s["pols"]], now,
                                                cost, want, got))
                return steps, errors
            if all(o.allowed for o in outs) and cost >= 1:
                for (p, _), o in zip(s["pols"], outs):
                    s["model"][p.ident()] = o.state
    # Malformed calls are refused before anything is written.
    k = redis_key(b"tgbatch:bad:", "b", subs[0]["pols"][0][1])
    d = subs[0]["pols"][0][1]
    pol = [d["alg_id"], d["limit"], d["period_ms"], d["capacity"], d["interval"]]
    for label, nkeys, argv in [
            ("policy number out of range", 1, [1, now] + pol + [1, 1, 2]),
            ("too few keys", 0, [1, now] + pol + [1, 1, 1]),
            ("a check cut short", 1, [1, now] + pol + [1, 1, 1, 1, 1]),
            ("unknown algorithm", 1, [1, now, 9] + pol[1:] + [1, 1, 1])]:
        try:
            r.call("EVALSHA", pinned_sha["batch"], nkeys, *([k] * nkeys), *argv)
            errors.append("batch: %s was accepted" % label)
        except RedisError as e:
            if "tollgate" not in str(e):
                errors.append("batch: %s: %s" % (label, e))
        if r.call("EXISTS", k):
            errors.append("batch: %s wrote a key" % label)
    return steps, errors


# --------------------------------------------------------------------------
# Production scripts against the real clock.

def server_now_us(r):
    s, us = r.call("TIME")
    return int(s) * 1000000 + int(us)


def check_production(r, prod_sha):
    errors = []

    def expect(cond, msg):
        if not cond:
            errors.append(msg)

    gcra = derive({"algorithm": "gcra", "limit": 10, "period_ms": 1000, "burst": 0})
    key = redis_key(b"tgcheck:prod:", "u", gcra)
    r.call("DEL", key)
    # ARGV[2] carries a bogus time: the production script must ignore it.
    t0 = server_now_us(r)
    reply = r.call("EVALSHA", prod_sha["gcra"], 1, key, *script_argv(1, 1, [gcra]))
    t1 = server_now_us(r)
    expect(reply == [1, 1, 9, 100000, 0], "gcra first call %r, want [1,1,9,100000,0]"
           % (reply,))
    tat = int(r.call("GET", key))
    # tat = now_script + T with t0 <= now_script <= t1.
    expect(t0 + 100000 <= tat <= t1 + 100000,
           "stored tat %d is not TIME + T (TIME was %d .. %d)" % (tat, t0, t1))
    # The state expires at tat rounded up to a whole second.
    pttl = r.call("PTTL", key)
    grain = 1000000
    ends = -(-tat // grain) * grain
    expect(0 < pttl <= -(-(ends - t0) // 1000) + 1 and
           pttl >= (tat - t1) // 1000 - 1,
           "PTTL %d, want ~%d ms (tat %d rounded up to a second)"
           % (pttl, (ends - t0) // 1000, tat))
    reply = r.call("EVALSHA", prod_sha["gcra"], 1, key, *script_argv(9, 1, [gcra]))
    expect(reply == [1, 1, 0, reply[3], 0] and 999000 < reply[3] <= 1000000,
           "gcra 9 more at once: %r" % (reply,))
    reply = r.call("EVALSHA", prod_sha["gcra"], 1, key, *script_argv(1, 1, [gcra]))
    expect(reply[0] == 0 and reply[2] == 0 and 0 < reply[4] <= 100000,
           "gcra 11th call should be denied with retry <= T: %r" % (reply,))

    # Windows: a second write in the same window keeps the key's TTL (SET
    # KEEPTTL on Redis 7); either way the key must expire at the window's
    # end, never before, never much after.
    for alg, state_window_end in (("fixed_window", 1), ("sliding_window", 2)):
        w = derive({"algorithm": alg, "limit": 100, "period_ms": 60000, "burst": 0})
        wkey = redis_key(b"tgcheck:prod:", "win", w)
        r.call("DEL", wkey)
        for call in range(3):
            t0 = server_now_us(r)
            r.call("EVALSHA", prod_sha[alg], 1, wkey, *script_argv(1, 1, [w]))
            t1 = server_now_us(r)
            P = 60000 * 1000
            # The window end the state expires at (sliding: one window later).
            end = (t0 // P + state_window_end) * P
            pttl = r.call("PTTL", wkey)
            expect(t0 // P != t1 // P or
                   0 < pttl <= -(-(end - t0) // 1000) + 1,
                   "%s write %d: PTTL %d ms, window state ends in %d ms"
                   % (alg, call, pttl, (end - t0) // 1000))
        expect(r.call("GET", wkey).split(b" ")[1] == b"3",
               "%s: 3 writes in one window: %r" % (alg, r.call("GET", wkey)))

    # The multi script with all four algorithms, fresh keys, real clock.
    pols = [derive({"algorithm": a, "limit": 5, "period_ms": 1000, "burst": 0})
            for a in ALGORITHMS]
    keys = [redis_key(b"tgcheck:prod:", "m", p) for p in pols]
    r.call("DEL", *keys)
    reply = r.call("EVALSHA", prod_sha["multi"], len(keys), *keys,
                   *script_argv(2, 1, pols))
    expect(reply[0] == 1 and [reply[1 + 4 * i] for i in range(4)] == [1] * 4
           and [reply[2 + 4 * i] for i in range(4)] == [3] * 4,
           "multi, 4 algorithms, cost 2 on fresh keys: %r" % (reply,))
    for k in keys:
        pttl = r.call("PTTL", k)
        expect(pttl > 0, "production multi: key %r PTTL %d" % (k, pttl))
    # Every production script answers (and reads no time from ARGV[2]).
    for i, a in enumerate(ALGORITHMS):
        reply = r.call("EVALSHA", prod_sha[a], 1, keys[i], *script_argv(0, 1, [pols[i]]))
        expect(reply[0] == 1 and reply[2] == 3,
               "%s production peek after cost 2: %r" % (a, reply))
    return errors


# --------------------------------------------------------------------------
# Cost per call.

def bench(r, prod_sha, calls, batch=500):
    """Server-side usec per EVALSHA (INFO commandstats), pipelined calls on
    1000 rotating keys whose limits are never reached (every call allowed
    and written, the expensive path)."""
    big = {"limit": 1 << 40, "period_ms": 1000, "burst": 0}
    cases = [
        ("gcra script, 1 policy", "gcra", ["gcra"]),
        ("token_bucket script, 1 policy", "token_bucket", ["token_bucket"]),
        ("multi script, 1 gcra policy", "multi", ["gcra"]),
        ("multi script, 2 gcra policies", "multi", ["gcra", "gcra"]),
        ("multi script, 4 policies (one per algorithm)", "multi",
         ["gcra", "token_bucket", "fixed_window", "sliding_window"]),
        ("batch script, 32 checks of 1 gcra policy", "batch", ["gcra"]),
    ]
    results = []
    noop = r.call("SCRIPT", "LOAD", "return 1").decode()
    for label, script, algs in cases + [("baseline: EVALSHA of 'return 1'", None, [])]:
        pols = []
        for j, a in enumerate(algs):
            p = dict(big, algorithm=a, period_ms=1000 * (j + 1))
            pols.append(derive(p))
        payloads = []
        for k in range(1000):
            if script is None:
                payloads.append(Redis.encode("EVALSHA", noop, 0))
                continue
            if script == "batch":
                checks = [(1, [redis_key(b"tgbench:", "k%d" % ((32 * k + c) % 1000), p)
                               for p in pols], pols) for c in range(32)]
                keys, argv = batch_call(0, checks)
            else:
                keys = [redis_key(b"tgbench:", "k%d" % k, p) for p in pols]
                argv = script_argv(1, 0, pols)
            payloads.append(Redis.encode("EVALSHA", prod_sha[script], len(keys), *keys,
                                         *argv))
        r.call("FLUSHDB")
        r.call("CONFIG", "RESETSTAT")
        done = 0
        start = time.perf_counter()
        while done < calls:
            n = min(batch, calls - done)
            chunk = b"".join(payloads[(done + i) % 1000] for i in range(n))
            r.pipeline(chunk, n)
            done += n
        wall = time.perf_counter() - start
        info = r.call("INFO", "commandstats").decode()
        m = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", info)
        results.append((label, int(m.group(1)), float(m.group(3)), calls / wall))
    r.call("FLUSHDB")
    return results


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("--bench-calls", type=int, default=20000,
                    help="EVALSHA calls per measured script (0: skip)")
    ap.add_argument("--redis-server",
                    default=os.environ.get("REDIS_SERVER") or shutil.which("redis-server"))
    args = ap.parse_args()
    if not args.redis_server or not os.access(args.redis_server, os.X_OK):
        print("SKIP: redis-server not found (set REDIS_SERVER)")
        return SKIP

    prod, pinned = load_embedded(args.build_dir)
    problems = []
    for name, (body, sha) in list(prod.items()) + list(pinned.items()):
        if hashlib.sha1(body).hexdigest() != sha:
            problems.append("%s: embedded SHA1 %s does not match its body" % (name, sha))
        if b"tostring(" in body:
            problems.append("%s: uses tostring (loses digits past %%.14g)" % name)
    for name, (body, _) in prod.items():
        if b"ARGV[2]" in body or b"prelude_pinned" in body or b"TIME" not in body:
            problems.append("production %s may take the time from the caller" % name)
    for name, (body, _) in pinned.items():
        if b"tonumber(ARGV[2])" not in body:
            problems.append("pinned %s does not read ARGV[2]" % name)

    server = RedisServer(args.redis_server)
    try:
        r = server.start()
        version = re.search(r"redis_version:(\S+)", r.call("INFO", "server").decode())
        print("redis-server %s on 127.0.0.1:%d" % (version.group(1), server.port))
        prod_sha, pinned_sha = {}, {}
        for table, shas in ((prod, prod_sha), (pinned, pinned_sha)):
            for name, (body, sha) in table.items():
                got = r.call("SCRIPT", "LOAD", body).decode()
                if got != sha:
                    problems.append("%s: Redis SHA1 %s, embedded %s" % (name, got, sha))
                shas[name] = sha

        rep, per_file = replay_vectors(r, pinned_sha)
        for fname, ncases, nsteps, nfail in per_file:
            print("  %-20s %3d cases, %4d checks, %d failures" % (fname, ncases, nsteps, nfail))
        print("vectors: %d case runs, %d checks passed of %d, %d resets, %d "
              "error steps skipped (C++ validation), %d TTL checks"
              % (rep.runs, rep.steps_checked - len(rep.failures), rep.steps_checked,
                 rep.resets, rep.steps_skipped, rep.ttl_checks))
        problems += rep.failures

        npairs, helper_errors = check_helpers(r, pinned)
        print("helpers: idiv exact on %d pairs up to 2^53 - 1: %s"
              % (npairs, "ok" if not helper_errors else "%d problems" % len(helper_errors)))
        problems += helper_errors

        nsteps, fuzz_errors = fuzz(r, pinned_sha)
        print("random steps against tests/vectors/reference.py: %d, %s"
              % (nsteps, "ok" if not fuzz_errors else "%d problems" % len(fuzz_errors)))
        problems += fuzz_errors

        nsteps, batch_errors = fuzz_batch(r, pinned_sha)
        print("batch script, random joined calls against the model: %d checks, %s"
              % (nsteps, "ok" if not batch_errors else "%d problems" % len(batch_errors)))
        problems += batch_errors

        prod_errors = check_production(r, prod_sha)
        print("production scripts against TIME: %s"
              % ("ok" if not prod_errors else "%d problems" % len(prod_errors)))
        problems += prod_errors

        if args.bench_calls > 0:
            print("cost per call (server side, INFO commandstats; %d pipelined "
                  "EVALSHA each, every call allowed and written):" % args.bench_calls)
            for label, ncalls, usec, rate in bench(r, prod_sha, args.bench_calls):
                per = "  (%.2f us per check)" % (usec / 32) if "32 checks" in label else ""
                print("  %-46s %6.2f us/call  (%d calls, %.0f calls/s from "
                      "this client)%s" % (label, usec, ncalls, rate, per))
        r.close()
    except Exception:
        print("redis-server log:\n" + server.log_text(), file=sys.stderr)
        raise
    finally:
        server.cleanup()

    for p in problems[:50]:
        print("FAIL " + p)
    if problems:
        print("%d problems" % len(problems))
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
