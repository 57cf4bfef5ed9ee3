// tollgate.node: the Node.js addon over the tollgate C ABI.
//
// It includes tollgate.h and nothing else of tollgate (the build puts only
// capi/include on its include path). lib/index.js validates arguments and
// builds the JS objects; this file holds what must be native:
//
//   - Policies are validated once (rl_headers_format checks a policy with
//     the library's own rules) and interned in a per-instance table; a check
//     passes a policy id, not an object.
//   - The synchronous check (memory store) writes its decision into a
//     Float64Array shared with JS and returns the status: no object is made
//     here on the hot path.
//   - Redis checks go through rl_check_async. With `driver: 'loop'` the
//     limiter's JS thread drives the Redis connection from its own libuv
//     loop (rl_loop_open): a uv_poll handle watches the descriptor the
//     library gives, a uv_timer handle its timer, and each turn
//     (rl_loop_turn) reads the replies, whose completions queue their
//     results; the turn then settles the promises, inside a callback scope
//     (microtasks run after it): no thread hand-off. Otherwise (the
//     default, and TLS) the completion runs on tollgate's I/O thread: it
//     queues the result under a mutex and, only when the queue was empty,
//     pokes ONE thread-safe function per limiter (non-blocking). On the JS
//     thread that function drains the whole queue and settles the promises.
//     No libuv threadpool work per check.
//   - checkKeys (several keys in one decision) goes through
//     rl_check_keys_async the same way, on every store (the memory store
//     answers inline, before the call returns).
//   - reset, block, unblock, ping, keys-next, the lease calls and
//     rl_destroy block, so they run as Napi::AsyncWorkers on the libuv
//     threadpool (the memory store's reset, block, unblock and lease calls
//     do no I/O and run inline); close() waits for the ones in progress (ABI
//     rule: rl_destroy never runs concurrently with another call).
//   - A lease handle (rl_lease) is owned by a NativeLease object and by the
//     renew or release in progress on it, and freed with the last of them
//     (rl_lease_free runs before or after rl_destroy: both are allowed).
//   - metrics() walks one rl_metrics snapshot (no I/O) into plain objects.
//   - The log hook (rl_set_log_handler): the handler, called on tollgate's
//     I/O thread or on whichever thread saw the event, only queues the
//     message and pokes a thread-safe function of the limiter's (never JS
//     off the JS thread, nor JS inside a C call on it); on the JS thread the
//     queue is drained into lib/index.js's dispatcher, which the addon holds
//     weakly (the JS Limiter holds it). Removing the handler, close() and
//     every destroy path turn the C handler off first (after
//     rl_set_log_handler returns it is never called again) and drop what is
//     queued, so no message reaches JS after that. The thread-safe function
//     never keeps the event loop alive.
//
// Context-aware: all state hangs off the instance data (worker_threads each
// load their own instance); no static JS handles.
#include <napi.h>
#if TOLLGATE_NODE_UV
#include <uv.h>
#endif

#include <tollgate.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

constexpr size_t kMaxPolicies = RL_MAX_POLICIES;
constexpr int kDoneSlots = 9;  // slot, then the kOutSlots values
constexpr int kOutSlots = 8;   // allowed, limit, remaining, reset, retry,
                               // source, policy_index, shadow

// ---- Per-instance data -----------------------------------------------------

struct LimiterState;

struct Addon {
  // JS factories set by lib/index.js: (code, message) -> Error and
  // (allowed, limit, remaining, resetAfter, retryAfter, source, index) ->
  // frozen Decision.
  Napi::FunctionReference make_error;
  Napi::FunctionReference make_decision;
  // Async checks settle in JS: settle(count) resolves the promises of the
  // first `count` entries of `done` (kDoneSlots values each: the promise's
  // slot, then the decision as in `out`); settleError(slot, error) rejects.
  Napi::FunctionReference settle;
  Napi::FunctionReference settle_error;
  Napi::Reference<Napi::Float64Array> done_ref;
  double *done = nullptr;
  size_t done_cap = 0;  // entries
  // The buffers shared with JS: check results and multi-policy ids.
  Napi::Reference<Napi::Float64Array> out_ref;
  Napi::Reference<Napi::Int32Array> ids_ref;
  double *out = nullptr;
  int32_t *ids = nullptr;
  // The synchronous check's numeric arguments (handle, policy id, cost),
  // written by JS before each call: no napi call reads them.
  Napi::Reference<Napi::Float64Array> in_ref;
  double *in = nullptr;
  // The UTF-8 bytes of the last string key the synchronous check converted
  // (lib/index.js remembers which string): check() without a key uses them,
  // so a hot key is not converted again on every call.
  char key_cache[256];
  size_t key_cache_len = 0;
  bool key_cache_valid = false;
  // Interned policy handles: id -> handle (one reference each, released
  // with the environment), every field of the spec (PolicyKey) -> id. Checks
  // copy the pointers, so the table may grow mid-check (a JS clock may
  // compile a policy) without moving a policy under a running call.
  // (algorithm, limit, period, burst, name, block, strikes, strikes period,
  // flags)
  using PolicyKey = std::tuple<int32_t, int64_t, int64_t, int64_t, std::string,
                               int64_t, int64_t, int64_t, uint32_t>;
  std::vector<rl_policy *> policies;
  std::map<PolicyKey, int32_t> policy_ids;
  Napi::FunctionReference limiter_ctor;
  Napi::FunctionReference keys_ctor;
  Napi::FunctionReference lease_ctor;
  // Open limiters by handle: the hot path passes a small integer instead of
  // unwrapping an object (napi_unwrap is a private-property lookup).
  std::vector<LimiterState *> handles;
  std::vector<int32_t> free_handles;

  Addon() = default;
  Addon(const Addon &) = delete;
  Addon &operator=(const Addon &) = delete;
  // Policies are independent of limiters: released in any order.
  ~Addon() {
    for (rl_policy *p : policies) rl_policy_release(p);
  }
};

Addon &addon(Napi::Env env) {
  return *env.GetInstanceData<Addon>();
}

// ---- Errors ----------------------------------------------------------------

std::string last_error_text(int code) {
  const char *m = rl_last_error();
  return (m && *m) ? std::string(m) : std::string(rl_strerror(code));
}

// The TollgateError subclass for `code` (built by lib/errors.js).
Napi::Value make_error(Napi::Env env, int code, const std::string &message) {
  Addon &a = addon(env);
  const std::string text = message.empty() ? rl_strerror(code) : message;
  if (a.make_error.IsEmpty()) return Napi::Error::New(env, text).Value();
  return a.make_error.Call(
      {Napi::Number::New(env, code), Napi::String::New(env, text)});
}

[[noreturn]] void throw_code(Napi::Env env, int code,
                             const std::string &message) {
  throw Napi::Error(env, make_error(env, code, message));
}

[[noreturn]] void throw_type(Napi::Env env, const std::string &message) {
  throw Napi::TypeError::New(env, message);
}

// ---- Keys ------------------------------------------------------------------

// A key argument: a string (as UTF-8) or bytes (Buffer / Uint8Array). The
// bytes are borrowed from JS and valid until JS runs again.
class KeyArg {
 public:
  KeyArg(Napi::Env env, napi_value v) {
    // A string first, without a napi_typeof call: anything else answers
    // napi_string_expected and nothing else.
    size_t n = 0;
    const napi_status s =
        napi_get_value_string_utf8(env, v, small_, sizeof small_, &n);
    if (s == napi_ok) {
      // Truncation stops before a partial character, so up to 3 bytes
      // short of the buffer may still be a cut string: check again then.
      if (n + 4 < sizeof small_) {
        data_ = small_;
        len_ = n;
        small_string_ = true;
        return;
      }
      NAPI_THROW_IF_FAILED_VOID(
          env, napi_get_value_string_utf8(env, v, nullptr, 0, &n));
      big_.resize(n + 1);
      NAPI_THROW_IF_FAILED_VOID(
          env, napi_get_value_string_utf8(env, v, big_.data(), n + 1, &n));
      data_ = big_.data();
      len_ = n;
      return;
    }
    if (s != napi_string_expected) NAPI_THROW_IF_FAILED_VOID(env, s);
    bool is_ta = false;
    NAPI_THROW_IF_FAILED_VOID(env, napi_is_typedarray(env, v, &is_ta));
    if (is_ta) {
      napi_typedarray_type type;
      size_t length = 0;
      void *data = nullptr;
      NAPI_THROW_IF_FAILED_VOID(
          env, napi_get_typedarray_info(env, v, &type, &length, &data, nullptr,
                                        nullptr));
      if (type == napi_uint8_array) {
        data_ = static_cast<const char *>(data);
        len_ = length;
        if (data_ == nullptr) data_ = small_;  // empty: rl_* rejects it
        return;
      }
    }
    throw_type(env, "key must be a string, Buffer or Uint8Array");
  }
  // A copy of `n` bytes (n < 252) that are known to be a string's UTF-8.
  KeyArg(const char *bytes, size_t n) : len_(n), small_string_(true) {
    std::memcpy(small_, bytes, n);
  }
  KeyArg(const KeyArg &) = delete;
  KeyArg &operator=(const KeyArg &) = delete;

  const char *data() const { return data_; }
  size_t size() const { return len_; }
  // A string converted whole into the inline buffer (not bytes borrowed
  // from JS, not a long string).
  bool small_string() const { return small_string_; }

 private:
  char small_[256];
  std::vector<char> big_;
  const char *data_ = small_;
  size_t len_ = 0;
  bool small_string_ = false;
};

// ---- Policies --------------------------------------------------------------

int64_t int64_arg(Napi::Env env, const Napi::Value &v, const char *what) {
  if (!v.IsNumber()) throw_type(env, std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d)
    throw_code(env, RL_E_INVALID_ARG,
               std::string(what) + ": must be an integer");
  if (std::fabs(d) > 9007199254740992.0)
    throw_code(env, RL_E_OVERFLOW,
               std::string(what) + ": beyond 2^53 (not exact in JS)");
  return static_cast<int64_t>(d);
}

// compilePolicy(algorithm, limit, periodMs, burst, name?, blockMs?, strikes?,
// strikesPeriodMs?, shadow?) -> id; name is a string (validated by the
// library) or undefined for none; the block's fields are integers (0 or
// undefined for none; the library checks them and how they combine); shadow
// true sets RL_POLICY_SHADOW (docs/algorithms.md, "Shadow mode").
Napi::Value CompilePolicy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  rl_policy_spec p = RL_POLICY_SPEC_INIT;
  p.algorithm = static_cast<int32_t>(int64_arg(env, info[0], "algorithm"));
  p.limit = int64_arg(env, info[1], "limit");
  p.period_ms = int64_arg(env, info[2], "period");
  p.burst = int64_arg(env, info[3], "burst");
  std::string name;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    if (!info[4].IsString()) throw_type(env, "name must be a string");
    name = info[4].As<Napi::String>().Utf8Value();
    p.name = name.data();
    p.name_len = name.size();
  }
  const auto opt_int64 = [&](size_t i, const char *what) -> int64_t {
    if (info.Length() <= i || info[i].IsUndefined()) return 0;
    return int64_arg(env, info[i], what);
  };
  p.block_ms = opt_int64(5, "block");
  p.strikes = opt_int64(6, "strikes");
  p.strikes_period_ms = opt_int64(7, "strikesPeriod");
  if (info.Length() > 8 && info[8].ToBoolean().Value())
    p.flags = RL_POLICY_SHADOW;
  Addon &a = addon(env);
  const Addon::PolicyKey key{
      p.algorithm, p.limit,   p.period_ms,         p.burst, name,
      p.block_ms,  p.strikes, p.strikes_period_ms, p.flags};
  auto it = a.policy_ids.find(key);
  if (it != a.policy_ids.end()) return Napi::Number::New(env, it->second);
  if (a.policies.size() >= (size_t{1} << 30))
    throw_code(env, RL_E_NOMEM, "policies: too many distinct policies");
  rl_policy *h = nullptr;
  const int rc = rl_policy_create(&h, &p);
  if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
  const int32_t id = static_cast<int32_t>(a.policies.size());
  try {
    a.policies.push_back(h);
  } catch (...) {
    rl_policy_release(h);
    throw;
  }
  a.policy_ids.emplace(key, id);
  return Napi::Number::New(env, id);
}

