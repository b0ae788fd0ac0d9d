/**
 * A gpt-oss checkpoint with its real chat template: gpt-oss-tiny's files (no template, the
 * shared tokenizer) plus tests/fixtures/chat_templates/gpt_oss.jinja, openai/gpt-oss-120b's
 * chat_template.jinja (Apache-2.0) byte for byte as llama.cpp vendors it
 * (models/templates/openai-gpt-oss-120b.jinja, added by ggml-org/llama.cpp #15181 on
 * 2025-08-14, read from a fork's copy of that commit). gpt-oss-20b's template was not
 * compared here.
 * @module
 */
import * as sys from "./platform.ts";
import { MODELS_DIR, modelDir } from "./reference.ts";

/** The vendored gpt-oss chat template. */
export function gptOssTemplate(): Promise<string> {
  return sys.readTextFile(`${MODELS_DIR}../chat_templates/gpt_oss.jinja`);
}

/** Writes gpt-oss-tiny with the gpt-oss chat template into `dir` (a new folder). */
export async function writeHarmonyCheckpoint(dir: string): Promise<string> {
  await sys.mkdir(dir);
  for (const f of ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]) {
    await sys.copyFile(`${modelDir("gpt-oss-tiny")}/${f}`, `${dir}/${f}`);
  }
  const config = JSON.parse(await sys.readTextFile(`${modelDir("gpt-oss-tiny")}/tokenizer_config.json`));
  await sys.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ ...config, chat_template: await gptOssTemplate() }));
  return dir;
}
