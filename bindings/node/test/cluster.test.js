'use strict';
// Redis Cluster through the Node API: a `redis+cluster://` URL on a real
// 3-primary + 3-replica cluster (tests/servers/topology.py, one for the whole
// file), checks from two limiters exact per key with the keys spread over
// every primary (awaited one at a time, and all in flight at once), health's
// cluster fields and nodes, reset, ping and keys(), bad cluster URLs, and
// checkKeys: one call for keys of one slot, RL_E_UNSUPPORTED for keys of
// several, and the web helpers' two-step fallback then.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const {
  Limiter, policy, InvalidArgumentError, ProtocolError, UnsupportedError, TollgateError,
} = require('..');
const { RedisServer, redisCommand, startTopology, topologySkip } = require('./redis-server');
const { prefix } = require('./helpers');

const skip = topologySkip;
const KEYS = Array.from({ length: 60 }, (_, i) => `user:${i}`);
const YEARS = 10 * 365 * 24 * 3600 * 1000; // ten years: no refill in a test

let cluster = null;
before(async () => {
  if (!skip) cluster = await startTopology('cluster');
});
after(async () => {
  if (cluster) await cluster.close();
});

const addr = (port) => `127.0.0.1:${port}`;

// Every primary holds some of the prefix's keys, one state key per user key.
async function assertSpread(pfx, nKeys) {
  assert.equal(cluster.primaryPorts.length, 3);
  let total = 0;
  for (const port of cluster.primaryPorts) {
    const keys = await redisCommand(port, 'KEYS', pfx + '*');
    assert.ok(keys.length > 0, `primary ${port} holds none of the keys`);
    assert.ok((await redisCommand(port, 'DBSIZE')) >= keys.length);
    total += keys.length;
  }
  assert.equal(total, nKeys);
}

function newLimiter(pfx, extra = {}) {
  return new Limiter({ url: cluster.url, keyPrefix: pfx, failureMode: 'error', timeoutMs: 5000, ...extra });
}

test('cluster: checks awaited one by one from two limiters admit exactly the limit, on every primary', { skip }, async (t) => {
  const pfx = prefix();
  const a = newLimiter(pfx);
  const b = newLimiter(pfx);
  t.after(() => Promise.all([a.close(), b.close()]));
  const p = policy(4, YEARS);
  const allowed = new Map(KEYS.map((k) => [k, 0]));
  for (let round = 0; round < 6; round++) {
    for (const key of KEYS) {
      const d = await (round % 2 ? a : b).check(key, p);
      assert.ok(['store', 'deny_cache'].includes(d.source), `${key}: ${d.source}`);
      allowed.set(key, allowed.get(key) + d.allowed);
    }
  }
  for (const [key, n] of allowed) assert.equal(n, 4, key);
  await assertSpread(pfx, KEYS.length);
  // A Redis limiter has no synchronous check.
  assert.throws(() => a.checkSync(KEYS[0], p), (e) => e instanceof UnsupportedError && e.code === 'RL_E_UNSUPPORTED');
});

test('cluster: checks all in flight at once from two limiters admit exactly the limit', { skip }, async (t) => {
  const pfx = prefix();
  const a = newLimiter(pfx);
  const b = newLimiter(pfx);
  t.after(() => Promise.all([a.close(), b.close()]));
  const p = policy(5, YEARS);
  const calls = [];
  for (let i = 0; i < 8; i++) for (const key of KEYS) calls.push([key, i % 2 ? a : b]);
  const got = await Promise.all(calls.map(([key, lim]) => lim.check(key, p)));
  for (const key of KEYS) {
    const mine = got.filter((_, i) => calls[i][0] === key);
    for (const d of mine) assert.ok(['store', 'deny_cache'].includes(d.source), `${key}: ${d.source}`);
    // Exactly 5 admitted, each after its predecessors: remaining 4 .. 0.
    const left = mine.filter((d) => d.allowed).map((d) => d.remaining).sort((x, y) => x - y);
    assert.deepEqual(left, [0, 1, 2, 3, 4], key);
  }
  await assertSpread(pfx, KEYS.length);
});

