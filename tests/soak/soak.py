#!/usr/bin/env python3
"""The soak test (scripts/soak.sh runs it): C, Python and Node processes
check the same keys against Redis for a while, and Redis is frozen,
restarted and failed over on a schedule meanwhile. The run has three
parts, a third of the time each:

  standalone  one redis-server, frozen (SIGSTOP, 3 s) and restarted
              (SIGTERM, started again on the same port and folder) once
              per cycle;
  sentinel    a primary, a replica and 3 sentinels (tests/servers/
              topology.py), failed over once per cycle on purpose
              (SENTINEL FAILOVER) and once by freezing the primary for
              3 s, past the sentinels' 1 s down-after-milliseconds;
  cluster     3 primaries, each with a replica (topology.py), where the
              primary owning the key being checked is failed over once per
              cycle on purpose (CLUSTER FAILOVER on its replica) and once
              by freezing it for 3 s, past the 1 s cluster-node-timeout.

    soak.py --minutes M --c-worker BIN --python PY --node-package DIR
            [--json OUT] [--svg OUT] [--cycle S]

Every process checks "soak:<slot>" (a new key every 10 s) under one policy,
"200/30d", failing closed, with a 300 ms deadline and no deny cache (every
call reaches Redis). The standalone server keeps its data across restarts
(appendonly, fsync always). A cycle is 60 s (or the part, if shorter).

It samples each process's resident memory, open descriptors and threads
every 2 s and fails (exit 1), saying why, unless:

  - no call overran its deadline (by more than 250 ms of scheduling slack);
  - no key was admitted more than 200 times, counting every process,
    except in the 10 s of a failover (replication is asynchronous: writes
    the old primary acknowledged and the replica never got are lost), where
    the excess is reported;
  - every key whose 10 s saw no fault was admitted exactly 200 times;
  - after the first fifth of the run (warm-up), each process's memory,
    descriptors and threads stay flat: the last third's highest at most
    2 MB or 5% above the middle third's highest, descriptors at most 2 and
    threads at most 1 more. For the Node process "memory" is two series it
    reports itself: RSS minus V8's reserved heap (the memory outside V8's
    heap: the addon, the C library, libc) and V8's live heap after a full
    collection. Its RSS as a whole also holds V8's reserved heap, which V8
    grows in steps as it sizes its young generation (RSS 55 to 58 MB with
    heapTotal 7.7 to 12 MB while RSS minus heapTotal stayed 46-47 MB, in a
    2.5-minute run): that is plotted and reported, not judged.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
LIMIT = 200
POLICY = "200/30d"
SLOT_S = 10
TIMEOUT_MS = 300
SAMPLE_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server on a free loopback port, stopped by its PID."""

    def __init__(self, folder: str) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: "subprocess.Popen[bytes] | None" = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.folder, "--appendonly", "yes", "--appendfsync",
             "always", "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def freeze(self, seconds: float) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()


