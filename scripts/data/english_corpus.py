#!/usr/bin/env python3
"""The English corpus of launch/prepare-english: real text from Debian packages, a document per natural
unit, documents apart by one blank line (no blank line inside one), whitespace normalised, markup and
navigation dropped, repeated documents kept once, about 0.5% of the documents held out by a hash of their
text. Python 3 standard library only (Debian's python3); the trainer itself never runs Python.

    python3 scripts/data/english_corpus.py OUT_DIR

Writes OUT_DIR/train/SOURCE.txt, OUT_DIR/heldout/SOURCE.txt and OUT_DIR/SOURCES.md (documents, MB,
words and seconds per source) through corpus.write_corpus, which the scientific corpus shares. A source
whose stats file exists is skipped (delete OUT_DIR/train/SOURCE.stats to redo it).
"""
import glob
import gzip
import os
import re
import subprocess
import sys

from corpus import (RST_UNDERLINE, clean, html_documents, info_files, info_nodes, markdown_documents, read_maybe_gz, reflow,
                    rst_document, rst_sources, write_corpus)


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


def info_documents():
    """GNU Info manuals of INFO_PACKAGES (octave-doc, gnu-standards, coreutils, ...: /usr/share/info): a
    node per document, its File/Node header and menus dropped."""
    for path in info_files(INFO_PACKAGES):
        yield from info_nodes(path)


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
    write_corpus(sys.argv[1], SOURCES)


if __name__ == "__main__":
    main()
