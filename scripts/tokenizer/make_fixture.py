#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures of Tests/TandemDataTests/Fixtures from HF tokenizers:

  parity.jsonl          one JSON object a line: "text" (or "hex" for bytes that are not valid UTF-8, decoded
                        by the reference with errors="replace"), "ids" (tokenizer.json of all-MiniLM-L6-v2,
                        no special tokens, no truncation or padding; BertWordPieceTokenizer(vocab.txt) gives the
                        same ids, checked here) and "cased" (BertWordPieceTokenizer(vocab.txt, lowercase=False)).
  tokenizer-small.json  MiniLM's tokenizer.json with only the tokens the first lines need (original ids) and
                        strip_accents=false, so that loading reads the normalizer flags from the file.
  small.jsonl           those first lines with the ids of tokenizer-small.json, alone and in a pair, and the
                        pair decoded.

Usage: python3 scripts/tokenizer/make_fixture.py VOCAB.txt TOKENIZER.json OUT_DIR
The Bible lines come from Debian's bible-kjv-text (`bible -l100000 "gen1:1-rev22:21"`).
"""
import json
import subprocess
import sys

from tokenizers import BertWordPieceTokenizer, Tokenizer

vocab_path, json_path, out = sys.argv[1:4]

full = Tokenizer.from_file(json_path)
full.no_truncation()
full.no_padding()
uncased = BertWordPieceTokenizer(vocab_path)
cased = BertWordPieceTokenizer(vocab_path, lowercase=False)

bible = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], capture_output=True, check=True).stdout
bible_lines = [l.decode("utf-8") for l in bible.split(b"\n") if l.strip()]
lines = bible_lines[:: len(bible_lines) // 240][:240]

adversarial = [
    "Héllo Wörld! Ça va? Crème brûlée, naïve façade, jalapeño, São Paulo, Øresund, Łódź.",
    "ÀÁÂÃÄÅ àáâãäå ÈÉÊË ÌÍÎÏ ÒÓÔÕÖ ÙÚÛÜ Ýÿ Ññ Çç ß ẞ ﬁ ﬂ Æ œ",
    "İstanbul ıi İI Σίσυφος ΣΑΣ ὈΔΥΣΣΕΎΣ Привет, мир! ЁЖИК",
    "e\u0301 a\u0308 n\u0303 o\u0328\u0301 combining: x\u0336y\u0336z\u0336 Z\u0351\u0308\u033e\u0346a\u0357\u0350l\u0352g\u0351o",
    "中文分词测试：我爱北京天安门。日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트 테스트입니다. 안녕하세요!",
    "𠀀𠀁 𪜀 𫝀 𫠠 𬺰 𮯠 豈更 丽丸 㐀㐁",
    "العربية: مرحبا بالعالم! هَذَا نَصٌّ مُشَكَّلٌ.",
    "हिन्दी पाठ: नमस्ते दुनिया। संस्कृतम्",
    "ภาษาไทย สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🥰 🫠 🦀 ✨ ☃ ★",
    "zero\u200bwidth\u200cjoiner\u200dmarks\ufeffbom\u2060word \u00adsoft\u00adhyphen",
    "controls:\x00nul\x01\x02\x07bell\x0bvt\x0cff\x1b[0mansi\x7fdel\x85nel\u2028ls\u2029ps end",
    "tabs\tand\r\nnewlines\rinside\x1c\x1d\x1e\x1f separators",
    "spaces\u00a0nbsp\u2000\u2001\u2002\u2003\u3000ideographic\u202fnarrow\u205fmath\u1680ogham",
    "replacement \ufffd char \ufffd\ufffd here",
    "private use \ue000\uf8ff \U000f0000 and unassigned \u0378 \U0001fb00 \U000e0001tag",
    "punctuation: «guillemets» „quotes“ ‘single’ — em – en … ¿¡ ¡Hola! ※ ‰ § ¶ · • † ‡ ′ ″ ‹›",
    "ascii punct !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ and symbols $ ^ ` | ~ + < = >",
    "math ∑∫√∞≠≤≥ ± × ÷ ½ ¼ ² ³ µ ° € £ ¥ ₹ ₿ © ® ™",
    "[CLS] special [SEP] tokens [MASK] in [PAD] text [UNK] and [cls] [Mask] [SEP[CLS]]",
    "don't won't it's I'm we've they're y'all rock'n'roll 1,000,000.50 3.14159 v2.0.1",
    "email@example.com https://example.org/path?q=1&r=2#frag C:\\Windows\\path",
    "fullwidth ＡＢＣ１２３！？ halfwidth ｶﾀｶﾅ superscript ⁵ ligature ǅ Ǆ ǆ",
    "mixed scripts: Hello世界Привет مرحبا नमस्ते 안녕 こんにちは Γειά",
    "unbreakableword" * 8,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 100 + " " + "b" * 101 + " " + "é" * 100 + " " + "é" * 101,
    "x" * 10000,
    "Ω" + "ab" * 5000 + " tail",
    "mathematical 𝐀𝐁𝐂 𝔄𝔅 𝒜 ℌ ℍ ℕ ℝ",
    "Vietnamese: Tiếng Việt có dấu: ẩ ẫ ậ ắ ằ ẳ ẵ ặ",
    "Hebrew: שָׁלוֹם עוֹלָם Greek tonos: ά έ ή ί ό ύ ώ ΐ ΰ",
    "Ethiopic ሰላም Georgian გამარჯობა Armenian Բարեւ Tamil வணக்கம் Bengali নমস্কার",
    "",
    "   ",
    "\u3000\u3000",
    "...!!!???",
    "ＣＯＭＰＡＴＩＢＩＬＩＴＹ ㍿ ㈱ ℡ ㎏ ﷺ",
    "Angstrom Å Kelvin K Ohm Ω micro µ",
]
invalid = [
    b"invalid \xff\xfe bytes",
    b"truncated \xe2\x82 euro and \xe2\x82\xac ok",
    b"overlong \xc0\xaf slash \xe0\x80\xaf and surrogate \xed\xa0\x80 end",
    b"lone continuation \x80\x81 and \xf4\x90\x80\x80 beyond",
    b"caf\xe9 latin-1 na\xefve",
    b"split\xf0\x9f\x98word",
]


def both(text):
    a = full.encode(text, add_special_tokens=False).ids
    b = uncased.encode(text, add_special_tokens=False).ids
    assert a == b, (text[:80], a[:20], b[:20])
    return a


with open(f"{out}/parity.jsonl", "w") as f:
    for text in lines + adversarial:
        rec = {"text": text, "ids": both(text), "cased": cased.encode(text, add_special_tokens=False).ids}
        f.write(json.dumps(rec) + "\n")
    for raw in invalid:
        text = raw.decode("utf-8", errors="replace")
        rec = {"hex": raw.hex(), "ids": both(text), "cased": cased.encode(text, add_special_tokens=False).ids}
        f.write(json.dumps(rec) + "\n")

small_lines = lines[:20] + adversarial[:5] + ["Ärger über Öl: É é ñ"]
spec = json.load(open(json_path))
spec["truncation"] = None
spec["padding"] = None
spec["normalizer"]["strip_accents"] = False
keep = set()
probe = Tokenizer.from_str(json.dumps(spec))
for text in small_lines:
    keep.update(probe.encode(text, add_special_tokens=False).ids)
keep.update(t["id"] for t in spec["added_tokens"])
inv = {v: k for k, v in spec["model"]["vocab"].items()}
# Dropping tokens can change how the reference splits a word, so its ids come from the small file itself.
spec["model"]["vocab"] = {inv[i]: i for i in sorted(keep)}
json.dump(spec, open(f"{out}/tokenizer-small.json", "w"), ensure_ascii=False)
small = Tokenizer.from_file(f"{out}/tokenizer-small.json")
with open(f"{out}/small.jsonl", "w") as f:
    for text in small_lines:
        pair = small.encode(text, "second segment", add_special_tokens=True).ids
        f.write(json.dumps({"text": text, "ids": small.encode(text, add_special_tokens=False).ids,
                            "pair": pair, "decoded": small.decode(pair)}) + "\n")
print(len(lines) + len(adversarial) + len(invalid), "parity lines,", len(small_lines), "small lines")
