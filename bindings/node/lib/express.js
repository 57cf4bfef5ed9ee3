'use strict';
// Rate limiting for Express (4 and 5) and plain node:http servers: one
// middleware, the Node twin of the Python package's RateLimitMiddleware and
// Flask extension. Same keys, same headers (from the C core), same 429 body.

const {
  binding,
  clientAddress,
  compileOptions,
  decide,
  deniedBody,
  FORBIDDEN_BODY,
  giveBackCharges,
  HEADER_NAMES,
  headersFor,
  recordCharge,
  settleCharge,
} = require('./plans.js');

/** Where a request's outcomes are kept (several rateLimit middlewares on one
 * request: the headers describe the limit that binds first). */
const OUTCOMES = Symbol.for('tollgate.outcomes');

function setHeaders(res, headers) {
  for (const field of HEADER_NAMES) {
    // Keep an app's own Retry-After unless this answer has one.
    if (field === 'Retry-After' && headers[field] === undefined) continue;
    res.removeHeader(field);
  }
  for (const [field, value] of Object.entries(headers)) res.setHeader(field, value);
}

function sendDenied(res, headers) {
  const body = deniedBody(headers);
  res.statusCode = 429;
  setHeaders(res, headers);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** The answer to a request on a deny list: 403, no rate-limit headers and
 * no Retry-After (waiting does not help); the Python integrations' body. */
function sendForbidden(res) {
  res.statusCode = 403;
  for (const field of HEADER_NAMES) res.removeHeader(field);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(FORBIDDEN_BODY));
  res.end(FORBIDDEN_BODY);
}

/**
 * Express middleware limiting every request it sees.
 *
 *   app.use(rateLimit({ limiter, policy: { limit: 100, period: '1h' } }))
 *   app.use(rateLimit({ limiter, plans: PLANS, plan: (req) => planOf(req),
 *                       key: organizationKey('X-Org-Id') }))
 *   app.post('/login', rateLimit({ limiter, limits: [
 *     { policy: { limit: 100, period: '1h' } },                 // global
 *     { policy: { limit: 5, period: '15m' }, scope: 'login' },  // the route's
 *   ] }), login)
 *
 * Options: limiter (required), policy | policies, plans + plan(req), key(req)
 * (default clientAddress; may be async; null/undefined skips the request),
 * name (the policy name in the headers; default the plan's name or
 * "default"), cost (integer or req -> integer), scope (per-route counters:
 * the key becomes "<scope>|<key>"), onError(err, req, res, next),
 * count ('all', 'failed' or 'successful': which responses keep their
 * charge; default 'all') and failed(status) (default status >= 400).
 * limits: instead of policy/policies/plans/plan/name/scope, 1 to 8 limits
 * ({ policy | policies | plans + plan, key?, scope?, name? }; key defaults
 * to the middleware's), checked in one decision, all or nothing (one
 * limiter.checkKeys() call; see plans.js, "a request's limits").
 *
 * Allowed: the rate-limit headers are set and next() runs. Denied: 429 with
 * the headers, Retry-After and {"detail":"Rate limit exceeded","retry_after":N}.
 * A check that rejects (a limiter with failureMode 'error' while Redis is
 * away, or a bad key) goes to onError, or to next(err) without one.
 *
 * Several rateLimit middlewares on one request (a global app.use and a
 * route's): each charges its own limits when it allows; one that denies
 * first gives back what the earlier ones charged this request, so a 429
 * costs nothing under any of them. The headers describe the limit that
 * binds first.
 *
 * count 'failed' / 'successful': the request is still checked and charged
 * before the handler runs (so concurrent requests stay limited); when the
 * response finishes, one that does not count gets its units back (a refund;
 * one that fails is ignored).
 *
 * allow, deny: allow and deny lists (IP addresses and CIDR ranges matching
 * the client address, exact entries matching the key of any of its
 * limits), decided before any check: a denied request gets 403
 * {"detail":"Forbidden"} without rate-limit headers or Retry-After, an
 * allowed one goes through unchecked (by the rateLimit middlewares after
 * this one too). A denial by the limiter's own deny list (decision.source
 * 'deny_list') is answered 403 as well. A shadow limiter does not enforce
 * the deny list. trustedProxies (a hop count, or an array of the proxies'
 * addresses and CIDR ranges) and proxyHeader ('x-forwarded-for',
 * 'forwarded' or 'auto') say how the client address is found; with
 * trustedProxies the default key is that address too.
 */
function rateLimit(options) {
  const c = compileOptions(options, 'rateLimit', clientAddress);
  const { onError } = c;

  async function run(req, res) {
    const r = await decide(c, req);
    if (r === null) return true;
    if (r.forbidden) {
      await giveBackCharges(req);
      if (res.locals && r.decision) res.locals.rateLimit = r.outcomes.find((o) => o.decision === r.decision);
      sendForbidden(res);
      return false;
    }
    const outcomes = res[OUTCOMES] || (res[OUTCOMES] = []);
    for (const o of r.outcomes) outcomes.push(o);
    const bound = binding(outcomes);
    if (res.locals) res.locals.rateLimit = bound;
    if (!r.allowed) {
      // Nothing of this request counts: what earlier middlewares charged
      // for it comes back before the 429 goes out.
      await giveBackCharges(req);
      sendDenied(res, headersFor(bound));
      return false;
    }
    recordCharge(req, r.charge);
    if (c.count !== 'all') res.once('finish', () => settleCharge(c, r.charge, res.statusCode));
    if (!res.headersSent) setHeaders(res, headersFor(bound));
    return true;
  }

  return function tollgateRateLimit(req, res, next) {
    run(req, res).then(
      (goOn) => {
        if (goOn) next();
      },
      (err) => {
        if (onError) {
          try {
            onError(err, req, res, next);
          } catch (e) {
            next(e);
          }
        } else {
          next(err);
        }
      },
    );
  };
}

module.exports = { rateLimit, OUTCOMES };
