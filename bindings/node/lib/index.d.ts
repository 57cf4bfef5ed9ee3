// Types for tollgate's Node.js API (lib/index.js).

export type Algorithm = 'gcra' | 'token_bucket' | 'fixed_window' | 'sliding_window';
export type FailureMode = 'open' | 'closed' | 'local' | 'error';
export type DecisionSource = 'store' | 'deny_cache' | 'fail_open' | 'fail_closed' | 'local' | 'allow_list' | 'deny_list';
/** Integer milliseconds, or text such as "500ms", "1s", "1.5s", "15m", "1h", "1d". */
export type Period = number | string;
export type Key = string | Buffer | Uint8Array;

declare global {
  // Lease[Symbol.asyncDispose] (`await using`). TypeScript 5.2's
  // esnext.disposable lib and @types/node 18.18 / 20.4 declare it too (the
  // declarations merge); this keeps older setups compiling.
  interface SymbolConstructor {
    readonly asyncDispose: unique symbol;
  }
}

export interface PolicyOptions {
  /** Default 'gcra'. */
  algorithm?: Algorithm;
  /** gcra and token_bucket: units that may pass at once; default: limit. */
  burst?: number;
  /**
   * The policy's identity under a key: 1 to 32 of A-Z a-z 0-9 _ . -,
   * starting with a letter. A key's state is kept under the name (or,
   * unnamed, under the policy's position in the check's list), so a changed
   * limit keeps what was used. Two policies of one check may not share a name.
   */
  name?: string;
  /**
   * When this policy denies a charge, block the key this long (1 ms to 2^40 ms):
   * until then every check of it is denied, whatever its policies, with
   * `retryAfter` covering the time left. Refunds still run while blocked.
   */
  block?: Period;
  /**
   * With `block`: the block starts at the `strikes`-th denial within one
   * `strikesPeriod` window (epoch-aligned) instead of the first. Needs `block`
   * and `strikesPeriod`.
   */
  strikes?: number;
  /** The window `strikes` are counted in; given with `strikes`. */
  strikesPeriod?: Period;
  /**
   * Shadow mode (docs/algorithms.md, "Shadow mode"): the policy is evaluated
   * and its state kept as if enforced, but its denial does not deny the
   * check: the decision is allowed with `shadow: true` and describes the
   * would-be denial. Not part of the identity: turning it off keeps usage.
   * Text: "100/h shadow". Default false.
   */
  shadow?: boolean;
}

/** A policy as a plain object (validated on first use, re-checked after changes). */
export interface PolicyInput extends PolicyOptions {
  limit: number;
  period: Period;
}

/** A validated policy (immutable): at most `limit` units per `period` ms. */
export class Policy {
  constructor(limit: number, period: Period, options?: PolicyOptions);
  /**
   * A policy from the library's one text syntax: "100/h", "100 per 15m",
   * "10/s burst=20", "5000/d sliding_window", "100/h name=hourly",
   * "5/m name=login block=15m strikes=3/h", "100/h shadow". Throws InvalidArgumentError
   * (RL_E_POLICY or RL_E_OVERFLOW) naming the byte offset of the problem.
   */
  static parse(text: string): Policy;
  readonly limit: number;
  /** Milliseconds. */
  readonly period: number;
  readonly algorithm: Algorithm;
  readonly burst: number | undefined;
  /** The policy's identity under a key; undefined: known by its position in a check's list. */
  readonly name: string | undefined;
  /** Milliseconds a denial by this policy blocks the key; undefined: no block. */
  readonly block: number | undefined;
  /** Denials within `strikesPeriod` that start the block; undefined: the first denial does. */
  readonly strikes: number | undefined;
  /** Milliseconds; undefined without strikes. */
  readonly strikesPeriod: number | undefined;
  /** Shadow mode: evaluated and kept as if enforced, but its denial does not deny the check. */
  readonly shadow: boolean;
  toString(): string;
  toJSON(): {
    limit: number;
    period: number;
    algorithm: Algorithm;
    burst?: number;
    name?: string;
    block?: number;
    strikes?: number;
    strikesPeriod?: number;
    shadow?: true;
  };
}

export type PolicyLike = Policy | PolicyInput;

/** Same as `new Policy(limit, period, options)`. */
export function policy(limit: number, period: Period, options?: PolicyOptions): Policy;

