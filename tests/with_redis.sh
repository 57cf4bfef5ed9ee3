#!/usr/bin/env bash
# Runs a command with a throwaway redis-server on a free loopback port:
#   tests/with_redis.sh <command> [args...]
# The command sees TOLLGATE_TEST_REDIS_URL; "@REDIS_URL@" in its arguments is
# replaced by the URL. The server is stopped by PID afterwards.
set -euo pipefail
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 100); do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
  sleep 0.05
done
url="redis://127.0.0.1:$port"
export TOLLGATE_TEST_REDIS_URL="$url"
args=()
for a in "$@"; do args+=("${a//@REDIS_URL@/$url}"); done
"${args[@]}"
