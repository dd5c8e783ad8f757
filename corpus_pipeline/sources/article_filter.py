"""The filters every source applies to a document's cleaned text before it becomes an Article."""

from __future__ import annotations

from collections.abc import Callable

from corpus_pipeline.config import ExtractConfig


def passes_length_filters(
    text: str, cfg: ExtractConfig, count: Callable[..., None], prefix: str
) -> bool:
    """Whether ``text`` is neither empty nor shorter than ``cfg.min_article_chars``.

    A refused text is counted as ``<prefix>/dropped:empty`` or ``<prefix>/dropped:short``.

    Args:
        text: The cleaned text.
        cfg: Its ``min_article_chars`` is the bound.
        count: Counter callback.
        prefix: The counters' stage (``extract``, ``books``).
    """
    if not text:
        count(f"{prefix}/dropped:empty")
        return False
    if len(text) < cfg.min_article_chars:
        count(f"{prefix}/dropped:short")
        return False
    return True
