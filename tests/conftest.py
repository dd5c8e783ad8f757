"""Shared fixtures: the bundled real data."""

from __future__ import annotations

import os

import pytest

from corpus_pipeline import resources

# Beam workers and tokenizers must not oversubscribe the 2 cores of CI.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def wiki_dump():
    return resources.SAMPLE_WIKI_DUMP


@pytest.fixture(scope="session")
def books_dir():
    return resources.SAMPLE_BOOKS_DIR


@pytest.fixture(scope="session")
def uncased_vocab():
    return resources.UNCASED_VOCAB
