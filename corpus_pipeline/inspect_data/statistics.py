"""Statistics of a dataset's records, computed from the shards alone.

The statistics are those of the README's masking section computed from the records (the
[MASK] / kept / random split is inferred per masked position: input equal to [MASK] -> mask,
equal to the original -> kept, else random), plus, for packed data, packs, pack sizes and the
packing efficiency. Records are streamed shard by shard; memory holds only the histograms.

Like ``verify``, this reads shards serially on the launcher, not in a Beam pipeline: it is one
pass of I/O whose result is a few numbers on the console.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from tqdm import tqdm

from corpus_pipeline.formats.common import FormatError
from corpus_pipeline.inspect_data.dataset import (
    FormatView,
    Vocabulary,
    load_vocabulary,
    open_dataset,
)
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.stages.mask_stats import MaskStats

__all__ = ["format_statistics", "dataset_statistics"]

_BATCH = 1024
#: Most frequent tokens reported (enough to see [UNK] or stray markup near the top).
TOP_TOKENS = 20
#: Tokens that frame or pad a sequence: not text, so not in the token shares.
FRAME_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]")


def _original_ids(inst: Instance) -> np.ndarray:
    """The instance's ids with each masked position holding its original token."""
    ids = np.array(inst.input_ids, dtype=np.int64)
    pos = inst.masked_lm_positions
    if pos.size:
        ids[pos] = inst.masked_lm_ids
    return ids


def _token_statistics(counts: np.ndarray, vocab: Vocabulary, top: int) -> dict[str, Any]:
    """[UNK] share, tokens per character and the most frequent tokens, from token counts."""
    content = counts.copy()
    for tok in FRAME_TOKENS:
        if tok in vocab.index:
            content[vocab.index[tok]] = 0
    spelled = np.fromiter(
        (1 if t == "[UNK]" else len(t[2:] if t.startswith("##") else t) for t in vocab.tokens),
        np.int64,
        len(vocab.tokens),
    )
    n = int(content.sum())
    chars = int(content @ spelled)
    unk = int(content[vocab.index["[UNK]"]]) if "[UNK]" in vocab.index else 0
    order = np.lexsort((np.arange(content.size), -content))[:top]
    top_tokens = [
        [vocab.tokens[i], int(content[i]), int(content[i]) / n]
        for i in order.tolist()
        if content[i]
    ]
    return {
        "content_tokens": n,
        "unk_fraction": unk / n if n else None,
        "tokens_per_character": n / chars if chars else None,
        "top_tokens": top_tokens,
    }


def _instances(rec: Instance | Pack) -> list[Instance]:
    return rec.instances if isinstance(rec, Pack) else [rec]


def _check_masked_positions(batch: list[Instance], where: list[tuple[str, int]]) -> None:
    """Raise one line naming the first instance whose masked positions leave its sequence."""
    for inst, (path, row) in zip(batch, where, strict=True):
        pos = inst.masked_lm_positions
        if pos.size and (int(pos.max()) >= len(inst.input_ids) or int(pos.min()) < 0):
            bad = int(pos.max()) if int(pos.max()) >= len(inst.input_ids) else int(pos.min())
            raise FormatError(
                f"{path}: row {row}: masked position {bad} is outside its sequence of "
                f"{len(inst.input_ids)} tokens: not a valid BERT pretraining shard "
                "(run `corpus-pipeline verify` on folders we wrote)"
            )


