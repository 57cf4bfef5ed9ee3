#!/usr/bin/env bash
# Mutation testing of tollgate: plants small bugs one at a time (real tools:
# universalmutator for the C++ core and the Lua scripts, mutmut for the
# Python package, Stryker for the Node package) and runs the tests that
# should notice. Prints a score per part: the share of non-equivalent
# mutants the tests killed. docs/testing.md has the scores and the mutants
# accepted as equivalent, with the reasons.
#
#   scripts/mutate.sh                   every part, its stated sample
#   scripts/mutate.sh --ci              every part, a small fixed sample,
#                                       failing below the targets (a few
#                                       minutes; scripts/test.sh runs it)
#   scripts/mutate.sh cpp lua           only those parts
#   scripts/mutate.sh python -- --all   arguments after -- go to each part
#
# Parts and targets: cpp (core/src) 90%, lua (core/src/redis/lua) 90%,
# python (bindings/python/src/tollgate) 80%, node (bindings/node/lib) 80%.
# Each part works in a private copy under build/ and never writes the
# checkout; scripts/mutate/<part>.sh documents its own options.
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A target=([cpp]=90 [lua]=90 [python]=80 [node]=80)
# Samples (mutants per part): the stated sample of a full run, and the CI one.
declare -A full_sample=([cpp]=300 [lua]=150 [python]=120 [node]=300)
declare -A ci_sample=([cpp]=64 [lua]=16 [python]=40 [node]=40)

ci=0
parts=()
extra=()
while (($#)); do
  case $1 in
    --ci) ci=1 ;;
    --) shift; extra=("$@"); break ;;
    cpp|lua|python|node) parts+=("$1") ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "mutate.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((${#parts[@]})) || parts=(cpp lua python node)

scores=()
status=0
for part in "${parts[@]}"; do
  echo "=== mutation: $part"
  if ((${#extra[@]})); then
    args=("${extra[@]}")
  elif ((ci)); then
    args=(--sample "${ci_sample[$part]}" --min "${target[$part]}")
  else
    args=(--sample "${full_sample[$part]}" --min "${target[$part]}")
  fi
  log=$(mktemp)
  bash "scripts/mutate/$part.sh" "${args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E "^MUTATION $part " "$log" | tail -1)
  rm -f "$log"
  if [[ -z $line ]]; then
    line="MUTATION $part: no score (the run failed, status $rc)"
    status=1
  elif ((rc != 0)); then
    line="$line  BELOW TARGET ${target[$part]}% (status $rc)"
    status=1
  else
    line="$line  (target ${target[$part]}%)"
  fi
  scores+=("$line")
done

echo
echo "=== mutation scores"
printf '%s\n' "${scores[@]}"
exit $status
