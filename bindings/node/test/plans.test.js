'use strict';
// tollgate/plans without a server: address parsing, key functions, Limits,
// the option checks the integrations share, the 429 body and which outcome
// a response's headers describe.

const test = require('node:test');
const assert = require('node:assert/strict');

const { Limiter } = require('..');
const plans = require('../lib/plans.js');
const { rateLimit } = require('../lib/express.js');
const { limit, withRateLimit } = require('../lib/next.js');

test('normalizeAddress: not an address is null, never an exception', () => {
  const { normalizeAddress } = plans;
  for (const bad of ['1:2:3:4:5:6:7:xyz', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', 'nope', '', '::zz', 'zz::1',
    '1.2.3.256', '1.2.3.999', '[::1', 'fe80::1%', 'fe80::1%a/b', '1::2::3'])
    assert.equal(normalizeAddress(bad), null, bad);
});

test('normalizeAddress: the canonical text, as Python\'s ipaddress writes it', () => {
  const { normalizeAddress } = plans;
  const cases = [
    ['1.2.3.255', '1.2.3.255'],
    ['[2001:db8::1]:443', '2001:db8::1'],
    ['203.0.113.7:5000', '203.0.113.7'],
    ['fe80::1%eth0', null], // no zone ids (as Python's plans: the library has none)
    ['2001:DB8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group is not "::"
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of two equal runs
    ['::ffff:1.2.3.4', '1.2.3.4'], // IPv4-mapped
    ['1::ffff:1.2.3.4', '1::ffff:102:304'],
    ['0:1::ffff:1.2.3.4', '0:1::ffff:102:304'],
    ['0:0:1::ffff:1.2.3.4', '::1:0:0:ffff:102:304'],
    ['0:0:0:1::ffff:1.2.3.4', '::1:0:ffff:102:304'],
    ['::1:ffff:1.2.3.4', '::1:ffff:102:304'],
  ];
  for (const [text, want] of cases) assert.equal(normalizeAddress(text), want, text);
  assert.equal(normalizeAddress('2001:db8:1:2:3:4:5:6', 128), '2001:db8:1:2:3:4:5:6'); // /128: the address
  assert.equal(normalizeAddress('2001:db8:1:2:3:4:5:6', 48), '2001:db8:1::/48');
});

test('clientAddress options are checked when the key function is made', () => {
  const { clientAddress } = plans;
  assert.throws(() => clientAddress({ trustedProxies: 1.5 }), (e) => e instanceof TypeError && /trustedProxies must be an integer/.test(e.message));
  assert.throws(() => clientAddress({ trustForwarded: 'yes' }), TypeError);
  assert.throws(() => clientAddress({ ipv6Prefix: 0 }), RangeError);
  assert.throws(() => clientAddress({ ipv6Prefix: 129 }), RangeError);
  const full = clientAddress({ ipv6Prefix: 128 });
  assert.equal(full({ headers: {}, socket: { remoteAddress: '2001:db8::1' } }), 'ip:2001:db8::1');
});

test('key functions: names, Web Requests without the header, getters', async () => {
  const { headerKey, organizationKey } = plans;
  const node = (peer, headers = {}) => ({ headers, socket: { remoteAddress: peer } });
  assert.equal(headerKey('X-API-Key').name, 'headerKey("X-API-Key")');
  assert.equal(organizationKey().name, 'organizationKey("X-Org-Id")');
  // A Web Request without the header: the fallback, not the text "null".
  assert.equal(headerKey('X-API-Key')(new Request('http://x/')), 'ip:unknown');
  assert.equal(headerKey('X-API-Key', { fallback: null })(new Request('http://x/')), null);
  assert.equal(organizationKey('X-Org-Id')(new Request('http://x/')), 'ip:unknown');
  // Getters: null/undefined/blank fall back; a Promise is awaited.
  for (const v of [null, undefined, '  '])
    assert.equal(organizationKey({ getter: () => v })(node('1.2.3.4')), 'ip:1.2.3.4', String(v));
  assert.equal(await organizationKey({ getter: async () => 'acme' })(node('1.2.3.4')), 'org:acme');
  assert.equal(await organizationKey({ getter: async () => null })(node('1.2.3.4')), 'ip:1.2.3.4');
  assert.equal(organizationKey({ getter: () => 42 })(node('1.2.3.4')), 'org:42');
  assert.throws(() => organizationKey({ getter: 'x' }), (e) => e instanceof TypeError && /getter must be a function/.test(e.message));
  assert.throws(() => organizationKey(''), TypeError);
  assert.throws(() => headerKey(''), TypeError);
});

test('Limits: own plans, names and messages', () => {
  const { Limits, policiesFor, PLANS } = plans;
  const own = { GOLD: { limit: 5, period: '1m' }, SILVER: [{ limit: 2, period: '1s' }, { limit: 9, period: '1h' }] };
  const l = new Limits({ plans: own, plan: () => 'GOLD' });
  assert.deepEqual(l.forPlan('GOLD'), { policies: [own.GOLD], name: 'GOLD' });
  assert.deepEqual(l.forPlan(null), { policies: [own.GOLD], name: 'GOLD' });
  assert.equal(l.forPlan('SILVER').policies.length, 2);
  assert.throws(() => l.forPlan('FREE'), (e) => e instanceof RangeError &&
    e.message === 'plan returned "FREE", which is not in plans ("GOLD", "SILVER")');
  assert.equal(new Limits({ plans: own, plan: () => null, name: 'api' }).forPlan('SILVER').name, 'api');
  assert.throws(() => new Limits({ policy: { limit: 1, period: 1 }, name: 5 }),
    (e) => e instanceof TypeError && e.message === 'name must be a string, not number');
  assert.throws(() => new Limits({ policy: 'x' }),
    (e) => e instanceof TypeError && /policy must be a policy/.test(e.message));
  assert.throws(() => new Limits({ policy: [] }), RangeError);
  assert.throws(() => policiesFor('BAD', { BAD: 5 }),
    (e) => e instanceof TypeError && e.message.startsWith('plans["BAD"] must be a policy'));
  assert.deepEqual(policiesFor('FREE'), [PLANS.FREE]);
  assert.deepEqual(policiesFor('X', new Map([['X', { limit: 1, period: 1 }]])), [{ limit: 1, period: 1 }]);
});

test('HEADER_NAMES: the fields the integrations set', () => {
  assert.deepEqual(plans.HEADER_NAMES, ['RateLimit-Policy', 'RateLimit', 'X-RateLimit-Limit',
    'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After']);
});

test('binding: a denial with the longest retry, else the fewest remaining', () => {
  const { binding } = plans;
  const o = (allowed, remaining, retryAfter) => ({ decision: { allowed, remaining, retryAfter }, policy: {}, name: 'n' });
  const a0 = o(true, 0, 0);
  const d1 = o(false, 0, 1000);
  const d5 = o(false, 0, 5000);
  const dInf = o(false, 0, null);
  assert.equal(binding([a0, d1]), d1);
  assert.equal(binding([d5, d1]), d5);
  assert.equal(binding([d1, d5]), d5);
  assert.equal(binding([d5, dInf, d1]), dInf);
  const a1 = o(true, 1, 0);
  const a5 = o(true, 5, 0);
  assert.equal(binding([a1, a5]), a1);
  assert.equal(binding([a5, a1]), a1);
  assert.equal(binding([]), null);
});

test('deniedBody: Retry-After in whole seconds, 1 without it', () => {
  assert.equal(plans.deniedBody({ 'Retry-After': '7' }), '{"detail":"Rate limit exceeded","retry_after":7}');
  assert.equal(plans.deniedBody({}), '{"detail":"Rate limit exceeded","retry_after":1}');
});

test('the integrations check their options up front, with messages that name the caller', async () => {
  const limiter = new Limiter();
  try {
    const policy = { limit: 1, period: '1s' };
    assert.throws(() => rateLimit({ limiter, policy, key: 'x' }),
      (e) => e instanceof TypeError && e.message === 'key must be a key function (request -> string | Buffer | null), not string');
    assert.throws(() => rateLimit({ limiter, policy, cost: 'x' }), (e) => e instanceof TypeError && /cost must be an integer/.test(e.message));
    assert.throws(() => rateLimit({ limiter, policy, cost: 1.5 }), TypeError);
    assert.throws(() => rateLimit({ limiter, policy, cost: -1 }),
      (e) => e instanceof RangeError && e.message === 'cost must be >= 0 (got -1)');
    assert.throws(() => rateLimit({ limiter, policy, scope: 5 }), TypeError);
    assert.throws(() => rateLimit({ limiter, policy, onError: 5 }), TypeError);
    // tollgate/next names itself; a cost function's bad answer is named as such.
    assert.throws(() => limit(new Request('http://x/'), { policy }),
      (e) => e instanceof TypeError && e.message === 'tollgate/next needs { limiter }: a tollgate Limiter');
    await assert.rejects(limit(new Request('http://x/'), { limiter, policy, cost: () => 1.5 }),
      (e) => e instanceof TypeError && /or a function returning one/.test(e.message));
    assert.throws(() => withRateLimit(5, { limiter, policy }),
      (e) => e instanceof TypeError && e.message === 'withRateLimit(handler, options): handler must be a function');
  } finally {
    await limiter.close();
  }
});

test('the integrations refuse a limiter without check()', () => {
  const policy = { limit: 1, period: '1s' };
  assert.throws(() => rateLimit({ limiter: {}, policy }), (e) => e instanceof TypeError && /needs \{ limiter \}/.test(e.message));
  assert.throws(() => rateLimit({ limiter: { check: 1 }, policy }), TypeError);
  const limiter = new Limiter();
  try {
    assert.equal(typeof rateLimit({ limiter, policy }), 'function');
  } finally {
    limiter.close();
  }
});

test('more key and address cases: blank headers, short IPv4, "::a.b.c.d", spaces, no arguments, Buffer scopes', () => {
  const { normalizeAddress, headerKey, clientAddress, scopedKey } = plans;
  const node = (peer, headers = {}) => ({ headers, socket: { remoteAddress: peer } });
  assert.equal(headerKey('X-API-Key')(node('1.2.3.4', { 'x-api-key': '   ' })), 'ip:1.2.3.4');
  assert.equal(normalizeAddress('1.2.3'), null);
  assert.equal(normalizeAddress('1.2.3.4.5'), null);
  assert.equal(normalizeAddress('::1.2.3.4'), '::102:304');
  assert.equal(normalizeAddress(' 1.2.3.4 '), '1.2.3.4');
  const byPeer = clientAddress();
  assert.equal(typeof byPeer, 'function');
  assert.equal(byPeer(node('1.2.3.4')), 'ip:1.2.3.4');
  assert.throws(() => headerKey('X', { prefix: 5 }), (e) => e instanceof TypeError && e.message === 'prefix must be a string, not number');
  assert.equal(headerKey('X-API-Key', { prefix: 'key:' })(node('1.2.3.4', { 'x-api-key': 'k1' })), 'key:k1');
  assert.deepEqual(scopedKey('s', Buffer.from('k')), Buffer.from('s|k'));
  assert.equal(scopedKey('s', 'k'), 's|k');
});

test('Limits without policies: forPlan(null) names the mistake; an empty list names its option', () => {
  assert.throws(() => new plans.Limits({}).forPlan(null),
    (e) => e instanceof TypeError && e.message === 'no policies: give policy or plans');
  assert.throws(() => new plans.Limits({ policy: [] }),
    (e) => e instanceof RangeError && e.message === 'policy: at least one policy is needed');
});

test('binding: a denial wins over an allowed outcome with fewer remaining', () => {
  const o = (allowed, remaining, retryAfter) => ({ decision: { allowed, remaining, retryAfter }, policy: {}, name: 'n' });
  const denied = o(false, 2, 1000); // a cost of 3 against 2 remaining
  assert.equal(plans.binding([denied, o(true, 1, 0)]), denied);
});

test('rateLimit charges the cost option', async () => {
  const limiter = new Limiter();
  try {
    const mw = rateLimit({ limiter, policy: { limit: 10, period: '1h' }, cost: 3, key: () => 'k' });
    const headers = {};
    const res = {
      headersSent: false,
      locals: {},
      setHeader: (f, v) => { headers[f] = String(v); },
      removeHeader: (f) => { delete headers[f]; },
    };
    await new Promise((resolve, reject) => mw({ headers: {} }, res, (err) => (err ? reject(err) : resolve())));
    assert.equal(headers['X-RateLimit-Remaining'], '7');
    assert.equal(res.locals.rateLimit.decision.remaining, 7);
  } finally {
    await limiter.close();
  }
});

test('withRateLimit: onError answers a rejected check; without it the rejection propagates', async () => {
  const down = { check: () => Promise.reject(new Error('store down')) };
  const policy = { limit: 1, period: '1m' };
  const handler = async () => new Response('ok');
  const guarded = withRateLimit(handler, { limiter: down, policy, key: () => 'k', onError: (err) => new Response(err.message, { status: 503 }) });
  const r = await guarded(new Request('http://x/'), {});
  assert.equal(r.status, 503);
  assert.equal(await r.text(), 'store down');
  const bare = withRateLimit(handler, { limiter: down, policy, key: () => 'k' });
  await assert.rejects(bare(new Request('http://x/'), {}), /store down/);
});

test('the Edge runtime message says what to change', () => {
  const { EDGE_MESSAGE } = require('../lib/next.js');
  assert.match(EDGE_MESSAGE, /^tollgate is a native Node\.js addon and cannot run on the Edge runtime\. /);
  assert.ok(EDGE_MESSAGE.includes("export const runtime = 'nodejs'"));
  assert.ok(EDGE_MESSAGE.includes("Next.js >= 15.5) and list 'tollgate' in next.config's serverExternalPackages."));
});
