#!/usr/bin/env bash
# The main job: builds tollgate and plays the three-servers demo twice:
# with the in-process memory store (each server admits 100: 300 in total)
# and with one shared Redis (exactly 100 in total).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTOLLGATE_BUILD_TESTS=OFF -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo --target tollgate-demo
demo=./build/demo/examples/tollgate-demo
echo
echo "=== 1. memory store: one counter per server process"
"$demo" "$@"
echo
echo "=== 2. one shared Redis (a throwaway redis-server on a loopback port)"
tests/with_redis.sh "$demo" --store @REDIS_URL@ "$@"
