'use strict';
// [slow] The package builds from source outside this checkout: an `npm
// pack` tarball into a clean project, and `npm install --install-links` of
// this folder into another. Each builds the C library and the addon with
// cmake-js (Node-API headers from the node-api-headers package: nothing is
// downloaded but npm packages); TOLLGATE_BUILD_FROM_SOURCE=1 makes the
// install script build even when this checkout holds a prebuilt addon
// (scripts/package-node.sh leaves one in prebuilds/). About a minute each;
// TOLLGATE_SKIP_SLOW=1 skips them. install.test.js has the prebuilt addon,
// linked folders and the examples. Each installed copy's `tollgate` bin runs
// the command-line tool built with the addon: its --help is docs/cli.md's,
// and it reaches a real redis-server.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { PACKAGE_ROOT, REPO_ROOT } = require('./helpers');
const { RedisServer, noRedis } = require('./redis-server');

const skip = process.env.TOLLGATE_SKIP_SLOW === '1' && 'TOLLGATE_SKIP_SLOW=1';
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function sh(cmd, args, cwd) {
  return new Promise((resolve, reject) => {
    // Without the npm_* variables of an enclosing `npm test`, so the child
    // npm reads its own configuration, and without TOLLGATE_* (the addon to
    // load, build options) but for a build from source.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|TOLLGATE_)/i.test(k)));
    env.TOLLGATE_BUILD_FROM_SOURCE = '1';
    execFile(cmd, args, { cwd, env, maxBuffer: 64 << 20, timeout: 150000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed in ${cwd}: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}

// Runs a command without the enclosing npm's or tollgate's variables:
// { code, stdout, stderr }, whatever the exit status.
function runStatus(cmd, args, cwd) {
  return new Promise((resolve) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|TOLLGATE_)/i.test(k)));
    execFile(cmd, args, { cwd, env, timeout: 60000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? err.signal : 0, stdout, stderr }));
  });
}

// docs/cli.md's usage block: what `tollgate --help` prints.
function documentedHelp() {
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'cli.md'), 'utf8');
  const m = /<!-- help -->\n```text\n([\s\S]*?)```\n<!-- \/help -->/.exec(doc);
  assert.ok(m, 'docs/cli.md has no <!-- help --> block');
  return m[1];
}

// The installed package's `tollgate` bin (node_modules/.bin/tollgate, as
// npx runs it): --help, --version, and a real redis-server reached with
// the tool's exit statuses passed through (0 allowed or done, 1 denied).
async function binCheck(dir) {
  const bin = path.join(dir, 'node_modules', '.bin', 'tollgate');
  assert.ok(fs.existsSync(bin), 'npm linked no tollgate bin');
  const pkg = path.join(dir, 'node_modules', 'tollgate');
  assert.ok(fs.existsSync(path.join(pkg, 'build', 'Release', 'tollgate')), 'the command-line tool was not built');
  const help = await runStatus(bin, ['--help'], dir);
  assert.equal(help.code, 0, help.stderr);
  assert.equal(help.stdout, documentedHelp());
  const version = await runStatus(bin, ['--version'], dir);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^tollgate \d+\.\d+\.\d+/);
  assert.equal((await runStatus(bin, ['no-such-command'], dir)).code, 2);
  if (noRedis) return;
  const server = await RedisServer.start();
  try {
    const ping = await runStatus(bin, ['ping', '--url', server.url], dir);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    const check = () => runStatus(bin, ['check', '--url', server.url, 'user:1', '1/h'], dir);
    assert.equal((await check()).code, 0);
    const denied = await check();
    assert.equal(denied.code, 1, denied.stdout + denied.stderr);
  } finally {
    await server.stop();
  }
}

