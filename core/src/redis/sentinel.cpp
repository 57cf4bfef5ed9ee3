#include "sentinel.hpp"

#include <algorithm>
#include <charconv>

#include "io_loop.hpp"

namespace tollgate::redis {
namespace {

constexpr int64_t kRetryNs = 25 * kMs;        // a parked call tries again
constexpr int64_t kRoundGapNs = 100 * kMs;    // between rounds of asking
constexpr int64_t kRoleCheckNs = 1000 * kMs;  // ROLE on the master

bool starts_with(const std::string &s, std::string_view p) {
  return s.size() >= p.size() && std::string_view(s).substr(0, p.size()) == p;
}

bool parse_port(std::string_view s, uint16_t &out) {
  unsigned v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v == 0 ||
      v > 65535)
    return false;
  out = static_cast<uint16_t>(v);
  return true;
}

Address address(const std::string &host, uint16_t port) {
  Address a;
  a.host = host;
  a.port = port;
  return a;
}

}  // namespace

MasterAddr parse_master_addr(const Reply &reply, std::string &host,
                             uint16_t &port) {
  if (reply.type == Reply::Type::nil ||
      (reply.type == Reply::Type::array && reply.elements.empty()))
    return MasterAddr::unknown;
  if (reply.type == Reply::Type::error) return MasterAddr::refused;
  if (reply.type != Reply::Type::array || reply.elements.size() != 2 ||
      reply.elements[0]->type != Reply::Type::string ||
      reply.elements[1]->type != Reply::Type::string ||
      !parse_port(reply.elements[1]->str, port))
    return MasterAddr::malformed;
  host = reply.elements[0]->str;
  return MasterAddr::found;
}

std::string parse_role(const Reply &reply) {
  if (reply.type == Reply::Type::array && !reply.elements.empty() &&
      reply.elements[0]->type == Reply::Type::string)
    return reply.elements[0]->str;
  return {};
}

bool parse_switch_master(const Reply &reply, std::string_view master_name,
                         std::string &host, uint16_t &port) {
  if (reply.elements.size() != 3 || reply.elements[1]->str != "+switch-master")
    return false;
  std::vector<std::string_view> f;
  std::string_view text = reply.elements[2]->str;
  while (!text.empty()) {
    const size_t sp = text.find(' ');
    f.push_back(text.substr(0, sp));
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
  }
  if (f.size() != 5 || f[0] != master_name || !parse_port(f[4], port))
    return false;
  host = std::string(f[3]);
  return true;
}

struct SentinelTopology::Node {
  Node(IoLoop &loop, ConnectionShared &shared, Address a, uint32_t conns)
      : text(a.text()),
        pipeline(loop, shared, a, conns, PipelineOptions{.lazy = true}) {}
  std::string text;
  Pipeline pipeline;
};

SentinelTopology::SentinelTopology(IoLoop &loop, ConnectionShared &shared)
    : RoutedTopology(loop),
      shared_(shared),
      s_(shared.settings),
      sentinel_settings_(shared.settings),
      sentinel_shared_{sentinel_settings_, shared.ssl_ctx, no_scripts_,
                       no_functions_,      loop.ep_fd(),   loop.wake_fd(),
                       shared.lookups},
      nodes_(std::make_unique<std::atomic<Node *>[]>(kMaxNodes)) {
  sentinel_settings_.username = s_.sentinel_username;
  sentinel_settings_.password = s_.sentinel_password;
  sentinel_settings_.db = 0;
  for (const HostPort &h : s_.seeds) {
    const Address a = address(h.host, h.port);
    queries_.push_back(std::make_unique<Pipeline>(
        loop, sentinel_shared_, a, 1,
        PipelineOptions{.lazy = true, .direct = false}));
    subscribers_.push_back(std::make_unique<Pipeline>(
        loop, sentinel_shared_, a, 1,
        PipelineOptions{
            .lazy = true, .direct = false, .subscriber = true, .hooks = this}));
    loop.attach(queries_.back().get());
    loop.attach(subscribers_.back().get());
  }
  loop.set_ticker(this);
}

SentinelTopology::~SentinelTopology() {
  fail_parked();
  for (size_t i = 0; i < node_count_.load(); ++i) delete nodes_[i].load();
}

