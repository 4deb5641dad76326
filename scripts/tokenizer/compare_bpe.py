#!/usr/bin/env python3
"""Tandem's byte-level BPE (GPT-2's) against HF tokenizers, ids line by line.

    /opt/tandem-ref/bin/python scripts/tokenizer/compare_bpe.py --tandem .build/release/tandem \
        --train data/kjv/kjv.txt --size 8000 --corpus FILE [FILE...] [--work DIR]

1. Trains a tokenizer.json with HF tokenizers (ByteLevelBPETokenizer, as GPT-2's: no prefix space,
   `<|endoftext|>` special, min frequency 2) and one with `tandem vocab --type bpe` on --train, and
   reports how many of their merges agree (in order).
2. For each of the two tokenizer.json files, tokenizes every line of --corpus and the adversarial lines
   below with HF (`Tokenizer.encode`, no special tokens) and with `tandem tokenize --vocab tokenizer.json`,
   and prints lines compared, lines whose ids differ (with the first few) and both tokenizers' MB/s
   (HF's `encode_batch` on all cores the machine has; Tandem's one process, one thread).
3. Checks that transformers' GPT2TokenizerFast(tokenizer_file=...) and GPT2Tokenizer(vocab.json,
   merges.txt) load the Tandem-trained files and give the same ids on the adversarial lines.
Exits 1 when any line differs.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from tokenizers import ByteLevelBPETokenizer, Tokenizer

ADVERSARIAL = [
    "", " ", "  ", "\t", "a", " a", "  a", "a  ", "a \t b", "hello world", "Hello  World!  ", "   leading spaces",
    "trailing spaces   ", "tabs\tand\t\ttabs", "it's I'm you're we've they'll he'd can't", "IT'S I'M YOU'RE WE'VE THEY'LL HE'D",
    "'s 't 're 've 'm 'll 'd", "''s '''", "rock'n'roll o'clock", "don't' 'quote'", "1234567890 3.14159 1,000,000 2nd 3rd",
    "x1y2z3 abc123def", "½ ¾ ² ³ Ⅻ ⅷ 𝟘𝟙", "café naïve résumé", "cafe\u0301 nai\u0308ve", "Straße ǅemal ﬁne",
    "日本語のテキスト、漢字とかな。", "中文，標點符號！", "한국어 텍스트", "नमस्ते दुनिया, यह हिंदी है।", "क्षत्रिय ज्ञान",
    "مرحبا بالعالم", "שלום עולם", "Ελληνικά κείμενα", "Русский текст, ёжик", "emoji 😀😃🎉 family 👨‍👩‍👧‍👦 flag 🇪🇸",
    "skin 👍🏽 keycap 1️⃣", "zero\u200bwidth\u200cjoiners\u200d", "nbsp\u00a0here\u2003em\u2009thin", "line\u2028sep\u2029para",
    "\u0085next line", "ctrl\x01\x02\x7fchars", "replacement \ufffd char", "<|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ",
    "<|endoftext|><|endoftext|>", "<|endoftext", "endoftext|>", "mixed CASE WoRdS", "snake_case camelCase kebab-case",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\path", "$HOME/.config && ls -la | grep x",
    "def f(x): return x**2  # comment", "if (a != b) { return -1; }", "....!!!???---", "(((nested)))", "\"quoted\" 'single'",
    "  \t  mixed   \t whitespace  ", "a" * 300, "ab " * 100, "😀" * 50,
]


def hf_ids(tok, lines):
    t = time.perf_counter()
    out = [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]
    return out, time.perf_counter() - t


def tandem_ids(binary, path, lines):
    data = "".join(l + "\n" for l in lines).encode("utf-8", "surrogatepass")
    t = time.perf_counter()
    p = subprocess.run([binary, "tokenize", "--vocab", path], input=data, capture_output=True, check=True)
    seconds = time.perf_counter() - t
    rows = p.stdout.decode().split("\n")[:-1]
    return [[int(x) for x in r.split()] for r in rows], seconds


def compare(binary, path, lines, label):
    tok = Tokenizer.from_file(path)
    theirs, t_hf = hf_ids(tok, lines)
    ours, t_ours = tandem_ids(binary, path, lines)
    assert len(ours) == len(lines), f"tandem printed {len(ours)} lines for {len(lines)}"
    bad = [i for i in range(len(lines)) if ours[i] != theirs[i]]
    mb = sum(len(l.encode()) + 1 for l in lines) / 1e6
    print(f"{label}: {len(lines)} lines ({mb:.1f} MB), {len(bad)} differ; HF tokenizers {mb / t_hf:.1f} MB/s "
          f"(encode_batch, {os.cpu_count()} cores), tandem tokenize {mb / t_ours:.1f} MB/s (1 thread, process start included)")
    for i in bad[:5]:
        print(f"  line {i}: {lines[i]!r}\n    HF     {theirs[i][:40]}\n    tandem {ours[i][:40]}")
    return len(bad)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--size", type=int, default=8000)
    ap.add_argument("--corpus", nargs="+", required=True)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="bpe-compare-")
    os.makedirs(work, exist_ok=True)

    hf_dir, ours_dir = os.path.join(work, "hf"), os.path.join(work, "tandem")
    os.makedirs(hf_dir, exist_ok=True)
    t = time.perf_counter()
    hf = ByteLevelBPETokenizer(add_prefix_space=False)
    hf.train(a.train, vocab_size=a.size, min_frequency=2, special_tokens=["<|endoftext|>"])
    hf.save(os.path.join(hf_dir, "tokenizer.json"))
    hf_train = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([a.tandem, "vocab", "--type", "bpe", "--size", str(a.size), "--out", ours_dir] + a.train, check=True,
                   capture_output=True)
    ours_train = time.perf_counter() - t
    import json
    m_hf = json.load(open(os.path.join(hf_dir, "tokenizer.json")))["model"]["merges"]
    m_ours = json.load(open(os.path.join(ours_dir, "tokenizer.json")))["model"]["merges"]
    norm = lambda m: [x if isinstance(x, str) else " ".join(x) for x in m]
    m_hf, m_ours = norm(m_hf), norm(m_ours)
    same_prefix = next((i for i, (x, y) in enumerate(zip(m_hf, m_ours)) if x != y), min(len(m_hf), len(m_ours)))
    print(f"training on {', '.join(a.train)} to {a.size}: HF {len(m_hf)} merges in {hf_train:.1f} s, Tandem {len(m_ours)} in "
          f"{ours_train:.1f} s; the first {same_prefix} merges are the same, {len(set(m_hf) & set(m_ours))} in common")

    lines = []
    for path in a.corpus:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines += [l.rstrip("\n") for l in f]
    bad = 0
    for label, d in (("HF-trained tokenizer.json", hf_dir), ("Tandem-trained tokenizer.json", ours_dir)):
        path = os.path.join(d, "tokenizer.json")
        bad += compare(a.tandem, path, lines, label + ", real lines")
        bad += compare(a.tandem, path, ADVERSARIAL, label + ", adversarial lines")

    from transformers import GPT2Tokenizer, GPT2TokenizerFast
    fast = GPT2TokenizerFast(tokenizer_file=os.path.join(ours_dir, "tokenizer.json"))
    slow = GPT2Tokenizer(os.path.join(ours_dir, "vocab.json"), os.path.join(ours_dir, "merges.txt"))
    ours, _ = tandem_ids(a.tandem, os.path.join(ours_dir, "tokenizer.json"), ADVERSARIAL)
    fast_bad = sum(fast.encode(l) != o for l, o in zip(ADVERSARIAL, ours))
    slow_bad = sum(slow.encode(l) != o for l, o in zip(ADVERSARIAL, ours))
    print(f"transformers GPT2TokenizerFast(tokenizer.json): {fast_bad} of {len(ADVERSARIAL)} adversarial lines differ; "
          f"GPT2Tokenizer(vocab.json, merges.txt): {slow_bad} differ")
    sys.exit(1 if bad or fast_bad else 0)


if __name__ == "__main__":
    main()
