'use strict';
// Shadow mode (docs/algorithms.md and docs/node.md, "Shadow mode"; the C++
// test is tests/test_shadow.cpp, the Python one bindings/python/tests/
// test_shadow.py): a policy with shadow: true ("100/h shadow") is evaluated
// and its state kept as if enforced, but its denial does not deny the
// check: the decision is allowed with shadow true and describes the
// would-be denial. A Limiter({ shadow: true }) answers every denial (a
// policy's, a block's, fail closed's) that way. Turning shadow off keeps
// usage; health().shadowDenied counts the shadowed denials.
//
// Memory store with a pinned clock (exact values) and a real redis-server
// (the server's clock, so bounds).

const test = require('node:test');
const assert = require('node:assert/strict');

const tollgate = require('..');
const { Limiter, Policy, policy, rateLimitHeaders, InvalidArgumentError } = tollgate;
const { noRedis } = require('./redis-server');
const { limiterStores, killedServerUrl } = require('./helpers');

const T0 = 1700000000000000; // us: 20 s into a minute

// Limiters on one store: memory (one pinned clock shared by the limiters it
// makes, each with its own state) or redis (the shared server under a
// prefix of the test's own, so its limiters share state).
const { storeOf } = limiterStores({ now: T0 });

// A 1/m policy's shadowed denial right after its one allowed check: allowed,
// shadow, and the denial's numbers (exact on the pinned clock; the Redis
// server's clock moves a little).
function wouldDenyForAMinute(d, store) {
  assert.equal(d.allowed, true, JSON.stringify(d));
  assert.equal(d.shadow, true, JSON.stringify(d));
  assert.equal(d.limit, 1);
  assert.equal(d.remaining, 0);
  assert.equal(d.source, 'store');
  if (store.kind === 'memory') {
    assert.equal(d.retryAfter, 60000);
  } else {
    // Not charged: a charge would push the wait towards two minutes.
    assert.ok(d.retryAfter > 50000 && d.retryAfter <= 60000, JSON.stringify(d));
  }
  assert.ok(d.resetAfter >= d.retryAfter);
}

