/*
 * The C ABI seen from plain C99, linked against libtollgate.so: what every
 * C consumer (and every language binding) relies on. No test framework: a
 * tiny CHECK macro counts failures and the exit status is non-zero if any.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tollgate.h"

static int g_checks = 0;
static int g_failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    ++g_checks;                                                                \
    if (!(cond)) {                                                             \
      ++g_failures;                                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_EQ_LL(a, b)                                               \
  do {                                                                  \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);     \
    ++g_checks;                                                         \
    if (check_a_ != check_b_) {                                         \
      ++g_failures;                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
              __FILE__, __LINE__, #a, #b, check_a_, check_b_);          \
    }                                                                   \
  } while (0)

/* ---- helpers ------------------------------------------------------------- */

/* A controllable clock (microseconds since the epoch). */
static int64_t fake_now_us = 1700000000LL * 1000000;
static int64_t fake_clock(void *user_data) {
  (void)user_data;
  return fake_now_us;
}

static int contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle), i, j;
  for (i = 0; hay[i] != '\0'; ++i) {
    for (j = 0; j < n; ++j) {
      char a = hay[i + j], b = needle[j];
      if (a == '\0') return 0;
      if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
      if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
      if (a != b) break;
    }
    if (j == n) return 1;
  }
  return n == 0;
}

/* Checks that a call failed with `want` and that rl_last_error() is a
 * non-empty message mentioning `word` (case-insensitive). */
static void expect_error(int line, const char *what, int rc, int want,
                         const char *word) {
  const char *msg = rl_last_error();
  ++g_checks;
  if (rc != want) {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s: rc %d (%s), want %d (%s); last error: '%s'\n",
            __FILE__, line, what, rc, rl_strerror(rc), want, rl_strerror(want),
            msg ? msg : "(NULL)");
    return;
  }
  if (msg == NULL || msg[0] == '\0') {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s: rl_last_error() is %s after an error\n",
            __FILE__, line, what, msg ? "empty" : "NULL");
    return;
  }
  if (!contains_ci(msg, word)) {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s: rl_last_error() '%s' does not mention '%s'\n",
            __FILE__, line, what, msg, word);
    return;
  }
  printf("  ok: %-34s -> %-17s \"%s\"\n", what, rl_strerror(rc), msg);
}
#define EXPECT_ERROR(what, call, want, word) \
  expect_error(__LINE__, what, (call), want, word)

static rl_policy per_second(int64_t limit) {
  rl_policy p = RL_POLICY_INIT;
  p.algorithm = RL_ALG_GCRA;
  p.limit = limit;
  p.period_ms = 1000;
  return p;
}

static rl_limiter *make_limiter(void) {
  rl_options o = RL_OPTIONS_INIT;
  rl_limiter *l = NULL;
  int rc;
  o.clock = fake_clock;
  rc = rl_create(&l, &o);
  CHECK_EQ_LL(rc, RL_OK);
  CHECK(l != NULL);
  if (l == NULL) {
    fprintf(stderr, "rl_create failed: %s\n", rl_last_error());
    exit(1);
  }
  return l;
}

/* ---- versions and strings -------------------------------------------------
 */

static void test_versions(void) {
  char buf[64];
  printf("versions\n");
  CHECK_EQ_LL(RL_VERSION_NUMBER, RL_VERSION_MAJOR * 10000 +
                                     RL_VERSION_MINOR * 100 + RL_VERSION_PATCH);
  CHECK_EQ_LL(rl_version_number(), RL_VERSION_NUMBER);
  CHECK(rl_version_string() != NULL);
  if (rl_version_string() != NULL)
    CHECK(strcmp(rl_version_string(), RL_VERSION_STRING) == 0);
  snprintf(buf, sizeof buf, "%d.%d.%d", RL_VERSION_MAJOR, RL_VERSION_MINOR,
           RL_VERSION_PATCH);
  CHECK(strcmp(buf, RL_VERSION_STRING) == 0);
  CHECK_EQ_LL(RL_ABI_MAJOR, 1);
}

/* rl_error_name spells every code as the header does; NULL past the known
 * codes (RL_OK down to RL_E_NOT_FOUND). */
