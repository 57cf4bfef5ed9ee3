// The I/O loop of one transport (in one process): an epoll loop over the
// connections of every pipeline, woken through an eventfd by submitters
// that find it asleep. Two drivers turn it, one at a time:
//  - the I/O thread, which starts on first use;
//  - a host's event loop (Node's libuv loop, Python's asyncio loop), which
//    watches ep_fd() and calls host_turn when it is readable or when the
//    time host_turn returned has come. Replies are then read, and async
//    completions run, on the host's thread: no thread hand-off. A host
//    takes the loop only before the I/O thread has started (host_open).
// It also keeps the lone-wait heuristic that the I/O thread and blocking
// callers share: whether spinning for a reply pays on this machine and
// network.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "spin_rule.hpp"

namespace tollgate::redis {

class Pipeline;

// Work of a topology's own that the I/O thread does on every turn: retries
// that wait for a moment or for a new slot map, and map refreshes.
class LoopTicker {
 public:
  virtual void tick(int64_t now) = 0;
  virtual int64_t next_tick() const = 0;  // INT64_MAX: nothing planned

 protected:
  ~LoopTicker() = default;
};

class IoLoop {
 public:
  explicit IoLoop(uint32_t spin_us);
  ~IoLoop();  // stops the thread (see stop) and closes the descriptors
  IoLoop(const IoLoop &) = delete;
  IoLoop &operator=(const IoLoop &) = delete;

  int ep_fd() const { return ep_fd_; }
  int wake_fd() const { return wake_fd_; }

  // Any thread: epoll tokens for `connections` sockets (the first one is
  // returned), then the pipeline they belong to, which the I/O thread
  // adopts on its next turn (and starts it unless it is lazy).
  uint32_t reserve(uint32_t connections);
  void attach(Pipeline *p);
  void set_ticker(LoopTicker *t) { ticker_ = t; }  // before the thread runs

  // Starts the thread unless it runs or a host drives the loop; false if
  // the loop is stopping.
  bool ensure_started();

  // ---- a host's event loop as the driver
  // The calling thread becomes the driver, unless the I/O thread has
  // started, another thread drives, or the loop stops (false).
  bool host_open();
  // Any thread (after the driver's turn under way, if any): the loop goes
  // back to the I/O thread, which starts to carry on with what is queued
  // or in flight; the driver's next host_turn answers kHostGone.
  void host_close();
  // The driver's thread (or a caller that waits on it, see pump): reads
  // what is ready, runs completions, writes what is due, after waiting
  // up to `wait_ms` for I/O (0: not at all). Returns when to turn again
  // (monotonic ns; INT64_MAX: only once ep_fd() is readable), or
  // kHostGone if the caller no longer drives (host_close, stop, another
  // process): it stops watching.
  // `idle`: the host has nothing else ready to run. A lone wait left at
  // the end of the turn (one reply awaited, nothing due) may then be
  // spun for, up to spin_us, by the host's own lone-wait rule (a host's
  // sleep is its event loop's poll and dispatch, which costs another
  // figure than the I/O thread's epoll_wait); a reply caught runs its
  // completion in this turn.
  static constexpr int64_t kHostGone = INT64_MIN;
  int64_t host_turn(int wait_ms = 0, bool idle = false);
  bool hosted() const { return host_.load() != std::thread::id(); }
  bool hosted_by_me() const {
    return host_.load() == std::this_thread::get_id();
  }
  // The driver's thread, outside a turn: sends `p`'s due queue now (a
  // submission that found it due).
  void host_flush(Pipeline &p);
  // A blocking caller on the driver's thread (the host loop cannot turn
  // while it waits): turns the loop, waiting for I/O up to `until_ns`, and
  // returns.
  void pump(int64_t until_ns);
  bool stopping() const { return stopping_.load(); }
  // Stops the thread and waits for it; each pipeline then answers what is
  // left in its queue (closed).
  void stop();

