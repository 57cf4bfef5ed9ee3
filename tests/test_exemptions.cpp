// Allow and deny lists (docs/exemptions.md): exact keys and IPv4 / IPv6
// CIDR ranges, answered in process before any store call (shown by a dead
// Redis under RL_FAIL_ERROR), with their own sources and counters.
#include <catch2/catch.hpp>

#include <array>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "support/handles.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"
#include "tollgate/exemptions.hpp"

namespace {

using tollgate::Errc;
using tollgate::KeyList;
using tollgate_test::health;
using tollgate_test::Limiter;
using tollgate_test::Policy;
using tollgate_test::try_check;

// A limiter on `url` ("" for the memory store), with this file's timeouts.
tollgate_test::LimiterConfig config(const std::string &url = "",
                                    int32_t shadow = 0) {
  return {.url = url, .shadow = shadow, .timeout_ms = 300};
}

KeyList parsed(const std::vector<std::string_view> &entries) {
  KeyList l;
  const Errc rc = KeyList::parse(entries, 512, l);
  INFO(tollgate::last_error_message());
  REQUIRE(rc == Errc::ok);
  return l;
}

int set_list(rl_limiter *lim, int list, std::vector<std::string> entries) {
  std::vector<const char *> ptrs;
  std::vector<size_t> lens;
  for (const std::string &e : entries) {
    ptrs.push_back(e.data());
    lens.push_back(e.size());
  }
  return rl_set_list(lim, list, ptrs.data(), lens.data(), entries.size());
}

}  // namespace

TEST_CASE("exemptions: keys, addresses and CIDR ranges", "[exemptions]") {
  const KeyList l = parsed({"partner:acme", "10.0.0.0/8", "192.168.1.7",
                            "2001:db8::/32", "fe80::1", "172.16.0.0/12"});
  CHECK(l.size() == 6);
  CHECK(l.contains("partner:acme"));
  CHECK_FALSE(l.contains("partner:acme2"));
  CHECK(l.contains("10.0.0.0"));
  CHECK(l.contains("10.255.255.255"));
  CHECK_FALSE(l.contains("11.0.0.0"));
  CHECK_FALSE(l.contains("9.255.255.255"));
  CHECK(l.contains("172.31.255.255"));
  CHECK_FALSE(l.contains("172.32.0.0"));
  CHECK(l.contains("192.168.1.7"));
  CHECK_FALSE(l.contains("192.168.1.8"));
  CHECK(l.contains("2001:db8::1"));
  CHECK(l.contains("2001:0db8:ffff::"));
  CHECK_FALSE(l.contains("2001:db9::1"));
  CHECK(l.contains("fe80:0:0:0:0:0:0:1"));  // another spelling
  CHECK(l.contains("::ffff:10.1.2.3"));     // IPv4-mapped: as IPv4
  CHECK_FALSE(l.contains("::ffff:11.1.2.3"));
  CHECK_FALSE(l.contains("ip:10.1.2.3"));  // not an address
  CHECK_FALSE(l.contains(""));

  // Prefix edges: /0 matches every address of its family, odd lengths.
  const KeyList all4 = parsed({"0.0.0.0/0"});
  CHECK(all4.contains("1.2.3.4"));
  CHECK_FALSE(all4.contains("::1"));
  const KeyList odd = parsed({"10.0.0.128/25", "::ffff:192.0.2.0/120"});
  CHECK(odd.contains("10.0.0.200"));
  CHECK_FALSE(odd.contains("10.0.0.127"));
  CHECK(odd.contains("192.0.2.99"));

  // An unparsable address or range is an error naming the entry.
  for (const char *bad :
       {"10.0.0.0/33", "10.0.0.300", "2001:db8::/129", "1.2.3.4/",
        "10.0.0.0/:", "10.0.0.0/1;", "1.2.3.4/x", "1.2.3.4/-1",
        "::ffff:1.2.3.4/95", "10.0.0.0/8/8", "1.2.3", "gggg::1/64"}) {
    INFO(bad);
    KeyList out;
    const Errc rc = KeyList::parse({"ok", bad}, 512, out);
    if (std::string(bad) == "gggg::1/64") {
      CHECK(rc == Errc::ok);  // not address-like: an exact key
      continue;
    }
    CHECK(rc == Errc::invalid_arg);
    CHECK(std::string(tollgate::last_error_message()).find("entries[1]") !=
          std::string::npos);
  }
  KeyList out;
  CHECK(KeyList::parse({"::ffff:1.2.3.4/95"}, 512, out) == Errc::invalid_arg);
  CHECK(std::string(tollgate::last_error_message()).find("IPv4-mapped") !=
        std::string::npos);
  CHECK(KeyList::parse({""}, 512, out) == Errc::invalid_arg);
  CHECK(KeyList::parse({std::string_view("abcde")}, 5, out) == Errc::ok);
  CHECK(out.contains("abcde"));
  CHECK(KeyList::parse({std::string_view("abcdef")}, 5, out) ==
        Errc::invalid_arg);
}

