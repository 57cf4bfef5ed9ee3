#!/usr/bin/env bash
# Usage: test_install.sh SOURCE_DIR WORK_DIR
#
# Builds SOURCE_DIR from scratch (Release, Ninja, warnings as errors, no
# tests/bench/examples), installs it into WORK_DIR/prefix, and checks that a
# consumer can use the installed package:
#   (a) examples/c built with make + pkg-config, run against the shared lib;
#   (b) examples/c as a standalone CMake project via find_package(tollgate);
#   (c) the installed files are all there;
#   (d) examples/c linked against libtollgate.a (tollgate::tollgate_static),
#       with no dependency on libtollgate.so at run time;
#   (e) the install is relocatable: `cmake --install --prefix` to a second
#       prefix, and the first one moved elsewhere, each still serve (a) and
#       (b) from their own files (tollgate.pc is ${pcfiledir}-relative);
#   (f) the C code blocks of README.md and docs/ marked runnable (```c run)
#       build with pkg-config against the install and run.
# WORK_DIR is deleted first. Any failure stops the script with non-zero.
set -Eeuo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 SOURCE_DIR WORK_DIR" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
work=$2
case $work in
  "" | / | "$src" | "$HOME")
    echo "test_install: refusing to use '$work' as WORK_DIR" >&2
    exit 2
    ;;
esac

step() { printf '\n=== test_install: %s\n' "$*"; }
trap 'echo "test_install: FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

step "clean $work"
rm -rf -- "$work"
mkdir -p -- "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix
# Do not let the caller's environment pick another tollgate.
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH tollgate_DIR || true

step "configure $src"
cmake -S "$src" -B "$work/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DTOLLGATE_BUILD_TESTS=OFF \
  -DTOLLGATE_BUILD_BENCH=OFF \
  -DTOLLGATE_BUILD_EXAMPLES=OFF \
  -DTOLLGATE_WERROR=ON

step "build"
cmake --build "$work/build"

step "install to $prefix"
cmake --install "$work/build"

