/**
 * An error the server answers with an HTTP status and OpenAI's error body
 * `{error: {message, type, param, code}}`; anything else it answers with 500.
 *   throw new ApiError(400, 'max_tokens must be an integer >= 1', {param: 'max_tokens'});
 *   const {status, body} = errorResponse(new Error('boom'));   // 500, type 'server_error'
 */

const TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  429: 'rate_limit_error',
  500: 'server_error',
  503: 'server_error',
};

export interface ApiErrorBody {
  error: {message: string; type: string; param: string | null; code: string | null};
}

export class ApiError extends Error {
  readonly param: string | null;
  readonly code: string | null;
  /** Extra response headers (Retry-After on 429). */
  readonly headers: Record<string, string>;

  constructor(
    readonly status: number,
    message: string,
    opts: {param?: string; code?: string; headers?: Record<string, string>} = {},
  ) {
    super(message);
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
    this.headers = opts.headers ?? {};
  }
}

/** The status, headers and body for any error: an ApiError as it says, anything else a 500 with its one-line message. */
export function errorResponse(e: unknown): {status: number; headers: Record<string, string>; body: ApiErrorBody} {
  const api = e instanceof ApiError ? e : null;
  const status = api?.status ?? 500;
  const message = String((e as Error)?.message ?? e).split('\n')[0];
  return {
    status,
    headers: api?.headers ?? {},
    body: {error: {message, type: TYPES[status] ?? 'server_error', param: api?.param ?? null, code: api?.code ?? null}},
  };
}
