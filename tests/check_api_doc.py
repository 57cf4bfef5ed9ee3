#!/usr/bin/env python3
"""Checks that docs/api-c.md documents the whole C ABI.

  check_api_doc.py LIBTOLLGATE_SO TOLLGATE_H API_C_MD

Fails (exit 1), naming each problem, unless:

  - every rl_* symbol the shared library exports (nm -D --defined-only) is
    declared in tollgate.h, and every function tollgate.h declares is
    exported;
  - every exported function has a `### `rl_name`` entry whose ```c block
    holds the header's prototype (whitespace aside) and whose text has the
    items Parameters, Lifetime and ownership, Thread safety, Blocking and
    Errors;
  - every public type of tollgate.h (typedef struct, function pointer) has a
    `### `rl_type`` entry;
  - every RL_OK / RL_E_* code has a row `| `RL_E_X` | <value> |` in the
    error table, with the header's value;
  - every group of value macros (RL_ALG_*, RL_SOURCE_*, ...) has a heading
    naming `RL_<GROUP>_*`, and every macro the header defines appears in
    the page in backticks;
  - the page names nothing that does not exist: no entry for an rl_ name
    that is neither exported nor a type, no RL_ macro or code the header
    does not define.

Then it checks itself: it removes one function's entry, one error code's
row and one type's entry from a copy of the page and fails unless each
removal is reported.
"""

import re
import subprocess
import sys
from pathlib import Path

FUNCTION_ITEMS = ("Parameters", "Lifetime and ownership", "Thread safety",
                  "Blocking", "Errors")


