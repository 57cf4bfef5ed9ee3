// The Redis 7 function library (docs/redis.md, "Functions"): one-policy
// checks call FCALL where every connection could load it, EVALSHA where it
// cannot or must not; a library flushed behind the limiter's back costs no
// check and no decision, and comes back.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_server.hpp"
#include "support/policy_specs.hpp"
#include "support/redis_server.hpp"
#include "tollgate.h"

namespace {

using tollgate_test::FakeCommand;
using tollgate_test::FakeReply;
using tollgate_test::RedisServer;
using tollgate_test::RespValue;

struct Lim {
  rl_limiter *p = nullptr;
  explicit Lim(const std::string &url) {
    rl_options o = RL_OPTIONS_INIT;
    o.url = url.c_str();
    o.failure_mode = RL_FAIL_ERROR;
    o.deny_cache = -1;  // every check reaches Redis
    const int rc = rl_create(&p, &o);
    INFO("rl_create: " << rl_last_error());
    REQUIRE(rc == RL_OK);
  }
  ~Lim() { rl_destroy(p); }
  Lim(const Lim &) = delete;
  Lim &operator=(const Lim &) = delete;
};

rl_policy_spec spec(int32_t algorithm, int64_t limit) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = algorithm;
  p.limit = limit;
  // About 32 years: no refill or window boundary inside a test.
  p.period_ms = 1'000'000'000'000;
  return p;
}

rl_decision check(rl_limiter *lim, const std::string &key,
                  const rl_policy_spec *p, size_t n = 1) {
  rl_decision d = RL_DECISION_INIT;
  const int rc = rl_check(lim, &d, key.data(), key.size(), p, n, 1);
  INFO(key << ": " << rl_last_error());
  REQUIRE(rc == RL_OK);
  return d;
}

long long calls(const RedisServer &server, const std::string &command) {
  const std::string info = server.command({"INFO", "commandstats"});
  const std::string tag = "cmdstat_" + command + ":calls=";
  const size_t at = info.find(tag);
  return at == std::string::npos ? 0 : std::stoll(info.substr(at + tag.size()));
}

// FUNCTION LIST: library name -> its functions' names.
std::map<std::string, std::vector<std::string>> libraries(
    const RedisServer &server) {
  std::map<std::string, std::vector<std::string>> out;
  const RespValue list = server.query({"FUNCTION", "LIST"});
  REQUIRE(list.type == '*');
  for (const RespValue &lib : list.elements) {
    std::string name;
    std::vector<std::string> fns;
    for (size_t i = 0; i + 1 < lib.elements.size(); i += 2) {
      const std::string &field = lib.elements[i].str;
      if (field == "library_name") name = lib.elements[i + 1].str;
      if (field != "functions") continue;
      for (const RespValue &fn : lib.elements[i + 1].elements)
        for (size_t j = 0; j + 1 < fn.elements.size(); j += 2)
          if (fn.elements[j].str == "name")
            fns.push_back(fn.elements[j + 1].str);
    }
    out[name] = fns;
  }
  return out;
}

std::string last_error(rl_limiter *lim) {
  rl_health_info h = RL_HEALTH_INIT;
  REQUIRE(rl_health(lim, &h) == RL_OK);
  return h.last_error;
}

const int32_t kAlgorithms[] = {RL_ALG_GCRA, RL_ALG_TOKEN_BUCKET,
                               RL_ALG_FIXED_WINDOW, RL_ALG_SLIDING_WINDOW};

// `limit` + 2 checks of each algorithm on `stem`<algorithm>: exactly `limit`
// allowed, remaining counting down, then denied.
void exact(rl_limiter *lim, const std::string &stem, int64_t limit) {
  for (const int32_t a : kAlgorithms) {
    const rl_policy_spec p = spec(a, limit);
    const std::string key = stem + std::to_string(a);
    for (int64_t i = 0; i < limit + 2; ++i) {
      const rl_decision d = check(lim, key, &p);
      INFO("algorithm " << a << ", check " << i);
      CHECK(d.allowed == (i < limit ? 1 : 0));
      if (i < limit) CHECK(d.remaining == limit - 1 - i);
    }
  }
}

}  // namespace

