// Many processes, many threads, one key on one Redis: exactly `limit`
// calls are admitted in total, for every algorithm and for a multi-policy
// check.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "support/redis_server.hpp"

namespace {

struct Totals {
  long admitted = 0, denied = 0, errors = 0, degraded = 0;
  int failed_processes = 0;
};

// Starts `procs` worker processes at once and sums what they print.
Totals run_workers(const std::string &url, const std::string &key, int alg,
                   long limit, int procs, int threads, long calls, bool multi) {
  // Ten-year windows: no window or refill boundary falls inside a run.
  const long long period_ms = 10LL * 365 * 24 * 3600 * 1000;
  std::vector<FILE *> pipes;
  for (int i = 0; i < procs; ++i) {
    const std::string cmd =
        std::string(TOLLGATE_WORKER) + " '" + url + "' '" + key + "' " +
        std::to_string(alg) + " " + std::to_string(limit) + " " +
        std::to_string(period_ms) + " " + std::to_string(threads) + " " +
        std::to_string(calls) + (multi ? " multi" : "");
    FILE *p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    pipes.push_back(p);
  }
  Totals t;
  for (FILE *p : pipes) {
    long a = 0, d = 0, e = 0, g = 0;
    if (std::fscanf(p, "admitted %ld denied %ld errors %ld degraded %ld", &a,
                    &d, &e, &g) != 4)
      ++t.failed_processes;
    if (pclose(p) != 0) ++t.failed_processes;
    t.admitted += a;
    t.denied += d;
    t.errors += e;
    t.degraded += g;
  }
  return t;
}

}  // namespace

TEST_CASE("8 processes x 8 threads on one Redis key admit exactly L",
          "[redis][processes]") {
  tollgate_test::RedisServer server;
  const std::string url = server.url();
  const char *names[] = {"gcra", "token_bucket", "fixed_window",
                         "sliding_window"};
  for (int alg = 0; alg < 4; ++alg) {
    for (bool multi : {false, true}) {
      INFO(names[alg] << (multi ? " + a looser second policy" : ""));
      const std::string key =
          std::string("org-") + names[alg] + (multi ? "-multi" : "");
      const Totals t = run_workers(url, key, alg, 250, 8, 8, 200, multi);
      CHECK(t.failed_processes == 0);
      CHECK(t.errors == 0);
      CHECK(t.degraded == 0);
      CHECK(t.admitted == 250);
      CHECK(t.admitted + t.denied == 8 * 8 * 200);
    }
  }
}
