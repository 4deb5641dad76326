#!/usr/bin/env python3
"""Checks that a Tandem BERT checkpoint directory is a transformers checkpoint.

    python scripts/interop/check_hf_checkpoint.py TANDEM_BINARY CKPT_DIR

Loads CKPT_DIR with BertForPreTraining.from_pretrained (reporting missing, unexpected and mismatched
keys, which must all be empty), runs it on a padded batch of random ids, runs `tandem debug forward`
on the same directory and batch, and prints the largest differences. Needs torch, transformers and
safetensors (pip install them in a virtual environment); Tandem itself never needs Python.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import BertForPreTraining


def main():
    binary, ckpt = sys.argv[1], sys.argv[2]
    model, info = BertForPreTraining.from_pretrained(ckpt, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    print("from_pretrained loading info:", json.dumps({k: list(map(str, v)) for k, v in info.items()}))
    model.eval()
    cfg = model.config
    rng = np.random.default_rng(0)
    B, T = 3, 29
    ids = rng.integers(5, cfg.vocab_size, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 20:] = 0
    mask[2, 11:] = 0
    types = np.zeros((B, T), dtype=np.int64)
    types[:, 15:] = 1
    with tempfile.TemporaryDirectory() as tmp:
        batch = os.path.join(tmp, "batch.safetensors")
        out = os.path.join(tmp, "out.safetensors")
        save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, batch)
        subprocess.run([binary, "debug", "forward", "--model", ckpt, "--batch", batch, "--out", out], check=True)
        ours = load_file(out)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    token_type_ids=torch.from_numpy(types))
    worst = 0.0
    for name, theirs in [("prediction_logits", ref.prediction_logits), ("seq_relationship_logits", ref.seq_relationship_logits)]:
        diff = float(np.abs(ours[name] - theirs.numpy()).max())
        worst = max(worst, diff)
        print(f"{name}: max abs difference {diff:.3g}")
    if problems or worst > 1e-4:
        print("FAIL", problems)
        sys.exit(1)
    print("OK: transformers loads the checkpoint with no missing, unexpected or mismatched keys, and its outputs match")


if __name__ == "__main__":
    main()
