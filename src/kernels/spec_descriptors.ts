/**
 * Typed descriptors of speculative decoding's kernels (`kernels/ngram_draft.wgsl`,
 * `kernels/spec_patch.wgsl`), and the shape each kernel family gives them. See
 * `src/runner/ngram_drafter.ts` and `src/runner/verify_patch.ts` for their use.
 * @module
 */
import type { KernelFamily } from "../types/api.ts";
import { kernel, type KernelDescriptor } from "./registry.ts";

/**
 * Invocations per sequence of the n-gram drafter: 8 on CPU adapters (one SIMD row of
 * lavapipe), 64 on GPUs (candidate starts compared in parallel).
 */
export const NGRAM_DRAFT_WG: Record<KernelFamily, number> = { cpu: 8, gpu: 64 };

/** n-gram (prompt lookup) speculation per step: history update (append, or accept a verification) and draft. */
export const NGRAM_DRAFT: KernelDescriptor<
  { WG: number },
  "history" | "lengths" | "requests" | "records" | "drafts" | "accepted"
> = kernel(
  "ngram_draft",
  ["history", "lengths", "requests", "records", "drafts", "accepted"],
);

/** Verification rows' metadata (positions, KV slots, tokens, output indices) set on the GPU. */
export const SPEC_PATCH: KernelDescriptor<Record<string, never>, "step_meta" | "lengths" | "history" | "drafts" | "requests"> = kernel(
  "spec_patch",
  ["step_meta", "lengths", "history", "drafts", "requests"],
);

/** Every kernel file speculative decoding needs. */
export const SPEC_KERNEL_FILES: readonly string[] = [NGRAM_DRAFT.file, SPEC_PATCH.file];
