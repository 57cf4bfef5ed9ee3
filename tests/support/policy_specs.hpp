// Test-only overloads of the checking entry points that take policy *specs*
// (rl_policy_spec) instead of handles: each call makes a handle per spec
// with rl_policy_create, runs the real C function and releases them. Tests
// that are about something else (stores, algorithms, transports) keep their
// policies as plain structs this way; tests/test_capi.cpp and
// tests/test_c_api.c exercise the handles themselves.
//
// These are C++ overloads (C++ linkage) beside the C functions of the same
// name; the C ABI has no such overloads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tollgate.h"

namespace tollgate_test {

// Handles for `n` specs, released on destruction. `rc` is the first
// rl_policy_create failure (its message in rl_last_error), or RL_OK.
struct SpecHandles {
  rl_policy *h[RL_MAX_POLICIES + 8] = {};
  size_t n = 0;
  int rc = RL_OK;

  SpecHandles(const rl_policy_spec *specs, size_t count) {
    if (specs == nullptr || count > RL_MAX_POLICIES + 8) return;
    for (; n < count; ++n) {
      rc = rl_policy_create(&h[n], &specs[n]);
      if (rc != RL_OK) return;
    }
  }
  SpecHandles(const SpecHandles &) = delete;
  SpecHandles &operator=(const SpecHandles &) = delete;
  ~SpecHandles() {
    for (size_t i = 0; i < n; ++i) rl_policy_release(h[i]);
  }
  // NULL when the specs were NULL, so the library reports that itself.
  rl_policy *const *array(const rl_policy_spec *specs) const {
    return specs == nullptr ? nullptr : h;
  }
};

}  // namespace tollgate_test

inline int rl_check(rl_limiter *limiter, rl_decision *out, const char *key,
                    size_t key_len, const rl_policy_spec *policies,
                    size_t n_policies, int64_t cost) {
  tollgate_test::SpecHandles hs(policies, n_policies);
  if (hs.rc != RL_OK) return hs.rc;
  return rl_check(limiter, out, key, key_len, hs.array(policies), n_policies,
                  cost);
}

inline int rl_check_async(rl_limiter *limiter, const char *key, size_t key_len,
                          const rl_policy_spec *policies, size_t n_policies,
                          int64_t cost, rl_check_cb callback, void *user_data) {
  tollgate_test::SpecHandles hs(policies, n_policies);
  if (hs.rc != RL_OK) return hs.rc;
  // rl_check_async copies what it needs: the handles may go at once.
  return rl_check_async(limiter, key, key_len, hs.array(policies), n_policies,
                        cost, callback, user_data);
}

inline int rl_headers_format(rl_headers *out, const rl_decision *decision,
                             const rl_policy_spec *policy, const char *name,
                             size_t name_len) {
  tollgate_test::SpecHandles hs(policy, policy ? 1 : 0);
  if (hs.rc != RL_OK) return hs.rc;
  return rl_headers_format(out, decision, policy ? hs.h[0] : nullptr, name,
                           name_len);
}
