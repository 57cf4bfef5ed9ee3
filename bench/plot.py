#!/usr/bin/env python3
"""Turns the benchmarks' JSON output into the tables and plots of
docs/benchmarks.md. Python 3 standard library only; it writes the SVG
itself.

    python3 bench/plot.py [--root DIR] [--results DIR] [--out DIR] [--page-out FILE]

It reads bench/results/{memory,redis,python,node,cluster}.json (made by the
commands in docs/benchmarks.md, "Reproduce"), writes one SVG per chart to
docs/benchmarks/ (or --out) and rewrites each block of docs/benchmarks.md
that lies between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`
with the table of that name (or writes the page to --page-out instead).

The output depends on the JSON only: no dates, no machine facts of its
own, fixed number formats and a fixed order, so the same JSON gives
byte-identical files (tests/check_bench_plot.py relies on it).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

RESULTS = ("memory", "redis", "python", "node", "cluster", "spin")

# ---------------------------------------------------------------------------
# Number formats: one place, so the page and the plots agree.


def f_int(x: float) -> str:
    return "{:,.0f}".format(x)


def f_m(x: float) -> str:  # checks/s -> "11.47 M"
    return "%.2f M" % (x / 1e6)


def f1(x: float) -> str:
    return "%.1f" % x


def f2(x: float) -> str:
    return "%.2f" % x


def f_ratio(x: Optional[float]) -> str:
    return "-" if x is None else "%.2fx" % x


def f_count(x: float) -> str:  # compact, for plot labels
    if x >= 1e6:
        return "%.2f M/s" % (x / 1e6)
    if x >= 1e3:
        return "%.1f k/s" % (x / 1e3)
    return "%.0f /s" % x


# ---------------------------------------------------------------------------
# Input


def load(results: Path) -> Dict[str, dict]:
    data = {}
    for name in RESULTS:
        path = results / ("%s.json" % name)
        with open(path, encoding="utf-8") as f:
            data[name] = json.load(f)
    return data


def row(rows: Sequence[dict], name: str, key: str = "name") -> dict:
    for r in rows:
        if r.get(key) == name:
            return r
    raise KeyError("no row %r" % name)


def mem_rows(d: dict) -> Dict[str, dict]:
    return {r["name"]: r for r in d["throughput_checks_per_s"]}


def lat_rows(d: dict) -> Dict[str, dict]:
    return {r["name"]: r for r in d["latency_ns"]}


def node_group(d: dict, prefix: str) -> List[dict]:
    for g in d["groups"]:
        if g["name"].startswith(prefix):
            return g["rows"]
    raise KeyError("no group %r" % prefix)


def node_keys_shape(d: dict) -> str:
    return "{:,} keys".format(int(d["args"]["keys"]))


# ---------------------------------------------------------------------------
# Tables (Markdown). Every figure on the page's tables comes from here.


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def t_machine(data: Dict[str, dict]) -> str:
    m, r, p, n = data["memory"], data["redis"], data["python"], data["node"]
    mm = m["machine"]
    pv, nv = p["versions"], n["versions"]
    rows = [
        ["CPU", "%s, %d CPUs (`nproc`)" % (mm["cpu_model"], mm["nproc"])],
        ["memory latency", "%s ns per dependent random load over %d MiB"
         % (f1(mm["memory_latency_ns"]), 16 if m["config"]["quick"] else 64)],
        ["kernel", m["machine"]["kernel"]],
        ["C/C++", "%s, Release, static `libtollgate.a`, tollgate %s" % (mm["compiler"], m["tollgate_version"])],
        ["Redis", "redis-server %s on loopback" % r["redis_version"]],
        ["Python", "%s; tollgate %s, limits %s, redis-py %s, coredis %s, pyrate-limiter %s"
         % (pv["python"], pv["tollgate"], pv["limits"], pv["redis"], pv["coredis"], pv["pyrate-limiter"])],
        ["Node", "%s; tollgate %s, rate-limiter-flexible %s, ioredis %s"
         % (nv["node"], nv["tollgate"], nv["rate-limiter-flexible"], nv["ioredis"])],
    ]
    return table(["", ""], rows)


def t_runs(data: Dict[str, dict]) -> str:
    rows = []
    for name, what in (("memory", "C, memory store"), ("redis", "C, Redis store"),
                       ("cluster", "C, Redis Cluster against standalone"),
                       ("python", "Python"), ("node", "Node")):
        mach = data[name]["machine"]
        rows.append(["`bench/results/%s.json`" % name, what,
                     "%s / %s" % (f2(mach["loadavg_start"]), f2(mach["loadavg_end"]))])
    return table(["file", "benchmark", "1-minute load, start / end"], rows)


def t_c_memory(data: Dict[str, dict]) -> str:
    d = data["memory"]
    t, lat = mem_rows(d), lat_rows(d)
    rows = []
    for label, tg, base in (("hot key", "hot key, allowed", "baseline map+mutex, hot key"),
                            ("1 M keys", "1M keys, allowed", "baseline map+mutex, 1M keys")):
        for th in ("t1", "t2"):
            a, b = t[tg], t[base]
            rows.append([
                "%s, %s, checks/s" % (label, "1 thread" if th == "t1" else "2 threads"),
                f_m(a[th]), f1(a[th + "_cpu_ns_per_call"]),
                f_m(b[th]), f1(b[th + "_cpu_ns_per_call"]),
                f_ratio(a[th] / b[th]),
            ])
    for label, tg, base, tput, tbase in (
            ("hot key", "hot key, allowed", "baseline, hot key", "hot key, allowed", "baseline map+mutex, hot key"),
            ("1 M keys", "1M keys, allowed", "baseline, 1M keys", "1M keys, allowed", "baseline map+mutex, 1M keys")):
        a, b = lat[tg], lat[base]
        rows.append([
            "%s, 1 thread, p50 / p99 ns per check" % label,
            "%.0f / %.0f" % (a["p50"], a["p99"]), f1(t[tput]["t1_cpu_ns_per_call"]),
            "%.0f / %.0f" % (b["p50"], b["p99"]), f1(t[tbase]["t1_cpu_ns_per_call"]),
            f_ratio(a["p50"] / b["p50"]),
        ])
    mem = {(x["name"], x["key_len"]): x for x in d["memory"]}
    for kl in (16, 24):
        a, b = mem[("tollgate", kl)], mem[("baseline", kl)]
        rows.append(["bytes per key, %d-byte keys, %s keys" % (kl, f_int(a["keys"])),
                     f1(a["bytes_per_key"]), "-", f1(b["bytes_per_key"]), "-",
                     f_ratio(a["bytes_per_key"] / b["bytes_per_key"])])
    return table(["", "tollgate", "CPU ns per check", "baseline (map + mutex)", "CPU ns per check",
                  "tollgate / baseline"], rows)


def t_c_redis(data: Dict[str, dict]) -> str:
    d = data["redis"]
    rs = d["rows"]

    def line(rid: str, label: str, ratio: str) -> List[str]:
        r = row(rs, rid, "id")
        lat = "%s / %s" % (f1(r["p50_us"]), f1(r["p99_us"])) if "p50_us" in r else "-"
        return [label, f_int(r["checks_per_s"]), lat, f2(r["cpu_us_per_check"]),
                f2(r["server_cpu_us_per_check"]), ratio]

    seq, blk = row(rs, "seq", "id"), row(rs, "raw_seq", "id")
    a64, p64 = row(rs, "async64", "id"), row(rs, "raw_pipe64", "id")
    rows = [
        line("seq", "tollgate `rl_check`, sequential", "p50 %s" % f_ratio(seq["p50_us"] / blk["p50_us"])),
        line("raw_seq", "baseline: blocking client, one `EVALSHA` per round trip", "-"),
        line("async64", "tollgate `rl_check_async`, 64 in flight, 1 thread",
             "checks/s %s" % f_ratio(a64["checks_per_s"] / p64["checks_per_s"])),
        line("raw_pipe64", "baseline: raw client pipelining 64 `EVALSHA`", "-"),
        line("threads8", "tollgate `rl_check`, 8 threads sharing one limiter", "-"),
    ]
    return table(["", "checks/s", "p50 / p99 us", "client CPU us per check",
                  "redis-server CPU us per check", "tollgate / baseline"], rows)


CLUSTER_MODES = (
    ("seq", "`rl_check`, sequential"),
    ("seq_nospin", "`rl_check`, sequential, `spin_us=-1`"),
    ("async64", "`rl_check_async`, 64 in flight"),
)


def t_c_cluster(data: Dict[str, dict]) -> str:
    """Each cluster figure beside the standalone one of the same mode (the
    same run, alternating); the last column is cluster / standalone."""
    d = data["cluster"]
    rs = d["rows"]
    rows = []
    for mode, label in CLUSTER_MODES:
        base = row(rs, "standalone_" + mode, "id")
        for r in rs:
            if r["mode"] != mode:
                continue
            ratio = "-"
            if r is not base:
                ratio = "CPU %s" % f_ratio(r["cpu_us_per_check"] / base["cpu_us_per_check"])
                if mode == "async64":
                    ratio += ", checks/s %s" % f_ratio(r["checks_per_s"] / base["checks_per_s"])
            target = r["target"].replace("_", " ").replace("cluster ", "cluster, ")
            rows.append(["%s, %s" % (target, label), f_int(r["checks_per_s"]),
                         "%s / %s" % (f1(r["p50_us"]), f1(r["p99_us"])),
                         f2(r["cpu_us_per_check"]), f2(r["context_switches_per_check"]),
                         f2(r["server_cpu_us_per_check"]), ratio])
    return table(["", "checks/s", "p50 / p99 us", "client CPU us per check",
                  "client context switches per check", "redis-server CPU us per check",
                  "cluster / standalone"], rows)


# Python: each peer row is compared with tollgate's like-for-like row.
PY_MEMORY = (
    ("tollgate GCRA", None),
    ("tollgate fixed window", None),
    ("limits MemoryStorage, fixed window", "tollgate fixed window"),
    ("limits MemoryStorage, moving window", "tollgate GCRA"),
    ("pyrate-limiter StateBucket (GCRA)", "tollgate GCRA"),
    ("pyrate-limiter InMemoryBucket (sliding log)", "tollgate GCRA"),
    ("tollgate GCRA, one hot key", None),
    ("limits fixed window, one hot key", "tollgate GCRA, one hot key"),
    ("tollgate GCRA, denied", None),
    ("limits fixed window, denied", "tollgate GCRA, denied"),
)
PY_REDIS = (
    ("tollgate GCRA", None),
    ("tollgate fixed window", None),
    ("limits RedisStorage (redis-py), fixed window", "tollgate fixed window"),
    ("limits RedisStorage (redis-py), moving window", "tollgate GCRA"),
    ("pyrate-limiter RedisStateStore (GCRA)", "tollgate GCRA"),
    ("pyrate-limiter RedisBucket (sorted-set log)", "tollgate GCRA"),
    ("tollgate GCRA, denied, deny cache off", None),
    ("tollgate GCRA, denied, deny cache on (default)", None),
    ("limits fixed window, denied", "tollgate GCRA, denied, deny cache off"),
)
PY_ASYNC = (
    ("tollgate check_async, GCRA", None),
    ("tollgate check_async, GCRA, loop driver", None),
    ("tollgate check_async, GCRA, I/O thread driver", None),
    ("tollgate check_async, fixed window", None),
    ("limits.aio RedisStorage (coredis, default), fixed window", "tollgate check_async, fixed window"),
    ("limits.aio RedisStorage (coredis, default), moving window", "tollgate check_async, GCRA"),
    ("limits.aio RedisStorage (redis-py asyncio), fixed window", "tollgate check_async, fixed window"),
    ("pyrate-limiter async RedisStateStore (GCRA)", "tollgate check_async, GCRA"),
    ("raw redis.asyncio evalsha (INCR script)", "tollgate check_async, GCRA"),
)
PY_ASYNC_SEQ = (
    "tollgate check_async, GCRA",
    "tollgate check_async, GCRA, loop driver",
    "tollgate check_async, GCRA, I/O thread driver",
    "raw redis.asyncio evalsha (INCR script)",
)


def _name(n: str) -> str:
    return n.replace("check_async", "`check_async`")


def t_py_memory(data: Dict[str, dict]) -> str:
    rs = data["python"]["rows"]["memory"]
    rows = []
    for name, ref in PY_MEMORY:
        r = row(rs, name)
        ratio = f_ratio(row(rs, ref)["rate"] / r["rate"]) if ref else "-"
        rows.append([_name(name), f_int(r["rate"]), f_int(1e9 / r["rate"]), f_int(r["cpu_us"] * 1e3), ratio])
    return table(["library, algorithm", "checks/s", "ns per check", "CPU ns per check",
                  "tollgate / this, checks/s"], rows)


def t_py_redis(data: Dict[str, dict]) -> str:
    rs = data["python"]["rows"]["redis"]
    rows = []
    for name, ref in PY_REDIS:
        r = row(rs, name)
        ratio = f_ratio(row(rs, ref)["p50_us"] / r["p50_us"]) if ref else "-"
        rows.append([_name(name), f_int(r["rate"]), "%s / %s" % (f1(r["p50_us"]), f1(r["p99_us"])),
                     f1(r["cpu_us"]), f1(r["redis_cpu_us"]), ratio])
    return table(["library, algorithm", "checks/s", "p50 / p99 us", "CPU us per check",
                  "redis-server CPU us per check", "tollgate / this, p50"], rows)


def t_py_async(data: Dict[str, dict]) -> str:
    d = data["python"]
    rs = d["rows"]["asyncio"]
    rows = []
    for name, ref in PY_ASYNC:
        r = row(rs, name)
        ratio = f_ratio(row(rs, ref)["rate"] / r["rate"]) if ref else "-"
        rows.append([_name(name), f_int(r["rate"]), f1(r["cpu_us"]), f1(r["redis_cpu_us"]), ratio])
    return table(["library, algorithm (%d tasks)" % d["settings"]["concurrency"], "checks/s",
                  "CPU us per check", "redis-server CPU us per check", "tollgate / this, checks/s"], rows)


def t_py_async_seq(data: Dict[str, dict]) -> str:
    rs = data["python"]["rows"]["asyncio-seq"]
    raw = row(rs, PY_ASYNC_SEQ[-1])
    rows = []
    for name in PY_ASYNC_SEQ:
        r = row(rs, name)
        rows.append([_name(name), f_int(r["rate"]), "%s / %s" % (f1(r["p50_us"]), f1(r["p99_us"])),
                     f1(r["cpu_us"]), f1(r["redis_cpu_us"]),
                     "-" if r is raw else f_ratio(r["p50_us"] / raw["p50_us"])])
    return table(["sequential `await`", "checks/s", "p50 / p99 us", "CPU us per check",
                  "redis-server CPU us per check", "p50, this / raw EVALSHA"], rows)


def t_node_memory(data: Dict[str, dict]) -> str:
    d = data["node"]
    rs = node_group(d, "memory")
    rows = []
    for shape in ("one hot key", node_keys_shape(d)):
        base = row(rs, "RateLimiterMemory await consume(), %s" % shape)
        for call in ("tollgate checkSync()", "tollgate await check()", "RateLimiterMemory await consume()",
                     "no check, await only (floor)"):
            r = row(rs, "%s, %s" % (call, shape))
            ratio = "-" if call.startswith("RateLimiterMemory") else f_ratio(r["rate"] / base["rate"])
            label = call.replace("checkSync()", "`checkSync()`").replace("await check()", "`await check()`") \
                .replace("await consume()", "`await consume()`")
            rows.append(["%s, %s" % (label, shape), f_int(r["rate"]), f2(r["cpu_us"]), ratio])
    return table(["call", "checks/s", "CPU us per call", "this / RateLimiterMemory"], rows)


def t_node_redis(data: Dict[str, dict]) -> str:
    d = data["node"]
    fl = node_group(d, "Redis, %d" % d["args"]["inflight"])
    sq = node_group(d, "Redis, sequential")
    peer = "RateLimiterRedis (ioredis) await consume()"
    rows = []
    bf, bs = row(fl, peer), row(sq, peer)
    for name in ("tollgate await check(), GCRA", "tollgate await check(), GCRA, loop driver",
                 "tollgate await check(), GCRA, I/O thread driver", "tollgate await check(), fixed window", peer, "raw ioredis evalsha (INCR script)"):
        a, s = row(fl, name), row(sq, name)
        is_peer = name == peer
        label = name.replace("await check()", "`await check()`").replace("await consume()", "`await consume()`")
        rows.append([
            label,
            f_int(a["rate"]), f2(a["cpu_us"]), f2(a["redis_cpu_us"]),
            "-" if is_peer else f_ratio(a["rate"] / bf["rate"]),
            "%s / %s" % (f1(s["p50_us"]), f1(s["p99_us"])), f1(s["cpu_us"]),
            "-" if is_peer else f_ratio(s["p50_us"] / bs["p50_us"]),
        ])
    return table(["", "%d in flight: checks/s" % d["args"]["inflight"], "CPU us per check",
                  "redis-server CPU us per check", "this / RateLimiterRedis",
                  "sequential: p50 / p99 us", "CPU us per check", "p50, this / RateLimiterRedis"], rows)


def t_spin(data: Dict[str, dict]) -> str:
    # bench/spin.sh --json: a list of runs (idle, then busy), each with rows.
    rows = []
    for run in data["spin"]:
        for r in run["rows"]:
            rows.append([run["label"], "`%s`" % r["path"], "%d" % r["spin_us"],
                         "%s / %s" % (f1(r["p50_us"]), f1(r["p99_us"])), f2(r["cpu_us"]),
                         f2(r["cs"]), f_int(r["rate"])])
    return table(["machine", "path", "`spin_us`", "p50 / p99 us", "CPU us per call",
                  "context switches per call", "checks/s"], rows)


TABLES = {
    "machine": t_machine,
    "runs": t_runs,
    "c-memory": t_c_memory,
    "c-redis": t_c_redis,
    "c-cluster": t_c_cluster,
    "spin": t_spin,
    "python-memory": t_py_memory,
    "python-redis": t_py_redis,
    "python-asyncio": t_py_async,
    "python-asyncio-seq": t_py_async_seq,
    "node-memory": t_node_memory,
    "node-redis": t_node_redis,
}


def tables(data: Dict[str, dict]) -> Dict[str, str]:
    return {name: fn(data) for name, fn in TABLES.items()}


BLOCK = re.compile(r"(<!-- generated:([a-z-]+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def update_page(text: str, blocks: Dict[str, str]) -> str:
    seen = set()

    def sub(m: "re.Match[str]") -> str:
        name = m.group(2)
        if name not in blocks:
            raise SystemExit("docs/benchmarks.md: unknown block generated:%s" % name)
        seen.add(name)
        return m.group(1) + blocks[name] + "\n" + m.group(4)

    out = BLOCK.sub(sub, text)
    missing = sorted(set(blocks) - seen)
    if missing:
        raise SystemExit("docs/benchmarks.md: no block for " + ", ".join(missing))
    return out


# ---------------------------------------------------------------------------
# SVG: horizontal bar charts, written by hand.

TOLLGATE = "#2563a8"
PEER = "#9aa5b1"
BASELINE = "#5f6b7a"
W = 800
LABEL_W = 370
BAR_W = 300
ROW_H = 22
FONT = 'font-family="Helvetica, Arial, sans-serif"'


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def num(x: float) -> str:
    """Coordinates: one decimal, no trailing zeros, never '-0'."""
    s = "%.1f" % x
    if s.endswith(".0"):
        s = s[:-2]
    return "0" if s == "-0" else s


class Svg:
    def __init__(self, title: str, subtitle: str) -> None:
        self.parts: List[str] = []
        self.y = 0.0
        self.title = title
        self.text(12, 24, title, size=16, weight="bold")
        self.text(12, 44, subtitle, size=12, fill="#444")
        self.y = 60

    def text(self, x: float, y: float, s: str, size: int = 12, anchor: str = "start",
             fill: str = "#111", weight: str = "normal") -> None:
        w = ' font-weight="bold"' if weight == "bold" else ""
        self.parts.append('<text x="%s" y="%s" font-size="%d" text-anchor="%s" fill="%s"%s>%s</text>'
                          % (num(x), num(y), size, anchor, fill, w, esc(s)))

    def rect(self, x: float, y: float, w: float, h: float, fill: str) -> None:
        self.parts.append('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>'
                          % (num(x), num(y), num(max(w, 0.5)), num(h), fill))

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#ccc", dash: bool = False) -> None:
        d = ' stroke-dasharray="3,3"' if dash else ""
        self.parts.append('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s"%s/>'
                          % (num(x1), num(y1), num(x2), num(y2), stroke, d))

    def panel(self, title: str, bars: Sequence[Tuple[str, float, str, str]]) -> None:
        """bars: (label, value, value text, colour), on a linear scale from 0."""
        self.y += 10
        self.text(12, self.y + 12, title, size=13, weight="bold")
        self.y += 20
        top = max(v for _, v, _, _ in bars) or 1.0
        for label, v, vt, colour in bars:
            self.text(LABEL_W - 8, self.y + 15, label, anchor="end")
            w = BAR_W * v / top
            self.rect(LABEL_W, self.y + 3, w, ROW_H - 6, colour)
            self.text(LABEL_W + w + 6, self.y + 15, vt, fill="#333")
            self.y += ROW_H
        self.y += 6

    def legend(self, items: Sequence[Tuple[str, str]]) -> None:
        x = LABEL_W
        self.y += 6
        for label, colour in items:
            self.rect(x, self.y + 4, 12, 12, colour)
            self.text(x + 17, self.y + 14, label, size=11)
            x += 24 + 7 * len(label)
        self.y += 24

    def render(self) -> str:
        h = int(math.ceil(self.y + 8))
        head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>\n'
                '<title>%s</title>\n<rect width="%d" height="%d" fill="#fff"/>\n'
                % (W, h, W, h, FONT, esc(self.title), W, h))
        return head + "\n".join(self.parts) + "\n</svg>\n"


def svg_c(data: Dict[str, dict]) -> str:
    m, r = data["memory"], data["redis"]
    t, lat = mem_rows(m), lat_rows(m)
    s = Svg("C ABI: memory store and Redis store against in-run baselines",
            "tollgate %s, %s x %d, redis-server %s; higher is better unless marked"
            % (m["tollgate_version"], m["machine"]["cpu_model"], m["machine"]["nproc"], r["redis_version"]))
    for label, tg, base in (("Memory store, one hot key: checks/s", "hot key, allowed", "baseline map+mutex, hot key"),
                            ("Memory store, 1 M keys: checks/s", "1M keys, allowed", "baseline map+mutex, 1M keys")):
        bars = []
        for th, thn in (("t1", "1 thread"), ("t2", "2 threads")):
            bars.append(("tollgate, %s" % thn, t[tg][th], f_count(t[tg][th]), TOLLGATE))
            bars.append(("map + mutex baseline, %s" % thn, t[base][th], f_count(t[base][th]), BASELINE))
        s.panel(label, bars)
    s.panel("Memory store, 1 thread: p50 ns per check (lower is better)", [
        ("tollgate, hot key", lat["hot key, allowed"]["p50"], "%.0f ns" % lat["hot key, allowed"]["p50"], TOLLGATE),
        ("baseline, hot key", lat["baseline, hot key"]["p50"], "%.0f ns" % lat["baseline, hot key"]["p50"], BASELINE),
        ("tollgate, 1 M keys", lat["1M keys, allowed"]["p50"], "%.0f ns" % lat["1M keys, allowed"]["p50"], TOLLGATE),
        ("baseline, 1 M keys", lat["baseline, 1M keys"]["p50"], "%.0f ns" % lat["baseline, 1M keys"]["p50"], BASELINE),
    ])
    rs = r["rows"]
    s.panel("Redis store: checks/s", [
        ("tollgate rl_check, sequential", row(rs, "seq", "id")["checks_per_s"],
         f_count(row(rs, "seq", "id")["checks_per_s"]), TOLLGATE),
        ("blocking client, sequential", row(rs, "raw_seq", "id")["checks_per_s"],
         f_count(row(rs, "raw_seq", "id")["checks_per_s"]), BASELINE),
        ("tollgate rl_check_async, 64 in flight", row(rs, "async64", "id")["checks_per_s"],
         f_count(row(rs, "async64", "id")["checks_per_s"]), TOLLGATE),
        ("raw client pipelining 64", row(rs, "raw_pipe64", "id")["checks_per_s"],
         f_count(row(rs, "raw_pipe64", "id")["checks_per_s"]), BASELINE),
        ("tollgate rl_check, 8 threads", row(rs, "threads8", "id")["checks_per_s"],
         f_count(row(rs, "threads8", "id")["checks_per_s"]), TOLLGATE),
    ])
    s.legend([("tollgate", TOLLGATE), ("baseline in the same run", BASELINE)])
    return s.render()


def svg_python(data: Dict[str, dict]) -> str:
    p = data["python"]
    v = p["versions"]
    s = Svg("Python: tollgate against limits and pyrate-limiter",
            "Python %s, tollgate %s, limits %s, pyrate-limiter %s; higher is better unless marked"
            % (v["python"], v["tollgate"], v["limits"], v["pyrate-limiter"]))

    def bars(group: str, names: Sequence[Tuple[str, str]], field: str, unit) -> List[Tuple[str, float, str, str]]:
        out = []
        for name, label in names:
            r = row(p["rows"][group], name)
            out.append((label, r[field], unit(r[field]), TOLLGATE if name.startswith("tollgate") else PEER))
        return out

    s.panel("In memory, {:,} keys: checks/s".format(p["settings"]["keys"]), bars("memory", (
        ("tollgate GCRA", "tollgate GCRA"),
        ("tollgate fixed window", "tollgate fixed window"),
        ("limits MemoryStorage, fixed window", "limits, fixed window"),
        ("limits MemoryStorage, moving window", "limits, moving window"),
        ("pyrate-limiter StateBucket (GCRA)", "pyrate-limiter, GCRA"),
    ), "rate", f_count))
    s.panel("Redis, sequential: p50 us per check (lower is better)", bars("redis", (
        ("tollgate GCRA", "tollgate GCRA"),
        ("tollgate fixed window", "tollgate fixed window"),
        ("limits RedisStorage (redis-py), fixed window", "limits (redis-py), fixed window"),
        ("limits RedisStorage (redis-py), moving window", "limits (redis-py), moving window"),
        ("pyrate-limiter RedisStateStore (GCRA)", "pyrate-limiter, GCRA"),
    ), "p50_us", lambda x: "%.1f us" % x))
    s.panel("Redis, asyncio, %d tasks: checks/s" % p["settings"]["concurrency"], bars("asyncio", (
        ("tollgate check_async, GCRA", "tollgate check_async, GCRA"),
        ("tollgate check_async, fixed window", "tollgate check_async, fixed window"),
        ("limits.aio RedisStorage (coredis, default), fixed window", "limits.aio (coredis), fixed window"),
        ("limits.aio RedisStorage (redis-py asyncio), fixed window", "limits.aio (redis-py), fixed window"),
        ("pyrate-limiter async RedisStateStore (GCRA)", "pyrate-limiter async, GCRA"),
    ), "rate", f_count))
    s.legend([("tollgate", TOLLGATE), ("peer library", PEER)])
    return s.render()


def svg_node(data: Dict[str, dict]) -> str:
    n = data["node"]
    v = n["versions"]
    shape = node_keys_shape(n)
    s = Svg("Node: tollgate against rate-limiter-flexible",
            "Node %s, tollgate %s, rate-limiter-flexible %s, ioredis %s; higher is better unless marked"
            % (v["node"], v["tollgate"], v["rate-limiter-flexible"], v["ioredis"]))
    mem = node_group(n, "memory")
    for sh in ("one hot key", shape):
        s.panel("In memory, %s: checks/s" % sh, [
            (label, row(mem, "%s, %s" % (call, sh))["rate"], f_count(row(mem, "%s, %s" % (call, sh))["rate"]), c)
            for call, label, c in (("tollgate checkSync()", "tollgate checkSync()", TOLLGATE),
                                   ("tollgate await check()", "tollgate await check()", TOLLGATE),
                                   ("RateLimiterMemory await consume()", "RateLimiterMemory", PEER))])
    fl = node_group(n, "Redis, %d" % n["args"]["inflight"])
    sq = node_group(n, "Redis, sequential")
    peer = "RateLimiterRedis (ioredis) await consume()"
    names = (("tollgate await check(), GCRA", "tollgate, GCRA", TOLLGATE),
             ("tollgate await check(), fixed window", "tollgate, fixed window", TOLLGATE),
             (peer, "RateLimiterRedis (ioredis)", PEER))
    s.panel("Redis, %d in flight: checks/s" % n["args"]["inflight"],
            [(label, row(fl, nm)["rate"], f_count(row(fl, nm)["rate"]), c) for nm, label, c in names])
    s.panel("Redis, sequential: p50 us per check (lower is better)",
            [(label, row(sq, nm)["p50_us"], "%.1f us" % row(sq, nm)["p50_us"], c) for nm, label, c in names])
    s.legend([("tollgate", TOLLGATE), ("peer library", PEER)])
    return s.render()


def summary_ratios(data: Dict[str, dict]) -> List[Tuple[str, float]]:
    """tollgate's advantage over its usual peer, as 'times better'
    (throughput ratio, or the peer's p50 over tollgate's)."""
    m, r, p, n = data["memory"], data["redis"], data["python"], data["node"]
    t = mem_rows(m)
    rs = r["rows"]
    pm, pr, pa = p["rows"]["memory"], p["rows"]["redis"], p["rows"]["asyncio"]
    shape = node_keys_shape(n)
    nm = node_group(n, "memory")
    nf = node_group(n, "Redis, %d" % n["args"]["inflight"])
    ns = node_group(n, "Redis, sequential")
    peer = "RateLimiterRedis (ioredis) await consume()"
    return [
        ("C, memory, 1 M keys, 1 thread vs map+mutex", t["1M keys, allowed"]["t1"] / t["baseline map+mutex, 1M keys"]["t1"]),
        ("C, memory, 1 M keys, 2 threads vs map+mutex", t["1M keys, allowed"]["t2"] / t["baseline map+mutex, 1M keys"]["t2"]),
        ("C, Redis, sequential p50 vs blocking client",
         row(rs, "raw_seq", "id")["p50_us"] / row(rs, "seq", "id")["p50_us"]),
        ("C, Redis, 64 in flight vs raw pipelining",
         row(rs, "async64", "id")["checks_per_s"] / row(rs, "raw_pipe64", "id")["checks_per_s"]),
        ("Python, memory vs limits (fixed window)",
         row(pm, "tollgate fixed window")["rate"] / row(pm, "limits MemoryStorage, fixed window")["rate"]),
        ("Python, Redis p50 vs limits (fixed window)",
         row(pr, "limits RedisStorage (redis-py), fixed window")["p50_us"] / row(pr, "tollgate fixed window")["p50_us"]),
        ("Python, asyncio vs limits.aio (fixed window)",
         row(pa, "tollgate check_async, fixed window")["rate"]
         / row(pa, "limits.aio RedisStorage (coredis, default), fixed window")["rate"]),
        ("Node, memory, %s: checkSync() vs RLFlexible" % shape.replace(",000 keys", " k keys"),
         row(nm, "tollgate checkSync(), %s" % shape)["rate"] / row(nm, "RateLimiterMemory await consume(), %s" % shape)["rate"]),
        ("Node, Redis, %d in flight vs RLFlexible" % n["args"]["inflight"],
         row(nf, "tollgate await check(), GCRA")["rate"] / row(nf, peer)["rate"]),
        ("Node, Redis, sequential p50 vs RLFlexible",
         row(ns, peer)["p50_us"] / row(ns, "tollgate await check(), GCRA")["p50_us"]),
    ]


def svg_summary(data: Dict[str, dict]) -> str:
    ratios = summary_ratios(data)
    s = Svg("tollgate against its usual peers (log scale; each ratio within one run)",
            "times faster (throughput ratio, or the peer's p50 over tollgate's); 1x = as fast")
    lo, hi = 0.25, 64.0
    decades = [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64]
    span = math.log2(hi) - math.log2(lo)

    def x_of(v: float) -> float:
        v = min(max(v, lo), hi)
        return LABEL_W + BAR_W * (math.log2(v) - math.log2(lo)) / span

    top = s.y + 4
    bottom = top + ROW_H * len(ratios)
    for d in decades:
        s.line(x_of(d), top, x_of(d), bottom, stroke="#999" if d == 1 else "#e2e2e2", dash=d != 1)
        s.text(x_of(d), bottom + 14, ("%gx" % d), size=10, anchor="middle", fill="#555")
    y = top
    for label, v in ratios:
        s.text(LABEL_W - 8, y + 15, label, anchor="end")
        x0, x1 = x_of(1), x_of(v)
        s.rect(min(x0, x1), y + 3, abs(x1 - x0), ROW_H - 6, TOLLGATE if v >= 1 else PEER)
        s.text(max(x0, x1) + 6, y + 15, f_ratio(v), fill="#333")
        y += ROW_H
    s.y = bottom + 24
    return s.render()


SVGS = {
    "summary.svg": svg_summary,
    "c.svg": svg_c,
    "python.svg": svg_python,
    "node.svg": svg_node,
}


def svgs(data: Dict[str, dict]) -> Dict[str, str]:
    return {name: fn(data) for name, fn in SVGS.items()}


# ---------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root_default = Path(__file__).resolve().parent.parent
    ap.add_argument("--root", type=Path, default=root_default, help="repository root (default: this script's)")
    ap.add_argument("--results", type=Path, help="read the JSON here instead of bench/results/")
    ap.add_argument("--out", type=Path, help="write the SVGs here instead of docs/benchmarks/")
    ap.add_argument("--page-out", type=Path, help="write the page here instead of rewriting docs/benchmarks.md")
    args = ap.parse_args(argv)
    data = load(args.results or args.root / "bench" / "results")
    out = args.out or args.root / "docs" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in svgs(data).items():
        (out / name).write_bytes(text.encode("utf-8"))
    page = args.root / "docs" / "benchmarks.md"
    new = update_page(page.read_text(encoding="utf-8"), tables(data))
    (args.page_out or page).write_bytes(new.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
