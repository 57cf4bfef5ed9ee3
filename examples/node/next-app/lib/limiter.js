// One limiter per server process, shared by every route (and kept across
// hot reloads in `next dev`). Memory store by default; TOLLGATE_URL=redis://...
// shares the limits between all instances (and with Python and C services).
import { Limiter } from 'tollgate';
import { PLANS, clientAddress, organizationKey } from 'tollgate/plans';

export const limiter = (globalThis.__tollgateLimiter ??= new Limiter(
  process.env.TOLLGATE_URL ? { url: process.env.TOLLGATE_URL, failureMode: 'local' } : {},
));

// Which plan each organization is on (a database in a real app).
const PLAN_BY_ORG = { initech: 'FREE', globex: 'PRO', acme: 'ENTERPRISE' };

// Route handlers see no socket: Next.js puts the peer into X-Forwarded-For
// when the request has none, and your reverse proxy appends the peer it saw.
// Key by the organization (authenticate it in a real app), else by address.
export const key = organizationKey('X-Org-Id', { fallback: clientAddress({ trustForwarded: true }) });

export const byPlan = {
  limiter,
  key,
  plans: PLANS,
  plan: (request) => PLAN_BY_ORG[request.headers.get('x-org-id')] ?? 'FREE',
};
