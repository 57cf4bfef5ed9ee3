// What Cluster and Sentinel share: a topology whose target node can change
// under a command. Each command travels wrapped in a Call (its text kept,
// so it can be sent again); a reply that says "not here" or "not now" is
// handled by the topology (another node, or later), and a command that
// cannot go anywhere yet waits, parked, until the topology retries it (a
// new map, a new master, a moment later) or its deadline passes, when it
// fails with the last reason it was given.
#pragma once

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <string>

#include "topology.hpp"

namespace tollgate::redis {

// The deadline of a topology's own request (a slot map, a sentinel's
// answer, ROLE, SUBSCRIBE): a connection may have to be made first.
inline int64_t own_deadline(const Settings &s, int64_t now) {
  return now + static_cast<int64_t>(std::max(s.connect_timeout_ms, 1u) +
                                    std::max(s.timeout_ms, 1u)) *
                   kMs;
}

class RoutedTopology : public Topology, public LoopTicker {
 public:
  struct Call {
    Call(RoutedTopology *t, std::string command, Completion d, void *x,
         int64_t dl, int s)
        : topo(t),
          cmd(std::move(command)),
          done(d),
          ctx(x),
          deadline(dl),
          slot(s) {}
    RoutedTopology *topo;
    std::string cmd;
    Completion done;
    void *ctx;
    int64_t deadline;
    int slot;
    int hops = 0;       // redirections followed
    int ask_node = -1;  // cluster -ASK: this node, once, after ASKING
    int pinned = -1;    // submit_to: this node only
    Errc last_code = Errc::ok;
    std::string last_error;
    int64_t retry_at = 0;
  };

  void submit(Request r, int slot, bool blocking) override;
  void tick(int64_t now) override;
  int64_t next_tick() const override { return next_tick_.load(); }

 protected:
  explicit RoutedTopology(IoLoop &loop) : loop_(loop) {}
  // Derived destructors call this first: parked calls fail (closed).
  void fail_parked();

  // Sends `c` where it belongs now, or parks it.
  virtual void route(Call *c, bool blocking) = 0;
  // An error reply or a transport failure for `c`: true if the topology
  // took the call (sent it elsewhere, or parked it).
  virtual bool handled(Call *c, CallResult &r) = 0;
  // The topology's own work on the I/O thread (refreshes, discovery);
  // returns when it wants to run next (INT64_MAX: when asked).
  virtual int64_t periodic(int64_t now) = 0;

  void send(Call *c, Pipeline &p, bool asking, bool blocking);
  void park(Call *c, int64_t retry_at, Errc code, std::string why);
  void deliver(Call *c, CallResult &&r);
  void deliver_error(Call *c, Errc code, const std::string &why);
  // Every parked call is tried again on the I/O thread's next turn.
  void retry_parked_now();
  // The I/O thread runs tick soon (started if need be).
  void poke();

  IoLoop &loop_;

 private:
  static void on_reply(void *ctx, CallResult &&r);

  std::mutex park_mu_;
  std::deque<Call *> parked_;
  std::atomic<int64_t> next_tick_{0};
};

}  // namespace tollgate::redis
