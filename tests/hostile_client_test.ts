/**
 * A hostile client against serve.ts as a process, table-driven and bounded in time: malformed
 * bytes, smuggling-style framing, oversized headers, slowloris headers and bodies, mid-upload
 * drops, pipelining, a burst of connections past the cap. Every answer is a 2xx or a 4xx (the
 * connection cap's 503 excepted, by design), and the server stays up and serves afterwards.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { startServeProcess } from "./helpers/serve_process.ts";
import { halfOpen, rawExchange } from "./helpers/raw_http.ts";

const H = "Host: x\r\n";
const C = "POST /v1/completions HTTP/1.1\r\n";
const JSON_BODY = '{"prompt": "Once upon a time", "max_tokens": 2}';

interface Case {
  name: string;
  parts: (string | Uint8Array)[];
  /** Exact statuses expected, in order ([] = no answer). */
  expect: number[];
  /** The server must close the connection. */
  closed?: boolean;
  gapMs?: number;
  drop?: boolean;
  responses?: number;
}

const CASES: Case[] = [
  { name: "random bytes", parts: [new Uint8Array(Array.from({ length: 300 }, (_, i) => (i * 97 + 13) % 256)), "\r\n\r\n"], expect: [400], closed: true },
  { name: "NUL in the request line", parts: ["GET /he\0alth HTTP/1.1\r\n\r\n"], expect: [400], closed: true },
  { name: "request line without a version", parts: ["GET /health\r\n\r\n"], expect: [400], closed: true },
  { name: "HTTP/2.0 in a request line", parts: [`GET /health HTTP/2.0\r\n${H}\r\n`], expect: [400], closed: true },
  { name: "header without a colon", parts: [`GET /health HTTP/1.1\r\n${H}NoColonHere\r\n\r\n`], expect: [400], closed: true },
  { name: "obsolete line folding", parts: [`GET /health HTTP/1.1\r\n${H}X-A: 1\r\n continued\r\n\r\n`], expect: [400], closed: true },
  { name: "control character in a header value", parts: [`GET /health HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`], expect: [400], closed: true },
  { name: "20 KB header", parts: [`GET /health HTTP/1.1\r\n${H}X-Big: ${"a".repeat(20_000)}\r\n\r\n`], expect: [431], closed: true },
  { name: "20 KB URL", parts: [`GET /${"a".repeat(20_000)} HTTP/1.1\r\n${H}\r\n`], expect: [431], closed: true },
  { name: "content-length and transfer-encoding", parts: [`${C}${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`], expect: [400], closed: true },
  { name: "transfer-encoding gzip", parts: [`${C}${H}Transfer-Encoding: gzip\r\n\r\n`], expect: [400], closed: true },
  { name: "transfer-encoding chunked twice", parts: [`${C}${H}Transfer-Encoding: chunked, chunked\r\n\r\n`], expect: [400], closed: true },
  { name: "content-length not a number", parts: [`${C}${H}Content-Length: abc\r\n\r\n`], expect: [400], closed: true },
  { name: "two different content-lengths", parts: [`${C}${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`], expect: [400], closed: true },
  { name: "bad chunk size", parts: [`${C}${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`], expect: [400], closed: true },
  { name: "GET with a body", parts: [`GET /health HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`], expect: [400], closed: true },
  { name: "CONNECT", parts: [`CONNECT x:443 HTTP/1.1\r\n${H}\r\n`], expect: [400], closed: true },
  { name: "OPTIONS *", parts: [`OPTIONS * HTTP/1.1\r\n${H}\r\n`], expect: [400], closed: true },
  // fetch's Request normalizes the case of the standard methods.
  { name: "lower-case method", parts: [`get /health HTTP/1.1\r\n${H}Connection: close\r\n\r\n`], expect: [200], closed: true },
  { name: "malformed percent-encoding", parts: [`GET /v1/models/%E0%A4%A HTTP/1.1\r\n${H}Connection: close\r\n\r\n`], expect: [400], closed: true },
  { name: "unknown path", parts: [`GET /%ZZ/../../etc/passwd HTTP/1.1\r\n${H}Connection: close\r\n\r\n`], expect: [404], closed: true },
  { name: "declared body over the limit", parts: [`${C}${H}Content-Length: 100000000\r\n\r\n`], expect: [413], closed: true },
  { name: "invalid JSON", parts: [`${C}${H}Content-Length: 9\r\nConnection: close\r\n\r\n{ not js}`], expect: [400], closed: true },
  { name: "chunked request body", parts: [`${C}${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${JSON_BODY.length.toString(16)}\r\n${JSON_BODY}\r\n0\r\n\r\n`], expect: [200], closed: true },
  { name: "Expect: 100-continue", parts: [`${C}${H}Content-Length: ${JSON_BODY.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`, JSON_BODY], expect: [200], closed: true, gapMs: 200 },
  { name: "HTTP/1.0", parts: ["GET /health HTTP/1.0\r\n\r\n"], expect: [200], closed: true },
  { name: "absolute-form target", parts: [`GET http://x/health HTTP/1.1\r\n${H}Connection: close\r\n\r\n`], expect: [200], closed: true },
  { name: "pipelined requests", parts: [`GET /health HTTP/1.1\r\n${H}\r\nGET /v1/models HTTP/1.1\r\n${H}\r\nGET /health HTTP/1.1\r\n${H}Connection: close\r\n\r\n`], expect: [200, 200, 200], closed: true },
  { name: "slowloris headers", parts: [`GET /health HTTP/1.1\r\n`, "X-A: 1\r\n", "X-B: 2\r\n", "X-C: 3\r\n", "X-D: 4\r\n", "X-E: 5\r\n"], gapMs: 400, expect: [408], closed: true },
  { name: "slow body", parts: [`${C}${H}Content-Length: 100\r\n\r\n{"prompt": `, "1", "2", "3", "4", "5", "6", "7", "8"], gapMs: 400, expect: [408], closed: true },
  { name: "drop mid-upload", parts: [`${C}${H}Content-Length: 1000\r\n\r\n{"prompt": "Once`], expect: [], drop: true },
  { name: "drop mid-headers", parts: [`GET /health HTTP/1.1\r\nHo`], expect: [], drop: true },
];

