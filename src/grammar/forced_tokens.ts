/**
 * Text a grammar forces (jump-forward strings) to token ids without the model: the longest
 * vocabulary token matching the text's next bytes, repeatedly. Forced text is appended like
 * prompt tokens, so it costs no sampling step; its tokenization may differ from the one the
 * tokenizer would pick across a boundary, which changes no output's validity.
 * @module
 */
import { tokenBytes, type Vocabulary } from "./vocabulary.ts";

interface Node {
  /** The token ending here (-1: none). */
  id: number;
  next: Map<number, Node>;
}

const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;

/** Greedy longest-match tokenization over a vocabulary's token bytes. */
export class ForcedTokenizer {
  #root: Node = { id: -1, next: new Map() };

  /** Builds the byte trie of every token a grammar may produce (special tokens excluded). */
  constructor(vocabulary: Vocabulary) {
    for (let id = 0; id < vocabulary.encoded.length; id++) {
      const piece = vocabulary.encoded[id];
      if (piece === "") continue;
      let node = this.#root;
      for (const b of tokenBytes(vocabulary, id)) {
        let child = node.next.get(b);
        if (!child) node.next.set(b, child = { id: -1, next: new Map() });
        node = child;
      }
      if (node === this.#root) continue;
      // Of two tokens with the same bytes, prefer the plain piece to a byte-fallback one.
      if (
        node.id < 0 || (BYTE_PIECE.test(vocabulary.encoded[node.id]) && !BYTE_PIECE.test(piece))
      ) {
        node.id = id;
      }
    }
  }

  /** Token ids spelling `text` (a prefix of it when some byte has no token). */
  encode(text: string): number[] {
    const bytes = new TextEncoder().encode(text);
    const ids: number[] = [];
    let i = 0;
    while (i < bytes.length) {
      let node = this.#root;
      let best = -1;
      let bestEnd = i;
      for (let j = i; j < bytes.length; j++) {
        const child = node.next.get(bytes[j]);
        if (!child) break;
        node = child;
        if (node.id >= 0) {
          best = node.id;
          bestEnd = j + 1;
        }
      }
      if (best < 0) break;
      ids.push(best);
      i = bestEnd;
    }
    return ids;
  }
}
