'use strict';
// limiter.refund() and refundSync(): units given back (a check with a
// negative cost), NothingToRefundError, the amount's validation, on the
// memory store and on a throwaway redis-server.

const test = require('node:test');
const assert = require('node:assert/strict');

const tollgate = require('..');
const {
  Limiter, policy, TollgateError, InvalidArgumentError, UnsupportedError, NothingToRefundError,
} = tollgate;
const { RedisServer, REDIS_SERVER } = require('./redis-server');
const { prefix, uniqueKey } = require('./helpers');

const T0 = 1700000000000000; // a fixed clock, microseconds

test('NothingToRefundError: exported (CommonJS and ESM), a TollgateError for RL_E_NOT_FOUND', async () => {
  const esm = await import('../lib/index.mjs');
  assert.equal(esm.NothingToRefundError, NothingToRefundError);
  assert.equal(esm.default.NothingToRefundError, NothingToRefundError);
  const e = new NothingToRefundError('m', 'RL_E_NOT_FOUND');
  assert.ok(e instanceof TollgateError);
  assert.equal(NothingToRefundError.name, 'NothingToRefundError');
  assert.equal(String(e), 'NothingToRefundError: m');
  assert.equal(tollgate.CODES.RL_E_NOT_FOUND, -19);
});

test('refundSync and refund on the memory store: units back, never beyond full', async () => {
  const lim = new Limiter({ clock: () => T0 });
  try {
    const p = policy(5, '1h');
    assert.equal(lim.checkSync('k', p, { cost: 4 }).remaining, 1);
    let d = lim.refundSync('k', p);
    assert.deepEqual(d, {
      allowed: true, limit: 5, remaining: 2, resetAfter: 3 * 720000, retryAfter: 0, source: 'store', policyIndex: 0, shadow: false,
    });
    d = await lim.refund('k', p, { amount: 2 });
    assert.equal(d.allowed, true);
    assert.equal(d.remaining, 4);
    assert.equal(d.resetAfter, 720000);
    // Only the one unit still used comes back.
    d = lim.refundSync('k', p, { amount: 10 });
    assert.equal(d.remaining, 5);
    assert.equal(d.resetAfter, 0);
    // Full: nothing to give back, and nothing written.
    assert.throws(() => lim.refundSync('k', p), (e) => e instanceof NothingToRefundError && e.code === 'RL_E_NOT_FOUND' && /nothing to give back/.test(e.message));
    await assert.rejects(lim.refund('k', p), NothingToRefundError);
    await assert.rejects(lim.refund('never-charged', p, { amount: 3 }), (e) => e instanceof NothingToRefundError && e.code === 'RL_E_NOT_FOUND');
    assert.equal(lim.checkSync('k', p, { cost: 5 }).remaining, 0);
    assert.equal(lim.checkSync('k', p).allowed, false);
    // A refund after a denial lets the next request through.
    assert.equal(lim.refundSync('k', p).remaining, 1);
    assert.equal(lim.checkSync('k', p).allowed, true);
    // The same as a check with cost -amount.
    assert.equal(lim.checkSync('k', p, { cost: -1 }).remaining, 1);
    assert.equal((await lim.check('k', p, { cost: -1 })).remaining, 2);
  } finally {
    await lim.close();
  }
});

test('refund: every policy with usage gets the units back', async () => {
  const lim = new Limiter({ clock: () => T0 });
  try {
    const ps = [policy(3, '1m'), policy(10, '1h')];
    lim.checkSync('k', ps, { cost: 2 });
    const d = await lim.refund('k', ps, { amount: 2 });
    assert.equal(d.allowed, true);
    assert.equal(lim.checkSync('k', ps[0], { cost: 0 }).remaining, 3);
    assert.equal(lim.checkSync('k', ps[1], { cost: 0 }).remaining, 10);
  } finally {
    await lim.close();
  }
});

