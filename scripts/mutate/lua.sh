#!/usr/bin/env bash
# Mutation testing of the Redis Lua scripts (core/src/redis/lua) with universalmutator.
#
#   scripts/mutate/lua.sh [--sample N | --all] [--seed S] [--min PCT] [--files F...]
#
# Works in build/mutate-lua/ (a private copy of the tree and its build);
# the working tree is never changed. See scripts/mutate/driver.py for what
# is run per mutant, and docs/testing.md ("Mutation testing") for the scores.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! python3 -c 'import universalmutator' 2>/dev/null; then
  python3 -m pip install --quiet 'universalmutator==1.14.1'
fi
exec nice -n 10 python3 "$here/driver.py" lua "$@"
