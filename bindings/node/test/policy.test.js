'use strict';
// tollgate's argument checks and texts (lib/index.js) as a caller meets
// them: period strings, Policy's text, plain-object policies, Limiter
// options, check options, rateLimitHeaders' arguments, and loading the addon.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const tollgate = require('..');

const { Limiter, Policy, policy, parsePeriod, rateLimitHeaders, InvalidArgumentError } = tollgate;

const T0 = 1700000000000000; // a fixed clock, microseconds

function throwsWith(fn, Class, message, code) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof Class, `${e && e.constructor && e.constructor.name}: ${e && e.message}`);
    if (message instanceof RegExp) assert.match(e.message, message);
    else assert.equal(e.message, message);
    if (code !== undefined) assert.equal(e.code, code);
    return true;
  });
}

test('period text: the library parses it (rl_period_parse) and names the problem', () => {
  for (const [bad, re] of [['soon', /expected a number and a unit/], ['s', /expected a number and a unit/],
    ['.s', /malformed number/], ['1.2.3s', /malformed number/], ['1s!', /unexpected text after the unit/],
    ['1 s x', /unexpected text after the unit/], ['10', /expected a unit/], ['1 fortnight', /unknown unit 'fortnight'/]])
    throwsWith(() => parsePeriod(bad), InvalidArgumentError, re, 'RL_E_POLICY');
  assert.equal(parsePeriod(' 1.5s '), 1500);
  assert.equal(parsePeriod('.5s'), 500);
  assert.equal(parsePeriod('2 minutes'), 120000);
  assert.equal(parsePeriod('1 hour'), 3600000);
});

test('period text: too long, too many digits, not whole milliseconds', () => {
  throwsWith(() => parsePeriod('99999999999999999d'), InvalidArgumentError,
    /period: exceeds the maximum 2\^40 ms/, 'RL_E_OVERFLOW');
  throwsWith(() => parsePeriod('100000000000000h'), InvalidArgumentError, /exceeds the maximum/, 'RL_E_OVERFLOW');
  assert.equal(parsePeriod('1099511627776ms'), 2 ** 40);
  throwsWith(() => parsePeriod('1099511627777ms'), InvalidArgumentError, /exceeds the maximum/, 'RL_E_OVERFLOW');
  throwsWith(() => parsePeriod('0.1234567890123456s'), InvalidArgumentError, /not a whole number of milliseconds/, 'RL_E_POLICY');
  assert.equal(parsePeriod('1.50000000000000000000s'), 1500);
  throwsWith(() => parsePeriod('1.0001s'), InvalidArgumentError, /not a whole number of milliseconds/, 'RL_E_POLICY');
  throwsWith(() => parsePeriod(1.5), InvalidArgumentError,
    'period: 1.5 is not a whole number of milliseconds', 'RL_E_POLICY');
});

test('Policy.parse: the library\'s one policy syntax', () => {
  const same = (text, p) => assert.deepEqual(Policy.parse(text).toJSON(), p.toJSON());
  same('100/h', policy(100, '1h'));
  same('100 per hour', policy(100, '1h'));
  same('100 per 15m', policy(100, '15m'));
  same('10/1.5s burst=20', policy(10, '1.5s', { algorithm: 'gcra', burst: 20 }));
  same('10/s, burst=20, token_bucket', policy(10, '1s', { algorithm: 'token_bucket', burst: 20 }));
  same('5000/d sliding_window', policy(5000, '1d', { algorithm: 'sliding_window' }));
  same('3/250ms algorithm=fixed_window', policy(3, 250, { algorithm: 'fixed_window' }));
  assert.ok(Policy.parse('1/s') instanceof Policy);
  const lim = new Limiter({ clock: () => T0 });
  try {
    assert.equal(lim.checkSync('k', Policy.parse('2/h')).remaining, 1);
    assert.equal(lim.checkSync('k', policy(2, '1h')).remaining, 0); // the same state
  } finally {
    lim.close();
  }
});

test('Policy.parse: errors name the byte offset of the problem', () => {
  for (const [text, code, offset] of [['100', 'RL_E_POLICY', 3], ['100/3fortnights', 'RL_E_POLICY', 5],
    ['100/h leaky', 'RL_E_POLICY', 6], ['100/h fixed_window burst=5', 'RL_E_POLICY', 19],
    ['0/h', 'RL_E_POLICY', 0], ['2000000000000/h', 'RL_E_OVERFLOW', 0]])
    throwsWith(() => Policy.parse(text), InvalidArgumentError, new RegExp(`at byte ${offset}\\)`), code);
  assert.throws(() => Policy.parse(100), TypeError);
});

