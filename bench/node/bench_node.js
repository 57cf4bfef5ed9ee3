#!/usr/bin/env node
'use strict';
// tollgate's Node package against rate-limiter-flexible (the most used Node
// rate limiter), in one process, on one redis-server:
//
//   - memory: tollgate checkSync(), tollgate await check(), RateLimiterMemory
//     await consume(), on one hot key and over 100,000 keys, and the same
//     awaits around no check at all (the ceiling of any awaited check);
//   - Redis, 64 checks in flight: tollgate await check() against
//     RateLimiterRedis (ioredis), same redis-server;
//   - Redis, sequential: p50 / p99 microseconds per call.
//
//   node bench_node.js [--redis URL] [--seconds S] [--reps N] [--keys N] [--json] [--quick]
//
// bench/node/run.sh installs everything into a temporary folder and starts a
// throwaway redis-server (docs/benchmarks.md, section "Node"). It prints a
// table; it never fails because of speed.
//
// Method (as bench/python): every figure is the median of --reps
// repetitions of --seconds each, interleaved (all the cases of a group once,
// then all again, ...), so drift of the machine hits every library alike.
// Each repetition builds a fresh limiter and a fresh key namespace, runs one
// untimed warm-up pass over all its keys (which also creates them), then the
// timed loop. Policies are 10^9 per hour: nothing is denied (every loop
// counts denials and the table shows them).

const fs = require('node:fs');
const os = require('node:os');

const tollgate = require(process.env.BENCH_TOLLGATE || 'tollgate');
const { RateLimiterMemory, RateLimiterRedis } = require('rate-limiter-flexible');
const Redis = require('ioredis');

const BIG = 1e9; // "never denied", per hour

function parseArgs(argv) {
  const a = { redis: null, seconds: 2, reps: 3, keys: 100_000, redisKeys: 1024, inflight: 64, json: false };
  for (let i = 2; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--redis') a.redis = argv[++i];
    else if (v === '--seconds') a.seconds = Number(argv[++i]);
    else if (v === '--reps') a.reps = Number(argv[++i]);
    else if (v === '--keys') a.keys = Number(argv[++i]);
    else if (v === '--inflight') a.inflight = Number(argv[++i]);
    else if (v === '--json') a.json = true;
    else if (v === '--quick') {
      a.seconds = 0.2;
      a.reps = 1;
    } else {
      console.error(`unknown option ${v}`);
      process.exit(2);
    }
  }
  return a;
}

const now = () => performance.now() / 1000; // seconds

// ---- the libraries: each make(rep) returns { sync?, async, close } on key k ------

const cases = {
  tollgateSync: (url, algorithm) => async () => {
    const lim = new tollgate.Limiter(url ? { url } : {});
    const pol = { limit: BIG, period: '1h', algorithm };
    return { sync: (k) => lim.checkSync(k, pol).allowed, close: () => lim.close() };
  },
  tollgateAsync: (url, algorithm, extra = {}) => async () => {
    // failureMode 'error': a Redis problem fails the run instead of timing fail-open answers.
    const lim = new tollgate.Limiter(url ? { url, failureMode: 'error', ...extra } : {});
    const pol = { limit: BIG, period: '1h', algorithm };
    return { async: async (k) => (await lim.check(k, pol)).allowed, close: () => lim.close() };
  },
  // No check at all: the same wrapper awaiting an already resolved promise.
  // The ceiling of any awaited check (the cost of the two awaits).
  awaitFloor: () => async () => {
    const d = { allowed: true };
    return { async: async (k) => (await Promise.resolve(k && d)).allowed, close: async () => {} };
  },
  rlfMemory: () => async () => {
    const rl = new RateLimiterMemory({ points: BIG, duration: 3600 });
    return {
      async: async (k) => {
        try {
          await rl.consume(k);
          return true;
        } catch {
          return false;
        }
      },
      close: async () => {},
    };
  },
  // The floor of any Redis limiter on ioredis: EVALSHA of a one-line INCR
  // script, read on the event loop itself.
  rawEvalsha: (url) => async () => {
    const client = new Redis(url, { enableOfflineQueue: true, lazyConnect: false });
    const sha = await client.script('LOAD', "return redis.call('INCR', KEYS[1])");
    return {
      async: async (k) => (await client.evalsha(sha, 1, k)) > 0,
      close: () => client.quit(),
    };
  },
  rlfRedis: (url) => async () => {
    const client = new Redis(url, { enableOfflineQueue: true, lazyConnect: false });
    await client.ping();
    const rl = new RateLimiterRedis({ storeClient: client, points: BIG, duration: 3600, keyPrefix: 'rlflx' });
    return {
      async: async (k) => {
        try {
          await rl.consume(k);
          return true;
        } catch (e) {
          if (e instanceof Error) throw e; // a Redis error, not a denial
          return false;
        }
      },
      close: () => client.quit(),
    };
  },
};

