/**
 * Messages between the server and its tokenizer Worker (`prompt_tokenizer.ts` and
 * `tokenizer_worker.ts`).
 * @module
 */

/** Messages to the tokenizer Worker. */
export type ToTokenizer =
  | { type: "init"; dir: string }
  | { type: "encode"; id: number; text: string; addSpecialTokens: boolean };

/** Messages from the tokenizer Worker. */
export type FromTokenizer =
  | { type: "ready"; maxTokenBytes: number }
  | { type: "init_error"; message: string }
  | { type: "encoded"; id: number; ids: Uint32Array }
  | { type: "encode_error"; id: number; message: string };