# GNUInstallDirs gives lib, lib64 or lib/<multiarch> depending on the system.
libdir=
for d in "$prefix"/lib "$prefix"/lib64 "$prefix"/lib/*-linux-gnu*; do
  if [[ -f $d/pkgconfig/tollgate.pc ]]; then
    libdir=$d
    break
  fi
done
if [[ -z $libdir ]]; then
  echo "test_install: no tollgate.pc under $prefix:" >&2
  find "$prefix" >&2
  exit 1
fi
echo "libdir: $libdir"

step "(c) installed files"
missing=0
for f in \
  "$prefix/include/tollgate.h" \
  "$libdir/libtollgate.so" \
  "$libdir/libtollgate.so.1" \
  "$libdir/libtollgate.a" \
  "$libdir/pkgconfig/tollgate.pc" \
  "$libdir/cmake/tollgate/tollgateConfig.cmake" \
  "$libdir/cmake/tollgate/tollgateConfigVersion.cmake" \
  "$libdir/cmake/tollgate/tollgateTargets.cmake"; do
  if [[ -e $f ]]; then
    echo "  ok       $f"
  else
    echo "  MISSING  $f" >&2
    missing=1
  fi
done
if [[ $missing -ne 0 ]]; then
  echo "test_install: installed tree:" >&2
  find "$prefix" >&2
  exit 1
fi
soname=$(readelf -d "$libdir/libtollgate.so.1" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [[ $soname != libtollgate.so.1 ]]; then
  echo "test_install: SONAME of the installed library is '$soname'" >&2
  exit 1
fi

# Build the consumers from copies so the source tree stays clean.
cp -R "$src/examples/c" "$work/consumer-make"
cp -R "$src/examples/c" "$work/consumer-cmake"
rm -rf "$work/consumer-make/build" "$work/consumer-make/quickstart" \
  "$work/consumer-cmake/build" "$work/consumer-cmake/quickstart"

step "(a) make + pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
echo "pkg-config --cflags --libs tollgate: $(pkg-config --cflags --libs tollgate)"
pkg_version=$(pkg-config --modversion tollgate)
echo "pkg-config --modversion tollgate: $pkg_version"
make -C "$work/consumer-make" CFLAGS="-O2 -Werror"
LD_LIBRARY_PATH=$libdir "$work/consumer-make/quickstart"
# It must run against the installed library, not one from elsewhere.
if command -v ldd >/dev/null; then
  LD_LIBRARY_PATH=$libdir ldd "$work/consumer-make/quickstart" | grep -F "$libdir/libtollgate.so.1"
fi
unset PKG_CONFIG_PATH

step "(b) standalone CMake project + find_package(tollgate)"
cmake -S "$work/consumer-cmake" -B "$work/consumer-cmake/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="-Wall -Wextra -Werror"
cmake --build "$work/consumer-cmake/build"
# CMake puts the install libdir in the build RPATH; LD_LIBRARY_PATH as well
# in case the toolchain does not.
LD_LIBRARY_PATH=$libdir "$work/consumer-cmake/build/quickstart"

step "(d) standalone CMake project + tollgate::tollgate_static"
cmake -S "$work/consumer-cmake" -B "$work/consumer-cmake/build-static" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DQUICKSTART_STATIC=ON \
  -DCMAKE_C_FLAGS="-Wall -Wextra -Werror"
cmake --build "$work/consumer-cmake/build-static"
if readelf -d "$work/consumer-cmake/build-static/quickstart" | grep -F libtollgate; then
  echo "test_install: the static build still needs libtollgate.so" >&2
  exit 1
fi
"$work/consumer-cmake/build-static/quickstart"

# A prefix's libdir (lib, lib64 or lib/<multiarch>).
libdir_of() {
  local d
  for d in "$1"/lib "$1"/lib64 "$1"/lib/*-linux-gnu*; do
    if [[ -f $d/pkgconfig/tollgate.pc ]]; then
      echo "$d"
      return
    fi
  done
  echo "test_install: no tollgate.pc under $1" >&2
  return 1
}

step "(e) relocatable: a second prefix at install time, the first one moved"
cmake --install "$work/build" --prefix "$work/second"
mv "$prefix" "$work/moved"
for p in "$work/second" "$work/moved"; do
  pl=$(libdir_of "$p")
  export PKG_CONFIG_PATH=$pl/pkgconfig
  got=$(cd "$(pkg-config --variable=prefix tollgate)" && pwd -P)
  if [[ $got != "$(cd "$p" && pwd -P)" ]]; then
    echo "test_install: tollgate.pc under $p names prefix $got" >&2
    exit 1
  fi
  rm -rf "$work/consumer-e"
  cp -R "$src/examples/c" "$work/consumer-e"
  rm -rf "$work/consumer-e/build" "$work/consumer-e/quickstart"
  make -C "$work/consumer-e" CFLAGS="-O2 -Werror"
  LD_LIBRARY_PATH=$pl "$work/consumer-e/quickstart"
  if command -v ldd >/dev/null; then
    LD_LIBRARY_PATH=$pl ldd "$work/consumer-e/quickstart" | grep -F "$pl/libtollgate.so.1"
  fi
  unset PKG_CONFIG_PATH
  cmake -S "$work/consumer-e" -B "$work/consumer-e/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$p" \
    -DCMAKE_C_FLAGS="-Wall -Wextra -Werror"
  cmake --build "$work/consumer-e/build"
  LD_LIBRARY_PATH=$pl "$work/consumer-e/build/quickstart"
  if command -v ldd >/dev/null; then
    LD_LIBRARY_PATH=$pl ldd "$work/consumer-e/build/quickstart" | grep -F "$pl/libtollgate.so.1"
  fi
done

step "(f) the runnable C blocks of README.md and docs/ against the install"
python3 "$src/tests/run_doc_snippets.py" c --pkg-config-path \
  "$(libdir_of "$work/second")/pkgconfig" "$src/README.md" "$src"/docs/*.md

step "PASS"
