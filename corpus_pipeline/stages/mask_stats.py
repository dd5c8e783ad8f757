"""The report of a masked dataset and its statistical warnings.

:class:`MaskStats` accumulates the report of the README's ``mask`` section from the instances
alone (mergeable, for a Beam CombineFn); the short-target fraction comes from the
``mask/short_target`` counter, and the counters ``mask/masked:*`` hold the exact 80/10/10
decisions (the instance-derived split counts a random draw of the original token as kept).
:func:`counter_statistics` adds what only the counters know, and :func:`statistical_warnings`
names the silent failures of a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corpus_pipeline.config import MaskConfig
from corpus_pipeline.records import Instance
from corpus_pipeline.stages.masking import MaskVocab


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


def _warning(code: str, message: str, value: Any) -> dict[str, Any]:
    """One :func:`statistical_warnings` entry: code, line for the user, the number behind it."""
    return {"code": code, "message": message, "value": value}


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
            _warning(
                "few_documents",
                f"the corpus has {docs} document(s) with tokens: NSP has no "
                "random-next negatives (they come from another document); add documents",
                docs,
            )
        )
    rn = stats.get("random_next_fraction")
    if rn is not None and rn < MIN_RANDOM_NEXT:
        fallback = int(counters.get("mask/fallback:no_negative_available", 0))
        dropped = int(counters.get("mask/dropped:no_negative_available", 0))
        out.append(
            _warning(
                "low_random_next",
                f"NSP random next is {100 * rn:.1f}% (Google's ~50%): "
                f"{fallback:,} instances fell back to the actual next and {dropped:,} were "
                "dropped for want of another document",
                rn,
            )
        )
    long = stats.get("long_sentence_token_fraction")
    if long is not None and long > MAX_LONG_SENTENCE_FRACTION:
        lost = int(counters.get("mask/truncated_tokens", 0))
        tr = stats.get("truncated_token_fraction") or 0.0
        out.append(
            _warning(
                "truncation",
                f"{lost:,} document tokens ({100 * tr:.1f}%) were cut by truncation, "
                f"{100 * long:.1f}% in sentences longer than S - 3 that no instance can hold: "
                "raise --max-seq-length or split the text into shorter sentences",
                long,
            )
        )
    unk = stats.get("unk_fraction")
    if unk is not None and unk > MAX_UNK_FRACTION:
        out.append(
            _warning(
                "unk",
                f"{100 * unk:.1f}% of the tokens are [UNK]: the vocabulary does not "
                "fit the text; train one with `corpus-pipeline vocab` or pass --vocab "
                "(--cased for cased text)",
                unk,
            )
        )
    return out
