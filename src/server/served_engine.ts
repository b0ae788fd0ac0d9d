/**
 * What the HTTP server needs of an engine: a running `EngineClient`, or a stub in tests of
 * the HTTP surface that need no GPU.
 * @module
 */
import type { EngineClient } from "../../mod.ts";

/** The part of {@link EngineClient} the server uses. */
export type ServedEngine = Pick<EngineClient, "info" | "tokenizer" | "toolCallFormat" | "stats" | "statsAgeMs" | "stream" | "embed">;
