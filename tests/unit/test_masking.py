"""Static masking + NSP (corpus_pipeline.stages.masking).

Real text: Google's sample_text.txt, Sherlock Holmes (stories as documents, paragraphs as
sentences) and, for the reference statistics of NVIDIA's script (README, ``mask``), the
bundled enwiki excerpt (wikiextractor's cleaner + punkt with the bundled parameters, cached
between runs). Synthetic documents only pin edges. Each fixed defect is tested on both sides: the check
fails with Google's behaviour (``GoogleCompat``) and passes with ours.
"""

from __future__ import annotations

import bz2
import collections
import hashlib
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus_pipeline import resources
from corpus_pipeline.config import PRESETS, MaskConfig
from corpus_pipeline.errors import InputFormatError, UserError
from corpus_pipeline.records import EncodedDocument, Instance
from corpus_pipeline.stages import mask_rows, masking
from corpus_pipeline.stages.mask_rows import num_to_predict
from corpus_pipeline.stages.mask_stats import MaskStats
from corpus_pipeline.stages.masking import (
    GoogleCompat,
    MaskVocab,
    create_instances,
    truncated_lengths,
)

VOCAB_PATH = resources.UNCASED_VOCAB
PHASE1 = MaskConfig(**PRESETS["phase1"])


# --------------------------------------------------------------------------- helpers


