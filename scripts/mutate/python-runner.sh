#!/bin/sh
# The test command mutmut runs for one mutant (scripts/mutate/python.sh sets
# it per mutated module through the pre_mutation hook).
#
#   python-runner.sh PYTHON TIMEOUT_S TEST_FILE...
#
# Runs in the mutated copy's bindings/python folder with that copy's src/
# first on PYTHONPATH. Exit 0 only when pytest passed; every other outcome
# (a failed test, a collection or import error, the timeout) exits 1: mutmut
# 2.x counts any exit code other than 1 as "tests passed", so a mutant that
# broke an import would otherwise survive.
py=$1
limit=$2
shift 2
PYTHONPATH="$(pwd)/src${PYTHONPATH:+:$PYTHONPATH}" \
  timeout -k 5 "$limit" "$py" -m pytest -x -q -p no:cacheprovider "$@" >/dev/null 2>&1
rc=$?
[ "$rc" -eq 0 ] && exit 0
exit 1
