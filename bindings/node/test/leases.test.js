'use strict';
// Concurrency leases (limiter.acquire, lease.renew, lease.release,
// limiter.withLease, `await using`) on the memory store and on a real
// redis-server: at most maxInFlight held at once, expiry after the ttl,
// late and double releases, renewals, wrong input, an event loop that keeps
// ticking while acquires wait on a frozen server, 8 forked processes sharing
// one key (what the store holds sampled throughout), a SIGKILLed holder
// whose lease comes back after its ttl, and handles freed by garbage
// collection in any order with their limiter.
//
// The same file is the forked processes' program: with
// TOLLGATE_LEASE_WORKER set it runs one worker role instead of tests.

const path = require('node:path');

const INDEX = path.join(__dirname, '..');

if (process.env.TOLLGATE_LEASE_WORKER) {
  runWorker(process.env.TOLLGATE_LEASE_WORKER, process.argv.slice(2)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  defineTests();
}

// ---- Forked workers ------------------------------------------------------------

async function runWorker(role, args) {
  const { Limiter } = require(INDEX);
  const { redisCommand, sleep } = require('./redis-server');

  if (role === 'counter') {
    // Contends for leases on one key until `ms` after the parent's go; after
    // each acquisition INCRs a plain Redis counter (how many hold one now,
    // across every process), and DECRs it before releasing. Reports the
    // largest count it saw.
    const [url, keyPrefix, key, counterKey, port, max, ms] = args;
    const lim = new Limiter({ url, keyPrefix, failureMode: 'error', timeoutMs: 5000 });
    await lim.ping();
    process.send({ ready: true });
    await new Promise((resolve) => process.once('message', resolve)); // go
    const end = performance.now() + Number(ms);
    const out = { acquired: 0, denied: 0, maxSeen: 0, over: [], lost: 0 };
    while (performance.now() < end) {
      const r = await lim.acquire(key, { maxInFlight: Number(max), ttl: '20s' });
      if (!r.acquired) {
        out.denied++;
        await sleep(1 + Math.floor(Math.random() * 4));
        continue;
      }
      out.acquired++;
      const n = await redisCommand(Number(port), 'INCR', counterKey);
      out.maxSeen = Math.max(out.maxSeen, n);
      if (n > Number(max)) out.over.push(n);
      await sleep(2 + Math.floor(Math.random() * 8));
      await redisCommand(Number(port), 'DECR', counterKey);
      if (!(await r.lease.release())) out.lost++;
    }
    await lim.close();
    process.send({ done: out });
    process.disconnect();
    return;
  }

  if (role === 'holder') {
    // Acquires one lease and holds it until killed.
    const [url, keyPrefix, key, ttl] = args;
    const lim = new Limiter({ url, keyPrefix, failureMode: 'error', timeoutMs: 5000 });
    const r = await lim.acquire(key, { maxInFlight: 1, ttl: Number(ttl) });
    process.send({ acquired: r.acquired, source: r.source });
    setInterval(() => {}, 1000); // until SIGKILL
    return;
  }

  if (role === 'gc') {
    // Leases dropped before, with and after their limiter, on memory and
    // Redis: their handles are freed by the finalizers in any order
    // (FinalizationRegistry sees the Lease objects go), and nothing crashes.
    const [url] = args;
    const { Worker } = require('node:worker_threads');
    let collected = 0;
    const registry = new FinalizationRegistry(() => {
      collected++;
    });
    const collect = async (want, what) => {
      for (let i = 0; i < 50 && collected < want; i++) {
        global.gc();
        await sleep(10);
      }
      if (collected < want) throw new Error(`${what}: ${collected} of ${want} objects collected`);
    };
    const opts = [{}, { url, failureMode: 'error', timeoutMs: 5000 }];
    // Each step acquires in a function of its own, so that no suspended
    // frame keeps the last lease.
    const acquireMany = async (lim, name, n) => {
      const leases = [];
      for (let i = 0; i < n; i++) {
        const r = await lim.acquire(name + i, { maxInFlight: 1, ttl: '1h' });
        if (!r.acquired) throw new Error('denied: ' + JSON.stringify({ ...r, lease: undefined }));
        leases.push(r.lease);
      }
      return leases;
    };
    let expected = 0;
    for (const o of opts) {
      // 1. leases dropped while their limiter lives on (and still works)
      const lim = new Limiter(o);
      await (async () => {
        for (const l of await acquireMany(lim, 'gc-a', 50)) registry.register(l, 'lease');
      })();
      expected += 50;
      await collect(expected, 'leases before their limiter');
      await (async () => {
        const again = await lim.acquire('gc-a0', { maxInFlight: 2, ttl: '1h' });
        if (!again.acquired || again.inFlight !== 2) throw new Error('the dropped lease was released: ' + JSON.stringify(again));
        await again.lease.release();
      })();
      // 2. leases kept past their limiter's close(), then dropped
      await (async () => {
        const leases = await acquireMany(lim, 'gc-b', 20);
        await lim.close();
        for (const l of leases) registry.register(l, 'lease');
      })();
      expected += 20;
      await collect(expected, 'leases after their limiter');
      // 3. a limiter and its leases dropped together (finalized in any order)
      await (async () => {
        const lim3 = new Limiter(o);
        for (const l of await acquireMany(lim3, 'gc-c', 20)) registry.register(l, 'lease');
        registry.register(lim3, 'limiter');
      })();
      expected += 21;
      await collect(expected, 'a limiter with its leases');
    }
    // 4. a worker thread that exits holding leases (environment teardown)
    for (const o of opts) {
      await new Promise((resolve, reject) => {
        const w = new Worker(
          `const { Limiter } = require(${JSON.stringify(INDEX)});
           const lim = new Limiter(${JSON.stringify(o)});
           (async () => {
             globalThis.kept = [];
             for (let i = 0; i < 10; i++) kept.push((await lim.acquire('gc-w' + i, { maxInFlight: 1, ttl: '1h' })).lease);
             require('node:worker_threads').parentPort.postMessage('held');
           })();`,
          { eval: true });
        w.once('message', () => w.terminate());
        w.once('error', reject);
        w.once('exit', resolve);
      });
    }
    process.send({ ok: true, collected });
    process.disconnect();
    return;
  }

  throw new Error('unknown worker role ' + role);
}

// ---- Tests ---------------------------------------------------------------------

function defineTests() {
  const test = require('node:test');
  const assert = require('node:assert/strict');
  const { fork } = require('node:child_process');
  const { track } = require('./children');

  const tollgate = require(INDEX);
  const {
    Limiter, Lease, TollgateError, InvalidArgumentError, ConnectionError, LeaseLostError, LeaseDeniedError,
    NothingToRefundError,
  } = tollgate;
  const { noRedis, redisCommand, sleep } = require('./redis-server');
  const { prefix, uniqueKey, limiterStores, ownServer, watchEventLoop } = require('./helpers');

  // One redis-server for the tests that need no server of their own. A
  // fresh limiter of `kind` ('memory' or 'redis') is closed after the test;
  // a Redis one has its own key prefix (a store's `.keyPrefix` on its
  // `.server`).
  const { sharedServer, storeOf, limiterOf } = limiterStores();

  // The Redis keys of `key` under `keyPrefix`: every one of its states,
  // blocks and leases is `<prefix>v2:{<key>}:<something>` (KEYS: a test
  // server of a few keys).
  const keysOf = (port, keyPrefix, key) => redisCommand(port, 'KEYS', `${keyPrefix}v2:{${key}}:*`);

  // How many leases the Redis store keeps for `key` (expired ones included
  // until the next call on the key drops them): the members of its one
  // sorted set (none: the set is deleted with its last lease).
  async function storedOn(port, keyPrefix, key) {
    const keys = await keysOf(port, keyPrefix, key);
    let n = 0;
    for (const k of keys) if ((await redisCommand(port, 'TYPE', k)) === 'zset') n += await redisCommand(port, 'ZCARD', k);
    return n;
  }
  const stored = (store, key) => storedOn(store.server.port, store.keyPrefix, key); // a Redis storeOf()

  function forkWorker(role, args, execArgv = []) {
    const env = { ...process.env, TOLLGATE_LEASE_WORKER: role };
    delete env.NODE_TEST_CONTEXT;
    const child = track(fork(__filename, args, { env, execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }));
    child.stderrText = '';
    child.stderr.on('data', (d) => (child.stderrText += d));
    child.stdout.resume();
    child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    return child;
  }

  // The next IPC message of `child` that has `field`; rejects if it exits first.
  function nextMessage(child, field) {
    return new Promise((resolve, reject) => {
      const onMessage = (m) => {
        if (m && m[field] !== undefined) {
          child.off('message', onMessage);
          resolve(m);
        }
      };
      child.on('message', onMessage);
      child.exited.then(({ code, signal }) =>
        reject(new Error(`worker exited (${code ?? signal}) before '${field}':\n${child.stderrText}`)));
    });
  }

  // Kills `child` by its PID (SIGKILL) unless it exited, and waits.
  async function killChild(child) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {}
    }
    await child.exited;
  }

  for (const kind of ['memory', 'redis']) {
    const skip = kind === 'redis' && noRedis;
    const storeName = kind === 'memory' ? 'memory' : 'Redis';

    test(`${storeName}: at most maxInFlight leases at once; the next is denied with retryAfter > 0; a release lets one in`, { skip }, async (t) => {
      const store = await storeOf(t, kind);
      const lim = store.limiter();
      const key = uniqueKey('max');
      const opts = { maxInFlight: 3, ttl: '1m' };
      const held = await Promise.all([1, 2, 3].map(() => lim.acquire(key, opts)));
      for (const r of held) {
        assert.equal(r.acquired, true);
        assert.ok(r.lease instanceof Lease);
        assert.equal(r.retryAfter, 0);
        assert.equal(r.maxInFlight, 3);
        assert.equal(r.source, 'store');
        assert.deepEqual(Object.keys(r), ['acquired', 'lease', 'inFlight', 'maxInFlight', 'retryAfter', 'source']);
      }
      // each acquisition saw the ones before it
      assert.deepEqual(held.map((r) => r.inFlight).sort(), [1, 2, 3]);
      const lease = held[0].lease;
      assert.equal(lease.key, key);
      assert.equal(lease.ttl, 60000);
      assert.equal(lease.source, 'store');
      assert.equal(lease.limiter, lim);
      assert.equal(lease.released, false);
      assert.equal(String(lease), '[object Lease]');
      if (kind === 'redis') assert.equal(await stored(store, key), 3);

      const denied = await lim.acquire(key, opts);
      assert.equal(denied.acquired, false);
      assert.equal(denied.lease, null);
      assert.equal(denied.inFlight, 3);
      assert.equal(denied.maxInFlight, 3);
      assert.ok(denied.retryAfter > 0 && denied.retryAfter <= 60000, String(denied.retryAfter));
      assert.equal(denied.source, 'store');

      assert.equal(await held[1].lease.release(), true);
      assert.equal(held[1].lease.released, true);
      const next = await lim.acquire(key, opts);
      assert.equal(next.acquired, true);
      assert.equal(next.inFlight, 3);
      assert.equal((await lim.acquire(key, opts)).acquired, false);
      // another key is counted apart
      assert.equal((await lim.acquire(uniqueKey('other'), { maxInFlight: 1, ttl: 1000 })).acquired, true);
      for (const l of [held[0].lease, held[2].lease, next.lease]) assert.equal(await l.release(), true);
      if (kind === 'redis') assert.equal(await stored(store, key), 0);

      // Many at once: exactly maxInFlight acquire (Redis: one atomic step each).
      const burstKey = uniqueKey('burst');
      const burst = await Promise.all(Array.from({ length: 40 }, () => lim.acquire(burstKey, { maxInFlight: 5, ttl: '1m' })));
      assert.equal(burst.filter((r) => r.acquired).length, 5);
      assert.ok(burst.filter((r) => !r.acquired).every((r) => r.retryAfter > 0 && r.inFlight === 5));
      const released = await Promise.all(burst.filter((r) => r.acquired).map((r) => r.lease.release()));
      assert.deepEqual(released, [true, true, true, true, true]);
    });

    test(`${storeName}: a lease ends after its ttl; a late release and a double release answer false, harmlessly`, { skip }, async (t) => {
      const lim = await limiterOf(t, kind);
      const key = uniqueKey('ttl');
      const opts = { maxInFlight: 1, ttl: 200 };
      const first = await lim.acquire(key, opts);
      assert.equal(first.acquired, true);
      const denied = await lim.acquire(key, opts);
      assert.equal(denied.acquired, false);
      assert.ok(denied.retryAfter > 0 && denied.retryAfter <= 200, String(denied.retryAfter));
      await sleep(300); // past the ttl
      const second = await lim.acquire(key, { maxInFlight: 1, ttl: '1m' });
      assert.equal(second.acquired, true, 'the expired lease still counted');
      // the late release: false, and the lease acquired since is still held
      assert.equal(await first.lease.release(), false);
      assert.equal(first.lease.released, true);
      assert.equal((await lim.acquire(key, opts)).acquired, false);
      // a double release: true, then false
      assert.equal(await second.lease.release(), true);
      assert.equal(await second.lease.release(), false);
      assert.equal(await lim.release(second.lease), false);
      const third = await lim.acquire(key, opts);
      assert.equal(third.acquired, true);
      assert.equal(await third.lease.release(), true);
    });

    test(`${storeName}: renew extends a lease; renewing an expired or released one rejects with LeaseLostError`, { skip }, async (t) => {
      const lim = await limiterOf(t, kind);
      const key = uniqueKey('renew');
      const opts = { maxInFlight: 1, ttl: 300 };
      const { lease } = await lim.acquire(key, opts);
      await sleep(100);
      assert.equal(await lease.renew('2s'), undefined);
      assert.equal(lease.ttl, 2000);
      await sleep(350); // past the first ttl, within the renewed one
      const denied = await lim.acquire(key, opts);
      assert.equal(denied.acquired, false, 'the renewed lease ended at its first ttl');
      assert.ok(denied.retryAfter > 300, String(denied.retryAfter));
      await lease.renew(); // its current ttl again
      await lim.renew(lease, 5000);
      assert.equal(lease.ttl, 5000);
      assert.equal(await lease.release(), true);

      // expired
      const short = (await lim.acquire(key, { maxInFlight: 1, ttl: 150 })).lease;
      await sleep(250);
      const lost = await short.renew(1000).catch((e) => e);
      assert.ok(lost instanceof LeaseLostError, String(lost));
      assert.ok(lost instanceof TollgateError);
      assert.ok(!(lost instanceof NothingToRefundError));
      assert.equal(lost.code, 'RL_E_NOT_FOUND');
      assert.equal(lost.name, 'LeaseLostError');
      assert.match(lost.message, /no longer held/);
      assert.equal(short.ttl, 150, 'a failed renew changed the ttl');
      // the failed renew did not bring it back
      const after = await lim.acquire(key, opts);
      assert.equal(after.acquired, true);
      // released
      assert.equal(await after.lease.release(), true);
      await assert.rejects(after.lease.renew(), { name: 'LeaseLostError', code: 'RL_E_NOT_FOUND' });
    });

    test(`${storeName}: reset(key) drops the key's leases; their release then answers false, their renew LeaseLostError`, { skip }, async (t) => {
      const store = await storeOf(t, kind);
      const lim = store.limiter();
      const key = uniqueKey('reset');
      const opts = { maxInFlight: 2, ttl: '1m' };
      const a = (await lim.acquire(key, opts)).lease;
      const b = (await lim.acquire(key, opts)).lease;
      assert.equal((await lim.acquire(key, opts)).acquired, false);
      await lim.reset(key);
      if (kind === 'redis') assert.equal(await stored(store, key), 0);
      const c = await lim.acquire(key, opts);
      assert.equal(c.acquired, true);
      assert.equal(c.inFlight, 1);
      assert.equal(await a.release(), false);
      await assert.rejects(b.renew(), LeaseLostError);
      assert.equal(await c.lease.release(), true);
    });

    test(`${storeName}: withLease releases on success and on a thrown error; denied, it rejects with LeaseDeniedError`, { skip }, async (t) => {
      const lim = await limiterOf(t, kind);
      const key = uniqueKey('with');
      const opts = { maxInFlight: 1, ttl: '30s' };
      const value = await lim.withLease(key, opts, async (lease) => {
        assert.ok(lease instanceof Lease);
        assert.equal(lease.key, key);
        assert.equal((await lim.acquire(key, opts)).acquired, false, 'not held inside withLease');
        return 42;
      });
      assert.equal(value, 42);
      assert.equal((await lim.withLease(key, opts, () => 'sync')), 'sync');

      const boom = new Error('boom');
      let inside = null;
      await assert.rejects(lim.withLease(key, opts, async (lease) => {
        inside = lease;
        throw boom;
      }), (e) => e === boom);
      assert.equal(inside.released, true);
      const r = await lim.acquire(key, opts);
      assert.equal(r.acquired, true, 'the lease was not released after the error');

      // denied while r holds it: fn does not run
      let ran = false;
      const denied = await lim.withLease(key, opts, () => {
        ran = true;
      }).catch((e) => e);
      assert.equal(ran, false);
      assert.ok(denied instanceof LeaseDeniedError, String(denied));
      assert.ok(!(denied instanceof TollgateError), 'a denial is not a failure');
      assert.equal(denied.name, 'LeaseDeniedError');
      assert.ok(denied.retryAfter > 0 && denied.retryAfter <= 30000, String(denied.retryAfter));
      assert.equal(denied.inFlight, 1);
      assert.equal(denied.maxInFlight, 1);
      assert.equal(denied.key, key);
      assert.equal(denied.source, 'store');
      assert.match(denied.message, /denied, 1 of 1 leases are held; retry in \d+ ms/);
      assert.equal(await r.lease.release(), true);

      // bad arguments reject (never a synchronous throw)
      await assert.rejects(lim.withLease(key, opts), TypeError);
      await assert.rejects(lim.withLease(key, { maxInFlight: 0, ttl: '1s' }, () => {}), InvalidArgumentError);
    });

    test(`${storeName}: try/finally releases the lease however the work ends`, { skip }, async (t) => {
      const lim = await limiterOf(t, kind);
      const key = uniqueKey('finally');
      const opts = { maxInFlight: 2, ttl: '30s' };
      let open;
      const gate = new Promise((resolve) => (open = resolve));
      const started = [];
      const exportReport = async (fail) => {
        const r = await lim.acquire(key, opts);
        if (!r.acquired) return 'busy';
        try {
          started.push(fail);
          await gate;
          if (fail) throw new Error('export failed');
          return 'done';
        } finally {
          await r.lease.release();
        }
      };
      const first = [exportReport(false), exportReport(true)];
      while (started.length < 2) await sleep(1);
      assert.equal(await exportReport(false), 'busy');
      open();
      const settled = await Promise.allSettled(first);
      assert.deepEqual(settled.map((r) => (r.status === 'fulfilled' ? r.value : r.reason.message)), ['done', 'export failed']);
      // both places are free again
      const a = await lim.acquire(key, opts);
      const b = await lim.acquire(key, opts);
      assert.deepEqual([a.acquired, b.acquired, a.inFlight, b.inFlight], [true, true, 1, 2]);
      assert.deepEqual(await Promise.all([a.lease.release(), b.lease.release()]), [true, true]);
    });

    test(`${storeName}: Symbol.asyncDispose releases the lease (await using)`, { skip }, async (t) => {
      const lim = await limiterOf(t, kind);
      const key = uniqueKey('dispose');
      const opts = { maxInFlight: 1, ttl: '30s' };
      if (typeof Symbol.asyncDispose !== 'symbol') {
        // Node.js before 18.18 and 20.4 has no such symbol: a Lease then has
        // nothing to define, and try/finally with release() is the way.
        const { lease } = await lim.acquire(key, opts);
        assert.equal(await lease.release(), true);
        t.diagnostic(`this Node.js (${process.version}) has no Symbol.asyncDispose: not defined on Lease`);
        return;
      }
      const { lease } = await lim.acquire(key, opts);
      assert.equal(typeof lease[Symbol.asyncDispose], 'function');
      await lease[Symbol.asyncDispose]();
      assert.equal(lease.released, true);
      await lease[Symbol.asyncDispose](); // once released: nothing to do
      const r = await lim.acquire(key, opts);
      assert.equal(r.acquired, true, 'dispose did not release');
      assert.equal(await r.lease.release(), true);

      // The statement itself, where this Node.js parses it (V8 12.x+).
      const AsyncFunction = (async () => {}).constructor;
      let usingBlock = null;
      try {
        usingBlock = new AsyncFunction('lim', 'key', 'opts', `
          {
            await using lease = (await lim.acquire(key, opts)).lease;
            if ((await lim.acquire(key, opts)).acquired) throw new Error('held twice');
          }
          return (await lim.acquire(key, opts)).lease;`);
      } catch (e) {
        if (!(e instanceof SyntaxError)) throw e;
      }
      if (usingBlock) {
        const again = await usingBlock(lim, key, opts);
        assert.ok(again instanceof Lease, 'the await using block did not release');
        await again.release();
      } else {
        t.diagnostic(`this Node.js (${process.version}) does not parse 'await using': the dispose method was tested alone`);
      }
    });

    test(`${storeName}: bad input rejects: maxInFlight 0, ttl 0 or negative, another limiter's lease, a closed limiter`, { skip }, async (t) => {
      const lim = await limiterOf(t, kind);
      const other = await limiterOf(t, kind);
      const key = uniqueKey('bad');
      const invalid = (options, pattern) =>
        assert.rejects(lim.acquire(key, options), (e) => {
          assert.ok(e instanceof InvalidArgumentError, `${e.name}: ${e.message}`);
          assert.equal(e.code, 'RL_E_INVALID_ARG');
          if (pattern) assert.match(e.message, pattern);
          return true;
        });
      await invalid({ maxInFlight: 0, ttl: 1000 }, /maxInFlight: must be 1 to 1000000 \(got 0\)/);
      await invalid({ maxInFlight: -1, ttl: 1000 });
      await invalid({ maxInFlight: 1000001, ttl: 1000 });
      await invalid({ maxInFlight: 1, ttl: 0 }, /ttl: must be 1 ms to 2\^40 ms \(got 0 ms\)/);
      await invalid({ maxInFlight: 1, ttl: -5 }, /got -5 ms/);
      await invalid({ maxInFlight: 1, ttl: 2 ** 40 + 1 }, /ttl: must be 1 ms to 2\^40 ms \(got 1099511627777 ms\)/);
      await invalid({ maxInFlight: 1, ttl: 1.5 }, /not a whole number of milliseconds/);
      await invalid({ maxInFlight: 1, ttl: 'soon' }, /^ttl: /);
      for (const options of [undefined, null, 5, { ttl: 1000 }, { maxInFlight: '3', ttl: 1000 }, { maxInFlight: 1.5, ttl: 1000 },
        { maxInFlight: 1 }, { maxInFlight: 1, ttl: true }])
        await assert.rejects(lim.acquire(key, options), TypeError, JSON.stringify(options));
      await assert.rejects(lim.acquire(42, { maxInFlight: 1, ttl: 1000 }), TypeError);
      await assert.rejects(lim.acquire('', { maxInFlight: 1, ttl: 1000 }), { name: 'InvalidArgumentError', code: 'RL_E_KEY_INVALID' });
      // nothing throws synchronously
      assert.ok(lim.acquire(key, { maxInFlight: 0, ttl: 1 }).catch(() => {}) instanceof Promise);

      // A lease used with another limiter: InvalidArgumentError, and it stays held.
      const { lease } = await lim.acquire(key, { maxInFlight: 1, ttl: '30s' });
      await assert.rejects(other.release(lease), {
        name: 'InvalidArgumentError',
        code: 'RL_E_INVALID_ARG',
        message: "release: the lease was acquired through another limiter; use lease.release() or that limiter's release() (the lease is still held)",
      });
      await assert.rejects(other.renew(lease, 1000), {
        name: 'InvalidArgumentError',
        code: 'RL_E_INVALID_ARG',
        message: /^renew: the lease was acquired through another limiter/,
      });
      await assert.rejects(other.renew(lease, 0), { message: /^renew: the lease was acquired through another limiter/ });
      assert.equal(lease.released, false);
      assert.equal((await lim.acquire(key, { maxInFlight: 1, ttl: 1000 })).acquired, false);
      await assert.rejects(lim.renew(lease, 0), { code: 'RL_E_INVALID_ARG' });
      await assert.rejects(lease.renew(-1), { code: 'RL_E_INVALID_ARG' });
      for (const notLease of [undefined, null, {}, 'lease', { lease }])
        await assert.rejects(lim.release(notLease), TypeError);
      await assert.rejects(lim.renew({}), TypeError);
      assert.throws(() => new Lease(), TypeError);
      assert.equal(await lease.release(), true);

      // After close(): ConnectionError (RL_E_CLOSED); a lease of it rejects too.
      const closing = await limiterOf(t, kind);
      const kept = (await closing.acquire(key, { maxInFlight: 5, ttl: 200 })).lease;
      await closing.close();
      await assert.rejects(closing.acquire(key, { maxInFlight: 1, ttl: 1000 }), (e) => e instanceof ConnectionError && e.code === 'RL_E_CLOSED');
      await assert.rejects(kept.release(), { code: 'RL_E_CLOSED' });
      await assert.rejects(kept.renew(), { code: 'RL_E_CLOSED' });
    });
  }

  test('memory and Redis leases are apart: one limiter\'s lease is another\'s invalid argument', { skip: noRedis }, async (t) => {
    const mem = await limiterOf(t, 'memory');
    const red = await limiterOf(t, 'redis');
    const key = uniqueKey('cross');
    const a = (await mem.acquire(key, { maxInFlight: 1, ttl: '10s' })).lease;
    const b = (await red.acquire(key, { maxInFlight: 1, ttl: '10s' })).lease;
    await assert.rejects(red.release(a), { code: 'RL_E_INVALID_ARG' });
    await assert.rejects(mem.release(b), { code: 'RL_E_INVALID_ARG' });
    assert.equal(await a.release(), true);
    assert.equal(await b.release(), true);
  });

  test('Redis: a key\'s leases are one sorted set under its {key} tag, which expires with its last lease', { skip: noRedis }, async (t) => {
    const store = await storeOf(t, 'redis');
    const lim = store.limiter();
    const port = store.server.port;
    const key = uniqueKey('layout');
    const a = (await lim.acquire(key, { maxInFlight: 2, ttl: '10s' })).lease;
    const b = (await lim.acquire(key, { maxInFlight: 2, ttl: '20s' })).lease;
    const keys = await keysOf(port, store.keyPrefix, key);
    assert.equal(keys.length, 1, String(keys));
    const [set] = keys;
    assert.ok(set.startsWith(`${store.keyPrefix}v2:{${key}}:`), set); // one cluster slot: the {key} tag's
    assert.equal(await redisCommand(port, 'TYPE', set), 'zset');
    assert.equal(await redisCommand(port, 'ZCARD', set), 2);
    const pttl = await redisCommand(port, 'PTTL', set);
    assert.ok(pttl > 10000 && pttl <= 20000, `PTTL ${pttl}: not the last lease's end`);
    assert.equal(await a.release(), true);
    assert.equal(await redisCommand(port, 'ZCARD', set), 1);
    assert.equal(await b.release(), true);
    assert.equal(await redisCommand(port, 'EXISTS', set), 0);
  });

  // Freezes Redis (SIGSTOP) while acquires wait on it, on the libuv
  // threadpool: the event loop keeps ticking, and the failure mode answers
  // when the deadline passes.
  async function frozen(t, failureMode) {
    const server = await ownServer(t);
    const timeoutMs = 300;
    const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode, timeoutMs, denyCache: false });
    t.after(() => lim.close());
    const warm = await lim.acquire('warm', { maxInFlight: 1, ttl: '1m' });
    assert.equal(warm.source, 'store');
    await warm.lease.release();
    server.freeze();
    let results;
    try {
      const loop = watchEventLoop({ immediates: true });
      const start = performance.now();
      results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => lim.acquire('frozen' + (i % 4), { maxInFlight: 1, ttl: '1m' })));
      const elapsed = performance.now() - start;
      const { maxGap, ticks, immediates } = loop.stop();
      assert.ok(elapsed >= timeoutMs * 0.8, `answered after ${elapsed} ms, before the deadline`);
      assert.ok(maxGap < 150, `the event loop stalled for ${maxGap} ms`);
      assert.ok(ticks >= 10, `only ${ticks} timer ticks in ${elapsed} ms`);
      assert.ok(immediates >= 100, `only ${immediates} setImmediate turns in ${elapsed} ms`);
    } finally {
      server.thaw();
    }
    return { lim, results };
  }

  test('Redis frozen, fail open: the event loop ticks while acquires wait; each is granted an unstored lease', { skip: noRedis }, async (t) => {
    const { lim, results } = await frozen(t, 'open');
    for (const r of results) {
      assert.equal(r.status, 'fulfilled', String(r.reason));
      assert.equal(r.value.acquired, true);
      assert.equal(r.value.source, 'fail_open');
      assert.equal(r.value.lease.source, 'fail_open');
    }
    // four keys of max 1 and sixteen leases: they were not counted, and
    // releasing them once the store is back is harmless
    for (const r of results) assert.equal(typeof (await r.value.lease.release()), 'boolean');
  });

  test('Redis frozen, fail closed: acquires are denied (fail_closed, retryAfter > 0) until the store is back', { skip: noRedis }, async (t) => {
    const { lim, results } = await frozen(t, 'closed');
    for (const r of results) {
      assert.equal(r.status, 'fulfilled', String(r.reason));
      assert.equal(r.value.acquired, false);
      assert.equal(r.value.lease, null);
      assert.equal(r.value.source, 'fail_closed');
      assert.ok(r.value.retryAfter > 0);
    }
    // once thawed the store answers again
    const deadline = Date.now() + 5000;
    let r;
    do {
      r = await lim.acquire('after', { maxInFlight: 1, ttl: '1m' });
    } while (r.source !== 'store' && Date.now() < deadline && (await sleep(50), true));
    assert.equal(r.source, 'store');
    assert.equal(r.acquired, true);
    assert.equal(await r.lease.release(), true);
  });

  // Samples, on a connection of its own and as fast as the server answers,
  // the number of leases the store holds for a key (ZCARD of its sorted set)
  // and the holders' counter, both in one atomic script, until stop().
  // Resolves to { samples, maxLeases, maxHolders, over }.
  function sampleHolders(port, setKey, counterKey, max) {
    const net = require('node:net');
    const script = "return {redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}";
    const args = ['EVAL', script, '2', setKey, counterKey];
    const command = `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
    const reply = /^\*2\r\n:(-?\d+)\r\n:(-?\d+)\r\n/;
    const out = { samples: 0, maxLeases: 0, maxHolders: 0, over: [] };
    let stopping = false;
    let buf = '';
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = new Promise((resolve, reject) => {
      sock.on('error', reject);
      sock.on('close', () => resolve(out));
      sock.on('connect', () => sock.write(command));
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        let m;
        while ((m = reply.exec(buf))) {
          buf = buf.slice(m[0].length);
          const leases = Number(m[1]);
          const holders = Number(m[2]);
          out.samples++;
          out.maxLeases = Math.max(out.maxLeases, leases);
          out.maxHolders = Math.max(out.maxHolders, holders);
          if ((leases > max || holders > max) && out.over.length < 10) out.over.push({ leases, holders });
          if (stopping) sock.end();
          else sock.write(command);
        }
        if (buf.startsWith('-')) reject(new Error(buf));
      });
    });
    return {
      done,
      stop() {
        stopping = true;
        return done;
      },
    };
  }

  test('Redis: 8 forked processes on one key with maxInFlight 3 never hold more than 3 at once (sampled continuously)', { skip: noRedis, timeout: 60000 }, async (t) => {
    const server = await ownServer(t);
    const keyPrefix = prefix();
    const key = uniqueKey('procs');
    const counterKey = uniqueKey('holders'); // a plain key: INCR/DECR, no prefix
    const setKey = `${keyPrefix}v2:{${key}}:!l`; // docs/leases.md, "How it is stored"
    const MAX = 3;
    const RUN_MS = 1500;
    const children = Array.from({ length: 8 }, () =>
      forkWorker('counter', [server.url, keyPrefix, key, counterKey, String(server.port), String(MAX), String(RUN_MS)]));
    t.after(() => Promise.all(children.map(killChild)));
    await Promise.all(children.map((c) => nextMessage(c, 'ready')));
    const sampler = sampleHolders(server.port, setKey, counterKey, MAX);
    const done = children.map((c) => nextMessage(c, 'done'));
    for (const c of children) c.send({ go: true });
    const reports = (await Promise.all(done)).map((m) => m.done);
    const seen = await sampler.stop();
    for (const c of children) assert.deepEqual(await c.exited, { code: 0, signal: null }, c.stderrText);
    const summary = JSON.stringify({ seen, reports });
    // What the store held, sampled throughout: never more than MAX leases,
    // never more than MAX holders between their acquire and their release.
    assert.deepEqual(seen.over, [], `more than ${MAX} held at once: ${summary}`);
    assert.ok(seen.samples >= 200, `only ${seen.samples} samples: ${summary}`);
    assert.equal(seen.maxLeases, MAX, `the key never had ${MAX} leases at once (not contended?): ${summary}`);
    assert.ok(seen.maxHolders >= 2, summary);
    // What each holder saw right after its acquire.
    for (const r of reports) {
      assert.deepEqual(r.over, [], `more than ${MAX} held at once: ${summary}`);
      assert.ok(r.maxSeen <= MAX, summary);
      assert.ok(r.acquired >= 1, `a process never acquired: ${summary}`);
      assert.equal(r.lost, 0, `a lease expired while held: ${summary}`);
    }
    // the processes contended (else the bound was never tested)
    assert.ok(reports.reduce((n, r) => n + r.denied, 0) > 0, summary);
    assert.equal(await redisCommand(server.port, 'GET', counterKey), '0');
    assert.equal(await storedOn(server.port, keyPrefix, key), 0);
    t.diagnostic(`${seen.samples} samples; ${reports.reduce((n, r) => n + r.acquired, 0)} leases acquired, ` +
      `${reports.reduce((n, r) => n + r.denied, 0)} denials`);
  });

  test('Redis: a SIGKILLed holder\'s lease is denied to others until its ttl, then reclaimed', { skip: noRedis, timeout: 60000 }, async (t) => {
    const server = await ownServer(t);
    const keyPrefix = prefix();
    const key = uniqueKey('killed');
    const TTL = 800;
    const child = forkWorker('holder', [server.url, keyPrefix, key, String(TTL)]);
    t.after(() => killChild(child));
    const msg = await nextMessage(child, 'acquired');
    const acquiredAt = performance.now();
    assert.deepEqual(msg, { acquired: true, source: 'store' });
    assert.equal(await storedOn(server.port, keyPrefix, key), 1);
    process.kill(child.pid, 'SIGKILL');
    assert.equal((await child.exited).signal, 'SIGKILL');

    const lim = new Limiter({ url: server.url, keyPrefix, failureMode: 'error', timeoutMs: 5000 });
    t.after(() => lim.close());
    const opts = { maxInFlight: 1, ttl: '10s' };
    const denied = await lim.acquire(key, opts);
    assert.equal(denied.acquired, false, 'the killed holder\'s lease was not counted');
    assert.ok(denied.retryAfter > 0 && denied.retryAfter <= TTL, String(denied.retryAfter));
    assert.equal(denied.inFlight, 1);
    // after the ttl it is free
    await sleep(Math.max(0, acquiredAt + TTL + 100 - performance.now()));
    const r = await lim.acquire(key, opts);
    assert.equal(r.acquired, true, JSON.stringify({ ...r, lease: undefined }));
    assert.equal(r.inFlight, 1);
    assert.equal(await r.lease.release(), true);
  });

  test('garbage collection frees lease handles before, with and after their limiter (memory, Redis, worker threads)', { skip: noRedis, timeout: 60000 }, async () => {
    const server = await sharedServer();
    const child = forkWorker('gc', [server.url], ['--expose-gc']);
    const m = await nextMessage(child, 'ok');
    assert.equal(m.ok, true);
    assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderrText);
  });

  test('exports: Lease and the lease errors, in CommonJS and ESM', async () => {
    const esm = await import('../lib/index.mjs');
    for (const name of ['Lease', 'LeaseLostError', 'LeaseDeniedError']) {
      assert.equal(typeof tollgate[name], 'function', name);
      assert.equal(esm[name], tollgate[name], name);
      assert.equal(esm.default[name], tollgate[name], name);
    }
    const lost = tollgate.makeError('RL_E_NOT_FOUND', 'x');
    assert.ok(lost instanceof NothingToRefundError, 'makeError keeps RL_E_NOT_FOUND a NothingToRefundError');
    const e = new LeaseLostError('gone', 'RL_E_NOT_FOUND');
    assert.equal(String(e), 'LeaseLostError: gone');
    const d = new LeaseDeniedError('busy', { retryAfter: 5 });
    assert.equal(String(d), 'LeaseDeniedError: busy');
    assert.equal(d.retryAfter, 5);
    assert.ok(d instanceof Error);
  });
}