def run(
    bucket: Sequence[EncodedDocument], cfg: MaskConfig, vocab: MaskVocab, **kw: object
) -> tuple[list[Instance], collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()

    def count(name: str, n: int = 1) -> None:
        counts[name] += n

    out = list(create_instances(bucket, cfg, vocab, count=count, **kw))  # type: ignore[arg-type]
    return out, counts


def restore(inst: Instance) -> np.ndarray:
    """The unmasked ``[CLS] A [SEP] B [SEP]``: labels put back at the masked positions."""
    ids = inst.input_ids.copy()
    ids[inst.masked_lm_positions] = inst.masked_lm_ids
    return ids


def split_ab(inst: Instance, vocab: MaskVocab) -> tuple[np.ndarray, np.ndarray]:
    ids = restore(inst)
    la = int(np.count_nonzero(inst.segment_ids == 0)) - 2
    return ids[1 : 1 + la], ids[la + 2 : -1]


def check_instance(inst: Instance, cfg: MaskConfig, vocab: MaskVocab) -> None:
    """Every structural invariant of one instance."""
    S, P = cfg.max_seq_length, cfg.max_predictions
    L = len(inst)
    assert inst.input_ids.dtype == np.int32 and inst.segment_ids.dtype == np.int8
    assert inst.masked_lm_positions.dtype == np.int32 and inst.masked_lm_ids.dtype == np.int32
    assert 5 <= L <= S
    assert inst.segment_ids.shape == (L,)
    assert inst.next_sentence_label in (0, 1)
    seg = inst.segment_ids
    # Segment layout: 0...0 1...1 with at least [CLS] a [SEP] and b [SEP].
    n0 = int(np.count_nonzero(seg == 0))
    assert np.all(seg[:n0] == 0) and np.all(seg[n0:] == 1) and 3 <= n0 <= L - 2
    ids = restore(inst)
    specials = np.flatnonzero((ids == vocab.cls_id) | (ids == vocab.sep_id))
    assert specials.tolist() == [0, n0 - 1, L - 1]
    assert ids[0] == vocab.cls_id and ids[n0 - 1] == vocab.sep_id and ids[-1] == vocab.sep_id
    # The specials are never masked, so they are intact in the input too.
    assert inst.input_ids[0] == vocab.cls_id and inst.input_ids[n0 - 1] == vocab.sep_id
    assert inst.input_ids[-1] == vocab.sep_id
    pos = inst.masked_lm_positions
    # Whole-word masking may find no word short enough for k (Google: zero predictions).
    assert (0 if cfg.whole_word_mask else 1) <= pos.shape[0] <= P
    assert np.all(np.diff(pos) > 0), "positions sorted and distinct"
    assert np.all(pos > 0) and np.all(pos < L - 1) and not np.any(pos == n0 - 1)
    assert inst.masked_lm_ids.shape == pos.shape
    # Unmasked positions are untouched; masked ones are [MASK], kept or an ordinary token.
    changed = np.flatnonzero(inst.input_ids != ids)
    assert set(changed.tolist()) <= set(pos.tolist())
    if not cfg.whole_word_mask:
        k = min(int(num_to_predict([L], P, cfg.masked_lm_prob)[0]), L - 3)
        assert pos.shape[0] == k


def find_sub(hay: np.ndarray, needle: np.ndarray) -> list[int]:
    """Start indices of ``needle`` in ``hay`` (int32 arrays)."""
    hb, nb = hay.tobytes(), needle.tobytes()
    hits = []
    i = hb.find(nb)
    while i >= 0:
        if i % 4 == 0:
            hits.append(i // 4)
        i = hb.find(nb, i + 1)
    return hits


def flat(doc: EncodedDocument) -> np.ndarray:
    parts = [np.asarray(s, np.int32) for s in doc.sentences if len(s)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def synthetic_doc(
    doc_id: str, lengths: Sequence[int], base: int, vocab: MaskVocab
) -> EncodedDocument:
    """Sentences of consecutive ordinary ids starting at ``base``: provenance is readable."""
    ords = vocab.ordinary_ids
    sents, k = [], base
    for n in lengths:
        sents.append(ords[np.arange(k, k + n) % ords.shape[0]].astype(np.int32))
        k += n
    return EncodedDocument(doc_id, sents)


# --------------------------------------------------------------------------- fixtures


_VOCAB = MaskVocab.from_vocab_file(VOCAB_PATH)


@pytest.fixture(scope="module")
def vocab() -> MaskVocab:
    return _VOCAB


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(str(VOCAB_PATH), lowercase=True)


def encode(tokenizer, lines: list[str]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    if not lines:
        return []
    enc = tokenizer.encode_batch(lines, add_special_tokens=False)
    return [np.asarray(e.ids, np.int32) for e in enc]


@pytest.fixture(scope="module")
def google_docs(tokenizer) -> list[EncodedDocument]:  # type: ignore[no-untyped-def]
    """Google's sample: one sentence per line, blank lines between documents."""
    text = resources.SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8")
    groups = [g.strip().split("\n") for g in re.split(r"\n\s*\n", text) if g.strip()]
    return [EncodedDocument(f"google:{i}", encode(tokenizer, g)) for i, g in enumerate(groups)]


@pytest.fixture(scope="module")
def sherlock_docs(tokenizer) -> list[EncodedDocument]:  # type: ignore[no-untyped-def]
    """The twelve stories (and the front matter) as documents, paragraphs as sentences."""
    text = resources.SAMPLE_BOOK.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    stories = re.split(r"\n(?=(?:ADVENTURE )?[IVX]+\. [A-Z][A-Z' -]+\n)", text)
    docs = []
    for i, story in enumerate(stories):
        paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", story) if p.strip()]
        docs.append(EncodedDocument(f"sherlock:{i:02d}", encode(tokenizer, paras)))
    return docs


@pytest.fixture(scope="module")
def real_docs(google_docs, sherlock_docs) -> list[EncodedDocument]:  # type: ignore[no-untyped-def]
    return google_docs + sherlock_docs


# The enwiki excerpt, crudely prepared (wikiextractor's cleaner without template expansion,
# punkt with the bundled parameters): close to what NVIDIA's preprocessing feeds Google's
# script. Encoding takes seconds, so the result is cached in pytest's cache directory.
WIKI_FIXTURE_VERSION = "1"


def _punkt():  # type: ignore[no-untyped-def]
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    # nltk's own loader refuses paths outside its data sandbox: read the tab files directly.
    d = resources.PUNKT_DIR / "english"

    def lines(name: str) -> list[str]:
        return [x for x in (d / name).read_text(encoding="utf-8").split("\n") if x]

    p = PunktParameters()
    p.abbrev_types = set(lines("abbrev_types.txt"))
    p.sent_starters = set(lines("sent_starters.txt"))
    p.collocations = {tuple(x.split("\t")) for x in lines("collocations.tab")}
    p.ortho_context = collections.defaultdict(
        int, {k: int(v) for k, v in (x.split("\t") for x in lines("ortho_context.tab"))}
    )
    return PunktSentenceTokenizer(p)


def _encode_wiki(tokenizer) -> list[EncodedDocument]:  # type: ignore[no-untyped-def]
    from wikiextractor.extract import Extractor

    splitter = _punkt()
    docs = []
    with bz2.open(resources.SAMPLE_WIKI_DUMP) as f:
        for _, el in ET.iterparse(f):
            if not el.tag.endswith("}page"):
                continue
            if el.findtext("{*}ns") == "0" and el.find("{*}redirect") is None:
                pid = el.findtext("{*}id") or ""
                title = el.findtext("{*}title") or ""
                wikitext = el.findtext("{*}revision/{*}text") or ""
                paras = Extractor(pid, 0, "", title, [wikitext]).clean_text(
                    wikitext, expand_templates=False
                )
                sents = [s for p in paras for s in splitter.tokenize(p)]
                docs.append(EncodedDocument(f"wiki:{pid}", encode(tokenizer, sents)))
            el.clear()
    return docs


@pytest.fixture(scope="module")
def wiki_docs(request, tokenizer) -> list[EncodedDocument]:  # type: ignore[no-untyped-def]
    h = hashlib.sha256(WIKI_FIXTURE_VERSION.encode())
    h.update(resources.SAMPLE_WIKI_DUMP.read_bytes())
    h.update(VOCAB_PATH.read_bytes())
    cache = getattr(request.config, "cache", None)
    path = cache.mkdir("masking_wiki") / f"{h.hexdigest()[:16]}.npz" if cache else None
    if path is not None and path.exists():
        z = np.load(path)
        tokens, sent_off, doc_off = z["tokens"], z["sent_off"], z["doc_off"]
        docs = []
        for i, name in enumerate(z["ids"].tolist()):
            bounds = sent_off[doc_off[i] : doc_off[i + 1] + 1]
            docs.append(
                EncodedDocument(
                    name, [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
                )
            )
        return docs
    docs = _encode_wiki(tokenizer)
    if path is not None:
        lens = [len(s) for d in docs for s in d.sentences]
        doc_off = np.cumsum([0] + [len(d.sentences) for d in docs])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            tokens=np.concatenate([s for d in docs for s in d.sentences]),
            sent_off=np.cumsum([0] + lens),
            doc_off=doc_off,
            ids=np.array([d.id for d in docs]),
        )
        tmp.replace(path)
    return docs


# --------------------------------------------------------------------------- vocabulary


def test_vocab_from_bundled_file(vocab: MaskVocab) -> None:
    tokens = VOCAB_PATH.read_text(encoding="utf-8").split("\n")
    assert (vocab.cls_id, vocab.sep_id, vocab.mask_id) == (101, 102, 103)
    assert vocab.vocab_size == 30522 == vocab.is_subword.shape[0]
    ordinary = set(vocab.ordinary_ids.tolist())
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused993]"):
        assert tokens.index(special) not in ordinary
    assert tokens.index("the") in ordinary and tokens.index("##s") in ordinary
    assert tokens.index("[") in ordinary and tokens.index("]") in ordinary
    assert len(ordinary) == 30522 - 5 - 994
    assert vocab.is_subword[tokens.index("##s")] and not vocab.is_subword[tokens.index("s")]
    assert vocab.special_mask().sum() == 999


def test_vocab_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing-vocab.txt"):
        MaskVocab.from_vocab_file(tmp_path / "missing-vocab.txt")
    bad = tmp_path / "vocab.txt"
    bad.write_text("[PAD]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"vocab\.txt.*\[MASK\]"):
        MaskVocab.from_vocab_file(bad)


# --------------------------------------------------------------------------- pieces


def test_num_to_predict_is_googles_python_round() -> None:
    lengths = np.arange(1, 4097)
    for p in (0.15, 0.1, 0.2, 0.125, 0.3, 0.5, 0.05, 0.9):
        for P in (1, 20, 80, 4093):
            expect = [min(P, max(1, int(round(n * p)))) for n in lengths.tolist()]
            assert num_to_predict(lengths, P, p).tolist() == expect
    # Banker's rounding on exact halves: 30 * 0.15 = 4.5 -> 4, 10 * 0.15 = 1.5 -> 2.
    assert num_to_predict([30, 10, 128], 20, 0.15).tolist() == [4, 2, 19]


def test_truncated_lengths_equal_googles_pop_loop() -> None:
    for M in range(5, 30):
        for la in range(1, 45):
            for lb in range(1, 45):
                a, b = la, lb
                while a + b > M:  # Google pops from the longer list, from A on ties
                    if a >= b:
                        a -= 1
                    else:
                        b -= 1
                assert truncated_lengths(la, lb, M) == (a, b)


# --------------------------------------------------------------------------- real text


@pytest.mark.parametrize("wwm", [False, True], ids=["per-piece", "whole-word"])
def test_instances_are_well_formed_and_come_from_the_documents(
    real_docs: list[EncodedDocument], vocab: MaskVocab, wwm: bool
) -> None:
    cfg = replace(PHASE1, dupe_factor=2, whole_word_mask=wwm)
    out, counts = run(real_docs, cfg, vocab)
    assert len(out) > 2000
    flats = [flat(d) for d in real_docs]
    big = np.concatenate(flats)
    for inst in out:
        check_instance(inst, cfg, vocab)
        a, b = split_ab(inst, vocab)
        # A and B are contiguous runs of document text (masking undone).
        assert find_sub(big, a) and find_sub(big, b)
        if inst.next_sentence_label == 0:
            # Actual next: B follows A in the same document (truncation may leave a gap).
            assert any(
                (ia := find_sub(f, a)) and (ib := find_sub(f, b)) and max(ib) >= min(ia) + len(a)
                for f in flats
            )
    if wwm:
        # Masked pieces form whole words: a masked piece's ## continuation is masked too.
        for inst in out:
            ids = restore(inst)
            sub = vocab.is_subword[ids]
            special = (ids == vocab.cls_id) | (ids == vocab.sep_id)
            masked = np.zeros(len(inst), bool)
            masked[inst.masked_lm_positions] = True
            cont = sub[1:] & ~special[:-1]  # position j+1 continues the word at j
            assert np.all(masked[1:][cont] == masked[:-1][cont])
        # Google skips a word that would overshoot k and tries the next (it does not stop):
        # nearly every instance reaches exactly k pieces.
        k = np.minimum(num_to_predict([len(i) for i in out], cfg.max_predictions, 0.15), 125)
        exact = np.array([len(i.masked_lm_positions) for i in out]) == k
        assert exact.mean() > 0.97
    assert counts["mask/instances"] == len(out)
    assert counts["mask/tokens"] == sum(len(i) for i in out)
    assert counts["mask/random_next"] == sum(i.next_sentence_label for i in out)
    assert counts["mask/masked"] == sum(len(i.masked_lm_positions) for i in out)
    assert (
        counts["mask/masked:mask_token"] + counts["mask/masked:kept"] + counts["mask/masked:random"]
        == counts["mask/masked"]
    )
    assert counts["mask/passed"] == len(real_docs)


def test_statistics_on_real_text(real_docs: list[EncodedDocument], vocab: MaskVocab) -> None:
    """80/10/10, ~15% masked when P does not bind, NSP 50% where the coin is tossed."""
    cfg = replace(PHASE1, max_predictions=125, dupe_factor=10)
    out, counts = run(real_docs, cfg, vocab)
    stats = MaskStats.for_config(cfg, vocab).add_many(out).add_counters(counts).to_dict()
    n = stats["instances"]
    assert n == len(out) > 10_000
    # One-sentence chunks are always random next (Google): the coin decides the others.
    forced = counts["mask/forced_random_next"]
    tossed = n - forced
    assert tossed > 3000
    assert abs((counts["mask/random_next"] - forced) / tossed - 0.5) < 0.03
    assert abs(stats["mask_token_fraction"] - 0.8) < 0.015
    assert abs(stats["kept_fraction"] - 0.1) < 0.015
    assert abs(stats["random_fraction"] - 0.1) < 0.015
    assert abs(stats["masked_fraction"] - 0.15) < 0.005
    assert stats["random_special"] == 0
    # Decisions are independent between positions: with ~19 positions, an instance that
    # is all [MASK] has probability ~0.8^19.
    all_mask = [np.all(i.input_ids[i.masked_lm_positions] == vocab.mask_id) for i in out]
    assert np.mean(all_mask) < 0.05
    # Counters hold the exact decisions; the instance-inferred split differs only where a
    # random draw hit the original token.
    s = MaskStats.for_config(cfg, vocab).add_many(out)
    assert s.masked_mask_token == counts["mask/masked:mask_token"]
    assert 0 <= s.masked_kept - counts["mask/masked:kept"] < 5
    exact = counts["mask/masked:kept"] + counts["mask/masked:random"]
    assert s.masked_kept + s.masked_random == exact
    hist = np.asarray(stats["length_histogram"])
    assert hist.shape == (129,) and hist.sum() == n
    assert stats["mean_length"] == pytest.approx((hist * np.arange(129)).sum() / n)
    assert 0 < stats["short_target_fraction"] < 1


def test_masked_positions_are_uniform_over_candidates(
    real_docs: list[EncodedDocument], vocab: MaskVocab
) -> None:
    """Google shuffles the candidates: every non-special position is equally likely."""
    cfg = replace(PHASE1, dupe_factor=10)
    out, _ = run(real_docs, cfg, vocab)
    full = [i for i in out if len(i) == 128]
    assert len(full) > 5000
    hits = np.zeros(128)
    cand = np.zeros(128)
    for inst in full:
        hits[inst.masked_lm_positions] += 1
        c = np.ones(128, bool)
        c[[0, int(np.count_nonzero(inst.segment_ids == 0)) - 1, 127]] = False
        cand += c
    rate = hits[1:127] / cand[1:127]
    assert np.all(np.abs(rate - 19 / 125) < 0.02)  # k = round(128 * 0.15) = 19 of 125


def test_truncation_trims_front_or_back_with_equal_probability(vocab: MaskVocab) -> None:
    """Sentences of 100 tokens at S=64: every instance pairs two of them (one-sentence chunks)
    and trims 70 from A and 69 from B, each pop from the front with p = 0.5: front trims
    are Binomial(70, 0.5) and Binomial(69, 0.5)."""
    cfg = replace(PHASE1, max_seq_length=64, max_predictions=9, dupe_factor=5)
    docs = [synthetic_doc(f"d{d:02d}", [100, 100, 100], 300 * d, vocab) for d in range(20)]
    out, counts = run(docs, cfg, vocab)
    assert counts["mask/truncated"] == len(out) == 20 * 3 * 5
    fronts: dict[str, list[int]] = {"a": [], "b": []}
    for inst in out:
        a, b = split_ab(inst, vocab)
        assert (len(a), len(b)) == (30, 31)
        for name, part in (("a", a), ("b", b)):
            ordinal = int(np.searchsorted(vocab.ordinary_ids, part[0]))
            fronts[name].append(ordinal % 100)  # tokens trimmed from the sentence's front
    for name, n in (("a", 70), ("b", 69)):
        x = np.array(fronts[name])
        assert abs(x.mean() - n / 2) < 1.0
        assert abs(x.std() - (n / 4) ** 0.5) < 0.7


def _google_reference(
    docs: list[list[list[int]]], cfg: MaskConfig, rng: random.Random
) -> list[tuple[int, int]]:
    """Google's create_instances_from_document, transcribed as a plain per-token loop.

    Returns (length, is_random_next) per instance; masking is left out (its count is a
    function of the length, checked exactly elsewhere).
    """
    M = cfg.max_seq_length - 3
    out = []
    for _ in range(cfg.dupe_factor):
        for di, doc in enumerate(docs):
            target = M
            if rng.random() < cfg.short_seq_prob:
                target = rng.randint(2, M)
            chunk: list[list[int]] = []
            cur = 0
            i = 0
            while i < len(doc):
                chunk.append(doc[i])
                cur += len(doc[i])
                if i == len(doc) - 1 or cur >= target:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    a = [t for s in chunk[:a_end] for t in s]
                    b: list[int] = []
                    if len(chunk) == 1 or rng.random() < 0.5:
                        rn = 1
                        for _ in range(10):
                            r = rng.randint(0, len(docs) - 1)
                            if r != di:
                                break
                        other = docs[r]
                        for s in other[rng.randint(0, len(other) - 1) :]:
                            b.extend(s)
                            if len(b) >= target - len(a):
                                break
                        i -= len(chunk) - a_end
                    else:
                        rn = 0
                        b = [t for s in chunk[a_end:] for t in s]
                    while len(a) + len(b) > M:
                        t = a if len(a) >= len(b) else b
                        t.pop(0 if rng.random() < 0.5 else -1)
                    out.append((len(a) + len(b) + 3, rn))
                    chunk, cur = [], 0
                i += 1
    return out


def test_distributions_match_a_plain_transcription_of_google(
    real_docs: list[EncodedDocument], vocab: MaskVocab
) -> None:
    """Our vectorised planner against Google's loop: same distributions, other random draws."""
    cfg = replace(PHASE1, dupe_factor=8)
    lists = [[s.tolist() for s in d.sentences] for d in real_docs]
    ref = np.array(_google_reference(lists, cfg, random.Random(7)))
    out, _ = run(real_docs, cfg, vocab)
    ours = np.array([(len(i), i.next_sentence_label) for i in out])
    assert abs(len(ours) / len(ref) - 1) < 0.06
    assert abs(ours[:, 0].mean() - ref[:, 0].mean()) < 3.0
    assert abs(ours[:, 1].mean() - ref[:, 1].mean()) < 0.03
    # Length histograms: same shape (total variation distance).
    h_ours = np.bincount(ours[:, 0], minlength=129) / len(ours)
    h_ref = np.bincount(ref[:, 0], minlength=129) / len(ref)
    assert 0.5 * np.abs(h_ours - h_ref).sum() < 0.08


def test_enwiki_statistics_match_nvidia_reference(
    wiki_docs: list[EncodedDocument], vocab: MaskVocab
) -> None:
    """NVIDIA's script on the bundled enwiki excerpt (S=128, P=20, dupe 5; README, ``mask``):
    28,294 instances, mean length 118.6, NSP random 0.519, 17.6 masked, 80/10/10, 3.1%
    special random replacements (difference 3 of ``stages/masking.py``).

    Tolerances are three standard deviations of one run (most of the spread comes from which
    large articles draw a short target), measured over seeds; we average four seeds.
    """
    assert len(wiki_docs) == 106
    cfg = replace(PHASE1, dupe_factor=5)
    runs = []
    for seed in (1, 2, 3, 4):
        out, counts = run(wiki_docs, replace(cfg, seed=seed), vocab)
        runs.append(MaskStats.for_config(cfg, vocab).add_many(out).add_counters(counts).to_dict())
    mean = {k: float(np.mean([r[k] for r in runs])) for k in ("instances", "mean_length",
            "random_next_fraction", "masked_per_instance", "mask_token_fraction",
            "kept_fraction", "random_fraction")}  # fmt: skip
    assert abs(mean["instances"] - 28_294) < 0.07 * 28_294
    assert abs(mean["mean_length"] - 118.6) < 5.0
    assert abs(mean["random_next_fraction"] - 0.519) < 0.03
    assert abs(mean["masked_per_instance"] - 17.6) < 0.7
    assert abs(mean["mask_token_fraction"] - 0.80) < 0.015
    assert abs(mean["kept_fraction"] - 0.10) < 0.015
    assert abs(mean["random_fraction"] - 0.10) < 0.015
    assert all(r["random_special"] == 0 for r in runs)
    # Google's draw from the whole vocabulary reproduces NVIDIA's 3.1% special replacements.
    out, counts = run(wiki_docs, cfg, vocab, google_compat_defects=True)
    g = MaskStats.for_config(cfg, vocab).add_many(out)
    assert 0.025 < g.random_special / g.masked_random < 0.04


# --------------------------------------------------------------------------- determinism


def test_deterministic_and_independent_of_bucket_order(
    real_docs: list[EncodedDocument], vocab: MaskVocab
) -> None:
    cfg = replace(PHASE1, dupe_factor=2)
    first, c1 = run(real_docs, cfg, vocab)
    again, c2 = run(real_docs, cfg, vocab)
    shuffled = list(real_docs)
    random.Random(3).shuffle(shuffled)
    assert shuffled != real_docs
    reordered, c3 = run(shuffled, cfg, vocab)
    assert first == again == reordered
    assert c1 == c2 == c3
    other, _ = run(real_docs, replace(cfg, seed=cfg.seed + 1), vocab)
    assert sum(a == b for a, b in zip(first, other, strict=False)) < len(first) // 100


def test_duplicate_document_ids_are_ordered_by_content(vocab: MaskVocab) -> None:
    cfg = replace(PHASE1, max_seq_length=32, max_predictions=5, dupe_factor=2)
    docs = [
        synthetic_doc("same", [5, 6, 7, 8] * 3, 0, vocab),
        synthetic_doc("same", [5, 6, 7, 8] * 3, 5000, vocab),
        synthetic_doc("other", [4] * 10, 9000, vocab),
    ]
    out, counts = run(docs, cfg, vocab)
    assert counts["mask/duplicate_document_id"] == 1
    assert run(docs[::-1], cfg, vocab)[0] == out
    # Same sentence lengths, but their own random streams: the A/B splits differ.
    first = {d.id + str(i): [] for i, d in enumerate(docs)}
    for inst in out:
        a, _ = split_ab(inst, vocab)
        for i, d in enumerate(docs[:2]):
            if find_sub(flat(d), a):
                first[d.id + str(i)].append((len(a), inst.next_sentence_label))
    assert first["same0"] and first["same1"] and first["same0"] != first["same1"]


def test_output_does_not_depend_on_batch_size(
    real_docs: list[EncodedDocument], vocab: MaskVocab, monkeypatch: pytest.MonkeyPatch
) -> None:
    for wwm in (False, True):
        cfg = replace(PHASE1, dupe_factor=1, whole_word_mask=wwm)
        big, counts = run(real_docs, cfg, vocab)
        assert not big[0].input_ids.flags.writeable  # views of shared buffers: read-only
        for rows in (1, 7):  # flush after every document, vectorise 1 or 7 rows at a time
            # The planner flushes and the assembler slices at this many rows.
            for module in (masking, mask_rows):
                monkeypatch.setattr(module, "batch_rows", lambda cfg, rows=rows: rows)
            small, small_counts = run(real_docs, cfg, vocab)
            monkeypatch.undo()
            assert big == small and counts == small_counts


# --------------------------------------------------------------------------- defects


@pytest.mark.parametrize("google", [False, True], ids=["ours", "google"])
def test_defect1_random_next_never_from_the_same_document(vocab: MaskVocab, google: bool) -> None:
    cfg = replace(PHASE1, max_seq_length=32, max_predictions=5, dupe_factor=20)
    compat = GoogleCompat(same_document_negatives=google)
    one = [synthetic_doc("solo", [5, 7, 3, 9, 4, 6] * 5, 0, vocab)]
    two = one + [synthetic_doc("other", [6, 4, 8] * 6, 10_000, vocab)]
    for bucket in (one, two):
        out, counts = run(bucket, cfg, vocab, google_compat_defects=compat)
        same = 0
        for inst in out:
            if inst.next_sentence_label:
                a, b = split_ab(inst, vocab)
                owner_a = [d.id for d in bucket if find_sub(flat(d), a)]
                owner_b = [d.id for d in bucket if find_sub(flat(d), b)]
                same += owner_a == owner_b
        if google and bucket is one:
            # Google draws the only document 10 times and keeps it: label 1, same document.
            assert same > 50 and counts["mask/compat:same_document_negative"] == same
        else:
            assert same == 0
    # Ours, single document: multi-sentence chunks fall back to their actual next (label 0);
    # one-sentence chunks have nothing to pair with and are dropped, counted.
    out, counts = run(one, cfg, vocab)
    assert out and all(i.next_sentence_label == 0 for i in out)
    assert counts["mask/fallback:no_negative_available"] > 0
    lonely = [EncodedDocument("x", [np.arange(1000, 1010, dtype=np.int32)])]
    out, counts = run(lonely, cfg, vocab)
    assert out == [] and counts["mask/dropped:no_negative_available"] == cfg.dupe_factor


@pytest.mark.parametrize("google", [False, True], ids=["ours", "google"])
def test_defect2_whole_word_decision_is_per_word(
    sherlock_docs: list[EncodedDocument], vocab: MaskVocab, google: bool
) -> None:
    cfg = replace(PHASE1, whole_word_mask=True, masked_lm_prob=0.3, max_predictions=60)
    out, _ = run(sherlock_docs[1:4], cfg, vocab, google_compat_defects=GoogleCompat(
        per_piece_whole_word=google))  # fmt: skip
    mixed = multi = 0
    uniform_rows = 0  # instances whose words all got the same decision
    for inst in out:
        ids = restore(inst)
        pos = inst.masked_lm_positions.tolist()
        shown = inst.input_ids
        words: list[list[int]] = []
        for p in pos:
            if words and p == words[-1][-1] + 1 and vocab.is_subword[ids[p]]:
                words[-1].append(p)
            else:
                words.append([p])
        for w in words:
            if len(w) > 1:
                multi += 1
                is_mask = [shown[p] == vocab.mask_id for p in w]
                mixed += any(is_mask) and not all(is_mask)
        firsts = [shown[w[0]] == vocab.mask_id for w in words]
        uniform_rows += all(firsts) or not any(firsts)
    # Words decide independently of each other (about 35 words per instance here).
    assert uniform_rows < 0.05 * len(out)
    assert multi > 500
    if google:
        assert mixed > 50  # the #910 bug: "[MASK] ##ing" style half-masked words
    else:
        assert mixed == 0


@pytest.mark.parametrize("google", [False, True], ids=["ours", "google"])
def test_defect3_random_replacements_are_ordinary_tokens(
    real_docs: list[EncodedDocument], vocab: MaskVocab, google: bool
) -> None:
    cfg = replace(PHASE1, masked_lm_prob=0.5, max_predictions=125, dupe_factor=4)
    out, counts = run(real_docs, cfg, vocab, google_compat_defects=GoogleCompat(
        special_random_tokens=google))  # fmt: skip
    special = vocab.special_mask()
    replaced = np.concatenate([i.input_ids[i.masked_lm_positions] for i in out])
    originals = np.concatenate([i.masked_lm_ids for i in out])
    rand = replaced[(replaced != originals) & (replaced != vocab.mask_id)]
    assert rand.shape[0] > 20_000
    n_special = int(special[rand].sum())
    if google:
        assert 0.02 < n_special / rand.shape[0] < 0.05  # ~999 / 30522 of the draws
    else:
        assert n_special == 0
        # Ordinary tokens are drawn uniformly: every decile of the list is hit evenly.
        ranks = np.searchsorted(vocab.ordinary_ids, rand)
        deciles = np.bincount(ranks * 10 // vocab.ordinary_ids.shape[0], minlength=10)
        assert deciles.min() > 0.9 * rand.shape[0] / 10


def test_defect4_one_sentence_documents_and_odd_sentences(tokenizer, vocab: MaskVocab) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(PHASE1, max_seq_length=32, max_predictions=5, dupe_factor=3)
    lines = [". starts with a period", "'tis the season", "...", "— dash first", ", comma",
             "?", "(parenthesis) first", '" quoted " text']  # fmt: skip
    docs = [EncodedDocument(f"one:{i}", [s]) for i, s in enumerate(encode(tokenizer, lines))]
    # A 1,000-token sentence (longer than S) and a document starting with a ## piece.
    docs.append(EncodedDocument("long", [np.full(1000, 2000, np.int32)]))
    sub = vocab.ordinary_ids[vocab.is_subword[vocab.ordinary_ids]][:3]
    docs.append(EncodedDocument("subword-first", [sub.astype(np.int32), sub.astype(np.int32)]))
    for wwm in (False, True):
        c = replace(cfg, whole_word_mask=wwm)
        out, counts = run(docs, c, vocab)
        for inst in out:
            check_instance(inst, c, vocab)
        assert counts["mask/forced_random_next"] >= 9 * cfg.dupe_factor
        # Each one-sentence document is the A of one (random next) instance per duplicate.
        for doc in docs[:8]:
            same = [i for i in out if np.array_equal(split_ab(i, vocab)[0], doc.sentences[0])]
            assert len(same) == cfg.dupe_factor and all(i.next_sentence_label for i in same)
        # The long sentence is truncated into instances of at most S tokens.
        long = [i for i in out if np.count_nonzero(restore(i) == 2000) > 0]
        assert len(long) >= cfg.dupe_factor and all(len(i) <= 32 for i in long)


@pytest.mark.parametrize("google", [False, True], ids=["ours", "google"])
def test_defect5_blank_lines_do_not_force_random_next(
    google_docs: list[EncodedDocument], vocab: MaskVocab, google: bool
) -> None:
    cfg = replace(PHASE1, max_seq_length=64, max_predictions=10, dupe_factor=10)
    empty = np.zeros(0, np.int32)
    spaced = [
        EncodedDocument(d.id, [x for s in d.sentences for x in (s, empty)]) for d in google_docs
    ]
    compat = GoogleCompat(blank_line_splits_document=google)
    out, counts = run(spaced, cfg, vocab, google_compat_defects=compat)
    nsp = np.mean([i.next_sentence_label for i in out])
    if google:
        assert nsp == 1.0  # every sentence became a one-sentence document
    else:
        assert nsp < 0.8
        # Blank lines are simply removed: identical to the input without them.
        assert out == run(google_docs, cfg, vocab)[0]
        assert counts["mask/dropped:empty_sentence"] == sum(len(d.sentences) for d in google_docs)


def test_empty_documents_are_skipped_and_counted(
    google_docs: list[EncodedDocument], vocab: MaskVocab
) -> None:
    empty = [EncodedDocument("e1", []), EncodedDocument("e2", [np.zeros(0, np.int32)] * 3)]
    out, counts = run(google_docs + empty, PHASE1, vocab)
    assert counts["mask/dropped:empty_document"] == 2
    assert out == run(google_docs, PHASE1, vocab)[0]
    assert run(empty, PHASE1, vocab)[0] == []


def test_short_target_is_drawn_per_document_and_duplicate(vocab: MaskVocab) -> None:
    """One target per (document, duplicate): with one-token sentences every chunk has the
    target's length, so the instances of one call (dupe 1) share one length but the last."""
    base = replace(PHASE1, max_seq_length=64, max_predictions=10, dupe_factor=1)
    docs = [synthetic_doc("a", [1] * 400, 0, vocab), synthetic_doc("b", [1] * 400, 9000, vocab)]
    a_tokens = set(flat(docs[0]).tolist())

    def lengths_of_a(out: list[Instance]) -> collections.Counter[int]:
        return collections.Counter(len(i) for i in out if int(split_ab(i, vocab)[0][0]) in a_tokens)

    targets = set()
    for seed in range(30):
        cfg = replace(base, short_seq_prob=1.0, seed=seed)
        out, counts = run(docs, cfg, vocab)
        assert counts["mask/short_target"] == len(out)
        # Chunks are exactly the target; only a random next that runs out of document (or
        # the document's end) is shorter. A per-chunk draw would spread the lengths.
        lens = lengths_of_a(out)
        length, n = lens.most_common(1)[0]
        assert n >= 0.5 * lens.total()
        targets.add(length - 3)
    assert min(targets) < 20 and max(targets) > 45  # uniform in [2, 61]
    out, counts = run(docs, replace(base, short_seq_prob=0.0), vocab)
    assert counts["mask/short_target"] == 0
    lens = lengths_of_a(out)
    assert lens.most_common(1)[0][0] == 64 and lens[64] >= 0.5 * lens.total()


# --------------------------------------------------------------------------- errors


def test_bad_input_raises_one_line_user_errors(vocab: MaskVocab) -> None:
    with pytest.raises(UserError, match="outside the vocabulary"):
        run([EncodedDocument("x", [np.array([5, 40_000], np.int32)])], PHASE1, vocab)
    with pytest.raises(InputFormatError, match="'x'.*1-D integer"):
        run([EncodedDocument("x", [np.ones((2, 2), np.int32)])], PHASE1, vocab)
    with pytest.raises(UserError, match="max-predictions"):
        run([], replace(PHASE1, max_predictions=200), vocab)


# --------------------------------------------------------------------------- MaskStats


def test_mask_stats_merge_equals_whole(real_docs: list[EncodedDocument], vocab: MaskVocab) -> None:
    cfg = replace(PHASE1, dupe_factor=1)
    out, counts = run(real_docs, cfg, vocab)
    whole = MaskStats.for_config(cfg, vocab).add_many(out).add_counters(counts).to_dict()
    left = MaskStats.for_config(cfg, vocab)
    for inst in out[: len(out) // 3]:
        left.add(inst)
    right = MaskStats.for_config(cfg, vocab).add_many(out[len(out) // 3 :])
    merged = left.merge(right).add_counters(counts).to_dict()
    assert merged == whole
    assert whole["instances"] == len(out)
    assert whole["masked_per_instance"] == pytest.approx(counts["mask/masked"] / len(out))
    assert whole["short_target_fraction"] == counts["mask/short_target"] / len(out)
    empty = MaskStats(128, vocab.mask_id).to_dict()
    assert empty["instances"] == 0 and empty["mean_length"] is None
    assert empty["short_target_fraction"] is None and empty["random_special"] is None


# --------------------------------------------------------------------------- properties

# Ordinary ids, among them ## pieces (2015 ##s, 2050 ##a, 2075 ##ing) for whole words.
_ORD = st.sampled_from([1000, 1001, 1996, 2023, 3000, 7592, 2015, 2050, 2075, 1005])


@st.composite
def buckets(draw: st.DrawFn) -> tuple[list[EncodedDocument], MaskConfig, bool]:
    S = draw(st.integers(8, 64))
    cfg = MaskConfig(
        max_seq_length=S,
        max_predictions=draw(st.integers(1, S - 3)),
        masked_lm_prob=draw(st.floats(0.01, 0.95)),
        short_seq_prob=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        dupe_factor=draw(st.integers(1, 3)),
        whole_word_mask=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32)),
    )
    n_docs = draw(st.integers(1, 4))
    docs = []
    for d in range(n_docs):
        sents = draw(st.lists(st.lists(_ORD, max_size=3 * S), max_size=8))
        docs.append(EncodedDocument(f"d{d}", [np.array(s, np.int32) for s in sents]))
    return docs, cfg, draw(st.booleans())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buckets())
def test_property_invariants_on_random_documents(
    case: tuple[list[EncodedDocument], MaskConfig, bool],
) -> None:
    docs, cfg, google = case
    vocab = _VOCAB
    out, counts = run(docs, cfg, vocab, google_compat_defects=google)
    big = np.concatenate([flat(d) for d in docs] + [np.zeros(0, np.int32)])
    for inst in out:
        check_instance(inst, cfg, vocab)
        a, b = split_ab(inst, vocab)
        assert find_sub(big, a) and find_sub(big, b)
    assert counts["mask/instances"] == len(out)
    nonempty = sum(1 for d in docs if flat(d).size)
    assert counts["mask/passed"] == nonempty
    if not google and nonempty >= 2:
        assert counts["mask/dropped:no_negative_available"] == 0
    assert run(list(reversed(docs)), cfg, vocab, google_compat_defects=google)[0] == out
