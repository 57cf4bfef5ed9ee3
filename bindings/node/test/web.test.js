'use strict';
// tollgate/express and tollgate/plans through a real HTTP server on a free
// loopback port, on the memory store and on a throwaway redis-server.
//
// Express comes from npm at test time (installed once into a cache folder
// under the OS temp dir; TOLLGATE_TEST_NPM_CACHE_DIR overrides it); the tests
// that need it skip when npm cannot install it. With TOLLGATE_TEST_PYTHON set
// to a Python that has the tollgate package, the headers, the 429 body and
// the key strings are compared byte for byte with Python's.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { createRequire } = require('node:module');

const { RedisServer, REDIS_SERVER, freePort } = require('./redis-server');
const { track } = require('./children');

const PKG = path.resolve(__dirname, '..');
const { Limiter, UnsupportedError } = require(PKG);
const { rateLimit } = require(path.join(PKG, 'lib', 'express.js'));
const plans = require(path.join(PKG, 'lib', 'plans.js'));

const PYTHON = process.env.TOLLGATE_TEST_PYTHON || '';
const T0 = 1700000000000000; // a pinned clock for memory limiters, microseconds
const OUR_HEADERS = ['RateLimit-Policy', 'RateLimit', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'];

// ---- helpers ------------------------------------------------------------------

/** Install npm packages once into a cache folder; require() from there. */
function npmDeps(specs) {
  const id = crypto.createHash('sha256').update(specs.join(' ')).digest('hex').slice(0, 12);
  const base = process.env.TOLLGATE_TEST_NPM_CACHE_DIR || path.join(os.tmpdir(), 'tollgate-node-test-deps');
  const dir = path.join(base, id);
  const marker = path.join(dir, '.installed');
  if (!fs.existsSync(marker)) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'deps', private: true }));
    const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...specs], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 180_000,
    });
    if (r.status !== 0) return { error: `npm install ${specs.join(' ')} failed: ${(r.stderr || r.error || '').toString().slice(-500)}` };
    fs.writeFileSync(marker, '');
  }
  return { require: createRequire(path.join(dir, 'package.json')) };
}

/** A throwaway redis-server on a free loopback port (stopped by PID), or
 * null when redis-server is not installed. */
async function startRedis() {
  if (!REDIS_SERVER) return null;
  const server = new RedisServer();
  await server.start();
  return server;
}

async function listen(app) {
  const server = http.createServer(app);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(r);
      }),
  };
}

