/* A worker process for the cross-process tests: several threads check one
 * key against a shared store and the process prints how many calls were
 * admitted, e.g. "admitted 37 denied 4963 errors 0 degraded 0".
 *
 *   tollgate-test-worker URL KEY ALGORITHM LIMIT PERIOD_MS THREADS CALLS
 * [multi]
 *
 * ALGORITHM is 0..3 (RL_ALG_*). With "multi" a second, looser policy (the
 * same algorithm family, 10x the limit) is checked in the same call. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tollgate.h"

typedef struct {
  rl_limiter *lim;
  const char *key;
  rl_policy *policies[2];
  size_t n_policies;
  long calls;
  long admitted, denied, errors, degraded;
} worker;

static void *run(void *arg) {
  worker *w = (worker *)arg;
  for (long i = 0; i < w->calls; ++i) {
    rl_decision d = RL_DECISION_INIT;
    int rc = rl_check(w->lim, &d, w->key, strlen(w->key), w->policies,
                      w->n_policies, 1);
    if (rc != RL_OK) {
      ++w->errors;
    } else if (d.source != RL_SOURCE_STORE &&
               d.source != RL_SOURCE_DENY_CACHE) {
      ++w->degraded;
    } else if (d.allowed) {
      ++w->admitted;
    } else {
      ++w->denied;
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr,
            "usage: %s URL KEY ALGORITHM LIMIT PERIOD_MS THREADS CALLS "
            "[multi]\n",
            argv[0]);
    return 2;
  }
  rl_options opts = RL_OPTIONS_INIT;
  opts.url = argv[1];
  opts.failure_mode = RL_FAIL_ERROR; /* errors must be visible here */
  opts.timeout_ms = 2000;
  rl_limiter *lim = NULL;
  if (rl_create(&lim, &opts) != RL_OK) {
    fprintf(stderr, "rl_create: %s\n", rl_last_error());
    return 1;
  }
  const int threads = atoi(argv[6]);
  if (threads < 1 || threads > 64) return 2;
  worker w[64];
  pthread_t tid[64];
  for (int t = 0; t < threads; ++t) {
    memset(&w[t], 0, sizeof w[t]);
    w[t].lim = lim;
    w[t].key = argv[2];
    rl_policy_spec p = RL_POLICY_SPEC_INIT;
    p.algorithm = atoi(argv[3]);
    p.limit = atoll(argv[4]);
    p.period_ms = atoll(argv[5]);
    if (rl_policy_create(&w[t].policies[0], &p) != RL_OK) {
      fprintf(stderr, "rl_policy_create: %s\n", rl_last_error());
      return 1;
    }
    w[t].n_policies = 1;
    if (argc > 8 && strcmp(argv[8], "multi") == 0) {
      p.limit *= 10;
      if (rl_policy_create(&w[t].policies[1], &p) != RL_OK) {
        fprintf(stderr, "rl_policy_create: %s\n", rl_last_error());
        return 1;
      }
      w[t].n_policies = 2;
    }
    w[t].calls = atol(argv[7]);
    pthread_create(&tid[t], NULL, run, &w[t]);
  }
  long admitted = 0, denied = 0, errors = 0, degraded = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(tid[t], NULL);
    admitted += w[t].admitted;
    denied += w[t].denied;
    errors += w[t].errors;
    degraded += w[t].degraded;
    for (size_t i = 0; i < w[t].n_policies; ++i)
      rl_policy_release(w[t].policies[i]);
  }
  printf("admitted %ld denied %ld errors %ld degraded %ld\n", admitted, denied,
         errors, degraded);
  rl_destroy(lim);
  return errors || degraded ? 1 : 0;
}
