// A Redis Cluster or a Sentinel set on loopback for the tests, started by
// tests/servers/topology.py (see docs/testing.md, "Cluster and Sentinel
// servers").
//
// The script starts every redis-server, waits until the topology is ready,
// prints it as one JSON line and then answers commands on its stdin; this
// class runs it on a socket pair, reads that line, and sends `restart` and
// `ping`. Closing the script's stdin (the destructor) makes it stop every
// process it started and remove its temp dirs; if this process dies first,
// the script gets SIGTERM (PR_SET_PDEATHSIG) and its servers SIGKILL.
//
// Threads: create and destroy a Topology on a thread that outlives it (the
// death signal follows the thread that forked). query() and the cluster and
// sentinel helpers may run on any thread; restart(), ping() and kill9() on
// one thread at a time.
#pragma once

#include <openssl/ssl.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "support/redis_server.hpp"

namespace tollgate_test {

enum class TopologyKind { cluster, sentinel };

struct TopologyOptions {
  TopologyKind kind = TopologyKind::cluster;
  bool tls = false;  // cluster only
  int primaries = 3;
  int replicas_per_primary = 1;
  std::string master_name = "mymaster";  // sentinel only
  // Bounds the script's start-up (its --timeout).
  std::chrono::seconds start_timeout{60};
};

struct TopologyNode {
  std::string host;
  uint16_t port = 0;
  pid_t pid = -1;    // -1 after kill9()
  std::string role;  // "primary" or "replica", at start-up
  std::string id;    // the cluster node id (40 hex); "" in a sentinel set
  std::string dir;
  uint16_t bus_port = 0;      // the cluster bus; 0 in a sentinel set
  uint16_t primary_port = 0;  // a replica's primary at start-up, else 0
};

struct SentinelNode {
  std::string host;
  uint16_t port = 0;
  pid_t pid = -1;
  std::string dir;
};

struct HostPort {
  std::string host;
  uint16_t port = 0;
  bool operator==(const HostPort &) const = default;
};

// One CLUSTER SLOTS entry.
struct SlotRange {
  int start = 0, end = 0;  // inclusive
  uint16_t primary = 0;
  std::vector<uint16_t> replicas;  // sorted
  bool operator==(const SlotRange &) const = default;
};

class Topology {
 public:
  // Starts the script and waits for its JSON line; throws
  // std::runtime_error with the script's stderr if start-up fails.
  explicit Topology(TopologyOptions options = {});
  ~Topology();
  Topology(const Topology &) = delete;
  Topology &operator=(const Topology &) = delete;

  TopologyKind kind() const { return options_.kind; }
  bool tls() const { return tls_; }
  // redis+cluster://h:p,... (rediss+cluster:// with TLS), or
  // redis+sentinel://h:s1,h:s2,h:s3/<master name>.
  const std::string &url() const { return url_; }
  const std::vector<TopologyNode> &nodes() const { return nodes_; }
  const std::vector<SentinelNode> &sentinels() const { return sentinels_; }
  const std::string &master_name() const { return master_name_; }
  const std::string &ca_file() const { return ca_; }  // "" without TLS
  pid_t script_pid() const { return script_; }
  // The node (data node or sentinel) on `port`; throws if none.
  const TopologyNode &node(uint16_t port) const;
  // Every server process started, as known now (nodes and sentinels).
  std::vector<pid_t> server_pids() const;

  // SIGKILL by PID, then waits until the port refuses connections.
  void kill9(uint16_t port);
  // Starts that node or sentinel again on the same port, directory and
  // config (it rejoins); returns once it answers PING, with its new PID.
  pid_t restart(uint16_t port);
  // A round trip to the script.
  void ping();

  // One command on a new connection (TLS, verified against the test CA,
  // for a TLS topology). Error replies are returned; a connection failure
  // or a timeout throws.
  RespValue query(
      uint16_t port, const std::vector<std::string> &args,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  // redis-cli -p <port> [--tls --cacert <ca>] <args...>
  ProcessResult cli(
      uint16_t port, const std::vector<std::string> &args,
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // ---- Cluster helpers (each asks the live nodes: pid > 0) ----
  // CLUSTER SLOTS of the first live node that answers, sorted by start.
  std::vector<SlotRange> slots() const;
  // The ports of the primaries that own slots now, sorted.
  std::vector<uint16_t> primary_ports() const;
  // The primary that owns `slot` now; 0 if none.
  uint16_t owner_of_slot(int slot) const;
  // CLUSTER KEYSLOT, asked of a live node.
  int key_slot(const std::string &key) const;
  // Until every live node says cluster_state:ok with all slots ok, their
  // CLUSTER SLOTS agree, cover all 16384 slots and name only live
  // primaries, and every live replica's link is up. False on timeout.
  bool wait_cluster_ok(std::chrono::milliseconds timeout) const;
  // Until every live node names the same primary, not old_port, for `slot`
  // and that node says role:master. Returns its port, or 0 on timeout.
  uint16_t wait_for_new_primary_of(int slot, uint16_t old_port,
                                   std::chrono::milliseconds timeout) const;

  // ---- Sentinel helpers ----
  // SENTINEL GET-MASTER-ADDR-BY-NAME asked of the first live sentinel that
  // answers (or of the one on `sentinel_port`); throws if none answers.
  HostPort current_master(uint16_t sentinel_port = 0) const;

 private:
  std::string request(const std::string &line,
                      std::chrono::milliseconds timeout);
  std::string read_line(std::chrono::steady_clock::time_point deadline);
  std::string script_stderr() const;
  void stop_script();
  bool cluster_ok_now() const;
  std::vector<SlotRange> slots_of(uint16_t port) const;

  TopologyOptions options_;
  pid_t owner_ = -1;   // the process that created this object
  pid_t script_ = -1;  // the script's PID, -1 once reaped
  int sock_ = -1;      // our end of its stdin and stdout
  int err_fd_ = -1;    // its stderr: an unlinked temp file
  std::string buf_;    // stdout read but not yet consumed
  SSL_CTX *ssl_ctx_ = nullptr;

  bool tls_ = false;
  std::string url_, master_name_, ca_;
  std::vector<TopologyNode> nodes_;
  std::vector<SentinelNode> sentinels_;
};

}  // namespace tollgate_test
