'use strict';
// Waiting until allowed (docs/waiting.md, docs/node.md "Waiting"):
// limiter.checkWait, limiter.acquireWait and withLease with maxWait, on the
// memory store and on a real redis-server, as tests/test_waiting.cpp does:
// a check sleeps its retryAfter between tries and answers at once when no
// wait can help or the wait left is too short; a lease wait steps up to its
// hint and wakes at once on a release in this process; errors end a wait;
// an AbortSignal ends a wait at once and leaves no lease held; bad waits
// are InvalidArgumentErrors naming maxWait.
//
// Timings are asserted only as deadline bounds (a call ended before, or not
// before, a given time), never as exact durations.

const test = require('node:test');
const assert = require('node:assert/strict');

const tollgate = require('..');
const { Limiter, Lease, policy, InvalidArgumentError, ConnectionError, TimeoutError, LeaseDeniedError } = tollgate;
const { noRedis, sleep } = require('./redis-server');
const { prefix, uniqueKey, limiterStores, ownServer, killedServerUrl } = require('./helpers');

const LONG = '30s'; // a ttl that never passes within a test

// A fresh limiter of `kind`, closed after the test. A Redis one has its own
// key prefix and no deny cache, so every try reaches the server (and is
// counted).
const { limiterOf } = limiterStores({ redis: { denyCache: false } });

const checks = (lim) => lim.health().checks;

// The time `promise` took to settle (ms), and its value.
async function timed(promise) {
  const t0 = performance.now();
  const value = await promise;
  return { value, ms: performance.now() - t0 };
}

async function take(lim, key, maxInFlight, ttl = LONG) {
  const r = await lim.acquire(key, { maxInFlight, ttl });
  assert.equal(r.acquired, true, JSON.stringify({ ...r, lease: undefined }));
  return r.lease;
}

// The key's leases held now (a probe: takes one place of many, gives it back).
async function inFlightNow(lim, key) {
  const r = await lim.acquire(key, { maxInFlight: 1000, ttl: LONG });
  assert.equal(r.acquired, true);
  assert.equal(await r.lease.release(), true);
  return r.inFlight - 1;
}

// Whether `promise` has settled, read after a few turns of the event loop
// (no timer runs in between: setImmediate only).
async function settledSoon(promise, turns = 20) {
  let settled = false;
  promise.then(() => (settled = true), () => (settled = true));
  for (let i = 0; i < turns && !settled; i++) await new Promise((r) => setImmediate(r));
  return settled;
}

