#include "cluster.hpp"

#include <algorithm>

#include "io_loop.hpp"

namespace tollgate::redis {
namespace {

// Map refreshes: at most this many per second, however many -MOVED come.
constexpr int64_t kRefreshGapNs = 250 * kMs;
// A parked command (-TRYAGAIN, a node down, no map yet) tries again after.
constexpr int64_t kRetryNs = 25 * kMs;
// Redirections one command follows before it waits for a new map.
constexpr int kMaxHops = 5;

bool starts_with(const std::string &s, std::string_view p) {
  return s.size() >= p.size() && std::string_view(s).substr(0, p.size()) == p;
}

}  // namespace

struct ClusterTopology::Node {
  Node(IoLoop &loop, ConnectionShared &shared, Address a, uint32_t conns)
      : address(a),
        text(a.text()),
        pipeline(loop, shared, a, conns, PipelineOptions{.lazy = true}) {}
  Address address;
  std::string text;
  Pipeline pipeline;
};

ClusterTopology::ClusterTopology(IoLoop &loop, ConnectionShared &shared)
    : RoutedTopology(loop),
      shared_(shared),
      s_(shared.settings),
      nodes_(std::make_unique<std::atomic<Node *>[]>(kMaxNodes)),
      owner_(std::make_unique<std::atomic<int16_t>[]>(kClusterSlots)) {
  for (size_t i = 0; i < kClusterSlots; ++i) owner_[i].store(-1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const HostPort &seed : s_.seeds) node_for(seed.host, seed.port);
    if (s_.seeds.empty()) node_for(s_.host, s_.port);
  }
  loop_.set_ticker(this);
}

ClusterTopology::~ClusterTopology() {
  // The I/O thread has stopped (Transport::Core); what still waits for a
  // map or a retry is answered now, before the nodes go.
  fail_parked();
  for (size_t i = 0; i < node_count_.load(); ++i) delete nodes_[i].load();
}

int ClusterTopology::node_for(const std::string &host, uint16_t port) {
  const size_t n = node_count_.load();
  for (size_t i = 0; i < n; ++i) {
    const Node *node = nodes_[i].load();
    if (node->address.port == port && node->address.host == host)
      return static_cast<int>(i);
  }
  if (n >= kMaxNodes) return -1;
  Address a;
  a.host = host;
  a.port = port;
  auto *node = new Node(loop_, shared_, a, s_.connections ? s_.connections : 1);
  nodes_[n].store(node);
  node_count_.store(n + 1);
  loop_.attach(&node->pipeline);
  return static_cast<int>(n);
}

std::string ClusterTopology::seed_text() const {
  std::string out;
  for (const HostPort &s : s_.seeds) {
    if (!out.empty()) out += ",";
    out += s.host + ":" + std::to_string(s.port);
  }
  return out;
}

// ---- sending ---------------------------------------------------------------

void ClusterTopology::submit(Request r, int slot, bool blocking) {
  if (r.joiner && slot >= 0) {
    const int node = owner_[slot].load(std::memory_order_relaxed);
    if (node >= 0) {
      send_via(nodes_[node].load()->pipeline, r, blocking);
      return;
    }
  }
  RoutedTopology::submit(std::move(r), slot, blocking);
}

void ClusterTopology::submit_to(const std::string &primary, Request r) {
  int node = -1;
  for (size_t i = 0; i < node_count_.load(); ++i)
    if (nodes_[i].load()->text == primary) node = static_cast<int>(i);
  if (node < 0) {
    finish(r.done, r.ctx, Errc::store,
           "store: cluster: " + primary + " is not a known node");
    return;
  }
  auto *c = new Call(this, std::move(r.cmd), r.done, r.ctx, r.deadline, -1);
  c->pinned = node;
  route(c, false);
}

void ClusterTopology::route(Call *c, bool blocking) {
  int node = c->pinned >= 0     ? c->pinned
             : c->ask_node >= 0 ? c->ask_node
             : c->slot >= 0     ? owner_[c->slot].load()
                                : -1;
  if (node < 0 && c->slot < 0 && c->pinned < 0) {
    std::lock_guard<std::mutex> lock(mu_);
    node = primaries_.empty() ? (have_map_.load() ? -1 : 0) : primaries_[0];
  }
  if (node >= 0) {
    const bool asking = c->ask_node >= 0;
    c->ask_node = -1;
    send(c, nodes_[node].load()->pipeline, asking, blocking);
    return;
  }
  std::string why;
  Errc code = Errc::store;
  bool fatal = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fatal = !have_map_.load() && map_fatal_;
    if (!have_map_.load()) {
      code = map_code_ == Errc::ok ? Errc::connect : map_code_;
      why = map_error_.empty() ? "cluster: no slot map yet from " + seed_text()
                               : map_error_;
    } else {
      why = "store: cluster: slot " + std::to_string(c->slot) +
            " is not served by any node" +
            (map_error_.empty() ? "" : " (" + map_error_ + ")");
    }
  }
  want_refresh();
  if (fatal) {
    deliver_error(c, code, why);
    return;
  }
  park(c, monotonic_ns() + kRetryNs, code, why);
}

