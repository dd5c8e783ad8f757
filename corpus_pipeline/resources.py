"""Paths to data bundled with the package (vocabularies, punkt parameters, samples).

Nothing here touches the network: a fresh clone or an installed wheel has all of it.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
VOCAB_DIR = DATA_DIR / "vocab"
PUNKT_DIR = DATA_DIR / "punkt_tab"
SAMPLES_DIR = DATA_DIR / "samples"
HISTOGRAMS_DIR = DATA_DIR / "histograms"

UNCASED_VOCAB = VOCAB_DIR / "bert-base-uncased-vocab.txt"
CASED_VOCAB = VOCAB_DIR / "bert-base-cased-vocab.txt"

SAMPLE_WIKI_DUMP = (
    SAMPLES_DIR / "wiki" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
SAMPLE_BOOKS_DIR = SAMPLES_DIR / "books"
SAMPLE_BOOK = SAMPLE_BOOKS_DIR / "sherlock.txt"
SAMPLE_GOOGLE_TEXT = SAMPLES_DIR / "sample_text.txt"


def default_vocab(cased: bool = False) -> Path:
    """The bundled BERT vocabulary: uncased (lower-case, strip accents) or cased."""
    return CASED_VOCAB if cased else UNCASED_VOCAB
