'use strict';
// Allow and deny lists (docs/exemptions.md, docs/node.md "Exemptions"; the
// C++ test is tests/test_exemptions.cpp, the Python one bindings/python/
// tests/test_exemptions.py): new Limiter({ allow, deny }),
// setAllowList / setDenyList, evaluated in process before any store call:
// a deny-listed key is denied (source 'deny_list', retryAfter Infinity), an
// allow-listed one allowed and never charged (source 'allow_list'); deny
// wins; health().listAllowed / listDenied; a bad entry is refused by index
// without echo. Memory and a real redis-server (killed too: listed keys are
// still answered with failureMode 'error').

const test = require('node:test');
const assert = require('node:assert/strict');

const { Limiter, policy, InvalidArgumentError, ConnectionError, NothingToRefundError } = require('..');
const { noRedis } = require('./redis-server');
const { limiterStores, killedServerUrl } = require('./helpers');

const { storeOf } = limiterStores();

function deniedByList(d) {
  assert.equal(d.allowed, false, JSON.stringify(d));
  assert.equal(d.source, 'deny_list');
  assert.equal(d.shadow, false);
  assert.equal(d.retryAfter, Infinity);
  assert.equal(d.remaining, 0);
}

function allowedByList(d, limit = 1) {
  assert.equal(d.allowed, true, JSON.stringify(d));
  assert.equal(d.source, 'allow_list');
  assert.equal(d.shadow, false);
  assert.equal(d.limit, limit);
  assert.equal(d.remaining, limit); // nothing charged
  assert.equal(d.retryAfter, 0);
  assert.equal(d.resetAfter, 0);
}

// tests/test_exemptions.cpp's lists_decide: every kind of check on a
// limiter with both lists; then the counters and an emptied list (the
// store decides again: with the store down, that check rejects).
async function listsDecide(lim, storeUp = true) {
  const p = policy(1, '1m');
  lim.setDenyList(['abuser', '203.0.113.0/24']);
  lim.setAllowList(['health-check', '10.0.0.0/8', '203.0.113.9']);
  deniedByList(await lim.check('abuser', p));
  // The deny list wins over the allow list.
  deniedByList(await lim.check('203.0.113.9', p));
  // Allowed, never charged: a 1/m policy lets it through every time.
  for (let i = 0; i < 5; i++) allowedByList(await lim.check('10.1.2.3', p));
  // Several keys: denied if any is denied; allowed by the list only if all are.
  deniedByList(await lim.checkKeys([['health-check', p], ['abuser', p]]));
  allowedByList(await lim.checkKeys([['health-check', p], ['10.9.9.9', p]]));
  deniedByList(await lim.checkKeys([['10.1.1.1', p], ['203.0.113.200', p]]));
  // A wait on a denied key ends at once.
  const t0 = performance.now();
  deniedByList(await lim.checkWait('abuser', p, { maxWait: '60s' }));
  allowedByList(await lim.checkWait('health-check', p, { maxWait: '60s' }));
  assert.ok(performance.now() - t0 < 5000);
  const h = lim.health();
  assert.equal(h.listDenied, 5);
  assert.equal(h.listAllowed, 7);
  assert.equal(h.checks, 12);
  assert.equal(h.allowed, 7);
  assert.equal(h.denied, 5);
  // Emptying the lists: the store decides again.
  lim.setDenyList([]);
  lim.setAllowList(new Set());
  if (storeUp) {
    const d = await lim.check('abuser', p);
    assert.equal(d.allowed, true);
    assert.equal(d.source, 'store');
    assert.equal(d.remaining, 0);
  } else {
    await assert.rejects(lim.check('abuser', p), ConnectionError);
  }
}

