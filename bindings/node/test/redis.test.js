'use strict';
// The Redis store through the Node API: checks, keys(), reset, ping,
// health, errors, failure modes when Redis is frozen or killed, and an event
// loop that keeps ticking while checks wait on a frozen server.

const test = require('node:test');
const assert = require('node:assert/strict');

const {
  Limiter, policy, TollgateError, ConnectionError, TimeoutError, AuthError, UnsupportedError,
} = require('..');
const { RedisServer, REDIS_SERVER, sleep } = require('./redis-server');
const { prefix, uniqueKey, watchEventLoop } = require('./helpers');

const skip = !REDIS_SERVER && 'redis-server is not installed';

test('Redis: thousands of checks at once settle exactly, joined into few script calls', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 5000 });
  t.after(() => lim.close());
  // Three keys, three algorithms, 1,000 checks each, all in flight at once:
  // more completions than one settle() batch (256), and joined calls.
  // Periods of ~32 years: Redis' clock runs on, and at 300/h a GCRA unit
  // came back every 12 s, or an hour's window could end, mid-burst.
  const keys = ['gcra', 'fixed_window', 'sliding_window'].map((a) => [uniqueKey(a), policy(300, 1e12, { algorithm: a })]);
  const calls = [];
  for (let i = 0; i < 1000; i++) for (const [k, p] of keys) calls.push(lim.check(k, p).then((d) => [k, d]));
  const done = await Promise.all(calls);
  for (const [k] of keys) {
    const mine = done.filter(([key]) => key === k).map(([, d]) => d);
    const allowed = mine.filter((d) => d.allowed);
    assert.equal(allowed.length, 300, k);
    // Each admitted check saw the state its predecessors left: every
    // remaining count from 299 down to 0, once.
    assert.deepEqual(allowed.map((d) => d.remaining).sort((a, b) => a - b), Array.from({ length: 300 }, (_, i) => i));
    for (const d of mine.filter((x) => !x.allowed)) assert.ok(d.retryAfter > 0 && ['store', 'deny_cache'].includes(d.source));
  }
  const stats = await server.info('commandstats');
  const evalsha = Number((/cmdstat_evalsha:calls=(\d+)/.exec(stats) || [0, 0])[1]);
  assert.ok(evalsha > 0 && evalsha < calls.length / 4, `${evalsha} EVALSHA calls for ${calls.length} checks`);
});

test('Redis: spinUs 0 (never poll) and 1000 both answer sequential checks', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  for (const spinUs of [0, 1000]) {
    const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', spinUs });
    const key = uniqueKey('spin' + spinUs);
    const p = policy(3, '1h'); // T = 20 min: the 4th is denied however slow the calls
    const got = [];
    for (let i = 0; i < 5; i++) got.push((await lim.check(key, p)).allowed);
    assert.deepEqual(got, [true, true, true, false, false]);
    await lim.close();
  }
});

test('Redis: checks, multi-policy, reset, keys, ping, health', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 2000 });
  t.after(() => lim.close());
  assert.equal(lim.store, 'redis');
  const rtt = await lim.ping();
  assert.equal(typeof rtt, 'number');
  assert.ok(rtt >= 0 && rtt < 1000);

  const p = policy(5, '1h'); // T = 12 min: still exhausted when keys() lists it
  const key = uniqueKey('basic');
  const ds = await Promise.all(Array.from({ length: 8 }, () => lim.check(key, p)));
  assert.equal(ds.filter((d) => d.allowed).length, 5);
  for (const d of ds) {
    assert.deepEqual(Object.keys(d), ['allowed', 'limit', 'remaining', 'resetAfter', 'retryAfter', 'source', 'policyIndex', 'shadow']);
    assert.ok(['store', 'deny_cache'].includes(d.source));
    assert.equal(d.limit, 5);
  }
  const denied = ds.find((d) => !d.allowed);
  assert.ok(denied.retryAfter > 0);

  // checkSync refuses (it would block) with a clear message
  assert.throws(() => lim.checkSync(key, p), (e) => e instanceof UnsupportedError && e.code === 'RL_E_UNSUPPORTED' && /await limiter.check/.test(e.message));

  // multi-policy, binary keys, cost (2/h, not 2/s: the third check must
  // be denied even if half a second passes after the first)
  const ps = [policy(2, '1h'), policy(10, '1h', { algorithm: 'sliding_window' })];
  const bkey = Buffer.from([0xff, 0x00, 0x41, 0x7b]);
  assert.equal((await lim.check(bkey, ps, { cost: 2 })).allowed, true);
  const third = await lim.check(bkey, ps);
  assert.equal(third.allowed, false);
  assert.equal(third.policyIndex, 0);

  // keys(list): every state under the prefix of the list's identities
  // (unnamed: positions 0 and 1), each with its policy from the list
  const listing = [p, ps[1]];
  const seen = [];
  for await (const e of lim.keys(listing)) seen.push(e);
  for (const e of seen) assert.equal(e.policy, listing[e.policyIndex]);
  const basic = seen.find((e) => e.key === key);
  assert.ok(basic, JSON.stringify(seen));
  assert.equal(basic.policy.limit, 5);
  assert.equal(basic.policy.period, 3600000);
  assert.equal(basic.remaining, 0);
  assert.ok(basic.resetAfter > 0);
  const bin = seen.filter((e) => Buffer.isBuffer(e.key) && e.key.equals(bkey));
  assert.equal(bin.length, 2);
  assert.deepEqual(bin.map((e) => e.policy.algorithm).sort(), ['gcra', 'sliding_window']);
  // breaking out early frees the iterator
  for await (const _ of lim.keys(listing)) break;

  // reset forgets every policy's state for the key
  await lim.reset(bkey);
  const lim2 = new Limiter({ url: server.url, keyPrefix: 'other:', failureMode: 'error' });
  await lim2.close();

  const h = lim.health();
  assert.equal(h.store, 'redis');
  assert.equal(h.connection, 'ready');
  assert.equal(h.serverVersion.split('.').length, 3);
  assert.ok(h.checks >= 10);
  assert.equal(typeof h.lastError, 'string');
  assert.equal(typeof h.inFlight, 'number');
});

