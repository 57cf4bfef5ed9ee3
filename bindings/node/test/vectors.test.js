'use strict';
// The shared vectors (tests/vectors/*.json at the repository root, format 3:
// tests/vectors/README.md, "Format") replayed through the Node API (check,
// checkSync, checkKeys, block, unblock, reset; acquire, renew and release of
// leases; setAllowList and setDenyList) with a clock the test controls: on
// the memory store always, on Redis when the addon was built with
// -DTOLLGATE_TESTING=ON (a release build refuses a clock for Redis, so the
// time cannot be pinned):
//
//   npx cmake-js rebuild --CDTOLLGATE_TESTING=ON

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const tollgate = require('..');
const { Limiter, Policy, Lease, TollgateError, LeaseLostError, _testing } = tollgate;
const { RedisServer, REDIS_SERVER } = require('./redis-server');
const { VECTORS_DIR, prefix } = require('./helpers');

// These files must be there; any other *.json next to them is replayed too.
const REQUIRED = [
  'gcra.json',
  'token_bucket.json',
  'fixed_window.json',
  'sliding_window.json',
  'multi_policy.json',
  'refund.json',
  'carry_over.json',
  'block.json',
  'multi_key.json',
  'shadow.json',
  'leases.json',
  'lists.json',
];
const FILES = !VECTORS_DIR
  ? REQUIRED
  : REQUIRED.concat(
    fs.readdirSync(VECTORS_DIR).filter((f) => f.endsWith('.json') && !REQUIRED.includes(f)).sort(),
  );

function load(name) {
  const doc = JSON.parse(fs.readFileSync(path.join(VECTORS_DIR, name), 'utf8'));
  // Format 3: an older replayer would skip the lease and list steps and
  // replay the wrong checks, so any other format is refused.
  assert.equal(doc.format, 3, `${name}: vector format ${doc.format}, this replayer reads format 3`);
  return doc;
}

function cases() {
  if (!VECTORS_DIR) return [];
  const out = [];
  for (const file of FILES) for (const c of load(file).cases) out.push({ file, c });
  return out;
}

// A period in ms, alternately as text and as a number (both forms are read).
// Zero and negative values stay numbers (the text has neither).
const periodArg = (ms) => (ms > 0 && ms % 1000 === 0 ? `${ms / 1000}s` : ms);

// What a step that expects an error must reject (or throw) with.
const failsWith = (code) => (e) => e instanceof TollgateError && e.code === code;

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

