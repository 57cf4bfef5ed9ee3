'use strict';
// Plans, key functions and the pieces the web integrations share
// (tollgate/express, tollgate/next). The Node twin of the Python package's
// tollgate.plans: the same plan limits, the same key strings, the same
// choice of which limit a response's headers describe, so a Node service and
// a Python one sharing a Redis enforce one limit on one key.

const crypto = require('node:crypto');
const net = require('node:net');

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
  const ip = parseNode(String(text));
  return ip == null ? null : formatAddress(ip, ipv6Prefix);
}

// ---- key functions -------------------------------------------------------------

function checkKeyFunc(key, what) {
  if (typeof key !== 'function') {
    throw new TypeError(`${what || 'key'} must be a key function (request -> string | Buffer | null), not ${typeof key}`);
  }
}

// ---- addresses of proxy headers, ranges, allow and deny lists ------------------
//
// The rules of Python's tollgate.plans (ClientRule, AddressList,
// Exemptions), so a Node service and a Python one find the same client and
// exempt the same requests.

/** The headers a proxy may write the client's address into, for
 * `proxyHeader`: 'x-forwarded-for' (the default), 'forwarded' (RFC 7239
 * for=), or 'auto' (Forwarded when the request has one, else
 * X-Forwarded-For). */
const PROXY_HEADERS = Object.freeze(['x-forwarded-for', 'forwarded', 'auto']);

const NOT_AN_ADDRESS = 'not an IPv4 or IPv6 address or CIDR range (expected e.g. 10.0.0.0/8 or 2001:db8::/32)';

let errorsModule = null;
function invalidArgument(message) {
  if (errorsModule === null) errorsModule = require('./errors.js');
  return new errorsModule.InvalidArgumentError(message, 'RL_E_INVALID_ARG');
}

/** An address: { family: 4 | 6, text } in Python's canonical spelling
 * (IPv4-mapped IPv6 as IPv4), or null. No IPv6 zone ids (the library has
 * none). */
function parseIp(text) {
  if (!text || text.includes('%')) return null;
  const v4 = parseIPv4(text);
  if (v4 != null) return { family: 4, text: v4.join('.'), groups: null };
  const g = parseIPv6(text);
  if (g == null) return null;
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return { family: 4, text: [g[6] >> 8, g[6] & 255, g[7] >> 8, g[7] & 255].join('.'), groups: null };
  }
  return { family: 6, text: formatIPv6(g), groups: g };
}

/** The address of a proxy header's entry ("203.0.113.7",
 * "203.0.113.7:5000", "[2001:db8::1]:443", "2001:db8::1"), or null
 * (unknown, an obfuscated identifier, anything else). */
function parseNode(text) {
  if (text == null) return null;
  text = String(text).trim();
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0 || (end + 1 < text.length && text[end + 1] !== ':')) return null;
    return parseIp(text.slice(1, end));
  }
  if (text.split(':').length === 2) text = text.split(':')[0]; // "203.0.113.7:5000"
  return parseIp(text);
}

function formatAddress(ip, ipv6Prefix) {
  if (ip.family === 6 && ipv6Prefix != null && ipv6Prefix < 128) {
    const net6 = ip.groups.slice();
    for (let i = 0; i < 8; i++) {
      const bits = Math.max(0, Math.min(16, ipv6Prefix - i * 16));
      net6[i] = bits === 0 ? 0 : net6[i] & ((0xffff << (16 - bits)) & 0xffff);
    }
    return formatIPv6(net6) + '/' + ipv6Prefix;
  }
  return ip.text;
}

// The library's rule: hex digits, '.', ':' and '/' only, with a '.' or a
// ':', is meant as an address or a range.
function looksLikeAddress(text) {
  return /[.:]/.test(text) && /^[0-9a-fA-F.:/]+$/.test(text);
}

/** `text` as { family, text, bits } when it is meant as an address or CIDR
 * range (the library's rule, docs/exemptions.md), null when it is an exact
 * key; InvalidArgumentError naming `where` (never echoing the text) when
 * it is meant as an address but is not one. */
