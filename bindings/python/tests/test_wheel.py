"""The binary wheel that scripts/package.sh puts in dist/ is a portable
manylinux wheel: it installs with `pip install --only-binary=:all:` into a
fresh virtualenv whose PATH has no compiler and no CMake, its extension
resolves libssl, libcrypto and libhiredis to the copies in the wheel (ldd,
and the dynamic linker's own bindings at import), and it works: the memory
store, Redis, and Redis over TLS through the bundled OpenSSL; so does its
`tollgate` console script (the command-line tool in the package, repaired
like the extension). The wheel and the sdist carry the top-level LICENSE,
and the wheel the bundled libraries' licenses.

It tests the files scripts/package.sh built (building them here would double
the suite's build time), so it runs only when told where they are:

    bash scripts/package.sh
    TOLLGATE_TEST_WHEEL=dist python -m pytest bindings/python/tests/test_wheel.py

scripts/test.sh does both. It needs `ldd` and the `openssl` command (TLS
certificates), and redis-server (conftest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import PACKAGE_ROOT, REDIS_SERVER, RedisServer, free_port, redis_command

WHEEL_DIR = os.environ.get("TOLLGATE_TEST_WHEEL", "")

pytestmark = pytest.mark.skipif(
    not WHEEL_DIR, reason="set TOLLGATE_TEST_WHEEL to the dist/ directory that scripts/package.sh filled"
)

# What a manylinux wheel may take from the system (the manylinux policies'
# library lists); everything else must resolve inside the wheel.
SYSTEM_LIBS = {
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libstdc++.so.6",
    "libgcc_s.so.1",
}
BUNDLED = ("libcrypto", "libhiredis", "libssl")
BUNDLED_RE = re.compile(r"^lib(ssl|crypto|hiredis)\b")
COMPILERS = ("cc", "c++", "gcc", "g++", "clang", "clang++", "cpp", "ld", "cmake", "ninja", "make")
BASICS = ("sh", "bash", "env", "cat", "ls", "cp", "mv", "rm", "mkdir", "uname")


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _version() -> str:
    m = re.search(r'^version = "([^"]+)"$', (PACKAGE_ROOT / "pyproject.toml").read_text(), re.M)
    assert m
    return m.group(1)


@pytest.fixture(scope="module")
def dist() -> Tuple[Path, Path]:
    """(wheel, sdist) from TOLLGATE_TEST_WHEEL: exactly one of each."""
    d = Path(WHEEL_DIR).resolve()
    wheels = sorted(d.glob("tollgate-*.whl"))
    sdists = sorted(d.glob("tollgate-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        pytest.fail("%s: expected one tollgate wheel and one sdist (bash scripts/package.sh), found %s"
                    % (d, [p.name for p in wheels + sdists]))
    return wheels[0], sdists[0]


def _wheel_tags(wheel: Path) -> Tuple[str, str, str, str]:
    name, version, py, abi, plat = wheel.name[: -len(".whl")].split("-")
    assert name == "tollgate"
    return version, py, abi, plat


def _license_spdx() -> str:
    first = (PACKAGE_ROOT / "LICENSE").read_text().splitlines()[0].strip()
    m = re.fullmatch(r"(\S+) License", first)
    assert m, first
    return m.group(1)


@pytest.mark.timeout(60)
def test_wheel_and_sdist_contents(dist: Tuple[Path, Path]) -> None:
    wheel, sdist = dist
    version, py, abi, plat = _wheel_tags(wheel)
    assert version == _version()
    assert py == abi == "cp%d%d" % sys.version_info[:2], wheel.name
    # A manylinux tag no newer than this machine's glibc, and the one that
    # docs/python.md names.
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(x86_64|aarch64)", plat)
    assert m, plat
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    gm = re.fullmatch(r"glibc (\d+)\.(\d+)", glibc)
    assert gm and (int(m.group(1)), int(m.group(2))) <= (int(gm.group(1)), int(gm.group(2))), (plat, glibc)
    docs = PACKAGE_ROOT.parents[1] / "docs" / "python.md"
    if docs.is_file():  # not in an unpacked sdist
        assert plat in docs.read_text(), "docs/python.md does not name the wheel's tag %s" % plat

    spdx = _license_spdx()
    license_bytes = (PACKAGE_ROOT / "LICENSE").read_bytes()
    info = "tollgate-%s.dist-info/" % version
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        # RECORD lists every file with its hash (package.sh repacks the
        # wheel after auditwheel to add the bundled licenses).
        record = zf.read(info + "RECORD").decode().splitlines()
        listed = set()
        for row in record:
            path, digest, _size = row.rsplit(",", 2)
            listed.add(path)
            if path == info + "RECORD":
                continue
            algo, _, want = digest.partition("=")
            assert algo == "sha256", row
            got = base64.urlsafe_b64encode(hashlib.sha256(zf.read(path)).digest()).rstrip(b"=").decode()
            assert got == want, path
        assert listed == {n for n in names if not n.endswith("/")}
        metadata = zf.read(info + "METADATA").decode()
        wheel_meta = zf.read(info + "WHEEL").decode()
        assert "Tag: %s-%s-%s" % (py, abi, plat) in wheel_meta.splitlines()
        assert re.search(r"^(License: %s|License-Expression: %s)$" % (spdx, spdx), metadata, re.M), metadata[:600]
        assert zf.read(info + "licenses/LICENSE") == license_bytes
        # The bundled libraries' licenses: OpenSSL's (Apache-2.0) and
        # hiredis's (BSD-3-Clause), from their Debian packages.
        bundled_docs = {n[len(info + "licenses/bundled/"):] for n in names if n.startswith(info + "licenses/bundled/")}
        assert "README" in bundled_docs and "Apache-2.0" in bundled_docs, bundled_docs
        copyrights = [zf.read(info + "licenses/bundled/" + n).decode() for n in bundled_docs if n.endswith(".copyright")]
        assert any("Upstream-Name: OpenSSL" in c for c in copyrights)
        assert any("Upstream-Name: hiredis" in c and "BSD-3-Clause" in c for c in copyrights)
        # tollgate.libs/ holds exactly the three libraries, renamed by
        # auditwheel (libssl-<hash>.so.3, ...).
        libs = sorted(n.split("/", 1)[1] for n in names if n.startswith("tollgate.libs/") and not n.endswith("/"))
        assert sorted(re.match(r"(lib[a-z]+)-[0-9a-f]{8}\.so", n).group(1) for n in libs) == list(BUNDLED), libs
        # The command-line tool, executable (pip keeps the mode it has here).
        tool = zf.getinfo("tollgate/_bin/tollgate")
        assert (tool.external_attr >> 16) & 0o111, oct(tool.external_attr >> 16)
        # Not a stale wheel: its Python files are this tree's.
        src = PACKAGE_ROOT / "src" / "tollgate"
        for f in sorted(src.iterdir()):
            if f.is_file() and f.suffix in (".py", ".pyi", ".typed"):
                assert zf.read("tollgate/" + f.name) == f.read_bytes(), "%s differs from %s: rebuild dist/" % (f.name, wheel.name)

    assert sdist.name == "tollgate-%s.tar.gz" % version
    with tarfile.open(sdist) as tar:
        top = "tollgate-%s/" % version
        member = tar.getmember(top + "LICENSE")
        assert member.isfile(), "LICENSE in the sdist is a link, not the file"
        f = tar.extractfile(member)
        assert f is not None and f.read() == license_bytes
        f = tar.extractfile(top + "PKG-INFO")
        assert f is not None
        assert re.search(r"^(License: %s|License-Expression: %s)$" % (spdx, spdx), f.read().decode(), re.M)


class Installed:
    def __init__(self, venv: Path, path: str, env: Dict[str, str], ext: Path, libs_dir: Path, pip_log: str):
        self.venv = venv
        self.path = path
        self.env = env
        self.ext = ext
        self.libs_dir = libs_dir
        self.pip_log = pip_log


@pytest.fixture(scope="module")
def installed(dist: Tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel, installed with pip --only-binary=:all: --no-index into a
    fresh venv, by a process whose PATH has only basic commands (symlinks in
    a directory of their own) and the venv's python: no compiler, no CMake."""
    wheel, _ = dist
    tmp = tmp_path_factory.mktemp("wheel")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"

    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        target = shutil.which(name)
        if target:
            (bin_dir / name).symlink_to(target)
    for name in ("python", "python3"):
        (bin_dir / name).symlink_to(py)
    path = str(bin_dir)
    for name in COMPILERS:
        assert shutil.which(name, path=path) is None, name
    home = tmp / "home"
    home.mkdir()
    env = {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }
    try:
        log = run(
            [str(py), "-m", "pip", "install", "--only-binary=:all:", "--no-index", str(wheel)],
            env=env, cwd=str(tmp), timeout=120,
        ).stdout
    except subprocess.CalledProcessError as e:
        pytest.fail("pip install --only-binary=:all: of the wheel failed:\n" + e.stdout[-5000:])
    assert "Successfully installed tollgate-%s" % _version() in log, log
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"], env=env).stdout.strip())
    (ext,) = (site / "tollgate").glob("_native*.so")
    assert (site / "tollgate.libs").is_dir(), "no tollgate.libs/ in the venv: not a wheel that auditwheel repaired"
    yield Installed(venv, path, env, ext, site / "tollgate.libs", log)


