#include "tollgate/redis/transport.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

namespace tollgate::redis {
namespace {

constexpr int64_t kMs = 1000000;  // ns
constexpr int64_t kPingIntervalNs = 1000 * kMs;
constexpr int64_t kFirstBackoffNs = 50 * kMs;
constexpr size_t kReadChunk = 64 * 1024;

// Bumped in every forked child, so a transport notices it is in a new
// process and builds fresh sockets and a fresh I/O thread.
std::atomic<uint64_t> g_fork_generation{0};
void on_fork_child() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}
void register_fork_handler() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, on_fork_child); });
}

std::string errno_text(int err) {
  char buf[128];
  // GNU strerror_r returns the message pointer.
  return std::string(strerror_r(err, buf, sizeof buf));
}

// Writes what a plain socket takes now of `data`, from `off` (advanced):
// 0 when it is all written or the socket would block, else the errno of
// the failure.
int send_now(int fd, std::string_view data, size_t &off) {
  while (off < data.size()) {
    const ssize_t w = send(fd, data.data() + off, data.size() - off,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0) {
      off += static_cast<size_t>(w);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return errno;
  }
  return 0;
}

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool is_ip_literal(const std::string &host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// ---- name resolution -------------------------------------------------------

std::atomic<Resolver> g_resolver{nullptr};

int resolve_flags(const std::string &host, uint16_t port, int flags,
                  std::vector<Endpoint> &out) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | flags;
  addrinfo *res = nullptr;
  const std::string p = std::to_string(port);
  const int rc = getaddrinfo(host.c_str(), p.c_str(), &hints, &res);
  if (rc != 0) return rc;
  for (const addrinfo *a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Endpoint e;
    std::memcpy(&e.addr, a->ai_addr, a->ai_addrlen);
    e.len = a->ai_addrlen;
    out.push_back(e);
  }
  freeaddrinfo(res);
  return out.empty() ? EAI_NONAME : 0;
}

// A host name's resolution, done by a helper thread (see start_resolving).
struct Resolution {
  std::mutex mu;
  bool done = false;
  int rc = 0;
  std::vector<Endpoint> addrs;
};

enum class Kind : uint8_t { user, auth, select, info, load, ping };

struct Request {
  std::string cmd;  // empty for a joinable command until it is sent
  int64_t deadline = 0;
  Completion done = nullptr;
  void *ctx = nullptr;
  const Joiner *joiner = nullptr;  // set: joinable, ctx is its part
  uint32_t parts = 1;              // commands it carries (joined: several)
};

// Gives a joinable command its own text, unless it has it already.
void materialize(Request &r) {
  if (r.joiner && r.cmd.empty()) r.joiner->single(r.ctx, r.cmd);
}

struct InFlight {
  Completion done;
  void *ctx;
  int64_t deadline;
  int64_t sent_ns;
  Kind kind;
  bool finished;
  uint32_t parts = 1;
};

enum class Phase { down, resolving, tcp, tls, hello, ready };

struct Conn {
  int fd = -1;
  SSL *ssl = nullptr;
  Phase phase = Phase::down;
  std::string wbuf;
  size_t wpos = 0;
  std::unique_ptr<Reader> reader;
  std::deque<InFlight> inflight;
  int64_t phase_deadline = 0;
  std::shared_ptr<Resolution> resolving;  // Phase::resolving
  std::vector<Endpoint> addrs;            // the addresses to try, in order
  size_t next_addr = 0;
  int64_t retry_at = 0;
  int attempts = 0;
  bool ever_ready = false;
  bool tls_wants_write = false;
  uint32_t events = 0;
  int handshake_left = 0;
  // Set by a caller that found the connection broken on the direct path;
  // the I/O thread fails the connection when it takes it back.
  bool broken = false;
  Errc broken_code = Errc::connect;
  std::string broken_msg;
};

// The write side of a connection the I/O thread owns, shared with callers
// that write queued commands themselves while the I/O thread awaits
// replies (Core::caller_write). Under `mu`: writes to the socket, the
// connection's write buffer and in-flight list (Conn::wbuf, Conn::inflight
// appends), `handed` and `open`. The bytes on the socket are always the
// commands of Conn::inflight, then those of `handed`, in order; the I/O
// thread moves `handed` to Conn::inflight (absorb) before it appends, reads
// replies, times commands out or closes the connection.
struct WriteSide {
  std::mutex mu;
  std::vector<InFlight> handed;  // written by callers, not yet absorbed
  bool open = false;             // ready, plain TCP, owned by the I/O thread
  // Users' commands in Conn::inflight that the I/O thread times out, as of
  // its last look: while there are any, it wakes by itself (a reply or
  // their deadline, which comes before that of anything a caller adds) and
  // then absorbs.
  std::atomic<uint32_t> io_known{0};
};

// Who may touch a connection (Core::owner). The I/O thread owns every
// connection, and lends an idle one (ready, nothing in flight) so that a
// blocking caller can carry its own command without two thread hand-offs:
//   io -> idle            I/O thread lends it (store, release)
//   idle -> io            I/O thread takes it back (CAS)
//   idle -> caller        a blocking caller borrows it (CAS)
//   caller -> idle        the caller is done and it is still clean
//   caller -> returned    the caller left a late reply or a broken socket
//   returned -> io        I/O thread takes it back (CAS) and deals with it
enum Owner : int { kOwnIo = 0, kOwnIdle = 1, kOwnCaller = 2, kOwnReturned = 3 };

void finish(Completion done, void *ctx, Errc code, const std::string &msg) {
  CallResult r;
  r.code = code;
  r.message = msg;
  done(ctx, std::move(r));
}

}  // namespace

int64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// What every Core of one Transport shares: the settings and the TLS
// context (validated once, at creation).
struct Transport::Shared {
  Settings settings;
  std::vector<std::string> preload;
  SSL_CTX *ssl_ctx = nullptr;
  ~Shared() {
    if (ssl_ctx) SSL_CTX_free(ssl_ctx);
  }
};

// One process's connections and I/O thread.
struct Transport::Core {
  explicit Core(std::shared_ptr<Shared> sh)
      : shared(std::move(sh)),
        s(shared->settings),
        generation(g_fork_generation.load()) {
    conns.resize(s.connections ? s.connections : 1);
    owner = std::make_unique<std::atomic<int>[]>(conns.size());
    ws = std::make_unique<WriteSide[]>(conns.size());
    for (size_t i = 0; i < conns.size(); ++i) owner[i].store(kOwnIo);
    // TLS stays on the I/O thread: SSL_write on a caller's thread could
    // raise SIGPIPE there (the I/O thread blocks it).
    direct_ok = !s.tls.enabled;
    std::random_device rd;
    rng.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  }
  ~Core() { shutdown(); }

  std::shared_ptr<Shared> shared;
  const Settings &s;
  uint64_t generation;

  // Shared with submitters, under `mu`.
  mutable std::mutex mu;
  std::vector<Request> queue;
  bool stopping = false;
  bool started = false;
  Errc down_code = Errc::connect;
  std::string down_message;
  TransportStats stats;
  std::atomic<int32_t> state{static_cast<int32_t>(ConnState::connecting)};
  std::atomic<uint32_t> in_flight{0};
  // The commands (joined ones counted by their parts) whose reply the I/O
  // thread awaits: while there are any, it wakes by itself (a reply, or a
  // deadline). See submit.
  std::atomic<uint32_t> io_waits{0};
  // How long a lone reply kept its waiter waiting (a blocking caller, or
  // the I/O thread with one reply awaited), smoothed (1/8 per sample, a
  // sample at most 4 x spin_us). Waiters spin only while this is within
  // spin_us: on a network whose round trip is longer, the spin would not
  // catch the reply, so nobody spins. Relaxed: a lost update only nudges
  // a heuristic.
  std::atomic<int64_t> lone_wait_ns{0};

