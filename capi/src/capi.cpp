// The C ABI over the core. Every entry point catches everything: no C++
// exception or type crosses this boundary.
#include "tollgate.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tollgate/error.hpp"
#include "tollgate/exemptions.hpp"
#include "tollgate/headers.hpp"
#include "tollgate/limiter.hpp"
#include "tollgate/policy.hpp"
#include "tollgate/redis/redis_store.hpp"
#include "tollgate/wait.hpp"

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
static_assert(RL_E_BUSY == static_cast<int>(Errc::busy));
static_assert(RL_SOURCE_DENY_CACHE ==
              static_cast<int>(tollgate::Source::deny_cache));
static_assert(RL_SOURCE_FAIL_OPEN ==
              static_cast<int>(tollgate::Source::fail_open));
static_assert(RL_SOURCE_FAIL_CLOSED ==
              static_cast<int>(tollgate::Source::fail_closed));
static_assert(RL_SOURCE_LOCAL == static_cast<int>(tollgate::Source::local));
static_assert(RL_SOURCE_ALLOW_LIST ==
              static_cast<int>(tollgate::Source::allow_list));
static_assert(RL_SOURCE_DENY_LIST ==
              static_cast<int>(tollgate::Source::deny_list));
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

// A policy handle: validated once, immutable, shared by reference count.
struct rl_policy {
  std::atomic<uint64_t> refs{1};
  tollgate::Policy compiled;
};

// What a limiter and its key iterators share, so that either may go first:
// rl_destroy frees the store state of every iterator still open (under the
// iterator's own lock), which then answers RL_E_CLOSED.
struct KeysRegistry {
  std::mutex mu;
  std::vector<rl_keys *> open;
};

// Distinct for every limiter a process makes: a lease names its limiter by
// it, so a lease shown to another limiter is refused even if that one
// reuses a destroyed limiter's address.
std::atomic<uint64_t> g_limiter_serial{0};

struct rl_limiter {
  std::unique_ptr<tollgate::Limiter> impl;
  std::shared_ptr<KeysRegistry> keys = std::make_shared<KeysRegistry>();
  uint64_t serial = g_limiter_serial.fetch_add(1) + 1;
  bool shadow = false;  // rl_options.shadow: every denial answered allowed
  // rl_set_list: replaced whole under lists_mu; read only while any_list.
  struct Lists {
    tollgate::KeyList allow, deny;
  };
  std::mutex lists_mu;
  std::shared_ptr<const Lists> lists;
  std::atomic<bool> any_list{false};
};

// A lease: plain data (what the limiter needs to renew or release it), so
// it may be freed before or after its limiter.
struct rl_lease {
  uint64_t limiter_serial;
  tollgate::Limiter::Lease lease;
  bool released = false;
};