test('cluster: health reports the topology, the slot map and every node', { skip }, async (t) => {
  const lim = newLimiter(prefix());
  t.after(() => lim.close());
  const seeds = new Set(cluster.nodes.map((n) => addr(n.port)));
  const before = lim.health();
  assert.equal(before.topology, 'cluster');
  assert.equal(before.store, 'redis');
  assert.deepEqual(new Set(before.nodes.map((n) => n.address)), seeds); // the URL's seeds
  for (const key of KEYS.slice(0, 20)) assert.equal((await lim.check(key, policy(3, YEARS))).allowed, true);
  const h = lim.health();
  assert.equal(h.topology, 'cluster');
  assert.equal(h.connection, 'ready');
  assert.ok(h.slotMapRefreshes >= 1, String(h.slotMapRefreshes));
  assert.ok(Number.isInteger(h.slotMapAgeMs) && h.slotMapAgeMs >= 0, String(h.slotMapAgeMs));
  assert.equal(h.moved, 0); // a stable cluster
  assert.equal(h.ask, 0);
  assert.equal(h.checks, 20);
  assert.equal(h.allowed, 20);
  assert.deepEqual(new Set(h.nodes.map((n) => n.address)), seeds);
  assert.equal(h.nodes.length, seeds.size); // each node once
  const primaries = h.nodes.filter((n) => n.role === 'primary');
  assert.deepEqual(new Set(primaries.map((n) => n.address)), new Set(cluster.primaryPorts.map(addr)));
  assert.equal(primaries.length, 3);
  for (const n of h.nodes) {
    assert.deepEqual(Object.keys(n), ['address', 'role', 'connection', 'inFlight', 'errors', 'reconnects', 'lastError']);
    assert.ok(['primary', 'other'].includes(n.role));
    assert.ok(['none', 'connecting', 'ready', 'down'].includes(n.connection));
    assert.equal(n.errors, 0);
    assert.equal(n.reconnects, 0);
    assert.equal(n.lastError, '');
    assert.ok(Number.isInteger(n.inFlight) && n.inFlight >= 0);
  }
  for (const n of primaries) assert.equal(n.connection, 'ready', n.address);
  // The existing fields are all still there.
  for (const f of ['store', 'connection', 'checks', 'allowed', 'denied', 'errors', 'liveKeys', 'evictions', 'inFlight',
    'reconnects', 'lastPingMs', 'storeErrors', 'failOpen', 'failClosed', 'localFallback', 'denyCacheHits',
    'serverVersion', 'lastError']) assert.ok(f in h, f);
});

test('health: the memory and standalone stores report their topology', { skip }, async (t) => {
  const mem = new Limiter();
  const hm = mem.health();
  assert.equal(hm.topology, 'memory');
  assert.deepEqual(hm.nodes, []);
  assert.equal(hm.slotMapAgeMs, null);
  assert.deepEqual([hm.slotMapRefreshes, hm.moved, hm.ask], [0, 0, 0]);
  await mem.close();
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, failureMode: 'error' });
  t.after(() => lim.close());
  await lim.ping();
  const h = lim.health();
  assert.equal(h.topology, 'standalone');
  assert.equal(h.slotMapAgeMs, null);
  assert.equal(h.slotMapRefreshes, 0);
  assert.equal(h.nodes.length, 1);
  assert.equal(h.nodes[0].address, addr(server.port));
  assert.equal(h.nodes[0].role, 'primary');
  assert.equal(h.nodes[0].connection, 'ready');
});

test('cluster: ping, reset and keys() reach every primary', { skip }, async (t) => {
  const lim = newLimiter(prefix());
  t.after(() => lim.close());
  const rtt = await lim.ping();
  assert.ok(typeof rtt === 'number' && rtt >= 0);
  const p = policy(2, YEARS);
  const mine = KEYS.slice(0, 30);
  for (const key of mine) {
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await lim.check(key, p)).allowed);
    assert.deepEqual(got, [true, true, false], key);
  }
  const listed = [];
  for await (const s of lim.keys(p)) listed.push(s);
  assert.deepEqual(listed.map((s) => s.key).sort(), [...mine].sort());
  for (const s of listed) {
    assert.equal(s.policy.limit, 2);
    assert.equal(s.remaining, 0);
  }
  for (const key of mine.filter((_, i) => i % 3 === 0)) {
    await lim.reset(key);
    const d = await lim.check(key, p);
    assert.equal(d.allowed, true, key);
    assert.equal(d.remaining, 1, key);
  }
  assert.equal((await lim.check(mine[1], p)).allowed, false);
});

test('cluster: a cluster URL to a server without cluster mode fails clearly', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: `redis+cluster://127.0.0.1:${server.port}`, failureMode: 'error', timeoutMs: 500 });
  t.after(() => lim.close());
  await assert.rejects(lim.check('k', policy(5, YEARS)), (e) => e instanceof ProtocolError && /not in cluster mode/.test(e.message));
});

