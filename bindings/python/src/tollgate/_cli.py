"""The ``tollgate`` console script (pyproject.toml, ``[project.scripts]``):
runs the command-line tool that the package carries (docs/cli.md), the same
executable the C++ build makes, built with this package and linked with its
own copy of the library.

    $ pip install tollgate
    $ tollgate ping --url redis://127.0.0.1:6379
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Where the executable is installed, relative to this package
#: (bindings/python/CMakeLists.txt installs it there).
_RELATIVE = ("_bin", "tollgate")


def executable() -> str:
    """The path of the ``tollgate`` executable inside the package."""
    return str(Path(__file__).resolve().parent.joinpath(*_RELATIVE))


def main() -> int:
    """Runs the tool with this process's arguments in place of this process
    (exec), so that its output, exit status (0 allowed or done, 1 denied,
    2 usage, 3 store) and signals are the tool's own. Returns only if the
    executable cannot be run: 127, with the reason on stderr."""
    exe = executable()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # The same argv: argv[0] is the name it was run by.
        os.execv(exe, [sys.argv[0] if sys.argv else exe, *sys.argv[1:]])
    except OSError as e:
        sys.stderr.write("tollgate: cannot run %s: %s\n" % (exe, e.strerror or e))
    return 127
