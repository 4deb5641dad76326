"""What the corpus scripts share (scripts/data/english_corpus.py, scripts/data/science_corpus.py): text
cleaning, reStructuredText, Info, HTML and Markdown as plain text, and the writer of the corpus directory
(a document per natural unit, documents apart by one blank line and no blank line inside one, repeated
documents kept once, about 0.5% of the documents held out by a hash of their text). Python 3 standard
library only (Debian's python3).
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


def info_files(packages):
    """The files directly in /usr/share/info that `packages` install (dpkg -L), but the directory node
    and Python's manual (which the English corpus reads from its reStructuredText sources: python-doc)."""
    out = subprocess.run(["dpkg", "-L"] + list(packages), capture_output=True, text=True).stdout
    return sorted({p for p in out.split("\n") if os.path.dirname(p) == "/usr/share/info" and os.path.isfile(p)
                   and not p.endswith("dir") and not os.path.basename(p).startswith("python")})


def info_nodes(path):
    """The nodes of one GNU Info file (gzipped or not) as documents: the File/Node header, tag tables
    and menus dropped; nodes shorter than 80 characters and indirect tables skipped."""
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


def html_documents(pattern, skip=None):
    """The pages matching `pattern` (a glob; {a,b} alternatives allowed), a page per document; pages whose
    path matches the regular expression `skip` (Sphinx's highlighted source code under _modules/, say) left out."""
    m = re.search(r"\{([^}]*)\}", pattern)
    patterns = [pattern[:m.start()] + alt + pattern[m.end():] for alt in m.group(1).split(",")] if m else [pattern]

    def gen():
        for p in patterns:
            for path in sorted(glob.glob(p, recursive=True)):
                if skip is None or not re.search(skip, path):
                    yield html_document(path)
    return gen


TABLE_HEADER = ("| source | Debian package | what, licence | documents | held out | MB (train) | words | repeats dropped | seconds |\n"
                "|---|---|---|---|---|---|---|---|---|\n")


def write_corpus(out, sources):
    """Writes OUT/train/NAME.txt and OUT/heldout/NAME.txt for each (name, package, licence, documents) of
    `sources` (`documents()` yields a source's documents), and OUT/SOURCES.md, a row per source (documents,
    held out, MB, words, repeats dropped, seconds) and the total MB. A document is cleaned, kept when 20
    characters or longer and not a repeat of one seen before in any source, and held out when the SHA-1 of its
    text is 0 modulo HELD_OUT. A source whose OUT/train/NAME.stats exists is skipped (delete it to redo it); a
    source with no documents stops the run, naming its package."""
    os.makedirs(os.path.join(out, "train"), exist_ok=True)
    os.makedirs(os.path.join(out, "heldout"), exist_ok=True)
    seen = set()
    rows = []
    for name, package, licence, documents in sources:
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
        f.write(TABLE_HEADER)
        f.write("\n".join(rows) + "\n")
        f.write(f"\n{total:.1f} MB of training text in {out}/train\n")
    print(f"total {total:.1f} MB of training text in {out}/train (table in {out}/SOURCES.md)")
