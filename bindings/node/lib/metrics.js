'use strict';
// What the metrics exporters (tollgate/prometheus, tollgate/opentelemetry)
// share: the series the library exports (docs/metrics.md), the ones a
// limiter can report, the limiters an exporter reads with their extra
// labels, and one read of them all.

const tollgate = require('./index');

const { Limiter, _countsDecisions: countsDecisions } = tollgate;

// Every series of docs/metrics.md by name: its type, and the help text the
// library gives it (an exporter declares a series before the library first
// reports it: a policy's first check, a node's first connection). The
// tests compare it with what the library reports.
const SERIES = Object.freeze({
  tollgate_checks_total: ['counter', "Decisions given, by the reported policy's name, the decision and the path that answered"],
  tollgate_shadow_denials_total: ['counter', 'Checks allowed only because shadow mode did not enforce a denial'],
  tollgate_check_errors_total: ['counter', 'Calls that failed with an error instead of a decision'],
  tollgate_memory_keys: ['gauge', 'Keys the memory store holds'],
  tollgate_memory_evictions_total: ['counter', 'Keys evicted to stay within max_keys'],
  tollgate_store_errors_total: ['counter', 'Store calls that failed (each then answered by the failure mode)'],
  tollgate_async_pending: ['gauge', 'Async checks waiting for the store (at most max_async)'],
  tollgate_async_refused_total: ['counter', 'Async checks refused at once because max_async were already waiting (RL_E_BUSY)'],
  tollgate_store_up: ['gauge', '1 while a connection to the node is ready, else 0'],
  tollgate_store_primary: ['gauge', "1 if the node serves the limiter's keys (a primary), else 0"],
  tollgate_store_in_flight: ['gauge', 'Commands sent to the node and awaiting its reply'],
  tollgate_store_connection_failures_total: ['counter', 'Connections to the node lost or refused'],
  tollgate_store_reconnects_total: ['counter', 'Connections to the node re-established'],
  tollgate_store_round_trip_seconds: ['histogram', "Round trips of the limiter's commands to the node, from sending to reading the reply"],
  tollgate_cluster_redirections_total: ['counter', 'MOVED and ASK redirections followed'],
  tollgate_cluster_slot_map_refreshes_total: ['counter', 'Slot maps read from the cluster'],
  tollgate_cluster_slot_map_age_seconds: ['gauge', 'Age of the slot map in use'],
  tollgate_sentinel_master_switches_total: ['counter', 'Moves to another master after a failover'],
});

// The gauges that count things (they add up across nodes and limiters):
// OpenTelemetry's up-down counters. The other gauges are states.
const ADDITIVE_GAUGES = new Set(['tollgate_memory_keys', 'tollgate_store_in_flight', 'tollgate_async_pending']);

// The label (attribute) an exporter's `name` option sets on a limiter's series.
const LIMITER_LABEL = 'limiter';

const DECISIONS = ['tollgate_checks_total', 'tollgate_shadow_denials_total'];
const MEMORY = ['tollgate_memory_keys', 'tollgate_memory_evictions_total'];
const REDIS = [
  'tollgate_store_errors_total', 'tollgate_async_pending', 'tollgate_async_refused_total', 'tollgate_store_up', 'tollgate_store_primary', 'tollgate_store_in_flight',
  'tollgate_store_connection_failures_total', 'tollgate_store_reconnects_total', 'tollgate_store_round_trip_seconds',
];
const CLUSTER = [
  'tollgate_cluster_redirections_total', 'tollgate_cluster_slot_map_refreshes_total',
  'tollgate_cluster_slot_map_age_seconds',
];
const SENTINEL = ['tollgate_sentinel_master_switches_total'];

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto === null || proto === Object.prototype) return 'an object';
    return v.constructor && v.constructor.name ? 'an instance of ' + v.constructor.name : 'an object';
  }
  return typeof v;
}

// One limiter as an exporter reads it: { limiter, name, labels } (labels:
// { limiter: name } with a name, else none). `where` names the exporter.
function source(limiter, name, where) {
  if (!(limiter instanceof Limiter))
    throw new TypeError(`${where}: limiter must be a tollgate Limiter, received ${typeOf(limiter)}`);
  if (name !== undefined && name !== null && (typeof name !== 'string' || name === ''))
    throw new TypeError(`${where}: name must be a non-empty string (the value of a '${LIMITER_LABEL}' label), received ${
      typeof name === 'string' ? 'an empty string' : typeOf(name)}`);
  if (limiter.closed)
    throw tollgate.makeError('RL_E_CLOSED', `${where}: the limiter is closed`);
  const n = name === undefined || name === null ? null : name;
  return { limiter, name: n, labels: n === null ? {} : { [LIMITER_LABEL]: n } };
}

// A new source beside those an exporter (a registry, a meter) already has:
// the series of two limiters must differ by their `limiter` label, so
// every one of them needs a distinct name.
function checkJoin(existing, src, where, what) {
  if (existing.length === 0) return;
  if (existing.some((e) => e.limiter === src.limiter))
    throw new Error(`${where}: this limiter's metrics are already registered on this ${what}`);
  if (src.name === null || existing.some((e) => e.name === null))
    throw new Error(
      `${where}: this ${what} already has a limiter's metrics; give each limiter a distinct name ` +
        `(registerTollgateMetrics(limiter, { name: 'api', ... })), the value of the '${LIMITER_LABEL}' label that tells their series apart`);
  if (existing.some((e) => e.name === src.name))
    throw new Error(`${where}: this ${what} already has a limiter named '${src.name}'`);
}

// Adds `src` to an exporter's `state` (its `sources`); returns what the
// exporter returns: { unregister() }, which takes it out again (once) and
// runs `whenEmpty()` when it was the last.
function join(state, src, whenEmpty) {
  state.sources.push(src);
  let registered = true;
  return {
    unregister() {
      if (!registered) return;
      registered = false;
      state.sources = state.sources.filter((s) => s !== src);
      if (state.sources.length === 0) whenEmpty();
    },
  };
}

// The series `limiter` can report, by name -> [type, help]: those of its
// store and topology (from health()), decisions unless it was made with
// { metrics: false }, and any other it reports already (a newer library's).
function seriesOf(limiter) {
  const h = limiter.health();
  const names = [];
  if (countsDecisions(limiter)) names.push(...DECISIONS);
  names.push('tollgate_check_errors_total');
  if (h.store === 'memory') {
    names.push(...MEMORY);
  } else {
    names.push(...REDIS);
    if (h.topology === 'cluster') names.push(...CLUSTER);
    if (h.topology === 'sentinel') names.push(...SENTINEL);
  }
  const out = new Map(names.map((n) => [n, SERIES[n]]));
  for (const s of limiter.metrics()) if (!out.has(s.name)) out.set(s.name, [s.type, s.help]);
  return out;
}

// One snapshot of each source: [labels, sample] pairs, the source's labels
// first in each sample's. A closed limiter has no series (its exporter
// stays and reports nothing for it).
function read(sources) {
  const out = [];
  for (const src of sources) {
    let samples;
    try {
      samples = src.limiter.metrics();
    } catch (e) {
      if (e && e.code === 'RL_E_CLOSED') continue;
      throw e;
    }
    for (const s of samples) out.push([{ ...src.labels, ...s.labels }, s]);
  }
  return out;
}

module.exports = { SERIES, ADDITIVE_GAUGES, LIMITER_LABEL, source, checkJoin, join, seriesOf, read, typeOf };
