/**
 * Ground truth for the 2026 families: Qwen3.5's hybrid layers, the mixtures of experts
 * (Qwen3-MoE, gpt-oss with bf16 and MXFP4 experts) and both together (Qwen3.5-MoE, with its
 * shared expert), checked as every reference model is
 * (tests/helpers/reference_suite.ts).
 */
import { referenceTests } from "./helpers/reference_suite.ts";
import { HYBRID_MODEL_NAMES, HYBRID_MOE_MODEL_NAMES, MOE_MODEL_NAMES } from "./helpers/reference.ts";

referenceTests([...HYBRID_MODEL_NAMES, ...MOE_MODEL_NAMES, ...HYBRID_MOE_MODEL_NAMES]);
