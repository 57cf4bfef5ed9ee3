'use strict';
// tollgate/prometheus: a limiter's metrics in a prom-client registry
// (prom-client 13 or later, an optional peer dependency: this module uses
// only the registry it is given, and requiring tollgate never loads it).
//
//   const client = require('prom-client');
//   const { registerTollgateMetrics } = require('tollgate/prometheus');
//   registerTollgateMetrics(limiter, { registry: client.register });
//
// Every series is exposed under the library's own name, type, help and
// labels (docs/metrics.md): `tollgate_checks_total{policy,decision,source}`,
// `tollgate_store_round_trip_seconds` (a histogram per Redis node, with its
// _bucket{le}, _sum and _count samples), ... Each scrape reads one snapshot
// of the limiter (limiter.metrics(): no I/O) for all of them.
//
// It registers one metric object per series name, in prom-client's metric
// interface (name, help, type, get(), reset()), whose get() returns the
// snapshot's samples as they are: counters keep their `_total` name (the
// OpenMetrics content type exposes them as prom-client's own counters are,
// family `tollgate_checks`, samples `tollgate_checks_total`). The series
// declared are those the limiter's store can report (its decisions, unless
// made with { metrics: false }; the memory store's or each Redis node's;
// a cluster's, Sentinel's); one without samples yet (a policy's first
// check has not come) shows its HELP and TYPE lines only, as a prom-client
// metric with labels does. resetMetrics() leaves them: they are the
// limiter's counters.
//
// `name` adds a `limiter` label to every series of the limiter. Several
// limiters in one registry: register each with a distinct name (their
// series share the metric objects). A closed limiter has no series; its
// registration stays until unregister().

const { SERIES, source, checkJoin, join, seriesOf, read, typeOf } = require('./metrics');

const WHERE = 'registerTollgateMetrics';

// registry -> its tollgate state (the limiters and the metric objects).
const states = new WeakMap();

// One series name in prom-client's metric interface.
class TollgateMetric {
  #state;
  #key;

  constructor(state, name, type, help) {
    // `name` may be renamed by the registry (OpenMetrics drops a
    // counter's _total from its family name): the samples are found by
    // the library's name.
    this.name = name;
    this.help = help;
    this.type = type;
    this.aggregator = 'sum';
    this.#state = state;
    this.#key = name;
  }

  get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values: this.#state.values(this.#key),
      aggregator: this.aggregator,
    };
  }

  // The limiter's own counters: a registry's resetMetrics() leaves them.
  reset() {}
}

class RegistryState {
  constructor(registry) {
    this.registry = registry;
    this.sources = [];
    this.metrics = new Map(); // library name -> TollgateMetric
    this.snapshot = null;
  }

  // The samples of `name` in this scrape. A registry asks every metric
  // before it awaits anything (metrics(), getMetricsAsJSON() call each
  // get() in one loop): the first asks for the snapshot, the rest of that
  // loop share it, and the next scrape reads a new one.
  values(name) {
    if (this.snapshot === null) {
      this.snapshot = samplesByName(read(this.sources));
      queueMicrotask(() => {
        this.snapshot = null;
      });
    }
    return this.snapshot.get(name) || [];
  }
}

// prom-client's values ({ labels, value, metricName? }) of each series
// name: a histogram's cumulative buckets (le last among the labels, the
// last one "+Inf"), then its sum and count.
function samplesByName(rows) {
  const out = new Map();
  for (const [labels, s] of rows) {
    let list = out.get(s.name);
    if (list === undefined) out.set(s.name, (list = []));
    if (s.type === 'histogram') {
      for (const b of s.buckets)
        list.push({ metricName: `${s.name}_bucket`, labels: { ...labels, le: b.le === Infinity ? '+Inf' : b.le }, value: b.count });
      list.push({ metricName: `${s.name}_sum`, labels, value: s.sum });
      list.push({ metricName: `${s.name}_count`, labels, value: s.count });
    } else {
      list.push({ labels, value: s.value });
    }
  }
  return out;
}

function registryArg(options) {
  if (options === null || typeof options !== 'object')
    throw new TypeError(`${WHERE}: options must be an object such as { registry: client.register }, received ${typeOf(options)}`);
  const { registry } = options;
  if (registry === null || typeof registry !== 'object' || typeof registry.registerMetric !== 'function' ||
      typeof registry.getSingleMetric !== 'function' || typeof registry.removeSingleMetric !== 'function')
    throw new TypeError(
      `${WHERE}: registry must be a prom-client Registry (client.register, or new client.Registry()), received ${typeOf(registry)}`);
  return registry;
}

/**
 * Exposes `limiter`'s metrics in `options.registry` (a prom-client
 * Registry) from now on, read at each scrape. `options.name`: the value of
 * a `limiter` label on its series (needed, and distinct, for a second
 * limiter in the same registry). Returns { unregister() }, which stops
 * exposing this limiter (and removes the metrics once no limiter is left).
 */
function registerTollgateMetrics(limiter, options) {
  const registry = registryArg(options);
  const src = source(limiter, options.name, WHERE);
  let state = states.get(registry);
  if (state !== undefined && state.sources.length === 0) state = undefined;
  checkJoin(state ? state.sources : [], src, WHERE, 'registry');
  const series = seriesOf(limiter);
  // Refuse before registering anything: a metric of the same name that is
  // not this module's.
  for (const name of series.keys()) {
    const there = registry.getSingleMetric(name);
    if (there !== undefined && !(state && state.metrics.get(name) === there))
      throw new Error(`${WHERE}: the registry already has a metric named ${name} (not tollgate's)`);
  }
  if (state === undefined) {
    state = new RegistryState(registry);
    states.set(registry, state);
  }
  for (const [name, [type, help]] of series) {
    let metric = state.metrics.get(name);
    if (metric === undefined) {
      const [known, knownHelp] = SERIES[name] || [type, help];
      metric = new TollgateMetric(state, name, known, knownHelp);
      state.metrics.set(name, metric);
    }
    // (again after a registry.clear())
    if (registry.getSingleMetric(name) !== metric) registry.registerMetric(metric);
  }
  // unregister(): the last limiter's removes the metrics from the registry.
  const st = state;
  return join(st, src, () => {
    for (const [name, metric] of st.metrics)
      if (registry.getSingleMetric(name) === metric) registry.removeSingleMetric(name);
    st.metrics.clear();
    if (states.get(registry) === st) states.delete(registry);
  });
}

module.exports = { registerTollgateMetrics };
