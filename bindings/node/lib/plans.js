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
 * reports (policies[decision.policyIndex]), the policy's name and the key
 * checked. */
function outcomeOf(decision, policies, name, key) {
  const i = decision.policyIndex || 0;
  return { decision, policy: policies[i] || policies[0], name, key };
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

// ---- a request's limits, in one decision -------------------------------------
//
// A request subject to several limits (a global one and a route's) is
// checked for all of them at once, all or nothing: a request one limit
// denies costs nothing under the others. Two ways lead there:
//
//   - one integration call with several limits (`limits: [...]`): one
//     limiter.checkKeys() over every (key, policies) pair. When one call
//     cannot take them (keys in several Redis Cluster slots: the limiter
//     rejects with RL_E_UNSUPPORTED before sending anything; a key twice;
//     more than 16 policies), two steps: the route limits (limits[1..])
//     alone first, each checked and charged, a denial stopping there (the
//     global limit untouched); then limits[0], whose denial gives the
//     route limits' charges back (a refund of the same cost).
//   - integrations stacked on one request (app.use(rateLimit(global)), then
//     a route's rateLimit; nested withRateLimit; limit() called twice on one
//     Request): each charges when it allows and records its charge on the
//     request; one that denies gives back what the earlier ones charged for
//     this request before it answers 429.

/** The most limits one integration takes: one checkKeys call's keys (RL_MAX_KEYS). */
const MAX_LIMITS = 8;
/** The most policies of one checkKeys call (RL_MAX_POLICIES). */
const MAX_CALL_POLICIES = 16;

// Options that belong to the whole request, not to one of `limits`.
const REQUEST_OPTIONS = ['limiter', 'cost', 'count', 'failed', 'onError', 'limits'];
// Options that belong to one limit, not beside `limits`.
const LIMIT_OPTIONS = ['policy', 'policies', 'plans', 'plan', 'name', 'scope'];

/** One limit of an integration: { key, scope, limits } (`limits` a Limits). */
function compileLimit(spec, what, defaultKey, inList) {
  if (inList) {
    if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
      throw new TypeError(`${what} must be a limit ({ policy | policies | plans + plan, key?, scope?, name? }), not ${Array.isArray(spec) ? 'an array' : typeOfValue(spec)}`);
    }
    for (const f of REQUEST_OPTIONS) {
      if (spec[f] !== undefined) throw new TypeError(`${what}: ${f} applies to the whole request; give it beside limits`);
    }
  }
  const key = spec.key === undefined ? defaultKey : spec.key;
  checkKeyFunc(key, inList ? `${what}.key` : 'key');
  if (spec.scope != null && typeof spec.scope !== 'string') throw new TypeError(`scope must be a string, not ${typeof spec.scope}`);
  const limits = new Limits({ policy: spec.policy, policies: spec.policies, plans: spec.plans, plan: spec.plan, name: spec.name });
  if (limits.empty) throw new TypeError(`${what} needs policy (or policies), or plans with plan(request)`);
  return { key, scope: spec.scope == null ? null : spec.scope, limits };
}

/** The request's pair under each limit: { key, policies, name }; a limit
 * whose key function returns null/undefined leaves it out. */
async function pairsOf(c, request) {
  const out = [];
  for (const g of c.groups) {
    let k = await g.key(request);
    if (k == null) continue;
    k = checkKey(k);
    if (g.scope !== null) k = scopedKey(g.scope, k);
    const plan = g.limits.plan ? await g.limits.plan(request) : null;
    const { policies, name } = g.limits.forPlan(plan);
    out.push({ key: k, policies, name });
  }
  return out;
}

function keyBytes(k) {
  return typeof k === 'string' ? Buffer.from(k, 'utf8') : k;
}

function sameKey(a, b) {
  if (typeof a === 'string' && typeof b === 'string') return a === b;
  return Buffer.compare(keyBytes(a), keyBytes(b)) === 0;
}

