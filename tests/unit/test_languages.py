"""Every Wikipedia language: sentence splitting per language, grapheme-safe cuts,
the language read from a dump's ``<siteinfo>``."""

from __future__ import annotations

import bz2
import pickle
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import BertWordPieceTokenizer

from corpus_pipeline import resources
from corpus_pipeline.config import ExtractConfig, SentenceConfig
from corpus_pipeline.errors import UserError
from corpus_pipeline.sources import wikipedia_plan
from corpus_pipeline.stages.sentences import cut_long_sentence, split_paragraph, splitter_kind
from corpus_pipeline.stages.wordpiece import WordPieceEncoder


class Counts(Counter):
    def __call__(self, name: str, n: int = 1) -> None:
        self[name] += n


def split(text: str, lang: str, **kw: int) -> list[str]:
    return split_paragraph(text, SentenceConfig(language=lang, **kw), count=Counts())


# --- CJK ---------------------------------------------------------------------------------------


def test_japanese_splits_at_ideographic_full_stop_and_keeps_quotes_together():
    text = "東京は日本の首都です。人口は多い！本当？「はい。」と彼は言った。次の文．最後"
    assert split(text, "ja") == [
        "東京は日本の首都です。",
        "人口は多い！",
        "本当？",
        "「はい。」と彼は言った。",
        "次の文．",
        "最後",
    ]


def test_closing_brackets_stay_with_their_sentence():
    assert split("彼は「行く。」（注記。）次に来た。", "ja") == [
        "彼は「行く。」（注記。）次に来た。"
    ]
    assert split("『本』を読んだ！』次。", "ja") == ["『本』を読んだ！』", "次。"]  # unbalanced


def test_chinese_splits_and_keeps_quoted_speech():
    assert split("他说：\u201c你好。\u201d然后走了。这是第二句！", "zh") == [
        "他说：\u201c你好。\u201d然后走了。",
        "这是第二句！",
    ]


def test_korean_splits_at_western_and_cjk_enders():
    assert split("서울은 한국의 수도이다. 인구가 많다。 정말?", "ko") == [
        "서울은 한국의 수도이다.",
        "인구가 많다。",
        "정말?",
    ]


# --- abbreviations in other languages -------------------------------------------------------


def test_greek_abbreviations_do_not_end_sentences():
    text = "Γεννήθηκε το 300 π.Χ. στην Αθήνα. Ήταν φιλόσοφος τον 5ο αι. και έζησε πολύ."
    assert split(text, "el") == [
        "Γεννήθηκε το 300 π.Χ. στην Αθήνα.",
        "Ήταν φιλόσοφος τον 5ο αι. και έζησε πολύ.",
    ]


def test_bulgarian_te_does_not_end_a_sentence():
    text = "Това е, т.е. пример за изречение. Второ изречение."
    assert split(text, "bg") == ["Това е, т.е. пример за изречение.", "Второ изречение."]


def test_english_still_uses_punkt_and_codes_are_checked():
    assert splitter_kind("en") == splitter_kind("english") == splitter_kind("simple") == "punkt"
    assert splitter_kind("zh_yue") == "cjk" and splitter_kind("de") == "sentencex"
    with pytest.raises(UserError, match="--lang x y"):
        splitter_kind("x y")


# --- cuts never split a grapheme --------------------------------------------------------------


def _graphemes_intact(pieces: list[str]) -> bool:
    return all(
        not unicodedata.combining(p[0]) and p[0] not in "\u200d\ufe0f" and p[-1] != "\u200d"
        for p in pieces
    )


@pytest.mark.parametrize(
    "unit",
    [
        "e\u0301",  # e + combining acute
        "\U0001f469\u200d\U0001f4bb",  # woman technologist (ZWJ sequence)
        "\u2764\ufe0f",  # heart + variation selector
        "\u1100\u1161\u11a8",  # Hangul jamo L V T
        "\u0915\u094d\u0937",  # Devanagari k + virama + ss
    ],
)
def test_a_hard_cut_never_splits_a_grapheme(unit: str):
    for max_chars in range(3, 12):
        for lead in range(0, 4):
            sentence = "x" * lead + unit * 10
            pieces = cut_long_sentence(sentence, max_chars)
            assert "".join(pieces) == sentence
            assert _graphemes_intact(pieces), (max_chars, lead, pieces)
            assert all(len(p) <= max_chars for p in pieces)


