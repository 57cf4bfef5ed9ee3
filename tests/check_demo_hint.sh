#!/usr/bin/env bash
# The memory-store demo ends with a hint: a command to run next. It must be
# a command the user has: a path to an executable, or a name on PATH.
#   check_demo_hint.sh <demo binary, as a user would start it>
set -euo pipefail
out=$("$@")
hint=$(printf '%s\n' "$out" | grep -A1 -F 'Use a shared Redis store:' | tail -n 1)
cmd=$(printf '%s\n' "$hint" | awk '{print $1}')
if [[ -z $cmd ]]; then
  echo "check_demo_hint: no hint in the demo's output" >&2
  exit 1
fi
if [[ $cmd == */* ]]; then
  [[ -x $cmd ]] || { echo "check_demo_hint: '$cmd' is not an executable" >&2; exit 1; }
else
  command -v "$cmd" >/dev/null || { echo "check_demo_hint: '$cmd' is not on PATH" >&2; exit 1; }
fi
echo "hint runs: $hint"
