#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, skipping
# what is already there. Run as root (or with sudo available).
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config git
          catch2 nlohmann-json3-dev clang-format python3
          libhiredis-dev libssl-dev openssl redis-server redis-tools
          python3-dev python3-venv)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi
