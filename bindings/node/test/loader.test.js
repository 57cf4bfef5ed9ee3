'use strict';
// Finding and loading the native addon (lib/native.js) and the install
// script's choice between the prebuilt addon and a build from source
// (scripts/install.js), on temporary copies of the package: the order of
// the places looked in, what each failure says, when `npm install` builds.
// The real installs (npm, a tarball made by scripts/package-node.sh, linked
// folders, the examples) are in install.test.js.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { PACKAGE_ROOT } = require('./helpers');
const native = require('../lib/native');

const KEY = `${process.platform}-${process.arch}`;

// An addon that loads: the one these tests run with.
const ADDON = [
  process.env.TOLLGATE_NODE_ADDON,
  path.join(PACKAGE_ROOT, 'build', 'Release', 'tollgate.node'),
  native.prebuildFile(PACKAGE_ROOT),
].find((f) => f && fs.existsSync(f));

// scripts/install.js beside lib/ (not in scripts/mutate/node.sh's Stryker
// sandbox, which leaves scripts/ out).
const INSTALL_SCRIPT = fs.existsSync(path.join(PACKAGE_ROOT, 'scripts', 'install.js'));

// A copy of the package's JavaScript (lib/, scripts/, package.json) in a
// temporary folder, with no build/ and no prebuilds/.
function packageCopy(t, { packageJson = true } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-loader-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(PACKAGE_ROOT, 'lib'), path.join(dir, 'lib'), { recursive: true });
  if (INSTALL_SCRIPT) fs.cpSync(path.join(PACKAGE_ROOT, 'scripts'), path.join(dir, 'scripts'), { recursive: true });
  if (packageJson) fs.copyFileSync(path.join(PACKAGE_ROOT, 'package.json'), path.join(dir, 'package.json'));
  return dir;
}

// Writes a file anew (a new inode: an addon this process loaded is mapped,
// and writing over it in place would crash the process).
function put(dir, rel, from) {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.rmSync(file, { force: true });
  if (from === 'broken') fs.writeFileSync(file, 'not an ELF file');
  else fs.copyFileSync(from, file);
  return file;
}

