/**
 * An HTTP/1.1 server for fetch-style handlers with the limits a public listener needs and
 * `Deno.serve` lacks: a deadline for the headers, one for the body, an idle timeout between
 * keep-alive requests, a cap on open connections, and a hard close for shutdown. It runs on
 * {@link listenTcp}, whose accept loop survives descriptor exhaustion.
 *
 * Requests: content-length or chunked bodies, `Expect: 100-continue`, keep-alive and
 * pipelining (one request at a time per connection). Responses: content-length when the
 * handler set one, chunked otherwise (server-sent events flush chunk by chunk). Malformed
 * input is answered 400 (431 for oversized headers, 408 for deadlines) and the connection
 * closed; a client that goes away aborts `request.signal` and cancels the response body.
 * @module
 */
import { listenTcp, type TcpConn, type TcpListener } from "../runtime/runtime.ts";

/** Limits of {@link Http1Server}. Times in milliseconds. */
export interface HttpLimits {
  /** From a connection's first byte (or its opening) to the end of a request's headers. */
  headersTimeoutMs: number;
  /** From the end of the headers to the end of the body. */
  bodyTimeoutMs: number;
  /** Between keep-alive requests, before the next request's first byte. */
  idleTimeoutMs: number;
  /** Open connections; more are answered 503 and closed. */
  maxConnections: number;
  /** Request line plus headers. */
  maxHeaderBytes: number;
  /** A response write the client does not take within this long closes the connection (a reader that stopped reading). */
  writeTimeoutMs: number;
  /**
   * Lingering close: after an answer given before the request body was read (413, 401...),
   * the rest of the body is read and discarded for at most this long, so that a client still
   * sending reads the answer instead of a reset; then the connection closes.
   */
  lingerMs: number;
  /** At most this many bytes are discarded while lingering. */
  lingerBytes: number;
  /** Lingering also ends once the client has sent nothing for this long (a body of unknown length). */
  lingerIdleMs: number;
}

/** Defaults of {@link HttpLimits}. */
export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  idleTimeoutMs: 5_000,
  maxConnections: 1024,
  maxHeaderBytes: 16 * 1024,
  writeTimeoutMs: 30_000,
  lingerMs: 10_000,
  lingerBytes: 64 << 20,
  lingerIdleMs: 1_000,
};

/** Why a request body could not be read to its end. */
export class RequestBodyError extends Error {
  /**
   * `client_gone`: the connection closed mid-body; `body_timeout`: the body deadline passed;
   * `malformed_body`: bad chunked framing.
   */
  readonly code: "client_gone" | "body_timeout" | "malformed_body";
  constructor(code: "client_gone" | "body_timeout" | "malformed_body", message: string) {
    super(message);
    this.name = "RequestBodyError";
    this.code = code;
  }
}

/** Why the server could not listen. */
export class ListenError extends Error {
  /** `address_in_use`: another process holds the port; `permission_denied`: e.g. a port below 1024; `listen_failed`: anything else. */
  readonly code: "address_in_use" | "permission_denied" | "listen_failed";
  readonly hostname: string;
  readonly port: number;
  constructor(code: ListenError["code"], hostname: string, port: number, options?: ErrorOptions) {
    const why = code === "address_in_use"
      ? "the port is already in use"
      : code === "permission_denied"
      ? "permission denied"
      : `${(options?.cause as Error)?.message ?? "failed"}`;
    super(`cannot listen on ${hostname}:${port}: ${why}`, options);
    this.name = "ListenError";
    this.code = code;
    this.hostname = hostname;
    this.port = port;
  }
}

/** The runtime's listen error (Deno's error classes, Node's and Bun's errno codes) as a {@link ListenError}. */
function listenError(e: unknown, hostname: string, port: number): ListenError {
  const { name, code } = (e ?? {}) as { name?: string; code?: string };
  const kind = name === "AddrInUse" || code === "EADDRINUSE"
    ? "address_in_use"
    : name === "PermissionDenied" || code === "EACCES" || code === "EPERM"
    ? "permission_denied"
    : "listen_failed";
  return new ListenError(kind, hostname, port, { cause: e });
}

/** What the listener has refused or cut off (for /metrics). */
export interface HttpListenerCounters {
  /** Connections answered 503 because `maxConnections` were open. */
  connectionsRejected: number;
  /** Connections closed by a deadline, by which one (`write`: the client stopped reading its response). */
  timeouts: { headers: number; body: number; idle: number; write: number };
  /** Requests answered 400/431 before reaching the handler. */
  malformed: number;
  /** Accept failures survived (e.g. out of file descriptors). */
  acceptErrors: number;
}

