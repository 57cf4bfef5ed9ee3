#include "routed.hpp"

#include <algorithm>
#include <vector>

#include "io_loop.hpp"

namespace tollgate::redis {

void RoutedTopology::submit(Request r, int slot, bool blocking) {
  materialize(r);
  route(new Call(this, std::move(r.cmd), r.done, r.ctx, r.deadline, slot),
        blocking);
}

void RoutedTopology::send(Call *c, Pipeline &p, bool asking, bool blocking) {
  Request r{c->cmd, c->deadline, &RoutedTopology::on_reply, c};
  r.asking = asking;
  // ASKING and its command must leave together on one connection: the
  // queue, not the direct path (which carries one command).
  if (!asking && p.try_direct(r, blocking)) return;
  p.submit(std::move(r));
}

void RoutedTopology::on_reply(void *ctx, CallResult &&r) {
  auto *c = static_cast<Call *>(ctx);
  RoutedTopology *t = c->topo;
  const bool error_reply =
      r.code == Errc::ok && r.reply && r.reply->type == Reply::Type::error;
  if ((error_reply || r.code == Errc::connect || r.code == Errc::protocol) &&
      t->handled(c, r))
    return;
  t->deliver(c, std::move(r));
}

void RoutedTopology::park(Call *c, int64_t retry_at, Errc code,
                          std::string why) {
  c->last_code = code;
  c->last_error = std::move(why);
  // Once parked, `c` belongs to the I/O thread, which may retry it (and
  // even complete and free it) at once: only the local copy is read after.
  const int64_t at = std::min(retry_at, c->deadline);
  {
    std::lock_guard<std::mutex> lock(park_mu_);
    c->retry_at = at;
    parked_.push_back(c);
  }
  int64_t next = next_tick_.load();
  while (at < next && !next_tick_.compare_exchange_weak(next, at)) {
  }
  poke();
}

void RoutedTopology::poke() {
  // The I/O thread retries parked calls (and starts on first use, which
  // may be now: a first check waits here for a map or a master).
  loop_.ensure_started();
  loop_.wake();
}

void RoutedTopology::retry_parked_now() {
  {
    std::lock_guard<std::mutex> lock(park_mu_);
    for (Call *c : parked_) c->retry_at = 0;
  }
  next_tick_.store(0);
  poke();
}

void RoutedTopology::deliver(Call *c, CallResult &&r) {
  const Completion done = c->done;
  void *ctx = c->ctx;
  delete c;
  done(ctx, std::move(r));
}

void RoutedTopology::deliver_error(Call *c, Errc code, const std::string &why) {
  CallResult r;
  r.code = code;
  r.message = why;
  deliver(c, std::move(r));
}

void RoutedTopology::fail_parked() {
  std::deque<Call *> left;
  {
    std::lock_guard<std::mutex> lock(park_mu_);
    left.swap(parked_);
  }
  for (Call *c : left) deliver_error(c, Errc::closed, kClosedText);
}

void RoutedTopology::tick(int64_t now) {
  if (next_tick_.load() > now) return;
  next_tick_.store(INT64_MAX);  // lowered again by what follows
  const int64_t own = periodic(now);
  std::vector<Call *> due;
  int64_t next = own;
  {
    std::lock_guard<std::mutex> lock(park_mu_);
    for (auto it = parked_.begin(); it != parked_.end();) {
      if ((*it)->retry_at <= now) {
        due.push_back(*it);
        it = parked_.erase(it);
      } else {
        next = std::min(next, (*it)->retry_at);
        ++it;
      }
    }
  }
  int64_t cur = next_tick_.load();
  while (next < cur && !next_tick_.compare_exchange_weak(cur, next)) {
  }
  for (Call *c : due) {
    if (c->deadline <= now)
      deliver_error(c, Errc::timeout, "timeout: " + c->last_error);
    else
      route(c, false);
  }
}

}  // namespace tollgate::redis
