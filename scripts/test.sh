#!/usr/bin/env bash
# Every test: a warnings-as-errors build with the full suite, then the same
# suite under ASan+UBSan and under TSan, a short run of every fuzz target
# (scripts/fuzz.sh), a formatting check, the Python and Node packages built
# the way users install them with their suites (run twice: the I/O thread
# and the event loop driving Redis), a one-minute soak
# (scripts/soak.sh), and a fast sample of
# mutation testing (docs/testing.md). After each suite,
# tests/check_tests_ran.py checks that every test defined ran (nothing
# filtered away, no file silently skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# toxiproxy, the fault proxy of tests/test_network_faults.cpp, built with Go
# where Go is installed; without it those tests are reported skipped.
go_bin=$(command -v go || ls /usr/local/go/bin/go 2>/dev/null || true)
if [[ -n "$go_bin" ]]; then
  toxi="$("$go_bin" env GOPATH)/bin/server"
  if [[ ! -x "$toxi" ]]; then
    "$go_bin" install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0 ||
      echo "toxiproxy could not be built: its tests will be skipped"
  fi
  [[ -x "$toxi" ]] && export TOLLGATE_TOXIPROXY="$toxi"
fi
jobs=$(nproc)
started=$SECONDS

step() { echo; echo "=== $* ($((SECONDS - started)) s)"; }

step "format check"
git ls-files '*.c' '*.h' '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror

step "release build, -Wall -Wextra -Werror"
cmake -S . -B build/ci -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTOLLGATE_WERROR=ON -DTOLLGATE_TESTING=ON >/dev/null
cmake --build build/ci -j "$jobs"
# Each test has its own timeout (tests/CMakeLists.txt); --timeout is only the
# default for any that has none.
(cd build/ci && ctest --output-on-failure -j "$jobs" --timeout 120)
python3 tests/check_tests_ran.py catch build/ci/tests/tollgate_tests \
  build/ci/Testing/Temporary/LastTest.log

step "ASan+UBSan build"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DTOLLGATE_WERROR=ON -DTOLLGATE_TESTING=ON -DTOLLGATE_SANITIZE=address -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build build/asan -j "$jobs"
(cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j "$jobs" --timeout 120 -E "install_and_consume")
python3 tests/check_tests_ran.py catch build/asan/tests/tollgate_tests \
  build/asan/Testing/Temporary/LastTest.log

step "TSan build"
cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTOLLGATE_WERROR=ON -DTOLLGATE_TESTING=ON -DTOLLGATE_SANITIZE=thread -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build build/tsan -j "$jobs"
# TSan's shadow layout needs ASLR off on kernels with high mmap entropy.
(cd build/tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  setarch "$(uname -m)" -R ctest --output-on-failure -j "$jobs" --timeout 120 \
  -E "install_and_consume")
setarch "$(uname -m)" -R python3 tests/check_tests_ran.py catch \
  build/tsan/tests/tollgate_tests build/tsan/Testing/Temporary/LastTest.log

step "fuzzing: every target for a few seconds"
# libFuzzer with ASan+UBSan over the parsers (docs/reliability.md); the
# long runs are `scripts/fuzz.sh --runs 10000000`.
bash scripts/fuzz.sh 5

step "Python package: pip install from source, then pytest"
# Built the way a user installs it (pip, scikit-build-core, pybind11 from
# PyPI), with the pinned-clock scripts so the shared vectors replay on Redis.
python3 -m venv build/pyvenv
build/pyvenv/bin/pip install -q --upgrade pip
build/pyvenv/bin/pip install -q ./bindings/python -Ccmake.define.TOLLGATE_TESTING=ON \
  -r bindings/python/requirements-test.txt
build/pyvenv/bin/pip install -q build
# TOLLGATE_TEST_SDIST: build an sdist from the tree and install it into a
# clean virtualenv; TOLLGATE_TEST_WORKER: the C worker for the C + Python
# processes test.
# Every test has a timeout (pytest-timeout; slower ones mark their own), and
# no test may be skipped here: every prerequisite is present.
# The binary wheel (auditwheel-repaired, in dist/) is installed into a venv
# with no compiler on PATH by test_wheel.py.
bash scripts/package.sh
TOLLGATE_TEST_WHEEL="$PWD/dist" \
TOLLGATE_TEST_SDIST=1 \
TOLLGATE_TEST_WORKER="$PWD/build/ci/tests/tollgate-test-worker" \
  build/pyvenv/bin/python -m pytest bindings/python/tests -q --timeout 60 \
  --junitxml build/pytest.xml
