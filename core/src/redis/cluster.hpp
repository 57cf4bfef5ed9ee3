// Redis Cluster: each command goes to the primary that owns its key's
// hash-tag slot. The slot map comes from CLUSTER SHARDS (CLUSTER SLOTS on
// servers before 7.0), asked of any node the transport knows (the URL's
// seeds first); every node gets its own pipeline, whose connections open
// when the first command goes there.
//
// Redirections: -MOVED updates the map for that slot, sends the command
// again at the named node and asks for a full refresh in the background
// (coalesced, at most kRefreshesPerSecond); -ASK sends that one command to
// the named node after ASKING. -TRYAGAIN, -CLUSTERDOWN, -READONLY, a node
// that is down or a slot no node serves: the command waits (parked) and is
// tried again, until its deadline; then it fails with the last error.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cluster_map.hpp"
#include "topology.hpp"

namespace tollgate::redis {

class ClusterTopology final : public Topology, public LoopTicker {
 public:
  ClusterTopology(IoLoop &loop, ConnectionShared &shared);
  ~ClusterTopology() override;

  void submit(Request r, int slot, bool blocking) override;
  std::vector<std::string> primaries() override;
  void submit_to(const std::string &primary, Request r) override;
  bool clustered() const override { return true; }
  TransportStats stats() const override;
  void note_ping(int64_t rtt_us) override;

  void tick(int64_t now) override;
  int64_t next_tick() const override;

  struct Call;  // one command on its way, with what a redirection needs
  struct Node;

 private:
  static void on_reply(void *ctx, CallResult &&r);
  static void on_map(void *ctx, CallResult &&r);
  void route(Call *call, bool blocking);
  void send(Call *call, int node, bool asking, bool blocking);
  bool redirected(Call *call, const std::string &error);
  void park(Call *call, int64_t retry_at, Errc code, std::string why);
  void deliver(Call *call, CallResult &&r);
  int node_for(const std::string &host, uint16_t port);  // under mu_
  void want_refresh();
  void start_refresh(int64_t now);  // under mu_
  void map_answered(CallResult &&r);
  void install(const ClusterMap &map);
  std::string seed_text() const;

  IoLoop &loop_;
  ConnectionShared &shared_;
  const Settings &s_;

  // Nodes are only ever added (at most kMaxNodes), so a submitter reads
  // node i without a lock once node_count_ says it exists.
  static constexpr size_t kMaxNodes = 1024;
  std::unique_ptr<std::atomic<Node *>[]> nodes_;
  std::atomic<size_t> node_count_{0};
  // owner_[slot]: a node index; -1 while no map says.
  std::unique_ptr<std::atomic<int16_t>[]> owner_;
  std::atomic<bool> have_map_{false};
  std::atomic<int64_t> map_at_ns_{0};
  std::atomic<uint64_t> refreshes_{0}, moved_{0}, ask_{0};
  std::atomic<bool> refresh_wanted_{true};
  std::atomic<int64_t> next_tick_{0};

  mutable std::mutex mu_;  // below, and node creation
  std::deque<Call *> parked_;
  bool refresh_in_flight_ = false;
  int64_t last_refresh_ns_ = INT64_MIN / 2;
  size_t refresh_rr_ = 0;
  bool slots_command_ = false;  // the server lacks CLUSTER SHARDS
  std::vector<int> primaries_;  // node indices that own slots
  Errc map_code_ = Errc::ok;    // why the last refresh failed
  std::string map_error_;
  // The last refresh failed in a way waiting will not fix (the server is
  // not a cluster node): with no map, calls fail at once with map_error_.
  bool map_fatal_ = false;
  int64_t last_ping_us_ = -1;
};

}  // namespace tollgate::redis
