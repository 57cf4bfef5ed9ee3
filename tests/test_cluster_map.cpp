// Reading a cluster's layout (core/src/redis/cluster_map.cpp) from replies
// as a server sends them: CLUSTER SHARDS, CLUSTER SLOTS, -MOVED and -ASK,
// and replies that are not what they should be.
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "redis/cluster_map.hpp"
#include "tollgate/redis/resp.hpp"

using tollgate::redis::ClusterMap;
using tollgate::redis::parse_cluster_shards;
using tollgate::redis::parse_cluster_slots;
using tollgate::redis::parse_redirect;
using tollgate::redis::Reader;
using tollgate::redis::Reply;

namespace {

std::unique_ptr<Reply> parse(const std::string &resp) {
  Reader r;
  REQUIRE(r.feed(resp.data(), resp.size()));
  std::unique_ptr<Reply> out;
  REQUIRE(r.next(out) == Reader::Status::reply);
  return out;
}

std::string bulk(const std::string &s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

// One CLUSTER SHARDS entry (RESP2): slots [lo, hi] and a primary and a
// replica with the given ports.
std::string shard(int lo, int hi, int port, int replica_port,
                  const std::string &primary_health = "online") {
  auto node = [](const std::string &id, int p, const std::string &role,
                 const std::string &health) {
    return "*12\r\n" + bulk("id") + bulk(id) + bulk("port") + ":" +
           std::to_string(p) + "\r\n" + bulk("ip") + bulk("127.0.0.1") +
           bulk("endpoint") + bulk("127.0.0.1") + bulk("role") + bulk(role) +
           bulk("health") + bulk(health);
  };
  return "*4\r\n" + bulk("slots") + "*2\r\n:" + std::to_string(lo) +
         "\r\n:" + std::to_string(hi) + "\r\n" + bulk("nodes") + "*2\r\n" +
         node(std::string(40, 'a'), port, "master", primary_health) +
         node(std::string(40, 'b'), replica_port, "replica", "online");
}

}  // namespace

TEST_CASE("cluster map: CLUSTER SHARDS gives each slot its primary",
          "[cluster_map]") {
  const auto r =
      parse("*3\r\n" + shard(0, 5460, 7000, 7003) +
            shard(5461, 10922, 7001, 7004) + shard(10923, 16383, 7002, 7005));
  ClusterMap m;
  std::string why;
  REQUIRE(parse_cluster_shards(*r, false, m, why));
  REQUIRE(m.primaries.size() == 3);
  CHECK(m.primaries[0].port == 7000);
  CHECK(m.primaries[0].host == "127.0.0.1");
  CHECK(m.primaries[0].id == std::string(40, 'a'));
  CHECK(m.owner[0] == 0);
  CHECK(m.owner[5460] == 0);
  CHECK(m.owner[5461] == 1);
  CHECK(m.owner[16383] == 2);
  CHECK(m.uncovered() == 0);
  CHECK(m.first_uncovered() == -1);
}

TEST_CASE(
    "cluster map: a shard whose primary failed leaves its slots "
    "uncovered",
    "[cluster_map]") {
  const auto r = parse("*2\r\n" + shard(0, 99, 7000, 7003, "fail") +
                       shard(100, 16383, 7001, 7004));
  ClusterMap m;
  std::string why;
  REQUIRE(parse_cluster_shards(*r, false, m, why));
  CHECK(m.uncovered() == 100);
  CHECK(m.first_uncovered() == 0);
  CHECK(m.owner[100] == 0);
  CHECK(m.primaries.size() == 1);
}

TEST_CASE("cluster map: CLUSTER SLOTS, the older form", "[cluster_map]") {
  auto range = [](int lo, int hi, int port) {
    return "*4\r\n:" + std::to_string(lo) + "\r\n:" + std::to_string(hi) +
           "\r\n*3\r\n" + bulk("127.0.0.1") + ":" + std::to_string(port) +
           "\r\n" + bulk(std::string(40, 'c')) + "*3\r\n" + bulk("127.0.0.1") +
           ":" + std::to_string(port + 3) + "\r\n" + bulk(std::string(40, 'd'));
  };
  const auto r = parse("*3\r\n" + range(0, 8000, 7000) +
                       range(8001, 16000, 7001) + range(16001, 16383, 7000));
  ClusterMap m;
  std::string why;
  REQUIRE(parse_cluster_slots(*r, m, why));
  REQUIRE(m.primaries.size() == 2);  // 7000 owns two ranges, listed once
  CHECK(m.owner[16383] == 0);
  CHECK(m.owner[8001] == 1);
  CHECK(m.uncovered() == 0);
}

TEST_CASE("cluster map: malformed maps are refused with a reason",
          "[cluster_map]") {
  ClusterMap m;
  std::string why;
  SECTION("not a list") {
    CHECK_FALSE(parse_cluster_shards(*parse("+OK\r\n"), false, m, why));
    CHECK(why.find("did not answer with a list") != std::string::npos);
    CHECK_FALSE(parse_cluster_slots(*parse(":1\r\n"), m, why));
  }
  SECTION("a slot range out of 0-16383") {
    CHECK_FALSE(parse_cluster_shards(
        *parse("*1\r\n" + shard(0, 16384, 7000, 1)), false, m, why));
    CHECK(why.find("out of 0-16383") != std::string::npos);
  }
  SECTION("a reversed range") {
    CHECK_FALSE(parse_cluster_shards(*parse("*1\r\n" + shard(9, 3, 7000, 1)),
                                     false, m, why));
  }
  SECTION("a shard entry that is not a field list") {
    CHECK_FALSE(parse_cluster_shards(*parse("*1\r\n*3\r\n:1\r\n:2\r\n:3\r\n"),
                                     false, m, why));
  }
  SECTION("CLUSTER SLOTS with port 0") {
    const auto r = parse("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n" +
                         bulk("127.0.0.1") + ":0\r\n");
    CHECK_FALSE(parse_cluster_slots(*r, m, why));
    CHECK(why.find("port 0") != std::string::npos);
  }
}

TEST_CASE("cluster map: -MOVED and -ASK targets", "[cluster_map]") {
  int slot = -1;
  std::string host;
  uint16_t port = 0;
  REQUIRE(
      parse_redirect("MOVED 3999 127.0.0.1:6381", "MOVED", slot, host, port));
  CHECK(slot == 3999);
  CHECK(host == "127.0.0.1");
  CHECK(port == 6381);
  REQUIRE(parse_redirect("ASK 0 [::1]:7000", "ASK", slot, host, port));
  CHECK(slot == 0);
  CHECK(host == "::1");
  CHECK(port == 7000);
  REQUIRE(parse_redirect("MOVED 16383 ::1:7001", "MOVED", slot, host, port));
  CHECK(host == "::1");
  CHECK(port == 7001);
  CHECK_FALSE(parse_redirect("MOVED 16384 h:1", "MOVED", slot, host, port));
  CHECK_FALSE(parse_redirect("MOVED 1 h:0", "MOVED", slot, host, port));
  CHECK_FALSE(parse_redirect("MOVED 1 h", "MOVED", slot, host, port));
  CHECK_FALSE(parse_redirect("MOVEDX 1 h:1", "MOVED", slot, host, port));
  CHECK_FALSE(parse_redirect("ASK 1 h:1", "MOVED", slot, host, port));
  CHECK_FALSE(parse_redirect("MOVED x h:1", "MOVED", slot, host, port));
}