// parsePolicy(text) -> { algorithm, limit, periodMs, burst, name, blockMs,
// strikes, strikesPeriodMs, shadow } (name, the block's fields and shadow
// only when set):
// the library's one policy syntax ("100/h", "10/s burst=20",
// "5000/d sliding_window", "5/m name=login block=15m strikes=3/h").
Napi::Value ParsePolicy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_type(env, "policy text must be a string");
  const std::string text = info[0].As<Napi::String>().Utf8Value();
  rl_policy *h = nullptr;
  size_t offset = 0;
  int rc = rl_policy_parse(&h, text.data(), text.size(), &offset);
  if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
  rl_policy_spec s = RL_POLICY_SPEC_INIT;
  rc = rl_policy_get(h, &s);
  if (rc != RL_OK) {
    rl_policy_release(h);
    throw_code(env, rc, last_error_text(rc));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("algorithm", s.algorithm);
  o.Set("limit", static_cast<double>(s.limit));
  o.Set("periodMs", static_cast<double>(s.period_ms));
  o.Set("burst", static_cast<double>(s.burst));
  // s.name points into the handle: copied before the handle goes.
  if (s.name_len != 0)
    o.Set("name", Napi::String::New(env, s.name, s.name_len));
  if (s.block_ms != 0) o.Set("blockMs", static_cast<double>(s.block_ms));
  if (s.strikes != 0) o.Set("strikes", static_cast<double>(s.strikes));
  if (s.strikes_period_ms != 0)
    o.Set("strikesPeriodMs", static_cast<double>(s.strikes_period_ms));
  if ((s.flags & RL_POLICY_SHADOW) != 0) o.Set("shadow", true);
  rl_policy_release(h);  // JS interns its own handle via compilePolicy
  return o;
}

// parsePeriod(text) -> milliseconds, by the library's period syntax.
Napi::Value ParsePeriod(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_type(env, "period text must be a string");
  const std::string text = info[0].As<Napi::String>().Utf8Value();
  int64_t ms = 0;
  const int rc = rl_period_parse(text.data(), text.size(), &ms);
  if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
  return Napi::Number::New(env, static_cast<double>(ms));
}

// The policies of a check: `pid` >= 0 is one policy id; -n means n ids in
// the shared Int32Array. Returns the count.
size_t gather_policies(Napi::Env env, Addon &a, int32_t pid,
                       rl_policy *(&ps)[kMaxPolicies]) {
  const size_t table = a.policies.size();
  if (pid >= 0) {
    if (static_cast<size_t>(pid) >= table)
      throw_type(env, "policy: not a compiled policy");
    ps[0] = a.policies[static_cast<size_t>(pid)];
    return 1;
  }
  const size_t n = static_cast<size_t>(-static_cast<int64_t>(pid));
  if (n > kMaxPolicies || a.ids == nullptr)
    throw_code(env, RL_E_INVALID_ARG,
               "policies: expected 1 to " + std::to_string(kMaxPolicies) +
                   " policies");
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = a.ids[i];
    if (id < 0 || static_cast<size_t>(id) >= table)
      throw_type(env, "policy: not a compiled policy");
    ps[i] = a.policies[static_cast<size_t>(id)];
  }
  return n;
}

void write_decision(double *out, const rl_decision &d) {
  out[0] = d.allowed ? 1 : 0;
  out[1] = static_cast<double>(d.limit);
  out[2] = static_cast<double>(d.remaining);
  out[3] = static_cast<double>(d.reset_after_ms);
  out[4] = static_cast<double>(d.retry_after_ms);
  out[5] = d.source;
  out[6] = d.policy_index;
  out[7] = d.shadow ? 1 : 0;
}

// ---- Log hook
// ----------------------------------------------------------------

// At most this many messages wait for the JS thread (a blocked event loop
// loses the rest; episodes are logged once each, so this is never reached
// in practice).
constexpr size_t kMaxQueuedLogs = 1024;

// A limiter's log hook. `queue` and `tsfn` are shared with the thread that
// logs (under `mu`); `fn` is the JS thread's.
struct LogSink {
  std::mutex mu;
  std::vector<std::pair<int, std::string>> queue;
  napi_threadsafe_function tsfn = nullptr;  // cleared by its finalizer
  // lib/index.js's dispatcher (level, message), weakly: the JS Limiter
  // keeps it, so a forgotten limiter can still be garbage collected.
  napi_ref fn = nullptr;
  // Counts the times the hook was turned off: a batch being delivered
  // stops when it changes (the handler removed or replaced itself).
  uint64_t generation = 0;
};

// The C handler (any thread, one message at a time): queue and poke the
// JS thread; never wait for it.
void log_handler(int level, const char *message, void *user) {
  auto *sink = static_cast<LogSink *>(user);
  std::lock_guard<std::mutex> lock(sink->mu);
  if (sink->tsfn == nullptr || sink->queue.size() >= kMaxQueuedLogs) return;
  const bool was_empty = sink->queue.empty();
  sink->queue.emplace_back(level, message != nullptr ? message : "");
  if (was_empty)
    napi_call_threadsafe_function(sink->tsfn, nullptr, napi_tsfn_nonblocking);
}

// The JS thread: every queued message, in order, to the dispatcher (unless
// the handler was removed meanwhile, or its limiter collected). A handler
// that throws reports an uncaught exception, as an event listener does.
void log_call_js(napi_env env, napi_value, void *context, void *) {
  if (env == nullptr) return;  // the environment is being torn down
  auto *sink = static_cast<LogSink *>(context);
  std::vector<std::pair<int, std::string>> batch;
  {
    std::lock_guard<std::mutex> lock(sink->mu);
    batch.swap(sink->queue);
  }
  const uint64_t generation = sink->generation;
  for (const auto &[level, text] : batch) {
    // Removed or replaced (perhaps by the handler itself): the rest of the
    // batch was logged for the handler that is gone.
    if (sink->fn == nullptr || sink->generation != generation) return;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value fn = nullptr;
    napi_get_reference_value(env, sink->fn, &fn);
    bool called = false;
    if (fn != nullptr) {
      napi_value argv[2], undefined, result;
      napi_create_int32(env, level, &argv[0]);
      napi_create_string_utf8(env, text.data(), text.size(), &argv[1]);
      napi_get_undefined(env, &undefined);
      called = true;
      if (napi_call_function(env, undefined, fn, 2, argv, &result) != napi_ok) {
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (pending) {
          napi_value err;
          napi_get_and_clear_last_exception(env, &err);
          napi_fatal_exception(env, err);
        }
      }
    }
    napi_close_handle_scope(env, scope);
    if (!called) return;  // the dispatcher was collected with its limiter
  }
}

void log_tsfn_finalize(napi_env, void *data, void *) {
  auto *hold = static_cast<std::shared_ptr<LogSink> *>(data);
  {
    std::lock_guard<std::mutex> lock((*hold)->mu);
    (*hold)->tsfn = nullptr;
    (*hold)->queue.clear();
  }
  delete hold;
}

// ---- Limiter state ---------------------------------------------------------

struct AsyncCall;

struct KeysSlot {
  std::mutex mu;
  rl_keys *it = nullptr;
};

// What a Limiter, its pending calls, workers and key iterators share. Only
// `queue` (under queue_mu), `pinned_now` and `iterators` (under iter_mu) are
// touched off the JS thread.
struct LimiterState : std::enable_shared_from_this<LimiterState> {
  napi_env env = nullptr;
  std::thread::id js_thread;
  rl_limiter *lim = nullptr;
  int32_t store_kind = RL_STORE_MEMORY;
  bool closed = false;     // close() was called: no new calls
  bool destroyed = false;  // rl_destroy ran
  bool destroy_started = false;
  bool hook_added = false;
  int32_t handle = -1;  // index in Addon::handles

  // The JS clock (memory store; Redis in TOLLGATE_TESTING builds).
  Napi::FunctionReference clock;
  std::atomic<int64_t> pinned_now{0};  // for a clock read off the JS thread
  napi_ref clock_error = nullptr;      // an exception thrown by the clock

  // The libuv handles that drive the Redis connection (JS thread), or
  // NULL: the I/O thread drives it.
  struct LoopDriver *driver = nullptr;

  // Async checks: results queued by the I/O thread (or by a loop turn).
  napi_threadsafe_function tsfn = nullptr;
  std::mutex queue_mu;
  std::vector<AsyncCall *> queue;
  size_t pending = 0;  // submitted async checks not yet settled
  size_t active = 0;   // AsyncWorkers in progress
  bool tsfn_ref = false;
  napi_ref self_ref = nullptr;  // keeps the JS Limiter alive while busy
  bool self_held = false;

  std::mutex iter_mu;
  std::unordered_set<KeysSlot *> iterators;

  std::vector<napi_deferred> close_waiters;

  // The log hook, once a handler was set (JS thread, but for what LogSink
  // guards with its mutex).
  std::shared_ptr<LogSink> log;

  void busy_changed();
  // JS thread. `teardown`: the environment is going away (its loop runs no
  // more): the handles' close callbacks run here, or libuv would refuse to
  // close a worker's loop with them open.
  void stop_driver(bool teardown = false);
  void destroy_now();
  void finish_close();
  void maybe_start_destroy();
};

struct AsyncCall {
  std::shared_ptr<LimiterState> state;
  double slot = -1;  // the JS promise's slot (lib/index.js)
  bool submitting = true;
  bool done_inline = false;
  int status = RL_OK;
  rl_decision d = RL_DECISION_INIT;
  std::string error;
};

// Holds the JS limiter object and the TSFN's loop reference while anything
// is in flight; lets both go when idle (an idle limiter does not keep the
// process alive).
void LimiterState::busy_changed() {
  const bool busy = pending != 0 || active != 0;
  if (self_ref != nullptr && busy != self_held) {
    uint32_t count = 0;
    if (busy)
      napi_reference_ref(env, self_ref, &count);
    else
      napi_reference_unref(env, self_ref, &count);
    self_held = busy;
  }
  const bool want_ref = pending != 0;
  if (tsfn != nullptr && want_ref != tsfn_ref) {
    if (want_ref)
      napi_ref_threadsafe_function(env, tsfn);
    else
      napi_unref_threadsafe_function(env, tsfn);
    tsfn_ref = want_ref;
  }
}

void env_cleanup_hook(void *arg);

// Frees iterators and destroys the limiter (blocking: joins the I/O thread).
// The log handler goes first: nothing is logged through it from here on.
void free_native(LimiterState &st) {
  if (st.lim != nullptr && st.log)
    rl_set_log_handler(st.lim, RL_LOG_ERROR, nullptr, nullptr);
  {
    std::lock_guard<std::mutex> lock(st.iter_mu);
    for (KeysSlot *slot : st.iterators) {
      std::lock_guard<std::mutex> slot_lock(slot->mu);
      rl_keys_free(slot->it);
      slot->it = nullptr;
    }
    st.iterators.clear();
  }
  rl_destroy(st.lim);
  st.lim = nullptr;
}

