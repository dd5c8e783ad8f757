"""WordPiece encoding: ids identical to HF BertWordPieceTokenizer on all the bundled real text.

The reference is ``tokenizers.BertWordPieceTokenizer(vocab, lowercase, strip_accents,
clean_text=True, handle_chinese_chars=True).encode(s, add_special_tokens=False).ids``.
"""

from __future__ import annotations

import bz2
import collections
import hashlib
import pickle
import random
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from tokenizers import BertWordPieceTokenizer

from corpus_pipeline import resources
from corpus_pipeline.errors import UserError
from corpus_pipeline.records import Document, EncodedDocument
from corpus_pipeline.stages.basic_tokenizer import SENTENCE_END, BasicTokenizer
from corpus_pipeline.stages.wordpiece import WordPieceEncoder, encode_document, encode_documents
from corpus_pipeline.stages.wordpiece_vocab import load_vocab_checked

_NAIVE_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _wiki_texts():
    """The raw wikitext of every page of the bundled excerpt (markup, templates, tables)."""
    with bz2.open(resources.SAMPLE_WIKI_DUMP) as f:
        for _, el in ET.iterparse(f):
            if el.tag.endswith("}text") and el.text:
                yield el.text
            if el.tag.endswith("}page"):
                el.clear()


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """Every line of the excerpt cut into naive sentences, and every raw line of the book.

    Book lines keep their BOM and CR; wikitext keeps markup, accents, CJK, symbols, emojis.
    """
    out: list[str] = []
    for text in _wiki_texts():
        for line in text.split("\n"):
            out.extend(_NAIVE_SENTENCE.split(line))
    out.extend(resources.SAMPLE_BOOK.read_text(encoding="utf-8").split("\n"))
    assert len(out) > 50_000
    return out


def _reference(cased: bool, split_specials: bool = False) -> BertWordPieceTokenizer:
    ref = BertWordPieceTokenizer(
        str(resources.default_vocab(cased)),
        lowercase=not cased,
        strip_accents=not cased,
        clean_text=True,
        handle_chinese_chars=True,
    )
    ref._tokenizer.encode_special_tokens = split_specials
    return ref


def _ref_ids(ref: BertWordPieceTokenizer, sentences: list[str]) -> list[list[int]]:
    return [e.ids for e in ref.encode_batch(sentences, add_special_tokens=False)]


def _ours(enc: WordPieceEncoder, sentences: list[str], chunk: int = 1000) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(sentences), chunk):
        out.extend(a.tolist() for a in enc.encode_batch(sentences[i : i + chunk]))
    return out


@pytest.fixture(scope="module")
def uncased() -> WordPieceEncoder:
    return WordPieceEncoder(resources.default_vocab(False))


@pytest.fixture(scope="module")
def cased() -> WordPieceEncoder:
    return WordPieceEncoder(resources.default_vocab(True), cased=True)


# -- exhaustive: the whole bundled corpus -----------------------------------------------------


@pytest.mark.parametrize(
    "is_cased",
    [False, pytest.param(True, marks=pytest.mark.soak)],  # cased: make soak
    ids=["uncased", "cased"],
)
def test_identical_to_reference_on_every_sentence_of_the_corpus(corpus, is_cased):
    enc = WordPieceEncoder(resources.default_vocab(is_cased), cased=is_cased)
    want = _ref_ids(_reference(is_cased), corpus)
    got = _ours(enc, corpus)
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, f"{len(bad)} sentences differ, first: {corpus[bad[0]][:200]!r}"
    # The corpus really exercises the non-ASCII paths and the [UNK] rules.
    assert sum(not s.isascii() for s in corpus) > 4000
    assert sum(w.count(enc.unk_id) for w in want) > 0
    # A second pass (all cache hits) gives the same ids.
    assert _ours(enc, corpus[:5000], chunk=777) == want[:5000]


# -- synthetic edges -----------------------------------------------------------------------


def _tokens(enc: WordPieceEncoder, s: str) -> list[str]:
    return [enc.id_to_token(i) for i in enc.encode(s)]


def test_accents_are_stripped_when_uncased_and_kept_when_cased(uncased, cased):
    assert _tokens(uncased, "Café") == ["cafe"]
    assert _tokens(uncased, "naïve résumé") == _tokens(uncased, "naive resume")
    ref = _reference(True)
    assert cased.encode("Café").tolist() == ref.encode("Café", add_special_tokens=False).ids
    assert _tokens(cased, "Café") != _tokens(cased, "Cafe")


def test_cjk_characters_are_single_words(uncased):
    assert _tokens(uncased, "東京は日本") == ["東", "京", "は", "日", "本"]
    assert _tokens(uncased, "a中b") == ["a", "中", "b"]


