#!/usr/bin/env python3
"""Checks that docs/benchmarks.md and its plots are what the committed
benchmark JSON says.

  check_bench_plot.py REPO_ROOT

Fails (exit 1), naming each problem, unless:

  - bench/plot.py, run on bench/results/*.json into a temporary folder,
    writes exactly the SVGs committed in docs/benchmarks/ (same names,
    byte-identical) and exactly the committed docs/benchmarks.md (its
    generated tables);
  - every table row of the page with a figure in it lies in a block
    generated from the JSON (`<!-- generated:NAME -->`) or in a block
    carried over from the working log (`<!-- from bench/NOTES.md -->`);
  - every figure in a generated table (past the first column, which names
    the row) is a JSON value or a ratio of two JSON values of one file,
    in one of the page's number formats;
  - every figure in a carried-over table appears in bench/NOTES.md;
  - every relative link and image of the page resolves to a file.

Then it checks itself: it alters one byte of one SVG and one figure of one
generated table in copies and fails unless each change is reported.
"""

import importlib.util
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)(x?)")
GENERATED = re.compile(r"<!-- generated:([a-z-]+) -->\n(.*?)<!-- /generated:\1 -->", re.S)
FROM_NOTES = re.compile(r"<!-- from bench/NOTES\.md -->\n(.*?)<!-- /from bench/NOTES\.md -->", re.S)


def load_plot(root):
    spec = importlib.util.spec_from_file_location("bench_plot", root / "bench" / "plot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def regenerate(root, plot, work):
    """Runs plot.py on the committed JSON into `work`; returns the SVG folder and the page."""
    out, page_out = work / "svg", work / "benchmarks.md"
    plot.main(["--root", str(root), "--out", str(out), "--page-out", str(page_out)])
    return out, page_out


def compare(root, svg_dir, page, out, page_out):
    problems = []
    have = {p.name for p in svg_dir.glob("*.svg")}
    want = {p.name for p in out.glob("*.svg")}
    for name in sorted(want - have):
        problems.append("docs/benchmarks/%s: missing (bench/plot.py writes it)" % name)
    for name in sorted(have - want):
        problems.append("docs/benchmarks/%s: not written by bench/plot.py" % name)
    for name in sorted(want & have):
        if (svg_dir / name).read_bytes() != (out / name).read_bytes():
            problems.append("docs/benchmarks/%s: differs from what bench/plot.py makes of "
                            "bench/results/ (run python3 bench/plot.py)" % name)
    if page.read_bytes() != page_out.read_bytes():
        a = page.read_text(encoding="utf-8").splitlines()
        b = page_out.read_text(encoding="utf-8").splitlines()
        line = next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)) + 1)
        problems.append("docs/benchmarks.md: line %d differs from the table bench/plot.py makes of "
                        "bench/results/ (run python3 bench/plot.py)" % line)
    return problems


# ---------------------------------------------------------------------------
# "Every figure comes from the JSON", checked without plot.py's own code.


def leaves(x, nums, strs, key=""):
    """nums gets (field name, value) for every number, strs every string."""
    if isinstance(x, bool):
        return
    if isinstance(x, (int, float)):
        nums.append((key, float(x)))
    elif isinstance(x, str):
        strs.append(x)
    elif isinstance(x, dict):
        for k, v in x.items():
            leaves(v, nums, strs, k)
    elif isinstance(x, list):
        for v in x:
            leaves(v, nums, strs, key)


def renderings(v):
    out = set()
    for fmt in ("%.0f", "%.1f", "%.2f"):
        out.add(fmt % v)
    out.add("{:,.0f}".format(v))
    return out


def derivable(results):
    """What a page figure may be. A plain figure: a JSON value, or that
    value in millions, per 1e9 (ns per call from calls/s), or times 1e3
    (ns from us). A figure followed by "x": the ratio of two values of the
    same field (two rows' checks/s, two p50s, ...) in one file."""
    values, ratios, strings = set(), set(), []
    for path in sorted(results.glob("*.json")):
        nums, strs = [], []
        leaves(json.loads(path.read_text(encoding="utf-8")), nums, strs)
        strings += strs
        for _, v in nums:
            for w in (v, v / 1e6, v * 1e3) + ((1e9 / v,) if v else ()):
                values |= renderings(w)
        by_field = {}
        for k, v in nums:
            by_field.setdefault(k, set()).add(v)
        for vs in by_field.values():
            for a in vs:
                for b in vs:
                    if b:
                        ratios.add("%.2f" % (a / b))
    return values, ratios, strings


def table_rows(block):
    rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [r for r in rows if not re.fullmatch(r"\|(\s*-+\s*\|)+", r)]


