#!/usr/bin/env node
'use strict';
// The package's `tollgate` bin: runs the command-line tool (docs/cli.md)
// built with the addon, with this process's arguments and stdio, and exits
// as it exits (0 allowed or done, 1 denied, 2 usage, 3 store; a signal that
// ends it ends this process the same way).
//
//   npx tollgate ping --url redis://127.0.0.1:6379
//
// lib/native.js's findCli() says where the executable is (build/Release/
// beside the addon, or TOLLGATE_NODE_CLI); when there is none (a prebuilt
// addon, or an install with --ignore-scripts) this says how to build it and
// exits 127.

const { spawn } = require('node:child_process');
const path = require('node:path');

const { findCli } = require('../lib/native');

const found = findCli(path.join(__dirname, '..'));
if (!found.file) {
  console.error(found.error);
  process.exit(127);
}

const child = spawn(found.file, process.argv.slice(2), { stdio: 'inherit' });

// A signal sent to this process (kill PID, a supervisor's SIGTERM) goes on
// to the tool, which decides what it means; this process waits for it to
// end. (Ctrl-C reaches both: one process group.)
const FORWARD = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'];
const forward = (signal) => {
  try {
    child.kill(signal);
  } catch {}
};
for (const s of FORWARD) process.on(s, forward);

child.on('error', (e) => {
  console.error(`tollgate: cannot run ${found.file}: ${e.message}`);
  process.exit(127);
});

child.on('exit', (code, signal) => {
  if (signal) {
    // End as the tool ended: the same signal, with its default action.
    for (const s of FORWARD) process.removeListener(s, forward);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
