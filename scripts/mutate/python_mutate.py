"""Mutation testing of tollgate's Python modules with mutmut 2.x.

Run by scripts/mutate/python.sh inside its venv, in the work copy's
bindings/python folder (never in the checkout). Steps:

1. list every mutant mutmut makes of src/tollgate/*.py (mutmut's own
   list_mutations, the same walk `mutmut run` does);
2. pick the mutants to test: all, or a deterministic sample (seeded random
   sample of the sorted mutant ids); drop the ones listed in the
   equivalents file (they count as "equivalent");
3. write mutmut_config.py whose pre_mutation hook skips every mutant not
   picked and sets the test command of the mutated module (only the test
   files relevant to it, pytest -x, a timeout per mutant);
4. run `mutmut run` (mutates the copy in place, one mutant at a time);
5. read mutmut's cache, print survivors with their diff, per-module counts,
   and the MUTATION line last.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any, Dict, List, NamedTuple, Tuple

from mutmut import Context, RelativeMutationID, list_mutations, mutate

SRC = "src/tollgate"

# The fast tests that exercise each module, first the ones most likely to
# fail early (pytest -x stops at the first failure).
TESTS_OF: Dict[str, List[str]] = {
    "__init__.py": ["tests/test_package.py", "tests/test_memory.py", "tests/test_async.py", "tests/test_errors.py",
                    "tests/test_refund.py", "tests/test_shadow.py", "tests/test_exemptions.py",
                    "tests/test_waiting.py"],
    "_errors.py": ["tests/test_package.py", "tests/test_errors.py", "tests/test_memory.py", "tests/test_refund.py"],
    "_leases.py": ["tests/test_leases.py", "tests/test_waiting.py"],
    "_options.py": ["tests/test_errors.py", "tests/test_options.py", "tests/test_memory.py", "tests/test_redis.py",
                    "tests/test_shadow.py", "tests/test_exemptions.py", "tests/test_log.py"],
    "_log.py": ["tests/test_log.py"],
    "_types.py": ["tests/test_memory.py", "tests/test_shadow.py"],
    "plans.py": ["tests/test_plans.py", "tests/test_web.py", "tests/test_refund.py", "tests/test_exemptions_web.py",
                 "tests/test_shadow_web.py"],
    "asgi.py": ["tests/test_web.py", "tests/test_web_edges.py", "tests/test_refund.py",
                "tests/test_exemptions_web.py", "tests/test_shadow_web.py"],
    "flask.py": ["tests/test_web.py", "tests/test_web_edges.py", "tests/test_refund.py",
                 "tests/test_exemptions_web.py", "tests/test_shadow_web.py"],
    "_metrics.py": ["tests/test_metrics.py"],
    "prometheus.py": ["tests/test_metrics.py"],
    "opentelemetry.py": ["tests/test_metrics.py"],
    "_cli.py": ["tests/test_cli.py"],
}


KILLED = ("ok_killed", "ok_suspicious", "bad_timeout")


class Mutant(NamedTuple):
    module: str  # file name, e.g. "plans.py"
    line_number: int  # 0-based, as mutmut counts
    index: int  # the n-th mutation on that line
    line: str  # the original line
    mutated: str  # the line after the mutation
    diff: str


def _diff(path: str, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(True), after.splitlines(True), "a/" + path, "b/" + path, n=1
        )
    )


class Rid(NamedTuple):
    module: str
    path: str
    rid: RelativeMutationID


def list_all() -> List[Rid]:
    out: List[Rid] = []
    for name in sorted(os.listdir(SRC)):
        if not name.endswith(".py"):
            continue
        path = os.path.join(SRC, name)
        with open(path) as f:
            source = f.read()
        for rid in list_mutations(Context(source=source, filename=path)):
            out.append(Rid(name, path, rid))
    return out


def materialize(r: Rid, sources: Dict[str, str]) -> Mutant:
    """The mutated line and the diff of one mutant (one parse of its file)."""
    if r.path not in sources:
        with open(r.path) as f:
            sources[r.path] = f.read()
    source = sources[r.path]
    mutated_source, _ = mutate(Context(source=source, filename=r.path, mutation_id=r.rid))
    lines, mlines = source.split("\n"), mutated_source.split("\n")
    n = r.rid.line_number
    diff = _diff(r.path, source, mutated_source)
    if len(mlines) == len(lines):
        mutated = mlines[n]
    else:  # lines removed (a decorator) or joined: the first added line, if any
        added = [d[1:] for d in diff.splitlines() if d.startswith("+") and not d.startswith("+++")]
        mutated = added[0] if added else "<removed>"
    return Mutant(r.module, n, r.rid.index, lines[n], mutated, diff)


def key_of(m: "Mutant | Rid") -> str:
    if isinstance(m, Rid):
        return "%s:%d:%d" % (m.module, m.rid.line_number, m.rid.index)
    return "%s:%d:%d" % (m.module, m.line_number, m.index)


def read_equivalents(path: str) -> List[Tuple[str, str, str, str]]:
    """Entries `module || original line || mutated line || reason` (lines
    stripped of surrounding blanks; # starts a comment line)."""
    entries = []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in raw.rstrip("\n").split(" || ")]
            if len(parts) != 4 or not all(parts):
                sys.exit("%s:%d: expected `module || line || mutated line || reason`" % (path, n))
            entries.append((parts[0], parts[1], parts[2], parts[3]))
    return entries