  void wake();
  // Wakes the thread only if it sleeps (or is about to), once.
  void wake_if_sleeping() {
    if (io_sleeping_.load() && io_sleeping_.exchange(false)) wake();
  }
  void set_awake() { io_sleeping_.store(false); }
  // A caller wrote commands the thread does not know yet (their deadlines
  // are in WriteSide::handed_deadline, which the thread reads before it
  // sleeps): wakes it if it sleeps past `deadline`. With the thread's store
  // of sleep_until_ before its read of the handed deadlines, and the
  // caller's store of those before this read (all sequentially
  // consistent), one of the two sees the other: the thread never sleeps
  // past a deadline a caller handed it.
  void wake_before(int64_t deadline) {
    int64_t s = sleep_until_.load();
    while (deadline < s)
      if (sleep_until_.compare_exchange_weak(s, kAwake)) {
        wake();
        return;
      }
  }

  // Whether a lone wait spins (see spin_rule.hpp), shared by the I/O
  // thread and blocking callers.
  int64_t spin_ns() const { return spin_ns_; }
  SpinRule &spin_rule() { return spin_rule_; }
  const SpinRule &spin_rule() const { return spin_rule_; }
  const SpinRule &host_spin_rule() const { return host_rule_; }
  static void spin_pause(int64_t spun_ns);

 private:
  // Polls ep_fd() into `evs` (32 entries) until something is ready or
  // spin_us has passed since `from`; returns epoll_wait's last count.
  int spin_poll(epoll_event *evs, int64_t from);
  void run();
  void adopt(int64_t now);
  // The parts of a turn both drivers share: take back lent connections and
  // read what `evs` reports; then the tickers, the due queues and the
  // timers; then announce the sleep and absorb what callers wrote (true:
  // a queue is due already; `awaited`: the replies awaited).
  void handle(const epoll_event *evs, int n, int64_t now);
  void work();
  bool before_sleep(uint32_t &awaited);
  // When the thread wakes next by itself: the ticker's and the pipelines'
  // timers (the deadlines of commands callers handed over included).
  int64_t next_timer() const;
  // Sleeps in epoll_wait until next_timer (at most 1 s); see wake_before.
  int sleep(epoll_event *evs, int max);

  const int64_t spin_ns_;
  int wake_fd_ = -1;
  int ep_fd_ = -1;
  std::mutex start_mu_;
  bool started_ = false;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  // The host thread that drives the loop (none: the I/O thread, once
  // started). drive_mu_ is held through every host turn.
  std::atomic<std::thread::id> host_{};
  std::mutex drive_mu_;
  bool in_turn_ = false;                  // the driver's thread is in host_turn
  std::atomic<bool> io_sleeping_{false};  // in (or about to be in) epoll_wait
  // While the thread sleeps: when it wakes by itself; kAwake otherwise
  // (it looks at every timer again before it sleeps).
  static constexpr int64_t kAwake = INT64_MIN;
  std::atomic<int64_t> sleep_until_{kAwake};
  SpinRule spin_rule_;
  // The host driver's lone waits (host_turn with `idle`), under drive_mu_:
  // their rule, and the lone wait the host sleeps through, if any (its
  // start; the thread CPU then, or -1; whether it spun first), noted by
  // the turn that reads a reply.
  SpinRule host_rule_;
  int64_t host_wait_from_ = 0;
  int64_t host_cpu_from_ = -1;
  bool host_spun_ = false;
  // A host turn: notes the lone wait the host slept through if `evs`
  // holds a reply.
  void note_host_wait(const epoll_event *evs, int n, int64_t now);
  // The end of a host turn whose host is idle with a lone wait: spins for
  // the reply if the host's rule says so (true: something came, in `evs`
  // and `n`), else leaves the wait to be noted by a later turn.
  bool host_spin(epoll_event *evs, int &n);

  // Under add_mu_: tokens handed out and pipelines not yet adopted.
  std::mutex add_mu_;
  uint32_t next_token_ = 1;
  std::vector<Pipeline *> pending_;
  std::atomic<bool> has_pending_{false};
  // Every attached pipeline (for stop); the I/O thread's own list below.
  std::vector<Pipeline *> all_;
  LoopTicker *ticker_ = nullptr;

  std::vector<Pipeline *> pipelines_;
  std::vector<std::pair<Pipeline *, uint32_t>> tokens_;  // token - 1
};

}  // namespace tollgate::redis
