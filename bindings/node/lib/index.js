'use strict';
// tollgate for Node.js: a rate limiter shared by many servers and many
// languages. This file validates arguments and shapes results; the checks,
// the stores and the header text are the C library's (src/addon.cpp over
// tollgate.h), so every binding decides and formats alike.

const path = require('node:path');
const errors = require('./errors');

const {
  TollgateError,
  InvalidArgumentError,
  UnsupportedError,
  LeaseLostError,
  LeaseDeniedError,
  makeError,
} = errors;

function loadAddon() {
  // The native addon, found by lib/native.js; the first of these that loads:
  //   - TOLLGATE_NODE_ADDON, a path (tests and tools);
  //   - this package's own build, build/Release (or Debug, RelWithDebInfo):
  //     made by the install script (scripts/install.js) when no prebuilt
  //     addon fits this machine, or by `npm run build` in a checkout;
  //   - the prebuilt addon the npm tarball carries for this platform,
  //     prebuilds/<platform>-<arch>/tollgate.node (Node-API 8: one binary
  //     serves every Node.js >= 18; scripts/package-node.sh makes it).
  // When none loads, the error says what was there, what went wrong and
  // what to run: no prebuilt addon for this platform and the install script
  // skipped (--ignore-scripts), a prebuilt addon this system cannot load
  // (with its dlopen error), or this file bundled away from its package
  // (webpack, e.g. a Next.js build of a linked package).
  const { loadNative } = require('./native');
  return loadNative(path.join(__dirname, '..'), {
    env: process.env,
    platform: process.platform,
    arch: process.arch,
    // webpack defines __webpack_require__ in every module it bundles (and
    // replaces this typeof with "function"); Node.js has no such variable.
    // eslint-disable-next-line no-undef
    bundled: typeof __webpack_require__ === 'function',
  });
}

const native = loadAddon();

// ---- Shared result buffers and factories ------------------------------------

const SOURCES = Object.freeze([
  'store', 'deny_cache', 'fail_open', 'fail_closed', 'local', 'allow_list', 'deny_list',
]);
const SOURCE_CODES = new Map(SOURCES.map((s, i) => [s, i]));

// The synchronous check writes its decision here (allowed, limit, remaining,
// resetAfter, retryAfter, source, policyIndex, shadow); multi-policy ids go
// in IDS.
const OUT = new Float64Array(8);
const MAX_POLICIES = native.maxPolicies; // RL_MAX_POLICIES
const MAX_KEYS = native.maxKeys; // RL_MAX_KEYS: the most pairs of one checkKeys
const IDS = new Int32Array(MAX_POLICIES);
// The synchronous check's numeric arguments (handle, policy id, cost): typed
// array stores are cheaper than napi reads of three more arguments.
const IN = new Float64Array(3);

// A Decision is a plain object, read-only in the TypeScript declarations
// but not frozen: Object.freeze cost about a fifth of a checkSync() call.
function makeDecision(allowed, limit, remaining, resetAfter, retryAfter, source, policyIndex, shadow) {
  return {
    allowed,
    limit,
    remaining,
    resetAfter,
    retryAfter: retryAfter < 0 ? Infinity : retryAfter,
    source: SOURCES[source] || 'unknown',
    policyIndex,
    shadow: shadow === true,
  };
}

function readDecision() {
  const o = OUT;
  const retry = o[4];
  return {
    allowed: o[0] === 1,
    limit: o[1],
    remaining: o[2],
    resetAfter: o[3],
    retryAfter: retry < 0 ? Infinity : retry,
    source: SOURCES[o[5]] || 'unknown',
    policyIndex: o[6],
    shadow: o[7] === 1,
  };
}

// Async checks (Redis) in flight: each promise's resolve and reject by slot.
// The addon writes finished checks into DONE (9 values each: the slot, then
// the decision as in OUT) and calls settle(count) once per batch, instead of
// settling each promise through Node-API.
const DONE_ENTRIES = 256;
const DONE_STRIDE = 9;
const DONE = new Float64Array(DONE_ENTRIES * DONE_STRIDE);
const resolvers = [];
const rejecters = [];
const freeSlots = [];

function takeSlot(resolve, reject) {
  const slot = freeSlots.length > 0 ? freeSlots.pop() : resolvers.length;
  resolvers[slot] = resolve;
  rejecters[slot] = reject;
  return slot;
}

function releaseSlot(slot) {
  resolvers[slot] = undefined;
  rejecters[slot] = undefined;
  freeSlots.push(slot);
}

function settle(count) {
  const d = DONE;
  for (let i = 0, o = 0; i < count; i++, o += DONE_STRIDE) {
    const slot = d[o];
    const resolve = resolvers[slot];
    releaseSlot(slot);
    const retry = d[o + 5];
    resolve({
      allowed: d[o + 1] === 1,
      limit: d[o + 2],
      remaining: d[o + 3],
      resetAfter: d[o + 4],
      retryAfter: retry < 0 ? Infinity : retry,
      source: SOURCES[d[o + 6]] || 'unknown',
      policyIndex: d[o + 7],
      shadow: d[o + 8] === 1,
    });
  }
}

function settleError(slot, err) {
  const reject = rejecters[slot];
  releaseSlot(slot);
  reject(err);
}

native.setup(makeError, makeDecision, OUT, IDS, IN, settle, settleError, DONE);
const nativeCheckKey = native.check;

// The string key whose UTF-8 bytes the addon keeps from the last check that
// answered true: the same string again is passed as no key at all, and not
// converted again (a hot key). Strings are immutable, so the bytes match.
let lastKey = null;

// The synchronous check: the decision lands in OUT (read it with
// readDecision()); errors throw.
function nativeCheck(handle, key, pid, cost) {
  IN[0] = handle;
  IN[1] = pid;
  IN[2] = cost;
  if (key === lastKey) {
    nativeCheckKey();
  } else if (nativeCheckKey(key) === true) {
    lastKey = key;
  }
}

// ---- Small helpers ----------------------------------------------------------

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') {
    const name = v.constructor && v.constructor.name;
    return name ? 'an instance of ' + name : 'an object';
  }
  return typeof v;
}

function typeError(what, expected, v) {
  return new TypeError(`${what} must be ${expected}, received ${typeOf(v)}`);
}

function closedError() {
  return makeError('RL_E_CLOSED', 'the limiter is closed');
}

function isKey(key) {
  return typeof key === 'string' || key instanceof Uint8Array;
}

function keyTypeError(key) {
  return typeError('key', 'a string, Buffer or Uint8Array', key);
}

// ---- Policies ---------------------------------------------------------------

const ALGORITHMS = Object.freeze(['gcra', 'token_bucket', 'fixed_window', 'sliding_window']);
const ALGORITHM_CODES = new Map(ALGORITHMS.map((a, i) => [a, i]));

// "500ms", "1.5s", "15m", "1 hour" -> milliseconds: the library's one
// period syntax (rl_period_parse), so every language reads a period alike.
// Its errors are InvalidArgumentErrors (RL_E_POLICY, RL_E_OVERFLOW).
function parsePeriodText(text) {
  return native.parsePeriod(text);
}

function periodMsOf(period) {
  if (typeof period === 'number') {
    if (!Number.isInteger(period))
      throw new InvalidArgumentError(
        `period: ${period} is not a whole number of milliseconds`, 'RL_E_POLICY');
    return period;
  }
  if (typeof period === 'string') return parsePeriodText(period);
  throw typeError('period', 'integer milliseconds (number) or a string such as "1s" or "15m"', period);
}

// A period text read for `what` (a block, a strikes period): the period
// parser's error, named after `what` and given `code` (its own if absent).
function durationText(text, what, code) {
  try {
    return parsePeriodText(text);
  } catch (e) {
    if (!(e instanceof TollgateError)) throw e;
    throw new InvalidArgumentError(`${what}: ${e.message.replace(/^period: /, '')}`, code || e.code);
  }
}

