/**
 * A stand-in for the engine, for tests of the HTTP surface that need no GPU: the real
 * tokenizer and the real request validation, but tokens made up on the CPU (each completion
 * repeats the prompt's last token), and a server around it on a loopback port.
 * @module
 */
import { App, type AppOptions } from "../../src/server/app.ts";
import type { ServedEngine } from "../../src/server/served_engine.ts";
import { Tokenizer } from "../../src/model/tokenizer.ts";
import { validateRequest } from "../../src/api/validate.ts";
import { finishEmbedding, validateEmbedRequest } from "../../src/api/embed_request.ts";
import type { EmbedOptions, EmbedResult, EngineInfo, EngineStats, GenerateDelta, GenerateOptions, HistogramSnapshot, ToolCallFormat } from "../../src/types/api.ts";
import { modelToolFormat } from "../../src/grammar/model_vocabulary.ts";
import { serveHttp } from "../../src/runtime/runtime.ts";
import { modelDir } from "./reference.ts";

const EMPTY_HISTOGRAM: HistogramSnapshot = { buckets: [1], cumulativeCounts: [0], count: 0, sum: 0, p50: 0, p95: 0, p99: 0 };

/** Stats of an idle engine with `info`'s cache. */
export function idleStats(info: EngineInfo): EngineStats {
  return {
    kvBlocksUsed: 0,
    kvBlocksTotal: info.kvBlocksTotal,
    kvBlocksCached: 0,
    kvBytesTotal: 0,
    kvBytesUsed: 0,
    kvUsage: 0,
    stateSlotsUsed: 0,
    stateSlotsTotal: 0,
    running: 0,
    waiting: 0,
    steps: 0,
    syncs: 0,
    stepsPerSync: 0,
    prefillTokens: 0,
    decodeTokens: 0,
    decodePrefillRatio: 0,
    promptTokens: 0,
    generationTokens: 0,
    preemptions: 0,
    specDrafts: 0,
    specDraftTokens: 0,
    specAcceptedTokens: 0,
    specAcceptedPerPosition: [],
    specDraftKvBlocksUsed: 0,
    specDraftKvBlocksTotal: 0,
    specReplayTokens: 0,
    prefixCacheQueries: 0,
    prefixCacheHits: 0,
    requestsFinished: { stop: 0, length: 0, cancelled: 0 },
    embeddingsFinished: 0,
    batchFill: EMPTY_HISTOGRAM,
    stepTokens: EMPTY_HISTOGRAM,
    ttft: EMPTY_HISTOGRAM,
    interTokenLatency: EMPTY_HISTOGRAM,
    e2eLatency: EMPTY_HISTOGRAM,
    queueTime: EMPTY_HISTOGRAM,
    tokensPerSecond: 0,
    lastStepAt: 0,
    uptimeSeconds: 0,
    at: performance.now(),
    error: null,
  };
}

/** An engine that validates like the real one and makes tokens up. */
export class StubEngine implements ServedEngine {
  readonly info: EngineInfo;
  readonly tokenizer: Tokenizer;
  /** What `stats()` returns (tests may change it). */
  current: EngineStats;
  /** What `statsAgeMs` returns. */
  statsAgeMs = 0;
  readonly toolCallFormat: ToolCallFormat | null;
  /** The prompt ids of every request, in order (what the server rendered and tokenized). */
  readonly prompts: number[][] = [];

  constructor(tokenizer: Tokenizer, info: Partial<EngineInfo> = {}) {
    this.tokenizer = tokenizer;
    this.info = {
      vocabSize: tokenizer.vocabSize,
      maxContext: 256,
      maxTopLogprobs: 20,
      maxN: 16,
      eosTokenIds: tokenizer.eosTokenIds,
      architecture: "stub",
      device: "none",
      kvBlocksTotal: 64,
      blockSize: 16,
      maxSeqs: 8,
      kernelFamily: "cpu",
      kvDtype: "f32",
      linearWeights: ["f32"],
      hiddenSize: 64,
      pooling: "last",
      ...info,
    };
    this.current = idleStats(this.info);
    this.toolCallFormat = modelToolFormat(tokenizer, null);
  }

  /** A stub with the tokenizer (and chat template) of a reference model. */
  static async load(model = "stories260K", info: Partial<EngineInfo> = {}): Promise<StubEngine> {
    return new StubEngine(await Tokenizer.load(modelDir(model)), info);
  }

  stats(): EngineStats {
    return this.current;
  }

  /** Validates like the real engine; each vector is made up from its input's token ids. */
  embed(options: EmbedOptions): Promise<EmbedResult> {
    const { request, dimensions } = validateEmbedRequest(options, (text) => this.tokenizer.encode(text), this.info);
    this.prompts.push(...request.inputs);
    const embeddings = request.inputs.map((ids) =>
      finishEmbedding(Array.from({ length: this.info.hiddenSize }, (_, j) => Math.sin(ids.reduce((a, b) => a + b, j))), dimensions)
    );
    return Promise.resolve({ embeddings, usage: { promptTokens: request.inputs.reduce((n, ids) => n + ids.length, 0) } });
  }

  stream(options: GenerateOptions): AsyncIterable<GenerateDelta> {
    const promptIds = typeof options.prompt === "string" ? this.tokenizer.encode(options.prompt) : [...options.prompt];
    const request = validateRequest(options, promptIds, { ...this.info, toolCallFormat: this.toolCallFormat });
    this.prompts.push(promptIds);
    const id = request.promptIds.at(-1)!;
    const tokenizer = this.tokenizer;
    return (async function* () {
      for (let index = 0; index < request.n; index++) {
        for (let k = 0; k < request.maxTokens; k++) {
          yield { index, ids: [id], text: tokenizer.decode([id], { skipSpecialTokens: true }) };
        }
        const last: GenerateDelta = { index, ids: [], text: "", finishReason: "length" };
        if (index === request.n - 1) {
          last.usage = { promptTokens: promptIds.length, completionTokens: request.n * request.maxTokens, cachedTokens: 0 };
        }
        yield last;
      }
    })();
  }
}

/** An App serving a {@link StubEngine} on a free loopback port. */
export interface StubServer {
  app: App;
  engine: StubEngine;
  base: string;
  close(): Promise<void>;
}

/** Starts an App around a stub engine (`info` overrides its limits). */
export async function stubServer(options: Partial<AppOptions> = {}, model = "stories260K", info: Partial<EngineInfo> = {}): Promise<StubServer> {
  const engine = await StubEngine.load(model, info);
  const app = new App({ modelName: model, maxBodyBytes: 1 << 20, maxQueue: 64, ...options });
  app.setEngine(engine);
  const http = serveHttp({ hostname: "127.0.0.1", port: 0 }, (req) => app.handle(req));
  return { app, engine, base: `http://127.0.0.1:${http.addr.port}`, close: () => http.shutdown() };
}
