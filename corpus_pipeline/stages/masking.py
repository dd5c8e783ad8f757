"""Static masking and next-sentence prediction (NSP), as a pure stage.

The algorithm is the one of google-research/bert ``create_pretraining_data.py`` (NVIDIA
DeepLearningExamples and Graphcore use the same), summarised in the README's ``mask`` section.
Per document and per duplicate ``k`` it draws one target length (``S - 3``, or with
probability ``short_seq_prob`` a random length in ``[2, S - 3]``, for the whole document as
Google does), accumulates whole sentences into a chunk until the target is reached, splits the
chunk into A and B (B is, half of the time or when the chunk has one sentence, a "random next"
taken from another document of the bucket), truncates the pair and masks
``min(P, max(1, round(len * masked_lm_prob)))`` positions with the 80/10/10 rule. Whole-word
masking, like Google's, skips words that would overshoot that number and may, in rare
instances whose words are all longer than it, mask nothing.

What differs from Google, on purpose (the defects of the reference that we fix):

1. A random next never comes from the same document (Google retries 10 times, then keeps it).
   A bucket with a single usable document has no negative: a chunk of two or more sentences
   then falls back to its actual next (label 0, ``mask/fallback:no_negative_available``), a
   one-sentence chunk is skipped (``mask/dropped:no_negative_available``).
2. Whole-word masking decides [MASK]/keep/random once per word, not once per piece
   (google-research/bert #910).
3. Random replacement tokens are drawn from ordinary vocabulary tokens only, never [CLS],
   [SEP], [PAD], [MASK], [UNK] or [unused*].
4. One-sentence documents and sentences that start with punctuation or a ``##`` piece are
   ordinary input here (Megatron crashed or hung on them).
5. Empty sentences (blank lines) are removed before processing instead of splitting the
   document (google-research/bert #125, where they made every label "random").

Fixes 1, 2, 3 and 5 change statistics, so each can be switched back to Google's behaviour with
:class:`GoogleCompat` (``create_instances(..., google_compat_defects=True)`` turns all four on);
tests use it to show each fix matters.

Further deliberate differences, without effect on the statistics: words in whole-word masking
never span a [SEP] (Google glues a B that starts with a ``##`` piece onto the last word of A),
and the random stream is numpy's, consumed in our own order, so outputs follow Google's
distributions, not its exact draws (tests compare them with a plain transcription of Google's
loop).

The report over the instances and the run's warnings are in ``stages/mask_stats.py``; buckets
of documents (where negatives come from) are cut by ``stages/buckets.py``.

Speed: the NSP planning is a Python loop over *sentences* (a few per instance) that only
records ranges into one flat token array of the bucket; truncation is computed in closed form
(front/back trims are a binomial draw, which is exactly the distribution of Google's
one-pop-at-a-time loop); building ``[CLS] A [SEP] B [SEP]`` and masking run vectorised over
batches of a few thousand instances (``stages/mask_rows.py``). Every random number of an instance comes from the
generator of its (seed, document id, duplicate) and is drawn in a fixed order, so the output
does not depend on batching, on the caller's order of documents, or on anything but the
bucket's contents.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from corpus_pipeline import hashing
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.errors import InputFormatError, UserError
from corpus_pipeline.records import EncodedDocument, Instance
from corpus_pipeline.stages.mask_rows import PlannedRows, batch_rows, col_bits, mask_planned

CountFn = Callable[..., Any]

# Any bracketed token is special: [PAD] [UNK] [CLS] [SEP] [MASK] [unused12] [<S>] ...
_SPECIAL_RE = re.compile(r"^\[[^\[\]\s]+\]$")


@dataclass(frozen=True, eq=False)
class MaskVocab:
    """The vocabulary facts masking needs, independent of the tokenizer implementation.

    Attributes:
        cls_id: Id of ``[CLS]``.
        sep_id: Id of ``[SEP]``.
        mask_id: Id of ``[MASK]``.
        vocab_size: Number of tokens; every input id must be below it.
        ordinary_ids: int32 ids of ordinary tokens (not ``[...]`` specials, not ``[unused*]``):
            the only ids a random replacement may draw (defect 3).
        is_subword: bool[vocab_size], True for ``##`` continuation pieces (whole-word masking).
    """

    cls_id: int
    sep_id: int
    mask_id: int
    vocab_size: int
    ordinary_ids: np.ndarray
    is_subword: np.ndarray

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], *, source: str = "vocabulary") -> MaskVocab:
        """Build from the vocabulary's tokens in id order.

        Args:
            tokens: Token strings, index = id.
            source: Name used in error messages (the file).

        Raises:
            InputFormatError: When [CLS], [SEP] or [MASK] is missing or no ordinary token exists.
        """
        index = {t: i for i, t in enumerate(tokens)}
        missing = [t for t in ("[CLS]", "[SEP]", "[MASK]") if t not in index]
        if missing:
            raise InputFormatError(
                f"{source}: no {', '.join(missing)} token; use a BERT WordPiece vocab.txt "
                "(one token per line, e.g. vocab/bert-base-uncased-vocab.txt)"
            )
        special = np.fromiter((bool(_SPECIAL_RE.match(t)) for t in tokens), bool, len(tokens))
        ordinary = np.flatnonzero(~special).astype(np.int32)
        if ordinary.size == 0:
            raise InputFormatError(f"{source}: every token is a [special] token")
        subword = np.fromiter((t.startswith("##") for t in tokens), bool, len(tokens))
        return cls(
            cls_id=index["[CLS]"],
            sep_id=index["[SEP]"],
            mask_id=index["[MASK]"],
            vocab_size=len(tokens),
            ordinary_ids=ordinary,
            is_subword=subword,
        )

    @classmethod
    def from_vocab_file(cls, path: str | PathLike[str]) -> MaskVocab:
        """Read a BERT ``vocab.txt`` (one token per line, line number = id).

        Raises:
            UserError: When the file cannot be read or lacks the BERT special tokens.
        """
        try:
            with open(path, encoding="utf-8") as f:
                tokens = [line.rstrip("\r\n") for line in f]
        except OSError as e:
            raise UserError(
                f"cannot read vocabulary {path}: {e.strerror or e}; pass --vocab <vocab.txt>"
            ) from None
        except UnicodeDecodeError:
            raise InputFormatError(f"{path}: not UTF-8 text; pass a BERT vocab.txt") from None
        return cls.from_tokens(tokens, source=str(path))

    def special_mask(self) -> np.ndarray:
        """bool[vocab_size]: True for tokens a random replacement must never produce."""
        m = np.ones(self.vocab_size, bool)
        m[self.ordinary_ids] = False
        return m


@dataclass(frozen=True)
class GoogleCompat:
    """Switches that restore Google's behaviour for each fixed defect (all off by default).

    Attributes:
        same_document_negatives: Defect 1. Draw the random-next document from the whole
            bucket, retry 10 times while it is the current one, then keep it anyway (label 1).
        per_piece_whole_word: Defect 2. Whole-word masking selects whole words but draws the
            [MASK]/keep/random decision for each piece.
        special_random_tokens: Defect 3. Random replacements come from the whole vocabulary,
            specials and [unused*] included.
        blank_line_splits_document: Defect 5. An empty sentence ends a document, as a blank
            line does in Google's text format.
    """

    same_document_negatives: bool = False
    per_piece_whole_word: bool = False
    special_random_tokens: bool = False
    blank_line_splits_document: bool = False

    @classmethod
    def all(cls) -> GoogleCompat:
        """Google's behaviour for every defect."""
        return cls(True, True, True, True)


