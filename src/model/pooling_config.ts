/**
 * The pooling a sentence-transformers checkpoint declares: `modules.json` lists a
 * `sentence_transformers.models.Pooling` module whose `config.json` (usually
 * `1_Pooling/config.json`) turns on one `pooling_mode_*` (or names `pooling_mode`).
 * @module
 */
import type { Pooling } from "../types/api.ts";
import { isNotFound, readTextFile } from "../runtime/runtime.ts";
import { CheckpointError } from "./errors.ts";

/** What a checkpoint says about pooling. */
export type PoolingConfig =
  /** A pooling this runtime implements. */
  | { pooling: Pooling }
  /** A pooling it does not (cls, max, weighted mean, several at once): named for the error. */
  | { unsupported: string }
  /** No sentence-transformers pooling module (plain decoders, GGUF files). */
  | null;

const POOLING_MODULE = "sentence_transformers.models.Pooling";

/** sentence-transformers' mode names, as `pooling_mode_<name>` flags or `pooling_mode` values. */
const MODES: Record<string, Pooling> = { lasttoken: "last", mean_tokens: "mean", mean: "mean" };

/** Reads the pooling of the checkpoint directory `dir` (null without a `modules.json`). */
export async function readPoolingConfig(dir: string): Promise<PoolingConfig> {
  const modulesFile = `${dir}/modules.json`;
  const modules = await readJsonFile(modulesFile);
  if (modules === null) return null;
  if (!Array.isArray(modules)) throw new CheckpointError(modulesFile, "must hold an array of modules");
  const pool = modules.find((m) => (m as { type?: unknown })?.type === POOLING_MODULE) as { path?: unknown } | undefined;
  if (!pool) return null;
  if (typeof pool.path !== "string") throw new CheckpointError(modulesFile, "the Pooling module has no path");
  const configFile = `${dir}/${pool.path}/config.json`;
  const config = await readJsonFile(configFile);
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new CheckpointError(configFile, "missing or not a JSON object (modules.json names a Pooling module here)");
  }
  const c = config as Record<string, unknown>;
  const modes = typeof c.pooling_mode === "string"
    ? [c.pooling_mode]
    : Object.keys(c).filter((k) => k.startsWith("pooling_mode_") && c[k] === true).map((k) => k.slice("pooling_mode_".length));
  if (modes.length === 1 && MODES[modes[0]]) return { pooling: MODES[modes[0]] };
  return { unsupported: modes.length ? modes.join(" + ") : "none" };
}

/**
 * The pooling embeddings use: `option` when given, else what the checkpoint declares, else
 * "last" (Qwen3-Embedding's recipe); null when the checkpoint declares one not implemented.
 */
export async function resolvePooling(dir: string, option?: Pooling): Promise<Pooling | null> {
  if (option) return option;
  const config = await readPoolingConfig(dir);
  return config === null ? "last" : "pooling" in config ? config.pooling : null;
}

async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readTextFile(path);
  } catch (e) {
    // A GGUF file's "directory" is a file: nothing beside it to read either.
    if (isNotFound(e) || (e as { code?: string })?.code === "ENOTDIR" || (e as Error)?.name === "NotADirectory") return null;
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(path, `not valid JSON: ${(e as Error).message}`);
  }
}
