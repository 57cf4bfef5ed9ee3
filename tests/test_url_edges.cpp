// Store URLs at their edges: the inclusive bounds of every numeric option,
// every boolean spelling, %-escapes at the end of a part, the longest
// accepted unix path, IPv6 ports and passwords holding '@'.
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

bool refused(const std::string &url) {
  Settings s;
  return parse_url(url, s) == Errc::url;
}

}  // namespace

TEST_CASE("url: numeric options accept both ends of their range only",
          "[url]") {
  struct Range {
    const char *key;
    const char *lo, *hi, *below, *above;
  };
  const Range ranges[] = {
      {"connect_timeout_ms", "1", "600000", "0", "600001"},
      {"timeout_ms", "1", "600000", "0", "600001"},
      {"local_divisor", "1", "1000000", "0", "1000001"},
      {"deny_cache_size", "1", "10000000", "0", "10000001"},
      {"connections", "1", "64", "0", "65"},
      {"reconnect_max_ms", "10", "600000", "9", "600001"},
      {"spin_us", "0", "1000", "-1", "1001"},
      {"max_async", "0", "2147483647", "-1", "2147483648"},
  };
  for (const Range &r : ranges) {
    const std::string base = std::string("redis://h?") + r.key + "=";
    INFO(r.key);
    parse_ok(base + r.lo);
    parse_ok(base + r.hi);
    CHECK(refused(base + r.below));
    CHECK(refused(base + r.above));
    CHECK(refused(base + r.lo + "x"));
    CHECK(refused(base));
  }
  Settings s = parse_ok("redis://h?connect_timeout_ms=600000&timeout_ms=1");
  CHECK(s.connect_timeout_ms == 600000);
  CHECK(s.timeout_ms == 1);
  s = parse_ok("redis://h?local_divisor=1000000&deny_cache_size=10000000");
  CHECK(s.local_divisor == 1000000);
  CHECK(s.deny_cache_size == 10000000);
  s = parse_ok("redis://h?connections=64&reconnect_max_ms=10&spin_us=1000");
  CHECK(s.connections == 64);
  CHECK(s.reconnect_max_ms == 10);
  CHECK(s.spin_us == 1000);
  CHECK(parse_ok("redis://h?max_async=2147483647").max_async == 2147483647);
  CHECK(parse_ok("redis://h?max_async=0").max_async == 0);
  CHECK(parse_ok("redis://h").max_async == 65536);
  // functions: a boolean, on by default.
  CHECK(parse_ok("redis://h").functions);
  CHECK_FALSE(parse_ok("redis://h?functions=off").functions);
  CHECK_FALSE(parse_ok("redis://h?functions=0").functions);
  CHECK(parse_ok("redis://h?functions=yes").functions);
  CHECK(refused("redis://h?functions=maybe"));
  CHECK(refused("redis://h?functions=on&functions=off"));

  CHECK(parse_ok("unix:///s?db=0").db == 0);
  CHECK(parse_ok("unix:///s?db=2147483647").db == 2147483647);
  CHECK(refused("unix:///s?db=2147483648"));
  // 19 digits parse (and are out of range); 20 are refused before parsing.
  CHECK(refused("unix:///s?db=1000000000000000000"));
  CHECK(refused("unix:///s?db=00000000000000000001"));
  CHECK(parse_ok("unix:///s?db=0000000000000000001").db == 1);
}

TEST_CASE("url: ports and database paths at their bounds", "[url]") {
  CHECK(parse_ok("redis://h:1").port == 1);
  CHECK(parse_ok("redis://h:65535").port == 65535);
  CHECK(refused("redis://h:65536"));
  CHECK(refused("redis://h:0"));
  CHECK(refused("redis://h:+1"));
  CHECK(parse_ok("redis://h/").db == 0);
  CHECK(parse_ok("redis://h/0").db == 0);
  CHECK(parse_ok("redis://h/2147483647").db == 2147483647);
  CHECK(refused("redis://h/2147483648"));
  CHECK(refused("redis://h//1"));
  CHECK(parse_ok("redis://[::1]").port == 6379);
  CHECK(parse_ok("redis://[::1]").host == "::1");
  CHECK(parse_ok("redis://[::1]:65535").port == 65535);
  CHECK(refused("redis://[::1]:"));
  CHECK(refused("redis://[::1]6379"));
  CHECK(refused("redis://[::1]:0"));
}

TEST_CASE("url: booleans in every spelling, and nothing else", "[url]") {
  for (const char *t : {"1", "true", "yes", "on"}) {
    INFO(t);
    Settings s;
    s.deny_cache = false;
    REQUIRE(parse_url(std::string("redis://h?deny_cache=") + t, s) == Errc::ok);
    CHECK(s.deny_cache);
    CHECK(parse_ok(std::string("rediss://h?tls_verify=") + t).tls.verify);
  }
  for (const char *f : {"0", "false", "no", "off"}) {
    INFO(f);
    CHECK_FALSE(parse_ok(std::string("redis://h?deny_cache=") + f).deny_cache);
    CHECK_FALSE(parse_ok(std::string("rediss://h?tls_verify=") + f).tls.verify);
  }
  for (const char *bad : {"TRUE", "2", "", "y", "of"}) {
    INFO(bad);
    CHECK(refused(std::string("redis://h?deny_cache=") + bad));
  }
}

