'use strict';
// tollgate's error classes as a caller meets them: class by RL_E_* code,
// names, codes, and the properties a caller (or a logger) may set.

const test = require('node:test');
const assert = require('node:assert/strict');

const tollgate = require('..');

const { TollgateError, CODES, makeError } = tollgate;

test('an error\'s name can be overwritten, as on any Error', () => {
  const e = new TollgateError('m');
  assert.equal(e.name, 'TollgateError');
  e.name = 'Renamed'; // strict mode: a read-only inherited name would throw
  assert.equal(e.name, 'Renamed');
  const c = makeError('RL_E_CONNECT', 'down');
  assert.equal(c.name, 'ConnectionError');
  c.name = 'Mine';
  assert.equal(c.name, 'Mine');
});

test('every error class has its own name, on the class and on its errors', () => {
  const names = ['ConnectionError', 'TimeoutError', 'AuthError', 'TLSError', 'ProtocolError',
    'InvalidArgumentError', 'UnsupportedError', 'NothingToRefundError'];
  for (const name of names) {
    const C = tollgate[name];
    assert.equal(C.name, name);
    const e = new C('boom', 'RL_E_INTERNAL');
    assert.equal(e.name, name);
    assert.equal(String(e), `${name}: boom`);
    assert.ok(e instanceof TollgateError);
  }
  assert.equal(makeError('RL_E_TIMEOUT', 't').name, 'TimeoutError');
  assert.equal(makeError(CODES.RL_E_PROTOCOL, 'p').name, 'ProtocolError');
  assert.equal(makeError(CODES.RL_E_STORE, 's').code, 'RL_E_STORE');
  const nf = makeError(-19, 'nothing to give back');
  assert.ok(nf instanceof tollgate.NothingToRefundError);
  assert.equal(nf.name, 'NothingToRefundError');
  assert.equal(nf.code, 'RL_E_NOT_FOUND');
});

test('CODES: the RL_E_* numbers of tollgate.h', () => {
  assert.deepEqual(CODES, {
    RL_E_INVALID_ARG: -1, RL_E_KEY_INVALID: -2, RL_E_KEY_TOO_LONG: -3, RL_E_POLICY: -4, RL_E_OVERFLOW: -5,
    RL_E_VERSION: -6, RL_E_NOMEM: -7, RL_E_URL: -8, RL_E_UNSUPPORTED: -9, RL_E_INTERNAL: -10,
    RL_E_CONNECT: -11, RL_E_TIMEOUT: -12, RL_E_AUTH: -13, RL_E_TLS: -14, RL_E_PROTOCOL: -15,
    RL_E_STORE: -16, RL_E_CLOSED: -17, RL_E_DONE: -18, RL_E_NOT_FOUND: -19,
    RL_E_BUSY: -20,
  });
  for (const [name, n] of Object.entries(CODES)) assert.equal(makeError(n, 'x').code, name);
});

test('CODES matches the codes the C library names (rl_error_name), and RL_MAX_POLICIES', () => {
  const path = require('node:path');
  const addon = require('../lib/native').loadNative(path.join(__dirname, '..'));
  assert.deepEqual({ ...addon.codes }, { ...CODES });
  assert.equal(addon.maxPolicies, 16);
  const limiter = new tollgate.Limiter();
  const p = { limit: 5, period: '1s' };
  assert.throws(() => limiter.checkSync('k', Array(17).fill(p)), { code: 'RL_E_INVALID_ARG', message: /expected 1 to 16 policies, got 17/ });
  limiter.close();
});
