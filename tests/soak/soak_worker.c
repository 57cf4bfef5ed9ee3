/* The C process of the soak test (tests/soak/soak.py): checks keys that
 * change every SLOT_S seconds ("<prefix>:<slot>") against one Redis until
 * SECONDS have passed, then writes what it saw as one JSON object to OUT:
 * calls, errors, calls that overran their deadline, the longest call, and
 * the admissions per slot.
 *
 *   tollgate-soak-worker URL PREFIX POLICY SLOT_S TIMEOUT_MS SECONDS OUT */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tollgate.h"

#define MAX_SLOTS 100000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long)ts.tv_sec;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr,
            "usage: %s URL PREFIX POLICY SLOT_S TIMEOUT_MS SECONDS OUT\n",
            argv[0]);
    return 2;
  }
  const char *prefix = argv[2];
  const long slot_s = atol(argv[4]);
  const long timeout_ms = atol(argv[5]);
  const double seconds = atof(argv[6]);
  if (slot_s < 1 || timeout_ms < 1 || seconds <= 0) return 2;
  rl_options opts = RL_OPTIONS_INIT;
  opts.url = argv[1];
  opts.failure_mode = RL_FAIL_CLOSED;
  opts.timeout_ms = (uint32_t)timeout_ms;
  opts.deny_cache = -1; /* every call reaches Redis */
  rl_limiter *lim = NULL;
  if (rl_create(&lim, &opts) != RL_OK) {
    fprintf(stderr, "rl_create: %s\n", rl_last_error());
    return 1;
  }
  rl_policy *policy = NULL;
  if (rl_policy_parse(&policy, argv[3], strlen(argv[3]), NULL) != RL_OK) {
    fprintf(stderr, "rl_policy_parse: %s\n", rl_last_error());
    return 1;
  }
  static long admitted[MAX_SLOTS];
  const long first_slot = wall_s() / slot_s;
  long calls = 0, errors = 0, overruns = 0, last = first_slot;
  double longest_ms = 0;
  const double start = now_s();
  char key[256];
  while (now_s() - start < seconds) {
    const long slot = wall_s() / slot_s;
    if (slot - first_slot >= MAX_SLOTS) break;
    last = slot;
    const int n = snprintf(key, sizeof key, "%s:%ld", prefix, slot);
    rl_decision d = RL_DECISION_INIT;
    const double t0 = now_s();
    const int rc = rl_check(lim, &d, key, (size_t)n, &policy, 1, 1);
    const double took_ms = (now_s() - t0) * 1000.0;
    ++calls;
    if (took_ms > longest_ms) longest_ms = took_ms;
    if (took_ms > (double)timeout_ms + 250.0) ++overruns;
    if (rc != RL_OK)
      ++errors;
    else if (d.allowed && d.source == RL_SOURCE_STORE)
      ++admitted[slot - first_slot];
  }
  FILE *out = fopen(argv[7], "w");
  if (!out) return 1;
  fprintf(out,
          "{\"lang\": \"c\", \"calls\": %ld, \"errors\": %ld, "
          "\"overruns\": %ld, \"longest_ms\": %.1f, \"admitted\": {",
          calls, errors, overruns, longest_ms);
  int comma = 0;
  for (long s = first_slot; s <= last; ++s) {
    if (admitted[s - first_slot] == 0) continue;
    fprintf(out, "%s\"%ld\": %ld", comma ? ", " : "", s,
            admitted[s - first_slot]);
    comma = 1;
  }
  fprintf(out, "}}\n");
  fclose(out);
  rl_policy_release(policy);
  rl_destroy(lim);
  return 0;
}