for (const kind of ['memory', 'redis']) {
  const skip = kind === 'redis' && noRedis;
  const store = kind === 'memory' ? 'memory' : 'Redis';

  // ---- checks ----------------------------------------------------------------

  test(`${store}: a check waits its retryAfter and passes in at most three tries`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '300ms');
    assert.equal((await lim.check('k', p)).allowed, true); // just charged: the next passes in 300 ms
    const before = checks(lim);
    const { value: d, ms } = await timed(lim.checkWait('k', p, { maxWait: 5000 }));
    assert.equal(d.allowed, true);
    assert.equal(d.retryAfter, 0);
    assert.equal(d.source, 'store');
    assert.deepEqual(Object.keys(d), Object.keys(await lim.check('other', p))); // check()'s shape
    assert.ok(checks(lim) - before <= 3, `${checks(lim) - before} tries`); // one per retryAfter, not a loop
    assert.ok(ms < 5000, `${ms} ms`);
  });

  test(`${store}: a wait shorter than retryAfter answers the denial at once`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '300ms');
    assert.equal((await lim.check('k', p)).allowed, true);
    const before = checks(lim);
    const { value: d, ms } = await timed(lim.checkWait('k', p, { maxWait: 100 }));
    assert.equal(d.allowed, false);
    assert.ok(d.retryAfter > 100, String(d.retryAfter)); // what it could not wait, for the caller
    assert.ok(ms < 100, `${ms} ms`);
    assert.equal(checks(lim) - before, 1);
  });

  test(`${store}: a cost above the capacity answers retryAfter Infinity at once`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const before = checks(lim);
    const { value: d, ms } = await timed(lim.checkWait('k', policy(5, '1s'), { cost: 6, maxWait: 60000 }));
    assert.equal(d.allowed, false);
    assert.equal(d.retryAfter, Infinity);
    assert.ok(ms < 1000, `${ms} ms`);
    assert.equal(checks(lim) - before, 1);
  });

  test(`${store}: an allowed check answers at once and charges once; several policies; maxWait 0 is one try`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const before = checks(lim);
    const d = await lim.checkWait('k', policy(10, '1m'), { maxWait: 60000, cost: 3 });
    assert.deepEqual([d.allowed, d.remaining, checks(lim) - before], [true, 7, 1]);
    const many = [policy(10, '1m', { name: 'minute' }), { limit: 100, period: '1h', name: 'hourly' }];
    assert.equal((await lim.checkWait('k2', many, { maxWait: '1s' })).allowed, true);

    const once = policy(1, '1m');
    assert.equal((await lim.checkWait('z', once, { maxWait: 0 })).allowed, true);
    const before0 = checks(lim);
    const denied = await lim.checkWait('z', once, { maxWait: 0 });
    assert.equal(denied.allowed, false);
    assert.equal(checks(lim) - before0, 1);
    assert.ok(denied.retryAfter > 59000 && denied.remaining === 0, JSON.stringify(denied)); // as a plain check answers
  });

  test(`${store}: maxWait as integer ms or a period`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '200ms');
    for (const maxWait of [2000, '2s', '2000ms', '2 seconds']) {
      const key = uniqueKey('forms');
      assert.equal((await lim.check(key, p)).allowed, true);
      const d = await lim.checkWait(key, p, { maxWait });
      assert.equal(d.allowed, true, String(maxWait));
    }
  });

  test(`${store}: waiters that share a key all pass in turn (no queue)`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '100ms');
    const all = await Promise.all(Array.from({ length: 4 }, () => lim.checkWait('k', p, { maxWait: 10000 })));
    assert.ok(all.every((d) => d.allowed), JSON.stringify(all));
  });

  test(`${store}: a wait never blocks the event loop`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '500ms');
    assert.equal((await lim.check('k', p)).allowed, true);
    let ticks = 0;
    const timer = setInterval(() => ++ticks, 5);
    const d = await lim.checkWait('k', p, { maxWait: 5000 }); // about 500 ms asleep
    clearInterval(timer);
    assert.equal(d.allowed, true);
    assert.ok(ticks >= 5, `${ticks} ticks`); // about 100 on an idle machine
  });

  // ---- leases ----------------------------------------------------------------

  test(`${store}: a lease wait on a full key ends denied after the wait`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const held = await take(lim, 'k', 1);
    const { value: r, ms } = await timed(lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 150 }));
    assert.deepEqual([r.acquired, r.lease, r.inFlight, r.maxInFlight], [false, null, 1, 1]);
    assert.ok(r.retryAfter > 150, String(r.retryAfter));
    assert.equal(r.source, 'store');
    assert.deepEqual(Object.keys(r), ['acquired', 'lease', 'inFlight', 'maxInFlight', 'retryAfter', 'source']);
    assert.ok(ms >= 149 && ms < 150 + 1000, `${ms} ms`);
    assert.equal(await held.release(), true);
  });

  test(`${store}: a lease wait on a free key acquires at once; maxWait 0 is one try`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const { value: r, ms } = await timed(lim.acquireWait('k', { maxInFlight: 2, ttl: LONG, maxWait: 60000 }));
    assert.equal(r.acquired, true);
    assert.ok(r.lease instanceof Lease);
    assert.equal(r.inFlight, 1);
    assert.ok(ms < 5000, `${ms} ms`);
    const r0 = await lim.acquireWait('k', { maxInFlight: 2, ttl: LONG, maxWait: 0 });
    assert.deepEqual([r0.acquired, r0.inFlight], [true, 2]);
    const { value: d0, ms: ms0 } = await timed(lim.acquireWait('k', { maxInFlight: 2, ttl: LONG, maxWait: 0 }));
    assert.equal(d0.acquired, false);
    assert.ok(ms0 < 1000, `${ms0} ms`);
    assert.equal(await r.lease.release(), true);
    assert.equal(await r0.lease.release(), true);
  });

  test(`${store}: a waiter gets the lease when it is released in this process, at once`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const held = await take(lim, 'k', 1);
    const waiter = lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 20000 });
    // Its steps: 10, 20, 40, ... ms; by 1.3 s it sleeps one of 1280 ms.
    await sleep(1300);
    assert.equal(await settledSoon(waiter, 2), false);
    const releasedAt = performance.now();
    assert.equal(await held.release(), true);
    if (kind === 'memory') {
      // The memory store answers inline: nothing but the wake-up can run the
      // waiter's next try within a few turns of the loop.
      assert.equal(await settledSoon(waiter), true, 'the waiter did not wake on the release');
    }
    const r = await waiter;
    const after = performance.now() - releasedAt;
    assert.equal(r.acquired, true);
    assert.ok(after < 600, `acquired ${after} ms after the release`); // its step would have ended ~1200 ms later
    // a release through withLease's end (and a second waiter) wakes the same way
    const next = lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 20000 });
    await sleep(50);
    await r.lease.release();
    const r2 = await next;
    assert.equal(r2.acquired, true);
    let third;
    await lim.withLease('w', { maxInFlight: 1, ttl: LONG }, async () => {
      third = lim.acquireWait('w', { maxInFlight: 1, ttl: LONG, maxWait: 20000 });
      await sleep(1300);
      assert.equal(await settledSoon(third, 2), false);
    });
    const endedAt = performance.now();
    const r3 = await third;
    assert.equal(r3.acquired, true);
    assert.ok(performance.now() - endedAt < 600);
    assert.equal(await r3.lease.release(), true);
    assert.equal(await r2.lease.release(), true);
  });

  test(`${store}: a holder whose lease ends by its ttl lets a waiter in`, { skip }, async (t) => {
    // A holder that never releases (another process, say).
    const lim = await limiterOf(t, kind);
    await take(lim, 'k', 1, 300);
    const { value: r, ms } = await timed(lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 10000 }));
    assert.equal(r.acquired, true);
    assert.ok(ms < 10000, `${ms} ms`);
    assert.equal(await r.lease.release(), true);
  });

  test(`${store}: withLease with maxWait waits for a place, else rejects with LeaseDeniedError after the wait`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const held = await take(lim, 'k', 1);
    let ran = false;
    const t0 = performance.now();
    const denied = await lim.withLease('k', { maxInFlight: 1, ttl: LONG, maxWait: 150 }, () => {
      ran = true;
    }).catch((e) => e);
    assert.ok(performance.now() - t0 >= 149);
    assert.equal(ran, false);
    assert.ok(denied instanceof LeaseDeniedError, String(denied));
    assert.match(denied.message, /^withLease: denied after waiting 150 ms, 1 of 1 leases are held; retry in \d+ ms$/);
    assert.ok(denied.retryAfter > 150 && denied.inFlight === 1, String(denied.retryAfter));

    setTimeout(() => held.release(), 100);
    const out = await lim.withLease('k', { maxInFlight: 1, ttl: LONG, maxWait: '20s' }, async (lease) => {
      assert.ok(lease instanceof Lease);
      assert.equal(await inFlightNow(lim, 'k'), 1);
      return 'ran';
    });
    assert.equal(out, 'ran');
    assert.equal(await inFlightNow(lim, 'k'), 0);
    // maxWait 0, and a signal alone: one try
    assert.equal(await lim.withLease('k', { maxInFlight: 1, ttl: LONG, maxWait: 0 }, () => 1), 1);
    const ac = new AbortController();
    assert.equal(await lim.withLease('k', { maxInFlight: 1, ttl: LONG, signal: ac.signal }, () => 2), 2);
    ac.abort();
    await assert.rejects(lim.withLease('k', { maxInFlight: 1, ttl: LONG, signal: ac.signal }, () => 3), { name: 'AbortError' });
  });

  // ---- AbortSignal -------------------------------------------------------------

  test(`${store}: an aborted signal before the start rejects with its reason; nothing is tried`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '1s');
    const before = checks(lim);
    const signal = AbortSignal.abort();
    await assert.rejects(lim.checkWait('k', p, { maxWait: 1000, signal }), (e) => {
      assert.ok(e instanceof DOMException, String(e));
      assert.equal(e.name, 'AbortError');
      assert.equal(e, signal.reason);
      return true;
    });
    const reason = new Error('shutting down');
    const ac = new AbortController();
    ac.abort(reason);
    await assert.rejects(lim.checkWait('k', p, { maxWait: 1000, signal: ac.signal }), (e) => e === reason);
    await assert.rejects(lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 1000, signal: ac.signal }), (e) => e === reason);
    await assert.rejects(lim.withLease('k', { maxInFlight: 1, ttl: LONG, maxWait: 1000, signal: ac.signal }, () => {}), (e) => e === reason);
    assert.equal(checks(lim), before);
    assert.equal(await inFlightNow(lim, 'k'), 0);
  });

  test(`${store}: aborting a check wait mid-wait rejects at once; no try after it`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '10s');
    assert.equal((await lim.check('k', p)).allowed, true);
    const ac = new AbortController();
    const waiting = lim.checkWait('k', p, { maxWait: 60000, signal: ac.signal });
    await sleep(100); // asleep until the unit frees
    const before = checks(lim);
    const t0 = performance.now();
    ac.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    assert.ok(performance.now() - t0 < 1000);
    await sleep(200);
    assert.equal(checks(lim), before); // no try after the abort
  });

  test(`${store}: aborting a lease wait mid-wait rejects at once and holds nothing`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const held = await take(lim, 'k', 1);
    const ac = new AbortController();
    const waiting = lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 60000, signal: ac.signal });
    await sleep(200);
    const t0 = performance.now();
    ac.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(await held.release(), true);
    await sleep(100);
    assert.equal(await inFlightNow(lim, 'k'), 0); // the aborted waiter took nothing

    // withLease waiting, aborted: fn never runs
    const again = await take(lim, 'k', 1);
    const ac2 = new AbortController();
    let ran = false;
    const w = lim.withLease('k', { maxInFlight: 1, ttl: LONG, maxWait: 60000, signal: ac2.signal }, () => {
      ran = true;
    });
    await sleep(50);
    ac2.abort();
    await assert.rejects(w, { name: 'AbortError' });
    assert.equal(await again.release(), true);
    await sleep(50);
    assert.equal(ran, false);
    assert.equal(await inFlightNow(lim, 'k'), 0);
  });

  // ---- closing --------------------------------------------------------------------

  test(`${store}: close() ends the waits in progress with ConnectionError (RL_E_CLOSED); a closed limiter refuses waits`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const p = policy(1, '1h');
    assert.equal((await lim.check('k', p)).allowed, true);
    await take(lim, 'l', 1);
    const check = lim.checkWait('k', p, { maxWait: '2h' });
    const lease = lim.acquireWait('l', { maxInFlight: 1, ttl: LONG, maxWait: 60000 });
    await sleep(100);
    const t0 = performance.now();
    const closing = lim.close();
    await assert.rejects(check, (e) => e instanceof ConnectionError && e.code === 'RL_E_CLOSED');
    await assert.rejects(lease, (e) => e instanceof ConnectionError && e.code === 'RL_E_CLOSED');
    assert.ok(performance.now() - t0 < 2000);
    await closing;
    await assert.rejects(lim.checkWait('k', p, { maxWait: 1 }), { code: 'RL_E_CLOSED' });
    await assert.rejects(lim.acquireWait('k', { maxInFlight: 1, ttl: 1, maxWait: 1 }), { code: 'RL_E_CLOSED' });
  });
}