// A policy's block or strikes period: a period, at least 1 ms (leave the
// option out for none).
function policyDurationMs(v, what) {
  let ms;
  if (typeof v === 'number') {
    if (!Number.isInteger(v))
      throw new InvalidArgumentError(`${what}: ${v} is not a whole number of milliseconds`, 'RL_E_POLICY');
    ms = v;
  } else if (typeof v === 'string') {
    ms = durationText(v, what);
  } else {
    throw typeError(what, 'integer milliseconds (number) or a string such as "15m" or "1h"', v);
  }
  if (ms < 1)
    throw new InvalidArgumentError(`${what}: must be at least 1 ms (got ${ms} ms; leave it out for none)`, 'RL_E_POLICY');
  return ms;
}

// limiter.block()'s duration: a period; the library checks its range
// (1 ms .. 2^40 ms). Every bad duration is RL_E_INVALID_ARG, as the
// library's own check says.
function blockDurationMs(v) {
  if (typeof v === 'number') {
    if (!Number.isInteger(v))
      throw new InvalidArgumentError(
        `block: the duration ${v} is not a whole number of milliseconds`, 'RL_E_INVALID_ARG');
    if (!Number.isSafeInteger(v))
      throw new InvalidArgumentError(`block: the duration must be 1 ms to 2^40 ms (got ${v})`, 'RL_E_INVALID_ARG');
    return v;
  }
  if (typeof v === 'string') return durationText(v, 'block duration', 'RL_E_INVALID_ARG');
  throw typeError('duration', 'integer milliseconds (number) or a string such as "15m" or "1h"', v);
}

function intOption(v, what) {
  if (typeof v !== 'number') throw typeError(what, 'an integer (number)', v);
  if (!Number.isInteger(v)) throw new TypeError(`${what} must be an integer, received ${v}`);
  return v;
}

const kId = Symbol('tollgate.policyId');

// A validated policy: at most `limit` units per `period` (milliseconds).
class Policy {
  constructor(limit, period, opts) {
    if (opts !== undefined && (opts === null || typeof opts !== 'object'))
      throw typeError('policy options', 'an object', opts);
    const algorithm = opts && opts.algorithm !== undefined ? opts.algorithm : 'gcra';
    const burst = opts && opts.burst !== undefined && opts.burst !== null ? opts.burst : undefined;
    const name = opts && opts.name !== undefined && opts.name !== null ? opts.name : undefined;
    const given = (k) => (opts && opts[k] !== undefined && opts[k] !== null ? opts[k] : undefined);
    const block = given('block');
    const strikes = given('strikes');
    const strikesPeriod = given('strikesPeriod');
    const shadow = given('shadow');
    intOption(limit, 'limit');
    const periodMs = periodMsOf(period);
    if (typeof algorithm !== 'string') throw typeError('algorithm', 'a string', algorithm);
    const alg = ALGORITHM_CODES.get(algorithm);
    if (alg === undefined)
      throw new InvalidArgumentError(
        `algorithm: unknown '${algorithm}' (expected 'gcra', 'token_bucket', 'fixed_window' or 'sliding_window')`,
        'RL_E_POLICY');
    if (limit < 1)
      throw new InvalidArgumentError(`limit: must be >= 1 (got ${limit})`, 'RL_E_POLICY');
    if (periodMs < 1)
      throw new InvalidArgumentError(`period: must be at least 1 ms (got ${periodMs} ms)`, 'RL_E_POLICY');
    let b = 0;
    if (burst !== undefined) {
      intOption(burst, 'burst');
      if (alg >= 2)
        throw new InvalidArgumentError(
          `burst: applies to 'gcra' and 'token_bucket' only, not '${algorithm}' (leave it out)`,
          'RL_E_POLICY');
      if (burst < 1)
        throw new InvalidArgumentError(
          `burst: must be >= 1 (got ${burst}; leave it out for the same as limit)`, 'RL_E_POLICY');
      b = burst;
    }
    if (name !== undefined) {
      if (typeof name !== 'string') throw typeError('name', 'a string', name);
      if (name === '')
        throw new InvalidArgumentError(
          'name: must not be empty (leave it out for no name; a name is 1 to 32 of A-Z a-z 0-9 _ . - starting with a letter)',
          'RL_E_POLICY');
    }
    // A block: when this policy denies a charge, the key is denied by every
    // policy for `block` ms; with strikes, from the strikes-th denial within
    // one (epoch-aligned) strikesPeriod window.
    const blockMs = block === undefined ? undefined : policyDurationMs(block, 'block');
    if (strikes !== undefined) {
      intOption(strikes, 'strikes');
      if (strikes < 1)
        throw new InvalidArgumentError(
          `strikes: must be >= 1 (got ${strikes}; leave it out for a block at the first denial)`, 'RL_E_POLICY');
    }
    const strikesPeriodMs =
      strikesPeriod === undefined ? undefined : policyDurationMs(strikesPeriod, 'strikesPeriod');
    if (strikes !== undefined && blockMs === undefined)
      throw new InvalidArgumentError(
        "strikes: need a block (the 'block' option, as in { block: '15m', strikes: 3, strikesPeriod: '1h' }): they say after how many denials the block starts",
        'RL_E_POLICY');
    if (strikes !== undefined && strikesPeriodMs === undefined)
      throw new InvalidArgumentError(
        "strikes: need strikesPeriod, the window they are counted in (as in { strikes: 3, strikesPeriod: '1h' })",
        'RL_E_POLICY');
    if (strikesPeriodMs !== undefined && strikes === undefined)
      throw new InvalidArgumentError(
        "strikesPeriod: needs strikes, how many denials within it start the block (as in { strikes: 3, strikesPeriod: '1h' })",
        'RL_E_POLICY');
    // Shadow mode (docs/algorithms.md, "Shadow mode"): evaluated and its
    // state kept as if enforced, but its denial does not deny the check.
    if (shadow !== undefined && typeof shadow !== 'boolean') throw typeError('shadow', 'a boolean', shadow);
    // The library validates the name (RL_E_POLICY) and the block's bounds
    // (RL_E_OVERFLOW beyond 2^40).
    const id = native.compilePolicy(alg, limit, periodMs, b, name, blockMs, strikes, strikesPeriodMs, shadow === true);
    this.limit = limit;
    this.period = periodMs;
    this.algorithm = algorithm;
    this.burst = b === 0 ? undefined : b;
    // The policy's identity under a key (undefined: its position in a check's list).
    this.name = name;
    // Milliseconds, a count and milliseconds; undefined when absent.
    this.block = blockMs;
    this.strikes = strikes;
    this.strikesPeriod = strikesPeriodMs;
    // Shadow mode: not part of the identity (turning it off keeps usage).
    this.shadow = shadow === true;
    Object.defineProperty(this, kId, { value: id });
    Object.freeze(this);
  }

  /**
   * A policy from the library's one text syntax (rl_policy_parse): "100/h",
   * "100 per 15m", "10/s burst=20", "5000/d sliding_window",
   * "100/h name=hourly", "5/m name=login block=15m strikes=3/h",
   * "100/h shadow".
   */
  static parse(text) {
    if (typeof text !== 'string') throw typeError('policy text', 'a string', text);
    const f = native.parsePolicy(text);
    return new Policy(f.limit, f.periodMs, {
      algorithm: ALGORITHMS[f.algorithm],
      burst: f.burst === 0 ? undefined : f.burst,
      name: f.name,
      block: f.blockMs,
      strikes: f.strikes,
      strikesPeriod: f.strikesPeriodMs,
      shadow: f.shadow === true,
    });
  }

