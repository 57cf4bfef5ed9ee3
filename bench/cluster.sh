#!/usr/bin/env bash
# Runs tollgate-bench-cluster against a throwaway standalone redis-server
# and a throwaway Redis Cluster (3 primaries, each with a replica, from
# tests/servers/topology.py), both on free loopback ports; the cluster twice,
# with every node as a seed (the URL topology.py prints) and with the 3
# primaries only:
#   bench/cluster.sh [--json] [seconds per figure] [rounds]
# --json: the benchmark's JSON (bench/results/cluster.json, read by
# bench/plot.py) on standard output; everything else on standard error.
# CLUSTER_REPLICAS (default 1) sets the replicas per primary.
# The binary is $BENCH_BIN, default build/bench/bench/tollgate-bench-cluster
# (docs/benchmarks.md, "Redis Cluster", shows how it is built). Every
# process started here is stopped by PID afterwards, and ps must show that
# none is left.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
json=()
if [ "${1:-}" = "--json" ]; then json=(--json); shift; fi
secs=${1:-2}
rounds=${2:-3}
bin=${BENCH_BIN:-$root/build/bench/bench/tollgate-bench-cluster}
[ -x "$bin" ] || { echo "cluster.sh: $bin not built" >&2; exit 2; }

dir=$(mktemp -d)
redis_pid='' topo_pid='' node_pids=''
cleanup() {
  local rc=$? left='' p
  # topology.py stops its nodes (by PID) when its stdin closes.
  exec 3>&-
  if [ -n "$topo_pid" ]; then
    for _ in $(seq 100); do kill -0 "$topo_pid" 2>/dev/null || break; sleep 0.1; done
    kill "$topo_pid" 2>/dev/null || true  # SIGTERM: it still cleans up
    wait "$topo_pid" 2>/dev/null || true
  fi
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  for p in $redis_pid $topo_pid $node_pids; do
    if ps -p "$p" -o pid=,comm= >/dev/null 2>&1; then
      left="$left $(ps -p "$p" -o pid=,comm= | tr -s ' ')"
    fi
  done
  rm -rf "$dir"
  if [ -n "$left" ]; then
    echo "cluster.sh: still running:$left" >&2
    exit 1
  fi
  echo "cluster.sh: every server stopped (ps shows none of: $redis_pid $topo_pid $node_pids)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "cluster.sh: load average (1 min) at start: $(cut -d' ' -f1 /proc/loadavg)" >&2

# The standalone server (as tests/with_redis.sh starts one).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
mkdir "$dir/standalone"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$dir/standalone" --daemonize no >"$dir/standalone/redis.log" 2>&1 &
redis_pid=$!

# The cluster. Its stdin is a fifo held open on fd 3 until cleanup.
mkfifo "$dir/topo.in"
python3 "$root/tests/servers/topology.py" cluster \
  --replicas-per-primary "${CLUSTER_REPLICAS:-1}" <"$dir/topo.in" \
  >"$dir/topo.out" 2>"$dir/topo.err" &
topo_pid=$!
exec 3>"$dir/topo.in"

for _ in $(seq 100); do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
  sleep 0.05
done
redis-cli -p "$port" ping >/dev/null || { echo "cluster.sh: standalone server did not start" >&2; exit 1; }

for _ in $(seq 900); do
  grep -q '"url"' "$dir/topo.out" 2>/dev/null && break
  kill -0 "$topo_pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '"url"' "$dir/topo.out" 2>/dev/null; then
  echo "cluster.sh: the cluster did not start" >&2
  cat "$dir/topo.err" >&2
  exit 1
fi
# The URL as topology.py prints it (every node a seed, replicas too) and
# one with the 3 primaries only.
read -r cluster_url primaries_url node_pids < <(python3 -c '
import json, sys
t = json.loads(open(sys.argv[1]).readline())
p = ",".join("%s:%d" % (n["host"], n["port"]) for n in t["nodes"]
             if n["role"] == "primary")
print(t["url"], "redis+cluster://" + p,
      ",".join(str(n["pid"]) for n in t["nodes"]))' "$dir/topo.out")
node_pids=${node_pids//,/ }
echo "cluster.sh: standalone pid $redis_pid; cluster: topology.py pid $topo_pid, nodes $node_pids" >&2

second=("$primaries_url")
[ "$primaries_url" = "$cluster_url" ] && second=()  # no replicas
TOLLGATE_BENCH_STANDALONE_PIDS="$redis_pid" \
TOLLGATE_BENCH_CLUSTER_PIDS="$node_pids" \
TOLLGATE_BENCH_CLUSTER_REPLICAS="${CLUSTER_REPLICAS:-1}" \
  "$bin" "${json[@]}" "redis://127.0.0.1:$port" "$cluster_url" "$secs" \
  "$rounds" "${second[@]}"
