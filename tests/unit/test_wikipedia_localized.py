"""Image and category links in other languages behave as in English.

wikiextractor drops ``[[File:x.jpg|thumb|200px|left|Caption]]`` with its options and caption.
The same link nested in another link's label survives it, and the scrub then has to know the
wiki's own File namespace name and image keywords, or ``[[Αθήνα|[[Αρχείο:x.jpg|μικρογραφία|...]]]]``
leaves ``μικρογραφία|200px|αριστερά|...`` in Greek text. Each test builds a small dump in
the language (with its real ``<siteinfo>`` namespace names) and reads it the way the pipeline
does: plan, read, clean.
"""

from __future__ import annotations

import bz2
import dataclasses
import json
from pathlib import Path

import pytest

from corpus_pipeline.config import ExtractConfig
from corpus_pipeline.formats.spill import read_spill, write_spill
from corpus_pipeline.sources import wikipedia_clean, wikipedia_pages, wikipedia_plan
from corpus_pipeline.sources.wikipedia_records import RawPage
from corpus_pipeline.sources.wikipedia_site import MAGIC_WORDS_FILE, is_image_option, site_for
from corpus_pipeline.testing.multistream import build_multistream

CFG = ExtractConfig(min_article_chars=0)

# language -> (dbname, Media, File, Category names as the wiki's siteinfo gives them,
#              body sentences, top-level image link, image link nested in a link label,
#              words of the options and captions that must not reach the text)
CASES = {
    "el": (
        "elwiki",
        ("Μέσο", "Αρχείο", "Κατηγορία"),
        ("Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.", "Έχει πολλά μνημεία."),
        "[[Αρχείο:Acropolis.jpg|μικρογραφία|200px|αριστερά|Η Ακρόπολη το [[1987]].]]",
        "[[Ακρόπολη|[[Εικόνα:Parthenon.jpg|μικρογραφία|κατακόρυφα=1.2|εναλλ.=Ναός|Ο Παρθενώνας]]]]",
        ("μικρογραφία", "αριστερά", "200px", "κατακόρυφα", "εναλλ", "Παρθενώνας", "Ακρόπολη"),
    ),
    "ja": (
        "jawiki",
        ("メディア", "ファイル", "カテゴリ"),
        ("東京は日本の首都である。", "人口は多い。"),
        "[[ファイル:Tokyo.jpg|サムネイル|左|250px|東京の夜景]]",
        "[[東京タワー|[[画像:Tokyo Tower.jpg|フレームなし|右|120ピクセル|赤い塔]]]]",
        ("サムネイル", "左", "250px", "夜景", "フレームなし", "右", "ピクセル", "赤い塔"),
    ),
    "de": (
        "dewiki",
        ("Medium", "Datei", "Kategorie"),
        ("Berlin ist die Hauptstadt Deutschlands.", "Die Stadt hat viele Museen."),
        "[[Datei:Berlin.jpg|mini|links|200px|Das [[Brandenburger Tor]] bei Nacht]]",
        "[[Reichstag|[[Bild:Reichstag.jpg|hochkant=1.2|rahmenlos|rechts|Der Reichstag]]]]",
        ("mini", "links", "200px", "Brandenburger", "hochkant", "rahmenlos", "rechts", "Reichstag"),
    ),
    "ru": (
        "ruwiki",
        ("Медиа", "Файл", "Категория"),
        ("Москва является столицей России.", "В городе много музеев."),
        "[[Файл:Moscow.jpg|мини|слева|200px|Красная площадь]]",
        "[[Кремль|[[Изображение:Kremlin.jpg|безрамки|справа|300пкс|Вид на Кремль]]]]",
        ("мини", "слева", "200px", "Красная", "безрамки", "справа", "пкс", "Кремль"),
    ),
}

# The same page in English, for the behaviour to compare with.
EN = (
    "enwiki",
    ("Media", "File", "Category"),
    None,
    "[[File:Acropolis.jpg|thumb|200px|left|The Acropolis in [[1987]].]]",
    "[[Acropolis|[[Image:Parthenon.jpg|thumb|upright=1.2|alt=Temple|The Parthenon]]]]",
    ("thumb", "left", "200px", "upright", "alt=", "Parthenon", "Acropolis"),
)


def _dump(dbname: str, names: tuple[str, str, str], pages: list[str]) -> bytes:
    media, file_, category = names
    xml = [
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11">',
        f"<siteinfo><sitename>W</sitename><dbname>{dbname}</dbname><namespaces>",
        f'<namespace key="-2" case="first-letter">{media}</namespace>',
        '<namespace key="0" case="first-letter" />',
        f'<namespace key="6" case="first-letter">{file_}</namespace>',
        f'<namespace key="14" case="first-letter">{category}</namespace>',
        "</namespaces></siteinfo>\n",
    ]
    for i, text in enumerate(pages, 1):
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        xml.append(
            f"<page><title>P{i}</title><ns>0</ns><id>{i}</id><revision><id>{100 + i}</id>"
            f"<timestamp>2024-01-01T00:00:00Z</timestamp><text>{escaped}</text></revision></page>\n"
        )
    xml.append("</mediawiki>\n")
    return "".join(xml).encode("utf-8")


def _page_texts(body: tuple[str, str], image: str, nested: str) -> list[str]:
    first, second = body
    return [
        f"{first}\n\n{image}\n\n{second}",  # a top-level image link: wikiextractor drops it
        f"{first} {nested} {second}",  # nested in a link's label: the scrub must drop it
        f"{first}\n{image}\n{nested}\n{second}",
    ]


def _extract(path: Path) -> list[str]:
    out = []
    for unit in wikipedia_plan.plan_units(str(path), CFG):
        for page in wikipedia_pages.read_pages(unit, CFG, count=lambda *a: None):
            article = wikipedia_clean.clean_page(page, CFG, count=lambda *a: None)
            out.append(article.text if article is not None else "")
    return out


