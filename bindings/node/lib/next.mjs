// ESM entry of tollgate/next: the CommonJS module, re-exported.
import next from './next.js';

export const { limit, withRateLimit, withHeaders, EDGE_MESSAGE } = next;
export default next;
