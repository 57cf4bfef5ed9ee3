// Redis key names read back for the admin listing: which names are a
// tollgate key under a prefix, what user key and policy they hold, and that
// distinct policies get distinct keys; and the cluster hash slot of a key
// (CRC16, hash tags), checked against a real redis-server's CLUSTER KEYSLOT.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"
#include "tollgate/redis/redis_store.hpp"
#include "tollgate/redis/slot.hpp"

using tollgate::Algorithm;
using tollgate::Policy;
using tollgate::redis::parse_redis_key;

TEST_CASE("redis keys: a key name gives back its user key and policy",
          "[redis][keys]") {
  std::string user;
  Policy p{};
  REQUIRE(parse_redis_key("tollgate:{org-1}:gcra:10:60000:10",
                          "tollgate:", user, p));
  CHECK(user == "org-1");
  CHECK(p.algorithm == Algorithm::gcra);
  CHECK(p.limit == 10);
  CHECK(p.period_ms == 60000);
  CHECK(p.burst == 0);
  CHECK(p.capacity == 10);

  // A burst is a capacity other than the limit.
  REQUIRE(parse_redis_key("t:{k}:token_bucket:5:1000:20", "t:", user, p));
  CHECK(user == "k");
  CHECK(p.algorithm == Algorithm::token_bucket);
  CHECK(p.burst == 20);
  CHECK(p.capacity == 20);
  REQUIRE(parse_redis_key("t:{k}:fixed_window:5:1000:5", "t:", user, p));
  CHECK(p.algorithm == Algorithm::fixed_window);
  REQUIRE(parse_redis_key("t:{k}:sliding_window:3:1000:3", "t:", user, p));
  CHECK(p.algorithm == Algorithm::sliding_window);
  CHECK(p.limit == 3);

  // The user key may hold ':', '{' and '}'; only the last four fields are
  // the policy. A prefix may hold ':' too.
  REQUIRE(parse_redis_key("app:rl:{a:b}{c}:gcra:1:1000:1", "app:rl:", user, p));
  CHECK(user == "a:b}{c");
  CHECK(p.limit == 1);
  // A one-byte user key.
  REQUIRE(parse_redis_key("p{x}:gcra:2:1000:2", "p", user, p));
  CHECK(user == "x");
}

TEST_CASE("redis keys: names that are not tollgate keys are skipped",
          "[redis][keys]") {
  std::string user;
  Policy p{};
  for (const char *bad : {
           "other:{k}:gcra:10:60000:10",      // another prefix
           "tollgate:k}:gcra:10:60000:10",    // no '{'
           "tollgate:{k:gcra:10:60000:10",    // no '}' before the suffix
           "tollgate:{k}:leaky:10:60000:10",  // unknown algorithm
           "tollgate:{k}:gcra:ten:60000:10",  // not a number
           "tollgate:{k}:gcra:10:60000:",     // empty field
           "tollgate:{k}:gcra:10:60000",      // three fields
           "tollgate:{k}:gcra:0:60000:0",     // not a valid policy
           "tollgate:{k}:gcra:10:-5:10",      // not a valid policy
           "tollgate:{",                      // too short
           "tollgate:",
       }) {
    INFO(bad);
    CHECK_FALSE(parse_redis_key(bad, "tollgate:", user, p));
  }
  // The fields must come after the prefix, not inside it.
  CHECK_FALSE(parse_redis_key("a:1:2:3{k}", "a:1:2:3", user, p));
  // Another prefix of the same length is another prefix.
  CHECK_FALSE(
      parse_redis_key("tollgats:{k}:gcra:10:60000:10", "tollgate:", user, p));
  // A prefix without ':' and a name with too few ':' (none, or three).
  CHECK_FALSE(parse_redis_key("app{k}", "app", user, p));
  CHECK_FALSE(parse_redis_key("app{k}gcra10600010", "app", user, p));
  CHECK_FALSE(parse_redis_key("app{k}:10:60000:10", "app", user, p));
  CHECK(parse_redis_key("app{k}:gcra:10:60000:10", "app", user, p));
  CHECK(user == "k");
}

TEST_CASE("redis keys: policies that differ only in their limit keep apart",
          "[redis][keys]") {
  // GCRA with burst 10 over 1000 s: limits 600000 and 600001 have the same
  // capacity (10) and the same emission interval (1667 us); only the limit
  // tells them apart, and it must still give each its own Redis key.
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy_spec a = RL_POLICY_SPEC_INIT;
  a.limit = 600000;
  a.period_ms = 1000 * 1000;
  a.burst = 10;
  rl_policy_spec b = a;
  b.limit = 600001;
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim, &d, "k", 1, &a, 1, 1) == RL_OK);
  REQUIRE(rl_check(lim, &d, "k", 1, &b, 1, 1) == RL_OK);
  CHECK(server.query({"DBSIZE"}).integer == 2);
  rl_keys *it = nullptr;
  REQUIRE(rl_keys_open(lim, &it) == RL_OK);
  std::set<int64_t> limits;
  rl_key_info info = RL_KEY_INFO_INIT;
  while (rl_keys_next(it, &info) == RL_OK) limits.insert(info.policy.limit);
  rl_keys_free(it);
  CHECK(limits == std::set<int64_t>{600000, 600001});
  rl_destroy(lim);
}

