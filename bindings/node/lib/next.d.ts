// Types of tollgate/next (Node.js runtime only).
import type { Decision, Key, Limiter, PolicyLike } from './index';
import type { KeyFunc, LimitsOptions } from './plans';

export interface NextRateLimitOptions extends LimitsOptions<Request> {
  limiter: Limiter;
  /** Default clientAddress({ trustForwarded: true }): see docs/node.md. */
  key?: KeyFunc<Request>;
  cost?: number | ((request: Request) => number);
  scope?: string;
}

export interface LimitResult {
  /** null when the key function returned null (not limited). */
  decision: Decision | null;
  /** The rate-limit headers (empty when not limited). */
  headers: Record<string, string>;
  /** The 429 to return; set only when denied. */
  response?: Response;
  key: Key | null;
  policy?: PolicyLike;
  name?: string;
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
