'use strict';
// Allow and deny lists in the web helpers (docs/node.md, "Exemptions"; the
// Python twin is bindings/python/tests/test_exemptions_web.py): allow /
// deny (addresses and CIDR ranges match the client address, exact entries
// the key) decided before any check: 403 {"detail":"Forbidden"} without
// rate-limit headers or Retry-After for a denied request, no check for an
// allowed one; the limiter's own deny list answers 403 too; a shadow
// limiter does not enforce the helper's deny list. trustedProxies as a hop
// count or the proxies' CIDR ranges (X-Forwarded-For walked from the
// right), proxyHeader 'x-forwarded-for' / 'forwarded' (RFC 7239) / 'auto'.
// tollgate/express on a real node:http server, tollgate/next with Web
// Requests; memory and a real redis-server.

const test = require('node:test');
const assert = require('node:assert/strict');

const { Limiter, policy, InvalidArgumentError } = require('..');
const { rateLimit } = require('../lib/express.js');
const { limit, withRateLimit } = require('../lib/next.js');
const plans = require('../lib/plans.js');
const { noRedis } = require('./redis-server');
const { limiterStores, serve, get } = require('./helpers');

const { clientAddress, forwardedFor, AddressList } = plans;
const PROXIES = ['10.0.0.0/8', 'fd00::/8'];
const XFF = 'X-Forwarded-For';
const FWD = 'Forwarded';

const stores = limiterStores();

// A node:http-like request: the peer and header lines (each line its own,
// as IncomingMessage.headersDistinct keeps them).
function req(peer, ...pairs) {
  const distinct = {};
  const headers = {};
  for (const [name, value] of pairs) {
    const k = name.toLowerCase();
    (distinct[k] ||= []).push(value);
    headers[k] = headers[k] === undefined ? value : headers[k] + ', ' + value;
  }
  return { headers, headersDistinct: distinct, socket: { remoteAddress: peer } };
}

const keyOf = (key, peer, ...pairs) => key(req(peer, ...pairs));

// ---- trusted proxies by CIDR ----------------------------------------------------

test('trustedProxies as CIDRs: X-Forwarded-For walked from the right, spoofed entries ignored', () => {
  const key = clientAddress({ trustedProxies: PROXIES, ipv6Prefix: null });
  // The client wrote the left entries (spoofed), the proxies the rest.
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '6.6.6.6, 10.1.1.1, 198.51.100.7, 10.2.2.2']), 'ip:198.51.100.7');
  // Several lines are one list.
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '6.6.6.6, 198.51.100.7'], [XFF, '10.2.2.2']), 'ip:198.51.100.7');
  // A peer outside the proxies is the client: its header is ignored.
  assert.equal(keyOf(key, '192.0.2.1', [XFF, '198.51.100.7']), 'ip:192.0.2.1');
  // Every entry a proxy: the left-most (the first proxy's own peer).
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '10.3.3.3, 10.2.2.2']), 'ip:10.3.3.3');
  // No header: the proxy itself (a health check from inside).
  assert.equal(keyOf(key, '10.0.0.5'), 'ip:10.0.0.5');
  // A non-address where the walk stops: the client is unknown.
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '198.51.100.7, unknown, 10.2.2.2']), 'ip:unknown');
  // ... but not one further left than the client.
  assert.equal(keyOf(key, '10.0.0.5', [XFF, 'garbage, 198.51.100.7']), 'ip:198.51.100.7');
  // Ports and brackets, IPv6 proxies, IPv4-mapped peers.
  assert.equal(keyOf(key, 'fd00::1', [XFF, '[2001:db8::9]:443, fd00::2']), 'ip:2001:db8::9');
  assert.equal(keyOf(key, '::ffff:10.0.0.5', [XFF, '198.51.100.7:5000']), 'ip:198.51.100.7');
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '::ffff:198.51.100.7']), 'ip:198.51.100.7');
  // The default ipv6Prefix keys the client's /64.
  const keyed = clientAddress({ trustedProxies: PROXIES });
  assert.equal(keyOf(keyed, '10.0.0.5', [XFF, '2001:db8:1:2:3::9']), 'ip:2001:db8:1:2::/64');
  // Single addresses.
  const single = clientAddress({ trustedProxies: ['10.0.0.0/8', '192.0.2.1'] });
  assert.equal(keyOf(single, '192.0.2.1', [XFF, '198.51.100.7, 10.0.0.1']), 'ip:198.51.100.7');
  assert.equal(single.name, 'clientAddress(trustedProxies=[10.0.0.0/8, 192.0.2.1/32])');
  // A Web Request (Next.js) has no peer: the walk starts at the right-most entry.
  const web = new Request('http://app.test/', { headers: { [XFF]: '6.6.6.6, 198.51.100.7, 10.2.2.2' } });
  assert.equal(key(web), 'ip:198.51.100.7');
});

