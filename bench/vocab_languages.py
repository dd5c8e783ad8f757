"""[UNK] share on held-out Japanese and Greek text: the bundled vocabulary vs one trained by
``corpus-pipeline vocab`` on the other documents of the same dump.

No Japanese or Greek Wikipedia dump can be fetched from these machines, so the script builds
one: a MediaWiki XML dump (``<dbname>jawiki``/``elwiki``, so ``extract`` reads the language
from it) whose pages are the translations in the system's gettext catalogs
(``/usr/share/locale/{ja,el}/LC_MESSAGES/*.mo``: apt, coreutils, glib, ISO 639/3166 names,
...), real text written by people, 40 messages a page. Then, per language:

1. ``corpus-pipeline extract`` turns the dump into sentence-split documents;
2. every fifth document (by position, deterministic) is held out, the rest written to a text
   file that ``corpus-pipeline vocab`` trains on (once with the uncased default, once with
   ``--no-strip-accents``);
3. the held-out sentences are encoded with the bundled uncased vocabulary and with each trained
   one, and the share of [UNK] among their tokens is printed.

Run: ``.venv/bin/python bench/vocab_languages.py [--size N] [--langs ja,el]``. Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import gettext
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cli, run_measured  # noqa: E402

from corpus_pipeline import resources  # noqa: E402
from corpus_pipeline.formats.documents import list_document_files, read_documents
from corpus_pipeline.stages.wordpiece import WordPieceEncoder

MESSAGES_PER_PAGE = 40
HELD_OUT_EVERY = 5

_PAGE = (
    "<page><title>{title}</title><ns>0</ns><id>{id}</id><revision><id>{id}</id>"
    "<timestamp>2020-01-01T00:00:00Z</timestamp><text>{text}</text></revision></page>"
)


def catalog_messages(lang: str) -> list[tuple[str, list[str]]]:
    """The translated messages of each gettext catalog of ``lang``: (catalog name, messages)."""
    out = []
    for path in sorted(Path("/usr/share/locale", lang, "LC_MESSAGES").glob("*.mo")):
        with open(path, "rb") as f:
            try:
                catalog = gettext.GNUTranslations(f)
            except (OSError, UnicodeDecodeError):
                continue
        messages = []
        for key, value in sorted(catalog._catalog.items(), key=lambda kv: str(kv[0])):
            if key and isinstance(value, str) and value.strip():
                # Format directives and markup are not prose; newlines become spaces.
                text = "".join(c for c in value if unicodedata.category(c) != "Cc" or c == "\n")
                messages.append(" ".join(text.replace("%s", "").split()))
        if messages:
            out.append((path.stem, messages))
    return out


def write_dump(lang: str, path: Path) -> int:
    """A MediaWiki XML dump of ``lang``'s catalogs; returns the number of pages."""
    pages = []
    for name, messages in catalog_messages(lang):
        for start in range(0, len(messages), MESSAGES_PER_PAGE):
            chunk = messages[start : start + MESSAGES_PER_PAGE]
            text = "\n\n".join(chunk)
            pages.append((f"{name} {start // MESSAGES_PER_PAGE}", escape(text)))
    body = "".join(
        _PAGE.format(title=escape(t), id=i + 1, text=x) for i, (t, x) in enumerate(pages)
    )
    path.write_text(
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
        f'xml:lang="{lang}"><siteinfo><sitename>Wikipedia</sitename><dbname>{lang}wiki</dbname>'
        '<namespaces><namespace key="0" case="first-letter" /></namespaces></siteinfo>'
        + body
        + "</mediawiki>",
        encoding="utf-8",
    )
    return len(pages)


def run_cli(*args: object) -> None:
    """Run ``corpus-pipeline ARGS`` in a child process; exit on failure."""
    run_measured(cli(*map(str, args)))


