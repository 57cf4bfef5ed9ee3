// ESM entry: a thin re-export of the CommonJS module.
import tollgate from './index.js';

export const {
  Limiter,
  Lease,
  Policy,
  policy,
  rateLimitHeaders,
  parsePeriod,
  version,
  versionNumber,
  TollgateError,
  ConnectionError,
  TimeoutError,
  AuthError,
  TLSError,
  ProtocolError,
  InvalidArgumentError,
  UnsupportedError,
  NothingToRefundError,
  LeaseLostError,
  BusyError,
  LeaseDeniedError,
  CODES,
  makeError,
} = tollgate;
export default tollgate;
