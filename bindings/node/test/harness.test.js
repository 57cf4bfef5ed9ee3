'use strict';
// The test harness itself: a file that node --test ends for outliving its
// --test-timeout (SIGTERM) leaves none of the processes it started running
// (children.js).
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { noRedis } = require('./redis-server');

// Running, and not a zombie left for a parent that does not reap.
function running(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('a test file ended by the runner\'s timeout stops the processes it started', { skip: noRedis, timeout: 60000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-harness-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pidsFile = path.join(dir, 'pids.json');
  const env = { ...process.env, TOLLGATE_HARNESS_PIDS: pidsFile };
  delete env.NODE_TEST_CONTEXT;
  const fixture = path.join(__dirname, 'fixtures', 'hang-with-children.js');
  const out = await new Promise((resolve) => {
    execFile(process.execPath, ['--test', '--test-timeout=5000', fixture], { env, timeout: 50000 },
      (err, stdout, stderr) => resolve(stdout + stderr));
  });
  assert.match(out, /timed out/, out);
  const pids = JSON.parse(fs.readFileSync(pidsFile, 'utf8'));
  assert.equal(pids.length, 2);
  // SIGKILL'd before the runner's child exited; allow for the reaping.
  const end = Date.now() + 5000;
  while (pids.some(running) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids) {
    if (running(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
      assert.fail(`process ${pid} outlived the test file that started it`);
    }
  }
});
