'use strict';
// The log hook (docs/metrics.md, "Logs"; the C++ test is tests/test_log.cpp):
// onLog / logLevel and limiter.setLogHandler(). A password-protected
// redis-server is killed and restarted under traffic: each episode reaches
// the handler exactly once each way, on the JS thread, never with the
// password; levels filter; nothing comes after the handler is removed or
// the limiter closed, even what was logged just before; a process with a
// handler set exits by itself; bad input.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { isMainThread } = require('node:worker_threads');

const { Limiter, Policy } = require('..');
const { noRedis, sleep } = require('./redis-server');
const { ownServer, PACKAGE_ROOT } = require('./helpers');

const PASSWORD = 's3cret-node-log-pw';

// What a handler received: entries, each checked as it comes (the JS
// thread, the entry's shape).
function recorder() {
  const entries = [];
  const handler = (entry) => {
    assert.ok(isMainThread);
    assert.deepEqual(Object.keys(entry), ['level', 'message']);
    assert.ok(['error', 'warn', 'info', 'debug'].includes(entry.level), entry.level);
    assert.equal(typeof entry.message, 'string');
    entries.push(entry);
  };
  const count = (level, part) => entries.filter((e) => e.level === level && e.message.includes(part)).length;
  const text = () => entries.map((e) => `${e.level} ${e.message}`).join('\n');
  return { entries, handler, count, text };
}

// A limiter that fails open fast and reconnects every 100 ms at most (as
// tests/test_log.cpp's).
function outageLimiter(t, url, options) {
  const lim = new Limiter({
    url, failureMode: 'open', denyCache: false, connectTimeoutMs: 200, timeoutMs: 200, reconnectMaxMs: 100,
    ...options,
  });
  t.after(() => lim.close());
  return lim;
}

async function sources(lim, p, n) {
  const out = [];
  for (let i = 0; i < n; ++i) out.push((await lim.check('k', p)).source);
  return out;
}

// Waits until `cond()` or `ms` passed.
async function until(cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
  return cond();
}

test('an outage and its end: one "is unreachable" and one "reconnected to" each, levels, no password', { skip: noRedis, timeout: 60000 }, async (t) => {
  const server = await ownServer(t, { password: PASSWORD });
  const url = server.url;
  assert.ok(url.includes(PASSWORD));
  const info = recorder(); // onLog, default level: info
  const warn = recorder(); // setLogHandler(..., { level: 'warn' })
  const limInfo = outageLimiter(t, url, { onLog: info.handler });
  const limWarn = outageLimiter(t, url);
  limWarn.setLogHandler(warn.handler, { level: 'warn' });
  const p = Policy.parse('1000/s');
  assert.deepEqual(new Set(await sources(limInfo, p, 20)), new Set(['store']));
  assert.deepEqual(new Set(await sources(limWarn, p, 20)), new Set(['store']));
  await sleep(100);
  assert.deepEqual(info.entries, []); // nothing happened

  await server.kill();
  for (const lim of [limInfo, limWarn]) {
    const s = await sources(lim, p, 50);
    assert.ok(s.filter((x) => x === 'fail_open').length >= 45, s.join());
  }
  await sleep(500); // reconnection attempts go on meanwhile
  for (const r of [info, warn]) {
    assert.ok(await until(() => r.count('warn', ' is unreachable (') >= 1 && r.count('warn', 'the store cannot answer') >= 1), r.text());
    assert.equal(r.count('warn', ' is unreachable ('), 1, r.text());
    assert.equal(r.count('warn', 'the store cannot answer'), 1, r.text());
    assert.equal(r.count('warn', 'allowing every check (fail open)'), 1, r.text());
  }
  assert.match(info.text(), new RegExp(`^warn tollgate: 127\\.0\\.0\\.1:${server.port} is unreachable \\(`, 'm'));

  await server.restart();
  for (const lim of [limInfo, limWarn]) {
    const end = Date.now() + 10000;
    while ((await lim.check('k', p)).source !== 'store' && Date.now() < end) await sleep(20);
    assert.deepEqual(new Set(await sources(lim, p, 20)), new Set(['store']));
  }
  const reconnected = `reconnected to 127.0.0.1:${server.port} after`;
  assert.ok(await until(() => info.count('info', reconnected) >= 1 && info.count('info', 'the store answers again after') >= 1),
    info.text());
  await sleep(200);
  assert.equal(info.count('info', reconnected), 1, info.text());
  assert.equal(info.count('info', 'the store answers again after'), 1, info.text());
  assert.match(info.text(), / check\(s\) were answered without it meanwhile/);
  assert.equal(info.count('warn', ' is unreachable ('), 1, info.text());
  assert.equal(info.count('warn', 'the store cannot answer'), 1, info.text());
  // Below the level asked: none of the info lines.
  assert.equal(warn.entries.filter((e) => e.level !== 'warn' && e.level !== 'error').length, 0, warn.text());
  assert.equal(warn.count('warn', ' is unreachable ('), 1, warn.text());
  for (const r of [info, warn]) assert.ok(!r.text().includes(PASSWORD), r.text());

  // Removed: nothing after, though the next outage is logged by the library.
  limInfo.setLogHandler(null);
  const seen = info.entries.length;
  await server.kill();
  await sources(limInfo, p, 10);
  await sources(limWarn, p, 10);
  assert.ok(await until(() => warn.count('warn', 'the store cannot answer') === 2), warn.text());
  await sleep(300);
  assert.equal(info.entries.length, seen, info.text());
  // Set again: the episodes from now on.
  limInfo.setLogHandler(info.handler, { level: 'debug' });
  await server.restart();
  const end = Date.now() + 10000;
  while ((await limInfo.check('k', p)).source !== 'store' && Date.now() < end) await sleep(20);
  assert.ok(await until(() => info.count('info', reconnected) === 2), info.text());
  assert.ok(!info.text().includes(PASSWORD));
});