// Settles finished async checks in JS (JS thread) and frees them: the
// decisions go through the shared `done` buffer, one settle(count) call per
// bufferful; an error rejects its promise through settleError.
void settle_calls(napi_env env, const std::vector<AsyncCall *> &calls) {
  Napi::Env e(env);
  Addon &a = addon(e);
  size_t n = 0;
  const auto flush = [&] {
    if (n == 0) return;
    Napi::HandleScope scope(e);
    const napi_value count = Napi::Number::New(e, static_cast<double>(n));
    n = 0;
    try {
      a.settle.Call({count});
    } catch (const Napi::Error &x) {  // a bug in lib/index.js: surface it
      napi_fatal_exception(env, x.Value());
    }
  };
  for (AsyncCall *call : calls) {
    std::unique_ptr<AsyncCall> owned(call);
    if (call->status == RL_OK) {
      double *slot = a.done + n * kDoneSlots;
      slot[0] = call->slot;
      write_decision(slot + 1, call->d);
      if (++n == a.done_cap) flush();
      continue;
    }
    flush();
    Napi::HandleScope scope(e);
    Napi::Value err;
    try {
      err = make_error(e, call->status, call->error);
    } catch (const Napi::Error &x) {
      err = x.Value();
    }
    try {
      a.settle_error.Call({Napi::Number::New(e, call->slot), err});
    } catch (const Napi::Error &x) {
      napi_fatal_exception(env, x.Value());
    }
  }
  flush();
}

// Settles every queued async result (JS thread).
void drain(LimiterState &st, napi_env env) {
  std::vector<AsyncCall *> done;
  {
    std::lock_guard<std::mutex> lock(st.queue_mu);
    done.swap(st.queue);
  }
  if (done.empty()) return;
  settle_calls(env, done);
  st.pending -= done.size();
  st.busy_changed();
}

// The TSFN's JS-thread side. `env` is NULL while the environment tears down.
void tsfn_call_js(napi_env env, napi_value, void *context, void *) {
  if (env == nullptr) return;
  auto *st = static_cast<LimiterState *>(context);
  drain(*st, env);
}

void tsfn_finalize(napi_env, void *data, void *) {
  // The TSFN held a strong reference to the state. It can be finalized by
  // the environment's teardown before the limiter is destroyed: forget it so
  // late completions do not use it.
  auto *hold = static_cast<std::shared_ptr<LimiterState> *>(data);
  {
    std::lock_guard<std::mutex> lock((*hold)->queue_mu);
    (*hold)->tsfn = nullptr;
  }
  delete hold;
}

// ---- The Redis connection driven by the JS thread's libuv loop ----------

#if TOLLGATE_NODE_UV
struct LoopDriver {
  uv_poll_t poll;
  uv_timer_t timer;
  uv_prepare_t prepare;  // a turn before the loop waits, after submissions
  LimiterState *st = nullptr;  // NULL once the limiter let go
  napi_async_context async_ctx = nullptr;
  napi_ref resource = nullptr;
  bool want_turn = false;
  int open_handles = 0;
};

void driver_turn(LoopDriver *d);

void on_driver_poll(uv_poll_t *h, int, int) {
  driver_turn(static_cast<LoopDriver *>(h->data));
}

void on_driver_timer(uv_timer_t *h) {
  driver_turn(static_cast<LoopDriver *>(h->data));
}

void on_driver_prepare(uv_prepare_t *h) {
  driver_turn(static_cast<LoopDriver *>(h->data));
}

void on_driver_handle_closed(uv_handle_t *h) {
  auto *d = static_cast<LoopDriver *>(h->data);
  if (--d->open_handles == 0) delete d;
}

// JS thread, after a check was submitted: the library only queued it
// (rl_loop_open); a turn sends it, with whatever else this tick queued,
// before the loop waits for I/O (libuv's prepare phase).
void driver_want_turn(LoopDriver *d) {
  if (d->want_turn) return;
  d->want_turn = true;
  uv_prepare_start(&d->prepare, on_driver_prepare);
}

// One turn: the replies that came are read and their completions queue
// their results, which are then settled here. The callback scope makes
// Node run the microtasks (the awaiting code) when it closes; the checks
// they submit are sent by another turn right away (a few times), so a
// sequential caller's next check leaves within this callback. While libuv
// has nothing else to run before it polls (no immediates, idle or pending
// callbacks: uv_backend_timeout is not 0), a turn may poll for a lone
// wait's reply (rl_loop_turn_idle) instead of the loop sleeping and
// waking for it.
void driver_turn(LoopDriver *d) {
  uv_loop_t *loop =
      uv_handle_get_loop(reinterpret_cast<uv_handle_t *>(&d->poll));
  for (int round = 0; round < 4; ++round) {
    LimiterState *st = d->st;
    if (st == nullptr || st->lim == nullptr) return;
    d->want_turn = false;
    napi_env env = st->env;
    napi_handle_scope hs;
    if (napi_open_handle_scope(env, &hs) != napi_ok) return;
    napi_value resource;
    napi_callback_scope cs = nullptr;
    if (napi_get_reference_value(env, d->resource, &resource) == napi_ok)
      napi_open_callback_scope(env, resource, d->async_ctx, &cs);
    int64_t next_us = -1;
    const int rc = uv_backend_timeout(loop) != 0
                       ? rl_loop_turn_idle(st->lim, &next_us)
                       : rl_loop_turn(st->lim, &next_us);
    if (rc != RL_OK) {
      // No longer ours: the I/O thread's path takes over for later calls.
      st->stop_driver();
    } else if (next_us >= 0) {
      uv_timer_start(&d->timer, on_driver_timer,
                     static_cast<uint64_t>((next_us + 999) / 1000), 0);
    } else {
      uv_timer_stop(&d->timer);
    }
    drain(*st, env);
    if (cs != nullptr) napi_close_callback_scope(env, cs);  // microtasks
    napi_close_handle_scope(env, hs);
    if (!d->want_turn) break;
  }
  if (!d->want_turn) {
    uv_prepare_stop(&d->prepare);
  } else if (d->st != nullptr) {
    // Rounds used up with a turn still wanted (replies caught by idle
    // turns, each answer's code checking again): the next turn must come
    // before libuv waits for I/O, which it would not, called from the
    // prepare phase. A due timer keeps this iteration's poll from waiting.
    uv_timer_start(&d->timer, on_driver_timer, 0, 0);
  }
}

// JS thread, right after rl_create: the loop drives the connection unless
// `mode` is "thread" or the library refuses (TLS, the memory store). The
// handles are unreferenced: an idle limiter does not keep the process
// alive (the thread-safe function's reference does while checks wait).
// Returns the library's code (RL_OK when driving).
int start_driver(LimiterState &st, napi_env env) {
  int fd = -1;
  const int rc = rl_loop_open(st.lim, &fd);
  if (rc != RL_OK) return rc;
  uv_loop_t *loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)
    return RL_E_INTERNAL;
  auto *d = new LoopDriver();
  d->st = &st;
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "tollgate:loop", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, resource, 1, &d->resource);
  napi_async_init(env, resource, name, &d->async_ctx);
  d->poll.data = d;
  d->timer.data = d;
  d->prepare.data = d;
  if (uv_poll_init(loop, &d->poll, fd) != 0) {
    napi_async_destroy(env, d->async_ctx);
    napi_delete_reference(env, d->resource);
    delete d;
    return RL_E_INTERNAL;
  }
  uv_timer_init(loop, &d->timer);
  uv_prepare_init(loop, &d->prepare);
  d->open_handles = 3;
  uv_unref(reinterpret_cast<uv_handle_t *>(&d->poll));
  uv_unref(reinterpret_cast<uv_handle_t *>(&d->timer));
  uv_unref(reinterpret_cast<uv_handle_t *>(&d->prepare));
  uv_poll_start(&d->poll, UV_READABLE, on_driver_poll);
  st.driver = d;
  return RL_OK;
}

// JS thread: the handles stop and close (freed once libuv has closed
// them). Before rl_destroy: the descriptor is the library's.
void LimiterState::stop_driver(bool teardown) {
  LoopDriver *d = driver;
  if (d == nullptr) return;
  uv_loop_t *loop =
      uv_handle_get_loop(reinterpret_cast<uv_handle_t *>(&d->poll));
  driver = nullptr;
  d->st = nullptr;
  uv_poll_stop(&d->poll);
  uv_timer_stop(&d->timer);
  uv_prepare_stop(&d->prepare);
  napi_async_destroy(env, d->async_ctx);
  napi_delete_reference(env, d->resource);
  uv_close(reinterpret_cast<uv_handle_t *>(&d->poll), on_driver_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t *>(&d->timer), on_driver_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t *>(&d->prepare),
           on_driver_handle_closed);
  if (teardown) uv_run(loop, UV_RUN_NOWAIT);
}

#else
struct LoopDriver {};
void driver_want_turn(LoopDriver *) {}
int start_driver(LimiterState &, napi_env) {
  return RL_E_UNSUPPORTED;  // built without uv.h: the I/O thread drives
}
void LimiterState::stop_driver(bool) {}
#endif

// Any thread (tollgate's I/O thread, or inline on the JS thread).
void async_complete(int status, const rl_decision *d, const char *message,
                    void *user) {
  auto *call = static_cast<AsyncCall *>(user);
  call->status = status;
  if (d != nullptr) call->d = *d;
  if (status != RL_OK)
    call->error = (message && *message) ? message : rl_strerror(status);
  LimiterState &st = *call->state;
  const bool js = std::this_thread::get_id() == st.js_thread;
  if (call->submitting && js) {
    call->done_inline = true;  // answered before rl_check_async returned
    return;
  }
  if (js) {  // a loop turn (driver_turn), which settles the queue next
    std::lock_guard<std::mutex> lock(st.queue_mu);
    st.queue.push_back(call);
    return;
  }
  // Under the lock: tsfn_finalize may clear st.tsfn (environment teardown).
  // The non-blocking call only queues and signals the loop.
  std::lock_guard<std::mutex> lock(st.queue_mu);
  const bool was_empty = st.queue.empty();
  st.queue.push_back(call);
  if (was_empty && st.tsfn != nullptr)
    napi_call_threadsafe_function(st.tsfn, nullptr, napi_tsfn_nonblocking);
}

// The clock trampoline: on the JS thread, calls the JS clock; elsewhere (an
// AsyncWorker reading keys) answers the time read before the work started.
int64_t clock_trampoline(void *user) {
  auto *st = static_cast<LimiterState *>(user);
  if (std::this_thread::get_id() != st->js_thread || st->clock.IsEmpty())
    return st->pinned_now.load();
  napi_env env = st->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return -1;
  int64_t value = -1;  // outside [0, 2^52): the call fails (RL_E_OVERFLOW)
  napi_value fn = st->clock.Value();
  napi_value undefined, result;
  napi_get_undefined(env, &undefined);
  const napi_status s =
      napi_call_function(env, undefined, fn, 0, nullptr, &result);
  if (s == napi_ok) {
    napi_valuetype t;
    napi_typeof(env, result, &t);
    double d = 0;
    bool lossless = true;
    int64_t i = 0;
    if (t == napi_number && napi_get_value_double(env, result, &d) == napi_ok &&
        std::isfinite(d) && std::trunc(d) == d) {
      value = d < 0 || d >= 9007199254740992.0 ? -1 : static_cast<int64_t>(d);
    } else if (t == napi_bigint &&
               napi_get_value_bigint_int64(env, result, &i, &lossless) ==
                   napi_ok &&
               lossless) {
      value = i;
    } else if (st->clock_error == nullptr) {
      napi_value msg, err;
      napi_create_string_utf8(
          env, "clock must return integer microseconds (a number)",
          NAPI_AUTO_LENGTH, &msg);
      napi_create_type_error(env, nullptr, msg, &err);
      napi_create_reference(env, err, 1, &st->clock_error);
    }
  } else {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      if (st->clock_error == nullptr)
        napi_create_reference(env, err, 1, &st->clock_error);
    }
  }
  napi_close_handle_scope(env, scope);
  return value;
}