def unk_share(
    vocab: Path, sentences: list[str], *, cased: bool, strip: bool | None
) -> tuple[float, float]:
    """([UNK] share among the tokens, tokens per non-space character) of ``sentences``
    encoded with ``vocab``."""
    enc = WordPieceEncoder(vocab, cased=cased, strip_accents=strip)
    ids = enc.encode_batch(sentences)
    total = sum(int(a.size) for a in ids)
    unk = sum(int((a == enc.unk_id).sum()) for a in ids)
    # Spaces left out, as in inspect's tokens per character (the shards have no spaces).
    chars = sum(len("".join(s.split())) for s in sentences)
    return (unk / total if total else 0.0), (total / chars if chars else 0.0)


def run_language(
    lang: str, size: int, work: Path, extra: list[str]
) -> list[tuple[str, str, tuple[float, float]]]:
    """Extract, split, train, measure one language; returns (vocabulary, flags, [UNK] share)."""
    dump = work / f"{lang}wiki.xml"
    pages = write_dump(lang, dump)
    docs_dir = work / f"{lang}_docs"
    run_cli("extract", "--input", dump, "--output", docs_dir, "--workers", "1")
    docs = [d for f in list_document_files([docs_dir]) for d in read_documents(f)]
    docs.sort(key=lambda d: str(d.id))
    held = [s for i, d in enumerate(docs) if i % HELD_OUT_EVERY == 0 for s in d.sentences]
    train = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY != 0]
    train_file = work / f"{lang}_train.txt"
    train_file.write_text("".join("\n".join(d.sentences) + "\n\n" for d in train), encoding="utf-8")
    chars = sum(len(s) for s in held)
    print(
        f"{lang}: {pages} pages -> {len(docs)} documents; training on {len(train)}, "
        f"held out {len(docs) - len(train)} ({len(held)} sentences, {chars:,} characters)",
        flush=True,
    )
    rows = [
        ("bundled uncased", "", unk_share(resources.UNCASED_VOCAB, held, cased=False, strip=None)),
        (
            "bundled cased",
            "--cased",
            unk_share(resources.CASED_VOCAB, held, cased=True, strip=None),
        ),
    ]
    for flags in ((), ("--no-strip-accents",)):
        out = work / f"{lang}_vocab{''.join(flags)}.txt"
        start = time.perf_counter()
        run_cli("vocab", "--input", train_file, "--size", size, "--output", out, *flags, *extra)
        n = sum(1 for _ in out.open(encoding="utf-8"))
        strip = False if flags else None
        share = unk_share(out, held, cased=False, strip=strip)
        label = f"trained ({n:,} tokens, {time.perf_counter() - start:.0f}s)"
        rows.append((label, " ".join((*flags, *extra)), share))
    return rows


def main() -> None:
    """Parse the flags, run each language, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=30522, help="vocab --size (default 30522)")
    ap.add_argument("--langs", default="ja,el", help="comma-separated (default ja,el)")
    ap.add_argument(
        "--limit-alphabet", type=int, default=None, help="vocab --limit-alphabet (default: its)"
    )
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-vocab-") as tmp:
        for lang in args.langs.split(","):
            if not catalog_messages(lang):
                print(f"{lang}: no gettext catalogs under /usr/share/locale/{lang}: skipped")
                continue
            extra = (
                []
                if args.limit_alphabet is None
                else ["--limit-alphabet", str(args.limit_alphabet)]
            )
            for label, flags, (unk, per_char) in run_language(lang, args.size, Path(tmp), extra):
                results.append((lang, label, flags, unk, per_char))
                print(f"  {label} {flags}: [UNK] {unk:.3%}, {per_char:.3f} tokens/char", flush=True)
    print()
    print(
        f"{'lang':<5} {'vocabulary':<34} {'flags':<40} {'[UNK] held-out':>15} {'tokens/char':>12}"
    )
    for lang, label, flags, unk, per_char in results:
        print(f"{lang:<5} {label:<34} {flags:<40} {unk:>15.3%} {per_char:>12.3f}")


if __name__ == "__main__":
    main()
