'use strict';
// The shared vectors (tests/vectors/*.json at the repository root) replayed
// through the Node API (check, checkSync, checkKeys, block, unblock, reset)
// with a clock the test controls: on the memory store always, on Redis when
// the addon was built with -DTOLLGATE_TESTING=ON (a release build refuses a
// clock for Redis, so the time cannot be pinned):
//
//   npx cmake-js rebuild --CDTOLLGATE_TESTING=ON

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const tollgate = require('..');
const { Limiter, Policy, TollgateError, _testing } = tollgate;
const { RedisServer, REDIS_SERVER } = require('./redis-server');
const { VECTORS_DIR, prefix } = require('./helpers');

// These files must be there; any other *.json next to them (block.json,
// ...) is replayed too.
const REQUIRED = [
  'gcra.json',
  'token_bucket.json',
  'fixed_window.json',
  'sliding_window.json',
  'multi_policy.json',
  'refund.json',
  'carry_over.json',
  'multi_key.json',
];
const FILES = !VECTORS_DIR
  ? REQUIRED
  : REQUIRED.concat(
    fs.readdirSync(VECTORS_DIR).filter((f) => f.endsWith('.json') && !REQUIRED.includes(f)).sort(),
  );

function load(name) {
  const doc = JSON.parse(fs.readFileSync(path.join(VECTORS_DIR, name), 'utf8'));
  assert.equal(doc.format, 2);
  return doc;
}

function cases() {
  if (!VECTORS_DIR) return [];
  const out = [];
  for (const file of FILES) for (const c of load(file).cases) out.push({ file, c });
  return out;
}

// A period in ms, alternately as text and as a number (both forms are read).
const periodArg = (ms) => (ms % 1000 === 0 ? `${ms / 1000}s` : ms);

function makePolicies(raw) {
  // A policy's optional block: "block_ms", with "strikes" and
  // "strikes_period_ms" (absent or 0: none).
  const policies = raw.map(
    (p) =>
      new Policy(p.limit, periodArg(p.period_ms), {
        algorithm: p.algorithm,
        burst: p.burst || undefined,
        name: p.name,
        block: p.block_ms ? periodArg(p.block_ms) : undefined,
        strikes: p.strikes || undefined,
        strikesPeriod: p.strikes_period_ms || undefined,
        shadow: p.shadow === true,
      }),
  );
  policies.forEach((p, i) => {
    assert.equal(p.period, raw[i].period_ms);
    assert.equal(p.name, raw[i].name);
    assert.equal(p.block, raw[i].block_ms || undefined);
    assert.equal(p.strikes, raw[i].strikes || undefined);
    assert.equal(p.strikesPeriod, raw[i].strikes_period_ms || undefined);
    assert.equal(p.shadow, raw[i].shadow === true);
  });
  return policies;
}