TEST_CASE(
    "redis keys: an iterator outlives rl_destroy of its limiter and answers "
    "RL_E_CLOSED",
    "[redis][keys]") {
  tollgate_test::RedisServer server;
  rl_options o = RL_OPTIONS_INIT;
  const std::string url = server.url();
  o.url = url.c_str();
  o.failure_mode = RL_FAIL_ERROR;
  rl_limiter *lim = nullptr;
  REQUIRE(rl_create(&lim, &o) == RL_OK);
  rl_policy *p = nullptr;
  REQUIRE(rl_policy_parse(&p, "10/m", 4, nullptr) == RL_OK);
  rl_decision d = RL_DECISION_INIT;
  for (const char *k : {"a", "b", "c"})
    REQUIRE(rl_check(lim, &d, k, 1, &p, 1, 1) == RL_OK);
  rl_policy_release(p);  // before the limiter: nothing depends on it
  rl_keys *read = nullptr, *unread = nullptr, *kept = nullptr;
  REQUIRE(rl_keys_open(lim, &read) == RL_OK);
  REQUIRE(rl_keys_open(lim, &unread) == RL_OK);
  REQUIRE(rl_keys_open(lim, &kept) == RL_OK);
  rl_key_info info = RL_KEY_INFO_INIT;
  REQUIRE(rl_keys_next(read, &info) == RL_OK);
  CHECK(info.policy.limit == 10);
  CHECK(info.policy.period_ms == 60000);
  rl_keys_free(kept);  // freed before the limiter
  rl_destroy(lim);
  CHECK(rl_keys_next(read, &info) == RL_E_CLOSED);
  CHECK(std::string(rl_last_error()).find("destroyed") != std::string::npos);
  CHECK(rl_keys_next(read, &info) == RL_E_CLOSED);
  CHECK(rl_keys_next(unread, &info) == RL_E_CLOSED);
  rl_keys_free(unread);
  rl_keys_free(read);
}

// ---- Cluster hash slots ---------------------------------------------------

using tollgate::redis::crc16_xmodem;
using tollgate::redis::hash_slot;

namespace {

// A redis-server in cluster mode (no slots assigned: CLUSTER KEYSLOT works,
// data commands do not). Its nodes.conf lives in a directory of its own
// made with mkdtemp, removed with the server.
struct ClusterModeServer {
  std::string conf_dir;
  std::unique_ptr<tollgate_test::RedisServer> server;

  ClusterModeServer() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tollgate-slot-XXXXXX")
            .string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    conf_dir = tmpl;
    tollgate_test::RedisOptions o;
    o.extra_args = {"--cluster-enabled", "yes", "--cluster-config-file",
                    conf_dir + "/nodes.conf"};
    server = std::make_unique<tollgate_test::RedisServer>(o);
  }
  ~ClusterModeServer() {
    server.reset();
    std::error_code ec;
    std::filesystem::remove_all(conf_dir, ec);
  }

  long long keyslot(const std::string &key) const {
    const tollgate_test::RespValue v =
        server->query({"CLUSTER", "KEYSLOT", key});
    INFO(v.str);
    REQUIRE(v.type == ':');
    return v.integer;
  }
};

}  // namespace

TEST_CASE("slot: CRC16 XMODEM check value and hash tags of the cluster spec",
          "[slot]") {
  CHECK(crc16_xmodem("123456789") == 0x31C3);
  CHECK(crc16_xmodem("") == 0);
  CHECK(crc16_xmodem(std::string_view("\0", 1)) == 0);
  CHECK(crc16_xmodem("A") == 0x58E5);
  CHECK(hash_slot("123456789") == (0x31C3 & 16383));

  // The examples of the Redis Cluster specification.
  CHECK(hash_slot("{user1000}.following") == hash_slot("{user1000}.followers"));
  CHECK(hash_slot("{user1000}.following") == hash_slot("user1000"));
  CHECK(hash_slot("foo{}{bar}") == crc16_xmodem("foo{}{bar}") % 16384);
  CHECK(hash_slot("foo{{bar}}zap") == hash_slot("{bar"));
  CHECK(hash_slot("foo{{bar}}zap") == crc16_xmodem("{bar") % 16384);
  CHECK(hash_slot("foo{bar}{zap}") == hash_slot("bar"));
  CHECK(hash_slot("foo{bar}{zap}") == crc16_xmodem("bar") % 16384);

  // No tag: an unterminated '{', a '}' only before the '{', no braces.
  CHECK(hash_slot("foo{bar") == crc16_xmodem("foo{bar") % 16384);
  CHECK(hash_slot("}foo{bar") == crc16_xmodem("}foo{bar") % 16384);
  CHECK(hash_slot("{}") == crc16_xmodem("{}") % 16384);
  // A one-byte tag counts; the tag may hold anything but '}'.
  CHECK(hash_slot("a{b}c") == hash_slot("b"));
  CHECK(hash_slot("x{a:b{c}y") == hash_slot("a:b{c"));
}

