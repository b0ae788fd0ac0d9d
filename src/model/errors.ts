/**
 * Errors raised while loading a checkpoint directory. Every problem with the files on disk
 * is a {@link CheckpointError}, so callers catch one class and show its message, which
 * always starts with the offending file.
 * @module
 */
import { LlmError } from "../types/api.ts";

/** A checkpoint file is missing, malformed or inconsistent with the model config. */
export class CheckpointError extends LlmError {
  /** The file at fault (a path as given, usually absolute). */
  readonly file: string;
  /** What is wrong with it, without the file name. */
  readonly reason: string;

  constructor(
    file: string,
    reason: string,
    options?: ErrorOptions & { code?: "checkpoint_invalid" | "unsupported_architecture" },
  ) {
    super(options?.code ?? "checkpoint_invalid", `${file}: ${reason}`, options);
    this.name = "CheckpointError";
    this.file = file;
    this.reason = reason;
  }
}

/** The checkpoint's architecture (config.json) is not one this runtime implements. */
export class UnsupportedArchitectureError extends CheckpointError {
  /** The architecture or model_type named by the config. */
  readonly architecture: string;

  constructor(file: string, architecture: string, supported: readonly string[]) {
    super(file, `unsupported architecture ${architecture} (supported: ${supported.join(", ")})`, {
      code: "unsupported_architecture",
    });
    this.name = "UnsupportedArchitectureError";
    this.architecture = architecture;
  }
}
