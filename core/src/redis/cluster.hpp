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
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cluster_map.hpp"
#include "routed.hpp"

namespace tollgate::redis {

class ClusterTopology final : public RoutedTopology {
 public:
  ClusterTopology(IoLoop &loop, ConnectionShared &shared);
  ~ClusterTopology() override;

  // A joinable command (a check) whose slot has a known owner goes
  // straight to that node's pipeline, where checks queued together leave
  // as one call; its completion sends it again through route() if the
  // node answers that it did not run it (redis_store.cpp). Anything else
  // travels as a Call (routed.hpp).
  void submit(Request r, int slot, bool blocking) override;
  std::vector<std::string> primaries() override;
  void submit_to(const std::string &primary, Request r) override;
  bool clustered() const override { return true; }
  TransportStats stats() const override;
  void note_ping(int64_t rtt_us) override;

  struct Node;

 private:
  void route(Call *c, bool blocking) override;
  bool handled(Call *c, CallResult &r) override;
  int64_t periodic(int64_t now) override;

  static void on_map(void *ctx, CallResult &&r);
  int node_for(const std::string &host, uint16_t port);  // under mu_
  void want_refresh();
  void map_answered(CallResult &&r);
  void install(const ClusterMap &map);
  // Under mu_; `changed`: the log line when the primaries changed.
  void install_locked(const ClusterMap &map, std::string &changed);
  std::string seed_text() const;

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

  mutable std::mutex mu_;  // below, and node creation
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
