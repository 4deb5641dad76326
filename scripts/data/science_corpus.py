#!/usr/bin/env python3
"""The scientific and technical corpus of launch/prepare-science (SciBERT's domain vocabulary and its held-out
text): the manuals of R, Maxima, gnuplot and GAP and the documentation of statsmodels, scikit-learn, Astropy,
mpmath and Biopython, from Debian packages, as the English corpus is made (scripts/data/corpus.py): a
document per Info node, HTML page or tutorial section, documents apart by one blank line, repeats dropped,
0.5% of the documents held out by the SHA-1 of their text. Python 3 standard library only.

    python3 scripts/data/science_corpus.py OUT_DIR
    python3 scripts/data/science_corpus.py --packages     # the Debian packages it reads, for the launch script

No package of the English corpus (launch/prepare-english: octave-doc, python-scipy-doc, python-sympy-doc,
python-pandas-doc among them) is read here, so the science held-out text is not text that a BERT trained on
the English corpus has seen, and continued pretraining is not flattered by it.

Writes OUT_DIR/train/SOURCE.txt, OUT_DIR/heldout/SOURCE.txt and OUT_DIR/SOURCES.md; a source whose
OUT_DIR/train/SOURCE.stats exists is skipped (delete it to redo it).
"""
import re
import sys

from corpus import clean, html_documents, info_files, info_nodes, read_maybe_gz, write_corpus


def info_manuals(packages):
    """The Info manuals that `packages` install, a node per document."""
    def gen():
        for path in info_files(packages):
            yield from info_nodes(path)
    return gen


# A section heading of the Biopython tutorial's text version: "Chapter 9  Accessing NCBI's Entrez databases"
# or "9.13.1 Parsing Medline records".
BIOPYTHON_HEADING = re.compile(r"^(Chapter [0-9]+  |[0-9]+(\.[0-9]+)+ )\S")


def biopython_documents():
    """The Biopython tutorial (python-biopython-doc, Doc/Tutorial.txt.gz, HeVeA's text rendering): a section
    per document, the table of contents before chapter 1 dropped and the << >> code-block marks removed."""
    lines = read_maybe_gz("/usr/share/doc/python-biopython-doc/Doc/Tutorial.txt.gz").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Chapter 1 "))
    section = []
    for line in lines[start:]:
        if BIOPYTHON_HEADING.match(line) and section:
            yield clean("\n".join(section))
            section = []
        section.append(re.sub(r"^<<|^>>$", "", line))
    if section:
        yield clean("\n".join(section))


# Sphinx's pages of highlighted source code (viewcode): Python, not prose about the science.
SPHINX_SOURCE_CODE = r"/_modules/"

SOURCES = [
    ("r-manuals", "r-doc-info", "R's manuals (An Introduction to R, the Language Definition, Writing R Extensions, "
     "Data Import/Export, Installation and Administration, Internals, the FAQ), GPL-2+",
     info_manuals(["r-doc-info"])),
    ("maxima", "maxima-doc", "Maxima 5.46 manual (computer algebra), GPL-2", info_manuals(["maxima-doc"])),
    ("gnuplot", "gnuplot-doc", "gnuplot 5.4 manual, gnuplot licence", info_manuals(["gnuplot-doc"])),
    ("gap", "gap-doc", "GAP 4.12 reference manual, tutorial and HPC-GAP manual (computational group theory), GPL-2+",
     html_documents("/usr/share/gap/doc/{ref,tut,hpc}/chap*[0-9].html")),
    ("mpmath-doc", "python-mpmath-doc", "mpmath 1.2 documentation (arbitrary-precision arithmetic, special functions), BSD-3-clause",
     html_documents("/usr/share/doc/python-mpmath-doc/html/**/*.html")),
    ("biopython-doc", "python-biopython-doc", "Biopython 1.80 tutorial (bioinformatics), Biopython licence",
     biopython_documents),
    ("sklearn-doc", "python-sklearn-doc", "scikit-learn 1.2 user guide, API reference and examples, BSD-3-clause",
     html_documents("/usr/share/doc/python-sklearn-doc/html/**/*.html")),
    ("statsmodels-doc", "python-statsmodels-doc", "statsmodels 0.13 documentation (statistics, econometrics), BSD-3-clause",
     html_documents("/usr/share/doc/python-statsmodels-doc/html/**/*.html", skip=SPHINX_SOURCE_CODE)),
    ("astropy-doc", "python-astropy-doc", "Astropy 5.2 documentation (astronomy), BSD-3-clause",
     html_documents("/usr/share/doc/python-astropy-doc/html/**/*.html", skip=SPHINX_SOURCE_CODE)),
]


def main():
    if sys.argv[1:] == ["--packages"]:  # for launch/prepare-science, which installs them
        print(" ".join(sorted({package for _, package, _, _ in SOURCES})))
        return
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: science_corpus.py OUT_DIR | --packages")
    write_corpus(sys.argv[1], SOURCES)


if __name__ == "__main__":
    main()