TEST_CASE(
    "functions: one-policy checks call the library (FCALL), loaded once "
    "under a name of its own",
    "[redis][functions]") {
  RedisServer server;
  Lim lim(server.url());
  exact(lim.p, "one", 5);
  // 4 algorithms x 7 checks, each one FCALL; no script call.
  CHECK(calls(server, "fcall") == 28);
  CHECK(calls(server, "evalsha") == 0);
  const auto libs = libraries(server);
  REQUIRE(libs.size() == 1);
  const std::string name = libs.begin()->first;
  CHECK(name.rfind("tollgate_", 0) == 0);
  CHECK(name.size() == 9 + 16);
  std::vector<std::string> fns = libs.begin()->second;
  std::sort(fns.begin(), fns.end());
  CHECK(fns == std::vector<std::string>{name + "_fixed_window", name + "_gcra",
                                        name + "_sliding_window",
                                        name + "_token_bucket"});
  // Two policies: the multi script, by SHA1.
  const rl_policy_spec two[2] = {spec(RL_ALG_GCRA, 3),
                                 spec(RL_ALG_FIXED_WINDOW, 2)};
  CHECK(check(lim.p, "two", two, 2).allowed == 1);
  CHECK(calls(server, "evalsha") == 1);
  // A second limiter finds the library there: still one, still called.
  Lim other(server.url());
  const rl_policy_spec p = spec(RL_ALG_GCRA, 1);
  CHECK(check(other.p, "other", &p).allowed == 1);
  CHECK(libraries(server).size() == 1);
  CHECK(calls(server, "fcall") == 29);
  CHECK(last_error(lim.p).empty());
  CHECK(last_error(other.p).empty());
}

TEST_CASE("functions: ?functions=no loads nothing and calls EVALSHA",
          "[redis][functions]") {
  RedisServer server;
  Lim lim(server.url() + "?functions=no");
  exact(lim.p, "off", 3);
  CHECK(calls(server, "fcall") == 0);
  CHECK(calls(server, "function|load") == 0);
  CHECK(calls(server, "evalsha") == 20);
  CHECK(libraries(server).empty());
  // Not a boolean: refused, naming the option.
  rl_options o = RL_OPTIONS_INIT;
  const std::string bad = server.url() + "?functions=maybe";
  o.url = bad.c_str();
  rl_limiter *l = nullptr;
  CHECK(rl_create(&l, &o) == RL_E_URL);
  CHECK(std::string(rl_last_error()).find("functions") != std::string::npos);
  CHECK(l == nullptr);
}

TEST_CASE(
    "functions: FUNCTION FLUSH behind the limiter's back costs no check and "
    "no decision, and the library is loaded again",
    "[redis][functions]") {
  RedisServer server;
  Lim lim(server.url());
  const rl_policy_spec p = spec(RL_ALG_GCRA, 20);
  for (int i = 0; i < 10; ++i) CHECK(check(lim.p, "k", &p).allowed == 1);
  REQUIRE(server.query({"FUNCTION", "FLUSH"}).str == "OK");
  REQUIRE(libraries(server).empty());
  int allowed = 0;
  for (int i = 0; i < 15; ++i) allowed += check(lim.p, "k", &p).allowed;
  CHECK(allowed == 10);  // 20 in all, none lost or doubled
  // The first FCALL after the flush was answered "Function not found": it
  // went again by SHA1, and the library was sent again.
  CHECK(calls(server, "evalsha") >= 1);
  CHECK(calls(server, "function|load") >= 2);
  CHECK(libraries(server).size() == 1);
  // And checks call it again.
  const long long before = calls(server, "fcall");
  const rl_policy_spec q = spec(RL_ALG_FIXED_WINDOW, 100);
  for (int i = 0; i < 5; ++i) CHECK(check(lim.p, "again", &q).allowed == 1);
  CHECK(calls(server, "fcall") > before);
  CHECK(last_error(lim.p).empty());
}

