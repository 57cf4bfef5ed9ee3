'use strict';
// The demo's polyglot run (scripts/demo.sh, part 3): the C balancer
// (examples/demo/demo.c) sends 300 requests round-robin to a C, a Python
// (examples/demo/server.py) and a Node (examples/demo/server.js) app server
// on one Redis; the FREE plan (100/h for org-123) admits exactly 100 in
// total. Needs the demo binary (TOLLGATE_TEST_DEMO) and a Python with the
// tollgate package (TOLLGATE_TEST_PYTHON); scripts/test.sh sets both.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { RedisServer, REDIS_SERVER } = require('./redis-server');

const REPO = path.resolve(__dirname, '..', '..', '..');
const DEMO = process.env.TOLLGATE_TEST_DEMO || '';
const PYTHON = process.env.TOLLGATE_TEST_PYTHON || '';

const skip =
  (!REDIS_SERVER && 'redis-server is not installed') ||
  (!DEMO && 'TOLLGATE_TEST_DEMO (the tollgate-demo binary) is not set') ||
  (!PYTHON && 'TOLLGATE_TEST_PYTHON (a Python with tollgate) is not set');

function run(file, args, env) {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: 60000 }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr });
    });
  });
}

test('a C, a Python and a Node server behind one balancer admit the plan once', { skip }, async (t) => {
  const server = new RedisServer();
  await server.start();
  t.after(() => server.stop());
  // The Node server does require('tollgate'): resolve it to this package.
  const modules = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-demo-'));
  t.after(() => fs.rmSync(modules, { recursive: true, force: true }));
  fs.symlinkSync(path.resolve(__dirname, '..'), path.join(modules, 'tollgate'));
  const env = { ...process.env, NODE_PATH: modules };
  const args = [
    '--store', server.url,
    '--server-cmd', 'c',
    '--server-cmd', `${PYTHON} ${path.join(REPO, 'examples/demo/server.py')}`,
    '--server-cmd', `${process.execPath} ${path.join(REPO, 'examples/demo/server.js')}`,
  ];
  const r = await run(DEMO, args, env);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /admitted in total: 100\n/);
  const rows = r.stdout.split('\n').filter((l) => /^ {2}app-\d/.test(l));
  assert.deepEqual(rows.map((l) => l.trim().split(/\s+/)[1]), ['c', 'python', 'node']);
  for (const row of rows) {
    const [received, admitted, denied, failed] = row.trim().split(/\s+/).slice(3).map(Number);
    assert.equal(received, 100);
    assert.equal(admitted + denied, 100);
    assert.equal(failed, 0);
    assert.ok(admitted >= 33 && admitted <= 34, row);
  }

  // The memory store: every server, whatever its language, counts alone.
  const mem = await run(DEMO, args.slice(2), env);
  assert.equal(mem.code, 0, mem.stderr + mem.stdout);
  assert.match(mem.stdout, /admitted in total: 300\n/);
});
