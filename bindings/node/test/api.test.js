'use strict';
// The JS API on the memory store: results, policies, errors, wrong types,
// headers, close(), worker_threads.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { Worker } = require('node:worker_threads');

const tollgate = require('..');
const {
  Limiter, Policy, policy, rateLimitHeaders, version,
  TollgateError, ConnectionError, TimeoutError, AuthError, TLSError, ProtocolError,
  InvalidArgumentError, UnsupportedError,
} = tollgate;

const T0 = 1700000000000000; // a fixed clock, microseconds

test('exports', () => {
  assert.equal(typeof version, 'string');
  assert.match(version, /^\d+\.\d+\.\d+/);
  for (const C of [ConnectionError, TimeoutError, AuthError, TLSError, ProtocolError, InvalidArgumentError, UnsupportedError]) {
    assert.ok(new C('x', 'RL_E_INTERNAL') instanceof TollgateError);
    assert.ok(new C('x') instanceof Error);
  }
});

test('ESM entry re-exports the same objects', async () => {
  const esm = await import('../lib/index.mjs');
  assert.equal(esm.Limiter, Limiter);
  assert.equal(esm.default.Limiter, Limiter);
  assert.equal(esm.rateLimitHeaders, rateLimitHeaders);
  assert.equal(esm.TimeoutError, TimeoutError);
});

test('checkSync: a plain Decision of its own per call, charged only when allowed', () => {
  const lim = new Limiter({ clock: () => T0 });
  const p = policy(3, '1s');
  const ds = [1, 2, 3, 4].map(() => lim.checkSync('user:1', p));
  assert.deepEqual(ds.map((d) => d.allowed), [true, true, true, false]);
  assert.deepEqual(ds.map((d) => d.remaining), [2, 1, 0, 0]);
  const d = ds[3];
  // Each call builds its own object (a shared result buffer underneath).
  assert.equal(new Set(ds).size, 4);
  assert.equal(ds[2].allowed, true);
  assert.equal(Object.getPrototypeOf(d), Object.prototype);
  assert.deepEqual(Object.keys(d), ['allowed', 'limit', 'remaining', 'resetAfter', 'retryAfter', 'source', 'policyIndex', 'shadow']);
  assert.equal(d.limit, 3);
  assert.equal(d.source, 'store');
  assert.equal(d.policyIndex, 0);
  assert.ok(d.retryAfter > 0 && d.retryAfter <= 334);
  assert.equal(ds[0].retryAfter, 0);
  // cost 0 peeks; cost above capacity can never pass
  assert.equal(lim.checkSync('user:2', p, { cost: 0 }).remaining, 3);
  const never = lim.checkSync('user:2', p, { cost: 4 });
  assert.equal(never.allowed, false);
  assert.equal(never.retryAfter, Infinity);
  assert.equal(lim.checkSync('user:2', p, { cost: 3 }).remaining, 0);
});

