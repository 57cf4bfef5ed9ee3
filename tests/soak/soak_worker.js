// The Node process of the soak test (tests/soak/soak.py); the same loop as
// soak_worker.c, with 4 checks in flight at a time, through the tollgate
// package in TOLLGATE_SOAK_NODE_PACKAGE (a folder it can require).
//
//   node soak_worker.js URL PREFIX POLICY SLOT_S TIMEOUT_MS SECONDS OUT
'use strict';
const fs = require('fs');
const tollgate = require(process.env.TOLLGATE_SOAK_NODE_PACKAGE || 'tollgate');

async function main() {
  const [url, prefix, text, slotS, timeoutMs, seconds, out] = process.argv.slice(2);
  if (!out) {
    console.error('usage: node soak_worker.js URL PREFIX POLICY SLOT_S TIMEOUT_MS SECONDS OUT');
    return 2;
  }
  const timeout = Number(timeoutMs);
  // No deny cache: every call reaches Redis (and yields to the event loop).
  const limiter = new tollgate.Limiter({ url, failureMode: 'closed', timeoutMs: timeout, denyCache: false });
  const policy = tollgate.Policy.parse(text);
  const admitted = new Map();
  let calls = 0, errors = 0, overruns = 0, longestMs = 0;
  const start = performance.now();
  const loop = async () => {
    while (performance.now() - start < Number(seconds) * 1000) {
      const slot = Math.floor(Date.now() / 1000 / Number(slotS));
      const t0 = performance.now();
      let d = null;
      try {
        d = await limiter.check(`${prefix}:${slot}`, policy);
      } catch (e) {
        d = null;
      }
      const took = performance.now() - t0;
      calls += 1;
      longestMs = Math.max(longestMs, took);
      if (took > timeout + 250) overruns += 1;
      if (d === null) errors += 1;
      else if (d.allowed && d.source === 'store') admitted.set(slot, (admitted.get(slot) || 0) + 1);
    }
  };
  // Memory as the process sees it, every 2 s: RSS, V8's heap as reserved
  // (heapTotal, which V8 grows in steps as it sizes its young generation:
  // RSS follows) and V8's live heap, after a full collection when node runs
  // with --expose-gc (as tests/soak/soak.py starts it). RSS minus heapTotal
  // is the memory outside V8's heap: the addon, the C library, libc.
  const memory = [];
  const memoryTimer = setInterval(() => {
    if (typeof global.gc === 'function') global.gc();
    const m = process.memoryUsage();
    const mb = (x) => Math.round((x / 1048576) * 100) / 100;
    memory.push({
      t: Math.round((performance.now() - start) / 100) / 10,
      rss_mb: mb(m.rss), heap_total_mb: mb(m.heapTotal), heap_live_mb: mb(m.heapUsed),
      outside_v8_mb: mb(m.rss - m.heapTotal),
    });
  }, 2000);
  await Promise.all([loop(), loop(), loop(), loop()]);
  clearInterval(memoryTimer);
  await limiter.close();
  const counts = {};
  for (const [k, v] of [...admitted].sort((a, b) => a[0] - b[0])) counts[String(k)] = v;
  fs.writeFileSync(out, JSON.stringify({
    lang: 'node', calls, errors, overruns, longest_ms: Math.round(longestMs * 10) / 10,
    memory,
    admitted: counts,
  }));
  return 0;
}

main().then((rc) => { process.exitCode = rc; }, (e) => { console.error(e); process.exitCode = 1; });
