'use strict';
// examples/node/next-app end to end: `npm pack` this package, install the
// tarball into a temporary copy of the example, `next build`, `next start` on
// a free loopback port, call the routes until they answer 429, check the
// headers, run concurrent exports (a lease: at most 2 per organization), then
// the same with two instances on one redis-server; stop the servers by PID.
//
// Next.js and React come from npm at test time. The tarball is installed
// with --ignore-scripts and the addon this checkout already built
// (build/Release/tollgate.node) is copied in, so the test does not compile
// the C++ core a second time; TOLLGATE_TEST_NEXT_COMPILE=1 lets npm build it
// from the tarball instead (several minutes). Skips without npm access or
// without a built addon. About a minute with a warm npm cache.

const { freePort, RedisServer, REDIS_SERVER, redisCommand } = require('./redis-server');
const { track } = require('./children');
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PKG = path.resolve(__dirname, '..');
const REPO = path.resolve(PKG, '..', '..');
const EXAMPLE = path.join(REPO, 'examples', 'node', 'next-app');
const ADDON = path.join(PKG, 'build', 'Release', 'tollgate.node');
const COMPILE = process.env.TOLLGATE_TEST_NEXT_COMPILE === '1';

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 180_000, ...opts });
  if (r.status !== 0) {
    const out = `${r.stdout || ''}\n${r.stderr || ''}`.slice(-3000);
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error}):\n${out}`);
  }
  return r.stdout;
}

function copyExample(dest) {
  fs.cpSync(EXAMPLE, dest, {
    recursive: true,
    filter: (src) => !/(^|\/)(node_modules|\.next)(\/|$)/.test(path.relative(EXAMPLE, src)),
  });
}

async function waitFor(url, proc, ms) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    if (proc.exitCode !== null) throw new Error(`next start exited with ${proc.exitCode}`);
    try {
      const r = await fetch(url, { headers: { 'X-Org-Id': 'probe' } });
      await r.arrayBuffer();
      return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer: ${last}`);
}