  bool spin_pays(int64_t spin_ns) const {
    return spin_ns > 0 &&
           lone_wait_ns.load(std::memory_order_relaxed) <= spin_ns;
  }

  // Between two polls of a spin. Past its first kYieldAfterNs a spinner
  // yields its CPU between polls: the scheduler often puts redis-server
  // (woken by the command) on the spinner's CPU, where a spinner that
  // never yields holds it up until the spin ends. On the 2-vCPU guest of
  // docs/benchmarks.md, a 200 us spin without yielding left 4-6% of
  // sequential checks waiting the whole spin plus about 80 us (p99 283
  // us); yielding after 30 us brought p99 to about 125 us, p50 unchanged
  // (about 50 us). Yielding from the first poll cost about 20 us at p50.
  static constexpr int64_t kYieldAfterNs = 30000;
  static void spin_pause(int64_t spun_ns) {
    if (spun_ns >= kYieldAfterNs) sched_yield();
  }

  void note_lone_wait(int64_t waited_ns, int64_t spin_ns) {
    const int64_t x = std::min(waited_ns, 4 * spin_ns);
    const int64_t e = lone_wait_ns.load(std::memory_order_relaxed);
    lone_wait_ns.store(e + (x - e) / 8, std::memory_order_relaxed);
  }

  int wake_fd = -1;
  int ep_fd = -1;
  std::thread thread;

  // The direct path (see Owner).
  std::unique_ptr<std::atomic<int>[]> owner;
  std::unique_ptr<WriteSide[]> ws;
  std::atomic<bool> want_conn{false};    // I/O thread waits for a lent conn
  std::atomic<bool> io_sleeping{false};  // in (or about to be in) epoll_wait
  std::atomic<uint32_t> direct_rr{0};
  std::atomic<uint32_t> rr_hint{0};
  std::atomic<uint64_t> caller_written{0};
  std::atomic<uint64_t> spun_waits{0};
  bool direct_ok = true;

  // The I/O thread's own.
  std::vector<Conn> conns;
  std::deque<Request> waiting;  // while no connection is ready
  std::vector<void *> join_parts;
  size_t rr = 0;
  int64_t next_ping = 0;
  int64_t next_deadline = INT64_MAX;
  std::mt19937_64 rng;

  void start() {  // under mu
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ep_fd = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = 0;
    epoll_ctl(ep_fd, EPOLL_CTL_ADD, wake_fd, &ev);
    thread = std::thread([this] { run(); });
    started = true;
  }

  void wake() {
    const uint64_t one = 1;
    ssize_t n;
    do {
      n = write(wake_fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
  }

  void shutdown() {
    bool join = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) return;
      stopping = true;
      join = started;
    }
    if (join) {
      wake();
      thread.join();
    }
    std::vector<Request> left;
    {
      std::lock_guard<std::mutex> lock(mu);
      left.swap(queue);
    }
    for (Request &r : left)
      finish(r.done, r.ctx, Errc::closed, "closed: the limiter was destroyed");
    if (wake_fd >= 0) close(wake_fd);
    if (ep_fd >= 0) close(ep_fd);
  }

