/**
 * Keeps constrained output well-formed UTF-8. xgrammar 0.1.27 checks only the shape of
 * multi-byte sequences built from byte tokens (a lead byte and the right number of
 * continuation bytes), so it lets through surrogates (`ED A0 80`), overlong forms (`C0 80`)
 * and code points past U+10FFFF (`F4 90 ...`, `F5 ...`). Decoded, each such byte becomes a
 * U+FFFD, so a string the grammar counted as one character comes out as several: a
 * `maxLength` or `pattern` can then fail. The guard tracks where the output stands inside a
 * UTF-8 sequence (one of 8 states) and masks the tokens whose bytes would make it ill-formed,
 * following the well-formed byte sequences table of the Unicode standard (Table 3-7).
 * @module
 */
import { bitmaskWords } from "./bitmask.ts";
import { tokenBytes, type Vocabulary } from "./vocabulary.ts";

/**
 * A UTF-8 decoder state: 0 between characters, otherwise the continuation bytes still needed
 * and the range the next one must be in.
 */
export type Utf8State = number;

const ERROR = -1;
// State -> [continuation bytes needed, lowest, highest allowed next byte].
const STATES: readonly [number, number, number][] = [
  [0, 0, 0], // 0: between characters
  [1, 0x80, 0xbf], // 1
  [2, 0x80, 0xbf], // 2
  [2, 0xa0, 0xbf], // 3: after E0 (no overlong)
  [2, 0x80, 0x9f], // 4: after ED (no surrogates)
  [3, 0x80, 0xbf], // 5
  [3, 0x90, 0xbf], // 6: after F0 (no overlong)
  [3, 0x80, 0x8f], // 7: after F4 (nothing past U+10FFFF)
];
const NUM_STATES = STATES.length;

/** The state after one byte, or -1 when the byte makes the text ill-formed. */
function step(state: Utf8State, b: number): number {
  if (state === 0) {
    if (b <= 0x7f) return 0;
    if (b >= 0xc2 && b <= 0xdf) return 1;
    if (b === 0xe0) return 3;
    if (b === 0xed) return 4;
    if (b >= 0xe1 && b <= 0xef) return 2;
    if (b === 0xf0) return 6;
    if (b >= 0xf1 && b <= 0xf3) return 5;
    if (b === 0xf4) return 7;
    return ERROR;
  }
  const [need, lo, hi] = STATES[state];
  if (b < lo || b > hi) return ERROR;
  return need === 1 ? 0 : need === 2 ? 1 : 2;
}

/** The UTF-8 guard of one vocabulary (shared by all its matchers). */
export class Utf8Guard {
  #bytes: Uint8Array[];
  #words: number;
  #masks: (Uint32Array | null)[] = new Array(NUM_STATES).fill(null);

  constructor(vocabulary: Vocabulary) {
    this.#words = bitmaskWords(vocabulary.vocabSize);
    this.#bytes = [];
    for (let id = 0; id < vocabulary.encoded.length; id++) {
      this.#bytes.push(tokenBytes(vocabulary, id));
    }
  }

  /** The state after a token's bytes, or -1 when they make the text ill-formed. */
  advance(state: Utf8State, id: number): number {
    let s = state;
    for (const b of this.#bytes[id] ?? []) {
      s = step(s, b);
      if (s === ERROR) return ERROR;
    }
    return s;
  }

  /** Tokens allowed in `state` (computed once per state; ids past the tokenizer allowed). */
  mask(state: Utf8State): Uint32Array {
    const cached = this.#masks[state];
    if (cached) return cached;
    const mask = new Uint32Array(this.#words).fill(0xffffffff);
    for (let id = 0; id < this.#bytes.length; id++) {
      if (this.advance(state, id) === ERROR) mask[id >>> 5] &= ~(1 << (id & 31));
    }
    this.#masks[state] = mask;
    return mask;
  }

  /** ANDs the guard's mask for `state` into `out` at word `offset`. */
  restrict(out: Uint32Array, state: Utf8State, offset = 0): void {
    const mask = this.mask(state);
    for (let w = 0; w < mask.length; w++) out[offset + w] &= mask[w];
  }
}
