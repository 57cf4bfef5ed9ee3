#!/usr/bin/env bash
# Mutation testing of the Node package's JavaScript (bindings/node/lib/*.js)
# with Stryker (@stryker-mutator/core, tap runner over the node --test files).
#
#   scripts/mutate/node.sh                 # the default sample (--sample 40 --seed 1)
#   scripts/mutate/node.sh --sample 300 --seed 7
#   scripts/mutate/node.sh --all           # every mutant (~1800; hours on 2 cores)
#   scripts/mutate/node.sh --min 80        # exit 1 when the score is below 80%
#
# The last line printed is
#   MUTATION node killed=<k> survived=<s> equivalent=<e> total=<t> score=<pct>%
# score = killed / (total - equivalent); Stryker's Timeout counts as killed,
# NoCoverage as survived, CompileError/RuntimeError are left out. Mutants
# listed in scripts/mutate/node-equivalent.txt count as equivalent.
#
# Nothing here touches bindings/node: the tools live in scripts/mutate/node
# (own package.json + lockfile, `npm ci`), and the run happens in a work copy
# ($TOLLGATE_MUTATE_NODE_DIR, default build/mutate-node) that holds its own
# addon build (cmake-js, TOLLGATE_TESTING=ON, from this checkout's sources)
# and copies of lib/ and test/. Stryker mutates copies of those in its
# sandbox (<work>/.stryker-tmp); lib/ in the checkout is never written.
#
# Sample: Stryker lists every mutant once (a pass with all of them ignored);
# select.mjs sorts them and a seeded shuffle picks N; Stryker then runs with
# exactly those locations as --mutate ranges; the plugins in
# sample-plugin.mjs (an ignorer and a checker) keep any other mutant from
# running. Same sources + N + seed = same mutants.
#
# Environment: STRYKER_CONCURRENCY (default 1), NICE (default 10),
# TOLLGATE_MUTATE_NODE_TESTS (the folder the tests are copied from; default
# bindings/node/test: point it at another copy to score another suite).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools="$here/node"
work=${TOLLGATE_MUTATE_NODE_DIR:-$root/build/mutate-node}
pkg="$root/bindings/node"
tests_from=${TOLLGATE_MUTATE_NODE_TESTS:-$pkg/test}
nice_n=${NICE:-10}
concurrency=${STRYKER_CONCURRENCY:-1}

sample=40
seed=1
all=0
min=-
while [ $# -gt 0 ]; do
  case "$1" in
    --sample) sample=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --all) all=1; shift ;;
    --min) min=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "node.sh: unknown argument '$1' (--sample N, --seed S, --all, --min PCT)" >&2; exit 64 ;;
  esac
done
case "$sample$seed" in *[!0-9]*) echo "node.sh: --sample and --seed take integers" >&2; exit 64 ;; esac

log() { echo "mutate/node: $*"; }

# 1. Stryker, in its own folder (never a dependency of the published package).
if [ ! -d "$tools/node_modules/@stryker-mutator/core" ] ||
   [ "$tools/package-lock.json" -nt "$tools/node_modules/.package-lock.json" ]; then
  log "npm ci in scripts/mutate/node"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
fi
stryker="$tools/node_modules/.bin/stryker"
log "$("$stryker" --version 2>/dev/null | tail -1 | sed 's/^/Stryker /')"

# 2. The addon, built once in the work copy (incremental afterwards).
# One run at a time per work copy (a second would delete the first's files).
mkdir -p "$work"
exec 9> "$work/.lock"
flock -n 9 || { echo "node.sh: another run is using $work (set TOLLGATE_MUTATE_NODE_DIR)" >&2; exit 1; }
for f in package.json package-lock.json CMakeLists.txt; do
  cmp -s "$pkg/$f" "$work/$f" || cp "$pkg/$f" "$work/$f"
done
for d in src scripts; do
  rm -rf "${work:?}/$d"
  cp -r "$pkg/$d" "$work/$d"
