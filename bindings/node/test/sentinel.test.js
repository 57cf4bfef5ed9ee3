'use strict';
// Redis Sentinel through the Node API: a `redis+sentinel://` URL on a real
// primary, replica and 3 sentinels (tests/servers/topology.py; one set for
// the file with a stable master), checks from two limiters exact per key and
// written on the master (awaited one at a time, and all in flight at once),
// health's sentinel fields and nodes, ping, reset and keys(), a SENTINEL
// FAILOVER on a set of the test's own followed by the limiter, an unknown
// master name and bad sentinel URLs. About 10 s in all (two sets of about
// 2 s each to start, a failover of 1-3 s): node --test's 60 s per file.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const {
  Limiter, policy, InvalidArgumentError, ProtocolError, UnsupportedError, TollgateError,
} = require('..');
const { RedisServer, redisCommand, sleep, startTopology, topologySkip } = require('./redis-server');
const { prefix } = require('./helpers');

const skip = topologySkip;
const KEYS = Array.from({ length: 20 }, (_, i) => `user:${i}`);
const YEARS = 10 * 365 * 24 * 3600 * 1000; // ten years: no refill in a test

let sentinel = null;
before(async () => {
  if (!skip) sentinel = await startTopology('sentinel');
});
after(async () => {
  if (sentinel) await sentinel.close();
});

const addr = (port) => `127.0.0.1:${port}`;

function newLimiter(pfx, extra = {}) {
  return new Limiter({ url: sentinel.url, keyPrefix: pfx, failureMode: 'error', timeoutMs: 5000, ...extra });
}

// The prefix's keys, one state key per user key, are all on the master the
// sentinels name (only this file's tests write to the set, one at a time,
// so DBSIZE grows by exactly that many).
async function assertOnMaster(pfx, nKeys, dbsizeBefore) {
  const master = await sentinel.currentMaster();
  assert.equal(master, sentinel.primaryPorts[0]); // a stable master
  assert.equal((await redisCommand(master, 'KEYS', pfx + '*')).length, nKeys);
  assert.equal(await redisCommand(master, 'DBSIZE'), dbsizeBefore + nKeys);
}

// Polls `cond` (may be async) until it holds; fails after `withinMs`.
async function waitFor(what, cond, withinMs) {
  const start = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > withinMs) assert.fail(`${what}: not within ${withinMs} ms`);
    await sleep(20);
  }
}

test('sentinel: checks awaited one by one from two limiters admit exactly the limit, on the master', { skip }, async (t) => {
  const pfx = prefix();
  const dbsize = await redisCommand(await sentinel.currentMaster(), 'DBSIZE');
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
  await assertOnMaster(pfx, KEYS.length, dbsize);
  // A Redis limiter has no synchronous check.
  assert.throws(() => a.checkSync(KEYS[0], p), (e) => e instanceof UnsupportedError && e.code === 'RL_E_UNSUPPORTED');
});

test('sentinel: checks all in flight at once from two limiters admit exactly the limit', { skip }, async (t) => {
  const pfx = prefix();
  const dbsize = await redisCommand(await sentinel.currentMaster(), 'DBSIZE');
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
  await assertOnMaster(pfx, KEYS.length, dbsize);
});

