#!/usr/bin/env bash
# Makes the Node package as it is published: an npm tarball that carries a
# prebuilt addon for this platform (linux-x64 here), so that installing it
# needs no compiler, and the C sources, so that it builds from source where
# the prebuilt addon does not fit.
#
#   scripts/package-node.sh                 # tarball in dist/
#   scripts/package-node.sh --dist DIR      # tarball in DIR
#
# 1. Builds the addon: Release, Node-API 8 (one binary for every Node.js
#    >= 18), the tollgate C library linked in statically, hiredis linked in
#    from libhiredis.a (TOLLGATE_NODE_STATIC_HIREDIS), no test-only code, in
#    build/node-prebuild (the development build in bindings/node/build is
#    left alone).
# 2. Checks it: the shared libraries it needs at run time are glibc, the C++
#    runtime (libstdc++, which Node.js itself loads) and OpenSSL 3
#    (libssl.so.3, libcrypto.so.3), nothing else; it imports no Node-API
#    function newer than version 8; the glibc and libstdc++ versions it
#    needs are at most those lib/native.js states; it loads and decides.
# 3. Puts it in bindings/node/prebuilds/<platform>-<arch>/tollgate.node,
#    where lib/native.js looks for it, and runs `npm pack` (prepack copies
#    the C sources into native-src/) into dist/. The prebuilt addon stays in
#    bindings/node/prebuilds/ (ignored by git): a later `npm pack` in
#    bindings/node ships it too, so make tarballs with this script.
#
# Needs what a source build needs (bash scripts/deps.sh) and npm.
# NICE (default 10) and JOBS (default 2) set how hard it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist=$root/dist
while (($#)); do
  case $1 in
    --dist) dist=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "package-node.sh: unknown argument '$1' (--dist DIR)" >&2; exit 64 ;;
  esac
done
pkg=$root/bindings/node
build=$root/build/node-prebuild
nice_n=${NICE:-10}
jobs=${JOBS:-2}
mkdir -p "$root/build"
key=$(node -p 'process.platform + "-" + process.arch')
log() { echo "package-node: $*"; }

# cmake-js and the Node-API headers: the package's own (locked) dependencies.
if [ ! -f "$pkg/node_modules/cmake-js/package.json" ]; then
  log "npm ci --ignore-scripts in bindings/node (the build tools)"
  (cd "$pkg" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

log "building the addon for $key (Release, Node-API 8, hiredis static) in ${build#"$root"/}"
# The build options are set here, whatever the caller's environment says.
(cd "$pkg" && env -u TOLLGATE_TESTING -u TOLLGATE_NODE_WERROR -u TOLLGATE_NODE_STATIC_HIREDIS \
  nice -n "$nice_n" node node_modules/cmake-js/bin/cmake-js compile --out "$build" --config Release \
  --parallel "$jobs" --CDTOLLGATE_TESTING=OFF --CDTOLLGATE_NODE_WERROR=ON \
  --CDTOLLGATE_NODE_STATIC_HIREDIS=ON >"$build.log" 2>&1) ||
  { tail -40 "$build.log"; echo "package-node.sh: the build failed (log: $build.log)" >&2; exit 1; }
addon=$build/Release/tollgate.node
[ -f "$addon" ] || { echo "package-node.sh: no addon at $addon" >&2; exit 1; }
# The command-line tool, built with the addon (docs/cli.md): the package's
# `tollgate` bin runs it.
cli=$build/Release/tollgate
[ -x "$cli" ] || { echo "package-node.sh: no command-line tool at $cli" >&2; exit 1; }

log "checking it"
fail() { echo "package-node.sh: $*" >&2; exit 1; }
if [ "$(uname -s)" = Linux ]; then
  runtime_libs() {
    local needed lib
    needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
    for lib in $needed; do
      case $lib in
        libc.so.6|libm.so.6|ld-linux-*|libstdc++.so.6|libgcc_s.so.1|libssl.so.3|libcrypto.so.3) ;;
        *) fail "$2 needs $lib at run time (allowed: glibc, libstdc++, libgcc_s, OpenSSL 3)" ;;
      esac
    done
    echo "$needed"
  }
  needed=$(runtime_libs "$addon" "the addon")
  log "  needs at run time: $needed"
  log "  the command-line tool needs at run time: $(runtime_libs "$cli" "the command-line tool")"
  "$cli" --version >/dev/null || fail "the command-line tool does not run"
  # The newest symbol versions it asks for, against what lib/native.js states.
  newest() { objdump -T "$addon" | grep -o "$1[0-9.]*" | sed "s/^$1//" | sort -uV | tail -1; }
  glibc=$(newest GLIBC_)
  glibcxx=$(newest GLIBCXX_)
  log "  newest symbol versions: GLIBC_$glibc, GLIBCXX_$glibcxx"
  [ "$(printf '%s\n' "$glibc" 2.34 | sort -V | tail -1)" = 2.34 ] ||
    fail "it needs glibc $glibc, newer than the 2.34 lib/native.js states"
  # GCC 12's libstdc++ is GLIBCXX_3.4.30.
  [ -z "$glibcxx" ] || [ "$(printf '%s\n' "$glibcxx" 3.4.30 | sort -V | tail -1)" = 3.4.30 ] ||
    fail "it needs libstdc++ GLIBCXX_$glibcxx, newer than GCC 12's (3.4.30) that lib/native.js states"