TEST_CASE("slot: hash_slot agrees with CLUSTER KEYSLOT of a real redis-server",
          "[slot][redis]") {
  using namespace std::string_literals;
  ClusterModeServer cluster;
  const std::vector<std::string> keys = {
      "",
      "a",
      "foo",
      "123456789",
      "{user1000}.following",
      "{user1000}.followers",
      "foo{}{bar}",
      "foo{{bar}}zap",
      "foo{bar}{zap}",
      "foo{bar",
      "}foo{bar}",
      "{}",
      "{a}",
      "tollgate:{org-1}:gcra:10:60000:10",
      "app:rl:{a:b}{c}:token_bucket:5:1000:20",
      "bin\0ary{\xff\x00\x80}"s,
      std::string("\xff\xfe\xfd\xfc"),
      "caf\xc3\xa9 \xe2\x98\x95",
      std::string(1000, 'k'),
      std::string(600, 'x') + "{" + std::string(300, 'y') + "}",
      "ends with a brace {",
      "two {tags} and {more}",
  };
  for (const std::string &k : keys) {
    INFO("key of " << k.size() << " bytes: " << k);
    CHECK(hash_slot(k) == cluster.keyslot(k));
  }
}

TEST_CASE("slot: every policy key of one user key lands in one slot",
          "[slot][redis]") {
  // The keys the store really writes (KEYS on a plain server), grouped by
  // user key: each group has one slot, and it is the slot CLUSTER KEYSLOT
  // gives. User keys may hold ':', '{' and '}', but not start with '}': then
  // the tag would be empty ("<prefix>{}...") and the whole name is hashed,
  // so such a key's policies would not share a slot (not covered here).
  tollgate_test::RedisServer plain;
  ClusterModeServer cluster;
  const std::vector<std::string> users = {
      "org-1",   "u",     "a:b",         "x{y}z",      "{nested}",
      "a}b{c}d", "tail{", "caf\xc3\xa9", "with space", std::string(200, 'q')};
  rl_policy_spec policies[6];
  const int32_t algs[6] = {RL_ALG_GCRA,         RL_ALG_TOKEN_BUCKET,
                           RL_ALG_FIXED_WINDOW, RL_ALG_SLIDING_WINDOW,
                           RL_ALG_GCRA,         RL_ALG_TOKEN_BUCKET};
  for (int i = 0; i < 6; ++i) {
    policies[i] = RL_POLICY_SPEC_INIT;
    policies[i].algorithm = algs[i];
    policies[i].limit = 10 + i;
    policies[i].period_ms = 1000 * (i + 1);
    if (algs[i] == RL_ALG_GCRA || algs[i] == RL_ALG_TOKEN_BUCKET)
      policies[i].burst = 20 + i;
  }
  for (const char *prefix : {"tollgate:", "app:rl:"}) {
    INFO("prefix " << prefix);
    REQUIRE(plain.query({"FLUSHALL"}).str == "OK");
    rl_options o = RL_OPTIONS_INIT;
    const std::string url = plain.url() + "?prefix=" + prefix;
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    rl_limiter *lim = nullptr;
    REQUIRE(rl_create(&lim, &o) == RL_OK);
    rl_decision d = RL_DECISION_INIT;
    for (const std::string &u : users) {
      // One multi-policy check and one single-policy check per user key.
      REQUIRE(rl_check(lim, &d, u.data(), u.size(), policies, 4, 1) == RL_OK);
      REQUIRE(rl_check(lim, &d, u.data(), u.size(), policies + 4, 1, 1) ==
              RL_OK);
      REQUIRE(rl_check(lim, &d, u.data(), u.size(), policies + 5, 1, 1) ==
              RL_OK);
    }
    rl_destroy(lim);

    const tollgate_test::RespValue listed = plain.query({"KEYS", "*"});
    REQUIRE(listed.type == '*');
    REQUIRE(listed.elements.size() == users.size() * 6);
    std::map<std::string, std::set<uint16_t>> slots;
    for (const tollgate_test::RespValue &k : listed.elements) {
      std::string user;
      tollgate::Policy p{};
      INFO(k.str);
      REQUIRE(parse_redis_key(k.str, prefix, user, p));
      const uint16_t slot = hash_slot(k.str);
      // The prefix holds no brace, so the tag starts at the user key.
      CHECK(slot == hash_slot("{" + user + "}"));
      CHECK(slot == cluster.keyslot(k.str));
      slots[user].insert(slot);
    }
    REQUIRE(slots.size() == users.size());
    for (const auto &[user, s] : slots) {
      INFO("user key " << user);
      CHECK(s.size() == 1);
    }
  }
}
