#!/usr/bin/env python3
"""tollgate's Python package against the most used Python rate limiters,
in one process, on one redis-server:

  - limits: MemoryStorage; RedisStorage (redis-py); limits.aio RedisStorage
    (coredis, its default, and redis-py's asyncio client);
  - pyrate-limiter: in-memory buckets, and its Redis store/bucket.

    bench_python.py [--redis URL] [--seconds S] [--reps N] [--json] [--quick]

bench/python/run.sh makes a virtualenv, installs everything and starts a
throwaway redis-server (docs/benchmarks.md, section "Python"). It prints a
table; it never fails because of speed.

Method. Every figure is the median of --reps repetitions of --seconds each;
the repetitions are interleaved (case A, case B, ..., then A, B, ... again),
so drift of the machine hits every library alike. Each repetition builds a
fresh limiter and a fresh key namespace, runs one untimed warm-up pass over
all its keys (that also creates them), then the timed loop. The policies
are large enough that nothing is ever denied (every loop counts denials and
the table shows them), except the rows named "denied", whose keys were
exhausted in the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from itertools import cycle
from typing import Any, Callable, Dict, List, Optional, Tuple

clock = time.perf_counter
cpu_clock = time.process_time  # this process, every thread (tollgate's I/O thread too)


def _no_server_cpu() -> float:
    return 0.0


# redis-server's own CPU seconds (INFO cpu); set by main() when there is one.
server_cpu: Callable[[], float] = _no_server_cpu

BIG = 10**9  # the "never denied" limit, per hour

# ---------------------------------------------------------------------------
# Timed loops. Each case supplies one call expression (on key `k`) and the
# names it uses, and the loop is compiled around it, so no case pays for an
# extra Python-level wrapper call: what is timed is what a caller would write.

_SYNC_LOOP = """
def loop(chunks, seconds, clock):
    n = 0
    denied = 0
    start = clock()
    end = start + seconds
    while True:
        for chunk in chunks:
            for k in chunk:
                if not ({expr}):
                    denied += 1
            n += len(chunk)
            now = clock()
            if now >= end:
                return n, denied, now - start, None
"""

_LATENCY_LOOP = """
def loop(chunks, seconds, clock):
    lat = []
    ap = lat.append
    denied = 0
    start = clock()
    end = start + seconds
    while True:
        for chunk in chunks:
            for k in chunk:
                t0 = clock()
                r = {expr}
                t1 = clock()
                ap(t1 - t0)
                if not r:
                    denied += 1
            if t1 >= end:
                return len(lat), denied, t1 - start, lat
"""

_ASYNC_LATENCY_WORKER = """
async def worker(keys, end, clock):
    lat = []
    ap = lat.append
    denied = 0
    for k in keys:
        t0 = clock()
        r = await {expr}
        t1 = clock()
        ap(t1 - t0)
        if not r:
            denied += 1
        if t1 >= end:
            return len(lat), denied, lat
"""

_ASYNC_WORKER = """
async def worker(keys, end, clock):
    n = 0
    denied = 0
    for k in keys:
        if not (await {expr}):
            denied += 1
        n += 1
        if clock() >= end:
            return n, denied