int SentinelTopology::node_for(const std::string &host, uint16_t port) {
  const size_t n = node_count_.load();
  for (size_t i = 0; i < n; ++i)
    if (nodes_[i].load()->text == address(host, port).text())
      return static_cast<int>(i);
  if (n >= kMaxNodes) return -1;
  auto *node = new Node(loop_, shared_, address(host, port),
                        s_.connections ? s_.connections : 1);
  nodes_[n].store(node);
  node_count_.store(n + 1);
  loop_.attach(&node->pipeline);
  return static_cast<int>(n);
}

std::string SentinelTopology::sentinels_text() const {
  std::string out;
  for (const HostPort &h : s_.seeds) {
    if (!out.empty()) out += ",";
    out += address(h.host, h.port).text();
  }
  return out;
}

// ---- commands
// ------------------------------------------------------------------

void SentinelTopology::route(Call *c, bool blocking) {
  const int m = master_.load();
  if (m >= 0) {
    send(c, nodes_[m].load()->pipeline, false, blocking);
    return;
  }
  Errc code;
  std::string why;
  bool fatal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fatal = fatal_;
    code = code_;
    why = error_.empty() ? "sentinel: no master for '" + s_.master_name +
                               "' yet (asking " + sentinels_text() + ")"
                         : error_;
  }
  want_discovery();
  if (fatal)
    deliver_error(c, code, why);
  else
    park(c, monotonic_ns() + kRetryNs, code, why);
}

bool SentinelTopology::handled(Call *c, CallResult &r) {
  if (r.code != Errc::ok) {
    // The master is down or its connection broke: a failover may be
    // under way. Ask the sentinels, and try again until the deadline.
    want_discovery();
    park(c, monotonic_ns() + kRetryNs, r.code, r.message);
    return true;
  }
  const std::string &text = r.reply->str;
  if (starts_with(text, "READONLY")) {
    // A demoted master, now a replica: stop sending it writes.
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (master_.exchange(-1) != -1) ++epoch_;
    }
    want_discovery();
    park(c, monotonic_ns() + kRetryNs, Errc::store, "store: " + text);
    return true;
  }
  if (starts_with(text, "MASTERDOWN") || starts_with(text, "LOADING")) {
    park(c, monotonic_ns() + kRetryNs, Errc::store, "store: " + text);
    return true;
  }
  return false;
}

void SentinelTopology::submit_to(const std::string &, Request r) {
  submit(std::move(r), kAnySlot, false);
}

std::vector<std::string> SentinelTopology::primaries() {
  const int m = master_.load();
  if (m < 0) return {};
  return {nodes_[m].load()->text};
}

// ---- finding the master
// ----------------------------------------------------------

void SentinelTopology::want_discovery() {
  if (discovery_wanted_.exchange(true)) return;
  retry_parked_now();  // runs periodic on the I/O thread's next turn
}

SentinelTopology::Send SentinelTopology::ask_next(int64_t now) {
  Send out;
  const size_t n = queries_.size();
  if (asked_ >= n) {  // every sentinel was asked: this round is over
    asking_ = false;
    std::string all;
    for (const std::string &e : round_errors_)
      all += (all.empty() ? "" : "; ") + e;
    if (unknown_ == n) {
      fatal_ = true;
      code_ = Errc::store;
      error_ = "store: sentinel: no sentinel knows a master named '" +
               s_.master_name + "' (" + all + ")";
    } else {
      code_ = Errc::connect;
      error_ = "sentinel: no sentinel named the master (" + all + ")";
      discovery_wanted_.store(true);  // another round after the gap
    }
    return out;
  }
  asking_sentinel_ = ask_at_ % n;
  ++ask_at_;
  ++asked_;
  asking_ = true;
  format_command({"SENTINEL", "GET-MASTER-ADDR-BY-NAME", s_.master_name},
                 out.r.cmd);
  out.r.deadline = own_deadline(s_, now);
  out.r.done = &SentinelTopology::on_master_addr;
  out.r.ctx = this;
  out.p = queries_[asking_sentinel_].get();
  return out;
}

SentinelTopology::Send SentinelTopology::role_request(int node, int64_t now) {
  Send out;
  asking_ = true;
  confirming_ = node;
  confirm_epoch_ = epoch_;
  format_command({"ROLE"}, out.r.cmd);
  out.r.deadline = own_deadline(s_, now);
  out.r.done = &SentinelTopology::on_role;
  out.r.ctx = this;
  out.p = &nodes_[node].load()->pipeline;
  return out;
}

