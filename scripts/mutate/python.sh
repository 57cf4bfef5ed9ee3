#!/usr/bin/env bash
# Mutation testing of the Python package's Python code (bindings/python/src/
# tollgate/*.py) with mutmut 2.5.1. docs/testing.md, "Mutation testing" has the scores.
#
#   scripts/mutate/python.sh [--sample N | --all] [--seed S] [--min PCT]
#                            [--timeout S] [--module plans.py]... [--list]
#
#   --sample N   a deterministic sample of N mutants (default 40, the CI
#                sample); --seed S picks it (default 12)
#   --all        every mutant
#   --min PCT    exit 1 when the score is below PCT
#   --timeout S  the limit for one mutant's test run (default 90)
#   --module M   only mutants of module M (repeatable; for triage)
#   --list       print the picked mutants and stop
#   --resume F   carry over the killed mutants of an earlier run's results
#                file F (build/mutate-python/results.json is the last run's;
#                copy it first) instead of rerunning them
#   --from-cache F  report on an earlier run's .mutmut-cache; run nothing
#   --drop-test NAME  run without tests/NAME (repeatable; the "before" score)
#
# The last line printed is
#   MUTATION python killed=<k> survived=<s> equivalent=<e> total=<t> score=<pct>%
# with score = killed / (total - equivalent). Mutants listed in
# scripts/mutate/python-equivalent.txt count as equivalent and are not run.
#
# Nothing in the checkout is mutated: the package's tracked files (plus
# tests/vectors and examples/python, which the tests read) are copied to
# build/mutate-python/work/, and mutmut mutates that copy in place. The
# native extension is built once into build/mutate-python/venv (rebuilt when
# the C/C++ sources change) and copied next to the copied sources, so the
# mutated pure-Python modules import that build.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build/mutate-python
VENV=$OUT/venv
WORK=$OUT/work
PY=$VENV/bin/python

# The native build depends on these; a change rebuilds the venv's package.
stamp=$( { git ls-files -s CMakeLists.txt cmake core capi bindings/python/CMakeLists.txt \
             bindings/python/pyproject.toml; git diff HEAD -- CMakeLists.txt cmake core capi \
             bindings/python/CMakeLists.txt bindings/python/pyproject.toml; } | sha1sum | cut -c1-16)
mkdir -p "$OUT"
# One run at a time: a second one would delete the copy under the first.
exec 9>"$OUT/lock"
if ! flock -n 9; then
  echo "mutate/python: another run holds $OUT/lock" >&2
  exit 2
fi
if [ ! -x "$PY" ]; then
  echo "mutate/python: creating $VENV" >&2
  python3 -m venv "$VENV"
  "$PY" -m pip install -q "mutmut==2.5.1" -r bindings/python/requirements-test.txt >&2
fi
if [ "$(cat "$OUT/native.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "mutate/python: building the package (native extension, testing build)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    "$PY" -m pip install -q --force-reinstall --no-deps ./bindings/python \
    -Ccmake.define.TOLLGATE_TESTING=ON >&2
  echo "$stamp" > "$OUT/native.stamp"
fi

rm -rf "$WORK"
mkdir -p "$WORK"
git ls-files -z bindings/python tests/vectors examples/python | tar --null -T - -cf - | tar -C "$WORK" -xf -
# Uncommitted edits in the package (new tests while triaging) come along:
# git ls-files lists tracked files; add the untracked ones of bindings/python.
git ls-files -z --others --exclude-standard bindings/python | tar --null -T - -cf - | tar -C "$WORK" -xf -
native=$("$PY" -c 'import glob, os, sysconfig; print(glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "tollgate", "_native*.so"))[0])')
cp "$native" "$WORK/bindings/python/src/tollgate/"

cd "$WORK/bindings/python"
MUTATE_ROOT=$ROOT exec nice -n 10 "$ROOT/$PY" "$ROOT/scripts/mutate/python_mutate.py" \
  --python "$ROOT/$PY" \
  --runner "$ROOT/scripts/mutate/python-runner.sh" \
  --equivalents "$ROOT/scripts/mutate/python-equivalent.txt" \
  --results "$OUT/results.json" \
  "$@"
