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

static rl_policy_spec per_second_spec(int64_t limit) {
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = RL_ALG_GCRA;
  p.limit = limit;
  p.period_ms = 1000;
  return p;
}

/* A new policy handle (the caller releases it). */
static rl_policy *per_second(int64_t limit) {
  rl_policy_spec spec = per_second_spec(limit);
  rl_policy *p = NULL;
  if (rl_policy_create(&p, &spec) != RL_OK || p == NULL) {
    fprintf(stderr, "rl_policy_create failed: %s\n", rl_last_error());
    exit(1);
  }
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
 * codes (RL_OK down to RL_E_BUSY). */
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
               NAME_CASE(RL_E_NOT_FOUND),
               NAME_CASE(RL_E_BUSY)};
#undef NAME_CASE
  size_t i;
  printf("rl_error_name\n");
  for (i = 0; i < sizeof known / sizeof known[0]; ++i) {
    const char *got = rl_error_name(known[i].code);
    /* The codes are consecutive: 0, -1, ..., RL_E_BUSY. */
    CHECK(known[i].code == -(int)i);
    if (got == NULL || strcmp(got, known[i].name) != 0) {
      ++g_failures;
      fprintf(stderr, "rl_error_name(%d) = %s, want %s\n", known[i].code,
              got ? got : "NULL", known[i].name);
    }
  }
  CHECK(rl_error_name(RL_E_BUSY - 1) == NULL);
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
  rl_policy *p = per_second(5); /* T = 200 ms, burst 5 */
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
  rl_policy_release(p);
}

/* ---- rl_check_async
 * ----------------------------------------------------------- */

struct async_result {
  int calls;
  int status;
  rl_decision decision;
};

static void on_done(int status, const rl_decision *d, const char *message,
                    void *user_data) {
  struct async_result *r = (struct async_result *)user_data;
  r->calls++;
  r->status = status;
  CHECK(message != NULL);
  if (message != NULL && status == RL_OK) CHECK(message[0] == '\0');
  if (status == RL_OK && d != NULL) r->decision = *d;
}

static void test_async(void) {
  rl_limiter *sync_l, *async_l;
  rl_policy *p = per_second(3);
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
  /* The caller may release its policies as soon as the call returns, and
   * a policy may outlive (or die before) its limiters. */
  {
    struct async_result got;
    rl_policy *q = per_second(2);
    memset(&got, 0, sizeof got);
    rc = rl_check_async(async_l, "released", 8, &q, 1, 1, on_done, &got);
    rl_policy_release(q);
    CHECK_EQ_LL(rc, RL_OK);
    CHECK_EQ_LL(got.calls, 1);
    CHECK_EQ_LL(got.decision.limit, 2);
  }
  rl_destroy(sync_l);
  rl_destroy(async_l);
  rl_policy_release(p);
}

/* ---- bad input
 * ------------------------------------------------------------------ */

