#!/usr/bin/env python3
"""Tokenizes every line of a corpus with HF tokenizers (the tokenizer.json, and the vocab.txt through
BertWordPieceTokenizer) and with a Tandem command that reads stdin lines and prints one line of
space-separated ids each (`tandem tokenize --vocab VOCAB`, or `.build-data/data-tool tokenize VOCAB` from build_data_tool.sh), then
counts the lines whose ids differ and prints the throughput of each.

The corpus is read as bytes and split on b"\\n"; each line is decoded for the reference with
errors="replace" (invalid UTF-8 becomes U+FFFD, which BertNormalizer's clean_text removes).

Usage:
  python3 scripts/tokenizer/compare.py --vocab V.txt --json T.json --corpus FILE --cmd ".build-data/data-tool tokenize V.txt"
"""
import argparse
import shlex
import subprocess
import sys
import time

from tokenizers import BertWordPieceTokenizer, Tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--vocab", required=True)
ap.add_argument("--json", required=True)
ap.add_argument("--corpus", required=True)
ap.add_argument("--cmd", required=True, help="Tandem tokenize command line (stdin lines -> ids lines)")
ap.add_argument("--cased", action="store_true",
                help="compare with BertWordPieceTokenizer(vocab.txt, lowercase=False) instead; the command must be cased too")
ap.add_argument("--show", type=int, default=5, help="mismatching lines to print")
args = ap.parse_args()

raw = open(args.corpus, "rb").read()
if raw.endswith(b"\n"):
    raw = raw[:-1]
raw_lines = raw.split(b"\n")
lines = [l.decode("utf-8", errors="replace") for l in raw_lines]
mb = len(raw) / 1e6

full = Tokenizer.from_file(args.json)
full.no_truncation()
full.no_padding()
from_vocab = BertWordPieceTokenizer(args.vocab, lowercase=not args.cased)
if args.cased:
    full = from_vocab

t = time.perf_counter()
ref_json = [e.ids for e in full.encode_batch(lines, add_special_tokens=False)]
batch_s = time.perf_counter() - t
t = time.perf_counter()
ref_json_serial = [full.encode(l, add_special_tokens=False).ids for l in lines]
serial_s = time.perf_counter() - t
ref_vocab = [e.ids for e in from_vocab.encode_batch(lines, add_special_tokens=False)]
assert ref_json == ref_json_serial

t = time.perf_counter()
proc = subprocess.run(shlex.split(args.cmd), input=raw + b"\n", capture_output=True, check=True)
tandem_s = time.perf_counter() - t
sys.stderr.write(proc.stderr.decode())
ours = [[int(x) for x in l.split()] for l in proc.stdout.decode().split("\n")[: len(lines)]]

json_vs_vocab = sum(a != b for a, b in zip(ref_json, ref_vocab))
bad = [i for i, (a, b) in enumerate(zip(ref_json, ours)) if a != b]
if len(ours) != len(lines):
    print(f"tandem printed {len(ours)} lines for {len(lines)}")
for i in bad[: args.show]:
    print(f"line {i + 1}: {lines[i][:120]!r}\n  hf:     {ref_json[i][:40]}\n  tandem: {ours[i][:40]}")
print(f"lines: {len(lines)}, bytes: {len(raw)}")
print(f"HF tokenizer.json vs HF vocab.txt: {json_vs_vocab} lines differ")
print(f"Tandem vs HF: {len(bad)} lines differ")
print(f"HF tokenizers encode (1 thread, python loop): {mb / serial_s:.1f} MB/s; encode_batch (all cores): {mb / batch_s:.1f} MB/s")
print(f"Tandem command, wall time including process start and I/O: {mb / tandem_s:.1f} MB/s")
sys.exit(1 if bad or len(ours) != len(lines) else 0)
