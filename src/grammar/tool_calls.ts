/**
 * Generated text to OpenAI tool calls, for each family's format (tool_format.ts), streaming
 * and not. {@link ToolCallStreamParser} takes text as it is decoded and returns OpenAI-shaped
 * events: content deltas, and one `delta.tool_calls` piece per call (index, id, function name
 * and arguments) once the call is complete. It never emits a partial marker (such as
 * `<tool_c`) as content: text that may still become a marker or a call is held.
 * {@link parseToolCalls} runs the same parser over a whole text, so both paths give the same
 * result by construction.
 *
 * What is a call: the format's marker (`<tool_call>`, `[TOOL_CALLS]`; for llama3_json a `{` or
 * `<|python_tag|>` at the very start) followed by `{"name": "...", "arguments": {...}}`
 * (`"parameters"` also accepted, in any format), complete. Arguments are passed on as the raw
 * JSON text the model wrote (re-serialized when the keys come in another order). A marker
 * followed by something that is not a call, and a call the text breaks off in (cut by the
 * token limit), are given back as content, as OpenAI does: a truncated call is text, never a
 * `tool_calls` entry. Content: the text outside calls, less whitespace next to calls (the
 * newline between `</tool_call>` and the next `<tool_call>`, or before the first one); text
 * without calls is returned exactly.
 * @module
 */
import type { ToolCall, ToolCallDelta } from "../types/api.ts";
import { FORMAT_SYNTAX, type ToolCallFormat } from "./tool_format.ts";

// Result data, declared with the results in types/api.ts.
export type { ToolCall, ToolCallDelta } from "../types/api.ts";

/** A whole output split into content and calls. */
export interface ParsedOutput {
  content: string;
  toolCalls: ToolCall[];
}

/** What the stream parser emits. */
export type ToolStreamEvent = { type: "content"; text: string } | {
  type: "tool_call";
  delta: ToolCallDelta;
};

/** Options of the parsers. */
export interface ToolCallParserOptions {
  /** Makes call ids (default: `call_` and 24 random characters; 9 characters for mistral, whose templates require that). */
  newId?: () => string;
}

const ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

function randomId(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return [...bytes].map((b) => ALNUM[b % ALNUM.length]).join("");
}

/** The default id maker of a format. */
export function defaultIdMaker(format: ToolCallFormat): () => string {
  return format === "mistral" ? () => randomId(9) : () => `call_${randomId(24)}`;
}

const isWs = (c: string | undefined) => c === " " || c === "\n" || c === "\t" || c === "\r";

function skipWs(s: string, i: number): number {
  while (i < s.length && isWs(s[i])) i++;
  return i;
}

/**
 * End of the JSON value starting at `i` (index after it), or null when the text ends first.
 * Only strings, objects and arrays are scanned; -1 for anything else.
 */
