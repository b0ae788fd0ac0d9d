/**
 * `cli batch`: an OpenAI Batch API input file through one engine, results to a file in input
 * order. Each line is answered by the server's own App in-process (`app.handle` on a Request
 * built from the line), so parsing, validation, chat templates, rendering and error statuses
 * are exactly what serve.ts returns. At most `--concurrency` lines are in flight and lines are
 * read as room frees up, so memory stays flat however long the file is. `--resume` continues
 * a killed run: the output holds a prefix of the input's answers.
 * @module
 */
import * as fs from "node:fs";
import { createEngine } from "../../mod.ts";
import { BatchProgressTracker, ordered } from "../api/batch.ts";
import { App } from "../server/app.ts";
import { DEFAULT_MAX_BODY_BYTES } from "../server/args.ts";
import { PromptTokenizer } from "../server/prompt_tokenizer.ts";
import { cliEngineNote } from "../server/startup_notes.ts";
import { ProgressBar } from "../hub/progress.ts";
import { onSignal, writeStderr } from "../runtime/runtime.ts";
import type { EngineOptions, Quantization } from "../types/api.ts";
import {
  type BatchLineError,
  type BatchRequestLine,
  type BatchResultLine,
  countLines,
  decodeBatchLine,
  isBlankLine,
  readRawLines,
  resumeState,
} from "./batch_file.ts";

/** Options of {@link runBatch}. */
export interface BatchCliOptions {
  model: string;
  input: string;
  output: string;
  resume: boolean;
  /** Lines in flight at most (default: twice the engine's sequence slots). */
  concurrency?: number;
  /** The model name request bodies may use (besides the --model value). */
  servedModelName?: string;
  maxBatchTokens?: number;
  maxSeqs?: number;
  attn?: "paged" | "eager";
  /** Load-time quantization of the decoder's linear weights. */
  quantization?: Quantization;
  /** Kernel family, KV-cache type and quantized-activation path (engine defaults when absent). */
  tuning?: Pick<EngineOptions, "kernelFamily" | "kvDtype" | "quantizedActivations" | "allowFallbackAdapter" | "speculative">;
  /** Progress on stderr (default true). */
  progress?: boolean;
  /**
   * Longest input line in bytes (default: serve.ts's body limit); a longer line is answered
   * with a `line_too_large` error line without ever being held in memory.
   */
  maxLineBytes?: number;
}

/** Raised when an output file does not answer the input it is resumed against. */
export class ResumeMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ResumeMismatchError";
  }
}

interface InputLine {
  /** Position among the input's non-blank lines. */
  index: number;
  parsed: BatchRequestLine | BatchLineError;
}

async function* inputLines(path: string, skip: (string | null)[], maxLineBytes: number): AsyncGenerator<InputLine> {
  let index = 0;
  // Each custom_id's first line: a later line with the same id is an error line (as OpenAI's
  // batch validation refuses duplicates), so every answer names one request.
  const seen = new Map<string, number>();
  for await (const raw of readRawLines(path, maxLineBytes)) {
    if (isBlankLine(raw)) continue;
    let parsed = decodeBatchLine(raw, maxLineBytes);
    const id = parsed.customId;
    if (id !== null) {
      const first = seen.get(id);
      if (first === undefined) seen.set(id, index);
      else parsed = { customId: id, code: "duplicate_custom_id", message: `custom_id ${JSON.stringify(id)} was already used by request ${first + 1}; each custom_id must be unique` };
    }
    if (index < skip.length) {
      // Resuming: the output already answers this line; it must be the same request.
      if (parsed.customId !== skip[index]) {
        throw new ResumeMismatchError(
          `line ${index + 1} of the input has custom_id ${JSON.stringify(parsed.customId)}, but the output's line ${index + 1} answers ${JSON.stringify(skip[index])}: not the output of this input`,
        );
      }
    } else {
      yield { index, parsed };
    }
    index++;
  }
  if (index < skip.length) throw new ResumeMismatchError(`the output has ${skip.length} lines, the input only ${index}`);
}

