/**
 * gpt-oss's output format (harmony): a completion is a run of messages, each a header then
 * `<|message|>` then a body ended by `<|end|>`, `<|call|>` or `<|return|>`; later messages
 * start with `<|start|>assistant`. The header names the channel (`<|channel|>analysis`,
 * `commentary` or `final`) and, for a tool call, its recipient (`to=functions.NAME`, in the
 * role part or after the channel), maybe a content type (`<|constrain|>json`, `json`).
 * {@link HarmonyStreamParser} turns the text as it is decoded into reasoning (the analysis
 * channel, and messages to built-in tools such as `python`, which run inside the chain of
 * thought), answer text (the final channel, and commentary without a recipient: preambles
 * shown to the user) and tool calls (a body sent to `functions.NAME`, complete once its end
 * marker comes or the output ends on a whole JSON value). A call cut off mid-JSON is answer
 * text, as the other formats treat a truncated call. Output that does not start like a
 * harmony header is all answer text. The spec: OpenAI's "OpenAI Harmony Response Format"
 * (cookbook.openai.com/articles/openai-harmony).
 * @module
 */
import type { ToolCallDelta } from "../types/api.ts";

/** The format's special tokens (kept as text for the parser; see the client's decoder). */
export const HARMONY_MARKERS = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", "<|return|>", "<|constrain|>"];

const START = "<|start|>";
const CHANNEL = "<|channel|>";
const MESSAGE = "<|message|>";
const ENDS = ["<|end|>", "<|call|>", "<|return|>"];
/** What an output may open with: a channel, a recipient in the role part, a new message. */
const OPENERS = [CHANNEL, START, " to=", "to="];

/** What some decoded text adds. */
export interface HarmonyDelta {
  reasoning: string;
  content: string;
  calls: ToolCallDelta[];
}

/** Options of {@link HarmonyStreamParser}. */
export interface HarmonyParserOptions {
  /** Turn `functions.*` messages into calls (else their bodies are answer text). */
  tools: boolean;
  /** Put the analysis channel in `reasoning` (else it is answer text). Default true. */
  reasoning?: boolean;
  /** Makes call ids (default `call_` and 24 random characters). */
  newId?: () => string;
}

type Route = "reasoning" | "content" | { call: string };

function randomCallId(): string {
  const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return "call_" + [...crypto.getRandomValues(new Uint8Array(24))].map((b) => alnum[b % alnum.length]).join("");
}

/** The longest suffix of `text` that is a proper prefix of one of `markers`. */
function heldSuffix(text: string, markers: readonly string[]): number {
  let best = 0;
  for (const m of markers) {
    for (let n = Math.min(m.length - 1, text.length); n > best; n--) {
      if (m.startsWith(text.slice(text.length - n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}

/** Where the message of a header goes. */
function routeOf(header: string, tools: boolean, reasoning: boolean): Route {
  const recipient = /to=([^\s<]+)/.exec(header)?.[1];
  const channel = new RegExp(`${CHANNEL.replace(/[|]/g, "\\|")}\\s*([A-Za-z_]+)`).exec(header)?.[1];
  if (recipient?.startsWith("functions.")) return tools ? { call: recipient.slice("functions.".length) } : "content";
  // Built-in tools (python, browser.*) run inside the chain of thought.
  if (recipient && recipient !== "assistant") return reasoning ? "reasoning" : "content";
  return channel === "analysis" && reasoning ? "reasoning" : "content";
}

/** Splits one completion's harmony text, fed in pieces as it is decoded. */
export class HarmonyStreamParser {
  #tools: boolean;
  #reasoning: boolean;
  #newId: () => string;
  #state: "expect" | "header" | "body" | "raw" = "expect";
  #buf = "";
  #route: Route = "content";
  #args = "";
  /** Tool calls completed so far. */
  calls = 0;

  constructor(options: HarmonyParserOptions) {
    this.#tools = options.tools;
    this.#reasoning = options.reasoning ?? true;
    this.#newId = options.newId ?? randomCallId;
  }

  /** The next decoded text; returns what is known so far. */
  push(text: string): HarmonyDelta {
    this.#buf += text;
    return this.#run(false);
  }

  /** The end of the output: held text is settled (a cut-off call is answer text). */
  finish(): HarmonyDelta {
    return this.#run(true);
  }

  #run(final: boolean): HarmonyDelta {
    const out: HarmonyDelta = { reasoning: "", content: "", calls: [] };
    const emit = (route: Route, s: string) => {
      if (!s) return;
      if (route === "reasoning") out.reasoning += s;
      else if (route === "content") out.content += s;
      else this.#args += s;
    };
    for (;;) {
      const buf = this.#buf;
      if (this.#state === "raw") {
        out.content += buf;
        this.#buf = "";
        return out;
      }
      if (this.#state === "expect") {
        const lead = buf.trimStart();
        if (OPENERS.some((o) => lead.startsWith(o))) this.#state = "header";
        else if (!final && OPENERS.some((o) => o.startsWith(lead))) return out; // too short to tell
        else this.#state = "raw";
        continue;
      }
      if (this.#state === "header") {
        const at = buf.indexOf(MESSAGE);
        if (at < 0) {
          // A header the output ends in is dropped; text without any marker is answer text.
          if (final) {
            if (!buf.includes("<|") && buf.trim()) out.content += buf;
            this.#buf = "";
          }
          return out;
        }
        this.#route = routeOf(buf.slice(0, at), this.#tools, this.#reasoning);
        this.#args = "";
        this.#buf = buf.slice(at + MESSAGE.length);
        this.#state = "body";
        continue;
      }
      // body
      let end = -1;
      let marker = "";
      for (const m of ENDS) {
        const i = buf.indexOf(m);
        if (i >= 0 && (end < 0 || i < end)) [end, marker] = [i, m];
      }
      if (end >= 0) {
        emit(this.#route, buf.slice(0, end));
        this.#endMessage(out, true);
        this.#buf = buf.slice(end + marker.length);
        this.#state = "header";
        continue;
      }
      const keep = final ? 0 : heldSuffix(buf, ENDS);
      emit(this.#route, buf.slice(0, buf.length - keep));
      this.#buf = buf.slice(buf.length - keep);
      if (final) this.#endMessage(out, false);
      return out;
    }
  }

  /** A message's end: a call's arguments become a call (or, cut off, answer text). */
  #endMessage(out: HarmonyDelta, marked: boolean): void {
    const route = this.#route;
    this.#route = "content";
    if (typeof route !== "object") return;
    const args = this.#args.trim();
    this.#args = "";
    let whole = false;
    try {
      JSON.parse(args);
      whole = true;
    } catch {
      whole = false;
    }
    if (!whole && !marked) {
      out.content += args;
      return;
    }
    out.calls.push({ index: this.calls++, id: this.#newId(), type: "function", function: { name: route.call, arguments: args } });
  }
}
