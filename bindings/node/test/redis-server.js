'use strict';
// Throwaway redis-server processes for the tests: each on a free 127.0.0.1
// port with its own temporary directory, no persistence, stopped by its PID
// (never by name). Tests that need Redis skip when redis-server is missing.
// A Redis Cluster or Sentinel set comes from the repository's
// tests/servers/topology.py (startTopology).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { PACKAGE_ROOT, REPO_ROOT } = require('./helpers');
const { track } = require('./children');

function findExecutable(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter).concat(['/usr/bin', '/usr/local/bin'])) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {}
  }
  return null;
}

const REDIS_SERVER = findExecutable('redis-server');
// Why a test that needs redis-server cannot run here, or false.
const noRedis = !REDIS_SERVER && 'redis-server is not installed';
const PYTHON3 = findExecutable('python3');
// The cluster and sentinel harness (docs/testing.md, "Cluster and Sentinel
// servers"): the repository's, or a copy a packed package would carry in
// native-src/ (it carries none today).
const TOPOLOGY_SCRIPT = [
  path.join(REPO_ROOT, 'tests', 'servers', 'topology.py'),
  path.join(PACKAGE_ROOT, 'native-src', 'tests', 'servers', 'topology.py'),
].find((f) => fs.existsSync(f)) || null;
// Why a topology test cannot run here, or false.
const topologySkip = noRedis ||
  (!PYTHON3 && 'python3 is not installed') ||
  (!TOPOLOGY_SCRIPT && 'tests/servers/topology.py not found (a packed package does not carry it)');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => finish(false));
    sock.on('error', () => finish(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => finish(d.toString().startsWith('+PONG') || d.toString().startsWith('-NOAUTH')));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class RedisServer {
  constructor(options = {}) {
    this.password = options.password || null;
    this.extra = options.extra || [];
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-node-redis-'));
    this.port = 0;
    this.proc = null;
    this.exited = false;
  }

  static async start(options) {
    const s = new RedisServer(options);
    await s.start();
    return s;
  }

  // Starts the server on a free port; `samePort` (restart()): on the port it
  // had.
  async start(samePort = false) {
    if (!REDIS_SERVER) throw new Error('redis-server is not installed');
    let log = '';
    for (let attempt = 0; attempt < 5; ++attempt) {
      if (!samePort) this.port = await freePort();
      const args = [
        '--bind', '127.0.0.1', '--port', String(this.port), '--save', '', '--appendonly', 'no',
        '--daemonize', 'no', '--dir', this.dir, '--logfile', path.join(this.dir, 'redis.log'),
      ];
      if (this.password) args.push('--requirepass', this.password);
      args.push(...this.extra);
      this.exited = false;
      this.proc = track(spawn(REDIS_SERVER, args, { stdio: 'ignore' }));
      this.proc.on('exit', () => {
        this.exited = true;
      });
      const deadline = Date.now() + 10000;
      while (Date.now() < deadline && !this.exited) {
        if (await ping(this.port)) return this;
        await sleep(10);
      }
      try {
        log = fs.readFileSync(path.join(this.dir, 'redis.log'), 'utf8');
      } catch {}
      await this.kill();
    }
    throw new Error('redis-server did not start:\n' + log);
  }

  get pid() {
    return this.proc.pid;
  }

  get url() {
    const auth = this.password ? `:${this.password}@` : '';
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  // INFO <section>: the reply's text (a bulk string), over a connection of
  // its own (AUTH first when the server has a password).
  info(section) {
    const cmd = (args) => `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
    const out = (this.password ? cmd(['AUTH', this.password]) : '') + cmd(['INFO', section]);
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port: this.port });
      let buf = Buffer.alloc(0);
      sock.setTimeout(5000, () => {
        sock.destroy();
        reject(new Error('INFO timed out'));
      });
      sock.on('error', reject);
      sock.on('connect', () => sock.write(out));
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const text = buf.toString('latin1');
        const at = text.indexOf('$');
        const eol = text.indexOf('\r\n', at);
        if (at < 0 || eol < 0) return;
        const len = Number(text.slice(at + 1, eol));
        if (buf.length < eol + 2 + len) return;
        sock.destroy();
        resolve(buf.subarray(eol + 2, eol + 2 + len).toString());
      });
    });
  }

  // After kill(): the server again, on the same port (a client reconnects
  // to it), with an empty dataset.
  async restart() {
    await this.kill();
    return this.start(true);
  }

  freeze() {
    process.kill(this.pid, 'SIGSTOP');
  }

  thaw() {
    process.kill(this.pid, 'SIGCONT');
  }

  // SIGKILL by PID, and wait for the exit.
  async kill() {
    if (!this.proc || this.exited) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    try {
      process.kill(this.pid, 'SIGCONT');
      process.kill(this.pid, 'SIGKILL');
    } catch {}
    await exited;
  }

  async stop() {
    if (this.proc && !this.exited) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      try {
        process.kill(this.pid, 'SIGCONT');
        process.kill(this.pid, 'SIGTERM');
      } catch {}
      const t = setTimeout(() => {
        try {
          process.kill(this.pid, 'SIGKILL');
        } catch {}
      }, 5000);
      await exited;
      clearTimeout(t);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---- Raw RESP ---------------------------------------------------------------

// Parses one RESP value of buf at pos: [value, next pos], or null if buf
// holds no complete value yet. Bulk strings come back as strings; an error
// reply as an Error object (not thrown).
function parseResp(buf, pos = 0) {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[pos]);
  const line = buf.toString('latin1', pos + 1, eol);
  pos = eol + 2;
  if (kind === '+') return [line, pos];
  if (kind === '-') return [new Error(line), pos];
  if (kind === ':') return [Number(line), pos];
  if (kind === '$') {
    const n = Number(line);
    if (n < 0) return [null, pos];
    if (buf.length < pos + n + 2) return null;
    return [buf.toString('utf8', pos, pos + n), pos + n + 2];
  }
  if (kind === '*') {
    const n = Number(line);
    if (n < 0) return [null, pos];
    const items = [];
    for (let i = 0; i < n; i++) {
      const r = parseResp(buf, pos);
      if (r === null) return null;
      items.push(r[0]);
      pos = r[1];
    }
    return [items, pos];
  }
  throw new Error('unexpected RESP reply: ' + JSON.stringify(buf.toString('latin1', pos - line.length - 3, pos)));
}

// One command to 127.0.0.1:<port> on a connection of its own; rejects on an
// error reply.
function redisCommand(port, ...args) {
  const out = `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('');
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error(`${args[0]} to port ${port} timed out`));
    });
    sock.on('error', reject);
    sock.on('connect', () => sock.write(out));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r;
      try {
        r = parseResp(buf);
      } catch (e) {
        sock.destroy();
        reject(e);
        return;
      }
      if (r === null) return;
      sock.destroy();
      if (r[0] instanceof Error) reject(r[0]);
      else resolve(r[0]);
    });
  });
}

