#!/usr/bin/env python3
"""Redis's own CPU per script call for two checkouts, alternately.

    python3 bench/ab_scripts.py <checkout A> <checkout B> [rounds]

Each checkout must be configured with -DTOLLGATE_TESTING=ON in <checkout>/build
(configuring is enough: it writes the embedded scripts), or name the build
directory as <checkout>:<build dir>. Each round runs A's then B's own
tests/redis_scripts_check.py (each tree's checker speaks its scripts'
calling convention), whose cost table is INFO commandstats usec_per_call
over 20,000 pipelined calls, on a throwaway redis-server, beside a
hand-written INCR + PEXPIRE script in the same run. Prints the median per
row over the rounds, B / A, and each side as a multiple of its own
reference row, with the load average before each round (a figure taken
beside other work says little: see bench/when_quiet.sh). AB_CALLS sets the
calls per row (the smoke test in bench/CMakeLists.txt uses 2,000).

A row only B has is compared with the A row it replaces: B's "gcra
function (FCALL), 1 policy" with A's "gcra script, 1 policy" (the same
check, called as a Redis 7 function), and so on per algorithm.
"""

import os
import re
import statistics
import subprocess
import sys

ROW = re.compile(r"^  (.+?)\s+([\d.]+) us/call")


def tree(arg):
    root, _, build = arg.partition(":")
    return os.path.abspath(root), os.path.abspath(build or os.path.join(root, "build"))


def costs(root, build):
    out = subprocess.run(
        [sys.executable, os.path.join(root, "tests", "redis_scripts_check.py"), build,
         "--bench-calls", os.environ.get("AB_CALLS", "20000")],
        check=True, capture_output=True, text=True).stdout
    if "all passed" not in out:
        raise SystemExit("%s: the checker did not pass:\n%s" % (root, out))
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = float(m.group(2))
    return rows


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    sides = {"A": tree(sys.argv[1]), "B": tree(sys.argv[2])}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    got = {"A": [], "B": []}
    for r in range(rounds):
        with open("/proc/loadavg") as f:
            print("round %d, load %s" % (r + 1, " ".join(f.read().split()[:3])), flush=True)
        for side in ("A", "B"):
            got[side].append(costs(*sides[side]))
    med = {s: {k: statistics.median(run[k] for run in got[s] if k in run)
               for k in got[s][0]} for s in got}
    ref = {s: next(v for k, v in med[s].items() if k.startswith("reference")) for s in med}
    print("| script | A, us per call | B | B / A | A / reference | B / reference |")
    print("|---|---|---|---|---|---|")
    for k, b in med["B"].items():
        a_row = k if k in med["A"] else replaced(k)
        if a_row not in med["A"]:
            continue
        a = med["A"][a_row]
        label = k if a_row == k else "%s (A: %s)" % (k, a_row)
        print("| %s | %.2f | %.2f | %.2fx | %.2fx | %.2fx |"
              % (label, a, b, b / a, a / ref["A"], b / ref["B"]))


def replaced(row):
    """The A row a B-only row stands in for: a function's script."""
    if " function" not in row:
        return None
    return "%s script, 1 policy" % row.split()[0]


if __name__ == "__main__":
    main()
