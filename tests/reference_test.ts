/**
 * Ground truth for the pure-attention reference models (tests/helpers/reference_suite.ts says
 * what each golden test checks and with which tolerances); the newer families are in
 * reference_families_test.ts, so the two files run in parallel.
 */
import { referenceTests } from "./helpers/reference_suite.ts";
import { MODEL_NAMES } from "./helpers/reference.ts";

referenceTests(MODEL_NAMES);
