/**
 * Text <-> token ids for a checkpoint directory, wrapping `@huggingface/tokenizers` with the
 * special-token settings of tokenizer_config.json (BOS/EOS, add_bos_token, chat template).
 * @module
 */
import { isNotFound, readTextFile } from "../runtime/runtime.ts";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { CheckpointError } from "./errors.ts";
import { isGgufPath, readGgufHeader } from "./gguf/reader.ts";
import { ggufTokenizerFiles } from "./gguf/tokenizer.ts";
import { checkModelPath } from "./model_path.ts";

/** Options for {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Add BOS (and whatever the tokenizer's post-processor adds), as HF does by default. */
  addSpecialTokens?: boolean;
}

/** Options for {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens such as `<s>` and `</s>` from the text. */
  skipSpecialTokens?: boolean;
}

/** Everything {@link Tokenizer} needs, already parsed (lets tests build one in memory). */
export interface TokenizerFiles {
  /** Parsed tokenizer.json. */
  tokenizer: Record<string, unknown>;
  /** Parsed tokenizer_config.json ({} when the file is absent). */
  config: Record<string, unknown>;
  /** Contents of a separate chat_template.jinja, if any. */
  chatTemplate?: string | null;
  /** Path used in error messages. */
  file?: string;
}

/** A special token in tokenizer_config.json: a bare string or an AddedToken object. */
function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (
    typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string"
  ) {
    return (v as { content: string }).content;
  }
  return null;
}

/** tokenizer_config's chat_template: a string, or a list of named templates. */
function chatTemplateOf(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t?.name === "default") ?? named[0];
    return typeof pick?.template === "string" ? pick.template : null;
  }
  return null;
}

