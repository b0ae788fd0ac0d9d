/**
 * Model resolution: a local checkpoint directory, or a Hugging Face hub id found in (or
 * downloaded into) the standard hub cache, laid out as huggingface_hub does:
 * `$HF_HUB_CACHE/models--ORG--NAME/{refs/REV, snapshots/SHA/FILE}` with `HF_HUB_CACHE`
 * defaulting to `$HF_HOME/hub` and `HF_HOME` to `~/.cache/huggingface`. `HF_ENDPOINT`
 * replaces https://huggingface.co; `HF_HUB_OFFLINE=1` never downloads.
 * @module
 */
import { LlmError } from "../types/api.ts";
import { createFile, env as processEnv, mkdir, readDir, readTextFile, remove, rename, stat, writeFile } from "../runtime/runtime.ts";

/** Raised when a model can be neither found nor downloaded (code `model_not_found`). */
export class ModelNotFoundError extends LlmError {
  constructor(message: string, options?: ErrorOptions) {
    super("model_not_found", message, options);
    this.name = "ModelNotFoundError";
  }
}

/** Download progress: bytes done of total, and the file being fetched. */
export type DownloadProgress = (done: number, total: number, file: string) => void;

/** Options of {@link resolveModel}. */
export interface ResolveOptions {
  /** Environment lookup (default: the process environment). */
  env?: (name: string) => string | undefined;
  /** fetch (tests pass their own). */
  fetch?: typeof fetch;
  onProgress?: DownloadProgress;
  /** Which .gguf file of a repository to use (default: its only one, when it has no safetensors). */
  ggufFile?: string;
}

// What a checkpoint needs, and what it may have.
const REQUIRED = ["config.json", "tokenizer.json"];
const OPTIONAL = ["tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "chat_template.jinja"];

async function isDir(path: string): Promise<boolean> {
  return (await stat(path))?.isDirectory ?? false;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path))?.isFile ?? false;
}

/** The hub cache directory for an environment. */
export function hubCacheDir(env: (name: string) => string | undefined): string {
  const explicit = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE");
  if (explicit) return explicit;
  const home = env("HF_HOME") ?? `${env("XDG_CACHE_HOME") ?? `${env("HOME") ?? "."}/.cache`}/huggingface`;
  return `${home}/hub`;
}

/** Splits "org/name[@rev]". */
export function parseHubId(spec: string): { repo: string; revision: string } | null {
  const m = /^([A-Za-z0-9][\w.-]*\/[\w.-]+)(?:@([\w./-]+))?$/.exec(spec);
  return m ? { repo: m[1], revision: m[2] ?? "main" } : null;
}

const isGguf = (name: string) => /\.gguf$/i.test(name);

/**
 * A local directory or .gguf file as given, or the snapshot directory of a hub id (or the
 * path of the .gguf file a repository without safetensors holds), downloading it if needed.
 */
