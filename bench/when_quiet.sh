#!/usr/bin/env bash
# Runs a command once the machine is quiet: the 1-minute load average below
# MAX_LOAD (default 1.5) and no other process above MAX_PCPU % of a CPU
# (default 20, as `ps` reports it: the average over the process's life).
# Until then it prints `uptime` and the busiest processes, and sleeps 60 s.
# It prints both once more just before it starts the command (to stderr, so
# a benchmark's JSON on stdout stays clean).
#
#   bench/when_quiet.sh COMMAND [ARGS...]
#
# Used for every run behind docs/benchmarks.md: on a 2-CPU machine shared
# with other work, a figure taken beside a compiler says little.
set -euo pipefail
max_load=${MAX_LOAD:-1.5}
max_pcpu=${MAX_PCPU:-20}
tries=${TRIES:-60}
for ((i = 1; ; i++)); do
  uptime >&2
  ps -eo pcpu,comm --sort=-pcpu | head -5 >&2
  load=$(cut -d' ' -f1 /proc/loadavg)
  top=$(ps -eo pcpu --sort=-pcpu --no-headers | head -1 | tr -d ' ')
  if awk -v l="$load" -v m="$max_load" -v t="$top" -v p="$max_pcpu" \
    'BEGIN { exit !(l < m && t < p) }'; then
    break
  fi
  if ((i >= tries)); then
    echo "when_quiet.sh: still busy after $tries tries (load $load, top process $top%)" >&2
    exit 75
  fi
  echo "when_quiet.sh: busy (load $load, top process $top%); retrying in 60 s" >&2
  sleep 60
done
exec "$@"