python3 tests/check_tests_ran.py pytest build/pytest.xml bindings/python/tests

step "Python suite again, tollgate's I/O thread driving Redis (TOLLGATE_DRIVER=thread)"
# Every limiter left at driver="auto" (the running loop where it can, until
# many checks stay in flight: docs/architecture.md, "Drivers") is driven
# by the I/O thread instead; the packaging tests skip here.
TOLLGATE_DRIVER=thread \
TOLLGATE_TEST_WORKER="$PWD/build/ci/tests/tollgate-test-worker" \
  build/pyvenv/bin/python -m pytest bindings/python/tests -q --timeout 60

step "Node package: npm builds the addon from source, then node --test"
# cmake-js compiles the addon offline (headers from node-api-headers) with
# the pinned-clock scripts (shared vectors on Redis) and -Werror. The C
# worker and the Python venv above join the C + Python + Node test.
root=$PWD
# node --test applies --test-timeout to each file as a whole too, so the files
# whose tests install and build packages (each test sets its own 180-240 s)
# run in a second invocation whose ceiling covers the whole file; every other
# test file, and each test in it, gets 60 s.
slow_files="test/next.test.js test/package.test.js test/install.test.js"
node_tests() { # <timeout ms> <events file> <test files...>
  local ms=$1 events=$2
  shift 2
  TOLLGATE_TEST_WORKER="$root/build/ci/tests/tollgate-test-worker" \
  TOLLGATE_TEST_PYTHON="$root/build/pyvenv/bin/python" \
  TOLLGATE_TEST_DEMO="$root/build/ci/examples/tollgate-demo" \
    node --test --test-timeout="$ms" \
      --test-reporter=spec --test-reporter-destination=stdout \
      --test-reporter="$root/tests/node_tests_ran.mjs" \
      --test-reporter-destination="$events" "$@"
}
(cd bindings/node && rm -rf build &&
  TOLLGATE_TESTING=ON TOLLGATE_NODE_WERROR=ON npm ci --no-audit --no-fund --loglevel=error &&
  fast_files=$(ls test/*.test.js | grep -vxF -f <(tr ' ' '\n' <<<"$slow_files")) &&
  node_tests 60000 "$root/build/node-tests-fast.jsonl" $fast_files &&
  node_tests 900000 "$root/build/node-tests-slow.jsonl" $slow_files)
cat build/node-tests-fast.jsonl build/node-tests-slow.jsonl >build/node-tests.jsonl
python3 tests/check_tests_ran.py node build/node-tests.jsonl bindings/node/test

step "Node suite again, tollgate's I/O thread driving Redis (TOLLGATE_DRIVER=thread)"
# As above without the packaging files: every limiter left at driver 'auto'
# (its own event loop where it can, until many checks stay in flight) is
# driven by the I/O thread instead.
(cd bindings/node && export TOLLGATE_DRIVER=thread &&
  fast_files=$(ls test/*.test.js | grep -vxF -f <(tr ' ' '\n' <<<"$slow_files")) &&
  node_tests 60000 "$root/build/node-tests-thread.jsonl" $fast_files)

step "soak: C, Python and Node on Redis, Sentinel and Cluster under faults, 1 minute"
# The packages built above; docs/reliability.md has the 30-minute run.
TOLLGATE_SOAK_C_WORKER="$root/build/ci/tests/tollgate-soak-worker" \
TOLLGATE_SOAK_PYTHON="$root/build/pyvenv/bin/python" \
TOLLGATE_SOAK_NODE_PACKAGE="$root/bindings/node" \
  bash scripts/soak.sh 1

step "mutation testing: a fixed sample of each part against its target"
# universalmutator (C++ core, Lua), mutmut (Python), Stryker (Node); each
# part in a private copy under build/. docs/testing.md has the full runs.
bash scripts/mutate.sh --ci

step "all test suites passed"