def _ldd(lib: Path) -> List[Tuple[str, Optional[str]]]:
    """(name, resolved path or None when not found) for each line of ldd."""
    out = run(["ldd", str(lib)]).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"(\S+) => (not found|(\S+) \(0x[0-9a-f]+\))$", line)
        if m:
            rows.append((m.group(1), None if m.group(2) == "not found" else os.path.realpath(m.group(3))))
            continue
        m = re.match(r"(\S+) \(0x[0-9a-f]+\)$", line)
        assert m, "unexpected ldd line %r" % line
        rows.append((os.path.basename(m.group(1)), os.path.realpath(m.group(1)) if "/" in m.group(1) else m.group(1)))
    return rows


@pytest.mark.timeout(120)
def test_extension_resolves_only_bundled_libraries(installed: Installed) -> None:
    libs_dir = os.path.realpath(installed.libs_dir)
    bundled = sorted(installed.libs_dir.iterdir())
    assert len(bundled) == len(BUNDLED), bundled
    found = {}
    for lib in [installed.ext, *bundled]:
        for name, resolved in _ldd(lib):
            assert resolved is not None, "%s: %s not found" % (lib.name, name)
            if resolved.startswith(libs_dir + os.sep):
                found[BUNDLED_RE.match(name).group(0)] = resolved
            else:
                # Outside the venv only what manylinux allows; never a system
                # libssl, libcrypto or libhiredis.
                assert name in SYSTEM_LIBS, "%s needs %s from %s, outside the wheel" % (lib.name, name, resolved)
    assert sorted(found) == list(BUNDLED), found