TEST_CASE("url: %-escapes decode in every part, up to the last byte", "[url]") {
  // An escape ending exactly at the end of the part.
  CHECK(parse_ok("redis://:ab%41@h").password == "abA");
  CHECK(parse_ok("redis://u%5a:p@h").username == "uZ");
  // Every hex digit range, both cases.
  CHECK(parse_ok("redis://:%30%39%61%66%41%46@h").password == "09afAF");
  CHECK(parse_ok("redis://:%2f%2F@h").password == "//");
  CHECK(refused("redis://:%4@h"));
  CHECK(refused("redis://:ab%@h"));
  CHECK(refused("redis://:%g0@h"));
  CHECK(refused("redis://:%0g@h"));
  CHECK(refused("redis://:%G0@h"));
  CHECK(refused("redis://:%:0@h"));
  CHECK(refused("redis://:%/0@h"));
  CHECK(refused("redis://:%`0@h"));
  CHECK(refused("redis://:%@0@h"));
  // Names and values of options, and unix paths.
  CHECK(parse_ok("redis://h?time%6fut_ms=7").timeout_ms == 7);
  CHECK(parse_ok("redis://h?prefix=a%7Cb").key_prefix == "a|b");
  CHECK(parse_ok("unix:///tmp/a%20b").path == "/tmp/a b");
  CHECK(refused("unix:///tmp/a%2"));
  CHECK(refused("redis://h?prefix=a%2"));
  CHECK(refused("redis://h?pre%2=x"));
}

TEST_CASE("url: user info, hosts and prefixes", "[url]") {
  // The last '@' ends the user info: a raw '@' in a password survives.
  Settings s = parse_ok("redis://u:p@ss@h:7");
  CHECK(s.username == "u");
  CHECK(s.password == "p@ss");
  CHECK(s.host == "h");
  CHECK(s.port == 7);
  // A ':' in the password is part of it (only the first one splits).
  s = parse_ok("redis://u:a:b@h");
  CHECK(s.username == "u");
  CHECK(s.password == "a:b");
  s = parse_ok("redis://u:@h");
  CHECK(s.username == "u");
  CHECK(s.password.empty());
  s = parse_ok("redis://@h");
  CHECK(s.username.empty());
  CHECK(s.password.empty());
  for (const char *bad : {"redis://a b", "redis://a%b",
                          "redis://a?b=", "redis://:p@a@", "redis://[::1"}) {
    INFO(bad);
    CHECK(refused(bad));
  }
  const std::string p128(128, 'p');
  CHECK(parse_ok("redis://h?prefix=" + p128).key_prefix == p128);
  CHECK(refused("redis://h?prefix=" + p128 + "p"));
  CHECK(refused("redis://h?prefix="));
  CHECK(refused("redis://h?prefix=a}"));
  // A value may hold '=' (only the first one splits).
  CHECK(parse_ok("redis://h?prefix=a=b").key_prefix == "a=b");
}

TEST_CASE("url: query pairs are separated by single '&'", "[url]") {
  CHECK(refused("redis://h?timeout_ms=5&"));
  CHECK(refused("redis://h?&timeout_ms=5"));
  CHECK(refused("redis://h?timeout_ms=5&&spin_us=1"));
  CHECK(refused("redis://h?=5"));
  Settings s = parse_ok("redis://h?timeout_ms=5&spin_us=1&connections=3");
  CHECK(s.timeout_ms == 5);
  CHECK(s.spin_us == 1);
  CHECK(s.connections == 3);
}

TEST_CASE("url: unix socket paths up to 107 bytes", "[url]") {
  const std::string p107 = "/" + std::string(106, 's');
  CHECK(parse_ok("unix://" + p107).path == p107);
  CHECK(refused("unix://" + p107 + "s"));
  CHECK(refused("unix://"));
  Settings s = parse_ok("unix://" + p107 + "?db=3&timeout_ms=9");
  CHECK(s.unix_socket);
  CHECK(s.db == 3);
  CHECK(s.timeout_ms == 9);
}

TEST_CASE("url: TLS client certificate and key go together", "[url]") {
  Settings s = parse_ok("rediss://h?tls_cert=/c&tls_key=/k&tls_ca_dir=/d");
  CHECK(s.tls.cert_file == "/c");
  CHECK(s.tls.key_file == "/k");
  CHECK(s.tls.ca_dir == "/d");
  CHECK(refused("rediss://h?tls_key=/k"));
  CHECK(refused("rediss://h?tls_cert=/c"));
  CHECK(refused("redis://h?tls_verify=1"));
  CHECK(refused("unix:///s?tls_ca=/x"));
  CHECK(parse_ok("rediss://h").tls.enabled);
  CHECK_FALSE(parse_ok("unix:///s").tls.enabled);
}

