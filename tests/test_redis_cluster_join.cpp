// Checks for one cluster node join into one call (the batch_cluster
// script, whose keys may lie in several slots of that node), and a joined
// call that a node does not run (a redirection during a slot migration)
// sends each of its checks again alone: counts stay exact.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/policy_specs.hpp"
#include "support/prober.hpp"
#include "support/topology.hpp"
#include "tollgate.h"

using tollgate_test::Lim;
using tollgate_test::per_year;
using tollgate_test::Topology;

namespace {

// Async checks from one thread, at most `window` in flight; what each key
// was allowed, and the calls that failed (with the last message).
class Driver {
 public:
  Driver(rl_limiter *lim, const rl_policy_spec &pol, size_t window)
      : lim_(lim), pol_(pol), window_(window) {}

  // Sends `key` once the window has room; false if the call was refused.
  bool send(const std::string &key) {
    while (in_flight_.load() >= window_)
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    in_flight_.fetch_add(1);
    auto *c = new Call{this, key};
    if (rl_check_async(lim_, key.data(), key.size(), &pol_, 1, 1, on_done, c) !=
        RL_OK) {
      in_flight_.fetch_sub(1);
      delete c;
      return false;
    }
    return true;
  }

  void drain() {
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(in_flight_.load() == 0);
  }

  std::map<std::string, long long> allowed() {
    std::lock_guard<std::mutex> lock(mu_);
    return allowed_;
  }
  int errors() const { return errors_.load(); }
  std::string last_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_error_;
  }

 private:
  struct Call {
    Driver *d;
    std::string key;
  };
  static void on_done(int status, const rl_decision *dec, const char *message,
                      void *user) {
    auto *c = static_cast<Call *>(user);
    Driver *d = c->d;
    {
      std::lock_guard<std::mutex> lock(d->mu_);
      if (status == RL_OK)
        d->allowed_[c->key] += dec->allowed;
      else
        d->last_error_ = message;
    }
    if (status != RL_OK) d->errors_.fetch_add(1);
    delete c;
    d->in_flight_.fetch_sub(1);
  }

  rl_limiter *lim_;
  rl_policy_spec pol_;
  size_t window_;
  std::atomic<size_t> in_flight_{0};
  std::atomic<int> errors_{0};
  std::mutex mu_;
  std::map<std::string, long long> allowed_;
  std::string last_error_;
};

long long commandstat_calls(const Topology &t, uint16_t port,
                            const std::string &command) {
  const std::string info = t.query(port, {"INFO", "commandstats"}).str;
  const std::string tag = "cmdstat_" + command + ":calls=";
  const size_t at = info.find(tag);
  if (at == std::string::npos) return 0;
  return std::stoll(info.substr(at + tag.size()));
}

}  // namespace

TEST_CASE(
    "cluster join: checks for one node leave joined, over every primary, "
    "and admit exactly the limit",
    "[redis][cluster][join]") {
  Topology t;
  const std::vector<uint16_t> primaries = t.primary_ports();
  REQUIRE(primaries.size() == 3);
  constexpr int kKeys = 300, kTries = 6, kLimit = 4;
  Lim lim(t.url(), RL_FAIL_ERROR, 10000);
  const rl_policy_spec pol = per_year(kLimit);
  rl_decision d;
  REQUIRE(lim.check("warm", pol, d) == RL_OK);  // the slot map is known
  for (uint16_t port : primaries)
    REQUIRE(t.query(port, {"CONFIG", "RESETSTAT"}).str == "OK");

  Driver driver(lim.p, pol, 64);
  for (int round = 0; round < kTries; ++round)
    for (int k = 0; k < kKeys; ++k)
      REQUIRE(driver.send("join:" + std::to_string(k)));
  driver.drain();
  INFO(driver.last_error());
  REQUIRE(driver.errors() == 0);
  const auto allowed = driver.allowed();
  REQUIRE(allowed.size() == static_cast<size_t>(kKeys));
  for (const auto &[key, n] : allowed) {
    INFO(key);
    CHECK(n == kLimit);
  }
  // Every primary ran checks, and fewer script calls than checks reached
  // the cluster: checks for one node travelled together.
  long long calls = 0;
  for (uint16_t port : primaries) {
    const long long c = commandstat_calls(t, port, "evalsha") +
                        commandstat_calls(t, port, "eval");
    INFO("primary " << port);
    CHECK(c > 0);
    calls += c;
  }
  WARN(kKeys * kTries << " checks in " << calls << " script calls");
  CHECK(calls < kKeys * kTries);
  const rl_health_info h = lim.health();
  CHECK(h.moved == 0);
  CHECK(h.ask == 0);
}

