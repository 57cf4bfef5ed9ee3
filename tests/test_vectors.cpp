// Replays the shared vectors in tests/vectors/*.json through the C ABI.
//
// Every case gets a fresh limiter whose clock is a test-controlled
// microsecond counter; every step sets the clock, calls rl_check (or
// rl_reset) and compares each expected field. The vectors come from
// tests/vectors/reference.py, an independent Python model of
// docs/algorithms.md; tests/vectors/README.md describes the format.
#include <tollgate.h>

#include "support/policy_specs.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/redis_server.hpp"

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#ifndef TOLLGATE_VECTORS_DIR
#error "TOLLGATE_VECTORS_DIR must name the tests/vectors directory"
#endif

namespace {

using json = nlohmann::json;

const char *const kVectorFiles[] = {
    "gcra.json",           "token_bucket.json", "fixed_window.json",
    "sliding_window.json", "multi_policy.json", "refund.json",
    "carry_over.json",     "block.json",        "multi_key.json",
    "shadow.json",         "leases.json",       "lists.json"};

std::string vector_path(const std::string &file) {
  return std::string(TOLLGATE_VECTORS_DIR) + "/" + file;
}

json load_vectors(const std::string &file) {
  std::ifstream in(vector_path(file));
  INFO("reading " << vector_path(file));
  REQUIRE(in.good());
  json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
  REQUIRE_FALSE(doc.is_discarded());
  REQUIRE(doc.is_object());
  REQUIRE(doc.at("format").get<int>() == 3);
  REQUIRE(doc.at("cases").is_array());
  return doc;
}

int32_t algorithm_code(const std::string &name) {
  if (name == "gcra") return RL_ALG_GCRA;
  if (name == "token_bucket") return RL_ALG_TOKEN_BUCKET;
  if (name == "fixed_window") return RL_ALG_FIXED_WINDOW;
  if (name == "sliding_window") return RL_ALG_SLIDING_WINDOW;
  FAIL("unknown algorithm in vectors: " << name);
  return -1;
}

int error_code(const std::string &name) {
  static const struct {
    const char *name;
    int code;
  } kCodes[] = {
      {"RL_E_INVALID_ARG", RL_E_INVALID_ARG},
      {"RL_E_KEY_INVALID", RL_E_KEY_INVALID},
      {"RL_E_KEY_TOO_LONG", RL_E_KEY_TOO_LONG},
      {"RL_E_POLICY", RL_E_POLICY},
      {"RL_E_OVERFLOW", RL_E_OVERFLOW},
      {"RL_E_VERSION", RL_E_VERSION},
      {"RL_E_NOMEM", RL_E_NOMEM},
      {"RL_E_URL", RL_E_URL},
      {"RL_E_UNSUPPORTED", RL_E_UNSUPPORTED},
      {"RL_E_INTERNAL", RL_E_INTERNAL},
      {"RL_E_NOT_FOUND", RL_E_NOT_FOUND},
  };
  for (const auto &c : kCodes) {
    if (name == c.name) return c.code;
  }
  FAIL("unknown error name in vectors: " << name);
  return 0;
}

// The limiter's clock: whatever the current step says.
struct TestClock {
  int64_t now_us = 0;
};

int64_t test_clock(void *user_data) {
  return static_cast<TestClock *>(user_data)->now_us;
}

struct LimiterDeleter {
  void operator()(rl_limiter *l) const { rl_destroy(l); }
};
using LimiterPtr = std::unique_ptr<rl_limiter, LimiterDeleter>;

struct LeaseDeleter {
  void operator()(rl_lease *l) const { rl_lease_free(l); }
};
using LeasePtr = std::unique_ptr<rl_lease, LeaseDeleter>;

int32_t source_code(const std::string &name) {
  if (name == "store") return RL_SOURCE_STORE;
  if (name == "allow_list") return RL_SOURCE_ALLOW_LIST;
  if (name == "deny_list") return RL_SOURCE_DENY_LIST;
  FAIL("unknown source in vectors: " << name);
  return -1;
}

int expected_rc(const json &step) {
  return step.contains("expect_error")
             ? error_code(step.at("expect_error").get<std::string>())
             : RL_OK;
}

// The lease and list steps (tests/vectors/README.md): acquire, renew and
// release name leases by label; set_list replaces a list.
void replay_lease_or_list(rl_limiter *limiter, const json &step,
                          const std::string &key, const std::string &op,
                          std::map<std::string, LeasePtr> &leases) {
  if (op == "set_list") {
    const std::string which = step.at("list").get<std::string>();
    REQUIRE((which == "allow" || which == "deny"));
    std::vector<std::string> entries;
    for (const json &e : step.at("entries")) entries.push_back(e);
    std::vector<const char *> ptrs;
    std::vector<size_t> lens;
    for (const std::string &e : entries) {
      ptrs.push_back(e.data());
      lens.push_back(e.size());
    }
    const int rc =
        rl_set_list(limiter, which == "allow" ? RL_LIST_ALLOW : RL_LIST_DENY,
                    ptrs.data(), lens.data(), entries.size());
    INFO("rl_last_error: " << rl_last_error());
    REQUIRE(rc == expected_rc(step));
    return;
  }
  const std::string label = step.at("lease").get<std::string>();
  if (op == "acquire") {
    rl_lease *raw = nullptr;
    rl_lease_info info = RL_LEASE_INFO_INIT;
    const int rc =
        rl_lease_acquire(limiter, key.data(), key.size(),
                         step.at("max_in_flight").get<int64_t>(),
                         step.at("ttl_ms").get<int64_t>(), &raw, &info);
    LeasePtr lease(raw);
    INFO("rl_last_error: " << rl_last_error());
    REQUIRE(rc == expected_rc(step));
    if (rc != RL_OK) {
      REQUIRE(raw == nullptr);
      return;
    }
    const json &e = step.at("expect");
    REQUIRE(info.acquired == (e.at("acquired").get<bool>() ? 1 : 0));
    REQUIRE((raw != nullptr) == (info.acquired == 1));
    REQUIRE(info.in_flight == e.at("in_flight").get<int64_t>());
    REQUIRE(info.max_in_flight == e.at("max_in_flight").get<int64_t>());
    REQUIRE(info.retry_after_ms == e.at("retry_after_ms").get<int64_t>());
    REQUIRE(info.source == RL_SOURCE_STORE);
    if (raw != nullptr) {
      REQUIRE(leases.count(label) == 0);  // a label names one lease
      leases[label] = std::move(lease);
    }
    return;
  }
  REQUIRE(leases.count(label) == 1);
  rl_lease *lease = leases.at(label).get();
  if (op == "renew") {
    const int rc =
        rl_lease_renew(limiter, lease, step.at("ttl_ms").get<int64_t>());
    INFO("rl_last_error: " << rl_last_error());
    REQUIRE(rc == expected_rc(step));
    return;
  }
  REQUIRE(op == "release");
  int was_held = -1;
  REQUIRE(rl_lease_release(limiter, lease, &was_held) == RL_OK);
  REQUIRE(was_held == (step.at("expect").at("was_held").get<bool>() ? 1 : 0));
}

int64_t step_time_us(const json &step) {
  const bool has_ms = step.contains("t_ms");
  const bool has_us = step.contains("t_us");
  REQUIRE(has_ms != has_us);  // exactly one of them
  return has_ms ? step.at("t_ms").get<int64_t>() * 1000
                : step.at("t_us").get<int64_t>();
}

// The policies a check passes: the specs point into `names`.
struct PolicyList {
  std::vector<std::string> names;
  std::vector<rl_policy_spec> specs;
};

void read_policies(const json &list, PolicyList &out) {
  REQUIRE(list.is_array());
  REQUIRE_FALSE(list.empty());
  out.names.clear();
  out.specs.clear();
  for (const json &p : list) out.names.push_back(p.value("name", ""));
  for (size_t i = 0; i < list.size(); ++i) {
    const json &p = list[i];
    rl_policy_spec pol = RL_POLICY_SPEC_INIT;
    pol.algorithm = algorithm_code(p.at("algorithm").get<std::string>());
    pol.limit = p.at("limit").get<int64_t>();
    pol.period_ms = p.at("period_ms").get<int64_t>();
    pol.burst = p.value("burst", int64_t{0});
    pol.block_ms = p.value("block_ms", int64_t{0});
    pol.strikes = p.value("strikes", int64_t{0});
    pol.strikes_period_ms = p.value("strikes_period_ms", int64_t{0});
    if (p.value("shadow", false)) pol.flags = RL_POLICY_SHADOW;
    if (!out.names[i].empty()) {
      pol.name = out.names[i].data();
      pol.name_len = out.names[i].size();
    }
    out.specs.push_back(pol);
  }
}

// Replays one case; `url` empty means the memory store, else a Redis URL
// (the pinned-clock scripts of a TOLLGATE_TESTING build take the clock).
void replay_case(const std::string &file, const json &c,
                 const std::string &url = "", const std::string &prefix = "") {
  const std::string name = c.at("name").get<std::string>();
  const std::string case_key = c.at("key").get<std::string>();

  // The case's policies, replaced by a step's "policies" from that step on.
  PolicyList policies;
  read_policies(c.at("policies"), policies);

  TestClock clock;
  rl_options opts = RL_OPTIONS_INIT;
  opts.clock = &test_clock;
  opts.clock_user_data = &clock;
  if (!url.empty()) {
    opts.url = url.c_str();
    opts.key_prefix = prefix.c_str();  // cases do not share keys
    opts.deny_cache = -1;  // the vectors describe the store's own answers
    opts.failure_mode = RL_FAIL_ERROR;
  }
  rl_limiter *raw = nullptr;
  REQUIRE(rl_create(&raw, &opts) == RL_OK);
  REQUIRE(raw != nullptr);
  LimiterPtr limiter(raw);
  // Declared after the limiter: freed first (either order is allowed).
  std::map<std::string, LeasePtr> leases;

  const json &steps = c.at("steps");
  REQUIRE(steps.is_array());
  REQUIRE_FALSE(steps.empty());
  for (size_t i = 0; i < steps.size(); ++i) {
    const json &step = steps[i];
    INFO(file << ", case \"" << name << "\", step " << i << ": "
              << step.dump());
    clock.now_us = step_time_us(step);
    if (step.contains("policies")) read_policies(step.at("policies"), policies);
    const std::string key = step.value("key", case_key);
    const std::string op = step.value("op", std::string("check"));

    if (op == "reset") {
      REQUIRE(rl_reset(limiter.get(), key.data(), key.size()) == RL_OK);
      continue;
    }
    if (op == "acquire" || op == "renew" || op == "release" ||
        op == "set_list") {
      replay_lease_or_list(limiter.get(), step, key, op, leases);
      continue;
    }
    if (op == "block" || op == "unblock") {
      const int rc = op == "block"
                         ? rl_block(limiter.get(), key.data(), key.size(),
                                    step.at("duration_ms").get<int64_t>())
                         : rl_unblock(limiter.get(), key.data(), key.size());
      INFO("rl_last_error: " << rl_last_error());
      REQUIRE(rc ==
              (step.contains("expect_error")
                   ? error_code(step.at("expect_error").get<std::string>())
                   : RL_OK));
      continue;
    }
    const int64_t cost = step.at("cost").get<int64_t>();
    rl_decision d = RL_DECISION_INIT;
    int rc;
    if (op == "check_keys") {
      // Every pair's policies, back to back, as rl_check_keys takes them.
      std::vector<PolicyList> lists(step.at("pairs").size());
      std::vector<std::string> pair_keys;
      std::vector<const char *> key_ptrs;
      std::vector<size_t> key_lens, counts;
      std::vector<rl_policy_spec> all;
      for (size_t j = 0; j < lists.size(); ++j) {
        const json &pair = step.at("pairs")[j];
        pair_keys.push_back(pair.at("key").get<std::string>());
        read_policies(pair.at("policies"), lists[j]);
        counts.push_back(lists[j].specs.size());
        all.insert(all.end(), lists[j].specs.begin(), lists[j].specs.end());
      }
      for (const std::string &k : pair_keys) {
        key_ptrs.push_back(k.data());
        key_lens.push_back(k.size());
      }
      tollgate_test::SpecHandles hs(all.data(), all.size());
      REQUIRE(hs.rc == RL_OK);
      rc = rl_check_keys(limiter.get(), &d, key_ptrs.data(), key_lens.data(),
                         pair_keys.size(), hs.array(all.data()), counts.data(),
                         cost);
    } else {
      REQUIRE(op == "check");
      rc = rl_check(limiter.get(), &d, key.data(), key.size(),
                    policies.specs.data(), policies.specs.size(), cost);
    }

    if (step.contains("expect_error")) {
      const std::string err = step.at("expect_error").get<std::string>();
      INFO("expected " << err << ", rl_last_error: " << rl_last_error());
      REQUIRE(rc == error_code(err));
      continue;
    }
    INFO("rl_last_error: " << rl_last_error());
    REQUIRE(rc == RL_OK);
    const json &e = step.at("expect");
    REQUIRE(d.allowed == (e.at("allowed").get<bool>() ? 1 : 0));
    REQUIRE(d.limit == e.at("limit").get<int64_t>());
    REQUIRE(d.remaining == e.at("remaining").get<int64_t>());
    REQUIRE(d.reset_after_ms == e.at("reset_after_ms").get<int64_t>());
    REQUIRE(d.retry_after_ms == e.at("retry_after_ms").get<int64_t>());
    REQUIRE(d.policy_index == e.at("policy_index").get<uint32_t>());
    REQUIRE(d.shadow == (e.value("shadow", false) ? 1 : 0));
    REQUIRE(d.source == source_code(e.value("source", std::string("store"))));
  }
}

// One section per case: a failing case is reported and the others still run.
void replay_file(const std::string &file, const std::string &url = "") {
  const json doc = load_vectors(file);
  int index = 0;
  for (const json &c : doc.at("cases")) {
    const std::string prefix =
        "vt:" + file + ":" + std::to_string(index++) + ":";
    DYNAMIC_SECTION(file << ": " << c.at("name").get<std::string>()) {
      replay_case(file, c, url, prefix);
    }
  }
}

}  // namespace

