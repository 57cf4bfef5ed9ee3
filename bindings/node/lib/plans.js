'use strict';
// Plans, key functions and the pieces the web integrations share
// (tollgate/express, tollgate/next). The Node twin of the Python package's
// tollgate.plans: the same plan limits, the same key strings, the same
// choice of which limit a response's headers describe, so a Node service and
// a Python one sharing a Redis enforce one limit on one key.

const crypto = require('node:crypto');

/** The seed's plans: requests per hour by plan (Python's DEFAULT_PLANS). */
const PLANS = Object.freeze({
  FREE: Object.freeze({ limit: 100, period: '1h' }),
  PRO: Object.freeze({ limit: 1000, period: '1h' }),
  ENTERPRISE: Object.freeze({ limit: 10000, period: '1h' }),
});

/** The headers the integrations set (Retry-After only on a denial). */
const HEADER_NAMES = Object.freeze([
  'RateLimit-Policy',
  'RateLimit',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
  'Retry-After',
]);

/** Values longer than this (UTF-8 bytes) are keyed by their SHA-256. */
const MAX_KEY_VALUE = 128;

// ---- reading a request (Node's IncomingMessage / Express, or a Web Request) --

function isWebHeaders(h) {
  return h != null && typeof h.get === 'function';
}

/** Every line of header `name` (several lines of one header stay apart
 * where the request object keeps them apart). */
function headerLines(request, name) {
  const h = request && request.headers;
  if (h == null) return [];
  if (isWebHeaders(h)) {
    const v = h.get(name);
    return v == null ? [] : [String(v)];
  }
  const lower = name.toLowerCase();
  const distinct = request.headersDistinct;
  if (distinct && distinct[lower]) return distinct[lower].map(String);
  const v = h[lower];
  if (v == null) return [];
  return Array.isArray(v) ? v.map(String) : [String(v)];
}

/** The header's first value, trimmed; null when absent or empty (as
 * Starlette's and Flask's headers.get give the first line). */
function headerValue(request, name) {
  const lines = headerLines(request, name);
  if (lines.length === 0) return null;
  const v = lines[0].trim();
  return v === '' ? null : v;
}

/** The TCP peer's address: Node's socket.remoteAddress; a Web Request has
 * none (Next.js passes the peer in X-Forwarded-For, see clientAddress). */
function peerAddress(request) {
  if (request == null) return null;
  const sock = request.socket || request.connection;
  if (sock && sock.remoteAddress) return sock.remoteAddress;
  return null;
}

// ---- IP addresses, formatted exactly as Python's ipaddress module does ------

function parseIPv4(text) {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = [];
  for (const p of parts) {
    // Python rejects empty octets, non-digits, values > 255 and leading zeros.
    if (!/^[0-9]{1,3}$/.test(p)) return null;
    if (p.length > 1 && p[0] === '0') return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/** Eight 16-bit groups, or null. A trailing dotted IPv4 is accepted. */
function parseIPv6(text) {
  if (text.length === 0 || text.length > 45) return null;
  let tail = [];
  let body = text;
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.indexOf('.', lastColon) > lastColon) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (v4 == null) return null;
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    body = text.slice(0, lastColon + 1);
    if (body.endsWith('::')) {
      // "::ffff:1.2.3.4" style: keep the "::"
    } else {
      body = body.slice(0, -1);
    }
  }
  const dbl = body.indexOf('::');
  if (dbl >= 0 && body.indexOf('::', dbl + 1) >= 0) return null;
  const groupsOf = (s) => {
    if (s === '') return [];
    const g = s.split(':');
    const out = [];
    for (const x of g) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(x)) return null;
      out.push(parseInt(x, 16));
    }
    return out;
  };
  let groups;
  if (dbl >= 0) {
    const left = groupsOf(body.slice(0, dbl));
    const right = groupsOf(body.slice(dbl + 2));
    if (left == null || right == null) return null;
    const fill = 8 - left.length - right.length - tail.length;
    if (fill < 1) return null;
    groups = left.concat(new Array(fill).fill(0), right, tail);
  } else {
    const g = groupsOf(body);
    if (g == null) return null;
    groups = g.concat(tail);
    if (groups.length !== 8) return null;
  }
  return groups.length === 8 ? groups : null;
}

/** RFC 5952 text, as Python's str(IPv6Address): lower case, the longest
 * run (first on a tie) of two or more zero groups written "::". */
