// Redis key names read back for the admin listing: which names are a
// tollgate key under a prefix, what user key and policy they hold, and that
// distinct policies get distinct keys; and the cluster hash slot of a key
// (CRC16, hash tags), checked against a real redis-server's CLUSTER KEYSLOT.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <cstring>
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
using tollgate::redis::StateName;

TEST_CASE("redis keys: a key name gives back its user key and identity",
          "[redis][keys]") {
  StateName n;
  // Position 0 has no suffix; a later position and a name have one.
  REQUIRE(parse_redis_key("tollgate:v2:{org-1}", "tollgate:", n));
  CHECK(n.user_key == "org-1");
  CHECK(n.name.empty());
  CHECK(n.position == 0);
  REQUIRE(parse_redis_key("t:v2:{k}:3", "t:", n));
  CHECK(n.user_key == "k");
  CHECK(n.position == 3);
  CHECK(n.name.empty());
  REQUIRE(parse_redis_key("t:v2:{k}:daily-quota.v1", "t:", n));
  CHECK(n.user_key == "k");
  CHECK(n.name == "daily-quota.v1");
  REQUIRE(parse_redis_key("t:v2:{k}:15", "t:", n));
  CHECK(n.position == 15);

  // The user key may hold ':', '{' and '}' (an identity never does: the
  // last ':' splits). A prefix may hold ':' too.
  REQUIRE(parse_redis_key("app:rl:v2:{a:b}{c}:x", "app:rl:", n));
  CHECK(n.user_key == "a:b}{c");
  CHECK(n.name == "x");
  REQUIRE(parse_redis_key("app:rl:v2:{a}:1}", "app:rl:", n));
  CHECK(n.user_key == "a}:1");
  CHECK(n.position == 0);
  REQUIRE(parse_redis_key("pv2:{x}", "p", n));
  CHECK(n.user_key == "x");
}

TEST_CASE("redis keys: names that are not tollgate keys are skipped",
          "[redis][keys]") {
  StateName n;
  for (const char *bad : {
           "other:v2:{k}",                   // another prefix
           "tollgate:{k}:gcra:10:60000:10",  // key format 1: ignored
           "tollgate:v3:{k}",                // another format
           "tollgate:v2:k}",                 // no '{'
           "tollgate:v2:{k",                 // no '}'
           "tollgate:v2:{k}:",               // empty identity
           "tollgate:v2:{k}x",               // no ':' before it
           "tollgate:v2:{k}:0",              // position 0 has none
           "tollgate:v2:{k}:16",             // beyond RL_MAX_POLICIES
           "tollgate:v2:{k}:07",             // not a decimal position
           "tollgate:v2:{k}:1a",             // not a position
           "tollgate:v2:{k}:_x",             // a name starts with a letter
           "tollgate:v2:{k}:a b",            // nor holds a space
           "tollgate:v2:{k}:abcdefghijabcdefghijabcdefghijabc",  // 33 bytes
           "tollgate:v2:{",                                      // too short
           "tollgate:",
       }) {
    INFO(bad);
    CHECK_FALSE(parse_redis_key(bad, "tollgate:", n));
  }
  // Another prefix of the same length is another prefix.
  CHECK_FALSE(parse_redis_key("tollgats:v2:{k}", "tollgate:", n));
}

namespace {

struct TestLimiter {
  rl_limiter *p = nullptr;
  explicit TestLimiter(const std::string &url) {
    rl_options o = RL_OPTIONS_INIT;
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    REQUIRE(rl_create(&p, &o) == RL_OK);
  }
  ~TestLimiter() { rl_destroy(p); }
};

}  // namespace

namespace {

// The user keys a pattern lists (policy "10/m"), sorted.
std::set<std::string> listed_keys(rl_limiter *lim, const std::string &pattern) {
  rl_policy *p = nullptr;
  REQUIRE(rl_policy_parse(&p, "10/m", 4, nullptr) == RL_OK);
  rl_keys *it = nullptr;
  REQUIRE(rl_keys_open_match(lim, pattern.data(), pattern.size(), &p, 1, &it) ==
          RL_OK);
  rl_policy_release(p);
  std::set<std::string> out;
  rl_key_info info = RL_KEY_INFO_INIT;
  int rc;
  while ((rc = rl_keys_next(it, &info)) == RL_OK)
    out.insert(std::string(info.key, info.key_len));
  CHECK(rc == RL_E_DONE);
  rl_keys_free(it);
  return out;
}

const char *const kPatternKeys[] = {"user:1",  "user:2",   "user:10", "admin:1",
                                    "u{1}}:1", "star*key", "star?",   "[x]",
                                    "a\\b",    "user:",    "User:3",  "x}y",
                                    "-",       "user:1:x", "ab",      "a]"};

const char *const kPatterns[] = {
    "user:1",     "user:*",  "user:?",     "user:[12]", "user:[^1]*", "[^u]*",
    "star\\*key", "star\\?", "*",          "*:1",       "u{1}}:1",    "\\[x\\]",
    "[[]x]",      "a\\\\b",  "user:[0-9]", "[a-b]*",    "*1*",        "User*",
    "x}y",        "?",       "[]]",        "a[]]",      "[z-a]*",     "user:1*",
    "[",          "a[",      "*\\",        "\\",        "[^]]*",      "**"};

}  // namespace

