#!/usr/bin/env python3
"""Starts a Redis Cluster or a Sentinel set on 127.0.0.1 for tollgate's tests.

  topology.py cluster [--tls] [--primaries 3] [--replicas-per-primary 1]
  topology.py sentinel [--master-name mymaster]
  (both take --timeout SECONDS, default 60, bounding start-up)

Every process is a real redis-server on a free loopback port below the
kernel's ephemeral range, with its own directory under one temp dir. Once
the topology is ready (cluster: every node `cluster_state:ok`, every replica
`master_link_status:up`, every node's CLUSTER SLOTS the same and covering all
16384 slots; sentinel: the replica's link up, every sentinel naming the
primary and listing the replica and the 2 other sentinels), one JSON line
goes to stdout:

  {"kind":"cluster","url":"redis+cluster://127.0.0.1:p1,...","tls":false,
   "ca":null,"nodes":[{"host":"127.0.0.1","port":p,"pid":n,"role":"primary",
   "id":"<40 hex>","dir":"/tmp/...","bus_port":q,"primary_port":null},...]}
  {"kind":"sentinel","master_name":"mymaster",
   "url":"redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/mymaster",
   "tls":false,"ca":null,"nodes":[primary, replica],
   "sentinels":[{"host":"127.0.0.1","port":s,"pid":n,"dir":"..."},...]}

Then it reads commands from stdin, one per line, each answered by one JSON
line: `ping` -> {"ok":true}; `restart <port>` -> starts that node (or
sentinel) again on the same port with the same directory and configuration
(SIGKILL first if it still runs) -> {"ok":true,"pid":n}; anything wrong ->
{"ok":false,"error":"..."}. At EOF on stdin, or on SIGTERM or SIGINT, it
stops every process it started (SIGTERM by PID, SIGKILL by PID after 2 s)
and removes its temp dir. Its children die with it (PR_SET_PDEATHSIG).

A start failure prints the tail of the failing node's log to stderr, stops
everything and exits 1. Python 3.11 standard library only.
"""

import argparse
import ctypes
import json
import os
import random
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
SLOTS = 16384
HERE = Path(__file__).resolve().parent


class StartError(Exception):
    """Start-up failed; `proc` (if any) is the process whose log explains."""

    def __init__(self, message, proc=None):
        super().__init__(message)
        self.proc = proc


class Stop(BaseException):
    """SIGTERM or SIGINT: unwind to the cleanup."""


class RespError(str):
    """An error reply (-ERR ...)."""


def find_binary(name):
    found = shutil.which(name)
    if found:
        return found
    if os.access("/usr/bin/" + name, os.X_OK):
        return "/usr/bin/" + name
    raise StartError(name + ": not found in PATH or /usr/bin")


# ---- Child processes ------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_PARENT = os.getpid()


def _child_setup():
    # Runs in the child between fork and exec (this script has one thread).
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _PARENT:
        os._exit(126)  # the script died already
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def spawn(argv, out_path):
    """Starts argv with stdin /dev/null and stdout+stderr appended to
    out_path. SIGTERM/SIGINT are held until the Popen is recorded."""
    with open(out_path, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT,
                                preexec_fn=_child_setup,
                                start_new_session=True)


def run_tool(argv, timeout):
    """(exit status, output); status None if it ran out of time."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=max(timeout, 1),
                           preexec_fn=_child_setup, start_new_session=True)
        rc, out = r.returncode, (r.stdout or b"") + (r.stderr or b"")
    except subprocess.TimeoutExpired as e:
        rc, out = None, (e.stdout or b"") + (e.stderr or b"")
    return rc, out.decode(errors="replace")


# ---- Ports ----------------------------------------------------------------

class Ports:
    """Free loopback ports below the ephemeral range: the kernel hands ports
    from that range to outgoing connections, so one could be taken while
    its server is down between a kill and a restart."""

    def __init__(self):
        self.taken = set()
        self.floor = 32768
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                self.floor = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass

    def pick(self):
        for _ in range(500):
            port = 0
            if self.floor > 12000:
                port = random.randint(10000, self.floor - 1)
                if port in self.taken:
                    continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
                port = s.getsockname()[1]
            except OSError:
                continue
            finally:
                s.close()
            if port in self.taken:
                continue
            self.taken.add(port)
            return port
        raise StartError("no free loopback port found")


# ---- RESP -----------------------------------------------------------------

def resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def resp_parse(buf, pos=0):
    """Returns (value, new_pos), or None if buf holds no complete value."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    pos = end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return RespError(line.decode()), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            return None
        return buf[pos:pos + n].decode(), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            r = resp_parse(buf, pos)
            if r is None:
                return None
            item, pos = r
            items.append(item)
        return items, pos
    raise ValueError("malformed RESP reply: %r" % buf[pos - 2:pos + 20])


