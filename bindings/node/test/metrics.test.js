'use strict';
// Metrics (docs/metrics.md; the C++ test is tests/test_metrics.cpp):
// limiter.metrics() after known traffic on the memory store and on a real
// redis-server, then the same figures through tollgate/prometheus (a real
// prom-client Registry's text: every family's HELP, TYPE and samples, names,
// labels and values exact) and tollgate/opentelemetry (an OpenTelemetry SDK
// MeterProvider with an in-memory reader); { metrics: false }; closed
// limiters; bad input; the subpath exports, which load no prom-client or
// OpenTelemetry package of their own.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const client = require('prom-client');
const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics');

const tollgate = require('..');
const { Limiter, Policy, policy } = tollgate;
const prometheus = require('../lib/prometheus');
const opentelemetry = require('../lib/opentelemetry');
const { SERIES } = require('../lib/metrics');
const { noRedis } = require('./redis-server');
const { limiterStores, PACKAGE_ROOT, REPO_ROOT } = require('./helpers');

const T0 = 1_700_000_000_000_000; // us: a pinned clock for the memory store

const { storeOf } = limiterStores({ now: T0, redis: { denyCache: false } });

// ---- reading what the exporters expose ----------------------------------------

// A registry's text (Prometheus format) -> Map(family -> { help, type,
// samples (sorted lines) }). Families are blocks "# HELP", "# TYPE", then
// their sample lines; every sample line must belong to its block's family.
function parseExposition(text) {
  assert.ok(text.endsWith('\n'), text);
  const families = new Map();
  for (const block of text.trimEnd().split('\n\n')) {
    const lines = block.split('\n');
    const help = /^# HELP (\S+) (.*)$/.exec(lines[0]);
    const type = /^# TYPE (\S+) (\S+)$/.exec(lines[1]);
    assert.ok(help && type && help[1] === type[1], block);
    const name = help[1];
    const samples = lines.slice(2);
    for (const s of samples) {
      const sampleName = /^([a-z_]+)[{ ]/.exec(s)[1];
      const ok = type[2] === 'histogram'
        ? [`${name}_bucket`, `${name}_sum`, `${name}_count`].includes(sampleName)
        : sampleName === name;
      assert.ok(ok, `${s} in the block of ${name}`);
    }
    assert.ok(!families.has(name), `${name} twice`);
    families.set(name, { help: help[2], type: type[2], samples: samples.sort() });
  }
  return families;
}

// Asserts the registry exposes exactly `expected`: family -> sample lines
// (each family's HELP and TYPE are the library's, SERIES).
async function assertExposition(registry, expected) {
  const got = parseExposition(await registry.metrics());
  assert.deepEqual([...got.keys()].sort(), Object.keys(expected).sort());
  for (const [name, samples] of Object.entries(expected)) {
    const f = got.get(name);
    assert.deepEqual([f.type, f.help], SERIES[name], name);
    assert.deepEqual(f.samples, [...samples].sort(), name);
  }
}

// An OpenTelemetry SDK meter and its reader: collect() -> Map(instrument
// name -> { type, unit, points: sorted [attributes JSON, value] }).
class TestReader extends MetricReader {
  async onForceFlush() {}
  async onShutdown() {}
}
function otel(t) {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  t.after(() => provider.shutdown());
  const meter = provider.getMeter('tollgate-test');
  return {
    meter,
    async collect() {
      const { resourceMetrics, errors } = await reader.collect();
      assert.deepEqual(errors, []);
      const out = new Map();
      for (const sm of resourceMetrics.scopeMetrics)
        for (const m of sm.metrics) {
          const points = m.dataPoints.map((d) => [JSON.stringify(d.attributes), d.value]).sort();
          out.set(m.descriptor.name, {
            type: m.descriptor.type, unit: m.descriptor.unit, description: m.descriptor.description, points,
          });
        }
      return out;
    },
  };
}

// Asserts the collection has exactly `expected`: instrument -> [type,
// [[attributes, value], ...]] (instruments without points may be absent).
function assertCollected(got, expected) {
  const withPoints = [...got].filter(([, v]) => v.points.length > 0).map(([k]) => k).sort();
  assert.deepEqual(withPoints, Object.keys(expected).filter((k) => expected[k][1].length > 0).sort());
  for (const [name, [type, points]] of Object.entries(expected)) {
    const g = got.get(name);
    assert.ok(g, name);
    assert.equal(g.type, type, name);
    assert.equal(g.unit, name.endsWith('_seconds') || name.endsWith('_seconds_sum') ? 's' : '', name);
    assert.deepEqual(g.points, points.map(([a, v]) => [JSON.stringify(a), v]).sort(), name);
  }
}

// Prometheus label text: {a="1",b="2"}, or nothing.
function labelText(labels) {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

// ---- known traffic on the memory store -------------------------------------------

// The traffic of tests/test_metrics.cpp's first case; returns the decisions
// it must have counted: [policy, decision, source, count].
async function memoryTraffic(lim) {
  const api = Policy.parse('3/m name=api');
  const unnamed = policy(100, '1m');
  const trial = Policy.parse('1/m name=trial shadow');
  for (let i = 0; i < 5; ++i) lim.checkSync('u:1', api); // 3 allowed, 2 denied
  for (let i = 0; i < 4; ++i) lim.checkSync('u:1', unnamed);
  for (let i = 0; i < 3; ++i) assert.equal(lim.checkSync('u:1', trial).allowed, true); // 2 shadowed
  // Several policies: one decision, under the one it reports (api: fewest left).
  assert.equal(lim.checkSync('u:2', [unnamed, api]).policyIndex, 1);
  lim.setDenyList(['bad']);
  assert.equal(lim.checkSync('bad', api).source, 'deny_list');
  assert.equal(lim.checkSync('bad', unnamed).source, 'deny_list');
  assert.equal((await lim.check('u:3', api)).allowed, true);
  assert.equal((await lim.checkKeys([['u:4', api]])).allowed, true);
  // An error, never a decision.
  assert.throws(() => lim.checkSync('', api), { code: 'RL_E_KEY_INVALID' });
  return [
    ['api', 'allowed', 'store', 3 + 1 + 1 + 1],
    ['api', 'denied', 'store', 2],
    ['default', 'allowed', 'store', 4],
    ['trial', 'allowed', 'store', 3],
    ['api', 'denied', 'deny_list', 1],
    ['default', 'denied', 'deny_list', 1],
  ];
}

// limiter.metrics()'s samples of a memory limiter after memoryTraffic().
function memorySamples(lim, decisions) {
  const counter = (name, labels, value) =>
    ({ type: 'counter', name, help: SERIES[name][1], labels, value, buckets: [], count: 0, sum: 0 });
  return [
    ...decisions.map(([p, d, s, n]) => counter('tollgate_checks_total', { policy: p, decision: d, source: s }, n)),
    counter('tollgate_shadow_denials_total', { policy: 'trial' }, 2),
    counter('tollgate_check_errors_total', {}, 1),
    { type: 'gauge', name: 'tollgate_memory_keys', help: SERIES.tollgate_memory_keys[1], labels: {},
      value: lim.health().liveKeys, buckets: [], count: 0, sum: 0 },
    counter('tollgate_memory_evictions_total', {}, 0),
  ];
}

const byName = (a, b) => (JSON.stringify([a.name, a.labels]) < JSON.stringify([b.name, b.labels]) ? -1 : 1);

test('memory: limiter.metrics() counts each decision under its policy, decision and source', async (t) => {
  const lim = (await storeOf(t, 'memory')).limiter();
  const decisions = await memoryTraffic(lim);
  const samples = lim.metrics();
  assert.ok(lim.health().liveKeys >= 3);
  assert.deepEqual([...samples].sort(byName), memorySamples(lim, decisions).sort(byName));
  // The library's order: decisions first, then the store's series.
  assert.deepEqual(samples.slice(-3).map((s) => s.name),
    ['tollgate_check_errors_total', 'tollgate_memory_keys', 'tollgate_memory_evictions_total']);
  // A snapshot is a copy: the next one has the next check.
  lim.checkSync('u:9', Policy.parse('3/m name=api'));
  const again = lim.metrics().find((s) => s.name === 'tollgate_checks_total' && s.labels.policy === 'api' &&
    s.labels.decision === 'allowed' && s.labels.source === 'store');
  assert.equal(again.value, 7);
  assert.equal(samples.find((s) => s.labels.policy === 'api').value, 6);
});

test('memory: prom-client exposes exactly the library\'s series, labels and values', async (t) => {
  const lim = (await storeOf(t, 'memory')).limiter();
  const decisions = await memoryTraffic(lim);
  const keys = lim.health().liveKeys;
  const expected = (extra) => {
    const l = (labels) => labelText({ ...extra, ...labels });
    return {
      tollgate_checks_total: decisions.map(([p, d, s, n]) =>
        `tollgate_checks_total${l({ policy: p, decision: d, source: s })} ${n}`),
      tollgate_shadow_denials_total: [`tollgate_shadow_denials_total${l({ policy: 'trial' })} 2`],
      tollgate_check_errors_total: [`tollgate_check_errors_total${l({})} 1`],
      tollgate_memory_keys: [`tollgate_memory_keys${l({})} ${keys}`],
      tollgate_memory_evictions_total: [`tollgate_memory_evictions_total${l({})} 0`],
    };
  };
  // Unnamed: the library's labels only.
  const registry = new client.Registry();
  const reg = prometheus.registerTollgateMetrics(lim, { registry });
  await assertExposition(registry, expected({}));
  // Scraped twice: the same (the limiter's counters, not the registry's).
  registry.resetMetrics();
  await assertExposition(registry, expected({}));
  // Named: a `limiter` label first on every series.
  const named = new client.Registry();
  prometheus.registerTollgateMetrics(lim, { registry: named, name: 'edge' });
  await assertExposition(named, expected({ limiter: 'edge' }));
  // The JSON form has the same values.
  const json = await named.getMetricsAsJSON();
  const checks = json.find((m) => m.name === 'tollgate_checks_total');
  assert.equal(checks.type, 'counter');
  assert.deepEqual(checks.values.find((v) => v.labels.policy === 'default' && v.labels.decision === 'allowed'),
    { labels: { limiter: 'edge', policy: 'default', decision: 'allowed', source: 'store' }, value: 4 });
  // OpenMetrics: counters as prom-client's own are, family without _total.
  named.setContentType(client.Registry.OPENMETRICS_CONTENT_TYPE);
  const om = await named.metrics();
  assert.match(om, /^# TYPE tollgate_checks counter$/m);
  assert.match(om, /^tollgate_checks_total\{limiter="edge",policy="api",decision="denied",source="store"\} 2$/m);
  assert.match(om, /^tollgate_memory_keys\{limiter="edge"\} \d+$/m);
  assert.ok(om.endsWith('# EOF\n'));
  // Unregistered: the registry no longer has tollgate's metrics.
  reg.unregister();
  reg.unregister(); // harmless
  assert.equal(await registry.metrics(), '\n');
});

test('memory: OpenTelemetry observes the same values through observable instruments', async (t) => {
  const lim = (await storeOf(t, 'memory')).limiter();
  const decisions = await memoryTraffic(lim);
  const { meter, collect } = otel(t);
  const reg = opentelemetry.registerTollgateMetrics(lim, { meter, name: 'edge' });
  const e = { limiter: 'edge' };
  const expected = {
    tollgate_checks_total: ['OBSERVABLE_COUNTER',
      decisions.map(([p, d, s, n]) => [{ ...e, policy: p, decision: d, source: s }, n])],
    tollgate_shadow_denials_total: ['OBSERVABLE_COUNTER', [[{ ...e, policy: 'trial' }, 2]]],
    tollgate_check_errors_total: ['OBSERVABLE_COUNTER', [[e, 1]]],
    tollgate_memory_keys: ['OBSERVABLE_UP_DOWN_COUNTER', [[e, lim.health().liveKeys]]],
    tollgate_memory_evictions_total: ['OBSERVABLE_COUNTER', [[e, 0]]],
  };
  assertCollected(await collect(), expected);
  // Every collection reads the limiter again.
  lim.checkSync('u:5', Policy.parse('3/m name=api'));
  expected.tollgate_checks_total[1][0] = [{ ...e, policy: 'api', decision: 'allowed', source: 'store' }, 7];
  expected.tollgate_memory_keys[1][0] = [e, lim.health().liveKeys];
  const last = await collect();
  assertCollected(last, expected);
  // Unregistered: the limiter is no longer read (the SDK may repeat a
  // cumulative series' last value; it never sees a new one).
  reg.unregister();
  lim.checkSync('u:6', Policy.parse('3/m name=api'));
  for (const [name, v] of await collect())
    if (v.points.length > 0) assert.deepEqual(v.points, last.get(name).points, name);
});

// ---- a real redis-server ------------------------------------------------------------

// A snapshot and an exposition taken while nothing changes (the same
// snapshot before and after the scrape).
async function steadyScrape(lim, registry) {
  for (let i = 0; i < 20; ++i) {
    const before = lim.metrics();
    const text = await registry.metrics();
    if (JSON.stringify(lim.metrics()) === JSON.stringify(before)) return { samples: before, text };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the metrics kept changing');
}

test('redis: the node series and the round-trip histogram, in limiter.metrics(), prom-client and OpenTelemetry', { skip: noRedis }, async (t) => {
  const store = await storeOf(t, 'redis');
  const lim = store.limiter();
  const login = Policy.parse('2/m name=login');
  for (let i = 0; i < 10; ++i) await lim.check('ip:1', login);
  const node = `127.0.0.1:${store.server.port}`;
  const registry = new client.Registry();
  prometheus.registerTollgateMetrics(lim, { registry, name: 'shared' });
  const { samples, text } = await steadyScrape(lim, registry);

  // limiter.metrics(): the histogram's shape and what the traffic implies.
  const rtt = samples.find((s) => s.name === 'tollgate_store_round_trip_seconds');
  assert.equal(rtt.type, 'histogram');
  assert.deepEqual(rtt.labels, { node });
  assert.equal(rtt.value, 0);
  assert.deepEqual(rtt.buckets.map((b) => b.le), [
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, Infinity]);
  assert.ok(rtt.count >= 10, JSON.stringify(rtt)); // every check was a round trip
  assert.ok(rtt.sum > 0);
  for (let i = 1; i < rtt.buckets.length; ++i) assert.ok(rtt.buckets[i].count >= rtt.buckets[i - 1].count);
  assert.equal(rtt.buckets.at(-1).count, rtt.count);
  const plain = samples.filter((s) => s.type !== 'histogram').map((s) => [s.name, s.labels, s.value]);
  assert.deepEqual(plain, [
    ['tollgate_checks_total', { policy: 'login', decision: 'allowed', source: 'store' }, 2],
    ['tollgate_checks_total', { policy: 'login', decision: 'denied', source: 'store' }, 8],
    ['tollgate_check_errors_total', {}, 0],
    ['tollgate_store_errors_total', {}, 0],
    ['tollgate_async_pending', {}, 0],
    ['tollgate_async_refused_total', {}, 0],
    ['tollgate_store_up', { node }, 1],
    ['tollgate_store_primary', { node }, 1],
    ['tollgate_store_in_flight', { node }, 0],
    ['tollgate_store_connection_failures_total', { node }, 0],
    ['tollgate_store_reconnects_total', { node }, 0],
  ]);
  for (const s of samples) assert.deepEqual([s.type, s.help], SERIES[s.name], s.name);

  // prom-client: every family of a standalone Redis limiter, exact.
  const l = (labels) => labelText({ limiter: 'shared', ...labels });
  const expected = {
    tollgate_checks_total: [
      `tollgate_checks_total${l({ policy: 'login', decision: 'allowed', source: 'store' })} 2`,
      `tollgate_checks_total${l({ policy: 'login', decision: 'denied', source: 'store' })} 8`,
    ],
    tollgate_shadow_denials_total: [],
    tollgate_check_errors_total: [`tollgate_check_errors_total${l({})} 0`],
    tollgate_store_errors_total: [`tollgate_store_errors_total${l({})} 0`],
    tollgate_async_pending: [`tollgate_async_pending${l({})} 0`],
    tollgate_async_refused_total: [`tollgate_async_refused_total${l({})} 0`],
    tollgate_store_up: [`tollgate_store_up${l({ node })} 1`],
    tollgate_store_primary: [`tollgate_store_primary${l({ node })} 1`],
    tollgate_store_in_flight: [`tollgate_store_in_flight${l({ node })} 0`],
    tollgate_store_connection_failures_total: [`tollgate_store_connection_failures_total${l({ node })} 0`],
    tollgate_store_reconnects_total: [`tollgate_store_reconnects_total${l({ node })} 0`],
    tollgate_store_round_trip_seconds: [
      ...rtt.buckets.map((b) =>
        `tollgate_store_round_trip_seconds_bucket${l({ node, le: b.le === Infinity ? '+Inf' : String(b.le) })} ${b.count}`),
      `tollgate_store_round_trip_seconds_sum${l({ node })} ${rtt.sum}`,
      `tollgate_store_round_trip_seconds_count${l({ node })} ${rtt.count}`,
    ],
  };
  const got = parseExposition(text);
  assert.deepEqual([...got.keys()].sort(), Object.keys(expected).sort());
  for (const [name, lines] of Object.entries(expected)) {
    assert.deepEqual([got.get(name).type, got.get(name).help], SERIES[name], name);
    assert.deepEqual(got.get(name).samples, [...lines].sort(), name);
  }
  assert.match(text, /^tollgate_store_round_trip_seconds_bucket\{limiter="shared",node="127\.0\.0\.1:\d+",le="0\.000025"\} \d+$/m);
  assert.match(text, /^tollgate_store_round_trip_seconds_bucket\{limiter="shared",node="127\.0\.0\.1:\d+",le="\+Inf"\} \d+$/m);

  // OpenTelemetry: the same values; the histogram as its _count and _sum.
  const { meter, collect } = otel(t);
  opentelemetry.registerTollgateMetrics(lim, { meter });
  let collected;
  let snap;
  for (let i = 0; i < 20; ++i) {
    snap = lim.metrics();
    collected = await collect();
    if (JSON.stringify(lim.metrics()) === JSON.stringify(snap)) break;
  }
  const h = snap.find((s) => s.name === 'tollgate_store_round_trip_seconds');
  assertCollected(collected, {
    tollgate_checks_total: ['OBSERVABLE_COUNTER', [
      [{ policy: 'login', decision: 'allowed', source: 'store' }, 2],
      [{ policy: 'login', decision: 'denied', source: 'store' }, 8]]],
    tollgate_check_errors_total: ['OBSERVABLE_COUNTER', [[{}, 0]]],
    tollgate_store_errors_total: ['OBSERVABLE_COUNTER', [[{}, 0]]],
    tollgate_async_pending: ['OBSERVABLE_UP_DOWN_COUNTER', [[{}, 0]]],
    tollgate_async_refused_total: ['OBSERVABLE_COUNTER', [[{}, 0]]],
    tollgate_store_up: ['OBSERVABLE_GAUGE', [[{ node }, 1]]],
    tollgate_store_primary: ['OBSERVABLE_GAUGE', [[{ node }, 1]]],
    tollgate_store_in_flight: ['OBSERVABLE_UP_DOWN_COUNTER', [[{ node }, 0]]],
    tollgate_store_connection_failures_total: ['OBSERVABLE_COUNTER', [[{ node }, 0]]],
    tollgate_store_reconnects_total: ['OBSERVABLE_COUNTER', [[{ node }, 0]]],
    tollgate_store_round_trip_seconds_count: ['OBSERVABLE_COUNTER', [[{ node }, h.count]]],
    tollgate_store_round_trip_seconds_sum: ['OBSERVABLE_COUNTER', [[{ node }, h.sum]]],
  });
});

test('several limiters in one registry and on one meter, each by name', { skip: noRedis }, async (t) => {
  const mem = (await storeOf(t, 'memory')).limiter();
  const store = await storeOf(t, 'redis');
  const red = store.limiter();
  const p = Policy.parse('5/m name=multi');
  mem.checkSync('k', p);
  await red.check('k', p);
  await red.check('k', p);
  const registry = new client.Registry();
  const a = prometheus.registerTollgateMetrics(mem, { registry, name: 'mem' });
  assert.throws(() => prometheus.registerTollgateMetrics(red, { registry }),
    /this registry already has a limiter's metrics; give each limiter a distinct name/);
  assert.throws(() => prometheus.registerTollgateMetrics(red, { registry, name: 'mem' }),
    /already has a limiter named 'mem'/);
  assert.throws(() => prometheus.registerTollgateMetrics(mem, { registry, name: 'again' }),
    /this limiter's metrics are already registered on this registry/);
  const b = prometheus.registerTollgateMetrics(red, { registry, name: 'redis' });
  const text = await registry.metrics();
  const got = parseExposition(text);
  assert.deepEqual(got.get('tollgate_checks_total').samples, [
    'tollgate_checks_total{limiter="mem",policy="multi",decision="allowed",source="store"} 1',
    'tollgate_checks_total{limiter="redis",policy="multi",decision="allowed",source="store"} 2',
  ]);
  assert.deepEqual(got.get('tollgate_memory_keys').samples, ['tollgate_memory_keys{limiter="mem"} 1']);
  assert.equal(got.get('tollgate_store_up').samples[0], `tollgate_store_up{limiter="redis",node="127.0.0.1:${store.server.port}"} 1`);
  assert.deepEqual(got.get('tollgate_check_errors_total').samples,
    ['tollgate_check_errors_total{limiter="mem"} 0', 'tollgate_check_errors_total{limiter="redis"} 0']);
  // One leaves: its series go, the metrics stay for the other.
  b.unregister();
  const after = parseExposition(await registry.metrics());
  assert.deepEqual(after.get('tollgate_checks_total').samples,
    ['tollgate_checks_total{limiter="mem",policy="multi",decision="allowed",source="store"} 1']);
  assert.deepEqual(after.get('tollgate_store_up').samples, []);
  a.unregister();
  assert.equal(await registry.metrics(), '\n');
  // The registry is free again: an unnamed limiter may come.
  prometheus.registerTollgateMetrics(red, { registry });
  assert.match(await registry.metrics(), /^tollgate_checks_total\{policy="multi",decision="allowed",source="store"\} 2$/m);

  const { meter, collect } = otel(t);
  opentelemetry.registerTollgateMetrics(mem, { meter, name: 'mem' });
  assert.throws(() => opentelemetry.registerTollgateMetrics(red, { meter }), /give each limiter a distinct name/);
  opentelemetry.registerTollgateMetrics(red, { meter, name: 'redis' });
  const c = await collect();
  assert.deepEqual(c.get('tollgate_checks_total').points, [
    [JSON.stringify({ limiter: 'mem', policy: 'multi', decision: 'allowed', source: 'store' }), 1],
    [JSON.stringify({ limiter: 'redis', policy: 'multi', decision: 'allowed', source: 'store' }), 2],
  ]);
  assert.deepEqual(c.get('tollgate_memory_keys').points, [[JSON.stringify({ limiter: 'mem' }), 1]]);
  assert.equal(c.get('tollgate_store_round_trip_seconds_count').points.length, 1);
  // A histogram's two instruments say which half of it they carry.
  const rtt = red.metrics().find((s) => s.name === 'tollgate_store_round_trip_seconds');
  assert.ok(rtt.help);
  assert.equal(c.get('tollgate_store_round_trip_seconds_count').description, `${rtt.help} (their number)`);
  assert.equal(c.get('tollgate_store_round_trip_seconds_sum').description, `${rtt.help} (their sum)`);
  assert.equal(c.get('tollgate_checks_total').description, red.metrics().find((s) => s.name === 'tollgate_checks_total').help);
});

// ---- the option, closed limiters, bad input -----------------------------------------

test('{ metrics: false }: no tollgate_checks_total anywhere; the other series remain', async (t) => {
  const lim = (await storeOf(t, 'memory')).limiter({ metrics: false });
  const api = Policy.parse('1/m name=api');
  const trial = Policy.parse('1/m name=trial shadow');
  for (let i = 0; i < 3; ++i) lim.checkSync('k', [api, trial]);
  assert.throws(() => lim.checkSync('', api), { code: 'RL_E_KEY_INVALID' });
  const names = lim.metrics().map((s) => s.name);
  assert.deepEqual(names, ['tollgate_check_errors_total', 'tollgate_memory_keys', 'tollgate_memory_evictions_total']);
  assert.equal(lim.metrics()[0].value, 1);
  const registry = new client.Registry();
  prometheus.registerTollgateMetrics(lim, { registry });
  const text = await registry.metrics();
  assert.doesNotMatch(text, /tollgate_checks_total|tollgate_shadow_denials_total/);
  assert.match(text, /^tollgate_check_errors_total 1$/m);
  const { meter, collect } = otel(t);
  opentelemetry.registerTollgateMetrics(lim, { meter });
  const c = await collect();
  assert.ok(!c.has('tollgate_checks_total') && !c.has('tollgate_shadow_denials_total'), [...c.keys()].join());
  assert.deepEqual(c.get('tollgate_check_errors_total').points, [['{}', 1]]);
  // On by default, and with metrics: true.
  const on = (await storeOf(t, 'memory')).limiter({ metrics: true });
  on.checkSync('k', api);
  assert.equal(on.metrics()[0].name, 'tollgate_checks_total');
  assert.throws(() => new Limiter({ metrics: 'off' }), { name: 'TypeError', message: /metrics must be a boolean/ });
  assert.throws(() => new Limiter({ metrics: 1 }), TypeError);
});

test('a closed limiter: metrics() throws RL_E_CLOSED; the exporters report nothing for it', async (t) => {
  const lim = new Limiter();
  lim.checkSync('k', Policy.parse('1/m name=api'));
  const registry = new client.Registry();
  prometheus.registerTollgateMetrics(lim, { registry, name: 'gone' });
  const { meter, collect } = otel(t);
  opentelemetry.registerTollgateMetrics(lim, { meter });
  await lim.close();
  assert.throws(() => lim.metrics(), { code: 'RL_E_CLOSED' });
  const got = parseExposition(await registry.metrics());
  for (const f of got.values()) assert.deepEqual(f.samples, []);
  assertCollected(await collect(), {});
  assert.throws(() => prometheus.registerTollgateMetrics(lim, { registry: new client.Registry() }), { code: 'RL_E_CLOSED' });
  assert.throws(() => opentelemetry.registerTollgateMetrics(lim, { meter }), { code: 'RL_E_CLOSED' });
});

test('the exporters: bad arguments are TypeErrors; a foreign metric of the same name is refused', async (t) => {
  const lim = (await storeOf(t, 'memory')).limiter();
  const registry = new client.Registry();
  for (const [fn, opts] of [[prometheus.registerTollgateMetrics, { registry }],
    [opentelemetry.registerTollgateMetrics, { meter: otel(t).meter }]]) {
    assert.throws(() => fn({}, opts), { name: 'TypeError', message: /limiter must be a tollgate Limiter, received an object$/ });
    assert.throws(() => fn(null, opts), { name: 'TypeError', message: /received null$/ });
    assert.throws(() => fn([lim], opts), { name: 'TypeError', message: /received an array$/ });
    assert.throws(() => fn(new Map(), opts), { name: 'TypeError', message: /received an instance of Map$/ });
    assert.throws(() => fn(Object.create(null), opts), { name: 'TypeError', message: /received an object$/ });
    assert.throws(() => fn(lim), { name: 'TypeError', message: /options must be an object/ });
    assert.throws(() => fn(lim, {}), { name: 'TypeError', message: /must be (a prom-client Registry|an OpenTelemetry Meter)/ });
    assert.throws(() => fn(lim, { ...opts, name: 5 }), { name: 'TypeError', message: /name must be a non-empty string/ });
    assert.throws(() => fn(lim, { ...opts, name: '' }), { name: 'TypeError', message: /received an empty string/ });
  }
  assert.throws(() => prometheus.registerTollgateMetrics(lim, { registry: { registerMetric() {} } }), TypeError);
  // Someone else's tollgate_check_errors_total: nothing of tollgate's is registered.
  const taken = new client.Registry();
  new client.Counter({ name: 'tollgate_check_errors_total', help: 'mine', registers: [taken] });
  assert.throws(() => prometheus.registerTollgateMetrics(lim, { registry: taken }),
    /the registry already has a metric named tollgate_check_errors_total \(not tollgate's\)/);
  assert.deepEqual(taken.getMetricsAsArray().map((m) => m.name), ['tollgate_check_errors_total']);
  // After registry.clear(), registering again puts the metrics back.
  const cleared = new client.Registry();
  const r1 = prometheus.registerTollgateMetrics(lim, { registry: cleared });
  cleared.clear();
  r1.unregister();
  prometheus.registerTollgateMetrics(lim, { registry: cleared });
  assert.match(await cleared.metrics(), /^tollgate_memory_evictions_total 0$/m);
});

test('the series table matches docs/metrics.md and what the library reports', async (t) => {
  for (const [name, [type, help]] of Object.entries(SERIES)) {
    assert.match(name, /^tollgate_[a-z_]+$/);
    assert.ok(['counter', 'gauge', 'histogram'].includes(type));
    assert.ok(help.length > 10);
    if (type === 'counter') assert.match(name, /_total$/);
  }
  const doc = path.join(REPO_ROOT, 'docs', 'metrics.md');
  if (!fs.existsSync(doc)) return t.skip('docs/metrics.md is not in a packed copy');
  const table = fs.readFileSync(doc, 'utf8').split('<!-- series -->')[1].split('<!-- /series -->')[0];
  const rows = [...table.matchAll(/^\| `(tollgate_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)].map((m) => [m[1], m[2]]);
  assert.deepEqual(rows, Object.entries(SERIES).map(([n, [type]]) => [n, type]));
});

test('tollgate/prometheus and tollgate/opentelemetry: CommonJS and ESM, and no prom-client or OpenTelemetry loaded by tollgate', async () => {
  const run = (args) => new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: PACKAGE_ROOT, timeout: 30000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(stdout.trim());
    });
  });
  const cjs = `
    require('tollgate'); require('tollgate/prometheus'); require('tollgate/opentelemetry');
    const loaded = Object.keys(require.cache).filter((f) => /prom-client|@opentelemetry/.test(f));
    console.log(JSON.stringify({ loaded, p: typeof require('tollgate/prometheus').registerTollgateMetrics,
      o: typeof require('tollgate/opentelemetry').registerTollgateMetrics }));`;
  assert.deepEqual(JSON.parse(await run(['-e', cjs])), { loaded: [], p: 'function', o: 'function' });
  const esm = `
    import { registerTollgateMetrics as p } from 'tollgate/prometheus';
    import { registerTollgateMetrics as o } from 'tollgate/opentelemetry';
    import prometheus from 'tollgate/prometheus';
    console.log(typeof p, typeof o, prometheus.registerTollgateMetrics === p);`;
  assert.equal(await run(['--input-type=module', '-e', esm]), 'function function true');
});