HOOK = '''\
# Written by scripts/mutate/python_mutate.py for one run; not a source file.
import json
import os
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_PLAN = json.load(open(os.path.join(_HERE, "mutate-plan.json")))


def pre_mutation(context):
    rid = context.mutation_id
    key = "%s:%d:%d" % (os.path.basename(context.filename), rid.line_number, rid.index)
    command = _PLAN.get(key)
    if command is None:
        context.skip = True
        return
    context.config.test_command = command
    with open(os.path.join(_HERE, "mutate-times.log"), "a") as f:
        f.write("%f\\n" % time.time())
'''


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--runner", required=True)
    ap.add_argument("--equivalents", required=True)
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--timeout", type=int, default=90)
    ap.add_argument("--min", type=float, default=None)
    ap.add_argument("--module", action="append", default=[], help="only mutants of these modules (e.g. plans.py)")
    ap.add_argument("--list", action="store_true", help="list the picked mutants and stop")
    ap.add_argument("--drop-test", action="append", default=[],
                    help="remove tests/NAME from the copy first (to measure without some tests)")
    ap.add_argument("--from-cache", default=None, help="report on this .mutmut-cache of an earlier run; run nothing")
    ap.add_argument("--results", default=None, help="write each picked mutant's status here (JSON)")
    ap.add_argument("--resume", default=None,
                    help="a --results file of an earlier run: its killed mutants (same line, same mutation) "
                         "count as killed without a rerun; tests only added since, so they stay killed")
    args = ap.parse_args()
    # Paths given on python.sh's command line are relative to the checkout.
    root = os.environ.get("MUTATE_ROOT", ".")
    for name in ("from_cache", "results", "resume"):
        value = getattr(args, name)
        if value:
            setattr(args, name, os.path.join(root, value))

    for name in args.drop_test:
        os.remove(os.path.join("tests", os.path.basename(name)))
        print("without tests/%s" % os.path.basename(name))
    everything = list_all()
    # Every module with mutants needs its tests named above: say which one
    # lacks them before anything runs (not a KeyError after the sample).
    unmapped = sorted({r.module for r in everything} - set(TESTS_OF))
    if unmapped:
        print("python_mutate: no tests named for %s: add them to TESTS_OF in %s"
              % (", ".join(unmapped), __file__), file=sys.stderr)
        return 2
    if args.module:
        everything = [r for r in everything if r.module in args.module]
    order = lambda r: (r.module, r.rid.line_number, r.rid.index)  # noqa: E731
    everything.sort(key=order)
    if args.all or args.sample >= len(everything):
        chosen = list(everything)
        what = "all %d mutants" % len(chosen)
    else:
        chosen = sorted(random.Random(args.seed).sample(everything, args.sample), key=order)
        what = "a sample of %d of %d mutants (seed %d)" % (len(chosen), len(everything), args.seed)
    print("mutmut over %s/*.py: %s" % (SRC, what), flush=True)
    sources: Dict[str, str] = {}
    picked = [materialize(r, sources) for r in chosen]

    entries = read_equivalents(args.equivalents)
    used = set()
    equivalent: Dict[str, str] = {}
    for m in picked:
        for i, (mod, line, mline, reason) in enumerate(entries):
            if m.module == mod and m.line.strip() == line and m.mutated.strip() == mline:
                used.add(i)
                equivalent[key_of(m)] = reason
    if len(picked) == len(everything) and not args.module:
        for i, e in enumerate(entries):
            if i not in used:
                print("warning: %s matches no mutant (stale entry): %s || %s" % (args.equivalents, e[0], e[1]))

    carried: Dict[str, str] = {}
    if args.resume:
        with open(args.resume) as f:
            before = json.load(f)
        for m in picked:
            old = before.get(key_of(m))
            if old and old["line"] == m.line and old["mutated"] == m.mutated and old["status"] in KILLED:
                carried[key_of(m)] = old["status"]
        print("resumed from %s: %d killed mutants carried over, not rerun" % (args.resume, len(carried)))

    plan: Dict[str, str] = {}
    for m in picked:
        if key_of(m) in equivalent or key_of(m) in carried:
            continue
        tests = [t for t in TESTS_OF[m.module] if os.path.exists(t)]
        plan[key_of(m)] = " ".join(
            shlex.quote(x) for x in ["sh", args.runner, args.python, str(args.timeout)] + tests
        )
    if args.list:
        for m in picked:
            print("%s line %d #%d%s: %s" % (m.module, m.line_number + 1, m.index,
                                          " (equivalent)" if key_of(m) in equivalent else "", m.mutated.strip()))
        return 0

    if args.from_cache:
        elapsed = mutant_phase = 0.0
        db = sqlite3.connect(args.from_cache)
    elif not plan:
        elapsed = mutant_phase = 0.0
        db = None  # nothing left to run
    else:
        db, elapsed, mutant_phase = run_mutmut(args, picked, plan)
        if db is None:
            return 2
    return report(args, picked, equivalent, carried, db, elapsed, mutant_phase, len(plan))