function formatIPv6(groups) {
  let bestStart = -1;
  let bestLen = 0;
  let start = -1;
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && groups[i] === 0) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      const len = i - start;
      if (len > bestLen) {
        bestLen = len;
        bestStart = start;
      }
      start = -1;
    }
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen > 1) {
    const left = hex.slice(0, bestStart).join(':');
    const right = hex.slice(bestStart + bestLen).join(':');
    return left + '::' + right;
  }
  return hex.join(':');
}

/** A canonical address, or null if `text` is not an IP address (Python's
 * plans._normalize_address). */
function normalizeAddress(text, ipv6Prefix) {
  text = String(text).trim();
  if (text.startsWith('[') && text.includes(']')) {
    text = text.slice(1, text.indexOf(']')); // "[2001:db8::1]:443"
  } else if (text.split(':').length === 2) {
    text = text.split(':')[0]; // "203.0.113.7:5000"
  }
  const v4 = parseIPv4(text);
  if (v4 != null) return v4.join('.');
  let zone = '';
  const pct = text.indexOf('%');
  if (pct >= 0) {
    zone = text.slice(pct);
    text = text.slice(0, pct);
    if (zone.length < 2 || zone.includes('/')) return null;
  }
  const g = parseIPv6(text);
  if (g == null) return null;
  // IPv4-mapped (::ffff:a.b.c.d) is keyed as IPv4.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return [g[6] >> 8, g[6] & 255, g[7] >> 8, g[7] & 255].join('.');
  }
  if (ipv6Prefix != null && ipv6Prefix < 128) {
    const net = g.slice();
    for (let i = 0; i < 8; i++) {
      const bits = Math.max(0, Math.min(16, ipv6Prefix - i * 16));
      net[i] = bits === 0 ? 0 : net[i] & ((0xffff << (16 - bits)) & 0xffff);
    }
    return formatIPv6(net) + '/' + ipv6Prefix;
  }
  return formatIPv6(g) + zone;
}

// ---- key functions -------------------------------------------------------------

function checkKeyFunc(key, what) {
  if (typeof key !== 'function') {
    throw new TypeError(`${what || 'key'} must be a key function (request -> string | Buffer | null), not ${typeof key}`);
  }
}

function clientAddressOptions(opts) {
  const o = opts || {};
  const trustForwarded = o.trustForwarded === undefined ? false : o.trustForwarded;
  const trustedProxies = o.trustedProxies === undefined ? 1 : o.trustedProxies;
  const ipv6Prefix = o.ipv6Prefix === undefined ? 64 : o.ipv6Prefix;
  if (typeof trustForwarded !== 'boolean') {
    throw new TypeError(`trustForwarded must be a boolean, not ${typeof trustForwarded}`);
  }
  if (!Number.isInteger(trustedProxies)) {
    throw new TypeError(`trustedProxies must be an integer, not ${typeof trustedProxies}`);
  }
  if (trustedProxies < 1) throw new RangeError(`trustedProxies must be >= 1 (got ${trustedProxies})`);
  if (ipv6Prefix !== null && !(Number.isInteger(ipv6Prefix) && ipv6Prefix >= 1 && ipv6Prefix <= 128)) {
    throw new RangeError(`ipv6Prefix must be null or an integer in 1..128 (got ${ipv6Prefix})`);
  }
  return { trustForwarded, trustedProxies, ipv6Prefix };
}

function addressKey(request, o) {
  let addr = null;
  if (o.trustForwarded) {
    const hops = [];
    for (const line of headerLines(request, 'X-Forwarded-For')) {
      for (const p of line.split(',')) {
        const h = p.trim();
        if (h) hops.push(h);
      }
    }
    if (hops.length >= o.trustedProxies) {
      addr = normalizeAddress(hops[hops.length - o.trustedProxies], o.ipv6Prefix);
    }
  }
  if (addr == null) {
    const peer = peerAddress(request);
    if (peer) addr = normalizeAddress(peer, o.ipv6Prefix) || peer;
  }
  return 'ip:' + (addr || 'unknown');
}

/**
 * Key by the client's IP address: "ip:<address>" (IPv6 by its /64:
 * "ip:2001:db8:1:2::/64"). The default key.
 *
 * Used directly as a key function (`key: clientAddress`) it keys by the TCP
 * peer and ignores X-Forwarded-For. Called with options it returns a key
 * function: `clientAddress({ trustForwarded: true, trustedProxies: 2 })`.
 */
function clientAddress(requestOrOptions) {
  const r = requestOrOptions;
  const looksLikeRequest = r != null && (r.headers !== undefined || r.socket !== undefined);
  if (looksLikeRequest) return addressKey(r, clientAddressOptions(undefined));
  const o = clientAddressOptions(r);
  const fn = (request) => addressKey(request, o);
  Object.defineProperty(fn, 'name', {
    value: `clientAddress(trustForwarded=${o.trustForwarded}, trustedProxies=${o.trustedProxies})`,
  });
  return fn;
}

