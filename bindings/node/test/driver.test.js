'use strict';
// Who reads the Redis replies: the JS thread's own event loop (a libuv poll
// handle on the connection; `driver: 'loop'`, and `'auto'`, the default,
// where it can) or tollgate's I/O thread (`driver: 'thread'`). Both on one real redis-server: the same decisions on the same
// keys, deadlines from the loop's timers, worker threads with their own
// loops, and the option's validation.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const { ownServer, uniqueKey, watchEventLoop, prefix, PACKAGE_ROOT } = require('./helpers');
const { noRedis } = require('./redis-server');

const { Limiter, InvalidArgumentError, UnsupportedError, TimeoutError, policy } = require('..');

const skip = noRedis;

// Runs `fn` with TOLLGATE_DRIVER set to `value` (undefined: unset).
async function withDriverEnv(value, fn) {
  const saved = process.env.TOLLGATE_DRIVER;
  if (value === undefined) delete process.env.TOLLGATE_DRIVER;
  else process.env.TOLLGATE_DRIVER = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.TOLLGATE_DRIVER;
    else process.env.TOLLGATE_DRIVER = saved;
  }
}

test('driver: the loop by default, either on request, none in memory', { skip }, async (t) => {
  const server = await ownServer(t);
  // The default, whatever the environment of this run says.
  const saved = process.env.TOLLGATE_DRIVER;
  delete process.env.TOLLGATE_DRIVER;
  t.after(() => { if (saved !== undefined) process.env.TOLLGATE_DRIVER = saved; });
  const auto = new Limiter({ url: server.url });
  const forced = new Limiter({ url: server.url, driver: 'loop' });
  const thread = new Limiter({ url: server.url, driver: 'thread' });
  const memory = new Limiter();
  try {
    assert.equal(auto.driver, 'loop');
    assert.equal(forced.driver, 'loop');
    assert.equal(thread.driver, 'thread');
    assert.equal(memory.driver, 'none');
  } finally {
    await Promise.all([auto.close(), forced.close(), thread.close(), memory.close()]);
  }
});

test('driver: TLS stays on the I/O thread; forcing the loop on it throws', () => {
  // The TLS context is made at creation; nothing connects here.
  const url = 'rediss://127.0.0.1:1';
  const auto = new Limiter({ url, tlsVerify: false });
  try {
    assert.equal(auto.driver, 'thread');
  } finally {
    auto.close();
  }
  assert.throws(() => new Limiter({ url, tlsVerify: false, driver: 'loop' }), (e) => {
    assert.ok(e instanceof UnsupportedError, String(e));
    assert.match(e.message, /driver: .*TLS/);
    return true;
  });
});

test('driver: TOLLGATE_DRIVER forces the driver where the code says auto', { skip }, async (t) => {
  const server = await ownServer(t);
  const make = (options) => new Limiter({ url: server.url, ...options });
  const driverOf = (options) => {
    const lim = make(options);
    const d = lim.driver;
    lim.close();
    return d;
  };
  await withDriverEnv('loop', async () => {
    assert.equal(driverOf({}), 'loop');
    assert.equal(driverOf({ driver: 'auto' }), 'loop');
    assert.equal(driverOf({ driver: 'thread' }), 'thread'); // the option wins
    // Where the loop cannot drive (TLS), 'auto' stays on the thread, with
    // no error (driver: 'loop' would throw).
    const tls = new Limiter({ url: 'rediss://127.0.0.1:1', tlsVerify: false });
    assert.equal(tls.driver, 'thread');
    tls.close();
    // It really drives: a check is answered on this loop.
    const lim = make({ failureMode: 'error', timeoutMs: 5000 });
    try {
      assert.equal((await lim.check(uniqueKey(), policy(2, '1h'))).allowed, true);
    } finally {
      await lim.close();
    }
  });
  await withDriverEnv('thread', async () => {
    assert.equal(driverOf({}), 'thread');
    assert.equal(driverOf({ driver: 'loop' }), 'loop');
  });
  await withDriverEnv('', async () => assert.equal(driverOf({}), 'loop')); // empty: unset
  await withDriverEnv('uv', async () => {
    assert.throws(() => make({}), (e) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.message, /^TOLLGATE_DRIVER: unknown 'uv'/);
      return true;
    });
  });
});

test('driver: auto drives from the loop, one at a time and many at once', { skip }, async (t) => {
  const server = await ownServer(t);
  const lim = await withDriverEnv(undefined, async () =>
    new Limiter({ url: server.url, failureMode: 'error', timeoutMs: 5000 }));
  t.after(() => lim.close());
  assert.equal(lim.driver, 'loop');
  // One at a time, as a request handler awaits its check: the loop, with
  // the lone waits polled for (the event loop has nothing else to do).
  const seqPolicy = policy(150, '1h');
  const seq = [];
  for (let i = 0; i < 200; ++i) seq.push((await lim.check('auto-seq', seqPolicy)).allowed);
  assert.deepEqual(seq, [...Array(150).fill(true), ...Array(50).fill(false)]);
  assert.equal(lim.driver, 'loop');
  // 64 at once, round after round: still the loop, the count exact.
  const manyPolicy = policy(1500, '1h');
  let allowed = 0;
  for (let round = 0; round < 40; ++round) {
    const ds = await Promise.all(Array.from({ length: 64 }, () => lim.check('auto-many', manyPolicy)));
    allowed += ds.filter((d) => d.allowed).length;
  }
  assert.equal(allowed, 1500); // of 2,560
  assert.equal(lim.driver, 'loop');
});

