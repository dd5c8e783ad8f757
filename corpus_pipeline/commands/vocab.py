"""``corpus-pipeline vocab``: train a WordPiece vocabulary from sentence-split documents.

Flags -> :class:`VocabConfig` and :class:`WordPieceConfig` ->
``stages.wordpiece_training.train_wordpiece`` over the documents, read twice (character
counts, then training) -> one token per line, written atomically, then loaded back the way
the other verbs load it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from corpus_pipeline.commands.common import progress_disabled
from corpus_pipeline.commands.options import add_options, from_args
from corpus_pipeline.config import VocabConfig, WordPieceConfig
from corpus_pipeline.errors import UserError

DESCRIPTION = """\
Train a WordPiece vocabulary on sentence-split documents (from `extract`). The file (one token
per line: [PAD], the optional [unused*] reserve, [UNK], [CLS], [SEP], [MASK], the alphabet,
its ## forms, the learned pieces) is what mask and run take as --vocab. The same input gives
the same file, byte for byte."""

EXAMPLES = """examples:
  corpus-pipeline vocab --input out/docs --size 30522 --output out/vocab.txt
  corpus-pipeline vocab --input a.txt --input b.jsonl --size 28996 --cased --unused 99 \\
      --output cased-vocab.txt
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``vocab`` verb on the CLI's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "vocab",
        help="train a WordPiece vocabulary from documents",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="DOCS",
        help="documents: a folder or a file, text (one sentence per line, blank line between "
        "documents) or .jsonl with a 'sentences' list; repeatable",
    )
    p.add_argument("--output", required=True, metavar="FILE", help="vocabulary file to write")
    add_options(p.add_argument_group("training"), VocabConfig)
    add_options(p.add_argument_group("normalization"), WordPieceConfig, skip=("vocab",))
    return p


class _Reader:
    """Passes over the document files, in sentence batches, with a progress bar.

    Each pass counts the documents and sentences it read and ticks the bar once per file.
    """

    def __init__(self, files: Sequence[Path], bar: Any) -> None:
        self.files = files
        self.bar = bar
        self.documents = 0
        self.sentences = 0

    def __call__(self, batch_size: int) -> Iterator[list[str]]:
        from corpus_pipeline.formats.documents import read_documents

        self.documents = self.sentences = 0
        batch: list[str] = []
        for path in self.files:
            for doc in read_documents(path):
                self.documents += 1
                self.sentences += len(doc.sentences)
                batch.extend(doc.sentences)
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            self.bar.update(1)
        if batch:
            yield batch


def write_vocab(path: Path, tokens: Sequence[str]) -> None:
    """Write one token per line, atomically (temp file beside it, fsync, rename)."""
    from corpus_pipeline.formats.common import atomic_output

    for t in tokens:
        if not t or t != t.strip() or "\n" in t:
            raise UserError(f"trained token {t!r} cannot be stored one per line")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(tokens))
        f.write("\n")


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Train, write and check the vocabulary; print a one-line summary."""
    from tqdm import tqdm

    from corpus_pipeline.formats.documents import list_document_files
    from corpus_pipeline.stages.wordpiece import WordPieceEncoder
    from corpus_pipeline.stages.wordpiece_training import train_wordpiece

    if beam_args:
        raise UserError(
            f"vocab runs in-process and takes no Beam flags: unknown {' '.join(beam_args)}"
        )
    cfg = from_args(args, VocabConfig)
    wcfg = from_args(args, WordPieceConfig)
    out = Path(args.output)
    if out.is_dir():
        raise UserError(f"--output {out} is a folder: give the vocabulary file name")
    start = time.perf_counter()
    files = list_document_files(args.input)
    # Two passes over every file (characters, then training), then the merges.
    with tqdm(
        total=2 * len(files) + 1,
        desc="vocab",
        unit="step",
        disable=progress_disabled(),
        file=sys.stderr,
    ) as bar:
        reader = _Reader(files, bar)
        tokens = train_wordpiece(
            reader,
            cfg,
            cased=wcfg.cased,
            strip_accents=wcfg.strip_accents,
            source=", ".join(str(f) for f in files[:3]),
        )
        bar.update(1)
    write_vocab(out, tokens)
    # The file must be usable by every other verb: load it the way they do.
    enc = WordPieceEncoder(out, cased=wcfg.cased, strip_accents=wcfg.strip_accents)
    note = "" if enc.vocab_size == cfg.size else f" (asked {cfg.size:,}: corpus too small)"
    print(
        f"vocab: {reader.documents:,} documents, {reader.sentences:,} sentences -> "
        f"{enc.vocab_size:,} tokens{note} -> {out} in {time.perf_counter() - start:.1f}s "
        f"(sha256 {enc.vocab_sha256[:12]})"
    )
    return 0
