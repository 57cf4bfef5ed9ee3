'use strict';
// limiter.checkKeys(): several (key, policies) pairs in one decision, all or
// nothing (rl_check_keys_async), on the memory store and on a throwaway
// redis-server: a denial by one pair charges no other, policyIndex counted
// pair by pair and keyIndex, refunds to every pair with usage, a blocked key
// denying the whole call, and the argument errors.

const test = require('node:test');
const assert = require('node:assert/strict');

const tollgate = require('..');
const {
  Limiter, Policy, policy, TollgateError, InvalidArgumentError, NothingToRefundError,
} = tollgate;
const { RedisServer, REDIS_SERVER } = require('./redis-server');
const { prefix, uniqueKey } = require('./helpers');

const T0 = 1700000000000000; // a fixed clock, microseconds

// The tests below run on each store: `make()` gives a fresh limiter (its
// own key prefix on Redis). Their policies have long periods, so nothing
// refills while a test runs on Redis' own clock.
const GLOBAL = policy(5, '1h', { name: 'global' });
const LOGIN = policy(2, '1h', { algorithm: 'fixed_window', name: 'login' });

function storeTests(label, make) {
  test(`${label}: a route denial charges nothing under the global limit, and the reverse`, async (t) => {
    const lim = await make();
    t.after(() => lim.close());
    const ip = uniqueKey('ip');
    const pairs = [[ip, GLOBAL], [`login|${ip}`, LOGIN]];
    let d = await lim.checkKeys(pairs);
    assert.equal(d.allowed, true);
    assert.equal(d.limit, 2); // the fewest remaining: the route's
    assert.equal(d.remaining, 1);
    assert.equal(d.policyIndex, 1);
    assert.equal(d.keyIndex, 1);
    assert.equal(d.source, 'store');
    assert.equal((await lim.checkKeys(pairs)).remaining, 0);
    for (let i = 0; i < 3; i++) {
      d = await lim.checkKeys(pairs);
      assert.equal(d.allowed, false);
      assert.equal(d.limit, 2);
      assert.equal(d.keyIndex, 1);
      assert.ok(d.retryAfter > 0);
    }
    // The global limit was charged twice, not five times.
    assert.equal((await lim.check(ip, GLOBAL, { cost: 0 })).remaining, 3);

    // The global limit denies: the route is not charged.
    const ip2 = uniqueKey('ip');
    const tight = policy(1, '1h', { name: 'global' });
    const pairs2 = [{ key: ip2, policies: tight }, { key: `login|${ip2}`, policies: [LOGIN] }];
    assert.equal((await lim.checkKeys(pairs2)).allowed, true);
    d = await lim.checkKeys(pairs2);
    assert.equal(d.allowed, false);
    assert.equal(d.policyIndex, 0);
    assert.equal(d.keyIndex, 0);
    assert.equal(d.limit, 1);
    assert.equal((await lim.check(`login|${ip2}`, LOGIN, { cost: 0 })).remaining, 1);
  });

  test(`${label}: policyIndex counts the policies pair by pair; keyIndex names the pair`, async (t) => {
    const lim = await make();
    t.after(() => lim.close());
    const u = uniqueKey('u');
    const hourly = policy(10, '1h');
    const burst = policy(4, '1h', { name: 'burst' });
    const api = policy(3, '1h');
    const pairs = [[u, [hourly, burst]], [`${u}:api`, api]];
    let d = await lim.checkKeys(pairs, { cost: 3 });
    assert.equal(d.allowed, true);
    assert.equal(d.policyIndex, 2); // the second pair's first (only) policy
    assert.equal(d.keyIndex, 1);
    assert.equal(d.remaining, 0);
    d = await lim.checkKeys(pairs, { cost: 1 });
    assert.equal(d.allowed, false);
    assert.equal(d.policyIndex, 2);
    assert.equal(d.keyIndex, 1);
    // The first pair's second policy denies a cost of 2 without the api key.
    d = await lim.checkKeys([[u, [hourly, burst]], [`${u}:other`, api]], { cost: 2 });
    assert.equal(d.allowed, false);
    assert.equal(d.policyIndex, 1);
    assert.equal(d.keyIndex, 0);
    assert.equal(d.limit, 4);
    // The decision names the policy: policies flattened pair by pair.
    const flat = pairs.flatMap(([, p]) => [].concat(p));
    assert.equal(flat[d.policyIndex], burst);
    // Nothing of that denial was charged.
    assert.equal((await lim.check(u, [hourly, burst], { cost: 0 })).remaining, 1);
    assert.equal((await lim.check(`${u}:other`, api, { cost: 0 })).remaining, 3);
    // One pair: the same as check().
    d = await lim.checkKeys([[`${u}:other`, api]]);
    assert.deepEqual(d, { ...(await lim.check(`${u}:solo`, api)), keyIndex: 0 });
  });

  test(`${label}: a negative cost refunds every pair with usage`, async (t) => {
    const lim = await make();
    t.after(() => lim.close());
    const [a, b, c, e] = ['a', 'b', 'c', 'e'].map(uniqueKey);
    const p = policy(5, '1h');
    assert.equal((await lim.checkKeys([[a, p], [b, p]], { cost: 3 })).remaining, 2);
    let d = await lim.checkKeys([[a, p], [b, p]], { cost: -2 });
    assert.equal(d.allowed, true);
    assert.equal(d.remaining, 4);
    assert.equal((await lim.check(b, p, { cost: 0 })).remaining, 4);
    // c has nothing to give back; a has.
    d = await lim.checkKeys([[a, p], [c, p]], { cost: -1 });
    assert.equal(d.allowed, true);
    assert.equal((await lim.check(a, p, { cost: 0 })).remaining, 5);
    // No pair has usage: NothingToRefundError, nothing written.
    await assert.rejects(
      lim.checkKeys([[c, p], [e, p]], { cost: -1 }),
      (err) => err instanceof NothingToRefundError && err.code === 'RL_E_NOT_FOUND',
    );
    assert.equal((await lim.check(c, p, { cost: 0 })).remaining, 5);
  });

  test(`${label}: a blocked key denies the whole call`, async (t) => {
    const lim = await make();
    t.after(() => lim.close());
    const [a, b] = ['a', 'b'].map(uniqueKey);
    const p = policy(5, '1h');
    await lim.block(b, '30s');
    let d = await lim.checkKeys([[a, p], [b, p]]);
    assert.equal(d.allowed, false);
    assert.equal(d.keyIndex, 1);
    assert.equal(d.policyIndex, 1);
    assert.equal(d.remaining, 0);
    assert.ok(d.retryAfter > 25000 && d.retryAfter <= 30000, String(d.retryAfter));
    assert.equal((await lim.check(a, p, { cost: 0 })).remaining, 5); // nothing charged on a
    await lim.unblock(b);
    d = await lim.checkKeys([[a, p], [b, p]]);
    assert.equal(d.allowed, true);
    assert.equal(d.remaining, 4);
    // A denying pair whose policy has a block is blocked; the other is not.
    const [x, y] = ['x', 'y'].map(uniqueKey);
    const once = policy(1, '1h', { block: '1m' });
    assert.equal((await lim.checkKeys([[x, p], [y, once]])).allowed, true);
    assert.equal((await lim.checkKeys([[x, p], [y, once]])).allowed, false);
    assert.equal((await lim.check(x, p)).allowed, true);
    assert.equal((await lim.check(y, p, { cost: 0 })).allowed, false);
  });

  test(`${label}: bad arguments reject with clear errors and charge nothing`, async (t) => {
    const lim = await make();
    t.after(() => lim.close());
    const a = uniqueKey('a');
    const p = policy(5, '1h');
    const seventeen = Array.from({ length: 16 }, (_, i) => policy(i + 1, '1h'));
    const bad = [
      [[[a, p], [a, p]], InvalidArgumentError, 'RL_E_INVALID_ARG', /^keys: key 1 repeats key 0 \(give one key all its policies in one pair\)$/],
      // The same bytes as a string and as a Buffer: one key.
      [[[a, p], [Buffer.from(a), p]], InvalidArgumentError, 'RL_E_INVALID_ARG', /key 1 repeats key 0/],
      [[], InvalidArgumentError, 'RL_E_INVALID_ARG', /^pairs: expected 1 to 8 \(key, policies\) pairs, got 0$/],
      [Array.from({ length: 9 }, (_, i) => [`${a}:${i}`, p]), InvalidArgumentError, 'RL_E_INVALID_ARG', /^pairs: expected 1 to 8 \(key, policies\) pairs, got 9$/],
      [[[a, seventeen], [`${a}:b`, p]], InvalidArgumentError, 'RL_E_INVALID_ARG', /^policies: at most 16 in all the pairs, got 17$/],
      [[[a, p], ['', p]], InvalidArgumentError, 'RL_E_KEY_INVALID', /^keys\[1\]: key: must not be empty$/],
      [[[a, []]], InvalidArgumentError, 'RL_E_INVALID_ARG', /^pairs\[0\] policies: expected 1 to 16 policies, got 0$/],
      [[[a, [p, p]]], InvalidArgumentError, 'RL_E_POLICY', /keys\[0\]: /],
      [[[a, p], [`${a}:x`, { limit: 0, period: '1s' }]], InvalidArgumentError, 'RL_E_POLICY', /limit: must be >= 1/],
      [[[a, p], ['x'.repeat(600), p]], InvalidArgumentError, 'RL_E_KEY_TOO_LONG', /^keys\[1\]: /],
      ['pairs', TypeError, undefined, /^pairs must be an array of \[key, policies\] pairs \(or \{ key, policies \} objects\), received string$/],
      [[[a]], TypeError, undefined, /^pairs\[0\] must be \[key, policies\] \(2 items\), received an array of 1$/],
      [[null], TypeError, undefined, /^pairs\[0\] must be \[key, policies\] or \{ key, policies \}, received null$/],
      [[[42, p]], TypeError, undefined, /^pairs\[0\] key must be a string, Buffer or Uint8Array, received number$/],
      [[{ key: a }], TypeError, undefined, /^pairs\[0\] policy must be a Policy or a policy object, received undefined$/],
      [[[a, [p, 'x']]], TypeError, undefined, /^pairs\[0\] policies\[1\] must be a Policy or a policy object, received string$/],
    ];
    for (const [pairs, cls, code, message] of bad) {
      const r = lim.checkKeys(pairs);
      assert.ok(r instanceof Promise, 'checkKeys() never throws synchronously');
      await assert.rejects(r, (e) => {
        assert.ok(e instanceof cls, `${e}`);
        assert.equal(e.code, code);
        assert.match(e.message, message);
        return true;
      });
    }
    await assert.rejects(lim.checkKeys([[a, p]], { cost: 1.5 }), /cost must be an integer, received 1\.5/);
    await assert.rejects(lim.checkKeys([[a, p]], 3), TypeError);
    // None of those charged anything.
    assert.equal((await lim.check(a, p, { cost: 0 })).remaining, 5);
    await lim.close();
    await assert.rejects(lim.checkKeys([[a, p]]), (e) => e instanceof TollgateError && e.code === 'RL_E_CLOSED');
  });

  test(`${label}: plain-object policies are compiled once and share state with check()`, async (t) => {
    const lim = await make();
    t.after(() => lim.close());
    const [a, b] = ['a', 'b'].map(uniqueKey);
    const plain = { limit: 4, period: '1h', algorithm: 'fixed_window' };
    assert.equal((await lim.checkKeys([[a, plain], { key: b, policies: [plain] }])).remaining, 3);
    assert.equal((await lim.check(a, plain)).remaining, 2);
    assert.equal((await lim.check(a, new Policy(4, '1h', { algorithm: 'fixed_window' }), { cost: 0 })).remaining, 2);
    // A changed object is compiled again (and is then another policy).
    plain.limit = 2;
    const d = await lim.checkKeys([[a, plain], [b, plain]]);
    assert.equal(d.allowed, false); // a: 2 of 4 used (a window keeps its count), the limit now 2
    assert.equal(d.keyIndex, 0);
    assert.equal(d.limit, 2);
  });

  test(`${label}: checks in flight at once admit exactly the limit`, async (t) => {
    const lim = await make();
    t.after(() => lim.close());
    const k = uniqueKey('k');
    const route = policy(7, '1h');
    const global = policy(100, '1h');
    const got = await Promise.all(
      Array.from({ length: 30 }, () => lim.checkKeys([[k, global], [`r|${k}`, route]])),
    );
    assert.equal(got.filter((d) => d.allowed).length, 7);
    assert.equal((await lim.check(k, global, { cost: 0 })).remaining, 93);
  });
}