test('driver: a bad value is an InvalidArgumentError', () => {
  for (const bad of ['threads', '', 'LOOP']) {
    assert.throws(() => new Limiter({ driver: bad }), (e) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.message, /^driver: unknown/);
      return true;
    });
  }
  assert.throws(() => new Limiter({ driver: 1 }), TypeError);
});

test('driver: loop and thread limiters on the same keys make one count', { skip }, async (t) => {
  const server = await ownServer(t);
  const keyPrefix = prefix();
  const loop = new Limiter({ url: server.url, keyPrefix, failureMode: 'error', timeoutMs: 5000, driver: 'loop' });
  const thread = new Limiter({ url: server.url, keyPrefix, failureMode: 'error', timeoutMs: 5000, driver: 'thread' });
  t.after(() => Promise.all([loop.close(), thread.close()]));
  assert.equal(loop.driver, 'loop');
  const key = uniqueKey();
  // Sequential, alternating: the decisions interleave exactly.
  const seq = [];
  for (let i = 0; i < 12; ++i) seq.push((await (i % 2 ? thread : loop).check(key, policy(10, '1h'))).allowed);
  assert.deepEqual(seq, [...Array(10).fill(true), false, false]);
  // 64 at once from each side on a fresh key: exactly the limit passes.
  const burst = uniqueKey();
  const all = await Promise.all(
    Array.from({ length: 128 }, (_, i) => (i % 2 ? thread : loop).check(burst, policy(50, '1h'))));
  // (Which side gets them is a race: the loop's checks leave at the next
  // turn, the thread's at once.)
  assert.equal(all.filter((d) => d.allowed).length, 50);
});

test('driver: a frozen server times out from the loop timer; the loop keeps turning', { skip }, async (t) => {
  const server = await ownServer(t);
  const lim = new Limiter({ url: server.url, failureMode: 'error', timeoutMs: 150, driver: 'loop' });
  t.after(() => lim.close());
  assert.equal(lim.driver, 'loop');
  await lim.check(uniqueKey(), policy(5, '1s'));  // connected
  server.freeze();
  const watch = watchEventLoop({ immediates: true });
  const started = performance.now();
  try {
    await assert.rejects(lim.check(uniqueKey(), policy(5, '1s')), TimeoutError);
  } finally {
    server.thaw();
  }
  const waited = performance.now() - started;
  const { maxGap, immediates } = watch.stop();
  assert.ok(waited >= 140 && waited < 1500, `answered after ${waited} ms`);
  assert.ok(maxGap < 150, `the event loop stalled for ${maxGap} ms`);
  assert.ok(immediates >= 10, `only ${immediates} loop turns while waiting`);
  // The connection comes back once the server does.
  const d = await lim.check(uniqueKey(), policy(5, '1s'));
  assert.equal(d.allowed, true);
});

test('driver: worker threads drive their own loops against the same key', { skip }, async (t) => {
  const server = await ownServer(t);
  const keyPrefix = prefix();
  const key = uniqueKey();
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { Limiter, policy } = require(workerData.pkg);
    const pol = policy(150, '1h');
    (async () => {
      const lim = new Limiter({ url: workerData.url, keyPrefix: workerData.keyPrefix,
                                failureMode: 'error', timeoutMs: 5000, driver: 'loop' });
      let allowed = 0;
      for (let round = 0; round < 10; ++round) {
        const ds = await Promise.all(Array.from({ length: 10 }, () => lim.check(workerData.key, pol)));
        allowed += ds.filter((d) => d.allowed).length;
      }
      const driver = lim.driver;
      await lim.close();
      parentPort.postMessage({ allowed, driver });
    })().catch((e) => parentPort.postMessage({ error: String(e) }));
  `;
  const run = () => new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { pkg: PACKAGE_ROOT, url: server.url, keyPrefix, key } });
    w.once('message', resolve);
    w.once('error', reject);
  });
  const main = new Limiter({ url: server.url, keyPrefix, failureMode: 'error', timeoutMs: 5000, driver: 'loop' });
  t.after(() => main.close());
  const mainRun = (async () => {
    let allowed = 0;
    for (let i = 0; i < 100; ++i) allowed += (await main.check(key, policy(150, '1h'))).allowed ? 1 : 0;
    return allowed;
  })();
  const [a, b, m] = await Promise.all([run(), run(), mainRun]);
  assert.equal(a.error, undefined);
  assert.equal(b.error, undefined);
  assert.equal(a.driver, 'loop');
  assert.equal(b.driver, 'loop');
  // 300 checks from three threads, each on its own loop: exactly 150 pass.
  assert.equal(a.allowed + b.allowed + m, 150);
});