// ---- Redis away ------------------------------------------------------------------

// A limiter on a server that was SIGKILLed before it was made.
async function down(t, failureMode) {
  const url = await killedServerUrl(t);
  const lim = new Limiter({ url, failureMode, timeoutMs: 500, connectTimeoutMs: 200, denyCache: false });
  t.after(() => lim.close());
  return lim;
}

test('Redis killed, fail closed: a short check wait ends at once with the fail-closed denial', { skip: noRedis }, async (t) => {
  const lim = await down(t, 'closed');
  const { value: d, ms } = await timed(lim.checkWait('k', policy(10, '1s'), { maxWait: 200 }));
  assert.deepEqual([d.allowed, d.source, d.retryAfter], [false, 'fail_closed', 1000]);
  assert.ok(ms < 200 + 1500, `${ms} ms`); // one connect attempt, no sleep
});

test('Redis killed, fail closed: a lease wait tries on until its wait is over, then the denial', { skip: noRedis }, async (t) => {
  // A lease's hint is a bound, not the time a place frees.
  const lim = await down(t, 'closed');
  const { value: r, ms } = await timed(lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 200 }));
  assert.deepEqual([r.acquired, r.source, r.retryAfter], [false, 'fail_closed', 1000]);
  assert.ok(ms >= 199 && ms < 200 + 10000, `${ms} ms`);
});

