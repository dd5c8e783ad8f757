"""A small Japanese Wikipedia dump (``<dbname>jawiki</dbname>``) for the language tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

_PAGE = (
    "<page><title>{title}</title><ns>0</ns><id>{id}</id><revision><id>{id}</id>"
    "<timestamp>2020-01-01T00:00:00Z</timestamp><text>{text}</text></revision></page>"
)

#: (title, id, text) of two pages. Under English Punkt 。 ends nothing: each paragraph
#: would stay one sentence.
JA_PAGES = [
    ("東京", 1, "東京は日本の首都です。人口は多い！「はい。」と彼は言った。"),
    ("大阪", 2, "大阪は都市です。食べ物が有名です。"),
]
#: The sentences of ``JA_PAGES`` split as Japanese.
JA_SENTENCES = [
    "東京は日本の首都です。",
    "人口は多い！",
    "「はい。」と彼は言った。",
    "大阪は都市です。",
    "食べ物が有名です。",
]


def write_jawiki(path: Path, pages: Sequence[tuple[str, int, str]] = JA_PAGES) -> Path:
    """Write ``pages`` (title, id, text) as a jawiki export at ``path``; returns ``path``."""
    path.write_text(
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
        'xml:lang="ja"><siteinfo><sitename>ウィキペディア</sitename><dbname>jawiki</dbname>'
        '<namespaces><namespace key="0" case="first-letter" /></namespaces></siteinfo>'
        + "".join(_PAGE.format(title=t, id=i, text=escape(x)) for t, i, x in pages)
        + "</mediawiki>",
        encoding="utf-8",
    )
    return path
