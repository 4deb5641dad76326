#!/usr/bin/env python3
"""Reads a token shard directory written by `tandem prepare-text` (layout in Sources/TandemData/TokenShards.swift)
independently of the Swift reader: checks magic, version, sizes and the manifest's SHA-256s, and, given the
input files (prepared without an eval fraction), that every sentence equals HF tokenizers' ids of its line and
that documents break at blank lines.

Usage: python3 scripts/tokenizer/check_shards.py --vocab V.txt --dir SHARDS INPUT...   (inputs in shard order)
"""
import argparse
import hashlib
import json
import os
import struct
import sys

from tokenizers import BertWordPieceTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--vocab", required=True)
ap.add_argument("--dir", required=True)
ap.add_argument("inputs", nargs="*")
args = ap.parse_args()

manifest = json.load(open(os.path.join(args.dir, "manifest.json")))
vocab_bytes = "".join(t + "\n" for t in open(args.vocab, encoding="utf-8").read().split("\n")[:-1]).encode()
assert manifest["vocab_hash"] == hashlib.sha256(vocab_bytes).hexdigest(), "vocab hash"
tok = BertWordPieceTokenizer(args.vocab)

documents = []
for shard in manifest["shards"]:
    b = open(os.path.join(args.dir, shard["name"] + ".bin"), "rb").read()
    x = open(os.path.join(args.dir, shard["name"] + ".idx"), "rb").read()
    assert hashlib.sha256(b).hexdigest() == shard["bin_sha256"] and hashlib.sha256(x).hexdigest() == shard["idx_sha256"]
    assert b[:8] == b"TDTOKBIN" and x[:8] == b"TDTOKIDX"
    version, width = struct.unpack_from("<II", b, 8)
    _, width2, T, S, D = struct.unpack_from("<IIQQQ", x, 8)
    assert version == 1 and width == width2 == manifest["token_bytes"]
    assert (T, S, D) == (shard["tokens"], shard["sentences"], shard["documents"])
    assert len(b) == 16 + width * T and len(x) == 40 + 8 * (S + 1) + 8 * (D + 1)
    sent = struct.unpack_from(f"<{S + 1}Q", x, 40)
    docs = struct.unpack_from(f"<{D + 1}Q", x, 40 + 8 * (S + 1))
    ids = struct.unpack_from(f"<{T}{'H' if width == 2 else 'I'}", b, 16)
    for d in range(D):
        documents.append([list(ids[sent[s]:sent[s + 1]]) for s in range(docs[d], docs[d + 1])])
print(f"{len(manifest['shards'])} shards, {manifest['tokens']} tokens, {manifest['sentences']} sentences, "
      f"{len(documents)} documents: headers, sizes and checksums ok")

if args.inputs:
    expected = []
    for path in args.inputs:
        current = []
        for raw in open(path, "rb").read().split(b"\n"):
            if raw.strip(b" \t\r") == b"":
                if current:
                    expected.append(current)
                current = []
                continue
            line_ids = tok.encode(raw.decode("utf-8", errors="replace"), add_special_tokens=False).ids
            if line_ids:
                current.append(line_ids)
        if current:
            expected.append(current)
    bad = sum(a != b for a, b in zip(expected, documents)) + abs(len(expected) - len(documents))
    print(f"documents differing from HF tokenization of the inputs: {bad} of {len(expected)}")
    sys.exit(1 if bad else 0)
