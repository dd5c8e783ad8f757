"""One torch thread for the trainer tests (import the fixture into a test module to use it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    # Tests share a couple of cores: OpenMP threads spinning against other processes make a
    # tiny model ~10x slower than one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