def test_control_characters_are_removed_and_tabs_are_spaces(uncased):
    assert _tokens(uncased, "hel\x00lo\x07 wor\x7fld") == _tokens(uncased, "hello world")
    assert _tokens(uncased, "hello\tworld\r\n") == ["hello", "world"]
    assert _tokens(uncased, "\ufeffhello\u200b") == ["hello"]  # Cf characters removed


def test_long_words_are_unk_exactly_past_100_characters(uncased):
    assert uncased.encode("a" * 150).tolist() == [uncased.unk_id]
    assert uncased.encode("a" * 101).tolist() == [uncased.unk_id]
    hundred = uncased.encode("a" * 100).tolist()
    assert uncased.unk_id not in hundred and len(hundred) > 1
    # Accents are stripped before counting: 101 characters of "é" remain 101 of "e".
    assert uncased.encode("é" * 101).tolist() == [uncased.unk_id]


@pytest.mark.parametrize("text", ["", "   ", "\t\r\n", "\x00\x01", "\u0301\u0301"])
def test_text_without_words_encodes_to_nothing(uncased, text):
    out = uncased.encode(text)
    assert out.dtype == np.int32 and out.size == 0


def test_only_punctuation_is_one_token_per_character(uncased):
    assert _tokens(uncased, "?!...—") == ["?", "!", ".", ".", ".", "—"]


def test_tricky_unicode_matches_reference(uncased, cased):
    cases = [
        "ΟΔΟΣ Σ σς",  # final sigma: HF lowers per character, unlike Python's str.lower
        "İstanbul",  # lower-casing emits a combining dot after NFD stripped accents
        "\U0001d165\U0001d16e\U0001d165",  # spacing marks with a combining class (NFD reorder)
        "x\u0308\u0323y \u1e0b\u0323",  # combining marks in non-canonical order
        "ﬁ ligature ① ²",  # compatibility characters are not NFKC-folded
        "🙂👍🏽 emoji‍zwj",
        "a\u00a0b\u2003c\u3000d\u2028e",  # Unicode spaces
        "¿Qué? «quote» „x“ ‘y’",
        "\U00040000 \U000e0001 \U0010fffd",  # unassigned, tag and private-use code points
        "[MASK] is text",
    ]
    for enc, is_cased in ((uncased, False), (cased, True)):
        want = _ref_ids(_reference(is_cased, split_specials=True), cases)
        assert [enc.encode(c).tolist() for c in cases] == want


def test_every_code_point_in_context_matches_reference(uncased, cased):
    """All of U+0000..U+3000 plus a seeded sample of the rest, each in four contexts."""
    rng = random.Random(7)
    points = list(range(0x3001))  # through U+3000 IDEOGRAPHIC SPACE
    points += rng.sample(range(0x3000, 0x110000), 3000)
    chars = [chr(c) for c in points if not 0xD800 <= c <= 0xDFFF]
    sentences = [
        " ".join(f"a{c}b{c}{c}.{c}X" for c in chars[i : i + 16]) for i in range(0, len(chars), 16)
    ]
    for enc, is_cased in ((uncased, False), (cased, True)):
        assert _ours(enc, sentences) == _ref_ids(_reference(is_cased, True), sentences)


def test_random_mixtures_match_reference(uncased, cased):
    rng = random.Random(11)
    pool = [chr(c) for c in range(32, 127)] * 20
    pool += list("\t\n\r\x00\x01\x7féÉß中–—’\u0301\u0308\u03a3\u0130\U0001d165\U0001d16e") * 4
    pool += [chr(c) for c in rng.sample(range(0xE000, 0x110000), 500)]
    sentences = ["".join(rng.choices(pool, k=rng.randint(0, 50))) for _ in range(3000)]
    for enc, is_cased in ((uncased, False), (cased, True)):
        assert _ours(enc, sentences, chunk=300) == _ref_ids(_reference(is_cased, True), sentences)


def test_literal_special_tokens_are_text_not_special_ids(uncased):
    """Deliberate: text cannot inject [SEP]/[MASK] (HF's default would; Google's would not)."""
    s = "a [MASK] b [SEP] c"
    ours = uncased.encode(s).tolist()
    assert uncased.mask_id not in ours and uncased.sep_id not in ours
    assert _tokens(uncased, "[MASK]") == ["[", "mask", "]"]
    default = _reference(False).encode(s, add_special_tokens=False).ids
    assert uncased.mask_id in default  # the difference is real
    assert ours == _reference(False, True).encode(s, add_special_tokens=False).ids


def test_lone_surrogates_are_removed(uncased):
    assert _tokens(uncased, "ab\udce9cd x") == _tokens(uncased, "abcd x")


