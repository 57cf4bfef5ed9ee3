// The C ABI over the core. Every entry point catches everything: no C++
// exception or type crosses this boundary.
#include "tollgate.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <string_view>

#include "tollgate/error.hpp"
#include "tollgate/headers.hpp"
#include "tollgate/limiter.hpp"
#include "tollgate/policy.hpp"
#include "tollgate/redis/redis_store.hpp"

using tollgate::Errc;

static_assert(RL_MAX_POLICIES == tollgate::kMaxPoliciesPerCheck);
static_assert(RL_E_INVALID_ARG == static_cast<int>(Errc::invalid_arg));
static_assert(RL_E_KEY_INVALID == static_cast<int>(Errc::key_invalid));
static_assert(RL_E_KEY_TOO_LONG == static_cast<int>(Errc::key_too_long));
static_assert(RL_E_POLICY == static_cast<int>(Errc::policy));
static_assert(RL_E_OVERFLOW == static_cast<int>(Errc::overflow));
static_assert(RL_E_VERSION == static_cast<int>(Errc::version));
static_assert(RL_E_NOMEM == static_cast<int>(Errc::nomem));
static_assert(RL_E_URL == static_cast<int>(Errc::url));
static_assert(RL_E_UNSUPPORTED == static_cast<int>(Errc::unsupported));
static_assert(RL_E_INTERNAL == static_cast<int>(Errc::internal));
static_assert(RL_E_CONNECT == static_cast<int>(Errc::connect));
static_assert(RL_E_TIMEOUT == static_cast<int>(Errc::timeout));
static_assert(RL_E_AUTH == static_cast<int>(Errc::auth));
static_assert(RL_E_TLS == static_cast<int>(Errc::tls));
static_assert(RL_E_PROTOCOL == static_cast<int>(Errc::protocol));
static_assert(RL_E_STORE == static_cast<int>(Errc::store));
static_assert(RL_E_CLOSED == static_cast<int>(Errc::closed));
static_assert(RL_E_DONE == static_cast<int>(Errc::done));
static_assert(RL_E_NOT_FOUND == static_cast<int>(Errc::not_found));
static_assert(RL_SOURCE_DENY_CACHE ==
              static_cast<int>(tollgate::Source::deny_cache));
static_assert(RL_SOURCE_FAIL_OPEN ==
              static_cast<int>(tollgate::Source::fail_open));
static_assert(RL_SOURCE_FAIL_CLOSED ==
              static_cast<int>(tollgate::Source::fail_closed));
static_assert(RL_SOURCE_LOCAL == static_cast<int>(tollgate::Source::local));
static_assert(RL_STORE_REDIS == static_cast<int>(tollgate::StoreKind::redis));
static_assert(RL_ALG_GCRA == static_cast<int>(tollgate::Algorithm::gcra));
static_assert(RL_ALG_TOKEN_BUCKET ==
              static_cast<int>(tollgate::Algorithm::token_bucket));
static_assert(RL_ALG_FIXED_WINDOW ==
              static_cast<int>(tollgate::Algorithm::fixed_window));
static_assert(RL_ALG_SLIDING_WINDOW ==
              static_cast<int>(tollgate::Algorithm::sliding_window));
static_assert(RL_RETRY_NEVER == tollgate::kRetryNever);
static_assert(RL_STORE_MEMORY == static_cast<int>(tollgate::StoreKind::memory));
static_assert(RL_SOURCE_STORE == static_cast<int>(tollgate::Source::store));

struct rl_limiter {
  std::unique_ptr<tollgate::Limiter> impl;
};

struct rl_keys {
  std::unique_ptr<tollgate::KeyIterator> impl;
};