@pytest.mark.timeout(120)
def test_console_script_runs_the_bundled_tool(installed: Installed, redis_server, tmp_path: Path) -> None:
    # The command-line tool in the package links libtollgate statically and
    # resolves hiredis and OpenSSL to the wheel's copies, as the extension
    # does (auditwheel repaired it too).
    tool = installed.ext.parent / "_bin" / "tollgate"
    assert os.access(tool, os.X_OK), tool
    libs_dir = os.path.realpath(installed.libs_dir)
    found = set()
    for name, resolved in _ldd(tool):
        assert resolved is not None, "tollgate: %s not found" % name
        if resolved.startswith(libs_dir + os.sep):
            found.add(BUNDLED_RE.match(name).group(0))
        else:
            assert name in SYSTEM_LIBS, "tollgate needs %s from %s, outside the wheel" % (name, resolved)
    assert sorted(found) == list(BUNDLED), found
    # `tollgate` by name from the venv's bin/ (pip's console script), with
    # no compiler or system tollgate on PATH.
    env = dict(installed.env, PATH=str(installed.venv / "bin") + os.pathsep + installed.path)

    def tollgate_cmd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tollgate", *args], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                              timeout=60)

    p = tollgate_cmd("--version")
    assert p.returncode == 0 and p.stdout.startswith("tollgate "), (p.stdout, p.stderr)
    p = tollgate_cmd("ping", "--url", redis_server.url)
    assert p.returncode == 0 and p.stdout.startswith("ok  round trip "), (p.stdout, p.stderr)
    p = tollgate_cmd("ping", "--url", "redis://127.0.0.1:%d" % free_port())
    assert p.returncode == 3, (p.stdout, p.stderr)


