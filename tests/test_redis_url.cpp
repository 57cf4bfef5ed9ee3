// Store URLs: every accepted form and option, and strict refusals that
// name the problem and never echo the password.
#include <catch2/catch.hpp>

#include <string>

#include "tollgate/redis/url.hpp"

using namespace tollgate;
using namespace tollgate::redis;

namespace {

Settings parse_ok(const std::string &url) {
  Settings s;
  const Errc rc = parse_url(url, s);
  INFO(url << " -> " << last_error_message());
  REQUIRE(rc == Errc::ok);
  return s;
}

std::string parse_error(const std::string &url) {
  Settings s;
  REQUIRE(parse_url(url, s) == Errc::url);
  return last_error_message();
}

}  // namespace

TEST_CASE("url: accepted forms", "[url]") {
  Settings s = parse_ok("redis://localhost");
  CHECK(s.host == "localhost");
  CHECK(s.port == 6379);
  CHECK(s.db == 0);
  CHECK_FALSE(s.tls.enabled);
  CHECK(s.password.empty());

  s = parse_ok("redis://:p%40ss@10.0.0.1:6380/4");
  CHECK(s.host == "10.0.0.1");
  CHECK(s.port == 6380);
  CHECK(s.db == 4);
  CHECK(s.password == "p@ss");
  CHECK(s.username.empty());

  s = parse_ok("redis://alice:secret@[::1]:7000/");
  CHECK(s.host == "::1");
  CHECK(s.port == 7000);
  CHECK(s.username == "alice");
  CHECK(s.password == "secret");

  s = parse_ok("redis://justapassword@host");  // the legacy single field
  CHECK(s.password == "justapassword");
  CHECK(s.username.empty());

  s = parse_ok(
      "rediss://cache.example:6390?tls_ca=/etc/ca.pem&tls_cert=/c.pem"
      "&tls_key=/k.pem&tls_server_name=redis.internal&tls_verify=1");
  CHECK(s.tls.enabled);
  CHECK(s.tls.ca_file == "/etc/ca.pem");
  CHECK(s.tls.cert_file == "/c.pem");
  CHECK(s.tls.key_file == "/k.pem");
  CHECK(s.tls.server_name == "redis.internal");
  CHECK(s.tls.verify);
  CHECK_FALSE(parse_ok("rediss://h?tls_verify=0").tls.verify);

  s = parse_ok("unix:///run/redis/redis.sock?db=2&timeout_ms=50");
  CHECK(s.unix_socket);
  CHECK(s.path == "/run/redis/redis.sock");
  CHECK(s.db == 2);
  CHECK(s.timeout_ms == 50);

  s = parse_ok(
      "redis://h?connect_timeout_ms=250&timeout_ms=75&prefix=app%3Arl%3A"
      "&failure_mode=local&local_divisor=3&deny_cache=off&deny_cache_size=99"
      "&connections=2&reconnect_max_ms=900&spin_us=0");
  CHECK(s.connect_timeout_ms == 250);
  CHECK(s.timeout_ms == 75);
  CHECK(s.key_prefix == "app:rl:");
  CHECK(s.failure_mode == FailureMode::local);
  CHECK(s.local_divisor == 3);
  CHECK_FALSE(s.deny_cache);
  CHECK(s.deny_cache_size == 99);
  CHECK(s.connections == 2);
  CHECK(s.reconnect_max_ms == 900);
  CHECK(s.spin_us == 0);
  CHECK(parse_ok("redis://h").spin_us == 200);
  CHECK(parse_ok("redis://h?spin_us=1000").spin_us == 1000);
  for (const char *m : {"open", "closed", "local", "error"})
    parse_ok(std::string("redis://h?failure_mode=") + m);
  CHECK(is_redis_url("redis://x"));
  CHECK(is_redis_url("rediss://x"));
  CHECK(is_redis_url("unix:///x"));
  CHECK_FALSE(is_redis_url("memory://"));
  CHECK_FALSE(is_redis_url("REDIS://x"));
}

