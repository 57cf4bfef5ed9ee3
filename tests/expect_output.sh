#!/usr/bin/env bash
# Runs a command and passes only if it exits 0 AND a line of its standard
# output matches an extended regular expression:
#   tests/expect_output.sh <regex> <command> [args...]
# (CTest's PASS_REGULAR_EXPRESSION alone ignores the exit status.)
set -uo pipefail
regex=$1
shift
out=$("$@")
status=$?
printf '%s\n' "$out"
if ((status != 0)); then
  echo "expect_output: '$1' exited with status $status" >&2
  exit 1
fi
if ! grep -Eq -- "$regex" <<<"$out"; then
  echo "expect_output: no line of the output matches /$regex/" >&2
  exit 1
fi
