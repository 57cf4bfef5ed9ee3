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
