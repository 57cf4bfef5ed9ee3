'use strict';
// Finds and loads the native addon (tollgate.node). lib/index.js loads it
// with loadNative(); scripts/install.js asks prebuildFile() and
// buildFromSourceRequested() whether `npm install` must build it. The
// package's `tollgate` bin (bin/tollgate.js) finds the command-line tool
// with findCli(), in the same places.
//
// Where it may be, in order (the first that loads wins):
//   1. TOLLGATE_NODE_ADDON, a path (tests and tools);
//   2. this package's own build, build/Release (or Debug, RelWithDebInfo),
//      made by the install script when no prebuilt addon fits, or by
//      `npm run build`;
//   3. the prebuilt addon the npm tarball carries for this platform,
//      prebuilds/<platform>-<arch>/tollgate.node (scripts/package-node.sh).
//      Node-API 8, so one binary serves every Node.js >= 18.

const fs = require('node:fs');
const path = require('node:path');

const BUILDS = ['Release', 'Debug', 'RelWithDebInfo'];

// What the linux-x64 prebuild needs at run time (scripts/package-node.sh
// checks it when it makes one): said when it does not load.
const PREBUILD_NEEDS = {
  'linux-x64': 'glibc >= 2.34, the C++ runtime of GCC >= 12 (libstdc++.so.6) and OpenSSL 3 (libssl.so.3, libcrypto.so.3)',
};

const SOURCE_NEEDS = 'CMake >= 3.25, a C++20 compiler, the hiredis and OpenSSL 3 development files ' +
  '(Debian/Ubuntu: apt-get install g++ cmake libhiredis-dev libssl-dev)';

function platformKey(platform, arch) {
  return `${platform}-${arch}`;
}

function prebuildFile(root, platform = process.platform, arch = process.arch) {
  return path.join(root, 'prebuilds', platformKey(platform, arch), 'tollgate.node');
}

function candidates(root, env = process.env, platform = process.platform, arch = process.arch) {
  const list = [];
  if (env.TOLLGATE_NODE_ADDON) list.push(env.TOLLGATE_NODE_ADDON);
  for (const b of BUILDS) list.push(path.join(root, 'build', b, 'tollgate.node'));
  list.push(prebuildFile(root, platform, arch));
  return list;
}

function isOn(value) {
  return typeof value === 'string' && !/^(|0|off|false|no|n)$/i.test(value.trim());
}

// npm install builds from source, whatever prebuilt addon there is, when
// asked to (TOLLGATE_BUILD_FROM_SOURCE=1, or npm's --build-from-source) or
// when a build option is set (TOLLGATE_TESTING, TOLLGATE_NODE_WERROR: they
// only mean something to a build). Returns the reason, or null.
function buildFromSourceRequested(env = process.env) {
  if (isOn(env.TOLLGATE_BUILD_FROM_SOURCE)) return 'TOLLGATE_BUILD_FROM_SOURCE is set';
  const npmFlag = env.npm_config_build_from_source;
  if (npmFlag === 'true' || npmFlag === 'tollgate') return 'npm --build-from-source';
  for (const name of ['TOLLGATE_TESTING', 'TOLLGATE_NODE_WERROR']) {
    if (isOn(env[name])) return `${name}=${env[name]} (a build option)`;
  }
  return null;
}

// Is root the tollgate package (its package.json), or did a bundler move
// this file away from it?
function isPackageRoot(root) {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).name === 'tollgate';
  } catch {
    return false;
  }
}

function notFoundMessage(root, tried, opts) {
  const key = platformKey(opts.platform, opts.arch);
  const looked = ` (looked in ${tried.join(', ')})`;
  if (opts.bundled || !isPackageRoot(root)) {
    return (
      `tollgate: this copy of tollgate's JavaScript runs from ${root}, not from the tollgate package, ` +
      `so it cannot find its native addon${looked}. A bundler (webpack, as in a Next.js build) bundled it: ` +
      'load tollgate with Node\'s own require instead. Next.js: serverExternalPackages: [\'tollgate\'] in ' +
      'next.config (Next.js 14: experimental.serverComponentsExternalPackages); a package linked from outside ' +
      'the project (npm install <folder>, "file:" dependencies) is bundled even so, so install it with ' +
      '`npm install --install-links <folder>` or from a tarball. Other bundlers: mark tollgate as external.'
    );
  }
  return (
    `tollgate: no native addon for ${key}${looked}. This package carries no prebuilt addon for ${key}, ` +
    'and none was built when it was installed: its install script, which builds the addon from source when ' +
    'no prebuilt one fits, did not run (npm install --ignore-scripts, ignore-scripts=true in .npmrc, or a ' +
    'package manager that skips install scripts). Run `npm rebuild tollgate` in your project ' +
    `(it needs ${SOURCE_NEEDS}).`
  );
}

