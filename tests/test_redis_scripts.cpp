// The production Lua scripts called directly, as another client could call
// them: a malformed call is refused with an error and writes nothing; a
// well-formed one answers in the documented layout.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "support/redis_server.hpp"
#include "tollgate/redis/scripts.hpp"

using tollgate::Algorithm;
using tollgate::redis::batch_script;
using tollgate::redis::multi_script;
using tollgate::redis::script_for;
using tollgate_test::RedisServer;
using tollgate_test::RespValue;

namespace {

// EVAL body numkeys keys... args...
RespValue eval(const RedisServer &server, std::string_view body,
               const std::vector<std::string> &keys,
               const std::vector<std::string> &args) {
  std::vector<std::string> cmd = {"EVAL", std::string(body),
                                  std::to_string(keys.size())};
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
  return server.query(cmd);
}

long long dbsize(const RedisServer &server) {
  return server.query({"DBSIZE"}).integer;
}

// GCRA 10 per minute: algorithm, limit, period_ms, capacity, interval_us,
// no block (block_us, strikes, strike_us), enforced (shadow 0).
const std::vector<std::string> kGcra = {"0", "10", "60000", "10", "6000000",
                                        "0", "0",  "0",     "0"};
// Fixed window 5 per minute, no block, enforced.
const std::vector<std::string> kFixed = {"2", "5", "60000", "5", "0",
                                         "0", "0", "0",     "0"};

std::vector<std::string> cat(std::vector<std::string> a,
                             const std::vector<std::string> &b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Numbers as single.lua reads them: little-endian doubles back to back.
std::string packed(const std::vector<double> &numbers) {
  std::string out;
  for (const double v : numbers) {
    const auto bits = std::bit_cast<uint64_t>(v);
    for (int b = 0; b < 8; ++b) out += static_cast<char>(bits >> (8 * b));
  }
  return out;
}

}  // namespace

TEST_CASE("redis scripts: the single-policy script refuses malformed calls",
          "[redis][scripts]") {
  RedisServer server;
  const std::string_view body = script_for(Algorithm::gcra, false)->body;
  // kGcra's values after the algorithm, with cost 1, packed as single.lua
  // reads them.
  const std::vector<double> numbers = {1, 10, 60000, 10, 6000000, 0, 0, 0, 0};
  const std::vector<std::string> args = {packed(numbers), "0"};
  // Well formed: allowed, the layout of one policy, one key written.
  RespValue ok = eval(server, body, {"k"}, args);
  REQUIRE(ok.type == '*');
  REQUIRE(ok.elements.size() == 5);
  CHECK(ok.elements[0].integer == 1);
  CHECK(ok.elements[1].integer == 1);
  CHECK(ok.elements[2].integer == 9);
  CHECK(dbsize(server) == 1);
  REQUIRE(server.query({"FLUSHALL"}).type == '+');

  const auto with = [&](size_t i, double v) {
    std::vector<double> w = numbers;
    w[i] = v;
    return std::vector<std::string>{packed(w), "0"};
  };
  struct Bad {
    const char *what;
    std::vector<std::string> keys, args;
    const char *error;
  };
  const char *shape =
      "ERR tollgate: expected 1 key and 2 arguments (72 bytes, the time)";
  const char *whole = "ERR tollgate: the numbers must be integers";
  const Bad bad[] = {
      {"no key", {}, args, shape},
      {"two keys", {"k", "k2"}, args, shape},
      {"1 argument", {"k"}, {args[0]}, shape},
      {"3 arguments", {"k"}, cat(args, {"1"}), shape},
      {"the old layout, 11 arguments", {"k"}, cat({"1", "0"}, kGcra), shape},
      {"71 bytes", {"k"}, {args[0].substr(0, 71), "0"}, shape},
      {"73 bytes", {"k"}, {args[0] + "x", "0"}, shape},
      {"a cost of 1.5", {"k"}, with(0, 1.5), whole},
      {"a cost not a number", {"k"}, with(0, std::nan("")), whole},
      {"an infinite limit", {"k"}, with(1, INFINITY), whole},
      {"a block of -inf", {"k"}, with(5, -INFINITY), whole},
      {"a fractional shadow", {"k"}, with(8, 0.25), whole},
  };
  for (const Bad &b : bad) {
    INFO(b.what);
    const RespValue r = eval(server, body, b.keys, b.args);
    CHECK(r.is_error());
    CHECK(r.str == b.error);
    CHECK(dbsize(server) == 0);
  }
}

TEST_CASE("redis scripts: the multi-policy script refuses malformed calls",
          "[redis][scripts]") {
  RedisServer server;
  const std::string_view body = multi_script(false)->body;
  const std::vector<std::string> two = cat(cat({"1", "0"}, kGcra), kFixed);
  RespValue ok = eval(server, body, {"a", "b"}, two);
  REQUIRE(ok.type == '*');
  REQUIRE(ok.elements.size() == 9);
  CHECK(ok.elements[0].integer == 1);
  CHECK(ok.elements[2].integer == 9);  // GCRA: 9 left
  CHECK(ok.elements[6].integer == 4);  // fixed window: 4 left
  CHECK(dbsize(server) == 2);
  REQUIRE(server.query({"FLUSHALL"}).type == '+');

  struct Bad {
    const char *what;
    std::vector<std::string> keys, args;
  };
  const Bad bad[] = {
      {"no key", {}, {"1", "0"}},
      {"one key too many", {"a", "b", "c"}, two},
      {"one key too few", {"a"}, two},
      {"cost not a number", {"a", "b"}, cat(cat({"x", "0"}, kGcra), kFixed)},
      {"unknown algorithm",
       {"a", "b"},
       cat(cat({"1", "0"}, kGcra),
           {"7", "5", "60000", "5", "0", "0", "0", "0", "0"})},
  };
  for (const Bad &b : bad) {
    INFO(b.what);
    const RespValue r = eval(server, body, b.keys, b.args);
    CHECK(r.is_error());
    CHECK(r.str.find("tollgate") != std::string::npos);
    CHECK(dbsize(server) == 0);
  }
  // The refusal names the algorithm number it does not know.
  const RespValue r = eval(server, body, {"a", "b"}, bad[4].args);
  CHECK(r.str.find("unknown algorithm 7") != std::string::npos);
  // A count mismatch says how many arguments n keys take.
  const RespValue counts = eval(server, body, bad[1].keys, bad[1].args);
  CHECK(counts.str.find("expected n keys and 2 + 9n arguments") !=
        std::string::npos);
}

TEST_CASE("redis scripts: the batch script checks every part before any runs",
          "[redis][scripts]") {
  RedisServer server;
  const std::string_view body = batch_script(false)->body;
  // One distinct policy (P = 1), production time (0); two checks of one
  // policy each: n = 1, cost 1, policy number 1.
  const std::vector<std::string> head = cat({"1", "0"}, kGcra);
  const std::vector<std::string> two =
      cat(head, {"1", "1", "1", "1", "1", "1"});
  RespValue ok = eval(server, body, {"a", "b"}, two);
  REQUIRE(ok.type == '*');
  REQUIRE(ok.elements.size() == 10);
  CHECK(ok.elements[0].integer == 1);
  CHECK(ok.elements[5].integer == 1);
  CHECK(dbsize(server) == 2);
  REQUIRE(server.query({"FLUSHALL"}).type == '+');

  struct Bad {
    const char *what;
    std::vector<std::string> keys, args;
  };
  const Bad bad[] = {
      {"a policy one value short",
       {},
       {"1", "0", "0", "10", "60000", "10", "6000000", "0", "0"}},
      {"no policies", {"a"}, {"0", "0", "1", "1", "1"}},
      {"the second check's cost is not a number",
       {"a", "b"},
       cat(head, {"1", "1", "1", "1", "x", "1"})},
      {"the second check names policy 2 of 1",
       {"a", "b"},
       cat(head, {"1", "1", "1", "1", "1", "2"})},
      {"the second check is missing its policy number",
       {"a", "b"},
       cat(head, {"1", "1", "1", "1", "1"})},
      {"a key too many", {"a", "b", "c"}, two},
      {"a key too few", {"a"}, two},
      {"n is 0", {"a"}, cat(head, {"1", "1", "1", "0", "1"})},
  };
  for (const Bad &b : bad) {
    INFO(b.what);
    const RespValue r = eval(server, body, b.keys, b.args);
    CHECK(r.is_error());
    CHECK(r.str.find("tollgate: malformed batch") != std::string::npos);
    CHECK(dbsize(server) == 0);
  }
}

TEST_CASE(
    "redis scripts: the lease script refuses malformed calls and "
    "keeps its set until the last lease ends",
    "[redis][scripts][leases]") {
  RedisServer server;
  const std::string_view body = tollgate::redis::lease_script(false)->body;
  const std::string set = "t:v2:{k}:!l";
  struct Bad {
    const char *what;
    std::vector<std::string> keys, args;
  };
  const Bad bad[] = {
      {"no key", {}, {"a", "0", "id1", "3", "1000000"}},
      {"two keys", {set, "x"}, {"a", "0", "id1", "3", "1000000"}},
      {"four arguments", {set}, {"a", "0", "id1", "3"}},
      {"six arguments", {set}, {"a", "0", "id1", "3", "1000000", "1"}},
      {"unknown op", {set}, {"z", "0", "id1", "3", "1000000"}},
      {"max not a number", {set}, {"a", "0", "id1", "x", "1000000"}},
      {"ttl not a number", {set}, {"a", "0", "id1", "3", "x"}},
  };
  for (const Bad &b : bad) {
    INFO(b.what);
    const RespValue r = eval(server, body, b.keys, b.args);
    CHECK(r.is_error());
    CHECK(r.str.find("tollgate: expected 1 key and 5 arguments") !=
          std::string::npos);
    CHECK(dbsize(server) == 0);
  }

  auto call = [&](const char *op, const char *id, const char *max,
                  const char *ttl_us) {
    return eval(server, body, {set}, {op, "0", id, max, ttl_us});
  };
  auto pttl = [&] { return server.query({"PTTL", set}).integer; };
  // Three leases ending in 5, 10 and 20 s, acquired out of order: the set
  // lives until the last ends (20 s), whatever order they came in.
  REQUIRE(call("a", "mid", "3", "10000000").elements.at(0).integer == 1);
  REQUIRE(call("a", "late", "3", "20000000").elements.at(0).integer == 1);
  const RespValue third = call("a", "early", "3", "5000000");
  REQUIRE(third.elements.at(0).integer == 1);
  CHECK(third.elements.at(1).integer == 3);
  CHECK(pttl() > 19000);
  CHECK(pttl() <= 20000);
  // Full: denied with the time until the earliest lease ends (5 s).
  const RespValue denied = call("a", "more", "3", "1000000");
  REQUIRE(denied.elements.size() == 3);
  CHECK(denied.elements[0].integer == 0);
  CHECK(denied.elements[1].integer == 3);
  CHECK(denied.elements[2].integer > 4000000);
  CHECK(denied.elements[2].integer <= 5000000);
  // A renewal past the last end moves the set's end with it.
  CHECK(call("r", "mid", "0", "30000000").integer == 1);
  CHECK(pttl() > 29000);
  CHECK(call("r", "gone", "0", "30000000").integer == 0);
  CHECK(call("x", "gone", "0", "0").integer == 0);
  CHECK(call("x", "mid", "0", "0").integer == 1);
  CHECK(call("x", "mid", "0", "0").integer == 0);
}