int64_t SentinelTopology::periodic(int64_t now) {
  Send send;
  size_t start_subscriber = SIZE_MAX;
  int64_t next = INT64_MAX;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!subscriber_started_ && !subscribers_.empty()) {
      subscriber_started_ = true;
      start_subscriber = subscriber_;
    }
    const int m = master_.load();
    if (discovery_wanted_.load() && !asking_) {
      if (now >= last_round_ns_ + kRoundGapNs) {
        discovery_wanted_.store(false);
        last_round_ns_ = now;
        asked_ = unknown_ = 0;
        round_errors_.clear();
        send = ask_next(now);
      } else {
        next = last_round_ns_ + kRoundGapNs;
      }
    } else if (m >= 0 && !asking_ && now >= next_role_check_ns_) {
      // Is the master still one? A demoted master that rejoined as a
      // replica says so here before any write meets -READONLY.
      next_role_check_ns_ = now + kRoleCheckNs;
      send = role_request(m, now);
    }
    if (m >= 0) next = std::min(next, next_role_check_ns_);
  }
  if (start_subscriber != SIZE_MAX)
    subscribers_[start_subscriber]->want_start();
  if (send.p) send.p->submit(std::move(send.r));
  return next;
}

void SentinelTopology::on_master_addr(void *ctx, CallResult &&r) {
  auto *t = static_cast<SentinelTopology *>(ctx);
  const int64_t now = monotonic_ns();
  Send send;
  {
    std::lock_guard<std::mutex> lock(t->mu_);
    const std::string who = t->queries_[t->asking_sentinel_]->address().text();
    const Reply *reply = r.code == Errc::ok ? r.reply.get() : nullptr;
    std::string host;
    uint16_t port = 0;
    if (!reply) {
      t->round_errors_.push_back(who + ": " + r.message);
    } else {
      switch (parse_master_addr(*reply, host, port)) {
        case MasterAddr::unknown:
          ++t->unknown_;
          t->round_errors_.push_back(who + " does not know it");
          break;
        case MasterAddr::refused:
          t->round_errors_.push_back(who + ": " + reply->str);
          break;
        case MasterAddr::malformed:
          t->round_errors_.push_back(who + ": malformed answer");
          break;
        case MasterAddr::found: {
          const int node = t->node_for(host, port);
          if (node >= 0) send = t->role_request(node, now);
          break;
        }
      }
    }
    if (!send.p) send = t->ask_next(now);
  }
  if (send.p)
    send.p->submit(std::move(send.r));
  else
    t->retry_parked_now();  // the round ended: parked calls see why
}

void SentinelTopology::on_role(void *ctx, CallResult &&r) {
  auto *t = static_cast<SentinelTopology *>(ctx);
  bool master = false;
  std::string switched;  // logged after the lock is released
  {
    std::lock_guard<std::mutex> lock(t->mu_);
    t->asking_ = false;
    const int node = t->confirming_;
    if (t->confirm_epoch_ != t->epoch_) return;  // the master changed since
    const std::string who = t->nodes_[node].load()->text;
    const Reply *reply = r.code == Errc::ok ? r.reply.get() : nullptr;
    const std::string role = reply ? parse_role(*reply) : std::string();
    if (role == "master") {
      master = true;
      if (t->master_.exchange(node) != node) ++t->epoch_;
      if (t->last_master_ >= 0 && t->last_master_ != node) {
        t->switches_.fetch_add(1, std::memory_order_relaxed);
        switched = t->switch_text(t->last_master_, node);
      }
      t->last_master_ = node;
      t->fatal_ = false;
      t->error_.clear();
      t->next_role_check_ns_ = monotonic_ns() + kRoleCheckNs;
    } else {
      int expected = node;
      if (t->master_.compare_exchange_strong(expected, -1)) ++t->epoch_;
      t->code_ = reply ? Errc::store : r.code;
      t->error_ =
          "sentinel: " + who +
          (!reply ? ": " + r.message
           : reply->type == Reply::Type::error
               ? ": ROLE refused: " + reply->str
               : " is not the master (ROLE: " +
                     (role.empty() ? std::string("no answer") : role) + ")");
      t->discovery_wanted_.store(true);
    }
  }
  t->log_switch(switched);
  t->retry_parked_now();
  (void)master;
}

std::string SentinelTopology::switch_text(int from, int to) const {
  return "tollgate: sentinel: following master '" + s_.master_name + "' to " +
         nodes_[to].load()->text + " (was " + nodes_[from].load()->text + ")";
}