namespace {

void lists_decide(const std::string &url) {
  Limiter lim(config(url));
  Policy p("1/m");
  REQUIRE(set_list(lim.p, RL_LIST_DENY, {"abuser", "203.0.113.0/24"}) == RL_OK);
  REQUIRE(set_list(lim.p, RL_LIST_ALLOW,
                   {"health-check", "10.0.0.0/8", "203.0.113.9"}) == RL_OK);
  rl_decision d;
  REQUIRE(try_check(lim.p, "abuser", {p.p}, d) == RL_OK);
  CHECK(d.allowed == 0);
  CHECK(d.source == RL_SOURCE_DENY_LIST);
  CHECK(d.retry_after_ms == RL_RETRY_NEVER);
  // The deny list wins over the allow list.
  REQUIRE(try_check(lim.p, "203.0.113.9", {p.p}, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_DENY_LIST);
  // Allowed, never charged: a 1/m policy lets it through every time.
  for (int i = 0; i < 5; ++i) {
    REQUIRE(try_check(lim.p, "10.1.2.3", {p.p}, d) == RL_OK);
    CHECK(d.allowed == 1);
    CHECK(d.source == RL_SOURCE_ALLOW_LIST);
    CHECK(d.remaining == 1);
  }
  // Several keys: denied if any is denied; allowed by the list only if all
  // are allowed.
  const char *keys[] = {"health-check", "abuser"};
  const size_t lens[] = {12, 6};
  rl_policy *ps[] = {p.p, p.p};
  const size_t counts[] = {1, 1};
  rl_decision dk = RL_DECISION_INIT;
  REQUIRE(rl_check_keys(lim.p, &dk, keys, lens, 2, ps, counts, 1) == RL_OK);
  CHECK(dk.source == RL_SOURCE_DENY_LIST);
  const char *both[] = {"health-check", "10.9.9.9"};
  const size_t both_lens[] = {12, 8};
  REQUIRE(rl_check_keys(lim.p, &dk, both, both_lens, 2, ps, counts, 1) ==
          RL_OK);
  CHECK(dk.source == RL_SOURCE_ALLOW_LIST);
  // Async: answered inline.
  struct Got {
    int status = -1;
    int32_t source = -1;
  } got;
  REQUIRE(rl_check_async(
              lim.p, "abuser", 6, &p.p, 1, 1,
              [](int status, const rl_decision *dd, const char *, void *u) {
                auto *g = static_cast<Got *>(u);
                g->status = status;
                g->source = dd ? dd->source : -1;
              },
              &got) == RL_OK);
  CHECK(got.status == RL_OK);  // set before rl_check_async returned
  CHECK(got.source == RL_SOURCE_DENY_LIST);
  // A wait on a denied key ends at once.
  d = RL_DECISION_INIT;
  REQUIRE(rl_check_wait(lim.p, &d, "abuser", 6, &p.p, 1, 1, 60000) == RL_OK);
  CHECK(d.source == RL_SOURCE_DENY_LIST);

  const rl_health_info h = health(lim.p);
  CHECK(h.list_denied == 5);
  CHECK(h.list_allowed == 6);

  // Emptying the lists: the store decides again.
  REQUIRE(set_list(lim.p, RL_LIST_DENY, {}) == RL_OK);
  REQUIRE(set_list(lim.p, RL_LIST_ALLOW, {}) == RL_OK);
}

}  // namespace

TEST_CASE("exemptions: the lists decide before the store", "[exemptions]") {
  SECTION("memory") {
    lists_decide("");
    Limiter lim(config());
    Policy p("1/m");
    rl_decision d;
    REQUIRE(try_check(lim.p, "10.1.2.3", {p.p}, d) == RL_OK);
    REQUIRE(try_check(lim.p, "10.1.2.3", {p.p}, d) == RL_OK);
    CHECK(d.allowed == 0);  // no list: the store
  }
  SECTION("redis, down: no store call is made for a listed key") {
    tollgate_test::RedisServer server;
    const std::string url = server.url();
    server.kill9();
    lists_decide(url);
    Limiter lim(config(url));
    Policy p("1/m");
    REQUIRE(set_list(lim.p, RL_LIST_ALLOW, {"10.0.0.0/8"}) == RL_OK);
    rl_decision d;
    CHECK(try_check(lim.p, "10.1.2.3", {p.p}, d) == RL_OK);
    CHECK(try_check(lim.p, "11.1.2.3", {p.p}, d) != RL_OK);  // the store: down
  }
  SECTION("redis, up: an allowed key is never written") {
    tollgate_test::RedisServer server;
    Limiter lim(config(server.url()));
    Policy p("1/m");
    REQUIRE(set_list(lim.p, RL_LIST_ALLOW, {"vip"}) == RL_OK);
    rl_decision d;
    for (int i = 0; i < 3; ++i) {
      REQUIRE(try_check(lim.p, "vip", {p.p}, d) == RL_OK);
      CHECK(d.allowed == 1);
    }
    CHECK(server.command({"DBSIZE"}) == ":0\r\n");
    // A refund is not listed: it goes to the store (nothing to give back).
    CHECK(try_check(lim.p, "vip", {p.p}, d, -1) == RL_E_NOT_FOUND);
  }
}

TEST_CASE("exemptions: a shadow limiter allows a denied key, and says so",
          "[exemptions][shadow]") {
  Limiter lim(config("", 1));
  Policy p("10/s");
  REQUIRE(set_list(lim.p, RL_LIST_DENY, {"abuser"}) == RL_OK);
  rl_decision d;
  REQUIRE(try_check(lim.p, "abuser", {p.p}, d) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.shadow == 1);
  CHECK(d.source == RL_SOURCE_DENY_LIST);
}

TEST_CASE("exemptions: bad lists are refused and change nothing",
          "[exemptions]") {
  Limiter lim(config());
  Policy p("1/m");
  REQUIRE(set_list(lim.p, RL_LIST_DENY, {"abuser"}) == RL_OK);
  CHECK(set_list(lim.p, 3, {"x"}) == RL_E_INVALID_ARG);
  CHECK(set_list(nullptr, RL_LIST_DENY, {"x"}) == RL_E_INVALID_ARG);
  CHECK(rl_set_list(lim.p, RL_LIST_DENY, nullptr, nullptr, 2) ==
        RL_E_INVALID_ARG);
  CHECK(set_list(lim.p, RL_LIST_DENY, {"ok", "10.0.0.0/40"}) ==
        RL_E_INVALID_ARG);
  const std::string msg = rl_last_error();
  CHECK(msg.find("entries[1]") != std::string::npos);
  CHECK(msg.find("10.0.0.0/40") == std::string::npos);  // not echoed
  CHECK(rl_set_list(lim.p, RL_LIST_DENY, nullptr, nullptr,
                    RL_MAX_LIST_ENTRIES + 1) == RL_E_INVALID_ARG);
  // The failed calls left the list as it was.
  rl_decision d;
  REQUIRE(try_check(lim.p, "abuser", {p.p}, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_DENY_LIST);
  REQUIRE(try_check(lim.p, "ok", {p.p}, d) == RL_OK);
  CHECK(d.source == RL_SOURCE_STORE);
}
