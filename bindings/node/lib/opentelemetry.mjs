// ESM entry of tollgate/opentelemetry: the CommonJS module, re-exported.
import opentelemetry from './opentelemetry.js';

export const { registerTollgateMetrics } = opentelemetry;
export default opentelemetry;