test('Redis killed, failure mode error: an error ends the wait at once', { skip: noRedis }, async (t) => {
  const lim = await down(t, 'error');
  const t0 = performance.now();
  const isStoreError = (e) => e instanceof ConnectionError || e instanceof TimeoutError;
  await assert.rejects(lim.checkWait('k', policy(10, '1s'), { maxWait: 60000 }), isStoreError);
  await assert.rejects(lim.acquireWait('k', { maxInFlight: 1, ttl: LONG, maxWait: 60000 }), isStoreError);
  assert.ok(performance.now() - t0 < 20000);
});

test('Redis: a lease wait aborted while its try waits on a frozen server releases the lease that try gets', { skip: noRedis, timeout: 60000 }, async (t) => {
  // The server is frozen during the wait's first try; the wait is aborted
  // (and rejects at once); the server thaws and the try completes with a
  // lease, which is released by itself, long before its ttl.
  const server = await ownServer(t);
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 10000 });
  t.after(() => lim.close());
  await (await take(lim, 'warm', 1)).release();
  server.freeze();
  try {
    const ac = new AbortController();
    const waiting = lim.acquireWait('k', { maxInFlight: 1, ttl: '10m', maxWait: 60000, signal: ac.signal });
    await sleep(200);
    const t0 = performance.now();
    ac.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    assert.ok(performance.now() - t0 < 1000, 'the abort waited for the try in flight');
  } finally {
    server.thaw();
  }
  const deadline = performance.now() + 20000;
  for (;;) {
    const r = await lim.acquire('k', { maxInFlight: 1, ttl: LONG });
    if (r.acquired) {
      assert.equal(r.inFlight, 1);
      assert.equal(await r.lease.release(), true);
      break;
    }
    assert.ok(performance.now() < deadline, 'the abandoned lease was not released');
    await sleep(20);
  }
});

