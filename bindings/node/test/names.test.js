'use strict';
// Policy names and identity: a key's state is kept under its policy's
// identity (the name, or the position of an unnamed policy in the check's
// list), so a changed limit keeps what was used; keys(policies) lists the
// states of the policies it is given, each with its policy and index.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Limiter, Policy, policy, InvalidArgumentError } = require('..');
const { RedisServer, REDIS_SERVER } = require('./redis-server');
const { prefix } = require('./helpers');

const skip = !REDIS_SERVER && 'redis-server is not installed';
const T0 = 1_700_000_000_000_000; // a fixed clock reading, us
const clock = () => T0;

test('names: valid names, parse, toString and toJSON', () => {
  for (const name of ['daily', 'a', 'A.b-c_9', 'x'.repeat(32)]) {
    const p = new Policy(100, '1h', { name });
    assert.equal(p.name, name);
    assert.equal(String(p), `Policy(100, 1h, name=${name})`);
    assert.deepEqual(p.toJSON(), { limit: 100, period: 3600000, algorithm: 'gcra', name });
  }
  assert.equal(policy(1, '1s').name, undefined);
  assert.equal(policy(1, '1s', { name: null }).name, undefined);
  assert.deepEqual(policy(1, '1s').toJSON(), { limit: 1, period: 1000, algorithm: 'gcra' });
  const p = Policy.parse('100/h name=daily');
  assert.deepEqual([p.limit, p.period, p.name], [100, 3600000, 'daily']);
  const q = Policy.parse('10/s burst=20 token_bucket name=api.v2');
  assert.deepEqual([q.algorithm, q.burst, q.name], ['token_bucket', 20, 'api.v2']);
  assert.equal(Policy.parse('100/h').name, undefined);
});

