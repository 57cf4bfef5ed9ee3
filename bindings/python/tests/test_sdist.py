"""An sdist built from this tree installs in a clean virtualenv and works.

Slow (it compiles the C++ library) and it needs PyPI for the build
requirements, so it runs only when asked:

    TOLLGATE_TEST_SDIST=1 python -m pytest bindings/python/tests/test_sdist.py

It needs the `build` package in the running interpreter (pip install build).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import PACKAGE_ROOT

pytestmark = pytest.mark.skipif(
    os.environ.get("TOLLGATE_TEST_SDIST") != "1", reason="set TOLLGATE_TEST_SDIST=1 to build and install the sdist"
)

SMOKE = textwrap.dedent(
    """
    import math, tollgate
    with tollgate.Limiter() as lim:
        p = tollgate.Policy(2, "1h")
        got = [lim.check("smoke", p).allowed for _ in range(3)]
        assert got == [True, True, False], got
        assert lim.check("smoke", p, cost=5).retry_after == math.inf
    try:
        tollgate.Policy(0, "1s")
    except tollgate.InvalidArgument as e:
        assert e.code == "RL_E_POLICY"
    else:
        raise SystemExit("no error for limit 0")
    print("sdist smoke ok", tollgate.LIBRARY_VERSION)
    """
)


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


# Builds the C++ library from the sdist in a fresh virtualenv: about a
# minute on a quiet 2-core machine; a hang fails after four.
@pytest.mark.timeout(240)
def test_sdist_installs_in_a_clean_virtualenv(tmp_path: Path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(PACKAGE_ROOT)])
    (sdist,) = dist.glob("tollgate-*.tar.gz")
    # What the sdist's own tests need from the repository (conftest.py looks
    # in _tollgate_src/): the shared vectors and the Cluster and Sentinel
    # harness.
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    # The command-line tool's sources, which the package builds and carries.
    for need in ("_tollgate_src/tests/vectors/gcra.json", "_tollgate_src/tests/servers/topology.py",
                 "_tollgate_src/cli/CMakeLists.txt", "_tollgate_src/cli/tollgate_cli.cpp"):
        assert need in names, need
    assert not any("__pycache__" in n for n in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    try:
        run([str(py), "-m", "pip", "install", str(sdist)], timeout=220)
    except subprocess.CalledProcessError as e:
        pytest.fail("pip install of the sdist failed:\n" + e.stdout[-5000:])
    # Run from an empty directory so nothing from this checkout is imported.
    out = run([str(py), "-c", SMOKE], cwd=str(tmp_path)).stdout
    assert "sdist smoke ok" in out
    # The `tollgate` console script runs the tool built from the sdist.
    out = run([str(venv / "bin" / "tollgate"), "--version"], cwd=str(tmp_path)).stdout
    assert re.fullmatch(r"tollgate \d+\.\d+\.\d+\n", out), out
