// Types of tollgate/prometheus.
import type { Limiter } from './index';

/**
 * The part of a prom-client Registry (prom-client 13 or later) this uses:
 * client.register, or a new client.Registry().
 */
export interface PrometheusRegistry {
  registerMetric(metric: any): void;
  getSingleMetric(name: string): unknown;
  removeSingleMetric(name: string): void;
}

export interface PrometheusMetricsOptions {
  /** The registry to expose the limiter's series in. */
  registry: PrometheusRegistry;
  /**
   * The value of a `limiter` label on every series of this limiter; needed,
   * and distinct, for each limiter when a registry has several.
   */
  name?: string;
}

export interface TollgateMetricsRegistration {
  /** Stops exposing the limiter; the registry's last one removes tollgate's metrics from it. */
  unregister(): void;
}

/**
 * Exposes `limiter`'s metrics in a prom-client registry, read at each
 * scrape (one snapshot for all of them), under the library's names, types,
 * help and labels (docs/metrics.md). A closed limiter has no series.
 */
export declare function registerTollgateMetrics(
  limiter: Limiter,
  options: PrometheusMetricsOptions,
): TollgateMetricsRegistration;