static void test_bad_input(void) {
  rl_limiter *l;
  rl_policy *p = per_second(5);
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
    rl_policy_spec bad = per_second_spec(5);
    rl_policy *h = p; /* must be overwritten with NULL */
    bad.limit = 0;
    EXPECT_ERROR("limit 0", rl_policy_create(&h, &bad), RL_E_POLICY, "limit");
    CHECK(h == NULL);
    bad.limit = -3;
    EXPECT_ERROR("limit -3", rl_policy_create(&h, &bad), RL_E_POLICY, "limit");
  }
  {
    rl_policy_spec bad = per_second_spec(5);
    rl_policy *h = NULL;
    bad.period_ms = 0;
    EXPECT_ERROR("period 0", rl_policy_create(&h, &bad), RL_E_POLICY, "period");
  }
  {
    rl_policy_spec bad = per_second_spec(5);
    rl_policy *h = NULL;
    bad.algorithm = 99;
    EXPECT_ERROR("algorithm 99", rl_policy_create(&h, &bad), RL_E_POLICY,
                 "algorithm");
    bad = per_second_spec(5);
    bad.version = 0;
    EXPECT_ERROR("spec version 0", rl_policy_create(&h, &bad), RL_E_VERSION,
                 "version");
    EXPECT_ERROR("NULL spec", rl_policy_create(&h, NULL), RL_E_INVALID_ARG,
                 "spec");
  }
  {
    rl_policy *two[2];
    two[0] = p;
    two[1] = NULL;
    EXPECT_ERROR("NULL policy in the array", rl_check(l, &d, "k", 1, two, 2, 1),
                 RL_E_INVALID_ARG, "policies[1]");
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
  rl_policy_release(p);
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

/* ---- policy handles, text syntax, options by name ------------------------
 */

static void test_policy_handles(void) {
  rl_policy_spec spec = per_second_spec(7);
  rl_policy_spec got = RL_POLICY_SPEC_INIT;
  rl_policy *p = NULL, *q;
  rl_limiter *l;
  rl_decision d = RL_DECISION_INIT;

  printf("policy handles\n");
  spec.algorithm = RL_ALG_TOKEN_BUCKET;
  spec.burst = 9;
  CHECK_EQ_LL(rl_policy_create(&p, &spec), RL_OK);
  CHECK(p != NULL);
  CHECK_EQ_LL(rl_policy_get(p, &got), RL_OK);
  CHECK_EQ_LL(got.algorithm, RL_ALG_TOKEN_BUCKET);
  CHECK_EQ_LL(got.limit, 7);
  CHECK_EQ_LL(got.period_ms, 1000);
  CHECK_EQ_LL(got.burst, 9);
  CHECK_EQ_LL(got.flags, 0);
  got.version = 0;
  EXPECT_ERROR("rl_policy_get version 0", rl_policy_get(p, &got), RL_E_VERSION,
               "version");
  EXPECT_ERROR("rl_policy_get NULL", rl_policy_get(NULL, &got),
               RL_E_INVALID_ARG, "policy");

  /* Two more references: the policy lives until the last release. */
  q = rl_policy_retain(p);
  CHECK(q == p);
  CHECK(rl_policy_retain(NULL) == NULL);
  rl_policy_retain(p);
  rl_policy_release(p);
  rl_policy_release(p);
  got.version = RL_POLICY_SPEC_VERSION;
  CHECK_EQ_LL(rl_policy_get(q, &got), RL_OK);
  CHECK_EQ_LL(got.limit, 7);
  rl_policy_release(NULL); /* a no-op */

  /* Released after its limiter... */
  l = make_limiter();
  CHECK_EQ_LL(rl_check(l, &d, "k", 1, &q, 1, 1), RL_OK);
  CHECK_EQ_LL(d.limit, 7);
  rl_destroy(l);
  rl_policy_release(q);

  /* ...or before it. */
  l = make_limiter();
  p = per_second(4);
  CHECK_EQ_LL(rl_check(l, &d, "k", 1, &p, 1, 1), RL_OK);
  rl_policy_release(p);
  p = per_second(4);
  CHECK_EQ_LL(rl_check(l, &d, "k", 1, &p, 1, 1), RL_OK);
  CHECK_EQ_LL(d.remaining, 2); /* the same policy state as before */
  rl_policy_release(p);
  rl_destroy(l);
}

static void expect_parse_error(int line, const char *text, int want,
                               size_t want_offset, const char *word) {
  rl_policy *p = (rl_policy *)&g_checks; /* must become NULL */
  size_t offset = 999;
  int rc = rl_policy_parse(&p, text, strlen(text), &offset);
  expect_error(line, text, rc, want, word);
  ++g_checks;
  if (p != NULL || offset != want_offset) {
    ++g_failures;
    fprintf(stderr, "%s:%d: '%s': offset %zu (want %zu), out %s\n", __FILE__,
            line, text, offset, want_offset, p ? "not NULL" : "NULL");
  }
}
#define EXPECT_PARSE_ERROR(text, want, offset, word) \
  expect_parse_error(__LINE__, text, want, offset, word)

static void expect_parsed(int line, const char *text, int32_t algorithm,
                          int64_t limit, int64_t period_ms, int64_t burst) {
  rl_policy *p = NULL;
  rl_policy_spec s = RL_POLICY_SPEC_INIT;
  size_t offset = 999;
  int rc = rl_policy_parse(&p, text, strlen(text), &offset);
  ++g_checks;
  if (rc != RL_OK || rl_policy_get(p, &s) != RL_OK ||
      s.algorithm != algorithm || s.limit != limit ||
      s.period_ms != period_ms || s.burst != burst) {
    ++g_failures;
    fprintf(stderr,
            "%s:%d: '%s': rc %d (%s), got alg %d limit %lld period %lld "
            "burst %lld\n",
            __FILE__, line, text, rc, rl_last_error(), (int)s.algorithm,
            (long long)s.limit, (long long)s.period_ms, (long long)s.burst);
  }
  rl_policy_release(p);
}
#define EXPECT_PARSED(text, alg, limit, period, burst) \
  expect_parsed(__LINE__, text, alg, limit, period, burst)

static void expect_period(int line, const char *text, int want_rc,
                          int64_t want_ms) {
  int64_t ms = -1;
  int rc = rl_period_parse(text, strlen(text), &ms);
  ++g_checks;
  if (rc != want_rc || (rc == RL_OK && ms != want_ms)) {
    ++g_failures;
    fprintf(stderr, "%s:%d: period '%s': rc %d ms %lld, want rc %d ms %lld\n",
            __FILE__, line, text, rc, (long long)ms, want_rc,
            (long long)want_ms);
  }
}
#define EXPECT_PERIOD(text, rc, ms) expect_period(__LINE__, text, rc, ms)

static void test_policy_text(void) {
  rl_policy *p = NULL;
  printf("policy text\n");
  EXPECT_PARSED("100/h", RL_ALG_GCRA, 100, 3600000, 0);
  EXPECT_PARSED(" 100 / 1h ", RL_ALG_GCRA, 100, 3600000, 0);
  EXPECT_PARSED("100 per hour", RL_ALG_GCRA, 100, 3600000, 0);
  EXPECT_PARSED("100 per 15m", RL_ALG_GCRA, 100, 900000, 0);
  EXPECT_PARSED("10/1.5s burst=20", RL_ALG_GCRA, 10, 1500, 20);
  EXPECT_PARSED("10/s, burst = 20, token_bucket", RL_ALG_TOKEN_BUCKET, 10, 1000,
                20);
  EXPECT_PARSED("5000/d sliding_window", RL_ALG_SLIDING_WINDOW, 5000, 86400000,
                0);
  EXPECT_PARSED("3/250ms algorithm=fixed_window", RL_ALG_FIXED_WINDOW, 3, 250,
                0);
  EXPECT_PARSED("1 per 2 minutes", RL_ALG_GCRA, 1, 120000, 0);

  EXPECT_PARSE_ERROR("", RL_E_POLICY, 0, "limit");
  EXPECT_PARSE_ERROR("0/h", RL_E_POLICY, 0, "limit");
  EXPECT_PARSE_ERROR("100", RL_E_POLICY, 3, "per");
  EXPECT_PARSE_ERROR("100 h", RL_E_POLICY, 4, "per");
  EXPECT_PARSE_ERROR("100/", RL_E_POLICY, 4, "unit");
  EXPECT_PARSE_ERROR("100/3fortnights", RL_E_POLICY, 5, "fortnights");
  EXPECT_PARSE_ERROR("100/1.0005s", RL_E_POLICY, 4, "millisecond");
  EXPECT_PARSE_ERROR("100/h burst=0", RL_E_POLICY, 12, "burst");
  EXPECT_PARSE_ERROR("100/h burst", RL_E_POLICY, 11, "=");
  EXPECT_PARSE_ERROR("100/h leaky", RL_E_POLICY, 6, "leaky");
  EXPECT_PARSE_ERROR("100/h colour=red", RL_E_POLICY, 6, "colour");
  EXPECT_PARSE_ERROR("100/h gcra gcra", RL_E_POLICY, 11, "twice");
  EXPECT_PARSE_ERROR("100/h fixed_window burst=5", RL_E_POLICY, 19, "burst");
  EXPECT_PARSE_ERROR("100/h;", RL_E_POLICY, 5, "option");
  EXPECT_PARSE_ERROR("2000000000000/h", RL_E_OVERFLOW, 0, "limit");
  EXPECT_PARSE_ERROR("1/100000000000d", RL_E_OVERFLOW, 2, "period");
  EXPECT_ERROR("rl_policy_parse NULL out",
               rl_policy_parse(NULL, "1/s", 3, NULL), RL_E_INVALID_ARG, "out");
  /* Not NUL-terminated: only `len` bytes are read. */
  CHECK_EQ_LL(rl_policy_parse(&p, "7/sXYZ", 3, NULL), RL_OK);
  rl_policy_release(p);

  EXPECT_PERIOD("1h", RL_OK, 3600000);
  EXPECT_PERIOD("30s", RL_OK, 30000);
  EXPECT_PERIOD("250ms", RL_OK, 250);
  EXPECT_PERIOD(" 1 minute ", RL_OK, 60000);
  EXPECT_PERIOD("1.5s", RL_OK, 1500);
  EXPECT_PERIOD(".5s", RL_OK, 500);
  EXPECT_PERIOD("2 days", RL_OK, 172800000);
  EXPECT_PERIOD("h", RL_E_POLICY, 0);
  EXPECT_PERIOD("10", RL_E_POLICY, 0);
  EXPECT_PERIOD("0s", RL_E_POLICY, 0);
  EXPECT_PERIOD("1.2.3s", RL_E_POLICY, 0);
  EXPECT_PERIOD("0.0001s", RL_E_POLICY, 0);
  EXPECT_PERIOD("1w", RL_E_POLICY, 0);
  EXPECT_PERIOD("1s later", RL_E_POLICY, 0);
  EXPECT_PERIOD("99999999999999999999d", RL_E_OVERFLOW, 0);
  EXPECT_PERIOD("0.99999999999999999999d", RL_E_POLICY, 0);
  EXPECT_PERIOD("0.0000000001d", RL_E_POLICY, 0);
  EXPECT_PERIOD("0.5000000000000000000d", RL_OK, 43200000);
  EXPECT_PERIOD("0.00000000115740740740740740740d", RL_E_POLICY, 0);
  EXPECT_PERIOD("1s", RL_OK, 1000);
  CHECK_EQ_LL(rl_period_parse("1s", 2, NULL), RL_E_INVALID_ARG);
}

static void test_options_set(void) {
  rl_options o = RL_OPTIONS_INIT;
  rl_limiter *l = NULL;
  const char *url = "memory://";
  printf("rl_options_set\n");
  CHECK_EQ_LL(rl_options_set(&o, "url", url), RL_OK);
  CHECK(o.url == url);
  CHECK_EQ_LL(rl_options_set(&o, "max_keys", "5000"), RL_OK);
  CHECK_EQ_LL((long long)o.max_keys, 5000);
  CHECK_EQ_LL(rl_options_set(&o, "max_key_len", "64"), RL_OK);
  CHECK_EQ_LL(o.max_key_len, 64);
  CHECK_EQ_LL(rl_options_set(&o, "timeout_ms", "150"), RL_OK);
  CHECK_EQ_LL(o.timeout_ms, 150);
  CHECK_EQ_LL(rl_options_set(&o, "failure_mode", "closed"), RL_OK);
  CHECK_EQ_LL(o.failure_mode, RL_FAIL_CLOSED);
  CHECK_EQ_LL(rl_options_set(&o, "failure_mode", "4"), RL_OK);
  CHECK_EQ_LL(o.failure_mode, RL_FAIL_ERROR);
  CHECK_EQ_LL(rl_options_set(&o, "deny_cache", "off"), RL_OK);
  CHECK_EQ_LL(o.deny_cache, -1);
  CHECK_EQ_LL(rl_options_set(&o, "spin_us", "-1"), RL_OK);
  CHECK_EQ_LL(o.spin_us, -1);
  CHECK_EQ_LL(rl_options_set(&o, "password", "hunter2"), RL_OK);
  CHECK(o.password != NULL && strcmp(o.password, "hunter2") == 0);
  CHECK_EQ_LL(rl_options_set(&o, "password", NULL), RL_OK);
  CHECK(o.password == NULL);

  EXPECT_ERROR("unknown option", rl_options_set(&o, "colour", "red"),
               RL_E_INVALID_ARG, "colour");
  EXPECT_ERROR("not a number", rl_options_set(&o, "timeout_ms", "12ms"),
               RL_E_INVALID_ARG, "timeout_ms");
  EXPECT_ERROR("out of range", rl_options_set(&o, "spin_us", "5000"),
               RL_E_INVALID_ARG, "range");
  EXPECT_ERROR("negative u32", rl_options_set(&o, "shards", "-1"),
               RL_E_INVALID_ARG, "shards");
  EXPECT_ERROR("empty number", rl_options_set(&o, "shards", ""),
               RL_E_INVALID_ARG, "shards");
  EXPECT_ERROR("unknown word", rl_options_set(&o, "failure_mode", "maybe"),
               RL_E_INVALID_ARG, "failure_mode");
  EXPECT_ERROR("clock by name", rl_options_set(&o, "clock", "x"),
               RL_E_INVALID_ARG, "clock");
  EXPECT_ERROR("NULL options", rl_options_set(NULL, "url", "x"),
               RL_E_INVALID_ARG, "options");
  o.version = 1;
  EXPECT_ERROR("a version 2 field on a version 1 struct",
               rl_options_set(&o, "timeout_ms", "5"), RL_E_VERSION, "version");
  o.version = RL_OPTIONS_VERSION;
  CHECK(o.timeout_ms == 150);

  /* The options set by name make a working limiter. */
  CHECK_EQ_LL(rl_options_set(&o, "failure_mode", "default"), RL_OK);
  CHECK_EQ_LL(rl_options_set(&o, "deny_cache", "default"), RL_OK);
  CHECK_EQ_LL(rl_options_set(&o, "spin_us", "0"), RL_OK);
  CHECK_EQ_LL(rl_options_set(&o, "timeout_ms", "0"), RL_OK);
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
  test_policy_handles();
  test_policy_text();
  test_options_set();
  if (g_failures != 0) {
    fprintf(stderr, "test_c_api: %d of %d checks FAILED\n", g_failures,
            g_checks);
    return 1;
  }
  printf("test_c_api: all %d checks passed\n", g_checks);
  return 0;
}