test('Redis: reset clears the stored state', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', denyCache: false });
  t.after(() => lim.close());
  const p = policy(1, '1h');
  assert.equal((await lim.check('r', p)).allowed, true);
  assert.equal((await lim.check('r', p)).allowed, false);
  await lim.reset('r');
  assert.equal((await lim.check('r', p)).allowed, true);
});

test('Redis: wrong password is an AuthError, the password is never echoed', { skip }, async (t) => {
  const server = await RedisServer.start({ password: 'right-pass' });
  t.after(() => server.stop());
  const url = `redis://:wrong-pass-123@127.0.0.1:${server.port}`;
  const lim = new Limiter({ url, failureMode: 'error', connectTimeoutMs: 2000 });
  t.after(() => lim.close());
  await assert.rejects(lim.ping(), (e) => {
    assert.ok(e instanceof AuthError, `${e.name}: ${e.message}`);
    assert.equal(e.code, 'RL_E_AUTH');
    assert.ok(!e.message.includes('wrong-pass-123'));
    return true;
  });
  const ok = new Limiter({ url: server.url, failureMode: 'error' });
  assert.ok((await ok.ping()) >= 0);
  await ok.close();
  const byOption = new Limiter({ url: `redis://127.0.0.1:${server.port}`, password: 'right-pass', failureMode: 'error' });
  assert.equal((await byOption.check('p', policy(1, '1s'))).allowed, true);
  await byOption.close();
});

test('Redis: nothing listening -> ConnectionError, or the failure mode answer', { skip }, async () => {
  const { freePort } = require('./redis-server');
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const p = policy(1, '1h'); // the local fallback's second check: denied however late
  const err = new Limiter({ url, failureMode: 'error', timeoutMs: 300, connectTimeoutMs: 300 });
  await assert.rejects(err.check('a', p), (e) => e instanceof ConnectionError || e instanceof TimeoutError);
  await assert.rejects(err.ping(), (e) => e instanceof ConnectionError || e instanceof TimeoutError);
  await err.close();
  const open = new Limiter({ url, failureMode: 'open', timeoutMs: 300, connectTimeoutMs: 300 });
  const d = await open.check('a', p);
  assert.equal(d.allowed, true);
  assert.equal(d.source, 'fail_open');
  await open.close();
  const local = new Limiter({ url, failureMode: 'local', timeoutMs: 300, connectTimeoutMs: 300 });
  const l1 = await local.check('a', p);
  const l2 = await local.check('a', p);
  assert.equal(l1.source, 'local');
  assert.deepEqual([l1.allowed, l2.allowed], [true, false]);
  await local.close();
});

// Freezes Redis with SIGSTOP while `n` checks are pending: the event loop
// keeps ticking, and the deadlines answer every check with the failure
// mode's answer.
async function frozenRedis(t, failureMode, expect) {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const timeoutMs = 300;
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode, timeoutMs, denyCache: false });
  t.after(() => lim.close());
  const p = policy(1000, '1h');
  assert.equal((await lim.check('warm', p)).source, 'store');

  server.freeze();
  try {
    const loop = watchEventLoop();
    const start = performance.now();
    const settled = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => lim.check('frozen' + (i % 5), p)));
    const elapsed = performance.now() - start;
    const { maxGap, ticks } = loop.stop();
    assert.ok(elapsed >= timeoutMs * 0.8, `answered after ${elapsed} ms, before the deadline`);
    assert.ok(elapsed < timeoutMs + 700, `answered after ${elapsed} ms`);
    assert.ok(maxGap < 100, `the event loop stalled for ${maxGap} ms`);
    assert.ok(ticks >= 10, `only ${ticks} ticks`);
    for (const r of settled) expect(r);
    // the counters saw it
    const h = lim.health();
    assert.ok(h.storeErrors >= 50, JSON.stringify(h));
  } finally {
    server.thaw();
  }
  // and the store answers again once thawed
  const deadline = Date.now() + 5000;
  let d;
  do {
    d = await lim.check('after', p).catch((e) => e);
  } while ((d instanceof Error || d.source !== 'store') && Date.now() < deadline && (await sleep(50), true));
  assert.equal(d.source, 'store');
}