fi
# Node-API: every napi_/node_api_ function it imports is in version 8 or
# earlier (node-api-headers lists them by version).
(cd "$pkg" && node -e '
  const syms = require("node-api-headers/symbols.js");
  const ok = new Set();
  for (let v = 1; v <= 8; v++) {
    const s = syms["v" + v];
    for (const list of [s.js_native_api_symbols, s.node_api_symbols]) for (const f of list || []) ok.add(f);
  }
  const out = require("node:child_process").execFileSync("nm", ["-D", "--undefined-only", process.argv[1]], { encoding: "utf8" });
  const used = [...out.matchAll(/\b((?:napi|node_api)_\w+)/g)].map((m) => m[1]);
  const newer = [...new Set(used)].filter((f) => !ok.has(f));
  if (!used.length) { console.error("package-node.sh: no Node-API imports found"); process.exit(1); }
  if (newer.length) { console.error("package-node.sh: Node-API functions newer than version 8: " + newer.join(", ")); process.exit(1); }
  console.log("package-node:   Node-API: " + new Set(used).size + " functions, all in version 8 or earlier");
' "$addon")
TOLLGATE_NODE_ADDON=$addon node -e '
  const t = require(process.argv[1]);
  const lim = new t.Limiter();
  const p = t.policy(2, "1h");
  const ds = [1, 2, 3].map(() => lim.checkSync("k", p).allowed).join(",");
  if (ds !== "true,true,false" || t._testing) { console.error("package-node.sh: the addon decided " + ds + ", testing " + t._testing); process.exit(1); }
  lim.close();
' "$pkg/lib/index.js"

dest=$pkg/prebuilds/$key
rm -rf "$pkg/prebuilds"
mkdir -p "$dest"
cp "$addon" "$dest/tollgate.node"
strip --strip-unneeded "$dest/tollgate.node"
log "  $(du -k "$dest/tollgate.node" | cut -f1) KiB: ${dest#"$root"/}/tollgate.node"
cp "$cli" "$dest/tollgate"
strip --strip-unneeded "$dest/tollgate"
log "  $(du -k "$dest/tollgate" | cut -f1) KiB: ${dest#"$root"/}/tollgate"

mkdir -p "$dist"
log "npm pack into ${dist#"$root"/}"
tarball=$(cd "$pkg" && npm pack --silent --pack-destination "$dist" | tail -n 1)
listing=$(tar -tzf "$dist/$tarball")
grep -qx "package/prebuilds/$key/tollgate.node" <<<"$listing" ||
  fail "$tarball does not carry prebuilds/$key/tollgate.node"
grep -qx "package/prebuilds/$key/tollgate" <<<"$listing" ||
  fail "$tarball does not carry prebuilds/$key/tollgate (the command-line tool)"
grep -qx "package/native-src/capi/include/tollgate.h" <<<"$listing" ||
  fail "$tarball does not carry the C sources (native-src/)"
log "$dist/$tarball ($(du -k "$dist/$tarball" | cut -f1) KiB)"
