// ESM entry of tollgate/plans: the CommonJS module, re-exported.
import plans from './plans.js';

export const {
  PLANS,
  DEFAULT_PLANS,
  HEADER_NAMES,
  MAX_KEY_VALUE,
  Limits,
  policiesFor,
  clientAddress,
  headerKey,
  organizationKey,
  normalizeAddress,
  binding,
  headersFor,
  deniedBody,
  scopedKey,
} = plans;
export default plans;
