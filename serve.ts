/**
 * The HTTP service: `deno run -A serve.ts --model DIR|HUB_ID` or `bun run serve.ts ...`
 * (see `--help`).
 *
 * Listens at once (health answers 503 while the model loads), resolves the model (a local
 * directory, or a Hugging Face hub id from the cache or downloaded into it), loads it with a
 * progress bar and serves the OpenAI-compatible API, /metrics and the dashboard at /.
 * SIGINT/SIGTERM stop admitting, let in-flight requests finish within the shutdown timeout,
 * cancel the rest, and exit 0.
 * @module
 */
import { createEngine, type EngineClient } from "./mod.ts";
import { parseServeArgs, type ServeOptions, UsageError, USAGE } from "./src/server/args.ts";
import { App } from "./src/server/app.ts";
import { resolveModel } from "./src/hub/hub.ts";
import { ProgressBar } from "./src/hub/progress.ts";
import { args, env, exit, onSignal, serveHttp } from "./src/runtime/runtime.ts";

/** A running server. */
export interface Server {
  app: App;
  /** The address it listens on. */
  addr: { hostname: string; port: number };
  /** Resolves when the model is loaded (rejects if loading failed). */
  ready: Promise<void>;
  /** Drains, closes the engine and stops listening. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

/** How the server reports (default: stderr, with progress bars). */
export interface ServerReporting {
  /** Silences logs and progress bars (tests). */
  quiet?: boolean;
}

/** Starts the server for parsed options. */
export function startServer(options: ServeOptions, reporting: ServerReporting = {}): Server {
  const log = (message: string) => reporting.quiet || console.error(`[serve] ${message}`);
  const silent = { write: () => {} };
  const app = new App({
    modelName: options.servedModelName,
    modelAliases: [options.model],
    apiKey: options.apiKey,
    maxBodyBytes: options.maxBodyBytes,
    maxQueue: options.maxQueue,
  });
  const http = serveHttp({ hostname: options.host, port: options.port }, (req) => app.handle(req));
  let engine: EngineClient | null = null;
  const ready = (async () => {
    const download = new ProgressBar("download", reporting.quiet ? silent : {});
    const dir = await resolveModel(options.model, { onProgress: (done, total) => download.update(done, total) });
    download.finish();
    log(`loading ${dir}`);
    const bar = new ProgressBar("weights ", reporting.quiet ? silent : {});
    engine = await createEngine({
      model: dir,
      maxBatchTokens: options.maxBatchTokens,
      numBlocks: options.numBlocks,
      blockSize: options.blockSize,
      maxSeqs: options.maxSeqs,
      attn: options.attn,
      policy: options.policy,
      onLoadProgress: (done, total) => bar.update(done, total),
    });
    bar.finish();
    app.setEngine(engine);
    const info = engine.info;
    log(`ready: ${info.architecture} on ${info.device}, context ${info.maxContext}, ${info.kvBlocksTotal} KV blocks of ${info.blockSize}`);
  })();
  ready.catch((e) => {
    app.setLoadError(`${(e as Error).name}: ${(e as Error).message}`);
    log(`cannot load the model: ${(e as Error).message}`);
  });
  let stopping: Promise<void> | null = null;
  const shutdown = () =>
    stopping ??= (async () => {
      log(`shutting down: ${app.activeRequests} requests in flight`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), options.shutdownTimeoutMs)));
      const drained = await Promise.race([app.drain().then(() => "drained" as const), deadline]);
      clearTimeout(timer);
      if (drained === "timeout") log("shutdown timeout: cancelling what is left");
      await ready.catch(() => {});
      await (engine as EngineClient | null)?.close();
      await http.shutdown();
    })();
  return { app, addr: http.addr, ready, shutdown, finished: http.finished };
}

if (import.meta.main) {
  let options: ServeOptions | null;
  try {
    options = parseServeArgs(args(), env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}\n\n${USAGE}`);
    exit(2);
  }
  if (!options) {
    console.log(USAGE);
    exit(0);
  }
  const server = startServer(options);
  console.error(`[serve] listening on http://${server.addr.hostname}:${server.addr.port}`);
  let signals = 0;
  const handleSignal = () => {
    if (++signals > 1) exit(130);
    server.shutdown().then(() => exit(0));
  };
  onSignal("SIGINT", handleSignal);
  onSignal("SIGTERM", handleSignal);
  // A model that cannot be loaded ends the process (the reason is already logged).
  server.ready.catch(() => server.shutdown().then(() => exit(1)));
}