  void submit(Request r) {
    if (state.load(std::memory_order_acquire) ==
        static_cast<int32_t>(ConnState::down)) {
      Errc code;
      std::string msg;
      {
        std::lock_guard<std::mutex> lock(mu);
        code = down_code;
        msg = down_message;
      }
      finish(r.done, r.ctx, code, msg);
      return;
    }
    bool closed = false;
    size_t queued = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) {
        closed = true;
      } else {
        if (!started) start();
        queue.push_back(std::move(r));
        queued = queue.size();
      }
    }
    if (closed) {
      finish(r.done, r.ctx, Errc::closed, "closed: the limiter was destroyed");
      return;
    }
    // Only a sleeping I/O thread is woken, once: commands queued while it
    // is busy ride along in its next write (auto-pipelining), and it looks
    // at the queue again before it sleeps. While it awaits replies, it is
    // woken only once as many commands are queued as are in flight (the
    // queue is due, due_locked); it wakes for the replies (or their
    // deadline) anyway, and sends a due queue in one write, joined
    // (Joiner). Under load this keeps about two joined calls in flight, one
    // in Redis while the callers work on the other's answers, and saves a
    // thread wake-up (on a VM as costly as a round trip) per command. A
    // queued command waits at most for the replies in flight.
    if (queued < io_waits.load()) return;
    // The batch is due. While the I/O thread awaits replies on a plain
    // connection, this thread writes it (no wake-up, which on a VM costs
    // about a round trip); otherwise the I/O thread is woken to send it.
    if (caller_write()) return;
    if (io_sleeping.load() && io_sleeping.exchange(false)) wake();
  }

  // ---- I/O thread --------------------------------------------------------

  // The queue is due (see submit): as many commands queued as in flight.
  // Until then the I/O thread leaves it for the callers to fill, also when
  // a reply wakes it: sending whatever was queued at that moment split the
  // callers' checks into calls of about 17 at 64 in flight, where Redis
  // spends about 1 us more per check than in calls of 32 (docs/redis.md,
  // "Joined checks"). Each reply read lowers the count in flight, so a
  // queued command still waits at most for the replies in flight. With mu
  // held.
  bool due_locked() const {
    return !queue.empty() && queue.size() >= io_waits.load();
  }

  void run() {
    // SIGPIPE from a write to a dead TLS connection stays pending on this
    // thread instead of killing the host process.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    const int64_t now0 = monotonic_ns();
    for (size_t i = 0; i < conns.size(); ++i) start_connect(i, now0);
    std::vector<Request> batch, joined;
    epoll_event evs[32];
    const int64_t spin_ns = static_cast<int64_t>(s.spin_us) * 1000;
    for (;;) {
      // Announce the sleep, then look at the queue: a submitter that pushes
      // after this look sees io_sleeping and wakes us (see submit).
      io_sleeping.store(true);
      // What callers wrote meanwhile becomes ours (its deadlines count for
      // the sleep below); from here until the wake-up, io_known is exact.
      if (direct_ok)
        for (size_t i = 0; i < conns.size(); ++i)
          if (owned(i)) absorb(i);  // a lent one has nothing handed
      bool pending;
      {
        std::lock_guard<std::mutex> lock(mu);
        pending = due_locked() || stopping;
      }
      int n;
      // One reply awaited, nothing else to do: a lone caller waits for it
      // (a sequential async check).
      const bool lone = !pending && spin_ns > 0 && io_waits.load() == 1;
      const int64_t wait_from = lone ? monotonic_ns() : 0;
      if (lone && spin_pays(spin_ns)) {
        spun_waits.fetch_add(1, std::memory_order_relaxed);
        // Poll for up to spin_us before sleeping, so that the reply does
        // not also wait for this thread's wake-up (on a VM as costly as
        // the round trip). A submitter still writes the eventfd
        // (io_sleeping), which ends the spin.
        const int64_t until = wait_from + spin_ns;
        for (int64_t t = wait_from;;) {
          n = epoll_wait(ep_fd, evs, 32, 0);
          if (n != 0 || (t = monotonic_ns()) >= until) break;
          spin_pause(t - wait_from);
        }
        if (n == 0) n = epoll_wait(ep_fd, evs, 32, timeout_ms(monotonic_ns()));
      } else {
        n = epoll_wait(ep_fd, evs, 32,
                       pending ? 0 : timeout_ms(monotonic_ns()));
      }
      io_sleeping.store(false);
      int64_t now = monotonic_ns();
      if (lone)
        for (int i = 0; i < n; ++i)
          if (evs[i].data.u32 != 0) {  // a connection, not a submitter
            note_lone_wait(now - wait_from, spin_ns);
            break;
          }
      want_conn.store(false);
      reclaim(now);
      for (int i = 0; i < n; ++i) {
        if (evs[i].data.u32 == 0) {
          uint64_t v;
          while (read(wake_fd, &v, sizeof v) > 0) {
          }
          continue;
        }
        const size_t ci = evs[i].data.u32 - 1;
        if (owned(ci)) on_io(ci, evs[i].events, now);
      }
      for (size_t i = 0; i < conns.size(); ++i)
        if (conns[i].phase == Phase::resolving && owned(i))
          check_resolution(i, now);
      if (!waiting.empty()) redispatch_waiting(now);
      bool stop;
      {
        std::lock_guard<std::mutex> lock(mu);
        stop = stopping;
        if (stop || due_locked()) batch.swap(queue);
      }
      if (stop) {
        for (Request &r : batch) queue.push_back(std::move(r));
        close_all();
        return;
      }
      now = monotonic_ns();
      join_runs(batch, joined, now, join_parts);
      for (Request &r : joined) dispatch(std::move(r), now);
      joined.clear();
      batch.clear();
      if (want_conn.load()) {
        // Parked behind a lent connection: a caller that returned it
        // before seeing want_conn did not wake us, so look again.
        reclaim(now);
        redispatch_waiting(now);
      }
      timers(now);
      for (size_t i = 0; i < conns.size(); ++i)
        if (owned(i)) flush(i, now);
      lend_idle();
      publish_state();
    }
  }

  // ---- lending connections to blocking callers ----------------------------

  bool owned(size_t i) const {
    return owner[i].load(std::memory_order_relaxed) == kOwnIo;
  }

  // Takes back every idle or returned connection.
  void reclaim(int64_t now) {
    for (size_t i = 0; i < conns.size(); ++i) {
      int v = owner[i].load();
      if (v != kOwnIdle && v != kOwnReturned) continue;
      if (!owner[i].compare_exchange_strong(v, kOwnIo)) continue;  // borrowed
      Conn &c = conns[i];
      if (c.broken) {
        c.broken = false;
        conn_failed(i, c.broken_code, c.broken_msg, now);
      } else if (c.fd >= 0) {
        // An async borrower's command awaits its reply (and maybe the rest
        // of its bytes in wbuf): its deadline is ours now.
        for (const InFlight &f : c.inflight)
          if (f.kind == Kind::user && !f.finished) note_deadline(f.deadline);
        watch(i, c.wbuf.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT);
        // Bytes a borrower read past its reply (a late reply it gave up on,
        // or one nobody asked for) are judged now, not at the next read.
        if (!c.reader->idle()) drain_replies(i, now);
      }
    }
  }

  // Lends every idle ready connection. While lent, only the peer closing
  // (EPOLLRDHUP) wakes this thread, not the borrowers' replies.
  void lend_idle() {
    if (!direct_ok || !waiting.empty()) return;
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn &c = conns[i];
      if (!owned(i) || c.phase != Phase::ready || c.fd < 0) continue;
      // Under the write lock: not while a caller's commands are being
      // written or await their replies, and once lent no caller writes
      // here (a caller checks the owner under this lock).
      std::lock_guard<std::mutex> lock(ws[i].mu);
      if (!c.inflight.empty() || !c.wbuf.empty() || c.tls_wants_write ||
          !c.reader->idle() || !ws[i].handed.empty())
        continue;
      ws[i].io_known.store(0, std::memory_order_relaxed);
      watch(i, EPOLLRDHUP);
      owner[i].store(kOwnIdle, std::memory_order_release);
    }
  }

  void redispatch_waiting(int64_t now) {
    std::deque<Request> w;
    w.swap(waiting);
    for (Request &r : w) dispatch(std::move(r), now);
  }

  // The caller's side: carries `r` on a borrowed idle connection and runs
  // its completion on this thread. False (r untouched) if no connection
  // was idle or the borrowed one turned out closed before anything was
  // sent: the caller then queues it.
  bool try_direct(Request &r, bool wait) {
    if (!direct_ok || state.load(std::memory_order_acquire) !=
                          static_cast<int32_t>(ConnState::ready))
      return false;
    const size_t n = conns.size();
    const size_t start = direct_rr.fetch_add(1, std::memory_order_relaxed);
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (start + k) % n;
      int v = kOwnIdle;
      if (owner[i].compare_exchange_strong(v, kOwnCaller)) {
        materialize(r);
        return wait ? direct(i, r) : direct_send(i, r);
      }
    }
    return false;
  }

  // A borrower's first step: a peer that closed the idle connection shows
  // as EOF (or stray bytes) before we write, and then nothing is lost by
  // queueing instead. False: the connection was handed back.
  bool probe_borrowed(size_t i) {
    Conn &c = conns[i];
    char probe;
    const ssize_t pn = recv(c.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (pn == 0 ||
        (pn < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      give_back_broken(i, Errc::connect,
                       pn == 0 ? closed_text(c) : "read: " + errno_text(errno));
      return false;
    }
    if (pn > 0) {  // bytes nobody asked for: the I/O thread sorts it out
      give_back(i, kOwnReturned);
      return false;
    }
    return true;
  }

  // The async caller's side: writes `r` on the borrowed idle connection
  // (never waiting: what the socket does not take goes to the write
  // buffer) and hands the connection back to the I/O thread, which reads
  // the reply and runs the completion. The command leaves at once; the I/O
  // thread wakes up while Redis works.
  bool direct_send(size_t i, Request &r) {
    if (!probe_borrowed(i)) return false;
    Conn &c = conns[i];
    size_t off = 0;
    const int err = send_now(c.fd, r.cmd, off);
    if (err != 0 && off == 0) {  // nothing sent: the caller queues it instead
      give_back_broken(i, Errc::connect, "write: " + errno_text(err));
      return false;
    }
    // The rest (would block, or an error the I/O thread's flush meets again
    // and fails the connection with) goes to the write buffer.
    if (off < r.cmd.size()) c.wbuf.append(r.cmd, off, std::string::npos);
    c.inflight.push_back(
        InFlight{r.done, r.ctx, r.deadline, monotonic_ns(), Kind::user, false});
    in_flight.fetch_add(1, std::memory_order_relaxed);
    io_waits.fetch_add(1);
    give_back(i, kOwnReturned);  // wakes the I/O thread to read the reply
    return true;
  }

  // Gives a borrowed connection back.
  void give_back(size_t i, int to) {
    owner[i].store(to);
    if (to == kOwnReturned || want_conn.load()) wake();
  }

  void give_back_broken(size_t i, Errc code, std::string msg) {
    Conn &c = conns[i];
    c.broken = true;
    c.broken_code = code;
    c.broken_msg = std::move(msg);
    give_back(i, kOwnReturned);
  }

  bool direct(size_t i, Request &r) {
    if (!probe_borrowed(i)) return false;
    Conn &c = conns[i];
    in_flight.fetch_add(1, std::memory_order_relaxed);
    const int64_t sent_ns = monotonic_ns();
    size_t off = 0;
    CallResult res;
    bool timed_out = false;
    for (;;) {
      const int err = send_now(c.fd, r.cmd, off);
      if (err != 0) {
        const std::string why = "write: " + errno_text(err);
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        give_back_broken(i, Errc::connect, why);
        if (off == 0) return false;  // nothing left: queue it instead
        finish(r.done, r.ctx, Errc::connect, "connection lost: " + why);
        return true;
      }
      if (off == r.cmd.size()) break;
      if (!wait_fd(c.fd, POLLOUT, r.deadline)) {
        timed_out = true;
        break;
      }
    }
    std::unique_ptr<Reply> reply;
    char buf[4096];
    // Before sleeping in poll, spin (retrying the read) up to spin_us: on a
    // VM an idle vCPU's wake-up costs tens of microseconds, about as much
    // as a loopback round trip. Bounded, and only on this path (a caller
    // that would otherwise sleep with nothing else to do).
    const int64_t spin_ns = static_cast<int64_t>(s.spin_us) * 1000;
    int64_t wait_from = -1;  // when the first read found nothing
    int64_t spin_until = -1;
    while (!timed_out) {
      const Reader::Status st = c.reader->next(reply);
      if (st == Reader::Status::reply) break;
      if (st == Reader::Status::error) {
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        const std::string why = c.reader->error();
        give_back_broken(i, Errc::protocol, why);
        finish(r.done, r.ctx, Errc::protocol, "connection lost: " + why);
        return true;
      }
      const ssize_t got = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (got > 0) {
        if (!c.reader->feed(buf, static_cast<size_t>(got))) {
          in_flight.fetch_sub(1, std::memory_order_relaxed);
          const std::string why = c.reader->error();
          give_back_broken(i, Errc::protocol, why);
          finish(r.done, r.ctx, Errc::protocol, "connection lost: " + why);
          return true;
        }
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        const std::string why =
            got == 0 ? closed_text(c) : "read: " + errno_text(errno);
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        give_back_broken(i, Errc::connect, why);
        finish(r.done, r.ctx, Errc::connect, "connection lost: " + why);
        return true;
      }
      if (wait_from < 0) {
        wait_from = monotonic_ns();
        if (spin_pays(spin_ns)) {
          spun_waits.fetch_add(1, std::memory_order_relaxed);
          spin_until = std::min(wait_from + spin_ns, r.deadline);
        }
      }
      if (spin_until >= 0) {
        const int64_t t = monotonic_ns();
        if (t < spin_until) {
          spin_pause(t - wait_from);
          continue;
        }
      }
      if (!wait_fd(c.fd, POLLIN, r.deadline)) timed_out = true;
    }
    if (wait_from >= 0 && !timed_out && spin_ns > 0)
      note_lone_wait(monotonic_ns() - wait_from, spin_ns);
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (timed_out) {
      // The reply may still come: the I/O thread consumes and drops it.
      if (off < r.cmd.size()) {
        give_back_broken(i, Errc::timeout,
                         "timeout: a command was cut off mid-write");
      } else {
        c.inflight.push_back(
            InFlight{nullptr, nullptr, INT64_MAX, sent_ns, Kind::user, true});
        give_back(i, kOwnReturned);
      }
      finish(r.done, r.ctx, Errc::timeout,
             "timeout: " + where() + " did not answer before the deadline");
      return true;
    }
    if (c.reader->idle())
      give_back(i, kOwnIdle);
    else  // more than one reply's worth of bytes: let the I/O thread judge
      give_back(i, kOwnReturned);
    res.reply = std::move(reply);
    r.done(r.ctx, std::move(res));
    return true;
  }

  // Waits until `fd` is ready for `events` or the deadline passes.
  static bool wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
      const int64_t left = deadline - monotonic_ns();
      if (left <= 0) return false;
      pollfd p{fd, events, 0};
      const int rc = poll(
          &p, 1,
          static_cast<int>(std::min<int64_t>((left + kMs - 1) / kMs, 1 << 30)));
      if (rc > 0) return true;  // ready, or an error the next call reports
      if (rc < 0 && errno != EINTR) return true;
    }
  }

  int timeout_ms(int64_t now) const {
    int64_t next = std::min(next_deadline, next_ping);
    for (const Conn &c : conns) {
      if (c.phase == Phase::down)
        next = std::min(next, c.retry_at);
      else if (c.phase != Phase::ready)
        next = std::min(next, c.phase_deadline);
    }
    if (next == INT64_MAX) return 1000;
    const int64_t wait = next - now;
    if (wait <= 0) return 0;
    return static_cast<int>(std::min<int64_t>((wait + kMs - 1) / kMs, 1000));
  }

  void publish_state() {
    ConnState st = ConnState::down;
    for (const Conn &c : conns) {
      if (c.phase == Phase::ready) {
        st = ConnState::ready;
        break;
      }
      if (c.phase != Phase::down) st = ConnState::connecting;
    }
    state.store(static_cast<int32_t>(st), std::memory_order_release);
    std::lock_guard<std::mutex> lock(mu);
    stats.state = st;
  }

  void set_error(Errc code, const std::string &msg) {
    std::lock_guard<std::mutex> lock(mu);
    down_code = code;
    down_message = msg;
    stats.last_error = msg;
  }

  void note_deadline(int64_t d) { next_deadline = std::min(next_deadline, d); }

  // The commands awaiting a reply that this thread times out: users'
  // commands not yet answered. (A late reply owed to a caller that gave up,
  // or a ping, has no deadline here, so it does not count: it is no promise
  // that this thread wakes in time for what a caller adds behind it.)
  static uint32_t timed(const Conn &c) {
    uint32_t n = 0;
    for (const InFlight &f : c.inflight)
      n += f.kind == Kind::user && !f.finished;
    return n;
  }

  // Moves what callers wrote (WriteSide::handed) to the in-flight list.
  // Under ws[i].mu.
  void absorb_locked(size_t i) {
    WriteSide &w = ws[i];
    Conn &c = conns[i];
    for (const InFlight &f : w.handed) {
      note_deadline(f.deadline);
      c.inflight.push_back(f);
    }
    w.handed.clear();
    w.io_known.store(timed(c), std::memory_order_relaxed);
  }

  void absorb(size_t i) {
    std::lock_guard<std::mutex> lock(ws[i].mu);
    absorb_locked(i);
  }

  // A caller's side: while the I/O thread awaits replies on a plain
  // connection with nothing waiting to be written, takes the whole queue,
  // joins it and writes it on that connection itself; the I/O thread
  // absorbs the commands when it next wakes (for a reply, or the deadline
  // of one it knows). False if no connection qualifies.
  bool caller_write() {
    if (!direct_ok) return false;
    const size_t n = conns.size();
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (rr_hint.fetch_add(1, std::memory_order_relaxed)) % n;
      WriteSide &w = ws[i];
      if (w.io_known.load(std::memory_order_relaxed) == 0) continue;
      std::unique_lock<std::mutex> wlock(w.mu, std::try_to_lock);
      if (!wlock.owns_lock()) continue;
      Conn &c = conns[i];
      // The owner first: only lend_idle, under this lock, moves a
      // connection away from the I/O thread, and a borrower's buffers are
      // its own.
      if (owner[i].load() != kOwnIo || !w.open ||
          w.io_known.load(std::memory_order_relaxed) == 0 || c.fd < 0 ||
          !c.wbuf.empty())
        continue;
      std::vector<Request> batch, joined, expired;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping) return false;
        batch.swap(queue);
      }
      if (batch.empty()) return true;
      const int64_t now = monotonic_ns();
      std::vector<void *> scratch;
      // Completions never run under the write lock: late parts are
      // answered after it is released.
      join_runs(batch, joined, now, scratch, &expired);
      std::string out;
      uint32_t parts = 0;
      const size_t before = w.handed.size();
      for (Request &r : joined) {
        materialize(r);
        out += r.cmd;
        w.handed.push_back(InFlight{r.done, r.ctx, r.deadline, now, Kind::user,
                                    false, r.parts});
        parts += r.parts;
      }
      in_flight.fetch_add(static_cast<uint32_t>(w.handed.size() - before),
                          std::memory_order_relaxed);
      caller_written.fetch_add(w.handed.size() - before,
                               std::memory_order_relaxed);
      io_waits.fetch_add(parts);
      size_t off = 0;
      send_now(c.fd, out, off);
      // The rest (would block, or an error the I/O thread's write meets
      // again) goes to the write buffer; the I/O thread writes it (or fails
      // the connection, answering these commands).
      const bool rest = off < out.size();
      if (rest) c.wbuf.append(out, off, std::string::npos);
      wlock.unlock();
      for (Request &r : expired)
        finish(r.done, r.ctx, Errc::timeout,
               "timeout: the deadline passed before the command was sent");
      if (rest) {
        io_sleeping.store(false);
        wake();
      }
      return true;
    }
    return false;
  }

  // Moves `batch` into `out`, joining each run of joinable commands with
  // the same joiner (see Joiner) into as few commands as it takes. A part
  // whose deadline has passed is answered at once, as dispatch would.
  // `expired`: where parts past their deadline go (to be answered by the
  // caller) instead of being answered here.
  void join_runs(std::vector<Request> &batch, std::vector<Request> &out,
                 int64_t now, std::vector<void *> &parts,
                 std::vector<Request> *expired = nullptr) {
    size_t i = 0;
    while (i < batch.size()) {
      const Joiner *j = batch[i].joiner;
      size_t end = i + 1;
      while (j && end < batch.size() && batch[end].joiner == j) ++end;
      if (end - i < 2) {
        out.push_back(std::move(batch[i]));
        i = end;
        continue;
      }
      // [i, end): one run. Its live parts, in order.
      size_t live = i;
      for (size_t k = i; k < end; ++k) {
        if (batch[k].deadline <= now) {
          if (expired)
            expired->push_back(std::move(batch[k]));
          else
            finish(batch[k].done, batch[k].ctx, Errc::timeout,
                   "timeout: the deadline passed before the command was sent");
          continue;
        }
        if (live != k) batch[live] = std::move(batch[k]);
        ++live;
      }
      size_t k = i;
      while (k < live) {
        if (live - k == 1) {
          out.push_back(std::move(batch[k]));
          break;
        }
        parts.clear();
        const size_t take = std::min(live - k, kMaxJoin);
        for (size_t m = 0; m < take; ++m) parts.push_back(batch[k + m].ctx);
        Request joined;
        const size_t got = j->join(std::span<void *const>(parts.data(), take),
                                   joined.cmd, joined.done, joined.ctx);
        joined.deadline = INT64_MAX;
        joined.parts = static_cast<uint32_t>(got);
        for (size_t m = 0; m < got; ++m)
          joined.deadline = std::min(joined.deadline, batch[k + m].deadline);
        out.push_back(std::move(joined));
        k += got;
      }
      i = end;
    }
  }

  void dispatch(Request r, int64_t now) {
    if (r.deadline <= now) {
      finish(r.done, r.ctx, Errc::timeout,
             "timeout: the deadline passed before the command was sent");
      return;
    }
    const size_t n = conns.size();
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (rr + k) % n;
      if (conns[i].phase == Phase::ready && owned(i)) {
        rr = i + 1;
        send_on(i, std::move(r), Kind::user, now);
        return;
      }
    }
    for (size_t i = 0; i < n; ++i) {
      // A connection is being made, or lent to a blocking caller: wait.
      if (conns[i].phase != Phase::down) {
        if (!owned(i)) want_conn.store(true);
        note_deadline(r.deadline);
        waiting.push_back(std::move(r));
        return;
      }
    }
    Errc code;
    std::string msg;
    {
      std::lock_guard<std::mutex> lock(mu);
      code = down_code;
      msg = down_message;
    }
    finish(r.done, r.ctx, code, msg);
  }

  void send_on(size_t i, Request r, Kind kind, int64_t now) {
    Conn &c = conns[i];
    materialize(r);
    {
      std::lock_guard<std::mutex> lock(ws[i].mu);
      absorb_locked(i);
      c.wbuf += r.cmd;
      c.inflight.push_back(
          InFlight{r.done, r.ctx, r.deadline, now, kind, false, r.parts});
      ws[i].io_known.store(timed(c), std::memory_order_relaxed);
    }
    if (kind == Kind::user) {
      in_flight.fetch_add(1, std::memory_order_relaxed);
      io_waits.fetch_add(r.parts);
      note_deadline(r.deadline);
    }
  }

  void send_internal(size_t i, std::vector<std::string_view> argv, Kind kind,
                     int64_t now) {
    Request r;
    format_command(argv, r.cmd);
    r.deadline = INT64_MAX;
    send_on(i, std::move(r), kind, now);
  }

  // ---- connecting ----------------------------------------------------------

  int64_t backoff_ns(int attempts) {
    const int64_t cap =
        static_cast<int64_t>(s.reconnect_max_ms ? s.reconnect_max_ms : 2000) *
        kMs;
    int64_t d = kFirstBackoffNs;
    for (int k = 1; k < attempts && d < cap; ++k) d *= 2;
    d = std::min(d, cap);
    // Jitter in [d/2, d]: processes that lost Redis together do not all
    // come back in the same millisecond.
    return d / 2 +
           static_cast<int64_t>(rng() % static_cast<uint64_t>(d / 2 + 1));
  }

  void watch(size_t i, uint32_t events) {
    Conn &c = conns[i];
    if (c.events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u32 = static_cast<uint32_t>(i + 1);
    epoll_ctl(ep_fd, c.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
    c.events = events;
  }

  void start_connect(size_t i, int64_t now) {
    Conn &c = conns[i];
    c.phase_deadline =
        now + static_cast<int64_t>(s.connect_timeout_ms ? s.connect_timeout_ms
                                                        : 1000) *
                  kMs;
    c.addrs.clear();
    c.next_addr = 0;
    if (s.unix_socket) {
      sockaddr_un un{};
      un.sun_family = AF_UNIX;
      if (s.path.size() >= sizeof un.sun_path) {
        conn_failed(i, Errc::connect, "connect: unix socket path too long",
                    now);
        return;
      }
      std::memcpy(un.sun_path, s.path.data(), s.path.size());
      Endpoint e;
      std::memcpy(&e.addr, &un, sizeof un);
      e.len = sizeof un;
      c.addrs.push_back(e);
      connect_next(i, now);
      return;
    }
    if (is_ip_literal(s.host)) {  // no lookup: resolved here
      const int rc = resolve_flags(s.host, s.port, AI_NUMERICHOST, c.addrs);
      if (rc != 0) {
        conn_failed(i, Errc::connect,
                    "connect: cannot resolve host '" + s.host +
                        "': " + gai_strerror(rc),
                    now);
        return;
      }
      connect_next(i, now);
      return;
    }
    start_resolving(i, now);
  }

  // A host name is looked up on a helper thread of its own, never on this
  // one: a resolver that takes seconds (a DNS server that does not answer)
  // must not hold up every other deadline. The helper writes its own copy
  // of the wake-up eventfd when done, so it may outlive the transport; the
  // connection's deadline (connect_timeout_ms) covers the lookup.
  void start_resolving(size_t i, int64_t now) {
    Conn &c = conns[i];
    if (c.resolving) {  // the previous attempt's lookup, maybe done
      c.phase = Phase::resolving;
      check_resolution(i, now);
      return;
    }
    auto r = std::make_shared<Resolution>();
    const int fd = fcntl(wake_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      conn_failed(i, Errc::connect, "connect: dup: " + errno_text(errno), now);
      return;
    }
    const Resolver custom = g_resolver.load();
    try {
      std::thread([r, fd, custom, host = s.host, port = s.port] {
        std::vector<Endpoint> found;
        const int rc = custom ? custom(host, port, found)
                              : resolve_flags(host, port, 0, found);
        {
          std::lock_guard<std::mutex> lock(r->mu);
          r->rc = rc;
          r->addrs = std::move(found);
          r->done = true;
        }
        const uint64_t one = 1;
        ssize_t n;
        do {
          n = write(fd, &one, sizeof one);
        } while (n < 0 && errno == EINTR);
        close(fd);
      }).detach();
    } catch (const std::exception &e) {
      close(fd);
      conn_failed(
          i, Errc::connect,
          std::string("connect: cannot start a resolver thread: ") + e.what(),
          now);
      return;
    }
    c.resolving = std::move(r);
    c.phase = Phase::resolving;
  }

  // A finished lookup (after a wake-up) moves on to connecting.
  void check_resolution(size_t i, int64_t now) {
    Conn &c = conns[i];
    int rc;
    std::vector<Endpoint> found;
    {
      std::lock_guard<std::mutex> lock(c.resolving->mu);
      if (!c.resolving->done) return;
      rc = c.resolving->rc;
      found = std::move(c.resolving->addrs);
    }
    c.resolving.reset();
    if (rc != 0 || found.empty()) {
      conn_failed(i, Errc::connect,
                  "connect: cannot resolve host '" + s.host +
                      "': " + (rc != 0 ? gai_strerror(rc) : "no address"),
                  now);
      return;
    }
    c.addrs = std::move(found);
    c.next_addr = 0;
    connect_next(i, now);
  }

  // Connects to the addresses left, in order, until one connects or is in
  // progress; a host whose first address refuses (say ::1, where Redis
  // listens on 127.0.0.1 only) is reached on the next. With none left the
  // connection failed, with the last address's error.
  void connect_next(size_t i, int64_t now) {
    Conn &c = conns[i];
    std::string last = "no address";
    while (c.next_addr < c.addrs.size()) {
      const Endpoint &e = c.addrs[c.next_addr++];
      const int family = e.addr.ss_family;
      c.fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) {
        last = "socket: " + errno_text(errno);
        continue;
      }
      if (family != AF_UNIX) {
        const int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      c.events = 0;
      int rc;
      do {
        rc = connect(c.fd, reinterpret_cast<const sockaddr *>(&e.addr), e.len);
      } while (rc < 0 && errno == EINTR);
      if (rc == 0 || errno == EINPROGRESS || errno == EAGAIN) {
        c.reader = std::make_unique<Reader>();
        c.wbuf.clear();
        c.wpos = 0;
        c.phase = Phase::tcp;
        watch(i, EPOLLOUT | EPOLLIN);
        return;
      }
      last = errno_text(errno);
      close(c.fd);
      c.fd = -1;
    }
    conn_failed(i, Errc::connect, "connect: " + where() + ": " + last, now);
  }

  std::string where() const {
    return s.unix_socket ? s.path : s.host + ":" + std::to_string(s.port);
  }

  void tcp_connected(size_t i, int64_t now) {
    Conn &c = conns[i];
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 && c.next_addr < c.addrs.size()) {
      // This address failed; the next one, within the same deadline.
      close_conn(c);
      connect_next(i, now);
      return;
    }
    if (err != 0) {
      conn_failed(i, Errc::connect,
                  "connect: " + where() + ": " + errno_text(err), now);
      return;
    }
    if (s.tls.enabled) {
      c.ssl = SSL_new(shared->ssl_ctx);
      if (!c.ssl) {
        conn_failed(i, Errc::tls, "tls: " + openssl_errors(), now);
        return;
      }
      SSL_set_fd(c.ssl, c.fd);
      const std::string &name =
          s.tls.server_name.empty() ? s.host : s.tls.server_name;
      if (!is_ip_literal(name)) SSL_set_tlsext_host_name(c.ssl, name.c_str());
      if (s.tls.verify) {
        if (is_ip_literal(name))
          X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), name.c_str());
        else
          SSL_set1_host(c.ssl, name.c_str());
      }
      c.phase = Phase::tls;
      tls_step(i, now);
    } else {
      start_hello(i, now);
    }
  }

  void tls_step(size_t i, int64_t now) {
    Conn &c = conns[i];
    ERR_clear_error();
    const int rc = SSL_connect(c.ssl);
    if (rc == 1) {
      start_hello(i, now);
      return;
    }
    const int err = SSL_get_error(c.ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
      watch(i, EPOLLIN);
      return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      watch(i, EPOLLIN | EPOLLOUT);
      return;
    }
    std::string why;
    const long verify = SSL_get_verify_result(c.ssl);
    if (verify != X509_V_OK) {
      why = std::string("certificate verification failed: ") +
            X509_verify_cert_error_string(verify);
    } else {
      why = openssl_errors();
      if (why.empty())
        why = err == SSL_ERROR_SYSCALL
                  ? "connection closed during the TLS handshake"
                  : "handshake failed";
    }
    conn_failed(i, Errc::tls, "tls: " + where() + ": " + why, now);
  }

  void start_hello(size_t i, int64_t now) {
    Conn &c = conns[i];
    c.phase = Phase::hello;
    c.handshake_left = 0;
    watch(i, EPOLLIN | EPOLLOUT);
    if (!s.password.empty()) {
      if (s.username.empty())
        send_internal(i, {"AUTH", s.password}, Kind::auth, now);
      else
        send_internal(i, {"AUTH", s.username, s.password}, Kind::auth, now);
      ++c.handshake_left;
    }
    if (s.db != 0) {
      const std::string db = std::to_string(s.db);
      send_internal(i, {"SELECT", db}, Kind::select, now);
      ++c.handshake_left;
    }
    // INFO also proves the session is authorised (NOAUTH otherwise) and
    // tells the server's version.
    send_internal(i, {"INFO", "server"}, Kind::info, now);
    ++c.handshake_left;
    // SCRIPT LOAD once per connection; EVALSHA after. (A later NOSCRIPT,
    // e.g. after SCRIPT FLUSH, is answered by the store with EVAL.)
    for (const std::string &body : shared->preload) {
      send_internal(i, {"SCRIPT", "LOAD", body}, Kind::load, now);
      ++c.handshake_left;
    }
  }

  void became_ready(size_t i, int64_t now) {
    Conn &c = conns[i];
    c.phase = Phase::ready;
    c.attempts = 0;
    {
      std::lock_guard<std::mutex> lock(ws[i].mu);
      ws[i].open = direct_ok;
    }
    if (c.ever_ready) {
      std::lock_guard<std::mutex> lock(mu);
      ++stats.reconnects;
    }
    c.ever_ready = true;
    watch(i, EPOLLIN | EPOLLOUT);
    std::deque<Request> w;
    w.swap(waiting);
    for (Request &r : w) dispatch(std::move(r), now);
    publish_state();
  }

  // Closes connection i, fails what it carried, and schedules a reconnect.
  void conn_failed(size_t i, Errc code, const std::string &msg, int64_t now) {
    Conn &c = conns[i];
    const bool was_ready = c.phase == Phase::ready;
    close_conn(c);
    const std::string lost = was_ready ? "connection lost: " + msg : msg;
    const Errc lost_code =
        was_ready && code == Errc::protocol ? Errc::protocol : code;
    for (InFlight &f : c.inflight) {
      if (f.kind != Kind::user || f.finished) continue;
      in_flight.fetch_sub(1, std::memory_order_relaxed);
      io_waits.fetch_sub(f.parts);
      finish(f.done, f.ctx, lost_code, lost);
    }
    c.inflight.clear();
    // A lookup that outlived its deadline is kept (c.resolving): the next
    // attempt waits for it rather than starting another, so a resolver
    // that hangs cannot pile up threads.
    c.phase = Phase::down;
    ++c.attempts;
    c.retry_at = now + backoff_ns(c.attempts);
    set_error(code, msg);
    bool any_alive = false;
    for (const Conn &o : conns) any_alive |= o.phase != Phase::down;
    if (!any_alive) {
      // Nothing can carry the waiting commands: answer them now.
      std::deque<Request> w;
      w.swap(waiting);
      for (Request &r : w) finish(r.done, r.ctx, code, msg);
    }
    publish_state();
  }

  void close_conn(Conn &c) {
    const size_t i = static_cast<size_t>(&c - conns.data());
    std::lock_guard<std::mutex> lock(ws[i].mu);
    absorb_locked(i);  // callers' commands are failed with the others
    ws[i].open = false;
    if (c.ssl) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    if (c.fd >= 0) {
      epoll_ctl(ep_fd, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
      c.fd = -1;
    }
    c.events = 0;
    c.wbuf.clear();
    c.wpos = 0;
    c.tls_wants_write = false;
  }

  void close_all() {
    // A borrower (a call still in progress, against the ABI's rules) is
    // bounded by its deadline: let it finish first.
    for (size_t i = 0; i < conns.size(); ++i) {
      for (;;) {
        int v = owner[i].load();
        if (v != kOwnCaller && owner[i].compare_exchange_strong(v, kOwnIo))
          break;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
    for (Conn &c : conns) {
      close_conn(c);
      for (InFlight &f : c.inflight) {
        if (f.kind != Kind::user || f.finished) continue;
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        io_waits.fetch_sub(f.parts);
        finish(f.done, f.ctx, Errc::closed,
               "closed: the limiter was destroyed");
      }
      c.inflight.clear();
    }
    for (Request &r : waiting)
      finish(r.done, r.ctx, Errc::closed, "closed: the limiter was destroyed");
    waiting.clear();
  }

  // ---- I/O ---------------------------------------------------------------

  void on_io(size_t i, uint32_t events, int64_t now) {
    Conn &c = conns[i];
    if (c.fd < 0) return;
    switch (c.phase) {
      case Phase::tcp:
        tcp_connected(i, now);
        return;
      case Phase::tls:
        tls_step(i, now);
        return;
      case Phase::hello:
      case Phase::ready:
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
          read_some(i, now);
        if (conns[i].fd >= 0 && (events & EPOLLOUT)) flush(i, now);
        return;
      case Phase::down:
      case Phase::resolving:
        return;
    }
  }

  void read_some(size_t i, int64_t now) {
    Conn &c = conns[i];
    char buf[kReadChunk];
    for (;;) {
      ssize_t n;
      if (c.ssl) {
        ERR_clear_error();
        const int rc = SSL_read(c.ssl, buf, sizeof buf);
        if (rc <= 0) {
          const int err = SSL_get_error(c.ssl, rc);
          if (err == SSL_ERROR_WANT_READ) break;
          if (err == SSL_ERROR_WANT_WRITE) {
            c.tls_wants_write = true;
            break;
          }
          const std::string detail = openssl_errors();
          if (!detail.empty()) {
            conn_failed(i, Errc::tls, "tls: " + detail, now);
          } else if (c.phase == Phase::hello) {
            // With TLS 1.3 a server that rejects the client (no or a bad
            // client certificate) may just close after the handshake.
            conn_failed(i, Errc::tls, rejected_after_handshake(), now);
          } else {
            conn_failed(i, Errc::connect, closed_text(c), now);
          }
          return;
        }
        n = rc;
      } else {
        n = recv(c.fd, buf, sizeof buf, 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          conn_failed(i, Errc::connect, "read: " + errno_text(errno), now);
          return;
        }
        if (n == 0) {
          conn_failed(i, Errc::connect, closed_text(c), now);
          return;
        }
      }
      if (!c.reader->feed(buf, static_cast<size_t>(n))) {
        conn_failed(i, Errc::protocol, c.reader->error(), now);
        return;
      }
      if (!drain_replies(i, now)) return;
    }
  }

  // With TLS 1.3 a server that rejects the client (no or a bad client
  // certificate) may just close after the handshake, before any reply.
  std::string rejected_after_handshake() const {
    return "tls: " + where() +
           " closed the connection right after the TLS handshake (does it "
           "require a client certificate? see tls_cert / tls_key)";
  }

  std::string closed_text(const Conn &c) const {
    if (c.phase == Phase::hello)
      return "connection closed by " + where() + " during the handshake" +
             (s.tls.enabled ? "" : " (a TLS port needs rediss://)");
    return "connection closed by " + where();
  }

  // Parses every complete reply; false if the connection was dropped.
  bool drain_replies(size_t i, int64_t now) {
    for (;;) {
      Conn &c = conns[i];
      std::unique_ptr<Reply> reply;
      const Reader::Status st = c.reader->next(reply);
      if (st == Reader::Status::more) return true;
      if (st == Reader::Status::error) {
        conn_failed(i, Errc::protocol, c.reader->error(), now);
        return false;
      }
      if (c.inflight.empty()) absorb(i);  // a caller's command, written
      if (c.inflight.empty()) {
        conn_failed(i, Errc::protocol,
                    "protocol: a reply arrived with no command waiting", now);
        return false;
      }
      InFlight f = c.inflight.front();
      c.inflight.pop_front();
      if (!on_reply(i, f, std::move(reply), now)) return false;
    }
  }

  bool on_reply(size_t i, const InFlight &f, std::unique_ptr<Reply> reply,
                int64_t now) {
    Conn &c = conns[i];
    const bool is_error = reply->type == Reply::Type::error;
    switch (f.kind) {
      case Kind::user: {
        if (f.finished) return true;  // timed out earlier; drop the reply
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        io_waits.fetch_sub(f.parts);
        CallResult r;
        r.reply = std::move(reply);
        f.done(f.ctx, std::move(r));
        return true;
      }
      case Kind::ping:
        if (!is_error) {
          std::lock_guard<std::mutex> lock(mu);
          stats.last_ping_us = (now - f.sent_ns) / 1000;
        }
        return true;
      case Kind::load:
        // A failed load is not fatal: the store falls back to EVAL.
        if (is_error) set_error(Errc::store, "SCRIPT LOAD: " + reply->str);
        if (--c.handshake_left == 0) became_ready(i, now);
        return true;
      case Kind::auth:
      case Kind::select:
      case Kind::info:
        break;
    }
    if (is_error) {
      const std::string &text = reply->str;
      const bool auth = f.kind == Kind::auth || text.rfind("NOAUTH", 0) == 0 ||
                        text.rfind("WRONGPASS", 0) == 0;
      const char *step = f.kind == Kind::auth     ? "AUTH"
                         : f.kind == Kind::select ? "SELECT"
                                                  : "INFO";
      conn_failed(i, auth ? Errc::auth : Errc::store,
                  std::string(auth ? "auth: " : "handshake: ") + step +
                      " refused by " + where() + ": " + text,
                  now);
      return false;
    }
    if (f.kind == Kind::info) {
      const std::string &text = reply->str;
      const auto pos = text.find("redis_version:");
      if (pos != std::string::npos) {
        const auto end = text.find_first_of("\r\n", pos);
        std::lock_guard<std::mutex> lock(mu);
        stats.server_version = text.substr(pos + 14, end - pos - 14);
      }
    }
    if (--c.handshake_left == 0) became_ready(i, now);
    return true;
  }

  void flush(size_t i, int64_t now) {
    Conn &c = conns[i];
    if (c.fd < 0 || (c.phase != Phase::hello && c.phase != Phase::ready))
      return;
    // Under the write lock (callers may write on this socket too); a
    // failure is handled after it is released.
    Errc fail_code = Errc::ok;
    std::string fail_msg;
    bool pending;
    {
      std::lock_guard<std::mutex> lock(ws[i].mu);
      while (c.wpos < c.wbuf.size()) {
        const char *p = c.wbuf.data() + c.wpos;
        const size_t len = c.wbuf.size() - c.wpos;
        ssize_t n;
        if (c.ssl) {
          ERR_clear_error();
          const int rc = SSL_write(
              c.ssl, p, static_cast<int>(std::min<size_t>(len, 1 << 30)));
          if (rc <= 0) {
            const int err = SSL_get_error(c.ssl, rc);
            if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
              break;
            const std::string detail = openssl_errors();
            if (!detail.empty()) {
              fail_code = Errc::tls;
              fail_msg = "tls: " + detail;
            } else if (c.phase == Phase::hello) {
              fail_code = Errc::tls;
              fail_msg = rejected_after_handshake();
            } else {
              fail_code = Errc::connect;
              fail_msg = "write: connection closed";
            }
            break;
          }
          n = rc;
        } else {
          n = send(c.fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            fail_code = Errc::connect;
            fail_msg = "write: " + errno_text(errno);
            break;
          }
        }
        c.wpos += static_cast<size_t>(n);
      }
      pending = c.wpos < c.wbuf.size();
      if (!pending) {
        c.wbuf.clear();
        c.wpos = 0;
      } else if (c.wpos > (1 << 20)) {
        c.wbuf.erase(0, c.wpos);
        c.wpos = 0;
      }
    }
    if (fail_code != Errc::ok) {
      conn_failed(i, fail_code, fail_msg, now);
      return;
    }
    if (!pending)
      watch(i, c.tls_wants_write ? EPOLLIN | EPOLLOUT : EPOLLIN);
    else
      watch(i, EPOLLIN | EPOLLOUT);
  }

  // ---- timers --------------------------------------------------------------

  void timers(int64_t now) {
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn &c = conns[i];
      if (!owned(i)) continue;
      if (c.phase == Phase::down && c.retry_at <= now) {
        start_connect(i, now);
      } else if (c.phase == Phase::resolving && c.phase_deadline <= now) {
        conn_failed(i, Errc::connect,
                    "connect: resolving host '" + s.host + "' took over " +
                        std::to_string(s.connect_timeout_ms) + " ms",
                    now);
      } else if ((c.phase == Phase::tcp || c.phase == Phase::tls ||
                  c.phase == Phase::hello) &&
                 c.phase_deadline <= now) {
        conn_failed(i, Errc::connect,
                    "connect: " + where() + ": no answer within " +
                        std::to_string(s.connect_timeout_ms) + " ms",
                    now);
      }
    }
    if (now >= next_ping) {
      next_ping = now + kPingIntervalNs;
      for (size_t i = 0; i < conns.size(); ++i)
        if (conns[i].phase == Phase::ready && owned(i))
          send_internal(i, {"PING"}, Kind::ping, now);
    }
    if (now >= next_deadline) expire(now);
  }

  // Answers every command whose deadline has passed. A command already on
  // the wire stays in the FIFO (its reply must still be consumed in order)
  // but is marked finished.
  void expire(int64_t now) {
    int64_t next = INT64_MAX;
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (it->deadline <= now) {
        finish(it->done, it->ctx, Errc::timeout,
               "timeout: no connection to " + where() +
                   " became ready before the deadline");
        it = waiting.erase(it);
      } else {
        next = std::min(next, it->deadline);
        ++it;
      }
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      if (!owned(i)) continue;  // a borrower keeps its own deadline
      for (InFlight &f : conns[i].inflight) {
        if (f.kind != Kind::user || f.finished) continue;
        if (f.deadline <= now) {
          f.finished = true;
          in_flight.fetch_sub(1, std::memory_order_relaxed);
          io_waits.fetch_sub(f.parts);
          finish(f.done, f.ctx, Errc::timeout,
                 "timeout: " + where() + " did not answer before the deadline");
        } else {
          next = std::min(next, f.deadline);
        }
      }
    }
    next_deadline = next;
  }
};