test('cluster: bad cluster URLs throw the URL error, never showing the password', () => {
  const secret = 's3cr3t-cluster-pw';
  for (const url of [
    'redis+cluster://',
    'rediss+cluster://',
    'redis+cluster://,,',
    `redis+cluster://:${secret}@`,
    `redis+cluster://:${secret}@127.0.0.1:7000,,127.0.0.1:7002`,
    `redis+cluster://:${secret}@127.0.0.1:7000,127.0.0.1:70000`,
    'redis+cluster://127.0.0.1:7000/1',
    'redis+cluster://127.0.0.1:7000?tls_ca=/x',
    'redis+cluster:///tmp/redis.sock',
    `redis://:${secret}@127.0.0.1:7000,127.0.0.1:7001`,
  ]) {
    assert.throws(() => new Limiter({ url }), (e) => {
      assert.ok(e instanceof InvalidArgumentError && e instanceof TollgateError, `${url}: ${e}`);
      assert.equal(e.code, 'RL_E_URL', url);
      assert.ok(e.message && !e.message.includes(secret), e.message);
      return true;
    });
  }
});

// ---- several keys in one decision ----------------------------------------------

async function slotOf(key) {
  return redisCommand(cluster.primaryPorts[0], 'CLUSTER', 'KEYSLOT', key);
}

test('cluster: checkKeys takes keys of one slot ({tag}) in one call and refuses keys of several before sending', { skip }, async (t) => {
  const pfx = prefix();
  const lim = newLimiter(pfx);
  t.after(() => lim.close());
  const g = policy(5, YEARS);
  const r = policy(2, YEARS);
  // One slot: the keys start with the same {tag}.
  const tagged = [['{u1}:global', g], ['{u1}:login', r]];
  assert.equal(await slotOf('{u1}:global'), await slotOf('{u1}:login'));
  assert.equal((await lim.checkKeys(tagged)).remaining, 1);
  assert.equal((await lim.checkKeys(tagged)).remaining, 0);
  const d = await lim.checkKeys(tagged);
  assert.equal(d.allowed, false);
  assert.equal(d.keyIndex, 1);
  assert.equal((await lim.check('{u1}:global', g, { cost: 0 })).remaining, 3);
  // Several slots: UnsupportedError, and nothing written anywhere.
  assert.notEqual(await slotOf('client'), await slotOf('login|client'));
  await assert.rejects(
    lim.checkKeys([['client', g], ['login|client', r]]),
    (e) => e instanceof UnsupportedError && e.code === 'RL_E_UNSUPPORTED',
  );
  for (const port of cluster.primaryPorts) {
    const keys = await redisCommand(port, 'KEYS', pfx + '*');
    assert.ok(keys.every((k) => k.includes('{{u1}')), `${port}: ${keys}`);
  }
});

test('cluster: the web helpers check a global limit and a route\'s in two steps when their keys lie in several slots', { skip }, async (t) => {
  const http = require('node:http');
  const { limit } = require('../lib/next.js');
  const { rateLimit } = require('../lib/express.js');
  const pfx = prefix();
  const lim = newLimiter(pfx);
  t.after(() => lim.close());
  const G = { limit: 5, period: YEARS, name: 'global' };
  const R = { limit: 2, period: YEARS, name: 'login' };
  const peek = async (key, p) => (await lim.check(key, p, { cost: 0 })).remaining;
  assert.notEqual(await slotOf('next'), await slotOf('login|next'));
  assert.notEqual(await slotOf('express'), await slotOf('login|express'));

  // Next.js: limit() with limits.
  const opts = { limiter: lim, key: () => 'next', limits: [{ policy: G }, { policy: R, scope: 'login' }] };
  const call = () => limit(new Request('http://app/login'), opts);
  assert.equal((await call()).decision.allowed, true);
  assert.equal((await call()).decision.allowed, true);
  let res = await call();
  assert.equal(res.response.status, 429);
  assert.equal(res.policy, R);
  assert.equal(await peek('next', G), 3, 'the route denied: the global limit untouched');
  await lim.reset('login|next');
  await lim.check('next', G, { cost: 3 });
  res = await call();
  assert.equal(res.response.status, 429);
  assert.equal(res.policy, G);
  assert.equal(await peek('login|next', R), 2, 'the global limit denied: the route given back');

  // Express (as node:http middleware): rateLimit with limits.
  const mw = rateLimit({ limiter: lim, key: () => 'express', limits: [{ policy: G }, { policy: R, scope: 'login' }] });
  const server = http.createServer((req, rsp) => mw(req, rsp, () => rsp.end('in')));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => {
    server.closeAllConnections();
    server.close(r);
  }));
  const get = () => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.address().port, path: '/login', agent: false }, (rsp) => {
      rsp.resume();
      rsp.on('end', () => resolve(rsp.statusCode));
    }).on('error', reject);
  });
  assert.deepEqual([await get(), await get(), await get()], [200, 200, 429]);
  assert.equal(await peek('express', G), 3);
  await lim.reset('login|express');
  await lim.check('express', G, { cost: 3 });
  assert.equal(await get(), 429);
  assert.equal(await peek('login|express', R), 2);
});
