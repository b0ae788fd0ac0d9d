/**
 * HTTP errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
 * @module
 */

/** An error answered with its status and an OpenAI-style JSON body. */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    options: { type?: string; param?: string | null; code?: string | null; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = options.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  /** The JSON body. */
  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** The HTTP response. */
  toResponse(): Response {
    return new Response(JSON.stringify(this), {
      status: this.status,
      headers: { "content-type": "application/json", ...this.headers },
    });
  }
}

/** A 400 about one request parameter. */
export function badParam(param: string, message: string, code: string | null = null): ApiError {
  return new ApiError(400, message, { param, code });
}