TEST_CASE(
    "cluster join: joined checks while a slot migrates are sent again "
    "alone, and every key stays exact",
    "[redis][cluster][join][slow]") {
  Topology t;
  const std::vector<uint16_t> primaries = t.primary_ports();
  const uint16_t src = primaries[0], dst = primaries[1];
  // Keys on src, one of which is in the slot that moves: its checks are
  // joined with the others' until the slot goes.
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 40 && i < 100000; ++i) {
    const std::string k = "mj:" + std::to_string(i);
    if (t.owner_of_slot(t.key_slot(k)) == src) keys.push_back(k);
  }
  REQUIRE(keys.size() == 40);
  const std::string moving = keys[0];
  const int slot = t.key_slot(moving);
  // A fixed window of ~32 years: nothing refills while the test runs.
  rl_policy_spec pol = per_year(1'000'000'000);
  pol.algorithm = RL_ALG_FIXED_WINDOW;
  Lim lim(t.url(), RL_FAIL_ERROR, 5000);
  rl_decision d;
  for (const std::string &k : keys) REQUIRE(lim.check(k, pol, d) == RL_OK);

  std::atomic<bool> stop{false};
  Driver driver(lim.p, pol, 64);
  std::thread load([&] {
    size_t i = 0;
    while (!stop.load()) driver.send(keys[i++ % keys.size()]);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string src_id = t.node(src).id, dst_id = t.node(dst).id;
  REQUIRE(t.query(dst, {"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING",
                        src_id})
              .str == "OK");
  REQUIRE(t.query(src, {"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING",
                        dst_id})
              .str == "OK");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto in_slot =
      t.query(src, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "100"});
  REQUIRE(in_slot.elements.size() >= 1);
  std::vector<std::string> migrate{
      "MIGRATE", "127.0.0.1", std::to_string(dst), "", "0", "5000", "KEYS"};
  for (const auto &k : in_slot.elements) migrate.push_back(k.str);
  REQUIRE(t.query(src, migrate).str == "OK");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (uint16_t port : primaries)
    REQUIRE(t.query(port, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE",
                           dst_id})
                .str == "OK");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop.store(true);
  load.join();
  driver.drain();
  INFO(driver.last_error());
  CHECK(driver.errors() == 0);

  // Exactness: a peek (cost 0) of each key sees every admitted check once
  // (plus the first, synchronous one).
  const auto allowed = driver.allowed();
  for (const std::string &k : keys) {
    rl_decision peek = RL_DECISION_INIT;
    REQUIRE(rl_check(lim.p, &peek, k.data(), k.size(), &pol, 1, 0) == RL_OK);
    const auto it = allowed.find(k);
    const long long n = it == allowed.end() ? 0 : it->second;
    INFO(k);
    CHECK(peek.remaining == 1'000'000'000 - 1 - n);
  }
  CHECK(allowed.at(moving) > 10);
  CHECK(t.owner_of_slot(slot) == dst);
  const rl_health_info h = lim.health();
  WARN(h.ask << " ASK, " << h.moved << " MOVED");
  CHECK(h.ask + h.moved >= 1);
}