Errc Transport::create(const Settings &settings,
                       std::vector<std::string> preload,
                       std::unique_ptr<Transport> &out) {
  register_fork_handler();
  auto shared = std::make_shared<Shared>();
  shared->settings = settings;
  shared->preload = std::move(preload);
  if (settings.tls.enabled) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return fail(Errc::tls, "tls: cannot create a TLS context");
    shared->ssl_ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const TlsSettings &t = settings.tls;
    if (t.verify) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      if (!t.ca_file.empty() || !t.ca_dir.empty()) {
        if (SSL_CTX_load_verify_locations(
                ctx, t.ca_file.empty() ? nullptr : t.ca_file.c_str(),
                t.ca_dir.empty() ? nullptr : t.ca_dir.c_str()) != 1)
          return fail(Errc::tls,
                      "tls: cannot load the CA from " +
                          (t.ca_file.empty() ? t.ca_dir : t.ca_file) + ": " +
                          openssl_errors());
      } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return fail(Errc::tls, "tls: cannot load the system CA store: " +
                                   openssl_errors());
      }
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    if (!t.cert_file.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx, t.cert_file.c_str()) != 1)
        return fail(Errc::tls, "tls: cannot load the client certificate " +
                                   t.cert_file + ": " + openssl_errors());
      if (SSL_CTX_use_PrivateKey_file(ctx, t.key_file.c_str(),
                                      SSL_FILETYPE_PEM) != 1)
        return fail(Errc::tls, "tls: cannot load the client key " + t.key_file +
                                   ": " + openssl_errors());
      if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(Errc::tls,
                    "tls: the client key does not match the certificate");
    }
  }
  out.reset(new Transport(std::move(shared)));
  return Errc::ok;
}

