#!/usr/bin/env python3
"""What the pieces of a check script cost inside Redis's Lua.

    python3 bench/lua_ops.py [rounds]

On a throwaway redis-server (tests/redis_scripts_check.py's), each snippet
runs in a loop inside one EVALSHA; INFO commandstats gives the call's time,
divided by the iterations, minus an empty loop's. Medians over the rounds
(default 3), with the load average before each. A loop keeps the interpreter
and the allocator warm, so these are lower bounds for a single call; they
say where a check script's time goes (docs/benchmarks.md, "Server cost per
check").
"""

import os
import re
import shutil
import statistics
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import redis_scripts_check as rc  # noqa: E402

# name -> (snippet, iterations). ARGV: a packed policy (9 doubles), then
# the same nine numbers as decimal text, a 16-digit time and a small one.
SNIPPETS = [
    ("empty loop", "", 20000),
    ("tonumber('1')", "local x = tonumber(ARGV[12])", 20000),
    ("tonumber of a 16-digit time", "local x = tonumber(ARGV[11])", 20000),
    ("tonumber x 9 (a policy as text)", "for v = 2, 10 do local x = tonumber(ARGV[v]) end", 20000),
    ("struct.unpack of 9 doubles", "local a, b, c, d, e, f, g, h, i = unpack9(ARGV[1])", 20000),
    ("a table {} then 5 stores", "local r = {} r[1], r[2], r[3], r[4], r[5] = 1, 2, 3, 4, 5", 20000),
    ("a table {0,0,0,0,0} then 5 stores", "local r = {0, 0, 0, 0, 0} r[1], r[2], r[3], r[4], r[5] = 1, 2, 3, 4, 5", 20000),
    ("a closure of 3 upvalues", "local g = function() return u1 + u2 + u3 end", 20000),
    ("string.format('%d', time)", "local s = fmt('%d', 1700000000123456)", 20000),
    ("string.match of a state", "local a = match('1700000000123456', '^(%d+)$')", 20000),
    ("redis.call('TIME')", "local t = redis.call('TIME')", 2000),
    ("redis.call('GET', key)", "local s = redis.call('GET', KEYS[1])", 2000),
    ("redis.call('MGET', key, key)", "local s = redis.call('MGET', KEYS[1], KEYS[1])", 2000),
    ("redis.pcall('MGET', key, key)", "local s = redis.pcall('MGET', KEYS[1], KEYS[1])", 2000),
    ("redis.call('SET', key, v, 'KEEPTTL')", "redis.call('SET', KEYS[1], '1700000000123456', 'KEEPTTL')", 2000),
    ("redis.call('SET', key, v, 'PX', ms)", "redis.call('SET', KEYS[1], '1700000000123456', 'PX', '60000')", 2000),
]

PRELUDE = ("local fmt, match = string.format, string.match "
           "local unpack9 = function(s) return struct.unpack('<ddddddddd', s) end "
           "local u1, u2, u3 = 1, 2, 3 ")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    exe = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not exe:
        print("SKIP: redis-server not found")
        return 77
    numbers = [1, 1099511627776, 1000, 1099511627776, 1, 0, 0, 0, 0]
    args = [1, b"tgops:k", struct.pack("<9d", *numbers), *numbers,
            1700000000123456, 1]
    server = rc.RedisServer(exe)
    try:
        r = server.start()
        shas = {}
        for name, body, n in SNIPPETS:
            script = PRELUDE + "for i = 1, %d do %s end return 1" % (n, body)
            shas[name] = r.call("SCRIPT", "LOAD", script).decode()
        got = {name: [] for name, _, _ in SNIPPETS}
        for k in range(rounds):
            with open("/proc/loadavg") as f:
                print("round %d, load %s" % (k + 1, " ".join(f.read().split()[:3])), flush=True)
            for name, _, n in SNIPPETS:
                r.call("CONFIG", "RESETSTAT")
                for _ in range(3):
                    r.call("EVALSHA", shas[name], *args)
                info = r.call("INFO", "commandstats").decode()
                us = float(re.search(r"cmdstat_evalsha:.*?usec_per_call=([\d.]+)", info).group(1))
                got[name].append(us * 1000 / n)
        empty = statistics.median(got["empty loop"])
        print("| inside one script | ns each |")
        print("|---|---|")
        for name, _, _ in SNIPPETS[1:]:
            print("| %s | %.0f |" % (name, statistics.median(got[name]) - empty))
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