/** Parses a period (integer ms, or text such as "1.5s" or "2 minutes", read
 * by the library's period syntax) to milliseconds. */
export function parsePeriod(period: Period): number;

/** The answer to a check: a plain object, read-only here (not frozen at run time). */
export interface Decision {
  readonly allowed: boolean;
  /** The deciding policy's limit. */
  readonly limit: number;
  /** Units still available after this call. */
  readonly remaining: number;
  /** Milliseconds until the state is back to full (0 if full). */
  readonly resetAfter: number;
  /**
   * Milliseconds before the same call can pass: 0 if allowed (unless
   * `shadow`: then the would-be denial's); Infinity if it never can (cost
   * above capacity, a deny-list denial).
   */
  readonly retryAfter: number;
  /**
   * Which path decided, so a degraded answer is never mistaken for a real
   * one: 'allow_list' / 'deny_list' are the limiter's lists, decided before
   * any store call.
   */
  readonly source: DecisionSource;
  /** Index (in the check's policies) of the reported policy. */
  readonly policyIndex: number;
  /**
   * True if the call is allowed only because what denied it is in shadow
   * mode (a policy with `shadow: true`, or a Limiter with `shadow: true`):
   * limit, remaining, resetAfter, retryAfter and policyIndex then describe
   * the denial that was not enforced.
   */
  readonly shadow: boolean;
}

/** The answer to checkKeys(): a Decision whose policyIndex counts the policies pair by pair. */
export interface KeysDecision extends Decision {
  /**
   * Index, counted over every pair's policies back to back (pair 0's first),
   * of the reported policy: with pairs of 1 and 2 policies, 0 is pair 0's
   * policy and 1 and 2 are pair 1's.
   */
  readonly policyIndex: number;
  /** Index in `pairs` of the pair whose policy the decision reports. */
  readonly keyIndex: number;
}

/** One pair of checkKeys(): a key and its policies (one, or an array of 1 to 16). */
export type KeyPolicies =
  | readonly [key: Key, policies: PolicyLike | readonly PolicyLike[]]
  | { readonly key: Key; readonly policies: PolicyLike | readonly PolicyLike[] };

export interface CheckOptions {
  /** Units to charge (integer; default 1; 0 peeks; a negative cost is a refund, see Limiter.refund). */
  cost?: number;
}

/**
 * How long a wait may last: integer milliseconds or text such as "500ms" or
 * "10s", 0 to 2^40 ms (0, a number, is one try). Anything else rejects with
 * InvalidArgumentError (RL_E_INVALID_ARG, "maxWait: ...").
 */
export type MaxWait = Period;

export interface WaitOptions {
  /** The longest to wait (see MaxWait). */
  maxWait: MaxWait;
  /**
   * Ends the wait: the promise rejects at once with `signal.reason` (an
   * AbortError DOMException unless abort() was given a reason). A lease that
   * a try in flight acquires after the abort is released.
   */
  signal?: AbortSignal | null;
}

export interface CheckWaitOptions extends CheckOptions, WaitOptions {}

export interface RefundOptions {
  /** Units to give back: a positive integer up to 2^53 - 1 (default 1). */
  amount?: number;
}