// ---- long sleeps ---------------------------------------------------------------

test('a retryAfter beyond setTimeout\'s longest delay (2^31 - 1 ms) sleeps, not retries at once', async (t) => {
  const lim = new Limiter();
  t.after(() => lim.close());
  const p = policy(1, '30d'); // retryAfter ~2.6e9 ms
  assert.equal((await lim.check('k', p)).allowed, true);
  const before = checks(lim);
  const ac = new AbortController();
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const waiting = lim.checkWait('k', p, { maxWait: 2 ** 40, signal: ac.signal });
  await sleep(100);
  assert.equal(checks(lim) - before, 1);
  ac.abort();
  await assert.rejects(waiting, { name: 'AbortError' });
  assert.deepEqual(warnings.map(String), []); // no TimeoutOverflowWarning
});

// ---- bad input ---------------------------------------------------------------------

const BAD_WAITS = [-1, 1.5, 0.5, NaN, Infinity, -Infinity, 2 ** 40 + 1, 2 ** 53, '-1s', 'soon', '', '0s', '2000000000000s'];

test('a bad maxWait is an InvalidArgumentError naming it (RL_E_INVALID_ARG); nothing is tried', async (t) => {
  const lim = new Limiter();
  t.after(() => lim.close());
  const p = policy(1, '1s');
  const invalid = (e) => {
    assert.ok(e instanceof InvalidArgumentError, String(e));
    assert.equal(e.code, 'RL_E_INVALID_ARG');
    assert.match(e.message, /^maxWait: /);
    return true;
  };
  for (const maxWait of BAD_WAITS) {
    await assert.rejects(lim.checkWait('k', p, { maxWait }), invalid, String(maxWait));
    await assert.rejects(lim.acquireWait('k', { maxInFlight: 1, ttl: 1000, maxWait }), invalid, String(maxWait));
    await assert.rejects(lim.withLease('k', { maxInFlight: 1, ttl: 1000, maxWait }, () => {}), invalid, String(maxWait));
  }
  const e = await lim.checkWait('k', p, { maxWait: -1 }).catch((x) => x);
  assert.equal(e.message, 'maxWait: must be 0 to 2^40 ms (got -1 ms)');
  const f = await lim.checkWait('k', p, { maxWait: 1.5 }).catch((x) => x);
  assert.equal(f.message, 'maxWait: 1.5 is not a whole number of milliseconds');
  // A zero period alone ('0s') has its own message; a zero followed by
  // more is malformed period text, reported as such.
  const z = await lim.checkWait('k', p, { maxWait: '0s' }).catch((x) => x);
  assert.equal(z.message, 'maxWait: the period text has no zero; give 0 (a number) for one try');
  const m = await lim.checkWait('k', p, { maxWait: '0s5' }).catch((x) => x);
  assert.match(m.message, /^maxWait: must be at least 1 ms \(at byte 0\)/);
  assert.equal(lim.health().checks, 0);
  assert.equal(await inFlightNow(lim, 'k'), 0);
});

