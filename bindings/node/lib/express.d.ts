// Types of tollgate/express.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limiter } from './index';
import type { CountOptions, ExemptionOptions, KeyFunc, LimitsOptions, MultiLimitOptions, Outcome } from './plans';

export interface RateLimitOptions<Req = IncomingMessage>
  extends LimitsOptions<Req>, MultiLimitOptions<Req>, CountOptions, ExemptionOptions {
  limiter: Limiter;
  /** Default clientAddress (the TCP peer; X-Forwarded-For ignored); the default of each of `limits`. */
  key?: KeyFunc<Req>;
  /** Units per request (default 1), charged to every limit. */
  cost?: number | ((request: Req) => number);
  /** Own counters for this middleware: the key becomes "<scope>|<key>". */
  scope?: string;
  /** A rejected check (failureMode 'error', bad key); default next(err). */
  onError?: (err: unknown, req: Req, res: ServerResponse, next: (err?: unknown) => void) => void;
}

export type Middleware = (req: any, res: any, next: (err?: unknown) => void) => void;

/** Express / node:http middleware: headers on every response, 429 + Retry-After when denied, 403 for a deny-listed request. */
export declare function rateLimit<Req = any>(options: RateLimitOptions<Req>): Middleware;
export declare const OUTCOMES: unique symbol;
export type { CountMode, CountOptions, ExemptionOptions, LimitSpec, ProxyHeader } from './plans';
export type { Outcome };