def wait_until(condition: "Callable[[], object]", seconds: float = 20) -> bool:
    """Polls `condition` every 0.1 s until it holds (True) or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def resp_command(port: int, *args: str) -> bytes:
    """One command to 127.0.0.1:port; the raw reply (a bulk string whole)."""
    body = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), 2) as c:
        c.sendall(body.encode())
        reply = c.recv(4096)
        if reply.startswith(b"$") and b"\r\n" in reply:
            head, _, _ = reply.partition(b"\r\n")
            want = len(head) + 2 + max(0, int(head[1:])) + 2
            while len(reply) < want:
                more = c.recv(65536)
                if not more:
                    break
                reply += more
        return reply


def bulk_text(reply: bytes) -> str:
    """The text of a bulk-string reply."""
    return reply.partition(b"\r\n")[2].removesuffix(b"\r\n").decode()


class Sentinels:
    """tests/servers/topology.py's Sentinel set: a primary, a replica, 3
    sentinels; stopped (all of them, by PID) when its stdin closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE.parent / "servers" / "topology.py"), "sentinel"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout
        info = json.loads(self.proc.stdout.readline())
        self.url = info["url"]
        self.name = info["master_name"]
        self.pids = {n["port"]: n["pid"] for n in info["nodes"]}
        self.sentinel_ports = [x["port"] for x in info["sentinels"]]

    def primary_port(self) -> int:
        for port in self.sentinel_ports:
            try:
                reply = resp_command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            except OSError:
                continue
            parts = reply.split(b"\r\n")
            if len(parts) >= 5:
                return int(parts[4])
        raise RuntimeError("no sentinel names the primary")

    def failover(self) -> None:
        old = self.primary_port()
        resp_command(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.name)
        wait_until(lambda: self.primary_port() != old)

    def freeze_primary(self, seconds: float) -> None:
        pid = self.pids[self.primary_port()]
        os.kill(pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """tests/servers/topology.py's Redis Cluster: 3 primaries, each with a
    replica (cluster-node-timeout 1 s); stopped (every process, by PID)
    when its stdin closes. Its faults hit the primary that owns the key
    the processes check at that moment."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE.parent / "servers" / "topology.py"), "cluster"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout
        info = json.loads(self.proc.stdout.readline())
        self.url = info["url"]
        self.pids = {n["port"]: n["pid"] for n in info["nodes"]}

    def nodes(self) -> "list[dict[str, object]]":
        """CLUSTER NODES as one node (not failed, not frozen) sees it."""
        for port in self.pids:
            try:
                text = bulk_text(resp_command(port, "CLUSTER", "NODES"))
            except (OSError, ValueError):
                continue
            out = []
            for line in text.splitlines():
                f = line.split()
                if len(f) < 8:
                    continue
                slots = []
                for r in f[8:]:
                    if r.startswith("["):
                        continue  # a slot being migrated
                    a, _, b = r.partition("-")
                    slots.append((int(a), int(b or a)))
                out.append({"id": f[0], "port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                            "flags": f[2].split(","), "primary": f[3], "slots": slots})
            return out
        raise RuntimeError("no cluster node answers CLUSTER NODES")

    def owner(self, key: str) -> "dict[str, object]":
        """The primary (not failed) that owns `key`'s slot."""
        port = next(iter(self.pids))
        slot = int(resp_command(port, "CLUSTER", "KEYSLOT", key)[1:].strip())
        for n in self.nodes():
            flags = n["flags"]
            if "master" in flags and "fail" not in flags and any(  # type: ignore[operator]
                    a <= slot <= b for a, b in n["slots"]):  # type: ignore[attr-defined]
                return n
        raise RuntimeError(f"no primary owns slot {slot}")

    def linked_replica(self, primary: "dict[str, object]") -> int:
        """A replica of `primary` whose link to it is up (waits up to 20 s)."""
        found: "list[int]" = []

        def linked() -> bool:
            for n in self.nodes():
                if n["primary"] == primary["id"] and "slave" in n["flags"]:  # type: ignore[operator]
                    info = bulk_text(resp_command(n["port"], "INFO", "replication"))  # type: ignore[arg-type]
                    if "master_link_status:up" in info:
                        found.append(n["port"])  # type: ignore[arg-type]
                        return True
            return False

        if not wait_until(linked):
            raise RuntimeError(f"primary {primary['port']} has no linked replica")
        return found[0]

    def failover(self, key: str) -> None:
        """CLUSTER FAILOVER on a replica of the owner of `key` (the primary
        hands over once the replica has caught up); returns once the
        replica owns the slot (at most 20 s)."""
        old = self.owner(key)
        replica = self.linked_replica(old)
        resp_command(replica, "CLUSTER", "FAILOVER")
        wait_until(lambda: self.owner(key)["port"] != old["port"])

    def freeze_owner(self, key: str, seconds: float) -> str:
        """Freezes the owner of `key` past cluster-node-timeout: its replica
        takes over, and the old primary rejoins as a replica once thawed.
        "failover" once the replica owns the slot (at most 20 s), else
        "freeze"."""
        old = self.owner(key)
        self.linked_replica(old)
        os.kill(self.pids[old["port"]], signal.SIGSTOP)  # type: ignore[index]
        time.sleep(seconds)
        os.kill(self.pids[old["port"]], signal.SIGCONT)  # type: ignore[index]
        moved = wait_until(lambda: self.owner(key)["port"] != old["port"])
        return "failover" if moved else "freeze"

    def stop(self) -> None:
        Sentinels.stop(self)  # type: ignore[arg-type]


def sample(pid: int) -> "dict[str, float] | None":
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # exited, not yet reaped: nothing to sample
        return None
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024.0,
        "fds": fds,
        "threads": int(fields["Threads"]),
    }