function parseRange(text, where) {
  if (text === '') throw invalidArgument(`${where}: empty`);
  const slash = text.indexOf('/');
  const head = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(head);
  if ((slash < 0 || ip == null) && !looksLikeAddress(text)) return null;
  if (ip == null) throw invalidArgument(`${where}: ${NOT_AN_ADDRESS}`);
  const maxBits = ip.family === 4 ? 32 : 128;
  let bits = maxBits;
  if (slash >= 0) {
    const digits = text.slice(slash + 1);
    const bad = `${where}: a CIDR prefix length is 0 to ${maxBits}`;
    if (!/^[0-9]{1,3}$/.test(digits)) throw invalidArgument(bad);
    bits = Number(digits);
    if (ip.family === 4 && head.includes(':')) { // an IPv4-mapped range: ::ffff:10.0.0.0/104
      if (bits < 96) throw invalidArgument(`${where}: an IPv4-mapped range needs a prefix of 96 to 128`);
      bits -= 96;
    }
    if (bits > maxBits) throw invalidArgument(bad);
  }
  return { family: ip.family, text: ip.text, bits };
}

function rangeText(r) {
  return `${r.text}/${r.bits}`;
}

function entriesOf(entries, what, kinds) {
  if (entries === null || typeof entries !== 'object' || typeof entries[Symbol.iterator] !== 'function' ||
      entries instanceof Uint8Array) {
    throw new TypeError(`${what} must be an array of strings (${kinds}), not ${entries instanceof Uint8Array ? 'a Uint8Array' : typeOfValue(entries)}`);
  }
  return [...entries];
}

/** A key's bytes as a string usable in a Set (latin1 of the UTF-8 bytes). */
function keyId(key) {
  return (typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key.buffer, key.byteOffset, key.byteLength)).toString('latin1');
}

/** A set of ranges (net.BlockList) and the ranges themselves. */
function rangeSet(ranges) {
  const list = new net.BlockList();
  for (const r of ranges) list.addSubnet(r.text, r.bits, r.family === 4 ? 'ipv4' : 'ipv6');
  return list;
}

