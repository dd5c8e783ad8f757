"""Shared fixtures: the bundled real data."""

from __future__ import annotations

import os

import pytest

from corpus_pipeline import resources

# Beam workers and tokenizers must not oversubscribe the 2 cores of CI.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The longest test files (seconds, serial, on a busy 2-core machine), started first so that
# `make test`'s parallel workers (pytest-xdist, one file per worker at a time) do not end on
# one of them. pytest-xdist hands each worker two files at the start, in this order:
# test_pack_cli makes the shared wiki_docs/wiki_masked outputs (tests/e2e/conftest.py) while
# the other worker runs files that do not need them.
SLOW_FIRST = (
    "tests/faults/test_bad_input.py",  # ~40
    "tests/e2e/test_pack_cli.py",  # ~35, with wiki_docs and wiki_masked
    "tests/e2e/test_pipeline.py",  # ~30
    "tests/e2e/test_extract_cli.py",  # ~30
    "tests/e2e/test_isolated_workers.py",  # ~27
    "tests/e2e/test_nsp_buckets.py",  # ~27
    "tests/faults/test_kill.py",  # ~25
    "tests/faults/test_reused_output.py",  # ~24
    "tests/faults/test_worker_death.py",  # ~20
    "tests/e2e/test_mask_cli.py",  # ~20
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
