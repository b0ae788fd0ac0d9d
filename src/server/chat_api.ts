/**
 * What an API other than chat completions (Responses, Anthropic Messages) plugs into the
 * server: its body as a chat request (the one pipeline: template, tools, structured output,
 * reasoning), and its answers, one JSON body or a stream of server-sent events.
 * @module
 */
import type { GenerateDelta } from "../../mod.ts";
import type { ChatRequest } from "./openai/parse.ts";
import type { PreparedRequest, ResponseMeta } from "./openai/render.ts";
import type { ServedEngine } from "./served_engine.ts";
import type { KnownFields } from "./openai/fields.ts";

/** One request being answered. */
export interface ApiRun {
  engine: ServedEngine;
  prep: PreparedRequest;
  meta: ResponseMeta;
  abort: AbortController;
  /** Called once when the answer has ended (`clientGone`: the client left first). */
  onEnd: (clientGone: boolean) => void;
}

/** A chat-like API. */
export interface ChatApi {
  /** Prefix of response ids. */
  idPrefix: string;
  /** The top-level body fields the API accepts (others are a 400 unless fields are lenient). */
  fields: KnownFields;
  /** The body as a chat request (throws an `ApiError` for a bad body). */
  parse(body: unknown): ChatRequest;
  /** Runs to the end; the JSON body. */
  json(run: ApiRun): Promise<unknown>;
  /** Runs streaming (the first delta, or a refusal, is awaited before it returns). */
  stream(run: ApiRun): Promise<ReadableStream<Uint8Array>>;
}

/** The deltas of a prepared single-prompt request (these APIs have no `n`). */
export function deltas(run: ApiRun): AsyncIterator<GenerateDelta> {
  const job = run.prep.jobs[0];
  return run.engine.stream({ ...job.options, prompt: job.prompt, signal: run.abort.signal })[Symbol.asyncIterator]();
}

/** A prepared request's prompt tokens (chat prompts are token ids by then). */
export function promptTokens(run: ApiRun): number {
  const p = run.prep.jobs[0].prompt;
  return typeof p === "string" ? 0 : p.length;
}

const encoder = new TextEncoder();

/** One server-sent event with a name. */
export function sseEvent(type: string, data: unknown): Uint8Array {
  return encoder.encode(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
}

/**
 * A server-sent event stream of a request's deltas: `render` turns each delta into events,
 * `end` writes the closing events, `fail` those of an engine failure mid-stream. The first
 * delta is awaited here, so a refused request throws before any byte is sent.
 */
export async function eventStream(
  run: ApiRun,
  render: {
    start(): Uint8Array[];
    delta(d: GenerateDelta): Uint8Array[];
    end(): Uint8Array[];
    fail(e: Error): Uint8Array[];
  },
): Promise<ReadableStream<Uint8Array>> {
  const it = deltas(run);
  const first = await it.next();
  let finished = false;
  const close = (controller: ReadableStreamDefaultController<Uint8Array>, chunks: Uint8Array[]) => {
    for (const c of chunks) controller.enqueue(c);
    controller.close();
    finished = true;
    run.onEnd(false);
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of render.start()) controller.enqueue(c);
      if (first.done) return close(controller, render.end());
      for (const c of render.delta(first.value)) controller.enqueue(c);
    },
    async pull(controller) {
      try {
        // A pull that enqueues nothing is not called again: read on until something renders.
        for (;;) {
          const next = await it.next();
          if (next.done) return close(controller, render.end());
          const out = render.delta(next.value);
          for (const c of out) controller.enqueue(c);
          if (out.length) return;
        }
      } catch (e) {
        close(controller, render.fail(e as Error));
      }
    },
    async cancel() {
      run.abort.abort();
      await it.return?.();
      if (!finished) run.onEnd(true);
    },
  });
}

/** Runs a request to its end, feeding each delta to `each`. */
export async function drain(run: ApiRun, each: (d: GenerateDelta) => void): Promise<void> {
  const it = deltas(run);
  try {
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      each(next.value);
    }
  } finally {
    await it.return?.();
  }
}