def run_mutmut(args: argparse.Namespace, picked: List[Mutant], plan: Dict[str, str]) -> Tuple[Any, float, float]:
    with open("mutate-plan.json", "w") as f:
        json.dump(plan, f)
    with open("mutmut_config.py", "w") as f:
        f.write(HOOK)
    for stale in (".mutmut-cache", "mutate-times.log"):
        if os.path.exists(stale):
            os.remove(stale)

    # The baseline (unmutated) run: every test file used, once. mutmut's own
    # timeout is 10x its duration; the runner's own timeout is --timeout.
    all_tests = sorted({t for m in picked for t in TESTS_OF[m.module] if os.path.exists(t)})
    baseline = " ".join(shlex.quote(x) for x in ["sh", args.runner, args.python, "600"] + all_tests)
    started = time.monotonic()
    rc = subprocess.call(
        [args.python, "-m", "mutmut", "run", "--paths-to-mutate", SRC, "--tests-dir", "tests",
         "--runner", baseline, "--simple-output", "--no-progress"],
        stdout=subprocess.DEVNULL if os.environ.get("MUTATE_QUIET") else None,
    )
    elapsed = time.monotonic() - started
    finished = time.time()
    try:
        with open("mutate-times.log") as f:
            first = float(f.readline())
        mutant_phase = finished - first
    except (OSError, ValueError):
        mutant_phase = elapsed
    if rc & 1 and not os.path.exists(".mutmut-cache"):  # mutmut's fatal-error bit
        print("mutmut failed (exit %d)" % rc)
        return None, elapsed, mutant_phase
    return sqlite3.connect(".mutmut-cache"), elapsed, mutant_phase


def report(args: argparse.Namespace, picked: List[Mutant], equivalent: Dict[str, str], carried: Dict[str, str],
           db: Any, elapsed: float, mutant_phase: float, ran_now: int) -> int:
    status: Dict[str, str] = {}
    for filename, line_number, index, st in [] if db is None else db.execute(
        "SELECT sf.filename, l.line_number, m.\"index\", m.status FROM Mutant m "
        "JOIN Line l ON m.line = l.id JOIN SourceFile sf ON l.sourcefile = sf.id"
    ):
        status["%s:%d:%d" % (os.path.basename(filename), line_number, index)] = st
    status.update(carried)

    counts: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    survivors: List[Mutant] = []
    untested: List[Mutant] = []
    for m in picked:
        k = key_of(m)
        c = counts[m.module]
        c["total"] += 1
        if k in equivalent:
            c["equivalent"] += 1
            continue
        st = status.get(k, "untested")
        if st in KILLED:
            c["killed"] += 1
            if st == "bad_timeout":
                c["timeout"] += 1
        elif st == "bad_survived":
            c["survived"] += 1
            survivors.append(m)
        else:
            c["untested"] += 1
            untested.append(m)

    if args.results:
        with open(args.results, "w") as f:
            json.dump({key_of(m): {"module": m.module, "line": m.line, "mutated": m.mutated,
                                   "status": "equivalent" if key_of(m) in equivalent else status.get(key_of(m), "untested")}
                       for m in picked}, f, indent=0)
    for m in survivors:
        print("\nSURVIVED %s line %d (#%d)\n%s" % (m.module, m.line_number + 1, m.index, m.diff.rstrip("\n")))
    for m in untested:
        print("\nNOT RUN %s line %d (#%d): %s" % (m.module, m.line_number + 1, m.index, m.mutated.strip()))

    print("\nper module (killed includes timeouts):")
    tot: Dict[str, int] = defaultdict(int)
    for mod in sorted(counts):
        c = counts[mod]
        for f in ("killed", "survived", "equivalent", "total", "timeout", "untested"):
            tot[f] += c[f]
        print("  %-12s killed=%d survived=%d equivalent=%d total=%d timeout=%d" % (
            mod, c["killed"], c["survived"], c["equivalent"], c["total"], c["timeout"]))
    ran = tot["total"] - tot["equivalent"]
    if args.from_cache:
        print("(reported from %s)" % args.from_cache)
    else:
        print("time: %.0f s in all; %.0f s for the %d mutants run: %.1f s per mutant" % (
            elapsed, mutant_phase, ran_now, mutant_phase / ran_now if ran_now else 0.0))
    # Not-run mutants (none expected) count as survivors in the score.
    score = 100.0 * tot["killed"] / ran if ran else 100.0
    below = args.min is not None and score < args.min
    if below:
        print("score %.1f%% is below --min %s%%" % (score, args.min), flush=True)
    print("MUTATION python killed=%d survived=%d equivalent=%d total=%d score=%.1f%%" % (
        tot["killed"], tot["survived"] + tot["untested"], tot["equivalent"], tot["total"], score))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
