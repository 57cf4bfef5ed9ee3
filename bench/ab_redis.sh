#!/usr/bin/env bash
# Runs two builds of tollgate-bench-redis alternately against one throwaway
# redis-server, so that a change to the transport is measured against the
# code before it in the same run (this machine's load moves the absolute
# figures; alternating A B A B ... spreads it over both):
#   bench/ab_redis.sh <bench A> <bench B> [rounds] [seconds per figure]
# docs/benchmarks.md shows how the two builds were made.
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} secs=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
run() {
  local url=$1
  for r in $(seq "$rounds"); do
    for which in A B; do
      bin=$a
      [ "$which" = B ] && bin=$b
      echo "=== round $r, $which: $bin"
      "$bin" "$url" "$secs"
    done
  done
}
export -f run
export a b rounds secs
"$here/../tests/with_redis.sh" bash -c 'run "$TOLLGATE_TEST_REDIS_URL"'