// `next start` of the built app in `app` on a free loopback port, in a
// process group of its own (stopped by stopNext, by its PID); its output
// goes to onLog. Resolves once /api/hello answers.
async function startNext(app, env, onLog) {
  const nextBin = path.join(app, 'node_modules', 'next', 'dist', 'bin', 'next');
  const port = await freePort();
  const proc = track(spawn(process.execPath, [nextBin, 'start', '-p', String(port), '-H', '127.0.0.1'], {
    cwd: app,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  }), true);
  proc.stdout.on('data', (d) => onLog(d));
  proc.stderr.on('data', (d) => onLog(d));
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/api/hello`, proc, 60_000);
  return { proc, base };
}

async function stopNext(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    process.kill(-proc.pid, 'SIGTERM');
  } catch {}
  const timer = setTimeout(() => {
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {}
  }, 5000);
  await exited;
  clearTimeout(timer);
}

// POST /api/export for `org` on the server at `base`: its status,
// Retry-After, JSON body and when it answered.
async function exportFor(base, org) {
  const r = await fetch(`${base}/api/export`, { method: 'POST', headers: { 'X-Org-Id': org } });
  return { status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.json(), at: performance.now() };
}

// A denied export: 429, Retry-After in whole seconds up to the lease's ttl
// (2 min), repeated in the JSON body.
function assertExportDenied(r) {
  assert.equal(r.status, 429, JSON.stringify(r));
  const retry = Number(r.retryAfter);
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 120, `Retry-After ${r.retryAfter}`);
  assert.deepEqual(r.body, { detail: 'Too many exports running for this organization', retry_after: retry });
}

test('limit() and withRateLimit() on Web Requests (no Next.js needed)', { timeout: 60_000 }, async () => {
  const { Limiter } = require(PKG);
  const { limit, withRateLimit } = require(path.join(PKG, 'lib', 'next.js'));
  const limiter = new Limiter({ clock: () => 1700000000000000 }); // pinned: exact however slow
  try {
    const opts = { limiter, policy: { limit: 2, period: '1m' } };
    const req = () => new Request('http://app/api', { headers: { 'x-forwarded-for': '203.0.113.7' } });
    let r = await limit(req(), opts);
    assert.equal(r.decision.allowed, true);
    assert.equal(r.key, 'ip:203.0.113.7');
    assert.equal(r.headers['RateLimit-Policy'], '"default";q=2;w=60');
    assert.equal(r.response, undefined);
    await limit(req(), opts);
    r = await limit(req(), opts);
    assert.equal(r.decision.allowed, false);
    assert.equal(r.response.status, 429);
    assert.equal(r.response.headers.get('retry-after'), r.headers['Retry-After']);
    assert.deepEqual(await r.response.json(), { detail: 'Rate limit exceeded', retry_after: Number(r.headers['Retry-After']) });

    let ran = 0;
    const GET = withRateLimit(
      async () => {
        ran++;
        return Response.redirect('http://app/elsewhere', 307); // immutable headers: copied
      },
      { limiter, policy: { limit: 1, period: '1h' }, key: () => 'k' },
    );
    let res = await GET(req(), {});
    assert.equal(res.status, 307);
    assert.equal(res.headers.get('location'), 'http://app/elsewhere');
    assert.equal(res.headers.get('x-ratelimit-remaining'), '0');
    res = await GET(req(), {});
    assert.equal(res.status, 429);
    assert.equal(ran, 1);
    const free = withRateLimit(async () => new Response('ok'), { limiter, policy: { limit: 1, period: '1h' }, key: () => null });
    res = await free(req(), {});
    assert.equal(res.headers.get('ratelimit'), null);
  } finally {
    await limiter.close();
  }
});

// count 'failed' / 'successful' (no Next.js needed): the request is charged
// before the handler; a Response that does not count gets its unit back.
function countHandler(options, answer = (s) => new Response('x', { status: s })) {
  const { withRateLimit } = require(path.join(PKG, 'lib', 'next.js'));
  return withRateLimit(async (request) => answer(Number(new URL(request.url).searchParams.get('s'))), {
    key: () => 'client',
    policy: { limit: 3, period: '1h' },
    ...options,
  });
}

async function statusesOf(handler, wanted) {
  const out = [];
  for (const s of wanted) out.push((await handler(new Request(`http://app/api?s=${s}`), {})).status);
  return out;
}

test("withRateLimit count 'failed' and 'successful'", { timeout: 60_000 }, async () => {
  const { Limiter } = require(PKG);
  const limiter = new Limiter({ clock: () => 1700000000000000 });
  try {
    let GET = countHandler({ limiter, count: 'failed' });
    const res = await GET(new Request('http://app/api?s=200'), {});
    assert.equal(res.headers.get('x-ratelimit-remaining'), '2'); // the state after the charge
    assert.deepEqual(await statusesOf(GET, [200, 201, 200, 202]), [200, 201, 200, 202]);
    assert.deepEqual(await statusesOf(GET, [401, 401, 401, 401, 200]), [401, 401, 401, 429, 429]);

    await limiter.reset('client');
    GET = countHandler({ limiter, count: 'successful' });
    assert.deepEqual(await statusesOf(GET, [401, 500, 404, 401, 403]), [401, 500, 404, 401, 403]);
    // 429s charged nothing and give nothing back.
    assert.deepEqual(await statusesOf(GET, [200, 200, 200, 200, 404, 200]), [200, 200, 200, 429, 429, 429]);

    await limiter.reset('client');
    GET = countHandler({ limiter }); // count 'all': every response counts
    assert.deepEqual(await statusesOf(GET, [500, 200, 401, 200]), [500, 200, 401, 429]);
  } finally {
    await limiter.close();
  }
});