struct rl_keys {
  std::mutex mu;  // held by rl_keys_next and by rl_destroy's closing
  std::unique_ptr<tollgate::KeyIterator> impl;  // null once closed
  std::shared_ptr<KeysRegistry> registry;
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

Errc convert_policies(rl_policy *const *in, size_t n,
                      tollgate::Policy (&out)[tollgate::kMaxPoliciesPerCheck]) {
  if (n == 0 || n > tollgate::kMaxPoliciesPerCheck)
    return tollgate::fail(Errc::invalid_arg,
                          "policies: expected 1 to " +
                              std::to_string(RL_MAX_POLICIES) +
                              " policies, got " + std::to_string(n));
  if (in == nullptr)
    return tollgate::fail(Errc::invalid_arg, "policies: NULL array");
  for (size_t i = 0; i < n; ++i) {
    if (in[i] == nullptr) [[unlikely]]
      return tollgate::fail(Errc::invalid_arg, "policies[" + std::to_string(i) +
                                                   "]: NULL policy handle");
    out[i] = in[i]->compiled;
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
  // Later versions append fields: an older caller's struct ends sooner.
  out.allowed = d.allowed ? 1 : 0;
  out.limit = d.limit;
  out.remaining = d.remaining;
  out.reset_after_ms = ceil_ms(d.reset_after_us);
  out.retry_after_ms = ceil_ms(d.retry_after_us);
  out.source = static_cast<int32_t>(d.source);
  out.policy_index = d.policy_index;
  if (out.version >= 2) {
    out.shadow = d.shadow ? 1 : 0;
    out.reserved = 0;
  }
}

// A limiter in shadow mode answers every denial (a block's, the deny
// cache's, fail closed's; its policies' are shadowed by the store) allowed,
// the decision still describing the denial.
void shadow_flip(const rl_limiter *limiter, tollgate::Decision &d) {
  if (limiter->shadow && !d.allowed) {
    d.allowed = true;
    d.shadow = true;
  }
}

// The metrics labels of a check's policies, by position (all keys' policies
// in a row for rl_check_keys).
struct Labels {
  uint16_t v[tollgate::kMaxPoliciesPerCheck] = {};
  size_t n = 0;
  Labels() = default;
  Labels(const tollgate::Policy *policies, size_t count) : n(count) {
    for (size_t i = 0; i < count; ++i) v[i] = policies[i].label;
  }
};

// How many policies rl_check_keys' n_keys keys hold in all (validated).
size_t total_policies(const size_t *n_policies, size_t n_keys) {
  size_t n = 0;
  for (size_t j = 0; j < n_keys; ++j) n += n_policies[j];
  return n;
}

// The last step of every check: shadow_flip, the shadow counter, and the
// decision counted under the label of the policy it reports.
void settle(rl_limiter *limiter, tollgate::Decision &d, uint16_t label) {
  shadow_flip(limiter, d);
  if (d.shadow) [[unlikely]]
    limiter->impl->count_shadow();
  limiter->impl->count_decision(label, d);
}

// The label of the policy a decision reports, of the `n` checked.
uint16_t label_of(const tollgate::Decision &d, const tollgate::Policy *policies,
                  size_t n) {
  return d.policy_index < n ? policies[d.policy_index].label : 0;
}

void settle(rl_limiter *limiter, tollgate::Decision &d, const Labels &labels) {
  settle(limiter, d,
         d.policy_index < labels.n ? labels.v[d.policy_index] : uint16_t{0});
}

// What the allow and deny lists say of keys[0 .. n): 0 nothing (check the
// store), else the decision (d filled, counted). Refunds are not listed.
bool list_answer(rl_limiter *limiter, const std::string_view *keys, size_t n,
                 const tollgate::Policy &first, int64_t cost,
                 tollgate::Decision &d) {
  if (!limiter->any_list.load(std::memory_order_acquire) || cost < 0)
    return false;
  std::shared_ptr<const rl_limiter::Lists> lists;
  {
    std::lock_guard<std::mutex> lock(limiter->lists_mu);
    lists = limiter->lists;
  }
  if (!lists) return false;
  bool denied = false, all_allowed = !lists->allow.empty();
  for (size_t j = 0; j < n; ++j) {
    denied = denied || lists->deny.contains(keys[j]);
    all_allowed = all_allowed && lists->allow.contains(keys[j]);
  }
  if (!denied && !all_allowed) return false;
  d = tollgate::Decision{};
  d.allowed = !denied;
  d.limit = first.limit;
  d.remaining = denied ? 0 : first.limit;
  d.retry_after_us = denied ? tollgate::kRetryNever : 0;
  d.source =
      denied ? tollgate::Source::deny_list : tollgate::Source::allow_list;
  limiter->impl->count_list(!denied);
  return true;
}

// A shadow limiter's policies are all in shadow mode.
void shadow_all(const rl_limiter *limiter, tollgate::Policy *converted,
                size_t n) {
  if (!limiter->shadow) return;
  for (size_t i = 0; i < n; ++i)
    tollgate::set_policy_shadow(converted[i], true);
}

// Validates the pointer-level arguments shared by rl_check and
// rl_check_async and converts the policies.
Errc prepare(rl_limiter *limiter, const char *key, size_t key_len,
             rl_policy *const *policies, size_t n_policies,
             tollgate::Policy (&converted)[tollgate::kMaxPoliciesPerCheck]) {
  if (limiter == nullptr)
    return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
  if (key == nullptr && key_len > 0) {
    limiter->impl->count_error();
    return tollgate::fail(Errc::key_invalid,
                          "key: NULL pointer with non-zero length");
  }
  const Errc rc = convert_policies(policies, n_policies, converted);
  if (rc != Errc::ok) {
    limiter->impl->count_error();
    return rc;
  }
  shadow_all(limiter, converted, n_policies);
  return rc;
}

// The pointer-level arguments of rl_check_keys(_async): the pairs, viewing
// the caller's keys and `converted` (the policies, pair by pair).
Errc prepare_keys(
    rl_limiter *limiter, const char *const *keys, const size_t *key_lens,
    size_t n_keys, rl_policy *const *policies, const size_t *n_policies,
    tollgate::Policy (&converted)[tollgate::kMaxPoliciesPerCheck],
    tollgate::Limiter::KeyPolicies (&items)[tollgate::kMaxKeysPerCheck]) {
  if (limiter == nullptr)
    return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
  const auto refuse = [&](Errc code, const std::string &message) {
    limiter->impl->count_error();
    return tollgate::fail(code, message);
  };
  if (n_keys == 0 || n_keys > tollgate::kMaxKeysPerCheck)
    return refuse(Errc::invalid_arg,
                  "keys: expected 1 to " + std::to_string(RL_MAX_KEYS) +
                      " keys, got " + std::to_string(n_keys));
  if (keys == nullptr || key_lens == nullptr || n_policies == nullptr)
    return refuse(Errc::invalid_arg,
                  "keys, key_lens and n_policies: NULL array");
  size_t total = 0;
  for (size_t j = 0; j < n_keys; ++j) {
    if (keys[j] == nullptr && key_lens[j] > 0)
      return refuse(Errc::key_invalid, "keys[" + std::to_string(j) +
                                           "]: NULL pointer with non-zero "
                                           "length");
    if (n_policies[j] == 0 || n_policies[j] > tollgate::kMaxPoliciesPerCheck ||
        total + n_policies[j] > tollgate::kMaxPoliciesPerCheck)
      return refuse(Errc::invalid_arg,
                    "n_policies: each pair has 1 or more policies and all "
                    "the pairs at most " +
                        std::to_string(RL_MAX_POLICIES));
    total += n_policies[j];
  }
  if (policies == nullptr)
    return refuse(Errc::invalid_arg, "policies: NULL array");
  size_t at = 0;
  for (size_t j = 0; j < n_keys; ++j) {
    for (size_t i = 0; i < n_policies[j]; ++i, ++at) {
      if (policies[at] == nullptr) [[unlikely]]
        return refuse(Errc::invalid_arg, "policies[" + std::to_string(at) +
                                             "]: NULL policy handle");
      converted[at] = policies[at]->compiled;
    }
    items[j].key = std::string_view(keys[j] ? keys[j] : "", key_lens[j]);
    items[j].policies = std::span<const tollgate::Policy>(
        converted + at - n_policies[j], n_policies[j]);
  }
  shadow_all(limiter, converted, at);
  return Errc::ok;
}

// The decision pointer of rl_check and rl_check_keys: not NULL, a version
// this library knows (a refusal counts as an error of `limiter`).
Errc check_decision_out(rl_limiter *limiter, const rl_decision *out) {
  if (out == nullptr) {
    if (limiter) limiter->impl->count_error();
    return tollgate::fail(Errc::invalid_arg, "out: NULL decision pointer");
  }
  const Errc rc =
      check_version(out->version, RL_DECISION_VERSION, "rl_decision");
  if (rc != Errc::ok && limiter) limiter->impl->count_error();
  return rc;
}

// The limiter and key pointers of rl_reset, rl_block and rl_unblock.
Errc check_admin_key(rl_limiter *limiter, const char *key, size_t key_len) {
  if (limiter == nullptr)
    return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
  if (key == nullptr && key_len > 0) {
    limiter->impl->count_error();
    return tollgate::fail(Errc::key_invalid,
                          "key: NULL pointer with non-zero length");
  }
  return Errc::ok;
}

// Carries an async check's user callback to the completion.
struct AsyncCall {
  rl_check_cb callback;
  void *user_data;
  rl_limiter *limiter;  // outlives the call: rl_destroy completes it first
  Labels labels;
};

void async_done(void *user, Errc code, const tollgate::Decision *d) {
  AsyncCall call = *static_cast<AsyncCall *>(user);
  delete static_cast<AsyncCall *>(user);
  rl_decision out = RL_DECISION_INIT;
  if (d) {
    tollgate::Decision settled = *d;
    settle(call.limiter, settled, call.labels);
    fill(out, settled);
  }
  // The core records an error's detail on the completing thread.
  const char *message = "";
  if (code != Errc::ok) {
    message = tollgate::last_error_message();
    if (*message == '\0') message = rl_strerror(static_cast<int>(code));
  }
  try {
    call.callback(static_cast<int>(code), d ? &out : nullptr, message,
                  call.user_data);
  } catch (...) {
    // A callback must not throw; if a C++ one does, it stops here.
  }
}

void copy_text(char *dst, size_t size, const std::string &src) {
  const size_t n = std::min(size - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

// ---- rl_options_set
// ----------------------------------------------------------

enum class OptKind { text, u64, u32, i32 };

struct OptField {
  const char *name;
  uint32_t since;  // the rl_options version that has the field
  OptKind kind;
  size_t offset;
  int64_t min, max;
  // Words accepted besides numbers ({word, value} pairs, nullptr-ended).
  const std::pair<const char *, int32_t> *words;
};

constexpr std::pair<const char *, int32_t> kFailureWords[] = {
    {"default", RL_FAIL_DEFAULT}, {"open", RL_FAIL_OPEN},
    {"closed", RL_FAIL_CLOSED},   {"local", RL_FAIL_LOCAL},
    {"error", RL_FAIL_ERROR},     {nullptr, 0}};
constexpr std::pair<const char *, int32_t> kSwitchWords[] = {
    {"default", 0}, {"on", 1}, {"off", -1}, {nullptr, 0}};
constexpr std::pair<const char *, int32_t> kOnOffWords[] = {
    {"off", 0}, {"on", 1}, {nullptr, 0}};

#define TOLLGATE_OPT(field, since, kind, min, max, words) \
  { #field, since, OptKind::kind, offsetof(rl_options, field), min, max, words }
constexpr int64_t kU32 = UINT32_MAX;
constexpr OptField kOptFields[] = {
    TOLLGATE_OPT(url, 1, text, 0, 0, nullptr),
    TOLLGATE_OPT(max_keys, 1, u64, 0, INT64_MAX, nullptr),
    TOLLGATE_OPT(max_key_len, 1, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(shards, 1, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(connect_timeout_ms, 2, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(timeout_ms, 2, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(key_prefix, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(failure_mode, 2, i32, 0, RL_FAIL_ERROR, kFailureWords),
    TOLLGATE_OPT(local_divisor, 2, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(deny_cache, 2, i32, -1, 1, kSwitchWords),
    TOLLGATE_OPT(deny_cache_size, 2, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(connections, 2, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(reconnect_max_ms, 2, u32, 0, kU32, nullptr),
    TOLLGATE_OPT(username, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(password, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(tls_ca_file, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(tls_ca_dir, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(tls_cert_file, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(tls_key_file, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(tls_server_name, 2, text, 0, 0, nullptr),
    TOLLGATE_OPT(tls_verify, 2, i32, -1, 1, kSwitchWords),
    TOLLGATE_OPT(spin_us, 3, i32, -1, 1000, nullptr),
    TOLLGATE_OPT(shadow, 4, i32, 0, 1, kOnOffWords),
    TOLLGATE_OPT(metrics, 5, i32, -1, 1, kSwitchWords),
    TOLLGATE_OPT(max_async, 6, i32, -1, INT32_MAX, nullptr),
};
#undef TOLLGATE_OPT

// A strict decimal integer: optional '-', digits, nothing else.
bool parse_int(const char *text, int64_t &out) {
  if (text == nullptr || *text == '\0') return false;
  const char *p = text;
  const bool negative = *p == '-';
  if (negative) ++p;
  if (*p == '\0') return false;
  int64_t v = 0;
  for (; *p; ++p) {
    if (*p < '0' || *p > '9') return false;
    if (v > (INT64_MAX - (*p - '0')) / 10) return false;
    v = v * 10 + (*p - '0');
  }
  out = negative ? -v : v;
  return true;
}

Errc set_option(rl_options *opts, const char *name, const char *value) {
  if (opts == nullptr)
    return tollgate::fail(Errc::invalid_arg, "options: NULL pointer");
  if (name == nullptr)
    return tollgate::fail(Errc::invalid_arg, "options: NULL name");
  Errc rc = check_version(opts->version, RL_OPTIONS_VERSION, "rl_options");
  if (rc != Errc::ok) return rc;
  const std::string_view wanted(name);
  const OptField *f = nullptr;
  for (const OptField &o : kOptFields)
    if (wanted == o.name) f = &o;
  if (f == nullptr) {
    std::string known;
    for (const OptField &o : kOptFields)
      known += std::string(known.empty() ? "" : ", ") + o.name;
    if (wanted == "clock" || wanted == "clock_user_data")
      return tollgate::fail(Errc::invalid_arg,
                            "options: " + std::string(wanted) +
                                " is a pointer; set the field directly");
    return tollgate::fail(Errc::invalid_arg, "options: unknown option '" +
                                                 std::string(wanted) +
                                                 "' (known: " + known + ")");
  }
  if (opts->version < f->since)
    return tollgate::fail(Errc::version,
                          "options: " + std::string(f->name) +
                              " needs rl_options version " +
                              std::to_string(f->since) + " (this struct has " +
                              std::to_string(opts->version) + ")");
  char *field = reinterpret_cast<char *>(opts) + f->offset;
  if (f->kind == OptKind::text) {
    std::memcpy(field, &value, sizeof value);
    return Errc::ok;
  }
  // The password is the only secret; no value is echoed for it anyway.
  const bool secret = wanted == "password";
  auto bad = [&](const char *why) {
    std::string m = "options: ";
    m.append(f->name).append(": ");
    if (secret || value == nullptr)
      m.append("the value");
    else
      m.append("'").append(value).append("'");
    m.append(" ").append(why);
    return tollgate::fail(Errc::invalid_arg, std::move(m));
  };
  if (value == nullptr) return bad("is NULL (expected a number)");
  int64_t v = 0;
  bool found = false;
  if (f->words)
    for (auto *w = f->words; w->first; ++w)
      if (std::strcmp(w->first, value) == 0) {
        v = w->second;
        found = true;
      }
  if (!found && !parse_int(value, v))
    return bad(f->words ? "is neither a whole number nor a known word"
                        : "is not a whole number");
  if (v < f->min || v > f->max)
    return bad(("is out of range (" + std::to_string(f->min) + " .. " +
                std::to_string(f->max) + ")")
                   .c_str());
  if (f->kind == OptKind::u64) {
    const uint64_t u = static_cast<uint64_t>(v);
    std::memcpy(field, &u, sizeof u);
  } else if (f->kind == OptKind::u32) {
    const uint32_t u = static_cast<uint32_t>(v);
    std::memcpy(field, &u, sizeof u);
  } else {
    const int32_t i = static_cast<int32_t>(v);
    std::memcpy(field, &i, sizeof i);
  }
  return Errc::ok;
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
    case RL_E_BUSY:
      return "too many async calls waiting for the store (max_async)";
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
    TOLLGATE_NAME(RL_E_BUSY)
#undef TOLLGATE_NAME
    default:
      return nullptr;
  }
}

const char *rl_last_error(void) {
  return tollgate::last_error_message();
}

int rl_policy_create(rl_policy **out, const rl_policy_spec *spec) {
  return guarded([&]() -> Errc {
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    *out = nullptr;
    if (spec == nullptr)
      return tollgate::fail(Errc::invalid_arg, "spec: NULL pointer");
    Errc rc =
        check_version(spec->version, RL_POLICY_SPEC_VERSION, "rl_policy_spec");
    if (rc != Errc::ok) return rc;
    auto p = std::make_unique<rl_policy>();
    rc = tollgate::make_policy(spec->algorithm, spec->limit, spec->period_ms,
                               spec->burst, spec->flags, p->compiled);
    if (rc != Errc::ok) return rc;
    if (spec->version >= 2 && spec->name_len > 0) {
      if (spec->name == nullptr)
        return tollgate::fail(Errc::invalid_arg,
                              "spec: NULL name with non-zero name_len");
      rc = tollgate::set_policy_name(
          p->compiled, std::string_view(spec->name, spec->name_len));
      if (rc != Errc::ok) return rc;
    }
    if (spec->version >= 3) {
      rc = tollgate::set_policy_block(p->compiled, spec->block_ms,
                                      spec->strikes, spec->strikes_period_ms);
      if (rc != Errc::ok) return rc;
    }
    p->compiled.label =
        tollgate::intern_label(tollgate::policy_name(p->compiled));
    *out = p.release();
    return Errc::ok;
  });
}

int rl_policy_parse(rl_policy **out, const char *text, size_t len,
                    size_t *error_offset) {
  return guarded([&]() -> Errc {
    if (error_offset) *error_offset = 0;
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    *out = nullptr;
    if (text == nullptr && len > 0)
      return tollgate::fail(Errc::invalid_arg,
                            "text: NULL pointer with non-zero length");
    auto p = std::make_unique<rl_policy>();
    tollgate::PolicyFields fields;
    size_t offset = 0;
    const Errc rc = tollgate::parse_policy(
        std::string_view(text ? text : "", len), p->compiled, fields, offset);
    if (rc != Errc::ok) {
      if (error_offset) *error_offset = offset;
      return rc;
    }
    p->compiled.label =
        tollgate::intern_label(tollgate::policy_name(p->compiled));
    *out = p.release();
    return Errc::ok;
  });
}

int rl_period_parse(const char *text, size_t len, int64_t *period_ms) {
  return guarded([&]() -> Errc {
    if (period_ms == nullptr)
      return tollgate::fail(Errc::invalid_arg, "period_ms: NULL pointer");
    if (text == nullptr && len > 0)
      return tollgate::fail(Errc::invalid_arg,
                            "text: NULL pointer with non-zero length");
    size_t offset = 0;
    return tollgate::parse_period(std::string_view(text ? text : "", len),
                                  *period_ms, offset);
  });
}

rl_policy *rl_policy_retain(rl_policy *policy) {
  if (policy) policy->refs.fetch_add(1, std::memory_order_relaxed);
  return policy;
}

void rl_policy_release(rl_policy *policy) {
  if (policy && policy->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete policy;
}

int rl_policy_get(const rl_policy *policy, rl_policy_spec *out) {
  return guarded([&]() -> Errc {
    if (policy == nullptr)
      return tollgate::fail(Errc::invalid_arg, "policy: NULL handle");
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    const Errc rc =
        check_version(out->version, RL_POLICY_SPEC_VERSION, "rl_policy_spec");
    if (rc != Errc::ok) return rc;
    const tollgate::Policy &p = policy->compiled;
    out->algorithm = static_cast<int32_t>(p.algorithm);
    out->limit = p.limit;
    out->period_ms = p.period_ms;
    out->burst = p.burst;
    out->flags = p.shadow ? RL_POLICY_SHADOW : 0;
    if (out->version >= 2) {
      out->name = p.name_len ? p.name : nullptr;
      out->name_len = p.name_len;
    }
    if (out->version >= 3) {
      out->block_ms = p.block_us / 1000;
      out->strikes = p.strikes;
      out->strikes_period_ms = p.strike_period_us / 1000;
    }
    return Errc::ok;
  });
}

int rl_options_set(rl_options *opts, const char *name, const char *value) {
  return guarded([&]() -> Errc { return set_option(opts, name, value); });
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
      if (options->version >= 5) config.metrics = options->metrics;
      if (options->version >= 6) config.max_async = options->max_async;
    }
    auto handle = std::make_unique<rl_limiter>();
    if (options != nullptr && options->version >= 4) {
      if (options->shadow != 0 && options->shadow != 1)
        return tollgate::fail(Errc::invalid_arg,
                              "options: shadow must be 0 or 1 (got " +
                                  std::to_string(options->shadow) + ")");
      handle->shadow = options->shadow == 1;
    }
    Errc rc = tollgate::Limiter::create(config, handle->impl);
    if (rc != Errc::ok) return rc;
    *out = handle.release();
    return Errc::ok;
  });
}

void rl_destroy(rl_limiter *limiter) {
  if (limiter == nullptr) return;
  try {
    // Iterators still open lose their store state now (it points into the
    // limiter); their handles stay valid and answer RL_E_CLOSED.
    {
      std::lock_guard<std::mutex> lock(limiter->keys->mu);
      for (rl_keys *it : limiter->keys->open) {
        std::lock_guard<std::mutex> it_lock(it->mu);
        it->impl.reset();
      }
      limiter->keys->open.clear();
    }
    delete limiter;
  } catch (...) {
    // Destructors do not throw; nothing may cross the boundary regardless.
  }
}

int rl_check(rl_limiter *limiter, rl_decision *out, const char *key,
             size_t key_len, rl_policy *const *policies, size_t n_policies,
             int64_t cost) {
  return guarded([&]() -> Errc {
    Errc rc = check_decision_out(limiter, out);
    if (rc != Errc::ok) return rc;
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    rc = prepare(limiter, key, key_len, policies, n_policies, converted);
    if (rc != Errc::ok) return rc;
    tollgate::Decision d;
    const std::string_view k(key ? key : "", key_len);
    if (!list_answer(limiter, &k, 1, converted[0], cost, d))
      rc = limiter->impl->check(
          k, std::span<const tollgate::Policy>(converted, n_policies), cost, d);
    if (rc == Errc::ok) {
      settle(limiter, d, label_of(d, converted, n_policies));
      fill(*out, d);
    }
    return rc;
  });
}

int rl_check_async(rl_limiter *limiter, const char *key, size_t key_len,
                   rl_policy *const *policies, size_t n_policies, int64_t cost,
                   rl_check_cb callback, void *user_data) {
  return guarded([&]() -> Errc {
    if (callback == nullptr) {
      if (limiter) limiter->impl->count_error();
      return tollgate::fail(Errc::invalid_arg, "callback: NULL");
    }
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    Errc rc = prepare(limiter, key, key_len, policies, n_policies, converted);
    if (rc != Errc::ok) return rc;
    auto call = std::make_unique<AsyncCall>(
        AsyncCall{callback, user_data, limiter, Labels(converted, n_policies)});
    const std::string_view k(key ? key : "", key_len);
    tollgate::Decision listed;
    if (list_answer(limiter, &k, 1, converted[0], cost, listed)) {
      async_done(call.release(), Errc::ok, &listed);  // inline, as documented
      return Errc::ok;
    }
    rc = limiter->impl->check_async(
        k, std::span<const tollgate::Policy>(converted, n_policies), cost,
        async_done, call.get());
    // On success the completion owns (and frees) the call.
    if (rc == Errc::ok) call.release();
    return rc;
  });
}

int rl_check_keys(rl_limiter *limiter, rl_decision *out,
                  const char *const *keys, const size_t *key_lens,
                  size_t n_keys, rl_policy *const *policies,
                  const size_t *n_policies, int64_t cost) {
  return guarded([&]() -> Errc {
    Errc rc = check_decision_out(limiter, out);
    if (rc != Errc::ok) return rc;
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    tollgate::Limiter::KeyPolicies items[tollgate::kMaxKeysPerCheck];
    rc = prepare_keys(limiter, keys, key_lens, n_keys, policies, n_policies,
                      converted, items);
    if (rc != Errc::ok) return rc;
    tollgate::Decision d;
    std::string_view ks[tollgate::kMaxKeysPerCheck];
    for (size_t j = 0; j < n_keys; ++j) ks[j] = items[j].key;
    if (!list_answer(limiter, ks, n_keys, converted[0], cost, d))
      rc = limiter->impl->check_keys(
          std::span<const tollgate::Limiter::KeyPolicies>(items, n_keys), cost,
          d);
    if (rc == Errc::ok) {
      settle(limiter, d, Labels(converted, total_policies(n_policies, n_keys)));
      fill(*out, d);
    }
    return rc;
  });
}

int rl_check_keys_async(rl_limiter *limiter, const char *const *keys,
                        const size_t *key_lens, size_t n_keys,
                        rl_policy *const *policies, const size_t *n_policies,
                        int64_t cost, rl_check_cb callback, void *user_data) {
  return guarded([&]() -> Errc {
    if (callback == nullptr) {
      if (limiter) limiter->impl->count_error();
      return tollgate::fail(Errc::invalid_arg, "callback: NULL");
    }
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    tollgate::Limiter::KeyPolicies items[tollgate::kMaxKeysPerCheck];
    Errc rc = prepare_keys(limiter, keys, key_lens, n_keys, policies,
                           n_policies, converted, items);
    if (rc != Errc::ok) return rc;
    auto call = std::make_unique<AsyncCall>(
        AsyncCall{callback, user_data, limiter,
                  Labels(converted, total_policies(n_policies, n_keys))});
    std::string_view ks[tollgate::kMaxKeysPerCheck];
    for (size_t j = 0; j < n_keys; ++j) ks[j] = items[j].key;
    tollgate::Decision listed;
    if (list_answer(limiter, ks, n_keys, converted[0], cost, listed)) {
      async_done(call.release(), Errc::ok, &listed);
      return Errc::ok;
    }
    rc = limiter->impl->check_keys_async(
        std::span<const tollgate::Limiter::KeyPolicies>(items, n_keys), cost,
        async_done, call.get());
    if (rc == Errc::ok) call.release();
    return rc;
  });
}

int rl_check_wait(rl_limiter *limiter, rl_decision *out, const char *key,
                  size_t key_len, rl_policy *const *policies, size_t n_policies,
                  int64_t cost, int64_t max_wait_ms) {
  return guarded([&]() -> Errc {
    Errc rc = check_decision_out(limiter, out);
    if (rc != Errc::ok) return rc;
    rc = tollgate::check_max_wait(max_wait_ms);
    if (rc != Errc::ok) {
      limiter->impl->count_error();
      return rc;
    }
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    rc = prepare(limiter, key, key_len, policies, n_policies, converted);
    if (rc != Errc::ok) return rc;
    const std::string_view k(key ? key : "", key_len);
    const std::span<const tollgate::Policy> ps(converted, n_policies);
    tollgate::Decision d;
    rc = tollgate::wait_until_allowed(
        max_wait_ms, tollgate::RetryHint::exact,
        [&](tollgate::WaitTry &t) {
          Errc e = Errc::ok;
          if (!list_answer(limiter, &k, 1, converted[0], cost, d))
            e = limiter->impl->check(k, ps, cost, d);
          shadow_flip(limiter, d);
          t.done = d.allowed;
          t.retry_ms = ceil_ms(d.retry_after_us);
          return e;
        },
        [](tollgate::Steady::time_point until) {
          std::this_thread::sleep_until(until);
        });
    if (rc == Errc::ok) {
      settle(limiter, d, label_of(d, converted, n_policies));
      fill(*out, d);
    }
    return rc;
  });
}

int rl_set_list(rl_limiter *limiter, int list, const char *const *entries,
                const size_t *entry_lens, size_t n_entries) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    if (list != RL_LIST_ALLOW && list != RL_LIST_DENY)
      return tollgate::fail(Errc::invalid_arg,
                            "list: expected RL_LIST_ALLOW or RL_LIST_DENY");
    if (n_entries > RL_MAX_LIST_ENTRIES)
      return tollgate::fail(
          Errc::invalid_arg,
          "entries: at most " + std::to_string(RL_MAX_LIST_ENTRIES) +
              " per list (got " + std::to_string(n_entries) + ")");
    if (n_entries > 0 && (entries == nullptr || entry_lens == nullptr))
      return tollgate::fail(Errc::invalid_arg,
                            "entries, entry_lens: NULL array");
    std::vector<std::string_view> views;
    views.reserve(n_entries);
    for (size_t i = 0; i < n_entries; ++i) {
      if (entries[i] == nullptr && entry_lens[i] > 0)
        return tollgate::fail(Errc::invalid_arg,
                              "entries[" + std::to_string(i) +
                                  "]: NULL pointer with non-zero length");
      views.emplace_back(entries[i] ? entries[i] : "", entry_lens[i]);
    }
    tollgate::KeyList parsed;
    const Errc rc =
        tollgate::KeyList::parse(views, limiter->impl->max_key_len(), parsed);
    if (rc != Errc::ok) return rc;
    std::lock_guard<std::mutex> lock(limiter->lists_mu);
    auto next = std::make_shared<rl_limiter::Lists>();
    if (limiter->lists) *next = *limiter->lists;
    (list == RL_LIST_ALLOW ? next->allow : next->deny) = std::move(parsed);
    const bool any = !next->allow.empty() || !next->deny.empty();
    limiter->lists = any ? std::move(next) : nullptr;
    limiter->any_list.store(any, std::memory_order_release);
    return Errc::ok;
  });
}

int rl_reset(rl_limiter *limiter, const char *key, size_t key_len) {
  return guarded([&]() -> Errc {
    const Errc rc = check_admin_key(limiter, key, key_len);
    if (rc != Errc::ok) return rc;
    return limiter->impl->reset(std::string_view(key ? key : "", key_len));
  });
}

int rl_block(rl_limiter *limiter, const char *key, size_t key_len,
             int64_t duration_ms) {
  return guarded([&]() -> Errc {
    const Errc rc = check_admin_key(limiter, key, key_len);
    if (rc != Errc::ok) return rc;
    return limiter->impl->block(std::string_view(key ? key : "", key_len),
                                duration_ms);
  });
}

int rl_unblock(rl_limiter *limiter, const char *key, size_t key_len) {
  return guarded([&]() -> Errc {
    const Errc rc = check_admin_key(limiter, key, key_len);
    if (rc != Errc::ok) return rc;
    return limiter->impl->unblock(std::string_view(key ? key : "", key_len));
  });
}

namespace {

// The limiter and lease pointers of rl_lease_renew and rl_lease_release.
Errc check_lease(rl_limiter *limiter, const rl_lease *lease) {
  if (limiter == nullptr)
    return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
  if (lease == nullptr) {
    limiter->impl->count_error();
    return tollgate::fail(Errc::invalid_arg, "lease: NULL handle");
  }
  if (lease->limiter_serial != limiter->serial) {
    limiter->impl->count_error();
    return tollgate::fail(Errc::invalid_arg,
                          "lease: acquired through another limiter");
  }
  return Errc::ok;
}

}  // namespace

int rl_lease_acquire(rl_limiter *limiter, const char *key, size_t key_len,
                     int64_t max_in_flight, int64_t ttl_ms, rl_lease **lease,
                     rl_lease_info *info) {
  return guarded([&]() -> Errc {
    if (lease == nullptr)
      return tollgate::fail(Errc::invalid_arg, "lease: NULL out pointer");
    *lease = nullptr;
    Errc rc = check_admin_key(limiter, key, key_len);
    if (rc != Errc::ok) return rc;
    if (info != nullptr) {
      rc = check_version(info->version, RL_LEASE_INFO_VERSION, "rl_lease_info");
      if (rc != Errc::ok) return rc;
    }
    tollgate::LeaseOutcome out;
    tollgate::Source source = tollgate::Source::store;
    auto made = std::make_unique<rl_lease>();
    made->limiter_serial = limiter->serial;
    rc = limiter->impl->lease_acquire(std::string_view(key ? key : "", key_len),
                                      max_in_flight, ttl_ms, out, source,
                                      made->lease);
    if (rc != Errc::ok) return rc;
    if (info != nullptr) {
      info->acquired = out.acquired ? 1 : 0;
      info->in_flight = out.in_flight;
      info->max_in_flight = max_in_flight;
      info->retry_after_ms =
          out.acquired
              ? 0
              : std::max<int64_t>(1, (out.retry_after_us + 999) / 1000);
      info->source = static_cast<int32_t>(source);
      info->reserved = 0;
    }
    if (out.acquired) *lease = made.release();
    return Errc::ok;
  });
}

int rl_lease_acquire_wait(rl_limiter *limiter, const char *key, size_t key_len,
                          int64_t max_in_flight, int64_t ttl_ms,
                          int64_t max_wait_ms, rl_lease **lease,
                          rl_lease_info *info) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    const Errc bad = tollgate::check_max_wait(max_wait_ms);
    if (bad != Errc::ok) {
      limiter->impl->count_error();
      return bad;
    }
    uint64_t seen = 0;
    // The result of the last try: its code (and message) is the answer.
    return tollgate::wait_until_allowed(
        max_wait_ms, tollgate::RetryHint::at_most,
        [&](tollgate::WaitTry &t) {
          seen = limiter->impl->release_count();
          rl_lease_info local = RL_LEASE_INFO_INIT;
          rl_lease_info *i = info ? info : &local;
          const int rc = rl_lease_acquire(limiter, key, key_len, max_in_flight,
                                          ttl_ms, lease, i);
          t.done = rc == RL_OK && i->acquired;
          t.retry_ms = i->retry_after_ms;
          return static_cast<Errc>(rc);
        },
        [&](tollgate::Steady::time_point until) {
          limiter->impl->sleep_until_release(until, seen);
        });
  });
}

int rl_lease_renew(rl_limiter *limiter, rl_lease *lease, int64_t ttl_ms) {
  return guarded([&]() -> Errc {
    const Errc rc = check_lease(limiter, lease);
    if (rc != Errc::ok) return rc;
    if (lease->released)
      return tollgate::fail(Errc::not_found,
                            "lease: not held (it was released)");
    return limiter->impl->lease_renew(lease->lease, ttl_ms);
  });
}

int rl_lease_release(rl_limiter *limiter, rl_lease *lease, int *was_held) {
  return guarded([&]() -> Errc {
    if (was_held != nullptr) *was_held = 0;
    const Errc rc = check_lease(limiter, lease);
    if (rc != Errc::ok) return rc;
    if (lease->released) return Errc::ok;  // a double release: harmless
    bool held = false;
    const Errc r = limiter->impl->lease_release(lease->lease, held);
    if (r != Errc::ok) return r;
    lease->released = true;
    if (was_held != nullptr) *was_held = held ? 1 : 0;
    return Errc::ok;
  });
}

void rl_lease_free(rl_lease *lease) {
  delete lease;
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
    if (out->version >= 4) {
      out->shadow_denied = h.shadow_denied;
      out->list_allowed = h.list_allowed;
      out->list_denied = h.list_denied;
    }
    if (out->version >= 5) {
      out->async_pending = h.async_pending;
      out->async_refused = h.async_refused;
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

int rl_set_log_handler(rl_limiter *limiter, int max_level, rl_log_fn handler,
                       void *user_data) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    if (max_level < RL_LOG_ERROR || max_level > RL_LOG_DEBUG)
      return tollgate::fail(Errc::invalid_arg,
                            "max_level: expected RL_LOG_ERROR (1) to "
                            "RL_LOG_DEBUG (4), got " +
                                std::to_string(max_level));
    limiter->impl->log().set(handler, user_data, max_level);
    return Errc::ok;
  });
}

// A metrics snapshot: the series, read once, and what rl_metric points to.
struct rl_metrics {
  std::vector<tollgate::MetricSeries> series;
  size_t next = 0;
};

int rl_metrics_read(rl_limiter *limiter, rl_metrics **out) {
  return guarded([&]() -> Errc {
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    *out = nullptr;
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    auto m = std::make_unique<rl_metrics>();
    m->series = limiter->impl->metrics();
    *out = m.release();
    return Errc::ok;
  });
}

int rl_metrics_next(rl_metrics *metrics, rl_metric *out) {
  return guarded([&]() -> Errc {
    if (metrics == nullptr)
      return tollgate::fail(Errc::invalid_arg, "metrics: NULL handle");
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    Errc rc = check_version(out->version, RL_METRIC_VERSION, "rl_metric");
    if (rc != Errc::ok) return rc;
    if (metrics->next >= metrics->series.size())
      return tollgate::fail(Errc::done, "metrics: no more series");
    const tollgate::MetricSeries &s = metrics->series[metrics->next++];
    const rl_metric fresh = RL_METRIC_INIT;
    *out = fresh;
    out->type = static_cast<int32_t>(s.type);
    out->name = s.name;
    out->help = s.help;
    const size_t n = std::min<size_t>(s.labels.size(), RL_METRIC_MAX_LABELS);
    out->n_labels = static_cast<uint32_t>(n);
    for (size_t i = 0; i < n; ++i) {
      out->label_names[i] = s.labels[i].first;
      out->label_values[i] = s.labels[i].second.c_str();
    }
    out->value = s.value;
    if (s.type == tollgate::MetricType::histogram) {
      out->n_buckets = s.cumulative.size();
      out->bucket_bounds = tollgate::rtt_bounds_seconds();
      out->bucket_counts = s.cumulative.data();
      out->count = s.count;
      out->sum = s.sum;
    }
    return Errc::ok;
  });
}

void rl_metrics_free(rl_metrics *metrics) {
  delete metrics;
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

int rl_loop_open(rl_limiter *limiter, int *fd) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    if (fd == nullptr) return tollgate::fail(Errc::invalid_arg, "fd: NULL");
    return limiter->impl->loop_open(*fd);
  });
}

namespace {

int loop_turn(rl_limiter *limiter, int64_t *next_us, bool idle) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    int64_t next = -1;
    const Errc rc = limiter->impl->loop_turn(next, idle);
    if (next_us) *next_us = next;
    return rc;
  });
}

}  // namespace

int rl_loop_turn(rl_limiter *limiter, int64_t *next_us) {
  return loop_turn(limiter, next_us, false);
}

int rl_loop_turn_idle(rl_limiter *limiter, int64_t *next_us) {
  return loop_turn(limiter, next_us, true);
}

int rl_loop_close(rl_limiter *limiter) {
  return guarded([&]() -> Errc {
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    return limiter->impl->loop_close();
  });
}

int rl_keys_open(rl_limiter *limiter, rl_policy *const *policies,
                 size_t n_policies, rl_keys **out) {
  return rl_keys_open_match(limiter, nullptr, 0, policies, n_policies, out);
}

int rl_keys_open_match(rl_limiter *limiter, const char *pattern,
                       size_t pattern_len, rl_policy *const *policies,
                       size_t n_policies, rl_keys **out) {
  return guarded([&]() -> Errc {
    if (out == nullptr)
      return tollgate::fail(Errc::invalid_arg, "out: NULL pointer");
    *out = nullptr;
    if (limiter == nullptr)
      return tollgate::fail(Errc::invalid_arg, "limiter: NULL handle");
    if (pattern == nullptr && pattern_len > 0)
      return tollgate::fail(Errc::invalid_arg,
                            "pattern: NULL pointer with non-zero length");
    if (pattern_len > RL_MAX_PATTERN_LEN)
      return tollgate::fail(Errc::invalid_arg,
                            "pattern: " + std::to_string(pattern_len) +
                                " bytes; at most " +
                                std::to_string(RL_MAX_PATTERN_LEN));
    tollgate::Policy converted[tollgate::kMaxPoliciesPerCheck];
    Errc rc = convert_policies(policies, n_policies, converted);
    if (rc != Errc::ok) return rc;
    auto it = std::make_unique<rl_keys>();
    rc = limiter->impl->open_keys(
        std::span<const tollgate::Policy>(converted, n_policies),
        std::string_view(pattern ? pattern : "", pattern_len), it->impl);
    if (rc != Errc::ok) return rc;
    it->registry = limiter->keys;
    {
      std::lock_guard<std::mutex> lock(it->registry->mu);
      it->registry->open.push_back(it.get());
    }
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
    // Versions 1 and 2 embedded older, smaller policy specs: their layouts
    // cannot be written.
    if (out->version == 1 || out->version == 2)
      return tollgate::fail(Errc::version,
                            "rl_key_info: version " +
                                std::to_string(out->version) +
                                " is not supported (this library knows 3); "
                                "initialise it with RL_KEY_INFO_INIT");
    Errc rc = check_version(out->version, RL_KEY_INFO_VERSION, "rl_key_info");
    if (rc != Errc::ok) return rc;
    std::lock_guard<std::mutex> lock(it->mu);
    if (!it->impl)
      return tollgate::fail(Errc::closed,
                            "iterator: its limiter was destroyed");
    const tollgate::redis::KeyEntry *e = nullptr;
    rc = it->impl->next(e);
    if (rc != Errc::ok) return rc;
    out->key = e->key.data();
    out->key_len = e->key.size();
    const rl_policy_spec fresh = RL_POLICY_SPEC_INIT;
    out->policy = fresh;
    out->policy.algorithm = static_cast<int32_t>(e->policy.algorithm);
    out->policy.limit = e->policy.limit;
    out->policy.period_ms = e->policy.period_ms;
    out->policy.burst = e->policy.burst;
    out->policy.name = e->policy.name_len ? e->policy.name : nullptr;
    out->policy.name_len = e->policy.name_len;
    out->policy.block_ms = e->policy.block_us / 1000;
    out->policy.strikes = e->policy.strikes;
    out->policy.strikes_period_ms = e->policy.strike_period_us / 1000;
    out->policy_index = e->index;
    out->remaining = e->remaining;
    out->reset_after_ms = ceil_ms(e->reset_after_us);
    return Errc::ok;
  });
}

void rl_keys_free(rl_keys *it) {
  if (it == nullptr) return;
  try {
    {
      std::lock_guard<std::mutex> lock(it->registry->mu);
      auto &open = it->registry->open;
      open.erase(std::remove(open.begin(), open.end(), it), open.end());
    }
    delete it;
  } catch (...) {
    // Nothing may cross the boundary.
  }
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
    if (rc != Errc::ok) return rc;
    if (name == nullptr && name_len > 0)
      return tollgate::fail(Errc::invalid_arg,
                            "headers: NULL name with a non-zero length");
    if (name_len > 100)
      return tollgate::fail(Errc::invalid_arg,
                            "headers: the policy name exceeds 100 bytes");
    const tollgate::Policy &p = policy->compiled;
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
