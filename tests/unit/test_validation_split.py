"""Which documents ``--validation-docs`` holds out (``beam/mask_buckets.py``: ValidationSplit,
Candidates, corpus_totals), without Beam: the choice depends on the documents and the seed
only, never on how they are spread over files or in what order they come."""

from __future__ import annotations

import random

import pytest

from corpus_pipeline.beam.mask_buckets import Candidates, ValidationSplit, corpus_totals
from corpus_pipeline.config import MaskConfig
from corpus_pipeline.errors import UserError

KEYS = [f"doc-{i}" for i in range(500)]
CHARS = {k: 10 + i for i, k in enumerate(KEYS)}


def _held(split: ValidationSplit, files: list[list[str]]) -> set[str]:
    """The held-out keys when the corpus is spread over ``files`` as given."""
    counted = []
    for f, keys in enumerate(files):
        c = Candidates(split)
        for k in keys:
            c.add(split.hash(k), 1, CHARS[k])
        counted.append(((f, f"file{f}"), len(keys), sum(CHARS[k] for k in keys), c.rows()))
    totals = corpus_totals(counted, split)
    held = [k for keys in files for k in keys if split.hash(k) < totals.limit]
    assert totals.val_documents == len(held)
    assert totals.val_chars == sum(CHARS[k] for k in held)
    assert totals.documents + totals.val_documents == sum(len(f) for f in files)
    return set(held)


def _spread(keys: list[str], n: int, seed: int) -> list[list[str]]:
    keys = keys[:]
    random.Random(seed).shuffle(keys)
    return [keys[i::n] for i in range(n)]


def test_a_count_holds_out_exactly_the_n_smallest_hashes_however_files_are_cut():
    split = ValidationSplit(seed=7, count=25)
    want = set(sorted(KEYS, key=split.hash)[:25])
    assert _held(split, [KEYS]) == want
    for n, seed in ((3, 1), (17, 2), (500, 3)):
        assert _held(split, _spread(KEYS, n, seed)) == want


def test_the_seed_changes_the_choice():
    a = _held(ValidationSplit(seed=1, count=25), [KEYS])
    b = _held(ValidationSplit(seed=2, count=25), [KEYS])
    assert len(a) == len(b) == 25 and a != b


def test_copies_of_a_document_go_together():
    split = ValidationSplit(seed=7, count=3)
    first = sorted(KEYS, key=split.hash)[:3]
    files = [KEYS + first, first + first]  # each chosen document three times in all
    assert _held(split, files) == set(first)  # 3 distinct documents, 9 copies held out
    counted = [((0, "a"), 0, 0, [(split.hash(k), 3, 3 * CHARS[k]) for k in first])]
    assert corpus_totals(counted, split).val_documents == 9


def test_a_fraction_is_decided_per_document():
    split = ValidationSplit(seed=7, fraction=0.1)
    held = _held(split, [KEYS])
    assert held == _held(split, _spread(KEYS, 9, 4))
    assert 25 <= len(held) <= 75  # ~50 of 500
    assert held == {k for k in KEYS if split.hash(k) < 0.1 * 2**63}


def test_a_count_above_the_corpus_holds_everything_out():
    split = ValidationSplit(seed=7, count=10_000)
    assert _held(split, _spread(KEYS, 4, 5)) == set(KEYS)


def test_candidates_stay_bounded_by_the_count():
    c = Candidates(ValidationSplit(seed=7, count=10))
    for k in KEYS:
        c.add(c.split.hash(k), 1, 1)
        assert len(c.by_hash) <= 20
    assert len(c.rows()) == 10


def test_from_config():
    assert ValidationSplit.of(MaskConfig()) is None
    assert ValidationSplit.of(MaskConfig(validation_docs=100)) == ValidationSplit(12345, count=100)
    assert ValidationSplit.of(MaskConfig(validation_docs=0.01)) == ValidationSplit(
        12345, fraction=0.01
    )


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.25])
def test_bad_values_are_refused(bad):
    with pytest.raises(UserError, match="--validation-docs"):
        MaskConfig(validation_docs=bad).validate()
