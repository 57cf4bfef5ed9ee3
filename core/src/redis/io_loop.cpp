#include "io_loop.hpp"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "pipeline.hpp"
#include "request.hpp"

namespace tollgate::redis {
namespace {

// Past its first kYieldAfterNs a spinner yields its CPU between polls: the
// scheduler often puts redis-server (woken by the command) on the
// spinner's CPU, where a spinner that never yields holds it up until the
// spin ends. On the 2-vCPU guest of docs/benchmarks.md, a 200 us spin
// without yielding left 4-6% of sequential checks waiting the whole spin
// plus about 80 us (p99 283 us); yielding after 30 us brought p99 to about
// 125 us, p50 unchanged (about 50 us). Yielding from the first poll cost
// about 20 us at p50.
constexpr int64_t kYieldAfterNs = 30000;

bool has_reply(const epoll_event *evs, int n) {
  for (int i = 0; i < n; ++i)
    if (evs[i].data.u32 != 0) return true;  // a connection, not a submitter
  return false;
}

int64_t cpu_between(int64_t from, int64_t to) {
  return from >= 0 && to >= 0 ? to - from : -1;
}

}  // namespace

IoLoop::IoLoop(uint32_t spin_us)
    : spin_ns_(static_cast<int64_t>(spin_us) * 1000),
      spin_rule_(spin_ns_),
      host_rule_(spin_ns_) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ep_fd_ = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = 0;
  epoll_ctl(ep_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
}

IoLoop::~IoLoop() {
  stop();
  if (wake_fd_ >= 0) close(wake_fd_);
  if (ep_fd_ >= 0) close(ep_fd_);
}

uint32_t IoLoop::reserve(uint32_t connections) {
  std::lock_guard<std::mutex> lock(add_mu_);
  const uint32_t first = next_token_;
  next_token_ += connections;
  return first;
}

void IoLoop::attach(Pipeline *p) {
  {
    std::lock_guard<std::mutex> lock(add_mu_);
    pending_.push_back(p);
    all_.push_back(p);
    has_pending_.store(true);
  }
  wake();
}

// I/O thread: the pipelines attached since the last turn join the loop.
void IoLoop::adopt(int64_t now) {
  std::vector<Pipeline *> fresh;
  {
    std::lock_guard<std::mutex> lock(add_mu_);
    fresh.swap(pending_);
    has_pending_.store(false);
  }
  for (Pipeline *p : fresh) {
    pipelines_.push_back(p);
    const uint32_t first = p->first_token(), n = p->connection_count();
    if (tokens_.size() < first - 1 + n) tokens_.resize(first - 1 + n);
    for (uint32_t k = 0; k < n; ++k) tokens_[first - 1 + k] = {p, k};
    if (!p->lazy()) p->start(now);
  }
}

bool IoLoop::ensure_started() {
  std::lock_guard<std::mutex> lock(start_mu_);
  if (stopping_.load()) return false;
  if (!started_ && !hosted()) {
    thread_ = std::thread([this] { run(); });
    started_ = true;
  }
  return true;
}

bool IoLoop::host_open() {
  std::lock_guard<std::mutex> lock(start_mu_);
  if (stopping_.load() || started_ || hosted()) return hosted_by_me();
  host_.store(std::this_thread::get_id());
  return true;
}

void IoLoop::host_close() {
  {
    std::lock_guard<std::mutex> drive(drive_mu_);
    std::lock_guard<std::mutex> lock(start_mu_);
    if (!hosted()) return;
    host_.store(std::thread::id());
    if (stopping_.load()) return;
    // Whatever is queued or in flight is the thread's now.
    thread_ = std::thread([this] { run(); });
    started_ = true;
  }
}

void IoLoop::stop() {
  bool join;
  {
    std::lock_guard<std::mutex> lock(start_mu_);
    if (stopping_.exchange(true)) return;
    join = started_;
  }
  if (join) {
    wake();
    thread_.join();
  } else {
    // Hosted (or never started): after the turn under way, if any, the
    // connections the host's turns opened close here (a pipeline no turn
    // adopted has none); the host's next turn sees kHostGone.
    std::lock_guard<std::mutex> drive(drive_mu_);
    host_.store(std::thread::id());
    for (Pipeline *p : pipelines_) p->close_all();
  }
  std::vector<Pipeline *> all;
  {
    std::lock_guard<std::mutex> lock(add_mu_);
    all = all_;
  }
  for (Pipeline *p : all) p->fail_queue(Errc::closed, kClosedText);
}

void IoLoop::wake() {
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = write(wake_fd_, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
}

void IoLoop::spin_pause(int64_t spun_ns) {
  if (spun_ns >= kYieldAfterNs) sched_yield();
}

int IoLoop::spin_poll(epoll_event *evs, int64_t from) {
  const int64_t until = from + spin_ns_;
  int n;
  for (int64_t t = from;;) {
    n = epoll_wait(ep_fd_, evs, 32, 0);
    if (n != 0 || (t = monotonic_ns()) >= until) break;
    spin_pause(t - from);
  }
  return n;
}

int64_t IoLoop::next_timer() const {
  int64_t next = ticker_ ? ticker_->next_tick() : INT64_MAX;
  for (const Pipeline *p : pipelines_) next = std::min(next, p->next_timer());
  return next;
}

int IoLoop::sleep(epoll_event *evs, int max) {
  int64_t until = next_timer();
  sleep_until_.store(until);
  // A caller that handed commands over before the store above is seen
  // here; one after it sees sleep_until_ (wake_before).
  until = std::min(until, next_timer());
  int timeout = 1000;
  if (until != INT64_MAX) {
    const int64_t wait = until - monotonic_ns();
    timeout =
        wait <= 0
            ? 0
            : static_cast<int>(std::min<int64_t>((wait + kMs - 1) / kMs, 1000));
  }
  const int n = epoll_wait(ep_fd_, evs, max, timeout);
  sleep_until_.store(kAwake);
  return n;
}

void IoLoop::handle(const epoll_event *evs, int n, int64_t now) {
  for (Pipeline *p : pipelines_) p->after_wake(now);
  for (int i = 0; i < n; ++i) {
    const uint32_t token = evs[i].data.u32;
    if (token == 0) {
      uint64_t v;
      while (read(wake_fd_, &v, sizeof v) > 0) {
      }
      continue;
    }
    const auto &[p, conn] = tokens_[token - 1];
    p->on_io(conn, evs[i].events, now);
  }
}

void IoLoop::work() {
  const int64_t now = monotonic_ns();
  if (ticker_) ticker_->tick(now);
  for (Pipeline *p : pipelines_) p->send_due(now);
  for (Pipeline *p : pipelines_) p->housekeeping(now);
}

bool IoLoop::before_sleep(uint32_t &awaited) {
  if (has_pending_.load()) adopt(monotonic_ns());
  // Announce the sleep, then look at the queues: a submitter that pushes
  // after this look sees io_sleeping and wakes us (Pipeline::submit).
  io_sleeping_.store(true);
  bool pending = stopping_.load();
  awaited = 0;
  for (Pipeline *p : pipelines_) {
    // What callers wrote meanwhile becomes ours (its deadlines count for
    // the sleep below).
    p->before_sleep();
    pending = pending || p->due();
    awaited += p->awaited();
  }
  return pending;
}

void IoLoop::note_host_wait(const epoll_event *evs, int n, int64_t now) {
  if (host_wait_from_ == 0 || !has_reply(evs, n)) return;
  const int64_t cpu_to = host_cpu_from_ >= 0 ? SpinRule::thread_cpu_ns() : -1;
  host_rule_.note(now - host_wait_from_, host_spun_,
                  cpu_between(host_cpu_from_, cpu_to));
  host_wait_from_ = 0;
}

bool IoLoop::host_spin(epoll_event *evs, int &n) {
  const SpinRule::Plan plan = host_rule_.plan();
  const int64_t from = monotonic_ns();
  const int64_t cpu_from = plan.timed ? SpinRule::thread_cpu_ns() : -1;
  n = 0;
  if (plan.spin) n = spin_poll(evs, from);
  // Nothing came (or no spin): the host sleeps through the rest of the
  // wait, and the turn that reads the reply notes it.
  host_wait_from_ = from;
  host_cpu_from_ = cpu_from;
  host_spun_ = plan.spin;
  if (n <= 0) return false;
  note_host_wait(evs, n, monotonic_ns());
  host_wait_from_ = 0;  // a submitter's wake-up ended it
  return true;
}

int64_t IoLoop::host_turn(int wait_ms, bool idle) {
  std::lock_guard<std::mutex> drive(drive_mu_);
  if (!hosted_by_me() || stopping_.load()) return kHostGone;
  io_sleeping_.store(false);
  sleep_until_.store(kAwake);
  if (has_pending_.load()) adopt(monotonic_ns());
  epoll_event evs[32];
  int n = epoll_wait(ep_fd_, evs, 32, wait_ms);
  int64_t now = monotonic_ns();
  note_host_wait(evs, n, now);
  for (;;) {
    in_turn_ = true;
    handle(evs, n, now);
    work();
    in_turn_ = false;
    uint32_t awaited;
    if (before_sleep(awaited)) return monotonic_ns();  // a queue is due
    // One reply awaited, nothing else to do here nor in the host: spin
    // for it (once per turn), as the I/O thread would.
    const bool lone = idle && spin_ns_ > 0 && awaited == 1;
    idle = false;
    if (!lone) {
      host_wait_from_ = 0;  // other work: not a lone wait's sample
      break;
    }
    if (!host_spin(evs, n)) break;
    io_sleeping_.store(false);
    now = monotonic_ns();
  }
  // As sleep(): a caller that hands commands over after this store sees
  // it (wake_before) and wakes the host through the eventfd.
  int64_t until = next_timer();
  sleep_until_.store(until);
  return std::min(until, next_timer());
}

void IoLoop::host_flush(Pipeline &p) {
  if (in_turn_) return;  // the turn sends it
  std::lock_guard<std::mutex> drive(drive_mu_);
  if (!hosted_by_me() || stopping_.load()) return;
  const int64_t now = monotonic_ns();
  if (has_pending_.load()) adopt(now);
  // Idle connections lent to blocking callers come back first. While none
  // is ready, the queue waits for the turn that sees one ready, which sends
  // it joined (not one command at a time).
  p.after_wake(now);
  if (!p.ready_to_send()) return;
  p.send_due(now);
  p.flush(now);  // on the wire now, not at the host's next turn
}

void IoLoop::pump(int64_t until_ns) {
  int64_t next = until_ns;
  {
    std::lock_guard<std::mutex> drive(drive_mu_);
    if (!hosted_by_me() || stopping_.load()) return;
    if (has_pending_.load()) adopt(monotonic_ns());
    next = std::min(next, next_timer());
  }
  const int64_t now = monotonic_ns();
  const int wait_ms = next <= now ? 0
                                  : static_cast<int>(std::min<int64_t>(
                                        (next - now + kMs - 1) / kMs, 10));
  host_turn(wait_ms);
}

void IoLoop::run() {
  // SIGPIPE from a write to a dead TLS connection stays pending on this
  // thread instead of killing the host process.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  epoll_event evs[32];
  for (;;) {
    uint32_t awaited;
    const bool pending = before_sleep(awaited);
    int n;
    // One reply awaited, nothing else to do: a lone caller waits for it (a
    // sequential async check).
    const bool lone = !pending && spin_ns_ > 0 && awaited == 1;
    const SpinRule::Plan plan = lone ? spin_rule_.plan() : SpinRule::Plan{};
    const int64_t cpu_from = plan.timed ? SpinRule::thread_cpu_ns() : -1;
    const int64_t wait_from = lone ? monotonic_ns() : 0;
    if (plan.spin) {
      // Poll for up to spin_us before sleeping, so that the reply does not
      // also wait for this thread's wake-up (on a VM as costly as the round
      // trip). A submitter still writes the eventfd (io_sleeping), which
      // ends the spin.
      n = spin_poll(evs, wait_from);
      if (n == 0) n = sleep(evs, 32);
    } else {
      n = pending ? epoll_wait(ep_fd_, evs, 32, 0) : sleep(evs, 32);
    }
    io_sleeping_.store(false);
    const int64_t now = monotonic_ns();
    if (lone && has_reply(evs, n)) {
      const int64_t cpu_to = plan.timed ? SpinRule::thread_cpu_ns() : -1;
      spin_rule_.note(now - wait_from, plan.spin,
                      cpu_between(cpu_from, cpu_to));
    }
    handle(evs, n, now);
    if (stopping_.load()) {
      for (Pipeline *p : pipelines_) p->close_all();
      return;
    }
    work();
  }
}

}  // namespace tollgate::redis