test('Policy text names only what differs from the defaults', () => {
  assert.equal(String(policy(10, '1m')), 'Policy(10, 1m)');
  assert.equal(String(policy(1, '2h')), 'Policy(1, 2h)');
  assert.equal(String(policy(1, 86400000)), 'Policy(1, 1d)');
  assert.equal(String(policy(3, 1500)), 'Policy(3, 1500ms)');
  assert.equal(String(policy(3, '2s', { algorithm: 'token_bucket', burst: 5 })), 'Policy(3, 2s, token_bucket, burst=5)');
  assert.equal(String(policy(3, '30s', { algorithm: 'fixed_window' })), 'Policy(3, 30s, fixed_window)');
});

test('a plain-object policy whose algorithm changed is checked with the new one', () => {
  const lim = new Limiter({ clock: () => T0 });
  try {
    const p = { limit: 2, period: '1m' };
    const gcra = lim.checkSync('a', p);
    p.algorithm = 'fixed_window';
    const fixed = lim.checkSync('b', p);
    const expected = lim.checkSync('c', policy(2, '1m', { algorithm: 'fixed_window' }));
    assert.notEqual(gcra.resetAfter, expected.resetAfter); // the two are told apart
    assert.deepEqual(fixed, expected);
  } finally {
    lim.close();
  }
});

test('policies: the count message; check options: the default cost and the message', () => {
  const lim = new Limiter();
  try {
    const p = policy(5, '1h');
    throwsWith(() => lim.checkSync('k', Array(17).fill(p)), InvalidArgumentError,
      'policies: expected 1 to 16 policies, got 17', 'RL_E_INVALID_ARG');
    throwsWith(() => lim.checkSync('k', [], {}), InvalidArgumentError, /got 0/);
    throwsWith(() => lim.checkSync('k', p, 3), TypeError,
      'check options must be an object such as { cost: 1 }, received number');
    // {} and { cost: undefined } charge the default cost of 1.
    assert.equal(lim.checkSync('k', p, {}).remaining, 4);
    assert.equal(lim.checkSync('k', p, { cost: undefined }).remaining, 3);
  } finally {
    lim.close();
  }
});

test('Limiter options: every name is known, wrong types are named, 0 is allowed', () => {
  const strings = ['url', 'keyPrefix', 'username', 'password', 'tlsCaFile', 'tlsCaDir', 'tlsCertFile',
    'tlsKeyFile', 'tlsServerName'];
  for (const name of strings)
    throwsWith(() => new Limiter({ [name]: 42 }), TypeError, `${name} must be a string, received number`);
  const numbers = ['maxKeys', 'maxKeyLen', 'shards', 'connectTimeoutMs', 'timeoutMs', 'localDivisor',
    'denyCacheSize', 'connections', 'reconnectMaxMs'];
  for (const name of numbers) {
    throwsWith(() => new Limiter({ [name]: 1.5 }), InvalidArgumentError,
      `${name}: must be a non-negative integer`, 'RL_E_INVALID_ARG');
    throwsWith(() => new Limiter({ [name]: -1 }), InvalidArgumentError, /non-negative/);
    new Limiter({ [name]: 0 }).close(); // 0: the library's default
  }
  throwsWith(() => new Limiter({ failureMode: 1 }), TypeError,
    "failureMode must be 'open', 'closed', 'local' or 'error', received number");
  throwsWith(() => new Limiter({ clock: 5 }), TypeError,
    'clock must be a function returning integer microseconds since the epoch, received number');
});

test('rateLimitHeaders: its argument checks', () => {
  const lim = new Limiter();
  try {
    const p = policy(5, '1m');
    const d = lim.checkSync('k', p);
    throwsWith(() => rateLimitHeaders(null, p), TypeError, 'decision must be a Decision, received null');
    throwsWith(() => rateLimitHeaders(d, p, 42), TypeError, 'name must be a string, received number');
    throwsWith(() => rateLimitHeaders({ ...d, limit: '5' }, p), TypeError,
      'decision.limit must be a number, received string');
    assert.equal(rateLimitHeaders(d, p, 'api')['RateLimit-Policy'], '"api";q=5;w=60');
  } finally {
    lim.close();
  }
});