test('check() resolves like checkSync and never throws synchronously', async () => {
  const lim = new Limiter({ clock: () => T0 });
  const p = { limit: 2, period: 1000 };
  const d = await lim.check('k', p);
  assert.equal(d.allowed, true);
  assert.equal(d.remaining, 1);
  const bad = lim.check(42, p);
  assert.ok(bad instanceof Promise);
  await assert.rejects(bad, TypeError);
  // A negative cost is a refund, down to -(2^53 - 1).
  await assert.rejects(lim.check('k', p, { cost: -(2 ** 53) }), (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_INVALID_ARG');
  assert.equal((await lim.check('k', p, { cost: -1 })).remaining, 2);
});

test('keys: string, Buffer and Uint8Array are the same bytes', () => {
  const lim = new Limiter({ clock: () => T0 });
  const p = policy(10, '1m');
  lim.checkSync('clé', p);
  assert.equal(lim.checkSync(Buffer.from('clé'), p).remaining, 8);
  assert.equal(lim.checkSync(new TextEncoder().encode('clé'), p).remaining, 7);
  assert.equal(lim.checkSync(Buffer.from([0, 255, 1]), p).remaining, 9);
  const long = 'x'.repeat(300); // past the addon's stack buffer
  assert.equal(lim.checkSync(long, p).remaining, 9);
  assert.equal(lim.checkSync(Buffer.from(long), p).remaining, 8);
  // multibyte characters around the addon's stack buffer's end
  for (let n = 120; n < 135; n++) {
    const s = 'x' + '\u00e9'.repeat(n) + '\u20ac';
    assert.equal(lim.checkSync(s, p).remaining, 9, String(n));
    assert.equal(lim.checkSync(Buffer.from(s), p).remaining, 8, String(n));
  }
});

test('bad keys: empty, too long, wrong type', () => {
  const lim = new Limiter({ maxKeyLen: 8 });
  const p = policy(1, '1s');
  assert.throws(() => lim.checkSync('', p), (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_KEY_INVALID');
  assert.throws(() => lim.checkSync('123456789', p), (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_KEY_TOO_LONG');
  assert.throws(() => lim.checkSync(Buffer.alloc(0), p), (e) => e.code === 'RL_E_KEY_INVALID');
  for (const k of [1, null, undefined, {}, ['a'], new Uint16Array(2), Symbol('k')])
    assert.throws(() => lim.checkSync(k, p), (e) => e instanceof TypeError && /key must be/.test(e.message));
  assert.throws(() => lim.checkSync(1, p), /received number/);
});

test('multi-policy checks: all or nothing, reports the tightest', () => {
  const lim = new Limiter({ clock: () => T0 });
  // Named: a policy's state is its name's, wherever it stands in a list
  // (unnamed, it would be its position's).
  const ps = [policy(2, '1s', { name: 'second' }), policy(3, '1m', { name: 'minute' })];
  const a = lim.checkSync('m', ps);
  assert.equal(a.allowed, true);
  assert.equal(a.limit, 2);
  lim.checkSync('m', ps);
  const c = lim.checkSync('m', ps);
  assert.equal(c.allowed, false);
  assert.equal(c.policyIndex, 0);
  // nothing was charged to the minute policy by the denial
  assert.equal(lim.checkSync('m', [ps[1]], { cost: 0 }).remaining, 1);
  assert.throws(() => lim.checkSync('m', []), (e) => e instanceof InvalidArgumentError);
  assert.throws(() => lim.checkSync('m', Array(17).fill(ps[0])), (e) => e instanceof InvalidArgumentError);
  assert.throws(() => lim.checkSync('m', [ps[0], ps[0]]), (e) => e.code === 'RL_E_POLICY');
  const sixteen = Array.from({ length: 16 }, (_, i) => policy(100 + i, '1h'));
  assert.equal(lim.checkSync('m16', sixteen).allowed, true);
});

test('policies: periods, algorithms, validation', () => {
  const cases = [
    ['500ms', 500], ['1s', 1000], ['1.5s', 1500], ['15m', 900000], ['1h', 3600000], ['1d', 86400000],
    [' 2 s ', 2000], ['0.001s', 1], ['1.25m', 75000], [250, 250],
  ];
  for (const [text, ms] of cases) assert.equal(policy(1, text).period, ms, String(text));
  for (const bad of ['', 's', '1', '1x', '1.2.3s', '.s', '1.0005s', '-1s', '1S', '1e3ms'])
    assert.throws(() => policy(1, bad), (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_POLICY', bad);
  assert.throws(() => policy(1, '99999999999999999999d'), (e) => e.code === 'RL_E_OVERFLOW');
  assert.throws(() => policy(1, 1.5), (e) => e.code === 'RL_E_POLICY');
  assert.throws(() => policy(0, '1s'), (e) => e.code === 'RL_E_POLICY');
  assert.throws(() => policy(1, 0), (e) => e.code === 'RL_E_POLICY');
  assert.throws(() => policy(1, '1s', { algorithm: 'leaky' }), (e) => e.code === 'RL_E_POLICY');
  assert.throws(() => policy(1, '1s', { algorithm: 'fixed_window', burst: 2 }), (e) => e.code === 'RL_E_POLICY');
  assert.throws(() => policy(1, '1s', { burst: 0 }), (e) => e.code === 'RL_E_POLICY');
  assert.throws(() => policy(2 ** 60, '1s'), (e) => e instanceof TypeError || e instanceof InvalidArgumentError);
  assert.throws(() => policy(1e15, '1ms'), (e) => e instanceof InvalidArgumentError); // the C bounds
  assert.throws(() => policy('1', '1s'), (e) => e instanceof TypeError && /limit must be an integer/.test(e.message));
  assert.throws(() => policy(1, {}), TypeError);
  assert.throws(() => policy(1, '1s', { algorithm: 1 }), TypeError);
  assert.throws(() => policy(1, '1s', 'gcra'), TypeError);
  const p = new Policy(5, '1m', { algorithm: 'token_bucket', burst: 10 });
  assert.ok(Object.isFrozen(p));
  assert.deepEqual({ ...p }, {
    limit: 5, period: 60000, algorithm: 'token_bucket', burst: 10, name: undefined,
    block: undefined, strikes: undefined, strikesPeriod: undefined, shadow: false,
  });
  assert.equal(String(p), 'Policy(5, 1m, token_bucket, burst=10)');
  for (const algorithm of ['gcra', 'token_bucket', 'fixed_window', 'sliding_window']) {
    const lim = new Limiter({ clock: () => T0 });
    const q = policy(2, '1s', { algorithm });
    assert.deepEqual([1, 2, 3].map(() => lim.checkSync('a', q).allowed), [true, true, false], algorithm);
  }
});

test('plain-object policies are recompiled when changed', () => {
  const lim = new Limiter({ clock: () => T0 });
  const p = { limit: 1, period: '1s' };
  assert.equal(lim.checkSync('a', p).limit, 1);
  p.limit = 5;
  assert.equal(lim.checkSync('b', p).limit, 5);
  assert.throws(() => lim.checkSync('a', { limit: 1 }), TypeError);
  assert.throws(() => lim.checkSync('a', null), TypeError);
  assert.throws(() => lim.checkSync('a', 5), /policy must be a Policy or a policy object, received number/);
});

test('cost: wrong types and ranges', () => {
  const lim = new Limiter();
  const p = policy(10, '1s');
  assert.throws(() => lim.checkSync('a', p, { cost: '1' }), (e) => e instanceof TypeError && /cost/.test(e.message));
  assert.throws(() => lim.checkSync('a', p, { cost: 1.5 }), TypeError);
  assert.throws(() => lim.checkSync('a', p, { cost: 2 ** 60 }), (e) => e.code === 'RL_E_OVERFLOW');
  assert.throws(() => lim.checkSync('a', p, { cost: -(2 ** 53) }), (e) => e.code === 'RL_E_INVALID_ARG');
  // A refund of a key never charged: nothing to give back.
  assert.throws(() => lim.checkSync('a', p, { cost: -2 }), (e) => e instanceof tollgate.NothingToRefundError && e.code === 'RL_E_NOT_FOUND');
  assert.throws(() => lim.checkSync('a', p, 3), TypeError);
});

test('Limiter options: unknown, wrong types, bad values, no secret echoed', () => {
  assert.throws(() => new Limiter({ nope: 1 }), (e) => e instanceof TypeError && /unknown option 'nope'/.test(e.message));
  assert.throws(() => new Limiter({ maxKeys: '10' }), TypeError);
  assert.throws(() => new Limiter({ denyCache: 1 }), TypeError);
  assert.throws(() => new Limiter({ clock: 5 }), TypeError);
  assert.throws(() => new Limiter('redis://x'), TypeError);
  assert.throws(() => new Limiter({ failureMode: 'maybe' }), (e) => e instanceof InvalidArgumentError);
  assert.throws(() => new Limiter({ maxKeyLen: 100000 }), (e) => e instanceof TollgateError);
  assert.throws(() => new Limiter({ spinUs: '5' }), TypeError);
  for (const bad of [-1, 1001, 2.5])
    assert.throws(() => new Limiter({ spinUs: bad }), (e) => e instanceof InvalidArgumentError && /spinUs/.test(e.message));
  for (const ok of [0, 1, 50, 1000]) new Limiter({ spinUs: ok }).close();
  const secret = 's3cr3t-pw';
  for (const url of [`redis://:${secret}@127.0.0.1:1/?bogus=1`, `nope://:${secret}@host`, `redis://:${secret}@[bad`]) {
    try {
      new Limiter({ url });
      assert.fail('expected an error');
    } catch (e) {
      assert.ok(e instanceof InvalidArgumentError, e.message);
      assert.equal(e.code, 'RL_E_URL');
      assert.ok(!e.message.includes(secret), e.message);
    }
  }
  try {
    new Limiter({ url: 'redis://127.0.0.1:1', password: 5 });
  } catch (e) {
    assert.ok(e instanceof TypeError);
    assert.ok(!e.message.includes('5'));
  }
});

test('the clock: its errors and bad values surface', () => {
  const boom = new Error('clock broke');
  const lim = new Limiter({ clock: () => { throw boom; } });
  assert.throws(() => lim.checkSync('a', policy(1, '1s')), (e) => e === boom);
  const lim2 = new Limiter({ clock: () => 'soon' });
  assert.throws(() => lim2.checkSync('a', policy(1, '1s')), TypeError);
  const lim3 = new Limiter({ clock: () => -5 });
  assert.throws(() => lim3.checkSync('a', policy(1, '1s')), (e) => e.code === 'RL_E_OVERFLOW');
  const lim4 = new Limiter({ clock: () => BigInt(T0) });
  assert.equal(lim4.checkSync('a', policy(1, '1s')).allowed, true);
});

test('reset, ping, health, keys on the memory store', async () => {
  let now = T0;
  const lim = new Limiter({ clock: () => now });
  const p = policy(1, '1h');
  assert.equal(lim.checkSync('r', p).allowed, true);
  assert.equal(lim.checkSync('r', p).allowed, false);
  await lim.reset('r');
  assert.equal(lim.checkSync('r', p).allowed, true);
  await assert.rejects(lim.reset(''), (e) => e.code === 'RL_E_KEY_INVALID');
  await assert.rejects(lim.reset(7), TypeError);
  assert.equal(await lim.ping(), 0);
  const h = lim.health();
  assert.equal(h.store, 'memory');
  assert.equal(h.connection, 'none');
  assert.equal(h.checks, 3);
  assert.equal(h.allowed, 2);
  assert.equal(h.denied, 1);
  assert.equal(h.liveKeys, 1);
  for (const k of ['errors', 'evictions', 'inFlight', 'reconnects', 'storeErrors', 'failOpen', 'failClosed', 'localFallback', 'denyCacheHits'])
    assert.equal(typeof h[k], 'number', k);
  assert.equal(h.lastPingMs, null);
  await assert.rejects(async () => {
    for await (const _ of lim.keys(p));
  }, (e) => e instanceof UnsupportedError && e.code === 'RL_E_UNSUPPORTED');
  assert.equal(lim.store, 'memory');
});

test('max_keys bounds the memory store', () => {
  const lim = new Limiter({ maxKeys: 100, shards: 1 });
  const p = policy(1, '1h');
  for (let i = 0; i < 1000; i++) lim.checkSync('k' + i, p);
  const h = lim.health();
  assert.ok(h.liveKeys <= 100, String(h.liveKeys));
  assert.ok(h.evictions >= 900);
});

test('close(): idempotent, then every call fails with RL_E_CLOSED', async () => {
  const lim = new Limiter();
  const p = policy(1, '1s');
  lim.checkSync('a', p);
  const c1 = lim.close();
  const c2 = lim.close();
  assert.equal(c1, c2);
  await c1;
  await lim.close();
  assert.equal(lim.closed, true);
  const isClosed = (e) => e instanceof ConnectionError && e.code === 'RL_E_CLOSED';
  assert.throws(() => lim.checkSync('a', p), isClosed);
  await assert.rejects(lim.check('a', p), isClosed);
  await assert.rejects(lim.reset('a'), isClosed);
  await assert.rejects(lim.ping(), isClosed);
  assert.throws(() => lim.health(), isClosed);
  await assert.rejects(async () => {
    for await (const _ of lim.keys(p));
  }, isClosed);
});

test('rateLimitHeaders: the C library text', () => {
  const lim = new Limiter({ clock: () => T0 });
  const p = policy(2, '1m');
  const a = lim.checkSync('h', p);
  assert.deepEqual(rateLimitHeaders(a, p), {
    'RateLimit-Policy': '"default";q=2;w=60',
    RateLimit: '"default";r=1;t=30',
    'X-RateLimit-Limit': '2',
    'X-RateLimit-Remaining': '1',
    'X-RateLimit-Reset': '30',
  });
  lim.checkSync('h', p);
  const d = lim.checkSync('h', p);
  const h = rateLimitHeaders(d, p, 'api "v1"');
  assert.equal(h['Retry-After'], '30');
  assert.equal(h['RateLimit-Policy'], '"api \\"v1\\"";q=2;w=60');
  const never = lim.checkSync('h2', p, { cost: 5 });
  assert.equal(rateLimitHeaders(never, p)['Retry-After'], '60');
  // an array of policies: the one the decision reports
  const ps = [policy(100, '1h'), p];
  assert.equal(rateLimitHeaders(d, [p, ps[0]])['X-RateLimit-Limit'], '2');
  assert.throws(() => rateLimitHeaders(null, p), TypeError);
  assert.throws(() => rateLimitHeaders(d, p, 5), TypeError);
  assert.throws(() => rateLimitHeaders({ ...d, source: 'x' }, p), TypeError);
});

test('rateLimitHeaders is byte-identical to Python', { skip: !process.env.TOLLGATE_TEST_PYTHON && 'set TOLLGATE_TEST_PYTHON to a python with tollgate installed' }, () => {
  const lim = new Limiter({ clock: () => T0 });
  const p = policy(3, '90s');
  const decisions = [1, 2, 3, 4].map(() => lim.checkSync('py', p));
  decisions.push(lim.checkSync('py2', p, { cost: 10 }));
  const script = `
import json, sys, tollgate
lim = tollgate.Limiter(clock=lambda: ${T0})
p = tollgate.Policy(3, 90)
out = [tollgate.rate_limit_headers(lim.check("py", p), p, "n\\u00e9 \\"x\\"") for _ in range(4)]
out.append(tollgate.rate_limit_headers(lim.check("py2", p, cost=10), p, "n\\u00e9 \\"x\\""))
print(json.dumps(out))`;
  const py = JSON.parse(execFileSync(process.env.TOLLGATE_TEST_PYTHON, ['-c', script], { encoding: 'utf8' }));
  assert.deepEqual(decisions.map((d) => rateLimitHeaders(d, p, 'né "x"')), py);
});

test('loads and checks in worker_threads (context-aware addon)', async () => {
  const code = `
    const { parentPort } = require('node:worker_threads');
    const t = require(${JSON.stringify(require.resolve('..'))});
    const lim = new t.Limiter();
    const p = t.policy(5, '1h');
    let n = 0;
    for (let i = 0; i < 10; i++) n += lim.checkSync('w', p).allowed;
    lim.check('w', p).then(async (d) => { await lim.close(); parentPort.postMessage([n, d.allowed]); });`;
  const results = await Promise.all(
    Array.from({ length: 4 }, () => new Promise((resolve, reject) => {
      const w = new Worker(code, { eval: true });
      w.once('message', resolve);
      w.once('error', reject);
    })),
  );
  for (const r of results) assert.deepEqual(r, [5, false]);
});

test('a worker thread may exit with an open limiter', async () => {
  const code = `
    const t = require(${JSON.stringify(require.resolve('..'))});
    const lim = new t.Limiter();
    lim.checkSync('x', t.policy(1, '1s'));`;
  await new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('error', reject);
    w.once('exit', (c) => (c === 0 ? resolve() : reject(new Error('exit ' + c))));
  });
});