  toString() {
    let r = `Policy(${this.limit}, ${periodText(this.period)}`;
    if (this.algorithm !== 'gcra') r += `, ${this.algorithm}`;
    if (this.burst !== undefined) r += `, burst=${this.burst}`;
    if (this.name !== undefined) r += `, name=${this.name}`;
    if (this.block !== undefined) r += `, block=${periodText(this.block)}`;
    if (this.strikes !== undefined) r += `, strikes=${this.strikes}/${periodText(this.strikesPeriod)}`;
    if (this.shadow) r += ', shadow';
    return r + ')';
  }

  toJSON() {
    const o = { limit: this.limit, period: this.period, algorithm: this.algorithm };
    if (this.burst !== undefined) o.burst = this.burst;
    if (this.name !== undefined) o.name = this.name;
    if (this.block !== undefined) o.block = this.block;
    if (this.strikes !== undefined) {
      o.strikes = this.strikes;
      o.strikesPeriod = this.strikesPeriod;
    }
    if (this.shadow) o.shadow = true;
    return o;
  }
}

function periodText(ms) {
  for (const [u, n] of [['d', 86400000], ['h', 3600000], ['m', 60000], ['s', 1000]])
    if (ms % n === 0) return `${ms / n}${u}`;
  return `${ms}ms`;
}

function policy(limit, period, opts) {
  return new Policy(limit, period, opts);
}

// Plain-object policies: compiled once per object, re-checked on each use
// (the object may have been changed since).
const plainCache = new WeakMap();
// The plain object used last and its plainCache entry: a caller passes the
// same object again and again, and this skips the WeakMap lookup.
let lastPlain = null;
let lastPlainEntry = null;

function policyId(p, where) {
  if (p !== null && typeof p === 'object') {
    const id = p[kId];
    if (id !== undefined) return id;
    if (Array.isArray(p)) throw typeError(where, 'a Policy or a policy object', p);
    const c = p === lastPlain ? lastPlainEntry : plainCache.get(p);
    if (c !== undefined && c.limit === p.limit && c.period === p.period &&
        c.algorithm === p.algorithm && c.burst === p.burst && c.name === p.name &&
        c.block === p.block && c.strikes === p.strikes && c.strikesPeriod === p.strikesPeriod &&
        c.shadow === p.shadow) {
      lastPlain = p;
      lastPlainEntry = c;
      return c.id;
    }
    const compiled = new Policy(p.limit, p.period, {
      algorithm: p.algorithm, burst: p.burst, name: p.name,
      block: p.block, strikes: p.strikes, strikesPeriod: p.strikesPeriod, shadow: p.shadow,
    });
    const entry = {
      limit: p.limit, period: p.period, algorithm: p.algorithm, burst: p.burst, name: p.name,
      block: p.block, strikes: p.strikes, strikesPeriod: p.strikesPeriod, shadow: p.shadow,
      policy: compiled, id: compiled[kId],
    };
    plainCache.set(p, entry);
    lastPlain = p;
    lastPlainEntry = entry;
    return entry.id;
  }
  throw typeError(where, 'a Policy or a policy object', p);
}

// The Policy for a policy input (a Policy, or a plain object's compiled copy).
function asPolicy(p) {
  if (p instanceof Policy) return p;
  policyId(p, 'policy');
  return plainCache.get(p).policy;
}

// One policy -> its id; an array of 1..MAX_POLICIES -> -n with the ids in IDS.
function policyArg(p) {
  if (!Array.isArray(p)) return policyId(p, 'policy');
  const n = p.length;
  if (n < 1 || n > MAX_POLICIES)
    throw new InvalidArgumentError(`policies: expected 1 to ${MAX_POLICIES} policies, got ${n}`, 'RL_E_INVALID_ARG');
  if (n === 1) return policyId(p[0], 'policies[0]');
  for (let i = 0; i < n; ++i) IDS[i] = policyId(p[i], `policies[${i}]`);
  return -n;
}

// checkKeys' pairs -> { keys, counts, ids }: each pair's key, its number of
// policies and every pair's policy ids, pair by pair. A pair is [key,
// policies] or { key, policies }; policies as check() takes them.
function pairsArg(pairs) {
  if (!Array.isArray(pairs))
    throw typeError('pairs', 'an array of [key, policies] pairs (or { key, policies } objects)', pairs);
  const n = pairs.length;
  if (n < 1 || n > MAX_KEYS)
    throw new InvalidArgumentError(
      `pairs: expected 1 to ${MAX_KEYS} (key, policies) pairs, got ${n}`, 'RL_E_INVALID_ARG');
  const keys = new Array(n);
  const counts = new Array(n);
  const ids = [];
  for (let j = 0; j < n; ++j) {
    const pair = pairs[j];
    let key;
    let policies;
    if (Array.isArray(pair)) {
      if (pair.length !== 2)
        throw new TypeError(`pairs[${j}] must be [key, policies] (2 items), received an array of ${pair.length}`);
      key = pair[0];
      policies = pair[1];
    } else if (pair !== null && typeof pair === 'object') {
      key = pair.key;
      policies = pair.policies;
    } else {
      throw typeError(`pairs[${j}]`, '[key, policies] or { key, policies }', pair);
    }
    if (!isKey(key)) throw typeError(`pairs[${j}] key`, 'a string, Buffer or Uint8Array', key);
    if (Array.isArray(policies)) {
      const m = policies.length;
      if (m < 1 || m > MAX_POLICIES)
        throw new InvalidArgumentError(
          `pairs[${j}] policies: expected 1 to ${MAX_POLICIES} policies, got ${m}`, 'RL_E_INVALID_ARG');
      if (ids.length + m > MAX_POLICIES) throw tooManyPolicies(pairs);
      for (let i = 0; i < m; ++i) ids.push(policyId(policies[i], `pairs[${j}] policies[${i}]`));
      counts[j] = m;
    } else {
      if (ids.length + 1 > MAX_POLICIES) throw tooManyPolicies(pairs);
      ids.push(policyId(policies, `pairs[${j}] policy`));
      counts[j] = 1;
    }
    keys[j] = key;
  }
  return { keys, counts, ids };
}

function tooManyPolicies(pairs) {
  let total = 0;
  for (const pair of pairs) {
    const p = Array.isArray(pair) ? pair[1] : pair !== null && typeof pair === 'object' ? pair.policies : null;
    total += Array.isArray(p) ? p.length : 1;
  }
  return new InvalidArgumentError(
    `policies: at most ${MAX_POLICIES} in all the pairs, got ${total}`, 'RL_E_INVALID_ARG');
}

// The pair a checkKeys decision reports: policyIndex counts the policies
// pair by pair.
function pairOf(counts, policyIndex) {
  let j = 0;
  let first = 0;
  while (j < counts.length - 1 && policyIndex >= first + counts[j]) first += counts[j++];
  return j;
}

function costArg(options) {
  if (options === undefined) return 1;
  if (options === null || typeof options !== 'object')
    throw typeError('check options', 'an object such as { cost: 1 }', options);
  const cost = options.cost;
  // A wait given to a call that does not wait (a silent one-try otherwise).
  if (options.maxWait !== undefined)
    throw new TypeError('maxWait: check(), checkSync() and checkKeys() do not wait; checkWait() does');
  return costOf(cost);
}

// A check's `cost` option (undefined: 1).
function costOf(cost) {
  if (cost === undefined) return 1;
  if (typeof cost !== 'number') throw typeError('cost', 'an integer (number)', cost);
  if (!Number.isInteger(cost)) throw new TypeError(`cost must be an integer, received ${cost}`);
  if (cost > Number.MAX_SAFE_INTEGER)
    throw new InvalidArgumentError('cost: beyond 2^53 (not exact in JS)', 'RL_E_OVERFLOW');
  return cost;
}

// ---- Limiter options ---------------------------------------------------------

