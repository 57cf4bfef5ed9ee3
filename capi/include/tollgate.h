/*
 * tollgate.h - the stable C ABI of tollgate, a rate limiter shared by many
 * processes and many languages.
 *
 * This header is the only contract: the Python and Node packages and every C
 * program see nothing else. It compiles as C99 and as C++.
 *
 * Conventions
 *   - Every function returns int: RL_OK (0) or a negative RL_E_* code. Codes
 *     are never renumbered. Results come back through out-parameters, which
 *     come first in the argument list.
 *   - After a failure, rl_last_error() describes it. The text is
 *     thread-local, never NULL, and valid until the next tollgate call on the
 *     same thread. It never contains a password or other secret.
 *   - Structs passed in or out start with `uint32_t version`. Initialise them
 *     with their RL_*_INIT macro; the library checks the version and reads or
 *     writes only the fields that version has. New fields are only ever
 *     appended, with a new version number.
 *   - Keys are (pointer, length) pairs: binary-safe, no NUL terminator needed.
 *   - Times in decisions are milliseconds. Internally tollgate keeps integer
 *     microseconds, so there is no floating-point drift.
 *   - No C++ exception ever crosses this boundary.
 *   - fork(): a Redis limiter is safe to use in the child (it opens its own
 *     connection). A memory limiter is not if another thread was using it
 *     at the moment of the fork (a lock it held stays held in the child):
 *     create memory limiters after forking, or fork while no other thread
 *     checks.
 */
#ifndef TOLLGATE_H
#define TOLLGATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Export macro -------------------------------------------------------- */

#if defined(TOLLGATE_STATIC)
#define RL_API
#elif defined(_WIN32)
#if defined(TOLLGATE_BUILDING)
#define RL_API __declspec(dllexport)
#else
#define RL_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define RL_API __attribute__((visibility("default")))
#else
#define RL_API
#endif

/* ---- Versions --------------------------------------------------------------
 */

#define RL_VERSION_MAJOR 0
#define RL_VERSION_MINOR 1
#define RL_VERSION_PATCH 0
/* major * 10000 + minor * 100 + patch */
#define RL_VERSION_NUMBER \
  (RL_VERSION_MAJOR * 10000 + RL_VERSION_MINOR * 100 + RL_VERSION_PATCH)
#define RL_VERSION_STRING "0.1.0"
/* The ABI major is the SONAME suffix: libtollgate.so.1. It changes only if a
 * released symbol or struct layout ever changes incompatibly. */
#define RL_ABI_MAJOR 1

/* The version of the library actually loaded (compare with
 * RL_VERSION_NUMBER to detect a header/library mismatch). Thread-safe. */
RL_API unsigned rl_version_number(void);
/* Static string, e.g. "0.1.0". Thread-safe. */
RL_API const char *rl_version_string(void);

/* ---- Error codes (never renumbered) ----------------------------------------
 */

#define RL_OK 0
/* A required pointer is NULL (a NULL entry in a check's policy array
 * included), a cost is negative, an option name is unknown, or another
 * argument is out of its documented range. */
#define RL_E_INVALID_ARG (-1)
/* The key is empty, or NULL with a non-zero length. */
#define RL_E_KEY_INVALID (-2)
/* The key is longer than the limiter's max_key_len. */
#define RL_E_KEY_TOO_LONG (-3)
/* A policy is invalid: limit or period <= 0, negative burst, unknown
 * algorithm, non-zero flags, strikes without a block or a period, the same
 * policy (or name) twice in one check, or a policy or period text that
 * does not parse. */
#define RL_E_POLICY (-4)
/* A value would overflow tollgate's integer arithmetic (the bounds are in
 * docs/algorithms.md); refused rather than wrapped. */
#define RL_E_OVERFLOW (-5)
/* A struct's version field is 0 or newer than this library knows. */
#define RL_E_VERSION (-6)
/* Out of memory. */
#define RL_E_NOMEM (-7)
/* The store URL is malformed or names an unknown scheme or option. */
#define RL_E_URL (-8)
/* The request is valid but this store or build does not support it. */
#define RL_E_UNSUPPORTED (-9)
/* An unexpected internal failure (a bug: please report it). */
#define RL_E_INTERNAL (-10)
/* Network stores. A check returns these only with RL_FAIL_ERROR; the other
 * failure modes answer with a decision whose `source` says so. */
/* The store could not be reached (refused, reset, unreachable, down). */
#define RL_E_CONNECT (-11)
/* The call's deadline passed before the store answered. */
#define RL_E_TIMEOUT (-12)
/* The store refused the credentials (the password is never echoed). */
#define RL_E_AUTH (-13)
/* TLS failed: handshake, certificate verification, hostname mismatch. */
#define RL_E_TLS (-14)
/* The store sent a malformed, oversized or unexpected reply. */
#define RL_E_PROTOCOL (-15)
/* The store answered with an error reply (e.g. out of memory, READONLY). */
#define RL_E_STORE (-16)
/* The limiter was destroyed while the call was pending. */
#define RL_E_CLOSED (-17)
/* rl_keys_next: the listing has no more entries (not a failure). */
#define RL_E_DONE (-18)
/* A refund (negative cost) found nothing to give back: the key has no
 * usage under any of the check's policies (never charged, already given
 * back, or refilled). Nothing was written. */
#define RL_E_NOT_FOUND (-19)
/* rl_check_async, rl_check_keys_async: the limiter already has max_async
 * asynchronous calls waiting for the store (rl_options.max_async); this one
 * is refused at once, its callback never runs, and nothing is queued. */
#define RL_E_BUSY (-20)

/* Static English text for a code, never NULL ("unknown error code" for
 * codes this version does not know). Thread-safe. */
RL_API const char *rl_strerror(int code);

/* The code's name as this header spells it ("RL_OK", "RL_E_TIMEOUT", ...),
 * static, or NULL for a code this version does not know: bindings build
 * their error classes from it instead of copying the list. Thread-safe. */
RL_API const char *rl_error_name(int code);

/* Detail of the last failure on the calling thread; never NULL ("" when the
 * last call succeeded). Valid until the next tollgate call on this thread. */
RL_API const char *rl_last_error(void);

/* ---- Algorithms and policies -----------------------------------------------
 */