void SentinelTopology::log_switch(const std::string &text) const {
  if (!text.empty() && s_.log) s_.log->log(LogLevel::warn, text);
}

// ---- following +switch-master
// ----------------------------------------------------

void SentinelTopology::pipeline_ready(Pipeline &p) {
  size_t current;
  {
    std::lock_guard<std::mutex> lock(mu_);
    current = subscriber_;
  }
  if (&p != subscribers_[current].get()) return;
  // (Re)connected: subscribe again (a new connection has no subscription).
  Request r;
  format_command({"SUBSCRIBE", "+switch-master"}, r.cmd);
  r.deadline = own_deadline(s_, monotonic_ns());
  r.done = &SentinelTopology::on_subscribed;
  r.ctx = this;
  p.submit(std::move(r));
}

void SentinelTopology::on_subscribed(void *, CallResult &&) {
  // A failed SUBSCRIBE shows as the connection failing (pipeline_failed);
  // the subscription's messages arrive through pipeline_push.
}

void SentinelTopology::pipeline_failed(Pipeline &p) {
  size_t next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (&p != subscribers_[subscriber_].get()) return;
    subscriber_ = (subscriber_ + 1) % subscribers_.size();
    next = subscriber_;
  }
  // Follow failovers through the next sentinel (the failed one keeps
  // reconnecting, but no longer subscribes).
  subscribers_[next]->want_start();
  if (subscribers_[next]->state_now() == ConnState::ready)
    pipeline_ready(*subscribers_[next]);
}

void SentinelTopology::pipeline_push(Pipeline &, const Reply &reply) {
  // ["message", "+switch-master", "<name> <old ip> <old port> <new ip>
  // <new port>"]
  std::string host;
  uint16_t port;
  if (!parse_switch_master(reply, s_.master_name, host, port)) return;
  Send send;
  std::string switched;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int node = node_for(host, port);
    if (node < 0) return;
    if (master_.exchange(node) != node) ++epoch_;
    if (last_master_ >= 0 && last_master_ != node) {
      switches_.fetch_add(1, std::memory_order_relaxed);
      switched = switch_text(last_master_, node);
    }
    last_master_ = node;
    fatal_ = false;
    error_.clear();
    // Confirm with ROLE (unless an answer is awaited already).
    if (!asking_) send = role_request(node, monotonic_ns());
  }
  log_switch(switched);
  if (send.p) send.p->submit(std::move(send.r));
  retry_parked_now();
}

// ---- health
// --------------------------------------------------------------------

void SentinelTopology::note_ping(int64_t rtt_us) {
  std::lock_guard<std::mutex> lock(mu_);
  last_ping_us_ = rtt_us;
}

TransportStats SentinelTopology::stats() const {
  TransportStats out;
  const int m = master_.load();
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.last_error = error_;
    out.last_ping_us = last_ping_us_;
    out.state = m >= 0           ? ConnState::connecting
                : error_.empty() ? ConnState::connecting
                                 : ConnState::down;
  }
  auto add = [&](const std::string &text, const Pipeline &p, bool primary) {
    const TransportStats ps = p.stats();
    NodeStats n;
    n.address = text;
    n.primary = primary;
    n.started = p.started();
    n.state = ps.state;
    n.in_flight = ps.in_flight;
    n.failures = ps.failures;
    n.reconnects = ps.reconnects;
    n.last_error = ps.last_error;
    n.rtt = ps.rtt;
    out.rtt.add(ps.rtt);
    out.nodes.push_back(std::move(n));
    return ps;
  };
  for (size_t i = 0; i < node_count_.load(); ++i) {
    const Node *node = nodes_[i].load();
    const TransportStats ps =
        add(node->text, node->pipeline, static_cast<int>(i) == m);
    out.in_flight += ps.in_flight;
    out.reconnects += ps.reconnects;
    out.failures += ps.failures;
    if (static_cast<int>(i) == m) {
      out.state = ps.state;
      out.server_version = ps.server_version;
      out.spun_waits = ps.spun_waits;
      out.lone_wait_us = ps.lone_wait_us;
      out.caller_written = ps.caller_written;
      if (out.last_error.empty()) out.last_error = ps.last_error;
    }
  }
  for (const auto &q : queries_) add(q->address().text(), *q, false);
  out.master_switches = switches_.load();
  return out;
}

}  // namespace tollgate::redis