def test_basic_tokenizer_splits_like_bert():
    basic = BasicTokenizer(cased=False)
    assert basic.split("Hello, Wörld! 中文 a-b") == [
        "hello",
        ",",
        "world",
        "!",
        "中",
        "文",
        "a",
        "-",
        "b",
    ]
    assert basic.split_flat(["A b", "", "c"]) == [
        "a",
        "b",
        SENTENCE_END,
        SENTENCE_END,
        "c",
        SENTENCE_END,
    ]
    assert BasicTokenizer(cased=True).split("Hello Wörld") == ["Hello", "Wörld"]
    # Mixed chunk: ASCII, non-ASCII kept wide, made ASCII, and exact-path sentences are
    # processed in groups, but come back in input order.
    mixed = ["one two", "α–β", "Café", "x\U0001d165\U0001d16ey", "last!"]
    assert basic.split_flat(mixed) == [w for m in mixed for w in [*basic.split(m), SENTENCE_END]]
    assert [basic.split(m) for m in mixed] == [
        ["one", "two"],
        ["α", "–", "β"],
        ["cafe"],
        [
            w
            for w, _ in _reference(False)._tokenizer.pre_tokenizer.pre_tokenize_str(
                _reference(False)._tokenizer.normalizer.normalize_str(mixed[3])
            )
        ],
        ["last", "!"],
    ]
    words, order = basic.split_grouped(mixed)
    assert order == [0, 2, 4, 1, 3] and words.count(SENTENCE_END) == 5
    clone = pickle.loads(pickle.dumps(basic))
    assert clone.cased is False and clone.split("É") == ["e"]


# -- vocabulary facts --------------------------------------------------------------------


def test_special_ids_and_vocab_facts(uncased, cased):
    assert (uncased.pad_id, uncased.unk_id, uncased.cls_id, uncased.sep_id, uncased.mask_id) == (
        0,
        100,
        101,
        102,
        103,
    )
    assert uncased.vocab_size == 30522 and cased.vocab_size == 28996
    assert uncased.vocab_sha256 == hashlib.sha256(resources.UNCASED_VOCAB.read_bytes()).hexdigest()
    assert uncased.id_to_token(1) == "[unused0]" and uncased.token_to_id("the") == 1996


