// Redis Sentinel: commands go to the master that the sentinels name.
// The sentinels are asked in turn (SENTINEL GET-MASTER-ADDR-BY-NAME), the
// answer is confirmed with ROLE on the data node, and a subscription to
// +switch-master on one sentinel follows failovers as Sentinel announces
// them (re-established on another sentinel when its connection drops). A
// -READONLY reply, a node that is down, or ROLE saying it is no longer the
// master (checked every second) sends the limiter back to the sentinels;
// meanwhile commands wait, parked, until their deadline.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "routed.hpp"

namespace tollgate::redis {

// The replies Sentinel's discovery reads, parsed without I/O (the fuzz
// target tests/fuzz/fuzz_sentinel.cpp calls them too).
//
// SENTINEL GET-MASTER-ADDR-BY-NAME: [host, port], or nil / [] when the
// sentinel does not know the name, or an error reply.
enum class MasterAddr { found, unknown, refused, malformed };
MasterAddr parse_master_addr(const Reply &reply, std::string &host,
                             uint16_t &port);
// ROLE: the role the node names ("master", "slave", ...), "" if the reply
// is not a ROLE answer.
std::string parse_role(const Reply &reply);
// A +switch-master message for `master_name`: ["message", "+switch-master",
// "<name> <old ip> <old port> <new ip> <new port>"]: the new address.
bool parse_switch_master(const Reply &reply, std::string_view master_name,
                         std::string &host, uint16_t &port);

class SentinelTopology final : public RoutedTopology, public PipelineHooks {
 public:
  SentinelTopology(IoLoop &loop, ConnectionShared &shared);
  ~SentinelTopology() override;

  std::vector<std::string> primaries() override;
  void submit_to(const std::string &primary, Request r) override;
  TransportStats stats() const override;
  void note_ping(int64_t rtt_us) override;

  void pipeline_ready(Pipeline &p) override;
  void pipeline_failed(Pipeline &p) override;
  void pipeline_push(Pipeline &p, const Reply &reply) override;

  struct Node;

 private:
  void route(Call *c, bool blocking) override;
  bool handled(Call *c, CallResult &r) override;
  int64_t periodic(int64_t now) override;

  int node_for(const std::string &host, uint16_t port);  // under mu_
  void want_discovery();
  struct Send {  // a request prepared under mu_, submitted after it
    Pipeline *p = nullptr;
    Request r;
  };
  Send ask_next(int64_t now);  // under mu_: the next sentinel, or give up
  Send role_request(int node, int64_t now);  // under mu_
  static void on_master_addr(void *ctx, CallResult &&r);
  static void on_role(void *ctx, CallResult &&r);
  static void on_subscribed(void *ctx, CallResult &&r);
  std::string sentinels_text() const;

  ConnectionShared &shared_;
  const Settings &s_;
  // The log line of a move from master `from` to `to` (under mu_), and its
  // delivery (outside it).
  std::string switch_text(int from, int to) const;
  void log_switch(const std::string &text) const;
  // The sentinels' own connection settings: their credentials, no
  // database, no scripts.
  Settings sentinel_settings_;
  std::vector<std::string> no_scripts_;
  FunctionLibrary no_functions_;
  ConnectionShared sentinel_shared_;
  std::vector<std::unique_ptr<Pipeline>> queries_;      // one per sentinel
  std::vector<std::unique_ptr<Pipeline>> subscribers_;  // one per sentinel

  static constexpr size_t kMaxNodes = 256;
  std::unique_ptr<std::atomic<Node *>[]> nodes_;
  std::atomic<size_t> node_count_{0};
  std::atomic<int> master_{-1};
  std::atomic<bool> discovery_wanted_{true};
  std::atomic<uint64_t> switches_{0};

  mutable std::mutex mu_;
  bool asking_ = false;  // a sentinel or a ROLE answer is awaited
  size_t asking_sentinel_ = 0;
  int confirming_ = -1;  // the node whose ROLE is awaited
  // Bumped whenever the master changes: a ROLE answer asked before a
  // +switch-master (the old master, not yet demoted, still says "master")
  // must not undo the switch.
  uint64_t epoch_ = 0;
  uint64_t confirm_epoch_ = 0;
  int last_master_ = -1;  // the last node known as master (switches)
  size_t ask_at_ = 0;     // the sentinel asked (or to ask) next
  size_t asked_ = 0;      // sentinels asked in this round
  size_t unknown_ = 0;    // of them, those that do not know the master
  int64_t last_round_ns_ = INT64_MIN / 2;
  int64_t next_role_check_ns_ = 0;
  size_t subscriber_ = 0;  // the sentinel whose +switch-master we follow
  bool subscriber_started_ = false;
  Errc code_ = Errc::connect;
  std::string error_;
  bool fatal_ = false;  // no sentinel knows the master name
  std::vector<std::string> round_errors_;
  int64_t last_ping_us_ = -1;
};

}  // namespace tollgate::redis
