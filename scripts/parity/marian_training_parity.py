#!/usr/bin/env python3
"""Trains transformers' MarianMTModel on the exact batches a Tandem marian run used, from the same initial
weights, and compares the per-step losses.

    tandem train CONFIG --set train.dump_batches=DUMP --set model.dropout=0 --set checkpoint.dir=RUN ...
    python scripts/parity/marian_training_parity.py DUMP RUN/metrics.jsonl --lr 5e-4 --warmup 40 --steps 100 \
        --beta2 0.98 --eps 1e-9 --weight-decay 0.01 --label-smoothing 0.1

The optimizer mirrors Tandem's: AdamW (weight decay on everything but biases and LayerNorm parameters;
final_logits_bias is a buffer, never updated), Tandem's schedules (`inverse_sqrt`: s/warmup during the
warm-up, then sqrt(warmup/s), s counting updates from 0; or `linear`), global gradient-norm clipping, the
cross-entropy with label smoothing over the labels that are not -100, and the step's loss as the mean over
micro-batches of each micro-batch's mean loss. Dropout must be off in both runs (its random draws differ).
"""
import argparse
import glob
import json
import math
import os
import re

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import MarianConfig, MarianMTModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("metrics")
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--schedule", choices=["inverse_sqrt", "linear"], default="inverse_sqrt")
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    config = MarianConfig.from_json_file(os.path.join(a.dump, "config.json"))
    config.dropout = config.attention_dropout = config.activation_dropout = 0.0
    model = MarianMTModel(config)
    missing, unexpected = model.load_state_dict(load_file(os.path.join(a.dump, "initial.safetensors")), strict=False)
    assert not unexpected, unexpected
    assert all("embed_tokens" in k or "lm_head" in k or "embed_positions" in k for k in missing), missing
    model.tie_weights()
    model.train()

    def no_decay(n):
        return n.endswith("bias") or "layer_norm" in n
    params = list(model.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in params if not no_decay(n)], "weight_decay": a.weight_decay},
                             {"params": [p for n, p in params if no_decay(n)], "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, a.beta2), eps=a.eps)

    def factor(s):  # Tandem's LRSchedule for update s (0-based)
        if s < a.warmup:
            return s / a.warmup
        if a.schedule == "inverse_sqrt":
            return math.sqrt(max(1, a.warmup) / max(1, s))
        return max(0.0, 1 - (s - a.warmup) / max(1, a.steps - a.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=a.label_smoothing)

    by_step = {}
    for f in glob.glob(os.path.join(a.dump, "step-*.safetensors")):
        s, r, m = map(int, re.match(r".*step-(\d+)-rank-(\d+)-micro-(\d+)", f).groups())
        by_step.setdefault(s, []).append(((r, m), f))
    ours = {}
    for line in open(a.metrics):
        rec = json.loads(line)
        if "loss" in rec and rec.get("rank", 0) == 0:
            ours[rec["step"]] = rec["loss"]

    theirs = {}
    for step in range(a.steps):
        micro = [f for _, f in sorted(by_step[step])]
        opt.zero_grad()
        total = 0.0
        for f in micro:
            b = load_file(f)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                           decoder_input_ids=b["decoder_input_ids"]).logits
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), b["labels"].reshape(-1))
            (loss / len(micro)).backward()
            total += loss.item() / len(micro)
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        sched.step()
        theirs[step + 1] = total
        if (step + 1) % 20 == 0:
            print(f"step {step + 1}: transformers {total:.5f}  tandem {ours.get(step + 1, float('nan')):.5f}", flush=True)

    steps = sorted(set(ours) & set(theirs))
    gap = np.array([ours[s] - theirs[s] for s in steps])
    rel = np.abs(gap) / np.array([theirs[s] for s in steps])
    summary = {"steps": len(steps), "mean_abs_gap": float(np.abs(gap).mean()), "max_abs_gap": float(np.abs(gap).max()),
               "max_relative_gap": float(rel.max()), "first_loss": [ours[steps[0]], theirs[steps[0]]],
               "last_loss": [ours[steps[-1]], theirs[steps[-1]]]}
    print(json.dumps(summary, indent=2))
    if a.out:
        json.dump({"summary": summary, "tandem": ours, "transformers": theirs}, open(a.out, "w"))


if __name__ == "__main__":
    main()