storeTests('memory', async () => new Limiter({ clock: () => T0 }));

let server = null;
test.after(async () => {
  if (server) await server.stop();
});
const redisSkip = !REDIS_SERVER && 'redis-server is not installed';
if (!redisSkip) {
  storeTests('Redis', async () => {
    if (!server) server = await RedisServer.start();
    return new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 2000 });
  });
} else {
  test('Redis: checkKeys', { skip: redisSkip }, () => {});
}

test('memory: a clock that throws rejects the call with its error', async () => {
  let fail = false;
  const lim = new Limiter({
    clock: () => {
      if (fail) throw new Error('clock broke');
      return T0;
    },
  });
  try {
    const p = policy(5, '1h');
    assert.equal((await lim.checkKeys([['a', p], ['b', p]])).allowed, true);
    fail = true;
    await assert.rejects(lim.checkKeys([['a', p], ['b', p]]), /clock broke/);
    fail = false;
    assert.equal((await lim.checkKeys([['a', p], ['b', p]])).remaining, 3);
  } finally {
    await lim.close();
  }
});

test('Redis: the deny cache answers a pair denied a moment ago', { skip: redisSkip }, async (t) => {
  if (!server) server = await RedisServer.start();
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 2000 });
  t.after(() => lim.close());
  const k = uniqueKey('k');
  const p = policy(1, '1h');
  const g = policy(50, '1h');
  assert.equal((await lim.checkKeys([[k, g], [`r|${k}`, p]])).allowed, true);
  let d = await lim.checkKeys([[k, g], [`r|${k}`, p]]);
  assert.equal(d.allowed, false);
  assert.equal(d.source, 'store');
  d = await lim.checkKeys([[k, g], [`r|${k}`, p]]);
  assert.equal(d.allowed, false);
  assert.equal(d.source, 'deny_cache');
  assert.equal(d.keyIndex, 1);
  assert.equal(d.policyIndex, 1);
  assert.equal((await lim.check(k, g, { cost: 0 })).remaining, 49);
});
