/*
 * tollgate.h must stand alone as strict C99: this file includes nothing
 * else and is compiled with -std=c99 -Wall -Wextra -pedantic -Werror. It
 * uses every type and every *_INIT macro once, and pins every function's
 * exact signature by assigning it to a pointer of the documented type. It
 * is compiled, never linked or run.
 */
#include "tollgate.h"

#if !defined(RL_VERSION_MAJOR) || !defined(RL_VERSION_MINOR) || \
    !defined(RL_VERSION_PATCH) || !defined(RL_ABI_MAJOR)
#error "tollgate.h: version macros missing"
#endif
#if RL_VERSION_NUMBER != \
    RL_VERSION_MAJOR * 10000 + RL_VERSION_MINOR * 100 + RL_VERSION_PATCH
#error "tollgate.h: RL_VERSION_NUMBER is inconsistent"
#endif
#if RL_OK != 0 || RL_E_INVALID_ARG != -1 || RL_E_KEY_INVALID != -2 ||      \
    RL_E_KEY_TOO_LONG != -3 || RL_E_POLICY != -4 || RL_E_OVERFLOW != -5 || \
    RL_E_VERSION != -6 || RL_E_NOMEM != -7 || RL_E_URL != -8 ||            \
    RL_E_UNSUPPORTED != -9 || RL_E_INTERNAL != -10
#error "tollgate.h: an error code was renumbered"
#endif
#if RL_ALG_GCRA != 0 || RL_ALG_TOKEN_BUCKET != 1 ||           \
    RL_ALG_FIXED_WINDOW != 2 || RL_ALG_SLIDING_WINDOW != 3 || \
    RL_SOURCE_STORE != 0 || RL_STORE_MEMORY != 1 || RL_RETRY_NEVER != -1
#error "tollgate.h: a constant was renumbered"
#endif

/* Compile-time assertions that work in C99. */
#define HC_ASSERT(name, cond) typedef char hc_assert_##name[(cond) ? 1 : -1]
HC_ASSERT(version_first_policy, offsetof(rl_policy_spec, version) == 0);
HC_ASSERT(version_first_decision, offsetof(rl_decision, version) == 0);
HC_ASSERT(version_first_options, offsetof(rl_options, version) == 0);
HC_ASSERT(version_first_health, offsetof(rl_health_info, version) == 0);
HC_ASSERT(policy_fields, sizeof(((rl_policy_spec *)0)->limit) == 8 &&
                             sizeof(((rl_policy_spec *)0)->period_ms) == 8 &&
                             sizeof(((rl_policy_spec *)0)->burst) == 8);

static int64_t hc_clock(void *user_data) {
  (void)user_data;
  return 0;
}

static void hc_callback(int status, const rl_decision *decision,
                        const char *message, void *user_data) {
  (void)status;
  (void)decision;
  (void)message;
  (void)user_data;
}

int tollgate_header_c99_uses_everything(void);

