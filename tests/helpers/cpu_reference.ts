/**
 * Plain CPU references for the kernels (JavaScript doubles, so at least f32 accurate):
 * matmul, RMSNorm, gated activations, rotate-half RoPE and paged attention over the KV
 * layout the GPU uses ([block][kv head][slot][head dim]).
 * @module
 */

/** out[m, n] = sum_k x[m, k] * w[n, k] (w row-major [n, k]). */
export function matmulRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  m: number,
  n: number,
  k: number,
): Float32Array {
  const out = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) {
      let a = 0;
      for (let i = 0; i < k; i++) a += x[r * k + i] * w[c * k + i];
      out[r * n + c] = a;
    }
  }
  return out;
}

/** Row-wise RMSNorm: x / rms(x) * (offset + weight). */
export function rmsNormRef(
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  rows: number,
  dim: number,
  eps: number,
  offset = 0,
): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[r * dim + i] = x[r * dim + i] * inv * (offset + weight[i]);
  }
  return out;
}

/** SiLU. */
export function silu(g: number): number {
  return g / (1 + Math.exp(-g));
}

/** GELU, tanh approximation. */
export function geluTanh(g: number): number {
  return 0.5 * g * (1 + Math.tanh(0.7978845608028654 * (g + 0.044715 * g ** 3)));
}

/** Rotate-half RoPE of one head vector in place. */
export function ropeRef(v: Float32Array, pos: number, invFreq: ArrayLike<number>): void {
  const half = v.length / 2;
  for (let i = 0; i < half; i++) {
    const a = v[i];
    const b = v[i + half];
    const angle = pos * Math.fround(invFreq[i]);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

/** A paged KV cache on the host, laid out as the GPU's. */
export interface HostKvCache {
  k: Float32Array<ArrayBuffer>;
  v: Float32Array<ArrayBuffer>;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

/** Offset of (slot, kv head) in a cache laid out [block][kv head][slot in block][head dim]. */
export function kvOffset(cache: Omit<HostKvCache, "k" | "v">, slot: number, kvh: number): number {
  const block = Math.floor(slot / cache.blockSize);
  return ((block * cache.numKvHeads + kvh) * cache.blockSize + (slot % cache.blockSize)) *
    cache.headDim;
}

/** One query token of an attention reference call. */
export interface RefToken {
  /** Position (keys 0..pos of its sequence are visible, causal). */
  pos: number;
  /** Its sequence's block table. */
  blockTable: ArrayLike<number>;
}

/** Options of {@link attentionRef}. */
export interface AttentionRefOptions {
  /** Query rows: token t's head h at q[t * qStride + h * headDim]. */
  q: ArrayLike<number>;
  qStride: number;
  tokens: readonly RefToken[];
  cache: HostKvCache;
  numHeads: number;
  scale: number;
  /** Sliding window (0: none). */
  window?: number;
  /** Logit soft cap (0: none). */
  softcap?: number;
}

/** Exact softmax attention per token and head; returns [tokens, numHeads * headDim]. */
export function attentionRef(o: AttentionRefOptions): Float32Array {
  const { cache, numHeads: nh } = o;
  const hd = cache.headDim;
  const group = nh / cache.numKvHeads;
  const out = new Float32Array(o.tokens.length * nh * hd);
  o.tokens.forEach((tok, t) => {
    const lo = o.window && tok.pos + 1 > o.window ? tok.pos + 1 - o.window : 0;
    for (let h = 0; h < nh; h++) {
      const kvh = Math.floor(h / group);
      const scores: number[] = [];
      for (let j = lo; j <= tok.pos; j++) {
        const slot = tok.blockTable[Math.floor(j / cache.blockSize)] * cache.blockSize +
          (j % cache.blockSize);
        const base = kvOffset(cache, slot, kvh);
        let s = 0;
        for (let d = 0; d < hd; d++) {
          s += o.q[t * o.qStride + h * hd + d] * o.scale * cache.k[base + d];
        }
        if (o.softcap) s = o.softcap * Math.tanh(s / o.softcap);
        scores.push(s);
      }
      const mx = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let j = lo; j <= tok.pos; j++) {
        const slot = tok.blockTable[Math.floor(j / cache.blockSize)] * cache.blockSize +
          (j % cache.blockSize);
        const base = kvOffset(cache, slot, kvh);
        const pr = e[j - lo] / sum;
        for (let d = 0; d < hd; d++) out[(t * nh + h) * hd + d] += pr * cache.v[base + d];
      }
    }
  });
  return out;
}

/** Largest |a - b| / (1 + |b|) over two arrays (a relative-or-absolute error). */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i]));
    if (!(e <= m)) m = Number.isNaN(e) ? Infinity : e;
  }
  return m;
}