test('withRateLimit count: a custom failed predicate; a thrown error or no Response is a 500', { timeout: 60_000 }, async () => {
  const { Limiter } = require(PKG);
  const limiter = new Limiter({ clock: () => 1700000000000000 });
  try {
    const seen = [];
    let GET = countHandler({
      limiter,
      count: 'failed',
      failed: (status) => {
        seen.push(status);
        return status === 418 ? 1 : 0; // truthy and falsy do, as JS conditions go
      },
    });
    assert.deepEqual(await statusesOf(GET, [401, 500, 401, 200]), [401, 500, 401, 200]);
    assert.deepEqual(await statusesOf(GET, [418, 418, 418, 200]), [418, 418, 418, 429]);
    assert.deepEqual(seen, [401, 500, 401, 200, 418, 418, 418]);

    // A thrown error counts as failed (500): it keeps its charge with
    // count 'failed' and gets it back with count 'successful'.
    const boom = () => {
      throw new Error('boom');
    };
    await limiter.reset('client');
    GET = countHandler({ limiter, count: 'failed' }, boom);
    for (let i = 0; i < 3; i++) await assert.rejects(GET(new Request('http://app/api'), {}), /boom/);
    assert.equal((await GET(new Request('http://app/api'), {})).status, 429);
    await limiter.reset('client');
    GET = countHandler({ limiter, count: 'successful' }, boom);
    for (let i = 0; i < 5; i++) await assert.rejects(GET(new Request('http://app/api'), {}), /boom/);
    // A handler that returns no Response: Next.js answers 500.
    await limiter.reset('client');
    GET = countHandler({ limiter, count: 'successful' }, () => 'not a response');
    for (let i = 0; i < 5; i++) assert.equal(await GET(new Request('http://app/api'), {}), 'not a response');
    GET = countHandler({ limiter, count: 'failed' }, () => undefined);
    for (let i = 0; i < 3; i++) await GET(new Request('http://app/api'), {});
    assert.equal((await GET(new Request('http://app/api'), {})).status, 429);
  } finally {
    await limiter.close();
  }
});

test("limit() returns settle(response | status): gives the charge back once, when it does not count", { timeout: 60_000 }, async () => {
  const { Limiter } = require(PKG);
  const { limit } = require(path.join(PKG, 'lib', 'next.js'));
  const limiter = new Limiter({ clock: () => 1700000000000000 });
  const p = { limit: 3, period: '1h' };
  const remaining = () => limiter.checkSync('client', p, { cost: 0 }).remaining;
  try {
    const opts = { limiter, policy: p, key: () => 'client', count: 'failed', cost: 2 };
    let r = await limit(new Request('http://app/api'), opts);
    assert.equal(r.decision.remaining, 1);
    const other = await limit(new Request('http://app/api'), { ...opts, cost: 1 });
    assert.equal(other.decision.remaining, 0);
    assert.equal(await r.settle(new Response('ok')), true);
    assert.equal(remaining(), 2);
    assert.equal(await r.settle(200), false, 'a second settle gives nothing back');
    assert.equal(remaining(), 2);
    assert.equal(await other.settle(401), false);
    assert.equal(remaining(), 2);
    r = await limit(new Request('http://app/api'), opts);
    assert.equal(r.decision.remaining, 0);
    // Denied: nothing was charged, nothing comes back.
    r = await limit(new Request('http://app/api'), opts);
    assert.equal(r.response.status, 429);
    assert.equal(await r.settle(200), false);
    assert.equal(remaining(), 0);
    // A refund that fails resolves to false (here: nothing left to give back).
    await limiter.reset('client');
    r = await limit(new Request('http://app/api'), { ...opts, cost: 1 });
    await limiter.reset('client');
    assert.equal(await r.settle(200), false);
    // Bad arguments reject with a TypeError.
    r = await limit(new Request('http://app/api'), opts);
    for (const bad of ['200', null, undefined, {}, 200.5]) {
      await assert.rejects(r.settle(bad), { name: 'TypeError', message: 'settle(response | status): expected a Response or an HTTP status (integer)' });
    }
    assert.equal(remaining(), 1, 'a bad settle() gives nothing back');
    // count 'all' (default), and a null key: settle() is there and does nothing.
    r = await limit(new Request('http://app/api'), { limiter, policy: p, key: () => 'client' });
    assert.equal(await r.settle(500), false);
    assert.equal(remaining(), 0);
    r = await limit(new Request('http://app/api'), { limiter, policy: p, key: () => null, count: 'successful' });
    assert.equal(r.decision, null);
    assert.equal(await r.settle(500), false);
    // count 'successful' through limit().
    await limiter.reset('client');
    r = await limit(new Request('http://app/api'), { ...opts, count: 'successful', cost: 1 });
    assert.equal(await r.settle(new Response('no', { status: 503 })), true);
    assert.equal(remaining(), 3);
    assert.throws(() => limit(new Request('http://app/api'), { ...opts, count: 'sometimes' }), { name: 'TypeError', message: /count must be 'all', 'failed' or 'successful', not "sometimes"/ });
  } finally {
    await limiter.close();
  }
});

