"""Static masking and next-sentence prediction (NSP), as a pure stage.

The algorithm is the one of google-research/bert ``create_pretraining_data.py`` (NVIDIA
DeepLearningExamples and Graphcore use the same), described in ``shared/specs/MASKING.md``.
Per document and per duplicate ``k`` it draws one target length (``S - 3``, or with
probability ``short_seq_prob`` a random length in ``[2, S - 3]``, for the whole document as
Google does), accumulates whole sentences into a chunk until the target is reached, splits the
chunk into A and B (B is, half of the time or when the chunk has one sentence, a "random next"
taken from another document of the bucket), truncates the pair and masks
``min(P, max(1, round(len * masked_lm_prob)))`` positions with the 80/10/10 rule. Whole-word
masking, like Google's, skips words that would overshoot that number and may, in rare
instances whose words are all longer than it, mask nothing.

What differs from Google, on purpose (``shared/specs/MASKING.md``, "Known defects"):

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

Statistics: :class:`MaskStats` accumulates the report of ``shared/specs/MASKING.md`` from the
instances alone (mergeable, for a Beam CombineFn); the short-target fraction comes from the
``mask/short_target`` counter, and the counters ``mask/masked:*`` hold the exact 80/10/10
decisions (the instance-derived split counts a random draw of the original token as kept).

Speed: the NSP planning is a Python loop over *sentences* (a few per instance) that only
records ranges into one flat token array of the bucket; truncation is computed in closed form
(front/back trims are a binomial draw, which is exactly the distribution of Google's
one-pop-at-a-time loop); building ``[CLS] A [SEP] B [SEP]`` and masking run vectorised over
batches of a few thousand instances. Every random number of an instance comes from the
generator of its (seed, document id, duplicate) and is drawn in a fixed order, so the output
does not depend on batching, on the caller's order of documents, or on anything but the
bucket's contents.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Protocol, TypeVar

import numpy as np

from corpus_pipeline import hashing
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.errors import InputFormatError, UserError
from corpus_pipeline.records import EncodedDocument, Instance

CountFn = Callable[..., Any]

# Any bracketed token is special: [PAD] [UNK] [CLS] [SEP] [MASK] [unused12] [<S>] ...
_SPECIAL_RE = re.compile(r"^\[[^\[\]\s]+\]$")

# Random numbers per instance row: S random integer keys that order its candidate positions
# (or words), and 2P float64 uniforms: P [MASK]/keep/random decisions, P random-token draws.
# A key is stored as (random << col_bits) | column: unique within a row, so every sort and
# partition has one answer whatever numpy's algorithm (byte-identical output on any machine);
# equal random parts (p ~ 2^-25 per pair at S=128) are ordered by position.
_LAST = np.uint32(0xFFFFFFFF)
_MAX_BATCH_CELLS = 1 << 18  # rows * S per vectorised batch: ~2 MB per int64 matrix


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


def num_to_predict(
    lengths: np.ndarray | Sequence[int], max_predictions: int, masked_lm_prob: float
) -> np.ndarray:
    """Google's ``min(P, max(1, round(len * masked_lm_prob)))`` for an array of lengths.

    ``np.round`` rounds halves to even on the same float64 product, exactly like Python 3's
    ``round`` that Google uses (``round(16.5) == 16``). Lengths include [CLS] and both [SEP].
    """
    raw = np.round(np.asarray(lengths, np.int64) * float(masked_lm_prob)).astype(np.int64)
    return np.minimum(max_predictions, np.maximum(1, raw))


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


@dataclass
class _Batch:
    """Planned instances awaiting vectorised assembly and masking."""

    a0: list[int] = field(default_factory=list)
    la: list[int] = field(default_factory=list)
    b0: list[int] = field(default_factory=list)
    lb: list[int] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    shift: list[np.ndarray] = field(default_factory=list)  # per unit: [front_a.., front_b..]
    keys: list[np.ndarray] = field(default_factory=list)  # per unit: uint32 (m, S)
    uniforms: list[np.ndarray] = field(default_factory=list)  # per unit: (m, 2P)

    def __len__(self) -> int:
        return len(self.a0)


def _plan_unit(
    b: _Bucket,
    ui: int,
    dupe: int,
    cfg: MaskConfig,
    compat: GoogleCompat,
    out: _Batch,
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
    out.keys.append(rng.integers(0, 1 << (32 - _col_bits(S)), size=(m, S), dtype=np.uint32))
    out.uniforms.append(rng.random((m, 2 * cfg.max_predictions)))


def _mask_batch(
    b: _Bucket,
    batch: _Batch,
    cfg: MaskConfig,
    vocab: MaskVocab,
    compat: GoogleCompat,
    tally: Counter[str],
) -> Iterator[Instance]:
    """Assemble ``[CLS] A [SEP] B [SEP]`` for every planned instance and mask, vectorised.

    Rows are processed in slices of at most ``_batch_rows(cfg)``, so one huge document does
    not make huge temporaries.
    """
    front_a = np.concatenate([s[: s.shape[0] // 2] for s in batch.shift])
    front_b = np.concatenate([s[s.shape[0] // 2 :] for s in batch.shift])
    a0 = np.asarray(batch.a0, np.int64) + front_a
    la = np.asarray(batch.la, np.int64)
    b0 = np.asarray(batch.b0, np.int64) + front_b
    lb = np.asarray(batch.lb, np.int64)
    U = np.concatenate(batch.uniforms) if len(batch.uniforms) > 1 else batch.uniforms[0]
    K = np.concatenate(batch.keys) if len(batch.keys) > 1 else batch.keys[0]
    step = _batch_rows(cfg)
    for lo in range(0, len(batch), step):
        hi = lo + step
        yield from _mask_rows(
            b, a0[lo:hi], la[lo:hi], b0[lo:hi], lb[lo:hi], batch.label[lo:hi],
            U[lo:hi], K[lo:hi], cfg, vocab, compat, tally,
        )  # fmt: skip


def _mask_rows(
    b: _Bucket,
    a0: np.ndarray,
    la: np.ndarray,
    b0: np.ndarray,
    lb: np.ndarray,
    lab: list[int],
    U: np.ndarray,
    K: np.ndarray,
    cfg: MaskConfig,
    vocab: MaskVocab,
    compat: GoogleCompat,
    tally: Counter[str],
) -> Iterator[Instance]:
    S = cfg.max_seq_length
    P = cfg.max_predictions
    m = a0.shape[0]
    length = la + lb + 3
    col = np.arange(S, dtype=np.int64)[None, :]
    la_c = la[:, None]
    len_c = length[:, None]
    rows = np.arange(m)

    # Gather tokens: column c of a row is A[c - 1] for 1 <= c <= la, B[c - la - 2] after.
    idx = np.where(col <= la_c, a0[:, None] - 1 + col, b0[:, None] - 2 - la_c + col)
    np.clip(idx, 0, b.corpus.shape[0] - 1, out=idx)
    tok = b.corpus[idx]
    tok[:, 0] = vocab.cls_id
    tok[rows, la + 1] = vocab.sep_id
    tok[rows, length - 1] = vocab.sep_id
    valid = (col >= 1) & (col < len_c - 1) & (col != la_c + 1)
    tok[col >= len_c] = 0
    seg = ((col > la_c + 1) & (col < len_c)).astype(np.int8)

    k = np.minimum(num_to_predict(length, P, cfg.masked_lm_prob), length - 3)
    bits = _col_bits(S)
    keys = (K << np.uint32(bits)) | np.arange(S, dtype=np.uint32)
    keys[~valid] = _LAST  # specials and padding sort after every candidate
    if cfg.whole_word_mask:
        prow, pcol, dec_u, slot = _choose_whole_words(
            tok, valid, keys, k, U, vocab, compat, bits, P
        )
    else:
        prow, pcol, slot = _choose_positions(keys, k, P)
        dec_u = U[prow, slot]
    labels = tok[prow, pcol]
    rand_u = U[prow, P + slot]
    if compat.special_random_tokens:
        rand_tok = (rand_u * vocab.vocab_size).astype(np.int32)
    else:
        ordinary = vocab.ordinary_ids
        rand_tok = ordinary[(rand_u * ordinary.shape[0]).astype(np.intp)]
    is_mask = dec_u < 0.8
    is_rand = dec_u >= 0.9
    tok[prow[is_mask], pcol[is_mask]] = vocab.mask_id
    tok[prow[is_rand], pcol[is_rand]] = rand_tok[is_rand]

    n_masked = int(prow.shape[0])
    n_mask = int(np.count_nonzero(is_mask))
    n_rand = int(np.count_nonzero(is_rand))
    tally["mask/instances"] += m
    tally["mask/tokens"] += int(length.sum())
    tally["mask/masked"] += n_masked
    tally["mask/masked:mask_token"] += n_mask
    tally["mask/masked:random"] += n_rand
    tally["mask/masked:kept"] += n_masked - n_mask - n_rand

    positions = pcol.astype(np.int32)
    # Instances are views of these buffers: make them read-only so no consumer can change
    # one instance through another.
    for a in (tok, seg, positions, labels):
        a.flags.writeable = False
    counts = np.bincount(prow, minlength=m)
    ends = np.cumsum(counts).tolist()
    lens = length.tolist()
    lo = 0
    for r in range(m):
        hi = ends[r]
        n = lens[r]
        yield Instance(
            input_ids=tok[r, :n],
            segment_ids=seg[r, :n],
            masked_lm_positions=positions[lo:hi],
            masked_lm_ids=labels[lo:hi],
            next_sentence_label=lab[r],
        )
        lo = hi


def _choose_positions(
    keys: np.ndarray, k: np.ndarray, P: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k smallest keys of each row: a uniform k-subset of its candidates.

    This is Google's shuffle-and-take-the-first-k. The k-th smallest key is found by a
    partition to the P smallest and a sort of those; the positions come out ascending.
    Returns (row, column, slot) per masked position, slot = rank of the position in its row.
    """
    m = keys.shape[0]
    smallest = np.partition(keys, P - 1, axis=1)[:, :P]
    smallest.sort(axis=1)
    # Keys are unique within a row: exactly k of them are <= the k-th smallest.
    sel = keys <= smallest[np.arange(m), k - 1][:, None]
    prow, pcol = np.nonzero(sel)
    slot = np.arange(prow.shape[0]) - np.repeat(np.cumsum(k) - k, k)
    return prow, pcol, slot