export async function resolveModel(spec: string, options: ResolveOptions = {}): Promise<string> {
  if (await isDir(spec)) return spec;
  // Any other local file goes to the loader too, which names what is expected.
  if (await isFile(spec)) return spec;
  const id = parseHubId(spec);
  if (!id || spec.startsWith(".") || spec.startsWith("/")) {
    throw new ModelNotFoundError(`model directory ${spec} does not exist`);
  }
  const env = options.env ?? processEnv;
  const cache = hubCacheDir(env);
  const repoDir = `${cache}/models--${id.repo.replace("/", "--")}`;
  const cached = await cachedSnapshot(repoDir, id.revision, options.ggufFile);
  if (cached) return cached;
  const endpoint = (env("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
  const hint = `Pass --model DIR with a local checkpoint directory, or connect to ${endpoint}.`;
  if (env("HF_HUB_OFFLINE") === "1") {
    throw new ModelNotFoundError(`${spec} is not in the Hugging Face cache (${cache}) and HF_HUB_OFFLINE=1. ${hint}`);
  }
  try {
    return await download(id.repo, id.revision, repoDir, endpoint, env, options);
  } catch (e) {
    if (e instanceof ModelNotFoundError) throw e;
    throw new ModelNotFoundError(
      `${spec} is not in the Hugging Face cache (${cache}) and could not be downloaded from ${endpoint}: ${(e as Error).message}. ${hint}`,
      { cause: e },
    );
  }
}

async function cachedSnapshot(repoDir: string, revision: string, ggufFile?: string): Promise<string | null> {
  let sha = revision;
  try {
    sha = (await readTextFile(`${repoDir}/refs/${revision}`)).trim();
  } catch {
    // A revision may be a commit hash itself.
  }
  const dir = `${repoDir}/snapshots/${sha}`;
  if (ggufFile) return (await isFile(`${dir}/${ggufFile}`)) ? `${dir}/${ggufFile}` : null;
  if (await safetensorsSnapshot(dir)) return dir;
  if (!(await isDir(dir))) return null;
  const ggufs = (await readDir(dir)).filter((e) => e.isFile && isGguf(e.name));
  return ggufs.length === 1 ? `${dir}/${ggufs[0].name}` : null;
}

async function safetensorsSnapshot(dir: string): Promise<boolean> {
  for (const f of REQUIRED) if (!(await isFile(`${dir}/${f}`))) return false;
  if (await isFile(`${dir}/model.safetensors`)) return true;
  try {
    const index = JSON.parse(await readTextFile(`${dir}/model.safetensors.index.json`));
    for (const shard of new Set(Object.values(index.weight_map ?? {}) as string[])) {
      if (!(await isFile(`${dir}/${shard}`))) return false;
    }
    return true;
  } catch {
    return false;
  }
}

async function download(
  repo: string,
  revision: string,
  repoDir: string,
  endpoint: string,
  env: (name: string) => string | undefined,
  options: ResolveOptions,
): Promise<string> {
  const fetchFn = options.fetch ?? fetch;
  const token = env("HF_TOKEN");
  const headers: HeadersInit = token ? { authorization: `Bearer ${token}` } : {};
  const infoRes = await fetchFn(`${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`, { headers });
  if (infoRes.status === 404 || infoRes.status === 401) {
    await infoRes.body?.cancel();
    throw new ModelNotFoundError(`${repo}@${revision} was not found on ${endpoint} (HTTP ${infoRes.status})`);
  }
  if (!infoRes.ok) {
    await infoRes.body?.cancel();
    throw new Error(`HTTP ${infoRes.status} for the model info`);
  }
  const info = await infoRes.json() as { sha?: string; siblings?: { rfilename: string; size?: number }[] };
  const sha = info.sha ?? revision;
  const available = new Map((info.siblings ?? []).map((s) => [s.rfilename, s.size]));
  const gguf = pickGguf(repo, [...available.keys()], options.ggufFile);
  // A GGUF file carries its own config and vocabulary: the other files only when present.
  const files = gguf ? REQUIRED.filter((f) => available.has(f)) : [...REQUIRED];
  for (const f of OPTIONAL) if (available.has(f)) files.push(f);
  const snapshot = `${repoDir}/snapshots/${sha}`;
  await mkdir(snapshot);
  const fetchFile = (file: string, done: number, total: number) =>
    downloadFile(fetchFn, `${endpoint}/${repo}/resolve/${sha}/${file}`, `${snapshot}/${file}`, headers, (n) => options.onProgress?.(done + n, total, file));
  if (gguf) files.push(gguf);
  else if (available.has("model.safetensors")) files.push("model.safetensors");
  else if (available.has("model.safetensors.index.json")) {
    await fetchFile("model.safetensors.index.json", 0, 0);
    const index = JSON.parse(await readTextFile(`${snapshot}/model.safetensors.index.json`));
    files.push(...new Set(Object.values(index.weight_map ?? {}) as string[]));
  } else {
    throw new ModelNotFoundError(`${repo} has no model.safetensors, model.safetensors.index.json or .gguf file`);
  }
  const total = files.reduce((n, f) => n + (available.get(f) ?? 0), 0);
  let done = 0;
  for (const file of files) {
    if (!(await isFile(`${snapshot}/${file}`))) await fetchFile(file, done, total);
    done += available.get(file) ?? (await stat(`${snapshot}/${file}`))?.size ?? 0;
  }
  await mkdir(`${repoDir}/refs`);
  if (revision !== sha) await writeFile(`${repoDir}/refs/${revision}`, sha);
  return gguf ? `${snapshot}/${gguf}` : snapshot;
}

/**
 * The .gguf file to use from a repository's files: the one asked for, else the only one when
 * the repository has no safetensors checkpoint; null to use the safetensors.
 */
export function pickGguf(repo: string, files: readonly string[], wanted?: string): string | null {
  const ggufs = files.filter(isGguf);
  if (wanted) {
    if (!ggufs.includes(wanted)) {
      throw new ModelNotFoundError(`${repo} has no ${wanted} (its .gguf files: ${ggufs.join(", ") || "none"})`);
    }
    return wanted;
  }
  if (files.includes("model.safetensors") || files.includes("model.safetensors.index.json") || ggufs.length === 0) return null;
  if (ggufs.length > 1) {
    throw new ModelNotFoundError(`${repo} holds several .gguf files (${ggufs.join(", ")}): pass --gguf-file NAME`);
  }
  return ggufs[0];
}

/** Streams one file to `dest` through a temporary name, so a broken download leaves nothing. */
async function downloadFile(
  fetchFn: typeof fetch,
  url: string,
  dest: string,
  headers: HeadersInit,
  onBytes: (n: number) => void,
): Promise<void> {
  const res = await fetchFn(url, { headers });
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status} for ${url}`);
  }
  const tmp = `${dest}.incomplete`;
  const file = await createFile(tmp);
  let n = 0;
  try {
    // An explicit reader: a Bun run once failed inside for-await over a fetch body with
    // "undefined is not a function" (not reproduced since).
    const reader = res.body.getReader();
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      await file.write(chunk);
      n += chunk.length;
      onBytes(n);
    }
  } finally {
    await file.close();
  }
  const expected = Number(res.headers.get("content-length") ?? NaN);
  if (Number.isFinite(expected) && expected !== n) {
    await remove(tmp);
    throw new Error(`${url}: got ${n} of ${expected} bytes`);
  }
  await rename(tmp, dest);
}
