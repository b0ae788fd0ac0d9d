/**
 * Token bitmasks: one bit per token id, 32 ids per u32 word, bit `id % 32` of word
 * `id >> 5` set when the token is allowed. This is xgrammar's layout and the one the WGSL
 * masking pass reads, so a mask goes to the GPU as is.
 * @module
 */

/** Words in the bitmask of a vocabulary (`ceil(vocabSize / 32)`). */
export function bitmaskWords(vocabSize: number): number {
  return (vocabSize + 31) >>> 5;
}

/** Whether `id` is allowed by `mask`. */
export function isAllowed(mask: Uint32Array, id: number): boolean {
  return ((mask[id >>> 5] >>> (id & 31)) & 1) === 1;
}

/** The allowed ids of a mask, ascending (for tests and debugging). */
export function allowedIds(mask: Uint32Array, vocabSize: number): number[] {
  const ids: number[] = [];
  for (let id = 0; id < vocabSize; id++) if (isAllowed(mask, id)) ids.push(id);
  return ids;
}

/** Whether every id below `vocabSize` is allowed (a row that needs no masking). */
export function allowsAll(mask: Uint32Array, vocabSize: number): boolean {
  const full = vocabSize >>> 5;
  for (let w = 0; w < full; w++) if (mask[w] !== 0xffffffff) return false;
  const rest = vocabSize & 31;
  if (rest === 0) return true;
  const want = (2 ** rest - 1) >>> 0;
  return ((mask[full] & want) >>> 0) === want;
}

/**
 * The CPU reference of the GPU masking pass: sets the logit of every disallowed token to
 * -Infinity, in place, before temperature, penalties and top-k/top-p/min-p see the row.
 * `logits` is one row of `vocabSize` values (a model may have more logits than tokenizer
 * ids; ids past the tokenizer are never allowed).
 */
export function applyBitmask(logits: Float32Array, mask: Uint32Array): void {
  const n = logits.length;
  for (let w = 0; w * 32 < n; w++) {
    const bits = mask[w] ?? 0;
    if (bits === 0xffffffff) continue;
    const end = Math.min(n, w * 32 + 32);
    for (let id = w * 32; id < end; id++) {
      if (((bits >>> (id & 31)) & 1) === 0) logits[id] = -Infinity;
    }
  }
}
