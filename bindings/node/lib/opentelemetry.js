'use strict';
// tollgate/opentelemetry: a limiter's metrics as observable instruments on
// an OpenTelemetry Meter (@opentelemetry/api 1.3 or later, an optional peer
// dependency: this module uses only the meter it is given; the application
// brings the SDK, its readers and exporters).
//
//   const { metrics } = require('@opentelemetry/api');
//   const { registerTollgateMetrics } = require('tollgate/opentelemetry');
//   registerTollgateMetrics(limiter, { meter: metrics.getMeter('myapp') });
//
// Instruments are named as the library names its series (docs/metrics.md),
// their attributes are the series' labels (policy, decision, source, node,
// kind):
//
// - every counter (tollgate_checks_total, ...): an ObservableCounter;
// - the gauges that count things (tollgate_memory_keys,
//   tollgate_store_in_flight, tollgate_async_pending): ObservableUpDownCounters, the others
//   (tollgate_store_up, tollgate_store_primary,
//   tollgate_cluster_slot_map_age_seconds): ObservableGauges;
// - the round-trip histogram (tollgate_store_round_trip_seconds, per Redis
//   node): two ObservableCounters, tollgate_store_round_trip_seconds_count
//   (round trips) and tollgate_store_round_trip_seconds_sum (their seconds).
//   OpenTelemetry has no asynchronous histogram, and the library's buckets
//   are cumulative counts of its own, which a synchronous Histogram could
//   not take without replaying observations; a cumulative count and sum give
//   the mean round trip over any interval (rate of the sum / rate of the
//   count). The buckets are in limiter.metrics() and tollgate/prometheus.
//
// One batch observable callback reads one snapshot of each limiter
// (limiter.metrics(): no I/O) per collection for every instrument.
//
// `name` adds a `limiter` attribute to the limiter's observations. Several
// limiters on one meter: register each with a distinct name (they share the
// instruments). unregister() stops observing a limiter (OpenTelemetry's API
// cannot remove an instrument: once no limiter is left, its instruments
// report nothing); a closed limiter has no observations.

const { ADDITIVE_GAUGES, source, checkJoin, join, seriesOf, read, typeOf } = require('./metrics');

const WHERE = 'registerTollgateMetrics';

// meter -> its tollgate state (the limiters, the instruments, the callback).
const states = new WeakMap();

function unitOf(name) {
  return name.endsWith('_seconds') ? 's' : '';
}

class MeterState {
  constructor(meter) {
    this.meter = meter;
    this.sources = [];
    // instrument name -> the instrument
    this.instruments = new Map();
    this.observables = [];
    this.callback = (observer) => this.observe(observer);
    this.added = false;
  }

  // The instruments of one series, unless made already.
  declare(name, type, help) {
    const m = this.meter;
    if (type === 'histogram') {
      this.make(m.createObservableCounter, `${name}_count`, '', `${help} (their number)`);
      this.make(m.createObservableCounter, `${name}_sum`, 's', `${help} (their sum)`);
    } else if (type === 'counter') {
      this.make(m.createObservableCounter, name, unitOf(name), help);
    } else if (ADDITIVE_GAUGES.has(name)) {
      this.make(m.createObservableUpDownCounter, name, unitOf(name), help);
    } else {
      this.make(m.createObservableGauge, name, unitOf(name), help);
    }
  }

  make(create, name, unit, description) {
    if (this.instruments.has(name)) return;
    this.instruments.set(name, create.call(this.meter, name, { description, unit }));
  }

  // The callback, registered again with every instrument it observes.
  attach() {
    if (this.added) this.meter.removeBatchObservableCallback(this.callback, this.observables);
    this.observables = [...this.instruments.values()];
    this.meter.addBatchObservableCallback(this.callback, this.observables);
    this.added = true;
  }

  detach() {
    if (!this.added) return;
    this.meter.removeBatchObservableCallback(this.callback, this.observables);
    this.added = false;
  }

  // One collection: one snapshot of every limiter.
  observe(observer) {
    const inst = this.instruments;
    for (const [attributes, s] of read(this.sources)) {
      if (s.type === 'histogram') {
        const count = inst.get(`${s.name}_count`);
        const sum = inst.get(`${s.name}_sum`);
        if (count !== undefined) observer.observe(count, s.count, attributes);
        if (sum !== undefined) observer.observe(sum, s.sum, attributes);
      } else {
        const i = inst.get(s.name);
        if (i !== undefined) observer.observe(i, s.value, attributes);
      }
    }
  }
}

function meterArg(options) {
  if (options === null || typeof options !== 'object')
    throw new TypeError(`${WHERE}: options must be an object such as { meter: metrics.getMeter('myapp') }, received ${typeOf(options)}`);
  const { meter } = options;
  const methods = ['createObservableCounter', 'createObservableGauge', 'createObservableUpDownCounter',
    'addBatchObservableCallback', 'removeBatchObservableCallback'];
  if (meter === null || typeof meter !== 'object' || methods.some((m) => typeof meter[m] !== 'function'))
    throw new TypeError(
      `${WHERE}: meter must be an OpenTelemetry Meter (@opentelemetry/api 1.3 or later: metrics.getMeter(name)), received ${typeOf(meter)}`);
  return meter;
}

/**
 * Observes `limiter`'s metrics through instruments on `options.meter` from
 * now on, read at each collection. `options.name`: the value of a `limiter`
 * attribute on its observations (needed, and distinct, for a second limiter
 * on the same meter). Returns { unregister() }, which stops observing it.
 */
function registerTollgateMetrics(limiter, options) {
  const meter = meterArg(options);
  const src = source(limiter, options.name, WHERE);
  let state = states.get(meter);
  checkJoin(state ? state.sources : [], src, WHERE, 'meter');
  const series = seriesOf(limiter);
  if (state === undefined) {
    state = new MeterState(meter);
    states.set(meter, state);
  }
  const before = state.instruments.size;
  for (const [name, [type, help]] of series) state.declare(name, type, help);
  if (!state.added || state.instruments.size !== before) state.attach();
  // unregister(): with no limiter left, the callback is removed.
  const st = state;
  return join(st, src, () => st.detach());
}

module.exports = { registerTollgateMetrics };