namespace {

int code(Errc e) {
  return static_cast<int>(e);
}

int failed(Errc e, std::string message) {
  return code(tollgate::fail(e, std::move(message)));
}

// Runs `body` (returning Errc) with every exception mapped to a code.
template <typename F>
int guarded(F &&body) noexcept {
  try {
    tollgate::clear_last_error();
    return code(body());
  } catch (const std::bad_alloc &) {
    return failed(Errc::nomem, "out of memory");
  } catch (const std::exception &ex) {
    return failed(Errc::internal, std::string("internal error: ") + ex.what());
  } catch (...) {
    return failed(Errc::internal, "internal error");
  }
}

// Microseconds to whole milliseconds, rounded up (never early); the
// RL_RETRY_NEVER sentinel passes through.
int64_t ceil_ms(int64_t us) {
  return us <= 0 ? us : (us + 999) / 1000;
}

// The last policies each thread converted, by position: a caller checks the
// same policies again and again, so validation and id hashing are skipped
// when the fields are unchanged.
struct PolicyCache {
  rl_policy raw[tollgate::kMaxPoliciesPerCheck];
  tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
  bool valid[tollgate::kMaxPoliciesPerCheck];
};
thread_local PolicyCache t_policy_cache{};

bool same_fields(const rl_policy &a, const rl_policy &b) {
  return a.algorithm == b.algorithm && a.limit == b.limit &&
         a.period_ms == b.period_ms && a.burst == b.burst && a.flags == b.flags;
}

Errc convert_policies(const rl_policy *in, size_t n,
                      tollgate::Policy (&out)[tollgate::kMaxPoliciesPerCheck]) {
  if (n == 0 || n > tollgate::kMaxPoliciesPerCheck)
    return tollgate::fail(Errc::invalid_arg,
                          "policies: expected 1 to " +
                              std::to_string(RL_MAX_POLICIES) +
                              " policies, got " + std::to_string(n));
  if (in == nullptr)
    return tollgate::fail(Errc::invalid_arg, "policies: NULL array");
  const uint32_t version = in[0].version;
  if (version == 0 || version > RL_POLICY_VERSION)
    return tollgate::fail(Errc::version,
                          "policies: rl_policy version " +
                              std::to_string(version) +
                              " is not supported (this library knows 1.." +
                              std::to_string(RL_POLICY_VERSION) + ")");
  for (size_t i = 0; i < n; ++i) {
    const rl_policy &p = in[i];
    if (p.version != version)
      return tollgate::fail(Errc::policy,
                            "policies: policy " + std::to_string(i) +
                                " has version " + std::to_string(p.version) +
                                ", policy 0 has " + std::to_string(version));
    PolicyCache &cache = t_policy_cache;
    if (cache.valid[i] && same_fields(cache.raw[i], p)) {
      out[i] = cache.converted[i];
      continue;
    }
    const Errc rc = tollgate::make_policy(p.algorithm, p.limit, p.period_ms,
                                          p.burst, p.flags, out[i]);
    cache.valid[i] = rc == Errc::ok;
    if (rc == Errc::ok) {
      cache.raw[i] = p;
      cache.converted[i] = out[i];
    }
    if (rc != Errc::ok) {
      if (n > 1)
        tollgate::fail(rc, "policies[" + std::to_string(i) +
                               "]: " + tollgate::last_error_message());
      return rc;
    }
  }
  return Errc::ok;
}

[[gnu::cold, gnu::noinline]] Errc bad_version(uint32_t version,
                                              uint32_t current,
                                              const char *what) {
  return tollgate::fail(Errc::version,
                        std::string(what) + ": version " +
                            std::to_string(version) +
                            " is not supported (this library knows 1.." +
                            std::to_string(current) +
                            "); initialise it with its RL_*_INIT macro");
}

// Inline: rl_check calls it on every check; the message is built out of line.
inline Errc check_version(uint32_t version, uint32_t current,
                          const char *what) {
  if (version == 0 || version > current) [[unlikely]]
    return bad_version(version, current, what);
  return Errc::ok;
}

void fill(rl_decision &out, const tollgate::Decision &d) {
  // Version 1 is the only layout so far; later versions append fields.
  out.allowed = d.allowed ? 1 : 0;
  out.limit = d.limit;
  out.remaining = d.remaining;
  out.reset_after_ms = ceil_ms(d.reset_after_us);
  out.retry_after_ms = ceil_ms(d.retry_after_us);
  out.source = static_cast<int32_t>(d.source);
  out.policy_index = d.policy_index;
}

// Validates the pointer-level arguments shared by rl_check and
// rl_check_async and converts the policies.
Errc prepare(rl_limiter *limiter, const char *key, size_t key_len,
             const rl_policy *policies, size_t n_policies,
             tollgate::Policy (&converted)[tollgate::kMaxPoliciesPerCheck]) {
  if (limiter == nullptr)
    return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
  if (key == nullptr && key_len > 0) {
    limiter->impl->count_error();
    return tollgate::fail(Errc::key_invalid,
                          "key: NULL pointer with non-zero length");
  }
  const Errc rc = convert_policies(policies, n_policies, converted);
  if (rc != Errc::ok) limiter->impl->count_error();
  return rc;
}

// Carries an async check's user callback to the completion.
struct AsyncCall {
  rl_check_cb callback;
  void *user_data;
};

void async_done(void *user, Errc code, const tollgate::Decision *d) {
  AsyncCall call = *static_cast<AsyncCall *>(user);
  delete static_cast<AsyncCall *>(user);
  rl_decision out = RL_DECISION_INIT;
  if (d) fill(out, *d);
  try {
    call.callback(static_cast<int>(code), d ? &out : nullptr, call.user_data);
  } catch (...) {
    // A callback must not throw; if a C++ one does, it stops here.
  }
}

void copy_text(char *dst, size_t size, const std::string &src) {
  const size_t n = std::min(size - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

}  // namespace

extern "C" {

unsigned rl_version_number(void) {
  return RL_VERSION_NUMBER;
}

const char *rl_version_string(void) {
  return RL_VERSION_STRING;
}

const char *rl_strerror(int code) {
  switch (code) {
    case RL_OK:
      return "success";
    case RL_E_INVALID_ARG:
      return "invalid argument";
    case RL_E_KEY_INVALID:
      return "invalid key (empty or NULL)";
    case RL_E_KEY_TOO_LONG:
      return "key longer than max_key_len";
    case RL_E_POLICY:
      return "invalid policy";
    case RL_E_OVERFLOW:
      return "value out of range (would overflow)";
    case RL_E_VERSION:
      return "unsupported struct version";
    case RL_E_NOMEM:
      return "out of memory";
    case RL_E_URL:
      return "malformed or unknown store URL";
    case RL_E_UNSUPPORTED:
      return "not supported by this store or build";
    case RL_E_INTERNAL:
      return "internal error";
    case RL_E_CONNECT:
      return "cannot reach the store";
    case RL_E_TIMEOUT:
      return "the store did not answer before the deadline";
    case RL_E_AUTH:
      return "the store refused the credentials";
    case RL_E_TLS:
      return "TLS failure (handshake or certificate)";
    case RL_E_PROTOCOL:
      return "malformed or unexpected reply from the store";
    case RL_E_STORE:
      return "the store answered with an error";
    case RL_E_CLOSED:
      return "the limiter was destroyed";
    case RL_E_DONE:
      return "no more entries";
    case RL_E_NOT_FOUND:
      return "nothing to give back: the key has no usage under its policies";
    default:
      return "unknown error code";
  }
}

const char *rl_error_name(int code) {
  switch (code) {
#define TOLLGATE_NAME(c) \
  case c:                \
    return #c;
    TOLLGATE_NAME(RL_OK)
    TOLLGATE_NAME(RL_E_INVALID_ARG)
    TOLLGATE_NAME(RL_E_KEY_INVALID)
    TOLLGATE_NAME(RL_E_KEY_TOO_LONG)
    TOLLGATE_NAME(RL_E_POLICY)
    TOLLGATE_NAME(RL_E_OVERFLOW)
    TOLLGATE_NAME(RL_E_VERSION)
    TOLLGATE_NAME(RL_E_NOMEM)
    TOLLGATE_NAME(RL_E_URL)
    TOLLGATE_NAME(RL_E_UNSUPPORTED)
    TOLLGATE_NAME(RL_E_INTERNAL)
    TOLLGATE_NAME(RL_E_CONNECT)
    TOLLGATE_NAME(RL_E_TIMEOUT)
    TOLLGATE_NAME(RL_E_AUTH)
    TOLLGATE_NAME(RL_E_TLS)
    TOLLGATE_NAME(RL_E_PROTOCOL)
    TOLLGATE_NAME(RL_E_STORE)
    TOLLGATE_NAME(RL_E_CLOSED)
    TOLLGATE_NAME(RL_E_DONE)
    TOLLGATE_NAME(RL_E_NOT_FOUND)
#undef TOLLGATE_NAME
    default:
      return nullptr;
  }
}

const char *rl_last_error(void) {
  return tollgate::last_error_message();
}

int rl_create(rl_limiter **out, const rl_options *options) {
  return guarded([&]() -> Errc {
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    *out = nullptr;
    tollgate::LimiterConfig config;
    if (options != nullptr) {
      Errc rc =
          check_version(options->version, RL_OPTIONS_VERSION, "rl_options");
      if (rc != Errc::ok) return rc;
      if (options->url) config.url = options->url;
      config.max_keys = options->max_keys;
      config.max_key_len = options->max_key_len;
      config.shards = options->shards;
      config.clock = options->clock;
      config.clock_user_data = options->clock_user_data;
      if (options->version >= 2) {
        auto opt = [](const char *v) -> std::optional<std::string> {
          if (v == nullptr) return std::nullopt;
          return std::string(v);
        };
        config.connect_timeout_ms = options->connect_timeout_ms;
        config.timeout_ms = options->timeout_ms;
        config.key_prefix = opt(options->key_prefix);
        config.failure_mode = options->failure_mode;
        config.local_divisor = options->local_divisor;
        config.deny_cache = options->deny_cache;
        if (options->version >= 3) config.spin_us = options->spin_us;
        config.deny_cache_size = options->deny_cache_size;
        config.connections = options->connections;
        config.reconnect_max_ms = options->reconnect_max_ms;
        config.username = opt(options->username);
        config.password = opt(options->password);
        config.tls_ca_file = opt(options->tls_ca_file);
        config.tls_ca_dir = opt(options->tls_ca_dir);
        config.tls_cert_file = opt(options->tls_cert_file);
        config.tls_key_file = opt(options->tls_key_file);
        config.tls_server_name = opt(options->tls_server_name);
        config.tls_verify = options->tls_verify;
      }
    }
    auto handle = std::make_unique<rl_limiter>();
    Errc rc = tollgate::Limiter::create(config, handle->impl);
    if (rc != Errc::ok) return rc;
    *out = handle.release();
    return Errc::ok;
  });
}

void rl_destroy(rl_limiter *limiter) {
  try {
    delete limiter;
  } catch (...) {
    // Destructors do not throw; nothing may cross the boundary regardless.
  }
}

int rl_check(rl_limiter *limiter, rl_decision *out, const char *key,
             size_t key_len, const rl_policy *policies, size_t n_policies,
             int64_t cost) {
  return guarded([&]() -> Errc {
    if (out == nullptr) {
      if (limiter) limiter->impl->count_error();
      return tollgate::fail(Errc::invalid_arg, "out: NULL decision pointer");
    }
    Errc rc = check_version(out->version, RL_DECISION_VERSION, "rl_decision");
    if (rc != Errc::ok) {
      if (limiter) limiter->impl->count_error();
      return rc;
    }
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    rc = prepare(limiter, key, key_len, policies, n_policies, converted);
    if (rc != Errc::ok) return rc;
    tollgate::Decision d;
    rc = limiter->impl->check(
        std::string_view(key ? key : "", key_len),
        std::span<const tollgate::Policy>(converted, n_policies), cost, d);
    if (rc == Errc::ok) fill(*out, d);
    return rc;
  });
}

int rl_check_async(rl_limiter *limiter, const char *key, size_t key_len,
                   const rl_policy *policies, size_t n_policies, int64_t cost,
                   rl_check_cb callback, void *user_data) {
  return guarded([&]() -> Errc {
    if (callback == nullptr) {
      if (limiter) limiter->impl->count_error();
      return tollgate::fail(Errc::invalid_arg, "callback: NULL");
    }
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    Errc rc = prepare(limiter, key, key_len, policies, n_policies, converted);
    if (rc != Errc::ok) return rc;
    auto call = std::make_unique<AsyncCall>(AsyncCall{callback, user_data});
    rc = limiter->impl->check_async(
        std::string_view(key ? key : "", key_len),
        std::span<const tollgate::Policy>(converted, n_policies), cost,
        async_done, call.get());
    // On success the completion owns (and frees) the call.
    if (rc == Errc::ok) call.release();
    return rc;
  });
}

int rl_reset(rl_limiter *limiter, const char *key, size_t key_len) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    if (key == nullptr && key_len > 0) {
      limiter->impl->count_error();
      return tollgate::fail(Errc::key_invalid,
                            "key: NULL pointer with non-zero length");
    }
    return limiter->impl->reset(std::string_view(key ? key : "", key_len));
  });
}

