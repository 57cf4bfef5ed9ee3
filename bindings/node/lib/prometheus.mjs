// ESM entry of tollgate/prometheus: the CommonJS module, re-exported.
import prometheus from './prometheus.js';

export const { registerTollgateMetrics } = prometheus;
export default prometheus;