for (const kind of ['memory', 'redis']) {
  const skip = kind === 'redis' && noRedis;

  for (const [how, make] of [['Policy.parse("1/m shadow")', () => Policy.parse('1/m shadow')],
    ['new Policy(1, "1m", { shadow: true })', () => new Policy(1, '1m', { shadow: true })],
    ['a plain object', () => ({ limit: 1, period: '1m', shadow: true })]]) {
    test(`${kind}: a shadow policy (${how}) allows, reports and keeps usage`, { skip }, async (t) => {
      const store = await storeOf(t, kind);
      const lim = store.limiter();
      const shadow = make();
      assert.equal(shadow.shadow, true);
      const first = await lim.check('sh', shadow);
      assert.equal(first.allowed, true);
      assert.equal(first.shadow, false);
      assert.equal(first.remaining, 0);
      // The second would be denied: allowed, and says what it would have been.
      for (let i = 0; i < 3; i++) {
        const d = await lim.check('sh', shadow);
        wouldDenyForAMinute(d, store);
        assert.equal(d.policyIndex, 0);
      }
      assert.equal(lim.health().shadowDenied, 3);
      // Turning shadow off keeps usage: the same identity (position 0) is now
      // enforced and denies. The shadow denials charged nothing.
      const d = await lim.check('sh', policy(1, '1m'));
      assert.equal(d.allowed, false);
      assert.equal(d.shadow, false);
      assert.ok(d.retryAfter > 50000 && d.retryAfter <= 60000);
      if (kind === 'memory') assert.equal(d.retryAfter, 60000);
      assert.equal(lim.health().shadowDenied, 3);
      // ... and back on: shadow again.
      assert.equal((await lim.check('sh', shadow)).shadow, true);
      if (kind === 'memory') {
        store.clock.now += 60e6;
        const after = lim.checkSync('sh', shadow);
        assert.equal(after.allowed, true);
        assert.equal(after.shadow, false); // the minute passed
      }
    });
  }

  test(`${kind}: an enforced and a shadow policy`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    const lim = store.limiter();
    const ten = Policy.parse('10/m name=enforced');
    const one = Policy.parse('1/m name=trial shadow');
    assert.deepEqual([one.name, one.shadow, ten.shadow], ['trial', true, false]);
    assert.equal((await lim.check('mixed', [ten, one])).shadow, false);
    // The enforced one is charged every time; the shadow one reports its
    // would-be denial.
    for (let i = 0; i < 2; i++) {
      const d = await lim.check('mixed', [ten, one]);
      wouldDenyForAMinute(d, store);
      assert.equal(d.policyIndex, 1);
      assert.equal((await lim.check('mixed', ten, { cost: 0 })).remaining, 8 - i);
    }
    // The enforced policy's denial is enforced, and charges nothing.
    assert.equal((await lim.check('mixed', ten, { cost: 7 })).remaining, 0);
    const d = await lim.check('mixed', [ten, one]);
    assert.equal(d.allowed, false);
    assert.equal(d.shadow, false);
    assert.equal((await lim.check('mixed', ten, { cost: 0 })).remaining, 0);
    assert.equal(lim.health().shadowDenied, 2);
  });

  test(`${kind}: a shadow policy with a block never blocks`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    const lim = store.limiter();
    const blocking = Policy.parse('1/m block=1h shadow name=b');
    assert.equal(blocking.block, 3600000);
    assert.equal(blocking.shadow, true);
    assert.equal((await lim.check('block', blocking)).shadow, false);
    for (let i = 0; i < 3; i++) assert.equal((await lim.check('block', blocking)).shadow, true);
    const d = await lim.check('block', Policy.parse('100/m name=other'));
    assert.equal(d.allowed, true);
    assert.equal(d.shadow, false);
    assert.equal(d.remaining, 99);
  });

  test(`${kind}: checkKeys, checkWait and checkSync report shadow`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    const lim = store.limiter();
    const perKey = Policy.parse('1/m shadow');
    const ten = policy(10, '1m');
    const pairs = [['ka', perKey], ['kb', [ten]]];
    assert.equal((await lim.checkKeys(pairs)).shadow, false);
    let d = await lim.checkKeys(pairs);
    wouldDenyForAMinute(d, store);
    assert.equal(d.policyIndex, 0);
    assert.equal(d.keyIndex, 0);
    // A shadow denial on one key does not deny the others.
    assert.equal((await lim.check('kb', ten, { cost: 0 })).remaining, 8);
    const started = performance.now();
    d = await lim.checkWait('ka', perKey, { maxWait: '30s' }); // allowed: at once
    assert.ok(performance.now() - started < 5000);
    wouldDenyForAMinute(d, store);
    if (kind === 'memory') wouldDenyForAMinute(lim.checkSync('ka', perKey), store);
    assert.equal(lim.health().shadowDenied, kind === 'memory' ? 3 : 2);
  });

  test(`${kind}: a refund is not shadow`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    const lim = store.limiter();
    const p = Policy.parse('2/m shadow');
    await lim.check('r', p, { cost: 2 });
    assert.equal((await lim.check('r', p)).shadow, true);
    const d = await lim.refund('r', p);
    assert.equal(d.allowed, true);
    assert.equal(d.shadow, false);
    assert.equal(d.remaining, 1);
  });

  test(`${kind}: a shadow limiter allows every denial, a blocked key too`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    const lim = store.limiter({ shadow: true });
    assert.equal(lim.shadow, true);
    const p = policy(1, '1m');
    assert.equal(p.shadow, false);
    assert.equal((await lim.check('lim', p)).shadow, false);
    wouldDenyForAMinute(await lim.check('lim', p), store);
    await lim.block('blocked', 60000);
    const d = await lim.check('blocked', p);
    assert.equal(d.allowed, true);
    assert.equal(d.shadow, true);
    assert.equal(d.remaining, 0);
    assert.ok(d.retryAfter > 0 && d.retryAfter <= 60000);
    assert.equal(lim.health().shadowDenied, 2);
    const enforcing = store.limiter();
    assert.equal(enforcing.shadow, false);
    if (kind === 'redis') {
      // The same keys through an enforcing limiter: usage was kept, and the
      // block is real.
      assert.equal((await enforcing.check('lim', p)).allowed, false);
      assert.equal((await enforcing.check('blocked', policy(100, '1h'))).allowed, false);
    }
    assert.equal(enforcing.health().shadowDenied, 0);
  });

  test(`${kind}: the shadow option's values; a shadow limiter's checkKeys`, { skip }, async (t) => {
    const store = await storeOf(t, kind);
    for (const [value, on] of [[true, true], [false, false], [undefined, false], [null, false]])
      assert.equal(store.limiter({ shadow: value }).shadow, on);
    const lim = store.limiter({ shadow: true });
    const many = policy(1, '1m', { name: 'strict' });
    assert.equal((await lim.checkKeys([['x', many], ['y', many]])).shadow, false);
    wouldDenyForAMinute(await lim.checkKeys([['x', many], ['y', many]]), store);
    wouldDenyForAMinute(await lim.check('x', many), store);
  });
}