/** Options of {@link Http1Server.listen}. */
export interface Http1ServerOptions {
  hostname: string;
  port: number;
  limits?: Partial<HttpLimits>;
  /** Accept errors (rate-limited) and handler failures. */
  onError?: (message: string) => void;
}

type Handler = (req: Request) => Response | Promise<Response>;

const CRLF = "\r\n";
const enc = new TextEncoder();
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const READ_SIZE = 64 * 1024;
/** Bytes read ahead of the current request before the connection stops reading. */
const READ_AHEAD = 1 << 20;

const REASONS: Record<number, string> = {
  100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
  401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
  413: "Content Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
  499: "Client Closed Request", 500: "Internal Server Error", 503: "Service Unavailable",
};

function errorBytes(status: number, message: string, code: string, extra = ""): Uint8Array {
  const body = JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code } });
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}${CRLF}content-type: application/json${CRLF}` +
    `content-length: ${enc.encode(body).length}${CRLF}connection: close${CRLF}${extra}${CRLF}`;
  return enc.encode(head + body);
}

/** A malformed request: answered with `status`, then the connection closes. */
class BadRequest extends Error {
  constructor(readonly status: number, message: string, readonly code: string) {
    super(message);
  }
}

/** A growable byte buffer over one connection, filled by a single reader loop. */
class ConnBuffer {
  #buf = new Uint8Array(READ_SIZE * 2);
  #start = 0;
  #end = 0;
  eof = false;
  #waiters: (() => void)[] = [];
  #room: (() => void) | null = null;

  get length(): number {
    return this.#end - this.#start;
  }

  view(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  append(data: Uint8Array): void {
    if (this.#end + data.length > this.#buf.length) {
      const need = this.length + data.length;
      const next = need > this.#buf.length / 2 ? new Uint8Array(Math.max(need * 2, this.#buf.length)) : this.#buf;
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#end = this.length;
      this.#start = 0;
    }
    this.#buf.set(data, this.#end);
    this.#end += data.length;
    this.#wake();
  }

  /** Takes up to `n` bytes (a copy). */
  take(n: number): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#start + Math.min(n, this.length));
    this.skip(out.length);
    return out;
  }

  /** Drops up to `n` bytes; returns how many. */
  skip(n: number): number {
    const k = Math.min(n, this.length);
    this.#start += k;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.length < READ_AHEAD) {
      const r = this.#room;
      this.#room = null;
      r?.();
    }
    return k;
  }

  setEof(): void {
    this.eof = true;
    this.#wake();
  }

  /** Resolves when more bytes arrive or the stream ends. */
  more(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }

  /** Resolves when the reader may read again (the buffer drained below the read-ahead). */
  room(): Promise<void> {
    return this.length < READ_AHEAD ? Promise.resolve() : new Promise((r) => (this.#room = r));
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

interface Parsed {
  method: string;
  target: string;
  version: "1.0" | "1.1";
  headers: [string, string][];
}

function findHeaderEnd(b: Uint8Array, from: number): number {
  for (let i = Math.max(0, from); i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

function parseHead(text: string): Parsed {
  const lines = text.split(CRLF);
  // deno-lint-ignore no-control-regex
  const m = /[\x00-\x1f\x7f]/.test(lines[0]) ? null : /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/.exec(lines[0]);
  if (!m || !TOKEN.test(m[1])) throw new BadRequest(400, "malformed request line", "malformed_request");
  const version = `${m[3]}.${m[4]}`;
  if (version !== "1.1" && version !== "1.0") throw new BadRequest(400, `HTTP/${version} is not supported`, "unsupported_http_version");
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) throw new BadRequest(400, "malformed header line", "malformed_header");
    const value = line.slice(colon + 1).trim();
    // Control characters other than tab are not allowed in field values.
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw new BadRequest(400, `malformed value of header ${name}`, "malformed_header");
    headers.push([name.toLowerCase(), value]);
  }
  return { method: m[1], target: m[2], version: version as "1.0" | "1.1", headers };
}

/** How far a request body has been read. */
interface BodyState {
  /** Read to its end. */
  done: boolean;
  /** Bytes of a content-length body not read yet; null for a chunked one. */
  left: number | null;
}

/** One client connection: reads requests, runs the handler, writes responses. */
class Connection {
  readonly #conn: TcpConn;
  readonly #server: Http1Server;
  readonly #buf = new ConnBuffer();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** A request is being handled or answered (not idle). */
  busy = false;
  #onGone: (() => void) | null = null;
  readonly done: Promise<void>;

  constructor(conn: TcpConn, server: Http1Server) {
    this.#conn = conn;
    this.#server = server;
    this.#pump();
    this.done = this.#serve().catch((e) => server.onError(`connection failed: ${(e as Error)?.message ?? e}`)).finally(() => this.close());
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#conn.close();
    this.#buf.setEof();
    this.#onGone?.();
  }

  /** Closes the connection if it sits between requests (shutdown). */
  closeIfIdle(): void {
    if (!this.busy) this.close();
  }

  #deadline(ms: number, onFire: () => void): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(onFire, ms);
  }

  async #pump(): Promise<void> {
    const chunk = new Uint8Array(READ_SIZE);
    while (!this.#closed) {
      await this.#buf.room();
      const n = await this.#conn.read(chunk);
      if (n === null) break;
      this.#buf.append(chunk.subarray(0, n));
    }
    this.#buf.setEof();
    // The peer is gone: whatever is running for it stops.
    this.#onGone?.();
  }

  /** Writes all of `data`; a client that does not take it within the write timeout is cut off. */
  async #write(data: Uint8Array): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#server.counters.timeouts.write++;
        // Closing aborts the request (its sequence is cancelled) and fails the pending write.
        this.close();
        reject(new RequestBodyError("client_gone", "the client did not read its response in time"));
      }, this.#server.limits.writeTimeoutMs);
    });
    try {
      await Promise.race([this.#conn.write(data), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #fail(status: number, message: string, code: string, counter?: keyof HttpListenerCounters["timeouts"]): Promise<void> {
    if (counter) this.#server.counters.timeouts[counter]++;
    else this.#server.counters.malformed++;
    await this.#write(errorBytes(status, message, code)).catch(() => {});
    this.close();
  }

  async #serve(): Promise<void> {
    const limits = this.#server.limits;
    let first = true;
    while (!this.#closed) {
      // Between requests: the idle timeout until a first byte, then the header deadline.
      this.busy = false;
      if (this.#server.stopping) return;
      if (this.#buf.length === 0) {
        if (!first) this.#deadline(limits.idleTimeoutMs, () => (this.#server.counters.timeouts.idle++, this.close()));
        else this.#deadline(limits.headersTimeoutMs, () => (this.#server.counters.timeouts.headers++, this.close()));
        while (this.#buf.length === 0 && !this.#buf.eof) await this.#buf.more();
        if (this.#buf.length === 0) return;
      }
      this.busy = true;
      let timedOut = false;
      this.#deadline(limits.headersTimeoutMs, () => {
        timedOut = true;
        this.#fail(408, "request headers not received in time", "headers_timeout", "headers");
      });
      let end = -1;
      let scanned = 0;
      while ((end = findHeaderEnd(this.#buf.view(), scanned - 3)) < 0) {
        scanned = this.#buf.length;
        if (scanned > limits.maxHeaderBytes) return await this.#fail(431, "request headers too large", "headers_too_large");
        if (this.#buf.eof || timedOut) return;
        await this.#buf.more();
      }
      if (end > limits.maxHeaderBytes) return await this.#fail(431, "request headers too large", "headers_too_large");
      clearTimeout(this.#timer);
      const head = new TextDecoder("latin1").decode(this.#buf.take(end + 4).subarray(0, end));
      first = false;
      let keepAlive: boolean;
      let http10 = false;
      let request: Request;
      let bodyState: BodyState;
      const abort = new AbortController();
      try {
        const parsed = parseHead(head);
        http10 = parsed.version === "1.0";
        ({ request, keepAlive, bodyState } = this.#request(parsed, abort));
      } catch (e) {
        if (e instanceof BadRequest) return await this.#fail(e.status, e.message, e.code);
        throw e;
      }
      const gone = () => abort.abort(new RequestBodyError("client_gone", "the client closed the connection"));
      this.#onGone = gone;
      if (this.#buf.eof && bodyState.done) gone();
      let response: Response;
      try {
        response = await this.#server.handler(request);
      } catch (e) {
        this.#server.onError(`handler failed: ${(e as Error)?.message ?? e}`);
        response = new Response(JSON.stringify({ error: { message: "internal error", type: "server_error", param: null, code: null } }), {
          status: 500,
          headers: { "content-type": "application/json" },
        });
      }
      clearTimeout(this.#timer);
      // The body must be read to its end before the next request can be parsed.
      if (!bodyState.done) keepAlive = false;
      if (this.#server.stopping) keepAlive = false;
      // Without chunked encoding (HTTP/1.0), only the connection's end can end such a body.
      if (http10 && response.headers.get("content-length") === null) keepAlive = false;
      const ok = await this.#respond(request.method, response, keepAlive, abort.signal, http10);
      this.#onGone = null;
      // Answered before its body was read (413, 401...): the client may still be sending it.
      if (ok && !bodyState.done) await this.#linger(bodyState);
      if (!ok || !keepAlive) return;
    }
  }

  #request(p: Parsed, abort: AbortController): { request: Request; keepAlive: boolean; bodyState: BodyState } {
    const get = (name: string) => p.headers.filter(([k]) => k === name).map(([, v]) => v);
    const connection = get("connection").join(",").toLowerCase();
    const keepAlive = p.version === "1.1" ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
    const te = get("transfer-encoding");
    const cl = get("content-length");
    if (te.length && cl.length) throw new BadRequest(400, "both transfer-encoding and content-length", "malformed_request");
    let length: number | "chunked" = 0;
    if (te.length) {
      if (te.join(",").toLowerCase().replace(/\s/g, "") !== "chunked") throw new BadRequest(400, `transfer-encoding ${te.join(",")} is not supported`, "unsupported_transfer_encoding");
      length = "chunked";
    } else if (cl.length) {
      const values = new Set(cl.flatMap((v) => v.split(",").map((x) => x.trim())));
      const v = [...values][0];
      if (values.size !== 1 || !/^\d{1,15}$/.test(v)) throw new BadRequest(400, "invalid content-length", "malformed_request");
      length = Number(v);
    }
    const host = get("host")[0] ?? "localhost";
    let url: URL;
    try {
      if (p.target.startsWith("/")) url = new URL(`http://${/^[A-Za-z0-9.\-:[\]]+$/.test(host) ? host : "localhost"}${p.target}`);
      else if (/^https?:\/\//i.test(p.target)) url = new URL(p.target);
      else throw new Error();
    } catch {
      throw new BadRequest(400, "malformed request target", "malformed_request");
    }
    const headers = new Headers();
    try {
      for (const [k, v] of p.headers) headers.append(k, v);
    } catch {
      throw new BadRequest(400, "malformed header", "malformed_header");
    }
    const bodyState: BodyState = { done: length === 0, left: length === "chunked" ? null : length };
    let body: ReadableStream<Uint8Array> | null = null;
    if (length !== 0 && p.method !== "GET" && p.method !== "HEAD") {
      body = this.#bodyStream(length, bodyState, get("expect")[0]?.toLowerCase() === "100-continue");
    } else if (length !== 0) {
      throw new BadRequest(400, `${p.method} with a body`, "malformed_request");
    }
    let request: Request;
    try {
      request = new Request(url, {
        method: p.method,
        headers,
        body,
        signal: abort.signal,
        // @ts-ignore: required for stream bodies (Deno, Bun and the spec)
        duplex: "half",
      });
    } catch {
      // e.g. a method fetch forbids (CONNECT, TRACE)
      throw new BadRequest(400, `cannot serve ${p.method} ${p.target}`, "malformed_request");
    }
    return { request, keepAlive, bodyState };
  }

  #bodyStream(length: number | "chunked", state: BodyState, expectContinue: boolean): ReadableStream<Uint8Array> {
    let remaining = length === "chunked" ? 0 : length;
    let chunkedDone = false;
    let started = false;
    let timedOut = false;
    const buf = this.#buf;
    const need = async (n: number) => {
      while (buf.length < n) {
        if (timedOut) throw new RequestBodyError("body_timeout", "request body not received in time");
        if (buf.eof) throw new RequestBodyError("client_gone", "the client closed the connection mid-body");
        await buf.more();
      }
    };
    const line = async (): Promise<string> => {
      for (;;) {
        const v = buf.view();
        const i = v.indexOf(10);
        if (i >= 0) return new TextDecoder("latin1").decode(buf.take(i + 1)).replace(/\r?\n$/, "");
        if (v.length > 4096) throw new BadRequest(400, "malformed chunk header", "malformed_request");
        await need(v.length + 1);
      }
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (!started) {
          started = true;
          if (expectContinue) await this.#write(enc.encode(`HTTP/1.1 100 Continue${CRLF}${CRLF}`)).catch(() => {});
          this.#deadline(this.#server.limits.bodyTimeoutMs, () => {
            timedOut = true;
            this.#server.counters.timeouts.body++;
            buf.setEof(); // wakes the reader, which reports the timeout
          });
        }
        try {
          if (length !== "chunked") {
            await need(1);
            const part = buf.take(Math.min(remaining, READ_SIZE));
            remaining -= part.length;
            state.left = remaining;
            controller.enqueue(part);
          } else {
            if (remaining === 0) {
              const size = (await line()).split(";")[0].trim();
              if (!/^[0-9a-fA-F]{1,8}$/.test(size)) throw new RequestBodyError("malformed_body", "malformed chunk size");
              remaining = parseInt(size, 16);
              if (remaining === 0) {
                // Trailers end with an empty line.
                while ((await line()) !== "");
                chunkedDone = true;
              }
            }
            if (remaining > 0) {
              await need(1);
              const part = buf.take(Math.min(remaining, READ_SIZE));
              remaining -= part.length;
              if (remaining === 0) {
                await need(2);
                buf.take(2); // CRLF after the chunk
              }
              controller.enqueue(part);
            }
          }
          if ((length !== "chunked" && remaining === 0) || chunkedDone) {
            state.done = true;
            clearTimeout(this.#timer);
            controller.close();
          }
        } catch (e) {
          controller.error(
            timedOut && e instanceof RequestBodyError
              ? new RequestBodyError("body_timeout", "request body not received in time")
              : e instanceof BadRequest
              ? new RequestBodyError("malformed_body", e.message)
              : e,
          );
        }
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Lingering close (nginx's name): reads and discards the rest of a request body answered
   * early, until its end, the client's close, `lingerBytes`, `lingerMs`, or `lingerIdleMs`
   * without a byte; the caller then closes. Closing with unread bytes would reset the
   * connection, and a client still writing its body (Python's http.client) would see the
   * reset instead of the answer.
   */
  async #linger(body: BodyState): Promise<void> {
    const limits = this.#server.limits;
    const buf = this.#buf;
    let expired = false;
    let wake = () => {};
    this.#deadline(limits.lingerMs, () => {
      expired = true;
      wake();
    });
    let budget = limits.lingerBytes;
    while (!expired && budget > 0 && body.left !== 0) {
      if (buf.length > 0) {
        const n = buf.skip(Math.min(budget, body.left ?? Infinity));
        budget -= n;
        if (body.left !== null) body.left -= n;
        continue;
      }
      if (buf.eof) break;
      let idle: ReturnType<typeof setTimeout> | undefined;
      const quiet = new Promise<boolean>((r) => {
        wake = () => r(false);
        idle = setTimeout(() => r(false), limits.lingerIdleMs);
      });
      const arrived = await Promise.race([buf.more().then(() => true), quiet]);
      clearTimeout(idle);
      if (!arrived) break;
    }
    clearTimeout(this.#timer);
  }

  /** Writes the response; false when the connection can no longer be used. */
  async #respond(method: string, res: Response, keepAlive: boolean, clientGone: AbortSignal, http10: boolean): Promise<boolean> {
    const status = res.status;
    const noBody = method === "HEAD" || status === 204 || status === 304;
    let head = `HTTP/1.1 ${status} ${res.statusText || REASONS[status] || "Unknown"}${CRLF}`;
    const declared = res.headers.get("content-length");
    for (const [k, v] of res.headers) {
      if (k === "content-length" || k === "transfer-encoding" || k === "connection" || k === "keep-alive") continue;
      head += `${k}: ${v}${CRLF}`;
    }
    // HTTP/1.0 has no chunked encoding: there the end of the connection ends the body.
    const chunked = !noBody && res.body !== null && declared === null && !http10;
    if (noBody) {
      if (declared !== null) head += `content-length: ${declared}${CRLF}`;
    } else if (res.body === null) head += `content-length: 0${CRLF}`;
    else if (declared !== null) head += `content-length: ${declared}${CRLF}`;
    else if (chunked) head += `transfer-encoding: chunked${CRLF}`;
    head += keepAlive ? CRLF : `connection: close${CRLF}${CRLF}`;
    if (noBody || res.body === null) {
      await res.body?.cancel().catch(() => {});
      return await this.#write(enc.encode(head)).then(() => true, () => false);
    }
    const reader = res.body.getReader();
    const cancel = () => reader.cancel(new RequestBodyError("client_gone", "the client closed the connection")).catch(() => {});
    if (clientGone.aborted) {
      await cancel();
      return false;
    }
    clientGone.addEventListener("abort", cancel, { once: true });
    try {
      let pending: Uint8Array = enc.encode(head);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!value || value.length === 0) continue;
        const framed = chunked ? frame(value) : value;
        // The head goes out with the first piece of the body.
        await this.#write(pending.length ? concat(pending, framed) : framed);
        pending = new Uint8Array(0);
      }
      const tail = chunked ? enc.encode(`0${CRLF}${CRLF}`) : new Uint8Array(0);
      await this.#write(pending.length ? concat(pending, tail) : tail);
      return true;
    } catch {
      await cancel();
      return false;
    } finally {
      clientGone.removeEventListener("abort", cancel);
    }
  }
}

