// Reading a Redis Cluster's layout: the slot map from CLUSTER SHARDS
// (Redis 7+) or CLUSTER SLOTS (older), and the target of a -MOVED or -ASK
// redirection. Pure functions over parsed replies; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tollgate/redis/resp.hpp"
#include "tollgate/redis/slot.hpp"

namespace tollgate::redis {

struct ClusterNodeInfo {
  std::string host;  // IPv6 literals without brackets
  uint16_t port = 0;
  std::string id;  // the node's 40-character id; "" if unknown
};

struct ClusterMap {
  std::vector<ClusterNodeInfo> primaries;  // those that own slots
  // owner[slot]: an index into primaries, or -1 if no node serves it.
  std::vector<int16_t> owner = std::vector<int16_t>(kClusterSlots, -1);
  size_t uncovered() const;
  int first_uncovered() const;  // -1 if every slot is served
};

// CLUSTER SHARDS: every shard's slot ranges and its primary's address
// (the TLS port when `tls`; the endpoint, else the ip). False with `why`
// if the reply is not a shard list.
bool parse_cluster_shards(const Reply &reply, bool tls, ClusterMap &out,
                          std::string &why);
// CLUSTER SLOTS: [start, end, [host, port, id], replicas...] per range.
bool parse_cluster_slots(const Reply &reply, ClusterMap &out, std::string &why);

// "-MOVED 3999 127.0.0.1:6381" or "-ASK 3999 [::1]:6381" (the text after
// the '-'): the slot and the target. False if it is not one.
bool parse_redirect(std::string_view text, std::string_view verb, int &slot,
                    std::string &host, uint16_t &port);

}  // namespace tollgate::redis
