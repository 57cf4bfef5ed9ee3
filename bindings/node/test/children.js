'use strict';
// The processes a test file starts (redis-servers, forked workers, example
// servers), stopped by PID when the file's process ends however it ends:
// node --test ends a file that outlives --test-timeout with SIGTERM, whose
// default action would leave them running (orphans that spun for minutes
// once). A script started through stdin (tests/servers/topology.py) is not
// listed: it stops its own processes when its stdin closes, as it does
// when this process exits.

const live = new Map(); // child -> whether its process group goes too
let installed = false;

function stopAll() {
  for (const [child, group] of live) {
    try {
      process.kill(group ? -child.pid : child.pid, 'SIGKILL');
    } catch {}
  }
  live.clear();
}

function install() {
  if (installed) return;
  installed = true;
  process.on('exit', stopAll);
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130], ['SIGHUP', 129]]) {
    process.once(signal, () => {
      stopAll();
      process.exit(code);
    });
  }
}

// Lists `child` (a ChildProcess) until it exits; returns it. `group`: it
// was spawned detached, and its whole process group is stopped.
function track(child, group = false) {
  install();
  if (child.pid === undefined) return child;
  live.set(child, group);
  child.once('exit', () => live.delete(child));
  return child;
}

module.exports = { track };