const NUMBER_OPTIONS = [
  'maxKeys', 'maxKeyLen', 'shards', 'connectTimeoutMs', 'timeoutMs', 'localDivisor',
  'denyCacheSize', 'connections', 'reconnectMaxMs',
];
const STRING_OPTIONS = [
  'url', 'keyPrefix', 'username', 'password', 'tlsCaFile', 'tlsCaDir', 'tlsCertFile',
  'tlsKeyFile', 'tlsServerName',
];
// true: 1, false: -1 (the C fields' "off"; 0 is "the default"). `metrics`
// (docs/metrics.md): false stops counting decisions per policy label.
const BOOLEAN_OPTIONS = ['denyCache', 'tlsVerify', 'metrics'];
const KNOWN_OPTIONS = new Set([
  ...NUMBER_OPTIONS, ...STRING_OPTIONS, ...BOOLEAN_OPTIONS, 'failureMode', 'clock', 'spinUs', 'maxAsync', 'shadow',
  'allow', 'deny', 'onLog', 'logLevel', 'driver',
]);
const FAILURE_MODES = native.failureModes;

function nativeOptions(options) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options))
    throw typeError('Limiter options', 'an object', options);
  const out = {};
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) throw new TypeError(`Limiter: unknown option '${name}'`);
  }
  for (const name of NUMBER_OPTIONS) {
    const v = options[name];
    if (v === undefined) continue;
    // Never echo a value here (a wrong option may hold a secret).
    if (typeof v !== 'number') throw typeError(name, 'a non-negative integer (number)', v);
    if (!Number.isInteger(v) || v < 0)
      throw new InvalidArgumentError(`${name}: must be a non-negative integer`, 'RL_E_INVALID_ARG');
    out[name] = v;
  }
  for (const name of STRING_OPTIONS) {
    const v = options[name];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw typeError(name, 'a string', v);
    out[name] = v;
  }
  for (const name of BOOLEAN_OPTIONS) {
    const v = options[name];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw typeError(name, 'a boolean', v);
    out[name] = v ? 1 : -1;
  }
  if (options.failureMode !== undefined) {
    const v = options.failureMode;
    if (typeof v !== 'string') throw typeError('failureMode', "'open', 'closed', 'local' or 'error'", v);
    if (!Object.prototype.hasOwnProperty.call(FAILURE_MODES, v))
      throw new InvalidArgumentError(
        `failureMode: unknown '${v}' (expected 'open', 'closed', 'local' or 'error')`, 'RL_E_INVALID_ARG');
    out.failureMode = FAILURE_MODES[v];
  }
  if (options.spinUs !== undefined) {
    // 0 means "never spin" here; the C field's 0 is "the default".
    const v = options.spinUs;
    if (typeof v !== 'number') throw typeError('spinUs', 'an integer 0 .. 1000 (number)', v);
    if (!Number.isInteger(v) || v < 0 || v > 1000)
      throw new InvalidArgumentError('spinUs: must be an integer 0 .. 1000', 'RL_E_INVALID_ARG');
    out.spinUs = v > 0 ? v : -1;
  }
  if (options.maxAsync !== undefined) {
    // 0 means "no bound" here (as the URL's ?max_async=0); the C field's 0
    // is "the default" and its -1 "no bound".
    const v = options.maxAsync;
    if (typeof v !== 'number') throw typeError('maxAsync', 'an integer 0 .. 2147483647 (number)', v);
    if (!Number.isInteger(v) || v < 0 || v > 2147483647)
      throw new InvalidArgumentError('maxAsync: must be an integer 0 (no bound) .. 2147483647', 'RL_E_INVALID_ARG');
    out.maxAsync = v > 0 ? v : -1;
  }
  if (options.driver !== undefined) {
    // Who reads the Redis replies (docs/architecture.md, "Drivers").
    const v = options.driver;
    if (typeof v !== 'string') throw typeError('driver', "'auto', 'loop' or 'thread'", v);
    if (v !== 'auto' && v !== 'loop' && v !== 'thread')
      throw new InvalidArgumentError(`driver: unknown '${v}' (expected 'auto', 'loop' or 'thread')`, 'RL_E_INVALID_ARG');
    out.driver = v;
  }
  if (out.driver === undefined || out.driver === 'auto') {
    // The environment says what 'auto' means (docs/node.md): 'loop' there
    // is the loop wherever it can drive (not TLS), without an error where
    // it cannot. For a deployment, or a suite run both ways.
    const env = process.env.TOLLGATE_DRIVER;
    if (env) {
      if (env !== 'auto' && env !== 'loop' && env !== 'thread')
        throw new InvalidArgumentError(`TOLLGATE_DRIVER: unknown '${env}' (expected 'auto', 'loop' or 'thread')`, 'RL_E_INVALID_ARG');
      out.driver = env === 'loop' ? 'auto-loop' : env;
    }
  }
  if (options.shadow !== undefined && options.shadow !== null) {
    // 1: the whole limiter in shadow mode; 0 (the C default): enforce.
    if (typeof options.shadow !== 'boolean') throw typeError('shadow', 'a boolean', options.shadow);
    out.shadow = options.shadow ? 1 : 0;
  }
  // The allow and deny lists (docs/exemptions.md): set by the addon once the
  // limiter exists, before it is handed out.
  for (const name of ['allow', 'deny']) {
    if (options[name] !== undefined && options[name] !== null) out[name] = listEntries(options[name], name);
  }
  if (options.clock !== undefined) {
    if (typeof options.clock !== 'function')
      throw typeError('clock', 'a function returning integer microseconds since the epoch', options.clock);
    out.clock = options.clock;
  }
  // The log hook (docs/metrics.md, "Logs"): the handler and its level; the
  // Limiter wraps the handler (the addon calls the wrapper).
  if (options.onLog !== undefined && options.onLog !== null) {
    out.onLog = logHandlerArg(options.onLog, 'onLog');
    out.logLevel = logLevelArg(options.logLevel, 'logLevel');
  } else if (options.logLevel !== undefined) {
    logLevelArg(options.logLevel, 'logLevel');
    throw new TypeError(
      "logLevel: goes with onLog, the handler it filters (as in { onLog: (entry) => ..., logLevel: 'warn' })");
  }
  return out;
}

// ---- Logs (docs/metrics.md, "Logs") -------------------------------------------

// RL_LOG_ERROR (1) .. RL_LOG_DEBUG (4), by name.
const LOG_LEVELS = Object.freeze(['error', 'warn', 'info', 'debug']);

// A log level option -> 1 .. 4; undefined: 'info' (the store's episodes:
// warn when one starts, info when it ends).
function logLevelArg(level, what) {
  if (level === undefined) return 3;
  if (typeof level !== 'string') throw typeError(what, "'error', 'warn', 'info' or 'debug'", level);
  const i = LOG_LEVELS.indexOf(level);
  if (i < 0) throw new RangeError(`${what}: unknown level '${level}' (expected 'error', 'warn', 'info' or 'debug')`);
  return i + 1;
}

function logHandlerArg(handler, what) {
  if (typeof handler !== 'function')
    throw typeError(what, 'a function ({ level, message }) => void', handler);
  return handler;
}

// An allow or deny list's entries (an iterable of strings, Buffers and
// Uint8Arrays: exact keys, IP addresses, CIDR ranges) -> an array for the
// addon. The library checks the entries themselves and names a bad one by
// its index, never echoing it.
function listEntries(entries, what) {
  if (entries === null || typeof entries !== 'object' || typeof entries[Symbol.iterator] !== 'function' ||
      entries instanceof Uint8Array)
    throw typeError(what, 'an array of strings (keys, IP addresses, CIDR ranges)', entries);
  const out = [];
  let i = 0;
  for (const e of entries) {
    if (typeof e !== 'string' && !(e instanceof Uint8Array))
      throw typeError(`${what}[${i}]`, 'a string, Buffer or Uint8Array', e);
    out.push(e);
    i++;
  }
  return out;
}

