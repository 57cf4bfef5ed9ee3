'use strict';
// [slow] The package installs as users install it, each from a temporary
// project, against temporary copies of this checkout (the files a fresh
// clone has: no node_modules/, build/ or prebuilds/ in bindings/node):
//
// - scripts/package-node.sh's tarball carries a linux-x64 Node-API 8
//   prebuilt addon: `npm install <tarball> --ignore-scripts` works with no
//   compiler or CMake on PATH (a memory and a Redis check), and so does a
//   plain `npm install` (the install script finds the prebuilt addon fits);
// - a tarball whose prebuilt addon does not load here builds from source;
// - `npm install ./bindings/node` from a checkout's root, `npm install
//   /abs/path/bindings/node` from a project elsewhere (npm links the folder
//   and installs none of its dependencies: the install script installs its
//   build tools from its lockfile) and `npm install --install-links <path>`;
// - each example's documented install line (examples/node/README.md):
//   `npm install` in express-app (a linked folder) and in next-app (a copy:
//   its .npmrc sets install-links), then `next build` and a request; a
//   linked tollgate, which Next.js bundles, fails the build with a message
//   that says so;
// - the `tollgate` bin: the command-line tool is built with the addon from
//   source (and runs); a prebuilt addon comes without it, and the bin says
//   how to build it.
//
// Builds from source take about 40 s each here, package-node.sh about a
// minute; the file about five minutes. Needs npm's registry (or its cache),
// the build tools of a source build and redis-server. TOLLGATE_SKIP_SLOW=1
// skips it, and so does a copy of the package outside a checkout.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { PACKAGE_ROOT, REPO_ROOT } = require('./helpers');
const { RedisServer, freePort } = require('./redis-server');
const { track } = require('./children');

const KEY = `${process.platform}-${process.arch}`;
const inCheckout = fs.existsSync(path.join(REPO_ROOT, 'capi', 'include', 'tollgate.h')) &&
  fs.existsSync(path.join(REPO_ROOT, 'scripts', 'package-node.sh'));
const skip = (process.env.TOLLGATE_SKIP_SLOW === '1' && 'TOLLGATE_SKIP_SLOW=1') ||
  (!inCheckout && 'not in a tollgate checkout') ||
  (KEY !== 'linux-x64' && `the prebuilt addon is made for linux-x64, not ${KEY}`);

const temps = [];
after(() => {
  for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
});
function tempDir(name) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `tollgate-install-${name}-`));
  temps.push(d);
  return d;
}
function tempProject(name) {
  const dir = tempDir(name);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  return dir;
}

// The environment of every command: without an enclosing npm's variables
// and without TOLLGATE_* (TOLLGATE_NODE_ADDON would pick the addon, and the
// build options would force builds from source).
function cleanEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|TOLLGATE_)/i.test(k)));
  return { ...env, NEXT_TELEMETRY_DISABLED: '1', ...extra };
}

