// GET /api/search: limit() inside the handler, for when the handler wants the
// decision itself. Its own counter ("search|org:..."), 10 per minute.
import { limit } from 'tollgate/next';
import { key, limiter } from '../../../lib/limiter.js';

export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

const perMinute = { limiter, key, policy: { limit: 10, period: '1m' }, scope: 'search' };

export async function GET(request) {
  const { decision, headers, response } = await limit(request, perMinute);
  if (response) return response; // the 429, with Retry-After
  const q = new URL(request.url).searchParams.get('q') ?? '';
  return Response.json({ q, results: [], remaining: decision.remaining }, { headers });
}