def format_statistics(
    view: FormatView, vocab: Vocabulary, *, top: int = TOP_TOKENS
) -> dict[str, Any]:
    """Statistics of one format's records (streamed).

    Token ids (inputs and masked originals) outside the vocabulary are counted in
    ``out_of_vocab_ids`` (``out_of_vocab_first``: where the first one is): decoded text shows
    them as ``<id>``, and a model with that vocabulary cannot embed them.

    The token counts are over the *original* text: masked positions count their original token
    (``masked_lm_ids``), not what the input shows. Content tokens are all but [CLS], [SEP],
    [PAD] and [MASK]; ``tokens_per_character`` divides them by the characters they spell (a
    ``##`` piece without its ``##``, [UNK] as one character; spaces are not in the shards).

    Raises:
        FormatError: A masked position outside its sequence, or a pack longer than S.

    Returns:
        ``instances``, ``tokens``, ``mean_length``, ``padding_fraction``,
        ``length_histogram`` (``[i]`` = instances of i tokens, 0..S), ``random_next_fraction``,
        ``masked``, ``masked_per_instance``, ``masked_fraction``, ``mask_token_fraction``,
        ``kept_fraction``, ``random_fraction``, ``masked_count_histogram`` (0..P), ``records``,
        ``shards``, ``out_of_vocab_ids``, ``out_of_vocab_first``, ``content_tokens``,
        ``unk_fraction`` ([UNK] / content tokens), ``tokens_per_character``, ``top_tokens``
        (the ``top`` most frequent content tokens: ``[token, count, share of content
        tokens]``, ties by id); packed data adds ``packs``, ``packing_efficiency``,
        ``sequences_per_pack`` (mean), ``pack_size_histogram`` (0..K) and
        ``pack_length_histogram`` (0..S), and its ``padding_fraction`` is that of the packed
        rows.
    """
    s = view.max_seq_length
    vocab_size = len(vocab.tokens)
    stats = MaskStats(s, vocab.mask_id)
    token_counts = np.zeros(vocab_size, np.int64)
    masked_hist = np.zeros(view.max_predictions + 1, np.int64)
    k = view.max_per_pack or 1
    pack_sizes = np.zeros(k + 1, np.int64)
    pack_lengths = np.zeros(s + 1, np.int64)
    records = 0
    batch: list[Instance] = []
    where: list[tuple[str, int]] = []  # (shard path, row) of each instance of the batch
    oov = 0
    oov_first: str | None = None

    def flush() -> None:
        nonlocal masked_hist, oov, oov_first, token_counts
        if not batch:
            return
        try:
            stats.add_many(batch)
        except IndexError:
            _check_masked_positions(batch, where)
            raise
        ids = np.concatenate([np.concatenate((i.input_ids, i.masked_lm_ids)) for i in batch])
        bad = (ids < 0) | (ids >= vocab_size)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            if oov_first is None:
                first = next(
                    j
                    for j, i in enumerate(batch)
                    if ((i.input_ids >= vocab_size) | (i.input_ids < 0)).any()
                    or ((i.masked_lm_ids >= vocab_size) | (i.masked_lm_ids < 0)).any()
                )
                oov_first = f"{where[first][0]} row {where[first][1]}"
            oov += n_bad
        original = np.concatenate([_original_ids(i) for i in batch])
        original = original[(original >= 0) & (original < vocab_size)]
        token_counts += np.bincount(original, minlength=vocab_size)
        m = np.fromiter((i.masked_lm_positions.shape[0] for i in batch), np.int64, len(batch))
        if m.max(initial=0) >= masked_hist.shape[0]:
            masked_hist = np.pad(masked_hist, (0, int(m.max()) + 1 - masked_hist.shape[0]))
        masked_hist += np.bincount(m, minlength=masked_hist.shape[0])
        batch.clear()
        where.clear()

    # A bar over the shards read, as the other verbs show theirs: on stderr, on a terminal
    # only, and none under -q (which sets CORPUS_PIPELINE_QUIET).
    bar = tqdm(
        total=len(view.shards),
        desc="inspect",
        unit="shard",
        file=sys.stderr,
        disable=True if os.environ.get("CORPUS_PIPELINE_QUIET") else None,
    )
    for shard in view.shards:
        for row, rec in enumerate(shard.open()):
            records += 1
            members = _instances(rec)
            if view.packed:
                n, length = len(members), sum(len(i) for i in members)
                if n >= pack_sizes.shape[0]:
                    pack_sizes = np.pad(pack_sizes, (0, n + 1 - pack_sizes.shape[0]))
                pack_sizes[n] += 1
                if length > s:
                    raise FormatError(
                        f"{shard.path}: row {row}: a pack of {length} tokens is longer than S={s}"
                    )
                pack_lengths[length] += 1
            batch.extend(members)
            where.extend([(shard.path, row)] * len(members))
            if len(batch) >= _BATCH:
                flush()
        bar.update(1)
    bar.close()
    flush()
    d = stats.to_dict()
    for key in ("short_target_fraction", "random_special"):
        d.pop(key, None)  # need the masking counters / a special-token table: not in the shards
    d["masked_count_histogram"] = masked_hist.tolist()
    d["records"] = records
    d["shards"] = len(view.shards)
    d["packs"] = records if view.packed else None
    d["out_of_vocab_ids"] = oov
    d["out_of_vocab_first"] = oov_first
    d.update(_token_statistics(token_counts, vocab, top))
    if view.packed:
        slots = records * s
        eff = d["tokens"] / slots if slots else None
        d["packing_efficiency"] = eff
        d["sequences_per_pack"] = d["instances"] / records if records else None
        d["padding_fraction"] = None if eff is None else 1.0 - eff
        d["pack_size_histogram"] = pack_sizes.tolist()
        d["pack_length_histogram"] = pack_lengths.tolist()
    return d


def dataset_statistics(
    out_dir: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    vocab: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Statistics of a dataset folder, per format.

    Args:
        out_dir: A dataset folder (with or without a manifest).
        fmt: One format (default: every format found).
        vocab: Vocabulary file (to find [MASK]); see :func:`load_vocabulary`.

    Returns:
        ``{"path", "manifest" (bool), "vocab" (file), "formats": {fmt: {"kind",
        "max_seq_length", "max_predictions", "max_per_pack", "derived_widths", **statistics}}}``
        with the statistics of :func:`format_statistics`.

    Raises:
        UserError: No such folder, no shards, unknown format or unreadable shards.
    """
    view = open_dataset(out_dir)
    voc = load_vocabulary(view, vocab)
    fmts = [fmt] if fmt is not None else list(view.formats)
    out: dict[str, Any] = {
        "path": str(out_dir),
        "manifest": view.manifest is not None,
        "vocab": voc.source,
        "formats": {},
    }
    for f in fmts:
        fv = view.view(f)
        out["formats"][f] = {
            "kind": "packed" if fv.packed else "instances",
            "max_seq_length": fv.max_seq_length,
            "max_predictions": fv.max_predictions,
            "max_per_pack": fv.max_per_pack,
            "derived_widths": fv.derived,
            **format_statistics(fv, voc),
        }
    return out
