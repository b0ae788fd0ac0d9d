"""Hugging Face transformers' continuous batching (`generate_batch`) on the SmolLM2-135M-shaped
model that bench/device/streams.ts writes (the same weights; prompts of the same lengths, 16-32
random ids, drawn with Python's generator since bench/workload.ts's is not reproduced here).

usage: python3 transformers_generate_batch.py --model-dir DIR --streams 64 --tokens 64 --out OUT.json
Greedy, end-of-sequence ignored (eos unset), f16 on CUDA; one warm-up batch, then one timed
batch; output tok/s = generated tokens / wall time of the timed generate_batch call.
"""

import argparse
import json
import random
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.generation import GenerationConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    rng = random.Random(3)
    prompts = [[1] + [rng.randrange(3, 49152) for _ in range(rng.randint(15, 31))] for _ in range(a.streams)]
    result = {
        "impl": "transformers generate_batch",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "streams": a.streams,
        "tokensPerStream": a.tokens,
    }
    errors = []
    for attn in ("sdpa_paged", "paged|sdpa", "sdpa"):
        try:
            model = AutoModelForCausalLM.from_pretrained(
                a.model_dir, dtype=torch.float16, attn_implementation=attn
            ).to("cuda" if torch.cuda.is_available() else "cpu")
            model.generation_config.eos_token_id = None
            gen = GenerationConfig(
                max_new_tokens=a.tokens, do_sample=False, eos_token_id=None, pad_token_id=0
            )
            warm = GenerationConfig(max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
            model.generate_batch(inputs=prompts, generation_config=warm, progress_bar=False)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs = model.generate_batch(inputs=prompts, generation_config=gen, progress_bar=False)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            generated = sum(len(getattr(o, "generated_tokens", []) or []) for o in outs.values())
            result.update(attn=attn, generated=generated, wallS=wall, tokPerS=generated / wall)
            break
        except Exception as e:  # noqa: BLE001 - record every attempt's failure
            errors.append(f"{attn}: {type(e).__name__}: {e}"[:500])
    if errors:
        result["errors"] = errors
    print(json.dumps(result))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
    sys.exit(0 if "tokPerS" in result else 1)


if __name__ == "__main__":
    main()
