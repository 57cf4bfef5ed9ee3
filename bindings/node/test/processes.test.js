'use strict';
// Many callers on one Redis key enforce one limit: 16 worker_threads (each
// its own Limiter), three Node processes, the C worker and Node processes,
// and C + Python + Node together (on a standalone server, and on one key of
// a Redis Cluster) admit exactly `limit` in total.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { Worker } = require('node:worker_threads');

const { RedisServer, REDIS_SERVER, redisCommand, startTopology, topologySkip } = require('./redis-server');
const { uniqueKey } = require('./helpers');
const { track } = require('./children');

const INDEX = require.resolve('..');
const LIMIT = 150;
const PERIOD_MS = 10 * 365 * 24 * 3600 * 1000; // ten years: no refill
const WORKER = process.env.TOLLGATE_TEST_WORKER || '';
const PYTHON = process.env.TOLLGATE_TEST_PYTHON || '';

const skip = !REDIS_SERVER && 'redis-server is not installed';

// A Node caller: `calls` checks (32 in flight at a time), prints the count
// admitted; any degraded answer or error fails it.
const NODE_CALLER = `
  const t = require(${JSON.stringify(INDEX)});
  const [url, key, calls] = process.argv.slice(-3);
  const lim = new t.Limiter({ url, failureMode: 'error', timeoutMs: 5000 });
  const p = t.policy(${LIMIT}, ${PERIOD_MS});
  (async () => {
    let admitted = 0, left = Number(calls);
    async function lane() {
      while (left-- > 0) {
        const d = await lim.check(key, p);
        if (d.source !== 'store' && d.source !== 'deny_cache') throw new Error('degraded: ' + d.source);
        admitted += d.allowed;
      }
    }
    await Promise.all(Array.from({ length: 32 }, lane));
    await lim.close();
    const wt = require('node:worker_threads');
    if (wt.isMainThread) console.log(admitted);
    else wt.parentPort.postMessage(admitted);
  })().catch((e) => { console.error(e); process.exit(1); });`;

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} exited ${code}: ${err}`));
    });
  });
}

const nodeProcess = (url, key, calls) => run(process.execPath, ['-e', NODE_CALLER, url, key, String(calls)]).then((o) => Number(o.trim()));

function cWorker(url, key) {
  return run(WORKER, [url, key, '0', String(LIMIT), String(PERIOD_MS), '4', '100']).then((out) => {
    const f = out.trim().split(/\s+/);
    assert.equal(f[0], 'admitted', out);
    assert.equal(f[4], 'errors', out);
    assert.equal(f[5], '0', out);
    assert.equal(f[7], '0', out); // degraded
    return Number(f[1]);
  });
}

function pythonProcess(url, key) {
  const script = [
    'import sys, tollgate',
    "lim = tollgate.Limiter(sys.argv[1], failure_mode='error', timeout_ms=5000)",
    `p = tollgate.Policy(${LIMIT}, ${PERIOD_MS / 1000})`,
    'n = 0',
    'for _ in range(300):',
    '    d = lim.check(sys.argv[2], p)',
    "    assert d.source in ('store', 'deny_cache'), d",
    '    n += d.allowed',
    'print(n)',
  ].join('\n');
  return run(PYTHON, ['-c', script, url, key]).then((o) => Number(o.trim()));
}

test('16 worker_threads, each its own Limiter, admit exactly the limit', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const key = uniqueKey('threads');
  const counts = await Promise.all(
    Array.from({ length: 16 }, () => new Promise((resolve, reject) => {
      const w = new Worker(NODE_CALLER, { eval: true, argv: [server.url, key, '40'] });
      w.once('message', resolve);
      w.once('error', reject);
      w.once('exit', (c) => c !== 0 && reject(new Error('worker exit ' + c)));
    })),
  );
  assert.equal(counts.reduce((a, b) => a + b, 0), LIMIT);
});

test('three Node processes admit exactly the limit', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const key = uniqueKey('procs');
  const counts = await Promise.all([0, 1, 2].map(() => nodeProcess(server.url, key, 200)));
  assert.equal(counts.reduce((a, b) => a + b, 0), LIMIT);
});

test('C and Node processes admit exactly the limit', {
  skip: skip || (!fs.existsSync(WORKER) && 'set TOLLGATE_TEST_WORKER to the built tollgate-test-worker'),
}, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const key = uniqueKey('c-node');
  const counts = await Promise.all([
    cWorker(server.url, key), cWorker(server.url, key),
    nodeProcess(server.url, key, 300), nodeProcess(server.url, key, 300),
  ]);
  assert.equal(counts.reduce((a, b) => a + b, 0), LIMIT, String(counts));
});

test('C, Python and Node processes admit exactly the limit', {
  skip: skip || (!fs.existsSync(WORKER) && 'set TOLLGATE_TEST_WORKER to the built tollgate-test-worker') ||
    (!PYTHON && 'set TOLLGATE_TEST_PYTHON to a python with the tollgate package'),
}, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const key = uniqueKey('c-py-node');
  const counts = await Promise.all([
    cWorker(server.url, key),
    pythonProcess(server.url, key), pythonProcess(server.url, key),
    nodeProcess(server.url, key, 300), nodeProcess(server.url, key, 300),
  ]);
  assert.equal(counts.reduce((a, b) => a + b, 0), LIMIT, String(counts));
  assert.ok(counts.every((c) => c >= 0));
});

test('C, Python and Node processes on one key of a Redis Cluster admit exactly the limit', {
  skip: topologySkip || (!fs.existsSync(WORKER) && 'set TOLLGATE_TEST_WORKER to the built tollgate-test-worker') ||
    (!PYTHON && 'set TOLLGATE_TEST_PYTHON to a python with the tollgate package'),
}, async (t) => {
  const cluster = await startTopology('cluster');
  t.after(() => cluster.close());
  const key = uniqueKey('cluster-c-py-node');
  const counts = await Promise.all([
    cWorker(cluster.url, key),
    pythonProcess(cluster.url, key), pythonProcess(cluster.url, key),
    nodeProcess(cluster.url, key, 300), nodeProcess(cluster.url, key, 300),
  ]);
  assert.equal(counts.reduce((a, b) => a + b, 0), LIMIT, String(counts));
  // The key's state lives on exactly one primary (its slot's).
  const holders = [];
  for (const port of cluster.primaryPorts) {
    const keys = await redisCommand(port, 'KEYS', `tollgate:v2:{${key}}*`);
    if (keys.length) holders.push(port);
  }
  assert.equal(holders.length, 1, String(holders));
});