/* The algorithms (see docs/algorithms.md for exact integer formulas). */
#define RL_ALG_GCRA 0           /* generic cell rate; the default */
#define RL_ALG_TOKEN_BUCKET 1   /* capacity = burst, refill limit/period */
#define RL_ALG_FIXED_WINDOW 2   /* epoch-aligned windows of `period` */
#define RL_ALG_SLIDING_WINDOW 3 /* two-window weighted counter */

/* The most policies one check takes (rl_check's n_policies). */
#define RL_MAX_POLICIES 16

/* The fields of a policy: at most `limit` units per `period_ms`. Used to
 * create a policy handle (rl_policy_create) and to read one back
 * (rl_policy_get, rl_key_info). */
#define RL_POLICY_SPEC_VERSION 3
typedef struct rl_policy_spec {
  uint32_t version;  /* RL_POLICY_SPEC_VERSION */
  int32_t algorithm; /* RL_ALG_* */
  int64_t limit;     /* >= 1 */
  int64_t period_ms; /* >= 1 */
  /* GCRA and token bucket: how many units may pass at once (bucket
   * capacity). 0 means "same as limit", so "100 per hour" lets 100 through
   * at once. Must be 0 for the window algorithms. */
  int64_t burst;
  /* 0, or RL_POLICY_SHADOW: shadow mode (docs/algorithms.md, "Shadow
   * mode"): the policy is evaluated and its state kept as if enforced, but
   * its denial does not deny the check (rl_decision.shadow says so). The
   * flag is not part of the state's identity: turning it off keeps usage.
   * Text: "100/h shadow". Other bits are RL_E_POLICY. */
  uint32_t flags;
  /* Version 2. The policy's identity under a key (docs/algorithms.md,
   * "Identity"): NULL or "" for none (the policy is then known by its
   * position in a check's list), else 1 to RL_MAX_NAME_LEN bytes of
   * [A-Za-z0-9_.-] starting with a letter. Not NUL-terminated; read back
   * (rl_policy_get, rl_key_info) it points into the handle or iterator. */
  const char *name;
  size_t name_len;
  /* Version 3. A block (docs/algorithms.md, "Blocks"): when this policy
   * denies a charge, the key is blocked for block_ms (0: no block, else 1 ..
   * 2^40): every check of it is denied until then, whatever its policies,
   * with retry_after_ms saying how long. With strikes (0 or 1 .. 2^40) and
   * strikes_period_ms, the block starts at the strikes-th denial within one
   * strikes_period_ms window (windows aligned as the fixed window's);
   * without, at the first. Text: "block=15m strikes=5/h". */
  int64_t block_ms;
  int64_t strikes;
  int64_t strikes_period_ms;
} rl_policy_spec;
#define RL_POLICY_SPEC_INIT \
  { RL_POLICY_SPEC_VERSION, RL_ALG_GCRA, 0, 0, 0, 0, NULL, 0, 0, 0, 0 }
#define RL_MAX_NAME_LEN 32
#define RL_POLICY_SHADOW 1u

/* A validated policy: immutable and reference-counted. Checks take arrays
 * of handle pointers. A handle may be used by any number of threads at once
 * and released in any order relative to limiters, iterators and pending
 * asynchronous checks (each of which keeps what it needs). */
typedef struct rl_policy rl_policy;

/* Create a policy from its fields, validated exactly as a check validates
 * them (RL_E_POLICY, RL_E_OVERFLOW, RL_E_VERSION). On success *out holds one
 * reference (free it with rl_policy_release); on failure *out is NULL.
 * Thread-safe. */
RL_API int rl_policy_create(rl_policy **out, const rl_policy_spec *spec);

/* Parse the policy text syntax (docs/api-c.md, "Policy text"), e.g.
 * "100/h", "100 per 15m", "10/s burst=20", "5000/d sliding_window",
 * "5/m name=login block=15m strikes=3/h".
 * `text` is `len` bytes (no NUL needed). On failure returns RL_E_POLICY (or
 * RL_E_OVERFLOW), *out is NULL and, if `error_offset` is not NULL, it holds
 * the byte offset of the problem; rl_last_error() names it. Thread-safe. */
RL_API int rl_policy_parse(rl_policy **out, const char *text, size_t len,
                           size_t *error_offset);

/* Parse a period ("1h", "30s", "250ms", "1.5s", "1 minute", "2 days") into
 * whole milliseconds. RL_E_POLICY for malformed text, a unit not in the
 * syntax or a period that is not a whole number of milliseconds;
 * RL_E_OVERFLOW beyond 2^40 ms. Thread-safe. */
RL_API int rl_period_parse(const char *text, size_t len, int64_t *period_ms);

/* Add a reference to `policy` and return it (NULL stays NULL).
 * Thread-safe. */
RL_API rl_policy *rl_policy_retain(rl_policy *policy);

/* Drop a reference; the last one frees the policy. NULL is a no-op.
 * Thread-safe. */
RL_API void rl_policy_release(rl_policy *policy);

/* Copy a policy's fields into `out` (out->version set by the caller:
 * RL_POLICY_SPEC_INIT). Thread-safe. */
RL_API int rl_policy_get(const rl_policy *policy, rl_policy_spec *out);

/* ---- Decisions
 * --------------------------------------------------------------- */

/* Which path produced a decision, so a degraded answer is never mistaken
 * for a real one. Values are never renumbered. */
/* the configured store decided */
#define RL_SOURCE_STORE 0
/* a recent store denial, answered locally */
#define RL_SOURCE_DENY_CACHE 1
/* store unavailable: allowed (RL_FAIL_OPEN) */
#define RL_SOURCE_FAIL_OPEN 2
/* store unavailable: denied (RL_FAIL_CLOSED) */
#define RL_SOURCE_FAIL_CLOSED 3
/* store unavailable: an in-process limiter decided (RL_FAIL_LOCAL) */
#define RL_SOURCE_LOCAL 4
/* The key is on the limiter's allow list (rl_set_list): allowed, nothing
 * charged, remaining = limit. */
#define RL_SOURCE_ALLOW_LIST 5
/* The key is on the limiter's deny list: denied, retry_after_ms
 * RL_RETRY_NEVER, no store call. */
#define RL_SOURCE_DENY_LIST 6

/* retry_after_ms when the request can never pass under its policy (its
 * cost exceeds the policy's capacity). */
#define RL_RETRY_NEVER (-1)

