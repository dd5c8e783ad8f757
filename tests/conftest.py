"""Shared fixtures: the bundled real data."""

from __future__ import annotations

import os

import pytest

from corpus_pipeline import resources

# Beam workers and tokenizers must not oversubscribe the 2 cores of CI.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The longest test files, longest first (seconds under `make test` on 2 cores), so that
# pytest-xdist's workers (one file each at a time, handed out in this order with
# --no-loadscope-reorder, see the Makefile) end on short files at about the same time. The
# first, test_pack_cli, makes the shared wiki_docs/wiki_masked outputs (tests/e2e/conftest.py)
# while the other worker starts on files that do not need them.
SLOW_FIRST = (
    "tests/e2e/test_pack_cli.py",  # ~22, with wiki_docs and wiki_masked
    "tests/e2e/test_isolated_workers.py",  # ~20
    "tests/unit/test_wikipedia_shares.py",  # ~17
    "tests/faults/test_bad_input.py",  # ~15
    "tests/e2e/test_pipeline.py",  # ~13
    "tests/e2e/test_validation_split.py",  # ~13
    "tests/e2e/test_nsp_buckets.py",  # ~12
    "tests/faults/test_kill.py",  # ~11
    "tests/faults/test_reused_output.py",  # ~11
    "tests/e2e/test_single_stream_workers.py",  # ~10
    "tests/unit/test_wikipedia.py",  # ~10
    "tests/e2e/test_any_corpus.py",  # ~10
    "tests/e2e/test_train.py",  # ~10
    "tests/e2e/test_mask_cli.py",  # ~9
    "tests/e2e/test_progress.py",  # ~9
    "tests/e2e/test_extract_cli.py",  # ~9
    "tests/faults/test_worker_death.py",  # ~8
    "tests/unit/test_masking.py",  # ~7
    "tests/unit/test_wordpiece.py",  # ~6
    "tests/faults/test_one_error_line.py",  # ~6
    "tests/faults/test_arguments.py",  # ~6
    "tests/e2e/test_corrupt_block_loss.py",  # ~6
    "tests/e2e/test_train_integrity.py",  # ~5
    "tests/faults/test_interrupt_in_process.py",  # ~5
    "tests/e2e/test_train_eval_export.py",  # ~5
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
