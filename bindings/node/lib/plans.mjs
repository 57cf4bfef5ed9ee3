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
  PROXY_HEADERS,
  AddressList,
  forwardedFor,
  FORBIDDEN_BODY,
  binding,
  headersFor,
  deniedBody,
  scopedKey,
} = plans;
export default plans;
