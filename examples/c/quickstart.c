/*
 * quickstart.c - tollgate from C in five minutes.
 *
 * Build against an installed tollgate:
 *   cc -std=c99 quickstart.c $(pkg-config --cflags --libs tollgate) -o
 * quickstart or with CMake:  find_package(tollgate) + tollgate::tollgate (see
 * CMakeLists.txt next to this file).
 *
 * It allows 5 requests per second for one user, checks 7 requests in a row
 * and prints each decision. It exits 0 only if the first 5 were allowed and
 * the 6th was denied, so it doubles as a smoke test of an installation.
 */
#include <stdio.h>
#include <string.h>

#include <tollgate.h>

static int failures = 0;

#define EXPECT(cond, what)                                   \
  do {                                                       \
    if (!(cond)) {                                           \
      fprintf(stderr, "quickstart: UNEXPECTED: %s\n", what); \
      ++failures;                                            \
    }                                                        \
  } while (0)

int main(void) {
  rl_limiter *limiter = NULL;
  rl_options options = RL_OPTIONS_INIT;
  rl_policy *policy = NULL;
  rl_health_info health = RL_HEALTH_INIT;
  const char *key = "user:42";
  int rc, i;

  printf("tollgate %s (header %s)\n", rl_version_string(), RL_VERSION_STRING);
  EXPECT(rl_version_number() / 10000 == RL_VERSION_MAJOR,
         "library and header major versions differ");

  /* 1. A limiter. NULL or "memory://" is the in-process memory store; a
   *    shared store (e.g. Redis) is just another URL. */
  options.url = "memory://";
  rc = rl_create(&limiter, &options);
  if (rc != RL_OK) {
    fprintf(stderr, "rl_create: %s: %s\n", rl_strerror(rc), rl_last_error());
    return 1;
  }

  /* 2. A policy: at most 5 requests per minute, GCRA (the default). (Per
   *    second, a 200 ms pause between two checks would free a unit, and
   *    the 6th might pass on a busy machine.) A policy is an immutable,
   *    reference-counted handle: parse it (or rl_policy_create it from an
   *    rl_policy_spec) once, use it from any thread, release it when done. */
  rc = rl_policy_parse(&policy, "5/m", 3, NULL);
  if (rc != RL_OK) {
    fprintf(stderr, "rl_policy_parse: %s\n", rl_last_error());
    rl_destroy(limiter);
    return 1;
  }

  /* 3. Check the key once per request. */
  for (i = 1; i <= 7; ++i) {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(limiter, &d, key, strlen(key), &policy, 1, 1);
    if (rc != RL_OK) {
      fprintf(stderr, "rl_check: %s: %s\n", rl_strerror(rc), rl_last_error());
      rl_policy_release(policy);
      rl_destroy(limiter);
      return 1;
    }
    printf(
        "request %d: %-7s remaining=%lld reset_after_ms=%lld "
        "retry_after_ms=%lld\n",
        i, d.allowed ? "allowed" : "DENIED", (long long)d.remaining,
        (long long)d.reset_after_ms, (long long)d.retry_after_ms);
    if (i <= 5)
      EXPECT(d.allowed == 1, "one of the first 5 requests was denied");
    if (i == 6) {
      EXPECT(d.allowed == 0, "the 6th request was allowed");
      EXPECT(d.retry_after_ms > 0, "a denial without retry_after_ms");
    }
  }

  /* 4. Errors: every call returns RL_OK or a negative RL_E_* code, and
   *    rl_last_error() says what was wrong. */
  {
    rl_policy_spec spec = RL_POLICY_SPEC_INIT;
    rl_policy *bad = NULL;
    size_t offset = 0;
    spec.limit = 0;
    spec.period_ms = 60 * 1000;
    rc = rl_policy_create(&bad, &spec);
    printf("a policy with limit 0: rc=%d (%s): %s\n", rc, rl_strerror(rc),
           rl_last_error());
    EXPECT(rc == RL_E_POLICY, "limit 0 was not refused with RL_E_POLICY");
    EXPECT(bad == NULL, "a refused policy was handed out");
    EXPECT(rl_last_error()[0] != '\0',
           "rl_last_error() is empty after an error");
    rc = rl_policy_parse(&bad, "5/fortnight", 11, &offset);
    printf("\"5/fortnight\": rc=%d, at byte %zu: %s\n", rc, offset,
           rl_last_error());
    EXPECT(rc == RL_E_POLICY && offset == 2, "a bad unit was not pointed at");
  }

  /* 5. Reset forgets the key: the next request passes again. */
  rc = rl_reset(limiter, key, strlen(key));
  EXPECT(rc == RL_OK, "rl_reset failed");
  {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(limiter, &d, key, strlen(key), &policy, 1, 1);
    printf("after rl_reset: %s, remaining=%lld\n",
           d.allowed ? "allowed" : "DENIED", (long long)d.remaining);
    EXPECT(rc == RL_OK && d.allowed == 1,
           "the request after rl_reset was denied");
  }

  /* 6. Health: counters and the store's state. */
  rc = rl_health(limiter, &health);
  EXPECT(rc == RL_OK, "rl_health failed");
  printf(
      "health: store_kind=%d checks=%llu allowed=%llu denied=%llu "
      "errors=%llu live_keys=%llu\n",
      (int)health.store_kind, (unsigned long long)health.checks,
      (unsigned long long)health.allowed, (unsigned long long)health.denied,
      (unsigned long long)health.errors, (unsigned long long)health.live_keys);
  EXPECT(health.store_kind == RL_STORE_MEMORY, "store_kind is not memory");

  /* 7. Done (in either order: a policy does not belong to a limiter). */
  rl_destroy(limiter);
  rl_policy_release(policy);

  if (failures > 0) {
    fprintf(stderr, "quickstart: %d unexpected result(s)\n", failures);
    return 1;
  }
  printf("quickstart: OK\n");
  return 0;
}
