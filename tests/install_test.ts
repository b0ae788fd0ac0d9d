/**
 * deploy/install.sh, the script both the README's set-up and deploy/Containerfile run, in a
 * clean copy of the repository (what the image's COPY takes): it installs the production
 * dependencies and caches Deno's imports, and the server then starts from that copy the way
 * the image's ENTRYPOINT starts it (--cached-only: no registry at run time) and serves.
 * No container engine runs here: the image itself is not built by this test.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { copyFile, makeTempDir, mkdir, readTextFile, remove, run, RUNTIME } from "./helpers/platform.ts";
import { modelDir } from "./helpers/reference.ts";
import { spawn } from "node:child_process";
import process from "node:process";
import { parseServeArgs } from "../src/server/args.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** The files the image's `COPY . .` takes: the repository less .dockerignore's entries. */
async function imageFiles(): Promise<string[]> {
  const ls = await run("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { cwd: ROOT });
  assertEquals(ls.code, 0, ls.stderr);
  const ignore = (await readTextFile(`${ROOT}.dockerignore`)).split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const ignored = (f: string) =>
    ignore.some((p) => p.includes("*") ? new RegExp(`^${p.replace(/\./g, "\\.").replace(/\*/g, "[^/]*")}$`).test(f) : f === p || f.startsWith(`${p}/`));
  return ls.stdout.split("\n").filter((f) => f && !ignored(f));
}

/** The ENTRYPOINT + CMD of deploy/Containerfile as one argv. */
async function containerCommand(): Promise<{ argv: string[]; text: string }> {
  const text = await readTextFile(`${ROOT}deploy/Containerfile`);
  const json = (kw: string) => JSON.parse(new RegExp(`^${kw} (\\[.*\\])$`, "m").exec(text)![1]) as string[];
  return { argv: [...json("ENTRYPOINT"), ...json("CMD")], text };
}

test("deploy: the Containerfile runs the install script and serves on the port the manifests use, as a non-root user", async () => {
  const { argv, text } = await containerCommand();
  assert(/^RUN sh deploy\/install\.sh --system --production/m.test(text), "the image does not run deploy/install.sh");
  assert(/^FROM debian:bookworm/m.test(text), "base image");
  assert(/^USER 10001$/m.test(text), "non-root user (the Deployment's runAsUser)");
  assert(/HF_HOME=\/models/.test(text) && /^VOLUME \/models$/m.test(text), "HF_HOME on a volume");
  assert(/HEALTHCHECK[\s\S]*\/health/.test(text), "HEALTHCHECK on /health");
  assertEquals(argv.slice(0, 5), ["deno", "run", "-A", "--cached-only", "--frozen-lockfile"]);
  const i = argv.indexOf("serve.ts");
  const opts = parseServeArgs(argv.slice(i + 1), () => undefined)!;
  assertEquals(opts.host, "0.0.0.0");
  assert(new RegExp(`^EXPOSE ${opts.port}$`, "m").test(text), `EXPOSE ${opts.port}`);
});

test("deploy: install.sh --production in a clean copy of the repository yields a server that starts offline and serves", async () => {
  const dir = await makeTempDir({ prefix: "install-" });
  try {
    for (const f of await imageFiles()) {
      await mkdir(`${dir}/${f.slice(0, f.lastIndexOf("/") + 1) || "."}`, { recursive: true });
      await copyFile(`${ROOT}${f}`, `${dir}/${f}`);
    }
    const env = { DENO_DIR: `${dir}/.deno-cache`, NO_COLOR: "1" };
    const install = await run("sh", ["deploy/install.sh", "--production"], { cwd: dir, env });
    assertEquals(install.code, 0, `install.sh:\n${install.stdout}\n${install.stderr}`);
    // No warnings a new user would wonder about (Deno's box about packages' install scripts).
    assert(!/Ignored build scripts|lifecycle scripts/i.test(install.stdout + install.stderr), `install.sh warns:\n${install.stderr}`);
    const pkg = JSON.parse(await readTextFile(`${dir}/package.json`));
    for (const name of Object.keys(pkg.dependencies)) {
      assert((await run("test", ["-d", `${dir}/node_modules/${name}`])).code === 0, `${name} not installed`);
    }
    // Test-only packages stay out of the image (some devDependencies, like @webgpu/types, are
    // also dependencies of a dependency).
    for (const name of ["openai", "playwright-core", "kubernetes-models", "yaml", "tinybench"]) {
      assert(name in pkg.devDependencies, `${name} is not a devDependency`);
      assert((await run("test", ["-e", `${dir}/node_modules/${name}`])).code !== 0, `devDependency ${name} installed with --production`);
    }
    // Started as the image starts it (on Bun: bun run serve.ts from the same copy).
    const { argv } = await containerCommand();
    const serveArgs = ["--model", modelDir("stories260K"), "--port", "0", "--served-model-name", "m"];
    const [cmd, ...args] = RUNTIME === "deno" ? [process.execPath, ...argv.slice(1, argv.indexOf("serve.ts") + 1), ...serveArgs] : [process.execPath, "serve.ts", ...serveArgs];
    const child = spawn(cmd, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr!.on("data", (d: Uint8Array) => (log += new TextDecoder().decode(d)));
    const exited = new Promise<number>((r) => child.on("close", (c: number | null) => r(c ?? -1)));
    try {
      let base = "";
      for (let i = 0; i < 1200 && !base; i++) {
        const m = /listening on http:\/\/[^:]+:(\d+)/.exec(log);
        if (m) base = `http://127.0.0.1:${m[1]}`;
        else await new Promise((r) => setTimeout(r, 50));
      }
      assert(base, `no listening line:\n${log}`);
      let status = 0;
      for (let i = 0; i < 600 && status !== 200; i++) {
        status = await fetch(`${base}/health`).then(async (r) => (await r.body?.cancel(), r.status), () => 0);
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      assertEquals(status, 200, log);
      const res = await fetch(`${base}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 4 }) });
      assertEquals(res.status, 200, await res.clone().text());
      assertEquals((await res.json()).usage.completion_tokens, 4);
    } finally {
      // process.kill, not child.kill: Deno reports a child.kill()ed child as killed by the signal.
      process.kill(child.pid!, "SIGTERM");
      assertEquals(await exited, 0, log);
    }
  } finally {
    await remove(dir, { recursive: true });
  }
});