def _choose_whole_words(
    tok: np.ndarray,
    valid: np.ndarray,
    keys: np.ndarray,
    k: np.ndarray,
    U: np.ndarray,
    vocab: MaskVocab,
    compat: GoogleCompat,
    bits: int,
    P: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Google's whole-word selection: shuffle words, add each that still fits in k pieces.

    Returns (row, column, decision uniform, slot) per masked piece, rows ascending and
    columns ascending within a row; the decision uniform is the word's (ours) or the
    piece's (``compat.per_piece_whole_word``).
    """
    m, S = tok.shape
    prev_valid = np.zeros_like(valid)
    prev_valid[:, 1:] = valid[:, :-1]
    # A word starts at every non-## piece and right after [CLS]/[SEP] (never spans a [SEP]).
    starts = valid & (~vocab.is_subword[tok] | ~prev_valid)
    brk = np.flatnonzero((~valid | starts).ravel())
    j = np.flatnonzero(starts.ravel()[brk])
    w_len = np.zeros(m * S, np.int64)
    w_len[brk[j]] = brk[j + 1] - brk[j]  # a word runs to the next break: start, [SEP], padding
    w_len = w_len.reshape(m, S)
    # Words in random order: sort each row's start keys; the low bits give the column.
    order = np.where(starts, keys, _LAST)
    order.sort(axis=1)
    # (Entries past a row's words hold _LAST: clip their column, they are never read.)
    cols = np.minimum(order & np.uint32((1 << bits) - 1), S - 1).astype(np.intp)
    n_words = np.count_nonzero(starts, axis=1).tolist()
    # The greedy fill rarely looks past the first few dozen words of a row.
    q = min(S, 2 * P + 16)
    head = np.take_along_axis(w_len, cols[:, :q], 1).tolist()
    targets = k.tolist()
    c_row: list[int] = []
    c_idx: list[int] = []
    c_rank: list[int] = []
    for r in range(m):
        target = targets[r]
        filled = rank = 0
        lens = head[r]
        for w in range(n_words[r]):
            if w == q:
                lens = w_len[r, cols[r, : n_words[r]]].tolist()
            n = lens[w]
            if filled + n > target:
                continue  # Google skips a word that would overshoot and tries the next
            c_row.append(r)
            c_idx.append(w)
            c_rank.append(rank)
            rank += 1
            filled += n
            if filled >= target:
                break
    rr = np.asarray(c_row, np.intp)
    c_col = cols[rr, np.asarray(c_idx, np.intp)]
    c_len = w_len[rr, c_col]
    # Expand the chosen words into pieces, then sort the pieces by position.
    n_pieces = int(c_len.sum())
    piece_word = np.repeat(np.arange(rr.shape[0]), c_len)
    within = np.arange(n_pieces) - np.repeat(np.cumsum(c_len) - c_len, c_len)
    flat = (rr * S + c_col)[piece_word] + within
    srt = np.argsort(flat)  # distinct values: any algorithm gives the same order
    flat = flat[srt]
    piece_word = piece_word[srt]
    prow = flat // S
    pcol = flat % S
    slot = np.arange(n_pieces) - np.searchsorted(prow, prow)
    # Ours: the word's decision for each of its pieces; Google's: one decision per piece.
    if compat.per_piece_whole_word:
        dec = U[prow, slot]
    else:
        dec = U[prow, np.asarray(c_rank, np.intp)[piece_word]]
    return prow, pcol, dec, slot


def _col_bits(S: int) -> int:
    return max(1, (S - 1).bit_length())


def _batch_rows(cfg: MaskConfig) -> int:
    return max(64, _MAX_BATCH_CELLS // cfg.max_seq_length)


class _HasSentences(Protocol):
    @property
    def sentences(self) -> Sequence[Sized]: ...


_D = TypeVar("_D", bound=_HasSentences)


def iter_buckets(docs: Iterable[_D], size: int, max_chars: int | None = None) -> Iterator[list[_D]]:
    """Consecutive buckets of ``size`` documents or ``max_chars`` characters, whichever first.

    ``docs`` are :class:`~corpus_pipeline.records.Document` (sizes in characters) or
    :class:`EncodedDocument` (sizes in tokens).

    A bucket closes at the document that reaches either limit, and never with fewer than two
    documents (negatives come from another document). The documents after the last full
    bucket join it when they are fewer than half a bucket in both respects (or just one), so
    no bucket is tiny. A full bucket is therefore yielded once half a bucket more has been
    read (or the input ends): at most one and a half buckets are held. Boundaries depend only
    on the documents.
    """
    limit = max_chars if max_chars is not None else 1 << 62

    def small(n: int, chars: int) -> bool:
        return n < 2 or (n < size / 2 and chars < limit / 2)

    pending: list[_D] | None = None  # a full bucket, held until we know no tail joins it
    held: list[_D] = []
    chars = 0
    for d in docs:
        held.append(d)
        chars += sum(len(s) for s in d.sentences)
        if pending is not None and not small(len(held), chars):
            yield pending
            pending = None
        if len(held) >= 2 and (len(held) >= size or chars >= limit):
            pending, held, chars = held, [], 0
    if pending is not None:
        yield pending + held if held else pending  # held is small here: it joins
    elif held:
        yield held


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
    limit = _batch_rows(cfg)
    batch = _Batch()
    try:
        for ui in range(len(b.offsets)):
            for dupe in range(cfg.dupe_factor):
                _plan_unit(b, ui, dupe, cfg, compat, batch, tally)
                if len(batch) >= limit:
                    yield from _mask_batch(b, batch, cfg, vocab, compat, tally)
                    batch = _Batch()
                    _flush(tally, count)
        if len(batch):
            yield from _mask_batch(b, batch, cfg, vocab, compat, tally)
    finally:
        _flush(tally, count)


def _flush(tally: Counter[str], count: CountFn) -> None:
    for name, n in tally.items():
        if n:
            count(name, n)
    tally.clear()


@dataclass(eq=False)
class MaskStats:
    """Mergeable statistics of masked instances (a Beam CombineFn accumulator).

    Everything but the short-target fraction is computed from the instances alone, so a
    CombineFn over the instance PCollection gives the report. The [MASK]/keep/random split is
    inferred per masked position: the input is [MASK] -> mask, equal to the label -> kept,
    else random. A random replacement that happens to draw the original token (about
    1 in 30,000 random draws with BERT's vocabulary) therefore counts as kept; the
    ``mask/masked:*`` counters hold the exact decisions. The short-target fraction needs the
    ``mask/short_target`` counter: fold counters in with :meth:`add_counters`.

    Attributes:
        max_seq_length: S, the histogram's last bin.
        mask_id: Id of [MASK].
        special: Optional bool[vocab_size] marking special/[unused*] ids, to count random
            replacements that are special (defect 3); None to skip.
    """

    max_seq_length: int
    mask_id: int
    special: np.ndarray | None = None
    instances: int = 0
    tokens: int = 0
    random_next: int = 0
    masked: int = 0
    masked_mask_token: int = 0
    masked_kept: int = 0
    masked_random: int = 0
    random_special: int = 0
    short_target: int | None = None
    length_hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        if self.length_hist.shape[0] != self.max_seq_length + 1:
            self.length_hist = np.zeros(self.max_seq_length + 1, np.int64)

    @classmethod
    def for_config(cls, cfg: MaskConfig, vocab: MaskVocab) -> MaskStats:
        """An empty accumulator for ``cfg`` that also counts special random replacements."""
        return cls(cfg.max_seq_length, vocab.mask_id, special=vocab.special_mask())

    def add(self, instance: Instance) -> MaskStats:
        """Account for one instance; returns self (CombineFn.add_input style)."""
        return self.add_many((instance,))

    def add_many(self, instances: Iterable[Instance]) -> MaskStats:
        """Account for many instances at once (faster than repeated :meth:`add`)."""
        lengths: list[int] = []
        ids: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for inst in instances:
            lengths.append(inst.input_ids.shape[0])
            self.random_next += int(inst.next_sentence_label)
            ids.append(inst.input_ids[inst.masked_lm_positions])
            labels.append(inst.masked_lm_ids)
        if not lengths:
            return self
        lens = np.asarray(lengths, np.int64)
        if lens.max() > self.max_seq_length:
            raise ValueError(f"instance of length {lens.max()} > S={self.max_seq_length}")
        self.instances += lens.shape[0]
        self.tokens += int(lens.sum())
        self.length_hist += np.bincount(lens, minlength=self.max_seq_length + 1)
        shown = np.concatenate(ids)
        orig = np.concatenate(labels)
        is_mask = shown == self.mask_id
        kept = shown == orig
        rand = ~is_mask & ~kept
        self.masked += int(shown.shape[0])
        self.masked_mask_token += int(np.count_nonzero(is_mask))
        self.masked_kept += int(np.count_nonzero(kept & ~is_mask))
        self.masked_random += int(np.count_nonzero(rand))
        if self.special is not None:
            self.random_special += int(np.count_nonzero(self.special[shown[rand]]))
        return self

    def add_counters(self, counters: Mapping[str, int]) -> MaskStats:
        """Fold in stage counters (``mask/short_target``); returns self."""
        if "mask/short_target" in counters or "mask/instances" in counters:
            self.short_target = (self.short_target or 0) + int(counters.get("mask/short_target", 0))
        return self

    def merge(self, other: MaskStats) -> MaskStats:
        """Add ``other`` into self; returns self (CombineFn.merge_accumulators style)."""
        if other.max_seq_length != self.max_seq_length:
            raise ValueError("cannot merge MaskStats of different max_seq_length")
        self.instances += other.instances
        self.tokens += other.tokens
        self.random_next += other.random_next
        self.masked += other.masked
        self.masked_mask_token += other.masked_mask_token
        self.masked_kept += other.masked_kept
        self.masked_random += other.masked_random
        self.random_special += other.random_special
        if other.short_target is not None:
            self.short_target = (self.short_target or 0) + other.short_target
        self.length_hist = self.length_hist + other.length_hist
        return self

    def to_dict(self) -> dict[str, Any]:
        """The report: counts, means, fractions (None where undefined) and the histogram."""
        n = self.instances
        m = self.masked

        def frac(a: int | None, d: int) -> float | None:
            return None if a is None or d == 0 else a / d

        return {
            "instances": n,
            "tokens": self.tokens,
            "mean_length": frac(self.tokens, n),
            "padding_fraction": None if n == 0 else 1.0 - self.tokens / (n * self.max_seq_length),
            "length_histogram": self.length_hist.tolist(),
            "short_target_fraction": frac(self.short_target, n),
            "random_next_fraction": frac(self.random_next, n),
            "masked": m,
            "masked_per_instance": frac(m, n),
            "masked_fraction": frac(m, self.tokens),
            "mask_token_fraction": frac(self.masked_mask_token, m),
            "kept_fraction": frac(self.masked_kept, m),
            "random_fraction": frac(self.masked_random, m),
            "random_special": self.random_special if self.special is not None else None,
        }


#: Warning thresholds (see :func:`statistical_warnings`).
MIN_RANDOM_NEXT = 0.40
MAX_LONG_SENTENCE_FRACTION = 0.01
MAX_UNK_FRACTION = 0.01


def counter_statistics(counters: Mapping[str, int]) -> dict[str, float | None]:
    """Statistics of a run that come from counters, not instances (None where undefined).

    ``unk_fraction``: [UNK] share of the encoded tokens (``encode/unk`` / ``encode/tokens``);
    ``tokens_per_char``: encoded tokens per character of document text (``encode/chars``);
    ``truncated_token_fraction``: share of document tokens (per duplicate) that no instance
    holds because ``truncate_seq_pair`` cut them (``mask/truncated_tokens`` /
    ``mask/source_tokens``; Google's algorithm itself cuts ~10% at S=128: a chunk grows by
    whole sentences until it reaches its target, then loses the overshoot);
    ``long_sentence_token_fraction``: the share that sentences longer than ``S - 3`` lose
    whatever the split (``mask/long_sentence_tokens`` / ``mask/source_tokens``).
    """

    def frac(a: str, d: str) -> float | None:
        den = counters.get(d, 0)
        return counters.get(a, 0) / den if den else None

    return {
        "unk_fraction": frac("encode/unk", "encode/tokens"),
        "tokens_per_char": frac("encode/tokens", "encode/chars"),
        "truncated_token_fraction": frac("mask/truncated_tokens", "mask/source_tokens"),
        "long_sentence_token_fraction": frac("mask/long_sentence_tokens", "mask/source_tokens"),
    }


def statistical_warnings(
    stats: Mapping[str, Any], counters: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Silent statistical failures of a run, as ``{code, message, value}`` dicts.

    Args:
        stats: The manifest's statistics (``random_next_fraction``, ``unk_fraction``,
            ``truncated_token_fraction``, ...; see :func:`counter_statistics`).
        counters: The run's counters (``mask/passed``, ``mask/truncated_tokens``, ...).

    Codes: ``few_documents`` (fewer than 2 documents with tokens: no NSP negative is
    possible), ``low_random_next`` (NSP random-next share below :data:`MIN_RANDOM_NEXT`;
    Google's is ~0.5), ``truncation`` (more than :data:`MAX_LONG_SENTENCE_FRACTION` of the
    document tokens are in sentences longer than ``S - 3``, beyond ``S - 3``: truncation cuts
    them whatever the split; the normal overshoot cut, ~10% at S=128, does not warn), ``unk`` (more than
    :data:`MAX_UNK_FRACTION` of the tokens are [UNK]: the vocabulary does not fit the text).
    """
    out: list[dict[str, Any]] = []
    docs = int(counters.get("mask/passed", 0))
    if docs < 2:
        out.append(
            {
                "code": "few_documents",
                "message": f"the corpus has {docs} document(s) with tokens: NSP has no "
                "random-next negatives (they come from another document); add documents",
                "value": docs,
            }
        )
    rn = stats.get("random_next_fraction")
    if rn is not None and rn < MIN_RANDOM_NEXT:
        fallback = int(counters.get("mask/fallback:no_negative_available", 0))
        dropped = int(counters.get("mask/dropped:no_negative_available", 0))
        out.append(
            {
                "code": "low_random_next",
                "message": f"NSP random next is {100 * rn:.1f}% (Google's ~50%): "
                f"{fallback:,} instances fell back to the actual next and {dropped:,} were "
                "dropped for want of another document",
                "value": rn,
            }
        )
    long = stats.get("long_sentence_token_fraction")
    if long is not None and long > MAX_LONG_SENTENCE_FRACTION:
        lost = int(counters.get("mask/truncated_tokens", 0))
        tr = stats.get("truncated_token_fraction") or 0.0
        out.append(
            {
                "code": "truncation",
                "message": f"{lost:,} document tokens ({100 * tr:.1f}%) were cut by truncation, "
                f"{100 * long:.1f}% in sentences longer than S - 3 that no instance can hold: "
                "raise --max-seq-length or split the text into shorter sentences",
                "value": long,
            }
        )
    unk = stats.get("unk_fraction")
    if unk is not None and unk > MAX_UNK_FRACTION:
        out.append(
            {
                "code": "unk",
                "message": f"{100 * unk:.1f}% of the tokens are [UNK]: the vocabulary does not "
                "fit the text; train one with `corpus-pipeline vocab` or pass --vocab "
                "(--cased for cased text)",
                "value": unk,
            }
        )
    return out
