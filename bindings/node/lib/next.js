'use strict';
// Rate limiting for Next.js App Router route handlers (and middleware) on
// the Node.js runtime. tollgate is a native addon: it cannot load on the
// Edge runtime, so this module refuses to run there with a clear message.

const {
  binding,
  clientAddress,
  compileOptions,
  decide,
  deniedBody,
  FORBIDDEN_BODY,
  giveBackCharges,
  headersFor,
  recordCharge,
  settleCharge,
} = require('./plans.js');

const EDGE_MESSAGE =
  'tollgate is a native Node.js addon and cannot run on the Edge runtime. ' +
  "Add `export const runtime = 'nodejs'` to the route (or `export const config = { runtime: 'nodejs' }` " +
  "to middleware, Next.js >= 15.5) and list 'tollgate' in next.config's serverExternalPackages.";

function assertNodeRuntime() {
  // Next.js defines the global EdgeRuntime (a string) on the Edge runtime only.
  if (typeof globalThis.EdgeRuntime === 'string' || typeof process === 'undefined' || !process.versions || !process.versions.node) {
    throw new Error(EDGE_MESSAGE);
  }
}
assertNodeRuntime();

/**
 * The default key in Next.js. Route handlers get a Web Request with no
 * socket; Next.js's server writes the TCP peer into X-Forwarded-For when the
 * request has none, and a reverse proxy in front appends the peer it saw,
 * so the right-most entry is the client as the nearest trusted hop saw it.
 * Behind N proxies of your own use clientAddress({ trustForwarded: true,
 * trustedProxies: N }). Directly exposed, a client can send its own
 * X-Forwarded-For: key by an authenticated id (organizationKey with getter).
 */
const defaultKey = clientAddress({ trustForwarded: true, trustedProxies: 1 });

function compile(options) {
  return compileOptions(options, 'tollgate/next', defaultKey);
}

// Options objects are compiled once and remembered (a handler calling
// limit(request, OPTIONS) with a module-level OPTIONS pays nothing per call).
const compiled = new WeakMap();
function compiledOf(options) {
  if (options != null && typeof options === 'object') {
    let c = compiled.get(options);
    if (c === undefined) {
      c = compile(options);
      compiled.set(options, c);
    }
    return c;
  }
  return compile(options);
}

function deniedResponse(headers) {
  return new Response(deniedBody(headers), {
    status: 429,
    headers: { ...headers, 'Content-Type': 'application/json' },
  });
}

/** The answer to a request on a deny list: 403, no rate-limit headers, no
 * Retry-After. */
function forbiddenResponse() {
  return new Response(FORBIDDEN_BODY, { status: 403, headers: { 'Content-Type': 'application/json' } });
}

/** The status of what a handler answered: a Response's, 500 for anything
 * else (Next.js answers 500 to a handler that returns no Response). */
function statusOf(response) {
  return response instanceof Response ? response.status : 500;
}

/** settle(response | status) of a limit() result: gives the charge back
 * once, when the response does not count. */
function settlerOf(c, charge) {
  let left = charge;
  return function settle(responseOrStatus) {
    const r = responseOrStatus;
    const status = typeof r === 'number' || r == null ? r : r.status;
    if (!Number.isInteger(status)) {
      return Promise.reject(new TypeError('settle(response | status): expected a Response or an HTTP status (integer)'));
    }
    const once = left;
    left = null;
    return settleCharge(c, once, status);
  };
}

// The outcomes of every limit() and withRateLimit() made for one Request
// (nested wrappers, limit() called twice): its headers describe the one
// that binds first, as Express's stacked middlewares do.
const OUTCOMES = new WeakMap();

function outcomesOf(request) {
  if (request === null || typeof request !== 'object') return [];
  let list = OUTCOMES.get(request);
  if (list === undefined) OUTCOMES.set(request, (list = []));
  return list;
}