test('a hop count keeps working', () => {
  const key = clientAddress({ trustForwarded: true, trustedProxies: 2 });
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '6.6.6.6, 198.51.100.7, 10.2.2.2']), 'ip:198.51.100.7');
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '10.2.2.2']), 'ip:10.0.0.5'); // too few: the peer
  assert.equal(keyOf(clientAddress({ trustedProxies: 2 }), '10.0.0.5', [XFF, '1.1.1.1, 2.2.2.2']), 'ip:10.0.0.5');
  assert.equal(key.name, 'clientAddress(trustForwarded=true, trustedProxies=2)');
});

// ---- RFC 7239 Forwarded ------------------------------------------------------------

test('Forwarded for= parsing', () => {
  assert.deepEqual(forwardedFor(['for=192.0.2.60;proto=http;by=203.0.113.43']), ['192.0.2.60']);
  assert.deepEqual(forwardedFor(['for="[2001:db8:cafe::17]:4711"']), ['[2001:db8:cafe::17]:4711']);
  // Several elements, several lines, case-insensitive names, spaces.
  assert.deepEqual(forwardedFor(['for=192.0.2.43, For=198.51.100.17', ' FOR = "203.0.113.60:80" ']),
    ['192.0.2.43', '198.51.100.17', '203.0.113.60:80']);
  assert.deepEqual(forwardedFor(['for=unknown, for=_hidden']), ['unknown', '_hidden']);
  // An element without for=, with two, or malformed: null (one hop each).
  assert.deepEqual(forwardedFor(['proto=https, for=1.2.3.4;for=5.6.7.8, garbage, for="open']), [null, null, null, null]);
  // Quoted strings keep their commas and semicolons, and unescape.
  assert.deepEqual(forwardedFor(['for="a,b;c";by=x, for="\\"q\\""']), ['a,b;c', '"q"']);
  assert.deepEqual(forwardedFor(['', ' , ']), []);
});

test('proxyHeader forwarded / auto finds the client', () => {
  const key = clientAddress({ trustedProxies: PROXIES, proxyHeader: 'forwarded', ipv6Prefix: null });
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for=192.0.2.60;proto=http']), 'ip:192.0.2.60');
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for="[2001:db8:cafe::17]:4711"']), 'ip:2001:db8:cafe::17');
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for=6.6.6.6, for="198.51.100.7:1234", for=10.2.2.2']), 'ip:198.51.100.7');
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for=6.6.6.6'], [FWD, 'for=10.2.2.2']), 'ip:6.6.6.6');
  // unknown, an obfuscated node, an element without for=: the walk ends there.
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for=198.51.100.7, for=unknown']), 'ip:unknown');
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for=198.51.100.7, for="_gazonk:_port"']), 'ip:unknown');
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for=198.51.100.7, proto=https']), 'ip:unknown');
  assert.equal(keyOf(key, '10.0.0.5', [FWD, 'for="[2001:db8::1]x"']), 'ip:unknown');
  // 'forwarded' reads only Forwarded: X-Forwarded-For is ignored.
  assert.equal(keyOf(key, '10.0.0.5', [XFF, '198.51.100.7']), 'ip:10.0.0.5');
  // 'auto': Forwarded when present, else X-Forwarded-For.
  const auto = clientAddress({ trustedProxies: PROXIES, proxyHeader: 'auto' });
  assert.equal(keyOf(auto, '10.0.0.5', [XFF, '198.51.100.1'], [FWD, 'for=198.51.100.2']), 'ip:198.51.100.2');
  assert.equal(keyOf(auto, '10.0.0.5', [XFF, '198.51.100.1']), 'ip:198.51.100.1');
  // The default reads only X-Forwarded-For.
  const xff = clientAddress({ trustedProxies: PROXIES });
  assert.equal(keyOf(xff, '10.0.0.5', [XFF, '198.51.100.1'], [FWD, 'for=10.9.9.9']), 'ip:198.51.100.1');
  // A hop count over Forwarded elements.
  const hops = clientAddress({ trustForwarded: true, trustedProxies: 2, proxyHeader: 'forwarded' });
  assert.equal(keyOf(hops, '10.0.0.5', [FWD, 'for=6.6.6.6, for=198.51.100.7, for=10.2.2.2']), 'ip:198.51.100.7');
  assert.equal(keyOf(hops, '10.0.0.5', [FWD, 'for=6.6.6.6, for=_x, for=10.2.2.2']), 'ip:10.0.0.5');
});