int tollgate_header_c99_uses_everything(void) {
  rl_policy_spec policy = RL_POLICY_SPEC_INIT;
  rl_policy *handle = NULL;
  rl_decision decision = RL_DECISION_INIT;
  rl_options options = RL_OPTIONS_INIT;
  rl_health_info health = RL_HEALTH_INIT;
  rl_limiter *limiter = NULL;
  rl_clock_fn clock_fn = hc_clock;
  rl_check_cb callback = hc_callback;

  /* Every function, with its exact type. */
  unsigned (*p_version_number)(void) = rl_version_number;
  const char *(*p_version_string)(void) = rl_version_string;
  const char *(*p_strerror)(int) = rl_strerror;
  const char *(*p_error_name)(int) = rl_error_name;
  const char *(*p_last_error)(void) = rl_last_error;
  int (*p_create)(rl_limiter **, const rl_options *) = rl_create;
  void (*p_destroy)(rl_limiter *) = rl_destroy;
  int (*p_check)(rl_limiter *, rl_decision *, const char *, size_t,
                 rl_policy *const *, size_t, int64_t) = rl_check;
  int (*p_check_async)(rl_limiter *, const char *, size_t, rl_policy *const *,
                       size_t, int64_t, rl_check_cb, void *) = rl_check_async;
  int (*p_policy_create)(rl_policy **, const rl_policy_spec *) =
      rl_policy_create;
  int (*p_policy_parse)(rl_policy **, const char *, size_t, size_t *) =
      rl_policy_parse;
  int (*p_period_parse)(const char *, size_t, int64_t *) = rl_period_parse;
  rl_policy *(*p_policy_retain)(rl_policy *) = rl_policy_retain;
  void (*p_policy_release)(rl_policy *) = rl_policy_release;
  int (*p_policy_get)(const rl_policy *, rl_policy_spec *) = rl_policy_get;
  int (*p_options_set)(rl_options *, const char *, const char *) =
      rl_options_set;
  int (*p_reset)(rl_limiter *, const char *, size_t) = rl_reset;
  int (*p_block)(rl_limiter *, const char *, size_t, int64_t) = rl_block;
  int (*p_check_keys)(rl_limiter *, rl_decision *, const char *const *,
                      const size_t *, size_t, rl_policy *const *,
                      const size_t *, int64_t) = rl_check_keys;
  int (*p_check_keys_async)(rl_limiter *, const char *const *, const size_t *,
                            size_t, rl_policy *const *, const size_t *, int64_t,
                            rl_check_cb, void *) = rl_check_keys_async;
  int (*p_unblock)(rl_limiter *, const char *, size_t) = rl_unblock;
  int (*p_health)(rl_limiter *, rl_health_info *) = rl_health;
  int (*p_ping)(rl_limiter *, int64_t *) = rl_ping;
  int (*p_loop_open)(rl_limiter *, int *) = rl_loop_open;
  int (*p_loop_turn)(rl_limiter *, int64_t *) = rl_loop_turn;
  int (*p_loop_turn_idle)(rl_limiter *, int64_t *) = rl_loop_turn_idle;
  int (*p_loop_close)(rl_limiter *) = rl_loop_close;
  int (*p_keys_open)(rl_limiter *, rl_policy *const *, size_t, rl_keys **) =
      rl_keys_open;
  int (*p_keys_match)(rl_limiter *, const char *, size_t, rl_policy *const *,
                      size_t, rl_keys **) = rl_keys_open_match;
  int (*p_keys_next)(rl_keys *, rl_key_info *) = rl_keys_next;
  int (*p_metrics_read)(rl_limiter *, rl_metrics **) = rl_metrics_read;
  int (*p_metrics_next)(rl_metrics *, rl_metric *) = rl_metrics_next;
  void (*p_metrics_free)(rl_metrics *) = rl_metrics_free;
  int (*p_set_log)(rl_limiter *, int, rl_log_fn, void *) = rl_set_log_handler;
  rl_metric metric = RL_METRIC_INIT;
  void (*p_keys_free)(rl_keys *) = rl_keys_free;
  int (*p_headers)(rl_headers *, const rl_decision *, const rl_policy *,
                   const char *, size_t) = rl_headers_format;
  int (*p_lease_acquire)(rl_limiter *, const char *, size_t, int64_t, int64_t,
                         rl_lease **, rl_lease_info *) = rl_lease_acquire;
  int (*p_lease_renew)(rl_limiter *, rl_lease *, int64_t) = rl_lease_renew;
  int (*p_lease_release)(rl_limiter *, rl_lease *, int *) = rl_lease_release;
  void (*p_lease_free)(rl_lease *) = rl_lease_free;
  int (*p_check_wait)(rl_limiter *, rl_decision *, const char *, size_t,
                      rl_policy *const *, size_t, int64_t, int64_t) =
      rl_check_wait;
  int (*p_lease_wait)(rl_limiter *, const char *, size_t, int64_t, int64_t,
                      int64_t, rl_lease **, rl_lease_info *) =
      rl_lease_acquire_wait;
  int (*p_set_list)(rl_limiter *, int, const char *const *, const size_t *,
                    size_t) = rl_set_list;
  rl_key_info key_info = RL_KEY_INFO_INIT;
  rl_headers headers = RL_HEADERS_INIT;
  rl_lease_info lease_info = RL_LEASE_INFO_INIT;

  options.clock = clock_fn;
  options.clock_user_data = &health;
  policy.flags = 0u;
  handle = p_policy_retain(handle);

  return (int)(policy.version + decision.version + options.version +
               health.version + key_info.version + headers.version) +
         (p_ping != NULL) + (p_loop_open != NULL) + (p_loop_turn != NULL) +
         (p_loop_turn_idle != NULL) + (p_loop_close != NULL) +
         (p_keys_open != NULL) + (p_keys_next != NULL) + (p_keys_free != NULL) +
         (p_headers != NULL) + (limiter == NULL) + (callback != NULL) +
         (p_version_number != NULL) + (p_version_string != NULL) +
         (p_strerror != NULL) + (p_error_name != NULL) + RL_MAX_POLICIES +
         (p_last_error != NULL) + (p_create != NULL) + (p_destroy != NULL) +
         (p_check != NULL) + (p_check_async != NULL) + (p_reset != NULL) +
         (p_block != NULL) + (p_check_keys != NULL) +
         (p_check_keys_async != NULL) + RL_MAX_KEYS + (p_unblock != NULL) +
         (p_health != NULL) + (options.clock != NULL) +
         (sizeof(RL_VERSION_STRING) > 1) + (p_policy_create != NULL) +
         (p_policy_parse != NULL) + (p_period_parse != NULL) +
         (p_policy_release != NULL) + (p_policy_get != NULL) +
         (p_options_set != NULL) + (handle == NULL) +
         (p_lease_acquire != NULL) + (p_lease_renew != NULL) +
         (p_lease_release != NULL) + (p_lease_free != NULL) +
         (int)lease_info.version + (RL_MAX_IN_FLIGHT > 0) +
         (RL_MAX_LEASE_TTL_MS > 0) + (p_check_wait != NULL) +
         (p_lease_wait != NULL) + (RL_MAX_WAIT_MS > 0) + (p_set_list != NULL) +
         RL_LIST_ALLOW + RL_LIST_DENY + RL_SOURCE_ALLOW_LIST +
         RL_SOURCE_DENY_LIST + (RL_MAX_LIST_ENTRIES > 0) + RL_POLICY_SHADOW +
         (p_keys_match != NULL) + (RL_MAX_PATTERN_LEN > 0) +
         (p_metrics_read != NULL) + (p_metrics_next != NULL) +
         (p_metrics_free != NULL) + (int)metric.version + RL_METRIC_COUNTER +
         RL_METRIC_GAUGE + RL_METRIC_HISTOGRAM + RL_METRIC_MAX_LABELS +
         options.metrics + (p_set_log != NULL) + RL_LOG_ERROR + RL_LOG_WARN +
         RL_LOG_INFO + RL_LOG_DEBUG;
}