def span(series: "list[dict[str, float]]", key: str, fmt: str) -> str:
    """The lowest and highest value of `key` in `series`, as "low-high"."""
    values = [s[key] for s in series]
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def flat(series: "list[dict[str, float]]", seconds: float,
         memory: "tuple[str, ...]" = ("rss_mb",),
         counts: "tuple[tuple[str, int], ...]" = (("fds", 2), ("threads", 1))) -> "list[str]":
    """What grew after warm-up, by the rule in the docstring: each series
    named in `memory` (MB) and in `counts` (with the growth allowed).
    Samples from the last 3 s are left out: the process has stopped
    checking and is writing its report."""
    series = [s for s in series if s["t"] <= seconds - 3]
    n = len(series)
    start = n // 5
    rest = series[start:]
    if len(rest) < 3:
        return []
    third = len(rest) // 3
    middle, last = rest[third:2 * third], rest[2 * third:]
    if not middle or not last:
        return []
    problems = []
    for key in memory:
        m_mb = max(s[key] for s in middle)
        l_mb = max(s[key] for s in last)
        if l_mb > m_mb + max(2.0, 0.05 * m_mb):
            what = "memory" if key == "rss_mb" else key.removesuffix("_mb")
            problems.append(f"{what} grew from {m_mb:.1f} to {l_mb:.1f} MB")
    for key, allowed in counts:
        m = max(s[key] for s in middle)
        last_max = max(s[key] for s in last)
        if last_max > m + allowed:
            problems.append(f"{key} grew from {m:.0f} to {last_max:.0f}")
    return problems


