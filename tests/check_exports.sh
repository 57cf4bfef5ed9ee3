#!/usr/bin/env bash
# Usage: check_exports.sh path/to/libtollgate.so
#
# Fails unless libtollgate.so
#   - exports only symbols whose names start with rl_ (the C ABI),
#   - exports every core entry point of tollgate.h,
#   - has the SONAME libtollgate.so.1.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 path/to/libtollgate.so" >&2
  exit 2
fi
lib=$1
if [[ ! -f $lib ]]; then
  echo "check_exports: no such file: $lib" >&2
  exit 2
fi

fail=0

# Defined dynamic symbols: "<value> <type> <name>[@[@]VERSION]". Version-node
# symbols (type A, e.g. TOLLGATE_1 from the linker version script) are not
# exports of code or data and are skipped.
mapfile -t exported < <(nm -D --defined-only "$lib" |
  awk 'NF >= 3 && $2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u)
mapfile -t version_nodes < <(nm -D --defined-only "$lib" |
  awk 'NF >= 3 && $2 == "A" { print $3 }' | sort -u)

if [[ ${#exported[@]} -eq 0 ]]; then
  echo "check_exports: $lib exports no symbols at all" >&2
  exit 1
fi

bad=()
for sym in "${exported[@]}"; do
  [[ $sym == rl_* ]] || bad+=("$sym")
done
if [[ ${#bad[@]} -gt 0 ]]; then
  echo "check_exports: FAIL: ${#bad[@]} exported symbol(s) outside the rl_ namespace:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  fail=1
fi

for node in "${version_nodes[@]}"; do
  if [[ $node != TOLLGATE_* ]]; then
    echo "check_exports: FAIL: unexpected absolute symbol $node" >&2
    fail=1
  fi
done

required=(rl_create rl_check rl_check_async rl_health rl_reset rl_destroy
  rl_block rl_unblock rl_check_keys rl_check_keys_async
  rl_strerror rl_error_name rl_last_error rl_version_number
  rl_policy_create rl_policy_parse rl_period_parse rl_policy_retain
  rl_policy_release rl_policy_get rl_options_set
  rl_lease_acquire rl_lease_renew rl_lease_release rl_lease_free
  rl_check_wait rl_lease_acquire_wait rl_set_list)
missing=()
for sym in "${required[@]}"; do
  found=0
  for e in "${exported[@]}"; do
    if [[ $e == "$sym" ]]; then found=1; break; fi
  done
  [[ $found -eq 1 ]] || missing+=("$sym")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "check_exports: FAIL: required symbol(s) not exported:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  fail=1
fi

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [[ $soname != libtollgate.so.1 ]]; then
  echo "check_exports: FAIL: SONAME is '${soname:-<none>}', expected 'libtollgate.so.1'" >&2
  fail=1
fi

if [[ $fail -ne 0 ]]; then
  echo "check_exports: all exported symbols of $lib:" >&2
  printf '  %s\n' "${exported[@]}" >&2
  exit 1
fi
echo "check_exports: OK: ${#exported[@]} rl_* symbols, SONAME $soname"
printf '  %s\n' "${exported[@]}"
