#!/usr/bin/env bash
# Builds tollgate's Python package into a throwaway virtualenv with the
# libraries it is compared with, starts a throwaway redis-server on a free
# loopback port, and runs bench/python/bench_python.py (docs/benchmarks.md,
# section "Python"). Arguments go to the benchmark, e.g. --quick or --json.
#
#   bench/python/run.sh [bench_python.py options]
#
# BENCH_VENV=/some/dir reuses (or creates) a virtualenv there instead of a
# temporary one; BENCH_SKIP_INSTALL=1 skips the pip step for such a venv.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
if [[ -n "${BENCH_VENV:-}" ]]; then
  venv=$BENCH_VENV
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  venv=$tmp/venv
fi
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
if [[ -z "${BENCH_SKIP_INSTALL:-}" ]]; then
  "$venv/bin/pip" install --quiet ./bindings/python -r bench/python/requirements.txt
fi
tests/with_redis.sh "$venv/bin/python" bench/python/bench_python.py --redis @REDIS_URL@ "$@"
