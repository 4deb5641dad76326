#!/usr/bin/env python3
"""The English corpus of launch/prepare-english: real text from Debian packages, a document per natural
unit, documents apart by one blank line (no blank line inside one), whitespace normalised, markup and
navigation dropped, repeated documents kept once, about 0.5% of the documents held out by a hash of their
text. Python 3 standard library only (Debian's python3); the trainer itself never runs Python.

    python3 scripts/data/english_corpus.py OUT_DIR

Writes OUT_DIR/train/SOURCE.txt, OUT_DIR/heldout/SOURCE.txt and OUT_DIR/SOURCES.md (documents, MB,
words and seconds per source). A source whose train file exists is skipped (delete it to redo it).
"""
import glob
import gzip
import hashlib
import html.parser
import os
import re
import subprocess
import sys
import time

HELD_OUT = 200  # one document in 200 (0.5%) goes to heldout/, by the SHA-1 of its text


CONTROL = re.compile(r".\x08|[\x00-\x08\x0b-\x1f\x7f]")


def clean(text):
    """Whitespace normalised: no trailing spaces, tabs as spaces, no blank lines (paragraphs one a line), no
    control characters (a character overstruck with a backspace, as old fortunes underline, is dropped with it)."""
    lines = []
    text = CONTROL.sub("", text.replace("\r", "").replace("\t", "    "))
    for line in text.split("\n"):
        line = re.sub(r"[ \u00a0]+$", "", line)
        if line.strip():
            lines.append(line)
    return "\n".join(lines)


def reflow(block):
    """Joins hard-wrapped lines of one paragraph."""
    return " ".join(l.strip() for l in block.split("\n") if l.strip())


# ---------------------------------------------------------------------------- sources: each yields documents