// A global limit and a route's on one request: a request the route denies
// costs nothing under the global limit, and one the global limit denies
// costs nothing on the route. Forms: `limits` (one checkKeys call), nested
// withRateLimit, and limit() called twice on one Request.
const GLOBAL = { limit: 5, period: '1h', name: 'global' };
const ROUTE = { limit: 2, period: '1h', algorithm: 'fixed_window', name: 'login' };

function jointHandlers(limiter) {
  const { limit, withRateLimit } = require(path.join(PKG, 'lib', 'next.js'));
  const key = () => 'client';
  const ok = async () => Response.json({ ok: true });
  const globalOpts = { limiter, key, policy: GLOBAL };
  const routeOpts = { limiter, key, policy: ROUTE, scope: 'login' };
  const limitsOpts = { limiter, key, limits: [{ policy: GLOBAL }, { policy: ROUTE, scope: 'login' }] };
  return {
    other: withRateLimit(ok, globalOpts),
    login: {
      'limits (withRateLimit)': withRateLimit(ok, limitsOpts),
      'limits (limit)': async (request) => {
        const { response, headers } = await limit(request, limitsOpts);
        return response || Response.json({ ok: true }, { headers });
      },
      'nested withRateLimit': withRateLimit(withRateLimit(ok, routeOpts), globalOpts),
      'limit() twice': async (request) => {
        const g = await limit(request, globalOpts);
        if (g.response) return g.response;
        const r = await limit(request, routeOpts);
        if (r.response) return r.response;
        return Response.json({ ok: true }, { headers: r.headers });
      },
    },
  };
}

async function jointNextChecks(limiter, form) {
  const h = jointHandlers(limiter);
  const login = h.login[form];
  const call = (handler) => handler(new Request('http://app/api/login'), {});
  const peek = async (key, p) => (await limiter.check(key, p, { cost: 0 })).remaining;
  await limiter.reset('client');
  await limiter.reset('login|client');
  let res = await call(login);
  assert.equal(res.status, 200, form);
  // The limit with the fewest remaining: the route's.
  assert.equal(res.headers.get('ratelimit-policy'), '"default";q=2;w=3600');
  assert.equal(res.headers.get('x-ratelimit-remaining'), '1');
  assert.equal((await call(login)).status, 200);
  for (let i = 0; i < 3; i++) {
    res = await call(login);
    assert.equal(res.status, 429, form);
    assert.equal(res.headers.get('ratelimit-policy'), '"default";q=2;w=3600', form);
    assert.deepEqual(await res.json(), { detail: 'Rate limit exceeded', retry_after: Number(res.headers.get('retry-after')) });
  }
  // The route denied three requests: the global limit is where it was.
  assert.equal(await peek('client', GLOBAL), 3, form);
  // The global limit denies: the route is not charged.
  await limiter.reset('login|client');
  for (let i = 0; i < 3; i++) assert.equal((await call(h.other)).status, 200);
  res = await call(login);
  assert.equal(res.status, 429, form);
  assert.equal(res.headers.get('ratelimit-policy'), '"default";q=5;w=3600');
  assert.equal(await peek('login|client', ROUTE), 2, form);
  assert.equal(await peek('client', GLOBAL), 0, form);
}