test('redis: a shadow limiter with Redis killed and failureMode closed', { skip: noRedis }, async (t) => {
  const url = await killedServerUrl(t);
  const options = { url, failureMode: 'closed', timeoutMs: 300, connectTimeoutMs: 200, denyCache: false };
  const enforcing = new Limiter(options);
  try {
    const d = await enforcing.check('k', policy(10, '1s'));
    assert.equal(d.allowed, false);
    assert.equal(d.shadow, false);
    assert.equal(d.source, 'fail_closed');
  } finally {
    await enforcing.close();
  }
  const lim = new Limiter({ ...options, shadow: true });
  try {
    let d = await lim.check('k', policy(10, '1s'));
    assert.equal(d.allowed, true);
    assert.equal(d.shadow, true);
    assert.equal(d.source, 'fail_closed');
    assert.equal(d.retryAfter, 1000);
    d = await lim.checkKeys([['k', policy(10, '1s')], ['j', policy(5, '1s')]]);
    assert.equal(d.allowed, true);
    assert.equal(d.shadow, true);
    assert.equal(d.source, 'fail_closed');
    const h = lim.health();
    assert.equal(h.shadowDenied, 2);
    assert.ok(h.failClosed >= 2);
  } finally {
    await lim.close();
  }
});

test('Policy shadow: the attribute, toString, toJSON, plain objects', () => {
  const p = Policy.parse('100/h shadow');
  const q = new Policy(100, '1h', { shadow: true });
  const plain = policy(100, '1h');
  assert.equal(p.shadow, true);
  assert.equal(q.shadow, true);
  assert.equal(plain.shadow, false);
  assert.equal(Policy.parse('100/h').shadow, false);
  assert.equal(String(p), 'Policy(100, 1h, shadow)');
  assert.equal(String(plain), 'Policy(100, 1h)');
  assert.deepEqual(p.toJSON(), { limit: 100, period: 3600000, algorithm: 'gcra', shadow: true });
  assert.deepEqual(plain.toJSON(), { limit: 100, period: 3600000, algorithm: 'gcra' });
  const full = Policy.parse('5/m name=login block=15m strikes=3/h sliding_window shadow');
  assert.equal(full.shadow, true);
  assert.equal(full.algorithm, 'sliding_window');
  assert.equal(full.strikes, 3);
  assert.ok(Object.isFrozen(p));
  // A plain object's shadow is re-read on each use (compiled again when it changes).
  const lim = new Limiter({ clock: () => T0 });
  try {
    const obj = { limit: 1, period: '1m' };
    assert.equal(lim.checkSync('o', obj).allowed, true);
    assert.equal(lim.checkSync('o', obj).allowed, false);
    obj.shadow = true;
    const d = lim.checkSync('o', obj);
    assert.equal(d.allowed, true);
    assert.equal(d.shadow, true);
    obj.shadow = false;
    assert.equal(lim.checkSync('o', obj).allowed, false);
  } finally {
    lim.close();
  }
});

test('a decision carries shadow: false on the ordinary paths', async () => {
  const lim = new Limiter({ clock: () => T0 });
  try {
    const p = policy(1, '1m');
    assert.deepEqual(lim.checkSync('k', p), {
      allowed: true, limit: 1, remaining: 0, resetAfter: 60000, retryAfter: 0, source: 'store', policyIndex: 0,
      shadow: false,
    });
    const d = await lim.check('k', p);
    assert.equal(d.allowed, false);
    assert.equal(d.shadow, false);
  } finally {
    await lim.close();
  }
});

test('rateLimitHeaders of a shadow decision: no Retry-After, the would-be denial (as Python)', () => {
  const lim = new Limiter({ clock: () => T0 });
  try {
    const p = new Policy(1, '1m', { shadow: true });
    lim.checkSync('h', p);
    const d = lim.checkSync('h', p);
    assert.equal(d.shadow, true);
    assert.equal(d.retryAfter, 60000);
    assert.deepEqual(rateLimitHeaders(d, p, 'trial'), {
      'RateLimit-Policy': '"trial";q=1;w=60',
      'RateLimit': '"trial";r=0;t=60',
      'X-RateLimit-Limit': '1',
      'X-RateLimit-Remaining': '0',
      'X-RateLimit-Reset': '60',
    });
  } finally {
    lim.close();
  }
});

test('bad shadow texts and values', () => {
  for (const [text, offset] of [['10/s shadow shadow', 12], ['10/s shadow=1', null], ['10/s shadows', null], ['shadow', null]]) {
    assert.throws(() => Policy.parse(text), (e) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.equal(e.code, 'RL_E_POLICY');
      if (offset !== null) {
        assert.match(e.message, /shadow given twice/);
        assert.ok(e.message.includes(`(at byte ${offset})`), e.message);
      }
      return true;
    });
  }
  for (const value of [1, 0, 'yes', 1.0, {}]) {
    assert.throws(() => new Policy(10, '1s', { shadow: value }), (e) => e instanceof TypeError && /^shadow must be a boolean, received /.test(e.message));
    assert.throws(() => new Limiter({ shadow: value }), (e) => e instanceof TypeError && /^shadow must be a boolean, received /.test(e.message));
  }
});

test('health().shadowDenied on a fresh limiter', () => {
  const lim = new Limiter();
  try {
    assert.equal(lim.health().shadowDenied, 0);
    assert.equal(lim.shadow, false);
  } finally {
    lim.close();
  }
});
