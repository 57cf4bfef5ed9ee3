// POST /api/export: a report export, at most 2 running at once per
// organization, across every instance that shares the store. A rate limit
// cannot say that (10 per hour allows 10 at once if they start together);
// a lease counts an export while it runs. It is acquired before the work
// and released in `finally`, however the work ends; an instance that dies
// mid-export loses its lease after the ttl. docs/leases.md, "Worked example".
import { key, limiter } from '../../../lib/limiter.js';

export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

// The ttl is how long a crashed instance keeps its place: about twice a
// long export. An export that runs longer renews its lease as it goes.
const EXPORTS = { maxInFlight: 2, ttl: '2m' };
const RENEW_EVERY_MS = 40_000;

export async function POST(request) {
  const org = await key(request); // "org:<X-Org-Id>", else the client's address
  const r = await limiter.acquire(`export|${org}`, EXPORTS);
  if (!r.acquired) {
    // When the earliest running export's lease would end by its ttl; a
    // release usually comes sooner.
    const retryAfter = Math.max(1, Math.ceil(r.retryAfter / 1000));
    return Response.json(
      { detail: 'Too many exports running for this organization', retry_after: retryAfter },
      { status: 429, headers: { 'Retry-After': String(retryAfter) } },
    );
  }
  const renewing = setInterval(() => {
    // A renewal that fails: the lease ended (LeaseLostError) or the store
    // is unreachable. The export goes on, no longer counted.
    r.lease.renew().catch(() => clearInterval(renewing));
  }, RENEW_EVERY_MS);
  try {
    const report = await exportReport(org);
    return Response.json({ ...report, inFlight: r.inFlight, maxInFlight: r.maxInFlight });
  } finally {
    clearInterval(renewing);
    // A release that fails (the store is unreachable) must not fail the
    // export: the lease then ends after its ttl.
    await r.lease.release().catch((e) => console.error(`export lease of ${org} not released: ${e.message}`));
  }
}

// Stands in for the real work (a query on a replica, a CSV written to object
// storage): EXPORT_MS milliseconds, default 3000.
const EXPORT_MS = Number(process.env.EXPORT_MS ?? 3000);

async function exportReport(org) {
  await new Promise((resolve) => setTimeout(resolve, EXPORT_MS));
  return { org, report: `/reports/${encodeURIComponent(org)}/${Date.now()}.csv` };
}
