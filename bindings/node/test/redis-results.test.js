'use strict';
// Decisions from the Redis store (the async path: settle()) have the same
// shape and values as the memory store's: a request that can never pass
// has retryAfter Infinity, not the C library's -1.

const test = require('node:test');
const assert = require('node:assert/strict');

const { Limiter, policy } = require('..');
const { RedisServer, REDIS_SERVER } = require('./redis-server');
const { prefix } = require('./helpers');

const skip = !REDIS_SERVER && 'redis-server is not installed';

test('Redis: a cost above the limit is denied with retryAfter Infinity, as in memory', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const redis = new Limiter({ url: server.url, keyPrefix: prefix() });
  const memory = new Limiter();
  t.after(() => Promise.all([redis.close(), memory.close()]));
  const p = policy(2, '1m');
  const d = await redis.check('k', p, { cost: 3 });
  assert.equal(d.allowed, false);
  assert.equal(d.retryAfter, Infinity);
  assert.equal(d.remaining, 2);
  assert.equal(d.source, 'store');
  assert.deepEqual(d, await memory.check('k', p, { cost: 3 }));
  const ok = await redis.check('k', p);
  assert.equal(ok.allowed, true);
  assert.equal(ok.retryAfter, 0);
});