for (const kind of ['memory', 'redis']) {
  const skip = kind === 'redis' && noRedis;

  test(`${kind}: the lists decide before the store`, { skip }, async (t) => {
    await listsDecide((await storeOf(t, kind)).limiter());
  });

  test(`${kind}: lists given at creation`, { skip }, async (t) => {
    const lim = (await storeOf(t, kind)).limiter({ allow: ['vip', '2001:db8::/32'], deny: new Set(['abuser']) });
    const p = policy(1, '1m');
    allowedByList(await lim.check('vip', p));
    allowedByList(await lim.check('2001:db8:1::5', p));
    deniedByList(await lim.check('abuser', p));
    assert.equal((await lim.check('other', p)).source, 'store');
  });

  test(`${kind}: an allowed key is never charged nor written; refunds and leases skip the lists`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    const lim = store.limiter({ allow: ['vip'] });
    const p = policy(1, '1m');
    for (let i = 0; i < 3; i++) allowedByList(await lim.check('vip', p));
    if (kind === 'redis') assert.deepEqual(await store.storedKeys(), []);
    // A refund is not listed: it goes to the store (nothing to give back).
    await assert.rejects(lim.refund('vip', p), NothingToRefundError);
    // Leases do not consult the lists.
    lim.setDenyList(['vip']);
    const got = await lim.acquire('vip', { maxInFlight: 1, ttl: '5s' });
    assert.equal(got.acquired, true);
    await got.lease.release();
  });

  test(`${kind}: deny wins, and any cost`, { skip }, async (t) => {
    const lim = (await storeOf(t, kind)).limiter({ allow: ['10.0.0.0/8', 'k'], deny: ['10.0.0.7', 'k'] });
    const p = policy(5, '1m');
    deniedByList(await lim.check('10.0.0.7', p));
    deniedByList(await lim.check('k', p));
    allowedByList(await lim.check('10.0.0.8', p), 5);
    // Any cost is allowed by the list, even one the policy can never pass.
    allowedByList(await lim.check('10.0.0.8', p, { cost: 1000 }), 5);
    deniedByList(await lim.check('10.0.0.7', p, { cost: 0 }));
  });

  test(`${kind}: a shadow limiter answers a deny-list denial allowed`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    const lim = store.limiter({ shadow: true, deny: ['abuser'] });
    const d = await lim.check('abuser', policy(10, '1s'));
    assert.equal(d.allowed, true);
    assert.equal(d.shadow, true);
    assert.equal(d.source, 'deny_list');
    assert.equal(d.retryAfter, Infinity);
    const h = lim.health();
    assert.equal(h.listDenied, 1);
    assert.equal(h.shadowDenied, 1);
    if (kind === 'redis') assert.deepEqual(await store.storedKeys(), []); // still no store call
  });
}

test('redis killed, failureMode error: listed keys are answered, others reject', { skip: noRedis }, async (t) => {
  const url = await killedServerUrl(t);
  const options = { url, failureMode: 'error', connectTimeoutMs: 200, timeoutMs: 300 };
  let lim = new Limiter(options);
  try {
    await listsDecide(lim, false);
  } finally {
    await lim.close();
  }
  lim = new Limiter({ ...options, allow: ['10.0.0.0/8'], deny: ['abuser'] });
  try {
    const p = policy(1, '1m');
    allowedByList(await lim.check('10.1.2.3', p));
    deniedByList(await lim.check('abuser', p));
    await assert.rejects(lim.check('11.1.2.3', p), ConnectionError);
    allowedByList(await lim.checkKeys([['10.1.2.3', p], ['10.1.2.4', p]]));
    await assert.rejects(lim.checkKeys([['10.1.2.3', p], ['11.1.2.4', p]]), ConnectionError);
  } finally {
    await lim.close();
  }
});

test('redis: the lists are each limiter\'s own', { skip: noRedis }, async (t) => {
  // Two limiters on one store (one key prefix).
  const store = await storeOf(t, 'redis');
  const p = policy(1, '1m');
  const a = store.limiter({ deny: ['k'] });
  const b = store.limiter();
  deniedByList(await a.check('k', p));
  assert.equal((await b.check('k', p)).allowed, true);
  assert.equal((await b.check('k', p)).allowed, false); // b's store state
  deniedByList(await a.check('k', p));
});

test('addresses match in any spelling; Buffer keys and entries', () => {
  const lim = new Limiter({ allow: ['fe80::1', '10.0.0.0/8', '2001:db8::/126', Buffer.from('raw\xffkey', 'latin1')], deny: ['192.0.2.1'] });
  try {
    const p = policy(1, '1m');
    allowedByList(lim.checkSync('fe80:0:0:0:0:0:0:1', p));
    allowedByList(lim.checkSync('::ffff:10.1.2.3', p)); // IPv4-mapped: as IPv4
    allowedByList(lim.checkSync('2001:db8::3', p));
    assert.equal(lim.checkSync('2001:db8::4', p).source, 'store'); // past the /126
    deniedByList(lim.checkSync(Buffer.from('192.0.2.1'), p)); // bytes keys too
    allowedByList(lim.checkSync(Buffer.from('raw\xffkey', 'latin1'), p));
    // A key that merely contains an address is not one.
    assert.equal(lim.checkSync('ip:10.1.2.3', p).source, 'store');
    assert.equal(lim.checkSync('10.1.2.3x', p).source, 'store');
  } finally {
    lim.close();
  }
});

test('runtime replacement; any iterable', () => {
  const lim = new Limiter({ deny: ['a'] });
  try {
    const p = policy(1, '1m');
    deniedByList(lim.checkSync('a', p));
    lim.setDenyList(['b']); // replaces, does not add
    assert.equal(lim.checkSync('a', p).source, 'store');
    deniedByList(lim.checkSync('b', p));
    lim.setAllowList((function* gen() {
      yield 'b';
      yield 'c';
    })());
    deniedByList(lim.checkSync('b', p)); // still denied: deny wins
    allowedByList(lim.checkSync('c', p));
    lim.setDenyList([]);
    allowedByList(lim.checkSync('b', p));
    lim.setAllowList([]);
    assert.equal(lim.checkSync('c', p).source, 'store');
  } finally {
    lim.close();
  }
});

