#!/usr/bin/env bash
# Packs tollgate's Node package (npm pack in bindings/node), installs the
# tarball (which builds the addon, Release) and the libraries it is compared
# with into a temporary folder, starts a throwaway redis-server on a free
# loopback port and runs bench/node/bench_node.js (docs/benchmarks.md,
# section "Node"). Arguments go to the benchmark, e.g. --quick or --json.
#
#   bench/node/run.sh [bench_node.js options]
#
# BENCH_DIR=/some/dir reuses (or creates) the install folder there instead of
# a temporary one; BENCH_SKIP_INSTALL=1 skips the npm step for such a folder.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
if [[ -n "${BENCH_DIR:-}" ]]; then
  dir=$BENCH_DIR
  mkdir -p "$dir"
else
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
fi
cp bench/node/package.json bench/node/bench_node.js "$dir/"
if [[ -z "${BENCH_SKIP_INSTALL:-}" ]]; then
  tarball=$(cd bindings/node && npm pack --silent --pack-destination "$dir" | tail -n 1)
  # npm's summary goes to stderr: stdout is the benchmark's (--json).
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2 && \
    npm install --no-audit --no-fund --loglevel=error --no-save "./$tarball" >&2)
fi
tests/with_redis.sh node --expose-gc "$dir/bench_node.js" --redis @REDIS_URL@ "$@"
