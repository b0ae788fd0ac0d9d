/**
 * serve.ts start-up errors as a user meets them: a port in use and a `--model` file that is
 * no checkpoint each end the process with exit code 1 and one line saying what to do, never a
 * stack trace.
 */
import { spawn } from "node:child_process";
import net from "node:net";
import process from "node:process";
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { scriptCommand } from "../src/runtime/runtime.ts";
import { modelDir } from "./helpers/reference.ts";

const SERVE = new URL("../serve.ts", import.meta.url).pathname;

/** Runs serve.ts to its exit (killed after `timeoutMs`): exit code and stderr. */
function runServe(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stderr: string }> {
  const c = scriptCommand(SERVE, args);
  const child = spawn(c.cmd, c.args, { env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Uint8Array) => (stderr += new TextDecoder().decode(d)));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  return new Promise((resolve) =>
    child.on("close", (code: number | null) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    })
  );
}

/** Whether a log holds a JS stack trace. */
const hasStack = (log: string) => /^\s+at .+[:(]\d+/m.test(log);

test("serve start-up: a port in use and a --model file that is not .gguf end with exit 1 and a hint, no stack trace", async () => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
  const port = (taken.address() as { port: number }).port;
  try {
    const weights = `${modelDir("stories260K")}/model.safetensors`;
    const [inUse, notGguf] = await Promise.all([
      runServe(["--model", modelDir("stories260K"), "--port", String(port)]),
      runServe(["--model", weights, "--port", "0"]),
    ]);
    assertEquals(inUse.code, 1, inUse.stderr);
    assert(inUse.stderr.includes(`127.0.0.1:${port}`) && /in use/.test(inUse.stderr), inUse.stderr);
    assert(inUse.stderr.includes("--port 0"), inUse.stderr);
    assert(!hasStack(inUse.stderr), inUse.stderr);

    assertEquals(notGguf.code, 1, notGguf.stderr);
    assert(notGguf.stderr.includes(weights), notGguf.stderr);
    assert(/checkpoint directory .*or a \.gguf file/.test(notGguf.stderr), notGguf.stderr);
    assert(!/ENOTDIR|does not exist/.test(notGguf.stderr), notGguf.stderr);
    assert(!hasStack(notGguf.stderr), notGguf.stderr);
    // --port 0 logged the port it picked.
    assert(/listening on http:\/\/127\.0\.0\.1:[1-9]\d*/.test(notGguf.stderr), notGguf.stderr);
  } finally {
    taken.close();
  }
});