TEST_CASE("functions: async checks across a FUNCTION FLUSH decide exactly",
          "[redis][functions][async]") {
  RedisServer server;
  Lim lim(server.url());
  struct Burst {
    std::mutex mu;
    std::condition_variable cv;
    int done = 0, errors = 0;
    std::string first_error;
    std::map<std::string, int> allowed;
  } b;
  struct Call {
    Burst *b;
    std::string key;
  };
  auto cb = [](int status, const rl_decision *d, const char *, void *user) {
    auto *c = static_cast<Call *>(user);
    std::lock_guard<std::mutex> lock(c->b->mu);
    if (status != RL_OK) {
      if (c->b->errors++ == 0) c->b->first_error = rl_last_error();
    } else {
      c->b->allowed[c->key] += d->allowed;
    }
    ++c->b->done;
    c->b->cv.notify_one();
    delete c;
  };
  constexpr int kKeys = 16, kRounds = 12, kLimit = 5;
  int sent = 0;
  for (int round = 0; round < kRounds; ++round) {
    // Flushed while checks are in flight, twice.
    if (round == 3 || round == 8)
      REQUIRE(server.query({"FUNCTION", "FLUSH"}).str == "OK");
    for (int k = 0; k < kKeys; ++k) {
      const rl_policy_spec p = spec(kAlgorithms[k % 4], kLimit);
      auto *c = new Call{&b, "a" + std::to_string(k)};
      REQUIRE(rl_check_async(lim.p, c->key.data(), c->key.size(), &p, 1, 1, cb,
                             c) == RL_OK);
      ++sent;
    }
  }
  std::unique_lock<std::mutex> lock(b.mu);
  REQUIRE(b.cv.wait_for(lock, std::chrono::seconds(20),
                        [&] { return b.done == sent; }));
  INFO(b.first_error);
  CHECK(b.errors == 0);
  for (int k = 0; k < kKeys; ++k)
    CHECK(b.allowed["a" + std::to_string(k)] == kLimit);
}

TEST_CASE(
    "functions: a user who may not FCALL, or not FUNCTION LOAD, gets the "
    "same decisions by EVALSHA, and rl_health says why",
    "[redis][functions][acl]") {
  struct Case {
    const char *name;
    const char *rules;
    const char *reason;
  };
  const Case cases[] = {
      {"no FCALL", "~* &* +@all -fcall", "FCALL refused (checks call EVALSHA)"},
      {"no FUNCTION LOAD", "~* &* +@all -function|load",
       "FUNCTION LOAD refused by"},
  };
  for (const Case &c : cases) {
    SECTION(c.name) {
      tollgate_test::RedisOptions ro;
      ro.acl_users.push_back({"lim", "s3cret-pw", c.rules});
      RedisServer server(ro);
      std::string url = server.url();
      url.insert(url.find("://") + 3, "lim:s3cret-pw@");
      Lim lim(url);
      exact(lim.p, "acl", 4);
      const std::string why = last_error(lim.p);
      INFO(why);
      CHECK(why.find(c.reason) != std::string::npos);
      CHECK(why.find("NOPERM") != std::string::npos);
      CHECK(why.find("s3cret-pw") == std::string::npos);
      // At most one FCALL tried (then EVALSHA for good).
      CHECK(calls(server, "fcall") <= 1);
      CHECK(calls(server, "evalsha") >= 23);
    }
  }
}

namespace {

// A fake server of `version` that answers a check (FCALL or EVALSHA) with
// `fcall` or an allowed one-policy decision; every other command as Redis
// would in the handshake.
tollgate_test::FakeScript fake_redis(const std::string &version,
                                     std::string fcall,
                                     std::string load = "$8\r\ntollgate\r\n") {
  const std::string body = "# Server\r\nredis_version:" + version + "\r\n";
  const std::string info =
      "$" + std::to_string(body.size()) + "\r\n" + body + "\r\n";
  tollgate_test::FakeScript script;
  script.responder = [info, fcall, load](const FakeCommand &cmd) {
    const std::string verb = cmd.args.empty() ? "" : cmd.args[0];
    if (verb == "INFO") return FakeReply::send(info);
    if (verb == "SCRIPT")
      return FakeReply::send("$40\r\n" + std::string(40, 'a') + "\r\n");
    if (verb == "FUNCTION") return FakeReply::send(load);
    if (verb == "FCALL") return FakeReply::send(fcall);
    if (verb == "PING") return FakeReply::send("+PONG\r\n");
    return FakeReply::send("*5\r\n:1\r\n:1\r\n:4\r\n:1000\r\n:0\r\n");
  };
  return script;
}

int count(const tollgate_test::FakeServer &fake, const std::string &verb) {
  int n = 0;
  for (const FakeCommand &c : fake.commands())
    n += !c.args.empty() && c.args[0] == verb;
  return n;
}

}  // namespace

