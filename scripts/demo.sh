#!/usr/bin/env bash
# The main job: builds tollgate and plays the three-servers demo three times:
#   1. the in-process memory store: each server admits 100, 300 in total;
#   2. one shared Redis: exactly 100 in total;
#   3. the same Redis with a C, a Python and a Node server behind the one
#      balancer (the Python and Node packages built from source): 100;
#      then, while that Redis still runs, the tollgate CLI command the
#      demo's closing lines print, as printed: the org's state in the store.
# The demo and the CLI are built in build/demo and named by absolute paths
# in the hints, so each printed command runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/deps.sh
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTOLLGATE_BUILD_TESTS=OFF -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo --target tollgate-demo tollgate-cli
demo=$root/build/demo/examples/tollgate-demo
cli=$root/build/demo/cli/tollgate
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
# Runs the demo, then the CLI command its closing lines print, exactly as
# printed, before with_redis.sh stops the server.
then_hint='out=$(mktemp); trap "rm -f \"\$out\"" EXIT
"$@" | tee "$out"; status=${PIPESTATUS[0]}; ((status == 0)) || exit "$status"
hint=$(grep -A1 -F "with the tollgate CLI" "$out" | sed -n "2s/^ *//p")
[[ -n $hint ]] || exit 0
printf "\n\$ %s\n" "$hint"
eval "$hint"'
NODE_PATH="$root/build/demo/node/node_modules" tests/with_redis.sh \
  bash -c "$then_hint" then-hint "$demo" \
  --store @REDIS_URL@ --server-cmd c \
  --server-cmd "$root/build/demo/pyvenv/bin/python $root/examples/demo/server.py" \
  --server-cmd "node $root/examples/demo/server.js" "$@"
echo
echo "That redis-server was the demo's own and is stopped now; the CLI works on"
echo "any Redis (docs/cli.md):"
printf '  %q --help\n' "$cli"
