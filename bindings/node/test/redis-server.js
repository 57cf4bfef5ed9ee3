'use strict';
// Throwaway redis-server processes for the tests: each on a free 127.0.0.1
// port with its own temporary directory, no persistence, stopped by its PID
// (never by name). Tests that need Redis skip when redis-server is missing.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

function findRedisServer() {
  for (const dir of (process.env.PATH || '').split(path.delimiter).concat(['/usr/bin', '/usr/local/bin'])) {
    const file = path.join(dir, 'redis-server');
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {}
  }
  return null;
}

const REDIS_SERVER = findRedisServer();

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

  async start() {
    if (!REDIS_SERVER) throw new Error('redis-server is not installed');
    let log = '';
    for (let attempt = 0; attempt < 5; ++attempt) {
      this.port = await freePort();
      const args = [
        '--bind', '127.0.0.1', '--port', String(this.port), '--save', '', '--appendonly', 'no',
        '--daemonize', 'no', '--dir', this.dir, '--logfile', path.join(this.dir, 'redis.log'),
      ];
      if (this.password) args.push('--requirepass', this.password);
      args.push(...this.extra);
      this.exited = false;
      this.proc = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
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

module.exports = { RedisServer, REDIS_SERVER, freePort, sleep };