#define RL_DECISION_VERSION 2
typedef struct rl_decision {
  uint32_t version;  /* set by the caller: RL_DECISION_VERSION */
  int32_t allowed;   /* 1 allowed (and charged), 0 denied (nothing charged) */
  int64_t limit;     /* the deciding policy's limit */
  int64_t remaining; /* units still available now, after this call */
  int64_t reset_after_ms; /* until the state is back to full (0 if full) */
  int64_t retry_after_ms; /* 0 if allowed; else wait before the same call
                             can pass, or RL_RETRY_NEVER */
  int32_t source;         /* RL_SOURCE_* */
  uint32_t policy_index;  /* index of the policy this decision reports */
  /* Version 2. 1: allowed only because what denied it is in shadow mode
   * (a policy with RL_POLICY_SHADOW, or a limiter with options.shadow):
   * limit, remaining, reset_after_ms, retry_after_ms and policy_index
   * describe the denial that was not enforced. 0 otherwise. */
  int32_t shadow;
  uint32_t reserved; /* 0 */
} rl_decision;
#define RL_DECISION_INIT \
  { RL_DECISION_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

/* ---- Limiter
 * ------------------------------------------------------------------ */

typedef struct rl_limiter rl_limiter;

/* An optional clock: microseconds since the Unix epoch. Used by the memory
 * store instead of the system clock (simulations, deterministic tests). It is
 * called on the checking thread, possibly from many threads at once, with the
 * store's shard lock NOT held. Returning a value outside [0, 2^52) makes the
 * check fail with RL_E_OVERFLOW. */
typedef int64_t (*rl_clock_fn)(void *user_data);

#define RL_STORE_MEMORY 1
#define RL_STORE_REDIS 2

/* What a network store's limiter answers when the store cannot. */
#define RL_FAIL_DEFAULT 0 /* = RL_FAIL_OPEN */
#define RL_FAIL_OPEN 1    /* allow (source RL_SOURCE_FAIL_OPEN) */
#define RL_FAIL_CLOSED 2  /* deny (source RL_SOURCE_FAIL_CLOSED) */
#define RL_FAIL_LOCAL 3   /* an in-process limiter with limit / local_divisor */
#define RL_FAIL_ERROR 4   /* return the error code (RL_E_CONNECT, ...) */

#define RL_OPTIONS_VERSION 6
typedef struct rl_options {
  uint32_t version; /* RL_OPTIONS_VERSION */
  /* NULL, "" or "memory://": the in-process memory store. */
  const char *url;
  /* Memory store: maximum live keys; beyond it the least recently used key
   * is evicted (expired keys first). 0 = default, 1,000,000. */
  uint64_t max_keys;
  /* Maximum key length in bytes, 1 .. 65536. 0 = default, 512. */
  uint32_t max_key_len;
  /* Memory store: number of lock shards, rounded up to a power of two,
   * 1 .. 1024. 0 = default (64, fewer for small max_keys). */
  uint32_t shards;
  /* Memory store: a clock to use instead of CLOCK_REALTIME. NULL = system.
   * The Redis store always uses the server's TIME and refuses a clock
   * (RL_E_UNSUPPORTED), except in builds made for tollgate's own tests. */
  rl_clock_fn clock;
  void *clock_user_data;

  /* ---- version 2: network stores. Zero/NULL means "default" or "as in
   * the URL"; a non-zero field here overrides the URL's query option. */
  uint32_t connect_timeout_ms; /* TCP + TLS + AUTH; default 1000 */
  uint32_t timeout_ms;         /* each call's deadline; default 200 */
  const char *key_prefix;      /* default "tollgate:" */
  int32_t failure_mode;        /* RL_FAIL_*; default RL_FAIL_OPEN */
  uint32_t local_divisor;      /* RL_FAIL_LOCAL: N servers share the
                                  limit, each allows limit / N; default 1 */
  int32_t deny_cache;          /* 0 default (on), 1 on, -1 off */
  uint32_t deny_cache_size;    /* entries; default 10000 */
  uint32_t connections;        /* per Redis endpoint; default 1 */
  uint32_t reconnect_max_ms;   /* backoff cap; default 2000 */
  const char *username;        /* ACL user (overrides the URL's) */
  const char *password;        /* overrides the URL's; never echoed */
  const char *tls_ca_file;     /* PEM CA bundle; default: system store */
  const char *tls_ca_dir;      /* hashed CA directory */
  const char *tls_cert_file;   /* client certificate (mutual TLS) */
  const char *tls_key_file;    /* client private key (mutual TLS) */
  const char *tls_server_name; /* SNI and name to verify; default: host */
  /* 0 default (verify), 1 verify, -1 DO NOT verify the server certificate
   * (insecure: for tests and closed networks only). */
  int32_t tls_verify;

  /* ---- version 3. A lone wait for a Redis reply (a blocking rl_check
   * that carries its own command on an idle connection, or tollgate's I/O
   * thread with a single reply awaited) polls up to this many microseconds
   * before it sleeps: on virtual machines waking an idle CPU costs tens of
   * microseconds, which the poll saves. Waiters poll only while recent lone
   * replies came back within this time (on a slower network nobody polls).
   * 0 default (200), 1 .. 1000 up to that, -1 never. The thread that calls
   * rl_check_async never waits. */
  int32_t spin_us;

  /* ---- version 4. 1: the whole limiter is in shadow mode (docs/
   * algorithms.md, "Shadow mode"): every check is evaluated and charged as
   * if enforced, and every denial (a policy's, a block's, the deny cache's,
   * fail closed's) is answered allowed with rl_decision.shadow = 1. 0
   * default (enforce). */
  int32_t shadow;

  /* ---- version 5. Metrics (docs/metrics.md, rl_metrics_read): 0 default
   * (on), 1 on, -1 off: decisions are not counted per policy label (the
   * other series, read from rl_health's counters, remain). */
  int32_t metrics;

  /* ---- version 6. Back-pressure: at most this many rl_check_async and
   * rl_check_keys_async calls of this limiter may wait for the store at
   * once (accepted, callback not yet run); beyond it a call fails at once
   * with RL_E_BUSY and queues nothing, so a store that stops answering
   * cannot grow the process's memory without bound. Answers known at once
   * (the memory store, a deny-cache hit, an allow or deny list) are not
   * queued and never refused. A pending call holds about 3.4 KB. 0 default
   * (65536: about 220 MB at worst; with the default timeout_ms it is
   * reached only above ~330,000 checks/s), 1 .. 2147483647 the bound, -1 no
   * bound. */
  int32_t max_async;
} rl_options;
#define RL_OPTIONS_INIT                                                       \
  {                                                                           \
    RL_OPTIONS_VERSION, NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, \
        0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0            \
  }

/* Set one field of `opts` by its name (the field's name in rl_options, e.g.
 * "url", "timeout_ms", "failure_mode", "password") from text, so a caller
 * need not depend on the struct's layout. Numbers are decimal integers,
 * parsed strictly and range-checked; failure_mode also takes "open",
 * "closed", "local" or "error"; deny_cache and tls_verify also take "on"
 * and "off". String fields store the pointer `value` itself: it must stay
 * valid until rl_create (NULL resets the field). `clock` and
 * `clock_user_data` cannot be set by name. An unknown name or a bad value
 * is RL_E_INVALID_ARG (the message never echoes a password). Not
 * thread-safe for one `opts`. */
RL_API int rl_options_set(rl_options *opts, const char *name,
                          const char *value);

/* Create a limiter. `options` may be NULL (memory store, defaults). On
 * success *out owns the new limiter; free it with rl_destroy. On failure
 * *out is set to NULL. The options struct and its strings are copied and
 * need not outlive the call. Thread-safe. */
RL_API int rl_create(rl_limiter **out, const rl_options *options);

/* Destroy a limiter. NULL is a no-op. No other call on this limiter may be
 * running or start afterwards. Every callback of an accepted rl_check_async
 * has run before rl_destroy returns (with its result, or RL_E_CLOSED if the
 * store had not answered). Key iterators of this limiter stay valid handles:
 * their next rl_keys_next returns RL_E_CLOSED; free them with rl_keys_free
 * before or after. Policies are independent of limiters. */
RL_API void rl_destroy(rl_limiter *limiter);

/* Check `key` against `n_policies` policies and, if every one allows it,
 * charge `cost` units to all of them; if any denies, none is charged. A
 * blocked key (rl_block, or a policy's block) is denied by every policy.
 * A denied charge counts a strike against each denying policy that has a
 * block, and may start the key's block (rl_policy_spec, version 3).
 *   out        decision, caller-owned, out->version set (RL_DECISION_INIT).
 *              Allowed: the policy with the fewest remaining units.
 *              Denied: the denying policy with the longest retry_after.
 *   key        binary-safe, 1 .. max_key_len bytes.
 *   policies   array of n_policies (1 .. RL_MAX_POLICIES) policy handles
 *              (a NULL entry is RL_E_INVALID_ARG); the check does not keep
 *              them after it returns.
 *   cost       0 peeks: nothing is charged and `allowed` says whether
 *              a cost of 1 would pass now. A cost above a policy's capacity
 *              is denied with retry_after_ms = RL_RETRY_NEVER. A negative
 *              cost is a refund (-cost units back, down to -(2^53 - 1)):
 *              every policy with usage gets them back, never beyond full,
 *              atomically; the decision is allowed and reports the state
 *              after it. RL_E_NOT_FOUND if no policy had usage to give
 *              back (docs/algorithms.md, "Refunds").
 * Thread-safe: one limiter serves any number of threads at once. */
RL_API int rl_check(rl_limiter *limiter, rl_decision *out, const char *key,
                    size_t key_len, rl_policy *const *policies,
                    size_t n_policies, int64_t cost);

/* Completion of an asynchronous check. `status` is RL_OK or an RL_E_* code;
 * `decision` is valid (and owned by the library) only during the call and
 * only when status is RL_OK (NULL otherwise). `message` is never NULL: ""
 * on success, else the error's detail (what rl_last_error() would say; it
 * never holds a secret), valid only during the call. */
typedef void (*rl_check_cb)(int status, const rl_decision *decision,
                            const char *message, void *user_data);

/* rl_check without waiting. Arguments are validated and copied before the
 * call returns (the policies' compiled form included): the caller may
 * release its policies as soon as rl_check_async returns. If it returns RL_OK,
 * `callback` runs exactly once; if it returns an error, the callback never
 * runs. RL_E_BUSY: max_async calls (rl_options) already wait for the store;
 * nothing was sent or queued, try again later. On which thread: the memory
 * store answers inline, on the calling thread, before rl_check_async returns.
 * The Redis store calls it from its I/O thread, or inline, on the calling
 * thread, when the answer is known at once (a deny-cache hit, or a store known
 * to be down: the failure mode's answer). Either way the callback must return
 * quickly, must not block, and must not call rl_destroy on this limiter.
 * Thread-safe. */
RL_API int rl_check_async(rl_limiter *limiter, const char *key, size_t key_len,
                          rl_policy *const *policies, size_t n_policies,
                          int64_t cost, rl_check_cb callback, void *user_data);

/* ---- The Redis connection driven by the caller's event loop
 * By default a Redis limiter reads its replies on tollgate's I/O thread,
 * which runs rl_check_async callbacks there: a host with an event loop
 * (libuv, asyncio, epoll) then needs a second hand-off to its own thread.
 * Instead, one thread may drive the connection from its event loop: the
 * replies are read, and rl_check_async callbacks run, on that thread,
 * inside rl_loop_turn. Plain TCP only (a TLS connection stays on the I/O
 * thread). Blocking calls keep working: from other threads the driver's
 * loop carries their commands when it turns; on the driver's thread they
 * turn the loop themselves while they wait (running other callbacks).
 *
 * On the driver's thread, rl_check_async queues the command and writes the
 * queue at once when it is due (as many queued as awaited: a sequential
 * check leaves at once, concurrent ones in joined batches); call
 * rl_loop_turn before the event loop waits again (libuv's prepare phase,
 * asyncio's call_soon): it sends what is left and arms the deadlines'
 * timer.
 *
 * rl_loop_open: the calling thread becomes the driver. *fd receives a
 * descriptor to watch for readability; it stays the library's (never read,
 * write or close it). RL_E_UNSUPPORTED: the memory store or TLS. RL_E_BUSY:
 * the I/O thread has started already (a call ran before) or another
 * thread drives. RL_OK again on the thread that drives. */
RL_API int rl_loop_open(rl_limiter *limiter, int *fd);

/* The driver's thread: call it when the descriptor is readable and when
 * *next_us microseconds (written on RL_OK; -1: no timer, 0: at once) have
 * passed since it returned; every call replaces the timer. It never waits.
 * RL_E_CLOSED: this thread no longer drives (rl_loop_close, or a forked
 * child): stop watching the descriptor. */
RL_API int rl_loop_turn(rl_limiter *limiter, int64_t *next_us);

/* rl_loop_turn for a host loop that has nothing else ready to run
 * (asyncio's ready queue empty; libuv about to poll with a timeout). When
 * the turn leaves one reply awaited and nothing else due (a sequential
 * check), it may poll for that reply up to the limiter's spin_us, as a
 * blocking rl_check does, while the driver's own lone-wait rule finds that
 * spinning pays (the latency it saves at least the CPU it costs beyond
 * the loop's sleep and wake-up); a reply caught runs its callback in this
 * call, so the host loop does not sleep and wake for it. With spin_us -1
 * it is rl_loop_turn. */
RL_API int rl_loop_turn_idle(rl_limiter *limiter, int64_t *next_us);

/* Any thread: the driver stops driving (after its turn under way, if any);
 * the I/O thread takes over what is queued or in flight, and rl_loop_turn
 * answers RL_E_CLOSED from then on. Another thread calls it when the
 * driver's loop has stopped for good or checks come from another loop.
 * Stop watching the descriptor before rl_destroy (or call rl_destroy on
 * the driver's thread, between turns). */
RL_API int rl_loop_close(rl_limiter *limiter);

/* Block `key` for duration_ms (1 .. 2^40; else RL_E_INVALID_ARG) from now
 * (the Redis server's clock): until then every check of it is denied,
 * whatever its policies, with retry_after_ms at least the time left. A
 * block replaces any block the key has (it may shorten one); rl_unblock or
 * rl_reset lifts it. A refund (negative cost) still runs while blocked.
 * Blocking; on a cluster it goes to the primary of the key's slot.
 * Thread-safe. */
RL_API int rl_block(rl_limiter *limiter, const char *key, size_t key_len,
                    int64_t duration_ms);

/* Lift `key`'s block, whether set by rl_block or by a policy's block, and
 * forget its strike counts. Unblocking a key that is not blocked succeeds.
 * This limiter's deny cache forgets the key's denials; another process's
 * deny cache may answer its cached denials until they lapse (at most the
 * block's time left). Blocking. Thread-safe. */
RL_API int rl_unblock(rl_limiter *limiter, const char *key, size_t key_len);

/* The longest wait rl_check_wait and rl_lease_acquire_wait take (ms). */
#define RL_MAX_WAIT_MS (INT64_C(1) << 40)

/* rl_check that waits up to max_wait_ms (0 .. RL_MAX_WAIT_MS; 0 is one
 * try) for the check to be allowed (docs/waiting.md). After a denial it
 * sleeps the decision's retry_after_ms and tries again; it never polls
 * the store faster than that. It returns at once, with the denial, when
 * retry_after_ms is RL_RETRY_NEVER (the cost exceeds a policy's capacity:
 * no wait can help) or longer than the wait left (it could not pass in
 * time). RL_OK with out->allowed 1 or 0 as rl_check; an error ends the
 * wait with that error. Waiters are not queued: within one process and
 * across processes the first try after a slot frees takes it. Blocking;
 * the call may take max_wait_ms plus one check. Thread-safe. */
RL_API int rl_check_wait(rl_limiter *limiter, rl_decision *out, const char *key,
                         size_t key_len, rl_policy *const *policies,
                         size_t n_policies, int64_t cost, int64_t max_wait_ms);

/* Allow and deny lists (docs/exemptions.md), evaluated in process before
 * any store call: a check of a key on the deny list is denied
 * (RL_SOURCE_DENY_LIST, retry_after_ms RL_RETRY_NEVER); else a check of a
 * key on the allow list is allowed without charging anything
 * (RL_SOURCE_ALLOW_LIST). rl_check_keys: denied if any key is on the deny
 * list, allowed by the list only if every key is on the allow list.
 * Leases do not consult the lists. */
#define RL_LIST_ALLOW 1
#define RL_LIST_DENY 2

/* Replace the allow (RL_LIST_ALLOW) or deny (RL_LIST_DENY) list of
 * `limiter` with n_entries entries (0 empties it; at most
 * RL_MAX_LIST_ENTRIES), entry i being entries[i], entry_lens[i] bytes:
 * an exact key (1 .. max_key_len bytes), or an IPv4 or IPv6 address or
 * CIDR range ("10.0.0.0/8", "2001:db8::/32") that matches keys which are
 * IP addresses (an IPv4-mapped IPv6 key matches as IPv4). An entry made of
 * hex digits, '.', ':' and '/' with a '.' or ':' must parse as an address
 * or a range. RL_E_INVALID_ARG names the first bad entry by index (its
 * text is not echoed); the list is then unchanged. Checks that start after
 * the call returns see the new list. Thread-safe. */
#define RL_MAX_LIST_ENTRIES 100000
RL_API int rl_set_list(rl_limiter *limiter, int list,
                       const char *const *entries, const size_t *entry_lens,
                       size_t n_entries);

/* The most keys one rl_check_keys takes. */
#define RL_MAX_KEYS 8

/* Several keys in one decision, all or nothing: check `n_keys` (1 ..
 * RL_MAX_KEYS) distinct keys, key j (keys[j], key_lens[j] bytes) against
 * its n_policies[j] (>= 1) policies, and charge `cost` to every policy of
 * every key only if every one allows; if any denies, nothing is charged.
 * `policies` holds every key's policies, key by key (key 0's first), at
 * most RL_MAX_POLICIES in all; each key's list works as in rl_check (a
 * policy's identity is its name or its position in that key's list). The
 * decision reports one policy as rl_check does, and its policy_index
 * counts the policies key by key (key 1's first policy has index
 * n_policies[0]). A negative cost is a refund to every key with usage
 * (RL_E_NOT_FOUND if none had any). A blocked key denies the check. The
 * Redis store runs one script; on a Redis Cluster the keys must share a
 * slot (start them with the same {tag}: "{user:1}:global",
 * "{user:1}:login"), else RL_E_UNSUPPORTED before anything is sent.
 * Errors as rl_check's, plus RL_E_INVALID_ARG for a key given twice.
 * Thread-safe. */
RL_API int rl_check_keys(rl_limiter *limiter, rl_decision *out,
                         const char *const *keys, const size_t *key_lens,
                         size_t n_keys, rl_policy *const *policies,
                         const size_t *n_policies, int64_t cost);

/* rl_check_keys without waiting, as rl_check_async is to rl_check. */
RL_API int rl_check_keys_async(rl_limiter *limiter, const char *const *keys,
                               const size_t *key_lens, size_t n_keys,
                               rl_policy *const *policies,
                               const size_t *n_policies, int64_t cost,
                               rl_check_cb callback, void *user_data);

/* Forget every policy's state for `key` (the next check starts fresh), its
 * block and its strike counts included.
 * Resetting a key that has no state succeeds. The Redis store deletes every
 * `<prefix>{key}:*` key (one SCAN of that pattern, then DEL); blocking, up
 * to the limiter's timeout (on a cluster: the primary of the key's slot).
 * Thread-safe. */
RL_API int rl_reset(rl_limiter *limiter, const char *key, size_t key_len);

/* ---- Concurrency leases (docs/leases.md)
 * ------------------------------------------------------------------
 * A lease counts a request while it runs, not when it starts: at most
 * max_in_flight leases of one key are held at once. Each lease ends when it
 * is released, or ttl_ms after it was acquired or last renewed (the Redis
 * server's clock), so a process that dies holding one loses it then. */
typedef struct rl_lease rl_lease;

/* The largest max_in_flight and ttl_ms. */
#define RL_MAX_IN_FLIGHT 1000000
#define RL_MAX_LEASE_TTL_MS (INT64_C(1) << 40)

#define RL_LEASE_INFO_VERSION 1
typedef struct rl_lease_info {
  uint32_t version;       /* set by the caller: RL_LEASE_INFO_VERSION */
  int32_t acquired;       /* 1 the lease is held, 0 denied */
  int64_t in_flight;      /* leases of the key held after the call (the new
                             one included); 0 if the store is unavailable */
  int64_t max_in_flight;  /* as asked */
  int64_t retry_after_ms; /* 0 if acquired; else until the earliest held
                             lease ends (>= 1): a release may come sooner */
  int32_t source;         /* RL_SOURCE_* (fail open: acquired, not stored) */
  uint32_t reserved;      /* 0 */
} rl_lease_info;
#define RL_LEASE_INFO_INIT \
  { RL_LEASE_INFO_VERSION, 0, 0, 0, 0, 0, 0 }

/* Acquire a lease on `key` if fewer than max_in_flight (1 ..
 * RL_MAX_IN_FLIGHT) are held; it lasts ttl_ms (1 .. RL_MAX_LEASE_TTL_MS)
 * unless renewed. Expired leases are dropped in the same atomic step. RL_OK
 * either way: *lease is the new lease (free it with rl_lease_free) when
 * info->acquired is 1, NULL when denied. `info` may be NULL. While the store
 * is unavailable the failure mode answers: open grants a lease that is not
 * stored, closed denies (retry 1000 ms), local counts in this process
 * (max_in_flight / local_divisor, at least 1), error returns the error.
 * Blocking (the limiter's timeout). Thread-safe. */
RL_API int rl_lease_acquire(rl_limiter *limiter, const char *key,
                            size_t key_len, int64_t max_in_flight,
                            int64_t ttl_ms, rl_lease **lease,
                            rl_lease_info *info);

/* Extend a held lease: it now ends ttl_ms (1 .. RL_MAX_LEASE_TTL_MS) from
 * now. RL_E_NOT_FOUND if it is no longer held (it expired, or was
 * released): the work it guarded is no longer counted. RL_E_INVALID_ARG
 * for a lease acquired through another limiter. Blocking. Thread-safe. */
RL_API int rl_lease_renew(rl_limiter *limiter, rl_lease *lease, int64_t ttl_ms);

/* End a lease. *was_held (may be NULL) is 1 if the lease was held until
 * this call, 0 if it had expired or been released already: both are RL_OK
 * (a late or double release is harmless). RL_E_INVALID_ARG for a lease
 * acquired through another limiter. Blocking. Thread-safe. */
RL_API int rl_lease_release(rl_limiter *limiter, rl_lease *lease,
                            int *was_held);

/* rl_lease_acquire that waits up to max_wait_ms (0 .. RL_MAX_WAIT_MS; 0
 * is one try) for a lease (docs/waiting.md). A denial's retry_after_ms is
 * the latest a slot frees (a holder may release sooner), so the wait
 * tries again after 10 ms, then 20, 40, ... up to retry_after_ms, and at
 * once when a lease of this limiter is released; it ends with the denial
 * when max_wait_ms has passed. Arguments and results as
 * rl_lease_acquire's. Blocking. Thread-safe. */
RL_API int rl_lease_acquire_wait(rl_limiter *limiter, const char *key,
                                 size_t key_len, int64_t max_in_flight,
                                 int64_t ttl_ms, int64_t max_wait_ms,
                                 rl_lease **lease, rl_lease_info *info);

/* Free a lease handle, before or after its limiter. It does not end a
 * held lease: release it first, or it ends after its ttl. NULL is a no-op. */
RL_API void rl_lease_free(rl_lease *lease);

#define RL_HEALTH_VERSION 5
typedef struct rl_health_info {
  uint32_t version;   /* set by the caller: RL_HEALTH_VERSION */
  int32_t store_kind; /* RL_STORE_* */
  uint64_t checks;    /* calls that reached a decision */
  uint64_t allowed;
  uint64_t denied;
  uint64_t errors;    /* calls that failed with an error code */
  uint64_t live_keys; /* keys currently held by the store */
  uint64_t evictions; /* keys evicted to stay within max_keys */

  /* ---- version 2 */
  int32_t connection;    /* RL_CONN_* */
  uint32_t in_flight;    /* store calls awaiting a reply */
  uint64_t reconnects;   /* connections re-established */
  int64_t last_ping_us;  /* last PING round trip; -1 if none yet */
  uint64_t store_errors; /* store calls that failed */
  uint64_t fail_open;    /* answers by each failure path */
  uint64_t fail_closed;
  uint64_t local_fallback;
  uint64_t deny_cache_hits; /* answers from the local deny cache */
  char server_version[32];  /* e.g. "7.0.15"; "" if unknown */
  char last_error[256];     /* last store error; never holds a secret */

  /* ---- version 3 */
  int32_t topology;            /* RL_TOPOLOGY_*; 0 for the memory store */
  uint32_t nodes;              /* Redis nodes known: see rl_health_node */
  int64_t slot_map_age_ms;     /* cluster: age of the slot map; -1: none */
  uint64_t slot_map_refreshes; /* cluster: slot maps read */
  uint64_t moved;              /* cluster: -MOVED redirections followed */
  uint64_t ask;                /* cluster: -ASK redirections followed */
  uint64_t master_switches;    /* sentinel: moves to another master */

  /* ---- version 4 */
  uint64_t shadow_denied; /* checks allowed only by shadow mode (would-be
                             denials); also counted in `allowed` */
  uint64_t list_allowed;  /* checks answered by the allow list */
  uint64_t list_denied;   /* checks answered by the deny list */

  /* ---- version 5 */
  uint64_t async_pending; /* async calls accepted, callback not yet run
                             (bounded by rl_options.max_async) */
  uint64_t async_refused; /* async calls refused with RL_E_BUSY */
} rl_health_info;
#define RL_HEALTH_INIT                                                         \
  {                                                                            \
    RL_HEALTH_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", "", \
        0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0                                    \
  }

#define RL_TOPOLOGY_STANDALONE 1 /* redis://, rediss://, unix:// */
#define RL_TOPOLOGY_CLUSTER 2    /* redis+cluster://, rediss+cluster:// */
#define RL_TOPOLOGY_SENTINEL 3   /* redis+sentinel://, rediss+sentinel:// */

#define RL_CONN_NONE 0       /* no connection is involved (memory store) */
#define RL_CONN_CONNECTING 1 /* connecting or handshaking */
#define RL_CONN_READY 2
#define RL_CONN_DOWN 3 /* down; reconnecting with backoff */

/* Fill a snapshot of the limiter's state and counters (caller-owned `out`
 * with out->version set). Counters are exact but may be read while other
 * threads run, so they need not add up to one instant. Thread-safe. */
RL_API int rl_health(rl_limiter *limiter, rl_health_info *out);

/* One Redis node as rl_health sees it: standalone, the server; a cluster,
 * every node the limiter has met (the URL's seeds, the slot map's
 * primaries, targets of redirections). */
#define RL_NODE_VERSION 1
typedef struct rl_node_info {
  uint32_t version;    /* set by the caller: RL_NODE_VERSION */
  int32_t role;        /* RL_ROLE_* */
  int32_t connection;  /* RL_CONN_*; RL_CONN_NONE: not connected to yet */
  uint32_t in_flight;  /* calls awaiting its reply */
  uint64_t errors;     /* connections to it lost or refused */
  uint64_t reconnects; /* connections to it re-established */
  char address[64];    /* host:port, or the unix socket path */
  char last_error[256];
} rl_node_info;
#define RL_NODE_INIT \
  { RL_NODE_VERSION, 0, 0, 0, 0, 0, "", "" }

#define RL_ROLE_PRIMARY 1 /* serves slots (standalone: the server) */
#define RL_ROLE_OTHER 2   /* a seed, a replica or a former primary */

/* Node `index` of the `nodes` that rl_health reported (0 .. nodes-1).
 * RL_E_INVALID_ARG past the end (the list only grows while the limiter
 * lives) or for the memory store. Thread-safe. */
RL_API int rl_health_node(rl_limiter *limiter, size_t index, rl_node_info *out);

/* ---- Log hook (docs/metrics.md, "Logs") -----------------------------------
 */

#define RL_LOG_ERROR 1
#define RL_LOG_WARN 2 /* the store is unreachable, a failover, a fallback */
#define RL_LOG_INFO 3 /* reconnected, a new slot map, the store is back */
#define RL_LOG_DEBUG 4

/* A log message: `level` RL_LOG_*, `message` one line without a trailing
 * newline, valid only during the call. Messages never hold a password or
 * other secret. */
typedef void (*rl_log_fn)(int level, const char *message, void *user_data);

/* Send the limiter's log messages at `max_level` or more severe (e.g.
 * RL_LOG_INFO: error, warn and info) to `handler`; NULL turns them off.
 * Each episode is logged once, not once per call: a node unreachable and
 * then reconnected, a Sentinel failover followed, a cluster slot map that
 * changed, the failure mode entered (the first check the store could not
 * answer) and left (the next it answered). The handler runs on the thread
 * that saw the event (tollgate's I/O thread, or a checking thread), one
 * message at a time per limiter; it must return quickly and must not call
 * rl_set_log_handler or rl_destroy on this limiter. When this returns, the
 * previous handler is no longer running and will not be called again.
 * RL_E_INVALID_ARG for a NULL limiter or a level outside 1 .. 4.
 * Thread-safe. */
RL_API int rl_set_log_handler(rl_limiter *limiter, int max_level,
                              rl_log_fn handler, void *user_data);

/* ---- Metrics (docs/metrics.md) ------------------------------------------- */

/* A snapshot of a limiter's metrics: series with Prometheus names, types
 * and labels, read once (rl_metrics_read) and walked (rl_metrics_next). */
typedef struct rl_metrics rl_metrics;

#define RL_METRIC_COUNTER 1   /* only grows (while the limiter lives) */
#define RL_METRIC_GAUGE 2     /* goes up and down */
#define RL_METRIC_HISTOGRAM 3 /* observations in buckets, with their sum */
#define RL_METRIC_MAX_LABELS 4

#define RL_METRIC_VERSION 1
typedef struct rl_metric {
  uint32_t version; /* set by the caller: RL_METRIC_VERSION */
  int32_t type;     /* RL_METRIC_* */
  const char *name; /* e.g. "tollgate_checks_total" (Prometheus naming) */
  const char *help; /* one line */
  uint32_t n_labels;
  uint32_t reserved;                             /* 0 */
  const char *label_names[RL_METRIC_MAX_LABELS]; /* n_labels of them */
  const char *label_values[RL_METRIC_MAX_LABELS];
  double value; /* counter or gauge; 0 for a histogram */
  /* Histograms: `n_buckets` upper bounds (seconds, increasing; the +Inf
   * bucket is `count`) and the observations at or below each bound
   * (cumulative, as Prometheus's `le`); their number and sum. */
  size_t n_buckets;
  const double *bucket_bounds;
  const uint64_t *bucket_counts;
  uint64_t count;
  double sum;
} rl_metric;
#define RL_METRIC_INIT                                                \
  {                                                                   \
    RL_METRIC_VERSION, 0, NULL, NULL, 0, 0, {NULL, NULL, NULL, NULL}, \
        {NULL, NULL, NULL, NULL}, 0, 0, NULL, NULL, 0, 0              \
  }

/* Read every series of the limiter's metrics now (docs/metrics.md lists
 * them): decisions per policy label, decision and source; would-be
 * denials of shadow mode; errors; the memory store's keys; per Redis node
 * its state, calls in flight, reconnects and the round-trip histogram;
 * cluster redirections and slot map. Counting costs no lock on the check
 * path. *out owns the snapshot: free it with rl_metrics_free. Thread-safe. */
RL_API int rl_metrics_read(rl_limiter *limiter, rl_metrics **out);

/* The next series: RL_OK with `out` filled (its strings and arrays belong
 * to the snapshot and stay valid until rl_metrics_free), or RL_E_DONE after
 * the last. A snapshot is for one thread at a time. */
RL_API int rl_metrics_next(rl_metrics *metrics, rl_metric *out);

/* Free a snapshot (before or after its limiter). NULL is a no-op. */
RL_API void rl_metrics_free(rl_metrics *metrics);

/* One round trip to the store (PING; on a cluster, to every primary),
 * waiting up to connect_timeout_ms + timeout_ms if a connection is being
 * made. RL_OK with *rtt_us set, or the precise error
 * (RL_E_CONNECT, RL_E_AUTH, RL_E_TLS, RL_E_TIMEOUT, ...): use it for
 * readiness probes and to surface configuration mistakes at start-up. The
 * memory store answers RL_OK with 0. `rtt_us` may be NULL. Thread-safe. */
RL_API int rl_ping(rl_limiter *limiter, int64_t *rtt_us);

/* ---- HTTP headers ----------------------------------------------------------
 */

/* The rate-limit response headers for a decision, as text: the IETF draft
 * fields (draft-ietf-httpapi-ratelimit-headers) `RateLimit-Policy` and
 * `RateLimit`, the legacy `X-RateLimit-Limit/Remaining/Reset` (reset in
 * seconds from now), and `Retry-After` (whole seconds, rounded up; "" when
 * allowed). Every binding calls this one function, so their headers are
 * byte-identical for the same decision. */
#define RL_HEADERS_VERSION 1
typedef struct rl_headers {
  uint32_t version;           /* set by the caller: RL_HEADERS_VERSION */
  char ratelimit_policy[256]; /* "<name>";q=<limit>;w=<window seconds> */
  char ratelimit[256];        /* "<name>";r=<remaining>;t=<reset seconds> */
  char x_ratelimit_limit[24];
  char x_ratelimit_remaining[24];
  char x_ratelimit_reset[24];
  char retry_after[24];
} rl_headers;
#define RL_HEADERS_INIT \
  { RL_HEADERS_VERSION, "", "", "", "", "", "" }

/* Fill `out` for `decision`, which reported `policy` (the caller's
 * policies[decision->policy_index]). `name` (binary, up to 100 bytes; NULL
 * or empty: "default") names the policy in the structured fields; bytes
 * outside printable ASCII are dropped, `"` and `\` escaped. A retry that can
 * never succeed (RL_RETRY_NEVER) is sent as one window. Thread-safe. */
RL_API int rl_headers_format(rl_headers *out, const rl_decision *decision,
                             const rl_policy *policy, const char *name,
                             size_t name_len);

/* ---- Listing current limits (admin) -------------------------------------- */

typedef struct rl_keys rl_keys;

#define RL_KEY_INFO_VERSION 3
typedef struct rl_key_info {
  uint32_t version; /* set by the caller: RL_KEY_INFO_VERSION */
  const char *key;  /* the user key (not NUL-terminated); owned by the
                       iterator, valid until the next rl_keys_next */
  size_t key_len;
  rl_policy_spec policy; /* the policy this state belongs to */
  int64_t remaining;     /* as a cost-0 check would report now */
  int64_t reset_after_ms;
  size_t policy_index; /* the policy's position in rl_keys_open's list */
} rl_key_info;
#define RL_KEY_INFO_INIT \
  { RL_KEY_INFO_VERSION, NULL, 0, RL_POLICY_SPEC_INIT, 0, 0, 0 }

/* Start listing the (key, policy) states under the limiter's key prefix
 * that belong to `policies` (1 to RL_MAX_POLICIES handles, the list the
 * application checks with): a state is listed with the policy of its
 * identity (the policy's name, or the position of an unnamed one) and
 * peeked with it; states of other identities are skipped. The handles may
 * be released once this returns. The Redis store walks the keyspace with
 * SCAN (never KEYS), a page at a time; keys changing meanwhile may be seen
 * once, twice or not at all, as with SCAN. The memory store returns
 * RL_E_UNSUPPORTED. Free *out with rl_keys_free. The iterator is not
 * thread-safe. It may outlive its limiter: after rl_destroy, rl_keys_next
 * returns RL_E_CLOSED. */
RL_API int rl_keys_open(rl_limiter *limiter, rl_policy *const *policies,
                        size_t n_policies, rl_keys **out);

/* The longest pattern rl_keys_open_match takes (bytes). */
#define RL_MAX_PATTERN_LEN 4096

/* rl_keys_open listing only the user keys that match `pattern`
 * (pattern_len bytes, at most RL_MAX_PATTERN_LEN), a glob as Redis's SCAN
 * MATCH reads one: '*' any bytes, '?' one byte, '[abc]', '[a-z]' and '[^a]'
 * a set, '\' makes the next byte literal; it must match the whole key.
 * The pattern goes into the SCAN's MATCH: Redis still walks every key,
 * but only the matching ones come back and are peeked. An empty pattern
 * (pattern_len 0) lists every key, as rl_keys_open. */
RL_API int rl_keys_open_match(rl_limiter *limiter, const char *pattern,
                              size_t pattern_len, rl_policy *const *policies,
                              size_t n_policies, rl_keys **out);

/* The next entry: RL_OK, RL_E_DONE at the end, RL_E_CLOSED once the limiter
 * was destroyed, or an error. Blocks for at most the limiter's timeout per
 * page. */
RL_API int rl_keys_next(rl_keys *it, rl_key_info *out);

/* Free an iterator. NULL is a no-op. */
RL_API void rl_keys_free(rl_keys *it);

#ifdef __cplusplus
}
#endif

#endif /* TOLLGATE_H */