test('the longest wait (2^40 ms) is accepted', async (t) => {
  const lim = new Limiter();
  t.after(() => lim.close());
  const p = policy(1, '1s');
  assert.equal((await lim.checkWait('k', p, { maxWait: 2 ** 40 })).allowed, true);
  assert.equal((await lim.checkWait('k', p, { cost: 2, maxWait: 2 ** 40 })).retryAfter, Infinity);
  const r = await lim.acquireWait('k', { maxInFlight: 1, ttl: 1, maxWait: 2 ** 40 });
  assert.equal(r.acquired, true);
  assert.equal(await r.lease.release(), true);
});

test('bad types are TypeErrors; the other arguments are checked as check() and acquire() check them; nothing throws synchronously', async (t) => {
  const lim = new Limiter();
  t.after(() => lim.close());
  const p = policy(1, '1s');
  for (const maxWait of [true, null, [1], {}, 10n]) {
    await assert.rejects(lim.checkWait('k', p, { maxWait }), { name: 'TypeError', message: /^maxWait must be/ });
    await assert.rejects(lim.acquireWait('k', { maxInFlight: 1, ttl: 1, maxWait }), { name: 'TypeError', message: /^maxWait must be/ });
  }
  await assert.rejects(lim.checkWait('k', p, {}), { name: 'TypeError', message: /^maxWait is required/ });
  await assert.rejects(lim.checkWait('k', p), TypeError);
  await assert.rejects(lim.checkWait('k', p, 1000), TypeError);
  await assert.rejects(lim.acquireWait('k', { maxInFlight: 1, ttl: 1 }), { name: 'TypeError', message: /^maxWait is required/ });
  for (const signal of [true, 'abort', {}, new AbortController()])
    await assert.rejects(lim.checkWait('k', p, { maxWait: 1, signal }), { name: 'TypeError', message: /^signal must be an AbortSignal/ });
  // a null signal is none
  assert.equal((await lim.checkWait('k', p, { maxWait: 1, signal: null })).allowed, true);
  await assert.rejects(lim.checkWait(42, p, { maxWait: 1 }), TypeError);
  await assert.rejects(lim.checkWait('k', [], { maxWait: 1 }), InvalidArgumentError);
  await assert.rejects(lim.checkWait('k', p, { maxWait: 1, cost: 1.5 }), TypeError);
  await assert.rejects(lim.acquireWait('k', { maxInFlight: 0, ttl: 1, maxWait: 1 }), { code: 'RL_E_INVALID_ARG', message: /^maxInFlight: / });
  await assert.rejects(lim.acquireWait('k', { maxInFlight: 1, ttl: 0, maxWait: 1 }), { code: 'RL_E_INVALID_ARG', message: /^ttl: / });
  await assert.rejects(lim.acquireWait('', { maxInFlight: 1, ttl: 1, maxWait: 1 }), { code: 'RL_E_KEY_INVALID' });
  // a wait given to a call that does not wait is refused, not ignored
  await assert.rejects(lim.check('k', p, { maxWait: 1000 }), { name: 'TypeError', message: /checkWait\(\) does/ });
  assert.throws(() => lim.checkSync('k', p, { maxWait: 1000 }), { name: 'TypeError', message: /checkWait\(\) does/ });
  await assert.rejects(lim.acquire('k', { maxInFlight: 1, ttl: 1, maxWait: 1000 }), { name: 'TypeError', message: /acquireWait\(\)/ });
  assert.ok(lim.checkWait('k', p, { maxWait: -1 }).catch(() => {}) instanceof Promise);
  assert.ok(lim.acquireWait(7, { maxInFlight: 1, ttl: 1, maxWait: 1 }).catch(() => {}) instanceof Promise);
});

test('exports: checkWait and acquireWait on Limiter, in CommonJS and ESM', async () => {
  const esm = await import('../lib/index.mjs');
  assert.equal(esm.Limiter, Limiter);
  for (const name of ['checkWait', 'acquireWait']) assert.equal(typeof Limiter.prototype[name], 'function', name);
});