TEST_CASE("url: a refused URL leaves the settings as they were", "[url]") {
  Settings s;
  s.timeout_ms = 123;
  s.host = "before";
  REQUIRE(parse_url("redis://h?timeout_ms=5&nope=1", s) == Errc::url);
  CHECK(s.timeout_ms == 123);
  CHECK(s.host == "before");
  // Options not in the URL keep the caller's values.
  REQUIRE(parse_url("redis://h2?spin_us=3", s) == Errc::ok);
  CHECK(s.timeout_ms == 123);
  CHECK(s.host == "h2");
  CHECK(s.spin_us == 3);
}

TEST_CASE("url: seed ports at their bounds and default ports", "[url]") {
  Settings s = parse_ok("redis+cluster://a:1,b:65535,c,[::1],[::2]:9");
  REQUIRE(s.seeds.size() == 5);
  CHECK(s.seeds[0].port == 1);
  CHECK(s.seeds[1].port == 65535);
  CHECK(s.seeds[2].port == 6379);
  CHECK(s.seeds[3].host == "::1");
  CHECK(s.seeds[3].port == 6379);
  CHECK(s.seeds[4].port == 9);
  s = parse_ok("redis+sentinel://a,[::1],b:1/m");
  REQUIRE(s.seeds.size() == 3);
  CHECK(s.seeds[0].port == 26379);
  CHECK(s.seeds[1].port == 26379);
  CHECK(s.seeds[2].port == 1);
  // The first seed is also host/port, whatever port the caller had set.
  Settings pre;
  pre.port = 1234;
  REQUIRE(parse_url("redis+cluster://x", pre) == Errc::ok);
  CHECK(pre.host == "x");
  CHECK(pre.port == 6379);
  // The same seed twice is allowed (the client dedupes by address).
  CHECK(parse_ok("redis+cluster://h:1,h:1").seeds.size() == 2);
  for (const char *bad : {"redis+cluster://a:0", "redis+cluster://a:65536",
                          "redis+cluster://a:+1", "redis+cluster://a: 1",
                          "redis+cluster://a:1,b:65536",
                          "redis+sentinel://a:0/m", "redis+sentinel://a,b:+1/m",
                          "redis+cluster://a:1:2", "redis+cluster://a b:1"}) {
    INFO(bad);
    CHECK(refused(bad));
  }
}

TEST_CASE("url: cluster and sentinel paths end where they should", "[url]") {
  CHECK(parse_ok("redis+cluster://h/").db == 0);
  CHECK(parse_ok("redis+cluster://h/?timeout_ms=3").timeout_ms == 3);
  CHECK(refused("redis+cluster://h//"));
  CHECK(refused("redis+cluster://h/0"));
  CHECK(parse_ok("redis+sentinel://s/m/").master_name == "m");
  CHECK(parse_ok("redis+sentinel://s/m/").db == 0);
  CHECK(parse_ok("redis+sentinel://s/m/2147483647").db == 2147483647);
  CHECK(parse_ok("redis+sentinel://s/m%2Fx").master_name == "m/x");
  CHECK(parse_ok("redis+sentinel://s/M-1_a.b").master_name == "M-1_a.b");
  CHECK(refused("redis+sentinel://s/m/2147483648"));
  CHECK(refused("redis+sentinel://s/m/1/"));
  CHECK(refused("redis+sentinel://s/m/-1"));
  CHECK(refused("redis+sentinel://s"));
  CHECK(refused("redis+sentinel://s/%20"));
  CHECK(refused("redis+sentinel://s/m%7F"));
  CHECK(refused("redis+sentinel://s/?db=1"));
  // Empty option values are allowed for the sentinel credentials.
  Settings s = parse_ok("redis+sentinel://s/m?sentinel_password=");
  CHECK(s.sentinel_password.empty());
}

TEST_CASE("url: a new URL replaces the seeds and the master name", "[url]") {
  Settings s;
  REQUIRE(parse_url("redis+sentinel://s1,s2/m/4", s) == Errc::ok);
  CHECK(s.seeds.size() == 2);
  REQUIRE(parse_url("redis+cluster://c1:7000", s) == Errc::ok);
  CHECK(s.topology == TopologyKind::cluster);
  REQUIRE(s.seeds.size() == 1);
  CHECK(s.seeds[0].host == "c1");
  CHECK(s.master_name.empty());
  CHECK(s.db == 0);  // a cluster has only database 0, whatever came before
  REQUIRE(parse_url("redis://h", s) == Errc::ok);
  CHECK(s.topology == TopologyKind::standalone);
  CHECK(s.seeds.empty());
  // A refused URL changes nothing.
  REQUIRE(parse_url("redis+cluster://c1:7000", s) == Errc::ok);
  REQUIRE(parse_url("redis+sentinel://s/m?bogus=1", s) == Errc::url);
  CHECK(s.topology == TopologyKind::cluster);
  CHECK(s.seeds.size() == 1);
}
