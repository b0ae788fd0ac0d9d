/**
 * Runs parsed OpenAI requests on the engine and shapes the answers: one JSON body, or
 * server-sent events (`data: {...}` chunks, then `data: [DONE]`). A client that goes away
 * aborts its engine requests, which leave at the next step and free their blocks.
 * @module
 */
import type { GenerateDelta, OutputFinishReason, TokenLogprob, Tokenizer, ToolCall, ToolCallDelta } from "../../../mod.ts";
import type { ServedEngine } from "../served_engine.ts";
import type { ChatRequest, CompletionRequest, RequestOptions } from "./parse.ts";

/** One engine request of an API request (a prompt with its n completions). */
export interface PromptJob {
  prompt: string | number[];
  options: RequestOptions;
  /** Choice index of this prompt's completion 0. */
  firstChoice: number;
}

/** Identity of a response. */
export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
}

interface Choice {
  index: number;
  text: string;
  /** Reasoning (requests with a reasoning parser; null without one). */
  reasoning: string | null;
  ids: number[];
  logprobs: TokenLogprob[];
  toolCalls: ToolCall[];
  finishReason: OutputFinishReason | null;
}

interface Totals {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

/** OpenAI's names for finish reasons ("cancelled" never reaches a client that is still there). */
function finishName(r: OutputFinishReason | null): string | null {
  return r === null ? null : r === "cancelled" ? "abort" : r;
}

function tokenText(tok: Tokenizer, id: number): string {
  return tok.decode([id]);
}

/** Legacy completions logprobs for some tokens. */
function completionLogprobs(tok: Tokenizer, lps: TokenLogprob[], textOffset: number) {
  const tokens = lps.map((lp) => tokenText(tok, lp.id));
  const offsets: number[] = [];
  let at = textOffset;
  for (const t of tokens) {
    offsets.push(at);
    at += t.length;
  }
  return {
    tokens,
    token_logprobs: lps.map((lp) => lp.logprob),
    top_logprobs: lps.map((lp) => Object.fromEntries((lp.top ?? []).map((t) => [tokenText(tok, t.id), t.logprob]))),
    text_offset: offsets,
  };
}

/** Chat logprobs for some tokens. */
function chatLogprobs(tok: Tokenizer, lps: TokenLogprob[]) {
  const enc = new TextEncoder();
  const entry = (id: number, logprob: number) => {
    const token = tokenText(tok, id);
    return { token, logprob, bytes: [...enc.encode(token)] };
  };
  return {
    content: lps.map((lp) => ({ ...entry(lp.id, lp.logprob), top_logprobs: (lp.top ?? []).map((t) => entry(t.id, t.logprob)) })),
  };
}

/** OpenAI's `delta.tool_calls` items. */
function toolCallDeltas(deltas: readonly ToolCallDelta[]) {
  return deltas.map((d) => ({
    index: d.index,
    ...(d.id !== undefined ? { id: d.id, type: "function" } : {}),
    function: d.function,
  }));
}

/** A chat completion's message: content (null when it only calls tools) and `tool_calls`. */
function chatMessage(c: Choice) {
  const reasoning = c.reasoning === null ? {} : { reasoning_content: c.reasoning || null };
  if (c.toolCalls.length === 0) return { role: "assistant", content: c.text, ...reasoning };
  return {
    role: "assistant",
    content: c.text.length > 0 ? c.text : null,
    ...reasoning,
    tool_calls: c.toolCalls.map((t) => ({ id: t.id, type: "function", function: { name: t.name, arguments: t.arguments } })),
  };
}

function usageBody(t: Totals) {
  return {
    prompt_tokens: t.promptTokens,
    completion_tokens: t.completionTokens,
    total_tokens: t.promptTokens + t.completionTokens,
    prompt_tokens_details: { cached_tokens: t.cachedTokens },
  };
}

/** Runs jobs concurrently and yields every delta tagged with its choice index. */
async function* merged(
  engine: ServedEngine,
  jobs: PromptJob[],
  signal: AbortSignal,
): AsyncGenerator<{ choice: number; delta: GenerateDelta }> {
  // Start every job first (validation errors surface before anything is sent); a refused
  // job cancels those already started.
  const iterators: { job: PromptJob; it: AsyncIterator<GenerateDelta> }[] = [];
  try {
    for (const job of jobs) {
      iterators.push({ job, it: engine.stream({ ...job.options, prompt: job.prompt, signal })[Symbol.asyncIterator]() });
    }
  } catch (e) {
    for (const { it } of iterators) await it.return?.();
    throw e;
  }
  const pending = new Map<number, Promise<{ k: number; r: IteratorResult<GenerateDelta> }>>();
  const pull = (k: number) => pending.set(k, iterators[k].it.next().then((r) => ({ k, r })));
  iterators.forEach((_, k) => pull(k));
  try {
    while (pending.size) {
      const { k, r } = await Promise.race(pending.values());
      if (r.done) {
        pending.delete(k);
        continue;
      }
      pull(k);
      yield { choice: iterators[k].job.firstChoice + r.value.index, delta: r.value };
    }
  } finally {
    for (const { it } of iterators) await it.return?.();
  }
}

/** A request ready to run: its jobs and how to present it. */
export interface PreparedRequest {
  request: CompletionRequest | ChatRequest;
  jobs: PromptJob[];
  /** Choices in all (prompts x n). */
  choices: number;
}

/** Non-streaming: runs to the end and answers one JSON body. */
export async function completeJson(
  engine: ServedEngine,
  prep: PreparedRequest,
  meta: ResponseMeta,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const choices: Choice[] = Array.from({ length: prep.choices }, (_, index) => ({
    index,
    text: "",
    reasoning: prep.jobs[0]?.options.reasoningParser ? "" : null,
    ids: [],
    logprobs: [],
    toolCalls: [],
    finishReason: null,
  }));
  const totals: Totals = { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
  const warnings = new Set<string>();
  for await (const { choice, delta } of merged(engine, prep.jobs, signal)) {
    const c = choices[choice];
    c.text += delta.text;
    if (delta.reasoning && c.reasoning !== null) c.reasoning += delta.reasoning;
    c.ids.push(...delta.ids);
    if (delta.logprobs) c.logprobs.push(...delta.logprobs);
    for (const d of delta.toolCalls ?? []) {
      const call = (c.toolCalls[d.index] ??= { id: "", name: "", arguments: "" });
      if (d.id) call.id = d.id;
      if (d.function.name) call.name += d.function.name;
      if (d.function.arguments) call.arguments += d.function.arguments;
    }
    if (delta.finishReason) c.finishReason = delta.finishReason;
    if (delta.usage) addUsage(totals, delta.usage);
    for (const w of delta.warnings ?? []) warnings.add(w);
  }
  const tok = engine.tokenizer;
  const chat = prep.request.kind === "chat";
  return {
    id: meta.id,
    object: chat ? "chat.completion" : "text_completion",
    created: meta.created,
    model: meta.model,
    choices: choices.map((c) =>
      chat
        ? {
          index: c.index,
          message: chatMessage(c),
          logprobs: prep.request.logprobs ? chatLogprobs(tok, c.logprobs) : null,
          finish_reason: finishName(c.finishReason),
        }
        : {
          index: c.index,
          text: c.text,
          logprobs: prep.request.logprobs ? completionLogprobs(tok, c.logprobs, 0) : null,
          finish_reason: finishName(c.finishReason),
        }
    ),
    usage: usageBody(totals),
    // Not OpenAI's: parts of response_format or a tool schema enforced more loosely than written.
    ...(warnings.size ? { warnings: [...warnings] } : {}),
  };
}

function addUsage(t: Totals, u: { promptTokens: number; completionTokens: number; cachedTokens: number }): void {
  t.promptTokens += u.promptTokens;
  t.completionTokens += u.completionTokens;
  t.cachedTokens += u.cachedTokens;
}

/**
 * Streaming: server-sent events. The first engine output (or error) is awaited before the
 * response starts, so a request the engine refuses still gets a proper 4xx.
 */
export async function completeStream(
  engine: ServedEngine,
  prep: PreparedRequest,
  meta: ResponseMeta,
  abort: AbortController,
  onEnd: (clientGone: boolean) => void,
): Promise<ReadableStream<Uint8Array>> {
  const gen = merged(engine, prep.jobs, abort.signal);
  const first = await gen.next(); // throws on a refused request
  const enc = new TextEncoder();
  const tok = engine.tokenizer;
  const chat = prep.request.kind === "chat";
  const includeUsage = prep.request.includeUsage;
  const totals: Totals = { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
  const offsets = new Array(prep.choices).fill(0);
  const started = new Array(prep.choices).fill(false);
  const chunk = (choices: unknown[], usage?: Totals) => {
    const body: Record<string, unknown> = {
      id: meta.id,
      object: chat ? "chat.completion.chunk" : "text_completion",
      created: meta.created,
      model: meta.model,
      choices,
    };
    if (includeUsage) body.usage = usage ? usageBody(usage) : null;
    return enc.encode(`data: ${JSON.stringify(body)}\n\n`);
  };
  const render = (choice: number, d: GenerateDelta): Uint8Array[] => {
    const out: Uint8Array[] = [];
    if (chat && !started[choice]) {
      started[choice] = true;
      out.push(chunk([{ index: choice, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]));
    }
    const hasLogprobs = prep.request.logprobs && d.logprobs && d.logprobs.length > 0;
    const calls = chat && d.toolCalls && d.toolCalls.length > 0 ? toolCallDeltas(d.toolCalls) : null;
    if (d.text || d.reasoning || hasLogprobs || d.finishReason || calls) {
      const finish = finishName(d.finishReason ?? null);
      if (chat) {
        const delta: Record<string, unknown> = d.text ? { content: d.text } : {};
        if (d.reasoning) delta.reasoning_content = d.reasoning;
        if (calls) delta.tool_calls = calls;
        out.push(chunk([{
          index: choice,
          delta,
          logprobs: hasLogprobs ? chatLogprobs(tok, d.logprobs!) : null,
          finish_reason: finish,
        }]));
      } else {
        out.push(chunk([{
          index: choice,
          text: d.text,
          logprobs: hasLogprobs ? completionLogprobs(tok, d.logprobs!, offsets[choice]) : null,
          finish_reason: finish,
        }]));
        offsets[choice] += d.text.length;
      }
    }
    if (d.usage) addUsage(totals, d.usage);
    return out;
  };
  let finished = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (!first.done) for (const c of render(first.value.choice, first.value.delta)) controller.enqueue(c);
    },
    async pull(controller) {
      try {
        // A pull that enqueues nothing is not called again: read on until a delta shows
        // (one holding only part of a character, or of a tool-call marker, renders nothing).
        for (;;) {
          const next = await gen.next();
          if (next.done) {
            if (includeUsage) controller.enqueue(chunk([], totals));
            controller.enqueue(enc.encode("data: [DONE]\n\n"));
            controller.close();
            finished = true;
            onEnd(false);
            return;
          }
          const out = render(next.value.choice, next.value.delta);
          for (const c of out) controller.enqueue(c);
          if (out.length) return;
        }
      } catch (e) {
        // The engine failed mid-stream: say so in the stream, then end it.
        const err = e as Error;
        controller.enqueue(enc.encode(`data: ${JSON.stringify({ error: { message: err.message, type: "server_error", param: null, code: err.name } })}\n\n`));
        controller.close();
        finished = true;
        onEnd(false);
      }
    },
    async cancel() {
      // The client went away: cancel the engine requests (their blocks come back).
      abort.abort();
      await gen.return(undefined);
      if (!finished) onEnd(true);
    },
  });
}