int rl_health(rl_limiter *limiter, rl_health_info *out) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    Errc rc = check_version(out->version, RL_HEALTH_VERSION, "rl_health_info");
    if (rc != Errc::ok) return rc;
    const tollgate::Health h = limiter->impl->health();
    out->store_kind = static_cast<int32_t>(h.store_kind);
    out->checks = h.checks;
    out->allowed = h.allowed;
    out->denied = h.denied;
    out->errors = h.errors;
    out->live_keys = h.live_keys;
    out->evictions = h.evictions;
    if (out->version >= 2) {
      out->connection = h.connection;
      out->in_flight = h.in_flight;
      out->reconnects = h.reconnects;
      out->last_ping_us = h.last_ping_us;
      out->store_errors = h.store_errors;
      out->fail_open = h.fail_open;
      out->fail_closed = h.fail_closed;
      out->local_fallback = h.local_fallback;
      out->deny_cache_hits = h.deny_cache_hits;
      copy_text(out->server_version, sizeof out->server_version,
                h.server_version);
      copy_text(out->last_error, sizeof out->last_error, h.last_error);
    }
    if (out->version >= 3) {
      out->topology = h.topology;
      out->nodes = static_cast<uint32_t>(h.nodes.size());
      out->slot_map_age_ms = h.slot_map_age_ms;
      out->slot_map_refreshes = h.slot_map_refreshes;
      out->moved = h.moved;
      out->ask = h.ask;
      out->master_switches = h.master_switches;
    }
    return Errc::ok;
  });
}