function inRanges(list, ip) {
  return ip != null && list.check(ip.text, ip.family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * An allow or deny list of a web helper: exact keys (matched against the
 * key the helper's key function gives) and IPv4 / IPv6 addresses and CIDR
 * ranges (matched against the client address). The entries are those of
 * new Limiter({ allow, deny }) (docs/exemptions.md), checked by the same
 * rules: a bad one throws InvalidArgumentError naming it by index
 * (deny[2]) without echoing it.
 */
class AddressList {
  constructor(entries, what = 'entries') {
    const keys = new Set();
    const ranges = [];
    entriesOf(entries, what, 'keys, IP addresses, CIDR ranges').forEach((e, i) => {
      const where = `${what}[${i}]`;
      if (e instanceof Uint8Array) {
        const b = Buffer.from(e.buffer, e.byteOffset, e.byteLength);
        const ascii = b.every((c) => c < 0x80);
        const r = ascii ? parseRange(b.toString('latin1'), where) : null;
        if (r === null) keys.add(keyId(e));
        else ranges.push(r);
        return;
      }
      if (typeof e !== 'string') throw new TypeError(`${where} must be a string, Buffer or Uint8Array, not ${typeOfValue(e)}`);
      const r = parseRange(e, where);
      if (r === null) keys.add(keyId(e));
      else ranges.push(r);
    });
    this.keys = keys;
    this.ranges = Object.freeze(ranges.map(rangeText));
    this._list = rangeSet(ranges);
    this._any = ranges.length > 0;
  }

  get size() {
    return this.keys.size + this.ranges.length;
  }

  /** Whether the address ({ family, text }, or a string) is in a range of the list. */
  hasAddress(ip) {
    if (typeof ip === 'string') ip = parseIp(ip);
    return this._any && inRanges(this._list, ip);
  }

  /** Whether the key (string or bytes) is an exact entry. */
  hasKey(key) {
    return key != null && this.keys.size > 0 && this.keys.has(keyId(key));
  }
}

function trustedRanges(entries) {
  const what = 'trustedProxies';
  const ranges = entriesOf(entries, what, 'IP addresses, CIDR ranges').map((e, i) => {
    const where = `${what}[${i}]`;
    if (typeof e !== 'string') throw new TypeError(`${where} must be a string, not ${typeOfValue(e)}`);
    const r = parseRange(e, where);
    if (r === null) throw invalidArgument(`${where}: ${NOT_AN_ADDRESS}`);
    return r;
  });
  if (ranges.length === 0) {
    throw invalidArgument(`${what}: empty (leave it out to trust no proxy; an array holds the proxies' addresses or ranges)`);
  }
  return ranges;
}

// `text` split at `sep` outside double quotes (a backslash escapes inside them).
function quotedSplit(text, sep) {
  const parts = [];
  let cur = '';
  let quoted = false;
  let escaped = false;
  for (const c of text) {
    if (escaped) {
      escaped = false;
    } else if (quoted && c === '\\') {
      escaped = true;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (c === sep && !quoted) {
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  parts.push(cur);
  return parts;
}

function unquote(value) {
  value = value.trim();
  if (!value.startsWith('"')) return value && !value.includes('"') ? value : null;
  if (value.length < 2 || !value.endsWith('"')) return null;
  let out = '';
  let escaped = false;
  for (const c of value.slice(1, -1)) {
    if (escaped || c !== '\\') {
      out += c;
      escaped = false;
    } else {
      escaped = true;
    }
  }
  return out;
}

/**
 * The for= node of each element of RFC 7239 Forwarded header lines, left
 * to right (one per proxy hop; lines are joined as by a comma):
 * 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"' ->
 * ['192.0.2.60', '[2001:db8::1]:4711']. Parameter names are
 * case-insensitive and quoted values unescaped. An element without a for=
 * (or with two, or malformed) gives null.
 */
function forwardedFor(lines) {
  if (typeof lines === 'string') lines = [lines];
  const out = [];
  for (const line of lines) {
    for (const element of quotedSplit(String(line), ',')) {
      if (!element.trim()) continue;
      let node = null;
      let seen = 0;
      for (const pair of quotedSplit(element, ';')) {
        if (!pair.trim()) continue;
        const eq = pair.indexOf('=');
        if (eq < 0) {
          seen = 2; // malformed: no value
          break;
        }
        if (pair.slice(0, eq).trim().toLowerCase() === 'for') {
          seen += 1;
          node = unquote(pair.slice(eq + 1));
        }
      }
      out.push(seen === 1 ? node : null);
    }
  }
  return out;
}

/**
 * How a request's client address is found (clientAddress and the helpers'
 * lists share it):
 *
 * - no trustedProxies: the TCP peer;
 * - a hop count N (with trustForwarded): the N-th entry from the right of
 *   the proxy header; fewer entries, or no address there: the peer;
 * - ranges: when the peer is in them, the proxy header is read from the
 *   right, skipping the entries inside them; the first other entry is the
 *   client (every entry trusted: the left-most). An entry that is no
 *   address (unknown, an obfuscated _id, garbage) ends the walk: the client
 *   is unknown. A Web Request (Next.js) has no peer: its walk starts at the
 *   header's right-most entry (the peer Next.js wrote, or the one the
 *   nearest proxy appended).
 */
class ClientRule {
  constructor(hops = 0, ranges = [], header = 'x-forwarded-for') {
    this.hops = hops;
    this.ranges = Object.freeze(ranges.map(rangeText));
    this.header = header;
    this._list = rangeSet(ranges);
    Object.freeze(this);
  }

  trusted(ip) {
    return inRanges(this._list, ip);
  }

  entries(request) {
    if (this.header !== 'x-forwarded-for') {
      const lines = headerLines(request, 'Forwarded').filter((l) => l.trim() !== '');
      if (lines.length > 0 || this.header === 'forwarded') return forwardedFor(lines);
    }
    const hops = [];
    for (const line of headerLines(request, 'X-Forwarded-For')) {
      for (const p of line.split(',')) {
        const h = p.trim();
        if (h) hops.push(h);
      }
    }
    return hops;
  }

  /** { ip: the client's address or null, text: what to key by when it is
   * not an address (the peer's own text, or null for unknown) }. */
  resolve(request) {
    const peer = peerAddress(request);
    const peerIp = peer != null ? parseNode(peer) : null;
    if (this.ranges.length > 0) {
      const web = peer == null && request != null && isWebHeaders(request.headers);
      if (!web && (peerIp == null || !this.trusted(peerIp))) return { ip: peerIp, text: peer };
      let client = peerIp;
      const entries = this.entries(request);
      for (let i = entries.length - 1; i >= 0; i--) {
        const ip = parseNode(entries[i]);
        if (ip == null) return { ip: null, text: null }; // unknown or obfuscated: the walk ends
        client = ip;
        if (!this.trusted(ip)) break;
      }
      return { ip: client, text: null };
    }
    if (this.hops) {
      const entries = this.entries(request);
      if (entries.length >= this.hops) {
        const ip = parseNode(entries[entries.length - this.hops]);
        if (ip != null) return { ip, text: null };
      }
    }
    return { ip: peerIp, text: peer };
  }
}

const PEER = new ClientRule();
const kRule = Symbol('tollgate.clientRule');

function checkProxyHeader(proxyHeader) {
  if (typeof proxyHeader !== 'string') throw new TypeError(`proxyHeader must be a string, not ${typeOfValue(proxyHeader)}`);
  const header = proxyHeader.toLowerCase();
  if (!PROXY_HEADERS.includes(header)) {
    throw new RangeError(`proxyHeader must be 'x-forwarded-for', 'forwarded' or 'auto', not ${JSON.stringify(proxyHeader)}`);
  }
  return header;
}

/** The ClientRule of trustedProxies (undefined/null, a hop count, or the
 * proxies' addresses and CIDR ranges) and proxyHeader. A hop count reads
 * the header only with trustForwarded (undefined: yes). */
function clientRule(trustedProxies, proxyHeader = 'x-forwarded-for', trustForwarded) {
  const header = checkProxyHeader(proxyHeader);
  if (trustForwarded !== undefined && typeof trustForwarded !== 'boolean') {
    throw new TypeError(`trustForwarded must be a boolean, not ${typeOfValue(trustForwarded)}`);
  }
  if (trustedProxies == null) return PEER;
  if (typeof trustedProxies === 'number') {
    if (!Number.isInteger(trustedProxies)) throw new TypeError(`trustedProxies must be an integer (a hop count), received ${trustedProxies}`);
    if (trustedProxies < 1) throw new RangeError(`trustedProxies must be >= 1 (got ${trustedProxies})`);
    if (trustForwarded === false) return PEER;
    return new ClientRule(trustedProxies, [], header);
  }
  if (typeof trustedProxies !== 'object' || typeof trustedProxies[Symbol.iterator] !== 'function') {
    throw new TypeError(`trustedProxies must be an integer (a hop count) or an array of the proxies' addresses and CIDR ranges, not ${typeOfValue(trustedProxies)}`);
  }
  const ranges = trustedRanges(trustedProxies);
  if (trustForwarded === false) {
    throw new RangeError('trustedProxies as addresses reads the proxy header: trustForwarded false contradicts it');
  }
  return new ClientRule(0, ranges, header);
}

function clientAddressOptions(opts) {
  const o = opts || {};
  const ipv6Prefix = o.ipv6Prefix === undefined ? 64 : o.ipv6Prefix;
  if (o.trustForwarded !== undefined && typeof o.trustForwarded !== 'boolean') {
    throw new TypeError(`trustForwarded must be a boolean, not ${typeof o.trustForwarded}`);
  }
  if (ipv6Prefix !== null && !(Number.isInteger(ipv6Prefix) && ipv6Prefix >= 1 && ipv6Prefix <= 128)) {
    throw new RangeError(`ipv6Prefix must be null or an integer in 1..128 (got ${ipv6Prefix})`);
  }
  const proxyHeader = o.proxyHeader === undefined ? 'x-forwarded-for' : o.proxyHeader;
  const trustedProxies = o.trustedProxies === undefined ? 1 : o.trustedProxies;
  // A hop count is read only with trustForwarded: true (the default of 1
  // must not make a plain clientAddress trust the header).
  const rule = typeof trustedProxies === 'number'
    ? clientRule(trustedProxies, proxyHeader, o.trustForwarded === true)
    : clientRule(trustedProxies, proxyHeader, o.trustForwarded);
  const hops = typeof trustedProxies === 'number' ? trustedProxies : 0;
  return { rule, ipv6Prefix, trustForwarded: rule.hops > 0, hops };
}

function addressKey(request, rule, ipv6Prefix) {
  const { ip, text } = rule.resolve(request);
  if (ip != null) return 'ip:' + formatAddress(ip, ipv6Prefix);
  return 'ip:' + (text || 'unknown');
}

function addressKeyFunction(rule, ipv6Prefix, hops) {
  const fn = (request) => addressKey(request, rule, ipv6Prefix);
  let shown = rule.ranges.length > 0
    ? `trustedProxies=[${rule.ranges.join(', ')}]`
    : `trustForwarded=${rule.hops > 0}, trustedProxies=${rule.hops || hops}`;
  if (rule.header !== 'x-forwarded-for') shown += `, proxyHeader=${rule.header}`;
  Object.defineProperty(fn, 'name', { value: `clientAddress(${shown})` });
  Object.defineProperty(fn, kRule, { value: rule });
  return fn;
}

/**
 * Key by the client's IP address: "ip:<address>" (IPv6 by its /64:
 * "ip:2001:db8:1:2::/64"). The default key.
 *
 * Used directly as a key function (`key: clientAddress`) it keys by the TCP
 * peer and ignores the proxy headers. Called with options it returns a key
 * function: `clientAddress({ trustForwarded: true, trustedProxies: 2 })`
 * (the 2nd X-Forwarded-For entry from the right), or
 * `clientAddress({ trustedProxies: ['10.0.0.0/8'] })` (the header read from
 * the right, skipping your proxies; the first other entry is the client),
 * with `proxyHeader: 'forwarded'` (RFC 7239 for=) or 'auto'.
 */
function clientAddress(requestOrOptions) {
  const r = requestOrOptions;
  const looksLikeRequest = r != null && (r.headers !== undefined || r.socket !== undefined);
  if (looksLikeRequest) return addressKey(r, PEER, 64);
  const o = clientAddressOptions(r);
  return addressKeyFunction(o.rule, o.ipv6Prefix, o.hops);
}
Object.defineProperty(clientAddress, kRule, { value: PEER });

/** The ClientRule of a clientAddress key function, else null. */
function ruleOf(key) {
  const rule = key != null ? key[kRule] : undefined;
  return rule instanceof ClientRule ? rule : null;
}

/**
 * The allow and deny lists of a web helper (`allow`, `deny`) and the rule
 * finding the client address they match. A request is denied (403, before
 * any check) when its client address or its key is on the deny list;
 * otherwise allowed without any check when its address or key is on the
 * allow list. The deny list wins.
 */
class Exemptions {
  constructor(allow, deny, rule) {
    this.allow = new AddressList(allow == null ? [] : allow, 'allow');
    this.deny = new AddressList(deny == null ? [] : deny, 'deny');
    this.rule = rule;
  }

  address(request) {
    return this.rule.resolve(request).ip;
  }

  denies(ip, key) {
    return this.deny.hasAddress(ip) || this.deny.hasKey(key);
  }

  allows(ip, key) {
    return this.allow.hasAddress(ip) || this.allow.hasKey(key);
  }
}

/** A helper's key function and lists from its options: trustedProxies
 * (a hop count, or the proxies' addresses and ranges) decides the client
 * address the lists match, and makes the default key function key by that
 * address; without it, a clientAddress key function's own rule is used
 * (else the peer). No lists: exemptions null. */
function webOptions(key, defaultKey, allow, deny, trustedProxies, proxyHeader) {
  const header = checkProxyHeader(proxyHeader === undefined ? 'x-forwarded-for' : proxyHeader);
  let rule;
  if (trustedProxies != null) {
    rule = clientRule(trustedProxies, header);
    if (key === defaultKey) key = addressKeyFunction(rule, 64, 0); // key by the client so found
  } else {
    if (header !== 'x-forwarded-for') throw new TypeError('proxyHeader needs trustedProxies (which proxies write it)');
    rule = ruleOf(key) || PEER;
  }
  if (allow == null && deny == null) return { key, exemptions: null };
  const exemptions = new Exemptions(allow, deny, rule);
  if (exemptions.allow.size === 0 && exemptions.deny.size === 0) return { key, exemptions: null };
  return { key, exemptions };
}

/** The JSON body of a deny-list 403: the bytes the Python integrations send. */
const FORBIDDEN_BODY = '{"detail":"Forbidden"}';

/** Whether a denial is the limiter's deny list's (answered 403). */
function deniedByList(decision) {
  return decision != null && !decision.allowed && decision.source === 'deny_list';
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
const REQUEST_OPTIONS = [
  'limiter', 'cost', 'count', 'failed', 'onError', 'limits', 'allow', 'deny', 'trustedProxies', 'proxyHeader',
];
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

/** The request's pair under each limit: { key, policies, name, raw } (raw:
 * the key before its scope); a limit whose key function returns
 * null/undefined leaves it out. */
async function pairsOf(c, request) {
  const out = [];
  for (const g of c.groups) {
    let k = await g.key(request);
    if (k == null) continue;
    k = checkKey(k);
    const raw = k;
    if (g.scope !== null) k = scopedKey(g.scope, k);
    const plan = g.limits.plan ? await g.limits.plan(request) : null;
    const { policies, name } = g.limits.forPlan(plan);
    out.push({ key: k, policies, name, raw });
  }
  return out;
}

// Requests a helper's allow list exempted: the helpers stacked after it on
// the same request do not check it either (Python's SCOPE_EXEMPT).
const EXEMPT = new WeakSet();

/** The answer of decide() to a request on a deny list (the helper's, or
 * the limiter's: `decision` then is its denial). */
function forbidden(decision) {
  return { forbidden: true, allowed: false, decision: decision || null, outcomes: [], bound: null, charge: null };
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
  const ex = c.exemptions;
  if (isObject(request) && EXEMPT.has(request)) return null;
  let ip = null;
  // A shadow limiter lets a deny-listed request go on, as it answers a key
  // on its own deny list.
  const enforce = ex !== null && c.limiter.shadow !== true;
  if (ex !== null) {
    ip = ex.address(request);
    if (enforce && ex.deny.hasAddress(ip)) return forbidden(null);
  }
  const pairs = await pairsOf(c, request);
  if (ex !== null) {
    if (enforce && pairs.some((p) => ex.deny.hasKey(p.raw))) return forbidden(null);
    if (ex.allow.hasAddress(ip) || pairs.some((p) => ex.allow.hasKey(p.raw))) {
      if (isObject(request)) EXEMPT.add(request);
      return null;
    }
  }
  if (pairs.length === 0) return null;
  const r = await decideFor(c, request, pairs);
  // The limiter's own deny list: 403 as well.
  if (!r.allowed) {
    for (const o of r.outcomes) if (deniedByList(o.decision)) return { ...forbidden(o.decision), outcomes: r.outcomes };
  }
  return r;
}

async function decideFor(c, request, pairs) {
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
  let key = o.key === undefined ? defaultKey : o.key;
  checkKeyFunc(key);
  // Allow and deny lists, and how the client address is found.
  const web = webOptions(key, defaultKey, o.allow, o.deny, o.trustedProxies, o.proxyHeader);
  key = web.key;
  const exemptions = web.exemptions;
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
  return { limiter, key, cost, groups, onError: o.onError, count, failed, exemptions };
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
  PROXY_HEADERS,
  AddressList,
  ClientRule,
  Exemptions,
  clientRule,
  forwardedFor,
  FORBIDDEN_BODY,
  deniedByList,
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
