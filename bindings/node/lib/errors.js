'use strict';
// tollgate's error classes. Every error the library raises is a
// TollgateError whose `code` is the C library's RL_E_* name; wrong argument
// types raise a plain TypeError instead.

class TollgateError extends Error {
  constructor(message, code = 'RL_E_INTERNAL') {
    super(message);
    this.code = code;
  }
}
Object.defineProperty(TollgateError.prototype, 'name', {
  value: 'TollgateError', writable: true, configurable: true,
});

function subclass(name) {
  const C = class extends TollgateError {};
  Object.defineProperty(C, 'name', { value: name });
  Object.defineProperty(C.prototype, 'name', {
    value: name, writable: true, configurable: true,
  });
  return C;
}

const ConnectionError = subclass('ConnectionError');
const TimeoutError = subclass('TimeoutError');
const AuthError = subclass('AuthError');
const TLSError = subclass('TLSError');
const ProtocolError = subclass('ProtocolError');
const InvalidArgumentError = subclass('InvalidArgumentError');
const UnsupportedError = subclass('UnsupportedError');
// A refund found no usage to give back under any of its policies: the key
// was never charged, was given back already, or time refilled it. Nothing
// was written.
const NothingToRefundError = subclass('NothingToRefundError');
// A lease's renew found it no longer held: it expired (its ttl passed) or
// was released. The work it guarded is no longer counted; code
// RL_E_NOT_FOUND, as the C library answers.
const LeaseLostError = subclass('LeaseLostError');
// Back-pressure: the limiter already has maxAsync checks waiting for the
// store (RL_E_BUSY), so this one was refused at once; nothing was sent or
// queued.
const BusyError = subclass('BusyError');

// limiter.withLease() was denied: the key has maxInFlight leases held. Not
// a TollgateError (nothing failed: the limit answered), so a handler that
// treats TollgateErrors as store trouble does not mistake a denial for one.
// `retryAfter` is the ms until the earliest held lease ends (a release may
// come sooner).
class LeaseDeniedError extends Error {
  constructor(message, details = {}) {
    super(message);
    this.key = details.key;
    this.retryAfter = details.retryAfter;
    this.inFlight = details.inFlight;
    this.maxInFlight = details.maxInFlight;
    this.source = details.source;
  }
}
Object.defineProperty(LeaseDeniedError.prototype, 'name', {
  value: 'LeaseDeniedError', writable: true, configurable: true,
});

// RL_E_* codes (never renumbered; tollgate.h).
const CODES = Object.freeze({
  RL_E_INVALID_ARG: -1,
  RL_E_KEY_INVALID: -2,
  RL_E_KEY_TOO_LONG: -3,
  RL_E_POLICY: -4,
  RL_E_OVERFLOW: -5,
  RL_E_VERSION: -6,
  RL_E_NOMEM: -7,
  RL_E_URL: -8,
  RL_E_UNSUPPORTED: -9,
  RL_E_INTERNAL: -10,
  RL_E_CONNECT: -11,
  RL_E_TIMEOUT: -12,
  RL_E_AUTH: -13,
  RL_E_TLS: -14,
  RL_E_PROTOCOL: -15,
  RL_E_STORE: -16,
  RL_E_CLOSED: -17,
  RL_E_DONE: -18,
  RL_E_NOT_FOUND: -19,
  RL_E_BUSY: -20,
});
const NAMES = new Map(Object.entries(CODES).map(([k, v]) => [v, k]));

const CLASS_OF = {
  RL_E_CONNECT: ConnectionError,
  RL_E_CLOSED: ConnectionError,
  RL_E_TIMEOUT: TimeoutError,
  RL_E_AUTH: AuthError,
  RL_E_TLS: TLSError,
  RL_E_PROTOCOL: ProtocolError,
  RL_E_STORE: ProtocolError,
  RL_E_INVALID_ARG: InvalidArgumentError,
  RL_E_KEY_INVALID: InvalidArgumentError,
  RL_E_KEY_TOO_LONG: InvalidArgumentError,
  RL_E_POLICY: InvalidArgumentError,
  RL_E_OVERFLOW: InvalidArgumentError,
  RL_E_URL: InvalidArgumentError,
  RL_E_UNSUPPORTED: UnsupportedError,
  RL_E_NOT_FOUND: NothingToRefundError,
  RL_E_BUSY: BusyError,
};

// The error for a code (a number, as the C library returns, or its name).
function makeError(code, message) {
  const name = typeof code === 'number' ? (NAMES.get(code) || 'RL_E_INTERNAL') : code;
  const C = CLASS_OF[name] || TollgateError;
  return new C(message, name);
}

module.exports = {
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
};
