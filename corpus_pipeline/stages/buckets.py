"""Cutting a stream of documents into buckets: the documents NSP negatives are drawn from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Protocol, TypeVar


class _HasSentences(Protocol):
    @property
    def sentences(self) -> Sequence[Sized]: ...


_D = TypeVar("_D", bound=_HasSentences)


def iter_buckets(docs: Iterable[_D], size: int, max_chars: int | None = None) -> Iterator[list[_D]]:
    """Consecutive buckets of ``size`` documents or ``max_chars`` characters, whichever first.

    ``docs`` are :class:`~corpus_pipeline.records.Document` (sizes in characters) or
    :class:`~corpus_pipeline.records.EncodedDocument` (sizes in tokens).

    A bucket closes at the document that reaches either limit, and never with fewer than two
    documents (negatives come from another document). The documents after the last full
    bucket join it when they are fewer than half a bucket in both respects (or just one), so
    no bucket is tiny. A full bucket is therefore yielded once half a bucket more has been
    read (or the input ends): at most one and a half buckets are held. Boundaries depend only
    on the documents.
    """
    limit = max_chars if max_chars is not None else 1 << 62

    def small(n: int, chars: int) -> bool:
        return n < 2 or (n < size / 2 and chars < limit / 2)

    pending: list[_D] | None = None  # a full bucket, held until we know no tail joins it
    held: list[_D] = []
    chars = 0
    for d in docs:
        held.append(d)
        chars += sum(len(s) for s in d.sentences)
        if pending is not None and not small(len(held), chars):
            yield pending
            pending = None
        if len(held) >= 2 and (len(held) >= size or chars >= limit):
            pending, held, chars = held, [], 0
    if pending is not None:
        yield pending + held if held else pending  # held is small here: it joins
    elif held:
        yield held
