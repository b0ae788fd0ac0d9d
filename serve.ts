/**
 * The HTTP service: `deno run -A serve.ts --model DIR|HUB_ID` or `bun run serve.ts ...`
 * (see `--help`).
 *
 * Listens at once (health answers 503 while the model loads), resolves the model (a local
 * directory, or a Hugging Face hub id from the cache or downloaded into it), loads it with a
 * progress bar and serves the OpenAI-compatible API, /metrics and the dashboard at /.
 * SIGINT/SIGTERM: /health turns 503 for the drain delay (requests still served), then the
 * server stops admitting and listening, lets in-flight requests finish within what is left of
 * the shutdown timeout, cuts off the rest, and exits 0.
 * @module
 */
import { createEngine, type EngineClient } from "./mod.ts";
import { parseServeArgs, type ServeOptions, UsageError, USAGE } from "./src/server/args.ts";
import { App } from "./src/server/app.ts";
import { memoryNote, parametersNote } from "./src/server/startup_notes.ts";
import { resolveModel } from "./src/hub/hub.ts";
import { ProgressBar } from "./src/hub/progress.ts";
import { DEFAULT_HTTP_LIMITS, Http1Server, ListenError } from "./src/server/http1.ts";
import { PromptTokenizer } from "./src/server/prompt_tokenizer.ts";
import { args, env, exit, onSignal, openFileLimit } from "./src/runtime/runtime.ts";

/** A running server. */
export interface Server {
  app: App;
  /** The address it listens on. */
  addr: { hostname: string; port: number };
  /** Resolves when the model is loaded (rejects if loading failed). */
  ready: Promise<void>;
  /**
   * Shuts down within the shutdown timeout: /health turns 503 for the drain delay while
   * requests are still served, then admitting and listening stop, in-flight requests get
   * what is left of the timeout, and whatever still runs then is cut off.
   */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

/** How the server reports (default: stderr, with progress bars). */
export interface ServerReporting {
  /** Silences logs and progress bars (tests). */
  quiet?: boolean;
}

/** Descriptors kept free of connections for the model, Workers and the runtime itself. */
const RESERVED_FILES = 64;

/** How long closing the engine may take at the end of a shutdown. */
const ENGINE_CLOSE_MS = 5000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Starts the server for parsed options; resolves once it listens. */
export async function startServer(options: ServeOptions, reporting: ServerReporting = {}): Promise<Server> {
  const log = (message: string) => reporting.quiet || console.error(`[serve] ${message}`);
  const silent = { write: () => {} };
  const app = new App({
    modelName: options.servedModelName,
    modelAliases: [options.model],
    apiKey: options.apiKey,
    reasoningParser: options.reasoningParser,
    maxBodyBytes: options.maxBodyBytes,
    maxQueue: options.maxQueue,
    maxRequestSeqs: options.maxRequestSeqs,
    lenientFields: options.lenientFields,
  });
  const files = await openFileLimit();
  const maxConnections = options.maxConnections ??
    Math.max(16, Math.min(DEFAULT_HTTP_LIMITS.maxConnections, files === null ? Infinity : files - RESERVED_FILES));
  const http = await Http1Server.listen({
    hostname: options.host,
    port: options.port,
    limits: {
      headersTimeoutMs: options.headerTimeoutMs,
      bodyTimeoutMs: options.bodyTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
      writeTimeoutMs: options.writeTimeoutMs,
      maxConnections,
    },
    onError: log,
  }, (req) => app.handle(req));
  app.listenerCounters = () => ({ ...http.counters, open: http.connections });
  let engine: EngineClient | null = null;
  let tokenizer: PromptTokenizer | null = null;
  const ready = (async () => {
    const download = new ProgressBar("download", reporting.quiet ? silent : {});
    const dir = await resolveModel(options.model, { ggufFile: options.ggufFile, onProgress: (done, total) => download.update(done, total) });
    download.finish();
    // A draft model (speculative method "draft") may be a hub id too.
    const spec = options.tuning?.speculative;
    const speculative = spec?.method === "draft" ? { ...spec, model: await resolveModel(spec.model) } : spec;
    log(`loading ${dir}`);
    const bar = new ProgressBar("weights ", reporting.quiet ? silent : {});
    const tokenizing = PromptTokenizer.start(dir);
    engine = await createEngine({
      model: dir,
      maxBatchTokens: options.maxBatchTokens,
      numBlocks: options.numBlocks,
      kvCacheBytes: options.kvCacheBytes,
      gpuMemoryBytes: options.gpuMemoryBytes,
      blockSize: options.blockSize,
      maxSeqs: options.maxSeqs,
      attn: options.attn,
      policy: options.policy,
      quantization: options.quantization,
      ...options.tuning,
      speculative,
      onLoadProgress: (done, total) => bar.update(done, total),
    }).catch(async (e) => {
      (await tokenizing.catch(() => null))?.close();
      throw e;
    });
    tokenizer = await tokenizing;
    bar.finish();
    app.setEngine(engine, tokenizer);
    if (app.chatTemplateError) log(`chat requests will be refused: ${app.chatTemplateError}`);
    const info = engine.info;
    log(`ready: ${info.architecture} on ${info.device}, context ${info.maxContext}, ${info.kvBlocksTotal} KV blocks of ${info.blockSize} (${info.kvDtype}), ${info.kernelFamily} kernels, linear weights ${info.linearWeights.join("/")}${parametersNote(info.parameters)}`);
    if (info.memory) log(memoryNote(info.memory));
  })();
  ready.catch((e) => {
    app.setLoadError(`${(e as Error).name}: ${(e as Error).message}`);
    log(`cannot load the model: ${(e as Error).message}`);
  });
  let stopping: Promise<void> | null = null;
  const shutdown = () =>
    stopping ??= (async () => {
      const t0 = performance.now();
      const left = () => Math.max(0, options.shutdownTimeoutMs - (performance.now() - t0));
      const drainDelayMs = Math.min(options.drainDelayMs ?? 0, options.shutdownTimeoutMs);
      if (drainDelayMs > 0 && app.state === "ready") {
        log(`draining: /health answers 503 for ${drainDelayMs / 1000} s while requests are still served`);
        app.announceDrain();
        await sleep(drainDelayMs);
      }
      log(`shutting down: ${app.activeRequests} requests in flight`);
      const drained = app.drain();
      http.stopListening();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), left())));
      // Drained means every response written too: connections close once their response is out.
      const outcome = await Promise.race([drained.then(() => http.finished).then(() => "drained" as const), deadline]);
      clearTimeout(timer);
      if (outcome === "timeout") log("shutdown timeout: cancelling what is left");
      // The hard end: connections still open (slow clients, streams past the deadline) are cut.
      http.closeAll();
      await Promise.race([ready, sleep(0)]).catch(() => {});
      const closing = (engine as EngineClient | null)?.close();
      if (closing) await Promise.race([closing, sleep(ENGINE_CLOSE_MS)]);
      (tokenizer as PromptTokenizer | null)?.close();
      await Promise.race([http.finished, sleep(ENGINE_CLOSE_MS)]);
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
  let server: Server;
  try {
    server = await startServer(options);
  } catch (e) {
    if (!(e instanceof ListenError)) throw e;
    const hint = e.code === "address_in_use"
      ? `stop what uses port ${e.port}, or choose another with --port N (--port 0 picks a free one and logs it)`
      : "choose another address with --host and --port";
    console.error(`error: ${e.message}; ${hint}`);
    exit(1);
  }
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