// ---- answers ---------------------------------------------------------------

bool ClusterTopology::handled(Call *c, CallResult &r) {
  if (r.code != Errc::ok) {
    // The node is down, or its connection broke: the cluster may be
    // failing over. Ask for a new map and try again until the deadline.
    if (c->pinned >= 0) return false;
    want_refresh();
    park(c, monotonic_ns() + kRetryNs, r.code, r.message);
    return true;
  }
  const std::string &text = r.reply->str;
  int slot;
  std::string host;
  uint16_t port;
  const bool moved = parse_redirect(text, "MOVED", slot, host, port);
  if (moved || parse_redirect(text, "ASK", slot, host, port)) {
    (moved ? moved_ : ask_).fetch_add(1, std::memory_order_relaxed);
    if (moved) want_refresh();
    if (c->pinned >= 0) return false;
    if (++c->hops > kMaxHops) {
      // Nodes that disagree send a command back and forth: during a
      // migration the source may already name the target while the target
      // does not yet own the slot. That settles within moments; the
      // command waits for a new map, then tries again, until its deadline.
      c->hops = 0;
      c->ask_node = -1;
      park(c, monotonic_ns() + kRetryNs, Errc::store,
           "store: redirection loop: " + text);
      return true;
    }
    int node;
    {
      std::lock_guard<std::mutex> lock(mu_);
      node = node_for(host, port);
      if (node >= 0 && moved) owner_[slot].store(static_cast<int16_t>(node));
    }
    if (node < 0) return false;
    if (!moved) c->ask_node = node;
    route(c, false);
    return true;
  }
  if (starts_with(text, "TRYAGAIN")) {
    // A multi-key command during a migration: the keys settle soon.
    park(c, monotonic_ns() + kRetryNs, Errc::store, "store: " + text);
    return true;
  }
  if (starts_with(text, "CLUSTERDOWN") || starts_with(text, "READONLY") ||
      starts_with(text, "MASTERDOWN") || starts_with(text, "LOADING")) {
    // The cluster is reorganising (a failover, a demoted primary).
    want_refresh();
    park(c, monotonic_ns() + kRetryNs, Errc::store, "store: " + text);
    return true;
  }
  return false;
}

// ---- the slot map
// ------------------------------------------------------------

int64_t ClusterTopology::periodic(int64_t now) {
  Request refresh;
  int refresh_node = -1;
  int64_t next = INT64_MAX;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (refresh_wanted_.load() && !refresh_in_flight_) {
      if (now >= last_refresh_ns_ + kRefreshGapNs) {
        // Ask the primaries in turn, then any node we know (the seeds).
        const size_t n = node_count_.load();
        for (size_t k = 0; k < n && refresh_node < 0; ++k) {
          const int i = static_cast<int>((refresh_rr_ + k) % n);
          if (nodes_[i].load()->pipeline.state_now() != ConnState::down ||
              k + 1 == n)
            refresh_node = i;
        }
        refresh_rr_ = static_cast<size_t>(refresh_node) + 1;
        refresh_wanted_.store(false);
        refresh_in_flight_ = true;
        last_refresh_ns_ = now;
        format_command(slots_command_
                           ? std::vector<std::string_view>{"CLUSTER", "SLOTS"}
                           : std::vector<std::string_view>{"CLUSTER", "SHARDS"},
                       refresh.cmd);
        refresh.deadline = own_deadline(s_, now);
        refresh.done = &ClusterTopology::on_map;
        refresh.ctx = this;
      } else {
        next = last_refresh_ns_ + kRefreshGapNs;
      }
    }
  }
  if (refresh_node >= 0)
    nodes_[refresh_node].load()->pipeline.submit(std::move(refresh));
  return next;
}

void ClusterTopology::want_refresh() {
  if (refresh_wanted_.exchange(true)) return;
  retry_parked_now();  // runs periodic on the I/O thread's next turn
}

void ClusterTopology::on_map(void *ctx, CallResult &&r) {
  static_cast<ClusterTopology *>(ctx)->map_answered(std::move(r));
}