// ---- bad options ---------------------------------------------------------------------

test('bad trustedProxies: InvalidArgumentError naming trustedProxies[i], never echoing', () => {
  const lim = new Limiter();
  const p = policy(1, '1m');
  const cases = [
    [['10.0.0.0/8', '10.0.0.0/33'], 'trustedProxies[1]: a CIDR prefix length is 0 to 32'],
    [['proxy.internal'], 'trustedProxies[0]: not an IPv4 or IPv6 address or CIDR range'],
    [['10.0.0.300'], 'trustedProxies[0]: not an IPv4 or IPv6 address or CIDR range'],
    [['fe80::1%eth0'], 'trustedProxies[0]: not an IPv4 or IPv6 address or CIDR range'],
    [['2001:db8::/129'], 'trustedProxies[0]: a CIDR prefix length is 0 to 128'],
    [[''], 'trustedProxies[0]: empty'],
    [[], 'trustedProxies: empty (leave it out to trust no proxy;'],
  ];
  for (const [entries, message] of cases) {
    for (const make of [
      () => clientAddress({ trustedProxies: entries }),
      () => rateLimit({ limiter: lim, policy: p, trustedProxies: entries }),
      () => withRateLimit(() => new Response(''), { limiter: lim, policy: p, trustedProxies: entries }),
    ]) {
      assert.throws(make, (e) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.ok(e.message.startsWith(message), e.message);
        assert.equal(e.code, 'RL_E_INVALID_ARG');
        for (const x of entries) if (x) assert.ok(!e.message.includes(x));
        return true;
      });
    }
  }
  lim.close();
});

test('bad option types', () => {
  const lim = new Limiter();
  const p = policy(1, '1m');
  assert.throws(() => clientAddress({ trustedProxies: [10] }), /^TypeError: trustedProxies\[0\] must be a string/);
  assert.throws(() => clientAddress({ trustedProxies: '10.0.0.0/8' }), /^TypeError: trustedProxies must be an integer \(a hop count\) or an array/);
  assert.throws(() => clientAddress({ trustForwarded: false, trustedProxies: PROXIES }), /trustForwarded false contradicts it$/);
  assert.throws(() => clientAddress({ trustedProxies: PROXIES, proxyHeader: 'via' }),
    /^RangeError: proxyHeader must be 'x-forwarded-for', 'forwarded' or 'auto', not "via"$/);
  assert.throws(() => clientAddress({ proxyHeader: 1 }), /^TypeError: proxyHeader must be a string, not number$/);
  assert.throws(() => rateLimit({ limiter: lim, policy: p, proxyHeader: 'forwarded' }), /^TypeError: proxyHeader needs trustedProxies/);
  assert.throws(() => rateLimit({ limiter: lim, policy: p, deny: '10.0.0.1' }), /^TypeError: deny must be an array of strings/);
  assert.throws(() => rateLimit({ limiter: lim, policy: p, allow: ['ok', '10.0.0.0/99'] }),
    (e) => e instanceof InvalidArgumentError && e.message === 'allow[1]: a CIDR prefix length is 0 to 32');
  assert.throws(() => limit(new Request('http://x/'), { limiter: lim, policy: p, deny: [''] }),
    (e) => e instanceof InvalidArgumentError && e.message === 'deny[0]: empty');
  assert.throws(() => rateLimit({ limits: [{ policy: p, allow: ['x'] }], limiter: lim }), /allow applies to the whole request/);
  lim.close();
});