def exported_symbols(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # "<value> <type> <name>[@[@]VERSION]"; type A is a version node.
        if len(parts) >= 3 and parts[1] != "A":
            names.add(parts[2].split("@")[0])
    return names


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def squash(text):
    return re.sub(r"\s+", "", text)


def parse_header(path):
    raw = Path(path).read_text()
    code = strip_comments(raw)
    functions = {}
    for m in re.finditer(r"\bRL_API\s+([^;{}#]*?\b(rl_\w+)\s*\([^;]*\))\s*;",
                         code):
        functions[m.group(2)] = squash(m.group(1)) + ";"
    types = set(re.findall(r"\btypedef\s+struct\s+\w+\s*(?:\{[^}]*\}\s*)?"
                           r"(rl_\w+)\s*;", code, flags=re.S))
    types |= set(re.findall(r"\btypedef\s+[^;]*?\(\s*\*\s*(rl_\w+)\s*\)",
                            code))
    macros = {}
    for m in re.finditer(r"^\s*#\s*define\s+(RL_\w+)(?:[ \t]+([^\n]*))?$",
                         code, flags=re.M):
        macros[m.group(1)] = (m.group(2) or "").strip()
    codes = {}
    for name, value in macros.items():
        if name == "RL_OK" or name.startswith("RL_E_"):
            codes[name] = int(value.strip("()"))
    return functions, types, macros, codes


def macro_groups(macros):
    """RL_<G>_* groups of value macros (two or more members that are not a
    struct's *_VERSION / *_INIT, and not the error codes)."""
    groups = {}
    for name in macros:
        m = re.match(r"RL_([A-Z]+)_\w+$", name)
        if not m or name.startswith("RL_E_"):
            continue
        if name.endswith("_INIT") or (name.endswith("_VERSION") and
                                      not name.startswith("RL_VERSION_")):
            continue
        groups.setdefault(m.group(1), []).append(name)
    return {g: sorted(v) for g, v in groups.items() if len(v) >= 2}


def sections(doc):
    """(level, heading, body) for every markdown heading, fences aside."""
    out = []
    in_fence = False
    current = None
    for line in doc.split("\n"):
        if line.startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            current = [len(m.group(1)), m.group(2), []]
            out.append(current)
        elif current is not None:
            current[2].append(line)
    return [(lvl, head, "\n".join(body)) for lvl, head, body in out]


def check(lib_names, header, doc):
    functions, types, macros, codes = header
    problems = []

    exported = {n for n in lib_names if n.startswith("rl_")}
    for n in sorted(lib_names - exported):
        problems.append("the library exports %s, outside the rl_ namespace" % n)
    for n in sorted(exported - set(functions)):
        problems.append("%s is exported but tollgate.h does not declare it" % n)
    for n in sorted(set(functions) - exported):
        problems.append("tollgate.h declares %s but the library does not "
                        "export it" % n)

    secs = sections(doc)
    entries = {}
    for lvl, head, body in secs:
        m = re.fullmatch(r"`(rl_\w+)`", head.strip())
        if m and lvl == 3:
            entries[m.group(1)] = body

    for name in sorted(exported):
        body = entries.get(name)
        if body is None:
            problems.append("exported function %s has no `### `%s`` entry in "
                            "docs/api-c.md" % (name, name))
            continue
        blocks = re.findall(r"```c\n(.*?)```", body, flags=re.S)
        want = functions.get(name)
        if want and not any(squash(strip_comments(b)) == want for b in blocks):
            problems.append("%s: the entry's ```c prototype differs from "
                            "tollgate.h's: %s" % (name, want))
        for item in FUNCTION_ITEMS:
            if "**%s" % item not in body:
                problems.append("%s: the entry has no **%s:** item"
                                % (name, item))

    for name in sorted(types):
        if name not in entries:
            problems.append("type %s has no `### `%s`` entry in docs/api-c.md"
                            % (name, name))

    for name in sorted(set(entries) - exported - types):
        problems.append("docs/api-c.md has an entry for %s, which is neither "
                        "exported nor a type of tollgate.h" % name)

    rows = {}
    for m in re.finditer(r"^\|\s*`(RL_(?:OK|E_\w+))`\s*\|\s*(-?\d+)\s*\|",
                         doc, flags=re.M):
        rows[m.group(1)] = int(m.group(2))
    for name, value in sorted(codes.items(), key=lambda kv: -kv[1]):
        if name not in rows:
            problems.append("error code %s has no row in the error table of "
                            "docs/api-c.md" % name)
        elif rows[name] != value:
            problems.append("error code %s: the table says %d, tollgate.h %d"
                            % (name, rows[name], value))

    headings = "\n".join(head for _, head, _ in secs)
    for group, members in sorted(macro_groups(macros).items()):
        if "`RL_%s_*`" % group not in headings:
            problems.append("macro group RL_%s_* (%s) has no heading naming "
                            "`RL_%s_*`" % (group, ", ".join(members), group))
    mentioned = set(re.findall(r"`[^`\n]*`", doc))
    mentioned_names = set()
    for span in mentioned:
        mentioned_names |= set(re.findall(r"\bRL_\w+\b", span))
    for name in sorted(macros):
        if name not in mentioned_names:
            problems.append("macro %s is not mentioned in docs/api-c.md" % name)

    for name in sorted(mentioned_names):
        if name in macros or name.endswith("_"):
            continue  # RL_ALG_* and the like
        problems.append("docs/api-c.md names %s, which tollgate.h does not "
                        "define" % name)
    for name in sorted(set(re.findall(r"\bRL_E_\w+", doc)) - set(codes)):
        if not name.endswith("_") and name not in mentioned_names:
            problems.append("docs/api-c.md names the error code %s, which "
                            "tollgate.h does not define" % name)
    return problems


def remove_section(doc, heading):
    lines = doc.split("\n")
    out, skipping = [], False
    for line in lines:
        if re.match(r"^#{1,6}\s", line):
            skipping = line.strip() == heading
        if not skipping:
            out.append(line)
    return "\n".join(out)


def self_test(lib_names, header, doc):
    functions, types, _, codes = header
    fn = sorted(functions)[0]
    ty = sorted(types)[0]
    code = sorted(c for c in codes if c != "RL_OK")[0]
    cases = [
        ("the entry of %s" % fn, remove_section(doc, "### `%s`" % fn), fn),
        ("the entry of %s" % ty, remove_section(doc, "### `%s`" % ty), ty),
        ("the table row of %s" % code,
         re.sub(r"^\|\s*`%s`\s*\|.*\n" % code, "", doc, flags=re.M), code),
    ]
    failures = []
    for what, mutated, name in cases:
        found = [p for p in check(lib_names, header, mutated) if name in p]
        if found:
            print("check_api_doc: self-test: without %s: reported (%s)"
                  % (what, found[0]))
        else:
            failures.append("self-test: removing %s was not reported" % what)
    return failures


def main(argv):
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    lib, header_path, doc_path = argv[1:]
    lib_names = exported_symbols(lib)
    header = parse_header(header_path)
    doc = Path(doc_path).read_text()
    if not lib_names or not header[0]:
        print("check_api_doc: found no exported symbols or no declarations",
              file=sys.stderr)
        return 1
    problems = check(lib_names, header, doc)
    if not problems:
        problems = self_test(lib_names, header, doc)
    if problems:
        for p in problems:
            print("check_api_doc: FAIL: %s" % p, file=sys.stderr)
        return 1
    functions, types, macros, codes = header
    print("check_api_doc: OK: %d functions, %d types, %d error codes, "
          "%d macros documented in %s"
          % (len(functions), len(types), len(codes), len(macros), doc_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
