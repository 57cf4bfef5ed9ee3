// Types of tollgate/plans.
import type { Decision, Key, PolicyLike } from './index';

/** Anything a key function may be handed: an Express / node:http request or a Web Request. */
export type AnyRequest = any;
export type { Key };
/** request -> key, or null/undefined to leave the request unlimited. May be async. */
export type KeyFunc<R = AnyRequest> = (request: R) => Key | null | undefined | Promise<Key | null | undefined>;
export type PolicySpec = PolicyLike | readonly PolicyLike[];
export type PlanMap = Readonly<Record<string, PolicySpec>> | ReadonlyMap<string, PolicySpec>;

/** FREE 100/h, PRO 1000/h, ENTERPRISE 10000/h (Python's DEFAULT_PLANS). */
export declare const PLANS: Readonly<{
  FREE: Readonly<{ limit: 100; period: '1h' }>;
  PRO: Readonly<{ limit: 1000; period: '1h' }>;
  ENTERPRISE: Readonly<{ limit: 10000; period: '1h' }>;
}>;
export declare const DEFAULT_PLANS: typeof PLANS;
export declare const HEADER_NAMES: readonly [
  'RateLimit-Policy',
  'RateLimit',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
  'Retry-After',
];
export declare const MAX_KEY_VALUE: 128;

/** The header your proxies write the client's address into: X-Forwarded-For (default), RFC 7239 Forwarded (its for=), or 'auto' (Forwarded when present, else X-Forwarded-For). */
export type ProxyHeader = 'x-forwarded-for' | 'forwarded' | 'auto';
export declare const PROXY_HEADERS: readonly ['x-forwarded-for', 'forwarded', 'auto'];

export interface ClientAddressOptions {
  /** With a hop count: take the address from the proxy header (only behind proxies you run). Default false. */
  trustForwarded?: boolean;
  /**
   * A hop count N: how many of your proxies stand in front (the client is
   * the N-th entry from the right; default 1, read only with trustForwarded).
   * Or your proxies' addresses and CIDR ranges: when the peer is one of
   * them, the header is read from the right skipping the proxies; the first
   * other entry is the client; an entry that is no address (unknown, an
   * obfuscated _id) ends the walk: "ip:unknown". A bad entry throws
   * InvalidArgumentError naming trustedProxies[i].
   */
  trustedProxies?: number | readonly string[];
  /** Default 'x-forwarded-for'. */
  proxyHeader?: ProxyHeader;
  /** Key IPv6 clients by their network of this many bits (default 64); null keys whole addresses. */
  ipv6Prefix?: number | null;
}

/**
 * Allow and deny lists of a web helper (docs/node.md, "Exemptions"): IP
 * addresses and CIDR ranges match the client address, exact entries the
 * key. Decided before any check: a request on the deny list gets 403
 * {"detail":"Forbidden"} (no rate-limit headers, no Retry-After); one on the
 * allow list is not checked. The deny list wins; a shadow limiter does not
 * enforce it.
 */
export interface ExemptionOptions {
  allow?: Iterable<string | Uint8Array>;
  deny?: Iterable<string | Uint8Array>;
  /** How the client address is found (and, given, the default key's rule): a hop count or your proxies' addresses and CIDR ranges. */
  trustedProxies?: number | readonly string[];
  /** Needs trustedProxies. Default 'x-forwarded-for'. */
  proxyHeader?: ProxyHeader;
}

/** An allow or deny list: exact keys and ranges (in CIDR text). */
export declare class AddressList {
  constructor(entries: Iterable<string | Uint8Array>, what?: string);
  readonly keys: ReadonlySet<string>;
  readonly ranges: readonly string[];
  readonly size: number;
  hasAddress(address: string | null): boolean;
  hasKey(key: Key | null | undefined): boolean;
}

/** The for= node of each element of RFC 7239 Forwarded header lines (null for an element without one, or malformed). */
export declare function forwardedFor(lines: string | readonly string[]): (string | null)[];
/** The JSON body of a deny-list 403. */
export declare const FORBIDDEN_BODY: '{"detail":"Forbidden"}';

/** Key by client address: "ip:203.0.113.7", "ip:2001:db8:1:2::/64". Called with a
 * request it is the key function; called with options it returns one. */
