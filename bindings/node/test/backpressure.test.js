'use strict';
// Back-pressure (maxAsync): against a frozen Redis (SIGSTOP: connected,
// nothing answered) at most maxAsync checks wait; every other one rejects at
// once with BusyError (RL_E_BUSY) and queues nothing. Once the server
// answers again the waiting checks settle and the slots are free.

const test = require('node:test');
const assert = require('node:assert/strict');

const { Limiter, policy, BusyError, TollgateError, InvalidArgumentError, CODES, makeError } = require('..');
const { RedisServer, REDIS_SERVER, sleep } = require('./redis-server');
const { prefix } = require('./helpers');

const skip = !REDIS_SERVER && 'redis-server is not installed';

test('BusyError is the class of RL_E_BUSY', () => {
  assert.equal(CODES.RL_E_BUSY, -20);
  const e = makeError(-20, 'busy');
  assert.ok(e instanceof BusyError);
  assert.ok(e instanceof TollgateError);
  assert.equal(e.name, 'BusyError');
  assert.equal(e.code, 'RL_E_BUSY');
});

test('maxAsync: an integer 0 (no bound) .. 2147483647', () => {
  assert.throws(() => new Limiter({ maxAsync: -1 }), InvalidArgumentError);
  assert.throws(() => new Limiter({ maxAsync: 1.5 }), InvalidArgumentError);
  assert.throws(() => new Limiter({ maxAsync: 2 ** 31 }), InvalidArgumentError);
  assert.throws(() => new Limiter({ maxAsync: '10' }), TypeError);
  for (const maxAsync of [0, 1, 2 ** 31 - 1]) new Limiter({ maxAsync }).close();
});

test('maxAsync: a frozen server holds maxAsync checks, the rest reject at once with BusyError', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 60000, maxAsync: 50 });
  t.after(() => lim.close());
  const p = policy(1000000, '1h');
  assert.equal((await lim.check('warm', p)).source, 'store');

  server.freeze();
  let waiting;
  let refused;
  let keysRefused;
  let frozenHealth;
  try {
    const settled = [];
    waiting = [];
    for (let i = 0; i < 500; i++) {
      const c = lim.check('k', p);
      const s = { state: 'pending' };
      c.then((d) => { s.state = 'ok'; s.value = d; }, (e) => { s.state = 'err'; s.value = e; });
      settled.push(s);
      waiting.push(c);
    }
    keysRefused = await lim.checkKeys([['a', p], ['b', p]]).then(() => null, (e) => e);
    await sleep(50); // refusals are already settled; the accepted wait
    refused = settled.filter((s) => s.state === 'err');
    const pending = settled.filter((s) => s.state === 'pending');
    assert.equal(pending.length, 50);
    assert.equal(refused.length, 450);
    for (const r of refused) {
      assert.ok(r.value instanceof BusyError, String(r.value));
      assert.equal(r.value.code, 'RL_E_BUSY');
    }
    assert.match(refused[0].value.message, /too many async calls in flight: 50 .*max_async/);
    frozenHealth = lim.health();
  } finally {
    server.thaw();
  }
  assert.ok(keysRefused instanceof BusyError);
  assert.equal(frozenHealth.asyncPending, 50);
  assert.equal(frozenHealth.asyncRefused, 451);

  const results = await Promise.allSettled(waiting);
  const ok = results.filter((r) => r.status === 'fulfilled');
  assert.equal(ok.length, 50);
  for (const r of ok) assert.equal(r.value.source, 'store');
  const h = lim.health();
  assert.equal(h.asyncPending, 0);
  assert.equal(h.asyncRefused, 451);
  // The slots are free again.
  const again = await Promise.all(Array.from({ length: 50 }, () => lim.check('k', p)));
  assert.equal(again.length, 50);
});

test('maxAsync: the default bound applies without the option, and 0 lifts it', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const p = policy(1000000, '1h');
  for (const [options, accepted] of [[{}, 65536], [{ maxAsync: 0 }, 66000]]) {
    const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', timeoutMs: 60000, ...options });
    await lim.check('warm', p);
    server.freeze();
    const calls = [];
    let busy = 0;
    try {
      for (let i = 0; i < 66000; i++) {
        calls.push(lim.check('k', p).then(() => true, (e) => {
          if (e instanceof BusyError) busy++;
          return false;
        }));
      }
      await sleep(50);
      assert.equal(lim.health().asyncPending, accepted);
      assert.equal(busy, 66000 - accepted);
    } finally {
      server.thaw();
    }
    const results = await Promise.all(calls);
    assert.equal(results.filter((r) => r).length, accepted);
    assert.equal(lim.health().asyncPending, 0);
    lim.close();
  }
});
