#!/usr/bin/env python3
"""Checks docs/metrics.md, its dashboard and its alert rules against the
series the core emits.

  check_metrics_doc.py REPO_ROOT

Fails (exit 1), naming each problem, unless:
  - the table between <!-- series --> and <!-- /series --> lists exactly the
    series names core/src/limiter_metrics.cpp can emit, and the labels it
    gives each are label names that file uses;
  - docs/metrics/grafana-dashboard.json is valid JSON whose every PromQL
    expression names only documented series (a histogram's _bucket, _sum
    and _count included) and documented labels (plus job, instance, le);
  - docs/metrics/alerts.yml has, for every rule, an alert name, an expr on
    documented series and labels, a `for`, a severity and a summary, and
    the doc's alert table names exactly those alerts.
Then it checks itself: a copy of the doc without one series row, and a
dashboard naming an unknown series, must each be reported.
"""

import json
import re
import sys
from pathlib import Path

SERIES_ROW = re.compile(r"^\| `(tollgate_\w+)` \| (counter|gauge|histogram) \| ([^|]*)\|", re.M)
NAME = re.compile(r"\btollgate_[a-z_]+\b")
# Label names inside {...} selectors and by/without (...) clauses.
SELECTOR = re.compile(r"\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
ALWAYS_LABELS = {"job", "instance", "le"}


def documented(doc):
    m = re.search(r"<!-- series -->\n(.*?)<!-- /series -->", doc, re.S)
    if not m:
        return None
    out = {}
    for name, kind, labels in SERIES_ROW.findall(m.group(1)):
        out[name] = (kind, set(re.findall(r"`(\w+)`", labels)))
    return out


def emitted(source):
    names = set(re.findall(r'"(tollgate_[a-z_]+)"', source))
    labels = set(re.findall(r'\{"([a-z_]+)",', source))
    return names, labels


def expr_problems(where, expr, series, labels):
    problems = []
    for name in NAME.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in series and not (base in series and series[base][0] == "histogram"):
            problems.append("%s: unknown series %s" % (where, name))
    used = set()
    for sel in SELECTOR.findall(expr):
        if "$" in sel and "=" not in sel:
            continue  # a template ({{ $labels.x }}) rather than a selector
        used |= set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", sel))
    for grp in GROUPING.findall(expr):
        used |= {x.strip() for x in grp.split(",") if x.strip()}
    for label in sorted(used - labels - ALWAYS_LABELS):
        problems.append("%s: unknown label %s" % (where, label))
    return problems


def check(root, doc=None, dashboard=None):
    problems = []
    doc = doc if doc is not None else (root / "docs" / "metrics.md").read_text()
    series = documented(doc)
    if series is None:
        return ["docs/metrics.md: no <!-- series --> table"]
    names, source_labels = emitted((root / "core" / "src" / "limiter_metrics.cpp").read_text())
    for n in sorted(names - set(series)):
        problems.append("docs/metrics.md: %s is emitted but not documented" % n)
    for n in sorted(set(series) - names):
        problems.append("docs/metrics.md: %s is documented but never emitted" % n)
    doc_labels = set()
    for n, (_, labels) in series.items():
        doc_labels |= labels
        for label in sorted(labels - source_labels):
            problems.append("docs/metrics.md: %s has label %s, which the core never sets" % (n, label))
    for label in sorted(source_labels - doc_labels):
        problems.append("docs/metrics.md: the core sets label %s, which no row lists" % label)

    text = dashboard if dashboard is not None else \
        (root / "docs" / "metrics" / "grafana-dashboard.json").read_text()
    try:
        dash = json.loads(text)
    except ValueError as e:
        return problems + ["grafana-dashboard.json: not JSON: %s" % e]
    exprs = 0
    for panel in dash.get("panels", []):
        for target in panel.get("targets", []):
            exprs += 1
            problems += expr_problems("dashboard panel %r" % panel.get("title"),
                                      target.get("expr", ""), series, doc_labels)
    if exprs == 0:
        problems.append("grafana-dashboard.json: no panel queries anything")

    alerts_text = (root / "docs" / "metrics" / "alerts.yml").read_text()
    rules = re.split(r"\n\s*- alert: ", "\n" + alerts_text)[1:]
    alert_names = []
    for rule in rules:
        name = rule.split("\n", 1)[0].strip()
        alert_names.append(name)
        m = re.search(r"\n\s*expr: (\|\n(?:\s{10,}.*\n)+|.*)", rule)
        if not m:
            problems.append("alerts.yml: %s has no expr" % name)
            continue
        problems += expr_problems("alert %s" % name, m.group(1), series, doc_labels)
        for field in (r"\n\s*for: \d+[smh]", r"\n\s*severity: (critical|warning)", r"\n\s*summary: "):
            if not re.search(field, rule):
                problems.append("alerts.yml: %s lacks %s" % (name, field.strip("\\ns*")))
    if not alert_names:
        problems.append("alerts.yml: no rules")
    in_doc = re.findall(r"^\| `(Tollgate\w+)` \|", doc, re.M)
    if sorted(in_doc) != sorted(alert_names):
        problems.append("docs/metrics.md: the alert table lists %s, alerts.yml has %s"
                        % (sorted(in_doc), sorted(alert_names)))
    return problems


def main():
    root = Path(sys.argv[1]).resolve()
    problems = check(root)
    for p in problems:
        print("check_metrics_doc: FAIL: " + p)
    # Self-checks: a dropped row and an unknown series must be reported.
    doc = (root / "docs" / "metrics.md").read_text()
    dropped = re.sub(r"^\| `tollgate_store_up` .*\n", "", doc, flags=re.M)
    if not any("tollgate_store_up is emitted" in p for p in check(root, doc=dropped)):
        problems.append("self-check: a dropped series row was not reported")
        print("check_metrics_doc: FAIL: self-check (dropped row)")
    bad = json.dumps({"panels": [{"title": "x", "targets": [{"expr": "rate(tollgate_nope_total[5m])"}]}]})
    if not any("tollgate_nope_total" in p for p in check(root, dashboard=bad)):
        problems.append("self-check: an unknown series was not reported")
        print("check_metrics_doc: FAIL: self-check (unknown series)")
    if problems:
        return 1
    print("check_metrics_doc: OK: %d series, dashboard and alerts use only them"
          % len(documented(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