// ---- timed loops ------------------------------------------------------------------

function chunked(keys, size = 256) {
  const out = [];
  for (let i = 0; i < keys.length; i += size) out.push(keys.slice(i, i + size));
  return out;
}

function runSync(fn, keys, seconds) {
  for (const k of keys) fn(k); // warm-up: creates every key
  if (global.gc) global.gc();
  const chunks = chunked(keys);
  let n = 0;
  let denied = 0;
  const start = now();
  const end = start + seconds;
  for (;;) {
    for (const c of chunks) {
      for (let i = 0; i < c.length; i++) if (!fn(c[i])) denied++;
      n += c.length;
      const t = now();
      if (t >= end) return { rate: n / (t - start), calls: n, deniedShare: denied / n };
    }
  }
}

async function runSeq(fn, keys, seconds, latency) {
  for (const k of keys) await fn(k);
  if (global.gc) global.gc();
  const chunks = chunked(keys);
  const lat = latency ? [] : null;
  let n = 0;
  let denied = 0;
  const start = now();
  const end = start + seconds;
  for (;;) {
    for (const c of chunks) {
      for (let i = 0; i < c.length; i++) {
        if (latency) {
          const t0 = process.hrtime.bigint();
          const ok = await fn(c[i]);
          lat.push(Number(process.hrtime.bigint() - t0));
          if (!ok) denied++;
        } else if (!(await fn(c[i]))) denied++;
      }
      n += c.length;
      const t = now();
      if (t >= end) {
        const out = { rate: n / (t - start), calls: n, deniedShare: denied / n };
        if (latency) {
          lat.sort((a, b) => a - b);
          out.p50_us = lat[Math.floor(lat.length / 2)] / 1000;
          out.p99_us = lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] / 1000;
        }
        return out;
      }
    }
  }
}

async function runInflight(fn, keys, seconds, inflight) {
  const parts = Array.from({ length: inflight }, (_, i) => keys.filter((_, j) => j % inflight === i));
  await Promise.all(parts.map(async (p) => { for (const k of p) await fn(k); })); // warm-up, all in flight
  if (global.gc) global.gc();
  const start = now();
  const end = start + seconds;
  const worker = async (p) => {
    let n = 0;
    let denied = 0;
    for (;;) {
      for (const k of p) {
        if (!(await fn(k))) denied++;
        n++;
        if ((n & 15) === 0 && now() >= end) return [n, denied];
      }
    }
  };
  const res = await Promise.all(parts.map(worker));
  const elapsed = now() - start;
  const n = res.reduce((s, r) => s + r[0], 0);
  const denied = res.reduce((s, r) => s + r[1], 0);
  return { rate: n / elapsed, calls: n, deniedShare: denied / n };
}

// ---- noise: CPU time other processes used while we ran ---------------------------------

function procStat() {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1, 9).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = v;
  const hz = 100; // USER_HZ on Linux
  return { busy: (user + nice + system + irq + softirq) / hz, steal: steal / hz, total: (user + nice + system + idle + iowait + irq + softirq + steal) / hz };
}

