/**
 * Starting `serve.ts` in-process for tests, and small HTTP helpers.
 */
import { type Server, startServer } from "../../serve.ts";
import type { ServeOptions } from "../../src/server/args.ts";
import { modelDir } from "./reference.ts";

/** A started test server and its base URL. */
export interface TestServer {
  server: Server;
  base: string;
  close(): Promise<void>;
}

/** Starts a server on a free loopback port and waits for the model. */
export async function testServer(model = "stories260K", options: Partial<ServeOptions> = {}, waitReady = true): Promise<TestServer> {
  const dir = modelDir(model);
  const server = await startServer({
    model: dir,
    host: "127.0.0.1",
    port: 0,
    maxQueue: 64,
    servedModelName: model,
    maxBodyBytes: 1 << 20,
    shutdownTimeoutMs: 5000,
    maxBatchTokens: 64,
    ...options,
  }, { quiet: true });
  if (waitReady) await server.ready;
  return {
    server,
    base: `http://127.0.0.1:${server.addr.port}`,
    close: () => server.shutdown(),
  };
}

/** POSTs JSON (or raw bytes) and returns status, headers and parsed body. */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: any }> {
  const raw = body instanceof Uint8Array || typeof body === "string" ? body : JSON.stringify(body);
  const res = await fetch(url, { method: "POST", body: raw as BodyInit, headers: { "content-type": "application/json", ...headers } });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, headers: res.headers, json };
}

/** Polls until `check` passes or the timeout expires (then throws with the last value). */
export async function waitFor<T>(read: () => Promise<T> | T, check: (v: T) => boolean, timeoutMs = 20000): Promise<T> {
  const t0 = performance.now();
  let v = await read();
  while (!check(v)) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
    v = await read();
  }
  return v;
}
