#!/usr/bin/env bash
# The demo's closing hints are commands a user can run as printed, and they
# succeed:
#   1. the memory-store run ends with "Use a shared Redis store:" and the
#      demo itself with --store redis://localhost:6379: run as printed (the
#      URL swapped for this test's Redis), it admits the plan once;
#   2. that shared-store run ends with "... with the tollgate CLI:" and a
#      tollgate command: run exactly as printed, it exits 0 and lists the
#      demo's key with the plan used up.
# Each command must resolve (a path to an executable, or a name on PATH).
#   tests/with_redis.sh tests/check_demo_hint.sh <demo binary, as a user
#   would start it>
set -euo pipefail
url=${TOLLGATE_TEST_REDIS_URL:?run under tests/with_redis.sh}

fail() {
  echo "check_demo_hint: $*" >&2
  exit 1
}

# The line after the one holding $2 in $1, without its indent.
hint_after() {
  printf '%s\n' "$1" | grep -A1 -F -- "$2" | sed -n '2s/^ *//p'
}

# The first word of a printed command, as the shell reads it.
first_word() {
  eval "set -- $1"
  printf '%s\n' "$1"
}

resolves() {
  local cmd
  cmd=$(first_word "$1")
  if [[ $cmd == */* ]]; then
    [[ -x $cmd ]] || fail "'$cmd' is not an executable"
  else
    command -v "$cmd" >/dev/null || fail "'$cmd' is not on PATH"
  fi
}

out=$("$@") || fail "the memory demo exited with status $?"
hint=$(hint_after "$out" 'Use a shared Redis store:')
[[ -n $hint ]] || fail "no hint in the memory demo's output"
[[ $hint == *' --store redis://localhost:6379' ]] ||
  fail "the memory hint does not end with --store redis://localhost:6379: $hint"
resolves "$hint"
echo "memory hint: $hint"

# Run it as printed, on this test's Redis.
shared=$(eval "${hint% redis://localhost:6379} $url") ||
  fail "the memory hint exited with status $?: ${hint% redis://localhost:6379} $url"
grep -qx 'admitted in total: 100' <<<"$shared" ||
  fail "the memory hint's run did not admit the plan once: $shared"

cli_hint=$(hint_after "$shared" 'with the tollgate CLI')
[[ -n $cli_hint ]] || fail "no CLI hint in the shared-store run's output: $shared"
resolves "$cli_hint"
echo "shared-store hint: $cli_hint"
listing=$(eval "$cli_hint" 2>&1) || fail "the CLI hint exited with status $?: $cli_hint"
grep -q '^org-123  remaining 0/100 ' <<<"$listing" ||
  fail "the CLI hint did not list org-123 with the plan used up: $listing"
echo "it runs: $listing"