/** Whether one limiter.checkKeys() call can take these pairs: 2 to 8
 * distinct keys, 16 policies at most. */
function oneCall(limiter, pairs) {
  if (typeof limiter.checkKeys !== 'function') return false;
  if (pairs.length < 2 || pairs.length > MAX_LIMITS) return false;
  let total = 0;
  for (const p of pairs) total += p.policies.length;
  if (total > MAX_CALL_POLICIES) return false;
  for (let j = 1; j < pairs.length; j++) {
    for (let i = 0; i < j; i++) if (sameKey(pairs[i].key, pairs[j].key)) return false;
  }
  return true;
}

function isUnsupported(err) {
  return err != null && err.code === 'RL_E_UNSUPPORTED';
}

/** Gives `units` back to each pair (a check with cost -units); resolves to
 * whether any came back. Never rejects. */
function giveBackPairs(limiter, pairs, units) {
  if (!(units >= 1) || pairs.length === 0) return Promise.resolve(false);
  const one = (p) =>
    (typeof limiter.refund === 'function'
      ? limiter.refund(p.key, p.policies, { amount: units })
      : limiter.check(p.key, p.policies, { cost: -units })
    ).then(
      () => true,
      () => false,
    );
  const each = () => Promise.all(pairs.map(one)).then((r) => r.includes(true));
  if (pairs.length === 1 || !oneCall(limiter, pairs)) return each();
  return limiter.checkKeys(pairs.map((p) => [p.key, p.policies]), { cost: -units }).then(
    () => true,
    (err) => (isUnsupported(err) ? each() : false),
  );
}

/**
 * Checks a request against every limit of `c` (compileOptions) and charges
 * `cost` to all of them, all or nothing. Resolves to null when no limit
 * applies (every key function returned null), else to
 *   { allowed, outcomes, bound, charge }:
 * `outcomes` (each { decision, policy, name, key }) one per decision made
 * (one for a single call; one per limit checked in the two-step fallback),
 * `bound` the one the response describes (binding()), and `charge` what was
 * charged ({ limiter, pairs, cost, given }), null when denied.
 */
async function decide(c, request) {
  const pairs = await pairsOf(c, request);
  if (pairs.length === 0) return null;
  const units = resolveCost(c.cost, request);
  const limiter = c.limiter;
  const finish = (allowed, outcomes) => ({
    allowed,
    outcomes,
    bound: binding(outcomes),
    charge: allowed ? { limiter, pairs, cost: units, given: false } : null,
  });
  if (pairs.length === 1) {
    const p = pairs[0];
    const decision = await limiter.check(p.key, p.policies, { cost: units });
    return finish(decision.allowed, [outcomeOf(decision, p.policies, p.name, p.key)]);
  }
  if (oneCall(limiter, pairs)) {
    try {
      const decision = await limiter.checkKeys(pairs.map((p) => [p.key, p.policies]), { cost: units });
      // policyIndex counts the policies pair by pair: find the pair.
      let i = decision.policyIndex || 0;
      let j = 0;
      while (j < pairs.length - 1 && i >= pairs[j].policies.length) i -= pairs[j++].policies.length;
      const p = pairs[j];
      return finish(decision.allowed, [{ decision, policy: p.policies[i] || p.policies[0], name: p.name, key: p.key }]);
    } catch (err) {
      if (!isUnsupported(err)) throw err;
      // Keys in several Redis Cluster slots: nothing was sent; two steps.
    }
  }
  // Two steps: the route limits first (pairs[1..]), then the global one.
  const outcomes = [];
  const charged = [];
  for (let n = 1; n <= pairs.length; n++) {
    const p = pairs[n % pairs.length];
    const decision = await limiter.check(p.key, p.policies, { cost: units });
    outcomes.push(outcomeOf(decision, p.policies, p.name, p.key));
    if (!decision.allowed) {
      await giveBackPairs(limiter, charged, units);
      return finish(false, outcomes);
    }
    charged.push(p);
  }
  return finish(true, outcomes);
}

