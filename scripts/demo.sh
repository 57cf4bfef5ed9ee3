#!/usr/bin/env bash
# The main job: builds tollgate and plays the three-servers demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTOLLGATE_BUILD_TESTS=OFF -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo --target tollgate-demo
./build/demo/examples/tollgate-demo "$@"