async function readJsonFile(
  path: string,
  optional: boolean,
): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readTextFile(path);
  } catch (err) {
    if (isNotFound(err)) {
      if (optional) return null;
      throw new CheckpointError(path, "file not found");
    }
    throw new CheckpointError(path, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(path, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CheckpointError(path, "not a JSON object");
  }
  return parsed as Record<string, unknown>;
}

/** A Hugging Face tokenizer plus its special-token configuration. */
export class Tokenizer {
  /** BOS id, or null when the tokenizer has none. */
  readonly bosTokenId: number | null;
  /** Ids that end generation (tokenizer_config's eos_token). */
  readonly eosTokenIds: number[];
  /** One past the largest token id (added tokens included). */
  readonly vocabSize: number;
  /** Jinja chat template, or null. */
  readonly chatTemplate: string | null;
  /** Whether encode() with special tokens starts with BOS. */
  readonly addBosToken: boolean;
  #hf: HfTokenizer;
  // Explicit add_bos_token / add_eos_token from tokenizer_config; null defers to the
  // tokenizer.json post-processor.
  #addBos: boolean | null;
  #addEos: boolean;
  #specialIds: Set<number>;

  /** Builds a tokenizer from parsed files; see {@link Tokenizer.load} for a directory. */
  constructor(files: TokenizerFiles) {
    const file = files.file ?? "tokenizer.json";
    const json = files.tokenizer;
    if (
      typeof json !== "object" || json === null || typeof json.model !== "object" ||
      json.model === null
    ) {
      throw new CheckpointError(file, `has no "model" section: not a Hugging Face tokenizer.json`);
    }
    try {
      this.#hf = new HfTokenizer(json, files.config);
    } catch (err) {
      throw new CheckpointError(file, `cannot build tokenizer: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const cfg = files.config;
    const idOf = (key: string): number | null => {
      const content = tokenContent(cfg[key]);
      return content === null ? null : this.#hf.token_to_id(content) ?? null;
    };
    this.bosTokenId = idOf("bos_token");
    const eos = idOf("eos_token");
    this.eosTokenIds = eos === null ? [] : [eos];
    let maxId = -1;
    for (const id of this.#hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.chatTemplate = files.chatTemplate ?? chatTemplateOf(cfg.chat_template);
    this.#addBos = typeof cfg.add_bos_token === "boolean" ? cfg.add_bos_token : null;
    this.#addEos = cfg.add_eos_token === true;
    this.#specialIds = new Set(
      [...this.#hf.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id),
    );
    if (this.bosTokenId !== null) this.#specialIds.add(this.bosTokenId);
    for (const id of this.eosTokenIds) this.#specialIds.add(id);
    const probe = this.#hf.encode("", { add_special_tokens: true }).ids;
    this.addBosToken = this.#addBos ?? (this.bosTokenId !== null && probe[0] === this.bosTokenId);
  }

  /**
   * Loads `dir/tokenizer.json` and (optional) `dir/tokenizer_config.json` and
   * `dir/chat_template.jinja`, or, for a `.gguf` path, the GGUF file's tokenizer. Missing or
   * invalid files throw {@link CheckpointError}.
   */
  static async load(dir: string): Promise<Tokenizer> {
    if (isGgufPath(dir)) return await Tokenizer.#loadGguf(dir);
    await checkModelPath(dir);
    const base = dir.replace(/\/+$/, "");
    const file = `${base}/tokenizer.json`;
    const tokenizer = (await readJsonFile(file, false))!;
    const config = (await readJsonFile(`${base}/tokenizer_config.json`, true)) ?? {};
    let chatTemplate: string | null = null;
    try {
      chatTemplate = await readTextFile(`${base}/chat_template.jinja`);
    } catch (err) {
      if (!(isNotFound(err))) throw err;
    }
    return new Tokenizer({ tokenizer, config, chatTemplate, file });
  }

  /**
   * A GGUF file's tokenizer: the tokenizer.json beside it when there is one (with its
   * tokenizer_config.json), else one built from the file's `tokenizer.ggml.*` vocabulary.
   */
  static async #loadGguf(path: string): Promise<Tokenizer> {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
    if ((await readJsonFile(`${dir}/tokenizer.json`, true)) !== null) return await Tokenizer.load(dir);
    return new Tokenizer(ggufTokenizerFiles(await readGgufHeader(path)));
  }

  /** Text to ids. With special tokens (the default) BOS follows add_bos_token. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const special = opts.addSpecialTokens ?? true;
    const ids = [...this.#hf.encode(text, { add_special_tokens: special }).ids];
    if (!special) return ids;
    const bos = this.bosTokenId;
    // The library only applies tokenizer.json's post-processor; reconcile it with an
    // explicit add_bos_token the way transformers' slow/fast Llama tokenizers do.
    if (bos !== null && this.#addBos === true && ids[0] !== bos) ids.unshift(bos);
    if (bos !== null && this.#addBos === false && ids[0] === bos) {
      const plain = this.#hf.encode(text, { add_special_tokens: false }).ids;
      if (plain[0] !== bos) ids.shift();
    }
    const eos = this.eosTokenIds[0];
    if (this.#addEos && eos !== undefined && ids[ids.length - 1] !== eos) ids.push(eos);
    return ids;
  }

  /** Ids to text. Throws RangeError on ids outside the vocabulary. */
  decode(ids: number[], opts: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`);
      }
    }
    const skip = opts.skipSpecialTokens ?? false;
    // The library only skips tokens flagged special in tokenizer.json; BOS/EOS named only in
    // tokenizer_config are dropped here too.
    const kept = skip ? ids.filter((id) => !this.#specialIds.has(id)) : ids;
    // The library throws on an empty list; nothing decodes to nothing.
    if (kept.length === 0) return "";
    return this.#hf.decode(kept, { skip_special_tokens: skip });
  }

  /** The raw vocabulary piece of an id (e.g. "▁the", "<0x0A>"), or undefined. */
  tokenToPiece(id: number): string | undefined {
    return this.#hf.id_to_token(id);
  }

  /** The id of a vocabulary piece, or undefined. */
  pieceToToken(piece: string): number | undefined {
    return this.#hf.token_to_id(piece);
  }

  /** Whether `id` is a special token (BOS, EOS, or flagged special in tokenizer.json). */
  isSpecial(id: number): boolean {
    return this.#specialIds.has(id);
  }
}