def svg_plot(samples: "dict[str, list[dict[str, float]]]", path: str) -> None:
    """Resident memory, descriptors and threads of each process over time,
    three small panels, as a standalone SVG."""
    colors = {"c": "#1b9e77", "python": "#d95f02", "node": "#7570b3"}
    panels = [("rss_mb", "resident memory, MB"), ("fds", "open descriptors"),
              ("threads", "threads")]
    w, h, pad = 640, 160, 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" '
           f'height="{h * len(panels) + 30}" font-family="sans-serif" font-size="11">']
    tmax = max((s["t"] for ss in samples.values() for s in ss), default=1.0) or 1.0
    for i, (key, title) in enumerate(panels):
        y0 = i * h + 20
        vmax = max((s[key] for ss in samples.values() for s in ss), default=1.0)
        vmax = vmax * 1.15 or 1.0
        out.append(f'<text x="{pad}" y="{y0 - 4}">{title} (0 to {vmax:.0f})</text>')
        out.append(f'<rect x="{pad}" y="{y0}" width="{w - 2 * pad}" '
                   f'height="{h - 40}" fill="none" stroke="#999"/>')
        for lang, ss in samples.items():
            pts = " ".join(
                f"{pad + (w - 2 * pad) * s['t'] / tmax:.1f},"
                f"{y0 + (h - 40) * (1 - s[key] / vmax):.1f}" for s in ss)
            out.append(f'<polyline points="{pts}" fill="none" '
                       f'stroke="{colors.get(lang, "#000")}" stroke-width="1.5"/>')
    legend_y = h * len(panels) + 20
    x = pad
    for lang, color in colors.items():
        out.append(f'<text x="{x}" y="{legend_y}" fill="{color}">{lang}</text>')
        x += 70
    out.append(f'<text x="{x + 20}" y="{legend_y}">time: 0 to {tmax / 60:.1f} min</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def run_phase(kind: str, seconds: float, cycle: float, args: argparse.Namespace,
              tmp: str) -> "dict[str, object]":
    """One part of the run: the processes against one topology, faults on
    schedule; what they saw, sampled, and the problems found."""
    if kind == "standalone":
        store: "Redis | Sentinels | Cluster" = Redis(os.path.join(tmp, "redis"))
        url = f"redis://127.0.0.1:{store.port}"
    elif kind == "sentinel":
        store = Sentinels()
        url = store.url
    else:
        store = Cluster()
        url = store.url
    prefix = f"soak-{kind}"

    def current_key() -> str:
        return f"{prefix}:{int(time.time()) // SLOT_S}"

    common = [url, prefix, POLICY, str(SLOT_S), str(TIMEOUT_MS), str(seconds)]
    env = dict(os.environ, TOLLGATE_SOAK_NODE_PACKAGE=args.node_package)
    outs = {lang: os.path.join(tmp, f"{kind}-{lang}.json") for lang in ("c", "python", "node")}
    cmds = {
        "c": [args.c_worker, *common, outs["c"]],
        "python": [args.python, str(HERE / "soak_worker.py"), *common, outs["python"]],
        "node": ["node", "--expose-gc", str(HERE / "soak_worker.js"), *common, outs["node"]],
    }
    t0 = time.time()
    procs = {lang: subprocess.Popen(cmd, env=env) for lang, cmd in cmds.items()}
    samples: "dict[str, list[dict[str, float]]]" = {lang: [] for lang in procs}
    faults: "list[tuple[str, float, float]]" = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            for lang, p in procs.items():
                s = sample(p.pid)
                if s is not None:
                    s["t"] = round(time.time() - t0, 1)
                    samples[lang].append(s)
            stop.wait(SAMPLE_S)

    def fault(name: str, action: "Callable[[], object]") -> None:
        """Runs `action`; a name it returns replaces `name`."""
        f0 = time.time()
        said = action()
        faults.append((said if isinstance(said, str) else name, f0, time.time()))

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    rcs: "dict[str, int | None]" = {}
    try:
        # The fault schedule, cycle after cycle, until the workers end.
        while time.time() - t0 < seconds - cycle * 0.4:
            base = time.time()
            time.sleep(max(0.0, base + cycle * 0.33 - time.time()))
            if isinstance(store, Redis):
                fault("freeze", lambda: store.freeze(3.0))
            elif isinstance(store, Sentinels):
                fault("failover", store.failover)
            else:
                fault("failover", lambda: store.failover(current_key()))
            time.sleep(max(0.0, base + cycle * 0.73 - time.time()))
            if time.time() - t0 > seconds - 5:
                break
            if isinstance(store, Redis):
                fault("restart", store.restart)
            elif isinstance(store, Sentinels):
                fault("failover", lambda: store.freeze_primary(3.0))
            else:
                fault("failover", lambda: store.freeze_owner(current_key(), 3.0))
            time.sleep(max(0.0, base + cycle - time.time()))
        rcs = {lang: p.wait(seconds + 120) for lang, p in procs.items()}
    finally:
        stop.set()
        th.join()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        store.stop()
    results = {}
    for lang, path in outs.items():
        if rcs.get(lang) == 0 and os.path.exists(path):
            results[lang] = json.loads(Path(path).read_text())

    problems: "list[str]" = []
    for lang in procs:
        if lang not in results:
            problems.append(f"{kind}: the {lang} process failed (exit {rcs.get(lang)})")
    totals: "dict[int, int]" = {}
    for r in results.values():
        for slot, n in r["admitted"].items():
            totals[int(slot)] = totals.get(int(slot), 0) + n
    first_slot = int(t0) // SLOT_S + 1  # whole slots only
    last_slot = int(t0 + seconds) // SLOT_S - 1
    # A slot saw a fault if a fault (plus the time to reconnect) overlaps it.
    faulted: "dict[int, str]" = {}
    for name, a, b in faults:
        for slot in range(int(a - 1) // SLOT_S, int(b + 3) // SLOT_S + 1):
            if faulted.get(slot) != "failover":
                faulted[slot] = name
    whole = range(first_slot, last_slot + 1)
    clean = [s for s in whole if s not in faulted]
    over = {s: n for s, n in totals.items() if n > LIMIT}
    over_failover = {s: n for s, n in over.items() if faulted.get(s) == "failover"}
    over_other = {s: n for s, n in over.items() if s not in over_failover}
    short = {s: totals.get(s, 0) for s in clean if totals.get(s, 0) != LIMIT}
    if over_other:
        problems.append(f"{kind}: keys admitted more than {LIMIT} times: {over_other}")
    if short:
        problems.append(
            f"{kind}: keys without a fault not admitted exactly {LIMIT} times: {short}")
    overruns = sum(r["overruns"] for r in results.values())
    if overruns:
        problems.append(f"{kind}: {overruns} calls overran their deadline")
    for lang, ss in samples.items():
        if lang == "node":
            # Descriptors and threads from /proc; memory from its own report.
            found = flat(ss, seconds, memory=())
            found += flat(results.get(lang, {}).get("memory", []), seconds,
                          memory=("outside_v8_mb", "heap_live_mb"), counts=())
        else:
            found = flat(ss, seconds)
        for p in found:
            problems.append(f"{kind}, {lang}: {p}")
    faulted_whole = {s: k for s, k in faulted.items() if first_slot <= s <= last_slot}
    summary: "dict[str, object]" = {
        "kind": kind,
        "seconds": seconds,
        "faults": {name: sum(1 for f in faults if f[0] == name)
                   for name in sorted({f[0] for f in faults})},
        "processes": {lang: {k: r[k] for k in
                             ("calls", "errors", "overruns", "longest_ms", "memory")
                             if k in r}
                      for lang, r in results.items()},
        "keys": {"clean": len(clean), "clean_exact": len(clean) - len(short),
                 "faulted": len(faulted_whole),
                 "faulted_admitted": {str(s): totals.get(s, 0) for s in sorted(faulted_whole)},
                 "over_limit_in_failover": {str(s): n for s, n in over_failover.items()}},
        "samples": samples,
        "problems": problems,
    }
    print(f"== {kind}, {seconds / 60:.1f} min")
    for lang, ss in samples.items():
        r = results.get(lang, {})
        if ss:
            warm = ss[len(ss) // 5:] or ss
            mem = r.get("memory", [])
            mem = mem[len(mem) // 5:]
            heap = (f", outside V8's heap {span(mem, 'outside_v8_mb', '.1f')} MB, "
                    f"V8 live heap {span(mem, 'heap_live_mb', '.1f')} MB") if mem else ""
            print(f"{lang}: {r.get('calls', 0)} calls, {r.get('errors', 0)} errors, "
                  f"{r.get('overruns', 0)} overran, longest {r.get('longest_ms', 0)} ms; "
                  f"after warm-up RSS {span(warm, 'rss_mb', '.1f')} MB, "
                  f"fds {span(warm, 'fds', '.0f')}, threads {span(warm, 'threads', '.0f')}{heap}")
    print(f"faults: {summary['faults']}; keys: {len(clean)} without a fault, "
          f"{len(clean) - len(short)} of them admitted exactly {LIMIT} times; "
          f"{len(faulted_whole)} with a fault, admitted "
          f"{sorted(totals.get(s, 0) for s in faulted_whole)}; over {LIMIT} "
          f"in a failover's 10 s: {len(over_failover)}, elsewhere: {len(over_other)}")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--c-worker", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--node-package", required=True)
    ap.add_argument("--cycle", type=float, default=60.0)
    ap.add_argument("--json")
    ap.add_argument("--svg", help="the standalone part's plot; the sentinel "
                    "and cluster parts' go beside it (-sentinel.svg, -cluster.svg)")
    args = ap.parse_args()
    kinds = ("standalone", "sentinel", "cluster")
    part = args.minutes * 60 / len(kinds)
    cycle = min(args.cycle, part)
    load_start = os.getloadavg()[0]
    phases = []
    with tempfile.TemporaryDirectory(prefix="tollgate-soak-") as tmp:
        os.mkdir(os.path.join(tmp, "redis"))
        for kind in kinds:
            phases.append(run_phase(kind, part, cycle, args, tmp))
    load_end = os.getloadavg()[0]
    print(f"load {load_start:.2f} -> {load_end:.2f}")
    problems = [p for ph in phases for p in ph["problems"]]  # type: ignore[attr-defined]
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"minutes": args.minutes, "load": [round(load_start, 2), round(load_end, 2)],
             "phases": phases}, indent=1) + "\n")
    if args.svg:
        for kind, ph in zip(kinds, phases):
            path = args.svg if kind == "standalone" else (
                args.svg.removesuffix(".svg") + f"-{kind}.svg")
            svg_plot(ph["samples"], path)  # type: ignore[arg-type]
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