void ClusterTopology::map_answered(CallResult &&r) {
  ClusterMap map;
  std::string why;
  Errc code = Errc::ok;
  bool retry_now = false, fatal = false;
  if (r.code != Errc::ok) {
    code = r.code;
    why = "cluster: cannot read the slot map from " + seed_text() + ": " +
          r.message;
  } else if (r.reply->type == Reply::Type::error) {
    const std::string &text = r.reply->str;
    code = Errc::store;
    if (text.find("cluster support disabled") != std::string::npos) {
      why =
          "store: cluster: the server is not in cluster mode "
          "(redis+cluster:// needs a Redis Cluster; use redis:// for a "
          "single server)";
      fatal = true;
    } else if (!slots_command_ &&
               (text.find("unknown subcommand") != std::string::npos ||
                text.find("unknown command") != std::string::npos)) {
      std::lock_guard<std::mutex> lock(mu_);
      slots_command_ = true;  // before Redis 7.0: CLUSTER SLOTS
      retry_now = true;
      why = "cluster: " + text;
    } else {
      why = "cluster: the slot map was refused: " + text;
    }
  } else {
    const bool ok = slots_command_ ? parse_cluster_slots(*r.reply, map, why)
                                   : parse_cluster_shards(
                                         *r.reply, s_.tls.enabled, map, why);
    if (!ok) {
      code = Errc::protocol;
      why = "cluster: malformed slot map: " + why;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    refresh_in_flight_ = false;
    if (retry_now) last_refresh_ns_ = INT64_MIN / 2;
    map_fatal_ = fatal;
    if (code != Errc::ok) {
      map_code_ = code;
      map_error_ = why;
    }
  }
  if (fatal) {  // what waits for a map is answered now (see route)
    retry_parked_now();
    return;
  }
  if (code != Errc::ok) {
    want_refresh();
    return;
  }
  install(map);
  retry_parked_now();  // what waited for a map goes now
}

void ClusterTopology::install(const ClusterMap &map) {
  std::string changed;  // logged after the lock is released
  install_locked(map, changed);
  const std::shared_ptr<LogSink> &log = shared_.settings.log;
  if (log && !changed.empty()) log->log(LogLevel::info, changed);
}

void ClusterTopology::install_locked(const ClusterMap &map,
                                     std::string &changed) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> index(map.primaries.size(), -1);
  std::vector<int> primaries;
  for (size_t i = 0; i < map.primaries.size(); ++i) {
    index[i] = node_for(map.primaries[i].host, map.primaries[i].port);
    if (index[i] >= 0) primaries.push_back(index[i]);
  }
  for (size_t s = 0; s < kClusterSlots; ++s) {
    const int16_t o = map.owner[s];
    owner_[s].store(o < 0 || index[o] < 0 ? -1
                                          : static_cast<int16_t>(index[o]));
  }
  if (primaries != primaries_ || !have_map_.load()) {
    changed =
        "tollgate: cluster slot map read: " + std::to_string(primaries.size()) +
        " primaries (";
    for (size_t i = 0; i < primaries.size(); ++i)
      changed += (i ? ", " : "") + nodes_[primaries[i]].load()->text;
    changed += ")";
  }
  primaries_ = std::move(primaries);
  const size_t uncovered = map.uncovered();
  map_code_ = uncovered ? Errc::store : Errc::ok;
  map_error_ = uncovered
                   ? std::to_string(uncovered) +
                         " slots are not served by any node (slot " +
                         std::to_string(map.first_uncovered()) + " is one)"
                   : "";
  have_map_.store(true);
  map_at_ns_.store(monotonic_ns());
  refreshes_.fetch_add(1, std::memory_order_relaxed);
}

// ---- admin -----------------------------------------------------------------

std::vector<std::string> ClusterTopology::primaries() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (int i : primaries_) out.push_back(nodes_[i].load()->text);
  return out;
}

void ClusterTopology::note_ping(int64_t rtt_us) {
  std::lock_guard<std::mutex> lock(mu_);
  last_ping_us_ = rtt_us;
}

TransportStats ClusterTopology::stats() const {
  TransportStats out;
  out.cluster = true;
  std::vector<int> primaries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    primaries = primaries_;
    out.last_error = map_error_;
    out.last_ping_us = last_ping_us_;
  }
  bool any_down = false, all_ready = !primaries.empty();
  for (size_t i = 0; i < node_count_.load(); ++i) {
    const Node *node = nodes_[i].load();
    const TransportStats p = node->pipeline.stats();
    NodeStats n;
    n.address = node->text;
    n.primary = std::find(primaries.begin(), primaries.end(),
                          static_cast<int>(i)) != primaries.end();
    n.started = node->pipeline.started();
    n.state = p.state;
    n.in_flight = p.in_flight;
    n.failures = p.failures;
    n.reconnects = p.reconnects;
    n.last_error = p.last_error;
    n.rtt = p.rtt;
    out.rtt.add(p.rtt);
    out.in_flight += p.in_flight;
    out.reconnects += p.reconnects;
    out.failures += p.failures;
    out.caller_written += p.caller_written;
    out.spun_waits = p.spun_waits;
    out.lone_wait_us = p.lone_wait_us;
    if (n.primary) {
      if (out.server_version.empty()) out.server_version = p.server_version;
      if (n.started && p.state == ConnState::down) any_down = true;
      if (!n.started || p.state != ConnState::ready) all_ready = false;
      if (out.last_error.empty()) out.last_error = p.last_error;
    }
    out.nodes.push_back(std::move(n));
  }
  out.state = any_down    ? ConnState::down
              : all_ready ? ConnState::ready
                          : ConnState::connecting;
  const int64_t at = map_at_ns_.load();
  out.slot_map_age_ms =
      have_map_.load() ? (monotonic_ns() - at) / kMs : int64_t{-1};
  out.slot_map_refreshes = refreshes_.load();
  out.moved = moved_.load();
  out.ask = ask_.load();
  return out;
}

}  // namespace tollgate::redis
