// ESM entry of tollgate/express: the CommonJS module, re-exported.
import express from './express.js';

export const { rateLimit, OUTCOMES } = express;
export default express;