def _as_compat(value: bool | GoogleCompat) -> GoogleCompat:
    if isinstance(value, GoogleCompat):
        return value
    return GoogleCompat.all() if value else GoogleCompat()


def truncated_lengths(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """Lengths of A and B after Google's ``truncate_seq_pair``, in closed form.

    Google pops one token at a time from the longer list (A on ties) until the pair fits.
    That ends with the shorter list untouched if the longer one alone can absorb the excess,
    else with ``A = M // 2`` and ``B = M - M // 2``. Lengths are >= 1 when both inputs are.
    """
    if len_a + len_b <= max_num_tokens:
        return len_a, len_b
    fa = min(len_a, max(max_num_tokens // 2, max_num_tokens - len_b))
    return fa, max_num_tokens - fa


class _Bucket:
    """A normalised bucket: one flat token array and per-unit global sentence offsets."""

    def __init__(
        self,
        bucket: Iterable[EncodedDocument],
        vocab: MaskVocab,
        compat: GoogleCompat,
        tally: Counter[str],
    ) -> None:
        docs = sorted(bucket, key=lambda d: d.id)
        ids = [d.id for d in docs]
        dup = len(ids) - len(set(ids))
        if dup:
            # Equal ids would follow the caller's order: break ties by content, so the output
            # still depends on the contents only (their streams get an ordinal below).
            docs.sort(key=lambda d: (d.id, content_digest(d)))
            tally["mask/duplicate_document_id"] += dup
        seen: Counter[str] = Counter()
        pieces: list[np.ndarray] = []
        self.offsets: list[list[int]] = []  # per unit: global offsets of its sentences, n+1
        self.seeds: list[tuple[object, ...]] = []  # per unit: rng key parts after cfg.seed
        self.long_excess: dict[int, int] = {}  # per unit: tokens of sentences beyond S - 3
        base = 0
        for doc in docs:
            parts: list[list[np.ndarray]] = [[]]
            for s in doc.sentences:
                a = np.asarray(s)
                if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
                    raise InputFormatError(
                        f"document {doc.id!r}: sentences must be 1-D integer token-id arrays "
                        f"(got shape {a.shape}, dtype {a.dtype}); encode with WordPieceEncoder"
                    )
                if a.size == 0:
                    if compat.blank_line_splits_document:
                        parts.append([])
                    else:
                        tally["mask/dropped:empty_sentence"] += 1
                    continue
                parts[-1].append(a)
            parts = [p for p in parts if p]
            if not parts:
                tally["mask/dropped:empty_document"] += 1
                continue
            tally["mask/passed"] += 1
            nth = seen[doc.id]
            seen[doc.id] += 1
            for j, p in enumerate(parts):
                offs = [base]
                for a in p:
                    base += a.shape[0]
                    offs.append(base)
                pieces.extend(p)
                self.offsets.append(offs)
                # Unsplit documents keep the plain key, so compat and fixed runs share streams.
                key: tuple[object, ...] = (doc.id,) if nth == 0 else (doc.id, "dup", nth)
                self.seeds.append(key if len(parts) == 1 else (*key, "part", j))
        if pieces:
            corpus = np.concatenate(pieces)
            lo, hi = int(corpus.min()), int(corpus.max())
            if lo < 0 or hi >= vocab.vocab_size:
                bad = lo if lo < 0 else hi
                raise InputFormatError(
                    f"token id {bad} is outside the vocabulary of {vocab.vocab_size} tokens: "
                    "encode and mask with the same vocab.txt"
                )
            self.corpus = corpus.astype(np.int32, copy=False)
        else:
            self.corpus = np.zeros(1, np.int32)


def content_digest(doc: EncodedDocument) -> int:
    """A stable hash of a document's token ids (orders documents with equal ids)."""
    return hashing.stable_hash(*(np.asarray(s, np.int64).tobytes() for s in doc.sentences))


def _plan_unit(
    b: _Bucket,
    ui: int,
    dupe: int,
    cfg: MaskConfig,
    compat: GoogleCompat,
    out: PlannedRows,
    tally: Counter[str],
) -> None:
    """Google's create_instances_from_document for one unit and duplicate, as token ranges.

    Appends the (truncated) A/B ranges and labels of each instance to ``out`` and draws, for
    each, the row of uniforms its masking will use.
    """
    rng = hashing.rng_for(cfg.seed, *b.seeds[ui], dupe, "mask")
    # Uniforms for the loop, drawn in blocks and read inline (no call per draw). A chunk
    # needs at most `need`: a_end, the coin, the document (10 tries in compat) and a start.
    need = 13 if compat.same_document_negatives else 4
    buf: list[float] = rng.random(128).tolist()
    nb = len(buf)
    max_tokens = cfg.max_seq_length - 3
    target = max_tokens
    short = buf[0] < cfg.short_seq_prob
    if short:
        target = 2 + int(buf[1] * (max_tokens - 1))  # randint(2, max_tokens)
    p = 2
    off = b.offsets[ui]
    n = len(off) - 1
    n_units = len(b.offsets)
    half = max_tokens // 2
    plan: list[tuple[int, int, int, int, int, int, int]] = []
    forced = random_next = fallback = dropped = same_doc = lost = 0
    start = 0
    i = 0
    while i < n:
        if i == n - 1 or off[i + 1] - off[start] >= target:
            if p + need > nb:
                buf = buf[p:] + rng.random(256).tolist()
                nb = len(buf)
                p = 0
            clen = i + 1 - start
            if clen == 1:
                a_end = start + 1
                random_b = True  # a one-sentence chunk has no actual next
            else:
                a_end = start + 1 + int(buf[p] * (clen - 1))  # randint(1, clen - 1)
                random_b = buf[p + 1] < 0.5
                p += 2
            a0 = off[start]
            la = off[a_end] - a0
            label = 0
            if random_b:
                other = -1
                if compat.same_document_negatives:
                    for _ in range(10):
                        other = int(buf[p] * n_units)
                        p += 1
                        if other != ui:
                            break
                    same_doc += other == ui
                elif n_units > 1:
                    other = int(buf[p] * (n_units - 1))
                    p += 1
                    other += other >= ui
                if other < 0:
                    if clen == 1:
                        dropped += 1
                        start = i + 1
                        i += 1
                        continue
                    fallback += 1
                    b0 = a0 + la
                    lb = off[i + 1] - b0
                else:
                    ooff = b.offsets[other]
                    on = len(ooff) - 1
                    rs = int(buf[p] * on)
                    p += 1
                    b0 = ooff[rs]
                    # First sentence end at which B reaches target - len(A); at least one.
                    e = bisect.bisect_left(ooff, b0 + target - la, rs + 1, on)
                    lb = ooff[e] - b0
                    label = 1
                    i = a_end - 1  # put the unused sentences of the chunk back
            else:
                b0 = a0 + la
                lb = off[i + 1] - b0
            if la + lb > max_tokens:  # truncated_lengths, inlined
                fa = min(la, max(half, max_tokens - lb))
                plan.append((a0, fa, b0, max_tokens - fa, label, la - fa, lb + fa - max_tokens))
                # Tokens of this document that no instance holds: A's trims, B's when B is
                # the actual next (a random B's tokens belong to another document).
                lost += la - fa + (0 if label else lb + fa - max_tokens)
            else:
                plan.append((a0, la, b0, lb, label, 0, 0))
            random_next += label
            forced += clen == 1
            start = i + 1
        i += 1
    m = len(plan)
    if dropped:
        tally["mask/dropped:no_negative_available"] += dropped
    if fallback:
        tally["mask/fallback:no_negative_available"] += fallback
    if same_doc:
        tally["mask/compat:same_document_negative"] += same_doc
    if lost:
        tally["mask/truncated_tokens"] += lost
    tally["mask/source_tokens"] += off[n] - off[0]
    excess = b.long_excess.get(ui)
    if excess is None:
        excess = b.long_excess[ui] = sum(max(0, off[k + 1] - off[k] - max_tokens) for k in range(n))
    if excess:
        tally["mask/long_sentence_tokens"] += excess
    if not m:
        return
    tally["mask/random_next"] += random_next
    tally["mask/forced_random_next"] += forced
    if short:
        tally["mask/short_target"] += m
    a0s, las, b0s, lbs, labels, trims_a, trims_b = zip(*plan, strict=True)
    trims = np.array(trims_a + trims_b, np.int64)
    if trims.any():
        tally["mask/truncated"] += int(np.count_nonzero(trims[:m] + trims[m:]))
        # Each of Google's pops takes the front or the back with p = 0.5.
        out.shift.append(rng.binomial(trims, 0.5))
    else:
        out.shift.append(trims)
    out.a0 += a0s
    out.la += las
    out.b0 += b0s
    out.lb += lbs
    out.label += labels
    S = cfg.max_seq_length
    out.keys.append(rng.integers(0, 1 << (32 - col_bits(S)), size=(m, S), dtype=np.uint32))
    out.uniforms.append(rng.random((m, 2 * cfg.max_predictions)))


def create_instances(
    bucket: Iterable[EncodedDocument],
    cfg: MaskConfig,
    vocab: MaskVocab,
    *,
    count: CountFn,
    google_compat_defects: bool | GoogleCompat = False,
) -> Iterator[Instance]:
    """Static-masked NSP instances for every document of a bucket and every duplicate.

    Documents are processed in id order whatever the caller's order; random next sentences
    come from other documents of the same bucket. Each (document, duplicate ``k``) draws from
    ``hashing.rng_for(cfg.seed, doc.id, k, "mask")``.

    Args:
        bucket: WordPiece-encoded documents (sentences without [CLS]/[SEP]); empty
            sentences are dropped (``mask/dropped:empty_sentence``), documents without tokens
            skipped (``mask/dropped:empty_document``).
        cfg: Masking configuration (validated here).
        vocab: Special ids and the ordinary/sub-word tables.
        count: Counter callback ``count(name, n)``. Names: ``mask/passed`` (documents used),
            ``mask/instances``, ``mask/tokens``, ``mask/short_target`` (instances made under
            a short target), ``mask/random_next``, ``mask/forced_random_next`` (one-sentence
            chunks), ``mask/truncated``, ``mask/masked``, ``mask/masked:mask_token``,
            ``mask/masked:kept``, ``mask/masked:random``, ``mask/dropped:<reason>``,
            ``mask/fallback:no_negative_available``, ``mask/duplicate_document_id``,
            ``mask/source_tokens`` (document tokens, once per duplicate),
            ``mask/truncated_tokens`` (those of them no instance holds, cut by
            ``truncate_seq_pair``), ``mask/long_sentence_tokens`` (tokens of sentences longer
            than ``S - 3`` beyond ``S - 3``: no instance can hold them) and, in
            compat mode, ``mask/compat:same_document_negative``.
        google_compat_defects: ``True`` or a :class:`GoogleCompat` to restore Google's
            behaviour for the fixed defects (for comparisons and tests only).

    Yields:
        Unpadded :class:`Instance` records, document by document, duplicate by duplicate.
        Arrays of one batch share buffers; treat them as read-only.

    Raises:
        UserError: Invalid configuration, or token ids outside the vocabulary.
    """
    cfg.validate()
    compat = _as_compat(google_compat_defects)
    tally: Counter[str] = Counter()
    b = _Bucket(bucket, vocab, compat, tally)
    limit = batch_rows(cfg)
    batch = PlannedRows()
    try:
        for ui in range(len(b.offsets)):
            for dupe in range(cfg.dupe_factor):
                _plan_unit(b, ui, dupe, cfg, compat, batch, tally)
                if len(batch) >= limit:
                    yield from mask_planned(b.corpus, batch, cfg, vocab, compat, tally)
                    batch = PlannedRows()
                    _flush(tally, count)
        if len(batch):
            yield from mask_planned(b.corpus, batch, cfg, vocab, compat, tally)
    finally:
        _flush(tally, count)


def _flush(tally: Counter[str], count: CountFn) -> None:
    for name, n in tally.items():
        if n:
            count(name, n)
    tally.clear()