// A refund's amount -> the negative cost that gives it back.
function refundCost(options) {
  if (options === undefined) return -1;
  if (options === null || typeof options !== 'object')
    throw typeError('refund options', 'an object such as { amount: 1 }', options);
  const amount = options.amount;
  if (amount === undefined) return -1;
  if (typeof amount !== 'number') throw typeError('amount', 'a positive integer (number)', amount);
  if (!Number.isInteger(amount)) throw new TypeError(`amount must be an integer, received ${amount}`);
  if (amount < 1)
    throw new InvalidArgumentError(`amount: must be >= 1 (got ${amount})`, 'RL_E_INVALID_ARG');
  if (amount > Number.MAX_SAFE_INTEGER)
    throw new InvalidArgumentError('amount: at most 2^53 - 1 (beyond is not exact in JS)', 'RL_E_INVALID_ARG');
  return -amount;
}

// ---- Leases ------------------------------------------------------------------

const MAX_IN_FLIGHT = native.maxInFlight; // RL_MAX_IN_FLIGHT
const MAX_LEASE_TTL = native.maxLeaseTtl; // RL_MAX_LEASE_TTL_MS (2^40)

// acquire()'s options -> [maxInFlight, ttl ms].
function leaseOptions(options) {
  if (options === null || typeof options !== 'object')
    throw typeError('lease options', "an object such as { maxInFlight: 10, ttl: '30s' }", options);
  const max = options.maxInFlight;
  if (typeof max !== 'number') throw typeError('maxInFlight', 'an integer (number)', max);
  if (!Number.isInteger(max)) throw new TypeError(`maxInFlight must be an integer, received ${max}`);
  if (max < 1 || max > MAX_IN_FLIGHT)
    throw new InvalidArgumentError(`maxInFlight: must be 1 to ${MAX_IN_FLIGHT} (got ${max})`, 'RL_E_INVALID_ARG');
  if (options.ttl === undefined)
    throw new TypeError(
      "ttl is required: how long a lease lasts unless renewed or released (integer ms or a string such as '30s')");
  return [max, leaseTtlMs(options.ttl)];
}

// A lease's ttl: a period, 1 ms to 2^40 ms. Every bad ttl is
// RL_E_INVALID_ARG, as the library's own check says.
function leaseTtlMs(v) {
  let ms;
  if (typeof v === 'number') {
    if (!Number.isInteger(v))
      throw new InvalidArgumentError(`ttl: ${v} is not a whole number of milliseconds`, 'RL_E_INVALID_ARG');
    ms = v;
  } else if (typeof v === 'string') {
    ms = durationText(v, 'ttl', 'RL_E_INVALID_ARG');
  } else {
    throw typeError('ttl', 'integer milliseconds (number) or a string such as "30s" or "5m"', v);
  }
  if (ms < 1 || ms > MAX_LEASE_TTL)
    throw new InvalidArgumentError(`ttl: must be 1 ms to 2^40 ms (got ${ms} ms)`, 'RL_E_INVALID_ARG');
  return ms;
}

// ---- Waiting (docs/waiting.md) -----------------------------------------------

const MAX_WAIT_MS = 2 ** 40; // RL_MAX_WAIT_MS
const FIRST_LEASE_STEP_MS = 10; // a lease wait's first step; it doubles
const TIMER_MAX_MS = 2 ** 31 - 1; // setTimeout's longest delay

// A wait's length (`what`: 'maxWait'): integer ms or a period such as
// '10s', 0 to 2^40 ms (0: one try; the period text has no zero). Every bad
// wait is RL_E_INVALID_ARG naming it; another type is a TypeError.
function maxWaitMs(v, what) {
  let ms;
  if (typeof v === 'number') {
    if (Number.isFinite(v) && !Number.isInteger(v))
      throw new InvalidArgumentError(`${what}: ${v} is not a whole number of milliseconds`, 'RL_E_INVALID_ARG');
    ms = v;
  } else if (typeof v === 'string') {
    if (/^\s*0+(\.0*)?\s*[a-z][a-z ]*$/i.test(v))
      throw new InvalidArgumentError(
        `${what}: the period text has no zero; give 0 (a number) for one try`, 'RL_E_INVALID_ARG');
    ms = durationText(v, what, 'RL_E_INVALID_ARG');
  } else if (v === undefined) {
    throw new TypeError(
      `${what} is required: the longest to wait, integer ms or a string such as '10s' (0 for one try)`);
  } else {
    throw typeError(what, 'integer milliseconds (number) or a string such as "500ms" or "10s"', v);
  }
  if (!(ms >= 0 && ms <= MAX_WAIT_MS))
    throw new InvalidArgumentError(`${what}: must be 0 to 2^40 ms (got ${ms} ms)`, 'RL_E_INVALID_ARG');
  return ms;
}

// A wait's `signal`: an AbortSignal, or null for none (undefined or null).
function signalArg(v) {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || typeof v.aborted !== 'boolean' || typeof v.addEventListener !== 'function' ||
      typeof v.removeEventListener !== 'function')
    throw typeError('signal', 'an AbortSignal', v);
  return v;
}

// What an aborted wait rejects with: the signal's reason (an AbortError
// DOMException unless abort() was given one).
function abortReason(signal) {
  return signal.reason !== undefined ? signal.reason : new DOMException('This operation was aborted', 'AbortError');
}

// checkWait()'s and acquireWait()'s options -> [maxWait ms, signal].
function waitOptions(options, what) {
  if (options === null || typeof options !== 'object')
    throw typeError(`${what} options`, "an object such as { maxWait: '10s' }", options);
  return [maxWaitMs(options.maxWait, 'maxWait'), signalArg(options.signal)];
}

const kLeaseToken = Symbol('tollgate.lease');
// Lease internals for the Limiter (set in Lease's static block).
let leaseNative;
let leaseRenewed;
let leaseReleased;

/**
 * A held concurrency lease (limiter.acquire()): release it when the work it
 * guards is done, or it ends after its ttl. `await using` releases it at the
 * end of the block; so does `limiter.withLease()`. The native handle is freed
 * when the object is garbage collected (which does not release the lease).
 */
class Lease {
  #limiter;
  #native;
  #ttl;
  #released = false;

  constructor(token, limiter, nativeLease, key, ttl, source) {
    if (token !== kLeaseToken) throw new TypeError('Lease: leases come from limiter.acquire()');
    this.#limiter = limiter;
    this.#native = nativeLease;
    this.#ttl = ttl;
    /** The key, as given to acquire(). */
    this.key = key;
    /** 'store', 'fail_open' (acquired while the store was unavailable: not stored) or 'local'. */
    this.source = source;
    Object.freeze(this);
  }

  /** The limiter that acquired it. */
  get limiter() {
    return this.#limiter;
  }

  /** Milliseconds the lease lasts from its acquisition or last renewal. */
  get ttl() {
    return this.#ttl;
  }

  /** Whether a release() of this lease has finished (whatever it answered). */
  get released() {
    return this.#released;
  }

  /**
   * Extends the lease: it now ends `ttl` (default: its current ttl) from now.
   * Rejects with LeaseLostError (RL_E_NOT_FOUND) if it is no longer held.
   */
  renew(ttl) {
    return this.#limiter.renew(this, ttl);
  }

  /** Ends the lease; resolves to whether it was held until now (false: late or repeated, harmless). */
  release() {
    return this.#limiter.release(this);
  }

  get [Symbol.toStringTag]() {
    return 'Lease';
  }

  static {
    leaseNative = (lease) => lease.#native;
    leaseRenewed = (lease, ttl) => {
      lease.#ttl = ttl;
    };
    leaseReleased = (lease) => {
      lease.#released = true;
    };
  }
}