test('Redis frozen (SIGSTOP), fail open: the loop ticks, deadlines answer allowed/fail_open', { skip }, (t) =>
  frozenRedis(t, 'open', (r) => {
    assert.equal(r.status, 'fulfilled');
    assert.equal(r.value.allowed, true);
    assert.equal(r.value.source, 'fail_open');
  }));

test('Redis frozen (SIGSTOP), fail closed: denied/fail_closed', { skip }, (t) =>
  frozenRedis(t, 'closed', (r) => {
    assert.equal(r.status, 'fulfilled');
    assert.equal(r.value.allowed, false);
    assert.equal(r.value.source, 'fail_closed');
    assert.ok(r.value.retryAfter > 0);
  }));

test('Redis frozen (SIGSTOP), failure mode error: TimeoutError', { skip }, (t) =>
  frozenRedis(t, 'error', (r) => {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof TimeoutError, `${r.reason.name}: ${r.reason.message}`);
    assert.equal(r.reason.code, 'RL_E_TIMEOUT');
  }));

// Kills Redis while checks are in flight: each gets the failure mode's
// answer within the deadline plus some slack.
async function killedRedis(t, failureMode, expect) {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const timeoutMs = 300;
  const lim = new Limiter({
    url: server.url, keyPrefix: prefix(), failureMode, timeoutMs, connectTimeoutMs: 300, denyCache: false,
  });
  t.after(() => lim.close());
  const p = policy(1000000, '1h');
  assert.equal((await lim.check('warm', p)).source, 'store');
  const start = performance.now();
  const inflight = Array.from({ length: 200 }, (_, i) => lim.check('k' + (i % 7), p).then(
    (v) => ({ status: 'fulfilled', value: v, at: performance.now() }),
    (e) => ({ status: 'rejected', reason: e, at: performance.now() })));
  await server.kill();
  const killedAt = performance.now();
  const results = await Promise.all(inflight);
  // the checks sent after the kill, too
  const after = await Promise.allSettled(Array.from({ length: 20 }, () => lim.check('post', p)));
  const afterAt = performance.now();
  assert.ok(afterAt - killedAt < timeoutMs * 2 + 1000, `took ${afterAt - killedAt} ms`);
  for (const r of results) {
    assert.ok(r.at - start < timeoutMs + 1000, `answered after ${r.at - start} ms`);
    if (r.status === 'fulfilled' && r.value.source === 'store') continue; // answered before the kill
    expect(r);
  }
  for (const r of after) expect(r);
}

test('Redis killed mid-test, fail open: allowed/fail_open', { skip }, (t) =>
  killedRedis(t, 'open', (r) => {
    assert.equal(r.status, 'fulfilled');
    assert.deepEqual([r.value.allowed, r.value.source], [true, 'fail_open']);
  }));

test('Redis killed mid-test, fail closed: denied/fail_closed', { skip }, (t) =>
  killedRedis(t, 'closed', (r) => {
    assert.equal(r.status, 'fulfilled');
    assert.deepEqual([r.value.allowed, r.value.source], [false, 'fail_closed']);
  }));

test('Redis killed mid-test, failure mode error: ConnectionError/TimeoutError', { skip }, (t) =>
  killedRedis(t, 'error', (r) => {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof ConnectionError || r.reason instanceof TimeoutError, `${r.reason.name}: ${r.reason.message}`);
  }));

test('Redis: close() with checks in flight settles them all, then RL_E_CLOSED', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 2000 });
  const p = policy(100000, '1h');
  const inflight = Array.from({ length: 500 }, (_, i) => lim.check('c' + (i % 3), p));
  const pings = [lim.ping(), lim.reset('c0')];
  await lim.close();
  const results = await Promise.allSettled(inflight.concat(pings));
  for (const r of results) {
    if (r.status === 'rejected') {
      assert.ok(r.reason instanceof TollgateError, String(r.reason));
      assert.equal(r.reason.code, 'RL_E_CLOSED');
    }
  }
  await assert.rejects(lim.check('c', p), (e) => e.code === 'RL_E_CLOSED');
  await lim.close();
});

test('Redis: an idle limiter does not keep the process alive', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const { execFile } = require('node:child_process');
  const script = `
    const t = require(${JSON.stringify(require.resolve('..'))});
    const lim = new t.Limiter({ url: process.argv[1], failureMode: 'error' });
    lim.check('idle', t.policy(1, '1s')).then((d) => console.log(d.allowed));`;
  const start = Date.now();
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, ['-e', script, server.url], { timeout: 10000 }, (e, stdout) => (e ? reject(e) : resolve(stdout))));
  assert.equal(out.trim(), 'true');
  assert.ok(Date.now() - start < 5000);
});