test("hostile clients: every malformed, slow or dropped request gets a 4xx (or nothing), and the server stays up", async () => {
  const proc = await startServeProcess({ args: ["--header-timeout", "1", "--body-timeout", "2", "--idle-timeout", "1", "--max-connections", "64", "--max-body-bytes", "65536"] });
  try {
    await proc.ready();
    // One completion first: it pays the GPU pipelines' compilation.
    await (await fetch(`${proc.base}/v1/completions`, { method: "POST", body: JSON_BODY })).text();
    // The cases run in parallel: each on its own connection.
    const results = await Promise.all(CASES.map((c) =>
      rawExchange(proc.port, c.parts, { waitMs: 20_000, gapMs: c.gapMs, dropAfterSend: c.drop, responses: c.responses })
    ));
    for (const [i, c] of CASES.entries()) {
      const r = results[i];
      assertEquals(r.statuses, c.expect, `${c.name}: ${r.text.slice(0, 300)}`);
      if (c.closed) assert(r.closedByServer, `${c.name}: connection left open`);
    }
    assertEquals(proc.exitCode, null, proc.stderr());

    // A burst past the connection cap: the excess gets 503 with Retry-After, nothing else breaks.
    const held = await Promise.all(Array.from({ length: 80 }, () => halfOpen(proc.port, "GET /health HTTP/1.1\r\n")));
    const refusedNow = () => held.filter((h) => h.received().startsWith("HTTP/1.1 503"));
    for (let i = 0; i < 100 && refusedNow().length < 80 - 64; i++) await new Promise((r) => setTimeout(r, 50));
    const refused = refusedNow();
    const seen = held.map((h) => h.received().slice(0, 12) || (h.closedByServer() ? "closed" : "open"));
    assert(refused.length >= 80 - 64, `only ${refused.length} of 80 refused at a cap of 64: ${[...new Set(seen)].map((x) => `${x}: ${seen.filter((y) => y === x).length}`).join(", ")}`);
    assert(refused.every((h) => /retry-after: 1/i.test(h.received())), "503 without Retry-After");
    for (const h of held) h.close();

    // Still serving, and nothing was counted as a server error.
    let health = 0;
    for (let i = 0; i < 100 && health !== 200; i++) {
      health = await fetch(`${proc.base}/health`).then(async (r) => (await r.body?.cancel(), r.status), () => 0);
      if (health !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assertEquals(health, 200);
    const ok = await fetch(`${proc.base}/v1/completions`, { method: "POST", body: JSON_BODY });
    assertEquals(ok.status, 200);
    await ok.text();
    const metrics = await (await fetch(`${proc.base}/metrics`)).text();
    // (/health answered 503 while the model loaded: that is by design.)
    const serverErrors = metrics.split("\n").filter((l) => /^webgpu_llm_http_responses_total\{/.test(l) && (/status="500"/.test(l) || /route="\/v1[^"]*",status="5/.test(l)));
    assertEquals(serverErrors, []);
    assert(/webgpu_llm_http_timeouts_total\{kind="headers"\} [1-9]/.test(metrics), "header timeouts not counted");
    assert(/webgpu_llm_http_connections_rejected_total [1-9]/.test(metrics), "rejected connections not counted");
    assertEquals(proc.exitCode, null);
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
});
