'use strict';
// Blocks: a policy's block (block, strikes, strikesPeriod) blocks a key
// after a denial; limiter.block() and unblock(); reset() lifts a block; a
// refund still runs while blocked; bad input. On the memory store with a
// pinned clock, on Redis with the same pinned clock when the addon was built
// with -DTOLLGATE_TESTING=ON, and on Redis with its own clock.

const test = require('node:test');
const assert = require('node:assert/strict');

const tollgate = require('..');
const { Limiter, Policy, policy, InvalidArgumentError, _testing } = tollgate;
const { RedisServer, REDIS_SERVER } = require('./redis-server');
const { prefix, uniqueKey } = require('./helpers');

const T0 = 1_700_000_000_000_000; // a fixed clock reading, us
const MIN = 60_000;
// T0 lies 2800 s before the end of its epoch-aligned hour.
const TO_HOUR_END = 2_800_000;

const isInvalidArg = (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_INVALID_ARG';
const isPolicyError = (re) => (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_POLICY' && re.test(e.message);

// ---- Policies -----------------------------------------------------------------

test('blocks: Policy options, properties, toString and toJSON', () => {
  const p = new Policy(5, '1m', { name: 'login', block: '15m', strikes: 3, strikesPeriod: '1h' });
  assert.deepEqual([p.block, p.strikes, p.strikesPeriod], [900000, 3, 3600000]);
  assert.equal(String(p), 'Policy(5, 1m, name=login, block=15m, strikes=3/1h)');
  assert.deepEqual(p.toJSON(), {
    limit: 5, period: 60000, algorithm: 'gcra', name: 'login', block: 900000, strikes: 3, strikesPeriod: 3600000,
  });
  assert.ok(Object.isFrozen(p));
  assert.throws(() => { 'use strict'; p.block = 1; }, TypeError);
  // a block alone; milliseconds as numbers
  const q = policy(10, '1s', { block: 1500 });
  assert.deepEqual([q.block, q.strikes, q.strikesPeriod], [1500, undefined, undefined]);
  assert.equal(String(q), 'Policy(10, 1s, block=1500ms)');
  assert.deepEqual(q.toJSON(), { limit: 10, period: 1000, algorithm: 'gcra', block: 1500 });
  assert.deepEqual(policy(1, '1s', { block: 90000, strikes: 2, strikesPeriod: 120000 }).toJSON().strikesPeriod, 120000);
  // absent, null and undefined: no block
  for (const opts of [undefined, {}, { block: null, strikes: null, strikesPeriod: null }, { block: undefined }]) {
    const r = policy(1, '1s', opts);
    assert.deepEqual([r.block, r.strikes, r.strikesPeriod], [undefined, undefined, undefined]);
    assert.deepEqual(Object.keys(r.toJSON()), ['limit', 'period', 'algorithm']);
  }
});

test('blocks: Policy.parse exposes block, strikes and strikesPeriod', () => {
  const p = Policy.parse('5/m block=15m strikes=3/h');
  assert.deepEqual([p.limit, p.period, p.block, p.strikes, p.strikesPeriod], [5, 60000, 900000, 3, 3600000]);
  assert.equal(p.name, undefined);
  const q = Policy.parse('5/m name=login block=15m');
  assert.deepEqual([q.name, q.block, q.strikes, q.strikesPeriod], ['login', 900000, undefined, undefined]);
  assert.equal(Policy.parse('100/h').block, undefined);
  // toString reads back as the same policy
  const r = Policy.parse(String(p).replace(/^Policy\((\d+), (\w+), block=(\w+), strikes=(\S+)\)$/, '$1/$2 block=$3 strikes=$4'));
  assert.deepEqual(r.toJSON(), p.toJSON());
  assert.throws(() => Policy.parse('5/m strikes=3/h'), isPolicyError(/block/));
  assert.throws(() => Policy.parse('5/m block=0s'), (e) => e.code === 'RL_E_POLICY');
});

test('blocks: bad policy options give a clear error', () => {
  const cases = [
    [{ strikes: 3 }, isPolicyError(/^strikes: need a block/)],
    [{ strikes: 3, strikesPeriod: '1h' }, isPolicyError(/^strikes: need a block/)],
    [{ block: '15m', strikes: 3 }, isPolicyError(/^strikes: need strikesPeriod/)],
    [{ block: '15m', strikesPeriod: '1h' }, isPolicyError(/^strikesPeriod: needs strikes/)],
    [{ block: 0 }, isPolicyError(/^block: must be at least 1 ms \(got 0 ms; leave it out for none\)/)],
    [{ block: -5 }, isPolicyError(/^block: must be at least 1 ms/)],
    [{ block: '0s' }, isPolicyError(/^block: must be at least 1 ms/)],
    [{ block: 1.5 }, isPolicyError(/^block: 1\.5 is not a whole number of milliseconds/)],
    [{ block: 'soon' }, isPolicyError(/^block: expected a number and a unit/)],
    [{ block: '1m', strikes: 0, strikesPeriod: '1h' }, isPolicyError(/^strikes: must be >= 1/)],
    [{ block: '1m', strikes: 2, strikesPeriod: 0 }, isPolicyError(/^strikesPeriod: must be at least 1 ms/)],
    [{ block: '1m', strikes: '3', strikesPeriod: '1h' }, (e) => e instanceof TypeError && /strikes must be an integer/.test(e.message)],
    [{ block: '1m', strikes: 2.5, strikesPeriod: '1h' }, (e) => e instanceof TypeError && /strikes must be an integer/.test(e.message)],
    [{ block: {} }, (e) => e instanceof TypeError && /block must be integer milliseconds/.test(e.message)],
    [{ block: '1m', strikes: 2, strikesPeriod: true }, (e) => e instanceof TypeError && /strikesPeriod must be/.test(e.message)],
    [{ block: 2 ** 41 }, (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_OVERFLOW'],
    [{ block: '1m', strikes: 2 ** 41, strikesPeriod: '1h' }, (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_OVERFLOW'],
  ];
  // The shortest block and strike window, 1 ms, are policies.
  assert.equal(new Policy(5, '1m', { block: 1 }).block, 1);
  assert.equal(new Policy(5, '1m', { block: 1, strikes: 2, strikesPeriod: 1 }).strikesPeriod, 1);
  for (const [opts, check] of cases) {
    assert.throws(() => new Policy(5, '1m', opts), check, JSON.stringify(opts));
    // the plain-object form is checked alike
    const lim = new Limiter({ clock: () => T0 });
    assert.throws(() => lim.checkSync('k', { limit: 5, period: '1m', ...opts }), check, JSON.stringify(opts));
  }
});

// ---- Behaviour, on every store ---------------------------------------------------

// The stores the scenarios run on: each makes a limiter whose clock reads
// clock.nowUs (Redis takes a clock only in -DTOLLGATE_TESTING=ON builds).
const STORES = [
  { name: 'memory', skip: false, make: (clock) => new Limiter({ clock: () => clock.nowUs }) },
  {
    name: 'Redis',
    skip: !REDIS_SERVER ? 'redis-server is not installed'
      : !_testing ? 'this addon takes no clock for Redis: build it with -DTOLLGATE_TESTING=ON'
      : false,
    make: (clock, server) => new Limiter({
      url: server.url,
      clock: () => clock.nowUs,
      keyPrefix: prefix(),
      denyCache: false,
      failureMode: 'error',
      timeoutMs: 2000,
    }),
  },
];

const SCENARIOS = [];
function scenario(name, fn) {
  SCENARIOS.push({ name, fn });
}

// check() returns the decision on every store.
async function expectDenied(lim, key, p, retryAfter, what) {
  const d = await lim.check(key, p);
  assert.equal(d.allowed, false, what);
  assert.equal(d.remaining, 0, what);
  assert.equal(d.retryAfter, retryAfter, what);
  assert.equal(d.source, 'store', what);
  return d;
}

scenario('a policy block denies the key from the first denial, retryAfter covering the block', async (lim, clock) => {
  const p = policy(2, '1m', { block: '15m' });
  assert.equal((await lim.check('k', p)).allowed, true);
  assert.equal((await lim.check('k', p)).allowed, true);
  // the denial that starts the block: its wait is the block's (longer than the policy's 30 s)
  const d = await expectDenied(lim, 'k', p, 15 * MIN, 'the first denial');
  assert.equal(d.resetAfter, 15 * MIN);
  // the policy refilled after a minute: still blocked, for the time left
  clock.nowUs = T0 + MIN * 1000;
  await expectDenied(lim, 'k', p, 14 * MIN, 'refilled, still blocked');
  // a peek is denied too, and counts nothing
  assert.equal((await lim.check('k', p, { cost: 0 })).allowed, false);
  clock.nowUs = T0 + (15 * MIN - 1) * 1000;
  await expectDenied(lim, 'k', p, 1, '1 ms before the end');
  clock.nowUs = T0 + 15 * MIN * 1000;
  const after = await lim.check('k', p);
  assert.equal(after.allowed, true);
  assert.equal(after.remaining, 1);
  // another key was never blocked
  assert.equal((await lim.check('other', p)).allowed, true);
});

scenario('strikes 3: only the third denial within the window blocks', async (lim, clock) => {
  const p = policy(1, '1m', { block: '15m', strikes: 3, strikesPeriod: '1h' });
  assert.equal((await lim.check('k', p)).allowed, true);
  await expectDenied(lim, 'k', p, MIN, 'strike 1: the policy\'s own wait');
  await expectDenied(lim, 'k', p, MIN, 'strike 2');
  await expectDenied(lim, 'k', p, 15 * MIN, 'strike 3 blocks');
  clock.nowUs = T0 + 2 * MIN * 1000; // the policy allows again; the block holds
  await expectDenied(lim, 'k', p, 13 * MIN, 'blocked');
});

scenario('strikes count within one epoch-aligned window only', async (lim, clock) => {
  const p = policy(1, '1m', { block: '15m', strikes: 3, strikesPeriod: '1h' });
  assert.equal((await lim.check('k', p)).allowed, true);
  await expectDenied(lim, 'k', p, MIN, 'strike 1');
  await expectDenied(lim, 'k', p, MIN, 'strike 2');
  // the next hour starts 2800 s after T0: its denials count afresh
  clock.nowUs = T0 + (TO_HOUR_END - 1000) * 1000;
  assert.equal((await lim.check('k', p)).allowed, true);
  clock.nowUs = T0 + TO_HOUR_END * 1000;
  await expectDenied(lim, 'k', p, MIN - 1000, 'strike 1 of the new hour');
  await expectDenied(lim, 'k', p, MIN - 1000, 'strike 2 of the new hour');
  await expectDenied(lim, 'k', p, 15 * MIN, 'strike 3 of the new hour blocks');
});

scenario('a blocked key is denied under any other policy', async (lim, clock) => {
  const login = policy(1, '1m', { block: '10m', name: 'login' });
  await lim.check('k', login);
  await expectDenied(lim, 'k', login, 10 * MIN, 'blocked');
  clock.nowUs = T0 + 1000 * 1000;
  for (const other of [
    policy(1000, '1s'),
    policy(5, '1h', { algorithm: 'fixed_window' }),
    { limit: 10, period: '1d', algorithm: 'sliding_window', name: 'daily' },
  ]) {
    await expectDenied(lim, 'k', other, 10 * MIN - 1000, JSON.stringify(other));
  }
  const d = await lim.check('k', [policy(1000, '1s'), policy(100, '1h', { name: 'hourly' })]);
  assert.equal(d.allowed, false);
  assert.equal(d.remaining, 0);
  assert.equal(d.retryAfter, 10 * MIN - 1000);
  // a policy without a block whose cost can never pass stays impossible
  const never = await lim.check('k', policy(1, '1s'), { cost: 2 });
  assert.equal(never.allowed, false);
  assert.equal(never.retryAfter, Infinity);
});

scenario('a policy without a block is a distinct policy: its denials block nothing', async (lim) => {
  const plain = policy(1, '1m');
  const blocking = policy(1, '1m', { block: '5m' });
  assert.equal((await lim.check('k', plain)).allowed, true);
  await expectDenied(lim, 'k', plain, MIN, 'no block');
  await expectDenied(lim, 'k', plain, MIN, 'still no block');
  // the same limit with a block, under the same identity (position 0)
  await expectDenied(lim, 'k', blocking, 5 * MIN, 'blocks');
  await expectDenied(lim, 'k', plain, 5 * MIN, 'blocked under the plain policy too');
  // a plain object changed in place is compiled again
  const obj = { limit: 1, period: '1m' };
  assert.equal((await lim.check('j', obj)).allowed, true);
  await expectDenied(lim, 'j', obj, MIN, 'no block yet');
  obj.block = '2m';
  await expectDenied(lim, 'j', obj, 2 * MIN, 'now with a block');
});

scenario('explicit block and unblock', async (lim, clock) => {
  const p = policy(100, '1s');
  await lim.block('k', '10m');
  await expectDenied(lim, 'k', p, 10 * MIN, 'blocked for 10 minutes');
  // a block replaces a block, shorter or longer; milliseconds as a number
  await lim.block('k', 1500);
  await expectDenied(lim, 'k', p, 1500, 'replaced by 1.5 s');
  await lim.block('k', '1h');
  await expectDenied(lim, 'k', p, 60 * MIN, 'replaced by an hour');
  assert.equal(await lim.unblock('k'), undefined);
  assert.equal((await lim.check('k', p)).allowed, true);
  // unblocking a key that is not blocked succeeds
  await lim.unblock('k');
  await lim.unblock('never-seen');
  // a block runs out by itself
  assert.equal(await lim.block('b', 2000), undefined);
  clock.nowUs = T0 + 1999 * 1000;
  await expectDenied(lim, 'b', p, 1, 'almost over');
  clock.nowUs = T0 + 2000 * 1000;
  assert.equal((await lim.check('b', p)).allowed, true);
  // Buffer keys are the same key as their UTF-8 string
  await lim.block(Buffer.from('bytes'), '1m');
  await expectDenied(lim, 'bytes', p, MIN, 'blocked by its bytes');
  await lim.unblock(new Uint8Array(Buffer.from('bytes')));
  assert.equal((await lim.check('bytes', p)).allowed, true);
});

scenario('unblock lifts a policy block and forgets its strikes', async (lim) => {
  const p = policy(1, '1m', { block: '15m', strikes: 2, strikesPeriod: '1h' });
  await lim.check('k', p);
  await expectDenied(lim, 'k', p, MIN, 'strike 1');
  await expectDenied(lim, 'k', p, 15 * MIN, 'strike 2 blocks');
  await lim.unblock('k');
  // the policy's own state stays: denied, but the strikes start again
  await expectDenied(lim, 'k', p, MIN, 'strike 1 again');
  await expectDenied(lim, 'k', p, 15 * MIN, 'strike 2 again');
});

scenario('reset lifts a block', async (lim) => {
  const p = policy(1, '1m', { block: '15m' });
  await lim.check('k', p);
  await expectDenied(lim, 'k', p, 15 * MIN, 'blocked');
  await lim.reset('k');
  assert.equal((await lim.check('k', p)).allowed, true);
  await lim.block('j', '1h');
  await lim.reset('j');
  assert.equal((await lim.check('j', p)).allowed, true);
});

scenario('a refund still works while blocked', async (lim) => {
  const p = policy(5, '1h');
  assert.equal((await lim.check('k', p, { cost: 3 })).remaining, 2);
  await lim.block('k', '10m');
  const d = await lim.refund('k', p, { amount: 2 });
  assert.equal(d.allowed, true);
  assert.equal(d.remaining, 4);
  // still blocked after the refund
  await expectDenied(lim, 'k', p, 10 * MIN, 'blocked');
  await lim.unblock('k');
  assert.equal((await lim.check('k', p, { cost: 0 })).remaining, 4);
});

scenario('bad block input: a clear error, a rejected promise', async (lim) => {
  const p = policy(100, '1s');
  const bad = [
    [0, (e) => isInvalidArg(e) && /block: the duration must be 1 ms to 2\^40 ms \(got 0\)/.test(e.message)],
    [-5, (e) => isInvalidArg(e) && /got -5/.test(e.message)],
    [-60000, isInvalidArg],
    [2 ** 40 + 1, (e) => isInvalidArg(e) && /2\^40/.test(e.message)],
    [2 ** 60, isInvalidArg],
    [1.5, (e) => isInvalidArg(e) && /1\.5 is not a whole number of milliseconds/.test(e.message)],
    [NaN, isInvalidArg],
    [Infinity, isInvalidArg],
    ['0s', (e) => isInvalidArg(e) && /^block duration: must be at least 1 ms/.test(e.message)],
    ['-5m', isInvalidArg],
    ['soon', (e) => isInvalidArg(e) && /^block duration: expected a number and a unit/.test(e.message)],
    [undefined, (e) => e instanceof TypeError && /duration must be integer milliseconds/.test(e.message)],
    [null, TypeError],
    [{}, TypeError],
  ];
  for (const [duration, check] of bad) {
    const r = lim.block('k', duration);
    assert.ok(r instanceof Promise, 'block() never throws synchronously');
    await assert.rejects(r, check, String(duration));
  }
  // keys are checked as reset() checks them
  await assert.rejects(lim.block(42, '1m'), TypeError);
  await assert.rejects(lim.unblock(42), TypeError);
  await assert.rejects(lim.block('', '1m'), (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_KEY_INVALID');
  await assert.rejects(lim.unblock(''), (e) => e.code === 'RL_E_KEY_INVALID');
  await assert.rejects(lim.block('x'.repeat(513), '1m'), (e) => e.code === 'RL_E_KEY_TOO_LONG');
  // none of those blocked anything
  assert.equal((await lim.check('k', p)).allowed, true);
  // the largest block is taken
  await lim.block('k', 2 ** 40);
  await expectDenied(lim, 'k', p, 2 ** 40, 'blocked for 2^40 ms');
});

for (const store of STORES) {
  test(`blocks on ${store.name}`, { skip: store.skip }, async (t) => {
    const server = store.name === 'Redis' ? await RedisServer.start() : null;
    try {
      for (const { name, fn } of SCENARIOS) {
        await t.test(name, async () => {
          const clock = { nowUs: T0 };
          const lim = store.make(clock, server);
          try {
            await fn(lim, clock);
          } finally {
            await lim.close();
          }
        });
      }
    } finally {
      if (server) await server.stop();
    }
  });
}

test('blocks on a closed limiter fail with RL_E_CLOSED', async () => {
  const lim = new Limiter();
  await lim.close();
  await assert.rejects(lim.block('k', '1m'), (e) => e.code === 'RL_E_CLOSED');
  await assert.rejects(lim.unblock('k'), (e) => e.code === 'RL_E_CLOSED');
});

test('blocks: a memory limiter\'s clock that throws rejects block()', async () => {
  let fail = false;
  const lim = new Limiter({
    clock: () => {
      if (fail) throw new Error('clock broke');
      return T0;
    },
  });
  try {
    fail = true;
    await assert.rejects(lim.block('k', '1m'), /clock broke/);
    fail = false;
    assert.equal((await lim.check('k', policy(1, '1s'))).allowed, true);
  } finally {
    await lim.close();
  }
});

test('ESM: Limiter has block and unblock', async () => {
  const esm = await import('../lib/index.mjs');
  assert.equal(typeof esm.Limiter.prototype.block, 'function');
  assert.equal(typeof esm.Limiter.prototype.unblock, 'function');
});

test('Redis (its own clock): policy blocks, block, unblock, reset, refund', { skip: !REDIS_SERVER && 'redis-server is not installed' }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  // the deny cache on (the default): unblock and reset clear this limiter's
  const keyPrefix = prefix();
  const lim = new Limiter({ url: server.url, keyPrefix, failureMode: 'error', timeoutMs: 2000 });
  t.after(() => lim.close());
  const within = (d, lo, hi, what) => {
    assert.equal(d.allowed, false, what);
    assert.equal(d.remaining, 0, what);
    assert.ok(d.retryAfter >= lo && d.retryAfter <= hi, `${what}: retryAfter ${d.retryAfter}`);
  };

  // the first denial blocks for the block, under any policy
  const p = policy(1, '1h', { block: '10m' });
  const key = uniqueKey('blocked');
  assert.equal((await lim.check(key, p)).allowed, true);
  let d = await lim.check(key, p);
  within(d, 60 * MIN - 1000, 60 * MIN, 'denied: the policy\'s hour is longer than the block');
  const short = policy(1, '1m', { block: '10m' });
  const k2 = uniqueKey('short');
  await lim.check(k2, short);
  within(await lim.check(k2, short), 10 * MIN - 1000, 10 * MIN, 'the block');
  within(await lim.check(k2, policy(1000, '1s')), 10 * MIN - 1000, 10 * MIN, 'another policy');
  assert.equal((await lim.check(uniqueKey('free'), short)).allowed, true);

  // strikes: the third denial within one day. Without the deny cache: a
  // denial it answers locally never reaches Redis, so it counts no strike.
  const direct = new Limiter({ url: server.url, keyPrefix, failureMode: 'error', timeoutMs: 2000, denyCache: false });
  t.after(() => direct.close());
  const s = policy(1, '1h', { block: '2h', strikes: 3, strikesPeriod: '1d' });
  const k3 = uniqueKey('strikes');
  await direct.check(k3, s);
  within(await direct.check(k3, s), 60 * MIN - 1000, 60 * MIN, 'strike 1');
  within(await direct.check(k3, s), 60 * MIN - 1000, 60 * MIN, 'strike 2');
  within(await direct.check(k3, s), 120 * MIN - 1000, 120 * MIN, 'strike 3 blocks');
  within(await direct.check(k3, policy(1000, '1s')), 120 * MIN - 1000, 120 * MIN, 'blocked under another policy');

  // explicit block, unblock, reset
  const free = policy(100, '1s');
  const k4 = uniqueKey('explicit');
  assert.equal(await lim.block(k4, '5m'), undefined);
  within(await lim.check(k4, free), 5 * MIN - 1000, 5 * MIN, 'blocked');
  // a shorter block replaces it (read past the deny cache, which keeps the
  // denial it cached until it lapses)
  await lim.block(k4, 30000);
  within(await direct.check(k4, free), 29000, 30000, 'replaced');
  assert.equal(await lim.unblock(k4), undefined);
  assert.equal((await lim.check(k4, free)).allowed, true);
  await lim.unblock(uniqueKey('never'));
  // a policy's block, and this limiter's cached denial of it (a named
  // policy: position 0 holds the 1/m policy's usage)
  const other = policy(1000, '1s', { name: 'other' });
  assert.equal((await lim.check(k2, other)).allowed, false);
  await lim.unblock(k2);
  assert.equal((await lim.check(k2, other)).allowed, true);
  await lim.block(k4, '1h');
  assert.equal((await lim.check(k4, free)).allowed, false);
  assert.equal(await lim.reset(k4), undefined);
  assert.equal((await lim.check(k4, free)).allowed, true);

  // a refund runs while blocked
  const r = policy(5, '1h');
  const k5 = uniqueKey('refund');
  assert.equal((await lim.check(k5, r, { cost: 3 })).remaining, 2);
  await lim.block(k5, '10m');
  d = await lim.refund(k5, r, { amount: 2 });
  assert.equal(d.allowed, true);
  assert.equal(d.remaining, 4);
  within(await lim.check(k5, r), 10 * MIN - 1000, 10 * MIN, 'still blocked');

  // bad input
  await assert.rejects(lim.block(key, 0), isInvalidArg);
  await assert.rejects(lim.block(key, -1), isInvalidArg);
  await assert.rejects(lim.block(key, '0s'), isInvalidArg);
  await assert.rejects(lim.block(42, '1m'), TypeError);
  await assert.rejects(lim.block('', '1m'), (e) => e.code === 'RL_E_KEY_INVALID');

  // closed
  const closed = new Limiter({ url: server.url, keyPrefix: prefix() });
  await closed.close();
  await assert.rejects(closed.block(key, '1m'), (e) => e.code === 'RL_E_CLOSED');
  await assert.rejects(closed.unblock(key), (e) => e.code === 'RL_E_CLOSED');
});