function valueKey(prefix, value, hashAll) {
  const raw = Buffer.from(value, 'utf8');
  if (hashAll || raw.length > MAX_KEY_VALUE) {
    return prefix + 'sha256:' + crypto.createHash('sha256').update(raw).digest('hex');
  }
  return prefix + value;
}

function fallbackOf(o) {
  const fallback = o.fallback === undefined ? clientAddress : o.fallback;
  if (fallback !== null) checkKeyFunc(fallback, 'fallback');
  return fallback;
}

/**
 * A key function keyed by a request header: "<prefix><value>", prefix
 * defaulting to the lower-cased name and a colon ("x-api-key:"). With
 * `hash: true` every value is keyed by its SHA-256 ("x-api-key:sha256:<hex>");
 * values over 128 bytes always are. A request without the header is keyed
 * by `fallback` (default clientAddress; null leaves it unlimited).
 */
function headerKey(name, opts) {
  if (typeof name !== 'string' || name === '') {
    throw new TypeError('headerKey: the header name must be a non-empty string');
  }
  const o = opts || {};
  let prefix = o.prefix;
  if (prefix === undefined || prefix === null) prefix = name.toLowerCase() + ':';
  else if (typeof prefix !== 'string') throw new TypeError(`prefix must be a string, not ${typeof prefix}`);
  const fallback = fallbackOf(o);
  const hashAll = Boolean(o.hash);
  const fn = (request) => {
    const value = headerValue(request, name);
    if (value == null) return fallback ? fallback(request) : null;
    return valueKey(prefix, value, hashAll);
  };
  Object.defineProperty(fn, 'name', { value: `headerKey(${JSON.stringify(name)})` });
  return fn;
}

/**
 * A key function keyed by organization: "org:<id>". The id comes from
 * `getter(request)` when given (the organization the app authenticated; may
 * return a Promise), else from the header `name` (default "X-Org-Id").
 * A missing id is keyed by `fallback` (default clientAddress; null: unlimited).
 */
function organizationKey(name, opts) {
  if (name !== null && typeof name === 'object' && opts === undefined) {
    opts = name;
    name = undefined;
  }
  const o = opts || {};
  const header = name === undefined ? 'X-Org-Id' : name;
  const getter = o.getter;
  if (getter == null) {
    if (typeof header !== 'string' || header === '') {
      throw new TypeError('organizationKey: give a header name or a getter');
    }
  } else if (typeof getter !== 'function') {
    throw new TypeError(`getter must be a function, not ${typeof getter}`);
  }
  const fallback = fallbackOf(o);
  const finish = (request, org) => {
    org = org == null ? null : String(org).trim() || null;
    if (org == null) return fallback ? fallback(request) : null;
    return valueKey('org:', org, false);
  };
  const fn = (request) => {
    if (getter != null) {
      const org = getter(request);
      if (org != null && typeof org.then === 'function') return org.then((v) => finish(request, v));
      return finish(request, org);
    }
    return finish(request, headerValue(request, header));
  };
  Object.defineProperty(fn, 'name', { value: `organizationKey(${JSON.stringify(getter ? 'getter' : header)})` });
  return fn;
}

// ---- policies by plan ------------------------------------------------------------

function isPolicy(p) {
  return p != null && typeof p === 'object' && !Array.isArray(p) && 'limit' in p && 'period' in p;
}

function policyList(spec, what) {
  if (isPolicy(spec)) return [spec];
  if (!Array.isArray(spec)) {
    throw new TypeError(`${what} must be a policy ({ limit, period }) or an array of them`);
  }
  if (spec.length === 0) throw new RangeError(`${what}: at least one policy is needed`);
  for (const p of spec) {
    if (!isPolicy(p)) throw new TypeError(`${what} must hold policies ({ limit, period })`);
  }
  return spec.slice();
}

/**
 * Which policies apply to a request, and under which name (Python's
 * tollgate.plans.Limits).
 *
 * `policy` (or `policies`): for every request, or when `plan(request)`
 * returns null/undefined (default then: the first plan). `plans`: plan name
 * -> policy or array of policies; `plan` without `plans` uses PLANS. `name`:
 * the policy name in the RateLimit headers; default the plan's name, or
 * "default". A plan name missing from `plans` throws (a configuration error,
 * never a reason to grant some limit).
 */
