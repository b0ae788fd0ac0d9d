/**
 * OpenAI Batch API files: the request lines `cli batch` reads and the result lines it writes,
 * and what `--resume` needs from a partly written output.
 * @module
 */
import * as fs from "node:fs";
import * as readline from "node:readline";

/** The endpoints a batch line may name. */
export type BatchUrl = "/v1/completions" | "/v1/chat/completions";

/** One well-formed input line. */
export interface BatchRequestLine {
  customId: string;
  url: BatchUrl;
  body: Record<string, unknown>;
}

/** A line that could not be taken as a request, with why. */
export interface BatchLineError {
  customId: string | null;
  code: string;
  message: string;
}

const URLS: readonly BatchUrl[] = ["/v1/completions", "/v1/chat/completions"];

/** Parses one input line (`{"custom_id","method":"POST","url","body"}`). */
export function parseBatchLine(line: string): BatchRequestLine | BatchLineError {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    return { customId: null, code: "invalid_json", message: `the line is not valid JSON: ${(e as Error).message}` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return { customId: null, code: "invalid_request", message: "the line must be a JSON object" };
  }
  const o = v as Record<string, unknown>;
  const customId = typeof o.custom_id === "string" && o.custom_id.length > 0 ? o.custom_id : null;
  const fail = (code: string, message: string): BatchLineError => ({ customId, code, message });
  if (customId === null) return fail("missing_custom_id", "custom_id must be a non-empty string");
  if (o.method !== "POST") return fail("invalid_method", `method must be "POST", got ${JSON.stringify(o.method)}`);
  if (!URLS.includes(o.url as BatchUrl)) return fail("invalid_url", `url must be one of ${URLS.join(", ")}, got ${JSON.stringify(o.url)}`);
  if (typeof o.body !== "object" || o.body === null || Array.isArray(o.body)) return fail("invalid_body", "body must be a JSON object");
  return { customId, url: o.url as BatchUrl, body: o.body as Record<string, unknown> };
}

/** One input line as bytes, or only its size when it was longer than the bound. */
export type RawLine = { bytes: Uint8Array } | { oversizeBytes: number };

const NEWLINE = 0x0a;
const CR = 0x0d;

/**
 * The lines of a file as bytes, one at a time. A line longer than `maxLineBytes` is never held:
 * its bytes are counted and dropped as they stream past, and only its size is returned. A
 * trailing CR (CRLF files) is not part of the line.
 */
export async function* readRawLines(path: string, maxLineBytes: number): AsyncGenerator<RawLine> {
  let parts: Uint8Array[] = [];
  let size = 0;
  let oversize = false;
  const line = (): RawLine => {
    if (oversize) return { oversizeBytes: size };
    let bytes = parts.length === 1 ? parts[0] : new Uint8Array(size);
    if (parts.length !== 1) {
      let off = 0;
      for (const p of parts) {
        bytes.set(p, off);
        off += p.length;
      }
    }
    if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
    return { bytes };
  };
  const take = (segment: Uint8Array) => {
    size += segment.length;
    if (oversize) return;
    if (size > maxLineBytes) {
      oversize = true;
      parts = [];
      return;
    }
    // A copy: a short line must not keep the whole read chunk alive.
    if (segment.length > 0) parts.push(segment.slice());
  };
  for await (const chunk of fs.createReadStream(path, { highWaterMark: 1 << 16 })) {
    const data = chunk as Uint8Array;
    let pos = 0;
    for (let nl = data.indexOf(NEWLINE, pos); nl >= 0; nl = data.indexOf(NEWLINE, pos)) {
      take(data.subarray(pos, nl));
      yield line();
      parts = [];
      size = 0;
      oversize = false;
      pos = nl + 1;
    }
    take(data.subarray(pos));
  }
  if (size > 0) yield line();
}

const WHITESPACE = new Set([0x20, 0x09, CR, 0x0b, 0x0c]);

/** Whether a line holds nothing but ASCII whitespace (blank lines are skipped, not answered). */
export function isBlankLine(line: RawLine): boolean {
  return "bytes" in line && line.bytes.every((b) => WHITESPACE.has(b));
}

/**
 * Decodes and parses one input line with the server's rules: a line over the byte bound and a
 * line that is not valid UTF-8 (never replaced by U+FFFD, which would change even a
 * custom_id) are error lines, as a too large or badly encoded request body is for serve.ts.
 */
export function decodeBatchLine(line: RawLine, maxLineBytes: number): BatchRequestLine | BatchLineError {
  if ("oversizeBytes" in line) {
    return {
      customId: null,
      code: "line_too_large",
      message: `the line is ${line.oversizeBytes} bytes, more than the limit of ${maxLineBytes} (--max-line-bytes)`,
    };
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(line.bytes);
  } catch {
    return { customId: null, code: "invalid_encoding", message: "the line is not valid UTF-8" };
  }
  return parseBatchLine(text);
}

/** The result line of one input line (`{"id","custom_id","response","error"}`). */
export interface BatchResultLine {
  id: string;
  custom_id: string | null;
  response: { status_code: number; request_id: string; body: unknown } | null;
  error: { code: string; message: string } | null;
}

/** The lines of a text file, one at a time (never the whole file in memory). */
export async function* readLines(path: string): AsyncGenerator<string> {
  const rl = readline.createInterface({ input: fs.createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  try {
    for await (const line of rl) yield line;
  } finally {
    rl.close();
  }
}

/**
 * What an output file already holds, for `--resume`: the custom_id of each complete line, in
 * order (results are written in input order, so they answer a prefix of the input). A last
 * line cut short by a kill is removed from the file (it is written again).
 */
export async function resumeState(path: string): Promise<(string | null)[]> {
  let size: number;
  try {
    size = fs.statSync(path).size;
  } catch {
    return [];
  }
  // Keep only whole lines: cut the file after its last newline.
  let keep = 0;
  if (size > 0) {
    const fd = fs.openSync(path, "r");
    try {
      const chunk = new Uint8Array(64 * 1024);
      for (let end = size; end > 0 && keep === 0;) {
        const start = Math.max(0, end - chunk.length);
        const n = fs.readSync(fd, chunk, 0, end - start, start);
        const i = chunk.subarray(0, n).lastIndexOf(10);
        if (i >= 0) keep = start + i + 1;
        end = start;
      }
    } finally {
      fs.closeSync(fd);
    }
    if (keep < size) fs.truncateSync(path, keep);
  }
  const ids: (string | null)[] = [];
  for await (const line of readLines(path)) {
    if (line.trim()) ids.push((JSON.parse(line) as BatchResultLine).custom_id);
  }
  return ids;
}

/** Lines of a file that are not blank (a cheap first pass, for progress). */
export async function countLines(path: string, maxLineBytes: number): Promise<number> {
  let n = 0;
  for await (const line of readRawLines(path, maxLineBytes)) if (!isBlankLine(line)) n++;
  return n;
}