SMOKE = textwrap.dedent(
    """
    import json, os, sys
    import tollgate
    url, tls_url, ca, prefix = sys.argv[1:5]
    out = {"file": tollgate.__file__, "version": tollgate.LIBRARY_VERSION}
    p = tollgate.Policy(2, "1h")
    with tollgate.Limiter() as lim:
        out["memory"] = [lim.check("smoke", p).allowed for _ in range(3)]
    with tollgate.Limiter(url, key_prefix=prefix, failure_mode="error", timeout_ms=5000) as lim:
        ds = [lim.check("smoke", p) for _ in range(3)]
        out["redis"] = [[d.allowed, d.source] for d in ds]
        out["redis_server"] = lim.health()["server_version"]
    # TLS through the bundled OpenSSL: verified against the test CA, given
    # as tls_ca_file, then as SSL_CERT_FILE; refused without it.
    def tls(**options):
        try:
            with tollgate.Limiter(tls_url, key_prefix=prefix, failure_mode="error", timeout_ms=5000,
                                  connect_timeout_ms=5000, **options) as lim:
                d = lim.check("tls", p)
                return [d.allowed, d.source]
        except tollgate.Error as e:
            return [e.code, str(e)]
    out["tls_ca_file"] = tls(tls_ca_file=ca)
    out["tls_no_ca"] = tls()
    os.environ["SSL_CERT_FILE"] = ca
    out["tls_ssl_cert_file"] = tls()
    # The bundled OpenSSL's own version string (docs/production.md, "Bundled
    # libraries", shows users this snippet).
    import ctypes, glob
    libs = os.path.join(os.path.dirname(os.path.dirname(tollgate.__file__)), "tollgate.libs")
    (crypto,) = glob.glob(os.path.join(libs, "libcrypto-*.so*"))
    openssl_version = ctypes.CDLL(crypto).OpenSSL_version
    openssl_version.restype = ctypes.c_char_p
    out["openssl"] = openssl_version(0).decode()
    print(json.dumps(out))
    """
)