// An acquire, renew, release or set_list step (tests/test_vectors.cpp,
// replay_lease_or_list). `leases` maps the case's labels to the leases they
// name; a label binds only when its acquire acquired. Renewals and releases
// go alternately through the lease and through the limiter, list entries
// alternately as strings and as their UTF-8 bytes.
async function replayLeaseOrList(step, i, key, op, limiter, leases, where) {
  if (op === 'set_list') {
    assert.ok(step.list === 'allow' || step.list === 'deny', where);
    assert.ok(Array.isArray(step.entries), where);
    const entries = i % 2 ? step.entries.map((e) => Buffer.from(e, 'utf8')) : step.entries;
    const set = () => (step.list === 'allow' ? limiter.setAllowList(entries) : limiter.setDenyList(entries));
    if ('expect_error' in step) assert.throws(set, failsWith(step.expect_error), where);
    else set();
    return;
  }
  const label = step.lease;
  assert.equal(typeof label, 'string', where);
  if (op === 'acquire') {
    const options = { maxInFlight: step.max_in_flight, ttl: periodArg(step.ttl_ms) };
    if ('expect_error' in step) {
      await assert.rejects(async () => limiter.acquire(key, options), failsWith(step.expect_error), where);
      return;
    }
    const r = await limiter.acquire(key, options);
    const e = step.expect;
    assert.deepEqual(
      {
        acquired: r.acquired,
        in_flight: r.inFlight,
        max_in_flight: r.maxInFlight,
        retry_after_ms: r.retryAfter === Infinity ? -1 : r.retryAfter,
        source: r.source,
      },
      {
        acquired: e.acquired,
        in_flight: e.in_flight,
        max_in_flight: e.max_in_flight,
        retry_after_ms: e.retry_after_ms,
        source: e.source ?? 'store',
      },
      where,
    );
    if (!r.acquired) {
      assert.equal(r.lease, null, where); // a denied acquire binds no label
      return;
    }
    assert.ok(r.lease instanceof Lease, where);
    assert.equal(r.lease.limiter, limiter, where);
    assert.equal(r.lease.key, key, where);
    assert.equal(r.lease.source, r.source, where);
    assert.equal(r.lease.ttl, step.ttl_ms, where);
    assert.equal(r.lease.released, false, where);
    assert.ok(!leases.has(label), `${where}: the label names a lease already`);
    leases.set(label, r.lease);
    return;
  }
  assert.ok(leases.has(label), `${where}: no lease was acquired under this label`);
  const lease = leases.get(label);
  if (op === 'renew') {
    assert.equal(typeof step.ttl_ms, 'number', where);
    const ttl = periodArg(step.ttl_ms);
    const renew = () => (i % 2 ? lease.renew(ttl) : limiter.renew(lease, ttl));
    if ('expect_error' in step) {
      const ttlBefore = lease.ttl;
      await assert.rejects(
        async () => renew(),
        (e) => failsWith(step.expect_error)(e) && (e.code !== 'RL_E_NOT_FOUND' || e instanceof LeaseLostError),
        where,
      );
      assert.equal(lease.ttl, ttlBefore, where);
    } else {
      await renew();
      assert.equal(lease.ttl, step.ttl_ms, where);
    }
    return;
  }
  assert.equal(op, 'release', where);
  assert.ok(!('expect_error' in step), where); // a release succeeds
  const wasHeld = await (i % 2 ? lease.release() : limiter.release(lease));
  assert.equal(wasHeld, step.expect.was_held, where);
  assert.equal(lease.released, true, where);
}

async function replay(file, c, limiter, clock, { sync }) {
  // The case's policies; a step's "policies" replaces them from that step on.
  let policies = makePolicies(c.policies);
  // The case's leases by label.
  const leases = new Map();
  // Where a step failed: an assertion names it; any other error is given
  // its name here.
  let where = `${file}, case ${JSON.stringify(c.name)}`;
  try {
    for (const [i, step] of c.steps.entries()) {
      where = `${file}, case ${JSON.stringify(c.name)}, step ${i}: ${JSON.stringify(step)}`;
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
      if (op === 'acquire' || op === 'renew' || op === 'release' || op === 'set_list') {
        await replayLeaseOrList(step, i, key, op, limiter, leases, where);
        continue;
      }
      if (op === 'block') {
        assert.equal(typeof step.duration_ms, 'number', where);
        if ('expect_error' in step) {
          await assert.rejects(
            limiter.block(key, step.duration_ms),
            failsWith(step.expect_error),
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
          failsWith(step.expect_error),
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
          source: d.source,
        },
        {
          allowed: e.allowed,
          limit: e.limit,
          remaining: e.remaining,
          reset_after_ms: e.reset_after_ms,
          retry_after_ms: e.retry_after_ms,
          policy_index: e.policy_index,
          shadow: e.shadow === true,
          // "store" when absent; "allow_list" and "deny_list" decide before
          // any store call.
          source: e.source ?? 'store',
        },
        where,
      );
      if (op === 'check_keys') {
        // keyIndex: the pair whose policy policyIndex (flattened) names.
        let first = 0;
        let j = 0;
        while (e.policy_index >= first + step.pairs[j].policies.length) first += step.pairs[j++].policies.length;
        assert.equal(d.keyIndex, j, where);
      }
    }
  } catch (err) {
    if (!(err instanceof assert.AssertionError) && err instanceof Error) err.message = `${where}: ${err.message}`;
    throw err;
  }
}

test('vectors: every file has cases', { skip: !VECTORS_DIR && 'tests/vectors not found' }, () => {
  for (const f of REQUIRED) assert.ok(FILES.includes(f), f);
  for (const f of FILES) {
    const names = load(f).cases.map((c) => c.name);
    assert.ok(names.length > 0, f);
    assert.equal(new Set(names).size, names.length, `${f}: a case name twice`);
  }
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