/** GET with raw header names (to check their exact spelling). */
function get(port, urlPath, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const raw = {};
        for (let i = 0; i < res.rawHeaders.length; i += 2) raw[res.rawHeaders[i]] = res.rawHeaders[i + 1];
        resolve({ status: res.statusCode, raw, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function ours(raw) {
  const out = {};
  for (const f of [...OUR_HEADERS, 'Retry-After']) if (raw[f] !== undefined) out[f] = raw[f];
  return out;
}

function python(script, arg) {
  const r = spawnSync(PYTHON, ['-c', script, JSON.stringify(arg)], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// Python's headers and 429 body for n checks of one fresh key (a memory
// limiter whose clock stands still, so every value is the one a check at the
// same instant as the first gets).
const PY_HEADERS = `
import json, sys, tollgate
from tollgate.plans import denied_body
a = json.loads(sys.argv[1])
lim = tollgate.Limiter(clock=lambda: ${T0})
pol = tollgate.Policy(a["limit"], a["period"])
out = []
for _ in range(a["n"]):
    h = tollgate.rate_limit_headers(lim.check("k", pol), pol, name=a["name"])
    out.append({"headers": h, "body": denied_body(h).decode() if "Retry-After" in h else None})
print(json.dumps(out))
`;

let express = null;
let expressSkip = false;
let expressDir = null;
before(() => {
  const deps = npmDeps(['express@5.1.0']);
  if (deps.error) expressSkip = deps.error;
  else {
    express = deps.require('express');
    expressDir = path.dirname(deps.require.resolve('express/package.json'));
  }
});

/** 6 requests against limit 5: five allowed with headers, the 6th a 429.
 * GCRA 5/h frees a unit every 720 s: RateLimit's t counts down from 720 per
 * unit charged and Retry-After from 720, from the first check. `pinned`: the
 * limiter's clock stands still, so both are exact. Otherwise (Redis' clock)
 * each may be lower by the whole seconds since the first request, measured
 * around the calls; in a run under a second they are exact too. */
async function limitPlusOne(limiter, t, pinned = false) {
  if (expressSkip) return t.skip(expressSkip);
  const app = express();
  app.use(rateLimit({ limiter, policy: { limit: 5, period: '1h' } }));
  app.get('/', (req, res) => res.json({ ok: true }));
  const srv = await listen(app);
  try {
    const answers = [];
    const late = [];
    const start = performance.now();
    for (let i = 0; i < 6; i++) {
      answers.push(await get(srv.port, '/'));
      late.push(pinned ? 0 : Math.floor((performance.now() - start) / 1000));
    }
    for (let i = 0; i < 5; i++) {
      const a = answers[i];
      assert.equal(a.status, 200);
      assert.deepEqual(JSON.parse(a.body), { ok: true });
      for (const f of OUR_HEADERS) assert.ok(a.raw[f] !== undefined, `response ${i + 1} lacks ${f}`);
      assert.equal(a.raw['Retry-After'], undefined);
      assert.equal(a.raw['RateLimit-Policy'], '"default";q=5;w=3600');
      assert.equal(a.raw['X-RateLimit-Limit'], '5');
      assert.equal(a.raw['X-RateLimit-Remaining'], String(4 - i));
      const reset = Number((/;t=(\d+)$/.exec(a.raw.RateLimit) || [])[1]);
      assert.ok(reset <= 720 * (i + 1) && reset >= 720 * (i + 1) - late[i], `response ${i + 1}: ${a.raw.RateLimit}`);
      assert.equal(a.raw.RateLimit, `"default";r=${4 - i};t=${reset}`);
    }
    const denied = answers[5];
    assert.equal(denied.status, 429);
    assert.equal(denied.raw['Content-Type'], 'application/json');
    const retry = Number(denied.raw['Retry-After']);
    assert.ok(retry <= 720 && retry >= 720 - late[5], `Retry-After: ${denied.raw['Retry-After']}`);
    assert.equal(denied.raw['Retry-After'], String(retry));
    assert.equal(denied.raw['X-RateLimit-Remaining'], '0');
    assert.equal(denied.body, `{"detail":"Rate limit exceeded","retry_after":${retry}}`);
    if (PYTHON && late[5] === 0) {
      const py = python(PY_HEADERS, { limit: 5, period: '1h', n: 6, name: 'default' });
      for (let i = 0; i < 6; i++) assert.deepEqual(ours(answers[i].raw), py[i].headers, `response ${i + 1} vs Python`);
      assert.equal(denied.body, py[5].body);
    }
  } finally {
    await srv.close();
  }
}

// ---- plans and key functions ----------------------------------------------------------

describe('tollgate/plans', () => {
  test('PLANS match Python DEFAULT_PLANS', () => {
    assert.deepEqual(plans.PLANS, {
      FREE: { limit: 100, period: '1h' },
      PRO: { limit: 1000, period: '1h' },
      ENTERPRISE: { limit: 10000, period: '1h' },
    });
    assert.ok(Object.isFrozen(plans.PLANS));
    assert.deepEqual(plans.policiesFor('PRO'), [{ limit: 1000, period: '1h' }]);
    assert.throws(() => plans.policiesFor('GOLD'), RangeError);
  });

  test('Limits picks policies by plan', () => {
    const l = new plans.Limits({ plans: plans.PLANS, plan: () => null });
    assert.deepEqual(l.forPlan(null), { policies: [plans.PLANS.FREE], name: 'FREE' });
    assert.deepEqual(l.forPlan('PRO'), { policies: [plans.PLANS.PRO], name: 'PRO' });
    assert.throws(() => l.forPlan('GOLD'), /not in plans/);
    const d = new plans.Limits({ policy: { limit: 1, period: 1000 } });
    assert.equal(d.forPlan(null).name, 'default');
    assert.ok(new plans.Limits({}).empty);
    assert.throws(() => new plans.Limits({ plans: plans.PLANS }), /plans need plan/);
  });

  const req = (peer, headers = {}) => {
    const h = {};
    for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = v;
    return { headers: h, socket: { remoteAddress: peer } };
  };

  test('key strings', () => {
    const { clientAddress, headerKey, organizationKey } = plans;
    assert.equal(clientAddress(req('203.0.113.7')), 'ip:203.0.113.7');
    assert.equal(clientAddress(req('::ffff:127.0.0.1')), 'ip:127.0.0.1');
    assert.equal(clientAddress(req('2001:db8:1:2:3:4:5:6')), 'ip:2001:db8:1:2::/64');
    assert.equal(clientAddress({ ipv6Prefix: null })(req('2001:db8:1:2:3:4:5:6')), 'ip:2001:db8:1:2:3:4:5:6');
    assert.equal(clientAddress(req(undefined)), 'ip:unknown');
    // X-Forwarded-For is ignored unless trusted; then the N-th from the right.
    const fwd = req('10.0.0.1', { 'X-Forwarded-For': '6.6.6.6, 198.51.100.4, 10.0.0.9' });
    assert.equal(clientAddress(fwd), 'ip:10.0.0.1');
    assert.equal(clientAddress({ trustForwarded: true })(fwd), 'ip:10.0.0.9');
    assert.equal(clientAddress({ trustForwarded: true, trustedProxies: 2 })(fwd), 'ip:198.51.100.4');
    assert.equal(clientAddress({ trustForwarded: true, trustedProxies: 4 })(fwd), 'ip:10.0.0.1');
    assert.throws(() => clientAddress({ trustedProxies: 0 }), RangeError);
    // A Web Request (no socket).
    const web = new Request('http://x/', { headers: { 'x-forwarded-for': '198.51.100.4', 'x-org-id': 'acme' } });
    assert.equal(clientAddress(web), 'ip:unknown');
    assert.equal(clientAddress({ trustForwarded: true })(web), 'ip:198.51.100.4');
    assert.equal(organizationKey('X-Org-Id')(web), 'org:acme');

    assert.equal(headerKey('X-API-Key')(req('1.2.3.4', { 'X-API-Key': ' k1 ' })), 'x-api-key:k1');
    assert.equal(headerKey('X-API-Key')(req('1.2.3.4')), 'ip:1.2.3.4');
    assert.equal(headerKey('X-API-Key', { fallback: null })(req('1.2.3.4')), null);
    const sha = crypto.createHash('sha256').update('k1').digest('hex');
    assert.equal(headerKey('X-API-Key', { hash: true })(req('1.2.3.4', { 'X-API-Key': 'k1' })), `x-api-key:sha256:${sha}`);
    const long = 'a'.repeat(129);
    const longSha = crypto.createHash('sha256').update(long).digest('hex');
    assert.equal(organizationKey()(req('1.2.3.4', { 'X-Org-Id': long })), `org:sha256:${longSha}`);
    assert.equal(organizationKey('X-Org-Id')(req('1.2.3.4', { 'X-Org-Id': 'acme' })), 'org:acme');
    assert.equal(organizationKey({ getter: (r) => r.user })({ ...req('1.2.3.4'), user: 'initech' }), 'org:initech');
  });

  test('key strings equal Python tollgate.plans', { skip: !PYTHON && 'set TOLLGATE_TEST_PYTHON' }, () => {
    const cases = [
      ['203.0.113.7', {}],
      ['::ffff:192.0.2.1', {}],
      ['2001:db8:1:2:3:4:5:6', {}],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', {}],
      ['fe80::1', {}],
      [null, {}],
      ['10.0.0.1', { 'X-Forwarded-For': '6.6.6.6, 198.51.100.4, 10.0.0.9' }],
      ['10.0.0.1', { 'X-Forwarded-For': '[2001:db8::5]:443, 203.0.113.9:8080' }],
      ['10.0.0.1', { 'X-Forwarded-For': 'not-an-ip' }],
      ['10.0.0.1', { 'X-Forwarded-For': ' , 01.2.3.4' }],
      ['10.0.0.1', { 'X-API-Key': 'secret', 'X-Org-Id': 'acme' }],
      ['10.0.0.1', { 'X-API-Key': '  ', 'X-Org-Id': 'ä-org' }],
      ['10.0.0.1', { 'X-Org-Id': 'x'.repeat(200) }],
    ];
    const fns = {
      client_address: plans.clientAddress,
      'client_address(trust_forwarded=True)': plans.clientAddress({ trustForwarded: true }),
      'client_address(trust_forwarded=True, trusted_proxies=2)': plans.clientAddress({ trustForwarded: true, trustedProxies: 2 }),
      'client_address(ipv6_prefix=None)': plans.clientAddress({ ipv6Prefix: null }),
      'client_address(ipv6_prefix=48)': plans.clientAddress({ ipv6Prefix: 48 }),
      'header_key("X-API-Key")': plans.headerKey('X-API-Key'),
      'header_key("X-API-Key", hash=True)': plans.headerKey('X-API-Key', { hash: true }),
      'organization_key("X-Org-Id")': plans.organizationKey('X-Org-Id'),
      'organization_key("X-Org-Id", fallback=None)': plans.organizationKey('X-Org-Id', { fallback: null }),
    };
    const py = python(
      `
import json, sys
from tollgate.plans import client_address, header_key, organization_key
class H(dict):
    def get(self, name, default=None):
        for k, v in self.items():
            if k.lower() == name.lower():
                return v
        return default
class R:
    def __init__(self, peer, headers):
        self.remote_addr = peer
        self.headers = H(headers)
a = json.loads(sys.argv[1])
out = []
for peer, headers in a["cases"]:
    row = {}
    for name in a["fns"]:
        row[name] = eval(name)(R(peer, headers))
    out.append(row)
print(json.dumps(out))
`,
      { cases, fns: Object.keys(fns) },
    );
    cases.forEach(([peer, headers], i) => {
      for (const [name, fn] of Object.entries(fns)) {
        assert.equal(fn(req(peer || undefined, headers)), py[i][name], `${name} on case ${i}`);
      }
    });
  });
});

// ---- Express -------------------------------------------------------------------------

describe('tollgate/express, memory store', () => {
  test('limit+1: headers on every answer, then 429 with Retry-After', async (t) => {
    const limiter = new Limiter({ clock: () => T0 });
    try {
      await limitPlusOne(limiter, t, true);
    } finally {
      await limiter.close();
    }
  });

  test('plans keyed by organization', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    // Pinned: on the real clock PRO's 1000/h gives a unit back every 3.6 s,
    // and globex's remaining would then read 999 again.
    const limiter = new Limiter({ clock: () => T0 });
    const PLAN_BY_ORG = { initech: 'FREE', globex: 'PRO', acme: 'ENTERPRISE' };
    const app = express();
    app.use(
      rateLimit({
        limiter,
        key: plans.organizationKey('X-Org-Id'),
        plans: plans.PLANS,
        plan: (req) => PLAN_BY_ORG[req.get('X-Org-Id')] || 'FREE',
      }),
    );
    app.get('/', (req, res) => res.send('hi'));
    const srv = await listen(app);
    try {
      let a = await get(srv.port, '/', { 'X-Org-Id': 'globex' });
      assert.equal(a.status, 200);
      assert.equal(a.raw['RateLimit-Policy'], '"PRO";q=1000;w=3600');
      assert.equal(a.raw['X-RateLimit-Remaining'], '999');
      a = await get(srv.port, '/', { 'X-Org-Id': 'acme' });
      assert.equal(a.raw['RateLimit-Policy'], '"ENTERPRISE";q=10000;w=3600');
      a = await get(srv.port, '/');
      assert.equal(a.raw['RateLimit-Policy'], '"FREE";q=100;w=3600');
      a = await get(srv.port, '/', { 'X-Org-Id': 'globex' });
      assert.equal(a.raw['X-RateLimit-Remaining'], '998');
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test('a null key skips limiting; route limits and the binding headers', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 }); // exact counts however slow
    const app = express();
    app.use(
      rateLimit({
        limiter,
        policy: { limit: 100, period: '1h' },
        key: (req) => (req.path === '/health' ? null : plans.clientAddress(req)),
      }),
    );
    app.get('/health', (req, res) => res.send('ok'));
    app.get('/search', rateLimit({ limiter, policy: { limit: 2, period: '1m' }, scope: 'search' }), (req, res) => res.send('found'));
    app.get('/busy', (req, res) => res.set('Retry-After', '30').status(503).send('busy'));
    const srv = await listen(app);
    try {
      let a = await get(srv.port, '/health');
      assert.equal(a.status, 200);
      for (const f of OUR_HEADERS) assert.equal(a.raw[f], undefined);
      // The route's 2/min binds before the global 100/h.
      a = await get(srv.port, '/search');
      assert.equal(a.status, 200);
      assert.equal(a.raw['RateLimit-Policy'], '"default";q=2;w=60');
      a = await get(srv.port, '/search');
      assert.equal(a.raw['X-RateLimit-Remaining'], '0');
      a = await get(srv.port, '/search');
      assert.equal(a.status, 429);
      assert.equal(a.raw['RateLimit-Policy'], '"default";q=2;w=60');
      // The global limit was charged by the 2 allowed searches and /busy:
      // the route's denial gave the global charge back.
      a = await get(srv.port, '/busy');
      assert.equal(a.status, 503);
      assert.equal(a.raw['X-RateLimit-Remaining'], '97');
      assert.equal(a.raw['Retry-After'], '30'); // the app's own, kept
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test('works as plain node:http middleware, and rejects bad options', async () => {
    assert.throws(() => rateLimit({}), /limiter/);
    // Pinned: at 1/s on the real clock a second between the two requests
    // lets the second through.
    const limiter = new Limiter({ clock: () => T0 });
    assert.throws(() => rateLimit({ limiter }), /policy/);
    const mw = rateLimit({ limiter, policy: { limit: 1, period: '1s' } });
    const srv = await listen((req, res) => mw(req, res, () => res.end('ok')));
    try {
      assert.equal((await get(srv.port, '/')).status, 200);
      const a = await get(srv.port, '/');
      assert.equal(a.status, 429);
      assert.equal(a.raw['Retry-After'], '1');
    } finally {
      await srv.close();
      await limiter.close();
    }
  });
});

describe('tollgate/express, Redis store', () => {
  let redis = null;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    if (redis) await redis.stop();
  });

  test('limit+1 on Redis, headers equal Python', async (t) => {
    if (!redis) return t.skip('no redis-server');
    const limiter = new Limiter({ url: redis.url, keyPrefix: `webtest:${process.pid}:` });
    try {
      await limitPlusOne(limiter, t);
    } finally {
      await limiter.close();
    }
  });

  test('two limiters (two servers) share one limit', async (t) => {
    if (!redis) return t.skip('no redis-server');
    if (expressSkip) return t.skip(expressSkip);
    const prefix = `webshare:${process.pid}:`;
    const a = new Limiter({ url: redis.url, keyPrefix: prefix });
    const b = new Limiter({ url: redis.url, keyPrefix: prefix });
    const servers = [];
    try {
      for (const limiter of [a, b]) {
        const app = express();
        app.use(rateLimit({ limiter, key: plans.organizationKey(), policy: { limit: 3, period: '1h' } }));
        app.get('/', (req, res) => res.send('ok'));
        servers.push(await listen(app));
      }
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await get(servers[i % 2].port, '/', { 'X-Org-Id': 'acme' })).status);
      assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429]);
    } finally {
      for (const s of servers) await s.close();
      await a.close();
      await b.close();
    }
  });
});

// A global limit and a route's on one request: a request the route denies
// costs nothing under the global limit, and one the global limit denies
// costs nothing on the route. Two forms: one middleware with `limits` (one
// checkKeys call) and the usual stacking (app.use, then the route's).
const G = { limit: 5, period: '1h', name: 'global' };
const R = { limit: 2, period: '1h', algorithm: 'fixed_window', name: 'login' };
const peek = async (limiter, key, p) => (await limiter.check(key, p, { cost: 0 })).remaining;

/** An app whose /login is limited by G (key "client") and R (scope login),
 * in the given form; /other by G only. */
function jointApp(limiter, form, extra = {}) {
  const key = () => 'client';
  const app = express();
  if (form === 'limits') {
    app.get('/login', rateLimit({ limiter, key, limits: [{ policy: G }, { policy: R, scope: 'login' }], ...extra }), (req, res) => res.send('in'));
    app.get('/other', rateLimit({ limiter, key, policy: G }), (req, res) => res.send('other'));
  } else {
    app.use(rateLimit({ limiter, key, policy: G, ...(extra.global || {}) }));
    app.get('/login', rateLimit({ limiter, key, policy: R, scope: 'login', ...(extra.route || {}) }), (req, res) => res.send('in'));
    app.get('/other', (req, res) => res.send('other'));
  }
  return listen(app);
}

/** The checks both forms must pass, on any store. */
async function jointChecks(limiter, form) {
  const srv = await jointApp(limiter, form);
  try {
    let a = await get(srv.port, '/login');
    assert.equal(a.status, 200);
    // The headers describe the limit with the fewest remaining: the route's.
    assert.equal(a.raw['RateLimit-Policy'], '"default";q=2;w=3600');
    assert.equal(a.raw['X-RateLimit-Remaining'], '1');
    assert.equal((await get(srv.port, '/login')).status, 200);
    assert.equal(await peek(limiter, 'client', G), 3);
    for (let i = 0; i < 3; i++) {
      a = await get(srv.port, '/login');
      assert.equal(a.status, 429);
      assert.equal(a.raw['RateLimit-Policy'], '"default";q=2;w=3600');
      assert.ok(Number(a.raw['Retry-After']) >= 1);
      assert.equal(a.body, `{"detail":"Rate limit exceeded","retry_after":${a.raw['Retry-After']}}`);
    }
    // The route denied three requests: the global limit is where it was.
    assert.equal(await peek(limiter, 'client', G), 3);
    // The global limit denies: the route is not charged.
    await limiter.reset('client');
    await limiter.reset('login|client');
    for (let i = 0; i < 5; i++) assert.equal((await get(srv.port, '/other')).status, 200);
    a = await get(srv.port, '/login');
    assert.equal(a.status, 429);
    assert.equal(a.raw['RateLimit-Policy'], '"default";q=5;w=3600');
    assert.equal(await peek(limiter, 'login|client', R), 2);
    assert.equal(await peek(limiter, 'client', G), 0);
  } finally {
    await srv.close();
  }
}

/** The statuses of `n` GETs of `urlPath`, one after another (a turn of
 * the event loop between them: a refund follows 'finish'). */
async function statusesAt(port, urlPath, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push((await get(port, urlPath)).status);
    await new Promise((r) => setImmediate(r));
  }
  return out;
}

