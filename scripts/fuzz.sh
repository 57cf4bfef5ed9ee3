#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan, core
# instrumented too) in build/fuzz and runs each in turn, one process
# (docs/reliability.md, "Fuzzing"); libFuzzer runs in this process (no
# -jobs or -workers: the machine is shared).
#   scripts/fuzz.sh <seconds>        each target for <seconds>
#   scripts/fuzz.sh --runs <N>       each target for N executions
#   ... [target...]                  only these targets
# Each run starts from a copy of tests/fuzz/corpus/<target> in a temporary
# directory (the committed corpus is never written). Prints each target's
# execution count; exits non-zero on a crash, leak or timeout, naming the
# reproducer (a file the target replays: build/fuzz/tests/fuzz/<target>
# <file>).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() { echo "usage: $0 <seconds> | --runs <N> [target...]" >&2; exit 2; }
(($# >= 1)) || usage
if [[ $1 == --runs ]]; then
  (($# >= 2)) && [[ $2 =~ ^[0-9]+$ ]] || usage
  limit=(-runs="$2")
  shift 2
else
  [[ $1 =~ ^[0-9]+$ ]] || usage
  limit=(-max_total_time="$1")
  shift
fi
all=(fuzz_url fuzz_resp fuzz_policy fuzz_headers fuzz_cluster_map fuzz_sentinel)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

command -v clang++ >/dev/null 2>&1 || bash scripts/deps.sh

build=build/fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTOLLGATE_FUZZ=ON -DTOLLGATE_BUILD_TESTS=OFF -DTOLLGATE_BUILD_BENCH=OFF \
  -DTOLLGATE_BUILD_EXAMPLES=OFF -DTOLLGATE_BUILD_CLI=OFF \
  -DTOLLGATE_BUILD_SHARED=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
# Every input that once failed, and the seeds, replayed first.
(cd "$build" && ctest --output-on-failure -R '_replay$')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  corpus=$work/$t/corpus
  artifacts=$root/$build/artifacts/$t/
  mkdir -p "$corpus" "$artifacts"
  cp tests/fuzz/corpus/"$t"/* "$corpus"/
  dict=()
  [[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
  log=$work/$t.log
  started=$SECONDS
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/tests/fuzz/$t" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "${dict[@]}" \
    "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  secs=$((SECONDS - started))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if ((rc != 0)); then
    failed=1
    tail -n 60 "$log"
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz: $t FAILED (exit $rc) after ${execs:-?} executions;" \
      "reproducer: ${reproducer:-none written} (replay: $build/tests/fuzz/$t <file>)"
  else
    echo "fuzz: $t: ${execs:-?} executions in ${secs} s" \
      "($(( ${execs:-0} / (secs > 0 ? secs : 1) ))/s), corpus $(ls "$corpus" | wc -l) inputs"
  fi
done
exit "$failed"
