"""The Python code blocks of README.md and docs/*.md marked runnable
(```python run) run in this venv and exit 0 (tests/run_doc_snippets.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

RUNNER = REPO_ROOT / "tests" / "run_doc_snippets.py"


@pytest.mark.timeout(180)
@pytest.mark.skipif(not RUNNER.is_file(), reason="needs a checkout (README.md, docs/)")
def test_runnable_python_blocks_of_the_docs_run():
    docs = [REPO_ROOT / "README.md"] + sorted((REPO_ROOT / "docs").glob("*.md"))
    r = subprocess.run(
        [sys.executable, str(RUNNER), "python", "--python", sys.executable] + [str(d) for d in docs],
        capture_output=True,
        text=True,
        timeout=170,
    )
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout
