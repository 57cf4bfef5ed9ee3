#!/usr/bin/env bash
# The soak test: scripts/soak.sh <minutes>. C, Python and Node processes
# check the same keys against one redis-server, then a Sentinel set, then a
# Redis Cluster (a third of the time each), while they are frozen,
# restarted and failed over on a schedule; tests/soak/soak.py says what it
# checks and fails unless every call kept its deadline, the counts are
# exact and memory, descriptors and threads stay flat (docs/reliability.md,
# "Soak").
#
# It builds what it needs: the C worker (build/soak), the Python package
# pip-installed in build/soak-venv, the Node package npm-installed (with
# --install-links) in build/soak-node, built from these sources even where
# scripts/package-node.sh left a prebuilt addon in bindings/node/prebuilds
# (one made before a change would be tested instead of the change). CI
# passes its own through TOLLGATE_SOAK_C_WORKER, TOLLGATE_SOAK_PYTHON and
# TOLLGATE_SOAK_NODE_PACKAGE.
# The report, soak.json and soak{,-sentinel,-cluster}.svg, goes to
# build/soak-report (or TOLLGATE_SOAK_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
minutes=${1:?usage: scripts/soak.sh <minutes>}
out=${TOLLGATE_SOAK_OUT:-build/soak-report}
mkdir -p "$out"

c_worker=${TOLLGATE_SOAK_C_WORKER:-}
if [[ -z $c_worker ]]; then
  cmake -S . -B build/soak -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTOLLGATE_BUILD_BENCH=OFF -DTOLLGATE_BUILD_EXAMPLES=OFF \
    -DTOLLGATE_BUILD_CLI=OFF >/dev/null
  cmake --build build/soak --target tollgate-soak-worker >/dev/null
  c_worker=$root/build/soak/tests/tollgate-soak-worker
fi

python=${TOLLGATE_SOAK_PYTHON:-}
if [[ -z $python ]]; then
  python3 -m venv build/soak-venv
  build/soak-venv/bin/pip install -q ./bindings/python
  python=$root/build/soak-venv/bin/python
fi

node_package=${TOLLGATE_SOAK_NODE_PACKAGE:-}
if [[ -z $node_package ]]; then
  mkdir -p build/soak-node
  (cd build/soak-node &&
    { [[ -f package.json ]] || npm init -y >/dev/null; } &&
    TOLLGATE_BUILD_FROM_SOURCE=1 npm install --install-links --no-audit \
      --no-fund --loglevel=error "$root/bindings/node" >/dev/null)
  node_package=$root/build/soak-node/node_modules/tollgate
fi

python3 tests/soak/soak.py --minutes "$minutes" --c-worker "$c_worker" \
  --python "$python" --node-package "$node_package" \
  --json "$out/soak.json" --svg "$out/soak.svg"
