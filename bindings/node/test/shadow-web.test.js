'use strict';
// Shadow mode in the web helpers (docs/node.md, "Shadow mode"; the Python
// twin is bindings/python/tests/test_shadow_web.py): a decision allowed by
// shadow mode (a shadow policy, or a Limiter({ shadow: true })) lets the
// request through, without a 429 and without Retry-After, its RateLimit /
// X-RateLimit headers describing the would-be denial (rl_headers_format of
// an allowed decision: the bytes Python sends). tollgate/express on a real
// node:http server, tollgate/next's limit() and withRateLimit() with Web
// Requests; memory and a real redis-server.

const test = require('node:test');
const assert = require('node:assert/strict');

const { Policy } = require('..');
const { rateLimit } = require('../lib/express.js');
const { limit, withRateLimit } = require('../lib/next.js');
const { noRedis } = require('./redis-server');
const { limiterStores, serve, get } = require('./helpers');

const T0 = 1700000000000000;

// Memory limiters' clocks stand at T0.
const { limiterOf } = limiterStores({ now: T0 });

function assertShadowHeaders(h, kind) {
  assert.equal(h['retry-after'], undefined);
  assert.equal(h['x-ratelimit-limit'], '1');
  assert.equal(h['x-ratelimit-remaining'], '0');
  assert.equal(h['ratelimit-policy'], '"default";q=1;w=60');
  if (kind === 'memory') {
    assert.equal(h['ratelimit'], '"default";r=0;t=60');
    assert.equal(h['x-ratelimit-reset'], '60');
  }
}

for (const kind of ['memory', 'redis']) {
  const skip = kind === 'redis' && noRedis;

  test(`${kind}: express lets a shadow policy's denial through, without Retry-After`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const port = await serve(t, rateLimit({ limiter: lim, policy: new Policy(1, '1m', { shadow: true }) }));
    assert.equal((await get(port)).status, 200);
    for (let i = 0; i < 3; i++) {
      const r = await get(port);
      assert.equal(r.status, 200);
      assert.equal(r.body, 'ok');
      assertShadowHeaders(r.headers, kind);
    }
    assert.equal(lim.health().shadowDenied, 3);
  });

  test(`${kind}: express with a shadow limiter; an enforced one still answers 429`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind, { shadow: true });
    const p = { limit: 1, period: '1m' };
    const port = await serve(t, rateLimit({ limiter: lim, policy: p }));
    for (let i = 0; i < 3; i++) assert.equal((await get(port)).status, 200);
    const r = await get(port);
    assertShadowHeaders(r.headers, kind);
    assert.equal(lim.health().shadowDenied, 3);
    const enforcing = await limiterOf(t, kind);
    const port2 = await serve(t, rateLimit({ limiter: enforcing, policy: p }));
    assert.equal((await get(port2)).status, 200);
    const denied = await get(port2);
    assert.equal(denied.status, 429);
    assert.ok(denied.headers['retry-after']);
  });

  test(`${kind}: next limit() and withRateLimit() let a shadowed denial through`, { skip }, async (t) => {
    const lim = await limiterOf(t, kind);
    const options = { limiter: lim, policy: Policy.parse('1/m shadow') };
    const req = () => new Request('http://app.test/', { headers: { 'x-forwarded-for': '203.0.113.7' } });
    assert.equal((await limit(req(), options)).response, undefined);
    const r = await limit(req(), options);
    assert.equal(r.response, undefined);
    assert.equal(r.decision.allowed, true);
    assert.equal(r.decision.shadow, true);
    assert.equal(r.headers['Retry-After'], undefined);
    assert.equal(r.headers['X-RateLimit-Remaining'], '0');
    const handler = withRateLimit(async () => Response.json({ ok: true }), options);
    const res = await handler(req(), {});
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('retry-after'), null);
    assert.equal(res.headers.get('x-ratelimit-remaining'), '0');
    assert.deepEqual(await res.json(), { ok: true });
    assert.equal(lim.health().shadowDenied, 2);
  });
}