/** Answers one input line through the app. */
async function answer(app: App, line: InputLine, signal: AbortSignal): Promise<BatchResultLine> {
  const id = `batch_req_${line.index}`;
  const parsed = line.parsed;
  if ("code" in parsed) return { id, custom_id: parsed.customId, response: null, error: { code: parsed.code, message: parsed.message } };
  if (parsed.body.stream === true) {
    return { id, custom_id: parsed.customId, response: null, error: { code: "stream_unsupported", message: "stream is not supported in a batch" } };
  }
  const res = await app.handle(
    new Request(`http://batch${parsed.url}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(parsed.body),
      signal,
    }),
  );
  const body = await res.json();
  return { id, custom_id: parsed.customId, response: { status_code: res.status, request_id: `req_${line.index}`, body }, error: null };
}

/** Runs a batch file; returns the process exit code (130 when interrupted). */
export async function runBatch(options: BatchCliOptions): Promise<number> {
  if (!fs.existsSync(options.input)) throw new Error(`${options.input}: no such input file`);
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_BODY_BYTES;
  const skip = options.resume ? await resumeState(options.output) : [];
  const total = await countLines(options.input, maxLineBytes);
  // Prompts are tokenized as serve.ts does: off this thread, and text longer in bytes than the
  // context could hold is refused before any tokenizing.
  const tokenizing = PromptTokenizer.start(options.model);
  const engine = await createEngine({ model: options.model, maxBatchTokens: options.maxBatchTokens, maxSeqs: options.maxSeqs, attn: options.attn, quantization: options.quantization, ...options.tuning })
    .catch(async (e) => {
      (await tokenizing.catch(() => null))?.close();
      throw e;
    });
  const tokenizer = await tokenizing.catch(async (e) => {
    await engine.close();
    throw e;
  });
  const app = new App({
    modelName: options.servedModelName ?? options.model,
    modelAliases: [options.model],
    // The line is bounded; its body, parsed and written again, can differ a little in length.
    maxBodyBytes: 2 * maxLineBytes,
    // The batch bounds its own concurrency; the server's queue limit must never refuse a line.
    maxQueue: Number.MAX_SAFE_INTEGER,
  });
  app.setEngine(engine, tokenizer);
  writeStderr(cliEngineNote(engine.info));
  const abort = new AbortController();
  onSignal("SIGINT", () => abort.abort(new Error("interrupted")));
  onSignal("SIGTERM", () => abort.abort(new Error("terminated")));
  const bar = options.progress === false ? null : new ProgressBar("batch", {
    plainEveryPct: 10,
    detail: (done, all) => {
      const p = tracker.progress;
      const eta = p.etaSeconds === null ? "?" : `${Math.round(p.etaSeconds)} s`;
      return `${done}/${all} lines, ${p.failed} failed, ${p.tokensPerSecond.toFixed(1)} tok/s, ETA ${eta}`;
    },
  });
  const tracker = new BatchProgressTracker(total - skip.length, (p) => bar?.update(skip.length + p.done, total));
  const fd = fs.openSync(options.output, options.resume ? "a" : "w");
  const concurrency = options.concurrency ?? 2 * engine.info.maxSeqs;
  const work = async (line: InputLine) => {
    const r = await answer(app, line, abort.signal);
    const body = r.response?.body as { usage?: { completion_tokens?: number } } | undefined;
    tracker.finished(body?.usage?.completion_tokens ?? 0, r.response?.status_code !== 200);
    return r;
  };
  try {
    for await (const result of ordered(inputLines(options.input, skip, maxLineBytes), concurrency, work, abort.signal)) {
      // Once interrupted, answers of cancelled lines are incomplete: the file keeps a prefix.
      if (abort.signal.aborted) break;
      fs.writeSync(fd, JSON.stringify(result) + "\n");
    }
  } catch (e) {
    if (!abort.signal.aborted) throw e;
  } finally {
    fs.closeSync(fd);
    bar?.finish();
    tokenizer.close();
    await engine.close();
  }
  if (abort.signal.aborted) {
    writeStderr(`batch ${(abort.signal.reason as Error).message}: ${options.output} answers a prefix of the input; run again with --resume to continue\n`);
    return 130;
  }
  const p = tracker.progress;
  // One machine-readable summary (the bench reads it): time from the loaded engine to the end.
  writeStderr(`batch: ${p.done} lines (${p.failed} failed) in ${p.elapsedSeconds.toFixed(2)} s: ${p.tokens} tokens, ${p.tokensPerSecond.toFixed(1)} tok/s\n`);
  return 0;
}
