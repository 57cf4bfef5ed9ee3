#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, skipping
# what is already there. Run as root (or with sudo available).
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config git
          catch2 nlohmann-json3-dev clang-format python3
          libhiredis-dev libssl-dev openssl redis-server redis-tools
          python3-dev python3-venv clang libfuzzer-14-dev
          libclang-rt-14-dev)

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

# Node.js (>= 18) and npm for the Node package: Debian 12 ships 18.19. A
# machine that already has node and npm (e.g. from nodesource) keeps them.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "deps: installing nodejs npm"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends nodejs npm >/dev/null
fi
# libuv's header for the Node addon's loop driver: Node's own headers carry
# it (nodesource's nodejs package); Debian's nodejs does not, libuv1-dev does.
if [[ ! -f /usr/include/node/uv.h && ! -f /usr/local/include/node/uv.h &&
      ! -f /usr/include/uv.h ]]; then
  echo "deps: installing libuv1-dev"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends libuv1-dev >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 18)); then
  echo "deps: Node.js $(node --version) is too old; tollgate needs >= 18" >&2
  exit 1
fi