// `await using` (and AsyncDisposableStack): releases the lease unless a
// release() already finished. Defined where the runtime has the symbol.
if (typeof Symbol.asyncDispose === 'symbol') {
  Object.defineProperty(Lease.prototype, Symbol.asyncDispose, {
    value: async function asyncDispose() {
      if (!this.released) await this.release();
    },
    writable: true,
    configurable: true,
  });
}

function isLease(v) {
  return v instanceof Lease;
}

// A lease shown to a limiter that did not acquire it (the C library refuses
// it too: RL_E_INVALID_ARG). It stays held.
function foreignLeaseError(what) {
  return new InvalidArgumentError(
    `${what}: the lease was acquired through another limiter; use lease.${what}() or that limiter's ${what}() ` +
      '(the lease is still held)',
    'RL_E_INVALID_ARG');
}

// ---- Limiter -----------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true });

function keyOut(buf) {
  try {
    return utf8.decode(buf);
  } catch {
    return buf;
  }
}

// Limiters made with { metrics: false } (the exporters declare no decision
// series for them).
const uncounted = new WeakSet();

class Limiter {
  #native;
  #handle;
  #redis;
  #closed = false;
  #closing = null;
  // The waits in progress (checkWait, acquireWait): { lease, wake() }.
  #waits = new Set();

  #shadow;
  // What the addon calls with each log message (level 1 .. 4, text) on the
  // JS thread; it holds it weakly, this holds it while the handler is set.
  #logDispatch = null;

  constructor(options) {
    const opts = nativeOptions(options);
    if (opts.onLog !== undefined) opts.onLog = this.#logDispatch = this.#dispatcher(opts.onLog);
    this.#native = new native.NativeLimiter(opts);
    this.#redis = this.#native.storeKind === 'redis';
    this.#handle = this.#native.handle;
    this.#shadow = opts.shadow === 1;
    if (opts.metrics === -1) uncounted.add(this);
  }

  // The dispatcher of `handler`: the entry as the application sees it,
  // never after the handler was replaced or removed, or the limiter closed.
  #dispatcher(handler) {
    const dispatch = (level, message) => {
      if (this.#closed || this.#logDispatch !== dispatch) return;
      handler({ level: LOG_LEVELS[level - 1] || 'debug', message });
    };
    return dispatch;
  }

  /**
   * Who reads the Redis replies: 'loop' (this thread's event loop: the
   * default where it can), 'thread' (tollgate's I/O thread: the driver
   * option 'thread', or TLS) or 'none' (the memory store).
   */
  get driver() {
    return this.#native.driver();
  }

  /** 'memory' or 'redis'. */
  get store() {
    return this.#redis ? 'redis' : 'memory';
  }

  /** Whether the limiter is in shadow mode (new Limiter({ shadow: true })). */
  get shadow() {
    return this.#shadow;
  }