function valueEnd(s: string, i: number): number | null {
  const open = s[i];
  if (open === '"') {
    for (let j = i + 1; j < s.length; j++) {
      if (s[j] === "\\") j++;
      else if (s[j] === '"') return j + 1;
    }
    return null;
  }
  if (open !== "{" && open !== "[") return -1;
  let depth = 0;
  for (let j = i; j < s.length; j++) {
    const c = s[j];
    if (c === '"') {
      const end = valueEnd(s, j);
      if (end === null) return null;
      j = end - 1;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  return null;
}

/** What is known about the call object at the start of a text. */
type Scan =
  /** The text ends inside the object. */
  | { kind: "partial" }
  /** A whole call; `end`: index after its closing brace. */
  | { kind: "complete"; name: string; args: string; end: number }
  /** Not a call. */
  | { kind: "invalid" };

/** Matches `lit` at `i`: the index after it, "partial" when the text ends inside it, or null. */
function literal(s: string, i: number, lit: string): number | "partial" | null {
  for (let k = 0; k < lit.length; k++) {
    if (i + k >= s.length) return "partial";
    if (s[i + k] !== lit[k]) return null;
  }
  return i + lit.length;
}

/** A call recognized only once its whole object is there (keys in any order). */
function scanWhole(s: string): Scan {
  const start = skipWs(s, 0);
  if (start >= s.length) return { kind: "partial" };
  if (s[start] !== "{") return { kind: "invalid" };
  const end = valueEnd(s, start);
  if (end === null) return { kind: "partial" };
  let obj: unknown;
  try {
    obj = JSON.parse(s.slice(start, end));
  } catch {
    return { kind: "invalid" };
  }
  const o = obj as Record<string, unknown>;
  if (typeof o?.name !== "string") return { kind: "invalid" };
  const args = o.arguments ?? o.parameters ?? {};
  return {
    kind: "complete",
    name: o.name,
    args: typeof args === "string" ? args : JSON.stringify(args),
    end,
  };
}

/**
 * The call object at the start of `s`: `{"name": "...", "arguments": VALUE}` with the
 * arguments' raw text kept, or anything else via {@link scanWhole}.
 */
function scanCall(s: string): Scan {
  let i = skipWs(s, 0);
  for (const lit of ["{", '"name"', ":"]) {
    i = skipWs(s, i);
    const r = literal(s, i, lit);
    if (r === "partial") return { kind: "partial" };
    if (r === null) return scanWhole(s);
    i = r;
  }
  i = skipWs(s, i);
  if (i >= s.length) return { kind: "partial" };
  if (s[i] !== '"') return scanWhole(s);
  const nameEnd = valueEnd(s, i);
  if (nameEnd === null) return { kind: "partial" };
  let name: string;
  try {
    name = JSON.parse(s.slice(i, nameEnd));
  } catch {
    return { kind: "invalid" };
  }
  i = skipWs(s, nameEnd);
  const comma = literal(s, i, ",");
  if (comma === "partial") return { kind: "partial" };
  if (comma === null) return scanWhole(s);
  i = skipWs(s, comma);
  let key: number | "partial" | null = null;
  for (const k of ['"arguments"', '"parameters"']) {
    const r = literal(s, i, k);
    if (r !== null) {
      key = r;
      if (r !== "partial") break;
    }
  }
  if (key === "partial") return { kind: "partial" };
  if (key === null) return scanWhole(s);
  i = skipWs(s, key);
  const colon = literal(s, i, ":");
  if (colon === "partial") return { kind: "partial" };
  if (colon === null) return scanWhole(s);
  const argsStart = skipWs(s, colon);
  if (argsStart >= s.length) return { kind: "partial" };
  const argsEnd = valueEnd(s, argsStart);
  if (argsEnd === -1) return scanWhole(s);
  if (argsEnd === null) return { kind: "partial" };
  const close = skipWs(s, argsEnd);
  if (close >= s.length) return { kind: "partial" };
  const raw = s.slice(argsStart, argsEnd);
  let args = raw;
  if (s[argsStart] === '"') {
    // Arguments written as a JSON string holding the JSON text.
    try {
      args = JSON.parse(raw);
    } catch {
      return { kind: "invalid" };
    }
  }
  if (s[close] === "}") return { kind: "complete", name, args, end: close + 1 };
  // More keys after the arguments: the object ends where its braces balance.
  const end = valueEnd(s, skipWs(s, 0));
  if (end === null) return { kind: "partial" };
  return { kind: "complete", name, args, end };
}

type Mode = "content" | "open" | "call" | "between";

/** Incremental tool-call parser for one choice of one request. */
export class ToolCallStreamParser {
  readonly format: ToolCallFormat;
  #marker: string;
  #newId: () => string;
  #buf = "";
  #mode: Mode = "content";
  /**
   * Call markup consumed since the last complete call (the marker with the whitespace before
   * it, a list's `[`, a separator): given back as content when no complete call follows.
   */
  #held = "";
  #afterCall = false;
  #segmentStarted = false;
  /** llama3_json: the start of the output has been looked at. */
  #startDecided = false;
  #calls = 0;
  #out: ToolStreamEvent[] = [];

  constructor(format: ToolCallFormat, options: ToolCallParserOptions = {}) {
    this.format = format;
    this.#marker = FORMAT_SYNTAX[format].start;
    this.#newId = options.newId ?? defaultIdMaker(format);
  }

  /** Feeds decoded text; returns what can be emitted now. */
  push(text: string): ToolStreamEvent[] {
    this.#buf += text;
    this.#run(false);
    return this.#out.splice(0);
  }

  /** Ends the stream: flushes held text (an unfinished call is content). */
  finish(): ToolStreamEvent[] {
    this.#run(true);
    return this.#out.splice(0);
  }

  #content(text: string): void {
    if (this.#afterCall && !this.#segmentStarted) text = text.replace(/^\s+/, "");
    if (text.length === 0) return;
    this.#segmentStarted = true;
    this.#out.push({ type: "content", text });
  }

  #startSection(marker: string): void {
    this.#held = marker;
    this.#mode = this.format === "mistral" ? "open" : "call";
  }

  /** Markup that no complete call follows: it is content after all, and so is what comes next. */
  #revert(): void {
    this.#mode = "content";
    this.#startDecided = true;
    this.#content(this.#held);
    this.#held = "";
  }

  #endSection(): void {
    this.#mode = "content";
    this.#held = "";
    this.#afterCall = true;
    this.#segmentStarted = false;
  }

  #run(final: boolean): void {
    for (;;) {
      const before = this.#buf.length + this.#mode;
      switch (this.#mode) {
        case "content":
          this.#stepContent(final);
          break;
        case "open":
          this.#stepOpen(final);
          break;
        case "call":
          this.#stepCall(final);
          break;
        case "between":
          this.#stepBetween(final);
          break;
      }
      if (this.#buf.length + this.#mode === before) return;
    }
  }

  #stepContent(final: boolean): void {
    const buf = this.#buf;
    if (this.format === "llama3_json" && !this.#startDecided) {
      const t = skipWs(buf, 0);
      if (t >= buf.length) {
        if (final) {
          this.#startDecided = true;
          this.#content(buf);
          this.#buf = "";
        }
        return;
      }
      const rest = buf.slice(t);
      if (rest[0] === "{") {
        this.#startDecided = true;
        this.#buf = rest;
        this.#startSection(buf.slice(0, t));
        return;
      }
      if (rest.startsWith(this.#marker)) {
        this.#startDecided = true;
        this.#buf = rest.slice(this.#marker.length);
        this.#startSection(buf.slice(0, t) + this.#marker);
        return;
      }
      if (this.#marker.startsWith(rest) && !final) return;
      this.#startDecided = true;
    }
    // llama3_json calls only open the output; elsewhere a marker may come at any point.
    const markerAt = this.format === "llama3_json" ? -1 : buf.indexOf(this.#marker);
    if (markerAt >= 0) {
      const pre = buf.slice(0, markerAt);
      const kept = pre.replace(/\s+$/, "");
      this.#content(kept);
      this.#buf = buf.slice(markerAt + this.#marker.length);
      this.#startSection(pre.slice(kept.length) + this.#marker);
      return;
    }
    if (final) {
      this.#content(buf);
      this.#buf = "";
      return;
    }
    // Hold a suffix that may grow into the marker, and trailing whitespace (dropped if a call follows).
    let hold = 0;
    if (this.format !== "llama3_json") {
      for (let k = Math.min(this.#marker.length - 1, buf.length); k > 0; k--) {
        if (this.#marker.startsWith(buf.slice(buf.length - k))) {
          hold = k;
          break;
        }
      }
    }
    const ready = buf.slice(0, buf.length - hold).replace(/\s+$/, "");
    this.#content(ready);
    this.#buf = buf.slice(ready.length);
  }

  #stepOpen(final: boolean): void {
    const i = skipWs(this.#buf, 0);
    if (i >= this.#buf.length) {
      if (final) this.#revert();
      return;
    }
    if (this.#buf[i] === "[") {
      this.#held += this.#buf.slice(0, i + 1);
      this.#buf = this.#buf.slice(i + 1);
      this.#mode = "call";
      return;
    }
    this.#revert();
  }

  #stepCall(final: boolean): void {
    const scan = scanCall(this.#buf);
    if (scan.kind === "partial" && !final) return;
    if (scan.kind !== "complete") {
      // Not a call, or one the text breaks off in (the token limit): all of it is content.
      this.#revert();
      return;
    }
    const delta: ToolCallDelta = {
      index: this.#calls++,
      id: this.#newId(),
      type: "function",
      function: { name: scan.name, arguments: scan.args },
    };
    this.#out.push({ type: "tool_call", delta });
    this.#held = "";
    this.#buf = this.#buf.slice(scan.end);
    this.#mode = "between";
  }

  #stepBetween(final: boolean): void {
    const i = skipWs(this.#buf, 0);
    const rest = this.#buf.slice(i);
    const next = this.format === "hermes" ? "</tool_call>" : this.format === "mistral" ? "," : ";";
    if (rest.length === 0 || (next.startsWith(rest) && rest.length < next.length)) {
      if (final) {
        this.#buf = "";
        this.#endSection();
      }
      return;
    }
    if (rest.startsWith(next)) {
      this.#buf = rest.slice(next.length);
      if (this.format === "hermes") this.#endSection();
      else {
        // A next call cut off is content without the separator, as after a section's end.
        this.#afterCall = true;
        this.#segmentStarted = false;
        this.#mode = "call";
      }
      return;
    }
    if (this.format === "mistral" && rest[0] === "]") {
      this.#buf = rest.slice(1);
      this.#endSection();
      return;
    }
    this.#buf = rest;
    this.#endSection();
  }
}

/** Splits a whole output into content and tool calls (the stream parser over all of it). */
export function parseToolCalls(
  text: string,
  format: ToolCallFormat,
  options: ToolCallParserOptions = {},
): ParsedOutput {
  const parser = new ToolCallStreamParser(format, options);
  return collect([...parser.push(text), ...parser.finish()]);
}

/** Folds stream events into content and calls (what a client rebuilds from the deltas). */
export function collect(events: readonly ToolStreamEvent[]): ParsedOutput {
  let content = "";
  const calls: ToolCall[] = [];
  for (const e of events) {
    if (e.type === "content") {
      content += e.text;
      continue;
    }
    const d = e.delta;
    const call = (calls[d.index] ??= { id: "", name: "", arguments: "" });
    if (d.id) call.id = d.id;
    if (d.function.name) call.name += d.function.name;
    if (d.function.arguments) call.arguments += d.function.arguments;
  }
  return { content, toolCalls: calls };
}
