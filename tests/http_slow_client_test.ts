/**
 * The HTTP/1.1 listener against clients that do not keep pace: one still sending a body the
 * server has already refused (lingering close: it must read the 413, not a reset), and one
 * that stops reading a long response (the write deadline cuts it off and cancels the
 * response, counted in the listener's metrics).
 */
import net from "node:net";
import { test } from "./helpers/test.ts";
import { assertEquals } from "./helpers/assert.ts";
import { Http1Server } from "../src/server/http1.ts";
import { App } from "../src/server/app.ts";
import { StubEngine } from "./helpers/stub_engine.ts";
import { responseStatuses } from "./helpers/raw_http.ts";
import { waitFor } from "./helpers/server.ts";

/**
 * Sends `head` and then `bodyBytes` in pieces, each after the previous one was taken (as
 * Python's http.client sendall does), reading nothing until all is sent; then reads the answer
 * until the server closes.
 */
function sendAllThenRead(port: number, head: string, bodyBytes: number): Promise<{ text: string; error: string | null }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let text = "";
    let error: string | null = null;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ text, error });
    };
    // The server must close once it has answered and discarded the body.
    const timer = setTimeout(() => {
      error ??= "the connection was left open";
      finish();
    }, 15_000);
    sock.on("data", (d: Uint8Array) => (text += new TextDecoder("latin1").decode(d)));
    sock.on("error", (e: Error & { code?: string }) => {
      error ??= e.code ?? e.message;
      finish();
    });
    sock.on("close", finish);
    sock.on("connect", async () => {
      const write = (data: Uint8Array | string) => new Promise<boolean>((r) => sock.write(data, (e?: Error | null) => r(!e)));
      if (!(await write(head))) return;
      const piece = new Uint8Array(64 * 1024).fill(0x61);
      for (let sent = 0; sent < bodyBytes; sent += piece.length) {
        if (!(await write(piece.subarray(0, Math.min(piece.length, bodyBytes - sent))))) return;
      }
    });
  });
}

test("http listener: a client still sending a refused body reads the 413 (lingering close), chunked or not", async () => {
  const engine = await StubEngine.load("stories260K");
  const app = new App({ modelName: "stories260K", maxBodyBytes: 64 * 1024, maxQueue: 8 });
  app.setEngine(engine);
  const server = await Http1Server.listen({ hostname: "127.0.0.1", port: 0 }, (req) => app.handle(req));
  try {
    const size = 16 << 20;
    const declared = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`;
    const chunked = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${(size - 16).toString(16)}\r\n`;
    const unauthorized = `POST /v1/no-such-route HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`;
    for (const [name, head, status] of [["declared length", declared, 413], ["chunked", chunked, 413], ["unknown route", unauthorized, 404]] as const) {
      const r = await sendAllThenRead(server.addr.port, head, name === "chunked" ? size - 16 : size);
      assertEquals([responseStatuses(r.text), r.error], [[status], null], `${name}: ${r.text.slice(0, 200)}`);
    }
  } finally {
    server.closeAll();
    await server.finished;
  }
});

test("http listener: a client that stops reading a long response is cut off by the write deadline, and the response is cancelled", async () => {
  let cancelled = false;
  const piece = new Uint8Array(64 * 1024).fill(0x62);
  const server = await Http1Server.listen({ hostname: "127.0.0.1", port: 0, limits: { writeTimeoutMs: 300 } }, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull: (c) => c.enqueue(piece),
        cancel: () => void (cancelled = true),
      }),
      { headers: { "content-type": "text/event-stream" } },
    ));
  const sock = net.connect(server.addr.port, "127.0.0.1");
  try {
    await new Promise<void>((r) => sock.on("connect", () => r()));
    // Never read: the socket is paused before any byte arrives.
    sock.pause();
    sock.on("error", () => {});
    sock.write("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor(() => server.counters.timeouts.write, (n) => n === 1, 20_000);
    await waitFor(() => [cancelled, server.connections] as const, ([c, open]) => c && open === 0, 5_000);
  } finally {
    sock.destroy();
    server.closeAll();
    await server.finished;
  }
});
