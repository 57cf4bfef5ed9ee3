#!/usr/bin/env bash
# Runs two builds of tollgate-bench-redis alternately against one throwaway
# redis-server, so that a change to the transport is measured against the
# code before it in the same run (this machine's load moves the absolute
# figures; alternating A B A B ... spreads it over both):
#   bench/ab_redis.sh <bench A> <bench B> [rounds] [seconds per figure]
# bench/NOTES.md, "The transport split", shows how the two builds were made.
# A bench may carry arguments ("<path> --no-metrics": one build, metrics off
# against on; bench/NOTES.md, "Metrics").
set -euo pipefail
AB_A=$1 AB_B=$2 AB_ROUNDS=${3:-3} AB_SECS=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
run() {
  local url=$1
  for r in $(seq "$AB_ROUNDS"); do
    for which in A B; do
      bin=$AB_A
      [ "$which" = B ] && bin=$AB_B
      echo "=== round $r, $which: $bin"
      # Unquoted: "<path> <flags>" splits into the command and its flags.
      # shellcheck disable=SC2086
      $bin "$url" "$AB_SECS"
    done
  done
}
export -f run
export AB_A AB_B AB_ROUNDS AB_SECS
"$here/../tests/with_redis.sh" bash -c 'run "$TOLLGATE_TEST_REDIS_URL"'