int rl_health_node(rl_limiter *limiter, size_t index, rl_node_info *out) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    Errc rc = check_version(out->version, RL_NODE_VERSION, "rl_node_info");
    if (rc != Errc::ok) return rc;
    const tollgate::Health h = limiter->impl->health();
    if (index >= h.nodes.size())
      return tollgate::fail(Errc::invalid_arg,
                            "index: " + std::to_string(index) +
                                " is past the last node (" +
                                std::to_string(h.nodes.size()) + " known)");
    const tollgate::NodeHealth &n = h.nodes[index];
    out->role = n.primary ? RL_ROLE_PRIMARY : RL_ROLE_OTHER;
    out->connection = n.started ? n.connection : RL_CONN_NONE;
    out->in_flight = n.in_flight;
    out->errors = n.failures;
    out->reconnects = n.reconnects;
    copy_text(out->address, sizeof out->address, n.address);
    copy_text(out->last_error, sizeof out->last_error, n.last_error);
    return Errc::ok;
  });
}

int rl_ping(rl_limiter *limiter, int64_t *rtt_us) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    int64_t rtt = 0;
    const Errc rc = limiter->impl->ping(rtt);
    if (rc == Errc::ok && rtt_us) *rtt_us = rtt;
    return rc;
  });
}

int rl_keys_open(rl_limiter *limiter, rl_keys **out) {
  return guarded([&]() -> Errc {
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    *out = nullptr;
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    auto it = std::make_unique<rl_keys>();
    const Errc rc = limiter->impl->open_keys(it->impl);
    if (rc != Errc::ok) return rc;
    *out = it.release();
    return Errc::ok;
  });
}