def _write(tmp_path: Path, name: str, xml: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(bz2.compress(xml))
    return path


@pytest.mark.parametrize("lang", sorted(CASES))
def test_no_image_keyword_or_caption_leaks(tmp_path: Path, lang: str):
    dbname, names, body, image, nested, banned = CASES[lang]
    texts = _extract(
        _write(tmp_path, "d.xml.bz2", _dump(dbname, names, _page_texts(body, image, nested)))
    )
    first, second = body
    # As in English: the image link goes with its options and caption, the text around stays.
    assert texts == [f"{first}\n{second}", f"{first} {second}", f"{first}\n{second}"]
    for text in texts:
        assert not any(word in text for word in banned), text


def test_english_behaves_the_same(tmp_path: Path):
    """The reference behaviour the other languages are held to."""
    dbname, names, _, image, nested, banned = EN
    body = ("Athens is the capital of Greece.", "It has many monuments.")
    texts = _extract(
        _write(tmp_path, "d.xml.bz2", _dump(dbname, names, _page_texts(body, image, nested)))
    )
    assert texts == [f"{body[0]}\n{body[1]}", f"{body[0]} {body[1]}", f"{body[0]}\n{body[1]}"]
    for text in texts:
        assert not any(word in text for word in banned), text


def test_later_streams_of_a_multistream_dump_know_the_names(tmp_path: Path):
    """Streams after the first hold no <siteinfo>: planning hands its names to every unit."""
    dbname, names, body, image, nested, _ = CASES["el"]
    # A File namespace name the bundled table does not know: only the dump gives it.
    names = (names[0], "Φωτογραφία", names[2])
    # No image options in it either: only the name tells it is an image.
    nested = "[[Ακρόπολη|[[Φωτογραφία:Parthenon.jpg|Ο Παρθενώνας]]]]"
    pages = _page_texts(body, image, nested) * 2
    single = _write(tmp_path, "single.xml.bz2", _dump(dbname, names, pages))
    dump, _ = build_multistream(single, tmp_path, pages_per_stream=1, name="elwiki")
    units = wikipedia_plan.plan_units(str(dump), CFG)
    assert len(units) > 2 and all("Φωτογραφία" in u.link_ns for u in units)
    texts = _extract(dump)
    assert texts == _extract(single)
    assert all("Παρθενώνας" not in t and "Ακρόπολη" not in t for t in texts)


def test_pages_keep_their_wiki_through_a_spill_file(tmp_path: Path):
    """A single-stream dump is cut into chunks of raw pages that go through spill files to the
    workers that clean them: the pages still know their wiki there."""
    dbname, names, body, image, nested, banned = CASES["el"]
    path = _write(tmp_path, "d.xml.bz2", _dump(dbname, names, _page_texts(body, image, nested)))
    (unit,) = wikipedia_plan.plan_units(str(path), CFG)
    assert wikipedia_plan.needs_chunking(unit)
    cfg = dataclasses.replace(CFG, pages_per_chunk=2)
    texts = []
    for i, chunk in enumerate(wikipedia_pages.iter_page_chunks(unit, cfg, count=lambda *a: None)):
        (ref,) = write_spill(str(tmp_path / f"{i}.spill"), (0, 0, i), {0: chunk}).values()
        for page in read_spill(ref):
            article = wikipedia_clean.clean_page(page, cfg, count=lambda *a: None)
            texts.append(article.text if article is not None else "")
    assert len(texts) == 3
    assert not any(word in text for text in texts for word in banned), texts


def test_an_unknown_namespace_name_is_caught_by_the_image_keywords(tmp_path: Path):
    """A dump without its File namespace in <siteinfo>, using a name the table lacks: the
    localized options still mark the link as an image."""
    link = "[[Εικονα:X.jpg|μικρογραφία|αριστερά|Λεζάντα]]"  # no accent: not a known name
    text = f"Πριν. [[Αθήνα|{link}]] Μετά."
    xml = _dump("elwiki", ("Μέσο", "Αρχείο", "Κατηγορία"), [text])
    xml = xml.replace('<namespace key="6" case="first-letter">Αρχείο</namespace>'.encode(), b"")
    assert _extract(_write(tmp_path, "d.xml.bz2", xml)) == ["Πριν. Μετά."]


def test_a_plain_link_with_a_colon_keeps_its_label():
    """Only image options mark an unknown prefix as an image: other labels stay text."""
    site = site_for("el")
    assert not is_image_option("Η πόλη", "el")
    assert is_image_option("μικρογραφία", "el") and is_image_option("250εσ", "el")
    assert is_image_option("upright=1.5", "el")  # English keywords work on every wiki
    page_text = "Πριν. [[Αθήνα|[[Βικιπαίδεια:Σελίδα|Η πόλη]]]] Μετά."
    article = wikipedia_clean.clean_page(
        RawPage(1, "T", 0, False, page_text, site=site), CFG, count=lambda *a: None
    )
    assert article is not None and article.text == "Πριν. Η πόλη Μετά."


def test_the_table_names_its_source_and_covers_the_largest_wikipedias():
    table = json.loads(MAGIC_WORDS_FILE.read_text(encoding="utf-8"))
    assert "MediaWiki" in table["source"] and table["revision"] and "GPL" in table["license"]
    largest = "en ceb de fr sv nl ru es it pl arz zh ja uk vi war ar pt fa ca id sr ko no tr"
    assert set(largest.split()) <= set(table["languages"])
    # Every language also accepts the English words, as MediaWiki does.
    assert all(
        "thumb" in e["options"] and "File" in e["namespaces"] for e in table["languages"].values()
    )