// The charges made for a request by the integrations that allowed it, so
// that one denying it later gives them back: request -> [charge].
const CHARGES = new WeakMap();

function isObject(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function');
}

/** Records an allowed request's charge, for a later denial to give back. */
function recordCharge(request, charge) {
  if (charge === null || !isObject(request)) return;
  const list = CHARGES.get(request);
  if (list === undefined) CHARGES.set(request, [charge]);
  else list.push(charge);
}

/**
 * A later limit denied the request: gives back every charge recorded for it
 * (each once; a charge whose response-time settle already gave it back is
 * skipped). Resolves when done; never rejects (a refund that fails is
 * ignored).
 */
function giveBackCharges(request) {
  if (!isObject(request)) return Promise.resolve();
  const list = CHARGES.get(request);
  if (list === undefined) return Promise.resolve();
  CHARGES.delete(request);
  const pending = [];
  for (const charge of list) {
    if (charge.given) continue;
    charge.given = true;
    pending.push(giveBackPairs(charge.limiter, charge.pairs, charge.cost));
  }
  return Promise.all(pending).then(() => undefined);
}

/**
 * Settles a charge once the response's status is known: a response that
 * does not count ('failed' counts failed ones only, 'successful' the others)
 * gets its units back. Resolves to true when they came back; never rejects
 * (a refund that fails, such as nothing left to give back or the store away,
 * is ignored: the response has gone). A `failed` predicate that throws keeps
 * the charge. Nothing happens for count 'all', for a denial (null: nothing
 * was charged), or for a charge given back already (a later limit denied
 * the request, or a second settle). A cost of 0 is not a refund amount:
 * nothing comes back.
 */
function settleCharge(c, charge, status) {
  if (charge === null || charge.given || c.count === 'all') return Promise.resolve(false);
  let failed;
  try {
    failed = Boolean(c.failed(status));
  } catch {
    return Promise.resolve(false);
  }
  if (failed === (c.count === 'failed')) return Promise.resolve(false);
  charge.given = true;
  return giveBackPairs(charge.limiter, charge.pairs, charge.cost);
}

/**
 * The options every integration takes, checked once: { limiter, key, cost,
 * groups, onError, count, failed }, `groups` the compiled limits (one, or
 * one per entry of `limits`). `what` names the caller in error messages
 * ("rateLimit", "tollgate/next") and `defaultKey` is its key function when
 * none is given.
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
  if (o.onError != null && typeof o.onError !== 'function') throw new TypeError('onError must be a function');
  let groups;
  if (o.limits !== undefined) {
    for (const f of LIMIT_OPTIONS) {
      if (o[f] !== undefined) throw new TypeError(`${what}: give ${f} in each of limits, not beside them`);
    }
    if (!Array.isArray(o.limits)) {
      throw new TypeError(`limits must be an array of limits ({ policy | policies | plans + plan, key?, scope?, name? }), not ${typeOfValue(o.limits)}`);
    }
    const n = o.limits.length;
    if (n < 1 || n > MAX_LIMITS) {
      throw new RangeError(`limits: 1 to ${MAX_LIMITS} limits (the keys of one checkKeys call), got ${n}`);
    }
    if (n > 1 && typeof limiter.checkKeys !== 'function') {
      throw new TypeError(`${what}: several limits need a limiter with checkKeys(): a tollgate Limiter`);
    }
    groups = o.limits.map((spec, i) => compileLimit(spec, `limits[${i}]`, key, true));
  } else {
    groups = [compileLimit(o, what, key, false)];
  }
  const { count, failed } = countOptions(o);
  return { limiter, key, cost, groups, onError: o.onError, count, failed };
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
  settleCharge,
  decide,
  recordCharge,
  giveBackCharges,
};