export interface LimiterOptions {
  /** No URL (or "memory://"): the in-process memory store. "redis://", "rediss://", "unix://": Redis. */
  url?: string;
  maxKeys?: number;
  maxKeyLen?: number;
  shards?: number;
  connectTimeoutMs?: number;
  timeoutMs?: number;
  keyPrefix?: string;
  failureMode?: FailureMode;
  localDivisor?: number;
  denyCache?: boolean;
  denyCacheSize?: number;
  connections?: number;
  reconnectMaxMs?: number;
  /**
   * Redis: how long (us, 0 .. 1000) tollgate's I/O thread polls for a lone
   * outstanding reply before it sleeps, while lone replies have been coming
   * back within that time; default 200, 0 never. With the loop driver the
   * event loop's own turn polls that way for a lone reply, only while
   * libuv has nothing else to run.
   */
  spinUs?: number;
  /**
   * Redis: who reads the replies and settles the promises. 'loop': this
   * thread's event loop, through a libuv poll handle on the connection (no
   * thread hand-off per check); the constructor throws for TLS, which stays
   * on tollgate's I/O thread. 'thread': tollgate's I/O thread, which hands
   * each answer to the event loop. 'auto' (the default): the loop where it
   * can drive (not TLS: no error there), else the I/O thread. The
   * environment variable TOLLGATE_DRIVER ('loop' or 'thread') says what
   * 'auto' means.
   */
  driver?: 'auto' | 'loop' | 'thread';
  /**
   * Redis: back-pressure. At most this many check() and checkKeys() calls
   * (the async ones) wait for the store at once; beyond it a call rejects
   * at once with BusyError (RL_E_BUSY), queueing nothing. Default 65536;
   * 0 no bound.
   */
  maxAsync?: number;
  username?: string;
  /** Never echoed in any error message. */
  password?: string;
  tlsCaFile?: string;
  tlsCaDir?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  tlsServerName?: string;
  tlsVerify?: boolean;
  /**
   * Integer microseconds since the epoch (number or bigint), used instead of
   * the system clock by the memory store (and by Redis in builds made with
   * -DTOLLGATE_TESTING=ON). Called on the JS thread.
   */
  clock?: () => number | bigint;
  /**
   * Shadow mode for the whole limiter (docs/algorithms.md, "Shadow mode"):
   * every check is evaluated and charged as if enforced, and every denial (a
   * policy's, a block's, the deny cache's, fail closed's, the deny list's)
   * is answered allowed with `decision.shadow` true. Default false.
   */
  shadow?: boolean;
  /**
   * The allow list (docs/exemptions.md): exact keys, IPv4 / IPv6 addresses
   * and CIDR ranges ('10.0.0.0/8', '2001:db8::/32'); a check of a key on it
   * is allowed without a store call and charges nothing (source
   * 'allow_list'). setAllowList() replaces it.
   */
  allow?: Iterable<string | Uint8Array>;
  /**
   * The deny list: a check of a key on it is denied without a store call
   * (source 'deny_list', retryAfter Infinity); it wins over the allow list.
   * setDenyList() replaces it.
   */
  deny?: Iterable<string | Uint8Array>;
  /**
   * Count decisions per policy name, decision and source for metrics()
   * (`tollgate_checks_total`, `tollgate_shadow_denials_total`;
   * docs/metrics.md). Default true; false leaves those series out (the
   * others, read from counters the limiter keeps anyway, remain).
   */
  metrics?: boolean;
  /**
   * The log handler (docs/metrics.md, "Logs"), set as the limiter is made:
   * see Limiter.setLogHandler().
   */
  onLog?: LogHandler;
  /** With `onLog`: the least severe level it receives; default 'info'. */
  logLevel?: LogLevel;
}

/** A log message's level, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * A log message (docs/metrics.md, "Logs"): one line, no trailing newline,
 * never a password or a key. Each episode of the store is logged once,
 * e.g. warn "tollgate: 127.0.0.1:6379 is unreachable (...); reconnecting
 * with backoff", then info "tollgate: reconnected to 127.0.0.1:6379 after
 * 2140 ms".
 */
export interface LogEntry {
  readonly level: LogLevel;
  readonly message: string;
}

/** Called on the JS thread, one message at a time; one that throws reports an uncaught exception. */
export type LogHandler = (entry: LogEntry) => void;

export interface LogOptions {
  /** The least severe level delivered: 'error', 'warn', 'info' (default) or 'debug'. */
  level?: LogLevel;
}

/** A series' type (Prometheus's): a counter only grows while the limiter lives. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/** A histogram bucket: the observations at or below `le` seconds (cumulative). */
export interface MetricBucket {
  /** The upper bound in seconds; the last bucket's is Infinity (its count is the histogram's count). */
  readonly le: number;
  readonly count: number;
}

/** One series of limiter.metrics(), named as Prometheus names it (docs/metrics.md). */
export interface MetricSample {
  readonly type: MetricType;
  /** e.g. 'tollgate_checks_total' (every counter's ends in _total). */
  readonly name: string;
  /** One line saying what it counts. */
  readonly help: string;
  /**
   * e.g. { policy: 'api', decision: 'allowed', source: 'store' }; { node:
   * 'host:port' } for a Redis node's series; {} for none.
   */
  readonly labels: Readonly<Record<string, string>>;
  /** A counter's or gauge's value; 0 for a histogram. */
  readonly value: number;
  /** A histogram's buckets, increasing, the last with le Infinity; [] for the other types. */
  readonly buckets: readonly MetricBucket[];
  /** A histogram's observations; 0 for the other types. */
  readonly count: number;
  /** Their sum in seconds; 0 for the other types. */
  readonly sum: number;
}