// limit()'s work: its result and the request's outcome list (withRateLimit
// reads the list again after the handler, which may have added to it).
async function limitWith(c, request) {
  const r = await decide(c, request);
  if (r === null) return { result: { decision: null, headers: {}, key: null, settle: settlerOf(c, null) }, outcomes: null };
  if (r.forbidden) {
    await giveBackCharges(request);
    const own = r.outcomes.find((o) => o.decision === r.decision);
    const result = {
      decision: r.decision, headers: {}, key: own ? own.key : null, settle: settlerOf(c, null), response: forbiddenResponse(),
    };
    return { result, outcomes: null };
  }
  const outcomes = outcomesOf(request);
  for (const o of r.outcomes) outcomes.push(o);
  if (!r.allowed) {
    // Nothing of this request counts: what earlier calls charged for this
    // Request comes back before the 429 is returned.
    await giveBackCharges(request);
  } else {
    recordCharge(request, r.charge);
  }
  const headers = headersFor(binding(outcomes));
  const own = r.bound;
  const result = { decision: own.decision, headers, key: own.key, policy: own.policy, name: own.name, settle: settlerOf(c, r.charge) };
  if (!r.allowed) result.response = deniedResponse(headers);
  return { result, outcomes };
}

/**
 * Check one request: { decision, headers, response?, settle }.
 *
 *   const { headers, response } = await limit(request, { limiter, policy });
 *   if (response) return response;          // the 429, ready to return
 *   return Response.json(data, { headers }); // the headers on the answer
 *
 * `response` is set only when denied. A key function returning null skips
 * the check: { decision: null, headers: {} }. A rejected check (failureMode
 * 'error') rejects.
 *
 * With count 'failed' or 'successful', pass the answer (or its status) to
 * `settle(response | status)` before returning it: a response that does not
 * count gets its units back. It resolves to whether they came back, never
 * rejects for a failed refund, and gives back at most once.
 *
 * `limits: [global, route, ...]` instead of policy/plans checks several
 * limits in one decision, all or nothing (one limiter.checkKeys() call; two
 * steps when the keys lie in several Redis Cluster slots). Called again with
 * the same Request (a second limit, a nested withRateLimit), a denial gives
 * back what the earlier calls charged for it, and `headers` describe the
 * limit that binds first among all of them.
 *
 * `allow`, `deny`, `trustedProxies`, `proxyHeader`: as tollgate/express's.
 * A request on the deny list (or denied by the limiter's own deny list)
 * gets `response` a 403 {"detail":"Forbidden"} without rate-limit headers
 * (`decision` the limiter's denial, or null for the helper's list); one on
 * the allow list is not checked ({ decision: null, headers: {} }).
 */
function limit(request, options) {
  assertNodeRuntime();
  return limitWith(compiledOf(options), request).then((w) => w.result);
}

/** `response` with `headers` added (a copy when its headers are immutable,
 * as on a Response from fetch() or Response.redirect()). */
function withHeaders(response, headers) {
  try {
    for (const [field, value] of Object.entries(headers)) response.headers.set(field, value);
    return response;
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    const copy = new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
    for (const [field, value] of Object.entries(headers)) copy.headers.set(field, value);
    return copy;
  }
}

/**
 * Wrap an App Router route handler:
 *
 *   export const runtime = 'nodejs';
 *   export const GET = withRateLimit(async (request) => Response.json({ hello: 'world' }),
 *                                    { limiter, policy: { limit: 10, period: '1m' } });
 *
 * Allowed: the handler runs and its Response gets the rate-limit headers.
 * Denied: a 429 with the headers, Retry-After and the JSON body, without the
 * handler running. Options as for limit(); `onError(err, request, ctx)` may
 * return a Response for a rejected check (default: the error propagates and
 * Next.js answers 500). With count 'failed' or 'successful', a response that
 * does not count gets its units back (an error the handler throws is a 500).
 */
function withRateLimit(handler, options) {
  if (typeof handler !== 'function') throw new TypeError('withRateLimit(handler, options): handler must be a function');
  const c = compile(options);
  const onError = c.onError;
  return async function rateLimitedHandler(request, ctx) {
    let r;
    let outcomes;
    try {
      ({ result: r, outcomes } = await limitWith(c, request));
    } catch (err) {
      if (onError) return onError(err, request, ctx);
      throw err;
    }
    if (r.response) return r.response;
    const seen = outcomes === null ? 0 : outcomes.length;
    let response;
    try {
      response = await handler(request, ctx);
    } catch (err) {
      r.settle(500);
      throw err;
    }
    r.settle(statusOf(response));
    if (r.decision === null || !(response instanceof Response)) return response;
    // A limit inside the handler (a nested withRateLimit, limit()) may have
    // decided since: the headers describe the one that binds.
    const headers = outcomes.length === seen ? r.headers : headersFor(binding(outcomes));
    return withHeaders(response, headers);
  };
}

module.exports = { limit, withRateLimit, withHeaders, EDGE_MESSAGE };