TEST_CASE("redis keys: a pattern lists only the keys it matches",
          "[redis][keys]") {
  tollgate_test::RedisServer server;
  TestLimiter lim(server.url());
  rl_policy *p = nullptr;
  REQUIRE(rl_policy_parse(&p, "10/m", 4, nullptr) == RL_OK);
  rl_decision d = RL_DECISION_INIT;
  std::set<std::string> all;
  for (const char *k : kPatternKeys) {
    REQUIRE(rl_check(lim.p, &d, k, std::strlen(k), &p, 1, 1) == RL_OK);
    all.insert(k);
  }
  rl_policy_release(p);

  CHECK(listed_keys(lim.p, "") == all);
  CHECK(listed_keys(lim.p, "*") == all);
  CHECK(listed_keys(lim.p, "user:1") == std::set<std::string>{"user:1"});
  CHECK(listed_keys(lim.p, "user:*") ==
        std::set<std::string>{"user:1", "user:2", "user:10",
                              "user:", "user:1:x"});
  CHECK(listed_keys(lim.p, "user:?") ==
        std::set<std::string>{"user:1", "user:2"});
  CHECK(listed_keys(lim.p, "star\\*key") == std::set<std::string>{"star*key"});
  // Inside MATCH this '*' also matches "u{1}}:1"'s name past its first '}';
  // the listing matches the user key again.
  CHECK(listed_keys(lim.p, "u{1}") == std::set<std::string>{});
  CHECK(listed_keys(lim.p, "nothing*") == std::set<std::string>{});

  // The matcher agrees with Redis's own on every pattern and key here: each
  // key stored as itself, and SCAN MATCH asked directly.
  for (const char *k : kPatternKeys) server.query({"SET", k, "1"});
  for (const char *pat : kPatterns) {
    INFO("pattern " << pat);
    std::set<std::string> by_redis;
    std::string cursor = "0";
    do {
      const tollgate_test::RespValue v =
          server.query({"SCAN", cursor, "MATCH", pat, "COUNT", "1000"});
      REQUIRE(v.elements.size() == 2);
      cursor = v.elements[0].str;
      for (const auto &e : v.elements[1].elements)
        if (e.str.rfind("tollgate:", 0) != 0) by_redis.insert(e.str);
    } while (cursor != "0");
    std::set<std::string> by_us;
    for (const char *k : kPatternKeys)
      if (tollgate::redis::glob_match(pat, k)) by_us.insert(k);
    CHECK(by_us == by_redis);
  }

  // Bad input: a NULL pattern with a length, a pattern over the bound.
  rl_keys *it = nullptr;
  REQUIRE(rl_policy_parse(&p, "10/m", 4, nullptr) == RL_OK);
  CHECK(rl_keys_open_match(lim.p, nullptr, 3, &p, 1, &it) == RL_E_INVALID_ARG);
  CHECK(it == nullptr);
  const std::string long_pattern(RL_MAX_PATTERN_LEN + 1, 'a');
  CHECK(rl_keys_open_match(lim.p, long_pattern.data(), long_pattern.size(), &p,
                           1, &it) == RL_E_INVALID_ARG);
  CHECK(std::string(rl_last_error()).find("at most 4096") != std::string::npos);
  const std::string max_pattern(RL_MAX_PATTERN_LEN, '*');
  REQUIRE(rl_keys_open_match(lim.p, max_pattern.data(), max_pattern.size(), &p,
                             1, &it) == RL_OK);
  rl_key_info info = RL_KEY_INFO_INIT;
  int rc, n = 0;
  while ((rc = rl_keys_next(it, &info)) == RL_OK) ++n;
  CHECK(rc == RL_E_DONE);
  CHECK(n == static_cast<int>(all.size()));
  rl_keys_free(it);
  rl_policy_release(p);
}

