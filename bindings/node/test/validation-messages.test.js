'use strict';
// Messages of refused arguments that other suites only check by class: the
// message must name what was wrong (checkKeys' policy total, an unknown
// failure mode, acquire()'s options).

const test = require('node:test');
const assert = require('node:assert/strict');
const { Limiter, Policy, InvalidArgumentError } = require('..');

test('checkKeys: more than 16 policies in all the pairs names the total', async () => {
  const lim = new Limiter();
  try {
    const nine = Array.from({ length: 9 }, (_, i) => new Policy(i + 1, '1s'));
    const eight = Array.from({ length: 8 }, (_, i) => new Policy(i + 100, '1s'));
    await assert.rejects(
      async () => lim.checkKeys([['a', nine], ['b', eight]]),
      (e) => e instanceof InvalidArgumentError && /policies: at most 16 in all the pairs, got 17/.test(e.message),
    );
  } finally {
    await lim.close();
  }
});

test('an unknown failureMode is named in the message', () => {
  assert.throws(
    () => new Limiter({ failureMode: 'bogus' }),
    (e) => e instanceof InvalidArgumentError && /failureMode: unknown 'bogus'/.test(e.message),
  );
});

test('acquire() with options that are not an object says what it expects', async () => {
  const lim = new Limiter();
  try {
    for (const bad of [null, 5, 'x']) {
      await assert.rejects(
        async () => lim.acquire('k', bad),
        (e) => e instanceof TypeError && /lease options/.test(e.message),
      );
    }
  } finally {
    await lim.close();
  }
});
