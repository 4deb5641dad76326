#!/usr/bin/env python3
"""`tandem generate` against transformers' `generate` (greedy, key/value cache) on the same GPT-2 checkpoint,
prompt and length, same number of threads, in one run:

    /opt/tandem-ref/bin/python scripts/bench/generate_compare.py .build/release/tandem runs/gpt2-small/step-00002000 \
        --prompt "The Lord is my shepherd" --new-tokens 100 --threads 1 --rounds 3

The prompt's ids are Tandem's (`tandem generate --show-ids`), fed to both. Prints each side's tokens/s
(new tokens over the whole call, prefill included, best of --rounds after one warm-up call each) and
whether the greedy continuations are the same ids (both stop at the end-of-text token). transformers
loads the Tandem checkpoint with GPT2LMHeadModel.from_pretrained.
"""
import argparse
import os
import re
import subprocess
import time

import torch
from transformers import GPT2LMHeadModel


def tandem(binary, ckpt, prompt, new, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    p = subprocess.run([binary, "generate", "--model", ckpt, "--prompt", prompt, "--max-new-tokens", str(new),
                        "--temperature", "0", "--show-ids"], capture_output=True, text=True, env=env, check=True)
    err = p.stderr
    ids = lambda key: [int(x) for x in re.search(rf"^{key} ids: ?(.*)$", err, re.M).group(1).split()]
    rate = float(re.search(r"tokens/s, ([0-9.]+) with the prefill", err).group(1))
    return ids("prompt"), ids("new"), rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("checkpoint")
    ap.add_argument("--prompt", default="The Lord is my shepherd")
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    model = GPT2LMHeadModel.from_pretrained(a.checkpoint).eval()
    prompt_ids, ours, _ = tandem(a.binary, a.checkpoint, a.prompt, a.new_tokens, a.threads)
    best_t = max(tandem(a.binary, a.checkpoint, a.prompt, a.new_tokens, a.threads)[2] for _ in range(a.rounds))

    input_ids = torch.tensor([prompt_ids])
    kwargs = dict(max_new_tokens=a.new_tokens, do_sample=False, use_cache=True, num_beams=1,
                  eos_token_id=model.config.eos_token_id, pad_token_id=model.config.eos_token_id,
                  attention_mask=torch.ones_like(input_ids))
    with torch.no_grad():
        theirs = model.generate(input_ids, **kwargs)[0, len(prompt_ids):].tolist()  # warm-up
        best_p = 0.0
        for _ in range(a.rounds):
            t = time.perf_counter()
            out = model.generate(input_ids, **kwargs)
            best_p = max(best_p, (out.shape[1] - len(prompt_ids)) / (time.perf_counter() - t))
    same = ours == theirs
    agree = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
    print(f"prompt {len(prompt_ids)} tokens, up to {a.new_tokens} new, greedy, {a.threads} thread(s), best of {a.rounds}")
    print(f"tandem generate: {len(ours)} tokens, {best_t:.1f} tokens/s (prefill included)")
    print(f"transformers generate (torch {torch.__version__}, use_cache): {len(theirs)} tokens, {best_p:.1f} tokens/s")
    print(f"ratio {best_t / best_p:.2f}x; greedy ids {'identical' if same else f'agree on the first {agree}'}")


if __name__ == "__main__":
    main()
