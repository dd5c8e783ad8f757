"""Regenerate ``corpus_pipeline/data/wiki_magic_words.json`` from a MediaWiki checkout.

The table holds, per wiki language, the words MediaWiki accepts in image links (the option
keywords of ``[[File:x.jpg|thumb|200px|left|caption]]``: the ``img_*`` magic words) and the
names and aliases of the Media, File and Category namespaces. The extractor uses it to drop
every image link of a dump as it drops English ones (``sources/wikipedia_site.py``).

Source: ``languages/messages/Messages<Xx>.php`` of MediaWiki core (GPL-2.0-or-later; the
keyword lists are facts read from it, no code is copied). Each language gets its own words plus
those of its ``$fallback`` chain and English, as MediaWiki merges them.

Usage::

    python tools/gen_wiki_magic_words.py /path/to/mediawiki [--revision "MediaWiki 1.39 @ abc123"]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# The largest Wikipedias by article count, plus Greek (the README's non-Latin example); wiki language
# code -> MediaWiki language code where they differ.
LANGUAGES = [
    "en",
    "ceb",
    "de",
    "fr",
    "sv",
    "nl",
    "ru",
    "es",
    "it",
    "pl",
    "arz",
    "zh",
    "ja",
    "uk",
    "vi",
    "war",
    "ar",
    "pt",
    "fa",
    "ca",
    "id",
    "sr",
    "ko",
    "no",
    "tr",
    "ce",
    "fi",
    "cs",
    "hu",
    "tt",
    "ro",
    "sh",
    "eu",
    "ms",
    "zh-min-nan",
    "he",
    "hy",
    "da",
    "bg",
    "el",
]
MW_CODE = {"no": "nb", "zh-min-nan": "nan"}
NS_IDS = {"NS_MEDIA": -2, "NS_FILE": 6, "NS_IMAGE": 6, "NS_CATEGORY": 14}
OUT = Path(__file__).resolve().parent.parent / "corpus_pipeline" / "data" / "wiki_magic_words.json"

_STRING = r"'((?:[^'\\]|\\.)*)'"


def _unquote(s: str) -> str:
    return s.replace("\\'", "'").replace("\\\\", "\\")


def _array(php: str, var: str) -> str:
    """The body of ``$var = [ ... ];`` (or ``array( ... );``), or ""."""
    m = re.search(r"\$" + var + r"\s*=\s*(?:\[|array\s*\()", php)
    if not m:
        return ""
    depth, i = 1, m.end()
    quoted = False
    while i < len(php) and depth:
        c = php[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == "'":
                quoted = False
        elif c == "'":
            quoted = True
        elif c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
        i += 1
    return php[m.end() : i - 1]


def parse_messages(path: Path) -> dict[str, object]:
    """Fallback chain, Media/File/Category namespace names and aliases, img_* magic words."""
    php = path.read_text(encoding="utf-8")
    fb = re.search(r"^\$fallback\s*=\s*" + _STRING, php, re.M)
    fallback = [c.strip() for c in _unquote(fb.group(1)).split(",") if c.strip()] if fb else []
    names: dict[int, list[str]] = {}
    for const, name in re.findall(r"(NS_[A-Z_]+)\s*=>\s*" + _STRING, _array(php, "namespaceNames")):
        if const in NS_IDS:
            names.setdefault(NS_IDS[const], []).append(_unquote(name))
    for name, const in re.findall(
        _STRING + r"\s*=>\s*(NS_[A-Z_]+)", _array(php, "namespaceAliases")
    ):
        if const in NS_IDS:
            names.setdefault(NS_IDS[const], []).append(_unquote(name))
    words: dict[str, list[str]] = {}
    body = _array(php, "magicWords")
    for m in re.finditer(r"'(img_[a-z_]+)'\s*=>\s*(?:\[|array\s*\()([^\])]*)[\])]", body):
        syn = [_unquote(s) for s in re.findall(_STRING, m.group(2))]
        words[m.group(1)] = [s for s in syn if s not in ("0", "1")]
    return {"fallback": fallback, "namespaces": names, "magic": words}


def messages_file(root: Path, code: str) -> Path:
    name = code[0].upper() + code[1:].replace("-", "_")
    return root / "languages" / "messages" / f"Messages{name}.php"


def build(root: Path, revision: str) -> dict[str, object]:
    cache: dict[str, dict[str, object]] = {}

    def load(code: str) -> dict[str, object]:
        if code not in cache:
            path = messages_file(root, code)
            cache[code] = (
                parse_messages(path)
                if path.is_file()
                else {"fallback": [], "namespaces": {}, "magic": {}}
            )
        return cache[code]

    languages: dict[str, object] = {}
    for lang in LANGUAGES:
        code = MW_CODE.get(lang, lang)
        if not messages_file(root, code).is_file():
            sys.exit(f"{messages_file(root, code)}: missing; is {root} a MediaWiki checkout?")
        chain = [code, *load(code)["fallback"], "en"]  # type: ignore[list-item,misc]
        options: set[str] = set()
        ns: set[str] = set()
        for c in dict.fromkeys(chain):
            data = load(c)
            for syns in data["magic"].values():  # type: ignore[attr-defined]
                options.update(syns)
            for names in data["namespaces"].values():  # type: ignore[attr-defined]
                ns.update(n.replace("_", " ") for n in names)
        languages[lang] = {"options": sorted(options), "namespaces": sorted(ns)}
    return {
        "source": "MediaWiki core languages/messages/Messages*.php ($magicWords img_*, "
        "$namespaceNames and $namespaceAliases of NS_MEDIA, NS_FILE, NS_CATEGORY; fallback "
        "chains merged as MediaWiki does)",
        "revision": revision,
        "license": "MediaWiki is GPL-2.0-or-later; this table lists its localized keywords "
        "(facts), generated by tools/gen_wiki_magic_words.py",
        "languages": languages,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mediawiki", type=Path, help="a MediaWiki core checkout")
    p.add_argument("--revision", required=True, help="which MediaWiki the checkout is")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    table = build(args.mediawiki, args.revision)
    args.out.write_text(
        json.dumps(table, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n",
        encoding="utf-8",
    )
    print(f"{args.out}: {len(table['languages'])} languages")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