class Client:
    """Blocking one-shot commands to 127.0.0.1:<port>, plain or TLS."""

    def __init__(self, ca=None):
        self.tls = None
        if ca:
            self.tls = ssl.create_default_context(cafile=ca)

    def query(self, port, *args, timeout=2.0):
        with socket.create_connection((HOST, port), timeout=timeout) as raw:
            sock = raw
            if self.tls:
                sock = self.tls.wrap_socket(raw, server_hostname=HOST)
            try:
                sock.sendall(resp_encode(args))
                buf = b""
                while True:
                    r = resp_parse(buf)
                    if r is not None:
                        return r[0]
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("connection closed")
                    buf += chunk
            finally:
                if sock is not raw:
                    sock.close()


def parse_info(text):
    out = {}
    for line in str(text).splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def pairs(flat):
    """A flat [k1, v1, k2, v2, ...] reply as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


# ---- One server process ---------------------------------------------------

def conf_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Server:
    """A redis-server (data node or sentinel) with its own directory. The
    command line (and config file) is made by `build`, which may be called
    again with new ports when a port turns out to be taken."""

    def __init__(self, topo, name, kind):
        self.topo = topo
        self.name = name
        self.kind = kind  # "cluster", "data" or "sentinel"
        self.dir = os.path.join(topo.root, name)
        os.mkdir(self.dir)
        self.log = os.path.join(self.dir, "sentinel.log" if kind == "sentinel"
                                else "redis.log")
        self.out = os.path.join(self.dir, "stdout.log")
        self.port = 0
        self.bus_port = None
        self.role = None  # initial role: "primary" or "replica"
        self.replicaof = None  # the primary's port (sentinel replica)
        self.proc = None
        self.log_start = 0
        self.argv = None

    # The argv and config for the current ports.
    def build(self):
        t = self.topo
        common = ["--bind", HOST, "--daemonize", "no", "--dir", self.dir,
                  "--logfile", self.log, "--loglevel", "notice"]
        if self.kind == "sentinel":
            conf = os.path.join(self.dir, "sentinel.conf")
            m = t.master_name
            with open(conf, "w") as f:
                f.write("# written by tests/servers/topology.py\n"
                        "port %d\n"
                        "sentinel resolve-hostnames no\n"
                        "sentinel announce-hostnames no\n"
                        "sentinel monitor %s %s %d 2\n"
                        "sentinel down-after-milliseconds %s 1000\n"
                        "sentinel failover-timeout %s 5000\n"
                        "sentinel parallel-syncs %s 1\n"
                        % (self.port, m, HOST, t.primary_port(), m, m, m))
            self.argv = [t.redis_server, conf, "--sentinel"] + common
            return
        # A config file of its own so that CONFIG REWRITE (sent by sentinels
        # after REPLICAOF) works and a restart keeps the role they gave.
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("# written by tests/servers/topology.py\n")
            if self.replicaof:
                f.write("replicaof %s %d\n" % (HOST, self.replicaof))
        argv = [t.redis_server, conf] + common + [
            "--save", "", "--appendonly", "no",
            "--repl-diskless-sync-delay", "0", "--shutdown-timeout", "0",
            # A replica's offset moves (and CLUSTER SLOTS lists it: 7.0
            # skips replicas at offset 0) at the primary's first ping, 1 s
            # in rather than 10 s.
            "--repl-ping-replica-period", "1",
            "--enable-debug-command", "local"]
        if t.tls:
            c = t.certs
            argv += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", c + "/server.crt",
                     "--tls-key-file", c + "/server.key",
                     "--tls-ca-cert-file", c + "/ca.crt",
                     # The cluster bus always asks for a client certificate
                     # (whatever tls-auth-clients says), and server.crt is
                     # for serverAuth only: nodes connect with client.crt.
                     "--tls-client-cert-file", c + "/client.crt",
                     "--tls-client-key-file", c + "/client.key",
                     "--tls-auth-clients", "no",
                     "--tls-replication", "yes"]
            if self.kind == "cluster":
                argv += ["--tls-cluster", "yes"]
        else:
            argv += ["--port", str(self.port)]
        if self.kind == "cluster":
            argv += ["--cluster-enabled", "yes",
                     "--cluster-config-file",
                     os.path.join(self.dir, "nodes.conf"),
                     "--cluster-port", str(self.bus_port),
                     "--cluster-node-timeout", "1000",
                     "--cluster-replica-validity-factor", "0"]
        self.argv = argv

    def new_ports(self):
        self.port = self.topo.ports.pick()
        if self.kind == "cluster":
            self.bus_port = self.topo.ports.pick()
        self.build()

    def spawn(self):
        self.log_start = os.path.getsize(self.log) if os.path.exists(
            self.log) else 0
        self.out_start = os.path.getsize(self.out) if os.path.exists(
            self.out) else 0
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self.proc = spawn(self.argv, self.out)
            self.topo.procs.append(self.proc)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output_since_start(self):
        text = ""
        for path, start in ((self.log, self.log_start),
                            (self.out, getattr(self, "out_start", 0))):
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    text += f.read().decode(errors="replace")
            except OSError:
                pass
        return text

    def tail(self, lines=30):
        out = []
        for path in (self.log, self.out):
            try:
                with open(path, "rb") as f:
                    text = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            if text:
                out.append("--- %s (last %d lines)" % (path, lines))
                out.extend(text[-lines:])
        return "\n".join(out)

    def poll_start(self):
        """'ready', 'starting' or 'port_in_use'; raises StartError if the
        process exited for another reason."""
        if self.proc.poll() is not None:
            if "Address already in use" in self.output_since_start():
                return "port_in_use"
            raise StartError("%s (port %d) exited during start-up with "
                             "status %s" % (self.name, self.port,
                                            self.proc.returncode), self)
        try:
            self.topo.client.query(self.port, "PING", timeout=0.5)
            return "ready"
        except (OSError, ValueError):
            return "starting"


# ---- The topology ---------------------------------------------------------

class Topology:
    def __init__(self, args):
        self.args = args
        self.kind = args.kind
        self.tls = bool(getattr(args, "tls", False))
        self.master_name = getattr(args, "master_name", None)
        self.deadline = time.monotonic() + args.timeout
        self.ports = Ports()
        self.procs = []  # every Popen ever started, for the cleanup
        self.root = None
        self.certs = None
        self.ca = None
        self.servers = []  # data nodes
        self.sentinels = []
        self.client = Client()
        self.redis_server = find_binary("redis-server")
        self.redis_cli = find_binary("redis-cli")

    def remaining(self):
        return self.deadline - time.monotonic()

    def check_deadline(self, what, proc=None):
        if self.remaining() <= 0:
            raise StartError("not ready within %gs: %s" %
                             (self.args.timeout, what), proc)

    def primary_port(self):
        return self.servers[0].port

    # -- start-up

    def start(self):
        self.root = tempfile.mkdtemp(prefix="tollgate-topo-")
        if self.tls:
            self.make_certs()
        if self.kind == "cluster":
            self.start_cluster()
        else:
            self.start_sentinel()

    def make_certs(self):
        self.certs = os.path.join(self.root, "certs")
        os.mkdir(self.certs)
        script = os.environ.get("TOLLGATE_MAKE_CERTS") or str(
            HERE.parent / "support" / "make_certs.sh")
        rc, out = run_tool(["/bin/bash", script, self.certs],
                           self.remaining())
        if rc != 0:
            raise StartError("make_certs.sh failed (exit %s):\n%s" % (
                "timeout" if rc is None else rc, out))
        self.ca = os.path.join(self.certs, "ca.crt")
        self.client = Client(self.ca)

    def start_all(self, servers):
        """Starts servers in parallel, each on fresh ports, retrying with
        other ports when one was taken meanwhile."""
        for s in servers:
            s.new_ports()
            s.spawn()
        attempts = {s.name: 1 for s in servers}
        pending = list(servers)
        while pending:
            for s in list(pending):
                state = s.poll_start()
                if state == "ready":
                    pending.remove(s)
                elif state == "port_in_use":
                    attempts[s.name] += 1
                    if attempts[s.name] > 20:
                        raise StartError("%s: every port tried was taken" %
                                         s.name, s)
                    s.new_ports()
                    s.spawn()
            if pending:
                self.check_deadline("%s does not answer PING" %
                                    pending[0].name, pending[0])
                time.sleep(0.02)

    def cli_tls_args(self):
        return ["--tls", "--cacert", self.ca] if self.tls else []

    def start_cluster(self):
        a = self.args
        if a.primaries < 3:
            raise StartError("a cluster needs at least 3 primaries")
        if a.replicas_per_primary < 0:
            raise StartError("--replicas-per-primary must be >= 0")
        total = a.primaries * (1 + a.replicas_per_primary)
        self.servers = [Server(self, "node%d" % (i + 1), "cluster")
                        for i in range(total)]
        self.start_all(self.servers)
        rc, out = run_tool(
            [self.redis_cli] + self.cli_tls_args() + ["--cluster", "create"] +
            ["%s:%d" % (HOST, s.port) for s in self.servers] +
            ["--cluster-replicas", str(a.replicas_per_primary),
             "--cluster-yes"], self.remaining())
        if rc != 0:
            how = "ran out of time" if rc is None else "failed (exit %d)" % rc
            raise StartError("redis-cli --cluster create %s:\n%s" % (how, out),
                             self.servers[0])
        while True:
            problem = self.cluster_problem()
            if problem is None:
                break
            self.check_deadline(problem[0], problem[1])
            time.sleep(0.1)

    def cluster_problem(self):
        """None when the cluster is ready, else (what is missing, server)."""
        a = self.args
        q = self.client.query
        total = len(self.servers)
        views = []
        for s in self.servers:
            try:
                info = parse_info(q(s.port, "CLUSTER", "INFO"))
                if info.get("cluster_state") != "ok":
                    return "%s: cluster_state:%s" % (
                        s.name, info.get("cluster_state")), s
                if info.get("cluster_known_nodes") != str(total):
                    return "%s knows %s of %d nodes" % (
                        s.name, info.get("cluster_known_nodes"), total), s
                if info.get("cluster_slots_ok") != str(SLOTS):
                    return "%s: cluster_slots_ok:%s" % (
                        s.name, info.get("cluster_slots_ok")), s
                myself = [ln.split() for ln in
                          str(q(s.port, "CLUSTER", "NODES")).splitlines()
                          if "myself" in ln.split()[2]][0]
                s.id = myself[0]
                flags = myself[2].split(",")
                s.role = "replica" if "slave" in flags else "primary"
                s.primary_id = myself[3] if s.role == "replica" else None
                if s.role == "replica":
                    rep = parse_info(q(s.port, "INFO", "replication"))
                    if rep.get("master_link_status") != "up":
                        return "%s: master_link_status:%s" % (
                            s.name, rep.get("master_link_status")), s
                views.append(self.slot_map(q(s.port, "CLUSTER", "SLOTS")))
            except (OSError, ValueError, IndexError) as e:
                return "%s: %s" % (s.name, e), s
        if any(v != views[0] for v in views):
            return "the nodes' CLUSTER SLOTS differ", None
        covered = 0
        last_end = -1
        for start, end, _, replicas in views[0]:
            if start <= last_end:
                return "CLUSTER SLOTS has overlapping ranges", None
            last_end = end
            covered += end - start + 1
            if len(replicas) != a.replicas_per_primary:
                return "slots %d-%d list %d replicas" % (
                    start, end, len(replicas)), None
        if covered != SLOTS:
            return "CLUSTER SLOTS covers %d slots" % covered, None
        if len({v[2] for v in views[0]}) != a.primaries:
            return "slots are not spread over %d primaries" % a.primaries, None
        return None

    @staticmethod
    def slot_map(reply):
        out = []
        for entry in reply:
            start, end, primary = entry[0], entry[1], entry[2]
            replicas = tuple(sorted((r[0], r[1]) for r in entry[3:]))
            out.append((start, end, (primary[0], primary[1]), replicas))
        return sorted(out)

    def start_sentinel(self):
        primary = Server(self, "primary", "data")
        primary.role = "primary"
        self.servers = [primary]
        self.start_all([primary])
        replica = Server(self, "replica", "data")
        replica.role = "replica"
        replica.replicaof = primary.port
        self.servers.append(replica)
        self.start_all([replica])
        # Sentinels learn replicas from the primary's INFO, asked every 10 s:
        # start them once the primary lists the replica as online.
        while True:
            try:
                rep = parse_info(self.client.query(replica.port, "INFO",
                                                   "replication"))
                prim = parse_info(self.client.query(primary.port, "INFO",
                                                    "replication"))
                link = rep.get("master_link_status")
                listed = ("port=%d,state=online" % replica.port) in \
                    prim.get("slave0", "")
                if link == "up" and listed:
                    break
                what = "replica: master_link_status:%s" % link
            except (OSError, ValueError) as e:
                what = "replica: %s" % e
            self.check_deadline(what, replica)
            time.sleep(0.05)
        self.sentinels = [Server(self, "sentinel%d" % (i + 1), "sentinel")
                          for i in range(3)]
        self.start_all(self.sentinels)
        while True:
            problem = self.sentinel_problem()
            if problem is None:
                break
            self.check_deadline(problem[0], problem[1])
            time.sleep(0.1)

    def sentinel_problem(self):
        q = self.client.query
        m = self.master_name
        primary, replica = self.servers
        for s in self.sentinels:
            try:
                addr = q(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", m)
                if addr != [HOST, str(primary.port)]:
                    return "%s names the master %r" % (s.name, addr), s
                reps = [pairs(r) for r in q(s.port, "SENTINEL", "REPLICAS", m)]
                if not any(r.get("ip") == HOST and
                           r.get("port") == str(replica.port) and
                           "s_down" not in r.get("flags", "") and
                           "disconnected" not in r.get("flags", "")
                           for r in reps):
                    return "%s does not list the replica" % s.name, s
                others = {(p.get("ip"), p.get("port")) for p in
                          map(pairs, q(s.port, "SENTINEL", "SENTINELS", m))}
                want = {(HOST, str(o.port)) for o in self.sentinels
                        if o is not s}
                if not want <= others:
                    return "%s knows sentinels %s" % (s.name,
                                                      sorted(others)), s
            except (OSError, ValueError, TypeError) as e:
                return "%s: %s" % (s.name, e), s
        return None

    # -- what is printed

    def describe(self):
        def node(s):
            primary_port = None
            if self.kind == "cluster" and s.role == "replica":
                primary_port = next(
                    (o.port for o in self.servers if o.id == s.primary_id),
                    None)
            elif s.replicaof:
                primary_port = s.replicaof
            return {"host": HOST, "port": s.port, "pid": s.pid,
                    "role": s.role, "id": getattr(s, "id", None),
                    "dir": s.dir, "bus_port": s.bus_port,
                    "primary_port": primary_port}

        nodes = ([s for s in self.servers if s.role == "primary"] +
                 [s for s in self.servers if s.role == "replica"])
        out = {"kind": self.kind}
        if self.kind == "cluster":
            scheme = "rediss+cluster" if self.tls else "redis+cluster"
            out["url"] = scheme + "://" + ",".join(
                "%s:%d" % (HOST, s.port) for s in nodes)
        else:
            out["master_name"] = self.master_name
            out["url"] = "redis+sentinel://" + ",".join(
                "%s:%d" % (HOST, s.port) for s in self.sentinels) + \
                "/" + self.master_name
        out["tls"] = self.tls
        out["ca"] = self.ca
        out["nodes"] = [node(s) for s in nodes]
        if self.kind == "sentinel":
            out["sentinels"] = [{"host": HOST, "port": s.port, "pid": s.pid,
                                 "dir": s.dir} for s in self.sentinels]
        return out

    # -- commands

    def restart(self, port):
        s = next((x for x in self.servers + self.sentinels if x.port == port),
                 None)
        if s is None:
            raise ValueError("no node on port %d" % port)
        if s.alive():
            s.proc.kill()
            s.proc.wait()
        # Same port, directory and files: the node rejoins. Its port may
        # still be held for a moment (a late client socket): retry.
        deadline = time.monotonic() + 15
        while True:
            s.spawn()
            while True:
                state = s.poll_start()
                if state != "starting":
                    break
                if time.monotonic() > deadline:
                    raise ValueError("%s did not answer PING within 15 s"
                                     % s.name)
                time.sleep(0.02)
            if state == "ready":
                return s.pid
            if time.monotonic() > deadline:
                raise ValueError("port %d stayed in use" % port)
            time.sleep(0.1)

    def handle(self, line):
        words = line.split()
        try:
            if words == ["ping"]:
                return {"ok": True}
            if len(words) == 2 and words[0] == "restart":
                return {"ok": True, "pid": self.restart(int(words[1]))}
            return {"ok": False, "error": "unknown command: %r" % line}
        except StartError as e:
            return {"ok": False, "error": str(e) + (
                "\n" + e.proc.tail() if e.proc else "")}
        except (ValueError, OSError) as e:
            return {"ok": False, "error": str(e)}

    def reap(self):
        for p in self.procs:
            p.poll()

    # -- the end

    def stop(self):
        live = [p for p in self.procs if p.poll() is None]
        # Sentinels first, so that none reacts to a data node going away.
        sentinel_pids = {s.pid for s in self.sentinels}
        live.sort(key=lambda p: p.pid not in sentinel_pids)
        for p in live:
            try:
                p.terminate()  # by PID; Popen never signals a reaped child
            except OSError:
                pass
        deadline = time.monotonic() + 2
        for p in live:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)


def serve(topo):
    """Reads stdin commands until EOF."""
    buf = b""
    while True:
        topo.reap()  # killed nodes do not stay zombies
        ready, _, _ = select.select([0], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(0, 4096)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.decode(errors="replace").strip()
            if line:
                emit(topo.handle(line))


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(
        description="Start a Redis Cluster or Sentinel set on 127.0.0.1.")
    sub = ap.add_subparsers(dest="kind", required=True)
    c = sub.add_parser("cluster")
    c.add_argument("--tls", action="store_true")
    c.add_argument("--primaries", type=int, default=3)
    c.add_argument("--replicas-per-primary", type=int, default=1)
    s = sub.add_parser("sentinel")
    s.add_argument("--master-name", default="mymaster")
    for p in (c, s):
        p.add_argument("--timeout", type=float, default=60,
                       help="seconds start-up may take (default 60)")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    topo = None
    code = 0
    try:
        started = time.monotonic()
        topo = Topology(args)
        topo.start()
        print("topology.py: %s ready in %.1f s (%s)" % (
            args.kind, time.monotonic() - started, topo.root),
            file=sys.stderr, flush=True)
        emit(topo.describe())
        serve(topo)
    except Stop:
        pass
    except BrokenPipeError:
        pass  # whoever reads stdout went away: stop
    except (StartError, subprocess.TimeoutExpired, OSError) as e:
        print("topology.py: start-up failed: %s" % e, file=sys.stderr)
        if isinstance(e, StartError) and e.proc is not None:
            print(e.proc.tail(), file=sys.stderr)
        sys.stderr.flush()
        code = 1
    finally:
        # No second signal interrupts the cleanup.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        if topo is not None:
            topo.stop()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