Transport::Transport(std::shared_ptr<Shared> shared)
    : shared_(std::move(shared)) {
  core_.store(new Core(shared_));
}

Transport::~Transport() {
  Core *c = core_.load();
  // A core made by another process (before a fork) has no thread here and
  // its sockets belong to the parent: leave it.
  if (c && c->generation == g_fork_generation.load()) delete c;
}

Transport::Core *Transport::core() {
  Core *c = core_.load(std::memory_order_acquire);
  const uint64_t gen = g_fork_generation.load(std::memory_order_relaxed);
  if (c->generation == gen) return c;
  // First use in a forked child: start over with our own sockets and
  // thread. The parent's core is abandoned, not freed: its mutex may have
  // been held by a thread that does not exist here.
  Core *fresh = new Core(shared_);
  if (core_.compare_exchange_strong(c, fresh, std::memory_order_acq_rel))
    return fresh;
  delete fresh;
  return c;
}

void Transport::submit(std::string command, int64_t deadline_ns,
                       Completion done, void *ctx, Mode mode) {
  Core *c = core();
  Request r{std::move(command), deadline_ns, done, ctx};
  if (c->try_direct(r, mode == Mode::blocking)) return;
  c->submit(std::move(r));
}

void Transport::submit_joinable(const Joiner *joiner, void *part,
                                int64_t deadline_ns, Completion done,
                                Mode mode) {
  Core *c = core();
  Request r{{}, deadline_ns, done, part, joiner};
  if (c->try_direct(r, mode == Mode::blocking)) return;
  c->submit(std::move(r));
}

void Transport::note_ping(int64_t rtt_us) {
  Core *c = core();
  std::lock_guard<std::mutex> lock(c->mu);
  c->stats.last_ping_us = rtt_us;
}

void set_resolver(Resolver resolver) noexcept {
  g_resolver.store(resolver);
}

TransportStats Transport::stats() const {
  Core *c = const_cast<Transport *>(this)->core();
  std::lock_guard<std::mutex> lock(c->mu);
  TransportStats out = c->stats;
  out.state = static_cast<ConnState>(c->state.load());
  out.in_flight = c->in_flight.load(std::memory_order_relaxed);
  out.caller_written = c->caller_written.load(std::memory_order_relaxed);
  out.spun_waits = c->spun_waits.load(std::memory_order_relaxed);
  out.lone_wait_us = c->lone_wait_ns.load(std::memory_order_relaxed) / 1000;
  return out;
}

}  // namespace tollgate::redis