/** A limiter that counts the calls the middleware makes. */
function counting(limiter, overrides = {}) {
  const calls = [];
  const spy = {
    calls,
    check: (key, p, o) => {
      calls.push(`check ${key} ${o.cost}`);
      return limiter.check(key, p, o);
    },
    checkKeys: (pairs, o) => {
      calls.push(`checkKeys ${pairs.map((x) => x[0]).join(' ')} ${o.cost}`);
      return limiter.checkKeys(pairs, o);
    },
    refund: (key, p, o) => {
      calls.push(`refund ${key} ${o.amount}`);
      return limiter.refund(key, p, o);
    },
    ...overrides,
  };
  return spy;
}

describe('tollgate/express, a global limit and a route\'s in one decision', () => {
  let redis = null;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    if (redis) await redis.stop();
  });

  for (const form of ['limits', 'stacked']) {
    test(`${form}: a route denial leaves the global limit unchanged, and the reverse (memory)`, async (t) => {
      if (expressSkip) return t.skip(expressSkip);
      const limiter = new Limiter({ clock: () => T0 });
      try {
        await jointChecks(limiter, form);
      } finally {
        await limiter.close();
      }
    });

    test(`${form}: a route denial leaves the global limit unchanged, and the reverse (Redis)`, async (t) => {
      if (!redis) return t.skip('no redis-server');
      if (expressSkip) return t.skip(expressSkip);
      const limiter = new Limiter({ url: redis.url, keyPrefix: `webjoint:${form}:${process.pid}:`, failureMode: 'error' });
      try {
        await jointChecks(limiter, form);
      } finally {
        await limiter.close();
      }
    });
  }

  test('limits: one checkKeys call per request; the stacked form gives the global charge back', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    try {
      let spy = counting(limiter);
      let srv = await jointApp(spy, 'limits');
      try {
        assert.equal((await get(srv.port, '/login')).status, 200);
        assert.equal((await get(srv.port, '/login')).status, 200);
        assert.equal((await get(srv.port, '/login')).status, 429);
        assert.deepEqual(spy.calls, Array(3).fill('checkKeys client login|client 1'));
      } finally {
        await srv.close();
      }
      await limiter.reset('client');
      await limiter.reset('login|client');
      spy = counting(limiter);
      srv = await jointApp(spy, 'stacked');
      try {
        for (let i = 0; i < 3; i++) await get(srv.port, '/login');
        assert.deepEqual(spy.calls, [
          'check client 1', 'check login|client 1',
          'check client 1', 'check login|client 1',
          'check client 1', 'check login|client 1', 'refund client 1',
        ]);
      } finally {
        await srv.close();
      }
    } finally {
      await limiter.close();
    }
  });

  test('stacked: the global charge comes back once, whatever its count mode', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    // count 'successful' on the global limit: a 429 does not count, and its
    // charge was given back already when the route denied.
    const srv = await jointApp(limiter, 'stacked', { global: { count: 'successful' }, route: { count: 'failed' } });
    try {
      await limiter.check('client', G, { cost: 2 });
      // Successful logins are free on the route (count 'failed') and count
      // globally, until the global limit denies (the route untouched).
      assert.deepEqual(await statusesAt(srv.port, '/login', 4), [200, 200, 200, 429]);
      assert.equal(await peek(limiter, 'login|client', R), 2);
      assert.equal(await peek(limiter, 'client', G), 0);
      await limiter.reset('client');
      await limiter.check('client', G, { cost: 2 });
      const app = express();
      app.use(rateLimit({ limiter, key: () => 'client', policy: G, count: 'successful' }));
      app.get('/login', rateLimit({ limiter, key: () => 'client', policy: R, scope: 'login' }), (req, res) => res.send('in'));
      const srv2 = await listen(app);
      try {
        await limiter.reset('login|client');
        // 2 units used already, which a second give-back would eat into.
        assert.deepEqual(await statusesAt(srv2.port, '/login', 4), [200, 200, 429, 429]);
        assert.equal(await peek(limiter, 'client', G), 1); // 2 + two logins; the 429s gave theirs back once
      } finally {
        await srv2.close();
      }
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test("limits with count 'failed': a response that does not count gives back on every key", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    const app = express();
    app.use(rateLimit({ limiter, key: () => 'client', limits: [{ policy: G }, { policy: R, scope: 'login' }], count: 'failed', cost: 1 }));
    app.get('/', (req, res) => res.status(Number(req.query.s || 200)).send('answer'));
    const srv = await listen(app);
    try {
      assert.deepEqual(await statuses(srv.port, [200, 200, 200]), [200, 200, 200]);
      assert.equal(await peek(limiter, 'client', G), 5);
      assert.equal(await peek(limiter, 'login|client', R), 2);
      assert.deepEqual(await statuses(srv.port, [401, 401, 401]), [401, 401, 429]);
      assert.equal(await peek(limiter, 'client', G), 3);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test('limits: keys in several cluster slots fall back to two steps (a limiter double for that error)', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    const spy = counting(limiter, {
      checkKeys: (pairs, o) => {
        spy.calls.push(`checkKeys ${o.cost}`);
        return Promise.reject(new UnsupportedError('checkKeys: the keys lie in 2 cluster slots', 'RL_E_UNSUPPORTED'));
      },
    });
    const srv = await jointApp(spy, 'limits');
    try {
      assert.deepEqual(await statusesAt(srv.port, '/login', 2), [200, 200]);
      // The route first: allowed, then the global limit.
      assert.deepEqual(spy.calls.splice(0), [
        'checkKeys 1', 'check login|client 1', 'check client 1',
        'checkKeys 1', 'check login|client 1', 'check client 1',
      ]);
      // The route denies: the global limit is not touched.
      const a = await get(srv.port, '/login');
      assert.equal(a.status, 429);
      assert.equal(a.raw['RateLimit-Policy'], '"default";q=2;w=3600');
      assert.deepEqual(spy.calls.splice(0), ['checkKeys 1', 'check login|client 1']);
      assert.equal(await peek(limiter, 'client', G), 3);
      // The global limit denies: the route's charge is given back.
      await limiter.reset('login|client');
      await limiter.check('client', G, { cost: 3 });
      const b = await get(srv.port, '/login');
      assert.equal(b.status, 429);
      assert.equal(b.raw['RateLimit-Policy'], '"default";q=5;w=3600');
      assert.deepEqual(spy.calls.splice(0), ['checkKeys 1', 'check login|client 1', 'check client 1', 'refund login|client 1']);
      assert.equal(await peek(limiter, 'login|client', R), 2);
      // Another error of checkKeys is the request's error (next(err): 500).
      spy.checkKeys = () => Promise.reject(new Error('store down'));
      assert.equal((await get(srv.port, '/login')).status, 500);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test('limits: a null key leaves its limit out; a key twice is checked in two steps', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    const spy = counting(limiter);
    const app = express();
    app.get('/', rateLimit({
      limiter: spy,
      key: () => 'client',
      limits: [
        { policy: G },
        { policy: R, key: (req) => req.query.u || null, scope: 'user' },
      ],
    }), (req, res) => res.send('ok'));
    app.get('/same', rateLimit({ limiter: spy, key: () => 'client', limits: [{ policy: G }, { policy: R }] }), (req, res) => res.send('ok'));
    const srv = await listen(app);
    try {
      let a = await get(srv.port, '/');
      assert.equal(a.raw['RateLimit-Policy'], '"default";q=5;w=3600');
      a = await get(srv.port, '/?u=ann');
      assert.equal(a.raw['RateLimit-Policy'], '"default";q=2;w=3600');
      assert.deepEqual(spy.calls.splice(0), ['check client 1', 'checkKeys client user|ann 1']);
      await limiter.reset('client');
      a = await get(srv.port, '/same');
      assert.equal(a.status, 200);
      assert.deepEqual(spy.calls.splice(0), ['check client 1', 'check client 1']);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test('limits: options are validated when the middleware is made', () => {
    const limiter = new Limiter();
    const one = { policy: G };
    const bad = [
      [{ limits: one }, TypeError, 'limits must be an array of limits ({ policy | policies | plans + plan, key?, scope?, name? }), not object'],
      [{ limits: [] }, RangeError, 'limits: 1 to 8 limits (the keys of one checkKeys call), got 0'],
      [{ limits: Array(9).fill(one) }, RangeError, 'limits: 1 to 8 limits (the keys of one checkKeys call), got 9'],
      [{ limits: [one], policy: G }, TypeError, 'rateLimit: give policy in each of limits, not beside them'],
      [{ limits: [one], scope: 'x' }, TypeError, 'rateLimit: give scope in each of limits, not beside them'],
      [{ limits: [one, { policy: R, cost: 2 }] }, TypeError, 'limits[1]: cost applies to the whole request; give it beside limits'],
      [{ limits: [one, { policy: R, count: 'failed' }] }, TypeError, 'limits[1]: count applies to the whole request; give it beside limits'],
      [{ limits: [one, {}] }, TypeError, 'limits[1] needs policy (or policies), or plans with plan(request)'],
      [{ limits: [one, null] }, TypeError, 'limits[1] must be a limit ({ policy | policies | plans + plan, key?, scope?, name? }), not null'],
      [{ limits: [one, { policy: R, key: 'ip' }] }, TypeError, 'limits[1].key must be a key function (request -> string | Buffer | null), not string'],
      [{ limits: [one, { policy: R, scope: 3 }] }, TypeError, 'scope must be a string, not number'],
      [{ limits: [one, one], limiter: { check: () => {} } }, TypeError, 'rateLimit: several limits need a limiter with checkKeys(): a tollgate Limiter'],
    ];
    for (const [o, cls, message] of bad) assert.throws(() => rateLimit({ limiter, ...o }), { name: cls.name, message });
    assert.equal(typeof rateLimit({ limiter: { check: () => {} }, limits: [one] }), 'function');
    assert.equal(typeof rateLimit({ limiter, limits: [one, { plans: plans.PLANS, plan: () => null, scope: 's' }] }), 'function');
    limiter.close();
  });
});

// count 'failed' / 'successful': every request is charged before the
// handler; a response that does not count gets its units back on 'finish'.
// The route answers the status in ?s= (default 200).
async function countApp(limiter, options) {
  const app = express();
  app.use(rateLimit({ limiter, key: () => 'client', policy: { limit: 3, period: '1h' }, ...options }));
  app.get('/', (req, res) => res.status(Number(req.query.s || 200)).send('answer'));
  return listen(app);
}

/** The statuses of GETs answering each of `wanted`, one after another (a
 * turn of the event loop between them: the refund follows 'finish'). */
async function statuses(port, wanted) {
  const out = [];
  for (const s of wanted) {
    out.push((await get(port, `/?s=${s}`)).status);
    await new Promise((r) => setImmediate(r));
  }
  return out;
}

describe('tollgate/express, count: charge after the response', () => {
  let redis = null;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    if (redis) await redis.stop();
  });

  test("count 'failed': successful responses give their unit back, failed ones keep it", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    const srv = await countApp(limiter, { count: 'failed' });
    try {
      const first = await get(srv.port, '/');
      assert.equal(first.status, 200);
      // The headers describe the state after the charge.
      assert.equal(first.raw['X-RateLimit-Remaining'], '2');
      assert.deepEqual(await statuses(srv.port, [200, 200, 200, 200]), [200, 200, 200, 200]);
      // 400 is the first failed status by default.
      assert.deepEqual(await statuses(srv.port, [399, 400, 401, 403, 401, 200]), [399, 400, 401, 403, 429, 429]);
      assert.equal(limiter.checkSync('client', { limit: 3, period: '1h' }, { cost: 0 }).remaining, 0);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test("count 'successful': failed responses give their unit back; a 429 gives nothing back", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    const srv = await countApp(limiter, { count: 'successful' });
    try {
      assert.deepEqual(await statuses(srv.port, [401, 500, 404, 401, 403]), [401, 500, 404, 401, 403]);
      // The denied requests (429, a failed status) charged nothing: no refund
      // lets a later one through.
      assert.deepEqual(await statuses(srv.port, [200, 201, 200, 200, 200, 401]), [200, 201, 200, 429, 429, 429]);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test("the default count 'all' keeps every charge; a custom failed predicate", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    let srv = await countApp(limiter, {});
    try {
      assert.deepEqual(await statuses(srv.port, [500, 200, 401, 200]), [500, 200, 401, 429]);
    } finally {
      await srv.close();
    }
    await limiter.reset('client');
    // Only 5xx and 418 count as failed: 401s are successes here.
    const seen = [];
    srv = await countApp(limiter, {
      count: 'failed',
      failed: (status) => {
        seen.push(status);
        return status === 418 || status >= 500;
      },
    });
    try {
      assert.deepEqual(await statuses(srv.port, [401, 401, 401, 401, 200]), [401, 401, 401, 401, 200]);
      assert.deepEqual(await statuses(srv.port, [418, 503, 418, 401]), [418, 503, 418, 429]);
      assert.deepEqual(seen, [401, 401, 401, 401, 200, 418, 503, 418]);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test('a refund that fails is ignored, as is a failed predicate that throws', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ clock: () => T0 });
    let srv = await countApp(limiter, { count: 'failed', failed: () => { throw new Error('predicate'); } });
    try {
      // A throwing predicate keeps the charge (and the server runs on).
      assert.deepEqual(await statuses(srv.port, [200, 200, 200, 200]), [200, 200, 200, 429]);
    } finally {
      await srv.close();
    }
    await limiter.reset('client');
    // The key is reset between the charge and the refund: nothing to give
    // back (NothingToRefundError), ignored.
    const app = express();
    app.use(rateLimit({ limiter, key: () => 'client', policy: { limit: 3, period: '1h' }, count: 'failed' }));
    app.get('/', async (req, res) => {
      await limiter.reset('client');
      res.send('ok');
    });
    srv = await listen(app);
    try {
      assert.deepEqual(await statuses(srv.port, [200, 200]), [200, 200]);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test("count 'failed' on Redis, with cost 2", async (t) => {
    if (!redis) return t.skip('no redis-server');
    if (expressSkip) return t.skip(expressSkip);
    const limiter = new Limiter({ url: redis.url, keyPrefix: `webcount:${process.pid}:`, failureMode: 'error' });
    const srv = await countApp(limiter, { count: 'failed', policy: { limit: 6, period: '1h' }, cost: 2 });
    try {
      assert.deepEqual(await statuses(srv.port, [200, 200, 200, 200, 200]), [200, 200, 200, 200, 200]);
      assert.equal((await limiter.check('client', { limit: 6, period: '1h' }, { cost: 0 })).remaining, 6);
      assert.deepEqual(await statuses(srv.port, [401, 401, 401, 200]), [401, 401, 401, 429]);
    } finally {
      await srv.close();
      await limiter.close();
    }
  });

  test('count and failed are validated', () => {
    const limiter = new Limiter();
    const base = { limiter, policy: { limit: 1, period: '1s' } };
    assert.throws(() => rateLimit({ ...base, count: 'some' }), { name: 'TypeError', message: `count must be 'all', 'failed' or 'successful', not "some"` });
    assert.throws(() => rateLimit({ ...base, count: 1 }), { name: 'TypeError', message: `count must be 'all', 'failed' or 'successful', not number` });
    assert.throws(() => rateLimit({ ...base, count: null }), { name: 'TypeError', message: `count must be 'all', 'failed' or 'successful', not null` });
    assert.throws(() => rateLimit({ ...base, count: 'failed', failed: 400 }), { name: 'TypeError', message: 'failed must be a function status -> boolean, not number' });
    for (const count of ['all', 'failed', 'successful']) assert.equal(typeof rateLimit({ ...base, count }), 'function');
    // Giving back needs refund(): a limiter-like object with check() only
    // does for count 'all'.
    const checkOnly = { check: (...a) => limiter.check(...a) };
    assert.throws(() => rateLimit({ ...base, limiter: checkOnly, count: 'failed' }), { name: 'TypeError', message: "count 'failed' needs a limiter with refund(): a tollgate Limiter" });
    assert.equal(typeof rateLimit({ ...base, limiter: checkOnly }), 'function');
    assert.deepEqual(plans.COUNT_MODES, ['all', 'failed', 'successful']);
    limiter.close();
  });
});

describe('tollgate/express, Redis unreachable: the failure mode decides', () => {
  let deadUrl;
  before(async () => {
    deadUrl = `redis://127.0.0.1:${await freePort()}`;
  });

  async function oneRequest(limiterOptions, mwOptions = {}) {
    const limiter = new Limiter({ url: deadUrl, timeoutMs: 200, connectTimeoutMs: 200, ...limiterOptions });
    const app = express();
    app.use(rateLimit({ limiter, policy: { limit: 10, period: '1m' }, ...mwOptions }));
    app.get('/', (req, res) => res.json({ source: res.locals.rateLimit.decision.source }));
    app.use((err, req, res, next) => res.status(500).json({ error: err.code || err.name }));
    const srv = await listen(app);
    try {
      return await get(srv.port, '/');
    } finally {
      await srv.close();
      await limiter.close();
    }
  }

  test("'open' lets the request through, with headers", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const a = await oneRequest({ failureMode: 'open' });
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body), { source: 'fail_open' });
    assert.equal(a.raw['X-RateLimit-Limit'], '10');
  });

  test("'closed' answers 429", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const a = await oneRequest({ failureMode: 'closed' });
    assert.equal(a.status, 429);
    assert.ok(Number(a.raw['Retry-After']) >= 1);
  });

  test("'local' answers from the in-process fallback", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    const a = await oneRequest({ failureMode: 'local' });
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body), { source: 'local' });
  });

  test("'error' goes to next(err), or to onError", async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    let a = await oneRequest({ failureMode: 'error' });
    assert.equal(a.status, 500);
    assert.match(JSON.parse(a.body).error, /RL_E_|Error/);
    a = await oneRequest(
      { failureMode: 'error' },
      { onError: (err, req, res) => res.status(503).set('Retry-After', '5').send('limiter down') },
    );
    assert.equal(a.status, 503);
    assert.equal(a.body, 'limiter down');
  });
});

describe('examples/node/express-app', () => {
  test('plans by X-Org-Id and the /search limit, as a user runs it', async (t) => {
    if (expressSkip) return t.skip(expressSkip);
    // node server.js, resolving express from the test's npm cache and
    // tollgate from this checkout (NODE_PATH), on a free port.
    const example = path.resolve(PKG, '..', '..', 'examples', 'node', 'express-app');
    const mods = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-example-'));
    fs.symlinkSync(PKG, path.join(mods, 'tollgate'));
    const port = await freePort();
    const env = { ...process.env, PORT: String(port), NODE_PATH: [mods, path.dirname(expressDir)].join(path.delimiter) };
    delete env.TOLLGATE_URL;
    const proc = track(spawn(process.execPath, [path.join(example, 'server.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let log = '';
    proc.stderr.on('data', (d) => (log += d));
    try {
      await new Promise((resolve, reject) => {
        proc.stdout.on('data', (d) => {
          log += d;
          if (log.includes('listening')) resolve();
        });
        proc.once('exit', (code) => reject(new Error(`server.js exited ${code}: ${log}`)));
      });
      let a = await get(port, '/', { 'X-Org-Id': 'globex' });
      assert.equal(a.status, 200, log);
      assert.deepEqual(JSON.parse(a.body), { hello: 'globex', plan: 'PRO' });
      assert.equal(a.raw['RateLimit-Policy'], '"PRO";q=1000;w=3600');
      a = await get(port, '/');
      assert.equal(a.raw['RateLimit-Policy'], '"FREE";q=100;w=3600');
      // The server runs on the real clock: /search's 10/min gives a unit
      // back 6 s after an organization's first search, its plan's 100/h
      // (FREE, for an organization it does not know) 36 s after. An attempt
      // that took 6 s or more proves nothing and is made again with a fresh
      // organization. (ENTERPRISE's 10000/h gave one back every 0.36 s.)
      let exact = false;
      for (let attempt = 0; attempt < 3 && !exact; attempt++) {
        const org = { 'X-Org-Id': `search-${attempt}` };
        const started = performance.now();
        const searches = [];
        for (let i = 0; i < 11; i++) searches.push(await get(port, '/search', org));
        // The plan's limit was charged by every allowed /search call; the
        // denied one was given back when /search's limit denied it.
        const plan = await get(port, '/', org);
        for (const s of searches.slice(0, 10)) assert.equal(s.status, 200, log);
        if (performance.now() - started >= 6000) continue;
        exact = true;
        a = searches[10];
        assert.equal(a.status, 429);
        assert.equal(a.raw['RateLimit-Policy'], '"default";q=10;w=60');
        assert.ok(Number(a.raw['Retry-After']) >= 1);
        assert.equal(plan.raw['RateLimit-Policy'], '"FREE";q=100;w=3600');
        assert.equal(plan.raw['X-RateLimit-Remaining'], String(100 - 11));
      }
      assert.ok(exact, 'three attempts each took 6 s or more');
    } finally {
      // The server ran until we stopped it, and then ended by our signal (or
      // exited 0): a crash after its last answer fails the test too.
      const running = proc.exitCode === null && proc.signalCode === null;
      const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
      if (running) process.kill(proc.pid, 'SIGTERM');
      const end = running ? await exited : { code: proc.exitCode, signal: proc.signalCode };
      fs.rmSync(mods, { recursive: true, force: true });
      assert.ok(running, `server.js exited before the test ended: ${log}`);
      assert.ok(end.code === 0 || end.signal === 'SIGTERM', `server.js ended with ${JSON.stringify(end)}: ${log}`);
    }
  });
});
