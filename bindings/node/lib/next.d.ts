// Types of tollgate/next (Node.js runtime only).
import type { Decision, Key, Limiter, PolicyLike } from './index';
import type { CountOptions, ExemptionOptions, KeyFunc, LimitsOptions, MultiLimitOptions } from './plans';

export interface NextRateLimitOptions
  extends LimitsOptions<Request>, MultiLimitOptions<Request>, CountOptions, ExemptionOptions {
  limiter: Limiter;
  /** Default clientAddress({ trustForwarded: true }): see docs/node.md. */
  key?: KeyFunc<Request>;
  cost?: number | ((request: Request) => number);
  scope?: string;
}

export interface LimitResult {
  /** null when the key function returned null or an allow list exempted the request (not limited), or for a 403 of the helper's deny list. With `limits`: the one decision (keyIndex, policyIndex counted pair by pair), or after the two-step fallback the binding one. */
  decision: Decision | null;
  /** The rate-limit headers (empty when not limited): the binding limit of every check made for this Request. */
  headers: Record<string, string>;
  /** The 429 (or the 403 of a deny list) to return; set only when denied. */
  response?: Response;
  /** The key of the reported limit. */
  key: Key | null;
  policy?: PolicyLike;
  name?: string;
  /**
   * With count 'failed' or 'successful': pass the answer (or its status)
   * before returning it; a response that does not count gets its units back.
   * Resolves to whether they came back (false for count 'all', a denial, a
   * null key, or a second call); never rejects for a failed refund.
   */
  settle(response: Response | number): Promise<boolean>;
}

export declare function limit(request: Request, options: NextRateLimitOptions): Promise<LimitResult>;

export interface WithRateLimitOptions extends NextRateLimitOptions {
  /** A rejected check: return a Response; default the error propagates (500). */
  onError?: (err: unknown, request: Request, ctx: any) => Response | Promise<Response>;
}

export declare function withRateLimit<C = any>(
  handler: (request: Request, ctx: C) => Response | Promise<Response>,
  options: WithRateLimitOptions,
): (request: Request, ctx: C) => Promise<Response>;

export declare function withHeaders(response: Response, headers: Record<string, string>): Response;
export declare const EDGE_MESSAGE: string;
export type { CountMode, CountOptions, ExemptionOptions, LimitSpec, ProxyHeader } from './plans';