test('loading the addon: a missing one says how to build it, a broken one its own error', (t) => {
  // A copy of lib/ (and package.json) with no build/ or prebuilds/ beside
  // it, so only TOLLGATE_NODE_ADDON counts; loaded in this process (a fresh
  // module each time). test/loader.test.js has the other cases.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-load-'));
  const saved = process.env.TOLLGATE_NODE_ADDON;
  t.after(() => {
    if (saved === undefined) delete process.env.TOLLGATE_NODE_ADDON;
    else process.env.TOLLGATE_NODE_ADDON = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  });
  fs.cpSync(path.join(__dirname, '..', 'lib'), path.join(dir, 'lib'), { recursive: true });
  fs.copyFileSync(path.join(__dirname, '..', 'package.json'), path.join(dir, 'package.json'));
  const index = path.join(dir, 'lib', 'index.js');
  const load = (addon) => {
    process.env.TOLLGATE_NODE_ADDON = addon;
    for (const k of Object.keys(require.cache)) if (k.startsWith(dir)) delete require.cache[k];
    try {
      require(index);
    } catch (e) {
      return e;
    }
    return null;
  };
  const missing = load(path.join(dir, 'missing.node'));
  const looked = [path.join(dir, 'missing.node'), path.join(dir, 'build', 'Release', 'tollgate.node'),
    path.join(dir, 'build', 'Debug', 'tollgate.node'), path.join(dir, 'build', 'RelWithDebInfo', 'tollgate.node'),
    path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'tollgate.node')];
  assert.ok(missing instanceof Error);
  assert.ok(missing.message.startsWith(`tollgate: no native addon for ${process.platform}-${process.arch} (looked in ${looked.join(', ')}). `),
    missing.message);
  assert.match(missing.message, /Run `npm rebuild tollgate` in your project/);
  const broken = path.join(dir, 'broken.node');
  fs.writeFileSync(broken, 'not an ELF file');
  const bad = load(broken);
  assert.ok(bad instanceof Error, String(bad));
  assert.equal(bad.code, 'ERR_DLOPEN_FAILED');
  assert.ok(bad.message.startsWith(`tollgate: cannot load the native addon ${broken}: `), bad.message);
  assert.match(bad.message, /file too short/);
  assert.doesNotMatch(bad.message, /no native addon/);
});

test('wrong argument shapes are named: policy options, policy lists, Limiter options, decisions', async () => {
  throwsWith(() => policy(1, '1s', null), TypeError, 'policy options must be an object, received null');
  throwsWith(() => policy(1, '1s', 'gcra'), TypeError, 'policy options must be an object, received string');
  for (const bad of [[], 'x', 5])
    throwsWith(() => new Limiter(bad), TypeError, /^Limiter options must be an object, received /);
  const lim = new Limiter();
  const p = policy(5, '1m');
  throwsWith(() => lim.checkSync('k', [5]), TypeError, 'policies[0] must be a Policy or a policy object, received number');
  throwsWith(() => lim.checkSync('k', [p, 'x']), TypeError, 'policies[1] must be a Policy or a policy object, received string');
  throwsWith(() => rateLimitHeaders(5, p), TypeError, 'decision must be a Decision, received number');
  await lim.close();
  await assert.rejects(lim.keys(p).next(), (e) => e instanceof tollgate.ConnectionError && e.code === 'RL_E_CLOSED' &&
    e.message === 'the limiter is closed');
});

test('more messages: wrong types name what they received; Policy JSON', () => {
  const lim = new Limiter();
  const p = policy(5, '1m');
  try {
    throwsWith(() => lim.checkSync(new Date(0), p), TypeError, 'key must be a string, Buffer or Uint8Array, received an instance of Date');
    throwsWith(() => lim.checkSync(Object.create(null), p), TypeError, 'key must be a string, Buffer or Uint8Array, received an object');
    throwsWith(() => policy(1.5, '1s'), TypeError, 'limit must be an integer, received 1.5');
    throwsWith(() => policy(0, '1s'), InvalidArgumentError, 'limit: must be >= 1 (got 0)', 'RL_E_POLICY');
    throwsWith(() => lim.checkSync('k', p, { cost: '1' }), TypeError, 'cost must be an integer (number), received string');
    throwsWith(() => new Limiter({ denyCache: 1 }), TypeError, 'denyCache must be a boolean, received number');
    throwsWith(() => new Limiter({ spinUs: '1' }), TypeError, 'spinUs must be an integer 0 .. 1000 (number), received string');
    const d = lim.checkSync('k', p);
    throwsWith(() => rateLimitHeaders(d, 5), TypeError, 'policy must be a Policy or a policy object, received number');
    throwsWith(() => rateLimitHeaders({ ...d, source: 'x' }, p), TypeError, 'decision.source must be a Decision source, received string');
  } finally {
    lim.close();
  }
  assert.equal(JSON.stringify(policy(3, '2s', { algorithm: 'token_bucket', burst: 5 })),
    '{"limit":3,"period":2000,"algorithm":"token_bucket","burst":5}');
  assert.equal(JSON.stringify(policy(3, '2s')), '{"limit":3,"period":2000,"algorithm":"gcra"}');
});

test('a period of 0 ms is refused before the library sees it, naming the value', () => {
  assert.throws(() => new tollgate.Policy(5, 0), (e) => {
    assert.ok(e instanceof tollgate.InvalidArgumentError);
    assert.equal(e.code, 'RL_E_POLICY');
    assert.match(e.message, /^period: must be at least 1 ms \(got 0 ms\)$/);
    return true;
  });
});
