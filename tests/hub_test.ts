/**
 * Model resolution through the Hugging Face cache layout, against a loopback server that
 * serves tests/fixtures/models/stories260K in the hub's URL layout; and `serve.ts` as a real
 * process: it downloads on first use, serves, and on SIGTERM finishes in-flight work and
 * exits 0.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { hubCacheDir, ModelNotFoundError, resolveModel } from "../src/hub/hub.ts";
import { modelDir } from "./helpers/reference.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";

const REPO = "test-org/stories";
const SHA = "0123456789abcdef0123456789abcdef01234567";

/** A loopback "hub" serving one repository; counts file downloads. */
async function fakeHub(): Promise<{ endpoint: string; downloads: string[]; close: () => Promise<void> }> {
  const dir = modelDir("stories260K");
  const files: { rfilename: string; size: number }[] = [];
  for await (const e of sys.readDir(dir)) {
    if (e.isFile && e.name !== "golden.json") files.push({ rfilename: e.name, size: (await sys.stat(`${dir}/${e.name}`)).size });
  }
  const downloads: string[] = [];
  const server = sys.serveHttp({ hostname: "127.0.0.1", port: 0 }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === `/api/models/${REPO}/revision/main`) return Response.json({ id: REPO, sha: SHA, siblings: files });
    const prefix = `/${REPO}/resolve/${SHA}/`;
    if (path.startsWith(prefix)) {
      const name = path.slice(prefix.length);
      if (!files.some((f) => f.rfilename === name)) return new Response("not found", { status: 404 });
      downloads.push(name);
      const bytes = await sys.readFile(`${dir}/${name}`);
      return new Response(bytes, { headers: { "content-length": String(bytes.length) } });
    }
    return new Response("not found", { status: 404 });
  });
  return { endpoint: `http://127.0.0.1:${server.addr.port}`, downloads, close: () => server.shutdown() };
}

test("hub: downloads into the HF cache layout once, then resolves offline", async () => {
  const hub = await fakeHub();
  const cache = await sys.makeTempDir();
  try {
    const env = (name: string) => ({ HF_HUB_CACHE: cache, HF_ENDPOINT: hub.endpoint } as Record<string, string>)[name];
    let last = [0, 0];
    const dir = await resolveModel(REPO, { env, onProgress: (done, total) => (last = [done, total]) });
    assertEquals(dir, `${cache}/models--test-org--stories/snapshots/${SHA}`);
    assertEquals((await sys.readTextFile(`${cache}/models--test-org--stories/refs/main`)).trim(), SHA);
    const src = modelDir("stories260K");
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]) {
      assertEquals(await sys.readFile(`${dir}/${f}`), await sys.readFile(`${src}/${f}`), f);
    }
    assert(last[1] > 1_000_000 && last[0] === last[1], `progress ${last}`);
    assert(!hub.downloads.includes("golden.json"));
    // Second time: from the cache, no network at all.
    const noNet = (() => Promise.reject(new Error("network used"))) as typeof fetch;
    assertEquals(await resolveModel(REPO, { env, fetch: noNet }), dir);
  } finally {
    await hub.close();
    await sys.remove(cache, { recursive: true });
  }
});

test("hub: offline with nothing cached is a clear error naming --model DIR", async () => {
  const cache = await sys.makeTempDir();
  try {
    const offline = (name: string) => ({ HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1" } as Record<string, string>)[name];
    await assertRejects(() => resolveModel(REPO, { env: offline }), ModelNotFoundError, "--model DIR");
    // An endpoint nobody listens on.
    const dead = (name: string) => ({ HF_HUB_CACHE: cache, HF_ENDPOINT: "http://127.0.0.1:9" } as Record<string, string>)[name];
    await assertRejects(() => resolveModel(REPO, { env: dead }), ModelNotFoundError, "--model DIR");
    await assertRejects(() => resolveModel("./no/such/dir"), ModelNotFoundError, "does not exist");
    assertEquals(hubCacheDir((n) => ({ HF_HOME: "/x/hf" } as Record<string, string>)[n]), "/x/hf/hub");
    assertEquals(hubCacheDir((n) => ({ HOME: "/home/u" } as Record<string, string>)[n]), "/home/u/.cache/huggingface/hub");
  } finally {
    await sys.remove(cache, { recursive: true });
  }
});

test("serve.ts process: hub id downloaded on first use, SIGTERM finishes in-flight work and exits 0", async () => {
  const hub = await fakeHub();
  const cache = await sys.makeTempDir();
  const root = new URL("../", import.meta.url).pathname;
  const proc = sys.startScript(`${root}serve.ts`, ["--model", REPO, "--port", "0", "--shutdown-timeout", "20"], {
    cwd: root,
    env: { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.endpoint, NO_COLOR: "1" },
  });
  try {
    const port = await (async () => {
      for (let i = 0; i < 600; i++) {
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(proc.stderr());
        if (m) return Number(m[1]);
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no listening line: ${proc.stderr()}`);
    })();
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 600 && (await fetch(`${base}/health`).then((r) => r.status)) !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assertEquals((await fetch(`${base}/health`)).status, 200, proc.stderr());
    assert(hub.downloads.includes("model.safetensors"), "nothing was downloaded");
    // A request in flight when SIGTERM arrives still completes.
    const res = await fetch(`${base}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: REPO, prompt: "Once upon a time", max_tokens: 200, ignore_eos: true, temperature: 0, stream: true }),
    });
    const body = res.body!.getReader();
    await body.read();
    proc.kill("SIGTERM");
    let text = "";
    for (;;) {
      const { value, done } = await body.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert(text.includes('"finish_reason":"length"') && text.trim().endsWith("data: [DONE]"), text.slice(-300));
    assertEquals(await proc.exited, 0, proc.stderr());
  } finally {
    proc.kill("SIGKILL");
    await hub.close();
    await sys.remove(cache, { recursive: true });
  }
});

test("serve.ts process: a hub id that is neither cached nor downloadable exits 1 naming --model DIR", async () => {
  const cache = await sys.makeTempDir();
  const root = new URL("../", import.meta.url).pathname;
  try {
    const r = await sys.runScript(`${root}serve.ts`, ["--model", "nobody/nothing", "--port", "0"], {
      cwd: root,
      env: { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1", NO_COLOR: "1" },
    });
    assertEquals(r.code, 1, r.stderr);
    assert(r.stderr.includes("--model DIR") && r.stderr.includes("nobody/nothing"), r.stderr);
  } finally {
    await sys.remove(cache);
  }
});
