/**
 * Incremental detokenization on the request side: text deltas from a growing id list that
 * never split a UTF-8 character (byte-fallback pieces arrive one byte per token) and keep
 * the leading space SentencePiece-style decoders drop at the start of a decode.
 * @module
 */

/** The part of a tokenizer the detokenizer needs. */
export interface Decoder {
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
}

const REPLACEMENT = "\uFFFD";
/** Prompt tokens used as left context so the first delta decodes as in the full text. */
const CONTEXT_TOKENS = 4;

/** Turns token ids into text deltas (the prefix-offset / read-offset method of TGI and vLLM). */
export class IncrementalDetokenizer {
  #decoder: Decoder;
  #ids: number[];
  #prefixOffset = 0;
  #readOffset: number;
  #skipSpecial: boolean;

  constructor(decoder: Decoder, promptIds: readonly number[] = [], skipSpecialTokens = true) {
    this.#decoder = decoder;
    this.#ids = promptIds.slice(-CONTEXT_TOKENS);
    this.#readOffset = this.#ids.length;
    this.#skipSpecial = skipSpecialTokens;
  }

  /** Adds ids; returns the text they complete (possibly empty while a character is split). */
  push(ids: readonly number[]): string {
    let out = "";
    for (const id of ids) {
      this.#ids.push(id);
      out += this.#step(false);
    }
    return out;
  }

  /** Text still held back at the end of the request (an incomplete character, as U+FFFD). */
  flush(): string {
    return this.#step(true);
  }

  #step(final: boolean): string {
    const opts = { skipSpecialTokens: this.#skipSpecial };
    const prefix = this.#decoder.decode(this.#ids.slice(this.#prefixOffset, this.#readOffset), opts);
    const full = this.#decoder.decode(this.#ids.slice(this.#prefixOffset), opts);
    if (full.length > prefix.length && (final || !full.endsWith(REPLACEMENT))) {
      this.#prefixOffset = this.#readOffset;
      this.#readOffset = this.#ids.length;
      return full.slice(prefix.length);
    }
    return "";
  }
}

/**
 * Applies stop strings to a text stream: emits text up to a match and never emits a partial
 * match (text that could still become a stop string is held back).
 */
export class StopStringMatcher {
  #stops: string[];
  #held = "";
  stopped = false;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /** Adds text; returns what may be emitted now. After a match, `stopped` is true. */
  push(text: string): string {
    if (this.stopped) return "";
    if (this.#stops.length === 0) return text;
    const buf = this.#held + text;
    let cut = -1;
    for (const s of this.#stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.#held = "";
      return buf.slice(0, cut);
    }
    // Hold back the longest suffix that is a prefix of some stop string.
    let keep = 0;
    for (const s of this.#stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > keep; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    this.#held = buf.slice(buf.length - keep);
    return buf.slice(0, buf.length - keep);
  }

  /** The held-back text when the request ends without a match. */
  flush(): string {
    const rest = this.#held;
    this.#held = "";
    return this.stopped ? "" : rest;
  }
}
