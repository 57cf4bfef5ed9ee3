#!/usr/bin/env bash
# Builds the Python package's release files into dist/ (at the repository
# root):
#   dist/tollgate-<version>.tar.gz                       the sdist
#   dist/tollgate-<version>-cp3X-cp3X-manylinux_*.whl     a binary wheel
# The wheel is built from the sdist (what a user's pip would build), then
# repaired by auditwheel: the libraries the extension links dynamically
# (libhiredis, libssl, libcrypto) are copied into the wheel's tollgate.libs/
# under hashed names, the extension's DT_NEEDED entries and RUNPATH are
# rewritten to point there (patchelf), and the wheel gets the manylinux tag
# that this machine's glibc and the symbols used allow. docs/python.md,
# "Binary wheel", says which tag and what is bundled.
#
#   bash scripts/package.sh            # python3's CPython version
#   PYTHON=python3.12 bash scripts/package.sh
#
# Needs what a source build needs (a C++20 compiler, CMake >= 3.25, the
# hiredis and OpenSSL 3 development packages: scripts/deps.sh) and PyPI for
# build, auditwheel and patchelf (in a venv of its own under build/package/)
# and for the build requirements (scikit-build-core, pybind11).
# Runs at low priority, two compile jobs at most (CMAKE_BUILD_PARALLEL_LEVEL
# to change).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
work=$root/build/package
venv=$work/venv
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

# The tools, in a venv of their own (made with the interpreter the wheel is
# for: `python -m build` builds for the interpreter that runs it).
want_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ ! -x $venv/bin/python ]] ||
  [[ $("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') != "$want_version" ]]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check build auditwheel patchelf wheel
# auditwheel runs the patchelf from PATH: the venv's (PyPI's), not the system's.
export PATH="$venv/bin:$PATH"

rm -rf "$work/raw"
mkdir -p "$work/raw" dist
rm -f dist/tollgate-*.tar.gz dist/tollgate-*.whl

echo "package: sdist, then a wheel built from it ($("$venv/bin/python" --version))"
nice -n 10 "$venv/bin/python" -m build --outdir "$work/raw" bindings/python >"$work/build.log" 2>&1 || {
  tail -n 60 "$work/build.log" >&2
  echo "package: python -m build failed (whole log: $work/build.log)" >&2
  exit 1
}
sdists=("$work"/raw/tollgate-*.tar.gz)
wheels=("$work"/raw/tollgate-*.whl)
[[ ${#sdists[@]} -eq 1 && -f ${sdists[0]} ]] || { echo "package: expected one sdist in $work/raw" >&2; exit 1; }
[[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || { echo "package: expected one wheel in $work/raw" >&2; exit 1; }
cp "${sdists[0]}" dist/

# What the extension needs from outside the wheel, and the tag that allows.
nice -n 10 auditwheel show "${wheels[0]}"
# Without --plat, auditwheel repair tags the wheel with the most compatible
# manylinux policy the analysis allows (and fails if there is none).
rm -rf "$work/repaired"
nice -n 10 auditwheel repair --wheel-dir "$work/repaired" "${wheels[0]}"
repaired=("$work"/repaired/tollgate-*manylinux*.whl)
[[ ${#repaired[@]} -eq 1 && -f ${repaired[0]} ]] || { echo "package: auditwheel wrote no manylinux wheel" >&2; exit 1; }

# The bundled libraries' licenses travel with their binaries (OpenSSL's
# Apache-2.0, hiredis's BSD-3-Clause): each Debian package that auditwheel's
# SBOM names gives its copyright file, and the common licenses that file
# refers to, under <dist-info>/licenses/bundled/. wheel pack rewrites RECORD.
rm -rf "$work/unpacked"
wheel unpack --dest "$work/unpacked" "${repaired[0]}" >/dev/null
tree=("$work"/unpacked/tollgate-*)
"$venv/bin/python" - "${tree[0]}" <<'PY'
import json, re, shutil, sys
from pathlib import Path

tree = Path(sys.argv[1])
(info,) = tree.glob("*.dist-info")
(sbom,) = info.glob("sboms/*.cdx.json")
out = info / "licenses" / "bundled"
out.mkdir(parents=True)
readme = [
    "The shared libraries in tollgate.libs/ are copies of these Debian packages",
    "(the build machine's; auditwheel's SBOM: %s):" % sbom.relative_to(info).as_posix(),
    "",
]
seen = set()
for comp in json.loads(sbom.read_text())["components"]:
    m = re.match(r"pkg:deb/[^/]+/([^@]+)@(.+)", comp.get("purl", ""))
    if not m or m.group(1) in seen:
        continue
    pkg, version = m.groups()
    seen.add(pkg)
    copyright = Path("/usr/share/doc", pkg, "copyright")
    if not copyright.is_file():
        sys.exit("package: no %s for the bundled package %s" % (copyright, pkg))
    shutil.copyfile(copyright, out / (pkg + ".copyright"))
    text = copyright.read_text()
    licenses = sorted(set(re.findall(r"^License: (\S+)$", text, re.M)))
    readme.append("  %s %s: %s.copyright (%s)" % (pkg, version, pkg, ", ".join(licenses)))
    for name in sorted(set(re.findall(r"/usr/share/common-licenses/([A-Za-z0-9.+-]+)", text))):
        name = name.rstrip(".")
        src = Path("/usr/share/common-licenses", name)
        if src.is_file() and not (out / name).exists():
            shutil.copyfile(src, out / name)
if not seen:
    sys.exit("package: auditwheel's SBOM names no bundled Debian package")
(out / "README").write_text("\n".join(readme) + "\n")
print("package: bundled licenses:", ", ".join(sorted(p.name for p in out.iterdir())))
PY
wheel pack --dest-dir dist "${tree[0]}" >/dev/null

echo
echo "package: done"
ls -l dist/tollgate-*