// ---- Cluster and Sentinel -----------------------------------------------------

// startTopology('cluster' | 'sentinel', [extra args, e.g. '--tls']) runs
// tests/servers/topology.py and resolves, once every node is ready, to
//   { kind, url, nodes, info, primaryPorts, pid, command(line), close() }
// and for a sentinel set also { masterName, sentinels, sentinelPorts,
// currentMaster(i = 0) }: currentMaster asks sentinel i for the master
// (SENTINEL GET-MASTER-ADDR-BY-NAME) and resolves to its port.
// `info` is the script's JSON line;
// command('ping' | 'restart <port>') resolves to its JSON answer; close()
// ends the script's stdin (it stops every process it started by PID and
// removes its temp dir) and waits, SIGKILL by PID after 15 s.
function startTopology(kind, extra = []) {
  if (topologySkip) return Promise.reject(new Error(topologySkip));
  const child = spawn(PYTHON3, [TOPOLOGY_SCRIPT, kind, '--timeout', '30', ...extra], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let exited = child.exitCode !== null;
  const exit = new Promise((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-65536);
  });
  // stdout, line by line, to whoever waits for the next line.
  child.stdout.setEncoding('utf8');
  let pending = '';
  const lines = [];
  const waiters = [];
  const deliver = () => {
    while (lines.length && waiters.length) waiters.shift().resolve(lines.shift());
  };
  child.stdout.on('data', (d) => {
    pending += d;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      lines.push(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
    deliver();
  });
  // 'close': the script exited and its output is all read.
  let ended = false;
  const endedError = () => new Error(`topology.py ${kind} ended (exit ${child.exitCode}):\n${stderr}`);
  child.once('close', () => {
    ended = true;
    for (const w of waiters.splice(0)) w.reject(endedError());
  });
  const nextLine = () => new Promise((resolve, reject) => {
    if (ended && !lines.length) {
      reject(endedError());
      return;
    }
    waiters.push({ resolve, reject });
    deliver();
  });
  child.stdin.on('error', () => {}); // EPIPE if the script is gone

  async function close() {
    if (!child.stdin.destroyed) child.stdin.end();
    if (exited) return;
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {}
    }, 15000);
    await exit;
    clearTimeout(timer);
  }

  return nextLine().then(
    (line) => {
      const info = JSON.parse(line);
      const sentinels = info.sentinels || [];
      return {
        kind,
        info,
        url: info.url,
        nodes: info.nodes,
        primaryPorts: info.nodes.filter((n) => n.role === 'primary').map((n) => n.port),
        masterName: info.master_name || null,
        sentinels,
        sentinelPorts: sentinels.map((s) => s.port),
        async currentMaster(i = 0) {
          const [host, port] = await redisCommand(sentinels[i].port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', info.master_name);
          if (host !== '127.0.0.1') throw new Error(`the sentinel names ${host}:${port}`);
          return Number(port);
        },
        pid: child.pid,
        async command(cmd) {
          const answer = nextLine();
          child.stdin.write(cmd + '\n');
          return JSON.parse(await answer);
        },
        close,
      };
    },
    async (e) => {
      await close();
      throw e;
    },
  );
}

module.exports = {
  RedisServer, REDIS_SERVER, noRedis, freePort, sleep, redisCommand, startTopology, topologySkip, TOPOLOGY_SCRIPT,
};
