/**
 * serve.ts as a process against clients that hold connections: a flood of half-sent headers
 * past the open-file limit, slow headers and bodies, idle keep-alive connections, and a
 * half-sent body at shutdown. The process must stay up (or exit on time) and serve after.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { exitWithin, startServeProcess } from "./helpers/serve_process.ts";
import { halfOpen, rawExchange } from "./helpers/raw_http.ts";
import { waitFor } from "./helpers/server.ts";

async function status(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}

async function completion(base: string): Promise<number> {
  const res = await fetch(`${base}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 3 }) });
  await res.text();
  return res.status;
}

test("hardening: a flood of half-sent headers past the open-file limit leaves the server up, serving once it ends", async () => {
  // 512 descriptors: the flood below needs more than the process may open.
  const proc = await startServeProcess({ maxOpenFiles: 512 });
  try {
    await proc.ready();
    const flood = await Promise.all(Array.from({ length: 800 }, () => halfOpen(proc.port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")));
    await new Promise((r) => setTimeout(r, 500));
    assertEquals(proc.exitCode, null, `died during the flood:\n${proc.stderr().slice(-1500)}`);
    for (const c of flood) c.close();
    assertEquals(await waitFor(() => status(`${proc.base}/health`), (s) => s === 200, 30_000), 200);
    assertEquals(await completion(proc.base), 200);
    assertEquals(proc.exitCode, null);
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
});

test("hardening: slow headers, slow bodies and idle keep-alive connections are closed by their deadlines", async () => {
  const proc = await startServeProcess({ args: ["--header-timeout", "1", "--body-timeout", "2", "--idle-timeout", "1"] });
  try {
    await proc.ready();
    const [headers, body, idle] = await Promise.all([
      // Headers never finish: 408, then closed.
      rawExchange(proc.port, ["POST /v1/completions HTTP/1.1\r\nHost: x\r\n"], { waitMs: 15_000 }),
      // A body that stops halfway: 408, then closed.
      rawExchange(proc.port, ["POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":"], { waitMs: 15_000 }),
      // One complete request, then silence: the answer, then closed.
      rawExchange(proc.port, ["GET /health HTTP/1.1\r\nHost: x\r\n\r\n"], { waitMs: 15_000 }),
    ]);
    assert(headers.closedByServer, `slow headers not closed: ${headers.text}`);
    assertEquals(headers.statuses, [408]);
    assert(body.closedByServer, `slow body not closed: ${body.text}`);
    assertEquals(body.statuses, [408]);
    assert(idle.closedByServer, `idle keep-alive connection not closed: ${idle.text}`);
    assertEquals(idle.statuses, [200]);
    assertEquals(await status(`${proc.base}/health`), 200);
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
});

test("hardening: --shutdown-timeout is a hard deadline: a half-sent body does not keep the process alive", async () => {
  const proc = await startServeProcess({ args: ["--shutdown-timeout", "1"] });
  try {
    await proc.ready();
    const held = await halfOpen(proc.port, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\": \"Once");
    await new Promise((r) => setTimeout(r, 200));
    proc.kill("SIGTERM");
    // Generous: the deadline is 1 s; a process that waits for the client never exits.
    assertEquals(await exitWithin(proc, 20_000), 0);
    held.close();
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
});