class Noise {
  constructor(redisUrl) {
    this.client = redisUrl ? new Redis(redisUrl) : null;
  }
  async redisCpu() {
    if (!this.client) return 0;
    const info = await this.client.info('cpu');
    const get = (f) => Number((new RegExp(`${f}:([0-9.]+)`).exec(info) || [0, 0])[1]);
    return get('used_cpu_user') + get('used_cpu_sys');
  }
  async start() {
    const u = process.cpuUsage();
    this.t0 = { stat: procStat(), own: (u.user + u.system) / 1e6, redis: await this.redisCpu() };
  }
  async stop() {
    const u = process.cpuUsage();
    const s1 = procStat();
    const own1 = (u.user + u.system) / 1e6;
    const r1 = await this.redisCpu();
    const { stat: s0, own: own0, redis: r0 } = this.t0;
    const total = Math.max(s1.total - s0.total, 1e-9);
    return {
      other: Math.max(0, s1.busy - s0.busy - (own1 - own0) - (r1 - r0)) / total,
      steal: (s1.steal - s0.steal) / total,
      own: (own1 - own0) / total,
      redis: (r1 - r0) / total,
    };
  }
  async close() {
    if (this.client) await this.client.quit();
  }
}

// ---- groups ------------------------------------------------------------------------------

function keysOf(n, tag) {
  return Array.from({ length: n }, (_, i) => `${tag}:user:${1000000 + i}`);
}

function buildGroups(a) {
  const groups = [];
  const mem = [];
  for (const [shape, nkeys] of [['one hot key', 1], [`${a.keys.toLocaleString('en-US')} keys`, a.keys]]) {
    mem.push(
      { name: `tollgate checkSync(), ${shape}`, make: cases.tollgateSync(null), kind: 'sync', nkeys, key: 'ts' },
      { name: `tollgate await check(), ${shape}`, make: cases.tollgateAsync(null), kind: 'seq', nkeys, key: 'ta' },
      { name: `RateLimiterMemory await consume(), ${shape}`, make: cases.rlfMemory(), kind: 'seq', nkeys, key: 'rm' },
      { name: `no check, await only (floor), ${shape}`, make: cases.awaitFloor(), kind: 'seq', nkeys, key: 'af' },
    );
  }
  groups.push({ name: 'memory, 1 thread, checks/s', cases: mem });
  if (a.redis) {
    groups.push({
      name: `Redis, ${a.inflight} checks in flight, checks/s`,
      redis: true,
      cases: [
        { name: 'tollgate await check(), GCRA', make: cases.tollgateAsync(a.redis, 'gcra'), kind: 'inflight', nkeys: a.redisKeys },
        { name: 'tollgate await check(), GCRA, loop driver', make: cases.tollgateAsync(a.redis, 'gcra', { driver: 'loop' }), kind: 'inflight', nkeys: a.redisKeys },
        { name: 'tollgate await check(), GCRA, I/O thread driver', make: cases.tollgateAsync(a.redis, 'gcra', { driver: 'thread' }), kind: 'inflight', nkeys: a.redisKeys },
        { name: 'tollgate await check(), fixed window', make: cases.tollgateAsync(a.redis, 'fixed_window'), kind: 'inflight', nkeys: a.redisKeys },
        { name: 'RateLimiterRedis (ioredis) await consume()', make: cases.rlfRedis(a.redis), kind: 'inflight', nkeys: a.redisKeys },
        { name: 'raw ioredis evalsha (INCR script)', make: cases.rawEvalsha(a.redis), kind: 'inflight', nkeys: a.redisKeys },
      ],
    });
    groups.push({
      name: 'Redis, sequential',
      redis: true,
      cases: [
        { name: 'tollgate await check(), GCRA', make: cases.tollgateAsync(a.redis, 'gcra'), kind: 'latency', nkeys: a.redisKeys },
        { name: 'tollgate await check(), GCRA, loop driver', make: cases.tollgateAsync(a.redis, 'gcra', { driver: 'loop' }), kind: 'latency', nkeys: a.redisKeys },
        { name: 'tollgate await check(), GCRA, I/O thread driver', make: cases.tollgateAsync(a.redis, 'gcra', { driver: 'thread' }), kind: 'latency', nkeys: a.redisKeys },
        { name: 'tollgate await check(), fixed window', make: cases.tollgateAsync(a.redis, 'fixed_window'), kind: 'latency', nkeys: a.redisKeys },
        { name: 'RateLimiterRedis (ioredis) await consume()', make: cases.rlfRedis(a.redis), kind: 'latency', nkeys: a.redisKeys },
        { name: 'raw ioredis evalsha (INCR script)', make: cases.rawEvalsha(a.redis), kind: 'latency', nkeys: a.redisKeys },
      ],
    });
  }
  let tag = 0;
  for (const g of groups) for (const c of g.cases) c.tag = `b${(tag++).toString(36)}`;
  return groups;
}

