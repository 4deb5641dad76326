#!/usr/bin/env python3
"""Trains transformers' BertForPreTraining on the exact batches and masks a Tandem run used, from the
same initial weights, and compares the per-step losses.

    tandem train CONFIG --set train.dump_batches=DUMP --set model.hidden_dropout_prob=0 \
        --set model.attention_probs_dropout_prob=0 --set checkpoint.dir=RUN ...
    python scripts/parity/bert_training_parity.py DUMP RUN/metrics.jsonl --lr 1e-3 --warmup 30 --steps 500

The optimizer mirrors Tandem's: AdamW (betas 0.9/0.999, eps 1e-6, weight decay 0.01 on everything but
biases and LayerNorm parameters), HF's linear warm-up and decay, global gradient-norm clipping at 1.0,
and the step's loss is the mean over micro-batches of each micro-batch's mean loss, as Tandem averages
over ranks and accumulation steps. Dropout must be off in both runs (its random draws differ).
"""
import argparse
import glob
import json
import os
import re

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForPreTraining, get_linear_schedule_with_warmup


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("metrics")
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    config = BertConfig.from_json_file(os.path.join(a.dump, "config.json"))
    config.hidden_dropout_prob = 0.0
    config.attention_probs_dropout_prob = 0.0
    model = BertForPreTraining(config)
    state = load_file(os.path.join(a.dump, "initial.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all("decoder" in k for k in missing), missing
    model.tie_weights()
    model.train()

    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.999), eps=a.eps)
    sched = get_linear_schedule_with_warmup(opt, a.warmup, a.steps)

    files = glob.glob(os.path.join(a.dump, "step-*.safetensors"))
    by_step = {}
    for f in files:
        s, r, m = map(int, re.match(r".*step-(\d+)-rank-(\d+)-micro-(\d+)", f).groups())
        by_step.setdefault(s, []).append(((r, m), f))

    ours = {}
    for line in open(a.metrics):
        rec = json.loads(line)
        if "loss" in rec:
            ours[rec["step"]] = rec["loss"]

    theirs = {}
    for step in range(a.steps):
        micro = [f for _, f in sorted(by_step[step])]
        opt.zero_grad()
        total = 0.0
        for f in micro:
            b = load_file(f)
            out = model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"],
                        labels=b["labels"], next_sentence_label=b["next_sentence_label"])
            (out.loss / len(micro)).backward()
            total += out.loss.item() / len(micro)
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        sched.step()
        theirs[step + 1] = total
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}: transformers {total:.4f}  tandem {ours.get(step + 1, float('nan')):.4f}", flush=True)

    steps = sorted(set(ours) & set(theirs))
    gap = np.array([ours[s] - theirs[s] for s in steps])
    rel = np.abs(gap) / np.array([theirs[s] for s in steps])
    summary = {"steps": len(steps), "mean_abs_gap": float(np.abs(gap).mean()), "max_abs_gap": float(np.abs(gap).max()),
               "max_relative_gap": float(rel.max()), "first_loss": [ours[steps[0]], theirs[steps[0]]],
               "last_loss": [ours[steps[-1]], theirs[steps[-1]]],
               "last_50_mean": [float(np.mean([ours[s] for s in steps[-50:]])), float(np.mean([theirs[s] for s in steps[-50:]]))]}
    print(json.dumps(summary, indent=2))
    if a.out:
        json.dump({"summary": summary, "tandem": ours, "transformers": theirs}, open(a.out, "w"))


if __name__ == "__main__":
    main()
