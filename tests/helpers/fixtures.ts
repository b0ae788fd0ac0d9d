/**
 * Where the vendored reference checkpoints live: `tests/fixtures/models/`, a copy of the
 * reference models with the README that says how their references were computed.
 * @module
 */

/** Directory of the reference models (with a trailing slash). */
export const MODELS_DIR: string = new URL("../fixtures/models/", import.meta.url).pathname;