// Runs a command; resolves with its output (stdout + stderr), or rejects
// with the end of it.
function run(cmd, args, { cwd, env = cleanEnv(), timeout = 170_000, fails = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ok = fails ? code !== 0 : code === 0;
      if (ok) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} in ${cwd}: ${signal || `exit ${code}`}\n${out.slice(-4000)}`));
    });
  });
}
const npm = (args, opts) => run('npm', ['--no-audit', '--no-fund', '--foreground-scripts', ...args], opts);

// A copy of the checkout as a fresh clone has it: the C sources, the
// examples, bindings/node without node_modules/, build/, prebuilds/ or
// native-src/, and scripts/package-node.sh.
function freshCheckout(name) {
  const dir = tempDir(`checkout-${name}`);
  const skipDirs = /(^|\/)(node_modules|\.next)(\/|$)/;
  for (const entry of ['CMakeLists.txt', 'cmake', 'core', 'capi', 'cli', 'tests/vectors', 'examples/node', 'scripts/package-node.sh']) {
    fs.cpSync(path.join(REPO_ROOT, entry), path.join(dir, entry), {
      recursive: true,
      filter: (src) => !skipDirs.test(path.relative(REPO_ROOT, src)),
    });
  }
  fs.cpSync(PACKAGE_ROOT, path.join(dir, 'bindings', 'node'), {
    recursive: true,
    filter: (src) => {
      const rel = path.relative(PACKAGE_ROOT, src);
      return !/^(node_modules|build|prebuilds|native-src)(\/|$)/.test(rel) && !rel.endsWith('.tgz');
    },
  });
  return dir;
}

// Checks the installed package from dir: CommonJS and ESM, a decision and
// its headers on the memory store. env: the PATH to run with.
async function memoryCheck(dir, env = cleanEnv()) {
  const cjs = `
    const t = require('tollgate');
    const lim = new t.Limiter();
    const p = t.policy(2, '1h');
    const ds = [1, 2, 3].map(() => lim.checkSync('k', p).allowed);
    const h = t.rateLimitHeaders(lim.checkSync('k', p), p);
    require('tollgate/express'); require('tollgate/plans');
    require('tollgate/prometheus'); require('tollgate/opentelemetry');
    console.log(JSON.stringify({ ds, h: h['X-RateLimit-Limit'], testing: t._testing }));`;
  const out = JSON.parse(await run(process.execPath, ['-e', cjs], { cwd: dir, env }));
  assert.deepEqual(out, { ds: [true, true, false], h: '2', testing: false });
  const esm = `
    import { Limiter, policy } from 'tollgate';
    const lim = new Limiter();
    const d = await lim.check('k', policy(1, '1m'));
    await lim.close();
    console.log(d.allowed);`;
  assert.equal((await run(process.execPath, ['--input-type=module', '-e', esm], { cwd: dir, env })).trim(), 'true');
}

// The same package on a throwaway Redis: two allowed, the third denied,
// decided by the store; the key is in Redis.
async function redisCheck(dir, env = cleanEnv()) {
  const server = await RedisServer.start();
  try {
    const js = `
      const { Limiter, policy } = require('tollgate');
      (async () => {
        const lim = new Limiter({ url: process.argv[1], keyPrefix: 'tg-install:', failureMode: 'error', timeoutMs: 5000 });
        const p = policy(2, '1h');
        const ds = [];
        for (let i = 0; i < 3; i++) { const d = await lim.check('org:acme', p); ds.push([d.allowed, d.source]); }
        await lim.close();
        console.log(JSON.stringify(ds));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const ds = JSON.parse(await run(process.execPath, ['-e', js, server.url], { cwd: dir, env }));
    assert.deepEqual(ds.map(([a]) => a), [true, true, false]);
    assert.deepEqual(ds.slice(0, 2).map(([, s]) => s), ['store', 'store']);
    assert.match(await server.info('keyspace'), /db0:keys=1,/);
  } finally {
    await server.stop();
  }
}

// The installed package's `tollgate` bin (as npx runs it). With the tool
// built (a build from source): --version answers. Without it (a prebuilt
// addon): exit 127 and how to build it.
async function binCheck(dir, built, env = cleanEnv()) {
  const bin = path.join(dir, 'node_modules', '.bin', 'tollgate');
  assert.ok(fs.existsSync(bin), 'npm linked no tollgate bin');
  const r = await new Promise((resolve) => {
    const child = spawn(bin, ['--version'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });
  if (built) {
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^tollgate \d+\.\d+\.\d+/);
  } else {
    assert.equal(r.code, 127, r.out);
    assert.match(r.out, /tollgate: the command-line tool is not built in this install of the package/);
    assert.match(r.out, /TOLLGATE_BUILD_FROM_SOURCE=1 npm rebuild tollgate/);
  }
}

// A PATH with node, npm and the basics, and no compiler, linker or CMake.
function compilerFreePath() {
  const bin = path.join(tempDir('path'), 'bin');
  fs.mkdirSync(bin);
  const which = (name) => (process.env.PATH || '').split(path.delimiter).map((d) => path.join(d, name))
    .find((f) => { try { fs.accessSync(f, fs.constants.X_OK); return true; } catch { return false; } });
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  for (const tool of ['npm', 'sh', 'bash', 'env', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'tar', 'gzip', 'uname', 'sed', 'grep', 'dirname', 'basename']) {
    const real = which(tool);
    if (real) fs.symlinkSync(real, path.join(bin, tool));
  }
  assert.ok(fs.existsSync(path.join(bin, 'npm')), 'npm not found on PATH');
  return bin;
}

// ---- shared fixtures (each made once, by whichever test needs it first) ----

let prebuilt = null;
// A fresh checkout in which scripts/package-node.sh made the prebuilt addon
// (bindings/node/prebuilds/linux-x64/) and the tarball (its dist/).
function prebuiltCheckout() {
  prebuilt = prebuilt || (async () => {
    const dir = freshCheckout('prebuilt');
    const dist = path.join(dir, 'dist');
    const log = await run('bash', [path.join(dir, 'scripts', 'package-node.sh'), '--dist', dist], { cwd: dir, timeout: 240_000 });
    const tgz = fs.readdirSync(dist).filter((f) => f.endsWith('.tgz'));
    assert.equal(tgz.length, 1, log);
    return { dir, log, tarball: path.join(dist, tgz[0]) };
  })();
  return prebuilt;
}

let linked = null;
// A fresh checkout whose bindings/node a project elsewhere installed with
// `npm install /abs/path/bindings/node`: npm linked it, and its install
// script installed its build tools and built it.
function linkedCheckout() {
  linked = linked || (async () => {
    const dir = freshCheckout('linked');
    const folder = path.join(dir, 'bindings', 'node');
    const project = tempProject('abs-link');
    const log = await npm(['install', folder], { cwd: project });
    return { dir, folder, project, log };
  })();
  return linked;
}

// ---- the tests ----------------------------------------------------------------

test('[slow] scripts/package-node.sh: the tarball carries a linux-x64 prebuilt addon that installs with --ignore-scripts and no compiler on PATH', { skip, timeout: 360_000 }, async () => {
  const { dir, log, tarball } = await prebuiltCheckout();
  assert.match(log, /needs at run time: ld-linux-x86-64\.so\.2 libc\.so\.6 libcrypto\.so\.3 libgcc_s\.so\.1 libssl\.so\.3 libstdc\+\+\.so\.6 \n/);
  assert.match(log, /Node-API: \d+ functions, all in version 8 or earlier/);
  const listing = (await run('tar', ['-tzf', tarball], { cwd: dir })).split('\n');
  for (const f of ['package/prebuilds/linux-x64/tollgate.node', 'package/native-src/capi/include/tollgate.h',
    'package/scripts/install.js', 'package/lib/native.js', 'package/CMakeLists.txt', 'package/src/addon.cpp',
    'package/bin/tollgate.js', 'package/native-src/cli/tollgate_cli.cpp', 'package/lib/prometheus.js',
    'package/lib/opentelemetry.js'])
    assert.ok(listing.includes(f), f);
  assert.deepEqual(listing.filter((f) => /^package\/(build|node_modules)\//.test(f)), []);
  assert.deepEqual(listing.filter((f) => f.startsWith('package/prebuilds/')).sort(),
    ['package/prebuilds/linux-x64/tollgate', 'package/prebuilds/linux-x64/tollgate.node']);
  // hiredis is linked in: the prebuilt addon needs no libhiredis.
  const prebuild = path.join(dir, 'bindings', 'node', 'prebuilds', 'linux-x64', 'tollgate.node');
  const needed = (await run('readelf', ['-d', prebuild], { cwd: dir })).match(/\(NEEDED\).*\[(.*)\]/g).join(' ');
  assert.doesNotMatch(needed, /hiredis/);

  const bin = compilerFreePath();
  const env = cleanEnv({ PATH: bin });
  for (const tool of ['cc', 'c++', 'gcc', 'g++', 'clang', 'cmake', 'make', 'ninja', 'ld'])
    await run('sh', ['-c', `command -v ${tool}`], { cwd: dir, env, fails: true });

  // --ignore-scripts: nothing runs at install; the prebuilt addon is loaded.
  const quiet = tempProject('ignore-scripts');
  await npm(['install', '--ignore-scripts', tarball], { cwd: quiet, env });
  const pkg = path.join(quiet, 'node_modules', 'tollgate');
  assert.ok(fs.existsSync(path.join(pkg, 'prebuilds', 'linux-x64', 'tollgate.node')));
  assert.ok(!fs.existsSync(path.join(pkg, 'build')), 'a build/ folder in a package installed with --ignore-scripts');
  await memoryCheck(quiet, env);
  await redisCheck(quiet, env);
  // The prebuilt command-line tool beside it: the bin runs with no compiler.
  assert.match(log, /the command-line tool needs at run time: /);
  await binCheck(quiet, true, env);

  // With its install script: it finds the prebuilt addon fits, builds nothing.
  const plain = tempProject('plain');
  const out = await npm(['install', tarball], { cwd: plain, env });
  assert.match(out, /tollgate: using the prebuilt addon prebuilds\/linux-x64\/tollgate\.node \(nothing to build\)/);
  assert.ok(!fs.existsSync(path.join(plain, 'node_modules', 'tollgate', 'build')));
  await memoryCheck(plain, env);
});

test('[slow] the runnable js blocks of README.md and docs/*.md run against the installed tarball', { skip, timeout: 360_000 }, async () => {
  const { tarball } = await prebuiltCheckout();
  const project = tempProject('doc-snippets');
  await npm(['install', tarball], { cwd: project });
  const docs = [path.join(REPO_ROOT, 'README.md'),
    ...fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(REPO_ROOT, 'docs', f))];
  const out = await run('python3', [path.join(REPO_ROOT, 'tests', 'run_doc_snippets.py'), 'node', '--node-project', project, ...docs],
    { cwd: project });
  // The runner fails on any block that does not exit 0; these two must be among those it ran.
  assert.match(out, /README\.md:\d+/);
  assert.match(out, /node\.md:\d+/);
});

test('[slow] a tarball whose prebuilt addon does not load here: npm install builds from source', { skip, timeout: 420_000 }, async () => {
  const { tarball } = await prebuiltCheckout();
  // The same tarball with a prebuilt addon this system cannot load (as one
  // for another C library would be).
  const work = tempDir('repack');
  await run('tar', ['-xzf', tarball, '-C', work], { cwd: work });
  fs.writeFileSync(path.join(work, 'package', 'prebuilds', 'linux-x64', 'tollgate.node'), 'not an ELF file');
  const other = path.join(work, 'tollgate-other.tgz');
  await run('tar', ['-czf', other, '-C', work, 'package'], { cwd: work });
  const project = tempProject('fallback');
  const out = await npm(['install', other], { cwd: project });
  assert.match(out, /tollgate: building the addon from source: the prebuilt addon prebuilds\/linux-x64\/tollgate\.node does not load here \(Error: .*(invalid ELF header|file too short)/);
  assert.match(out, /tollgate: built .*node_modules\/tollgate\/build\/Release\/tollgate\.node/);
  await memoryCheck(project);
  await binCheck(project, true); // built from source: the tool too
});

test('[slow] npm install ./bindings/node from the root of a fresh checkout builds from source', { skip, timeout: 180_000 }, async () => {
  const dir = freshCheckout('root');
  const out = await npm(['install', './bindings/node'], { cwd: dir });
  assert.match(out, /tollgate: building the addon from source: no prebuilt addon for linux-x64/);
  // The folder is inside this project: npm installed its dependencies.
  assert.doesNotMatch(out, /are not installed in/);
  assert.ok(fs.lstatSync(path.join(dir, 'node_modules', 'tollgate')).isSymbolicLink());
  assert.ok(fs.existsSync(path.join(dir, 'bindings', 'node', 'build', 'Release', 'tollgate.node')));
  assert.ok(fs.existsSync(path.join(dir, 'bindings', 'node', 'build', 'Release', 'tollgate')));
  await memoryCheck(dir);
  await binCheck(dir, true);
});

test('[slow] npm install /abs/path/bindings/node from a project elsewhere: the linked folder gets its build tools, then builds', { skip, timeout: 180_000 }, async () => {
  const { folder, project, log } = await linkedCheckout();
  // npm links the folder and installs none of its dependencies: the install
  // script installs them from the folder's lockfile, then builds.
  assert.match(log, /tollgate: building the addon from source: no prebuilt addon for linux-x64/);
  assert.match(log, new RegExp(`tollgate: its build tools \\(cmake-js, node-addon-api, node-api-headers\\) are not installed in ${folder}, a folder npm linked without installing its dependencies: npm ci --ignore-scripts`));
  assert.match(log, /tollgate: built /);
  assert.equal(fs.realpathSync(path.join(project, 'node_modules', 'tollgate')), fs.realpathSync(folder));
  assert.ok(!fs.existsSync(path.join(project, 'node_modules', 'cmake-js')));
  await memoryCheck(project);
});

test('[slow] npm install --install-links /abs/path/bindings/node from a project elsewhere: a copy, with the prebuilt addon', { skip, timeout: 360_000 }, async () => {
  const { dir } = await prebuiltCheckout();
  // Without its node_modules: the copy gets its dependencies from npm.
  fs.rmSync(path.join(dir, 'bindings', 'node', 'node_modules'), { recursive: true, force: true });
  const project = tempProject('install-links');
  const out = await npm(['install', '--install-links', path.join(dir, 'bindings', 'node')], { cwd: project });
  assert.match(out, /tollgate: using the prebuilt addon prebuilds\/linux-x64\/tollgate\.node \(nothing to build\)/);
  const pkg = path.join(project, 'node_modules', 'tollgate');
  assert.ok(!fs.lstatSync(pkg).isSymbolicLink());
  assert.ok(fs.existsSync(path.join(pkg, 'native-src', 'capi', 'include', 'tollgate.h')));
  await memoryCheck(project);
});

test('[slow] examples/node/express-app: `npm install` (a linked tollgate), then the app answers with its plan\'s headers', { skip, timeout: 240_000 }, async () => {
  const { dir } = await linkedCheckout();
  const app = path.join(dir, 'examples', 'node', 'express-app');
  const out = await npm(['install'], { cwd: app });
  assert.match(out, /tollgate: built /);
  assert.ok(fs.lstatSync(path.join(app, 'node_modules', 'tollgate')).isSymbolicLink());
  const js = `
    const { Limiter } = require('tollgate');
    const { createApp } = require('./app');
    const limiter = new Limiter();
    const server = createApp({ limiter }).listen(0, '127.0.0.1', async () => {
      const r = await fetch('http://127.0.0.1:' + server.address().port + '/', { headers: { 'X-Org-Id': 'globex' } });
      console.log(JSON.stringify({ status: r.status, policy: r.headers.get('ratelimit-policy'), body: await r.json() }));
      server.close(); await limiter.close();
    });`;
  const res = JSON.parse(await run(process.execPath, ['-e', js], { cwd: app, timeout: 30_000 }));
  assert.deepEqual(res, { status: 200, policy: '"PRO";q=1000;w=3600', body: { hello: 'globex', plan: 'PRO' } });
});

test('[slow] examples/node/next-app: `npm install` installs a copy, `next build` and a request work; a linked tollgate fails the build saying why', { skip, timeout: 360_000 }, async () => {
  const { dir } = await prebuiltCheckout();
  const app = path.join(dir, 'examples', 'node', 'next-app');
  const nextBin = path.join(app, 'node_modules', 'next', 'dist', 'bin', 'next');

  // Linked (npm's default for "file:", overridden by the example's .npmrc):
  // Next.js bundles tollgate, away from its addon, and the error says so.
  await npm(['install', '--install-links=false'], { cwd: app });
  assert.ok(fs.lstatSync(path.join(app, 'node_modules', 'tollgate')).isSymbolicLink());
  const failed = await run(process.execPath, [nextBin, 'build'], { cwd: app, fails: true });
  assert.match(failed, /tollgate: this copy of tollgate's JavaScript runs from .*\.next\/server, not from the tollgate package/);
  assert.match(failed, /A bundler \(webpack, as in a Next\.js build\) bundled it/);
  assert.doesNotMatch(failed, /not built/);

  // The documented line: `npm install` (the .npmrc: install-links=true).
  fs.rmSync(path.join(app, 'node_modules'), { recursive: true, force: true });
  fs.rmSync(path.join(app, '.next'), { recursive: true, force: true });
  const out = await npm(['install'], { cwd: app });
  assert.match(out, /tollgate: using the prebuilt addon/);
  assert.ok(!fs.lstatSync(path.join(app, 'node_modules', 'tollgate')).isSymbolicLink());
  await run(process.execPath, [nextBin, 'build'], { cwd: app });
  const port = await freePort();
  const server = track(spawn(process.execPath, [nextBin, 'start', '-p', String(port), '-H', '127.0.0.1'], {
    cwd: app, env: cleanEnv(), stdio: 'ignore', detached: true,
  }), true);
  try {
    let r = null;
    const end = Date.now() + 60_000;
    while (!r && Date.now() < end) {
      r = await fetch(`http://127.0.0.1:${port}/api/hello`, { headers: { 'X-Org-Id': 'acme' } }).catch(() => null);
      if (!r) await new Promise((res) => setTimeout(res, 200));
    }
    assert.ok(r, 'next start did not answer');
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { hello: 'acme' });
    assert.equal(r.headers.get('ratelimit-policy'), '"ENTERPRISE";q=10000;w=3600');
  } finally {
    const exited = new Promise((res) => server.once('exit', res));
    try {
      process.kill(-server.pid, 'SIGTERM');
    } catch {}
    await exited;
  }
});