@pytest.mark.parametrize("name", ["uncased", "cased"])
def test_ordinary_ids_exclude_special_and_unused_tokens(request, name):
    enc = request.getfixturevalue(name)
    ids = enc.ordinary_ids
    assert ids.dtype == np.int32 and np.all(np.diff(ids) > 0)
    toks = [enc.id_to_token(int(i)) for i in ids]
    assert not any(t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") for t in toks)
    assert not any(t.startswith("[unused") for t in toks)
    n_unused = sum(t.startswith("[unused") for t in enc.tokens)
    assert n_unused == (994 if name == "uncased" else 101)
    assert ids.size == enc.vocab_size - 5 - n_unused


def test_is_subword_marks_continuation_pieces(uncased):
    flags = uncased.is_subword
    assert flags.dtype == bool and flags.shape == (uncased.vocab_size,)
    assert int(flags.sum()) == 5828
    ids = uncased.encode("unaffable tokenization").tolist()
    assert [bool(flags[i]) for i in ids] == [
        t.startswith("##") for t in map(uncased.id_to_token, ids)
    ]
    assert flags[ids].any() and not flags[ids[0]]


def test_large_vocabulary_beyond_int16_works(tmp_path):
    base = resources.UNCASED_VOCAB.read_text(encoding="utf-8").split("\n")[:-1]
    extra = [f"zzq{i}" for i in range(40_000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(base + extra) + "\n", encoding="utf-8")
    enc = WordPieceEncoder(path)
    assert enc.vocab_size == 70_522
    assert enc.encode("the zzq39999").tolist() == [1996, 70_521]


# -- bad vocabularies --------------------------------------------------------------------


def test_missing_vocab_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope.txt: vocabulary file not found"):
        WordPieceEncoder(tmp_path / "nope.txt")


def test_empty_vocab_file_is_a_user_error(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty.txt: vocabulary file is empty"):
        load_vocab_checked(p)


def test_vocab_missing_special_tokens_names_them(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("[PAD]\n[UNK]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"v.txt: .*lacks the special token\(s\) \[CLS\] \[MASK\]"):
        WordPieceEncoder(p)


def test_duplicate_and_non_utf8_vocab_are_user_errors(tmp_path):
    p = tmp_path / "dup.txt"
    p.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhi\nhi\n", encoding="utf-8")
    with pytest.raises(UserError, match="'hi' appears twice"):
        load_vocab_checked(p)
    q = tmp_path / "latin1.txt"
    q.write_bytes(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncaf\xe9\n")
    with pytest.raises(UserError, match="latin1.txt: vocabulary is not UTF-8"):
        load_vocab_checked(q)


def test_load_vocab_checked_returns_tokens_by_id():
    tokens = load_vocab_checked(resources.CASED_VOCAB)
    assert len(tokens) == 28996 and tokens[:2] == ["[PAD]", "[unused1]"] and tokens[100] == "[UNK]"


# -- pickling and the cache ----------------------------------------------------------------


def test_pickle_round_trip_is_small_and_rebuilds(tmp_path, corpus):
    path = tmp_path / "vocab.txt"
    path.write_bytes(resources.CASED_VOCAB.read_bytes())
    enc = WordPieceEncoder(path, cased=True, cache_size=1234)
    sample = corpus[:2000]
    want = _ours(enc, sample)
    blob = pickle.dumps(enc)
    assert len(blob) < 1000  # no vocabulary or cache inside
    clone = pickle.loads(blob)
    assert clone.cased and clone.vocab_sha256 == enc.vocab_sha256
    assert _ours(clone, sample) == want
    # A worker that finds a different file refuses it instead of encoding with it.
    path.write_bytes(resources.CASED_VOCAB.read_bytes() + b"zzqextra\n")
    with pytest.raises(UserError, match="vocabulary changed"):
        pickle.loads(blob)


def test_cache_eviction_keeps_results_identical(corpus, uncased):
    sample = corpus[10_000:16_000]
    want = _ours(uncased, sample)
    small = WordPieceEncoder(resources.UNCASED_VOCAB, cache_size=300)
    chunks = [sample[i : i + 50] for i in range(0, len(sample), 50)]
    distinct = [set(small.basic_tokenizer.split_flat(c)) for c in chunks]
    assert len(set().union(*distinct)) > 20 * 300  # the cache is emptied many times
    sizes = []
    got: list[list[int]] = []
    for c in chunks:
        got.extend(a.tolist() for a in small.encode_batch(c))
        sizes.append(len(small._cache))
    assert got == want
    # Bounded by its size plus one chunk's distinct words.
    assert max(sizes) <= 300 + max(len(d) for d in distinct)
    assert _ours(small, sample[::-1], chunk=50) == want[::-1]


def test_encode_batch_returns_writable_int32_arrays_in_order(uncased):
    out = uncased.encode_batch(["hello world", "", "Hello"])
    assert [a.dtype for a in out] == [np.int32] * 3
    assert out[0].tolist() == [7592, 2088] and out[1].size == 0 and out[2].tolist() == [7592]
    out[0][0] = 1  # writable, and does not touch the others or the cache
    assert out[2].tolist() == [7592] and uncased.encode("hello").tolist() == [7592]
    assert uncased.encode_batch([]) == []


# -- the stage functions --------------------------------------------------------------------


def _counter():
    c: collections.Counter[str] = collections.Counter()

    def count(name: str, n: int = 1) -> None:
        c[name] += n

    return c, count


def test_encode_document_drops_empty_sentences_and_counts(uncased):
    doc = Document(
        id="d1",
        title="t",
        source="wiki",
        sentences=["Hello world.", "", "  \t", "\x00\x07", "Ünïcödé 中 " + "x" * 150],
    )
    c, count = _counter()
    enc = encode_document(doc, uncased, count=count)
    assert isinstance(enc, EncodedDocument) and enc.id == "d1"
    assert [a.tolist() for a in enc.sentences] == [
        uncased.encode("Hello world.").tolist(),
        uncased.encode("unicode 中 " + "x" * 150).tolist(),
    ]
    assert enc.sentences[1].tolist()[-1] == uncased.unk_id
    assert c == {
        "encode/passed": 1,
        "encode/sentences": 2,
        "encode/tokens": sum(a.size for a in enc.sentences),
        "encode/dropped:empty": 3,
        "encode/unk": 1,
    }


def test_encode_document_with_no_tokens_is_none(uncased):
    c, count = _counter()
    doc = Document(id="e", title="", source="books", sentences=["", "\u200b"])
    assert encode_document(doc, uncased, count=count) is None
    assert c == {"encode/dropped:empty": 2, "encode/dropped:empty_document": 1}


def test_encode_documents_equals_one_by_one(corpus, uncased):
    docs = [
        Document(id=f"d{i}", title="", source="wiki", sentences=corpus[i * 40 : i * 40 + 40])
        for i in range(60)
    ]
    docs.append(Document(id="empty", title="", source="wiki", sentences=[""]))
    c1, count1 = _counter()
    batch = encode_documents(docs, uncased, count=count1)
    c2, count2 = _counter()
    single = [e for d in docs if (e := encode_document(d, uncased, count=count2)) is not None]
    assert c1 == c2 and c1["encode/dropped:empty_document"] == 1
    assert [e.id for e in batch] == [e.id for e in single]
    for a, b in zip(batch, single, strict=True):
        assert [x.tolist() for x in a.sentences] == [x.tolist() for x in b.sentences]