/** One Redis node a limiter has met (`HealthInfo.nodes`). */
export interface HealthNode {
  /** host:port, or the unix socket path. */
  address: string;
  /** 'primary': serves slots (standalone: the server); 'other': a seed, a replica or a former primary. */
  role: 'primary' | 'other';
  /** 'none': not connected to yet. */
  connection: 'none' | 'connecting' | 'ready' | 'down';
  inFlight: number;
  /** Connections to it lost or refused. */
  errors: number;
  reconnects: number;
  lastError: string;
}

export interface HealthInfo {
  store: 'memory' | 'redis';
  connection: 'none' | 'connecting' | 'ready' | 'down';
  checks: number;
  allowed: number;
  denied: number;
  errors: number;
  liveKeys: number;
  evictions: number;
  inFlight: number;
  reconnects: number;
  /** Last PING round trip in ms; null if none yet. */
  lastPingMs: number | null;
  storeErrors: number;
  failOpen: number;
  failClosed: number;
  localFallback: number;
  denyCacheHits: number;
  /** Checks allowed only by shadow mode (would-be denials); also counted in `allowed`. */
  shadowDenied: number;
  /** Checks answered by the allow list. */
  listAllowed: number;
  /** Checks answered by the deny list. */
  listDenied: number;
  /** Async checks waiting for the store (at most `maxAsync`). */
  asyncPending: number;
  /** Async checks refused with BusyError (RL_E_BUSY). */
  asyncRefused: number;
  serverVersion: string;
  lastError: string;
  topology: 'memory' | 'standalone' | 'cluster' | 'sentinel';
  /** Cluster: age of the slot map in ms; null until one is read. */
  slotMapAgeMs: number | null;
  /** Cluster: slot maps read. */
  slotMapRefreshes: number;
  /** Cluster: -MOVED and -ASK redirections followed. */
  moved: number;
  ask: number;
  /** Sentinel: moves to another master (failovers followed). */
  masterSwitches: number;
  /** Every Redis node the limiter has met (memory: empty). */
  nodes: HealthNode[];
}

export interface KeyState {
  /** A string when the stored key is valid UTF-8, else a Buffer. */
  key: string | Buffer;
  /** The policy of the state's identity, from the list given to keys() (a plain object's compiled Policy). */
  policy: Policy;
  /** That policy's position in the list given to keys(). */
  policyIndex: number;
  remaining: number;
  /** Milliseconds. */
  resetAfter: number;
}

export interface AcquireOptions {
  /** The most leases of the key held at once: an integer, 1 to 1,000,000. */
  maxInFlight: number;
  /**
   * How long a lease lasts unless renewed or released: integer ms or text
   * such as "30s" (1 ms to 2^40 ms). A process that dies holding a lease
   * loses it after this.
   */
  ttl: Period;
}

export interface AcquireWaitOptions extends AcquireOptions, WaitOptions {}

/** withLease()'s options: acquire()'s, and with `maxWait` (or `signal`) a wait for a place as acquireWait()'s. */
export interface WithLeaseOptions extends AcquireOptions {
  /** Wait up to this long for a place before rejecting with LeaseDeniedError; absent: one try. */
  maxWait?: MaxWait;
  /** Ends the wait (see WaitOptions.signal); it does not reach `fn`. */
  signal?: AbortSignal | null;
}

/**
 * Which path answered an acquire(): 'store'; 'fail_open' (acquired while the
 * store was unavailable: the lease is not stored), 'fail_closed' (denied for
 * that), 'local' (counted in this process).
 */
/** Leases do not consult the allow and deny lists. */
export type LeaseSource = 'store' | 'deny_cache' | 'fail_open' | 'fail_closed' | 'local';

/** The answer to acquire() when a lease was acquired. */
export interface LeaseAcquired {
  readonly acquired: true;
  readonly lease: Lease;
  /** Leases of the key held after the call, this one included (0 if the store was unavailable). */
  readonly inFlight: number;
  readonly maxInFlight: number;
  readonly retryAfter: 0;
  readonly source: LeaseSource;
}

/** The answer to acquire() when it was denied (nothing is held). */
export interface LeaseDenied {
  readonly acquired: false;
  readonly lease: null;
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Milliseconds until the earliest held lease ends (>= 1); a release may come sooner. */
  readonly retryAfter: number;
  readonly source: LeaseSource;
}

