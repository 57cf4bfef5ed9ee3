'use strict';
// Rate limiting for Express (4 and 5) and plain node:http servers: one
// middleware, the Node twin of the Python package's RateLimitMiddleware and
// Flask extension. Same keys, same headers (from the C core), same 429 body.

const {
  binding,
  chargeOf,
  checkKey,
  clientAddress,
  compileOptions,
  deniedBody,
  HEADER_NAMES,
  headersFor,
  outcomeOf,
  resolveCost,
  scopedKey,
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

/**
 * Express middleware limiting every request it sees.
 *
 *   app.use(rateLimit({ limiter, policy: { limit: 100, period: '1h' } }))
 *   app.use(rateLimit({ limiter, plans: PLANS, plan: (req) => planOf(req),
 *                       key: organizationKey('X-Org-Id') }))
 *
 * Options: limiter (required), policy | policies, plans + plan(req), key(req)
 * (default clientAddress; may be async; null/undefined skips the request),
 * name (the policy name in the headers; default the plan's name or
 * "default"), cost (integer or req -> integer), scope (per-route counters:
 * the key becomes "<scope>|<key>"), onError(err, req, res, next),
 * count ('all', 'failed' or 'successful': which responses keep their
 * charge; default 'all') and failed(status) (default status >= 400).
 *
 * Allowed: the rate-limit headers are set and next() runs. Denied: 429 with
 * the headers, Retry-After and {"detail":"Rate limit exceeded","retry_after":N}.
 * A check that rejects (a limiter with failureMode 'error' while Redis is
 * away, or a bad key) goes to onError, or to next(err) without one.
 *
 * count 'failed' / 'successful': the request is still checked and charged
 * before the handler runs (so concurrent requests stay limited); when the
 * response finishes, one that does not count gets its units back (a refund;
 * one that fails is ignored).
 */
function rateLimit(options) {
  const c = compileOptions(options, 'rateLimit', clientAddress);
  const { limiter, key, cost, scope, limits, onError } = c;

  async function run(req, res) {
    let k = await key(req);
    if (k == null) return true;
    k = checkKey(k);
    if (scope != null) k = scopedKey(scope, k);
    const plan = limits.plan ? await limits.plan(req) : null;
    const { policies, name } = limits.forPlan(plan);
    const units = resolveCost(cost, req);
    const decision = await limiter.check(k, policies, { cost: units });
    const charge = chargeOf(c, k, policies, decision, units);
    if (charge !== null) res.once('finish', () => settleCharge(c, charge, res.statusCode));
    const outcomes = res[OUTCOMES] || (res[OUTCOMES] = []);
    outcomes.push(outcomeOf(decision, policies, name));
    const bound = binding(outcomes);
    const headers = headersFor(bound);
    if (res.locals) res.locals.rateLimit = bound;
    if (!decision.allowed) {
      sendDenied(res, headers);
      return false;
    }
    if (!res.headersSent) setHeaders(res, headers);
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
