#!/usr/bin/env python3
"""The top-level LICENSE and the packages' license fields name one license.

  check_license.py REPO_ROOT
"""
import json
import re
import sys
from pathlib import Path


def main() -> int:
    root = Path(sys.argv[1])
    first = (root / "LICENSE").read_text().splitlines()[0].strip()
    m = re.fullmatch(r"(\S+) License", first)
    if not m:
        print("LICENSE: first line %r does not name a license" % first)
        return 1
    spdx = m.group(1)
    problems = []
    pyproject = (root / "bindings/python/pyproject.toml").read_text()
    if not re.search(r'^license = \{ text = "%s" \}$' % re.escape(spdx), pyproject, re.M):
        problems.append("bindings/python/pyproject.toml: license is not %s" % spdx)
    if "License :: OSI Approved :: %s License" % spdx not in pyproject:
        problems.append("bindings/python/pyproject.toml: no %s classifier" % spdx)
    package = json.loads((root / "bindings/node/package.json").read_text())
    if package.get("license") != spdx:
        problems.append("bindings/node/package.json: license is %r, not %r" % (package.get("license"), spdx))
    for p in problems:
        print("FAIL " + p)
    print("license: %s%s" % (spdx, "" if not problems else " (mismatches above)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