test('sentinel: health reports the topology, the master and the sentinels', { skip }, async (t) => {
  const master = await sentinel.currentMaster();
  const sentinels = new Set(sentinel.sentinelPorts.map(addr));
  const dataNodes = new Set(sentinel.nodes.map((n) => addr(n.port)));
  const lim = newLimiter(prefix());
  t.after(() => lim.close());
  const before = lim.health();
  assert.equal(before.topology, 'sentinel');
  assert.equal(before.store, 'redis');
  assert.equal(before.masterSwitches, 0);
  for (const key of KEYS) assert.equal((await lim.check(key, policy(3, YEARS))).allowed, true);
  const h = lim.health();
  assert.equal(h.topology, 'sentinel');
  assert.equal(h.connection, 'ready');
  assert.equal(h.masterSwitches, 0); // a stable master
  assert.deepEqual([h.checks, h.allowed, h.errors], [20, 20, 0]);
  // Cluster-only fields stay at rest.
  assert.equal(h.slotMapAgeMs, null);
  assert.deepEqual([h.slotMapRefreshes, h.moved, h.ask], [0, 0, 0]);
  assert.ok(h.serverVersion, 'the master reports its version');
  // The data nodes met (the master, marked primary), then the sentinels.
  const primaries = h.nodes.filter((n) => n.role === 'primary');
  assert.deepEqual(primaries.map((n) => n.address), [addr(master)]);
  assert.equal(primaries[0].connection, 'ready');
  assert.equal(h.nodes[0].address, addr(master));
  const addresses = h.nodes.map((n) => n.address);
  assert.equal(new Set(addresses).size, addresses.length); // each node once
  for (const s of sentinels) assert.ok(addresses.includes(s), s);
  for (const a of addresses) assert.ok(sentinels.has(a) || dataNodes.has(a), a);
  for (const n of h.nodes) {
    assert.deepEqual(Object.keys(n), ['address', 'role', 'connection', 'inFlight', 'errors', 'reconnects', 'lastError']);
    assert.ok(['none', 'connecting', 'ready', 'down'].includes(n.connection));
    assert.equal(n.errors, 0);
    assert.equal(n.reconnects, 0);
    assert.equal(n.lastError, '');
  }
});

test('health: masterSwitches is 0 for the memory and standalone stores', { skip }, async (t) => {
  const mem = new Limiter();
  assert.equal(mem.health().masterSwitches, 0);
  await mem.close();
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, failureMode: 'error' });
  t.after(() => lim.close());
  await lim.ping();
  const h = lim.health();
  assert.equal(h.topology, 'standalone');
  assert.equal(h.masterSwitches, 0);
});

test('sentinel: ping, reset and keys() reach the master', { skip }, async (t) => {
  const pfx = prefix();
  const master = await sentinel.currentMaster();
  const lim = newLimiter(pfx);
  t.after(() => lim.close());
  const rtt = await lim.ping();
  assert.ok(typeof rtt === 'number' && rtt >= 0);
  const p = policy(2, YEARS);
  for (const key of KEYS) {
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await lim.check(key, p)).allowed);
    assert.deepEqual(got, [true, true, false], key);
  }
  const listed = [];
  for await (const s of lim.keys(p)) listed.push(s);
  assert.deepEqual(listed.map((s) => s.key).sort(), [...KEYS].sort());
  for (const s of listed) {
    assert.equal(s.policy.limit, 2);
    assert.equal(s.remaining, 0);
  }
  await lim.reset(KEYS[3]);
  assert.equal((await redisCommand(master, 'KEYS', pfx + '*')).length, KEYS.length - 1);
  const d = await lim.check(KEYS[3], p);
  assert.equal(d.allowed, true);
  assert.equal(d.remaining, 1);
  assert.equal((await lim.check(KEYS[4], p)).allowed, false);
});

test('sentinel: an unknown master name fails at once, naming it', { skip }, async (t) => {
  const url = sentinel.url.slice(0, sentinel.url.lastIndexOf('/')) + '/no-such-master';
  const lim = new Limiter({ url, failureMode: 'error', timeoutMs: 500 });
  t.after(() => lim.close());
  for (let i = 0; i < 2; i++) {
    const start = Date.now();
    await assert.rejects(lim.check('k', policy(5, YEARS)), (e) => {
      assert.ok(e instanceof ProtocolError && e instanceof TollgateError, String(e));
      assert.equal(e.code, 'RL_E_STORE');
      assert.match(e.message, /no sentinel knows a master named 'no-such-master'/);
      return true;
    });
    assert.ok(Date.now() - start < 1500, `${Date.now() - start} ms`);
  }
  const h = lim.health();
  assert.equal(h.topology, 'sentinel');
  assert.notEqual(h.connection, 'ready');
  assert.match(h.lastError, /no-such-master/);
});