TEST_CASE("url: refusals name the problem, never the password", "[url]") {
  const std::string pw = "s3cr3t-P@ss";
  const std::string enc = "s3cr3t-P%40ss";
  struct Bad {
    std::string url;
    const char *mentions;
  };
  const Bad bad[] = {
      {"redis://:" + enc + "@host:0", "port"},
      {"redis://:" + enc + "@host:65536", "port"},
      {"redis://:" + enc + "@host:12ab", "port"},
      {"redis://:" + enc + "@host:", "port"},
      {"redis://:" + enc + "@:6379", "host"},
      {"redis://:" + enc + "@host/abc", "database"},
      {"redis://:" + enc + "@host/99999999999", "database"},
      {"redis://:" + enc + "@host?nope=1", "nope"},
      {"redis://:" + enc + "@host?timeout_ms=0", "timeout_ms"},
      {"redis://:" + enc + "@host?timeout_ms=abc", "timeout_ms"},
      {"redis://:" + enc + "@host?timeout_ms=5&timeout_ms=6", "twice"},
      {"redis://:" + enc + "@host?failure_mode=maybe", "failure_mode"},
      {"redis://:" + enc + "@host?deny_cache=perhaps", "deny_cache"},
      {"redis://:" + enc + "@host?connections=65", "connections"},
      {"redis://:" + enc + "@host?spin_us=1001", "spin_us"},
      {"redis://:" + enc + "@host?prefix=a{b", "prefix"},
      {"redis://:" + enc + "@host?db=1", "path"},
      {"redis://:" + enc + "@host?tls_ca=/x", "rediss"},
      {"rediss://:" + enc + "@host?tls_cert=/c.pem", "tls_key"},
      {"redis://:" + enc + "@host?timeout_ms", "key=value"},
      {"redis://:" + enc + "@host?", "query"},
      {"redis://:" + enc + "@host#frag", "fragment"},
      {"redis://:" + enc + "%G1@host", "escape"},
      {"redis://:" + enc + "@[::1", "IPv6"},
      {"redis://:" + enc + "@[zz]:1", "IPv6"},
      {"unix://relative.sock", "absolute"},
      {"unix:///tmp/r.sock?db=x", "db"},
      {"http://:" + enc + "@host", "redis://"},
  };
  for (const Bad &b : bad) {
    INFO(b.url);
    const std::string msg = parse_error(b.url);
    INFO(msg);
    CHECK(msg.rfind("url: ", 0) == 0);
    CHECK(msg.find(b.mentions) != std::string::npos);
    CHECK(msg.find(pw) == std::string::npos);
    CHECK(msg.find(enc) == std::string::npos);
    CHECK(msg.find("s3cr3t") == std::string::npos);
  }
}

TEST_CASE("url: cluster seed lists", "[url]") {
  Settings s = parse_ok("redis+cluster://10.0.0.1:7000");
  CHECK(s.topology == TopologyKind::cluster);
  REQUIRE(s.seeds.size() == 1);
  CHECK(s.seeds[0].host == "10.0.0.1");
  CHECK(s.seeds[0].port == 7000);
  CHECK(s.host == "10.0.0.1");
  CHECK(s.port == 7000);
  CHECK(s.db == 0);
  CHECK_FALSE(s.tls.enabled);
  CHECK(s.master_name.empty());

  s = parse_ok(
      "redis+cluster://alice:p%40ss%2Cw%3Ad@a.example:7000,[::1]:7001,"
      "b.example,10.0.0.3:7002/?timeout_ms=50&prefix=app%3A");
  REQUIRE(s.seeds.size() == 4);
  CHECK(s.seeds[0].host == "a.example");
  CHECK(s.seeds[0].port == 7000);
  CHECK(s.seeds[1].host == "::1");
  CHECK(s.seeds[1].port == 7001);
  CHECK(s.seeds[2].host == "b.example");
  CHECK(s.seeds[2].port == 6379);  // a cluster seed's default port
  CHECK(s.seeds[3].host == "10.0.0.3");
  CHECK(s.seeds[3].port == 7002);
  CHECK(s.host == "a.example");
  CHECK(s.port == 7000);
  CHECK(s.username == "alice");
  CHECK(s.password == "p@ss,w:d");
  CHECK(s.timeout_ms == 50);
  CHECK(s.key_prefix == "app:");

  s = parse_ok("redis+cluster://secretonly@[fe80::1]");  // the legacy field
  CHECK(s.password == "secretonly");
  CHECK(s.username.empty());
  CHECK(s.seeds[0].host == "fe80::1");
  CHECK(s.seeds[0].port == 6379);

  s = parse_ok(
      "rediss+cluster://h1:7000,h2:7000?tls_ca=/ca.pem&tls_server_name=rc");
  CHECK(s.topology == TopologyKind::cluster);
  CHECK(s.tls.enabled);
  CHECK(s.tls.ca_file == "/ca.pem");
  CHECK(s.tls.server_name == "rc");
  CHECK(s.seeds.size() == 2);

  // A cluster has only database 0: ?db=0 is accepted (and means nothing).
  CHECK(parse_ok("redis+cluster://h?db=0").db == 0);
}

