'use strict';
// Shared test helpers: where the package, the repository and the shared
// vectors are, a fresh key prefix per test, limiters on the memory store or
// on a redis-server shared by a file's tests, redis-servers of a test's
// own, the event loop watched while calls wait, and a node:http server for
// the web helpers' middlewares.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const PACKAGE_ROOT = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(PACKAGE_ROOT, '..', '..');
// In a checkout: the repository's tests/vectors; in a packed copy: native-src.
const VECTORS_DIR = [
  path.join(REPO_ROOT, 'tests', 'vectors'),
  path.join(PACKAGE_ROOT, 'native-src', 'tests', 'vectors'),
].find((d) => fs.existsSync(path.join(d, 'gcra.json'))) || null;

function prefix() {
  return 'tgnode:' + crypto.randomBytes(6).toString('hex') + ':';
}

function uniqueKey(name) {
  return name + '-' + crypto.randomBytes(8).toString('hex');
}

// redis-server.js requires this file (for the paths above), so this one
// requires it, and the package, only when a helper below is called.
const redis = () => require('./redis-server');
const tollgate = () => require('..');

// ---- Limiters on the memory store or on Redis ---------------------------------

// For the tests of a file that run on both stores. Call it once, at the top
// level of the test file (it registers the file's test.after there):
//
//   const { sharedServer, storeOf, limiterOf } = limiterStores({ now, redis });
//
// sharedServer(): one redis-server for the file's tests, started when a
//   test first needs it (a promise of the RedisServer), stopped after them.
// storeOf(t, kind) (kind 'memory' or 'redis'): a store of the test `t`'s
//   own: { kind, clock, server, keyPrefix, limiter(options), storedKeys() }.
//   Its limiters are closed after `t`; on Redis they share the store's key
//   prefix (so their state), and storedKeys() lists the Redis keys under it.
// limiterOf(t, kind, options): a limiter on a store of its own.
//
// `now` (µs): memory limiters read the store's clock, store.clock.now, which
//   starts there (a test may move it); without it, the system clock.
// `redis`: options of every Redis limiter, over url, the key prefix,
//   failureMode 'error' and timeoutMs 5000. A limiter's own `options` go
//   over both.
function limiterStores({ now, redis: redisOptions = {} } = {}) {
  const test = require('node:test');
  let shared = null;
  const sharedServer = () => (shared ??= redis().RedisServer.start());
  test.after(async () => {
    if (shared) await (await shared).stop();
  });

  async function storeOf(t, kind) {
    const { Limiter } = tollgate();
    const clock = now === undefined ? null : { now };
    const server = kind === 'redis' ? await sharedServer() : null;
    const keyPrefix = kind === 'redis' ? prefix() : null;
    return {
      kind,
      clock,
      server,
      keyPrefix,
      limiter(options = {}) {
        const lim = kind === 'memory'
          ? new Limiter(clock ? { clock: () => clock.now, ...options } : options)
          : new Limiter({
            url: server.url, keyPrefix, failureMode: 'error', timeoutMs: 5000, ...redisOptions, ...options,
          });
        t.after(() => lim.close());
        return lim;
      },
      storedKeys: () => redis().redisCommand(server.port, 'KEYS', keyPrefix + '*'),
    };
  }

  async function limiterOf(t, kind, options = {}) {
    return (await storeOf(t, kind)).limiter(options);
  }

  return { sharedServer, storeOf, limiterOf };
}

// ---- Servers of a test's own ---------------------------------------------------

// A redis-server for the test `t` alone (one it freezes, kills, restarts or
// that forked processes share), stopped after it. `options`: RedisServer's
// ({ password }).
async function ownServer(t, options) {
  const server = await redis().RedisServer.start(options);
  t.after(() => server.stop());
  return server;
}

// The URL of a redis-server that was SIGKILLed before this returns: a store
// that does not answer (its directory is removed after the test `t`).
async function killedServerUrl(t) {
  const server = await ownServer(t);
  await server.kill();
  return server.url;
}

// Watches the event loop while calls wait on a store: a 10 ms interval
// records its longest gap (ms) and its ticks; with `immediates`, a
// setImmediate chain counts the loop's turns too. stop() ends the watch
// and returns { maxGap, ticks, immediates }.
function watchEventLoop({ immediates: spin = false } = {}) {
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ++ticks;
  }, 10);
  let immediates = 0;
  let spinning = spin;
  const turn = () => {
    ++immediates;
    if (spinning) setImmediate(turn);
  };
  if (spin) setImmediate(turn);
  return {
    stop() {
      spinning = false;
      clearInterval(timer);
      return { maxGap, ticks, immediates };
    },
  };
}

// ---- HTTP --------------------------------------------------------------------

// A node:http server on 127.0.0.1 that runs `middlewares` (Express style:
// (req, res, next)) in turn, then answers 200 'ok'; an error passed to
// next answers 500 with its text. Closed after the test `t`; resolves to
// its port.
async function serve(t, ...middlewares) {
  const server = http.createServer((rq, res) => {
    let i = 0;
    const next = (err) => {
      if (err) {
        res.statusCode = 500;
        res.end(String(err));
      } else if (i < middlewares.length) {
        middlewares[i++](rq, res, next);
      } else {
        res.end('ok');
      }
    };
    next();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => {
    server.closeAllConnections();
    server.close(r);
  }));
  return server.address().port;
}

// GET / on 127.0.0.1:port with `headers`: { status, headers, body }.
function get(port, headers = {}) {
  return new Promise((resolve, reject) => {
    const rq = http.request({ host: '127.0.0.1', port, path: '/', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    rq.on('error', reject);
    rq.end();
  });
}

module.exports = {
  PACKAGE_ROOT, REPO_ROOT, VECTORS_DIR, prefix, uniqueKey,
  limiterStores, ownServer, killedServerUrl, watchEventLoop, serve, get,
};