test('the helpers parse entries as the library does, and match the same keys', () => {
  const entries = [
    '10.0.0.0/8', '10.0.0.1/8', '0.0.0.0/0', '::/0', '2001:db8::/32', '::ffff:10.0.0.0/104',
    '::ffff:10.0.0.0/95', 'fe80::1', '10.0.0.0/33', '10.0.0.300', '1.2.3', '1.2.3.4/', '1.2.3.4/x',
    '1.2.3.4/08', '1.2.3.4/0008', '2001:db8::/129', 'abc', 'cafe', 'dead:beef', 'a.b', 'ip:10.0.0.1',
    'health-check', '', 'x'.repeat(600), 'fe80::1%eth0', '1.2.3.4 ', '010.0.0.1',
  ];
  const lim = new Limiter();
  try {
    for (const e of entries) {
      let native = null;
      let ours = null;
      try {
        lim.setDenyList([e]);
      } catch (err) {
        native = err.message.replace('entries[0]', 'deny[0]');
      }
      try {
        new AddressList([e], 'deny'); // eslint-disable-line no-new
      } catch (err) {
        ours = err.message;
      }
      if (e === 'x'.repeat(600)) {
        assert.ok(native !== null && ours === null); // the key length is the limiter's
        continue;
      }
      assert.equal(ours, native, JSON.stringify(e));
    }
    const list = ['10.0.0.0/8', '2001:db8::/126', '::ffff:192.168.0.0/112', 'fe80::1', 'exact'];
    lim.setDenyList(list);
    const ours = new AddressList(list, 'deny');
    for (const k of ['10.1.2.3', '11.0.0.0', '2001:db8::3', '2001:db8::4', '192.168.7.7', '::ffff:192.168.7.7',
      'fe80:0::1', 'exact', 'ip:10.1.2.3']) {
      const nativeHit = lim.checkSync(k, policy(1, '1h')).source === 'deny_list';
      assert.equal(ours.hasAddress(k) || ours.hasKey(k), nativeHit, k);
    }
  } finally {
    lim.close();
  }
});

// ---- through the helpers ------------------------------------------------------------