def gcide():
    """The GNU Collaborative International Dictionary of English (dict-gcide): an entry per document,
    senses a paragraph each, the [1913 Webster]-style source tags dropped."""
    with gzip.open("/usr/share/dictd/gcide.dict.dz", "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    entry = []
    for line in text.split("\n"):
        if line and not line[0].isspace() and entry:
            yield entry
            entry = []
        entry.append(line)
    if entry:
        yield entry


def gcide_documents():
    for entry in gcide():
        if entry[0].startswith("00-database"):
            continue
        paragraphs, current = [], []
        for line in entry:
            if re.fullmatch(r"\s*\[[^\]]*\]\s*", line):
                continue
            if not line.strip():
                if current:
                    paragraphs.append(reflow("\n".join(current)))
                current = []
            else:
                current.append(line)
        if current:
            paragraphs.append(reflow("\n".join(current)))
        doc = "\n".join(p for p in paragraphs if p)
        if len(doc) > 40:
            yield doc


def wordnet_documents():
    """WordNet 3.0 (wordnet-base): a synset per document, its words then its gloss."""
    for pos in ("noun", "verb", "adj", "adv"):
        with open(f"/usr/share/wordnet/data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                n = int(fields[3], 16)
                words = [fields[4 + 2 * i].replace("_", " ") for i in range(n)]
                words = [re.sub(r"\(\w+\)$", "", w) for w in words]
                yield f"{', '.join(words)}: {gloss.strip()}"


def bible_kjv_documents():
    """The King James Version (bible-kjv-text): a chapter per document, a verse a line."""
    out = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    chapter = []
    for line in out.split("\n"):
        if re.fullmatch(r"[1-3]? ?[A-Za-z ]+ [0-9]+", line.strip()):
            if chapter:
                yield "\n".join(chapter)
            chapter = []
        elif line.strip():
            chapter.append(re.sub(r"^ *[0-9]+ ", "", line).strip())
    if chapter:
        yield "\n".join(chapter)


def bible_web_documents():
    """The World English Bible (sword-text-web, SWORD module engWEB2015eb through diatheke): a chapter per
    document, a verse a line, OSIS markup dropped."""
    out = subprocess.run(["diatheke", "-b", "engWEB2015eb", "-f", "plaintext", "-k", "Genesis 1:1-Revelation 22:21"],
                         capture_output=True, text=True, check=True).stdout
    chapter, key = [], None
    for line in out.split("\n"):
        m = re.match(r"^(.+?) (\d+):(\d+): ?(.*)$", line)
        if not m:
            continue
        if (m.group(1), m.group(2)) != key and chapter:
            yield "\n".join(chapter)
            chapter = []
        key = (m.group(1), m.group(2))
        verse = re.sub(r"<[^>]*>", "", m.group(4))
        verse = re.sub(r"\s+", " ", verse).strip()
        if verse:
            chapter.append(verse)
    if chapter:
        yield "\n".join(chapter)


def fortunes_documents():
    """The fortunes and fortunes-min packages: a fortune per document."""
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if path.endswith(".dat") or os.path.islink(path) or os.path.isdir(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for item in f.read().split("\n%\n"):
                if item.strip().strip("%"):
                    yield item.strip("%\n")


RST_DIRECTIVE = re.compile(r"^\s*\.\. ")
RST_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+_:.])\1{2,}\s*$")


def rst_document(text):
    """reStructuredText as prose: heading underlines, comments and directive lines dropped, inline
    roles unwrapped (:ref:`text <target>` -> text)."""
    lines = []
    for line in text.split("\n"):
        if RST_UNDERLINE.match(line) or RST_DIRECTIVE.match(line) or line.strip().startswith(":") and line.strip().endswith(":"):
            continue
        line = re.sub(r":[a-z:+-]+:`([^`<]*?)(?: <[^>]*>)?`", r"\1", line)
        line = re.sub(r"``([^`]*)``", r"\1", line)
        line = re.sub(r"`([^`<]*?)(?: <[^>]*>)?`_*", r"\1", line)
        lines.append(line)
    return clean("\n".join(lines))


def read_maybe_gz(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def linux_documents():
    """The Linux kernel's documentation (linux-doc-6.1): a reStructuredText or text file per document."""
    root = "/usr/share/doc/linux-doc-6.1/Documentation"
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if re.search(r"\.(rst|txt)(\.gz)?$", name):
                yield rst_document(read_maybe_gz(os.path.join(dirpath, name)))


def python_documents():
    """Python 3.11's documentation (python3.11-doc): a reStructuredText source per document."""
    for path in sorted(glob.glob("/usr/share/doc/python3.11/html/_sources/**/*.txt", recursive=True)):
        yield rst_document(read_maybe_gz(path))


# The packages whose Info manuals the corpus reads (launch/prepare-english installs them): a fixed list, so
# that the corpus does not depend on what else a machine has installed (r-doc-info or maxima-doc, say,
# which the scientific corpus of launch/prepare-science reads).
INFO_PACKAGES = ["automake", "bc", "bzip2-doc", "coreutils", "diffutils", "ed", "findutils", "gettext", "gnu-standards",
                 "gnupg", "grep", "gzip", "info", "libffi-dev", "libgpg-error-dev", "libtasn1-doc", "m4", "nettle-dev",
                 "octave-doc", "readline-common", "sed", "time", "wget", "xemacs21-support"]


def info_paths():
    """The files directly in /usr/share/info that INFO_PACKAGES install (dpkg -L), but the directory node
    and Python's manual (read from its reStructuredText sources: python-doc)."""
    out = subprocess.run(["dpkg", "-L"] + INFO_PACKAGES, capture_output=True, text=True).stdout
    return sorted({p for p in out.split("\n") if os.path.dirname(p) == "/usr/share/info" and os.path.isfile(p)
                   and not p.endswith("dir") and not os.path.basename(p).startswith("python")})


def info_documents():
    """GNU Info manuals of INFO_PACKAGES (octave-doc, gnu-standards, coreutils, ...: /usr/share/info): a
    node per document, its File/Node header and menus dropped."""
    for path in info_paths():
        for node in read_maybe_gz(path).split("\x1f"):
            lines = node.split("\n")
            body, in_menu = [], False
            for line in lines:
                if line.startswith("File: ") or line.startswith("Tag Table:") or line.startswith("End Tag Table"):
                    continue
                if line.startswith("* Menu:"):
                    in_menu = True
                    continue
                if in_menu and (line.startswith("* ") or not line.strip()):
                    continue
                in_menu = False
                if RST_UNDERLINE.match(line):
                    continue
                body.append(line)
            doc = clean("\n".join(body))
            if len(doc) > 80 and not doc.startswith("Indirect:"):
                yield doc


def perl_documents():
    """Perl's manual (perl-doc): a POD page per document, through pod2text."""
    for path in sorted(glob.glob("/usr/share/perl/*/pod/*.pod")):
        out = subprocess.run(["pod2text", "-l", path], capture_output=True, text=True, errors="replace").stdout
        yield clean(out)


def git_documents():
    """Git's manual pages and guides as AsciiDoc (git-doc): a file per document."""
    for path in sorted(glob.glob("/usr/share/doc/git-doc/*.txt")):
        text = read_maybe_gz(path)
        text = "\n".join(l for l in text.split("\n") if not RST_UNDERLINE.match(l) and not l.startswith("include::")
                         and not l.startswith("ifdef::") and not l.startswith("endif::"))
        yield clean(text)


class HTMLText(html.parser.HTMLParser):
    """Visible text of a page's main content: scripts, styles, navigation, headers and footers dropped,
    block elements as line breaks."""
    SKIP = {"script", "style", "nav", "header", "footer", "head", "noscript", "button", "form"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd", "table", "section",
             "blockquote", "hr", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip, self.pre = [], 0, 0

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag in self.SKIP or re.search(r"\b(navheader|navfooter|related|sphinxsidebar|footer|header|breadcrumb)\b", cls):
            self.skip += 1
            self._skipped_tag = tag
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if self.skip and (tag in self.SKIP or tag == getattr(self, "_skipped_tag", None)):
            self.skip -= 1
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))


def rst_sources(root):
    """A Sphinx project's reStructuredText sources (html/_sources/*.txt): a file per document."""
    def gen():
        for path in sorted(glob.glob(root + "/**/*.txt", recursive=True)):
            yield rst_document(read_maybe_gz(path))
    return gen


def markdown_documents(pattern):
    """Markdown files, a file per document: link targets and HTML comments dropped."""
    def gen():
        for path in sorted(glob.glob(pattern)):
            if os.path.basename(path).startswith("all."):
                continue
            text = read_maybe_gz(path)
            text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
            text = re.sub(r"^\[[^\]]+\]: .*$", "", text, flags=re.M)
            text = re.sub(r"\[([^\]]+)\]\[[^\]]*\]|\[([^\]]+)\]\([^)]*\)", lambda m: m.group(1) or m.group(2), text)
            yield clean(text)
    return gen


def html_document(path):
    p = HTMLText()
    with open(path, encoding="utf-8", errors="replace") as f:
        p.feed(f.read())
    return clean("\n".join(l.strip() for l in "".join(p.parts).split("\n")))


def html_documents(pattern):
    """The pages matching `pattern` (a glob; {a,b} alternatives allowed), a page per document."""
    m = re.search(r"\{([^}]*)\}", pattern)
    patterns = [pattern[:m.start()] + alt + pattern[m.end():] for alt in m.group(1).split(",")] if m else [pattern]

    def gen():
        for p in patterns:
            for path in sorted(glob.glob(p, recursive=True)):
                yield html_document(path)
    return gen


SOURCES = [
    ("gcide", "dict-gcide", "GNU Collaborative International Dictionary of English, GPL-3+", gcide_documents),
    ("wordnet", "wordnet-base", "WordNet 3.0 synsets and glosses, WordNet licence", wordnet_documents),
    ("bible-kjv", "bible-kjv-text", "King James Version, public domain", bible_kjv_documents),
    ("bible-web", "sword-text-web", "World English Bible, public domain", bible_web_documents),
    ("fortunes", "fortunes, fortunes-min", "fortune cookies, BSD-4-clause", fortunes_documents),
    ("linux-doc", "linux-doc-6.1", "Linux kernel documentation, GPL-2", linux_documents),
    ("python-doc", "python3.11-doc", "Python 3.11 documentation, PSF licence", python_documents),
    ("info", "octave-doc, gnu-standards, coreutils and 21 other packages' Info manuals (`INFO_PACKAGES` in the script)", "GFDL / GPL", info_documents),
    ("perl-doc", "perl-doc", "Perl 5.36 manual, Artistic / GPL", perl_documents),
    ("git-doc", "git-doc", "Git documentation, GPL-2", git_documents),
    ("postgresql-doc", "postgresql-doc-15", "PostgreSQL 15 manual, PostgreSQL licence",
     html_documents("/usr/share/doc/postgresql-doc-15/html/*.html")),
    ("scipy-doc", "python-scipy-doc", "SciPy 1.10 reference, BSD-3-clause",
     html_documents("/usr/share/doc/python-scipy-doc/html/**/*.html")),
    ("libreoffice-help", "libreoffice-help-en-us", "LibreOffice help, MPL-2.0",
     html_documents("/usr/share/libreoffice/help/en-US/**/*.html")),
    ("debian-handbook", "debian-handbook", "The Debian Administrator's Handbook, CC-BY-SA 3.0 / GPL-2+",
     html_documents("/usr/share/doc/debian-handbook/html/en-US/*.html")),
    ("django-doc", "python-django-doc", "Django 3.2 documentation, BSD-3-clause",
     html_documents("/usr/share/doc/python-django-doc/html/**/*.html")),
    ("sympy-doc", "python-sympy-doc", "SymPy documentation, BSD-3-clause", rst_sources("/usr/share/doc/python-sympy-doc/html/_sources")),
    ("pandas-doc", "python-pandas-doc", "pandas documentation, BSD-3-clause", rst_sources("/usr/share/doc/python-pandas-doc/html/_sources")),
    ("gimp-help", "gimp-help-en", "GIMP user manual, GFDL", html_documents("/usr/share/gimp/2.0/help/en/*.html")),
    ("sqlite-doc", "sqlite3-doc", "SQLite documentation, public domain", html_documents("/usr/share/doc/sqlite3/*.html")),
    ("rust-doc", "rust-doc", "The Rust book, reference and Rust by Example, MIT / Apache-2.0",
     html_documents("/usr/share/doc/rust-doc/html/{book,reference,rust-by-example,cargo,nomicon}/**/*.html")),
    ("erlang-doc", "erlang-doc", "Erlang/OTP 25 documentation, Apache-2.0", html_documents("/usr/share/doc/erlang-doc/**/*.html")),
    ("nodejs-doc", "nodejs-doc", "Node.js 18 API documentation (Markdown), MIT", markdown_documents("/usr/share/doc/nodejs/api/*.md.gz")),
    ("openjdk-doc", "openjdk-17-doc", "Java SE 17 API specification (java.base, java.desktop, java.sql, java.xml, java.logging, java.management, java.net.http), GPL-2 with Classpath exception",
     html_documents(os.path.realpath("/usr/share/doc/openjdk-17-doc/api")
                    + "/{java.base,java.desktop,java.sql,java.xml,java.logging,java.management,java.net.http}/**/*.html")),
]


def main():
    if sys.argv[1:] == ["--info-packages"]:  # for launch/prepare-english, which installs them
        print(" ".join(INFO_PACKAGES))
        return
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "train"), exist_ok=True)
    os.makedirs(os.path.join(out, "heldout"), exist_ok=True)
    seen = set()
    rows = []
    for name, package, licence, documents in SOURCES:
        train_path, held_path = os.path.join(out, "train", name + ".txt"), os.path.join(out, "heldout", name + ".txt")
        stats_path = os.path.join(out, "train", name + ".stats")
        if os.path.exists(stats_path):
            rows.append(open(stats_path).read().strip())
            print(f"{name}: already there ({train_path})", flush=True)
            continue
        start = time.time()
        docs = held = words = size = duplicates = 0
        with open(train_path + ".tmp", "w", encoding="utf-8") as train, open(held_path + ".tmp", "w", encoding="utf-8") as heldout:
            for doc in documents():
                doc = clean(doc)
                if len(doc) < 20:
                    continue
                digest = hashlib.sha1(doc.encode("utf-8")).digest()
                if digest in seen:
                    duplicates += 1
                    continue
                seen.add(digest)
                target = heldout if int.from_bytes(digest[:8], "big") % HELD_OUT == 0 else train
                target.write(doc + "\n\n")
                if target is heldout:
                    held += 1
                else:
                    docs += 1
                    words += len(doc.split())
                    size += len(doc.encode("utf-8")) + 2
        if docs == 0:  # the package is missing or its layout changed: a silent hole in the corpus otherwise
            os.remove(train_path + ".tmp")
            os.remove(held_path + ".tmp")
            sys.exit(f"{name}: no documents: is the Debian package {package} installed (and its files where the script reads them)?")
        os.replace(train_path + ".tmp", train_path)
        os.replace(held_path + ".tmp", held_path)
        seconds = time.time() - start
        row = f"| {name} | {package} | {licence} | {docs} | {held} | {size / 1e6:.1f} | {words} | {duplicates} | {seconds:.0f} |"
        with open(stats_path, "w") as f:
            f.write(row + "\n")
        rows.append(row)
        print(f"{name}: {docs} documents ({size / 1e6:.1f} MB, {words} words) + {held} held out, {duplicates} repeats dropped, "
              f"{seconds:.0f} s", flush=True)
    total = sum(float(r.split("|")[6]) for r in rows)
    with open(os.path.join(out, "SOURCES.md"), "w") as f:
        f.write("| source | Debian package | what, licence | documents | held out | MB (train) | words | repeats dropped | seconds |\n")
        f.write("|---|---|---|---|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")
        f.write(f"\n{total:.1f} MB of training text in {out}/train\n")
    print(f"total {total:.1f} MB of training text in {out}/train (table in {out}/SOURCES.md)")


if __name__ == "__main__":
    main()