async function runCase(c, rep, a, noise) {
  const lib = await c.make(rep);
  try {
    const keys = keysOf(c.nkeys, `${c.tag}:${rep}:${process.pid}`);
    // CPU per call of this process (JS thread + tollgate's I/O thread) and of
    // redis-server, over the whole run (warm-up included, so a slight overestimate).
    const cpu0 = process.cpuUsage();
    const r0 = await noise.redisCpu();
    let out;
    if (c.kind === 'sync') out = runSync(lib.sync, keys, a.seconds);
    else if (c.kind === 'seq') out = await runSeq(lib.async, keys, a.seconds, false);
    else if (c.kind === 'latency') out = await runSeq(lib.async, keys, a.seconds, true);
    else out = await runInflight(lib.async, keys, a.seconds, a.inflight);
    const cpu = process.cpuUsage(cpu0);
    const calls = out.calls + keys.length;
    out.cpu_us = (cpu.user + cpu.system) / calls;
    out.redis_cpu_us = ((await noise.redisCpu()) - r0) * 1e6 / calls;
    return out;
  } finally {
    await lib.close();
  }
}

function median(xs) {
  const s = xs.slice().sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const fmt = (x) => Math.round(x).toLocaleString('en-US');
const pct = (x) => `${(x * 100).toFixed(1)}%`;

async function versions(a) {
  const v = {
    node: process.version,
    tollgate: require(`${process.env.BENCH_TOLLGATE || 'tollgate'}/package.json`).version,
    'rate-limiter-flexible': require('rate-limiter-flexible/package.json').version,
    ioredis: require('ioredis/package.json').version,
    cpus: `${os.cpus().length} x ${os.cpus()[0] && os.cpus()[0].model}`,
  };
  if (a.redis) {
    const c = new Redis(a.redis);
    const info = await c.info('server');
    v.redis = (/redis_version:(\S+)/.exec(info) || [])[1];
    await c.quit();
  }
  return v;
}

async function main() {
  const a = parseArgs(process.argv);
  const groups = buildGroups(a);
  const cpus = os.cpus();
  const machine = {
    nproc: cpus.length,
    cpu_model: cpus[0] ? cpus[0].model.trim() : 'unknown',
    kernel: `${os.type()} ${os.release()}`,
    loadavg_start: os.loadavg()[0],
  };
  const out = { bench: 'node', args: a, versions: await versions(a), machine, groups: [] };
  if (!a.json) {
    console.log(`tollgate Node benchmark: ${JSON.stringify(out.versions)}`);
    console.log(`median of ${a.reps} interleaved repetitions of ${a.seconds} s${global.gc ? '' : ' (run with --expose-gc for a GC before each loop)'}`);
  }
  for (const g of groups) {
    const noise = new Noise(g.redis ? a.redis : null);
    await noise.start();
    for (const c of g.cases) c.samples = [];
    for (let rep = 0; rep < a.reps; rep++) {
      for (const c of g.cases) {
        process.stderr.write(`  ${g.name} | ${c.name} | rep ${rep + 1}\r`);
        c.samples.push(await runCase(c, rep, a, noise));
      }
    }
    const n = await noise.stop();
    await noise.close();
    process.stderr.write(' '.repeat(100) + '\r');
    const rows = g.cases.map((c) => {
      const row = {
        name: c.name,
        rate: median(c.samples.map((s) => s.rate)),
        min: Math.min(...c.samples.map((s) => s.rate)),
        max: Math.max(...c.samples.map((s) => s.rate)),
        deniedShare: Math.max(...c.samples.map((s) => s.deniedShare)),
        cpu_us: median(c.samples.map((s) => s.cpu_us)),
        redis_cpu_us: median(c.samples.map((s) => s.redis_cpu_us)),
      };
      if (c.kind === 'latency') {
        row.p50_us = median(c.samples.map((s) => s.p50_us));
        row.p99_us = median(c.samples.map((s) => s.p99_us));
      }
      return row;
    });
    out.groups.push({ name: g.name, noise: n, rows });
    if (!a.json) {
      console.log(`\n## ${g.name}`);
      console.log(`noise: other processes ${pct(n.other)} of the CPU time, steal ${pct(n.steal)} (this process ${pct(n.own)}, redis-server ${pct(n.redis)})`);
      if (n.other > 0.05 || n.steal > 0.05) console.log('NOTE: more than 5% noise; figures are not reliable');
      for (const r of rows) {
        const lat = r.p50_us !== undefined ? `  p50 ${r.p50_us.toFixed(1)} us  p99 ${r.p99_us.toFixed(1)} us` : '';
        const cpu = `  cpu/call ${r.cpu_us.toFixed(2)} us${g.redis ? ` (redis ${r.redis_cpu_us.toFixed(2)} us)` : ''}`;
        console.log(`  ${r.name.padEnd(52)} ${fmt(r.rate).padStart(11)} /s  (${fmt(r.min)}-${fmt(r.max)})  denied ${pct(r.deniedShare)}${lat}${cpu}`);
      }
    }
  }
  const find = (g, name) => {
    const grp = out.groups.find((x) => x.name.startsWith(g));
    return grp && grp.rows.find((r) => r.name === name);
  };
  const ratios = [];
  for (const shape of ['one hot key', `${a.keys.toLocaleString('en-US')} keys`]) {
    const base = find('memory', `RateLimiterMemory await consume(), ${shape}`);
    for (const t of ['tollgate checkSync()', 'tollgate await check()']) {
      const r = find('memory', `${t}, ${shape}`);
      ratios.push({ name: `memory, ${shape}: ${t} / RateLimiterMemory`, value: r.rate / base.rate, target: 3, higher: true });
    }
    // Not a target: the most any check behind the same awaits could reach.
    const floor = find('memory', `no check, await only (floor), ${shape}`);
    ratios.push({ name: `memory, ${shape}: await only (floor) / RateLimiterMemory`, value: floor.rate / base.rate, target: null, higher: true });
  }
  if (a.redis) {
    const base = find('Redis, 64', 'RateLimiterRedis (ioredis) await consume()') || find(`Redis, ${a.inflight}`, 'RateLimiterRedis (ioredis) await consume()');
    for (const alg of ['GCRA', 'fixed window']) {
      const r = find(`Redis, ${a.inflight}`, `tollgate await check(), ${alg}`);
      ratios.push({ name: `Redis, ${a.inflight} in flight: tollgate ${alg} / RateLimiterRedis`, value: r.rate / base.rate, target: 1.8, higher: true });
    }
    const seqBase = find('Redis, sequential', 'RateLimiterRedis (ioredis) await consume()');
    for (const alg of ['GCRA', 'fixed window']) {
      const r = find('Redis, sequential', `tollgate await check(), ${alg}`);
      ratios.push({ name: `Redis sequential p50: tollgate ${alg} / RateLimiterRedis`, value: r.p50_us / seqBase.p50_us, target: 1, higher: false });
    }
  }
  out.ratios = ratios;
  machine.loadavg_end = os.loadavg()[0];
  if (a.json) console.log(JSON.stringify(out, null, 2));
  else {
    console.log('\n## ratios (target)');
    for (const r of ratios) {
      if (r.target === null) {
        console.log(`  ${r.name.padEnd(62)} ${r.value.toFixed(2)}x  (no target: the ceiling of an awaited check)`);
        continue;
      }
      const met = r.higher ? r.value >= r.target : r.value <= r.target;
      console.log(`  ${r.name.padEnd(62)} ${r.value.toFixed(2)}x  (${r.higher ? '>=' : '<='} ${r.target}x: ${met ? 'met' : 'not met'})`);
    }
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
