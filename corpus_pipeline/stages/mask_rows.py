"""Assembly and masking of planned instances, vectorised over batches of rows.

``stages/masking.py`` plans each instance as token ranges into the bucket's flat token array
(A and B, their truncation trims, the label) and draws its random numbers; here every planned
row becomes ``[CLS] A [SEP] B [SEP]`` and gets its masked positions with Google's rules
(a uniform k-subset of the candidates, or whole words chosen greedily in random order; 80/10/10
[MASK]/keep/random), a few thousand rows at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from corpus_pipeline.config import MaskConfig
from corpus_pipeline.records import Instance

if TYPE_CHECKING:
    from corpus_pipeline.stages.masking import GoogleCompat, MaskVocab

# Random numbers per instance row: S random integer keys that order its candidate positions
# (or words), and 2P float64 uniforms: P [MASK]/keep/random decisions, P random-token draws.
# A key is stored as (random << col_bits) | column: unique within a row, so every sort and
# partition has one answer whatever numpy's algorithm (byte-identical output on any machine);
# equal random parts (p ~ 2^-25 per pair at S=128) are ordered by position.
_LAST = np.uint32(0xFFFFFFFF)
_MAX_BATCH_CELLS = 1 << 18  # rows * S per vectorised batch: ~2 MB per int64 matrix


def num_to_predict(
    lengths: np.ndarray | Sequence[int], max_predictions: int, masked_lm_prob: float
) -> np.ndarray:
    """Google's ``min(P, max(1, round(len * masked_lm_prob)))`` for an array of lengths.

    ``np.round`` rounds halves to even on the same float64 product, exactly like Python 3's
    ``round`` that Google uses (``round(16.5) == 16``). Lengths include [CLS] and both [SEP].
    """
    raw = np.round(np.asarray(lengths, np.int64) * float(masked_lm_prob)).astype(np.int64)
    return np.minimum(max_predictions, np.maximum(1, raw))


@dataclass
class PlannedRows:
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


def mask_planned(
    corpus: np.ndarray,
    batch: PlannedRows,
    cfg: MaskConfig,
    vocab: MaskVocab,
    compat: GoogleCompat,
    tally: Counter[str],
) -> Iterator[Instance]:
    """Assemble ``[CLS] A [SEP] B [SEP]`` for every planned instance and mask, vectorised.

    Rows are processed in slices of at most ``batch_rows(cfg)``, so one huge document does
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
    step = batch_rows(cfg)
    for lo in range(0, len(batch), step):
        hi = lo + step
        yield from _mask_rows(
            corpus, a0[lo:hi], la[lo:hi], b0[lo:hi], lb[lo:hi], batch.label[lo:hi],
            U[lo:hi], K[lo:hi], cfg, vocab, compat, tally,
        )  # fmt: skip


def _mask_rows(
    corpus: np.ndarray,
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
    np.clip(idx, 0, corpus.shape[0] - 1, out=idx)
    tok = corpus[idx]
    tok[:, 0] = vocab.cls_id
    tok[rows, la + 1] = vocab.sep_id
    tok[rows, length - 1] = vocab.sep_id
    valid = (col >= 1) & (col < len_c - 1) & (col != la_c + 1)
    tok[col >= len_c] = 0
    seg = ((col > la_c + 1) & (col < len_c)).astype(np.int8)

    k = np.minimum(num_to_predict(length, P, cfg.masked_lm_prob), length - 3)
    bits = col_bits(S)
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


def col_bits(S: int) -> int:
    return max(1, (S - 1).bit_length())


def batch_rows(cfg: MaskConfig) -> int:
    return max(64, _MAX_BATCH_CELLS // cfg.max_seq_length)