/** acquire()'s answer: narrow it on `acquired`. */
export type LeaseResult = LeaseAcquired | LeaseDenied;

/**
 * A held concurrency lease (from limiter.acquire()). Release it when the
 * work it guards is done (try/finally, `await using`, or limiter.withLease()),
 * or it ends after its ttl. Garbage collection frees the native handle but
 * does not release the lease.
 */
export class Lease {
  private constructor();
  /** The key, as given to acquire(). */
  readonly key: Key;
  /** 'store', 'fail_open' (acquired while the store was unavailable: not stored) or 'local'. */
  readonly source: LeaseSource;
  /** The limiter that acquired it. */
  readonly limiter: Limiter;
  /** Milliseconds the lease lasts from its acquisition or last renewal. */
  readonly ttl: number;
  /** Whether a release() of it has finished (whatever it answered). */
  readonly released: boolean;
  /**
   * Extends the lease: it now ends `ttl` (default: its current ttl) from now.
   * Rejects with LeaseLostError (RL_E_NOT_FOUND) if it is no longer held.
   */
  renew(ttl?: Period): Promise<void>;
  /** Ends the lease: true if it was held until now; false if it had expired or was released already (harmless). */
  release(): Promise<boolean>;
  /** `await using`: releases the lease unless a release() already finished. */
  [Symbol.asyncDispose](): Promise<void>;
}

