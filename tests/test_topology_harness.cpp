// The Redis Cluster and Sentinel harness (tests/servers/topology.py through
// support/topology.hpp) is real: the servers it reports exist, own the
// slots, replicate, fail over, speak TLS when asked, and are gone once the
// Topology object is.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/redis_server.hpp"
#include "support/topology.hpp"

using tollgate_test::RespValue;
using tollgate_test::SlotRange;
using tollgate_test::Topology;
using tollgate_test::TopologyKind;
using tollgate_test::TopologyOptions;

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

bool eventually(const std::function<bool()> &pred, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      if (pred()) return true;
    } catch (const std::exception &) {
      // A node between states; ask again.
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool process_exists(pid_t pid) {
  return kill(pid, 0) == 0 || errno != ESRCH;
}

// What must be gone once the Topology is: its servers, the script, the dirs.
struct Footprint {
  std::vector<pid_t> pids;
  std::vector<std::string> dirs;
  explicit Footprint(const Topology &t) { add(t); }
  void add(const Topology &t) {
    for (const pid_t p : t.server_pids()) pids.push_back(p);
    pids.push_back(t.script_pid());
    for (const auto &n : t.nodes()) dirs.push_back(n.dir);
    for (const auto &s : t.sentinels()) dirs.push_back(s.dir);
  }
  void require_gone() const {
    for (const pid_t p : pids) {
      INFO("pid " << p);
      CHECK_FALSE(process_exists(p));
    }
    for (const std::string &d : dirs) {
      INFO("dir " << d);
      CHECK_FALSE(std::filesystem::exists(d));
    }
  }
};

std::string info_field(const RespValue &info, const std::string &key) {
  const std::string needle = key + ":";
  size_t at = info.str.find(needle);
  while (at != std::string::npos && at != 0 && info.str[at - 1] != '\n')
    at = info.str.find(needle, at + 1);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  return info.str.substr(start, info.str.find_first_of("\r\n", start) - start);
}

bool is_hex40(const std::string &s) {
  return s.size() == 40 &&
         s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// SENTINEL REPLICAS / SENTINELS entries as maps.
std::vector<std::map<std::string, std::string>> entries(const RespValue &v) {
  std::vector<std::map<std::string, std::string>> out;
  for (const RespValue &e : v.elements) {
    std::map<std::string, std::string> m;
    for (size_t i = 0; i + 1 < e.elements.size(); i += 2)
      m[e.elements[i].str] = e.elements[i + 1].str;
    out.push_back(std::move(m));
  }
  return out;
}

TopologyOptions sentinel_options() {
  TopologyOptions o;
  o.kind = TopologyKind::sentinel;
  return o;
}

}  // namespace

TEST_CASE(
    "topology: a cluster has 3 primaries with a replica each and covers all "
    "16384 slots",
    "[topology]") {
  std::optional<Footprint> footprint;
  {
    Topology t;
    footprint.emplace(t);
    REQUIRE(t.kind() == TopologyKind::cluster);
    REQUIRE_FALSE(t.tls());
    REQUIRE(t.ca_file().empty());
    t.ping();

    REQUIRE(t.nodes().size() == 6);
    std::set<uint16_t> primaries, replicas_of;
    std::set<std::string> ids;
    for (const auto &n : t.nodes()) {
      INFO("node " << n.port);
      CHECK(n.host == "127.0.0.1");
      CHECK(n.pid > 0);
      CHECK(process_exists(n.pid));
      CHECK(is_hex40(n.id));
      CHECK(n.bus_port != 0);
      CHECK(n.bus_port != n.port);
      CHECK(std::filesystem::is_directory(n.dir));
      CHECK(t.url().find("127.0.0.1:" + std::to_string(n.port)) !=
            std::string::npos);
      ids.insert(n.id);
      // Each node is what the JSON says it is.
      const RespValue myid = t.query(n.port, {"CLUSTER", "MYID"});
      CHECK(myid.str == n.id);
      const RespValue info = t.query(n.port, {"CLUSTER", "INFO"});
      CHECK(info_field(info, "cluster_state") == "ok");
      CHECK(info_field(info, "cluster_known_nodes") == "6");
      const RespValue repl = t.query(n.port, {"INFO", "replication"});
      if (n.role == "primary") {
        primaries.insert(n.port);
        CHECK(info_field(repl, "role") == "master");
        CHECK(info_field(repl, "connected_slaves") == "1");
      } else {
        REQUIRE(n.role == "replica");
        replicas_of.insert(n.primary_port);
        CHECK(info_field(repl, "role") == "slave");
        CHECK(info_field(repl, "master_port") ==
              std::to_string(n.primary_port));
        CHECK(info_field(repl, "master_link_status") == "up");
      }
    }
    CHECK(t.url().rfind("redis+cluster://", 0) == 0);
    CHECK(ids.size() == 6);
    CHECK(primaries.size() == 3);
    CHECK(replicas_of == primaries);  // one replica for each primary

    // Every slot once, every primary owns some, each range lists its
    // replica, and every node says the same.
    const std::vector<SlotRange> slots = t.slots();
    int next = 0;
    std::map<uint16_t, int> owned;
    for (const SlotRange &s : slots) {
      CHECK(s.start == next);
      next = s.end + 1;
      owned[s.primary] += s.end - s.start + 1;
      REQUIRE(s.replicas.size() == 1);
      CHECK(t.node(s.replicas[0]).primary_port == s.primary);
    }
    CHECK(next == 16384);
    CHECK(owned.size() == 3);
    for (const uint16_t p : primaries) CHECK(owned[p] > 5000);
    const std::vector<uint16_t> pp = t.primary_ports();
    CHECK(std::set<uint16_t>(pp.begin(), pp.end()) == primaries);
    CHECK(t.wait_cluster_ok(seconds(1)));
  }
  footprint->require_gone();
}

TEST_CASE("topology: keys with different hash tags land on all 3 primaries",
          "[topology]") {
  Topology t;
  const std::vector<uint16_t> primaries = t.primary_ports();
  REQUIRE(primaries.size() == 3);
  std::map<uint16_t, std::string> key_on;  // primary port -> a key it owns
  for (int i = 0; key_on.size() < 3 && i < 100; ++i) {
    const std::string key = "{tag" + std::to_string(i) + "}:k";
    const uint16_t owner = t.owner_of_slot(t.key_slot(key));
    key_on.emplace(owner, key);
  }
  REQUIRE(key_on.size() == 3);
  for (const auto &[port, key] : key_on) {
    INFO("key " << key << " on " << port);
    CHECK(t.query(port, {"SET", key, "v-" + key}).str == "OK");
    CHECK(t.query(port, {"GET", key}).str == "v-" + key);
    CHECK(t.query(port, {"DBSIZE"}).integer == 1);
    // Any other primary redirects to the owner.
    const uint16_t other = port == primaries[0] ? primaries[1] : primaries[0];
    const RespValue moved = t.query(other, {"SET", key, "x"});
    REQUIRE(moved.is_error());
    CHECK(moved.str == "MOVED " + std::to_string(t.key_slot(key)) +
                           " 127.0.0.1:" + std::to_string(port));
    // And the owner's replica gets the write.
    const auto replica =
        std::find_if(t.nodes().begin(), t.nodes().end(),
                     [&](const auto &n) { return n.primary_port == port; });
    REQUIRE(replica != t.nodes().end());
    CHECK(eventually(
        [&] { return t.query(replica->port, {"DBSIZE"}).integer == 1; },
        seconds(10)));
  }
}

TEST_CASE("topology: SIGKILL of a primary makes its replica the primary",
          "[topology][slow]") {
  std::optional<Footprint> footprint;
  {
    Topology t;
    footprint.emplace(t);
    const uint16_t old_primary = t.owner_of_slot(0);
    REQUIRE(old_primary != 0);
    const std::vector<SlotRange> before = t.slots();
    REQUIRE(before.front().start == 0);
    REQUIRE(before.front().replicas.size() == 1);
    const uint16_t replica = before.front().replicas[0];
    CHECK(t.node(replica).primary_port == old_primary);

    const auto killed_at = Clock::now();
    t.kill9(old_primary);
    CHECK(t.node(old_primary).pid == -1);
    const uint16_t promoted =
        t.wait_for_new_primary_of(0, old_primary, seconds(15));
    const auto took = Clock::now() - killed_at;
    REQUIRE(promoted == replica);
    CHECK(took < seconds(10));
    REQUIRE(t.wait_cluster_ok(seconds(15)));
    CHECK(t.owner_of_slot(0) == replica);
    // The cluster takes writes for the slots that moved.
    std::string key;
    for (int i = 0; key.empty() && i < 200; ++i) {
      const std::string k = "{f" + std::to_string(i) + "}";
      if (t.owner_of_slot(t.key_slot(k)) == replica) key = k;
    }
    REQUIRE_FALSE(key.empty());
    CHECK(t.query(replica, {"SET", key, "1"}).str == "OK");

    // The old primary comes back as the new one's replica.
    const pid_t pid = t.restart(old_primary);
    CHECK(pid > 0);
    CHECK(t.node(old_primary).pid == pid);
    footprint->pids.push_back(pid);
    REQUIRE(t.wait_cluster_ok(seconds(20)));
    const RespValue repl = t.query(old_primary, {"INFO", "replication"});
    CHECK(info_field(repl, "role") == "slave");
    CHECK(info_field(repl, "master_port") == std::to_string(replica));
    CHECK(eventually(
        [&] { return t.query(old_primary, {"DBSIZE"}).integer == 1; },
        seconds(10)));
    t.ping();
  }
  footprint->require_gone();
}

TEST_CASE(
    "topology: a sentinel set names its primary and SENTINEL FAILOVER promotes "
    "the replica",
    "[topology][slow]") {
  std::optional<Footprint> footprint;
  {
    Topology t(sentinel_options());
    footprint.emplace(t);
    REQUIRE(t.kind() == TopologyKind::sentinel);
    REQUIRE(t.master_name() == "mymaster");
    REQUIRE(t.nodes().size() == 2);
    REQUIRE(t.sentinels().size() == 3);
    const auto &primary = t.nodes()[0];
    const auto &replica = t.nodes()[1];
    REQUIRE(primary.role == "primary");
    REQUIRE(replica.role == "replica");
    CHECK(replica.primary_port == primary.port);
    std::string url = "redis+sentinel://";
    for (const auto &s : t.sentinels()) {
      if (&s != &t.sentinels().front()) url += ",";
      url += "127.0.0.1:" + std::to_string(s.port);
    }
    CHECK(t.url() == url + "/mymaster");

    CHECK(info_field(t.query(replica.port, {"INFO", "replication"}),
                     "master_link_status") == "up");
    for (const auto &s : t.sentinels()) {
      INFO("sentinel " << s.port);
      CHECK(process_exists(s.pid));
      CHECK(t.current_master(s.port).port == primary.port);
      const auto reps =
          entries(t.query(s.port, {"SENTINEL", "REPLICAS", "mymaster"}));
      REQUIRE(reps.size() == 1);
      CHECK(reps[0].at("port") == std::to_string(replica.port));
      CHECK(entries(t.query(s.port, {"SENTINEL", "SENTINELS", "mymaster"}))
                .size() == 2);
    }

    const auto asked_at = Clock::now();
    REQUIRE(t.query(t.sentinels()[0].port, {"SENTINEL", "FAILOVER", "mymaster"})
                .str == "OK");
    // Every sentinel names the replica, which says it is the master.
    CHECK(eventually(
        [&] {
          for (const auto &s : t.sentinels())
            if (t.current_master(s.port).port != replica.port) return false;
          return info_field(t.query(replica.port, {"INFO", "replication"}),
                            "role") == "master";
        },
        seconds(10)));
    CHECK(Clock::now() - asked_at < seconds(10));
    // The sentinels turn the old primary into its replica (at their next
    // INFO round, about 10 s).
    CHECK(eventually(
        [&] {
          const RespValue r = t.query(primary.port, {"INFO", "replication"});
          return info_field(r, "role") == "slave" &&
                 info_field(r, "master_port") == std::to_string(replica.port) &&
                 info_field(r, "master_link_status") == "up";
        },
        seconds(30)));
  }
  footprint->require_gone();
}

TEST_CASE("topology: a TLS cluster forms and answers over TLS", "[topology]") {
  std::optional<Footprint> footprint;
  {
    TopologyOptions o;
    o.tls = true;
    Topology t(o);
    footprint.emplace(t);
    REQUIRE(t.tls());
    CHECK(t.url().rfind("rediss+cluster://", 0) == 0);
    REQUIRE(std::filesystem::path(t.ca_file()).is_absolute());
    REQUIRE(std::filesystem::exists(t.ca_file()));
    REQUIRE(t.nodes().size() == 6);
    for (const auto &n : t.nodes()) {
      INFO("node " << n.port);
      // redis-cli over TLS, verifying against the test CA.
      const auto ping = t.cli(n.port, {"PING"});
      CHECK(ping.exit_code == 0);
      CHECK(ping.output == "PONG\n");
      const auto info = t.cli(n.port, {"CLUSTER", "INFO"});
      CHECK(info.output.find("cluster_state:ok") != std::string::npos);
      // The port speaks nothing but TLS.
      const auto plain =
          tollgate_test::run_process({"redis-cli", "-h", "127.0.0.1", "-p",
                                      std::to_string(n.port), "PING"},
                                     seconds(10));
      CHECK(plain.output.find("PONG") == std::string::npos);
    }
    // The C++ query helper speaks TLS too; replication runs over it.
    CHECK(t.wait_cluster_ok(seconds(5)));
    for (const auto &n : t.nodes())
      if (n.role == "replica")
        CHECK(info_field(t.query(n.port, {"INFO", "replication"}),
                         "master_link_status") == "up");
  }
  footprint->require_gone();
}

TEST_CASE("topology: a start-up failure throws with the script's message",
          "[topology]") {
  TopologyOptions o;
  o.primaries = 2;  // redis-cli --cluster create needs 3
  REQUIRE_THROWS_WITH(Topology(o),
                      Catch::Contains("a cluster needs at least 3 primaries"));
}
