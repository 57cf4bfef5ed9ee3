#!/usr/bin/env python3
"""Checks that every test defined was run, in each of tollgate's suites.

A runner that silently runs nothing passes: a Catch2 filter that matches no
test case, a pytest file that is never collected or skips everything, a
`node --test` file that defines no test. Each mode below compares what ran
with what is defined and fails (exit 1) on any difference.

  check_tests_ran.py names BINARY
      The Catch2 test names of BINARY survive CTest discovery: no `;` (CMake
      splits the name there), no `[` or `]` (CMake list brackets), no `*`,
      `"` or `\\`, no leading `~` and no leading or trailing blank (Catch2
      would read a pattern), no duplicate.

  check_tests_ran.py catch BINARY CTEST_LOG
      Every Catch2 test case of BINARY ran exactly once in the ctest run
      whose log is CTEST_LOG (Testing/Temporary/LastTest.log): a listener
      in tests/test_main.cpp prints "tollgate-test-ran: <name>" as each
      test case ends.

  check_tests_ran.py pytest JUNIT_XML TESTS_DIR [--allow-skip SUBSTRING ...]
      Every test_*.py in TESTS_DIR ran at least one test, and no test was
      skipped unless its reason contains an allowed substring.

  check_tests_ran.py node EVENTS_JSONL TESTS_DIR [--allow-skip SUBSTRING ...]
      The same for `node --test`, from the events written by
      tests/node_tests_ran.mjs (a node:test reporter).
"""

import argparse
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

# `;` splits a CMake list; an unbalanced `[` or `]` makes CMake keep the
# `;`s up to the matching bracket, so discovery glues names together (seen
# here: one ctest entry named after 22 test cases, which then ran none).
UNSAFE = re.compile(r'[;*"\\\[\]]')


def catch_names(binary, *spec):
    out = subprocess.run([binary, *spec, "--list-test-names-only"], check=False,
                         capture_output=True, text=True, timeout=60).stdout
    return [line for line in out.split("\n") if line != ""]


def check_names(binary):
    names = catch_names(binary)
    problems = []
    for n in names:
        if UNSAFE.search(n) or n.startswith("~") or n != n.strip():
            problems.append("unsafe test name (discovery would split or "
                            "misread it): %r" % n)
    for n, k in Counter(names).items():
        if k > 1:
            problems.append("test name defined %d times: %r" % (k, n))
    if not names:
        problems.append("%s lists no test cases" % binary)
    return problems, "%d Catch2 test names checked" % len(names)


RAN = re.compile(r"^tollgate-test-ran: (.*)$")


def check_catch(binary, log):
    defined = Counter(catch_names(binary))
    # Hidden test cases ([.tag]) are not registered with ctest; a test may
    # run one in a child process, so seeing one is no error.
    hidden = set(catch_names(binary, "[.]")) - set(defined)
    ran = Counter()
    for line in Path(log).read_text(errors="replace").split("\n"):
        m = RAN.match(line)
        if m:
            ran[m.group(1)] += 1
    problems = []
    for n in sorted(defined):
        if ran[n] == 0:
            problems.append("defined but never run: %r" % n)
        elif ran[n] > 1:
            problems.append("run %d times: %r" % (ran[n], n))
    for n in sorted(ran):
        if n not in defined and n not in hidden:
            problems.append("ran but not defined (a stale build?): %r" % n)
    return problems, ("%d Catch2 test cases defined, %d runs counted"
                      % (sum(defined.values()), sum(ran.values())))


def check_per_file(files, results, allow_skip, what):
    """results: (file, name, status, reason) with status in passed, failed,
    skipped."""
    per_file = {f: Counter() for f in files}
    problems = []
    for f, name, status, reason in results:
        per_file.setdefault(f, Counter())[status] += 1
        if status == "skipped" and not any(a in reason for a in allow_skip):
            problems.append("%s: %s skipped (%s)" % (f, name, reason or "no reason"))
    for f in sorted(per_file):
        c = per_file[f]
        if c["passed"] + c["failed"] == 0:
            problems.append("%s: no test ran (%d skipped)" % (f, c["skipped"]))
    total = Counter()
    for c in per_file.values():
        total.update(c)
    return problems, ("%s: %d files, %d passed, %d failed, %d skipped"
                      % (what, len(per_file), total["passed"], total["failed"],
                         total["skipped"]))


def check_pytest(junit, tests_dir, allow_skip):
    files = sorted(p.name for p in Path(tests_dir).glob("test_*.py"))
    results = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        # classname is the dotted module path ("tests.test_memory.TestX" or
        # "test_memory"); the file is its first test_* component.
        parts = (tc.get("classname") or "").split(".")
        mod = next((p for p in parts if p.startswith("test_")), parts[0])
        status, reason = "passed", ""
        for child in tc:
            if child.tag == "skipped":
                status, reason = "skipped", child.get("message", "")
            elif child.tag in ("failure", "error"):
                status = "failed"
        results.append((mod + ".py", tc.get("name"), status, reason))
    return check_per_file(files, results, allow_skip, "pytest")


def check_node(events, tests_dir, allow_skip):
    base = Path(tests_dir).resolve()
    files = sorted(p.name for p in base.glob("*.test.js"))
    results = []
    for line in Path(events).read_text().split("\n"):
        if not line.strip():
            continue
        ev = json.loads(line)
        f = Path(ev.get("file") or "?").name
        if ev["type"] == "test:fail":
            status, reason = "failed", ""
        elif ev.get("skip") is not None or ev.get("todo") is not None:
            status = "skipped"
            reason = str(ev.get("skip") if ev.get("skip") is not None else ev.get("todo"))
        else:
            status, reason = "passed", ""
        results.append((f, ev.get("name"), status, reason))
    return check_per_file(files, results, allow_skip, "node --test")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("names")
    p.add_argument("binary")
    p = sub.add_parser("catch")
    p.add_argument("binary")
    p.add_argument("log")
    for mode in ("pytest", "node"):
        p = sub.add_parser(mode)
        p.add_argument("results")
        p.add_argument("tests_dir")
        p.add_argument("--allow-skip", action="append", default=[])
    a = ap.parse_args()
    if a.mode == "names":
        problems, summary = check_names(a.binary)
    elif a.mode == "catch":
        problems, summary = check_catch(a.binary, a.log)
    elif a.mode == "pytest":
        problems, summary = check_pytest(a.results, a.tests_dir, a.allow_skip)
    else:
        problems, summary = check_node(a.results, a.tests_dir, a.allow_skip)
    for line in problems:
        print("FAIL " + line)
    print(summary)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