function tempProject(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tollgate-node-${name}-`));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  return dir;
}

// Loads the installed package (CommonJS and ESM) and runs a check.
async function smoke(dir) {
  const cjs = `
    const t = require('tollgate');
    const lim = new t.Limiter();
    const p = t.policy(2, '1h'); // not 2/s: a 0.5 s pause would let the third pass
    const ds = [1, 2, 3].map(() => lim.checkSync('k', p).allowed);
    const h = t.rateLimitHeaders(lim.checkSync('k', p), p);
    console.log(JSON.stringify({ ds, version: t.version, h: h['X-RateLimit-Limit'] }));`;
  const out = JSON.parse(await sh(process.execPath, ['-e', cjs], dir));
  assert.deepEqual(out.ds, [true, true, false]);
  assert.equal(out.h, '2');
  const esm = `
    import { Limiter, policy } from 'tollgate';
    const lim = new Limiter();
    const d = await lim.check('k', policy(1, '1m'));
    await lim.close();
    console.log(d.allowed);`;
  assert.equal((await sh(process.execPath, ['--input-type=module', '-e', esm], dir)).trim(), 'true');
  const pkg = path.join(dir, 'node_modules', 'tollgate');
  assert.ok(fs.existsSync(path.join(pkg, 'lib', 'index.d.ts')));
  assert.ok(fs.existsSync(path.join(pkg, 'build', 'Release', 'tollgate.node')));
  assert.ok(!fs.lstatSync(pkg).isSymbolicLink());
  // The exporters load without their optional peers (not installed here):
  // they use the registry or meter they are given.
  const peers = `
    for (const m of ['prom-client', '@opentelemetry/api']) {
      try { require.resolve(m); console.log(m + ' is installed'); } catch {}
    }
    const p = require('tollgate/prometheus'), o = require('tollgate/opentelemetry');
    console.log(typeof p.registerTollgateMetrics, typeof o.registerTollgateMetrics);`;
  assert.equal((await sh(process.execPath, ['-e', peers], dir)).trim(), 'function function');
  await binCheck(dir);
}

function builtFromSource(log) {
  assert.ok(!/\bDWNL\b/.test(log), 'cmake-js downloaded headers:\n' + log);
  assert.match(log, /tollgate: building the addon from source: TOLLGATE_BUILD_FROM_SOURCE is set\n/);
  assert.match(log, /tollgate: built .*node_modules\/tollgate\/build\/Release\/tollgate\.node\n/);
}

test('[slow] an npm pack tarball installs and builds in a clean project', { skip, timeout: 180000 }, async (t) => {
  const dest = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-node-pack-'));
  const dir = tempProject('tarball');
  t.after(() => {
    fs.rmSync(dest, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await sh(NPM, ['pack', '--pack-destination', dest], PACKAGE_ROOT);
  const tgz = fs.readdirSync(dest).find((f) => f.endsWith('.tgz'));
  assert.ok(tgz, 'npm pack made no tarball');
  // the tarball carries the C sources; the checkout is left clean
  const listing = await sh('tar', ['-tzf', path.join(dest, tgz)], dest);
  for (const f of ['package/native-src/CMakeLists.txt', 'package/native-src/capi/include/tollgate.h',
    'package/native-src/core/CMakeLists.txt', 'package/native-src/cmake/EmbedScripts.cmake',
    'package/native-src/cli/CMakeLists.txt', 'package/native-src/cli/tollgate_cli.cpp',
    'package/src/addon.cpp', 'package/CMakeLists.txt', 'package/lib/index.js', 'package/bin/tollgate.js',
    'package/lib/metrics.js', 'package/lib/prometheus.js', 'package/lib/prometheus.mjs',
    'package/lib/prometheus.d.ts', 'package/lib/opentelemetry.js', 'package/lib/opentelemetry.mjs',
    'package/lib/opentelemetry.d.ts'])
    assert.ok(listing.includes(f), f);
  assert.ok(!listing.includes('package/build/'), 'the tarball holds a build directory');
  assert.ok(!listing.includes('package/node_modules/'), 'the tarball holds node_modules');
  const log = await sh(NPM, ['install', '--foreground-scripts', path.join(dest, tgz)], dir);
  builtFromSource(log);
  await smoke(dir);
});

test('[slow] npm install --install-links of this folder builds in a clean project', { skip, timeout: 180000 }, async (t) => {
  const dir = tempProject('links');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const log = await sh(NPM, ['install', '--foreground-scripts', '--install-links', PACKAGE_ROOT], dir);
  builtFromSource(log);
  await smoke(dir);
});