// lib/index.js of a copy, loaded afresh in this process; the error or null.
function loadIndex(dir, env = {}) {
  const saved = { ...process.env };
  delete process.env.TOLLGATE_NODE_ADDON;
  Object.assign(process.env, env);
  for (const k of Object.keys(require.cache)) if (k.startsWith(dir)) delete require.cache[k];
  try {
    const mod = require(path.join(dir, 'lib', 'index.js'));
    assert.equal(typeof mod.Limiter, 'function');
    return null;
  } catch (e) {
    return e;
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

const needAddon = !ADDON && 'no built addon (npm install in bindings/node first)';
const needScript = !INSTALL_SCRIPT && 'no scripts/install.js beside lib/';

test('the places looked in, in order: TOLLGATE_NODE_ADDON, build/, then prebuilds/<platform>-<arch>', () => {
  const root = path.join(path.sep, 'pkg');
  assert.equal(native.prebuildFile(root, 'linux', 'arm64'), path.join(root, 'prebuilds', 'linux-arm64', 'tollgate.node'));
  assert.equal(native.prebuildFile(root), path.join(root, 'prebuilds', KEY, 'tollgate.node'));
  const builds = ['Release', 'Debug', 'RelWithDebInfo'].map((b) => path.join(root, 'build', b, 'tollgate.node'));
  assert.deepEqual(native.candidates(root, {}, 'linux', 'x64'), [...builds, path.join(root, 'prebuilds', 'linux-x64', 'tollgate.node')]);
  assert.deepEqual(native.candidates(root, { TOLLGATE_NODE_ADDON: '/x.node' }, 'darwin', 'arm64'),
    ['/x.node', ...builds, path.join(root, 'prebuilds', 'darwin-arm64', 'tollgate.node')]);
  assert.deepEqual(native.candidates(root), native.candidates(root, process.env, process.platform, process.arch));
});

test('when npm install builds from source whatever prebuilt addon there is', () => {
  const reason = native.buildFromSourceRequested;
  assert.equal(reason({}), null);
  assert.equal(reason({ TOLLGATE_BUILD_FROM_SOURCE: '1' }), 'TOLLGATE_BUILD_FROM_SOURCE is set');
  assert.equal(reason({ TOLLGATE_BUILD_FROM_SOURCE: 'yes ' }), 'TOLLGATE_BUILD_FROM_SOURCE is set');
  for (const off of ['', '0', 'off', 'OFF', 'false', 'no', 'n', ' 0 '])
    assert.equal(reason({ TOLLGATE_BUILD_FROM_SOURCE: off, TOLLGATE_TESTING: off, TOLLGATE_NODE_WERROR: off }), null, off);
  assert.equal(reason({ npm_config_build_from_source: 'true' }), 'npm --build-from-source');
  assert.equal(reason({ npm_config_build_from_source: 'tollgate' }), 'npm --build-from-source');
  assert.equal(reason({ npm_config_build_from_source: 'other-package' }), null);
  assert.equal(reason({ npm_config_build_from_source: '' }), null);
  assert.equal(reason({ TOLLGATE_TESTING: 'ON' }), 'TOLLGATE_TESTING=ON (a build option)');
  assert.equal(reason({ TOLLGATE_NODE_WERROR: 'ON' }), 'TOLLGATE_NODE_WERROR=ON (a build option)');
  assert.equal(reason({ TOLLGATE_BUILD_FROM_SOURCE: '1', TOLLGATE_TESTING: 'ON' }), 'TOLLGATE_BUILD_FROM_SOURCE is set');
  assert.equal(reason({ TOLLGATE_TESTING: 1 }), null); // environment values are strings
  assert.equal(reason(), native.buildFromSourceRequested(process.env));
});

test('the prebuilt addon loads when nothing else is there; a build of its own comes first', { skip: needAddon }, (t) => {
  const dir = packageCopy(t);
  const pre = path.join('prebuilds', KEY, 'tollgate.node');
  put(dir, pre, ADDON);
  assert.equal(loadIndex(dir), null);
  // A build of the package's own wins over a prebuilt addon; one that does
  // not load is passed over for the next place.
  put(dir, pre, 'broken');
  put(dir, path.join('build', 'Debug', 'tollgate.node'), ADDON);
  assert.equal(loadIndex(dir), null);
  put(dir, path.join('build', 'Release', 'tollgate.node'), 'broken');
  put(dir, pre, ADDON);
  fs.rmSync(path.join(dir, 'build', 'Debug'), { recursive: true });
  assert.equal(loadIndex(dir), null);
  // None loads: the first one's error is the one reported. (A fresh copy:
  // a path this process loaded an addon from loads it again, whatever the
  // file holds now.)
  const none = packageCopy(t);
  put(none, pre, 'broken');
  put(none, path.join('build', 'Release', 'tollgate.node'), 'broken');
  assert.match(loadIndex(none).message, /^tollgate: cannot load the native addon .*build\/Release\/tollgate\.node: .*\nthis package's own build/);
  // Directly, with explicit options.
  assert.equal(typeof native.loadNative(dir, { env: {}, platform: process.platform, arch: process.arch }).check, 'function');
});

test('no addon anywhere: says there is no prebuilt addon for the platform, the install script did not run, and what to run', (t) => {
  const dir = packageCopy(t);
  const e = loadIndex(dir);
  assert.ok(e instanceof Error);
  const looked = native.candidates(dir, {});
  assert.equal(e.message,
    `tollgate: no native addon for ${KEY} (looked in ${looked.join(', ')}). This package carries no prebuilt addon ` +
    `for ${KEY}, and none was built when it was installed: its install script, which builds the addon from source ` +
    'when no prebuilt one fits, did not run (npm install --ignore-scripts, ignore-scripts=true in .npmrc, or a ' +
    'package manager that skips install scripts). Run `npm rebuild tollgate` in your project (it needs CMake >= 3.25, ' +
    'a C++20 compiler, the hiredis and OpenSSL 3 development files (Debian/Ubuntu: apt-get install g++ cmake ' +
    'libhiredis-dev libssl-dev)).');
  // Another platform's prebuilt addon is not this one's.
  if (ADDON) put(dir, path.join('prebuilds', 'sunos-mips', 'tollgate.node'), ADDON);
  assert.throws(() => native.loadNative(dir, { env: {}, platform: 'linux', arch: 'riscv64' }),
    (err) => err.message.startsWith('tollgate: no native addon for linux-riscv64 (looked in ') &&
      err.message.includes(path.join(dir, 'prebuilds', 'linux-riscv64', 'tollgate.node')) &&
      err.message.includes('carries no prebuilt addon for linux-riscv64'));
});

test('bundled away from its package (webpack, a Next.js build): says so and how to keep it external', (t) => {
  const check = (e) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /^tollgate: this copy of tollgate's JavaScript runs from .*, not from the tollgate package, so it cannot find its native addon \(looked in /);
    assert.match(e.message, /A bundler \(webpack, as in a Next\.js build\) bundled it/);
    assert.match(e.message, /serverExternalPackages: \['tollgate'\]/);
    assert.match(e.message, /npm install --install-links <folder>/);
    assert.doesNotMatch(e.message, /ignore-scripts/);
  };
  // No tollgate package.json above lib/: what webpack's output looks like.
  const loose = packageCopy(t, { packageJson: false });
  check(loadIndex(loose));
  // Another package's package.json, or an unreadable one.
  fs.writeFileSync(path.join(loose, 'package.json'), '{"name":"my-app"}');
  check(loadIndex(loose));
  fs.writeFileSync(path.join(loose, 'package.json'), '{');
  check(loadIndex(loose));
  // Inside a webpack bundle __webpack_require__ is defined.
  const dir = packageCopy(t);
  globalThis.__webpack_require__ = () => {};
  try {
    check(loadIndex(dir));
  } finally {
    delete globalThis.__webpack_require__;
  }
  assert.doesNotMatch(loadIndex(dir).message, /bundled/);
});

test('a prebuilt addon that does not load: its own error, what it needs, and how to build from source', (t) => {
  const dir = packageCopy(t);
  put(dir, path.join('prebuilds', 'linux-x64', 'tollgate.node'), 'broken');
  const e = (() => {
    try {
      native.loadNative(dir, { env: {}, platform: 'linux', arch: 'x64' });
    } catch (err) {
      return err;
    }
  })();
  assert.equal(e.code, 'ERR_DLOPEN_FAILED');
  const file = path.join(dir, 'prebuilds', 'linux-x64', 'tollgate.node');
  assert.ok(e.message.startsWith(`tollgate: cannot load the native addon ${file}: `), e.message);
  assert.ok(e.message.endsWith(
    '\nthe prebuilt addon for linux-x64 does not load on this system (it needs glibc >= 2.34, the C++ runtime of ' +
    'GCC >= 12 (libstdc++.so.6) and OpenSSL 3 (libssl.so.3, libcrypto.so.3)). Build it from source instead: ' +
    '`TOLLGATE_BUILD_FROM_SOURCE=1 npm rebuild tollgate` in your project (needs ' + native.SOURCE_NEEDS + ').'), e.message);
  // A platform whose needs are not listed: no list.
  put(dir, path.join('prebuilds', 'linux-arm64', 'tollgate.node'), 'broken');
  assert.throws(() => native.loadNative(dir, { env: {}, platform: 'linux', arch: 'arm64' }),
    (err) => err.message.includes('\nthe prebuilt addon for linux-arm64 does not load on this system. Build it from source'));
});

test('a build of its own or TOLLGATE_NODE_ADDON that does not load: said which, with its own error', (t) => {
  const dir = packageCopy(t);
  const own = put(dir, path.join('build', 'RelWithDebInfo', 'tollgate.node'), 'broken');
  assert.throws(() => native.loadNative(dir, { env: {} }), (e) =>
    e.code === 'ERR_DLOPEN_FAILED' && e.message.startsWith(`tollgate: cannot load the native addon ${own}: `) &&
    e.message.endsWith("\nthis package's own build does not load: rebuild it with `npm rebuild tollgate` in your " +
      'project (or `npm run rebuild` in a checkout).'));
  const env = put(dir, 'other.node', 'broken');
  // The first failure is the one reported.
  assert.throws(() => native.loadNative(dir, { env: { TOLLGATE_NODE_ADDON: env } }), (e) =>
    e.message.startsWith(`tollgate: cannot load the native addon ${env}: `) &&
    e.message.endsWith('\nthis is the addon TOLLGATE_NODE_ADDON names.'));
});

// ---- scripts/install.js ----------------------------------------------------

// A stand-in cmake-js (with the two header packages beside it) in the
// copy's node_modules: records its arguments and writes the addon, or fails.
function fakeCmakeJs(dir, { fail = false } = {}) {
  const mods = path.join(dir, 'node_modules');
  const write = (rel, text) => {
    fs.mkdirSync(path.dirname(path.join(mods, rel)), { recursive: true });
    fs.writeFileSync(path.join(mods, rel), text);
  };
  write('cmake-js/package.json', JSON.stringify({ name: 'cmake-js', version: '7.4.0', bin: { 'cmake-js': 'bin/cmake-js' } }));
  write('cmake-js/bin/cmake-js', `
    const fs = require('node:fs'), path = require('node:path');
    fs.writeFileSync(path.join(process.cwd(), 'cmake-js-args.json'), JSON.stringify(process.argv.slice(2)));
    if (${fail}) { console.error('CMake Error: no C++ compiler'); process.exit(3); }
    fs.mkdirSync('build/Release', { recursive: true });
    fs.copyFileSync(${JSON.stringify(ADDON || '')}, 'build/Release/tollgate.node');`);
  for (const name of ['node-addon-api', 'node-api-headers']) {
    write(`${name}/package.json`, JSON.stringify({ name, version: '8.0.0', main: 'index.js' }));
    write(`${name}/index.js`, '');
  }
}

function runInstall(dir, env = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|TOLLGATE_)/i.test(k)));
  return spawnSync(process.execPath, [path.join(dir, 'scripts', 'install.js')], {
    cwd: dir, env: { ...clean, ...env }, encoding: 'utf8', timeout: 30000,
  });
}