test('sentinel: SENTINEL FAILOVER: checks follow the new master, and health counts the switch', { skip }, async (t) => {
  const topo = await startTopology('sentinel'); // its own: the others keep a stable master
  t.after(() => topo.close());
  const old = await topo.currentMaster();
  const timeoutMs = 500;
  const lim = new Limiter({ url: topo.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs });
  t.after(() => lim.close());
  const p = policy(1000000, YEARS);
  let longest = 0;
  // One check; true if it succeeded. No call outlives its deadline.
  const check = async (key) => {
    const start = Date.now();
    let ok;
    try {
      ok = (await lim.check(key, p)).allowed;
    } catch (e) {
      if (!(e instanceof TollgateError)) throw e;
      ok = false;
    }
    longest = Math.max(longest, Date.now() - start);
    return ok;
  };
  for (const key of KEYS) assert.equal(await check(key), true, key);
  assert.equal(lim.health().masterSwitches, 0);

  assert.equal(await redisCommand(topo.sentinelPorts[0], 'SENTINEL', 'FAILOVER', topo.masterName), 'OK');
  let now = old;
  await waitFor('the sentinels name a new master', async () => {
    await check(KEYS[0]); // checks go on meanwhile
    now = await topo.currentMaster(1);
    return now !== old;
  }, 20000);
  assert.ok(topo.nodes.some((n) => n.port === now), String(now));

  // Checks succeed again within 5 s; the limiter follows the switch (the
  // sentinels announce it about a second after the promotion) within 10 s;
  // from then on every check succeeds.
  await waitFor('checks succeed', () => check(KEYS[1]), 5000);
  await waitFor('health counts the switch', async () => (await check(KEYS[2])) && lim.health().masterSwitches >= 1, 10000);
  for (const key of KEYS) assert.equal(await check(key), true, key);
  assert.ok(longest < timeoutMs + 750, `a call took ${longest} ms`);

  const h = lim.health();
  assert.equal(h.topology, 'sentinel');
  assert.equal(h.connection, 'ready');
  assert.ok(h.masterSwitches >= 1, String(h.masterSwitches));
  assert.deepEqual(h.nodes.filter((n) => n.role === 'primary').map((n) => n.address), [addr(now)]);
  assert.ok(h.nodes.some((n) => n.address === addr(old)), 'the old master, now "other"');
  // All in flight at once, on the new master.
  const got = await Promise.all(KEYS.map((key) => lim.check(key, p)));
  for (const d of got) {
    assert.equal(d.allowed, true);
    assert.equal(d.source, 'store');
  }
});

test('sentinel: bad sentinel URLs throw the URL error, never showing a password', () => {
  const secret = 's3cr3t-sentinel-pw';
  for (const url of [
    'redis+sentinel://h:1',
    'redis+sentinel://h:1/',
    'redis+sentinel:///m',
    'redis+sentinel://',
    'rediss+sentinel://h:1',
    'redis+sentinel://,/m',
    'redis+sentinel://h:1,,h:2/m',
    'redis+sentinel://h:1,h:99999/m',
    'redis+sentinel://h:1/m/x',
    'redis+sentinel://h:1/my%20master',
    'redis+sentinel://h:1/m?sentinel_username=w',
    'redis+sentinel://h:1/m?nope=1',
    'redis://h:1?sentinel_password=x',
    'unix+sentinel:///tmp/r.sock',
    `redis+sentinel://:${secret}@h:1`,
    `redis+sentinel://:${secret}@/m`,
    `redis+sentinel://h:1?sentinel_password=${secret}`,
    `redis+sentinel://:${secret}@h:1,h:0/m?sentinel_password=${secret}`,
  ]) {
    assert.throws(() => new Limiter({ url }), (e) => {
      assert.ok(e instanceof InvalidArgumentError && e instanceof TollgateError, `${url}: ${e}`);
      assert.equal(e.code, 'RL_E_URL', url);
      assert.ok(e.message && !e.message.includes(secret), e.message);
      return true;
    });
  }
});
