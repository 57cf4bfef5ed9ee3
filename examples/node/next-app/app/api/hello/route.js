// GET /api/hello, limited by the organization's plan (FREE 100/h, PRO
// 1000/h, ENTERPRISE 10000/h). tollgate is a native addon: Node.js runtime only.
import { withRateLimit } from 'tollgate/next';
import { byPlan } from '../../../lib/limiter.js';

export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

export const GET = withRateLimit(async (request) => {
  return Response.json({ hello: request.headers.get('x-org-id') ?? 'anonymous' });
}, byPlan);