test('names: invalid names throw a clear InvalidArgumentError', () => {
  const cases = [
    ['9lives', /starts with a letter/], ['-x', /starts with a letter/], ['a b', /letters, digits/],
    ['café', /letters, digits/], ['x'.repeat(33), /at most 32/], ['', /must not be empty/],
  ];
  for (const [name, message] of cases)
    assert.throws(() => new Policy(1, '1s', { name }),
      (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_POLICY' && message.test(e.message), name);
  assert.throws(() => new Policy(1, '1s', { name: 5 }), (e) => e instanceof TypeError && /name must be a string/.test(e.message));
  assert.throws(() => Policy.parse('100/h name=9x'), (e) => e.code === 'RL_E_POLICY' && /at byte/.test(e.message));
  assert.throws(() => Policy.parse('100/h name=a name=b'), (e) => e.code === 'RL_E_POLICY');
  // plain-object policies take the name too, and are checked alike
  const lim = new Limiter({ clock });
  assert.throws(() => lim.checkSync('k', { limit: 1, period: 1000, name: '9' }), (e) => e.code === 'RL_E_POLICY');
});

test('names: duplicate names in one check are refused, nothing charged', () => {
  const lim = new Limiter({ clock });
  const a = policy(10, '1s', { name: 'api' });
  const b = policy(100, '1h', { name: 'api' });
  assert.throws(() => lim.checkSync('k', [a, b]),
    (e) => e instanceof InvalidArgumentError && e.code === 'RL_E_POLICY' && /'api'/.test(e.message));
  assert.throws(() => lim.checkSync('k', [{ limit: 1, period: 1000, name: 'x' }, { limit: 2, period: 1000, name: 'x' }]),
    (e) => e.code === 'RL_E_POLICY');
  assert.equal(lim.checkSync('k', a, { cost: 0 }).remaining, 10);
  assert.equal(lim.checkSync('k', [a, policy(100, '1h', { name: 'hourly' })]).allowed, true);
  assert.equal(lim.checkSync('k', [a, policy(100, '1h')]).allowed, true);
});

test('identity: a changed limit keeps what was used (memory)', () => {
  const lim = new Limiter({ clock });
  const expected = { gcra: 400, token_bucket: 400, fixed_window: 940, sliding_window: 940 };
  for (const algorithm of Object.keys(expected)) {
    // unnamed: the identity is the position (0)
    const small = policy(100, '1h', { algorithm });
    const big = policy(1000, '1h', { algorithm });
    for (let i = 0; i < 60; i++) assert.equal(lim.checkSync('pos-' + algorithm, small).allowed, true);
    assert.equal(lim.checkSync('pos-' + algorithm, big, { cost: 0 }).remaining, expected[algorithm], algorithm);
    // named: the identity is the name, wherever the policy stands
    const smallN = policy(100, '1h', { algorithm, name: 'hourly' });
    const bigN = { limit: 1000, period: '1h', algorithm, name: 'hourly' };
    const other = policy(5, '1s', { name: 'burst' });
    for (let i = 0; i < 60; i++) lim.checkSync('named-' + algorithm, smallN);
    const d = lim.checkSync('named-' + algorithm, [other, bigN], { cost: 0 });
    assert.equal(d.remaining, 5); // the tightest
    assert.equal(lim.checkSync('named-' + algorithm, [bigN], { cost: 0 }).remaining, expected[algorithm], algorithm);
  }
});

test('identity: unnamed policies are known by their position', () => {
  const lim = new Limiter({ clock });
  const big = policy(100, '1h', { algorithm: 'fixed_window' });
  const small = policy(10, '1h', { algorithm: 'fixed_window' });
  for (let i = 0; i < 3; i++) lim.checkSync('k', [big, small]);
  lim.checkSync('k', big); // position 0 only
  const d = lim.checkSync('k', [small, big], { cost: 0 });
  assert.deepEqual([d.policyIndex, d.remaining], [0, 6]);
  const b = policy(100, '1h', { algorithm: 'fixed_window', name: 'b' });
  const s = policy(10, '1h', { algorithm: 'fixed_window', name: 's' });
  for (let i = 0; i < 3; i++) lim.checkSync('n', [b, s]);
  lim.checkSync('n', b);
  assert.equal(lim.checkSync('n', [s, b], { cost: 0 }).remaining, 7);
  assert.equal(lim.checkSync('n', b, { cost: 0 }).remaining, 96);
});

test('keys(): argument errors', async () => {
  const lim = new Limiter();
  await assert.rejects(lim.keys().next(), (e) => e instanceof TypeError && /keys\(policies\)/.test(e.message));
  await assert.rejects(lim.keys('1/s').next(), TypeError);
  await assert.rejects(lim.keys([]).next(), (e) => e.code === 'RL_E_INVALID_ARG');
  await assert.rejects(lim.keys(Array(17).fill(policy(1, '1s'))).next(), (e) => e.code === 'RL_E_INVALID_ARG');
  await assert.rejects(lim.keys(policy(1, '1s')).next(), (e) => e.code === 'RL_E_UNSUPPORTED');
  await lim.close();
});

test('Redis: a changed limit keeps usage; keys(policies) lists the given identities', { skip }, async (t) => {
  const server = await RedisServer.start();
  t.after(() => server.stop());
  const lim = new Limiter({ url: server.url, keyPrefix: prefix(), failureMode: 'error', denyCache: false });
  t.after(() => lim.close());

  // a raised limit keeps the used share (GCRA) and the count (windows of a
  // day: no boundary falls within the test unless it starts at midnight)
  const small = policy(100, '1d', { algorithm: 'fixed_window' });
  const big = policy(1000, '1d', { algorithm: 'fixed_window' });
  for (let i = 0; i < 60; i++) assert.equal((await lim.check('pos', small)).allowed, true);
  assert.ok([940, 1000].includes((await lim.check('pos', big, { cost: 0 })).remaining));
  const dailySmall = policy(100, '1d', { name: 'daily' });
  const dailyBig = policy(1000, '1d', { name: 'daily' });
  const hourly = policy(1000, '1h', { name: 'hourly' });
  for (let i = 0; i < 60; i++) await lim.check('named', dailySmall);
  const d = await lim.check('named', [hourly, dailyBig], { cost: 0 });
  assert.equal(d.policyIndex, 1);
  assert.ok(d.remaining >= 399 && d.remaining <= 400, String(d.remaining));
  await assert.rejects(lim.check('named', [dailySmall, dailyBig]), (e) => e.code === 'RL_E_POLICY');

  // keys(): states of the given identities only, each with its policy
  const daily = policy(100, '1d', { name: 'daily' });
  const burst = policy(5, '1h'); // unnamed: position 1 below
  await lim.check('a', [daily, burst]);
  const listed = [];
  for await (const s of lim.keys([daily, burst])) listed.push(s);
  listed.sort((x, y) => (x.key + x.policyIndex).localeCompare(y.key + y.policyIndex));
  assert.deepEqual(listed.map((s) => [s.key, s.policyIndex]), [['a', 0], ['a', 1], ['named', 0]]);
  assert.equal(listed[0].policy, daily);
  assert.equal(listed[0].policy.name, 'daily');
  assert.equal(listed[1].policy, burst);
  assert.equal(listed[1].policy.name, undefined);
  assert.deepEqual([listed[0].remaining, listed[1].remaining], [99, 4]);
  assert.ok(listed[2].remaining >= 39 && listed[2].remaining <= 40); // 60 of 100/d used
  // a plain object is listed as its compiled Policy; one policy is a list of one
  const seen = [];
  for await (const s of lim.keys({ limit: 3, period: '1h', name: 'hourly' })) seen.push(s);
  assert.deepEqual(seen.map((s) => [s.key, s.policy.name, s.policyIndex]), []);
  const positional = [];
  for await (const s of lim.keys(small)) positional.push(s.key);
  assert.deepEqual(positional, ['pos']); // position 0 unnamed: only 'pos'
});