// After a C call that may have run the clock: rethrow what it threw.
void rethrow_clock_error(LimiterState &st, Napi::Env env) {
  if (st.clock_error == nullptr) return;
  napi_value err;
  napi_get_reference_value(env, st.clock_error, &err);
  napi_delete_reference(env, st.clock_error);
  st.clock_error = nullptr;
  throw Napi::Error(env, err);
}

// Reads the JS clock now (JS thread) for work that runs off it.
void pin_clock(LimiterState &st, Napi::Env env) {
  if (st.clock.IsEmpty()) return;
  const int64_t t = clock_trampoline(&st);
  rethrow_clock_error(st, env);
  st.pinned_now.store(t);
}

// Turns the log hook off (JS thread): the C handler first (when
// rl_set_log_handler returns it is never called again), then what it queued
// is dropped and the dispatcher forgotten. `release`: the thread-safe
// function too (close, destroy), with `mode`.
void stop_log(LimiterState &st, bool release,
              napi_threadsafe_function_release_mode mode = napi_tsfn_release) {
  if (!st.log) return;
  LogSink &sink = *st.log;
  if (st.lim != nullptr && !st.destroyed)
    rl_set_log_handler(st.lim, RL_LOG_ERROR, nullptr, nullptr);
  ++sink.generation;
  napi_threadsafe_function f = nullptr;
  {
    std::lock_guard<std::mutex> lock(sink.mu);
    sink.queue.clear();
    if (release) {
      f = sink.tsfn;
      sink.tsfn = nullptr;
    }
  }
  if (sink.fn != nullptr) {
    napi_delete_reference(st.env, sink.fn);
    sink.fn = nullptr;
  }
  if (f != nullptr) napi_release_threadsafe_function(f, mode);
}

// rl_destroy ran (or runs now): settle what it answered, release the TSFN
// and the hooks, resolve close() promises. JS thread.
void LimiterState::finish_close() {
  destroyed = true;
  Napi::Env e(env);
  drain(*this, env);
  napi_threadsafe_function f;
  {
    std::lock_guard<std::mutex> lock(queue_mu);
    f = tsfn;
    tsfn = nullptr;
  }
  if (f != nullptr) napi_release_threadsafe_function(f, napi_tsfn_release);
  tsfn_ref = false;
  stop_log(*this, true);
  if (hook_added) {
    napi_remove_env_cleanup_hook(env, env_cleanup_hook, this);
    hook_added = false;
  }
  if (!clock.IsEmpty()) clock.Reset();
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  for (napi_deferred d : close_waiters)
    napi_resolve_deferred(env, d, undefined);
  close_waiters.clear();
}

// Synchronous destroy, for the memory store (no I/O thread to join) and for
// the environment's teardown.
void LimiterState::destroy_now() {
  destroy_started = true;
  stop_driver();
  free_native(*this);
  finish_close();
}

class DestroyWorker : public Napi::AsyncWorker {
 public:
  DestroyWorker(Napi::Env env, std::shared_ptr<LimiterState> st)
      : Napi::AsyncWorker(env, "tollgate:close"), st_(std::move(st)) {}
  void Execute() override { free_native(*st_); }
  void OnOK() override { Done(); }
  void OnError(const Napi::Error &) override { Done(); }

 private:
  void Done() {
    st_->finish_close();
    st_->busy_changed();
  }
  std::shared_ptr<LimiterState> st_;
};

void LimiterState::maybe_start_destroy() {
  if (!closed || destroy_started || active != 0) return;
  destroy_started = true;
  if (store_kind == RL_STORE_MEMORY) {
    destroy_now();
    return;
  }
  stop_driver();  // the descriptor is rl_destroy's from here
  auto *w = new DestroyWorker(Napi::Env(env), shared_from_this());
  ++active;  // keeps the JS limiter alive until it is done
  busy_changed();
  --active;  // not counted as a call (maybe_start_destroy checks active)
  w->Queue();
}

// The environment is going away (worker thread exit, process exit) with the
// limiter still open: destroy it now, blocking briefly.
void env_cleanup_hook(void *arg) {
  auto *st = static_cast<LimiterState *>(arg);
  st->hook_added = false;
  if (st->destroyed) return;
  st->closed = true;
  st->destroy_started = true;
  st->stop_driver(true);
  free_native(*st);
  st->destroyed = true;
  // No JS may run now: queued results are dropped with the environment.
  std::lock_guard<std::mutex> lock(st->queue_mu);
  for (AsyncCall *c : st->queue) delete c;
  st->queue.clear();
}

// ---- Blocking work ---------------------------------------------------------

// Runs one blocking C call on the libuv threadpool and settles a promise.
class CallWorker : public Napi::AsyncWorker {
 public:
  using Run = std::function<int(LimiterState &)>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  CallWorker(Napi::Env env, std::shared_ptr<LimiterState> st, const char *name,
             Run run, Result result)
      : Napi::AsyncWorker(env, name),
        st_(std::move(st)),
        run_(std::move(run)),
        result_(std::move(result)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Start() {
    ++st_->active;
    st_->busy_changed();
    Napi::Promise p = deferred_.Promise();
    Queue();
    return p;
  }

  void Execute() override {
    rc_ = run_(*st_);
    if (rc_ != RL_OK && rc_ != RL_E_DONE) error_ = last_error_text(rc_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    --st_->active;
    try {
      if (rc_ != RL_OK && rc_ != RL_E_DONE)
        deferred_.Reject(make_error(env, rc_, error_));
      else
        deferred_.Resolve(rc_ == RL_E_DONE ? env.Null() : result_(env));
    } catch (const Napi::Error &e) {
      deferred_.Reject(e.Value());
    }
    st_->busy_changed();
    st_->maybe_start_destroy();
  }
  void OnError(const Napi::Error &e) override {
    --st_->active;
    deferred_.Reject(e.Value());
    st_->busy_changed();
    st_->maybe_start_destroy();
  }

  int rc() const { return rc_; }

 private:
  std::shared_ptr<LimiterState> st_;
  Run run_;
  Result result_;
  Napi::Promise::Deferred deferred_;
  int rc_ = RL_OK;
  std::string error_;
};

Napi::Value resolved(Napi::Env env, Napi::Value v) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Resolve(v);
  return d.Promise();
}

Napi::Value rejected(Napi::Env env, Napi::Value v) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(v);
  return d.Promise();
}

// ---- Option helpers --------------------------------------------------------

uint64_t opt_uint(Napi::Env env, const Napi::Object &o, const char *name,
                  uint64_t max) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) return 0;
  const int64_t i = int64_arg(env, v, name);
  if (i < 0 || static_cast<uint64_t>(i) > max)
    throw_code(env, RL_E_INVALID_ARG, std::string(name) + ": out of range");
  return static_cast<uint64_t>(i);
}

int32_t opt_int(Napi::Env env, const Napi::Object &o, const char *name) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) return 0;
  return static_cast<int32_t>(int64_arg(env, v, name));
}

// ---- Leases ----------------------------------------------------------------

// One rl_lease handle, freed with its last owner: the NativeLease object (its
// finalizer, when JS drops the Lease) or a renew or release in progress on
// it. It does not end a held lease (rl_lease_free never does): release()
// does, or the lease's ttl.
struct LeaseBox {
  rl_lease *lease = nullptr;
  LeaseBox() = default;
  LeaseBox(const LeaseBox &) = delete;
  LeaseBox &operator=(const LeaseBox &) = delete;
  ~LeaseBox() { rl_lease_free(lease); }
};

// The native side of lib/index.js's Lease: no methods, only the handle (the
// limiter's leaseRenew and leaseRelease take it).
class NativeLease : public Napi::ObjectWrap<NativeLease> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeLease", {});
  }
  explicit NativeLease(const Napi::CallbackInfo &info)
      : Napi::ObjectWrap<NativeLease>(info) {}

  std::shared_ptr<LeaseBox> box;
};

// A NativeLease argument's handle (a TypeError for anything else).
std::shared_ptr<LeaseBox> lease_arg(Napi::Env env, const Napi::Value &v) {
  Addon &a = addon(env);
  if (!v.IsObject() || a.lease_ctor.IsEmpty() ||
      !v.As<Napi::Object>().InstanceOf(a.lease_ctor.Value()))
    throw_type(env, "lease must be a Lease (from limiter.acquire())");
  NativeLease *l = NativeLease::Unwrap(v.As<Napi::Object>());
  if (l == nullptr || !l->box || l->box->lease == nullptr)
    throw_type(env, "lease must be a Lease (from limiter.acquire())");
  return l->box;
}

// What rl_lease_acquire answers: its info and, when acquired, the handle.
struct LeaseAcquired {
  rl_lease_info info = RL_LEASE_INFO_INIT;
  std::shared_ptr<LeaseBox> box = std::make_shared<LeaseBox>();
};

// { acquired, inFlight, maxInFlight, retryAfter, source, lease }: lease is a
// NativeLease when acquired, else null (lib/index.js shapes the result).
Napi::Value lease_result(Napi::Env env, LeaseAcquired &r) {
  Napi::Object o = Napi::Object::New(env);
  const bool acquired = r.info.acquired != 0 && r.box->lease != nullptr;
  o.Set("acquired", acquired);
  o.Set("inFlight", static_cast<double>(r.info.in_flight));
  o.Set("maxInFlight", static_cast<double>(r.info.max_in_flight));
  o.Set("retryAfter", static_cast<double>(r.info.retry_after_ms));
  o.Set("source", r.info.source);
  if (!acquired) {
    o.Set("lease", env.Null());
    return o;  // a denial holds no handle (r.box frees one if it did)
  }
  Napi::Object lease = addon(env).lease_ctor.New({});
  NativeLease::Unwrap(lease)->box = std::move(r.box);
  o.Set("lease", lease);
  return o;
}

// ---- The Limiter class -----------------------------------------------------

