"""Encode and mask: WordPiece vs HF tokenizers, masking instances/s, and the ``mask`` verb at scale.

Input: the bundled enwiki excerpt run through ``corpus-pipeline extract`` (text format, cached
in ``.bench/``; ``--fresh`` re-extracts). Three measurements in one run:

1. WordPiece: ``WordPieceEncoder.encode_batch`` (chunks of ``--chunk`` sentences, a fresh
   encoder so its word cache fills during the run, then a second pass with the cache warm)
   against ``tokenizers.BertWordPieceTokenizer.encode_batch`` on the same sentences, in this
   process, pinned to one thread (``RAYON_NUM_THREADS=1`` is set before tokenizers is
   imported). The ids are checked equal. Per-core ratio = HF CPU seconds / ours. Target >= 3x.
2. Masking: ``create_instances`` on the encoded documents (replicated under new ids,
   ``--mask-copies``) at S=128, P=20, dupe_factor=5, one core, instances per CPU second;
   target >= 40,000. Reference in the same run: Google's per-token loop transcribed in plain
   Python (``bench/mask.py``'s ``google_baseline``) on a subset of the same documents.
3. The real verb end to end: ``corpus-pipeline mask --preset phase1 --workers 1`` (Beam
   FnApiRunner, multi_processing, one SDK worker subprocess) on the documents in one file
   (1x) and the same documents written to ``--copies`` files (10x; ids are ``<file>:<index>``
   so every copy is a new document). The shard count grows with the input (4 at 1x, 40 at
   10x), so shards hold the same number of instances: a shard's writer holds its shard in
   memory (README, ``mask``: memory is bounded by bucket, chunk and shard size); ``--fixed-shards`` keeps 4
   shards at 10x to show that cost. Instances/s and peak memory of the whole process tree:
   the launcher and its worker subprocesses' RSS summed, sampled from ``/proc`` every 0.1 s
   (shared pages count once per process: an upper bound), plus the largest single process's
   peak (``os.wait4`` ``ru_maxrss``). Target: tree peak at 10x <= 1.2x the peak at 1x.

Usage: ``python bench/encode.py [--repeat 3] [--chunk 1000] [--mask-copies 2] [--copies 10]
[--fixed-shards] [--fresh]``
"""

from __future__ import annotations

import os
import sys

# Must precede the first import of tokenizers (ours imports it too): Rayon sizes its pool once.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    Best,
    ProcRun,
    child_env,
    cli,
    document_files,
    extracted_excerpt,
    print_table,
    run_measured,
    timed,
)
from encode_wordpiece import reference  # noqa: E402
from mask import google_baseline  # noqa: E402

from corpus_pipeline import resources  # noqa: E402
from corpus_pipeline.config import PRESETS, MaskConfig  # noqa: E402
from corpus_pipeline.formats import manifest as mf  # noqa: E402
from corpus_pipeline.formats.documents import read_documents  # noqa: E402
from corpus_pipeline.records import Document, EncodedDocument  # noqa: E402
from corpus_pipeline.stages.masking import MaskVocab, create_instances  # noqa: E402
from corpus_pipeline.stages.wordpiece import WordPieceEncoder, encode_documents  # noqa: E402

TARGET_WORDPIECE = 3.0
TARGET_MASK = 40_000
TARGET_RSS = 1.2
SHARDS = 4  # the verb's default


def _no_count(name: str, n: int = 1) -> None:
    """Counter callback that drops counts (the benches time the work, not the tally)."""


# ---------------------------------------------------------------- 1. WordPiece


def bench_wordpiece(sentences: list[str], repeat: int, chunk: int) -> tuple[Best, Best, Best, int]:
    """Interleaved repeats of HF (1 thread) and ours (fresh, then warm cache)."""
    hf, cold, warm = Best(), Best(), Best()
    ref = reference(cased=False)
    want: list[list[int]] = []
    got: list[np.ndarray] = []
    for _ in range(repeat):
        # Interleaved: a burst of load elsewhere hits both sides alike.
        with timed(hf):
            enc = ref.encode_batch(sentences, add_special_tokens=False)
        want = [e.ids for e in enc]
        ours = WordPieceEncoder(resources.UNCASED_VOCAB)
        for best in (cold, warm):
            with timed(best):
                got = []
                for i in range(0, len(sentences), chunk):
                    got.extend(ours.encode_batch(sentences[i : i + chunk]))
    if any(g.tolist() != w for g, w in zip(got, want, strict=True)):
        raise SystemExit("ERROR: our ids differ from BertWordPieceTokenizer's")
    return hf, cold, warm, sum(len(w) for w in want)