// A candidate that exists but does not load: its own error (code kept),
// with what it was and what to do.
function explainLoadError(err, file, root, opts) {
  if (!err || typeof err.message !== 'string') return err;
  const key = platformKey(opts.platform, opts.arch);
  let hint;
  if (file === prebuildFile(root, opts.platform, opts.arch)) {
    const needs = PREBUILD_NEEDS[key];
    hint =
      `the prebuilt addon for ${key} does not load on this system` +
      (needs ? ` (it needs ${needs})` : '') +
      '. Build it from source instead: `TOLLGATE_BUILD_FROM_SOURCE=1 npm rebuild tollgate` in your project ' +
      `(needs ${SOURCE_NEEDS}).`;
  } else if (file === opts.env.TOLLGATE_NODE_ADDON) {
    hint = 'this is the addon TOLLGATE_NODE_ADDON names.';
  } else {
    hint = 'this package\'s own build does not load: rebuild it with `npm rebuild tollgate` in your project ' +
      '(or `npm run rebuild` in a checkout).';
  }
  err.message = `tollgate: cannot load the native addon ${file}: ${err.message}\n${hint}`;
  return err;
}

// Loads the addon for the package at root. opts: env, platform, arch (this
// process's by default) and bundled (lib/index.js knows when webpack ran).
function loadNative(root, opts = {}) {
  const o = {
    env: opts.env || process.env,
    platform: opts.platform || process.platform,
    arch: opts.arch || process.arch,
    bundled: opts.bundled === true,
  };
  const tried = candidates(root, o.env, o.platform, o.arch);
  let firstError = null;
  for (const file of tried) {
    if (!fs.existsSync(file)) continue;
    try {
      return require(file);
    } catch (e) {
      firstError = firstError || explainLoadError(e, file, root, o);
    }
  }
  if (firstError) throw firstError;
  throw new Error(notFoundMessage(root, tried, o));
}

// ---- The command-line tool (docs/cli.md) ------------------------------------

// Where the `tollgate` executable may be, in order: TOLLGATE_NODE_CLI (a
// path); this package's own build, beside the addon (CMakeLists.txt builds
// it with the addon: build/Release/tollgate); a prebuilt one beside the
// prebuilt addon (prebuilds/<platform>-<arch>/tollgate).
function cliCandidates(root, env = process.env, platform = process.platform, arch = process.arch) {
  const exe = platform === 'win32' ? 'tollgate.exe' : 'tollgate';
  const list = [];
  if (env.TOLLGATE_NODE_CLI) list.push(env.TOLLGATE_NODE_CLI);
  for (const b of BUILDS) list.push(path.join(root, 'build', b, exe));
  list.push(path.join(root, 'prebuilds', platformKey(platform, arch), exe));
  return list;
}

function isExecutableFile(file) {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// The command-line tool of the package at root: { file } when one is
// there, else { error } saying where it looked and how to build it.
function findCli(root, opts = {}) {
  const env = opts.env || process.env;
  const platform = opts.platform || process.platform;
  const arch = opts.arch || process.arch;
  const tried = cliCandidates(root, env, platform, arch);
  const file = tried.find(isExecutableFile);
  if (file) return { file };
  if (env.TOLLGATE_NODE_CLI)
    return { error: `tollgate: TOLLGATE_NODE_CLI names ${env.TOLLGATE_NODE_CLI}, which is not an executable file` };
  return {
    error:
      `tollgate: the command-line tool is not built in this install of the package (looked in ${tried.join(', ')}). ` +
      'It is built from source with the addon; a prebuilt addon comes without it, and an install with ' +
      '--ignore-scripts builds nothing. Build it with `TOLLGATE_BUILD_FROM_SOURCE=1 npm rebuild tollgate` in your ' +
      `project (it needs ${SOURCE_NEEDS}).`,
  };
}

module.exports = {
  PREBUILD_NEEDS,
  SOURCE_NEEDS,
  buildFromSourceRequested,
  candidates,
  cliCandidates,
  findCli,
  loadNative,
  prebuildFile,
};