TEST_CASE("vectors: every file exists and holds cases", "[vectors]") {
  for (const char *file : kVectorFiles) {
    INFO(file);
    const json doc = load_vectors(file);
    REQUIRE(doc.at("algorithm").is_string());
    REQUIRE_FALSE(doc.at("cases").empty());
    std::set<std::string> names;
    for (const json &c : doc.at("cases")) {
      REQUIRE(c.at("name").is_string());
      REQUIRE(names.insert(c.at("name").get<std::string>()).second);
      REQUIRE_FALSE(c.at("policies").empty());
      REQUIRE_FALSE(c.at("steps").empty());
    }
  }
}

TEST_CASE("vectors: GCRA", "[vectors]") {
  replay_file("gcra.json");
}

TEST_CASE("vectors: token bucket", "[vectors]") {
  replay_file("token_bucket.json");
}

TEST_CASE("vectors: fixed window", "[vectors]") {
  replay_file("fixed_window.json");
}

TEST_CASE("vectors: sliding window", "[vectors]") {
  replay_file("sliding_window.json");
}

TEST_CASE("vectors: multiple policies", "[vectors]") {
  replay_file("multi_policy.json");
}

TEST_CASE("vectors: refunds", "[vectors]") {
  replay_file("refund.json");
}

TEST_CASE("vectors: policies that change (carry-over)", "[vectors]") {
  replay_file("carry_over.json");
}

TEST_CASE("vectors: blocks", "[vectors]") {
  replay_file("block.json");
}

TEST_CASE("vectors: several keys in one decision", "[vectors]") {
  replay_file("multi_key.json");
}

TEST_CASE("vectors: shadow mode", "[vectors][shadow]") {
  replay_file("shadow.json");
}

TEST_CASE("vectors: concurrency leases", "[vectors][leases]") {
  replay_file("leases.json");
}

TEST_CASE("vectors: allow and deny lists", "[vectors][lists]") {
  replay_file("lists.json");
}

#ifdef TOLLGATE_TESTING
// The same files against a real Redis: the Lua scripts must give the
// memory store's decisions exactly.
TEST_CASE("vectors on Redis: every file", "[vectors][redis][slow]") {
  tollgate_test::RedisServer server;
  const std::string url = server.url();
  for (const char *file : kVectorFiles) replay_file(file, url);
}
#endif
