// Types of tollgate/opentelemetry.
import type { Limiter } from './index';

/**
 * The part of an OpenTelemetry Meter (@opentelemetry/api 1.3 or later) this
 * uses: metrics.getMeter(name), or a MeterProvider's getMeter().
 */
export interface OpenTelemetryMeter {
  createObservableCounter(name: string, options?: { description?: string; unit?: string }): any;
  createObservableGauge(name: string, options?: { description?: string; unit?: string }): any;
  createObservableUpDownCounter(name: string, options?: { description?: string; unit?: string }): any;
  addBatchObservableCallback(callback: (observer: any) => void | Promise<void>, observables: any[]): void;
  removeBatchObservableCallback(callback: (observer: any) => void | Promise<void>, observables: any[]): void;
}

export interface OpenTelemetryMetricsOptions {
  /** The meter to make the instruments on. */
  meter: OpenTelemetryMeter;
  /**
   * The value of a `limiter` attribute on every observation of this
   * limiter; needed, and distinct, for each limiter when a meter has several.
   */
  name?: string;
}

export interface TollgateInstrumentsRegistration {
  /** Stops observing the limiter (the instruments stay: the API cannot remove one). */
  unregister(): void;
}

/**
 * Observes `limiter`'s metrics through observable instruments on `meter`,
 * read at each collection (one snapshot for all of them): counters as
 * ObservableCounters, tollgate_memory_keys, tollgate_store_in_flight and
 * tollgate_async_pending as ObservableUpDownCounters, the other gauges as ObservableGauges, and the
 * round-trip histogram as two ObservableCounters, its _count and _sum.
 */
export declare function registerTollgateMetrics(
  limiter: Limiter,
  options: OpenTelemetryMetricsOptions,
): TollgateInstrumentsRegistration;
