"""What a wiki calls its image and category links: namespace names and image option keywords.

wikiextractor drops every ``[[Prefix:...]]`` link whose prefix is not an interwiki it keeps, so
an image link (``[[File:x.jpg|thumb|200px|left|A caption]]``) vanishes with its options and its
caption. An image link that survives it, nested in another link's label
(``[[Athens|[[File:x.jpg|thumb|...]]]]``), is dropped by the scrub of
:mod:`~corpus_pipeline.sources.wikipedia_clean` when its prefix is a Media, File or Category
namespace name. Those names, and the option keywords, are localized: a Greek page writes
``[[Αρχείο:x.jpg|μικρογραφία|200px|αριστερά|...]]``, a Japanese one
``[[ファイル:x.jpg|サムネイル|左|...]]``. A :class:`WikiSite` holds them for one dump:

- the namespace names from the dump itself (``<siteinfo><namespaces>``, keys -2, 6 and 14),
- plus, for the dump's language, the names, aliases and image option keywords (the ``img_*``
  magic words: ``thumb``, ``left``, ``$1px``, ``upright=$1``, ...) of MediaWiki's localisation,
  bundled as ``data/wiki_magic_words.json`` (source, revision and license inside; regenerated
  by ``tools/gen_wiki_magic_words.py`` from a MediaWiki checkout). English names and keywords
  are always included: MediaWiki accepts them on every wiki.

A link is dropped when its prefix is one of those namespace names (the English rule, applied
to every language), or when it has some prefix and one of its ``|`` parts is an image option
keyword (an image link whose namespace name the dump did not give).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from corpus_pipeline.resources import DATA_DIR

MAGIC_WORDS_FILE = DATA_DIR / "wiki_magic_words.json"

# Namespaces whose links wikiextractor and the scrub drop with their text.
MEDIA_NS = -2
FILE_NS = 6
CATEGORY_NS = 14
LINK_DROP_NS = (MEDIA_NS, FILE_NS, CATEGORY_NS)

# MediaWiki's canonical names, valid on every wiki.
_CANONICAL = ("File", "Image", "Category", "Media")


@dataclass(frozen=True)
class WikiSite:
    """The link vocabulary of one dump.

    Attributes:
        lang: The wiki's language code (``el``), ``""`` when the dump names none.
        link_prefixes: Lower-cased ``name:`` prefixes of the Media, File and Category
            namespaces (the dump's names, MediaWiki's for ``lang`` and the English ones), with
            ``_`` and space both spelled out.
    """

    lang: str = ""
    link_prefixes: tuple[str, ...] = ()


def _prefixes(names: Iterable[str]) -> tuple[str, ...]:
    out: set[str] = set()
    for name in names:
        n = name.strip().lower()
        if n:
            out.add(n.replace("_", " ") + ":")
            out.add(n.replace(" ", "_") + ":")
    return tuple(sorted(out))


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, list[str]]]:
    with open(MAGIC_WORDS_FILE, encoding="utf-8") as f:
        languages: dict[str, dict[str, list[str]]] = json.load(f)["languages"]
    return languages


def _entry(lang: str) -> dict[str, list[str]]:
    """The table's entry for ``lang`` (``zh-yue`` falls back to ``zh``), else English's."""
    table = _table()
    code = lang.lower()
    while code:
        if code in table:
            return table[code]
        code = code.rpartition("-")[0]
    return table["en"]


@functools.lru_cache(maxsize=64)
def site_for(lang: str, dump_names: tuple[str, ...] = ()) -> WikiSite:
    """The :class:`WikiSite` of a dump in ``lang`` whose Media/File/Category namespaces are
    called ``dump_names`` in its ``<siteinfo>`` (cached: one per dump)."""
    names = [*_CANONICAL, *_entry(lang)["namespaces"], *dump_names]
    return WikiSite(lang, _prefixes(names))


@functools.lru_cache(maxsize=64)
def _options(lang: str) -> tuple[frozenset[str], re.Pattern[str] | None]:
    """Image option keywords of ``lang``: the plain ones, and one pattern for those with a
    parameter (``$1px``, ``upright=$1``)."""
    words = [*_entry(lang)["options"], *_entry("en")["options"]]
    plain = frozenset(w for w in words if "$1" not in w)
    forms = sorted({w for w in words if "$1" in w})
    if not forms:
        return plain, None
    alternatives = ("(?:" + ".+".join(map(re.escape, w.split("$1"))) + ")" for w in forms)
    return plain, re.compile("|".join(alternatives))


def is_image_option(part: str, lang: str) -> bool:
    """Whether ``part`` (one ``|`` field of a link) is an image option keyword of ``lang``."""
    p = part.strip()
    plain, pattern = _options(lang)
    return p in plain or (pattern is not None and pattern.fullmatch(p) is not None)


def drops_link(target: str, label: str | None, site: WikiSite) -> bool:
    """Whether a leftover ``[[target|label]]`` link goes with its text (see the module doc)."""
    t = target.strip().lower()
    if t.startswith(site.link_prefixes):
        return True
    if label is None or t.find(":") <= 0:
        return False
    return any(is_image_option(part, site.lang) for part in label.split("|"))