# ---------------------------------------------------------------- 2. masking


def bench_mask(
    encoded: list[EncodedDocument], copies: int, repeat: int
) -> tuple[int, Best, int, Best]:
    """``create_instances`` on ``copies`` replicas; Google's loop on a subset. Returns
    (instances, best, baseline instances, baseline best)."""
    vocab = MaskVocab.from_vocab_file(resources.UNCASED_VOCAB)
    cfg = MaskConfig(**PRESETS["phase1"], dupe_factor=5)
    bucket = [
        EncodedDocument(f"copy{c}/{d.id}", d.sentences) for c in range(copies) for d in encoded
    ]
    ours, n = Best(), 0
    for r in range(repeat + 1):
        best = ours if r else Best()  # the first pass warms up (imports, allocator)
        with timed(best):
            n = sum(1 for _ in create_instances(bucket, cfg, vocab, count=_no_count))
    # The plain-Python loop is ~20x slower: a fifth of the documents keeps it to seconds.
    small = [[s.tolist() for s in d.sentences] for d in encoded[: max(2, len(encoded) // 5)]]
    base = Best()
    with timed(base):
        nb = google_baseline(
            small, cfg, vocab.vocab_size, (vocab.cls_id, vocab.sep_id, vocab.mask_id)
        )
    return n, ours, nb, base


# ---------------------------------------------------------------- 3. the mask verb


def write_copies(docs: list[Document], folder: Path, copies: int) -> None:
    """The documents, text format, once per file ``copy<i>.txt``."""
    folder.mkdir(parents=True)
    text = "".join("\n".join(d.sentences) + "\n\n" for d in docs)
    for c in range(copies):
        (folder / f"copy{c}.txt").write_text(text, encoding="utf-8")


def run_verb(docs: Path, out: Path, shards: int) -> tuple[ProcRun, int]:
    """``corpus-pipeline mask`` on one worker; the run's measurements and instance count."""
    cmd = cli("mask", "--input", str(docs), "--output", str(out), "--preset", "phase1")
    r = run_measured([*cmd, "--workers", "1", "--shards", str(shards)], env=child_env())
    return r, int(mf.read_manifest(str(out))["totals"]["instances"])


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed passes, best kept (default 3)")
    ap.add_argument("--chunk", type=int, default=1000, help="sentences per encode_batch call")
    ap.add_argument("--mask-copies", type=int, default=2, help="replicas for create_instances")
    ap.add_argument("--copies", type=int, default=10, help="files for the scaled verb run")
    ap.add_argument(
        "--fixed-shards", action="store_true", help="4 shards at 10x too (default: 4 per copy)"
    )
    ap.add_argument("--fresh", action="store_true", help="re-extract the excerpt")
    args = ap.parse_args(argv)

    docs_dir = extracted_excerpt(args.fresh)
    docs = [d for f in document_files(docs_dir) for d in read_documents(f)]
    sentences = [s for d in docs for s in d.sentences]
    mb = sum(len(s.encode("utf-8")) for s in sentences) / 1e6
    print(
        f"input: bundled enwiki excerpt via `extract`: {len(docs)} documents, "
        f"{len(sentences):,} sentences, {mb:.2f} MB; {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}"
    )

    # 1. WordPiece
    hf, cold, warm, tokens = bench_wordpiece(sentences, args.repeat, args.chunk)
    print(
        f"\n1. WordPiece, uncased, 1 thread, best of {args.repeat}, chunks of {args.chunk} "
        f"sentences; {tokens:,} tokens; ids identical"
    )
    rows: list[list[object]] = []
    for name, b in (
        ("HF BertWordPieceTokenizer.encode_batch", hf),
        ("ours encode_batch, fresh cache", cold),
        ("ours encode_batch, warm cache", warm),
    ):
        rows.append(
            [
                name,
                b.cpu,
                b.wall,
                len(sentences) / b.cpu,
                tokens / b.cpu,
                mb / b.cpu,
                hf.cpu / b.cpu,
            ]
        )
    print_table(
        ["run", "cpu s", "wall s", "sent/s/core", "tok/s/core", "MB/s/core", "vs HF"],
        rows,
        indent="  ",
    )
    wp_ratio = hf.cpu / cold.cpu
    print(
        f"  per core: ours {wp_ratio:.2f}x HF fresh cache, {hf.cpu / warm.cpu:.2f}x warm "
        f"(target >= {TARGET_WORDPIECE:.0f}x); wall: {hf.wall / cold.wall:.2f}x / "
        f"{hf.wall / warm.wall:.2f}x"
    )

    # 2. masking
    encoded = encode_documents(docs, WordPieceEncoder(resources.UNCASED_VOCAB), count=_no_count)
    n, mk, nb, base = bench_mask(encoded, args.mask_copies, args.repeat)
    mask_rate = n / mk.cpu
    print(
        f"\n2. create_instances, S=128 P=20 dupe 5, {args.mask_copies} copies of "
        f"{len(encoded)} encoded documents, 1 core, best of {args.repeat}"
    )
    print_table(
        ["run", "instances", "cpu s", "wall s", "inst/s/core", "vs Google loop"],
        [
            ["ours create_instances", n, mk.cpu, mk.wall, mask_rate, mask_rate / (nb / base.cpu)],
            ["Google loop, plain Python", nb, base.cpu, base.wall, nb / base.cpu, 1.0],
        ],
        indent="  ",
    )
    print(f"  ours {mask_rate:,.0f} instances/s per core (target >= {TARGET_MASK:,})")

    # 3. the verb, 1x and 10x
    tmp = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    runs: dict[int, tuple[ProcRun, int, int]] = {}
    try:
        for copies in (1, args.copies):
            folder = tmp / f"docs-x{copies}"
            write_copies(docs, folder, copies)
            shards = SHARDS if args.fixed_shards else SHARDS * copies
            runs[copies] = (*run_verb(folder, tmp / f"out-x{copies}", shards), shards)
            shutil.rmtree(tmp / f"out-x{copies}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "\n3. corpus-pipeline mask --preset phase1 --workers 1 (FnApiRunner multi_processing), "
        "end to end incl. start-up; RSS: process tree summed, sampled every 0.1 s; "
        + (
            f"{SHARDS} shards at every size (shard size grows with the input)"
            if args.fixed_shards
            else f"{SHARDS} shards per copy (the same instances per shard at every size)"
        )
    )
    rows = []
    for copies, (r, inst, shards) in runs.items():
        rows.append(
            [
                f"{copies}x ({copies} file{'s' if copies > 1 else ''})",
                shards,
                inst,
                r.wall,
                r.cpu,
                inst / r.wall,
                inst / r.cpu,
                r.tree_rss_mb,
                r.max_proc_rss_mb,
            ]
        )
    print_table(
        [
            "input",
            "shards",
            "instances",
            "wall s",
            "cpu s",
            "inst/s",
            "inst/cpu s",
            "tree peak MB",
            "max proc MB",
        ],
        rows,
        indent="  ",
    )
    (r1, *_), (r10, *_) = runs[1], runs[args.copies]
    rss_ratio = r10.tree_rss_mb / r1.tree_rss_mb
    print(
        f"  peak RSS {args.copies}x / 1x: tree {rss_ratio:.2f} (target <= {TARGET_RSS}), "
        f"largest process {r10.max_proc_rss_mb / r1.max_proc_rss_mb:.2f}"
    )

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"\nratio: wordpiece {wp_ratio:.2f}x HF per core [target >= {TARGET_WORDPIECE:.0f}x: "
        f"{verdict(wp_ratio >= TARGET_WORDPIECE)}]; mask {mask_rate:,.0f} inst/s/core "
        f"[target >= {TARGET_MASK:,}: {verdict(mask_rate >= TARGET_MASK)}]; verb peak RSS "
        f"{args.copies}x/1x {rss_ratio:.2f} [target <= {TARGET_RSS}: "
        f"{verdict(rss_ratio <= TARGET_RSS)}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