static void test_error_name(void) {
#define NAME_CASE(c) \
  { c, #c }
  static const struct {
    int code;
    const char *name;
  } known[] = {NAME_CASE(RL_OK),
               NAME_CASE(RL_E_INVALID_ARG),
               NAME_CASE(RL_E_KEY_INVALID),
               NAME_CASE(RL_E_KEY_TOO_LONG),
               NAME_CASE(RL_E_POLICY),
               NAME_CASE(RL_E_OVERFLOW),
               NAME_CASE(RL_E_VERSION),
               NAME_CASE(RL_E_NOMEM),
               NAME_CASE(RL_E_URL),
               NAME_CASE(RL_E_UNSUPPORTED),
               NAME_CASE(RL_E_INTERNAL),
               NAME_CASE(RL_E_CONNECT),
               NAME_CASE(RL_E_TIMEOUT),
               NAME_CASE(RL_E_AUTH),
               NAME_CASE(RL_E_TLS),
               NAME_CASE(RL_E_PROTOCOL),
               NAME_CASE(RL_E_STORE),
               NAME_CASE(RL_E_CLOSED),
               NAME_CASE(RL_E_DONE),
               NAME_CASE(RL_E_NOT_FOUND)};
#undef NAME_CASE
  size_t i;
  printf("rl_error_name\n");
  for (i = 0; i < sizeof known / sizeof known[0]; ++i) {
    const char *got = rl_error_name(known[i].code);
    /* The codes are consecutive: 0, -1, ..., RL_E_NOT_FOUND. */
    CHECK(known[i].code == -(int)i);
    if (got == NULL || strcmp(got, known[i].name) != 0) {
      ++g_failures;
      fprintf(stderr, "rl_error_name(%d) = %s, want %s\n", known[i].code,
              got ? got : "NULL", known[i].name);
    }
  }
  CHECK(rl_error_name(RL_E_NOT_FOUND - 1) == NULL);
  CHECK(rl_error_name(1) == NULL);
  CHECK(rl_error_name(-12345) == NULL);
  CHECK(RL_MAX_POLICIES == 16);
}

static void test_strerror(void) {
  static const int codes[] = {
      RL_OK,       RL_E_INVALID_ARG, RL_E_KEY_INVALID, RL_E_KEY_TOO_LONG,
      RL_E_POLICY, RL_E_OVERFLOW,    RL_E_VERSION,     RL_E_NOMEM,
      RL_E_URL,    RL_E_UNSUPPORTED, RL_E_INTERNAL};
  const size_t n = sizeof codes / sizeof codes[0];
  const char *unknown;
  size_t i, j;

  printf("rl_strerror\n");
  unknown = rl_strerror(-12345);
  CHECK(unknown != NULL && unknown[0] != '\0');
  CHECK(rl_strerror(1) != NULL);
  CHECK(rl_strerror(-11) != NULL);
  for (i = 0; i < n; ++i) {
    const char *s = rl_strerror(codes[i]);
    CHECK(s != NULL && s[0] != '\0');
    if (s == NULL) continue;
    /* Each known code has its own text, different from the unknown one. */
    CHECK(unknown == NULL || strcmp(s, unknown) != 0);
    for (j = 0; j < i; ++j) {
      const char *t = rl_strerror(codes[j]);
      if (t != NULL && strcmp(s, t) == 0) {
        ++g_failures;
        fprintf(stderr, "rl_strerror(%d) == rl_strerror(%d) == '%s'\n",
                codes[i], codes[j], s);
      }
    }
  }
}

/* ---- the happy path ---------------------------------------------------------
 */

static void test_lifecycle(void) {
  rl_limiter *l;
  rl_policy p = per_second(5); /* T = 200 ms, burst 5 */
  rl_health_info h = RL_HEALTH_INIT;
  const char *key = "user:1";
  int i, rc;

  printf("create / check / deny / reset / health / destroy\n");
  fake_now_us = 1700000000LL * 1000000;
  l = make_limiter();
  CHECK(rl_last_error() != NULL && rl_last_error()[0] == '\0');

  for (i = 1; i <= 5; ++i) {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(l, &d, key, strlen(key), &p, 1, 1);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK(rl_last_error()[0] == '\0');
    CHECK_EQ_LL(d.version, RL_DECISION_VERSION);
    CHECK_EQ_LL(d.allowed, 1);
    CHECK_EQ_LL(d.limit, 5);
    CHECK_EQ_LL(d.remaining, 5 - i);
    CHECK_EQ_LL(d.reset_after_ms, 200 * i);
    CHECK_EQ_LL(d.retry_after_ms, 0);
    CHECK_EQ_LL(d.source, RL_SOURCE_STORE);
    CHECK_EQ_LL(d.policy_index, 0);
  }
  {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(l, &d, key, strlen(key), &p, 1, 1);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(d.allowed, 0);
    CHECK_EQ_LL(d.remaining, 0);
    CHECK_EQ_LL(d.reset_after_ms, 1000);
    CHECK_EQ_LL(d.retry_after_ms, 200);
  }
  /* Another key is independent; a binary key with a NUL byte works. */
  {
    static const char bin[] = {'u', 0, 'x'};
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(l, &d, bin, sizeof bin, &p, 1, 1);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(d.allowed, 1);
    CHECK_EQ_LL(d.remaining, 4);
  }
  /* A peek (cost 0) charges nothing. */
  {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(l, &d, key, strlen(key), &p, 1, 0);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(d.allowed, 0);
    CHECK_EQ_LL(d.retry_after_ms, 200);
  }
  /* After 200 ms one unit is back. */
  fake_now_us += 200000;
  {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(l, &d, key, strlen(key), &p, 1, 1);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(d.allowed, 1);
    CHECK_EQ_LL(d.remaining, 0);
  }
  /* A cost above the capacity can never pass. */
  {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(l, &d, "big", 3, &p, 1, 6);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(d.allowed, 0);
    CHECK_EQ_LL(d.retry_after_ms, RL_RETRY_NEVER);
  }
  /* Reset: the key starts fresh; resetting an unknown key succeeds. */
  CHECK_EQ_LL(rl_reset(l, key, strlen(key)), RL_OK);
  CHECK_EQ_LL(rl_reset(l, "never-seen", 10), RL_OK);
  {
    rl_decision d = RL_DECISION_INIT;
    rc = rl_check(l, &d, key, strlen(key), &p, 1, 1);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(d.allowed, 1);
    CHECK_EQ_LL(d.remaining, 4);
  }
  /* Health: 11 decisions (10 if a peek is not counted): 8 allowed, the
   * rest (6th call, cost above capacity, maybe the peek) denied. */
  rc = rl_health(l, &h);
  CHECK_EQ_LL(rc, RL_OK);
  CHECK_EQ_LL(h.version, RL_HEALTH_VERSION);
  CHECK_EQ_LL(h.store_kind, RL_STORE_MEMORY);
  CHECK(h.checks == 11 || h.checks == 10);
  CHECK_EQ_LL(h.allowed, 8);
  CHECK_EQ_LL(h.allowed + h.denied, h.checks);
  CHECK_EQ_LL(h.errors, 0);
  /* The checked key, and maybe "big" and the peeked one: keys whose state
   * is already back to full (expired) may be reclaimed by the random
   * probes of a later insert at any time. */
  CHECK(h.live_keys >= 1 && h.live_keys <= 3);
  CHECK_EQ_LL(h.evictions, 0);
  printf(
      "  health: checks=%llu allowed=%llu denied=%llu errors=%llu "
      "live_keys=%llu\n",
      (unsigned long long)h.checks, (unsigned long long)h.allowed,
      (unsigned long long)h.denied, (unsigned long long)h.errors,
      (unsigned long long)h.live_keys);

  /* Errors are counted too. */
  {
    rl_decision d = RL_DECISION_INIT;
    rl_health_info h2 = RL_HEALTH_INIT;
    CHECK(rl_check(l, &d, "", 0, &p, 1, 1) != RL_OK);
    CHECK_EQ_LL(rl_health(l, &h2), RL_OK);
    CHECK_EQ_LL(h2.errors, 1);
    CHECK_EQ_LL(h2.checks, h.checks);
  }

  rl_destroy(l);
  rl_destroy(NULL); /* a no-op */
}

/* ---- rl_check_async
 * ----------------------------------------------------------- */

struct async_result {
  int calls;
  int status;
  rl_decision decision;
};

static void on_done(int status, const rl_decision *d, void *user_data) {
  struct async_result *r = (struct async_result *)user_data;
  r->calls++;
  r->status = status;
  if (status == RL_OK && d != NULL) r->decision = *d;
}

static void test_async(void) {
  rl_limiter *sync_l, *async_l;
  rl_policy p = per_second(3);
  int i, rc;

  printf("rl_check_async\n");
  fake_now_us = 1700000000LL * 1000000;
  sync_l = make_limiter();
  async_l = make_limiter();
  /* The same calls on two fresh limiters: async must match sync exactly,
   * and the memory store answers inline, before rl_check_async returns. */
  for (i = 0; i < 5; ++i) {
    rl_decision want = RL_DECISION_INIT;
    struct async_result got;
    memset(&got, 0, sizeof got);
    got.status = 12345;
    rc = rl_check(sync_l, &want, "k", 1, &p, 1, 1);
    CHECK_EQ_LL(rc, RL_OK);
    rc = rl_check_async(async_l, "k", 1, &p, 1, 1, on_done, &got);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(got.calls, 1);
    CHECK_EQ_LL(got.status, RL_OK);
    CHECK_EQ_LL(got.decision.allowed, want.allowed);
    CHECK_EQ_LL(got.decision.limit, want.limit);
    CHECK_EQ_LL(got.decision.remaining, want.remaining);
    CHECK_EQ_LL(got.decision.reset_after_ms, want.reset_after_ms);
    CHECK_EQ_LL(got.decision.retry_after_ms, want.retry_after_ms);
    CHECK_EQ_LL(got.decision.source, want.source);
    CHECK_EQ_LL(got.decision.policy_index, want.policy_index);
    CHECK_EQ_LL(got.decision.allowed, i < 3 ? 1 : 0);
  }
  /* An error is returned, and the callback never runs. */
  {
    struct async_result got;
    memset(&got, 0, sizeof got);
    rc = rl_check_async(async_l, "", 0, &p, 1, 1, on_done, &got);
    CHECK_EQ_LL(rc, RL_E_KEY_INVALID);
    CHECK_EQ_LL(got.calls, 0);
    rc = rl_check_async(NULL, "k", 1, &p, 1, 1, on_done, &got);
    CHECK_EQ_LL(rc, RL_E_INVALID_ARG);
    CHECK_EQ_LL(got.calls, 0);
    rc = rl_check_async(async_l, "k", 1, &p, 1, 1, NULL, &got);
    CHECK_EQ_LL(rc, RL_E_INVALID_ARG);
    CHECK(rl_last_error()[0] != '\0');
  }
  rl_destroy(sync_l);
  rl_destroy(async_l);
}

/* ---- bad input
 * ------------------------------------------------------------------ */

static void test_bad_input(void) {
  rl_limiter *l;
  rl_policy p = per_second(5);
  rl_decision d = RL_DECISION_INIT;
  char *long_key;
  int rc;

  printf("bad input\n");
  l = make_limiter();

  EXPECT_ERROR("NULL limiter", rl_check(NULL, &d, "k", 1, &p, 1, 1),
               RL_E_INVALID_ARG, "limiter");
  EXPECT_ERROR("NULL key with len > 0", rl_check(l, &d, NULL, 3, &p, 1, 1),
               RL_E_KEY_INVALID, "key");
  EXPECT_ERROR("empty key", rl_check(l, &d, "", 0, &p, 1, 1), RL_E_KEY_INVALID,
               "key");

  long_key = (char *)malloc(513);
  CHECK(long_key != NULL);
  if (long_key != NULL) {
    memset(long_key, 'x', 513);
    EXPECT_ERROR("key of 513 bytes (max 512)",
                 rl_check(l, &d, long_key, 513, &p, 1, 1), RL_E_KEY_TOO_LONG,
                 "key");
    /* 512 bytes is fine. */
    rc = rl_check(l, &d, long_key, 512, &p, 1, 1);
    CHECK_EQ_LL(rc, RL_OK);
    free(long_key);
  }

  {
    rl_policy bad = per_second(5);
    bad.limit = 0;
    EXPECT_ERROR("limit 0", rl_check(l, &d, "k", 1, &bad, 1, 1), RL_E_POLICY,
                 "limit");
    bad.limit = -3;
    EXPECT_ERROR("limit -3", rl_check(l, &d, "k", 1, &bad, 1, 1), RL_E_POLICY,
                 "limit");
  }
  {
    rl_policy bad = per_second(5);
    bad.period_ms = 0;
    EXPECT_ERROR("period 0", rl_check(l, &d, "k", 1, &bad, 1, 1), RL_E_POLICY,
                 "period");
  }
  {
    rl_policy bad = per_second(5);
    bad.algorithm = 99;
    EXPECT_ERROR("algorithm 99", rl_check(l, &d, "k", 1, &bad, 1, 1),
                 RL_E_POLICY, "algorithm");
  }
  {
    rl_decision bad_d = RL_DECISION_INIT;
    bad_d.version = 0;
    EXPECT_ERROR("decision version 0", rl_check(l, &bad_d, "k", 1, &p, 1, 1),
                 RL_E_VERSION, "version");
  }
  {
    rl_options o = RL_OPTIONS_INIT;
    rl_limiter *l2 = (rl_limiter *)&o; /* must be overwritten with NULL */
    o.version = 0;
    EXPECT_ERROR("options version 0", rl_create(&l2, &o), RL_E_VERSION,
                 "version");
    CHECK(l2 == NULL);
    o.version = 99;
    l2 = (rl_limiter *)&o;
    EXPECT_ERROR("options version 99", rl_create(&l2, &o), RL_E_VERSION,
                 "version");
    CHECK(l2 == NULL);
  }
  {
    rl_options o = RL_OPTIONS_INIT;
    rl_limiter *l2 = (rl_limiter *)&o;
    o.url = "foo://x";
    EXPECT_ERROR("unknown URL scheme foo://x", rl_create(&l2, &o), RL_E_URL,
                 "foo");
    CHECK(l2 == NULL);
  }
  EXPECT_ERROR("NULL out for rl_create", rl_create(NULL, NULL),
               RL_E_INVALID_ARG, "");
  EXPECT_ERROR("NULL decision", rl_check(l, NULL, "k", 1, &p, 1, 1),
               RL_E_INVALID_ARG, "");
  EXPECT_ERROR("NULL policies", rl_check(l, &d, "k", 1, NULL, 1, 1),
               RL_E_INVALID_ARG, "");
  EXPECT_ERROR("refund of a key never charged",
               rl_check(l, &d, "never-charged", 13, &p, 1, -1), RL_E_NOT_FOUND,
               "nothing to give back");
  EXPECT_ERROR("refund beyond 2^53 - 1 units",
               rl_check(l, &d, "k", 1, &p, 1, -9007199254740992LL),
               RL_E_INVALID_ARG, "cost");
  EXPECT_ERROR("NULL limiter for rl_reset", rl_reset(NULL, "k", 1),
               RL_E_INVALID_ARG, "limiter");
  EXPECT_ERROR("empty key for rl_reset", rl_reset(l, "", 0), RL_E_KEY_INVALID,
               "key");
  {
    rl_health_info h = RL_HEALTH_INIT;
    EXPECT_ERROR("NULL limiter for rl_health", rl_health(NULL, &h),
                 RL_E_INVALID_ARG, "limiter");
    h.version = 0;
    EXPECT_ERROR("health version 0", rl_health(l, &h), RL_E_VERSION, "version");
  }

  /* A success clears the message. */
  rc = rl_check(l, &d, "k", 1, &p, 1, 1);
  CHECK_EQ_LL(rc, RL_OK);
  CHECK(rl_last_error()[0] == '\0');

  rl_destroy(l);
}

/* A limiter with the default options (NULL) uses the memory store. */
static void test_defaults(void) {
  rl_limiter *l = NULL;
  rl_health_info h = RL_HEALTH_INIT;
  rl_options o = RL_OPTIONS_INIT;
  printf("defaults\n");
  CHECK_EQ_LL(rl_create(&l, NULL), RL_OK);
  CHECK_EQ_LL(rl_health(l, &h), RL_OK);
  CHECK_EQ_LL(h.store_kind, RL_STORE_MEMORY);
  rl_destroy(l);
  l = NULL;
  o.url = "memory://";
  CHECK_EQ_LL(rl_create(&l, &o), RL_OK);
  CHECK(l != NULL);
  rl_destroy(l);
  l = NULL;
  o.url = "";
  CHECK_EQ_LL(rl_create(&l, &o), RL_OK);
  CHECK(l != NULL);
  rl_destroy(l);
}

int main(void) {
  test_versions();
  test_strerror();
  test_error_name();
  test_lifecycle();
  test_async();
  test_bad_input();
  test_defaults();
  if (g_failures != 0) {
    fprintf(stderr, "test_c_api: %d of %d checks FAILED\n", g_failures,
            g_checks);
    return 1;
  }
  printf("test_c_api: all %d checks passed\n", g_checks);
  return 0;
}