int rl_keys_next(rl_keys *it, rl_key_info *out) {
  return guarded([&]() -> Errc {
    if (it == nullptr)
      return tollgate::fail(Errc::invalid_arg, "iterator: NULL handle");
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    Errc rc = check_version(out->version, RL_KEY_INFO_VERSION, "rl_key_info");
    if (rc != Errc::ok) return rc;
    const tollgate::redis::KeyEntry *e = nullptr;
    rc = it->impl->next(e);
    if (rc != Errc::ok) return rc;
    out->key = e->key.data();
    out->key_len = e->key.size();
    const rl_policy fresh = RL_POLICY_INIT;
    out->policy = fresh;
    out->policy.algorithm = static_cast<int32_t>(e->policy.algorithm);
    out->policy.limit = e->policy.limit;
    out->policy.period_ms = e->policy.period_ms;
    out->policy.burst = e->policy.burst;
    out->remaining = e->remaining;
    out->reset_after_ms = ceil_ms(e->reset_after_us);
    return Errc::ok;
  });
}

void rl_keys_free(rl_keys *it) {
  delete it;
}

int rl_headers_format(rl_headers *out, const rl_decision *decision,
                      const rl_policy *policy, const char *name,
                      size_t name_len) {
  return guarded([&]() -> Errc {
    if (out == nullptr || decision == nullptr || policy == nullptr)
      return tollgate::fail(Errc::invalid_arg,
                            "headers: out, decision and policy are required");
    Errc rc = check_version(out->version, RL_HEADERS_VERSION, "rl_headers");
    if (rc == Errc::ok)
      rc = check_version(decision->version, RL_DECISION_VERSION, "rl_decision");
    if (rc == Errc::ok)
      rc = check_version(policy->version, RL_POLICY_VERSION, "rl_policy");
    if (rc != Errc::ok) return rc;
    if (name == nullptr && name_len > 0)
      return tollgate::fail(Errc::invalid_arg,
                            "headers: NULL name with a non-zero length");
    if (name_len > 100)
      return tollgate::fail(Errc::invalid_arg,
                            "headers: the policy name exceeds 100 bytes");
    tollgate::Policy p;
    rc = tollgate::make_policy(policy->algorithm, policy->limit,
                               policy->period_ms, policy->burst, policy->flags,
                               p);
    if (rc != Errc::ok) return rc;
    const tollgate::HeaderValues h = tollgate::format_headers(
        decision->allowed != 0, decision->limit, decision->remaining,
        decision->reset_after_ms, decision->retry_after_ms, p.period_ms,
        std::string_view(name ? name : "", name_len));
    copy_text(out->ratelimit_policy, sizeof out->ratelimit_policy,
              h.ratelimit_policy);
    copy_text(out->ratelimit, sizeof out->ratelimit, h.ratelimit);
    copy_text(out->x_ratelimit_limit, sizeof out->x_ratelimit_limit, h.x_limit);
    copy_text(out->x_ratelimit_remaining, sizeof out->x_ratelimit_remaining,
              h.x_remaining);
    copy_text(out->x_ratelimit_reset, sizeof out->x_ratelimit_reset, h.x_reset);
    copy_text(out->retry_after, sizeof out->retry_after, h.retry_after);
    return Errc::ok;
  });
}

}  // extern "C"
