"""Static masking + NSP throughput: instances/s per core, against Google's loop in plain Python.

Input: Google's sample_text.txt and Sherlock Holmes (stories as documents, paragraphs as
sentences), WordPiece-encoded with the bundled uncased vocabulary and replicated under new
document ids until a run yields >= 50,000 instances at S=128, P=20, dupe_factor=5.

``create_instances`` runs on one core (CPU time via ``time.process_time``); the baseline is a
straightforward per-token transcription of google-research/bert ``create_pretraining_data.py``
(``random.Random``, list pops for truncation, a shuffle-and-loop masker), timed in the same
process on a subset of the same documents. Prints instances/s, the ratio, and peak RSS.

    .venv/bin/python bench/mask.py [--copies N] [--baseline-copies N] [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import sys
import time
from dataclasses import replace

import numpy as np

from corpus_pipeline import resources
from corpus_pipeline.config import PRESETS, MaskConfig
from corpus_pipeline.records import EncodedDocument
from corpus_pipeline.stages.mask_stats import MaskStats
from corpus_pipeline.stages.masking import MaskVocab, create_instances


def load_documents() -> list[tuple[str, list[np.ndarray]]]:
    """Google's sample and the Sherlock stories, encoded once."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(str(resources.UNCASED_VOCAB), lowercase=True)

    def encode(lines: list[str]) -> list[np.ndarray]:
        enc = tok.encode_batch(lines, add_special_tokens=False)
        return [np.asarray(e.ids, np.int32) for e in enc]

    docs = []
    text = resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8")
    for i, group in enumerate(g for g in re.split(r"\n\s*\n", text) if g.strip()):
        docs.append((f"google:{i}", encode(group.strip().split("\n"))))
    book = resources.SAMPLE_BOOK.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    for i, story in enumerate(re.split(r"\n(?=(?:ADVENTURE )?[IVX]+\. [A-Z][A-Z' -]+\n)", book)):
        paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", story) if p.strip()]
        docs.append((f"sherlock:{i:02d}", encode(paras)))
    return docs


def replicate(docs: list[tuple[str, list[np.ndarray]]], copies: int) -> list[EncodedDocument]:
    return [
        EncodedDocument(f"copy{c}/{name}", sents) for c in range(copies) for name, sents in docs
    ]


# ---------------------------------------------------------------- the baseline: Google's loop


def google_baseline(
    docs: list[list[list[int]]], cfg: MaskConfig, vocab_size: int, ids: tuple[int, int, int]
) -> int:
    """Google's create_training_instances on token ids, one token at a time. Returns count."""
    cls_id, sep_id, mask_id = ids
    rng = random.Random(cfg.seed)
    max_tokens = cfg.max_seq_length - 3
    n = 0
    for _ in range(cfg.dupe_factor):
        for di, doc in enumerate(docs):
            target = max_tokens
            if rng.random() < cfg.short_seq_prob:
                target = rng.randint(2, max_tokens)
            chunk: list[list[int]] = []
            length = 0
            i = 0
            while i < len(doc):
                chunk.append(doc[i])
                length += len(doc[i])
                if i == len(doc) - 1 or length >= target:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    a: list[int] = []
                    for s in chunk[:a_end]:
                        a.extend(s)
                    b: list[int] = []
                    if len(chunk) == 1 or rng.random() < 0.5:
                        for _ in range(10):
                            r = rng.randint(0, len(docs) - 1)
                            if r != di:
                                break
                        other = docs[r]
                        for j in range(rng.randint(0, len(other) - 1), len(other)):
                            b.extend(other[j])
                            if len(b) >= target - len(a):
                                break
                        i -= len(chunk) - a_end
                    else:
                        for s in chunk[a_end:]:
                            b.extend(s)
                    while len(a) + len(b) > max_tokens:
                        longer = a if len(a) >= len(b) else b
                        longer.pop(0 if rng.random() < 0.5 else -1)
                    tokens = [cls_id, *a, sep_id, *b, sep_id]
                    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
                    cand = [p for p, t in enumerate(tokens) if t != cls_id and t != sep_id]
                    rng.shuffle(cand)
                    k = min(cfg.max_predictions, max(1, round(len(tokens) * cfg.masked_lm_prob)))
                    shown = list(tokens)
                    picked = []
                    for p in cand[:k]:
                        if rng.random() < 0.8:
                            shown[p] = mask_id
                        elif rng.random() >= 0.5:
                            shown[p] = rng.randint(0, vocab_size - 1)
                        picked.append((p, tokens[p]))
                    picked.sort()
                    positions = [p for p, _ in picked]
                    labels = [t for _, t in picked]
                    assert len(segments) == len(shown) and len(positions) == len(labels)
                    n += 1
                    chunk, length = [], 0
                i += 1
    return n