async function replay(file, c, limiter, clock, { sync }) {
  // The case's policies; a step's "policies" replaces them from that step on.
  let policies = makePolicies(c.policies);
  for (const [i, step] of c.steps.entries()) {
    const where = `${file}, case ${JSON.stringify(c.name)}, step ${i}: ${JSON.stringify(step)}`;
    if (step.policies) policies = makePolicies(step.policies);
    assert.ok(('t_ms' in step) !== ('t_us' in step), where);
    clock.nowUs = 't_ms' in step ? step.t_ms * 1000 : step.t_us;
    const key = step.key ?? c.key;
    const op = step.op ?? 'check';
    // reset and unblock must succeed; block must too, unless the step
    // expects an error.
    if (op === 'reset' || op === 'unblock') {
      assert.ok(!('expect_error' in step), where);
      await limiter[op](key);
      continue;
    }
    if (op === 'block') {
      assert.equal(typeof step.duration_ms, 'number', where);
      if ('expect_error' in step) {
        await assert.rejects(
          limiter.block(key, step.duration_ms),
          (e) => e instanceof TollgateError && e.code === step.expect_error,
          where,
        );
      } else {
        await limiter.block(key, step.duration_ms);
      }
      continue;
    }
    assert.ok(op === 'check' || op === 'check_keys', where);
    let run;
    if (op === 'check_keys') {
      // Several keys in one decision: pairs in both forms the API takes
      // ({ key, policies } and [key, policies]), alternately.
      assert.ok(Array.isArray(step.pairs) && step.pairs.length > 0, where);
      const pairs = step.pairs.map((p, j) => {
        const ps = makePolicies(p.policies);
        return (i + j) % 2 ? [p.key, ps] : { key: p.key, policies: ps };
      });
      run = () => limiter.checkKeys(pairs, { cost: step.cost });
    } else {
      run = () =>
        sync ? limiter.checkSync(key, policies, { cost: step.cost }) : limiter.check(key, policies, { cost: step.cost });
    }
    if ('expect_error' in step) {
      await assert.rejects(
        async () => run(),
        (e) => e instanceof TollgateError && e.code === step.expect_error,
        where,
      );
      continue;
    }
    const d = await run();
    const e = step.expect;
    assert.deepEqual(
      {
        allowed: d.allowed,
        limit: d.limit,
        remaining: d.remaining,
        reset_after_ms: d.resetAfter,
        retry_after_ms: d.retryAfter === Infinity ? -1 : d.retryAfter,
        policy_index: d.policyIndex,
        shadow: d.shadow,
      },
      {
        allowed: e.allowed,
        limit: e.limit,
        remaining: e.remaining,
        reset_after_ms: e.reset_after_ms,
        retry_after_ms: e.retry_after_ms,
        policy_index: e.policy_index,
        shadow: e.shadow === true,
      },
      where,
    );
    assert.equal(d.source, 'store', where);
    if (op === 'check_keys') {
      // keyIndex: the pair whose policy policyIndex (flattened) names.
      let first = 0;
      let j = 0;
      while (e.policy_index >= first + step.pairs[j].policies.length) first += step.pairs[j++].policies.length;
      assert.equal(d.keyIndex, j, where);
    }
  }
}

test('vectors: every file has cases', { skip: !VECTORS_DIR && 'tests/vectors not found' }, () => {
  for (const f of REQUIRED) assert.ok(FILES.includes(f), f);
  for (const f of FILES) assert.ok(load(f).cases.length > 0, f);
});

test('vectors on the memory store (checkSync and check)', { skip: !VECTORS_DIR && 'tests/vectors not found' }, async (t) => {
  for (const { file, c } of cases()) {
    for (const sync of [true, false]) {
      await t.test(`${file}: ${c.name} (${sync ? 'checkSync' : 'check'})`, async () => {
        const clock = { nowUs: 0 };
        const lim = new Limiter({ clock: () => clock.nowUs });
        try {
          await replay(file, c, lim, clock, { sync });
        } finally {
          await lim.close();
        }
      });
    }
  }
});

test('vectors on Redis', {
  skip: !VECTORS_DIR ? 'tests/vectors not found'
    : !REDIS_SERVER ? 'redis-server is not installed'
    : !_testing ? 'this addon takes no clock for Redis: build it with -DTOLLGATE_TESTING=ON (npx cmake-js rebuild --CDTOLLGATE_TESTING=ON)'
    : false,
}, async (t) => {
  const server = await RedisServer.start();
  try {
    for (const { file, c } of cases()) {
      await t.test(`${file}: ${c.name}`, async () => {
        const clock = { nowUs: 0 };
        const lim = new Limiter({
          url: server.url,
          clock: () => clock.nowUs,
          keyPrefix: prefix(),
          denyCache: false,
          failureMode: 'error',
          timeoutMs: 2000,
        });
        try {
          await replay(file, c, lim, clock, { sync: false });
        } finally {
          await lim.close();
        }
      });
    }
  } finally {
    await server.stop();
  }
});
