'use strict';
// An Express app limited per organization by its plan (the seed's use case):
// FREE 100/h, PRO 1000/h, ENTERPRISE 10000/h, keyed by the X-Org-Id header,
// plus a tighter per-route limit on /search. Every response carries the
// RateLimit-Policy, RateLimit and X-RateLimit-* headers; a denied request
// gets 429 with Retry-After.
//
// Keyed by a header a client sends, so only as good as that header: a real
// app keys by the organization it authenticated, e.g.
// organizationKey({ getter: (req) => req.user && req.user.orgId }).

const express = require('express');
const { rateLimit } = require('tollgate/express');
const { PLANS, clientAddress, organizationKey } = require('tollgate/plans');

// Which plan each organization is on (a database in a real app).
const PLAN_BY_ORG = { initech: 'FREE', globex: 'PRO', acme: 'ENTERPRISE' };

function createApp({ limiter, trustedProxies = 0 }) {
  const app = express();
  // Requests without X-Org-Id are keyed by client address: behind your own
  // reverse proxies, trust the address they append to X-Forwarded-For.
  const byAddress = trustedProxies > 0 ? clientAddress({ trustForwarded: true, trustedProxies }) : clientAddress;
  const key = organizationKey('X-Org-Id', { fallback: byAddress });

  app.use(
    rateLimit({
      limiter,
      key,
      plans: PLANS,
      plan: (req) => PLAN_BY_ORG[req.get('X-Org-Id')] || 'FREE',
    }),
  );

  app.get('/', (req, res) => {
    res.json({ hello: req.get('X-Org-Id') || 'anonymous', plan: res.locals.rateLimit.name });
  });

  // Its own counter ("search|org:acme"), on top of the plan's.
  app.get('/search', rateLimit({ limiter, key, policy: { limit: 10, period: '1m' }, scope: 'search' }), (req, res) => {
    res.json({ results: [], q: req.query.q || '' });
  });

  app.get('/health', (req, res) => res.send('ok'));
  return app;
}

module.exports = { createApp, PLAN_BY_ORG };
