#!/usr/bin/env bash
# The lone-wait spin at spin_us 0, 50 and 200, on an idle machine and on a
# busy one (one CPU burner per CPU, started here and stopped by PID), each
# against a throwaway redis-server on a free loopback port:
#   bench/spin.sh [--json] [seconds per figure] [rounds]
# --json: a JSON array of the two runs on standard output (what
# bench/results/spin.json holds); the load and progress on standard error.
# Run it through bench/when_quiet.sh so that "idle" means idle. The binary
# is $BENCH_BIN, default build/bench/bench/tollgate-bench-spin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
json=()
if [ "${1:-}" = "--json" ]; then json=(--json); shift; fi
secs=${1:-2}
rounds=${2:-3}
bin=${BENCH_BIN:-$root/build/bench/bench/tollgate-bench-spin}
[ -x "$bin" ] || { echo "spin.sh: $bin not built" >&2; exit 2; }

burners=()
stop_burners() {
  local p
  for p in "${burners[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${burners[@]}"; do wait "$p" 2>/dev/null || true; done
  burners=()
}
trap stop_burners EXIT

run() {  # label
  echo "spin.sh: $1: $(uptime)" >&2
  "$root/tests/with_redis.sh" "$bin" "${json[@]}" --label "$1" @REDIS_URL@ \
    "$secs" "$rounds"
}

[ ${#json[@]} -gt 0 ] && echo "["
run idle
[ ${#json[@]} -gt 0 ] && echo ","
n=$(nproc)
for ((i = 0; i < n; i++)); do
  bash -c 'while :; do :; done' &
  burners+=($!)
done
sleep 2
run "busy ($n CPU burners)"
stop_burners
[ ${#json[@]} -gt 0 ] && echo "]"
echo "spin.sh: burners stopped: $(uptime)" >&2