test('refund amount: a positive safe integer, else TypeError or InvalidArgumentError', async () => {
  const lim = new Limiter({ clock: () => T0 });
  try {
    const p = policy(5, '1h');
    lim.checkSync('k', p, { cost: 5 });
    const bad = [
      [{ amount: '1' }, (e) => e instanceof TypeError && /amount must be a positive integer \(number\), received string/.test(e.message)],
      [{ amount: 1.5 }, (e) => e instanceof TypeError && /amount must be an integer, received 1\.5/.test(e.message)],
      [{ amount: 0 }, (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_INVALID_ARG' && /amount: must be >= 1 \(got 0\)/.test(e.message)],
      [{ amount: -3 }, (e) => e instanceof InvalidArgumentError && /got -3/.test(e.message)],
      [{ amount: 2 ** 53 }, (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_INVALID_ARG' && /at most 2\^53 - 1/.test(e.message)],
      [3, (e) => e instanceof TypeError && /refund options must be an object such as \{ amount: 1 \}, received number/.test(e.message)],
      [null, (e) => e instanceof TypeError && /refund options/.test(e.message)],
    ];
    for (const [options, check] of bad) {
      assert.throws(() => lim.refundSync('k', p, options), check, JSON.stringify(options));
      const r = lim.refund('k', p, options);
      assert.ok(r instanceof Promise, 'refund() never throws synchronously');
      await assert.rejects(r, check, JSON.stringify(options));
    }
    // None of those gave anything back.
    assert.equal(lim.checkSync('k', p, { cost: 0 }).remaining, 0);
    // The largest amount is accepted; { } and { amount: undefined } mean 1.
    assert.equal(lim.refundSync('k', p, { amount: Number.MAX_SAFE_INTEGER }).remaining, 5);
    lim.checkSync('k', p, { cost: 5 });
    assert.equal(lim.refundSync('k', p, {}).remaining, 1);
    assert.equal((await lim.refund('k', p, { amount: undefined })).remaining, 2);
    // Keys and policies are validated as check() does.
    assert.throws(() => lim.refundSync(42, p), TypeError);
    await assert.rejects(lim.refund(42, p), TypeError);
    await assert.rejects(lim.refund('k', null), TypeError);
  } finally {
    await lim.close();
  }
});

test('refund on a closed limiter fails with RL_E_CLOSED', async () => {
  const lim = new Limiter();
  await lim.close();
  assert.throws(() => lim.refundSync('k', policy(1, '1s')), (e) => e.code === 'RL_E_CLOSED');
  await assert.rejects(lim.refund('k', policy(1, '1s')), (e) => e.code === 'RL_E_CLOSED');
});

test('Redis: refund gives units back; refundSync is unsupported', { skip: !REDIS_SERVER && 'redis-server is not installed' }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 2000 });
  t.after(() => lim.close());
  const p = policy(3, '1h'); // T = 20 min: no unit comes back on its own during the test
  const key = uniqueKey('refund');
  for (let i = 0; i < 3; i++) assert.equal((await lim.check(key, p)).allowed, true);
  assert.equal((await lim.check(key, p)).allowed, false);
  let d = await lim.refund(key, p, { amount: 2 });
  assert.equal(d.allowed, true);
  assert.equal(d.remaining, 2);
  assert.equal(d.source, 'store');
  d = await lim.refund(key, p, { amount: 5 });
  assert.equal(d.remaining, 3);
  await assert.rejects(lim.refund(key, p), (e) => e instanceof NothingToRefundError && e.code === 'RL_E_NOT_FOUND');
  await assert.rejects(lim.refund(uniqueKey('never'), p), NothingToRefundError);
  assert.throws(
    () => lim.refundSync(key, p),
    (e) => e instanceof UnsupportedError && e.code === 'RL_E_UNSUPPORTED' && /refundSync: a Redis limiter answers asynchronously.*await limiter\.refund\(\)/.test(e.message),
  );
  assert.equal((await lim.check(key, p, { cost: 0 })).remaining, 3);
  const closed = new Limiter({ url: server.url, keyPrefix: prefix() });
  await closed.close();
  assert.throws(() => closed.refundSync(key, p), (e) => e.code === 'RL_E_CLOSED');
});
