#!/usr/bin/env node
// A Node app server for tollgate-demo (examples/demo/demo.c).
//
// It speaks the demo's line protocol on stdin/stdout and limits
// organization org-123 to the FREE plan (100 requests per hour, GCRA),
// exactly as the C and Python servers do, so C, Python and Node servers
// behind one balancer share one counter when they share a Redis:
//
//   balancer -> server   CHECK <key> | RESET <key>
//   server -> balancer   READY <pid> (once), then per request
//                        ALLOW|DENY <remaining> <reset_after_ms> <retry_after_ms>
//                        OK | ERROR <code name> <message>
//
//   node server.js [--store URL]     (no URL: the in-process memory store)
'use strict';

const readline = require('node:readline');
const { Limiter, TollgateError } = require('tollgate');

const PLAN = { limit: 100, period: '1h' }; // FREE: GCRA, burst = limit

function oneLine(text) {
  return String(text).split(/\s+/).join(' ').trim();
}

function errorLine(err) {
  const code = err instanceof TollgateError ? err.code : 'RL_E_INTERNAL';
  return `ERROR ${code} ${oneLine(err.message)}\n`;
}

async function main(argv) {
  let url;
  if (argv.length === 2 && argv[0] === '--store') url = argv[1];
  else if (argv.length !== 0) {
    process.stderr.write('usage: node server.js [--store URL]\n');
    return 2;
  }
  let limiter;
  try {
    limiter = new Limiter(url ? { url } : {});
  } catch (err) {
    process.stdout.write(errorLine(err));
    return 1;
  }
  process.stdout.write(`READY ${process.pid}\n`);
  // One request at a time, in order, as the balancer sends them.
  const lines = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    const space = line.indexOf(' ');
    const verb = space < 0 ? line : line.slice(0, space);
    const key = space < 0 ? '' : line.slice(space + 1);
    let reply;
    try {
      if (verb === 'RESET' && key) {
        await limiter.reset(key);
        reply = 'OK\n';
      } else if (verb === 'CHECK' && key) {
        const d = await limiter.check(key, PLAN);
        const retry = d.retryAfter === Infinity ? -1 : d.retryAfter;
        reply = `${d.allowed ? 'ALLOW' : 'DENY'} ${d.remaining} ${d.resetAfter} ${retry}\n`;
      } else {
        reply = 'ERROR RL_E_INVALID_ARG bad request line\n';
      }
    } catch (err) {
      reply = errorLine(err);
    }
    process.stdout.write(reply);
  }
  await limiter.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`server.js: ${err.stack || err}\n`); process.exitCode = 1; },
);