  /**
   * Replaces the allow list (docs/exemptions.md): a check of a key on it is
   * allowed without a store call and charges nothing (source 'allow_list').
   * `entries`: exact keys, IPv4 / IPv6 addresses and CIDR ranges
   * ('10.0.0.0/8', '2001:db8::/32'); empty clears it. A bad entry throws
   * InvalidArgumentError naming it by index (entries[2]; never echoed) and
   * leaves the list unchanged.
   */
  setAllowList(entries) {
    if (this.#closed) throw closedError();
    this.#native.setList(native.listAllow, listEntries(entries, 'entries'));
  }

  /**
   * Replaces the deny list: a check of a key on it is denied without a store
   * call (source 'deny_list', retryAfter Infinity); it wins over the allow
   * list. Entries as for setAllowList().
   */
  setDenyList(entries) {
    if (this.#closed) throw closedError();
    this.#native.setList(native.listDeny, listEntries(entries, 'entries'));
  }

  get closed() {
    return this.#closed;
  }

  /** Checks `key` and, if every policy allows, charges `cost` (default 1). */
  check(key, policies, options) {
    try {
      if (this.#closed) throw closedError();
      if (!isKey(key)) throw keyTypeError(key);
      const pid = policyArg(policies);
      const cost = costArg(options);
      if (this.#redis) return this.#checkRedis(key, pid, cost);
      nativeCheck(this.#handle, key, pid, cost);
      return Promise.resolve(readDecision());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #checkRedis(key, pid, cost) {
    return new Promise((resolve, reject) => {
      const slot = takeSlot(resolve, reject);
      try {
        this.#native.checkAsync(key, pid, cost, slot);
      } catch (e) {
        releaseSlot(slot);
        reject(e);
      }
    });
  }

  /**
   * check() that waits up to `maxWait` (integer ms or a period such as
   * '10s'; 0 to 2^40 ms, 0 is one try) for the check to be allowed, by the
   * rule of docs/waiting.md, on the event loop's timers: after a denial it
   * sleeps the decision's retryAfter and checks again; it resolves to the
   * denial at once when retryAfter is Infinity or longer than the wait left,
   * and to the first allowed decision as soon as it comes. `signal` (an
   * AbortSignal) ends the wait: it rejects with signal.reason at once.
   */
  checkWait(key, policies, options) {
    try {
      if (this.#closed) throw closedError();
      if (!isKey(key)) throw keyTypeError(key);
      policyArg(policies);
      const [maxWait, signal] = waitOptions(options, 'checkWait');
      const cost = costOf(options.cost);
      const opts = { cost };
      return this.#wait(() => this.check(key, policies, opts), maxWait, signal, false);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Several keys in one decision, all or nothing: `pairs` is an array of 1
   * to 8 [key, policies] pairs (or { key, policies } objects), distinct
   * keys, at most 16 policies in all. `cost` (default 1) is charged to
   * every policy of every pair only if every one allows; if any denies,
   * nothing is charged anywhere. The decision's policyIndex counts the
   * policies pair by pair; keyIndex is the reported pair's index. A
   * negative cost refunds every pair with usage. On a Redis Cluster the
   * keys must share a slot (start them with the same {tag}), else
   * UnsupportedError (RL_E_UNSUPPORTED) before anything is sent.
   */
  checkKeys(pairs, options) {
    try {
      if (this.#closed) throw closedError();
      const { keys, counts, ids } = pairsArg(pairs);
      const cost = costArg(options);
      return new Promise((resolve, reject) => {
        const slot = takeSlot(resolve, reject);
        try {
          // Into the shared buffer last: a plain policy's getters (JS) ran
          // while the ids were gathered.
          for (let i = 0; i < ids.length; ++i) IDS[i] = ids[i];
          this.#native.checkKeysAsync(keys, counts, cost, slot);
        } catch (e) {
          releaseSlot(slot);
          reject(e);
        }
      }).then((d) => {
        d.keyIndex = pairOf(counts, d.policyIndex);
        return d;
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The memory store's synchronous check (a Redis limiter refuses it). */
  checkSync(key, policies, options) {
    if (this.#closed) throw closedError();
    if (this.#redis)
      throw new UnsupportedError(
        'checkSync: a Redis limiter answers asynchronously (it never blocks the event loop); use await limiter.check()',
        'RL_E_UNSUPPORTED');
    if (!isKey(key)) throw keyTypeError(key);
    nativeCheck(this.#handle, key, policyArg(policies), costArg(options));
    return readDecision();
  }

  /**
   * Gives `amount` units (default 1) back to every policy of `key` that has
   * usage, never beyond full: a check with cost -amount. Rejects with
   * NothingToRefundError (RL_E_NOT_FOUND) when there is nothing to give back.
   */
  refund(key, policies, options) {
    let cost;
    try {
      cost = refundCost(options);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.check(key, policies, { cost });
  }

  /** The memory store's synchronous refund (a Redis limiter refuses it). */
  refundSync(key, policies, options) {
    if (this.#closed) throw closedError();
    if (this.#redis)
      throw new UnsupportedError(
        'refundSync: a Redis limiter answers asynchronously (it never blocks the event loop); use await limiter.refund()',
        'RL_E_UNSUPPORTED');
    return this.checkSync(key, policies, { cost: refundCost(options) });
  }

  /** Forgets every policy's state for `key`, its block and its strikes included. */
  reset(key) {
    try {
      if (this.#closed) throw closedError();
      if (!isKey(key)) throw keyTypeError(key);
      return this.#native.reset(key);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Blocks `key` for `duration` (integer ms or a period such as '15m'; 1 ms
   * to 2^40 ms): until then every check of it is denied, whatever its
   * policies. Replaces any block the key has; unblock() or reset() lifts it.
   */
  block(key, duration) {
    try {
      if (this.#closed) throw closedError();
      if (!isKey(key)) throw keyTypeError(key);
      return this.#native.block(key, blockDurationMs(duration));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Lifts `key`'s block (limiter.block() or a policy's) and forgets its strikes. */
  unblock(key) {
    try {
      if (this.#closed) throw closedError();
      if (!isKey(key)) throw keyTypeError(key);
      return this.#native.unblock(key);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** One round trip to the store; resolves to the round-trip time in ms. */
  ping() {
    try {
      if (this.#closed) throw closedError();
      return this.#native.ping();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  health() {
    if (this.#closed) throw closedError();
    return this.#native.health();
  }

  /**
   * Every series of the limiter's metrics now (docs/metrics.md), as
   * Prometheus names them: one snapshot, read without I/O. Each sample is
   * { type, name, help, labels, value, buckets, count, sum }: a histogram's
   * buckets are its cumulative { le, count } pairs in seconds, the last
   * with le Infinity; tollgate/prometheus and tollgate/opentelemetry export
   * them.
   */
  metrics() {
    if (this.#closed) throw closedError();
    return this.#native.metrics();
  }

  /**
   * Sends the limiter's log messages (docs/metrics.md, "Logs": each episode
   * of its store once, e.g. a node unreachable, then reconnected) at
   * `level` ('error', 'warn', 'info' (default) or 'debug') or more severe
   * to `handler({ level, message })`, on the JS thread, never inside
   * another call of the limiter; null removes it. Replaces the handler set
   * before (or by the onLog option); after this returns, the old one is not
   * called again, and after close() none is. A handler that throws reports
   * an uncaught exception. Messages never hold a password.
   */
  setLogHandler(handler, options) {
    if (this.#closed) throw closedError();
    if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options)))
      throw typeError('log options', "an object such as { level: 'warn' }", options);
    const level = logLevelArg(options == null ? undefined : options.level, 'level');
    if (handler === null || handler === undefined) {
      this.#logDispatch = null;
      this.#native.setLogHandler(null, 0);
      return;
    }
    const dispatch = this.#dispatcher(logHandlerArg(handler, 'handler'));
    this.#logDispatch = null; // the old one is off from here, even if this throws
    this.#native.setLogHandler(dispatch, level);
    this.#logDispatch = dispatch;
  }

  /**
   * The stored (key, policy) states under the key prefix that belong to
   * `policies` (a policy or an array of them: the list the application
   * checks with). A state is kept under its policy's identity (the name, or
   * the position of an unnamed policy) and is listed with that policy of
   * `policies` and its index; states of other identities are skipped.
   * Redis: a SCAN walk; memory: UnsupportedError.
   */
  async *keys(policies) {
    if (this.#closed) throw closedError();
    if (policies === undefined)
      throw new TypeError(
        'keys(policies): give the policies the application checks with (a Policy or an array of them)');
    const pid = policyArg(policies);
    const list = Array.isArray(policies) ? policies.map(asPolicy) : [asPolicy(policies)];
    const it = this.#native.keysOpen(pid);
    try {
      for (;;) {
        const e = await it.next();
        if (e === null) return;
        yield {
          key: keyOut(e.key),
          policy: list[e.policyIndex],
          policyIndex: e.policyIndex,
          remaining: e.remaining,
          resetAfter: e.resetAfter,
        };
      }
    } finally {
      it.free();
    }
  }

  /**
   * Acquires a concurrency lease on `key` if fewer than `maxInFlight` are
   * held (1 to 1,000,000); it lasts `ttl` (integer ms or a period such as
   * '30s'; 1 ms to 2^40 ms) unless renewed or released. Resolves either way:
   * { acquired: true, lease, ... } or { acquired: false, lease: null,
   * retryAfter, ... }. Redis: off the event loop (the libuv threadpool).
   */
  acquire(key, options) {
    try {
      if (this.#closed) throw closedError();
      if (!isKey(key)) throw keyTypeError(key);
      const [maxInFlight, ttl] = leaseOptions(options);
      if (options.maxWait !== undefined)
        throw new TypeError('maxWait: acquire() does not wait; acquireWait() (or withLease() with maxWait) does');
      return this.#acquire(key, maxInFlight, ttl);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #acquire(key, maxInFlight, ttl) {
    try {
      if (this.#closed) throw closedError();
      return this.#native.leaseAcquire(key, maxInFlight, ttl).then((r) => {
        const source = SOURCES[r.source] || 'unknown';
        const lease = r.lease === null ? null : new Lease(kLeaseToken, this, r.lease, key, ttl, source);
        return {
          acquired: lease !== null,
          lease,
          inFlight: r.inFlight,
          maxInFlight: r.maxInFlight,
          retryAfter: r.retryAfter < 0 ? Infinity : r.retryAfter,
          source,
        };
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * acquire() that waits up to `maxWait` (integer ms or a period such as
   * '10s'; 0 to 2^40 ms, 0 is one try) for a place, by the rule of
   * docs/waiting.md on the event loop's timers: after a denial it tries
   * again after 10 ms, then 20, 40, ... (never beyond the denial's
   * retryAfter nor the wait left), and at once when a lease of this limiter
   * is released in this process. Resolves to the acquired LeaseResult, or to
   * the last denial when the wait is over. `signal` (an AbortSignal) ends
   * the wait: it rejects with signal.reason at once, and a lease that a try
   * in flight acquires after that is released.
   */
  acquireWait(key, options) {
    try {
      if (this.#closed) throw closedError();
      if (!isKey(key)) throw keyTypeError(key);
      const [maxInFlight, ttl] = leaseOptions(options);
      const [maxWait, signal] = waitOptions(options, 'acquireWait');
      return this.#wait(() => this.#acquire(key, maxInFlight, ttl), maxWait, signal, true);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // The rule of docs/waiting.md on the event loop's timers (never blocking
  // it). `attempt()` is one try (a check or an acquire, resolving to its
  // answer); `lease`: a lease wait (steps of 10 ms doubling, up to the
  // denial's retryAfter; woken by a release of this limiter), else a check
  // wait (sleeps exactly the denial's retryAfter). Waiters are not queued.
  #wait(attempt, maxWait, signal, lease) {
    return new Promise((resolve, reject) => {
      if (signal !== null && signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const deadline = performance.now() + maxWait;
      let step = FIRST_LEASE_STEP_MS;
      let timer = null; // set while asleep
      let wakeAt = 0;
      let ended = false;
      const waiter = { lease, wakes: 0, wake: null };
      const end = (settle, value) => {
        ended = true;
        if (timer !== null) clearTimeout(timer);
        timer = null;
        this.#waits.delete(waiter);
        if (signal !== null) signal.removeEventListener('abort', onAbort);
        settle(value);
      };
      const onAbort = () => {
        if (!ended) end(reject, abortReason(signal));
      };
      const tryNow = () => {
        const seen = waiter.wakes;
        let p;
        try {
          p = attempt();
        } catch (e) {
          end(reject, e);
          return;
        }
        p.then((r) => {
          if (ended) {
            // aborted while this try was in flight: keep nothing it got
            if (lease && r.lease !== null) r.lease.release().catch(() => {});
            return;
          }
          if ((lease ? r.acquired : r.allowed) || r.retryAfter === Infinity) return end(resolve, r);
          const now = performance.now();
          if (now >= deadline) return end(resolve, r);
          if (this.#closed) return end(reject, closedError());
          const left = Math.ceil(deadline - now);
          let ms = Math.max(1, r.retryAfter);
          if (!lease) {
            if (ms > left) return end(resolve, r); // it cannot pass in time
          } else {
            ms = Math.min(ms, step, left);
            step = Math.min(step * 2, MAX_WAIT_MS);
            if (waiter.wakes !== seen) return tryNow(); // released during the try
          }
          wakeAt = Math.min(deadline, now + ms);
          timer = setTimeout(onTimer, Math.min(Math.ceil(wakeAt - now), TIMER_MAX_MS));
        }, (e) => {
          if (!ended) end(reject, e);
        });
      };
      // A timer may fire a little early (the loop's cached time): sleep on
      // until wakeAt, so that no try comes before the rule allows it.
      const onTimer = () => {
        const rest = wakeAt - performance.now();
        if (rest > 0) {
          timer = setTimeout(onTimer, Math.min(Math.ceil(rest), TIMER_MAX_MS));
          return;
        }
        timer = null;
        tryNow();
      };
      // A release of this limiter's lease (lease waits) or close(): asleep,
      // try now; during a try, try again after it.
      waiter.wake = () => {
        waiter.wakes++;
        if (timer !== null && !ended) {
          clearTimeout(timer);
          timer = null;
          tryNow();
        }
      };
      this.#waits.add(waiter);
      if (signal !== null) signal.addEventListener('abort', onAbort, { once: true });
      tryNow();
    });
  }

  // Wakes the waits of `which`: 'lease' (a lease was released) or 'all'.
  #wake(which) {
    if (this.#waits.size === 0) return;
    for (const w of [...this.#waits]) if (which === 'all' || w.lease) w.wake();
  }

  /**
   * Extends `lease` (acquired through this limiter): it now ends `ttl`
   * (default: its current ttl) from now. Rejects with LeaseLostError
   * (RL_E_NOT_FOUND) if it is no longer held (expired or released), and
   * with InvalidArgumentError (RL_E_INVALID_ARG) for another limiter's.
   */
  renew(lease, ttl) {
    try {
      if (this.#closed) throw closedError();
      if (!isLease(lease)) throw typeError('lease', 'a Lease (from limiter.acquire())', lease);
      if (lease.limiter !== this) throw foreignLeaseError('renew');
      const ms = ttl === undefined ? lease.ttl : leaseTtlMs(ttl);
      return this.#native.leaseRenew(leaseNative(lease), ms).then(
        () => {
          leaseRenewed(lease, ms);
        },
        (e) => {
          if (e instanceof TollgateError && e.code === 'RL_E_NOT_FOUND')
            throw new LeaseLostError(
              'renew: the lease is no longer held (it expired or was released); the work it guards is no longer counted',
              'RL_E_NOT_FOUND');
          throw e;
        });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Ends `lease` (acquired through this limiter). Resolves to true if it was
   * held until now, false if it had expired or been released already (a late
   * or repeated release is harmless). Another limiter's lease rejects with
   * InvalidArgumentError (RL_E_INVALID_ARG).
   */
  release(lease) {
    try {
      if (this.#closed) throw closedError();
      if (!isLease(lease)) throw typeError('lease', 'a Lease (from limiter.acquire())', lease);
      if (lease.limiter !== this) throw foreignLeaseError('release');
      return this.#native.leaseRelease(leaseNative(lease)).then((wasHeld) => {
        leaseReleased(lease);
        if (wasHeld) this.#wake('lease'); // a place freed: waiters try now
        return wasHeld;
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Runs `fn(lease)` under a lease of `key` (options as acquire()'s) and
   * releases it when `fn` settles, whether it resolved or threw. Resolves
   * to what `fn` resolved to. With `maxWait` (and `signal`) it first waits
   * for a place as acquireWait() does. Denied: rejects with LeaseDeniedError
   * (carrying retryAfter) and `fn` does not run. If `fn` throws, its error
   * is the rejection (a failed release then goes unreported: the lease ends
   * after its ttl); if only the release fails, its error is.
   */
  async withLease(key, options, fn) {
    if (typeof fn !== 'function') throw typeError('fn', 'a function (lease) => ...', fn);
    // With maxWait (or a signal): acquireWait() (no maxWait: one try).
    const waits = options !== null && typeof options === 'object' &&
      (options.maxWait !== undefined || (options.signal !== undefined && options.signal !== null));
    const r = waits
      ? await this.acquireWait(key, { ...options, maxWait: options.maxWait === undefined ? 0 : options.maxWait })
      : await this.acquire(key, options);
    if (!r.acquired) {
      const wait = r.retryAfter === Infinity ? 'never' : `in ${r.retryAfter} ms`;
      const held = r.source === 'fail_closed' ? 'the store is unavailable (fail closed)' :
        `${r.inFlight} of ${r.maxInFlight} leases are held`;
      const waited = waits ? ` after waiting ${maxWaitMs(options.maxWait ?? 0, 'maxWait')} ms` : '';
      throw new LeaseDeniedError(
        `withLease: denied${waited}, ${held}; retry ${wait}`,
        { key, retryAfter: r.retryAfter, inFlight: r.inFlight, maxInFlight: r.maxInFlight, source: r.source });
    }
    let result;
    try {
      result = await fn(r.lease);
    } catch (e) {
      await r.lease.release().catch(() => {});
      throw e;
    }
    await r.lease.release();
    return result;
  }

  /** Waits for calls in progress, then releases the limiter. Idempotent. */
  close() {
    if (this.#closing === null) {
      this.#closed = true;
      this.#logDispatch = null;
      this.#closing = this.#native.close();
      this.#wake('all'); // asleep: their next try rejects (RL_E_CLOSED) now
    }
    return this.#closing;
  }

  get [Symbol.toStringTag]() {
    return 'Limiter';
  }
}

// ---- Headers -----------------------------------------------------------------

/**
 * The rate-limit response headers for `decision` (which reported `policy`),
 * as the C library formats them (byte-identical in every binding).
 */
function rateLimitHeaders(decision, policyOrPolicies, name = 'default') {
  if (decision === null || typeof decision !== 'object')
    throw typeError('decision', 'a Decision', decision);
  if (typeof name !== 'string') throw typeError('name', 'a string', name);
  let p = policyOrPolicies;
  if (Array.isArray(p)) {
    p = p[decision.policyIndex];
    if (p === undefined)
      throw new InvalidArgumentError('policies: no policy at decision.policyIndex', 'RL_E_INVALID_ARG');
  }
  const pid = policyId(p, 'policy');
  const source = SOURCE_CODES.get(decision.source);
  if (source === undefined) throw typeError('decision.source', 'a Decision source', decision.source);
  for (const f of ['limit', 'remaining', 'resetAfter', 'retryAfter', 'policyIndex'])
    if (typeof decision[f] !== 'number') throw typeError('decision.' + f, 'a number', decision[f]);
  const retry = decision.retryAfter === Infinity ? -1 : decision.retryAfter;
  return native.headers(
    decision.allowed === true,
    decision.limit,
    decision.remaining,
    decision.resetAfter,
    retry,
    source,
    decision.policyIndex,
    pid,
    name,
    decision.shadow === true,
  );
}

module.exports = {
  Limiter,
  Lease,
  Policy,
  policy,
  rateLimitHeaders,
  parsePeriod: periodMsOf,
  version: native.version,
  versionNumber: native.versionNumber,
  ...errors,
  // Internal: whether the addon was built with -DTOLLGATE_TESTING=ON.
  _testing: native.testing,
  _asPolicy: asPolicy,
  // Internal (lib/metrics.js): whether a limiter counts decisions per
  // policy label (not made with { metrics: false }).
  _countsDecisions: (limiter) => !uncounted.has(limiter),
};