class Limiter : public Napi::ObjectWrap<Limiter> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeLimiter",
        {InstanceMethod<&Limiter::CheckAsync>("checkAsync"),
         InstanceMethod<&Limiter::CheckKeysAsync>("checkKeysAsync"),
         InstanceMethod<&Limiter::Reset>("reset"),
         InstanceMethod<&Limiter::Block>("block"),
         InstanceMethod<&Limiter::Unblock>("unblock"),
         InstanceMethod<&Limiter::Ping>("ping"),
         InstanceMethod<&Limiter::Health>("health"),
         InstanceMethod<&Limiter::Metrics>("metrics"),
         InstanceMethod<&Limiter::SetLogHandler>("setLogHandler"),
         InstanceMethod<&Limiter::SetList>("setList"),
         InstanceMethod<&Limiter::KeysOpen>("keysOpen"),
         InstanceMethod<&Limiter::LeaseAcquire>("leaseAcquire"),
         InstanceMethod<&Limiter::LeaseRenew>("leaseRenew"),
         InstanceMethod<&Limiter::LeaseRelease>("leaseRelease"),
         InstanceMethod<&Limiter::Close>("close"),
         InstanceMethod<&Limiter::Driver>("driver"),
         InstanceAccessor<&Limiter::StoreKind>("storeKind"),
         InstanceAccessor<&Limiter::Handle>("handle")});
  }

  // new NativeLimiter(options): options already checked by lib/index.js.
  explicit Limiter(const Napi::CallbackInfo &info)
      : Napi::ObjectWrap<Limiter>(info), st_(std::make_shared<LimiterState>()) {
    Napi::Env env = info.Env();
    st_->env = env;
    st_->js_thread = std::this_thread::get_id();
    if (!info[0].IsObject()) throw_type(env, "options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();

    rl_options opts = RL_OPTIONS_INIT;
    constexpr uint64_t u32 = 0xffffffffu;
    opts.max_keys = opt_uint(env, o, "maxKeys", uint64_t{1} << 53);
    opts.max_key_len =
        static_cast<uint32_t>(opt_uint(env, o, "maxKeyLen", u32));
    opts.shards = static_cast<uint32_t>(opt_uint(env, o, "shards", u32));
    opts.connect_timeout_ms =
        static_cast<uint32_t>(opt_uint(env, o, "connectTimeoutMs", u32));
    opts.timeout_ms = static_cast<uint32_t>(opt_uint(env, o, "timeoutMs", u32));
    opts.local_divisor =
        static_cast<uint32_t>(opt_uint(env, o, "localDivisor", u32));
    opts.deny_cache_size =
        static_cast<uint32_t>(opt_uint(env, o, "denyCacheSize", u32));
    opts.connections =
        static_cast<uint32_t>(opt_uint(env, o, "connections", u32));
    opts.reconnect_max_ms =
        static_cast<uint32_t>(opt_uint(env, o, "reconnectMaxMs", u32));
    opts.failure_mode = opt_int(env, o, "failureMode");
    opts.deny_cache = opt_int(env, o, "denyCache");
    opts.tls_verify = opt_int(env, o, "tlsVerify");
    opts.spin_us = opt_int(env, o, "spinUs");
    opts.max_async = opt_int(env, o, "maxAsync");
    opts.shadow = opt_int(env, o, "shadow");
    opts.metrics = opt_int(env, o, "metrics");

    // String options (never echoed: they may hold a password).
    struct StrOpt {
      const char *name;
      const char **field;
      std::string value;
    } strs[] = {{"url", &opts.url, {}},
                {"keyPrefix", &opts.key_prefix, {}},
                {"username", &opts.username, {}},
                {"password", &opts.password, {}},
                {"tlsCaFile", &opts.tls_ca_file, {}},
                {"tlsCaDir", &opts.tls_ca_dir, {}},
                {"tlsCertFile", &opts.tls_cert_file, {}},
                {"tlsKeyFile", &opts.tls_key_file, {}},
                {"tlsServerName", &opts.tls_server_name, {}}};
    for (auto &s : strs) {
      Napi::Value v = o.Get(s.name);
      if (v.IsUndefined() || v.IsNull()) continue;
      if (!v.IsString())
        throw_type(env, std::string(s.name) + " must be a string");
      s.value = v.As<Napi::String>().Utf8Value();
      if (s.value.find('\0') != std::string::npos)
        throw_code(env, s.field == &opts.url ? RL_E_URL : RL_E_INVALID_ARG,
                   std::string(s.name) + ": contains a NUL character");
      *s.field = s.value.c_str();
    }

    Napi::Value clock = o.Get("clock");
    if (clock.IsFunction()) {
      st_->clock = Napi::Persistent(clock.As<Napi::Function>());
      opts.clock = &clock_trampoline;
      opts.clock_user_data = st_.get();
    }

    rl_limiter *lim = nullptr;
    const int rc = rl_create(&lim, &opts);
    if (rc != RL_OK) {
      st_->clock.Reset();
      throw_code(env, rc, last_error_text(rc));
    }
    st_->lim = lim;
    // The allow and deny lists (docs/exemptions.md), set before the limiter
    // is handed out; a bad entry destroys it and throws ("deny: entries[2]:
    // ...", the entry never echoed).
    for (const auto &[list, what] :
         {std::pair<int, const char *>{RL_LIST_ALLOW, "allow"},
          std::pair<int, const char *>{RL_LIST_DENY, "deny"}}) {
      Napi::Value entries = o.Get(what);
      if (entries.IsUndefined() || entries.IsNull()) continue;
      try {
        set_list(env, lim, list, entries, what);
      } catch (...) {
        st_->lim = nullptr;
        rl_destroy(lim);
        st_->clock.Reset();
        throw;
      }
    }
    // The log handler (onLog, logLevel), right after rl_create: what the
    // limiter logs from then on reaches it.
    Napi::Value on_log = o.Get("onLog");
    if (on_log.IsFunction()) {
      try {
        set_log(
            env, on_log.As<Napi::Function>(),
            static_cast<int>(int64_arg(env, o.Get("logLevel"), "logLevel")));
      } catch (...) {
        stop_log(*st_, true, napi_tsfn_abort);
        st_->lim = nullptr;
        rl_destroy(lim);
        st_->clock.Reset();
        throw;
      }
    }
    rl_health_info h = RL_HEALTH_INIT;
    if (rl_health(lim, &h) == RL_OK) st_->store_kind = h.store_kind;
    // Who drives the Redis connection (docs/architecture.md, "Drivers"):
    // this thread's loop ("loop", or an error), the I/O thread ("thread"),
    // or "auto" (and "auto-loop", from index.js: "auto" with
    // TOLLGATE_DRIVER=loop): the loop where it can drive, else the thread.
    Napi::Value drv = o.Get("driver");
    const std::string mode =
        drv.IsString() ? drv.As<Napi::String>().Utf8Value() : "auto";
    if (mode != "auto" && mode != "loop" && mode != "thread" &&
        mode != "auto-loop") {
      st_->lim = nullptr;
      rl_destroy(lim);
      st_->clock.Reset();
      throw_code(env, RL_E_INVALID_ARG,
                 "driver: expected 'auto', 'loop' or 'thread'");
    }
    if (st_->store_kind != RL_STORE_MEMORY && mode != "thread") {
      const int drc = start_driver(*st_, env);
      if (drc != RL_OK && mode == "loop") {
        const std::string err = last_error_text(drc);
        stop_log(*st_, true, napi_tsfn_abort);
        st_->lim = nullptr;
        rl_destroy(lim);
        st_->clock.Reset();
        throw_code(env, drc, "driver: " + err);
      }
    }
    Addon &a = addon(env);
    if (!a.free_handles.empty()) {
      st_->handle = a.free_handles.back();
      a.free_handles.pop_back();
      a.handles[static_cast<size_t>(st_->handle)] = st_.get();
    } else {
      st_->handle = static_cast<int32_t>(a.handles.size());
      a.handles.push_back(st_.get());
    }
    napi_create_reference(env, info.This(), 0, &st_->self_ref);
    if (napi_add_env_cleanup_hook(env, env_cleanup_hook, st_.get()) == napi_ok)
      st_->hook_added = true;
  }

  ~Limiter() override {
    // Garbage collected (never while busy: busy_changed() holds a strong
    // reference) or torn down with the environment.
    LimiterState &st = *st_;
    st.stop_driver();
    if (!st.destroyed && !st.destroy_started) {
      st.closed = true;
      st.destroy_started = true;
      free_native(st);
      st.destroyed = true;
      napi_threadsafe_function f;
      {
        std::lock_guard<std::mutex> lock(st.queue_mu);
        f = st.tsfn;
        st.tsfn = nullptr;
      }
      if (f != nullptr) napi_release_threadsafe_function(f, napi_tsfn_abort);
    }
    stop_log(st, true, napi_tsfn_abort);
    if (st.hook_added) {
      napi_remove_env_cleanup_hook(st.env, env_cleanup_hook, &st);
      st.hook_added = false;
    }
    Addon *a = nullptr;
    if (st.handle >= 0 &&
        napi_get_instance_data(st.env, reinterpret_cast<void **>(&a)) ==
            napi_ok &&
        a != nullptr && static_cast<size_t>(st.handle) < a->handles.size() &&
        a->handles[static_cast<size_t>(st.handle)] == &st) {
      a->handles[static_cast<size_t>(st.handle)] = nullptr;
      a->free_handles.push_back(st.handle);
    }
    st.handle = -1;
    if (st.self_ref != nullptr) {
      napi_delete_reference(st.env, st.self_ref);
      st.self_ref = nullptr;
    }
    if (st.clock_error != nullptr) {
      napi_delete_reference(st.env, st.clock_error);
      st.clock_error = nullptr;
    }
  }

 private:
  void ensure_open(Napi::Env env) {
    if (st_->closed) throw_code(env, RL_E_CLOSED, "the limiter is closed");
  }

  // driver() -> "loop" | "thread" | "none" (the memory store)
  Napi::Value Driver(const Napi::CallbackInfo &info) {
    const char *d = st_->store_kind == RL_STORE_MEMORY ? "none"
                    : st_->driver != nullptr           ? "loop"
                                                       : "thread";
    return Napi::String::New(info.Env(), d);
  }

  Napi::Value Handle(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), st_->handle);
  }

  // checkAsync(key, pid, cost, slot): starts the check whose promise
  // lib/index.js keeps in `slot`; the answer comes through settle() (at once
  // if the check answered before returning). Throws if it could not start.
  Napi::Value CheckAsync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    Addon &a = addon(env);
    if (a.done == nullptr) throw_type(env, "setup() was not called");
    KeyArg key(env, info[0]);
    rl_policy *ps[kMaxPolicies];
    const size_t n =
        gather_policies(env, a, info[1].As<Napi::Number>().Int32Value(), ps);
    const int64_t cost =
        static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue());
    const double slot = info[3].As<Napi::Number>().DoubleValue();
    ensure_tsfn(env);

    auto call = std::make_unique<AsyncCall>();
    call->state = st_;
    call->slot = slot;
    const int rc = rl_check_async(st_->lim, key.data(), key.size(), ps, n, cost,
                                  &async_complete, call.get());
    call->submitting = false;
    if (rc != RL_OK) {
      const std::string err = last_error_text(rc);
      rethrow_clock_error(*st_, env);
      throw_code(env, rc, err);
    }
    AsyncCall *c = call.release();  // the completion owns it now
    if (st_->driver != nullptr) driver_want_turn(st_->driver);
    if (c->done_inline) {
      settle_calls(env, {c});
      return env.Undefined();
    }
    ++st_->pending;
    st_->busy_changed();
    return env.Undefined();
  }

  // checkKeysAsync(keys, counts, cost, slot): rl_check_keys_async with
  // keys[j] (a string or bytes) against counts[j] policies, their ids pair
  // by pair in the shared Int32Array; settled as checkAsync's. lib/index.js
  // checks the arguments first; what is checked here guards the buffers.
  Napi::Value CheckKeysAsync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    Addon &a = addon(env);
    if (a.done == nullptr || a.ids == nullptr)
      throw_type(env, "setup() was not called");
    if (!info[0].IsArray() || !info[1].IsArray())
      throw_type(env, "checkKeysAsync(keys, counts, cost, slot)");
    Napi::Array key_values = info[0].As<Napi::Array>();
    Napi::Array count_values = info[1].As<Napi::Array>();
    const uint32_t n_keys = key_values.Length();
    if (n_keys == 0 || n_keys > RL_MAX_KEYS || count_values.Length() != n_keys)
      throw_code(env, RL_E_INVALID_ARG,
                 "keys: expected 1 to " + std::to_string(RL_MAX_KEYS) +
                     " keys, got " + std::to_string(n_keys));
    size_t counts[RL_MAX_KEYS];
    size_t total = 0;
    for (uint32_t j = 0; j < n_keys; ++j) {
      const int64_t c = int64_arg(env, count_values.Get(j), "policy count");
      if (c < 1 || static_cast<size_t>(c) > kMaxPolicies - total)
        throw_code(env, RL_E_INVALID_ARG,
                   "policies: each pair has 1 or more and all the pairs at "
                   "most " +
                       std::to_string(kMaxPolicies));
      counts[j] = static_cast<size_t>(c);
      total += counts[j];
    }
    // The handles, copied out: a JS clock may compile policies (growing the
    // table) mid-check.
    rl_policy *ps[kMaxPolicies];
    for (size_t i = 0; i < total; ++i) {
      const int32_t id = a.ids[i];
      if (id < 0 || static_cast<size_t>(id) >= a.policies.size())
        throw_type(env, "policy: not a compiled policy");
      ps[i] = a.policies[static_cast<size_t>(id)];
    }
    // Each key's bytes (borrowed from JS: no JS runs until the call below
    // has copied them).
    std::optional<KeyArg> keys[RL_MAX_KEYS];
    const char *key_data[RL_MAX_KEYS];
    size_t key_lens[RL_MAX_KEYS];
    for (uint32_t j = 0; j < n_keys; ++j) {
      keys[j].emplace(env, key_values.Get(j));
      key_data[j] = keys[j]->data();
      key_lens[j] = keys[j]->size();
    }
    const int64_t cost =
        static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue());
    const double slot = info[3].As<Napi::Number>().DoubleValue();
    ensure_tsfn(env);

    auto call = std::make_unique<AsyncCall>();
    call->state = st_;
    call->slot = slot;
    const int rc =
        rl_check_keys_async(st_->lim, key_data, key_lens, n_keys, ps, counts,
                            cost, &async_complete, call.get());
    call->submitting = false;
    if (rc != RL_OK) {
      const std::string err = last_error_text(rc);
      rethrow_clock_error(*st_, env);
      throw_code(env, rc, err);
    }
    AsyncCall *c = call.release();  // the completion owns it now
    if (st_->driver != nullptr) driver_want_turn(st_->driver);
    if (c->done_inline) {
      // The memory store answers inline: a JS clock that threw is the
      // answer (as the synchronous check throws it).
      if (st_->clock_error != nullptr) {
        std::unique_ptr<AsyncCall> drop(c);
        rethrow_clock_error(*st_, env);
      }
      settle_calls(env, {c});
      return env.Undefined();
    }
    ++st_->pending;
    st_->busy_changed();
    return env.Undefined();
  }

  void ensure_tsfn(Napi::Env env) {
    if (st_->tsfn != nullptr) return;
    auto *hold = new std::shared_ptr<LimiterState>(st_);
    napi_value name = Napi::String::New(env, "tollgate:check");
    napi_status s = napi_create_threadsafe_function(
        env, nullptr, nullptr, name, 0, 1, hold, &tsfn_finalize, st_.get(),
        &tsfn_call_js, &st_->tsfn);
    if (s != napi_ok) {
      delete hold;
      throw_code(env, RL_E_INTERNAL, "napi_create_threadsafe_function failed");
    }
    napi_unref_threadsafe_function(env, st_->tsfn);
    st_->tsfn_ref = false;
  }

  // reset(key) -> Promise<void>
  Napi::Value Reset(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    KeyArg key(env, info[0]);
    if (st_->store_kind == RL_STORE_MEMORY) {
      const int rc = rl_reset(st_->lim, key.data(), key.size());
      if (rc != RL_OK)
        return rejected(env, make_error(env, rc, last_error_text(rc)));
      return resolved(env, env.Undefined());
    }
    std::string k(key.data(), key.size());
    auto *w = new CallWorker(
        env, st_, "tollgate:reset",
        [k](LimiterState &st) { return rl_reset(st.lim, k.data(), k.size()); },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
    return w->Start();
  }

  // block(key, durationMs) -> Promise<void>: as reset. The library checks
  // the duration (1 .. 2^40 ms, else RL_E_INVALID_ARG). The memory store
  // reads its clock here, on the JS thread; a Redis limiter with a clock
  // (TOLLGATE_TESTING builds) uses the time pinned before the work starts.
  Napi::Value Block(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    // Before the key's bytes are borrowed: the clock is JS.
    if (st_->store_kind != RL_STORE_MEMORY) pin_clock(*st_, env);
    KeyArg key(env, info[0]);
    const int64_t duration_ms = int64_arg(env, info[1], "duration");
    if (st_->store_kind == RL_STORE_MEMORY) {
      const int rc = rl_block(st_->lim, key.data(), key.size(), duration_ms);
      const std::string err = rc == RL_OK ? std::string() : last_error_text(rc);
      rethrow_clock_error(*st_, env);
      if (rc != RL_OK) return rejected(env, make_error(env, rc, err));
      return resolved(env, env.Undefined());
    }
    std::string k(key.data(), key.size());
    auto *w = new CallWorker(
        env, st_, "tollgate:block",
        [k, duration_ms](LimiterState &st) {
          return rl_block(st.lim, k.data(), k.size(), duration_ms);
        },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
    return w->Start();
  }

  // unblock(key) -> Promise<void>: as reset.
  Napi::Value Unblock(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    if (st_->store_kind != RL_STORE_MEMORY) pin_clock(*st_, env);
    KeyArg key(env, info[0]);
    if (st_->store_kind == RL_STORE_MEMORY) {
      const int rc = rl_unblock(st_->lim, key.data(), key.size());
      const std::string err = rc == RL_OK ? std::string() : last_error_text(rc);
      rethrow_clock_error(*st_, env);
      if (rc != RL_OK) return rejected(env, make_error(env, rc, err));
      return resolved(env, env.Undefined());
    }
    std::string k(key.data(), key.size());
    auto *w = new CallWorker(
        env, st_, "tollgate:unblock",
        [k](LimiterState &st) {
          return rl_unblock(st.lim, k.data(), k.size());
        },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
    return w->Start();
  }

  // ping() -> Promise<number> (round trip in ms, fractional)
  Napi::Value Ping(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    if (st_->store_kind == RL_STORE_MEMORY)
      return resolved(env, Napi::Number::New(env, 0));
    auto rtt = std::make_shared<int64_t>(0);
    auto *w = new CallWorker(
        env, st_, "tollgate:ping",
        [rtt](LimiterState &st) { return rl_ping(st.lim, rtt.get()); },
        [rtt](Napi::Env e) -> Napi::Value {
          return Napi::Number::New(e, static_cast<double>(*rtt) / 1000.0);
        });
    return w->Start();
  }

  // setList(list, entries): rl_set_list (RL_LIST_ALLOW 1, RL_LIST_DENY 2)
  // with `entries` an array of strings (UTF-8) and Uint8Arrays, checked by
  // lib/index.js. In process: no I/O, so inline.
  Napi::Value SetList(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    const int list = static_cast<int>(int64_arg(env, info[0], "list"));
    set_list(env, st_->lim, list, info[1], nullptr);
    return env.Undefined();
  }

  // rl_set_list of `entries` (a JS array); `what` ("allow", "deny") prefixes
  // the library's message, which names a bad entry by index only.
  static void set_list(Napi::Env env, rl_limiter *lim, int list,
                       Napi::Value entries, const char *what) {
    if (!entries.IsArray())
      throw_type(env,
                 std::string(what ? what : "entries") + " must be an array");
    Napi::Array arr = entries.As<Napi::Array>();
    const uint32_t n = arr.Length();
    std::vector<std::string> copies;
    copies.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      Napi::Value e = arr.Get(i);
      if (e.IsString()) {
        copies.push_back(e.As<Napi::String>().Utf8Value());
      } else if (e.IsTypedArray() &&
                 e.As<Napi::TypedArray>().TypedArrayType() ==
                     napi_uint8_array) {
        Napi::Uint8Array b = e.As<Napi::Uint8Array>();
        copies.emplace_back(reinterpret_cast<const char *>(b.Data()),
                            b.ByteLength());
      } else {
        throw_type(env, std::string(what ? what : "entries") + "[" +
                            std::to_string(i) +
                            "] must be a string, Buffer or Uint8Array");
      }
    }
    std::vector<const char *> ptrs;
    std::vector<size_t> lens;
    ptrs.reserve(copies.size());
    lens.reserve(copies.size());
    for (const std::string &c : copies) {
      ptrs.push_back(c.data());
      lens.push_back(c.size());
    }
    const int rc = rl_set_list(lim, list, ptrs.data(), lens.data(), n);
    if (rc != RL_OK) {
      const std::string message = last_error_text(rc);
      throw_code(env, rc, what ? std::string(what) + ": " + message : message);
    }
  }

  Napi::Value Health(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    rl_health_info h = RL_HEALTH_INIT;
    int rc = rl_health(st_->lim, &h);
    if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
    // Every node rl_health counted (the list only grows while the limiter
    // lives, so each index below h.nodes stays valid).
    std::vector<rl_node_info> nodes(h.nodes);
    for (uint32_t i = 0; i < h.nodes; ++i) {
      nodes[i] = RL_NODE_INIT;
      rc = rl_health_node(st_->lim, i, &nodes[i]);
      if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
    }
    Napi::Object o = Napi::Object::New(env);
    auto num = [&](uint64_t v) {
      return Napi::Number::New(env, static_cast<double>(v));
    };
    o.Set("store", h.store_kind == RL_STORE_REDIS ? "redis" : "memory");
    o.Set("connection", connection_name(h.connection));
    o.Set("checks", num(h.checks));
    o.Set("allowed", num(h.allowed));
    o.Set("denied", num(h.denied));
    o.Set("errors", num(h.errors));
    o.Set("liveKeys", num(h.live_keys));
    o.Set("evictions", num(h.evictions));
    o.Set("inFlight", num(h.in_flight));
    o.Set("reconnects", num(h.reconnects));
    if (h.last_ping_us < 0)
      o.Set("lastPingMs", env.Null());
    else
      o.Set("lastPingMs",
            Napi::Number::New(env, static_cast<double>(h.last_ping_us) / 1e3));
    o.Set("storeErrors", num(h.store_errors));
    o.Set("failOpen", num(h.fail_open));
    o.Set("failClosed", num(h.fail_closed));
    o.Set("localFallback", num(h.local_fallback));
    o.Set("denyCacheHits", num(h.deny_cache_hits));
    o.Set("shadowDenied", num(h.shadow_denied));
    o.Set("listAllowed", num(h.list_allowed));
    o.Set("listDenied", num(h.list_denied));
    o.Set("asyncPending", num(h.async_pending));
    o.Set("asyncRefused", num(h.async_refused));
    o.Set("serverVersion",
          std::string(h.server_version,
                      strnlen(h.server_version, sizeof h.server_version)));
    o.Set("lastError", std::string(h.last_error,
                                   strnlen(h.last_error, sizeof h.last_error)));
    const char *topology = "memory";
    switch (h.topology) {
      case RL_TOPOLOGY_STANDALONE:
        topology = "standalone";
        break;
      case RL_TOPOLOGY_CLUSTER:
        topology = "cluster";
        break;
      case RL_TOPOLOGY_SENTINEL:
        topology = "sentinel";
        break;
      default:
        break;
    }
    o.Set("topology", topology);
    if (h.slot_map_age_ms < 0)
      o.Set("slotMapAgeMs", env.Null());
    else
      o.Set("slotMapAgeMs",
            Napi::Number::New(env, static_cast<double>(h.slot_map_age_ms)));
    o.Set("slotMapRefreshes", num(h.slot_map_refreshes));
    o.Set("moved", num(h.moved));
    o.Set("ask", num(h.ask));
    o.Set("masterSwitches", num(h.master_switches));
    Napi::Array list = Napi::Array::New(env, nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      const rl_node_info &n = nodes[i];
      Napi::Object no = Napi::Object::New(env);
      no.Set("address",
             std::string(n.address, strnlen(n.address, sizeof n.address)));
      no.Set("role", n.role == RL_ROLE_PRIMARY ? "primary" : "other");
      no.Set("connection", connection_name(n.connection));
      no.Set("inFlight", num(n.in_flight));
      no.Set("errors", num(n.errors));
      no.Set("reconnects", num(n.reconnects));
      no.Set("lastError",
             std::string(n.last_error,
                         strnlen(n.last_error, sizeof n.last_error)));
      list.Set(static_cast<uint32_t>(i), no);
    }
    o.Set("nodes", list);
    return o;
  }

  static const char *connection_name(int32_t connection) {
    switch (connection) {
      case RL_CONN_CONNECTING:
        return "connecting";
      case RL_CONN_READY:
        return "ready";
      case RL_CONN_DOWN:
        return "down";
      default:
        return "none";
    }
  }

  // metrics() -> [{ type, name, help, labels, value, buckets, count, sum }]:
  // one rl_metrics snapshot (no I/O). A histogram's buckets are its
  // cumulative { le, count } pairs, seconds, the last one le: Infinity
  // (its count is `count`); other types have [] and count 0, sum 0.
  Napi::Value Metrics(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    rl_metrics *m = nullptr;
    int rc = rl_metrics_read(st_->lim, &m);
    if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
    std::unique_ptr<rl_metrics, void (*)(rl_metrics *)> owned(m,
                                                              &rl_metrics_free);
    Napi::Array out = Napi::Array::New(env);
    uint32_t n = 0;
    rl_metric s = RL_METRIC_INIT;
    while ((rc = rl_metrics_next(m, &s)) == RL_OK) {
      Napi::Object o = Napi::Object::New(env);
      const bool histogram = s.type == RL_METRIC_HISTOGRAM;
      o.Set("type", s.type == RL_METRIC_COUNTER ? "counter"
                    : s.type == RL_METRIC_GAUGE ? "gauge"
                    : histogram                 ? "histogram"
                                                : "unknown");
      o.Set("name", s.name);
      o.Set("help", s.help);
      Napi::Object labels = Napi::Object::New(env);
      for (uint32_t i = 0; i < s.n_labels && i < RL_METRIC_MAX_LABELS; ++i)
        labels.Set(s.label_names[i], s.label_values[i]);
      o.Set("labels", labels);
      o.Set("value", Napi::Number::New(env, histogram ? 0.0 : s.value));
      Napi::Array buckets = Napi::Array::New(env);
      if (histogram) {
        uint32_t b = 0;
        const auto bucket = [&](double le, uint64_t count) {
          Napi::Object e = Napi::Object::New(env);
          e.Set("le", Napi::Number::New(env, le));
          e.Set("count", Napi::Number::New(env, static_cast<double>(count)));
          buckets.Set(b++, e);
        };
        for (size_t i = 0; i < s.n_buckets; ++i)
          bucket(s.bucket_bounds[i], s.bucket_counts[i]);
        bucket(std::numeric_limits<double>::infinity(), s.count);
      }
      o.Set("buckets", buckets);
      o.Set("count", Napi::Number::New(
                         env, histogram ? static_cast<double>(s.count) : 0.0));
      o.Set("sum", Napi::Number::New(env, histogram ? s.sum : 0.0));
      out.Set(n++, o);
    }
    if (rc != RL_E_DONE) throw_code(env, rc, last_error_text(rc));
    return out;
  }

  // setLogHandler(dispatch, level): rl_set_log_handler at `level` (1 error
  // .. 4 debug) with messages delivered to dispatch(level, message) on the
  // JS thread; setLogHandler(null) turns it off. lib/index.js checks the
  // arguments.
  Napi::Value SetLogHandler(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    if (!info[0].IsFunction()) {
      stop_log(*st_, false);
      return env.Undefined();
    }
    set_log(env, info[0].As<Napi::Function>(),
            static_cast<int>(int64_arg(env, info[1], "level")));
    return env.Undefined();
  }

  // Installs `fn` as the dispatcher at `level` (JS thread). The previous
  // handler is off before anything else, and what it queued is dropped, so
  // the new one sees only what is logged after this.
  void set_log(Napi::Env env, Napi::Function fn, int level) {
    LimiterState &st = *st_;
    if (level < RL_LOG_ERROR || level > RL_LOG_DEBUG)
      throw_code(env, RL_E_INVALID_ARG,
                 "level: expected 1 (error) to 4 (debug), got " +
                     std::to_string(level));
    if (!st.log) st.log = std::make_shared<LogSink>();
    stop_log(st, false);
    LogSink &sink = *st.log;
    if (sink.tsfn == nullptr) {
      auto *hold = new std::shared_ptr<LogSink>(st.log);
      napi_threadsafe_function f = nullptr;
      napi_value name = Napi::String::New(env, "tollgate:log");
      const napi_status s = napi_create_threadsafe_function(
          env, nullptr, nullptr, name, 0, 1, hold, &log_tsfn_finalize, &sink,
          &log_call_js, &f);
      if (s != napi_ok) {
        delete hold;
        throw_code(env, RL_E_INTERNAL,
                   "napi_create_threadsafe_function failed");
      }
      // A log hook never keeps the process alive.
      napi_unref_threadsafe_function(env, f);
      std::lock_guard<std::mutex> lock(sink.mu);
      sink.tsfn = f;
    }
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_reference(env, fn, 0, &sink.fn));
    const int rc = rl_set_log_handler(st.lim, level, &log_handler, &sink);
    if (rc != RL_OK) {
      const std::string err = last_error_text(rc);
      stop_log(st, false);
      throw_code(env, rc, err);
    }
  }

  Napi::Value KeysOpen(const Napi::CallbackInfo &info);

  // leaseAcquire(key, maxInFlight, ttlMs) -> Promise<{ acquired, inFlight,
  // maxInFlight, retryAfter, source, lease }> (lease_result). Redis: on the
  // threadpool (rl_lease_acquire waits for the server); memory: inline, as
  // block(). The library checks the ranges (RL_E_INVALID_ARG).
  Napi::Value LeaseAcquire(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    if (st_->store_kind != RL_STORE_MEMORY) pin_clock(*st_, env);
    KeyArg key(env, info[0]);
    const int64_t max_in_flight = int64_arg(env, info[1], "maxInFlight");
    const int64_t ttl_ms = int64_arg(env, info[2], "ttl");
    auto r = std::make_shared<LeaseAcquired>();
    if (st_->store_kind == RL_STORE_MEMORY) {
      const int rc =
          rl_lease_acquire(st_->lim, key.data(), key.size(), max_in_flight,
                           ttl_ms, &r->box->lease, &r->info);
      const std::string err = rc == RL_OK ? std::string() : last_error_text(rc);
      rethrow_clock_error(*st_, env);
      if (rc != RL_OK) return rejected(env, make_error(env, rc, err));
      return resolved(env, lease_result(env, *r));
    }
    std::string k(key.data(), key.size());
    auto *w = new CallWorker(
        env, st_, "tollgate:lease",
        [k, max_in_flight, ttl_ms, r](LimiterState &st) {
          return rl_lease_acquire(st.lim, k.data(), k.size(), max_in_flight,
                                  ttl_ms, &r->box->lease, &r->info);
        },
        [r](Napi::Env e) -> Napi::Value { return lease_result(e, *r); });
    return w->Start();
  }

  // leaseRenew(nativeLease, ttlMs) -> Promise<void>: RL_E_NOT_FOUND when
  // the lease is no longer held, RL_E_INVALID_ARG for another limiter's.
  Napi::Value LeaseRenew(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    if (st_->store_kind != RL_STORE_MEMORY) pin_clock(*st_, env);
    std::shared_ptr<LeaseBox> box = lease_arg(env, info[0]);
    const int64_t ttl_ms = int64_arg(env, info[1], "ttl");
    if (st_->store_kind == RL_STORE_MEMORY) {
      const int rc = rl_lease_renew(st_->lim, box->lease, ttl_ms);
      const std::string err = rc == RL_OK ? std::string() : last_error_text(rc);
      rethrow_clock_error(*st_, env);
      if (rc != RL_OK) return rejected(env, make_error(env, rc, err));
      return resolved(env, env.Undefined());
    }
    auto *w = new CallWorker(
        env, st_, "tollgate:lease",
        [box, ttl_ms](LimiterState &st) {
          return rl_lease_renew(st.lim, box->lease, ttl_ms);
        },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
    return w->Start();
  }

  // leaseRelease(nativeLease) -> Promise<boolean>: whether the lease was
  // held until now (false: it had expired, or was released already).
  Napi::Value LeaseRelease(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ensure_open(env);
    if (st_->store_kind != RL_STORE_MEMORY) pin_clock(*st_, env);
    std::shared_ptr<LeaseBox> box = lease_arg(env, info[0]);
    if (st_->store_kind == RL_STORE_MEMORY) {
      int was_held = 0;
      const int rc = rl_lease_release(st_->lim, box->lease, &was_held);
      const std::string err = rc == RL_OK ? std::string() : last_error_text(rc);
      rethrow_clock_error(*st_, env);
      if (rc != RL_OK) return rejected(env, make_error(env, rc, err));
      return resolved(env, Napi::Boolean::New(env, was_held != 0));
    }
    auto was_held = std::make_shared<int>(0);
    auto *w = new CallWorker(
        env, st_, "tollgate:lease",
        [box, was_held](LimiterState &st) {
          return rl_lease_release(st.lim, box->lease, was_held.get());
        },
        [was_held](Napi::Env e) -> Napi::Value {
          return Napi::Boolean::New(e, *was_held != 0);
        });
    return w->Start();
  }

  // close() -> Promise<void>; idempotent.
  Napi::Value Close(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    LimiterState &st = *st_;
    if (st.destroyed) return resolved(env, env.Undefined());
    napi_deferred d;
    napi_value promise;
    NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &d, &promise),
                         Napi::Value());
    st.close_waiters.push_back(d);
    st.closed = true;
    // No log message reaches JS after close(), even while calls in
    // progress hold the destroy back.
    stop_log(st, true);
    st.maybe_start_destroy();
    return Napi::Value(env, promise);
  }

  Napi::Value StoreKind(const Napi::CallbackInfo &info) {
    return Napi::String::New(
        info.Env(), st_->store_kind == RL_STORE_REDIS ? "redis" : "memory");
  }

 public:
  std::shared_ptr<LimiterState> state() const { return st_; }

 private:
  std::shared_ptr<LimiterState> st_;
};

