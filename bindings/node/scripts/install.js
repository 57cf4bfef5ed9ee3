'use strict';
// The package's install script (`npm install` runs it; so does `npm rebuild
// tollgate`). It needs nothing but Node.js until it has to build:
//
// 1. A prebuilt addon for this platform (prebuilds/<platform>-<arch>/,
//    carried by the npm tarball) that loads here: nothing to build.
// 2. Otherwise build from source with cmake-js (`cmake-js compile`, as
//    `npm run build` does), into build/Release: the addon, and the
//    command-line tool the package's `tollgate` bin runs (a prebuilt addon
//    comes without it). cmake-js, node-addon-api and
//    node-api-headers are this package's dependencies, so npm has installed
//    them for a tarball or a registry install. npm does not install the
//    dependencies of a folder it links (`npm install <folder>`, "file:"
//    dependencies): that folder is a source checkout, and this script then
//    installs them into it from its own lockfile (`npm ci --ignore-scripts`,
//    what a developer runs there) before it builds.
//
// TOLLGATE_BUILD_FROM_SOURCE=1 (or npm's --build-from-source), and the build
// options TOLLGATE_TESTING / TOLLGATE_NODE_WERROR, skip step 1.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { SOURCE_NEEDS, buildFromSourceRequested, prebuildFile } = require('../lib/native');

const PKG = path.resolve(__dirname, '..');
// The npm that runs this script (npm sets npm_execpath; other package
// managers set theirs), else the npm on PATH.
const NPM_CLI = /(^|[\\/])npm-cli\.js$/.test(process.env.npm_execpath || '') ? process.env.npm_execpath : null;

function say(msg) {
  console.log(`tollgate: ${msg}`);
}

function fail(msg) {
  console.error(`tollgate: ${msg}`);
  process.exit(1);
}

// Loads the prebuilt addon in a child process: null when it loads, else why.
function prebuildProblem(file) {
  if (!fs.existsSync(file)) return `no prebuilt addon for ${process.platform}-${process.arch}`;
  const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', file], { encoding: 'utf8' });
  if (r.status === 0) return null;
  const why = (r.stderr || String(r.error || r.signal)).split('\n').find((l) => /Error|error:/.test(l)) || 'it does not load';
  return `the prebuilt addon ${path.relative(PKG, file)} does not load here (${why.trim()})`;
}

function resolveCmakeJs() {
  try {
    const pj = require.resolve('cmake-js/package.json', { paths: [PKG] });
    const { bin } = JSON.parse(fs.readFileSync(pj, 'utf8'));
    const rel = typeof bin === 'string' ? bin : bin['cmake-js'];
    // node-addon-api and node-api-headers come with it (same dependencies).
    require.resolve('node-addon-api', { paths: [PKG] });
    require.resolve('node-api-headers', { paths: [PKG] });
    return path.join(path.dirname(pj), rel);
  } catch {
    return null;
  }
}

// The environment for a nested npm: the parent npm's lifecycle variables
// out (they would make it install globally, save, link, ...), the ones that
// say where and how to reach the registry kept.
function npmEnv() {
  const keep = /^npm_config_(cache|userconfig|globalconfig|registry|@[^:]+:registry|proxy|https_proxy|noproxy|cafile|ca|strict_ssl|offline|prefer_offline|prefer_online|fetch_[a-z_]+|maxsockets|loglevel)$/i;
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) || keep.test(k)) env[k] = v;
  return env;
}

function installBuildTools() {
  const lock = fs.existsSync(path.join(PKG, 'package-lock.json'));
  const args = lock
    ? ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error']
    : ['install', '--ignore-scripts', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error'];
  say(`its build tools (cmake-js, node-addon-api, node-api-headers) are not installed in ${PKG}, ` +
    `a folder npm linked without installing its dependencies: npm ${args.join(' ')} there`);
  const cmd = NPM_CLI ? process.execPath : process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(cmd, NPM_CLI ? [NPM_CLI, ...args] : args, { cwd: PKG, env: npmEnv(), stdio: 'inherit' });
  if (r.status !== 0) fail(`npm ${args[0]} in ${PKG} failed (${r.status ?? r.signal ?? r.error}); run it there yourself, then \`npm rebuild tollgate\``);
}

function build(reason) {
  say(`building the addon from source: ${reason}`);
  let cmakeJs = resolveCmakeJs();
  if (!cmakeJs) {
    installBuildTools();
    cmakeJs = resolveCmakeJs();
    if (!cmakeJs) fail(`cmake-js is still not found from ${PKG}`);
  }
  const r = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: PKG, stdio: 'inherit' });
  if (r.status !== 0) {
    fail(`building the addon from source failed (cmake-js compile in ${PKG}: ${r.status ?? r.signal ?? r.error}). ` +
      `It needs ${SOURCE_NEEDS}; CMake's message above says which is missing.`);
  }
  say(`built ${path.join(PKG, 'build', 'Release', 'tollgate.node')}`);
  // The command-line tool (the package's `tollgate` bin), built with it.
  const cli = path.join(PKG, 'build', 'Release', 'tollgate');
  if (fs.existsSync(cli)) say(`built the command-line tool ${cli} (npx tollgate --help)`);
}

function main() {
  const forced = buildFromSourceRequested(process.env);
  if (forced) return build(forced);
  const file = prebuildFile(PKG);
  const problem = prebuildProblem(file);
  if (!problem) return say(`using the prebuilt addon ${path.relative(PKG, file)} (nothing to build)`);
  return build(problem);
}

main();
