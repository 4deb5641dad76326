#!/usr/bin/env python3
"""Fixtures for Tests/TandemDataTests/ByteLevelBPETests.swift, from HF tokenizers:

    /opt/tandem-ref/bin/python scripts/tokenizer/make_bpe_fixture.py

Writes into Tests/TandemDataTests/Fixtures/bpe/:
  train.txt        the first 700 verses of the King James Bible (bible-kjv-text), a verse a line, plus a few
                   lines of other scripts, the training text
  tokenizer.json   ByteLevelBPETokenizer (GPT-2's: no prefix space, `<|endoftext|>` special) trained on it by
                   HF tokenizers to 900 tokens, min frequency 2 (the test trains Tandem's BPETrainer on the
                   same text and expects the same vocabulary and merges)
  parity.jsonl     {"text", "ids"}: HF's ids (encode, no special tokens) for the training lines and the
                   adversarial lines of compare_bpe.py
"""
import json
import subprocess
import sys
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer, Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_bpe import ADVERSARIAL  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "Tests" / "TandemDataTests" / "Fixtures" / "bpe"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    verses = subprocess.run(["bible", "-l100000", "gen1:1-gen30:43"], capture_output=True, text=True, check=True).stdout
    lines = [l.strip() for l in verses.split("\n") if l.strip() and not l.strip().startswith("Genesis")][:700]
    lines = [l.split(" ", 1)[1] if l.split(" ", 1)[0].isdigit() else l for l in lines]
    lines += ["नमस्ते दुनिया, यह हिंदी है।", "日本語のテキスト、漢字とかな。", "emoji 😀😃🎉 family 👨‍👩‍👧‍👦", "café naïve résumé"]
    (OUT / "train.txt").write_text("".join(l + "\n" for l in lines), encoding="utf-8")
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train([str(OUT / "train.txt")], vocab_size=900, min_frequency=2, special_tokens=["<|endoftext|>"])
    tok.save(str(OUT / "tokenizer.json"))
    hf = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    with open(OUT / "parity.jsonl", "w", encoding="utf-8") as f:
        for text in lines[:200] + ADVERSARIAL:
            f.write(json.dumps({"text": text, "ids": hf.encode(text, add_special_tokens=False).ids}, ensure_ascii=False) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