// ---- Key listing -----------------------------------------------------------

// One rl_keys iterator. next() -> Promise<entry | null>; free() releases it.
class Keys : public Napi::ObjectWrap<Keys> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeKeys",
                       {InstanceMethod<&Keys::Next>("next"),
                        InstanceMethod<&Keys::Free>("free")});
  }

  explicit Keys(const Napi::CallbackInfo &info)
      : Napi::ObjectWrap<Keys>(info), slot_(std::make_shared<KeysSlot>()) {}

  ~Keys() override { release(); }

  void attach(std::shared_ptr<LimiterState> st, rl_keys *it) {
    st_ = std::move(st);
    slot_->it = it;
    std::lock_guard<std::mutex> lock(st_->iter_mu);
    st_->iterators.insert(slot_.get());
  }

 private:
  struct Entry {
    std::string key;
    int64_t remaining = 0;
    int64_t reset_after_ms = 0;
    size_t policy_index = 0;
  };

  Napi::Value Next(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!st_ || st_->closed)
      return rejected(env,
                      make_error(env, RL_E_CLOSED, "the limiter is closed"));
    pin_clock(*st_, env);
    auto entry = std::make_shared<Entry>();
    std::shared_ptr<KeysSlot> slot = slot_;
    auto *w = new CallWorker(
        env, st_, "tollgate:keys",
        [slot, entry](LimiterState &) {
          std::lock_guard<std::mutex> lock(slot->mu);
          if (slot->it == nullptr) return RL_E_DONE;
          rl_key_info ki = RL_KEY_INFO_INIT;
          const int rc = rl_keys_next(slot->it, &ki);
          if (rc != RL_OK) return rc;
          try {
            entry->key.assign(ki.key, ki.key_len);
          } catch (...) {
            return RL_E_NOMEM;
          }
          entry->policy_index = ki.policy_index;
          entry->remaining = ki.remaining;
          entry->reset_after_ms = ki.reset_after_ms;
          return RL_OK;
        },
        [entry](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("key", Napi::Buffer<char>::Copy(e, entry->key.data(),
                                                entry->key.size()));
          // The policy is the caller's: lib/index.js maps the index to it.
          o.Set("policyIndex", static_cast<double>(entry->policy_index));
          o.Set("remaining", static_cast<double>(entry->remaining));
          o.Set("resetAfter", static_cast<double>(entry->reset_after_ms));
          return o;
        });
    return w->Start();
  }

  Napi::Value Free(const Napi::CallbackInfo &info) {
    release();
    return info.Env().Undefined();
  }

  // Not while a next() is running: JS awaits each next() before free().
  void release() {
    if (!st_) return;
    {
      std::lock_guard<std::mutex> lock(st_->iter_mu);
      if (st_->iterators.erase(slot_.get()) != 0) {
        std::lock_guard<std::mutex> slot_lock(slot_->mu);
        rl_keys_free(slot_->it);
        slot_->it = nullptr;
      }
    }
    st_.reset();
  }

  std::shared_ptr<LimiterState> st_;
  std::shared_ptr<KeysSlot> slot_;
};