done
if [ ! -d "$work/node_modules/cmake-js" ] || [ "$work/package-lock.json" -nt "$work/node_modules/.package-lock.json" ]; then
  log "npm ci --ignore-scripts in the work copy"
  (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
log "building the addon (cmake-js, TOLLGATE_TESTING=ON)"
(cd "$work" && nice -n "$nice_n" npx cmake-js compile --CDTOLLGATE_TESTING=ON \
  "--CDTOLLGATE_SOURCE_DIR=$root" > "$work/addon-build.log" 2>&1) ||
  { tail -40 "$work/addon-build.log"; exit 1; }
addon="$work/build/Release/tollgate.node"
[ -f "$addon" ] || { echo "node.sh: no addon at $addon" >&2; exit 1; }

# 3. Fresh copies of the JavaScript and the tests. The sandbox is
# <work>/.stryker-tmp/sandbox-*, so the tests' repository root (../.. from
# the package) is <work>: tests/ and examples/ point at the checkout.
rm -rf "$work/lib" "$work/test" "$work/reports" "$work/.stryker-tmp"
cp -r "$pkg/lib" "$work/lib"
cp -r "$tests_from" "$work/test"
ln -sfn "$root/tests" "$work/tests"
ln -sfn "$root/examples" "$work/examples"
mkdir -p "$work/reports"

files=()
for f in "$work"/lib/*.js; do files+=("lib/$(basename "$f")"); done

# The tests Stryker runs, one file at a time, bailing at the first failure.
# Left out: package.test.js (npm pack + a full build, minutes) and
# demo.test.js (needs the C demo and Python), cluster.test.js and
# sentinel.test.js (a Redis topology per run, ~2.5 s each; lib/ only passes
# their URLs and health through, which api.test.js covers). next.test.js's
# Next.js build skips in the sandbox (it has no build/ folder).
test_list=()
for f in "$work"/test/*.test.js; do
  case "$(basename "$f")" in package.test.js|demo.test.js|cluster.test.js|sentinel.test.js) ;; *) test_list+=("test/$(basename "$f")") ;; esac
done

write_config() { # <config file> <mutate JSON array> <runner: list|tap> <report name>
  local runner test_files
  test_files=$(json_array "${test_list[@]}")
  if [ "$3" = list ]; then
    runner='"testRunner": "command", "commandRunner": { "command": "true" }, "coverageAnalysis": "off",'
  else
    runner='"testRunner": "tap", "tap": { "testFiles": '"$test_files"', "nodeArgs": ["--test-reporter=tap"], "forceBail": true },
  "coverageAnalysis": "perTest", "timeoutMS": 20000, "timeoutFactor": 2,'
  fi
  cat > "$1" <<EOF
{
  "mutate": $2,
  $runner
  "plugins": ["@stryker-mutator/*", "$tools/sample-plugin.mjs"],
  "ignorers": ["node-sample"],
  "checkers": ["node-sample"],
  "ignorePatterns": ["/build", "/src", "/scripts", "/CMakeLists.txt", "/tests", "/examples", "/reports", "/addon-build.log", "/*.conf.json"],
  "reporters": ["json", "progress-append-only"],
  "jsonReporter": { "fileName": "reports/$4.json" },
  "concurrency": $concurrency,
  "cleanTempDir": "always",
  "logLevel": "info",
  "fileLogLevel": "off"
}
EOF
}

json_array() { node -e 'console.log(JSON.stringify(process.argv.slice(1)))' "$@"; }

# Run Stryker in a session of its own; afterwards stop, by PID, whatever of
# that session is still alive (a timed-out test's node process and the
# redis-server it started).
run_stryker() { # <config> [env...]
  local config=$1; shift
  local sid_file="$work/reports/stryker.sid"
  local rc=0
  (cd "$work" && env -u TOLLGATE_TEST_PYTHON -u TOLLGATE_TEST_WORKER -u TOLLGATE_TEST_DEMO \
     -u TOLLGATE_URL "$@" TOLLGATE_NODE_ADDON="$addon" TOLLGATE_SKIP_SLOW=1 \
     setsid bash -c 'echo $$ > "$0"; exec nice -n "$1" "$2" run "$3"' \
     "$sid_file" "$nice_n" "$stryker" "$config") || rc=$?
  local sid
  sid=$(cat "$sid_file" 2>/dev/null || true)
  if [ -n "$sid" ]; then
    for stat in /proc/[0-9]*/stat; do
      local pid=${stat#/proc/}; pid=${pid%/stat}
      # field 6 of /proc/PID/stat is the session id (after the "(comm)" field)
      local s
      s=$(sed -E 's/^[0-9]+ \(.*\) //' "$stat" 2>/dev/null | awk '{print $4}') || continue
      if [ "$s" = "$sid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
  fi
  return $rc
}

start=$(date +%s)
if [ "$all" = 1 ]; then
  log "every mutant of ${files[*]}"
  write_config "$work/run.conf.json" "$(json_array "${files[@]}")" tap run
  run_stryker "$work/run.conf.json" || { echo "node.sh: Stryker failed" >&2; exit 1; }
  sample_file=-
else
  write_config "$work/list.conf.json" "$(json_array "${files[@]}")" list list
  run_stryker "$work/list.conf.json" STRYKER_NODE_SAMPLE=list > "$work/reports/list.log" 2>&1 ||
    { tail -30 "$work/reports/list.log"; exit 1; }
  sample_file="$work/reports/sample.json"
  mapfile -t ranges < <(node "$tools/select.mjs" "$work/reports/list.json" "$sample" "$seed" \
    "$sample_file" "$here/node-equivalent.txt")
  log "sample: $sample mutants, seed $seed (${#ranges[@]} to run; the rest listed as equivalent)"
  if [ "${#ranges[@]}" -gt 0 ]; then
    write_config "$work/run.conf.json" "$(json_array "${ranges[@]}")" tap run
    run_stryker "$work/run.conf.json" STRYKER_NODE_SAMPLE="$sample_file" ||
      { echo "node.sh: Stryker failed" >&2; exit 1; }
  else
    echo '{"files":{}}' > "$work/reports/run.json"
  fi
fi
end=$(date +%s)
log "Stryker took $((end - start)) s; report: $work/reports/run.json"
node "$tools/summarize.mjs" "$work/reports/run.json" "$sample_file" "$here/node-equivalent.txt" "$min" "$((end - start))"
