/**
 * Does serve.ts's own HTTP/1.1 listener (src/server/http1.ts) slow streaming? The same
 * server-sent events go through it and through the runtime's native server (Deno.serve /
 * Bun.serve), interleaved: paced events like decode steps (each stamped when enqueued; the
 * client records how long each took to arrive), and an unpaced burst for raw throughput.
 * `deno run -A bench/http_listener.ts` or `bun run bench/http_listener.ts`.
 * @module
 */
import { Http1Server } from "../src/server/http1.ts";
import { RUNTIME, serveHttp } from "../src/runtime/runtime.ts";
import { percentile } from "./stats.ts";

const PACED = 200;
const PACE_MS = 5;
const BURST = 5000;
const ROUNDS = 5;
const enc = new TextEncoder();
const now = () => performance.timeOrigin + performance.now();

function handler(req: Request): Response {
  const paced = new URL(req.url).pathname === "/paced";
  const total = paced ? PACED : BURST;
  let n = 0;
  return new Response(
    new ReadableStream<Uint8Array>({
      async pull(c) {
        if (paced) await new Promise((r) => setTimeout(r, PACE_MS));
        if (n++ >= total) return c.close();
        c.enqueue(enc.encode(`data: {"t":${now()},"choices":[{"index":0,"text":" token","finish_reason":null}]}\n\n`));
      },
    }),
    { headers: { "content-type": "text/event-stream" } },
  );
}

/** Per-event delivery latency (ms) of a paced stream. */
async function paced(base: string): Promise<number[]> {
  const res = await fetch(`${base}/paced`);
  const lat: number[] = [];
  let buf = "";
  const dec = new TextDecoder();
  for await (const chunk of res.body!) {
    const t = now();
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      lat.push(t - JSON.parse(buf.slice(6, i)).t);
      buf = buf.slice(i + 2);
    }
  }
  if (lat.length !== PACED) throw new Error(`got ${lat.length} events`);
  return lat;
}

/** Events per second of an unpaced stream. */
async function burst(base: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${base}/burst`);
  let bytes = 0;
  for await (const chunk of res.body!) bytes += chunk.length;
  if (bytes < BURST * 60) throw new Error(`got ${bytes} bytes`);
  return (BURST * 1000) / (performance.now() - t0);
}

const ours = await Http1Server.listen({ hostname: "127.0.0.1", port: 0 }, handler);
const native = serveHttp({ hostname: "127.0.0.1", port: 0 }, handler);
const servers = { native: `http://127.0.0.1:${native.addr.port}`, ours: `http://127.0.0.1:${ours.addr.port}` };
const lat = { native: [] as number[], ours: [] as number[] };
const rate = { native: [] as number[], ours: [] as number[] };
for (let i = 0; i < ROUNDS; i++) {
  for (const k of ["native", "ours"] as const) {
    lat[k].push(...await paced(servers[k]));
    rate[k].push(await burst(servers[k]));
  }
}
const row = (name: string, k: "native" | "ours") =>
  `| ${name} | ${percentile(lat[k], 50).toFixed(2)} | ${percentile(lat[k], 95).toFixed(2)} | ${percentile(rate[k], 50).toFixed(0)} |`;
console.log(`${RUNTIME}: ${ROUNDS} interleaved rounds; ${PACED} events ${PACE_MS} ms apart per paced stream, ${BURST} per burst\n`);
console.log("| listener | event latency p50 ms | p95 ms | burst events/s (median) |\n| --- | --- | --- | --- |");
console.log(row(RUNTIME === "deno" ? "Deno.serve" : "Bun.serve", "native"));
console.log(row("http1.ts (serve.ts)", "ours"));
ours.closeAll();
await native.shutdown();