// keysOpen(pid): pid as in a check (one policy id, or -n with n ids in the
// shared Int32Array).
Napi::Value Limiter::KeysOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  ensure_open(env);
  if (!info[0].IsNumber()) throw_type(env, "policies: expected a policy id");
  const int32_t pid = info[0].As<Napi::Number>().Int32Value();
  rl_policy *ps[kMaxPolicies];
  const size_t n = gather_policies(env, addon(env), pid, ps);
  rl_keys *it = nullptr;
  const int rc = rl_keys_open(st_->lim, ps, n, &it);
  if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
  Napi::Object obj;
  try {
    obj = addon(env).keys_ctor.New({});
  } catch (...) {
    rl_keys_free(it);
    throw;
  }
  Keys::Unwrap(obj)->attach(st_, it);
  return obj;
}

// check(key?), with handle, pid and cost in the shared input Float64Array:
// the synchronous check (memory store). The decision goes to the shared
// output Float64Array; errors throw. Without a key argument the key is the
// last string key that a check here converted and answered `true` for
// (lib/index.js passes no key only when it is that same string). A plain
// napi callback (no Napi::CallbackInfo) whose data pointer is the Addon, so
// the hot path makes one napi call for its arguments and no instance-data or
// unwrap lookup.
napi_value fast_check(napi_env e, napi_callback_info info) {
  size_t argc = 1;
  napi_value key_value;
  void *data = nullptr;
  Napi::Env env(e);
  NAPI_THROW_IF_FAILED(
      env, napi_get_cb_info(e, info, &argc, &key_value, nullptr, &data),
      nullptr);
  Addon &a = *static_cast<Addon *>(data);
  if (a.in == nullptr) throw_type(env, "setup() was not called");
  const double hd = a.in[0];
  LimiterState *st = hd >= 0 && hd < static_cast<double>(a.handles.size())
                         ? a.handles[static_cast<size_t>(hd)]
                         : nullptr;
  if (st == nullptr || st->closed)
    throw_code(env, RL_E_CLOSED, "the limiter is closed");
  const bool cached = argc < 1;
  if (cached && !a.key_cache_valid) throw_type(env, "check: no key");
  // A copy even of the cached bytes: a JS clock may run a nested check.
  KeyArg key =
      cached ? KeyArg(a.key_cache, a.key_cache_len) : KeyArg(env, key_value);
  const int32_t pid = static_cast<int32_t>(a.in[1]);
  const int64_t cost = static_cast<int64_t>(a.in[2]);
  // The handles, copied out: a JS clock may compile policies (growing the
  // table) mid-check.
  rl_policy *ps[kMaxPolicies];
  const size_t n = gather_policies(env, a, pid, ps);
  rl_decision d = RL_DECISION_INIT;
  const int rc = rl_check(st->lim, &d, key.data(), key.size(), ps, n, cost);
  if (st->clock_error != nullptr) rethrow_clock_error(*st, env);
  if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
  write_decision(a.out, d);
  if (cached || !key.small_string()) return nullptr;
  // After the check: whatever a nested check cached meanwhile, this key's
  // bytes are the cache now, and JS remembers this key when it gets true.
  std::memcpy(a.key_cache, key.data(), key.size());
  a.key_cache_len = key.size();
  a.key_cache_valid = true;
  napi_value t = nullptr;
  napi_get_boolean(e, true, &t);
  return t;
}