test('no message after close(), even one logged just before it; a replaced handler gets none of the old one\'s', { skip: noRedis, timeout: 60000 }, async (t) => {
  const server = await ownServer(t);
  const kept = recorder();
  const closed = recorder();
  const replaced = recorder();
  const replacement = recorder();
  const a = outageLimiter(t, server.url, { onLog: kept.handler, logLevel: 'debug' });
  const b = outageLimiter(t, server.url, { onLog: closed.handler, logLevel: 'debug' });
  const c = outageLimiter(t, server.url, { onLog: replaced.handler, logLevel: 'debug' });
  const p = Policy.parse('1000/s');
  for (const lim of [a, b, c]) await sources(lim, p, 3);
  await server.kill(); // (each may have logged its node unreachable by now)
  const before = [kept, closed, replaced].map((r) => r.entries.length);
  // Checks as the store is gone, then the event loop blocked for half a
  // second: each limiter logs "the store cannot answer" (its first check
  // the store could not answer), and the message waits for the JS thread.
  const pending = [a, b, c].map((lim) => lim.check('k', p));
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  const closing = b.close(); // before the JS thread saw its message
  c.setLogHandler(replacement.handler, { level: 'debug' });
  assert.deepEqual((await Promise.all(pending)).map((d) => d.source), ['fail_open', 'fail_open', 'fail_open']);
  await closing;
  assert.ok(await until(() => kept.count('warn', 'the store cannot answer') === 1), kept.text());
  await sleep(300);
  assert.ok(kept.entries.length > before[0]);
  assert.equal(closed.entries.length, before[1], closed.text());
  assert.equal(replaced.entries.length, before[2], replaced.text());
  // The replacement sees only what was logged after it was set.
  assert.equal(replacement.count('warn', 'the store cannot answer'), 0, replacement.text());
  assert.throws(() => b.setLogHandler(closed.handler), { code: 'RL_E_CLOSED' });
});

test('a process with a log handler set exits by itself, closed or not', { skip: noRedis, timeout: 60000 }, async (t) => {
  const server = await ownServer(t);
  const run = (close) => new Promise((resolve) => {
    const js = `
      const { Limiter, Policy } = require('.');
      const lim = new Limiter({ url: process.argv[1], timeoutMs: 1000, onLog: (e) => console.log(e.level, e.message) });
      lim.setLogHandler((e) => console.log('second', e.message), { level: 'debug' });
      lim.check('k', Policy.parse('10/s')).then((d) => {
        console.log('decided', d.source);
        ${close ? 'return lim.close();' : ''}
      });`;
    const started = Date.now();
    execFile(process.execPath, ['-e', js, server.url], { cwd: PACKAGE_ROOT, timeout: 20000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? err.signal : 0, stdout, stderr, ms: Date.now() - started }));
  });
  for (const close of [false, true]) {
    const r = await run(close);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'decided store');
    assert.ok(r.ms < 10000, `took ${r.ms} ms`);
  }
});