class Limits {
  constructor({ policy, policies, plans, plan, name } = {}) {
    if (policy !== undefined && policies !== undefined) {
      throw new TypeError('give policy or policies, not both');
    }
    const spec = policy !== undefined ? policy : policies;
    if (name != null && typeof name !== 'string') throw new TypeError(`name must be a string, not ${typeof name}`);
    if (plan != null && typeof plan !== 'function') throw new TypeError(`plan must be a function, not ${typeof plan}`);
    if (plans != null && plan == null) throw new TypeError('plans need plan, a function request -> plan name');
    if (plan != null && plans == null) plans = PLANS;
    this._plans = new Map();
    if (plans != null) {
      const entries = plans instanceof Map ? [...plans.entries()] : Object.entries(plans);
      for (const [k, v] of entries) this._plans.set(k, policyList(v, `plans[${JSON.stringify(k)}]`));
      if (this._plans.size === 0) throw new RangeError('plans is empty');
    }
    if (spec != null) {
      this._default = { policies: policyList(spec, 'policy'), name: name || 'default' };
    } else if (this._plans.size > 0) {
      const [first, ps] = this._plans.entries().next().value;
      this._default = { policies: ps, name: name || String(first) };
    } else {
      this._default = null;
    }
    this.plan = plan || null;
    this._name = name || null;
  }

  /** True when neither policies nor plans were given. */
  get empty() {
    return this._default === null;
  }

  /** { policies, name } for a plan name (null/undefined: the default). */
  forPlan(plan) {
    if (plan == null) {
      if (this._default === null) throw new TypeError('no policies: give policy or plans');
      return this._default;
    }
    const policies = this._plans.get(plan);
    if (policies === undefined) {
      const known = [...this._plans.keys()].map((k) => JSON.stringify(k)).join(', ');
      throw new RangeError(`plan returned ${JSON.stringify(plan)}, which is not in plans (${known})`);
    }
    return { policies, name: this._name || String(plan) };
  }
}

/** The policies of a plan: policiesFor('PRO') -> [{ limit: 1000, period: '1h' }]. */
function policiesFor(plan, plans = PLANS) {
  const spec = plans instanceof Map ? plans.get(plan) : plans[plan];
  if (spec === undefined) throw new RangeError(`unknown plan ${JSON.stringify(plan)}`);
  return policyList(spec, `plans[${JSON.stringify(plan)}]`);
}

// ---- costs, keys, outcomes and headers ------------------------------------------

function checkCost(cost) {
  if (typeof cost === 'function') return;
  if (!Number.isInteger(cost)) throw new TypeError(`cost must be an integer or a function request -> integer, not ${typeof cost}`);
  if (cost < 0) throw new RangeError(`cost must be >= 0 (got ${cost})`);
}

function resolveCost(cost, request) {
  const v = typeof cost === 'function' ? cost(request) : cost;
  if (!Number.isInteger(v)) throw new TypeError(`cost must be an integer (or a function returning one), not ${typeof v}`);
  return v;
}

function checkKey(key) {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) {
    throw new TypeError(`the key function returned ${typeof key}; expected a string, a Buffer or null`);
  }
  return key;
}

/** The key of a per-route limit: "<scope>|<key>". */
function scopedKey(scope, key) {
  if (key instanceof Uint8Array) return Buffer.concat([Buffer.from(scope + '|', 'utf8'), key]);
  return scope + '|' + key;
}

/** One check made for a request: its decision, the policy the decision
 * reports (policies[decision.policyIndex]) and the policy's name. */
function outcomeOf(decision, policies, name) {
  const i = decision.policyIndex || 0;
  return { decision, policy: policies[i] || policies[0], name };
}

function retryMs(o) {
  const r = o.decision.retryAfter;
  return r == null || r < 0 ? Infinity : r;
}

/** The outcome a response's headers describe when a request passed several
 * checks: a denial if any (the longest retry), else the fewest remaining. */
function binding(outcomes) {
  let best = null;
  for (const o of outcomes) {
    if (o.decision.allowed) continue;
    if (best === null || retryMs(o) > retryMs(best)) best = o;
  }
  if (best !== null) return best;
  for (const o of outcomes) {
    if (best === null || o.decision.remaining < best.decision.remaining) best = o;
  }
  return best;
}

let core = null;
function coreModule() {
  if (core === null) core = require('./index.js');
  return core;
}

/** The response headers of an outcome, as the C core formats them
 * (rateLimitHeaders: byte-identical in every binding). */
function headersFor(outcome) {
  return coreModule().rateLimitHeaders(outcome.decision, outcome.policy, outcome.name);
}