function assertForbidden(r) {
  assert.equal(r.status, 403);
  assert.equal(r.body, '{"detail":"Forbidden"}');
  assert.equal(r.headers['content-type'], 'application/json');
  for (const h of ['retry-after', 'ratelimit', 'ratelimit-policy', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'])
    assert.equal(r.headers[h], undefined, h);
}

for (const kind of ['memory', 'redis']) {
  const skip = kind === 'redis' && noRedis;
  const limiterOf = (t, options) => stores.limiterOf(t, kind, options);

  test(`${kind}: express: 403 for a deny-listed client, an allow-listed one never limited (trustedProxies CIDR)`, { skip }, async (t) => {
    const lim = await limiterOf(t);
    const port = await serve(t, rateLimit({
      limiter: lim, policy: { limit: 1, period: '1m' }, trustedProxies: ['127.0.0.0/8'],
      allow: ['10.0.0.0/8'], deny: ['203.0.113.0/24', 'ip:198.51.100.66'],
    }));
    // The client behind the trusted peer (127.0.0.1), a spoofed left entry ignored.
    assertForbidden(await get(port, { [XFF]: '10.1.1.1, 203.0.113.7' }));
    assertForbidden(await get(port, { [XFF]: '198.51.100.66' })); // the key: an exact entry
    for (let i = 0; i < 3; i++) {
      const r = await get(port, { [XFF]: '203.0.113.9, 10.1.2.3' });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-ratelimit-limit'], undefined); // not checked
    }
    assert.equal((await get(port, { [XFF]: '198.51.100.1' })).status, 200);
    const denied = await get(port, { [XFF]: '198.51.100.1' });
    assert.equal(denied.status, 429); // keyed by the client: ip:198.51.100.1
    assert.ok(denied.headers['retry-after']);
    assert.equal(lim.health().checks, 2); // the listed requests cost no check
  });

  test(`${kind}: express: the limiter's own deny list answers 403; an app-level allow exempts later middlewares`, { skip }, async (t) => {
    const lim = await limiterOf(t, { deny: ['ip:127.0.0.1'] });
    const port = await serve(t, rateLimit({ limiter: lim, policy: { limit: 5, period: '1m' } }));
    assertForbidden(await get(port));
    assert.equal(lim.health().listDenied, 1);
    const lim2 = await limiterOf(t);
    const port2 = await serve(t,
      rateLimit({ limiter: lim2, policy: { limit: 100, period: '1m' }, allow: ['127.0.0.1'] }),
      rateLimit({ limiter: lim2, policy: { limit: 1, period: '1m' }, scope: 'route' }));
    for (let i = 0; i < 3; i++) assert.equal((await get(port2)).status, 200);
    assert.equal(lim2.health().checks, 0);
  });

  test(`${kind}: express: a shadow limiter lets deny-listed requests through`, { skip }, async (t) => {
    const lim = await limiterOf(t, { shadow: true });
    const port = await serve(t, rateLimit({ limiter: lim, policy: { limit: 1, period: '1m' }, deny: ['127.0.0.1'] }));
    for (let i = 0; i < 3; i++) assert.equal((await get(port)).status, 200);
    assert.equal(lim.health().shadowDenied, 2);
  });

  test(`${kind}: next: deny and allow lists with Forwarded; no lists change nothing`, { skip }, async (t) => {
    const lim = await limiterOf(t);
    const options = {
      limiter: lim, policy: { limit: 1, period: '1m' }, trustedProxies: ['10.0.0.0/8'], proxyHeader: 'forwarded',
      allow: ['192.0.2.0/24'], deny: ['2001:db8::/32', 'vip-banned'],
    };
    const rq = (fwd, extra = {}) => new Request('http://app.test/', { headers: { forwarded: fwd, ...extra } });
    let r = await limit(rq('for="[2001:db8::7]:4711", for=10.0.0.2'), options);
    assert.equal(r.response.status, 403);
    assert.equal(await r.response.text(), '{"detail":"Forbidden"}');
    assert.equal(r.response.headers.get('retry-after'), null);
    assert.deepEqual(r.headers, {});
    assert.equal(r.decision, null);
    for (let i = 0; i < 3; i++) {
      r = await limit(rq('for=192.0.2.5'), options);
      assert.equal(r.response, undefined);
      assert.equal(r.decision, null);
    }
    const handler = withRateLimit(async () => Response.json({ ok: true }), options);
    assert.equal((await handler(rq('for=198.51.100.9'), {})).status, 200);
    assert.equal((await handler(rq('for=198.51.100.9'), {})).status, 429);
    assert.equal((await handler(rq('for=2001:db8::1'), {})).status, 403);
    // An exact entry matches the key.
    const byKey = withRateLimit(async () => Response.json({ ok: true }), {
      limiter: lim, policy: { limit: 5, period: '1m' }, key: (q) => q.headers.get('x-user'), deny: ['vip-banned'],
    });
    assert.equal((await byKey(new Request('http://x/', { headers: { 'x-user': 'vip-banned' } }), {})).status, 403);
    assert.equal((await byKey(new Request('http://x/', { headers: { 'x-user': 'someone' } }), {})).status, 200);
    // The limiter's own deny list.
    lim.setDenyList(['ip:198.51.100.10']);
    r = await limit(rq('for=198.51.100.10'), options);
    assert.equal(r.response.status, 403);
    assert.equal(r.decision.source, 'deny_list');
    assert.deepEqual(r.headers, {});
  });
}
