"""Shared fixtures: the bundled real data."""

from __future__ import annotations

import os

import pytest

from corpus_pipeline import resources

# Beam workers and tokenizers must not oversubscribe the 2 cores of CI.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The longest test files, longest first (seconds under `make test`: 2 workers on a busy 2-core
# machine), so that pytest-xdist's workers (one file each at a time, handed out in this order
# with --no-loadscope-reorder, see the Makefile) end on short files at about the same time.
# Each worker gets two files at the start: test_pack_cli (second, on the other worker than
# test_bad_input) makes the shared wiki_docs/wiki_masked outputs (tests/e2e/conftest.py)
# while the first worker runs files that do not need them.
SLOW_FIRST = (
    "tests/faults/test_bad_input.py",  # ~24
    "tests/e2e/test_pack_cli.py",  # ~21, with wiki_docs and wiki_masked
    "tests/e2e/test_pipeline.py",  # ~24
    "tests/e2e/test_isolated_workers.py",  # ~23
    "tests/e2e/test_nsp_buckets.py",  # ~22
    "tests/e2e/test_single_stream_workers.py",  # ~19
    "tests/unit/test_wikipedia.py",  # ~18
    "tests/e2e/test_mask_cli.py",  # ~17
    "tests/faults/test_kill.py",  # ~17
    "tests/e2e/test_progress.py",  # ~17
    "tests/unit/test_wikipedia_shares.py",  # ~15
    "tests/e2e/test_any_corpus.py",  # ~15
    "tests/e2e/test_validation_split.py",  # ~13
    "tests/unit/test_masking.py",  # ~12
    "tests/e2e/test_extract_cli.py",  # ~12
    "tests/e2e/test_train.py",  # ~11
    "tests/faults/test_reused_output.py",  # ~10
    "tests/unit/test_wordpiece.py",  # ~10
    "tests/faults/test_one_error_line.py",  # ~7
    "tests/faults/test_worker_death.py",  # ~7
    "tests/faults/test_arguments.py",  # ~7
    "tests/e2e/test_train_integrity.py",  # ~6
    "tests/e2e/test_train_eval_export.py",  # ~6
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def wiki_dump():
    return resources.SAMPLE_WIKI_DUMP


@pytest.fixture(scope="session")
def books_dir():
    return resources.SAMPLE_BOOKS_DIR


@pytest.fixture(scope="session")
def uncased_vocab():
    return resources.UNCASED_VOCAB