test('the list sources format headers; sources are plain strings', () => {
  const lim = new Limiter({ allow: ['ok'], deny: ['no'] });
  try {
    const p = policy(3, '1m');
    const no = lim.checkSync('no', p);
    const ok = lim.checkSync('ok', p);
    assert.deepEqual(no, {
      allowed: false, limit: 3, remaining: 0, resetAfter: 0, retryAfter: Infinity, source: 'deny_list', policyIndex: 0,
      shadow: false,
    });
    assert.equal(ok.source, 'allow_list');
    const { rateLimitHeaders } = require('..');
    assert.equal(rateLimitHeaders(ok, p)['X-RateLimit-Remaining'], '3');
    assert.equal(typeof rateLimitHeaders(no, p)['Retry-After'], 'string');
  } finally {
    lim.close();
  }
});

const BAD = [
  ['10.0.0.0/33', 'a CIDR prefix length is 0 to 32'],
  ['2001:db8::/129', 'a CIDR prefix length is 0 to 128'],
  ['1.2.3.4/', 'a CIDR prefix length is 0 to 32'],
  ['1.2.3.4/x', 'a CIDR prefix length is 0 to 32'],
  ['10.0.0.300', 'not an IPv4 or IPv6 address or CIDR range (expected e.g. 10.0.0.0/8 or 2001:db8::/32)'],
  ['1.2.3', 'not an IPv4 or IPv6 address or CIDR range (expected e.g. 10.0.0.0/8 or 2001:db8::/32)'],
  ['', 'empty'],
];

test('a bad entry is refused by index, without echo; the list is unchanged', () => {
  for (const [entry, message] of BAD) {
    const lim = new Limiter({ deny: ['abuser'] });
    try {
      const p = policy(1, '1m');
      assert.throws(() => lim.setDenyList(['ok', entry]), (e) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.equal(e.message, 'entries[1]: ' + message);
        assert.equal(e.code, 'RL_E_INVALID_ARG');
        if (entry) assert.ok(!e.message.includes(entry));
        return true;
      });
      deniedByList(lim.checkSync('abuser', p));
      assert.equal(lim.checkSync('ok', p).source, 'store');
    } finally {
      lim.close();
    }
    // At creation: the option's name, then the library's message.
    assert.throws(() => new Limiter({ allow: [entry] }), (e) => e instanceof InvalidArgumentError && e.message === 'allow: entries[0]: ' + message);
    assert.throws(() => new Limiter({ deny: ['a', 'b', entry] }), (e) => e instanceof InvalidArgumentError && e.message.startsWith('deny: entries[2]: '));
  }
});

test('too long keys and too many entries', () => {
  assert.throws(() => new Limiter({ maxKeyLen: 8, deny: ['12345678', '123456789'] }),
    (e) => e instanceof InvalidArgumentError && e.message === 'deny: entries[1]: a key of 9 bytes; keys are at most 8');
  const lim = new Limiter();
  try {
    const many = Array.from({ length: 100001 }, (_, i) => 'k' + i);
    assert.throws(() => lim.setAllowList(many),
      (e) => e instanceof InvalidArgumentError && e.message === 'entries: at most 100000 per list (got 100001)');
    lim.setAllowList(many.slice(0, 100000)); // the most
    allowedByList(lim.checkSync('k99999', policy(1, '1m')));
  } finally {
    lim.close();
  }
});

test('wrong types; a closed limiter refuses lists', async () => {
  const lim = new Limiter();
  for (const bad of ['10.0.0.1', Buffer.from('abuser'), 5, null, undefined, {}])
    assert.throws(() => lim.setDenyList(bad), (e) => e instanceof TypeError && /^entries must be an array of strings/.test(e.message));
  assert.throws(() => lim.setAllowList(['ok', 7]),
    (e) => e instanceof TypeError && e.message === 'entries[1] must be a string, Buffer or Uint8Array, received number');
  await lim.close();
  assert.throws(() => lim.setDenyList(['x']), ConnectionError);
  assert.throws(() => new Limiter({ allow: '10.0.0.1' }), (e) => e instanceof TypeError && /^allow must be an array of strings/.test(e.message));
  assert.throws(() => new Limiter({ deny: [1.5] }), (e) => e instanceof TypeError && /^deny\[0\] must be a string/.test(e.message));
  const ok = new Limiter({ allow: null, deny: undefined });
  assert.equal(ok.checkSync('k', policy(1, '1m')).source, 'store');
  ok.close();
});
