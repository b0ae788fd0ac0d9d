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
export async function countLines(path: string): Promise<number> {
  let n = 0;
  for await (const line of readLines(path)) if (line.trim()) n++;
  return n;
}