def figures(row, strings):
    """(figure, is_ratio) for every figure past the row's first cell."""
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    text = " | ".join(cells[1:])
    for s in sorted(strings, key=len, reverse=True):  # versions, kernel, CPU model
        if len(s) > 2 and s in text:
            text = text.replace(s, " ")
    return [(m.group(1), m.group(2) == "x") for m in FIGURE.finditer(text)]


def check_page_figures(page_text, results, notes_text):
    problems = []
    values, ratios, strings = derivable(results)
    covered = []
    for m in GENERATED.finditer(page_text):
        covered.append(m.span())
        rows = table_rows(m.group(2))
        for r in rows[1:]:  # rows[0] is the header
            for f, is_ratio in figures(r, strings):
                if f not in (ratios if is_ratio else values):
                    problems.append("docs/benchmarks.md, table %s: %s is not derived from bench/results/ "
                                    "(row %s)" % (m.group(1), f, r[:60]))
    note_figures = set(NUMBER.findall(notes_text))
    for m in FROM_NOTES.finditer(page_text):
        covered.append(m.span())
        for r in table_rows(m.group(1))[1:]:
            for f, _ in figures(r, []):
                if f not in note_figures:
                    problems.append("docs/benchmarks.md: %s (row %s) is not in bench/NOTES.md" % (f, r[:60]))
    pos = 0
    for i, line in enumerate(page_text.splitlines(keepends=True), 1):
        start = pos
        pos += len(line)
        if not line.startswith("|") or not re.search(r"\d", line):
            continue
        if not any(a <= start < b for a, b in covered):
            problems.append("docs/benchmarks.md:%d: a table row with figures outside a generated "
                            "block: %s" % (i, line.strip()[:60]))
    return problems


def check_links(page):
    problems = []
    for m in re.finditer(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        target = m.group(1).split("#", 1)[0]
        if not target or re.match(r"[a-z]+:", target):
            continue
        if not (page.parent / target).exists():
            problems.append("docs/benchmarks.md: link %s does not resolve" % m.group(1))
    return problems


def check(root, svg_dir, page, plot, work):
    out, page_out = regenerate(root, plot, work)
    problems = compare(root, svg_dir, page, out, page_out) + check_links(page)
    problems += check_page_figures(page.read_text(encoding="utf-8"), root / "bench" / "results",
                                   (root / "bench" / "NOTES.md").read_text(encoding="utf-8"))
    return problems


def self_check(root, plot, tmp):
    """A changed SVG byte and a changed table figure must both be caught."""
    failures = []
    svg_dir = root / "docs" / "benchmarks"
    page = root / "docs" / "benchmarks.md"

    bad_svgs = tmp / "bad-svg"
    shutil.copytree(svg_dir, bad_svgs)
    victim = sorted(bad_svgs.glob("*.svg"))[0]
    data = victim.read_text(encoding="utf-8")
    m = re.search(r">(\d)", data)
    victim.write_text(data[:m.start(1)] + str((int(m.group(1)) + 1) % 10) + data[m.end(1):], encoding="utf-8")
    w = tmp / "w1"
    w.mkdir()
    if not any(victim.name in p for p in check(root, bad_svgs, page, plot, w)):
        failures.append("self-check: an altered %s was not reported" % victim.name)

    text = page.read_text(encoding="utf-8")
    m = next(GENERATED.finditer(text, text.find("<!-- generated:c-memory")))
    row = table_rows(m.group(2))[1]
    first = NUMBER.search(row, row.index("|", 1))
    bad_row = row[:first.start()] + "9" + row[first.start():]
    bad_page = tmp / "benchmarks.md"
    bad_page.write_text(text.replace(row, bad_row, 1), encoding="utf-8")
    w = tmp / "w2"
    w.mkdir()
    found = check(root, svg_dir, bad_page, plot, w)
    if not any("differs" in p and "benchmarks.md" in p for p in found):
        failures.append("self-check: an altered table figure was not reported as a difference")
    if not any("not derived" in p for p in found):
        failures.append("self-check: an altered table figure was not reported as not derived from the JSON")
    return failures


def main():
    root = Path(sys.argv[1]).resolve()
    plot = load_plot(root)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "w0").mkdir()
        problems = check(root, root / "docs" / "benchmarks", root / "docs" / "benchmarks.md", plot, tmp / "w0")
        if not problems:
            problems = self_check(root, plot, tmp)
    for p in problems:
        print("FAIL " + p)
    if problems:
        return 1
    print("ok: docs/benchmarks.md and docs/benchmarks/*.svg match bench/results/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