"""


def _compile(template: str, expr: str, ns: Dict[str, Any], name: str) -> Callable:
    env = dict(ns)
    exec(template.format(expr=expr), env)  # noqa: S102 - our own templates
    return env[name]


def _chunks(keys: List[str], size: int = 256) -> List[List[str]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


class Case:
    """One row: `make(rep)` builds a fresh limiter and returns
    (expression, namespace, close); the expression checks key `k`."""

    def __init__(self, group: str, name: str, make: Optional[Callable], hot: bool = False) -> None:
        self.group = group
        self.name = name
        self.make = make
        self.hot = hot  # every call on one key instead of the distinct keys
        self.samples: List[Dict[str, float]] = []
        self.error: Optional[str] = None
        self.tag = group  # key namespace, made unique per case in build_cases


def run_sync(case: Case, rep: int, keys: List[str], seconds: float, latency: bool) -> Dict[str, float]:
    expr, ns, close = case.make(rep)
    try:
        if case.hot:
            keys = ["%s:%d:%s" % (case.tag, rep, "user:hotkey1")] * 256
        else:
            keys = ["%s:%d:%s" % (case.tag, rep, k) for k in keys]
        warm = _compile(_SYNC_LOOP, expr, ns, "loop")
        warm([keys], 0.0, clock)  # one full pass: creates every key (and, in a denied row, uses its one unit)
        loop = _compile(_LATENCY_LOOP if latency else _SYNC_LOOP, expr, ns, "loop")
        gc.collect()
        r0, c0 = server_cpu(), cpu_clock()
        n, denied, elapsed, lat = loop(_chunks(keys), seconds, clock)
        c1, r1 = cpu_clock(), server_cpu()
    finally:
        close()
    out = {"rate": n / elapsed, "calls": n, "denied_share": denied / n,
           "cpu_us": (c1 - c0) * 1e6 / n, "redis_cpu_us": (r1 - r0) * 1e6 / n}
    if lat:
        lat.sort()
        out["p50_us"] = lat[len(lat) // 2] * 1e6
        out["p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6
    return out


def run_async(case: Case, rep: int, keys: List[str], seconds: float, concurrency: int,
              latency: bool = False) -> Dict[str, float]:
    async def main() -> Dict[str, float]:
        expr, ns, close = await case.make(rep)
        try:
            ks = ["%s:%d:%s" % (case.tag, rep, k) for k in keys]
            worker = _compile(_ASYNC_WORKER, expr, ns, "worker")
            parts = [ks[i::concurrency] for i in range(concurrency)]
            # Warm-up: every key once, all tasks in flight (untimed).
            await asyncio.gather(*(worker(p, float("inf"), clock) for p in parts))
            if latency:
                worker = _compile(_ASYNC_LATENCY_WORKER, expr, ns, "worker")
            gc.collect()
            r0, c0 = server_cpu(), cpu_clock()
            start = clock()
            end = start + seconds
            res = await asyncio.gather(*(worker(cycle(p), end, clock) for p in parts))
            elapsed = clock() - start
            c1, r1 = cpu_clock(), server_cpu()
        finally:
            r = close()
            if asyncio.iscoroutine(r):
                await r
        n = sum(r[0] for r in res)
        denied = sum(r[1] for r in res)
        out = {"rate": n / elapsed, "calls": n, "denied_share": denied / n,
               "cpu_us": (c1 - c0) * 1e6 / n, "redis_cpu_us": (r1 - r0) * 1e6 / n}
        if latency:
            lat = sorted(x for r in res for x in r[2])
            out["p50_us"] = lat[len(lat) // 2] * 1e6
            out["p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6
        return out

    return asyncio.run(main())


# ---------------------------------------------------------------------------
# The libraries. Each maker returns (expression, namespace, close).


def _nothing() -> None:
    return None


def tollgate_case(url: Optional[str], algorithm: str, denied: bool = False, **options: Any) -> Callable:
    import tollgate

    def make(rep: int):
        lim = tollgate.Limiter(url, **options) if url else tollgate.Limiter(**options)
        pol = tollgate.Policy(1, "1h", algorithm) if denied else tollgate.Policy(BIG, "1h", algorithm)
        return "check(k, pol)", {"check": lim.check, "pol": pol}, lim.close

    return make


def tollgate_async_case(url: str, algorithm: str, **options: Any) -> Callable:
    import tollgate

    async def make(rep: int):
        lim = tollgate.Limiter(url, **options)
        pol = tollgate.Policy(BIG, "1h", algorithm)
        return "check_async(k, pol)", {"check_async": lim.check_async, "pol": pol}, lim.close

    return make


def raw_evalsha_async_case(url: str) -> Callable:
    """The floor of any asyncio Redis limiter on redis-py: EVALSHA of a
    one-line INCR script through redis.asyncio, read on the loop itself."""

    async def make(rep: int):
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(url)
        sha = await client.script_load("return redis.call('INCR', KEYS[1])")
        close = getattr(client, "aclose", None) or client.close
        return "evalsha(sha, 1, k)", {"evalsha": client.evalsha, "sha": sha}, close

    return make


def limits_case(url: Optional[str], strategy: str, denied: bool = False) -> Callable:
    import limits
    from limits import strategies

    def make(rep: int):
        storage = limits.storage.storage_from_string(url) if url else limits.storage.MemoryStorage()
        strat = getattr(strategies, strategy)(storage)
        item = limits.RateLimitItemPerHour(1 if denied else BIG)

        def close() -> None:
            if url:
                storage.reset()  # drops the LIMITS* keys of this repetition
                pool = getattr(getattr(storage, "storage", None), "connection_pool", None)
                if pool is not None:
                    pool.disconnect()

        return "hit(item, k)", {"hit": strat.hit, "item": item}, close

    return make


def limits_async_case(url: str, strategy: str, implementation: str) -> Callable:
    import limits
    from limits.aio import strategies
    from limits.aio.storage import RedisStorage

    async def make(rep: int):
        storage = RedisStorage("async+" + url, implementation=implementation)
        strat = getattr(strategies, strategy)(storage)
        item = limits.RateLimitItemPerHour(BIG)

        async def close() -> None:
            await storage.reset()

        return "hit(item, k)", {"hit": strat.hit, "item": item}, close

    return make


def _pyrate_factory(make_bucket: Callable, now_ms: Callable[[], int]):
    """pyrate-limiter routes keys to buckets through a BucketFactory; this is
    the per-name factory of its README (one bucket per key, made on first
    use), without a background leak task."""
    from pyrate_limiter import BucketFactory, RateItem

    class PerKeyFactory(BucketFactory):
        def __init__(self) -> None:
            self.buckets: Dict[str, Any] = {}

        def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, now_ms(), weight=weight)

        def get(self, item: RateItem):
            b = self.buckets.get(item.name)
            if b is None:
                b = self.buckets[item.name] = make_bucket(item.name)
            return b

    return PerKeyFactory()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def pyrate_memory_case(kind: str) -> Callable:
    from pyrate_limiter import GCRA, Duration, InMemoryBucket, Limiter, Rate, StateBucket

    rates = [Rate(BIG, Duration.HOUR)]

    def make(rep: int):
        if kind == "gcra":
            factory = _pyrate_factory(lambda name: StateBucket(rates, algorithm=GCRA()), _mono_ms)
        else:  # its default: a sliding-window log
            factory = _pyrate_factory(lambda name: InMemoryBucket(rates), _mono_ms)
        lim = Limiter(factory)
        return "acquire(k, 1, False)", {"acquire": lim.try_acquire}, lim.close

    return make


def pyrate_redis_case(url: str, kind: str) -> Callable:
    import redis
    from pyrate_limiter import GCRA, Duration, Limiter, Rate, RedisBucket, RedisStateStore, StateBucket

    rates = [Rate(BIG, Duration.HOUR)]

    def make(rep: int):
        client = redis.Redis.from_url(url)
        if kind == "gcra":
            make_bucket = lambda name: StateBucket(rates, algorithm=GCRA(), store=RedisStateStore(client, name))  # noqa: E731
        else:  # sorted-set sliding log
            make_bucket = lambda name: RedisBucket.init(rates, client, name)  # noqa: E731
        lim = Limiter(_pyrate_factory(make_bucket, _wall_ms))

        def close() -> None:
            lim.close()
            client.close()

        return "acquire(k, 1, False)", {"acquire": lim.try_acquire}, close

    return make


def pyrate_async_case(url: str) -> Callable:
    import redis.asyncio
    from pyrate_limiter import GCRA, Duration, Limiter, Rate, RedisStateStore, StateBucket

    rates = [Rate(BIG, Duration.HOUR)]

    async def make(rep: int):
        client = redis.asyncio.Redis.from_url(url)
        make_bucket = lambda name: StateBucket(rates, algorithm=GCRA(), store=RedisStateStore(client, name))  # noqa: E731
        lim = Limiter(_pyrate_factory(make_bucket, _wall_ms))

        async def close() -> None:
            await client.aclose()

        return "acquire(k, 1, False)", {"acquire": lim.try_acquire_async}, close

    return make


# ---------------------------------------------------------------------------
# Noise: the CPU time that other processes used while we ran (the machine's
# busy time, minus ours, minus redis-server's own, which it reports).


class Noise:
    def __init__(self, redis_url: Optional[str]) -> None:
        self.redis_url = redis_url
        self._client = None
        if redis_url:
            import redis

            self._client = redis.Redis.from_url(redis_url)

    @staticmethod
    def _proc_stat() -> Tuple[float, float, float]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
        busy = user + nice + system + irq + softirq
        return busy / hz, steal / hz, sum(v[:8]) / hz

    def _redis_cpu(self) -> float:
        if self._client is None:
            return 0.0
        info = self._client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def start(self) -> None:
        t = os.times()
        self._t0 = (self._proc_stat(), t.user + t.system, self._redis_cpu())

    def stop(self) -> Dict[str, float]:
        t = os.times()
        (b1, s1, a1), own1, r1 = self._proc_stat(), t.user + t.system, self._redis_cpu()
        (b0, s0, a0), own0, r0 = self._t0
        total = max(a1 - a0, 1e-9)
        return {
            "other": max(0.0, (b1 - b0) - (own1 - own0) - (r1 - r0)) / total,
            "steal": (s1 - s0) / total,
            "own": (own1 - own0) / total,
            "redis": (r1 - r0) / total,
        }


# ---------------------------------------------------------------------------


def build_cases(url: Optional[str]) -> Dict[str, List[Case]]:
    mem = [
        Case("mem", "tollgate GCRA", tollgate_case(None, "gcra")),
        Case("mem", "tollgate fixed window", tollgate_case(None, "fixed_window")),
        Case("mem", "limits MemoryStorage, fixed window", limits_case(None, "FixedWindowRateLimiter")),
        Case("mem", "limits MemoryStorage, moving window", limits_case(None, "MovingWindowRateLimiter")),
        Case("mem", "pyrate-limiter StateBucket (GCRA)", pyrate_memory_case("gcra")),
        Case("mem", "pyrate-limiter InMemoryBucket (sliding log)", pyrate_memory_case("log")),
        Case("mem", "tollgate GCRA, denied", tollgate_case(None, "gcra", denied=True)),
        Case("mem", "limits fixed window, denied", limits_case(None, "FixedWindowRateLimiter", denied=True)),
        Case("mem", "tollgate GCRA, one hot key", tollgate_case(None, "gcra"), hot=True),
        Case("mem", "limits fixed window, one hot key", limits_case(None, "FixedWindowRateLimiter"), hot=True),
    ]
    groups: Dict[str, List[Case]] = {"memory": mem}
    if url:
        groups.update(_redis_groups(url))
    for cases in groups.values():  # every case and repetition gets its own keys
        for i, c in enumerate(cases):
            c.tag = "%s%02d" % (c.group, i)
    return groups


def _redis_groups(url: str) -> Dict[str, List[Case]]:
    import tollgate

    groups: Dict[str, List[Case]] = {}
    seq = [
        Case("seq", "tollgate GCRA", tollgate_case(url, "gcra")),
        Case("seq", "tollgate fixed window", tollgate_case(url, "fixed_window")),
        Case("seq", "limits RedisStorage (redis-py), fixed window",
             limits_case(url, "FixedWindowRateLimiter")),
        Case("seq", "limits RedisStorage (redis-py), moving window",
             limits_case(url, "MovingWindowRateLimiter")),
        Case("seq", "pyrate-limiter RedisStateStore (GCRA)", pyrate_redis_case(url, "gcra")),
        Case("seq", "pyrate-limiter RedisBucket (sorted-set log)", pyrate_redis_case(url, "log")),
        Case("seq", "tollgate GCRA, denied, deny cache off",
             tollgate_case(url, "gcra", denied=True, deny_cache=False)),
        Case("seq", "tollgate GCRA, denied, deny cache on (default)",
             tollgate_case(url, "gcra", denied=True)),
        Case("seq", "limits fixed window, denied",
             limits_case(url, "FixedWindowRateLimiter", denied=True)),
    ]
    groups["redis"] = seq
    groups["asyncio-seq"] = [
        Case("aioseq", "tollgate check_async, GCRA", tollgate_async_case(url, "gcra")),
        Case("aioseq", "tollgate check_async, GCRA, loop driver",
             tollgate_async_case(url, "gcra", driver="loop")),
        Case("aioseq", "tollgate check_async, GCRA, I/O thread driver",
             tollgate_async_case(url, "gcra", driver="thread")),
        Case("aioseq", "raw redis.asyncio evalsha (INCR script)", raw_evalsha_async_case(url)),
    ]
    aio = []
    if hasattr(tollgate.Limiter, "check_async"):
        aio.append(Case("aio", "tollgate check_async, GCRA", tollgate_async_case(url, "gcra")))
        aio.append(Case("aio", "tollgate check_async, GCRA, loop driver",
                        tollgate_async_case(url, "gcra", driver="loop")))
        aio.append(Case("aio", "tollgate check_async, GCRA, I/O thread driver",
                        tollgate_async_case(url, "gcra", driver="thread")))
        aio.append(Case("aio", "tollgate check_async, fixed window", tollgate_async_case(url, "fixed_window")))
    else:
        c = Case("aio", "tollgate check_async", None)
        c.error = "not available yet (tollgate.Limiter has no check_async)"
        aio.append(c)
    aio += [
        Case("aio", "limits.aio RedisStorage (coredis, default), fixed window",
             limits_async_case(url, "FixedWindowRateLimiter", "coredis")),
        Case("aio", "limits.aio RedisStorage (coredis, default), moving window",
             limits_async_case(url, "MovingWindowRateLimiter", "coredis")),
        Case("aio", "limits.aio RedisStorage (redis-py asyncio), fixed window",
             limits_async_case(url, "FixedWindowRateLimiter", "redispy")),
        Case("aio", "pyrate-limiter async RedisStateStore (GCRA)", pyrate_async_case(url)),
        Case("aio", "raw redis.asyncio evalsha (INCR script)", raw_evalsha_async_case(url)),
    ]
    groups["asyncio"] = aio
    return groups


def versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in ("tollgate", "limits", "redis", "coredis", "pyrate-limiter"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "-"
    return out


def median_of(samples: List[Dict[str, float]], field: str) -> Optional[float]:
    vals = [s[field] for s in samples if field in s]
    return statistics.median(vals) if vals else None


def fmt_rate(x: Optional[float]) -> str:
    return "-" if x is None else "{:,.0f}".format(x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default=os.environ.get("TOLLGATE_TEST_REDIS_URL"),
                    help="redis://127.0.0.1:PORT (default: $TOLLGATE_TEST_REDIS_URL; none: memory only)")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per repetition (default 2)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per figure; the median is reported")
    ap.add_argument("--keys", type=int, default=10000, help="distinct keys, memory (default 10000)")
    ap.add_argument("--redis-keys", type=int, default=1024, help="distinct keys, Redis (default 1024)")
    ap.add_argument("--concurrency", type=int, default=64, help="asyncio tasks (default 64)")
    ap.add_argument("--only", choices=["memory", "redis", "asyncio-seq", "asyncio"], action="append",
                    help="run only this group (repeatable)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--quick", action="store_true", help="smoke run: 0.2 s, 1 repetition")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.reps = 0.2, 1

    groups = build_cases(args.redis)
    if args.only:
        groups = {g: c for g, c in groups.items() if g in args.only}
    mem_keys = ["user:%d" % (1000000 + i) for i in range(args.keys)]
    redis_keys = ["user:%d" % (1000000 + i) for i in range(args.redis_keys)]
    noise = Noise(args.redis)
    noise_by_group: Dict[str, Dict[str, float]] = {}
    global server_cpu
    if args.redis:
        server_cpu = noise._redis_cpu
    load_start = os.getloadavg()[0]

    for gname, cases in groups.items():
        noise.start()
        for rep in range(args.reps):
            for case in cases:
                if case.make is None:  # not available, or failed in an earlier repetition
                    continue
                print("[%s] rep %d/%d: %s" % (gname, rep + 1, args.reps, case.name), file=sys.stderr, flush=True)
                try:
                    if gname == "memory":
                        s = run_sync(case, rep, mem_keys, args.seconds, latency=False)
                    elif gname == "redis":
                        s = run_sync(case, rep, redis_keys, args.seconds, latency=True)
                    elif gname == "asyncio-seq":
                        s = run_async(case, rep, redis_keys, args.seconds, 1, latency=True)
                    else:
                        s = run_async(case, rep, redis_keys, args.seconds, args.concurrency)
                    case.samples.append(s)
                except Exception as e:  # report, don't hide: the row says why
                    case.error = "%s: %s" % (type(e).__name__, e)
                    case.make = None
                    print("  error: " + case.error, file=sys.stderr)
        noise_by_group[gname] = noise.stop()

    result = build_result(groups, noise_by_group, args)
    result["machine"]["loadavg_start"] = load_start
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    if args.redis:
        result["versions"]["redis-server"] = noise._client.info("server")["redis_version"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def build_result(groups: Dict[str, List[Case]], noise_by_group: Dict[str, Dict[str, float]], args) -> Dict[str, Any]:
    rows: Dict[str, List[Dict[str, Any]]] = {}
    for gname, cases in groups.items():
        rows[gname] = []
        for c in cases:
            r: Dict[str, Any] = {"name": c.name}
            if c.samples:
                rates = [s["rate"] for s in c.samples]
                r.update(
                    rate=statistics.median(rates),
                    rate_min=min(rates),
                    rate_max=max(rates),
                    denied_share=max(s["denied_share"] for s in c.samples),
                    p50_us=median_of(c.samples, "p50_us"),
                    p99_us=median_of(c.samples, "p99_us"),
                    cpu_us=median_of(c.samples, "cpu_us"),
                    redis_cpu_us=median_of(c.samples, "redis_cpu_us"),
                    reps=len(c.samples),
                )
            if c.error:
                r["error"] = c.error
            rows[gname].append(r)

    def get(group: str, name: str, field: str) -> Optional[float]:
        for r in rows.get(group, []):
            if r["name"] == name:
                return r.get(field)
        return None

    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return a / b if a and b else None

    ratios: List[Dict[str, Any]] = []
    if "memory" in rows:
        for t in ("tollgate GCRA", "tollgate fixed window"):
            for lname in ("limits MemoryStorage, fixed window", "limits MemoryStorage, moving window"):
                ratios.append({"target": "memory checks/s >= 10x limits",
                               "what": "%s / %s" % (t, lname),
                               "value": ratio(get("memory", t, "rate"), get("memory", lname, "rate")),
                               "goal": 10.0, "higher_is_better": True})
    if "redis" in rows:
        for t in ("tollgate GCRA", "tollgate fixed window"):
            for lname in ("limits RedisStorage (redis-py), fixed window",
                          "limits RedisStorage (redis-py), moving window"):
                ratios.append({"target": "Redis sequential p50 <= 0.8x limits",
                               "what": "%s / %s" % (t, lname),
                               "value": ratio(get("redis", t, "p50_us"), get("redis", lname, "p50_us")),
                               "goal": 0.8, "higher_is_better": False})
    if "asyncio-seq" in rows:
        ratios.append({"target": "asyncio sequential p50 <= 0.6x a raw redis.asyncio EVALSHA",
                       "what": "tollgate check_async, GCRA / raw redis.asyncio evalsha (INCR script)",
                       "value": ratio(get("asyncio-seq", "tollgate check_async, GCRA", "p50_us"),
                                      get("asyncio-seq", "raw redis.asyncio evalsha (INCR script)", "p50_us")),
                       "goal": 0.6, "higher_is_better": False})
    if "asyncio" in rows:
        for t in ("tollgate check_async, GCRA", "tollgate check_async, fixed window"):
            for lname in ("limits.aio RedisStorage (coredis, default), fixed window",
                          "limits.aio RedisStorage (coredis, default), moving window",
                          "limits.aio RedisStorage (redis-py asyncio), fixed window"):
                ratios.append({"target": "asyncio, 64 concurrent, checks/s >= 5x limits.aio",
                               "what": "%s / %s" % (t, lname),
                               "value": ratio(get("asyncio", t, "rate"), get("asyncio", lname, "rate")),
                               "goal": 5.0, "higher_is_better": True})
    for r in ratios:
        v = r["value"]
        if v is None:
            r["verdict"] = "n/a"
        else:
            r["verdict"] = "met" if (v >= r["goal"] if r["higher_is_better"] else v <= r["goal"]) else "not met"

    return {
        "versions": versions(),
        "bench": "python",
        "machine": {"nproc": os.cpu_count(), "cpu": _cpu_model(), "platform": platform.platform(),
                    "kernel": "%s %s" % (platform.system(), platform.release())},
        "settings": {"seconds": args.seconds, "reps": args.reps, "keys": args.keys,
                     "redis_keys": args.redis_keys, "concurrency": args.concurrency},
        "noise": noise_by_group,
        "rows": rows,
        "ratios": ratios,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def print_table(res: Dict[str, Any]) -> None:
    v = res["versions"]
    s = res["settings"]
    print("versions: " + ", ".join("%s %s" % kv for kv in v.items()))
    print("machine: %s CPUs, %s; %s" % (res["machine"]["nproc"], res["machine"]["cpu"], res["machine"]["platform"]))
    print("each figure: median of %d x %.1f s; %d keys in memory, %d keys on Redis, %d asyncio tasks"
          % (s["reps"], s["seconds"], s["keys"], s["redis_keys"], s["concurrency"]))
    titles = {"memory": "Memory, 1 thread (checks/s)",
              "redis": "Redis, sequential, 1 thread (checks/s, latency per call)",
              "asyncio-seq": "Redis, asyncio, sequential awaits (checks/s, latency per call)",
              "asyncio": "Redis, asyncio, %d concurrent tasks (checks/s)" % s["concurrency"]}
    for g, rows in res["rows"].items():
        n = res["noise"].get(g, {})
        print()
        print("## " + titles[g])
        print("noise: other processes %.1f%% of the CPU time, steal %.1f%% (this process %.1f%%, redis-server %.1f%%)"
              % (100 * n.get("other", 0), 100 * n.get("steal", 0), 100 * n.get("own", 0), 100 * n.get("redis", 0)))
        lat = g in ("redis", "asyncio-seq")
        if lat:
            print("| case | checks/s | min-max | p50 us | p99 us | CPU us/call | denied |")
            print("|---|---|---|---|---|---|---|")
        else:
            print("| case | checks/s | min-max | CPU us/call | denied |")
            print("|---|---|---|---|---|")
        for r in rows:
            if "rate" not in r:
                cells = [r["name"], r.get("error", "-")] + ["-"] * (5 if lat else 3)
            else:
                cells = [r["name"], fmt_rate(r["rate"]), "%s-%s" % (fmt_rate(r["rate_min"]), fmt_rate(r["rate_max"]))]
                if lat:
                    cells += ["%.1f" % r["p50_us"], "%.1f" % r["p99_us"]]
                cells.append("%.1f" % r["cpu_us"] if r.get("cpu_us") is not None else "-")
                cells.append("%.1f%%" % (100 * r["denied_share"]))
            print("| " + " | ".join(cells) + " |")
    print()
    print("## Targets")
    print("| target | ratio | value | verdict |")
    print("|---|---|---|---|")
    for r in res["ratios"]:
        val = "-" if r["value"] is None else "%.2fx" % r["value"]
        print("| %s | %s | %s | %s |" % (r["target"], r["what"], val, r["verdict"]))


if __name__ == "__main__":
    sys.exit(main())