TEST_CASE("url: sentinel lists and the master name", "[url]") {
  Settings s = parse_ok("redis+sentinel://10.0.0.1:26380/mymaster");
  CHECK(s.topology == TopologyKind::sentinel);
  REQUIRE(s.seeds.size() == 1);
  CHECK(s.seeds[0].host == "10.0.0.1");
  CHECK(s.seeds[0].port == 26380);
  CHECK(s.host == "10.0.0.1");
  CHECK(s.port == 26380);
  CHECK(s.master_name == "mymaster");
  CHECK(s.db == 0);
  CHECK_FALSE(s.tls.enabled);
  CHECK(s.sentinel_username.empty());
  CHECK(s.sentinel_password.empty());

  s = parse_ok(
      "redis+sentinel://bob:n0de%26pw@s1,[2001:db8::5]:26400,s3:26381"
      "/cache%2Dprimary/3?sentinel_username=watcher"
      "&sentinel_password=sen%40tinel%26pw&timeout_ms=40");
  REQUIRE(s.seeds.size() == 3);
  CHECK(s.seeds[0].host == "s1");
  CHECK(s.seeds[0].port == 26379);  // a sentinel's default port
  CHECK(s.seeds[1].host == "2001:db8::5");
  CHECK(s.seeds[1].port == 26400);
  CHECK(s.seeds[2].host == "s3");
  CHECK(s.seeds[2].port == 26381);
  CHECK(s.host == "s1");
  CHECK(s.port == 26379);
  CHECK(s.master_name == "cache-primary");
  CHECK(s.db == 3);
  // The user info is for the data nodes; the sentinels have their own.
  CHECK(s.username == "bob");
  CHECK(s.password == "n0de&pw");
  CHECK(s.sentinel_username == "watcher");
  CHECK(s.sentinel_password == "sen@tinel&pw");
  CHECK(s.timeout_ms == 40);

  // A sentinel password alone (Sentinel's requirepass).
  s = parse_ok("redis+sentinel://s/m?sentinel_password=x");
  CHECK(s.sentinel_password == "x");
  CHECK(s.sentinel_username.empty());

  s = parse_ok("rediss+sentinel://s1:26379,s2:26379/m/0?tls_verify=0");
  CHECK(s.topology == TopologyKind::sentinel);
  CHECK(s.tls.enabled);
  CHECK_FALSE(s.tls.verify);
  CHECK(s.master_name == "m");
  CHECK(s.db == 0);

  // Standalone URLs keep the standalone topology and no seeds.
  s = parse_ok("redis://h:1");
  CHECK(s.topology == TopologyKind::standalone);
  CHECK(s.seeds.empty());
  CHECK(parse_ok("unix:///s").topology == TopologyKind::standalone);

  CHECK(is_redis_url("redis+cluster://h:7000"));
  CHECK(is_redis_url("rediss+cluster://h:7000"));
  CHECK(is_redis_url("redis+sentinel://h:26379/m"));
  CHECK(is_redis_url("rediss+sentinel://h:26379/m"));
  CHECK_FALSE(is_redis_url("redis+clusterx://h"));
  CHECK_FALSE(is_redis_url("redis+cluster:/h"));
  CHECK_FALSE(is_redis_url("valkey+cluster://h"));
}