BINDING_RE = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: \S+ symbol `([^']+)'")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[RedisServer, int, Path]]:
    """A redis-server with a TLS port besides its plaintext one (the fixture
    pings that), its certificate self-signed for 127.0.0.1 with `openssl`."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"])
    last: Optional[Exception] = None
    for _ in range(3):  # the TLS port can be taken before redis binds it
        tls_port = free_port()
        try:
            server = RedisServer(extra=[
                "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
            ])
        except RuntimeError as e:
            last = e
            continue
        yield server, tls_port, cert
        server.stop()
        return
    raise AssertionError("no TLS redis-server: %s" % last)


@pytest.mark.timeout(120)
def test_installed_wheel_works_on_its_own_libraries(installed: Installed, redis_server, tls_redis, prefix: str,
                                                    tmp_path: Path) -> None:
    server, tls_port, cert = tls_redis
    tls_url = "rediss://127.0.0.1:%d" % tls_port
    debug = tmp_path / "ld"
    env = dict(installed.env, LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(debug))
    # From an empty directory, so nothing from this checkout is importable.
    proc = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", SMOKE, redis_server.url, tls_url, str(cert), prefix],
        env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(installed.venv.resolve()), out["file"]

    # Memory store, then Redis: the third check of a 2/h policy is denied,
    # and the keys are in the server.
    assert out["memory"] == [True, True, False]
    assert out["redis"] == [[True, "store"], [True, "store"], [False, "store"]]
    assert out["redis_server"]
    keys = redis_command(redis_server.port, "KEYS", prefix + "*")
    assert keys and all(k.startswith(prefix.encode()) for k in keys), keys
    # TLS: the bundled OpenSSL verifies the server against the given CA,
    # refuses it without one, and honours SSL_CERT_FILE.
    assert out["tls_ca_file"] == [True, "store"], out
    assert out["tls_no_ca"][0] == "RL_E_TLS" and "certificate verification failed" in out["tls_no_ca"][1], out
    assert out["tls_ssl_cert_file"] == [True, "store"], out
    # The bundled libcrypto reports the upstream version of the Debian
    # package that .dist-info/licenses/bundled/README names.
    (readme,) = installed.libs_dir.parent.glob("tollgate-*.dist-info/licenses/bundled/README")
    m = re.search(r"^  libssl3 (\d+\.\d+\.\d+)\S*:", readme.read_text(), re.M)
    assert m, readme.read_text()
    assert out["openssl"].startswith("OpenSSL %s " % m.group(1)), (out["openssl"], m.group(0))
    # docs/production.md ("Bundled libraries") states the same versions.
    production = PACKAGE_ROOT.parents[1] / "docs" / "production.md"
    if production.is_file():
        text = production.read_text()
        assert "| %s (" % m.group(1) in text, "docs/production.md does not state OpenSSL %s" % m.group(1)
        assert "| 0.14.1 |" in text and "libhiredis-" in str(sorted(p.name for p in installed.libs_dir.iterdir()))

    # The dynamic linker's own record of the import: every symbol the
    # extension takes from an OpenSSL or hiredis library, and every one the
    # bundled libssl takes from libcrypto, is bound to the copy in
    # tollgate.libs/ (the interpreter's own _ssl module may load the
    # system's OpenSSL beside it: its bindings are its own).
    libs_dir = os.path.realpath(installed.libs_dir)
    ext = os.path.realpath(installed.ext)
    ours = {ext} | {os.path.realpath(p) for p in installed.libs_dir.iterdir()}
    bound: Dict[str, set] = {}
    lines = 0
    for f in tmp_path.glob("ld.*"):
        for line in f.read_text(errors="replace").splitlines():
            m = BINDING_RE.search(line)
            if not m:
                continue
            lines += 1
            src, dst, symbol = os.path.realpath(m.group(1)), os.path.realpath(m.group(2)), m.group(3)
            if src not in ours:
                continue
            name = os.path.basename(dst)
            if BUNDLED_RE.match(name):
                assert dst.startswith(libs_dir + os.sep), "%s: %s bound to %s" % (os.path.basename(src), symbol, dst)
                bound.setdefault(os.path.basename(src) + " -> " + BUNDLED_RE.match(name).group(0), set()).add(symbol)
    assert lines > 0, "LD_DEBUG wrote no bindings"
    ext_name = os.path.basename(ext)
    for lib in BUNDLED:
        assert bound.get("%s -> %s" % (ext_name, lib)), (lib, sorted(bound))
    assert any(k.startswith("libssl-") and k.endswith("-> libcrypto") for k in bound), sorted(bound)