# ---------------------------------------------------------------- measurement


def measure(bucket: list[EncodedDocument], cfg: MaskConfig, vocab: MaskVocab, repeat: int):  # type: ignore[no-untyped-def]
    best = float("inf")
    n = 0
    stats = None
    for r in range(repeat):
        t0 = time.process_time()
        out = create_instances(bucket, cfg, vocab, count=lambda name, k=1: None)
        if r == 0:
            stats = MaskStats.for_config(cfg, vocab)
            batch = []
            n = 0
            for inst in out:
                batch.append(inst)
                if len(batch) == 4096:
                    stats.add_many(batch)
                    n += len(batch)
                    batch = []
            stats.add_many(batch)
            n += len(batch)
            continue  # the first pass (with statistics) is a warm-up
        n = sum(1 for _ in out)
        best = min(best, time.process_time() - t0)
    return n, best, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=10, help="replicas of the corpus (ours)")
    ap.add_argument("--baseline-copies", type=int, default=2, help="replicas for the baseline")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes (best is reported)")
    args = ap.parse_args(argv)

    vocab = MaskVocab.from_vocab_file(resources.UNCASED_VOCAB)
    cfg = MaskConfig(**PRESETS["phase1"], dupe_factor=5)
    docs = load_documents()
    tokens = sum(len(s) for _, sents in docs for s in sents)
    print(
        f"corpus: {len(docs)} documents, {tokens:,} tokens per copy; S={cfg.max_seq_length} "
        f"P={cfg.max_predictions} dupe={cfg.dupe_factor}"
    )
    bucket = replicate(docs, args.copies)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = []
    for name, c in (("ours", cfg), ("ours whole-word", replace(cfg, whole_word_mask=True))):
        n, dt, stats = measure(bucket, c, vocab, max(2, args.repeat + 1))
        rows.append((name, n, dt))
        if name == "ours":
            d = stats.to_dict()
            print(
                f"stats: {d['instances']:,} instances, mean length {d['mean_length']:.1f}, "
                f"NSP random {d['random_next_fraction']:.3f}, "
                f"masked/instance {d['masked_per_instance']:.2f}, "
                f"[MASK]/keep/random {d['mask_token_fraction']:.3f}/{d['kept_fraction']:.3f}/"
                f"{d['random_fraction']:.3f}"
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    small = [[s.tolist() for s in sents] for _, sents in docs] * args.baseline_copies
    t0 = time.process_time()
    nb = google_baseline(small, cfg, vocab.vocab_size, (vocab.cls_id, vocab.sep_id, vocab.mask_id))
    tb = time.process_time() - t0
    base_rate = nb / tb

    print(f"{'run':<18}{'instances':>11}{'cpu s':>9}{'inst/s/core':>14}{'vs baseline':>13}")
    for name, n, dt in rows:
        print(f"{name:<18}{n:>11,}{dt:>9.2f}{n / dt:>14,.0f}{n / dt / base_rate:>12.1f}x")
    print(f"{'google loop (py)':<18}{nb:>11,}{tb:>9.2f}{base_rate:>14,.0f}{1:>12.1f}x")
    print(f"peak RSS: {rss:,.0f} MB (after loading inputs: {rss0:,.0f} MB)")
    if rows[0][1] < 50_000:
        print("warning: fewer than 50,000 instances; raise --copies", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