TEST_CASE("redis keys: the names format 2 writes, and what a listing reads",
          "[redis][keys]") {
  tollgate_test::RedisServer server;
  TestLimiter lim(server.url());
  rl_policy_spec a = RL_POLICY_SPEC_INIT, b = RL_POLICY_SPEC_INIT,
                 c = RL_POLICY_SPEC_INIT;
  a.limit = 10;
  a.period_ms = 60000;
  b.limit = 100;
  b.period_ms = 3600000;
  b.algorithm = RL_ALG_SLIDING_WINDOW;
  c = a;
  c.name = "daily";
  c.name_len = 5;
  const rl_policy_spec three[3] = {a, b, c};
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim.p, &d, "u{1}", 4, three, 3, 1) == RL_OK);
  const tollgate_test::RespValue listed = server.query({"KEYS", "*"});
  std::set<std::string> names;
  for (const auto &k : listed.elements) names.insert(k.str);
  CHECK(names == std::set<std::string>{"tollgate:v2:{u{1}}",
                                       "tollgate:v2:{u{1}}:1",
                                       "tollgate:v2:{u{1}}:daily"});

  // The listing reads each state with the policy of its identity; states of
  // identities not asked for are skipped.
  rl_policy *handles[2] = {nullptr, nullptr};
  REQUIRE(rl_policy_create(&handles[0], &c) == RL_OK);
  REQUIRE(rl_policy_create(&handles[1], &b) == RL_OK);
  rl_keys *it = nullptr;
  REQUIRE(rl_keys_open(lim.p, handles, 2, &it) == RL_OK);
  rl_policy_release(handles[0]);
  rl_policy_release(handles[1]);
  std::map<size_t, std::string> seen;
  rl_key_info info = RL_KEY_INFO_INIT;
  int rc;
  while ((rc = rl_keys_next(it, &info)) == RL_OK) {
    CHECK(std::string(info.key, info.key_len) == "u{1}");
    seen[info.policy_index] =
        info.policy.name ? std::string(info.policy.name, info.policy.name_len)
                         : std::string("-");
    CHECK(info.remaining == (info.policy_index == 0 ? 9 : 99));
  }
  CHECK(rc == RL_E_DONE);
  rl_keys_free(it);
  // "daily" is found by name at index 0; b by its position 1.
  CHECK(seen == std::map<size_t, std::string>{{0, "daily"}, {1, "-"}});

  // An rl_key_info of version 1 is refused with RL_E_VERSION.
  rl_policy *one = nullptr;
  REQUIRE(rl_policy_create(&one, &a) == RL_OK);
  REQUIRE(rl_keys_open(lim.p, &one, 1, &it) == RL_OK);
  rl_key_info old = RL_KEY_INFO_INIT;
  old.version = 1;
  CHECK(rl_keys_next(it, &old) == RL_E_VERSION);
  rl_keys_free(it);
  // No policies, or a NULL list: RL_E_INVALID_ARG.
  CHECK(rl_keys_open(lim.p, &one, 0, &it) == RL_E_INVALID_ARG);
  CHECK(it == nullptr);
  CHECK(rl_keys_open(lim.p, nullptr, 1, &it) == RL_E_INVALID_ARG);
  rl_policy_release(one);

  // Reset removes every identity's state of the key, and only that key's
  // (a user key "u{1}}:1" would match the glob "{u{1}}*").
  REQUIRE(rl_check(lim.p, &d, "u{1}}:1", 7, &a, 1, 1) == RL_OK);
  REQUIRE(rl_reset(lim.p, "u{1}", 4) == RL_OK);
  const tollgate_test::RespValue left = server.query({"KEYS", "*"});
  REQUIRE(left.elements.size() == 1);
  CHECK(left.elements[0].str == "tollgate:v2:{u{1}}:1}");
}

TEST_CASE("redis keys: state written by key format 1 is never read",
          "[redis][keys]") {
  tollgate_test::RedisServer server;
  // A format-1 name and value of the same subject and policy: spent.
  server.query({"SET", "tollgate:{k}:gcra:2:60000:2", "99999999999999999"});
  TestLimiter lim(server.url());
  rl_policy_spec a = RL_POLICY_SPEC_INIT;
  a.limit = 2;
  a.period_ms = 60000;
  rl_decision d = RL_DECISION_INIT;
  REQUIRE(rl_check(lim.p, &d, "k", 1, &a, 1, 1) == RL_OK);
  CHECK(d.allowed == 1);
  CHECK(d.remaining == 1);
  // A listing skips it; a reset leaves it to its own TTL.
  rl_policy *h = nullptr;
  REQUIRE(rl_policy_create(&h, &a) == RL_OK);
  rl_keys *it = nullptr;
  REQUIRE(rl_keys_open(lim.p, &h, 1, &it) == RL_OK);
  rl_policy_release(h);
  int n = 0;
  rl_key_info info = RL_KEY_INFO_INIT;
  while (rl_keys_next(it, &info) == RL_OK) ++n;
  rl_keys_free(it);
  CHECK(n == 1);
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
  REQUIRE(rl_policy_parse(&p, "10/m", 4, nullptr) == RL_OK);
  REQUIRE(rl_keys_open(lim, &p, 1, &read) == RL_OK);
  REQUIRE(rl_keys_open(lim, &p, 1, &unread) == RL_OK);
  REQUIRE(rl_keys_open(lim, &p, 1, &kept) == RL_OK);
  rl_policy_release(p);
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
      "tollgate:v2:{org-1}:2",
      "app:rl:v2:{a:b}{c}:daily",
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
    // Hours, not seconds: a state must not expire before KEYS lists it (a
    // 10/s GCRA key lives about 100 ms, less than a slow ASan run takes).
    policies[i].period_ms = 3600 * 1000 * (i + 1);
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
    // The single-policy checks share position 0 with the multi one's first
    // (a GCRA and a token bucket: one state shape), so 4 names per user key.
    REQUIRE(listed.elements.size() == users.size() * 4);
    std::map<std::string, std::set<uint16_t>> slots;
    for (const tollgate_test::RespValue &k : listed.elements) {
      StateName n;
      INFO(k.str);
      REQUIRE(parse_redis_key(k.str, prefix, n));
      const std::string &user = n.user_key;
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