const JOINT_FORMS = ['limits (withRateLimit)', 'limits (limit)', 'nested withRateLimit', 'limit() twice'];

test('a global limit and a route\'s: a route denial leaves the global limit unchanged, and the reverse (memory)', { timeout: 60_000 }, async (t) => {
  const { Limiter } = require(PKG);
  const limiter = new Limiter({ clock: () => 1700000000000000 });
  try {
    for (const form of JOINT_FORMS) await t.test(form, () => jointNextChecks(limiter, form));
  } finally {
    await limiter.close();
  }
});

test('a global limit and a route\'s: the same on Redis', { timeout: 60_000, skip: !REDIS_SERVER && 'redis-server is not installed' }, async (t) => {
  const { Limiter } = require(PKG);
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const limiter = new Limiter({ url: server.url, keyPrefix: `nextjoint:${process.pid}:`, failureMode: 'error' });
  t.after(() => limiter.close());
  for (const form of JOINT_FORMS) await t.test(form, () => jointNextChecks(limiter, form));
});

test('limits in Next.js: limit() reports the binding pair; a null key leaves its limit out', { timeout: 60_000 }, async () => {
  const { Limiter } = require(PKG);
  const { limit } = require(path.join(PKG, 'lib', 'next.js'));
  const limiter = new Limiter({ clock: () => 1700000000000000 });
  try {
    const opts = {
      limiter,
      key: () => 'client',
      limits: [{ policy: GLOBAL }, { policy: ROUTE, key: (request) => request.headers.get('x-user'), scope: 'user' }],
    };
    let r = await limit(new Request('http://app/api'), opts);
    assert.equal(r.key, 'client');
    assert.equal(r.policy, GLOBAL);
    assert.equal(r.name, 'default');
    assert.equal(r.decision.remaining, 4);
    r = await limit(new Request('http://app/api', { headers: { 'x-user': 'ann' } }), opts);
    assert.equal(r.key, 'user|ann');
    assert.equal(r.policy, ROUTE);
    assert.equal(r.decision.keyIndex, 1);
    assert.equal(r.decision.remaining, 1);
    assert.equal((await limiter.check('client', GLOBAL, { cost: 0 })).remaining, 3);
    assert.throws(() => limit(new Request('http://app/api'), { limiter, limits: [{ policy: GLOBAL, cost: 2 }] }), {
      name: 'TypeError',
      message: 'limits[0]: cost applies to the whole request; give it beside limits',
    });
  } finally {
    await limiter.close();
  }
});