TEST_CASE("url: cluster and sentinel refusals never show the password",
          "[url]") {
  const std::string pw = "s3cr3t-P@ss,w/rd";
  const std::string enc = "s3cr3t-P%40ss%2Cw%2Frd";
  const std::string cl = "redis+cluster://u:" + enc + "@";
  const std::string se = "redis+sentinel://u:" + enc + "@";
  struct Bad {
    std::string url;
    const char *mentions;
  };
  const Bad bad[] = {
      // Empty seed lists.
      {"redis+cluster://", "empty seed list"},
      {"redis+cluster://,", "empty seed list"},
      {"redis+cluster://,,,", "empty seed list"},
      {cl, "empty seed list"},
      {cl + "?timeout_ms=5", "empty seed list"},
      {"rediss+cluster://:" + enc + "@,", "empty seed list"},
      {se + "/mymaster", "empty seed list"},
      {"redis+sentinel://,/mymaster", "empty seed list"},
      // Malformed seeds, named by their place in the list.
      {cl + "h1:7000,,h3:7000", "seed 2: empty"},
      {cl + "h1:7000,", "seed 2: empty"},
      {cl + ",h1:7000", "seed 1: empty"},
      {cl + "h1:7000,h2:0", "seed 2: port"},
      {cl + "h1:7000,h2:65536", "seed 2: port"},
      {cl + "h1:7000,h2:70x0", "seed 2: port"},
      {cl + "h1:7000,h2:", "seed 2: empty port"},
      {cl + "h1:-1", "seed 1: port"},
      {cl + "h1:7000,:7001", "seed 2: missing host"},
      {cl + "h1:7000,h 2:7001", "seed 2: malformed host"},
      {cl + "h1:7000,h%32:7001", "seed 2: malformed host"},
      {cl + "h1:7000,[::1:7001", "seed 2: unterminated ["},
      {cl + "h1:7000,[::1]7001", "seed 2: expected :port"},
      {cl + "h1:7000,[::1]:", "seed 2: empty port"},
      {cl + "[zz::1]:7000", "seed 1: malformed IPv6"},
      {cl + "h1:7000,h2]:7001", "seed 2: malformed host"},
      {se + "s1:26379,s2:99999/m", "seed 2: port"},
      {se + "s1,[::1]x/m", "seed 2: expected :port"},
      // Databases: a cluster has only 0.
      {cl + "h:7000/0", "database 0"},
      {cl + "h:7000/1", "database 0"},
      {cl + "h:7000/x", "database 0"},
      {cl + "h:7000?db=1", "database 0"},
      {cl + "h:7000?db=x", "database 0"},
      {se + "s/m?db=1", "path"},
      {se + "s/m/x", "database number"},
      {se + "s/m/2147483648", "database number"},
      {se + "s/m/1/2", "database number"},
      // The master name.
      {se + "s:26379", "missing master name"},
      {se + "s:26379/", "missing master name"},
      {se + "s:26379//2", "missing master name"},
      {se + "s:26379?sentinel_password=x", "missing master name"},
      {se + "s/my%20master", "master name"},
      {se + "s/m%0Aaster", "master name"},
      {se + "s/m%4", "master name"},
      // Options.
      {cl + "h?nope=1", "nope"},
      {se + "s/m?nope=1", "nope"},
      {cl + "h?sentinel_password=x", "redis+sentinel://"},
      {"redis://:" + enc + "@h?sentinel_password=x", "redis+sentinel://"},
      {"redis://:" + enc + "@h?sentinel_username=x", "redis+sentinel://"},
      {se + "s/m?sentinel_username=w", "sentinel_password"},
      {se + "s/m?sentinel_password=a&sentinel_password=b", "twice"},
      {se + "s/m?sentinel_password=%G1", "escape"},
      {cl + "h?tls_ca=/x", "rediss"},
      {se + "s/m?tls_ca=/x", "rediss"},
      {cl + "h?timeout_ms=0", "timeout_ms"},
      {cl + "h#frag", "fragment"},
      // Unix sockets are for standalone Redis only.
      {"unix+cluster:///tmp/r.sock", "unix sockets"},
      {"unix+sentinel:///tmp/r.sock?db=1", "unix sockets"},
      {"redis+cluster:///tmp/r.sock", "unix"},
      // A host list is for cluster and sentinel URLs.
      {"redis://:" + enc + "@h1:6379,h2:6379", "redis+cluster://"},
      {"rediss://:" + enc + "@h1,h2", "redis+cluster://"},
      {"redis+clusters://:" + enc + "@h", "redis+cluster://"},
  };
  for (const Bad &b : bad) {
    INFO(b.url);
    const std::string msg = parse_error(b.url);
    INFO(msg);
    CHECK(msg.rfind("url: ", 0) == 0);
    CHECK(msg.find(b.mentions) != std::string::npos);
    CHECK(msg.find(pw) == std::string::npos);
    CHECK(msg.find(enc) == std::string::npos);
    CHECK(msg.find("s3cr3t") == std::string::npos);
  }
  // The sentinels' password is never echoed either, whatever is wrong.
  for (const std::string &url : {
           se + "s/m?sentinel_password=" + enc + "&sentinel_password=" + enc,
           se + "s/m?sentinel_password=" + enc + "&bogus=" + enc,
           se + "s/m?sentinel_password=" + enc + "%",
           cl + "h?sentinel_password=" + enc,
           se + "?sentinel_password=" + enc,
       }) {
    INFO(url);
    const std::string msg = parse_error(url);
    INFO(msg);
    CHECK(msg.find("s3cr3t") == std::string::npos);
  }
}