export class Limiter {
  constructor(options?: LimiterOptions);
  readonly store: 'memory' | 'redis';
  /** Who reads the Redis replies (see LimiterOptions.driver); 'none' for the memory store. */
  readonly driver: 'loop' | 'thread' | 'none';
  readonly closed: boolean;
  /** Whether the limiter is in shadow mode (`new Limiter({ shadow: true })`). */
  readonly shadow: boolean;
  /**
   * Replaces the allow list (docs/exemptions.md): exact keys, IP addresses,
   * CIDR ranges; empty clears it. A bad entry throws InvalidArgumentError
   * (RL_E_INVALID_ARG) naming it by index (`entries[2]`, never echoed) and
   * leaves the list unchanged.
   */
  setAllowList(entries: Iterable<string | Uint8Array>): void;
  /** Replaces the deny list; entries as for setAllowList(). */
  setDenyList(entries: Iterable<string | Uint8Array>): void;
  /** Checks `key` and, if every policy allows it, charges `cost` to each (1 to 16 policies). */
  check(key: Key, policies: PolicyLike | readonly PolicyLike[], options?: CheckOptions): Promise<Decision>;
  /**
   * Several keys in one decision, all or nothing: 1 to 8 [key, policies]
   * pairs (or { key, policies } objects) with distinct keys and at most 16
   * policies in all. `cost` is charged to every policy of every pair only if
   * every one allows; if any denies, nothing is charged anywhere. A negative
   * cost refunds every pair with usage (NothingToRefundError if none has
   * any). A blocked key denies. On a Redis Cluster the keys must share a
   * slot (start them with the same {tag}), else UnsupportedError
   * (RL_E_UNSUPPORTED) before anything is sent.
   */
  checkKeys(pairs: readonly KeyPolicies[], options?: CheckOptions): Promise<KeysDecision>;
  /**
   * check() that waits up to `maxWait` for the check to be allowed
   * (docs/waiting.md), on the event loop's timers: after a denial it sleeps
   * the decision's retryAfter and checks again; it resolves to the denial at
   * once when retryAfter is Infinity or longer than the wait left, else to
   * the first allowed decision. Waiters are not queued. `signal` ends the
   * wait (rejects with its reason). An error on any try ends the wait with it.
   */
  checkWait(key: Key, policies: PolicyLike | readonly PolicyLike[], options: CheckWaitOptions): Promise<Decision>;
  /** The memory store's synchronous check; a Redis limiter throws UnsupportedError (RL_E_UNSUPPORTED). */
  checkSync(key: Key, policies: PolicyLike | readonly PolicyLike[], options?: CheckOptions): Decision;
  /**
   * Gives `amount` units (default 1) back to every policy of `key` that has
   * usage, never beyond full, atomically: the same as a check with cost
   * `-amount`. Resolves to the state after it (allowed). Rejects with
   * NothingToRefundError (RL_E_NOT_FOUND) when no policy has usage to give back.
   */
  refund(key: Key, policies: PolicyLike | readonly PolicyLike[], options?: RefundOptions): Promise<Decision>;
  /** The memory store's synchronous refund; a Redis limiter throws UnsupportedError (RL_E_UNSUPPORTED). */
  refundSync(key: Key, policies: PolicyLike | readonly PolicyLike[], options?: RefundOptions): Decision;
  /** Forgets every policy's state for `key`, its block and its strike counts included. */
  reset(key: Key): Promise<void>;
  /**
   * Blocks `key` for `duration` (integer ms or text such as "15m"; 1 ms to
   * 2^40 ms, else InvalidArgumentError, RL_E_INVALID_ARG): until then every
   * check of it is denied, whatever its policies, with `retryAfter` at least
   * the time left. Replaces any block the key has (it may shorten one).
   */
  block(key: Key, duration: Period): Promise<void>;
  /**
   * Lifts `key`'s block (set by block() or by a policy's `block`) and forgets
   * its strike counts. Unblocking a key that is not blocked succeeds.
   */
  unblock(key: Key): Promise<void>;
  /** One round trip to the store; resolves to the round-trip time in ms (0 for memory). */
  ping(): Promise<number>;
  health(): HealthInfo;
  /**
   * Every series of the limiter's metrics now (docs/metrics.md): one
   * snapshot, read without I/O. tollgate/prometheus and
   * tollgate/opentelemetry export them.
   */
  metrics(): MetricSample[];
  /**
   * Sends the limiter's log messages at `options.level` (default 'info')
   * or more severe to `handler`, on the JS thread and never inside another
   * call of the limiter; null removes it. Replaces the handler set before
   * (or by the `onLog` option): the old one is not called after this
   * returns, and none is after close(). A level that is not a LogLevel is
   * a RangeError, a handler that is not a function a TypeError.
   */
  setLogHandler(handler: LogHandler | null, options?: LogOptions): void;
  /**
   * The stored (key, policy) states under the key prefix that belong to
   * `policies` (the list the application checks with): each is listed with
   * the policy of its identity (its name, or the position of an unnamed
   * policy); states of other identities are skipped. Redis: SCAN; memory:
   * UnsupportedError.
   */
  keys(policies: PolicyLike | readonly PolicyLike[]): AsyncIterableIterator<KeyState>;
  /**
   * Acquires a concurrency lease on `key` if fewer than `maxInFlight` are
   * held; it lasts `ttl` unless renewed or released. Resolves whether
   * acquired or denied (narrow on `acquired`). Redis: off the event loop.
   * Bad options reject with InvalidArgumentError (RL_E_INVALID_ARG) or TypeError.
   */
  acquire(key: Key, options: AcquireOptions): Promise<LeaseResult>;
  /**
   * acquire() that waits up to `maxWait` for a place (docs/waiting.md): it
   * tries again after 10 ms, 20, 40, ... (never beyond the denial's
   * retryAfter nor the wait left), and at once when a lease of this limiter
   * is released in this process. Resolves to the acquired result, or to the
   * last denial once the wait is over. `signal` ends the wait (rejects with
   * its reason) and no lease is kept.
   */
  acquireWait(key: Key, options: AcquireWaitOptions): Promise<LeaseResult>;
  /**
   * Extends `lease` (acquired through this limiter): it now ends `ttl`
   * (default: its current ttl) from now. LeaseLostError (RL_E_NOT_FOUND)
   * if it is no longer held; InvalidArgumentError (RL_E_INVALID_ARG) for
   * another limiter's lease.
   */
  renew(lease: Lease, ttl?: Period): Promise<void>;
  /**
   * Ends `lease` (acquired through this limiter): true if it was held until
   * now, false if it had expired or was released already (harmless).
   * InvalidArgumentError (RL_E_INVALID_ARG) for another limiter's lease.
   */
  release(lease: Lease): Promise<boolean>;
  /**
   * Runs `fn(lease)` under a lease of `key` and releases it when `fn`
   * settles (resolved or thrown). With `maxWait` it first waits for a place
   * as acquireWait() does. Denied: rejects with LeaseDeniedError and `fn`
   * does not run.
   */
  withLease<T>(key: Key, options: WithLeaseOptions, fn: (lease: Lease) => T | PromiseLike<T>): Promise<T>;
  /** Waits for calls in progress, then releases the limiter. Idempotent. */
  close(): Promise<void>;
}

