#!/usr/bin/env bash
# The main job: builds tollgate and plays the three-servers demo three times:
#   1. the in-process memory store: each server admits 100, 300 in total;
#   2. one shared Redis: exactly 100 in total;
#   3. the same Redis with a C, a Python and a Node server behind the one
#      balancer (the Python and Node packages built from source): 100.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
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

echo
echo "=== 3. three languages on that one Redis: a C, a Python and a Node server"
echo "(building the Python package with pip and the Node package with npm ...)"
[[ -x build/demo/pyvenv/bin/python ]] || python3 -m venv build/demo/pyvenv
build/demo/pyvenv/bin/pip install -q --upgrade pip
build/demo/pyvenv/bin/pip install -q ./bindings/python
mkdir -p build/demo/node
(cd build/demo/node &&
  { [[ -f package.json ]] || echo '{"name": "tollgate-demo-node", "private": true}' > package.json; } &&
  npm install --install-links --no-audit --no-fund --loglevel=error "$root/bindings/node" >/dev/null)
NODE_PATH="$root/build/demo/node/node_modules" tests/with_redis.sh "$demo" \
  --store @REDIS_URL@ --server-cmd c \
  --server-cmd "$root/build/demo/pyvenv/bin/python $root/examples/demo/server.py" \
  --server-cmd "node $root/examples/demo/server.js" "$@"
