/**
 * The tokenizer Worker behind {@link PromptTokenizer}: loads the checkpoint's tokenizer and
 * encodes prompts, so a long prompt never blocks the HTTP thread.
 * @module
 */
import { Tokenizer } from "../model/tokenizer.ts";
import type { FromTokenizer, ToTokenizer } from "./tokenizer_protocol.ts";

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
let tokenizer: Tokenizer | null = null;

/** UTF-8 bytes of the longest vocabulary piece: no token stands for more text than this. */
function maxTokenBytes(tok: Tokenizer): number {
  const enc = new TextEncoder();
  let max = 1;
  for (let id = 0; id < tok.vocabSize; id++) {
    const piece = tok.tokenToPiece(id);
    if (piece) max = Math.max(max, enc.encode(piece).length);
  }
  return max;
}

function reply(m: FromTokenizer, transfer: Transferable[] = []): void {
  scope.postMessage(m, transfer);
}

scope.onmessage = async (e: MessageEvent<ToTokenizer>) => {
  const m = e.data;
  if (m.type === "init") {
    try {
      tokenizer = await Tokenizer.load(m.dir);
      reply({ type: "ready", maxTokenBytes: maxTokenBytes(tokenizer) });
    } catch (err) {
      reply({ type: "init_error", message: `${(err as Error).name}: ${(err as Error).message}` });
    }
  } else if (m.type === "encode") {
    try {
      const ids = Uint32Array.from(tokenizer!.encode(m.text, { addSpecialTokens: m.addSpecialTokens }));
      reply({ type: "encoded", id: m.id, ids }, [ids.buffer]);
    } catch (err) {
      reply({ type: "encode_error", id: m.id, message: (err as Error).message });
    }
  }
};