/**
 * The rate-limit response headers for `decision` (which reported `policy`,
 * or `policies[decision.policyIndex]`), formatted by the C library.
 */
export function rateLimitHeaders(
  decision: Decision,
  policy: PolicyLike | readonly PolicyLike[],
  name?: string,
): Record<string, string>;

/** The loaded C library's version, e.g. "0.1.0". */
export const version: string;
export const versionNumber: number;

export type ErrorCode =
  | 'RL_E_INVALID_ARG' | 'RL_E_KEY_INVALID' | 'RL_E_KEY_TOO_LONG' | 'RL_E_POLICY' | 'RL_E_OVERFLOW'
  | 'RL_E_VERSION' | 'RL_E_NOMEM' | 'RL_E_URL' | 'RL_E_UNSUPPORTED' | 'RL_E_INTERNAL' | 'RL_E_CONNECT'
  | 'RL_E_TIMEOUT' | 'RL_E_AUTH' | 'RL_E_TLS' | 'RL_E_PROTOCOL' | 'RL_E_STORE' | 'RL_E_CLOSED' | 'RL_E_DONE'
  | 'RL_E_NOT_FOUND' | 'RL_E_BUSY';

export const CODES: Readonly<Record<ErrorCode, number>>;

export class TollgateError extends Error {
  constructor(message: string, code?: ErrorCode);
  readonly code: ErrorCode;
}
/** RL_E_CONNECT, RL_E_CLOSED */
export class ConnectionError extends TollgateError {}
/** RL_E_TIMEOUT */
export class TimeoutError extends TollgateError {}
/** RL_E_AUTH */
export class AuthError extends TollgateError {}
/** RL_E_TLS */
export class TLSError extends TollgateError {}
/** RL_E_PROTOCOL, RL_E_STORE */
export class ProtocolError extends TollgateError {}
/** RL_E_INVALID_ARG, RL_E_KEY_INVALID, RL_E_KEY_TOO_LONG, RL_E_POLICY, RL_E_OVERFLOW, RL_E_URL */
export class InvalidArgumentError extends TollgateError {}
/** RL_E_UNSUPPORTED */
export class UnsupportedError extends TollgateError {}
/** RL_E_NOT_FOUND: a refund found no usage to give back (never charged, given back already, or refilled); nothing was written. */
export class NothingToRefundError extends TollgateError {}
/** RL_E_NOT_FOUND from a lease's renew: it is no longer held (it expired or was released). */
export class LeaseLostError extends TollgateError {}
/**
 * RL_E_BUSY: back-pressure. The limiter already has `maxAsync` checks
 * waiting for the store, so this one was refused at once (nothing sent or
 * queued).
 */
export class BusyError extends TollgateError {}
/**
 * limiter.withLease() was denied. Not a TollgateError: nothing failed, the
 * limit answered.
 */
export class LeaseDeniedError extends Error {
  constructor(
    message: string,
    details?: { key?: Key; retryAfter?: number; inFlight?: number; maxInFlight?: number; source?: LeaseSource },
  );
  readonly key: Key;
  /** Milliseconds until the earliest held lease ends; a release may come sooner. */
  readonly retryAfter: number;
  readonly inFlight: number;
  readonly maxInFlight: number;
  readonly source: LeaseSource;
}

/** The TollgateError subclass for an RL_E_* code (number or name). */
export function makeError(code: number | ErrorCode, message: string): TollgateError;

declare const tollgate: {
  Limiter: typeof Limiter;
  Lease: typeof Lease;
  Policy: typeof Policy;
  policy: typeof policy;
  parsePeriod: typeof parsePeriod;
  rateLimitHeaders: typeof rateLimitHeaders;
  version: string;
  versionNumber: number;
  CODES: typeof CODES;
  makeError: typeof makeError;
  TollgateError: typeof TollgateError;
  ConnectionError: typeof ConnectionError;
  TimeoutError: typeof TimeoutError;
  AuthError: typeof AuthError;
  TLSError: typeof TLSError;
  ProtocolError: typeof ProtocolError;
  InvalidArgumentError: typeof InvalidArgumentError;
  UnsupportedError: typeof UnsupportedError;
  NothingToRefundError: typeof NothingToRefundError;
  LeaseLostError: typeof LeaseLostError;
  BusyError: typeof BusyError;
  LeaseDeniedError: typeof LeaseDeniedError;
};
export default tollgate;