function frame(data: Uint8Array): Uint8Array {
  const pre = enc.encode(`${data.length.toString(16)}${CRLF}`);
  const out = new Uint8Array(pre.length + data.length + 2);
  out.set(pre);
  out.set(data, pre.length);
  out.set([13, 10], pre.length + data.length);
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The server: a listener, its connections and their limits. */
export class Http1Server {
  readonly limits: HttpLimits;
  readonly handler: Handler;
  readonly counters: HttpListenerCounters = {
    connectionsRejected: 0,
    timeouts: { headers: 0, body: 0, idle: 0, write: 0 },
    malformed: 0,
    acceptErrors: 0,
  };
  /** Set by {@link stopListening}: no new connections; responses close their connection. */
  stopping = false;
  readonly onError: (message: string) => void;
  #listener!: TcpListener;
  #conns = new Set<Connection>();
  #finished: () => void = () => {};
  /** Resolves once the listener is closed and every connection has ended. */
  readonly finished: Promise<void>;

  private constructor(handler: Handler, limits: HttpLimits, onError: (message: string) => void) {
    this.handler = handler;
    this.limits = limits;
    this.onError = onError;
    this.finished = new Promise((r) => (this.#finished = r));
  }

  /** Starts listening; a port that cannot be bound throws {@link ListenError}. */
  static async listen(options: Http1ServerOptions, handler: Handler): Promise<Http1Server> {
    // Limits left undefined keep their defaults.
    const given = Object.entries(options.limits ?? {}).filter(([, v]) => v !== undefined);
    const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...Object.fromEntries(given) };
    const onError = options.onError ?? (() => {});
    const server = new Http1Server(handler, limits, onError);
    try {
      server.#listener = await listenTcp({
        hostname: options.hostname,
        port: options.port,
        onAcceptError: (e) => {
          server.counters.acceptErrors++;
          onError(`accept failed (${e.message}); retrying`);
        },
      }, (conn) => server.#accept(conn));
    } catch (e) {
      throw listenError(e, options.hostname, options.port);
    }
    return server;
  }

  /** The address it listens on. */
  get addr(): { hostname: string; port: number } {
    return this.#listener.addr;
  }

  /** Open connections. */
  get connections(): number {
    return this.#conns.size;
  }

  #accept(conn: TcpConn): void {
    if (this.stopping) return conn.close();
    if (this.#conns.size >= this.limits.maxConnections) {
      this.counters.connectionsRejected++;
      // Best effort: a short answer, then the descriptor is freed at once.
      conn.write(errorBytes(503, "too many open connections; retry later", "too_many_connections", `retry-after: 1${CRLF}`))
        .catch(() => {}).finally(() => conn.close());
      return;
    }
    const c = new Connection(conn, this);
    this.#conns.add(c);
    c.done.then(() => {
      this.#conns.delete(c);
      if (this.stopping && this.#conns.size === 0) this.#finished();
    });
  }

  /** Stops accepting and closes idle connections; requests in flight finish (their connections then close). */
  stopListening(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.#listener.close();
    for (const c of this.#conns) c.closeIfIdle();
    if (this.#conns.size === 0) this.#finished();
  }

  /** Closes every connection now (the hard end of a shutdown). */
  closeAll(): void {
    this.stopListening();
    for (const c of this.#conns) c.close();
  }
}