def test_cjk_cut_prefers_the_ideographic_comma():
    sentence = "あ" * 8 + "、" + "い" * 8
    assert cut_long_sentence(sentence, 12, cjk=True) == ["あ" * 8 + "、", "い" * 8]


# --- the language comes from the dump ---------------------------------------------------------


def _dump(dbname: str | None, lang: str = "en") -> str:
    site = f"<dbname>{dbname}</dbname>" if dbname else ""
    return (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
        f'xml:lang="{lang}"><siteinfo><sitename>W</sitename>{site}'
        '<namespaces><namespace key="0" case="first-letter" /></namespaces></siteinfo>'
        "<page><title>A</title><ns>0</ns><id>1</id><revision><id>2</id>"
        "<text>東京は日本の首都です。人口は多い。</text></revision></page></mediawiki>"
    )


@pytest.mark.parametrize(
    ("dbname", "xml_lang", "want"),
    [
        ("jawiki", "ja", "ja"),
        ("elwiki", "el", "el"),
        ("zh_yuewiki", "yue", "zh-yue"),
        ("simplewiki", "en", "en"),
        ("dewiktionary", "de", "de"),
        (None, "fr", "fr"),  # no <dbname>: the root's xml:lang
    ],
)
def test_language_is_read_from_the_dump(tmp_path: Path, dbname, xml_lang, want):
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(_dump(dbname, xml_lang).encode()))
    assert wikipedia_plan.dump_language(str(path)) == want
    assert wikipedia_plan.plan_units(str(path), ExtractConfig())[0].lang == want


# --- vocabulary choices: case and accents are separate ----------------------------------------


def _reference(vocab: str, cased: bool, strip: bool) -> BertWordPieceTokenizer:
    ref = BertWordPieceTokenizer(
        vocab, lowercase=not cased, strip_accents=strip, clean_text=True, handle_chinese_chars=True
    )
    ref._tokenizer.encode_special_tokens = True
    return ref


@pytest.mark.parametrize(("cased", "strip"), [(True, False), (False, False), (True, True)])
def test_strip_accents_is_its_own_choice_and_matches_hf(cased: bool, strip: bool):
    vocab = str(resources.default_vocab(cased))
    enc = WordPieceEncoder(vocab, cased=cased, strip_accents=strip)
    ref = _reference(vocab, cased, strip)
    for text in (
        "Η Ακρόπολη της Αθήνας είναι ένας βράχος. ΆΛΦΑ ά",
        "東京はガイドブックで有名です。",
        "서울은 한국의 수도이다.",
        "Café naïve Ångström e\u0301 Straße",
    ):
        assert enc.encode(text).tolist() == ref.encode(text, add_special_tokens=False).ids
    assert pickle.loads(pickle.dumps(enc)).strip_accents == strip


def test_no_strip_accents_keeps_accents_with_a_cased_vocab():
    cased = WordPieceEncoder(resources.default_vocab(True), cased=True, strip_accents=False)
    assert [cased.id_to_token(i) for i in cased.encode("ガά")] == ["ガ", "##ά"]
    bert = WordPieceEncoder(resources.default_vocab(False))  # BERT's rule: strip when uncased
    assert bert.strip_accents and [bert.id_to_token(i) for i in bert.encode("ガά")] == ["カ", "##α"]


_KANA = re.compile(r"([\u3040-\u30ff])")
_HANGUL = re.compile(r"([\uac00-\ud7a3])")
_JA = (
    "東京都は日本の首都であり、人口は約1400万人です。"
    "カタカナとひらがなを使って書かれた文章は、コンピュータで処理されることが多い。"
)
_KO = "서울특별시는 대한민국의 수도이며 인구는 약 천만 명이다."


@pytest.mark.parametrize("cased", [False, True])
def test_splitting_kana_or_hangul_would_not_lower_unk(cased: bool):
    """The measurement behind a decision in basic_tokenizer.py's docstring: no kana/Hangul split."""
    enc = WordPieceEncoder(resources.default_vocab(cased), cased=cased)

    def unk_share(text: str) -> tuple[int, int]:
        ids = enc.encode(text).tolist()
        return ids.count(enc.unk_id), len(ids)

    for text, pattern in ((_JA, _KANA), (_KO, _HANGUL)):
        unk, n = unk_share(text)
        unk_split, n_split = unk_share(pattern.sub(r" \1 ", text))
        assert unk_split >= unk and n_split >= n