test('install script: a prebuilt addon that loads here means nothing to build', { skip: needAddon || needScript }, (t) => {
  const dir = packageCopy(t);
  put(dir, path.join('prebuilds', KEY, 'tollgate.node'), ADDON);
  fakeCmakeJs(dir);
  const r = runInstall(dir);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `tollgate: using the prebuilt addon ${path.join('prebuilds', KEY, 'tollgate.node')} (nothing to build)\n`);
  assert.ok(!fs.existsSync(path.join(dir, 'cmake-js-args.json')), 'cmake-js ran');
  assert.ok(!fs.existsSync(path.join(dir, 'build')));
});

test('install script: no prebuilt addon, a broken one, or a build asked for: cmake-js compile', { skip: needAddon || needScript }, (t) => {
  const built = (r, dir, reason) => {
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.equal(r.stdout,
      `tollgate: building the addon from source: ${reason}\n` +
      `tollgate: built ${path.join(dir, 'build', 'Release', 'tollgate.node')}\n`);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'cmake-js-args.json'), 'utf8')), ['compile']);
    assert.equal(loadIndex(dir), null);
  };
  let dir = packageCopy(t);
  fakeCmakeJs(dir);
  built(runInstall(dir), dir, `no prebuilt addon for ${KEY}`);

  dir = packageCopy(t);
  fakeCmakeJs(dir);
  put(dir, path.join('prebuilds', KEY, 'tollgate.node'), 'broken');
  const r = runInstall(dir);
  assert.match(r.stdout, new RegExp(`^tollgate: building the addon from source: the prebuilt addon ${path.join('prebuilds', KEY, 'tollgate.node')} does not load here \\(Error: .*\\)\n`));
  built(r, dir, r.stdout.split('\n')[0].slice('tollgate: building the addon from source: '.length));

  for (const [env, reason] of [
    [{ TOLLGATE_BUILD_FROM_SOURCE: '1' }, 'TOLLGATE_BUILD_FROM_SOURCE is set'],
    [{ TOLLGATE_TESTING: 'ON' }, 'TOLLGATE_TESTING=ON (a build option)'],
    [{ npm_config_build_from_source: 'true' }, 'npm --build-from-source'],
  ]) {
    dir = packageCopy(t);
    fakeCmakeJs(dir);
    put(dir, path.join('prebuilds', KEY, 'tollgate.node'), ADDON);
    built(runInstall(dir, env), dir, reason);
  }
});

test('install script: a build that fails says what it needs', { skip: needScript }, (t) => {
  const dir = packageCopy(t);
  fakeCmakeJs(dir, { fail: true });
  const r = runInstall(dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /CMake Error: no C\+\+ compiler/);
  assert.ok(r.stderr.endsWith(
    `tollgate: building the addon from source failed (cmake-js compile in ${dir}: 3). It needs ${native.SOURCE_NEEDS}; ` +
    "CMake's message above says which is missing.\n"), r.stderr);
});