napi_value FastCheck(napi_env env, napi_callback_info info) {
  try {
    return fast_check(env, info);
  } catch (const Napi::Error &e) {
    e.ThrowAsJavaScriptException();
  }
  return nullptr;
}

// ---- Module ----------------------------------------------------------------

// setup(makeError, makeDecision, outFloat64Array, idsInt32Array,
//       inFloat64Array, settle, settleError, doneFloat64Array)
Napi::Value Setup(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Addon &a = addon(env);
  if (!info[0].IsFunction() || !info[1].IsFunction() ||
      !info[2].IsTypedArray() || !info[3].IsTypedArray() ||
      !info[4].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      !info[5].IsFunction() || !info[6].IsFunction() ||
      !info[7].IsTypedArray() ||
      info[7].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_type(env,
               "setup(makeError, makeDecision, out, ids, in, settle, "
               "settleError, done)");
  a.make_error = Napi::Persistent(info[0].As<Napi::Function>());
  a.make_decision = Napi::Persistent(info[1].As<Napi::Function>());
  Napi::Float64Array out = info[2].As<Napi::Float64Array>();
  Napi::Int32Array ids = info[3].As<Napi::Int32Array>();
  Napi::Float64Array in = info[4].As<Napi::Float64Array>();
  Napi::Float64Array done = info[7].As<Napi::Float64Array>();
  if (out.ElementLength() < static_cast<size_t>(kOutSlots) ||
      ids.ElementLength() < kMaxPolicies || in.ElementLength() < 3 ||
      done.ElementLength() < static_cast<size_t>(kDoneSlots))
    throw_type(env, "setup: buffers too small");
  a.out_ref = Napi::Persistent(out);
  a.ids_ref = Napi::Persistent(ids);
  a.in_ref = Napi::Persistent(in);
  a.out = out.Data();
  a.ids = ids.Data();
  a.in = in.Data();
  a.settle = Napi::Persistent(info[5].As<Napi::Function>());
  a.settle_error = Napi::Persistent(info[6].As<Napi::Function>());
  a.done_ref = Napi::Persistent(done);
  a.done = done.Data();
  a.done_cap = done.ElementLength() / kDoneSlots;
  return env.Undefined();
}

// lastError() -> string: rl_last_error() of this thread.
Napi::Value LastError(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), rl_last_error());
}

// headers(allowed, limit, remaining, resetAfter, retryAfter, source,
//         policyIndex, policyId, name, shadow) -> object
Napi::Value Headers(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Addon &a = addon(env);
  rl_decision d = RL_DECISION_INIT;
  d.allowed = info[0].ToBoolean().Value() ? 1 : 0;
  d.limit = int64_arg(env, info[1], "decision.limit");
  d.remaining = int64_arg(env, info[2], "decision.remaining");
  d.reset_after_ms = int64_arg(env, info[3], "decision.resetAfter");
  d.retry_after_ms = int64_arg(env, info[4], "decision.retryAfter");
  d.source = static_cast<int32_t>(int64_arg(env, info[5], "decision.source"));
  d.policy_index =
      static_cast<uint32_t>(int64_arg(env, info[6], "decision.policyIndex"));
  d.shadow = info.Length() > 9 && info[9].ToBoolean().Value() ? 1 : 0;
  rl_policy *ps[kMaxPolicies];
  gather_policies(env, a, info[7].As<Napi::Number>().Int32Value(), ps);
  std::string name = info[8].As<Napi::String>().Utf8Value();
  rl_headers h = RL_HEADERS_INIT;
  const int rc = rl_headers_format(&h, &d, ps[0], name.data(), name.size());
  if (rc != RL_OK) throw_code(env, rc, last_error_text(rc));
  Napi::Object o = Napi::Object::New(env);
  o.Set("RateLimit-Policy", h.ratelimit_policy);
  o.Set("RateLimit", h.ratelimit);
  o.Set("X-RateLimit-Limit", h.x_ratelimit_limit);
  o.Set("X-RateLimit-Remaining", h.x_ratelimit_remaining);
  o.Set("X-RateLimit-Reset", h.x_ratelimit_reset);
  if (h.retry_after[0] != '\0') o.Set("Retry-After", h.retry_after);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto *a = new Addon();
  env.SetInstanceData<Addon>(a);  // deleted with the environment

  Napi::Function limiter = Limiter::Define(env);
  a->limiter_ctor = Napi::Persistent(limiter);
  Napi::Function keys = Keys::Define(env);
  a->keys_ctor = Napi::Persistent(keys);
  a->lease_ctor = Napi::Persistent(NativeLease::Define(env));

  exports.Set("NativeLimiter", limiter);
  exports.Set("setup", Napi::Function::New<Setup>(env, "setup"));
  exports.Set("compilePolicy",
              Napi::Function::New<CompilePolicy>(env, "compilePolicy"));
  exports.Set("parsePolicy",
              Napi::Function::New<ParsePolicy>(env, "parsePolicy"));
  exports.Set("parsePeriod",
              Napi::Function::New<ParsePeriod>(env, "parsePeriod"));
  exports.Set("lastError", Napi::Function::New<LastError>(env, "lastError"));
  napi_value check_fn;
  NAPI_THROW_IF_FAILED(env,
                       napi_create_function(env, "check", NAPI_AUTO_LENGTH,
                                            FastCheck, a, &check_fn),
                       exports);
  exports.Set("check", check_fn);
  exports.Set("headers", Napi::Function::New<Headers>(env, "headers"));
  exports.Set("version", rl_version_string());
  exports.Set("versionNumber", Napi::Number::New(env, rl_version_number()));
  exports.Set("headerVersionNumber", Napi::Number::New(env, RL_VERSION_NUMBER));
#ifdef TOLLGATE_NODE_TESTING
  exports.Set("testing", true);
#else
  exports.Set("testing", false);
#endif
  Napi::Object codes = Napi::Object::New(env);
  // Every code the library knows, by its own names (RL_OK down to the
  // first code rl_error_name does not know).
  for (int c = -1; rl_error_name(c) != nullptr; --c)
    codes.Set(rl_error_name(c), c);
  exports.Set("maxPolicies", RL_MAX_POLICIES);
  exports.Set("maxKeys", RL_MAX_KEYS);
  exports.Set("maxInFlight", Napi::Number::New(env, RL_MAX_IN_FLIGHT));
  exports.Set("maxLeaseTtl",
              Napi::Number::New(env, static_cast<double>(RL_MAX_LEASE_TTL_MS)));
  exports.Set("codes", codes);
  Napi::Object fm = Napi::Object::New(env);
  fm.Set("open", RL_FAIL_OPEN);
  fm.Set("closed", RL_FAIL_CLOSED);
  fm.Set("local", RL_FAIL_LOCAL);
  fm.Set("error", RL_FAIL_ERROR);
  exports.Set("failureModes", fm);
  exports.Set("listAllow", RL_LIST_ALLOW);
  exports.Set("listDeny", RL_LIST_DENY);
  exports.Set("maxListEntries", Napi::Number::New(env, RL_MAX_LIST_ENTRIES));
  return exports;
}

}  // namespace

NODE_API_MODULE(tollgate, Init)
