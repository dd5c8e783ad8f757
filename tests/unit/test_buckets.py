"""Negative-sampling buckets and spill chunks: what bounds the memory of masking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corpus_pipeline.beam.mask import iter_chunks
from corpus_pipeline.records import Document
from corpus_pipeline.stages.buckets import iter_buckets


def docs_of(lengths: list[int]) -> list[Document]:
    return [Document(str(i), "", "test", ["x" * n]) for i, n in enumerate(lengths)]


def chars(bucket: list[Document]) -> int:
    return sum(len(s) for d in bucket for s in d.sentences)


def test_document_count_limit_and_tail_merge() -> None:
    # 10 documents, size 4: 4 + 4, and the tail of 2 (half a bucket) stays its own bucket.
    assert [len(b) for b in iter_buckets(docs_of([1] * 10), 4)] == [4, 4, 2]
    # 9 documents: the tail of 1 joins the last full bucket.
    assert [len(b) for b in iter_buckets(docs_of([1] * 9), 4)] == [4, 5]


def test_character_limit_cuts_buckets_of_long_documents() -> None:
    # 4096 documents allowed, but 100 characters at most: long documents make small buckets.
    buckets = list(iter_buckets(docs_of([30] * 20), 4096, 100))
    assert [len(b) for b in buckets] == [4, 4, 4, 4, 4]
    assert all(chars(b) <= 120 for b in buckets)


def test_a_document_longer_than_the_limit_still_gets_a_partner() -> None:
    buckets = list(iter_buckets(docs_of([500, 10, 500, 500, 10, 10, 10]), 4096, 100))
    assert all(len(b) >= 2 for b in buckets)
    assert [len(b) for b in buckets] == [2, 5]  # the short tail joined the last bucket


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 300), max_size=60),
    st.integers(1, 12),
    st.integers(1, 1000),
)
def test_buckets_partition_the_documents_in_order(
    lengths: list[int], size: int, limit: int
) -> None:
    docs = docs_of(lengths)
    buckets = list(iter_buckets(iter(docs), size, limit))
    assert [d for b in buckets for d in b] == docs
    assert all(b for b in buckets)
    if len(docs) >= 2:
        assert all(len(b) >= 2 for b in buckets)
    biggest = max(lengths, default=0)
    for b in buckets[:-1]:
        # A bucket closes at the document that crosses a limit (or makes it two documents).
        assert len(b) <= max(size, 2)
        assert chars(b[:-1]) < limit or len(b) <= 2
    if buckets:
        # The last bucket may hold a merged tail: under 1.5 buckets, or a full one + 1 document.
        last = buckets[-1]
        assert len(last) < max(size, 2) + max(size, 2) / 2 + 1
        assert chars(last) <= limit + limit / 2 + 3 * biggest


def test_chunks() -> None:
    assert list(iter_chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(iter_chunks([], 3)) == []


def test_a_full_bucket_is_yielded_after_half_a_bucket_more() -> None:
    """Memory: at most one and a half buckets of documents are held at a time."""
    consumed = 0

    def counted(docs: list[Document]):
        nonlocal consumed
        for d in docs:
            consumed += 1
            yield d

    seen = []
    for bucket in iter_buckets(counted(docs_of([1] * 40)), 8):
        seen.append((len(bucket), consumed))
    # Each bucket of 8 comes out once 4 more documents (half a bucket) have been read.
    assert seen == [(8, 12), (8, 20), (8, 28), (8, 36), (8, 40)]
    consumed, seen = 0, []
    for bucket in iter_buckets(counted(docs_of([30] * 20)), 4096, 100):
        seen.append((len(bucket), consumed))
    assert seen == [(4, 6), (4, 10), (4, 14), (4, 18), (4, 20)]
