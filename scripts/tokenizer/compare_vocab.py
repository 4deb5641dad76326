#!/usr/bin/env python3
"""Trains a WordPiece vocabulary with HF tokenizers' BertWordPieceTokenizer.train (the reference of
`tandem vocab`) and compares it with a vocab.txt trained by Tandem on the same files: same size, how many
tokens both have, how many have the same id, and how the two tokenize the corpus.

Usage: python3 scripts/tokenizer/compare_vocab.py --size 8000 --ours OURS.txt INPUT...
"""
import argparse
import os
import tempfile

from tokenizers import BertWordPieceTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, required=True)
ap.add_argument("--ours", required=True)
ap.add_argument("inputs", nargs="+")
args = ap.parse_args()

hf = BertWordPieceTokenizer()
hf.train(args.inputs, vocab_size=args.size, show_progress=False)
with tempfile.TemporaryDirectory() as d:
    hf.save_model(d)
    theirs = open(os.path.join(d, "vocab.txt"), encoding="utf-8").read().split("\n")[:-1]
ours = open(args.ours, encoding="utf-8").read().split("\n")[:-1]

print(f"sizes: HF {len(theirs)}, Tandem {len(ours)}")
print(f"first 5 (specials): HF {theirs[:5]}, Tandem {ours[:5]}")
common = set(theirs) & set(ours)
print(f"tokens in both: {len(common)} ({100 * len(common) / max(len(theirs), 1):.2f}% of HF's)")
print(f"same token at the same id: {sum(a == b for a, b in zip(theirs, ours))}")
only_hf = [t for t in theirs if t not in common]
only_ours = [t for t in ours if t not in common]
print(f"only HF ({len(only_hf)}): {only_hf[:15]}")
print(f"only Tandem ({len(only_ours)}): {only_ours[:15]}")

mine = BertWordPieceTokenizer(args.ours)
lines = [l for f in args.inputs for l in open(f, encoding="utf-8", errors="replace").read().split("\n")]
n_hf = sum(len(e.ids) for e in hf.encode_batch(lines, add_special_tokens=False))
n_ours = sum(len(e.ids) for e in mine.encode_batch(lines, add_special_tokens=False))
print(f"tokens for the corpus: HF vocab {n_hf}, Tandem vocab {n_ours}")