test('tollgate/next refuses the Edge runtime with a clear message', { timeout: 60_000 }, () => {
  const r = spawnSync(process.execPath, ['-e', `globalThis.EdgeRuntime = 'edge-runtime'; require(${JSON.stringify(path.join(PKG, 'lib', 'next.js'))})`], {
    encoding: 'utf8',
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /cannot run on the Edge runtime/);
  assert.match(r.stderr, /runtime = 'nodejs'/);
});

test('Next.js App Router example: headers, then 429; concurrent exports under a lease (memory, then two instances on Redis)', { timeout: 240_000 }, async (t) => {
  if (!COMPILE && !fs.existsSync(ADDON)) return t.skip(`no built addon at ${ADDON} (npm install in bindings/node first)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-next-'));
  const app = path.join(tmp, 'app');
  let server = null;
  let base = null;
  const others = []; // the Redis instances, below
  let redis = null;
  let log = '';
  try {
    copyExample(app);
    // The package as users get it: a tarball made by npm pack.
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: PKG }));
    const tarball = path.join(tmp, packed[0].filename);
    const pj = JSON.parse(fs.readFileSync(path.join(app, 'package.json'), 'utf8'));
    pj.dependencies.tollgate = `file:${tarball}`;
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(pj, null, 2));
    const install = ['install', '--no-audit', '--no-fund', '--loglevel=error'];
    try {
      run('npm', COMPILE ? install : [...install, '--ignore-scripts'], { cwd: app, timeout: 180_000 });
    } catch (e) {
      if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network/i.test(e.message)) return t.skip(`npm cannot install: ${e.message.slice(0, 200)}`);
      throw e;
    }
    if (!COMPILE) {
      const dest = path.join(app, 'node_modules', 'tollgate', 'build', 'Release');
      fs.mkdirSync(dest, { recursive: true });
      fs.copyFileSync(ADDON, path.join(dest, 'tollgate.node'));
    }
    const env = { ...process.env, NEXT_TELEMETRY_DISABLED: '1' };
    delete env.TOLLGATE_URL; // the memory store: the example's default
    const nextBin = path.join(app, 'node_modules', 'next', 'dist', 'bin', 'next');
    run(process.execPath, [nextBin, 'build'], { cwd: app, env, timeout: 180_000 });

    const onLog = (d) => (log += d);
    ({ proc: server, base } = await startNext(app, env, onLog));

    // withRateLimit, plans by X-Org-Id: initech is on FREE (100 per hour).
    // The server's clock runs on: 100 pass at once, then GCRA gives one
    // unit back per 36 s after the first request, so a run that took that
    // long may admit one more per 36 s, never more.
    const statuses = [];
    let first = null;
    let denied = null;
    const started = performance.now();
    for (let i = 0; i < 150 && !denied; i++) {
      const r = await fetch(`${base}/api/hello`, { headers: { 'X-Org-Id': 'initech' } });
      const body = await r.text();
      statuses.push(r.status);
      if (i === 0) first = { r, body };
      if (r.status === 429) denied = { r, body };
    }
    assert.equal(first.r.status, 200, log);
    assert.deepEqual(JSON.parse(first.body), { hello: 'initech' });
    assert.equal(first.r.headers.get('ratelimit-policy'), '"FREE";q=100;w=3600');
    assert.equal(first.r.headers.get('ratelimit'), '"FREE";r=99;t=36');
    assert.equal(first.r.headers.get('x-ratelimit-limit'), '100');
    assert.equal(first.r.headers.get('x-ratelimit-remaining'), '99');
    assert.equal(first.r.headers.get('x-ratelimit-reset'), '36');
    assert.equal(first.r.headers.get('retry-after'), null);
    const returned = Math.floor((performance.now() - started) / 36_000);
    assert.ok(denied, `no 429 after ${statuses.length} requests`);
    const admitted = statuses.length - 1;
    assert.ok(admitted >= 100 && admitted <= 100 + returned, `${admitted} admitted, ${returned} units back`);
    assert.ok(statuses.slice(0, 100).every((s) => s === 200));
    // One 36 s emission interval minus the time the 100 requests took.
    const retry = Number(denied.r.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 36, `Retry-After ${retry}`);
    assert.equal(denied.r.headers.get('x-ratelimit-remaining'), '0');
    assert.equal(denied.r.headers.get('content-type'), 'application/json');
    assert.equal(denied.body, `{"detail":"Rate limit exceeded","retry_after":${retry}}`);

    // Another organization on another plan is not affected.
    const pro = await fetch(`${base}/api/hello`, { headers: { 'X-Org-Id': 'globex' } });
    assert.equal(pro.status, 200);
    assert.equal(pro.headers.get('ratelimit-policy'), '"PRO";q=1000;w=3600');

    // limit() inside a handler: its own 10 per minute counter (a unit back
    // per 6 s after the first search: bounded like the plan's above).
    let last = null;
    let searchAdmitted = 0;
    const searchStarted = performance.now();
    for (let i = 0; i < 30; i++) {
      last = await fetch(`${base}/api/search?q=x`, { headers: { 'X-Org-Id': 'initech' } });
      const body = await last.json();
      if (i === 0) {
        assert.equal(last.status, 200);
        assert.equal(body.remaining, 9);
        assert.equal(last.headers.get('ratelimit-policy'), '"default";q=10;w=60');
      }
      if (last.status === 429) break;
      searchAdmitted++;
    }
    const searchReturned = Math.floor((performance.now() - searchStarted) / 6000);
    assert.equal(last.status, 429);
    assert.ok(searchAdmitted >= 10 && searchAdmitted <= 10 + searchReturned, `${searchAdmitted} searches admitted`);
    const searchRetry = Number(last.headers.get('retry-after'));
    assert.ok(searchRetry >= 1 && searchRetry <= 6, `Retry-After ${searchRetry}`);

    // POST /api/export: a lease, at most 2 exports running at once per
    // organization. Each export takes EXPORT_MS (3 s): of three started
    // together for acme, two run and the third is refused at once; globex,
    // started while acme's two run, is not affected; once acme's finish
    // (released in finally), acme may export again.
    const acme = [exportFor(base, 'acme'), exportFor(base, 'acme'), exportFor(base, 'acme')];
    const refused = await Promise.race(acme);
    assertExportDenied(refused);
    const globexSent = performance.now();
    const globex = exportFor(base, 'globex');
    const acmeDone = await Promise.all(acme);
    assert.deepEqual(acmeDone.map((r) => r.status).sort(), [200, 200, 429], log);
    const ran = acmeDone.filter((r) => r.status === 200);
    for (const r of ran) {
      assert.equal(r.body.org, 'org:acme');
      assert.match(r.body.report, /^\/reports\/org%3Aacme\/\d+\.csv$/);
      assert.equal(r.body.maxInFlight, 2);
      assert.ok(r.at > globexSent, 'acme\'s exports ended before globex\'s started: not concurrent');
    }
    assert.deepEqual(ran.map((r) => r.body.inFlight).sort(), [1, 2]);
    const other = await globex;
    assert.equal(other.status, 200, JSON.stringify(other));
    assert.equal(other.body.inFlight, 1);
    const again = await exportFor(base, 'acme');
    assert.equal(again.status, 200, 'acme\'s leases were not released');
    assert.equal(again.body.inFlight, 1);

    // Two instances on one Redis (TOLLGATE_URL): the 2 are shared, whichever
    // instance runs an export.
    if (REDIS_SERVER) {
      redis = await RedisServer.start();
      const redisEnv = { ...env, TOLLGATE_URL: redis.url };
      for (let i = 0; i < 2; i++) others.push(await startNext(app, redisEnv, onLog));
      const [a, b] = others.map((o) => o.base);
      const spread = [exportFor(a, 'acme'), exportFor(b, 'acme'), exportFor(a, 'acme'), exportFor(b, 'acme')];
      const denied = await Promise.race(spread);
      assertExportDenied(denied);
      // The two running exports' leases, in Redis (docs/leases.md, "How it is stored").
      const leaseSet = 'tollgate:v2:{export|org:acme}:!l';
      assert.equal(await redisCommand(redis.port, 'ZCARD', leaseSet), 2);
      const moreSent = performance.now();
      const globexOnB = exportFor(b, 'globex');
      const all = await Promise.all(spread);
      assert.deepEqual(all.map((r) => r.status).sort(), [200, 200, 429, 429], log);
      for (const r of all.filter((x) => x.status === 429)) assertExportDenied(r);
      for (const r of all.filter((x) => x.status === 200)) assert.ok(r.at > moreSent);
      assert.equal((await globexOnB).status, 200);
      assert.equal(await redisCommand(redis.port, 'EXISTS', leaseSet), 0, 'released leases were left behind');
    }
  } finally {
    await stopNext(server);
    for (const o of others) await stopNext(o.proc);
    if (redis) await redis.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