/** The JSON body of a 429: {"detail":"Rate limit exceeded","retry_after":<s>},
 * the same bytes as the Python integrations send. */
function deniedBody(headers) {
  let retry = parseInt(headers['Retry-After'] === undefined ? '1' : headers['Retry-After'], 10);
  if (!Number.isFinite(retry)) retry = 1;
  return JSON.stringify({ detail: 'Rate limit exceeded', retry_after: retry });
}

// ---- which responses count ---------------------------------------------------

const COUNT_MODES = Object.freeze(['all', 'failed', 'successful']);

/** The default `failed` predicate: an error status (4xx, 5xx). */
function failedStatus(status) {
  return status >= 400;
}

function countOptions(o) {
  const count = o.count === undefined ? 'all' : o.count;
  if (!COUNT_MODES.includes(count)) {
    const got = typeof count === 'string' ? JSON.stringify(count) : typeOfValue(count);
    throw new TypeError(`count must be 'all', 'failed' or 'successful', not ${got}`);
  }
  const failed = o.failed === undefined ? failedStatus : o.failed;
  if (typeof failed !== 'function') {
    throw new TypeError(`failed must be a function status -> boolean, not ${typeOfValue(failed)}`);
  }
  if (count !== 'all' && typeof o.limiter.refund !== 'function') {
    throw new TypeError(`count '${count}' needs a limiter with refund(): a tollgate Limiter`);
  }
  return { count, failed };
}

function typeOfValue(v) {
  return v === null ? 'null' : typeof v;
}

/**
 * What a request was charged, to give back if its response does not count:
 * null when nothing is to be given back (count 'all', or a denial, which
 * charged nothing). A cost of 0 is not a refund amount: its refund is
 * refused (InvalidArgumentError) and ignored like any failed refund.
 */
function chargeOf(c, key, policies, decision, cost) {
  if (c.count === 'all' || !decision.allowed) return null;
  return { key, policies, cost };
}

/**
 * Settles a charge once the response's status is known: a response that
 * does not count ('failed' counts failed ones only, 'successful' the others)
 * gets its units back. Resolves to true when they came back; never rejects
 * (a refund that fails, such as nothing left to give back or the store away,
 * is ignored: the response has gone). A `failed` predicate that throws keeps
 * the charge.
 */
function settleCharge(c, charge, status) {
  if (charge === null) return Promise.resolve(false);
  let failed;
  try {
    failed = Boolean(c.failed(status));
  } catch {
    return Promise.resolve(false);
  }
  if (failed === (c.count === 'failed')) return Promise.resolve(false);
  return c.limiter.refund(charge.key, charge.policies, { amount: charge.cost }).then(
    () => true,
    () => false,
  );
}

/**
 * The options every integration takes, checked once: { limiter, key, cost,
 * scope, limits, onError, count, failed }. `what` names the caller in error
 * messages ("rateLimit", "tollgate/next") and `defaultKey` is its key
 * function when none is given.
 */
function compileOptions(options, what, defaultKey) {
  const o = options || {};
  const limiter = o.limiter;
  if (limiter == null || typeof limiter.check !== 'function') {
    throw new TypeError(`${what} needs { limiter }: a tollgate Limiter`);
  }
  const key = o.key === undefined ? defaultKey : o.key;
  checkKeyFunc(key);
  const cost = o.cost === undefined ? 1 : o.cost;
  checkCost(cost);
  if (o.scope != null && typeof o.scope !== 'string') throw new TypeError(`scope must be a string, not ${typeof o.scope}`);
  if (o.onError != null && typeof o.onError !== 'function') throw new TypeError('onError must be a function');
  const limits = new Limits({ policy: o.policy, policies: o.policies, plans: o.plans, plan: o.plan, name: o.name });
  if (limits.empty) throw new TypeError(`${what} needs policy (or policies), or plans with plan(request)`);
  const { count, failed } = countOptions(o);
  return { limiter, key, cost, scope: o.scope, limits, onError: o.onError, count, failed };
}

module.exports = {
  PLANS,
  compileOptions,
  COUNT_MODES,
  DEFAULT_PLANS: PLANS,
  HEADER_NAMES,
  MAX_KEY_VALUE,
  Limits,
  policiesFor,
  clientAddress,
  headerKey,
  organizationKey,
  normalizeAddress,
  // shared by the integrations
  checkKeyFunc,
  checkCost,
  resolveCost,
  checkKey,
  scopedKey,
  outcomeOf,
  binding,
  headersFor,
  deniedBody,
  headerValue,
  chargeOf,
  settleCharge,
};