test('a handler that throws reports an uncaught exception; later messages still come', { skip: noRedis, timeout: 60000 }, async (t) => {
  const server = await ownServer(t);
  const js = `
    const { Limiter, Policy } = require('.');
    let n = 0;
    process.on('uncaughtException', (e) => console.log('uncaught', e.message));
    const lim = new Limiter({ url: process.argv[1], failureMode: 'open', denyCache: false, timeoutMs: 200,
      connectTimeoutMs: 200, reconnectMaxMs: 100,
      onLog: (e) => { console.log('got', e.level); if (++n === 1) throw new Error('handler failed'); } });
    (async () => {
      const p = Policy.parse('10/s');
      await lim.check('k', p);
      process.kill(Number(process.argv[2]), 'SIGKILL');
      const end = Date.now() + 5000;
      while (n < 2 && Date.now() < end) { await lim.check('k', p); await new Promise((r) => setTimeout(r, 20)); }
      await lim.close();
    })();`;
  const r = await new Promise((resolve) => {
    execFile(process.execPath, ['-e', js, server.url, String(server.pid)], { cwd: PACKAGE_ROOT, timeout: 20000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code ?? err.signal : 0, stdout, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines.slice(0, 3), ['got warn', 'uncaught handler failed', 'got warn'], r.stdout);
});

test('bad input: a handler that is not a function is a TypeError, an unknown level a RangeError', async (t) => {
  const lim = new Limiter();
  t.after(() => lim.close());
  const fn = () => {};
  assert.throws(() => new Limiter({ onLog: 'console' }),
    { name: 'TypeError', message: 'onLog must be a function ({ level, message }) => void, received string' });
  assert.throws(() => new Limiter({ onLog: fn, logLevel: 'verbose' }),
    { name: 'RangeError', message: "logLevel: unknown level 'verbose' (expected 'error', 'warn', 'info' or 'debug')" });
  assert.throws(() => new Limiter({ onLog: fn, logLevel: 3 }),
    { name: 'TypeError', message: "logLevel must be 'error', 'warn', 'info' or 'debug', received number" });
  assert.throws(() => new Limiter({ logLevel: 'warn' }), { name: 'TypeError', message: /logLevel: goes with onLog/ });
  assert.throws(() => new Limiter({ logLevel: 'loud' }), RangeError);
  assert.throws(() => lim.setLogHandler('x'),
    { name: 'TypeError', message: 'handler must be a function ({ level, message }) => void, received string' });
  assert.throws(() => lim.setLogHandler({}), TypeError);
  assert.throws(() => lim.setLogHandler(fn, { level: 'WARN' }), { name: 'RangeError', message: /unknown level 'WARN'/ });
  assert.throws(() => lim.setLogHandler(fn, { level: 2 }), TypeError);
  assert.throws(() => lim.setLogHandler(fn, 'warn'), { name: 'TypeError', message: /log options must be an object/ });
  assert.throws(() => lim.setLogHandler(null, { level: 'nope' }), RangeError);
  // Valid: every level, null and undefined remove; a memory limiter logs nothing.
  for (const level of ['error', 'warn', 'info', 'debug']) lim.setLogHandler(fn, { level });
  lim.setLogHandler(fn);
  lim.setLogHandler(null);
  lim.setLogHandler(undefined);
  const quiet = new Limiter({ onLog: () => assert.fail('the memory store logged'), logLevel: 'debug' });
  quiet.checkSync('k', Policy.parse('1/s'));
  quiet.checkSync('k', Policy.parse('1/s'));
  await sleep(50);
  await quiet.close();
  assert.throws(() => quiet.setLogHandler(fn), { code: 'RL_E_CLOSED' });
});