TEST_CASE(
    "functions: a server before 7.0 is never sent FUNCTION LOAD or FCALL, "
    "and that is no error",
    "[redis][functions][protocol]") {
  tollgate_test::FakeServer fake(fake_redis("6.2.14", "-ERR not expected\r\n"));
  Lim lim(fake.url());
  const rl_policy_spec p = spec(RL_ALG_GCRA, 5);
  for (int i = 0; i < 3; ++i) CHECK(check(lim.p, "k", &p).allowed == 1);
  CHECK(count(fake, "FUNCTION") == 0);
  CHECK(count(fake, "FCALL") == 0);
  CHECK(count(fake, "EVALSHA") == 3);
  CHECK(last_error(lim.p).empty());
}

TEST_CASE(
    "functions: FCALL refused as an unknown command (a cluster node of an "
    "older version) goes again by EVALSHA, and so does every later check",
    "[redis][functions][protocol]") {
  // Redis 6.2 words it with backquotes, 7.0 with single quotes.
  const char *refusals[] = {
      "-ERR unknown command `FCALL`, with args beginning with: `x` \r\n",
      "-ERR unknown command 'fcall', with args beginning with: 'x' \r\n"};
  for (const char *refusal : refusals) {
    INFO(refusal);
    tollgate_test::FakeServer fake(fake_redis("9.9.9", refusal));
    Lim lim(fake.url());
    const rl_policy_spec p = spec(RL_ALG_SLIDING_WINDOW, 5);
    for (int i = 0; i < 4; ++i) CHECK(check(lim.p, "k", &p).allowed == 1);
    CHECK(count(fake, "FUNCTION") == 1);
    CHECK(count(fake, "FCALL") == 1);
    CHECK(count(fake, "EVALSHA") == 4);
    CHECK(std::string(last_error(lim.p)).find("FCALL refused") !=
          std::string::npos);
  }
}

TEST_CASE(
    "functions: the functions' own errors are the check's, not a reason to "
    "call the script",
    "[redis][functions][protocol]") {
  // An error that names FCALL but is neither a refusal nor a missing
  // function, and a plain script error.
  const char *errors[] = {
      "-ERR tollgate: the numbers must be integers\r\n",
      "-ERR Error running script (call to f_x): FCALL went wrong\r\n"};
  for (const char *error : errors) {
    INFO(error);
    tollgate_test::FakeServer fake(fake_redis("9.9.9", error));
    Lim lim(fake.url());
    const rl_policy_spec p = spec(RL_ALG_GCRA, 5);
    rl_decision d = RL_DECISION_INIT;
    CHECK(rl_check(lim.p, &d, "k", 1, &p, 1, 1) == RL_E_STORE);
    CHECK(count(fake, "FCALL") == 1);
    CHECK(count(fake, "EVALSHA") == 0);
    // Still callable: the next check calls FCALL again.
    CHECK(rl_check(lim.p, &d, "k", 1, &p, 1, 1) == RL_E_STORE);
    CHECK(count(fake, "FCALL") == 2);
  }
}

TEST_CASE(
    "functions: FUNCTION LOAD answered 'not now' (LOADING, BUSY, OOM, ...) is "
    "no refusal and no error: checks call EVALSHA",
    "[redis][functions][protocol]") {
  const char *answers[] = {
      "-LOADING Redis is loading the dataset in memory\r\n",
      "-BUSY Redis is busy running a script.\r\n",
      "-OOM command not allowed when used memory > 'maxmemory'.\r\n",
      "-READONLY You can't write against a read only replica.\r\n"};
  for (const char *answer : answers) {
    INFO(answer);
    tollgate_test::FakeServer fake(
        fake_redis("9.9.9", "-ERR not expected\r\n", answer));
    Lim lim(fake.url());
    const rl_policy_spec p = spec(RL_ALG_GCRA, 5);
    for (int i = 0; i < 2; ++i) CHECK(check(lim.p, "k", &p).allowed == 1);
    CHECK(count(fake, "FUNCTION") == 1);
    CHECK(count(fake, "FCALL") == 0);
    CHECK(count(fake, "EVALSHA") == 2);
    CHECK(last_error(lim.p).empty());
  }
  // A refusal for good is reported.
  tollgate_test::FakeServer fake(fake_redis(
      "9.9.9", "-ERR not expected\r\n",
      "-ERR Error registering functions: @user_function: 1: bad\r\n"));
  Lim lim(fake.url());
  const rl_policy_spec p = spec(RL_ALG_GCRA, 5);
  CHECK(check(lim.p, "k", &p).allowed == 1);
  CHECK(count(fake, "EVALSHA") == 1);
  CHECK(last_error(lim.p).find("FUNCTION LOAD refused by 127.0.0.1:") == 0);
}