export declare function clientAddress(options?: ClientAddressOptions): (request: AnyRequest) => string;
export declare function clientAddress(request: object): string;

export interface HeaderKeyOptions {
  /** Default: the lower-cased header name and ":". */
  prefix?: string;
  /** Key for requests without the header; default clientAddress; null leaves them unlimited. */
  fallback?: KeyFunc | null;
  /** Key by the value's SHA-256 ("<prefix>sha256:<hex>"). Values over 128 bytes always are. */
  hash?: boolean;
}
export declare function headerKey(name: string, options?: HeaderKeyOptions): KeyFunc;

export interface OrganizationKeyOptions {
  /** The organization the app authenticated (may be async); used instead of the header. */
  getter?: (request: AnyRequest) => string | null | undefined | Promise<string | null | undefined>;
  fallback?: KeyFunc | null;
}
/** "org:<id>" from the header (default "X-Org-Id") or from options.getter. */
export declare function organizationKey(header?: string | null, options?: OrganizationKeyOptions): KeyFunc;
export declare function organizationKey(options: OrganizationKeyOptions): KeyFunc;

/** Which responses keep their charge: every one ('all', the default), the failed ones only, or the successful ones only. */
export type CountMode = 'all' | 'failed' | 'successful';
export declare const COUNT_MODES: readonly ['all', 'failed', 'successful'];

/**
 * Charge after the response: the request is still checked (and charged)
 * before the handler runs; a response that does not count under `count` gets
 * its units back (a refund). A refund that fails is ignored.
 */
export interface CountOptions {
  /** Default 'all'. 'failed': e.g. count failed logins only. */
  count?: CountMode;
  /** Whether a response status is a failure; default status >= 400. One that throws keeps the charge. */
  failed?: (status: number) => boolean;
}

export interface LimitsOptions<R = AnyRequest> {
  policy?: PolicySpec;
  policies?: PolicySpec;
  plans?: PlanMap;
  /** request -> plan name; null/undefined: the default policy (or the first plan). */
  plan?: (request: R) => string | null | undefined | Promise<string | null | undefined>;
  /** The policy name in the RateLimit headers; default the plan's name, or "default". */
  name?: string;
}

/**
 * One limit of an integration's `limits`: its policies (a policy, or plans
 * chosen by `plan(request)`), its key function (default: the integration's
 * `key`) and its `scope` ("<scope>|<key>"). `cost`, `count`, `failed`,
 * `onError` and `limiter` belong to the whole request: give them beside
 * `limits`.
 */
export interface LimitSpec<R = AnyRequest> extends LimitsOptions<R> {
  key?: KeyFunc<R>;
  scope?: string;
}

/**
 * Several limits checked in one decision, all or nothing (one
 * Limiter.checkKeys call; two steps when the keys lie in several Redis
 * Cluster slots): the first is the global one, the others the route's.
 */
export interface MultiLimitOptions<R = AnyRequest> {
  /** 1 to 8 limits; instead of policy / policies / plans / plan / name / scope. */
  limits?: readonly LimitSpec<R>[];
}

export declare class Limits<R = AnyRequest> {
  constructor(options?: LimitsOptions<R>);
  readonly empty: boolean;
  readonly plan: ((request: R) => string | null | undefined | Promise<string | null | undefined>) | null;
  /** Throws a RangeError for a plan name missing from plans. */
  forPlan(plan: string | null | undefined): { policies: PolicyLike[]; name: string };
}

/** The policies of a plan: policiesFor('PRO') -> [{ limit: 1000, period: '1h' }]. */
export declare function policiesFor(plan: string, plans?: PlanMap): PolicyLike[];

/** "203.0.113.7", "2001:db8::/64" (as Python's ipaddress writes them), or null. */
export declare function normalizeAddress(text: string, ipv6Prefix?: number | null): string | null;

export interface Outcome {
  decision: Decision;
  policy: PolicyLike;
  name: string;
  /** The key the decision's policy was checked under. */
  key?: Key;
}
export type RateLimitHeaderFields = Record<string, string>;
export declare function binding(outcomes: readonly Outcome[]): Outcome;
export declare function headersFor(outcome: Outcome): RateLimitHeaderFields;
export declare function deniedBody(headers: RateLimitHeaderFields): string;
export declare function scopedKey(scope: string, key: Key): Key;
